/*
 * threadpool.h — a fork-join pool: pool_run(fn) calls fn(arg, i, n) on n
 * threads (the caller is thread 0) and returns when all are done. Workers
 * spin briefly between jobs, then sleep, so back-to-back kernels (a decode
 * step runs a few hundred) pay microseconds, not a wake-up each.
 */
#ifndef DSC_CORE_THREADPOOL_H
#define DSC_CORE_THREADPOOL_H

#include <stddef.h>
#include <stdint.h>

typedef void (*pool_fn)(void *arg, int ith, int nth);
typedef struct dsc_pool dsc_pool;

/* NULL on failure (threads or memory). n_threads >= 1. */
dsc_pool *pool_new(int n_threads);
void pool_free(dsc_pool *p);
int pool_size(const dsc_pool *p);

/* Runs fn on every thread of the pool; p may be NULL (runs fn(arg, 0, 1)). */
void pool_run(dsc_pool *p, pool_fn fn, void *arg);

/* [lo, hi) of n items for thread ith of nth, in chunks of `align`. */
void pool_split(int64_t n, int ith, int nth, int64_t align, int64_t *lo, int64_t *hi);

/* The calling thread's scratch of at least n floats (kept between calls,
 * grown as needed), or NULL when out of memory. A thread's scratch is freed
 * when the thread ends, or by pool_scratch_release on that thread. */
float *pool_scratch(size_t n);
void pool_scratch_release(void);

#endif
