/*
 * dsc.h — the public interface of dsc, the DeepSeek-V2/V3/R1 engine in C.
 *
 * Everything the `dsc` tool does goes through this header. Handles are
 * opaque. Every fallible call returns a dsc_status; on failure a one-line
 * message naming the file, tensor or field at fault is kept per thread and
 * returned by dsc_last_error(). The library never exits the process.
 */
#ifndef DSC_H
#define DSC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Status                                                                    */

typedef enum {
    DSC_OK = 0,
    DSC_ERR_IO,          /* a file is missing, unreadable or truncated          */
    DSC_ERR_FORMAT,      /* a file's contents are malformed (JSON, safetensors) */
    DSC_ERR_CONFIG,      /* config.json names an unsupported or invalid value   */
    DSC_ERR_SHAPE,       /* a tensor is missing, of the wrong shape or dtype    */
    DSC_ERR_NOMEM,       /* an allocation or a mapping failed                   */
    DSC_ERR_ARG,         /* an argument is out of range (token id, length, ...) */
    DSC_ERR_CONTEXT,     /* the context is full                                 */
} dsc_status;

/* The message of the last failed call on this thread ("" if none). The
 * string is owned by the library and valid until the next failing call on
 * the same thread. */
const char *dsc_last_error(void);
const char *dsc_status_str(dsc_status s);

/* ------------------------------------------------------------------------ */
/* Model                                                                     */

typedef struct dsc_model dsc_model;

typedef struct {
    int verbose;          /* print what was loaded to stderr                     */
    int keep_page_cache;  /* never drop and re-read weight files that the page  */
                          /* cache holds in 4 KiB pages (see dsc_model_load)    */
    int mlock;            /* lock the weight files in memory (see dsc_model_load) */
} dsc_model_params;

dsc_model_params dsc_model_default_params(void);

/* Loads a checkpoint directory as published on Hugging Face: config.json and
 * model.safetensors, or model-0000k-of-0000n.safetensors shards listed in
 * model.safetensors.index.json. Weights are memory-mapped, not copied, at
 * 2 MiB-aligned addresses marked for huge pages: decode reads every active
 * weight once per token, and on 4 KiB pages the TLB misses cost 10-15% of
 * its speed. Where the page cache holds a big weight file in 4 KiB pages
 * (written just before, or read by another program first) and this kernel
 * would read it in 2 MiB ones, the file's cached pages are dropped and read
 * again, once, unless params->keep_page_cache.
 * With params->mlock the weight files are read in whole and locked in
 * memory (mlock), so that the kernel does not page them out while the
 * model sits idle (proactive reclaim, memory pressure) and the next
 * request does not wait on the disk; the resident set is then every
 * weight, used or not. Where the memory-lock limit (ulimit -l) is too low
 * a one-line warning goes to stderr and the model loads unlocked.
 * On success *out owns the mappings until dsc_model_free(); on failure *out
 * is NULL and nothing stays mapped or allocated. */
dsc_status dsc_model_load(const char *dir, const dsc_model_params *params, dsc_model **out);
void dsc_model_free(dsc_model *model);

/* Bytes of the weight files now resident in memory, and how many of them are
 * mapped by 2 MiB pages (Linux /proc/self/smaps); -1 where unknown. */
dsc_status dsc_model_resident(const dsc_model *model, int64_t *resident, int64_t *huge);

typedef struct {
    const char *model_type;   /* "deepseek_v2" / "deepseek_v3" / "deepseek_v32" */
    int32_t vocab_size;
    int32_t hidden_size;
    int32_t n_layers;         /* num_hidden_layers (MTP layers not counted) */
    int32_t n_heads;
    int32_t kv_lora_rank;
    int32_t qk_rope_head_dim;
    int32_t n_routed_experts; /* 0 for a dense model                      */
    int32_t n_experts_per_tok;
    int32_t max_position_embeddings;
    int32_t bos_token_id;     /* -1 if unset                               */
    int32_t eos_token_id;     /* -1 if unset                               */
    int64_t n_params;         /* parameters used by plain decoding          */
    int64_t weight_bytes;     /* bytes of those parameters as stored        */
    int64_t active_bytes;     /* weight bytes one decode step reads: every   */
                              /* dense weight, the router, the shared experts */
                              /* and K routed experts (mean size), lm_head    */
    int64_t active_params;    /* parameters those bytes hold                */
    int64_t head_params;      /* lm_head's (vocab x hidden): a prompt computes */
                              /* it for its last token only                    */
    int32_t qk_nope_head_dim; /* a head's query/key dims without RoPE        */
    int32_t v_head_dim;       /* a head's value dims                          */
    int32_t index_topk;       /* DeepSeek-V3.2: positions a query keeps; 0 for */
                              /* every other model (dense attention)          */
    int32_t index_n_heads;    /* its indexer's heads                           */
    int32_t index_head_dim;   /* and their dims                                */
    int64_t index_q_bytes;    /* of active_bytes, the indexer's query weights  */
                              /* (wq_b, weights_proj): read only by a step with */
                              /* a token that sees more than index_topk         */
} dsc_model_info;

