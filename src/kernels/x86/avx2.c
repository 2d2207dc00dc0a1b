/*
 * avx2.c — AVX2 + FMA + F16C kernels, checked against kernels_ref.c.
 *
 * Same tiling as avx512.c (4 rows x 4 tokens) with 8-column steps; the last
 * cols % 8 columns are added in scalar code.
 */
#include <float.h>
#include <immintrin.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

#define RT 4
#define TT 2

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline __m128i load8(const void *p) { return _mm_loadl_epi64((const __m128i *)p); }

#define LOAD_F32(i, c) _mm256_loadu_ps((const float *)rp[i] + (c))
#define LOAD_BF16(i, c)                                                                                              \
    _mm256_castsi256_ps(_mm256_slli_epi32(                                                                           \
        _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)rp[i] + (c)))), 16))
#define LOAD_F16(i, c) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)rp[i] + (c))))

/* 8 E4M3 weights times their block scale. Sign-extended to 16 bits, shifted
 * left by 7 and masked with 0xbf80, an E4M3 byte is the F16 of 2^-8 x its
 * value (E4M3 subnormals become F16 subnormals, which vcvtph2ps converts
 * exactly), so scale x 2^8 gives value x scale with the one rounding of the
 * reference. 0x7f / 0xff (NaN in E4M3) read as +-480. */
static inline __m256 load_fp8(const uint8_t *p, float scale) {
    const __m128i v = _mm_cvtepi8_epi16(load8(p));
    const __m128i h = _mm_and_si128(_mm_slli_epi16(v, 7), _mm_set1_epi16((short)0xbf80));
    return _mm256_mul_ps(_mm256_cvtph_ps(h), _mm256_set1_ps(scale * 256.0f));
}
#define LOAD_FP8(i, c) load_fp8((const uint8_t *)rp[i] + (c), sp[i][(c) / bc])

static inline float f16s(uint16_t h) { return _cvtsh_ss(h); }

#define LOAD_Q8(i, c)                                                                                                \
    _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(load8((const int8_t *)rp[i] + (c)))),                      \
                  _mm256_set1_ps(f16s(qp[i][(c) / DSC_QBLOCK])))

static inline __m256 load_q4(const uint8_t *blk, int j, float scale) {
    __m256i b = _mm256_cvtepu8_epi32(load8(blk + (j & 15)));
    b = j >= 16 ? _mm256_srli_epi32(b, 4) : _mm256_and_si256(b, _mm256_set1_epi32(15));
    return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(b, _mm256_set1_epi32(8))), _mm256_set1_ps(scale));
}
#define LOAD_Q4(i, c)                                                                                                \
    load_q4((const uint8_t *)rp[i] + (c) / DSC_QBLOCK * 16, (c) % DSC_QBLOCK, f16s(qp[i][(c) / DSC_QBLOCK]))

static inline void tile_rows(const dsc_mat *w, int32_t r, int32_t r1, const void **rp, const float **sp,
                             const uint16_t **qp, int nr) {
    const int64_t C = w->cols;
    for (int i = 0; i < nr; i++) {
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

/* MRV rows x TTV tokens per tile: 12 accumulators (independent FMA chains)
 * in registers, each row's weights decoded once per 8 columns for all the
 * tile's tokens, each token's 8 x values loaded once for all rows. */
#define MR 6
#define DEFINE_MATMUL(NAME, LOAD, MRV, TTV, PF)                                                                      \
    static void NAME(float *y, int64_t ldy, const float *x, const dsc_mat *w, int32_t n, int32_t r0, int32_t r1) {   \
        const int32_t C = w->cols, c8 = C & ~7;                                                                      \
        const int32_t bc = w->block_cols > 0 ? w->block_cols : 1;                                                    \
        float wt[MRV][8];                                                                                            \
        (void)bc;                                                                                                    \
        for (int32_t r = r0; r < r1; r += MRV) {                                                                     \
            const void *rp[MRV];                                                                                     \
            const float *sp[MRV] = {0};                                                                              \
            const uint16_t *qp[MRV] = {0};                                                                           \
            (void)sp;                                                                                                \
            (void)qp;                                                                                                \
            tile_rows(w, r, r1, rp, sp, qp, MRV);                                                                    \
            for (int i = 0; i < MRV && c8 < C; i++) { /* scalar tail weights of each row */                          \
                float row[C];                                                                                        \
                kern_mat_row(row, w, r + i < r1 ? r + i : r1 - 1);                                                   \
                memcpy(wt[i], row + c8, sizeof(float) * (size_t)(C - c8));                                           \
            }                                                                                                        \
            const int32_t passes = (n + (TTV) - 1) / (TTV);                                                          \
            for (int32_t t = 0; t < n; t += (TTV)) {                                                                 \
                const float *xp[TTV];                                                                                \
                for (int j = 0; j < (TTV); j++) xp[j] = x + (int64_t)(t + j < n ? t + j : n - 1) * C;                \
                const float *pf[MRV] = {0}; /* F32: the next tile's rows, fetched as in bf16_eo_tiles */             \
                int npf = 0;                                                                                         \
                for (int i = t / (TTV); (PF) && passes > 1 && i < MRV && r + MRV + i < r1; i += passes)              \
                    pf[npf++] = (const float *)w->data + (int64_t)(r + MRV + i) * C;                                 \
                __m256 acc[MRV][TTV];                                                                                \
                _Pragma("GCC unroll 8") for (int i = 0; i < MRV; i++)                                                \
                    _Pragma("GCC unroll 4") for (int j = 0; j < (TTV); j++) acc[i][j] = _mm256_setzero_ps();         \
                for (int32_t c = 0; c < c8; c += 8) {                                                                \
                    if (!(c & 15))                                                                                   \
                        for (int i = 0; i < npf; i++) _mm_prefetch((const char *)(pf[i] + c), _MM_HINT_T0);          \
                    __m256 xv[TTV];                                                                                  \
                    _Pragma("GCC unroll 4") for (int j = 0; j < (TTV); j++) xv[j] = _mm256_loadu_ps(xp[j] + c);      \
                    _Pragma("GCC unroll 8") for (int i = 0; i < MRV; i++) { /* unrolled: all in registers */         \
                        const __m256 wv = LOAD(i, c);                                                                \
                        _Pragma("GCC unroll 4") for (int j = 0; j < (TTV); j++)                                      \
                            acc[i][j] = _mm256_fmadd_ps(wv, xv[j], acc[i][j]);                                       \
                    }                                                                                                \
                }                                                                                                    \
                for (int i = 0; i < MRV && r + i < r1; i++)                                                          \
                    for (int j = 0; j < (TTV) && t + j < n; j++) {                                                   \
                        float s = hsum8(acc[i][j]);                                                                  \
                        for (int32_t c = c8; c < C; c++) s += wt[i][c - c8] * xp[j][c];                              \
                        y[(t + j) * ldy + (r + i - r0)] = s;                                                         \
                    }                                                                                                \
            }                                                                                                        \
        }                                                                                                            \
    }

#define DEFINE_MATMULS(T, LOAD, PF)                                                                                  \
    DEFINE_MATMUL(mm_##T, LOAD, MR, TT, PF)                                                                          \
    DEFINE_MATMUL(mm1_##T, LOAD, MR, 1, 0)
/* F32 takes 4 rows x 3 tokens: 7 loads per 12 FMAs instead of 8, and 4 long
 * rows stay in cache where 6 spill (alternating runs, 2 threads, 64 MiB of
 * weights: 4 to 23% faster for 4 to 24 tokens). */
DEFINE_MATMUL(mm_f32, LOAD_F32, 4, 3, 1)
DEFINE_MATMUL(mm1_f32, LOAD_F32, MR, 1, 0)
DEFINE_MATMULS(bf16, LOAD_BF16, 0)
DEFINE_MATMULS(f16, LOAD_F16, 0)
DEFINE_MATMULS(fp8, LOAD_FP8, 0)
DEFINE_MATMULS(q8, LOAD_Q8, 0)

#define DEFINE_MATVEC_T(NAME, LOAD)                                                                                  \
    static void NAME(float *y, const float *a, const dsc_mat *w, int32_t r0, int32_t r1) {                           \
        const int32_t C = w->cols, c8 = C & ~7;                                                                      \
        const int32_t bc = w->block_cols > 0 ? w->block_cols : 1;                                                    \
        (void)bc;                                                                                                    \
        for (int32_t r = r0; r < r1; r += RT) {                                                                      \
            const void *rp[RT];                                                                                      \
            const float *sp[RT] = {0};                                                                               \
            const uint16_t *qp[RT] = {0};                                                                            \
            (void)sp;                                                                                                \
            (void)qp;                                                                                                \
            tile_rows(w, r, r1, rp, sp, qp, RT);                                                                     \
            __m256 av[RT];                                                                                           \
            for (int i = 0; i < RT; i++) av[i] = _mm256_set1_ps(r + i < r1 ? a[r + i - r0] : 0.0f);                  \
            /* the next tile's rows, which follow these in memory, fetched meanwhile */                          \
            const char *pf = (const char *)rp[0] + (RT * kern_mat_bytes(w) / w->rows);                              \
            const int64_t pstep = RT * kern_mat_bytes(w) / w->rows / (c8 / 8 > 0 ? c8 / 8 : 1);                      \
            for (int32_t c = 0; c < c8; c += 8) {                                                                    \
                if (r + RT < r1) _mm_prefetch(pf + c / 8 * pstep, _MM_HINT_T0);                                      \
                __m256 yv = _mm256_loadu_ps(y + c);                                                                  \
                yv = _mm256_fmadd_ps(LOAD(0, c), av[0], yv);                                                         \
                yv = _mm256_fmadd_ps(LOAD(1, c), av[1], yv);                                                         \
                yv = _mm256_fmadd_ps(LOAD(2, c), av[2], yv);                                                         \
                yv = _mm256_fmadd_ps(LOAD(3, c), av[3], yv);                                                         \
                _mm256_storeu_ps(y + c, yv);                                                                         \
            }                                                                                                        \
            if (c8 < C) { /* scalar tail */                                                                          \
                float row[C];                                                                                        \
                for (int32_t i = r; i < r + RT && i < r1; i++) {                                                     \
                    kern_mat_row(row, w, i);                                                                         \
                    for (int32_t c = c8; c < C; c++) y[c] += a[i - r0] * row[c];                                     \
                }                                                                                                    \
            }                                                                                                        \
        }                                                                                                            \
    }

DEFINE_MATVEC_T(mv_f32, LOAD_F32)
DEFINE_MATVEC_T(mv_bf16, LOAD_BF16)
DEFINE_MATVEC_T(mv_f16, LOAD_F16)
DEFINE_MATVEC_T(mv_fp8, LOAD_FP8)
DEFINE_MATVEC_T(mv_q8, LOAD_Q8)
DEFINE_MATVEC_T(mv_q4, LOAD_Q4)

static void avx2_matvec_t(float *y, const float *a, const dsc_mat *w, int32_t r0, int32_t r1) {
    switch (w->type) {
    case DSC_W_F32: mv_f32(y, a, w, r0, r1); return;
    case DSC_W_BF16: mv_bf16(y, a, w, r0, r1); return;
    case DSC_W_F16: mv_f16(y, a, w, r0, r1); return;
    case DSC_W_F8_E4M3:
        if (w->block_cols % 8 == 0) mv_fp8(y, a, w, r0, r1);
        else kern_ref.matvec_t(y, a, w, r0, r1);
        return;
    case DSC_W_Q8: mv_q8(y, a, w, r0, r1); return;
    case DSC_W_Q4: mv_q4(y, a, w, r0, r1); return;
    }
}

/* BF16, Q8 and Q4 products of few tokens (decode, batched decode, small
 * experts). Each (row, token) dot product is summed in the same order
 * whatever n is, so one token decoded alone gives the bits it gets inside a
 * prompt (a quantized KV cache then stores the same values either way).
 *
 * Q8 and Q4: for one token as runs of consecutive rows, a row of each in
 * turn (each run a sequential stream, prefetched ahead), in integers: Q8 against x split
 * into two int16 limbs (q8_eo_x), the block's scale multiplying the
 * block's partial dot product once; Q4 against x rounded to 8 bits, as
 * its reference defines (q4_pairs_x). Several tokens: each row's blocks
 * decoded once for 4 tokens at a time, each token's sum the same as alone. */
#define PF_AHEAD 3072
/* From this many tokens FP8 products run on the 6 x 2 tiles. */
#define DSC_FP8_TILES 32

/* The exponent s that puts max|x| x 2^s in [2^(top-1), 2^top); INT32_MIN
 * where x is not finite or too small for the split (the reference then
 * takes that token). */
static int32_t q_split_exp(const float *x, int32_t C, int top) {
    __m256 m = _mm256_setzero_ps(), nan = m;
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int32_t c = 0; c < C; c += 8) {
        const __m256 v = _mm256_loadu_ps(x + c);
        m = _mm256_max_ps(m, _mm256_and_ps(v, abs_mask));
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    }
    if (_mm256_movemask_ps(nan)) return INT32_MIN;
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    const float mx = _mm_cvtss_f32(h);
    if (!(mx <= 3.0e38f)) return INT32_MIN; /* inf */
    int e;
    frexpf(mx, &e);
    const int s = top - e;
    if (mx == 0 || s > 120) return INT32_MIN;
    return s;
}

/* Q8 by even and odd bytes: one 32-byte load holds a block, and its 16-bit
 * lanes shifted left by 8 are 256 x the weights of the even bytes, masked
 * with 0xff00 256 x those of the odd ones, no shuffle needed. x is split
 * into limbs dealt to match once per call (q8_eo_x): per block, hi of the
 * even elements, hi of the odd, lo of the even, lo of the odd (16 each),
 * with max|x| x 2^s in [4096, 8192) and x x 2^s = hi + lo x 2^-14, so that
 * |hi|, |lo| <= 8192 and each int32 lane's four products of 256 x int8
 * stay within 2^30. x is held to about 2^-27 of max|x|. Returns 2^-s / 256
 * (the weights' factor taken out), or 0 where q_split_exp finds no s. */
static float q8_eo_x(int16_t *xs, const float *x, int32_t C) {
    const int32_t s = q_split_exp(x, C, 13);
    if (s == INT32_MIN) return 0;
    const __m256 k1 = _mm256_set1_ps(ldexpf(1.0f, s / 2)), k2 = _mm256_set1_ps(ldexpf(1.0f, s - s / 2));
    const __m256 f14 = _mm256_set1_ps(16384.0f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7); /* packs' pairs of elements back in order */
    for (int32_t b = 0; b < C / DSC_QBLOCK; b++) {
        __m256 v[4];
        for (int k = 0; k < 4; k++) v[k] = _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 32 * b + 8 * k), k1), k2);
        /* evens, odds: [x0 x2 x8 x10 | x4 x6 x12 x14], [x16 ...], [x1 x3 x9 x11 | ...], ... */
        const __m256 part[2][2] = {{_mm256_shuffle_ps(v[0], v[1], 0x88), _mm256_shuffle_ps(v[2], v[3], 0x88)},
                                   {_mm256_shuffle_ps(v[0], v[1], 0xdd), _mm256_shuffle_ps(v[2], v[3], 0xdd)}};
        __m256i *d = (__m256i *)(xs + 64 * b);
        for (int o = 0; o < 2; o++) {
            __m256i hv[2], lv[2];
            for (int j = 0; j < 2; j++) {
                hv[j] = _mm256_cvtps_epi32(part[o][j]);
                lv[j] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_sub_ps(part[o][j], _mm256_cvtepi32_ps(hv[j])), f14));
            }
            _mm256_storeu_si256(d + o, _mm256_permutevar8x32_epi32(_mm256_packs_epi32(hv[0], hv[1]), order));
            _mm256_storeu_si256(d + 2 + o, _mm256_permutevar8x32_epi32(_mm256_packs_epi32(lv[0], lv[1]), order));
        }
    }
    return ldexpf(1.0f, -s) * (1.0f / 256);
}

