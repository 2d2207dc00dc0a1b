/*
 * tokenizer.c — loading a Hugging Face tokenizer.json into a dsc_tokenizer,
 * and the small lookups (n_vocab, find). What is supported is listed in
 * tokenizer.h; everything else is refused with DSC_ERR_CONFIG naming the
 * field, and malformed input with DSC_ERR_FORMAT, before any text is seen.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "core/status.h"
#include "tokenizer/tokenizer.h"

/* What loading needs at hand: the source name for messages and the
 * tokenizer being filled. */
typedef struct {
    const char *src;
    dsc_tokenizer *t;
    size_t names_cap, bytes_cap; /* capacity of t->names, t->bytes */
    size_t names_n, bytes_n;     /* bytes used */
} tok_load;

/* ------------------------------------------------------------ helpers --- */

/* s[0..n) quoted for a one-line message: control bytes escaped, cut at 48. */
static const char *ld_quote(const char *s, size_t n, char out[208]) {
    char *o = out;
    *o++ = '\'';
    for (size_t i = 0; i < n && i < 48; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f || c == '\'' || c == '\\') o += sprintf(o, "\\x%02x", c);
        else *o++ = (char)c;
    }
    if (n > 48) o += sprintf(o, "...");
    *o++ = '\'';
    *o = '\0';
    return out;
}

static const cJSON *ld_get(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNull(v) ? NULL : v;
}

/* A boolean field: absent or null gives def. */
static dsc_status ld_bool(const tok_load *L, const cJSON *obj, const char *key, const char *field, int def,
                          int *out) {
    const cJSON *v = ld_get(obj, key);
    *out = def;
    if (!v) return DSC_OK;
    if (!cJSON_IsBool(v)) return dsc_fail(DSC_ERR_FORMAT, "%s: %s.%s: expected true or false", L->src, field, key);
    *out = cJSON_IsTrue(v);
    return DSC_OK;
}

/* A string field, NULL if absent or null. */
static dsc_status ld_str(const tok_load *L, const cJSON *obj, const char *key, const char *field, const char **out) {
    const cJSON *v = ld_get(obj, key);
    *out = NULL;
    if (!v) return DSC_OK;
    if (!cJSON_IsString(v) || !v->valuestring)
        return dsc_fail(DSC_ERR_FORMAT, "%s: %s.%s: expected a string", L->src, field, key);
    *out = v->valuestring;
    return DSC_OK;
}

static dsc_status ld_id(const tok_load *L, const cJSON *v, const char *field, int32_t *id) {
    double d = cJSON_IsNumber(v) ? v->valuedouble : -1.0;
    if (!(d >= 0.0 && d <= TOK_MAX_ID) || d != (double)(int32_t)d)
        return dsc_fail(DSC_ERR_FORMAT, "%s: %s: id must be an integer in [0, %d]", L->src, field, TOK_MAX_ID);
    *id = (int32_t)d;
    return DSC_OK;
}

/* Appends s[0..n) to a blob; *off gets where. 0 when out of memory or past
 * the 4 GiB that 32-bit offsets reach. */
static int ld_append(char **blob, size_t *used, size_t *cap, const char *s, size_t n, uint32_t *off) {
    if (n > UINT32_MAX - 1 - *used) return 0;
    if (*used + n > *cap) {
        size_t c = *cap ? *cap : 4096;
        while (c < *used + n) c = c > SIZE_MAX / 2 ? SIZE_MAX : c * 2;
        char *p = realloc(*blob, c);
        if (!p) return 0;
        *blob = p;
        *cap = c;
    }
    if (n > 0) memcpy(*blob + *used, s, n);
    *off = (uint32_t)*used;
    *used += n;
    return 1;
}

/* Raw bytes of token text s as the ByteLevel decoder gives them: each
 * character maps back to its byte; a text with a character outside the
 * alphabet (an added token like "<｜User｜>") is kept as it is. */
static dsc_status ld_set_bytes(tok_load *L, int32_t id, const char *s, size_t n) {
    dsc_tokenizer *t = L->t;
    size_t k = 0, i = 0;
    char tmp[256];
    char *raw = n <= sizeof tmp ? tmp : malloc(n);
    if (!raw) return dsc_fail(DSC_ERR_NOMEM, "%s: no memory for token %d", L->src, id);
    while (i < n) {
        uint32_t cp;
        int b;
        i += tok_utf8_decode(s + i, n - i, &cp);
        if ((b = tok_bytelevel_byte(cp)) < 0) break;
        raw[k++] = (char)b;
    }
    if (i < n || n == 0) { /* not all in the alphabet: as is */
        memcpy(raw, s, n);
        k = n;
    }
    int ok = ld_append(&t->bytes, &L->bytes_n, &L->bytes_cap, raw, k, &t->byte_off[id]);
    if (raw != tmp) free(raw);
    if (!ok) return dsc_fail(DSC_ERR_NOMEM, "%s: no memory for the bytes of token %d", L->src, id);
    t->byte_len[id] = (uint32_t)k;
    return DSC_OK;
}

