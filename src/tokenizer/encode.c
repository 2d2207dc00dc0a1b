/*
 * encode.c — text to ids: added tokens, the pre-tokenizer's splits, then
 * byte-level BPE on each piece, following the reference (Hugging Face
 * `tokenizers`: AddedVocabulary, Split, ByteLevel, BPE::merge_word).
 *
 * The pipeline runs depth first: each Split step cuts its piece and hands
 * every part to the next step, the last hands words to BPE, so no list of
 * all pieces is built. A call owns its scratch (match data, spans, BPE
 * heap), so one tokenizer serves several threads at once.
 */
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "tokenizer/tokenizer.h"

typedef struct {
    size_t start, end;
    int match;
} enc_span;

typedef struct {
    enc_span *v;
    size_t n, cap;
} enc_spans;

/* One BPE symbol of a word: a token and its neighbours (-1: none). A
 * symbol merged into its left neighbour gets id -1. */
typedef struct {
    int32_t id, prev, next;
} bpe_sym;

/* A candidate merge of symbol pos (token left) with its right neighbour
 * (token right); the heap pops the lowest rank, then the leftmost pos, as
 * the reference does. */
typedef struct {
    uint32_t rank, pos;
    int32_t left, right;
} bpe_cand;

typedef struct {
    const dsc_tokenizer *tok;
    pcre2_match_data *md;
    int32_t *ids; /* output, cap entries; n counts past cap */
    size_t cap, n;
    enc_spans lv[TOK_MAX_STEPS]; /* the spans of each step's current piece */
    char *pre;                   /* a piece with ByteLevel's prefix space */
    size_t pre_cap;
    bpe_sym *sym;
    bpe_cand *heap;
    size_t sym_cap, heap_cap;
    char *bl;        /* a word in the ByteLevel alphabet (ignore_merges) */
    size_t bl_cap;
    tok_cache *cache; /* the tokenizer's, if this call holds it, else NULL */
} tok_enc;

static void enc_emit(tok_enc *e, int32_t id) {
    if (e->n < e->cap) e->ids[e->n] = id;
    e->n++;
}

/* Grows *p to hold n elements of size sz; 0 when out of memory. */
static int enc_reserve(void *p, size_t *cap, size_t n, size_t sz) {
    size_t c = *cap ? *cap : 64;
    void *q;
    if (n <= *cap) return 1;
    while (c < n) {
        if (c > SIZE_MAX / 2) return 0;
        c *= 2;
    }
    if (c > SIZE_MAX / sz || !(q = realloc(*(void **)p, c * sz))) return 0;
    *(void **)p = q;
    *cap = c;
    return 1;
}

/* --------------------------------------------------------------- BPE --- */

static void heap_push(bpe_cand *h, size_t *n, bpe_cand c) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (h[up].rank < c.rank || (h[up].rank == c.rank && h[up].pos < c.pos)) break;
        h[i] = h[up];
        i = up;
    }
    h[i] = c;
}

static bpe_cand heap_pop(bpe_cand *h, size_t *n) {
    bpe_cand top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && (h[c + 1].rank < h[c].rank || (h[c + 1].rank == h[c].rank && h[c + 1].pos < h[c].pos))) c++;
        if (last.rank < h[c].rank || (last.rank == h[c].rank && last.pos < h[c].pos)) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = last;
    return top;
}

/* Pushes the merge of symbol pos with its right neighbour, if one exists. */
static void bpe_offer(const tok_enc *e, bpe_cand *h, size_t *nh, int32_t pos) {
    const bpe_sym *sym = e->sym;
    uint64_t v;
    if (pos < 0 || sym[pos].next < 0) return;
    int32_t left = sym[pos].id, right = sym[sym[pos].next].id;
    if (!hmap_u64_get(&e->tok->merges, (uint64_t)left << 32 | (uint32_t)right, &v)) return;
    heap_push(h, nh, (bpe_cand){(uint32_t)(v >> 32), (uint32_t)pos, left, right});
}

/* The word's starting symbols, one per byte. A byte without a token becomes
 * the unknown token (runs of them fused if fuse_unk) or, without one, is
 * dropped, as in the reference. Returns the number of symbols. */
static int32_t bpe_start(tok_enc *e, const unsigned char *s, size_t n) {
    const dsc_tokenizer *t = e->tok;
    int32_t m = 0, unk_run = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_id[s[i]];
        if (id < 0) {
            if (t->unk_id < 0 || (unk_run && t->fuse_unk)) continue;
            id = t->unk_id;
            unk_run = 1;
        } else {
            unk_run = 0;
        }
        e->sym[m] = (bpe_sym){id, m - 1, m + 1};
        m++;
    }
    if (m > 0) e->sym[m - 1].next = -1;
    return m;
}