/* Fills *info; the strings are borrowed from the model. */
void dsc_model_get_info(const dsc_model *model, dsc_model_info *info);

/* ------------------------------------------------------------------------ */
/* Inference context: the latent KV cache and all scratch, sized up front.   */

typedef struct dsc_ctx dsc_ctx;

/* Element type of the latent KV cache. */
typedef enum {
    DSC_KV_F32 = 0,   /* exact: what the reference computes               */
    DSC_KV_BF16,      /* half the memory and bandwidth                     */
    DSC_KV_Q8,        /* int8 + one F16 scale per 32 values (needs          */
                      /* (kv_lora_rank + qk_rope_head_dim) % 32 == 0)       */
} dsc_kv_type;

typedef struct {
    int32_t n_ctx;     /* tokens the latent KV cache holds; 0 = min(4096, max_position_embeddings) */
    int32_t n_batch;   /* prompt tokens evaluated per prefill chunk (>= 1) */
    int32_t n_threads; /* 0 = all online CPUs */
    const char *isa;   /* kernels: NULL/"" = best for this CPU, or "ref", "avx2", "avx512" */
    dsc_kv_type kv_type;
    int32_t n_seq;     /* independent sequences, each with its own cache of n_ctx tokens (0 = 1) */
    int32_t n_mixed;   /* tokens one dsc_eval_mixed step may carry (0 = n_seq; at least n_seq) */
    int32_t mtp;       /* 1: load the checkpoint's MTP module for dsc_spec_step (speculative */
                       /* decoding; its cache is one layer more, plus n_ctx x hidden_size */
                       /* F32 a sequence for the main model's output); 0: off              */
    float mtp_p_min;   /* with mtp: the module guesses only where its softmax gives its   */
                       /* argmax at least this probability, else no guess (-1), so a      */
                       /* doubtful guess costs no row in the main model's pass (llama.cpp's */
                       /* --draft-p-min); 0 = always guess, at most 1                       */
    int32_t batch_invariant; /* 1: every token computed as a decode step computes it (MLA in   */
                       /* the absorbed form, products on the row kernels at most 31 tokens */
                       /* a call), so its logits are the same bits however its prompt is  */
                       /* cut into chunks, batched with other sequences' tokens or taken   */
                       /* in part from a copied or loaded cache (vLLM's batch-invariant    */
                       /* mode); prompts prefill slower. 0: prefill in its fastest forms   */
} dsc_ctx_params;

dsc_ctx_params dsc_ctx_default_params(void);

/* The model must outlive the context. */
dsc_status dsc_ctx_new(dsc_model *model, const dsc_ctx_params *params, dsc_ctx **out);
void dsc_ctx_free(dsc_ctx *ctx);

/* Latent KV cache size in bytes:
 *   n_seq x n_layers x n_ctx x (kv_lora_rank + qk_rope_head_dim) x bytes per element
 * (4 for F32, 2 for BF16, 1 + 2/32 for Q8), n_layers + 1 with params.mtp. */
size_t dsc_ctx_kv_bytes(const dsc_ctx *ctx);
/* With params.mtp, the bytes kept besides for the MTP module's inputs (the
 * main model's output and the token at every position):
 * n_seq x n_ctx x (4 x hidden_size + 4); 0 without. */
size_t dsc_ctx_mtp_bytes(const dsc_ctx *ctx);
int32_t dsc_ctx_n_ctx(const dsc_ctx *ctx);
int32_t dsc_ctx_pos(const dsc_ctx *ctx);   /* tokens already in the cache */
int32_t dsc_ctx_n_threads(const dsc_ctx *ctx);
const char *dsc_ctx_isa(const dsc_ctx *ctx); /* kernel set in use */
const char *dsc_kv_type_name(dsc_kv_type t);  /* "f32", "bf16", "q8" */

/* Kernel sets this CPU can run ("ref", then "avx2", "avx512"), NULL-terminated. */
const char *const *dsc_isa_list(void);

/* Forgets cached tokens from position pos on (0 = empty the cache). */
dsc_status dsc_ctx_truncate(dsc_ctx *ctx, int32_t pos);

/* Appends n tokens at the current position and runs the forward pass.
 * n > 1 evaluates them as a prompt (prefill, chunked by n_batch); n == 1 is
 * one decode step over the latent cache (MLA in absorbed form).
 * If logits is non-NULL it receives the logits after every token, [n, vocab].
 * The logits after the last token are also kept, see dsc_ctx_logits().
 * On failure (bad token id, context full) nothing is appended. */
dsc_status dsc_eval(dsc_ctx *ctx, const int32_t *tokens, int32_t n, float *logits);

/* Logits after the last evaluated token, [vocab]; borrowed, valid until the
 * next dsc_eval / dsc_ctx_truncate / dsc_ctx_free. NULL before any eval,
 * and after a dsc_eval_mixed that did not want its last token's row. */
const float *dsc_ctx_logits(const dsc_ctx *ctx);

/* Sequences. dsc_eval, dsc_ctx_pos and dsc_ctx_truncate act on sequence 0;
 * the calls below name the sequence (0 <= seq < n_seq). */
