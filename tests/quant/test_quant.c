/*
 * test_quant.c — the Q8 / Q4 writers against the reference decoding.
 *
 *   test_quant [GOLDEN_DIR]   (GOLDEN_DIR adds round trips of golden models)
 *
 * Blocks are quantised by src/io/quantize.c and decoded by the reference
 * kernel (kern_mat_row), so the bit layout is checked against the reader:
 *   F16 / BF16 rounding: every finite F16 value round-trips, ties go to even;
 *   Q8: every value within scale / 2, and the squared error of every block
 *       at most that of scale = F16(max|x| / 127) (computed here);
 *   Q4: squared error of every block at most that of ggml's q4_0 (computed
 *       here independently);
 *   on Gaussian data, RMS errors 8% (q8) and 5% (q4) below those baselines.
 * With GOLDEN_DIR, dsc_quantize on v3-tiny (BF16) and v3-fp8-tiny (FP8) to
 * q8 and q4: every output tensor is what the rules of quantize.c say (which
 * tensors, dtypes and shapes, qscale companions, no weight_scale_inv), kept
 * tensors hold the input's bytes (or its FP8 values in BF16), and quantised
 * ones decode to within the bounds above of the input's values.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dsc.h"
#include "io/config.h"
#include "io/quantize.h"
#include "io/safetensors.h"
#include "kernels/kernels.h"

#include "../check.h"

static uint64_t rng = 0x1234567;
static double urand(void) { /* [0, 1) */
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rng >> 11) * (1.0 / 9007199254740992.0);
}
static float grand(void) { /* N(0, 1) */
    return (float)(sqrt(-2 * log(1 - urand())) * cos(6.283185307179586 * urand()));
}

/* ------------------------------------------------------------------------ */
/* Scalars                                                                   */

static void test_f16(void) {
    int bad = 0, bad_tie = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        float v = kern_f16_to_f32((uint16_t)h);
        if (isnan(v)) continue;
        if (quant_f16(v) != h) bad++;
        /* the midpoint to the next larger magnitude rounds to the even code */
        uint32_t e = (h >> 10) & 0x1F;
        if (e == 31 || (h & 0x7FFF) == 0x7BFF) continue;
        float mid = (float)(((double)v + kern_f16_to_f32((uint16_t)(h + 1))) / 2);
        uint16_t want = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
        if (quant_f16(mid) != want) bad_tie++;
    }
    CHECK(bad == 0, "f16: %d finite codes do not round-trip", bad);
    CHECK(bad_tie == 0, "f16: %d midpoints not rounded to even", bad_tie);
    CHECK(quant_f16(65519.0f) == 0x7BFF && quant_f16(65520.0f) == 0x7C00, "f16 overflow threshold");
    CHECK(quant_f16(1e-9f) == 0 && quant_f16(-1e-9f) == 0x8000, "f16 underflow to signed zero");
    CHECK(quant_f16(3e-8f) == 0x0001 && quant_f16(2.9e-8f) == 0, "f16 smallest subnormal 2^-24, half of it 2.98e-8");
    CHECK(quant_bf16(1.0f) == 0x3F80 && quant_bf16(-3.0f) == 0xC040, "bf16 exact values");
    CHECK(quant_bf16(1.0f + 1.0f / 256) == 0x3F80, "bf16 tie to even (down)");
    CHECK(quant_bf16(1.0f + 3.0f / 256) == 0x3F82, "bf16 tie to even (up)");
    CHECK(isnan(kern_bf16_to_f32(quant_bf16(NAN))), "bf16 NaN stays NaN");
}

/* ------------------------------------------------------------------------ */
/* Blocks                                                                    */

