/*
 * ops.c — the trainer's forward / backward kernels (see ops.h for shapes).
 *
 * Matrix products and attention are split between the pool's threads so that
 * every output row has exactly one writer: results do not depend on the
 * thread count. The rest is O(N x width) and runs on the calling thread.
 */
#include "train/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Below this many multiply-adds a product runs on one thread. */
#define TRAIN_MIN_PARALLEL (64 * 1024)
/* Rows of the input per block of the weight-gradient product (L2 reuse). */
#define TRAIN_NB 128

static void run(const train_exec *ex, int64_t work, pool_fn fn, void *arg) {
    if (work < TRAIN_MIN_PARALLEL || !ex->pool) fn(arg, 0, 1);
    else pool_run(ex->pool, fn, arg);
}

static dsc_mat f32_mat(const float *w, int32_t rows, int32_t cols) {
    dsc_mat m = {.type = DSC_W_F32, .rows = rows, .cols = cols, .data = w};
    return m;
}

/* ------------------------------------------------------------------------ */
/* Embedding                                                                 */

void train_embed_forward(float *out, const int32_t *tokens, const float *wte, int32_t N, int32_t D) {
    for (int32_t n = 0; n < N; n++) memcpy(out + (int64_t)n * D, wte + (int64_t)tokens[n] * D, sizeof(float) * (size_t)D);
}

void train_embed_backward(float *dwte, const float *dout, const int32_t *tokens, int32_t N, int32_t D) {
    for (int32_t n = 0; n < N; n++) {
        float *d = dwte + (int64_t)tokens[n] * D;
        const float *g = dout + (int64_t)n * D;
        for (int32_t i = 0; i < D; i++) d[i] += g[i];
    }
}

/* ------------------------------------------------------------------------ */
/* RMSNorm: y = x r w, r = (mean(x^2) + eps)^-1/2                            */
/*   dx = r (w dy) - r^3 / C x sum(w dy x);  dw = sum_n dy x r                */

typedef struct {
    float *out, *rstd, *dinp, *dweight;
    const float *inp, *weight, *dout, *crstd;
    int32_t N, C;
    float eps;
} rms_job;

static void rms_forward_task(void *arg, int ith, int nth) {
    const rms_job *j = arg;
    int64_t lo, hi;
    pool_split(j->N, ith, nth, 1, &lo, &hi);
    const int32_t C = j->C;
    for (int64_t n = lo; n < hi; n++) {
        const float *x = j->inp + n * C;
        float *y = j->out + n * C;
        double ss = 0;
        for (int32_t i = 0; i < C; i++) ss += (double)x[i] * x[i];
        float r = (float)(1.0 / sqrt(ss / C + j->eps));
        for (int32_t i = 0; i < C; i++) y[i] = x[i] * r * j->weight[i];
        j->rstd[n] = r;
    }
}

void train_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int32_t N, int32_t C,
                           float eps, const train_exec *ex) {
    rms_job j = {.out = out, .rstd = rstd, .inp = inp, .weight = weight, .N = N, .C = C, .eps = eps};
    run(ex, (int64_t)N * C * 8, rms_forward_task, &j);
}

/* dinp by rows; dweight by columns, each summed over the rows in order (the
 * result does not depend on the thread count). */
static void rms_dinp_task(void *arg, int ith, int nth) {
    const rms_job *j = arg;
    int64_t lo, hi;
    pool_split(j->N, ith, nth, 1, &lo, &hi);
    const int32_t C = j->C;
    for (int64_t n = lo; n < hi; n++) {
        const float *x = j->inp + n * C, *dy = j->dout + n * C;
        float *dx = j->dinp + n * C;
        const float r = j->crstd[n];
        double dot = 0;
        for (int32_t i = 0; i < C; i++) dot += (double)j->weight[i] * dy[i] * x[i];
        const float c = (float)(dot * r * r * r / C);
        for (int32_t i = 0; i < C; i++) dx[i] += r * j->weight[i] * dy[i] - c * x[i];
    }
}

static void rms_dweight_task(void *arg, int ith, int nth) {
    const rms_job *j = arg;
    int64_t lo, hi;
    pool_split(j->C, ith, nth, 16, &lo, &hi);
    for (int64_t n = 0; n < j->N; n++) {
        const float *x = j->inp + n * j->C, *dy = j->dout + n * j->C;
        const float r = j->crstd[n];
        for (int64_t i = lo; i < hi; i++) j->dweight[i] += dy[i] * x[i] * r;
    }
}

void train_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                            const float *rstd, int32_t N, int32_t C, const train_exec *ex) {
    rms_job j = {.dinp = dinp, .dweight = dweight, .dout = dout, .inp = inp, .weight = weight, .crstd = rstd, .N = N, .C = C};
    run(ex, (int64_t)N * C * 8, rms_dinp_task, &j);
    run(ex, (int64_t)N * C * 4, rms_dweight_task, &j);
}