/* acc += a block's products with x's dealt limbs X x its scale s, the
 * block's weights as 256 x the even (we) and odd (wo) ones. */
static inline __m256 q8_block_w(__m256 acc, __m256i we, __m256i wo, const __m256i *X, __m256 s) {
    const __m256i sh = _mm256_add_epi32(_mm256_madd_epi16(we, _mm256_loadu_si256(X)),
                                        _mm256_madd_epi16(wo, _mm256_loadu_si256(X + 1)));
    const __m256i sl = _mm256_add_epi32(_mm256_madd_epi16(we, _mm256_loadu_si256(X + 2)),
                                        _mm256_madd_epi16(wo, _mm256_loadu_si256(X + 3)));
    const __m256 f = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sl), _mm256_set1_ps(1.0f / 16384.0f), _mm256_cvtepi32_ps(sh));
    return _mm256_fmadd_ps(f, s, acc);
}

/* The block at q as 256 x its even (we) and odd (wo) weights, and its scale. */
static inline void q8_block_decode(__m256i *we, __m256i *wo, __m256 *s, const uint8_t *q, uint16_t scale) {
    const __m256i v = _mm256_loadu_si256((const __m256i *)q);
    *we = _mm256_slli_epi16(v, 8), *wo = _mm256_and_si256(v, _mm256_set1_epi16((short)0xff00));
    *s = _mm256_cvtph_ps(_mm_set1_epi16((short)scale));
}

/* acc += block b's products with x's dealt limbs X x its scale. */
static inline __m256 q8_block_eo(__m256 acc, const uint8_t *q, const __m256i *X, uint16_t scale) {
    __m256i we, wo;
    __m256 s;
    q8_block_decode(&we, &wo, &s, q, scale);
    return q8_block_w(acc, we, wo, X, s);
}

/* One Q8 row (bytes q, scales sc, nb blocks) against T (1-4) tokens' dealt
 * limbs (token t's at xs[t]) into y[t ldy]: each block's weights and scale
 * decoded once for the T tokens, each token's value summed as q8_rows_r
 * sums it alone. */
static inline __attribute__((always_inline)) void q8_row_tokens(float *y, int64_t ldy, const int16_t *const *xs,
                                                                const float *us, const uint8_t *q,
                                                                const uint16_t *sc, int32_t nb, const int T) {
    __m256 acc[4];
    _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();
    for (int32_t b = 0; b < nb; b++) {
        _mm_prefetch((const char *)q + 32 * b + PF_AHEAD, _MM_HINT_T0);
        __m256i we, wo;
        __m256 s;
        q8_block_decode(&we, &wo, &s, q + 32 * b, sc[b]);
        _Pragma("GCC unroll 4") for (int t = 0; t < T; t++)
            acc[t] = q8_block_w(acc[t], we, wo, (const __m256i *)xs[t] + 4 * b, s);
    }
    _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) y[t * ldy] = hsum8(acc[t]) * us[t];
}

/* Row k of each of R runs of per consecutive rows from r0 (ri[i], past r1
 * for a short last run) of a Q8 / Q4 matrix: its bytes q[i] (rows of
 * row_bytes, the last row of w standing in past r1) and scales sc[i]. */
static inline __attribute__((always_inline)) void q_run_rows(int32_t *ri, const uint8_t **q, const uint16_t **sc,
                                                             const dsc_mat *w, int64_t row_bytes, int32_t r0,
                                                             int32_t r1, int32_t per, int32_t k, const int R) {
    _Pragma("GCC unroll 4") for (int i = 0; i < R; i++) {
        ri[i] = r0 + i * per + k;
        const int32_t r = ri[i] < r1 ? ri[i] : r1 - 1;
        q[i] = (const uint8_t *)w->data + (int64_t)r * row_bytes;
        sc[i] = w->qscale + (int64_t)r * (w->cols / DSC_QBLOCK);
    }
}

/* Q8 rows r0..r1 against one token's dealt limbs: one at a time (R = 1),
 * or as R runs of consecutive rows (R up to 4), a row of each in turn (R
 * streams of loads, R chains of sums); each row's sum the same either way,
 * and the same as q8_row_tokens gives it among other tokens. */
static inline __attribute__((always_inline)) void q8_rows_r(float *y, const int16_t *xs, float unscale,
                                                            const dsc_mat *w, int32_t r0, int32_t r1, const int R) {
    const int32_t C = w->cols, nb = C / DSC_QBLOCK, per = (r1 - r0 + R - 1) / R;
    const __m256i *X = (const __m256i *)xs;
    for (int32_t k = 0; k < per; k++) {
        const uint8_t *q[4];
        const uint16_t *sc[4];
        int32_t ri[4];
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
        q_run_rows(ri, q, sc, w, C, r0, r1, per, k, R);
        _Pragma("GCC unroll 4") for (int32_t b = 0; b < nb; b++)
            _Pragma("GCC unroll 4") for (int i = 0; i < R; i++) {
                _mm_prefetch((const char *)q[i] + 32 * b + PF_AHEAD, _MM_HINT_T0);
                acc[i] = q8_block_eo(acc[i], q[i] + 32 * b, X + 4 * b, sc[i][b]);
            }
        _Pragma("GCC unroll 4") for (int i = 0; i < R; i++)
            if (ri[i] < r1) y[ri[i] - r0] = hsum8(acc[i]) * unscale;
    }
}

/* Kept out of line: the int16-widening rows before this, inlined into
 * avx2_matmul_rows, had gcc 12 keep the loop's bound in memory and ran
 * decode 7% slower. Three streams a thread: Q8 decode 1.029, 1.044 and
 * 1.028x against two in the whole model (`kernel_ab.sh -m`); one 0.961x, four
 * 0.970x. */
#define Q8_RUNS 3
__attribute__((noinline)) static void q8_rows_runs(float *y, const int16_t *xs, float unscale, const dsc_mat *w,
                                                   int32_t r0, int32_t r1) {
    q8_rows_r(y, xs, unscale, w, r0, r1, Q8_RUNS);
}

/* The split of x on the stack up to this many int16 values, else on the heap. */
#define QX_STACK 32768

/* Q8 rows of n tokens, each token's x split once per call; a token that
 * q8_eo_x cannot split (not finite, zero or tiny) goes through the
 * reference. */
static void q8_tokens(float *y, int64_t ldy, const float *x, const dsc_mat *w, int32_t n, int32_t r0, int32_t r1) {
    const int32_t C = w->cols;
    const size_t nx = 2 * (size_t)n * C;
    int16_t stack[nx <= QX_STACK ? nx : 1] __attribute__((aligned(32)));
    int16_t *xs = nx <= QX_STACK ? stack : malloc(sizeof(int16_t) * nx);
    float us[n];
    for (int32_t t = 0; t < n; t++) us[t] = xs ? q8_eo_x(xs + 2 * (size_t)t * C, x + (int64_t)t * C, C) : 0;
    if (n == 1 && us[0] != 0) {
        q8_rows_runs(y, xs, us[0], w, r0, r1);
        if (xs != stack) free(xs);
        return;
    }
    /* the tokens split, by groups of 4 over each row; the others through the reference */
    int32_t g[n], ng = 0;
    for (int32_t t = 0; t < n; t++)
        if (us[t] != 0) g[ng++] = t;
        else kern_ref.matmul_rows(y + t * ldy, ldy, x + (int64_t)t * C, w, 1, r0, r1);
    const int32_t nb = C / DSC_QBLOCK;
    for (int32_t r = r0; r < r1; r++) {
        const uint8_t *q = (const uint8_t *)w->data + (int64_t)r * C;
        const uint16_t *sc = w->qscale + (int64_t)r * nb;
        for (int32_t k = 0; k < ng; k += 4) {
            const int T = ng - k < 4 ? ng - k : 4;
            const int16_t *xt[4];
            float ut[4], yt[4];
            for (int i = 0; i < T; i++) xt[i] = xs + 2 * (size_t)g[k + i] * C, ut[i] = us[g[k + i]];
            switch (T) {
            case 4: q8_row_tokens(yt, 1, xt, ut, q, sc, nb, 4); break;
            case 3: q8_row_tokens(yt, 1, xt, ut, q, sc, nb, 3); break;
            case 2: q8_row_tokens(yt, 1, xt, ut, q, sc, nb, 2); break;
            default: q8_row_tokens(yt, 1, xt, ut, q, sc, nb, 1); break;
            }
            for (int i = 0; i < T; i++) y[g[k + i] * ldy + (r - r0)] = yt[i];
        }
    }
    if (xs != stack) free(xs);
}

/* Q4 against x rounded to 8 bits per block (kern_q8_round_block), by
 * pairs of blocks: one 32-byte load holds blocks b and b + 1, its low
 * nibbles the values 0-15 of both, its high nibbles 16-31, as unsigned
 * bytes that vpmaddubsw multiplies with x's signed bytes laid out to match
 * (q4_pairs_x), 64 products in two instructions. The nibbles' offset of 8
 * leaves as 8 x the matching sums of x's bytes (corr), one subtraction per
 * pair; int32 lanes 0-3 of a pair's sums belong to block b, 4-7 to b + 1,
 * each lane then taken x (weight scale x x's step) in F32. An odd last
 * block is summed in scalar integers. The integer sums are exact, so the
 * values differ from the reference's only by the order of the F32 sums. */
typedef struct {
    int8_t xl[32], xh[32]; /* x's bytes for the low and the high nibbles  */
    int32_t corr[8];       /* 8 x the sums of x's bytes of each int32 lane */
    float d[8];            /* x's steps: block b x 4, block b + 1 x 4        */
} q4_xpair;

/* x[32] rounded to 8 bits (kern_q8_round_block): the 32 q's as int32
 * (i[k] holds x 8k..8k+7); returns d. */
static inline float q8x_block(__m256i i[4], const float *x) {
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 v[4], m = _mm256_setzero_ps(), bad = m;
    for (int k = 0; k < 4; k++) {
        v[k] = _mm256_loadu_ps(x + 8 * k);
        const __m256 a = _mm256_and_ps(v[k], abs_mask);
        m = _mm256_max_ps(m, a);
        bad = _mm256_or_ps(bad, _mm256_cmp_ps(a, _mm256_set1_ps(FLT_MAX), _CMP_NLE_UQ)); /* inf, NaN */
    }
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    const float amax = _mm_cvtss_f32(h);
    for (int k = 0; k < 4; k++) i[k] = _mm256_setzero_si256();
    if (_mm256_movemask_ps(bad)) return NAN;
    if (amax < DSC_Q8X_MIN) return 0;
    const __m256 id = _mm256_set1_ps(127.0f / amax);
    for (int k = 0; k < 4; k++) i[k] = _mm256_cvtps_epi32(_mm256_mul_ps(v[k], id));
    return amax / 127.0f;
}

/* kern_q8_round: the same q and d, so the same q x d. */
void avx2_q8_round(float *out, const float *x, int64_t n) {
    for (int64_t c = 0; c < n; c += DSC_QBLOCK) {
        __m256i i[4];
        const __m256 d = _mm256_set1_ps(q8x_block(i, x + c));
        for (int k = 0; k < 4; k++) _mm256_storeu_ps(out + c + 8 * k, _mm256_mul_ps(_mm256_cvtepi32_ps(i[k]), d));
    }
}

/* relu_wsum: 8 positions at a time, the heads' terms masked to +0 where
 * d is not above 0 (the reference adds 0 there: the same sum). */
