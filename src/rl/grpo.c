/*
 * grpo.c — GRPO with verifiable rewards (see rl.h).
 *
 * The policy lives in the trainer's F32 arenas. Before each step it is
 * written as a checkpoint to OUT/policy and loaded by the inference engine,
 * which samples the groups with the latent cache and batched decoding; the
 * trainer then recomputes the log-probabilities of the sampled tokens with
 * the same weights (logp_old) and takes the policy-gradient step through
 * dsc_train_forward / dsc_train_backward with one weight per token.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/dist.h"
#include "core/fileio.h"
#include "core/status.h"
#include "io/config.h"
#include "rl/rl.h"
#include "rl/rollout.h"
#include "train/train.h"
#include "train/trainer.h"

#define RL_MAX_PROMPT 160 /* prompt tokens at most (the questions are short) */

rl_grpo_params rl_grpo_default_params(void) {
    return (rl_grpo_params){
        .families = {TASK_ADD, TASK_MUL, TASK_COUNTDOWN}, .n_families = 3, .steps = 100, .prompts = 8, .group = 8,
        .max_new = 256, .inner = 1, .warmup = 0, .max_rounds = 4, .save_every = 50, .lr = 1e-5f, .weight_decay = 0.0f,
        .clip = 1.0f, .temp = 1.0f, .eps_low = 0.2f, .eps_high = 0.28f, .beta = 0.0f, .format_weight = 0.1f,
        .dynamic = 1, .seed = 0,
    };
}

void rl_group_advantages(const float *reward, int n, int dr_grpo, float *adv) {
    double mean = 0, var = 0;
    for (int i = 0; i < n; i++) mean += reward[i];
    mean /= n;
    for (int i = 0; i < n; i++) var += (reward[i] - mean) * (reward[i] - mean);
    const double sd = n > 1 ? sqrt(var / (n - 1)) : 0; /* unbiased std, as torch.std */
    for (int i = 0; i < n; i++) adv[i] = (float)(dr_grpo ? reward[i] - mean : (reward[i] - mean) / (sd + 1e-4));
}

float rl_token_weight(float A, float logp, float logp_old, float ref, float eps_low, float eps_high, float beta,
                      int *clipped, float *k3, float *obj) {
    const float rho = expf(logp - logp_old);
    const float rc = rho < 1 - eps_low ? 1 - eps_low : rho > 1 + eps_high ? 1 + eps_high : rho;
    const float un = rho * A, cl = rc * A;
    const float d = ref - logp;
    *k3 = expf(d) - d - 1;
    *clipped = cl < un;
    *obj = (cl < un ? cl : un) - beta * *k3;
    /* d obj / d logp: rho A on the unclipped branch (0 on the clipped one),
     * minus beta d k3 / d logp = beta (exp(d) - 1). w = d L / d CE = d obj / d logp. */
    const float g = *clipped ? 0.0f : un;
    return g - (beta > 0 ? beta * (1.0f - expf(d)) : 0.0f);
}

typedef struct {
    task_problem prob;
    int32_t prompt[RL_MAX_PROMPT];
    int32_t n_prompt;
} rl_item;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static dsc_status make_prompt(const dsc_tokenizer *tok, const task_problem *pr, rl_item *it) {
    dsc_chat_message m = {.role = "user", .content = pr->question};
    size_t n = 0;
    it->prob = *pr;
    dsc_status s = dsc_chat_tokenize(tok, &m, 1, DSC_CHAT_GENERATION_PROMPT | DSC_CHAT_REASONING, it->prompt,
                                     RL_MAX_PROMPT, &n);
    it->n_prompt = (int32_t)n;
    return s;
}

/* Everything one run holds. */
typedef struct {
    const rl_grpo_params *p;
    dsc_trainer *t, *ref;
    dsc_tokenizer *tok;
    int32_t eos, vocab;
    char cfg[FIO_PATH_MAX], tok_path[FIO_PATH_MAX], policy[FIO_PATH_MAX];
    uint64_t rng;
    int fam_next;
    FILE *log;
    /* the step's batch */
    rl_item *items;            /* [P] kept prompts                        */
    rl_completion *comp;       /* [P G] their completions                 */
    float *reward, *adv;       /* [P G]                                   */
    int32_t *tokens;           /* (P G, Tmax + 1)                         */
    float *logp, *old, *reflp, *ent, *wt; /* (P G, Tmax)                  */
    int32_t Tmax;
} grpo;

