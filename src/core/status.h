/*
 * status.h — internal error reporting: every failing call records a one-line
 * message for dsc_last_error() and returns its status.
 */
#ifndef DSC_CORE_STATUS_H
#define DSC_CORE_STATUS_H

#include "dsc.h"

#if defined(__GNUC__)
#define DSC_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define DSC_PRINTF(a, b)
#endif

/* Records the message (printf-style) for this thread and returns s, so that a
 * caller can write `return dsc_fail(DSC_ERR_IO, "%s: ...", path);`. */
dsc_status dsc_fail(dsc_status s, const char *fmt, ...) DSC_PRINTF(2, 3);

/* Overflow-checked size arithmetic: return 0 and leave *out untouched on
 * overflow, 1 otherwise. */
int dsc_mul_size(size_t a, size_t b, size_t *out);
int dsc_add_size(size_t a, size_t b, size_t *out);

#endif