/* ---------------------------------------------------------- trie --- */

static int trie_init(tok_trie *tr) {
    memset(tr, 0, sizeof *tr);
    tr->cap = 64;
    tr->term = malloc(tr->cap * sizeof *tr->term);
    if (!tr->term || !hmap_u64_init(&tr->edges, 64)) return 0;
    tr->term[0] = -1;
    tr->n_nodes = 1;
    return 1;
}

static void trie_free(tok_trie *tr) {
    free(tr->term);
    hmap_u64_free(&tr->edges);
    memset(tr, 0, sizeof *tr);
}

/* Child of node for byte b, created if absent; -1 when out of memory. */
static int64_t trie_child(tok_trie *tr, size_t node, unsigned char b) {
    uint64_t key = (uint64_t)node << 8 | b, child;
    if (hmap_u64_get(&tr->edges, key, &child)) return (int64_t)child;
    if (tr->n_nodes == tr->cap) {
        int32_t *p = realloc(tr->term, tr->cap * 2 * sizeof *p);
        if (!p) return -1;
        tr->term = p;
        tr->cap *= 2;
    }
    if (!hmap_u64_put(&tr->edges, key, tr->n_nodes)) return -1;
    tr->term[tr->n_nodes] = -1;
    return (int64_t)tr->n_nodes++;
}

/* Adds token s[0..n) (n >= 1) as id. Returns -1 if added, the id already
 * there for the same text, or -2 when out of memory. */
static int64_t trie_add(tok_trie *tr, const char *s, size_t n, int32_t id) {
    int64_t node = 0;
    for (size_t i = 0; i < n; i++)
        if ((node = trie_child(tr, (size_t)node, (unsigned char)s[i])) < 0) return -2;
    if (tr->term[node] >= 0) return tr->term[node];
    tr->term[node] = id;
    tr->first[(unsigned char)s[0]] = 1;
    return -1;
}

/* Id of the token whose text is exactly s[0..n), or -1. */
static int32_t trie_exact(const tok_trie *tr, const char *s, size_t n) {
    uint64_t node = 0;
    if (!tr->term) return -1;
    for (size_t i = 0; i < n; i++)
        if (!hmap_u64_get(&tr->edges, node << 8 | (unsigned char)s[i], &node)) return -1;
    return tr->term[node];
}

int32_t tok_trie_longest(const tok_trie *tr, const char *s, size_t n, size_t *len) {
    uint64_t node = 0;
    int32_t best = -1;
    for (size_t i = 0; i < n; i++) {
        if (!hmap_u64_get(&tr->edges, node << 8 | (unsigned char)s[i], &node)) break;
        if (tr->term[node] >= 0) {
            best = tr->term[node];
            *len = i + 1;
        }
    }
    return best;
}

/* ------------------------------------------------------------ vocab --- */

/* Largest id in model.vocab and added_tokens, checking each. */
static dsc_status ld_max_id(const tok_load *L, const cJSON *vocab, const cJSON *added, int32_t *max_id) {
    const cJSON *e;
    char field[240], q[208];
    dsc_status s;
    int32_t id;
    size_t i = 0;
    *max_id = -1;
    cJSON_ArrayForEach(e, vocab) {
        const char *name = e->string ? e->string : "";
        snprintf(field, sizeof field, "model.vocab[%s]", ld_quote(name, strlen(name), q));
        if ((s = ld_id(L, e, field, &id)) != DSC_OK) return s;
        if (id > *max_id) *max_id = id;
    }
    cJSON_ArrayForEach(e, added) {
        snprintf(field, sizeof field, "added_tokens[%zu].id", i);
        if (!cJSON_IsObject(e)) return dsc_fail(DSC_ERR_FORMAT, "%s: added_tokens[%zu]: expected an object", L->src, i);
        if ((s = ld_id(L, cJSON_GetObjectItemCaseSensitive(e, "id"), field, &id)) != DSC_OK) return s;
        if (id > *max_id) *max_id = id;
        i++;
    }
    if (*max_id < 0) return dsc_fail(DSC_ERR_FORMAT, "%s: model.vocab: empty", L->src);
    return DSC_OK;
}

