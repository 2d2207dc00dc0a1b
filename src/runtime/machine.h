/*
 * machine.h — machine.c's read probe, for tests.
 */
#ifndef DSC_RUNTIME_MACHINE_H
#define DSC_RUNTIME_MACHINE_H

#include <stdint.h>

/* The sum of what one read of buf (n floats) with n_threads threads adds
 * up: the sum of the squares for the one-stream way (runs 0), of the values
 * for the runs way (runs 1), so that a test can see that every float is
 * read once. -1 if the threads cannot be started. */
double machine_read_sum(int n_threads, const float *buf, int64_t n, int runs);

#endif
