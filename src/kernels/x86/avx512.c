/*
 * avx512.c — AVX-512 (F, BW, VL, F16C) kernels, checked against kernels_ref.c.
 *
 * matmul_rows computes tiles of 4 weight rows x 4 tokens: each 16-column step
 * dequantises 4 weight vectors once and feeds 16 FMAs, so prefill reuses the
 * converted weights and decode (1 token) streams the rows at memory speed.
 * Partial tiles repeat the last row / token (results discarded) so the inner
 * loop has no branches.
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"

#define RT 4
#define TT 4

static inline float hsum(__m512 v) { return _mm512_reduce_add_ps(v); }

/* 2^120: e4m3 magnitude bits shifted into a float's exponent field need
 * this factor (bias 127 - 7); denormal floats handle e4m3 subnormals. */
#define E4M3_FACTOR 1.329227995784916e36f

/* Per-type row state and 16-value loads (m: mask of valid columns). */
#define LOAD_F32(i, c, m) _mm512_maskz_loadu_ps((m), (const float *)rp[i] + (c))
#define LOAD_BF16(i, c, m)                                                                                           \
    _mm512_castsi512_ps(                                                                                             \
        _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16((m), (const uint16_t *)rp[i] + (c))), 16))
#define LOAD_F16(i, c, m) _mm512_cvtph_ps(_mm256_maskz_loadu_epi16((m), (const uint16_t *)rp[i] + (c)))

static inline __m512 load_fp8(const uint8_t *p, __mmask16 m, float scale) {
    __m512i b = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, p));
    __m512i mag = _mm512_slli_epi32(_mm512_and_si512(b, _mm512_set1_epi32(0x7f)), 20);
    __m512i sgn = _mm512_slli_epi32(_mm512_and_si512(b, _mm512_set1_epi32(0x80)), 24);
    return _mm512_mul_ps(_mm512_castsi512_ps(_mm512_or_si512(mag, sgn)), _mm512_set1_ps(scale * E4M3_FACTOR));
}
#define LOAD_FP8(i, c, m) load_fp8((const uint8_t *)rp[i] + (c), (m), sp[i][(c) / bc])

static inline float f16s(uint16_t h) { return _cvtsh_ss(h); }

static inline __m512 load_q8(const int8_t *p, float scale) {
    __m512 v = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p)));
    return _mm512_mul_ps(v, _mm512_set1_ps(scale));
}
#define LOAD_Q8(i, c, m) load_q8((const int8_t *)rp[i] + (c), f16s(qp[i][(c) / DSC_QBLOCK]))

static inline __m512 load_q4(const uint8_t *blk, int high, float scale) {
    __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)blk));
    b = high ? _mm512_srli_epi32(b, 4) : _mm512_and_si512(b, _mm512_set1_epi32(15));
    __m512 v = _mm512_cvtepi32_ps(_mm512_sub_epi32(b, _mm512_set1_epi32(8)));
    return _mm512_mul_ps(v, _mm512_set1_ps(scale));
}
#define LOAD_Q4(i, c, m)                                                                                             \
    load_q4((const uint8_t *)rp[i] + (c) / DSC_QBLOCK * 16, (c) % DSC_QBLOCK, f16s(qp[i][(c) / DSC_QBLOCK]))

/* Row pointers of the tile: data row, FP8 scale row, Q scale row. */
static inline void tile_rows(const dsc_mat *w, int32_t r, int32_t r1, const void **rp, const float **sp,
                             const uint16_t **qp) {
    const int64_t C = w->cols;
    for (int i = 0; i < RT; i++) {
        int32_t row = r + i < r1 ? r + i : r1 - 1;
        switch (w->type) {
        case DSC_W_F32: rp[i] = (const float *)w->data + row * C; break;
        case DSC_W_F16:
        case DSC_W_BF16: rp[i] = (const uint16_t *)w->data + row * C; break;
        case DSC_W_F8_E4M3:
            rp[i] = (const uint8_t *)w->data + row * C;
            sp[i] = w->scale + (int64_t)(row / w->block_rows) * ((C + w->block_cols - 1) / w->block_cols);
            break;
        case DSC_W_Q8:
            rp[i] = (const int8_t *)w->data + row * C;
            qp[i] = w->qscale + row * (C / DSC_QBLOCK);
            break;
        case DSC_W_Q4:
            rp[i] = (const uint8_t *)w->data + row * (C / 2);
            qp[i] = w->qscale + row * (C / DSC_QBLOCK);
            break;
        }
    }
}

