/*
 * ckpt_init.c — random-weight checkpoints in the Hugging Face layout.
 *
 * dsc_init_checkpoint plans every tensor a DeepSeek-V2/V3 checkpoint of a
 * config carries (the names deepseek_load.c looks up, plus V3's MTP layers
 * num_hidden_layers + j), assigns them to shards, writes each shard's header
 * and then streams the values a few MB at a time: the model is never held in
 * memory. Chunks of whole rows are generated and written by one thread per
 * core (at most CI_MAX_THREADS), each with its own buffers and pwrite().
 *
 * Values are a counter-based hash of (seed, tensor name, element index), so
 * they do not depend on the sharding, the chunking or the threads, and the
 * bf16, f32 and fp8 checkpoints of one seed are roundings of the same numbers:
 *   matrices [out, in]          N(0, 1/in)   (Irwin-Hall of 4 uniforms, |z| < 3.47)
 *   norm weights                1 + 0.1 N(0, 1)
 *   e_score_correction_bias     U(-0.05, 0.05), always F32
 * fp8 follows DeepSeek-V3's release: the projections inside decoder layers
 * are e4m3fn with an F32 `weight_scale_inv` per 128x128 block (amax / 448);
 * embed, lm_head, the router gate, norms and eh_proj stay BF16. The MTP
 * layers stay BF16 throughout, as in the golden v3-fp8-tiny checkpoint.
 *
 * Within a shard the data is ordered F32, then BF16, then F8 (plan order
 * inside each), so every tensor is aligned to its element size without holes.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fileio.h"
#include "core/status.h"
#include "io/config.h"
#include "io/safetensors.h"
#include "kernels/kernels.h"

#define CI_MAX_TENSORS (1 << 23)   /* DeepSeek-V3 671B has ~92k                 */
#define CI_CHUNK ((size_t)1 << 20) /* elements generated per write (4 MB of F32) */
#define CI_MAX_THREADS 16          /* writers: one per core, at most this many  */
#define CI_BLOCK 128               /* FP8 weight_block_size, both dimensions     */
#define CI_GOLDEN 0x9E3779B97F4A7C15ull

typedef enum { CI_W_BF16, CI_W_F32, CI_W_FP8 } ci_wtype;
typedef enum { CI_MAT, CI_NORM, CI_BIAS, CI_SCALE } ci_kind;

typedef struct {
    char *name;
    ci_kind kind;
    st_dtype dtype;
    int ndim;            /* 1: shape [cols]; 2: [rows, cols]                  */
    int64_t rows, cols;
    int scale;           /* index of this FP8 weight's weight_scale_inv, or -1 */
    int shard;
    uint64_t offset;     /* from the start of the shard's data section        */
    uint64_t nbytes;
} ci_tensor;

typedef struct {
    const dsc_config *c;
    ci_wtype wtype;
    ci_tensor *t;
    int n, cap;
    uint64_t total;      /* bytes of all tensors                              */
    dsc_status err;
} ci_plan;

/* ------------------------------------------------------------------------ */
/* Values                                                                    */

/* splitmix64's finaliser (Steele, Lea, Flood 2014). */
static inline uint64_t ci_mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t ci_key(uint64_t seed, const char *name) {
    uint64_t h = 0xCBF29CE484222325ull; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 0x100000001B3ull;
    return ci_mix(h ^ ci_mix(seed + CI_GOLDEN));
}

/* Element idx of the stream key: N(0, 1) approximated by the sum of four
 * 16-bit uniforms (mean 131070, sd 65536 / sqrt(3)). */
static inline float ci_normal(uint64_t key, uint64_t idx) {
    uint64_t x = ci_mix(key + (idx + 1) * CI_GOLDEN);
    uint32_t s = (uint32_t)(x & 0xFFFF) + (uint32_t)((x >> 16) & 0xFFFF) + (uint32_t)((x >> 32) & 0xFFFF) +
                 (uint32_t)(x >> 48);
    return ((float)s - 131070.0f) * (1.7320508f / 65536.0f);
}

