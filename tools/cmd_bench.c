/*
 * cmd_bench.c — `dsc bench`: prefill (ppN) and decode (tgN) speed in the
 * spirit of llama-bench, set against the roofline measured in the same run:
 *   decode  <= read bandwidth / bytes read per token  (memory bound)
 *   prefill <= FMA peak / FLOPs per prompt token      (compute bound)
 * Each repetition also decodes N steps each right after a read of a 256 MiB
 * buffer with the same threads (the "interleaved" line): both then see the
 * same moments of a shared machine, where the read bandwidth measured once
 * before a run can be far from what the run got.
 * With --parallel B, each repetition also decodes B sequences together (one
 * pass over the weights per step for all of them, as `dsc serve` does) and
 * sets the aggregate rate against that repetition's one-sequence rate.
 * With --mtp (a checkpoint with an MTP layer), each repetition also times N
 * steps of speculative decoding with the guess refused: the module's pass,
 * then one pass over the token and its guess, the guess's row dropped. A
 * step's cost in plain tokens, c, sets the break-even: --mtp gains where
 * more than c - 1 of the guesses are taken (a taken guess costs the same).
 * The "attention" line adds what the bytes leave out at depth: the absorbed
 * attention's multiply-adds over the latent cache, bound by the FMA peak,
 * set after the weights' read time (the two do not overlap in a step):
 *   decode  <= 1 / (bytes / read bandwidth + attention FLOPs / FMA peak)
 * With -t A,B,... (a list of thread counts, as llama-bench takes), one
 * context per count on the same weights, taken in turn within each
 * repetition, and each count's rates set against the first's repetition by
 * repetition: the same moments of the machine for both sides of a ratio.
 * With lists for -p, -n or -d, the tests go one by one as llama-bench's: a
 * ppP test per -p value (an empty context) and a tgN test per -n and -d
 * value, each its own line; otherwise one run holds ppP and tgN @ dD.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>

#include <cjson/cJSON.h>

#include "cli.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct {
    double median, lo, hi;
} stat3;

static stat3 stats(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    stat3 s = {n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]), v[0], v[n - 1]};
    return s;
}

static uint32_t bench_rng = 1234567;
static int32_t random_token(int32_t vocab) {
    bench_rng = bench_rng * 1664525u + 1013904223u;
    return (int32_t)((bench_rng >> 8) % (uint32_t)vocab);
}

/* The measurements, R repetitions of each test configuration. */
enum {
    M_PP, M_TG, M_BW, M_PEAK, M_TG_PCT, M_PP_PCT, M_TGB, M_TGB_X, M_IBW, M_ITG, M_I_PCT, M_C_PCT, M_ROWS_PCT,
    M_ROWS_GBS, M_ATTN_PCT, M_ATTN_GFS, /* the attention's GFLOP/s while it ran */
    M_CEIL,                             /* the bytes roofline's share of the one with attention at the FMA peak */
    M_MTP_X, M_MTP_DRAFT,               /* --mtp: a speculative step in plain tokens, the module's pass in ms */
    M_PP_X, M_TG_X,                     /* -t lists: prefill and decode against the first count's, same repetition */
    M_N
};

/* One test configuration: a thread count's context, the prompt, the
 * decode steps and the depth, and what follows from them. */
typedef struct {
    int k, P, N, D;
    int pd;            /* the prefill's depth: 0 where one run holds ppP and tgN @ dD, else D */
    int pp_absorbed;   /* the prefill attends in the absorbed form (a short one after a long context) */
    double bytes;      /* read per decode step: the active weights + the latent cache at the mean position */
    double flops;      /* per prompt token: the matmuls (lm_head for the last token only) and attention */
    double pp_attn_flops; /* per prompt token: the attention's part (dsc_prefill_attn_flops) */
    double attn_flops; /* per decode step at the mean position */
    double pos;        /* the mean position of the decode steps, + 1 */
} bench_cfg;

typedef struct {
    const cli_opts *o;
    const dsc_model_info *i;
    int R, B, K, V, n_cfg, per_t; /* per_t: configurations per thread count (in the same order for each) */
    int Dmax;                     /* the context every decode test truncates to its depth */
    bench_cfg *cfg;
    int *held;    /* per context: its first positions still as bench_depth left them */
    void **state; /* per context: those Dmax positions saved (dsc_seq_save) */
    int32_t *toks, *bseq, *btok;
    float *blog, *mlog, *probe;
    int64_t probe_n;
    double *m; /* M_N x n_cfg x R */
} bench_env;

static double *series(const bench_env *e, int q, int c) { return e->m + ((int64_t)q * e->n_cfg + c) * e->R; }

/* The context the decode tests truncate to their depths: Dmax random tokens,
 * saved, so that a test after one that wrote over them (a prefill, or a
 * shallower decode test) loads them back rather than evaluating them again. */
