/*
 * cmd_quantize.c — `dsc quantize` (a checkpoint to Q8 / Q4 blocks), `dsc
 * kld` (how far a quantised model's next-token distributions are from the
 * original's) and `dsc perplexity` (a model's perplexity on a text).
 *
 *   dsc quantize -m IN_DIR -o OUT_DIR --type q8|q4|copy
 *   dsc kld -m A -m B [-n N] [-c CTX] [-t T] [-f FILE] [--seed S] [--json]
 *   dsc perplexity -m DIR -f FILE [-c CTX] [-n N] [-t T] [--kv-type T] [--json]
 *
 * kld evaluates one token sequence through both models, in windows of CTX
 * tokens (default 512, or max_position_embeddings if fewer) that each start from an empty cache, and compares the
 * distributions after every position: KL(P_A || P_B) in double precision
 * from log-softmax, its mean, maximum and 99th percentile, and how often the
 * two argmaxes agree. The tokens are FILE's text through A's tokenizer.json
 * (or --tokenizer), else N pseudo-random ids (splitmix64 of the seed) below
 * the vocabulary. Both latent caches are F32 (the library default, exact),
 * so the figures measure the weights alone. It also gives each model's
 * perplexity on the positions whose next token is in the sequence.
 *
 * perplexity scores a text as llama.cpp's llama-perplexity does, so that
 * the figures compare: the text's ids (no BOS added) in whole chunks of CTX
 * (default 512), each from an empty cache with its first id replaced by
 * BOS where the model has one, and only the second half of each chunk
 * scored (positions CTX/2 .. CTX-2 predicting the next id), each token
 * seen with at least CTX/2 of context. PPL = exp(mean NLL), +/- its
 * standard error from the NLLs' variance. The cache is F32 unless
 * --kv-type says otherwise (so the cost of a BF16 or Q8 cache shows).
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli.h"
#include "core/dist.h"

#define KLD_STEP 128 /* positions evaluated per dsc_eval: bounds the logits buffers */

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ------------------------------------------------------------------------ */
/* quantize                                                                  */

typedef struct {
    double bytes;             /* of the *.safetensors files */
    int n_quant, n_kept;      /* I8/U8 tensors; others but their _qscale companions */
} st_stats;

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* Adds one safetensors file's header to *st (nothing if it cannot be read). */
static void header_stats(const char *path, st_stats *st) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return;
    uint8_t len8[8];
    uint64_t hl = 0;
    if (fread(len8, 1, 8, fp) == 8) {
        for (int i = 7; i >= 0; i--) hl = (hl << 8) | len8[i];
        char *h = hl <= 100000000 ? malloc(hl ? hl : 1) : NULL;
        cJSON *root = h && fread(h, 1, hl, fp) == hl ? cJSON_ParseWithLength(h, hl) : NULL;
        for (const cJSON *e = root ? root->child : NULL; e; e = e->next) {
            const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
            if (!strcmp(e->string, "__metadata__") || ends_with(e->string, "_qscale")) continue;
            if (cJSON_IsString(dt) && (!strcmp(dt->valuestring, "I8") || !strcmp(dt->valuestring, "U8"))) st->n_quant++;
            else st->n_kept++;
        }
        cJSON_Delete(root);
        free(h);
    }
    fclose(fp);
}

static void file_stats(const char *dir, const char *name, st_stats *st) {
    char path[4096];
    struct stat sb;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) return;
    st->bytes += (double)sb.st_size;
    header_stats(path, st);
}

/* The checkpoint's weight files, as the loader finds them: the shards
 * model.safetensors.index.json names, else model.safetensors (not a
 * training run's optimizer or rollback files beside them). */