void avx2_relu_wsum(float *out, const float *d, int64_t ldd, const float *w, int32_t n, int32_t np) {
    for (int32_t p = 0; p < np; p += 8) {
        const int32_t k = np - p < 8 ? np - p : 8; /* the last positions through a buffer, zeros after them */
        float tail[8] = {0};
        __m256 s = _mm256_setzero_ps();
        for (int32_t h = 0; h < n; h++) {
            const float *dh = d + h * ldd + p;
            if (k < 8) memcpy(tail, dh, sizeof(float) * (size_t)k);
            const __m256 v = _mm256_loadu_ps(k < 8 ? tail : dh);
            const __m256 t = _mm256_mul_ps(_mm256_set1_ps(w[h]), v);
            s = _mm256_add_ps(s, _mm256_and_ps(t, _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_GT_OQ)));
        }
        _mm256_storeu_ps(tail, s);
        memcpy(out + p, tail, sizeof(float) * (size_t)k);
    }
}

/* q4_xpair's of one token (C / 64 of them, then the odd last block's bytes
 * and step in the next one's xl and d[0]); and, where db is not NULL, each
 * block's step in db[b]. */
static void q4_pairs_x(q4_xpair *xp, float *db, const float *x, int32_t C) {
    const int32_t nb = C / DSC_QBLOCK;
    for (int32_t b = 0; b < nb; b++) {
        q4_xpair *p = xp + b / 2;
        const int h = b & 1;
        __m256i i[4];
        const float d = q8x_block(i, x + 32 * b);
        if (db) db[b] = d;
        const __m256i w0 = _mm256_permute4x64_epi64(_mm256_packs_epi32(i[0], i[1]), 0xd8);
        const __m256i w1 = _mm256_permute4x64_epi64(_mm256_packs_epi32(i[2], i[3]), 0xd8);
        const __m256i q8 = _mm256_permute4x64_epi64(_mm256_packs_epi16(w0, w1), 0xd8); /* x 0..31 in order */
        if (h == 0 && b == nb - 1) { /* the odd last block */
            _mm256_storeu_si256((__m256i *)p->xl, q8);
            p->d[0] = d;
            break;
        }
        _mm_storeu_si128((__m128i *)(p->xl + 16 * h), _mm256_castsi256_si128(q8));
        _mm_storeu_si128((__m128i *)(p->xh + 16 * h), _mm256_extracti128_si256(q8, 1));
        _mm_storeu_ps(p->d + 4 * h, _mm_set1_ps(d));
        if (h) {
            const __m256i ones8 = _mm256_set1_epi8(1);
            const __m256i s = _mm256_add_epi16(_mm256_maddubs_epi16(ones8, _mm256_loadu_si256((const __m256i *)p->xl)),
                                               _mm256_maddubs_epi16(ones8, _mm256_loadu_si256((const __m256i *)p->xh)));
            _mm256_storeu_si256((__m256i *)p->corr, _mm256_slli_epi32(_mm256_madd_epi16(s, _mm256_set1_epi16(1)), 3));
        }
    }
}

/* acc += a pair's products with x's p: the pair's low and high nibbles
 * (lo, hi) and its two factors, weight scale x x's step, each 4 times (sd). */
static inline __m256 q4_pair_sd(__m256 acc, __m256i lo, __m256i hi, __m256 sd, const q4_xpair *p) {
    const __m256i s16 = _mm256_add_epi16(_mm256_maddubs_epi16(lo, _mm256_load_si256((const __m256i *)p->xl)),
                                         _mm256_maddubs_epi16(hi, _mm256_load_si256((const __m256i *)p->xh)));
    const __m256i s32 =
        _mm256_sub_epi32(_mm256_madd_epi16(s16, _mm256_set1_epi16(1)), _mm256_load_si256((const __m256i *)p->corr));
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(s32), sd, acc);
}

/* The same, the factors from the pair's two scales, each 4 times (s). */
static inline __m256 q4_pair_w(__m256 acc, __m256i lo, __m256i hi, __m256 s, const q4_xpair *p) {
    return q4_pair_sd(acc, lo, hi, _mm256_mul_ps(s, _mm256_load_ps(p->d)), p);
}

/* Pair g of a Q4 row (q): its nibbles. */
static inline void q4_pair_nibbles(__m256i *lo, __m256i *hi, const uint8_t *q, int32_t g) {
    const __m256i m0f = _mm256_set1_epi8(15);
    _mm_prefetch((const char *)q + 32 * g + PF_AHEAD, _MM_HINT_T0);
    const __m256i v = _mm256_loadu_si256((const __m256i *)(q + 32 * g));
    *lo = _mm256_and_si256(v, m0f), *hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m0f);
}

/* Pair g of a Q4 row (q, its scales sc): its nibbles and scales. */
static inline void q4_pair_decode(__m256i *lo, __m256i *hi, __m256 *s, const uint8_t *q, const uint16_t *sc,
                                  int32_t g) {
    const __m128i two = _mm_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3); /* [s_b x 4, s_b+1 x 4] */
    q4_pair_nibbles(lo, hi, q, g);
    int32_t s2;
    memcpy(&s2, sc + 2 * g, sizeof s2);
    *s = _mm256_cvtph_ps(_mm_shuffle_epi8(_mm_cvtsi32_si128(s2), two));
}

/* acc += pair g of blocks of a Q4 row (q, its scales sc) against x's p. */
static inline __m256 q4_pair(__m256 acc, const uint8_t *q, const uint16_t *sc, const q4_xpair *p, int32_t g) {
    __m256i lo, hi;
    __m256 s;
    q4_pair_decode(&lo, &hi, &s, q, sc, g);
    return q4_pair_w(acc, lo, hi, s, p);
}

/* A Q4 row's sum from its pairs' acc and the odd last block, if any. Out
 * of line, so that whether the tail's product and the sum are contracted
 * into one FMA is decided once, not by each caller it is inlined into. */
__attribute__((noinline)) static float q4_row_end(__m256 acc, const uint8_t *q, const uint16_t *sc, const q4_xpair *xp, int32_t nb) {
    float tail = 0;
    if (nb & 1) {
        const q4_xpair *p = xp + nb / 2;
        const uint8_t *qb = q + 16 * (nb - 1);
        int32_t s = 0;
        for (int c = 0; c < 16; c++) s += ((qb[c] & 15) - 8) * p->xl[c] + ((qb[c] >> 4) - 8) * p->xl[c + 16];
        tail = (float)s * (f16s(sc[nb - 1]) * p->d[0]);
    }
    return hsum8(acc) + tail;
}

/* Q4 rows r0..r1 against x's pairs: one at a time (R = 1), or for one
 * token as R runs of consecutive rows (R up to 4), a row of each in turn,
 * as q8_rows_r. */
static inline __attribute__((always_inline)) void q4_rows_r(float *y, const q4_xpair *xp, const float *db,
                                                            const dsc_mat *w, int32_t r0, int32_t r1, const int R) {
    const int32_t C = w->cols, nb = C / DSC_QBLOCK, per = (r1 - r0 + R - 1) / R, g4 = nb / 8 * 4;
    for (int32_t k = 0; k < per; k++) {
        const uint8_t *q[4];
        const uint16_t *sc[4];
        int32_t ri[4];
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
        q_run_rows(ri, q, sc, w, C / 2, r0, r1, per, k, R);
        /* by 4 pairs (8 blocks): a row's 8 scales converted at once and
         * multiplied by x's 8 steps, each pair's factors then one permute,
         * where q4_pair takes a shuffle, a conversion (2 uops) and a product;
         * the same values. From L2 on one core 1.07-1.12x (kernel_ab hot);
         * in decode, bound by the memory here, 0.995-0.998x */
        for (int32_t g = 0; g < g4; g += 4) {
            const __m256 d8 = _mm256_loadu_ps(db + 2 * g);
            __m256 sd[4];
            _Pragma("GCC unroll 4") for (int i = 0; i < R; i++)
                sd[i] = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(sc[i] + 2 * g))), d8);
            _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) {
                const __m256i idx = _mm256_setr_epi32(2 * j, 2 * j, 2 * j, 2 * j, 2 * j + 1, 2 * j + 1, 2 * j + 1, 2 * j + 1);
                _Pragma("GCC unroll 4") for (int i = 0; i < R; i++) {
                    __m256i lo, hi;
                    q4_pair_nibbles(&lo, &hi, q[i], g + j);
                    acc[i] = q4_pair_sd(acc[i], lo, hi, _mm256_permutevar8x32_ps(sd[i], idx), xp + g + j);
                }
            }
        }
        for (int32_t g = g4; g < nb / 2; g++)
            _Pragma("GCC unroll 4") for (int i = 0; i < R; i++) acc[i] = q4_pair(acc[i], q[i], sc[i], xp + g, g);
        _Pragma("GCC unroll 4") for (int i = 0; i < R; i++)
            if (ri[i] < r1) y[ri[i] - r0] = q4_row_end(acc[i], q[i], sc[i], xp, nb);
    }
}

/* One Q4 row (q, its scales sc, nb blocks) against T (1-4) tokens' pairs
 * (token t's at xp[t]) into y[t]: each pair's nibbles and scales decoded
 * once for the T tokens, each token's value summed as q4_rows_r sums it
 * alone. */
static inline __attribute__((always_inline)) void q4_row_tokens(float *y, const q4_xpair *const *xp,
                                                                const uint8_t *q, const uint16_t *sc, int32_t nb,
                                                                const int T) {
    __m256 acc[4];
    _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();
    for (int32_t g = 0; g < nb / 2; g++) {
        __m256i lo, hi;
        __m256 s;
        q4_pair_decode(&lo, &hi, &s, q, sc, g);
        _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) acc[t] = q4_pair_w(acc[t], lo, hi, s, xp[t] + g);
    }
    _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) y[t] = q4_row_end(acc[t], q, sc, xp[t], nb);
}
/* Three streams a thread: Q4 decode 1.014 and 1.022x against two (`kernel_ab.sh -m`). */
#define Q4_RUNS 3
__attribute__((noinline)) static void q4_rows_runs(float *y, const q4_xpair *xp, const float *db, const dsc_mat *w,
                                                   int32_t r0, int32_t r1) {
    q4_rows_r(y, xp, db, w, r0, r1, Q4_RUNS);
}

/* Q4 rows of n tokens, each token's x rounded and laid out once per call. */
void avx2_q4_rows(float *y, int64_t ldy, const float *x, const dsc_mat *w, int32_t n, int32_t r0, int32_t r1) {
    const int32_t C = w->cols, np = C / DSC_QBLOCK / 2 + 1; /* pairs per token, with the odd block's */
    q4_xpair stack[(size_t)n * np * sizeof(q4_xpair) <= 2 * QX_STACK ? (size_t)n * np : 1] __attribute__((aligned(32)));
    q4_xpair *xs = (size_t)n * np * sizeof(q4_xpair) <= 2 * QX_STACK ? stack
                                                                     : aligned_alloc(32, sizeof(q4_xpair) * n * np);
    if (!xs) { /* out of memory: the reference, which needs none */
        kern_ref.matmul_rows(y, ldy, x, w, n, r0, r1);
        return;
    }
    float db[n == 1 ? C / DSC_QBLOCK + 1 : 1];
    for (int32_t t = 0; t < n; t++) q4_pairs_x(xs + (size_t)np * t, n == 1 ? db : NULL, x + (int64_t)t * C, C);
    if (n == 1) {
        q4_rows_runs(y, xs, db, w, r0, r1);
        if (xs != stack) free(xs);
        return;
    }
    const int32_t nb = C / DSC_QBLOCK;
    for (int32_t r = r0; r < r1; r++) { /* each row against the tokens by groups of 4 */
        const uint8_t *q = (const uint8_t *)w->data + (int64_t)r * (C / 2);
        const uint16_t *sc = w->qscale + (int64_t)r * nb;
        for (int32_t k = 0; k < n; k += 4) {
            const int T = n - k < 4 ? n - k : 4;
            const q4_xpair *xt[4];
            float yt[4];
            for (int i = 0; i < T; i++) xt[i] = xs + (size_t)np * (k + i);
            switch (T) {
            case 4: q4_row_tokens(yt, xt, q, sc, nb, 4); break;
            case 3: q4_row_tokens(yt, xt, q, sc, nb, 3); break;
            case 2: q4_row_tokens(yt, xt, q, sc, nb, 2); break;
            default: q4_row_tokens(yt, xt, q, sc, nb, 1); break;
            }
            for (int i = 0; i < T; i++) y[(k + i) * ldy + (r - r0)] = yt[i];
        }
    }
    if (xs != stack) free(xs);
}

/* FP8 (E4M3) rows of few tokens. An E4M3 byte b sign-extended to 32 bits,
 * shifted left by 20 and masked with 0x87f00000 is the F32 of 2^-120 x its
 * value: the 4 exponent bits land in the low bits of F32's exponent and the
 * 3 mantissa bits at its top, so E4M3 subnormals become F32 subnormals of
 * the same value x 2^-120 (AVX2 takes those at full speed) and 0x7f / 0xff
 * read as +-480 x 2^-120, as load_fp8 reads them; no conversion
 * instruction. 32 bytes at a time: unpacked with themselves into 16-bit
 * lanes (b << 8 | b) and shifted right arithmetically by 4, each 16-bit
 * lane holds the top half of that F32 (above 4 stray bits the mask
 * clears); masked, the odd bytes' lanes are already in place in the 32-bit
 * lanes, the even ones' shifted up by 16 first. That
 * is 6 shuffles and shifts per 32 weights where sign-extending 8 bytes at a
 * time took 8, and the products come out in the order fp8_deal_x puts x
 * in once per call. Each block's sum is multiplied by 2^120, then by its
 * scale, once, as the reference applies the scale to each block's sum.
 * One token's rows go as 2 runs (fp8_rows_runs); several tokens' rows one
 * at a time, each decoded once for 3 tokens (fp8_rows_tokens); both
 * prefetch ahead and need cols and block_cols multiples of 32. A caller's
 * denormals-are-zero or flush-to-zero mode (-ffast-math programs set both)
 * is lifted for the call, so subnormal weights keep their values. */

/* x[32] in the order of fp8_blocks' products: [0 2 4 6 16 18 20 22],
 * [1 3 5 7 17 19 21 23], [8 10 12 14 24 26 28 30], [9 11 13 15 25 27 29 31]. */
