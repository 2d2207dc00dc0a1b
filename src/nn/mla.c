/*
 * mla.c — Multi-head Latent Attention (DeepSeek-V2 paper, sec. 2.1).
 *
 * Per token: c = kv_a_layernorm(first R of kv_a x) is the latent, k_pe =
 * RoPE(last Dr of kv_a x) the one rope key shared by all heads. Only (c, k_pe)
 * is cached: R + Dr values per token per layer, in the context's cache type
 * (F32, BF16 or Q8), seen by the kernels as a (n_ctx, R + Dr) weight matrix.
 * Head h's key is [W_UK[h] c ; k_pe] and its value W_UV[h] c, with W_UK[h],
 * W_UV[h] the rows of kv_b for that head.
 *
 * Prefill decompresses keys and values head by head (plain attention).
 * Decode absorbs W_UK into the query and W_UV after the weighted sum, so it
 * reads only the latent cache:
 *   q_ext[h] = [W_UK[h]^T q_nope[h] ; q_pe[h]] x softmax_scale   (R + Dr)
 *   score[h, t] = cache row t . q_ext[h]  (one product for all heads)
 *   out[h] = W_UV[h] (sum_t p[h, t] c_t)
 * the scores and the weighted sum taken block by block of positions.
 */
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "models/model.h"

/* q (n, H * Dq) from the normed input, then RoPE on each head's last Dr. */
static void mla_query(dsc_ctx *ctx, const dsc_layer *l, int32_t n) {
    const dsc_config *c = &ctx->model->cfg;
    dsc_scratch *s = &ctx->s;
    const int32_t dq = c->qk_nope_head_dim + c->qk_rope_head_dim, half = c->qk_rope_head_dim / 2;
    if (c->q_lora_rank > 0) {
        op_matmul(ctx, s->qa, s->xn, &l->q_a, n);
        for (int32_t t = 0; t < n; t++)
            kern_rmsnorm(s->qa + (int64_t)t * c->q_lora_rank, s->qa + (int64_t)t * c->q_lora_rank, l->q_a_norm,
                         c->q_lora_rank, c->rms_norm_eps);
        op_matmul(ctx, s->q, s->qa, &l->q_b, n);
    } else {
        op_matmul(ctx, s->q, s->xn, &l->q, n);
    }
    for (int32_t t = 0; t < n; t++) {
        const int64_t p = s->tpos[t];
        for (int32_t h = 0; h < c->n_heads; h++)
            rope_apply(s->q + ((int64_t)t * c->n_heads + h) * dq + c->qk_nope_head_dim, ctx->rope_cos + p * half,
                       ctx->rope_sin + p * half, c->qk_rope_head_dim);
    }
}

/* Appends (c, k_pe) of the n new tokens to this layer's latent cache. */
static void mla_cache_append(dsc_ctx *ctx, const dsc_layer *l, int layer, int32_t n) {
    const dsc_config *c = &ctx->model->cfg;
    dsc_scratch *s = &ctx->s;
    const int32_t w = c->kv_lora_rank + c->qk_rope_head_dim, half = c->qk_rope_head_dim / 2;
    op_matmul(ctx, s->kva, s->xn, &l->kv_a, n);
    for (int32_t t = 0; t < n; t++) {
        const int64_t p = s->tpos[t];
        float *row = s->kva + (int64_t)t * w;
        kern_rmsnorm(row, row, l->kv_a_norm, c->kv_lora_rank, c->rms_norm_eps);
        if (c->index_topk > 0) /* V3.2's reference caches the latent rounded to FP8 */
            fp8_act_round(row, c->kv_lora_rank, NULL, NULL);
        rope_apply(row + c->kv_lora_rank, ctx->rope_cos + p * half, ctx->rope_sin + p * half, c->qk_rope_head_dim);
        kern_store_row(ctx_cache(ctx, s->tseq[t], layer), (int32_t)p, row);
    }
}