static dsc_status ld_alloc(tok_load *L, int32_t n_vocab) {
    dsc_tokenizer *t = L->t;
    size_t n = (size_t)n_vocab;
    t->n_vocab = n_vocab;
    t->name_off = calloc(n, sizeof *t->name_off);
    t->name_len = malloc(n * sizeof *t->name_len);
    t->byte_off = calloc(n, sizeof *t->byte_off);
    t->byte_len = malloc(n * sizeof *t->byte_len);
    if (!t->name_off || !t->name_len || !t->byte_off || !t->byte_len)
        return dsc_fail(DSC_ERR_NOMEM, "%s: no memory for %d token ids", L->src, n_vocab);
    for (size_t i = 0; i < n; i++) t->name_len[i] = t->byte_len[i] = TOK_NO_TOKEN;
    return DSC_OK;
}

/* model.vocab: names by id, then the name -> id map. */
static dsc_status ld_vocab(tok_load *L, const cJSON *vocab) {
    dsc_tokenizer *t = L->t;
    const cJSON *e;
    char q[208], q2[208];
    size_t n = 0;
    cJSON_ArrayForEach(e, vocab) {
        int32_t id = (int32_t)e->valuedouble; /* checked by ld_max_id */
        const char *name = e->string ? e->string : "";
        if (t->name_len[id] != TOK_NO_TOKEN)
            return dsc_fail(DSC_ERR_FORMAT, "%s: model.vocab: id %d given to both %s and %s", L->src, id,
                            ld_quote(t->names + t->name_off[id], t->name_len[id], q), ld_quote(name, strlen(name), q2));
        if (!ld_append(&t->names, &L->names_n, &L->names_cap, name, strlen(name), &t->name_off[id]))
            return dsc_fail(DSC_ERR_NOMEM, "%s: no memory for model.vocab", L->src);
        t->name_len[id] = (uint32_t)strlen(name);
        n++;
    }
    if (!hmap_str_init(&t->vocab, n, t->names, t->name_off, t->name_len))
        return dsc_fail(DSC_ERR_NOMEM, "%s: no memory for model.vocab", L->src);
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (t->name_len[id] == TOK_NO_TOKEN) continue;
        int64_t prev = hmap_str_put(&t->vocab, (uint32_t)id);
        if (prev == -2) return dsc_fail(DSC_ERR_NOMEM, "%s: no memory for model.vocab", L->src);
        if (prev >= 0)
            return dsc_fail(DSC_ERR_FORMAT, "%s: model.vocab: token %s given twice (ids %lld and %d)", L->src,
                            ld_quote(t->names + t->name_off[id], t->name_len[id], q), (long long)prev, id);
    }
    return DSC_OK;
}

/* The single-byte tokens every byte-level word starts from. */
static void ld_byte_ids(dsc_tokenizer *t) {
    for (int b = 0; b < 256; b++) {
        uint32_t cp = tok_bytelevel_char((uint8_t)b);
        char u[2];
        size_t n = 1;
        if (cp < 0x80) {
            u[0] = (char)cp;
        } else {
            u[0] = (char)(0xc0 | (cp >> 6));
            u[1] = (char)(0x80 | (cp & 0x3f));
            n = 2;
        }
        t->byte_id[b] = hmap_str_get(&t->vocab, u, n);
    }
}

/* ----------------------------------------------------------- merges --- */

/* The two halves of merge e: "a b" (split at its one space) or ["a", "b"]. */
static dsc_status ld_merge_pair(const tok_load *L, const cJSON *e, size_t i, const char **a, size_t *na,
                                const char **b, size_t *nb) {
    if (cJSON_IsString(e) && e->valuestring) {
        const char *sp = strchr(e->valuestring, ' ');
        if (!sp || strchr(sp + 1, ' '))
            return dsc_fail(DSC_ERR_FORMAT, "%s: model.merges[%zu]: expected two tokens split by one space", L->src, i);
        *a = e->valuestring;
        *na = (size_t)(sp - e->valuestring);
        *b = sp + 1;
        *nb = strlen(sp + 1);
        return DSC_OK;
    }
    if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) && e->child->valuestring &&
        cJSON_IsString(e->child->next) && e->child->next->valuestring) {
        *a = e->child->valuestring;
        *na = strlen(*a);
        *b = e->child->next->valuestring;
        *nb = strlen(*b);
        return DSC_OK;
    }
    return dsc_fail(DSC_ERR_FORMAT, "%s: model.merges[%zu]: expected \"a b\" or [\"a\", \"b\"]", L->src, i);
}

static int32_t ld_vocab_get(const dsc_tokenizer *t, const char *s, size_t n) { return hmap_str_get(&t->vocab, s, n); }