/* 4 rows x 4 tokens: 16 accumulators in registers, named so the compiler
 * never spills them. */
#define FMA_TILE4(c, m, LOAD)                                                                                        \
    do {                                                                                                             \
        __m512 w0 = LOAD(0, c, m), w1 = LOAD(1, c, m), w2 = LOAD(2, c, m), w3 = LOAD(3, c, m), xv;                   \
        xv = _mm512_maskz_loadu_ps((m), xp0 + (c));                                                                  \
        a00 = _mm512_fmadd_ps(w0, xv, a00), a10 = _mm512_fmadd_ps(w1, xv, a10);                                     \
        a20 = _mm512_fmadd_ps(w2, xv, a20), a30 = _mm512_fmadd_ps(w3, xv, a30);                                     \
        xv = _mm512_maskz_loadu_ps((m), xp1 + (c));                                                                  \
        a01 = _mm512_fmadd_ps(w0, xv, a01), a11 = _mm512_fmadd_ps(w1, xv, a11);                                     \
        a21 = _mm512_fmadd_ps(w2, xv, a21), a31 = _mm512_fmadd_ps(w3, xv, a31);                                     \
        xv = _mm512_maskz_loadu_ps((m), xp2 + (c));                                                                  \
        a02 = _mm512_fmadd_ps(w0, xv, a02), a12 = _mm512_fmadd_ps(w1, xv, a12);                                     \
        a22 = _mm512_fmadd_ps(w2, xv, a22), a32 = _mm512_fmadd_ps(w3, xv, a32);                                     \
        xv = _mm512_maskz_loadu_ps((m), xp3 + (c));                                                                  \
        a03 = _mm512_fmadd_ps(w0, xv, a03), a13 = _mm512_fmadd_ps(w1, xv, a13);                                     \
        a23 = _mm512_fmadd_ps(w2, xv, a23), a33 = _mm512_fmadd_ps(w3, xv, a33);                                     \
    } while (0)

#define FMA_TILE1(c, m, LOAD)                                                                                        \
    do {                                                                                                             \
        __m512 xv = _mm512_maskz_loadu_ps((m), xp0 + (c));                                                           \
        a00 = _mm512_fmadd_ps(LOAD(0, c, m), xv, a00), a10 = _mm512_fmadd_ps(LOAD(1, c, m), xv, a10);               \
        a20 = _mm512_fmadd_ps(LOAD(2, c, m), xv, a20), a30 = _mm512_fmadd_ps(LOAD(3, c, m), xv, a30);               \
    } while (0)

#define STORE_ACC(i, j, a)                                                                                           \
    if (r + (i) < r1 && t + (j) < n) y[(t + (j)) * ldy + (r + (i) - r0)] = hsum(a)