static inline float ci_uniform(uint64_t key, uint64_t idx) { /* [0, 1) */
    return (float)(ci_mix(key + (idx + 1) * CI_GOLDEN) >> 40) * (1.0f / 16777216.0f);
}

/* Values of n elements from element i0 on (row-major). */
static void ci_fill(const ci_tensor *t, uint64_t key, uint64_t i0, size_t n, float *out) {
    switch (t->kind) {
    case CI_MAT: {
        const float sd = (float)(1.0 / sqrt((double)t->cols));
        for (size_t i = 0; i < n; i++) out[i] = sd * ci_normal(key, i0 + i);
        break;
    }
    case CI_NORM:
        for (size_t i = 0; i < n; i++) out[i] = 1.0f + 0.1f * ci_normal(key, i0 + i);
        break;
    case CI_BIAS:
        for (size_t i = 0; i < n; i++) out[i] = 0.05f * (2.0f * ci_uniform(key, i0 + i) - 1.0f);
        break;
    case CI_SCALE: break; /* written with its weight */
    }
}

static inline uint16_t ci_bf16(float x) { /* round to nearest even; x is finite */
    uint32_t u;
    memcpy(&u, &x, 4);
    u += 0x7FFF + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}


/* ------------------------------------------------------------------------ */
/* Plan                                                                      */

/* Appends one tensor; returns its index, or -1 with p->err set. */
static int ci_add(ci_plan *p, ci_kind kind, st_dtype dt, int ndim, int64_t rows, int64_t cols, const char *fmt, ...)
    DSC_PRINTF(7, 8);
static int ci_add(ci_plan *p, ci_kind kind, st_dtype dt, int ndim, int64_t rows, int64_t cols, const char *fmt, ...) {
    if (p->err) return -1;
    if (p->n == CI_MAX_TENSORS) {
        p->err = dsc_fail(DSC_ERR_CONFIG, "init: the config needs more than %d tensors", CI_MAX_TENSORS);
        return -1;
    }
    if (p->n == p->cap) {
        int cap = p->cap ? p->cap * 2 : 1024;
        ci_tensor *nt = realloc(p->t, sizeof *nt * (size_t)cap);
        if (!nt) {
            p->err = dsc_fail(DSC_ERR_NOMEM, "init: out of memory");
            return -1;
        }
        p->t = nt;
        p->cap = cap;
    }
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    ci_tensor *t = &p->t[p->n];
    *t = (ci_tensor){.name = strdup(name), .kind = kind, .dtype = dt, .ndim = ndim, .rows = rows, .cols = cols,
                     .scale = -1};
    size_t nb;
    if (!t->name) {
        p->err = dsc_fail(DSC_ERR_NOMEM, "init: out of memory");
        return -1;
    }
    if (!dsc_mul_size((size_t)rows, (size_t)cols, &nb) || !dsc_mul_size(nb, st_dtype_size(dt), &nb) ||
        !dsc_add_size(p->total, nb, &nb)) {
        free(t->name);
        p->err = dsc_fail(DSC_ERR_CONFIG, "init: tensor '%s' overflows the checkpoint size", name);
        return -1;
    }
    t->nbytes = nb - p->total;
    p->total = nb;
    return p->n++;
}

/* A matrix [rows, cols]; fp8_ok: stored as e4m3 + block scales under --dtype fp8. */
static void ci_mat(ci_plan *p, int fp8_ok, int64_t rows, int64_t cols, const char *name) {
    st_dtype dt = p->wtype == CI_W_F32 ? ST_F32 : (p->wtype == CI_W_FP8 && fp8_ok) ? ST_F8_E4M3 : ST_BF16;
    int w = ci_add(p, CI_MAT, dt, 2, rows, cols, "%s", name);
    if (w < 0 || dt != ST_F8_E4M3) return;
    int s = ci_add(p, CI_SCALE, ST_F32, 2, (rows + CI_BLOCK - 1) / CI_BLOCK, (cols + CI_BLOCK - 1) / CI_BLOCK,
                   "%s_scale_inv", name);
    if (s >= 0) p->t[w].scale = s;
}

