/*
 * kernels.h — the numeric kernels of the forward pass.
 *
 * Every kernel here has a plain C reference version (kernels_ref.c) that is
 * the specification; optimised versions must match it.
 *
 * Weights are read in their stored type through dsc_mat, a borrowed view of a
 * row-major [rows, cols] matrix (y = W x, as in Hugging Face checkpoints).
 */
#ifndef DSC_KERNELS_H
#define DSC_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* Stored weight types. Q8 and Q4 are dsc's block formats: 32 consecutive
 * values of a row share one F16 scale (qscale [rows, cols / 32]).
 *   Q8: int8 q [rows, cols], w = q x scale.
 *   Q4: uint8 [rows, cols / 2]; in each 32-block of 16 bytes, the low
 *       nibbles hold values 0..15 and the high nibbles 16..31; w = (nib - 8) x scale. */
typedef enum { DSC_W_F32, DSC_W_F16, DSC_W_BF16, DSC_W_F8_E4M3, DSC_W_Q8, DSC_W_Q4 } dsc_wtype;

#define DSC_QBLOCK 32

typedef struct {
    dsc_wtype type;
    int32_t rows, cols;
    const void *data;      /* the stored elements, borrowed (mmap)              */
    const float *scale;    /* F8_E4M3 only: weight_scale_inv,                   */
                           /* [ceil(rows/block_rows), ceil(cols/block_cols)]    */
    int32_t block_rows, block_cols;
    const uint16_t *qscale;/* Q8/Q4 only: F16 [rows, cols / 32]                */
} dsc_mat;

/* Bytes of weight data (with scales) one pass over w reads. */
int64_t kern_mat_bytes(const dsc_mat *w);

/* Scalar conversions. */
float kern_bf16_to_f32(uint16_t h);
float kern_f16_to_f32(uint16_t h);
float kern_e4m3_to_f32(uint8_t b);
/* The 256 values of the e4m3fn codes. */
const float *kern_e4m3_table(void);
/* OCP e4m3fn of x: round to nearest even, saturating at +-448. */
uint8_t kern_f32_to_e4m3(float x);

/* out[cols] = row r of w, dequantised. */
void kern_mat_row(float *out, const dsc_mat *w, int32_t r);

/* Row r of w dotted with x[cols]. */
float kern_mat_row_dot(const dsc_mat *w, int32_t r, const float *x);

/* Stores row r of an F32, BF16 or Q8 matrix from x[cols] (BF16: round to
 * nearest even; Q8: scale max|x| / 127 per 32 values). Used for caches. */
void kern_store_row(const dsc_mat *w, int32_t r, const float *x);

/* y[cols] += a * row r of w. */
void kern_mat_row_axpy(float *y, const dsc_mat *w, int32_t r, float a);

/* Q4 rows multiply x rounded to 8 bits per 32 values, as llama.cpp's Q4_0
 * x Q8_0 does (the int8 products are what make Q4 decode fast): a block of
 * x with m = max|x| becomes q = x x (127 / m) rounded to nearest even, in
 * -127..127, and its step d = m / 127; each block's product is the exact
 * integer sum of (nibble - 8) x q, times (weight scale x d). Blocks with m
 * below DSC_Q8X_MIN are zeros (q = 0, d = 0); a block with an infinity or
 * a NaN gets q = 0 and d = NaN, so its rows' products are NaN. */
#define DSC_Q8X_MIN 0x1p-120f

/* x[32] rounded as above into q[32]; returns d. */
float kern_q8_round_block(int8_t *q, const float *x);

/* out[n] = x rounded as above, q x d (n a multiple of 32; out may be x):
 * what a gemm over Q4 rows multiplies, so that prefill computes the row
 * kernels' values. */
void kern_q8_round(float *out, const float *x, int64_t n);

/* y[n, r1 - r0] = x[n, cols] @ w[r0:r1, :]^T: rows r0..r1-1 of the product.
 * ldy is the row stride of y (>= r1 - r0). */
void kern_matmul_rows(float *y, int64_t ldy, const float *x, const dsc_mat *w, int32_t n, int32_t r0, int32_t r1);

