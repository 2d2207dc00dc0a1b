/*
 * trainer.c — DeepSeek-V2/V3 training: parameters in F32 arenas, a forward
 * pass that keeps its activations, and the backward pass through all of it.
 *
 *   x = embed(token)
 *   for each layer:  x += MLA(rmsnorm(x));  x += FFN(rmsnorm(x))
 *   loss = CE(lm_head(rmsnorm(x)), targets) + alpha x balance loss of each MoE layer
 *
 * The semantics are those of the inference forward (src/models/deepseek.c,
 * src/nn): the checkpoint is read by dsc_model_load, experts are chosen by
 * moe_route, RoPE tables come from rope_tables. MLA runs in its decompressed
 * form (keys and values of every head from the latent), which gives the same
 * function as the absorbed one.
 */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/status.h"
#include "models/model.h"
#include "train/trainer.h"

dsc_train_params dsc_train_default_params(void) {
    return (dsc_train_params){
        .alpha = 0.01f, .gamma = 0.01f, .lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f,
    };
}

static size_t pad16(size_t n) { return (n + 15) & ~(size_t)15; }

static void zero(float *p, size_t n) {
    if (n) memset(p, 0, sizeof(float) * n);
}

/* ------------------------------------------------------------------------ */
/* Tensor table and arena layout                                            */
/*                                                                           */
/* One walk over the model's tensors serves three purposes: count them and   */
/* size the arena (no table), fill the table with names, shapes and sources, */
/* and point a trn_weights into an arena. Experts are laid out by kind (all  */
/* gate_proj, then all up_proj, then all down_proj) — any order would do.    */

typedef struct {
    dsc_trainer *t;
    const dsc_model *m;   /* sources, or NULL                               */
    float *base;          /* arena pointed into, or NULL                    */
    trn_weights *w;
    trn_tensor *table;    /* filled when non-NULL                           */
    int32_t n;
    size_t off;
} walker;

static float *walk_add(walker *k, int64_t rows, int64_t cols, const dsc_mat *src, const float *src_vec,
                       const char *fmt, ...) {
    const int64_t numel = rows * (cols ? cols : 1);
    if (k->table) {
        trn_tensor *e = &k->table[k->n];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->name, sizeof e->name, fmt, ap);
        va_end(ap);
        e->pub.name = e->name;
        e->pub.ndim = cols ? 2 : 1;
        e->pub.shape[0] = rows;
        e->pub.shape[1] = cols;
        e->pub.numel = numel;
        e->off = k->off;
        e->src = src;
        e->src_vec = src_vec;
    }
    float *p = k->base ? k->base + k->off : NULL;
    k->off += pad16((size_t)numel);
    k->n++;
    return p;
}

#define SRC(expr) (k->m ? (expr) : NULL)

static void walk_mlp(walker *k, trn_mlp *out, const dsc_mlp *src, int64_t ff, const char *prefix) {
    const int64_t D = k->t->cfg.hidden_size;
    out->gate = walk_add(k, ff, D, src ? &src->gate : NULL, NULL, "%s.gate_proj.weight", prefix);
    out->up = walk_add(k, ff, D, src ? &src->up : NULL, NULL, "%s.up_proj.weight", prefix);
    out->down = walk_add(k, D, ff, src ? &src->down : NULL, NULL, "%s.down_proj.weight", prefix);
}

static void walk_layer(walker *k, int i) {
    const dsc_config *c = &k->t->cfg;
    const int64_t D = c->hidden_size, H = c->n_heads, Dq = c->qk_nope_head_dim + c->qk_rope_head_dim;
    const int64_t R = c->kv_lora_rank, Dr = c->qk_rope_head_dim, Rq = c->q_lora_rank, E = c->n_routed_experts;
    const dsc_layer *ml = !k->m ? NULL : i < c->n_layers ? &k->m->layers[i] : &k->m->mtp->layer;
    trn_layer *l = &k->w->layers[i];
    char pre[96];
#define L(fmt) "model.layers.%d." fmt, i
    l->attn_norm = walk_add(k, D, 0, NULL, ml ? ml->attn_norm : NULL, L("input_layernorm.weight"));
    if (Rq > 0) {
        l->q_a = walk_add(k, Rq, D, ml ? &ml->q_a : NULL, NULL, L("self_attn.q_a_proj.weight"));
        l->q_a_norm = walk_add(k, Rq, 0, NULL, ml ? ml->q_a_norm : NULL, L("self_attn.q_a_layernorm.weight"));
        l->q_b = walk_add(k, H * Dq, Rq, ml ? &ml->q_b : NULL, NULL, L("self_attn.q_b_proj.weight"));
    } else {
        l->q = walk_add(k, H * Dq, D, ml ? &ml->q : NULL, NULL, L("self_attn.q_proj.weight"));
    }
    l->kv_a = walk_add(k, R + Dr, D, ml ? &ml->kv_a : NULL, NULL, L("self_attn.kv_a_proj_with_mqa.weight"));
    l->kv_a_norm = walk_add(k, R, 0, NULL, ml ? ml->kv_a_norm : NULL, L("self_attn.kv_a_layernorm.weight"));
    l->kv_b = walk_add(k, H * (c->qk_nope_head_dim + c->v_head_dim), R, ml ? &ml->kv_b : NULL, NULL,
                       L("self_attn.kv_b_proj.weight"));
    l->o = walk_add(k, D, H * c->v_head_dim, ml ? &ml->o : NULL, NULL, L("self_attn.o_proj.weight"));
    l->ffn_norm = walk_add(k, D, 0, NULL, ml ? ml->ffn_norm : NULL, L("post_attention_layernorm.weight"));
    l->is_moe = config_layer_is_moe(c, i);
    if (!l->is_moe) {
        snprintf(pre, sizeof pre, "model.layers.%d.mlp", i);
        walk_mlp(k, &l->mlp, ml ? &ml->mlp : NULL, c->intermediate_size, pre);
        return;
    }
    const int64_t Fm = c->moe_intermediate_size;
    l->router = walk_add(k, E, D, ml ? &ml->router : NULL, NULL, L("mlp.gate.weight"));
    for (int e = 0; e < E; e++)
        l->experts[e].gate = walk_add(k, Fm, D, ml ? &ml->experts[e].gate : NULL, NULL,
                                      L("mlp.experts.%d.gate_proj.weight"), e);
    for (int e = 0; e < E; e++)
        l->experts[e].up = walk_add(k, Fm, D, ml ? &ml->experts[e].up : NULL, NULL, L("mlp.experts.%d.up_proj.weight"), e);
    for (int e = 0; e < E; e++)
        l->experts[e].down = walk_add(k, D, Fm, ml ? &ml->experts[e].down : NULL, NULL,
                                      L("mlp.experts.%d.down_proj.weight"), e);
#undef L
    if (c->n_shared_experts > 0) {
        snprintf(pre, sizeof pre, "model.layers.%d.mlp.shared_experts", i);
        walk_mlp(k, &l->shared, ml ? &ml->shared : NULL, Fm * c->n_shared_experts, pre);
    }
}

