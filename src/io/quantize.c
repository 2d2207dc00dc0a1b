/*
 * quantize.c — dsc_quantize: a checkpoint rewritten with its projection
 * matrices in dsc's Q8 / Q4 block formats (kernels.h, quantize.h).
 *
 * Quantised: every 2-D `*.weight` inside model.layers.* (attention
 * projections, dense MLP, routed and shared experts, the MTP layers' decoder
 * matrices), lm_head.weight and the MTP layers' shared_head.head.weight, when
 * the column count is a multiple of 32. Under q4 the two output heads are
 * Q8: the output layer is the most sensitive one (llama.cpp's Q4 types keep
 * it at higher precision too). Kept as stored: the embeddings
 * (model.embed_tokens and the MTP layers' own), norms, the router gate and
 * its e_score_correction_bias, eh_proj, and matrices whose columns are not a
 * multiple of 32. FP8 sources (e4m3fn with F32 `weight_scale_inv` blocks of
 * quantization_config.weight_block_size) are dequantised first, by the same
 * reference kernel the loader uses; the ones kept become BF16 and the scales
 * are dropped. The output config.json carries
 * "quantization_config": {"quant_method": "dsc", "type", "block_size": 32}.
 * Type "copy" quantises nothing: every tensor and config.json as they are,
 * in this layout (as llama.cpp's quantize --type COPY).
 *
 * Layout: each input file becomes an output file of the same name (one
 * model.safetensors, or the same shards and a new index). Within a file the
 * data starts on a 64-byte boundary, in st_place_rank's order (tensors whose
 * size is a multiple of 64 bytes first, then 8-, 4-, 2-, 1-byte dtypes), so
 * every tensor is aligned to its element size, and most to 64 bytes. The
 * input is memory-mapped; one worker per core (at most QZ_MAX_THREADS) takes
 * chunks of whole rows, converts them in its own buffers (a few MB), writes
 * them with pwrite() and releases the chunk's input pages, so memory stays
 * bounded whatever the size of the checkpoint. config.json is written last: a run that fails
 * leaves no loadable checkpoint behind.
 */
#include "io/quantize.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fileio.h"
#include "core/status.h"
#include "io/config.h"
#include "io/safetensors.h"
#include "kernels/kernels.h"

#define QZ_MAX_THREADS 16
#define QZ_CHUNK ((size_t)1 << 20)      /* elements converted per work item */
#define QZ_COPY_CHUNK ((size_t)4 << 20) /* bytes copied per work item       */

/* ------------------------------------------------------------------------ */
/* Blocks                                                                    */

uint16_t quant_f16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    const uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    const uint32_t a = u & 0x7FFFFFFF;
    if (a > 0x7F800000) return sign | 0x7E00;            /* NaN */
    if (a >= 0x477FF000) return sign | 0x7C00;           /* >= 65520 rounds to inf */
    if (a < 0x38800000) {                                /* below 2^-14: subnormal */
        float v;
        memcpy(&v, &a, 4);
        return sign | (uint16_t)lrintf(v * 16777216.0f); /* steps of 2^-24; 1024 is 2^-14 */
    }
    uint32_t r = (a + 0xFFF + ((a >> 13) & 1)) >> 13;    /* keep 10 mantissa bits, to even */
    return sign | (uint16_t)(r - (112u << 10));          /* rebias the exponent 127 -> 15 */
}

uint16_t quant_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7FFFFFFF) > 0x7F800000) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7FFF + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

/* kern_f16_to_f32 for finite h, without ldexpf: the q4 search decodes ~17
 * candidate scales per block. */