static void ci_norm(ci_plan *p, int64_t n, const char *name) {
    ci_add(p, CI_NORM, p->wtype == CI_W_F32 ? ST_F32 : ST_BF16, 1, 1, n, "%s", name);
}

static void ci_mlp(ci_plan *p, int fp8_ok, const char *prefix, int64_t ff) {
    const int64_t d = p->c->hidden_size;
    char n[256];
    snprintf(n, sizeof n, "%s.gate_proj.weight", prefix);
    ci_mat(p, fp8_ok, ff, d, n);
    snprintf(n, sizeof n, "%s.up_proj.weight", prefix);
    ci_mat(p, fp8_ok, ff, d, n);
    snprintf(n, sizeof n, "%s.down_proj.weight", prefix);
    ci_mat(p, fp8_ok, d, ff, n);
}

/* One decoder layer i: MLA attention, then the dense MLP or the MoE. */
static void ci_layer(ci_plan *p, int i, int fp8_ok) {
    const dsc_config *c = p->c;
    const int64_t d = c->hidden_size, h = c->n_heads, dq = c->qk_nope_head_dim + c->qk_rope_head_dim;
    char n[256];
#define NAME(fmt) (snprintf(n, sizeof n, "model.layers.%d." fmt, i), n)
    ci_norm(p, d, NAME("input_layernorm.weight"));
    if (c->q_lora_rank > 0) {
        ci_mat(p, fp8_ok, c->q_lora_rank, d, NAME("self_attn.q_a_proj.weight"));
        ci_norm(p, c->q_lora_rank, NAME("self_attn.q_a_layernorm.weight"));
        ci_mat(p, fp8_ok, h * dq, c->q_lora_rank, NAME("self_attn.q_b_proj.weight"));
    } else {
        ci_mat(p, fp8_ok, h * dq, d, NAME("self_attn.q_proj.weight"));
    }
    ci_mat(p, fp8_ok, c->kv_lora_rank + c->qk_rope_head_dim, d, NAME("self_attn.kv_a_proj_with_mqa.weight"));
    ci_norm(p, c->kv_lora_rank, NAME("self_attn.kv_a_layernorm.weight"));
    ci_mat(p, fp8_ok, h * (c->qk_nope_head_dim + c->v_head_dim), c->kv_lora_rank, NAME("self_attn.kv_b_proj.weight"));
    ci_mat(p, fp8_ok, d, h * c->v_head_dim, NAME("self_attn.o_proj.weight"));
    if (c->index_topk > 0) { /* DeepSeek-V3.2's indexer: weights_proj stays BF16, as released */
        const int64_t hi = c->index_n_heads, di = c->index_head_dim;
        ci_mat(p, fp8_ok, hi * di, c->q_lora_rank, NAME("self_attn.indexer.wq_b.weight"));
        ci_mat(p, fp8_ok, di, d, NAME("self_attn.indexer.wk.weight"));
        ci_norm(p, di, NAME("self_attn.indexer.k_norm.weight"));
        ci_add(p, CI_BIAS, p->wtype == CI_W_F32 ? ST_F32 : ST_BF16, 1, 1, di, "model.layers.%d.self_attn.indexer.k_norm.bias",
               i);
        ci_mat(p, 0, hi, d, NAME("self_attn.indexer.weights_proj.weight"));
    }
    ci_norm(p, d, NAME("post_attention_layernorm.weight"));
    if (!config_layer_is_moe(c, i)) {
        ci_mlp(p, fp8_ok, NAME("mlp"), c->intermediate_size);
        return;
    }
    ci_mat(p, 0, c->n_routed_experts, d, NAME("mlp.gate.weight")); /* the router stays BF16 */
    if (c->topk_method == DSC_TOPK_NOAUX_TC)
        ci_add(p, CI_BIAS, ST_F32, 1, 1, c->n_routed_experts, "model.layers.%d.mlp.gate.e_score_correction_bias", i);
    for (int e = 0; e < c->n_routed_experts && !p->err; e++) {
        snprintf(n, sizeof n, "model.layers.%d.mlp.experts.%d", i, e);
        ci_mlp(p, fp8_ok, n, c->moe_intermediate_size);
    }
    if (c->n_shared_experts > 0)
        ci_mlp(p, fp8_ok, NAME("mlp.shared_experts"), (int64_t)c->moe_intermediate_size * c->n_shared_experts);
#undef NAME
}

