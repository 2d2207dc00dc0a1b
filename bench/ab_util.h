/*
 * ab_util.h — the clock and the ordering of times shared by the A/B
 * programs (kernel_ab.c, model_kernel_ab.c, lib_ab.c) and bench_attn.c.
 */
#ifndef DSC_BENCH_AB_UTIL_H
#define DSC_BENCH_AB_UTIL_H

#include <stdlib.h>
#include <time.h>

static inline double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

/* 64-byte aligned, as the context's buffers are: with malloc's 16 every
 * other 32-byte load spans two lines (the attention's two products then
 * run about 0.91x). */
static inline void *amalloc(size_t n) {
    return aligned_alloc(64, (n + 63) & ~(size_t)63);
}

/* qsort's order of doubles. */
static inline int cmp(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#endif