static void walk_model(walker *k) {
    const dsc_config *c = &k->t->cfg;
    const int64_t V = c->vocab_size, D = c->hidden_size;
    k->w->embed = walk_add(k, V, D, SRC(&k->m->embed), NULL, "model.embed_tokens.weight");
    for (int i = 0; i < c->n_layers; i++) walk_layer(k, i);
    k->w->norm = walk_add(k, D, 0, NULL, SRC(k->m->final_norm), "model.norm.weight");
    k->w->lm_head = k->t->tied ? k->w->embed : walk_add(k, V, D, SRC(&k->m->lm_head), NULL, "lm_head.weight");
    if (!k->t->mtp) return;
    const int L = c->n_layers;
    const dsc_mtp *mt = k->m ? k->m->mtp : NULL;
    walk_layer(k, L);
#define M(fmt) "model.layers.%d." fmt, L
    k->w->eh_proj = walk_add(k, D, 2 * D, mt ? &mt->eh_proj : NULL, NULL, M("eh_proj.weight"));
    k->w->enorm = walk_add(k, D, 0, NULL, mt ? mt->enorm : NULL, M("enorm.weight"));
    k->w->hnorm = walk_add(k, D, 0, NULL, mt ? mt->hnorm : NULL, M("hnorm.weight"));
    k->w->mtp_embed = walk_add(k, V, D, mt ? &mt->embed : NULL, NULL, M("embed_tokens.weight"));
    k->w->mtp_head_norm = walk_add(k, D, 0, NULL, mt ? mt->head_norm : NULL, M("shared_head.norm.weight"));
    k->w->mtp_head = walk_add(k, V, D, mt ? &mt->head : NULL, NULL, M("shared_head.head.weight"));
#undef M
}

/* ------------------------------------------------------------------------ */
/* Activation memory: planned once for (Bmax, Tmax), then pointed into.      */

typedef struct {
    float *fbase;
    int32_t *ibase;
    size_t foff, ioff;
} planner;

static float *take(planner *p, size_t n) {
    float *r = p->fbase ? p->fbase + p->foff : NULL;
    p->foff += pad16(n);
    return r;
}

static int32_t *take_i(planner *p, size_t n) {
    int32_t *r = p->ibase ? p->ibase + p->ioff : NULL;
    p->ioff += pad16(n);
    return r;
}

static void plan_acts(dsc_trainer *t, planner *p) {
    const dsc_config *c = &t->cfg;
    const size_t N = (size_t)t->Bmax * t->Tmax, D = c->hidden_size, H = c->n_heads, R = c->kv_lora_rank;
    const size_t Dn = c->qk_nope_head_dim, Dr = c->qk_rope_head_dim, Dv = c->v_head_dim, Dq = Dn + Dr;
    const size_t Rq = c->q_lora_rank, E = c->n_routed_experts, K = c->n_experts_per_tok;
    const size_t Fm = c->moe_intermediate_size, Fs = Fm * c->n_shared_experts, V = c->vocab_size;
    size_t Fmax = 0;
    for (int i = 0; i < t->n_blocks; i++) {
        trn_acts *a = &t->acts[i];
        const int moe = config_layer_is_moe(c, i);
        const size_t Fx = moe ? Fs : (size_t)c->intermediate_size;
        Fmax = Fx > Fmax ? Fx : Fmax;
        a->x = take(p, N * D);
        a->rstd1 = take(p, N);
        a->xn1 = take(p, N * D);
        a->qa = take(p, N * Rq);
        a->qa_rstd = take(p, Rq ? N : 0);
        a->qan = take(p, N * Rq);
        a->q = take(p, N * H * Dq);
        a->craw = take(p, N * R);
        a->kv_rstd = take(p, N);
        a->c = take(p, N * R);
        a->kpe = take(p, N * Dr);
        a->kv = take(p, N * H * (Dn + Dv));
        a->att = take(p, (size_t)t->Bmax * H * t->Tmax * t->Tmax);
        a->ao = take(p, N * H * Dv);
        a->x2 = take(p, N * D);
        a->rstd2 = take(p, N);
        a->xn2 = take(p, N * D);
        a->g = take(p, N * Fx);
        a->u = take(p, N * Fx);
        a->h = take(p, N * Fx);
        if (!moe) continue;
        a->rlogit = take(p, N * E);
        a->score = take(p, N * E);
        a->idx = take_i(p, N * K);
        a->rw = take(p, N * K);
        a->order = take_i(p, N * K);
        a->eoff = take_i(p, E + 1);
        a->ex = take(p, N * K * D);
        a->eg = take(p, N * K * Fm);
        a->eu = take(p, N * K * Fm);
        a->eh = take(p, N * K * Fm);
        a->ey = take(p, N * K * D);
    }
    t->inputs = take_i(p, N);
    t->targets = take_i(p, N);
    t->xL = take(p, N * D);
    t->rstdf = take(p, N);
    t->xf = take(p, N * D);
    t->probs = take(p, N * V);
    t->losses = take(p, N);
    if (t->mtp) {
        t->mtp_inputs = take_i(p, N);
        t->mtp_targets = take_i(p, N);
        t->mtp_w = take(p, N);
        t->mtp_e = take(p, N * D);
        t->mtp_en = take(p, N * D);
        t->mtp_erstd = take(p, N);
        t->mtp_hn = take(p, N * D);
        t->mtp_hrstd = take(p, N);
        t->mtp_cat = take(p, N * 2 * D);
        t->mtp_xL = take(p, N * D);
        t->mtp_rstdf = take(p, N);
        t->mtp_xf = take(p, N * D);
        t->mtp_probs = take(p, N * V);
        t->mtp_losses = take(p, N);
        t->mtp_dcat = take(p, N * 2 * D);
        t->mtp_dxf = take(p, N * D);
    }
    trn_grads_acts *g = &t->ga;
    g->y = take(p, N * D);
    g->kva = take(p, N * (R + Dr));
    g->dx = take(p, N * D);
    g->dxn = take(p, N * D);
    g->dqa = take(p, N * Rq);
    g->dqan = take(p, N * Rq);
    g->dq = take(p, N * H * Dq);
    g->dkva = take(p, N * (R + Dr));
    g->dcraw = take(p, N * R);
    g->dc = take(p, N * R);
    g->dkpe = take(p, N * Dr);
    g->dkpe_h = take(p, N * H * Dr);
    g->dkv = take(p, N * H * (Dn + Dv));
    g->dao = take(p, N * H * Dv);
    g->dg = take(p, N * Fmax);
    g->du = take(p, N * Fmax);
    g->dh = take(p, N * Fmax);
    g->drlogit = take(p, N * E);
    g->dscore = take(p, N * E);
    g->drw = take(p, N * K);
    g->dex = take(p, N * K * D);
    g->dey = take(p, N * K * D);
    g->deg = take(p, N * K * Fm);
    g->deu = take(p, N * K * Fm);
    g->deh = take(p, N * K * Fm);
    g->dxf = take(p, N * D);
}

