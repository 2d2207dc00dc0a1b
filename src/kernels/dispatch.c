/*
 * dispatch.c — choose the kernel table for this CPU at run time.
 */
#include <string.h>

#include "kernels/kernels.h"

static int cpu_has_avx2(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

static int cpu_has_avx512(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    return cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl");
#else
    return 0;
#endif
}

const char *const *kern_available(void) {
    static const char *names[4];
    int n = 0;
    names[n++] = "ref";
    if (cpu_has_avx2()) names[n++] = "avx2";
    if (cpu_has_avx512()) names[n++] = "avx512";
    names[n] = NULL;
    return names;
}

const dsc_kernels *kern_select(const char *isa) {
    int best = !isa || !*isa;
#if defined(__x86_64__)
    if ((best || !strcmp(isa, "avx512")) && cpu_has_avx512()) return &kern_avx512;
    if ((best || !strcmp(isa, "avx2")) && cpu_has_avx2()) return &kern_avx2;
#endif
    if (best || !strcmp(isa, "ref")) return &kern_ref;
    return NULL;
}

void kern_softmax_k(const dsc_kernels *k, float *x, int32_t n) {
    float mx = x[0];
    for (int32_t i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    const float inv = (float)(1.0 / k->exp_sum(x, x, n, mx));
    for (int32_t i = 0; i < n; i++) x[i] *= inv;
}

void kern_swiglu_k(const dsc_kernels *k, float *h, const float *g, const float *u, int64_t n) {
    float s[256];
    for (int64_t i0 = 0; i0 < n; i0 += 256) {
        const int32_t m = n - i0 < 256 ? (int32_t)(n - i0) : 256;
        k->sigmoid(s, g + i0, m);
        for (int32_t i = 0; i < m; i++) h[i0 + i] = g[i0 + i] * s[i] * u[i0 + i];
    }
}
