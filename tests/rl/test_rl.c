/*
 * test_rl.c — the pieces of SFT and GRPO that are arithmetic:
 *   - GRPO advantages and the per-token policy-gradient weights against
 *     hand-computed values, and each weight against the finite difference of
 *     its token objective;
 *   - the trainer's weighted backward (dsc_train_forward / _backward) against
 *     a directional finite difference of sum_n w_n CE_n on a golden model;
 *   - chat examples for SFT: the mask covers the answer and EOS only,
 *     examples are packed whole, an over-long one is refused.
 *
 *   test_rl GOLDEN_DIR
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rl/rl.h"
#include "train/data.h"
#include "train/train.h"

static int n_pass, n_fail;

static void report(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report(int ok, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("%s ", ok ? "PASS" : "FAIL");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    if (ok) n_pass++;
    else n_fail++;
}

static int near(double a, double b, double tol) { return fabs(a - b) <= tol; }

static void test_advantages(void) {
    /* rewards 1, 0, 0, 1.1: mean 0.525, unbiased std 0.607590871 */
    const float r[4] = {1, 0, 0, 1.1f};
    float a[4], d[4];
    rl_group_advantages(r, 4, 0, a);
    rl_group_advantages(r, 4, 1, d);
    const double ea[4] = {0.78164742, -0.86392609, -0.86392609, 0.94620477}, ed[4] = {0.475, -0.525, -0.525, 0.575};
    int ok = 1;
    for (int i = 0; i < 4; i++) ok &= near(a[i], ea[i], 1e-5) && near(d[i], ed[i], 1e-6);
    report(ok, "advantages: GRPO (r - mean) / (std + 1e-4) and Dr. GRPO r - mean");
    const float same[3] = {1, 1, 1};
    float z[3];
    rl_group_advantages(same, 3, 0, z);
    report(z[0] == 0 && z[1] == 0 && z[2] == 0, "advantages: a group of equal rewards has none");
}

static void test_token_weight(void) {
    const float el = 0.2f, eh = 0.28f;
    const struct {
        float A, dlogp; /* logp - logp_old */
        float w;
        int clipped;
    } c[] = {
        {1, 0, 1, 0},                        /* rho 1: w = A                                  */
        {1, logf(1.5f), 0, 1},               /* rho 1.5 > 1.28, A > 0: clipped, no gradient   */
        {-1, logf(1.5f), -1.5f, 0},          /* A < 0: min picks rho A = -1.5, unclipped      */
        {-1, logf(0.5f), 0, 1},              /* rho 0.5 < 0.8, A < 0: clipped                 */
        {1, logf(0.5f), 0.5f, 0},            /* A > 0, rho 0.5: rho A = 0.5 is the min        */
        {2, logf(1.2f), 2.4f, 0},            /* inside the band: rho A                        */
    };
    int ok = 1;
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        int cl;
        float k3, obj;
        const float lp = -1.0f + c[i].dlogp, w = rl_token_weight(c[i].A, lp, -1.0f, lp, el, eh, 0, &cl, &k3, &obj);
        ok &= near(w, c[i].w, 1e-5) && cl == c[i].clipped && k3 == 0; /* ref = logp: k3 = 0 */
    }
    report(ok, "token weights: the clipped surrogate's derivative in all six cases");
    /* KL: ref - logp = 0.2, beta 0.1: k3 = e^0.2 - 1.2 = 0.0214028, weight += 0.1 (e^0.2 - 1) = 0.0221403 */
    int cl;
    float k3, obj;
    const float w = rl_token_weight(0, -2.0f, -2.0f, -1.8f, el, eh, 0.1f, &cl, &k3, &obj);
    report(near(k3, 0.0214028, 1e-6) && near(w, 0.0221403, 1e-6) && near(obj, -0.00214028, 1e-7),
           "token weights: k3 = %.7f, w = %.7f, obj = %.8f (hand: 0.0214028, 0.0221403, -0.00214028)", k3, w, obj);
    /* every weight is d obj / d logp: central differences away from the clip kinks */
    double worst = 0;
    for (int i = 0; i < 200; i++) {
        const float A = (float)((i % 7) - 3) * 0.7f, old = -1.5f, ref = -1.0f - 0.01f * (float)(i % 13);
        const float lp = old + 0.6f * ((float)(i % 17) / 16.0f - 0.5f);
        const float beta = (i % 3) * 0.05f;
        int c0;
        float kk, o0, op, om;
        const float wt = rl_token_weight(A, lp, old, ref, el, eh, beta, &c0, &kk, &o0);
        const float h = 1e-3f;
        rl_token_weight(A, lp + h, old, ref, el, eh, beta, &c0, &kk, &op);
        rl_token_weight(A, lp - h, old, ref, el, eh, beta, &c0, &kk, &om);
        const float rho = expf(lp - old);
        if (fabsf(rho - (1 - el)) < 0.01f || fabsf(rho - (1 + eh)) < 0.01f) continue;
        const double fd = ((double)op - om) / (2 * h), err = fabs(fd - wt) / (1e-2 + fabs(wt));
        if (err > worst) worst = err;
    }
    report(worst < 1e-2, "token weights = d obj / d logp by central differences (worst relative error %.2e)", worst);
}