#define DEFINE_MATMUL(NAME, LOAD, TTV)                                                                               \
    static void NAME(float *y, int64_t ldy, const float *x, const dsc_mat *w, int32_t n, int32_t r0, int32_t r1) {  \
        const int32_t C = w->cols, cfull = C & ~15;                                                                  \
        const __mmask16 mt = (__mmask16)((1u << (C & 15)) - 1);                                                      \
        const int32_t bc = w->block_cols > 0 ? w->block_cols : 1;                                                    \
        (void)bc;                                                                                                    \
        for (int32_t r = r0; r < r1; r += RT) {                                                                      \
            const void *rp[RT];                                                                                      \
            const float *sp[RT] = {0};                                                                               \
            const uint16_t *qp[RT] = {0};                                                                            \
            (void)sp;                                                                                                \
            (void)qp;                                                                                                \
            tile_rows(w, r, r1, rp, sp, qp);                                                                         \
            for (int32_t t = 0; t < n; t += (TTV)) {                                                                 \
                const float *xp0 = x + (int64_t)t * C;                                                               \
                const float *xp1 = x + (int64_t)(t + 1 < n ? t + 1 : n - 1) * C;                                     \
                const float *xp2 = x + (int64_t)(t + 2 < n ? t + 2 : n - 1) * C;                                     \
                const float *xp3 = x + (int64_t)(t + 3 < n ? t + 3 : n - 1) * C;                                     \
                (void)xp1, (void)xp2, (void)xp3;                                                                     \
                __m512 a00 = _mm512_setzero_ps(), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00;  \
                __m512 a13 = a00, a20 = a00, a21 = a00, a22 = a00, a23 = a00, a30 = a00, a31 = a00, a32 = a00;       \
                __m512 a33 = a00;                                                                                    \
                if ((TTV) == 1) {                                                                                    \
                    for (int32_t c = 0; c < cfull; c += 16) FMA_TILE1(c, (__mmask16)0xffff, LOAD);                   \
                    if (C & 15) FMA_TILE1(cfull, mt, LOAD);                                                          \
                } else {                                                                                             \
                    for (int32_t c = 0; c < cfull; c += 16) FMA_TILE4(c, (__mmask16)0xffff, LOAD);                   \
                    if (C & 15) FMA_TILE4(cfull, mt, LOAD);                                                          \
                }                                                                                                    \
                STORE_ACC(0, 0, a00);                                                                                \
                STORE_ACC(1, 0, a10);                                                                                \
                STORE_ACC(2, 0, a20);                                                                                \
                STORE_ACC(3, 0, a30);                                                                                \
                if ((TTV) == 1) continue;                                                                            \
                STORE_ACC(0, 1, a01);                                                                                \
                STORE_ACC(1, 1, a11);                                                                                \
                STORE_ACC(2, 1, a21);                                                                                \
                STORE_ACC(3, 1, a31);                                                                                \
                STORE_ACC(0, 2, a02);                                                                                \
                STORE_ACC(1, 2, a12);                                                                                \
                STORE_ACC(2, 2, a22);                                                                                \
                STORE_ACC(3, 2, a32);                                                                                \
                STORE_ACC(0, 3, a03);                                                                                \
                STORE_ACC(1, 3, a13);                                                                                \
                STORE_ACC(2, 3, a23);                                                                                \
                STORE_ACC(3, 3, a33);                                                                                \
            }                                                                                                        \
        }                                                                                                            \
    }

/* Decode (one token): one row at a time, 4 column steps in flight, so each
 * thread reads its rows as one sequential stream. */
#ifndef PF_AHEAD
#define PF_AHEAD 512
#endif
#define DEFINE_MATVEC(NAME, LOAD)                                                                                    \
    static void NAME(float *y, int64_t ldy, const float *x, const dsc_mat *w, int32_t n, int32_t r0, int32_t r1) {  \
        const int32_t C = w->cols, c64 = C & ~63, cfull = C & ~15;                                                   \
        const int esz = w->type == DSC_W_F32 ? 4 : w->type <= DSC_W_BF16 ? 2 : 1; /* bytes per column (Q4: ~) */  \
        const __mmask16 mt = (__mmask16)((1u << (C & 15)) - 1), all = (__mmask16)0xffff;                            \
        const int32_t bc = w->block_cols > 0 ? w->block_cols : 1;                                                    \
        (void)bc, (void)n, (void)ldy, (void)all;                                                                     \
        for (int32_t r = r0; r < r1; r++) {                                                                          \
            const void *rp[RT];                                                                                      \
            const float *sp[RT] = {0};                                                                               \
            const uint16_t *qp[RT] = {0};                                                                            \
            (void)sp, (void)qp;                                                                                      \
            tile_rows(w, r, r + 1, rp, sp, qp);                                                                      \
            __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;                                              \
            int32_t c = 0;                                                                                           \
            for (; c < c64; c += 64) {                                                                               \
                _mm_prefetch((const char *)rp[0] + (int64_t)(c + PF_AHEAD) * esz, _MM_HINT_T0);                     \
                s0 = _mm512_fmadd_ps(LOAD(0, c, all), _mm512_loadu_ps(x + c), s0);                                   \
                s1 = _mm512_fmadd_ps(LOAD(0, c + 16, all), _mm512_loadu_ps(x + c + 16), s1);                         \
                s2 = _mm512_fmadd_ps(LOAD(0, c + 32, all), _mm512_loadu_ps(x + c + 32), s2);                         \
                s3 = _mm512_fmadd_ps(LOAD(0, c + 48, all), _mm512_loadu_ps(x + c + 48), s3);                         \
            }                                                                                                        \
            for (; c < cfull; c += 16) s0 = _mm512_fmadd_ps(LOAD(0, c, all), _mm512_loadu_ps(x + c), s0);            \
            if (C & 15) s1 = _mm512_fmadd_ps(LOAD(0, cfull, mt), _mm512_maskz_loadu_ps(mt, x + cfull), s1);          \
            y[r - r0] = hsum(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));                           \
        }                                                                                                            \
    }

