/*
 * trainer.h — internals of the trainer shared by the files of src/train and the tests.
 *
 * Notation as in src/models/model.h: D hidden, H heads, R kv_lora_rank,
 * Dn / Dr / Dv head dims, Dq = Dn + Dr, Rq q_lora_rank, E routed experts,
 * K experts per token, F intermediate, Fm moe_intermediate, S shared experts,
 * Fs = Fm x S, V vocabulary; B sequences of T tokens, N = B x T.
 */
#ifndef DSC_TRAIN_TRAINER_H
#define DSC_TRAIN_TRAINER_H

#include "io/config.h"
#include "train/ops.h"
#include "train/train.h"

typedef struct {
    float *gate;  /* (Fx, D) */
    float *up;    /* (Fx, D) */
    float *down;  /* (D, Fx) */
} trn_mlp;

/* One layer's tensors inside an arena (parameters or gradients); NULL when
 * the layer has no such tensor. */
typedef struct {
    float *attn_norm;  /* (D)              input_layernorm                */
    float *q_a;        /* (Rq, D)          q LoRA only                    */
    float *q_a_norm;   /* (Rq)                                            */
    float *q_b;        /* (H * Dq, Rq)                                    */
    float *q;          /* (H * Dq, D)      without q LoRA                 */
    float *kv_a;       /* (R + Dr, D)      kv_a_proj_with_mqa             */
    float *kv_a_norm;  /* (R)                                             */
    float *kv_b;       /* (H * (Dn + Dv), R)                              */
    float *o;          /* (D, H * Dv)                                     */
    float *ffn_norm;   /* (D)              post_attention_layernorm       */
    int is_moe;
    trn_mlp mlp;       /* dense layer: Fx = F                             */
    float *router;     /* (E, D)           mlp.gate                       */
    trn_mlp *experts;  /* [E], Fx = Fm                                    */
    trn_mlp shared;    /* Fx = Fs; NULLs without shared experts           */
} trn_layer;

typedef struct {
    float *embed;      /* (V, D)                                          */
    trn_layer *layers; /* [L]                                             */
    float *norm;       /* (D)                                             */
    float *lm_head;    /* (V, D); == embed when tie_word_embeddings       */
    /* MTP module 0 (layers[L] is its decoder layer); NULL without MTP     */
    float *eh_proj;    /* (D, 2D)                                         */
    float *enorm, *hnorm; /* (D)                                          */
    float *mtp_embed;  /* (V, D)                                          */
    float *mtp_head_norm; /* (D)                                          */
    float *mtp_head;   /* (V, D)                                          */
} trn_weights;

typedef struct {
    dsc_train_tensor pub;
    char name[128];
    size_t off;            /* floats from the start of each arena          */
    const dsc_mat *src;    /* loading only: checkpoint matrix, or          */
    const float *src_vec;  /* checkpoint vector (already F32)              */
} trn_tensor;

/* Activations one layer keeps for its backward pass. */
typedef struct {
    float *x;          /* (N, D)          residual stream entering the layer  */
    float *rstd1;      /* (N)                                                 */
    float *xn1;        /* (N, D)          input_layernorm(x)                  */
    float *qa;         /* (N, Rq)         q LoRA: q_a xn1                     */
    float *qa_rstd;    /* (N)                                                 */
    float *qan;        /* (N, Rq)         q_a_layernorm(qa)                   */
    float *q;          /* (N, H, Dq)      queries, rope part roped            */
    float *craw;       /* (N, R)          latent before kv_a_layernorm        */
    float *kv_rstd;    /* (N)                                                 */
    float *c;          /* (N, R)          latent                              */
    float *kpe;        /* (N, Dr)         shared rope key, roped              */
    float *kv;         /* (N, H, Dn + Dv) decompressed keys (nope) and values */
    float *att;        /* (B, H, T, T)    attention probabilities             */
    float *ao;         /* (N, H, Dv)      attention output                    */
    float *x2;         /* (N, D)          residual stream entering the FFN    */
    float *rstd2;      /* (N)                                                 */
    float *xn2;        /* (N, D)          post_attention_layernorm(x2)        */
    float *g, *u, *h;  /* (N, Fx)         dense MLP or shared experts         */
    float *rlogit;     /* (N, E)          router logits                       */
    float *score;      /* (N, E)          sigmoid / softmax scores            */
    int32_t *idx;      /* (N, K)          chosen experts                      */
    float *rw;         /* (N, K)          their weights                       */
    int32_t *order;    /* (N K)           assignments t K + k, by expert       */
    int32_t *eoff;     /* (E + 1)         expert e owns order[eoff[e]..eoff[e+1]) */
    float *ex;         /* (N K, D)        gathered expert inputs, in order     */
    float *eg, *eu, *eh; /* (N K, Fm)                                          */
    float *ey;         /* (N K, D)        expert outputs, unweighted           */
} trn_acts;

