/*
 * config.c — parse and validate config.json (cJSON).
 */
#include "io/config.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>

#include "core/fileio.h"
#include "core/status.h"

/* Sizes above these are not a DeepSeek model but a corrupt file; they also keep
 * every product of two sizes far from overflow. */
#define CFG_MAX_DIM (1 << 20)
#define CFG_MAX_VOCAB (1 << 24)
#define CFG_MAX_LAYERS 4096

typedef struct {
    const cJSON *root;
    const char *name;
} cfg_reader;

static const cJSON *cfg_item(const cfg_reader *r, const char *key) {
    return cJSON_GetObjectItemCaseSensitive(r->root, key);
}

/* An integer field in [lo, hi]. Missing or null gives def when def_ok, else an error. */
static dsc_status cfg_int(const cfg_reader *r, const char *key, int def_ok, int32_t def, int64_t lo, int64_t hi,
                          int32_t *out) {
    const cJSON *v = cfg_item(r, key);
    if (!v || cJSON_IsNull(v)) {
        if (!def_ok) return dsc_fail(DSC_ERR_CONFIG, "%s: field '%s' is missing", r->name, key);
        *out = def;
        return DSC_OK;
    }
    if (!cJSON_IsNumber(v) || floor(v->valuedouble) != v->valuedouble)
        return dsc_fail(DSC_ERR_CONFIG, "%s: field '%s' must be an integer", r->name, key);
    if (v->valuedouble < (double)lo || v->valuedouble > (double)hi)
        return dsc_fail(DSC_ERR_CONFIG, "%s: field '%s' = %.0f is out of range [%lld, %lld]", r->name, key,
                        v->valuedouble, (long long)lo, (long long)hi);
    *out = (int32_t)v->valuedouble;
    return DSC_OK;
}

static dsc_status cfg_num(const cJSON *v, const char *name, const char *key, double def, double lo, double hi,
                          double *out) {
    if (!v || cJSON_IsNull(v)) {
        if (isnan(def)) return dsc_fail(DSC_ERR_CONFIG, "%s: field '%s' is missing", name, key);
        *out = def;
        return DSC_OK;
    }
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi))
        return dsc_fail(DSC_ERR_CONFIG, "%s: field '%s' must be a number in [%g, %g]", name, key, lo, hi);
    *out = v->valuedouble;
    return DSC_OK;
}

static dsc_status cfg_bool(const cfg_reader *r, const char *key, int def, int *out) {
    const cJSON *v = cfg_item(r, key);
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return DSC_OK;
    }
    if (!cJSON_IsBool(v)) return dsc_fail(DSC_ERR_CONFIG, "%s: field '%s' must be true or false", r->name, key);
    *out = cJSON_IsTrue(v);
    return DSC_OK;
}

/* A string field that must be one of names[]; index into *out. */
static dsc_status cfg_enum(const cfg_reader *r, const char *key, const char *def, const char *const *names, int n,
                           int *out) {
    const cJSON *v = cfg_item(r, key);
    const char *s = def;
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsString(v)) return dsc_fail(DSC_ERR_CONFIG, "%s: field '%s' must be a string", r->name, key);
        s = v->valuestring;
    }
    if (!s) return dsc_fail(DSC_ERR_CONFIG, "%s: field '%s' is missing", r->name, key);
    for (int i = 0; i < n; i++)
        if (strcmp(s, names[i]) == 0) { *out = i; return DSC_OK; }
    char list[256] = "";
    for (int i = 0; i < n; i++) {
        strncat(list, i ? ", " : "", sizeof list - strlen(list) - 1);
        strncat(list, names[i], sizeof list - strlen(list) - 1);
    }
    return dsc_fail(DSC_ERR_CONFIG, "%s: field '%s' = '%.64s' is not supported (expected one of: %s)", r->name, key, s,
                    list);
}