/* One merge of rank `rank`: both halves and their join must be tokens. */
static dsc_status ld_merge(tok_load *L, const cJSON *e, size_t i, uint32_t rank, char **join, size_t *join_cap) {
    dsc_tokenizer *t = L->t;
    const char *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    int32_t ia, ib, ij;
    char q[208];
    dsc_status s = ld_merge_pair(L, e, i, &a, &na, &b, &nb);
    if (s != DSC_OK) return s;
    if ((ia = ld_vocab_get(t, a, na)) < 0 || (ib = ld_vocab_get(t, b, nb)) < 0)
        return dsc_fail(DSC_ERR_FORMAT, "%s: model.merges[%zu]: %s is not in model.vocab", L->src, i,
                        ia < 0 ? ld_quote(a, na, q) : ld_quote(b, nb, q));
    if (na + nb > *join_cap) {
        char *p = realloc(*join, na + nb);
        if (!p) return dsc_fail(DSC_ERR_NOMEM, "%s: no memory for model.merges", L->src);
        *join = p;
        *join_cap = na + nb;
    }
    memcpy(*join, a, na);
    memcpy(*join + na, b, nb);
    if ((ij = ld_vocab_get(t, *join, na + nb)) < 0)
        return dsc_fail(DSC_ERR_FORMAT, "%s: model.merges[%zu]: the merged token %s is not in model.vocab", L->src, i,
                        ld_quote(*join, na + nb, q));
    /* a pair listed twice keeps its last rank, as in the reference */
    if (!hmap_u64_put(&t->merges, (uint64_t)ia << 32 | (uint32_t)ib, (uint64_t)rank << 32 | (uint32_t)ij))
        return dsc_fail(DSC_ERR_NOMEM, "%s: no memory for model.merges", L->src);
    t->merge_id[rank] = ij;
    return DSC_OK;
}

static dsc_status ld_merges(tok_load *L, const cJSON *merges) {
    const cJSON *e;
    char *join = NULL;
    size_t join_cap = 0, i = 0;
    uint32_t rank = 0;
    dsc_status s = DSC_OK;
    if (!cJSON_IsArray(merges)) return dsc_fail(DSC_ERR_FORMAT, "%s: model.merges: expected an array", L->src);
    size_t n = (size_t)cJSON_GetArraySize(merges);
    if (n >= UINT32_MAX) return dsc_fail(DSC_ERR_FORMAT, "%s: model.merges: %zu merges is too many", L->src, n);
    if (!hmap_u64_init(&L->t->merges, n) || !(L->t->merge_id = malloc((n + 1) * sizeof *L->t->merge_id)))
        return dsc_fail(DSC_ERR_NOMEM, "%s: no memory for model.merges", L->src);
    cJSON_ArrayForEach(e, merges) {
        /* "#version" lines of old merges.txt files take no rank */
        if (!(cJSON_IsString(e) && e->valuestring && strncmp(e->valuestring, "#version", 8) == 0))
            if ((s = ld_merge(L, e, i, rank++, &join, &join_cap)) != DSC_OK) break;
        i++;
    }
    free(join);
    return s;
}

/* ------------------------------------------------------------ model --- */

/* Fields of model that change the result and that we do not implement. */
static dsc_status ld_model_refuse(const tok_load *L, const cJSON *m) {
    const cJSON *v;
    const char *str;
    int on;
    dsc_status s;
    if ((s = ld_str(L, m, "type", "model", &str)) != DSC_OK) return s;
    if (str && strcmp(str, "BPE") != 0)
        return dsc_fail(DSC_ERR_CONFIG, "%s: model.type: '%.40s' is not supported (BPE only)", L->src, str);
    if ((v = ld_get(m, "dropout")) && !(cJSON_IsNumber(v) && v->valuedouble == 0.0))
        return dsc_fail(DSC_ERR_CONFIG, "%s: model.dropout: BPE dropout is not supported", L->src);
    if ((s = ld_str(L, m, "continuing_subword_prefix", "model", &str)) != DSC_OK) return s;
    if (str && *str) return dsc_fail(DSC_ERR_CONFIG, "%s: model.continuing_subword_prefix: not supported", L->src);
    if ((s = ld_str(L, m, "end_of_word_suffix", "model", &str)) != DSC_OK) return s;
    if (str && *str) return dsc_fail(DSC_ERR_CONFIG, "%s: model.end_of_word_suffix: not supported", L->src);
    if ((s = ld_bool(L, m, "byte_fallback", "model", 0, &on)) != DSC_OK) return s;
    if (on) return dsc_fail(DSC_ERR_CONFIG, "%s: model.byte_fallback: not supported", L->src);
    return DSC_OK;
}

static dsc_status ld_model_flags(tok_load *L, const cJSON *m) {
    dsc_tokenizer *t = L->t;
    const char *unk;
    char q[208];
    dsc_status s;
    if ((s = ld_bool(L, m, "fuse_unk", "model", 0, &t->fuse_unk)) != DSC_OK) return s;
    if ((s = ld_bool(L, m, "ignore_merges", "model", 0, &t->ignore_merges)) != DSC_OK) return s;
    if ((s = ld_str(L, m, "unk_token", "model", &unk)) != DSC_OK) return s;
    t->unk_id = -1;
    if (unk && (t->unk_id = ld_vocab_get(t, unk, strlen(unk))) < 0)
        return dsc_fail(DSC_ERR_FORMAT, "%s: model.unk_token: %s is not in model.vocab", L->src,
                        ld_quote(unk, strlen(unk), q));
    return DSC_OK;
}

