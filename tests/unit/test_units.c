/*
 * test_units.c — unit tests of kernels and blocks against hand-computed or
 * independently computed (double precision) values.
 *
 *   test_units [GOLDEN_DIR]   (GOLDEN_DIR enables the context tests)
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

#include "dsc.h"
#include "io/config.h"
#include "io/hugemap.h"
#include "io/safetensors.h"
#include "kernels/kernels.h"
#include "models/model.h"
#include "runtime/machine.h"
#include "train/train.h"

#include "../check.h"

static uint32_t rng_state = 12345;
static float frand(void) { /* uniform in [-1, 1) */
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)((rng_state >> 8) * (1.0 / 8388608.0) - 1.0);
}

static void test_conversions(void) {
    CHECK(kern_bf16_to_f32(0x3f80) == 1.0f, "bf16 1.0");
    CHECK(kern_bf16_to_f32(0xc040) == -3.0f, "bf16 -3.0");
    CHECK(kern_f16_to_f32(0x3c00) == 1.0f, "f16 1.0");
    CHECK(kern_f16_to_f32(0xc000) == -2.0f, "f16 -2.0");
    CHECK(kern_f16_to_f32(0x7bff) == 65504.0f, "f16 max");
    CHECK(kern_f16_to_f32(0x0001) == ldexpf(1, -24), "f16 smallest subnormal");
    CHECK(isinf(kern_f16_to_f32(0x7c00)), "f16 inf");
    CHECK(kern_e4m3_to_f32(0x38) == 1.0f, "e4m3 1.0");
    CHECK(kern_e4m3_to_f32(0xb8) == -1.0f, "e4m3 -1.0");
    CHECK(kern_e4m3_to_f32(0x7e) == 448.0f, "e4m3 max = 448, got %g", kern_e4m3_to_f32(0x7e));
    CHECK(kern_e4m3_to_f32(0x01) == ldexpf(1, -9), "e4m3 smallest subnormal");
    CHECK(kern_e4m3_to_f32(0x08) == ldexpf(1, -6), "e4m3 smallest normal");
    CHECK(isnan(kern_e4m3_to_f32(0x7f)) && isnan(kern_e4m3_to_f32(0xff)), "e4m3 NaN");
    CHECK(kern_e4m3_to_f32(0x3c) == 1.5f, "e4m3 1.5");
}

/* FP8 with partial edge blocks: every kernel against a double dequantisation. */
static void test_fp8_kernels(void) {
    enum { ROWS = 300, COLS = 200, BR = 128, BC = 128 };
    const int nbr = (ROWS + BR - 1) / BR, nbc = (COLS + BC - 1) / BC;
    uint8_t *q = malloc(ROWS * COLS);
    float *scale = malloc(sizeof(float) * nbr * nbc), x[COLS], row[COLS], y[COLS];
    for (int i = 0; i < ROWS * COLS; i++) {
        q[i] = (uint8_t)(rng_state = rng_state * 1664525u + 1013904223u) >> 24;
        if ((q[i] & 0x7f) == 0x7f) q[i] = 0x30; /* no NaNs */
    }
    for (int i = 0; i < nbr * nbc; i++) scale[i] = 0.5f + i * 0.25f;
    for (int c = 0; c < COLS; c++) x[c] = frand();
    dsc_mat w = {DSC_W_F8_E4M3, ROWS, COLS, q, scale, BR, BC, NULL};
    double worst_dot = 0, worst_row = 0;
    for (int r = 0; r < ROWS; r++) {
        double ref = 0;
        kern_mat_row(row, &w, r);
        for (int c = 0; c < COLS; c++) {
            double v = (double)kern_e4m3_to_f32(q[r * COLS + c]) * scale[(r / BR) * nbc + c / BC];
            worst_row = fmax(worst_row, fabs(row[c] - v));
            ref += v * x[c];
        }
        worst_dot = fmax(worst_dot, fabs(kern_mat_row_dot(&w, r, x) - ref) / (1 + fabs(ref)));
    }
    CHECK(worst_row == 0, "fp8 row dequant differs by %g", worst_row);
    CHECK(worst_dot < 1e-5, "fp8 row dot rel err %g", worst_dot);
    memset(y, 0, sizeof y);
    kern_mat_row_axpy(y, &w, 299, 2.0f);
    kern_mat_row(row, &w, 299);
    double d = 0;
    for (int c = 0; c < COLS; c++) d = fmax(d, fabs(y[c] - 2.0 * row[c]));
    CHECK(d < 1e-6, "fp8 axpy err %g", d);
    /* matmul_rows = the row slice of matmul */
    float full[2 * ROWS], part[2 * 50], x2[2 * COLS];
    for (int i = 0; i < 2 * COLS; i++) x2[i] = frand();
    kern_matmul(full, x2, &w, 2);
    kern_matmul_rows(part, 50, x2, &w, 2, 120, 170);
    d = 0;
    for (int t = 0; t < 2; t++)
        for (int r = 0; r < 50; r++) d = fmax(d, fabs(part[t * 50 + r] - full[t * ROWS + 120 + r]));
    CHECK(d == 0, "matmul_rows differs from matmul by %g", d);
    free(q);
    free(scale);
}

static void test_dtype_agreement(void) {
    /* The same values stored as F32, BF16 and F16 give the same products. */
    enum { R = 7, C = 33 };
    float f[R * C], x[C];
    uint16_t b[R * C], h[R * C];
    for (int i = 0; i < R * C; i++) {
        b[i] = (uint16_t)(0x3c00 + (i % 64)); /* also a valid f16 bit pattern range */
        f[i] = kern_bf16_to_f32(b[i]);
        h[i] = b[i];
    }
    for (int c = 0; c < C; c++) x[c] = frand();
    dsc_mat wf = {DSC_W_F32, R, C, f, NULL, 0, 0, NULL}, wb = {DSC_W_BF16, R, C, b, NULL, 0, 0, NULL};
    dsc_mat wh = {DSC_W_F16, R, C, h, NULL, 0, 0, NULL};
    double d = 0;
    for (int r = 0; r < R; r++) d = fmax(d, fabs(kern_mat_row_dot(&wf, r, x) - kern_mat_row_dot(&wb, r, x)));
    CHECK(d == 0, "bf16 vs f32 dot differ by %g", d);
    float row[C];
    kern_mat_row(row, &wh, 3);
    CHECK(row[0] == kern_f16_to_f32(h[3 * C]), "f16 row");
}

/* FP8 rows with subnormal weights under a caller's denormals-are-zero and
 * flush-to-zero modes (what -ffast-math programs set): every kernel set
 * still gives the reference's values, computed with both modes off, and
 * leaves the modes as it found them. */
static void test_fp8_daz(void) {
#if defined(__x86_64__) || defined(__i386__)
    enum { ROWS = 6, C = 128 };
    uint8_t data[ROWS * C];
    float scale[1] = {0.25f}, x[C], yr[ROWS], yk[ROWS];
    for (int i = 0; i < ROWS * C; i++) data[i] = (uint8_t)((i * 37 % 8) | (i % 3 ? 0 : 0x40) | (i & 1) << 7);
    for (int i = 0; i < C; i++) x[i] = frand();
    const dsc_mat w = {DSC_W_F8_E4M3, ROWS, C, data, scale, 128, 128, NULL};
    kern_ref.matmul_rows(yr, ROWS, x, &w, 1, 0, ROWS);
    const char *const *isas = kern_available();
    const unsigned csr = _mm_getcsr();
    for (int ii = 1; isas[ii]; ii++) {
        _mm_setcsr(csr | 0x8040u);
        kern_select(isas[ii])->matmul_rows(yk, ROWS, x, &w, 1, 0, ROWS);
        const unsigned after = _mm_getcsr();
        _mm_setcsr(csr);
        double worst = 0, mag = 0;
        for (int r = 0; r < ROWS; r++) worst = fmax(worst, fabs(yr[r] - yk[r])), mag = fmax(mag, fabs(yr[r]));
        CHECK(worst <= 1e-5 * mag && (after & 0x8040u) == 0x8040u, "%s fp8 rows under DAZ/FTZ: max err %g of %g",
              isas[ii], worst, mag);
    }
#endif
}

/* Q8 and Q4 rows whose x the kernels cannot scale to integers: not finite,
 * all zero, or tiny. Each kernel set gives what the reference gives: the
 * same infinities and NaNs, zeros, and tiny values to the usual tolerance. */
static void test_q_rows_odd_x(void) {
    const char *const *isas = kern_available();
    enum { ROWS = 5, C = 64 };
    uint8_t data[ROWS * C];
    uint16_t qscale[ROWS * C / DSC_QBLOCK];
    for (int i = 0; i < ROWS * C; i++) data[i] = (uint8_t)((rng_state = rng_state * 1664525u + 1013904223u) >> 24);
    for (int i = 0; i < ROWS * C / DSC_QBLOCK; i++) qscale[i] = (uint16_t)(0x2c00 + 97 * i % 0x400);
    const char *what[] = {"an infinity", "a NaN", "zeros", "tiny values", "subnormals"};
    for (int ty = 0; ty < 2; ty++)
        for (int k = 0; k < 5; k++) {
            dsc_mat w = {ty ? DSC_W_Q4 : DSC_W_Q8, ROWS, C, data, NULL, 0, 0, qscale};
            float x[C], yr[ROWS], yk[ROWS];
            for (int i = 0; i < C; i++) x[i] = k == 2 ? 0.0f : frand() * (k == 3 ? 1e-30f : k == 4 ? 1e-39f : 1.0f);
            if (k == 0) x[7] = -INFINITY;
            if (k == 1) x[40] = NAN;
            kern_ref.matmul_rows(yr, ROWS, x, &w, 1, 0, ROWS);
            for (int ii = 1; isas[ii]; ii++) {
                kern_select(isas[ii])->matmul_rows(yk, ROWS, x, &w, 1, 0, ROWS);
                double worst = 0, mag = 0;
                int same = 1;
                for (int r = 0; r < ROWS; r++) {
                    if (isfinite(yr[r]) && isfinite(yk[r])) {
                        worst = fmax(worst, fabs(yr[r] - yk[r]));
                        mag = fmax(mag, fabs(yr[r]));
                    } else same &= isnan(yr[r]) ? isnan(yk[r]) != 0 : yr[r] == yk[r];
                }
                CHECK(same && worst <= 1e-5 * mag, "%s %s rows with %s in x: max err %g of %g", isas[ii],
                      ty ? "q4" : "q8", what[k], worst, mag);
                /* the same x between two ordinary tokens: each token of the batch gets the bits it gets alone */
                float xb[3 * C], yb[3 * ROWS], y1[ROWS];
                for (int i = 0; i < C; i++) xb[i] = frand(), xb[C + i] = x[i], xb[2 * C + i] = frand();
                kern_select(isas[ii])->matmul_rows(yb, ROWS, xb, &w, 3, 0, ROWS);
                int alone = 1;
                for (int t = 0; t < 3; t++) {
                    kern_select(isas[ii])->matmul_rows(y1, ROWS, xb + t * C, &w, 1, 0, ROWS);
                    alone &= !memcmp(y1, yb + t * ROWS, sizeof y1);
                }
                CHECK(alone || strcmp(isas[ii], "avx2"), "%s %s rows with %s in x, in a batch = alone", isas[ii],
                      ty ? "q4" : "q8", what[k]);
            }
        }
}

/* Q8 and Q4 rows at the limits of the integer products: every weight at
 * the most negative (or most positive) value of its type and every x
 * just below a power of two, of one sign or alternating, so that the
 * kernels' split of x comes out at the top of its range and the integer
 * sums as large as they get. Each kernel set gives what the reference gives. */
static void test_q_rows_limits(void) {
    const char *const *isas = kern_available();
    enum { ROWS = 4, C = 96 };
    uint8_t data[ROWS * C];
    uint16_t qscale[ROWS * C / DSC_QBLOCK];
    for (int i = 0; i < ROWS * C / DSC_QBLOCK; i++) qscale[i] = 0x3c00; /* 1.0 */
    for (int ty = 0; ty < 2; ty++)
        for (int k = 0; k < 4; k++) {
            /* rows: all lowest, all highest, alternating lowest / highest, lowest then highest by halves */
            const int rb = ty ? C / 2 : C; /* bytes per row */
            for (int r = 0; r < ROWS; r++)
                for (int c = 0; c < rb; c++) {
                    const int hi = r == 1 || (r == 2 && (c & 1)) || (r == 3 && c >= rb / 2);
                    data[r * rb + c] = ty ? (uint8_t)(hi ? 0xff : 0x00) : (uint8_t)(hi ? 0x7f : 0x80);
                }
            dsc_mat w = {ty ? DSC_W_Q4 : DSC_W_Q8, ROWS, C, data, NULL, 0, 0, qscale};
            float x[C], yr[ROWS], yk[ROWS];
            for (int i = 0; i < C; i++) {
                const float m = k < 2 ? 0.99999994f : 1.9999999f * 1024; /* just below 1 or 2048 */
                x[i] = (k & 1) && (i & 1) ? m : -m;
            }
            kern_ref.matmul_rows(yr, ROWS, x, &w, 1, 0, ROWS);
            for (int ii = 1; isas[ii]; ii++) {
                kern_select(isas[ii])->matmul_rows(yk, ROWS, x, &w, 1, 0, ROWS);
                double worst = 0, mag = 0;
                for (int r = 0; r < ROWS; r++) worst = fmax(worst, fabs(yr[r] - yk[r])), mag = fmax(mag, fabs(yr[r]));
                CHECK(worst <= 1e-5 * mag, "%s %s rows at the limits (case %d): max err %g of %g", isas[ii], ty ? "q4" : "q8",
                      k, worst, mag);
            }
        }
}

/* Q4 rows multiply x rounded to 8 bits per block (kernels.h). The
 * rounding itself: the largest |x| becomes +-127, every value within half
 * a step, ties to even; zeros and blocks below DSC_Q8X_MIN give d = 0,
 * infinities and NaNs d = NaN, all with q = 0. Then the products of every
 * kernel set against that definition summed in double, for 1 and 5 tokens
 * and an odd last block, and kern_q8_round = q x d. */