int32_t dsc_ctx_n_seq(const dsc_ctx *ctx);
int32_t dsc_seq_pos(const dsc_ctx *ctx, int32_t seq);
dsc_status dsc_seq_truncate(dsc_ctx *ctx, int32_t seq, int32_t pos);
dsc_status dsc_eval_seq(dsc_ctx *ctx, int32_t seq, const int32_t *tokens, int32_t n, float *logits);

/* One decode step for n distinct sequences in one pass over the weights
 * (continuous batching): token i is appended to sequence seqs[i]. logits
 * receives [n, vocab]. On failure nothing is appended. */
dsc_status dsc_decode_batch(dsc_ctx *ctx, const int32_t *seqs, const int32_t *tokens, int32_t n, float *logits);

/* The same for a mix (continuous batching with prompts joining the step):
 * a sequence may appear several times, its tokens appended in order at
 * consecutive positions, so a prompt chunk shares the pass over the weights
 * with other sequences' decode tokens. n <= max(n_seq, n_mixed); attention
 * is in the absorbed (decode) form. logits receives the rows of the tokens
 * with want[i] != 0, in order (every token's when want is NULL). On failure
 * nothing is appended. */
dsc_status dsc_eval_mixed(dsc_ctx *ctx, const int32_t *seqs, const int32_t *tokens, int32_t n, const uint8_t *want,
                          float *logits);

/* Makes sequence dst a copy of the first n_tokens of sequence src (a shared
 * prompt: prefill once, sample many). */
dsc_status dsc_seq_copy(dsc_ctx *ctx, int32_t src, int32_t dst, int32_t n_tokens);

/* The latent cache of the first n_tokens of a sequence as bytes (a prompt
 * cache that outlives the process). dsc_seq_state_size gives the size;
 * dsc_seq_load makes seq hold exactly those n_tokens. The bytes are only
 * valid for the same model, cache type and mtp setting (with mtp they also
 * hold the MTP module's inputs, from which it remakes its cache). */
size_t dsc_seq_state_size(const dsc_ctx *ctx, int32_t n_tokens);
dsc_status dsc_seq_save(const dsc_ctx *ctx, int32_t seq, int32_t n_tokens, void *buf);
dsc_status dsc_seq_load(dsc_ctx *ctx, int32_t seq, int32_t n_tokens, const void *buf);

/* Index of the largest logit (first one on ties); -1 when n < 1. */
int32_t dsc_argmax(const float *logits, int32_t n);

/* ------------------------------------------------------------------------ */
/* Sampling                                                                  */

typedef struct {
    float temp;            /* 0 = greedy (finite; so small that 1/temp is not: greedy) */
    float top_p;           /* nucleus: keep the smallest set with mass >= top_p (1 = off) */
    int32_t top_k;         /* keep the k most likely (0 = off)                 */
    float min_p;           /* drop tokens below min_p x p(max) (0 = off)       */
    float repeat_penalty;  /* divide positive / multiply negative logits of    */
    int32_t repeat_last_n; /*   the last repeat_last_n tokens (1 = off; <= 2^24) */
    uint64_t seed;         /* same seed, same output                           */
} dsc_sampler_params;

/* Defaults for R1-style reasoning models: temperature 0.6, top-p 0.95. */
dsc_sampler_params dsc_sampler_default_params(void);

typedef struct dsc_sampler dsc_sampler;

/* All buffers are allocated here; sampling itself never allocates. */
dsc_status dsc_sampler_new(const dsc_sampler_params *params, int32_t n_vocab, dsc_sampler **out);
void dsc_sampler_free(dsc_sampler *s);

/* Picks the next token from logits [n_vocab] (not modified). Returns -1
 * (dsc_last_error() says why) when a logit is NaN or +Inf, or all are -Inf,
 * or s or logits is NULL. */
int32_t dsc_sampler_sample(dsc_sampler *s, const float *logits);

/* Records a token of the sequence (prompt or generated) for the repeat penalty. */
void dsc_sampler_accept(dsc_sampler *s, int32_t token);
void dsc_sampler_reset(dsc_sampler *s);

/* Speculative decoding with the checkpoint's multi-token-prediction (MTP)
 * module (DeepSeek-V3's layer num_hidden_layers; a context made with
 * params.mtp = 1). The module guesses the token after next from the main
 * model's output at the last position and the next token; one pass of the
 * main model then evaluates next and the guess together. Every token is
 * still sampled from the main model's logits, in order, with smp, so the
 * output is the same, token for token, as evaluating one token at a time
 * and sampling after each (the same sampler and seed): the guess only
 * decides how many tokens a pass yields.
 *
 * dsc_mtp_draft: the module's guess (its argmax) for the token after next,
 * where next is the token sampled after the sequence's last one; it first
 * brings the module's cache up to the sequence's last position. *draft is
 * -1 (no guess) where the guess's probability is below params.mtp_p_min. */
dsc_status dsc_mtp_draft(dsc_ctx *ctx, int32_t seq, int32_t next, int32_t *draft);

/* dsc_mtp_draft for n different sequences at once (a server's slots): one
 * pass of the module for all of them, draft[i] the guess for seqs[i] after
 * next[i]. A sequence whose module cache lags by more than the batch holds
 * (a new prompt) is first brought up alone. */