/* The positions batch token t keeps (DeepSeek-V3.2), or NULL: all it sees. */
static const uint64_t *token_keep(const dsc_ctx *ctx, int32_t t) {
    return ctx->s.sparse && ctx->s.sparse[t] ? ctx->s.keep + (int64_t)t * ctx_keep_words(ctx) : NULL;
}

static int kept(const uint64_t *keep, int32_t p) { return (int)(keep[p >> 6] >> (p & 63) & 1); }

/* Work shared by the attention tasks: heads are split between threads. */
typedef struct {
    dsc_ctx *ctx;
    const dsc_layer *l;
    int layer;
    int32_t n;
    int32_t t0; /* the absorbed form: the batch's tokens [t0, t0 + n) */
} attn_job;

/* The rows the absorbed attention of batch token t reads: all its
 * sequence's positions, or (V3.2, a sparse token) the index_topk its
 * indexer kept, gathered in order into s.gkv. */
static int32_t abs_len(const dsc_ctx *ctx, int32_t t) {
    return ctx->s.sparse && ctx->s.sparse[t] ? ctx->model->cfg.index_topk : ctx->s.tpos[t] + 1;
}

static const dsc_mat *abs_cache(dsc_ctx *ctx, int32_t t0, int32_t t, int layer) {
    const int32_t bt = t0 + t;
    return ctx->s.sparse && ctx->s.sparse[bt] ? &ctx->s.gkv[t] : ctx_cache(ctx, ctx->s.tseq[bt], layer);
}

/* Copies the kept rows of the group's sparse tokens into s.gkv. */
static void mla_gather(void *arg, int ith, int nth) {
    const attn_job *j = arg;
    dsc_ctx *ctx = j->ctx;
    dsc_scratch *s = &ctx->s;
    const int32_t w = ctx->model->cfg.kv_lora_rank + ctx->model->cfg.qk_rope_head_dim;
    const size_t rb = (size_t)w * (ctx->kv_type == DSC_KV_F32 ? 4 : ctx->kv_type == DSC_KV_BF16 ? 2 : 1);
    const size_t sb = ctx->kv_type == DSC_KV_Q8 ? (size_t)w / DSC_QBLOCK * sizeof(uint16_t) : 0;
    for (int32_t t = ith; t < j->n; t += nth) {
        const uint64_t *keep = token_keep(ctx, j->t0 + t);
        if (!keep) continue;
        const dsc_mat *src = ctx_cache(ctx, s->tseq[j->t0 + t], j->layer), *dst = &s->gkv[t];
        int32_t r = 0;
        for (int32_t p = 0; p <= s->tpos[j->t0 + t]; p++) {
            if (!kept(keep, p)) continue;
            memcpy((char *)dst->data + r * rb, (const char *)src->data + p * rb, rb);
            if (sb) memcpy((char *)dst->qscale + r * sb, (const char *)src->qscale + p * sb, sb);
            r++;
        }
    }
}

/* Rows of queries per block of the tiled prefill attention. */
#define MLA_RB 48

/* The same with the kernels' gemm (prefill of many tokens): per head, kvh =
 * clat W_kv_b[h]^T from the head's rows in F32, then by blocks of MLA_RB
 * queries S = q_nope k^T + q_pe k_pe^T up to the last key the block sees,
 * the causal softmax, and out = P v. False when there is no scratch. */