/* BF16 decode: one 64-byte load holds 32 weights; as 32-bit lanes, the even
 * ones are the low halves (<< 16 makes them floats) and the odd ones the
 * high halves (masking the low half does). x is split once per call into
 * its even and odd elements of every 32-column step to match. */
static void mm1_bf16_fast(float *y, const float *x, const dsc_mat *w, int32_t r0, int32_t r1) {
    const int32_t C = w->cols, c32 = C & ~31;
    float xe[c32 / 2 + 1], xo[c32 / 2 + 1];
    for (int32_t c = 0; c < c32; c += 2) xe[c / 2] = x[c], xo[c / 2] = x[c + 1];
    const __m512i hi_mask = _mm512_set1_epi32((int)0xffff0000u);
    for (int32_t r = r0; r < r1; r++) {
        const uint16_t *p = (const uint16_t *)w->data + (int64_t)r * C;
        __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        int32_t c = 0;
        for (; c + 64 <= c32; c += 64) {
            _mm_prefetch((const char *)(p + c) + 2 * PF_AHEAD, _MM_HINT_T0);
            __m512i v0 = _mm512_loadu_si512(p + c), v1 = _mm512_loadu_si512(p + c + 32);
            s0 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(v0, 16)), _mm512_loadu_ps(xe + c / 2), s0);
            s1 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(v0, hi_mask)), _mm512_loadu_ps(xo + c / 2), s1);
            s2 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(v1, 16)), _mm512_loadu_ps(xe + c / 2 + 16), s2);
            s3 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(v1, hi_mask)), _mm512_loadu_ps(xo + c / 2 + 16), s3);
        }
        for (; c < c32; c += 32) {
            __m512i v0 = _mm512_loadu_si512(p + c);
            s0 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(v0, 16)), _mm512_loadu_ps(xe + c / 2), s0);
            s1 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(v0, hi_mask)), _mm512_loadu_ps(xo + c / 2), s1);
        }
        float t = hsum(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
        for (; c < C; c++) t += kern_bf16_to_f32(p[c]) * x[c]; /* tail */
        y[r - r0] = t;
    }
}

/* Decode kernels for the block formats: the block's scale multiplies the
 * block's partial dot product once. Q4 rows take the AVX2 kernel (x
 * rounded to 8 bits, kernels.h). */
void avx2_q4_rows(float *y, int64_t ldy, const float *x, const dsc_mat *w, int32_t n, int32_t r0, int32_t r1);

static void mm1_q8(float *y, int64_t ldy, const float *x, const dsc_mat *w, int32_t n, int32_t r0, int32_t r1) {
    (void)ldy, (void)n;
    const int32_t C = w->cols, nb = C / DSC_QBLOCK;
    for (int32_t r = r0; r < r1; r++) {
        const int8_t *q = (const int8_t *)w->data + (int64_t)r * C;
        const uint16_t *sc = w->qscale + (int64_t)r * nb;
        __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
        for (int32_t b = 0; b < nb; b++) {
            _mm_prefetch((const char *)q + 32 * b + PF_AHEAD, _MM_HINT_T0);
            __m512 w0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(q + 32 * b))));
            __m512 w1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(q + 32 * b + 16))));
            __m512 t = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + 32 * b + 16), _mm512_mul_ps(w0, _mm512_loadu_ps(x + 32 * b)));
            if (b & 1) acc1 = _mm512_fmadd_ps(t, _mm512_set1_ps(f16s(sc[b])), acc1);
            else acc0 = _mm512_fmadd_ps(t, _mm512_set1_ps(f16s(sc[b])), acc0);
        }
        y[r - r0] = hsum(_mm512_add_ps(acc0, acc1));
    }
}

