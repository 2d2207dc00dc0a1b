/*
 * model.h — the in-memory DeepSeek-V2/V3/V3.2 model and inference context.
 *
 * Shapes follow the Hugging Face checkpoints: matrices are [out, in] and
 * y = W x. Notation used in the comments below:
 *   D = hidden_size, H = num_attention_heads, R = kv_lora_rank,
 *   Dn = qk_nope_head_dim, Dr = qk_rope_head_dim, Dv = v_head_dim,
 *   Dq = Dn + Dr, Rq = q_lora_rank, E = n_routed_experts, K = num_experts_per_tok,
 *   F = intermediate_size, Fm = moe_intermediate_size, S = n_shared_experts.
 */
#ifndef DSC_MODELS_MODEL_H
#define DSC_MODELS_MODEL_H

#include "core/threadpool.h"
#include "dsc.h"
#include "io/config.h"
#include "io/safetensors.h"
#include "kernels/kernels.h"

typedef struct {
    dsc_mat gate;  /* (Fx, D) */
    dsc_mat up;    /* (Fx, D) */
    dsc_mat down;  /* (D, Fx) */
} dsc_mlp;

typedef struct {
    const float *attn_norm;   /* (D)                     input_layernorm           */
    dsc_mat q_a;              /* (Rq, D)                 q LoRA only               */
    const float *q_a_norm;    /* (Rq)                    q LoRA only               */
    dsc_mat q_b;              /* (H * Dq, Rq)            q LoRA only               */
    dsc_mat q;                /* (H * Dq, D)             without q LoRA (q_proj)   */
    dsc_mat kv_a;             /* (R + Dr, D)             kv_a_proj_with_mqa        */
    const float *kv_a_norm;   /* (R)                                               */
    dsc_mat kv_b;             /* (H * (Dn + Dv), R)      per head: Dn rows of W_UK, then Dv rows of W_UV */
    dsc_mat o;                /* (D, H * Dv)             o_proj                    */
    /* DeepSeek-V3.2's lightning indexer (cfg.index_topk > 0), Hi heads of Di:
     * self_attn.indexer.* */
    dsc_mat iq;               /* (Hi * Di, Rq)           wq_b                      */
    dsc_mat ik;               /* (Di, D)                 wk                        */
    const float *ik_norm_w;   /* (Di)                    k_norm (LayerNorm) weight */
    const float *ik_norm_b;   /* (Di)                    and bias                  */
    dsc_mat iw;               /* (Hi, D)                 weights_proj              */
    const float *ffn_norm;    /* (D)                     post_attention_layernorm  */
    int is_moe;
    dsc_mlp mlp;              /* dense layer: Fx = F                               */
    dsc_mat router;           /* (E, D)                  mlp.gate                  */
    const float *router_bias; /* (E)                     e_score_correction_bias (noaux_tc) */
    dsc_mlp *experts;         /* [E], Fx = Fm                                      */
    int has_shared;
    dsc_mlp shared;           /* Fx = Fm * S                                       */
} dsc_layer;

/* One tensor name -> tensor across all shards. */
typedef struct {
    const st_tensor *t;
    const char *file;
    int used; /* bound to the model (or its MTP module) */
} dsc_tensor_ref;

/* DeepSeek-V3's multi-token-prediction module (report, section 2.2), as
 * V3 checkpoints store it at layer index num_hidden_layers: the decoder
 * layer's tensors plus its own embedding, projection and head. Loaded by
 * model_load_mtp, for training and for drafting in speculative decoding
 * (a context made with params.mtp); plain decoding ignores it. */
typedef struct {
    dsc_layer layer;
    dsc_mat eh_proj;          /* (D, 2D)                 [enorm(embed); hnorm(h)] -> D */
    const float *enorm;       /* (D)                                               */
    const float *hnorm;       /* (D)                                               */
    dsc_mat embed;            /* (V, D)                  embed_tokens              */
    const float *head_norm;   /* (D)                     shared_head.norm          */
    dsc_mat head;             /* (V, D)                  shared_head.head          */
} dsc_mtp;

struct dsc_model {
    dsc_config cfg;
    char *dir;
    st_file *files;           /* the shards, mapped                                */
    int n_files;
    dsc_tensor_ref *index;    /* all tensors, sorted by name                       */
    int n_index;
    void **owned;             /* allocations freed with the model                  */
    int n_owned, cap_owned;

    dsc_mat embed;            /* (V, D)                  model.embed_tokens        */
    dsc_layer *layers;        /* [n_layers]                                        */
    const float *final_norm;  /* (D)                     model.norm                */
    dsc_mat lm_head;          /* (V, D)                                            */

