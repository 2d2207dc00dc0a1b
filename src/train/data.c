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
    s = dsc_tokenize(tok, text, len, 0, d->tokens + d->n_tokens, *cap - (size_t)d->n_tokens - 1, &n);
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
    d->T = T;
    d->seed = seed;
    d->n_seq = (d->n_tokens - 1) / T;
    d->n_val = val_frac > 0 && d->n_seq >= 2 ? (int64_t)(val_frac * (double)d->n_seq + 0.999999) : 0;
    if (d->n_val >= d->n_seq) d->n_val = d->n_seq - 1;
    d->n_train = d->n_seq - d->n_val;
    d->hash = 0xcbf29ce484222325ull;
    for (int64_t i = 0; i < d->n_tokens; i++) {
        uint32_t v = (uint32_t)d->tokens[i];
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

dsc_status trn_data_next(trn_data *d, int64_t *epoch, int64_t *cursor, int32_t B, int32_t *out) {
    const size_t row = (size_t)d->T + 1;
    for (int32_t b = 0; b < B; b++) {
        if (*cursor >= d->n_train) {
            ++*epoch;
            *cursor = 0;
        }
        if (d->perm_epoch != *epoch) make_perm(d, *epoch);
        int64_t seq = d->perm[(*cursor)++];
        memcpy(out + b * row, d->tokens + seq * d->T, row * sizeof(int32_t));
    }
    return DSC_OK;
}

void trn_data_val(const trn_data *d, int64_t first, int32_t n, int32_t *out) {
    const size_t row = (size_t)d->T + 1;
    for (int32_t b = 0; b < n; b++) memcpy(out + b * row, d->tokens + (d->n_train + first + b) * d->T, row * sizeof(int32_t));
}
