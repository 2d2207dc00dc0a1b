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

void op_matmul(dsc_ctx *ctx, float *y, const float *x, const dsc_mat *w, int32_t n) {
    mm_job j = {ctx->k, y, x, w, n};
    if ((int64_t)w->rows * w->cols * n < OP_MIN_PARALLEL) mm_task(&j, 0, 1);
    else pool_run(ctx->pool, mm_task, &j);
}
