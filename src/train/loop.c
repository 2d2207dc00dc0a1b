/*
 * loop.c — `dsc train`: the pretraining loop around the trainer core.
 *
 *   for each step:  accum micro-batches -> mean gradient, summed expert loads
 *                   judge loss and gradient norm against the recent window
 *                   skip (fast spike) | clip, AdamW, bias update (train.h)
 *                   rollback to the last good snapshot after a run of bad steps
 *                   log, evaluate, checkpoint
 *
 * What is saved and the exact rules are documented in train.h. Everything
 * that decides the next loss — parameters, moments, biases, AdamW's step,
 * the data position, the spike windows, the snapshot and the one-shot test
 * switches — is in the checkpoint, which is what makes --resume exact.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/dist.h"
#include "core/fileio.h"
#include "core/status.h"
#include "io/config.h"
#include "io/safetensors.h"
#include "train/data.h"
#include "train/trainer.h"

#define LOOP_MIN_HISTORY 8        /* values in the window before outliers are judged */
#define LOOP_LOSS_REL 1.05        /* a loss spike is also 5% above the mean          */
#define LOOP_HIGH_REL 1.02        /* a high loss is also 2% above the mean           */
#define LOOP_GN_REL 2.0           /* a gradient-norm spike is also twice the mean    */
#define LOOP_GN_EXTREME 10.0      /* ... and, with a loss below the mean, ten times  */

dsc_train_run_params dsc_train_run_default_params(void) {
    return (dsc_train_run_params){
        .batch = 8, .seq = 128, .steps = 100, .accum = 1, .warmup = 10, .lr = 1e-3f, .min_lr = 1e-4f,
        .weight_decay = 0.1f, .clip = 1.0f, .alpha = 0.0f, .gamma = 1e-3f, .beta1 = 0.9f, .beta2 = 0.95f,
        .eps = 1e-8f, .val_frac = 0.05f, .val_batches = 8, .eval_every = 50, .save_every = 100, .init_scale = 1.0f,
        .spike_window = 32, .spike_k = 6.0f, .rollback_after = 3, .snapshot_every = 20, .max_rollbacks = 5,
        .burst_len = 1, .burst_factor = 1.0f,
    };
}

float dsc_train_lr(const dsc_train_run_params *p, int32_t s) {
    if (p->warmup > 0 && s <= p->warmup) return p->lr * (float)s / (float)p->warmup;
    const int32_t span = p->steps - p->warmup;
    const double x = span > 0 ? (double)(s - p->warmup) / span : 1.0;
    const double c = 0.5 * (1.0 + cos(M_PI * (x < 1 ? x : 1)));
    return (float)(p->min_lr + (p->lr - p->min_lr) * c);
}

/* ------------------------------------------------------------------------ */
/* State                                                                     */

/* The losses and gradient norms of the last applied steps (a ring). */
typedef struct {
    float *loss, *gn;  /* [cap]                                              */
    int32_t n, pos, cap;
} spike_window;

/* A state known to be good, to return to (train.h). */
typedef struct {
    int have;
    int32_t step;
    int64_t adam_step, epoch, cursor;  /* the data position only to report what was skipped */
    float *params, *m, *v, *bias;
    spike_window w;
} snapshot;

typedef struct {
    dsc_train_run_params p;
    dsc_trainer *t;
    dsc_tokenizer *tok;
    trn_data data;
    int32_t *batch;       /* (B, T + 1)                                   */
    uint8_t *mask;        /* (B, T) target flags, chat data only           */
    float *wt, *logp;     /* (B, T) loss weights and log-probabilities, chat data only */
    float *acc;           /* (n_floats) gradient sum, accum > 1 only       */
    int32_t *loads;       /* (L, E) routes of the step's micro-batches     */
    size_t n_loads;
    char cfg_src[FIO_PATH_MAX];
    char init_dir[FIO_PATH_MAX]; /* a random start, while it is loaded */
    float last_loss;             /* the last batch's, for the message when giving up */

    int32_t step;         /* optimizer steps applied                       */
    int64_t epoch, cursor;
    int64_t epoch0, cursor0; /* the data position before this step's batches */
    spike_window w;
    int32_t streak, rollbacks;
    int burst_fired, burst_left, inject_done;
    snapshot snap;
    FILE *log;
    double tokens_per_s;
    float mtp_loss;          /* the MTP cross-entropy of the last step's gradient */
} loop;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int window_alloc(spike_window *w, int32_t cap) {
    w->cap = cap;
    w->loss = calloc((size_t)cap, sizeof(float));
    w->gn = calloc((size_t)cap, sizeof(float));
    return w->loss && w->gn;
}

static void window_copy(spike_window *dst, const spike_window *src) {
    memcpy(dst->loss, src->loss, sizeof(float) * (size_t)src->cap);
    memcpy(dst->gn, src->gn, sizeof(float) * (size_t)src->cap);
    dst->n = src->n;
    dst->pos = src->pos;
}

static void window_push(spike_window *w, float loss, float gn) {
    w->loss[w->pos] = loss;
    w->gn[w->pos] = gn;
    w->pos = (w->pos + 1) % w->cap;
    if (w->n < w->cap) w->n++;
}

static void window_stats(const float *x, int32_t n, double *mean, double *std) {
    double s = 0, s2 = 0;
    for (int32_t i = 0; i < n; i++) s += x[i];
    *mean = n ? s / n : 0;
    for (int32_t i = 0; i < n; i++) s2 += (x[i] - *mean) * (x[i] - *mean);
    *std = n > 1 ? sqrt(s2 / (n - 1)) : 0;
}

static void loop_free(loop *L) {
    dsc_trainer_free(L->t);
    dsc_tokenizer_free(L->tok);
    trn_data_free(&L->data);
    free(L->batch);
    free(L->mask);
    free(L->wt);
    free(L->logp);
    free(L->acc);
    free(L->loads);
    free(L->w.loss);
    free(L->w.gn);
    free(L->snap.params);
    free(L->snap.m);
    free(L->snap.v);
    free(L->snap.bias);
    free(L->snap.w.loss);
    free(L->snap.w.gn);
    if (L->log) fclose(L->log);
}

/* ------------------------------------------------------------------------ */
/* Files                                                                     */

/* Writes len bytes to path through path.tmp and a rename: a checkpoint
 * file is the old one or the new one, never half of either. */
