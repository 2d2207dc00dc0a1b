/*
 * adamw.c — the optimiser and DeepSeek-V3's auxiliary-loss-free balancing.
 *
 * AdamW (Loshchilov & Hutter; PyTorch's torch.optim.AdamW):
 *   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
 *   p -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps) + lr wd p
 * with weight decay only on tensors with ndim >= 2 (matrices; not norms).
 *
 * Bias update (DeepSeek-V3 report sec. 2.1.2): after each step, for every
 * MoE layer with e_score_correction_bias,
 *   bias_i += gamma x sign(mean(load) - load_i),
 * load_i = (token, slot) routes to expert i in the batch of that step.
 */
#include <math.h>

#include "train/trainer.h"

typedef struct {
    dsc_trainer *t;
    float lr, bc1, bc2;
} adamw_job;

/* Every thread takes its share of every tensor. */
static void adamw_task(void *arg, int ith, int nth) {
    const adamw_job *j = arg;
    const dsc_trainer *t = j->t;
    for (int32_t i = 0; i < t->n_tensors; i++) {
        const trn_tensor *e = &t->tensors[i];
        const dsc_adamw_hp hp = {t->p.beta1, t->p.beta2, t->p.eps, j->lr, e->pub.ndim >= 2 ? t->p.weight_decay : 0.0f,
                                 j->bc1, j->bc2};
        int64_t lo, hi;
        pool_split(e->pub.numel, ith, nth, 16, &lo, &hi);
        if (lo < hi)
            t->ex.k->adamw(t->params + e->off + lo, t->grads + e->off + lo, t->m + e->off + lo, t->v + e->off + lo, hi - lo,
                           &hp);
    }
}

void trainer_adamw(dsc_trainer *t, float lr) {
    t->step++;
    adamw_job j = {t, lr, (float)(1.0 - pow(t->p.beta1, (double)t->step)), (float)(1.0 - pow(t->p.beta2, (double)t->step))};
    if (t->ex.pool && t->n_floats >= 65536) pool_run(t->ex.pool, adamw_task, &j);
    else adamw_task(&j, 0, 1);
}

void trainer_update_bias(dsc_trainer *t) {
    const dsc_config *c = &t->cfg;
    const int32_t E = c->n_routed_experts;
    if (t->p.gamma <= 0) return;
    for (int i = 0; i < t->n_blocks; i++) {
        if (!t->has_bias[i]) continue;
        const int32_t *load = t->grad_load + (size_t)i * E;
        float *bias = t->bias + (size_t)i * E;
        double mean = 0;
        for (int32_t e = 0; e < E; e++) mean += load[e];
        mean /= E;
        for (int32_t e = 0; e < E; e++) {
            const double d = mean - load[e];
            bias[e] = (float)((double)bias[e] + t->p.gamma * (double)(d > 0 ? 1 : d < 0 ? -1 : 0));
        }
    }
}
