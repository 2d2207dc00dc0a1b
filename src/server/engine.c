/*
 * engine.c — the scheduler: one thread owns the dsc_ctx and loops
 *
 *   1. admit queued requests into free slots (one sequence of the context
 *      per slot; a request with n choices takes n slots), reusing the longest
 *      prefix a free slot still holds or the prompt cache block store has;
 *   2. drop the requests whose client went away (their slots free at once);
 *   3. one dsc_eval_mixed for every generating slot (one pass over the
 *      weights for all of them), joined by the prompts that fit whole into
 *      the step (at most SRV_MIX_PROMPT tokens), then sample each slot with
 *      its own sampler and deliver the token's text to its request; with
 *      --mtp each slot's row is followed by the MTP module's draft of the
 *      token after it (dsc_mtp_draft_batch), whose row yields a second
 *      token when the draft is the token sampled (the same tokens as
 *      without drafts, in fewer passes);
 *   4. longer prompts are prefilled on their own in chunks of at most n_chunk
 *      tokens, at most n_chunk in all while other slots are generating, so
 *      running streams are not stalled by a long prompt; on an idle engine
 *      in chunks of n_prefill (each chunk decompresses the latents of every
 *      position before it again: fewer, longer chunks, less of that); a
 *      lone prompt on an idle engine takes the prefill form too (MLA
 *      decompressed, faster).
 *
 * A prompt is prefilled once in the slot of choice 0; its cache is then
 * copied (dsc_seq_copy) to the slots of the other choices. Requests see the
 * engine only through srv_engine_submit / srv_engine_cancel and the fields
 * of srv_req under req->mu.
 */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "srv.h"

typedef enum {
    SLOT_FREE,     /* holds n_held tokens of an earlier request, reusable      */
    SLOT_PREFILL,  /* choice 0 of a request, evaluating its prompt             */
    SLOT_WAIT,     /* choice i > 0, waiting for choice 0's prompt               */
    SLOT_GEN,      /* generating; `pending` is to be evaluated next            */
} slot_state;

typedef struct {
    slot_state st;
    srv_req *req;
    int choice;
    int32_t *held;     /* (n_ctx) the tokens in this sequence's cache, in order */
    int32_t n_held;    /* == dsc_seq_pos(ctx, slot)                             */
    int32_t pending;
    uint64_t used;     /* engine step of the last use, for LRU                 */
} eslot;

struct srv_engine {
    srv_engine_params p;
    int n_slot, n_ctx, n_vocab, n_tok_vocab;
    eslot *slot;
    int n_mix;            /* tokens a step carries (dsc_ctx n_mixed)      */
    float *logits;        /* [n_slot, vocab] the wanted rows of a step    */
    float *plogits;       /* [vocab] after the last token of a prompt     */
    float *prow;          /* [vocab] a row with a request's penalties     */
    float *elog;          /* [ECHO_CHUNK x vocab] echo: a prompt chunk's rows (made when first needed) */
    int32_t *pcnt;        /* [vocab] zero between uses                    */
    int32_t *bseq, *btok; /* (n_mix) a step's tokens and their slots      */
    uint8_t *bwant;       /* (n_mix) which of them need logits            */
    int *bjoin;           /* (n_slot) the prompts' slots that joined      */
    int32_t *dseq, *dnext, *dtok; /* (n_slot) --mtp: slots drafted for, their pending tokens, the drafts */
    int *tmp;             /* (n_slot) scratch                             */
    uint64_t step;
    int rr;               /* first slot to prefill, rotating              */

    pthread_t th;
    pthread_mutex_t mu;   /* the queue and `stop` */
    pthread_cond_t cv;
    srv_req *qhead, *qtail;
    int n_queued, stop, trimmed, running;
};

/* ------------------------------------------------------------------------ */
/* Delivery                                                                  */

/* Log-softmax of the raw logits for token t, and the k most likely. */
static void logprobs(const float *x, int32_t V, int32_t t, int k, srv_lp *out) {
    float mx = x[0];
    for (int32_t i = 1; i < V; i++) mx = x[i] > mx ? x[i] : mx;
    double sum = 0;
    for (int32_t i = 0; i < V; i++) sum += exp((double)x[i] - mx);
    const float lse = mx + (float)log(sum);
    out->token = t;
    out->logprob = x[t] - lse;
    out->n_top = 0;
    for (int32_t i = 0; i < V && k > 0; i++) { /* insertion into a sorted top-k */
        int j = out->n_top < k ? out->n_top++ : k;
        if (j == k && x[i] <= out->top[k - 1].logprob + lse) continue;
        if (j == k) j = k - 1;
        while (j > 0 && out->top[j - 1].logprob + lse < x[i]) out->top[j] = out->top[j - 1], j--;
        out->top[j] = (srv_top){i, x[i] - lse};
    }
}

/* Moves answer text through the stop filter into out. Text that may begin a
 * stop string stays in c->hold. Returns 1 when a stop string matched: the
 * text before it is released and the rest dropped. */
static int stop_filter(const srv_req *r, srv_choice *c, const char *s, size_t n, sbuf *out) {
    sbuf_put(&c->hold, s, n);
    if (!c->hold.n) return 0;
    size_t cut = SIZE_MAX, keep = 0;
    for (int i = 0; i < r->a.n_stop; i++) {
        const char *st = r->a.stop[i];
        size_t len = strlen(st);
        const char *m = memmem(c->hold.p, c->hold.n, st, len);
        if (m && (size_t)(m - c->hold.p) < cut) cut = (size_t)(m - c->hold.p), c->stop_hit = st;
        for (size_t k = len - 1 < c->hold.n ? len - 1 : c->hold.n; k > keep; k--)
            if (!memcmp(c->hold.p + c->hold.n - k, st, k)) {
                keep = k;
                break;
            }
    }
    if (cut != SIZE_MAX) {
        sbuf_put(out, c->hold.p, cut);
        c->hold.n = 0;
        return 1;
    }
    sbuf_put(out, c->hold.p, c->hold.n - keep);
    memmove(c->hold.p, c->hold.p + c->hold.n - keep, keep);
    c->hold.n = keep;
    return 0;
}

