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

#include <stddef.h>
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
    float mtp_lambda;   /* weight of the multi-token-prediction loss (V3's MTP module 0,
                         * D = 1, predicting token t + 2); 0 = off, the module not loaded */
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
/* The MTP module's mean cross-entropy (targets t + 2) of the last forward
 * pass, unweighted; NaN when mtp_lambda is 0. The objective of dsc_train_grad
 * is loss_ce + loss_aux + mtp_lambda x this. (dsc_train_backward, the
 * weighted form used by RL, leaves the MTP module out.) */
float dsc_train_loss_mtp(const dsc_trainer *t);

/* The same forward pass without the backward (gradients untouched). */
dsc_status dsc_train_eval(dsc_trainer *t, const int32_t *tokens, int32_t B, int32_t T, float *loss_ce,
                          float *loss_aux);

/* Forward pass for a weighted objective (SFT masks, policy gradients):
 * logp[b T + i] = log p(tokens[b, i + 1] | tokens[b, 0..i]) and, if entropy
 * is non-NULL, the entropy of that next-token distribution (nats). The
 * activations stay for dsc_train_backward. */
dsc_status dsc_train_forward(dsc_trainer *t, const int32_t *tokens, int32_t B, int32_t T, float *logp, float *entropy,
                             float *loss_aux);

/* Backward of loss = sum_n weights[n] x (-logp[n]) (+ alpha x balance loss)
 * for the last dsc_train_forward: weights (B T) may be zero (masked targets)
 * or negative. Like dsc_train_grad, the gradient arena is overwritten and
 * the loads are kept for dsc_train_step. */
dsc_status dsc_train_backward(dsc_trainer *t, const float *weights);

/* Global L2 norm of the gradient arena, and scaling it (clipping, accumulation). */
double dsc_train_grad_norm(const dsc_trainer *t);
void dsc_train_scale_grads(dsc_trainer *t, float f);

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
/* num_hidden_layers (the MTP module, when trained, is layer n_layers). */
int32_t dsc_train_n_layers(const dsc_trainer *t);
int32_t dsc_train_vocab_size(const dsc_trainer *t);
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


/* ------------------------------------------------------------------------ */
/* Tokenizer training (bpe_train.c)                                          */

typedef struct {
    int32_t vocab_size;    /* ids in all: 6 added tokens + 256 bytes + merges (>= 262) */
    int32_t min_frequency; /* a pair seen fewer times is not merged (default 2)       */
    int split_digits;      /* digits pre-tokenized one by one (no digit merges); default 0 */
} dsc_bpe_params;

typedef struct {
    int64_t n_bytes, n_words, n_types; /* text read; pre-tokenized words; distinct words */
    int32_t n_merges, n_vocab;
} dsc_bpe_stats;

dsc_bpe_params dsc_bpe_default_params(void);

/* Learns a byte-level BPE from UTF-8 text files with DeepSeek-V3's
 * pre-tokenizer and writes a Hugging Face tokenizer.json to tokenizer_path:
 * ids 0-5 the added tokens <｜begin▁of▁sentence｜>, <｜end▁of▁sentence｜>,
 * <｜User｜>, <｜Assistant｜>, <think>, </think> (also in model.vocab), then
 * the 256 bytes, then one id per merge, without gaps. config_path (may be
 * NULL) receives a tokenizer_config.json with R1's chat template. The
 * vocabulary can end smaller than asked when no pair is left to merge
 * (stats->n_vocab says). Files are written whole or not at all. */
dsc_status dsc_bpe_train(const char *const *files, int n_files, const dsc_bpe_params *params,
                         const char *tokenizer_path, const char *config_path, dsc_bpe_stats *stats);

/* Reads a whole text file and checks it is UTF-8; *text (NUL-terminated,
 * malloc'd) is NULL on failure. */
dsc_status dsc_text_read(const char *path, char **text, size_t *len);

/* ------------------------------------------------------------------------ */
/* The training loop (loop.c)                                                */
/*                                                                           */
/* dsc_train_run trains a checkpoint on text files and writes checkpoints in */
/* the published layout to out_dir:                                          */
/*   config.json          (num_nextn_predict_layers 0: MTP layers are not    */
/*                         trained and not written; torch_dtype float32)     */
/*   model.safetensors    every parameter in F32, e_score_correction_bias    */
/*   tokenizer.json, tokenizer_config.json   copied from params.tokenizer    */
/*   optimizer.safetensors  exp_avg.NAME, exp_avg_sq.NAME (AdamW moments)    */
/*   rollback.safetensors   the last verified-good state (param./exp_avg./   */
/*                          exp_avg_sq./bias.NAME), for loss-spike rollback  */
/*   trainer_state.json   step, data position, spike windows, events        */
/*   log.jsonl            one JSON object per step and per event             */
/* --resume reloads all of it and continues exactly: the same losses as one  */
/* uninterrupted run with the same settings.                                 */
/*                                                                           */
/* Schedule: lr rises linearly over warmup steps, then follows a cosine to   */
/* min_lr at step `steps`. Each optimizer step averages the gradients of     */
/* accum micro-batches of batch x (seq + 1) tokens, clips them to global     */
/* norm clip, takes AdamW (decoupled weight decay on matrices) and moves     */
/* e_score_correction_bias by gamma from the expert loads of all micro-     */
/* batches (DeepSeek-V3's auxiliary-loss-free balancing).                   */
/*                                                                           */
/* Stability (loss spikes; the restart-and-skip recipe of PaLM sec. 5.1): the */
/* losses and gradient norms of the last spike_window applied steps are      */
/* kept. A batch is skipped — no update, a "skipped" line in the log (a fast */
/* spike) — when its loss or gradient norm is not finite or, once 8 values   */
/* are kept, when its loss exceeds mean + spike_k std and 1.05 mean, or its  */
/* gradient norm exceeds mean + spike_k std and 2 mean while its loss is    */
/* above the mean (or the norm is above 10 mean: a large gradient on a      */
/* batch the model predicts well is fast learning, which clipping bounds,   */
/* not a spike). A batch whose loss                                          */
/* exceeds mean + spike_k/2 std and 1.02 mean is applied but marked          */
/* "loss_high". After rollback_after skipped-or-high batches in a row (a     */
/* slow spike, or divergence) the state returns to the last snapshot —       */
/* parameters, moments, biases, step and windows, taken every snapshot_every */
/* steps from a state whose next loss was judged normal — and the data goes  */
/* on after the stretch that went wrong ("rolled_back" in the log: the step  */
/* count goes back, the data does not). After max_rollbacks the run fails.   */
/*                                                                           */
/* Starting from a config.json (random weights, dsc_init_checkpoint, F32)   */
/* the initialisation is adjusted for training: every matrix is multiplied  */
/* by init_scale, the residual-branch outputs (o_proj, down_proj) also by    */
/* 1/sqrt(2 num_hidden_layers) (GPT-2), and the correction biases start at 0. */

