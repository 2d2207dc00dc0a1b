/*
 * ops.c — matrix products split between the context's threads by rows of
 * the weight, each thread calling the dispatched kernel on its share.
 */
#include <stdatomic.h>

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

/* Many tokens (n >= OP_GEMM_MIN, prefill): the rows of W go by blocks of
 * OP_GEMM_ROWS, which the threads claim one at a time over all the products
 * of a batch (one barrier for them all; a thread slowed down leaves the
 * other more blocks rather than making it wait), and each block is
 * multiplied with the kernels' register-tiled gemm by blocks of OP_GEMM_KB
 * columns (the packed panels stay in L2). The rows are decoded straight
 * into the gemm's panels (gemm_w), or where a kernel set has none, to F32
 * rows first (mat_row). A row's values do not depend on its block or its
 * thread. */
#define OP_GEMM_MIN DSC_FEW_TOKENS
#define OP_GEMM_ROWS 64
#define OP_GEMM_KB 1024

typedef struct {
    const dsc_kernels *k;
    const dsc_mm *mm;
    int count;
    atomic_int next;
} gemm_job;

/* Q4 rows multiply x rounded to 8 bits (kernels.h): in every kernel set
 * their gemm takes x so rounded and gives the row kernel's values. */
static int gemm_round_x(const dsc_mm *m) { return m->w->type == DSC_W_Q4; }

static size_t gemm_scratch(const dsc_kernels *k, const dsc_mm *m) {
    const int32_t K = m->w->cols, kb0 = K < OP_GEMM_KB ? K : OP_GEMM_KB;
    const size_t nw = k->gemm_w ? 0 : (size_t)OP_GEMM_ROWS * K, np = kern_gemm_scratch(m->n, OP_GEMM_ROWS, kb0, 0);
    return nw + np + (gemm_round_x(m) ? (size_t)m->n * K : 0);
}

static void gemm_block(const dsc_kernels *k, const dsc_mm *m, const float *x, int32_t r0, float *wb) {
    const int32_t K = m->w->cols, R = m->w->rows, rows = R - r0 < OP_GEMM_ROWS ? R - r0 : OP_GEMM_ROWS;
    const int direct = k->gemm_w != NULL;
    float *pack = wb + (direct ? 0 : (size_t)OP_GEMM_ROWS * K);
    if (!direct)
        for (int32_t r = 0; r < rows; r++) k->mat_row(wb + (int64_t)r * K, m->w, r0 + r);
    for (int32_t k0 = 0; k0 < K; k0 += OP_GEMM_KB) {
        const int32_t kb = K - k0 < OP_GEMM_KB ? K - k0 : OP_GEMM_KB, flags = k0 ? DSC_GEMM_ACC : 0;
        if (direct) k->gemm_w(m->y + r0, R, x + k0, K, m->n, m->w, r0, rows, k0, kb, flags, pack);
        else k->gemm(m->y + r0, R, x + k0, K, wb + k0, K, m->n, rows, kb, flags, pack);
    }
}

static void mm_gemm_task(void *arg, int ith, int nth) {
    (void)ith, (void)nth;
    gemm_job *j = arg;
    size_t need = 0;
    for (int i = 0; i < j->count; i++) {
        const size_t n = gemm_scratch(j->k, &j->mm[i]);
        need = n > need ? n : need;
    }
    float *wb = pool_scratch(need);
    int i = 0, xi = -1; /* the product of the claimed block; the one whose x is rounded in the scratch */
    int32_t base = 0;  /* blocks before product i */
    for (;;) {
        const int c = atomic_fetch_add(&j->next, 1);
        while (i < j->count && c >= base + (j->mm[i].w->rows + OP_GEMM_ROWS - 1) / OP_GEMM_ROWS)
            base += (j->mm[i++].w->rows + OP_GEMM_ROWS - 1) / OP_GEMM_ROWS;
        if (i >= j->count) return;
        const dsc_mm *m = &j->mm[i];
        const int32_t r0 = (c - base) * OP_GEMM_ROWS, r1 = r0 + OP_GEMM_ROWS < m->w->rows ? r0 + OP_GEMM_ROWS : m->w->rows;
        if (!wb) { /* out of memory: the row kernel, which needs no scratch */
            j->k->matmul_rows(m->y + r0, m->w->rows, m->x, m->w, m->n, r0, r1);
            continue;
        }
        const float *x = m->x;
        if (gemm_round_x(m)) { /* each thread its own copy: a few hundredths of its share of the product */
            float *xr = wb + (need - (size_t)m->n * m->w->cols);
            if (xi != i) j->k->q8_round(xr, m->x, (int64_t)m->n * m->w->cols), xi = i;
            x = xr;
        }
        gemm_block(j->k, m, x, r0, wb);
    }
}