/* eos_token_id may be an integer or a list of them (the first one is used). */
static dsc_status cfg_token_id(const cfg_reader *r, const char *key, int32_t *out) {
    const cJSON *v = cfg_item(r, key);
    if (cJSON_IsArray(v)) v = cJSON_GetArrayItem(v, 0);
    *out = -1;
    if (!v || cJSON_IsNull(v)) return DSC_OK;
    if (!cJSON_IsNumber(v) || floor(v->valuedouble) != v->valuedouble || v->valuedouble < 0 ||
        v->valuedouble >= CFG_MAX_VOCAB)
        return dsc_fail(DSC_ERR_CONFIG, "%s: field '%s' must be a token id", r->name, key);
    *out = (int32_t)v->valuedouble;
    return DSC_OK;
}

static dsc_status cfg_rope_scaling(const cfg_reader *r, dsc_config *c) {
    const cJSON *rs = cfg_item(r, "rope_scaling");
    c->yarn_factor = 0;
    if (!rs || cJSON_IsNull(rs)) return DSC_OK;
    if (!cJSON_IsObject(rs)) return dsc_fail(DSC_ERR_CONFIG, "%s: field 'rope_scaling' must be an object or null", r->name);
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(rs, "type");
    if (!ty) ty = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
    if (!cJSON_IsString(ty) || strcmp(ty->valuestring, "yarn") != 0)
        return dsc_fail(DSC_ERR_CONFIG, "%s: field 'rope_scaling.type' = '%.32s' is not supported (expected 'yarn')",
                        r->name, cJSON_IsString(ty) ? ty->valuestring : "?");
    dsc_status s;
    double omp;
    if ((s = cfg_num(cJSON_GetObjectItemCaseSensitive(rs, "factor"), r->name, "rope_scaling.factor", NAN, 1e-3, 1e6,
                     &c->yarn_factor)) ||
        (s = cfg_num(cJSON_GetObjectItemCaseSensitive(rs, "original_max_position_embeddings"), r->name,
                     "rope_scaling.original_max_position_embeddings", 4096, 1, 1e9, &omp)) ||
        (s = cfg_num(cJSON_GetObjectItemCaseSensitive(rs, "beta_fast"), r->name, "rope_scaling.beta_fast", 32, 1e-6,
                     1e6, &c->yarn_beta_fast)) ||
        (s = cfg_num(cJSON_GetObjectItemCaseSensitive(rs, "beta_slow"), r->name, "rope_scaling.beta_slow", 1, 1e-6,
                     1e6, &c->yarn_beta_slow)) ||
        (s = cfg_num(cJSON_GetObjectItemCaseSensitive(rs, "mscale"), r->name, "rope_scaling.mscale", 1, 0, 1e3,
                     &c->yarn_mscale)) ||
        (s = cfg_num(cJSON_GetObjectItemCaseSensitive(rs, "mscale_all_dim"), r->name, "rope_scaling.mscale_all_dim", 0,
                     0, 1e3, &c->yarn_mscale_all_dim)))
        return s;
    c->yarn_original_max_pos = (int32_t)omp;
    return DSC_OK;
}

static dsc_status cfg_quant(const cfg_reader *r, dsc_config *c) {
    c->fp8_block_rows = c->fp8_block_cols = 128;
    const cJSON *q = cfg_item(r, "quantization_config");
    if (!q || cJSON_IsNull(q)) return DSC_OK;
    if (!cJSON_IsObject(q))
        return dsc_fail(DSC_ERR_CONFIG, "%s: field 'quantization_config' must be an object or null", r->name);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(q, "quant_method");
    /* fp8: DeepSeek-V3's release; dsc: `dsc quantize` output (Q8/Q4 blocks,
     * recognised per tensor by dtype). */
    if (cJSON_IsString(m) && strcmp(m->valuestring, "fp8") != 0 && strcmp(m->valuestring, "dsc") != 0)
        return dsc_fail(DSC_ERR_CONFIG,
                        "%s: field 'quantization_config.quant_method' = '%.32s' is not supported (expected 'fp8' or 'dsc')",
                        r->name, m->valuestring);
    const cJSON *bs = cJSON_GetObjectItemCaseSensitive(q, "weight_block_size");
    if (!bs) return DSC_OK;
    const cJSON *b0 = cJSON_GetArrayItem(bs, 0), *b1 = cJSON_GetArrayItem(bs, 1);
    if (!cJSON_IsArray(bs) || cJSON_GetArraySize(bs) != 2 || !cJSON_IsNumber(b0) || !cJSON_IsNumber(b1) ||
        floor(b0->valuedouble) != b0->valuedouble || floor(b1->valuedouble) != b1->valuedouble || b0->valuedouble < 1 || b0->valuedouble > CFG_MAX_DIM || b1->valuedouble < 1 || b1->valuedouble > CFG_MAX_DIM)
        return dsc_fail(DSC_ERR_CONFIG, "%s: field 'quantization_config.weight_block_size' must be two positive integers",
                        r->name);
    c->fp8_block_rows = (int32_t)b0->valuedouble;
    c->fp8_block_cols = (int32_t)b1->valuedouble;
    return DSC_OK;
}