static void grpo_free(grpo *g) {
    dsc_trainer_free(g->t);
    dsc_trainer_free(g->ref);
    dsc_tokenizer_free(g->tok);
    if (g->log) fclose(g->log);
    const int S = g->p->prompts * g->p->group;
    for (int i = 0; g->comp && i < S; i++) rl_completion_free(&g->comp[i]);
    free(g->items);
    free(g->comp);
    free(g->reward);
    free(g->adv);
    free(g->tokens);
    free(g->logp);
    free(g->old);
    free(g->reflp);
    free(g->ent);
    free(g->wt);
}

static dsc_status check_params(const rl_grpo_params *p) {
    if (!p->init || !p->out_dir) return dsc_fail(DSC_ERR_ARG, "grpo: a model and an output directory are needed");
    if (p->n_families < 1 || p->n_families > RL_MAX_MIX)
        return dsc_fail(DSC_ERR_ARG, "grpo: 1 to %d task families needed", RL_MAX_MIX);
    for (int i = 0; i < p->n_families; i++)
        if (p->level < 0 || p->level > task_max_level(p->families[i]))
            return dsc_fail(DSC_ERR_ARG, "grpo: level %d is above %s's highest, %d", p->level,
                            task_family_name(p->families[i]), task_max_level(p->families[i]));
    if (p->steps < 1 || p->prompts < 1 || p->group < 2 || p->max_new < 1 || p->inner < 1 || p->max_rounds < 1 ||
        p->prompts * p->group > 4096)
        return dsc_fail(DSC_ERR_ARG, "grpo: steps, prompts, max_new, inner, rounds >= 1, group >= 2 and prompts x group <= 4096 needed");
    if (!(p->lr >= 0) || !(p->temp > 0) || !(p->eps_low >= 0 && p->eps_low < 1) || !(p->eps_high >= 0) || !(p->beta >= 0))
        return dsc_fail(DSC_ERR_ARG, "grpo: lr >= 0, temp > 0, 0 <= eps_low < 1, eps_high >= 0 and beta >= 0 needed");
    return DSC_OK;
}

static dsc_status setup(grpo *g) {
    const rl_grpo_params *p = g->p;
    dsc_status s;
    if ((s = fio_join(g->policy, p->out_dir, "policy"))) return s;
    if ((s = fio_join(g->cfg, p->init, "config.json")) || (s = fio_join(g->tok_path, p->init, "tokenizer.json"))) return s;
    if ((s = dsc_tokenizer_load(g->tok_path, &g->tok))) return s;
    g->Tmax = RL_MAX_PROMPT + p->max_new;
    dsc_config cfg;
    if ((s = config_load(g->cfg, &cfg))) return s;
    if (g->Tmax > cfg.max_position_embeddings)
        return dsc_fail(DSC_ERR_ARG, "grpo: --max-new %d and prompts of up to %d tokens need %d positions, beyond %s's "
                        "max_position_embeddings %d", p->max_new, RL_MAX_PROMPT, g->Tmax, p->init,
                        cfg.max_position_embeddings);
    const int S = p->prompts * p->group;
    dsc_train_params tp = dsc_train_default_params();
    tp.n_batch = S;
    tp.n_seq = g->Tmax;
    tp.n_threads = p->threads;
    tp.alpha = 0;
    tp.gamma = 0;
    tp.lr = p->lr;
    tp.weight_decay = p->weight_decay;
    if ((s = dsc_trainer_new(p->init, &tp, &g->t))) return s;
    /* the reference: the KL penalty (beta > 0), and the KL in the log either way */
    dsc_train_params rp = tp;
    if ((s = dsc_trainer_new(p->ref ? p->ref : p->init, &rp, &g->ref))) return s;
    if (dsc_train_vocab_size(g->ref) != dsc_train_vocab_size(g->t))
        return dsc_fail(DSC_ERR_ARG, "grpo: --ref %s: vocab_size %d differs from the policy's %d (%s)", p->ref,
                        dsc_train_vocab_size(g->ref), dsc_train_vocab_size(g->t), p->init);
    if (dsc_tokenizer_n_vocab(g->tok) > dsc_train_vocab_size(g->t))
        return dsc_fail(DSC_ERR_ARG, "%s: %d token ids do not fit the model's vocab_size %d", g->tok_path,
                        dsc_tokenizer_n_vocab(g->tok), dsc_train_vocab_size(g->t));
    /* the vocabulary is the config's; read it from a loaded model later */
    g->eos = dsc_tokenizer_find(g->tok, "<｜end▁of▁sentence｜>");
    if (g->eos < 0) return dsc_fail(DSC_ERR_ARG, "%s: no <｜end▁of▁sentence｜> token", g->tok_path);
    const size_t row = (size_t)g->Tmax + 1, n = (size_t)S * g->Tmax;
    g->items = calloc((size_t)p->prompts, sizeof *g->items);
    g->comp = calloc((size_t)S, sizeof *g->comp);
    g->reward = malloc(sizeof(float) * (size_t)S);
    g->adv = malloc(sizeof(float) * (size_t)S);
    g->tokens = malloc(sizeof(int32_t) * (size_t)S * row);
    g->logp = malloc(sizeof(float) * n);
    g->old = malloc(sizeof(float) * n);
    g->reflp = calloc(n, sizeof(float));
    g->ent = malloc(sizeof(float) * n);
    g->wt = malloc(sizeof(float) * n);
    if (!g->items || !g->comp || !g->reward || !g->adv || !g->tokens || !g->logp || !g->old || !g->reflp || !g->ent || !g->wt)
        return dsc_fail(DSC_ERR_NOMEM, "grpo: out of memory for a batch of %d sequences", S);
    /* the output directory once the inputs are known to be good */
    if (mkdir(p->out_dir, 0777) != 0 && errno != EEXIST)
        return dsc_fail(DSC_ERR_IO, "%s: cannot create: %s", p->out_dir, strerror(errno));
    if (mkdir(g->policy, 0777) != 0 && errno != EEXIST)
        return dsc_fail(DSC_ERR_IO, "%s: cannot create: %s", g->policy, strerror(errno));
    char path[FIO_PATH_MAX];
    if ((s = fio_join(path, p->out_dir, "log.jsonl"))) return s;
    if (dist_rank() == 0 && (s = fio_create(path, 0, &g->log))) return s;
    /* each rank its own stream of problems */
    g->rng = p->seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull + (uint64_t)dist_rank() * 0xD1B54A32D192ED03ull;
    return DSC_OK;
}

