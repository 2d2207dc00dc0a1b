/*
 * bench_tokenizer.c — single-threaded encoding speed of the tokenizer.
 *
 *   bench_tokenizer TOKENIZER_JSON [-f FILE] [-m MB] [-r RUNS]
 *
 * Encodes FILE, or MB megabytes (default 4) of generated mixed text:
 * English prose, Chinese, code, numbers, emoji and whitespace runs, from a
 * fixed seed so every run sees the same text. Prints the median of RUNS
 * (default 7) encodes in MB/s (10^6 bytes) and tokens/s, and decoding speed.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dsc.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng_state = 0x2545f4914f6cdd1dULL;

static uint32_t rng(uint32_t n) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

typedef struct {
    char *p;
    size_t n, cap;
} buf;

static void put(buf *b, const char *s) {
    size_t k = strlen(s);
    if (b->n + k + 1 > b->cap) {
        b->cap = (b->n + k + 1) * 2;
        b->p = realloc(b->p, b->cap);
        if (!b->p) {
            fprintf(stderr, "bench_tokenizer: out of memory\n");
            exit(1);
        }
    }
    memcpy(b->p + b->n, s, k + 1);
    b->n += k;
}

static const char *const en[] = {"the", "model", "attention", "of", "and", "latent", "expert", "router", "tokens",
                                 "is", "a", "DeepSeek", "mixture", "which", "training", "we", "compute", "cache",
                                 "Transformer", "inference", "results", "show", "that", "it's", "don't", "GPU"};
static const char *const zh[] = {"深度", "求索", "模型", "训练", "推理", "的", "是", "我们", "在", "数据", "专家", "混合",
                                 "注意力", "机制", "，", "。", "语言", "开放", "权重", "日本語", "のテキスト", "カタカナ"};
static const char *const code[] = {"def f(x):\n    return x ** 2\n", "for (int i = 0; i < n; i++) {\n",
                                   "    y[i] += a * x[i];\n}\n", "#include <stdio.h>\n", "if err != nil {\n\treturn err\n}\n",
                                   "const auto it = map.find(key);\n", "SELECT id, name FROM users WHERE id = 42;\n",
                                   "    self.w = nn.Linear(d, 4 * d)  # MLP\n"};
static const char *const emoji[] = {"😀", "🎉", "👩‍💻", "🔥", "✨", "🇯🇵", "❤️", "🤖"};

#define PICK(a) (a)[rng(sizeof(a) / sizeof((a)[0]))]

static void gen_segment(buf *b) {
    char num[64];
    int k = 4 + (int)rng(20);
    switch (rng(6)) {
    case 0:
    case 1:
        for (int i = 0; i < k; i++) {
            put(b, i ? " " : "");
            put(b, PICK(en));
        }
        put(b, rng(3) ? ". " : ",\n");
        break;
    case 2:
        for (int i = 0; i < k; i++) put(b, PICK(zh));
        put(b, "。\n");
        break;
    case 3: put(b, PICK(code)); break;
    case 4:
        snprintf(num, sizeof num, " %u.%02u %u, 0x%x ", rng(100000), rng(100), rng(1u << 30), rng(1u << 20));
        put(b, num);
        break;
    default:
        put(b, PICK(emoji));
        put(b, rng(2) ? "  \t " : "\n\n");
    }
}

static char *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    buf b = {0};
    char chunk[65536];
    size_t k;
    if (!f) return NULL;
    while ((k = fread(chunk, 1, sizeof chunk - 1, f)) > 0) {
        chunk[k] = '\0';
        if (memchr(chunk, 0, k)) break; /* not text */
        put(&b, chunk);
    }
    fclose(f);
    *n = b.n;
    return b.p;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    const char *file = NULL;
    double mb = 4.0;
    int runs = 7;
    dsc_tokenizer *tok;
    buf text = {0};
    if (argc < 2) {
        fprintf(stderr, "usage: bench_tokenizer TOKENIZER_JSON [-f FILE] [-m MB] [-r RUNS]\n");
        return 2;
    }
    for (int i = 2; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "-f") == 0) file = argv[i + 1];
        else if (strcmp(argv[i], "-m") == 0) mb = atof(argv[i + 1]);
        else if (strcmp(argv[i], "-r") == 0) runs = atoi(argv[i + 1]);
    }
    if (runs < 1 || runs > 1000 || !(mb > 0 && mb < 4096)) {
        fprintf(stderr, "bench_tokenizer: bad -r or -m\n");
        return 2;
    }
    double t0 = now_s();
    if (dsc_tokenizer_load(argv[1], &tok) != DSC_OK) {
        fprintf(stderr, "bench_tokenizer: %s\n", dsc_last_error());
        return 1;
    }
    printf("load: %.1f ms, %d ids\n", 1e3 * (now_s() - t0), dsc_tokenizer_n_vocab(tok));
    if (file) {
        if (!(text.p = read_file(file, &text.n))) {
            fprintf(stderr, "bench_tokenizer: cannot read %s\n", file);
            return 1;
        }
    } else {
        while ((double)text.n < mb * 1e6) gen_segment(&text);
    }

    size_t cap = text.n + 16, n_ids = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    double *t = malloc((size_t)runs * sizeof *t);
    if (!ids || !t) return 1;
    for (int r = 0; r < runs; r++) {
        t0 = now_s();
        if (dsc_tokenize(tok, text.p, text.n, 1, ids, cap, &n_ids) != DSC_OK) {
            fprintf(stderr, "bench_tokenizer: %s\n", dsc_last_error());
            return 1;
        }
        t[r] = now_s() - t0;
    }
    double first = t[0]; /* the word cache starts empty */
    qsort(t, (size_t)runs, sizeof *t, cmp_double);
    double med = t[runs / 2];
    printf("text: %zu bytes (%s), %zu tokens, %.2f bytes/token\n", text.n, file ? file : "generated mixed", n_ids,
           (double)text.n / (double)n_ids);
    printf("encode: median %.1f ms of %d runs: %.1f MB/s, %.2f M tokens/s (first run %.1f MB/s)\n", 1e3 * med, runs,
           (double)text.n / med / 1e6, (double)n_ids / med / 1e6, (double)text.n / first / 1e6);

    char *out = malloc(text.n * 3 + 16);
    size_t n_out = 0;
    t0 = now_s();
    if (!out || dsc_detokenize(tok, ids, n_ids, out, text.n * 3 + 16, &n_out) != DSC_OK) return 1;
    double td = now_s() - t0;
    printf("decode: %.1f ms: %.1f MB/s, round trip %s\n", 1e3 * td, (double)n_out / td / 1e6,
           n_out == text.n && memcmp(out, text.p, text.n) == 0 ? "exact" : "DIFFERS");
    free(out);
    free(t);
    free(ids);
    free(text.p);
    dsc_tokenizer_free(tok);
    return 0;
}