static st_stats dir_stats(const char *dir) {
    st_stats st = {0};
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        file_stats(dir, "model.safetensors", &st);
        return st;
    }
    char *txt = NULL;
    long n = fseek(fp, 0, SEEK_END) == 0 ? ftell(fp) : -1;
    if (n > 0 && fseek(fp, 0, SEEK_SET) == 0 && (txt = malloc((size_t)n)) && fread(txt, 1, (size_t)n, fp) != (size_t)n)
        free(txt), txt = NULL;
    fclose(fp);
    cJSON *root = txt ? cJSON_ParseWithLength(txt, (size_t)n) : NULL, *seen = cJSON_CreateObject();
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    for (const cJSON *e = map ? map->child : NULL; e && seen; e = e->next)
        if (cJSON_IsString(e) && !strchr(e->valuestring, '/') && !cJSON_GetObjectItemCaseSensitive(seen, e->valuestring)) {
            cJSON_AddTrueToObject(seen, e->valuestring);
            file_stats(dir, e->valuestring, &st);
        }
    cJSON_Delete(seen);
    cJSON_Delete(root);
    free(txt);
    return st;
}

int cmd_quantize(const cli_opts *o) {
    if (!o->output) return cli_die("quantize: no output directory given (-o DIR)");
    if (!o->qtype) return cli_die("quantize: no type given (--type q8|q4|copy)");
    double t0 = now_s();
    if (dsc_quantize(o->model, o->output, o->qtype)) return cli_die_status();
    double secs = now_s() - t0;
    st_stats in = dir_stats(o->model), out = dir_stats(o->output);
    if (!strcmp(o->qtype, "copy")) {
        fprintf(stderr, "dsc: quantize: %s: copy, %d tensors as they were, %.1f MiB, data 64-byte aligned, %.1f s\n",
                o->output, out.n_quant + out.n_kept, out.bytes / 1048576.0, secs);
        return 0;
    }
    fprintf(stderr, "dsc: quantize: %s: %s, %d tensors quantised, %d kept, %.1f MiB -> %.1f MiB (%.2fx), %.1f s\n",
            o->output, o->qtype, out.n_quant, out.n_kept, in.bytes / 1048576.0, out.bytes / 1048576.0,
            out.bytes > 0 ? in.bytes / out.bytes : 0.0, secs);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* kld                                                                       */

/* The fields two models must share for their logits to be compared. */
static int check_same(const cli_opts *o, const dsc_model_info *a, const dsc_model_info *b) {
    if (strcmp(a->model_type, b->model_type))
        return cli_die("kld: %s is %s but %s is %s", o->model, a->model_type, o->model2, b->model_type);
    const struct {
        const char *field;
        int32_t a, b;
    } f[] = {{"vocab_size", a->vocab_size, b->vocab_size},
             {"hidden_size", a->hidden_size, b->hidden_size},
             {"n_layers", a->n_layers, b->n_layers},
             {"n_heads", a->n_heads, b->n_heads},
             {"kv_lora_rank", a->kv_lora_rank, b->kv_lora_rank},
             {"qk_rope_head_dim", a->qk_rope_head_dim, b->qk_rope_head_dim},
             {"n_routed_experts", a->n_routed_experts, b->n_routed_experts},
             {"n_experts_per_tok", a->n_experts_per_tok, b->n_experts_per_tok}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (f[i].a != f[i].b)
            return cli_die("kld: %s and %s differ in %s (%d vs %d)", o->model, o->model2, f[i].field, (int)f[i].a,
                           (int)f[i].b);
    return 0;
}

/* splitmix64 (Steele, Lea, Flood 2014). */
static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The text of o->file through A's tokenizer, at most n ids. */
static int file_tokens(const cli_opts *o, int n, int32_t **ids, int *n_ids) {
    FILE *fp = cli_fopen_read(NULL, o->file);
    if (!fp) return 1;
    size_t cap = 1 << 16, len = 0;
    char *text = malloc(cap);
    while (text) {
        len += fread(text + len, 1, cap - len, fp);
        if (len < cap) break;
        char *nt = realloc(text, cap *= 2);
        if (!nt) free(text);
        text = nt;
    }
    fclose(fp);
    if (!text) return cli_die("%s: out of memory", o->file);
    dsc_tokenizer *tok = NULL;
    char path[4096];
    size_t need = 0;
    int rc = cli_tokenizer_open(o, &tok, path, sizeof path);
    if (!rc && dsc_tokenize(tok, text, len, 0, NULL, 0, &need) && need == 0)
        rc = cli_die("%s: %s: %s", o->cmd, o->file, dsc_last_error()); /* the message names "text" */
    int32_t *all = rc ? NULL : malloc(sizeof *all * (need ? need : 1));
    if (!rc && !all) rc = cli_die("out of memory for %zu ids", need);
    if (!rc && dsc_tokenize(tok, text, len, 0, all, need, &need)) rc = cli_die_status();
    free(text);
    dsc_tokenizer_free(tok);
    if (!rc && need < 2) rc = cli_die("%s: %s gives %zu tokens, at least 2 are needed", o->cmd, o->file, need);
    if (rc) {
        free(all);
        return rc;
    }
    *ids = all;
    *n_ids = (int)(need < (size_t)n ? need : (size_t)n);
    return 0;
}

static int make_tokens(const cli_opts *o, int n, int32_t vocab, int32_t **ids, int *n_ids) {
    if (o->file) {
        int rc = file_tokens(o, n, ids, n_ids);
        for (int i = 0; i < *n_ids && !rc; i++)
            if ((*ids)[i] >= vocab)
                rc = cli_die("%s: token %d of %s is id %d, beyond the vocabulary (%d)", o->cmd, i, o->file, (*ids)[i],
                             vocab);
        return rc;
    }
    if (!(*ids = malloc(sizeof **ids * (size_t)n))) return cli_die("out of memory for %d ids", n);
    for (int i = 0; i < n; i++)
        (*ids)[i] = (int32_t)(mix64(o->sp.seed * 0x9E3779B97F4A7C15ull + (uint64_t)i) % (uint64_t)vocab);
    *n_ids = n;
    return 0;
}

/* log(sum_i exp(x_i)) in double; NAN if a logit is not finite. */
static double log_sum_exp(const float *x, int v) {
    double mx = x[0], s = 0;
    for (int i = 1; i < v; i++) mx = x[i] > mx ? x[i] : mx;
    if (!isfinite(mx)) return NAN;
    for (int i = 0; i < v; i++) s += exp(x[i] - mx);
    return mx + log(s);
}

/* KL(softmax(a) || softmax(b)) in double; NAN if a logit is not finite.
 * With next >= 0, nll gets -log softmax(a)[next] and -log softmax(b)[next]. */
static double kl_row(const float *a, const float *b, int v, int32_t next, double nll[2]) {
    const double la = log_sum_exp(a, v), lb = log_sum_exp(b, v);
    if (isnan(la) || isnan(lb)) return NAN;
    if (next >= 0) nll[0] = la - a[next], nll[1] = lb - b[next];
    double kl = 0;
    for (int i = 0; i < v; i++) {
        double pa = a[i] - la;
        kl += exp(pa) * (pa - (b[i] - lb));
    }
    return kl > 0 ? kl : 0; /* rounding can leave -1e-17 for equal rows */
}

static int cmp_double(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

typedef struct {
    dsc_model *m[2];
    dsc_ctx *c[2];
    float *logits[2];  /* [KLD_STEP, vocab] */
    int32_t *ids;
    int n;             /* ids */
    double *kl;        /* per position */
    double nll[2];     /* each model's summed -log p(next id), positions with a next id */
} kld_state;

static void kld_free(kld_state *s) {
    for (int i = 0; i < 2; i++) dsc_ctx_free(s->c[i]), dsc_model_free(s->m[i]), free(s->logits[i]);
    free(s->ids);
    free(s->kl);
}

/* n_ctx: the window (0: 512, or the models' max_position_embeddings if fewer). */
static int kld_open(const cli_opts *o, int *n_ctx, kld_state *s, dsc_model_info *info) {
    const char *dirs[2] = {o->model, o->model2};
    dsc_model_params mp = dsc_model_default_params();
    mp.verbose = o->verbose;
    mp.mlock = o->mlock;
    for (int i = 0; i < 2; i++) {
        if (dsc_model_load(dirs[i], &mp, &s->m[i])) return cli_die_status();
        dsc_model_get_info(s->m[i], &info[i]);
    }
    if (check_same(o, &info[0], &info[1])) return 1;
    if (!*n_ctx) {
        const int32_t mp0 = info[0].max_position_embeddings, mp1 = info[1].max_position_embeddings;
        *n_ctx = 512 < mp0 ? 512 : mp0;
        if (mp1 < *n_ctx) *n_ctx = mp1;
    }
    dsc_ctx_params cp = cli_ctx_params(o, *n_ctx);
    cp.kv_type = DSC_KV_F32; /* exact: the weights alone make the difference */
    for (int i = 0; i < 2; i++) {
        if (dsc_ctx_new(s->m[i], &cp, &s->c[i])) return cli_die_status();
        s->logits[i] = malloc(sizeof(float) * KLD_STEP * (size_t)info[0].vocab_size);
        if (!s->logits[i]) return cli_die("out of memory for %d x %d logits", KLD_STEP, info[0].vocab_size);
    }
    return 0;
}

/* Positions [pos, pos + m) of the current window through both models. */
static int kld_step(kld_state *s, int pos, int m, int v, int *agree) {
    for (int i = 0; i < 2; i++)
        if (dsc_eval(s->c[i], s->ids + pos, m, s->logits[i])) return cli_die_status();
    for (int k = 0; k < m; k++) {
        const float *a = s->logits[0] + (size_t)k * v, *b = s->logits[1] + (size_t)k * v;
        double nll[2] = {0, 0};
        s->kl[pos + k] = kl_row(a, b, v, pos + k + 1 < s->n ? s->ids[pos + k + 1] : -1, nll);
        if (isnan(s->kl[pos + k])) return cli_die("kld: non-finite logits at position %d", pos + k);
        s->nll[0] += nll[0], s->nll[1] += nll[1];
        *agree += dsc_argmax(a, v) == dsc_argmax(b, v);
    }
    return 0;
}

static void kld_report(const cli_opts *o, const kld_state *s, int agree, int n_ctx) {
    const double *kl = s->kl;
    const int n = s->n;
    double sum = 0, mx = 0;
    for (int i = 0; i < n; i++) sum += kl[i], mx = kl[i] > mx ? kl[i] : mx;
    double *sorted = malloc(sizeof *sorted * (size_t)n);
    double p99 = mx;
    if (sorted) {
        memcpy(sorted, kl, sizeof *sorted * (size_t)n);
        qsort(sorted, (size_t)n, sizeof *sorted, cmp_double);
        int r = (int)ceil(0.99 * n) - 1; /* nearest rank */
        p99 = sorted[r < 0 ? 0 : r];
        free(sorted);
    }
    const double mean = sum / n, top1 = 100.0 * agree / n;
    /* Perplexities over the n - 1 positions whose next id is in the sequence. */
    const double ppl_a = n > 1 ? exp(s->nll[0] / (n - 1)) : NAN, ppl_b = n > 1 ? exp(s->nll[1] / (n - 1)) : NAN;
    if (o->json)
        printf("{\"mean_kld\": %.6g, \"max_kld\": %.6g, \"p99_kld\": %.6g, \"top1_agreement\": %.4f, "
               "\"positions\": %d, \"ctx\": %d, \"tokens\": \"%s\", \"ppl_a\": %.9g, \"ppl_b\": %.9g, "
               "\"ppl_positions\": %d}\n",
               mean, mx, p99, top1 / 100, n, n_ctx, o->file ? "file" : "random", n > 1 ? ppl_a : 0,
               n > 1 ? ppl_b : 0, n - 1);
    else {
        printf("mean KLD %.3g (max %.3g, p99 %.3g), top-1 agreement %.1f%% over %d positions\n", mean, mx, p99, top1,
               n);
        if (n > 1)
            printf("perplexity over the %d positions with a next token: A %.4f, B %.4f (B/A %.5f)\n", n - 1, ppl_a,
                   ppl_b, ppl_b / ppl_a);
    }
}

/* After an MPI job's share of the work: rc, or 1 with one line when another
 * rank failed (that rank said why); every rank calls it. */
static int ranks_join(int rc, const char *cmd) {
    if (dist_size() <= 1 || !dist_any(rc != 0) || rc) return rc;
    return cli_die("%s: rank %d of %d: another rank failed (its message says why)", cmd, dist_rank(), dist_size());
}

int cmd_kld(const cli_opts *o) {
    if (!o->model2) return cli_die("kld: give two models (-m A -m B)");
    if (o->n_gen < 1) return cli_die("kld: -n must be at least 1");
    if (dist_init(NULL, NULL)) return cli_die_status();
    int n_ctx = o->n_ctx;
    kld_state s = {0};
    dsc_model_info info[2];
    int n = 0, agree = 0;
    int rc = kld_open(o, &n_ctx, &s, info);
    const int v = rc ? 0 : info[0].vocab_size;
    if (!rc) rc = make_tokens(o, o->n_gen, v, &s.ids, &n);
    s.n = n;
    if (!rc && !(s.kl = calloc((size_t)n, sizeof *s.kl))) rc = cli_die("out of memory");
    const double t0 = now_s();
    for (int pos = 0, wi = 0; pos < n && !rc; wi++) { /* each window from an empty cache; MPI rank r: every R-th */
        const int w = n - pos < n_ctx ? n - pos : n_ctx;
        for (int i = 0; i < 2 && !rc && wi % dist_size() == dist_rank(); i++)
            if (dsc_ctx_truncate(s.c[i], 0)) rc = cli_die_status();
        for (int k = 0; k < w && !rc && wi % dist_size() == dist_rank(); k += KLD_STEP)
            rc = kld_step(&s, pos + k, w - k < KLD_STEP ? w - k : KLD_STEP, v, &agree);
        pos += w;
    }
    rc = ranks_join(rc, "kld");
    double tot[3] = {s.nll[0], s.nll[1], agree};
    if (!rc && dist_size() > 1 && (dist_sum_f64(s.kl, (size_t)n) || dist_sum_f64(tot, 3))) rc = cli_die_status();
    s.nll[0] = tot[0], s.nll[1] = tot[1], agree = (int)tot[2];
    if (!rc && dist_rank() == 0) {
        kld_report(o, &s, agree, n_ctx);
        double secs = now_s() - t0;
        fprintf(stderr,
                "dsc: kld: %s vs %s: %d positions (%s tokens) in windows of %d, %.1f s (%.1f tokens/s per model)\n",
                o->model, o->model2, n, o->file ? "file" : "random", n_ctx, secs, secs > 0 ? 2 * n / secs : 0.0);
    }
    kld_free(&s);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* perplexity                                                                */

int cmd_perplexity(const cli_opts *o) {
    if (!o->file) return cli_die("perplexity: give the text to score (-f FILE)");
    if (o->n_gen < 1) return cli_die("perplexity: -n must be at least 1");
    if (dist_init(NULL, NULL)) return cli_die_status();
    dsc_model *m = NULL;
    dsc_ctx *ctx = NULL;
    dsc_model_info info;
    int32_t *ids = NULL;
    float *logits = NULL;
    int n = 0, rc = 0;
    dsc_model_params mp = dsc_model_default_params();
    mp.verbose = o->verbose;
    mp.mlock = o->mlock;
    if (dsc_model_load(o->model, &mp, &m)) return cli_die_status();
    dsc_model_get_info(m, &info);
    const int max_pos = info.max_position_embeddings;
    const int chunk = o->n_ctx ? o->n_ctx : (512 < max_pos ? 512 : max_pos);
    const int first = chunk / 2, v = info.vocab_size;
    if (chunk < 4) rc = cli_die("perplexity: a chunk of %d tokens is too short to score (-c 4 or more)", chunk);
    else if (chunk > max_pos)
        rc = cli_die("perplexity: a chunk of %d tokens is more than the model's max_position_embeddings (%d)", chunk,
                     max_pos);
    if (!rc) rc = make_tokens(o, o->n_gen, v, &ids, &n);
    const int n_chunks = n / (chunk > 0 ? chunk : 1);
    if (!rc && n_chunks < 1)
        rc = cli_die("perplexity: %s gives %d tokens, fewer than one chunk of %d (use a smaller -c or a longer text)",
                     o->file, n, chunk);
    const dsc_ctx_params cp = cli_ctx_params(o, chunk);
    if (!rc && dsc_ctx_new(m, &cp, &ctx)) rc = cli_die_status();
    if (!rc && !(logits = malloc(sizeof(float) * KLD_STEP * (size_t)v)))
        rc = cli_die("out of memory for %d x %d logits", KLD_STEP, v);
    double sum = 0, sum2 = 0; /* the NLLs and their squares */
    long long count = 0;
    const double t0 = now_s();
    for (int c = dist_rank(); c < n_chunks && !rc; c += dist_size()) { /* MPI rank r: every R-th chunk */
        int32_t *t = ids + (size_t)c * chunk;
        const int32_t keep = t[0];
        if (info.bos_token_id >= 0) t[0] = info.bos_token_id; /* as llama-perplexity: each chunk starts a text */
        if (dsc_ctx_truncate(ctx, 0)) rc = cli_die_status();
        for (int p = 0; p < chunk && !rc; p += KLD_STEP) {
            const int mm = chunk - p < KLD_STEP ? chunk - p : KLD_STEP;
            if (dsc_eval(ctx, t + p, mm, logits)) {
                rc = cli_die_status();
                break;
            }
            for (int k = 0; k < mm; k++) { /* position p + k predicts id p + k + 1 */
                const int j = p + k;
                if (j < first || j + 1 >= chunk) continue;
                const float *row = logits + (size_t)k * v;
                const double lse = log_sum_exp(row, v);
                if (isnan(lse)) {
                    rc = cli_die("perplexity: non-finite logits in chunk %d at position %d", c + 1, j);
                    break;
                }
                const double nll = lse - row[t[j + 1]];
                sum += nll, sum2 += nll * nll, count++;
            }
        }
        t[0] = keep;
        if (!rc && !o->json && dist_size() == 1)
            fprintf(stderr, "[%d]%.4f%s", c + 1, exp(sum / (double)count), c + 1 < n_chunks ? "," : "\n");
    }
    rc = ranks_join(rc, "perplexity");
    double tot[3] = {sum, sum2, (double)count};
    if (!rc && dist_size() > 1 && dist_sum_f64(tot, 3)) rc = cli_die_status();
    sum = tot[0], sum2 = tot[1], count = (long long)tot[2];
    if (!rc && dist_rank() == 0) {
        const double mean = sum / (double)count, ppl = exp(mean);
        double var = sum2 / (double)count - mean * mean, err = 0;
        if (var > 0 && count > 1) err = ppl * sqrt(var / (double)(count - 1));
        const double secs = now_s() - t0;
        if (o->json)
            printf("{\"perplexity\": %.6f, \"perplexity_err\": %.6f, \"mean_nll\": %.8f, \"tokens_scored\": %lld, "
                   "\"chunks\": %d, \"ctx\": %d, \"file_tokens\": %d, \"kv_type\": \"%s\"}\n",
                   ppl, err, mean, count, n_chunks, chunk, n, dsc_kv_type_name((dsc_kv_type)o->kv_type));
        else
            printf("perplexity %.4f +/- %.4f over %lld tokens (%d chunks of %d, the second half of each scored)\n", ppl,
                   err, count, n_chunks, chunk);
        fprintf(stderr, "dsc: perplexity: %s on %s: %d of its %d tokens evaluated, %s cache, %.1f s (%.1f tokens/s)\n",
                o->model, o->file, n_chunks * chunk, n, dsc_kv_type_name((dsc_kv_type)o->kv_type), secs,
                secs > 0 ? n_chunks * chunk / secs : 0.0);
    }
    free(logits);
    free(ids);
    dsc_ctx_free(ctx);
    dsc_model_free(m);
    return rc;
}