static void test_q4_rounds_x(void) {
    int8_t q[DSC_QBLOCK];
    float x[DSC_QBLOCK];
    for (int i = 0; i < DSC_QBLOCK; i++) x[i] = frand() * 3.0f;
    x[5] = -4.0f; /* the largest */
    x[9] = -4.0f * 2.5f / 127; /* a tie: 2.5 steps rounds to 2 */
    x[10] = 4.0f * 3.5f / 127; /* 3.5 steps to 4 */
    float d = kern_q8_round_block(q, x);
    int within = 1;
    for (int i = 0; i < DSC_QBLOCK; i++) within &= fabs(x[i] - q[i] * (double)d) <= 0.5000001 * d;
    CHECK(d == 4.0f / 127 && q[5] == -127 && within, "8-bit x: d %g (4/127 expected), q[5] %d, within half a step %d", d,
          q[5], within);
    CHECK(q[9] == -2 && q[10] == 4, "8-bit x: ties to even (%d, %d for -2.5, 3.5 steps)", q[9], q[10]);
    const float odd[4] = {INFINITY, NAN, 0.0f, 1e-37f};
    for (int k = 0; k < 4; k++) {
        for (int i = 0; i < DSC_QBLOCK; i++) x[i] = k < 2 && i != 3 ? frand() : odd[k];
        d = kern_q8_round_block(q, x);
        int zero = 1;
        for (int i = 0; i < DSC_QBLOCK; i++) zero &= q[i] == 0;
        CHECK(zero && (k < 2 ? isnan(d) : d == 0), "8-bit x of a block with %g: d %g", odd[k], d);
    }
    enum { ROWS = 6, C = 160, NT = 5 };
    uint8_t data[ROWS * C / 2];
    uint16_t qscale[ROWS * C / DSC_QBLOCK];
    for (int i = 0; i < ROWS * C / 2; i++) data[i] = (uint8_t)((rng_state = rng_state * 1664525u + 1013904223u) >> 24);
    for (int i = 0; i < ROWS * C / DSC_QBLOCK; i++) qscale[i] = (uint16_t)(0x2c00 + 97 * i % 0x400);
    const dsc_mat w = {DSC_W_Q4, ROWS, C, data, NULL, 0, 0, qscale};
    float xs[NT * C], xr[NT * C], y[NT * ROWS];
    for (int i = 0; i < NT * C; i++) xs[i] = frand() * (i % 7 ? 1.0f : 5.0f);
    double want[NT * ROWS];
    for (int t = 0; t < NT; t++)
        for (int r = 0; r < ROWS; r++) {
            double s = 0;
            for (int b = 0; b < C / DSC_QBLOCK; b++) {
                const double db = kern_q8_round_block(q, xs + t * C + DSC_QBLOCK * b);
                const uint8_t *blk = data + r * C / 2 + 16 * b;
                int64_t isum = 0;
                for (int c = 0; c < 16; c++) isum += ((blk[c] & 15) - 8) * q[c] + ((blk[c] >> 4) - 8) * q[c + 16];
                s += (double)isum * kern_f16_to_f32(qscale[r * C / DSC_QBLOCK + b]) * db;
            }
            want[t * ROWS + r] = s;
        }
    const char *const *isas = kern_available();
    for (int ii = 0; isas[ii]; ii++)
        for (int n = 1; n <= NT; n += NT - 1) {
            kern_select(isas[ii])->matmul_rows(y, ROWS, xs, &w, n, 0, ROWS);
            double worst = 0, mag = 0;
            for (int i = 0; i < n * ROWS; i++) worst = fmax(worst, fabs(y[i] - want[i])), mag = fmax(mag, fabs(want[i]));
            CHECK(worst <= 1e-6 * mag, "%s q4 rows of %d token(s) against x rounded to 8 bits: max err %g of %g", isas[ii],
                  n, worst, mag);
        }
    kern_q8_round(xr, xs, NT * C);
    int same = 1;
    for (int b = 0; b < NT * C / DSC_QBLOCK; b++) {
        d = kern_q8_round_block(q, xs + DSC_QBLOCK * b);
        for (int c = 0; c < DSC_QBLOCK; c++) same &= xr[DSC_QBLOCK * b + c] == q[c] * d;
    }
    CHECK(same, "kern_q8_round = q x d");
    /* every set's q8_round (prefill's x for a Q4 gemm) = kern_q8_round to the bit, NaN blocks NaN */
    xs[40] = NAN, xs[100] = -INFINITY;
    for (int c = 128; c < 160; c++) xs[c] = 1e-38f * frand();
    kern_q8_round(xr, xs, NT * C);
    for (int ii = 0; isas[ii]; ii++) {
        float xk[NT * C];
        kern_select(isas[ii])->q8_round(xk, xs, NT * C);
        int bits = 1;
        for (int i = 0; i < NT * C; i++) bits &= isnan(xr[i]) ? isnan(xk[i]) != 0 : !memcmp(&xr[i], &xk[i], sizeof(float));
        CHECK(bits && isnan(xr[33]) && xr[130] == 0, "%s q8_round = kern_q8_round", isas[ii]);
    }
}

/* relu_wsum (V3.2's index scores): every set = the reference to the bit,
 * for block widths with and without a SIMD tail, with negative, zero,
 * minus-zero and NaN products and negative weights; and the reference =
 * the definition summed in head order. */
static void test_relu_wsum(void) {
    enum { H = 13, LD = 72 };
    static float d[H * LD], w[H], want[LD], got[LD];
    for (int i = 0; i < H * LD; i++) d[i] = frand() * 4.0f - 2.0f;
    for (int h = 0; h < H; h++) w[h] = frand() * 2.0f - 0.5f;
    d[3] = 0.0f, d[LD + 3] = -0.0f, d[2 * LD + 5] = NAN, d[4 * LD + 9] = -INFINITY;
    const int widths[] = {1, 5, 8, 13, 64, 71};
    for (int k = 0; k < 6; k++) {
        const int np = widths[k];
        kern_ref.relu_wsum(want, d, LD, w, H, np);
        int def = 1;
        for (int p = 0; p < np; p++) {
            float s = 0;
            for (int h = 0; h < H; h++) s += d[h * LD + p] > 0 ? w[h] * d[h * LD + p] : 0;
            def &= !memcmp(&s, &want[p], sizeof s);
        }
        CHECK(def, "ref relu_wsum = its definition, %d positions", np);
        for (const char *const *isa = kern_available(); *isa; isa++) {
            memset(got, 0xff, sizeof got);
            kern_select(*isa)->relu_wsum(got, d, LD, w, H, np);
            CHECK(!memcmp(got, want, sizeof(float) * (size_t)np) && got[np] != got[np],
                  "%s relu_wsum = the reference to the bit, %d positions (and no more written)", *isa, np);
        }
    }
}

/* Every kernel set against the reference, for every weight type, with
 * column counts that leave SIMD tails and row ranges with partial tiles. */
static void test_isa_kernels(void) {
    const char *const *isas = kern_available();
    const dsc_wtype types[] = {DSC_W_F32, DSC_W_BF16, DSC_W_F16, DSC_W_F8_E4M3, DSC_W_Q8, DSC_W_Q4};
    const char *tname[] = {"f32", "bf16", "f16", "fp8", "q8", "q4"};
    /* {cols, quantised-only}; 352: Q4's groups of 8 blocks, a pair and an odd block */
    const int colsets[][2] = {{203, 0}, {200, 0}, {96, 1}, {256, 1}, {352, 1}};
    enum { ROWS = 37, NT = 9, CMAX = 352 };
    for (int ti = 0; ti < 6; ti++)
        for (int ci = 0; ci < 5; ci++) {
            const dsc_wtype ty = types[ti];
            const int q = ty == DSC_W_Q8 || ty == DSC_W_Q4, C = colsets[ci][0];
            if (q != colsets[ci][1] && q) continue;
            if (q && C % DSC_QBLOCK) continue;
            size_t nbytes = (size_t)ROWS * C * 4;
            uint8_t *data = malloc(nbytes);
            for (size_t i = 0; i < nbytes; i++) data[i] = (uint8_t)((rng_state = rng_state * 1664525u + 1013904223u) >> 24);
            if (ty == DSC_W_F32)
                for (int i = 0; i < ROWS * C; i++) ((float *)data)[i] = frand();
            if (ty == DSC_W_BF16 || ty == DSC_W_F16) /* finite values of moderate size */
                for (int i = 0; i < ROWS * C; i++) ((uint16_t *)data)[i] = (uint16_t)((ty == DSC_W_BF16 ? 0x3c00 : 0x3000) + (data[2 * i] & 0x3ff)) | (uint16_t)((data[2 * i + 1] & 1) << 15);
            if (ty == DSC_W_F8_E4M3)
                for (int i = 0; i < ROWS * C; i++)
                    if ((data[i] & 0x7f) == 0x7f) data[i] = 0x42;
            float scale[64];
            uint16_t qscale[ROWS * CMAX / DSC_QBLOCK];
            for (int i = 0; i < 64; i++) scale[i] = 0.01f + 0.003f * i;
            for (int i = 0; i < ROWS * CMAX / DSC_QBLOCK; i++) qscale[i] = (uint16_t)(0x2000 + 37 * i % 0x1000) | (uint16_t)((i & 1) << 15);
            dsc_mat w = {ty, ROWS, C, data, scale, 128, 128, qscale};
            float x[NT * CMAX], a[ROWS], yr[NT * ROWS], yk[NT * ROWS], vr[CMAX], vk[CMAX];
            for (int i = 0; i < NT * C; i++) x[i] = frand();
            for (int i = 0; i < ROWS; i++) a[i] = frand();
            for (int ii = 1; isas[ii]; ii++) {
                const dsc_kernels *k = kern_select(isas[ii]);
                double worst = 0, mag = 0;
                int alone = 1; /* each token of a few-token product gets the bits it gets alone */
                for (int n = 1; n <= NT; n += (n < 8 ? 1 : 2)) {
                    kern_ref.matmul_rows(yr, ROWS, x, &w, n, 3, ROWS);
                    k->matmul_rows(yk, ROWS, x, &w, n, 3, ROWS);
                    for (int t = 0; t < n; t++) {
                        for (int r = 0; r < ROWS - 3; r++) {
                            worst = fmax(worst, fabs(yr[t * ROWS + r] - yk[t * ROWS + r]));
                            mag = fmax(mag, fabs(yr[t * ROWS + r]));
                        }
                        k->matmul_rows(vk, ROWS, x + t * C, &w, 1, 3, ROWS);
                        alone &= !memcmp(vk, yk + t * ROWS, sizeof(float) * (ROWS - 3));
                    }
                }
                CHECK(worst <= 1e-5 * mag, "%s matmul_rows %s cols %d: max err %g of %g", isas[ii], tname[ti], C, worst, mag);
                CHECK(alone || strcmp(isas[ii], "avx2"), "%s matmul_rows %s cols %d: a token in a batch = alone", isas[ii],
                      tname[ti], C);
                for (int i = 0; i < C; i++) vr[i] = vk[i] = x[i];
                kern_ref.matvec_t(vr, a, &w, 5, ROWS);
                k->matvec_t(vk, a, &w, 5, ROWS);
                worst = mag = 0;
                for (int i = 0; i < C; i++) worst = fmax(worst, fabs(vr[i] - vk[i])), mag = fmax(mag, fabs(vr[i]));
                CHECK(worst <= 1e-5 * mag, "%s matvec_t %s cols %d: max err %g of %g", isas[ii], tname[ti], C, worst, mag);
                worst = mag = 0; /* mat_row: every row decoded as the reference does (to a rounding of the scale) */
                for (int r = 0; r < ROWS; r++) {
                    kern_ref.mat_row(vr, &w, r);
                    k->mat_row(vk, &w, r);
                    for (int i = 0; i < C; i++) worst = fmax(worst, fabs(vr[i] - vk[i])), mag = fmax(mag, fabs(vr[i]));
                }
                CHECK(worst <= 1e-6 * mag, "%s mat_row %s cols %d: max err %g of %g", isas[ii], tname[ti], C, worst, mag);
                if (ti == 0) {
                    double dr = kern_ref.dot(x, x + C, C), dk = k->dot(x, x + C, C);
                    CHECK(fabs(dr - dk) <= 1e-5 * (1 + fabs(dr)), "%s dot n %d", isas[ii], C);
                    for (int i = 0; i < C; i++) vr[i] = vk[i] = x[2 * C + i];
                    kern_ref.axpy(vr, x, 0.7f, C);
                    k->axpy(vk, x, 0.7f, C);
                    worst = 0;
                    for (int i = 0; i < C; i++) worst = fmax(worst, fabs(vr[i] - vk[i]));
                    CHECK(worst < 1e-6, "%s axpy n %d", isas[ii], C);
                }
            }
            free(data);
        }
}

/* gemm_w (weight rows decoded straight into the gemm's panels) gives the
 * bits of mat_row then gemm, for every weight type: a partial last panel,
 * a column tail, an offset row and column block, C accumulated. */
static void test_gemm_w(void) {
    enum { ROWS = 45, C = 224, M = 13, R0 = 3, N = 37 };
    const dsc_wtype types[] = {DSC_W_F32, DSC_W_BF16, DSC_W_F16, DSC_W_F8_E4M3, DSC_W_Q8, DSC_W_Q4};
    const char *tname[] = {"f32", "bf16", "f16", "fp8", "q8", "q4"};
    const int blocks[][2] = {{16, 203}, {8, 64}, {5, 211}}; /* {k0, K}: a column tail; none; k0 off the 8-grid */
    static uint8_t data[ROWS * C * 4];
    static float a[M * C], rows[N * C], pack[8192 * 8], cr[M * N], ck[M * N], scale[64];
    static uint16_t qscale[ROWS * C / 32];
    for (size_t i = 0; i < sizeof data; i++) data[i] = (uint8_t)((rng_state = rng_state * 1664525u + 1013904223u) >> 24);
    for (int i = 0; i < M * C; i++) a[i] = frand();
    for (int i = 0; i < 64; i++) scale[i] = 0.01f + 0.003f * i;
    for (int i = 0; i < ROWS * C / 32; i++) qscale[i] = (uint16_t)(0x2000 + 37 * i % 0x1000);
    const char *const *isas = kern_available();
    for (int ti = 0; ti < 6; ti++) {
        const dsc_wtype ty = types[ti];
        if (ty == DSC_W_F32)
            for (int i = 0; i < ROWS * C; i++) ((float *)data)[i] = frand();
        if (ty == DSC_W_BF16 || ty == DSC_W_F16)
            for (int i = 0; i < ROWS * C; i++)
                ((uint16_t *)data)[i] = (uint16_t)((ty == DSC_W_BF16 ? 0x3c00 : 0x3000) + (i * 7919 % 0x300)) | (uint16_t)((i & 1) << 15);
        if (ty == DSC_W_F8_E4M3)
            for (int i = 0; i < ROWS * C; i++)
                if ((data[i] & 0x7f) == 0x7f) data[i] = 0x42;
        const dsc_mat w = {ty, ROWS, C, data, scale, 128, 128, qscale};
        for (int ii = 0; isas[ii]; ii++) {
            const dsc_kernels *k = kern_select(isas[ii]);
            if (!k->gemm_w) continue;
            for (int bi = 0; bi < 3; bi++) {
                const int k0 = blocks[bi][0], K = blocks[bi][1];
                CHECK(kern_gemm_scratch(M, N, K, 0) <= sizeof pack / sizeof *pack, "gemm_w test: scratch");
                for (int r = 0; r < N; r++) k->mat_row(rows + r * C, &w, R0 + r);
                for (int i = 0; i < M * N; i++) cr[i] = ck[i] = 0.25f * (float)(i % 7);
                k->gemm(cr, N, a, C, rows + k0, C, M, N, K, DSC_GEMM_ACC, pack);
                k->gemm_w(ck, N, a, C, M, &w, R0, N, k0, K, DSC_GEMM_ACC, pack);
                CHECK(!memcmp(cr, ck, sizeof cr), "%s gemm_w %s columns %d..%d = mat_row then gemm, to the bit", isas[ii],
                      tname[ti], k0, k0 + K);
            }
        }
    }
}

/* n values of the same matrix as F32, BF16 and Q8 (with n / 32 scales),
 * for the cache kernels' tests. */
static void fill_cache_types(float *wf, uint16_t *wb, int8_t *wq, uint16_t *qs, int n) {
    for (int i = 0; i < n; i++) {
        wf[i] = frand();
        wb[i] = (uint16_t)(0x3c00 + (i * 7919 % 0x300)) | (uint16_t)((i & 1) << 15);
        wq[i] = (int8_t)(i * 7919 % 255 - 127);
    }
    for (int i = 0; i < n / DSC_QBLOCK; i++) qs[i] = (uint16_t)(0x2000 + 37 * i % 0x1000) | (uint16_t)((i & 1) << 15);
}

/* matvec_tm (several vectors in one pass) against the reference: 11 vectors
 * = groups of 8 + 3 (AVX-512) or 6 + 4 + 1 (AVX2), and 8 (one group, as MLA
 * decode gives a thread), F32, BF16 and Q8 rows (a Q8 latent cache), column
 * tails. */
