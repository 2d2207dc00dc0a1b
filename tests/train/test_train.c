/*
 * test_train.c — the trainer against its golden float64 gradients, and every
 * backward kernel against central finite differences.
 *
 *   test_train GOLDEN_DIR [MODEL_ROOT...]
 *     GOLDEN_DIR/models/{v3-tiny,v2lite-tiny}/{model,train.safetensors}: golden gradients
 *     every GOLDEN_DIR/models/NAME and MODEL_ROOT (model/, expected.safetensors):
 *       the trainer's forward against the inference logits, and (except the two
 *       above) a whole-model directional finite-difference check
 *
 * Golden checks (shared/golden/README.md): loss_ce and loss_aux within 1e-3
 * relative; every gradient within 1e-3 x max|grad| of its tensor; the losses
 * before each of 5 AdamW steps and after the last within 1e-3 relative;
 * bias_after within 1e-6. One line per check group, then "N passed, M failed".
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "train/ops.h"
#include "train/train.h"
#include "train/trainer.h"

static int n_pass, n_fail;

static void report(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report(int ok, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("%s ", ok ? "PASS" : "FAIL");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    if (ok) n_pass++;
    else n_fail++;
}

/* ------------------------------------------------------------------------ */
/* Finite differences                                                        */

static uint64_t rng = 88172645463325252ull;
static float frand(void) { /* uniform in [-1, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) / (double)(1ull << 24) * 2.0 - 1.0);
}
static float *rand_vec(int64_t n, float scale) {
    float *p = malloc(sizeof(float) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) p[i] = frand() * scale;
    return p;
}
static float *zeros(int64_t n) { return calloc((size_t)(n ? n : 1), sizeof(float)); }

typedef struct {
    const char *name;
    float *x;      /* the input, perturbed in place  */
    float *grad;   /* its analytic gradient          */
    int64_t n;
} fd_input;

typedef double (*fd_loss_fn)(void *ctx);

/* Largest |numeric - analytic| / max|analytic| over the inputs, each input
 * normalised by its own largest analytic gradient. */
static void fd_check(const char *what, fd_loss_fn loss, void *ctx, fd_input *in, int n_in, double eps, double tol) {
    double worst = -1;
    const char *worst_name = "";
    for (int i = 0; i < n_in; i++) {
        double amax = 0, dmax = 0;
        for (int64_t k = 0; k < in[i].n; k++) amax = fmax(amax, fabs(in[i].grad[k]));
        for (int64_t k = 0; k < in[i].n; k++) {
            const float x0 = in[i].x[k];
            in[i].x[k] = (float)(x0 + eps);
            const double lp = loss(ctx);
            in[i].x[k] = (float)(x0 - eps);
            const double lm = loss(ctx);
            in[i].x[k] = x0;
            const double h = ((double)(float)(x0 + eps) - (double)(float)(x0 - eps));
            dmax = fmax(dmax, fabs((lp - lm) / h - in[i].grad[k]));
        }
        const double rel = amax > 0 ? dmax / amax : dmax;
        if (!(rel <= worst)) worst = rel, worst_name = in[i].name;
        if (amax == 0) worst = INFINITY, worst_name = in[i].name; /* a zero gradient checks nothing */
    }
    report(worst <= tol, "fd %-28s max |num - ana| / max|ana| = %.2e (%s)", what, worst, worst_name);
}

static double dot_r(const float *r, const float *y, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)r[i] * y[i];
    return s;
}

static train_exec ex1;  /* one thread, the simple (row by row) matmul */
static train_exec exs;  /* one thread, the tiled (gemm) matmul */
static train_exec exn;  /* a pool of 3 threads, tiled */

/* --- matmul --- */
typedef struct {
    int32_t N, I, O;
    float *x, *w, *y, *r;
    const train_exec *ex;
} mm_ctx;
static double mm_loss(void *p) {
    mm_ctx *c = p;
    train_matmul_forward(c->y, c->x, c->w, c->N, c->I, c->O, c->ex);
    return dot_r(c->r, c->y, (int64_t)c->N * c->O);
}
static void fd_matmul(const char *what, int32_t N, int32_t I, int32_t O, const train_exec *ex) {
    mm_ctx c = {N, I, O, rand_vec(N * I, 1), rand_vec(O * I, 1), zeros(N * O), rand_vec(N * O, 1), ex};
    float *dx = zeros(N * I), *dw = zeros(O * I);
    train_matmul_backward(dx, dw, c.r, c.x, c.w, N, I, O, ex);
    fd_input in[] = {{"inp", c.x, dx, N * I}, {"weight", c.w, dw, O * I}};
    fd_check(what, mm_loss, &c, in, 2, 1e-2, 1e-3);
    free(c.x), free(c.w), free(c.y), free(c.r), free(dx), free(dw);
}

/* --- rmsnorm --- */
typedef struct {
    int32_t N, C;
    float *x, *w, *y, *rstd, *r;
} rn_ctx;
static double rn_loss(void *p) {
    rn_ctx *c = p;
    train_rmsnorm_forward(c->y, c->rstd, c->x, c->w, c->N, c->C, 1e-6f, &exn);
    return dot_r(c->r, c->y, (int64_t)c->N * c->C);
}
static void fd_rmsnorm(void) {
    rn_ctx c = {5, 12, rand_vec(60, 1), rand_vec(12, 1), zeros(60), zeros(5), rand_vec(60, 1)};
    float *dx = zeros(60), *dw = zeros(12);
    rn_loss(&c);
    train_rmsnorm_backward(dx, dw, c.r, c.x, c.w, c.rstd, c.N, c.C, &exn);
    fd_input in[] = {{"inp", c.x, dx, 60}, {"weight", c.w, dw, 12}};
    fd_check("rmsnorm", rn_loss, &c, in, 2, 1e-3, 5e-3);
    free(c.x), free(c.w), free(c.y), free(c.rstd), free(c.r), free(dx), free(dw);
}