/* The weighted backward: the directional derivative of L = sum w_n CE_n
 * along each tensor's gradient equals |g|. */
static void test_weighted_backward(const char *golden) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/models/v3-tiny/model", golden);
    dsc_train_params p = dsc_train_default_params();
    p.n_batch = 2;
    p.n_seq = 7;
    p.alpha = 0;
    dsc_trainer *t;
    if (dsc_trainer_new(dir, &p, &t)) {
        report(0, "weighted backward: %s", dsc_last_error());
        return;
    }
    int32_t tokens[2 * 8];
    float w[14], lp[14], ent[14];
    uint64_t s = 12345;
    for (int i = 0; i < 16; i++) s = s * 6364136223846793005ull + 1442695040888963407ull, tokens[i] = (int32_t)((s >> 33) % 100);
    for (int i = 0; i < 14; i++) w[i] = (i % 4 == 0) ? 0.0f : (float)((i % 5) - 2) * 0.25f; /* masked, negative, positive */
    int ok = !dsc_train_forward(t, tokens, 2, 7, lp, ent, NULL) && !dsc_train_backward(t, w);
    double L0 = 0;
    for (int i = 0; i < 14; i++) L0 -= (double)w[i] * lp[i];
    int ent_ok = 1;
    for (int i = 0; i < 14; i++) ent_ok &= ent[i] > 0 && ent[i] <= logf(1e6f) && lp[i] < 0;
    const double eps = 1e-3, a = 4 * 1.1920929e-7 * (fabs(L0) + 1) / (2 * eps);
    double worst = 0;
    int checked = 0;
    const int32_t n = dsc_train_n_tensors(t);
    for (int32_t i = 0; ok && i < n; i++) {
        const dsc_train_tensor *e = dsc_train_tensor_at(t, i);
        double norm = 0;
        for (int64_t k = 0; k < e->numel; k++) norm += (double)e->grad[k] * e->grad[k];
        norm = sqrt(norm);
        if (norm < 2 * a) continue;
        float *save = malloc(sizeof(float) * (size_t)e->numel), *u = malloc(sizeof(float) * (size_t)e->numel);
        for (int64_t k = 0; k < e->numel; k++) save[k] = e->param[k], u[k] = (float)(e->grad[k] / norm);
        /* A router can switch experts inside the step (the loss is only
         * piecewise smooth): a second, smaller step decides then. */
        double r = INFINITY;
        for (int attempt = 0; attempt < 2 && r > 1; attempt++) {
            const double h = attempt ? eps / 4 : eps, ah = a * eps / h;
            double l[2];
            for (int sg = 0; sg < 2; sg++) {
                for (int64_t k = 0; k < e->numel; k++) e->param[k] = (float)(save[k] + (sg ? -h : h) * u[k]);
                float lq[14];
                dsc_train_forward(t, tokens, 2, 7, lq, NULL, NULL);
                l[sg] = 0;
                for (int j = 0; j < 14; j++) l[sg] -= (double)w[j] * lq[j];
            }
            const double fd = (l[0] - l[1]) / (2 * h);
            r = fmin(r, fabs(fd - norm) / (1e-2 * norm + ah));
            if (getenv("DSC_TEST_VERBOSE")) printf("  %-50s |g| %.3e fd %.3e (step %.1e)\n", e->name, norm, fd, h);
        }
        memcpy(e->param, save, sizeof(float) * (size_t)e->numel);
        free(save), free(u);
        if (r > worst) worst = r;
        checked++;
    }
    report(ok && checked > 10 && worst <= 1, "weighted backward: directional fd of %d tensors, worst %.2f (<= 1)", checked, worst);
    report(ok && ent_ok, "forward: log-probabilities < 0 and entropies > 0");
    /* all weights 1/N reproduce the plain mean cross-entropy gradient */
    float ce, w1[14];
    for (int i = 0; i < 14; i++) w1[i] = 1.0f / 14;
    const int64_t np = dsc_train_n_params(t);
    float *g1 = malloc(sizeof(float) * (size_t)np);
    dsc_train_forward(t, tokens, 2, 7, lp, NULL, NULL);
    dsc_train_backward(t, w1);
    int64_t off = 0;
    for (int32_t i = 0; i < n; i++) {
        const dsc_train_tensor *e = dsc_train_tensor_at(t, i);
        memcpy(g1 + off, e->grad, sizeof(float) * (size_t)e->numel);
        off += e->numel;
    }
    dsc_train_grad(t, tokens, 2, 7, &ce, NULL);
    double md = 0, mx = 0;
    off = 0;
    for (int32_t i = 0; i < n; i++) {
        const dsc_train_tensor *e = dsc_train_tensor_at(t, i);
        for (int64_t k = 0; k < e->numel; k++) {
            md = fmax(md, fabs(g1[off + k] - e->grad[k]));
            mx = fmax(mx, fabs(e->grad[k]));
        }
        off += e->numel;
    }
    report(md <= 1e-6 * mx + 1e-9, "weights 1/N = dsc_train_grad (max diff %.2e of max %.2e)", md, mx);
    report(dsc_train_backward(t, w1) != DSC_OK, "backward without a forward is refused");
    free(g1);
    dsc_trainer_free(t);
}

