/*
 * rope.c — rotary position embedding of MLA's decoupled key/query part, with
 * YaRN frequency scaling (DeepSeek-V2 paper, sec. 2.1.3 and appendix on YaRN;
 * Hugging Face DeepseekV2YarnRotaryEmbedding).
 *
 * Pairs are interleaved: (x0, x1), (x2, x3), ... pair i turns by pos x inv_freq[i].
 */
#include <math.h>

#include "models/model.h"

/* Dimension index at which a frequency completes num_rot turns over the
 * original context. */
static double yarn_correction_dim(double num_rot, int dim, double base, double max_pos) {
    return (dim * log(max_pos / (num_rot * 2 * M_PI))) / (2 * log(base));
}

static double yarn_get_mscale(double factor, double mscale) {
    return factor <= 1 ? 1.0 : 0.1 * mscale * log(factor) + 1.0;
}

void rope_init(dsc_model *m) {
    const dsc_config *c = &m->cfg;
    const int dim = c->qk_rope_head_dim, half = dim / 2;
    double *inv = m->rope_inv_freq;
    for (int i = 0; i < half; i++) inv[i] = pow(c->rope_theta, -2.0 * i / dim);
    m->rope_mscale = 1.0;
    if (c->yarn_factor <= 0) return;
    /* Blend interpolated (freq / factor) and extrapolated frequencies with a
     * linear ramp between the correction dims of beta_fast and beta_slow. */
    double low = floor(yarn_correction_dim(c->yarn_beta_fast, dim, c->rope_theta, c->yarn_original_max_pos));
    double high = ceil(yarn_correction_dim(c->yarn_beta_slow, dim, c->rope_theta, c->yarn_original_max_pos));
    if (low < 0) low = 0;
    if (high > dim - 1) high = dim - 1;
    if (low == high) high += 0.001;
    for (int i = 0; i < half; i++) {
        double ramp = (i - low) / (high - low);
        ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
        double extra_mask = 1.0 - ramp;
        inv[i] = inv[i] / c->yarn_factor * (1.0 - extra_mask) + inv[i] * extra_mask;
    }
    m->rope_mscale = yarn_get_mscale(c->yarn_factor, c->yarn_mscale) /
                     yarn_get_mscale(c->yarn_factor, c->yarn_mscale_all_dim);
}

void rope_tables(const dsc_model *m, float *cos_t, float *sin_t, int32_t n_pos) {
    const int half = m->cfg.qk_rope_head_dim / 2;
    for (int32_t p = 0; p < n_pos; p++)
        for (int i = 0; i < half; i++) {
            double a = (double)p * m->rope_inv_freq[i];
            cos_t[(int64_t)p * half + i] = (float)(cos(a) * m->rope_mscale);
            sin_t[(int64_t)p * half + i] = (float)(sin(a) * m->rope_mscale);
        }
}

void rope_apply(float *x, const float *cos_p, const float *sin_p, int32_t dr) {
    for (int32_t i = 0; i < dr / 2; i++) {
        float x0 = x[2 * i], x1 = x[2 * i + 1];
        x[2 * i] = x0 * cos_p[i] - x1 * sin_p[i];
        x[2 * i + 1] = x1 * cos_p[i] + x0 * sin_p[i];
    }
}