/* y[n, rows] = x[n, cols] @ w^T. */
void kern_matmul(float *y, const float *x, const dsc_mat *w, int32_t n);

/* out[n] = x / sqrt(mean(x^2) + eps) * weight (out may alias x). */
void kern_rmsnorm(float *out, const float *x, const float *weight, int32_t n, float eps);

/* In-place softmax of x[n]. */
void kern_softmax(float *x, int32_t n);

/* g[n] = silu(g) * u (SwiGLU's gate). */
void kern_swiglu(float *g, const float *u, int32_t n);

float kern_dot(const float *a, const float *b, int32_t n);
void kern_axpy(float *y, const float *x, float a, int32_t n); /* y += a x */

/* AdamW's constants for one step: m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
 * p -= lr ((m / bc1) / (sqrt(v / bc2) + eps) + wd p). */
typedef struct {
    float b1, b2, eps, lr, wd, bc1, bc2;
} dsc_adamw_hp;

/* ------------------------------------------------------------------------ */
/* Dispatch: one table per instruction set; the reference table is the spec. */

typedef struct {
    const char *name;
    void (*matmul_rows)(float *y, int64_t ldy, const float *x, const dsc_mat *w, int32_t n, int32_t r0, int32_t r1);
    /* y[cols] += sum over r in [r0, r1) of a[r - r0] x row r of w  (x^T W) */
    void (*matvec_t)(float *y, const float *a, const dsc_mat *w, int32_t r0, int32_t r1);
    /* The same for m vectors at once (rows of a and y with strides lda, ldy):
     * one pass over w instead of m (attention: every head's weighted sum of
     * the latent cache rows). */
    void (*matvec_tm)(float *y, int64_t ldy, const float *a, int64_t lda, int32_t m, const dsc_mat *w, int32_t r0,
                      int32_t r1);
    float (*dot)(const float *a, const float *b, int32_t n);
    void (*axpy)(float *y, const float *x, float a, int32_t n);
    /* iters x 8 independent vector FMAs, registers only: the FMA peak. */
    float (*fma_burn)(int64_t iters);
    int lanes;       /* floats per vector FMA */
    /* F32 C (M, N), row stride ldc, = A (M, K) @ B (N, K)^T; A and B
     * row-major with row strides lda and ldb. flags: DSC_GEMM_AT, A is stored
     * transposed, (K, M); DSC_GEMM_BN, B is stored (K, N), so C = A @ B;
     * DSC_GEMM_ACC, C += the product instead of C = it. Each element is
     * summed in k order by one call (then added to C), so a split of M or N
     * between threads does not change the result. pack: scratch of
     * kern_gemm_scratch(M, N, K, flags) floats. (The trainer's products:
     * many rows, small K.) */
    void (*gemm)(float *c, int64_t ldc, const float *a, int64_t lda, const float *b, int64_t ldb, int32_t M, int32_t N,
                 int32_t K, int flags, float *pack);
    /* y[i] = exp(x[i] - mx) for n values (y may be x); returns their sum,
     * summed in double. Vector forms: a polynomial exp within 2 ulp. */
    /* out[cols] = row r of w in F32 (kern_mat_row; vector forms decode 8 at a time). */
    void (*mat_row)(float *out, const dsc_mat *w, int32_t r);
    double (*exp_sum)(float *y, const float *x, int32_t n, float mx);
    /* y[i] = sigmoid(x[i]) from e = exp(-|x|) (no overflow): 1 / (1 + e)
     * for x >= 0, e / (1 + e) below (y may be x). */
    void (*sigmoid)(float *y, const float *x, int32_t n);
    /* One AdamW step on n floats (see train/adamw.c for the formula); the
     * vector forms do the same IEEE operations in the same order, so the
     * result is the reference's to the bit. */
    void (*adamw)(float *p, const float *g, float *m, float *v, int64_t n, const dsc_adamw_hp *hp);
    /* gemm (only DSC_GEMM_ACC of the flags) with B = rows r0..r0+N-1,
     * columns k0..k0+K-1 of w, decoded straight into gemm's panels: the
     * same sums as mat_row then gemm, without the F32 rows in between.
     * NULL in the sets whose products of many tokens do not go through
     * gemm (the caller then decodes rows with mat_row and calls gemm). */
    void (*gemm_w)(float *c, int64_t ldc, const float *a, int64_t lda, int32_t M, const dsc_mat *w, int32_t r0, int32_t N,
                  int32_t k0, int32_t K, int flags, float *pack);
    /* MLA decode attention, the scores of one block of cache rows r0..r1
     * for n heads of one token: buf (r1 - r0 rows, stride ldb) = the rows in
     * F32 (mat_row's values), and y[j * ldy + r - r0] = x_j . row r for the
     * n vectors x_j (rows of w->cols floats). Each value does not depend on
     * n. */
    void (*attn_scores)(float *y, int64_t ldy, const float *x, int32_t n, const dsc_mat *w, int32_t r0, int32_t r1,
                        float *buf, int64_t ldb);
    /* The weighted sums of such a block: y_j[c] += (sum over p < np, in p
     * order, of a_j[p] x buf[p * ldb + c]) for c < cols and m vectors
     * (y_j = y + j ldy, a_j = a + j lda). Each value does not depend on m. */
    void (*attn_wsum)(float *y, int64_t ldy, const float *a, int64_t lda, int32_t m, const float *buf, int64_t ldb,
                      int32_t np, int32_t cols);
    /* kern_q8_round: the same values, to the bit. */
    void (*q8_round)(float *out, const float *x, int64_t n);
    /* DeepSeek-V3.2's index scores of a block of positions: out[p] = the
     * sum over h < n, in h order from 0, of (d[h ldd + p] > 0 ? w[h] x
     * d[h ldd + p] : 0) for p < np; every set gives the reference's bits. */
    void (*relu_wsum)(float *out, const float *d, int64_t ldd, const float *w, int32_t n, int32_t np);
} dsc_kernels;

