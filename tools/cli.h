/*
 * cli.h — shared pieces of the `dsc` command line (tools/ only; the library
 * is used through include/dsc.h alone).
 */
#ifndef DSC_CLI_H
#define DSC_CLI_H

#include "dsc.h"

/* bench -t A,B,...: at most this many thread counts; -p, -n, -d lists at
 * most this many values each. */
#define CLI_MAX_THREAD_LIST 8
#define CLI_MAX_LIST 8

typedef struct {
    const char *cmd;
    const char *model, *tokens, *output, *tokenizer, *prompt, *file, *jsonl, *ids, *system;
    const char *config, *dtype, *qtype; /* init: -c CONFIG --dtype; quantize: --type */
    const char *model2;                 /* kld: the second -m                     */
    const char *batch;                  /* grad: --batch FILE, tokens I32 [B, T + 1] */
    float alpha;                        /* grad: --alpha, balance-loss weight     */
    int alpha_set;
    float mtp_lambda;                   /* grad: --mtp-lambda (0 = off)           */
    int n_shards, n_threads, n_reps, n_prompt, json, depth, no_warmup;
    int threads_list[CLI_MAX_THREAD_LIST], n_threads_list; /* bench: -t A,B,... (n_threads_list > 1) */
    int prompt_list[CLI_MAX_LIST], gen_list[CLI_MAX_LIST], depth_list[CLI_MAX_LIST]; /* bench: -p, -n, -d A,B,... */
    int n_prompt_list, n_gen_list, n_depth_list;                                    /* (0: the single value) */
    const char *isa;
    int kv_type;       /* dsc_kv_type */
    int argc;          /* train, train-tokenizer: the whole command line, parsed there */
    char **argv;
    int n_ctx, n_batch, n_gen, decode_only, print_ids, verbose, mlock, verbose_prompt, hide_think, think, special, raw;
    int mtp;                            /* run, chat, generate: --mtp, speculative decoding */
    int batch_invariant;                /* --batch-invariant (dsc_ctx_params)              */
    float mtp_p_min;                    /* --mtp-p-min: the least probability of a guess    */
    int reasoning_budget;               /* --reasoning-budget: reasoning tokens at most (-1: none) */
    dsc_sampler_params sp;
    int temp_set;
    int samples, vote;                                          /* run: --samples K --vote */
    int json_object;                    /* run, chat: --json-object, the answer one JSON object   */
    const char *json_schema;            /* run, chat: --json-schema FILE, ... one it accepts     */
    const char *host, *api_key, *cache_dir;                    /* serve */
    int port, parallel, cache_mb, cache_disk_mb, queue, timeout; /* serve (timeout -1: default) */
    int mtp_max_batch;                                          /* serve: --mtp-max-batch (0: no limit) */
} cli_opts;

typedef struct {
    dsc_model *model;
    dsc_ctx *ctx;
    dsc_model_info info;
} cli_session;

/* The bundled default model: $DSC_MODEL, else models/DSC_DEFAULT_MODEL
 * beside the executable's directory (build/../models), else in the source
 * tree; NULL when none has a config.json. */
#define DSC_DEFAULT_MODEL "dsc-r1-tiny"
const char *cli_default_model(void);