static dsc_status write_all(const char *path, const char *buf, size_t len) {
    char tmp[FIO_PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    dsc_status s = fio_write_text(tmp, buf, len);
    if (!s && rename(tmp, path) != 0) s = dsc_fail(DSC_ERR_IO, "%s: cannot rename: %s", path, strerror(errno));
    if (s) remove(tmp);
    return s;
}

/* JSON and tokenizer files: at most 1 GiB. */
static dsc_status read_small(const char *path, char **out, size_t *len) { return fio_read_file(path, (size_t)1 << 30, out, len); }

static dsc_status write_json(const char *path, cJSON *root) {
    char *text = cJSON_Print(root);
    if (!text) return dsc_fail(DSC_ERR_NOMEM, "%s: out of memory", path);
    size_t n = strlen(text);
    text[n] = '\n'; /* over the NUL */
    dsc_status s = write_all(path, text, n + 1);
    free(text);
    return s;
}

/* config.json for the checkpoint: as the source, with nextn MTP layers (the
 * trained ones; 0 when MTP was off: its tensors are not written), without
 * quantization, and with F32 weights. */
static dsc_status write_config(const char *cfg_src, const char *out_dir, int nextn) {
    char *json, dst[FIO_PATH_MAX];
    size_t len;
    dsc_status s = read_small(cfg_src, &json, &len);
    if (s || (s = fio_join(dst, out_dir, "config.json"))) {
        free(json);
        return s;
    }
    cJSON *root = cJSON_ParseWithLength(json, len);
    free(json);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return dsc_fail(DSC_ERR_FORMAT, "%s: not a JSON object", cfg_src);
    }
    if (cJSON_GetObjectItemCaseSensitive(root, "num_nextn_predict_layers"))
        cJSON_ReplaceItemInObjectCaseSensitive(root, "num_nextn_predict_layers", cJSON_CreateNumber(nextn));
    cJSON_DeleteItemFromObjectCaseSensitive(root, "quantization_config");
    cJSON_DeleteItemFromObjectCaseSensitive(root, "torch_dtype");
    cJSON_AddStringToObject(root, "torch_dtype", "float32");
    s = write_json(dst, root);
    cJSON_Delete(root);
    return s;
}

static dsc_status copy_file(const char *src, const char *dst) {
    char *buf;
    size_t len;
    dsc_status s = read_small(src, &buf, &len);
    if (!s) s = write_all(dst, buf, len);
    free(buf);
    return s;
}

/* out = the tokenizer_config.json beside tokenizer (FIO_PATH_MAX bytes). */
static void tokenizer_config_path(char *out, const char *tokenizer) {
    snprintf(out, FIO_PATH_MAX, "%s", tokenizer);
    char *slash = strrchr(out, '/');
    snprintf(slash ? slash + 1 : out, FIO_PATH_MAX - (size_t)(slash ? slash + 1 - out : 0), "tokenizer_config.json");
}

/* tokenizer.json, and tokenizer_config.json when it lies beside it. */
static dsc_status copy_tokenizer(const char *tokenizer, const char *out_dir) {
    char dst[FIO_PATH_MAX], src[FIO_PATH_MAX];
    dsc_status s = fio_join(dst, out_dir, "tokenizer.json");
    if (!s) s = copy_file(tokenizer, dst);
    if (s) return s;
    tokenizer_config_path(src, tokenizer);
    if (access(src, R_OK) != 0) return DSC_OK;
    if ((s = fio_join(dst, out_dir, "tokenizer_config.json"))) return s;
    return copy_file(src, dst);
}

/* ------------------------------------------------------------------------ */
/* Tensors in and out                                                        */

static const char *bias_name(char *buf, size_t cap, int layer) {
    snprintf(buf, cap, "model.layers.%d.mlp.gate.e_score_correction_bias", layer);
    return buf;
}

/* Writes the tensors of arenas (params, or prefix + name for each of n
 * arenas) and, with bias, the correction biases to path via path.tmp. */
