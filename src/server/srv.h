/*
 * srv.h — the server's internal pieces, shared by its files:
 *   sbuf      growable byte buffer and JSON output (util.c)
 *   srv_ask   a parsed OpenAI request body (api.c; an Anthropic one, anthropic.c)
 *   srv_req   a request in flight, shared by its connection and the engine (engine.c)
 *   srv_engine  the scheduler thread (engine.c)
 *   srv_pcache  the prompt cache block store (pcache.c)
 *   srv_metrics counters for /metrics
 * Only include/dsc.h is used from the library.
 */
#ifndef DSC_SRV_H
#define DSC_SRV_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>

#include "server.h"

/* ------------------------------------------------------------------------ */
/* Byte buffers and JSON output                                              */

typedef struct {
    char *p;   /* NUL-terminated when non-NULL */
    size_t n, cap;
    int oom;   /* an append failed; the contents are incomplete */
} sbuf;

void sbuf_put(sbuf *b, const char *s, size_t n);
void sbuf_puts(sbuf *b, const char *s);
void sbuf_printf(sbuf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* A quoted JSON string of n bytes: control characters escaped, invalid
 * UTF-8 replaced by U+FFFD, so the output is always valid JSON. */
void sbuf_json_str(sbuf *b, const char *s, size_t n);
void sbuf_free(sbuf *b);
/* Gives the bytes away (caller frees); the buffer is empty afterwards. */
char *sbuf_take(sbuf *b, size_t *n);

double srv_now(void);          /* monotonic seconds */
void srv_vlog(const char *fmt, va_list ap);
void srv_log(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* ------------------------------------------------------------------------ */
/* Errors in the OpenAI shape {"error": {"message","type","param","code"}}   */

typedef struct {
    int status;          /* HTTP status */
    const char *type;    /* "invalid_request_error", "server_error", ...  */
    char param[64];      /* the field at fault ("" = null) */
    const char *code;    /* machine-readable code, or NULL */
    char message[512];
} srv_err;

/* The error said of another field: param now, and so in its message. */
void srv_err_rename(srv_err *e, const char *now);
/* Fills e and returns -1. */
int srv_fail(srv_err *e, int status, const char *type, const char *param, const char *code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 6, 7)))
#endif
    ;
void srv_err_json(const srv_err *e, sbuf *out);

/* ------------------------------------------------------------------------ */
/* A parsed request body                                                     */

enum { SRV_MAX_STOP = 16, SRV_MAX_TOP = 20, SRV_MAX_N = 128, SRV_MAX_PROMPTS = 128 };

typedef enum { SRV_CHAT, SRV_COMPLETION } srv_kind;