static int bench_depth(bench_env *e, dsc_ctx *ctx, int k) {
    for (int j = 0; j < e->Dmax; j++) e->toks[j] = random_token(e->V);
    dsc_ctx_truncate(ctx, 0);
    e->held[k] = e->Dmax;
    if (e->Dmax == 0) return 0;
    if (dsc_eval(ctx, e->toks, e->Dmax, NULL)) return cli_die_status();
    e->state[k] = malloc(dsc_seq_state_size(ctx, e->Dmax));
    if (!e->state[k]) return cli_die("out of memory for the saved context of %d tokens", e->Dmax);
    return dsc_seq_save(ctx, 0, e->Dmax, e->state[k]) ? cli_die_status() : 0;
}

/* Context k truncated to D of the Dmax tokens, loaded back first where a
 * test wrote over some of them; the test then writes from D on. */
static int bench_at_depth(bench_env *e, dsc_ctx *ctx, int k, int D) {
    if (e->held[k] < D) {
        if (dsc_seq_load(ctx, 0, e->Dmax, e->state[k])) return cli_die_status();
        e->held[k] = e->Dmax;
        int32_t d;
        /* the MTP module remakes its cache from the loaded inputs: not in a timed step */
        if (e->o->mtp && dsc_mtp_draft(ctx, 0, random_token(e->V), &d)) return cli_die_status();
    }
    if (dsc_ctx_truncate(ctx, D)) return cli_die_status();
    if (e->held[k] > D) e->held[k] = D;
    return 0;
}

/* Repetition r of configuration c (its context ctx): the machine, then each test. */
static int bench_rep(bench_env *e, dsc_ctx *ctx, int c, int r) {
    const cli_opts *o = e->o;
    const bench_cfg *g = &e->cfg[c];
    const int P = g->P, N = g->N, D = g->D, B = e->B, V = e->V;
    int32_t *toks = e->toks;
#define AT(q) series(e, (q), c)[r]
    dsc_machine mach;
    if (dsc_measure_machine(dsc_ctx_n_threads(ctx), o->isa, &mach)) return cli_die_status();
    AT(M_BW) = mach.read_gb_s;
    AT(M_PEAK) = mach.fma_gflop_s;
    if (P > 0) { /* prefill: P random tokens after pd of context */
        for (int j = 0; j < P; j++) toks[j] = random_token(V);
        if (bench_at_depth(e, ctx, g->k, g->pd)) return 1;
        double t0 = now_s();
        if (dsc_eval(ctx, toks, P, NULL)) return cli_die_status();
        AT(M_PP) = P / (now_s() - t0);
        AT(M_PP_PCT) = 100 * AT(M_PP) * g->flops / 1e9 / AT(M_PEAK);
    }
    if (N > 0) { /* decode: N steps after D tokens of context */
        if (bench_at_depth(e, ctx, g->k, D)) return 1;
        int32_t t = random_token(V);
        dsc_ctx_set_timing(ctx, 1);
        double t0 = now_s();
        for (int j = 0; j < N; j++) {
            if (dsc_eval(ctx, &t, 1, NULL)) return dsc_ctx_set_timing(ctx, 0), cli_die_status();
            t = dsc_argmax(dsc_ctx_logits(ctx), V);
        }
        const double dt = now_s() - t0;
        const dsc_timing tm = dsc_ctx_timing(ctx);
        dsc_ctx_set_timing(ctx, 0);
        const double rows_s = tm.rows_s / dsc_ctx_n_threads(ctx); /* the threads' mean */
        AT(M_ROWS_PCT) = 100 * rows_s / dt;
        AT(M_ROWS_GBS) = rows_s > 0 ? tm.rows_bytes / rows_s / 1e9 : 0;
        AT(M_ATTN_PCT) = 100 * tm.attn_s / dt;
        AT(M_ATTN_GFS) = tm.attn_s > 0 ? g->attn_flops * N / tm.attn_s / 1e9 : 0;
        AT(M_TG) = N / dt;
        AT(M_TG_PCT) = 100 * AT(M_TG) * g->bytes / 1e9 / AT(M_BW);
        AT(M_C_PCT) = 100 * AT(M_TG) * (g->bytes / 1e9 / AT(M_BW) + g->attn_flops / 1e9 / AT(M_PEAK));
        AT(M_CEIL) = 100 * (g->bytes / AT(M_BW)) / (g->bytes / AT(M_BW) + g->attn_flops / AT(M_PEAK));
    }
    if (N > 0) { /* the same N steps, each after a read of the probe buffer */
        if (bench_at_depth(e, ctx, g->k, D)) return 1;
        int32_t t = random_token(V);
        double t_read = 0, t_dec = 0;
        for (int j = 0; j < N; j++) {
            t_read += dsc_ctx_read_pass(ctx, e->probe, e->probe_n);
            const double t0 = now_s();
            if (dsc_eval(ctx, &t, 1, NULL)) return cli_die_status();
            t = dsc_argmax(dsc_ctx_logits(ctx), V);
            t_dec += now_s() - t0;
        }
        AT(M_IBW) = (double)e->probe_n * sizeof(float) * N / t_read / 1e9;
        AT(M_ITG) = N / t_dec;
        AT(M_I_PCT) = 100 * AT(M_ITG) * g->bytes / 1e9 / AT(M_IBW);
    }
    if (N > 0 && o->mtp) { /* N speculative steps, each guess refused */
        if (bench_at_depth(e, ctx, g->k, D)) return 1;
        if (D == 0) { /* a guess follows a token */
            toks[0] = random_token(V);
            if (dsc_eval(ctx, toks, 1, NULL)) return cli_die_status();
        }
        int32_t t = random_token(V), pair[2], seq2[2] = {0, 0}, draft = -1;
        double t_draft = 0, t0 = now_s();
        for (int j = 0; j < N; j++) {
            const double td = now_s();
            if (dsc_mtp_draft(ctx, 0, t, &draft)) return cli_die_status();
            t_draft += now_s() - td;
            pair[0] = t, pair[1] = draft;
            if (dsc_eval_mixed(ctx, seq2, pair, 2, NULL, e->mlog)) return cli_die_status();
            dsc_seq_truncate(ctx, 0, dsc_seq_pos(ctx, 0) - 1);
            t = dsc_argmax(e->mlog, V);
        }
        AT(M_MTP_X) = (now_s() - t0) / N * AT(M_TG);
        AT(M_MTP_DRAFT) = 1e3 * t_draft / N;
    }
    if (N > 0 && B) { /* batched decode: B sequences from the same D tokens, N steps */
        if (bench_at_depth(e, ctx, g->k, D)) return 1;
        for (int b = 0; b < B; b++) {
            if (b && dsc_seq_copy(ctx, 0, b, D)) return cli_die_status();
            e->bseq[b] = b, e->btok[b] = random_token(V);
        }
        double t0 = now_s();
        for (int j = 0; j < N; j++) {
            if (dsc_decode_batch(ctx, e->bseq, e->btok, B, e->blog)) return cli_die_status();
            for (int b = 0; b < B; b++) e->btok[b] = dsc_argmax(e->blog + (size_t)b * V, V);
        }
        AT(M_TGB) = (double)B * N / (now_s() - t0);
        AT(M_TGB_X) = AT(M_TGB) / AT(M_TG);
    }
    if (g->k > 0) { /* against the first thread count's same test, same repetition */
        const int c0 = c % e->per_t;
        AT(M_PP_X) = P > 0 ? AT(M_PP) / series(e, M_PP, c0)[r] : 0;
        AT(M_TG_X) = N > 0 ? AT(M_TG) / series(e, M_TG, c0)[r] : 0;
    }
#undef AT
    return 0;
}

