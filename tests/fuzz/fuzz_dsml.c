/*
 * fuzz_dsml.c — libFuzzer harness: arbitrary bytes as a model's answer to
 * DeepSeek-V3.2 with tools, through the DSML call splitter (fed in pieces
 * whose sizes come from the input) and the parser.
 *
 * Checks: with no block, the text passed on and then what is pending give
 * back every byte in order; the text before a block begins the input, and
 * a closed block is a piece of the input from its tag to its closing tag
 * that parses into calls whose arguments are JSON objects, or fails with a
 * message.
 */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dsc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const size_t step = (size_t)(data[0] % 7) + 1; /* feed in pieces of 1..7 bytes */
    const char *in = (const char *)data + 1;
    const size_t n = size - 1;
    dsc_dsml_split st = {0};
    char *out = malloc(n + DSC_DSML_HOLD + 1), *got = malloc(2 * n + 64);
    size_t ng = 0, used = 0;
    int closed = 0;
    for (size_t i = 0; i < n && !closed; i += step) {
        const size_t k = n - i < step ? n - i : step;
        size_t no = 0;
        closed = dsc_dsml_feed(&st, in + i, k, out, &no);
        if (no > k + DSC_DSML_HOLD) abort();
        memcpy(got + ng, out, no), ng += no;
        used = i + k;
    }
    if (st.oom) goto done;
    if (closed) {
        /* the text passed on begins the input; the block is the input's from its tag to its closing tag */
        static const char open[] = "<｜DSML｜function_calls>", close[] = "</｜DSML｜function_calls>";
        if (ng > used || memcmp(got, in, ng) != 0) abort();
        if (st.n_block < sizeof open - 1 + sizeof close - 1 || memcmp(st.block, open, sizeof open - 1) ||
            memcmp(st.block + st.n_block - (sizeof close - 1), close, sizeof close - 1) || !memmem(in, used, st.block, st.n_block))
            abort();
        dsc_tool_call *tc = NULL;
        size_t nt = 0;
        if (dsc_dsml_parse(st.block, st.n_block, &tc, &nt) == DSC_OK) {
            for (size_t k = 0; k < nt; k++) {
                cJSON *a = cJSON_Parse(tc[k].arguments);
                if (!cJSON_IsObject(a) || !tc[k].name) abort();
                cJSON_Delete(a);
            }
        } else if (!dsc_last_error()[0] || tc || nt) {
            abort();
        }
        dsc_tool_calls_free(tc, nt);
    } else {
        size_t pn = 0;
        const char *pend = dsc_dsml_pending(&st, &pn);
        if (st.block && st.n_block == pn) { /* an open block: the whitespace before it was dropped */
            if (ng > n || memcmp(got, in, ng) != 0) abort();
        } else {
            memcpy(got + ng, pend, pn), ng += pn;
            if (ng != n || memcmp(got, in, n) != 0) abort(); /* no block: every byte back, in order */
        }
    }
done:
    dsc_dsml_free(&st);
    free(out);
    free(got);
    return 0;
}
