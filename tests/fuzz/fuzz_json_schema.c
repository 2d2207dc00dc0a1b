/*
 * fuzz_json_schema.c — libFuzzer target for structured output
 * (src/runtime/json_schema.c): the schema compiler on any bytes, and the
 * recognizer of a schema that compiled on any output. The input: a byte
 * that sets the size of the pieces, the schema's text, a NUL, the output.
 * Invariants: a schema compiles or is refused with a message (no crash);
 * a refused piece leaves the state as it was; fed in pieces or byte by
 * byte, the same bytes are taken; an output the recognizer calls complete
 * is one JSON object (the independent validator of tests/unit/json_validate.h).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../unit/json_validate.h"
#include "fuzz_check.h"

/* Feeds s in pieces of at most `piece` bytes; returns the bytes taken. */
static size_t feed(const dsc_json_schema *sc, const char *s, size_t n, size_t piece, dsc_schema_state *st) {
    size_t at = 0;
    while (at < n) {
        const size_t k = n - at < piece ? n - at : piece;
        dsc_schema_state before = *st;
        if (dsc_schema_feed(sc, st, s + at, k)) {
            FUZZ_CHECK(!memcmp(&before, st, sizeof before));
            if (k == 1) return at;
            return at + feed(sc, s + at, k, 1, st); /* the piece byte by byte: where it stops */
        }
        at += k;
    }
    return at;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const size_t piece = 1 + data[0] % 16;
    const char *text = (const char *)data + 1, *nul = memchr(text, 0, size - 1);
    const size_t n_schema = nul ? (size_t)(nul - text) : size - 1;
    const char *out = nul ? nul + 1 : text + n_schema;
    const size_t n = size - 1 - n_schema - (nul != NULL);
    dsc_json_schema *sc = NULL;
    const dsc_status st = dsc_json_schema_new(text, n_schema, &sc);
    FUZZ_CHECK((st == DSC_OK) == (sc != NULL) && (st == DSC_OK || st == DSC_ERR_ARG) && (st == DSC_OK || dsc_last_error()[0]));
    if (!sc) return 0;
    dsc_schema_state a, b;
    dsc_schema_start(sc, &a);
    dsc_schema_start(sc, &b);
    const size_t ta = feed(sc, out, n, piece, &a), tb = feed(sc, out, n, 1, &b);
    FUZZ_CHECK(ta == tb && !memcmp(&a, &b, sizeof a));
    if (tb == n && dsc_schema_complete(&b)) FUZZ_CHECK(validate(out, n));
    dsc_json_schema_free(sc);
    return 0;
}