/* Prints "dsc: MESSAGE" on stderr and returns 1. */
int cli_die(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
int cli_die_status(void);
/* cli_die_status naming the rank, and the end of every rank of an MPI job (core/dist.h). */
int cli_die_ranks(void);
/* 0 when v is a value for option opt; else 1 after "dsc: [CMD: ]option OPT
 * needs a value": v is NULL (the command line ended), empty, or looks like
 * the next option (-o, --data; not "-" or a negative number). */
int cli_no_value(const char *cmd, const char *opt, const char *v);
/* 0 when an output file can go to path; else 1 after one line: path is
 * empty, a directory, one of the files in model_dir (NULL: not checked),
 * or in a directory that cannot be written. */
int cli_check_output(const char *path, const char *model_dir);
/* A regular file opened for reading, or NULL after a one-line error (a
 * directory, a FIFO or a device is refused without blocking on it). */
FILE *cli_fopen_read(const char *cmd, const char *path); /* cmd: the message's prefix, or NULL */

/* An option's value as an integer / a number in [lo, hi]; otherwise prints
 * "dsc: FLAG: 'VALUE' is not ..." and returns 1. */
int cli_parse_long(const char *s, const char *flag, long lo, long hi, long *out);
int cli_parse_double(const char *s, const char *flag, double lo, double hi, double *out);

/* Loads the model, checks the prompt ids against its vocabulary, and makes
 * a context of at least need_ctx tokens. On failure returns 1 with the message printed; the
 * session is safe to close either way. */
int cli_session_open(const cli_opts *o, int need_ctx, const int32_t *ids, int n_ids, cli_session *s);
/* A context's parameters from the options (-b, -t, --isa, --kv-type, --mtp,
 * --mtp-p-min) for n_ctx tokens. */
dsc_ctx_params cli_ctx_params(const cli_opts *o, int n_ctx);
void cli_session_close(cli_session *s);

/* Prints the latent cache size, threads and kernels (stderr), once the
 * input has been checked. */
void cli_session_announce(const cli_opts *o, const cli_session *s);

/* The tokens of one generation, each sampled (and accepted into the
 * sampler) from the logits after the one before: by evaluating each token
 * before sampling the next (plain decoding), or with --mtp by speculative
 * steps (dsc_spec_step) that may yield two tokens a pass; the same tokens
 * either way. Sequence 0 of ctx, whose logits are those after the prompt. */
/* An answer held to one JSON object (--json-object), or to a schema
 * (--json-schema): the mask's tables and where the answer stands; while
 * the model reasons (split->in_think) it goes free. */
typedef struct {
    const dsc_json_mask *mask;     /* NULL: no constraint */
    const dsc_json_schema *schema; /* NULL: any object */
    dsc_json_state json;
    dsc_schema_state st;
    const dsc_think_split *split;
    float *row;                    /* (vocab_size) the logits masked */
    int32_t n_vocab;
} cli_json;

typedef struct {
    dsc_ctx *ctx;
    dsc_sampler *smp;
    int mtp, started;
    int32_t last; /* the token last returned, not yet evaluated */
    int32_t held; /* the second token of a speculative step, or -1 */
    cli_json *json; /* NULL, or the constraint (plain decoding only) */
    /* --reasoning-budget (plain decoding only): once budget tokens of
     * reasoning are written (split says where the output is), think_end */
    const dsc_think_split *split;
    int budget, n_think, force_at, n_think_end;
    int32_t think_end[8];
} cli_gen;
enum { CLI_GEN_OK = 0, CLI_GEN_FULL, CLI_GEN_ERROR };
void cli_gen_start(cli_gen *g, dsc_ctx *ctx, dsc_sampler *smp, int mtp);
/* CLI_GEN_OK with the next token in *tok; CLI_GEN_FULL when the token
 * before it does not fit the context; CLI_GEN_ERROR (dsc_last_error()
 * says why) when the logits are not finite or evaluation fails. remaining:
 * tokens still wanted, this one included (no draft for the last). */
int cli_gen_next(cli_gen *g, int remaining, int32_t *tok);
/* "; MTP drafts: A of D taken (P%)" for a context with MTP, else "". */
const char *cli_gen_stats(const cli_gen *g, char *buf, size_t cap);

/* Loads the tokenizer of --tokenizer FILE or MODEL_DIR/tokenizer.json. */
int cli_tokenizer_open(const cli_opts *o, dsc_tokenizer **tok, char *path, size_t cap);

int cmd_init(const cli_opts *o);
int cmd_bench(const cli_opts *o);
int cmd_quantize(const cli_opts *o);
int cmd_kld(const cli_opts *o);
int cmd_perplexity(const cli_opts *o);
int cmd_tokenize(const cli_opts *o);
int cmd_detokenize(const cli_opts *o);
int cmd_run(const cli_opts *o);
int cmd_chat(const cli_opts *o);
int cmd_serve(const cli_opts *o);
int cmd_grad(const cli_opts *o);
int cmd_train(const cli_opts *o);
int cmd_train_tokenizer(const cli_opts *o);
int cmd_tasks(const cli_opts *o); /* cmd_tasks.c */
int cmd_plot(const cli_opts *o);  /* cmd_plot.c  */
int cmd_sft(const cli_opts *o);   /* cmd_rl.c    */
int cmd_grpo(const cli_opts *o);
int cmd_eval(const cli_opts *o);
int cmd_run_vote(const cli_opts *o); /* dsc run --samples K [--vote] (cmd_rl.c) */

#endif