static dsc_status write_tensors(const dsc_trainer *t, const char *path, const char *const *prefix, float *const *arena,
                                int n_arenas, const float *bias, const char *bias_prefix) {
    const int nl = t->n_blocks, E = t->cfg.n_routed_experts;
    const int cap = n_arenas * t->n_tensors + nl;
    dsc_tensor_view *v = calloc((size_t)cap, sizeof *v);
    char *names = malloc((size_t)cap * 192);
    if (!v || !names) {
        free(v);
        free(names);
        return dsc_fail(DSC_ERR_NOMEM, "%s: out of memory", path);
    }
    int n = 0;
    for (int a = 0; a < n_arenas; a++)
        for (int32_t i = 0; i < t->n_tensors; i++) {
            const trn_tensor *e = &t->tensors[i];
            char *nm = names + (size_t)n * 192;
            snprintf(nm, 192, "%s%s", prefix[a], e->name);
            v[n++] = (dsc_tensor_view){.name = nm, .dtype = "F32", .ndim = e->pub.ndim,
                                       .shape = {e->pub.shape[0], e->pub.shape[1]}, .data = arena[a] + e->off};
        }
    for (int i = 0; bias && i < nl; i++) {
        if (!t->has_bias[i]) continue;
        char *nm = names + (size_t)n * 192, tmp[128];
        snprintf(nm, 192, "%s%s", bias_prefix, bias_name(tmp, sizeof tmp, i));
        v[n++] = (dsc_tensor_view){.name = nm, .dtype = "F32", .ndim = 1, .shape = {E}, .data = bias + (size_t)i * E};
    }
    char tmp[FIO_PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    dsc_status s = dsc_safetensors_write(tmp, v, n, "format", "pt");
    if (!s && rename(tmp, path) != 0) s = dsc_fail(DSC_ERR_IO, "%s: cannot rename: %s", path, strerror(errno));
    free(v);
    free(names);
    return s;
}

/* Reads prefix + NAME (F32, the tensor's size) for every tensor into arena,
 * and bias_prefix + bias names into bias when bias is non-NULL. */
static dsc_status read_tensors(const loop *L, const st_file *f, const char *prefix, float *arena, const char *bias_prefix,
                               float *bias) {
    const dsc_trainer *t = L->t;
    char nm[256], tmp[128];
    for (int32_t i = 0; i < t->n_tensors + t->n_blocks; i++) {
        const int is_bias = i >= t->n_tensors, layer = i - t->n_tensors;
        if (is_bias && (!bias || !t->has_bias[layer])) continue;
        const trn_tensor *e = is_bias ? NULL : &t->tensors[i];
        snprintf(nm, sizeof nm, "%s%s", is_bias ? bias_prefix : prefix, is_bias ? bias_name(tmp, sizeof tmp, layer) : e->name);
        const int64_t numel = is_bias ? t->cfg.n_routed_experts : e->pub.numel;
        const st_tensor *st = st_find(f, nm);
        if (!st) return dsc_fail(DSC_ERR_SHAPE, "%s: tensor '%s' is missing", f->path, nm);
        if (st->dtype != ST_F32 || st_numel(st) != numel)
            return dsc_fail(DSC_ERR_SHAPE, "%s: tensor '%s' must be F32 with %lld values", f->path, nm, (long long)numel);
        memcpy(is_bias ? bias + (size_t)layer * t->cfg.n_routed_experts : arena + e->off, st->data, st->nbytes);
    }
    return DSC_OK;
}

/* ------------------------------------------------------------------------ */
/* Checkpoints                                                               */

static cJSON *window_json(const spike_window *w) {
    cJSON *o = cJSON_CreateObject();
    cJSON *l = cJSON_AddArrayToObject(o, "loss"), *g = cJSON_AddArrayToObject(o, "grad_norm");
    for (int32_t i = 0; i < w->n; i++) { /* oldest first */
        const int32_t k = (w->pos - w->n + i + w->cap) % w->cap;
        cJSON_AddItemToArray(l, cJSON_CreateNumber(w->loss[k]));
        cJSON_AddItemToArray(g, cJSON_CreateNumber(w->gn[k]));
    }
    return o;
}

static dsc_status window_from_json(spike_window *w, const cJSON *o, const char *path) {
    const cJSON *l = cJSON_GetObjectItemCaseSensitive(o, "loss"), *g = cJSON_GetObjectItemCaseSensitive(o, "grad_norm");
    if (!cJSON_IsArray(l) || !cJSON_IsArray(g) || cJSON_GetArraySize(l) != cJSON_GetArraySize(g) ||
        cJSON_GetArraySize(l) > w->cap)
        return dsc_fail(DSC_ERR_FORMAT, "%s: window: expected loss and grad_norm arrays of at most %d values", path, w->cap);
    w->n = w->pos = 0;
    for (const cJSON *a = l->child, *b = g->child; a && b; a = a->next, b = b->next) {
        if (!cJSON_IsNumber(a) || !cJSON_IsNumber(b) || !isfinite((float)a->valuedouble) || !isfinite((float)b->valuedouble))
            return dsc_fail(DSC_ERR_FORMAT, "%s: window: not a finite number", path);
        window_push(w, (float)a->valuedouble, (float)b->valuedouble);
    }
    return DSC_OK;
}

dsc_status dsc_train_save(const dsc_trainer *t, const char *config_src, const char *tokenizer, const char *out_dir) {
    char path[FIO_PATH_MAX];
    dsc_status s = write_config(config_src, out_dir, t->mtp);
    if (!s && tokenizer) s = copy_tokenizer(tokenizer, out_dir);
    if (!s && !(s = fio_join(path, out_dir, "model.safetensors"))) {
        const char *pre[1] = {""};
        float *ar[1] = {t->params};
        s = write_tensors(t, path, pre, ar, 1, t->bias, "");
    }
    return s;
}

static dsc_status save_checkpoint(loop *L) {
    dsc_trainer *t = L->t;
    char path[FIO_PATH_MAX];
    dsc_status s = dsc_train_save(t, L->cfg_src, L->p.tokenizer, L->p.out_dir);
    if (!s && !(s = fio_join(path, L->p.out_dir, "optimizer.safetensors"))) {
        const char *pre[2] = {"exp_avg.", "exp_avg_sq."};
        float *ar[2] = {t->m, t->v};
        s = write_tensors(t, path, pre, ar, 2, NULL, NULL);
    }
    if (!s && L->snap.have && !(s = fio_join(path, L->p.out_dir, "rollback.safetensors"))) {
        const char *pre[3] = {"param.", "exp_avg.", "exp_avg_sq."};
        float *ar[3] = {L->snap.params, L->snap.m, L->snap.v};
        s = write_tensors(t, path, pre, ar, 3, L->snap.bias, "bias.");
    }
    if (s) return s;
    fflush(L->log);
    cJSON *st = cJSON_CreateObject();
    cJSON_AddNumberToObject(st, "step", L->step);
    cJSON_AddNumberToObject(st, "adam_step", (double)t->step);
    cJSON_AddNumberToObject(st, "epoch", (double)L->epoch);
    cJSON_AddNumberToObject(st, "cursor", (double)L->cursor);
    cJSON_AddNumberToObject(st, "seq", L->p.seq);
    cJSON_AddNumberToObject(st, "data_tokens", (double)L->data.n_tokens);
    char hex[24];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)L->data.hash);
    cJSON_AddStringToObject(st, "data_hash", hex);
    cJSON_AddNumberToObject(st, "seed", (double)L->p.seed);
    cJSON_AddNumberToObject(st, "log_bytes", (double)ftell(L->log));
    cJSON_AddItemToObject(st, "window", window_json(&L->w));
    cJSON_AddNumberToObject(st, "streak", L->streak);
    cJSON_AddNumberToObject(st, "rollbacks", L->rollbacks);
    cJSON_AddNumberToObject(st, "burst_fired", L->burst_fired);
    cJSON_AddNumberToObject(st, "burst_left", L->burst_left);
    cJSON_AddNumberToObject(st, "inject_done", L->inject_done);
    if (L->snap.have) {
        cJSON *sn = cJSON_AddObjectToObject(st, "snapshot");
        cJSON_AddNumberToObject(sn, "step", L->snap.step);
        cJSON_AddNumberToObject(sn, "adam_step", (double)L->snap.adam_step);
        cJSON_AddNumberToObject(sn, "epoch", (double)L->snap.epoch);
        cJSON_AddNumberToObject(sn, "cursor", (double)L->snap.cursor);
        cJSON_AddItemToObject(sn, "window", window_json(&L->snap.w));
    }
    if (!(s = fio_join(path, L->p.out_dir, "trainer_state.json"))) s = write_json(path, st);
    cJSON_Delete(st);
    return s;
}

static dsc_status json_int(const cJSON *o, const char *key, const char *path, int64_t lo, int64_t hi, int64_t *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= (double)lo && v->valuedouble <= (double)hi) ||
        v->valuedouble != floor(v->valuedouble))
        return dsc_fail(DSC_ERR_FORMAT, "%s: %s: expected an integer in [%lld, %lld]", path, key, (long long)lo, (long long)hi);
    *out = (int64_t)v->valuedouble;
    return DSC_OK;
}