    double *rope_inv_freq;    /* (Dr / 2)                YaRN-blended frequencies  */
    double rope_mscale;       /* multiplies cos and sin (YaRN)                     */
    float softmax_scale;      /* Dq^-0.5 x mscale^2                               */
    int64_t n_params, weight_bytes;
    int64_t active_bytes, active_params; /* read per decoded token, see dsc_model_info */
    int64_t index_q_bytes;    /* V3.2: the indexer's query weights, see dsc_model_info */
    dsc_mtp *mtp;             /* the first MTP module once model_load_mtp ran, else NULL */
};

/* Attention / FFN scratch, all pointing into one allocation made by
 * dsc_ctx_new; B = n_batch, T = n_ctx. */
typedef struct {
    float *x;       /* (B, D)          residual stream                          */
    float *xn;      /* (B, D)          normed input of a sub-layer              */
    float *y;       /* (B, D)          sub-layer output                         */
    float *qa;      /* (B, Rq)                                                  */
    float *q;       /* (B, H * Dq)                                              */
    float *kva;     /* (B, R + Dr)                                              */
    float *attn;    /* (B, H * Dv)     attention output before o_proj           */
    float *clat;    /* (T, R)          cached latents as F32, contiguous (prefill) */
    float *ckpe;    /* (T, Dr)         cached rope keys as F32 (prefill)        */
    float *qext;    /* (S, H, R + Dr)  absorbed queries (decode, S = n_abs)      */
    float *dpart;   /* (S, MLA_DEC_CHUNKS, H, R + 2) per chunk of positions and head:
                     * the attention-weighted latents, then the max score and
                     * the sum of exp(score - max) (decode)                      */
    int32_t *tpos;  /* (B)             position of each token of the batch      */
    int32_t *tseq;  /* (B)             its sequence                             */
    float *hg;      /* (B, Fmax)       FFN gate activations                     */
    float *hu;      /* (B, Fmax)       FFN up activations                       */
    float *rlogit;  /* (B, E)          router scores                            */
    float *rscore;  /* MOE_ROUTE_SCRATCH(E, n_group) routing scratch            */
    int32_t *ridx;  /* (B, K)          chosen experts                           */
    float *rw;      /* (B, K)          their weights                            */
    int32_t *etok;  /* (B)             a wave of experts' (token, expert) pairs:
                     *                 each pair's token (prefill MoE)          */
    float *ew;      /* (B)             and routing weight                       */
    float *ex;      /* (B, D)          its input                                */
    float *ey;      /* (B, D)          its expert's output                      */
    /* Few-token MoE (n < DSC_FEW_TOKENS): all routed (token, expert) pairs at
     * once, P = min(B, DSC_FEW_TOKENS - 1) x K of them, in expert order. */
    int32_t *ptok;  /* (P)             each pair's token                        */
    float *pw;      /* (P)             and routing weight                       */
    float *px;      /* (P, D)          its input                                */
    float *pg;      /* (P, Fm)         gate activations                         */
    float *pu;      /* (P, Fm)         up activations                           */
    float *py;      /* (P, D)          expert outputs                           */
    float *mcat;    /* (B, 2D)         the MTP module's [enorm(embed); hnorm(h)] (params.mtp) */
    int32_t *mnext; /* (B)             and the tokens it embeds                 */
    uint8_t *mwant; /* (B)             the rows whose draft is wanted           */
    /* DeepSeek-V3.2's indexer (cfg.index_topk > 0; NULL otherwise). */
    float *iq;      /* (B, Hi * Di)    index queries, FP8 values               */
    float *iw;      /* (B, Hi)         head weights, with the query's FP8 scale */
    float *ik;      /* (B, Di)         index keys before they are cached        */
    float *iscore;  /* (S, T)          index scores of a group of tokens        */
    uint64_t *keep; /* (B, ceil(T / 64)) positions each token attends to        */
    uint8_t *sparse;/* (B)             1 when the token keeps fewer than it sees */
    dsc_mat *gkv;   /* (S)             the cache rows a sparse token keeps, gathered */
    void *gkv_mem;  /* (S, Kg, R + Dr) their data, Kg = min(index_topk, T), in the cache type */
    uint16_t *gkv_qscale; /* and their Q8 scales                            */
} dsc_scratch;

/* Positions per block of the decode attention: the block's cache rows,
 * decoded to F32 (2368 bytes each at V2/V3 sizes, 148 KiB a block), stay in
 * L2 from the scores to the weighted sums (128 positions: 0.98x decode at
 * 4096 positions, medians of four in-model A/Bs). */
#define MLA_DEC_PB 64
/* A decode token's positions go in at most this many chunks of at least
 * MLA_DEC_CHUNK_MIN (by whole blocks): threads split the chunks of a long
 * context, so that each reads and decodes its part of the cache once for
 * all the heads, where splitting the heads had every thread read it all. */
