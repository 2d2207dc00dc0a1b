/*
 * bpe_train.c — learning a byte-level BPE tokenizer from text files and
 * writing it as a Hugging Face tokenizer.json that src/tokenizer loads.
 *
 * The procedure is that of Hugging Face `tokenizers` (BpeTrainer):
 *   1. pre-tokenize with DeepSeek-V3's Split sequence (digits in runs of at
 *      most 3, CJK runs, then the GPT-2-like word pattern) and count the
 *      distinct words in a hash map;
 *   2. start every word as its bytes; ids: the added tokens, then the 256
 *      bytes in the order of their ByteLevel characters;
 *   3. repeatedly merge the most frequent adjacent pair (ties: the smaller
 *      pair of ids), over word types weighted by their counts. Pair counts
 *      are updated only in the words that contain the merged pair (a list of
 *      words per pair), and a max-heap with lazy re-insertion finds the best
 *      pair, so each merge costs about the size of the words it touches.
 * A merged token whose text already exists keeps that id (as the reference
 * does); the vocabulary grows until vocab_size ids or no pair is left.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "core/status.h"
#include "tokenizer/tokenizer.h"
#include "train/train.h"

/* The pre-tokenizer of DeepSeek-V3's tokenizer.json (three Isolated Splits). */
static const char *const bpe_patterns[] = {
    "\\p{N}{1,3}",
    "[一-龥぀-ゟ゠-ヿ]+",
    ("[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|"
     "\\s*[\r\n]+|\\s+(?!\\S)|\\s+"),
};
#define BPE_N_STEPS 3

/* Pre-tokenizer step i; split_digits: every digit its own piece (LLaMA), so
 * no merge joins digits (for arithmetic). */
static const char *bpe_pattern(int i, int split_digits) { return i == 0 && split_digits ? "\\p{N}" : bpe_patterns[i]; }

/* Added tokens, ids 0.. in this order (DeepSeek-V3 / R1 spellings). */
static const char *const bpe_added[] = {
    "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>", "<think>", "</think>",
};
#define BPE_N_ADDED 6

#define BPE_MAX_VOCAB (1 << 22)

dsc_bpe_params dsc_bpe_default_params(void) { return (dsc_bpe_params){.vocab_size = 4096, .min_frequency = 2}; }

/* ------------------------------------------------------------------------ */
/* Growable arrays and a string -> index hash table                          */

static int grow(void *p, size_t *cap, size_t need, size_t sz) {
    if (need <= *cap) return 1;
    size_t c = *cap ? *cap : 16;
    while (c < need) {
        if (c > SIZE_MAX / 4 / sz) return 0;
        c *= 2;
    }
    void *q = realloc(*(void **)p, c * sz);
    if (!q) return 0;
    *(void **)p = q;
    *cap = c;
    return 1;
}

/* Strings kept in one blob; the table maps them to their index. */
typedef struct {
    char *blob;
    size_t blob_n, blob_cap;
    uint64_t *off;      /* [n] offset << 24 | length (length < 2^24)        */
    size_t n, cap;
    uint32_t *slots;    /* [mask + 1] index + 1; 0 = free                    */
    size_t mask;
} bpe_strtab;

static const char *strtab_str(const bpe_strtab *s, size_t i, size_t *len) {
    *len = (size_t)(s->off[i] & 0xffffff);
    return s->blob + (s->off[i] >> 24);
}

static int strtab_rehash(bpe_strtab *s, size_t n_slots) {
    uint32_t *sl = calloc(n_slots, sizeof *sl);
    if (!sl) return 0;
    free(s->slots);
    s->slots = sl;
    s->mask = n_slots - 1;
    for (size_t i = 0; i < s->n; i++) {
        size_t len;
        const char *str = strtab_str(s, i, &len);
        size_t h = (size_t)hmap_hash_bytes(str, len) & s->mask;
        while (s->slots[h]) h = (h + 1) & s->mask;
        s->slots[h] = (uint32_t)(i + 1);
    }
    return 1;
}

/* Index of str[0..len); added (and *added = 1) if absent. -1: out of memory
 * or too large. */
