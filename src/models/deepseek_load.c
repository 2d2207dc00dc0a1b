/*
 * deepseek_load.c — bind a DeepSeek-V2/V3 checkpoint directory to dsc_model.
 *
 * The directory holds config.json and either model.safetensors or shards
 * listed in model.safetensors.index.json. Every tensor the forward pass uses
 * is looked up by its Hugging Face name and checked against the shape the
 * config implies. A tensor the config does not ask for is an error (the
 * config and the weights then disagree: fewer layers, no shared experts),
 * except the MTP layers the config declares, which training loads.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fileio.h"
#include "core/status.h"
#include "io/hugemap.h"
#include "models/model.h"


static dsc_status model_own(dsc_model *m, void *p) {
    if (!p) return dsc_fail(DSC_ERR_NOMEM, "%s: out of memory", m->dir);
    if (m->n_owned == m->cap_owned) {
        int cap = m->cap_owned ? m->cap_owned * 2 : 64;
        void **n = realloc(m->owned, sizeof *n * (size_t)cap);
        if (!n) {
            free(p);
            return dsc_fail(DSC_ERR_NOMEM, "%s: out of memory", m->dir);
        }
        m->owned = n;
        m->cap_owned = cap;
    }
    m->owned[m->n_owned++] = p;
    return DSC_OK;
}



/* ------------------------------------------------------------------------ */
/* Shards                                                                    */


/* A shard name from the index must be a plain file name inside the directory. */
static int shard_name_ok(const char *s) {
    return s[0] && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

static dsc_status open_shard(dsc_model *m, const char *name) {
    for (int i = 0; i < m->n_files; i++) {
        const char *p = strrchr(m->files[i].path, '/');
        if (strcmp(p ? p + 1 : m->files[i].path, name) == 0) return DSC_OK;
    }
    char path[FIO_PATH_MAX];
    dsc_status s = fio_join(path, m->dir, name);
    if (s) return s;
    st_file *nf = realloc(m->files, sizeof *nf * (size_t)(m->n_files + 1));
    if (!nf) return dsc_fail(DSC_ERR_NOMEM, "%s: out of memory", path);
    m->files = nf;
    s = st_open(path, &m->files[m->n_files]);
    if (s == DSC_OK) m->n_files++;
    return s;
}

/* Opens every shard named in the index and checks that each listed tensor is
 * in the shard the index names. */
static dsc_status open_index(dsc_model *m, const char *index_path) {
    char *buf = NULL;
    size_t len = 0;
    dsc_status s = fio_read_file(index_path, (size_t)256 << 20, &buf, &len);
    if (s) return s;
    cJSON *root = fio_parse_json(buf, len);
    free(buf);
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(wm)) {
        s = dsc_fail(DSC_ERR_FORMAT, "%s: %s", index_path, root ? "not JSON with a 'weight_map' object" : fio_json_error());
        cJSON_Delete(root);
        return s;
    }
    for (const cJSON *e = wm->child; e && !s; e = e->next) {
        if (!cJSON_IsString(e) || !shard_name_ok(e->valuestring))
            s = dsc_fail(DSC_ERR_FORMAT, "%s: weight_map['%s'] is not a file name in the model directory", index_path,
                         e->string);
        else s = open_shard(m, e->valuestring);
    }
    for (const cJSON *e = wm->child; e && !s; e = e->next) {
        int found = 0;
        for (int i = 0; i < m->n_files && !found; i++) {
            const char *p = strrchr(m->files[i].path, '/');
            if (strcmp(p + 1, e->valuestring) == 0) found = st_find(&m->files[i], e->string) != NULL;
        }
        if (!found)
            s = dsc_fail(DSC_ERR_SHAPE, "%s/%s: tensor '%s' listed in the index is not in this shard", m->dir,
                         e->valuestring, e->string);
    }
    if (!s && m->n_files == 0) s = dsc_fail(DSC_ERR_FORMAT, "%s: weight_map is empty", index_path);
    cJSON_Delete(root);
    return s;
}

static int ref_cmp(const void *a, const void *b) {
    return strcmp(((const dsc_tensor_ref *)a)->t->name, ((const dsc_tensor_ref *)b)->t->name);
}