/* The products of a batch on the gemm, all under one barrier. */
static void gemm_batch(dsc_ctx *ctx, const dsc_mm *mm, int count) {
    gemm_job j = {.k = ctx->k, .mm = mm, .count = count};
    atomic_init(&j.next, 0);
    int64_t work = 0;
    for (int i = 0; i < count; i++) work += (int64_t)mm[i].w->rows * mm[i].w->cols * mm[i].n;
    if (work < OP_MIN_PARALLEL) mm_gemm_task(&j, 0, 1);
    else pool_run(ctx->pool, mm_gemm_task, &j);
}

/* Few tokens (decode): the products of a batch are cut into chunks of rows
 * (multiples of 16 rows, at least OP_CHUNK_MIN, about OP_CHUNKS chunks per
 * thread over the whole batch: a chunk is about the same work whatever
 * product it belongs to) that the threads claim one at a time, so one
 * barrier covers them all and a thread slowed down (or given the bigger
 * expert) only leaves the others more chunks. Chunks of the batch's share
 * rather than of each product's: the kernels split x again for every chunk
 * they are given (Q8 and Q4), and a batch of a dozen expert products cut 16
 * ways each spent a tenth of the Q4 experts' time on that. Each row is
 * computed alone, so the result is the same whatever thread takes it.
 * 32 chunks a thread read 0.972 and 8 read 0.999 (`lib_ab.sh`, BF16
 * weights, 60 pairs). */
#define OP_CHUNKS 16
#define OP_CHUNK_MIN 64

typedef struct {
    const dsc_kernels *k;
    const dsc_mm *mm;
    int count, nth;
    int64_t chunk_work; /* rows x cols x tokens per chunk */
    atomic_int next;
    dsc_timer *timer; /* or NULL */
} batch_job;

static int32_t chunk_rows(const batch_job *j, const dsc_mm *m) {
    const int64_t per_row = (int64_t)(m->w->cols > 0 ? m->w->cols : 1) * (m->n > 0 ? m->n : 1);
    int64_t r = (j->chunk_work / per_row + 15) / 16 * 16;
    if (r > m->w->rows) r = m->w->rows; /* one chunk */
    return r < OP_CHUNK_MIN ? OP_CHUNK_MIN : (int32_t)r;
}

static void batch_task(void *arg, int ith, int nth) {
    (void)ith, (void)nth;
    batch_job *j = arg;
    int i = 0;
    int32_t base = 0, cr = chunk_rows(j, &j->mm[0]); /* chunks before item i; its chunk rows */
    for (;;) {
        const int c = atomic_fetch_add(&j->next, 1);
        while (i < j->count && c >= base + (j->mm[i].w->rows + cr - 1) / cr) {
            base += (j->mm[i++].w->rows + cr - 1) / cr;
            if (i < j->count) cr = chunk_rows(j, &j->mm[i]);
        }
        if (i >= j->count) return;
        const dsc_mm *m = &j->mm[i];
        const int32_t r0 = (c - base) * cr, r1 = r0 + cr < m->w->rows ? r0 + cr : m->w->rows;
        const int64_t t0 = j->timer ? dsc_now_ns() : 0;
        j->k->matmul_rows(m->y + r0, m->w->rows, m->x, m->w, m->n, r0, r1);
        if (j->timer) {
            atomic_fetch_add(&j->timer->rows_ns, dsc_now_ns() - t0);
            atomic_fetch_add(&j->timer->rows_bytes, kern_mat_bytes(m->w) / m->w->rows * (r1 - r0));
        }
    }
}

static int32_t gemm_from(const dsc_mm *m) { return m->gemm_from > 0 ? m->gemm_from : OP_GEMM_MIN; }

/* Whether a product of many tokens goes to the gemm: kernel sets with wider
 * vectors than its 8-lane tiles keep their own prefill tiles (matmul_rows),
 * except for Q4 rows, whose x the gemm rounds as their row kernel does. */
static int on_gemm(const dsc_ctx *ctx, const dsc_mm *m) {
    return m->n >= gemm_from(m) && ctx->k->gemm && (ctx->k->lanes <= 8 || gemm_round_x(m));
}

static void matmul_one(dsc_ctx *ctx, const dsc_mm *m);

/* Products of few tokens (below their gemm_from) on the row kernels, all
 * under one barrier. */
static void rows_batch(dsc_ctx *ctx, const dsc_mm *mm, int count) {
    int64_t work = 0;
    for (int i = 0; i < count; i++) work += (int64_t)mm[i].w->rows * mm[i].w->cols * mm[i].n;
    const int serial = work < OP_MIN_PARALLEL;
    batch_job j = {.k = ctx->k, .mm = mm, .count = count, .nth = serial ? 1 : pool_size(ctx->pool), .timer = ctx->timer};
    j.chunk_work = work / ((int64_t)OP_CHUNKS * j.nth);
    atomic_init(&j.next, 0);
    if (serial) batch_task(&j, 0, 1);
    else pool_run(ctx->pool, batch_task, &j);
}