/* Cross-field consistency the forward pass relies on. */
static dsc_status cfg_validate(const char *name, dsc_config *c) {
    if (c->bos_token_id >= c->vocab_size || c->eos_token_id >= c->vocab_size)
        return dsc_fail(DSC_ERR_CONFIG, "%s: field '%s' = %d is not below vocab_size = %d", name,
                        c->bos_token_id >= c->vocab_size ? "bos_token_id" : "eos_token_id",
                        c->bos_token_id >= c->vocab_size ? c->bos_token_id : c->eos_token_id, c->vocab_size);
    if (c->qk_rope_head_dim % 2)
        return dsc_fail(DSC_ERR_CONFIG, "%s: field 'qk_rope_head_dim' = %d must be even", name, c->qk_rope_head_dim);
    if (c->qk_nope_head_dim + c->qk_rope_head_dim < 1) /* the softmax scale is (Dn + Dr)^-0.5 */
        return dsc_fail(DSC_ERR_CONFIG, "%s: fields 'qk_nope_head_dim' + 'qk_rope_head_dim' must be positive", name);
    /* Heads x head dim is a matrix dimension (dsc_mat rows/cols are int32). */
    int64_t hd = c->qk_nope_head_dim + (c->qk_rope_head_dim > c->v_head_dim ? c->qk_rope_head_dim : c->v_head_dim);
    if (c->n_heads * hd > CFG_MAX_DIM)
        return dsc_fail(DSC_ERR_CONFIG, "%s: field 'num_attention_heads' = %d times the head dims exceeds %d", name,
                        c->n_heads, CFG_MAX_DIM);
    if (c->index_topk > 0) {
        if (c->q_lora_rank < 1)
            return dsc_fail(DSC_ERR_CONFIG, "%s: deepseek_v32 needs 'q_lora_rank' (its indexer reads the query latent)", name);
        if (c->kv_lora_rank % 128)
            return dsc_fail(DSC_ERR_CONFIG, "%s: field 'kv_lora_rank' = %d must be a multiple of 128 in deepseek_v32 "
                            "(the latent cache is rounded to FP8 by blocks of 128)", name, c->kv_lora_rank);
        if (c->qk_rope_head_dim > c->index_head_dim)
            return dsc_fail(DSC_ERR_CONFIG, "%s: field 'qk_rope_head_dim' = %d exceeds 'index_head_dim' = %d", name,
                            c->qk_rope_head_dim, c->index_head_dim);
    }
    if (c->n_routed_experts == 0) return DSC_OK;
    if (c->n_experts_per_tok < 1 || c->n_experts_per_tok > c->n_routed_experts)
        return dsc_fail(DSC_ERR_CONFIG, "%s: field 'num_experts_per_tok' = %d must be in [1, n_routed_experts = %d]", name,
                        c->n_experts_per_tok, c->n_routed_experts);
    if (c->moe_intermediate_size < 1)
        return dsc_fail(DSC_ERR_CONFIG, "%s: field 'moe_intermediate_size' is missing", name);
    if (c->topk_method == DSC_TOPK_GREEDY) return DSC_OK;
    if (c->n_routed_experts % c->n_group)
        return dsc_fail(DSC_ERR_CONFIG, "%s: n_routed_experts = %d is not divisible by n_group = %d", name,
                        c->n_routed_experts, c->n_group);
    if (c->topk_group > c->n_group)
        return dsc_fail(DSC_ERR_CONFIG, "%s: topk_group = %d exceeds n_group = %d", name, c->topk_group, c->n_group);
    if ((int64_t)c->topk_group * (c->n_routed_experts / c->n_group) < c->n_experts_per_tok)
        return dsc_fail(DSC_ERR_CONFIG, "%s: topk_group = %d groups hold fewer than num_experts_per_tok = %d experts", name,
                        c->topk_group, c->n_experts_per_tok);
    return DSC_OK;
}