static dsc_status build_index(dsc_model *m) {
    int n = 0;
    for (int i = 0; i < m->n_files; i++) n += m->files[i].n_tensors;
    m->index = malloc(sizeof *m->index * (size_t)(n ? n : 1));
    if (!m->index) return dsc_fail(DSC_ERR_NOMEM, "%s: out of memory", m->dir);
    for (int i = 0; i < m->n_files; i++)
        for (int j = 0; j < m->files[i].n_tensors; j++)
            m->index[m->n_index++] = (dsc_tensor_ref){&m->files[i].tensors[j], m->files[i].path, 0};
    qsort(m->index, (size_t)m->n_index, sizeof *m->index, ref_cmp);
    for (int i = 1; i < m->n_index; i++)
        if (strcmp(m->index[i - 1].t->name, m->index[i].t->name) == 0)
            return dsc_fail(DSC_ERR_FORMAT, "%s: tensor '%s' is in both %s and %s", m->dir, m->index[i].t->name,
                            m->index[i - 1].file, m->index[i].file);
    return DSC_OK;
}

static const dsc_tensor_ref *find_tensor(const dsc_model *m, const char *name) {
    int lo = 0, hi = m->n_index - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(name, m->index[mid].t->name);
        if (c == 0) return &m->index[mid];
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return NULL;
}

/* The tensor, marked as used, or NULL. */
static const dsc_tensor_ref *use_tensor(dsc_model *m, const char *name) {
    dsc_tensor_ref *r = (dsc_tensor_ref *)find_tensor(m, name);
    if (r) r->used = 1;
    return r;
}

/* Every tensor of the files is bound, or belongs to a declared MTP layer. */
static dsc_status check_unused(const dsc_model *m) {
    const dsc_config *c = &m->cfg;
    for (int i = 0; i < m->n_index; i++) {
        const dsc_tensor_ref *r = &m->index[i];
        int layer;
        if (r->used || (sscanf(r->t->name, "model.layers.%d.", &layer) == 1 && layer >= c->n_layers &&
                        layer < c->n_layers + c->n_nextn_layers))
            continue;
        return dsc_fail(DSC_ERR_SHAPE,
                        "%s: tensor '%s' is not part of the model config.json describes (%d layers, %d routed and %d "
                        "shared experts, %d MTP layers): the config and the weights disagree",
                        r->file, r->t->name, c->n_layers, c->n_routed_experts, c->n_shared_experts, c->n_nextn_layers);
    }
    return DSC_OK;
}

int model_tensor_count(const dsc_model *m) { return m->n_index; }

/* ------------------------------------------------------------------------ */
/* Tensors                                                                   */

static void shape_str(char *buf, size_t cap, const st_tensor *t) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < t->ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

static dsc_status check_shape(const dsc_tensor_ref *r, int ndim, int64_t d0, int64_t d1) {
    const st_tensor *t = r->t;
    if (t->ndim == ndim && t->shape[0] == d0 && (ndim == 1 || t->shape[1] == d1)) return DSC_OK;
    char have[128];
    shape_str(have, sizeof have, t);
    if (ndim == 1) return dsc_fail(DSC_ERR_SHAPE, "%s: tensor '%s' has shape %s, config expects [%lld]", r->file, t->name, have, (long long)d0);
    return dsc_fail(DSC_ERR_SHAPE, "%s: tensor '%s' has shape %s, config expects [%lld, %lld]", r->file, t->name, have,
                    (long long)d0, (long long)d1);
}

/* Tensor data must be aligned to its element size for the kernels; a file
 * written without padding gets an aligned private copy of that tensor. */
static dsc_status aligned_data(dsc_model *m, const st_tensor *t, const void **out) {
    size_t a = st_dtype_size(t->dtype);
    if (((uintptr_t)t->data % a) == 0) {
        *out = t->data;
        return DSC_OK;
    }
    void *copy = malloc(t->nbytes ? t->nbytes : 1);
    dsc_status s = model_own(m, copy);
    if (s) return s;
    memcpy(copy, t->data, t->nbytes);
    *out = copy;
    return DSC_OK;
}