/* --- embedding --- */
typedef struct {
    int32_t N, D;
    int32_t *tok;
    float *wte, *y, *r;
} em_ctx;
static double em_loss(void *p) {
    em_ctx *c = p;
    train_embed_forward(c->y, c->tok, c->wte, c->N, c->D);
    return dot_r(c->r, c->y, (int64_t)c->N * c->D);
}
static void fd_embed(void) {
    int32_t tok[6] = {3, 1, 3, 0, 4, 3};
    em_ctx c = {6, 5, tok, rand_vec(25, 1), zeros(30), rand_vec(30, 1)};
    float *dw = zeros(25);
    train_embed_backward(dw, c.r, tok, 6, 5);
    fd_input in[] = {{"wte", c.wte, dw, 25}};
    fd_check("embedding", em_loss, &c, in, 1, 1e-2, 1e-4);
    free(c.wte), free(c.y), free(c.r), free(dw);
}

/* --- rope --- */
typedef struct {
    int32_t N, T, H, stride, Dr;
    float *x, *tmp, *cs, *sn, *r;
} rp_ctx;
static double rp_loss(void *p) {
    rp_ctx *c = p;
    const int64_t n = (int64_t)c->N * c->H * c->stride;
    memcpy(c->tmp, c->x, sizeof(float) * (size_t)n);
    train_rope_forward(c->tmp + 2, c->cs, c->sn, c->N, c->T, c->H, c->stride, c->Dr);
    return dot_r(c->r, c->tmp, n);
}
static void fd_rope(void) {
    /* 2 sequences of 3, 2 heads of stride 8 with the rope part (Dr 6) at offset 2 */
    const int32_t N = 6, T = 3, H = 2, S = 8, Dr = 6, n = N * H * S;
    rp_ctx c = {N, T, H, S, Dr, rand_vec(n, 1), zeros(n), zeros(T * Dr / 2), zeros(T * Dr / 2), rand_vec(n, 1)};
    for (int t = 0; t < T; t++)
        for (int i = 0; i < Dr / 2; i++) { /* with an mscale, like YaRN */
            c.cs[t * Dr / 2 + i] = (float)(1.3 * cos(t * pow(10.0, -i)));
            c.sn[t * Dr / 2 + i] = (float)(1.3 * sin(t * pow(10.0, -i)));
        }
    float *dx = malloc(sizeof(float) * n);
    memcpy(dx, c.r, sizeof(float) * n);
    train_rope_backward(dx + 2, c.cs, c.sn, N, T, H, S, Dr);
    fd_input in[] = {{"x", c.x, dx, n}};
    fd_check("rope (interleaved, mscale)", rp_loss, &c, in, 1, 1e-2, 1e-4);
    free(c.x), free(c.tmp), free(c.cs), free(c.sn), free(c.r), free(dx);
}

/* --- attention --- */
typedef struct {
    int32_t B, T, H, Dn, Dr, Dv;
    float *q, *kv, *kpe, *out, *att, *r;
    const train_exec *ex;
} at_ctx;
static double at_loss(void *p) {
    at_ctx *c = p;
    train_attention_forward(c->out, c->att, c->q, c->kv, c->kpe, c->B, c->T, c->H, c->Dn, c->Dr, c->Dv, 0.37f, c->ex);
    return dot_r(c->r, c->out, (int64_t)c->B * c->T * c->H * c->Dv);
}
static void fd_attention(const char *what, int32_t B, int32_t T, const train_exec *ex) {
    const int32_t H = 3, Dn = 4, Dr = 4, Dv = 3, N = B * T;
    at_ctx c = {B, T, H, Dn, Dr, Dv, rand_vec(N * H * (Dn + Dr), 1), rand_vec(N * H * (Dn + Dv), 1), rand_vec(N * Dr, 1),
                zeros(N * H * Dv), zeros(B * H * T * T), rand_vec(N * H * Dv, 1), ex};
    float *dq = zeros(N * H * (Dn + Dr)), *dkv = zeros(N * H * (Dn + Dv)), *dkpe = zeros(N * Dr), *dkh = zeros(N * H * Dr);
    at_loss(&c);
    train_attention_backward(dq, dkv, dkpe, dkh, c.r, c.q, c.kv, c.kpe, c.att, B, T, H, Dn, Dr, Dv, 0.37f, ex);
    fd_input in[] = {{"q", c.q, dq, N * H * (Dn + Dr)}, {"kv", c.kv, dkv, N * H * (Dn + Dv)}, {"kpe", c.kpe, dkpe, N * Dr}};
    fd_check(what, at_loss, &c, in, 3, 1e-3, 5e-3);
    free(c.q), free(c.kv), free(c.kpe), free(c.out), free(c.att), free(c.r), free(dq), free(dkv), free(dkpe), free(dkh);
}

/* --- swiglu --- */
typedef struct {
    int64_t n;
    float *g, *u, *h, *r;
} sw_ctx;
static double sw_loss(void *p) {
    sw_ctx *c = p;
    train_swiglu_forward(c->h, c->g, c->u, c->n, &exn);
    return dot_r(c->r, c->h, c->n);
}
static void fd_swiglu(void) {
    sw_ctx c = {40, rand_vec(40, 4), rand_vec(40, 2), zeros(40), rand_vec(40, 1)};
    float *dg = zeros(40), *du = zeros(40);
    train_swiglu_backward(dg, du, c.r, c.g, c.u, 40, &exn);
    fd_input in[] = {{"gate", c.g, dg, 40}, {"up", c.u, du, 40}};
    fd_check("swiglu", sw_loss, &c, in, 2, 1e-3, 1e-3);
    free(c.g), free(c.u), free(c.h), free(c.r), free(dg), free(du);
}