static void test_matvec_tm(void) {
    enum { ROWS = 50, CMAX = 96, MMAX = 11 };
    static float wf[ROWS * CMAX], a[MMAX * ROWS], yr[MMAX * CMAX], yk[MMAX * CMAX];
    static uint16_t wb[ROWS * CMAX], qs[ROWS * CMAX / DSC_QBLOCK];
    static int8_t wq[ROWS * CMAX];
    const int cases[][2] = {{11, 72}, {8, 72}, {8, 77}, {11, 96}, {8, 96}}; /* {vectors, columns} */
    const char *const tname[] = {"f32", "bf16", "q8"};
    fill_cache_types(wf, wb, wq, qs, ROWS * CMAX);
    for (int i = 0; i < MMAX * ROWS; i++) a[i] = frand();
    const char *const *isas = kern_available();
    for (int k = 0; k < 5; k++) {
        const int M = cases[k][0], C = cases[k][1];
        const dsc_mat mats[3] = {{DSC_W_F32, ROWS, C, wf, NULL, 0, 0, NULL},
                                 {DSC_W_BF16, ROWS, C, wb, NULL, 0, 0, NULL},
                                 {DSC_W_Q8, ROWS, C, wq, NULL, 0, 0, qs}};
        for (int ii = 1; isas[ii]; ii++)
            for (int t = 0; t < 3; t++) {
                if (t == 2 && C % DSC_QBLOCK) continue;
                for (int i = 0; i < M * C; i++) yr[i] = yk[i] = 0.5f;
                kern_ref.matvec_tm(yr, C, a, ROWS, M, &mats[t], 2, ROWS);
                kern_select(isas[ii])->matvec_tm(yk, C, a, ROWS, M, &mats[t], 2, ROWS);
                double d = 0, mx = 0;
                for (int i = 0; i < M * C; i++) d = fmax(d, fabs(yr[i] - yk[i])), mx = fmax(mx, fabs(yr[i]));
                CHECK(d <= 1e-5 * mx, "%s matvec_tm %s, %d vectors, %d columns: %g of %g", isas[ii], tname[t], M, C, d, mx);
                /* the same bits one vector at a time (MLA decode gives each thread its heads' vectors, so
                 * the result must not depend on the number of threads) */
                for (int i = 0; i < M * C; i++) yr[i] = 0.5f;
                for (int v = 0; v < M; v++)
                    kern_select(isas[ii])->matvec_tm(yr + v * C, C, a + v * ROWS, ROWS, 1, &mats[t], 2, ROWS);
                CHECK(!memcmp(yr, yk, sizeof(float) * (size_t)(M * C)) || strcmp(isas[ii], "avx2"),
                      "%s matvec_tm %s, %d vectors, %d columns: one call = one vector at a time", isas[ii], tname[t],
                      M, C);
            }
    }
}

/* MLA decode attention's two products against the reference for F32, BF16
 * and Q8 cache rows: the scores of 6, 8 and 11 heads over 38 and 37 rows
 * (tiles of 4 heads x 3 rows and every edge), the rows decoded into the buffer exactly
 * as mat_row decodes them, then the weighted sums over 512 and 77 columns;
 * each head's values the bits it gets alone. */
static void test_attn(void) {
    enum { ROWS = 40, C = 576, M = 11 };
    static float wf[ROWS * C], x[M * C], yr[M * ROWS], yk[M * ROWS], y1[ROWS], a[M * ROWS];
    static float br[ROWS * 600], bk[ROWS * 600], or_[M * C], ok[M * C], o1[C];
    static uint16_t wb[ROWS * C], qs[ROWS * C / DSC_QBLOCK];
    static int8_t wq[ROWS * C];
    const int64_t ld = kern_attn_ld(C);
    CHECK(ld >= C && ld * 4 % 64 == 0 && ld * 4 / 64 % 2 == 1 && ld <= 600, "kern_attn_ld(%d) = %ld", C, (long)ld);
    fill_cache_types(wf, wb, wq, qs, ROWS * C);
    for (int i = 0; i < M * C; i++) x[i] = frand();
    for (int i = 0; i < M * ROWS; i++) a[i] = frand();
    const dsc_mat mats[3] = {{DSC_W_F32, ROWS, C, wf, NULL, 0, 0, NULL},
                             {DSC_W_BF16, ROWS, C, wb, NULL, 0, 0, NULL},
                             {DSC_W_Q8, ROWS, C, wq, NULL, 0, 0, qs}};
    const char *const tname[] = {"f32", "bf16", "q8"};
    const char *const *isas = kern_available();
    const int ms[] = {6, 8, 11}; /* heads: tiles of 4 + 2, 4 + 4, 4 + 4 + 3 */
    for (int ii = 1; isas[ii]; ii++)
        for (int t = 0; t < 3; t++)
            for (int mi = 0; mi < 6; mi++) {
                /* rows R0..ROWS: 38 (groups of 3, then 2) or 37 (then 1) */
                const int m = ms[mi % 3], R0 = 2 + mi / 3, NP = ROWS - R0;
                const dsc_kernels *k = kern_select(isas[ii]);
                kern_ref.attn_scores(yr, ROWS, x, m, &mats[t], R0, ROWS, br, ld);
                k->attn_scores(yk, ROWS, x, m, &mats[t], R0, ROWS, bk, ld);
                int rows_same = 1;
                for (int r = 0; r < NP; r++) rows_same &= !memcmp(br + r * ld, bk + r * ld, sizeof(float) * C);
                CHECK(rows_same, "%s attn_scores %s: the rows as mat_row decodes them", isas[ii], tname[t]);
                double d = 0, mx = 0;
                int alone = 1;
                for (int v = 0; v < m; v++) {
                    for (int r = 0; r < NP; r++)
                        d = fmax(d, fabs(yr[v * ROWS + r] - yk[v * ROWS + r])), mx = fmax(mx, fabs(yr[v * ROWS + r]));
                    k->attn_scores(y1, ROWS, x + v * C, 1, &mats[t], R0, ROWS, bk, ld);
                    alone &= !memcmp(y1, yk + v * ROWS, sizeof(float) * NP);
                }
                CHECK(d <= 1e-5 * mx, "%s attn_scores %s, %d vectors: %g of %g", isas[ii], tname[t], m, d, mx);
                CHECK(alone, "%s attn_scores %s, %d vectors: a vector in a group = alone", isas[ii], tname[t], m);
                for (int cols = 512; cols > 0; cols = cols == 512 ? 77 : 0) {
                    for (int i = 0; i < M * C; i++) or_[i] = ok[i] = 0.25f;
                    kern_ref.attn_wsum(or_, C, a, ROWS, m, br, ld, NP, cols);
                    k->attn_wsum(ok, C, a, ROWS, m, bk, ld, NP, cols);
                    d = 0, mx = 0, alone = 1;
                    int untouched = 1;
                    for (int v = 0; v < m; v++) {
                        for (int c = 0; c < C; c++) {
                            const double e = fabs(or_[v * C + c] - ok[v * C + c]);
                            if (c < cols) d = fmax(d, e), mx = fmax(mx, fabs(or_[v * C + c]));
                            else untouched &= ok[v * C + c] == 0.25f;
                        }
                        for (int c = 0; c < C; c++) o1[c] = 0.25f;
                        k->attn_wsum(o1, C, a + v * ROWS, ROWS, 1, bk, ld, NP, cols);
                        alone &= !memcmp(o1, ok + v * C, sizeof(float) * C);
                    }
                    CHECK(d <= 1e-5 * mx, "%s attn_wsum %s, %d vectors, %d columns: %g of %g", isas[ii], tname[t], m,
                          cols, d, mx);
                    CHECK(untouched, "%s attn_wsum %s: columns past %d left alone", isas[ii], tname[t], cols);
                    CHECK(alone, "%s attn_wsum %s, %d vectors, %d columns: a vector in a group = alone", isas[ii],
                          tname[t], m, cols);
                }
            }
}

static void test_norms(void) {
    float x[4] = {1, -2, 3, -4}, w[4] = {1, 1, 2, 0.5f}, out[4];
    kern_rmsnorm(out, x, w, 4, 0);
    double inv = 1 / sqrt((1 + 4 + 9 + 16) / 4.0);
    CHECK(fabs(out[2] - 3 * inv * 2) < 1e-6 && fabs(out[3] + 4 * inv * 0.5) < 1e-6, "rmsnorm");
    float s[3] = {1000, 1001, 999};
    kern_softmax(s, 3);
    CHECK(fabs(s[0] + s[1] + s[2] - 1) < 1e-6 && s[1] > s[0] && s[0] > s[2], "softmax sums to 1, stable");
    float g[2] = {0, 2}, u[2] = {5, 3};
    kern_swiglu(g, u, 2);
    CHECK(g[0] == 0 && fabs(g[1] - 2 / (1 + exp(-2)) * 3) < 1e-6, "swiglu");
}

static dsc_config route_cfg(dsc_arch arch, dsc_topk tm, dsc_score sf, int norm, float rsf) {
    dsc_config c = {0};
    c.arch = arch;
    c.n_routed_experts = 8;
    c.n_experts_per_tok = 2;
    c.n_group = 4;
    c.topk_group = 2;
    c.topk_method = tm;
    c.scoring_func = sf;
    c.norm_topk_prob = norm;
    c.routed_scaling_factor = rsf;
    return c;
}

static void test_routing(void) {
    float scratch[64], w[2];
    int32_t idx[2];
    /* greedy softmax, no renormalisation: weights = softmax x scale (V2). */
    float lg[8] = {0.1f, 2.0f, 0.3f, 1.5f, -1.0f, 0.0f, 0.2f, 0.4f};
    dsc_config c = route_cfg(DSC_ARCH_V2, DSC_TOPK_GREEDY, DSC_SCORE_SOFTMAX, 0, 2.0f);
    moe_route(&c, lg, NULL, scratch, idx, w);
    double z = 0;
    for (int e = 0; e < 8; e++) z += exp(lg[e]);
    CHECK(idx[0] == 1 && idx[1] == 3, "greedy picks %d %d", idx[0], idx[1]);
    CHECK(fabs(w[0] - 2 * exp(2.0) / z) < 1e-6 && fabs(w[1] - 2 * exp(1.5) / z) < 1e-6, "greedy weights");
    /* V2 with norm_topk_prob: renormalised, NOT scaled. */
    c.norm_topk_prob = 1;
    moe_route(&c, lg, NULL, scratch, idx, w);
    CHECK(fabs(w[0] + w[1] - 1) < 1e-6, "v2 renormalised weights sum to %g", w[0] + w[1]);
    /* group_limited_greedy: groups {0,1} {2,3} {4,5} {6,7}, group score = max:
     * 2.0, 1.5, 0.0, 0.4 -> groups 0, 1; experts 1, 3. Make group 3 tempting by
     * sum but not by max. */
    float lg2[8] = {0.0f, 1.0f, 0.9f, 0.1f, -2, -2, 0.95f, 0.95f};
    c = route_cfg(DSC_ARCH_V2, DSC_TOPK_GROUP, DSC_SCORE_SOFTMAX, 0, 1.0f);
    moe_route(&c, lg2, NULL, scratch, idx, w);
    CHECK(idx[0] == 1 && idx[1] == 6, "group max: picks %d %d", idx[0], idx[1]);
    /* noaux_tc: group score = sum of top 2 (choice scores); with bias 0:
     * sigmoid is monotone so group sums: g0 1.0+0.0, g1 0.9+0.1, g3 0.95+0.95 best. */
    c = route_cfg(DSC_ARCH_V3, DSC_TOPK_NOAUX_TC, DSC_SCORE_SIGMOID, 1, 2.5f);
    float bias[8] = {0};
    moe_route(&c, lg2, bias, scratch, idx, w);
    /* groups by sum of top-2 sigmoids: g3 1.442 > g1 1.236 > g0 1.231, so expert 1
     * (the highest single score) is out and the choice is 6, 7. */
    CHECK(idx[0] == 6 && idx[1] == 7, "noaux_tc picks %d %d", idx[0], idx[1]);
    CHECK(fabs(w[0] + w[1] - 2.5) < 1e-5, "v3 weights renormalised x 2.5: %g", w[0] + w[1]);
    /* A large bias on expert 4 moves the choice but not the weight value. */
    bias[4] = 10;
    bias[5] = 10;
    moe_route(&c, lg2, bias, scratch, idx, w);
    CHECK(idx[0] == 4 || idx[0] == 5, "bias steers choice to %d", idx[0]);
    double s4 = 1 / (1 + exp(2.0));
    CHECK(fabs(w[0] - 2.5 * s4 / (2 * s4)) < 1e-5, "bias does not enter weights: %g", w[0]);
}

static void test_rope(void) {
    float x[4] = {1, 0, 0, 1}, co[2] = {0, 1}, si[2] = {1, 0};
    rope_apply(x, co, si, 4);
    CHECK(fabs(x[0]) < 1e-7 && fabs(x[1] - 1) < 1e-7 && x[2] == 0 && x[3] == 1, "rope turns interleaved pairs");
    dsc_model m = {0};
    double inv[4];
    m.cfg.qk_rope_head_dim = 8;
    m.cfg.rope_theta = 10000;
    m.rope_inv_freq = inv;
    rope_init(&m);
    CHECK(fabs(inv[1] - pow(10000, -0.25)) < 1e-15 && m.rope_mscale == 1, "plain rope frequencies");
    m.cfg.yarn_factor = 40;
    m.cfg.yarn_beta_fast = 32;
    m.cfg.yarn_beta_slow = 1;
    m.cfg.yarn_original_max_pos = 4096;
    m.cfg.yarn_mscale = m.cfg.yarn_mscale_all_dim = 0.707;
    rope_init(&m);
    /* dim 8: low = floor(1.309) = 1, high = ceil(2.81) = 3: i=0 extrapolated,
     * i=1 still extrapolated (ramp 0), i=2 half, i=3 interpolated. */
    CHECK(fabs(inv[0] - 1) < 1e-15 && fabs(inv[1] - pow(10000, -0.25)) < 1e-15, "yarn keeps high frequencies");
    double f2 = pow(10000, -0.5);
    CHECK(fabs(inv[2] - (0.5 * f2 / 40 + 0.5 * f2)) < 1e-15, "yarn ramp midpoint");
    CHECK(fabs(inv[3] - pow(10000, -0.75) / 40) < 1e-15, "yarn interpolates low frequencies");
    dsc_config c = m.cfg;
    c.qk_nope_head_dim = 16;
    double ms = 0.1 * 0.707 * log(40) + 1;
    CHECK(fabs(config_softmax_scale(&c) - ms * ms / sqrt(24)) < 1e-12, "softmax scale x mscale^2");
}

static void test_think_split(void) {
    /* Feed "a<thi" "nk>bc</th" "ink>d<x" byte groups; tags split across calls. */
    const char *parts[] = {"a<thi", "nk>bc</th", "ink>d<x", "<think"};
    dsc_think_split st = {0};
    char r[64], a[64], reason[64] = "", answer[64] = "";
    size_t nr, na;
    for (int i = 0; i < 4; i++) {
        dsc_think_feed(&st, parts[i], strlen(parts[i]), r, &nr, a, &na);
        strncat(reason, r, nr);
        strncat(answer, a, na);
    }
    dsc_think_flush(&st, r, &nr, a, &na);
    strncat(reason, r, nr);
    strncat(answer, a, na);
    CHECK(!strcmp(reason, "bc"), "reasoning '%s'", reason);
    CHECK(!strcmp(answer, "ad<x<think"), "answer '%s' (an unfinished tag is flushed as text)", answer);
    dsc_think_split r1 = {.in_think = 1}; /* R1: the prompt opened <think> */
    dsc_think_feed(&r1, "x<</think>y", 11, r, &nr, a, &na);
    CHECK(nr == 2 && !memcmp(r, "x<", 2) && na == 1 && a[0] == 'y', "R1 split, '<' before the tag kept");
}

/* DeepSeek-V3.2's DSML calls: the splitter fed a byte at a time and in one
 * piece (text before the block passed on, the whitespace before it dropped,
 * the block gathered), the parser (strings as they are, other values as
 * JSON, several calls, bad blocks refused by name), and text that only
 * looks like the tag's beginning passed on whole. */
