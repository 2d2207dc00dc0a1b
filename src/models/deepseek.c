/*
 * deepseek.c — the DeepSeek-V2 / V3 / R1 forward pass.
 *
 *   x = embed(token)
 *   for each layer:  x += MLA(rmsnorm(x));  x += FFN(rmsnorm(x))   (FFN: dense or MoE)
 *   logits = lm_head(rmsnorm(x))
 *
 * The MTP layers that V3 checkpoints carry (index num_hidden_layers..) are not
 * part of plain next-token decoding; the first drafts tokens for speculative
 * decoding (deepseek_mtp_forward, src/runtime/spec.c):
 *
 *   x = eh_proj([enorm(embed'(token p + 1)); hnorm(h_p)])   h_p: rmsnorm(x) above
 *   x += MLA(rmsnorm(x));  x += FFN(rmsnorm(x))              (its own latent cache)
 *   logits of token p + 2 = head(head_norm(x))
 */
#include <string.h>

#include "models/model.h"

static void rmsnorm_rows(float *out, const float *x, const float *w, int32_t n, int32_t d, float eps) {
    for (int32_t t = 0; t < n; t++) kern_rmsnorm(out + (int64_t)t * d, x + (int64_t)t * d, w, d, eps);
}

/* x += MLA(rmsnorm(x));  x += FFN(rmsnorm(x)) over the batch's n rows of s.x. */
static void layer_forward(dsc_ctx *ctx, const dsc_layer *l, int layer, int32_t n, int decode) {
    const dsc_config *c = &ctx->model->cfg;
    const int32_t D = c->hidden_size;
    dsc_scratch *s = &ctx->s;
    rmsnorm_rows(s->xn, s->x, l->attn_norm, n, D, c->rms_norm_eps);
    mla_forward(ctx, l, layer, n, decode);
    kern_axpy(s->x, s->y, 1.0f, n * D);
    rmsnorm_rows(s->xn, s->x, l->ffn_norm, n, D, c->rms_norm_eps);
    ffn_forward(ctx, l, n);
    kern_axpy(s->x, s->y, 1.0f, n * D);
}

void deepseek_forward(dsc_ctx *ctx, const int32_t *tokens, int32_t n, int decode, float *out, const uint8_t *want) {
    const dsc_model *m = ctx->model;
    const dsc_config *c = &m->cfg;
    const int32_t D = c->hidden_size, V = c->vocab_size;
    dsc_scratch *s = &ctx->s;

    for (int32_t t = 0; t < n; t++) kern_mat_row(s->x + (int64_t)t * D, &m->embed, tokens[t]);

    for (int32_t i = 0; i < c->n_layers; i++) layer_forward(ctx, &m->layers[i], i, n, decode);

    if (ctx->hid) { /* every position's output is kept for the MTP module */
        for (int32_t t = 0; t < n; t++) {
            const int64_t at = (int64_t)s->tseq[t] * ctx->n_ctx + s->tpos[t];
            kern_rmsnorm(ctx->hid + at * D, s->x + (int64_t)t * D, m->final_norm, D, c->rms_norm_eps);
            ctx->htok[at] = tokens[t];
        }
    }
    /* Only the rows asked for go through lm_head (V x D each), in one pass. */
    if (!out) {
        rmsnorm_rows(s->xn, s->x + (int64_t)(n - 1) * D, m->final_norm, 1, D, c->rms_norm_eps);
        op_matmul(ctx, ctx->logits, s->xn, &m->lm_head, 1);
        return;
    }
    int32_t rows = 0;
    for (int32_t t = 0; t < n; t++)
        if (!want || want[t])
            kern_rmsnorm(s->xn + (int64_t)rows++ * D, s->x + (int64_t)t * D, m->final_norm, D, c->rms_norm_eps);
    if (!rows) return;
    op_matmul(ctx, out, s->xn, &m->lm_head, rows);
    memcpy(ctx->logits, out + (int64_t)(rows - 1) * V, sizeof(float) * (size_t)V);
}

void deepseek_mtp_forward(dsc_ctx *ctx, const int32_t *next, int32_t n, int decode, const uint8_t *want, float *out) {
    const dsc_model *m = ctx->model;
    const dsc_mtp *mt = m->mtp;
    const dsc_config *c = &m->cfg;
    const int32_t D = c->hidden_size;
    dsc_scratch *s = &ctx->s;
    for (int32_t t = 0; t < n; t++) {
        const float *h = ctx->hid + ((int64_t)s->tseq[t] * ctx->n_ctx + s->tpos[t]) * D;
        float *cat = s->mcat + (int64_t)t * 2 * D;
        kern_mat_row(s->y, &mt->embed, next[t]);
        kern_rmsnorm(cat, s->y, mt->enorm, D, c->rms_norm_eps);
        kern_rmsnorm(cat + D, h, mt->hnorm, D, c->rms_norm_eps);
    }
    op_matmul(ctx, s->x, s->mcat, &mt->eh_proj, n);
    layer_forward(ctx, &mt->layer, c->n_layers, n, decode);
    int32_t rows = 0;
    for (int32_t t = 0; t < n && want; t++)
        if (want[t]) kern_rmsnorm(s->xn + (int64_t)rows++ * D, s->x + (int64_t)t * D, mt->head_norm, D, c->rms_norm_eps);
    if (rows) op_matmul(ctx, out, s->xn, &mt->head, rows);
}