/* --- router scores --- */
typedef struct {
    int32_t N, E, sigmoid;
    float *logit, *score, *r;
} ro_ctx;
static double ro_loss(void *p) {
    ro_ctx *c = p;
    train_router_forward(c->score, c->logit, c->N, c->E, c->sigmoid);
    return dot_r(c->r, c->score, (int64_t)c->N * c->E);
}
static void fd_router(int sigmoid) {
    ro_ctx c = {4, 8, sigmoid, rand_vec(32, 3), zeros(32), rand_vec(32, 1)};
    float *dl = zeros(32);
    ro_loss(&c);
    train_router_backward(dl, c.r, c.score, 4, 8, sigmoid);
    fd_input in[] = {{"logit", c.logit, dl, 32}};
    fd_check(sigmoid ? "router sigmoid" : "router softmax", ro_loss, &c, in, 1, 1e-3, 2e-3);
    free(c.logit), free(c.score), free(c.r), free(dl);
}

/* --- top-k weights --- */
typedef struct {
    int32_t N, E, K, renorm;
    float scale;
    int32_t *idx;
    float *score, *w, *r;
} tk_ctx;
static double tk_loss(void *p) {
    tk_ctx *c = p;
    train_topk_forward(c->w, c->score, c->idx, c->N, c->E, c->K, c->renorm, c->scale);
    return dot_r(c->r, c->w, (int64_t)c->N * c->K);
}
static void fd_topk(int renorm, float scale) {
    int32_t idx[9] = {0, 5, 2, 7, 1, 3, 4, 6, 0};
    tk_ctx c = {3, 8, 3, renorm, scale, idx, rand_vec(24, 1), zeros(9), rand_vec(9, 1)};
    for (int i = 0; i < 24; i++) c.score[i] = 0.1f + 0.45f * (c.score[i] + 1); /* positive, like sigmoid scores */
    float *ds = zeros(24);
    train_topk_backward(ds, c.r, c.score, idx, 3, 8, 3, renorm, scale);
    fd_input in[] = {{"score", c.score, ds, 24}};
    char what[64];
    snprintf(what, sizeof what, "top-k weights renorm=%d x%.1f", renorm, scale);
    fd_check(what, tk_loss, &c, in, 1, 1e-3, 2e-3);
    free(c.score), free(c.w), free(c.r), free(ds);
}

/* --- balance loss --- */
typedef struct {
    int32_t B, T, E, K;
    int32_t *idx;
    float *score;
} bl_ctx;
static double bl_loss(void *p) {
    bl_ctx *c = p;
    return train_balance_forward(c->score, c->idx, c->B, c->T, c->E, c->K, 0.3f);
}
static void fd_balance(int softmax) {
    const int32_t B = 2, T = 4, E = 6, K = 2, N = B * T;
    int32_t idx[16] = {0, 1, 2, 3, 0, 4, 5, 0, 1, 2, 1, 3, 3, 4, 0, 2};
    bl_ctx c = {B, T, E, K, idx, rand_vec(N * E, 2)};
    train_router_forward(c.score, c.score, N, E, !softmax);
    float *ds = zeros(N * E);
    train_balance_backward(ds, c.score, idx, B, T, E, K, 0.3f, 1.0f);
    fd_input in[] = {{"score", c.score, ds, N * E}};
    fd_check(softmax ? "balance loss (softmax scores)" : "balance loss (sigmoid scores)", bl_loss, &c, in, 1, 1e-3, 2e-3);
    free(c.score), free(ds);
}

/* --- expert combine --- */
typedef struct {
    int32_t M, K, D, N;
    int32_t *order;
    float *ey, *w, *y, *r;
} cb_ctx;
static double cb_loss(void *p) {
    cb_ctx *c = p;
    memset(c->y, 0, sizeof(float) * (size_t)c->N * c->D);
    train_combine_forward(c->y, c->ey, c->w, c->order, c->M, c->K, c->D);
    return dot_r(c->r, c->y, (int64_t)c->N * c->D);
}
static void fd_combine(void) {
    int32_t order[8] = {3, 0, 5, 7, 1, 6, 2, 4}; /* N 4, K 2 */
    cb_ctx c = {8, 2, 5, 4, order, rand_vec(40, 1), rand_vec(8, 1), zeros(20), rand_vec(20, 1)};
    float *dey = zeros(40), *dw = zeros(8);
    train_combine_backward(dey, dw, c.r, c.ey, c.w, order, 8, 2, 5);
    fd_input in[] = {{"ey", c.ey, dey, 40}, {"w", c.w, dw, 8}};
    fd_check("expert combine", cb_loss, &c, in, 2, 1e-2, 1e-4);
    free(c.ey), free(c.w), free(c.y), free(c.r), free(dey), free(dw);
}

