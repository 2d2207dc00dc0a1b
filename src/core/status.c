/*
 * status.c — per-thread error message and checked size arithmetic.
 */
#include "core/status.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

static _Thread_local char err_msg[512];

dsc_status dsc_fail(dsc_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_msg, sizeof err_msg, fmt, ap);
    va_end(ap);
    /* Names quoted from a file may hold control characters: keep the
     * message on one printable line. */
    for (char *p = err_msg; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?';
    return s;
}

const char *dsc_last_error(void) { return err_msg; }

const char *dsc_status_str(dsc_status s) {
    switch (s) {
    case DSC_OK: return "ok";
    case DSC_ERR_IO: return "i/o error";
    case DSC_ERR_FORMAT: return "malformed file";
    case DSC_ERR_CONFIG: return "unsupported configuration";
    case DSC_ERR_SHAPE: return "tensor missing or of the wrong shape";
    case DSC_ERR_NOMEM: return "out of memory";
    case DSC_ERR_ARG: return "invalid argument";
    case DSC_ERR_CONTEXT: return "context full";
    }
    return "unknown status";
}

int dsc_mul_size(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return 0;
    *out = a * b;
    return 1;
}

int dsc_add_size(size_t a, size_t b, size_t *out) {
    if (b > SIZE_MAX - a) return 0;
    *out = a + b;
    return 1;
}