/* params.batch_invariant: every product on the row kernels at most
 * INV_TOKENS tokens at a time, as a decode step takes them; a row's value
 * there does not depend on how many tokens share the call, so a token's
 * results do not depend on what else the pass carries. A pass of more
 * tokens reads the weights once per INV_TOKENS of them (the products of a
 * batch all under one barrier each time). */
#define INV_TOKENS (DSC_FEW_TOKENS - 1)

static void invariant_batch(dsc_ctx *ctx, const dsc_mm *mm, int count) {
    int32_t most = 0;
    for (int i = 0; i < count; i++) most = mm[i].n > most ? mm[i].n : most;
    dsc_mm part[count];
    for (int32_t t0 = 0; t0 < most; t0 += INV_TOKENS) {
        int np = 0;
        for (int i = 0; i < count; i++) {
            if (mm[i].n <= t0) continue;
            part[np] = mm[i];
            part[np].y += (int64_t)t0 * mm[i].w->rows;
            part[np].x += (int64_t)t0 * mm[i].w->cols;
            part[np++].n = mm[i].n - t0 < INV_TOKENS ? mm[i].n - t0 : INV_TOKENS;
        }
        rows_batch(ctx, part, np);
    }
}

void op_matmul_batch(dsc_ctx *ctx, const dsc_mm *mm, int count) {
    if (count == 0) return;
    if (ctx->invariant) {
        invariant_batch(ctx, mm, count);
        return;
    }
    int ng = 0, nr = 0;
    for (int i = 0; i < count; i++) ng += on_gemm(ctx, &mm[i]), nr += mm[i].n < gemm_from(&mm[i]);
    if (ng == count) gemm_batch(ctx, mm, count);
    else if (nr == count) rows_batch(ctx, mm, count);
    else { /* a mix (a prefill's experts, some chosen by few tokens): the gemm's, the rows', then the others */
        dsc_mm g[ng > 0 ? ng : 1], r[nr > 0 ? nr : 1];
        ng = nr = 0;
        for (int i = 0; i < count; i++) {
            if (on_gemm(ctx, &mm[i])) g[ng++] = mm[i];
            else if (mm[i].n < gemm_from(&mm[i])) r[nr++] = mm[i];
        }
        if (ng) gemm_batch(ctx, g, ng);
        if (nr) rows_batch(ctx, r, nr);
        for (int i = 0; i < count; i++)
            if (!on_gemm(ctx, &mm[i]) && mm[i].n >= gemm_from(&mm[i])) matmul_one(ctx, &mm[i]);
    }
}

static void matmul_one(dsc_ctx *ctx, const dsc_mm *m) {
    if (m->n < gemm_from(m) || ctx->invariant) {
        op_matmul_batch(ctx, m, 1);
        return;
    }
    if (on_gemm(ctx, m)) {
        gemm_batch(ctx, m, 1);
        return;
    }
    mm_job j = {ctx->k, m->y, m->x, m->w, m->n};
    if ((int64_t)m->w->rows * m->w->cols * m->n < OP_MIN_PARALLEL) mm_task(&j, 0, 1);
    else pool_run(ctx->pool, mm_task, &j);
}

void op_matmul(dsc_ctx *ctx, float *y, const float *x, const dsc_mat *w, int32_t n) {
    const dsc_mm one = {y, x, w, n, 0};
    matmul_one(ctx, &one);
}

/* SwiGLU in place, g <- silu(g) x u (kern_swiglu_k, the trainer's form),
 * split between threads from SWIGLU_PARALLEL values (a prefill's experts). */
#define SWIGLU_PARALLEL (64 * 1024)

typedef struct {
    const dsc_kernels *k;
    float *g;
    const float *u;
    int64_t n;
} swiglu_job;

static void swiglu_task(void *arg, int ith, int nth) {
    const swiglu_job *j = arg;
    int64_t lo, hi;
    pool_split(j->n, ith, nth, 16, &lo, &hi);
    if (lo < hi) kern_swiglu_k(j->k, j->g + lo, j->g + lo, j->u + lo, hi - lo);
}

void op_swiglu(dsc_ctx *ctx, float *g, const float *u, int64_t n) {
    swiglu_job j = {ctx->k, g, u, n};
    if (n < SWIGLU_PARALLEL) swiglu_task(&j, 0, 1);
    else pool_run(ctx->pool, swiglu_task, &j);
}
