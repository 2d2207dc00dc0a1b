/*
 * dist.h — data-parallel training over MPI: each rank (one process of an
 * `mpirun -np N dsc train ...` job) computes the gradient of its share of a
 * step's micro-batches; the sums below make every rank hold the same sum, so
 * the ranks take the same optimizer step and keep the same weights. Rank 0
 * alone writes checkpoints and logs.
 *
 * Without MPI (built without it, or not started by an MPI launcher) there is
 * one rank and every call is a no-op.
 */
#ifndef DSC_CORE_DIST_H
#define DSC_CORE_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* MPI_Init when this process was started by an MPI launcher (mpirun,
 * mpiexec, srun: its environment says so), else one rank. An MPI job of
 * more than one rank with dsc built without MPI is an error. */
dsc_status dist_init(int *argc, char ***argv);
void dist_finalize(void);
/* Ends every rank of the job (a rank that fails would leave the others
 * waiting in a sum); returns only when there is one rank. */
void dist_abort(int code);

int dist_rank(void);
int dist_size(void);
/* Threads for each rank: the CPUs this process may run on, shared by the
 * ranks on this node when they are not bound apart. */
int dist_default_threads(void);

/* In place, over all ranks: every rank gets rank 0's bits of the sum (reduced
 * to rank 0, then broadcast), whatever order the MPI library adds in. */
dsc_status dist_sum_f32(float *x, size_t n);
dsc_status dist_sum_f64(double *x, size_t n);
dsc_status dist_sum_i32(int32_t *x, size_t n);
/* Rank 0's values to every rank. */
dsc_status dist_bcast_f32(float *x, size_t n);
/* Every rank's n bytes at x to rank 0, in rank order: *all (malloc'd, the
 * caller frees) and lens[dist_size()] each rank's length; NULL on the
 * others. At most 2 GB a rank and in all. */
dsc_status dist_gather_bytes(const void *x, size_t n, char **all, size_t *lens);
/* Non-zero on every rank when flag is non-zero on any. */
int dist_any(int flag);
/* s on a rank that failed; on the others a failure saying another rank
 * failed, when one did (a point every rank reaches: no rank then waits for
 * one that has given up). */
dsc_status dist_agree(dsc_status s);
/* Whether a failure was agreed by dist_agree (every rank knows: none need be
 * aborted), and whether s is the message of a rank that only heard of it. */
int dist_agreed(void);
int dist_hearsay(void);
/* Non-zero when every rank holds the same n bytes at x (a hash compared). */
int dist_same(const void *x, size_t n);

#endif