/* Q8 / Q4 (dsc quantize): F16 block scales `<name>_qscale` [rows, cols / 32]. */
static dsc_status get_qscale(dsc_model *m, const char *name, int64_t rows, int64_t cols, dsc_mat *w) {
    char sname[512];
    if (strlen(name) + 8 >= sizeof sname) return dsc_fail(DSC_ERR_SHAPE, "%s: tensor name too long", name);
    snprintf(sname, sizeof sname, "%s_qscale", name);
    const dsc_tensor_ref *sr = use_tensor(m, sname);
    if (!sr) return dsc_fail(DSC_ERR_SHAPE, "%s: quantised tensor '%s' has no scale tensor '%s'", m->dir, name, sname);
    if (cols % DSC_QBLOCK)
        return dsc_fail(DSC_ERR_SHAPE, "%s: quantised tensor '%s' has %lld columns, not a multiple of %d", sr->file, name,
                        (long long)cols, DSC_QBLOCK);
    dsc_status s = check_shape(sr, 2, rows, cols / DSC_QBLOCK);
    if (s) return s;
    if (sr->t->dtype != ST_F16)
        return dsc_fail(DSC_ERR_SHAPE, "%s: tensor '%s' has dtype %s (expected F16)", sr->file, sname,
                        st_dtype_name(sr->t->dtype));
    const void *sd;
    if ((s = aligned_data(m, sr->t, &sd))) return s;
    w->qscale = sd;
    m->weight_bytes += (int64_t)sr->t->nbytes;
    return DSC_OK;
}

/* FP8: weight_scale_inv beside the weight, one F32 per block. */
static dsc_status get_fp8_scale(dsc_model *m, const char *name, int64_t rows, int64_t cols, dsc_mat *w) {
    char sname[512];
    size_t nl = strlen(name);
    if (nl < 7 || nl + 10 >= sizeof sname || strcmp(name + nl - 7, ".weight") != 0)
        return dsc_fail(DSC_ERR_SHAPE, "%s: FP8 tensor '%s' has no '.weight' name for its scales", m->dir, name);
    snprintf(sname, sizeof sname, "%s_scale_inv", name);
    const dsc_tensor_ref *sr = use_tensor(m, sname);
    if (!sr) return dsc_fail(DSC_ERR_SHAPE, "%s: FP8 tensor '%s' has no scale tensor '%s'", m->dir, name, sname);
    w->block_rows = m->cfg.fp8_block_rows;
    w->block_cols = m->cfg.fp8_block_cols;
    int64_t br = (rows + w->block_rows - 1) / w->block_rows, bc = (cols + w->block_cols - 1) / w->block_cols;
    dsc_status s = check_shape(sr, 2, br, bc);
    if (s) return s;
    if (sr->t->dtype != ST_F32)
        return dsc_fail(DSC_ERR_SHAPE, "%s: tensor '%s' has dtype %s (expected F32)", sr->file, sname,
                        st_dtype_name(sr->t->dtype));
    const void *sd;
    if ((s = aligned_data(m, sr->t, &sd))) return s;
    w->scale = sd;
    m->weight_bytes += (int64_t)sr->t->nbytes;
    return DSC_OK;
}

static dsc_status get_mat(dsc_model *m, const char *name, int64_t rows, int64_t cols, dsc_mat *w) {
    const dsc_tensor_ref *r = use_tensor(m, name);
    if (!r) return dsc_fail(DSC_ERR_SHAPE, "%s: tensor '%s' is missing", m->dir, name);
    /* Q4 packs two values per byte. */
    dsc_status s = check_shape(r, 2, rows, r->t->dtype == ST_U8 ? cols / 2 : cols);
    if (s) return s;
    memset(w, 0, sizeof *w);
    w->rows = (int32_t)rows;
    w->cols = (int32_t)cols;
    switch (r->t->dtype) {
    case ST_F32: w->type = DSC_W_F32; break;
    case ST_F16: w->type = DSC_W_F16; break;
    case ST_BF16: w->type = DSC_W_BF16; break;
    case ST_F8_E4M3: w->type = DSC_W_F8_E4M3; break;
    case ST_I8: w->type = DSC_W_Q8; break;
    case ST_U8: w->type = DSC_W_Q4; break;
    default:
        return dsc_fail(DSC_ERR_SHAPE, "%s: tensor '%s' has dtype %s (expected F32, F16, BF16, F8_E4M3, I8 or U8)",
                        r->file, name, st_dtype_name(r->t->dtype));
    }
    if ((s = aligned_data(m, r->t, &w->data))) return s;
    m->n_params += rows * cols;
    m->weight_bytes += (int64_t)r->t->nbytes;
    if (w->type == DSC_W_F8_E4M3) return get_fp8_scale(m, name, rows, cols, w);
    if (w->type == DSC_W_Q8 || w->type == DSC_W_Q4) return get_qscale(m, name, rows, cols, w);
    return DSC_OK;
}

