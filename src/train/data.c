/*
 * data.c — text files to training sequences (see data.h).
 *
 * The order of an epoch is a Fisher-Yates shuffle driven by splitmix64 from
 * (seed, epoch), so a position (epoch, cursor) is all a checkpoint needs to
 * continue the same stream of batches.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/fileio.h"
#include "core/status.h"
#include "train/data.h"
#include "train/train.h"

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void trn_data_free(trn_data *d) {
    free(d->tokens);
    free(d->mask);
    free(d->perm);
    memset(d, 0, sizeof *d);
}

/* Appends the ids of one file and the end-of-document token. */
static dsc_status append_file(trn_data *d, size_t *cap, const dsc_tokenizer *tok, const char *path, int32_t eos) {
    char *text;
    size_t len, n = 0;
    dsc_status s = dsc_text_read(path, &text, &len);
    if (s) return s;
    size_t need = (size_t)d->n_tokens + len + 1; /* a byte-level token holds at least one byte */
    if (need > *cap) {
        size_t c = *cap ? *cap : 1 << 16;
        while (c < need) c *= 2;
        int32_t *p = realloc(d->tokens, c * sizeof *p);
        if (!p) {
            free(text);
            return dsc_fail(DSC_ERR_NOMEM, "%s: out of memory for %zu tokens", path, need);
        }
        d->tokens = p;
        *cap = c;
    }
    s = dsc_tokenize(tok, text, len, 1, d->tokens + d->n_tokens, *cap - (size_t)d->n_tokens - 1, &n);
    free(text);
    if (s) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", dsc_last_error());
        return dsc_fail(s, "%s: %s", path, msg);
    }
    d->n_tokens += (int64_t)n;
    d->tokens[d->n_tokens++] = eos;
    return DSC_OK;
}

static dsc_status finish(trn_data *d, int32_t T, float val_frac, uint64_t seed);

dsc_status trn_data_load(trn_data *d, const dsc_tokenizer *tok, const char *const *files, int n_files, int32_t eos,
                         int32_t T, float val_frac, uint64_t seed) {
    memset(d, 0, sizeof *d);
    size_t cap = 0;
    dsc_status s = DSC_OK;
    for (int f = 0; f < n_files && !s; f++) s = append_file(d, &cap, tok, files[f], eos);
    if (!s && d->n_tokens < (int64_t)T + 1)
        s = dsc_fail(DSC_ERR_ARG, "train: the data holds %lld tokens, fewer than one sequence of %d + 1",
                     (long long)d->n_tokens, T);
    if (s) {
        trn_data_free(d);
        return s;
    }
    return finish(d, T, val_frac, seed);
}

/* Sequences, the validation split, the hash and the order of a loaded stream. */
static dsc_status finish(trn_data *d, int32_t T, float val_frac, uint64_t seed) {
    d->T = T;
    d->seed = seed;
    d->n_seq = (d->n_tokens - 1) / T;
    d->n_val = val_frac > 0 && d->n_seq >= 2 ? (int64_t)(val_frac * (double)d->n_seq + 0.999999) : 0;
    if (d->n_val >= d->n_seq) d->n_val = d->n_seq - 1;
    d->n_train = d->n_seq - d->n_val;
    d->hash = 0xcbf29ce484222325ull;
    for (int64_t i = 0; i < d->n_tokens; i++) {
        uint32_t v = (uint32_t)d->tokens[i] | (d->mask && d->mask[i] ? 0x80000000u : 0);
        for (int k = 0; k < 4; k++) d->hash = (d->hash ^ ((v >> (8 * k)) & 0xff)) * 0x100000001b3ull;
    }
    d->perm = malloc(sizeof(int32_t) * (size_t)d->n_train);
    d->perm_epoch = -1;
    if (!d->perm || d->n_train > INT32_MAX) {
        trn_data_free(d);
        return dsc_fail(DSC_ERR_NOMEM, "train: out of memory for the order of the sequences");
    }
    return DSC_OK;
}

static void make_perm(trn_data *d, int64_t epoch) {
    uint64_t st = d->seed * 0x9E3779B97F4A7C15ull ^ (uint64_t)epoch * 0xD1B54A32D192ED03ull;
    for (int64_t i = 0; i < d->n_train; i++) d->perm[i] = (int32_t)i;
    for (int64_t i = d->n_train - 1; i > 0; i--) {
        int64_t j = (int64_t)(splitmix64(&st) % (uint64_t)(i + 1));
        int32_t t = d->perm[i];
        d->perm[i] = d->perm[j];
        d->perm[j] = t;
    }
    d->perm_epoch = epoch;
}

