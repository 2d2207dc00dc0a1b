/*
 * deepseek.c — the DeepSeek-V2 / V3 / R1 forward pass.
 *
 *   x = embed(token)
 *   for each layer:  x += MLA(rmsnorm(x));  x += FFN(rmsnorm(x))   (FFN: dense or MoE)
 *   logits = lm_head(rmsnorm(x))
 *
 * The MTP layers that V3 checkpoints carry (index num_hidden_layers..) are not
 * part of plain next-token decoding.
 */
#include <string.h>

#include "models/model.h"

static void rmsnorm_rows(float *out, const float *x, const float *w, int32_t n, int32_t d, float eps) {
    for (int32_t t = 0; t < n; t++) kern_rmsnorm(out + (int64_t)t * d, x + (int64_t)t * d, w, d, eps);
}

void deepseek_forward(dsc_ctx *ctx, const int32_t *tokens, int32_t n, int decode, float *out, const uint8_t *want) {
    const dsc_model *m = ctx->model;
    const dsc_config *c = &m->cfg;
    const int32_t D = c->hidden_size, V = c->vocab_size;
    dsc_scratch *s = &ctx->s;

    for (int32_t t = 0; t < n; t++) kern_mat_row(s->x + (int64_t)t * D, &m->embed, tokens[t]);

    for (int32_t i = 0; i < c->n_layers; i++) {
        const dsc_layer *l = &m->layers[i];
        rmsnorm_rows(s->xn, s->x, l->attn_norm, n, D, c->rms_norm_eps);
        mla_forward(ctx, l, i, n, decode);
        kern_axpy(s->x, s->y, 1.0f, n * D);
        rmsnorm_rows(s->xn, s->x, l->ffn_norm, n, D, c->rms_norm_eps);
        ffn_forward(ctx, l, n);
        kern_axpy(s->x, s->y, 1.0f, n * D);
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