typedef struct {
    srv_kind kind;
    dsc_chat_message *msgs;  /* chat: roles are static strings, contents owned */
    size_t n_msgs;
    char *prompt;            /* completion: text (owned), or NULL when ...     */
    int32_t *prompt_ids;     /* ... the prompt is given as token ids (owned)   */
    size_t n_prompt_ids;
    int n_prompts, prompt_k; /* completion: prompts in the body; the one taken */
    int stream, include_usage;
    int n;                   /* choices, >= 1 */
    int max_tokens;          /* -1: not given */
    float temperature, top_p;
    int has_seed;
    uint64_t seed;
    char *stop[SRV_MAX_STOP];
    int n_stop;
    int logprobs;            /* chat: 0/1; completion: 0 or 1 + top count */
    int top_logprobs;        /* alternatives per token, <= SRV_MAX_TOP */
    int ignore_eos;          /* extension (as vLLM, llama.cpp): generate max_tokens */
    int echo;                /* completion: the prompt before the answer (and its logprobs) */
    int prefix;              /* chat: the last message, the assistant's, begins the answer (DeepSeek's prefix completion) */
    char *suffix;            /* completion: text after the gap the answer fills (FIM; owned, non-empty) */
    float frequency_penalty; /* [-2, 2]: minus this x a token's count among the choice's generated ones */
    float presence_penalty;  /* [-2, 2]: minus this once for a token among them */
    /* Extensions, as vLLM (and llama.cpp's server) take them: */
    int top_k;               /* the k likeliest tokens only (0: off; -1 is taken as 0) */
    int reasoning_budget;    /* extension: the reasoning's tokens at most, then </think> (-1: the server's) */
    float min_p;             /* drop tokens below min_p x p(likeliest) (0: off)        */
    float repetition_penalty; /* (0, 10]: a logit of a token of the prompt or of the
                                choice's output divided by it when positive,
                                multiplied when negative (1: off)                     */
    int json;                /* response_format json_object: the answer is one JSON object */
    dsc_json_schema *schema; /* response_format json_schema: ... one its schema accepts (owned) */
    int32_t *bias_tok;       /* logit_bias: token ids, each once (owned)                    */
    float *bias;             /* ... and what is added to their logits, [-100, 100] (owned)  */
    int n_bias;
    /* Function calling (chat): */
    char *tools_text;        /* the functions offered, as the prompt describes them (owned); NULL: none */
    char *tools_text_v31;    /* ... as DeepSeek-V3.1's model card describes them (owned) */
    char *tools_text_v32;    /* ... as DeepSeek-V3.2's encoding describes them (owned) */
    char **tool_names;       /* (n_tools, owned) */
    dsc_json_schema **tool_schema; /* (n_tools, owned) each one's parameters compiled, or NULL: any object */
    int n_tools;
    int tool_choice;         /* SRV_TOOLS_NONE / _AUTO / _REQUIRED */
    char *tool_forced;       /* tool_choice naming a function: that one (owned), else NULL */
    int parallel_tool_calls; /* more than one call in an answer (default 1) */
    int anthropic;           /* came as an Anthropic Messages request (answered as one) */
    int responses;           /* came as an OpenAI Responses request (answered as one) */
    char *resp_settings;     /* ... the request's settings its answer repeats: JSON members (owned) */
    int think;               /* thinking asked for (1) or not (0), -1 unsaid: chat_template_kwargs
                                {"thinking" | "enable_thinking": bool}, "thinking": {"type": "enabled"
                                | "disabled"}, or the model "deepseek-reasoner" / "deepseek-chat" */
} srv_ask;

enum { SRV_TOOLS_NONE, SRV_TOOLS_AUTO, SRV_TOOLS_REQUIRED };

/* Parses a request body; on failure returns -1 with e filled (400) and
 * *a left safe to free. Needs no model: fuzzed on its own. A completion's
 * body may hold several prompts (a->n_prompts): srv_parse takes the first,
 * srv_parse_prompt the k-th (every one is checked either way). */
int srv_parse(srv_kind kind, const char *body, size_t len, srv_ask *a, srv_err *e);
int srv_parse_prompt(srv_kind kind, const char *body, size_t len, int k, srv_ask *a, srv_err *e);
void srv_ask_free(srv_ask *a);

/* An Anthropic Messages request (POST /v1/messages), translated into the
 * chat request it means and parsed as that (anthropic.c); errors as
 * srv_parse. counting: for count_tokens (no max_tokens needed). */
int srv_parse_anthropic(const char *body, size_t len, int counting, srv_ask *a, srv_err *e);
/* An OpenAI Responses request (POST /v1/responses), translated into the
 * chat request it means (responses.c); errors as srv_parse. */
int srv_parse_responses(const char *body, size_t len, srv_ask *a, srv_err *e);
/* Appends {"role", "content"} (content NULL: null) to the array msgs: a
 * message of the chat request an Anthropic or Responses one is turned into. */
struct cJSON *srv_add_message(struct cJSON *msgs, const char *role, const char *content);

/* Body of POST /tokenize ({"content": str, "add_special": bool}) and POST
 * /detokenize ({"tokens": [int]}). */
int srv_parse_tokenize(const char *body, size_t len, char **content, int *add_special, srv_err *e);
int srv_parse_detokenize(const char *body, size_t len, int32_t **ids, size_t *n, srv_err *e);

/* ------------------------------------------------------------------------ */
/* A request in flight                                                       */

typedef struct {
    int32_t id;
    float logprob;
} srv_top;

typedef struct {           /* one generated token, when logprobs are asked for */
    int32_t token;
    float logprob;         /* log-softmax of the raw logits (temperature 1) */
    int n_top;
    srv_top top[SRV_MAX_TOP];
} srv_lp;

typedef struct {           /* a function call in an answer */
    char id[40];           /* "call_..." */
    char *name, *arguments; /* owned; the arguments one JSON object */
} srv_call;

