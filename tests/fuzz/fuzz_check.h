/*
 * fuzz_check.h — the check the libFuzzer targets share: on a broken
 * invariant, the condition and its place on stderr, then abort() (which
 * libFuzzer reports with the input).
 */
#ifndef DSC_FUZZ_CHECK_H
#define DSC_FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define FUZZ_CHECK(cond)                                                                                               \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "fuzz check failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__);                           \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