static int64_t strtab_get(bpe_strtab *s, const char *str, size_t len, int add, int *added) {
    if (added) *added = 0;
    if (!s->slots && !strtab_rehash(s, 1024)) return -1;
    size_t h = (size_t)hmap_hash_bytes(str, len) & s->mask;
    for (uint32_t v; (v = s->slots[h]); h = (h + 1) & s->mask) {
        size_t l2;
        const char *s2 = strtab_str(s, v - 1, &l2);
        if (l2 == len && memcmp(s2, str, len) == 0) return v - 1;
    }
    if (!add) return -2;
    if (len >= (1u << 24) || s->blob_n + len >= ((uint64_t)1 << 40) || s->n >= UINT32_MAX - 1) return -1;
    if (!grow(&s->blob, &s->blob_cap, s->blob_n + len + 1, 1) || !grow(&s->off, &s->cap, s->n + 1, sizeof *s->off))
        return -1;
    memcpy(s->blob + s->blob_n, str, len);
    s->off[s->n] = (uint64_t)s->blob_n << 24 | len;
    s->blob_n += len;
    s->slots[h] = (uint32_t)(s->n + 1);
    int64_t id = (int64_t)s->n++;
    if (added) *added = 1;
    if (2 * s->n > s->mask && !strtab_rehash(s, 2 * (s->mask + 1))) return -1;
    return id;
}

static void strtab_free(bpe_strtab *s) {
    free(s->blob);
    free(s->off);
    free(s->slots);
    memset(s, 0, sizeof *s);
}

/* ------------------------------------------------------------------------ */
/* Pre-tokenization and word counting                                        */

typedef struct {
    size_t start, end;
} bpe_span;

typedef struct {
    tok_split steps[BPE_N_STEPS];
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    bpe_span *lv[BPE_N_STEPS];
    size_t lv_cap[BPE_N_STEPS];
    bpe_strtab words;   /* distinct words (raw bytes)                        */
    int64_t *count;     /* [words.n] occurrences                             */
    size_t count_cap;
    int64_t n_words;
    const char *path;   /* file being read, for messages                     */
    int split_digits;
} bpe_counter;

static dsc_status count_word(bpe_counter *c, const char *s, size_t n) {
    int added;
    int64_t i = strtab_get(&c->words, s, n, 1, &added);
    if (i < 0) return dsc_fail(DSC_ERR_NOMEM, "%s: out of memory counting words", c->path);
    if (added) {
        if (!grow(&c->count, &c->count_cap, (size_t)i + 1, sizeof *c->count))
            return dsc_fail(DSC_ERR_NOMEM, "%s: out of memory counting words", c->path);
        c->count[i] = 0;
    }
    c->count[i]++;
    c->n_words++;
    return DSC_OK;
}

static int push_span(bpe_counter *c, int step, size_t *n, size_t start, size_t end) {
    if (!grow(&c->lv[step], &c->lv_cap[step], *n + 1, sizeof(bpe_span))) return 0;
    c->lv[step][(*n)++] = (bpe_span){start, end};
    return 1;
}

/* Split step `step` (Isolated: matches and the text between them are all
 * pieces) on s[0..n), then the next steps on each piece; matches are found
 * as encode.c's enc_find does (an empty match where the last one ended is
 * skipped by one character). */
