/*
 * lib_ab.c — two builds of libdsc (shared objects) in one process: each
 * loads MODEL into its own context, evaluates the same DEPTH-token prompt,
 * then single-token decode steps alternate between them (A B, B A, A B,
 * ... after two warm-up steps), each step's cache entry dropped again, so
 * that both see the same machine in the same moments. Prints the median
 * time per step of each and the median of the per-pair speed ratios with
 * its quartiles. Run by bench/lib_ab.sh. With DSC_AB_MODEL_B set, B loads
 * that model instead (the same weights in another file layout, say). With
 * DSC_AB_PREFILL=N, each step is a prefill of N tokens after the DEPTH
 * positions (DEPTH may then be 0) instead of one decode step.
 *
 * usage: lib_ab A.so B.so MODEL [DEPTH] [PAIRS] [KV: f32|bf16|q8]
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dsc.h"

#include "ab_util.h"

typedef struct {
    dsc_status (*model_load)(const char *, const dsc_model_params *, dsc_model **);
    void (*model_get_info)(const dsc_model *, dsc_model_info *);
    dsc_ctx_params (*ctx_default_params)(void);
    dsc_status (*ctx_new)(dsc_model *, const dsc_ctx_params *, dsc_ctx **);
    dsc_status (*eval)(dsc_ctx *, const int32_t *, int32_t, float *);
    dsc_status (*ctx_truncate)(dsc_ctx *, int32_t);
    const char *(*last_error)(void);
    dsc_ctx *ctx;
    int32_t vocab;
} build;

static int open_build(build *b, const char *so, const char *model, int depth, int step, int kv) {
    void *h = dlopen(so, RTLD_NOW | RTLD_LOCAL);
    if (!h) return fprintf(stderr, "lib_ab: %s\n", dlerror()), 1;
    *(void **)&b->model_load = dlsym(h, "dsc_model_load");
    *(void **)&b->model_get_info = dlsym(h, "dsc_model_get_info");
    *(void **)&b->ctx_default_params = dlsym(h, "dsc_ctx_default_params");
    *(void **)&b->ctx_new = dlsym(h, "dsc_ctx_new");
    *(void **)&b->eval = dlsym(h, "dsc_eval");
    *(void **)&b->ctx_truncate = dlsym(h, "dsc_ctx_truncate");
    *(void **)&b->last_error = dlsym(h, "dsc_last_error");
    if (!b->model_load || !b->model_get_info || !b->ctx_default_params || !b->ctx_new || !b->eval || !b->ctx_truncate || !b->last_error)
        return fprintf(stderr, "lib_ab: %s lacks the dsc API\n", so), 1;
    dsc_model *m = NULL;
    dsc_ctx_params cp = b->ctx_default_params();
    cp.n_ctx = depth + step + 1;
    cp.kv_type = (dsc_kv_type)kv;
    if (b->model_load(model, NULL, &m) || b->ctx_new(m, &cp, &b->ctx))
        return fprintf(stderr, "lib_ab: %s: %s\n", so, b->last_error()), 1;
    dsc_model_info info;
    b->model_get_info(m, &info);
    b->vocab = info.vocab_size;
    int32_t *prompt = malloc(sizeof(int32_t) * (size_t)depth);
    if (!prompt) return fprintf(stderr, "lib_ab: out of memory\n"), 1;
    for (int i = 0; i < depth; i++) prompt[i] = (int32_t)((i * 7919 + 11) % info.vocab_size);
    const int bad = depth > 0 && b->eval(b->ctx, prompt, depth, NULL) != DSC_OK;
    free(prompt);
    if (bad) return fprintf(stderr, "lib_ab: %s: %s\n", so, b->last_error()), 1;
    return 0;
}

int main(int argc, char **argv) {
    const int depth = argc > 4 ? atoi(argv[4]) : 4096, pairs = argc > 5 ? atoi(argv[5]) : 40;
    const char *kvs = argc > 6 ? argv[6] : "bf16";
    const int kv = !strcmp(kvs, "f32") ? DSC_KV_F32 : !strcmp(kvs, "bf16") ? DSC_KV_BF16 : !strcmp(kvs, "q8") ? DSC_KV_Q8 : -1;
    const char *pre = getenv("DSC_AB_PREFILL");
    int prefill = 0; /* tokens per step, 1..65536; -1: not such a number */
    if (pre && *pre) {
        char *end;
        const long v = strtol(pre, &end, 10);
        prefill = *end || v < 1 || v > (1 << 16) ? -1 : (int)v;
    }
    const int step = prefill > 0 ? prefill : 1;
    if (argc < 4 || depth < (prefill > 0 ? 0 : 1) || depth > (1 << 20) || pairs < 1 || pairs > 100000 || kv < 0 ||
        prefill < 0) {
        fprintf(stderr, "usage: lib_ab A.so B.so MODEL [DEPTH >= 1, or 0 with DSC_AB_PREFILL=1..65536] [PAIRS >= 1] "
                        "[KV: f32|bf16|q8]\n");
        return 2;
    }
    build bl[2];
    const char *model_b = getenv("DSC_AB_MODEL_B");
    for (int v = 0; v < 2; v++)
        if (open_build(&bl[v], argv[1 + v], v && model_b && *model_b ? model_b : argv[3], depth, step, kv)) return 1;
    double *t[2] = {malloc(sizeof(double) * (size_t)pairs), malloc(sizeof(double) * (size_t)pairs)};
    double *ratio = malloc(sizeof(double) * (size_t)pairs);
    int32_t *toks = malloc(sizeof(int32_t) * (size_t)step);
    if (!t[0] || !t[1] || !ratio || !toks) return fprintf(stderr, "lib_ab: out of memory\n"), 1;
    const int32_t nv = bl[0].vocab < bl[1].vocab ? bl[0].vocab : bl[1].vocab;
    for (int i = 0; i < step; i++) toks[i] = step > 1 ? (int32_t)(((int64_t)(depth + i) * 7919 + 11) % nv) : 1;
    for (int s = -2; s < 2 * pairs; s++) { /* two warm-up steps, then pairs */
        const int b = s < 0 ? s == -1 : (s % 2) ^ ((s / 2) % 2);
        const double t0 = now();
        if (bl[b].eval(bl[b].ctx, toks, step, NULL) || bl[b].ctx_truncate(bl[b].ctx, depth))
            return fprintf(stderr, "lib_ab: %s: %s\n", argv[1 + b], bl[b].last_error()), 1;
        if (s >= 0) t[b][s / 2] = now() - t0;
    }
    for (int i = 0; i < pairs; i++) ratio[i] = t[0][i] / t[1][i];
    qsort(t[0], (size_t)pairs, sizeof(double), cmp);
    qsort(t[1], (size_t)pairs, sizeof(double), cmp);
    qsort(ratio, (size_t)pairs, sizeof(double), cmp);
    if (prefill > 0)
        printf("prefill of %d tokens at %d positions (%s cache): A %.2f ms (%.1f t/s), B %.2f ms (%.1f t/s) "
               "(medians of %d); B / A speed %.3f (quartiles %.3f-%.3f)\n",
               prefill, depth, kvs, t[0][pairs / 2] * 1e3, prefill / t[0][pairs / 2], t[1][pairs / 2] * 1e3,
               prefill / t[1][pairs / 2], pairs, ratio[pairs / 2], ratio[pairs / 4], ratio[(3 * pairs) / 4]);
    else
        printf("decode at %d positions (%s cache): A %.2f ms, B %.2f ms per token (medians of %d); B / A speed %.3f "
               "(quartiles %.3f-%.3f)\n",
               depth, kvs, t[0][pairs / 2] * 1e3, t[1][pairs / 2] * 1e3, pairs, ratio[pairs / 2], ratio[pairs / 4],
               ratio[(3 * pairs) / 4]);
    free(t[0]), free(t[1]), free(ratio), free(toks);
    return 0;
}