/* The state beside the checkpoint the trainer was loaded from. */
static dsc_status load_state(loop *L, int64_t *log_bytes) {
    char path[FIO_PATH_MAX], *json;
    size_t len;
    dsc_status s = fio_join(path, L->p.out_dir, "trainer_state.json");
    if (s || (s = read_small(path, &json, &len))) return s;
    cJSON *st = fio_parse_json(json, len);
    free(json);
    if (!cJSON_IsObject(st)) {
        s = dsc_fail(DSC_ERR_FORMAT, "%s: %s", path, st ? "not a JSON object" : fio_json_error());
        cJSON_Delete(st);
        return s;
    }
    int64_t v[12];
    const char *keys[12] = {"step", "adam_step", "epoch", "cursor", "seq", "data_tokens",
                            "log_bytes", "streak", "rollbacks", "burst_fired", "burst_left", "inject_done"};
    const int64_t big = INT64_MAX / 2, hi[12] = {INT32_MAX, big, big, big, INT32_MAX, big, big, INT32_MAX, INT32_MAX, 1,
                                                 INT32_MAX, 1};
    for (int i = 0; i < 12 && !s; i++) s = json_int(st, keys[i], path, 0, hi[i], &v[i]);
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(st, "seed");
    if (!s && (!cJSON_IsNumber(seed) || seed->valuedouble != (double)L->p.seed))
        s = dsc_fail(DSC_ERR_ARG, "%s: the checkpoint was trained with --seed %.17g, not %llu (the data order follows it)",
                     path, cJSON_IsNumber(seed) ? seed->valuedouble : NAN, (unsigned long long)L->p.seed);
    char log_path[FIO_PATH_MAX];
    struct stat lsb;
    if (!s && !(s = fio_join(log_path, L->p.out_dir, "log.jsonl")) && stat(log_path, &lsb) == 0 &&
        v[6] > (int64_t)lsb.st_size)
        s = dsc_fail(DSC_ERR_FORMAT, "%s: log_bytes %lld is beyond the %lld bytes of %s", path, (long long)v[6],
                     (long long)lsb.st_size, log_path);
    const cJSON *hash = cJSON_GetObjectItemCaseSensitive(st, "data_hash");
    char hex[24];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)L->data.hash);
    if (!s && (v[4] != L->p.seq || v[5] != L->data.n_tokens || !cJSON_IsString(hash) || strcmp(hash->valuestring, hex)))
        s = dsc_fail(DSC_ERR_ARG, "%s: the checkpoint was trained on other data or another --seq (%lld tokens, seq %lld)",
                     path, (long long)v[5], (long long)v[4]);
    if (!s && v[3] > L->data.n_train)
        s = dsc_fail(DSC_ERR_FORMAT, "%s: step or cursor out of range", path);
    if (!s) s = window_from_json(&L->w, cJSON_GetObjectItemCaseSensitive(st, "window"), path);
    if (!s) {
        L->step = (int32_t)v[0];
        L->t->step = v[1];
        L->epoch = v[2];
        L->cursor = v[3];
        *log_bytes = v[6];
        L->streak = (int32_t)v[7];
        L->rollbacks = (int32_t)v[8];
        L->burst_fired = (int)v[9];
        L->burst_left = (int)v[10];
        L->inject_done = (int)v[11];
    }
    const cJSON *sn = cJSON_GetObjectItemCaseSensitive(st, "snapshot");
    if (!s && sn) {
        int64_t a, b, c, d;
        if (!(s = json_int(sn, "step", path, 0, INT32_MAX, &a)) && !(s = json_int(sn, "adam_step", path, 0, INT64_MAX / 2, &b)) &&
            !(s = json_int(sn, "epoch", path, 0, INT64_MAX / 2, &c)) && !(s = json_int(sn, "cursor", path, 0, INT64_MAX / 2, &d)) &&
            !(s = window_from_json(&L->snap.w, cJSON_GetObjectItemCaseSensitive(sn, "window"), path))) {
            if (a > L->step || b > L->t->step || d > L->data.n_train)
                return cJSON_Delete(st), dsc_fail(DSC_ERR_FORMAT, "%s: snapshot: step, adam_step or cursor beyond the state's", path);
            L->snap = (snapshot){.have = 1, .step = (int32_t)a, .adam_step = b, .epoch = c, .cursor = d, .params = L->snap.params,
                                 .m = L->snap.m, .v = L->snap.v, .bias = L->snap.bias, .w = L->snap.w};
        }
    }
    cJSON_Delete(st);
    return s;
}

static dsc_status load_arenas(loop *L) {
    char path[FIO_PATH_MAX];
    st_file f;
    dsc_status s = fio_join(path, L->p.out_dir, "optimizer.safetensors");
    if (s || (s = st_open(path, &f))) return s;
    if (!(s = read_tensors(L, &f, "exp_avg.", L->t->m, NULL, NULL))) s = read_tensors(L, &f, "exp_avg_sq.", L->t->v, NULL, NULL);
    st_close(&f);
    if (s || !L->snap.have) return s;
    if ((s = fio_join(path, L->p.out_dir, "rollback.safetensors")) || (s = st_open(path, &f))) return s;
    if (!(s = read_tensors(L, &f, "param.", L->snap.params, "bias.", L->snap.bias)) &&
        !(s = read_tensors(L, &f, "exp_avg.", L->snap.m, NULL, NULL)))
        s = read_tensors(L, &f, "exp_avg_sq.", L->snap.v, NULL, NULL);
    st_close(&f);
    return s;
}

/* ------------------------------------------------------------------------ */
/* Snapshots and rollback                                                    */

static void snapshot_take(loop *L) {
    dsc_trainer *t = L->t;
    const size_t nb = (size_t)t->n_blocks * (size_t)(t->cfg.n_routed_experts ? t->cfg.n_routed_experts : 1);
    memcpy(L->snap.params, t->params, sizeof(float) * t->n_floats);
    memcpy(L->snap.m, t->m, sizeof(float) * t->n_floats);
    memcpy(L->snap.v, t->v, sizeof(float) * t->n_floats);
    memcpy(L->snap.bias, t->bias, sizeof(float) * nb);
    window_copy(&L->snap.w, &L->w);
    L->snap.have = 1;
    L->snap.step = L->step;
    L->snap.adam_step = t->step;
    L->snap.epoch = L->epoch0; /* the batches of the step to come are not in it */
    L->snap.cursor = L->cursor0;
}

static void snapshot_restore(loop *L) {
    dsc_trainer *t = L->t;
    const size_t nb = (size_t)t->n_blocks * (size_t)(t->cfg.n_routed_experts ? t->cfg.n_routed_experts : 1);
    memcpy(t->params, L->snap.params, sizeof(float) * t->n_floats);
    memcpy(t->m, L->snap.m, sizeof(float) * t->n_floats);
    memcpy(t->v, L->snap.v, sizeof(float) * t->n_floats);
    memcpy(t->bias, L->snap.bias, sizeof(float) * nb);
    window_copy(&L->w, &L->snap.w);
    t->step = L->snap.adam_step;
    t->have_grad = 0;
    L->step = L->snap.step;
}

/* ------------------------------------------------------------------------ */
/* Log lines                                                                 */

typedef struct {
    char *s;
    size_t n, cap;
} strbuf;

static void sb_printf(strbuf *b, const char *fmt, ...) DSC_PRINTF(2, 3);
static void sb_printf(strbuf *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) return;
        if (b->s && b->n + (size_t)k < b->cap) {
            b->n += (size_t)k;
            return;
        }
        size_t c = b->cap ? b->cap * 2 : 1024;
        while (c < b->n + (size_t)k + 1) c *= 2;
        char *p = realloc(b->s, c);
        if (!p) return;
        b->s = p;
        b->cap = c;
    }
}

/* A float for JSON: non-finite values become null. */
static void sb_num(strbuf *b, const char *key, double x) {
    if (isfinite(x)) sb_printf(b, ",\"%s\":%.7g", key, x);
    else sb_printf(b, ",\"%s\":null", key);
}