static dsc_status pretok(bpe_counter *c, int step, const char *s, size_t n) {
    if (step == BPE_N_STEPS) return count_word(c, s, n);
    const tok_split *sp = &c->steps[step];
    size_t pos = 0, prev = 0, last_end = SIZE_MAX, k = 0;
    while (pos <= n) {
        int rc = sp->jit ? pcre2_jit_match(sp->re, (PCRE2_SPTR)s, n, pos, 0, c->md, c->mctx)
                         : pcre2_match(sp->re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, c->md, c->mctx);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
            rc = pcre2_match(sp->re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, c->md, c->mctx);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) return dsc_fail(DSC_ERR_ARG, "%s: pre-tokenizer step %d failed (PCRE2 error %d)", c->path, step, rc);
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
        size_t ms = ov[0], me = ov[1];
        if (ms == me && me == last_end) {
            pos = me + (me < n ? tok_utf8_len((unsigned char)s[me]) : 1);
            continue;
        }
        pos = last_end = me;
        if ((prev != ms && !push_span(c, step, &k, prev, ms)) || !push_span(c, step, &k, ms, me))
            return dsc_fail(DSC_ERR_NOMEM, "%s: out of memory pre-tokenizing", c->path);
        prev = me;
    }
    if (prev != n && !push_span(c, step, &k, prev, n)) return dsc_fail(DSC_ERR_NOMEM, "%s: out of memory", c->path);
    /* the spans of this level are consumed before a deeper level reuses its own array */
    for (size_t i = 0; i < k; i++) {
        bpe_span p = c->lv[step][i];
        if (p.end > p.start) {
            dsc_status st = pretok(c, step + 1, s + p.start, p.end - p.start);
            if (st) return st;
        }
    }
    return DSC_OK;
}

dsc_status dsc_text_read(const char *path, char **text, size_t *len) {
    dsc_status s = fio_read_file(path, (size_t)1 << 40, text, len);
    if (s) return s;
    size_t bad = tok_utf8_check(*text, *len);
    if (bad < *len) {
        free(*text);
        *text = NULL;
        return dsc_fail(DSC_ERR_FORMAT, "%s: invalid UTF-8 at byte offset %zu", path, bad);
    }
    return DSC_OK;
}

static void counter_free(bpe_counter *c) {
    for (int i = 0; i < BPE_N_STEPS; i++) {
        pcre2_code_free(c->steps[i].re);
        free(c->lv[i]);
    }
    pcre2_match_data_free(c->md);
    pcre2_match_context_free(c->mctx);
    strtab_free(&c->words);
    free(c->count);
}

static dsc_status count_files(bpe_counter *c, const char *const *files, int n_files, int64_t *n_bytes) {
    dsc_status s = DSC_OK;
    for (int i = 0; i < BPE_N_STEPS && !s; i++) s = tok_regex_compile(bpe_pattern(i, c->split_digits), 0, "bpe pre-tokenizer", &c->steps[i]);
    if (s) return s;
    c->md = pcre2_match_data_create(1, NULL);
    c->mctx = pcre2_match_context_create(NULL);
    if (!c->md || !c->mctx) return dsc_fail(DSC_ERR_NOMEM, "train-tokenizer: out of memory");
    pcre2_set_match_limit(c->mctx, UINT32_MAX);
    pcre2_set_depth_limit(c->mctx, UINT32_MAX);
    pcre2_set_heap_limit(c->mctx, 4u << 20);
    *n_bytes = 0;
    for (int f = 0; f < n_files && !s; f++) {
        char *text;
        size_t len;
        c->path = files[f];
        if ((s = dsc_text_read(files[f], &text, &len))) break;
        if (len) s = pretok(c, 0, text, len);
        *n_bytes += (int64_t)len;
        free(text);
    }
    return s;
}

/* ------------------------------------------------------------------------ */
/* Merging                                                                   */

typedef struct {
    int64_t count;
    int32_t a, b;
    int32_t pushed;     /* merge number that last queued it                  */
    int32_t *where;     /* words that contained the pair (may repeat or be stale) */
    size_t n_where, cap_where;
} bpe_pair;

typedef struct {
    int64_t count;
    int32_t a, b;
} bpe_heap_e;

typedef struct {
    int32_t a, b;
} bpe_merge;

typedef struct {
    /* words */
    int32_t n_types;
    int64_t *wcount;    /* [n_types]                                        */
    int32_t *sym;       /* all words' symbols, word w at sym + woff[w]       */
    int64_t *woff;      /* [n_types + 1]                                     */
    int32_t *wlen;      /* [n_types] current symbol count                   */
    int32_t *stamp;     /* [n_types] last merge that visited the word        */
    /* tokens: names in the ByteLevel alphabet */
    bpe_strtab tokens;
    /* pairs */
    hmap_u64 pair_ix;   /* a << 32 | b -> index into pairs                  */
    bpe_pair *pairs;
    size_t n_pairs, cap_pairs;
    bpe_heap_e *heap;
    size_t n_heap, cap_heap;
    /* merges in rank order */
    bpe_merge *merges;
    size_t n_merges, cap_merges;
    int32_t *touched;   /* pairs with c created by the current merge          */
    size_t n_touched, cap_touched;
    int split_digits;
} bpe_state;