/* ------------------------------------------------------------------------ */
/* Construction                                                              */

void dsc_trainer_free(dsc_trainer *t) {
    if (!t) return;
    pool_free(t->ex.pool);
    pool_scratch_release();
    free(t->tensors);
    free(t->params);
    free(t->grads);
    free(t->m);
    free(t->v);
    free(t->w.layers);
    free(t->g.layers);
    free(t->expert_ptrs);
    free(t->bias);
    free(t->has_bias);
    free(t->load);
    free(t->grad_load);
    free(t->rope_cos);
    free(t->rope_sin);
    free(t->act_mem);
    free(t->act_imem);
    free(t->acts);
    free(t);
}

/* Copies every tensor from the checkpoint (any stored type) into the arena. */
static void copy_params(dsc_trainer *t) {
    for (int32_t i = 0; i < t->n_tensors; i++) {
        trn_tensor *e = &t->tensors[i];
        float *dst = t->params + e->off;
        if (e->src)
            for (int64_t r = 0; r < e->pub.shape[0]; r++) kern_mat_row(dst + r * e->pub.shape[1], e->src, (int32_t)r);
        else memcpy(dst, e->src_vec, sizeof(float) * (size_t)e->pub.numel);
        e->src = NULL;
        e->src_vec = NULL;
    }
}

static dsc_status check_params(const dsc_train_params *p) {
    if (p->n_batch < 1 || p->n_batch > (1 << 20))
        return dsc_fail(DSC_ERR_ARG, "trainer: a batch of %d sequences is out of range [1, %d]", p->n_batch, 1 << 20);
    if (p->n_seq < 1 || p->n_seq > (1 << 16))
        return dsc_fail(DSC_ERR_ARG, "trainer: a sequence of %d tokens is out of range [1, %d]", p->n_seq, 1 << 16);
    if (p->n_threads < 0 || p->n_threads > 1024) return dsc_fail(DSC_ERR_ARG, "trainer: n_threads %d out of range", p->n_threads);
    if (!(p->alpha >= 0) || !(p->gamma >= 0) || !(p->beta1 >= 0 && p->beta1 < 1) || !(p->beta2 >= 0 && p->beta2 < 1) ||
        !(p->eps > 0) || !(p->weight_decay >= 0))
        return dsc_fail(DSC_ERR_ARG, "trainer: alpha, gamma, betas, eps or weight decay out of range");
    if (!(p->mtp_lambda >= 0 && p->mtp_lambda <= 100))
        return dsc_fail(DSC_ERR_ARG, "trainer: mtp_lambda %g out of range [0, 100]", (double)p->mtp_lambda);
    if (p->mtp_lambda > 0 && p->n_seq < 2)
        return dsc_fail(DSC_ERR_ARG, "--mtp-lambda needs sequences of 2 tokens or more (the MTP layer predicts token t + 2)");
    return DSC_OK;
}

/* Sizes, tables and arenas once the config is known (m gives the sources). */
static dsc_status trainer_build(dsc_trainer *t, const dsc_model *m) {
    const dsc_config *c = &t->cfg;
    const int L = t->n_blocks, E = c->n_routed_experts;
    t->w.layers = calloc((size_t)L, sizeof(trn_layer));
    t->g.layers = calloc((size_t)L, sizeof(trn_layer));
    t->expert_ptrs = calloc((size_t)2 * L * (E ? E : 1), sizeof(trn_mlp));
    t->acts = calloc((size_t)L, sizeof(trn_acts));
    t->bias = calloc((size_t)L * (E ? E : 1), sizeof(float));
    t->has_bias = calloc((size_t)L, sizeof(int));
    t->load = calloc((size_t)L * (E ? E : 1), sizeof(int32_t));
    t->grad_load = calloc((size_t)L * (E ? E : 1), sizeof(int32_t));
    const int half = c->qk_rope_head_dim / 2;
    t->rope_cos = malloc(sizeof(float) * (size_t)t->Tmax * (half ? half : 1));
    t->rope_sin = malloc(sizeof(float) * (size_t)t->Tmax * (half ? half : 1));
    if (!t->w.layers || !t->g.layers || !t->expert_ptrs || !t->acts || !t->bias || !t->has_bias || !t->load || !t->grad_load ||
        !t->rope_cos || !t->rope_sin)
        return dsc_fail(DSC_ERR_NOMEM, "trainer: out of memory");
    for (int i = 0; i < L; i++) {
        t->w.layers[i].experts = t->expert_ptrs + (size_t)i * E;
        t->g.layers[i].experts = t->expert_ptrs + (size_t)(L + i) * E;
    }
    /* Count, then fill the table and point the parameter and gradient views. */
    walker k = {.t = t, .w = &t->w};
    walk_model(&k);
    t->n_tensors = k.n;
    t->n_floats = k.off;
    if (t->n_floats > ((size_t)1 << 40)) return dsc_fail(DSC_ERR_NOMEM, "trainer: %zu parameters is too many", t->n_floats);
    t->tensors = calloc((size_t)t->n_tensors, sizeof(trn_tensor));
    t->params = calloc(t->n_floats, sizeof(float));
    t->grads = calloc(t->n_floats, sizeof(float));
    t->m = calloc(t->n_floats, sizeof(float));
    t->v = calloc(t->n_floats, sizeof(float));
    if (!t->tensors || !t->params || !t->grads || !t->m || !t->v)
        return dsc_fail(DSC_ERR_NOMEM, "trainer: out of memory for 4 x %zu floats", t->n_floats);
    k = (walker){.t = t, .m = m, .base = t->params, .w = &t->w, .table = t->tensors};
    walk_model(&k);
    k = (walker){.t = t, .base = t->grads, .w = &t->g};
    walk_model(&k);
    for (int32_t i = 0; i < t->n_tensors; i++) {
        t->tensors[i].pub.param = t->params + t->tensors[i].off;
        t->tensors[i].pub.grad = t->grads + t->tensors[i].off;
    }
    /* Activations: sized, then allocated in one piece. */
    planner p = {0};
    plan_acts(t, &p);
    const double bytes = 4.0 * ((double)p.foff + (double)p.ioff);
    if (bytes > 0.5 * (double)SIZE_MAX) return dsc_fail(DSC_ERR_NOMEM, "trainer: activations too large");
    t->act_mem = malloc(sizeof(float) * (p.foff ? p.foff : 1));
    t->act_imem = malloc(sizeof(int32_t) * (p.ioff ? p.ioff : 1));
    if (!t->act_mem || !t->act_imem)
        return dsc_fail(DSC_ERR_NOMEM, "trainer: out of memory for %.1f MiB of activations", bytes / 1048576.0);
    p = (planner){.fbase = t->act_mem, .ibase = t->act_imem};
    plan_acts(t, &p);
    return DSC_OK;
}

