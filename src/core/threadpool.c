/*
 * threadpool.c — fork-join pool on pthreads and C11 atomics.
 *
 * A job is cut into nth chunks (nth = pool size); any thread, the caller
 * included, claims the next unclaimed chunk, so a worker the OS has not
 * scheduled does not hold the job up: the caller runs its chunk instead.
 * Each chunk index runs exactly once per job, so tasks may index per-thread
 * scratch by it. Claims carry the job's generation: a late worker never
 * takes a chunk of a newer job by mistake.
 */
#include "core/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#define SPIN_ROUNDS 20000

struct dsc_pool {
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_uint gen;          /* bumped for every job; workers wait for a change    */
    atomic_uint_fast64_t next; /* (generation << 32) | next chunk to claim          */
    atomic_int done;          /* chunks finished in the current job                 */
    atomic_int quit;
    atomic_int sleepers;
    pool_fn fn;
    void *arg;
};

typedef struct {
    dsc_pool *p;
    int ith;
} worker_arg;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Claims a chunk of job g; -1 when none is left (or the job is over). */
static int claim(dsc_pool *p, unsigned g) {
    uint_fast64_t s = atomic_load(&p->next);
    for (;;) {
        if ((unsigned)(s >> 32) != g || (int)(s & 0xffffffffu) >= p->n) return -1;
        if (atomic_compare_exchange_weak(&p->next, &s, s + 1)) return (int)(s & 0xffffffffu);
    }
}

static void run_chunks(dsc_pool *p, unsigned g) {
    int c;
    while ((c = claim(p, g)) >= 0) {
        p->fn(p->arg, c, p->n); /* fn/arg belong to job g: it cannot end before this chunk */
        atomic_fetch_add(&p->done, 1);
    }
}

static void *worker(void *a) {
    worker_arg *wa = a;
    dsc_pool *p = wa->p;
    free(wa);
    unsigned seen = 0;
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load(&p->gen)) == seen && !atomic_load(&p->quit)) {
            if (++spins < SPIN_ROUNDS) {
                cpu_relax();
                continue;
            }
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleepers, 1);
            while (atomic_load(&p->gen) == seen && !atomic_load(&p->quit)) pthread_cond_wait(&p->cv, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->quit)) return NULL;
        seen = g;
        run_chunks(p, g);
    }
}

dsc_pool *pool_new(int n_threads) {
    dsc_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n_threads < 1 ? 1 : n_threads;
    p->threads = calloc((size_t)p->n, sizeof *p->threads);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (!p->threads) {
        pool_free(p);
        return NULL;
    }
    for (int i = 1; i < p->n; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa) {
            p->n = i;
            pool_free(p);
            return NULL;
        }
        *wa = (worker_arg){p, i};
        if (pthread_create(&p->threads[i], NULL, worker, wa) != 0) {
            free(wa);
            p->n = i;
            pool_free(p);
            return NULL;
        }
    }
    return p;
}

void pool_free(dsc_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->quit, 1);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->threads);
    free(p);
}

int pool_size(const dsc_pool *p) { return p ? p->n : 1; }

void pool_run(dsc_pool *p, pool_fn fn, void *arg) {
    if (!p || p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    const unsigned g = atomic_load(&p->gen) + 1;
    p->fn = fn;
    p->arg = arg;
    atomic_store(&p->done, 0);
    atomic_store(&p->next, (uint_fast64_t)g << 32);
    atomic_store(&p->gen, g); /* seq_cst: pairs with the sleepers count (Dekker) */
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    run_chunks(p, g);
    /* Chunks claimed by workers may still be running. */
    int spins = 0;
    while (atomic_load(&p->done) < p->n)
        if (++spins > 64) sched_yield();
        else cpu_relax();
}

void pool_split(int64_t n, int ith, int nth, int64_t align, int64_t *lo, int64_t *hi) {
    int64_t chunks = (n + align - 1) / align;
    int64_t c0 = chunks * ith / nth, c1 = chunks * (ith + 1) / nth;
    *lo = c0 * align < n ? c0 * align : n;
    *hi = c1 * align < n ? c1 * align : n;
}

/* ------------------------------------------------------------------------ */
/* Per-thread scratch                                                        */

typedef struct {
    size_t cap;
    float data[];
} thread_scratch;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static int scratch_key_ok;

static void scratch_key_make(void) { scratch_key_ok = pthread_key_create(&scratch_key, free) == 0; }

float *pool_scratch(size_t n) {
    pthread_once(&scratch_once, scratch_key_make);
    if (!scratch_key_ok) return NULL;
    thread_scratch *s = pthread_getspecific(scratch_key);
    if (s && s->cap >= n) return s->data;
    free(s);
    s = n <= ((size_t)1 << 40) ? malloc(sizeof *s + sizeof(float) * n) : NULL;
    pthread_setspecific(scratch_key, s);
    if (!s) return NULL;
    s->cap = n;
    return s->data;
}

void pool_scratch_release(void) {
    pthread_once(&scratch_once, scratch_key_make);
    if (!scratch_key_ok) return;
    free(pthread_getspecific(scratch_key));
    pthread_setspecific(scratch_key, NULL);
}
