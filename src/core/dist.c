/*
 * dist.c — the MPI calls of data-parallel training (dist.h).
 */
#include "core/dist.h"

#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef DSC_HAVE_MPI
#include <mpi.h>
#endif

static int g_rank = 0, g_size = 1, g_local = 1, g_mpi = 0, g_agreed = 0, g_hearsay = 0;

/* The size of the job this process belongs to, as its launcher's environment
 * tells (Open MPI, PMIx, MPICH's Hydra and PMI, Slurm), or 0 when none. */
static long launcher_size(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS",
                                       "SLURM_NTASKS"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v) return strtol(v, NULL, 10);
    }
    return getenv("PMIX_RANK") || getenv("PMI_RANK") ? 1 : 0;
}

dsc_status dist_init(int *argc, char ***argv) {
    const long n = launcher_size();
    if (n <= 0) return DSC_OK;
#ifdef DSC_HAVE_MPI
    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return dsc_fail(DSC_ERR_IO, "MPI_Init failed (started by mpirun; is the MPI library the one dsc was built with?)");
    g_mpi = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    MPI_Comm node;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
        MPI_Comm_size(node, &g_local);
        MPI_Comm_free(&node);
    }
    return DSC_OK;
#else
    (void)argc, (void)argv;
    if (n > 1)
        return dsc_fail(DSC_ERR_ARG, "started as one of %ld MPI ranks, but this dsc was built without MPI "
                        "(apt-get install libopenmpi-dev openmpi-bin, then rebuild)", n);
    return DSC_OK;
#endif
}

void dist_finalize(void) {
#ifdef DSC_HAVE_MPI
    if (g_mpi) MPI_Finalize();
    g_mpi = 0;
#endif
}

void dist_abort(int code) {
#ifdef DSC_HAVE_MPI
    if (g_mpi && g_size > 1) {
        fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, code);
    }
#endif
    (void)code;
}

dsc_status dist_agree(dsc_status s) {
    if (!dist_any(s != DSC_OK)) return s;
    g_agreed = 1;
    if (s) return s;
    g_hearsay = 1;
    return dsc_fail(DSC_ERR_ARG, "another MPI rank failed (its message says why)");
}

int dist_agreed(void) { return g_agreed; }
int dist_hearsay(void) { return g_hearsay; }

int dist_rank(void) { return g_rank; }
int dist_size(void) { return g_size; }

int dist_default_threads(void) {
    int n = 0;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) n = CPU_COUNT(&set);
    const long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) n = online > 0 ? (int)online : 1;
    /* ranks not bound to CPUs of their own share the node's */
    if (g_local > 1 && n >= online) n /= g_local;
    return n < 1 ? 1 : n;
}

#ifdef DSC_HAVE_MPI
#define DIST_CHUNK ((size_t)1 << 28)

static uint64_t hash_bytes(const void *x, size_t n) {
    const unsigned char *p = x;
    uint64_t h = 0xcbf29ce484222325u;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0x100000001b3u;
        h ^= h >> 29;
    }
    for (; i < n; i++) h = (h ^ p[i]) * 0x100000001b3u;
    return h;
}

static dsc_status sum_typed(void *x, size_t n, size_t elt, MPI_Datatype type, const char *what) {
    if (g_size <= 1) return DSC_OK;
    for (size_t i = 0; i < n; i += DIST_CHUNK) {
        const int c = (int)(n - i < DIST_CHUNK ? n - i : DIST_CHUNK);
        char *p = (char *)x + i * elt;
        const int rc = g_rank == 0 ? MPI_Reduce(MPI_IN_PLACE, p, c, type, MPI_SUM, 0, MPI_COMM_WORLD)
                                   : MPI_Reduce(p, NULL, c, type, MPI_SUM, 0, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS || MPI_Bcast(p, c, type, 0, MPI_COMM_WORLD) != MPI_SUCCESS)
            return dsc_fail(DSC_ERR_IO, "MPI: summing %zu %s over %d ranks failed", n, what, g_size);
    }
    return DSC_OK;
}

dsc_status dist_sum_f32(float *x, size_t n) { return sum_typed(x, n, sizeof *x, MPI_FLOAT, "floats"); }
dsc_status dist_sum_f64(double *x, size_t n) { return sum_typed(x, n, sizeof *x, MPI_DOUBLE, "doubles"); }
dsc_status dist_sum_i32(int32_t *x, size_t n) { return sum_typed(x, n, sizeof *x, MPI_INT32_T, "integers"); }

