/*
 * text_buf.h — what the JSON tests (test_json, test_schema) write their
 * documents with: a xorshift generator (rng, seeded in each test's main if
 * it wants another sequence) and a growable NUL-terminated byte buffer.
 */
#ifndef DSC_TESTS_TEXT_BUF_H
#define DSC_TESTS_TEXT_BUF_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 88172645463325252ull;
static uint32_t rnd(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

typedef struct {
    char *b;
    size_t n, cap;
} buf;

static void put(buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) b->cap = (b->n + n + 1) * 2, b->b = realloc(b->b, b->cap);
    memcpy(b->b + b->n, s, n);
    b->n += n;
    b->b[b->n] = 0;
}
static void puts_(buf *b, const char *s) { put(b, s, strlen(s)); }

#endif