static int mla_attend_prefill_gemm(const attn_job *j, int ith, int nth) {
    dsc_ctx *ctx = j->ctx;
    const dsc_layer *l = j->l;
    const dsc_kernels *k = ctx->k;
    const dsc_config *c = &ctx->model->cfg;
    dsc_scratch *s = &ctx->s;
    dsc_tscratch *ts = &ctx->ts[ith];
    const int32_t dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim, dv = c->v_head_dim, R = c->kv_lora_rank;
    const int32_t H = c->n_heads, dq = dn + dr, dkv = dn + dv, pos0 = s->tpos[0], n_pos = pos0 + j->n;
    size_t npk = kern_gemm_scratch(n_pos, dkv, R, 0), t2 = kern_gemm_scratch(MLA_RB, n_pos, dn > dr ? dn : dr, 0);
    const size_t t3 = kern_gemm_scratch(MLA_RB, dv, n_pos, DSC_GEMM_BN);
    npk = npk > t2 ? npk : t2;
    npk = npk > t3 ? npk : t3;
    const size_t nwb = (size_t)dkv * R, nsc = (size_t)MLA_RB * n_pos;
    float *wb = pool_scratch(nwb + nsc + npk);
    if (!wb) return 0;
    float *sc = wb + nwb, *pack = sc + nsc;
    const int64_t lq = (int64_t)H * dq, lo = (int64_t)H * dv;
    const float scale = ctx->model->softmax_scale;
    for (int32_t h = ith; h < H; h += nth) {
        for (int32_t r = 0; r < dkv; r++) k->mat_row(wb + (int64_t)r * R, &l->kv_b, h * dkv + r);
        k->gemm(ts->kvh, dkv, s->clat, R, wb, R, n_pos, dkv, R, 0, pack);
        for (int32_t t0 = 0; t0 < j->n; t0 += MLA_RB) {
            const int32_t mb = j->n - t0 < MLA_RB ? j->n - t0 : MLA_RB, np = pos0 + t0 + mb;
            const float *q = s->q + (int64_t)t0 * lq + (int64_t)h * dq;
            k->gemm(sc, np, q, lq, ts->kvh, dkv, mb, np, dn, 0, pack);
            k->gemm(sc, np, q + dn, lq, s->ckpe, dr, mb, np, dr, DSC_GEMM_ACC, pack);
            for (int32_t i = 0; i < mb; i++) {
                float *row = sc + (int64_t)i * np;
                const int32_t len = pos0 + t0 + i + 1; /* causal */
                const uint64_t *keep = token_keep(ctx, t0 + i);
                for (int32_t p = 0; p < len; p++) row[p] = keep && !kept(keep, p) ? -INFINITY : row[p] * scale;
                kern_softmax_k(k, row, len);
                for (int32_t p = len; p < np; p++) row[p] = 0;
            }
            k->gemm(s->attn + (int64_t)t0 * lo + (int64_t)h * dv, lo, sc, np, ts->kvh + dn, dkv, mb, dv, np, DSC_GEMM_BN,
                    pack);
        }
    }
    return 1;
}

/* Plain attention with keys/values decompressed from the cache, one head at a time. */
static void mla_attend_prefill(void *arg, int ith, int nth) {
    const attn_job *j = arg;
    dsc_ctx *ctx = j->ctx;
    const dsc_layer *l = j->l;
    const dsc_kernels *k = ctx->k;
    const dsc_config *c = &ctx->model->cfg;
    dsc_scratch *s = &ctx->s;
    dsc_tscratch *ts = &ctx->ts[ith];
    if (j->n >= 8 && k->gemm && mla_attend_prefill_gemm(j, ith, nth)) return;
    const int32_t dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim, dv = c->v_head_dim;
    const int32_t dq = dn + dr, dkv = dn + dv, pos0 = s->tpos[0], n_pos = pos0 + j->n;
    for (int32_t h = ith; h < c->n_heads; h += nth) {
        /* kvh[p] = [W_UK[h] c_p ; W_UV[h] c_p] for every cached position. */
        k->matmul_rows(ts->kvh, dkv, s->clat, &l->kv_b, n_pos, h * dkv, (h + 1) * dkv);
        for (int32_t t = 0; t < j->n; t++) {
            const float *q = s->q + ((int64_t)t * c->n_heads + h) * dq;
            const int32_t len = pos0 + t + 1; /* causal */
            const uint64_t *keep = token_keep(ctx, t);
            for (int32_t p = 0; p < len; p++)
                ts->scores[p] = keep && !kept(keep, p)
                                    ? -INFINITY
                                    : (k->dot(q, ts->kvh + (int64_t)p * dkv, dn) + k->dot(q + dn, s->ckpe + (int64_t)p * dr, dr)) *
                                          ctx->model->softmax_scale;
            kern_softmax_k(k, ts->scores, len);
            float *out = s->attn + ((int64_t)t * c->n_heads + h) * dv;
            memset(out, 0, sizeof(float) * (size_t)dv);
            for (int32_t p = 0; p < len; p++) k->axpy(out, ts->kvh + (int64_t)p * dkv + dn, ts->scores[p], dv);
        }
    }
}

