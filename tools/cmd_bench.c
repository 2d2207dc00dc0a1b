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

int cmd_bench(const cli_opts *o) {
    const int P = o->n_prompt, N = o->n_gen, R = o->n_reps, D = o->depth, B = o->parallel > 1 ? o->parallel : 0;
    if (P == 0 && N == 0) return cli_die("bench: -p 0 and -n 0 leave nothing to measure");
    dsc_machine mach;
    cli_opts oo = *o;
    int need = P + (N > 0) > D + N ? P + (N > 0) : D + N; /* the prefill and a decode step; the depth and -n */
    if (o->mtp && N > 0 && need < (D > 0 ? D : 1) + N + 1) need = (D > 0 ? D : 1) + N + 1; /* and the last guess */
    if (oo.n_ctx && need > oo.n_ctx)
        return cli_die("bench: -c %d holds fewer positions than the runs need, %d (-p %d and a decode step; -d %d + -n %d)",
                       oo.n_ctx, need, P, D, N);
    if (!oo.n_ctx) oo.n_ctx = need + 1;
    if (oo.n_batch < P && P > 0) oo.n_batch = P;
    cli_session s;
    if (cli_session_open(&oo, 0, NULL, 0, &s)) {
        cli_session_close(&s);
        return 1;
    }
    cli_session_announce(&oo, &s);
    const int V = s.info.vocab_size;
    int32_t *toks = malloc(sizeof(int32_t) * (size_t)(P > D ? P : D) + 4);
    double *pp = calloc((size_t)R, sizeof(double)), *tg = calloc((size_t)R, sizeof(double));
    double *bw = calloc((size_t)R, sizeof(double)), *peak = calloc((size_t)R, sizeof(double));
    double *tg_pct = calloc((size_t)R, sizeof(double)), *pp_pct = calloc((size_t)R, sizeof(double));
    double *tgb = calloc((size_t)R, sizeof(double)), *tgb_x = calloc((size_t)R, sizeof(double));
    double *ibw = calloc((size_t)R, sizeof(double)), *itg = calloc((size_t)R, sizeof(double));
    double *i_pct = calloc((size_t)R, sizeof(double)), *c_pct = calloc((size_t)R, sizeof(double));
    /* where decode time went: the weight products' share, their GB/s while they ran, attention's share */
    double *rows_pct = calloc((size_t)R, sizeof(double)), *rows_gbs = calloc((size_t)R, sizeof(double));
    double *attn_pct = calloc((size_t)R, sizeof(double));
    double *attn_gfs = calloc((size_t)R, sizeof(double)); /* the attention's GFLOP/s while it ran */
    /* --mtp: a speculative step's time in plain tokens, and the module's pass in ms */
    double *mtp_x = calloc((size_t)R, sizeof(double)), *mtp_draft = calloc((size_t)R, sizeof(double));
    /* The interleaved probe's buffer, on 2 MiB pages as the weights are. */
    const int64_t probe_n = (int64_t)64 << 20;
    float *probe = N > 0 ? aligned_alloc((size_t)2 << 20, sizeof(float) * (size_t)probe_n) : NULL;
    if (probe) {
        madvise(probe, sizeof(float) * (size_t)probe_n, MADV_HUGEPAGE);
        for (int64_t k = 0; k < probe_n; k++) probe[k] = (float)(k & 1023) * 1e-3f;
    }
    int32_t *bseq = malloc(sizeof(int32_t) * (size_t)(B + 1)), *btok = malloc(sizeof(int32_t) * (size_t)(B + 1));
    float *blog = B ? malloc(sizeof(float) * (size_t)B * (size_t)s.info.vocab_size) : NULL;
    float *mlog = o->mtp ? malloc(sizeof(float) * 2 * (size_t)s.info.vocab_size) : NULL;
    int rc = (!toks || !pp || !tg || !bw || !peak || !tg_pct || !pp_pct || !tgb || !tgb_x || !bseq || !btok || !ibw ||
              !itg || !i_pct || !c_pct || !rows_pct || !rows_gbs || !attn_pct || !attn_gfs || !mtp_x || !mtp_draft ||
              (N > 0 && !probe) ||
              (B && !blog) || (o->mtp && !mlog)) ? cli_die("out of memory") : 0;
    const dsc_model_info *i = &s.info;
    /* Bytes per decode step: active weights + the latent cache read at the
     * mean position of the run. FLOPs per prompt token: the matmuls. */
    const double kv_tok = (double)dsc_ctx_kv_bytes(s.ctx) / dsc_ctx_n_ctx(s.ctx) / dsc_ctx_n_seq(s.ctx) *
                          i->n_layers / (i->n_layers + (o->mtp ? 1 : 0)); /* one sequence, the main model's layers */
    const double bytes = (double)i->active_bytes + kv_tok * (D + N / 2.0);
    /* lm_head runs for the last prompt token only. */
    /* Attention FLOPs per decode step at the run's mean position: per layer
     * and head, a score over R + Dr values and a weighted sum over R for
     * every cached position. */
    const double pos = D + N / 2.0 + 1;
    const double attn_flops = 2.0 * i->n_layers * i->n_heads * pos * (2.0 * i->kv_lora_rank + i->qk_rope_head_dim);
    const double flops = 2.0 * ((double)i->active_params - (double)i->head_params + (double)i->head_params / (P > 0 ? P : 1));

    /* A warm-up as llama-bench's (--no-warmup skips it): a prefill of P
     * tokens and one decode step, unmeasured, so that the first run does not
     * pay for weights still on disk or pages not yet mapped. */
    if (!rc && !o->no_warmup && (P > 0 || N > 0)) {
        const int n = P > 0 ? P : 1;
        for (int k = 0; k < n; k++) toks[k] = random_token(V);
        dsc_ctx_truncate(s.ctx, 0);
        if (dsc_eval(s.ctx, toks, n, NULL)) rc = cli_die_status();
        if (!rc && P > 0 && N > 0 && dsc_eval(s.ctx, toks, 1, NULL)) rc = cli_die_status();
        dsc_ctx_truncate(s.ctx, 0);
    }
    if (!rc && D > 0) { /* the context the decode test starts from */
        for (int k = 0; k < D; k++) toks[k] = random_token(V);
        dsc_ctx_truncate(s.ctx, 0);
        if (dsc_eval(s.ctx, toks, D, NULL)) rc = cli_die_status();
    }
    /* Each repetition measures the machine right before its own runs: on a
     * shared machine the roofline moves, so each run is set against its own. */
    for (int r = 0; r < R && !rc; r++) {
        if (dsc_measure_machine(dsc_ctx_n_threads(s.ctx), o->isa, &mach)) {
            rc = cli_die_status();
            break;
        }
        bw[r] = mach.read_gb_s;
        peak[r] = mach.fma_gflop_s;
        if (P > 0) { /* prefill: P random tokens into an empty context */
            for (int k = 0; k < P; k++) toks[k] = random_token(V);
            dsc_ctx_truncate(s.ctx, 0);
            double t0 = now_s();
            if (dsc_eval(s.ctx, toks, P, NULL)) rc = cli_die_status();
            pp[r] = P / (now_s() - t0);
            pp_pct[r] = 100 * pp[r] * flops / 1e9 / peak[r];
            if (D > 0 && !rc) { /* restore the decode context */
                for (int k = 0; k < D; k++) toks[k] = random_token(V);
                dsc_ctx_truncate(s.ctx, 0);
                if (dsc_eval(s.ctx, toks, D, NULL)) rc = cli_die_status();
            }
        }
        if (N > 0 && !rc) { /* decode: N steps after D tokens of context */
            dsc_ctx_truncate(s.ctx, D);
            int32_t t = random_token(V);
            dsc_ctx_set_timing(s.ctx, 1);
            double t0 = now_s();
            for (int k = 0; k < N && !rc; k++) {
                if (dsc_eval(s.ctx, &t, 1, NULL)) rc = cli_die_status();
                t = dsc_argmax(dsc_ctx_logits(s.ctx), V);
            }
            const double dt = now_s() - t0;
            const dsc_timing tm = dsc_ctx_timing(s.ctx);
            dsc_ctx_set_timing(s.ctx, 0);
            const double rows_s = tm.rows_s / dsc_ctx_n_threads(s.ctx); /* the threads' mean */
            rows_pct[r] = 100 * rows_s / dt;
            rows_gbs[r] = rows_s > 0 ? tm.rows_bytes / rows_s / 1e9 : 0;
            attn_pct[r] = 100 * tm.attn_s / dt;
            attn_gfs[r] = tm.attn_s > 0 ? attn_flops * N / tm.attn_s / 1e9 : 0;
            tg[r] = N / dt;
            tg_pct[r] = 100 * tg[r] * bytes / 1e9 / bw[r];
            c_pct[r] = 100 * tg[r] * (bytes / 1e9 / bw[r] + attn_flops / 1e9 / peak[r]);
        }
        if (N > 0 && !rc) { /* the same N steps, each after a read of the probe buffer */
            dsc_ctx_truncate(s.ctx, D);
            int32_t t = random_token(V);
            double t_read = 0, t_dec = 0;
            for (int k = 0; k < N && !rc; k++) {
                t_read += dsc_ctx_read_pass(s.ctx, probe, probe_n);
                const double t0 = now_s();
                if (dsc_eval(s.ctx, &t, 1, NULL)) rc = cli_die_status();
                t = dsc_argmax(dsc_ctx_logits(s.ctx), V);
                t_dec += now_s() - t0;
            }
            ibw[r] = (double)probe_n * sizeof(float) * N / t_read / 1e9;
            itg[r] = N / t_dec;
            i_pct[r] = 100 * itg[r] * bytes / 1e9 / ibw[r];
        }
        if (N > 0 && o->mtp && !rc) { /* N speculative steps, each guess refused */
            dsc_ctx_truncate(s.ctx, D);
            if (D == 0) { /* a guess follows a token */
                toks[0] = random_token(V);
                if (dsc_eval(s.ctx, toks, 1, NULL)) rc = cli_die_status();
            }
            int32_t t = random_token(V), pair[2], seq2[2] = {0, 0}, draft = -1;
            double t_draft = 0, t0 = now_s();
            for (int k = 0; k < N && !rc; k++) {
                const double td = now_s();
                if (dsc_mtp_draft(s.ctx, 0, t, &draft)) rc = cli_die_status();
                t_draft += now_s() - td;
                pair[0] = t, pair[1] = draft;
                if (!rc && dsc_eval_mixed(s.ctx, seq2, pair, 2, NULL, mlog)) rc = cli_die_status();
                if (!rc) dsc_seq_truncate(s.ctx, 0, dsc_seq_pos(s.ctx, 0) - 1);
                t = dsc_argmax(mlog, V);
            }
            mtp_x[r] = (now_s() - t0) / N * tg[r];
            mtp_draft[r] = 1e3 * t_draft / N;
        }
        if (N > 0 && B && !rc) { /* batched decode: B sequences from the same D tokens, N steps */
            dsc_ctx_truncate(s.ctx, D);
            for (int b = 0; b < B && !rc; b++) {
                if (b && dsc_seq_copy(s.ctx, 0, b, D)) rc = cli_die_status();
                bseq[b] = b, btok[b] = random_token(V);
            }
            double t0 = now_s();
            for (int k = 0; k < N && !rc; k++) {
                if (dsc_decode_batch(s.ctx, bseq, btok, B, blog)) rc = cli_die_status();
                for (int b = 0; b < B && !rc; b++) btok[b] = dsc_argmax(blog + (size_t)b * V, V);
            }
            tgb[r] = (double)B * N / (now_s() - t0);
            tgb_x[r] = tgb[r] / tg[r];
        }
    }
    free(probe); /* before the resident set is read */
    probe = NULL;
    if (!rc) {
        stat3 sp = stats(pp, R), st = stats(tg, R), sbw = stats(bw, R), spk = stats(peak, R);
        stat3 stp = stats(tg_pct, R), spp = stats(pp_pct, R), sb = stats(tgb, R), sbx = stats(tgb_x, R);
        stat3 sib = stats(ibw, R), sit = stats(itg, R), sip = stats(i_pct, R), scp = stats(c_pct, R);
        stat3 srp = stats(rows_pct, R), srg = stats(rows_gbs, R), sap = stats(attn_pct, R);
        stat3 sag = stats(attn_gfs, R), smx = stats(mtp_x, R), smd = stats(mtp_draft, R);
        mach.read_gb_s = sbw.median;
        mach.fma_gflop_s = spk.median;
        double tg_gbs = st.median * bytes / 1e9, roof_tps = mach.read_gb_s * 1e9 / bytes;
        double pp_gflops = sp.median * flops / 1e9;
        size_t rss = dsc_rss_bytes();
        int64_t w_res = -1, w_huge = -1; /* the weights' resident bytes, those on 2 MiB pages */
        dsc_model_resident(s.model, &w_res, &w_huge);
        const double huge_pct = w_res > 0 ? 100.0 * (double)w_huge / (double)w_res : -1;
        if (o->json) {
            cJSON *path = cJSON_CreateString(o->model);
            char *model_json = path ? cJSON_PrintUnformatted(path) : NULL; /* the path, quoted and escaped */
            printf("{\"model\": %s, \"model_type\": \"%s\", \"weight_bytes\": %lld, \"active_bytes\": %lld, "
                   "\"threads\": %d, \"isa\": \"%s\", \"n_prompt\": %d, \"n_gen\": %d, \"depth\": %d, \"reps\": %d, "
                   "\"pp_tokens_per_s\": %.3f, \"pp_min\": %.3f, \"pp_max\": %.3f, "
                   "\"tg_tokens_per_s\": %.3f, \"tg_min\": %.3f, \"tg_max\": %.3f, "
                   "\"bytes_per_token\": %.0f, \"bandwidth_gb_s\": %.3f, \"tg_gb_s\": %.3f, "
                   "\"tg_roofline_tokens_per_s\": %.3f, \"tg_roofline_pct\": %.2f, \"tg_roofline_pct_min\": %.2f, "
                   "\"tg_roofline_pct_max\": %.2f, \"bandwidth_min\": %.3f, \"bandwidth_max\": %.3f, "
                   "\"flops_per_prompt_token\": %.0f, \"fma_peak_gflop_s\": %.3f, \"pp_gflop_s\": %.3f, "
                   "\"pp_peak_pct\": %.2f, \"rss_bytes\": %zu, \"kv_cache_bytes\": %zu, \"weights_huge_pct\": %.1f, "
                   "\"tgi_tokens_per_s\": %.3f, \"bandwidth_interleaved_gb_s\": %.3f, \"tgi_roofline_pct\": %.2f, "
                   "\"tgi_roofline_pct_min\": %.2f, \"tgi_roofline_pct_max\": %.2f, "
                   "\"attn_flops_per_token\": %.0f, \"tg_attn_roofline_pct\": %.2f, \"parallel\": %d, "
                   "\"tgb_tokens_per_s\": %.3f, \"tgb_speedup\": %.3f, \"tgb_speedup_min\": %.3f, "
                   "\"tgb_speedup_max\": %.3f, \"tg_rows_pct\": %.2f, \"tg_rows_gb_s\": %.3f, \"tg_attn_pct\": %.2f, "
                   "\"tg_attn_gflop_s\": %.3f, \"mtp\": %d, \"mtp_step_tokens\": %.3f, \"mtp_step_tokens_min\": %.3f, "
                   "\"mtp_step_tokens_max\": %.3f, \"mtp_draft_ms\": %.3f}\n",
                   model_json ? model_json : "null", i->model_type, (long long)i->weight_bytes, (long long)i->active_bytes,
                   dsc_ctx_n_threads(s.ctx), dsc_ctx_isa(s.ctx), P, N, D, R, sp.median, sp.lo, sp.hi, st.median, st.lo,
                   st.hi, bytes, mach.read_gb_s, tg_gbs, roof_tps, stp.median, stp.lo, stp.hi, sbw.lo, sbw.hi, flops,
                   mach.fma_gflop_s, pp_gflops, spp.median, rss, dsc_ctx_kv_bytes(s.ctx), huge_pct, sit.median, sib.median,
                   sip.median, sip.lo, sip.hi, attn_flops, scp.median, B, B ? sb.median : 0,
                   B ? sbx.median : 0, B ? sbx.lo : 0, B ? sbx.hi : 0, srp.median, srg.median, sap.median, sag.median,
                   o->mtp, smx.median, smx.lo, smx.hi, smd.median);
            cJSON_free(model_json);
            cJSON_Delete(path);
        } else {
            printf("| model | size | params | threads | isa | test | t/s (median, min-max of %d) |\n", R);
            printf("|---|---|---|---|---|---|---|\n");
            char test[64];
            snprintf(test, sizeof test, "pp%d", P);
            if (P > 0)
                printf("| %s | %.2f GiB | %.2f B | %d | %s | %s | %.2f (%.2f-%.2f) |\n", i->model_type,
                   i->weight_bytes / 1073741824.0, i->n_params / 1e9, dsc_ctx_n_threads(s.ctx), dsc_ctx_isa(s.ctx),
                   test, sp.median, sp.lo, sp.hi);
            snprintf(test, sizeof test, D ? "tg%d @ d%d" : "tg%d", N, D);
            if (N > 0)
                printf("| %s | %.2f GiB | %.2f B | %d | %s | %s | %.2f (%.2f-%.2f) |\n", i->model_type,
                   i->weight_bytes / 1073741824.0, i->n_params / 1e9, dsc_ctx_n_threads(s.ctx), dsc_ctx_isa(s.ctx),
                   test, st.median, st.lo, st.hi);
            snprintf(test, sizeof test, D ? "tg%d x%d @ d%d" : "tg%d x%d", N, B, D);
            if (N > 0 && B)
                printf("| %s | %.2f GiB | %.2f B | %d | %s | %s | %.2f (%.2f-%.2f) |\n", i->model_type,
                       i->weight_bytes / 1073741824.0, i->n_params / 1e9, dsc_ctx_n_threads(s.ctx), dsc_ctx_isa(s.ctx),
                       test, sb.median, sb.lo, sb.hi);
            printf("\n");
            if (N > 0)
                printf("decode:  %.1f MB read per token (%.1f MB weights + %.2f MB latent cache); %.2f GB/s achieved, "
                   "read bandwidth measured before each run %.2f GB/s (%.2f-%.2f): %.1f%% of the roofline "
                   "(median of the per-run ratios, %.1f-%.1f; roofline %.2f t/s)\n",
                   bytes / 1e6, i->active_bytes / 1e6, (bytes - i->active_bytes) / 1e6, tg_gbs, sbw.median, sbw.lo,
                   sbw.hi, stp.median, stp.lo, stp.hi, roof_tps);
            if (N > 0)
                printf("         interleaved, each step right after a 256 MiB read with the same threads: %.2f t/s, "
                       "%.2f GB/s achieved, reads %.2f GB/s (%.2f-%.2f): %.1f%% (median of the per-run ratios, "
                       "%.1f-%.1f)\n",
                       sit.median, sit.median * bytes / 1e9, sib.median, sib.lo, sib.hi, sip.median, sip.lo, sip.hi);
            if (N > 0)
                printf("         attention: %.3f GFLOP per token at the mean position %.0f; with it at the FMA peak "
                       "after the bytes at the bandwidth: roofline %.2f t/s, %.1f%% (median of the per-run ratios, "
                       "%.1f-%.1f)\n",
                       attn_flops / 1e9, pos - 1, 1 / (bytes / 1e9 / mach.read_gb_s + attn_flops / 1e9 / mach.fma_gflop_s),
                       scp.median, scp.lo, scp.hi);
            if (N > 0)
                printf("         time: the weight products %.1f%% of decode (the threads' mean; %.2f GB/s while they "
                       "ran, %.0f%% of the bandwidth), attention %.1f%% (%.1f GFLOP/s while it ran, %.0f%% of the FMA "
                       "peak), the rest %.1f%% (medians of the runs)\n",
                       srp.median, srg.median, 100 * srg.median / mach.read_gb_s, sap.median, sag.median,
                       100 * sag.median / mach.fma_gflop_s, 100 - srp.median - sap.median);
            if (P > 0)
                printf("prefill: %.2f GFLOP per prompt token (matmuls); %.1f GFLOP/s achieved, %s FMA peak %.1f "
                       "GFLOP/s: %.1f%% (median of the per-run ratios, %.1f-%.1f)\n",
                       flops / 1e9, pp_gflops, mach.isa, spk.median, spp.median, spp.lo, spp.hi);
            if (N > 0 && o->mtp) {
                char gain[96];
                if (smx.median < 2) snprintf(gain, sizeof gain, "gains where more than %.0f%% of the guesses are taken",
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
            printf("memory:  resident %.1f MiB (weights %.1f MiB mapped, latent cache %.1f MiB)\n", rss / 1048576.0,
                   i->weight_bytes / 1048576.0, dsc_ctx_kv_bytes(s.ctx) / 1048576.0);
            if (huge_pct >= 0)
                printf("pages:   %.0f%% of the resident weights on 2 MiB pages%s\n", huge_pct,
                       huge_pct < 50 ? " (4 KiB pages cost decode 10-15%: see dsc_model_load in include/dsc.h)" : "");
        }
    }
    free(toks);
    free(pp);
    free(tg);
    free(bw);
    free(peak);
    free(tg_pct);
    free(pp_pct);
    free(tgb);
    free(tgb_x);
    free(ibw);
    free(itg);
    free(i_pct);
    free(c_pct);
    free(rows_pct);
    free(rows_gbs);
    free(attn_pct);
    free(attn_gfs);
    free(mtp_x);
    free(mtp_draft);
    free(mlog);
    free(probe);
    free(bseq);
    free(btok);
    free(blog);
    cli_session_close(&s);
    return rc;
}