static void test_dsml(void) {
    const char *text = "Let me look.\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"get_weather\">\n"
                       "<｜DSML｜parameter name=\"city\" string=\"true\">Tōkyō \"west\"</｜DSML｜parameter>\n"
                       "<｜DSML｜parameter name=\"days\" string=\"false\">3</｜DSML｜parameter>\n"
                       "<｜DSML｜parameter name=\"opts\" string=\"false\">{\"units\": [\"C\", 1.5], \"x\": null}</｜DSML｜parameter>\n"
                       "</｜DSML｜invoke>\n<｜DSML｜invoke name=\"now\">\n\n</｜DSML｜invoke>\n</｜DSML｜function_calls>tail";
    const size_t n = strlen(text);
    for (int by = 0; by < 2; by++) {
        dsc_dsml_split st = {0};
        char out[2048], got[2048] = "";
        size_t no, ng = 0;
        int closed = 0;
        for (size_t i = 0; i < n && !closed; i += by ? n : 1) {
            closed = dsc_dsml_feed(&st, text + i, by ? n : 1, out, &no);
            memcpy(got + ng, out, no), ng += no;
        }
        got[ng] = 0;
        CHECK(closed && !strcmp(got, "Let me look."), "DSML split %s: text '%s', closed %d", by ? "whole" : "by bytes", got, closed);
        dsc_tool_call *tc = NULL;
        size_t nt = 0;
        CHECK(dsc_dsml_parse(st.block, st.n_block, &tc, &nt) == DSC_OK && nt == 2, "DSML parse: %s", dsc_last_error());
        if (nt == 2) {
            CHECK(!strcmp(tc[0].name, "get_weather") &&
                      !strcmp(tc[0].arguments, "{\"city\":\"Tōkyō \\\"west\\\"\",\"days\":3,\"opts\":{\"units\":[\"C\",1.5],\"x\":null}}"),
                  "DSML call 0: %s %s", tc[0].name, tc[0].arguments);
            CHECK(!strcmp(tc[1].name, "now") && !strcmp(tc[1].arguments, "{}"), "DSML call 1: %s %s", tc[1].name, tc[1].arguments);
        }
        dsc_tool_calls_free(tc, nt);
        dsc_dsml_free(&st);
    }
    /* Not a block: "<｜DSML｜x" and a '<' at the end, held then let go at the end. */
    dsc_dsml_split st = {0};
    char out[256], got[256] = "";
    size_t no, ng = 0, pn;
    const char *t2 = "a <｜DSML｜x b\n\n<｜DS";
    for (size_t i = 0; i < strlen(t2); i++) {
        dsc_dsml_feed(&st, t2 + i, 1, out, &no);
        memcpy(got + ng, out, no), ng += no;
    }
    const char *pend = dsc_dsml_pending(&st, &pn);
    memcpy(got + ng, pend, pn), ng += pn;
    got[ng] = 0;
    CHECK(!strcmp(got, t2), "DSML split: text that is not a block passes whole ('%s')", got);
    dsc_dsml_free(&st);
    static const struct {
        const char *block, *why;
    } bad[] = {
        {"<｜DSML｜function_calls>\n</｜DSML｜function_calls>", "no <｜DSML｜invoke>"},
        {"<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"f\">\n<｜DSML｜parameter name=\"n\" string=\"false\">{1</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜function_calls>", "is not JSON"},
        {"<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"f\">\n<｜DSML｜parameter name=\"n\" string=\"maybe\">1</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜function_calls>", "out of the format"},
        {"<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"f\">\n</｜DSML｜function_calls>", "not closed"},
        {"<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"\">\n</｜DSML｜invoke>\n</｜DSML｜function_calls>", "no name"},
        {"<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"f\">\n<｜DSML｜parameter name=\"a\" string=\"true\">1</｜DSML｜parameter>\n<｜DSML｜parameter name=\"a\" string=\"true\">2</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜function_calls>", "twice"},
        {"<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"f\">\n</｜DSML｜invoke>\n", "no </｜DSML｜function_calls>"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dsc_tool_call *tc = NULL;
        size_t nt = 0;
        const dsc_status st2 = dsc_dsml_parse(bad[i].block, strlen(bad[i].block), &tc, &nt);
        CHECK(st2 == DSC_ERR_FORMAT && strstr(dsc_last_error(), bad[i].why) && !tc && !nt, "DSML bad block %zu: %s", i,
              dsc_last_error());
    }
}

static void test_sampler(void) {
    float logits[5] = {1.0f, 3.0f, 2.9f, -1.0f, 0.0f};
    dsc_sampler_params p = dsc_sampler_default_params();
    CHECK(p.temp == 0.6f && p.top_p == 0.95f, "R1 defaults");
    dsc_sampler *s;
    p.temp = 0;
    CHECK(dsc_sampler_new(&p, 5, &s) == DSC_OK && dsc_sampler_sample(s, logits) == 1, "temp 0 is argmax");
    dsc_sampler_free(s);
    p.temp = 1;
    p.top_k = 1;
    dsc_sampler_new(&p, 5, &s);
    CHECK(dsc_sampler_sample(s, logits) == 1, "top_k 1 is argmax");
    dsc_sampler_free(s);
    /* Frequencies follow softmax at temperature 1 (top_p 1): 20000 draws. */
    p.top_k = 0;
    p.top_p = 1;
    p.seed = 42;
    dsc_sampler_new(&p, 5, &s);
    int count[5] = {0};
    for (int i = 0; i < 20000; i++) count[dsc_sampler_sample(s, logits)]++;
    double z = 0;
    for (int i = 0; i < 5; i++) z += exp(logits[i]);
    double worst = 0;
    for (int i = 0; i < 5; i++) worst = fmax(worst, fabs(count[i] / 20000.0 - exp(logits[i]) / z));
    CHECK(worst < 0.015, "sampled frequencies match softmax (max deviation %.4f)", worst);
    /* Same seed, same sequence. */
    dsc_sampler *s2;
    dsc_sampler_new(&p, 5, &s2);
    dsc_sampler_reset(s);
    int same = 1;
    for (int i = 0; i < 100; i++) same &= dsc_sampler_sample(s, logits) == dsc_sampler_sample(s2, logits);
    CHECK(same, "same seed, same draws");
    dsc_sampler_free(s2);
    dsc_sampler_free(s);
    /* top_p 0.5 keeps only token 1 (p = 0.48) plus token 2 (0.43): never 0, 3, 4. */
    p.top_p = 0.5f;
    dsc_sampler_new(&p, 5, &s);
    int other = 0;
    for (int i = 0; i < 2000; i++) {
        int t = dsc_sampler_sample(s, logits);
        other += t != 1 && t != 2;
    }
    CHECK(other == 0, "top_p cuts the tail (%d draws outside)", other);
    dsc_sampler_free(s);
    /* Repeat penalty 100 on token 1 makes 2 the argmax. */
    p.temp = 0;
    p.repeat_penalty = 100;
    dsc_sampler_new(&p, 5, &s);
    dsc_sampler_accept(s, 1);
    CHECK(dsc_sampler_sample(s, logits) == 2, "repeat penalty");
    dsc_sampler_free(s);
    /* Non-finite logits: -1 and a message, at any temperature and cut. */
    const float bad[3][5] = {{NAN, 1, 2, 3, 4}, {1, 2, INFINITY, 3, 4},
                             {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY}};
    const float temps[3] = {0, 0.6f, 1}, mins[3] = {0, 0.1f, 0};
    for (int b = 0; b < 3; b++)
        for (int k = 0; k < 3; k++) {
            dsc_sampler_params q = dsc_sampler_default_params();
            q.temp = temps[k], q.min_p = mins[k], q.top_k = k == 2 ? 2 : 0;
            dsc_sampler_new(&q, 5, &s);
            CHECK(dsc_sampler_sample(s, bad[b]) == -1 && strstr(dsc_last_error(), "sampler"),
                  "non-finite logits %d at temperature %g: -1", b, temps[k]);
            dsc_sampler_free(s);
        }
    p.top_p = 0;
    CHECK(dsc_sampler_new(&p, 5, &s) == DSC_ERR_ARG, "bad sampler parameters rejected");
}

static void test_context(const char *golden) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/models/v3-tiny/model", golden);
    dsc_model *m;
    if (dsc_model_load(dir, NULL, &m)) {
        CHECK(0, "load %s: %s", dir, dsc_last_error());
        return;
    }
    dsc_ctx_params cp = dsc_ctx_default_params();
    cp.n_ctx = 32;
    dsc_ctx *ctx;
    CHECK(dsc_ctx_new(m, &cp, &ctx) == DSC_OK, "ctx");
    /* bytes = layers x n_ctx x (kv_lora_rank + qk_rope_head_dim) x 4 */
    CHECK(dsc_ctx_kv_bytes(ctx) == (size_t)3 * 32 * (32 + 8) * 4, "kv cache size formula: %zu", dsc_ctx_kv_bytes(ctx));
    int32_t toks[6] = {0, 5, 17, 300, 2, 511};
    float a[512], b[512];
    CHECK(dsc_eval(ctx, toks, 6, NULL) == DSC_OK, "eval");
    memcpy(a, dsc_ctx_logits(ctx), sizeof a);
    /* Truncate and replay the tail: the cache rows are overwritten in place.
     * The same calls give bit-identical logits; a different split (3 + 3
     * tokens) may route a different number of tokens to an expert, and so
     * take another kernel path, so it agrees to float rounding. */
    CHECK(dsc_ctx_truncate(ctx, 0) == DSC_OK && dsc_eval(ctx, toks, 6, NULL) == DSC_OK, "replay");
    CHECK(memcmp(a, dsc_ctx_logits(ctx), sizeof a) == 0, "replay after truncate is bit-identical");
    CHECK(dsc_ctx_truncate(ctx, 3) == DSC_OK && dsc_ctx_pos(ctx) == 3, "truncate");
    CHECK(dsc_eval(ctx, toks + 3, 3, NULL) == DSC_OK, "replay the tail");
    memcpy(b, dsc_ctx_logits(ctx), sizeof b);
    double d = 0, mx = 0;
    for (int i = 0; i < 512; i++) d = fmax(d, fabs(a[i] - b[i])), mx = fmax(mx, fabs(a[i]));
    CHECK(d <= 1e-5 * mx, "replay of the tail agrees: %g of %g", d, mx);
    /* Errors leave the context unchanged. */
    int32_t bad = 512;
    CHECK(dsc_eval(ctx, &bad, 1, NULL) == DSC_ERR_ARG && dsc_ctx_pos(ctx) == 6, "bad id rejected, pos kept");
    CHECK(strstr(dsc_last_error(), "512") != NULL, "message names the id: %s", dsc_last_error());
    int32_t many[32] = {0};
    CHECK(dsc_eval(ctx, many, 27, NULL) == DSC_ERR_CONTEXT && dsc_ctx_pos(ctx) == 6, "context full rejected");
    dsc_ctx_free(ctx);
    /* A long context costs memory as it fills: its cache and scratch are
     * fresh pages, resident once written (outside AddressSanitizer, which
     * watches heap memory instead); and it computes the same logits. */
    cp.n_ctx = 163840;
    CHECK(dsc_ctx_new(m, &cp, &ctx) == DSC_OK, "ctx of 163840 positions");
    const size_t kv = dsc_ctx_kv_bytes(ctx);
    CHECK(dsc_eval(ctx, toks, 6, NULL) == DSC_OK && memcmp(a, dsc_ctx_logits(ctx), sizeof a) == 0,
          "the same logits in a context of 163840 positions");
    if (ctx->mem_len) {
        const size_t pg = (size_t)sysconf(_SC_PAGESIZE), np = (ctx->mem_len + pg - 1) / pg;
        unsigned char *vec = malloc(np);
        size_t res = 0;
        const int counted = vec && mincore(ctx->mem, ctx->mem_len, vec) == 0;
        for (size_t i = 0; counted && i < np; i++) res += vec[i] & 1;
        CHECK(counted && res * pg < kv / 2, "6 positions of 163840: %zu of %zu bytes resident (cache %zu)", res * pg,
              ctx->mem_len, kv);
        free(vec);
    }
    dsc_ctx_free(ctx);
    dsc_model_free(m);
}

/* The cache types on a small random model whose cache rows (48 + 16) fit Q8
 * blocks: prefill and decode agree within a type, and BF16 / Q8 stay close to
 * the exact F32 cache. */
static void test_kv_types(void) {
    char dir[] = "/tmp/dsc_kvtest_XXXXXX";
    if (!mkdtemp(dir)) return;
    char cfg[512], out[512];
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    snprintf(out, sizeof out, "%s/model", dir);
    FILE *fp = fopen(cfg, "w");
    fputs("{\"model_type\": \"deepseek_v3\", \"vocab_size\": 300, \"hidden_size\": 96, \"intermediate_size\": 128,"
          " \"moe_intermediate_size\": 32, \"num_hidden_layers\": 2, \"num_attention_heads\": 3,"
          " \"q_lora_rank\": 32, \"kv_lora_rank\": 48, \"qk_nope_head_dim\": 16, \"qk_rope_head_dim\": 16,"
          " \"v_head_dim\": 16, \"n_routed_experts\": 8, \"n_shared_experts\": 1, \"num_experts_per_tok\": 2,"
          " \"n_group\": 2, \"topk_group\": 1, \"first_k_dense_replace\": 1, \"norm_topk_prob\": true,"
          " \"routed_scaling_factor\": 2.5, \"max_position_embeddings\": 4096, \"rope_scaling\": null}", fp);
    fclose(fp);
    dsc_init_params ip = dsc_init_default_params();
    ip.seed = 5;
    dsc_model *m = NULL;
    if (dsc_init_checkpoint(cfg, out, &ip) || dsc_model_load(out, NULL, &m)) {
        CHECK(0, "kv test model: %s", dsc_last_error());
        return;
    }
    enum { T = 20, V = 300 };
    int32_t toks[T];
    for (int i = 0; i < T; i++) toks[i] = (i * 37 + 11) % V;
    static float ref[T * V], pre[T * V], dec[T * V];
    const dsc_kv_type types[] = {DSC_KV_F32, DSC_KV_BF16, DSC_KV_Q8};
    const double limit[] = {1e-5, 2e-2, 5e-2};
    for (int k = 0; k < 3; k++) {
        dsc_ctx_params cp = dsc_ctx_default_params();
        cp.n_ctx = 32;
        cp.kv_type = types[k];
        dsc_ctx *a, *b;
        CHECK(dsc_ctx_new(m, &cp, &a) == DSC_OK && dsc_ctx_new(m, &cp, &b) == DSC_OK, "ctx %s", dsc_kv_type_name(types[k]));
        dsc_eval(a, toks, T, pre);
        for (int t = 0; t < T; t++) dsc_eval(b, toks + t, 1, dec + t * V);
        if (k == 0) memcpy(ref, pre, sizeof ref);
        double dpd = 0, dref = 0, mx = 0;
        for (int i = 0; i < T * V; i++) {
            dpd = fmax(dpd, fabs(pre[i] - dec[i]));
            dref = fmax(dref, fabs(dec[i] - ref[i]));
            mx = fmax(mx, fabs(ref[i]));
        }
        CHECK(dpd <= 1e-4 * mx, "%s cache: prefill vs decode %g of %g", dsc_kv_type_name(types[k]), dpd, mx);
        CHECK(dref <= limit[k] * mx, "%s cache vs f32: %g of %g (limit %g)", dsc_kv_type_name(types[k]), dref, mx, limit[k]);
        printf("kv cache %s: prefill vs decode %.2g, vs f32 %.2g (of max %.3g), %zu bytes\n", dsc_kv_type_name(types[k]),
               dpd, dref, mx, dsc_ctx_kv_bytes(a));
        dsc_ctx_free(a);
        dsc_ctx_free(b);
    }
    dsc_model_free(m);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("note: could not remove %s\n", dir);
}

static double max_rel(const float *a, const float *b, int n) {
    double d = 0, mx = 0;
    for (int i = 0; i < n; i++) d = fmax(d, fabs(a[i] - b[i])), mx = fmax(mx, fabs(b[i]));
    return d / (mx > 0 ? mx : 1);
}

/* Several sequences in one context: a decode batch gives each sequence what
 * it would get alone; copies and saved states continue identically. */
/* DeepSeek-V3.2 (index_topk 4 of a 12-token context, so most positions are
 * sparse): the gathered rows of decode against the masked prefill, in every
 * cache type; sequences copied, saved and loaded (their index keys with
 * them) and decoded in a batch with a dense one continue as alone. */