/* The test names of configuration g: "pp512", "pp64 @ d4096", "tg128 @ d4096", both. */
static void cfg_name(char *buf, size_t cap, const bench_cfg *g) {
    char tg[48] = "";
    if (g->N > 0) snprintf(tg, sizeof tg, g->D ? "tg%d @ d%d" : "tg%d", g->N, g->D);
    char pp[48] = "";
    if (g->P > 0) snprintf(pp, sizeof pp, g->pd ? "pp%d @ d%d" : "pp%d", g->P, g->pd);
    snprintf(buf, cap, "%s%s%s", pp, g->P > 0 && g->N > 0 ? " + " : "", tg);
}

/* Configuration c's results: one JSON object (a line), or its lines of text. */
static void bench_print(const bench_env *e, const cli_session *s, dsc_ctx *ctx, int c, size_t rss, double huge_pct) {
    const cli_opts *o = e->o;
    const dsc_model_info *i = e->i;
    const bench_cfg *g = &e->cfg[c];
    const int P = g->P, N = g->N, R = e->R, D = g->D, B = e->B, k = g->k;
    stat3 st3[M_N];
    for (int q = 0; q < M_N; q++) {
        double v[R]; /* stats sorts: a copy */
        memcpy(v, series(e, q, c), sizeof v);
        st3[q] = stats(v, R);
    }
    const stat3 sp = st3[M_PP], st = st3[M_TG], sbw = st3[M_BW], spk = st3[M_PEAK], stp = st3[M_TG_PCT];
    const stat3 spp = st3[M_PP_PCT], sb = st3[M_TGB], sbx = st3[M_TGB_X], sib = st3[M_IBW], sit = st3[M_ITG];
    const stat3 sip = st3[M_I_PCT], scp = st3[M_C_PCT], srp = st3[M_ROWS_PCT], srg = st3[M_ROWS_GBS];
    const stat3 sap = st3[M_ATTN_PCT], sag = st3[M_ATTN_GFS], smx = st3[M_MTP_X], smd = st3[M_MTP_DRAFT];
    const stat3 spx = st3[M_PP_X], stx = st3[M_TG_X], sce = st3[M_CEIL];
    const double read_gb_s = sbw.median, fma_gflop_s = spk.median, bytes = g->bytes, flops = g->flops;
    const double attn_flops = g->attn_flops;
    const double tg_gbs = st.median * bytes / 1e9, roof_tps = read_gb_s * 1e9 / bytes;
    const double pp_gflops = sp.median * flops / 1e9;
    const int T = dsc_ctx_n_threads(ctx);
    if (o->json) {
        cJSON *path = cJSON_CreateString(o->model);
        char *model_json = path ? cJSON_PrintUnformatted(path) : NULL; /* the path, quoted and escaped */
        char vs[256] = "";
        if (e->K > 1)
            snprintf(vs, sizeof vs,
                     ", \"vs_threads\": %d, \"pp_speedup_vs\": %.3f, \"pp_speedup_vs_min\": %.3f, "
                     "\"pp_speedup_vs_max\": %.3f, \"tg_speedup_vs\": %.3f, \"tg_speedup_vs_min\": %.3f, "
                     "\"tg_speedup_vs_max\": %.3f",
                     o->threads_list[0], k ? spx.median : P > 0, k ? spx.lo : P > 0, k ? spx.hi : P > 0,
                     k ? stx.median : N > 0, k ? stx.lo : N > 0, k ? stx.hi : N > 0);
        printf("{\"model\": %s, \"model_type\": \"%s\", \"weight_bytes\": %lld, \"active_bytes\": %lld, "
               "\"threads\": %d, \"isa\": \"%s\", \"n_prompt\": %d, \"n_gen\": %d, \"depth\": %d, \"reps\": %d, "
               "\"pp_tokens_per_s\": %.3f, \"pp_min\": %.3f, \"pp_max\": %.3f, "
               "\"tg_tokens_per_s\": %.3f, \"tg_min\": %.3f, \"tg_max\": %.3f, "
               "\"bytes_per_token\": %.0f, \"bandwidth_gb_s\": %.3f, \"tg_gb_s\": %.3f, "
               "\"tg_roofline_tokens_per_s\": %.3f, \"tg_roofline_pct\": %.2f, \"tg_roofline_pct_min\": %.2f, "
               "\"tg_roofline_pct_max\": %.2f, \"bandwidth_min\": %.3f, \"bandwidth_max\": %.3f, "
               "\"pp_depth\": %d, \"pp_attn_form\": \"%s\", "
               "\"flops_per_prompt_token\": %.0f, \"pp_attn_flops_per_token\": %.0f, \"fma_peak_gflop_s\": %.3f, "
               "\"pp_gflop_s\": %.3f, "
               "\"pp_peak_pct\": %.2f, \"rss_bytes\": %zu, \"kv_cache_bytes\": %zu, \"weights_huge_pct\": %.1f, "
               "\"tgi_tokens_per_s\": %.3f, \"bandwidth_interleaved_gb_s\": %.3f, \"tgi_roofline_pct\": %.2f, "
               "\"tgi_roofline_pct_min\": %.2f, \"tgi_roofline_pct_max\": %.2f, "
               "\"attn_flops_per_token\": %.0f, \"tg_attn_roofline_pct\": %.2f, \"tg_attn_ceiling_pct\": %.2f, "
               "\"parallel\": %d, "
               "\"tgb_tokens_per_s\": %.3f, \"tgb_speedup\": %.3f, \"tgb_speedup_min\": %.3f, "
               "\"tgb_speedup_max\": %.3f, \"tg_rows_pct\": %.2f, \"tg_rows_gb_s\": %.3f, \"tg_attn_pct\": %.2f, "
               "\"tg_attn_gflop_s\": %.3f, \"mtp\": %d, \"mtp_step_tokens\": %.3f, \"mtp_step_tokens_min\": %.3f, "
               "\"mtp_step_tokens_max\": %.3f, \"mtp_draft_ms\": %.3f, \"batch_invariant\": %d%s}\n",
               model_json ? model_json : "null", i->model_type, (long long)i->weight_bytes, (long long)i->active_bytes,
               T, dsc_ctx_isa(ctx), P, N, D, R, sp.median, sp.lo, sp.hi, st.median, st.lo, st.hi, bytes, read_gb_s,
               tg_gbs, roof_tps, stp.median, stp.lo, stp.hi, sbw.lo, sbw.hi, g->pd,
               P > 0 ? (g->pp_absorbed ? "absorbed" : "decompressed") : "", flops, g->pp_attn_flops, fma_gflop_s, pp_gflops,
               spp.median, rss, dsc_ctx_kv_bytes(ctx), huge_pct, sit.median, sib.median, sip.median, sip.lo, sip.hi,
               attn_flops, scp.median, sce.median, B, B ? sb.median : 0, B ? sbx.median : 0, B ? sbx.lo : 0, B ? sbx.hi : 0,
               srp.median, srg.median, sap.median, sag.median, o->mtp, smx.median, smx.lo, smx.hi, smd.median,
               o->batch_invariant, vs);
        cJSON_free(model_json);
        cJSON_Delete(path);
        return;
    }
    if (e->n_cfg > 1) {
        char name[96];
        cfg_name(name, sizeof name, g);
        printf("%s, %d threads:\n", name, T);
    }
    if (N > 0)
        printf("decode:  %.1f MB read per token (%.1f MB weights + %.2f MB latent cache); %.2f GB/s achieved, "
               "read bandwidth measured before each run %.2f GB/s (%.2f-%.2f): %.1f%% of the roofline "
               "(median of the per-run ratios, %.1f-%.1f; roofline %.2f t/s)\n",
               bytes / 1e6, i->active_bytes / 1e6, (bytes - i->active_bytes) / 1e6, tg_gbs, sbw.median, sbw.lo, sbw.hi,
               stp.median, stp.lo, stp.hi, roof_tps);
    if (N > 0)
        printf("         interleaved, each step right after a 256 MiB read with the same threads: %.2f t/s, "
               "%.2f GB/s achieved, reads %.2f GB/s (%.2f-%.2f): %.1f%% (median of the per-run ratios, "
               "%.1f-%.1f)\n",
               sit.median, sit.median * bytes / 1e9, sib.median, sib.lo, sib.hi, sip.median, sip.lo, sip.hi);
    if (N > 0)
        printf("         attention: %.3f GFLOP per token at the mean position %.0f; with it at the FMA peak "
               "after the bytes at the bandwidth: roofline %.2f t/s, %.1f%% (median of the per-run ratios, "
               "%.1f-%.1f); a step that reads its bytes and then attends reaches at most %.1f%% of the "
               "bytes' roofline (%.1f-%.1f)\n",
               attn_flops / 1e9, g->pos - 1, 1 / (bytes / 1e9 / read_gb_s + attn_flops / 1e9 / fma_gflop_s),
               scp.median, scp.lo, scp.hi, sce.median, sce.lo, sce.hi);
    if (N > 0)
        printf("         time: the weight products %.1f%% of decode (the threads' mean; %.2f GB/s while they "
               "ran, %.0f%% of the bandwidth), attention %.1f%% (%.1f GFLOP/s while it ran, %.0f%% of the FMA "
               "peak), the rest %.1f%% (medians of the runs)\n",
               srp.median, srg.median, 100 * srg.median / read_gb_s, sap.median, sag.median,
               100 * sag.median / fma_gflop_s, 100 - srp.median - sap.median);
    if (P > 0)
        printf("prefill: %.3f GFLOP per prompt token (matmuls, and %.3f of attention, %s, at a mean %.1f "
               "positions); %.1f GFLOP/s achieved, %s FMA peak %.1f GFLOP/s: %.1f%% (median of the per-run ratios, "
               "%.1f-%.1f)\n",
               flops / 1e9, g->pp_attn_flops / 1e9, g->pp_absorbed ? "absorbed" : "decompressed",
               g->pd + (P + 1) / 2.0, pp_gflops, dsc_ctx_isa(ctx), spk.median, spp.median, spp.lo, spp.hi);
    if (N > 0 && o->mtp) {
        char gain[96];
        if (smx.median < 2)
            snprintf(gain, sizeof gain, "gains where more than %.0f%% of the guesses are taken",
                     100 * (smx.median - 1));
        else snprintf(gain, sizeof gain, "cannot gain here (a step costs more than the two tokens it may yield)");
        printf("mtp:     a step (the module's guess, then the token and its guess in one pass) costs %.2f "
               "plain tokens (%.2f-%.2f; the module's pass %.2f ms): --mtp %s\n",
               smx.median, smx.lo, smx.hi, smd.median, gain);
    }
    if (N > 0 && B)
        printf("batched: %d sequences decoded together: %.2f t/s in all, %.2fx one sequence (median of the "
               "per-run ratios, %.2f-%.2f)\n",
               B, sb.median, sbx.median, sbx.lo, sbx.hi);
    if (k > 0) {
        printf("threads: %d against %d, the same repetitions:", T, o->threads_list[0]);
        if (P > 0) printf(" prefill %.2fx (%.2f-%.2f)%s", spx.median, spx.lo, spx.hi, N > 0 ? "," : "");
        if (N > 0) printf(" decode %.2fx (%.2f-%.2f)", stx.median, stx.lo, stx.hi);
        printf(" (medians of the per-run ratios)\n");
    }
    if (c == e->n_cfg - 1) {
        printf("memory:  resident %.1f MiB (weights %.1f MiB mapped, latent cache %.1f MiB%s)\n", rss / 1048576.0,
               i->weight_bytes / 1048576.0, dsc_ctx_kv_bytes(s->ctx) / 1048576.0,
               e->K > 1 ? " in each thread count's context" : "");
        if (huge_pct >= 0)
            printf("pages:   %.0f%% of the resident weights on 2 MiB pages%s\n", huge_pct,
                   huge_pct < 50 ? " (4 KiB pages cost decode 10-15%: see dsc_model_load in include/dsc.h)" : "");
    }
}