/* ------------------------------------------------------------------------ */
/* Matrix products                                                           */

typedef struct {
    const train_exec *ex;
    float *out, *dinp, *dweight;
    const float *inp, *dout, *weight;
    int32_t N, I, O;
} mm_job;

/* out = inp @ W^T by rows of W (or by rows of inp when W has few rows). */
static void mm_forward_task(void *arg, int ith, int nth) {
    const mm_job *j = arg;
    dsc_mat w = f32_mat(j->weight, j->O, j->I);
    int64_t lo, hi;
    if (j->O >= 16 * nth) {
        pool_split(j->O, ith, nth, 16, &lo, &hi);
        if (lo < hi) j->ex->k->matmul_rows(j->out + lo, j->O, j->inp, &w, j->N, (int32_t)lo, (int32_t)hi);
    } else {
        pool_split(j->N, ith, nth, 1, &lo, &hi);
        if (lo < hi)
            j->ex->k->matmul_rows(j->out + lo * j->O, j->O, j->inp + lo * j->I, &w, (int32_t)(hi - lo), 0, j->O);
    }
}

/* ------------------------------------------------------------------------ */
/* Tiled products: the kernels' gemm (register tiles of 6 rows of C x 16     */
/* columns, B packed once per call, rows of C by blocks). Threads split the  */
/* rows of C (by 6) when C is taller than wide, else its columns (by 16). K  */
/* is cut into blocks of TRAIN_KB, added in order. Every element of C is     */
/* computed by one thread in the same order whatever the thread count.       */
/* Scratch is per thread, kept between calls (pool_scratch).                 */

#define TRAIN_KB 1024

typedef struct {
    const dsc_kernels *k;
    float *c;
    const float *a, *b;
    int64_t ldc, lda, ldb;
    int32_t M, N, K;
    int flags;
} gemm_job;

static int split_rows(const gemm_job *j, int nth) {
    return nth == 1 || ((j->M >= j->N || j->N < 16 * nth) && j->M >= 6 * nth);
}

static void gemm_task(void *arg, int ith, int nth) {
    const gemm_job *j = arg;
    const int at = j->flags & DSC_GEMM_AT, bn = j->flags & DSC_GEMM_BN;
    float *c = j->c;
    const float *a = j->a, *b = j->b;
    int32_t M = j->M, N = j->N;
    int64_t lo, hi;
    if (split_rows(j, nth)) {
        pool_split(j->M, ith, nth, 6, &lo, &hi);
        c += lo * j->ldc, a += at ? lo : lo * j->lda, M = (int32_t)(hi - lo);
    } else {
        pool_split(j->N, ith, nth, 16, &lo, &hi);
        c += lo, b += bn ? lo : lo * j->ldb, N = (int32_t)(hi - lo);
    }
    if (M <= 0 || N <= 0) return;
    const int32_t kb0 = j->K < TRAIN_KB ? j->K : TRAIN_KB;
    float *pack = pool_scratch(kern_gemm_scratch(M, N, kb0, j->flags));
    if (!pack) { /* out of memory: the reference kernel, which needs no scratch */
        kern_ref.gemm(c, j->ldc, a, j->lda, b, j->ldb, M, N, j->K, j->flags, NULL);
        return;
    }
    for (int32_t k0 = 0; k0 < j->K; k0 += TRAIN_KB) {
        const int32_t kb = j->K - k0 < TRAIN_KB ? j->K - k0 : TRAIN_KB;
        const int flags = k0 ? j->flags | DSC_GEMM_ACC : j->flags;
        j->k->gemm(c, j->ldc, at ? a + (int64_t)k0 * j->lda : a + k0, j->lda, bn ? b + (int64_t)k0 * j->ldb : b + k0,
                   j->ldb, M, N, kb, flags, pack);
    }
}

/* C (M, N) (+)= op(A) (M, K) op(B) (K, N), see kernels.h; on the pool when
 * pool is not NULL, else on the calling thread. */
static void gemm(dsc_pool *pool, const dsc_kernels *k, float *c, int64_t ldc, const float *a, int64_t lda,
                 const float *b, int64_t ldb, int32_t M, int32_t N, int32_t K, int flags) {
    if (M <= 0 || N <= 0) return;
    gemm_job j = {.k = k, .c = c, .a = a, .b = b, .ldc = ldc, .lda = lda, .ldb = ldb, .M = M, .N = N, .K = K, .flags = flags};
    if (K <= 0) { /* an empty sum */
        if (!(flags & DSC_GEMM_ACC))
            for (int32_t m = 0; m < M; m++) memset(c + m * ldc, 0, sizeof(float) * (size_t)N);
        return;
    }
    if (pool && (int64_t)M * N * K >= TRAIN_MIN_PARALLEL) pool_run(pool, gemm_task, &j);
    else gemm_task(&j, 0, 1);
}

