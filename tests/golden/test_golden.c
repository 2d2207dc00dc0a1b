/*
 * test_golden.c — a checkpoint against its float64 reference.
 *
 *   test_golden MODEL_ROOT          (MODEL_ROOT/model, MODEL_ROOT/expected.safetensors)
 *   test_golden --compare A.safetensors B.safetensors   (logits files, used by cli.sh)
 *   test_golden --ids FILE.safetensors NAME              (print an I32 tensor's values)
 *
 * Checks: logits within 1e-4 x max|logits| at every position for a prefill
 * in one chunk, a prefill in chunks of 5 and a token-at-a-time decode; the
 * greedy continuation reproduced exactly.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsc.h"
#include "io/safetensors.h"

static int n_pass, n_fail;

static void check(int ok, const char *what, const char *detail) {
    printf("%s %s%s%s\n", ok ? "PASS" : "FAIL", what, detail[0] ? ": " : "", detail);
    if (ok) n_pass++;
    else n_fail++;
}

/* Max over positions of max|a - b| / max|b| of that position. */
static double logits_rel_err(const float *a, const float *b, int T, int V) {
    double worst = 0;
    for (int t = 0; t < T; t++) {
        double mx = 0, d = 0;
        for (int v = 0; v < V; v++) {
            mx = fmax(mx, fabs(b[t * V + v]));
            d = fmax(d, fabs((double)a[t * V + v] - b[t * V + v]));
        }
        if (isnan(d)) return INFINITY;
        worst = fmax(worst, d / (mx > 0 ? mx : 1));
    }
    return worst;
}

static const st_tensor *need(const st_file *f, const char *name, st_dtype dt) {
    const st_tensor *t = st_find(f, name);
    if (!t || t->dtype != dt) {
        fprintf(stderr, "%s: tensor '%s' missing or of the wrong dtype\n", f->path, name);
        exit(1);
    }
    return t;
}

static float *copy_f32(const st_tensor *t) {
    float *p = malloc(t->nbytes);
    memcpy(p, t->data, t->nbytes);
    return p;
}

static int compare_files(const char *a, const char *b) {
    st_file fa, fb;
    if (st_open(a, &fa) || st_open(b, &fb)) {
        fprintf(stderr, "%s\n", dsc_last_error());
        return 1;
    }
    const st_tensor *ta = need(&fa, "logits", ST_F32), *tb = need(&fb, "logits", ST_F32);
    if (ta->ndim != 2 || tb->ndim != 2 || ta->shape[0] != tb->shape[0] || ta->shape[1] != tb->shape[1]) {
        fprintf(stderr, "logits shapes differ\n");
        return 1;
    }
    float *la = copy_f32(ta), *lb = copy_f32(tb);
    double e = logits_rel_err(la, lb, (int)ta->shape[0], (int)ta->shape[1]);
    printf("max |a - b| / max|b| = %.3g\n", e);
    free(la);
    free(lb);
    st_close(&fa);
    st_close(&fb);
    return e < 1e-4 ? 0 : 1;
}

static int print_ids(const char *file, const char *name) {
    st_file f;
    if (st_open(file, &f)) {
        fprintf(stderr, "%s\n", dsc_last_error());
        return 1;
    }
    const st_tensor *t = need(&f, name, ST_I32);
    for (int64_t i = 0; i < st_numel(t); i++) {
        int32_t v;
        memcpy(&v, t->data + 4 * i, 4);
        printf("%s%d", i ? " " : "", v);
    }
    printf("\n");
    st_close(&f);
    return 0;
}