/* Answer text through DeepSeek-V3.2's call splitter (r->dsml: a DSML block
 * of calls gathers apart), then the stop filter. */
static int answer_text(const srv_req *r, srv_choice *c, const char *s, size_t n, sbuf *ans) {
    if (!r->dsml) return stop_filter(r, c, s, n, ans);
    char buf[512 + DSC_DSML_HOLD];
    int hit = 0;
    for (size_t off = 0; off < n && !hit; off += 512) {
        size_t k = n - off < 512 ? n - off : 512, no = 0;
        dsc_dsml_feed(&c->dsml, s + off, k, buf, &no);
        hit = stop_filter(r, c, buf, no, ans);
    }
    return hit;
}

/* Splits decoded text into reasoning and answer (reasoning requests) and
 * runs the answer through the stop filter. Returns 1 on a stop match. */
static int route_text(const srv_req *r, srv_choice *c, const char *s, size_t n, int flush, sbuf *reason, sbuf *ans) {
    char rb[600], ab[600];
    size_t nr = 0, na = 0;
    if (!r->reasoning) return answer_text(r, c, s, n, ans);
    int hit = 0;
    for (size_t off = 0; off < n && !hit; off += 512) {
        size_t k = n - off < 512 ? n - off : 512;
        dsc_think_feed(&c->split, s + off, k, rb, &nr, ab, &na);
        sbuf_put(reason, rb, nr);
        hit = answer_text(r, c, ab, na, ans);
    }
    if (flush && !hit) {
        dsc_think_flush(&c->split, rb, &nr, ab, &na);
        sbuf_put(reason, rb, nr);
        hit = answer_text(r, c, ab, na, ans);
    }
    return hit;
}

/* Releases the text held back (a partial UTF-8 character, a possible tag or
 * stop string) into reason / ans; 1 when a stop string matched in it (the
 * rest is then dropped). */
static int flush_text(const srv_req *r, srv_choice *c, sbuf *reason, sbuf *ans) {
    int stopped = 0;
    if (c->utf8.n_pending) stopped = route_text(r, c, "\xEF\xBF\xBD", 3, 0, reason, ans); /* a cut-off character */
    c->utf8.n_pending = 0;
    if (!stopped) stopped = route_text(r, c, "", 0, 1, reason, ans);
    if (!stopped && r->dsml) { /* what may have opened calls, or a block never closed: text after all */
        size_t pn;
        const char *pend = dsc_dsml_pending(&c->dsml, &pn);
        stopped = stop_filter(r, c, pend, pn, ans);
    }
    if (!stopped) sbuf_put(ans, c->hold.p, c->hold.n);
    c->hold.n = 0;
    return stopped;
}

static void engine_release(srv_engine *e, srv_req *r);
static void engine_drop(srv_engine *e, srv_req *r, const char *error);

/* Marks choice `sl->choice` finished and frees its slot (the slot keeps its
 * cache for reuse). With flush, the text still held back (a partial UTF-8
 * character, a possible tag or stop string) is released first; after a stop
 * string matched it is dropped. The last choice to finish completes the
 * request. */
static void choice_finish(srv_engine *e, int s, const char *why, int flush) {
    eslot *sl = &e->slot[s];
    srv_req *r = sl->req;
    srv_choice *c = &r->ch[sl->choice];
    sbuf *reason = &c->new_reason, *ans = &c->new_answer;
    reason->n = ans->n = 0;
    if (flush && flush_text(r, c, reason, ans)) why = "stop";
    c->hold.n = 0;
    pthread_mutex_lock(&r->mu);
    sbuf_put(&c->reason, reason->p, reason->n);
    sbuf_put(&c->content, ans->p, ans->n);
    c->finish = why;
    int last = ++r->n_finished == r->a.n;
    if (last) r->done = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    atomic_fetch_add(&e->p.m->completion_tokens, c->n_gen);
    atomic_fetch_add(&e->p.m->reasoning_tokens, c->n_reason);
    sl->st = SLOT_FREE;
    sl->req = NULL;
    sl->used = e->step;
    if (last) engine_release(e, r);
}

/* The row with the request's logit_bias and penalties, as vLLM applies
 * them, and in JSON mode (js not NULL) the tokens that cannot continue the
 * object masked: the bias added first, then the repetition penalty over the
 * tokens of the prompt and of the choice's output, held[0..n_held) (a
 * positive logit divided by it, a negative one multiplied, once per token),
 * then OpenAI's frequency and presence penalties over the output alone,
 * held[n_prompt..n_held) (a logit minus frequency x the token's count,
 * minus presence once if it occurs). */