/* TT tokens per tile for prefill; 1 for decode (no repeated FMAs). */
#define DEFINE_MATMULS(T, LOAD)                                                                                      \
    DEFINE_MATMUL(mm_##T, LOAD, TT)                                                                                  \
    DEFINE_MATVEC(mm1_##T, LOAD)
DEFINE_MATMULS(f32, LOAD_F32)
DEFINE_MATMUL(mm_bf16, LOAD_BF16, TT) /* decode: mm1_bf16_fast */
DEFINE_MATMULS(f16, LOAD_F16)
DEFINE_MATMULS(fp8, LOAD_FP8)
DEFINE_MATMUL(mm_q8, LOAD_Q8, TT)

#define AXPY4(c, m, LOAD)                                                                                            \
    do {                                                                                                             \
        __m512 yv = _mm512_maskz_loadu_ps((m), y + (c));                                                             \
        yv = _mm512_fmadd_ps(LOAD(0, c, m), av[0], yv);                                                              \
        yv = _mm512_fmadd_ps(LOAD(1, c, m), av[1], yv);                                                              \
        yv = _mm512_fmadd_ps(LOAD(2, c, m), av[2], yv);                                                              \
        yv = _mm512_fmadd_ps(LOAD(3, c, m), av[3], yv);                                                              \
        _mm512_mask_storeu_ps(y + (c), (m), yv);                                                                     \
    } while (0)

#define DEFINE_MATVEC_T(NAME, LOAD)                                                                                  \
    static void NAME(float *y, const float *a, const dsc_mat *w, int32_t r0, int32_t r1) {                          \
        const int32_t C = w->cols, cfull = C & ~15;                                                                  \
        const __mmask16 mt = (__mmask16)((1u << (C & 15)) - 1);                                                      \
        const int32_t bc = w->block_cols > 0 ? w->block_cols : 1;                                                    \
        (void)bc;                                                                                                    \
        for (int32_t r = r0; r < r1; r += RT) {                                                                      \
            const void *rp[RT];                                                                                      \
            const float *sp[RT] = {0};                                                                               \
            const uint16_t *qp[RT] = {0};                                                                            \
            (void)sp;                                                                                                \
            (void)qp;                                                                                                \
            tile_rows(w, r, r1, rp, sp, qp);                                                                         \
            __m512 av[RT]; /* rows past r1 repeat the last one with weight 0 */                                      \
            for (int i = 0; i < RT; i++) av[i] = _mm512_set1_ps(r + i < r1 ? a[r + i - r0] : 0.0f);                 \
            for (int32_t c = 0; c < cfull; c += 16) AXPY4(c, (__mmask16)0xffff, LOAD);                              \
            if (C & 15) AXPY4(cfull, mt, LOAD);                                                                      \
        }                                                                                                            \
    }

DEFINE_MATVEC_T(mv_f32, LOAD_F32)
DEFINE_MATVEC_T(mv_bf16, LOAD_BF16)
DEFINE_MATVEC_T(mv_f16, LOAD_F16)
DEFINE_MATVEC_T(mv_fp8, LOAD_FP8)
DEFINE_MATVEC_T(mv_q8, LOAD_Q8)
DEFINE_MATVEC_T(mv_q4, LOAD_Q4)

static void avx512_matvec_t(float *y, const float *a, const dsc_mat *w, int32_t r0, int32_t r1) {
    switch (w->type) {
    case DSC_W_F32: mv_f32(y, a, w, r0, r1); return;
    case DSC_W_BF16: mv_bf16(y, a, w, r0, r1); return;
    case DSC_W_F16: mv_f16(y, a, w, r0, r1); return;
    case DSC_W_F8_E4M3:
        if (w->block_cols % 16 == 0) mv_fp8(y, a, w, r0, r1);
        else kern_ref.matvec_t(y, a, w, r0, r1);
        return;
    case DSC_W_Q8: mv_q8(y, a, w, r0, r1); return;
    case DSC_W_Q4: mv_q4(y, a, w, r0, r1); return;
    }
}

static void avx512_matmul_rows(float *y, int64_t ldy, const float *x, const dsc_mat *w, int32_t n, int32_t r0,
                               int32_t r1) {
    switch (w->type) {
    case DSC_W_F32: (n == 1 ? mm1_f32 : mm_f32)(y, ldy, x, w, n, r0, r1); return;
    case DSC_W_BF16:
        if (n == 1) mm1_bf16_fast(y, x, w, r0, r1);
        else mm_bf16(y, ldy, x, w, n, r0, r1);
        return;
    case DSC_W_F16: (n == 1 ? mm1_f16 : mm_f16)(y, ldy, x, w, n, r0, r1); return;
    case DSC_W_F8_E4M3:
        /* A 16-column step must not straddle two scale blocks. */
        if (w->block_cols % 16 == 0) (n == 1 ? mm1_fp8 : mm_fp8)(y, ldy, x, w, n, r0, r1);
        else kern_ref.matmul_rows(y, ldy, x, w, n, r0, r1);
        return;
    case DSC_W_Q8: (n == 1 ? mm1_q8 : mm_q8)(y, ldy, x, w, n, r0, r1); return;
    case DSC_W_Q4: avx2_q4_rows(y, ldy, x, w, n, r0, r1); return;
    }
}

static float avx512_dot(const float *a, const float *b, int32_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int32_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    }
    for (; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s0);
    }
    return hsum(_mm512_add_ps(s0, s1));
}

