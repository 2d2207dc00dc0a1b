/*
 * kernel_ab.c — two builds of the AVX2 kernels in one process, run in
 * alternation on the same product (see kernel_ab.sh). On a shared machine
 * whose speed moves from one minute to the next, only paired runs a few
 * milliseconds apart compare two versions of a kernel at the 5% level.
 *
 * usage: kernel_ab TYPE TOKENS [COLS] [PAIRS]
 *   TYPE f32 | bf16 | f16 | fp8 | q8 | q4; 64 MiB-equivalent of rows x COLS
 *   (default 2048) weights; matmul_rows of TOKENS tokens split over 2 threads.
 *        kernel_ab attn f32|bf16|q8 POSITIONS [HEADS] [PAIRS]
 *   MLA decode attention on one core as dec_chunk runs it: HEADS (default
 *   16) heads against a latent cache of POSITIONS rows of 576 values, by
 *   blocks of MLA_DEC_PB rows, attn_scores then attn_wsum (over the cache
 *   again until 4096 positions' work is timed, for small POSITIONS).
 *        kernel_ab hot TYPE TOKENS [ROWS] [REPS]
 *   the kernels' arithmetic alone: matmul_rows of ROWS (default 48) x 2048
 *   weights, in L2, on one core, the fastest of REPS (default 2000) calls
 *   of each build (a call's time includes splitting x, as in decode). Where
 *   this rate is not well above the memory's, decode cannot reach the
 *   bandwidth roofline however the weights are fetched. A rate, not an
 *   A/B: two copies of the same kernels have read 0.89-1.00 of each other
 *   on the shared AVX2 machine.
 * Prints the median GB/s (GFLOP/s for attn; for hot, the best GB/s and ns
 * per 32 weights and token) of each build and the median (and quartiles;
 * hot: the ratio of the bests) of the per-pair speed ratio B / A. Exit
 * status 77 on a CPU without AVX2.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "kernels/kernels.h"
#include "models/model.h"

#include "ab_util.h"

extern const dsc_kernels kern_A, kern_B;

typedef struct {
    const dsc_kernels *k;
    const dsc_mat *w;
    const float *x;
    float *y;
    int n, part;
} job;

static void *run(void *arg) {
    const job *j = arg;
    const int32_t h = j->w->rows / 2, r0 = j->part * h, r1 = j->part ? j->w->rows : h;
    j->k->matmul_rows(j->y + r0, j->w->rows, j->x, j->w, j->n, r0, r1);
    return NULL;
}

static double once(const dsc_kernels *k, const dsc_mat *w, const float *x, float *y, int n) {
    job j[2] = {{k, w, x, y, n, 0}, {k, w, x, y, n, 1}};
    pthread_t th;
    const double t0 = now();
    if (pthread_create(&th, NULL, run, &j[1])) run(&j[1]);
    else {
        run(&j[0]);
        pthread_join(th, NULL);
        return now() - t0;
    }
    run(&j[0]);
    return now() - t0;
}

static double attn_once(const dsc_kernels *k, const dsc_mat *c, const float *q, int H, float *sc, float *o,
                        float *rows) {
    enum { W = 576, RL = 512 };
    const int64_t ld = kern_attn_ld(W);
    const double t0 = now();
    for (int32_t r = 0; r < (4096 + c->rows - 1) / c->rows; r++) /* at least 4096 positions' work */
        for (int32_t p0 = 0; p0 < c->rows; p0 += MLA_DEC_PB) {
            const int32_t p1 = c->rows - p0 < MLA_DEC_PB ? c->rows : p0 + MLA_DEC_PB;
            k->attn_scores(sc, MLA_DEC_PB, q, H, c, p0, p1, rows, ld);
            k->attn_wsum(o, W, sc, MLA_DEC_PB, H, rows, ld, p1 - p0, RL);
        }
    return now() - t0;
}