/* V3's multi-token-prediction module j (DeepSeek-V3 report, section 2.2):
 * a decoder layer plus its own embedding, projection and head. */
static void ci_mtp(ci_plan *p, int j) {
    const dsc_config *c = p->c;
    const int i = c->n_layers + j;
    const int64_t d = c->hidden_size;
    char n[256];
    ci_layer(p, i, 0);
#define NAME(fmt) (snprintf(n, sizeof n, "model.layers.%d." fmt, i), n)
    ci_mat(p, 0, d, 2 * d, NAME("eh_proj.weight"));
    ci_norm(p, d, NAME("enorm.weight"));
    ci_norm(p, d, NAME("hnorm.weight"));
    ci_mat(p, 0, c->vocab_size, d, NAME("embed_tokens.weight"));
    ci_mat(p, 0, c->vocab_size, d, NAME("shared_head.head.weight"));
    ci_norm(p, d, NAME("shared_head.norm.weight"));
#undef NAME
}

static dsc_status ci_build(ci_plan *p) {
    const dsc_config *c = p->c;
    ci_mat(p, 0, c->vocab_size, c->hidden_size, "model.embed_tokens.weight");
    for (int i = 0; i < c->n_layers && !p->err; i++) ci_layer(p, i, 1);
    ci_norm(p, c->hidden_size, "model.norm.weight");
    if (!c->tie_word_embeddings) ci_mat(p, 0, c->vocab_size, c->hidden_size, "lm_head.weight");
    for (int j = 0; j < c->n_nextn_layers && !p->err; j++) ci_mtp(p, j);
    return p->err;
}

static void ci_plan_free(ci_plan *p) {
    for (int i = 0; i < p->n; i++) free(p->t[i].name);
    free(p->t);
}

/* ------------------------------------------------------------------------ */
/* Shards and layout                                                         */

/* Consecutive tensors to n_shards shards of about equal bytes; a weight and
 * its scales stay together and no shard is empty. */
static dsc_status ci_assign_shards(ci_plan *p, int n_shards) {
    int groups = 0;
    for (int i = 0; i < p->n; i++) groups += p->t[i].kind != CI_SCALE;
    if (groups < n_shards)
        return dsc_fail(DSC_ERR_ARG, "init: %d shards for a checkpoint of %d tensors", n_shards, groups);
    double cum = 0;
    int prev = -1, g = 0; /* the first group goes to shard 0 */
    for (int i = 0; i < p->n; i++) {
        ci_tensor *t = &p->t[i];
        if (t->kind == CI_SCALE) continue;
        double size = (double)t->nbytes + (t->scale >= 0 ? (double)p->t[t->scale].nbytes : 0);
        int s = (int)((cum + size / 2) * n_shards / (double)p->total);
        if (s < prev) s = prev;
        if (s > prev + 1) s = prev + 1;
        if (s < n_shards - (groups - g)) s = n_shards - (groups - g); /* leave one group per later shard */
        if (s > n_shards - 1) s = n_shards - 1;
        t->shard = s;
        if (t->scale >= 0) p->t[t->scale].shard = s;
        prev = s;
        cum += size;
        g++;
    }
    return DSC_OK;
}

/* Offsets within each shard, in st_place_rank's order. */
static dsc_status ci_layout(ci_plan *p, int n_shards) {
    uint64_t *off = calloc((size_t)n_shards, sizeof *off);
    if (!off) return dsc_fail(DSC_ERR_NOMEM, "init: out of memory");
    for (int rank = 0; rank < 8; rank++)
        for (int i = 0; i < p->n; i++) {
            ci_tensor *t = &p->t[i];
            if (st_place_rank(t->nbytes, t->dtype) != rank) continue;
            t->offset = off[t->shard];
            off[t->shard] += t->nbytes;
        }
    free(off);
    return DSC_OK;
}

