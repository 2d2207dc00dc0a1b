/*
 * ops.h — forward / backward kernel pairs of the trainer (llm.c style).
 *
 * Arguments come in the order outputs, inputs, dims. Every *_backward
 * ACCUMULATES (+=) into its gradient outputs, so one activation gradient can
 * gather contributions from several consumers; the caller zeroes them first.
 * Exceptions are said in the comment (crossentropy_backward writes).
 *
 * Shapes: N = tokens in the batch (B sequences of T, row n = b * T + t),
 * D = hidden size, I/O = in/out features of a matrix, which is stored as in
 * Hugging Face checkpoints: weight (O, I), y = W x.
 */
#ifndef DSC_TRAIN_OPS_H
#define DSC_TRAIN_OPS_H

#include <stdint.h>

#include "core/threadpool.h"
#include "kernels/kernels.h"

/* Where a kernel runs: the pool (NULL = the calling thread alone) and the
 * dispatched vector kernels (gemm, dot, axpy, matmul_rows, matvec_t). The
 * simple_* switches force the row-by-row forms (the specification) where the
 * tiled gemm forms would run. */
typedef struct {
    dsc_pool *pool;
    const dsc_kernels *k;
    int simple_matmul;    /* matmul forward and backward row by row */
    int simple_attention; /* attention query by query */
} train_exec;

/* out (N, D) = wte[tokens[n]] */
void train_embed_forward(float *out, const int32_t *tokens, const float *wte, int32_t N, int32_t D);
/* dwte (V, D) += scatter of dout (N, D) */
void train_embed_backward(float *dwte, const float *dout, const int32_t *tokens, int32_t N, int32_t D);

/* out (N, C) = inp / sqrt(mean(inp^2) + eps) * weight (C); rstd (N) keeps the
 * 1 / sqrt(...) of each row. Same arithmetic as kern_rmsnorm. */
void train_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int32_t N, int32_t C,
                           float eps, const train_exec *ex);
void train_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                            const float *rstd, int32_t N, int32_t C, const train_exec *ex);

/* out (N, O) = inp (N, I) @ weight (O, I)^T */
void train_matmul_forward(float *out, const float *inp, const float *weight, int32_t N, int32_t I, int32_t O,
                          const train_exec *ex);
/* dinp (N, I) += dout @ weight (dinp may be NULL); dweight (O, I) += dout^T @ inp.
 * With N >= 16 both products run as tiled gemm calls on the operands in
 * place; otherwise, and always in train_matmul_backward_simple (the
 * specification), row by row with matvec_t. */
void train_matmul_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                           int32_t N, int32_t I, int32_t O, const train_exec *ex);
void train_matmul_backward_simple(float *dinp, float *dweight, const float *dout, const float *inp,
                                  const float *weight, int32_t N, int32_t I, int32_t O, const train_exec *ex);

/* Interleaved RoPE in place on x: row (n, h) starts at x + (n * H + h) * stride
 * and its Dr rotary values are pairs (x0, x1), (x2, x3)...; position t = n % T.
 * cos, sin (T, Dr / 2) carry the YaRN mscale (rope_tables). */
void train_rope_forward(float *x, const float *cos_t, const float *sin_t, int32_t N, int32_t T, int32_t H,
                        int32_t stride, int32_t Dr);
/* The transposed rotation, in place on the gradient (same layout). */
void train_rope_backward(float *dx, const float *cos_t, const float *sin_t, int32_t N, int32_t T, int32_t H,
                         int32_t stride, int32_t Dr);

/* Causal MLA attention, decompressed form, each sequence on its own.
 *   q   (N, H, Dn + Dr)   per head: nope part, then roped part
 *   kv  (N, H, Dn + Dv)   per head: key nope part, then value
 *   kpe (N, Dr)           the roped key shared by all heads
 *   att (B, H, T, T)      softmax((q_nope.k_nope + q_pe.kpe) x scale), 0 above the diagonal
 *   out (N, H, Dv)        att @ v */
void train_attention_forward(float *out, float *att, const float *q, const float *kv, const float *kpe, int32_t B,
                             int32_t T, int32_t H, int32_t Dn, int32_t Dr, int32_t Dv, float scale,
                             const train_exec *ex);