/* ----------------------------------------------------- added tokens --- */

static dsc_status ld_added_one(tok_load *L, const cJSON *e, size_t i) {
    dsc_tokenizer *t = L->t;
    const char *content;
    char field[48], q[208];
    int lstrip, rstrip, single, normalized;
    int32_t id = (int32_t)cJSON_GetObjectItemCaseSensitive(e, "id")->valuedouble; /* checked by ld_max_id */
    dsc_status s;
    snprintf(field, sizeof field, "added_tokens[%zu]", i);
    if ((s = ld_str(L, e, "content", field, &content)) != DSC_OK) return s;
    if (!content) return dsc_fail(DSC_ERR_FORMAT, "%s: %s.content: missing", L->src, field);
    if ((s = ld_bool(L, e, "lstrip", field, 0, &lstrip)) != DSC_OK ||
        (s = ld_bool(L, e, "rstrip", field, 0, &rstrip)) != DSC_OK ||
        (s = ld_bool(L, e, "single_word", field, 0, &single)) != DSC_OK ||
        (s = ld_bool(L, e, "normalized", field, 1, &normalized)) != DSC_OK)
        return s;
    if (lstrip || rstrip || single)
        return dsc_fail(DSC_ERR_CONFIG, "%s: %s.%s: not supported", L->src, field,
                        lstrip ? "lstrip" : rstrip ? "rstrip" : "single_word");
    size_t n = strlen(content);
    if (tok_utf8_check(content, n) != n) /* matches must fall on character boundaries */
        return dsc_fail(DSC_ERR_FORMAT, "%s: %s.content: invalid UTF-8", L->src, field);
    if ((s = ld_set_bytes(L, id, content, n)) != DSC_OK) return s;
    if (t->name_len[id] == TOK_NO_TOKEN) { /* an id beyond model.vocab */
        if (!ld_append(&t->names, &L->names_n, &L->names_cap, content, n, &t->name_off[id]))
            return dsc_fail(DSC_ERR_NOMEM, "%s: no memory for added_tokens", L->src);
        t->name_len[id] = (uint32_t)n;
        t->vocab.blob = t->names; /* the blob may have moved */
    }
    if (n == 0) return DSC_OK; /* nothing to match */
    int64_t prev = trie_add(&t->added[normalized ? 1 : 0], content, n, id);
    if (prev == -2) return dsc_fail(DSC_ERR_NOMEM, "%s: no memory for added_tokens", L->src);
    if (prev >= 0)
        return dsc_fail(DSC_ERR_FORMAT, "%s: %s: %s is already added token %lld", L->src, field, ld_quote(content, n, q),
                        (long long)prev);
    t->n_added++;
    return DSC_OK;
}

static dsc_status ld_added(tok_load *L, const cJSON *added) {
    const cJSON *e;
    size_t i = 0;
    dsc_status s;
    if (!trie_init(&L->t->added[0]) || !trie_init(&L->t->added[1]))
        return dsc_fail(DSC_ERR_NOMEM, "%s: no memory for added_tokens", L->src);
    cJSON_ArrayForEach(e, added) {
        if ((s = ld_added_one(L, e, i++)) != DSC_OK) return s;
    }
    return DSC_OK;
}

/* --------------------------------------------- normalizer, decoder --- */

static dsc_status ld_normalizer(const tok_load *L, const cJSON *n, const char *field) {
    const cJSON *type, *e;
    char sub[96];
    size_t i = 0;
    dsc_status s;
    if (!n) return DSC_OK;
    type = cJSON_GetObjectItemCaseSensitive(n, "type");
    if (!cJSON_IsString(type)) return dsc_fail(DSC_ERR_FORMAT, "%s: %s.type: expected a string", L->src, field);
    if (strcmp(type->valuestring, "Sequence") != 0)
        return dsc_fail(DSC_ERR_CONFIG, "%s: %s: normalizer '%.40s' is not supported", L->src, field, type->valuestring);
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, "normalizers");
    if (!cJSON_IsArray(list)) return dsc_fail(DSC_ERR_FORMAT, "%s: %s.normalizers: expected an array", L->src, field);
    cJSON_ArrayForEach(e, list) {
        snprintf(sub, sizeof sub, "%.60s.normalizers[%zu]", field, i++);
        if ((s = ld_normalizer(L, e, sub)) != DSC_OK) return s;
    }
    return DSC_OK;
}