/* Runs the prompt with the given batch size (0 = one token at a time). */
static int run_prompt(dsc_model *m, const char *isa, int threads, const int32_t *tok, int T, int V, int n_batch,
                      float *logits, dsc_ctx **out) {
    dsc_ctx_params cp = dsc_ctx_default_params();
    cp.n_ctx = 64;
    cp.n_batch = n_batch ? n_batch : 1;
    cp.isa = isa;
    cp.n_threads = threads;
    dsc_ctx *ctx;
    if (dsc_ctx_new(m, &cp, &ctx)) return -1;
    dsc_status s = DSC_OK;
    if (n_batch) s = dsc_eval(ctx, tok, T, logits);
    else
        for (int t = 0; t < T && !s; t++) s = dsc_eval(ctx, tok + t, 1, logits + (size_t)t * V);
    if (s) {
        fprintf(stderr, "eval: %s\n", dsc_last_error());
        dsc_ctx_free(ctx);
        return -1;
    }
    *out = ctx;
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "--compare")) return compare_files(argv[2], argv[3]);
    if (argc == 4 && !strcmp(argv[1], "--ids")) return print_ids(argv[2], argv[3]);
    if (argc != 2) {
        fprintf(stderr, "usage: test_golden MODEL_ROOT | --compare A B\n");
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/expected.safetensors", argv[1]);
    st_file ex;
    if (st_open(path, &ex)) {
        fprintf(stderr, "%s\n", dsc_last_error());
        return 1;
    }
    const st_tensor *tt = need(&ex, "tokens", ST_I32), *tl = need(&ex, "logits", ST_F32), *tg = need(&ex, "greedy", ST_I32);
    const int T = (int)tt->shape[0], V = (int)tl->shape[1], G = (int)tg->shape[0];
    int32_t *tok = malloc(tt->nbytes), *greedy = malloc(tg->nbytes);
    memcpy(tok, tt->data, tt->nbytes);
    memcpy(greedy, tg->data, tg->nbytes);
    float *want = copy_f32(tl), *got = malloc(sizeof(float) * (size_t)T * V);

    snprintf(path, sizeof path, "%s/model", argv[1]);
    dsc_model *m;
    if (dsc_model_load(path, NULL, &m)) {
        fprintf(stderr, "%s\n", dsc_last_error());
        return 1;
    }
    static const struct {
        const char *name;
        int n_batch;
    } modes[] = {{"prefill", 64}, {"prefill in chunks of 5", 5}, {"decode-only", 0}};
    /* Every kernel set this CPU runs; the reference on one thread, the
     * others on two (threads split rows and heads). */
    const char *const *isas = dsc_isa_list();
    for (int ii = 0; isas[ii]; ii++)
    for (size_t k = 0; k < sizeof modes / sizeof modes[0]; k++) {
        dsc_ctx *ctx;
        char detail[256];
        const int threads = strcmp(isas[ii], "ref") ? 2 : 1;
        memset(got, 0, sizeof(float) * (size_t)T * V);
        if (run_prompt(m, isas[ii], threads, tok, T, V, modes[k].n_batch, got, &ctx)) {
            check(0, modes[k].name, dsc_last_error());
            continue;
        }
        double e = logits_rel_err(got, want, T, V);
        snprintf(detail, sizeof detail, "max |diff| / max|logits| = %.3g (limit 1e-4) over %d positions", e, T);
        char what[128];
        snprintf(what, sizeof what, "[%s, %d thread(s)] %s logits", isas[ii], threads, modes[k].name);
        check(e < 1e-4, what, detail);
        /* Greedy continuation through the latent cache. */
        int ok = 1, n = 0;
        char ids[256] = "";
        for (int i = 0; i < G; i++) {
            int32_t next = dsc_argmax(dsc_ctx_logits(ctx), V);
            n += snprintf(ids + n, sizeof ids - (size_t)n, " %d", next);
            ok &= next == greedy[i];
            if (dsc_eval(ctx, &next, 1, NULL)) ok = 0;
        }
        snprintf(what, sizeof what, "[%s, %d thread(s)] %s greedy", isas[ii], threads, modes[k].name);
        check(ok, what, ids);
        dsc_ctx_free(ctx);
    }
    /* A prompt of 4 T + G tokens (the prompt 4 times, then the greedy
     * tokens): long enough (> 48) for prefill's tiled paths (gemm products
     * from 8 tokens on, attention by blocks of 48 queries), fed at once and
     * in chunks of 10 (a cache before each chunk), checked against the
     * reference kernels fed one token at a time (the row path the golden
     * logits above vouch for). */
    const int TL = 4 * T + G;
    int32_t *ltok = malloc(sizeof(int32_t) * (size_t)TL);
    for (int i = 0; i < TL; i++) ltok[i] = i < 4 * T ? tok[i % T] : greedy[i - 4 * T];
    float *lref = malloc(sizeof(float) * (size_t)TL * V), *lgot = malloc(sizeof(float) * (size_t)TL * V);
    dsc_ctx *cref;
    if (TL > 64 || TL <= 48 || run_prompt(m, "ref", 1, ltok, TL, V, 0, lref, &cref)) {
        check(0, "long prompt", TL > 64 || TL <= 48 ? "prompt length outside (48, 64]" : dsc_last_error());
    } else {
        dsc_ctx_free(cref);
        for (int ii = 0; isas[ii]; ii++)
            for (int chunk = 64; chunk >= 10; chunk -= 54) {
                dsc_ctx *ctx;
                char what[128], detail[256];
                snprintf(what, sizeof what, "[%s] prefill of %d tokens %s vs reference token by token", isas[ii], TL,
                         chunk == 64 ? "at once" : "in chunks of 10");
                if (run_prompt(m, isas[ii], 2, ltok, TL, V, chunk, lgot, &ctx)) {
                    check(0, what, dsc_last_error());
                    continue;
                }
                dsc_ctx_free(ctx);
                const double e = logits_rel_err(lgot, lref, TL, V);
                snprintf(detail, sizeof detail, "max |diff| / max|logits| = %.3g (limit 1e-4)", e);
                check(e < 1e-4, what, detail);
            }
    }
    free(ltok);
    free(lref);
    free(lgot);
    dsc_model_free(m);
    free(tok);
    free(greedy);
    free(want);
    free(got);
    st_close(&ex);
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