/* The timer's count of a weight product since t0 over rows of w. */
static void timer_rows(dsc_timer *tm, int64_t t0, const dsc_mat *w, int32_t rows) {
    atomic_fetch_add(&tm->rows_ns, dsc_now_ns() - t0);
    atomic_fetch_add(&tm->rows_bytes, kern_mat_bytes(w) / w->rows * rows);
}

/* Absorbed attention of each new token over its sequence's latent cache, in
 * three passes, so that with several tokens (batched decode) each head's
 * slice of kv_b is read once for all of them:
 *   heads:           q_ext[t, h] = [W_UK[h]^T q_nope[t, h] ; q_pe[t, h]]
 *   (token, head):   p = softmax(cache . q_ext x scale), o[t, h] = sum_p p c_p
 *   heads:           out[t, h] = W_UV[h] o[t, h]
 * Every (token, head) value is summed as one token alone would sum it. */
static void mla_absorb_q(void *arg, int ith, int nth) {
    const attn_job *j = arg;
    dsc_ctx *ctx = j->ctx;
    const dsc_config *c = &ctx->model->cfg;
    dsc_scratch *s = &ctx->s;
    const int32_t dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim, R = c->kv_lora_rank, H = c->n_heads;
    const int32_t dq = dn + dr, dkv = dn + c->v_head_dim, w = R + dr;
    const float scale = ctx->model->softmax_scale;
    int64_t lo, hi;
    pool_split(H, ith, nth, 1, &lo, &hi);
    const float *q = s->q + (int64_t)j->t0 * H * dq;
    for (int64_t h = lo; h < hi; h++) {
        for (int32_t t = 0; t < j->n; t++) {
            float *qe = s->qext + ((int64_t)t * H + h) * w;
            memset(qe, 0, sizeof(float) * (size_t)R);
            memcpy(qe + R, q + ((int64_t)t * H + h) * dq + dn, sizeof(float) * (size_t)dr);
        }
        const int64_t t0 = ctx->timer ? dsc_now_ns() : 0;
        ctx->k->matvec_tm(s->qext + h * w, (int64_t)H * w, q + h * dq, (int64_t)H * dq, j->n, &j->l->kv_b,
                          (int32_t)h * dkv, (int32_t)h * dkv + dn);
        if (ctx->timer) timer_rows(ctx->timer, t0, &j->l->kv_b, dn);
        for (int32_t t = 0; t < j->n; t++) { /* the softmax scale, once here rather than on every score */
            float *qe = s->qext + ((int64_t)t * H + h) * w;
            for (int32_t i = 0; i < w; i++) qe[i] *= scale;
        }
    }
}

/* The chunks of a token's len positions in decode: n (at most
 * MLA_DEC_CHUNKS) of ch positions, a multiple of MLA_DEC_PB and at least
 * MLA_DEC_CHUNK_MIN unless one chunk holds them all, the last one shorter.
 * They follow from len alone: not from the number of threads nor from the
 * other tokens of the step. */
static int32_t dec_chunks(int32_t len, int32_t *n) {
    int32_t c = (len + MLA_DEC_CHUNK_MIN - 1) / MLA_DEC_CHUNK_MIN;
    if (c > MLA_DEC_CHUNKS) c = MLA_DEC_CHUNKS;
    int32_t ch = (len + c - 1) / c;
    ch = (ch + MLA_DEC_PB - 1) / MLA_DEC_PB * MLA_DEC_PB;
    *n = (len + ch - 1) / ch;
    return ch;
}