typedef struct {
    int64_t sampled, correct, formatted, tokens, groups_sampled, groups_kept;
    double reward;
} step_stats;

/* Samples rounds of P prompts x G until P groups with a signal are kept
 * (or max_rounds); the kept ones end in g->items / g->comp / g->reward. With
 * several MPI ranks, P is this rank's share of the step's prompts. */
static dsc_status collect(grpo *g, int32_t step, int *n_kept, step_stats *st) {
    const rl_grpo_params *p = g->p;
    const int R = dist_size(), me = dist_rank();
    const int P = p->prompts / R + (me < p->prompts % R), G = p->group, S = p->prompts * G;
    dsc_model *m = NULL;
    dsc_ctx *ctx = NULL;
    /* the policy as it is now, written by rank 0 for every rank to sample from */
    dsc_status s = dist_agree(me == 0 ? dsc_train_save(g->t, g->cfg, NULL, g->policy) : DSC_OK);
    if (!s) s = dsc_model_load(g->policy, NULL, &m);
    dsc_model_info info;
    if (!s) {
        dsc_model_get_info(m, &info);
        g->vocab = info.vocab_size;
        dsc_ctx_params cp = dsc_ctx_default_params();
        cp.n_ctx = g->Tmax + 1;
        cp.n_seq = S;
        cp.n_threads = p->threads;
        cp.kv_type = DSC_KV_F32;
        s = dsc_ctx_new(m, &cp, &ctx);
    }
    rl_item *round = calloc((size_t)P, sizeof *round);
    rl_prompt *pr = calloc((size_t)P, sizeof *pr);
    rl_completion *rc = calloc((size_t)S, sizeof *rc);
    float *rw = malloc(sizeof(float) * (size_t)S);
    if (!s && (!round || !pr || !rc || !rw)) s = dsc_fail(DSC_ERR_NOMEM, "grpo: out of memory");
    int kept = 0;
    for (int r = 0; !s && P > 0 && r < p->max_rounds && kept < P; r++) {
        for (int i = 0; !s && i < P; i++) {
            const task_family f = p->families[g->fam_next++ % p->n_families];
            task_problem prob;
            s = task_generate(f, p->level ? p->level : task_max_level(f), &g->rng, &prob);
            if (!s) s = make_prompt(g->tok, &prob, &round[i]);
            pr[i] = (rl_prompt){.ids = round[i].prompt, .n = round[i].n_prompt};
        }
        if (s) break;
        rl_sample_params sp = {.max_new = p->max_new, .eos = g->eos, .n_vocab = g->vocab, .sp = dsc_sampler_default_params()};
        sp.sp.temp = p->temp;
        sp.sp.top_p = 1.0f;
        sp.sp.seed = p->seed * 1000003ull + (uint64_t)step * 131ull + (uint64_t)r + (uint64_t)me * 0x9E3779B97F4A7C15ull;
        if ((s = rl_sample(ctx, g->tok, pr, P, G, &sp, rc))) break;
        for (int i = 0; i < P; i++) {
            int same = 1;
            for (int k = 0; k < G; k++) {
                task_verdict v;
                task_check(&round[i].prob, rc[i * G + k].text, &v);
                rw[i * G + k] = task_reward(&v, p->format_weight);
                same &= rw[i * G + k] == rw[i * G];
                st->sampled++;
                st->correct += v.correct;
                st->formatted += v.format_ok;
                st->tokens += rc[i * G + k].n;
                st->reward += rw[i * G + k];
            }
            st->groups_sampled++;
            if ((p->dynamic && same) || kept >= P) {
                for (int k = 0; k < G; k++) rl_completion_free(&rc[i * G + k]);
                continue;
            }
            g->items[kept] = round[i];
            for (int k = 0; k < G; k++) {
                rl_completion_free(&g->comp[kept * G + k]);
                g->comp[kept * G + k] = rc[i * G + k];
                memset(&rc[i * G + k], 0, sizeof rc[0]);
                g->reward[kept * G + k] = rw[i * G + k];
            }
            kept++;
        }
    }
    for (int i = 0; rc && i < S; i++) rl_completion_free(&rc[i]);
    free(round);
    free(pr);
    free(rc);
    free(rw);
    dsc_ctx_free(ctx);
    dsc_model_free(m);
    st->groups_kept = kept;
    *n_kept = kept;
    return s;
}