static void test_v32_sequences(void) {
    char dir[] = "/tmp/dsc_v32test_XXXXXX";
    if (!mkdtemp(dir)) return;
    char cfg[512], out[512];
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    snprintf(out, sizeof out, "%s/model", dir);
    FILE *fp = fopen(cfg, "w");
    fputs("{\"model_type\": \"deepseek_v32\", \"vocab_size\": 300, \"hidden_size\": 64, \"intermediate_size\": 96,"
          " \"moe_intermediate_size\": 32, \"num_hidden_layers\": 2, \"num_attention_heads\": 2,"
          " \"q_lora_rank\": 32, \"kv_lora_rank\": 128, \"qk_nope_head_dim\": 16, \"qk_rope_head_dim\": 32,"
          " \"v_head_dim\": 16, \"n_routed_experts\": 4, \"n_shared_experts\": 1, \"num_experts_per_tok\": 2,"
          " \"first_k_dense_replace\": 1, \"norm_topk_prob\": true, \"routed_scaling_factor\": 2.5,"
          " \"max_position_embeddings\": 4096, \"rope_scaling\": null, \"index_n_heads\": 4,"
          " \"index_head_dim\": 128, \"index_topk\": 4}", fp);
    fclose(fp);
    dsc_init_params ip = dsc_init_default_params();
    ip.seed = 9;
    dsc_model *m = NULL;
    if (dsc_init_checkpoint(cfg, out, &ip) || dsc_model_load(out, NULL, &m)) {
        CHECK(0, "V3.2 test model: %s", dsc_last_error());
        return;
    }
    enum { T = 12, V = 300 };
    int32_t toks[T];
    for (int i = 0; i < T; i++) toks[i] = (i * 53 + 7) % V;
    static float pre[T * V], dec[T * V], la[V], lb[V], batch[3 * V], solo[V];
    const dsc_kv_type types[] = {DSC_KV_F32, DSC_KV_BF16, DSC_KV_Q8};
    for (int k = 0; k < 3; k++) {
        dsc_ctx_params cp = dsc_ctx_default_params();
        cp.n_ctx = 32;
        cp.kv_type = types[k];
        dsc_ctx *a;
        CHECK(dsc_ctx_new(m, &cp, &a) == DSC_OK, "V3.2 ctx %s", dsc_kv_type_name(types[k]));
        dsc_eval(a, toks, T, pre);
        dsc_ctx_truncate(a, 0);
        for (int i = 0; i < T; i++) dsc_eval(a, toks + i, 1, dec + (int64_t)i * V);
        CHECK(max_rel(dec, pre, T * V) < 1e-5, "V3.2 %s cache: decode (gathered rows) = prefill (masked) (%g)",
              dsc_kv_type_name(types[k]), max_rel(dec, pre, T * V));
        dsc_ctx_free(a);
    }
    /* a prompt of many times index_topk: the absorbed form (gathered rows)
     * is the cheaper and chosen, and gives the masked decompressed logits */
    {
        enum { L = 40 };
        int32_t lt[L];
        static float dl[L * V], al[L * V];
        for (int i = 0; i < L; i++) lt[i] = (i * 31 + 5) % V;
        dsc_ctx_params cp = dsc_ctx_default_params();
        cp.n_ctx = 64;
        dsc_ctx *a;
        CHECK(dsc_ctx_new(m, &cp, &a) == DSC_OK, "V3.2 ctx for a long prompt");
        int absorbed = -1;
        const double fl = dsc_prefill_attn_flops(a, 0, L, &absorbed);
        CHECK(absorbed == 1, "V3.2: a %d-token prompt with index_topk 4 attends in the absorbed form", L);
        /* 2 layers: 2 heads x min(p + 1, 4) rows x (2 x 128 + 32), and the
         * indexer's 4 heads x 128 dims over the p + 1 positions of a sparse token */
        double want = 0;
        for (int p = 0; p < L; p++) want += 2.0 * 2 * (2.0 * (p + 1 < 4 ? p + 1 : 4) * 288 + (p + 1 > 4 ? (p + 1) * 512.0 : 0));
        CHECK(fl == want, "V3.2: the prompt's attention FLOPs %.0f (sparse rows and indexer counted: %.0f)", fl, want);
        a->mla_prefill = 1;
        dsc_eval(a, lt, L, dl);
        dsc_ctx_truncate(a, 0);
        a->mla_prefill = 0;
        dsc_eval(a, lt, L, al);
        CHECK(max_rel(al, dl, L * V) < 1e-5, "V3.2 %d-token prompt: absorbed (gathered rows) = decompressed (masked) (%g)",
              L, max_rel(al, dl, L * V));
        dsc_ctx_free(a);
        /* batch-invariant: the prompt at once (the indexer's keys decoded once
         * for a run of tokens, their queries in one product) = token by token,
         * to the bit, on one and two threads */
        static float bi[L * V];
        for (int nt = 1; nt <= 2; nt++) {
            cp.batch_invariant = 1, cp.n_threads = nt;
            CHECK(dsc_ctx_new(m, &cp, &a) == DSC_OK, "V3.2 batch-invariant ctx");
            dsc_eval(a, lt, L, al);
            dsc_ctx_truncate(a, 0);
            for (int i = 0; i < L; i++) dsc_eval(a, lt + i, 1, bi + (int64_t)i * V);
            CHECK(!memcmp(al, bi, sizeof(float) * L * V), "V3.2 batch-invariant, %d threads: a %d-token prompt at once = "
                  "token by token, to the bit (%g)", nt, L, max_rel(al, bi, L * V));
            dsc_ctx_free(a);
        }
    }
    /* la: the 12-token prompt's next token after 11; lb: a 3-token prompt's (dense). */
    dsc_ctx_params cp = dsc_ctx_default_params();
    cp.n_ctx = 32;
    dsc_ctx *one, *ctx;
    dsc_ctx_new(m, &cp, &one);
    dsc_eval(one, toks, T - 1, NULL);
    dsc_eval(one, toks + T - 1, 1, la);
    dsc_ctx_truncate(one, 0);
    dsc_eval(one, toks, 2, NULL);
    dsc_eval(one, toks + 2, 1, lb);
    cp.n_seq = 3;
    CHECK(dsc_ctx_new(m, &cp, &ctx) == DSC_OK, "V3.2 3-sequence context");
    CHECK(dsc_eval_seq(ctx, 0, toks, T - 1, NULL) == DSC_OK && dsc_eval_seq(ctx, 1, toks, 2, NULL) == DSC_OK &&
              dsc_seq_copy(ctx, 0, 2, T - 1) == DSC_OK, "V3.2 prefill two, copy one");
    int32_t seqs[3] = {1, 0, 2}, nt[3] = {toks[2], toks[T - 1], toks[T - 1]};
    CHECK(dsc_decode_batch(ctx, seqs, nt, 3, batch) == DSC_OK, "V3.2 decode batch: %s", dsc_last_error());
    CHECK(max_rel(batch, lb, V) < 1e-5 && max_rel(batch + V, la, V) < 1e-5 && max_rel(batch + 2 * V, la, V) < 1e-5,
          "V3.2 batch of a dense and two sparse tokens = alone (%g %g %g)", max_rel(batch, lb, V), max_rel(batch + V, la, V),
          max_rel(batch + 2 * V, la, V));
    size_t sz = dsc_seq_state_size(ctx, T - 1);
    void *buf = malloc(sz);
    CHECK(dsc_seq_save(ctx, 0, T - 1, buf) == DSC_OK && dsc_seq_load(ctx, 1, T - 1, buf) == DSC_OK, "V3.2 save / load");
    CHECK(dsc_eval_seq(ctx, 1, toks + T - 1, 1, solo) == DSC_OK && max_rel(solo, la, V) < 1e-5,
          "V3.2 loaded state (index keys too) continues (%g)", max_rel(solo, la, V));
    free(buf);
    dsc_ctx_free(ctx);
    dsc_ctx_free(one);
    dsc_model_free(m);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("note: could not remove %s\n", dir);
}

static void test_sequences(const char *golden) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/models/v3-tiny/model", golden);
    dsc_model *m;
    if (dsc_model_load(dir, NULL, &m)) return;
    enum { V = 512 };
    int32_t pa[5] = {0, 7, 99, 3, 250}, pb[3] = {0, 400, 12}, na = 31, nb = 77;
    static float la[V], lb[V], batch[3 * V], solo[V];
    dsc_ctx_params cp = dsc_ctx_default_params();
    cp.n_ctx = 32;
    dsc_ctx *one;
    dsc_ctx_new(m, &cp, &one);
    dsc_eval(one, pa, 5, NULL);
    dsc_eval(one, &na, 1, la);
    dsc_ctx_truncate(one, 0);
    dsc_eval(one, pb, 3, NULL);
    dsc_eval(one, &nb, 1, lb);
    cp.n_seq = 3;
    dsc_ctx *ctx;
    CHECK(dsc_ctx_new(m, &cp, &ctx) == DSC_OK && dsc_ctx_n_seq(ctx) == 3, "3-sequence context");
    CHECK(dsc_eval_seq(ctx, 0, pa, 5, NULL) == DSC_OK && dsc_eval_seq(ctx, 1, pb, 3, NULL) == DSC_OK, "prefill two");
    CHECK(dsc_seq_copy(ctx, 0, 2, 5) == DSC_OK && dsc_seq_pos(ctx, 2) == 5, "copy a prompt");
    int32_t seqs[3] = {1, 0, 2}, toks[3] = {nb, na, na};
    CHECK(dsc_decode_batch(ctx, seqs, toks, 3, batch) == DSC_OK, "decode batch: %s", dsc_last_error());
    CHECK(max_rel(batch, lb, V) < 1e-5, "batched sequence 1 = alone (%g)", max_rel(batch, lb, V));
    CHECK(max_rel(batch + V, la, V) < 1e-5, "batched sequence 0 = alone (%g)", max_rel(batch + V, la, V));
    CHECK(max_rel(batch + 2 * V, la, V) < 1e-5, "copied sequence continues like its source");
    CHECK(dsc_seq_pos(ctx, 0) == 6 && dsc_seq_pos(ctx, 1) == 4 && dsc_seq_pos(ctx, 2) == 6, "positions advanced");
    /* Save the 5-token prompt of sequence 0, load it into sequence 1. */
    size_t sz = dsc_seq_state_size(ctx, 5);
    void *buf = malloc(sz);
    CHECK(dsc_seq_save(ctx, 0, 5, buf) == DSC_OK && dsc_seq_load(ctx, 1, 5, buf) == DSC_OK, "save / load");
    CHECK(dsc_eval_seq(ctx, 1, &na, 1, solo) == DSC_OK && max_rel(solo, la, V) < 1e-5, "loaded state continues");
    free(buf);
    int32_t dup[2] = {0, 0};
    CHECK(dsc_decode_batch(ctx, dup, toks, 2, batch) == DSC_ERR_ARG, "a sequence twice in a batch is rejected");
    CHECK(dsc_eval_seq(ctx, 3, pa, 1, NULL) == DSC_ERR_ARG, "sequence out of range rejected");
    dsc_ctx_free(ctx);

    /* A mixed step: sequence 1's whole prompt and next token share one pass
     * with sequence 0's decode token (prompt rows in the absorbed form, so
     * prefill = decode's tolerance); only the wanted rows get logits. */
    static float rows[4 * V], solo4[4 * V];
    int32_t pbn[4] = {pb[0], pb[1], pb[2], nb};
    dsc_ctx_truncate(one, 0);
    dsc_eval(one, pbn, 4, solo4);
    cp.n_seq = 2;
    cp.n_mixed = 6;
    CHECK(dsc_ctx_new(m, &cp, &ctx) == DSC_OK, "mixed-batch context");
    CHECK(dsc_eval_seq(ctx, 0, pa, 5, NULL) == DSC_OK, "prefill one");
    int32_t ms[5] = {1, 1, 0, 1, 1}, mt[5] = {pb[0], pb[1], na, pb[2], nb};
    const uint8_t want[5] = {0, 0, 1, 0, 1};
    CHECK(dsc_eval_mixed(ctx, ms, mt, 5, want, rows) == DSC_OK, "mixed batch: %s", dsc_last_error());
    CHECK(max_rel(rows, la, V) < 1e-5, "mixed: the decode token = alone (%g)", max_rel(rows, la, V));
    CHECK(max_rel(rows + V, lb, V) < 1e-4, "mixed: the prompt's next token = prefill then decode (%g)",
          max_rel(rows + V, lb, V));
    CHECK(dsc_seq_pos(ctx, 0) == 6 && dsc_seq_pos(ctx, 1) == 4, "mixed: positions advanced (%d, %d)",
          dsc_seq_pos(ctx, 0), dsc_seq_pos(ctx, 1));
    dsc_seq_truncate(ctx, 1, 0);
    const int32_t s1[3] = {1, 1, 1};
    CHECK(dsc_eval_mixed(ctx, s1, pbn, 1, NULL, rows) == DSC_OK && dsc_eval_mixed(ctx, s1, pbn + 1, 3, NULL, rows) == DSC_OK,
          "mixed: a prompt in two steps, every row");
    CHECK(max_rel(rows, solo4 + V, 3 * V) < 1e-4, "mixed: every row = prefill's (%g)", max_rel(rows, solo4 + V, 3 * V));
    int32_t seven[7] = {0, 0, 0, 0, 0, 0, 0}, full[2] = {0, 0}, zeros[25] = {0};
    CHECK(dsc_eval_mixed(ctx, seven, seven, 7, NULL, rows) == DSC_ERR_ARG, "mixed: over n_mixed tokens rejected");
    CHECK(dsc_eval_seq(ctx, 0, zeros, 25, NULL) == DSC_OK && dsc_seq_pos(ctx, 0) == 31, "fill sequence 0");
    CHECK(dsc_eval_mixed(ctx, full, pa, 2, NULL, rows) == DSC_ERR_CONTEXT && dsc_seq_pos(ctx, 0) == 31,
          "mixed: past the context end rejected, nothing appended");
    dsc_ctx_free(ctx);
    dsc_ctx_free(one);
    dsc_model_free(m);
}

/* Decode far into the context: every value is summed the same way whatever
 * thread computes it, so two threads give the logits of one to the bit, and
 * prefill's to 1e-4. */
static void test_long_decode(const char *golden) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/models/v3-tiny/model", golden);
    dsc_model *m;
    if (dsc_model_load(dir, NULL, &m)) return;
    enum { V = 512, P = 300, D = 6 };
    static int32_t toks[P + D];
    static float pre[(P + D) * V], one[D * V], two[D * V];
    for (int i = 0; i < P + D; i++) toks[i] = (i * 131 + 7) % V;
    const dsc_kv_type types[] = {DSC_KV_F32, DSC_KV_BF16};
    for (int k = 0; k < 2; k++) {
        dsc_ctx_params cp = dsc_ctx_default_params();
        cp.n_ctx = 512;
        cp.kv_type = types[k];
        dsc_ctx *a = NULL, *b = NULL, *c = NULL;
        cp.n_threads = 1;
        CHECK(dsc_ctx_new(m, &cp, &a) == DSC_OK && dsc_ctx_new(m, &cp, &c) == DSC_OK, "long decode: contexts");
        cp.n_threads = 2;
        CHECK(dsc_ctx_new(m, &cp, &b) == DSC_OK, "long decode: 2-thread context");
        dsc_eval(c, toks, P + D, pre);
        dsc_eval(a, toks, P, NULL);
        dsc_eval(b, toks, P, NULL);
        for (int t = 0; t < D; t++) {
            dsc_eval(a, toks + P + t, 1, one + t * V);
            dsc_eval(b, toks + P + t, 1, two + t * V);
        }
        CHECK(!memcmp(one, two, sizeof one), "%s cache: decode at %d positions, 2 threads = 1 thread (%g)",
              dsc_kv_type_name(types[k]), P, max_rel(two, one, D * V));
        const double d = max_rel(one, pre + P * V, D * V);
        CHECK(d < 1e-4, "%s cache: decode at %d positions = prefill (%g)", dsc_kv_type_name(types[k]), P, d);
        printf("long decode, %s cache: at %d positions, 2 threads = 1 thread %s, vs prefill %.2g\n",
               dsc_kv_type_name(types[k]), P, memcmp(one, two, sizeof one) ? "NO" : "bit for bit", d);
        dsc_ctx_free(a);
        dsc_ctx_free(b);
        dsc_ctx_free(c);
    }
    dsc_model_free(m);
}

/* A prefill chunk after a long context attends in the absorbed form where
 * that takes fewer multiply-adds (mla_forward): both forms give the same
 * logits to 1e-4 (the prompt too, each form throughout), the chunk goes
 * MLA_ABS_TOKENS tokens at a time, and the automatic choice is the forced
 * absorbed form's, bit for bit, for 20 tokens after 300, and the
 * decompressed form's for 300 tokens from an empty cache. */