static const float *penalized(srv_engine *e, const float *row, const srv_req *r, const int32_t *held, int32_t n_prompt,
                              int32_t n_held, const dsc_json_state *js, const dsc_tool_state *ts,
                              const dsc_schema_state *ss) {
    const srv_ask *a = &r->a;
    const int32_t *gen = held + n_prompt, n = n_held - n_prompt;
    const int freq = (a->frequency_penalty != 0 || a->presence_penalty != 0) && n > 0;
    const int rep = a->repetition_penalty != 1 && n_held > 0;
    if (!freq && !rep && !a->n_bias && !js && !ts && !ss) return row;
    memcpy(e->prow, row, sizeof(float) * (size_t)e->n_vocab);
    for (int i = 0; i < a->n_bias; i++) e->prow[a->bias_tok[i]] += a->bias[i]; /* ids checked at submission */
    if (rep) {
        const float p = a->repetition_penalty;
        for (int32_t i = 0; i < n_held; i++) {
            const int32_t t = held[i];
            if (t < 0 || t >= e->n_vocab || e->pcnt[t]) continue;
            e->pcnt[t] = 1;
            e->prow[t] = e->prow[t] > 0 ? e->prow[t] / p : e->prow[t] * p;
        }
        for (int32_t i = 0; i < n_held; i++)
            if (held[i] >= 0 && held[i] < e->n_vocab) e->pcnt[held[i]] = 0;
    }
    if (freq) {
        for (int32_t i = 0; i < n; i++)
            if (gen[i] >= 0 && gen[i] < e->n_vocab) e->pcnt[gen[i]]++;
        for (int32_t i = 0; i < n; i++) {
            const int32_t t = gen[i];
            if (t < 0 || t >= e->n_vocab || !e->pcnt[t]) continue;
            e->prow[t] -= a->frequency_penalty * (float)e->pcnt[t] + a->presence_penalty;
            e->pcnt[t] = 0;
        }
    }
    if (js) dsc_json_mask_apply(e->p.jmask, js, e->prow);
    if (ts) dsc_tool_mask_apply(r->tools, e->p.jmask, ts, e->prow);
    if (ss) dsc_schema_mask_apply(a->schema, e->p.jmask, ss, e->prow);
    return e->prow;
}

static void call_id(const srv_req *r, int k, char *id, size_t cap) {
    snprintf(id, cap, "call_%s_%d", r->id + strcspn(r->id, "-") + 1, k);
}

/* Where a call's gathered text holds its name and arguments: DeepSeek-V3's
 * "function" NAME "\n```json\n" ARGS "\n```", V3.1's NAME "\n" ARGS (the
 * "\n" put for <｜tool▁sep｜>; a name holds none). 0 when the name is not
 * all in yet; *tail: the bytes that may still close the arguments. */
static int call_parts(const srv_req *r, const srv_choice *c, size_t *name_at, size_t *name_n, size_t *args_at,
                      size_t *tail) {
    const char *p = c->call.p;
    if (!p || c->call.oom) return 0;
    if (dsc_tool_grammar_format(r->tools) == DSC_TOOL_FORMAT_V31) {
        const char *sep = memchr(p, '\n', c->call.n);
        if (!sep) return 0;
        *name_at = 0, *name_n = (size_t)(sep - p), *args_at = *name_n + 1, *tail = 0;
        return 1;
    }
    const char *fence = memmem(p, c->call.n, "\n```json\n", 9);
    if (!fence || c->call.n < 8 || strncmp(p, "function", 8)) return 0;
    *name_at = 8, *name_n = (size_t)(fence - p) - 8, *args_at = (size_t)(fence - p) + 9, *tail = 4;
    return 1;
}

/* n cut back to the whole UTF-8 characters of s. */
static size_t whole_chars(const char *s, size_t n) {
    size_t i = n, k = 0;
    while (i > 0 && k < 3 && ((unsigned char)s[i - 1] & 0xc0) == 0x80) i--, k++;
    if (i == 0) return 0;
    const unsigned char lead = (unsigned char)s[i - 1];
    const size_t len = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
    return k + 1 >= len ? n : i - 1;
}

/* The call being written, as far as it is known: once its name is in, the
 * name, then its arguments but for the bytes that may be closing them and
 * whole UTF-8 characters, for the stream to send. */
static void call_progress(srv_req *r, srv_choice *c) {
    size_t name_at, name_n, at, tail;
    if (!call_parts(r, c, &name_at, &name_n, &at, &tail)) return;
    const char *p = c->call.p;
    size_t n = c->call.n - at > tail ? c->call.n - at - tail : 0;
    n = whole_chars(p + at, n);
    if (c->live_open && n <= c->live_args.n) return;
    pthread_mutex_lock(&r->mu);
    if (!c->live_open && (c->live.name = strndup(p + name_at, name_n))) {
        call_id(r, c->n_calls, c->live.id, sizeof c->live.id);
        c->live_open = 1;
    }
    if (c->live_open) sbuf_put(&c->live_args, p + at + c->live_args.n, n - c->live_args.n);
    pthread_mutex_unlock(&r->mu);
}

/* A token of the function calls: a call's text gathered from
 * <｜tool▁call▁begin｜> on (see call_parts; the grammar held it to that),
 * and at <｜tool▁call▁end｜> the call published. */
static void call_token(srv_engine *e, srv_req *r, srv_choice *c, int32_t t) {
    const int32_t *mk = dsc_tool_markers(r->tools);
    if (t == mk[2]) { /* <｜tool▁call▁begin｜> */
        c->call.n = 0;
        return;
    }
    if (t != mk[3]) {
        char buf[512];
        size_t n = 0;
        if (t == mk[4] && dsc_tool_grammar_format(r->tools) == DSC_TOOL_FORMAT_V31) sbuf_put(&c->call, "\n", 1);
        else if (!dsc_token_is_added(e->p.tok, t) && !dsc_token_bytes(e->p.tok, t, buf, sizeof buf, &n))
            sbuf_put(&c->call, buf, n);
        call_progress(r, c);
        return;
    }
    sbuf_puts(&c->call, ""); /* NUL-terminated */
    size_t name_at, name_n, at, tail;
    if (!call_parts(r, c, &name_at, &name_n, &at, &tail) || c->call.n < at + tail) {
        srv_log("a tool call out of its format: dropped");
        pthread_mutex_lock(&r->mu);
        free(c->live.name);
        c->live.name = NULL, c->live_open = 0, c->live_args.n = 0;
        pthread_mutex_unlock(&r->mu);
        return;
    }
    const char *p = c->call.p;
    srv_call call;
    memset(&call, 0, sizeof call);
    call_id(r, c->n_calls, call.id, sizeof call.id);
    call.name = strndup(p + name_at, name_n);
    call.arguments = strndup(p + at, c->call.n - at - tail);
    pthread_mutex_lock(&r->mu);
    if (c->n_calls == c->cap_calls) {
        srv_call *g = realloc(c->calls, sizeof *g * (size_t)(c->cap_calls * 2 + 4));
        if (g) c->calls = g, c->cap_calls = c->cap_calls * 2 + 4;
    }
    if (call.name && call.arguments && c->n_calls < c->cap_calls) {
        c->calls[c->n_calls++] = call;
        call.name = call.arguments = NULL;
    }
    free(c->live.name); /* the live call is now calls[n_calls - 1] */
    c->live.name = NULL, c->live_open = 0, c->live_args.n = 0;
    pthread_mutex_unlock(&r->mu);
    c->call.n = 0; /* what comes before the next <｜tool▁call▁begin｜> ("\n") is no call's */
    free(call.name);
    free(call.arguments);
}