dsc_status dsc_trainer_new(const char *model_dir, const dsc_train_params *params, dsc_trainer **out) {
    *out = NULL;
    dsc_status s = check_params(params);
    if (s) return s;
    const dsc_kernels *kern = kern_select(params->isa);
    if (!kern) return dsc_fail(DSC_ERR_ARG, "kernel set '%s' is unknown or not supported by this CPU", params->isa);
    dsc_model *m = NULL;
    dsc_model_params mp = dsc_model_default_params();
    if ((s = dsc_model_load(model_dir, &mp, &m))) return s;
    dsc_trainer *t = calloc(1, sizeof *t);
    if (!t) {
        dsc_model_free(m);
        return dsc_fail(DSC_ERR_NOMEM, "trainer: out of memory");
    }
    t->cfg = m->cfg;
    t->p = *params;
    t->mtp = params->mtp_lambda > 0;
    t->n_blocks = t->cfg.n_layers + t->mtp;
    t->Bmax = params->n_batch;
    t->Tmax = params->n_seq;
    t->tied = m->lm_head.data == m->embed.data;
    t->softmax_scale = m->softmax_scale;
    /* Token and route counts are int32 (N K routes per layer). */
    const int64_t routes = (int64_t)t->Bmax * t->Tmax * (t->cfg.n_experts_per_tok > 1 ? t->cfg.n_experts_per_tok : 1);
    if (t->cfg.index_topk > 0)
        s = dsc_fail(DSC_ERR_ARG, "%s: deepseek_v32 (sparse attention with its indexer) cannot be trained by dsc yet",
                     model_dir);
    else if (t->Tmax > t->cfg.max_position_embeddings)
        s = dsc_fail(DSC_ERR_ARG, "%s: sequence length %d exceeds max_position_embeddings %d", model_dir, t->Tmax,
                     t->cfg.max_position_embeddings);
    else if (routes > INT32_MAX / 2)
        s = dsc_fail(DSC_ERR_ARG, "trainer: batch of %d x %d tokens is too large", t->Bmax, t->Tmax);
    if (!s && t->mtp) s = model_load_mtp(m);
    if (!s) s = trainer_build(t, m);
    if (!s) {
        copy_params(t);
        rope_tables(m, t->rope_cos, t->rope_sin, t->Tmax);
        const int E = t->cfg.n_routed_experts;
        for (int i = 0; i < t->n_blocks; i++) {
            const dsc_layer *ml = i < t->cfg.n_layers ? &m->layers[i] : &m->mtp->layer;
            if (ml->is_moe && ml->router_bias) {
                t->has_bias[i] = 1;
                memcpy(t->bias + (size_t)i * E, ml->router_bias, sizeof(float) * (size_t)E);
            }
        }
        t->n_threads = params->n_threads ? params->n_threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
        if (t->n_threads < 1) t->n_threads = 1;
        t->ex.k = kern;
        t->ex.pool = t->n_threads > 1 ? pool_new(t->n_threads) : NULL;
        if (t->n_threads > 1 && !t->ex.pool) s = dsc_fail(DSC_ERR_NOMEM, "trainer: cannot start %d threads", t->n_threads);
    }
    dsc_model_free(m);
    if (s) {
        dsc_trainer_free(t);
        return s;
    }
    *out = t;
    return DSC_OK;
}

/* ------------------------------------------------------------------------ */
/* Forward                                                                   */

/* MLA: y (N, D) = o_proj(attention(xn1)). */
static void attn_forward(dsc_trainer *t, const trn_layer *w, trn_acts *a, int32_t B, int32_t T) {
    const dsc_config *c = &t->cfg;
    const train_exec *ex = &t->ex;
    const int32_t N = B * T, D = c->hidden_size, H = c->n_heads, R = c->kv_lora_rank, Rq = c->q_lora_rank;
    const int32_t Dn = c->qk_nope_head_dim, Dr = c->qk_rope_head_dim, Dv = c->v_head_dim, Dq = Dn + Dr;
    if (Rq > 0) {
        train_matmul_forward(a->qa, a->xn1, w->q_a, N, D, Rq, ex);
        train_rmsnorm_forward(a->qan, a->qa_rstd, a->qa, w->q_a_norm, N, Rq, c->rms_norm_eps, &t->ex);
        train_matmul_forward(a->q, a->qan, w->q_b, N, Rq, H * Dq, ex);
    } else {
        train_matmul_forward(a->q, a->xn1, w->q, N, D, H * Dq, ex);
    }
    train_rope_forward(a->q + Dn, t->rope_cos, t->rope_sin, N, T, H, Dq, Dr);
    float *kva = t->ga.kva;
    train_matmul_forward(kva, a->xn1, w->kv_a, N, D, R + Dr, ex);
    for (int64_t n = 0; n < N; n++) {
        memcpy(a->craw + n * R, kva + n * (R + Dr), sizeof(float) * (size_t)R);
        memcpy(a->kpe + n * Dr, kva + n * (R + Dr) + R, sizeof(float) * (size_t)Dr);
    }
    train_rmsnorm_forward(a->c, a->kv_rstd, a->craw, w->kv_a_norm, N, R, c->rms_norm_eps, &t->ex);
    train_rope_forward(a->kpe, t->rope_cos, t->rope_sin, N, T, 1, Dr, Dr);
    train_matmul_forward(a->kv, a->c, w->kv_b, N, R, H * (Dn + Dv), ex);
    train_attention_forward(a->ao, a->att, a->q, a->kv, a->kpe, B, T, H, Dn, Dr, Dv, t->softmax_scale, ex);
    train_matmul_forward(t->ga.y, a->ao, w->o, N, H * Dv, D, ex);
}

/* out (N, D) = down(silu(gate x) * up x), keeping g, u, h (N, Fx). */
static void mlp_forward(dsc_trainer *t, float *out, float *g, float *u, float *h, const float *x, const trn_mlp *w,
                        int32_t N, int32_t Fx) {
    const int32_t D = t->cfg.hidden_size;
    train_matmul_forward(g, x, w->gate, N, D, Fx, &t->ex);
    train_matmul_forward(u, x, w->up, N, D, Fx, &t->ex);
    train_swiglu_forward(h, g, u, (int64_t)N * Fx, &t->ex);
    train_matmul_forward(out, h, w->down, N, Fx, D, &t->ex);
}

/* V3 renormalises then scales; V2 does one or the other (as moe_route). */
static void route_flags(const dsc_config *c, int *renorm, float *scale) {
    *renorm = c->norm_topk_prob && (c->n_experts_per_tok > 1 || c->arch == DSC_ARCH_V3);
    *scale = c->arch == DSC_ARCH_V3 || !*renorm ? c->routed_scaling_factor : 1.0f;
}

/* DeepSeekMoE: y (N, D) = shared(xn2) + sum_k w_k expert_k(xn2); returns
 * this layer's balance loss. */