typedef struct {
    /* Written by the engine, read by the connection, under req->mu. */
    sbuf reason, content;  /* text so far (stop strings already cut)        */
    srv_lp *lp;
    size_t n_lp, cap_lp;
    srv_call *calls;       /* the function calls made, each whole          */
    int n_calls, cap_calls;
    srv_call live;         /* the call being written (number n_calls) once its name is known: id, name */
    sbuf live_args;        /* its arguments so far (its last 4 bytes held back: they may begin the fence) */
    int live_open;         /* live is set */
    const char *finish;    /* NULL while generating, then "stop" / "length" / "tool_calls" */
    const char *stop_hit;  /* the stop string that ended it (one of a.stop), else NULL */
    int32_t n_gen, n_reason;
    /* Engine only. */
    dsc_sampler *smp;
    dsc_json_state json;   /* json_object: where the answer stands            */
    dsc_tool_state tool;   /* tools: where the answer stands                  */
    dsc_schema_state schema; /* json_schema: where the answer stands          */
    sbuf call;             /* the text of the call being written              */
    dsc_utf8_stream utf8;
    dsc_think_split split;
    dsc_dsml_split dsml;   /* DeepSeek-V3.2: the answer's text and its calls  */
    sbuf hold;             /* answer text that may begin a stop string       */
    sbuf new_reason, new_answer; /* one token's text, reused (no allocation per token) */
    int slot;
    int force_at;          /* the reasoning budget spent: "</think>"'s tokens written so far */
} srv_choice;

typedef struct srv_req {
    srv_ask a;
    char id[48];           /* "chatcmpl-..." / "cmpl-..." */
    long long created;     /* unix time */
    int32_t *prompt;       /* (n_prompt) token ids */
    int32_t n_prompt;
    int32_t max_tokens;    /* resolved: >= 1 (0 with echo) and prompt + max_tokens <= n_ctx */
    int32_t budget;        /* resolved: a reasoning model's reasoning tokens at most (-1: no bound) */
    int reasoning;         /* split <think>...</think> into reasoning_content */
    int32_t echo_from;     /* echo: the first prompt token the client sent (1 after a BOS added) */
    char *echo_text;       /* echo: the prompt's text (owned)                */
    size_t n_echo_text;
    srv_lp *plp;           /* echo with logprobs: prompt token i's, from echo_from + 1 (engine) */
    dsc_tool_grammar *tools; /* tools offered: the answer's grammar (owned), else NULL */
    int dsml;              /* tools offered to DeepSeek-V3.2: its DSML calls taken from the answer's text */
    srv_choice *ch;        /* (a.n) */

    pthread_mutex_t mu;    /* guards the choices' shared fields and below */
    pthread_cond_t cv;     /* signalled on every delivery                  */
    int32_t n_hit;         /* prompt tokens found in a cache               */
    int n_finished;
    int done;              /* every choice finished, or the request failed  */
    char *error;           /* an engine failure (500), or NULL              */
    double t_admit, t_first;

    atomic_int cancelled;  /* the client went away                          */
    atomic_int refs;       /* connection + engine                           */
    int queued;            /* in the engine's queue (engine mutex)          */
    struct srv_req *next;
} srv_req;

srv_req *srv_req_new(void);
/* Call k of a choice as far as it is known (under the request's mu): whole
 * once made, else the one being written (its arguments so far), else NULL. */
const srv_call *srv_choice_call(const srv_choice *c, int k, const char **args, size_t *n, int *whole);
void srv_req_unref(srv_req *r);

/* ------------------------------------------------------------------------ */
/* Metrics                                                                   */

enum { SRV_CODE_200, SRV_CODE_400, SRV_CODE_401, SRV_CODE_404, SRV_CODE_405, SRV_CODE_413, SRV_CODE_500,
       SRV_CODE_503, SRV_CODE_OTHER, SRV_N_CODES };

typedef struct {
    atomic_llong http[SRV_N_CODES];     /* responses by status                     */
    atomic_llong requests, cancelled;    /* generation requests admitted / dropped  */
    atomic_llong timed_out;              /* connections closed by --timeout         */
    atomic_llong prompt_tokens, hit_tokens, block_hit_tokens, completion_tokens, reasoning_tokens;
    atomic_llong prefill_tokens, joined_tokens, decode_steps, decode_tokens;
    atomic_llong mtp_drafted, mtp_accepted; /* --mtp: drafts verified, drafts taken */
    atomic_llong mtp_withheld;              /* --mtp-p-min: guesses below it, not verified */
    atomic_int queue_depth, slots_busy, last_batch;
} srv_metrics;