/* ------------------------------------------------------------------------ */
/* Files                                                                     */


static void ci_shard_name(char *out, size_t cap, int s, int n_shards) {
    if (n_shards <= 1) snprintf(out, cap, "model.safetensors");
    else snprintf(out, cap, "model-%05d-of-%05d.safetensors", s + 1, n_shards);
}




/* config.json: the input verbatim, unless quantization_config must change
 * (set for fp8 as in DeepSeek-V3's release, removed otherwise). */
static dsc_status ci_write_config(const char *json, size_t len, const char *src, const char *dst, ci_wtype wt) {
    cJSON *root = fio_parse_json(json, len);
    int had = root && cJSON_GetObjectItemCaseSensitive(root, "quantization_config") != NULL;
    cJSON_Delete(root);
    if (wt != CI_W_FP8 && !had) return fio_replace_text(dst, json, len);
    cJSON *q = NULL;
    if (wt == CI_W_FP8 && (q = cJSON_CreateObject())) {
        const int bs[2] = {CI_BLOCK, CI_BLOCK};
        cJSON_AddStringToObject(q, "activation_scheme", "dynamic");
        cJSON_AddStringToObject(q, "fmt", "e4m3");
        cJSON_AddStringToObject(q, "quant_method", "fp8");
        cJSON_AddItemToObject(q, "weight_block_size", cJSON_CreateIntArray(bs, 2));
    }
    return config_write_quant(json, len, src, dst, q);
}

/* The header JSON of shard s, with "__metadata__": {"format": "pt"} as torch writes. */
static char *ci_header(const ci_plan *p, int s) {
    st_header *h = st_header_new();
    for (int i = 0; i < p->n && h; i++) {
        const ci_tensor *t = &p->t[i];
        if (t->shard != s) continue;
        const int64_t shape[2] = {t->ndim == 2 ? t->rows : t->cols, t->cols};
        if (!st_header_add(h, t->name, t->dtype, t->ndim, shape, t->offset, t->offset + t->nbytes)) {
            free(st_header_finish(h));
            return NULL;
        }
    }
    return st_header_finish(h);
}

/* One worker's buffers, sized for the largest chunk (cap elements). */
typedef struct {
    float *f;       /* values of one chunk                      (cap)   */
    uint8_t *o;     /* the same in the output dtype        (cap x 2 B)  */
    float *scale;   /* one FP8 stripe's block scales  (cap / 128 + 1)  */
} ci_buf;

/* Writing one shard: its tensors cut into chunks of whole rows, taken in
 * file order by n_threads workers. Every chunk has its own place in the
 * file, so the workers need to agree only on the next chunk. */
typedef struct {
    const ci_plan *p;
    const int *order;      /* the shard's tensors in file order, scales left out */
    int n_order;
    int fd;
    uint64_t base;         /* file offset of the data section                    */
    uint64_t seed;
    const char *path;
    size_t cap;            /* elements per chunk (at least one row / FP8 stripe) */
    pthread_mutex_t mu;    /* guards what follows                                */
    int pos;               /* next chunk: order[pos], rows from row on           */
    int64_t row;
    dsc_status err;        /* the first failure, and its message (a worker's     */
    char msg[512];         /*   dsc_fail message is thread-local)               */
} ci_job;

/* Rows [r0, r0 + nr) of tensor t (not FP8), converted and written. */
static dsc_status ci_chunk_plain(const ci_job *j, const ci_tensor *t, int64_t r0, size_t nr, ci_buf *b) {
    const size_t cols = (size_t)t->cols, n = nr * cols, es = st_dtype_size(t->dtype);
    const uint64_t key = ci_key(j->seed, t->name);
    if (t->dtype == ST_F32) {
        ci_fill(t, key, (uint64_t)r0 * cols, n, (float *)(void *)b->o);
    } else {
        uint16_t *o = (uint16_t *)(void *)b->o;
        ci_fill(t, key, (uint64_t)r0 * cols, n, b->f);
        for (size_t i = 0; i < n; i++) o[i] = ci_bf16(b->f[i]);
    }
    return fio_pwrite_all(j->fd, b->o, n * es, j->base + t->offset + (uint64_t)r0 * cols * es, j->path);
}