static dsc_status ld_decoder(const tok_load *L, const cJSON *d) {
    const cJSON *type = d ? cJSON_GetObjectItemCaseSensitive(d, "type") : NULL;
    if (!d) return dsc_fail(DSC_ERR_CONFIG, "%s: decoder: missing (ByteLevel expected)", L->src);
    if (!cJSON_IsString(type)) return dsc_fail(DSC_ERR_FORMAT, "%s: decoder.type: expected a string", L->src);
    if (strcmp(type->valuestring, "ByteLevel") != 0)
        return dsc_fail(DSC_ERR_CONFIG, "%s: decoder: '%.40s' is not supported (ByteLevel expected)", L->src,
                        type->valuestring);
    return DSC_OK;
}

/* ---------------------------------------------------- pre-tokenizer --- */

static const char *const tok_behaviors[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext",
                                            "Contiguous"};

static dsc_status ld_split(tok_load *L, const cJSON *e, const char *field) {
    dsc_tokenizer *t = L->t;
    tok_split *sp = &t->steps[t->n_steps];
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(e, "pattern");
    const char *behavior, *rx = NULL, *str = NULL;
    char sub[128];
    dsc_status s;
    if (t->n_steps >= TOK_MAX_STEPS - 1)
        return dsc_fail(DSC_ERR_CONFIG, "%s: %s: more than %d Split steps", L->src, field, TOK_MAX_STEPS - 1);
    if (!cJSON_IsObject(pat)) return dsc_fail(DSC_ERR_FORMAT, "%s: %s.pattern: expected an object", L->src, field);
    if ((s = ld_str(L, pat, "Regex", field, &rx)) != DSC_OK || (s = ld_str(L, pat, "String", field, &str)) != DSC_OK)
        return s;
    if (!rx == !str)
        return dsc_fail(DSC_ERR_FORMAT, "%s: %s.pattern: expected one of Regex or String", L->src, field);
    if ((s = ld_str(L, e, "behavior", field, &behavior)) != DSC_OK || (s = ld_bool(L, e, "invert", field, 0, &sp->invert)) != DSC_OK)
        return s;
    sp->behavior = -1;
    for (int i = 0; behavior && i < 5; i++)
        if (strcmp(behavior, tok_behaviors[i]) == 0) sp->behavior = i;
    if (sp->behavior < 0)
        return dsc_fail(DSC_ERR_CONFIG, "%s: %s.behavior: '%.40s' is not supported", L->src, field,
                        behavior ? behavior : "(missing)");
    snprintf(sub, sizeof sub, "%s: %.80s.pattern.%s", L->src, field, rx ? "Regex" : "String");
    if ((s = tok_regex_compile(rx ? rx : str, rx == NULL, sub, sp)) != DSC_OK) return s;
    t->n_steps++;
    return DSC_OK;
}

static dsc_status ld_bytelevel(tok_load *L, const cJSON *e, const char *field) {
    dsc_tokenizer *t = L->t;
    char sub[128];
    int use_regex;
    dsc_status s;
    /* the reference's defaults for both are true */
    if ((s = ld_bool(L, e, "add_prefix_space", field, 1, &t->add_prefix_space)) != DSC_OK ||
        (s = ld_bool(L, e, "use_regex", field, 1, &use_regex)) != DSC_OK)
        return s;
    t->bl_step = t->n_steps;
    if (!use_regex) return DSC_OK;
    snprintf(sub, sizeof sub, "%s: %.80s (GPT-2 pattern)", L->src, field);
    t->steps[t->n_steps].behavior = TOK_ISOLATED;
    t->steps[t->n_steps].invert = 0;
    if ((s = tok_regex_compile(tok_bytelevel_pattern, 0, sub, &t->steps[t->n_steps])) != DSC_OK) return s;
    t->n_steps++;
    return DSC_OK;
}

/* One pre-tokenizer, a Sequence of them recursively. ByteLevel must come
 * last: Splits after it would see the byte alphabet, not the text. */
static dsc_status ld_pretok(tok_load *L, const cJSON *e, const char *field) {
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(e, "type"), *list, *c;
    char sub[96];
    size_t i = 0;
    dsc_status s;
    if (!cJSON_IsString(type)) return dsc_fail(DSC_ERR_FORMAT, "%s: %s.type: expected a string", L->src, field);
    if (L->t->bl_step >= 0)
        return dsc_fail(DSC_ERR_CONFIG, "%s: %s: steps after ByteLevel are not supported", L->src, field);
    if (strcmp(type->valuestring, "Split") == 0) return ld_split(L, e, field);
    if (strcmp(type->valuestring, "ByteLevel") == 0) return ld_bytelevel(L, e, field);
    if (strcmp(type->valuestring, "Sequence") != 0)
        return dsc_fail(DSC_ERR_CONFIG, "%s: %s: pre-tokenizer '%.40s' is not supported", L->src, field,
                        type->valuestring);
    if (!cJSON_IsArray(list = cJSON_GetObjectItemCaseSensitive(e, "pretokenizers")))
        return dsc_fail(DSC_ERR_FORMAT, "%s: %s.pretokenizers: expected an array", L->src, field);
    cJSON_ArrayForEach(c, list) {
        snprintf(sub, sizeof sub, "%.60s.pretokenizers[%zu]", field, i++);
        if ((s = ld_pretok(L, c, sub)) != DSC_OK) return s;
    }
    return DSC_OK;
}

