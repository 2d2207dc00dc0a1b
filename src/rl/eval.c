/*
 * eval.c — pass@1 and majority-vote accuracy on a task file (see rl.h).
 *
 * pass@1 is estimated from the K samples of each problem: the share of them
 * that are correct, averaged over problems. cons@K takes the majority of the
 * K extracted answers (task_vote: ties go to the larger summed
 * log-probability) and counts the problem solved when the winner is right.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/dist.h"
#include "core/fileio.h"
#include "core/status.h"
#include "rl/rl.h"
#include "rl/rollout.h"
#include "train/train.h"

#define EVAL_MAX_PROMPT 160

rl_eval_params rl_eval_default_params(void) {
    return (rl_eval_params){.samples = 1, .temp = 0.6f, .top_p = 0.95f, .max_new = 256, .batch = 8};
}

/* One chat example of dsc sft's format: the question, then the sample as the
 * answer after the template's "<think>\n". */
static dsc_status write_example(FILE *f, const char *path, const char *question, const char *completion) {
    cJSON *o = cJSON_CreateObject(), *msgs = o ? cJSON_AddArrayToObject(o, "messages") : NULL;
    cJSON *u = cJSON_CreateObject(), *a = cJSON_CreateObject();
    const size_t n = strlen(completion) + sizeof "<think>\n";
    char *answer = malloc(n), *line = NULL;
    if (msgs && u && a && answer) {
        snprintf(answer, n, "<think>\n%s", completion);
        cJSON_AddStringToObject(u, "role", "user");
        cJSON_AddStringToObject(u, "content", question);
        cJSON_AddStringToObject(a, "role", "assistant");
        cJSON_AddStringToObject(a, "content", answer);
        cJSON_AddItemToArray(msgs, u), u = NULL;
        cJSON_AddItemToArray(msgs, a), a = NULL;
        line = cJSON_PrintUnformatted(o);
    }
    cJSON_Delete(o);
    cJSON_Delete(u);
    cJSON_Delete(a);
    free(answer);
    if (!line) return dsc_fail(DSC_ERR_NOMEM, "eval: out of memory");
    const int bad = fprintf(f, "%s\n", line) < 0;
    cJSON_free(line);
    return bad ? dsc_fail(DSC_ERR_IO, "%s: write failed", path) : DSC_OK;
}

/* The samples of one problem that rejection sampling keeps (rl.h). */
static dsc_status keep_samples(const rl_eval_params *p, FILE *f, const task_problem *pb, const rl_completion *comp,
                               const task_verdict *ver, int K, rl_eval_result *r) {
    int kept = 0;
    for (int k = 0; k < K && (p->keep_max <= 0 || kept < p->keep_max); k++) {
        if (!ver[k].correct || !ver[k].format_ok || !comp[k].finished) continue;
        int seen = 0;
        for (int j = 0; j < k && !seen; j++)
            seen = ver[j].correct && ver[j].format_ok && comp[j].finished && !strcmp(comp[j].text, comp[k].text);
        if (seen) continue;
        dsc_status s = write_example(f, p->keep, pb->question, comp[k].text);
        if (s) return s;
        kept++;
    }
    r->n_kept += kept;
    r->n_kept_problems += kept > 0;
    return DSC_OK;
}

static dsc_status read_tasks(const char *path, task_problem **out, int64_t *n_out) {
    char *text;
    size_t len;
    dsc_status s = dsc_text_read(path, &text, &len);
    if (s) return s;
    int64_t n = 0, cap = 256;
    task_problem *v = malloc(sizeof *v * (size_t)cap);
    if (!v) s = dsc_fail(DSC_ERR_NOMEM, "%s: out of memory", path);
    size_t line = 0;
    for (char *p = text, *e; !s && p < text + len; p = e + 1) {
        e = memchr(p, '\n', (size_t)(text + len - p));
        if (!e) e = text + len;
        line++;
        while (p < e && (*p == ' ' || *p == '\t' || *p == '\r')) p++;
        if (p == e) continue;
        if (n == cap) {
            task_problem *t = realloc(v, sizeof *v * (size_t)(cap *= 2));
            if (!t) {
                s = dsc_fail(DSC_ERR_NOMEM, "%s: out of memory", path);
                break;
            }
            v = t;
        }
        const char save = *e;
        *e = 0;
        s = task_from_json(p, &v[n]);
        *e = save;
        if (s) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", dsc_last_error());
            s = dsc_fail(s, "%s:%zu: %s", path, line, msg);
        }
        n++;
    }
    free(text);
    if (!s && n == 0) s = dsc_fail(DSC_ERR_FORMAT, "%s: no problems", path);
    if (s) {
        free(v);
        return s;
    }
    *out = v;
    *n_out = n;
    return DSC_OK;
}