static int heap_less(const bpe_heap_e *x, const bpe_heap_e *y) { /* x ranks below y */
    if (x->count != y->count) return x->count < y->count;
    if (x->a != y->a) return x->a > y->a;
    return x->b > y->b;
}

static int heap_push(bpe_state *st, int64_t count, int32_t a, int32_t b) {
    if (!grow(&st->heap, &st->cap_heap, st->n_heap + 1, sizeof *st->heap)) return 0;
    bpe_heap_e e = {count, a, b};
    size_t i = st->n_heap++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!heap_less(&st->heap[up], &e)) break;
        st->heap[i] = st->heap[up];
        i = up;
    }
    st->heap[i] = e;
    return 1;
}

static bpe_heap_e heap_pop(bpe_state *st) {
    bpe_heap_e top = st->heap[0], last = st->heap[--st->n_heap];
    size_t i = 0, n = st->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && heap_less(&st->heap[c], &st->heap[c + 1])) c++;
        if (!heap_less(&last, &st->heap[c])) break;
        st->heap[i] = st->heap[c];
        i = c;
    }
    if (n) st->heap[i] = last;
    return top;
}

/* The pair (a, b), created if absent; NULL when out of memory. */
static bpe_pair *pair_get(bpe_state *st, int32_t a, int32_t b, int create) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b, v;
    if (hmap_u64_get(&st->pair_ix, key, &v)) return &st->pairs[v];
    if (!create || !grow(&st->pairs, &st->cap_pairs, st->n_pairs + 1, sizeof *st->pairs) ||
        !hmap_u64_put(&st->pair_ix, key, st->n_pairs))
        return NULL;
    memset(&st->pairs[st->n_pairs], 0, sizeof(bpe_pair));
    st->pairs[st->n_pairs].a = a;
    st->pairs[st->n_pairs].b = b;
    st->pairs[st->n_pairs].pushed = -1;
    return &st->pairs[st->n_pairs++];
}

static int pair_note_word(bpe_pair *p, int32_t w) {
    if (p->n_where && p->where[p->n_where - 1] == w) return 1;
    if (!grow(&p->where, &p->cap_where, p->n_where + 1, sizeof(int32_t))) return 0;
    p->where[p->n_where++] = w;
    return 1;
}

/* Adds sign x count(w) to every adjacent pair of word w. When adding, the
 * pairs that contain c (the only ones a merge creates) note the word and are
 * listed in touched, to be queued with their new counts. */
static int word_pairs(bpe_state *st, int32_t w, int64_t sign, int32_t c) {
    const int32_t *s = st->sym + st->woff[w];
    for (int32_t i = 0; i + 1 < st->wlen[w]; i++) {
        bpe_pair *p = pair_get(st, s[i], s[i + 1], 1);
        if (!p) return 0;
        p->count += sign * st->wcount[w];
        if (sign > 0 && (s[i] == c || s[i + 1] == c)) {
            if (!pair_note_word(p, w)) return 0;
            if (!grow(&st->touched, &st->cap_touched, st->n_touched + 1, sizeof(int32_t))) return 0;
            st->touched[st->n_touched++] = (int32_t)(p - st->pairs);
        }
    }
    return 1;
}

/* Replaces (a, b) by c left to right in word w; returns whether it had one. */
static int word_merge(bpe_state *st, int32_t w, int32_t a, int32_t b, int32_t c) {
    int32_t *s = st->sym + st->woff[w], n = st->wlen[w], o = 0, hit = 0;
    for (int32_t i = 0; i < n; i++) {
        if (i + 1 < n && s[i] == a && s[i + 1] == b) {
            s[o++] = c;
            i++;
            hit = 1;
        } else {
            s[o++] = s[i];
        }
    }
    st->wlen[w] = o;
    return hit;
}