/* A 1-D tensor (norm weight, router bias) as an owned F32 array. */
static dsc_status get_vec(dsc_model *m, const char *name, int64_t n, const float **out) {
    const dsc_tensor_ref *r = use_tensor(m, name);
    if (!r) return dsc_fail(DSC_ERR_SHAPE, "%s: tensor '%s' is missing", m->dir, name);
    dsc_status s = check_shape(r, 1, n, 0);
    if (s) return s;
    dsc_mat w = {.rows = 1, .cols = (int32_t)n, .data = r->t->data};
    switch (r->t->dtype) {
    case ST_F32: w.type = DSC_W_F32; break;
    case ST_F16: w.type = DSC_W_F16; break;
    case ST_BF16: w.type = DSC_W_BF16; break;
    default:
        return dsc_fail(DSC_ERR_SHAPE, "%s: tensor '%s' has dtype %s (expected F32, F16 or BF16)", r->file, name,
                        st_dtype_name(r->t->dtype));
    }
    float *v = malloc(sizeof(float) * (size_t)(n ? n : 1));
    if ((s = model_own(m, v))) return s;
    if ((s = aligned_data(m, r->t, &w.data))) return s;
    kern_mat_row(v, &w, 0);
    m->n_params += n;
    m->weight_bytes += (int64_t)r->t->nbytes;
    *out = v;
    return DSC_OK;
}

static dsc_status get_mlp(dsc_model *m, const char *prefix, int64_t ff, dsc_mlp *mlp) {
    const int64_t d = m->cfg.hidden_size;
    char n[512];
    dsc_status s;
    snprintf(n, sizeof n, "%s.gate_proj.weight", prefix);
    if ((s = get_mat(m, n, ff, d, &mlp->gate))) return s;
    snprintf(n, sizeof n, "%s.up_proj.weight", prefix);
    if ((s = get_mat(m, n, ff, d, &mlp->up))) return s;
    snprintf(n, sizeof n, "%s.down_proj.weight", prefix);
    return get_mat(m, n, d, ff, &mlp->down);
}

static dsc_status load_attention(dsc_model *m, int i, dsc_layer *l) {
    const dsc_config *c = &m->cfg;
    const int64_t d = c->hidden_size, h = c->n_heads, dq = c->qk_nope_head_dim + c->qk_rope_head_dim;
    char n[512];
    dsc_status s;
#define NAME(fmt) (snprintf(n, sizeof n, "model.layers.%d." fmt, i), n)
    if ((s = get_vec(m, NAME("input_layernorm.weight"), d, &l->attn_norm))) return s;
    if (c->q_lora_rank > 0) {
        if ((s = get_mat(m, NAME("self_attn.q_a_proj.weight"), c->q_lora_rank, d, &l->q_a)) ||
            (s = get_vec(m, NAME("self_attn.q_a_layernorm.weight"), c->q_lora_rank, &l->q_a_norm)) ||
            (s = get_mat(m, NAME("self_attn.q_b_proj.weight"), h * dq, c->q_lora_rank, &l->q_b)))
            return s;
    } else if ((s = get_mat(m, NAME("self_attn.q_proj.weight"), h * dq, d, &l->q))) {
        return s;
    }
    if ((s = get_mat(m, NAME("self_attn.kv_a_proj_with_mqa.weight"), c->kv_lora_rank + c->qk_rope_head_dim, d,
                     &l->kv_a)) ||
        (s = get_vec(m, NAME("self_attn.kv_a_layernorm.weight"), c->kv_lora_rank, &l->kv_a_norm)) ||
        (s = get_mat(m, NAME("self_attn.kv_b_proj.weight"), h * (c->qk_nope_head_dim + c->v_head_dim),
                     c->kv_lora_rank, &l->kv_b)) ||
        (s = get_mat(m, NAME("self_attn.o_proj.weight"), d, h * c->v_head_dim, &l->o)) ||
        (s = get_vec(m, NAME("post_attention_layernorm.weight"), d, &l->ffn_norm)))
        return s;
    const int64_t hi = c->index_n_heads, di = c->index_head_dim;
    if (c->index_topk > 0 && /* DeepSeek-V3.2's lightning indexer */
        ((s = get_mat(m, NAME("self_attn.indexer.wq_b.weight"), hi * di, c->q_lora_rank, &l->iq)) ||
         (s = get_mat(m, NAME("self_attn.indexer.wk.weight"), di, d, &l->ik)) ||
         (s = get_vec(m, NAME("self_attn.indexer.k_norm.weight"), di, &l->ik_norm_w)) ||
         (s = get_vec(m, NAME("self_attn.indexer.k_norm.bias"), di, &l->ik_norm_b)) ||
         (s = get_mat(m, NAME("self_attn.indexer.weights_proj.weight"), hi, d, &l->iw))))
        return s;
#undef NAME
    return DSC_OK;
}