dsc_status dsc_mtp_draft_batch(dsc_ctx *ctx, int32_t n, const int32_t *seqs, const int32_t *next, int32_t *draft);

/* Evaluates next, with draft after it in the same pass when draft >= 0 and
 * the sequence has room for both; samples the token after next with smp
 * and dsc_sampler_accept()s it; when that token is draft, samples and
 * accepts the one after it too. out gets the 1 or 2 tokens sampled,
 * *n_out their count; the sequence then holds next, and out[0] too when
 * *n_out is 2 (a draft that was not taken is not kept). dsc_ctx_logits()
 * gives the logits out[*n_out - 1] was sampled from. */
dsc_status dsc_spec_verify(dsc_ctx *ctx, int32_t seq, dsc_sampler *smp, int32_t next, int32_t draft, int32_t out[2],
                           int32_t *n_out);

/* dsc_mtp_draft, then dsc_spec_verify with its guess: one step of
 * speculative decoding. max_out 1 asks for one token (no draft). */
dsc_status dsc_spec_step(dsc_ctx *ctx, int32_t seq, dsc_sampler *smp, int32_t next, int32_t max_out, int32_t out[2],
                         int32_t *n_out);

/* Guesses dsc_spec_verify checked and how many it took, since the context
 * was made (0 and 0 without MTP). */
void dsc_spec_stats(const dsc_ctx *ctx, int64_t *drafted, int64_t *accepted);

/* Guesses the module withheld since the context was made: their probability
 * was below params.mtp_p_min (0 without MTP). */
int64_t dsc_spec_withheld(const dsc_ctx *ctx);

/* ------------------------------------------------------------------------ */
/* Machine limits, for benchmarks                                            */

typedef struct {
    double read_gb_s;     /* best read bandwidth over a buffer far larger than the caches, two ways */
    double fma_gflop_s;   /* register-only FMA peak of the kernel set, all threads          */
    int32_t n_threads;
    const char *isa;
} dsc_machine;

/* Measures this machine with n_threads (0 = all CPUs, at most 1024) and kernel set isa
 * (NULL = best). Takes about a second and 512 MiB of memory. */
dsc_status dsc_measure_machine(int32_t n_threads, const char *isa, dsc_machine *out);

/* Reads buf (n floats, far larger than the caches) once with the context's
 * threads, as dsc_measure_machine reads its buffer the faster of its two
 * ways (several runs a thread, fetched ahead); returns the seconds it took
 * (negative if n < 1). For a read probe between decode steps, so that both
 * see the same state of a shared machine. */
double dsc_ctx_read_pass(dsc_ctx *ctx, const float *buf, int64_t n);

/* Resident set size of this process in bytes (0 if unknown). */
size_t dsc_rss_bytes(void);

/* FLOPs of the attention of a prefill of n tokens after pos0 cached ones,
 * all layers, beyond each token's products with the weights (kv_b's
 * included once a token): in the form the prefill takes, the decompressed
 * (the keys and values of the pos0 earlier positions decompressed again, a
 * score over qk_nope + qk_rope dims and a weighted sum over v_head_dim for
 * each position a token sees) or, where that takes fewer, the absorbed
 * (over kv_lora_rank + qk_rope and kv_lora_rank dims), always the absorbed
 * with params.batch_invariant; *absorbed (if not NULL) says which.
 * DeepSeek-V3.2: a token that sees more than index_topk positions attends
 * to index_topk of them in the absorbed form, and its indexer scores every
 * position it sees (index_n_heads x index_head_dim each), counted too. */
double dsc_prefill_attn_flops(const dsc_ctx *ctx, int32_t pos0, int32_t n, int *absorbed);

/* Where decode time goes, counted while timing is on (off by default; a
 * clock read around each chunk of rows, which steps do not feel: on against
 * off, 0.99 and 1.01 of a V2-Lite-4L Q8 step, medians of 60 pairs). */
typedef struct {
    double rows_s;     /* the weight products of few tokens (decode; kv_b's absorbed ones too), summed over the threads */
    double rows_bytes; /* the weight bytes they read */
    double attn_s;     /* the decode attention over the latent cache, wall time */
} dsc_timing;

/* Turns timing on (zeroing the counters) or off. */
void dsc_ctx_set_timing(dsc_ctx *ctx, int on);
dsc_timing dsc_ctx_timing(const dsc_ctx *ctx);

/* ------------------------------------------------------------------------ */
/* Safetensors output (logits, gradients, checkpoints)                      */

typedef struct {
    const char *name;
    const char *dtype;   /* safetensors dtype name: "F32", "BF16", "I32", ... */
    int ndim;            /* <= 8 */
    int64_t shape[8];
    const void *data;    /* product(shape) elements of dtype */
} dsc_tensor_view;

/* Writes n tensors to path; meta_key/meta_value (may be NULL) become the
 * single entry of __metadata__. The data starts on a 64-byte boundary of the
 * file, the tensors whose size is a multiple of 64 bytes first (each then
 * 64-byte aligned), then the others by element size, largest first. */
dsc_status dsc_safetensors_write(const char *path, const dsc_tensor_view *tensors, int n, const char *meta_key,
                                 const char *meta_value);

