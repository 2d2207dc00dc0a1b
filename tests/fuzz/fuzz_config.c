/*
 * fuzz_config.c — libFuzzer target for the config.json parser.
 *
 * The input is handed to config_parse() as JSON text (not NUL-terminated).
 * A rejected config must come with a one-line message; an accepted one must
 * hold the invariants the loader and the forward pass rely on (positive
 * sizes, even RoPE dim, experts divisible into groups, a finite softmax
 * scale).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/config.h"
#include "fuzz_check.h"

static void check_config(const dsc_config *c) {
    FUZZ_CHECK(c->vocab_size >= 1 && c->hidden_size >= 1 && c->n_layers >= 1 && c->n_heads >= 1);
    FUZZ_CHECK(c->kv_lora_rank >= 1 && c->v_head_dim >= 1 && c->qk_rope_head_dim % 2 == 0);
    FUZZ_CHECK(c->q_lora_rank >= 0 && c->n_group >= 1 && c->moe_layer_freq >= 1);
    FUZZ_CHECK(c->max_position_embeddings >= 1);
    FUZZ_CHECK(c->fp8_block_rows >= 1 && c->fp8_block_cols >= 1);
    if (c->n_routed_experts > 0) {
        FUZZ_CHECK(c->n_experts_per_tok >= 1 && c->n_experts_per_tok <= c->n_routed_experts);
        FUZZ_CHECK(c->moe_intermediate_size >= 1);
        if (c->topk_method != DSC_TOPK_GREEDY) {
            FUZZ_CHECK(c->n_routed_experts % c->n_group == 0 && c->topk_group <= c->n_group);
            FUZZ_CHECK((int64_t)c->topk_group * (c->n_routed_experts / c->n_group) >= c->n_experts_per_tok);
        }
    }
    double s = config_softmax_scale(c);
    FUZZ_CHECK(isfinite(s) && s > 0);
    FUZZ_CHECK(memchr(c->model_type, '\0', sizeof c->model_type) != NULL);
    int n_moe = 0;
    for (int i = 0; i < c->n_layers; i++) n_moe += config_layer_is_moe(c, i);
    FUZZ_CHECK(n_moe == 0 || c->n_routed_experts > 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dsc_config c;
    if (config_parse((const char *)data, size, "fuzz/config.json", &c) == DSC_OK) {
        check_config(&c);
        return 0;
    }
    const char *m = dsc_last_error();
    FUZZ_CHECK(m[0] != '\0');
    FUZZ_CHECK(strchr(m, '\n') == NULL && strchr(m, '\r') == NULL);
    return 0;
}