static void avx512_axpy(float *y, const float *x, float a, int32_t n) {
    const __m512 av = _mm512_set1_ps(a);
    for (int32_t i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 yv = _mm512_maskz_loadu_ps(m, y + i);
        _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(m, x + i), yv));
    }
}

static float avx512_fma_burn(int64_t iters) {
    __m512 x0 = _mm512_set1_ps(1.0f), x1 = _mm512_set1_ps(1.001f), x2 = _mm512_set1_ps(1.002f), x3 = _mm512_set1_ps(1.003f);
    __m512 x4 = _mm512_set1_ps(1.004f), x5 = _mm512_set1_ps(1.005f), x6 = _mm512_set1_ps(1.006f), x7 = _mm512_set1_ps(1.007f);
    const __m512 m = _mm512_set1_ps(kern_burn_m), c = _mm512_set1_ps(kern_burn_c);
    for (int64_t i = 0; i < iters; i++) {
        x0 = _mm512_fmadd_ps(x0, m, c), x1 = _mm512_fmadd_ps(x1, m, c), x2 = _mm512_fmadd_ps(x2, m, c), x3 = _mm512_fmadd_ps(x3, m, c);
        x4 = _mm512_fmadd_ps(x4, m, c), x5 = _mm512_fmadd_ps(x5, m, c), x6 = _mm512_fmadd_ps(x6, m, c), x7 = _mm512_fmadd_ps(x7, m, c);
    }
    return _mm512_reduce_add_ps(x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7);
}

/* 8 vectors at once over F32 / BF16 rows: per 32 columns, each row is
 * loaded once and feeds 16 FMAs into 16 register accumulators. */
#define TM_LOAD(r, c, m)                                                                                             \
    (bf16 ? _mm512_castsi512_ps(_mm512_slli_epi32(                                                                   \
                _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16((m), (const uint16_t *)w->data + (r) * C + (c))), 16)) \
          : _mm512_maskz_loadu_ps((m), (const float *)w->data + (r) * C + (c)))