/* Policy update(s) on the kept groups; fills the step's token statistics.
 * With several MPI ranks, each holds its own kept groups (maybe none) and the
 * loss is normalised by the completion tokens of all of them. */
static dsc_status update(grpo *g, int n_kept, float lr, double *loss, double *kl, double *ent, double *clipf, double *gn) {
    const rl_grpo_params *p = g->p;
    const int G = p->group, B = n_kept * G;
    /* rows: prompt + completion, padded with EOS; T = longest - 1 */
    int32_t T = 1;
    for (int b = 0; b < B; b++) {
        const int32_t len = g->items[b / G].n_prompt + g->comp[b].n;
        if (len - 1 > T) T = len - 1;
    }
    const size_t row = (size_t)T + 1;
    int64_t n_tok = 0;
    for (int b = 0; b < B; b++) {
        const rl_item *it = &g->items[b / G];
        int32_t *r = g->tokens + (size_t)b * row;
        memcpy(r, it->prompt, sizeof(int32_t) * (size_t)it->n_prompt);
        memcpy(r + it->n_prompt, g->comp[b].tokens, sizeof(int32_t) * (size_t)g->comp[b].n);
        for (size_t i = (size_t)it->n_prompt + (size_t)g->comp[b].n; i < row; i++) r[i] = g->eos;
        n_tok += g->comp[b].n;
    }
    for (int i = 0; i < n_kept; i++) rl_group_advantages(g->reward + i * G, G, p->dr_grpo, g->adv + i * G);
    double tok = (double)n_tok;
    dsc_status s = dist_sum_f64(&tok, 1);
    n_tok = (int64_t)tok; /* of every rank */
    if (!s && B > 0) s = dsc_train_forward(g->t, g->tokens, B, T, g->old, g->ent, NULL);
    if (!s && B > 0 && g->ref) s = dsc_train_forward(g->ref, g->tokens, B, T, g->reflp, NULL, NULL);
    double sums[4] = {0}; /* objective, k3, entropy, clipped tokens */
    *gn = 0;
    for (int it = 0; !s && it < p->inner; it++) {
        /* the first update uses the activations of the pass that gave logp_old */
        if (B == 0) { /* no group of this rank's: it adds nothing to the sum */
            memset(g->t->grads, 0, sizeof(float) * g->t->n_floats);
            g->t->have_grad = 1;
        }
        else if (it == 0) memcpy(g->logp, g->old, sizeof(float) * (size_t)B * T);
        else s = dsc_train_forward(g->t, g->tokens, B, T, g->logp, NULL, NULL);
        if (s) break;
        memset(g->wt, 0, sizeof(float) * (size_t)B * T);
        for (int b = 0; b < B; b++) {
            const int32_t first = g->items[b / G].n_prompt - 1; /* target index of the first completion token */
            for (int32_t j = 0; j < g->comp[b].n; j++) {
                const size_t k = (size_t)b * T + (size_t)(first + j);
                int clipped;
                float k3, obj;
                const float w = rl_token_weight(g->adv[b], g->logp[k], g->old[k], g->reflp[k], p->eps_low, p->eps_high,
                                                p->beta, &clipped, &k3, &obj);
                g->wt[k] = w / (float)n_tok;
                if (it == p->inner - 1) {
                    sums[0] += obj;
                    sums[1] += k3;
                    sums[2] += g->ent[k];
                    sums[3] += clipped;
                }
            }
        }
        if (B > 0 && (s = dsc_train_backward(g->t, g->wt))) break;
        if ((s = dist_sum_f32(g->t->grads, g->t->n_floats))) break;
        const double norm = dsc_train_grad_norm(g->t);
        if (it == 0) *gn = norm;
        if (!isfinite(norm)) {
            s = dsc_fail(DSC_ERR_ARG, "grpo: the gradient is not finite");
            break;
        }
        if (p->clip > 0 && norm > p->clip) dsc_train_scale_grads(g->t, (float)(p->clip / norm));
        s = dsc_train_step(g->t, lr);
    }
    if (!s) s = dist_sum_f64(sums, 4);
    *loss = n_tok ? -sums[0] / (double)n_tok : 0;
    *kl = n_tok ? sums[1] / (double)n_tok : 0;
    *ent = n_tok ? sums[2] / (double)n_tok : 0;
    *clipf = n_tok ? sums[3] / (double)n_tok : 0;
    return s;
}