static int word_has(const bpe_state *st, int32_t w, int32_t a, int32_t b) {
    const int32_t *s = st->sym + st->woff[w];
    for (int32_t i = 0; i + 1 < st->wlen[w]; i++)
        if (s[i] == a && s[i + 1] == b) return 1;
    return 0;
}

/* Token id of the joined names of a and b (a new one if absent); -1 when
 * out of memory. */
static int64_t join_token(bpe_state *st, int32_t a, int32_t b) {
    size_t la, lb;
    const char *sa = strtab_str(&st->tokens, (size_t)a, &la), *sb = strtab_str(&st->tokens, (size_t)b, &lb);
    char *tmp = malloc(la + lb + 1);
    if (!tmp) return -1;
    memcpy(tmp, sa, la); /* copied before strtab_get may move the blob */
    memcpy(tmp + la, sb, lb);
    int64_t id = strtab_get(&st->tokens, tmp, la + lb, 1, NULL);
    free(tmp);
    return id;
}

/* One merge of (a, b) into id c over the words that hold the pair. */
static int apply_merge(bpe_state *st, int32_t a, int32_t b, int32_t c, int32_t merge_no) {
    bpe_pair *p = pair_get(st, a, b, 0);
    st->n_touched = 0;
    for (size_t k = 0; k < p->n_where; k++) {
        int32_t w = p->where[k];
        if (st->stamp[w] == merge_no || !word_has(st, w, a, b)) continue;
        st->stamp[w] = merge_no;
        if (!word_pairs(st, w, -1, -1)) return 0;
        word_merge(st, w, a, b, c);
        if (!word_pairs(st, w, +1, c)) return 0;
        p = pair_get(st, a, b, 0); /* pairs may have moved */
    }
    /* only pairs with c gained counts; the others are re-queued lazily */
    for (size_t k = 0; k < st->n_touched; k++) {
        bpe_pair *q = &st->pairs[st->touched[k]];
        if (q->pushed == merge_no || q->count <= 0) continue;
        q->pushed = merge_no;
        if (!heap_push(st, q->count, q->a, q->b)) return 0;
    }
    return 1;
}

static void state_free(bpe_state *st) {
    free(st->wcount);
    free(st->sym);
    free(st->woff);
    free(st->wlen);
    free(st->stamp);
    strtab_free(&st->tokens);
    hmap_u64_free(&st->pair_ix);
    for (size_t i = 0; i < st->n_pairs; i++) free(st->pairs[i].where);
    free(st->pairs);
    free(st->heap);
    free(st->merges);
    free(st->touched);
}

/* Name of byte b in the ByteLevel alphabet (UTF-8, 1 or 2 bytes). */
static size_t byte_name(uint8_t b, char out[2]) {
    uint32_t cp = tok_bytelevel_char(b);
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xc0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
}

