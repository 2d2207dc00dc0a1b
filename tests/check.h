/*
 * check.h — the pass/fail counting of the C test programs: CHECK(cond,
 * printf-args) counts a pass, or prints "FAIL file:line: message" and
 * counts a failure; a program ends with "N passed, M failed" and exits
 * non-zero on any failure.
 */
#ifndef DSC_TESTS_CHECK_H
#define DSC_TESTS_CHECK_H

#include <stdio.h>

static int n_pass, n_fail;

#define CHECK(cond, ...)                                                                                               \
    do {                                                                                                               \
        if (cond) n_pass++;                                                                                            \
        else {                                                                                                         \
            n_fail++;                                                                                                  \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                                                \
            printf(__VA_ARGS__);                                                                                       \
            printf("\n");                                                                                              \
        }                                                                                                              \
    } while (0)

#endif
