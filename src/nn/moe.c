/*
 * moe.c — DeepSeekMoE feed-forward: routed experts chosen per token plus
 * always-on shared experts (DeepSeek-V2 paper sec. 2.2, DeepSeek-V3 sec. 2.1.2),
 * and the dense SwiGLU MLP of the first layers.
 */
#include <math.h>
#include <string.h>

#include "models/model.h"

/* Index of the largest x[i] with allowed[i] (first on ties), or -1. */
static int32_t argmax_allowed(const float *x, const unsigned char *allowed, int32_t n) {
    int32_t best = -1;
    for (int32_t i = 0; i < n; i++)
        if (allowed[i] && (best < 0 || x[i] > x[best])) best = i;
    return best;
}

/* Group score: max (group_limited_greedy) or sum of the top two (noaux_tc). */
static float group_score(const dsc_config *c, const float *x, int32_t n) {
    float a = -INFINITY, b = -INFINITY;
    for (int32_t i = 0; i < n; i++) {
        if (x[i] > a) {
            b = a;
            a = x[i];
        } else if (x[i] > b) {
            b = x[i];
        }
    }
    if (c->topk_method != DSC_TOPK_NOAUX_TC) return a;
    return n >= 2 ? a + b : a;
}

/* Chooses K experts for one token.
 *   logits (E): router outputs; bias (E) or NULL: e_score_correction_bias;
 *   scores: MOE_ROUTE_SCRATCH(E, n_group) floats of scratch;
 *   idx (K), w (K): the choice. */
void moe_route(const dsc_config *c, const float *logits, const float *bias, float *scores, int32_t *idx, float *w) {
    const int32_t E = c->n_routed_experts, K = c->n_experts_per_tok;
    float *choice = scores + E;                  /* scores the choice is made on */
    float *gs = scores + 2 * E;                  /* (n_group) group scores       */
    unsigned char *allowed = (unsigned char *)(gs + c->n_group);
    unsigned char *gkeep = allowed + E, *gall = gkeep + c->n_group;
    memcpy(scores, logits, sizeof(float) * (size_t)E);
    if (c->scoring_func == DSC_SCORE_SOFTMAX) kern_softmax(scores, E);
    else
        for (int32_t e = 0; e < E; e++) scores[e] = 1.0f / (1.0f + expf(-scores[e]));
    /* noaux_tc: the bias steers the choice only; the weights stay unbiased. */
    for (int32_t e = 0; e < E; e++) choice[e] = scores[e] + (bias ? bias[e] : 0.0f);
    memset(allowed, 1, (size_t)E);
    if (c->topk_method != DSC_TOPK_GREEDY && c->topk_group < c->n_group) {
        const int32_t G = c->n_group, per = E / G;
        for (int32_t g = 0; g < G; g++) {
            gs[g] = group_score(c, choice + g * per, per);
            gkeep[g] = 0;
            gall[g] = 1;
        }
        for (int32_t k = 0; k < c->topk_group; k++) {
            int32_t g = argmax_allowed(gs, gall, G);
            gkeep[g] = 1;
            gall[g] = 0;
        }
        for (int32_t e = 0; e < E; e++) allowed[e] = gkeep[e / per];
    }
    float sum = 0;
    for (int32_t k = 0; k < K; k++) {
        idx[k] = argmax_allowed(choice, allowed, E);
        allowed[idx[k]] = 0;
        w[k] = scores[idx[k]];
        sum += w[k];
    }
    /* V3 renormalises then scales; V2 does one or the other. */
    int renorm = c->norm_topk_prob && (K > 1 || c->arch == DSC_ARCH_V3);
    int scale = c->arch == DSC_ARCH_V3 || !renorm;
    for (int32_t k = 0; k < K; k++) {
        if (renorm) w[k] /= sum + 1e-20f;
        if (scale) w[k] *= c->routed_scaling_factor;
    }
}

