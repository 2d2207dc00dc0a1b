/*
 * ab_util.h — the clock and the ordering of times shared by the A/B
 * programs (kernel_ab.c, model_kernel_ab.c, lib_ab.c).
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

/* qsort's order of doubles. */
static inline int cmp(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#endif