static inline float f16_value(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1F, m = h & 0x3FF;
    if (e == 0) return (sign ? -1.0f : 1.0f) * (float)m * (1.0f / 16777216.0f); /* m x 2^-24 */
    uint32_t u = sign | (e + 112) << 23 | m << 13;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Largest |x| of a block, and the signed value that has it; -1 if not finite. */
static float block_absmax(const float *x, float *signed_max) {
    float am = 0, m = 0;
    for (int i = 0; i < DSC_QBLOCK; i++) {
        if (!isfinite(x[i])) return -1;
        if (fabsf(x[i]) > am) am = fabsf(x[i]), m = x[i];
    }
    *signed_max = m;
    return am;
}

/* F16 of a scale, kept finite (a block beyond 65504 x 127 saturates). */
static uint16_t scale_f16(float d) {
    if (d > 65504.0f) d = 65504.0f;
    if (d < -65504.0f) d = -65504.0f;
    return quant_f16(d);
}

/* The level of v = x / scale: v rounded to nearest (even), clamped to
 * [lo, hi]; |v| < 2^22. Adding 1.5 x 2^23 leaves round(v) in the low bits
 * of the float, so no libm call stands in the loops below. */
static inline float q_level(float v, int32_t lo, int32_t hi) {
    float f = v + 12582912.0f;
    int32_t i;
    memcpy(&i, &f, 4);
    i -= 0x4B400000; /* the bits of 1.5 x 2^23 */
    i = i < lo ? lo : i;
    return (float)(i > hi ? hi : i);
}

/* The sums below run in 8 lanes, in a fixed order. */
#define Q_LANES 8

static inline float lane_sum(const float *a) {
    return ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
}

/* Squared error of the block (largest magnitude am) with levels [lo, hi]
 * under F16 scale h; infinite for a scale too small to be one. */
static float block_err(const float *x, float am, uint16_t h, int32_t lo, int32_t hi) {
    const float d = f16_value(h), id = d != 0 ? 1.0f / d : 0.0f;
    if (am * fabsf(id) > 1024.0f) return INFINITY;
    float acc[Q_LANES] = {0};
    for (int i = 0; i < DSC_QBLOCK; i += Q_LANES)
        for (int j = 0; j < Q_LANES; j++) {
            float r = x[i + j] - q_level(x[i + j] * id, lo, hi) * d;
            acc[j] += r * r;
        }
    return lane_sum(acc);
}

int quant_block_q8(const float *x, int8_t *q, uint16_t *scale) {
    float m;
    const float am = block_absmax(x, &m);
    if (am < 0) return -1;
    float pmax = 0, nmin = 0;
    for (int i = 0; i < DSC_QBLOCK; i++) pmax = x[i] > pmax ? x[i] : pmax, nmin = x[i] < nmin ? x[i] : nmin;
    uint16_t best = scale_f16(am / 127.0f);
    if (am > 127.5f * f16_value(best) && best < 0x7BFF) best++; /* a subnormal scale rounded down would clip */
    float best_err = block_err(x, am, best, -128, 127);
    /* x_m to level t = 128 (x_m < 0) or 127 down to 117: finer scales for the
     * other 31 values, none clipped by more than scale / 2. */
    for (int k = m < 0 ? 0 : 2; k <= 22 && am > 0; k++) {
        const uint16_t h = scale_f16(am / (128.0f - 0.5f * (float)k));
        const float d = f16_value(h);
        if (!(pmax <= 127.5f * d && nmin >= -128.5f * d)) continue;
        const float e = block_err(x, am, h, -128, 127);
        if (e < best_err) best_err = e, best = h;
    }
    *scale = best;
    const float d = f16_value(best), id = d != 0 ? 1.0f / d : 0.0f;
    for (int i = 0; i < DSC_QBLOCK; i++) q[i] = (int8_t)q_level(x[i] * id, -128, 127);
    return 0;
}

/* Least-squares scale of the Q4 levels that is = t / x_m assigns (0 if
 * none); |x is| <= 9. */
static float q4_ls_scale(const float *x, float is) {
    float sxl[Q_LANES] = {0}, sll[Q_LANES] = {0};
    for (int i = 0; i < DSC_QBLOCK; i += Q_LANES)
        for (int j = 0; j < Q_LANES; j++) {
            float l = q_level(x[i + j] * is, -8, 7);
            sxl[j] += x[i + j] * l, sll[j] += l * l;
        }
    float ll = lane_sum(sll);
    return ll > 0 ? lane_sum(sxl) / ll : 0.0f;
}

int quant_block_q4(const float *x, uint8_t *q, uint16_t *scale) {
    float m;
    const float am = block_absmax(x, &m);
    if (am < 0) return -1;
    uint16_t best = scale_f16(m / -8.0f); /* ggml q4_0 */
    float best_err = block_err(x, am, best, -8, 7);
    for (int k = -18; k <= 15 && am > 0; k++) { /* x_m mapped to level t = k / 2 */
        const float t = 0.5f * (float)k;
        if (t > -5 && t < 5) continue;
        const float d = q4_ls_scale(x, t / m);
        if (d == 0) continue;
        const uint16_t h = scale_f16(d);
        const float e = block_err(x, am, h, -8, 7);
        if (e < best_err) best_err = e, best = h;
    }
    *scale = best;
    const float d = f16_value(best), id = d != 0 ? 1.0f / d : 0.0f;
    for (int j = 0; j < 16; j++)
        q[j] = (uint8_t)((int)(q_level(x[j] * id, -8, 7) + 8) | (int)(q_level(x[j + 16] * id, -8, 7) + 8) << 4);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Plan                                                                      */

typedef enum { QZ_COPY, QZ_BF16, QZ_Q8, QZ_Q4, QZ_SCALE } qz_op;

typedef struct {
    const st_tensor *t;
    int file;
} qz_ref;

typedef struct {
    char *name;                 /* output name                                     */
    qz_op op;                   /* QZ_SCALE: the F16 qscale of the tensor before it */
    const st_tensor *src;       /* the input tensor (QZ_SCALE: its weight's)        */
    const st_tensor *fp8_scale; /* weight_scale_inv of an F8_E4M3 source, or NULL   */
    st_dtype dtype;             /* as written                                       */
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    int64_t rows, cols;         /* the source as a matrix (converted ops)            */
    int file;                   /* output file = input file index                   */
    int qscale;                 /* QZ_Q8 / QZ_Q4: index of the QZ_SCALE entry        */
    uint64_t offset, nbytes;    /* within the file's data section                   */
} qz_tensor;

typedef struct {
    const char *in_dir, *out_dir;
    dsc_config cfg;
    int q4, copy;
    st_file *files;             /* input files; output file k has the same name     */
    char **file_names;          /* base names                                       */
    int n_files, sharded;
    qz_ref *index;              /* every input tensor, sorted by name               */
    int n_index;
    qz_tensor *t;
    int n, cap;
    int64_t max_cols;
} qz_plan;

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static int starts_with(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

static const qz_ref *qz_find(const qz_plan *p, const char *name) {
    int lo = 0, hi = p->n_index - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(name, p->index[mid].t->name);
        if (c == 0) return &p->index[mid];
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return NULL;
}

static int is_float(st_dtype d) { return d == ST_F32 || d == ST_F16 || d == ST_BF16 || d == ST_F8_E4M3; }

/* The output head: lm_head, or an MTP layer's shared_head.head. */
static int is_head(const char *n) {
    return !strcmp(n, "lm_head.weight") ||
           (starts_with(n, "model.layers.") && ends_with(n, ".shared_head.head.weight"));
}

/* A projection inside a decoder (or MTP) layer: not the router, eh_proj, an embedding or V3.2's
 * indexer head weights (64 x D, a part of a layer's bytes that sets which positions are kept). */
static int is_projection(const char *n) {
    return starts_with(n, "model.layers.") && !ends_with(n, ".mlp.gate.weight") && !ends_with(n, ".eh_proj.weight") &&
           !ends_with(n, ".embed_tokens.weight") && !ends_with(n, ".indexer.weights_proj.weight");
}

static qz_op qz_classify(const qz_plan *p, const st_tensor *t) {
    const char *n = t->name;
    if (p->copy) return QZ_COPY;
    int matrix = t->ndim == 2 && is_float(t->dtype) && ends_with(n, ".weight");
    /* q4 is for the routed experts, the bulk of a MoE's bytes but only K of E
     * per token; the matrices every token uses (attention, shared experts,
     * dense MLP, output head) stay Q8: most of the accuracy for ~3% of size. */
    if (matrix && t->shape[1] % DSC_QBLOCK == 0 && (is_head(n) || is_projection(n)))
        return p->q4 && strstr(n, ".mlp.experts.") ? QZ_Q4 : QZ_Q8;
    return t->dtype == ST_F8_E4M3 ? QZ_BF16 : QZ_COPY;
}

static qz_tensor *qz_add(qz_plan *p, const char *name, const char *suffix) {
    if (p->n == p->cap) {
        int cap = p->cap ? p->cap * 2 : 1024;
        qz_tensor *nt = realloc(p->t, sizeof *nt * (size_t)cap);
        if (!nt) return NULL;
        p->t = nt;
        p->cap = cap;
    }
    qz_tensor *t = &p->t[p->n];
    memset(t, 0, sizeof *t);
    size_t len = strlen(name) + strlen(suffix) + 1;
    if (!(t->name = malloc(len))) return NULL;
    snprintf(t->name, len, "%s%s", name, suffix);
    t->qscale = -1;
    p->n++;
    return t;
}

/* The weight_scale_inv of FP8 tensor t, checked against the block size. */
static dsc_status qz_fp8_scale(const qz_plan *p, const qz_ref *r, const st_tensor **out) {
    const st_tensor *t = r->t;
    char sname[512];
    if (t->ndim != 2 || snprintf(sname, sizeof sname, "%s_scale_inv", t->name) >= (int)sizeof sname)
        return dsc_fail(DSC_ERR_SHAPE, "%s: FP8 tensor '%s' is not a matrix with a weight_scale_inv",
                        p->files[r->file].path, t->name);
    const qz_ref *s = qz_find(p, sname);
    if (!s) return dsc_fail(DSC_ERR_SHAPE, "%s: FP8 tensor '%s' has no scale tensor '%s'", p->in_dir, t->name, sname);
    const int64_t br = p->cfg.fp8_block_rows, bc = p->cfg.fp8_block_cols;
    const int64_t nbr = (t->shape[0] + br - 1) / br, nbc = (t->shape[1] + bc - 1) / bc;
    if (s->t->dtype != ST_F32 || s->t->ndim != 2 || s->t->shape[0] != nbr || s->t->shape[1] != nbc)
        return dsc_fail(DSC_ERR_SHAPE, "%s: tensor '%s' must be F32 [%lld, %lld] (blocks of %lldx%lld)",
                        p->files[s->file].path, sname, (long long)nbr, (long long)nbc, (long long)br, (long long)bc);
    *out = s->t;
    return DSC_OK;
}

/* An FP8 weight's scale_inv, dropped from the output (its weight is dequantised). */
static int is_dropped_scale(const qz_plan *p, const st_tensor *t) {
    size_t n = strlen(t->name), k = strlen("_scale_inv");
    if (p->copy || n <= k || strcmp(t->name + n - k, "_scale_inv") != 0) return 0;
    char base[512];
    if (n - k >= sizeof base) return 0;
    memcpy(base, t->name, n - k);
    base[n - k] = '\0';
    const qz_ref *b = qz_find(p, base);
    return b && b->t->dtype == ST_F8_E4M3;
}

/* Output entry (and qscale companion) for input tensor r. */
static dsc_status qz_plan_tensor(qz_plan *p, const qz_ref *r) {
    const st_tensor *s = r->t;
    const char *path = p->files[r->file].path;
    if (!p->copy && (s->dtype == ST_I8 || s->dtype == ST_U8)) {
        char q[512];
        snprintf(q, sizeof q, "%s_qscale", s->name);
        if (qz_find(p, q))
            return dsc_fail(DSC_ERR_ARG, "%s: tensor '%s' is already quantised (give the BF16/FP8 checkpoint)", path,
                            s->name);
    }
    qz_op op = qz_classify(p, s);
    qz_tensor *t = qz_add(p, s->name, "");
    if (!t) return dsc_fail(DSC_ERR_NOMEM, "quantize: out of memory");
    t->op = op, t->src = s, t->file = r->file, t->ndim = s->ndim;
    memcpy(t->shape, s->shape, sizeof t->shape);
    if (op == QZ_COPY) {
        t->dtype = s->dtype;
        t->nbytes = s->nbytes;
        return DSC_OK;
    }
    dsc_status st;
    if (s->dtype == ST_F8_E4M3 && (st = qz_fp8_scale(p, r, &t->fp8_scale))) return st;
    if (s->ndim != 2 || s->shape[1] > INT32_MAX || s->shape[0] > INT32_MAX)
        return dsc_fail(DSC_ERR_SHAPE, "%s: tensor '%s' is not a matrix of at most 2^31 - 1 rows and columns", path,
                        s->name);
    t->rows = s->shape[0], t->cols = s->shape[1];
    if (t->cols > p->max_cols) p->max_cols = t->cols;
    const uint64_t n = (uint64_t)t->rows * (uint64_t)t->cols; /* <= nbytes of the source */
    if (op == QZ_BF16) t->dtype = ST_BF16, t->nbytes = 2 * n;
    if (op == QZ_Q8) t->dtype = ST_I8, t->nbytes = n;
    if (op == QZ_Q4) t->dtype = ST_U8, t->nbytes = n / 2, t->shape[1] = t->cols / 2;
    if (op == QZ_BF16) return DSC_OK;
    const int w = p->n - 1;
    qz_tensor *q = qz_add(p, s->name, "_qscale");
    if (!q) return dsc_fail(DSC_ERR_NOMEM, "quantize: out of memory");
    t = &p->t[w]; /* qz_add may have moved the array */
    t->qscale = p->n - 1;
    *q = (qz_tensor){.name = q->name, .op = QZ_SCALE, .src = s, .dtype = ST_F16, .ndim = 2,
                     .shape = {t->rows, t->cols / DSC_QBLOCK}, .rows = t->rows, .cols = t->cols, .file = r->file,
                     .qscale = -1, .nbytes = 2 * n / DSC_QBLOCK};
    return DSC_OK;
}

static dsc_status qz_build(qz_plan *p) {
    for (int i = 0; i < p->n_index; i++) {
        if (is_dropped_scale(p, p->index[i].t)) continue;
        dsc_status s = qz_plan_tensor(p, &p->index[i]);
        if (s) return s;
    }
    return DSC_OK;
}

/* Offsets in each file, in st_place_rank's order. */
static void qz_layout(qz_plan *p) {
    for (int k = 0; k < p->n_files; k++) {
        uint64_t off = 0;
        for (int rank = 0; rank < 8; rank++)
            for (int i = 0; i < p->n; i++) {
                qz_tensor *t = &p->t[i];
                if (t->file != k || st_place_rank(t->nbytes, t->dtype) != rank) continue;
                t->offset = off;
                off += t->nbytes;
            }
    }
}

/* ------------------------------------------------------------------------ */
/* Input                                                                     */




static dsc_status qz_open_file(qz_plan *p, const char *name) {
    for (int i = 0; i < p->n_files; i++)
        if (!strcmp(p->file_names[i], name)) return DSC_OK;
    char path[FIO_PATH_MAX];
    dsc_status s = fio_join(path, p->in_dir, name);
    if (s) return s;
    st_file *nf = realloc(p->files, sizeof *nf * (size_t)(p->n_files + 1));
    if (nf) p->files = nf;
    char **nn = nf ? realloc(p->file_names, sizeof *nn * (size_t)(p->n_files + 1)) : NULL;
    if (nn) p->file_names = nn;
    if (!nf || !nn || !(p->file_names[p->n_files] = strdup(name)))
        return dsc_fail(DSC_ERR_NOMEM, "%s: out of memory", path);
    if ((s = st_open(path, &p->files[p->n_files]))) {
        free(p->file_names[p->n_files]);
        return s;
    }
    p->n_files++;
    return DSC_OK;
}

/* The shards model.safetensors.index.json names, each a plain file name. */
static dsc_status qz_open_index(qz_plan *p, const char *index_path) {
    char *buf;
    size_t len;
    dsc_status s = fio_read_file(index_path, (size_t)256 << 20, &buf, &len);
    if (s) return s;
    cJSON *root = fio_parse_json(buf, len);
    free(buf);
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(wm) || !wm->child)
        s = dsc_fail(DSC_ERR_FORMAT, "%s: %s", index_path,
                     root ? "not JSON with a non-empty 'weight_map' object" : fio_json_error());
    for (const cJSON *e = wm ? wm->child : NULL; e && !s; e = e->next) {
        const char *v = cJSON_IsString(e) ? e->valuestring : NULL;
        if (!v || !v[0] || strchr(v, '/') || !strcmp(v, ".") || !strcmp(v, ".."))
            s = dsc_fail(DSC_ERR_FORMAT, "%s: weight_map['%s'] is not a file name in the model directory", index_path,
                         e->string);
        else s = qz_open_file(p, v);
    }
    cJSON_Delete(root);
    return s;
}

static int ref_cmp(const void *a, const void *b) {
    return strcmp(((const qz_ref *)a)->t->name, ((const qz_ref *)b)->t->name);
}

static dsc_status qz_open_input(qz_plan *p) {
    char path[FIO_PATH_MAX];
    dsc_status s = fio_join(path, p->in_dir, "model.safetensors.index.json");
    if (s) return s;
    p->sharded = fio_exists(path);
    if (p->sharded) s = qz_open_index(p, path);
    else if (!(s = fio_join(path, p->in_dir, "model.safetensors")) && !fio_exists(path))
        s = dsc_fail(DSC_ERR_IO, "%s: no model.safetensors or model.safetensors.index.json", p->in_dir);
    else if (!s) s = qz_open_file(p, "model.safetensors");
    if (s) return s;
    int n = 0;
    for (int i = 0; i < p->n_files; i++) n += p->files[i].n_tensors;
    if (!(p->index = malloc(sizeof *p->index * (size_t)(n ? n : 1))))
        return dsc_fail(DSC_ERR_NOMEM, "quantize: out of memory");
    for (int i = 0; i < p->n_files; i++)
        for (int j = 0; j < p->files[i].n_tensors; j++) p->index[p->n_index++] = (qz_ref){&p->files[i].tensors[j], i};
    qsort(p->index, (size_t)p->n_index, sizeof *p->index, ref_cmp);
    for (int i = 1; i < p->n_index; i++)
        if (!strcmp(p->index[i - 1].t->name, p->index[i].t->name))
            return dsc_fail(DSC_ERR_FORMAT, "%s: tensor '%s' is in both %s and %s", p->in_dir, p->index[i].t->name,
                            p->files[p->index[i - 1].file].path, p->files[p->index[i].file].path);
    return DSC_OK;
}

static void qz_plan_free(qz_plan *p) {
    for (int i = 0; i < p->n_files; i++) st_close(&p->files[i]), free(p->file_names[i]);
    free(p->files);
    free(p->file_names);
    free(p->index);
    for (int i = 0; i < p->n; i++) free(p->t[i].name);
    free(p->t);
}

/* ------------------------------------------------------------------------ */
/* Output files                                                              */



/* Copies in_dir/name to out_dir/name if it exists. */
static dsc_status qz_copy_side_file(const char *in_dir, const char *out_dir, const char *name) {
    char src[FIO_PATH_MAX], dst[FIO_PATH_MAX];
    dsc_status s;
    if ((s = fio_join(src, in_dir, name)) || (s = fio_join(dst, out_dir, name))) return s;
    int in = open(src, O_RDONLY);
    if (in < 0) return errno == ENOENT ? DSC_OK : dsc_fail(DSC_ERR_IO, "%s: cannot open: %s", src, strerror(errno));
    int out = fio_replace_fd(dst, &s);
    if (out < 0) {
        close(in);
        return s;
    }
    char *buf = malloc(1 << 16);
    uint64_t off = 0;
    if (!buf) s = dsc_fail(DSC_ERR_NOMEM, "%s: out of memory", dst);
    while (buf) {
        ssize_t n = read(in, buf, 1 << 16);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) s = dsc_fail(DSC_ERR_IO, "%s: read error: %s", src, strerror(errno));
        if (n <= 0 || (s = fio_pwrite_all(out, buf, (size_t)n, off, dst))) break;
        off += (uint64_t)n;
    }
    free(buf);
    close(in);
    if (close(out) != 0 && !s) s = dsc_fail(DSC_ERR_IO, "%s: write failed: %s", dst, strerror(errno));
    return s;
}

/* config.json: the input's, with quantization_config replaced by dsc's. */
static dsc_status qz_write_config(const char *json, size_t len, const char *src, const char *dst, const char *type) {
    cJSON *q = cJSON_CreateObject();
    if (!q || !cJSON_AddStringToObject(q, "quant_method", "dsc") || !cJSON_AddStringToObject(q, "type", type) ||
        !cJSON_AddNumberToObject(q, "block_size", DSC_QBLOCK)) {
        cJSON_Delete(q);
        return dsc_fail(DSC_ERR_NOMEM, "%s: out of memory", dst);
    }
    return config_write_quant(json, len, src, dst, q);
}

/* The header JSON of output file k, with "__metadata__": {"format": "pt"}. */
static char *qz_header(const qz_plan *p, int k) {
    st_header *h = st_header_new();
    for (int i = 0; i < p->n && h; i++) {
        const qz_tensor *t = &p->t[i];
        if (t->file != k) continue;
        if (!st_header_add(h, t->name, t->dtype, t->ndim, t->shape, t->offset, t->offset + t->nbytes)) {
            free(st_header_finish(h));
            return NULL;
        }
    }
    return st_header_finish(h);
}

/* model.safetensors.index.json for sharded output. */
static dsc_status qz_write_index(const qz_plan *p) {
    char path[FIO_PATH_MAX];
    dsc_status s = fio_join(path, p->out_dir, "model.safetensors.index.json");
    if (s) return s;
    uint64_t total = 0;
    for (int i = 0; i < p->n; i++) total += p->t[i].nbytes;
    cJSON *root = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(root, "metadata");
    cJSON *wm = cJSON_AddObjectToObject(root, "weight_map");
    int ok = meta && wm && cJSON_AddNumberToObject(meta, "total_size", (double)total);
    for (int i = 0; i < p->n && ok; i++)
        ok = cJSON_AddStringToObject(wm, p->t[i].name, p->file_names[p->t[i].file]) != NULL;
    char *text = ok ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!text) return dsc_fail(DSC_ERR_NOMEM, "%s: out of memory", path);
    size_t n = strlen(text);
    text[n] = '\n';
    s = fio_replace_text(path, text, n + 1);
    free(text);
    return s;
}