/* Backward scratch, shared by all layers. */
typedef struct {
    float *y;          /* (N, D)          forward: a sub-layer's output       */
    float *kva;        /* (N, R + Dr)     forward: kv_a xn1                   */
    float *dx;         /* (N, D)          gradient of the residual stream     */
    float *dxn;        /* (N, D)          gradient of a normed input          */
    float *dqa, *dqan; /* (N, Rq)                                             */
    float *dq;         /* (N, H, Dq)                                          */
    float *dkva;       /* (N, R + Dr)                                         */
    float *dcraw, *dc; /* (N, R)                                              */
    float *dkpe;       /* (N, Dr)                                             */
    float *dkpe_h;     /* (N, H, Dr)      per-head rope-key gradients         */
    float *dkv;        /* (N, H, Dn + Dv)                                     */
    float *dao;        /* (N, H, Dv)                                          */
    float *dg, *du, *dh; /* (N, max(F, Fs))                                   */
    float *drlogit, *dscore; /* (N, E)                                        */
    float *drw;        /* (N, K)                                              */
    float *dex, *dey;  /* (N K, D)                                            */
    float *deg, *deu, *deh; /* (N K, Fm)                                      */
    float *dxf;        /* (N, D)                                              */
} trn_grads_acts;

struct dsc_trainer {
    dsc_config cfg;
    dsc_train_params p;
    int32_t Bmax, Tmax;
    int tied;                  /* lm_head is the embedding                   */
    float softmax_scale;       /* Dq^-0.5 x mscale^2                         */
    float *rope_cos, *rope_sin;/* (Tmax, Dr / 2), YaRN mscale included        */

    trn_tensor *tensors;       /* [n_tensors], in arena order                */
    int32_t n_tensors;
    size_t n_floats;           /* arena size (tensors padded to 16 floats)   */
    float *params, *grads, *m, *v;
    trn_weights w, g;          /* pointers into params / grads               */
    trn_mlp *expert_ptrs;      /* [2, L, E] behind w / g's experts           */

    float *bias;               /* (L, E) e_score_correction_bias            */
    int *has_bias;             /* [L]                                        */
    int32_t *load;             /* (L, E) routes per expert, last forward    */
    int32_t *grad_load;        /* (L, E) the same, of the last dsc_train_grad (bias update) */

    float *act_mem;            /* the one allocation behind acts and ga      */
    int32_t *act_imem;
    trn_acts *acts;            /* [L]                                        */
    int32_t *inputs, *targets; /* (N)                                        */
    float *xL;                 /* (N, D)          final residual stream      */
    float *rstdf;              /* (N)                                        */
    float *xf;                 /* (N, D)          model.norm(xL)             */
    float *probs;              /* (N, V)          logits, then probabilities, then their gradient */
    float *losses;             /* (N)                                        */
    trn_grads_acts ga;

    /* MTP (p.mtp_lambda > 0): the module's decoder layer is block L, its
     * activations acts[L]; row n = b T + t reads token t + 1 and predicts t + 2. */
    int mtp;
    int n_blocks;              /* n_layers + mtp: layers with weights, activations, biases */
    int32_t *mtp_inputs, *mtp_targets; /* (N) targets past the end are 0, weight 0 */
    float *mtp_w;              /* (N)             lambda / valid rows, or 0   */
    float *mtp_e, *mtp_en, *mtp_erstd; /* (N, D), (N, D), (N) embedding, enorm */
    float *mtp_hn, *mtp_hrstd; /* (N, D), (N)     hnorm(xf)                  */
    float *mtp_cat;            /* (N, 2D)         [en; hn]                   */
    float *mtp_xL, *mtp_rstdf, *mtp_xf; /* (N, D), (N), (N, D) block output, head norm */
    float *mtp_probs;          /* (N, V)                                     */
    float *mtp_losses;         /* (N)                                        */
    float *mtp_dcat;           /* (N, 2D)                                    */
    float *mtp_dxf;            /* (N, D)          d loss / d xf through hnorm */
    float loss_mtp;

    int32_t B, T;              /* sizes of the last forward                  */
    int have_grad;             /* gradients not yet used by a step           */
    int have_fwd;              /* dsc_train_forward's activations await dsc_train_backward */
    int64_t step;              /* AdamW steps taken                          */
    train_exec ex;
    int n_threads;
};

/* AdamW on every tensor, then the aux-loss-free bias update (adamw.c). */
void trainer_adamw(dsc_trainer *t, float lr);
void trainer_update_bias(dsc_trainer *t);

#endif
