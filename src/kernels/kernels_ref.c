/*
 * kernels_ref.c — reference (scalar C) kernels: the specification that
 * optimised kernels are tested against.
 */
#include "kernels/kernels.h"

#include <math.h>
#include <string.h>

float kern_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float kern_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    float v;
    if (e == 0) v = ldexpf((float)m, -24);                     /* zero, subnormal */
    else if (e == 31) v = m ? NAN : INFINITY;
    else v = ldexpf((float)(m | 0x400), (int)e - 25);
    uint32_t u;
    memcpy(&u, &v, 4);
    u |= sign;
    memcpy(&v, &u, 4);
    return v;
}

/* OCP FP8 E4M3 ("e4m3fn"): bias 7, no infinities, S.1111.111 is NaN, max 448. */
/* OCP e4m3fn: bias 7, max 448, no infinities; round to nearest even and
 * saturate at +-448 (code 0x7E). */
uint8_t kern_f32_to_e4m3(float x) {
    float a = fabsf(x);
    uint8_t sign = x < 0 ? 0x80 : 0;
    uint32_t code;
    if (a < 0.015625f) { /* below 2^-6: subnormal steps of 2^-9 */
        float q = (a * 512.0f + 8388608.0f) - 8388608.0f; /* rint by the float adder */
        code = (uint32_t)q;                               /* 0..8; 8 is 2^-6 */
    } else {
        uint32_t u;
        memcpy(&u, &a, 4);
        u += 0x7FFFF + ((u >> 20) & 1); /* keep 3 mantissa bits */
        code = (u >> 20) - (120u << 3); /* rebias the exponent 127 -> 7 */
        if (code > 0x7E) code = 0x7E;
    }
    return (uint8_t)(sign | code);
}

float kern_e4m3_to_f32(uint8_t b) {
    int e = (b >> 3) & 0xf, m = b & 7;
    float v;
    if (e == 0) v = ldexpf((float)m, -9);                      /* m/8 * 2^-6 */
    else if (e == 15 && m == 7) v = NAN;
    else v = ldexpf((float)(8 + m), e - 10);                   /* (1 + m/8) * 2^(e-7) */
    return (b & 0x80) ? -v : v;
}

static float e4m3_table[256];
static int e4m3_ready;

const float *kern_e4m3_table(void) {
    if (!e4m3_ready) { /* idempotent: racing threads write the same values */
        for (int i = 0; i < 256; i++) e4m3_table[i] = kern_e4m3_to_f32((uint8_t)i);
        e4m3_ready = 1;
    }
    return e4m3_table;
}

/* Quantised integer c of row r of a Q8 / Q4 matrix, and its block scale. */
static inline int q_raw(const dsc_mat *w, int32_t r, int32_t c) {
    if (w->type == DSC_W_Q8) return ((const int8_t *)w->data)[(int64_t)r * w->cols + c];
    int j = c % DSC_QBLOCK;
    uint8_t b = ((const uint8_t *)w->data)[(int64_t)r * (w->cols / 2) + c / DSC_QBLOCK * 16 + j % 16];
    return (j < 16 ? b & 15 : b >> 4) - 8;
}

static inline float q_scale(const dsc_mat *w, int32_t r, int32_t c) {
    return kern_f16_to_f32(w->qscale[(int64_t)r * (w->cols / DSC_QBLOCK) + c / DSC_QBLOCK]);
}

static inline float q_weight(const dsc_mat *w, int32_t r, int32_t c) { return q_raw(w, r, c) * q_scale(w, r, c); }

int64_t kern_mat_bytes(const dsc_mat *w) {
    int64_t n = (int64_t)w->rows * w->cols;
    switch (w->type) {
    case DSC_W_F32: return 4 * n;
    case DSC_W_F16:
    case DSC_W_BF16: return 2 * n;
    case DSC_W_F8_E4M3:
        return n + 4 * ((w->rows + w->block_rows - 1) / w->block_rows) *
                       (int64_t)((w->cols + w->block_cols - 1) / w->block_cols);
    case DSC_W_Q8: return n + 2 * n / DSC_QBLOCK;
    case DSC_W_Q4: return n / 2 + 2 * n / DSC_QBLOCK;
    }
    return 0;
}

