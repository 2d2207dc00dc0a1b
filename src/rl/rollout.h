/*
 * rollout.h — batched sampling of several completions per prompt, for GRPO
 * groups, evaluation with majority voting and `dsc run --samples`.
 *
 * Each prompt is prefilled once into one sequence of the context and copied
 * to the other G - 1 sequences of its group (dsc_seq_copy: the latent cache
 * of the prompt is shared work); then every unfinished sequence advances by
 * one token per dsc_decode_batch, one pass over the weights for all of them.
 */
#ifndef DSC_RL_ROLLOUT_H
#define DSC_RL_ROLLOUT_H

#include <stdint.h>

#include "dsc.h"

typedef struct {
    const int32_t *ids;   /* prompt token ids */
    int32_t n;
} rl_prompt;

typedef struct {
    int32_t *tokens;      /* generated ids (the EOS included when finished); malloc'd */
    int32_t n;
    int finished;         /* ended with EOS (not cut by max_new or the context)      */
    double logp;          /* summed log-probability of the tokens under the model    */
                          /* (temperature 1: the model's own distribution)           */
    char *text;           /* the tokens decoded (EOS left out), NUL-terminated        */
} rl_completion;

typedef struct {
    int32_t max_new;      /* tokens per completion at most                           */
    int32_t eos;          /* stop token                                              */
    int32_t n_vocab;      /* the model's vocab_size (logits per token)               */
    dsc_sampler_params sp;
} rl_sample_params;

/* Samples G completions for each of n_prompts prompts into out[p G + g].
 * The context needs n_seq >= n_prompts x G and n_ctx >= the longest prompt
 * + max_new (completions are cut at the context's end). Its sequences are
 * emptied first. The sampler (seeded by sp.seed) is consumed in a fixed
 * order, so the same seed gives the same completions. */
dsc_status rl_sample(dsc_ctx *ctx, const dsc_tokenizer *tok, const rl_prompt *prompts, int n_prompts, int G,
                     const rl_sample_params *p, rl_completion *out);

void rl_completion_free(rl_completion *c);

#endif