/* fma_burn's multiplier and addend (0.999999, 1e-6), read once per call
 * so that no compiler can fold the loop (clang 14 did, to a constant). */
extern volatile float kern_burn_m, kern_burn_c;

enum { DSC_GEMM_AT = 1, DSC_GEMM_BN = 2, DSC_GEMM_ACC = 4 };

/* The row stride, in floats, of attn_scores' rows of cols values: an odd
 * number of 64-byte lines, so that a column of many rows spreads over all
 * the sets of the L1 cache (2304 bytes, V2/V3's 576 floats, would put a
 * column of any number of rows in 16 of the 64 sets). */
static inline int64_t kern_attn_ld(int64_t cols) {
    return ((cols + 15) & ~(int64_t)15) | 16;
}

/* Rows of C per block of the tiled gemm: about 48K floats of A (in L2). */
static inline int32_t kern_gemm_mb(int32_t K) {
    const int32_t mb = 48 * 1024 / (K > 0 ? K : 1) / 6 * 6;
    return mb < 6 ? 6 : mb;
}
/* Floats of scratch a gemm call needs: all of B in panels of 16 columns,
 * and a block of A when it is stored transposed. */
static inline size_t kern_gemm_scratch(int32_t M, int32_t N, int32_t K, int flags) {
    (void)M;
    return (size_t)K * (size_t)((N + 15) / 16 * 16) + (flags & DSC_GEMM_AT ? (size_t)kern_gemm_mb(K) * K : 0);
}

extern const dsc_kernels kern_ref;
#if defined(__x86_64__)
extern const dsc_kernels kern_avx2;
extern const dsc_kernels kern_avx512;
#endif

/* kern_softmax with the exp of the table k (under kern_ref, the same expf). */
void kern_softmax_k(const dsc_kernels *k, float *x, int32_t n);
/* h = silu(g) u = g x sigmoid(g) x u for n values with the sigmoid of the
 * table k, 256 at a time (h may be g). */
void kern_swiglu_k(const dsc_kernels *k, float *h, const float *g, const float *u, int64_t n);

/* The table named isa ("ref", "avx2", "avx512"), or the best this CPU runs
 * when isa is NULL or "". NULL if the name is unknown or the CPU lacks it. */
const dsc_kernels *kern_select(const char *isa);

/* Names of the tables this CPU can run, best last; NULL-terminated. */
const char *const *kern_available(void);

#endif
