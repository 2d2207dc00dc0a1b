/*
 * train.h — the float32 trainer of DeepSeek-V2/V3 checkpoints.
 *
 * Public interface (only dsc.h is needed), meant to move into include/dsc.h.
 * A trainer copies every parameter of a checkpoint (any stored dtype) into
 * one F32 arena; the gradients, and AdamW's two moments, are three more
 * arenas of the same layout. The objective is
 *
 *   loss = mean next-token cross-entropy over the B x T targets
 *        + alpha x sequence-wise balance loss (DeepSeek-V3 eq. 17-20), summed over MoE layers
 *
 * The routing choice is not differentiated, and e_score_correction_bias is
 * not a parameter: it moves by the aux-loss-free rule after every step,
 *   bias_i += gamma x sign(mean(load) - load_i),  load_i = (token, slot) routes to i in the batch.
 * The MTP layers of V3 checkpoints are not part of the objective (not loaded).
 */
#ifndef DSC_TRAIN_H
#define DSC_TRAIN_H

#include <stdint.h>

#include "dsc.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dsc_trainer dsc_trainer;

typedef struct {
    int32_t n_batch;    /* B: sequences per batch, >= 1 (sizes the activations)        */
    int32_t n_seq;      /* T: input tokens per sequence (a batch row holds T + 1), <= 65536 */
    int32_t n_threads;  /* 0 = all online CPUs                                          */
    const char *isa;    /* kernels: NULL/"" = best for this CPU, or "ref", "avx2", "avx512" */
    float alpha;        /* balance-loss weight; 0 = off                                  */
    float gamma;        /* bias update speed; 0 = off                                    */
    float lr;           /* default learning rate; dsc_train_step takes its own (schedules) */
    float beta1, beta2, eps, weight_decay; /* AdamW (decay on tensors with ndim >= 2)  */
} dsc_train_params;

/* The golden trainer settings (shared/golden/README.md): alpha 0.01, gamma
 * 0.01, lr 1e-2, betas 0.9 / 0.95, eps 1e-8, weight decay 0.1; n_batch and
 * n_seq 0 (must be set). */
dsc_train_params dsc_train_default_params(void);

/* Loads the checkpoint in model_dir (as dsc_model_load does) and copies it
 * into the trainer's arenas; nothing stays mapped. On failure *out is NULL
 * and nothing stays allocated. */
dsc_status dsc_trainer_new(const char *model_dir, const dsc_train_params *params, dsc_trainer **out);
void dsc_trainer_free(dsc_trainer *t);

/* Forward and backward over tokens (B, T + 1), B <= n_batch, T <= n_seq:
 * inputs tokens[:, :-1], targets tokens[:, 1:]. The gradient arena receives
 * d(loss_ce + loss_aux) (overwritten, not accumulated); the expert loads are
 * kept for the next dsc_train_step. loss_ce / loss_aux may be NULL.
 * DSC_ERR_ARG for a bad size or token id (nothing changed then). */
dsc_status dsc_train_grad(dsc_trainer *t, const int32_t *tokens, int32_t B, int32_t T, float *loss_ce,
                          float *loss_aux);

/* The same forward pass without the backward (gradients untouched). */
dsc_status dsc_train_eval(dsc_trainer *t, const int32_t *tokens, int32_t B, int32_t T, float *loss_ce,
                          float *loss_aux);

/* One AdamW step with learning rate lr on the gradients of the last
 * dsc_train_grad, then the bias update (gamma) from that pass's loads.
 * DSC_ERR_ARG if no gradient has been computed since the last step. */
dsc_status dsc_train_step(dsc_trainer *t, float lr);

/* A trainable tensor: its Hugging Face name, checkpoint shape and arenas. */
typedef struct {
    const char *name;
    int ndim;            /* 1 or 2 */
    int64_t shape[2];
    int64_t numel;
    float *param;        /* borrowed, valid until dsc_trainer_free */
    float *grad;
} dsc_train_tensor;

int32_t dsc_train_n_tensors(const dsc_trainer *t);
const dsc_train_tensor *dsc_train_tensor_at(const dsc_trainer *t, int32_t i);
const dsc_train_tensor *dsc_train_find(const dsc_trainer *t, const char *name); /* NULL if absent */
int64_t dsc_train_n_params(const dsc_trainer *t);

/* The e_score_correction_bias named name (model.layers.L.mlp.gate.e_score_correction_bias),
 * n_routed_experts floats, or NULL. Borrowed; the trainer updates it. */
float *dsc_train_bias(dsc_trainer *t, const char *name);

/* Writes loss_ce F32 [1], loss_aux F32 [1] and grad.NAME F32 (checkpoint
 * shape) for every trainable tensor to path, as the golden train files. */
dsc_status dsc_train_write_grads(const dsc_trainer *t, const char *path, float loss_ce, float loss_aux);

/* Reads a batch file: safetensors with `tokens` I32 [B, T + 1] (B >= 1,
 * T >= 1; other tensors are ignored). On success *tokens is a malloc'd copy
 * the caller frees with free(); on failure it is NULL. Token ids are checked
 * against the model later, by dsc_train_grad / dsc_train_eval. */
dsc_status dsc_train_read_batch(const char *path, int32_t **tokens, int32_t *B, int32_t *T);

#ifdef __cplusplus
}
#endif
#endif