static float moe_forward(dsc_trainer *t, int li, const trn_layer *w, trn_acts *a, int32_t B, int32_t T) {
    const dsc_config *c = &t->cfg;
    const int32_t N = B * T, D = c->hidden_size, E = c->n_routed_experts, K = c->n_experts_per_tok;
    const int32_t Fm = c->moe_intermediate_size, M = N * K;
    train_matmul_forward(a->rlogit, a->xn2, w->router, N, D, E, &t->ex);
    /* The choice (biased under noaux_tc, group-limited) exactly as inference makes it. */
    float scratch[MOE_ROUTE_SCRATCH(E, c->n_group)], wtmp[K];
    const float *bias = t->has_bias[li] ? t->bias + (size_t)li * E : NULL;
    for (int32_t n = 0; n < N; n++) moe_route(c, a->rlogit + (int64_t)n * E, bias, scratch, a->idx + (int64_t)n * K, wtmp);
    train_router_forward(a->score, a->rlogit, N, E, c->scoring_func == DSC_SCORE_SIGMOID);
    int renorm;
    float scale;
    route_flags(c, &renorm, &scale);
    train_topk_forward(a->rw, a->score, a->idx, N, E, K, renorm, scale);
    const float aux = t->p.alpha > 0 ? train_balance_forward(a->score, a->idx, B, T, E, K, t->p.alpha) : 0.0f;
    /* Assignments sorted by expert (counting sort, stable in token order). */
    int32_t *load = t->load + (size_t)li * E;
    memset(load, 0, sizeof(int32_t) * (size_t)E);
    for (int32_t i = 0; i < M; i++) load[a->idx[i]]++;
    a->eoff[0] = 0;
    for (int32_t e = 0; e < E; e++) a->eoff[e + 1] = a->eoff[e] + load[e];
    int32_t fill[E];
    memcpy(fill, a->eoff, sizeof(int32_t) * (size_t)E);
    for (int32_t i = 0; i < M; i++) a->order[fill[a->idx[i]]++] = i;
    for (int32_t i = 0; i < M; i++)
        memcpy(a->ex + (int64_t)i * D, a->xn2 + (int64_t)(a->order[i] / K) * D, sizeof(float) * (size_t)D);
    for (int32_t e = 0; e < E; e++) {
        const int64_t o0 = a->eoff[e], m = a->eoff[e + 1] - o0;
        if (m)
            mlp_forward(t, a->ey + o0 * D, a->eg + o0 * Fm, a->eu + o0 * Fm, a->eh + o0 * Fm, a->ex + o0 * D,
                        &w->experts[e], (int32_t)m, Fm);
    }
    float *y = t->ga.y;
    if (c->n_shared_experts > 0) mlp_forward(t, y, a->g, a->u, a->h, a->xn2, &w->shared, N, Fm * c->n_shared_experts);
    else zero(y, (size_t)N * D);
    train_combine_forward(y, a->ey, a->rw, a->order, M, K, D);
    return aux;
}

static void residual(float *out, const float *x, const float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = x[i] + y[i];
}

/* One layer; x_out (N, D) receives the residual stream after it. */
static float layer_forward(dsc_trainer *t, int li, float *x_out, int32_t B, int32_t T) {
    const dsc_config *c = &t->cfg;
    const trn_layer *w = &t->w.layers[li];
    trn_acts *a = &t->acts[li];
    const int32_t N = B * T, D = c->hidden_size;
    float aux = 0;
    train_rmsnorm_forward(a->xn1, a->rstd1, a->x, w->attn_norm, N, D, c->rms_norm_eps, &t->ex);
    attn_forward(t, w, a, B, T);
    residual(a->x2, a->x, t->ga.y, (int64_t)N * D);
    train_rmsnorm_forward(a->xn2, a->rstd2, a->x2, w->ffn_norm, N, D, c->rms_norm_eps, &t->ex);
    if (w->is_moe) aux = moe_forward(t, li, w, a, B, T);
    else mlp_forward(t, t->ga.y, a->g, a->u, a->h, a->xn2, &w->mlp, N, c->intermediate_size);
    residual(x_out, a->x2, t->ga.y, (int64_t)N * D);
    return aux;
}

static dsc_status check_batch(const dsc_trainer *t, const int32_t *tokens, int32_t B, int32_t T) {
    if (B < 1 || B > t->Bmax || T < 1 || T > t->Tmax)
        return dsc_fail(DSC_ERR_ARG, "trainer: batch [%d, %d + 1] exceeds the trainer's [%d, %d + 1]", B, T, t->Bmax, t->Tmax);
    for (int64_t i = 0; i < (int64_t)B * (T + 1); i++)
        if (tokens[i] < 0 || tokens[i] >= t->cfg.vocab_size)
            return dsc_fail(DSC_ERR_ARG, "trainer: token id %d at [%lld, %lld] is out of range (vocab_size = %d)",
                            tokens[i], (long long)(i / (T + 1)), (long long)(i % (T + 1)), t->cfg.vocab_size);
    return DSC_OK;
}

/* MTP module 0 on the main model's normed output xf: row n = b T + t takes
 * [enorm(embed(token t + 1)); hnorm(xf)] through eh_proj and its decoder
 * layer, and predicts token t + 2 (none for t = T - 1). Returns the layer's
 * balance loss; t->loss_mtp gets the mean cross-entropy. */
static float mtp_forward(dsc_trainer *t, const int32_t *tokens, int32_t B, int32_t T) {
    const dsc_config *c = &t->cfg;
    const int32_t N = B * T, D = c->hidden_size, V = c->vocab_size, L = c->n_layers;
    const float eps = c->rms_norm_eps;
    const int32_t valid = B * (T - 1);
    for (int32_t b = 0; b < B; b++)
        for (int32_t i = 0; i < T; i++) {
            const int32_t n = b * T + i;
            const int32_t *row = tokens + (int64_t)b * (T + 1);
            t->mtp_inputs[n] = row[i + 1];
            t->mtp_targets[n] = i + 2 <= T ? row[i + 2] : 0;
            t->mtp_w[n] = i + 2 <= T ? t->p.mtp_lambda / (float)valid : 0.0f;
        }
    train_embed_forward(t->mtp_e, t->mtp_inputs, t->w.mtp_embed, N, D);
    train_rmsnorm_forward(t->mtp_en, t->mtp_erstd, t->mtp_e, t->w.enorm, N, D, eps, &t->ex);
    train_rmsnorm_forward(t->mtp_hn, t->mtp_hrstd, t->xf, t->w.hnorm, N, D, eps, &t->ex);
    for (int64_t n = 0; n < N; n++) {
        memcpy(t->mtp_cat + n * 2 * D, t->mtp_en + n * D, sizeof(float) * (size_t)D);
        memcpy(t->mtp_cat + n * 2 * D + D, t->mtp_hn + n * D, sizeof(float) * (size_t)D);
    }
    train_matmul_forward(t->acts[L].x, t->mtp_cat, t->w.eh_proj, N, 2 * D, D, &t->ex);
    const float aux = layer_forward(t, L, t->mtp_xL, B, T);
    train_rmsnorm_forward(t->mtp_xf, t->mtp_rstdf, t->mtp_xL, t->w.mtp_head_norm, N, D, eps, &t->ex);
    train_matmul_forward(t->mtp_probs, t->mtp_xf, t->w.mtp_head, N, D, V, &t->ex);
    train_crossentropy_forward(t->mtp_losses, t->mtp_probs, t->mtp_probs, t->mtp_targets, N, V, &t->ex);
    double ce = 0;
    for (int32_t n = 0; n < N; n++)
        if (t->mtp_w[n] > 0) ce += t->mtp_losses[n];
    t->loss_mtp = valid > 0 ? (float)(ce / valid) : 0.0f;
    return aux;
}

