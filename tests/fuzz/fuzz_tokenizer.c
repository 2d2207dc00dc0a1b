/*
 * fuzz_tokenizer.c — libFuzzer harness: arbitrary bytes as text and as ids.
 *
 *   clang -fsanitize=fuzzer,address,undefined -Iinclude -Isrc src/core/status.c \
 *       src/tokenizer/{encode,hashmap,pretok,tokenizer,utf8}.c tests/fuzz/fuzz_tokenizer.c \
 *       -lpcre2-8 -lcjson -o fuzz_tokenizer
 *   DSC_FUZZ_TOKENIZER=path/to/tokenizer.json ./fuzz_tokenizer
 *
 * The tokenizer is loaded once (default: the DeepSeek-V3 golden file seen
 * from the repository root). The first input byte picks parse_special; the
 * rest is text. Valid UTF-8 must encode, decode back to itself exactly, and
 * stream-decode to itself; invalid UTF-8 must be refused with a message.
 * The same bytes read as ids must decode to valid UTF-8 or be refused.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsc.h"

static dsc_tokenizer *fz_tok;

static const dsc_tokenizer *fz_load(void) {
    const char *path = getenv("DSC_FUZZ_TOKENIZER");
    if (fz_tok) return fz_tok;
    if (!path) path = "../shared/golden/tokenizer/deepseek-v3/tokenizer.json";
    if (dsc_tokenizer_load(path, &fz_tok) != DSC_OK) {
        fprintf(stderr, "fuzz_tokenizer: %s (set DSC_FUZZ_TOKENIZER)\n", dsc_last_error());
        abort();
    }
    return fz_tok;
}

#define FZ_ASSERT(c)                                                                                  \
    do {                                                                                              \
        if (!(c)) {                                                                                   \
            fprintf(stderr, "fuzz_tokenizer: %s failed at line %d: %s\n", #c, __LINE__, dsc_last_error()); \
            abort();                                                                                  \
        }                                                                                             \
    } while (0)

/* Text: encode, then both decoders must give the text back. */
static void fz_text(const dsc_tokenizer *tok, const char *text, size_t n, int special) {
    size_t cap = n + 4, n_ids = 0, n_out = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    char *out = malloc(n + 1), *st_out = malloc(n + 64);
    dsc_utf8_stream st = {{0}, 0};
    size_t st_n = 0;
    FZ_ASSERT(ids && out && st_out);
    dsc_status s = dsc_tokenize(tok, text, n, special, ids, cap, &n_ids);
    if (s != DSC_OK) { /* only invalid UTF-8 may fail */
        FZ_ASSERT(s == DSC_ERR_ARG && dsc_last_error()[0] != '\0' && strstr(dsc_last_error(), "UTF-8"));
        goto done;
    }
    FZ_ASSERT(n_ids <= n);
    FZ_ASSERT(dsc_detokenize(tok, ids, n_ids, out, n + 1, &n_out) == DSC_OK);
    FZ_ASSERT(n_out == n && memcmp(out, text, n) == 0);
    for (size_t i = 0; i < n_ids; i++) {
        size_t k = 0;
        FZ_ASSERT(dsc_utf8_stream_push(&st, tok, ids[i], st_out + st_n, n + 64 - st_n, &k) == DSC_OK);
        st_n += k;
    }
    FZ_ASSERT(st_n == n && memcmp(st_out, text, n) == 0 && st.n_pending == 0);
done:
    free(ids);
    free(out);
    free(st_out);
}

/* Ids: out of range ones are refused; otherwise the output is valid UTF-8
 * (checked by encoding it again, which refuses anything else). */
static void fz_ids(const dsc_tokenizer *tok, const uint8_t *data, size_t size) {
    size_t n = size / 3, need = 0, n_out = 0, k = 0;
    int32_t *ids = malloc((n + 1) * sizeof *ids), range = dsc_tokenizer_n_vocab(tok) + 8;
    int bad_id = 0;
    char *out;
    FZ_ASSERT(ids);
    for (size_t i = 0; i < n; i++) {
        uint32_t v = data[3 * i] | (uint32_t)data[3 * i + 1] << 8 | (uint32_t)data[3 * i + 2] << 16;
        ids[i] = (int32_t)(v % (uint32_t)range) - 4;
        bad_id |= ids[i] < 0 || ids[i] >= dsc_tokenizer_n_vocab(tok);
    }
    dsc_status s = dsc_detokenize(tok, ids, n, NULL, 0, &need);
    if (bad_id) {
        FZ_ASSERT(s == DSC_ERR_ARG && strstr(dsc_last_error(), "id"));
        free(ids);
        return;
    }
    FZ_ASSERT((out = malloc(need + 1)) != NULL);
    FZ_ASSERT(dsc_detokenize(tok, ids, n, out, need + 1, &n_out) == DSC_OK && n_out == need);
    if (dsc_tokenize(tok, out, n_out, 0, NULL, 0, &k) != DSC_OK) FZ_ASSERT(!strstr(dsc_last_error(), "UTF-8"));
    free(out);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const dsc_tokenizer *tok = fz_load();
    if (size == 0) return 0;
    fz_text(tok, (const char *)data + 1, size - 1, data[0] & 1);
    fz_ids(tok, data, size);
    return 0;
}