/* ------------------------------------------------------------------------ */
/* Random checkpoints (benchmarks, training from scratch)                    */

typedef struct {
    uint64_t seed;
    const char *dtype;   /* "bf16" (default), "f32" or "fp8" (e4m3 + F32 weight_scale_inv blocks) */
    int32_t n_shards;    /* 0/1: model.safetensors; N > 1: N shards + model.safetensors.index.json */
} dsc_init_params;

dsc_init_params dsc_init_default_params(void);

/* Writes a random-weight checkpoint for config_path (any config dsc loads)
 * into out_dir (created if absent): config.json plus the weights in the
 * Hugging Face layout, MTP layers included. Deterministic in the seed. */
dsc_status dsc_init_checkpoint(const char *config_path, const char *out_dir, const dsc_init_params *params);

/* ------------------------------------------------------------------------ */
/* Quantisation                                                              */

/* Writes a copy of the checkpoint in in_dir to out_dir with its projection
 * matrices in dsc's block formats: type "q8" (int8, one F16 scale per 32
 * values: every projection and the output head) or "q4" (4-bit blocks for
 * the routed experts, Q8 for the rest). Matrices whose columns are not a
 * multiple of 32, the embedding, norms and router stay as they were (FP8
 * becomes BF16). Type "copy" changes no tensor and no config field: the
 * checkpoint rewritten in dsc's layout (data 64-byte aligned, see
 * dsc_safetensors_write), which decoded 1-5% faster on AVX2 than the 8-byte
 * alignment of most published files. Loadable like any checkpoint. On
 * failure out_dir may hold partial weights but no config.json. */
dsc_status dsc_quantize(const char *in_dir, const char *out_dir, const char *type);

/* ------------------------------------------------------------------------ */
/* Tokenizer: byte-level BPE from a Hugging Face tokenizer.json              */

typedef struct dsc_tokenizer dsc_tokenizer;

/* Loads tokenizer.json (vocabulary, ranked merges, added tokens, the
 * pre-tokenizer's Split regexes). On failure *out is NULL. */
dsc_status dsc_tokenizer_load(const char *path, dsc_tokenizer **out);
void dsc_tokenizer_free(dsc_tokenizer *tok);

/* Number of ids (base vocabulary + added tokens; the largest id + 1). */
int32_t dsc_tokenizer_n_vocab(const dsc_tokenizer *tok);

/* Id of a token given its exact text (e.g. "<｜end▁of▁sentence｜>"), or -1. */
int32_t dsc_tokenizer_find(const dsc_tokenizer *tok, const char *text);

/* Encodes len bytes of UTF-8 text (no BOS is added). When parse_special is
 * non-zero, added/special tokens written in the text are matched as single
 * tokens. Writes at most cap ids to ids and the total count to *n_ids; if
 * the total exceeds cap, returns DSC_ERR_ARG with *n_ids set to the count
 * needed. Invalid UTF-8 is DSC_ERR_ARG. */
dsc_status dsc_tokenize(const dsc_tokenizer *tok, const char *text, size_t len, int parse_special,
                        int32_t *ids, size_t cap, size_t *n_ids);

/* The raw bytes of one token (byte-level decoding undone); may be part of a
 * UTF-8 character. Writes at most cap bytes and the length to *n_bytes (no
 * terminating NUL); DSC_ERR_ARG for an id out of range or a short buffer. */
dsc_status dsc_token_bytes(const dsc_tokenizer *tok, int32_t id, char *buf, size_t cap, size_t *n_bytes);

/* Decodes ids to UTF-8 text into buf (NUL-terminated, at most cap bytes with
 * the NUL); *n_bytes gets the length needed without the NUL. */
dsc_status dsc_detokenize(const dsc_tokenizer *tok, const int32_t *ids, size_t n, char *buf, size_t cap,
                          size_t *n_bytes);

/* Streaming-safe decoding: bytes of a token that end inside a UTF-8
 * character are held back until the next token completes it. */
typedef struct {
    char pending[8];
    int n_pending;
} dsc_utf8_stream;

/* Appends the bytes of token id to the stream and writes the complete UTF-8
 * text now available to out (NUL-terminated, at most cap bytes); *n_out gets
 * its length. Invalid sequences come out as U+FFFD. */
dsc_status dsc_utf8_stream_push(dsc_utf8_stream *st, const dsc_tokenizer *tok, int32_t id, char *out, size_t cap,
                                size_t *n_out);

/* Whether id is one of tokenizer.json's added_tokens (chat markers, <think>
 * and the like), not a piece of text of the base vocabulary. */
int dsc_token_is_added(const dsc_tokenizer *tok, int32_t id);

/* ------------------------------------------------------------------------ */
/* JSON mode: output held to one JSON object (response_format json_object)   */

#define DSC_JSON_DEPTH 64  /* containers open at once, at most            */
#define DSC_JSON_MAX_INDENT 20 /* a whitespace run: none, one space, or a newline and at most this many spaces or tabs */

/* Where a byte stream stands in one JSON object (RFC 8259): zeroed by
 * dsc_json_start, advanced by dsc_json_feed, a plain value to copy. */