static void emit(loop *L, strbuf *b, int32_t step, float loss, float val, float lr, float gn, const char *event) {
    if (L->log) fprintf(L->log, "%s\n", b->s ? b->s : "{}"); /* rank 0 only */
    if (L->p.on_report && dist_rank() == 0) {
        dsc_train_report r = {.step = step, .loss = loss, .val_loss = val, .lr = lr, .grad_norm = gn,
                              .tokens_per_s = (float)L->tokens_per_s, .event = event, .json = b->s ? b->s : "{}"};
        L->p.on_report(L->p.user, &r);
    }
    free(b->s);
    *b = (strbuf){0};
}

/* Expert load max / mean and bias range of each layer (null for dense ones). */
static void sb_moe(strbuf *b, const loop *L) {
    const dsc_trainer *t = L->t;
    const int nl = t->cfg.n_layers, E = t->cfg.n_routed_experts;
    for (int pass = 0; pass < 3; pass++) {
        sb_printf(b, pass == 0 ? ",\"expert_load_max_mean\":[" : pass == 1 ? "],\"bias_min\":[" : "],\"bias_max\":[");
        for (int i = 0; i < nl; i++) {
            const int32_t *ld = L->loads + (size_t)i * E;
            const float *bias = t->bias + (size_t)i * E;
            double sum = 0, mx = 0, lo = E ? bias[0] : 0, hi = lo;
            for (int e = 0; e < E; e++) {
                sum += ld[e];
                mx = ld[e] > mx ? ld[e] : mx;
                lo = bias[e] < lo ? bias[e] : lo;
                hi = bias[e] > hi ? bias[e] : hi;
            }
            const int have = pass == 0 ? t->w.layers[i].is_moe && sum > 0 : t->has_bias[i];
            const double x = pass == 0 ? mx / (sum / E) : pass == 1 ? lo : hi;
            if (have) sb_printf(b, "%s%.5g", i ? "," : "", x);
            else sb_printf(b, "%snull", i ? "," : "");
        }
    }
    sb_printf(b, "]");
}

/* ------------------------------------------------------------------------ */
/* Setup                                                                     */

static dsc_status check_params(const dsc_train_run_params *p) {
    if ((!p->init && !p->resume) || !p->tokenizer || !p->out_dir || !p->data || p->n_data < 1)
        return dsc_fail(DSC_ERR_ARG, "train: a config or checkpoint, data files, a tokenizer and an output directory are needed");
    if (p->batch < 1 || p->seq < 1 || p->steps < 1 || p->accum < 1 || p->accum > 1 << 16 || p->warmup < 0)
        return dsc_fail(DSC_ERR_ARG, "train: batch, seq, steps and accum must be >= 1 and warmup >= 0");
    if (!(p->lr >= 0 && p->lr < 1e3) || !(p->min_lr >= 0) || !(p->clip >= 0 || p->clip < 0) || !(p->val_frac >= 0 && p->val_frac < 1))
        return dsc_fail(DSC_ERR_ARG, "train: lr, min_lr or val_frac out of range");
    if (p->spike_window < 2 || p->spike_window > 1 << 16 || !(p->spike_k > 0) || p->rollback_after < 1 ||
        p->snapshot_every < 1 || p->max_rollbacks < 0)
        return dsc_fail(DSC_ERR_ARG, "train: spike_window >= 2, spike_k > 0, rollback_after >= 1, snapshot_every >= 1 needed");
    if (p->burst_step > 0 && (p->burst_len < 1 || !(p->burst_factor > 0)))
        return dsc_fail(DSC_ERR_ARG, "train: an lr burst needs a length >= 1 and a factor > 0");
    return DSC_OK;
}

/* Training-friendly scale of a random start (train.h). */
static void adjust_init(dsc_trainer *t, float init_scale) {
    const float resid = 1.0f / sqrtf(2.0f * (float)t->cfg.n_layers);
    for (int32_t i = 0; i < t->n_tensors; i++) {
        const trn_tensor *e = &t->tensors[i];
        if (e->pub.ndim != 2) continue;
        const size_t n = strlen(e->name);
        const int out = (n >= 13 && !strcmp(e->name + n - 13, "o_proj.weight")) ||
                        (n >= 16 && !strcmp(e->name + n - 16, "down_proj.weight"));
        const float f = init_scale * (out ? resid : 1.0f);
        float *w = t->params + e->off;
        for (int64_t k = 0; k < e->pub.numel; k++) w[k] *= f;
    }
    memset(t->bias, 0, sizeof(float) * (size_t)t->n_blocks * (size_t)(t->cfg.n_routed_experts ? t->cfg.n_routed_experts : 1));
}

static int is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* The random start's directory, once loaded (what dsc_init_checkpoint
 * writes into it). */
static void remove_init_dir(const char *dir) {
    static const char *const files[] = {"config.json", "model.safetensors", "model.safetensors.index.json"};
    char path[FIO_PATH_MAX];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        if (!fio_join(path, dir, files[i])) unlink(path);
    rmdir(dir);
}

/* --resume with CONFIG_OR_DIR given as well: it must describe the run's
 * model (run_cfg, read from run_src), or the run would go on as something
 * other than what the command line says. */
static dsc_status same_model(const char *init, const dsc_config *run_cfg, const char *run_src) {
    char path[FIO_PATH_MAX];
    const char *src = init;
    dsc_status s;
    if (is_dir(init)) {
        if ((s = fio_join(path, init, "config.json"))) return s;
        src = path;
    }
    dsc_config c;
    if ((s = config_load(src, &c))) return s;
    c.n_nextn_layers = run_cfg->n_nextn_layers; /* checkpoints keep only the MTP layers trained (write_config) */
    const char *field = config_diff(&c, run_cfg);
    if (field)
        return dsc_fail(DSC_ERR_ARG, "%s: its %s differs from the run's %s: --resume goes on with the run as it began "
                        "(leave %s out, or train into another -o)", src, field, run_src, init);
    return DSC_OK;
}

