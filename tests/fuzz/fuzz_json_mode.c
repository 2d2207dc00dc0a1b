/*
 * fuzz_json_mode.c — libFuzzer target for JSON mode's recognizer
 * (dsc_json_feed, src/runtime/json_mode.c) against the independent
 * validator of tests/unit/json_validate.h. The first byte sets the size of
 * the pieces the rest is fed in; the rest is the output to hold.
 * Invariants: a refused piece leaves the state as it was; fed in pieces or
 * byte by byte, the same bytes are taken; the recognizer calls the input
 * complete exactly when the validator accepts it; an input it refuses part
 * of, the validator refuses whole.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../unit/json_validate.h"
#include "fuzz_check.h"

/* Feeds s in pieces of at most `piece` bytes; returns the bytes taken. */
static size_t feed(const char *s, size_t n, size_t piece, dsc_json_state *st) {
    size_t at = 0;
    while (at < n) {
        const size_t k = n - at < piece ? n - at : piece;
        dsc_json_state before = *st;
        if (dsc_json_feed(st, s + at, k)) {
            FUZZ_CHECK(!memcmp(&before, st, sizeof before));
            if (k == 1) return at;
            return at + feed(s + at, k, 1, st); /* the piece byte by byte: where it stops */
        }
        at += k;
    }
    return at;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const size_t piece = 1 + data[0] % 16;
    const char *s = (const char *)data + 1;
    const size_t n = size - 1;
    dsc_json_state a, b;
    dsc_json_start(&a);
    dsc_json_start(&b);
    const size_t ta = feed(s, n, piece, &a), tb = feed(s, n, 1, &b);
    FUZZ_CHECK(ta == tb && !memcmp(&a, &b, sizeof a));
    const int valid = validate(s, n);
    if (tb == n) FUZZ_CHECK(dsc_json_complete(&b) == valid);
    else FUZZ_CHECK(!valid);
    return 0;
}