typedef struct {
    uint64_t kinds; /* bit d: the container at depth d is an object */
    uint8_t mode, depth, in_key, lit, n, lo, hi, ws;
} dsc_json_state;

void dsc_json_start(dsc_json_state *st);
/* 0 and st advanced when bytes keep the stream a prefix of one JSON object
 * (whitespace runs bounded), -1 and st unchanged otherwise. */
int dsc_json_feed(dsc_json_state *st, const char *bytes, size_t n);
/* Whether the object is complete (then nothing more may follow). */
int dsc_json_complete(const dsc_json_state *st);

/* The bytes of every token of a vocabulary of n_logits ids (added tokens
 * and ids the tokenizer lacks never take part; eos ends a complete object). */
typedef struct dsc_json_mask dsc_json_mask;
dsc_status dsc_json_mask_new(const dsc_tokenizer *tok, int32_t n_logits, int32_t eos, dsc_json_mask **out);
void dsc_json_mask_free(dsc_json_mask *m);
/* Sets to -INFINITY the logits of the tokens that cannot come next: all but
 * eos once the object is complete, eos before. */
void dsc_json_mask_apply(const dsc_json_mask *m, const dsc_json_state *st, float *logits);
/* Advances st by the token sampled; -1 (st unchanged) if it could not come next. */
int dsc_json_mask_accept(const dsc_json_mask *m, dsc_json_state *st, int32_t id);

/* ------------------------------------------------------------------------ */
/* Structured output: one JSON object a JSON Schema accepts                  */

/* A schema compiled (src/runtime/json_schema.c lists what it takes; other
 * keywords, and alternatives that begin alike, but objects told apart by a
 * tag, are refused with an error naming the place, DSC_ERR_ARG). The root
 * must be an object. */
typedef struct dsc_json_schema dsc_json_schema;
dsc_status dsc_json_schema_new(const char *json, size_t len, dsc_json_schema **out);
void dsc_json_schema_free(dsc_json_schema *s);

#define DSC_SCHEMA_DEPTH 16 /* containers open at once, at most */

/* Where a byte stream stands in a document of a schema: set by
 * dsc_schema_start, a plain value to copy. */
typedef struct {
    uint16_t node[DSC_SCHEMA_DEPTH];  /* each open container's schema        */
    uint64_t seen[DSC_SCHEMA_DEPTH];  /* an object's properties given        */
    uint16_t count[DSC_SCHEMA_DEPTH]; /* an array's items                    */
    uint32_t kinds;                   /* bit d: the container at depth d is an object */
    uint32_t pos, chars;              /* key / enum bytes matched; a string's characters */
    uint16_t val, lo, hi;             /* the value's schema; key / enum candidates */
    uint8_t mode, depth, in_key, lit, n, ulo, uhi, ws;
    int64_t num_int;                  /* a bounded number so far: its integer part, */
    int32_t num_frac;                 /* its fraction's digits as an integer,      */
    uint8_t num_ni, num_nf, num_neg;  /* the digits of each, its sign              */
    uint64_t re_set;                  /* a string of a pattern: its automaton's state */
} dsc_schema_state;

void dsc_schema_start(const dsc_json_schema *s, dsc_schema_state *st);
/* 0 and st advanced when the bytes keep the stream a prefix of a document
 * the schema accepts, -1 and st unchanged otherwise. */
int dsc_schema_feed(const dsc_json_schema *s, dsc_schema_state *st, const char *bytes, size_t n);
int dsc_schema_complete(const dsc_schema_state *st);
/* As dsc_json_mask_apply / _accept, held to the schema (m: the vocabulary's bytes). */
void dsc_schema_mask_apply(const dsc_json_schema *s, const dsc_json_mask *m, const dsc_schema_state *st, float *logits);
int dsc_schema_mask_accept(const dsc_json_schema *s, const dsc_json_mask *m, dsc_schema_state *st, int32_t id);

/* ------------------------------------------------------------------------ */
/* Tool calls: output held to DeepSeek's tool-call format                    */

/* The format (DeepSeek-V3's template), after any text:
 *   <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\nARGS\n```<｜tool▁call▁end｜>
 *   ["\n"]<｜tool▁call▁begin｜>... (more calls)  <｜tool▁calls▁end｜>
 * with NAME one of the functions offered and ARGS one JSON object (as in
 * JSON mode). A grammar holds the names and the markers' ids. */
typedef struct dsc_tool_grammar dsc_tool_grammar;

#define DSC_TOOL_MAX 128      /* functions offered at most                  */
#define DSC_TOOL_NAME_MAX 64  /* bytes of a name: [A-Za-z0-9_.-], at least 1 */

/* n_names 0: text only, the calls' markers never come; required: the output
 * opens with the calls (text none); parallel: more than one call. Fails
 * (DSC_ERR_ARG) when the tokenizer lacks a marker or a name is not one. */
dsc_status dsc_tool_grammar_new(const dsc_tokenizer *tok, const char *const *names, int n_names, int required,
                                int parallel, dsc_tool_grammar **out);
