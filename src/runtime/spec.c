/*
 * spec.c — speculative decoding with DeepSeek-V3's multi-token-prediction
 * module as the draft model.
 *
 * The module's row at position p takes the main model's output there and
 * the token at p + 1, and guesses the token at p + 2. So once the token
 * after the sequence's last one (next) is sampled, the module guesses the
 * one after it (draft), and one decode-form pass of the main model
 * evaluates next and draft together. The token after next is sampled from
 * next's row; if it is the draft, draft's row is already the main model's
 * logits for the token after that, and the pass yields two tokens.
 * Otherwise draft's row is dropped and the pass yielded one. Each token is
 * sampled from the same logits, in the same order, as when decoding one
 * token at a time (a decode-form row does not depend on the other rows of
 * its pass), so the output does not change; only the number of passes.
 *
 * The module's own latent cache lags the main model's: its rows of
 * positions < mtp_pos are current, and dsc_mtp_draft brings it up to the
 * last position from the outputs the main model left in ctx->hid.
 */
#include <math.h>
#include <string.h>

#include "core/status.h"
#include "models/model.h"

static dsc_status check_mtp(const dsc_ctx *ctx, int32_t seq, const char *fn) {
    if (!ctx) return dsc_fail(DSC_ERR_ARG, "%s: no context (NULL)", fn);
    if (!ctx->hid) return dsc_fail(DSC_ERR_ARG, "%s: the context was made without mtp", fn);
    if (seq < 0 || seq >= ctx->n_seq)
        return dsc_fail(DSC_ERR_ARG, "%s: sequence %d out of range (the context has %d)", fn, seq, ctx->n_seq);
    return DSC_OK;
}

/* The module's rows [p, end) of seq, alone, in chunks of a batch (prefill
 * form where a chunk is too long for the decode form), without the head. */
static void catch_up(dsc_ctx *ctx, int32_t seq, int32_t p, int32_t end) {
    const int32_t *htok = ctx->htok + (int64_t)seq * ctx->n_ctx;
    while (p < end) {
        const int32_t m = end - p < ctx->n_batch ? end - p : ctx->n_batch;
        for (int32_t t = 0; t < m; t++)
            ctx->s.tpos[t] = p + t, ctx->s.tseq[t] = seq, ctx->s.mnext[t] = htok[p + t + 1];
        deepseek_mtp_forward(ctx, ctx->s.mnext, m, m <= ctx->n_dec, NULL, NULL);
        p += m;
    }
}

/* The module's argmax, or -1 where its softmax gives it less than
 * mtp_p_min: 1 / sum_v exp(l_v - l_max) < p_min. */
static int32_t guess(dsc_ctx *ctx, const float *l, int32_t V) {
    const int32_t a = dsc_argmax(l, V);
    if (ctx->mtp_p_min <= 0 || a < 0) return a;
    double z = 0;
    for (int32_t v = 0; v < V; v++) z += expf(l[v] - l[a]);
    if (1 / z >= ctx->mtp_p_min) return a;
    ctx->n_withheld++;
    return -1;
}

static dsc_status draft_batch(dsc_ctx *ctx, int32_t n, const int32_t *seqs, const int32_t *next, int32_t *draft,
                              const char *fn) {
    dsc_status st = check_mtp(ctx, 0, fn);
    if (st) return st;
    if (!seqs || !next || !draft) return dsc_fail(DSC_ERR_ARG, "%s: NULL argument", fn);
    if (n < 1 || n > ctx->n_seq)
        return dsc_fail(DSC_ERR_ARG, "%s: %d sequences (the context has %d)", fn, n, ctx->n_seq);
    const dsc_config *c = &ctx->model->cfg;
    const int32_t V = c->vocab_size;
    int64_t rows = 0;
    for (int32_t i = 0; i < n; i++) {
        draft[i] = -1;
        if ((st = check_mtp(ctx, seqs[i], fn))) return st;
        for (int32_t j = 0; j < i; j++)
            if (seqs[j] == seqs[i]) return dsc_fail(DSC_ERR_ARG, "%s: sequence %d appears twice", fn, seqs[i]);
        const int32_t end = ctx->seq_pos[seqs[i]];
        if (end < 1) return dsc_fail(DSC_ERR_ARG, "%s: sequence %d holds no token yet", fn, seqs[i]);
        if (next[i] < 0 || next[i] >= V)
            return dsc_fail(DSC_ERR_ARG, "%s: token id %d is out of range (vocab_size = %d)", fn, next[i], V);
        /* The row of the last position is made again: it took the previous next. */
        rows += end - (ctx->mtp_pos[seqs[i]] < end ? ctx->mtp_pos[seqs[i]] : end - 1);
    }
    /* Rows that do not fit one decode batch: each sequence's, alone, up to its last. */
    for (int32_t i = 0; i < n && rows > ctx->n_dec; i++) {
        const int32_t end = ctx->seq_pos[seqs[i]];
        if (ctx->mtp_pos[seqs[i]] < end - 1) catch_up(ctx, seqs[i], ctx->mtp_pos[seqs[i]], end - 1);
        if (ctx->mtp_pos[seqs[i]] < end - 1) ctx->mtp_pos[seqs[i]] = end - 1;
    }
    /* One pass: every sequence's remaining rows, its last one through the head. */
    int32_t t = 0;
    for (int32_t i = 0; i < n; i++) {
        const int32_t seq = seqs[i], end = ctx->seq_pos[seq];
        const int32_t *htok = ctx->htok + (int64_t)seq * ctx->n_ctx;
        for (int32_t p = ctx->mtp_pos[seq] < end ? ctx->mtp_pos[seq] : end - 1; p < end; p++, t++) {
            ctx->s.tpos[t] = p, ctx->s.tseq[t] = seq;
            ctx->s.mnext[t] = p + 1 < end ? htok[p + 1] : next[i];
            ctx->s.mwant[t] = p == end - 1;
        }
    }
    deepseek_mtp_forward(ctx, ctx->s.mnext, t, 1, ctx->s.mwant, ctx->mtp_logits);
    for (int32_t i = 0; i < n; i++) {
        ctx->mtp_pos[seqs[i]] = ctx->seq_pos[seqs[i]];
        draft[i] = guess(ctx, ctx->mtp_logits + (int64_t)i * V, V);
    }
    return DSC_OK;
}

