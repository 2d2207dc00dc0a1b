/*
 * mla.c — Multi-head Latent Attention (DeepSeek-V2 paper, sec. 2.1).
 *
 * Per token: c = kv_a_layernorm(first R of kv_a x) is the latent, k_pe =
 * RoPE(last Dr of kv_a x) the one rope key shared by all heads. Only (c, k_pe)
 * is cached: R + Dr values per token per layer. Head h's key is
 * [W_UK[h] c ; k_pe] and its value W_UV[h] c, with W_UK[h], W_UV[h] the rows
 * of kv_b for that head.
 *
 * Prefill decompresses keys and values head by head (plain attention);
 * decode absorbs W_UK into the query (q_lat = W_UK[h]^T q_nope) and W_UV
 * after the weighted sum, so it reads only the latent cache:
 *   score(t) = (q_lat . c_t + q_pe . k_pe_t) x softmax_scale
 *   out[h]   = W_UV[h] (sum_t p_t c_t)
 */
#include <string.h>

#include "models/model.h"

/* q (n, H * Dq) from the normed input, then RoPE on each head's last Dr. */
static void mla_query(dsc_ctx *ctx, const dsc_layer *l, int32_t n) {
    const dsc_config *c = &ctx->model->cfg;
    dsc_scratch *s = &ctx->s;
    const int32_t dq = c->qk_nope_head_dim + c->qk_rope_head_dim, half = c->qk_rope_head_dim / 2;
    if (c->q_lora_rank > 0) {
        kern_matmul(s->qa, s->xn, &l->q_a, n);
        for (int32_t t = 0; t < n; t++)
            kern_rmsnorm(s->qa + (int64_t)t * c->q_lora_rank, s->qa + (int64_t)t * c->q_lora_rank, l->q_a_norm,
                         c->q_lora_rank, c->rms_norm_eps);
        kern_matmul(s->q, s->qa, &l->q_b, n);
    } else {
        kern_matmul(s->q, s->xn, &l->q, n);
    }
    for (int32_t t = 0; t < n; t++) {
        const int64_t p = ctx->pos + t;
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
    kern_matmul(s->kva, s->xn, &l->kv_a, n);
    for (int32_t t = 0; t < n; t++) {
        const int64_t p = ctx->pos + t;
        float *row = ctx->kv + ((int64_t)layer * ctx->n_ctx + p) * w;
        const float *src = s->kva + (int64_t)t * w;
        kern_rmsnorm(row, src, l->kv_a_norm, c->kv_lora_rank, c->rms_norm_eps);
        memcpy(row + c->kv_lora_rank, src + c->kv_lora_rank, sizeof(float) * (size_t)c->qk_rope_head_dim);
        rope_apply(row + c->kv_lora_rank, ctx->rope_cos + p * half, ctx->rope_sin + p * half, c->qk_rope_head_dim);
    }
}

/* Plain attention with keys/values decompressed from the cache, one head at a time. */
static void mla_attend_prefill(dsc_ctx *ctx, const dsc_layer *l, int layer, int32_t n) {
    const dsc_config *c = &ctx->model->cfg;
    dsc_scratch *s = &ctx->s;
    const int32_t dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim, dv = c->v_head_dim, R = c->kv_lora_rank;
    const int32_t dq = dn + dr, dkv = dn + dv, w = R + dr, n_pos = ctx->pos + n;
    const float *cache = ctx->kv + (int64_t)layer * ctx->n_ctx * w;
    for (int32_t h = 0; h < c->n_heads; h++) {
        /* kvh[p] = [W_UK[h] c_p ; W_UV[h] c_p], both read from the cache rows. */
        for (int32_t p = 0; p < n_pos; p++)
            kern_matmul_rows(s->kvh + (int64_t)p * dkv, dkv, cache + (int64_t)p * w, &l->kv_b, 1, h * dkv,
                             (h + 1) * dkv);
        for (int32_t t = 0; t < n; t++) {
            const float *q = s->q + ((int64_t)t * c->n_heads + h) * dq;
            const int32_t len = ctx->pos + t + 1; /* causal */
            for (int32_t p = 0; p < len; p++)
                s->scores[p] = (kern_dot(q, s->kvh + (int64_t)p * dkv, dn) +
                                kern_dot(q + dn, cache + (int64_t)p * w + R, dr)) *
                               ctx->model->softmax_scale;
            kern_softmax(s->scores, len);
            float *out = s->attn + ((int64_t)t * c->n_heads + h) * dv;
            memset(out, 0, sizeof(float) * (size_t)dv);
            for (int32_t p = 0; p < len; p++) kern_axpy(out, s->kvh + (int64_t)p * dkv + dn, s->scores[p], dv);
        }
    }
}

/* Absorbed attention of one new token over the latent cache. */
static void mla_attend_decode(dsc_ctx *ctx, const dsc_layer *l, int layer) {
    const dsc_config *c = &ctx->model->cfg;
    dsc_scratch *s = &ctx->s;
    const int32_t dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim, dv = c->v_head_dim, R = c->kv_lora_rank;
    const int32_t dq = dn + dr, dkv = dn + dv, w = R + dr, len = ctx->pos + 1;
    const float *cache = ctx->kv + (int64_t)layer * ctx->n_ctx * w;
    for (int32_t h = 0; h < c->n_heads; h++) {
        const float *q = s->q + (int64_t)h * dq;
        memset(s->qlat, 0, sizeof(float) * (size_t)R);
        for (int32_t i = 0; i < dn; i++) kern_mat_row_axpy(s->qlat, &l->kv_b, h * dkv + i, q[i]);
        for (int32_t p = 0; p < len; p++) {
            const float *row = cache + (int64_t)p * w;
            s->scores[p] = (kern_dot(s->qlat, row, R) + kern_dot(q + dn, row + R, dr)) * ctx->model->softmax_scale;
        }
        kern_softmax(s->scores, len);
        memset(s->olat, 0, sizeof(float) * (size_t)R);
        for (int32_t p = 0; p < len; p++) kern_axpy(s->olat, cache + (int64_t)p * w, s->scores[p], R);
        kern_matmul_rows(s->attn + (int64_t)h * dv, dv, s->olat, &l->kv_b, 1, h * dkv + dn, (h + 1) * dkv);
    }
}

void mla_forward(dsc_ctx *ctx, const dsc_layer *l, int layer, int32_t n, int decode) {
    mla_query(ctx, l, n);
    mla_cache_append(ctx, l, layer, n);
    if (decode) mla_attend_decode(ctx, l, layer);
    else mla_attend_prefill(ctx, l, layer, n);
    kern_matmul(ctx->s.y, ctx->s.attn, &l->o, n);
}