/* One stripe of up to 128 rows of an FP8 weight: per 128x128 block
 * scale = max|w| / 448 (the weight_scale_inv the loader multiplies by), then
 * e4m3(w / scale); the stripe's row of scales goes to the scale tensor. */
static dsc_status ci_chunk_fp8(const ci_job *j, const ci_tensor *t, int64_t r0, size_t nr, ci_buf *b) {
    const ci_tensor *st = &j->p->t[t->scale];
    const size_t cols = (size_t)t->cols, nbc = (size_t)st->cols;
    ci_fill(t, ci_key(j->seed, t->name), (uint64_t)r0 * cols, nr * cols, b->f);
    for (size_t bc = 0; bc < nbc; bc++) b->scale[bc] = 0;
    for (size_t r = 0; r < nr; r++)
        for (size_t c = 0; c < cols; c++) {
            float a = fabsf(b->f[r * cols + c]);
            if (a > b->scale[c / CI_BLOCK]) b->scale[c / CI_BLOCK] = a;
        }
    for (size_t bc = 0; bc < nbc; bc++) b->scale[bc] = b->scale[bc] > 0 ? b->scale[bc] / 448.0f : 1.0f;
    for (size_t r = 0; r < nr; r++)
        for (size_t c = 0; c < cols; c++) b->o[r * cols + c] = kern_f32_to_e4m3(b->f[r * cols + c] / b->scale[c / CI_BLOCK]);
    dsc_status s = fio_pwrite_all(j->fd, b->o, nr * cols, j->base + t->offset + (uint64_t)r0 * cols, j->path);
    if (s) return s;
    return fio_pwrite_all(j->fd, b->scale, nbc * 4, j->base + st->offset + (uint64_t)(r0 / CI_BLOCK) * nbc * 4, j->path);
}

/* Takes the next chunk; 0 when the shard is done or a worker failed. */
static int ci_next_chunk(ci_job *j, const ci_tensor **t, int64_t *r0, size_t *nr) {
    pthread_mutex_lock(&j->mu);
    int more = !j->err && j->pos < j->n_order;
    if (more) {
        *t = &j->p->t[j->order[j->pos]];
        int64_t per = (*t)->scale >= 0 ? CI_BLOCK : (int64_t)(j->cap / (size_t)(*t)->cols);
        *r0 = j->row;
        *nr = (size_t)((*t)->rows - j->row < per ? (*t)->rows - j->row : per);
        j->row += (int64_t)*nr;
        if (j->row == (*t)->rows) j->pos++, j->row = 0;
    }
    pthread_mutex_unlock(&j->mu);
    return more;
}

static void ci_job_fail(ci_job *j, dsc_status s) {
    pthread_mutex_lock(&j->mu);
    if (!j->err) {
        j->err = s;
        snprintf(j->msg, sizeof j->msg, "%s", dsc_last_error());
    }
    pthread_mutex_unlock(&j->mu);
}

static void *ci_worker(void *arg) {
    ci_job *j = arg;
    ci_buf b = {malloc(j->cap * sizeof(float)), malloc(j->cap * sizeof(float)), malloc((j->cap / CI_BLOCK + 1) * sizeof(float))};
    const ci_tensor *t;
    int64_t r0;
    size_t nr;
    if (!b.f || !b.o || !b.scale) ci_job_fail(j, dsc_fail(DSC_ERR_NOMEM, "init: out of memory for buffers of %zu elements", j->cap));
    while (ci_next_chunk(j, &t, &r0, &nr)) {
        dsc_status s = t->scale >= 0 ? ci_chunk_fp8(j, t, r0, nr, &b) : ci_chunk_plain(j, t, r0, nr, &b);
        if (s) ci_job_fail(j, s);
    }
    free(b.f);
    free(b.o);
    free(b.scale);
    return NULL;
}