/* DeepSeek-V3.2's block of calls, closed: its calls published, each whole;
 * one out of the format is logged and goes to the answer as text. */
static void dsml_calls(srv_req *r, srv_choice *c) {
    dsc_tool_call *tc = NULL;
    size_t nt = 0;
    if (dsc_dsml_parse(c->dsml.block, c->dsml.n_block, &tc, &nt)) {
        srv_log("a DeepSeek-V3.2 call out of its format (%s): kept as text", dsc_last_error());
        pthread_mutex_lock(&r->mu);
        sbuf_put(&c->content, c->dsml.block, c->dsml.n_block);
        pthread_mutex_unlock(&r->mu);
        return;
    }
    pthread_mutex_lock(&r->mu);
    for (size_t k = 0; k < nt; k++) {
        if (c->n_calls == c->cap_calls) {
            srv_call *g = realloc(c->calls, sizeof *g * (size_t)(c->cap_calls * 2 + 4));
            if (!g) break;
            c->calls = g, c->cap_calls = c->cap_calls * 2 + 4;
        }
        srv_call *call = &c->calls[c->n_calls++];
        memset(call, 0, sizeof *call);
        call_id(r, c->n_calls - 1, call->id, sizeof call->id);
        call->name = (char *)tc[k].name, call->arguments = (char *)tc[k].arguments; /* taken over */
        tc[k].name = tc[k].arguments = NULL;
    }
    pthread_mutex_unlock(&r->mu);
    dsc_tool_calls_free(tc, nt);
}

/* Samples slot s from its logits row and delivers the token. */
static void deliver(srv_engine *e, int s, const float *row) {
    eslot *sl = &e->slot[s];
    srv_req *r = sl->req;
    if (!r) return; /* dropped by an earlier choice's delivery */
    srv_choice *c = &r->ch[sl->choice];
    srv_lp lp;
    /* JSON mode and the tools' grammar hold the answer, not the reasoning before it */
    const int thinking = r->reasoning && c->split.in_think;
    const dsc_json_state *js = r->a.json && !thinking ? &c->json : NULL;
    const dsc_tool_state *ts = r->tools && !thinking ? &c->tool : NULL;
    const dsc_schema_state *ss = r->a.schema && !thinking ? &c->schema : NULL;
    int32_t t;
    if (thinking && r->budget >= 0 && c->force_at < e->p.n_think_end && (c->force_at > 0 || c->n_reason >= r->budget))
        t = e->p.think_end[c->force_at++]; /* the reasoning's budget spent: "</think>", then the answer */
    else t = dsc_sampler_sample(c->smp, penalized(e, row, r, sl->held, r->n_prompt, sl->n_held, js, ts, ss));
    const int was = ts ? dsc_tool_where(ts) : DSC_TOOL_TEXT;
    if (t < 0 || (js && dsc_json_mask_accept(e->p.jmask, &c->json, t)) ||
        (ts && dsc_tool_mask_accept(r->tools, e->p.jmask, &c->tool, t)) ||
        (ss && dsc_schema_mask_accept(r->a.schema, e->p.jmask, &c->schema, t))) {
        srv_log("sampling failed: %s", t < 0 ? dsc_last_error() : "a token outside the grammar's mask");
        engine_drop(e, r, t < 0 ? dsc_last_error() : "sampling failed");
        return;
    }
    const int now = ts ? dsc_tool_where(ts) : DSC_TOOL_TEXT;
    if (r->a.logprobs) logprobs(row, e->n_vocab, t, r->a.top_logprobs, &lp);
    dsc_sampler_accept(c->smp, t);
    const int reasoning = r->reasoning && c->split.in_think;
    sbuf *reason = &c->new_reason, *ans = &c->new_answer;
    reason->n = ans->n = 0;
    int stopped = 0;
    if (now != DSC_TOOL_TEXT) { /* the calls: the text before them whole, then no more text */
        if (was == DSC_TOOL_TEXT) stopped = flush_text(r, c, reason, ans);
        if (!stopped) call_token(e, r, c, t);
    } else if (t != e->p.eos && t < e->n_tok_vocab) {
        char piece[512];
        size_t pn = 0;
        if (!dsc_utf8_stream_push(&c->utf8, e->p.tok, t, piece, sizeof piece, &pn))
            stopped = route_text(r, c, piece, pn, 0, reason, ans);
    }
    pthread_mutex_lock(&r->mu);
    if (r->t_first == 0) r->t_first = srv_now();
    sbuf_put(&c->reason, reason->p, reason->n);
    sbuf_put(&c->content, ans->p, ans->n);
    if (r->a.logprobs && c->n_lp == c->cap_lp) {
        srv_lp *g = realloc(c->lp, (c->cap_lp * 2 + 16) * sizeof *g);
        if (g) c->lp = g, c->cap_lp = c->cap_lp * 2 + 16;
    }
    if (r->a.logprobs && c->n_lp < c->cap_lp) c->lp[c->n_lp++] = lp;
    c->n_gen++;
    c->n_reason += reasoning;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (stopped) choice_finish(e, s, "stop", 0);
    else if (r->dsml && c->dsml.state == 2) { /* V3.2's calls are in */
        dsml_calls(r, c);
        choice_finish(e, s, c->n_calls ? "tool_calls" : "stop", 1);
    } else if ((js && dsc_json_complete(&c->json)) || (ss && dsc_schema_complete(&c->schema)))
        choice_finish(e, s, "stop", 1); /* the object is closed */
    else if (now == DSC_TOOL_DONE) choice_finish(e, s, "tool_calls", 0);         /* <｜tool▁calls▁end｜> */
    else if (t == e->p.eos && !r->a.ignore_eos) choice_finish(e, s, "stop", 1);
    else if (c->n_gen >= r->max_tokens || sl->n_held >= e->n_ctx) choice_finish(e, s, "length", 1);
    else sl->pending = t, sl->st = SLOT_GEN;
}