/* The target mask of sequence seq into out (T values; 1 when the target counts). */
static void copy_mask(const trn_data *d, int64_t seq, uint8_t *out) {
    for (int32_t i = 0; i < d->T; i++) out[i] = d->mask ? d->mask[seq * d->T + i + 1] : 1;
}

dsc_status trn_data_next(trn_data *d, int64_t *epoch, int64_t *cursor, int32_t B, int32_t *out, uint8_t *mask) {
    const size_t row = (size_t)d->T + 1;
    for (int32_t b = 0; b < B; b++) {
        if (*cursor >= d->n_train) {
            ++*epoch;
            *cursor = 0;
        }
        if (d->perm_epoch != *epoch) make_perm(d, *epoch);
        int64_t seq = d->perm[(*cursor)++];
        memcpy(out + b * row, d->tokens + seq * d->T, row * sizeof(int32_t));
        if (mask) copy_mask(d, seq, mask + (size_t)b * d->T);
    }
    return DSC_OK;
}

void trn_data_val(const trn_data *d, int64_t first, int32_t n, int32_t *out, uint8_t *mask) {
    const size_t row = (size_t)d->T + 1;
    for (int32_t b = 0; b < n; b++) {
        memcpy(out + b * row, d->tokens + (d->n_train + first + b) * d->T, row * sizeof(int32_t));
        if (mask) copy_mask(d, d->n_train + first + b, mask + (size_t)b * d->T);
    }
}

/* ------------------------------------------------------------------------ */
/* Chat examples                                                             */

typedef struct {
    int32_t *ids;
    uint8_t *mask;
    size_t n, cap;
} chat_buf;

static int buf_reserve(chat_buf *b, size_t need) {
    if (need <= b->cap) return 1;
    size_t c = b->cap ? b->cap : 1 << 16;
    while (c < need) c *= 2;
    int32_t *p = realloc(b->ids, c * sizeof *p);
    if (!p) return 0;
    b->ids = p;
    uint8_t *m = realloc(b->mask, c);
    if (!m) return 0;
    b->mask = m;
    b->cap = c;
    return 1;
}

/* Tokenizes one example {"messages": [..., {"role": "assistant", ...}]}
 * into ex (prompt ids with mask 0, the answer and EOS with mask 1). */
static dsc_status chat_example(const dsc_tokenizer *tok, const char *line, size_t len, int32_t eos, chat_buf *ex,
                               const char *where) {
    if (fio_json_has_nul(line, len))
        return dsc_fail(DSC_ERR_FORMAT, "%s: a string holds \\u0000 (NUL), which would cut it short", where);
    cJSON *root = fio_parse_json(line, len);
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(root, "messages");
    dsc_status s = DSC_OK;
    int n = cJSON_GetArraySize(msgs);
    if (!cJSON_IsObject(root))
        s = dsc_fail(DSC_ERR_FORMAT, "%s: %s", where, root ? "not a JSON object" : fio_json_error());
    else if (!cJSON_IsArray(msgs) || n < 2 || n > 64)
        s = dsc_fail(DSC_ERR_FORMAT, "%s: messages: expected an array of 2 to 64 messages", where);
    dsc_chat_message m[64];
    for (int i = 0; !s && i < n; i++) {
        const cJSON *e = cJSON_GetArrayItem(msgs, i);
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(e, "role"), *c = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (!cJSON_IsString(r) || !cJSON_IsString(c))
            s = dsc_fail(DSC_ERR_FORMAT, "%s: messages[%d]: expected string role and content", where, i);
        else if (strcmp(r->valuestring, "system") && strcmp(r->valuestring, "user") && strcmp(r->valuestring, "assistant"))
            s = dsc_fail(DSC_ERR_FORMAT, "%s: messages[%d].role: unknown role '%.32s'", where, i, r->valuestring);
        else m[i] = (dsc_chat_message){.role = r->valuestring, .content = c->valuestring};
    }
    if (!s && strcmp(m[n - 1].role, "assistant"))
        s = dsc_fail(DSC_ERR_FORMAT, "%s: messages[%d].role: the last message must be the assistant's", where, n - 1);
    if (!s && strcmp(m[n - 2].role, "user"))
        s = dsc_fail(DSC_ERR_FORMAT, "%s: messages[%d].role: the answer must follow a user message", where, n - 2);
    if (s) {
        cJSON_Delete(root);
        return s;
    }
    /* R1 format: the prompt ends with "<think>\n", so the answer's own opening is dropped. */
    const char *ans = m[n - 1].content;
    if (!strncmp(ans, "<think>\n", 8)) ans += 8;
    const size_t alen = strlen(ans);
    size_t np = 0, na = 0;
    ex->n = 0;
    if (!buf_reserve(ex, 4096 + 2 * alen + 16 * (size_t)len)) s = dsc_fail(DSC_ERR_NOMEM, "%s: out of memory", where);
    if (!s) s = dsc_chat_tokenize(tok, m, (size_t)n - 1, DSC_CHAT_GENERATION_PROMPT | DSC_CHAT_REASONING, ex->ids, ex->cap, &np);
    if (!s) s = dsc_tokenize(tok, ans, alen, 1, ex->ids + np, ex->cap - np - 1, &na);
    cJSON_Delete(root);
    if (s) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", dsc_last_error());
        return dsc_fail(s, "%s: %s", where, msg);
    }
    ex->ids[np + na] = eos;
    ex->n = np + na + 1;
    memset(ex->mask, 0, np);
    memset(ex->mask + np, 1, na + 1);
    return DSC_OK;
}