/* The same in a given format: DSC_TOOL_FORMAT_V3 (above) or
 * DSC_TOOL_FORMAT_V31, DeepSeek-V3.1's: each call
 *   <｜tool▁call▁begin｜>NAME<｜tool▁sep｜>ARGS<｜tool▁call▁end｜>
 * and the calls chained with nothing between them. */
enum { DSC_TOOL_FORMAT_V3, DSC_TOOL_FORMAT_V31 };
dsc_status dsc_tool_grammar_new_format(const dsc_tokenizer *tok, const char *const *names, int n_names, int required,
                                       int parallel, int format, dsc_tool_grammar **out);
int dsc_tool_grammar_format(const dsc_tool_grammar *g);
void dsc_tool_grammar_free(dsc_tool_grammar *g);

/* The arguments of function `name` held to a schema (borrowed: it must
 * outlive g) instead of to any JSON object. */
dsc_status dsc_tool_grammar_set_schema(dsc_tool_grammar *g, const char *name, const dsc_json_schema *schema);

/* Where an output stands: set by dsc_tool_start, a plain value to copy. */
typedef struct {
    uint8_t phase;
    uint16_t pos, lo, hi;  /* a literal's or the names' bytes matched; the names still possible */
    dsc_json_state args;   /* the arguments, of a function without a schema */
    dsc_schema_state sargs; /* ... of one with */
} dsc_tool_state;

enum { DSC_TOOL_TEXT, DSC_TOOL_CALLING, DSC_TOOL_DONE };

void dsc_tool_start(const dsc_tool_grammar *g, dsc_tool_state *st);
/* DSC_TOOL_TEXT before the calls, DSC_TOOL_CALLING in them, DSC_TOOL_DONE
 * after <｜tool▁calls▁end｜> (then only m's eos may come). */
int dsc_tool_where(const dsc_tool_state *st);
/* As dsc_json_mask_apply / dsc_json_mask_accept, with m the vocabulary's
 * bytes: the tokens that cannot come next set to -INFINITY; st advanced by
 * the token sampled, -1 (st unchanged) if it could not come. */
void dsc_tool_mask_apply(const dsc_tool_grammar *g, const dsc_json_mask *m, const dsc_tool_state *st, float *logits);
int dsc_tool_mask_accept(const dsc_tool_grammar *g, const dsc_json_mask *m, dsc_tool_state *st, int32_t id);
/* The marker ids: [0] <｜tool▁calls▁begin｜> [1] <｜tool▁calls▁end｜>
 * [2] <｜tool▁call▁begin｜> [3] <｜tool▁call▁end｜> [4] <｜tool▁sep｜>. */
const int32_t *dsc_tool_markers(const dsc_tool_grammar *g);

/* ------------------------------------------------------------------------ */
/* Chat: the DeepSeek-V3 / R1 template and the reasoning split               */

typedef struct {
    const char *name;      /* the function called */
    const char *arguments; /* its arguments: a JSON object, as text */
} dsc_tool_call;

typedef struct {
    const char *role;    /* "system", "user", "assistant" or "tool" (a call's result) */
    const char *content; /* an assistant's with tool calls may be "" */
    const dsc_tool_call *tool_calls; /* assistant: the calls it made (n_tool_calls) */
    size_t n_tool_calls;
} dsc_chat_message;

enum {
    DSC_CHAT_GENERATION_PROMPT = 1, /* end with "<｜Assistant｜>" to be continued  */
    DSC_CHAT_REASONING = 2,         /* R1: the answer opens with "<think>\n";     */
                                    /* assistant history keeps only the text after "</think>" */
    DSC_CHAT_PREFIX = 4,            /* the last message, the assistant's, is the start */
                                    /* of the answer: left open to be continued (no */
                                    /* end of sentence, no generation prompt after it) */
    DSC_CHAT_HYBRID = 8,            /* DeepSeek-V3.1's template: thinking switched per */
                                    /* conversation, on with DSC_CHAT_REASONING (below) */
    DSC_CHAT_DSML = 16,             /* with DSC_CHAT_HYBRID: DeepSeek-V3.2's own encoding */
                                    /* (it ships no chat_template): the system messages */
                                    /* joined with nothing between them, the tools'     */
                                    /* description after them, calls as DSML blocks,    */
                                    /* results as <function_results> (dsc_dsml_parse    */
                                    /* reads the calls back)                            */
};

/* Token ids of the conversation in the DeepSeek-V3/R1 template:
 *   BOS system... <｜User｜>u1 <｜Assistant｜>a1<｜end▁of▁sentence｜> <｜User｜>u2 <｜Assistant｜>
 * Template markers are special tokens; message text is encoded as plain text
 * (a user cannot inject markers), the text between two markers as one
 * string, as a template's output is tokenized. Output and errors as for
 * dsc_tokenize.
 * Tool calls and their results as DeepSeek-V3's template writes them (its
 * 0324 revision: every call list closed, every run of results opened):
 *   <｜Assistant｜>text<｜tool▁calls▁begin｜>CALL["\n"CALL...]<｜tool▁calls▁end｜><｜end▁of▁sentence｜>
 *   <｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>r1<｜tool▁output▁end｜>["\n"<｜tool▁output▁begin｜>r2...]<｜tool▁outputs▁end｜>
 * CALL as in the tool-call format above; the results are closed before the
 * next user turn, or open the next answer (no <｜Assistant｜>, no <think>).
 * With DSC_CHAT_HYBRID, DeepSeek-V3.1's template instead: an answer to a
 * user turn opens <｜Assistant｜> then "<think>" (DSC_CHAT_REASONING) or
 * "</think>" (so does a prefix to continue), earlier answers keep the text
 * after their first "</think>" and open with "</think>", calls are
 * <｜tool▁call▁begin｜>NAME<｜tool▁sep｜>ARGS<｜tool▁call▁end｜> chained, each
 * result <｜tool▁output▁begin｜>r<｜tool▁output▁end｜>, and after results
 * the answer goes on with no marker (none is asked for). */
