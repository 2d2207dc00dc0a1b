/*
 * rl.h — R1-style training and evaluation on verifiable tasks (src/tasks):
 * GRPO with verifiable rewards (grpo.c) and pass@1 / majority-vote
 * evaluation (eval.c). Both sample with rollout.h on the inference engine
 * and, for GRPO, learn with the float32 trainer (src/train/train.h).
 */
#ifndef DSC_RL_H
#define DSC_RL_H

#include <stdint.h>

#include "dsc.h"
#include "tasks/tasks.h"

/* ------------------------------------------------------------------------ */
/* GRPO                                                                      */
/*                                                                           */
/* Each step draws prompts (round-robin over the chosen families), samples a */
/* group of G completions per prompt at temperature temp from the current   */
/* policy, and rewards each with task_reward (correct + format_weight x      */
/* format). Advantage A = r - mean(group), divided by std(group) + 1e-4      */
/* unless dr_grpo (Dr. GRPO). With dynamic sampling, groups whose rewards    */
/* are all equal carry no signal: they are dropped and more prompts drawn,   */
/* up to max_rounds rounds per step. The loss, over the completion tokens of */
/* the kept groups, normalised by their number (token level, as DAPO):      */
/*                                                                           */
/*   L = -1/N sum_t [ min(rho_t A, clip(rho_t, 1 - eps_low, 1 + eps_high) A) */
/*                    - beta k3_t ]                                          */
/*   rho_t = exp(logp_t - logp_old_t),                                       */
/*   k3_t  = exp(ref_t - logp_t) - (ref_t - logp_t) - 1  (ref: frozen model)  */
/*                                                                           */
/* logp_old is the policy that sampled; with inner = mu > 1 the batch is     */
/* reused for mu updates, and the clip matters. Each update clips the       */
/* gradient to global norm clip and takes AdamW (lr, warmup steps linear).  */
/* Logged per step to out_dir/log.jsonl: reward, accuracy, format,          */
/* response_length, kl, entropy, clip_frac, groups kept / sampled, loss,    */
/* grad_norm, lr, seconds. Checkpoints (published layout) to out_dir every  */
/* save_every steps and at the end.                                          */

#define RL_MAX_MIX 8

typedef struct {
    const char *init;          /* checkpoint directory (the SFT model)              */
    const char *ref;           /* frozen reference for the KL (NULL: init)          */
    const char *out_dir;
    task_family families[RL_MAX_MIX]; /* prompts cycle through these; a family   */
    int n_families;                   /* named twice gets twice the prompts       */
    int level;                 /* 0: each family's highest                          */
    int32_t steps, prompts, group, max_new, inner, warmup, max_rounds, save_every;
    float lr, weight_decay, clip, temp, eps_low, eps_high, beta, format_weight;
    int dr_grpo;               /* advantages not divided by the group's std         */
    int dynamic;               /* drop groups with equal rewards and refill         */
    uint64_t seed;
    int32_t threads;
    volatile int *interrupt;   /* non-zero: checkpoint and stop after this step     */
    void (*on_step)(void *user, const char *json_line);
    void *user;
} rl_grpo_params;

/* prompts 8, group 8, max_new 256, inner 1, warmup 0, max_rounds 4, lr 1e-5... see grpo.c */
rl_grpo_params rl_grpo_default_params(void);
dsc_status rl_grpo_run(const rl_grpo_params *p);

/* GRPO's per-token arithmetic, exposed for tests. */

/* Advantages of one group of n rewards into adv. */
void rl_group_advantages(const float *reward, int n, int dr_grpo, float *adv);

/* Loss weights for one token: returns w = d L / d CE_t x N (CE_t = -logp_t)
 * for advantage A, log-probabilities logp (current), logp_old, ref, and sets
 * *clipped when the clipped branch is taken, *k3 to the KL estimate (also
 * when beta is 0: the log reports it), and *obj to the token's objective
 * min(...) - beta k3 (L = -mean obj). */
float rl_token_weight(float A, float logp, float logp_old, float ref, float eps_low, float eps_high, float beta,
                      int *clipped, float *k3, float *obj);

/* ------------------------------------------------------------------------ */
/* Evaluation                                                                */

typedef struct {
    const char *model;         /* checkpoint directory                              */
    const char *tasks;         /* JSON lines, task_from_json                         */
    int32_t samples;           /* K completions per problem                          */
    int vote;                  /* also majority vote (cons@K)                        */
    float temp, top_p;
    int32_t max_new, batch;    /* problems sampled together                          */
    int32_t limit;             /* first n problems only (0 = all)                    */
    uint64_t seed;
    int32_t threads;
    const char *details;       /* NULL or a JSONL file: one line per sample          */
    const char *keep;          /* NULL or a JSONL file: rejection sampling, below    */
    int32_t keep_max;          /* kept samples per problem at most (0: all)          */
} rl_eval_params;

/* Rejection sampling (R1's SFT data from its RL model; distillation when the
 * model is a teacher for a smaller one): with keep, the samples that are
 * correct, well formatted and ended (EOS), each text once per problem, up to
 * keep_max of them, are written as chat examples for dsc sft:
 *   {"messages": [{"role": "user", "content": QUESTION},
 *                 {"role": "assistant", "content": "<think>\n" + COMPLETION}]} */

typedef struct {
    int64_t n;                 /* problems                                          */
    double pass_at_1;          /* mean over problems of the share of correct samples */
    double cons_at_k;          /* share of problems whose vote winner is correct     */
    double format_rate, mean_length;
    int64_t n_kept, n_kept_problems; /* with keep: examples written, problems with one */
    int64_t n_family[TASK_N_FAMILIES];
    double pass_family[TASK_N_FAMILIES], cons_family[TASK_N_FAMILIES];
} rl_eval_result;

rl_eval_params rl_eval_default_params(void);
dsc_status rl_eval_run(const rl_eval_params *p, rl_eval_result *r);

#endif