static void test_prefill_forms(const char *golden, const char *model_name, dsc_kv_type kv) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/models/%s/model", golden, model_name);
    dsc_model *m;
    if (dsc_model_load(dir, NULL, &m)) return;
    enum { V = 512, P = 300, C = 20 };
    static int32_t toks[P + C];
    static float dp[P * V], ap[P * V], dc[C * V], ac[C * V], mix[C * V], aut[C * V], autp[P * V];
    for (int i = 0; i < P + C; i++) toks[i] = (i * 197 + 11) % V;
    dsc_ctx_params cp = dsc_ctx_default_params();
    cp.n_ctx = 512;
    cp.kv_type = kv;
    dsc_ctx *x = NULL;
    CHECK(dsc_ctx_new(m, &cp, &x) == DSC_OK && x->n_abs == MLA_ABS_TOKENS, "%s: a context (n_abs %d)", model_name,
          x ? x->n_abs : -1);
    if (!x) return;
    /* each form throughout */
    x->mla_prefill = 1;
    dsc_eval(x, toks, P, dp);
    dsc_eval(x, toks + P, C, dc);
    dsc_ctx_truncate(x, 0);
    x->mla_prefill = 2;
    dsc_eval(x, toks, P, ap);
    dsc_eval(x, toks + P, C, ac);
    CHECK(max_rel(ap, dp, P * V) < 1e-4 && max_rel(ac, dc, C * V) < 1e-4,
          "%s: the absorbed form = the decompressed one, a %d-token prompt (%g) and %d more (%g)", model_name, P,
          max_rel(ap, dp, P * V), C, max_rel(ac, dc, C * V));
    /* the same prompt, decompressed, then the chunk absorbed or by the choice */
    dsc_ctx_truncate(x, 0);
    x->mla_prefill = 1;
    dsc_eval(x, toks, P, NULL);
    x->mla_prefill = 2;
    dsc_eval(x, toks + P, C, mix);
    dsc_ctx_truncate(x, 0);
    x->mla_prefill = 0;
    dsc_eval(x, toks, P, autp);
    dsc_eval(x, toks + P, C, aut);
    CHECK(!memcmp(autp, dp, sizeof autp), "%s: %d tokens from an empty cache: decompressed", model_name, P);
    CHECK(!memcmp(aut, mix, sizeof aut) && memcmp(aut, dc, sizeof aut),
          "%s: %d tokens after %d: absorbed (%g from the decompressed form's)", model_name, C, P,
          max_rel(aut, dc, C * V));
    printf("prefill forms %s, %s cache: absorbed vs decompressed %.2g (prompt), %.2g (%d after %d, chosen absorbed)\n",
           model_name, dsc_kv_type_name(kv), max_rel(ap, dp, P * V), max_rel(aut, dc, C * V), C, P);
    dsc_ctx_free(x);
    dsc_model_free(m);
}

/* params.batch_invariant: a token's logits are the same bits however its
 * prompt goes in: one token a call, the whole prompt in one call (more than
 * DSC_FEW_TOKENS tokens, where products would take the gemm), in chunks of
 * n_batch 7, in calls of 13, in a mixed step beside another sequence's
 * tokens, after a prefix copied from another sequence; at every kernel set
 * this CPU runs, on one and two threads. */
static void test_batch_invariant(const char *dir, const char *name, dsc_kv_type kv) {
    dsc_model *m;
    if (dsc_model_load(dir, NULL, &m)) {
        CHECK(0, "batch-invariant %s: %s", name, dsc_last_error());
        return;
    }
    dsc_model_info info;
    dsc_model_get_info(m, &info);
    enum { N = 45, CUT = 17, MIX = 20 };
    const int V = info.vocab_size;
    int32_t toks[N], other[4] = {1, 2, 3, 4};
    for (int i = 0; i < N; i++) toks[i] = (i * 131 + 7) % V;
    float *one = malloc(sizeof(float) * N * V), *got = malloc(sizeof(float) * N * V),
          *rows = malloc(sizeof(float) * (MIX + 4) * V);
    int n_ok = 0, n_all = 0;
    for (const char *const *isa = dsc_isa_list(); *isa; isa++)
        for (int nt = 1; nt <= 2; nt++)
            for (int nb = 512; nb >= 7; nb = nb == 512 ? 7 : 0) {
                dsc_ctx_params cp = dsc_ctx_default_params();
                cp.n_ctx = 64, cp.n_seq = 2, cp.n_mixed = MIX + 4, cp.kv_type = kv, cp.isa = *isa, cp.n_threads = nt;
                cp.n_batch = nb, cp.batch_invariant = 1;
                dsc_ctx *x;
                if (dsc_ctx_new(m, &cp, &x)) {
                    CHECK(0, "batch-invariant %s: %s", name, dsc_last_error());
                    continue;
                }
                for (int i = 0; i < N; i++) dsc_eval_seq(x, 0, toks + i, 1, one + (size_t)i * V);
                const char *way[5] = {"whole", "calls of 13", "mixed step", "copied prefix", NULL};
                int same[4];
                dsc_seq_truncate(x, 0, 0);
                dsc_eval_seq(x, 0, toks, N, got);
                same[0] = !memcmp(got, one, sizeof(float) * N * V);
                dsc_seq_truncate(x, 0, 0);
                for (int i = 0; i < N; i += 13) dsc_eval_seq(x, 0, toks + i, N - i < 13 ? N - i : 13, got + (size_t)i * V);
                same[1] = !memcmp(got, one, sizeof(float) * N * V);
                /* sequence 1 decodes 4 tokens among the first MIX of sequence 0's prompt */
                dsc_seq_truncate(x, 0, 0);
                dsc_eval_seq(x, 1, other, 3, NULL);
                int32_t ms[MIX + 4], mt[MIX + 4];
                for (int i = 0, k = 0, o = 0; i < MIX + 4; i++) {
                    const int theirs = i % 6 == 2;
                    ms[i] = theirs ? 1 : 0, mt[i] = theirs ? other[3] + o++ : toks[k++];
                }
                dsc_eval_mixed(x, ms, mt, MIX + 4, NULL, rows);
                dsc_eval_seq(x, 0, toks + MIX, N - MIX, got + (size_t)MIX * V);
                for (int i = 0, k = 0; i < MIX + 4; i++)
                    if (ms[i] == 0) memcpy(got + (size_t)k++ * V, rows + (size_t)i * V, sizeof(float) * V);
                same[2] = !memcmp(got, one, sizeof(float) * N * V);
                /* sequence 1 evaluates the first CUT tokens in one call; sequence 0 goes on from a copy */
                dsc_seq_truncate(x, 1, 0);
                dsc_eval_seq(x, 1, toks, CUT, NULL);
                dsc_seq_copy(x, 1, 0, CUT);
                dsc_eval_seq(x, 0, toks + CUT, N - CUT, got);
                same[3] = !memcmp(got, one + (size_t)CUT * V, sizeof(float) * (N - CUT) * V);
                for (int w = 0; way[w]; w++) {
                    n_all++, n_ok += same[w];
                    CHECK(same[w], "batch-invariant %s, %s cache, %s, %d threads, n_batch %d: %s = one token a call (%g)",
                          name, dsc_kv_type_name(kv), *isa, nt, nb, way[w],
                          w == 3 ? max_rel(got, one + (size_t)CUT * V, (N - CUT) * V) : max_rel(got, one, N * V));
                }
                dsc_ctx_free(x);
            }
    printf("batch-invariant %s, %s cache: %d of %d ways the bits of one token a call\n", name, dsc_kv_type_name(kv),
           n_ok, n_all);
    free(one), free(got), free(rows);
    dsc_model_free(m);
}

/* dsc init --dtype f32 with a tensor larger than its write buffer (a
 * regression: F32 chunks once overflowed a buffer sized for 2-byte types). */
static void test_init_f32_large(void) {
    char dir[] = "/tmp/dsc_initf32_XXXXXX";
    if (!mkdtemp(dir)) return;
    char cfg[512], out[512];
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    snprintf(out, sizeof out, "%s/model", dir);
    FILE *fp = fopen(cfg, "w");
    fputs("{\"model_type\": \"deepseek_v2\", \"vocab_size\": 20000, \"hidden_size\": 128, \"intermediate_size\": 64,"
          " \"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"kv_lora_rank\": 32, \"qk_nope_head_dim\": 16,"
          " \"qk_rope_head_dim\": 8, \"v_head_dim\": 16, \"max_position_embeddings\": 64}", fp);
    fclose(fp);
    dsc_init_params ip = dsc_init_default_params();
    ip.dtype = "f32";
    dsc_model *m = NULL;
    CHECK(dsc_init_checkpoint(cfg, out, &ip) == DSC_OK && dsc_model_load(out, NULL, &m) == DSC_OK,
          "init f32 with 2.56M-element tensors: %s", dsc_last_error());
    dsc_model_free(m);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("note: could not remove %s\n", dir);
}

/* hugemap: a weight file of 66 MiB + 5 bytes, just written (so cached in
 * the write path's pages), mapped at a 2 MiB boundary, reads back byte for
 * byte after its cached pages are dropped and read again (where the kernel
 * would map it by 2 MiB pages), and smaps accounts for what was touched. */
/* dsc_safetensors_write: the data from a 64-byte boundary, tensors whose
 * size is a multiple of 64 bytes at 64-byte offsets whatever order they are
 * given in, every tensor aligned to its element, the bytes read back. */
static void test_st_write_layout(void) {
    char path[] = "/tmp/dsc_st_XXXXXX";
    const int fd = mkstemp(path);
    if (fd < 0) {
        CHECK(0, "st layout: mkstemp failed");
        return;
    }
    close(fd);
    static float f3[3] = {1, 2, 3}, f32[32];
    static uint16_t b5[5] = {1, 2, 3, 4, 5}, b64[64];
    static int8_t i7[7] = {1, 2, 3, 4, 5, 6, 7}, i128[128];
    for (int i = 0; i < 128; i++) {
        if (i < 32) f32[i] = (float)i;
        if (i < 64) b64[i] = (uint16_t)(i * 3);
        i128[i] = (int8_t)(i - 64);
    }
    const dsc_tensor_view v[] = {{"i7", "I8", 1, {7}, i7},   {"f3", "F32", 1, {3}, f3},   {"b5", "BF16", 1, {5}, b5},
                                 {"b64", "BF16", 1, {64}, b64}, {"i128", "I8", 1, {128}, i128}, {"f32", "F32", 2, {4, 8}, f32}};
    const int n = (int)(sizeof v / sizeof v[0]);
    st_file f;
    const int ok = dsc_safetensors_write(path, v, n, "format", "pt") == DSC_OK && st_open(path, &f) == DSC_OK;
    CHECK(ok, "st layout: write or read back failed");
    if (ok) {
        int bad = 0;
        for (int i = 0; i < n; i++) {
            const st_tensor *t = st_find(&f, v[i].name);
            if (!t) {
                bad++;
                continue;
            }
            const size_t off = (size_t)(t->data - f.map), es = st_dtype_size(t->dtype);
            if (off % es || (t->nbytes % 64 == 0 && off % 64) || memcmp(t->data, v[i].data, t->nbytes)) {
                printf("st layout: %s at file offset %zu (%zu bytes)\n", v[i].name, off, t->nbytes);
                bad++;
            }
        }
        uint64_t hl = 0;
        memcpy(&hl, f.map, 8); /* little-endian hosts */
        CHECK(bad == 0 && (8 + hl) % 64 == 0, "st layout: %d tensors misplaced, data at %llu", bad,
              (unsigned long long)(8 + hl));
        st_close(&f);
    }
    unlink(path);
}

static void test_hugemap(void) {
    char path[] = "/tmp/dsc_hugemap_XXXXXX";
    const int fd = mkstemp(path);
    if (fd < 0) {
        CHECK(0, "hugemap: mkstemp failed");
        return;
    }
    const size_t size = HM_MIN_BYTES + ((size_t)2 << 20) + 5, chunk = (size_t)1 << 20;
    uint32_t *buf = malloc(chunk);
    int ok = buf != NULL;
    for (size_t off = 0; ok && off < size; off += chunk) {
        const size_t n = size - off < chunk ? size - off : chunk;
        for (size_t i = 0; i < chunk / 4; i++) buf[i] = (uint32_t)((off / 4 + i) * 2654435761u);
        ok = pwrite(fd, buf, n, (off_t)off) == (ssize_t)n;
    }
    free(buf);
    CHECK(ok, "hugemap: could not write %s", path);
    const uint8_t *m = ok ? hm_map(fd, size) : MAP_FAILED;
    CHECK(m != MAP_FAILED, "hugemap: hm_map failed");
    if (ok && m != MAP_FAILED) {
        CHECK(((uintptr_t)m & (((uintptr_t)2 << 20) - 1)) == 0, "hugemap: mapping at a 2 MiB boundary (%p)", (void *)m);
        /* As the loader does, before anything is read through the mapping
         * (pages it maps cannot be dropped). */
        printf("hugemap: read again into 2 MiB pages: %s\n", hm_reread_small(fd, size) ? "yes" : "no");
        size_t bad = 0;
        for (size_t i = 0; i + 4 <= size; i += 4096 + 4) { /* about a word a page, at shifting offsets */
            uint32_t v;
            memcpy(&v, m + i, 4);
            bad += v != (uint32_t)((i / 4) * 2654435761u);
        }
        const uint8_t last = m[size - 1];
        bad += last != (uint8_t)(((size - 5) / 4 + 1) * 2654435761u);
        CHECK(bad == 0, "hugemap: %zu words differ from what was written", bad);
        size_t rss = 0, huge = 0;
        if (access("/proc/self/smaps", R_OK) != 0) {
            printf("hugemap: /proc/self/smaps not readable here: residency not checked\n");
        } else {
            CHECK(hm_resident(m, &rss, &huge) == 0 && rss >= size / 2 && huge <= rss, "hugemap: smaps rss %zu, huge %zu",
                  rss, huge);
            printf("hugemap: %zu of %zu resident bytes on 2 MiB pages\n", huge, rss);
        }
        munmap((void *)m, size);
    }
    close(fd);
    unlink(path);
}

/* The bandwidth probe reads every float once, either way, on any number of
 * threads and for lengths that leave tails (integer values: exact sums). */
static void test_read_probe(void) {
    const int64_t lens[] = {1, 63, 64, 1000, 1048576 + 77};
    const int64_t nmax = 1048576 + 77;
    float *buf = malloc(sizeof(float) * (size_t)nmax);
    if (!buf) {
        CHECK(0, "read probe: out of memory");
        return;
    }
    for (int64_t i = 0; i < nmax; i++) buf[i] = (float)(i % 3);
    for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++)
        for (int th = 1; th <= 3; th++) {
            const int64_t n = lens[l];
            double sum = 0, sq = 0;
            for (int64_t i = 0; i < n; i++) sum += i % 3, sq += (i % 3) * (i % 3);
            const double r1 = machine_read_sum(th, buf, n, 1), r0 = machine_read_sum(th, buf, n, 0);
            CHECK(r1 == sum, "read probe, runs: %lld floats, %d threads: sum %.0f, expected %.0f", (long long)n, th, r1, sum);
            CHECK(r0 == sq, "read probe, one stream: %lld floats, %d threads: sum %.0f, expected %.0f", (long long)n, th, r0, sq);
        }
    free(buf);
}

/* Speculative decoding with the MTP module. (1) Verifying drafts, right
 * and wrong, yields the tokens plain greedy decoding yields, and the logits
 * each was picked from to the bit; so does a sampled run with real drafts.
 * (2) The module's logits at every position give the mean cross-entropy
 * the trainer's MTP forward gives (targets t + 2), and the module's cache
 * brought up by a prefill-form catch-up gives what step-by-step drafts give. */
typedef struct {
    dsc_model *m;
    dsc_ctx *ctx;
    dsc_status st;
} mtp_ctx_arg;

static void *mtp_ctx_thread(void *a) {
    mtp_ctx_arg *x = a;
    dsc_ctx_params cp = dsc_ctx_default_params();
    cp.n_ctx = 32, cp.n_threads = 1, cp.mtp = 1;
    x->st = dsc_ctx_new(x->m, &cp, &x->ctx);
    return NULL;
}