/* Tokens (added, then bytes by character), words as byte ids, first pair counts. */
static dsc_status state_init(bpe_state *st, const bpe_counter *c) {
    for (int i = 0; i < BPE_N_ADDED; i++)
        if (strtab_get(&st->tokens, bpe_added[i], strlen(bpe_added[i]), 1, NULL) != i)
            return dsc_fail(DSC_ERR_NOMEM, "train-tokenizer: out of memory");
    uint8_t order[256];
    for (int b = 0; b < 256; b++) order[b] = (uint8_t)b;
    for (int i = 1; i < 256; i++) /* insertion sort by code point */
        for (int j = i; j > 0 && tok_bytelevel_char(order[j - 1]) > tok_bytelevel_char(order[j]); j--) {
            uint8_t t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    int32_t byte_id[256];
    for (int i = 0; i < 256; i++) {
        char nm[2];
        size_t n = byte_name(order[i], nm);
        int64_t id = strtab_get(&st->tokens, nm, n, 1, NULL);
        if (id < 0) return dsc_fail(DSC_ERR_NOMEM, "train-tokenizer: out of memory");
        byte_id[order[i]] = (int32_t)id;
    }
    const size_t W = c->words.n;
    if (W >= INT32_MAX) return dsc_fail(DSC_ERR_ARG, "train-tokenizer: %zu distinct words is too many", W);
    st->n_types = (int32_t)W;
    st->wcount = malloc(sizeof(int64_t) * (W + 1));
    st->woff = malloc(sizeof(int64_t) * (W + 1));
    st->wlen = malloc(sizeof(int32_t) * (W + 1));
    st->stamp = malloc(sizeof(int32_t) * (W + 1));
    st->sym = malloc(sizeof(int32_t) * (c->words.blob_n + 1));
    if (!st->wcount || !st->woff || !st->wlen || !st->stamp || !st->sym || !hmap_u64_init(&st->pair_ix, 4096))
        return dsc_fail(DSC_ERR_NOMEM, "train-tokenizer: out of memory for %zu words", W);
    int64_t o = 0;
    for (size_t w = 0; w < W; w++) {
        size_t len;
        const unsigned char *s = (const unsigned char *)strtab_str(&c->words, w, &len);
        st->woff[w] = o;
        st->wlen[w] = (int32_t)len;
        st->wcount[w] = c->count[w];
        st->stamp[w] = -1;
        for (size_t i = 0; i < len; i++) st->sym[o++] = byte_id[s[i]];
    }
    st->woff[W] = o;
    for (int32_t w = 0; w < st->n_types; w++) {
        const int32_t *s = st->sym + st->woff[w];
        for (int32_t i = 0; i + 1 < st->wlen[w]; i++) {
            bpe_pair *p = pair_get(st, s[i], s[i + 1], 1);
            if (!p || !pair_note_word(p, w)) return dsc_fail(DSC_ERR_NOMEM, "train-tokenizer: out of memory for pairs");
            p->count += st->wcount[w];
        }
    }
    for (size_t i = 0; i < st->n_pairs; i++)
        if (!heap_push(st, st->pairs[i].count, st->pairs[i].a, st->pairs[i].b))
            return dsc_fail(DSC_ERR_NOMEM, "train-tokenizer: out of memory for the pair heap");
    return DSC_OK;
}

static dsc_status learn_merges(bpe_state *st, const dsc_bpe_params *p) {
    while (st->tokens.n < (size_t)p->vocab_size && st->n_heap > 0) {
        bpe_heap_e e = heap_pop(st);
        bpe_pair *pr = pair_get(st, e.a, e.b, 0);
        if (pr->count != e.count) { /* stale: queue again with its count */
            if (pr->count > 0 && !heap_push(st, pr->count, e.a, e.b))
                return dsc_fail(DSC_ERR_NOMEM, "train-tokenizer: out of memory for the pair heap");
            continue;
        }
        if (e.count < p->min_frequency || e.count <= 0) break;
        int64_t c = join_token(st, e.a, e.b);
        if (c < 0 || !grow(&st->merges, &st->cap_merges, st->n_merges + 1, sizeof *st->merges))
            return dsc_fail(DSC_ERR_NOMEM, "train-tokenizer: out of memory for merges");
        st->merges[st->n_merges] = (bpe_merge){e.a, e.b};
        int32_t no = (int32_t)st->n_merges++;
        if (!apply_merge(st, e.a, e.b, (int32_t)c, no)) return dsc_fail(DSC_ERR_NOMEM, "train-tokenizer: out of memory");
    }
    return DSC_OK;
}

/* ------------------------------------------------------------------------ */
/* Output                                                                    */

static cJSON *json_split(const char *pattern) {
    cJSON *o = cJSON_CreateObject(), *pat = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "Split");
    cJSON_AddStringToObject(pat, "Regex", pattern);
    cJSON_AddItemToObject(o, "pattern", pat);
    cJSON_AddStringToObject(o, "behavior", "Isolated");
    cJSON_AddBoolToObject(o, "invert", 0);
    return o;
}

static cJSON *json_bytelevel(int add_prefix_space, int trim_offsets, int use_regex) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "ByteLevel");
    cJSON_AddBoolToObject(o, "add_prefix_space", add_prefix_space);
    cJSON_AddBoolToObject(o, "trim_offsets", trim_offsets);
    cJSON_AddBoolToObject(o, "use_regex", use_regex);
    return o;
}