void train_matmul_forward(float *out, const float *inp, const float *weight, int32_t N, int32_t I, int32_t O,
                          const train_exec *ex) {
    if (N == 0) return;
    mm_job j = {.ex = ex, .out = out, .inp = inp, .weight = weight, .N = N, .I = I, .O = O};
    if (N >= 6 && ex->k->gemm && !ex->simple_matmul) gemm(ex->pool, ex->k, out, O, inp, I, weight, I, N, O, I, 0);
    else run(ex, (int64_t)N * I * O, mm_forward_task, &j);
}

/* dinp[n] += sum_o dout[n, o] W[o]: by rows of inp. */
static void mm_dinp_task(void *arg, int ith, int nth) {
    const mm_job *j = arg;
    dsc_mat w = f32_mat(j->weight, j->O, j->I);
    int64_t lo, hi;
    pool_split(j->N, ith, nth, 1, &lo, &hi);
    for (int64_t n = lo; n < hi; n++) j->ex->k->matvec_t(j->dinp + n * j->I, j->dout + n * j->O, &w, 0, j->O);
}

/* dW[o] += sum_n dout[n, o] inp[n]: by rows of W, over blocks of TRAIN_NB
 * input rows so that a block stays in cache for all of a thread's rows. */
static void mm_dweight_task(void *arg, int ith, int nth) {
    const mm_job *j = arg;
    int64_t lo, hi;
    pool_split(j->O, ith, nth, 1, &lo, &hi);
    float a[TRAIN_NB];
    for (int32_t n0 = 0; n0 < j->N; n0 += TRAIN_NB) {
        const int32_t nb = j->N - n0 < TRAIN_NB ? j->N - n0 : TRAIN_NB;
        dsc_mat x = f32_mat(j->inp + (int64_t)n0 * j->I, nb, j->I);
        for (int64_t o = lo; o < hi; o++) {
            for (int32_t i = 0; i < nb; i++) a[i] = j->dout[(int64_t)(n0 + i) * j->O + o];
            j->ex->k->matvec_t(j->dweight + o * j->I, a, &x, 0, nb);
        }
    }
}

void train_matmul_backward_simple(float *dinp, float *dweight, const float *dout, const float *inp,
                                  const float *weight, int32_t N, int32_t I, int32_t O, const train_exec *ex) {
    if (N == 0) return;
    mm_job j = {.ex = ex, .dinp = dinp, .dweight = dweight, .inp = inp, .dout = dout, .weight = weight, .N = N, .I = I, .O = O};
    const int64_t work = (int64_t)N * I * O;
    if (dinp) run(ex, work, mm_dinp_task, &j);
    run(ex, work, mm_dweight_task, &j);
}

/* Tiled form: dinp += dout W and dW += dout^T inp as gemm calls reading the
 * operands in place (B stored (K, N), A transposed), added into the gradients. */
void train_matmul_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                           int32_t N, int32_t I, int32_t O, const train_exec *ex) {
    if (N < 16 || !ex->k->gemm || ex->simple_matmul) {
        train_matmul_backward_simple(dinp, dweight, dout, inp, weight, N, I, O, ex);
        return;
    }
    if (dinp) gemm(ex->pool, ex->k, dinp, I, dout, O, weight, I, N, I, O, DSC_GEMM_BN | DSC_GEMM_ACC);
    gemm(ex->pool, ex->k, dweight, I, dout, O, inp, I, O, I, N, DSC_GEMM_AT | DSC_GEMM_BN | DSC_GEMM_ACC);
}

/* ------------------------------------------------------------------------ */
/* RoPE, interleaved pairs: (x0, x1) -> (x0 c - x1 s, x1 c + x0 s)           */

void train_rope_forward(float *x, const float *cos_t, const float *sin_t, int32_t N, int32_t T, int32_t H,
                        int32_t stride, int32_t Dr) {
    const int32_t half = Dr / 2;
    for (int32_t n = 0; n < N; n++) {
        const float *c = cos_t + (int64_t)(n % T) * half, *s = sin_t + (int64_t)(n % T) * half;
        for (int32_t h = 0; h < H; h++) {
            float *r = x + ((int64_t)n * H + h) * stride;
            for (int32_t i = 0; i < half; i++) {
                float x0 = r[2 * i], x1 = r[2 * i + 1];
                r[2 * i] = x0 * c[i] - x1 * s[i];
                r[2 * i + 1] = x1 * c[i] + x0 * s[i];
            }
        }
    }
}

