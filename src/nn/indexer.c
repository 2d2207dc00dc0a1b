/*
 * indexer.c — DeepSeek-V3.2's lightning indexer (DeepSeek Sparse
 * Attention): which cached positions each query attends to.
 *
 * Per token, x the layer's normed input and qr the normed query latent:
 *   q[h] = (wq_b qr)[h]  (Hi heads of Di),   k = LayerNorm(wk x)  (Di),
 * the first Dr values of each turned by RoPE in halves (value i with
 * value i + Dr/2, where MLA pairs neighbours), then a Hadamard transform
 * scaled by Di^-0.5 and rounding to FP8 as act_quant rounds (blocks of 128,
 * power-of-two scales);
 *   w[h] = (weights_proj x)[h] x Hi^-0.5 x Di^-0.5,
 *   score[p] = sum_h w[h] x relu(q[h] . k_p)
 * over the positions p up to the token's own, with q and k_p the rounded
 * values (the FP8 codes times their scales: the reference's fp8_index
 * applies the same scales after its products). A token keeps the
 * index_topk best positions, the earlier one on a tie; one that sees no
 * more than index_topk keeps them all, and then its scores are not needed.
 * Each position's k is cached as FP8 codes and scales, beside its latent.
 */
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "models/model.h"

#define FP8_BLOCK 128

void fp8_act_round(float *x, int32_t n, uint8_t *codes, float *scales) {
    for (int32_t b = 0; b < n / FP8_BLOCK; b++) {
        float *v = x + (int64_t)b * FP8_BLOCK, amax = 1e-4f;
        for (int i = 0; i < FP8_BLOCK; i++) amax = fabsf(v[i]) > amax ? fabsf(v[i]) : amax;
        /* UE8M0: 2^ceil(log2(amax / 448)), from the bits of the quotient */
        const float q = amax * (1.0f / 448.0f);
        uint32_t u;
        memcpy(&u, &q, 4);
        const int e = (int)((u >> 23) & 0xFF) - 127 + ((u & 0x7FFFFF) != 0);
        const float s = ldexpf(1.0f, e), inv = ldexpf(1.0f, -e);
        for (int i = 0; i < FP8_BLOCK; i++) {
            float y = v[i] * inv;
            y = y < -448.0f ? -448.0f : y > 448.0f ? 448.0f : y;
            const uint8_t c = kern_f32_to_e4m3(y);
            if (codes) codes[(int64_t)b * FP8_BLOCK + i] = c;
            v[i] = kern_e4m3_to_f32(c) * s;
        }
        if (scales) scales[b] = s;
    }
}

/* In-place Walsh-Hadamard transform of n = 2^k values, scaled by n^-0.5. */
static void hadamard(float *x, int32_t n) {
    for (int32_t h = 1; h < n; h *= 2)
        for (int32_t i = 0; i < n; i += 2 * h)
            for (int32_t j = i; j < i + h; j++) {
                const float a = x[j], b = x[j + h];
                x[j] = a + b, x[j + h] = a - b;
            }
    const float s = 1.0f / sqrtf((float)n);
    for (int32_t i = 0; i < n; i++) x[i] *= s;
}

/* RoPE on x[0..dr) with value i paired with value i + dr/2. */
static void rope_halves(float *x, const float *cos_p, const float *sin_p, int32_t dr) {
    const int32_t half = dr / 2;
    for (int32_t i = 0; i < half; i++) {
        const float x0 = x[i], x1 = x[i + half];
        x[i] = x0 * cos_p[i] - x1 * sin_p[i];
        x[i + half] = x0 * sin_p[i] + x1 * cos_p[i];
    }
}

static void layer_norm(float *x, const float *w, const float *b, int32_t n, float eps) {
    double m = 0, v = 0;
    for (int32_t i = 0; i < n; i++) m += x[i];
    m /= n;
    for (int32_t i = 0; i < n; i++) v += (x[i] - m) * (x[i] - m);
    const float inv = (float)(1.0 / sqrt(v / n + eps)), mf = (float)m;
    for (int32_t i = 0; i < n; i++) x[i] = (x[i] - mf) * inv * w[i] + b[i];
}