static dsc_status load_ffn(dsc_model *m, int i, dsc_layer *l) {
    const dsc_config *c = &m->cfg;
    char n[512];
    dsc_status s;
    l->is_moe = config_layer_is_moe(c, i);
    if (!l->is_moe) {
        snprintf(n, sizeof n, "model.layers.%d.mlp", i);
        return get_mlp(m, n, c->intermediate_size, &l->mlp);
    }
    snprintf(n, sizeof n, "model.layers.%d.mlp.gate.weight", i);
    if ((s = get_mat(m, n, c->n_routed_experts, c->hidden_size, &l->router))) return s;
    if (c->topk_method == DSC_TOPK_NOAUX_TC) {
        snprintf(n, sizeof n, "model.layers.%d.mlp.gate.e_score_correction_bias", i);
        if ((s = get_vec(m, n, c->n_routed_experts, &l->router_bias))) return s;
    }
    l->experts = calloc((size_t)c->n_routed_experts, sizeof *l->experts);
    if ((s = model_own(m, l->experts))) return s;
    for (int e = 0; e < c->n_routed_experts; e++) {
        snprintf(n, sizeof n, "model.layers.%d.mlp.experts.%d", i, e);
        if ((s = get_mlp(m, n, c->moe_intermediate_size, &l->experts[e]))) return s;
    }
    l->has_shared = c->n_shared_experts > 0;
    if (!l->has_shared) return DSC_OK;
    snprintf(n, sizeof n, "model.layers.%d.mlp.shared_experts", i);
    return get_mlp(m, n, (int64_t)c->moe_intermediate_size * c->n_shared_experts, &l->shared);
}

static dsc_status load_weights(dsc_model *m) {
    const dsc_config *c = &m->cfg;
    dsc_status s;
    if ((s = get_mat(m, "model.embed_tokens.weight", c->vocab_size, c->hidden_size, &m->embed))) return s;
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    if ((s = model_own(m, m->layers))) return s;
    for (int i = 0; i < c->n_layers; i++)
        if ((s = load_attention(m, i, &m->layers[i])) || (s = load_ffn(m, i, &m->layers[i]))) return s;
    if ((s = get_vec(m, "model.norm.weight", c->hidden_size, &m->final_norm))) return s;
    if (c->tie_word_embeddings && !find_tensor(m, "lm_head.weight")) {
        m->lm_head = m->embed;
        return DSC_OK;
    }
    return get_mat(m, "lm_head.weight", c->vocab_size, c->hidden_size, &m->lm_head);
}

/* Contexts of one model may be made from several threads at once: the
 * first to ask loads the module, the others wait for it. */
static pthread_mutex_t mtp_mu = PTHREAD_MUTEX_INITIALIZER;

static dsc_status load_mtp_locked(dsc_model *m);

dsc_status model_load_mtp(dsc_model *m) {
    if (m->cfg.n_nextn_layers < 1)
        return dsc_fail(DSC_ERR_ARG, "%s: config.json has num_nextn_predict_layers 0: the checkpoint has no MTP layer", m->dir);
    pthread_mutex_lock(&mtp_mu);
    dsc_status s = m->mtp ? DSC_OK : load_mtp_locked(m);
    pthread_mutex_unlock(&mtp_mu);
    return s;
}