/* A test block: Gaussian times a magnitude, with a few special shapes. */
static void make_block(float *x, int kind) {
    float mag = powf(10.0f, (float)(urand() * 9 - 6)); /* 1e-6 .. 1e3 */
    for (int i = 0; i < DSC_QBLOCK; i++) x[i] = mag * grand();
    if (kind == 1) memset(x, 0, sizeof(float) * DSC_QBLOCK);           /* zero block */
    if (kind == 2) x[(int)(urand() * DSC_QBLOCK)] = 50 * mag;           /* one outlier */
    if (kind == 3) for (int i = 0; i < DSC_QBLOCK; i++) x[i] = -mag;   /* constant */
    if (kind == 4) for (int i = 0; i < DSC_QBLOCK; i++) x[i] = (float)(i - 16) * 0.1f; /* ramp */
    if (kind == 5) { memset(x, 0, sizeof(float) * DSC_QBLOCK); x[7] = 1e-30f; } /* below F16 */
}

/* Squared error of x with levels [lo, hi] under the F16 rounding of scale d0. */
static double err_under(const float *x, float d0, int lo, int hi) {
    float d = kern_f16_to_f32(quant_f16(d0));
    double e = 0;
    for (int i = 0; i < DSC_QBLOCK; i++) {
        double l = d != 0 ? fmin(fmax(nearbyint(x[i] / d), lo), hi) : 0;
        e += (x[i] - l * d) * (x[i] - l * d);
    }
    return e;
}

/* ggml's q4_0: the largest-magnitude value x_m maps to -8, scale x_m / -8. */
static double q4_0_err(const float *x) {
    float m = 0;
    for (int i = 0; i < DSC_QBLOCK; i++)
        if (fabsf(x[i]) > fabsf(m)) m = x[i];
    return err_under(x, m / -8, -8, 7);
}

/* The plain Q8 choice, scale max|x| / 127 (one F16 step up if it would clip). */
static double q8_plain_err(const float *x) {
    float am = 0;
    for (int i = 0; i < DSC_QBLOCK; i++) am = fmaxf(am, fabsf(x[i]));
    uint16_t h = quant_f16(am / 127);
    if (am > 127.5 * kern_f16_to_f32(h)) h++;
    return err_under(x, kern_f16_to_f32(h), -128, 127);
}

static void test_blocks(void) {
    enum { NB = 8, NROUNDS = 2000 };
    float x[NB * DSC_QBLOCK], y[NB * DSC_QBLOCK];
    int8_t q8[NB * DSC_QBLOCK];
    uint8_t q4[NB * 16];
    uint16_t s8[NB], s4[NB];
    int bad8 = 0, bad8_block = 0, bad4 = 0;
    double worst8 = 0, worst4 = 0;
    for (int round = 0; round < NROUNDS; round++) {
        for (int b = 0; b < NB; b++) make_block(x + b * DSC_QBLOCK, b < 6 ? b : 0);
        for (int b = 0; b < NB; b++) {
            quant_block_q8(x + b * DSC_QBLOCK, q8 + b * DSC_QBLOCK, s8 + b);
            quant_block_q4(x + b * DSC_QBLOCK, q4 + b * 16, s4 + b);
        }
        dsc_mat w8 = {.type = DSC_W_Q8, .rows = 1, .cols = NB * DSC_QBLOCK, .data = q8, .qscale = s8};
        dsc_mat w4 = {.type = DSC_W_Q4, .rows = 1, .cols = NB * DSC_QBLOCK, .data = q4, .qscale = s4};
        kern_mat_row(y, &w8, 0);
        for (int b = 0; b < NB; b++) {
            double d = kern_f16_to_f32(s8[b]), eb = 0;
            for (int i = 0; i < DSC_QBLOCK; i++) {
                double e = fabs(x[b * DSC_QBLOCK + i] - y[b * DSC_QBLOCK + i]);
                if (d > 0 ? e > d / 2 * (1 + 1e-6) : e != 0) bad8++;
                if (d > 0) worst8 = fmax(worst8, e / d);
                eb += e * e;
            }
            if (eb > q8_plain_err(x + b * DSC_QBLOCK) * (1 + 1e-5) + 1e-45) bad8_block++;
        }
        kern_mat_row(y, &w4, 0);
        for (int b = 0; b < NB; b++) {
            double e = 0, e0 = q4_0_err(x + b * DSC_QBLOCK);
            for (int i = 0; i < DSC_QBLOCK; i++) {
                double r = x[b * DSC_QBLOCK + i] - y[b * DSC_QBLOCK + i];
                e += r * r;
            }
            if (e > e0 * (1 + 1e-5) + 1e-45) bad4++;
            if (e0 > 0) worst4 = fmax(worst4, e / e0);
        }
    }
    CHECK(bad8_block == 0, "q8: %d blocks worse than scale max|x| / 127", bad8_block);
    CHECK(bad8 == 0, "q8: %d values off by more than scale / 2 (worst %.3f scale)", bad8, worst8);
    CHECK(bad4 == 0, "q4: %d blocks worse than q4_0 (worst ratio of squared errors %.4f)", bad4, worst4);
    float nan_block[DSC_QBLOCK] = {0};
    nan_block[3] = NAN;
    CHECK(quant_block_q8(nan_block, q8, s8) == -1 && quant_block_q4(nan_block, q4, s4) == -1, "NaN is refused");
    nan_block[3] = INFINITY;
    CHECK(quant_block_q8(nan_block, q8, s8) == -1 && quant_block_q4(nan_block, q4, s4) == -1, "inf is refused");
    float big[DSC_QBLOCK];
    for (int i = 0; i < DSC_QBLOCK; i++) big[i] = 1e9f * (i % 2 ? 1 : -1);
    CHECK(quant_block_q8(big, q8, s8) == 0 && kern_f16_to_f32(s8[0]) == 65504.0f && q8[1] == 127,
          "q8 of 1e9 saturates at scale 65504");
}