/* ------------------------------------------------------------------------ */
/* Requests                                                                  */

srv_req *srv_req_new(void) {
    srv_req *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    pthread_mutex_init(&r->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cv, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&r->refs, 1);
    atomic_init(&r->cancelled, 0);
    return r;
}

void srv_req_unref(srv_req *r) {
    if (!r || atomic_fetch_sub(&r->refs, 1) != 1) return;
    for (int i = 0; r->ch && i < r->a.n; i++) {
        srv_choice *c = &r->ch[i];
        sbuf_free(&c->reason);
        sbuf_free(&c->content);
        sbuf_free(&c->hold);
        sbuf_free(&c->new_reason);
        sbuf_free(&c->new_answer);
        free(c->lp);
        sbuf_free(&c->call);
        dsc_dsml_free(&c->dsml);
        sbuf_free(&c->live_args);
        free(c->live.name);
        for (int k = 0; k < c->n_calls; k++) free(c->calls[k].name), free(c->calls[k].arguments);
        free(c->calls);
        dsc_sampler_free(c->smp);
    }
    dsc_tool_grammar_free(r->tools);
    free(r->ch);
    free(r->prompt);
    free(r->echo_text);
    free(r->plp);
    free(r->error);
    srv_ask_free(&r->a);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
}

/* ------------------------------------------------------------------------ */
/* Slots                                                                     */

/* Frees every slot of r and completes it (error may be NULL); drops the
 * engine's reference. */
static void engine_drop(srv_engine *e, srv_req *r, const char *error) {
    for (int s = 0; s < e->n_slot; s++)
        if (e->slot[s].req == r) e->slot[s].st = SLOT_FREE, e->slot[s].req = NULL, e->slot[s].used = e->step;
    pthread_mutex_lock(&r->mu);
    if (error && !r->error) r->error = strdup(error);
    r->done = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    engine_release(e, r);
}

static void engine_release(srv_engine *e, srv_req *r) {
    (void)e;
    srv_req_unref(r);
}

static int32_t common_prefix(const int32_t *a, int32_t na, const int32_t *b, int32_t nb) {
    int32_t k = 0, n = na < nb ? na : nb;
    while (k < n && a[k] == b[k]) k++;
    return k;
}

/* The free slot least recently used. */
static int lru_free(const srv_engine *e) {
    int best = -1;
    for (int s = 0; s < e->n_slot; s++)
        if (e->slot[s].st == SLOT_FREE && (best < 0 || e->slot[s].used < e->slot[best].used)) best = s;
    return best;
}

/* Puts r into free slots: choice 0 where the longest prefix of its prompt
 * is already cached (a free slot's contents or the block store), the other
 * choices in the least recently used ones. */
static void engine_admit(srv_engine *e, srv_req *r) {
    /* the last prompt token is always evaluated, for its logits; with echo and
     * logprobs every one is, for the logprobs of the next */
    const int32_t cap = r->plp ? 0 : r->n_prompt - 1;
    int p = -1;
    int32_t keep = -1;
    for (int s = 0; s < e->n_slot; s++) {
        if (e->slot[s].st != SLOT_FREE) continue;
        int32_t k = common_prefix(e->slot[s].held, e->slot[s].n_held, r->prompt, r->n_prompt);
        if (k > keep || (k == keep && e->slot[s].used < e->slot[p].used)) p = s, keep = k;
    }
    eslot *sl = &e->slot[p];
    if (keep > cap) keep = cap;
    int32_t blk = pcache_peek(e->p.pc, r->prompt, r->n_prompt);
    int32_t got = 0;
    if ((blk < cap ? blk : cap) > keep && (got = pcache_restore(e->p.pc, p, r->prompt, r->n_prompt)) > 0) {
        memcpy(sl->held, r->prompt, sizeof(int32_t) * (size_t)got);
        sl->n_held = got;
        keep = got < cap ? got : cap;
        atomic_fetch_add(&e->p.m->block_hit_tokens, keep);
    }
    if (dsc_seq_truncate(e->p.ctx, p, keep)) keep = 0, dsc_seq_truncate(e->p.ctx, p, 0);
    sl->n_held = keep;
    sl->st = SLOT_PREFILL;
    sl->req = r;
    sl->choice = 0;
    sl->used = e->step;
    r->ch[0].slot = p;
    for (int i = 1; i < r->a.n; i++) {
        int q = lru_free(e);
        e->slot[q] = (eslot){.st = SLOT_WAIT, .req = r, .choice = i, .held = e->slot[q].held,
                             .n_held = e->slot[q].n_held, .used = e->step};
        r->ch[i].slot = q;
    }
    pthread_mutex_lock(&r->mu);
    r->n_hit = keep;
    r->t_admit = srv_now();
    pthread_mutex_unlock(&r->mu);
    atomic_fetch_add(&e->p.m->requests, 1);
    atomic_fetch_add(&e->p.m->prompt_tokens, r->n_prompt);
    atomic_fetch_add(&e->p.m->hit_tokens, keep);
}

/* echo: each choice's text and logprobs begin with the prompt's (the first
 * token's logprob null, NAN here, as nothing comes before it). */
