/*
 * cmd_rl.c — `dsc grpo` and `dsc eval` (src/rl/rl.h).
 *
 *   dsc grpo DIR -o OUT [--tasks add,mul,countdown] [options]
 *   dsc eval [-m DIR] --tasks FILE.jsonl [--samples K] [--vote] [--temp T]
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "../src/rl/rl.h"
#include "../src/rl/rollout.h"
#include "cli.h"
#include "core/dist.h"

static const char usage_grpo[] =
    "usage: dsc grpo DIR -o OUT [options]\n"
    "  reinforcement learning of the checkpoint in DIR (R1 chat format) with verifiable rewards:\n"
    "  GRPO groups sampled from the current policy, reward = correct + --format-weight x format\n"
    "  --tasks F,F       families: add, mul, countdown (default all three), prompts drawn\n"
    "                    round-robin; a family named twice gets twice the prompts (up to 8 names)\n"
    "  --level L         difficulty (default: each family's highest)\n"
    "  --steps N (100)   --prompts P (8) prompts per step   --group G (8) samples per prompt\n"
    "  --max-new N (256) tokens per completion             --temp T (1) sampling temperature\n"
    "  --lr LR (1e-5)    --warmup W (0)   --wd WD (0)       --clip C (1) gradient norm\n"
    "  --eps E (0.2)     lower clip of the ratio           --eps-high E (0.28) upper clip (DAPO)\n"
    "  --beta B (0)      KL weight to the reference (k3)   --ref DIR (default DIR)\n"
    "  --inner MU (1)    policy updates per sampled batch  --format-weight W (0.1)\n"
    "  --dr-grpo         advantages not divided by the group's std (Dr. GRPO)\n"
    "  --no-dynamic      keep groups whose rewards are all equal (default: drop and refill,\n"
    "                    --rounds R (4) sampling rounds per step at most)\n"
    "  --save-every S (50) --seed S (0) --threads N\n"
    "data parallel: mpirun -np R dsc grpo ... runs R ranks that share each step's prompts, each\n"
    "  sampling and learning from its own groups, the gradients summed (MPI); rank 0 writes OUT.\n"
    "output in OUT: the checkpoint (config.json, model.safetensors, tokenizer), log.jsonl\n"
    "  (reward, accuracy, format, response_length, kl, entropy, clip_frac, ... per step), policy/\n";

static const char usage_eval[] =
    "usage: dsc eval [-m DIR] --tasks FILE.jsonl [options]\n"
    "  each line {\"question\", \"answer\"} (arithmetic) or {\"question\", \"numbers\", \"target\"} (Countdown);\n"
    "  prints one JSON object with pass_at_1 (mean share of correct samples) and, with --vote,\n"
    "  cons_at_K (majority vote over the extracted answers; ties broken by summed log-probability)\n"
    "  --samples K (1)   --vote   --temp T (0.6)   --top-p P (0.95)   --max-new N (256)\n"
    "  --batch P (8) problems sampled together   --limit N   --seed S (0)   --threads N\n"
    "  --details FILE    one JSON line per sample (completion, answer, correct, finished, logp)\n"
    "  --keep FILE       rejection sampling: the correct, well-formatted, ended samples (each text once\n"
    "                    per problem) as chat examples for dsc sft; R1's SFT data from its RL model, or a\n"
    "                    teacher's answers to distill into a smaller model\n"
    "  --keep-max N      kept samples per problem at most (0 = all, the default)\n"
    "  -m defaults to the bundled model; under mpirun -np R the ranks share the batches of problems\n"
    "  (the same samples, figures and files as one process)\n";


#define NUM(field, lo, hi, type)                                    \
    do {                                                            \
        double x_;                                                  \
        if ((rc = cli_parse_double(v, a, lo, hi, &x_)) == 0) field = (type)x_; \
    } while (0)
/* The same for a count: a fraction is an error, not rounded down. */
#define INT(field, lo, hi, type)                                                                \
    do {                                                                                        \
        double x_;                                                                              \
        if ((rc = cli_parse_double(v, a, lo, hi, &x_)) == 0 && x_ != floor(x_))                  \
            rc = cli_die("%s: '%s' is not an integer", a, v);                                   \
        if (!rc) field = (type)x_;                                                              \
    } while (0)