static inline void fp8_deal_x(float *xs, const float *x) {
    __m256 v[4];
    for (int k = 0; k < 4; k++) v[k] = _mm256_loadu_ps(x + 8 * k);
    for (int o = 0; o < 2; o++) { /* the even elements, then the odd ones */
        const __m256 a = o ? _mm256_shuffle_ps(v[0], v[1], 0xdd) : _mm256_shuffle_ps(v[0], v[1], 0x88);
        const __m256 b = o ? _mm256_shuffle_ps(v[2], v[3], 0xdd) : _mm256_shuffle_ps(v[2], v[3], 0x88);
        const __m256 p = _mm256_permute2f128_ps(a, b, 0x20), q = _mm256_permute2f128_ps(a, b, 0x31);
        _mm256_storeu_ps(xs + 8 * o, _mm256_shuffle_ps(p, q, 0x44));
        _mm256_storeu_ps(xs + 16 + 8 * o, _mm256_shuffle_ps(p, q, 0xee));
    }
}

/* The 32 FP8 bytes at q as F32 x 2^-120, in fp8_deal_x's order. */
static inline __attribute__((always_inline)) void fp8_32(__m256 f[4], const uint8_t *q) {
    const __m256i mask = _mm256_set1_epi32((int)0x87f00000);
    const __m256i v = _mm256_loadu_si256((const __m256i *)q);
    const __m256i lo = _mm256_srai_epi16(_mm256_unpacklo_epi8(v, v), 4);
    const __m256i hi = _mm256_srai_epi16(_mm256_unpackhi_epi8(v, v), 4);
    f[0] = _mm256_castsi256_ps(_mm256_and_si256(_mm256_slli_epi32(lo, 16), mask));
    f[1] = _mm256_castsi256_ps(_mm256_and_si256(lo, mask));
    f[2] = _mm256_castsi256_ps(_mm256_and_si256(_mm256_slli_epi32(hi, 16), mask));
    f[3] = _mm256_castsi256_ps(_mm256_and_si256(hi, mask));
}

#define MXCSR_DAZ_FTZ 0x8040u
/* Columns c0..c1 (one scale block) of R (1 or 2) FP8 rows q[i] against x
 * dealt by fp8_deal_x, x 2^120, into out[i]: 4 chains per row, x loaded
 * once for the R rows. */
static inline __attribute__((always_inline)) void fp8_blocks(__m256 *out, const uint8_t *const *q, const int R,
                                                             const float *x, int32_t c0, int32_t c1) {
    __m256 a[2][4];
    _Pragma("GCC unroll 4") for (int i = 0; i < R; i++)
        _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) a[i][j] = _mm256_setzero_ps();
    for (int32_t c = c0; c < c1; c += 32) {
        __m256 xv[4];
        _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) xv[j] = _mm256_loadu_ps(x + c + 8 * j);
        _Pragma("GCC unroll 4") for (int i = 0; i < R; i++) {
            _mm_prefetch((const char *)q[i] + c + PF_AHEAD, _MM_HINT_T0);
            __m256 f[4];
            fp8_32(f, q[i] + c);
            _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) a[i][j] = _mm256_fmadd_ps(f[j], xv[j], a[i][j]);
        }
    }
    _Pragma("GCC unroll 4") for (int i = 0; i < R; i++)
        out[i] = _mm256_mul_ps(_mm256_add_ps(_mm256_add_ps(a[i][0], a[i][1]), _mm256_add_ps(a[i][2], a[i][3])),
                               _mm256_set1_ps(0x1p120f));
}

/* Rows r0..r1, one at a time (R = 1), or for one token (R = 2) as 2 runs
 * of consecutive rows, a row of each in turn (two streams of loads:
 * decode 1.018-1.033x in three `kernel_ab.sh -m` runs); each row's sum the
 * same either way. */
static inline __attribute__((always_inline)) void fp8_rows_r(float *y, const float *x, const dsc_mat *w, int32_t r0,
                                                             int32_t r1, const int R) {
    const int32_t C = w->cols, bc = w->block_cols, ncb = (C + bc - 1) / bc, per = (r1 - r0 + R - 1) / R;
    const unsigned csr = _mm_getcsr();
    if (csr & MXCSR_DAZ_FTZ) _mm_setcsr(csr & ~MXCSR_DAZ_FTZ);
    for (int32_t k = 0; k < per; k++) {
        const uint8_t *q[2];
        const float *sc[2];
        int32_t ri[2];
        __m256 acc[2], s[2];
        _Pragma("GCC unroll 4") for (int i = 0; i < R; i++) {
            ri[i] = r0 + i * per + k;
            const int32_t r = ri[i] < r1 ? ri[i] : r1 - 1;
            q[i] = (const uint8_t *)w->data + (int64_t)r * C;
            sc[i] = w->scale + (int64_t)(r / w->block_rows) * ncb;
            acc[i] = _mm256_setzero_ps();
        }
        for (int32_t cb = 0; cb < ncb; cb++) {
            const int32_t c0 = cb * bc, c1 = C - c0 < bc ? C : c0 + bc;
            fp8_blocks(s, q, R, x, c0, c1);
            _Pragma("GCC unroll 4") for (int i = 0; i < R; i++) acc[i] = _mm256_fmadd_ps(s[i], _mm256_set1_ps(sc[i][cb]), acc[i]);
        }
        _Pragma("GCC unroll 4") for (int i = 0; i < R; i++)
            if (ri[i] < r1) y[ri[i] - r0] = hsum8(acc[i]);
    }
    if (csr & MXCSR_DAZ_FTZ) _mm_setcsr(csr);
}

/* Row q (scales sc) against T (1-3) tokens' dealt x (token t's at xs + t C),
 * into y[t ldy]: the row decoded once for the T tokens, each token's value
 * summed as fp8_rows_r sums it for one token (4 chains over a block,
 * (a0 + a1) + (a2 + a3) x 2^120 times the block's scale into the row's sum,
 * hsum8 at the end), so a token's bits do not depend on the others. */
static inline __attribute__((always_inline)) void fp8_row_tokens(float *y, int64_t ldy, const float *xs,
                                                                 const uint8_t *q, const float *sc, int32_t C,
                                                                 int32_t bc, const int T) {
    __m256 tot[3];
    _Pragma("GCC unroll 3") for (int t = 0; t < T; t++) tot[t] = _mm256_setzero_ps();
    for (int32_t c0 = 0, cb = 0; c0 < C; c0 += bc, cb++) {
        const int32_t c1 = C - c0 < bc ? C : c0 + bc;
        __m256 a[3][4];
        _Pragma("GCC unroll 3") for (int t = 0; t < T; t++)
            _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) a[t][j] = _mm256_setzero_ps();
        for (int32_t c = c0; c < c1; c += 32) {
            _mm_prefetch((const char *)q + c + PF_AHEAD, _MM_HINT_T0);
            /* fp8_32's values one vector at a time, each into T sums, so
             * that 4 T sums and the bytes fit the 16 registers */
            const __m256i v = _mm256_loadu_si256((const __m256i *)(q + c));
            const __m256i h[2] = {_mm256_srai_epi16(_mm256_unpacklo_epi8(v, v), 4),
                                  _mm256_srai_epi16(_mm256_unpackhi_epi8(v, v), 4)};
            _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) {
                const __m256i b = j & 1 ? h[j / 2] : _mm256_slli_epi32(h[j / 2], 16);
                const __m256 f = _mm256_castsi256_ps(_mm256_and_si256(b, _mm256_set1_epi32((int)0x87f00000)));
                _Pragma("GCC unroll 3") for (int t = 0; t < T; t++)
                    a[t][j] = _mm256_fmadd_ps(f, _mm256_loadu_ps(xs + (int64_t)t * C + c + 8 * j), a[t][j]);
            }
        }
        _Pragma("GCC unroll 3") for (int t = 0; t < T; t++) {
            const __m256 s = _mm256_mul_ps(_mm256_add_ps(_mm256_add_ps(a[t][0], a[t][1]), _mm256_add_ps(a[t][2], a[t][3])),
                                           _mm256_set1_ps(0x1p120f));
            tot[t] = _mm256_fmadd_ps(s, _mm256_set1_ps(sc[cb]), tot[t]);
        }
    }
    _Pragma("GCC unroll 3") for (int t = 0; t < T; t++) y[t * ldy] = hsum8(tot[t]);
}

/* Rows r0..r1 of n tokens (dealt x): each row decoded once per 3 tokens. */
static void fp8_rows_tokens(float *y, int64_t ldy, const float *xs, const dsc_mat *w, int32_t n, int32_t r0,
                            int32_t r1) {
    const int32_t C = w->cols, bc = w->block_cols, ncb = (C + bc - 1) / bc;
    const unsigned csr = _mm_getcsr();
    if (csr & MXCSR_DAZ_FTZ) _mm_setcsr(csr & ~MXCSR_DAZ_FTZ);
    for (int32_t r = r0; r < r1; r++) {
        const uint8_t *q = (const uint8_t *)w->data + (int64_t)r * C;
        const float *sc = w->scale + (int64_t)(r / w->block_rows) * ncb;
        for (int32_t t = 0; t < n; t += 3) {
            float *yt = y + t * ldy + (r - r0);
            const float *xt = xs + (int64_t)t * C;
            if (n - t >= 3) fp8_row_tokens(yt, ldy, xt, q, sc, C, bc, 3);
            else if (n - t == 2) fp8_row_tokens(yt, ldy, xt, q, sc, C, bc, 2);
            else fp8_row_tokens(yt, ldy, xt, q, sc, C, bc, 1);
        }
    }
    if (csr & MXCSR_DAZ_FTZ) _mm_setcsr(csr);
}
static void fp8_rows_runs(float *y, const float *x, const dsc_mat *w, int32_t r0, int32_t r1) {
    fp8_rows_r(y, x, w, r0, r1, 2);
}

/* BF16: 16 weights per load; as 32-bit lanes the even ones are the low
 * halves (<< 16 makes floats) and the odd ones the high halves (masking the
 * low half does), so no shuffle decodes them. x is split once per call into
 * its even and odd elements to match. Tiles of 4 rows x 2 tokens. */
static void bf16_eo_tiles(float *y, int64_t ldy, const float *x, const float *xs, const dsc_mat *w, int32_t n,
                          int32_t r0, int32_t r1) {
    const int32_t C = w->cols, c16 = C & ~15, h = c16 / 2, passes = (n + 1) / 2;
    const __m256i hi_mask = _mm256_set1_epi32((int)0xffff0000u);
    for (int32_t r = r0; r < r1; r += 4) {
        const uint16_t *rp[4];
        for (int i = 0; i < 4; i++) rp[i] = (const uint16_t *)w->data + (int64_t)(r + i < r1 ? r + i : r1 - 1) * C;
        for (int32_t t = 0; t < n; t += 2) {
            const int32_t t1 = t + 1 < n ? t + 1 : t;
            const float *e0 = xs + (int64_t)t * c16, *e1 = xs + (int64_t)t1 * c16;
            /* With several passes over these rows (in cache after the first),
             * pass p fetches the next tile's rows p, p + passes, ... so that
             * memory keeps streaming while the arithmetic runs. */
            const uint16_t *pf[4] = {0};
            int npf = 0;
            for (int i = t / 2; passes > 1 && i < 4 && r + 4 + i < r1; i += passes)
                pf[npf++] = (const uint16_t *)w->data + (int64_t)(r + 4 + i) * C;
            __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00;
            for (int32_t c = 0; c < c16; c += 16) {
                const int32_t k = c / 2;
                if (!(c & 31))
                    for (int i = 0; i < npf; i++) _mm_prefetch((const char *)(pf[i] + c), _MM_HINT_T0);
                const __m256 xe0 = _mm256_loadu_ps(e0 + k), xo0 = _mm256_loadu_ps(e0 + h + k);
                const __m256 xe1 = _mm256_loadu_ps(e1 + k), xo1 = _mm256_loadu_ps(e1 + h + k);
#define EO_ROW(i, A0, A1)                                                                                            \
    do {                                                                                                             \
        const __m256i v = _mm256_loadu_si256((const __m256i *)(rp[i] + c));                                          \
        const __m256 we = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));                                             \
        const __m256 wo = _mm256_castsi256_ps(_mm256_and_si256(v, hi_mask));                                         \
        A0 = _mm256_fmadd_ps(wo, xo0, _mm256_fmadd_ps(we, xe0, A0));                                                 \
        A1 = _mm256_fmadd_ps(wo, xo1, _mm256_fmadd_ps(we, xe1, A1));                                                 \
    } while (0)
                EO_ROW(0, a00, a01);
                EO_ROW(1, a10, a11);
                EO_ROW(2, a20, a21);
                EO_ROW(3, a30, a31);
#undef EO_ROW
            }
            const __m256 acc[4][2] = {{a00, a01}, {a10, a11}, {a20, a21}, {a30, a31}};
            for (int i = 0; i < 4 && r + i < r1; i++)
                for (int j = 0; j < 2 && t + j < n; j++) {
                    const float *xt = x + (int64_t)(t + j) * C;
                    float sum = hsum8(acc[i][j]);
                    for (int32_t c = c16; c < C; c++) sum += kern_bf16_to_f32(rp[i][c]) * xt[c]; /* tail */
                    y[(int64_t)(t + j) * ldy + (r + i - r0)] = sum;
                }
        }
    }
}

/* One token: BF16_RUNS rows at a time (as many chains of sums), each
 * row's dot product summed exactly as in bf16_eo_tiles. The rows r0..r1
 * are cut into BF16_RUNS runs of consecutive rows and a tile takes one row
 * of each, so each stream of loads runs on through its run's rows
 * (contiguous in memory) instead of starting again every row, as adjacent
 * rows of 2.8-4 KiB (V2-Lite's) made them; each row also fetched BF16_PF
 * values ahead, into its run's next row at the end. Four streams a thread
 * rather than eight: BF16 decode 1.16, 1.28 and 1.26x in the whole model
 * (`kernel_ab.sh -m`, 2 threads, two identical builds 1.01); two and three
 * streams read as four (0.98, 0.99). 256 values ahead rather than 512:
 * 1.057, 1.029 and 1.037x (128: 1.050; 1024: 0.968; none: 0.979). The
 * non-temporal hint instead (here and in the Q8, Q4 and FP8 rows, which
 * stream their weights once too): 0.996-1.026 with BF16 weights, 0.982-1.009
 * with the others (`kernel_ab.sh -m`, 100 pairs each), not kept. */
