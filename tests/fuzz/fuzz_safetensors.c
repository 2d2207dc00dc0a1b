/*
 * fuzz_safetensors.c — libFuzzer target for the safetensors parser.
 *
 * The input is a whole file image handed to st_parse(). A failed parse must
 * leave the st_file zeroed and a one-line message; a successful one must
 * describe only bytes inside the input: the first and last byte of every
 * tensor are read (ASan flags any pointer outside the buffer), sizes are
 * rechecked against dtype x shape, and every name is looked up with st_find.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "fuzz_check.h"

/* dsc.h promises a one-line message naming the fault. */
static void check_message(void) {
    const char *m = dsc_last_error();
    FUZZ_CHECK(m[0] != '\0');
    FUZZ_CHECK(strchr(m, '\n') == NULL && strchr(m, '\r') == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    st_file f;
    if (st_parse(data, size, "fuzz.safetensors", &f) != DSC_OK) {
        FUZZ_CHECK(f.tensors == NULL && f.n_tensors == 0 && f.map == NULL);
        check_message();
        return 0;
    }
    volatile uint8_t sink = 0;
    for (int i = 0; i < f.n_tensors; i++) {
        const st_tensor *t = &f.tensors[i];
        FUZZ_CHECK(t->ndim >= 0 && t->ndim <= ST_MAX_DIMS);
        FUZZ_CHECK(t->data >= data && t->nbytes <= size && t->data - data <= (ptrdiff_t)(size - t->nbytes));
        FUZZ_CHECK((uint64_t)st_numel(t) * st_dtype_size(t->dtype) == t->nbytes);
        if (t->nbytes) sink ^= t->data[0] ^ t->data[t->nbytes - 1];
        FUZZ_CHECK(st_find(&f, t->name) == t);
        if (i) FUZZ_CHECK(strcmp(f.tensors[i - 1].name, t->name) < 0);
    }
    (void)sink;
    st_close(&f);
    return 0;
}