static volatile int g_stop;
static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

static void on_step(void *user, const char *line) {
    (void)user;
    fprintf(stderr, "%s\n", line);
}

static int parse_families(const char *v, rl_grpo_params *p) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", v);
    p->n_families = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (!strcmp(t, "all")) {
            if (p->n_families || strtok_r(NULL, ",", &save))
                return cli_die("grpo: --tasks: 'all' goes alone, not in a list");
            for (int f = 0; f < TASK_N_FAMILIES; f++) p->families[f] = (task_family)f;
            p->n_families = TASK_N_FAMILIES;
            return 0;
        }
        const int f = task_family_parse(t);
        if (f < 0) return cli_die("grpo: --tasks: unknown family '%s' (add, mul, countdown, all)", t);
        if (p->n_families == RL_MAX_MIX) return cli_die("grpo: --tasks: more than %d families", RL_MAX_MIX);
        p->families[p->n_families++] = (task_family)f;
    }
    if (!p->n_families) return cli_die("grpo: --tasks: no family given");
    return 0;
}

int cmd_grpo(const cli_opts *o) {
    rl_grpo_params p = rl_grpo_default_params();
    int rc = 0;
    for (int i = 2; i < o->argc && !rc; i++) {
        const char *a = o->argv[i], *v = i + 1 < o->argc ? o->argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage_grpo, stdout);
            return 0;
        }
        if (a[0] != '-') {
            if (p.init) return cli_die("grpo: two checkpoints given ('%s' and '%s')", p.init, a);
            p.init = a;
            continue;
        }
        if (!strcmp(a, "--dr-grpo")) { p.dr_grpo = 1; continue; }
        if (!strcmp(a, "--no-dynamic")) { p.dynamic = 0; continue; }
        if (cli_no_value("grpo", a, v)) return 1;
        i++;
        if (!strcmp(a, "-o") || !strcmp(a, "--output")) p.out_dir = v;
        else if (!strcmp(a, "--ref")) p.ref = v;
        else if (!strcmp(a, "--tasks")) rc = parse_families(v, &p);
        else if (!strcmp(a, "--level")) INT(p.level, 1, 16, int);
        else if (!strcmp(a, "--steps")) INT(p.steps, 1, 1e7, int32_t);
        else if (!strcmp(a, "--prompts")) INT(p.prompts, 1, 512, int32_t);
        else if (!strcmp(a, "--group")) INT(p.group, 2, 256, int32_t);
        else if (!strcmp(a, "--max-new")) INT(p.max_new, 1, 8192, int32_t);
        else if (!strcmp(a, "--inner")) INT(p.inner, 1, 64, int32_t);
        else if (!strcmp(a, "--warmup")) INT(p.warmup, 0, 1e7, int32_t);
        else if (!strcmp(a, "--rounds")) INT(p.max_rounds, 1, 64, int32_t);
        else if (!strcmp(a, "--save-every")) INT(p.save_every, 0, 1e7, int32_t);
        else if (!strcmp(a, "--threads") || !strcmp(a, "-t")) INT(p.threads, 1, 1024, int32_t);
        else if (!strcmp(a, "--seed")) INT(p.seed, 0, 4294967295.0, uint64_t);
        else if (!strcmp(a, "--lr")) NUM(p.lr, 0, 10, float);
        else if (!strcmp(a, "--wd")) NUM(p.weight_decay, 0, 10, float);
        else if (!strcmp(a, "--clip")) NUM(p.clip, 0, 1e9, float);
        else if (!strcmp(a, "--temp")) NUM(p.temp, 1e-3, 10, float);
        else if (!strcmp(a, "--eps")) NUM(p.eps_low, 0, 0.999, float);
        else if (!strcmp(a, "--eps-high")) NUM(p.eps_high, 0, 100, float);
        else if (!strcmp(a, "--beta")) NUM(p.beta, 0, 100, float);
        else if (!strcmp(a, "--format-weight")) NUM(p.format_weight, 0, 10, float);
        else return cli_die("grpo: unknown option '%s' (see dsc grpo --help)", a);
    }
    if (rc) return rc;
    if (!p.init || !p.out_dir) return cli_die("grpo: DIR and -o OUT are needed (see dsc grpo --help)");
    p.interrupt = &g_stop;
    p.on_step = on_step;
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (dist_init(NULL, NULL)) return cli_die_status();
    if (!p.threads && dist_size() > 1) p.threads = dist_default_threads();
    if (dist_rank() == 0 && dist_size() > 1)
        fprintf(stderr, "dsc: grpo: %d MPI ranks of %d threads share each step's %d prompts\n", dist_size(), p.threads,
                p.prompts);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (rl_grpo_run(&p)) return cli_die_ranks();
    if (dist_rank() != 0) return 0;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    fprintf(stderr, "dsc: grpo: done in %.1f s%s -> %s\n",
            (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec), g_stop ? " (interrupted)" : "",
            p.out_dir);
    return 0;
}