/* ------------------------------------------------------------------------ */
/* Conversion: chunks of rows, one worker per core                           */

typedef struct {
    float *row;      /* one source row, dequantised              (max_cols) */
    uint8_t *tmp;    /* an unaligned source row, copied        (max_cols x 4 B) */
    float *fsc;      /* one row of FP8 block scales                         */
    uint8_t *out;    /* the chunk as written                 (chunk elems x 2 B) */
    uint16_t *scale; /* its qscales                        (chunk elems / 32) */
} qz_buf;

typedef struct {
    const qz_plan *p;
    const int *order;    /* the file's tensors in file order, qscales left out */
    int n_order;
    int fd;
    uint64_t base;       /* file offset of the data section                    */
    const char *path;
    size_t cap;          /* elements per chunk (at least one row)              */
    pthread_mutex_t mu;  /* guards what follows                                */
    int pos;             /* next chunk: order[pos] from unit `at` on            */
    uint64_t at;         /* rows, or bytes for QZ_COPY                          */
    dsc_status err;      /* the first failure and its message (a worker's      */
    char msg[512];       /*   dsc_fail message is thread-local)                */
} qz_job;

/* Gives the pages wholly inside [b, b + n) of a read-only mapping back: they
 * were read once and would otherwise stay resident. */
static void qz_release(const uint8_t *b, size_t n) {
    const long page = sysconf(_SC_PAGESIZE);
    uintptr_t lo = ((uintptr_t)b + (uintptr_t)page - 1) & ~(uintptr_t)(page - 1);
    uintptr_t hi = ((uintptr_t)b + n) & ~(uintptr_t)(page - 1);
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

static dsc_wtype qz_wtype(st_dtype d) {
    switch (d) {
    case ST_F32: return DSC_W_F32;
    case ST_F16: return DSC_W_F16;
    case ST_F8_E4M3: return DSC_W_F8_E4M3;
    default: return DSC_W_BF16;
    }
}

/* Row r of t's source as floats, by the reference kernel. */
static void qz_source_row(const qz_plan *p, const qz_tensor *t, int64_t r, qz_buf *b) {
    const st_tensor *s = t->src;
    const size_t es = st_dtype_size(s->dtype), rb = (size_t)t->cols * es;
    const uint8_t *row = s->data + (size_t)r * rb;
    if ((uintptr_t)row % es) row = memcpy(b->tmp, row, rb);
    dsc_mat w = {.type = qz_wtype(s->dtype), .rows = 1, .cols = (int32_t)t->cols, .data = row};
    if (t->fp8_scale) {
        const int32_t br = p->cfg.fp8_block_rows, bc = p->cfg.fp8_block_cols;
        const int64_t nbc = (t->cols + bc - 1) / bc;
        memcpy(b->fsc, t->fp8_scale->data + (size_t)(r / br * nbc) * 4, (size_t)nbc * 4);
        w.scale = b->fsc, w.block_rows = br, w.block_cols = bc;
    }
    kern_mat_row(b->row, &w, 0);
}

/* Rows [r0, r0 + nr) of t converted and written. */
static dsc_status qz_chunk_rows(const qz_job *j, const qz_tensor *t, int64_t r0, int64_t nr, qz_buf *b) {
    const int64_t cols = t->cols, nb = cols / DSC_QBLOCK;
    const size_t orow = t->op == QZ_BF16 ? 2 * (size_t)cols : t->op == QZ_Q8 ? (size_t)cols : (size_t)cols / 2;
    for (int64_t r = 0; r < nr; r++) {
        qz_source_row(j->p, t, r0 + r, b);
        uint8_t *o = b->out + (size_t)r * orow;
        uint16_t *sc = b->scale + r * nb;
        int bad = 0;
        const float *x = b->row;
        if (t->op == QZ_BF16)
            for (int64_t c = 0; c < cols; c++) ((uint16_t *)(void *)o)[c] = quant_bf16(x[c]);
        else if (t->op == QZ_Q8)
            for (int64_t k = 0; k < nb && !bad; k++)
                bad = quant_block_q8(x + DSC_QBLOCK * k, (int8_t *)o + DSC_QBLOCK * k, sc + k);
        else
            for (int64_t k = 0; k < nb && !bad; k++)
                bad = quant_block_q4(x + DSC_QBLOCK * k, o + DSC_QBLOCK / 2 * k, sc + k);
        if (bad)
            return dsc_fail(DSC_ERR_FORMAT, "%s: tensor '%s' has a non-finite value in row %lld",
                            j->p->files[t->file].path, t->name, (long long)(r0 + r));
    }
    dsc_status s = fio_pwrite_all(j->fd, b->out, (size_t)nr * orow, j->base + t->offset + (uint64_t)r0 * orow, j->path);
    if (!s && t->qscale >= 0) {
        const qz_tensor *q = &j->p->t[t->qscale];
        s = fio_pwrite_all(j->fd, b->scale, (size_t)(nr * nb) * 2, j->base + q->offset + (uint64_t)(r0 * nb) * 2, j->path);
    }
    const size_t srb = (size_t)cols * st_dtype_size(t->src->dtype);
    qz_release(t->src->data + (size_t)r0 * srb, (size_t)nr * srb);
    return s;
}

/* Bytes [b0, b0 + n) of a tensor copied as they are. */
static dsc_status qz_chunk_copy(const qz_job *j, const qz_tensor *t, uint64_t b0, size_t n) {
    dsc_status s = fio_pwrite_all(j->fd, t->src->data + b0, n, j->base + t->offset + b0, j->path);
    qz_release(t->src->data + b0, n);
    return s;
}

/* Takes the next chunk; 0 when the file is done or a worker failed. */
static int qz_next_chunk(qz_job *j, const qz_tensor **t, uint64_t *lo, uint64_t *n) {
    pthread_mutex_lock(&j->mu);
    int more = !j->err && j->pos < j->n_order;
    if (more) {
        *t = &j->p->t[j->order[j->pos]];
        uint64_t total = (*t)->op == QZ_COPY ? (*t)->nbytes : (uint64_t)(*t)->rows;
        uint64_t per = (*t)->op == QZ_COPY ? QZ_COPY_CHUNK : j->cap / (uint64_t)(*t)->cols;
        *lo = j->at;
        *n = total - j->at < per ? total - j->at : per;
        j->at += *n;
        if (j->at >= total) j->pos++, j->at = 0;
    }
    pthread_mutex_unlock(&j->mu);
    return more;
}

static void qz_job_fail(qz_job *j, dsc_status s) {
    pthread_mutex_lock(&j->mu);
    if (!j->err) {
        j->err = s;
        snprintf(j->msg, sizeof j->msg, "%s", dsc_last_error());
    }
    pthread_mutex_unlock(&j->mu);
}

static void *qz_worker(void *arg) {
    qz_job *j = arg;
    const size_t mc = (size_t)j->p->max_cols + 1;
    qz_buf b = {malloc(mc * sizeof(float)), malloc(mc * 4), malloc(mc * sizeof(float)), malloc(j->cap * 2),
                malloc((j->cap / DSC_QBLOCK + 1) * 2)};
    if (!b.row || !b.tmp || !b.fsc || !b.out || !b.scale)
        qz_job_fail(j, dsc_fail(DSC_ERR_NOMEM, "quantize: out of memory for buffers of %zu elements", j->cap));
    const qz_tensor *t;
    uint64_t lo, n;
    while (qz_next_chunk(j, &t, &lo, &n)) {
        dsc_status s = t->op == QZ_COPY ? qz_chunk_copy(j, t, lo, (size_t)n)
                                        : qz_chunk_rows(j, t, (int64_t)lo, (int64_t)n, &b);
        if (s) qz_job_fail(j, s);
    }
    free(b.row);
    free(b.tmp);
    free(b.fsc);
    free(b.out);
    free(b.scale);
    return NULL;
}

/* Runs the job on n_threads threads, the caller being one of them. */
static dsc_status qz_job_run(qz_job *j, int n_threads) {
    pthread_t th[QZ_MAX_THREADS];
    int n = 0;
    while (n < n_threads - 1 && pthread_create(&th[n], NULL, qz_worker, j) == 0) n++; /* fewer is fine */
    qz_worker(j);
    for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
    return j->err ? dsc_fail(j->err, "%s", j->msg) : DSC_OK;
}

/* Header, then the data of output file k in file order. */
static dsc_status qz_write_file(const qz_plan *p, int k, int *order) {
    char path[FIO_PATH_MAX];
    dsc_status st = fio_join(path, p->out_dir, p->file_names[k]);
    if (st) return st;
    char *h = qz_header(p, k);
    if (!h) return dsc_fail(DSC_ERR_NOMEM, "%s: out of memory", path);
    size_t hl = strlen(h), padded = hl + st_header_pad(hl); /* the data starts 64-byte aligned */
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
    /* The largest matrix's row decides the chunk; the usual chunk is 1M elements. */
    size_t cap = QZ_CHUNK > (size_t)p->max_cols ? QZ_CHUNK : (size_t)p->max_cols;
    qz_job j = {.p = p, .order = order, .fd = fd, .base = 8 + padded, .path = path, .cap = cap};
    for (int rank = 0; rank < 8; rank++)
        for (int i = 0; i < p->n; i++)
            if (p->t[i].file == k && st_place_rank(p->t[i].nbytes, p->t[i].dtype) == rank && p->t[i].op != QZ_SCALE &&
                p->t[i].nbytes)
                order[j.n_order++] = i;
    if (!st) {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        pthread_mutex_init(&j.mu, NULL);
        st = qz_job_run(&j, ncpu < 1 ? 1 : ncpu > QZ_MAX_THREADS ? QZ_MAX_THREADS : (int)ncpu);
        pthread_mutex_destroy(&j.mu);
    }
    if (close(fd) != 0 && !st) st = dsc_fail(DSC_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    return st;
}

/* Removes a file of out_dir the loader would read instead of ours, or that a
 * failed run must not leave beside new weights (the config). */
static dsc_status qz_unlink(const char *dir, const char *name) {
    char path[FIO_PATH_MAX];
    dsc_status s = fio_join(path, dir, name);
    if (s) return s;
    if (unlink(path) != 0 && errno != ENOENT)
        return dsc_fail(DSC_ERR_IO, "%s: cannot remove the stale file: %s", path, strerror(errno));
    return DSC_OK;
}

static dsc_status qz_write_all(const qz_plan *p, const char *json, size_t len, const char *cfg_path, const char *type) {
    static const char *const side[] = {"tokenizer.json", "tokenizer_config.json", "generation_config.json"};
    dsc_status s = qz_unlink(p->out_dir, "config.json");
    if (!s) s = qz_unlink(p->out_dir, p->sharded ? "model.safetensors" : "model.safetensors.index.json");
    int *order = s ? NULL : malloc(sizeof *order * (size_t)(p->n ? p->n : 1));
    if (!s && !order) s = dsc_fail(DSC_ERR_NOMEM, "quantize: out of memory");
    for (int k = 0; k < p->n_files && !s; k++) s = qz_write_file(p, k, order);
    free(order);
    if (!s && p->sharded) s = qz_write_index(p);
    for (size_t i = 0; i < sizeof side / sizeof side[0] && !s; i++)
        s = qz_copy_side_file(p->in_dir, p->out_dir, side[i]);
    char path[FIO_PATH_MAX];
    if (!s && !(s = fio_join(path, p->out_dir, "config.json")))
        s = p->copy ? fio_replace_text(path, json, len) : qz_write_config(json, len, cfg_path, path, type);
    return s;
}

/* ------------------------------------------------------------------------ */
/* Public                                                                    */

/* Room for the weights where they go, before anything is written (files
 * of an older checkpoint there, replaced, count as room). */
static dsc_status qz_check_space(const qz_plan *p) {
    uint64_t need = 0, reclaim = 0;
    char path[FIO_PATH_MAX];
    for (int i = 0; i < p->n; i++) need += p->t[i].nbytes;
    for (int k = 0; k < p->n_files; k++)
        if (!fio_join(path, p->out_dir, p->file_names[k])) reclaim += fio_freed_bytes(path);
    return fio_check_space(p->out_dir, need, reclaim, "the quantised checkpoint");
}

/* The output must not be the input directory: its files are being read. */
static dsc_status qz_check_dirs(const char *in_dir, const char *out_dir) {
    struct stat a, b;
    if (stat(in_dir, &a) != 0) return dsc_fail(DSC_ERR_IO, "%s: no such model directory", in_dir);
    if (!S_ISDIR(a.st_mode)) return dsc_fail(DSC_ERR_IO, "%s: not a directory", in_dir);
    if (stat(out_dir, &b) == 0 && !S_ISDIR(b.st_mode))
        return dsc_fail(DSC_ERR_IO, "%s: exists and is not a directory", out_dir);
    if (stat(out_dir, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
        return dsc_fail(DSC_ERR_ARG, "%s: the output directory is the input directory", out_dir);
    return DSC_OK;
}

dsc_status dsc_quantize(const char *in_dir, const char *out_dir, const char *type) {
    if (!in_dir || !out_dir || !type) return dsc_fail(DSC_ERR_ARG, "quantize: no input, output or type given");
    if (strcmp(type, "q8") && strcmp(type, "q4") && strcmp(type, "copy"))
        return dsc_fail(DSC_ERR_ARG, "quantize: type '%.32s' is not supported (expected q8, q4 or copy)", type);
    dsc_status s = qz_check_dirs(in_dir, out_dir);
    if (s) return s;
    /* The input as dsc loads it (mapped, not read): a checkpoint its config
     * does not describe (a shape, a missing or extra tensor, a dtype) fails
     * here, before anything is written, not in the copy. */
    dsc_model_params mp = dsc_model_default_params();
    mp.keep_page_cache = 1;
    dsc_model *m = NULL;
    if ((s = dsc_model_load(in_dir, &mp, &m))) return s;
    dsc_model_free(m);
    qz_plan p = {.in_dir = in_dir, .out_dir = out_dir, .q4 = !strcmp(type, "q4"), .copy = !strcmp(type, "copy")};
    char cfg_path[FIO_PATH_MAX], *json = NULL;
    size_t len = 0;
    if (!(s = fio_join(cfg_path, in_dir, "config.json")) && !(s = fio_read_file(cfg_path, (size_t)16 << 20, &json, &len)))
        s = config_parse(json, len, cfg_path, &p.cfg);
    if (!s) {
        cJSON *root = fio_parse_json(json, len);
        const cJSON *qc = cJSON_GetObjectItemCaseSensitive(root, "quantization_config");
        const cJSON *qm = cJSON_GetObjectItemCaseSensitive(qc, "quant_method");
        if (!p.copy && cJSON_IsString(qm) && !strcmp(qm->valuestring, "dsc"))
            s = dsc_fail(DSC_ERR_ARG, "%s: the checkpoint is already quantised by dsc (give the BF16/FP8 one)",
                         cfg_path);
        cJSON_Delete(root);
    }
    if (!s) s = qz_open_input(&p);
    if (!s) s = qz_build(&p);
    if (!s) qz_layout(&p);
    if (!s) s = qz_check_space(&p);
    if (!s) s = fio_mkdirs(out_dir);
    if (!s) s = qz_write_all(&p, json, len, cfg_path, type);
    free(json);
    qz_plan_free(&p);
    return s;
}