typedef struct {
    int32_t step;          /* optimizer steps done (a skipped batch is not a step)  */
    float loss;            /* mean cross-entropy of the step's micro-batches        */
    float val_loss;        /* NaN when not evaluated at this step                   */
    float lr, grad_norm, tokens_per_s;
    const char *event;     /* NULL, "loss_high", "skipped", "rolled_back", "diverged", */
                           /* "checkpoint", "nothing_to_do" (a resumed run already  */
                           /* at its end; these two are not in log.jsonl)           */
    const char *json;      /* the line written to log.jsonl (without newline)       */
} dsc_train_report;

typedef struct {
    const char *init;              /* config.json (random start) or a checkpoint directory */
    const char *const *data;       /* UTF-8 text files, one document each                 */
    int chat;                      /* data are chat examples (JSON lines, trn_data_load_chat): */
                                   /* supervised fine-tuning, the loss on the answers only  */
    int32_t n_data;
    const char *tokenizer;         /* tokenizer.json; its vocabulary must fit the model's  */
    const char *out_dir;
    int32_t batch, seq, steps;     /* sequences per micro-batch, tokens per sequence,      */
                                   /* optimizer steps in all (the schedule's length)       */
    int32_t accum;                 /* micro-batches per step (>= 1)                         */
    int32_t warmup;                /* steps of linear warmup                               */
    float lr, min_lr;              /* peak and final learning rate                         */
    float weight_decay, clip;      /* clip <= 0: no clipping                               */
    float alpha, gamma;            /* balance-loss weight, bias update speed               */
    float mtp_lambda;              /* MTP loss weight (0 = off; the config needs            */
                                   /* num_nextn_predict_layers >= 1)                        */
    float beta1, beta2, eps;
    float val_frac;                /* sequences held out for validation (from the end)     */
    int32_t val_batches;           /* batches per evaluation, at most (0 = all)            */
    int32_t eval_every, save_every;/* steps; 0 = only at the end                           */
    int32_t threads;               /* 0 = all CPUs                                         */
    const char *isa;
    uint64_t seed;                 /* random init and data order                           */
    float init_scale;
    int resume;
    int32_t stop_at;               /* end this run (with a checkpoint) after this step; 0 = steps */
    int32_t spike_window, rollback_after, snapshot_every, max_rollbacks;
    float spike_k;
    /* Tests of the stability machinery: */
    int32_t inject_step, inject_token;  /* the batch of step inject_step (once): one token repeated */
    int32_t burst_step, burst_len;      /* lr x burst_factor for burst_len steps from burst_step (once) */
    float burst_factor;
    volatile int *interrupt;       /* non-zero: checkpoint and stop after the current step  */
    void (*on_report)(void *user, const dsc_train_report *r);
    void *user;
} dsc_train_run_params;

/* lr 1e-3, min_lr 1e-4, warmup 10, wd 0.1, clip 1, alpha 0 (off), gamma 1e-3,
 * betas 0.9 / 0.95, eps 1e-8, batch 8, seq 128, steps 100, accum 1, val_frac
 * 0.05, val_batches 8, eval_every 50, save_every 100, init_scale 1,
 * spike_window 32, spike_k 6, rollback_after 3, snapshot_every 20, max_rollbacks 5. */
dsc_train_run_params dsc_train_run_default_params(void);

dsc_status dsc_train_run(const dsc_train_run_params *params);

/* Writes t's parameters as a checkpoint to out_dir (which must exist):
 * config.json from config_src (num_nextn_predict_layers 1 with MTP, else 0; float32),
 * model.safetensors (F32, with the correction biases), and tokenizer.json
 * (+ tokenizer_config.json beside it) copied from tokenizer unless NULL. */
dsc_status dsc_train_save(const dsc_trainer *t, const char *config_src, const char *tokenizer, const char *out_dir);

/* The learning rate of step s (1-based) under the schedule of params. */
float dsc_train_lr(const dsc_train_run_params *params, int32_t s);

#ifdef __cplusplus
}
#endif
#endif