/* s as a JSON string, quotes included (malloc'd), or NULL when out of memory. */
static char *json_quote(const char *s) {
    cJSON *j = cJSON_CreateString(s);
    char *out = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    return out;
}

int cmd_eval(const cli_opts *o) {
    rl_eval_params p = rl_eval_default_params();
    int rc = 0;
    for (int i = 2; i < o->argc && !rc; i++) {
        const char *a = o->argv[i], *v = i + 1 < o->argc ? o->argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage_eval, stdout);
            return 0;
        }
        if (!strcmp(a, "--vote")) { p.vote = 1; continue; }
        if (a[0] != '-' || !a[1]) return cli_die("eval: unexpected argument '%s' (see dsc eval --help)", a);
        if (cli_no_value("eval", a, v)) return 1;
        i++;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) p.model = v;
        else if (!strcmp(a, "--tasks")) p.tasks = v;
        else if (!strcmp(a, "--details")) p.details = v;
        else if (!strcmp(a, "--keep")) p.keep = v;
        else if (!strcmp(a, "--keep-max")) INT(p.keep_max, 0, 256, int32_t);
        else if (!strcmp(a, "--samples")) INT(p.samples, 1, 256, int32_t);
        else if (!strcmp(a, "--temp")) NUM(p.temp, 0, 10, float);
        else if (!strcmp(a, "--top-p")) NUM(p.top_p, 0, 1, float);
        else if (!strcmp(a, "--max-new")) INT(p.max_new, 1, 8192, int32_t);
        else if (!strcmp(a, "--batch")) INT(p.batch, 1, 512, int32_t);
        else if (!strcmp(a, "--limit")) INT(p.limit, 0, 1e9, int32_t);
        else if (!strcmp(a, "--seed")) INT(p.seed, 0, 4294967295.0, uint64_t);
        else if (!strcmp(a, "--threads") || !strcmp(a, "-t")) INT(p.threads, 1, 1024, int32_t);
        else return cli_die("eval: unknown option '%s' (see dsc eval --help)", a);
    }
    if (rc) return rc;
    if (!p.model) p.model = cli_default_model();
    if (!p.model) return cli_die("eval: no -m DIR and no bundled model found (see dsc eval --help)");
    if (!p.tasks) return cli_die("eval: --tasks FILE.jsonl is needed (see dsc eval --help)");
    if (dist_init(NULL, NULL)) return cli_die_status();
    if (!p.threads && dist_size() > 1) p.threads = dist_default_threads();
    rl_eval_result r;
    if (rl_eval_run(&p, &r)) return cli_die_ranks();
    if (dist_rank() != 0) return 0;
    char *model = json_quote(p.model), *tasks = json_quote(p.tasks);
    if (!model || !tasks) {
        free(model), free(tasks);
        return cli_die("eval: out of memory");
    }
    printf("{\"model\": %s, \"tasks\": %s, \"n\": %lld, \"samples\": %d, \"temp\": %g, \"pass_at_1\": %.4f", model,
           tasks, (long long)r.n, p.samples, (double)p.temp, r.pass_at_1);
    free(model), free(tasks);
    if (p.vote) printf(", \"cons_at_%d\": %.4f", p.samples, r.cons_at_k);
    printf(", \"format_rate\": %.4f, \"mean_length\": %.1f, \"families\": {", r.format_rate, r.mean_length);
    int first = 1;
    for (int f = 0; f < TASK_N_FAMILIES; f++) {
        if (!r.n_family[f]) continue;
        printf("%s\"%s\": {\"n\": %lld, \"pass_at_1\": %.4f", first ? "" : ", ", task_family_name((task_family)f),
               (long long)r.n_family[f], r.pass_family[f]);
        if (p.vote) printf(", \"cons_at_%d\": %.4f", p.samples, r.cons_family[f]);
        printf("}");
        first = 0;
    }
    printf("}");
    if (p.keep) printf(", \"kept\": %lld, \"kept_problems\": %lld", (long long)r.n_kept, (long long)r.n_kept_problems);
    printf("}\n");
    if (p.keep)
        fprintf(stderr, "dsc: eval: kept %lld samples of %lld problems -> %s\n", (long long)r.n_kept,
                (long long)r.n_kept_problems, p.keep);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* dsc run --samples K --vote                                                */