/* DeepSeek-V3.2's indexer: its heads, head dim and positions kept. The
 * head dim is a power of two (a Hadamard transform) of whole FP8 blocks of
 * 128, and takes the rope dims first. */
static dsc_status cfg_index(const cfg_reader *r, dsc_config *c) {
    dsc_status s;
    if ((s = cfg_int(r, "index_n_heads", 0, 0, 1, 1024, &c->index_n_heads)) ||
        (s = cfg_int(r, "index_head_dim", 0, 0, 128, 65536, &c->index_head_dim)) ||
        (s = cfg_int(r, "index_topk", 0, 0, 1, INT32_MAX, &c->index_topk)))
        return s;
    if (c->index_head_dim & (c->index_head_dim - 1))
        return dsc_fail(DSC_ERR_CONFIG, "%s: field 'index_head_dim' = %d must be a power of two", r->name,
                        c->index_head_dim);
    return DSC_OK;
}

static dsc_status cfg_read(const cfg_reader *r, dsc_config *c) {
    static const char *const types[] = {"deepseek_v2", "deepseek_v3", "deepseek_v32"};
    static const char *const topk[] = {"greedy", "group_limited_greedy", "noaux_tc"};
    static const char *const score[] = {"softmax", "sigmoid"};
    static const char *const act[] = {"silu"};
    int arch = 0, tm = 0, sf = 0, hact = 0, bias = 0;
    dsc_status s;
    double f;
    if ((s = cfg_enum(r, "model_type", NULL, types, 3, &arch))) return s;
    snprintf(c->model_type, sizeof c->model_type, "%s", types[arch]);
    if (arch == 2 && (s = cfg_index(r, c))) return s;
    c->arch = arch == 2 ? DSC_ARCH_V3 : (dsc_arch)arch; /* V3.2 is V3 with the indexer */
    if ((s = cfg_int(r, "vocab_size", 0, 0, 1, CFG_MAX_VOCAB, &c->vocab_size)) ||
        (s = cfg_int(r, "hidden_size", 0, 0, 1, CFG_MAX_DIM, &c->hidden_size)) ||
        (s = cfg_int(r, "intermediate_size", 0, 0, 1, CFG_MAX_DIM, &c->intermediate_size)) ||
        (s = cfg_int(r, "moe_intermediate_size", 1, 0, 0, CFG_MAX_DIM, &c->moe_intermediate_size)) ||
        (s = cfg_int(r, "num_hidden_layers", 0, 0, 1, CFG_MAX_LAYERS, &c->n_layers)) ||
        (s = cfg_int(r, "num_nextn_predict_layers", 1, 0, 0, 64, &c->n_nextn_layers)) ||
        (s = cfg_int(r, "num_attention_heads", 0, 0, 1, 65536, &c->n_heads)) ||
        (s = cfg_int(r, "q_lora_rank", 1, 0, 0, CFG_MAX_DIM, &c->q_lora_rank)) ||
        (s = cfg_int(r, "kv_lora_rank", 0, 0, 1, CFG_MAX_DIM, &c->kv_lora_rank)) ||
        (s = cfg_int(r, "qk_nope_head_dim", 0, 0, 0, 65536, &c->qk_nope_head_dim)) ||
        (s = cfg_int(r, "qk_rope_head_dim", 0, 0, 0, 65536, &c->qk_rope_head_dim)) ||
        (s = cfg_int(r, "v_head_dim", 0, 0, 1, 65536, &c->v_head_dim)) ||
        (s = cfg_int(r, "n_routed_experts", 1, 0, 0, 65536, &c->n_routed_experts)) ||
        (s = cfg_int(r, "n_shared_experts", 1, 0, 0, 1024, &c->n_shared_experts)) ||
        (s = cfg_int(r, "num_experts_per_tok", 1, 0, 0, 65536, &c->n_experts_per_tok)) ||
        (s = cfg_int(r, "n_group", 1, 1, 1, 65536, &c->n_group)) ||
        (s = cfg_int(r, "topk_group", 1, 1, 1, 65536, &c->topk_group)) ||
        (s = cfg_int(r, "first_k_dense_replace", 1, 0, 0, CFG_MAX_LAYERS, &c->first_k_dense_replace)) ||
        (s = cfg_int(r, "moe_layer_freq", 1, 1, 1, CFG_MAX_LAYERS, &c->moe_layer_freq)) ||
        (s = cfg_int(r, "max_position_embeddings", 1, 4096, 1, INT32_MAX, &c->max_position_embeddings)) ||
        (s = cfg_enum(r, "topk_method", c->arch == DSC_ARCH_V3 ? "noaux_tc" : "greedy", topk, 3, &tm)) ||
        (s = cfg_enum(r, "scoring_func", c->arch == DSC_ARCH_V3 ? "sigmoid" : "softmax", score, 2, &sf)) ||
        (s = cfg_enum(r, "hidden_act", "silu", act, 1, &hact)) ||
        (s = cfg_bool(r, "norm_topk_prob", 0, &c->norm_topk_prob)) ||
        (s = cfg_bool(r, "tie_word_embeddings", 0, &c->tie_word_embeddings)) ||
        (s = cfg_bool(r, "attention_bias", 0, &bias)) ||
        (s = cfg_token_id(r, "bos_token_id", &c->bos_token_id)) ||
        (s = cfg_token_id(r, "eos_token_id", &c->eos_token_id)))
        return s;
    c->topk_method = (dsc_topk)tm;
    c->scoring_func = (dsc_score)sf;
    if (bias) return dsc_fail(DSC_ERR_CONFIG, "%s: field 'attention_bias' = true is not supported", r->name);
    if ((s = cfg_num(cfg_item(r, "routed_scaling_factor"), r->name, "routed_scaling_factor", 1.0, 0, 1e6, &f))) return s;
    c->routed_scaling_factor = (float)f;
    if ((s = cfg_num(cfg_item(r, "rms_norm_eps"), r->name, "rms_norm_eps", 1e-6, 0, 1, &f))) return s;
    c->rms_norm_eps = (float)f;
    if ((s = cfg_num(cfg_item(r, "rope_theta"), r->name, "rope_theta", 10000.0, 1.0, 1e12, &c->rope_theta))) return s;
    if ((s = cfg_rope_scaling(r, c)) || (s = cfg_quant(r, c))) return s;
    return cfg_validate(r->name, c);
}