/* max(x[0..n)), NaNs skipped (-inf if all are), in 8 lanes. */
static float max_of(const float *x, int32_t n) {
    float m[8] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    int32_t p = 0;
    for (; p + 8 <= n; p += 8)
        for (int k = 0; k < 8; k++) m[k] = x[p + k] > m[k] ? x[p + k] : m[k];
    for (; p < n; p++) m[0] = x[p] > m[0] ? x[p] : m[0];
    float mx = m[0];
    for (int k = 1; k < 8; k++) mx = m[k] > mx ? m[k] : mx;
    return mx;
}

/* One chunk [p0, p1) of one token's positions for its heads h0..h0+nh: per
 * head the max m of the scores, the sum l of exp(score - m) and
 * o = sum_p exp(score_p - m) c_p over the latent part of the rows (the
 * keys' k_pe part is not summed), by blocks of MLA_DEC_PB positions with an
 * online softmax (m grows: l and o rescaled), into records [o (R), m, l].
 * Each block's rows are decoded to F32 once (into rows) for the scores and
 * the weighted sums of all these heads. */
static void dec_chunk(dsc_ctx *ctx, const dsc_mat *cache, const float *qe, int32_t nh, int32_t p0, int32_t p1,
                      float *rec, float *sc, float *rows) {
    const dsc_kernels *k = ctx->k;
    const dsc_config *c = &ctx->model->cfg;
    const int32_t R = c->kv_lora_rank, w = R + c->qk_rope_head_dim, lr = R + 2;
    const int64_t ld = kern_attn_ld(w);
    for (int32_t h = 0; h < nh; h++) {
        memset(rec + (int64_t)h * lr, 0, sizeof(float) * (size_t)R);
        rec[(int64_t)h * lr + R] = -INFINITY, rec[(int64_t)h * lr + R + 1] = 0;
    }
    for (int32_t b0 = p0; b0 < p1; b0 += MLA_DEC_PB) {
        const int32_t pn = p1 - b0 < MLA_DEC_PB ? p1 - b0 : MLA_DEC_PB;
        /* These heads against the block's cache rows in one product. */
        k->attn_scores(sc, MLA_DEC_PB, qe, nh, cache, b0, b0 + pn, rows, ld);
        for (int32_t h = 0; h < nh; h++) {
            float *row = sc + (int64_t)h * MLA_DEC_PB, *o = rec + (int64_t)h * lr;
            const float mx = max_of(row, pn);
            if (mx > o[R]) {
                if (o[R + 1] > 0) {
                    const float r = expf(o[R] - mx);
                    o[R + 1] *= r;
                    for (int32_t i = 0; i < R; i++) o[i] *= r;
                }
                o[R] = mx;
            }
            o[R + 1] += (float)k->exp_sum(row, row, pn, o[R]);
        }
        k->attn_wsum(rec, lr, sc, MLA_DEC_PB, nh, rows, ld, pn, R);
    }
}

/* Every (token, chunk, head) of the step, in that order, each worth its
 * chunk's positions: a thread takes those that start in its share of the
 * whole, so that threads split the positions of one long context (each
 * reading and decoding its part of the cache once for all the heads) and
 * the heads of short ones. No value depends on the split: each record is
 * one chunk's sums for one head, and mla_absorb_out merges a head's chunks
 * in order. */