/* The question as a task when it is spelled like one (tasks.h), so answers
 * are checked and Countdown expressions vote by value. */
static int question_task(const char *q, task_problem *p) {
    long long a, b, target;
    char op, end;
    memset(p, 0, sizeof *p);
    if (sscanf(q, "What is %lld %c %lld%c", &a, &op, &b, &end) == 4 && end == '?' && a >= 0 && b >= 0 &&
        (op == '+' || op == '*') && a < 1000000000 && b < 1000000000) {
        p->family = op == '+' ? TASK_ADD : TASK_MUL;
        p->a = a, p->b = b, p->target = op == '+' ? a + b : a * b;
        snprintf(p->question, sizeof p->question, "%s", q);
        return 1;
    }
    const char *s = strstr(q, "Using the numbers [");
    if (!s) return 0;
    s += strlen("Using the numbers [");
    while (p->n_numbers < TASK_MAX_NUMBERS) {
        char *e;
        long long v = strtoll(s, &e, 10);
        if (e == s || v <= 0) return 0;
        p->numbers[p->n_numbers++] = v;
        s = e;
        if (*s == ']') break;
        if (*s != ',') return 0;
        s++;
    }
    const char *mk = strstr(s, "make ");
    if (!mk || sscanf(mk, "make %lld", &target) != 1) return 0;
    p->family = TASK_COUNTDOWN;
    p->target = target;
    snprintf(p->question, sizeof p->question, "%s", q);
    return 1;
}

