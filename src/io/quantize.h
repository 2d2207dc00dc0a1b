/*
 * quantize.h — dsc's Q8 / Q4 block quantisers (the writers of the formats
 * kernels.h defines), exposed for dsc_quantize and its unit test.
 *
 * A block is DSC_QBLOCK = 32 consecutive values of a row with one F16 scale.
 *   Q8: q[32] int8,  w = q x scale.
 *   Q4: 16 bytes, value j in the low nibble of byte j (j < 16) or the high
 *       nibble of byte j - 16; w = (nib - 8) x scale.
 * Each function reads 32 finite floats and returns 0, or -1 (writing
 * nothing) if a value is NaN or infinite.
 */
#ifndef DSC_IO_QUANTIZE_H
#define DSC_IO_QUANTIZE_H

#include <stdint.h>

/* IEEE binary16 of x, rounded to nearest even (subnormals, overflow to inf). */
uint16_t quant_f16(float x);

/* bfloat16 of x, rounded to nearest even; NaN stays NaN. */
uint16_t quant_bf16(float x);

/* The F16 scale of least squared error among max|x| / t for t = 127 (the
 * plain choice; moved up one F16 step where a subnormal scale rounded down
 * would clip) and t from 127 (128 when the largest value is negative) down
 * to 117 in steps of 1/2, keeping only scales that clip no value by more
 * than scale / 2; q = round(x / scale) in [-128, 127]. Every value is within
 * scale / 2 of q x scale; on Gaussian blocks the RMS error is 11% below
 * max|x| / 127's (the search fits the grid to the block's 32 values). */
int quant_block_q8(const float *x, int8_t *q, uint16_t *scale);

/* The scale (F16) of least squared error over candidates: ggml's q4_0
 * (the largest-magnitude value x_m maps to -8, scale = x_m / -8), and for
 * x_m mapped to each level t in [-9, -5] and [5, 7.5] in steps of 1/2 the
 * least-squares scale of the levels that mapping assigns. Never worse than
 * q4_0 with the same F16 rounding; on Gaussian blocks its RMS error is 6%
 * below q4_0's (finer steps or further Lloyd iterations gain < 0.3%). */
int quant_block_q4(const float *x, uint8_t *q, uint16_t *scale);

#endif
