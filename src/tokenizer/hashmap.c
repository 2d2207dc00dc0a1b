/*
 * hashmap.c — open-addressing tables for the tokenizer (see hashmap.h).
 */
#include "tokenizer/hashmap.h"

#include <stdlib.h>
#include <string.h>

/* Smallest power of two >= 2 * n (half load), at least 16; 0 on overflow. */
static size_t hmap_capacity(size_t n) {
    size_t cap = 16;
    while (cap < n * 2) {
        if (cap > SIZE_MAX / 4 || n > SIZE_MAX / 2) return 0;
        cap *= 2;
    }
    return cap;
}

/* ---------------------------------------------------------------- u64 --- */

static int hmap_u64_alloc(hmap_u64 *m, size_t cap) {
    m->slots = malloc(cap * sizeof *m->slots);
    if (!m->slots) return 0;
    for (size_t i = 0; i < cap; i++) m->slots[i].key = HMAP_EMPTY;
    m->mask = cap - 1;
    m->n = 0;
    return 1;
}

int hmap_u64_init(hmap_u64 *m, size_t n_expected) {
    size_t cap = hmap_capacity(n_expected);
    memset(m, 0, sizeof *m);
    if (cap == 0 || cap > SIZE_MAX / sizeof(hmap_slot)) return 0;
    return hmap_u64_alloc(m, cap);
}

void hmap_u64_free(hmap_u64 *m) {
    free(m->slots);
    memset(m, 0, sizeof *m);
}

/* Inserts without growing; the caller keeps the load under one half. */
static void hmap_u64_place(hmap_u64 *m, uint64_t key, uint64_t val) {
    size_t i = (size_t)hmap_mix(key) & m->mask;
    while (m->slots[i].key != HMAP_EMPTY && m->slots[i].key != key) i = (i + 1) & m->mask;
    if (m->slots[i].key == HMAP_EMPTY) m->n++;
    m->slots[i].key = key;
    m->slots[i].val = val;
}

static int hmap_u64_grow(hmap_u64 *m) {
    hmap_u64 big;
    size_t cap = (m->mask + 1) * 2;
    if (cap > SIZE_MAX / sizeof(hmap_slot) || !hmap_u64_alloc(&big, cap)) return 0;
    for (size_t i = 0; i <= m->mask; i++)
        if (m->slots[i].key != HMAP_EMPTY) hmap_u64_place(&big, m->slots[i].key, m->slots[i].val);
    free(m->slots);
    *m = big;
    return 1;
}

int hmap_u64_put(hmap_u64 *m, uint64_t key, uint64_t val) {
    if (key == HMAP_EMPTY) return 0;
    if ((m->n + 1) * 2 > m->mask + 1 && !hmap_u64_grow(m)) return 0;
    hmap_u64_place(m, key, val);
    return 1;
}

/* ---------------------------------------------------------------- str --- */

uint64_t hmap_hash_bytes(const char *s, size_t n) {
    /* eight bytes per multiply: keys are short and hashed on every lookup */
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ (uint64_t)n;
    uint64_t w;
    while (n >= 8) {
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdULL;
        h ^= h >> 32;
        s += 8;
        n -= 8;
    }
    w = 0;
    memcpy(&w, s, n);
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ULL;
    return hmap_mix(h);
}

int hmap_str_init(hmap_str *m, size_t n_expected, const char *blob, const uint32_t *off, const uint32_t *len) {
    size_t cap = hmap_capacity(n_expected);
    memset(m, 0, sizeof *m);
    if (cap == 0 || cap > SIZE_MAX / sizeof(uint32_t)) return 0;
    m->ids = calloc(cap, sizeof *m->ids);
    m->hashes = calloc(cap, sizeof *m->hashes);
    if (!m->ids || !m->hashes) {
        hmap_str_free(m);
        return 0;
    }
    m->mask = cap - 1;
    m->blob = blob;
    m->off = off;
    m->len = len;
    return 1;
}

void hmap_str_free(hmap_str *m) {
    free(m->ids);
    free(m->hashes);
    memset(m, 0, sizeof *m);
}

static int hmap_str_same(const hmap_str *m, uint32_t id, const char *s, size_t n) {
    return m->len[id] == n && memcmp(m->blob + m->off[id], s, n) == 0;
}

/* Slot of key s (its hash is h): the one holding it, or the free one where
 * it would go. */
static size_t hmap_str_find(const hmap_str *m, uint64_t h, const char *s, size_t n) {
    size_t i = (size_t)h & m->mask;
    while (m->ids[i] != 0) {
        if (m->hashes[i] == (uint32_t)(h >> 32) && hmap_str_same(m, m->ids[i] - 1, s, n)) return i;
        i = (i + 1) & m->mask;
    }
    return i;
}

static int hmap_str_grow(hmap_str *m) {
    size_t cap = (m->mask + 1) * 2;
    uint32_t *ids, *hashes;
    if (cap > SIZE_MAX / sizeof(uint32_t)) return 0;
    ids = calloc(cap, sizeof *ids);
    hashes = calloc(cap, sizeof *hashes);
    if (!ids || !hashes) {
        free(ids);
        free(hashes);
        return 0;
    }
    for (size_t i = 0; i <= m->mask; i++) {
        if (m->ids[i] == 0) continue;
        uint32_t id = m->ids[i] - 1;
        size_t j = (size_t)hmap_hash_bytes(m->blob + m->off[id], m->len[id]) & (cap - 1);
        while (ids[j] != 0) j = (j + 1) & (cap - 1);
        ids[j] = m->ids[i];
        hashes[j] = m->hashes[i];
    }
    free(m->ids);
    free(m->hashes);
    m->ids = ids;
    m->hashes = hashes;
    m->mask = cap - 1;
    return 1;
}

int64_t hmap_str_put(hmap_str *m, uint32_t id) {
    const char *s = m->blob + m->off[id];
    size_t n = m->len[id];
    uint64_t h = hmap_hash_bytes(s, n);
    size_t i;
    if ((m->n + 1) * 2 > m->mask + 1 && !hmap_str_grow(m)) return -2;
    i = hmap_str_find(m, h, s, n);
    if (m->ids[i] != 0) return (int64_t)(m->ids[i] - 1);
    m->ids[i] = id + 1;
    m->hashes[i] = (uint32_t)(h >> 32);
    m->n++;
    return -1;
}

int32_t hmap_str_get(const hmap_str *m, const char *s, size_t n) {
    size_t i = hmap_str_find(m, hmap_hash_bytes(s, n), s, n);
    return m->ids[i] == 0 ? -1 : (int32_t)(m->ids[i] - 1);
}