void train_rope_backward(float *dx, const float *cos_t, const float *sin_t, int32_t N, int32_t T, int32_t H,
                         int32_t stride, int32_t Dr) {
    const int32_t half = Dr / 2;
    for (int32_t n = 0; n < N; n++) {
        const float *c = cos_t + (int64_t)(n % T) * half, *s = sin_t + (int64_t)(n % T) * half;
        for (int32_t h = 0; h < H; h++) {
            float *r = dx + ((int64_t)n * H + h) * stride;
            for (int32_t i = 0; i < half; i++) {
                float d0 = r[2 * i], d1 = r[2 * i + 1];
                r[2 * i] = d0 * c[i] + d1 * s[i];
                r[2 * i + 1] = d1 * c[i] - d0 * s[i];
            }
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Attention: one task per (sequence, head)                                  */

typedef struct {
    const train_exec *ex;
    float *out, *att, *dq, *dkv, *dkpe_h;
    const float *q, *kv, *kpe, *dout, *catt;
    int32_t B, T, H, Dn, Dr, Dv;
    float scale;
} attn_job;


static void attn_forward_task(void *arg, int ith, int nth) {
    const attn_job *j = arg;
    const dsc_kernels *k = j->ex->k;
    const int32_t T = j->T, H = j->H, Dn = j->Dn, Dr = j->Dr, Dv = j->Dv, dq = Dn + Dr, dkv = Dn + Dv;
    for (int64_t bh = ith; bh < (int64_t)j->B * H; bh += nth) {
        const int64_t b = bh / H, h = bh % H;
        for (int32_t t = 0; t < T; t++) {
            const int64_t n = b * T + t;
            const float *q = j->q + (n * H + h) * dq;
            float *a = j->att + (bh * T + t) * T;
            for (int32_t p = 0; p <= t; p++) {
                const int64_t m = b * T + p;
                a[p] = (k->dot(q, j->kv + (m * H + h) * dkv, Dn) + k->dot(q + Dn, j->kpe + m * Dr, Dr)) * j->scale;
            }
            kern_softmax_k(k, a, t + 1);
            for (int32_t p = t + 1; p < T; p++) a[p] = 0;
            float *o = j->out + (n * H + h) * Dv;
            memset(o, 0, sizeof(float) * (size_t)Dv);
            for (int32_t p = 0; p <= t; p++) k->axpy(o, j->kv + ((b * T + p) * H + h) * dkv + Dn, a[p], Dv);
        }
    }
}

/* Rows of the score matrix per block of the causal attention products. */
#define ATT_RB 48

/* The same with the kernels' gemm, one (sequence, head) per task, reading
 * Q, K and V where they are, by blocks of ATT_RB rows (a block's products
 * stop at the last key its rows can see):
 *   S = Q_nope K_nope^T + Q_pe K_pe^T (the whole T x T; the causal half is
 *   masked), softmax by rows, O = P V. */
static void attn_forward_gemm_task(void *arg, int ith, int nth) {
    const attn_job *j = arg;
    const dsc_kernels *k = j->ex->k;
    const int32_t T = j->T, H = j->H, Dn = j->Dn, Dr = j->Dr, Dv = j->Dv, dq = Dn + Dr, dkv = Dn + Dv;
    const int64_t lq = (int64_t)H * dq, lkv = (int64_t)H * dkv, lo = (int64_t)H * Dv;
    for (int64_t bh = ith; bh < (int64_t)j->B * H; bh += nth) {
        const int64_t b = bh / H, h = bh % H, n0 = b * T;
        const float *qh = j->q + (n0 * H + h) * dq, *kh = j->kv + (n0 * H + h) * dkv;
        float *att = j->att + bh * T * T;
        /* by blocks of rows t0..: only the keys p < t0 + mb can be seen */
        for (int32_t t0 = 0; t0 < T; t0 += ATT_RB) {
            const int32_t mb = T - t0 < ATT_RB ? T - t0 : ATT_RB, np = t0 + mb;
            float *at = att + (int64_t)t0 * T;
            gemm(NULL, k, at, T, qh + t0 * lq, lq, kh, lkv, mb, np, Dn, 0);
            gemm(NULL, k, at, T, qh + t0 * lq + Dn, lq, j->kpe + n0 * Dr, Dr, mb, np, Dr, DSC_GEMM_ACC);
            for (int32_t t = t0; t < t0 + mb; t++) {
                float *a = att + (int64_t)t * T;
                for (int32_t p = 0; p <= t; p++) a[p] *= j->scale;
                kern_softmax_k(k, a, t + 1);
                for (int32_t p = t + 1; p < T; p++) a[p] = 0;
            }
            gemm(NULL, k, j->out + ((n0 + t0) * H + h) * Dv, lo, at, T, kh + Dn, lkv, mb, Dv, np, DSC_GEMM_BN);
        }
    }
}

void train_attention_forward(float *out, float *att, const float *q, const float *kv, const float *kpe, int32_t B,
                             int32_t T, int32_t H, int32_t Dn, int32_t Dr, int32_t Dv, float scale,
                             const train_exec *ex) {
    attn_job j = {.ex = ex, .out = out, .att = att, .q = q, .kv = kv, .kpe = kpe, .B = B, .T = T, .H = H, .Dn = Dn,
                  .Dr = Dr, .Dv = Dv, .scale = scale};
    const int tiled = ex->k->gemm && T >= 16 && !ex->simple_attention;
    run(ex, (int64_t)B * H * T * T * (Dn + Dr + Dv), tiled ? attn_forward_gemm_task : attn_forward_task, &j);
}

/* For query t: da_p = dout . v_p;  ds_p = a_p (da_p - sum a da) x scale;
 * dq += sum_p ds_p [k_p ; kpe_p];  dk_p += ds_p q_nope;  dkpe_p += ds_p q_pe;  dv_p += a_p dout. */
static void attn_backward_task(void *arg, int ith, int nth) {
    const attn_job *j = arg;
    const dsc_kernels *k = j->ex->k;
    const int32_t T = j->T, H = j->H, Dn = j->Dn, Dr = j->Dr, Dv = j->Dv, dq = Dn + Dr, dkv = Dn + Dv;
    float ds[T];
    for (int64_t bh = ith; bh < (int64_t)j->B * H; bh += nth) {
        const int64_t b = bh / H, h = bh % H;
        for (int32_t p = 0; p < T; p++) memset(j->dkpe_h + ((b * T + p) * H + h) * Dr, 0, sizeof(float) * (size_t)Dr);
        for (int32_t t = 0; t < T; t++) {
            const int64_t n = b * T + t;
            const float *a = j->catt + (bh * T + t) * T, *go = j->dout + (n * H + h) * Dv;
            const float *q = j->q + (n * H + h) * dq;
            float *gq = j->dq + (n * H + h) * dq;
            double sum = 0;
            for (int32_t p = 0; p <= t; p++) {
                ds[p] = k->dot(go, j->kv + ((b * T + p) * H + h) * dkv + Dn, Dv);
                sum += (double)a[p] * ds[p];
                k->axpy(j->dkv + ((b * T + p) * H + h) * dkv + Dn, go, a[p], Dv);
            }
            for (int32_t p = 0; p <= t; p++) {
                const int64_t m = b * T + p;
                const float g = a[p] * (ds[p] - (float)sum) * j->scale;
                if (g == 0) continue;
                k->axpy(gq, j->kv + (m * H + h) * dkv, g, Dn);
                k->axpy(gq + Dn, j->kpe + m * Dr, g, Dr);
                k->axpy(j->dkv + (m * H + h) * dkv, q, g, Dn);
                k->axpy(j->dkpe_h + (m * H + h) * Dr, q + Dn, g, Dr);
            }
        }
    }
}

/* The same with gemm, per (sequence, head), on whole T x T blocks, reading
 * the operands in place:
 *   dP = dO V^T;  dS = P (dP - rowsum(P dP)) scale;
 *   dQ += dS K;  dK += dS^T Q;  dV += P^T dO. Scratch: dS (T, T). */
static void attn_backward_gemm_task(void *arg, int ith, int nth) {
    const attn_job *j = arg;
    const dsc_kernels *k = j->ex->k;
    const int32_t T = j->T, H = j->H, Dn = j->Dn, Dr = j->Dr, Dv = j->Dv, dq = Dn + Dr, dkv = Dn + Dv;
    float *ds = malloc(sizeof(float) * (size_t)T * T);
    if (!ds) {
        attn_backward_task(arg, ith, nth);
        return;
    }
    const int BN = DSC_GEMM_BN, ACC = DSC_GEMM_ACC, AT = DSC_GEMM_AT;
    const int64_t lq = (int64_t)H * dq, lkv = (int64_t)H * dkv, lo = (int64_t)H * Dv, lr = (int64_t)H * Dr;
    for (int64_t bh = ith; bh < (int64_t)j->B * H; bh += nth) {
        const int64_t b = bh / H, h = bh % H, n0 = b * T;
        const float *P = j->catt + bh * T * T;
        const float *go = j->dout + (n0 * H + h) * Dv, *qh = j->q + (n0 * H + h) * dq, *kh = j->kv + (n0 * H + h) * dkv;
        const float *kpe = j->kpe + n0 * Dr;
        float *gq = j->dq + (n0 * H + h) * dq, *gk = j->dkv + (n0 * H + h) * dkv, *gr = j->dkpe_h + (n0 * H + h) * Dr;
        /* dP (T, T) into ds, then dS in place; by blocks of rows t0.. (keys p < t0 + mb) */
        for (int32_t t0 = 0; t0 < T; t0 += ATT_RB) {
            const int32_t mb = T - t0 < ATT_RB ? T - t0 : ATT_RB;
            gemm(NULL, k, ds + (int64_t)t0 * T, T, go + t0 * lo, lo, kh + Dn, lkv, mb, t0 + mb, Dv, 0);
        }
        for (int32_t t = 0; t < T; t++) {
            float *d = ds + (size_t)t * T;
            const float *a = P + (size_t)t * T;
            double sum = 0;
            for (int32_t p = 0; p <= t; p++) sum += (double)a[p] * d[p];
            for (int32_t p = 0; p <= t; p++) d[p] = a[p] * (d[p] - (float)sum) * j->scale;
            for (int32_t p = t + 1; p < T; p++) d[p] = 0;
        }
        for (int32_t r0 = 0; r0 < T; r0 += ATT_RB) {
            const int32_t mb = T - r0 < ATT_RB ? T - r0 : ATT_RB, np = r0 + mb, nt = T - r0;
            /* rows t = r0..: dQ += dS K over the keys p < np */
            gemm(NULL, k, gq + r0 * lq, lq, ds + (int64_t)r0 * T, T, kh, lkv, mb, Dn, np, BN | ACC);
            gemm(NULL, k, gq + r0 * lq + Dn, lq, ds + (int64_t)r0 * T, T, kpe, Dr, mb, Dr, np, BN | ACC);
            /* rows p = r0..: dK += dS^T Q, dV += P^T dO over the queries t >= r0 */
            const float *dsp = ds + (int64_t)r0 * T + r0, *pp = P + (int64_t)r0 * T + r0;
            gemm(NULL, k, gk + r0 * lkv, lkv, dsp, T, qh + r0 * lq, lq, mb, Dn, nt, AT | BN | ACC);
            gemm(NULL, k, gr + r0 * lr, lr, dsp, T, qh + r0 * lq + Dn, lq, mb, Dr, nt, AT | BN);
            gemm(NULL, k, gk + r0 * lkv + Dn, lkv, pp, T, go + r0 * lo, lo, mb, Dv, nt, AT | BN | ACC);
        }
    }
    free(ds);
}

void train_attention_backward(float *dq, float *dkv, float *dkpe, float *dkpe_h, const float *dout, const float *q,
                              const float *kv, const float *kpe, const float *att, int32_t B, int32_t T, int32_t H,
                              int32_t Dn, int32_t Dr, int32_t Dv, float scale, const train_exec *ex) {
    attn_job j = {.ex = ex, .dq = dq, .dkv = dkv, .dkpe_h = dkpe_h, .dout = dout, .q = q, .kv = kv, .kpe = kpe,
                  .catt = att, .B = B, .T = T, .H = H, .Dn = Dn, .Dr = Dr, .Dv = Dv, .scale = scale};
    const int tiled = ex->k->gemm && T >= 16 && !ex->simple_attention;
    run(ex, (int64_t)B * H * T * T * (Dn + Dr + Dv), tiled ? attn_backward_gemm_task : attn_backward_task, &j);
    /* The rope key is shared by all heads: its gradient is their sum. */
    for (int64_t n = 0; n < (int64_t)B * T; n++)
        for (int32_t h = 0; h < H; h++) ex->k->axpy(dkpe + n * Dr, dkpe_h + (n * H + h) * Dr, 1.0f, Dr);
}

/* ------------------------------------------------------------------------ */
/* SwiGLU: h = silu(g) u;  silu'(g) = s (1 + g (1 - s)), s = sigmoid(g)       */

typedef struct {
    const dsc_kernels *k;
    float *h, *dg, *du;
    const float *g, *u, *dh;
    int64_t n;
} swiglu_job;

#define SIG_CHUNK 256

static void swiglu_forward_task(void *arg, int ith, int nth) {
    const swiglu_job *j = arg;
    int64_t lo, hi;
    pool_split(j->n, ith, nth, 16, &lo, &hi);
    if (lo < hi) kern_swiglu_k(j->k, j->h + lo, j->g + lo, j->u + lo, hi - lo);
}

static void swiglu_backward_task(void *arg, int ith, int nth) {
    const swiglu_job *j = arg;
    int64_t lo, hi;
    pool_split(j->n, ith, nth, 16, &lo, &hi);
    float s[SIG_CHUNK];
    for (int64_t i0 = lo; i0 < hi; i0 += SIG_CHUNK) {
        const int32_t m = hi - i0 < SIG_CHUNK ? (int32_t)(hi - i0) : SIG_CHUNK;
        const float *g = j->g + i0, *u = j->u + i0, *dh = j->dh + i0;
        float *dg = j->dg + i0, *du = j->du + i0;
        j->k->sigmoid(s, g, m);
        for (int32_t i = 0; i < m; i++) {
            dg[i] += dh[i] * u[i] * s[i] * (1.0f + g[i] * (1.0f - s[i]));
            du[i] += dh[i] * g[i] * s[i];
        }
    }
}

void train_swiglu_forward(float *h, const float *g, const float *u, int64_t n, const train_exec *ex) {
    swiglu_job j = {.k = ex->k, .h = h, .g = g, .u = u, .n = n};
    run(ex, n * 16, swiglu_forward_task, &j);
}

void train_swiglu_backward(float *dg, float *du, const float *dh, const float *g, const float *u, int64_t n,
                           const train_exec *ex) {
    swiglu_job j = {.k = ex->k, .dg = dg, .du = du, .dh = dh, .g = g, .u = u, .n = n};
    run(ex, n * 24, swiglu_backward_task, &j);
}

/* ------------------------------------------------------------------------ */
/* MoE router                                                                */

void train_router_forward(float *score, const float *logit, int32_t N, int32_t E, int sigmoid) {
    for (int64_t i = 0; i < (int64_t)N * E; i++) score[i] = sigmoid ? 1.0f / (1.0f + expf(-logit[i])) : logit[i];
    if (!sigmoid)
        for (int32_t n = 0; n < N; n++) kern_softmax(score + (int64_t)n * E, E);
}

void train_router_backward(float *dlogit, const float *dscore, const float *score, int32_t N, int32_t E, int sigmoid) {
    for (int32_t n = 0; n < N; n++) {
        const float *s = score + (int64_t)n * E, *ds = dscore + (int64_t)n * E;
        float *dl = dlogit + (int64_t)n * E;
        if (sigmoid) {
            for (int32_t e = 0; e < E; e++) dl[e] += ds[e] * s[e] * (1.0f - s[e]);
            continue;
        }
        double dot = 0;
        for (int32_t e = 0; e < E; e++) dot += (double)s[e] * ds[e];
        for (int32_t e = 0; e < E; e++) dl[e] += s[e] * (ds[e] - (float)dot);
    }
}

void train_topk_forward(float *w, const float *score, const int32_t *idx, int32_t N, int32_t E, int32_t K, int renorm,
                        float scale) {
    for (int32_t n = 0; n < N; n++) {
        const float *s = score + (int64_t)n * E;
        const int32_t *ix = idx + (int64_t)n * K;
        float *wn = w + (int64_t)n * K, sum = 0;
        for (int32_t k = 0; k < K; k++) sum += s[ix[k]];
        for (int32_t k = 0; k < K; k++) wn[k] = (renorm ? s[ix[k]] / (sum + 1e-20f) : s[ix[k]]) * scale;
    }
}

/* renorm: w_k = c s_k / S, S = sum_j s_j + 1e-20:  ds_j = c (dw_j / S - sum_k dw_k s_k / S^2) */
void train_topk_backward(float *dscore, const float *dw, const float *score, const int32_t *idx, int32_t N, int32_t E,
                         int32_t K, int renorm, float scale) {
    for (int32_t n = 0; n < N; n++) {
        const float *s = score + (int64_t)n * E, *g = dw + (int64_t)n * K;
        const int32_t *ix = idx + (int64_t)n * K;
        float *ds = dscore + (int64_t)n * E;
        if (!renorm) {
            for (int32_t k = 0; k < K; k++) ds[ix[k]] += scale * g[k];
            continue;
        }
        float sum = 0, gs = 0;
        for (int32_t k = 0; k < K; k++) sum += s[ix[k]];
        sum += 1e-20f;
        for (int32_t k = 0; k < K; k++) gs += g[k] * s[ix[k]];
        for (int32_t k = 0; k < K; k++) ds[ix[k]] += scale * (g[k] / sum - gs / (sum * sum));
    }
}

/* Routes of each expert within sequence b: counts (E). */
static void balance_counts(int32_t *counts, const int32_t *idx, int32_t b, int32_t T, int32_t E, int32_t K) {
    memset(counts, 0, sizeof(int32_t) * (size_t)E);
    for (int64_t i = (int64_t)b * T * K; i < (int64_t)(b + 1) * T * K; i++) counts[idx[i]]++;
}

float train_balance_forward(const float *score, const int32_t *idx, int32_t B, int32_t T, int32_t E, int32_t K,
                            float alpha) {
    int32_t counts[E];
    double P[E], total = 0;
    for (int32_t b = 0; b < B; b++) {
        balance_counts(counts, idx, b, T, E, K);
        for (int32_t e = 0; e < E; e++) P[e] = 0;
        for (int32_t t = 0; t < T; t++) {
            const float *s = score + ((int64_t)b * T + t) * E;
            double sum = 0;
            for (int32_t e = 0; e < E; e++) sum += s[e];
            for (int32_t e = 0; e < E; e++) P[e] += s[e] / sum;
        }
        for (int32_t e = 0; e < E; e++) total += (double)E / ((double)K * T) * counts[e] * (P[e] / T);
    }
    return (float)(alpha * total / B);
}

/* s'_i = s_i / S (S = sum_j s_j), g_i = dL/ds'_i = dloss alpha / B x f_i / T:
 * ds_j += (g_j - sum_i g_i s'_i) / S */
void train_balance_backward(float *dscore, const float *score, const int32_t *idx, int32_t B, int32_t T, int32_t E,
                            int32_t K, float alpha, float dloss) {
    int32_t counts[E];
    const double coef = (double)dloss * alpha / B * E / ((double)K * T) / T;
    for (int32_t b = 0; b < B; b++) {
        balance_counts(counts, idx, b, T, E, K);
        for (int32_t t = 0; t < T; t++) {
            const int64_t n = (int64_t)b * T + t;
            const float *s = score + n * E;
            float *ds = dscore + n * E;
            double sum = 0, gs = 0;
            for (int32_t e = 0; e < E; e++) sum += s[e];
            for (int32_t e = 0; e < E; e++) gs += coef * counts[e] * s[e] / sum;
            for (int32_t e = 0; e < E; e++) ds[e] += (float)((coef * counts[e] - gs) / sum);
        }
    }
}

void train_combine_forward(float *y, const float *ey, const float *w, const int32_t *order, int32_t M, int32_t K,
                           int32_t D) {
    for (int32_t i = 0; i < M; i++) {
        const int32_t a = order[i];
        float *yt = y + (int64_t)(a / K) * D;
        const float *e = ey + (int64_t)i * D;
        for (int32_t d = 0; d < D; d++) yt[d] += w[a] * e[d];
    }
}

void train_combine_backward(float *dey, float *dw, const float *dy, const float *ey, const float *w,
                            const int32_t *order, int32_t M, int32_t K, int32_t D) {
    for (int32_t i = 0; i < M; i++) {
        const int32_t a = order[i];
        const float *g = dy + (int64_t)(a / K) * D, *e = ey + (int64_t)i * D;
        float *de = dey + (int64_t)i * D;
        double dot = 0;
        for (int32_t d = 0; d < D; d++) {
            dot += (double)g[d] * e[d];
            de[d] += w[a] * g[d];
        }
        dw[a] += (float)dot;
    }
}

/* ------------------------------------------------------------------------ */
/* Cross-entropy                                                             */

typedef struct {
    float *losses, *probs;
    const float *logits;
    const int32_t *targets;
    int32_t N, V;
    float dloss;
    const float *weights; /* backward: per-row dloss (NULL: dloss for every row) */
    const dsc_kernels *k;
} ce_job;

static void ce_forward_task(void *arg, int ith, int nth) {
    const ce_job *j = arg;
    int64_t lo, hi;
    pool_split(j->N, ith, nth, 1, &lo, &hi);
    for (int64_t n = lo; n < hi; n++) {
        const float *x = j->logits + n * j->V;
        float *p = j->probs + n * j->V;
        float mx = x[0];
        for (int32_t v = 1; v < j->V; v++) mx = x[v] > mx ? x[v] : mx;
        /* the target's logit before probs (which may alias logits) is written */
        const double xt = (double)x[j->targets[n]] - mx;
        const double sum = j->k->exp_sum(p, x, j->V, mx);
        j->losses[n] = (float)(log(sum) - xt);
        const float inv = (float)(1.0 / sum);
        for (int32_t v = 0; v < j->V; v++) p[v] *= inv;
    }
}

void train_crossentropy_forward(float *losses, float *probs, const float *logits, const int32_t *targets, int32_t N,
                                int32_t V, const train_exec *ex) {
    ce_job j = {.losses = losses, .probs = probs, .logits = logits, .targets = targets, .N = N, .V = V, .k = ex->k};
    run(ex, (int64_t)N * V * 16, ce_forward_task, &j);
}

static void ce_backward_task(void *arg, int ith, int nth) {
    const ce_job *j = arg;
    int64_t lo, hi;
    pool_split(j->N, ith, nth, 1, &lo, &hi);
    for (int64_t n = lo; n < hi; n++) {
        float *d = j->probs + n * j->V; /* the output, see below */
        const float *p = j->logits + n * j->V;
        const float w = j->weights ? j->weights[n] : j->dloss;
        for (int32_t v = 0; v < j->V; v++) d[v] = (p[v] - (v == j->targets[n] ? 1.0f : 0.0f)) * w;
    }
}

void train_crossentropy_backward(float *dlogits, const float *probs, const int32_t *targets, int32_t N, int32_t V,
                                 float dloss, const train_exec *ex) {
    /* the job's fields reused: probs = output, logits = input */
    ce_job j = {.probs = dlogits, .logits = probs, .targets = targets, .N = N, .V = V, .dloss = dloss};
    run(ex, (int64_t)N * V * 4, ce_backward_task, &j);
}

void train_crossentropy_backward_w(float *dlogits, const float *probs, const int32_t *targets, int32_t N, int32_t V,
                                   const float *weights, const train_exec *ex) {
    ce_job j = {.probs = dlogits, .logits = probs, .targets = targets, .N = N, .V = V, .weights = weights};
    run(ex, (int64_t)N * V * 4, ce_backward_task, &j);
}