/* out (n, D) = down(silu(gate x) * up x) for x (n, D); hg, hu (n, Fx) scratch. */
/* gemm_from: the products' threshold for the gemm (0: the default). */
static void mlp_forward(dsc_ctx *ctx, float *out, const float *x, const dsc_mlp *m, float *hg, float *hu, int32_t n,
                        int32_t gemm_from) {
    const dsc_mm gu[2] = {{hg, x, &m->gate, n, gemm_from}, {hu, x, &m->up, n, gemm_from}};
    op_matmul_batch(ctx, gu, 2);
    op_swiglu(ctx, hg, hu, (int64_t)n * m->gate.rows);
    const dsc_mm down = {out, hg, &m->down, n, gemm_from};
    op_matmul_batch(ctx, &down, 1);
}

/* The experts of a prefill (a step of DSC_FEW_TOKENS tokens or more, where
 * products of many tokens run on the gemm anyway) take the gemm from
 * MOE_GEMM_FROM tokens when their weights are FP8 or Q8, and from
 * MOE_GEMM_FROM_Q4 when they are Q4; with fewer tokens the row kernels,
 * which decode the weights once for every 3 or 4 tokens (the gemm once)
 * and multiply Q4 in 8-bit integers (the gemm in F32). One core, a
 * V2-Lite expert (1408 x 2048), the gemm's speed against the rows': FP8
 * 0.78x at 8 tokens, 1.10x at 12, 1.27x at 16; Q8 0.81x, 1.20x, 1.22x; Q4
 * 0.47x at 16, 0.72x at 32, 0.83x at 48, 0.95x at 64, 1.06x at 96. BF16
 * experts keep the default, the gemm from DSC_FEW_TOKENS (32): its speed
 * against BF16's rows (4 rows x 2 tokens a tile, no decoding to speak of)
 * was 0.57-0.64x at 8 tokens, 0.77-0.90x at 12 and 16, 0.90-0.91x at 24,
 * 0.84-1.07x at 32, 1.26-1.30x at 48 (medians of 31, one and two threads). */
#define MOE_GEMM_FROM 12
#define MOE_GEMM_FROM_Q4 80
static int32_t expert_gemm_from(const dsc_mlp *m) {
    const dsc_wtype t = m->gate.type;
    return t == DSC_W_Q4 ? MOE_GEMM_FROM_Q4 : t == DSC_W_F8_E4M3 || t == DSC_W_Q8 ? MOE_GEMM_FROM : 0;
}

/* The tokens of n routed to expert e, in token order: their indices, routing
 * weights and inputs. Returns how many. */
static int32_t moe_gather(const dsc_scratch *s, int32_t e, int32_t n, int32_t K, int32_t D, int32_t *tok, float *w,
                          float *x) {
    int32_t m = 0;
    for (int32_t t = 0; t < n; t++)
        for (int32_t k = 0; k < K; k++)
            if (s->ridx[t * K + k] == e) {
                tok[m] = t;
                w[m] = s->rw[t * K + k];
                memcpy(x + (int64_t)m * D, s->xn + (int64_t)t * D, sizeof(float) * (size_t)D);
                m++;
            }
    return m;
}

/* Few tokens: every chosen expert's gate and up products (and the shared
 * experts') under one barrier, then every down product under another. The
 * pairs are in the order of the per-expert loop of moe_forward, so the sums
 * into y are the same. */
static void moe_forward_few(dsc_ctx *ctx, const dsc_layer *l, int32_t n) {
    const dsc_config *c = &ctx->model->cfg;
    dsc_scratch *s = &ctx->s;
    const int32_t D = c->hidden_size, E = c->n_routed_experts, K = c->n_experts_per_tok, F = c->moe_intermediate_size;
    const int32_t most = n * K < E ? n * K : E; /* experts chosen at most */
    dsc_mm up[2 * most + 2], down[most + 1];
    int32_t P = 0, n_up = 0, n_down = 0;
    for (int32_t e = 0; e < E; e++) {
        const int32_t p0 = P;
        P += moe_gather(s, e, n, K, D, s->ptok + P, s->pw + P, s->px + (int64_t)P * D);
        if (P == p0) continue;
        const dsc_mlp *x = &l->experts[e];
        up[n_up++] = (dsc_mm){s->pg + (int64_t)p0 * F, s->px + (int64_t)p0 * D, &x->gate, P - p0, 0};
        up[n_up++] = (dsc_mm){s->pu + (int64_t)p0 * F, s->px + (int64_t)p0 * D, &x->up, P - p0, 0};
        down[n_down++] = (dsc_mm){s->py + (int64_t)p0 * D, s->pg + (int64_t)p0 * F, &x->down, P - p0, 0};
    }
    if (l->has_shared) {
        up[n_up++] = (dsc_mm){s->hg, s->xn, &l->shared.gate, n, 0};
        up[n_up++] = (dsc_mm){s->hu, s->xn, &l->shared.up, n, 0};
        down[n_down++] = (dsc_mm){s->y, s->hg, &l->shared.down, n, 0};
    } else {
        memset(s->y, 0, sizeof(float) * (size_t)n * D);
    }
    op_matmul_batch(ctx, up, n_up);
    op_swiglu(ctx, s->pg, s->pu, (int64_t)P * F);
    if (l->has_shared) op_swiglu(ctx, s->hg, s->hu, (int64_t)n * l->shared.gate.rows);
    op_matmul_batch(ctx, down, n_down);
    for (int32_t i = 0; i < P; i++) ctx->k->axpy(s->y + (int64_t)s->ptok[i] * D, s->py + (int64_t)i * D, s->pw[i], D);
}