int srv_code_index(int status);

/* ------------------------------------------------------------------------ */
/* Prompt cache block store                                                  */

enum { SRV_BLOCK = 64 }; /* tokens per block; keys hash every token up to a block end */

typedef struct srv_pcache srv_pcache;

/* ram_bytes bounds the states held in memory; with dir, every entry is also
 * written there (bounded by disk_bytes) and the files found there at start
 * are indexed (files of another model, of the wrong size, or unreadable are
 * skipped with a log line). Returns NULL only when out of memory or when dir
 * cannot be created. Used from the engine thread only. */
srv_pcache *pcache_new(dsc_ctx *ctx, size_t ram_bytes, const char *dir, size_t disk_bytes, uint64_t model_id,
                       int32_t n_vocab);
/* Waits for pending disk writes, then frees everything. */
void pcache_free(srv_pcache *pc);

/* Longest block-aligned prefix of ids[0..n) the store holds (0 if none). */
int32_t pcache_peek(srv_pcache *pc, const int32_t *ids, int32_t n);
/* Loads that prefix into sequence seq and returns its length; 0 if there is
 * none or it could not be read (seq is then unchanged). */
int32_t pcache_restore(srv_pcache *pc, int32_t seq, const int32_t *ids, int32_t n);
/* Saves the first n tokens (a multiple of SRV_BLOCK) of sequence seq, which
 * hold ids[0..n). Entries it makes redundant are dropped. */
void pcache_store(srv_pcache *pc, int32_t seq, const int32_t *ids, int32_t n);

typedef struct {
    long long entries, blocks, ram_bytes, disk_bytes, stores, restores, disk_loads, bad_files;
} srv_pcache_stats;
void pcache_stats(srv_pcache *pc, srv_pcache_stats *st);

/* ------------------------------------------------------------------------ */
/* Engine                                                                    */

typedef struct srv_engine srv_engine;

/* Prompt tokens at most that join a decode step (a prompt that fits whole
 * shares the step's pass over the weights). */
#define SRV_MIX_PROMPT 64

typedef struct {
    dsc_ctx *ctx;
    const dsc_tokenizer *tok;
    srv_pcache *pc;
    srv_metrics *m;
    int32_t eos;      /* end of sequence id */
    int32_t n_vocab;  /* the model's */
    int n_chunk;      /* prompt tokens per slot per step */
    int n_prefill;    /* ... on an idle engine (the context's n_batch, >= n_chunk) */
    int n_mix;        /* tokens a step may carry: the context's n_mixed */
    int max_queue;
    int mtp;          /* draft a token per generating slot with the MTP module */
    int mtp_max_batch; /* ... while at most this many slots generate (0: any number) */
    const dsc_json_mask *jmask; /* response_format json_object's tables */
    int32_t think_end[8]; /* "</think>" in tokens (one where the tokenizer has it whole) */
    int n_think_end;      /* 0: none (a reasoning budget is then not held) */
} srv_engine_params;

/* Starts the engine thread. On failure returns -1; *out is then to be
 * given to srv_engine_stop all the same. */
int srv_engine_start(const srv_engine_params *p, srv_engine **out);
/* Queues r (the engine takes a reference). Returns 0, or -1 when the queue
 * is full, or -2 when the engine is stopping. */
int srv_engine_submit(srv_engine *e, srv_req *r);
/* The client is gone: frees r's slots at the next step (or unqueues it). */
void srv_engine_cancel(srv_engine *e, srv_req *r);
/* Slots busy and requests queued, for /health. */
void srv_engine_load(srv_engine *e, int *busy, int *queued);
/* Fails what is in flight, stops the thread, frees the engine. */
void srv_engine_stop(srv_engine *e);

/* ------------------------------------------------------------------------ */
/* The server                                                                */

typedef struct srv_server {
    srv_params p;
    dsc_model *model;
    dsc_ctx *ctx;
    dsc_tokenizer *tok;
    dsc_model_info info;
    srv_engine *eng;
    srv_pcache *pc;
    dsc_json_mask *jmask;    /* the vocabulary's bytes for JSON mode */
    srv_metrics m;
    unsigned chat_flags;     /* DSC_CHAT_REASONING for R1-style models; DSC_CHAT_HYBRID for V3.1's
                                template (DSC_CHAT_REASONING then: thinking unless a request says) */
    int32_t eos, bos;
    int32_t fim[3];          /* <｜fim▁begin｜>, <｜fim▁hole｜>, <｜fim▁end｜> (-1: none) */
    int n_ctx;
    char model_name[128];    /* "id" in /v1/models and responses */
    char fingerprint[32];    /* system_fingerprint: the model identity */
    double t_start;
    atomic_int stopping;
    atomic_ullong next_id;
    void *daemon;            /* struct MHD_Daemon */
    void *watch;             /* http.c's request deadlines */
} srv_server;