/* Merges until no pair of neighbours has a merge, lowest rank first. */
static void bpe_merge(tok_enc *e, int32_t m) {
    bpe_sym *sym = e->sym;
    bpe_cand *h = e->heap;
    size_t nh = 0;
    for (int32_t i = 0; i + 1 < m; i++) bpe_offer(e, h, &nh, i);
    while (nh > 0) {
        bpe_cand c = heap_pop(h, &nh);
        int32_t p = (int32_t)c.pos, q = sym[p].next;
        /* Stale if either side merged since the push. The reference looks
         * the pair up again and compares merged ids; as a symbol's text
         * only grows, the same ids on both sides is the same test. */
        if (q < 0 || sym[p].id != c.left || sym[q].id != c.right) continue;
        sym[p].id = e->tok->merge_id[c.rank];
        sym[p].next = sym[q].next;
        if (sym[q].next >= 0) sym[sym[q].next].prev = p;
        sym[q].id = -1;
        bpe_offer(e, h, &nh, sym[p].prev);
        bpe_offer(e, h, &nh, p);
    }
}

/* With ignore_merges, a word that is a token as a whole is that token. */
static int32_t bpe_whole(tok_enc *e, const unsigned char *s, size_t n) {
    size_t k = 0;
    if (!enc_reserve(&e->bl, &e->bl_cap, 2 * n, 1)) return -2;
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = tok_bytelevel_char(s[i]);
        if (cp < 0x80) {
            e->bl[k++] = (char)cp;
        } else {
            e->bl[k++] = (char)(0xc0 | (cp >> 6));
            e->bl[k++] = (char)(0x80 | (cp & 0x3f));
        }
    }
    return hmap_str_get(&e->tok->vocab, e->bl, k);
}

/* The cache slot for word s[0..n), and whether it holds the word. */
static tok_cache_slot *cache_slot(tok_cache *c, const char *s, size_t n, uint32_t *tag, int *hit) {
    uint64_t h = hmap_hash_bytes(s, n);
    tok_cache_slot *slot = &c->slot[h & ((1u << TOK_CACHE_BITS) - 1)];
    *tag = (uint32_t)(h >> 32);
    *hit = slot->len == n && slot->hash == *tag && memcmp(slot->word, s, n) == 0;
    return slot;
}

/* Emits the merged word; keeps it in slot if it fits. */
static void bpe_emit(tok_enc *e, int32_t m, tok_cache_slot *slot, uint32_t tag, const char *s, size_t n) {
    size_t k = 0;
    for (int32_t i = m > 0 ? 0 : -1; i >= 0; i = e->sym[i].next, k++) {
        enc_emit(e, e->sym[i].id);
        if (slot && k < TOK_CACHE_IDS) slot->ids[k] = e->sym[i].id;
    }
    if (!slot) return;
    slot->len = 0;
    if (k > TOK_CACHE_IDS) return;
    slot->hash = tag;
    slot->n_ids = (uint8_t)k;
    memcpy(slot->word, s, n);
    slot->len = (uint8_t)n;
}

static dsc_status bpe_word(tok_enc *e, const char *text, size_t n) {
    const unsigned char *s = (const unsigned char *)text;
    tok_cache_slot *slot = NULL;
    uint32_t tag = 0;
    int32_t m, id;
    int hit;
    if (n == 1 && e->tok->byte_id[s[0]] >= 0) {
        enc_emit(e, e->tok->byte_id[s[0]]);
        return DSC_OK;
    }
    if (n > INT32_MAX / 3) return dsc_fail(DSC_ERR_ARG, "text: a word of %zu bytes is too long", n);
    if (e->cache && n <= TOK_CACHE_WORD) {
        slot = cache_slot(e->cache, text, n, &tag, &hit);
        if (hit) {
            for (int i = 0; i < slot->n_ids; i++) enc_emit(e, slot->ids[i]);
            return DSC_OK;
        }
    }
    if (e->tok->ignore_merges) {
        if ((id = bpe_whole(e, s, n)) == -2) return dsc_fail(DSC_ERR_NOMEM, "tokenize: no memory for a word");
        if (id >= 0) {
            enc_emit(e, id);
            return DSC_OK;
        }
    }
    /* each merge pushes at most two candidates: 3n bound the heap */
    if (!enc_reserve(&e->sym, &e->sym_cap, n, sizeof *e->sym) || !enc_reserve(&e->heap, &e->heap_cap, 3 * n, sizeof *e->heap))
        return dsc_fail(DSC_ERR_NOMEM, "tokenize: no memory for a word of %zu bytes", n);
    m = bpe_start(e, s, n);
    bpe_merge(e, m);
    bpe_emit(e, m, slot, tag, text, n);
    return DSC_OK;
}