dsc_status rl_grpo_run(const rl_grpo_params *p) {
    dsc_status s = check_params(p);
    if (s) return s;
    grpo g = {.p = p};
    s = dist_agree(setup(&g)); /* every rank set up, or every rank stops here */
    for (int32_t step = 1; !s && step <= p->steps; step++) {
        const double t0 = now_s();
        step_stats st = {0};
        int kept = 0;
        if ((s = collect(&g, step, &kept, &st))) break;
        /* the step's figures over every rank's share */
        double n[7] = {(double)st.sampled, (double)st.correct, (double)st.formatted, (double)st.tokens,
                       (double)st.groups_sampled, (double)st.groups_kept, st.reward};
        if ((s = dist_sum_f64(n, 7))) break;
        st = (step_stats){.sampled = (int64_t)n[0], .correct = (int64_t)n[1], .formatted = (int64_t)n[2],
                          .tokens = (int64_t)n[3], .groups_sampled = (int64_t)n[4], .groups_kept = (int64_t)n[5],
                          .reward = n[6]};
        const double t1 = now_s();
        const float lr = p->warmup > 0 && step <= p->warmup ? p->lr * (float)step / (float)p->warmup : p->lr;
        double loss = 0, kl = 0, ent = 0, clipf = 0, gn = 0;
        if (st.groups_kept > 0 && (s = update(&g, kept, lr, &loss, &kl, &ent, &clipf, &gn))) break;
        const double t2 = now_s();
        char line[1024];
        const double ns = st.sampled ? (double)st.sampled : 1;
        snprintf(line, sizeof line,
                 "{\"step\": %d, \"reward\": %.4f, \"accuracy\": %.4f, \"format\": %.4f, \"response_length\": %.1f, "
                 "\"kl\": %.5g, \"entropy\": %.4f, \"clip_frac\": %.4f, \"loss\": %.5g, \"grad_norm\": %.4g, \"lr\": %.3g, "
                 "\"groups_kept\": %lld, \"groups_sampled\": %lld, \"sample_s\": %.2f, \"update_s\": %.2f}",
                 step, st.reward / ns, (double)st.correct / ns, (double)st.formatted / ns, (double)st.tokens / ns, kl, ent,
                 clipf, loss, gn, (double)lr, (long long)st.groups_kept, (long long)st.groups_sampled, t1 - t0, t2 - t1);
        const int last = step == p->steps || dist_any(p->interrupt && *p->interrupt);
        if (last && !dist_same(g.t->params, sizeof(float) * g.t->n_floats)) {
            s = dsc_fail(DSC_ERR_IO, "grpo: the %d MPI ranks' weights differ after step %d", dist_size(), step);
            break;
        }
        if (dist_rank() != 0) { /* rank 0 logs and writes for all */
            if (last) break;
            continue;
        }
        fprintf(g.log, "%s\n", line);
        fflush(g.log);
        if (p->on_step) p->on_step(p->user, line);
        if (last || (p->save_every > 0 && step % p->save_every == 0))
            s = dsc_train_save(g.t, g.cfg, g.tok_path, p->out_dir);
        if (last) break;
    }
    grpo_free(&g);
    return s;
}