/* --- cross-entropy --- */
typedef struct {
    int32_t N, V;
    int32_t *tg;
    float *logits, *probs, *losses;
} ce_ctx;
static double ce_loss(void *p) {
    ce_ctx *c = p;
    train_crossentropy_forward(c->losses, c->probs, c->logits, c->tg, c->N, c->V, &ex1);
    double s = 0;
    for (int i = 0; i < c->N; i++) s += c->losses[i];
    return s / c->N;
}
static void fd_crossentropy(void) {
    int32_t tg[5] = {3, 0, 9, 3, 6};
    ce_ctx c = {5, 10, tg, rand_vec(50, 3), zeros(50), zeros(5)};
    float *dl = zeros(50);
    ce_loss(&c);
    train_crossentropy_backward(dl, c.probs, tg, 5, 10, 1.0f / 5, &ex1);
    fd_input in[] = {{"logits", c.logits, dl, 50}};
    fd_check("cross-entropy (mean)", ce_loss, &c, in, 1, 1e-3, 2e-3);
    free(c.logits), free(c.probs), free(c.losses), free(dl);
}

/* The pool splits work so that every output has one writer: the threaded
 * kernels must agree with the single-threaded ones (to rounding). */
static double max_rel_diff(const float *a, const float *b, int64_t n) {
    double mx = 0, d = 0;
    for (int64_t i = 0; i < n; i++) mx = fmax(mx, fabs(b[i])), d = fmax(d, fabs((double)a[i] - b[i]));
    return isnan(d) ? INFINITY : mx > 0 ? d / mx : d;
}

/* The tiled (gemm) matmul, on one thread and on three, against the simple,
 * single-threaded specification; N > TRAIN_KB exercises the K blocks of dW. */
static void tiled_matmul(int32_t N, int32_t I, int32_t O) {
    float *x = rand_vec(N * I, 1), *w = rand_vec(O * I, 1), *r = rand_vec(N * O, 1);
    float *y[3], *dx[3], *dw[3];
    const train_exec *ex[3] = {&ex1, &exs, &exn};
    for (int i = 0; i < 3; i++) {
        y[i] = zeros(N * O), dx[i] = zeros(N * I), dw[i] = zeros(O * I);
        for (int64_t k = 0; k < (int64_t)N * I; k++) dx[i][k] = 0.5f; /* accumulates */
        for (int64_t k = 0; k < (int64_t)O * I; k++) dw[i][k] = -0.25f;
        train_matmul_forward(y[i], x, w, N, I, O, ex[i]);
        train_matmul_backward(dx[i], dw[i], r, x, w, N, I, O, ex[i]);
    }
    double e = fmax(max_rel_diff(y[2], y[0], N * O), fmax(max_rel_diff(dx[2], dx[0], N * I), max_rel_diff(dw[2], dw[0], O * I)));
    report(e <= 1e-5, "tiled, threaded matmul backward [%d, %d] x [%d, %d]^T vs simple: max rel diff %.1e", N, I, O, I, e);
    const int same = !memcmp(y[1], y[2], sizeof(float) * N * O) && !memcmp(dx[1], dx[2], sizeof(float) * N * I) &&
                     !memcmp(dw[1], dw[2], sizeof(float) * O * I);
    report(same, "tiled matmul [%d, %d] x [%d, %d]^T: 3 threads give the bits of 1", N, I, O, I);
    free(x), free(w), free(r);
    for (int i = 0; i < 3; i++) free(y[i]), free(dx[i]), free(dw[i]);
}

static void threads_attention(int32_t B, int32_t T, int32_t Dv) {
    const int32_t H = 5, Dn = 8, Dr = 4, N = B * T, nq = N * H * (Dn + Dr), nkv = N * H * (Dn + Dv);
    float *q = rand_vec(nq, 1), *kv = rand_vec(nkv, 1), *kpe = rand_vec(N * Dr, 1), *r = rand_vec(N * H * Dv, 1);
    float *o[3], *att[3], *dq[3], *dkv[3], *dkpe[3], *dkh[3];
    train_exec rows = ex1;
    rows.simple_attention = 1;
    for (int i = 0; i < 3; i++) {
        const train_exec *ex = i == 2 ? &rows : i ? &exn : &ex1;
        o[i] = zeros(N * H * Dv), att[i] = zeros(B * H * T * T), dq[i] = zeros(nq), dkv[i] = zeros(nkv);
        dkpe[i] = zeros(N * Dr), dkh[i] = zeros(N * H * Dr);
        train_attention_forward(o[i], att[i], q, kv, kpe, B, T, H, Dn, Dr, Dv, 0.3f, ex);
        train_attention_backward(dq[i], dkv[i], dkpe[i], dkh[i], r, q, kv, kpe, att[i], B, T, H, Dn, Dr, Dv, 0.3f, ex);
    }
    double e = fmax(max_rel_diff(o[1], o[0], N * H * Dv), max_rel_diff(dq[1], dq[0], nq));
    e = fmax(e, fmax(max_rel_diff(dkv[1], dkv[0], nkv), max_rel_diff(dkpe[1], dkpe[0], N * Dr)));
    report(e <= 1e-6, "threads attention B %d T %d H %d: max rel diff to 1 thread %.1e", B, T, H, e);
    /* the tiled (gemm) form against the query-by-query specification */
    e = fmax(max_rel_diff(o[2], o[0], N * H * Dv), max_rel_diff(dq[2], dq[0], nq));
    e = fmax(e, fmax(max_rel_diff(dkv[2], dkv[0], nkv), max_rel_diff(dkpe[2], dkpe[0], N * Dr)));
    e = fmax(e, max_rel_diff(att[2], att[0], B * H * T * T));
    report(e <= 1e-5, "attention B %d T %d H %d (%s): max rel diff of the %s form to the row form %.1e", B, T, H,
           ex1.k->name, ex1.k->gemm && T >= 16 ? "gemm" : "row", e);
    free(q), free(kv), free(kpe), free(r);
    for (int i = 0; i < 3; i++) free(o[i]), free(att[i]), free(dq[i]), free(dkv[i]), free(dkpe[i]), free(dkh[i]);
}