static dsc_status load_mtp_locked(dsc_model *m) {
    const dsc_config *c = &m->cfg;
    dsc_mtp *p = calloc(1, sizeof *p);
    dsc_status s = model_own(m, p);
    if (s) return s;
    const int i = c->n_layers;
    const int64_t d = c->hidden_size;
    char n[512];
#define NAME(fmt) (snprintf(n, sizeof n, "model.layers.%d." fmt, i), n)
    if ((s = load_attention(m, i, &p->layer)) || (s = load_ffn(m, i, &p->layer)) ||
        (s = get_mat(m, NAME("eh_proj.weight"), d, 2 * d, &p->eh_proj)) ||
        (s = get_vec(m, NAME("enorm.weight"), d, &p->enorm)) || (s = get_vec(m, NAME("hnorm.weight"), d, &p->hnorm)) ||
        (s = get_mat(m, NAME("embed_tokens.weight"), c->vocab_size, d, &p->embed)) ||
        (s = get_vec(m, NAME("shared_head.norm.weight"), d, &p->head_norm)) ||
        (s = get_mat(m, NAME("shared_head.head.weight"), c->vocab_size, d, &p->head)))
        return s;
#undef NAME
    m->mtp = p;
    return DSC_OK;
}

/* Weights one decode step reads (the roofline's numerator). */
static void count_active(dsc_model *m) {
    int64_t b = 0, p = 0;
#define ADD(w) (b += kern_mat_bytes(&(w)), p += (int64_t)(w).rows * (w).cols)
    for (int i = 0; i < m->cfg.n_layers; i++) {
        const dsc_layer *l = &m->layers[i];
        if (m->cfg.q_lora_rank > 0) ADD(l->q_a), ADD(l->q_b);
        else ADD(l->q);
        ADD(l->kv_a), ADD(l->kv_b), ADD(l->o);
        if (m->cfg.index_topk > 0) {
            ADD(l->iq), ADD(l->ik), ADD(l->iw);
            m->index_q_bytes += kern_mat_bytes(&l->iq) + kern_mat_bytes(&l->iw);
        }
        if (!l->is_moe) {
            ADD(l->mlp.gate), ADD(l->mlp.up), ADD(l->mlp.down);
            continue;
        }
        ADD(l->router);
        if (l->has_shared) ADD(l->shared.gate), ADD(l->shared.up), ADD(l->shared.down);
        int64_t eb = 0, ep = 0;
        for (int e = 0; e < m->cfg.n_routed_experts; e++) {
            const dsc_mlp *x = &l->experts[e];
            eb += kern_mat_bytes(&x->gate) + kern_mat_bytes(&x->up) + kern_mat_bytes(&x->down);
            ep += 3 * (int64_t)x->gate.rows * x->gate.cols;
        }
        b += eb * m->cfg.n_experts_per_tok / m->cfg.n_routed_experts;
        p += ep * m->cfg.n_experts_per_tok / m->cfg.n_routed_experts;
    }
    ADD(m->lm_head);
#undef ADD
    b += kern_mat_bytes(&m->embed) / m->embed.rows; /* one embedding row */
    m->active_bytes = b;
    m->active_params = p;
}

/* ------------------------------------------------------------------------ */
/* Public                                                                    */

dsc_model_params dsc_model_default_params(void) { return (dsc_model_params){0}; }

void dsc_model_free(dsc_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n_files; i++) st_close(&m->files[i]);
    free(m->files);
    free(m->index);
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->dir);
    free(m);
}

static dsc_status model_open_files(dsc_model *m) {
    char path[FIO_PATH_MAX];
    dsc_status s = fio_join(path, m->dir, "model.safetensors.index.json");
    if (s) return s;
    if (fio_exists(path)) return open_index(m, path);
    if ((s = fio_join(path, m->dir, "model.safetensors"))) return s;
    if (!fio_exists(path))
        return dsc_fail(DSC_ERR_IO, "%s: no model.safetensors or model.safetensors.index.json", m->dir);
    return open_shard(m, "model.safetensors");
}