static char *tokenizer_json(const bpe_state *st) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddNullToObject(root, "truncation");
    cJSON_AddNullToObject(root, "padding");
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    for (int i = 0; i < BPE_N_ADDED; i++) {
        cJSON *a = cJSON_CreateObject();
        cJSON_AddNumberToObject(a, "id", i);
        cJSON_AddStringToObject(a, "content", bpe_added[i]);
        cJSON_AddBoolToObject(a, "single_word", 0);
        cJSON_AddBoolToObject(a, "lstrip", 0);
        cJSON_AddBoolToObject(a, "rstrip", 0);
        cJSON_AddBoolToObject(a, "normalized", 0);
        cJSON_AddBoolToObject(a, "special", i < 4); /* <think> tags are plain added tokens in R1 */
        cJSON_AddItemToArray(added, a);
    }
    cJSON *norm = cJSON_AddObjectToObject(root, "normalizer");
    cJSON_AddStringToObject(norm, "type", "Sequence");
    cJSON_AddArrayToObject(norm, "normalizers");
    cJSON *pre = cJSON_AddObjectToObject(root, "pre_tokenizer");
    cJSON_AddStringToObject(pre, "type", "Sequence");
    cJSON *steps = cJSON_AddArrayToObject(pre, "pretokenizers");
    for (int i = 0; i < BPE_N_STEPS; i++) cJSON_AddItemToArray(steps, json_split(bpe_pattern(i, st->split_digits)));
    cJSON_AddItemToArray(steps, json_bytelevel(0, 1, 0));
    cJSON_AddItemToObject(root, "post_processor", json_bytelevel(1, 0, 1));
    cJSON_AddItemToObject(root, "decoder", json_bytelevel(1, 1, 1));
    cJSON *m = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(m, "type", "BPE");
    cJSON_AddNullToObject(m, "dropout");
    cJSON_AddNullToObject(m, "unk_token");
    cJSON_AddNullToObject(m, "continuing_subword_prefix");
    cJSON_AddNullToObject(m, "end_of_word_suffix");
    cJSON_AddBoolToObject(m, "fuse_unk", 0);
    cJSON_AddBoolToObject(m, "byte_fallback", 0);
    cJSON *vocab = cJSON_AddObjectToObject(m, "vocab");
    cJSON *merges = cJSON_AddArrayToObject(m, "merges");
    char *tmp = malloc(st->tokens.blob_n + 2);
    for (size_t i = 0; tmp && i < st->tokens.n; i++) {
        size_t n;
        const char *s = strtab_str(&st->tokens, i, &n);
        memcpy(tmp, s, n);
        tmp[n] = 0;
        cJSON_AddItemToObject(vocab, tmp, cJSON_CreateNumber((double)i));
    }
    for (size_t i = 0; tmp && i < st->n_merges; i++) {
        size_t na, nb;
        const char *a = strtab_str(&st->tokens, (size_t)st->merges[i].a, &na);
        const char *b = strtab_str(&st->tokens, (size_t)st->merges[i].b, &nb);
        char *mm = malloc(na + nb + 2);
        if (!mm) break;
        memcpy(mm, a, na);
        mm[na] = ' ';
        memcpy(mm + na + 1, b, nb);
        mm[na + nb + 1] = 0;
        cJSON_AddItemToArray(merges, cJSON_CreateString(mm));
        free(mm);
    }
    free(tmp);
    char *out = cJSON_Print(root);
    cJSON_Delete(root);
    return out;
}

/* R1's chat template (its markers; the answer opens with "<think>\n"), which
 * dsc_chat_detect reads to turn on the reasoning split. */
static const char bpe_chat_template[] =
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
    "{% set ns = namespace(system_prompt='') %}"
    "{%- for message in messages %}{%- if message['role'] == 'system' %}"
    "{% set ns.system_prompt = ns.system_prompt + message['content'] %}{%- endif %}{%- endfor %}"
    "{{ bos_token }}{{ ns.system_prompt }}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'user' %}{{ '<｜User｜>' + message['content'] }}{%- endif %}"
    "{%- if message['role'] == 'assistant' %}{% set content = message['content'] %}"
    "{% if '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %}"
    "{{ '<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>' }}{%- endif %}"
    "{%- endfor %}"
    "{% if add_generation_prompt %}{{ '<｜Assistant｜><think>\\n' }}{% endif %}";