/* ------------------------------------------------------------- load --- */

static dsc_status ld_root(tok_load *L, const cJSON *root) {
    const cJSON *model = ld_get(root, "model"), *vocab, *added = ld_get(root, "added_tokens"), *pt;
    int32_t max_id;
    dsc_status s;
    if (!cJSON_IsObject(model)) return dsc_fail(DSC_ERR_FORMAT, "%s: model: expected an object", L->src);
    if (!cJSON_IsObject(vocab = ld_get(model, "vocab")))
        return dsc_fail(DSC_ERR_FORMAT, "%s: model.vocab: expected an object", L->src);
    if (added && !cJSON_IsArray(added)) return dsc_fail(DSC_ERR_FORMAT, "%s: added_tokens: expected an array", L->src);
    if ((s = ld_model_refuse(L, model)) != DSC_OK || (s = ld_normalizer(L, ld_get(root, "normalizer"), "normalizer")) != DSC_OK ||
        (s = ld_decoder(L, ld_get(root, "decoder"))) != DSC_OK)
        return s;
    if (!(pt = ld_get(root, "pre_tokenizer")))
        return dsc_fail(DSC_ERR_CONFIG, "%s: pre_tokenizer: missing (ByteLevel expected)", L->src);
    if ((s = ld_pretok(L, pt, "pre_tokenizer")) != DSC_OK) return s;
    if (L->t->bl_step < 0) return dsc_fail(DSC_ERR_CONFIG, "%s: pre_tokenizer: no ByteLevel step", L->src);
    if ((s = ld_max_id(L, vocab, added, &max_id)) != DSC_OK || (s = ld_alloc(L, max_id + 1)) != DSC_OK ||
        (s = ld_vocab(L, vocab)) != DSC_OK || (s = ld_model_flags(L, model)) != DSC_OK ||
        (s = ld_merges(L, ld_get(model, "merges"))) != DSC_OK)
        return s;
    ld_byte_ids(L->t);
    for (int32_t id = 0; id < L->t->n_vocab; id++)
        if (L->t->name_len[id] != TOK_NO_TOKEN &&
            (s = ld_set_bytes(L, id, L->t->names + L->t->name_off[id], L->t->name_len[id])) != DSC_OK)
            return s;
    return ld_added(L, added);
}

/* PCRE2's default limits (10M backtracks, 20 MB of heap) stop `\s*[\r\n]+`
 * on a few MB of spaces; the reference's Oniguruma finishes such text. */
static dsc_status ld_mctx(tok_load *L) {
    if (!(L->t->mctx = pcre2_match_context_create(NULL)))
        return dsc_fail(DSC_ERR_NOMEM, "%s: no memory for a match context", L->src);
    pcre2_set_match_limit(L->t->mctx, UINT32_MAX);
    pcre2_set_depth_limit(L->t->mctx, UINT32_MAX);
    pcre2_set_heap_limit(L->t->mctx, 4u << 20); /* KiB: 4 GiB */
    return DSC_OK;
}

static dsc_status tok_load_json(const char *src, const char *json, size_t len, dsc_tokenizer **out) {
    tok_load L = {src, NULL, 0, 0, 0, 0};
    cJSON *root;
    size_t at;
    dsc_status s;
    *out = NULL;
    /* as the reference's JSON reader: names and patterns are then UTF-8 */
    if ((at = tok_utf8_check(json, len)) < len) return dsc_fail(DSC_ERR_FORMAT, "%s: invalid UTF-8 at byte %zu", src, at);
    if (!(root = fio_parse_json(json, len))) return dsc_fail(DSC_ERR_FORMAT, "%s: %s", src, fio_json_error());
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return dsc_fail(DSC_ERR_FORMAT, "%s: expected a JSON object", src);
    }
    if (!(L.t = calloc(1, sizeof *L.t))) {
        cJSON_Delete(root);
        return dsc_fail(DSC_ERR_NOMEM, "%s: no memory for the tokenizer", src);
    }
    L.t->bl_step = -1;
    L.t->unk_id = -1;
    s = ld_mctx(&L);
    if (s == DSC_OK) s = ld_root(&L, root);
    cJSON_Delete(root);
    if (s != DSC_OK) {
        dsc_tokenizer_free(L.t);
        return s;
    }
    /* optional: without it encoding is only slower */
    if ((L.t->cache = calloc(1, sizeof *L.t->cache))) atomic_flag_clear(&L.t->cache->busy);
    *out = L.t;
    return DSC_OK;
}