typedef struct {
    dsc_ctx *ctx;
    const dsc_layer *l;
    int layer;
    int32_t n;  /* tokens of the batch */
    int32_t t0; /* scores and selection: the group [t0, t0 + ng) of the sparse tokens' list */
    int32_t ng; /* (index_prepare: the number of sparse tokens; its queries only when there are some) */
    const int32_t *list; /* the tokens that see more than index_topk positions */
} index_job;

/* Queries, weights and keys of the batch's tokens; the keys into the cache. */
static void index_prepare(void *arg, int ith, int nth) {
    const index_job *j = arg;
    dsc_ctx *ctx = j->ctx;
    const dsc_config *c = &ctx->model->cfg;
    dsc_scratch *s = &ctx->s;
    const int32_t Hi = c->index_n_heads, Di = c->index_head_dim, dr = c->qk_rope_head_dim, half = dr / 2;
    const float wscale = 1.0f / sqrtf((float)Hi) / sqrtf((float)Di);
    int64_t lo, hi;
    pool_split(j->n, ith, nth, 1, &lo, &hi);
    for (int64_t t = lo; t < hi; t++) {
        const int64_t p = s->tpos[t];
        const float *cp = ctx->rope_cos + p * half, *sp = ctx->rope_sin + p * half;
        for (int32_t h = 0; h < Hi && j->ng; h++) { /* queries only when some token is sparse (ng: their count) */
            float *q = s->iq + (t * Hi + h) * Di;
            rope_halves(q, cp, sp, dr);
            hadamard(q, Di);
            fp8_act_round(q, Di, NULL, NULL);
            s->iw[t * Hi + h] *= wscale;
        }
        float *k = s->ik + t * Di;
        layer_norm(k, j->l->ik_norm_w, j->l->ik_norm_b, Di, 1e-6f);
        rope_halves(k, cp, sp, dr);
        hadamard(k, Di);
        uint8_t *row = ctx_icache(ctx, s->tseq[t], j->layer) + p * ctx->istride;
        fp8_act_round(k, Di, row, (float *)(row + Di));
    }
}

/* Positions per block of the index scores: their keys decoded once, then
 * one product with the heads' queries of up to IDX_MG tokens. */
#define IDX_PB 64
#define IDX_MG 8
#define IDX_MAXH 1024 /* index_n_heads at most (src/io/config.c) */

/* A block's keys (pn cached rows) decoded to F32: kf (pn, Di), each row by
 * the kernel set's mat_row as an FP8 row with a scale per 128 values (the
 * reference's e4m3 value times the scale, to the bit). */
static void index_keys(const dsc_kernels *k, const uint8_t *rows, int64_t stride, int32_t pn, int32_t Di, float *kf) {
    for (int32_t p = 0; p < pn; p++) {
        const uint8_t *row = rows + p * stride;
        const dsc_mat m = {DSC_W_F8_E4M3, 1, Di, row, (const float *)(row + Di), 1, FP8_BLOCK, NULL};
        k->mat_row(kf + (int64_t)p * Di, &m, 0);
    }
}

/* out_i[p] = sum_h w_i[h] relu(q_i[h] . k_p) over a block of pn positions
 * for m tokens whose queries (Hi x Di each) and weights (Hi each) follow
 * one another: the dot products as one gemm (m Hi x pn; each value does not
 * depend on m) where the kernel set has one. The sum over heads goes in
 * head order, as the row form's. */
static void index_block(const dsc_kernels *k, const float *q, const float *w, int32_t m, const float *kf, int32_t pn,
                        int32_t Hi, int32_t Di, float *hp, float *pack, float *const *out) {
    if (k->gemm) k->gemm(hp, IDX_PB, q, Di, kf, Di, m * Hi, pn, Di, 0, pack);
    else
        for (int32_t h = 0; h < m * Hi; h++)
            for (int32_t p = 0; p < pn; p++) hp[(int64_t)h * IDX_PB + p] = k->dot(q + (int64_t)h * Di, kf + (int64_t)p * Di, Di);
    for (int32_t i = 0; i < m; i++) k->relu_wsum(out[i], hp + (int64_t)i * Hi * IDX_PB, IDX_PB, w + (int64_t)i * Hi, Hi, pn);
}

/* The end of the run of group tokens from g: consecutive batch tokens of
 * one sequence at consecutive positions (a prefill chunk's), which see the
 * same keys up to their own. */
