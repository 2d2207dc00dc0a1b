/*
 * tokenizer.h — internals of the byte-level BPE tokenizer shared by its
 * files: tokenizer.c (loading tokenizer.json), pretok.c (regex
 * pre-tokenizer), encode.c (added tokens, BPE, dsc_tokenize) and utf8.c
 * (UTF-8 checks and decoding).
 *
 * What is supported, as in Hugging Face `tokenizers` (the reference):
 *   model        BPE (vocab, merges as "a b" or [a, b], ignore_merges,
 *                unk_token/fuse_unk); dropout, byte_fallback and subword
 *                prefixes/suffixes are refused.
 *   normalizer   none, or a Sequence of none.
 *   pre_tokenizer  a Sequence of Split (Regex or String; any behavior;
 *                invert) ending in ByteLevel (add_prefix_space, use_regex),
 *                or ByteLevel alone.
 *   decoder      ByteLevel. post_processor is ignored (no BOS is added).
 *   added_tokens matched leftmost-longest, the normalized: false ones first;
 *                lstrip, rstrip and single_word are refused.
 */
#ifndef DSC_TOKENIZER_TOKENIZER_H
#define DSC_TOKENIZER_TOKENIZER_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <stdatomic.h>

#include "dsc.h"
#include "tokenizer/hashmap.h"

/* Loads a tokenizer.json held in memory (json need not be NUL-terminated).
 * Same contract as dsc_tokenizer_load; messages name the source "<memory>". */
dsc_status dsc_tokenizer_load_from_memory(const char *json, size_t len, dsc_tokenizer **out);

#define TOK_MAX_ID ((1 << 24) - 1) /* ids above are refused: arrays are indexed by id */
#define TOK_MAX_STEPS 16           /* pre-tokenizer steps, ByteLevel's regex included */
#define TOK_NO_TOKEN UINT32_MAX    /* name_len / byte_len of an id without a token */

/* Split behaviours, named as in tokenizer.json. */
enum tok_behavior { TOK_REMOVED, TOK_ISOLATED, TOK_MERGED_PREV, TOK_MERGED_NEXT, TOK_CONTIGUOUS };

typedef struct {
    pcre2_code *re; /* NULL: never matches (an empty String pattern) */
    int jit;        /* re is JIT-compiled */
    int behavior;   /* enum tok_behavior */
    int invert;
} tok_split;

/* Byte trie of added tokens, walked for leftmost-longest matches. */
typedef struct {
    int32_t *term;   /* [n_nodes] id of the token ending at the node, or -1 */
    size_t n_nodes;
    size_t cap;
    hmap_u64 edges;  /* node << 8 | byte -> child node */
    uint8_t first[256]; /* 1 if some token starts with the byte */
} tok_trie;

/* Recently encoded words and their ids, direct-mapped by hash. Shared by
 * the calls on one tokenizer: a call that finds it busy (another thread has
 * it) encodes without it, so it needs no lock to wait on. */
#define TOK_CACHE_BITS 15
#define TOK_CACHE_WORD 26 /* longest word kept, bytes */
#define TOK_CACHE_IDS 8   /* most ids kept for a word */

typedef struct {
    uint32_t hash; /* high half of the word's hash */
    uint8_t len;   /* 0: empty */
    uint8_t n_ids;
    char word[TOK_CACHE_WORD];
    int32_t ids[TOK_CACHE_IDS];
} tok_cache_slot; /* 64 bytes: one cache line */

typedef struct {
    atomic_flag busy;
    tok_cache_slot slot[1 << TOK_CACHE_BITS];
} tok_cache;

struct dsc_tokenizer {
    int32_t n_vocab; /* largest id + 1 */

    /* Per id: the token as written in tokenizer.json ("name", e.g. "Ġthe")
     * and the raw bytes the ByteLevel decoder turns it into (" the").
     * Length TOK_NO_TOKEN: no token has that id. */
    char *names;
    uint32_t *name_off, *name_len; /* [n_vocab] */
    char *bytes;
    uint32_t *byte_off, *byte_len; /* [n_vocab] */

    hmap_str vocab;      /* model.vocab name -> id */
    int32_t byte_id[256]; /* id of the one-byte token of each byte, -1 if none */
    int32_t unk_id;      /* model.unk_token, -1 if none */
    int fuse_unk;
    int ignore_merges;   /* a word found whole in the vocab is not merged */
    hmap_u64 merges;     /* left << 32 | right -> rank << 32 | merged id */
    int32_t *merge_id;   /* [n_merges] merged id by rank */

    tok_trie added[2]; /* [0] normalized: false (matched first), [1] the rest */
    int n_added;

    tok_split steps[TOK_MAX_STEPS]; /* Splits, then ByteLevel's regex if used */
    pcre2_match_context *mctx;      /* limits raised: a long run of spaces backtracks far */
    int n_steps;
    int bl_step;          /* index of the step where ByteLevel begins */
    int add_prefix_space; /* ByteLevel.add_prefix_space */

    tok_cache *cache; /* NULL if it could not be allocated */
};

/* ---- tokenizer.c */

/* Id of the longest added token that s[0..n) starts with (its length in
 * *len), or -1. */
int32_t tok_trie_longest(const tok_trie *tr, const char *s, size_t n, size_t *len);

/* ---- pretok.c */

/* Compiles an Oniguruma-style pattern (as tokenizer.json carries) with
 * PCRE2, translating the escapes whose meaning differs. literal: match the
 * text as is. On failure returns DSC_ERR_CONFIG naming field. */
dsc_status tok_regex_compile(const char *pat, int literal, const char *field, tok_split *out);

/* The GPT-2 pattern ByteLevel uses when use_regex is true. */
extern const char tok_bytelevel_pattern[];

/* ---- utf8.c */

/* Index of the first byte of the first invalid UTF-8 sequence, or n. */
size_t tok_utf8_check(const char *s, size_t n);

/* Length of the UTF-8 character starting at s[0] (1 for a stray byte). */
size_t tok_utf8_len(unsigned char c);

/* Decodes one UTF-8 character at s (n bytes available, assumed valid);
 * returns its length and sets *cp. */
size_t tok_utf8_decode(const char *s, size_t n, uint32_t *cp);

/* The byte the ByteLevel alphabet maps code point cp back to, or -1. */
int tok_bytelevel_byte(uint32_t cp);

/* Code point that stands for byte b in the ByteLevel alphabet. */
uint32_t tok_bytelevel_char(uint8_t b);

#endif