static char *tokenizer_config_json(void) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddBoolToObject(root, "add_bos_token", 1);
    cJSON_AddBoolToObject(root, "add_eos_token", 0);
    cJSON_AddStringToObject(root, "bos_token", bpe_added[0]);
    cJSON_AddStringToObject(root, "eos_token", bpe_added[1]);
    cJSON_AddStringToObject(root, "pad_token", bpe_added[1]);
    cJSON_AddNullToObject(root, "unk_token");
    cJSON_AddBoolToObject(root, "clean_up_tokenization_spaces", 0);
    cJSON_AddBoolToObject(root, "legacy", 1);
    cJSON_AddStringToObject(root, "tokenizer_class", "LlamaTokenizerFast");
    cJSON_AddStringToObject(root, "chat_template", bpe_chat_template);
    char *out = cJSON_Print(root);
    cJSON_Delete(root);
    return out;
}

/* text and a newline to path, through path.tmp and a rename. */
static dsc_status write_text(const char *path, const char *text) {
    char tmp[FIO_PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    size_t n = strlen(text);
    char *buf = malloc(n + 1);
    if (!buf) return dsc_fail(DSC_ERR_NOMEM, "%s: out of memory", path);
    memcpy(buf, text, n);
    buf[n] = '\n';
    dsc_status s = fio_write_text(tmp, buf, n + 1);
    free(buf);
    if (!s && rename(tmp, path) != 0) s = dsc_fail(DSC_ERR_IO, "%s: cannot rename: %s", path, strerror(errno));
    if (s) remove(tmp);
    return s;
}

dsc_status dsc_bpe_train(const char *const *files, int n_files, const dsc_bpe_params *p, const char *tokenizer_path,
                         const char *config_path, dsc_bpe_stats *stats) {
    if (n_files < 1) return dsc_fail(DSC_ERR_ARG, "train-tokenizer: no text files given");
    if (p->vocab_size < BPE_N_ADDED + 256 || p->vocab_size > BPE_MAX_VOCAB)
        return dsc_fail(DSC_ERR_ARG, "train-tokenizer: vocabulary size %d is not in [%d, %d] (%d added tokens + 256 bytes + merges)",
                        p->vocab_size, BPE_N_ADDED + 256, BPE_MAX_VOCAB, BPE_N_ADDED);
    if (p->min_frequency < 1) return dsc_fail(DSC_ERR_ARG, "train-tokenizer: min_frequency %d < 1", p->min_frequency);
    bpe_counter c = {.split_digits = p->split_digits};
    bpe_state st = {.split_digits = p->split_digits};
    int64_t n_bytes = 0;
    dsc_status s = count_files(&c, files, n_files, &n_bytes);
    if (!s && c.n_words == 0)
        s = dsc_fail(DSC_ERR_ARG, "train-tokenizer: the --data files hold no text (%lld bytes)", (long long)n_bytes);
    if (!s) s = state_init(&st, &c);
    if (!s) s = learn_merges(&st, p);
    if (!s) {
        char *json = tokenizer_json(&st);
        s = json ? write_text(tokenizer_path, json) : dsc_fail(DSC_ERR_NOMEM, "train-tokenizer: out of memory for the JSON");
        cJSON_free(json);
    }
    if (!s && config_path) {
        char *json = tokenizer_config_json();
        s = json ? write_text(config_path, json) : dsc_fail(DSC_ERR_NOMEM, "train-tokenizer: out of memory for the JSON");
        cJSON_free(json);
    }
    if (!s && stats)
        *stats = (dsc_bpe_stats){.n_bytes = n_bytes, .n_words = c.n_words, .n_types = (int64_t)c.words.n,
                                 .n_merges = (int32_t)st.n_merges, .n_vocab = (int32_t)st.tokens.n};
    counter_free(&c);
    state_free(&st);
    return s;
}