static int32_t index_run(const index_job *j, int32_t g) {
    const dsc_scratch *s = &j->ctx->s;
    int32_t e = g + 1;
    while (e < j->ng) {
        const int32_t a = j->list[j->t0 + e - 1], b = j->list[j->t0 + e];
        if (b != a + 1 || s->tseq[b] != s->tseq[a] || s->tpos[b] != s->tpos[a] + 1) break;
        e++;
    }
    return e;
}

/* The first token of the run [g, e) that sees position p0 (its positions
 * increase along the run). */
static int32_t index_run_from(const index_job *j, int32_t g, int32_t e, int64_t p0) {
    const dsc_scratch *s = &j->ctx->s;
    while (g < e && s->tpos[j->list[j->t0 + g]] < p0) g++;
    return g;
}

/* The group's scores: every (token, position). The work goes by units of a
 * run and a block of positions, each decoding the block's keys once for
 * all the run's tokens that see it; the threads take consecutive units of
 * equal shares of the (position, token) pairs. */
static void index_scores(void *arg, int ith, int nth) {
    const index_job *j = arg;
    dsc_ctx *ctx = j->ctx;
    const dsc_config *c = &ctx->model->cfg;
    dsc_scratch *s = &ctx->s;
    const int32_t Hi = c->index_n_heads, Di = c->index_head_dim;
    const size_t npk = kern_gemm_scratch(IDX_MG * Hi, IDX_PB, Di, 0);
    float *kf = pool_scratch((size_t)IDX_PB * Di + (size_t)IDX_MG * Hi * IDX_PB + npk), *hp = NULL, *pack = NULL;
    if (kf) hp = kf + (size_t)IDX_PB * Di, pack = hp + (size_t)IDX_MG * Hi * IDX_PB;
    int64_t total = 0;
    for (int32_t g = 0, e; g < j->ng; g = e) {
        e = index_run(j, g);
        const int64_t len = s->tpos[j->list[j->t0 + e - 1]] + 1;
        for (int64_t p0 = 0; p0 < len; p0 += IDX_PB) {
            const int64_t pn = len - p0 < IDX_PB ? len - p0 : IDX_PB;
            total += pn * (e - index_run_from(j, g, e, p0));
        }
    }
    const int64_t w0 = total * ith / nth, w1 = total * (ith + 1) / nth;
    int64_t done = 0;
    for (int32_t g = 0, e; g < j->ng && done < w1; g = e) {
        e = index_run(j, g);
        const int32_t t0 = j->list[j->t0 + g];
        const int64_t len = s->tpos[j->list[j->t0 + e - 1]] + 1;
        const uint8_t *keys = ctx_icache(ctx, s->tseq[t0], j->layer);
        for (int64_t p0 = 0; p0 < len && done < w1; p0 += IDX_PB) {
            const int32_t pn = (int32_t)(len - p0 < IDX_PB ? len - p0 : IDX_PB), f = index_run_from(j, g, e, p0);
            const int64_t here = done;
            done += (int64_t)pn * (e - f);
            if (here < w0) continue;
            if (!hp) { /* no scratch: a position at a time, its key in isel */
                kf = ctx->ts[ith].isel;
                for (int32_t p = 0; p < pn; p++) {
                    index_keys(ctx->k, keys + (p0 + p) * ctx->istride, ctx->istride, 1, Di, kf);
                    for (int32_t g2 = f; g2 < e; g2++) {
                        const int32_t t = j->list[j->t0 + g2];
                        const float *q = s->iq + (int64_t)t * Hi * Di, *w = s->iw + (int64_t)t * Hi;
                        float d[IDX_MAXH];
                        for (int32_t h = 0; h < Hi; h++) d[h] = ctx->k->dot(q + (int64_t)h * Di, kf, Di);
                        ctx->k->relu_wsum(s->iscore + (int64_t)g2 * ctx->n_ctx + p0 + p, d, 1, w, Hi, 1);
                    }
                }
                continue;
            }
            index_keys(ctx->k, keys + p0 * ctx->istride, ctx->istride, pn, Di, kf);
            for (int32_t g2 = f; g2 < e; g2 += IDX_MG) {
                const int32_t m = e - g2 < IDX_MG ? e - g2 : IDX_MG, t = j->list[j->t0 + g2];
                float *out[IDX_MG];
                for (int32_t i = 0; i < m; i++) out[i] = s->iscore + (int64_t)(g2 + i) * ctx->n_ctx + p0;
                index_block(ctx->k, s->iq + (int64_t)t * Hi * Di, s->iw + (int64_t)t * Hi, m, kf, pn, Hi, Di, hp, pack,
                            out);
            }
        }
    }
}