/* Both run one (sequence, head) per task: with the kernels' gemm and
 * T >= 16 as whole T x T products (the causal half masked), otherwise (and
 * with ex->simple_attention, the specification) query by query with dot
 * and axpy.
 * dkpe (N, Dr) += the per-head rope-key gradients summed over heads;
 * dkpe_h (N, H, Dr) is scratch (overwritten). */
void train_attention_backward(float *dq, float *dkv, float *dkpe, float *dkpe_h, const float *dout, const float *q,
                              const float *kv, const float *kpe, const float *att, int32_t B, int32_t T, int32_t H,
                              int32_t Dn, int32_t Dr, int32_t Dv, float scale, const train_exec *ex);

/* h (n) = silu(g) * u */
void train_swiglu_forward(float *h, const float *g, const float *u, int64_t n, const train_exec *ex);
void train_swiglu_backward(float *dg, float *du, const float *dh, const float *g, const float *u, int64_t n,
                           const train_exec *ex);

/* Router scores (N, E) from logits (N, E): sigmoid, or softmax over E. */
void train_router_forward(float *score, const float *logit, int32_t N, int32_t E, int sigmoid);
void train_router_backward(float *dlogit, const float *dscore, const float *score, int32_t N, int32_t E, int sigmoid);

/* Weights w (N, K) of the chosen experts idx (N, K) (the choice itself is an
 * input, not differentiated): s = score[idx]; w = s / (sum_k s + 1e-20) x scale
 * when renorm, else s x scale (moe_route's arithmetic). */
void train_topk_forward(float *w, const float *score, const int32_t *idx, int32_t N, int32_t E, int32_t K, int renorm,
                        float scale);
void train_topk_backward(float *dscore, const float *dw, const float *score, const int32_t *idx, int32_t N, int32_t E,
                         int32_t K, int renorm, float scale);

/* DeepSeek-V3 sequence-wise balance loss (eq. 17-20), returned:
 *   alpha / B x sum_b sum_i f_bi P_bi,  f_bi = E / (K T) x #{(t, k) in sequence b : idx = i},
 *   P_bi = 1/T sum_t score_ti / sum_j score_tj.
 * Gradient flows through P only. */
float train_balance_forward(const float *score, const int32_t *idx, int32_t B, int32_t T, int32_t E, int32_t K,
                            float alpha);
/* dscore (N, E) += d(loss)/d(score) x dloss */
void train_balance_backward(float *dscore, const float *score, const int32_t *idx, int32_t B, int32_t T, int32_t E,
                            int32_t K, float alpha, float dloss);

/* Routed experts' outputs back into the tokens. Assignment a = t * K + k;
 * order (M) lists assignments sorted by expert, ey (M, D) holds expert
 * outputs in that order, w (N * K) the routing weights:
 *   y (N, D)[a / K] += w[a] x ey[i],  a = order[i] */
void train_combine_forward(float *y, const float *ey, const float *w, const int32_t *order, int32_t M, int32_t K,
                           int32_t D);
/* dey (M, D) += w[a] dy[a / K];  dw (N * K)[a] += dy[a / K] . ey[i] */
void train_combine_backward(float *dey, float *dw, const float *dy, const float *ey, const float *w,
                            const int32_t *order, int32_t M, int32_t K, int32_t D);

/* probs (N, V) = softmax(logits) (may alias logits); losses (N) = -log probs[target]. */
void train_crossentropy_forward(float *losses, float *probs, const float *logits, const int32_t *targets, int32_t N,
                                int32_t V, const train_exec *ex);
/* Writes (=) dlogits (N, V) = (probs - onehot(target)) x dloss; may alias probs. */
void train_crossentropy_backward(float *dlogits, const float *probs, const int32_t *targets, int32_t N, int32_t V,
                                 float dloss, const train_exec *ex);
/* The same with a weight per row: dlogits[n] = weights[n] (probs[n] - onehot(targets[n])),
 * the gradient of sum_n weights[n] x CE_n. */
void train_crossentropy_backward_w(float *dlogits, const float *probs, const int32_t *targets, int32_t N, int32_t V,
                                   const float *weights, const train_exec *ex);

#endif