/* Every kernel set's gemm against the reference's, with row strides, for
 * every storage of A and B, overwriting and accumulating. */
static void gemm_vs_ref(int32_t M, int32_t N, int32_t K) {
    for (int flags = 0; flags < 8; flags++) {
        const int at = flags & DSC_GEMM_AT, bn = flags & DSC_GEMM_BN;
        const int64_t lda = (at ? M : K) + 3, ldb = (bn ? N : K) + 1, ldc = N + 2;
        const int64_t na = (at ? K : M) * lda, nb = (bn ? K : N) * ldb;
        float *a = rand_vec(na, 1), *b = rand_vec(nb, 1), *c0 = rand_vec(M * ldc, 1), *c1 = malloc(sizeof(float) * M * ldc);
        float *pack = zeros((int64_t)kern_gemm_scratch(M, N, K, flags));
        memcpy(c1, c0, sizeof(float) * M * ldc);
        kern_ref.gemm(c0, ldc, a, lda, b, ldb, M, N, K, flags, pack);
        ex1.k->gemm(c1, ldc, a, lda, b, ldb, M, N, K, flags, pack);
        report(max_rel_diff(c1, c0, M * ldc) <= 1e-5, "gemm %s M %d N %d K %d flags%s%s%s: max rel diff to ref %.1e",
               ex1.k->name, M, N, K, at ? " AT" : "", bn ? " BN" : "", flags & DSC_GEMM_ACC ? " ACC" : "",
               max_rel_diff(c1, c0, M * ldc));
        free(a), free(b), free(c0), free(c1), free(pack);
    }
}

/* exp_sum, sigmoid and AdamW of every kernel set the CPU runs against the reference:
 * exp within 2 ulp-ish (relative 3e-7) and its sum to 1e-6; AdamW to the bit. */
static void exp_adamw_vs_ref(void) {
    const char *isas[] = {"avx2", "avx512"};
    for (int s = 0; s < 2; s++) {
        const dsc_kernels *k = kern_select(isas[s]);
        if (!k) continue;
        const int32_t n = 4103; /* a tail after the vectors */
        float *x = rand_vec(n, 1), *y0 = zeros(n), *y1 = zeros(n);
        for (int32_t i = 0; i < n; i++) x[i] *= 40.0f; /* exp of [-80, 0] and, past the clamp, of -200 */
        x[5] = -200.0f, x[6] = 0.0f;
        const double s0 = kern_ref.exp_sum(y0, x, n, 20.0f), s1 = k->exp_sum(y1, x, n, 20.0f);
        double e = 0;
        for (int32_t i = 0; i < n; i++)
            if (y0[i] > 1e-37f) e = fmax(e, fabs((double)y1[i] - y0[i]) / y0[i]);
        report(e <= 3e-7 && fabs(s1 - s0) <= 1e-6 * s0 && y1[5] == 0 && isfinite(s1),
               "exp_sum %s: max rel diff to expf %.1e, sum rel diff %.1e", k->name, e, fabs(s1 - s0) / s0);
        for (int32_t i = 0; i < n; i++) x[i] = (x[i] - 20.0f) * 0.5f; /* sigmoid of [-20, 20] and 100 */
        x[7] = 100.0f, x[8] = -100.0f;
        kern_ref.sigmoid(y0, x, n);
        k->sigmoid(y1, x, n);
        e = 0;
        for (int32_t i = 0; i < n; i++)
            if (y0[i] > 1e-37f) e = fmax(e, fabs((double)y1[i] - y0[i]) / y0[i]);
        report(e <= 5e-7 && y1[7] == 1.0f && y1[8] >= 0 && y1[8] < 1e-40f, "sigmoid %s: max rel diff to the reference %.1e",
               k->name, e);
        float *p[2], *m[2], *v[2], *g = rand_vec(n, 1);
        for (int r = 0; r < 2; r++) p[r] = rand_vec(n, 1), m[r] = rand_vec(n, 1), v[r] = rand_vec(n, 1);
        for (int32_t i = 0; i < n; i++) v[0][i] = v[1][i] = fabsf(v[0][i]), m[1][i] = m[0][i], p[1][i] = p[0][i];
        const dsc_adamw_hp hp = {0.9f, 0.95f, 1e-8f, 3e-3f, 0.1f, 0.271f, 0.0975f};
        for (int step = 0; step < 3; step++) {
            kern_ref.adamw(p[0], g, m[0], v[0], n, &hp);
            k->adamw(p[1], g, m[1], v[1], n, &hp);
        }
        const int same = !memcmp(p[0], p[1], sizeof(float) * n) && !memcmp(m[0], m[1], sizeof(float) * n) &&
                         !memcmp(v[0], v[1], sizeof(float) * n);
        report(same, "adamw %s: 3 steps on %d floats give the reference's bits", k->name, n);
        free(x), free(y0), free(y1), free(g);
        for (int r = 0; r < 2; r++) free(p[r]), free(m[r]), free(v[r]);
    }
}