#define MLA_DEC_CHUNKS 8
#define MLA_DEC_CHUNK_MIN 256
/* A prefill chunk that attends in the absorbed form (mla_forward: fewer
 * FLOPs than decompressing the keys and values of every cached position)
 * goes through it this many tokens at a time. */
#define MLA_ABS_TOKENS 8

/* Per-thread attention scratch (heads are split between threads). */
typedef struct {
    float *kvh;     /* (T, Dn + Dv)    one head's keys and values (prefill)     */
    float *scores;  /* (T)             one query's scores (prefill)             */
    float *olat;    /* (R + Dr)        a cache row as F32 (prefill)             */
    float *xg;      /* (S, R)          one head's latents of every token (decode) */
    float *dscores; /* (H, MLA_DEC_PB) one token's scores over a block of positions (decode) */
    float *drows;   /* (MLA_DEC_PB, R + Dr) a block of cache rows as F32 (decode) */
    float *isel;    /* (T)             index scores being selected (V3.2)       */
} dsc_tscratch;

struct dsc_ctx {
    dsc_model *model;
    int32_t n_ctx, n_batch, n_seq;
    int32_t n_dec;              /* tokens of a decode-form pass (>= n_seq)  */
    int32_t n_abs;              /* tokens the absorbed attention's scratch holds: */
                                /* max(n_dec, MLA_ABS_TOKENS) where n_batch allows */
    int invariant;              /* params.batch_invariant: the row kernels for  */
                                /* every product (no gemm), absorbed attention  */
    int mla_prefill;            /* prefill attention: 0 the cheaper form, 1 always */
                                /* decompressed (tests), 2 always absorbed       */
                                /* (params.batch_invariant)                     */
    int32_t n_cl;               /* cache layers a sequence has: n_layers, + 1 for the MTP module */
    int32_t *seq_pos;           /* (n_seq) tokens in each sequence's cache  */
    /* Latent KV cache: per layer a (T, R + Dr) matrix in the cache type; row
     * p holds position p's normed latent c (R), then its roped key k_pe (Dr). */
    dsc_mat *kv;                /* [n_seq * n_layers] views into kv_mem     */
    void *kv_mem;
    uint16_t *kv_qscale;        /* Q8 cache: F16 scales                     */
    int kv_type;                /* dsc_kv_type                              */
    /* DeepSeek-V3.2's index keys: per (sequence, cache layer) T rows of
     * istride bytes, Di FP8 codes then Di / 128 F32 scales; NULL otherwise. */
    uint8_t *ikv_mem;
    int64_t istride;
    float *rope_cos, *rope_sin; /* (T, Dr / 2) */
    float *logits;              /* (V) after the last token                 */
    int has_logits;
    dsc_scratch s;
    dsc_tscratch *ts;           /* [n_threads]                              */
    const dsc_kernels *k;       /* kernel set (dispatch)                    */
    dsc_pool *pool;
    int n_threads;
    struct dsc_timer *timer;    /* dsc_ctx_set_timing's counters, or NULL   */
    /* Speculative decoding with the MTP module (params.mtp, else NULL): its
     * latent cache is layer n_layers of each sequence, and its rows of
     * positions < mtp_pos[seq] are up to date. hid holds the main model's
     * normed output (what lm_head reads) at every position, htok the token
     * evaluated there: the module's input at position p is hid[p] and
     * htok[p + 1]. */
    float *hid;                 /* (n_seq, T, D)                            */
    int32_t *htok;              /* (n_seq, T)                               */
    int32_t *mtp_pos;           /* (n_seq)                                  */
    float *mtp_logits;          /* (n_seq, V) the module's last drafts      */
    float *spec_logits;         /* (2, V) a verifying pass's rows           */
    int64_t n_drafted, n_accepted, n_withheld;
    float mtp_p_min;            /* params.mtp_p_min                         */
    void *mem;                  /* the one allocation behind everything     */
    size_t mem_len;             /* its mapped length (0: from the heap)     */
};

/* dsc_ctx_set_timing's counters, in nanoseconds and bytes. */
typedef struct dsc_timer {
    _Atomic int64_t rows_ns, rows_bytes, attn_ns;
} dsc_timer;

/* Monotonic nanoseconds, for the timer. */
int64_t dsc_now_ns(void);

/* Threaded, dispatched matrix products (src/nn/ops.c). From this many
 * tokens a product runs as a tiled gemm (prefill), below as few-token
 * kernels with the threads claiming chunks of rows (decode). */
#define DSC_FEW_TOKENS 32
void op_matmul(dsc_ctx *ctx, float *y, const float *x, const dsc_mat *w, int32_t n);