/* RMS error relative to RMS value over Gaussian blocks: the searches must
 * beat the plain choices. */
static void test_search_gain(void) {
    enum { NB = 20000 };
    double e4 = 0, e4_0 = 0, e8 = 0, e8_0 = 0, v = 0;
    float x[DSC_QBLOCK], y[DSC_QBLOCK];
    uint8_t q4[16];
    int8_t q8[DSC_QBLOCK];
    uint16_t s;
    for (int b = 0; b < NB; b++) {
        for (int i = 0; i < DSC_QBLOCK; i++) x[i] = 0.02f * grand(), v += (double)x[i] * x[i];
        quant_block_q4(x, q4, &s);
        dsc_mat w = {.type = DSC_W_Q4, .rows = 1, .cols = DSC_QBLOCK, .data = q4, .qscale = &s};
        kern_mat_row(y, &w, 0);
        for (int i = 0; i < DSC_QBLOCK; i++) e4 += (double)(x[i] - y[i]) * (x[i] - y[i]);
        quant_block_q8(x, q8, &s);
        w = (dsc_mat){.type = DSC_W_Q8, .rows = 1, .cols = DSC_QBLOCK, .data = q8, .qscale = &s};
        kern_mat_row(y, &w, 0);
        for (int i = 0; i < DSC_QBLOCK; i++) e8 += (double)(x[i] - y[i]) * (x[i] - y[i]);
        e4_0 += q4_0_err(x);
        e8_0 += q8_plain_err(x);
    }
    double r4 = sqrt(e4 / v), r4_0 = sqrt(e4_0 / v), r8 = sqrt(e8 / v), r8_0 = sqrt(e8_0 / v);
    printf("Gaussian blocks, relative RMS error: q8 %.5f (max/127: %.5f), q4 %.4f (q4_0: %.4f)\n", r8, r8_0, r4, r4_0);
    CHECK(r8 < 0.92 * r8_0, "q8 relative RMS error %.5f is not 8%% below max/127's %.5f", r8, r8_0);
    CHECK(r4 < 0.95 * r4_0, "q4 relative RMS error %.4f is not 5%% below q4_0's %.4f", r4, r4_0);
}