/* Counts summed over the problems (and over the MPI ranks): integers, so
 * that the figures are the same bits however the problems are shared. */
enum { C_CORRECT, C_CONS, C_SAMPLES, C_FORMAT, C_TOKENS, C_KEPT, C_KEPT_PROBLEMS, C_FAMILY };
#define C_N (C_FAMILY + 3 * TASK_N_FAMILIES) /* then per family: problems, correct samples, cons */

/* A file an MPI job writes: each rank's batches gathered to rank 0 and
 * written in the order one process would write them (len[b]: batch b's
 * bytes, from the rank that ran it; the rest of a rank's text follows). */
typedef struct {
    const char *path;
    FILE *out;   /* rank 0: the file */
    FILE *mem;   /* this rank's lines (open_memstream), when the job has several ranks */
    char *buf;
    size_t n;
    double *len; /* [batches] */
} eval_file;

/* create: rank 0 makes the file (not when the setup failed); every rank
 * of a job keeps its lines in memory, so that all take part in file_close. */
static dsc_status file_open(eval_file *f, const char *path, int64_t n_batches, int create) {
    memset(f, 0, sizeof *f);
    f->path = path;
    if (!path) return DSC_OK;
    dsc_status s = dist_rank() == 0 && create ? fio_create(path, 0, &f->out) : DSC_OK;
    if (!s && dist_size() > 1 && (!(f->mem = open_memstream(&f->buf, &f->n)) ||
                                  !(f->len = calloc((size_t)n_batches, sizeof *f->len))))
        s = dsc_fail(DSC_ERR_NOMEM, "eval: out of memory");
    return s;
}

/* Where this rank writes its lines. */
static FILE *file_to(const eval_file *f) { return f->mem ? f->mem : f->out; }

/* Batch b's lines are all written: their length noted. */
static dsc_status file_batch(eval_file *f, int64_t b, size_t *before) {
    if (!f->mem) return DSC_OK;
    if (fflush(f->mem) != 0) return dsc_fail(DSC_ERR_NOMEM, "eval: out of memory");
    f->len[b] = (double)(f->n - *before);
    *before = f->n;
    return DSC_OK;
}

/* Every rank's lines to rank 0, written in batch order; the file closed. */
static dsc_status file_close(eval_file *f, int64_t n_batches, dsc_status s) {
    if (!f->path) return s;
    if (dist_size() > 1) { /* every rank, whatever happened (the calls below are collective) */
        if ((!f->mem || fflush(f->mem) != 0 || !f->len) && !s) s = dsc_fail(DSC_ERR_NOMEM, "eval: out of memory");
        const int R = dist_size();
        char *all = NULL;
        size_t *lens = calloc((size_t)R, sizeof *lens), *at = calloc((size_t)R, sizeof *at);
        if (!s && (!lens || !at)) s = dsc_fail(DSC_ERR_NOMEM, "eval: out of memory");
        s = dist_agree(s);
        if (!s) s = dist_sum_f64(f->len, (size_t)n_batches);
        if (!s) s = dist_gather_bytes(f->buf, f->n, &all, lens);
        for (int r = 1; !s && dist_rank() == 0 && r < R; r++) at[r] = at[r - 1] + lens[r - 1];
        for (int64_t b = 0; !s && dist_rank() == 0 && b < n_batches; b++) {
            const int r = (int)(b % R);
            const size_t k = (size_t)f->len[b];
            if (k && fwrite(all + at[r], 1, k, f->out) != k) s = dsc_fail(DSC_ERR_IO, "%s: write failed", f->path);
            at[r] += k;
        }
        free(all), free(lens), free(at);
        if (f->mem) fclose(f->mem);
        free(f->buf);
        free(f->len);
    }
    if (f->out && fclose(f->out) != 0 && !s) s = dsc_fail(DSC_ERR_IO, "%s: write failed", f->path);
    return s;
}