static void run_fd(void) {
    fd_embed();
    fd_rmsnorm();
    fd_matmul("matmul", 7, 13, 9, &ex1);
    fd_matmul("matmul (blocked dW)", 150, 17, 3, &ex1);
    fd_matmul("matmul (tiled backward)", 40, 13, 9, &exs);
    fd_rope();
    fd_attention("attention", 2, 5, &ex1);
    fd_attention("attention (T >= 16: gemm form)", 2, 19, &ex1);
    fd_swiglu();
    fd_router(1);
    fd_router(0);
    fd_topk(1, 2.5f);
    fd_topk(0, 16.0f);
    fd_balance(0);
    fd_balance(1);
    fd_combine();
    fd_crossentropy();
    tiled_matmul(1100, 96, 80);
    tiled_matmul(200, 64, 7);
    tiled_matmul(17, 5, 130);
    threads_attention(3, 40, 6);
    threads_attention(2, 19, 6);
    threads_attention(1, 17, 40); /* head sizes larger than T (scratch sizes) */
    threads_attention(2, 101, 6); /* several blocks of rows (48, 48, 5) */
    gemm_vs_ref(13, 37, 29);
    gemm_vs_ref(64, 16, 48);
    gemm_vs_ref(5, 3, 300);
    exp_adamw_vs_ref();
}

/* ------------------------------------------------------------------------ */
/* Golden                                                                    */

static const st_tensor *need(const st_file *f, const char *name, st_dtype dt) {
    const st_tensor *t = st_find(f, name);
    if (!t || t->dtype != dt) {
        fprintf(stderr, "%s: tensor '%s' missing or of the wrong dtype\n", f->path, name);
        return NULL;
    }
    return t;
}

static float f32_at(const st_tensor *t, int64_t i) {
    float v;
    memcpy(&v, t->data + 4 * i, 4);
    return v;
}

/* "model.layers.12.mlp.experts.3.up_proj.weight" -> "mlp.experts.*.up_proj.weight" */
static void group_of(const char *name, char *out, size_t cap) {
    const char *p = name;
    if (!strncmp(p, "model.layers.", 13)) {
        p += 13;
        while (*p >= '0' && *p <= '9') p++;
        if (*p == '.') p++;
    }
    size_t n = 0;
    for (; *p && n + 2 < cap; p++) {
        if (*p >= '0' && *p <= '9' && n > 0 && out[n - 1] == '.') {
            while (p[1] >= '0' && p[1] <= '9') p++;
            out[n++] = '*';
        } else {
            out[n++] = *p;
        }
    }
    out[n] = 0;
}

typedef struct {
    char name[96];
    int n;
    double worst;
    const char *worst_tensor;
} group;

static double rel(double a, double b) { return fabs(a - b) / fmax(fabs(b), 1e-30); }

static void golden_model(const char *root, const char *name) {
    char dir[4096], path[4096];
    snprintf(dir, sizeof dir, "%s/models/%s/model", root, name);
    snprintf(path, sizeof path, "%s/models/%s/train.safetensors", root, name);
    st_file f;
    if (st_open(path, &f)) {
        report(0, "%s: %s", name, dsc_last_error());
        return;
    }
    const st_tensor *tt = need(&f, "tokens", ST_I32), *tce = need(&f, "loss_ce", ST_F32),
                    *tax = need(&f, "loss_aux", ST_F32), *tls = need(&f, "losses", ST_F32);
    if (!tt || !tce || !tax || !tls || tt->ndim != 2 || tls->shape[0] != 6) {
        report(0, "%s: train.safetensors lacks tokens [B, T+1], loss_ce, loss_aux or losses [6]", name);
        st_close(&f);
        return;
    }
    const int32_t B = (int32_t)tt->shape[0], T = (int32_t)tt->shape[1] - 1;
    int32_t *tokens = malloc(tt->nbytes);
    memcpy(tokens, tt->data, tt->nbytes);

    dsc_train_params p = dsc_train_default_params(); /* the golden settings: alpha 0.01, lr 1e-2, ... */
    p.n_batch = B;
    p.n_seq = T;
    dsc_trainer *t;
    if (dsc_trainer_new(dir, &p, &t)) {
        report(0, "%s: %s", name, dsc_last_error());
        free(tokens);
        st_close(&f);
        return;
    }
    float ce, aux;
    dsc_train_grad(t, tokens, B, T, &ce, &aux);
    const float want_ce = f32_at(tce, 0), want_aux = f32_at(tax, 0);
    report(rel(ce, want_ce) < 1e-3, "%s loss_ce %.6f (golden %.6f, rel %.1e)", name, ce, want_ce, rel(ce, want_ce));
    report(rel(aux, want_aux) < 1e-3, "%s loss_aux %.6f (golden %.6f, rel %.1e)", name, aux, want_aux, rel(aux, want_aux));

    /* Every gradient, grouped by tensor kind for the report. */
    group groups[64];
    int n_groups = 0, n_grads = 0, missing = 0;
    for (int i = 0; i < f.n_tensors; i++) {
        const st_tensor *g = &f.tensors[i];
        if (strncmp(g->name, "grad.", 5)) continue;
        n_grads++;
        const dsc_train_tensor *mine = dsc_train_find(t, g->name + 5);
        if (!mine || g->dtype != ST_F32 || st_numel(g) != mine->numel || g->ndim != mine->ndim ||
            g->shape[0] != mine->shape[0] || (g->ndim == 2 && g->shape[1] != mine->shape[1])) {
            report(0, "%s %s: no trainable tensor of that shape", name, g->name);
            missing++;
            continue;
        }
        double mx = 0, d = 0;
        for (int64_t k = 0; k < mine->numel; k++) {
            const double want = f32_at(g, k);
            mx = fmax(mx, fabs(want));
            d = fmax(d, fabs(mine->grad[k] - want));
        }
        const double err = isnan(d) ? INFINITY : mx > 0 ? d / mx : d;
        char gname[96];
        group_of(g->name + 5, gname, sizeof gname);
        int j = 0;
        while (j < n_groups && strcmp(groups[j].name, gname)) j++;
        if (j == n_groups && n_groups < 64) {
            snprintf(groups[n_groups].name, sizeof groups[0].name, "%s", gname);
            groups[n_groups].n = 0;
            groups[n_groups].worst = -1;
            n_groups++;
        }
        if (j < n_groups) {
            groups[j].n++;
            if (!(err <= groups[j].worst)) groups[j].worst = err, groups[j].worst_tensor = g->name + 5;
        }
    }
    for (int j = 0; j < n_groups; j++)
        report(groups[j].worst <= 1e-3, "%s grad %-40s x%-3d max|diff| / max|grad| = %.2e", name, groups[j].name,
               groups[j].n, groups[j].worst);
    report(!missing && n_grads == dsc_train_n_tensors(t), "%s %d golden gradients, %d trainable tensors", name, n_grads,
           dsc_train_n_tensors(t));

    /* Five AdamW steps on the same batch. */
    float losses[6];
    losses[0] = ce + aux;
    dsc_train_step(t, p.lr);
    for (int s = 1; s < 5; s++) {
        dsc_train_grad(t, tokens, B, T, &ce, &aux);
        losses[s] = ce + aux;
        dsc_train_step(t, p.lr);
    }
    dsc_train_eval(t, tokens, B, T, &ce, &aux);
    losses[5] = ce + aux;
    double worst = 0;
    char line[256];
    int nl = 0;
    for (int s = 0; s < 6; s++) {
        worst = fmax(worst, rel(losses[s], f32_at(tls, s)));
        nl += snprintf(line + nl, sizeof line - (size_t)nl, "%s%.4f", s ? " " : "", losses[s]);
    }
    report(worst < 1e-3, "%s AdamW losses %s (max rel %.1e)", name, line, worst);

    /* Bias after the steps (v3-tiny). */
    int n_bias = 0;
    double bworst = 0;
    for (int i = 0; i < f.n_tensors; i++) {
        const st_tensor *g = &f.tensors[i];
        if (strncmp(g->name, "bias_after.", 11)) continue;
        const float *b = dsc_train_bias(t, g->name + 11);
        n_bias++;
        if (!b || g->dtype != ST_F32) {
            bworst = INFINITY;
            continue;
        }
        for (int64_t k = 0; k < st_numel(g); k++) bworst = fmax(bworst, fabs(b[k] - f32_at(g, k)));
    }
    if (n_bias) report(bworst <= 1e-6, "%s bias_after (%d layers) max |diff| = %.1e", name, n_bias, bworst);
    dsc_trainer_free(t);
    free(tokens);
    st_close(&f);
}