static int attn_ab(int argc, char **argv) {
    enum { W = 576, RL = 512 };
    static const char *names[] = {"f32", "bf16", "q8"};
    static const dsc_wtype types[] = {DSC_W_F32, DSC_W_BF16, DSC_W_Q8};
    static const size_t esz[] = {4, 2, 1};
    int t = -1;
    for (int i = 0; argc > 3 && i < 3; i++)
        if (!strcmp(argv[2], names[i])) t = i;
    const int P = argc > 3 ? atoi(argv[3]) : 0, H = argc > 4 ? atoi(argv[4]) : 16, N = argc > 5 ? atoi(argv[5]) : 21;
    if (t < 0 || P < 1 || P > (1 << 20) || H < 1 || H > 128 || N < 3 || N > 1000) {
        fprintf(stderr, "usage: kernel_ab attn f32|bf16|q8 POSITIONS [HEADS] [PAIRS]\n");
        return 2;
    }
    void *d = amalloc((size_t)P * W * esz[t]);
    uint16_t *qs = amalloc(sizeof(uint16_t) * (size_t)P * (W / DSC_QBLOCK));
    float *row = amalloc(sizeof(float) * W), *q = amalloc(sizeof(float) * (size_t)H * W);
    float *sc = amalloc(sizeof(float) * (size_t)H * MLA_DEC_PB), *o = amalloc(sizeof(float) * (size_t)H * W);
    float *rows = amalloc(sizeof(float) * MLA_DEC_PB * kern_attn_ld(W));
    if (!d || !qs || !row || !q || !sc || !o || !rows) return fprintf(stderr, "kernel_ab: out of memory\n"), 1;
    const dsc_mat c = {types[t], P, W, d, NULL, 0, 0, t == 2 ? qs : NULL};
    uint32_t s = 12345;
    for (int p = 0; p < P; p++) {
        for (int i = 0; i < W; i++) row[i] = (float)((s = s * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
        kern_store_row(&c, p, row);
    }
    for (int i = 0; i < H * W; i++) q[i] = (float)(i % 7) * 0.01f;
    memset(o, 0, sizeof(float) * (size_t)H * W);
    double *ta = malloc(sizeof(double) * N), *tb = malloc(sizeof(double) * N), *ratio = malloc(sizeof(double) * N);
    if (!ta || !tb || !ratio) return fprintf(stderr, "kernel_ab: out of memory\n"), 1;
    attn_once(&kern_A, &c, q, H, sc, o, rows), attn_once(&kern_B, &c, q, H, sc, o, rows); /* warm up */
    for (int p = 0; p < N; p++) { /* A B, B A, ...: neither always runs on the other's cache */
        if (p % 2) tb[p] = attn_once(&kern_B, &c, q, H, sc, o, rows);
        ta[p] = attn_once(&kern_A, &c, q, H, sc, o, rows);
        if (p % 2 == 0) tb[p] = attn_once(&kern_B, &c, q, H, sc, o, rows);
        ratio[p] = ta[p] / tb[p];
    }
    qsort(ta, N, sizeof *ta, cmp), qsort(tb, N, sizeof *tb, cmp), qsort(ratio, N, sizeof *ratio, cmp);
    const double fl = 2.0 * H * P * (W + RL) * ((4096 + P - 1) / P);
    printf("attn %s, %d heads x %d positions: A %.1f GFLOP/s, B %.1f GFLOP/s (medians of %d); B / A speed %.3f "
           "(quartiles %.3f-%.3f)\n",
           names[t], H, P, fl / 1e9 / ta[N / 2], fl / 1e9 / tb[N / 2], N, ratio[N / 2], ratio[N / 4], ratio[3 * N / 4]);
    return 0;
}

static const char *const type_names[] = {"f32", "f16", "bf16", "fp8", "q8", "q4"};
static const dsc_wtype types[] = {DSC_W_F32, DSC_W_F16, DSC_W_BF16, DSC_W_F8_E4M3, DSC_W_Q8, DSC_W_Q4};
static const double bytes_per[] = {4, 2, 2, 1, 1, 0.5};

static int type_index(const char *name) {
    for (int i = 0; i < 6; i++)
        if (!strcmp(name, type_names[i])) return i;
    return -1;
}

/* R x C weights of type index t with values of moderate size, on 2 MiB
 * pages where the kernel gives them, as dsc maps a checkpoint; *nb: the
 * bytes of their values (scales not counted). NULL data when out of memory. */
static dsc_mat make_weights(int t, int32_t R, int32_t C, size_t *nb) {
    *nb = (size_t)((double)R * C * bytes_per[t]);
    const size_t huge = (size_t)2 << 20, nd = (*nb + 64 + huge - 1) / huge * huge;
    unsigned char *d = aligned_alloc(huge, nd);
    uint16_t *qs = malloc(sizeof(uint16_t) * (size_t)R * (C / 32));
    float *fs = malloc(sizeof(float) * (size_t)(R / 128 + 1) * (C / 128 + 1));
    if (!d || !qs || !fs) return (dsc_mat){types[t], R, C, NULL, NULL, 128, 128, NULL};
    madvise(d, nd, MADV_HUGEPAGE);
    uint32_t s = 12345;
    for (size_t i = 0; i < *nb; i++) d[i] = (unsigned char)((s = s * 1664525u + 1013904223u) >> 24);
    if (types[t] == DSC_W_F32) /* finite values of moderate size */
        for (size_t i = 0; i < *nb / 4; i++) ((float *)d)[i] = (float)(d[4 * i] % 200) * 1e-3f - 0.1f;
    if (types[t] == DSC_W_BF16 || types[t] == DSC_W_F16)
        for (size_t i = 0; i < *nb / 2; i++) ((uint16_t *)d)[i] = (uint16_t)((types[t] == DSC_W_BF16 ? 0x3c00 : 0x3000) + (d[2 * i] & 0xff));
    if (types[t] == DSC_W_F8_E4M3)
        for (size_t i = 0; i < *nb; i++) d[i] &= 0x6f;
    for (size_t i = 0; i < (size_t)R * (C / 32); i++) qs[i] = 0x2400;
    for (size_t i = 0; i < (size_t)(R / 128 + 1) * (C / 128 + 1); i++) fs[i] = 0.01f;
    return (dsc_mat){types[t], R, C, d, fs, 128, 128, qs};
}

static int hot_ab(int argc, char **argv) {
    const int t = argc > 3 ? type_index(argv[2]) : -1, n = argc > 3 ? atoi(argv[3]) : 0;
    const int R = argc > 4 ? atoi(argv[4]) : 48, N = argc > 5 ? atoi(argv[5]) : 2000, C = 2048;
    if (t < 0 || n < 1 || n > 64 || R < 1 || R > 4096 || N < 1 || N > 1000000) {
        fprintf(stderr, "usage: kernel_ab hot f32|f16|bf16|fp8|q8|q4 TOKENS [ROWS] [REPS]\n");
        return 2;
    }
    size_t nb;
    const dsc_mat w = make_weights(t, R, C, &nb);
    float *x = malloc(sizeof(float) * (size_t)n * C), *y = malloc(sizeof(float) * (size_t)n * R);
    if (!w.data || !x || !y) return fprintf(stderr, "kernel_ab: out of memory\n"), 1;
    for (int i = 0; i < n * C; i++) x[i] = (float)((i * 37) % 101) * 0.01f - 0.5f;
    double best[2] = {1e30, 1e30};
    const dsc_kernels *k[2] = {&kern_A, &kern_B};
    for (int r = 0; r < N; r++)
        for (int v = 0; v < 2; v++) {
            const double t0 = now();
            k[v]->matmul_rows(y, R, x, &w, n, 0, R);
            const double dt = now() - t0;
            if (dt < best[v]) best[v] = dt;
        }
    const double per = (double)R * C / 32 * n; /* blocks of 32 weights x tokens */
    printf("hot %s, %d tokens, %d x %d on one core: A %.2f GB/s (%.2f ns per 32 weights x token), B %.2f GB/s "
           "(%.2f ns) (best of %d); B / A speed %.3f\n",
           type_names[t], n, R, C, nb / 1e9 / best[0], best[0] * 1e9 / per, nb / 1e9 / best[1], best[1] * 1e9 / per, N,
           best[0] / best[1]);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && (!strcmp(argv[1], "attn") || !strcmp(argv[1], "hot"))) {
        if (!kern_select("avx2")) return fprintf(stderr, "kernel_ab: this CPU has no AVX2\n"), 77;
        return argv[1][0] == 'a' ? attn_ab(argc, argv) : hot_ab(argc, argv);
    }
    const int t = argc > 2 ? type_index(argv[1]) : -1;
    const int n = argc > 2 ? atoi(argv[2]) : 0, C = argc > 3 ? atoi(argv[3]) : 2048, P = argc > 4 ? atoi(argv[4]) : 21;
    if (t < 0 || n < 1 || n > 4096 || C < 32 || C % 32 || P < 3 || P > 1000) {
        fprintf(stderr, "usage: kernel_ab f32|f16|bf16|fp8|q8|q4 TOKENS [COLS (multiple of 32)] [PAIRS]\n");
        return 2;
    }
    if (!kern_select("avx2")) {
        fprintf(stderr, "kernel_ab: this CPU has no AVX2\n");
        return 77;
    }
    const int32_t R = (int32_t)(64.0 * 1048576 / 2 / C) & ~31; /* rows of 2 bytes: 64 MiB of BF16 */
    size_t nb;
    const dsc_mat w = make_weights(t, R, C, &nb);
    float *x = malloc(sizeof(float) * (size_t)n * C), *y = malloc(sizeof(float) * (size_t)n * R);
    if (!w.data || !x || !y) return fprintf(stderr, "kernel_ab: out of memory\n"), 1;
    for (size_t i = 0; i < (size_t)n * C; i++) x[i] = (float)(i % 7) * 0.1f;
    double *ta = malloc(sizeof(double) * P), *tb = malloc(sizeof(double) * P), *ratio = malloc(sizeof(double) * P);
    once(&kern_A, &w, x, y, n), once(&kern_B, &w, x, y, n); /* warm up */
    for (int p = 0; p < P; p++) {
        ta[p] = once(&kern_A, &w, x, y, n);
        tb[p] = once(&kern_B, &w, x, y, n);
        ratio[p] = ta[p] / tb[p];
    }
    qsort(ta, P, sizeof *ta, cmp), qsort(tb, P, sizeof *tb, cmp), qsort(ratio, P, sizeof *ratio, cmp);
    printf("%s, %d tokens, %d x %d: A %.2f GB/s, B %.2f GB/s (medians of %d); B / A speed %.3f (quartiles %.3f-%.3f)\n",
           type_names[t], n, R, C, nb / 1e9 / ta[P / 2], nb / 1e9 / tb[P / 2], P, ratio[P / 2], ratio[P / 4], ratio[3 * P / 4]);
    return 0;
}