/* The k-th largest of x[0..n) (k in [1, n]), x reordered. */
static float kth_largest(float *x, int32_t n, int32_t k) {
    int32_t lo = 0, hi = n - 1, want = k - 1;
    while (lo < hi) {
        const float pv = x[lo + (hi - lo) / 2];
        int32_t i = lo, r = hi;
        while (i <= r) { /* descending: [lo, i) >= pv, (r, hi] <= pv */
            while (x[i] > pv) i++;
            while (x[r] < pv) r--;
            if (i <= r) {
                const float t = x[i];
                x[i] = x[r], x[r] = t;
                i++, r--;
            }
        }
        if (want <= r) hi = r;
        else if (want >= i) lo = i;
        else return x[want];
    }
    return x[want];
}

/* Each group token's kept positions from its scores. */
static void index_select(void *arg, int ith, int nth) {
    const index_job *j = arg;
    dsc_ctx *ctx = j->ctx;
    dsc_scratch *s = &ctx->s;
    const int32_t K = ctx->model->cfg.index_topk;
    const int64_t nw = ctx_keep_words(ctx);
    float *sel = ctx->ts[ith].isel;
    for (int32_t g = ith; g < j->ng; g += nth) {
        const int32_t t = j->list[j->t0 + g], len = s->tpos[t] + 1;
        float *sc = s->iscore + (int64_t)g * ctx->n_ctx;
        for (int32_t p = 0; p < len; p++) sc[p] = sc[p] == sc[p] ? sc[p] : -INFINITY; /* a NaN ranks last */
        memcpy(sel, sc, sizeof(float) * (size_t)len);
        const float thr = kth_largest(sel, len, K);
        uint64_t *keep = s->keep + (int64_t)t * nw;
        memset(keep, 0, sizeof(uint64_t) * (size_t)((len + 63) / 64));
        int32_t kept = 0;
        for (int32_t p = 0; p < len; p++)
            if (sc[p] > thr) keep[p >> 6] |= (uint64_t)1 << (p & 63), kept++;
        for (int32_t p = 0; p < len && kept < K; p++) /* ties at the threshold: the earlier positions */
            if (sc[p] == thr) keep[p >> 6] |= (uint64_t)1 << (p & 63), kept++;
    }
}

void mla_index(dsc_ctx *ctx, const dsc_layer *l, int layer, int32_t n) {
    const dsc_config *c = &ctx->model->cfg;
    dsc_scratch *s = &ctx->s;
    /* the tokens that keep fewer positions than they see, listed in s.etok;
     * the queries (wq_b, weights_proj) are needed only when there are some */
    int32_t *list = s->etok, ns = 0;
    for (int32_t t = 0; t < n; t++) {
        s->sparse[t] = s->tpos[t] + 1 > c->index_topk;
        if (s->sparse[t]) list[ns++] = t;
    }
    if (ns) op_matmul(ctx, s->iq, s->qa, &l->iq, n);
    op_matmul(ctx, s->ik, s->xn, &l->ik, n);
    if (ns) op_matmul(ctx, s->iw, s->xn, &l->iw, n);
    index_job j = {ctx, l, layer, n, 0, ns, list};
    pool_run(ctx->pool, index_prepare, &j);
    const int64_t t0 = ctx->timer && ns ? dsc_now_ns() : 0; /* counted as attention (dsc_ctx_set_timing) */
    for (j.t0 = 0; j.t0 < ns; j.t0 += ctx->n_abs) {
        j.ng = ns - j.t0 < ctx->n_abs ? ns - j.t0 : ctx->n_abs;
        pool_run(ctx->pool, index_scores, &j);
        pool_run(ctx->pool, index_select, &j);
    }
    if (t0) atomic_fetch_add(&ctx->timer->attn_ns, dsc_now_ns() - t0);
}