/* ------------------------------------------------------------------------ */
/* Round trips of golden checkpoints                                        */

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* What quantize.c's rules make of input tensor t: 'C' copy, 'B' BF16, '8', '4'. */
static char expected_op(const st_tensor *t, int q4) {
    const char *n = t->name;
    int head = !strcmp(n, "lm_head.weight") || ends_with(n, ".shared_head.head.weight");
    int proj = !strncmp(n, "model.layers.", 13) && !ends_with(n, ".mlp.gate.weight") &&
               !ends_with(n, ".eh_proj.weight") && !ends_with(n, ".embed_tokens.weight");
    int mat = t->ndim == 2 && ends_with(n, ".weight") &&
              (t->dtype == ST_BF16 || t->dtype == ST_F32 || t->dtype == ST_F16 || t->dtype == ST_F8_E4M3);
    if (mat && t->shape[1] % 32 == 0 && (head || proj)) return q4 && strstr(n, ".mlp.experts.") ? '4' : '8';
    return t->dtype == ST_F8_E4M3 ? 'B' : 'C';
}

static dsc_wtype wtype_of(st_dtype d) {
    return d == ST_F32 ? DSC_W_F32 : d == ST_F16 ? DSC_W_F16 : d == ST_F8_E4M3 ? DSC_W_F8_E4M3 : DSC_W_BF16;
}

/* Every element of output tensor o against input tensor t; returns failures. */
static int check_values(const st_file *in, const st_file *out, const st_tensor *t, const st_tensor *o, char op,
                        const dsc_config *c) {
    const int rows = (int)t->shape[0], cols = (int)t->shape[1];
    dsc_mat src = {.type = wtype_of(t->dtype), .rows = rows, .cols = cols, .data = t->data};
    if (t->dtype == ST_F8_E4M3) {
        char sn[512];
        snprintf(sn, sizeof sn, "%s_scale_inv", t->name);
        const st_tensor *s = st_find(in, sn);
        if (!s) return 1;
        src.scale = (const float *)(const void *)s->data;
        src.block_rows = c->fp8_block_rows, src.block_cols = c->fp8_block_cols;
    }
    dsc_mat dst = {.rows = rows, .cols = cols, .data = o->data};
    if (op == 'B') dst.type = DSC_W_BF16;
    if (op == '8' || op == '4') {
        char qn[512];
        snprintf(qn, sizeof qn, "%s_qscale", t->name);
        const st_tensor *q = st_find(out, qn);
        if (!q || q->dtype != ST_F16 || q->ndim != 2 || q->shape[0] != rows || q->shape[1] != cols / 32) return 1;
        dst.type = op == '8' ? DSC_W_Q8 : DSC_W_Q4;
        dst.qscale = (const uint16_t *)(const void *)q->data;
    }
    float *a = malloc(sizeof(float) * (size_t)cols), *b = malloc(sizeof(float) * (size_t)cols);
    int bad = 0;
    for (int r = 0; r < rows; r++) {
        kern_mat_row(a, &src, r);
        kern_mat_row(b, &dst, r);
        if (op == 'B')
            for (int i = 0; i < cols; i++)
                bad += quant_bf16(a[i]) != ((const uint16_t *)(const void *)o->data)[(size_t)r * cols + i];
        for (int k = 0; k < cols / 32 && (op == '8' || op == '4'); k++) {
            double d = kern_f16_to_f32(dst.qscale[(size_t)r * (cols / 32) + k]), e = 0;
            for (int i = 32 * k; i < 32 * k + 32; i++) {
                e += (double)(a[i] - b[i]) * (a[i] - b[i]);
                if (op == '8' && fabs(a[i] - b[i]) > fabs(d) / 2 * (1 + 1e-6)) bad++;
            }
            double e0 = op == '4' ? q4_0_err(a + 32 * k) : q8_plain_err(a + 32 * k);
            if (e > e0 * (1 + 1e-5) + 1e-45) bad++;
        }
    }
    free(a);
    free(b);
    return bad;
}