static void forward(dsc_trainer *t, const int32_t *tokens, int32_t B, int32_t T, float *loss_ce, float *loss_aux) {
    const dsc_config *c = &t->cfg;
    const int32_t N = B * T, D = c->hidden_size, V = c->vocab_size;
    t->B = B;
    t->T = T;
    for (int32_t b = 0; b < B; b++)
        for (int32_t i = 0; i < T; i++) {
            t->inputs[b * T + i] = tokens[(int64_t)b * (T + 1) + i];
            t->targets[b * T + i] = tokens[(int64_t)b * (T + 1) + i + 1];
        }
    train_embed_forward(t->acts[0].x, t->inputs, t->w.embed, N, D);
    double aux = 0;
    for (int i = 0; i < c->n_layers; i++)
        aux += layer_forward(t, i, i + 1 < c->n_layers ? t->acts[i + 1].x : t->xL, B, T);
    train_rmsnorm_forward(t->xf, t->rstdf, t->xL, t->w.norm, N, D, c->rms_norm_eps, &t->ex);
    train_matmul_forward(t->probs, t->xf, t->w.lm_head, N, D, V, &t->ex);
    train_crossentropy_forward(t->losses, t->probs, t->probs, t->targets, N, V, &t->ex);
    double ce = 0;
    for (int32_t n = 0; n < N; n++) ce += t->losses[n];
    if (t->mtp) aux += mtp_forward(t, tokens, B, T);
    if (loss_ce) *loss_ce = (float)(ce / N);
    if (loss_aux) *loss_aux = (float)aux;
}

/* ------------------------------------------------------------------------ */
/* Backward: ga.dx carries d loss / d (residual stream) from the top down.  */

static void mlp_backward(dsc_trainer *t, float *dx, trn_mlp *dw, float *dg, float *du, float *dh, const float *dout,
                         const float *x, const float *g, const float *u, const float *h, const trn_mlp *w, int32_t N,
                         int32_t Fx) {
    const int32_t D = t->cfg.hidden_size;
    zero(dh, (size_t)N * Fx);
    zero(dg, (size_t)N * Fx);
    zero(du, (size_t)N * Fx);
    train_matmul_backward(dh, dw->down, dout, h, w->down, N, Fx, D, &t->ex);
    train_swiglu_backward(dg, du, dh, g, u, (int64_t)N * Fx, &t->ex);
    train_matmul_backward(dx, dw->gate, dg, x, w->gate, N, D, Fx, &t->ex);
    train_matmul_backward(dx, dw->up, du, x, w->up, N, D, Fx, &t->ex);
}

/* d xn2 (ga.dxn) of the MoE from d y (ga.dx). */
static void moe_backward(dsc_trainer *t, int li, int32_t B, int32_t T) {
    const dsc_config *c = &t->cfg;
    const trn_layer *w = &t->w.layers[li];
    trn_layer *gw = &t->g.layers[li];
    const trn_acts *a = &t->acts[li];
    trn_grads_acts *g = &t->ga;
    const int32_t N = B * T, D = c->hidden_size, E = c->n_routed_experts, K = c->n_experts_per_tok;
    const int32_t Fm = c->moe_intermediate_size, M = N * K;
    if (c->n_shared_experts > 0)
        mlp_backward(t, g->dxn, &gw->shared, g->dg, g->du, g->dh, g->dx, a->xn2, a->g, a->u, a->h, &w->shared, N,
                     Fm * c->n_shared_experts);
    zero(g->dey, (size_t)M * D);
    zero(g->drw, (size_t)M);
    train_combine_backward(g->dey, g->drw, g->dx, a->ey, a->rw, a->order, M, K, D);
    zero(g->dex, (size_t)M * D);
    for (int32_t e = 0; e < E; e++) {
        const int64_t o0 = a->eoff[e], m = a->eoff[e + 1] - o0;
        if (m)
            mlp_backward(t, g->dex + o0 * D, &gw->experts[e], g->deg + o0 * Fm, g->deu + o0 * Fm, g->deh + o0 * Fm,
                         g->dey + o0 * D, a->ex + o0 * D, a->eg + o0 * Fm, a->eu + o0 * Fm, a->eh + o0 * Fm,
                         &w->experts[e], (int32_t)m, Fm);
    }
    for (int32_t i = 0; i < M; i++) t->ex.k->axpy(g->dxn + (int64_t)(a->order[i] / K) * D, g->dex + (int64_t)i * D, 1.0f, D);
    /* Router: through the chosen weights and the balance loss's P, not the choice. */
    int renorm;
    float scale;
    route_flags(c, &renorm, &scale);
    zero(g->dscore, (size_t)N * E);
    zero(g->drlogit, (size_t)N * E);
    train_topk_backward(g->dscore, g->drw, a->score, a->idx, N, E, K, renorm, scale);
    if (t->p.alpha > 0) train_balance_backward(g->dscore, a->score, a->idx, B, T, E, K, t->p.alpha, 1.0f);
    train_router_backward(g->drlogit, g->dscore, a->score, N, E, c->scoring_func == DSC_SCORE_SIGMOID);
    train_matmul_backward(g->dxn, gw->router, g->drlogit, a->xn2, w->router, N, D, E, &t->ex);
}