/* Runs the job on n_threads threads, the caller being one of them. */
static dsc_status ci_job_run(ci_job *j, int n_threads) {
    pthread_t th[CI_MAX_THREADS];
    int n = 0;
    while (n < n_threads - 1 && pthread_create(&th[n], NULL, ci_worker, j) == 0) n++; /* fewer is fine */
    ci_worker(j);
    for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
    return j->err ? dsc_fail(j->err, "%s", j->msg) : DSC_OK;
}

/* Header, then the data of shard s in file order (as ci_layout placed it). */
static dsc_status ci_write_shard(const ci_plan *p, int s, uint64_t seed, const char *path, size_t cap, int *order) {
    char *h = ci_header(p, s);
    if (!h) return dsc_fail(DSC_ERR_NOMEM, "%s: out of memory", path);
    size_t hl = strlen(h), padded = hl + st_header_pad(hl); /* the data starts 64-byte aligned */
    dsc_status st;
    int fd = fio_replace_fd(path, &st);
    if (fd < 0) {
        free(h);
        return st;
    }
    uint8_t pre[8];
    for (int i = 0; i < 8; i++) pre[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    st = fio_pwrite_all(fd, pre, 8, 0, path);
    if (!st) st = fio_pwrite_all(fd, h, hl, 8, path);
    if (!st) st = fio_pwrite_all(fd, st_header_spaces, padded - hl, 8 + hl, path);
    free(h);
    ci_job j = {.p = p, .order = order, .fd = fd, .base = 8 + padded, .seed = seed, .path = path, .cap = cap};
    for (int rank = 0; rank < 8; rank++)
        for (int i = 0; i < p->n; i++)
            if (p->t[i].shard == s && st_place_rank(p->t[i].nbytes, p->t[i].dtype) == rank && p->t[i].kind != CI_SCALE)
                order[j.n_order++] = i;
    if (!st) {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        pthread_mutex_init(&j.mu, NULL);
        st = ci_job_run(&j, ncpu < 1 ? 1 : ncpu > CI_MAX_THREADS ? CI_MAX_THREADS : (int)ncpu);
        pthread_mutex_destroy(&j.mu);
    }
    if (close(fd) != 0 && !st) st = dsc_fail(DSC_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    return st;
}

/* model.safetensors.index.json as Hugging Face writes it. */
static dsc_status ci_write_index(const ci_plan *p, const char *dir, int n_shards) {
    char path[FIO_PATH_MAX], fname[64];
    dsc_status s = fio_join(path, dir, "model.safetensors.index.json");
    if (s) return s;
    cJSON *root = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(root, "metadata");
    cJSON *wm = cJSON_AddObjectToObject(root, "weight_map");
    int ok = meta && wm && cJSON_AddNumberToObject(meta, "total_size", (double)p->total);
    for (int i = 0; i < p->n && ok; i++) {
        ci_shard_name(fname, sizeof fname, p->t[i].shard, n_shards);
        ok = cJSON_AddStringToObject(wm, p->t[i].name, fname) != NULL;
    }
    char *text = ok ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!text) return dsc_fail(DSC_ERR_NOMEM, "%s: out of memory", path);
    size_t n = strlen(text);
    text[n] = '\n';
    s = fio_replace_text(path, text, n + 1);
    free(text);
    return s;
}

/* Removes a file the loader would read instead of ours (a stale index). */
static dsc_status ci_unlink_stale(const char *dir, const char *name) {
    char path[FIO_PATH_MAX];
    dsc_status s = fio_join(path, dir, name);
    if (s) return s;
    if (unlink(path) != 0 && errno != ENOENT)
        return dsc_fail(DSC_ERR_IO, "%s: cannot remove the stale file: %s", path, strerror(errno));
    return DSC_OK;
}

/* Elements per chunk: CI_CHUNK, or more for one row / one FP8 stripe. */
static size_t ci_chunk_cap(const ci_plan *p) {
    size_t cap = CI_CHUNK;
    for (int i = 0; i < p->n; i++) {
        const ci_tensor *t = &p->t[i];
        size_t need = (size_t)t->cols * (t->scale >= 0 ? CI_BLOCK : 1);
        if (need > cap) cap = need;
    }
    return cap;
}

/* ------------------------------------------------------------------------ */
/* Public                                                                    */

dsc_init_params dsc_init_default_params(void) { return (dsc_init_params){.seed = 0, .dtype = "bf16", .n_shards = 0}; }

static dsc_status ci_parse_params(const dsc_init_params *ip, ci_wtype *wt, int *n_shards) {
    const char *dt = ip->dtype ? ip->dtype : "bf16";
    if (!strcmp(dt, "bf16")) *wt = CI_W_BF16;
    else if (!strcmp(dt, "f32")) *wt = CI_W_F32;
    else if (!strcmp(dt, "fp8")) *wt = CI_W_FP8;
    else return dsc_fail(DSC_ERR_ARG, "init: dtype '%.32s' is not supported (expected bf16, f32 or fp8)", dt);
    if (ip->n_shards < 0 || ip->n_shards > 99999)
        return dsc_fail(DSC_ERR_ARG, "init: n_shards = %d is out of range [0, 99999]", (int)ip->n_shards);
    *n_shards = ip->n_shards > 1 ? ip->n_shards : 1;
    return DSC_OK;
}

/* Room for the weights where they go, before anything is written (the
 * shards of an older checkpoint there, replaced, count as room). */
static dsc_status ci_check_space(const ci_plan *p, const char *out_dir, int n_shards) {
    uint64_t reclaim = 0;
    char path[FIO_PATH_MAX], fname[64];
    for (int k = 0; k < n_shards; k++) {
        ci_shard_name(fname, sizeof fname, k, n_shards);
        if (!fio_join(path, out_dir, fname)) reclaim += fio_freed_bytes(path);
    }
    return fio_check_space(out_dir, p->total, reclaim, "the checkpoint");
}

static dsc_status ci_write_all(const ci_plan *p, const char *out_dir, uint64_t seed, int n_shards) {
    char path[FIO_PATH_MAX], fname[64];
    dsc_status s = ci_unlink_stale(out_dir, n_shards > 1 ? "model.safetensors" : "model.safetensors.index.json");
    int *order = malloc(sizeof *order * (size_t)p->n);
    if (!s && !order) s = dsc_fail(DSC_ERR_NOMEM, "init: out of memory");
    const size_t cap = ci_chunk_cap(p);
    for (int k = 0; k < n_shards && !s; k++) {
        ci_shard_name(fname, sizeof fname, k, n_shards);
        if (!(s = fio_join(path, out_dir, fname))) s = ci_write_shard(p, k, seed, path, cap, order);
    }
    free(order);
    if (!s && n_shards > 1) s = ci_write_index(p, out_dir, n_shards);
    return s;
}

dsc_status dsc_init_checkpoint(const char *config_path, const char *out_dir, const dsc_init_params *params) {
    dsc_init_params ip = params ? *params : dsc_init_default_params();
    ci_wtype wt = CI_W_BF16;
    int n_shards = 1;
    dsc_status s;
    if (!config_path || !out_dir) return dsc_fail(DSC_ERR_ARG, "init: no config or output directory given");
    if ((s = ci_parse_params(&ip, &wt, &n_shards))) return s;
    char *json = NULL;
    size_t len = 0;
    dsc_config c;
    if ((s = fio_read_file(config_path, (size_t)16 << 20, &json, &len))) return s;
    ci_plan p = {.c = &c, .wtype = wt};
    char cpath[FIO_PATH_MAX];
    if (!(s = config_parse(json, len, config_path, &c)) && !(s = ci_build(&p)) &&
        !(s = ci_assign_shards(&p, n_shards)) && !(s = ci_layout(&p, n_shards)) && !(s = ci_check_space(&p, out_dir, n_shards)) && !(s = fio_mkdirs(out_dir)) &&
        !(s = fio_join(cpath, out_dir, "config.json")))
        s = ci_write_config(json, len, config_path, cpath, wt);
    free(json);
    if (!s) s = ci_write_all(&p, out_dir, ip.seed, n_shards);
    ci_plan_free(&p);
    return s;
}