#define TM_FMA(j)                                                                                                    \
    do {                                                                                                             \
        __m512 av = _mm512_set1_ps(a[(j) * lda + r - r0]);                                                           \
        c##j##0 = _mm512_fmadd_ps(w0, av, c##j##0);                                                                  \
        c##j##1 = _mm512_fmadd_ps(w1, av, c##j##1);                                                                  \
    } while (0)
#define TM_STORE(j)                                                                                                  \
    do {                                                                                                             \
        float *yj = y + (j) * ldy + c;                                                                               \
        _mm512_mask_storeu_ps(yj, m0, _mm512_add_ps(_mm512_maskz_loadu_ps(m0, yj), c##j##0));                        \
        _mm512_mask_storeu_ps(yj + 16, m1, _mm512_add_ps(_mm512_maskz_loadu_ps(m1, yj + 16), c##j##1));              \
    } while (0)

static void avx512_matvec_tm(float *y, int64_t ldy, const float *a, int64_t lda, int32_t m, const dsc_mat *w,
                             int32_t r0, int32_t r1) {
    const int64_t C = w->cols;
    const int bf16 = w->type == DSC_W_BF16;
    int32_t j0 = 0;
    if (w->type == DSC_W_F32 || bf16)
        for (; j0 + 8 <= m; j0 += 8, y += 8 * ldy, a += 8 * lda)
            for (int64_t c = 0; c < C; c += 32) {
                const __mmask16 m0 = C - c >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (C - c)) - 1);
                const __mmask16 m1 = C - c >= 32 ? (__mmask16)0xffff
                                     : C - c > 16 ? (__mmask16)((1u << (C - c - 16)) - 1)
                                                  : (__mmask16)0;
                __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00;
                __m512 c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00, c61 = c00, c70 = c00;
                __m512 c71 = c00;
                for (int64_t r = r0; r < r1; r++) {
                    const __m512 w0 = TM_LOAD(r, c, m0), w1 = TM_LOAD(r, c + 16, m1);
                    TM_FMA(0); TM_FMA(1); TM_FMA(2); TM_FMA(3); TM_FMA(4); TM_FMA(5); TM_FMA(6); TM_FMA(7);
                }
                TM_STORE(0); TM_STORE(1); TM_STORE(2); TM_STORE(3); TM_STORE(4); TM_STORE(5); TM_STORE(6); TM_STORE(7);
            }
    for (int32_t j = j0; j < m; j++) avx512_matvec_t(y + (j - j0) * ldy, a + (j - j0) * lda, w, r0, r1);
}

/* The trainer's products, exp and AdamW use the AVX2 forms (avx2.c): every
 * AVX-512 CPU runs them. */
void avx2_gemm(float *c, int64_t ldc, const float *a, int64_t lda, const float *b, int64_t ldb, int32_t M, int32_t N,
               int32_t K, int flags, float *pack);
double avx2_exp_sum(float *y, const float *x, int32_t n, float mx);
void avx2_mat_row(float *out, const dsc_mat *w, int32_t r);
void avx2_sigmoid(float *y, const float *x, int32_t n);
void avx2_adamw(float *p, const float *g, float *m, float *v, int64_t n, const dsc_adamw_hp *hp);
void avx2_q8_round(float *out, const float *x, int64_t n);
void avx2_relu_wsum(float *out, const float *d, int64_t ldd, const float *w, int32_t n, int32_t np);
void avx2_attn_scores(float *y, int64_t ldy, const float *x, int32_t n, const dsc_mat *w, int32_t r0, int32_t r1,
                      float *buf, int64_t ldb);
void avx2_attn_wsum(float *y, int64_t ldy, const float *a, int64_t lda, int32_t m, const float *buf, int64_t ldb,
                    int32_t np, int32_t cols);

const dsc_kernels kern_avx512 = {"avx512", avx512_matmul_rows, avx512_matvec_t, avx512_matvec_tm, avx512_dot, avx512_axpy,
                                 avx512_fma_burn, 16, avx2_gemm, avx2_mat_row, avx2_exp_sum, avx2_sigmoid, avx2_adamw, NULL,
                                 avx2_attn_scores, avx2_attn_wsum, avx2_q8_round, avx2_relu_wsum};