/* The trainer's forward pass against the inference golden (expected.safetensors:
 * tokens [T], logits [T, V]): its log-probabilities must be log_softmax of the
 * golden logits, within 1e-4 x max|logits| per position. Covers the models
 * without train files too (group_limited_greedy, FP8 weights). */
static void golden_forward(const char *root, const char *name) {
    char dir[4096], path[4096];
    snprintf(dir, sizeof dir, "%s/model", root);
    snprintf(path, sizeof path, "%s/expected.safetensors", root);
    st_file f;
    if (st_open(path, &f)) {
        report(0, "%s: %s", name, dsc_last_error());
        return;
    }
    const st_tensor *tt = need(&f, "tokens", ST_I32), *tl = need(&f, "logits", ST_F32);
    if (!tt || !tl) {
        report(0, "%s: expected.safetensors lacks tokens or logits", name);
        st_close(&f);
        return;
    }
    const int32_t T = (int32_t)tt->shape[0], V = (int32_t)tl->shape[1];
    int32_t *tokens = calloc((size_t)T + 1, sizeof(int32_t)); /* the last target is a dummy */
    memcpy(tokens, tt->data, tt->nbytes);
    dsc_train_params p = dsc_train_default_params();
    p.n_batch = 1;
    p.n_seq = T;
    dsc_trainer *t;
    if (dsc_trainer_new(dir, &p, &t) || dsc_train_eval(t, tokens, 1, T, NULL, NULL)) {
        report(0, "%s: %s", name, dsc_last_error());
        free(tokens);
        st_close(&f);
        return;
    }
    double worst = 0;
    for (int32_t i = 0; i < T; i++) {
        double mx = -INFINITY, sum = 0, amax = 0, d = 0;
        for (int32_t v = 0; v < V; v++) mx = fmax(mx, f32_at(tl, (int64_t)i * V + v));
        for (int32_t v = 0; v < V; v++) sum += exp(f32_at(tl, (int64_t)i * V + v) - mx);
        for (int32_t v = 0; v < V; v++) {
            const double lg = f32_at(tl, (int64_t)i * V + v), want = lg - mx - log(sum);
            amax = fmax(amax, fabs(lg));
            d = fmax(d, fabs(log(fmax(t->probs[(int64_t)i * V + v], 1e-38)) - want));
        }
        worst = fmax(worst, isnan(d) ? INFINITY : d / amax);
    }
    report(worst < 1e-4, "%s trainer forward vs inference golden: max |log p - log_softmax| / max|logits| = %.1e", name,
           worst);
    dsc_trainer_free(t);
    free(tokens);
    st_close(&f);
}

/* Whole-model check without golden gradients: for each tensor, the central
 * difference of the loss along its own gradient direction u = g / |g| must
 * equal |g| (the directional derivative). Run on the expected prompt of the
 * models that have no train file (group-limited routing, FP8 weights). */
/* With mtp_lambda > 0 the objective is loss_ce + loss_aux + lambda x loss_mtp
 * and the MTP module's tensors are in the table (at least mtp_min of them
 * must be checked). */