static int echo_prompt(srv_req *r) {
    const int32_t n = r->n_prompt - r->echo_from;
    int ok = 1;
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < r->a.n; i++) {
        srv_choice *c = &r->ch[i];
        sbuf_put(&c->content, r->echo_text, r->n_echo_text);
        ok &= !c->content.oom;
        if (!r->plp || n <= 0) continue;
        if (!(c->lp = malloc(sizeof *c->lp * (size_t)(n + 16)))) {
            ok = 0;
            continue;
        }
        c->cap_lp = (size_t)n + 16;
        memcpy(c->lp, r->plp + r->echo_from, sizeof *c->lp * (size_t)n);
        c->lp[0] = (srv_lp){.token = r->prompt[r->echo_from], .logprob = NAN};
        c->n_lp = (size_t)n;
    }
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return ok ? 0 : -1;
}

/* Choice 0's prompt is in: store its blocks, copy it to the other choices'
 * slots and sample every choice's first token. */
static void prompt_done(srv_engine *e, int s, const float *lg) {
    srv_req *r = e->slot[s].req;
    if (!lg) {
        engine_drop(e, r, "no logits after the prompt");
        return;
    }
    if (r->a.echo && echo_prompt(r)) {
        engine_drop(e, r, "out of memory for the echo");
        return;
    }
    memcpy(e->plogits, lg, sizeof(float) * (size_t)e->n_vocab);
    int32_t b = r->n_prompt / SRV_BLOCK * SRV_BLOCK;
    if (b > 0 && pcache_peek(e->p.pc, r->prompt, b) < b) pcache_store(e->p.pc, s, r->prompt, b);
    for (int i = 1; i < r->a.n; i++) {
        int q = r->ch[i].slot;
        if (dsc_seq_copy(e->p.ctx, s, q, r->n_prompt)) {
            engine_drop(e, r, dsc_last_error());
            return;
        }
        memcpy(e->slot[q].held, e->slot[s].held, sizeof(int32_t) * (size_t)r->n_prompt);
        e->slot[q].n_held = r->n_prompt;
    }
    /* The last delivery may complete and free r: take the slots first. */
    const int n = r->a.n;
    for (int i = 0; i < n; i++) e->tmp[i] = r->ch[i].slot;
    for (int i = 0; i < n; i++) {
        if (r->max_tokens == 0) choice_finish(e, e->tmp[i], "length", 1); /* echo alone */
        else deliver(e, e->tmp[i], e->plogits);
    }
}

/* ------------------------------------------------------------------------ */
/* One engine step                                                           */

static void engine_reap(srv_engine *e) {
    for (int s = 0; s < e->n_slot; s++) {
        srv_req *r = e->slot[s].req;
        if (r && atomic_load(&r->cancelled)) {
            atomic_fetch_add(&e->p.m->cancelled, 1);
            engine_drop(e, r, NULL);
        }
    }
}

/* echo with logprobs: a prompt's rows ECHO_CHUNK at a time, each row's
 * logprobs of the next prompt token kept (r->plp). */
#define ECHO_CHUNK 64

static void echo_logprobs(srv_engine *e, srv_req *r, int32_t p0, int32_t m) {
    for (int32_t i = 0; i < m && p0 + i + 1 < r->n_prompt; i++)
        logprobs(e->elog + (size_t)i * e->n_vocab, e->n_vocab, r->prompt[p0 + i + 1], r->a.top_logprobs,
                 &r->plp[p0 + i + 1]);
}

/* Prefills, each in its own passes, the prompts that did not join the step. */
static void engine_prefill(srv_engine *e, int budget, int idle) {
    for (int k = 0; k < e->n_slot && budget > 0; k++) {
        int s = (e->rr + k) % e->n_slot;
        eslot *sl = &e->slot[s];
        if (sl->st != SLOT_PREFILL) continue;
        srv_req *r = sl->req;
        int32_t m = r->n_prompt - sl->n_held;
        const int32_t most = idle ? e->p.n_prefill : e->p.n_chunk;
        if (m > most) m = most;
        if (m > budget) m = budget;
        if (r->plp && m > ECHO_CHUNK) m = ECHO_CHUNK;
        if (r->plp && !e->elog && !(e->elog = malloc(sizeof(float) * ECHO_CHUNK * (size_t)e->n_vocab))) {
            engine_drop(e, r, "out of memory for the prompt's logprobs");
            continue;
        }
        if (dsc_eval_seq(e->p.ctx, s, r->prompt + sl->n_held, m, r->plp ? e->elog : NULL)) {
            srv_log("prefill failed: %s", dsc_last_error());
            sl->n_held = dsc_seq_pos(e->p.ctx, s);
            engine_drop(e, r, dsc_last_error());
            continue;
        }
        if (r->plp) echo_logprobs(e, r, sl->n_held, m);
        memcpy(sl->held + sl->n_held, r->prompt + sl->n_held, sizeof(int32_t) * (size_t)m);
        sl->n_held += m;
        budget -= m;
        atomic_fetch_add(&e->p.m->prefill_tokens, m);
        if (sl->n_held == r->n_prompt) prompt_done(e, s, dsc_ctx_logits(e->p.ctx));
    }
}

/* One step: the generating slots' tokens and the prompts that fit whole,
 * in one pass over the weights; the other prompts prefilled on their own. */