/* Loads (or creates) the model and everything sized by it. */
static dsc_status setup_model(loop *L) {
    const dsc_train_run_params *p = &L->p;
    dsc_train_params tp = dsc_train_default_params();
    tp.n_batch = p->batch;
    tp.n_seq = p->seq;
    tp.n_threads = p->threads;
    tp.isa = p->isa;
    tp.alpha = p->alpha;
    tp.gamma = p->gamma;
    tp.mtp_lambda = p->mtp_lambda;
    tp.lr = p->lr;
    tp.beta1 = p->beta1;
    tp.beta2 = p->beta2;
    tp.eps = p->eps;
    tp.weight_decay = p->weight_decay;
    dsc_status s;
    const char *dir = p->out_dir;
    int fresh = 0;
    if (p->chat && p->mtp_lambda > 0)
        return dsc_fail(DSC_ERR_ARG, "--mtp-lambda is for pretraining (dsc train), not fine-tuning on chat data");
    if (p->resume) {
        if ((s = fio_join(L->cfg_src, p->out_dir, "config.json"))) return s;
    } else if (is_dir(p->init)) {
        dir = p->init;
        if ((s = fio_join(L->cfg_src, p->init, "config.json"))) return s;
    } else {
        /* A random start, written to a directory of its own inside the
         * output one and loaded from there: nothing of an older run in the
         * output directory is replaced before the first checkpoint, so a
         * run that fails on its inputs leaves that run whole. */
        snprintf(L->cfg_src, sizeof L->cfg_src, "%s", p->init);
        dsc_config cfg;
        if ((s = config_load(p->init, &cfg))) return s;
        if (p->seq > cfg.max_position_embeddings)
            return dsc_fail(DSC_ERR_ARG, "%s: --seq %d exceeds max_position_embeddings %d", p->init, p->seq,
                            cfg.max_position_embeddings);
        if (p->mtp_lambda > 0 && cfg.n_nextn_layers < 1)
            return dsc_fail(DSC_ERR_ARG, "%s: num_nextn_predict_layers 0: no MTP layer to train (--mtp-lambda)", p->init);
        dsc_init_params ip = dsc_init_default_params();
        ip.seed = p->seed;
        ip.dtype = "f32";
        char name[64];
        if (dist_size() > 1) snprintf(name, sizeof name, "initial-weights.rank%d.tmp", dist_rank());
        else snprintf(name, sizeof name, "initial-weights.tmp");
        if ((s = fio_join(L->init_dir, p->out_dir, name))) return s;
        dir = L->init_dir;
        s = dsc_init_checkpoint(p->init, dir, &ip);
        if (!s) s = dsc_trainer_new(dir, &tp, &L->t);
        remove_init_dir(L->init_dir);
        if (s) return s;
        fresh = 1;
    }
    if (!fresh && (s = dsc_trainer_new(dir, &tp, &L->t))) return s;
    dsc_trainer *t = L->t;
    if (p->resume && p->init && (s = same_model(p->init, &t->cfg, L->cfg_src))) return s;
    if (fresh) adjust_init(t, p->init_scale);
    const size_t nf = t->n_floats, nb = (size_t)t->n_blocks * (size_t)(t->cfg.n_routed_experts ? t->cfg.n_routed_experts : 1);
    L->n_loads = nb;
    L->loads = calloc(nb, sizeof(int32_t));
    L->batch = malloc(sizeof(int32_t) * (size_t)p->batch * ((size_t)p->seq + 1));
    if (p->chat) {
        const size_t n = (size_t)p->batch * (size_t)p->seq;
        L->mask = malloc(n);
        L->wt = malloc(sizeof(float) * n);
        L->logp = malloc(sizeof(float) * n);
        if (!L->mask || !L->wt || !L->logp) return dsc_fail(DSC_ERR_NOMEM, "train: out of memory for a batch");
    }
    const int acc = p->accum > 1 || dist_size() > 1;
    L->acc = acc ? malloc(sizeof(float) * nf) : NULL;
    L->snap.params = malloc(sizeof(float) * nf);
    L->snap.m = malloc(sizeof(float) * nf);
    L->snap.v = malloc(sizeof(float) * nf);
    L->snap.bias = calloc(nb, sizeof(float));
    if (!L->loads || !L->batch || (acc && !L->acc) || !L->snap.params || !L->snap.m || !L->snap.v ||
        !L->snap.bias || !window_alloc(&L->w, p->spike_window) || !window_alloc(&L->snap.w, p->spike_window))
        return dsc_fail(DSC_ERR_NOMEM, "train: out of memory for %zu parameters' optimizer state", nf);
    return DSC_OK;
}

static dsc_status setup_data(loop *L) {
    const dsc_train_run_params *p = &L->p;
    dsc_status s = dsc_tokenizer_load(p->tokenizer, &L->tok);
    if (s) return s;
    /* the checkpoints copy the chat template beside the tokenizer: a bad one
     * is found now rather than when the first one is written */
    char tc[FIO_PATH_MAX];
    unsigned flags = 0;
    tokenizer_config_path(tc, p->tokenizer);
    if ((s = dsc_chat_detect(tc, &flags))) return s;
    const int32_t nv = dsc_tokenizer_n_vocab(L->tok);
    if (nv > L->t->cfg.vocab_size)
        return dsc_fail(DSC_ERR_ARG, "%s: %d token ids do not fit the model's vocab_size %d", p->tokenizer, nv,
                        L->t->cfg.vocab_size);
    int32_t eos = dsc_tokenizer_find(L->tok, "<｜end▁of▁sentence｜>");
    if (eos < 0) eos = L->t->cfg.eos_token_id;
    if (eos < 0 || eos >= L->t->cfg.vocab_size)
        return dsc_fail(DSC_ERR_ARG, "%s: no <｜end▁of▁sentence｜> token and no eos_token_id", p->tokenizer);
    if (p->inject_step > 0 && (p->inject_token < 0 || p->inject_token >= L->t->cfg.vocab_size))
        return dsc_fail(DSC_ERR_ARG, "train: injected token %d is out of range", p->inject_token);
    if (p->chat) return trn_data_load_chat(&L->data, L->tok, p->data, p->n_data, eos, p->seq, p->val_frac, p->seed);
    return trn_data_load(&L->data, L->tok, p->data, p->n_data, eos, p->seq, p->val_frac, p->seed);
}

static dsc_status open_log(loop *L, int64_t keep_bytes) {
    char path[FIO_PATH_MAX];
    dsc_status s = fio_join(path, L->p.out_dir, "log.jsonl");
    if (s) return s;
    if (keep_bytes >= 0) {
        if (truncate(path, keep_bytes) != 0) return dsc_fail(DSC_ERR_IO, "%s: cannot truncate: %s", path, strerror(errno));
    }
    return fio_create(path, keep_bytes >= 0, &L->log);
}

/* ------------------------------------------------------------------------ */
/* Steps                                                                     */

/* Chat data: the mean cross-entropy over the answer tokens of the batch in
 * L->batch / L->mask (NaN when it holds none), and with grad its gradient. */
static dsc_status masked_pass(loop *L, int32_t B, int grad, float *ce, float *aux) {
    const int32_t T = L->p.seq, N = B * T;
    dsc_status s = dsc_train_forward(L->t, L->batch, B, T, L->logp, NULL, aux);
    if (s) return s;
    int64_t cnt = 0;
    for (int32_t n = 0; n < N; n++) cnt += L->mask[n];
    double sum = 0;
    for (int32_t n = 0; n < N; n++) {
        L->wt[n] = cnt ? (float)L->mask[n] / (float)cnt : 0.0f;
        if (L->mask[n]) sum -= L->logp[n];
    }
    *ce = cnt ? (float)(sum / (double)cnt) : NAN;
    return grad ? dsc_train_backward(L->t, L->wt) : DSC_OK;
}