dsc_status dsc_chat_tokenize(const dsc_tokenizer *tok, const dsc_chat_message *msgs, size_t n, unsigned flags,
                             int32_t *ids, size_t cap, size_t *n_ids);
/* The same with tool definitions: `tools` (NULL: none) joins the system
 * prompt after a blank line (or is it), its chat markers taken as special
 * tokens, as a template renders them. */
dsc_status dsc_chat_tokenize_tools(const dsc_tokenizer *tok, const dsc_chat_message *msgs, size_t n, const char *tools,
                                   unsigned flags, int32_t *ids, size_t cap, size_t *n_ids);

/* Reads tokenizer_config.json's chat_template and sets DSC_CHAT_REASONING in
 * *flags when the template opens answers with "<think>" (R1 and its distills),
 * DSC_CHAT_HYBRID when it is DeepSeek-V3.1's (answers opened "</think>"
 * unless thinking; thinking is then off until the caller sets it).
 * No file is DSC_OK (the plain V3 template); one that is not a JSON object,
 * or whose chat_template is of the wrong type, is an error. */
dsc_status dsc_chat_detect(const char *tokenizer_config_path, unsigned *flags);
/* flags (from dsc_chat_detect) for the model described by info: a
 * DeepSeek-V3.2 checkpoint (index_topk > 0) whose tokenizer_config.json has
 * no V3.1 template takes DSC_CHAT_HYBRID | DSC_CHAT_DSML (thinking as set). */
unsigned dsc_chat_model_flags(unsigned flags, const dsc_model_info *info);

/* DeepSeek-V3.2's function calls in generated text: a block
 *   <｜DSML｜function_calls>
 *   <｜DSML｜invoke name="NAME">
 *   <｜DSML｜parameter name="KEY" string="true|false">VALUE</｜DSML｜parameter>
 *   ...
 *   </｜DSML｜invoke>
 *   ...
 *   </｜DSML｜function_calls>
 * after the answer's text (a string VALUE as it is, any other as JSON).
 * dsc_dsml_feed passes the answer's text through to out (at most n +
 * DSC_DSML_HOLD bytes) but for what may open the block (whitespace, then a
 * beginning of its tag), held back until the next bytes tell; from the
 * block's tag on the bytes gather in st->block, and the call returns 1 once
 * its closing tag is in (more bytes are then dropped). dsc_dsml_pending:
 * the bytes held back or the block still open, for the end of the text
 * (then the splitter passes everything through). Zero-initialise; free with
 * dsc_dsml_free. */
#define DSC_DSML_HOLD 64
typedef struct {
    int state;          /* 0 text, 1 in the block, 2 the block closed, 3 text only */
    char hold[DSC_DSML_HOLD];
    size_t n_hold;
    char *block;        /* the block's bytes from its opening tag (owned) */
    size_t n_block, cap_block;
    int oom;
} dsc_dsml_split;
int dsc_dsml_feed(dsc_dsml_split *st, const char *in, size_t n, char *out, size_t *n_out);
const char *dsc_dsml_pending(dsc_dsml_split *st, size_t *n);
void dsc_dsml_free(dsc_dsml_split *st);
/* The calls of a block (its text, n bytes): *calls (n_calls) with their
 * names and arguments (a JSON object each) owned, freed by
 * dsc_tool_calls_free. A block out of the format is DSC_ERR_FORMAT naming
 * what is wrong. */
dsc_status dsc_dsml_parse(const char *text, size_t n, dsc_tool_call **calls, size_t *n_calls);
void dsc_tool_calls_free(dsc_tool_call *calls, size_t n_calls);

/* Splits generated text into reasoning (between <think> and </think>) and
 * answer, across token boundaries. The tags themselves are dropped. */
typedef struct {
    int in_think;
    char hold[16];  /* a possible tag prefix not yet decided */
    int n_hold;
} dsc_think_split;

/* Feeds n bytes; writes reasoning bytes to reason (capacity >= n + 16) and
 * answer bytes to answer (same), with their lengths. dsc_think_flush emits
 * what is held back at the end of the output. */
void dsc_think_feed(dsc_think_split *st, const char *in, size_t n, char *reason, size_t *n_reason, char *answer,
                    size_t *n_answer);
void dsc_think_flush(dsc_think_split *st, char *reason, size_t *n_reason, char *answer, size_t *n_answer);

#ifdef __cplusplus
}
#endif
#endif /* DSC_H */