dsc_status dist_bcast_f32(float *x, size_t n) {
    if (g_size <= 1) return DSC_OK;
    for (size_t i = 0; i < n; i += DIST_CHUNK) {
        const int c = (int)(n - i < DIST_CHUNK ? n - i : DIST_CHUNK);
        if (MPI_Bcast(x + i, c, MPI_FLOAT, 0, MPI_COMM_WORLD) != MPI_SUCCESS)
            return dsc_fail(DSC_ERR_IO, "MPI: broadcasting %zu floats to %d ranks failed", n, g_size);
    }
    return DSC_OK;
}

dsc_status dist_gather_bytes(const void *x, size_t n, char **all, size_t *lens) {
    *all = NULL;
    if (g_size <= 1) {
        if (!(*all = malloc(n ? n : 1))) return dsc_fail(DSC_ERR_NOMEM, "out of memory gathering %zu bytes", n);
        if (n) memcpy(*all, x, n);
        lens[0] = n;
        return DSC_OK;
    }
    uint64_t mine = n, *got = g_rank == 0 ? calloc((size_t)g_size, sizeof *got) : NULL;
    int *counts = g_rank == 0 ? calloc((size_t)g_size, sizeof *counts) : NULL, *at = g_rank == 0 ? calloc((size_t)g_size, sizeof *at) : NULL;
    int bad = n > INT_MAX || (g_rank == 0 && (!got || !counts || !at));
    if (MPI_Gather(&mine, 1, MPI_UINT64_T, got, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD) != MPI_SUCCESS) bad = 1;
    size_t total = 0;
    for (int r = 0; g_rank == 0 && !bad && r < g_size; r++) {
        if (got[r] > INT_MAX || total + got[r] > INT_MAX) bad = 1;
        else counts[r] = (int)got[r], at[r] = (int)total, lens[r] = (size_t)got[r], total += got[r];
    }
    if (g_rank == 0 && !bad && !(*all = malloc(total ? total : 1))) bad = 1;
    bad = dist_any(bad); /* every rank takes part in the gather below, or none does */
    if (!bad && MPI_Gatherv(x, (int)n, MPI_CHAR, *all, counts, at, MPI_CHAR, 0, MPI_COMM_WORLD) != MPI_SUCCESS) bad = 1;
    free(got), free(counts), free(at);
    if (!bad) return DSC_OK;
    free(*all);
    *all = NULL;
    return dsc_fail(DSC_ERR_IO, "MPI: gathering %zu bytes from %d ranks failed (2 GB a rank at most)", n, g_size);
}

int dist_any(int flag) {
    if (g_size <= 1) return flag != 0;
    int in = flag != 0, out = in;
    MPI_Allreduce(&in, &out, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return out;
}
int dist_same(const void *x, size_t n) {
    if (g_size <= 1) return 1;
    const unsigned long long h = hash_bytes(x, n);
    unsigned long long lo = h, hi = h;
    MPI_Allreduce(&h, &lo, 1, MPI_UNSIGNED_LONG_LONG, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(&h, &hi, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, MPI_COMM_WORLD);
    return lo == hi;
}
#else
int dist_same(const void *x, size_t n) { return (void)x, (void)n, 1; }
dsc_status dist_sum_f32(float *x, size_t n) { return (void)x, (void)n, DSC_OK; }
dsc_status dist_sum_f64(double *x, size_t n) { return (void)x, (void)n, DSC_OK; }
dsc_status dist_sum_i32(int32_t *x, size_t n) { return (void)x, (void)n, DSC_OK; }
dsc_status dist_bcast_f32(float *x, size_t n) { return (void)x, (void)n, DSC_OK; }
int dist_any(int flag) { return flag != 0; }
dsc_status dist_gather_bytes(const void *x, size_t n, char **all, size_t *lens) {
    if (!(*all = malloc(n ? n : 1))) return dsc_fail(DSC_ERR_NOMEM, "out of memory gathering %zu bytes", n);
    if (n) memcpy(*all, x, n);
    lens[0] = n;
    return DSC_OK;
}
#endif