int cmd_run_vote(const cli_opts *o) {
    const int K = o->samples > 1 ? o->samples : 1;
    char tok_path[4096];
    dsc_tokenizer *tok = NULL;
    dsc_model *m = NULL;
    dsc_ctx *ctx = NULL;
    if (o->n_gen < 1) return cli_die("-n %d: a turn generates at least one token", o->n_gen);
    if (o->raw) return cli_die("run: --samples and --vote compare chat answers; --raw is for plain text");
    if (cli_tokenizer_open(o, &tok, tok_path, sizeof tok_path)) return 1;
    unsigned flags = DSC_CHAT_GENERATION_PROMPT; /* the template as dsc run and chat take it */
    int rc = 0;
    if (o->think >= 0) flags |= o->think ? DSC_CHAT_REASONING : 0;
    else {
        char *slash = strrchr(tok_path, '/');
        snprintf(slash ? slash + 1 : tok_path, sizeof tok_path - (size_t)(slash ? slash + 1 - tok_path : 0),
                 "tokenizer_config.json");
        if (dsc_chat_detect(tok_path, &flags)) rc = cli_die_status();
    }
    dsc_chat_message msgs[2];
    size_t nm = 0, n_ids = 0;
    if (o->system) msgs[nm++] = (dsc_chat_message){.role = "system", .content = o->system};
    msgs[nm++] = (dsc_chat_message){.role = "user", .content = o->prompt};
    int32_t *ids = malloc(sizeof(int32_t) * 65536);
    if (!rc && !ids) rc = cli_die("run: out of memory");
    if (!rc && dsc_chat_tokenize(tok, msgs, nm, flags, ids, 65536, &n_ids)) rc = cli_die_status();
    dsc_model_info info = {0};
    dsc_model_params mp = dsc_model_default_params();
    mp.verbose = o->verbose;
    mp.mlock = o->mlock;
    if (!rc && dsc_model_load(o->model, &mp, &m)) rc = cli_die_status();
    const int32_t max_new = o->n_gen;
    if (!rc) {
        dsc_model_get_info(m, &info);
        if (dsc_tokenizer_n_vocab(tok) > info.vocab_size)
            rc = cli_die("%s: %d token ids do not fit the vocab_size %d of the model %s", tok_path,
                         dsc_tokenizer_n_vocab(tok), info.vocab_size, o->model);
        dsc_ctx_params cp = dsc_ctx_default_params();
        cp.n_ctx = o->n_ctx ? o->n_ctx : (int32_t)n_ids + max_new + 1;
        if (!o->n_ctx && cp.n_ctx > info.max_position_embeddings && info.max_position_embeddings > 0)
            cp.n_ctx = info.max_position_embeddings;
        if (!rc && (int32_t)n_ids >= cp.n_ctx)
            rc = cli_die("the conversation (%zu tokens) does not fit the context of %d%s", n_ids, cp.n_ctx,
                         o->n_ctx ? " (-c)" : ", the model's max_position_embeddings");
        cp = cli_ctx_params(o, cp.n_ctx);
        cp.n_seq = K;
        if (!rc && dsc_ctx_new(m, &cp, &ctx)) rc = cli_die_status();
    }
    rl_completion *c = calloc((size_t)K, sizeof *c);
    task_verdict *v = calloc((size_t)K, sizeof *v);
    double *lp = calloc((size_t)K, sizeof *lp);
    if (!rc && (!c || !v || !lp)) rc = cli_die("run: out of memory");
    if (!rc) {
        rl_sample_params sp = {.max_new = max_new, .eos = dsc_tokenizer_find(tok, "<｜end▁of▁sentence｜>"),
                               .n_vocab = info.vocab_size, .sp = o->sp};
        if (sp.eos < 0) sp.eos = info.eos_token_id;
        rl_prompt pr = {.ids = ids, .n = (int32_t)n_ids};
        if (rl_sample(ctx, tok, &pr, 1, K, &sp, c)) rc = cli_die_status();
    }
    if (!rc) {
        task_problem prob;
        const int is_task = question_task(o->prompt, &prob);
        for (int k = 0; k < K; k++) {
            lp[k] = c[k].logp;
            if (is_task) {
                task_check(&prob, c[k].text, &v[k]);
            } else if (task_extract_boxed(c[k].text, v[k].answer, sizeof v[k].answer)) {
                size_t n = 0; /* the answer without spaces is the key */
                for (const char *s = v[k].answer; *s && n + 1 < sizeof v[k].key; s++)
                    if (*s != ' ' && *s != '\t' && *s != '\n') v[k].key[n++] = *s;
                v[k].key[n] = 0;
            }
        }
        const int w = task_vote(v, lp, K);
        for (int k = 0; k < K; k++)
            printf("sample %d: %-24s logp %8.2f %s%s\n", k + 1, v[k].answer[0] ? v[k].answer : "(no \\boxed{} answer)",
                   lp[k], is_task ? (v[k].correct ? "correct" : "wrong") : "", k == w ? "  <- chosen" : "");
        if (w >= 0) {
            int votes = 0;
            for (int k = 0; k < K; k++) votes += !strcmp(v[k].key, v[w].key);
            if (!o->hide_think) printf("\n%s\n", c[w].text);
            printf("\nvote: %s (%d of %d samples)%s\n", v[w].answer, votes, K,
                   is_task ? (v[w].correct ? ", correct" : ", wrong") : "");
        } else {
            printf("\nvote: no sample gave a valid \\boxed{} answer\n");
        }
    }
    for (int k = 0; c && k < K; k++) rl_completion_free(&c[k]);
    free(c);
    free(v);
    free(lp);
    free(ids);
    dsc_ctx_free(ctx);
    dsc_model_free(m);
    dsc_tokenizer_free(tok);
    return rc;
}