/* ------------------------------------------------------- pre-tokenizer --- */

static int enc_push(enc_spans *sp, size_t start, size_t end, int match) {
    if (!enc_reserve(&sp->v, &sp->cap, sp->n + 1, sizeof *sp->v)) return 0;
    sp->v[sp->n++] = (enc_span){start, end, match};
    return 1;
}

static int enc_match(tok_enc *e, const tok_split *sp, const char *s, size_t n, size_t pos) {
    pcre2_match_context *mc = e->tok->mctx;
    int rc;
    if (sp->jit)
        rc = pcre2_jit_match(sp->re, (PCRE2_SPTR)s, n, pos, 0, e->md, mc);
    else
        rc = pcre2_match(sp->re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, e->md, mc);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) /* the interpreter keeps its stack on the heap */
        rc = pcre2_match(sp->re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, e->md, mc);
    return rc;
}

/* Cuts s[0..n) into matches and the text between them, finding matches as
 * Oniguruma's find_iter does: an empty match right where the previous one
 * ended is skipped by one character. */
static dsc_status enc_find(tok_enc *e, int step, const char *s, size_t n) {
    const tok_split *sp = &e->tok->steps[step];
    enc_spans *out = &e->lv[step];
    size_t pos = 0, prev = 0, last_end = SIZE_MAX;
    out->n = 0;
    while (sp->re && pos <= n) {
        int rc = enc_match(e, sp, s, n, pos);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[120];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return dsc_fail(DSC_ERR_ARG, "text: pre-tokenizer step %d failed at byte %zu: %s", step, pos,
                            (const char *)msg);
        }
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
        size_t ms = ov[0], me = ov[1];
        if (ms == me && me == last_end) {
            pos = me + (me < n ? tok_utf8_len((unsigned char)s[me]) : 1);
            continue;
        }
        if (ms < prev || me < ms) /* only \K can do this */
            return dsc_fail(DSC_ERR_CONFIG, "pre-tokenizer step %d: a match ends before it starts", step);
        pos = last_end = me;
        if ((prev != ms && !enc_push(out, prev, ms, 0)) || !enc_push(out, ms, me, 1))
            return dsc_fail(DSC_ERR_NOMEM, "tokenize: no memory for pre-tokens");
        prev = me;
    }
    if (prev != n && !enc_push(out, prev, n, 0)) return dsc_fail(DSC_ERR_NOMEM, "tokenize: no memory for pre-tokens");
    if (sp->invert)
        for (size_t i = 0; i < out->n; i++) out->v[i].match = !out->v[i].match;
    return DSC_OK;
}

/* Applies a Split behaviour to the spans in place; the result is
 * v[*first .. n). As the reference's SplitDelimiterBehavior. */
static void enc_behave(enc_spans *sp, int behavior, size_t *first) {
    enc_span *v = sp->v;
    size_t w = 0;
    int prev = 0;
    *first = 0;
    switch (behavior) {
    case TOK_ISOLATED: return;
    case TOK_REMOVED:
        for (size_t i = 0; i < sp->n; i++)
            if (!v[i].match) v[w++] = v[i];
        break;
    case TOK_MERGED_PREV: /* a match joins the piece before it */
        for (size_t i = 0; i < sp->n; prev = v[i].match, i++)
            if (v[i].match && !prev && w > 0) v[w - 1].end = v[i].end;
            else v[w++] = v[i];
        break;
    case TOK_CONTIGUOUS: /* neighbours of one kind join */
        for (size_t i = 0; i < sp->n; prev = v[i].match, i++)
            if (v[i].match == prev && w > 0) v[w - 1].end = v[i].end;
            else v[w++] = v[i];
        break;
    case TOK_MERGED_NEXT: /* a match joins the piece after it: walk backwards */
        w = sp->n;
        for (size_t i = sp->n; i-- > 0; prev = sp->v[i].match) {
            enc_span cur = v[i];
            if (cur.match && !prev && w < sp->n) v[w].start = cur.start;
            else v[--w] = cur;
        }
        *first = w;
        return;
    }
    sp->n = w;
}

