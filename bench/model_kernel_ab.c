/*
 * model_kernel_ab.c — two builds of the AVX2 kernels (kern_A, kern_B; see
 * kernel_ab.sh -m) inside the whole model: decode steps of one context
 * alternate between them, A B B A A B ..., each step timed alone. Steps
 * tens of milliseconds apart see the same state of a shared machine, which
 * separate `dsc bench` runs do not; and the products are the model's own
 * (small expert matrices split into chunks between threads).
 *
 * usage: model_kernel_ab MODEL [STEPS] [THREADS] [DEPTH] [KV]
 *   every step decodes one token at position DEPTH (default 8) and is then
 *   taken back, so all steps do the same work. KV: the latent cache type,
 *   f32, bf16 (the default, as dsc bench and dsc serve) or q8. Prints the median step time
 *   of each build and the median of the per-pair speed ratios B / A.
 * Exit status 77 on a CPU without AVX2.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "models/model.h"

#include "ab_util.h"

extern const dsc_kernels kern_A, kern_B;

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv) {
    const int steps = argc > 2 ? atoi(argv[2]) : 64, threads = argc > 3 ? atoi(argv[3]) : 0;
    const int depth = argc > 4 ? atoi(argv[4]) : 8;
    const char *kv = argc > 5 ? argv[5] : "bf16";
    const int kvt = !strcmp(kv, "f32") ? DSC_KV_F32 : !strcmp(kv, "bf16") ? DSC_KV_BF16 : !strcmp(kv, "q8") ? DSC_KV_Q8 : -1;
    if (argc < 2 || steps < 2 || steps > 100000 || threads < 0 || depth < 1 || kvt < 0) {
        fprintf(stderr, "usage: model_kernel_ab MODEL [STEPS >= 2] [THREADS] [DEPTH >= 1] [KV: f32|bf16|q8]\n");
        return 2;
    }
    if (!kern_select("avx2")) {
        fprintf(stderr, "model_kernel_ab: this CPU has no AVX2\n");
        return 77;
    }
    dsc_model *model = NULL;
    dsc_ctx *ctx = NULL;
    dsc_ctx_params cp = dsc_ctx_default_params();
    cp.n_threads = threads;
    cp.isa = "avx2";
    cp.n_ctx = depth + 1;
    cp.kv_type = (dsc_kv_type)kvt;
    if (dsc_model_load(argv[1], NULL, &model) || dsc_ctx_new(model, &cp, &ctx)) {
        fprintf(stderr, "model_kernel_ab: %s\n", dsc_last_error());
        dsc_model_free(model);
        return 1;
    }
    const int32_t nv = model->cfg.vocab_size;
    int32_t *prompt = malloc(sizeof(int32_t) * (size_t)depth);
    const int pairs = steps / 2;
    double *ta = malloc(sizeof(double) * (size_t)pairs), *tb = malloc(sizeof(double) * (size_t)pairs);
    double *ratio = malloc(sizeof(double) * (size_t)pairs);
    if (!prompt || !ta || !tb || !ratio) return fprintf(stderr, "model_kernel_ab: out of memory\n"), 1;
    for (int i = 0; i < depth; i++) prompt[i] = (int32_t)((i * 7919 + 11) % nv);
    int rc = dsc_eval(ctx, prompt, depth, NULL) != DSC_OK;
    const int32_t tok = 1 % nv;
    dsc_kernels ka = kern_A, kb = kern_B;
    /* ... and one from before q8_round, the reference's (its prefill is not what runs here). */
    if (!ka.q8_round) ka.q8_round = kern_q8_round;
    if (!kb.q8_round) kb.q8_round = kern_q8_round;
    for (int s = -2; !rc && s < 2 * pairs; s++) { /* two warm-up steps, then pairs */
        const int b = s < 0 ? s == -1 : (s % 2) ^ ((s / 2) % 2); /* A B, B A, A B, ... */
        ctx->k = b ? &kb : &ka;
        const double t0 = now();
        rc = dsc_eval(ctx, &tok, 1, NULL) != DSC_OK || dsc_ctx_truncate(ctx, depth) != DSC_OK;
        const double t = now() - t0;
        if (s >= 0) (b ? tb : ta)[s / 2] = t;
    }
    if (rc) {
        fprintf(stderr, "model_kernel_ab: %s\n", dsc_last_error());
    } else {
        for (int i = 0; i < pairs; i++) ratio[i] = ta[i] / tb[i];
        const double r = median(ratio, pairs), ma = median(ta, pairs), mb = median(tb, pairs);
        printf("decode at %d positions, %d threads: A %.2f ms, B %.2f ms per token (medians of %d); "
               "B / A speed %.3f (quartiles %.3f-%.3f)\n",
               depth, dsc_ctx_n_threads(ctx), ma * 1e3, mb * 1e3, pairs, r, ratio[pairs / 4], ratio[(3 * pairs) / 4]);
    }
    free(prompt), free(ta), free(tb), free(ratio);
    dsc_ctx_free(ctx);
    dsc_model_free(model);
    return rc;
}