static void mla_attend_decode(void *arg, int ith, int nth) {
    const attn_job *j = arg;
    dsc_ctx *ctx = j->ctx;
    const dsc_config *c = &ctx->model->cfg;
    dsc_scratch *s = &ctx->s;
    const int32_t R = c->kv_lora_rank, H = c->n_heads, w = R + c->qk_rope_head_dim;
    int64_t total = 0, done = 0;
    for (int32_t t = 0; t < j->n; t++) total += (int64_t)H * abs_len(ctx, j->t0 + t);
    const int64_t w0 = total * ith / nth, w1 = total * (ith + 1) / nth;
    for (int32_t t = 0; t < j->n && done < w1; t++) {
        const int32_t len = abs_len(ctx, j->t0 + t);
        int32_t nch;
        const int32_t ch = dec_chunks(len, &nch);
        const dsc_mat *cache = abs_cache(ctx, j->t0, t, j->layer);
        for (int32_t q = 0; q < nch && done < w1; q++) {
            const int32_t p0 = q * ch, p1 = len - p0 < ch ? len : p0 + ch, pl = p1 - p0;
            /* the heads h whose work starts at done + h pl within [w0, w1) */
            const int64_t ha = w0 <= done ? 0 : (w0 - done + pl - 1) / pl, hb = (w1 - done + pl - 1) / pl;
            const int32_t h0 = (int32_t)(ha < H ? ha : H), h1 = (int32_t)(hb < H ? hb : H);
            if (h1 > h0)
                dec_chunk(ctx, cache, s->qext + ((int64_t)t * H + h0) * w, h1 - h0, p0, p1,
                          s->dpart + (((int64_t)t * MLA_DEC_CHUNKS + q) * H + h0) * (R + 2), ctx->ts[ith].dscores,
                          ctx->ts[ith].drows);
            done += (int64_t)H * pl;
        }
    }
}

static void mla_absorb_out(void *arg, int ith, int nth) {
    const attn_job *j = arg;
    dsc_ctx *ctx = j->ctx;
    const dsc_config *c = &ctx->model->cfg;
    dsc_scratch *s = &ctx->s;
    float *xg = ctx->ts[ith].xg;
    const int32_t dn = c->qk_nope_head_dim, dv = c->v_head_dim, R = c->kv_lora_rank, H = c->n_heads;
    const int32_t dkv = dn + dv;
    int64_t lo, hi;
    pool_split(H, ith, nth, 1, &lo, &hi);
    for (int64_t h = lo; h < hi; h++) {
        for (int32_t t = 0; t < j->n; t++) { /* the head's chunks merged in order: softmax(scores) . c */
            int32_t nch;
            dec_chunks(abs_len(ctx, j->t0 + t), &nch);
            const float *rec = s->dpart + ((int64_t)t * MLA_DEC_CHUNKS * H + h) * (R + 2);
            const int64_t lc = (int64_t)H * (R + 2); /* from one chunk's record to the next */
            float m = -INFINITY, l = 0, *o = xg + (int64_t)t * R;
            for (int32_t q = 0; q < nch; q++) m = rec[q * lc + R] > m ? rec[q * lc + R] : m;
            memset(o, 0, sizeof(float) * (size_t)R);
            for (int32_t q = 0; q < nch; q++) {
                const float e = expf(rec[q * lc + R] - m);
                l += rec[q * lc + R + 1] * e;
                ctx->k->axpy(o, rec + q * lc, e, R);
            }
            const float inv = 1.0f / l;
            for (int32_t i = 0; i < R; i++) o[i] *= inv;
        }
        const int64_t t0 = ctx->timer ? dsc_now_ns() : 0;
        ctx->k->matmul_rows(s->attn + ((int64_t)j->t0 * H + h) * dv, (int64_t)H * dv, xg, &j->l->kv_b, j->n,
                            (int32_t)(h * dkv + dn),
                            (int32_t)((h + 1) * dkv));
        if (ctx->timer) timer_rows(ctx->timer, t0, &j->l->kv_b, dv);
    }
}

/* The multiply-adds of a head's attention in a prefill chunk of n tokens
 * after pos0 cached ones, in the cheaper of the two forms (form 0; 1 the
 * decompressed, 2 the absorbed), and whether that is the absorbed one:
 * decompressing the keys and values of all pos0 + n
 * positions, then plain attention over dn + dr and dv dims, against each
 * token's absorbed query and output (dn x R and R x dv) and its scores and
 * weighted sums over R + dr and R dims.
 * From an empty cache the decompressed form is always the cheaper; a short
 * chunk after a long context (a chat turn, a prompt after a cache hit) is
 * not: 64 tokens after 4096 take 2.1x fewer in the absorbed form at
 * DeepSeek's dims, 16 tokens 7.3x. V3.2's sparse tokens make the absorbed
 * form the cheaper for a chunk after about twice index_topk positions (a
 * prompt from an empty cache from about 7 x index_topk tokens): 512
 * tokens after 8192 with index_topk 2048 take 2.1x fewer. */