dsc_status dsc_mtp_draft(dsc_ctx *ctx, int32_t seq, int32_t next, int32_t *draft) {
    if (!draft) return dsc_fail(DSC_ERR_ARG, "dsc_mtp_draft: NULL draft");
    return draft_batch(ctx, 1, &seq, &next, draft, "dsc_mtp_draft");
}

dsc_status dsc_mtp_draft_batch(dsc_ctx *ctx, int32_t n, const int32_t *seqs, const int32_t *next, int32_t *draft) {
    return draft_batch(ctx, n, seqs, next, draft, "dsc_mtp_draft_batch");
}

dsc_status dsc_spec_verify(dsc_ctx *ctx, int32_t seq, dsc_sampler *smp, int32_t next, int32_t draft, int32_t out[2],
                           int32_t *n_out) {
    dsc_status st = check_mtp(ctx, seq, "dsc_spec_verify");
    if (st) return st;
    if (!smp || !out || !n_out) return dsc_fail(DSC_ERR_ARG, "dsc_spec_verify: NULL argument");
    *n_out = 0;
    const int32_t V = ctx->model->cfg.vocab_size;
    if (draft >= V) return dsc_fail(DSC_ERR_ARG, "dsc_spec_verify: draft token %d is out of range (vocab_size = %d)", draft, V);
    const int32_t pos = ctx->seq_pos[seq];
    if (pos >= ctx->n_ctx) return dsc_fail(DSC_ERR_CONTEXT, "sequence %d is full (%d tokens)", seq, ctx->n_ctx);
    const int two = draft >= 0 && pos + 2 <= ctx->n_ctx;
    const int32_t seqs[2] = {seq, seq}, toks[2] = {next, draft};
    if ((st = dsc_eval_mixed(ctx, seqs, toks, two ? 2 : 1, NULL, ctx->spec_logits))) return st;
    const float *first = ctx->spec_logits, *second = ctx->spec_logits + V;
    const int32_t t0 = dsc_sampler_sample(smp, first);
    if (t0 < 0) { /* not finite: the sequence holds next, as after dsc_eval */
        if (two) ctx->seq_pos[seq]--;
        return DSC_ERR_ARG; /* with the sampler's message */
    }
    dsc_sampler_accept(smp, t0);
    out[0] = t0, *n_out = 1;
    if (two) {
        ctx->n_drafted++;
        int32_t t1 = t0 == draft ? dsc_sampler_sample(smp, second) : -1;
        if (t1 >= 0) {
            ctx->n_accepted++;
            dsc_sampler_accept(smp, t1);
            out[1] = t1, *n_out = 2;
            memcpy(ctx->logits, second, sizeof(float) * (size_t)V);
            return DSC_OK;
        }
        dsc_seq_truncate(ctx, seq, pos + 1); /* the draft's row goes */
    }
    memcpy(ctx->logits, first, sizeof(float) * (size_t)V);
    ctx->has_logits = 1;
    return DSC_OK;
}

dsc_status dsc_spec_step(dsc_ctx *ctx, int32_t seq, dsc_sampler *smp, int32_t next, int32_t max_out, int32_t out[2],
                         int32_t *n_out) {
    int32_t draft = -1;
    dsc_status st = check_mtp(ctx, seq, "dsc_spec_step");
    if (st) return st;
    if (max_out < 1) return dsc_fail(DSC_ERR_ARG, "dsc_spec_step: max_out %d must be 1 or more", max_out);
    if (max_out > 1 && ctx->seq_pos[seq] + 2 <= ctx->n_ctx && (st = dsc_mtp_draft(ctx, seq, next, &draft))) return st;
    return dsc_spec_verify(ctx, seq, smp, next, draft, out, n_out);
}

void dsc_spec_stats(const dsc_ctx *ctx, int64_t *drafted, int64_t *accepted) {
    if (drafted) *drafted = ctx ? ctx->n_drafted : 0;
    if (accepted) *accepted = ctx ? ctx->n_accepted : 0;
}

int64_t dsc_spec_withheld(const dsc_ctx *ctx) { return ctx ? ctx->n_withheld : 0; }