/* Scale of FP8 block (r / block_rows, c / block_cols). */
static inline float fp8_scale(const dsc_mat *w, int32_t r, int32_t c) {
    int32_t nbc = (w->cols + w->block_cols - 1) / w->block_cols;
    return w->scale[(int64_t)(r / w->block_rows) * nbc + c / w->block_cols];
}

void kern_mat_row(float *out, const dsc_mat *w, int32_t r) {
    int64_t off = (int64_t)r * w->cols;
    switch (w->type) {
    case DSC_W_F32: memcpy(out, (const float *)w->data + off, sizeof(float) * (size_t)w->cols); break;
    case DSC_W_BF16: {
        const uint16_t *p = (const uint16_t *)w->data + off;
        for (int32_t c = 0; c < w->cols; c++) out[c] = kern_bf16_to_f32(p[c]);
        break;
    }
    case DSC_W_F16: {
        const uint16_t *p = (const uint16_t *)w->data + off;
        for (int32_t c = 0; c < w->cols; c++) out[c] = kern_f16_to_f32(p[c]);
        break;
    }
    case DSC_W_F8_E4M3: {
        const uint8_t *p = (const uint8_t *)w->data + off;
        const float *lut = kern_e4m3_table();
        for (int32_t c = 0; c < w->cols; c++) out[c] = lut[p[c]] * fp8_scale(w, r, c);
        break;
    }
    case DSC_W_Q8:
    case DSC_W_Q4:
        for (int32_t c = 0; c < w->cols; c++) out[c] = q_weight(w, r, c);
        break;
    }
}

static uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t)((u >> 16) | 0x40); /* NaN stays NaN */
    return (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

static uint16_t f32_to_f16(float f) {
    /* Finite scales only (max|x| / 127 of finite values); round to nearest even. */
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000;
    float a = fabsf(f);
    if (a >= 65504.0f) return (uint16_t)(sign | 0x7bff);
    if (a < ldexpf(1, -14)) return (uint16_t)(sign | (uint32_t)lrintf(a * ldexpf(1, 24))); /* subnormal */
    int e;
    float m = frexpf(a, &e);                              /* a = m 2^e, m in [0.5, 1) */
    uint32_t mant = (uint32_t)lrintf((m * 2 - 1) * 1024); /* 10 bits, may round up to 1024 */
    uint32_t exp = (uint32_t)(e - 1 + 15);
    if (mant == 1024) mant = 0, exp++;
    if (exp >= 31) return (uint16_t)(sign | 0x7bff);
    return (uint16_t)(sign | exp << 10 | mant);
}

void kern_store_row(const dsc_mat *w, int32_t r, const float *x) {
    const int64_t off = (int64_t)r * w->cols;
    switch (w->type) {
    case DSC_W_F32: memcpy((float *)w->data + off, x, sizeof(float) * (size_t)w->cols); break;
    case DSC_W_BF16:
        for (int32_t c = 0; c < w->cols; c++) ((uint16_t *)w->data)[off + c] = f32_to_bf16(x[c]);
        break;
    case DSC_W_Q8:
        for (int32_t c0 = 0; c0 < w->cols; c0 += DSC_QBLOCK) {
            float mx = 0;
            for (int32_t c = c0; c < c0 + DSC_QBLOCK; c++) mx = fmaxf(mx, fabsf(x[c]));
            uint16_t h = f32_to_f16(mx / 127);
            float sc = kern_f16_to_f32(h), inv = sc > 0 ? 1 / sc : 0;
            ((uint16_t *)w->qscale)[(int64_t)r * (w->cols / DSC_QBLOCK) + c0 / DSC_QBLOCK] = h;
            for (int32_t c = c0; c < c0 + DSC_QBLOCK; c++) {
                long q = lrintf(x[c] * inv);
                ((int8_t *)w->data)[off + c] = (int8_t)(q > 127 ? 127 : q < -127 ? -127 : q);
            }
        }
        break;
    default: break; /* caches are never F16, FP8 or Q4 */
    }
}

float kern_q8_round_block(int8_t *q, const float *x) {
    float m = 0;
    int finite = 1;
    for (int c = 0; c < DSC_QBLOCK; c++) {
        finite &= isfinite(x[c]) != 0;
        m = fmaxf(m, fabsf(x[c]));
    }
    memset(q, 0, DSC_QBLOCK);
    if (!finite) return NAN;
    if (m < DSC_Q8X_MIN) return 0;
    const float id = 127.0f / m;
    for (int c = 0; c < DSC_QBLOCK; c++) q[c] = (int8_t)lrintf(x[c] * id);
    return m / 127.0f;
}

void kern_q8_round(float *out, const float *x, int64_t n) {
    int8_t q[DSC_QBLOCK];
    for (int64_t c0 = 0; c0 < n; c0 += DSC_QBLOCK) {
        const float d = kern_q8_round_block(q, x + c0);
        for (int c = 0; c < DSC_QBLOCK; c++) out[c0 + c] = (float)q[c] * d;
    }
}

float kern_mat_row_dot(const dsc_mat *w, int32_t r, const float *x) {
    int64_t off = (int64_t)r * w->cols;
    float s = 0;
    switch (w->type) {
    case DSC_W_F32: {
        const float *p = (const float *)w->data + off;
        for (int32_t c = 0; c < w->cols; c++) s += p[c] * x[c];
        break;
    }
    case DSC_W_BF16: {
        const uint16_t *p = (const uint16_t *)w->data + off;
        for (int32_t c = 0; c < w->cols; c++) s += kern_bf16_to_f32(p[c]) * x[c];
        break;
    }
    case DSC_W_F16: {
        const uint16_t *p = (const uint16_t *)w->data + off;
        for (int32_t c = 0; c < w->cols; c++) s += kern_f16_to_f32(p[c]) * x[c];
        break;
    }
    case DSC_W_F8_E4M3: { /* sum each block, then apply its scale */
        const uint8_t *p = (const uint8_t *)w->data + off;
        const float *lut = kern_e4m3_table();
        for (int32_t c0 = 0; c0 < w->cols; c0 += w->block_cols) {
            int32_t c1 = c0 + w->block_cols < w->cols ? c0 + w->block_cols : w->cols;
            float b = 0;
            for (int32_t c = c0; c < c1; c++) b += lut[p[c]] * x[c];
            s += b * fp8_scale(w, r, c0);
        }
        break;
    }
    case DSC_W_Q4: /* x rounded to 8 bits: exact integer sums of each block, times its scales */
        for (int32_t c0 = 0; c0 < w->cols; c0 += DSC_QBLOCK) {
            int8_t q[DSC_QBLOCK];
            const float d = kern_q8_round_block(q, x + c0);
            int32_t b = 0;
            for (int32_t c = 0; c < DSC_QBLOCK; c++) b += q_raw(w, r, c0 + c) * q[c];
            s += (float)b * (q_scale(w, r, c0) * d);
        }
        break;
    case DSC_W_Q8: /* sum each block, then apply its scale */
        for (int32_t c0 = 0; c0 < w->cols; c0 += DSC_QBLOCK) {
            float b = 0;
            for (int32_t c = c0; c < c0 + DSC_QBLOCK; c++) b += (float)q_raw(w, r, c) * x[c];
            s += b * q_scale(w, r, c0);
        }
        break;
    }
    return s;
}

void kern_mat_row_axpy(float *y, const dsc_mat *w, int32_t r, float a) {
    int64_t off = (int64_t)r * w->cols;
    switch (w->type) {
    case DSC_W_F32: {
        const float *p = (const float *)w->data + off;
        for (int32_t c = 0; c < w->cols; c++) y[c] += a * p[c];
        break;
    }
    case DSC_W_BF16: {
        const uint16_t *p = (const uint16_t *)w->data + off;
        for (int32_t c = 0; c < w->cols; c++) y[c] += a * kern_bf16_to_f32(p[c]);
        break;
    }
    case DSC_W_F16: {
        const uint16_t *p = (const uint16_t *)w->data + off;
        for (int32_t c = 0; c < w->cols; c++) y[c] += a * kern_f16_to_f32(p[c]);
        break;
    }
    case DSC_W_F8_E4M3: {
        const uint8_t *p = (const uint8_t *)w->data + off;
        const float *lut = kern_e4m3_table();
        for (int32_t c = 0; c < w->cols; c++) y[c] += a * lut[p[c]] * fp8_scale(w, r, c);
        break;
    }
    case DSC_W_Q8:
    case DSC_W_Q4:
        for (int32_t c = 0; c < w->cols; c++) y[c] += a * q_weight(w, r, c);
        break;
    }
}

static void ref_matmul_rows(float *y, int64_t ldy, const float *x, const dsc_mat *w, int32_t n, int32_t r0, int32_t r1) {
    for (int32_t r = r0; r < r1; r++)
        for (int32_t t = 0; t < n; t++) y[t * ldy + (r - r0)] = kern_mat_row_dot(w, r, x + (int64_t)t * w->cols);
}

void kern_matmul_rows(float *y, int64_t ldy, const float *x, const dsc_mat *w, int32_t n, int32_t r0, int32_t r1) {
    ref_matmul_rows(y, ldy, x, w, n, r0, r1);
}

void kern_matmul(float *y, const float *x, const dsc_mat *w, int32_t n) {
    ref_matmul_rows(y, w->rows, x, w, n, 0, w->rows);
}

void kern_rmsnorm(float *out, const float *x, const float *weight, int32_t n, float eps) {
    double ss = 0;
    for (int32_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float inv = (float)(1.0 / sqrt(ss / n + eps));
    for (int32_t i = 0; i < n; i++) out[i] = x[i] * inv * weight[i];
}

void kern_softmax(float *x, int32_t n) {
    float mx = x[0];
    for (int32_t i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    double sum = 0;
    for (int32_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    float inv = (float)(1.0 / sum);
    for (int32_t i = 0; i < n; i++) x[i] *= inv;
}

void kern_swiglu(float *g, const float *u, int32_t n) {
    for (int32_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

float kern_dot(const float *a, const float *b, int32_t n) {
    float s = 0;
    for (int32_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

void kern_axpy(float *y, const float *x, float a, int32_t n) {
    for (int32_t i = 0; i < n; i++) y[i] += a * x[i];
}

static void ref_matvec_t(float *y, const float *a, const dsc_mat *w, int32_t r0, int32_t r1) {
    for (int32_t r = r0; r < r1; r++) kern_mat_row_axpy(y, w, r, a[r - r0]);
}

volatile float kern_burn_m = 0.999999f, kern_burn_c = 1e-6f;

static float ref_fma_burn(int64_t iters) {
    const float m = kern_burn_m, c = kern_burn_c;
    float x[8];
    for (int k = 0; k < 8; k++) x[k] = 1.0f + k * 1e-3f;
    for (int64_t i = 0; i < iters; i++)
        for (int k = 0; k < 8; k++) x[k] = fmaf(x[k], m, c);
    return x[0] + x[1] + x[2] + x[3] + x[4] + x[5] + x[6] + x[7];
}

static void ref_matvec_tm(float *y, int64_t ldy, const float *a, int64_t lda, int32_t m, const dsc_mat *w, int32_t r0,
                          int32_t r1) {
    for (int32_t j = 0; j < m; j++) ref_matvec_t(y + j * ldy, a + j * lda, w, r0, r1);
}

static void ref_gemm(float *c, int64_t ldc, const float *a, int64_t lda, const float *b, int64_t ldb, int32_t M,
                     int32_t N, int32_t K, int flags, float *pack) {
    (void)pack;
    for (int32_t m = 0; m < M; m++)
        for (int32_t n = 0; n < N; n++) {
            float s = 0;
            for (int32_t k = 0; k < K; k++) {
                const float x = flags & DSC_GEMM_AT ? a[k * lda + m] : a[m * lda + k];
                const float y = flags & DSC_GEMM_BN ? b[k * ldb + n] : b[n * ldb + k];
                s += x * y;
            }
            c[m * ldc + n] = flags & DSC_GEMM_ACC ? c[m * ldc + n] + s : s;
        }
}

static double ref_exp_sum(float *y, const float *x, int32_t n, float mx) {
    double sum = 0;
    for (int32_t i = 0; i < n; i++) {
        const float e = expf(x[i] - mx);
        y[i] = e;
        sum += e;
    }
    return sum;
}

static void ref_sigmoid(float *y, const float *x, int32_t n) {
    for (int32_t i = 0; i < n; i++) {
        const float e = expf(-fabsf(x[i]));
        y[i] = x[i] >= 0 ? 1.0f / (1.0f + e) : e / (1.0f + e);
    }
}

static void ref_adamw(float *p, const float *g, float *m, float *v, int64_t n, const dsc_adamw_hp *h) {
    for (int64_t k = 0; k < n; k++) {
        m[k] = h->b1 * m[k] + (1.0f - h->b1) * g[k];
        v[k] = h->b2 * v[k] + (1.0f - h->b2) * g[k] * g[k];
        const float mhat = m[k] / h->bc1, vhat = v[k] / h->bc2;
        p[k] -= h->lr * (mhat / (sqrtf(vhat) + h->eps) + h->wd * p[k]);
    }
}

static void ref_attn_scores(float *y, int64_t ldy, const float *x, int32_t n, const dsc_mat *w, int32_t r0,
                            int32_t r1, float *buf, int64_t ldb) {
    const int32_t C = w->cols;
    for (int32_t r = r0; r < r1; r++) {
        float *row = buf + (r - r0) * ldb;
        kern_mat_row(row, w, r);
        for (int32_t j = 0; j < n; j++) y[j * ldy + (r - r0)] = kern_dot(x + (int64_t)j * C, row, C);
    }
}

static void ref_attn_wsum(float *y, int64_t ldy, const float *a, int64_t lda, int32_t m, const float *buf, int64_t ldb,
                          int32_t np, int32_t cols) {
    for (int32_t j = 0; j < m; j++)
        for (int32_t c = 0; c < cols; c++) {
            float s = 0;
            for (int32_t p = 0; p < np; p++) s += a[j * lda + p] * buf[p * ldb + c];
            y[j * ldy + c] += s;
        }
}

static void ref_relu_wsum(float *out, const float *d, int64_t ldd, const float *w, int32_t n, int32_t np) {
    for (int32_t p = 0; p < np; p++) {
        float s = 0;
        for (int32_t h = 0; h < n; h++) {
            const float v = d[h * ldd + p];
            s += v > 0 ? w[h] * v : 0;
        }
        out[p] = s;
    }
}

const dsc_kernels kern_ref = {"ref", ref_matmul_rows, ref_matvec_t, ref_matvec_tm, kern_dot, kern_axpy, ref_fma_burn, 1,
                              ref_gemm, kern_mat_row, ref_exp_sum, ref_sigmoid, ref_adamw, NULL, ref_attn_scores,
                              ref_attn_wsum, kern_q8_round, ref_relu_wsum};