dsc_status config_parse(const char *json, size_t len, const char *name, dsc_config *c) {
    memset(c, 0, sizeof *c);
    cJSON *root = fio_parse_json(json, len);
    if (!root || !cJSON_IsObject(root)) {
        dsc_status s = dsc_fail(DSC_ERR_FORMAT, "%s: %s", name, root ? "not a JSON object" : fio_json_error());
        cJSON_Delete(root);
        return s;
    }
    cfg_reader r = {root, name};
    dsc_status s = cfg_read(&r, c);
    cJSON_Delete(root);
    return s;
}

dsc_status config_load(const char *path, dsc_config *c) {
    char *buf;
    size_t len;
    dsc_status s = fio_read_file(path, (size_t)16 << 20, &buf, &len); /* a config is a few KB */
    if (s) return s;
    s = config_parse(buf, len, path, c);
    free(buf);
    return s;
}

/* The fields config_diff compares, by their config.json names: the model's,
 * not how its weights are stored (quantization_config). */
#define CFG_I(name, field) {name, offsetof(dsc_config, field), sizeof(((dsc_config *)0)->field)}
static const struct {
    const char *name;
    size_t off, size;
} cfg_fields[] = {
    CFG_I("model_type", arch), CFG_I("vocab_size", vocab_size), CFG_I("hidden_size", hidden_size),
    CFG_I("intermediate_size", intermediate_size), CFG_I("moe_intermediate_size", moe_intermediate_size),
    CFG_I("num_hidden_layers", n_layers), CFG_I("num_nextn_predict_layers", n_nextn_layers),
    CFG_I("num_attention_heads", n_heads), CFG_I("q_lora_rank", q_lora_rank), CFG_I("kv_lora_rank", kv_lora_rank),
    CFG_I("qk_nope_head_dim", qk_nope_head_dim), CFG_I("qk_rope_head_dim", qk_rope_head_dim),
    CFG_I("v_head_dim", v_head_dim), CFG_I("n_routed_experts", n_routed_experts),
    CFG_I("n_shared_experts", n_shared_experts), CFG_I("num_experts_per_tok", n_experts_per_tok),
    CFG_I("n_group", n_group), CFG_I("topk_group", topk_group), CFG_I("first_k_dense_replace", first_k_dense_replace),
    CFG_I("moe_layer_freq", moe_layer_freq), CFG_I("topk_method", topk_method), CFG_I("scoring_func", scoring_func),
    CFG_I("norm_topk_prob", norm_topk_prob), CFG_I("routed_scaling_factor", routed_scaling_factor),
    CFG_I("rms_norm_eps", rms_norm_eps), CFG_I("rope_theta", rope_theta),
    CFG_I("max_position_embeddings", max_position_embeddings), CFG_I("tie_word_embeddings", tie_word_embeddings),
    CFG_I("bos_token_id", bos_token_id), CFG_I("eos_token_id", eos_token_id), CFG_I("rope_scaling", yarn_factor),
    CFG_I("rope_scaling", yarn_mscale), CFG_I("rope_scaling", yarn_mscale_all_dim),
    CFG_I("rope_scaling", yarn_beta_fast), CFG_I("rope_scaling", yarn_beta_slow),
    CFG_I("rope_scaling", yarn_original_max_pos), CFG_I("index_n_heads", index_n_heads),
    CFG_I("index_head_dim", index_head_dim), CFG_I("index_topk", index_topk),
};
#undef CFG_I