static void test_spec(const char *golden, const char *model_name) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/models/%s/model", golden, model_name);
    dsc_model *m;
    if (dsc_model_load(dir, NULL, &m)) {
        CHECK(0, "load %s: %s", model_name, dsc_last_error());
        return;
    }
    { /* MTP contexts of a fresh model made from four threads at once: one module, loaded once */
        mtp_ctx_arg x[4] = {{m, NULL, 0}, {m, NULL, 0}, {m, NULL, 0}, {m, NULL, 0}};
        pthread_t th[4];
        for (int i = 0; i < 4; i++) pthread_create(&th[i], NULL, mtp_ctx_thread, &x[i]);
        for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
        int ok = m->mtp != NULL;
        for (int i = 0; i < 4; i++) ok &= x[i].st == DSC_OK && x[i].ctx && x[i].ctx->model->mtp == m->mtp;
        CHECK(ok, "%s: MTP contexts made from 4 threads at once share one module", model_name);
        for (int i = 0; i < 4; i++) dsc_ctx_free(x[i].ctx);
    }
    dsc_model_info info;
    dsc_model_get_info(m, &info);
    const int32_t V = info.vocab_size;
    enum { NP = 5, NG = 24 };
    const int32_t prompt[NP] = {0, 7, 99, 3, 250};
    int32_t plain[NG + 1]; /* a step may yield one token past NG */
    float *plain_logits = malloc(sizeof(float) * (size_t)V * (NG + 1)), *probe = malloc(sizeof(float) * (size_t)V);
    dsc_ctx_params cp = dsc_ctx_default_params();
    cp.n_ctx = 64;
    dsc_ctx *ctx = NULL, *sx = NULL;
    dsc_sampler_params sp = dsc_sampler_default_params();
    sp.temp = 0;
    dsc_sampler *smp;
    dsc_sampler_new(&sp, V, &smp);
    dsc_ctx_new(m, &cp, &ctx);
    dsc_eval(ctx, prompt, NP, NULL);
    for (int i = 0; i <= NG; i++) {
        memcpy(plain_logits + (size_t)i * V, dsc_ctx_logits(ctx), sizeof(float) * (size_t)V);
        plain[i] = dsc_sampler_sample(smp, dsc_ctx_logits(ctx));
        dsc_sampler_accept(smp, plain[i]);
        dsc_eval(ctx, &plain[i], 1, NULL);
    }
    cp.mtp = 1;
    CHECK(dsc_ctx_new(m, &cp, &sx) == DSC_OK, "%s: an MTP context: %s", model_name, dsc_last_error());
    if (!sx) goto done;
    CHECK(dsc_ctx_mtp_bytes(ctx) == 0 && dsc_ctx_mtp_bytes(sx) == (size_t)64 * (4 * info.hidden_size + 4) &&
              dsc_ctx_kv_bytes(sx) == dsc_ctx_kv_bytes(ctx) / info.n_layers * (info.n_layers + 1),
          "%s: the MTP context's memory: its inputs and one more cache layer", model_name);
    { /* the contracts at the edges */
        int32_t o[2], no = 0, d = 0;
        CHECK(dsc_spec_step(ctx, 0, smp, 5, 2, o, &no) == DSC_ERR_ARG, "spec step on a context without mtp refused");
        CHECK(dsc_spec_step(NULL, 0, smp, 5, 2, o, &no) == DSC_ERR_ARG, "spec step on NULL refused");
        CHECK(dsc_mtp_draft(sx, 0, 5, &d) == DSC_ERR_ARG && d == -1, "a draft before any token refused");
        dsc_eval(sx, prompt, 2, NULL);
        CHECK(dsc_spec_step(sx, 1, smp, 5, 2, o, &no) == DSC_ERR_ARG, "spec step: sequence out of range");
        CHECK(dsc_spec_step(sx, 0, smp, 5, 0, o, &no) == DSC_ERR_ARG, "spec step: max_out 0 refused");
        CHECK(dsc_spec_step(sx, 0, NULL, 5, 2, o, &no) == DSC_ERR_ARG, "spec step: NULL sampler refused");
        CHECK(dsc_mtp_draft(sx, 0, V, &d) == DSC_ERR_ARG, "draft: next out of range refused");
        CHECK(dsc_spec_verify(sx, 0, smp, 5, V, o, &no) == DSC_ERR_ARG && dsc_seq_pos(sx, 0) == 2,
              "verify: a draft out of range refused, nothing appended");
        CHECK(dsc_seq_copy(sx, 0, 0, 2) == DSC_OK, "seq_copy onto itself");
        dsc_ctx_truncate(sx, 0);
        dsc_sampler_reset(smp);
        dsc_ctx_params bad = cp;
        dsc_ctx *nx = NULL;
        const float pmins[] = {-0.1f, 1.5f, NAN, INFINITY};
        for (int j = 0; j < 4; j++) {
            bad.mtp_p_min = pmins[j];
            CHECK(dsc_ctx_new(m, &bad, &nx) == DSC_ERR_ARG && !nx && strstr(dsc_last_error(), "mtp_p_min"),
                  "mtp_p_min %g refused: %s", (double)pmins[j], dsc_last_error());
        }
        bad.mtp = 0, bad.mtp_p_min = 0.5f;
        CHECK(dsc_ctx_new(m, &bad, &nx) == DSC_ERR_ARG && !nx, "mtp_p_min without mtp refused: %s", dsc_last_error());
        CHECK(dsc_spec_withheld(ctx) == 0 && dsc_spec_withheld(NULL) == 0, "no guess withheld without MTP");
    }
    dsc_sampler_reset(smp);
    dsc_eval(sx, prompt, NP, NULL);
    int32_t got[NG + 2], n = 0, step = 0, out[2], n_out, same_bits = 1;
    got[n++] = dsc_sampler_sample(smp, dsc_ctx_logits(sx));
    dsc_sampler_accept(smp, got[0]);
    while (n < NG) {
        /* Every third draft is wrong on purpose; the others are right. */
        const int32_t draft = step++ % 3 == 2 ? (plain[n] + 1) % V : plain[n];
        if (dsc_spec_verify(sx, 0, smp, got[n - 1], draft, out, &n_out)) break;
        for (int j = 0; j < n_out; j++) got[n++] = out[j];
        same_bits &= !memcmp(dsc_ctx_logits(sx), plain_logits + (size_t)(n - 1) * V, sizeof(float) * (size_t)V);
        CHECK(dsc_seq_pos(sx, 0) == NP + n - 1, "%s: the context holds the prompt and all but the last token (%d, %d)",
              model_name, dsc_seq_pos(sx, 0), NP + n - 1);
    }
    CHECK(!memcmp(got, plain, sizeof(int32_t) * (size_t)n), "%s: verified drafts give plain decoding's tokens", model_name);
    CHECK(same_bits, "%s: ... and its logits, to the bit", model_name);
    int64_t drafted, taken;
    dsc_spec_stats(sx, &drafted, &taken);
    CHECK(taken > 0 && taken < drafted, "%s: drafts taken and refused (%lld of %lld)", model_name, (long long)taken,
          (long long)drafted);

    /* Sampled, with the module's own drafts. */
    sp.temp = 0.9f, sp.seed = 7;
    dsc_sampler *a, *b;
    dsc_sampler_new(&sp, V, &a);
    dsc_sampler_new(&sp, V, &b);
    dsc_ctx_truncate(ctx, 0);
    dsc_ctx_truncate(sx, 0);
    dsc_eval(ctx, prompt, NP, NULL);
    dsc_eval(sx, prompt, NP, NULL);
    int32_t sa[NG], sb[NG + 1];
    for (int i = 0; i < NG; i++) {
        sa[i] = dsc_sampler_sample(a, dsc_ctx_logits(ctx));
        dsc_sampler_accept(a, sa[i]);
        dsc_eval(ctx, &sa[i], 1, NULL);
    }
    n = 0;
    sb[n++] = dsc_sampler_sample(b, dsc_ctx_logits(sx));
    dsc_sampler_accept(b, sb[0]);
    while (n < NG && dsc_spec_step(sx, 0, b, sb[n - 1], NG - n, out, &n_out) == DSC_OK)
        for (int j = 0; j < n_out; j++) sb[n++] = out[j];
    CHECK(n >= NG && !memcmp(sa, sb, sizeof(int32_t) * NG), "%s: sampled with MTP drafts = sampled plainly", model_name);
    dsc_sampler_free(a);
    dsc_sampler_free(b);

    /* The module against the trainer's MTP forward. */
    enum { T = 12 };
    const int32_t toks[T + 1] = {0, 7, 99, 3, 250, 31, 77, 12, 400, 5, 9, 260, 44};
    dsc_train_params tp = dsc_train_default_params();
    tp.n_batch = 1, tp.n_seq = T, tp.mtp_lambda = 1, tp.alpha = 0;
    dsc_trainer *tr = NULL;
    float ce = 0;
    CHECK(dsc_trainer_new(dir, &tp, &tr) == DSC_OK && dsc_train_eval(tr, toks, 1, T, &ce, NULL) == DSC_OK,
          "%s: trainer with MTP: %s", model_name, dsc_last_error());
    const double want = tr ? dsc_train_loss_mtp(tr) : NAN;
    dsc_trainer_free(tr);
    dsc_ctx_truncate(sx, 0);
    double sum = 0;
    int32_t draft = -1;
    for (int p = 0; p + 2 <= T; p++) { /* position p guesses token p + 2 */
        dsc_eval(sx, &toks[p], 1, NULL);
        CHECK(dsc_mtp_draft(sx, 0, toks[p + 1], &draft) == DSC_OK, "draft: %s", dsc_last_error());
        const float *l = sx->mtp_logits;
        double mx = l[0], z = 0;
        for (int32_t v = 1; v < V; v++) mx = l[v] > mx ? l[v] : mx;
        for (int32_t v = 0; v < V; v++) z += exp(l[v] - mx);
        sum += mx + log(z) - l[toks[p + 2]];
    }
    memcpy(probe, sx->mtp_logits, sizeof(float) * (size_t)V);
    const double got_ce = sum / (T - 1);
    CHECK(fabs(got_ce - want) < 1e-3 * fabs(want), "%s: the module's mean cross-entropy %.6f = the trainer's %.6f",
          model_name, got_ce, want);
    printf("mtp %s: mean cross-entropy of the module %.6f, the trainer's %.6f; drafts taken %lld of %lld\n", model_name,
           got_ce, want, (long long)taken, (long long)drafted);
    dsc_ctx_truncate(sx, 0);
    dsc_eval(sx, toks, T - 1, NULL);
    CHECK(dsc_mtp_draft(sx, 0, toks[T - 1], &draft) == DSC_OK && max_rel(sx->mtp_logits, probe, V) < 1e-4,
          "%s: the module's cache made in one prefill-form pass = step by step (%g)", model_name,
          max_rel(sx->mtp_logits, probe, V));
    { /* mtp_p_min: the guess is withheld (-1) exactly where the module's
       * softmax gives its argmax less; a guess's row is made again each call. */
        const int32_t a = dsc_argmax(sx->mtp_logits, V);
        double z = 0;
        for (int32_t v = 0; v < V; v++) z += exp((double)sx->mtp_logits[v] - sx->mtp_logits[a]);
        const double p = 1 / z;
        const int64_t w0 = dsc_spec_withheld(sx);
        int32_t below = -2, above = -2, o[2], no = 0;
        sx->mtp_p_min = (float)(p * (1 - 1e-4));
        dsc_mtp_draft(sx, 0, toks[T - 1], &below);
        const int64_t w1 = dsc_spec_withheld(sx);
        sx->mtp_p_min = (float)(p * (1 + 1e-4));
        dsc_mtp_draft(sx, 0, toks[T - 1], &above);
        CHECK(p < 1 && below == a && w1 == w0 && above == -1 && dsc_spec_withheld(sx) == w0 + 1,
              "%s: a guess of p %.4f made at mtp_p_min just below (%d, argmax %d), withheld just above (%d; %lld, %lld, "
              "%lld withheld)", model_name, p, below, a, above, (long long)w0, (long long)w1,
              (long long)dsc_spec_withheld(sx));
        /* A step with its guess withheld verifies one row: one token, the cache one longer. */
        const int32_t pos = dsc_seq_pos(sx, 0);
        dsc_sampler_reset(smp);
        CHECK(dsc_spec_step(sx, 0, smp, toks[T - 1], 2, o, &no) == DSC_OK && no == 1 && dsc_seq_pos(sx, 0) == pos + 1,
              "%s: a step without a guess yields one token (%d, position %d of %d)", model_name, no,
              dsc_seq_pos(sx, 0), pos + 1);
        sx->mtp_p_min = 0;
    }
    /* Truncating back re-makes the module's row at the cut. */
    dsc_ctx_truncate(sx, 4);
    dsc_eval(sx, toks + 4, T - 5, NULL);
    CHECK(dsc_mtp_draft(sx, 0, toks[T - 1], &draft) == DSC_OK && max_rel(sx->mtp_logits, probe, V) < 1e-4,
          "%s: ... and after a truncation (%g)", model_name, max_rel(sx->mtp_logits, probe, V));
    { /* Drafts for several sequences in one pass = each one's alone. */
        enum { NS = 3 };
        const int32_t len[NS] = {3, 7, 11}, nxt[NS] = {17, 250, 9}, seqs[NS] = {0, 1, 2};
        dsc_ctx_params bp = cp;
        bp.n_seq = NS, bp.n_mixed = 8;
        dsc_ctx *bx = NULL, *one = NULL;
        CHECK(dsc_ctx_new(m, &bp, &bx) == DSC_OK, "%s: an MTP context of %d sequences: %s", model_name, NS,
              dsc_last_error());
        bp.n_seq = 1;
        dsc_ctx_new(m, &bp, &one);
        int32_t d[NS], d1 = -1, d2[NS] = {0};
        float *want1 = malloc(sizeof(float) * (size_t)V * NS * 2);
        for (int k = 0; bx && one && k < NS; k++) {
            dsc_ctx_truncate(one, 0);
            dsc_eval(one, toks, len[k], NULL);
            dsc_mtp_draft(one, 0, nxt[k], &d2[k]);
            memcpy(want1 + (size_t)k * V, one->mtp_logits, sizeof(float) * (size_t)V);
            const int32_t z[2] = {0, 0}, two[2] = {nxt[k], toks[k + 3]}; /* a taken draft: two rows of the module */
            dsc_eval_mixed(one, z, two, 2, NULL, plain_logits);
            dsc_mtp_draft(one, 0, toks[k], &d1);
            memcpy(want1 + (size_t)(NS + k) * V, one->mtp_logits, sizeof(float) * (size_t)V);
            dsc_eval_seq(bx, k, toks, len[k], NULL);
        }
        if (bx && one) {
            /* 21 rows of the module: more than a decode batch, each brought up alone first */
            CHECK(dsc_mtp_draft_batch(bx, NS, seqs, nxt, d) == DSC_OK, "draft batch: %s", dsc_last_error());
            double e1 = 0;
            for (int k = 0; k < NS; k++) {
                const double e = max_rel(bx->mtp_logits + (size_t)k * V, want1 + (size_t)k * V, V);
                e1 = e > e1 ? e : e1;
                CHECK(d[k] == d2[k], "%s: batch draft of sequence %d is its own (%d, %d)", model_name, k, d[k], d2[k]);
            }
            CHECK(e1 < 1e-4, "%s: a batch's drafts after prompts = each alone (%g)", model_name, e1);
            /* A saved state carries the module's inputs: loaded elsewhere, the same draft. */
            const size_t sz = dsc_seq_state_size(bx, len[2]);
            char *state = malloc(sz);
            dsc_ctx_truncate(one, 0); /* other tokens' rows in the module's cache of `one` */
            dsc_eval(one, plain, 12, NULL);
            dsc_mtp_draft(one, 0, 5, &d1);
            CHECK(sz == dsc_seq_state_size(one, len[2]) && sz > dsc_seq_state_size(ctx, len[2]) &&
                      dsc_seq_save(bx, 2, len[2], state) == DSC_OK && dsc_seq_load(one, 0, len[2], state) == DSC_OK &&
                      dsc_mtp_draft(one, 0, nxt[2], &d1) == DSC_OK &&
                      !memcmp(one->mtp_logits, want1 + (size_t)2 * V, sizeof(float) * (size_t)V),
                  "%s: an MTP state saved and loaded drafts as before: %s", model_name, dsc_last_error());
            free(state);
            const int32_t s6[2 * NS] = {0, 0, 1, 1, 2, 2}, t6[2 * NS] = {nxt[0], toks[3], nxt[1], toks[4], nxt[2], toks[5]};
            dsc_eval_mixed(bx, s6, t6, 2 * NS, NULL, plain_logits);
            const int32_t nx2[NS] = {toks[0], toks[1], toks[2]};
            CHECK(dsc_mtp_draft_batch(bx, NS, seqs, nx2, d) == DSC_OK, "draft batch: %s", dsc_last_error());
            CHECK(!memcmp(bx->mtp_logits, want1 + (size_t)NS * V, sizeof(float) * (size_t)V * NS),
                  "%s: a batch's drafts of two rows each = each alone, to the bit", model_name);
            const int32_t twice[2] = {1, 1}, nn[2] = {5, 5};
            CHECK(dsc_mtp_draft_batch(bx, 2, twice, nn, d) == DSC_ERR_ARG, "draft batch: a sequence twice refused");
            CHECK(dsc_mtp_draft_batch(bx, NS + 1, seqs, nn, d) == DSC_ERR_ARG, "draft batch: too many sequences refused");
            CHECK(dsc_mtp_draft_batch(bx, 0, seqs, nn, d) == DSC_ERR_ARG, "draft batch: none refused");
        }
        free(want1);
        dsc_ctx_free(one);
        dsc_ctx_free(bx);
    }