/* The template's flags for a request: a model that switches thinking
 * (V3.1) thinks as the request says, else as the server's default. */
static inline unsigned srv_chat_flags(const srv_server *S, const srv_ask *a) {
    if (!(S->chat_flags & DSC_CHAT_HYBRID) || a->think < 0) return S->chat_flags;
    return (S->chat_flags & ~(unsigned)DSC_CHAT_REASONING) | (a->think ? DSC_CHAT_REASONING : 0);
}

/* Response bodies (output.c). Every function appends to o; the request's
 * shared fields must be stable (req->mu held, or the request done). A
 * chunk's head (id, created) is r's; i is the index printed. */
void out_chat_chunk(const srv_server *S, const srv_req *r, int i, const char *role, const char *reason, size_t nr,
                    const char *content, size_t nc, const srv_lp *lp, size_t n_lp, const char *finish, sbuf *o);
/* A piece of choice i's function call k as a chunk's delta.tool_calls[0]:
 * with begin (the call), its id, type and name first; then n more bytes of
 * its arguments (OpenAI's stream: arguments in pieces, concatenated). */
void out_call_delta(const srv_server *S, const srv_req *r, int i, int k, const srv_call *begin, const char *args,
                    size_t n, sbuf *o);
/* offset: the text offset of the chunk's first logprob token, advanced past its last. */
void out_completion_chunk(const srv_server *S, const srv_req *r, int i, const char *text, size_t n, const srv_lp *lp,
                          size_t n_lp, size_t *offset, const char *finish, sbuf *o);
/* rs[0..n_req): the requests of one body's prompts (completions: one
 * each), their choices numbered in that order; the head is rs[0]'s. */
void out_usage_chunk(const srv_server *S, srv_req *const *rs, int n_req, sbuf *o);
void out_final(const srv_server *S, srv_req *const *rs, int n_req, sbuf *o);

/* The Anthropic Messages shapes (anthropic.c): the answer, an error, and a
 * stream's events (one choice). */
typedef struct {
    int block, kind;       /* the content block open (its index) and kind: 0 none, 1 thinking, 2 text, 3 tool_use */
    size_t sent_reason, sent_content;
    int sent_calls, finished;
    int call_open;         /* call sent_calls's block begun */
    size_t sent_args;      /* its input's bytes sent */
} srv_anth_stream;
void out_anthropic_final(const srv_server *S, const srv_req *r, sbuf *o);
void srv_err_json_anthropic(const srv_err *e, sbuf *out);
void anth_stream_start(const srv_server *S, const srv_req *r, srv_anth_stream *st, sbuf *o);
void anth_stream_collect(const srv_req *r, srv_anth_stream *st, sbuf *o);
void anth_stream_end(const srv_req *r, srv_anth_stream *st, sbuf *o);

/* The OpenAI Responses shapes (responses.c): the answer and a stream's
 * events (one choice). */
typedef struct {
    int seq;               /* the next event's sequence_number */
    int item, kind;        /* the output item open (its index) and kind: 0 none, 1 reasoning, 2 message, 3 a call */
    int had_message;       /* a message item was opened */
    size_t sent_reason, sent_content;
    int sent_calls, finished;
    int call_open;         /* call sent_calls's item added */
    size_t sent_args;      /* its arguments' bytes sent */
} srv_resp_stream;
void out_responses_final(const srv_server *S, const srv_req *r, sbuf *o);
void resp_stream_start(const srv_server *S, const srv_req *r, srv_resp_stream *st, sbuf *o);
void resp_stream_collect(const srv_server *S, const srv_req *r, srv_resp_stream *st, sbuf *o);
void resp_stream_end(const srv_req *r, srv_resp_stream *st, sbuf *o);

/* The HTTP side (http.c). */
int http_start(srv_server *S);
void http_stop(srv_server *S);
int http_port(const srv_server *S);

#endif