static void engine_step(srv_engine *e) {
    int n = 0, n_gen = 0, n_pre = 0, n_slots = 0, n_d = 0, n_busy = 0;
    for (int s = 0; s < e->n_slot; s++) n_busy += e->slot[s].st == SLOT_GEN;
    /* --mtp-max-batch: a draft's row reads its own experts' weights, which a
     * busy batch's step pays in full; past the bound no slot drafts. */
    const int draft = e->p.mtp && (e->p.mtp_max_batch <= 0 || n_busy <= e->p.mtp_max_batch);
    for (int s = 0; s < e->n_slot; s++) {
        eslot *sl = &e->slot[s];
        n_pre += sl->st == SLOT_PREFILL;
        if (sl->st != SLOT_GEN) continue;
        if (sl->n_held >= e->n_ctx) { /* cannot happen: deliver checks; never overrun */
            choice_finish(e, s, "length", 1);
            continue;
        }
        const srv_choice *c = &sl->req->ch[sl->choice];
        if (draft && sl->n_held + 2 <= e->n_ctx && c->n_gen + 2 <= sl->req->max_tokens)
            e->dseq[n_d] = s, e->dnext[n_d++] = sl->pending;
    }
    /* --mtp: the module drafts the token after each slot's pending one, for
     * all the slots in one pass; a slot whose draft failed goes without. */
    if (n_d && dsc_mtp_draft_batch(e->p.ctx, n_d, e->dseq, e->dnext, e->dtok)) {
        srv_log("draft failed: %s", dsc_last_error());
        n_d = 0;
    }
    for (int k = 0; k < n_d; k++) /* --mtp-p-min: a guess too doubtful to verify */
        if (e->dtok[k] < 0) atomic_fetch_add(&e->p.m->mtp_withheld, 1);
    for (int s = 0, k = 0; s < e->n_slot; s++) {
        eslot *sl = &e->slot[s];
        if (sl->st != SLOT_GEN) continue;
        e->bseq[n] = s, e->btok[n] = sl->pending, e->bwant[n++] = 1;
        n_slots++;
        if (k < n_d && e->dseq[k] == s && e->dtok[k++] >= 0) e->bseq[n] = s, e->btok[n] = e->dtok[k - 1], e->bwant[n++] = 1;
    }
    n_gen = n;
    int budget = n_gen ? e->p.n_chunk : INT_MAX, n_join = 0;
    if (n_gen + n_pre > 1) /* a lone prompt on an idle engine keeps the prefill form */
        for (int k = 0; k < e->n_slot; k++) {
            const int s = (e->rr + k) % e->n_slot;
            eslot *sl = &e->slot[s];
            if (sl->st != SLOT_PREFILL || sl->req->plp) continue; /* echo's logprobs need every row */
            const int32_t m = sl->req->n_prompt - sl->n_held;
            if (m > SRV_MIX_PROMPT || m > e->n_mix - n || m > budget) continue;
            for (int32_t i = 0; i < m; i++)
                e->bseq[n] = s, e->btok[n] = sl->req->prompt[sl->n_held + i], e->bwant[n++] = i == m - 1;
            e->bjoin[n_join++] = s;
            budget -= m;
        }
    if (n) {
        if (dsc_eval_mixed(e->p.ctx, e->bseq, e->btok, n, e->bwant, e->logits)) {
            srv_log("decode failed: %s", dsc_last_error());
            for (int i = 0; i < n; i++) {
                eslot *sl = &e->slot[e->bseq[i]];
                if (sl->req) engine_drop(e, sl->req, dsc_last_error());
            }
            return;
        }
        if (n_slots) {
            atomic_fetch_add(&e->p.m->decode_steps, 1);
            atomic_fetch_add(&e->p.m->decode_tokens, n_slots);
            atomic_store(&e->p.m->last_batch, n_slots);
            atomic_fetch_add(&e->p.m->mtp_drafted, n_gen - n_slots);
        }
        for (int i = 0; i < n_gen; i++) {
            const int s = e->bseq[i];
            eslot *sl = &e->slot[s];
            srv_req *r = sl->req;
            sl->held[sl->n_held++] = e->btok[i];
            if (r) deliver(e, s, e->logits + (size_t)i * e->n_vocab);
            if (i + 1 == n_gen || e->bseq[i + 1] != s) continue;
            /* The slot's draft: its row holds the logits after it when it is
             * the token just sampled; otherwise it leaves the cache. */
            i++;
            if (r && sl->req == r && sl->st == SLOT_GEN && sl->pending == e->btok[i]) {
                atomic_fetch_add(&e->p.m->mtp_accepted, 1);
                sl->held[sl->n_held++] = e->btok[i];
                deliver(e, s, e->logits + (size_t)i * e->n_vocab);
            } else dsc_seq_truncate(e->p.ctx, s, sl->n_held);
        }
        for (int j = 0; j < n_join; j++) {
            const int s = e->bjoin[j];
            eslot *sl = &e->slot[s];
            const int32_t m = sl->req->n_prompt - sl->n_held;
            memcpy(sl->held + sl->n_held, sl->req->prompt + sl->n_held, sizeof(int32_t) * (size_t)m);
            sl->n_held += m;
            atomic_fetch_add(&e->p.m->prefill_tokens, m);
            atomic_fetch_add(&e->p.m->joined_tokens, m);
            prompt_done(e, s, e->logits + (size_t)(n_gen + j) * e->n_vocab);
        }
    }
    engine_prefill(e, budget, n_gen == 0);
    e->rr = (e->rr + 1) % e->n_slot;
}

static int n_free(const srv_engine *e) {
    int k = 0;
    for (int s = 0; s < e->n_slot; s++) k += e->slot[s].st == SLOT_FREE;
    return k;
}