dsc_status dsc_tokenizer_load_from_memory(const char *json, size_t len, dsc_tokenizer **out) {
    if (!out) return dsc_fail(DSC_ERR_ARG, "dsc_tokenizer_load_from_memory: NULL out");
    if (!json) {
        *out = NULL;
        return dsc_fail(DSC_ERR_ARG, "dsc_tokenizer_load_from_memory: NULL json");
    }
    return tok_load_json("<memory>", json, len, out);
}

/* Reads the whole file; *buf is the caller's to free. */
static dsc_status tok_read_file(const char *path, char **buf, size_t *len) {
    FILE *f;
    size_t cap = 1 << 20, n = 0, got;
    char *p = NULL;
    dsc_status s0 = fio_open_read(path, &f);
    if (s0) return s0;
    for (;;) {
        char *q = realloc(p, cap);
        if (!q) {
            free(p);
            fclose(f);
            return dsc_fail(DSC_ERR_NOMEM, "%s: no memory to read %zu bytes", path, cap);
        }
        p = q;
        n += got = fread(p + n, 1, cap - n, f);
        if (n < cap) break;
        if (cap > SIZE_MAX / 2) break;
        cap *= 2;
    }
    if (ferror(f)) {
        free(p);
        fclose(f);
        return dsc_fail(DSC_ERR_IO, "%s: read error", path);
    }
    fclose(f);
    *buf = p;
    *len = n;
    return DSC_OK;
}

dsc_status dsc_tokenizer_load(const char *path, dsc_tokenizer **out) {
    char *json = NULL;
    size_t len = 0;
    dsc_status s;
    if (!out) return dsc_fail(DSC_ERR_ARG, "dsc_tokenizer_load: NULL out");
    *out = NULL;
    if (!path) return dsc_fail(DSC_ERR_ARG, "dsc_tokenizer_load: NULL path");
    if ((s = tok_read_file(path, &json, &len)) != DSC_OK) return s;
    s = tok_load_json(path, json, len, out);
    free(json);
    return s;
}

void dsc_tokenizer_free(dsc_tokenizer *t) {
    if (!t) return;
    free(t->names);
    free(t->name_off);
    free(t->name_len);
    free(t->bytes);
    free(t->byte_off);
    free(t->byte_len);
    hmap_str_free(&t->vocab);
    hmap_u64_free(&t->merges);
    free(t->merge_id);
    free(t->cache);
    trie_free(&t->added[0]);
    trie_free(&t->added[1]);
    for (int i = 0; i < t->n_steps; i++) pcre2_code_free(t->steps[i].re);
    pcre2_match_context_free(t->mctx);
    free(t);
}

/* ----------------------------------------------------------- lookup --- */

int32_t dsc_tokenizer_n_vocab(const dsc_tokenizer *t) { return t ? t->n_vocab : 0; }

/* An added token's bytes are its content, which its trie maps to it. */
int dsc_token_is_added(const dsc_tokenizer *t, int32_t id) {
    if (!t || id < 0 || id >= t->n_vocab || t->byte_len[id] == TOK_NO_TOKEN || t->byte_len[id] == 0) return 0;
    const char *s = t->bytes + t->byte_off[id];
    const size_t n = t->byte_len[id];
    return trie_exact(&t->added[0], s, n) == id || trie_exact(&t->added[1], s, n) == id;
}

/* The text as written in tokenizer.json: an added token's content or a
 * vocab entry ("Ġthe"); failing that, the raw text in the ByteLevel
 * alphabet, so that " the" finds "Ġthe" too. */
int32_t dsc_tokenizer_find(const dsc_tokenizer *t, const char *text) {
    size_t n, k = 0;
    int32_t id;
    char *bl;
    if (!t || !text) return -1;
    n = strlen(text);
    if ((id = trie_exact(&t->added[0], text, n)) >= 0 || (id = trie_exact(&t->added[1], text, n)) >= 0 ||
        (id = hmap_str_get(&t->vocab, text, n)) >= 0)
        return id;
    if (n > SIZE_MAX / 2 || !(bl = malloc(2 * n + 1))) return -1;
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = tok_bytelevel_char((uint8_t)text[i]);
        if (cp < 0x80) {
            bl[k++] = (char)cp;
        } else {
            bl[k++] = (char)(0xc0 | (cp >> 6));
            bl[k++] = (char)(0x80 | (cp & 0x3f));
        }
    }
    id = hmap_str_get(&t->vocab, bl, k);
    free(bl);
    return id;
}
