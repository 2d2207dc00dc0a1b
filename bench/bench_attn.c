/*
 * bench_attn.c — the two products of MLA decode attention on one core, as
 * mla_attend_decode runs them: a thread's heads (8 by default) against a
 * latent cache of P positions of 576 values (kv_lora_rank 512 + rope 64),
 * by blocks of MLA_DEC_PB positions, the scores (attn_scores, which also
 * decodes the block's rows to F32) then the weighted sum of their first 512
 * values (attn_wsum). Prints, for each kernel set
 * this CPU runs and each cache type, GFLOP/s of each product and of both as
 * a share of the set's FMA peak measured in the same run (best of R runs).
 *
 * usage: bench_attn [POSITIONS] [HEADS] [R]   (defaults 4096 8 7)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/kernels.h"
#include "models/model.h"

#include "ab_util.h"

static uint32_t rng = 1;
static float frand(void) {
    rng = rng * 1664525u + 1013904223u;
    return (float)(rng >> 8) / 16777216.0f - 0.5f;
}

int main(int argc, char **argv) {
    const int P = argc > 1 ? atoi(argv[1]) : 4096, H = argc > 2 ? atoi(argv[2]) : 8, R = argc > 3 ? atoi(argv[3]) : 7;
    enum { W = 576, RL = 512 };
    if (P < 1 || P > (1 << 20) || H < 1 || H > 128 || R < 1 || R > 1000) {
        fprintf(stderr, "usage: bench_attn [POSITIONS 1..1048576] [HEADS 1..128] [R 1..1000]\n");
        return 2;
    }
    const dsc_wtype types[] = {DSC_W_F32, DSC_W_BF16, DSC_W_Q8};
    const char *tname[] = {"f32", "bf16", "q8"};
    float *row = amalloc(sizeof(float) * W), *q = amalloc(sizeof(float) * (size_t)H * W);
    float *sc = amalloc(sizeof(float) * (size_t)H * MLA_DEC_PB), *o = amalloc(sizeof(float) * (size_t)H * W);
    float *rows = amalloc(sizeof(float) * MLA_DEC_PB * kern_attn_ld(W));
    void *data[3] = {amalloc(sizeof(float) * (size_t)P * W), amalloc(2 * (size_t)P * W), amalloc((size_t)P * W)};
    uint16_t *qs = amalloc(2 * (size_t)P * (W / DSC_QBLOCK));
    if (!row || !q || !sc || !o || !rows || !data[0] || !data[1] || !data[2] || !qs) return fprintf(stderr, "bench_attn: out of memory\n"), 1;
    dsc_mat m[3];
    for (int t = 0; t < 3; t++) m[t] = (dsc_mat){types[t], P, W, data[t], NULL, 0, 0, t == 2 ? qs : NULL};
    for (int p = 0; p < P; p++) {
        for (int i = 0; i < W; i++) row[i] = frand();
        for (int t = 0; t < 3; t++) kern_store_row(&m[t], p, row);
    }
    for (int i = 0; i < H * W; i++) q[i] = frand();
    for (int i = 0; i < H * MLA_DEC_PB; i++) sc[i] = frand() + 0.5f;
    const double fs = 2.0 * H * (double)P * W, fw = 2.0 * H * (double)P * RL; /* the two products */
    printf("MLA decode attention, one core: %d heads, %d positions x %d values, blocks of %d (best of %d)\n", H, P, W,
           MLA_DEC_PB, R);
    printf("| isa | cache | scores GFLOP/s | weighted sum GFLOP/s | both ms | both %% of FMA peak |\n|---|---|---|---|---|---|\n");
    for (const char *const *isa = kern_available(); *isa; isa++) {
        const dsc_kernels *k = kern_select(*isa);
        if (!strcmp(*isa, "ref") && isa[1]) continue; /* the reference only where nothing else runs */
        double tp = 1e30;
        for (int i = 0; i < 5; i++) {
            const double t0 = now();
            volatile float f = k->fma_burn(10000000);
            (void)f;
            const double t = now() - t0;
            if (t < tp) tp = t;
        }
        const double peak = 10000000.0 * 8 * k->lanes * 2 / tp / 1e9;
        for (int t = 0; t < 3; t++) {
            double best[3] = {1e30, 1e30, 1e30}; /* scores, sum, both */
            for (int rep = 0; rep < R; rep++)
                for (int v = 0; v < 3; v++) {
                    memset(o, 0, sizeof(float) * (size_t)H * W);
                    const double t0 = now();
                    for (int p0 = 0; p0 < P; p0 += MLA_DEC_PB) {
                        const int p1 = P - p0 < MLA_DEC_PB ? P : p0 + MLA_DEC_PB;
                        if (v != 1) k->attn_scores(sc, MLA_DEC_PB, q, H, &m[t], p0, p1, rows, kern_attn_ld(W));
                        if (v != 0) k->attn_wsum(o, W, sc, MLA_DEC_PB, H, rows, kern_attn_ld(W), p1 - p0, RL);
                    }
                    const double dt = now() - t0;
                    if (dt < best[v]) best[v] = dt;
                }
            printf("| %s | %s | %.1f | %.1f | %.3f | %.1f%% |\n", *isa, tname[t], fs / best[0] / 1e9, fw / best[1] / 1e9,
                   best[2] * 1e3, 100 * (fs + fw) / best[2] / 1e9 / peak);
        }
        printf("(%s FMA peak %.1f GFLOP/s)\n", *isa, peak);
    }
    free(row), free(q), free(sc), free(o), free(rows), free(qs);
    for (int t = 0; t < 3; t++) free(data[t]);
    return 0;
}