double mla_prefill_macs(const dsc_config *c, int32_t pos0, int32_t n, int form, int *absorbed) {
    const double R = c->kv_lora_rank, dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim, dv = c->v_head_dim;
    const double seen = pos0 + (n + 1) / 2.0; /* positions a token sees, on average */
    /* V3.2: the absorbed form reads a sparse token's index_topk kept rows
     * only (the decompressed one masks the others out); tokens at positions
     * p = pos0 .. pos0 + n - 1 see min(p + 1, K) rows */
    const double K = c->index_topk, a1 = pos0 + 1.0, b1 = (double)pos0 + n;
    const double kept = K <= 0 || b1 <= K ? n * seen : a1 > K ? n * K : (K - a1 + 1) * (a1 + K) / 2 + (b1 - K) * K;
    /* both forms also multiply by kv_b's rows of the head once a token (the
     * decompression of the n new positions; the absorption of query and output) */
    const double dec = (double)pos0 * R * (dn + dv) + n * seen * (dn + dr + dv);
    const double abs = kept * (2 * R + dr);
    const int a = form ? form == 2 : abs < dec;
    if (absorbed) *absorbed = a;
    return a ? abs : dec;
}

static int prefill_absorbed(const dsc_ctx *ctx, int32_t n) {
    int absorbed;
    mla_prefill_macs(&ctx->model->cfg, ctx->s.tpos[0], n, ctx->mla_prefill, &absorbed);
    return absorbed;
}

void mla_forward(dsc_ctx *ctx, const dsc_layer *l, int layer, int32_t n, int decode) {
    mla_query(ctx, l, n);
    mla_cache_append(ctx, l, layer, n);
    if (ctx->model->cfg.index_topk > 0) mla_index(ctx, l, layer, n);
    const int absorbed = decode || prefill_absorbed(ctx, n);
    if (!absorbed) { /* the cache as contiguous F32 latents (n_pos, R) and keys (n_pos, Dr) */
        const dsc_config *c = &ctx->model->cfg;
        const int32_t R = c->kv_lora_rank, dr = c->qk_rope_head_dim;
        const dsc_mat *cache = ctx_cache(ctx, ctx->s.tseq[0], layer);
        for (int32_t p = 0; p < ctx->s.tpos[0] + n; p++) {
            float *row = ctx->ts[0].olat;
            kern_mat_row(row, cache, p);
            memcpy(ctx->s.clat + (int64_t)p * R, row, sizeof(float) * (size_t)R);
            memcpy(ctx->s.ckpe + (int64_t)p * dr, row + R, sizeof(float) * (size_t)dr);
        }
    }
    attn_job j = {ctx, l, layer, n, 0};
    if (absorbed) /* a decode step at once (n <= n_dec <= n_abs); a prefill chunk n_abs tokens at a time */
        for (int32_t t0 = 0; t0 < n; t0 += ctx->n_abs) {
            j.t0 = t0, j.n = n - t0 < ctx->n_abs ? n - t0 : ctx->n_abs;
            pool_run(ctx->pool, mla_absorb_q, &j);
            if (ctx->s.sparse) pool_run(ctx->pool, mla_gather, &j);
            const int64_t ts = ctx->timer ? dsc_now_ns() : 0;
            pool_run(ctx->pool, mla_attend_decode, &j);
            if (ctx->timer) atomic_fetch_add(&ctx->timer->attn_ns, dsc_now_ns() - ts);
            pool_run(ctx->pool, mla_absorb_out, &j);
        }
    else
        pool_run(ctx->pool, mla_attend_prefill, &j);
    op_matmul(ctx, ctx->s.y, ctx->s.attn, &l->o, n);
}