#define BF16_PF 256
#define BF16_RUNS 4
static void bf16_eo_runs(float *y, const float *x, const float *xs, const dsc_mat *w, int32_t r0, int32_t r1) {
    enum { NR = BF16_RUNS };
    const int32_t C = w->cols, c16 = C & ~15, h = c16 / 2, per = (r1 - r0 + NR - 1) / NR;
    const __m256i hi_mask = _mm256_set1_epi32((int)0xffff0000u);
    for (int32_t k = 0; k < per; k++) {
        const uint16_t *rp[NR];
        int32_t ri[NR];
        for (int i = 0; i < NR; i++) {
            ri[i] = r0 + i * per + k;
            rp[i] = (const uint16_t *)w->data + (int64_t)(ri[i] < r1 ? ri[i] : r1 - 1) * C;
        }
        __m256 a[NR];
        _Pragma("GCC unroll 8") for (int i = 0; i < NR; i++) a[i] = _mm256_setzero_ps();
        for (int32_t c = 0; c < c16; c += 16) {
            if (!(c & 31))
                _Pragma("GCC unroll 8") for (int i = 0; i < NR; i++) _mm_prefetch((const char *)(rp[i] + c + BF16_PF), _MM_HINT_T0);
            const __m256 xe = _mm256_loadu_ps(xs + c / 2), xo = _mm256_loadu_ps(xs + h + c / 2);
            _Pragma("GCC unroll 8") for (int i = 0; i < NR; i++) {
                const __m256i v = _mm256_loadu_si256((const __m256i *)(rp[i] + c));
                const __m256 we = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
                const __m256 wo = _mm256_castsi256_ps(_mm256_and_si256(v, hi_mask));
                a[i] = _mm256_fmadd_ps(wo, xo, _mm256_fmadd_ps(we, xe, a[i]));
            }
        }
        for (int i = 0; i < NR; i++)
            if (ri[i] < r1) {
                float sum = hsum8(a[i]);
                for (int32_t c = c16; c < C; c++) sum += kern_bf16_to_f32(rp[i][c]) * x[c]; /* tail */
                y[ri[i] - r0] = sum;
            }
    }
}

/* The split of x on the stack up to this many floats, else on the heap. */
#define EO_STACK 16384

/* False only when the split of x finds no memory. */
static int mm_bf16_eo(float *y, int64_t ldy, const float *x, const dsc_mat *w, int32_t n, int32_t r0, int32_t r1) {
    const int32_t C = w->cols, c16 = C & ~15, h = c16 / 2;
    const size_t nx = (size_t)n * c16;
    float stack[nx <= EO_STACK ? nx + 1 : 1];
    float *xs = nx <= EO_STACK ? stack : malloc(sizeof(float) * nx);
    if (!xs) return 0;
    for (int32_t t = 0; t < n; t++) /* token t: h even values, then h odd ones */
        for (int32_t k = 0; k < h; k++) {
            xs[(int64_t)t * c16 + k] = x[(int64_t)t * C + 2 * k];
            xs[(int64_t)t * c16 + h + k] = x[(int64_t)t * C + 2 * k + 1];
        }
    if (n == 1) bf16_eo_runs(y, x, xs, w, r0, r1);
    else bf16_eo_tiles(y, ldy, x, xs, w, n, r0, r1);
    if (xs != stack) free(xs);
    return 1;
}

/* FP8 rows of few tokens against x dealt by fp8_deal_x; false only when
 * that finds no memory. */
static int mm_fp8_dealt(float *y, int64_t ldy, const float *x, const dsc_mat *w, int32_t n, int32_t r0, int32_t r1) {
    const size_t nx = (size_t)n * w->cols;
    float stack[nx <= EO_STACK ? nx : 1];
    float *xs = nx <= EO_STACK ? stack : malloc(sizeof(float) * nx);
    if (!xs) return 0;
    for (size_t c = 0; c < nx; c += 32) fp8_deal_x(xs + c, x + c);
    if (n == 1) fp8_rows_runs(y, xs, w, r0, r1);
    else fp8_rows_tokens(y, ldy, xs, w, n, r0, r1);
    if (xs != stack) free(xs);
    return 1;
}

static void avx2_matmul_rows(float *y, int64_t ldy, const float *x, const dsc_mat *w, int32_t n, int32_t r0,
                             int32_t r1) {
    if (w->type == DSC_W_BF16 && mm_bf16_eo(y, ldy, x, w, n, r0, r1)) return;
    if (w->type == DSC_W_F8_E4M3 && w->cols % 32 == 0 && w->block_cols % 32 == 0 && n < DSC_FP8_TILES &&
        mm_fp8_dealt(y, ldy, x, w, n, r0, r1))
        return;
    if (w->type == DSC_W_Q8 && w->cols % DSC_QBLOCK == 0) {
        q8_tokens(y, ldy, x, w, n, r0, r1);
        return;
    }
    if (w->type == DSC_W_Q4) {
        avx2_q4_rows(y, ldy, x, w, n, r0, r1);
        return;
    }
    switch (w->type) {
    case DSC_W_F32: (n == 1 ? mm1_f32 : mm_f32)(y, ldy, x, w, n, r0, r1); return;
    case DSC_W_BF16: (n == 1 ? mm1_bf16 : mm_bf16)(y, ldy, x, w, n, r0, r1); return;
    case DSC_W_F16: (n == 1 ? mm1_f16 : mm_f16)(y, ldy, x, w, n, r0, r1); return;
    case DSC_W_F8_E4M3:
        if (w->block_cols % 8 == 0) (n == 1 ? mm1_fp8 : mm_fp8)(y, ldy, x, w, n, r0, r1);
        else kern_ref.matmul_rows(y, ldy, x, w, n, r0, r1);
        return;
    case DSC_W_Q8: (n == 1 ? mm1_q8 : mm_q8)(y, ldy, x, w, n, r0, r1); return;
    case DSC_W_Q4: return; /* above */
    }
}

static float avx2_dot(const float *a, const float *b, int32_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int32_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    float s = hsum8(_mm256_add_ps(s0, s1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

static void avx2_axpy(float *y, const float *x, float a, int32_t n) {
    const __m256 av = _mm256_set1_ps(a);
    int32_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

static float avx2_fma_burn(int64_t iters) {
    __m256 x0 = _mm256_set1_ps(1.0f), x1 = _mm256_set1_ps(1.001f), x2 = _mm256_set1_ps(1.002f), x3 = _mm256_set1_ps(1.003f);
    __m256 x4 = _mm256_set1_ps(1.004f), x5 = _mm256_set1_ps(1.005f), x6 = _mm256_set1_ps(1.006f), x7 = _mm256_set1_ps(1.007f);
    const __m256 m = _mm256_set1_ps(kern_burn_m), c = _mm256_set1_ps(kern_burn_c);
    for (int64_t i = 0; i < iters; i++) {
        x0 = _mm256_fmadd_ps(x0, m, c), x1 = _mm256_fmadd_ps(x1, m, c), x2 = _mm256_fmadd_ps(x2, m, c), x3 = _mm256_fmadd_ps(x3, m, c);
        x4 = _mm256_fmadd_ps(x4, m, c), x5 = _mm256_fmadd_ps(x5, m, c), x6 = _mm256_fmadd_ps(x6, m, c), x7 = _mm256_fmadd_ps(x7, m, c);
    }
    return hsum8(x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7);
}

/* matvec_tm's rows decoded 8 columns at a time: F32, BF16, or Q8 (q x its
 * block's scale, exact in F32 as the reference decodes it). */
enum { TM_BF16, TM_F32, TM_Q8 };
static inline __m256 tm_load8(const dsc_mat *w, const int kind, int64_t r, int64_t c, const float *scale) {
    const int64_t C = w->cols;
    if (kind == TM_F32) return _mm256_loadu_ps((const float *)w->data + r * C + c);
    if (kind == TM_Q8) /* scale: this block's F32 scale of row r */
        return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(load8((const int8_t *)w->data + r * C + c))),
                             _mm256_broadcast_ss(scale));
    return _mm256_castsi256_ps(_mm256_slli_epi32(
        _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)w->data + r * C + c))), 16));
}

/* sf[r - r0] = the F32 scale of the Q8 block of column c in row r. */
static inline void tm_scales(float *sf, const dsc_mat *w, int32_t r0, int32_t r1, int64_t c) {
    const int64_t nb = w->cols / DSC_QBLOCK;
    for (int32_t r = r0; r < r1; r++) sf[r - r0] = f16s(w->qscale[r * nb + c / DSC_QBLOCK]);
}

/* Column c of row r, as tm_load8 decodes it (the tails past the last 16). */
static inline float tm_load1(const dsc_mat *w, int64_t r, int64_t c) {
    const int64_t C = w->cols;
    if (w->type == DSC_W_F32) return ((const float *)w->data)[r * C + c];
    if (w->type == DSC_W_Q8)
        return (float)((const int8_t *)w->data)[r * C + c] * f16s(w->qscale[r * (C / DSC_QBLOCK) + c / DSC_QBLOCK]);
    return kern_bf16_to_f32(((const uint16_t *)w->data)[r * C + c]);
}

/* matvec_tm of F32 / BF16 / Q8 rows: NJ of the m vectors at a time over 16
 * columns, their 2 x NJ sums in registers over all the rows (each row's 16
 * values decoded once for the NJ vectors), then added to y; the columns past
 * the last 16 one at a time, summed the same way. */
static inline __attribute__((always_inline)) void tm_tile(float *y, int64_t ldy, const float *a, int64_t lda,
                                                          const int nj, const int kind, const dsc_mat *w, int32_t r0,
                                                          int32_t r1, int64_t c0) {
    const int64_t C = w->cols, c16 = C & ~15;
    float sf[kind == TM_Q8 ? r1 - r0 : 1];
    for (int64_t c = c0; c < c16; c += 16) {
        __m256 acc[6][2];
        _Pragma("GCC unroll 6") for (int j = 0; j < nj; j++) acc[j][0] = acc[j][1] = _mm256_setzero_ps();
        if (kind == TM_Q8 && c % DSC_QBLOCK == 0) tm_scales(sf, w, r0, r1, c);
        for (int32_t r = r0; r < r1; r++) {
            const __m256 w0 = tm_load8(w, kind, r, c, sf + (r - r0)), w1 = tm_load8(w, kind, r, c + 8, sf + (r - r0));
            _Pragma("GCC unroll 6") for (int j = 0; j < nj; j++) {
                const __m256 s = _mm256_broadcast_ss(a + j * lda + (r - r0));
                acc[j][0] = _mm256_fmadd_ps(w0, s, acc[j][0]);
                acc[j][1] = _mm256_fmadd_ps(w1, s, acc[j][1]);
            }
        }
        _Pragma("GCC unroll 6") for (int j = 0; j < nj; j++) {
            _mm256_storeu_ps(y + j * ldy + c, _mm256_add_ps(_mm256_loadu_ps(y + j * ldy + c), acc[j][0]));
            _mm256_storeu_ps(y + j * ldy + c + 8, _mm256_add_ps(_mm256_loadu_ps(y + j * ldy + c + 8), acc[j][1]));
        }
    }
    for (int64_t c = c16; c < C; c++)
        for (int j = 0; j < nj; j++) {
            float sum = 0;
            for (int32_t r = r0; r < r1; r++) sum += a[j * lda + (r - r0)] * tm_load1(w, r, c);
            y[j * ldy + c] += sum;
        }
}

/* Eight vectors at once (a thread's 8 heads of MLA decode), 8 columns per
 * pass: 8 chains of FMAs, each row's 8 weights decoded once for all eight.
 * Each column is summed exactly as tm_tile sums it (the same columns in
 * vectors, the same tail), so the result does not depend on how many
 * vectors a call gets. */
static inline __attribute__((always_inline)) void tm_tile8(float *y, int64_t ldy, const float *a, int64_t lda,
                                                           const int kind, const dsc_mat *w, int32_t r0, int32_t r1) {
    const int64_t C = w->cols, c16 = C & ~15;
    float sf[kind == TM_Q8 ? r1 - r0 : 1];
    for (int64_t c = 0; c < c16; c += 8) {
        __m256 acc[8];
        _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++) acc[j] = _mm256_setzero_ps();
        if (kind == TM_Q8 && c % DSC_QBLOCK == 0) tm_scales(sf, w, r0, r1, c);
        for (int32_t r = r0; r < r1; r++) {
            const __m256 wv = tm_load8(w, kind, r, c, sf + (r - r0));
            _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++)
                acc[j] = _mm256_fmadd_ps(wv, _mm256_broadcast_ss(a + j * lda + (r - r0)), acc[j]);
        }
        _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++)
            _mm256_storeu_ps(y + j * ldy + c, _mm256_add_ps(_mm256_loadu_ps(y + j * ldy + c), acc[j]));
    }
    for (int64_t c = c16; c < C; c++)
        for (int j = 0; j < 8; j++) {
            float sum = 0;
            for (int32_t r = r0; r < r1; r++) sum += a[j * lda + (r - r0)] * tm_load1(w, r, c);
            y[j * ldy + c] += sum;
        }
}

/* One vector (a decode step's absorbed query, a head's 128 W_UK rows):
 * 64 columns per pass over the rows (8 chains of FMAs where tm_tile has 2,
 * which left it waiting on the FMA latency), each column summed exactly as
 * tm_tile sums it; a pass reads a 64-byte line of each Q8 row and fetches
 * the row's next line. Columns past the last 64 go to tm_tile. */