/* The table of t/s: a prefill, a decode and a batched row per configuration. */
static void bench_table(const bench_env *e, dsc_ctx *const *ctx) {
    const dsc_model_info *i = e->i;
    printf("| model | size | params | threads | isa | test | t/s (median, min-max of %d) |\n", e->R);
    printf("|---|---|---|---|---|---|---|\n");
    for (int c = 0; c < e->n_cfg; c++) {
        const bench_cfg *g = &e->cfg[c];
        char test[64];
        const int q[3] = {M_PP, M_TG, M_TGB}, on[3] = {g->P > 0, g->N > 0, g->N > 0 && e->B};
        for (int j = 0; j < 3; j++) {
            if (!on[j]) continue;
            if (j == 0) snprintf(test, sizeof test, g->pd ? "pp%d @ d%d" : "pp%d", g->P, g->pd);
            if (j == 1) snprintf(test, sizeof test, g->D ? "tg%d @ d%d" : "tg%d", g->N, g->D);
            if (j == 2) snprintf(test, sizeof test, g->D ? "tg%d x%d @ d%d" : "tg%d x%d", g->N, e->B, g->D);
            double v[e->R];
            memcpy(v, series(e, q[j], c), sizeof v);
            const stat3 t = stats(v, e->R);
            printf("| %s | %.2f GiB | %.2f B | %d | %s | %s | %.2f (%.2f-%.2f) |\n", i->model_type,
                   i->weight_bytes / 1073741824.0, i->n_params / 1e9, dsc_ctx_n_threads(ctx[g->k]),
                   dsc_ctx_isa(ctx[g->k]), test, t.median, t.lo, t.hi);
        }
    }
    printf("\n");
}

