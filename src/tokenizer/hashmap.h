/*
 * hashmap.h — two small open-addressing hash tables for the tokenizer.
 *
 * hmap_u64 maps 64-bit keys to 64-bit values (BPE merges keyed by the id
 * pair, trie edges keyed by node and byte). hmap_str indexes strings that
 * live outside the table: a slot holds an id, and the key of id i is
 * blob[off[i] .. off[i] + len[i]), so the vocabulary is stored only once.
 * Both use linear probing and grow at half load; neither frees what it
 * points to. Lookups are read-only and safe from several threads.
 */
#ifndef DSC_TOKENIZER_HASHMAP_H
#define DSC_TOKENIZER_HASHMAP_H

#include <stddef.h>
#include <stdint.h>

#define HMAP_EMPTY UINT64_MAX /* the one key hmap_u64 cannot hold */

typedef struct {
    uint64_t key;
    uint64_t val;
} hmap_slot;

typedef struct {
    hmap_slot *slots; /* [mask + 1] */
    size_t mask;
    size_t n;
} hmap_u64;

/* Returns 0 when out of memory. */
int hmap_u64_init(hmap_u64 *m, size_t n_expected);
void hmap_u64_free(hmap_u64 *m);

/* Inserts or overwrites. Returns 0 when out of memory (map unchanged). */
int hmap_u64_put(hmap_u64 *m, uint64_t key, uint64_t val);

static inline uint64_t hmap_mix(uint64_t x) {
    /* murmur3's finalizer: spreads the id pair over the low bits we index by */
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

/* Returns 1 and sets *val if key is present. Inline: it is the BPE hot path. */
static inline int hmap_u64_get(const hmap_u64 *m, uint64_t key, uint64_t *val) {
    size_t i = (size_t)hmap_mix(key) & m->mask;
    for (;;) {
        const hmap_slot *s = &m->slots[i];
        if (s->key == key) {
            *val = s->val;
            return 1;
        }
        if (s->key == HMAP_EMPTY) return 0;
        i = (i + 1) & m->mask;
    }
}

typedef struct {
    uint32_t *ids;    /* [mask + 1] id + 1; 0 = free */
    uint32_t *hashes; /* [mask + 1] low bits of the key's hash, compared first */
    size_t mask;
    size_t n;
    const char *blob;    /* borrowed, must not move while the map is used */
    const uint32_t *off; /* borrowed, [n_ids] */
    const uint32_t *len; /* borrowed, [n_ids] */
} hmap_str;

uint64_t hmap_hash_bytes(const char *s, size_t n);

/* Returns 0 when out of memory. */
int hmap_str_init(hmap_str *m, size_t n_expected, const char *blob, const uint32_t *off, const uint32_t *len);
void hmap_str_free(hmap_str *m);

/* Adds id under its key. Returns -1 if added, the id already holding an
 * equal key (which stays), or -2 when out of memory. */
int64_t hmap_str_put(hmap_str *m, uint32_t id);

/* The id whose key equals s[0..n), or -1. */
int32_t hmap_str_get(const hmap_str *m, const char *s, size_t n);

#endif