const char *config_diff(const dsc_config *a, const dsc_config *b) {
    for (size_t i = 0; i < sizeof cfg_fields / sizeof cfg_fields[0]; i++)
        if (memcmp((const char *)a + cfg_fields[i].off, (const char *)b + cfg_fields[i].off, cfg_fields[i].size))
            return cfg_fields[i].name;
    return NULL;
}

dsc_status config_write_quant(const char *json, size_t len, const char *src, const char *dst, struct cJSON *quant) {
    cJSON *root = fio_parse_json(json, len);
    if (!cJSON_IsObject(root)) {
        dsc_status s = dsc_fail(DSC_ERR_FORMAT, "%s: %s", src, root ? "not a JSON object" : fio_json_error());
        cJSON_Delete(root);
        cJSON_Delete(quant);
        return s;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(root, "quantization_config");
    if (quant) cJSON_AddItemToObject(root, "quantization_config", quant);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return dsc_fail(DSC_ERR_NOMEM, "%s: out of memory", dst);
    size_t n = strlen(text);
    text[n] = '\n'; /* cJSON_Print leaves no final newline; overwrite the NUL */
    dsc_status s = fio_replace_text(dst, text, n + 1);
    free(text);
    return s;
}

int config_layer_is_moe(const dsc_config *c, int i) {
    return c->n_routed_experts > 0 && i >= c->first_k_dense_replace && i % c->moe_layer_freq == 0;
}

/* YaRN attention-temperature factor (DeepSeek-V2 paper, appendix on YaRN). */
static double yarn_get_mscale(double factor, double mscale) {
    return factor <= 1 ? 1.0 : 0.1 * mscale * log(factor) + 1.0;
}

double config_softmax_scale(const dsc_config *c) {
    double s = 1.0 / sqrt((double)(c->qk_nope_head_dim + c->qk_rope_head_dim));
    if (c->yarn_factor > 0 && c->yarn_mscale_all_dim != 0) {
        double m = yarn_get_mscale(c->yarn_factor, c->yarn_mscale_all_dim);
        s *= m * m;
    }
    return s;
}