/* Routed experts: tokens sent to each expert go through it as one batch;
 * the experts in waves, as many in turn as their (token, expert) pairs fit
 * the scratch of a batch (ex, hg, hu, ey: B rows), each wave's gate and up
 * products under one barrier, then its down products under another. The
 * sums into y go in expert order, whatever the waves. */
static void moe_forward(dsc_ctx *ctx, const dsc_layer *l, int32_t n) {
    const dsc_config *c = &ctx->model->cfg;
    dsc_scratch *s = &ctx->s;
    const int32_t D = c->hidden_size, E = c->n_routed_experts, K = c->n_experts_per_tok, F = c->moe_intermediate_size;
    op_matmul(ctx, s->rlogit, s->xn, &l->router, n);
    for (int32_t t = 0; t < n; t++)
        moe_route(c, s->rlogit + (int64_t)t * E, l->router_bias, s->rscore, s->ridx + (int64_t)t * K,
                  s->rw + (int64_t)t * K);
    if (n < DSC_FEW_TOKENS) {
        moe_forward_few(ctx, l, n);
        return;
    }
    if (l->has_shared) mlp_forward(ctx, s->y, s->xn, &l->shared, s->hg, s->hu, n, 0);
    else memset(s->y, 0, sizeof(float) * (size_t)n * D);
    int32_t cnt[E];
    memset(cnt, 0, sizeof cnt);
    for (int64_t i = 0; i < (int64_t)n * K; i++) cnt[s->ridx[i]]++;
    dsc_mm up[2 * E], down[E];
    for (int32_t e0 = 0; e0 < E;) {
        int32_t P = 0, nu = 0, nd = 0, e1 = e0;
        for (; e1 < E && P + cnt[e1] <= ctx->n_batch; e1++) {
            if (cnt[e1] == 0) continue;
            const dsc_mlp *x = &l->experts[e1];
            const int32_t m = moe_gather(s, e1, n, K, D, s->etok + P, s->ew + P, s->ex + (int64_t)P * D);
            const int32_t gf = expert_gemm_from(x);
            up[nu++] = (dsc_mm){s->hg + (int64_t)P * F, s->ex + (int64_t)P * D, &x->gate, m, gf};
            up[nu++] = (dsc_mm){s->hu + (int64_t)P * F, s->ex + (int64_t)P * D, &x->up, m, gf};
            down[nd++] = (dsc_mm){s->ey + (int64_t)P * D, s->hg + (int64_t)P * F, &x->down, m, gf};
            P += m;
        }
        op_matmul_batch(ctx, up, nu);
        op_swiglu(ctx, s->hg, s->hu, (int64_t)P * F);
        op_matmul_batch(ctx, down, nd);
        for (int32_t i = 0; i < P; i++)
            ctx->k->axpy(s->y + (int64_t)s->etok[i] * D, s->ey + (int64_t)i * D, s->ew[i], D);
        e0 = e1;
    }
}

void ffn_forward(dsc_ctx *ctx, const dsc_layer *l, int32_t n) {
    if (l->is_moe) moe_forward(ctx, l, n);
    else mlp_forward(ctx, ctx->s.y, ctx->s.xn, &l->mlp, ctx->s.hg, ctx->s.hu, n, 0);
}
