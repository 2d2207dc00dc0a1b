/*
 * context.c — inference context: the latent KV cache and every scratch
 * buffer in one allocation made up front, so evaluation never allocates.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "core/status.h"
#include "models/model.h"

dsc_ctx_params dsc_ctx_default_params(void) { return (dsc_ctx_params){.n_ctx = 0, .n_batch = 512}; }

const char *const *dsc_isa_list(void) { return kern_available(); }

/* Carves buffers out of one block; the first pass (base == NULL) only sums
 * the sizes. Every buffer is 64-byte aligned. */
typedef struct {
    char *base;
    size_t off;
    int overflow;
} planner;

static void *plan(planner *p, int64_t count, size_t elem) {
    size_t bytes, end;
    if (count < 0 || !dsc_mul_size((size_t)count, elem, &bytes) || !dsc_add_size(bytes, 63, &bytes)) {
        p->overflow = 1;
        return NULL;
    }
    bytes &= ~(size_t)63;
    void *r = p->base ? p->base + p->off : NULL;
    if (!dsc_add_size(p->off, bytes, &end)) p->overflow = 1;
    else p->off = end;
    return r;
}

static void ctx_layout(dsc_ctx *ctx, planner *p) {
    const dsc_config *c = &ctx->model->cfg;
    const int64_t B = ctx->n_batch, T = ctx->n_ctx, D = c->hidden_size, H = c->n_heads;
    const int64_t R = c->kv_lora_rank, dr = c->qk_rope_head_dim, dq = c->qk_nope_head_dim + dr;
    const int64_t E = c->n_routed_experts, K = c->n_experts_per_tok;
    int64_t F = c->intermediate_size;
    if ((int64_t)c->moe_intermediate_size * (c->n_shared_experts > 1 ? c->n_shared_experts : 1) > F)
        F = (int64_t)c->moe_intermediate_size * (c->n_shared_experts > 1 ? c->n_shared_experts : 1);
    dsc_scratch *s = &ctx->s;
    const int64_t S = ctx->n_abs, cache_elems = (int64_t)ctx->n_seq * ctx->n_cl * T * (R + dr);
    static const size_t esize[] = {[DSC_KV_F32] = 4, [DSC_KV_BF16] = 2, [DSC_KV_Q8] = 1};
    ctx->kv = plan(p, (int64_t)ctx->n_seq * ctx->n_cl, sizeof(dsc_mat));
    ctx->seq_pos = plan(p, ctx->n_seq, sizeof(int32_t));
    ctx->kv_mem = plan(p, cache_elems, esize[ctx->kv_type]);
    ctx->kv_qscale = ctx->kv_type == DSC_KV_Q8 ? plan(p, cache_elems / DSC_QBLOCK, sizeof(uint16_t)) : NULL;
    const int64_t Hi = c->index_n_heads, Di = c->index_head_dim;
    if (c->index_topk > 0) { /* DeepSeek-V3.2's index keys and indexer scratch */
        ctx->istride = Di + 4 * (Di / 128);
        ctx->ikv_mem = plan(p, (int64_t)ctx->n_seq * ctx->n_cl * T * ctx->istride, 1);
        s->iq = plan(p, B * Hi * Di, sizeof(float));
        s->iw = plan(p, B * Hi, sizeof(float));
        s->ik = plan(p, B * Di, sizeof(float));
        s->iscore = plan(p, S * T, sizeof(float));
        s->keep = plan(p, B * ctx_keep_words(ctx), sizeof(uint64_t));
        s->sparse = plan(p, B, 1);
        const int64_t Kg = c->index_topk < T ? c->index_topk : T;
        s->gkv = plan(p, S, sizeof(dsc_mat));
        s->gkv_mem = plan(p, S * Kg * (R + dr), esize[ctx->kv_type]);
        s->gkv_qscale = ctx->kv_type == DSC_KV_Q8 ? plan(p, S * Kg * (R + dr) / DSC_QBLOCK, sizeof(uint16_t)) : NULL;
    }
    ctx->rope_cos = plan(p, T * (dr / 2 + 1), sizeof(float));
    ctx->rope_sin = plan(p, T * (dr / 2 + 1), sizeof(float));
    ctx->logits = plan(p, c->vocab_size, sizeof(float));
    s->x = plan(p, B * D, sizeof(float));
    s->xn = plan(p, B * D, sizeof(float));
    s->y = plan(p, B * D, sizeof(float));
    s->qa = plan(p, B * c->q_lora_rank, sizeof(float));
    s->q = plan(p, B * H * dq, sizeof(float));
    s->kva = plan(p, B * (R + dr), sizeof(float));
    s->attn = plan(p, B * H * c->v_head_dim, sizeof(float));
    s->clat = plan(p, T * R, sizeof(float));
    s->ckpe = plan(p, T * dr, sizeof(float));
    s->qext = plan(p, S * H * (R + dr), sizeof(float));
    s->dpart = plan(p, S * MLA_DEC_CHUNKS * H * (R + 2), sizeof(float));
    s->tpos = plan(p, B, sizeof(int32_t));
    s->tseq = plan(p, B, sizeof(int32_t));
    for (int i = 0; i < ctx->n_threads; i++) {
        dsc_tscratch *ts = &ctx->ts[i];
        ts->kvh = plan(p, T * (c->qk_nope_head_dim + c->v_head_dim), sizeof(float));
        ts->scores = plan(p, T, sizeof(float));
        ts->olat = plan(p, R + dr, sizeof(float));
        ts->xg = plan(p, S * R, sizeof(float));
        ts->dscores = plan(p, H * MLA_DEC_PB, sizeof(float));
        ts->drows = plan(p, MLA_DEC_PB * kern_attn_ld(R + dr), sizeof(float));
        if (c->index_topk > 0) ts->isel = plan(p, T > Di ? T : Di, sizeof(float));
    }
    s->hg = plan(p, B * F, sizeof(float));
    s->hu = plan(p, B * F, sizeof(float));
    s->rlogit = plan(p, B * E, sizeof(float));
    s->rscore = plan(p, MOE_ROUTE_SCRATCH(E, c->n_group), sizeof(float));
    s->ridx = plan(p, B * K, sizeof(int32_t));
    s->rw = plan(p, B * K, sizeof(float));
    s->etok = plan(p, B, sizeof(int32_t));
    s->ew = plan(p, B, sizeof(float));
    s->ex = plan(p, B * D, sizeof(float));
    s->ey = plan(p, B * D, sizeof(float));
    const int64_t P = (B < DSC_FEW_TOKENS ? B : DSC_FEW_TOKENS - 1) * K, Fm = c->moe_intermediate_size;
    s->ptok = plan(p, P, sizeof(int32_t));
    s->pw = plan(p, P, sizeof(float));
    s->px = plan(p, P * D, sizeof(float));
    s->pg = plan(p, P * Fm, sizeof(float));
    s->pu = plan(p, P * Fm, sizeof(float));
    s->py = plan(p, P * D, sizeof(float));
    if (ctx->n_cl > c->n_layers) { /* speculative decoding with the MTP module */
        s->mcat = plan(p, B * 2 * D, sizeof(float));
        s->mnext = plan(p, B, sizeof(int32_t));
        s->mwant = plan(p, B, 1);
        ctx->hid = plan(p, (int64_t)ctx->n_seq * T * D, sizeof(float));
        ctx->htok = plan(p, (int64_t)ctx->n_seq * T, sizeof(int32_t));
        ctx->mtp_pos = plan(p, ctx->n_seq, sizeof(int32_t));
        ctx->mtp_logits = plan(p, (int64_t)ctx->n_seq * c->vocab_size, sizeof(float));
        ctx->spec_logits = plan(p, 2 * (int64_t)c->vocab_size, sizeof(float));
    }
}