static void test_chat_data(const char *golden) {
    char tokp[4096];
    snprintf(tokp, sizeof tokp, "%s/tokenizer/deepseek-v3/tokenizer.json", golden);
    dsc_tokenizer *tok;
    if (dsc_tokenizer_load(tokp, &tok)) {
        report(0, "chat data: %s", dsc_last_error());
        return;
    }
    char path[] = "/tmp/dsc_test_rl_XXXXXX";
    int fd = mkstemp(path);
    const char *lines =
        "{\"messages\": [{\"role\": \"user\", \"content\": \"What is 2 + 2?\"}, {\"role\": \"assistant\", \"content\": \"<think>\\n2+2+0=4\\nso 4\\n</think>\\n\\n\\\\boxed{4}\"}]}\n"
        "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Hello.\"}]}\n";
    if (fd < 0 || write(fd, lines, strlen(lines)) != (ssize_t)strlen(lines)) {
        report(0, "chat data: cannot write %s", path);
        return;
    }
    close(fd);
    const char *files[1] = {path};
    const int32_t eos = dsc_tokenizer_find(tok, "<｜end▁of▁sentence｜>"), think_end = dsc_tokenizer_find(tok, "</think>");
    trn_data d;
    dsc_status s = trn_data_load_chat(&d, tok, files, 1, eos, 64, 0, 1);
    report(!s, "chat data loads (%s)", s ? dsc_last_error() : "ok");
    if (!s) {
        /* example 1: BOS <User> ... <Assistant> <think> \n | answer ... EOS; its targets start after "<think>\n" */
        int64_t first = -1, n_eos_mask = 0, has_end = 0;
        for (int64_t i = 0; i < d.n_tokens; i++) {
            if (d.mask[i] && first < 0) first = i;
            n_eos_mask += d.mask[i] && d.tokens[i] == eos;
            has_end |= d.mask[i] && d.tokens[i] == think_end;
        }
        char head[256] = "";
        size_t hl = 0;
        for (int64_t i = 0; i < first && hl < 200; i++) {
            size_t nb;
            dsc_token_bytes(tok, d.tokens[i], head + hl, sizeof head - hl - 1, &nb);
            hl += nb;
        }
        head[hl] = 0;
        const char *want = "<｜begin▁of▁sentence｜><｜User｜>What is 2 + 2?<｜Assistant｜><think>\n";
        report(!strcmp(head, want), "chat data: the untrained prefix is the R1 prompt ('%s')", head);
        report(n_eos_mask == 2 && (think_end < 0 || has_end),
               "chat data: both answers end in a trained EOS (%lld); </think> is a trained token where the vocabulary has it",
               (long long)n_eos_mask);
        report(d.n_tokens == 2 * 64 + 1 || d.n_tokens == 64 + 1, "chat data: packed into blocks of 64 (+1): %lld tokens",
               (long long)d.n_tokens);
        uint8_t m[64];
        int32_t row[65];
        trn_data_val(&d, 0, 0, row, m);
        int64_t ep = 0, cur = 0;
        trn_data_next(&d, &ep, &cur, 1, row, m);
        int mm = 0;
        for (int i = 0; i < 64; i++) mm += m[i];
        report(mm > 0 && mm < 64, "chat data: a batch row carries %d target flags of 64", mm);
        trn_data_free(&d);
    }
    s = trn_data_load_chat(&d, tok, files, 1, eos, 12, 0, 1);
    report(s == DSC_ERR_ARG && strstr(dsc_last_error(), ":1:") && strstr(dsc_last_error(), "more than a sequence"),
           "chat data: an example longer than a sequence is refused (%s)", dsc_last_error());
    const char *bad[] = {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}\n",
                         "{\"messages\": [{\"role\": \"assistant\", \"content\": \"x\"}, {\"role\": \"user\", \"content\": \"y\"}]}\n",
                         "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}, {\"role\": \"robot\", \"content\": \"y\"}]}\n",
                         "[1, 2]\n", "{\"messages\": [{\"role\": \"user\", \"content\": 5}, {\"role\": \"assistant\", \"content\": \"y\"}]}\n"};
    int ok = 1;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        FILE *f = fopen(path, "wb");
        fputs(bad[i], f);
        fclose(f);
        s = trn_data_load_chat(&d, tok, files, 1, eos, 64, 0, 1);
        ok &= s != DSC_OK && strstr(dsc_last_error(), path) != NULL && strchr(dsc_last_error(), '\n') == NULL;
        if (!s) trn_data_free(&d);
    }
    report(ok, "chat data: 5 malformed examples refused with a one-line error naming the file");
    unlink(path);
    dsc_tokenizer_free(tok);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_rl GOLDEN_DIR\n");
        return 2;
    }
    test_advantages();
    test_token_weight();
    test_weighted_backward(argv[1]);
    test_chat_data(argv[1]);
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail != 0;
}