/* Which output tensors quantised input t must become, and their check. */
static void check_tensor(const st_file *in, const st_file *out, const st_tensor *t, int q4, const dsc_config *c,
                         int *counts) {
    if (ends_with(t->name, "_scale_inv")) {
        CHECK(!st_find(out, t->name), "%s: the FP8 scale was not dropped", t->name);
        return;
    }
    const char op = expected_op(t, q4);
    const st_tensor *o = st_find(out, t->name);
    if (!o) {
        CHECK(0, "%s: missing from the output", t->name);
        return;
    }
    counts[op == '8' || op == '4']++;
    st_dtype want = op == 'C' ? t->dtype : op == 'B' ? ST_BF16 : op == '8' ? ST_I8 : ST_U8;
    int shape_ok = o->ndim == t->ndim;
    for (int d = 0; d < t->ndim && shape_ok; d++)
        shape_ok = o->shape[d] == (op == '4' && d == 1 ? t->shape[d] / 2 : t->shape[d]);
    CHECK(o->dtype == want && shape_ok, "%s: dtype %s (want %s) or shape wrong", t->name, st_dtype_name(o->dtype),
          st_dtype_name(want));
    if (o->dtype != want || !shape_ok) return;
    if (op == 'C') {
        CHECK(o->nbytes == t->nbytes && !memcmp(o->data, t->data, t->nbytes), "%s: not copied as it is", t->name);
        return;
    }
    int bad = check_values(in, out, t, o, op, c);
    CHECK(bad == 0, "%s (%c): %d values or blocks outside the bounds", t->name, op, bad);
}

static void test_roundtrip(const char *golden, const char *model, const char *type) {
    char in_dir[4096], out_dir[] = "/tmp/test_quant_XXXXXX", path[4200];
    snprintf(in_dir, sizeof in_dir, "%s/models/%s/model", golden, model);
    if (!mkdtemp(out_dir)) {
        CHECK(0, "mkdtemp failed");
        return;
    }
    dsc_status s = dsc_quantize(in_dir, out_dir, type);
    CHECK(s == DSC_OK, "dsc_quantize %s %s: %s", model, type, dsc_last_error());
    st_file in, out;
    dsc_config c;
    snprintf(path, sizeof path, "%s/config.json", in_dir);
    int ok = s == DSC_OK && config_load(path, &c) == DSC_OK;
    snprintf(path, sizeof path, "%s/model.safetensors", in_dir);
    ok = ok && st_open(path, &in) == DSC_OK;
    snprintf(path, sizeof path, "%s/model.safetensors", out_dir);
    if (ok && st_open(path, &out) != DSC_OK) {
        st_close(&in);
        ok = 0;
    }
    CHECK(ok, "%s %s: cannot open the output: %s", model, type, dsc_last_error());
    if (ok) {
        int counts[2] = {0, 0}, q_out = 0;
        for (int i = 0; i < in.n_tensors; i++) check_tensor(&in, &out, &in.tensors[i], !strcmp(type, "q4"), &c, counts);
        for (int i = 0; i < out.n_tensors; i++) q_out += ends_with(out.tensors[i].name, "_qscale");
        CHECK(q_out == counts[1] && out.n_tensors == counts[0] + 2 * counts[1], "%s %s: unexpected extra tensors",
              model, type);
        CHECK(counts[1] > 0, "%s %s: nothing was quantised", model, type);
        printf("%s %s: %d tensors quantised, %d kept\n", model, type, counts[1], counts[0]);
        dsc_model *m = NULL;
        CHECK(dsc_model_load(out_dir, NULL, &m) == DSC_OK, "%s %s: does not load: %s", model, type, dsc_last_error());
        dsc_model_free(m);
        st_close(&in);
        st_close(&out);
    }
    const char *names[] = {"model.safetensors", "config.json"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", out_dir, names[i]);
        unlink(path);
    }
    rmdir(out_dir);
}

int main(int argc, char **argv) {
    test_f16();
    test_blocks();
    test_search_gain();
    if (argc > 1) {
        const char *models[] = {"v3-tiny", "v3-fp8-tiny"};
        for (int i = 0; i < 2; i++) {
            test_roundtrip(argv[1], models[i], "q8");
            test_roundtrip(argv[1], models[i], "q4");
        }
    }
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail != 0;
}
