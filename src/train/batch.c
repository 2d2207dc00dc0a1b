/*
 * batch.c — training batches from safetensors files: `tokens` I32 [B, T + 1],
 * the layout of the golden train files and of `dsc grad --batch`.
 */
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "io/safetensors.h"
#include "train/train.h"

dsc_status dsc_train_read_batch(const char *path, int32_t **tokens, int32_t *B, int32_t *T) {
    *tokens = NULL;
    st_file f;
    dsc_status s = st_open(path, &f);
    if (s) return s;
    const st_tensor *t = st_find(&f, "tokens");
    if (!t) s = dsc_fail(DSC_ERR_SHAPE, "%s: no tensor 'tokens'", path);
    else if (t->dtype != ST_I32 || t->ndim != 2 || t->shape[0] < 1 || t->shape[1] < 2 || t->shape[0] > (1 << 24) ||
             t->shape[1] > (1 << 24))
        s = dsc_fail(DSC_ERR_SHAPE, "%s: tensor 'tokens' must be I32 [B, T + 1] with B >= 1 and T >= 1", path);
    if (!s) {
        *tokens = malloc(t->nbytes);
        if (!*tokens) s = dsc_fail(DSC_ERR_NOMEM, "%s: out of memory", path);
        else {
            memcpy(*tokens, t->data, t->nbytes);
            *B = (int32_t)t->shape[0];
            *T = (int32_t)t->shape[1] - 1;
        }
    }
    st_close(&f);
    return s;
}