static void attn_backward(dsc_trainer *t, int li, int32_t B, int32_t T) {
    const dsc_config *c = &t->cfg;
    const trn_layer *w = &t->w.layers[li];
    trn_layer *gw = &t->g.layers[li];
    const trn_acts *a = &t->acts[li];
    trn_grads_acts *g = &t->ga;
    const train_exec *ex = &t->ex;
    const int32_t N = B * T, D = c->hidden_size, H = c->n_heads, R = c->kv_lora_rank, Rq = c->q_lora_rank;
    const int32_t Dn = c->qk_nope_head_dim, Dr = c->qk_rope_head_dim, Dv = c->v_head_dim, Dq = Dn + Dr;
    zero(g->dao, (size_t)N * H * Dv);
    train_matmul_backward(g->dao, gw->o, g->dx, a->ao, w->o, N, H * Dv, D, ex);
    zero(g->dq, (size_t)N * H * Dq);
    zero(g->dkv, (size_t)N * H * (Dn + Dv));
    zero(g->dkpe, (size_t)N * Dr);
    train_attention_backward(g->dq, g->dkv, g->dkpe, g->dkpe_h, g->dao, a->q, a->kv, a->kpe, a->att, B, T, H, Dn, Dr, Dv,
                             t->softmax_scale, ex);
    /* kv_b, kv_a_layernorm and the rope key, back to kv_a's output. */
    zero(g->dc, (size_t)N * R);
    train_matmul_backward(g->dc, gw->kv_b, g->dkv, a->c, w->kv_b, N, R, H * (Dn + Dv), ex);
    zero(g->dcraw, (size_t)N * R);
    train_rmsnorm_backward(g->dcraw, gw->kv_a_norm, g->dc, a->craw, w->kv_a_norm, a->kv_rstd, N, R, &t->ex);
    train_rope_backward(g->dkpe, t->rope_cos, t->rope_sin, N, T, 1, Dr, Dr);
    for (int64_t n = 0; n < N; n++) {
        memcpy(g->dkva + n * (R + Dr), g->dcraw + n * R, sizeof(float) * (size_t)R);
        memcpy(g->dkva + n * (R + Dr) + R, g->dkpe + n * Dr, sizeof(float) * (size_t)Dr);
    }
    zero(g->dxn, (size_t)N * D);
    train_matmul_backward(g->dxn, gw->kv_a, g->dkva, a->xn1, w->kv_a, N, D, R + Dr, ex);
    /* Queries. */
    train_rope_backward(g->dq + Dn, t->rope_cos, t->rope_sin, N, T, H, Dq, Dr);
    if (Rq > 0) {
        zero(g->dqan, (size_t)N * Rq);
        train_matmul_backward(g->dqan, gw->q_b, g->dq, a->qan, w->q_b, N, Rq, H * Dq, ex);
        zero(g->dqa, (size_t)N * Rq);
        train_rmsnorm_backward(g->dqa, gw->q_a_norm, g->dqan, a->qa, w->q_a_norm, a->qa_rstd, N, Rq, &t->ex);
        train_matmul_backward(g->dxn, gw->q_a, g->dqa, a->xn1, w->q_a, N, D, Rq, ex);
    } else {
        train_matmul_backward(g->dxn, gw->q, g->dq, a->xn1, w->q, N, D, H * Dq, ex);
    }
    train_rmsnorm_backward(g->dx, gw->attn_norm, g->dxn, a->x, w->attn_norm, a->rstd1, N, D, &t->ex);
}

/* Layer li: ga.dx from d loss / d (its output) to d loss / d (its input). */
static void layer_backward(dsc_trainer *t, int li, int32_t B, int32_t T) {
    const dsc_config *c = &t->cfg;
    const int32_t N = B * T, D = c->hidden_size;
    trn_grads_acts *g = &t->ga;
    const trn_layer *w = &t->w.layers[li];
    const trn_acts *a = &t->acts[li];
    /* FFN: dx is d loss / d (its output) and, through the residual, d x2. */
    zero(g->dxn, (size_t)N * D);
    if (w->is_moe) moe_backward(t, li, B, T);
    else
        mlp_backward(t, g->dxn, &t->g.layers[li].mlp, g->dg, g->du, g->dh, g->dx, a->xn2, a->g, a->u, a->h, &w->mlp, N,
                     c->intermediate_size);
    train_rmsnorm_backward(g->dx, t->g.layers[li].ffn_norm, g->dxn, a->x2, w->ffn_norm, a->rstd2, N, D, &t->ex);
    attn_backward(t, li, B, T);
}

/* The MTP module, from its weighted cross-entropy down to its inputs:
 * gradients of its tensors, and t->mtp_dxf = d loss / d xf through hnorm. */
static void mtp_backward(dsc_trainer *t) {
    const dsc_config *c = &t->cfg;
    const int32_t B = t->B, T = t->T, N = B * T, D = c->hidden_size, V = c->vocab_size, L = c->n_layers;
    trn_grads_acts *g = &t->ga;
    train_crossentropy_backward_w(t->mtp_probs, t->mtp_probs, t->mtp_targets, N, V, t->mtp_w, &t->ex);
    zero(g->dxf, (size_t)N * D);
    train_matmul_backward(g->dxf, t->g.mtp_head, t->mtp_probs, t->mtp_xf, t->w.mtp_head, N, D, V, &t->ex);
    zero(g->dx, (size_t)N * D);
    train_rmsnorm_backward(g->dx, t->g.mtp_head_norm, g->dxf, t->mtp_xL, t->w.mtp_head_norm, t->mtp_rstdf, N, D, &t->ex);
    layer_backward(t, L, B, T);
    zero(t->mtp_dcat, (size_t)N * 2 * D);
    train_matmul_backward(t->mtp_dcat, t->g.eh_proj, g->dx, t->mtp_cat, t->w.eh_proj, N, 2 * D, D, &t->ex);
    for (int64_t n = 0; n < N; n++) memcpy(g->dxn + n * D, t->mtp_dcat + n * 2 * D, sizeof(float) * (size_t)D);
    zero(g->dx, (size_t)N * D);
    train_rmsnorm_backward(g->dx, t->g.enorm, g->dxn, t->mtp_e, t->w.enorm, t->mtp_erstd, N, D, &t->ex);
    train_embed_backward(t->g.mtp_embed, g->dx, t->mtp_inputs, N, D);
    for (int64_t n = 0; n < N; n++) memcpy(g->dxn + n * D, t->mtp_dcat + n * 2 * D + D, sizeof(float) * (size_t)D);
    zero(t->mtp_dxf, (size_t)N * D);
    train_rmsnorm_backward(t->mtp_dxf, t->g.hnorm, g->dxn, t->xf, t->w.hnorm, t->mtp_hrstd, N, D, &t->ex);
}

/* w: d loss / d CE_n per target (NULL: 1 / N, the mean, plus the MTP loss). */
static void backward(dsc_trainer *t, const float *w) {
    const dsc_config *c = &t->cfg;
    const int32_t B = t->B, T = t->T, N = B * T, D = c->hidden_size, V = c->vocab_size;
    trn_grads_acts *g = &t->ga;
    zero(t->grads, t->n_floats);
    const int mtp = t->mtp && !w;
    if (mtp) mtp_backward(t);
    /* d loss / d logits, in place of the probabilities. */
    if (w) train_crossentropy_backward_w(t->probs, t->probs, t->targets, N, V, w, &t->ex);
    else train_crossentropy_backward(t->probs, t->probs, t->targets, N, V, 1.0f / N, &t->ex);
    zero(g->dxf, (size_t)N * D);
    train_matmul_backward(g->dxf, t->g.lm_head, t->probs, t->xf, t->w.lm_head, N, D, V, &t->ex);
    if (mtp) t->ex.k->axpy(g->dxf, t->mtp_dxf, 1.0f, N * D);
    zero(g->dx, (size_t)N * D);
    train_rmsnorm_backward(g->dx, t->g.norm, g->dxf, t->xL, t->w.norm, t->rstdf, N, D, &t->ex);
    for (int i = c->n_layers - 1; i >= 0; i--) layer_backward(t, i, B, T);
    train_embed_backward(t->g.embed, g->dx, t->inputs, N, D);
}