static void model_fd(const char *root, const char *name, float mtp_lambda, int mtp_min) {
    char dir[4096], path[4096];
    snprintf(dir, sizeof dir, "%s/model", root);
    snprintf(path, sizeof path, "%s/expected.safetensors", root);
    st_file f;
    const st_tensor *tt;
    if (st_open(path, &f) || !(tt = need(&f, "tokens", ST_I32))) {
        report(0, "%s: %s", name, dsc_last_error());
        return;
    }
    /* one sequence: the prompt's tokens predicting the next ones */
    const int32_t T = (int32_t)tt->shape[0] - 1;
    int32_t *tokens = malloc(tt->nbytes);
    memcpy(tokens, tt->data, tt->nbytes);
    st_close(&f);
    dsc_train_params p = dsc_train_default_params();
    p.n_batch = 1;
    p.n_seq = T;
    p.mtp_lambda = mtp_lambda;
    dsc_trainer *t;
    float ce, aux;
    if (dsc_trainer_new(dir, &p, &t) || dsc_train_grad(t, tokens, 1, T, &ce, &aux)) {
        report(0, "%s: %s", name, dsc_last_error());
        free(tokens);
        return;
    }
    const int32_t n = dsc_train_n_tensors(t);
    float *save = malloc(sizeof(float) * (size_t)dsc_train_n_params(t)), *u = malloc(sizeof(float) * (size_t)dsc_train_n_params(t));
    /* A float32 loss is known to a few ulps: the difference quotient carries
     * an absolute error of about a = 4 eps_f32 |L| / (2 eps); a tensor passes
     * when |fd - |g|| <= 1e-2 |g| + a, and tensors with |g| < 2a are skipped. */
    const double mtp0 = mtp_lambda > 0 ? (double)mtp_lambda * dsc_train_loss_mtp(t) : 0;
    const double eps = 1e-3, a = 4 * 1.1920929e-7 * fabs((double)ce + aux + mtp0) / (2 * eps);
    double worst = 0;
    const char *worst_name = "";
    int checked = 0, mtp_checked = 0;
    char mtp_prefix[64];
    snprintf(mtp_prefix, sizeof mtp_prefix, "model.layers.%d.", dsc_train_n_layers(t));
    for (int32_t i = 0; i < n; i++) {
        const dsc_train_tensor *e = dsc_train_tensor_at(t, i);
        double norm = 0;
        for (int64_t k = 0; k < e->numel; k++) norm += (double)e->grad[k] * e->grad[k];
        norm = sqrt(norm);
        if (norm < 2 * a) continue;
        for (int64_t k = 0; k < e->numel; k++) save[k] = e->param[k], u[k] = (float)(e->grad[k] / norm);
        double l[2];
        for (int sgn = 0; sgn < 2; sgn++) {
            for (int64_t k = 0; k < e->numel; k++) e->param[k] = (float)(save[k] + (sgn ? -eps : eps) * u[k]);
            float c2, a2;
            dsc_train_eval(t, tokens, 1, T, &c2, &a2);
            l[sgn] = (double)c2 + a2 + (mtp_lambda > 0 ? (double)mtp_lambda * dsc_train_loss_mtp(t) : 0);
        }
        memcpy(e->param, save, sizeof(float) * (size_t)e->numel);
        const double fd = (l[0] - l[1]) / (2 * eps), ratio = fabs(fd - norm) / (1e-2 * norm + a);
        if (getenv("DSC_TEST_VERBOSE")) printf("  %-50s |g| %.3e fd %.3e\n", e->name, norm, fd);
        if (!(ratio <= worst)) worst = ratio, worst_name = e->name;
        checked++;
        mtp_checked += !strncmp(e->name, mtp_prefix, strlen(mtp_prefix));
    }
    report(worst <= 1 && checked > 0 && mtp_checked >= mtp_min,
           "%s%s directional fd of %d tensors (%d of the MTP module): max |fd - |g|| / (1e-2 |g| + %.1e) = %.2f (%s)", name,
           mtp_lambda > 0 ? " with MTP" : "", checked, mtp_checked, a, worst, worst_name);
    free(save), free(u), free(tokens);
    dsc_trainer_free(t);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_train GOLDEN_DIR [MODEL_ROOT...]\n"
                        "  MODEL_ROOT: a checkpoint root with model/ and expected.safetensors (tests/ref layout)\n");
        return 2;
    }
    ex1.k = kern_select(NULL);
    exs = exn = ex1;
    ex1.simple_matmul = 1;
    exn.pool = pool_new(3);
    run_fd();
    golden_model(argv[1], "v3-tiny");
    golden_model(argv[1], "v2lite-tiny");
    /* Forward against the inference golden on every golden model, and the
     * whole-model directional check where there is no train file. */
    const char *names[] = {"v3-tiny", "v2lite-tiny", "v2-grouped-tiny", "v3-fp8-tiny"};
    for (int i = 0; i < 4; i++) {
        char root[4096];
        snprintf(root, sizeof root, "%s/models/%s", argv[1], names[i]);
        golden_forward(root, names[i]);
        if (i >= 2) model_fd(root, names[i], 0, 0);
        if (i == 0) model_fd(root, names[i], 0.3f, 10); /* v3-tiny carries an MTP layer */
    }
    for (int i = 2; i < argc; i++) {
        const char *name = strrchr(argv[i], '/') ? strrchr(argv[i], '/') + 1 : argv[i];
        golden_forward(argv[i], name);
        model_fd(argv[i], name, 0, 0);
    }
    pool_free(exn.pool);
    pool_scratch_release();
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