dsc_status rl_eval_run(const rl_eval_params *p, rl_eval_result *r) {
    memset(r, 0, sizeof *r);
    if (!p->model || !p->tasks) return dsc_fail(DSC_ERR_ARG, "eval: a model and a task file are needed");
    if (p->samples < 1 || p->samples > 256 || p->batch < 1 || p->max_new < 1 || !(p->temp >= 0))
        return dsc_fail(DSC_ERR_ARG, "eval: samples in [1, 256], batch >= 1, max_new >= 1 and temp >= 0 needed");
    task_problem *probs = NULL;
    int64_t n = 0;
    dsc_status s = dist_agree(read_tasks(p->tasks, &probs, &n)); /* refused alike on every rank */
    if (s) return s;
    if (p->limit > 0 && n > p->limit) n = p->limit;
    char tok_path[4096];
    snprintf(tok_path, sizeof tok_path, "%s/tokenizer.json", p->model);
    dsc_tokenizer *tok = NULL;
    dsc_model *m = NULL;
    dsc_ctx *ctx = NULL;
    const int K = p->samples, P = p->batch, R = dist_size(), rank = dist_rank();
    const int64_t n_batches = (n + P - 1) / P;
    eval_file det, keep;
    rl_completion *comp = calloc((size_t)P * K, sizeof *comp);
    int32_t *prompt = malloc(sizeof(int32_t) * (size_t)P * EVAL_MAX_PROMPT);
    rl_prompt *pr = calloc((size_t)P, sizeof *pr);
    task_verdict *ver = calloc((size_t)K, sizeof *ver);
    double *lp = calloc((size_t)K, sizeof *lp), cnt[C_N] = {0};
    if (!comp || !prompt || !pr || !ver || !lp) s = dsc_fail(DSC_ERR_NOMEM, "eval: out of memory");
    if (!s) s = dsc_tokenizer_load(tok_path, &tok);
    if (!s) s = dsc_model_load(p->model, NULL, &m);
    dsc_model_info info = {0};
    if (!s) {
        dsc_model_get_info(m, &info);
        dsc_ctx_params cp = dsc_ctx_default_params();
        cp.n_ctx = EVAL_MAX_PROMPT + p->max_new + 1;
        cp.n_seq = P * K;
        cp.n_threads = p->threads;
        s = dsc_ctx_new(m, &cp, &ctx);
    }
    const dsc_status sd = file_open(&det, p->details, n_batches, !s), sk = file_open(&keep, p->keep, n_batches, !s);
    if (!s) s = sd ? sd : sk;
    const int32_t eos = tok ? dsc_tokenizer_find(tok, "<｜end▁of▁sentence｜>") : -1;
    if (!s && eos < 0) s = dsc_fail(DSC_ERR_ARG, "%s: no <｜end▁of▁sentence｜> token", tok_path);
    s = dist_agree(s); /* every rank set up, or none goes on */
    size_t det_at = 0, keep_at = 0;
    for (int64_t b = rank; !s && b < n_batches; b += R) { /* rank r: batches r, r + R, ... (each seeded by its place) */
        const int64_t i0 = b * P;
        const int np = (int)(n - i0 < P ? n - i0 : P);
        for (int q = 0; !s && q < np; q++) {
            dsc_chat_message msg = {.role = "user", .content = probs[i0 + q].question};
            size_t ni = 0;
            s = dsc_chat_tokenize(tok, &msg, 1, DSC_CHAT_GENERATION_PROMPT | DSC_CHAT_REASONING,
                                  prompt + (size_t)q * EVAL_MAX_PROMPT, EVAL_MAX_PROMPT, &ni);
            pr[q] = (rl_prompt){.ids = prompt + (size_t)q * EVAL_MAX_PROMPT, .n = (int32_t)ni};
        }
        if (s) break;
        rl_sample_params sp = {.max_new = p->max_new, .eos = eos, .n_vocab = info.vocab_size, .sp = dsc_sampler_default_params()};
        sp.sp.temp = p->temp;
        sp.sp.top_p = p->top_p;
        sp.sp.seed = p->seed * 1000003ull + (uint64_t)i0;
        if ((s = rl_sample(ctx, tok, pr, np, K, &sp, comp))) break;
        for (int q = 0; q < np; q++) {
            const task_problem *pb = &probs[i0 + q];
            int correct = 0;
            for (int k = 0; k < K; k++) {
                const rl_completion *c = &comp[q * K + k];
                task_check(pb, c->text, &ver[k]);
                lp[k] = c->logp;
                correct += ver[k].correct;
                cnt[C_FORMAT] += ver[k].format_ok;
                cnt[C_TOKENS] += c->n;
                cnt[C_SAMPLES]++;
                if (det.path) {
                    cJSON *o = cJSON_CreateObject();
                    cJSON_AddStringToObject(o, "question", pb->question);
                    cJSON_AddNumberToObject(o, "sample", k);
                    cJSON_AddStringToObject(o, "completion", c->text);
                    cJSON_AddStringToObject(o, "answer", ver[k].answer);
                    cJSON_AddBoolToObject(o, "correct", ver[k].correct);
                    cJSON_AddBoolToObject(o, "format_ok", ver[k].format_ok);
                    cJSON_AddBoolToObject(o, "finished", c->finished);
                    cJSON_AddNumberToObject(o, "logp", c->logp);
                    char *line = cJSON_PrintUnformatted(o);
                    if (line) fprintf(file_to(&det), "%s\n", line);
                    cJSON_free(line);
                    cJSON_Delete(o);
                }
            }
            if (keep.path && (s = keep_samples(p, file_to(&keep), pb, &comp[q * K], ver, K, r))) break;
            int cons = 0;
            if (p->vote) {
                const int w = task_vote(ver, lp, K);
                cons = w >= 0 && ver[w].correct;
            }
            cnt[C_CORRECT] += correct;
            cnt[C_CONS] += cons;
            cnt[C_FAMILY + 3 * pb->family] += 1;
            cnt[C_FAMILY + 3 * pb->family + 1] += correct;
            cnt[C_FAMILY + 3 * pb->family + 2] += cons;
        }
        for (int i = 0; i < np * K; i++) rl_completion_free(&comp[i]);
        if (!s && det.path) s = file_batch(&det, b, &det_at);
        if (!s && keep.path) s = file_batch(&keep, b, &keep_at);
    }
    cnt[C_KEPT] = (double)r->n_kept, cnt[C_KEPT_PROBLEMS] = (double)r->n_kept_problems;
    s = dist_agree(s); /* every rank's problems done, or the job fails together */
    if (!s) s = dist_sum_f64(cnt, C_N);
    s = file_close(&det, n_batches, s);
    s = file_close(&keep, n_batches, s);
    if (!s) {
        r->n = n;
        r->pass_at_1 = n ? cnt[C_CORRECT] / ((double)K * (double)n) : 0;
        r->cons_at_k = n ? cnt[C_CONS] / (double)n : 0;
        r->format_rate = cnt[C_SAMPLES] > 0 ? cnt[C_FORMAT] / cnt[C_SAMPLES] : 0;
        r->mean_length = cnt[C_SAMPLES] > 0 ? cnt[C_TOKENS] / cnt[C_SAMPLES] : 0;
        r->n_kept = (int64_t)cnt[C_KEPT], r->n_kept_problems = (int64_t)cnt[C_KEPT_PROBLEMS];
        for (int f = 0; f < TASK_N_FAMILIES; f++) {
            const double nf = cnt[C_FAMILY + 3 * f];
            r->n_family[f] = (int64_t)nf;
            if (nf > 0) {
                r->pass_family[f] = cnt[C_FAMILY + 3 * f + 1] / ((double)K * nf);
                r->cons_family[f] = cnt[C_FAMILY + 3 * f + 2] / nf;
            }
        }
    }
    for (int i = 0; comp && i < P * K; i++) rl_completion_free(&comp[i]);
    free(comp);
    free(prompt);
    free(pr);
    free(ver);
    free(lp);
    free(probs);
    dsc_ctx_free(ctx);
    dsc_model_free(m);
    dsc_tokenizer_free(tok);
    return s;
}