/* ------------------------------------------------------------------------ */
/* Public                                                                    */

dsc_status dsc_train_grad(dsc_trainer *t, const int32_t *tokens, int32_t B, int32_t T, float *loss_ce,
                          float *loss_aux) {
    dsc_status s = check_batch(t, tokens, B, T);
    if (s) return s;
    forward(t, tokens, B, T, loss_ce, loss_aux);
    t->have_fwd = 0;
    backward(t, NULL);
    memcpy(t->grad_load, t->load, sizeof(int32_t) * (size_t)t->n_blocks * (size_t)t->cfg.n_routed_experts);
    t->have_grad = 1;
    return DSC_OK;
}

dsc_status dsc_train_eval(dsc_trainer *t, const int32_t *tokens, int32_t B, int32_t T, float *loss_ce,
                          float *loss_aux) {
    dsc_status s = check_batch(t, tokens, B, T);
    if (s) return s;
    forward(t, tokens, B, T, loss_ce, loss_aux);
    t->have_fwd = 0;
    return DSC_OK;
}

dsc_status dsc_train_forward(dsc_trainer *t, const int32_t *tokens, int32_t B, int32_t T, float *logp, float *entropy,
                             float *loss_aux) {
    dsc_status s = check_batch(t, tokens, B, T);
    if (s) return s;
    forward(t, tokens, B, T, NULL, loss_aux);
    const int32_t N = B * T, V = t->cfg.vocab_size;
    for (int32_t n = 0; n < N; n++) {
        if (logp) logp[n] = -t->losses[n];
        if (!entropy) continue;
        const float *p = t->probs + (size_t)n * V;
        double h = 0;
        for (int32_t v = 0; v < V; v++)
            if (p[v] > 0) h -= (double)p[v] * log((double)p[v]);
        entropy[n] = (float)h;
    }
    t->have_fwd = 1;
    return DSC_OK;
}

dsc_status dsc_train_backward(dsc_trainer *t, const float *weights) {
    if (!t->have_fwd) return dsc_fail(DSC_ERR_ARG, "trainer: backward without a forward (call dsc_train_forward first)");
    for (int32_t n = 0; n < t->B * t->T; n++)
        if (!isfinite(weights[n]))
            return dsc_fail(DSC_ERR_ARG, "trainer: loss weight %d is not finite", n);
    backward(t, weights);
    memcpy(t->grad_load, t->load, sizeof(int32_t) * (size_t)t->n_blocks * (size_t)t->cfg.n_routed_experts);
    t->have_fwd = 0;
    t->have_grad = 1;
    return DSC_OK;
}

double dsc_train_grad_norm(const dsc_trainer *t) {
    double s = 0;
    for (size_t i = 0; i < t->n_floats; i++) s += (double)t->grads[i] * t->grads[i];
    return sqrt(s);
}

void dsc_train_scale_grads(dsc_trainer *t, float f) {
    for (size_t i = 0; i < t->n_floats; i++) t->grads[i] *= f;
}

dsc_status dsc_train_step(dsc_trainer *t, float lr) {
    if (!t->have_grad) return dsc_fail(DSC_ERR_ARG, "trainer: step without a gradient (call dsc_train_grad first)");
    if (!(lr >= 0)) return dsc_fail(DSC_ERR_ARG, "trainer: learning rate %g out of range", (double)lr);
    trainer_adamw(t, lr);
    trainer_update_bias(t);
    t->have_grad = 0;
    return DSC_OK;
}

float dsc_train_loss_mtp(const dsc_trainer *t) { return t->mtp ? t->loss_mtp : NAN; }

int32_t dsc_train_n_tensors(const dsc_trainer *t) { return t->n_tensors; }

int32_t dsc_train_n_layers(const dsc_trainer *t) { return t->cfg.n_layers; }
int32_t dsc_train_vocab_size(const dsc_trainer *t) { return t->cfg.vocab_size; }

const dsc_train_tensor *dsc_train_tensor_at(const dsc_trainer *t, int32_t i) {
    return i >= 0 && i < t->n_tensors ? &t->tensors[i].pub : NULL;
}

const dsc_train_tensor *dsc_train_find(const dsc_trainer *t, const char *name) {
    for (int32_t i = 0; i < t->n_tensors; i++)
        if (!strcmp(t->tensors[i].name, name)) return &t->tensors[i].pub;
    return NULL;
}

int64_t dsc_train_n_params(const dsc_trainer *t) {
    int64_t n = 0;
    for (int32_t i = 0; i < t->n_tensors; i++) n += t->tensors[i].pub.numel;
    return n;
}

float *dsc_train_bias(dsc_trainer *t, const char *name) {
    int li, end = 0;
    if (sscanf(name, "model.layers.%d.mlp.gate.e_score_correction_bias%n", &li, &end) != 1 || name[end] ||
        li < 0 || li >= t->n_blocks || !t->has_bias[li])
        return NULL;
    return t->bias + (size_t)li * t->cfg.n_routed_experts;
}

dsc_status dsc_train_write_grads(const dsc_trainer *t, const char *path, float loss_ce, float loss_aux) {
    const int n = t->n_tensors + 2;
    dsc_tensor_view *v = calloc((size_t)n + 1, sizeof *v);
    char *names = malloc((size_t)t->n_tensors * 134);
    if (!v || !names) {
        free(v);
        free(names);
        return dsc_fail(DSC_ERR_NOMEM, "%s: out of memory", path);
    }
    v[0] = (dsc_tensor_view){.name = "loss_ce", .dtype = "F32", .ndim = 1, .shape = {1}, .data = &loss_ce};
    v[1] = (dsc_tensor_view){.name = "loss_aux", .dtype = "F32", .ndim = 1, .shape = {1}, .data = &loss_aux};
    float loss_mtp = t->loss_mtp;
    int n_out = n;
    if (t->mtp) v[n_out++] = (dsc_tensor_view){.name = "loss_mtp", .dtype = "F32", .ndim = 1, .shape = {1}, .data = &loss_mtp};
    for (int32_t i = 0; i < t->n_tensors; i++) {
        const dsc_train_tensor *e = &t->tensors[i].pub;
        char *nm = names + (size_t)i * 134;
        snprintf(nm, 134, "grad.%s", e->name);
        v[i + 2] = (dsc_tensor_view){.name = nm, .dtype = "F32", .ndim = e->ndim, .shape = {e->shape[0], e->shape[1]},
                                     .data = e->grad};
    }
    char meta[64];
    snprintf(meta, sizeof meta, "%g", (double)t->p.alpha);
    dsc_status s = dsc_safetensors_write(path, v, n_out, "alpha", meta);
    free(v);
    free(names);
    return s;
}