done:
    dsc_sampler_free(smp);
    dsc_ctx_free(sx);
    dsc_ctx_free(ctx);
    free(plain_logits);
    free(probe);
    dsc_model_free(m);
}

/* The public API's contracts at their edges: bad arguments are errors
 * (never a crash or a silent success), documented protocols hold. */
static void test_api_edges(const char *golden) {
    static float data[4];
    const char *path = "/tmp/dsc_test_api_edges.st";
    dsc_tensor_view neg = {"a", "F32", 1, {-1}, data}, big = {"a", "F32", 2, {1LL << 31, 1LL << 31}, data};
    dsc_tensor_view nine = {"a", "F32", 9, {1, 1, 1, 1, 1, 1, 1, 1}, data}, ok = {"a", "F32", 1, {4}, data};
    dsc_tensor_view nodata = {"a", "F32", 1, {4}, NULL}, meta = {"__metadata__", "F32", 1, {4}, data};
    dsc_tensor_view noname = {NULL, "F32", 1, {4}, data}, two[2] = {ok, ok};
    CHECK(dsc_safetensors_write(path, &neg, 1, NULL, NULL) == DSC_ERR_ARG, "st write: a negative dimension");
    CHECK(dsc_safetensors_write(path, &big, 1, NULL, NULL) == DSC_ERR_ARG, "st write: a size that wraps");
    CHECK(dsc_safetensors_write(path, &nine, 1, NULL, NULL) == DSC_ERR_ARG, "st write: ndim 9");
    CHECK(dsc_safetensors_write(path, &nodata, 1, NULL, NULL) == DSC_ERR_ARG, "st write: no data");
    CHECK(dsc_safetensors_write(path, &meta, 1, "k", "v") == DSC_ERR_ARG, "st write: a tensor named __metadata__");
    CHECK(dsc_safetensors_write(path, &noname, 1, NULL, NULL) == DSC_ERR_ARG, "st write: no name");
    CHECK(dsc_safetensors_write(path, two, 2, NULL, NULL) == DSC_ERR_ARG, "st write: a name twice");
    CHECK(dsc_safetensors_write(path, &ok, -1, NULL, NULL) == DSC_ERR_ARG, "st write: n = -1");
    CHECK(dsc_safetensors_write(path, &ok, 1, NULL, NULL) == DSC_OK, "st write: a good view");
    remove(path);

    dsc_sampler_params sp = dsc_sampler_default_params();
    dsc_sampler *smp = NULL;
    sp.temp = INFINITY;
    CHECK(dsc_sampler_new(&sp, 4, &smp) == DSC_ERR_ARG && !smp, "sampler: temp +Inf refused");
    sp.temp = 1e-45f, sp.top_p = 1;
    const float lg[4] = {-INFINITY, 1, -INFINITY, 1};
    int masked = 0;
    if (dsc_sampler_new(&sp, 4, &smp) == DSC_OK)
        for (int i = 0; i < 100; i++) masked += (dsc_sampler_sample(smp, lg) & 1) == 0;
    CHECK(smp && masked == 0, "sampler: a temp whose inverse is +Inf samples greedily, never a -Inf logit");
    dsc_sampler_free(smp), smp = NULL;
    sp = dsc_sampler_default_params(), sp.repeat_last_n = INT32_MAX;
    CHECK(dsc_sampler_new(&sp, 4, &smp) == DSC_ERR_ARG, "sampler: repeat_last_n INT32_MAX refused");
    CHECK(dsc_argmax(data, 0) == -1 && dsc_argmax(data, -5) == -1 && dsc_argmax(NULL, 4) == -1, "argmax: n < 1");
    CHECK(dsc_sampler_sample(NULL, data) == -1 && dsc_ctx_n_ctx(NULL) == 0 && dsc_ctx_logits(NULL) == NULL &&
              dsc_seq_pos(NULL, 0) == -1 && dsc_seq_state_size(NULL, 4) == 0 && dsc_ctx_kv_bytes(NULL) == 0,
          "accessors of NULL handles: -1, 0 or NULL");
    dsc_model_info zero;
    dsc_model_get_info(NULL, &zero);
    CHECK(zero.vocab_size == 0 && zero.model_type == NULL, "model info of no model: zeroed");

    char buf[4096];
    snprintf(buf, sizeof buf, "%s/tokenizer/deepseek-v3/tokenizer.json", golden);
    dsc_tokenizer *tok = NULL;
    if (dsc_tokenizer_load(buf, &tok) == DSC_OK) {
        const dsc_chat_message msg = {.role = "user", .content = "hi"};
        size_t n = 99, need = 0;
        dsc_tokenize(tok, "hello there", 11, 0, NULL, 0, &need);
        CHECK(dsc_chat_tokenize(tok, &msg, 1, 0, NULL, 0, &n) == DSC_ERR_ARG && n == 3 && need > 0,
              "chat tokenize: the count with no buffer, as dsc_tokenize (got %zu)", n);
        CHECK(dsc_chat_tokenize(tok, &msg, 1, 0, NULL, 0, NULL) == DSC_ERR_ARG, "chat tokenize: NULL n_ids");
        CHECK(dsc_chat_tokenize(tok, NULL, 1, 0, NULL, 0, &n) == DSC_ERR_ARG, "chat tokenize: NULL messages");
        /* prefix completion: the conversation's generation prompt, then the
         * prefix's tokens, and nothing after them */
        const dsc_chat_message conv[2] = {{.role = "user", .content = "Write quick sort."},
                                           {.role = "assistant", .content = "```python\n"}};
        int32_t ids[64], gen[64], pre[16];
        size_t n_ids = 0, n_gen = 0, n_pre = 0;
        for (unsigned fl = 0; fl <= DSC_CHAT_REASONING; fl += DSC_CHAT_REASONING) {
            const int ok = dsc_chat_tokenize(tok, conv, 2, fl | DSC_CHAT_PREFIX | DSC_CHAT_GENERATION_PROMPT, ids, 64,
                                             &n_ids) == DSC_OK &&
                           dsc_chat_tokenize(tok, conv, 1, DSC_CHAT_GENERATION_PROMPT, gen, 64, &n_gen) == DSC_OK &&
                           dsc_tokenize(tok, conv[1].content, strlen(conv[1].content), 0, pre, 16, &n_pre) == DSC_OK;
            CHECK(ok && n_ids == n_gen + n_pre && !memcmp(ids, gen, sizeof *ids * n_gen) &&
                      !memcmp(ids + n_gen, pre, sizeof *ids * n_pre),
                  "chat prefix%s: the generation prompt (without <think>), then the prefix, open (%zu = %zu + %zu)",
                  fl ? " (R1 template)" : "", n_ids, n_gen, n_pre);
        }
        CHECK(dsc_chat_tokenize(tok, conv, 1, DSC_CHAT_PREFIX, ids, 64, &n_ids) == DSC_ERR_ARG,
              "chat prefix: refused when the last message is not the assistant's");
        /* A template's output is tokenized as one string: the ids of a
         * conversation are those of its own text tokenized whole (the text
         * between markers merges across the seams of its pieces: two system
         * messages, a call's name, fence and arguments, results in a row). */
        const dsc_tool_call calls[2] = {{"get_weather", "{\"city\": \"Paris\"}\n"}, {"get_time", "{}"}};
        const dsc_chat_message talk[] = {
            {.role = "system", .content = "You are terse."}, {.role = "system", .content = "\n\nAnswer in French."},
            {.role = "user", .content = "Weather and time in Paris?"},
            {.role = "assistant", .content = "Let me look.\n", .tool_calls = calls, .n_tool_calls = 2},
            {.role = "tool", .content = "{\"temp\": 21}\n"}, {.role = "tool", .content = "\n12:00"},
            {.role = "assistant", .content = "21 degrees at noon.\n\n"}, {.role = "user", .content = "Thanks."}};
        const char *tools_text = "## Tools\n\nYou can call get_weather and get_time, as <｜tool▁calls▁begin｜>...";
        int32_t whole[512], again[512];
        size_t n_whole = 0, n_again = 0, need_text = 0;
        int same = 1;
        for (unsigned fl = 0; fl <= DSC_CHAT_REASONING; fl += DSC_CHAT_REASONING) {
            const dsc_status s1 = dsc_chat_tokenize_tools(tok, talk, 8, tools_text, fl | DSC_CHAT_GENERATION_PROMPT, whole,
                                                          512, &n_whole);
            dsc_detokenize(tok, whole, n_whole, NULL, 0, &need_text);
            char *text = malloc(need_text + 1);
            same &= s1 == DSC_OK && text && dsc_detokenize(tok, whole, n_whole, text, need_text + 1, &need_text) == DSC_OK &&
                    dsc_tokenize(tok, text, need_text, 1, again, 512, &n_again) == DSC_OK && n_again == n_whole &&
                    !memcmp(again, whole, sizeof *whole * n_whole);
            free(text);
        }
        CHECK(same && n_whole > 60, "chat: a conversation's ids = its text tokenized whole (%zu ids, both templates)",
              n_whole);
        dsc_utf8_stream st = {{'a', 'b', 'c'}, 3};
        char out[64];
        CHECK(dsc_utf8_stream_push(&st, tok, 1, out, sizeof out, &n) == DSC_ERR_ARG, "utf8 stream: bad pending bytes");
        dsc_tokenizer_free(tok);
    }
    const char *cfg = "/tmp/dsc_test_chat_list.json";
    FILE *fp = fopen(cfg, "w");
    if (fp) {
        fputs("{\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"x\"}, "
              "{\"name\": \"default\", \"template\": \"{{'<｜Assistant｜><think>\\\\n'}}\"}]}", fp);
        fclose(fp);
    }
    unsigned flags = 0;
    CHECK(dsc_chat_detect(cfg, &flags) == DSC_OK && (flags & DSC_CHAT_REASONING), "chat detect: a list of templates");
    CHECK(dsc_chat_detect(cfg, NULL) == DSC_ERR_ARG && dsc_chat_detect(NULL, &flags) == DSC_ERR_ARG, "chat detect: NULL");
    remove(cfg);
    dsc_machine mach;
    CHECK(dsc_measure_machine(100000, NULL, &mach) == DSC_ERR_ARG, "measure machine: 100000 threads refused");

    dsc_model *m = NULL;
    CHECK(dsc_model_load(golden, NULL, NULL) == DSC_ERR_ARG, "model load: NULL out");
    snprintf(buf, sizeof buf, "%s/models/v3-tiny/model", golden);
    if (dsc_model_load(buf, NULL, &m)) return;
    dsc_ctx *ctx = NULL;
    dsc_ctx_params cp = dsc_ctx_default_params();
    cp.n_ctx = 16, cp.n_seq = 2;
    CHECK(dsc_ctx_new(NULL, &cp, &ctx) == DSC_ERR_ARG && dsc_ctx_new(m, &cp, NULL) == DSC_ERR_ARG, "ctx new: NULL");
    if (dsc_ctx_new(m, &cp, &ctx) == DSC_OK) {
        const int32_t seqs[2] = {0, 1}, toks[2] = {5, 6};
        static float rows[2 * 512];
        const uint8_t first[2] = {1, 0};
        CHECK(dsc_eval(ctx, NULL, 1, NULL) == DSC_ERR_ARG && dsc_eval(NULL, toks, 1, NULL) == DSC_ERR_ARG &&
                  dsc_eval_mixed(ctx, NULL, toks, 2, NULL, rows) == DSC_ERR_ARG && dsc_ctx_truncate(NULL, 0) == DSC_ERR_ARG,
              "eval: NULL arguments");
        CHECK(dsc_eval_mixed(ctx, seqs, toks, 2, first, rows) == DSC_OK && dsc_ctx_logits(ctx) == NULL,
              "eval mixed without the last token's row: no logits kept");
        CHECK(dsc_eval_mixed(ctx, seqs, toks, 2, NULL, rows) == DSC_OK && dsc_ctx_logits(ctx) &&
                  !memcmp(dsc_ctx_logits(ctx), rows + 512, sizeof(float) * 512),
              "eval mixed: the kept logits are the last token's");
        CHECK(dsc_seq_state_size(ctx, 0) == 0 && dsc_seq_save(ctx, 0, 0, NULL) == DSC_OK &&
                  dsc_seq_load(ctx, 0, 0, NULL) == DSC_OK && dsc_seq_save(ctx, 0, 1, NULL) == DSC_ERR_ARG,
              "seq save/load: 0 tokens without a buffer");
        int64_t res;
        CHECK(dsc_model_resident(m, &res, NULL) == DSC_ERR_ARG, "model resident: NULL");
        dsc_ctx_free(ctx);
    }
    dsc_model_free(m);
}

int main(int argc, char **argv) {
    test_conversions();
    test_fp8_kernels();
    test_dtype_agreement();
    test_isa_kernels();
    test_q_rows_odd_x();
    test_q_rows_limits();
    test_q4_rounds_x();
    test_fp8_daz();
    test_gemm_w();
    test_matvec_tm();
    test_attn();
    test_norms();
    test_routing();
    test_rope();
    test_think_split();
    test_dsml();
    test_sampler();
    test_kv_types();
    test_relu_wsum();
    test_v32_sequences();
    test_init_f32_large();
    test_hugemap();
    test_read_probe();
    test_st_write_layout();
    if (argc > 1) test_context(argv[1]);
    if (argc > 1) test_sequences(argv[1]);
    if (argc > 1) test_long_decode(argv[1]);
    if (argc > 1) test_prefill_forms(argv[1], "v3-tiny", DSC_KV_F32);
    if (argc > 1) test_prefill_forms(argv[1], "v3-tiny", DSC_KV_BF16);
    if (argc > 1) test_prefill_forms(argv[1], "v2lite-tiny", DSC_KV_F32);
    if (argc > 1) {
        static const char *const inv[] = {"v3-tiny", "v3-fp8-tiny", "v2lite-tiny", "v2-grouped-tiny"};
        char dir[4096];
        for (int i = 0; i < 4; i++) {
            snprintf(dir, sizeof dir, "%s/models/%s/model", argv[1], inv[i]);
            test_batch_invariant(dir, inv[i], i == 0 ? DSC_KV_BF16 : DSC_KV_F32);
        }
        char tmp[] = "/tmp/dsc_inv_XXXXXX";
        if (mkdtemp(tmp)) {
            snprintf(dir, sizeof dir, "%s/models/v3-tiny/model", argv[1]);
            for (int q = 0; q < 2; q++) {
                char out[600];
                snprintf(out, sizeof out, "%s/%s", tmp, q ? "q4" : "q8");
                CHECK(dsc_quantize(dir, out, q ? "q4" : "q8") == DSC_OK, "quantize for batch-invariant: %s", dsc_last_error());
                test_batch_invariant(out, q ? "v3-tiny q4" : "v3-tiny q8", DSC_KV_F32);
            }
            char cmd[600];
            snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
            if (system(cmd) != 0) printf("note: could not remove %s\n", tmp);
        }
    }
    if (argc > 1) test_api_edges(argv[1]);
    if (argc > 1) test_spec(argv[1], "v3-tiny");
    if (argc > 1) test_spec(argv[1], "v3-fp8-tiny");
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