static inline __attribute__((always_inline)) void tm_tile1w(float *y, const float *a, const int kind, const dsc_mat *w,
                                                            int32_t r0, int32_t r1) {
    const int64_t C = w->cols, c64 = C & ~63, nb = C / DSC_QBLOCK, esz = kind == TM_F32 ? 4 : kind == TM_BF16 ? 2 : 1;
    for (int64_t c = 0; c < c64; c += 64) {
        __m256 acc[8];
        _Pragma("GCC unroll 8") for (int k = 0; k < 8; k++) acc[k] = _mm256_setzero_ps();
        for (int32_t r = r0; r < r1; r++) {
            const char *row = (const char *)w->data + r * C * esz;
            _mm_prefetch(row + (c + 64) * esz, _MM_HINT_T0);
            if (esz == 4) _mm_prefetch(row + (c + 64) * esz + 192, _MM_HINT_T0);
            if (esz >= 2) _mm_prefetch(row + (c + 64) * esz + 64, _MM_HINT_T0);
            const __m256 s = _mm256_broadcast_ss(a + (r - r0));
            float sf[2] = {0, 0};
            if (kind == TM_Q8) sf[0] = f16s(w->qscale[r * nb + c / DSC_QBLOCK]), sf[1] = f16s(w->qscale[r * nb + c / DSC_QBLOCK + 1]);
            _Pragma("GCC unroll 8") for (int k = 0; k < 8; k++)
                acc[k] = _mm256_fmadd_ps(tm_load8(w, kind, r, c + 8 * k, sf + k / 4), s, acc[k]);
        }
        _Pragma("GCC unroll 8") for (int k = 0; k < 8; k++)
            _mm256_storeu_ps(y + c + 8 * k, _mm256_add_ps(_mm256_loadu_ps(y + c + 8 * k), acc[k]));
    }
}

#define TM_ROW_BYTES (64 * 1024)

/* One kind's tiles over a block of rows: 8 vectors together, else 6, 4, 2, 1. */
static inline __attribute__((always_inline)) void tm_block(float *y, int64_t ldy, const float *a, int64_t lda,
                                                           int32_t m, const int kind, const dsc_mat *w, int32_t b0,
                                                           int32_t b1) {
    if (m == 8) {
        tm_tile8(y, ldy, a, lda, kind, w, b0, b1);
        return;
    }
    for (int32_t j = 0; j < m;) {
        const int rem = m - j, nj = rem >= 6 ? 6 : rem >= 4 ? 4 : rem >= 2 ? 2 : 1;
        float *yj = y + j * ldy;
        const float *aj = a + j * lda;
        if (nj == 6) tm_tile(yj, ldy, aj, lda, 6, kind, w, b0, b1, 0);
        else if (nj == 4) tm_tile(yj, ldy, aj, lda, 4, kind, w, b0, b1, 0);
        else if (nj == 2) tm_tile(yj, ldy, aj, lda, 2, kind, w, b0, b1, 0);
        else {
            tm_tile1w(yj, aj, kind, w, b0, b1);
            tm_tile(yj, ldy, aj, lda, 1, kind, w, b0, b1, w->cols & ~63);
        }
        j += nj;
    }
}

static void avx2_matvec_tm(float *y, int64_t ldy, const float *a, int64_t lda, int32_t m, const dsc_mat *w, int32_t r0,
                           int32_t r1) {
    const int kind = w->type == DSC_W_F32                                    ? TM_F32
                     : w->type == DSC_W_BF16                                 ? TM_BF16
                     : w->type == DSC_W_Q8 && w->cols % DSC_QBLOCK == 0 ? TM_Q8
                                                                             : -1;
    if (kind < 0) {
        for (int32_t j = 0; j < m; j++) avx2_matvec_t(y + j * ldy, a + j * lda, w, r0, r1);
        return;
    }
    /* Rows by blocks that stay in L2 while every column block and every
     * group of vectors passes over them (a tile reads a row 16 columns at a
     * time, so a block read whole from memory per tile would come back from
     * L3 once per 64-byte line for each column block). */
    const int64_t rb = TM_ROW_BYTES / ((int64_t)w->cols * (kind == TM_F32 ? 4 : kind == TM_BF16 ? 2 : 1)) / 8 * 8 + 8;
    for (int32_t b0 = r0; b0 < r1; b0 += (int32_t)rb) {
        const int32_t b1 = r1 - b0 < rb ? r1 : b0 + (int32_t)rb;
        const float *ab = a + (b0 - r0);
        if (kind == TM_F32) tm_block(y, ldy, ab, lda, m, TM_F32, w, b0, b1);
        else if (kind == TM_BF16) tm_block(y, ldy, ab, lda, m, TM_BF16, w, b0, b1);
        else tm_block(y, ldy, ab, lda, m, TM_Q8, w, b0, b1);
    }
}

/* gemm: all of op(B) is first packed into (K, 16) panels; a 6 x 16 tile of
 * C then lives in 12 registers, and each k costs two panel loads, six
 * broadcasts of A and twelve FMAs (no horizontal sums). The rows of C go by
 * blocks of kern_gemm_mb(K), so that a block of A stays in L2 for all the
 * panels; with DSC_GEMM_AT each block of A is first copied into rows of k.
 * Each element is a plain sum over k in order, fused multiply-adds, then
 * added to C under DSC_GEMM_ACC. */
/* One row of w in F32, 8 values at a time with the matmul tiles' decoders. */
void avx2_mat_row(float *out, const dsc_mat *w, int32_t r) {
    const int32_t C = w->cols, c8 = C & ~7;
    const int32_t bc = w->block_cols > 0 ? w->block_cols : 1;
    const void *rp[RT];
    const float *sp[RT] = {0};
    const uint16_t *qp[RT] = {0};
    tile_rows(w, r, r + 1, rp, sp, qp, RT);
    (void)bc;
    int32_t c = 0;
    switch (w->type) {
    case DSC_W_F32: for (; c < c8; c += 8) _mm256_storeu_ps(out + c, LOAD_F32(0, c)); break;
    case DSC_W_BF16: for (; c < c8; c += 8) _mm256_storeu_ps(out + c, LOAD_BF16(0, c)); break;
    case DSC_W_F16: for (; c < c8; c += 8) _mm256_storeu_ps(out + c, LOAD_F16(0, c)); break;
    case DSC_W_F8_E4M3: for (; c < c8 && bc % 8 == 0; c += 8) _mm256_storeu_ps(out + c, LOAD_FP8(0, c)); break;
    case DSC_W_Q8: for (; c < c8; c += 8) _mm256_storeu_ps(out + c, LOAD_Q8(0, c)); break;
    case DSC_W_Q4: for (; c < c8; c += 8) _mm256_storeu_ps(out + c, LOAD_Q4(0, c)); break;
    }
    if (c < C) { /* a tail (or FP8 blocks not a multiple of 8 wide): the reference */
        float row[C];
        kern_mat_row(row, w, r);
        memcpy(out + c, row + c, sizeof(float) * (size_t)(C - c));
    }
}

/* r[i][j] <- r[j][i] for an 8 x 8 block. */
static inline void transpose8(__m256 r[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xee);
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xee);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
    }
}

#define GM 6
static void gemm_tile(float *c, int64_t ldc, const float *a, int64_t lda, const float *pk, int32_t rows, int32_t cols,
                      int32_t K, int acc) {
    const float *ar[GM];
    for (int i = 0; i < GM; i++) ar[i] = a + (int64_t)(i < rows ? i : rows - 1) * lda;
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    for (int32_t k = 0; k < K; k++) {
        const __m256 b0 = _mm256_loadu_ps(pk + (int64_t)k * 16), b1 = _mm256_loadu_ps(pk + (int64_t)k * 16 + 8);
        __m256 x = _mm256_broadcast_ss(ar[0] + k);
        c00 = _mm256_fmadd_ps(x, b0, c00), c01 = _mm256_fmadd_ps(x, b1, c01);
        x = _mm256_broadcast_ss(ar[1] + k);
        c10 = _mm256_fmadd_ps(x, b0, c10), c11 = _mm256_fmadd_ps(x, b1, c11);
        x = _mm256_broadcast_ss(ar[2] + k);
        c20 = _mm256_fmadd_ps(x, b0, c20), c21 = _mm256_fmadd_ps(x, b1, c21);
        x = _mm256_broadcast_ss(ar[3] + k);
        c30 = _mm256_fmadd_ps(x, b0, c30), c31 = _mm256_fmadd_ps(x, b1, c31);
        x = _mm256_broadcast_ss(ar[4] + k);
        c40 = _mm256_fmadd_ps(x, b0, c40), c41 = _mm256_fmadd_ps(x, b1, c41);
        x = _mm256_broadcast_ss(ar[5] + k);
        c50 = _mm256_fmadd_ps(x, b0, c50), c51 = _mm256_fmadd_ps(x, b1, c51);
    }
    const __m256 r[GM][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    for (int i = 0; i < rows; i++) {
        float *ci = c + (int64_t)i * ldc;
        if (cols == 16) {
            if (acc) {
                _mm256_storeu_ps(ci, _mm256_add_ps(_mm256_loadu_ps(ci), r[i][0]));
                _mm256_storeu_ps(ci + 8, _mm256_add_ps(_mm256_loadu_ps(ci + 8), r[i][1]));
            } else {
                _mm256_storeu_ps(ci, r[i][0]);
                _mm256_storeu_ps(ci + 8, r[i][1]);
            }
        } else {
            float t[16];
            _mm256_storeu_ps(t, r[i][0]);
            _mm256_storeu_ps(t + 8, r[i][1]);
            if (acc)
                for (int32_t j = 0; j < cols; j++) ci[j] += t[j];
            else
                memcpy(ci, t, sizeof(float) * (size_t)cols);
        }
    }
}

/* The panels of B: (K, 16) each, zero columns past N, from rows r0..r0+N-1,
 * columns k0..k0+K-1 of w, decoded on the way with the matmul tiles'
 * decoders (8 rows x 8 columns, transposed in registers); a partial panel
 * or a column tail takes the rows from mat_row. */
#define PACK_BLOCKS(LOAD)                                                                                            \
    for (; k8 + 8 <= K; k8 += 8) {                                                                                   \
        const int32_t c = k0 + k8;                                                                                   \
        __m256 r[8];                                                                                                 \
        for (int i = 0; i < 8; i++) r[i] = LOAD(i, c);                                                               \
        transpose8(r);                                                                                               \
        for (int i = 0; i < 8; i++) _mm256_storeu_ps(pk + (int64_t)(k8 + i) * 16 + 8 * h, r[i]);                    \
    }
/* The 8 bytes at offset off of 8 rows transposed (three rounds of
 * unpacks): col[i] holds columns 2i and 2i + 1 of the 8 rows. */
static inline void bytes8x8(__m128i col[4], const void *const rp[8], int64_t off) {
    __m128i v[8];
    _Pragma("GCC unroll 8") for (int i = 0; i < 8; i++) v[i] = load8((const uint8_t *)rp[i] + off);
    const __m128i a01 = _mm_unpacklo_epi8(v[0], v[1]), a23 = _mm_unpacklo_epi8(v[2], v[3]);
    const __m128i a45 = _mm_unpacklo_epi8(v[4], v[5]), a67 = _mm_unpacklo_epi8(v[6], v[7]);
    const __m128i l03 = _mm_unpacklo_epi16(a01, a23), h03 = _mm_unpackhi_epi16(a01, a23); /* columns 0-3, 4-7 of rows 0-3 */
    const __m128i l47 = _mm_unpacklo_epi16(a45, a67), h47 = _mm_unpackhi_epi16(a45, a67);
    col[0] = _mm_unpacklo_epi32(l03, l47), col[1] = _mm_unpackhi_epi32(l03, l47);
    col[2] = _mm_unpacklo_epi32(h03, h47), col[3] = _mm_unpackhi_epi32(h03, h47);
}

/* PACK_BLOCKS for Q8 and Q4, both halves of the panel (its 16 rows) a step
 * at once, so that each 64-byte line of the panel is written whole in turn
 * rather than by halves a panel apart (with bytes8x8's loads unrolled,
 * packing 1.66x as fast as before both changes): each 8 rows' bytes
 * of the step transposed, Q4's nibbles of the step taken out and its offset
 * of 8 subtracted as bytes, then each column widened, converted and
 * multiplied by the 8 rows' scales of its block at once: the same
 * q x scale as LOAD_Q8 and LOAD_Q4. Returns the columns done. */
static int32_t pack_q_blocks(float *pk, int q4, const void *const rp[16], const uint16_t *const qp[16], int32_t k0,
                             int32_t K) {
    int32_t k8 = 0;
    __m256 sv[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    for (; k8 + 8 <= K; k8 += 8) {
        const int32_t c = k0 + k8, b = c / DSC_QBLOCK, j = c % DSC_QBLOCK;
        _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {
            const uint16_t *const *q = qp + 8 * h;
            if (k8 == 0 || j == 0)
                sv[h] = _mm256_cvtph_ps(_mm_setr_epi16((short)q[0][b], (short)q[1][b], (short)q[2][b], (short)q[3][b],
                                                       (short)q[4][b], (short)q[5][b], (short)q[6][b], (short)q[7][b]));
            __m128i col[4];
            bytes8x8(col, rp + 8 * h, q4 ? (int64_t)b * 16 + (j & 15) : c); /* Q4: values j and j + 16 share byte j */
            if (q4)
                _Pragma("GCC unroll 4") for (int i = 0; i < 4; i++) {
                    const __m128i nib = j >= 16 ? _mm_srli_epi16(col[i], 4) : col[i];
                    col[i] = _mm_sub_epi8(_mm_and_si128(nib, _mm_set1_epi8(15)), _mm_set1_epi8(8));
                }
            _Pragma("GCC unroll 4") for (int i = 0; i < 4; i++) {
                const __m256 e = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(col[i])), sv[h]);
                const __m256 o =
                    _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_unpackhi_epi64(col[i], col[i]))), sv[h]);
                _mm256_storeu_ps(pk + (int64_t)(k8 + 2 * i) * 16 + 8 * h, e);
                _mm256_storeu_ps(pk + (int64_t)(k8 + 2 * i + 1) * 16 + 8 * h, o);
            }
        }
    }
    return k8;
}