static float val_loss(loop *L) {
    const int32_t B = L->p.batch, T = L->p.seq;
    int64_t n = L->data.n_val;
    if (L->p.val_batches > 0 && n > (int64_t)L->p.val_batches * B) n = (int64_t)L->p.val_batches * B;
    if (n == 0) return NAN;
    double sum = 0; /* NaN on a rank where a pass failed, and so the sum */
    for (int64_t i = 0, j = 0; i < n; i += B, j++) {
        if (j % dist_size() != dist_rank()) continue; /* the batches dealt out to the ranks */
        const int32_t nb = (int32_t)(n - i < B ? n - i : B);
        float ce = NAN;
        trn_data_val(&L->data, i, nb, L->batch, L->mask);
        if (L->p.chat ? masked_pass(L, nb, 0, &ce, NULL) : dsc_train_eval(L->t, L->batch, nb, T, &ce, NULL)) sum = NAN;
        sum += (double)ce * nb;
    }
    if (dist_sum_f64(&sum, 1)) return NAN;
    return (float)(sum / (double)n);
}

static double grad_norm(const dsc_trainer *t) {
    double s = 0;
    for (size_t i = 0; i < t->n_floats; i++) s += (double)t->grads[i] * t->grads[i];
    return sqrt(s);
}

/* Gradient of one step: the mean over accum micro-batches of every rank, the
 * loads summed. The ranks read the same stream of micro-batches, accum x ranks
 * a step, and each computes every ranks-th one: the step of `mpirun -np R` is
 * that of one process with accum x R, up to the order of the sums. */
static dsc_status step_grad(loop *L, int32_t s, float *loss, float *aux) {
    dsc_trainer *t = L->t;
    const int32_t B = L->p.batch, T = L->p.seq, R = dist_size(), me = dist_rank(), K = L->p.accum * R;
    const int inject = L->p.inject_step > 0 && s == L->p.inject_step && !L->inject_done;
    double sums[3] = {0}; /* cross-entropy, balance loss, MTP loss */
    memset(L->loads, 0, sizeof(int32_t) * L->n_loads);
    for (int32_t k = 0; k < K; k++) {
        float ce = 0, ax = 0;
        dsc_status st = trn_data_next(&L->data, &L->epoch, &L->cursor, B, L->batch, L->mask);
        if (st) return st;
        if (k % R != me) continue;
        if (inject)
            for (size_t i = 0; i < (size_t)B * (T + 1); i++) L->batch[i] = L->p.inject_token;
        if ((st = L->p.chat ? masked_pass(L, B, 1, &ce, &ax) : dsc_train_grad(t, L->batch, B, T, &ce, &ax))) return st;
        sums[0] += ce;
        sums[1] += ax;
        if (L->p.mtp_lambda > 0) sums[2] += dsc_train_loss_mtp(t);
        for (size_t i = 0; i < L->n_loads; i++) L->loads[i] += t->grad_load[i];
        if (K == 1) break;
        const float f = 1.0f / (float)K;
        if (k == me)
            for (size_t i = 0; i < t->n_floats; i++) L->acc[i] = f * t->grads[i];
        else
            for (size_t i = 0; i < t->n_floats; i++) L->acc[i] += f * t->grads[i];
    }
    if (inject) L->inject_done = 1;
    if (K > 1) {
        dsc_status st;
        if ((st = dist_sum_f32(L->acc, t->n_floats)) || (st = dist_sum_i32(L->loads, L->n_loads)) ||
            (st = dist_sum_f64(sums, 3)))
            return st;
        memcpy(t->grads, L->acc, sizeof(float) * t->n_floats);
        memcpy(t->grad_load, L->loads, sizeof(int32_t) * L->n_loads);
    }
    *loss = (float)(sums[0] / K);
    *aux = (float)(sums[1] / K);
    L->mtp_loss = (float)(sums[2] / K);
    return DSC_OK;
}

typedef enum { JUDGE_OK, JUDGE_HIGH, JUDGE_SKIP } judgement;

static judgement judge(const loop *L, float loss, float gn, const char **why, double *mean, double *std) {
    const spike_window *w = &L->w;
    double gm, gs;
    window_stats(w->loss, w->n, mean, std);
    window_stats(w->gn, w->n, &gm, &gs);
    const double k = L->p.spike_k;
    if (!isfinite(loss) || !isfinite(gn)) {
        *why = "nonfinite";
        return JUDGE_SKIP;
    }
    if (w->n < LOOP_MIN_HISTORY) return JUDGE_OK;
    if (loss > *mean + k * *std && loss > LOOP_LOSS_REL * *mean) {
        *why = "loss";
        return JUDGE_SKIP;
    }
    /* A large gradient on a batch whose loss is below the mean is the model
     * learning fast (a new phase of training; clipping bounds the step), not
     * a spike, unless it is extreme. */
    if (gn > gm + k * gs && gn > LOOP_GN_REL * gm && (loss > *mean || gn > LOOP_GN_EXTREME * gm)) {
        *why = "grad_norm";
        return JUDGE_SKIP;
    }
    if (loss > *mean + 0.5 * k * *std && loss > LOOP_HIGH_REL * *mean) {
        *why = "loss_high";
        return JUDGE_HIGH;
    }
    return JUDGE_OK;
}

static dsc_status rollback(loop *L) {
    strbuf b = {0};
    const int32_t from = L->step;
    if (!L->snap.have || L->rollbacks >= L->p.max_rollbacks) {
        sb_printf(&b, "{\"step\":%d,\"event\":\"diverged\",\"rollbacks\":%d}", from, L->rollbacks);
        emit(L, &b, from, NAN, NAN, 0, NAN, "diverged");
        return isfinite(L->last_loss)
                   ? dsc_fail(DSC_ERR_ARG, "train: the loss stays high at step %d after %d rollbacks; giving up", from,
                              L->rollbacks)
                   : dsc_fail(DSC_ERR_ARG, "train: the loss is not finite at step %d after %d rollbacks; giving up%s",
                              from, L->rollbacks, from == 0 ? " (are the starting weights finite?)" : "");
    }
    const int64_t skipped = (L->epoch - L->snap.epoch) * L->data.n_train + (L->cursor - L->snap.cursor);
    snapshot_restore(L);
    L->rollbacks++;
    L->streak = 0;
    L->burst_left = 0;
    sb_printf(&b, "{\"step\":%d,\"event\":\"rolled_back\",\"from_step\":%d,\"to_step\":%d,\"skipped_sequences\":%lld,\"rollbacks\":%d}",
              L->step, from, L->step, (long long)skipped, L->rollbacks);
    emit(L, &b, L->step, NAN, NAN, 0, NAN, "rolled_back");
    return DSC_OK;
}

/* One batch: a step applied, or skipped; rollback when bad ones pile up.
 * *applied tells which. */