dsc_status trn_data_load_chat(trn_data *d, const dsc_tokenizer *tok, const char *const *files, int n_files, int32_t eos,
                              int32_t T, float val_frac, uint64_t seed) {
    memset(d, 0, sizeof *d);
    chat_buf out = {0}, ex = {0};
    size_t block = 0; /* tokens in the current block of T */
    dsc_status s = DSC_OK;
    for (int f = 0; f < n_files && !s; f++) {
        char *text;
        size_t len;
        if ((s = dsc_text_read(files[f], &text, &len))) break;
        size_t line = 0;
        for (char *p = text, *e; !s && p < text + len; p = e + 1) {
            e = memchr(p, '\n', (size_t)(text + len - p));
            if (!e) e = text + len;
            line++;
            size_t k = 0; /* lines of white space only are skipped, as tokenize --jsonl does */
            while (p + k < e && (p[k] == ' ' || p[k] == '\t' || p[k] == '\r')) k++;
            if (p + k == e) continue;
            char where[512];
            snprintf(where, sizeof where, "%.400s:%zu", files[f], line);
            if ((s = chat_example(tok, p, (size_t)(e - p), eos, &ex, where))) break;
            if (ex.n > (size_t)T) {
                s = dsc_fail(DSC_ERR_ARG, "%s: the example has %zu tokens, more than a sequence of %d", where, ex.n, T);
                break;
            }
            if (block + ex.n > (size_t)T) { /* pad the block with EOS (no loss) */
                if (!buf_reserve(&out, out.n + T)) {
                    s = dsc_fail(DSC_ERR_NOMEM, "%s: out of memory", where);
                    break;
                }
                for (; block < (size_t)T; block++, out.n++) out.ids[out.n] = eos, out.mask[out.n] = 0;
                block = 0;
            }
            if (!buf_reserve(&out, out.n + ex.n + 1)) {
                s = dsc_fail(DSC_ERR_NOMEM, "%s: out of memory", where);
                break;
            }
            memcpy(out.ids + out.n, ex.ids, ex.n * sizeof(int32_t));
            memcpy(out.mask + out.n, ex.mask, ex.n);
            out.n += ex.n;
            block += ex.n;
        }
        free(text);
    }
    if (!s && out.n > 0 && !buf_reserve(&out, out.n + T + 1)) s = dsc_fail(DSC_ERR_NOMEM, "sft: out of memory");
    if (!s && out.n > 0) {
        for (; block < (size_t)T; block++, out.n++) out.ids[out.n] = eos, out.mask[out.n] = 0;
        out.ids[out.n] = eos, out.mask[out.n++] = 0; /* the last sequence's T + 1-th token */
    }
    free(ex.ids);
    free(ex.mask);
    d->tokens = out.ids;
    d->mask = out.mask;
    d->n_tokens = (int64_t)out.n;
    if (!s && d->n_tokens < (int64_t)T + 1) s = dsc_fail(DSC_ERR_ARG, "sft: the data holds no example");
    if (s) {
        trn_data_free(d);
        return s;
    }
    return finish(d, T, val_frac, seed);
}