/* The positions a configuration needs: the prefill and a decode step; the
 * depth and the steps (and with --mtp, a token before a guess and the last
 * guess). */
static int cfg_need(const bench_cfg *g, int mtp) {
    const int pp = g->pd + g->P + (g->N > 0);
    int need = pp > g->D + g->N ? pp : g->D + g->N;
    if (mtp && g->N > 0 && need < (g->D > 0 ? g->D : 1) + g->N + 1) need = (g->D > 0 ? g->D : 1) + g->N + 1;
    return need;
}

int cmd_bench(const cli_opts *o) {
    const int R = o->n_reps, B = o->parallel > 1 ? o->parallel : 0;
    const int K = o->n_threads_list > 1 ? o->n_threads_list : 1;
    /* -p, -n, -d: lists (one value each unless given as A,B,...) */
    const int *pl = o->n_prompt_list ? o->prompt_list : &o->n_prompt, np = o->n_prompt_list ? o->n_prompt_list : 1;
    const int *nl = o->n_gen_list ? o->gen_list : &o->n_gen, nn = o->n_gen_list ? o->n_gen_list : 1;
    const int *dl = o->n_depth_list ? o->depth_list : &o->depth, nd = o->n_depth_list ? o->n_depth_list : 1;
    const int split = np > 1 || nn > 1 || nd > 1; /* llama-bench's tests, one by one */
    bench_cfg cfg[CLI_MAX_THREAD_LIST * 2 * CLI_MAX_LIST * CLI_MAX_LIST]; /* a test per -p and -n value at each -d */
    int per_t = 0, need = 0, Dmax = 0, Pmax = 0;
    if (!split) cfg[per_t++] = (bench_cfg){.P = pl[0], .N = nl[0], .D = dl[0]};
    else {
        for (int b = 0; b < nd; b++) { /* at each depth, as llama-bench: the prefills, then the decodes */
            for (int a = 0; a < np; a++)
                if (pl[a] > 0) cfg[per_t++] = (bench_cfg){.P = pl[a], .D = dl[b], .pd = dl[b]};
            for (int a = 0; a < nn; a++)
                if (nl[a] > 0) cfg[per_t++] = (bench_cfg){.N = nl[a], .D = dl[b]};
        }
    }
    if (per_t == 0 || (per_t == 1 && cfg[0].P == 0 && cfg[0].N == 0))
        return cli_die("bench: -p 0 and -n 0 leave nothing to measure");
    for (int c = 0; c < per_t; c++) {
        const int n = cfg_need(&cfg[c], o->mtp);
        need = n > need ? n : need;
        if (cfg[c].N > 0 && cfg[c].D > Dmax) Dmax = cfg[c].D;
        if (cfg[c].pd > Dmax) Dmax = cfg[c].pd;
        if (cfg[c].P > Pmax) Pmax = cfg[c].P;
    }
    cli_opts oo = *o;
    if (oo.n_ctx && need > oo.n_ctx) {
        if (!split)
            return cli_die("bench: -c %d holds fewer positions than the runs need, %d (-p %d and a decode step; -d %d + "
                           "-n %d)",
                           oo.n_ctx, need, pl[0], dl[0], nl[0]);
        char name[96] = "";
        for (int c = 0; c < per_t; c++)
            if (cfg_need(&cfg[c], o->mtp) == need) cfg_name(name, sizeof name, &cfg[c]);
        return cli_die("bench: -c %d holds fewer positions than the test %s needs, %d", oo.n_ctx, name, need);
    }
    if (!oo.n_ctx) oo.n_ctx = need + 1;
    if (oo.n_batch < Pmax && Pmax > 0) oo.n_batch = Pmax;
    if (K > 1) oo.n_threads = o->threads_list[0];
    for (int k = 1; k < K; k++) /* the same tests for each thread count, in the same order */
        for (int c = 0; c < per_t; c++) cfg[k * per_t + c] = cfg[c], cfg[k * per_t + c].k = k;
    cli_session s;
    if (cli_session_open(&oo, 0, NULL, 0, &s)) {
        cli_session_close(&s);
        return 1;
    }
    cli_session_announce(&oo, &s);
    dsc_ctx *ctx[CLI_MAX_THREAD_LIST] = {s.ctx}; /* one per thread count, on the same weights */
    int rc = 0, held[CLI_MAX_THREAD_LIST] = {0};
    void *state[CLI_MAX_THREAD_LIST] = {NULL};
    for (int k = 1; k < K && !rc; k++) {
        dsc_ctx_params cp = cli_ctx_params(&oo, dsc_ctx_n_ctx(s.ctx));
        cp.n_threads = o->threads_list[k];
        cp.n_seq = o->parallel;
        if (dsc_ctx_new(s.model, &cp, &ctx[k])) rc = cli_die_status();
    }
    bench_env e = {.o = o, .i = &s.info, .R = R, .B = B, .K = K, .V = s.info.vocab_size, .n_cfg = K * per_t,
                   .per_t = per_t, .Dmax = Dmax, .cfg = cfg, .held = held, .state = state};
    e.toks = malloc(sizeof(int32_t) * (size_t)(Pmax > Dmax ? Pmax : Dmax) + 4);
    e.m = calloc((size_t)M_N * e.n_cfg * R, sizeof(double));
    /* The interleaved probe's buffer, on 2 MiB pages as the weights are. */
    int any_n = 0;
    for (int c = 0; c < per_t; c++) any_n |= cfg[c].N > 0;
    e.probe_n = (int64_t)64 << 20;
    e.probe = any_n ? aligned_alloc((size_t)2 << 20, sizeof(float) * (size_t)e.probe_n) : NULL;
    if (e.probe) {
        madvise(e.probe, sizeof(float) * (size_t)e.probe_n, MADV_HUGEPAGE);
        for (int64_t j = 0; j < e.probe_n; j++) e.probe[j] = (float)(j & 1023) * 1e-3f;
    }
    e.bseq = malloc(sizeof(int32_t) * (size_t)(B + 1)), e.btok = malloc(sizeof(int32_t) * (size_t)(B + 1));
    e.blog = B ? malloc(sizeof(float) * (size_t)B * (size_t)e.V) : NULL;
    e.mlog = o->mtp ? malloc(sizeof(float) * 2 * (size_t)e.V) : NULL;
    if (!rc && (!e.toks || !e.m || !e.bseq || !e.btok || (any_n && !e.probe) || (B && !e.blog) || (o->mtp && !e.mlog)))
        rc = cli_die("out of memory");
    const dsc_model_info *i = &s.info;
    /* one sequence's latent cache per position, the main model's layers */
    const double kv_tok = (double)dsc_ctx_kv_bytes(s.ctx) / dsc_ctx_n_ctx(s.ctx) / dsc_ctx_n_seq(s.ctx) *
                          i->n_layers / (i->n_layers + (o->mtp ? 1 : 0));
    /* V3.2: of those, each position's index key (read by the indexer at every
     * position); the latent rows are read only at the positions kept */
    const double idx_tok = i->index_topk > 0 ? (double)i->n_layers * (i->index_head_dim + i->index_head_dim / 128 * 4) : 0;
    for (int c = 0; c < e.n_cfg; c++) {
        bench_cfg *g = &cfg[c];
        /* Bytes per decode step: active weights + the latent cache read at the
         * mean position of the run. FLOPs per prompt token: the matmuls and the attention. */
        const double pos = g->D + g->N / 2.0;
        g->bytes = (double)i->active_bytes + kv_tok * pos;
        if (i->index_topk > 0 && pos + 1 > i->index_topk) /* V3.2, sparse: index_topk latent rows */
            g->bytes = (double)i->active_bytes + idx_tok * pos + (kv_tok - idx_tok) * i->index_topk;
        else if (i->index_topk > 0) /* V3.2, every position kept: the indexer's queries not computed */
            g->bytes -= (double)i->index_q_bytes;
        /* Attention FLOPs per decode step at the run's mean position: per layer
         * and head, a score over R + Dr values and a weighted sum over R for
         * every cached position. */
        g->pos = g->D + g->N / 2.0 + 1;
        /* V3.2: the positions the indexer keeps, and its own scores over all
         * of them (a product of index_n_heads x index_head_dim a position) */
        const int sparse = i->index_topk > 0 && g->pos > i->index_topk;
        g->attn_flops = 2.0 * i->n_layers * i->n_heads * (sparse ? i->index_topk : g->pos) *
                            (2.0 * i->kv_lora_rank + i->qk_rope_head_dim) +
                        (sparse ? 2.0 * i->n_layers * g->pos * i->index_n_heads * i->index_head_dim : 0);
        /* The prefill's attention in the form it takes (one chunk: n_batch >= P). */
        g->pp_attn_flops = g->P > 0 ? dsc_prefill_attn_flops(s.ctx, g->pd, g->P, &g->pp_absorbed) / g->P : 0;
        g->flops = 2.0 * ((double)i->active_params - (double)i->head_params +
                          (double)i->head_params / (g->P > 0 ? g->P : 1)) /* lm_head for the last token only */
                   + g->pp_attn_flops;
    }

    /* A warm-up as llama-bench's (--no-warmup skips it): a prefill of the
     * longest -p and one decode step, unmeasured, so that the first run does
     * not pay for weights still on disk or pages not yet mapped. */
    for (int k = 0; k < K && !rc; k++) {
        if (!o->no_warmup) {
            const int n = Pmax > 0 ? Pmax : 1;
            for (int j = 0; j < n; j++) e.toks[j] = random_token(e.V);
            dsc_ctx_truncate(ctx[k], 0);
            if (dsc_eval(ctx[k], e.toks, n, NULL)) rc = cli_die_status();
            if (!rc && Pmax > 0 && any_n && dsc_eval(ctx[k], e.toks, 1, NULL)) rc = cli_die_status();
            dsc_ctx_truncate(ctx[k], 0);
        }
        if (!rc) rc = bench_depth(&e, ctx[k], k); /* the context the decode tests start from */
    }
    /* Each repetition measures the machine right before each test's runs: on
     * a shared machine the roofline moves, so each run is set against its
     * own. The thread counts take turns within a repetition. */
    for (int r = 0; r < R && !rc; r++)
        for (int c = 0; c < e.n_cfg && !rc; c++) rc = bench_rep(&e, ctx[cfg[c].k], c, r);
    free(e.probe); /* before the resident set is read */
    for (int k = 0; k < K; k++) free(state[k]), state[k] = NULL;
    e.probe = NULL;
    if (!rc) {
        size_t rss = dsc_rss_bytes();
        int64_t w_res = -1, w_huge = -1; /* the weights' resident bytes, those on 2 MiB pages */
        dsc_model_resident(s.model, &w_res, &w_huge);
        const double huge_pct = w_res > 0 ? 100.0 * (double)w_huge / (double)w_res : -1;
        if (!o->json) bench_table(&e, ctx);
        for (int c = 0; c < e.n_cfg; c++) bench_print(&e, &s, ctx[cfg[c].k], c, rss, huge_pct);
    }
    free(e.toks);
    free(e.m);
    free(e.probe);
    free(e.bseq);
    free(e.btok);
    free(e.blog);
    free(e.mlog);
    for (int k = 1; k < K; k++) dsc_ctx_free(ctx[k]);
    cli_session_close(&s);
    return rc;
}