static dsc_status iterate(loop *L, int *applied) {
    dsc_trainer *t = L->t;
    const int32_t s = L->step + 1;
    const double t0 = now_s();
    float loss, aux;
    *applied = 0;
    L->epoch0 = L->epoch;
    L->cursor0 = L->cursor;
    dsc_status st = step_grad(L, s, &loss, &aux);
    if (st) return st;
    L->last_loss = loss;
    const float gn = (float)grad_norm(t);
    const char *why = "";
    double mean, std;
    const judgement j = judge(L, loss, gn, &why, &mean, &std);
    if (L->p.burst_step > 0 && s == L->p.burst_step && !L->burst_fired && j != JUDGE_SKIP) {
        L->burst_fired = 1;
        L->burst_left = L->p.burst_len;
    }
    float lr = dsc_train_lr(&L->p, s) * (L->burst_left > 0 ? L->p.burst_factor : 1.0f);
    strbuf b = {0};
    if (j == JUDGE_SKIP) {
        L->streak++;
        sb_printf(&b, "{\"step\":%d,\"event\":\"skipped\",\"reason\":\"%s\"", s, why);
        sb_num(&b, "loss", loss);
        sb_num(&b, "grad_norm", gn);
        sb_num(&b, "window_mean", mean);
        sb_num(&b, "window_std", std);
        sb_printf(&b, ",\"streak\":%d}", L->streak);
        emit(L, &b, s, loss, NAN, lr, gn, "skipped");
    } else {
        L->streak = j == JUDGE_HIGH ? L->streak + 1 : 0;
        if (L->streak == 0 && L->step % L->p.snapshot_every == 0) snapshot_take(L);
        const float scale = L->p.clip > 0 && gn > L->p.clip ? L->p.clip / gn : 1.0f;
        if (scale != 1.0f)
            for (size_t i = 0; i < t->n_floats; i++) t->grads[i] *= scale;
        if ((st = dsc_train_step(t, lr))) return st;
        if (L->burst_left > 0) L->burst_left--;
        L->step = s;
        window_push(&L->w, loss, gn);
        const double dt = now_s() - t0;
        L->tokens_per_s = dt > 0 ? (double)L->p.batch * L->p.seq * L->p.accum * dist_size() / dt : 0;
        float vl = NAN;
        const int last = s == L->p.steps || (L->p.stop_at > 0 && s == L->p.stop_at);
        if ((L->p.eval_every > 0 && s % L->p.eval_every == 0) || last) vl = val_loss(L);
        sb_printf(&b, "{\"step\":%d", s);
        sb_num(&b, "loss", loss);
        if (L->p.alpha > 0) sb_num(&b, "aux_loss", aux);
        if (L->p.mtp_lambda > 0) sb_num(&b, "mtp_loss", L->mtp_loss);
        if (!isnan(vl)) sb_num(&b, "val_loss", vl);
        sb_num(&b, "lr", lr);
        sb_num(&b, "grad_norm", gn);
        sb_printf(&b, ",\"tokens_per_s\":%.1f", L->tokens_per_s);
        if (j == JUDGE_HIGH) sb_printf(&b, ",\"loss_high\":true,\"streak\":%d", L->streak);
        sb_moe(&b, L);
        sb_printf(&b, "}");
        emit(L, &b, s, loss, vl, lr, gn, j == JUDGE_HIGH ? "loss_high" : NULL);
        *applied = 1;
    }
    if (L->streak >= L->p.rollback_after) {
        *applied = 0;
        return rollback(L);
    }
    return DSC_OK;
}

static dsc_status checkpoint(loop *L) {
    if (dist_rank() != 0) return DSC_OK; /* rank 0 writes for all: they hold the same weights */
    dsc_status s = save_checkpoint(L);
    if (s) return s;
    strbuf b = {0};
    sb_printf(&b, "{\"step\":%d,\"event\":\"checkpoint\"}", L->step);
    /* not in the log: a resumed run must write the same lines as an uninterrupted one */
    if (L->p.on_report) {
        dsc_train_report r = {.step = L->step, .loss = NAN, .val_loss = NAN, .event = "checkpoint", .json = b.s ? b.s : ""};
        L->p.on_report(L->p.user, &r);
    }
    free(b.s);
    return DSC_OK;
}

dsc_status dsc_train_run(const dsc_train_run_params *params) {
    loop L = {.p = *params};
    int64_t log_bytes = -1;
    dsc_status s = check_params(&L.p);
    /* rank 0 makes the directory (the others write their random start's
     * files in it); it is removed again if the run fails before writing */
    const int created = !s && !L.p.resume && dist_rank() == 0 && !is_dir(L.p.out_dir);
    if (!s && !L.p.resume && dist_rank() == 0) s = fio_mkdirs(L.p.out_dir);
    s = dist_agree(s);
    if (!s) s = setup_model(&L);
    if (!s) s = setup_data(&L);
    if (!s && L.p.resume) s = load_state(&L, &log_bytes);
    if (!s && L.p.resume) s = load_arenas(&L);
    s = dist_agree(s); /* every rank set up, or every rank stops here */
    if (!s) s = dist_bcast_f32(L.t->params, L.t->n_floats); /* the same start on every rank */
    if (!s && !L.p.resume && dist_rank() == 0) { /* a fresh run leaves nothing of an older one */
        char path[FIO_PATH_MAX];
        const char *stale[3] = {"trainer_state.json", "optimizer.safetensors", "rollback.safetensors"};
        for (int i = 0; i < 3 && !s; i++)
            if (!(s = fio_join(path, L.p.out_dir, stale[i]))) remove(path);
    }
    if (!s && dist_rank() == 0) s = open_log(&L, log_bytes);
    const int32_t end = L.p.stop_at > 0 && L.p.stop_at < L.p.steps ? L.p.stop_at : L.p.steps;
    if (!s && L.p.resume && L.step >= end && L.p.on_report && dist_rank() == 0) { /* said, so that "0 steps" is not a riddle */
        strbuf b = {0};
        sb_printf(&b, "{\"step\":%d,\"event\":\"nothing_to_do\",\"end\":%d}", L.step, end);
        dsc_train_report r = {.step = L.step, .loss = NAN, .val_loss = NAN, .event = "nothing_to_do", .json = b.s ? b.s : ""};
        L.p.on_report(L.p.user, &r);
        free(b.s);
    }
    int dirty = 0;
    while (!s && L.step < end) {
        if (dist_any(L.p.interrupt && *L.p.interrupt)) break; /* every rank stops after the same step */
        int applied = 0;
        s = iterate(&L, &applied);
        if (!s && applied) dirty = 1;
        if (!s && applied && L.p.save_every > 0 && L.step % L.p.save_every == 0 && L.step < end) {
            s = checkpoint(&L);
            dirty = 0;
        }
    }
    /* the ranks took the same steps: a difference is a fault of the sums, not a result to save */
    if (!s && !dist_same(L.t->params, sizeof(float) * L.t->n_floats))
        s = dsc_fail(DSC_ERR_IO, "train: the %d MPI ranks' weights differ after step %d", dist_size(), L.step);
    if (!s && (dirty || !L.p.resume)) s = checkpoint(&L);
    loop_free(&L);
    if (s && created && dist_rank() == 0) rmdir(L.p.out_dir); /* only when empty: a run that wrote nothing leaves nothing */
    return s;
}