/* PACK_BLOCKS for FP8 (block columns a multiple of 8), both halves of the
 * panel a step at once as for Q8: the bytes transposed, two columns at a
 * time made F16 as load_fp8 makes them, and multiplied by the 8 rows'
 * scales x 2^8, the same bits as LOAD_FP8. */
static int32_t pack_fp8_blocks(float *pk, const void *const rp[16], const float *const sp[16], int32_t bc, int32_t k0,
                               int32_t K) {
    int32_t k8 = 0;
    __m256 sv[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    for (; k8 + 8 <= K; k8 += 8) {
        const int32_t c = k0 + k8, b = c / bc;
        _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {
            const float *const *q = sp + 8 * h;
            if (k8 == 0 || c % bc == 0)
                sv[h] = _mm256_mul_ps(_mm256_setr_ps(q[0][b], q[1][b], q[2][b], q[3][b], q[4][b], q[5][b], q[6][b], q[7][b]),
                                      _mm256_set1_ps(256.0f));
            __m128i col[4];
            bytes8x8(col, rp + 8 * h, c);
            _Pragma("GCC unroll 4") for (int i = 0; i < 4; i++) {
                const __m256i v = _mm256_cvtepi8_epi16(col[i]); /* columns 2i, 2i + 1 as int16 */
                const __m256i f = _mm256_and_si256(_mm256_slli_epi16(v, 7), _mm256_set1_epi16((short)0xbf80));
                _mm256_storeu_ps(pk + (int64_t)(k8 + 2 * i) * 16 + 8 * h,
                                 _mm256_mul_ps(_mm256_cvtph_ps(_mm256_castsi256_si128(f)), sv[h]));
                _mm256_storeu_ps(pk + (int64_t)(k8 + 2 * i + 1) * 16 + 8 * h,
                                 _mm256_mul_ps(_mm256_cvtph_ps(_mm256_extracti128_si256(f, 1)), sv[h]));
            }
        }
    }
    return k8;
}

/* PACK_BLOCKS for BF16, 16 columns a step: the 8 rows' 16 values
 * transposed as 16-bit lanes (three rounds of unpacks, each 128-bit lane
 * doing 8 columns), then widened by unpacking with zeros (BF16 << 16 is its
 * F32) and the two lanes' columns put apart. Returns the columns done. */
static int32_t pack_bf16_blocks(float *pk, int h, const void *const rp[8], int32_t k0, int32_t K) {
    int32_t k8 = 0;
    const __m256i z = _mm256_setzero_si256();
    for (; k8 + 16 <= K; k8 += 16) {
        __m256i v[8];
        _Pragma("GCC unroll 8") for (int i = 0; i < 8; i++)
            v[i] = _mm256_loadu_si256((const __m256i *)((const uint16_t *)rp[i] + k0 + k8));
        __m256i a[8], b[8];
        for (int i = 0; i < 4; i++) { /* rows 2i, 2i + 1: columns 0-3, then 4-7 (of each lane) */
            a[2 * i] = _mm256_unpacklo_epi16(v[2 * i], v[2 * i + 1]);
            a[2 * i + 1] = _mm256_unpackhi_epi16(v[2 * i], v[2 * i + 1]);
        }
        for (int g = 0; g < 2; g++) /* rows 4g..4g + 3: columns 0-1, 2-3, 4-5, 6-7 */
            for (int q = 0; q < 2; q++) {
                b[4 * g + 2 * q] = _mm256_unpacklo_epi32(a[4 * g + q], a[4 * g + 2 + q]);
                b[4 * g + 2 * q + 1] = _mm256_unpackhi_epi32(a[4 * g + q], a[4 * g + 2 + q]);
            }
        for (int j = 0; j < 4; j++)
            for (int o = 0; o < 2; o++) { /* column 2j + o of each lane, rows 0-7 */
                const __m256i col = o ? _mm256_unpackhi_epi64(b[j], b[4 + j]) : _mm256_unpacklo_epi64(b[j], b[4 + j]);
                const __m256i lo = _mm256_unpacklo_epi16(z, col), hi = _mm256_unpackhi_epi16(z, col);
                const int32_t k = k8 + 2 * j + o;
                _mm256_storeu_ps(pk + (int64_t)k * 16 + 8 * h, _mm256_castsi256_ps(_mm256_permute2x128_si256(lo, hi, 0x20)));
                _mm256_storeu_ps(pk + (int64_t)(k + 8) * 16 + 8 * h,
                                 _mm256_castsi256_ps(_mm256_permute2x128_si256(lo, hi, 0x31)));
            }
    }
    return k8;
}

static void pack_w(float *pack, const dsc_mat *w, int32_t r0, int32_t N, int32_t k0, int32_t K) {
    const int32_t C = w->cols, bc = w->block_cols > 0 ? w->block_cols : 1;
    const int blocks = k0 % 8 == 0 && (w->type != DSC_W_F8_E4M3 || bc % 8 == 0);
    for (int32_t p = 0; p < (N + 15) / 16; p++) {
        const int32_t n0 = p * 16, cols = N - n0 < 16 ? N - n0 : 16;
        float *pk = pack + (int64_t)p * K * 16;
        int32_t k8 = 0;
        const int bytes = w->type == DSC_W_Q8 || w->type == DSC_W_Q4 || w->type == DSC_W_F8_E4M3;
        if (cols == 16 && blocks && bytes) { /* both halves at once */
            const void *rp[16];
            const float *sp[16] = {0};
            const uint16_t *qp[16] = {0};
            tile_rows(w, r0 + n0, r0 + N, rp, sp, qp, 16);
            k8 = w->type == DSC_W_F8_E4M3 ? pack_fp8_blocks(pk, rp, sp, bc, k0, K)
                                          : pack_q_blocks(pk, w->type == DSC_W_Q4, rp, qp, k0, K);
        }
        for (int h = 0; h < 2 && cols == 16 && blocks && !bytes; h++) {
            const void *rp[8];
            const float *sp[8] = {0};
            const uint16_t *qp[8] = {0};
            tile_rows(w, r0 + n0 + 8 * h, r0 + N, rp, sp, qp, 8);
            k8 = 0;
            switch (w->type) {
            case DSC_W_F32: PACK_BLOCKS(LOAD_F32) break;
            case DSC_W_F16: PACK_BLOCKS(LOAD_F16) break;
            case DSC_W_BF16:
                k8 = pack_bf16_blocks(pk, h, rp, k0, K);
                PACK_BLOCKS(LOAD_BF16) /* a last 8 columns */
                break;
            default: break; /* the byte types above */
            }
        }
        if (k8 == K) continue;
        float row[w->type == DSC_W_F32 ? 1 : C];
        for (int32_t j = 0; j < 16; j++) {
            /* F32 rows are read in place: a gemm's B may be a block of a
             * wider matrix, whose last row ends at column k0 + K. */
            const float *src = row;
            if (j < cols && w->type == DSC_W_F32) src = (const float *)w->data + (int64_t)(r0 + n0 + j) * C;
            else if (j < cols) avx2_mat_row(row, w, r0 + n0 + j);
            for (int32_t k = k8; k < K; k++) pk[(int64_t)k * 16 + j] = j < cols ? src[k0 + k] : 0;
        }
    }
}
#undef PACK_BLOCKS

/* C from A and the packed panels of B (pack: np panels, then room for a
 * block of A when it is stored transposed). */
static void gemm_packed(float *c, int64_t ldc, const float *a, int64_t lda, int32_t M, int32_t N, int32_t K, int flags,
                        float *pack) {
    const int acc = flags & DSC_GEMM_ACC;
    const int32_t np = (N + 15) / 16;
    float *ap = pack + (int64_t)np * K * 16;
    const int32_t mb0 = kern_gemm_mb(K);
    for (int32_t m0 = 0; m0 < M; m0 += mb0) {
        const int32_t mb = M - m0 < mb0 ? M - m0 : mb0;
        const float *am = a + (int64_t)m0 * lda;
        int64_t la = lda;
        if (flags & DSC_GEMM_AT) { /* 8 rows of the stored A at a time into rows of k */
            for (int32_t k1 = 0; k1 < K; k1 += 8) {
                const int32_t k2 = K - k1 < 8 ? K : k1 + 8;
                for (int32_t m = 0; m < mb; m++)
                    for (int32_t k = k1; k < k2; k++) ap[(int64_t)m * K + k] = a[(int64_t)k * lda + m0 + m];
            }
            am = ap, la = K;
        }
        for (int32_t p = 0; p < np; p++) {
            const int32_t n0 = p * 16, cols = N - n0 < 16 ? N - n0 : 16;
            for (int32_t t = 0; t < mb; t += GM)
                gemm_tile(c + (int64_t)(m0 + t) * ldc + n0, ldc, am + (int64_t)t * la, la, pack + (int64_t)p * K * 16,
                          mb - t < GM ? mb - t : GM, cols, K, acc);
        }
    }
}

void avx2_gemm(float *c, int64_t ldc, const float *a, int64_t lda, const float *b, int64_t ldb, int32_t M, int32_t N,
               int32_t K, int flags, float *pack) {
    if (flags & DSC_GEMM_BN) { /* B stored (K, N): 16 contiguous values per k */
        for (int32_t p = 0; p < (N + 15) / 16; p++) {
            const int32_t n0 = p * 16, cols = N - n0 < 16 ? N - n0 : 16;
            float *pk = pack + (int64_t)p * K * 16;
            for (int32_t k = 0; k < K; k++) {
                const float *bk = b + (int64_t)k * ldb + n0;
                if (cols == 16) {
                    _mm256_storeu_ps(pk + (int64_t)k * 16, _mm256_loadu_ps(bk));
                    _mm256_storeu_ps(pk + (int64_t)k * 16 + 8, _mm256_loadu_ps(bk + 8));
                } else {
                    for (int32_t j = 0; j < 16; j++) pk[(int64_t)k * 16 + j] = j < cols ? bk[j] : 0;
                }
            }
        }
    } else {
        const dsc_mat rows = {.type = DSC_W_F32, .rows = N, .cols = (int32_t)ldb, .data = b}; /* B (N, K), stride ldb */
        pack_w(pack, &rows, 0, N, 0, K);
    }
    gemm_packed(c, ldc, a, lda, M, N, K, flags, pack);
}

/* gemm_w: the weight rows go straight into the panels. */
void avx2_gemm_w(float *c, int64_t ldc, const float *a, int64_t lda, int32_t M, const dsc_mat *w, int32_t r0, int32_t N,
                 int32_t k0, int32_t K, int flags, float *pack) {
    pack_w(pack, w, r0, N, k0, K);
    gemm_packed(c, ldc, a, lda, M, N, K, flags & DSC_GEMM_ACC, pack);
}

/* exp(x) for x <= 0 (softmax arguments): x = n ln2 + r, |r| <= ln2 / 2,
 * exp(r) by a degree-6 polynomial, 2^n into the exponent; below -87.3 the
 * result is 0 (expf would give a subnormal). */
static inline __m256 exp256_nonpos(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.33654f);
    const __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_max_ps(x, lo);
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187e-06f), r);
    __m256 pl = _mm256_set1_ps(1.9875691500e-4f);
    pl = _mm256_fmadd_ps(pl, r, _mm256_set1_ps(1.3981999507e-3f));
    pl = _mm256_fmadd_ps(pl, r, _mm256_set1_ps(8.3334519073e-3f));
    pl = _mm256_fmadd_ps(pl, r, _mm256_set1_ps(4.1665795894e-2f));
    pl = _mm256_fmadd_ps(pl, r, _mm256_set1_ps(1.6666665459e-1f));
    pl = _mm256_fmadd_ps(pl, r, _mm256_set1_ps(5.0000001201e-1f));
    pl = _mm256_fmadd_ps(pl, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(under, _mm256_mul_ps(pl, _mm256_castsi256_ps(e)));
}

double avx2_exp_sum(float *y, const float *x, int32_t n, float mx) {
    const __m256 m = _mm256_set1_ps(mx);
    __m256d s0 = _mm256_setzero_pd(), s1 = s0;
    int32_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 e = exp256_nonpos(_mm256_sub_ps(_mm256_loadu_ps(x + i), m));
        _mm256_storeu_ps(y + i, e);
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    double t[4];
    _mm256_storeu_pd(t, _mm256_add_pd(s0, s1));
    double sum = t[0] + t[1] + t[2] + t[3];
    for (; i < n; i++) {
        const float e = expf(x[i] - mx);
        y[i] = e;
        sum += e;
    }
    return sum;
}

void avx2_sigmoid(float *y, const float *x, int32_t n) {
    const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
    int32_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256 e = exp256_nonpos(_mm256_or_ps(v, sign)); /* exp(-|x|) */
        const __m256 d = _mm256_add_ps(one, e);
        const __m256 neg = _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LT_OQ);
        _mm256_storeu_ps(y + i, _mm256_div_ps(_mm256_blendv_ps(one, e, neg), d));
    }
    for (; i < n; i++) {
        const float e = expf(-fabsf(x[i]));
        y[i] = x[i] >= 0 ? 1.0f / (1.0f + e) : e / (1.0f + e);
    }
}

/* Multiplies and adds kept apart (no FMA contraction, which the compiler
 * would otherwise do in this file) to match the reference's rounding: a
 * function attribute for gcc, a pragma in the body for clang (which
 * ignores the attribute). */