/* One product y (n, w->rows) = x (n, w->cols) @ w^T of a batch; on the
 * gemm from gemm_from tokens (0: DSC_FEW_TOKENS). */
typedef struct {
    float *y;
    const float *x;
    const dsc_mat *w;
    int32_t n;
    int32_t gemm_from;
} dsc_mm;

/* The products of mm[0..count) (independent of each other) with one
 * barrier for all: the few-token case of decode, where a MoE layer runs a
 * dozen small products. */
void op_matmul_batch(dsc_ctx *ctx, const dsc_mm *mm, int count);
/* g <- silu(g) x u for n values (the MLPs' gate). */
void op_swiglu(dsc_ctx *ctx, float *g, const float *u, int64_t n);

/* Loader internals shared with the tests. */
int model_tensor_count(const dsc_model *m);
/* Loads MTP module 0 (layer num_hidden_layers) into m->mtp; fails naming
 * the checkpoint when config.json has no MTP layer or a tensor is missing. */
dsc_status model_load_mtp(dsc_model *m);

/* Forward pass over n tokens (n <= n_batch) at positions s.tpos of
 * sequences s.tseq; prefill form when decode == 0 (one sequence,
 * consecutive positions), absorbed MLA over the latent cache when 1 (any
 * mix, n <= n_dec). Writes logits rows into out when out != NULL: of every
 * token (n, V), or only of those with want[t] != 0 when want != NULL; the
 * last row written goes into ctx->logits. */
void deepseek_forward(dsc_ctx *ctx, const int32_t *tokens, int32_t n, int decode, float *out, const uint8_t *want);
/* The MTP module over the n rows of s.tpos / s.tseq (decode form: any
 * rows, as dsc_eval_mixed's; prefill form: one sequence, consecutive), the
 * row at position p taking the main model's normed output there
 * (ctx->hid) and next[t], the token at p + 1; the rows with want[t] (none
 * when want is NULL) go through the head, their logits for the token at
 * p + 2 into out, one row each in order. */
void deepseek_mtp_forward(dsc_ctx *ctx, const int32_t *next, int32_t n, int decode, const uint8_t *want, float *out);

/* Blocks (src/nn). */
void rope_init(dsc_model *m);
void rope_tables(const dsc_model *m, float *cos_t, float *sin_t, int32_t n_pos);
void rope_apply(float *x, const float *cos_p, const float *sin_p, int32_t dr);

void mla_forward(dsc_ctx *ctx, const dsc_layer *l, int layer, int32_t n, int decode);
/* A layer's and head's multiply-adds in a prefill of n tokens after pos0
 * beyond the weight products (dsc_prefill_attn_flops), in the form given
 * (ctx->mla_prefill: 0 the cheaper, 1 decompressed, 2 absorbed); *absorbed
 * says which. */
double mla_prefill_macs(const dsc_config *c, int32_t pos0, int32_t n, int form, int *absorbed);

/* The cache of sequence seq, layer i. */
static inline dsc_mat *ctx_cache(dsc_ctx *ctx, int32_t seq, int layer) {
    return &ctx->kv[(int64_t)seq * ctx->n_cl + layer];
}
/* Sequence seq's index keys of cache layer i (DeepSeek-V3.2). */
static inline uint8_t *ctx_icache(const dsc_ctx *ctx, int32_t seq, int layer) {
    return ctx->ikv_mem + ((int64_t)seq * ctx->n_cl + layer) * ctx->n_ctx * ctx->istride;
}
/* Rows of the keep mask (s.keep). */
static inline int64_t ctx_keep_words(const dsc_ctx *ctx) { return (ctx->n_ctx + 63) / 64; }
/* DeepSeek-V3.2's indexer over the n tokens of the batch (src/nn/indexer.c):
 * caches their index keys and, for each token that sees more than
 * index_topk positions, sets s.sparse and the positions it keeps in s.keep. */
void mla_index(dsc_ctx *ctx, const dsc_layer *l, int layer, int32_t n);
/* x (n values, n a multiple of 128) rounded as DeepSeek's act_quant rounds
 * it: by blocks of 128, a power-of-two scale (UE8M0) over amax / 448, the
 * values to e4m3fn; codes and scales written when not NULL, x replaced by
 * the values rounded (code x scale). */
void fp8_act_round(float *x, int32_t n, uint8_t *codes, float *scales);

/* Floats of scratch moe_route needs. */
#define MOE_ROUTE_SCRATCH(E, G) (2 * (int64_t)(E) + (G) + ((int64_t)(E) + 2 * (G)) / 4 + 1)
void moe_route(const dsc_config *c, const float *logits, const float *bias, float *scores, int32_t *idx, float *w);
void ffn_forward(dsc_ctx *ctx, const dsc_layer *l, int32_t n);

#endif