/* VmLck of this process in bytes (/proc/self/status); -1 where unknown. */
static double locked_bytes(void) {
    FILE *fp = fopen("/proc/self/status", "r");
    if (!fp) return -1;
    char line[256];
    double kb = -1;
    while (fgets(line, sizeof line, fp))
        if (sscanf(line, "VmLck: %lf kB", &kb) == 1) break;
    fclose(fp);
    return kb < 0 ? -1 : kb * 1024;
}

/* mlock of every weight file's mapping; a warning on stderr where it fails. */
static void lock_weights(const dsc_model *m, int verbose) {
    double all = 0;
    for (int i = 0; i < m->n_files; i++) all += (double)m->files[i].size;
    /* Locking more than the RAM would only end in the OOM killer. */
    const double ram = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
    if (ram > 0 && all > 0.9 * ram) {
        fprintf(stderr, "dsc: %s: --mlock: %.1f GiB of weights do not fit in this machine's %.1f GiB of RAM; loaded "
                "unlocked\n", m->dir, all / 1073741824.0, ram / 1073741824.0);
        return;
    }
    const double before = locked_bytes();
    for (int i = 0; i < m->n_files; i++) {
        if (!m->files[i].map || mlock(m->files[i].map, m->files[i].size) == 0) continue;
        const int e = errno;
        struct rlimit rl;
        char lim[64] = "unknown";
        if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0) {
            if (rl.rlim_cur == RLIM_INFINITY) snprintf(lim, sizeof lim, "unlimited");
            else snprintf(lim, sizeof lim, "%llu KiB", (unsigned long long)rl.rlim_cur / 1024);
        }
        fprintf(stderr, "dsc: %s: --mlock: cannot lock %.1f MiB of weights in memory (%s; the memory-lock limit is %s, "
                "ulimit -l); loaded unlocked\n", m->dir, all / 1048576.0, strerror(e), lim);
        for (int k = 0; k < i; k++) /* all or nothing */
            if (m->files[k].map) munlock(m->files[k].map, m->files[k].size);
        return;
    }
    const double after = locked_bytes();
    if (before >= 0 && after >= 0 && after - before < 0.9 * all) /* a sanitizer's mlock, say, returns 0 and locks nothing */
        fprintf(stderr, "dsc: %s: --mlock: mlock succeeded but %.1f of %.1f MiB of weights are locked (VmLck)\n", m->dir,
                (after - before) / 1048576.0, all / 1048576.0);
    else if (verbose) fprintf(stderr, "dsc: %s: %.1f MiB of weights locked in memory\n", m->dir, all / 1048576.0);
}

dsc_status dsc_model_load(const char *dir, const dsc_model_params *params, dsc_model **out) {
    if (!out) return dsc_fail(DSC_ERR_ARG, "dsc_model_load: NULL out");
    *out = NULL;
    struct stat sb;
    if (!dir || stat(dir, &sb) != 0) return dsc_fail(DSC_ERR_IO, "%s: no such model directory", dir ? dir : "(null)");
    if (!S_ISDIR(sb.st_mode)) return dsc_fail(DSC_ERR_IO, "%s: not a directory", dir);
    dsc_model *m = calloc(1, sizeof *m);
    if (!m) return dsc_fail(DSC_ERR_NOMEM, "%s: out of memory", dir);
    m->dir = strdup(dir);
    char path[FIO_PATH_MAX];
    dsc_status s = m->dir ? fio_join(path, dir, "config.json") : dsc_fail(DSC_ERR_NOMEM, "out of memory");
    if (!s) s = config_load(path, &m->cfg);
    if (!s) s = model_open_files(m);
    for (int i = 0; !s && i < m->n_files && !(params && params->keep_page_cache); i++)
        if (st_reread_small(&m->files[i]) && params && params->verbose)
            fprintf(stderr, "dsc: %s: was cached in 4 KiB pages; read again into 2 MiB pages\n", m->files[i].path);
    if (!s) s = build_index(m);
    if (!s) s = load_weights(m);
    if (!s) s = check_unused(m);
    if (!s) {
        m->rope_inv_freq = malloc(sizeof(double) * (size_t)(m->cfg.qk_rope_head_dim / 2 + 1));
        s = model_own(m, m->rope_inv_freq);
    }
    if (s) {
        dsc_model_free(m);
        return s;
    }
    if (params && params->mlock) lock_weights(m, params->verbose);
    rope_init(m);
    count_active(m);
    m->softmax_scale = (float)config_softmax_scale(&m->cfg);
    if (params && params->verbose) {
        fprintf(stderr, "dsc: %s: %s, %d layers, %lld parameters (%.1f MiB as stored) in %d file(s)\n", dir,
                m->cfg.model_type, m->cfg.n_layers, (long long)m->n_params, m->weight_bytes / 1048576.0, m->n_files);
        double all = 0, off = 0; /* bytes of tensors of 64 KiB or more, and of those not 32-byte aligned */
        for (int i = 0; i < m->n_files; i++)
            for (int j = 0; j < m->files[i].n_tensors; j++) {
                const st_tensor *t = &m->files[i].tensors[j];
                if (t->nbytes < 65536) continue;
                all += (double)t->nbytes;
                if ((uintptr_t)t->data % 32) off += (double)t->nbytes;
            }
        if (off > all / 2)
            fprintf(stderr, "dsc: %s: %.0f%% of the weights are not 32-byte aligned in their files; `dsc quantize "
                    "--type copy` rewrites them aligned (decode 1-5%% faster on AVX2)\n", dir, 100 * off / all);
    }
    *out = m;
    return DSC_OK;
}

