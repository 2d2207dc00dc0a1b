/*
 * config.h — the Hugging Face config.json of DeepSeek-V2 / V2-Lite / V3 / R1 / V3.2.
 */
#ifndef DSC_IO_CONFIG_H
#define DSC_IO_CONFIG_H

#include <stdint.h>

#include "dsc.h"

typedef enum { DSC_ARCH_V2, DSC_ARCH_V3 } dsc_arch;               /* model_type            */
typedef enum { DSC_TOPK_GREEDY, DSC_TOPK_GROUP, DSC_TOPK_NOAUX_TC } dsc_topk; /* topk_method */
typedef enum { DSC_SCORE_SOFTMAX, DSC_SCORE_SIGMOID } dsc_score;   /* scoring_func          */

typedef struct {
    dsc_arch arch;
    char model_type[16];
    int32_t vocab_size, hidden_size, intermediate_size, moe_intermediate_size;
    int32_t n_layers;            /* num_hidden_layers                               */
    int32_t n_nextn_layers;      /* num_nextn_predict_layers (MTP, not decoded)      */
    int32_t n_heads;             /* num_attention_heads                             */
    int32_t q_lora_rank;         /* 0 when null: plain q_proj                       */
    int32_t kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim, v_head_dim;
    int32_t n_routed_experts;    /* 0 when null: every layer dense                  */
    int32_t n_shared_experts;
    int32_t n_experts_per_tok;
    int32_t n_group, topk_group;
    int32_t first_k_dense_replace, moe_layer_freq;
    dsc_topk topk_method;
    dsc_score scoring_func;
    int norm_topk_prob;
    float routed_scaling_factor;
    float rms_norm_eps;
    double rope_theta;
    int32_t max_position_embeddings;
    int tie_word_embeddings;
    int32_t bos_token_id, eos_token_id; /* -1 when absent                        */
    /* rope_scaling: YaRN, or none (yarn_factor = 0). */
    double yarn_factor, yarn_mscale, yarn_mscale_all_dim, yarn_beta_fast, yarn_beta_slow;
    int32_t yarn_original_max_pos;
    /* DeepSeek-V3.2 (model_type deepseek_v32, arch V3): sparse attention. A
     * lightning indexer of index_n_heads heads of index_head_dim picks each
     * query's index_topk positions; index_topk 0 for every other model. */
    int32_t index_n_heads, index_head_dim, index_topk;
    /* quantization_config.weight_block_size for FP8 weights. */
    int32_t fp8_block_rows, fp8_block_cols;
} dsc_config;

/* Reads and validates path (config.json). Unknown enum values, missing
 * required fields and inconsistent sizes give DSC_ERR_CONFIG naming the field. */
dsc_status config_load(const char *path, dsc_config *c);

/* Parses config JSON already in memory; name is used in messages. */
dsc_status config_parse(const char *json, size_t len, const char *name, dsc_config *c);

/* The config.json name of the first field in which a and b differ (both
 * from config_parse), or NULL when they describe the same model. */
const char *config_diff(const dsc_config *a, const dsc_config *b);

/* Writes the config JSON text json (from src, named in messages) to dst
 * with its quantization_config replaced by quant (a cJSON object, consumed)
 * or removed when quant is NULL. */
struct cJSON;
dsc_status config_write_quant(const char *json, size_t len, const char *src, const char *dst, struct cJSON *quant);

/* Layer i uses the MoE FFN (DeepSeek-V2 modelling code's condition). */
int config_layer_is_moe(const dsc_config *c, int i);

/* Softmax scale of MLA: (qk_nope + qk_rope)^-0.5, times mscale^2 under YaRN. */
double config_softmax_scale(const dsc_config *c);

#endif