static dsc_status enc_step(tok_enc *e, int step, const char *s, size_t n);

/* ByteLevel's add_prefix_space: a piece not starting with a space gets one. */
static dsc_status enc_prefix(tok_enc *e, int step, const char *s, size_t n) {
    if (n == SIZE_MAX || !enc_reserve(&e->pre, &e->pre_cap, n + 1, 1))
        return dsc_fail(DSC_ERR_NOMEM, "tokenize: no memory for a piece of %zu bytes", n);
    e->pre[0] = ' ';
    memcpy(e->pre + 1, s, n);
    return enc_step(e, step, e->pre, n + 1);
}

/* Runs pre-tokenizer steps step.. on the piece s[0..n), n >= 1. */
static dsc_status enc_step(tok_enc *e, int step, const char *s, size_t n) {
    const dsc_tokenizer *t = e->tok;
    size_t first;
    dsc_status st;
    if (step == t->bl_step && t->add_prefix_space && s[0] != ' ') return enc_prefix(e, step, s, n);
    if (step == t->n_steps) return bpe_word(e, s, n);
    if ((st = enc_find(e, step, s, n)) != DSC_OK) return st;
    enc_behave(&e->lv[step], t->steps[step].behavior, &first);
    for (size_t i = first; i < e->lv[step].n; i++) {
        enc_span sp = e->lv[step].v[i];
        if (sp.end > sp.start && (st = enc_step(e, step + 1, s + sp.start, sp.end - sp.start)) != DSC_OK) return st;
    }
    return DSC_OK;
}

/* -------------------------------------------------------- added tokens --- */

/* Pass 0 cuts out the normalized: false added tokens, pass 1 the others
 * from what is left (the reference's two tries), pass 2 is the pipeline. */
static dsc_status enc_added(tok_enc *e, int pass, const char *s, size_t n) {
    const tok_trie *tr = &e->tok->added[pass < 2 ? pass : 0];
    size_t i = 0, seg = 0, len = 0;
    dsc_status st;
    if (n == 0) return DSC_OK;
    if (pass == 2) return enc_step(e, 0, s, n);
    if (tr->n_nodes <= 1) return enc_added(e, pass + 1, s, n);
    while (i < n) {
        int32_t id;
        if (!tr->first[(unsigned char)s[i]] || (id = tok_trie_longest(tr, s + i, n - i, &len)) < 0) {
            i++;
            continue;
        }
        if ((st = enc_added(e, pass + 1, s + seg, i - seg)) != DSC_OK) return st;
        enc_emit(e, id);
        seg = i += len;
    }
    return enc_added(e, pass + 1, s + seg, n - seg);
}

/* ---------------------------------------------------------------- API --- */

static void enc_free(tok_enc *e) {
    pcre2_match_data_free(e->md);
    for (int i = 0; i < TOK_MAX_STEPS; i++) free(e->lv[i].v);
    free(e->pre);
    free(e->sym);
    free(e->heap);
    free(e->bl);
}

dsc_status dsc_tokenize(const dsc_tokenizer *tok, const char *text, size_t len, int parse_special, int32_t *ids,
                        size_t cap, size_t *n_ids) {
    tok_enc e;
    size_t bad;
    dsc_status s;
    if (!tok || !n_ids || (!text && len > 0) || (!ids && cap > 0)) return dsc_fail(DSC_ERR_ARG, "dsc_tokenize: NULL argument");
    *n_ids = 0;
    if ((bad = tok_utf8_check(text, len)) < len)
        return dsc_fail(DSC_ERR_ARG, "text: invalid UTF-8 at byte offset %zu", bad);
    memset(&e, 0, sizeof e);
    e.tok = tok;
    e.ids = ids;
    e.cap = cap;
    if (!(e.md = pcre2_match_data_create(1, NULL))) return dsc_fail(DSC_ERR_NOMEM, "tokenize: no memory for match data");
    if (tok->cache && !atomic_flag_test_and_set_explicit(&tok->cache->busy, memory_order_acquire)) e.cache = tok->cache;
    s = parse_special ? enc_added(&e, 0, text, len) : len > 0 ? enc_step(&e, 0, text, len) : DSC_OK;
    if (e.cache) atomic_flag_clear_explicit(&tok->cache->busy, memory_order_release);
    enc_free(&e);
    *n_ids = e.n;
    if (s != DSC_OK) return s;
    if (e.n > cap) return dsc_fail(DSC_ERR_ARG, "tokenize: %zu ids do not fit a buffer of %zu", e.n, cap);
    return DSC_OK;
}