dsc_status dsc_model_resident(const dsc_model *m, int64_t *resident, int64_t *huge) {
    if (!m || !resident || !huge) return dsc_fail(DSC_ERR_ARG, "dsc_model_resident: NULL argument");
    *resident = *huge = 0;
    for (int i = 0; i < m->n_files; i++) {
        size_t r, h;
        if (!m->files[i].map || hm_resident(m->files[i].map, &r, &h) != 0) {
            *resident = *huge = -1;
            return dsc_fail(DSC_ERR_IO, "%s: cannot read this mapping's pages from /proc/self/smaps", m->files[i].path);
        }
        *resident += (int64_t)r;
        *huge += (int64_t)h;
    }
    return DSC_OK;
}

void dsc_model_get_info(const dsc_model *m, dsc_model_info *info) {
    if (!info) return;
    if (!m) { /* zeroed: no model */
        *info = (dsc_model_info){0};
        return;
    }
    const dsc_config *c = &m->cfg;
    *info = (dsc_model_info){
        .model_type = c->model_type,
        .vocab_size = c->vocab_size,
        .hidden_size = c->hidden_size,
        .n_layers = c->n_layers,
        .n_heads = c->n_heads,
        .kv_lora_rank = c->kv_lora_rank,
        .qk_rope_head_dim = c->qk_rope_head_dim,
        .n_routed_experts = c->n_routed_experts,
        .n_experts_per_tok = c->n_experts_per_tok,
        .max_position_embeddings = c->max_position_embeddings,
        .bos_token_id = c->bos_token_id,
        .eos_token_id = c->eos_token_id,
        .n_params = m->n_params,
        .weight_bytes = m->weight_bytes,
        .active_bytes = m->active_bytes,
        .active_params = m->active_params,
        .head_params = (int64_t)m->lm_head.rows * m->lm_head.cols,
        .index_topk = c->index_topk,
        .index_n_heads = c->index_n_heads,
        .index_head_dim = c->index_head_dim,
        .index_q_bytes = m->index_q_bytes,
        .qk_nope_head_dim = c->qk_nope_head_dim,
        .v_head_dim = c->v_head_dim,
    };
}

double dsc_prefill_attn_flops(const dsc_ctx *ctx, int32_t pos0, int32_t n, int *absorbed) {
    if (absorbed) *absorbed = 0;
    if (!ctx || pos0 < 0 || n < 1) return 0;
    const dsc_config *c = &ctx->model->cfg;
    /* V3.2's indexer: tokens at positions p with p + 1 > index_topk score p + 1 positions */
    const double lo = pos0 + 1.0 > c->index_topk + 1.0 ? pos0 + 1.0 : c->index_topk + 1.0, hi = (double)pos0 + n;
    const double idx = c->index_topk > 0 && lo <= hi ? (hi - lo + 1) * (lo + hi) / 2 * c->index_n_heads * c->index_head_dim : 0;
    return 2.0 * c->n_layers * (c->n_heads * mla_prefill_macs(c, pos0, n, ctx->mla_prefill, absorbed) + idx);
}
