/*
 * fuzz_tokenizer_json.c — libFuzzer harness: arbitrary bytes as a
 * tokenizer.json, through dsc_tokenizer_load_from_memory.
 *
 *   clang -fsanitize=fuzzer,address,undefined -Iinclude -Isrc src/core/status.c \
 *       src/tokenizer/{encode,hashmap,pretok,tokenizer,utf8}.c tests/fuzz/fuzz_tokenizer_json.c \
 *       -lpcre2-8 -lcjson -o fuzz_tokenizer_json
 *
 * Loading either fails with a status, a message and *out NULL, or gives a
 * tokenizer that encodes and decodes a few short texts without fault (the
 * texts are short so that a pathological regex from the input stays cheap).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsc.h"
#include "tokenizer/tokenizer.h"

static void fz_use(const dsc_tokenizer *tok) {
    static const char *const texts[] = {"Hello, world! 123", "  \t\n x", "深度求索 😀", "<｜User｜>hi</s>", "ab abc"};
    int32_t ids[64];
    char out[256];
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        size_t n = 0, k = 0;
        dsc_status s = dsc_tokenize(tok, texts[i], strlen(texts[i]), (int)(i & 1), ids, 64, &n);
        if (s != DSC_OK) {
            if (dsc_last_error()[0] == '\0') abort();
            continue;
        }
        if (dsc_detokenize(tok, ids, n, out, sizeof out, &k) != DSC_OK && dsc_last_error()[0] == '\0') abort();
    }
    dsc_tokenizer_find(tok, "a");
    dsc_tokenizer_find(tok, " the");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char sentinel;
    dsc_tokenizer *tok = (dsc_tokenizer *)&sentinel;
    dsc_status s = dsc_tokenizer_load_from_memory((const char *)data, size, &tok);
    if (s != DSC_OK) {
        if (tok != NULL || dsc_last_error()[0] == '\0') abort();
        return 0;
    }
    fz_use(tok);
    dsc_tokenizer_free(tok);
    return 0;
}