static void *engine_main(void *arg) {
    srv_engine *e = arg;
    srv_req **adm = malloc(sizeof *adm * (size_t)e->n_slot);
    for (;;) {
        int n_adm = 0;
        pthread_mutex_lock(&e->mu);
        for (;;) {
            int free_now = n_free(e);
            while (adm && e->qhead && e->qhead->a.n <= free_now) {
                srv_req *r = e->qhead;
                e->qhead = r->next;
                if (!e->qhead) e->qtail = NULL;
                r->queued = 0;
                e->n_queued--;
                free_now -= r->a.n;
                adm[n_adm++] = r;
            }
            if (e->stop || n_adm || free_now < e->n_slot) break;
            if (!e->trimmed) { /* idle: give freed memory back to the system */
                e->trimmed = 1;
#ifdef __GLIBC__
                pthread_mutex_unlock(&e->mu);
                malloc_trim(0);
                pthread_mutex_lock(&e->mu);
#endif
                continue;
            }
            pthread_cond_wait(&e->cv, &e->mu);
        }
        int stop = e->stop;
        atomic_store(&e->p.m->queue_depth, e->n_queued);
        pthread_mutex_unlock(&e->mu);
        for (int i = 0; i < n_adm; i++) engine_admit(e, adm[i]);
        if (stop) break;
        engine_reap(e);
        engine_step(e);
        atomic_store(&e->p.m->slots_busy, e->n_slot - n_free(e));
        e->step++;
    }
    for (int s = 0; s < e->n_slot; s++)
        if (e->slot[s].req) engine_drop(e, e->slot[s].req, "the server is shutting down");
    free(adm);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Interface                                                                 */

int srv_engine_start(const srv_engine_params *p, srv_engine **out) {
    *out = NULL;
    srv_engine *e = calloc(1, sizeof *e);
    if (!e) return -1;
    e->p = *p;
    e->n_slot = dsc_ctx_n_seq(p->ctx);
    e->n_ctx = dsc_ctx_n_ctx(p->ctx);
    e->n_vocab = p->n_vocab;
    e->n_tok_vocab = dsc_tokenizer_n_vocab(p->tok);
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    e->slot = calloc((size_t)e->n_slot, sizeof *e->slot);
    e->n_mix = p->n_mix > e->n_slot ? p->n_mix : e->n_slot;
    e->bseq = malloc(sizeof(int32_t) * (size_t)e->n_mix);
    e->btok = malloc(sizeof(int32_t) * (size_t)e->n_mix);
    e->bwant = malloc((size_t)e->n_mix);
    e->bjoin = malloc(sizeof(int) * (size_t)e->n_slot);
    e->tmp = malloc(sizeof(int) * (size_t)e->n_slot);
    e->logits = malloc(sizeof(float) * (size_t)e->n_vocab * (size_t)e->n_slot * (p->mtp ? 2 : 1));
    e->dseq = malloc(sizeof(int32_t) * (size_t)e->n_slot);
    e->dnext = malloc(sizeof(int32_t) * (size_t)e->n_slot);
    e->dtok = malloc(sizeof(int32_t) * (size_t)e->n_slot);
    e->plogits = malloc(sizeof(float) * (size_t)e->n_vocab);
    e->prow = malloc(sizeof(float) * (size_t)e->n_vocab);
    e->pcnt = calloc((size_t)e->n_vocab, sizeof(int32_t));
    int ok = e->slot && e->bseq && e->btok && e->bwant && e->bjoin && e->tmp && e->logits && e->plogits && e->prow &&
             e->pcnt && e->dseq && e->dnext && e->dtok;
    for (int s = 0; ok && s < e->n_slot; s++) ok = (e->slot[s].held = malloc(sizeof(int32_t) * (size_t)e->n_ctx)) != NULL;
    if (ok && pthread_create(&e->th, NULL, engine_main, e) == 0) e->running = 1;
    *out = e;
    return e->running ? 0 : -1;
}

int srv_engine_submit(srv_engine *e, srv_req *r) {
    pthread_mutex_lock(&e->mu);
    int rc = e->stop ? -2 : e->n_queued >= e->p.max_queue ? -1 : 0;
    if (!rc) {
        atomic_fetch_add(&r->refs, 1);
        r->queued = 1;
        r->next = NULL;
        if (e->qtail) e->qtail->next = r;
        else e->qhead = r;
        e->qtail = r;
        e->n_queued++;
        e->trimmed = 0;
        atomic_store(&e->p.m->queue_depth, e->n_queued);
        pthread_cond_signal(&e->cv);
    }
    pthread_mutex_unlock(&e->mu);
    return rc;
}

void srv_engine_cancel(srv_engine *e, srv_req *r) {
    pthread_mutex_lock(&e->mu);
    atomic_store(&r->cancelled, 1);
    int unqueued = 0;
    if (r->queued) {
        srv_req **pp = &e->qhead, *prev = NULL;
        while (*pp && *pp != r) prev = *pp, pp = &(*pp)->next;
        if (*pp) {
            *pp = r->next;
            if (e->qtail == r) e->qtail = prev;
            e->n_queued--;
            r->queued = 0;
            unqueued = 1;
            /* Counted before the queue depth drops, so a reader never sees
             * the queue empty with the cancellation not yet counted. */
            atomic_fetch_add(&e->p.m->cancelled, 1);
            atomic_store(&e->p.m->queue_depth, e->n_queued);
        }
    }
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    if (unqueued) {
        pthread_mutex_lock(&r->mu);
        r->done = 1;
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
        srv_req_unref(r);
    }
}

void srv_engine_load(srv_engine *e, int *busy, int *queued) {
    pthread_mutex_lock(&e->mu);
    *queued = e->n_queued;
    pthread_mutex_unlock(&e->mu);
    *busy = atomic_load(&e->p.m->slots_busy);
}

void srv_engine_stop(srv_engine *e) {
    if (!e) return;
    pthread_mutex_lock(&e->mu);
    e->stop = 1;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    if (e->running) pthread_join(e->th, NULL);
    for (srv_req *r = e->qhead, *next; r; r = next) { /* never admitted */
        next = r->next;
        pthread_mutex_lock(&r->mu);
        if (!r->error) r->error = strdup("the server is shutting down");
        r->done = 1;
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
        srv_req_unref(r);
    }
    for (int s = 0; e->slot && s < e->n_slot; s++) free(e->slot[s].held);
    free(e->slot);
    free(e->bseq);
    free(e->btok);
    free(e->tmp);
    free(e->bwant);
    free(e->bjoin);
    free(e->logits);
    free(e->dseq);
    free(e->dnext);
    free(e->dtok);
    free(e->plogits);
    free(e->prow);
    free(e->elog);
    free(e->pcnt);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    free(e);
}
