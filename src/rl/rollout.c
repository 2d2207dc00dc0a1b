/*
 * rollout.c — see rollout.h.
 */
#include "rl/rollout.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"

void rl_completion_free(rl_completion *c) {
    free(c->tokens);
    free(c->text);
    memset(c, 0, sizeof *c);
}

/* Ids past the tokenizer's (a model's vocab_size may be padded) cannot be
 * decoded: they get no probability. */
static void mask_tail(float *logits, int32_t V, int32_t n_tok) {
    for (int32_t v = n_tok; v < V; v++) logits[v] = -INFINITY;
}

/* log softmax(logits)[id] at temperature 1. */
static double token_logp(const float *logits, int32_t V, int32_t id) {
    float mx = logits[0];
    for (int32_t v = 1; v < V; v++) mx = logits[v] > mx ? logits[v] : mx;
    double sum = 0;
    for (int32_t v = 0; v < V; v++) sum += exp((double)logits[v] - mx);
    return (double)logits[id] - mx - log(sum);
}

static dsc_status decode_text(const dsc_tokenizer *tok, rl_completion *c, int32_t eos) {
    size_t cap = 64 + (size_t)c->n * 16, len = 0;
    c->text = malloc(cap);
    if (!c->text) return dsc_fail(DSC_ERR_NOMEM, "rollout: out of memory");
    for (int32_t i = 0; i < c->n; i++) {
        if (c->tokens[i] == eos) continue;
        size_t nb = 0;
        char buf[256];
        dsc_status s = dsc_token_bytes(tok, c->tokens[i], buf, sizeof buf, &nb);
        if (s) return s;
        if (len + nb + 1 > cap) {
            cap = 2 * (len + nb + 1);
            char *t = realloc(c->text, cap);
            if (!t) return dsc_fail(DSC_ERR_NOMEM, "rollout: out of memory");
            c->text = t;
        }
        memcpy(c->text + len, buf, nb);
        len += nb;
    }
    c->text[len] = 0;
    return DSC_OK;
}

dsc_status rl_sample(dsc_ctx *ctx, const dsc_tokenizer *tok, const rl_prompt *prompts, int n_prompts, int G,
                     const rl_sample_params *p, rl_completion *out) {
    const int S = n_prompts * G;
    if (n_prompts < 1 || G < 1 || S > dsc_ctx_n_seq(ctx))
        return dsc_fail(DSC_ERR_ARG, "rollout: %d prompts x %d samples exceed the context's %d sequences", n_prompts, G,
                        dsc_ctx_n_seq(ctx));
    if (p->max_new < 1 || p->n_vocab < 1) return dsc_fail(DSC_ERR_ARG, "rollout: max_new %d or n_vocab %d < 1", p->max_new, p->n_vocab);
    memset(out, 0, sizeof *out * (size_t)S);
    const int32_t n_vocab = p->n_vocab, n_tok = dsc_tokenizer_n_vocab(tok) < n_vocab ? dsc_tokenizer_n_vocab(tok) : n_vocab;
    dsc_sampler *sm = NULL;
    int32_t *seqs = malloc(sizeof(int32_t) * (size_t)S), *next = malloc(sizeof(int32_t) * (size_t)S);
    float *logits = malloc(sizeof(float) * (size_t)S * (size_t)n_vocab);
    int *live = calloc((size_t)S, sizeof(int));
    dsc_status s = (!seqs || !next || !logits || !live) ? dsc_fail(DSC_ERR_NOMEM, "rollout: out of memory") : DSC_OK;
    if (!s) s = dsc_sampler_new(&p->sp, n_vocab, &sm);
    for (int i = 0; !s && i < S; i++) {
        out[i].tokens = malloc(sizeof(int32_t) * (size_t)p->max_new);
        if (!out[i].tokens) s = dsc_fail(DSC_ERR_NOMEM, "rollout: out of memory");
        else s = dsc_seq_truncate(ctx, i, 0);
    }
    const int32_t n_ctx = dsc_ctx_n_ctx(ctx);
    /* Prefill each prompt once, share it with its group, draw the first tokens. */
    for (int q = 0; !s && q < n_prompts; q++) {
        if (prompts[q].n < 1 || prompts[q].n >= n_ctx) {
            s = dsc_fail(DSC_ERR_ARG, "rollout: prompt %d has %d tokens; the context holds %d", q, prompts[q].n, n_ctx);
            break;
        }
        const int first = q * G;
        if ((s = dsc_eval_seq(ctx, first, prompts[q].ids, prompts[q].n, NULL))) break;
        memcpy(logits, dsc_ctx_logits(ctx), sizeof(float) * (size_t)n_vocab);
        mask_tail(logits, n_vocab, n_tok);
        for (int g = 1; !s && g < G; g++) s = dsc_seq_copy(ctx, first, first + g, prompts[q].n);
        for (int g = 0; !s && g < G; g++) {
            rl_completion *c = &out[first + g];
            const int32_t id = dsc_sampler_sample(sm, logits);
            if (id < 0) {
                s = DSC_ERR_ARG; /* the sampler's message stands */
                break;
            }
            c->tokens[c->n++] = id;
            c->logp += token_logp(logits, n_vocab, id);
            live[first + g] = id != p->eos && c->n < p->max_new && prompts[q].n + c->n < n_ctx;
            c->finished = id == p->eos;
        }
    }
    /* Decode all live sequences together until each ends. */
    while (!s) {
        int n = 0;
        for (int i = 0; i < S; i++)
            if (live[i]) seqs[n] = i, next[n] = out[i].tokens[out[i].n - 1], n++;
        if (n == 0) break;
        if ((s = dsc_decode_batch(ctx, seqs, next, n, logits))) break;
        for (int k = 0; k < n; k++) {
            const int i = seqs[k];
            rl_completion *c = &out[i];
            float *lg = logits + (size_t)k * n_vocab;
            mask_tail(lg, n_vocab, n_tok);
            const int32_t id = dsc_sampler_sample(sm, lg);
            if (id < 0) {
                s = DSC_ERR_ARG;
                break;
            }
            c->tokens[c->n++] = id;
            c->logp += token_logp(lg, n_vocab, id);
            c->finished = id == p->eos;
            live[i] = !c->finished && c->n < p->max_new && dsc_seq_pos(ctx, i) + 1 < n_ctx;
        }
    }
    for (int i = 0; !s && i < S; i++) s = decode_text(tok, &out[i], p->eos);
    dsc_sampler_free(sm);
    free(seqs);
    free(next);
    free(logits);
    free(live);
    if (s)
        for (int i = 0; i < S; i++) rl_completion_free(&out[i]);
    return s;
}