/* The context's memory: from 2 MiB up, fresh anonymous pages (zero until
 * written, and resident only once written: a cache of n_ctx positions or a
 * prefill's scratch costs memory as it is used, not when the context is
 * made), on 2 MiB pages where the kernel has them (the latent cache is read
 * whole at every step of decode; on 4 KiB pages that is a TLB miss per
 * 4 KiB, and THP here may be "madvise"). Below 2 MiB, zeroed heap memory.
 * *len: the length mapped, 0 for the heap. Under AddressSanitizer all of
 * it comes from the heap, whose ends the sanitizer watches. */
#if defined(__SANITIZE_ADDRESS__)
#define CTX_HEAP_ONLY 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CTX_HEAP_ONLY 1
#endif
#endif
#ifndef CTX_HEAP_ONLY
#define CTX_HEAP_ONLY 0
#endif
static void *ctx_alloc(size_t size, size_t *len) {
    const size_t huge = (size_t)2 << 20;
    *len = 0;
    if (size < huge || CTX_HEAP_ONLY) {
        void *m = aligned_alloc(64, size ? size : 64);
        if (m) memset(m, 0, size);
        return m;
    }
    const size_t n = (size + huge - 1) / huge * huge;
    if (n > SIZE_MAX - huge) return NULL;
    char *m = mmap(NULL, n + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return NULL;
    const size_t lead = (huge - (uintptr_t)m % huge) % huge; /* the mapping cut to a 2 MiB boundary */
    if (lead) munmap(m, lead);
    if (huge - lead) munmap(m + lead + n, huge - lead);
    madvise(m + lead, n, MADV_HUGEPAGE); /* a hint: without THP the memory still works */
    *len = n;
    return m + lead;
}

static void ctx_mem_free(void *m, size_t len) {
    if (len) munmap(m, len);
    else free(m);
}

dsc_status dsc_ctx_new(dsc_model *model, const dsc_ctx_params *params, dsc_ctx **out) {
    if (!out) return dsc_fail(DSC_ERR_ARG, "dsc_ctx_new: NULL out");
    *out = NULL;
    if (!model) return dsc_fail(DSC_ERR_ARG, "dsc_ctx_new: no model (NULL)");
    dsc_ctx_params pr = params ? *params : dsc_ctx_default_params();
    const dsc_config *c = &model->cfg;
    int32_t n_ctx = pr.n_ctx > 0 ? pr.n_ctx : (c->max_position_embeddings < 4096 ? c->max_position_embeddings : 4096);
    if (pr.n_ctx < 0) return dsc_fail(DSC_ERR_ARG, "context length %d is negative", pr.n_ctx);
    if (n_ctx > c->max_position_embeddings)
        return dsc_fail(DSC_ERR_ARG, "context length %d exceeds max_position_embeddings = %d", n_ctx,
                        c->max_position_embeddings);
    if (pr.n_batch < 1) return dsc_fail(DSC_ERR_ARG, "batch size %d must be >= 1", pr.n_batch);
    if (pr.kv_type != DSC_KV_F32 && pr.kv_type != DSC_KV_BF16 && pr.kv_type != DSC_KV_Q8)
        return dsc_fail(DSC_ERR_ARG, "unknown KV cache type %d", (int)pr.kv_type);
    if (pr.kv_type == DSC_KV_Q8 && (c->kv_lora_rank + c->qk_rope_head_dim) % DSC_QBLOCK)
        return dsc_fail(DSC_ERR_ARG, "a Q8 KV cache needs kv_lora_rank + qk_rope_head_dim (%d) divisible by %d",
                        c->kv_lora_rank + c->qk_rope_head_dim, DSC_QBLOCK);
    if (pr.n_seq < 0 || pr.n_seq > 4096) return dsc_fail(DSC_ERR_ARG, "sequence count %d out of range", pr.n_seq);
    if (pr.n_mixed < 0 || pr.n_mixed > 65536)
        return dsc_fail(DSC_ERR_ARG, "mixed batch size %d out of range", pr.n_mixed);
    if (pr.n_threads < 0 || pr.n_threads > 1024) return dsc_fail(DSC_ERR_ARG, "thread count %d out of range", pr.n_threads);
    if (pr.mtp != 0 && pr.mtp != 1) return dsc_fail(DSC_ERR_ARG, "mtp %d must be 0 or 1", pr.mtp);
    if (!(pr.mtp_p_min >= 0 && pr.mtp_p_min <= 1))
        return dsc_fail(DSC_ERR_ARG, "mtp_p_min %g is not a probability (0 to 1)", (double)pr.mtp_p_min);
    if (pr.batch_invariant != 0 && pr.batch_invariant != 1)
        return dsc_fail(DSC_ERR_ARG, "batch_invariant %d must be 0 or 1", pr.batch_invariant);
    if (pr.mtp_p_min > 0 && !pr.mtp) return dsc_fail(DSC_ERR_ARG, "mtp_p_min %g needs mtp = 1", (double)pr.mtp_p_min);
    const dsc_kernels *k = kern_select(pr.isa);
    if (!k) return dsc_fail(DSC_ERR_ARG, "kernel set '%s' is unknown or not supported by this CPU", pr.isa);
    if (pr.mtp) {
        dsc_status st = model_load_mtp(model);
        if (st) return st;
    }
    dsc_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return dsc_fail(DSC_ERR_NOMEM, "out of memory for the context");
    ctx->model = model;
    ctx->k = k;
    ctx->kv_type = pr.kv_type;
    ctx->mtp_p_min = pr.mtp_p_min;
    ctx->invariant = pr.batch_invariant;
    ctx->mla_prefill = pr.batch_invariant ? 2 : 0;
    ctx->n_threads = pr.n_threads ? pr.n_threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (ctx->n_threads < 1) ctx->n_threads = 1;
    ctx->ts = calloc((size_t)ctx->n_threads, sizeof *ctx->ts);
    ctx->pool = ctx->ts ? pool_new(ctx->n_threads) : NULL;
    if (!ctx->pool) {
        free(ctx->ts);
        free(ctx);
        return dsc_fail(DSC_ERR_NOMEM, "cannot start %d threads", pr.n_threads);
    }
    ctx->n_ctx = n_ctx;
    ctx->n_seq = pr.n_seq > 0 ? pr.n_seq : 1;
    ctx->n_dec = pr.n_mixed > ctx->n_seq ? pr.n_mixed : ctx->n_seq; /* a decode batch: a token per sequence, or more */
    if (pr.mtp && ctx->n_dec < 2) ctx->n_dec = 2; /* a token and its draft */
    ctx->n_cl = c->n_layers + (pr.mtp ? 1 : 0);
    ctx->n_batch = pr.n_batch < n_ctx ? pr.n_batch : n_ctx;
    if (ctx->n_batch < ctx->n_dec) ctx->n_batch = ctx->n_dec;
    ctx->n_abs = ctx->n_dec > MLA_ABS_TOKENS ? ctx->n_dec : MLA_ABS_TOKENS;
    if (ctx->n_abs > ctx->n_batch) ctx->n_abs = ctx->n_batch;
    planner p = {0};
    ctx_layout(ctx, &p);
    if (p.overflow || !(ctx->mem = ctx_alloc(p.off, &ctx->mem_len))) {
        pool_free(ctx->pool);
        free(ctx->ts);
        free(ctx);
        return dsc_fail(DSC_ERR_NOMEM, "cannot allocate %zu bytes for a context of %d tokens", p.off, n_ctx);
    }
    p = (planner){.base = ctx->mem};
    ctx_layout(ctx, &p);
    rope_tables(model, ctx->rope_cos, ctx->rope_sin, n_ctx);
    static const dsc_wtype wt[] = {[DSC_KV_F32] = DSC_W_F32, [DSC_KV_BF16] = DSC_W_BF16, [DSC_KV_Q8] = DSC_W_Q8};
    const int32_t w = c->kv_lora_rank + c->qk_rope_head_dim;
    for (int64_t i = 0; i < (int64_t)ctx->n_seq * ctx->n_cl; i++) {
        const int64_t first = i * n_ctx * w; /* element index of the (sequence, layer)'s row 0 */
        ctx->kv[i] = (dsc_mat){.type = wt[ctx->kv_type], .rows = n_ctx, .cols = w};
        ctx->kv[i].data = (char *)ctx->kv_mem + first * (ctx->kv_type == DSC_KV_F32 ? 4 : ctx->kv_type == DSC_KV_BF16 ? 2 : 1);
        if (ctx->kv_qscale) ctx->kv[i].qscale = ctx->kv_qscale + first / DSC_QBLOCK;
    }
    if (c->index_topk > 0) { /* V3.2: each absorbed token's gathered rows */
        const int64_t Kg = c->index_topk < n_ctx ? c->index_topk : n_ctx;
        for (int64_t t = 0; t < ctx->n_abs; t++) {
            const int64_t first = t * Kg * w;
            ctx->s.gkv[t] = (dsc_mat){.type = wt[ctx->kv_type], .rows = (int32_t)Kg, .cols = w};
            ctx->s.gkv[t].data = (char *)ctx->s.gkv_mem + first * (ctx->kv_type == DSC_KV_F32 ? 4 : ctx->kv_type == DSC_KV_BF16 ? 2 : 1);
            if (ctx->s.gkv_qscale) ctx->s.gkv[t].qscale = ctx->s.gkv_qscale + first / DSC_QBLOCK;
        }
    }
    *out = ctx;
    return DSC_OK;
}

int64_t dsc_now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

void dsc_ctx_set_timing(dsc_ctx *ctx, int on) {
    if (!ctx) return;
    free(ctx->timer);
    ctx->timer = on ? calloc(1, sizeof *ctx->timer) : NULL; /* out of memory: no timing */
}

dsc_timing dsc_ctx_timing(const dsc_ctx *ctx) {
    dsc_timing t = {0, 0, 0};
    if (!ctx || !ctx->timer) return t;
    t.rows_s = (double)atomic_load(&ctx->timer->rows_ns) * 1e-9;
    t.rows_bytes = (double)atomic_load(&ctx->timer->rows_bytes);
    t.attn_s = (double)atomic_load(&ctx->timer->attn_ns) * 1e-9;
    return t;
}

void dsc_ctx_free(dsc_ctx *ctx) {
    if (!ctx) return;
    free(ctx->timer);
    pool_free(ctx->pool);
    pool_scratch_release();
    free(ctx->ts);
    ctx_mem_free(ctx->mem, ctx->mem_len);
    free(ctx);
}

size_t dsc_ctx_mtp_bytes(const dsc_ctx *ctx) {
    if (!ctx || !ctx->hid) return 0;
    return (size_t)ctx->n_seq * (size_t)ctx->n_ctx * (sizeof(float) * (size_t)ctx->model->cfg.hidden_size + sizeof(int32_t));
}

size_t dsc_ctx_kv_bytes(const dsc_ctx *ctx) {
    if (!ctx) return 0;
    const dsc_config *c = &ctx->model->cfg;
    size_t elems = (size_t)ctx->n_seq * ctx->n_cl * (size_t)ctx->n_ctx * (size_t)(c->kv_lora_rank + c->qk_rope_head_dim);
    const size_t idx = (size_t)ctx->n_seq * ctx->n_cl * (size_t)ctx->n_ctx * (size_t)ctx->istride; /* V3.2's index keys */
    switch (ctx->kv_type) {
    case DSC_KV_BF16: return elems * 2 + idx;
    case DSC_KV_Q8: return elems + elems / DSC_QBLOCK * 2 + idx;
    default: return elems * 4 + idx;
    }
}

const char *dsc_kv_type_name(dsc_kv_type t) {
    return t == DSC_KV_BF16 ? "bf16" : t == DSC_KV_Q8 ? "q8" : "f32";
}

/* The accessors of a NULL context: 0, -1 or NULL, never a crash. */
int32_t dsc_ctx_n_ctx(const dsc_ctx *ctx) { return ctx ? ctx->n_ctx : 0; }
int32_t dsc_ctx_n_seq(const dsc_ctx *ctx) { return ctx ? ctx->n_seq : 0; }
int32_t dsc_ctx_pos(const dsc_ctx *ctx) { return ctx ? ctx->seq_pos[0] : -1; }
int32_t dsc_ctx_n_threads(const dsc_ctx *ctx) { return ctx ? ctx->n_threads : 0; }
const char *dsc_ctx_isa(const dsc_ctx *ctx) { return ctx ? ctx->k->name : NULL; }

static dsc_status check_seq(const dsc_ctx *ctx, int32_t seq) {
    if (!ctx) return dsc_fail(DSC_ERR_ARG, "no context (NULL)");
    if (seq < 0 || seq >= ctx->n_seq)
        return dsc_fail(DSC_ERR_ARG, "sequence %d out of range (the context has %d)", seq, ctx->n_seq);
    return DSC_OK;
}

int32_t dsc_seq_pos(const dsc_ctx *ctx, int32_t seq) {
    return ctx && seq >= 0 && seq < ctx->n_seq ? ctx->seq_pos[seq] : -1;
}

dsc_status dsc_seq_truncate(dsc_ctx *ctx, int32_t seq, int32_t pos) {
    dsc_status st = check_seq(ctx, seq);
    if (st) return st;
    if (pos < 0 || pos > ctx->seq_pos[seq])
        return dsc_fail(DSC_ERR_ARG, "cannot truncate sequence %d to %d tokens (it holds %d)", seq, pos,
                        ctx->seq_pos[seq]);
    ctx->seq_pos[seq] = pos;
    /* The module's row at pos - 1 took the token at pos, which may change. */
    if (ctx->mtp_pos && ctx->mtp_pos[seq] > pos - 1) ctx->mtp_pos[seq] = pos > 0 ? pos - 1 : 0;
    ctx->has_logits = 0;
    return DSC_OK;
}

dsc_status dsc_ctx_truncate(dsc_ctx *ctx, int32_t pos) { return dsc_seq_truncate(ctx, 0, pos); }

const float *dsc_ctx_logits(const dsc_ctx *ctx) { return ctx && ctx->has_logits ? ctx->logits : NULL; }

static dsc_status check_tokens(const dsc_ctx *ctx, const int32_t *tokens, int32_t n) {
    const int32_t V = ctx->model->cfg.vocab_size;
    if (n < 1) return dsc_fail(DSC_ERR_ARG, "no tokens to evaluate");
    if (!tokens) return dsc_fail(DSC_ERR_ARG, "no tokens to evaluate (NULL)");
    for (int32_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            return dsc_fail(DSC_ERR_ARG, "token id %d at position %d is out of range (vocab_size = %d)", tokens[i], i,
                            V);
    return DSC_OK;
}

dsc_status dsc_eval_seq(dsc_ctx *ctx, int32_t seq, const int32_t *tokens, int32_t n, float *logits) {
    dsc_status st = check_seq(ctx, seq);
    if (st) return st;
    const int32_t V = ctx->model->cfg.vocab_size;
    if ((st = check_tokens(ctx, tokens, n))) return st;
    if (n > ctx->n_ctx - ctx->seq_pos[seq])
        return dsc_fail(DSC_ERR_CONTEXT, "%d tokens do not fit: the context holds %d and has %d free", n, ctx->n_ctx,
                        ctx->n_ctx - ctx->seq_pos[seq]);
    for (int32_t done = 0; done < n;) {
        int32_t m = n - done < ctx->n_batch ? n - done : ctx->n_batch;
        for (int32_t t = 0; t < m; t++) ctx->s.tpos[t] = ctx->seq_pos[seq] + t, ctx->s.tseq[t] = seq;
        deepseek_forward(ctx, tokens + done, m, n == 1, logits ? logits + (int64_t)done * V : NULL, NULL);
        ctx->seq_pos[seq] += m;
        done += m;
    }
    ctx->has_logits = 1;
    return DSC_OK;
}

dsc_status dsc_eval(dsc_ctx *ctx, const int32_t *tokens, int32_t n, float *logits) {
    return dsc_eval_seq(ctx, 0, tokens, n, logits);
}

dsc_status dsc_eval_mixed(dsc_ctx *ctx, const int32_t *seqs, const int32_t *tokens, int32_t n, const uint8_t *want,
                          float *logits) {
    if (!ctx || (!seqs && n > 0)) return dsc_fail(DSC_ERR_ARG, "dsc_eval_mixed: NULL argument");
    if (n > ctx->n_dec) return dsc_fail(DSC_ERR_ARG, "%d tokens in a batch of at most %d", n, ctx->n_dec);
    dsc_status st = check_tokens(ctx, tokens, n);
    if (st) return st;
    if (!logits) return dsc_fail(DSC_ERR_ARG, "a batch needs a logits buffer");
    for (int32_t i = 0; i < n; i++) {
        if ((st = check_seq(ctx, seqs[i]))) return st;
        int32_t pos = ctx->seq_pos[seqs[i]];
        for (int32_t j = 0; j < i; j++) pos += seqs[j] == seqs[i];
        if (pos >= ctx->n_ctx) return dsc_fail(DSC_ERR_CONTEXT, "sequence %d is full (%d tokens)", seqs[i], ctx->n_ctx);
        ctx->s.tpos[i] = pos, ctx->s.tseq[i] = seqs[i];
    }
    deepseek_forward(ctx, tokens, n, 1, logits, want);
    for (int32_t i = 0; i < n; i++) ctx->seq_pos[seqs[i]]++;
    ctx->has_logits = !want || want[n - 1]; /* the last token's row is the one kept (the last wanted) */
    return DSC_OK;
}

dsc_status dsc_decode_batch(dsc_ctx *ctx, const int32_t *seqs, const int32_t *tokens, int32_t n, float *logits) {
    if (n > ctx->n_seq) return dsc_fail(DSC_ERR_ARG, "%d tokens in a decode batch of %d sequences", n, ctx->n_seq);
    for (int32_t i = 0; i < n; i++)
        for (int32_t j = 0; j < i; j++)
            if (seqs[j] == seqs[i]) return dsc_fail(DSC_ERR_ARG, "sequence %d appears twice in a decode batch", seqs[i]);
    return dsc_eval_mixed(ctx, seqs, tokens, n, NULL, logits);
}

/* Bytes of n rows of a cache matrix (with Q8 scales). */
/* Bytes of n positions of one cache layer: the latent rows, their Q8
 * scales, DeepSeek-V3.2's index keys. */
static size_t cache_rows_bytes(const dsc_ctx *ctx, int32_t n, size_t *data, size_t *scales, size_t *idx) {
    const int32_t w = ctx->model->cfg.kv_lora_rank + ctx->model->cfg.qk_rope_head_dim;
    *data = (size_t)n * w * (ctx->kv_type == DSC_KV_F32 ? 4 : ctx->kv_type == DSC_KV_BF16 ? 2 : 1);
    *scales = ctx->kv_type == DSC_KV_Q8 ? (size_t)n * w / DSC_QBLOCK * 2 : 0;
    *idx = ctx->ikv_mem ? (size_t)n * (size_t)ctx->istride : 0;
    return *data + *scales + *idx;
}

dsc_status dsc_seq_copy(dsc_ctx *ctx, int32_t src, int32_t dst, int32_t n_tokens) {
    dsc_status st = check_seq(ctx, src);
    if (st || (st = check_seq(ctx, dst))) return st;
    if (n_tokens < 0 || n_tokens > ctx->seq_pos[src])
        return dsc_fail(DSC_ERR_ARG, "cannot copy %d tokens of sequence %d (it holds %d)", n_tokens, src,
                        ctx->seq_pos[src]);
    size_t data, scales, idx;
    cache_rows_bytes(ctx, n_tokens, &data, &scales, &idx);
    for (int l = 0; l < ctx->n_cl && src != dst; l++) {
        const dsc_mat *a = ctx_cache(ctx, src, l), *b = ctx_cache(ctx, dst, l);
        memcpy((void *)b->data, a->data, data);
        if (scales) memcpy((void *)b->qscale, a->qscale, scales);
        if (idx) memcpy(ctx_icache(ctx, dst, l), ctx_icache(ctx, src, l), idx);
    }
    if (ctx->hid && src != dst) {
        const int64_t D = ctx->model->cfg.hidden_size, T = ctx->n_ctx;
        memcpy(ctx->hid + dst * T * D, ctx->hid + src * T * D, sizeof(float) * (size_t)(n_tokens * D));
        memcpy(ctx->htok + dst * T, ctx->htok + src * T, sizeof(int32_t) * (size_t)n_tokens);
        int32_t mp = ctx->mtp_pos[src];
        ctx->mtp_pos[dst] = mp < n_tokens - 1 ? mp : n_tokens > 0 ? n_tokens - 1 : 0;
    }
    ctx->seq_pos[dst] = n_tokens;
    return DSC_OK;
}

/* Bytes of the MTP module's inputs at n positions: the main model's normed
 * outputs (F32) and the tokens (the module's own cache is made again from
 * them after a load). */
static size_t hid_bytes(const dsc_ctx *ctx, int32_t n) {
    return ctx->hid ? (size_t)n * ((size_t)ctx->model->cfg.hidden_size * sizeof(float) + sizeof(int32_t)) : 0;
}

size_t dsc_seq_state_size(const dsc_ctx *ctx, int32_t n_tokens) {
    if (!ctx) return 0;
    size_t data, scales, idx;
    n_tokens = n_tokens < 0 ? 0 : n_tokens;
    return (size_t)ctx->model->cfg.n_layers * cache_rows_bytes(ctx, n_tokens, &data, &scales, &idx) +
           hid_bytes(ctx, n_tokens);
}

dsc_status dsc_seq_save(const dsc_ctx *ctx, int32_t seq, int32_t n_tokens, void *buf) {
    dsc_status st = check_seq(ctx, seq);
    if (st) return st;
    if (n_tokens < 0 || n_tokens > ctx->seq_pos[seq])
        return dsc_fail(DSC_ERR_ARG, "cannot save %d tokens of sequence %d (it holds %d)", n_tokens, seq,
                        ctx->seq_pos[seq]);
    if (n_tokens > 0 && !buf) return dsc_fail(DSC_ERR_ARG, "dsc_seq_save: NULL buffer");
    size_t data, scales, idx;
    cache_rows_bytes(ctx, n_tokens, &data, &scales, &idx);
    char *p = buf;
    for (int l = 0; l < ctx->model->cfg.n_layers && n_tokens > 0; l++) {
        const dsc_mat *m = ctx_cache((dsc_ctx *)ctx, seq, l);
        memcpy(p, m->data, data), p += data;
        if (scales) memcpy(p, m->qscale, scales), p += scales;
        if (idx) memcpy(p, ctx_icache(ctx, seq, l), idx), p += idx;
    }
    if (ctx->hid && n_tokens > 0) {
        const int64_t D = ctx->model->cfg.hidden_size, at = (int64_t)seq * ctx->n_ctx;
        memcpy(p, ctx->hid + at * D, sizeof(float) * (size_t)(n_tokens * D)), p += sizeof(float) * (size_t)(n_tokens * D);
        memcpy(p, ctx->htok + at, sizeof(int32_t) * (size_t)n_tokens);
    }
    return DSC_OK;
}

dsc_status dsc_seq_load(dsc_ctx *ctx, int32_t seq, int32_t n_tokens, const void *buf) {
    dsc_status st = check_seq(ctx, seq);
    if (st) return st;
    if (n_tokens < 0 || n_tokens > ctx->n_ctx)
        return dsc_fail(DSC_ERR_ARG, "cannot load %d tokens into a context of %d", n_tokens, ctx->n_ctx);
    if (n_tokens > 0 && !buf) return dsc_fail(DSC_ERR_ARG, "dsc_seq_load: NULL buffer");
    size_t data, scales, idx;
    cache_rows_bytes(ctx, n_tokens, &data, &scales, &idx);
    const char *p = buf;
    for (int l = 0; l < ctx->model->cfg.n_layers && n_tokens > 0; l++) {
        dsc_mat *m = ctx_cache(ctx, seq, l);
        memcpy((void *)m->data, p, data), p += data;
        if (scales) memcpy((void *)m->qscale, p, scales), p += scales;
        if (idx) memcpy(ctx_icache(ctx, seq, l), p, idx), p += idx;
    }
    if (ctx->hid && n_tokens > 0) { /* the module's cache is made again from its inputs */
        const int64_t D = ctx->model->cfg.hidden_size, at = (int64_t)seq * ctx->n_ctx;
        memcpy(ctx->hid + at * D, p, sizeof(float) * (size_t)(n_tokens * D)), p += sizeof(float) * (size_t)(n_tokens * D);
        memcpy(ctx->htok + at, p, sizeof(int32_t) * (size_t)n_tokens);
    }
    if (ctx->mtp_pos) ctx->mtp_pos[seq] = 0;
    ctx->seq_pos[seq] = n_tokens;
    ctx->has_logits = 0;
    return DSC_OK;
}
