/*
 * ops.c — matrix products split between the context's threads by rows of
 * the weight, each thread calling the dispatched kernel on its share.
 */
#include "models/model.h"

/* Below this many multiply-adds a product runs on one thread: waking the
 * others costs more than it saves. */
#define OP_MIN_PARALLEL (64 * 1024)

typedef struct {
    const dsc_kernels *k;
    float *y;
    const float *x;
    const dsc_mat *w;
    int32_t n;
} mm_job;

static void mm_task(void *arg, int ith, int nth) {
    const mm_job *j = arg;
    int64_t lo, hi;
    pool_split(j->w->rows, ith, nth, 16, &lo, &hi);
    if (lo < hi) j->k->matmul_rows(j->y + lo, j->w->rows, j->x, j->w, j->n, (int32_t)lo, (int32_t)hi);
}

/* Many tokens (n >= OP_GEMM_MIN, prefill): each thread takes blocks of
 * OP_GEMM_ROWS rows of its share of W, dequantises them to F32 once (the
 * kernels' mat_row) and multiplies them with the kernels' register-tiled
 * gemm, by blocks of OP_GEMM_KB columns (the packed panels stay in L2). */
#define OP_GEMM_MIN 32
#define OP_GEMM_ROWS 64
#define OP_GEMM_KB 1024

static void mm_gemm_task(void *arg, int ith, int nth) {
    const mm_job *j = arg;
    const int32_t K = j->w->cols, R = j->w->rows, kb0 = K < OP_GEMM_KB ? K : OP_GEMM_KB;
    int64_t lo, hi;
    pool_split(R, ith, nth, 16, &lo, &hi);
    if (lo >= hi) return;
    const size_t nw = (size_t)OP_GEMM_ROWS * K, np = kern_gemm_scratch(j->n, OP_GEMM_ROWS, kb0, 0);
    float *wb = pool_scratch(nw + np);
    if (!wb) { /* out of memory: the row kernel, which needs no scratch */
        j->k->matmul_rows(j->y + lo, R, j->x, j->w, j->n, (int32_t)lo, (int32_t)hi);
        return;
    }
    float *pack = wb + nw;
    for (int64_t r0 = lo; r0 < hi; r0 += OP_GEMM_ROWS) {
        const int32_t rows = hi - r0 < OP_GEMM_ROWS ? (int32_t)(hi - r0) : OP_GEMM_ROWS;
        for (int32_t r = 0; r < rows; r++) j->k->mat_row(wb + (int64_t)r * K, j->w, (int32_t)(r0 + r));
        for (int32_t k0 = 0; k0 < K; k0 += OP_GEMM_KB) {
            const int32_t kb = K - k0 < OP_GEMM_KB ? K - k0 : OP_GEMM_KB;
            j->k->gemm(j->y + r0, R, j->x + k0, K, wb + k0, K, j->n, rows, kb, k0 ? DSC_GEMM_ACC : 0, pack);
        }
    }
}

void op_matmul(dsc_ctx *ctx, float *y, const float *x, const dsc_mat *w, int32_t n) {
    mm_job j = {ctx->k, y, x, w, n};
    /* The gemm tiles are 8 lanes wide: kernel sets with wider vectors keep
     * their own prefill tiles (matmul_rows). */
    const pool_fn fn = n >= OP_GEMM_MIN && ctx->k->gemm && ctx->k->lanes <= 8 ? mm_gemm_task : mm_task;
    if ((int64_t)w->rows * w->cols * n < OP_MIN_PARALLEL) fn(&j, 0, 1);
    else pool_run(ctx->pool, fn, &j);
}