#if defined(__clang__)
#define NO_CONTRACT_FN
#define NO_CONTRACT_BODY _Pragma("clang fp contract(off)")
#else
#define NO_CONTRACT_FN __attribute__((optimize("fp-contract=off")))
#define NO_CONTRACT_BODY
#endif
NO_CONTRACT_FN void avx2_adamw(float *p, const float *g, float *m, float *v, int64_t n, const dsc_adamw_hp *h) {
    NO_CONTRACT_BODY
    const __m256 b1 = _mm256_set1_ps(h->b1), c1 = _mm256_set1_ps(1.0f - h->b1), b2 = _mm256_set1_ps(h->b2);
    const __m256 c2 = _mm256_set1_ps(1.0f - h->b2), bc1 = _mm256_set1_ps(h->bc1), bc2 = _mm256_set1_ps(h->bc2);
    const __m256 eps = _mm256_set1_ps(h->eps), lr = _mm256_set1_ps(h->lr), wd = _mm256_set1_ps(h->wd);
    int64_t k = 0;
    for (; k + 8 <= n; k += 8) {
        const __m256 gk = _mm256_loadu_ps(g + k), pk = _mm256_loadu_ps(p + k);
        const __m256 mk = _mm256_add_ps(_mm256_mul_ps(b1, _mm256_loadu_ps(m + k)), _mm256_mul_ps(c1, gk));
        const __m256 vk = _mm256_add_ps(_mm256_mul_ps(b2, _mm256_loadu_ps(v + k)), _mm256_mul_ps(_mm256_mul_ps(c2, gk), gk));
        _mm256_storeu_ps(m + k, mk);
        _mm256_storeu_ps(v + k, vk);
        const __m256 mhat = _mm256_div_ps(mk, bc1), vhat = _mm256_div_ps(vk, bc2);
        const __m256 u = _mm256_add_ps(_mm256_div_ps(mhat, _mm256_add_ps(_mm256_sqrt_ps(vhat), eps)), _mm256_mul_ps(wd, pk));
        _mm256_storeu_ps(p + k, _mm256_sub_ps(pk, _mm256_mul_ps(lr, u)));
    }
    for (; k < n; k++) {
        m[k] = h->b1 * m[k] + (1.0f - h->b1) * g[k];
        v[k] = h->b2 * v[k] + (1.0f - h->b2) * g[k] * g[k];
        const float mhat = m[k] / h->bc1, vhat = v[k] / h->bc2;
        p[k] -= h->lr * (mhat / (sqrtf(vhat) + h->eps) + h->wd * p[k]);
    }
}

/* v kept in a register: the compiler would otherwise fold the load into
 * each FMA that uses it, loading it again for each. */
static inline __attribute__((always_inline)) __m256 IN_REG(__m256 v) {
    __asm__("" : "+x"(v));
    return v;
}

/* The sums of four vectors' lanes at once, each ((v0 + v1) + (v2 + v3)) +
 * ((v4 + v5) + (v6 + v7)) whatever the other three are. */
static inline __m128 hsum4x(__m256 a, __m256 b, __m256 c, __m256 d) {
    const __m256 s = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}

/* MLA decode attention over a block of cache rows. Scores: a tile of NH
 * heads x NP rows keeps its NH x NP sums in registers, 8 columns at a time
 * (NP row loads and NH head loads for NH x NP FMAs), each sum one chain over
 * the columns, then summed across by hsum4x, then the tail columns; so a
 * (head, row) value is the same in any tile. The first tile over a group of
 * rows decodes them (KIND: F32, BF16 or Q8, as mat_row decodes them) and
 * stores them to the block's F32 rows as it goes; the others read those. */
enum { AS_F32, AS_BF16, AS_Q8, AS_ROWSF32 };
static inline __attribute__((always_inline)) void as_tile(float *y, int64_t ldy, const float *x, float *b,
                                                          int64_t ldb, const dsc_mat *w, int32_t r, const int kind,
                                                          const int nh, const int np, const char *pf, int64_t npf) {
    const int64_t C = w->cols, c8 = C & ~7, nb = C / DSC_QBLOCK;
    const void *rp[3];
    float sf[kind == AS_Q8 ? 3 * (C / DSC_QBLOCK) + 1 : 1];
    for (int i = 0; i < np; i++) {
        if (kind == AS_F32) rp[i] = (const float *)w->data + (r + i) * C;
        if (kind == AS_BF16) rp[i] = (const uint16_t *)w->data + (r + i) * C;
        if (kind == AS_Q8) {
            rp[i] = (const int8_t *)w->data + (r + i) * C;
            for (int64_t k = 0; k < nb; k++) sf[i * nb + k] = f16s(w->qscale[(r + i) * nb + k]);
        }
    }
    __m256 acc[4][3];
    _Pragma("GCC unroll 4") for (int j = 0; j < nh; j++)
        _Pragma("GCC unroll 3") for (int i = 0; i < np; i++) acc[j][i] = _mm256_setzero_ps();
    int64_t pfo = 0;
    for (int64_t c = 0; c < c8; c += 8) {
        __m256 bv[3];
        if (kind != AS_ROWSF32 && pfo < npf) _mm_prefetch(pf + pfo, _MM_HINT_T0), pfo += 64;
        _Pragma("GCC unroll 3") for (int i = 0; i < np; i++) {
            if (kind == AS_ROWSF32) bv[i] = IN_REG(_mm256_loadu_ps(b + i * ldb + c));
            else {
                if (kind == AS_F32) bv[i] = _mm256_loadu_ps((const float *)rp[i] + c);
                if (kind == AS_BF16)
                    bv[i] = _mm256_castsi256_ps(_mm256_slli_epi32(
                        _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)rp[i] + c))), 16));
                if (kind == AS_Q8)
                    bv[i] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(load8((const int8_t *)rp[i] + c))),
                                          _mm256_broadcast_ss(sf + i * nb + c / DSC_QBLOCK));
                bv[i] = IN_REG(bv[i]);
                _mm256_storeu_ps(b + i * ldb + c, bv[i]);
            }
        }
        _Pragma("GCC unroll 4") for (int j = 0; j < nh; j++) {
            const __m256 xv = IN_REG(_mm256_loadu_ps(x + j * C + c));
            _Pragma("GCC unroll 3") for (int i = 0; i < np; i++) acc[j][i] = _mm256_fmadd_ps(xv, bv[i], acc[j][i]);
        }
    }
    if (kind != AS_ROWSF32) /* the rest of the next group's lines, by the first tile only */
        for (; pfo < npf; pfo += 64) _mm_prefetch(pf + pfo, _MM_HINT_T0);
    if (kind != AS_ROWSF32 && c8 < C) /* the tail columns as the reference decodes them */
        for (int i = 0; i < np; i++) {
            float row[C];
            kern_mat_row(row, w, r + i);
            memcpy(b + i * ldb + c8, row + c8, sizeof(float) * (size_t)(C - c8));
        }
    const __m256 z = _mm256_setzero_ps();
    _Pragma("GCC unroll 3") for (int i = 0; i < np; i++) {
        float s4[4];
        _mm_storeu_ps(s4, hsum4x(acc[0][i], nh > 1 ? acc[1][i] : z, nh > 2 ? acc[2][i] : z, nh > 3 ? acc[3][i] : z));
        for (int j = 0; j < nh; j++) {
            float sum = s4[j];
            for (int64_t c = c8; c < C; c++) sum += x[j * C + c] * b[i * ldb + c];
            y[j * ldy + i] = sum;
        }
    }
}

#define AS_ROWS 3
/* One kind's tiles over rows r0..r1: each group of AS_ROWS rows decoded by
 * its first tile of heads, read as F32 by the others. */
static inline __attribute__((always_inline)) void as_rows(float *y, int64_t ldy, const float *x, int32_t n,
                                                          const dsc_mat *w, int32_t r0, int32_t r1, float *buf,
                                                          int64_t ldb, const int kind, const int64_t esz) {
    const int64_t C = w->cols;
    for (int32_t r = r0; r < r1; r += AS_ROWS) {
        const int np = r1 - r < AS_ROWS ? r1 - r : AS_ROWS;
        float *b = buf + (r - r0) * ldb, *yr = y + (r - r0);
        /* the next group's rows fetched while these are summed, a line per 8
         * columns (the same lines at once, before the tiles: 0.85x at
         * 32768 positions of a BF16 cache) */
        const int32_t rs = r + AS_ROWS < w->rows ? r + AS_ROWS : w->rows;
        const int32_t re = rs + AS_ROWS < w->rows ? rs + AS_ROWS : w->rows;
        const char *pf = (const char *)w->data + rs * C * esz;
        const int64_t npf = (re - rs) * C * esz;
        for (int32_t j = 0; j < n; j += 4) {
            const int nh = n - j < 4 ? n - j : 4;
            float *yj = yr + j * ldy;
            const float *xj = x + j * C;
#define AS_CASE(K, H, P)                                                                                             \
    case (H) * 4 + (P): as_tile(yj, ldy, xj, b, ldb, w, r, K, H, P, pf, npf); break
#define AS_CASES(K)                                                                                                  \
    switch (nh * 4 + np) {                                                                                           \
        AS_CASE(K, 4, 3); AS_CASE(K, 4, 2); AS_CASE(K, 4, 1); AS_CASE(K, 3, 3); AS_CASE(K, 3, 2); AS_CASE(K, 3, 1);  \
        AS_CASE(K, 2, 3); AS_CASE(K, 2, 2); AS_CASE(K, 2, 1); AS_CASE(K, 1, 3); AS_CASE(K, 1, 2); AS_CASE(K, 1, 1);  \
    }
            if (j == 0) AS_CASES(kind)
            else AS_CASES(AS_ROWSF32)
#undef AS_CASES
#undef AS_CASE
        }
    }
}

void avx2_attn_scores(float *y, int64_t ldy, const float *x, int32_t n, const dsc_mat *w, int32_t r0, int32_t r1,
                      float *buf, int64_t ldb) {
    if (w->type == DSC_W_BF16) as_rows(y, ldy, x, n, w, r0, r1, buf, ldb, AS_BF16, 2);
    else if (w->type == DSC_W_F32) as_rows(y, ldy, x, n, w, r0, r1, buf, ldb, AS_F32, 4);
    else if (w->type == DSC_W_Q8 && w->cols % DSC_QBLOCK == 0) as_rows(y, ldy, x, n, w, r0, r1, buf, ldb, AS_Q8, 1);
    else kern_ref.attn_scores(y, ldy, x, n, w, r0, r1, buf, ldb);
}

/* Weighted sums: a tile of NH vectors x NC 8-column groups keeps its sums in
 * registers over all the rows (NC row loads and NH broadcasts for NH x NC
 * FMAs), then adds them to y; each sum one chain over the rows in order, the
 * tail columns one at a time, so a value is the same in any tile. */
static inline __attribute__((always_inline)) void aw_tile(float *y, int64_t ldy, const float *a, int64_t lda,
                                                          const float *b, int64_t ldb, int32_t np, const int nh,
                                                          const int nc) {
    __m256 acc[4][3];
    _Pragma("GCC unroll 4") for (int j = 0; j < nh; j++)
        _Pragma("GCC unroll 3") for (int i = 0; i < nc; i++) acc[j][i] = _mm256_setzero_ps();
    for (int32_t p = 0; p < np; p++) {
        __m256 bv[3];
        _Pragma("GCC unroll 3") for (int i = 0; i < nc; i++) bv[i] = IN_REG(_mm256_loadu_ps(b + p * ldb + 8 * i));
        _Pragma("GCC unroll 4") for (int j = 0; j < nh; j++) {
            const __m256 s = _mm256_broadcast_ss(a + j * lda + p);
            _Pragma("GCC unroll 3") for (int i = 0; i < nc; i++) acc[j][i] = _mm256_fmadd_ps(bv[i], s, acc[j][i]);
        }
    }
    _Pragma("GCC unroll 4") for (int j = 0; j < nh; j++)
        _Pragma("GCC unroll 3") for (int i = 0; i < nc; i++)
            _mm256_storeu_ps(y + j * ldy + 8 * i, _mm256_add_ps(_mm256_loadu_ps(y + j * ldy + 8 * i), acc[j][i]));
}

void avx2_attn_wsum(float *y, int64_t ldy, const float *a, int64_t lda, int32_t m, const float *buf, int64_t ldb,
                    int32_t np, int32_t cols) {
    const int32_t c8 = cols & ~7;
    for (int32_t j = 0; j < m; j += 4) {
        const int nh = m - j < 4 ? m - j : 4;
        float *yj = y + j * ldy;
        const float *aj = a + j * lda;
        for (int32_t c = 0; c < c8; c += 24) {
            const int nc = (c8 - c) / 8 < 3 ? (c8 - c) / 8 : 3;
#define AW_CASE(H, N)                                                                                                \
    case (H) * 4 + (N): aw_tile(yj + c, ldy, aj, lda, buf + c, ldb, np, H, N); break
            switch (nh * 4 + nc) {
                AW_CASE(4, 3); AW_CASE(4, 2); AW_CASE(4, 1); AW_CASE(3, 3); AW_CASE(3, 2); AW_CASE(3, 1);
                AW_CASE(2, 3); AW_CASE(2, 2); AW_CASE(2, 1); AW_CASE(1, 3); AW_CASE(1, 2); AW_CASE(1, 1);
            }
#undef AW_CASE
        }
        for (int32_t c = c8; c < cols; c++)
            for (int i = 0; i < nh; i++) {
                float sum = 0;
                for (int32_t p = 0; p < np; p++) sum += aj[i * lda + p] * buf[p * ldb + c];
                yj[i * ldy + c] += sum;
            }
    }
}

const dsc_kernels kern_avx2 = {"avx2", avx2_matmul_rows, avx2_matvec_t, avx2_matvec_tm, avx2_dot, avx2_axpy, avx2_fma_burn, 8,
                               avx2_gemm, avx2_mat_row, avx2_exp_sum, avx2_sigmoid, avx2_adamw, avx2_gemm_w,
                               avx2_attn_scores, avx2_attn_wsum, avx2_q8_round, avx2_relu_wsum};
