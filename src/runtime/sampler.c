/*
 * sampler.c — next-token sampling: repeat penalty, temperature, top-k,
 * min-p, top-p, then a draw from a seeded generator (xoshiro256**-style
 * state seeded by splitmix64), so the same seed gives the same output.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"

struct dsc_sampler {
    dsc_sampler_params p;
    int32_t n_vocab;
    uint64_t rng[4];
    float *work;      /* (n_vocab) penalised, scaled logits           */
    int32_t *order;   /* (n_vocab) candidate ids, most likely first    */
    int32_t *recent;  /* (repeat_last_n) ring of accepted tokens       */
    int32_t n_recent, head;
};

int32_t dsc_argmax(const float *x, int32_t n) {
    /* The best value kept in a register: comparing with x[best] made each
     * step wait for a load whose address the previous step chose (0.42 ms
     * for V2's 102400 logits, 2% of a Q8 decode step). */
    if (!x || n < 1) return -1;
    int32_t best = 0;
    float v = x[0];
    for (int32_t i = 1; i < n; i++)
        if (x[i] > v) v = x[i], best = i;
    return best;
}

/* The repeat penalty's window at most (a ring of this many ids). */
#define SAMPLER_MAX_LAST_N (1 << 24)

dsc_sampler_params dsc_sampler_default_params(void) {
    return (dsc_sampler_params){.temp = 0.6f, .top_p = 0.95f, .top_k = 0, .min_p = 0.0f, .repeat_penalty = 1.0f,
                                .repeat_last_n = 64, .seed = 0};
}

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(uint64_t *s) {
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

void dsc_sampler_reset(dsc_sampler *s) {
    if (!s) return;
    uint64_t x = s->p.seed;
    for (int i = 0; i < 4; i++) s->rng[i] = splitmix64(&x);
    s->n_recent = s->head = 0;
}

dsc_status dsc_sampler_new(const dsc_sampler_params *params, int32_t n_vocab, dsc_sampler **out) {
    *out = NULL;
    dsc_sampler_params p = params ? *params : dsc_sampler_default_params();
    if (n_vocab < 1) return dsc_fail(DSC_ERR_ARG, "sampler: vocabulary size %d", n_vocab);
    if (!(p.temp >= 0 && p.temp < INFINITY) || !(p.top_p > 0 && p.top_p <= 1) || !(p.min_p >= 0 && p.min_p <= 1) ||
        p.top_k < 0 || !(p.repeat_penalty > 0 && p.repeat_penalty < INFINITY) || p.repeat_last_n < 0 ||
        p.repeat_last_n > SAMPLER_MAX_LAST_N)
        return dsc_fail(DSC_ERR_ARG, "sampler: finite temp >= 0, 0 < top_p <= 1, 0 <= min_p <= 1, top_k >= 0, finite "
                                     "repeat_penalty > 0 and 0 <= repeat_last_n <= %d are required",
                        SAMPLER_MAX_LAST_N);
    dsc_sampler *s = calloc(1, sizeof *s);
    if (!s) return dsc_fail(DSC_ERR_NOMEM, "sampler: out of memory");
    s->p = p;
    s->n_vocab = n_vocab;
    s->work = malloc(sizeof(float) * (size_t)n_vocab);
    s->order = malloc(sizeof(int32_t) * (size_t)n_vocab);
    s->recent = malloc(sizeof(int32_t) * (size_t)(p.repeat_last_n + 1));
    if (!s->work || !s->order || !s->recent) {
        dsc_sampler_free(s);
        return dsc_fail(DSC_ERR_NOMEM, "sampler: out of memory");
    }
    dsc_sampler_reset(s);
    *out = s;
    return DSC_OK;
}

void dsc_sampler_free(dsc_sampler *s) {
    if (!s) return;
    free(s->work);
    free(s->order);
    free(s->recent);
    free(s);
}

void dsc_sampler_accept(dsc_sampler *s, int32_t token) {
    if (!s || s->p.repeat_last_n == 0) return;
    s->recent[s->head] = token;
    s->head = (s->head + 1) % s->p.repeat_last_n;
    if (s->n_recent < s->p.repeat_last_n) s->n_recent++;
}

/* Whether id a goes before id b: the larger logit first, then the smaller
 * id (a total order, so any sort gives the same sequence). */
static int before(const float *w, int32_t a, int32_t b) { return w[a] > w[b] || (w[a] == w[b] && a < b); }

static void sift_down(int32_t *o, const float *w, size_t i, size_t n) {
    for (size_t c; (c = 2 * i + 1) < n; i = c) {
        if (c + 1 < n && before(w, o[c], o[c + 1])) c++; /* the one that goes last: a heap of the order's end */
        if (!before(w, o[i], o[c])) return;
        const int32_t t = o[i];
        o[i] = o[c], o[c] = t;
    }
}

/* o[0..n) by logit, most likely first, in place (heapsort: sampling does
 * not allocate, and glibc's qsort_r does above 1 KiB). */
static void sort_by_logit(int32_t *o, size_t n, const float *w) {
    for (size_t i = n / 2; i-- > 0;) sift_down(o, w, i, n);
    for (size_t end = n; end > 1; end--) {
        const int32_t t = o[0];
        o[0] = o[end - 1], o[end - 1] = t;
        sift_down(o, w, 0, end - 1);
    }
}

int32_t dsc_sampler_sample(dsc_sampler *s, const float *logits) {
    if (!s || !logits) {
        dsc_fail(DSC_ERR_ARG, "dsc_sampler_sample: NULL %s", s ? "logits" : "sampler");
        return -1;
    }
    const int32_t V = s->n_vocab;
    float *w = s->work;
    memcpy(w, logits, sizeof(float) * (size_t)V);
    if (s->p.repeat_penalty != 1.0f)
        for (int32_t i = 0; i < s->n_recent; i++) {
            int32_t t = s->recent[i];
            if (t >= 0 && t < V) w[t] = w[t] > 0 ? w[t] / s->p.repeat_penalty : w[t] * s->p.repeat_penalty;
        }
    for (int32_t i = 0; i < V; i++)
        if (!(w[i] < INFINITY)) { /* NaN or +Inf: no distribution to sample */
            dsc_fail(DSC_ERR_ARG, "sampler: the logit of token %d is %s: the model's output is not finite", i,
                     isnan(w[i]) ? "NaN" : "+Inf");
            return -1;
        }
    const int32_t best = dsc_argmax(w, V);
    if (w[best] == -INFINITY) {
        dsc_fail(DSC_ERR_ARG, "sampler: every logit is -Inf");
        return -1;
    }
    if (s->p.temp == 0 || !(1.0f / s->p.temp < INFINITY)) return best;

    /* Candidates: all tokens within top_k, sorted by logit. Tokens whose
     * probability is below exp(-30) of the best never matter: drop them
     * before sorting to keep this O(V) in practice. */
    int32_t n = 0;
    const float floor_logit = w[best] - 30.0f * s->p.temp;
    for (int32_t i = 0; i < V; i++)
        if (w[i] >= floor_logit) s->order[n++] = i;
    sort_by_logit(s->order, (size_t)n, w);
    if (s->p.top_k > 0 && n > s->p.top_k) n = s->p.top_k;

    /* Probabilities at temperature, then min-p and top-p cuts. */
    const float inv_t = 1.0f / s->p.temp, top = w[s->order[0]];
    double sum = 0;
    for (int32_t i = 0; i < n; i++) {
        float pr = expf((w[s->order[i]] - top) * inv_t);
        w[s->order[i]] = pr;
        sum += pr;
    }
    int32_t keep = n;
    if (s->p.min_p > 0)
        for (int32_t i = 1; i < keep; i++)
            if (w[s->order[i]] < s->p.min_p) { keep = i; break; } /* p(max) scaled to 1 */
    double mass = 0;
    for (int32_t i = 0; i < keep; i++) {
        mass += w[s->order[i]] / sum;
        if (mass >= s->p.top_p) { keep = i + 1; break; }
    }
    double total = 0;
    for (int32_t i = 0; i < keep; i++) total += w[s->order[i]];
    double r = (double)(rng_next(s->rng) >> 11) * (1.0 / 9007199254740992.0) * total;
    for (int32_t i = 0; i < keep; i++) {
        r -= w[s->order[i]];
        if (r < 0) return s->order[i];
    }
    return s->order[keep - 1];
}
