/*
 * test_tokenizer.c — the tokenizer against golden ids and on text it never saw.
 *
 *   test_tokenizer TOKENIZER_JSON CASES_JSONL
 *
 * CASES_JSONL holds {"text": ..., "ids": [...]} lines encoded by the
 * reference (Hugging Face tokenizers, no BOS, added tokens matched). Each
 * must encode to exactly its ids and decode back to its text. Then:
 * round trips and streaming decoding on generated text (Chinese, Japanese,
 * code, emoji, whitespace runs, random code points), hand-checked BPE on a
 * tiny tokenizer, concurrent use, and bad input (files, ids, UTF-8), each
 * of which must fail with a status and a message. Prints a line per group
 * and ends with "N passed, M failed".
 */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dsc.h"

static int n_pass, n_fail;
static int g_pass, g_fail; /* of the current group */

static void check(int ok, const char *fmt, ...) {
    if (ok) {
        g_pass++;
        return;
    }
    if (g_fail++ < 5) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(stdout, "  FAIL: ");
        vfprintf(stdout, fmt, ap);
        fprintf(stdout, "\n");
        va_end(ap);
    }
}

static void group_end(const char *name) {
    printf("%-28s %d passed, %d failed\n", name, g_pass, g_fail);
    n_pass += g_pass;
    n_fail += g_fail;
    g_pass = g_fail = 0;
}

/* ---------------------------------------------------------- helpers --- */

typedef struct {
    char *p;
    size_t n, cap;
} sbuf;

static void sb_put(sbuf *b, const void *s, size_t k) {
    if (b->n + k + 1 > b->cap) {
        b->cap = (b->n + k + 1) * 2;
        if (!(b->p = realloc(b->p, b->cap))) abort();
    }
    memcpy(b->p + b->n, s, k);
    b->n += k;
    b->p[b->n] = '\0';
}

static void sb_cp(sbuf *b, uint32_t cp) {
    unsigned char u[4];
    size_t k;
    if (cp < 0x80) {
        u[0] = (unsigned char)cp;
        k = 1;
    } else if (cp < 0x800) {
        u[0] = (unsigned char)(0xc0 | cp >> 6);
        u[1] = (unsigned char)(0x80 | (cp & 0x3f));
        k = 2;
    } else if (cp < 0x10000) {
        u[0] = (unsigned char)(0xe0 | cp >> 12);
        u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (unsigned char)(0x80 | (cp & 0x3f));
        k = 3;
    } else {
        u[0] = (unsigned char)(0xf0 | cp >> 18);
        u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
        u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        u[3] = (unsigned char)(0x80 | (cp & 0x3f));
        k = 4;
    }
    sb_put(b, u, k);
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static uint64_t rng_s = 0x9e3779b97f4a7c15ULL;

static uint32_t rnd(uint32_t n) {
    rng_s ^= rng_s << 13;
    rng_s ^= rng_s >> 7;
    rng_s ^= rng_s << 17;
    return (uint32_t)(rng_s % n);
}

/* Independent of the library: 1 if s[0..n) is valid UTF-8. */
static int valid_utf8(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c < 0xe0) k = 1, cp = c & 0x1f, min = 0x80;
        else if (c >= 0xe0 && c < 0xf0) k = 2, cp = c & 0x0f, min = 0x800;
        else if (c >= 0xf0 && c < 0xf5) k = 3, cp = c & 0x07, min = 0x10000;
        else return 0;
        if (n - i <= k) return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80) return 0;
            cp = cp << 6 | (s[i + j] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
        i += k + 1;
    }
    return 1;
}

/* Encodes text (parse_special on); *ids is malloc'd. Returns the status. */
static dsc_status encode(const dsc_tokenizer *tok, const char *text, size_t n, int32_t **ids, size_t *n_ids) {
    size_t cap = n + 8;
    *ids = malloc(cap * sizeof **ids);
    if (!*ids) abort();
    return dsc_tokenize(tok, text, n, 1, *ids, cap, n_ids);
}

/* decode(ids) == text, and pushing ids through a stream gives the same
 * text in valid UTF-8 pieces. */
static void check_decode(const dsc_tokenizer *tok, const int32_t *ids, size_t n_ids, const char *text, size_t n,
                         const char *what) {
    size_t cap = n * 3 + 16, got = 0;
    char *out = malloc(cap);
    sbuf st = {0};
    dsc_utf8_stream s = {{0}, 0};
    int pieces_ok = 1;
    if (!out) abort();
    dsc_status r = dsc_detokenize(tok, ids, n_ids, out, cap, &got);
    check(r == DSC_OK && got == n && memcmp(out, text, n) == 0, "%s: decode differs (status %d, %zu vs %zu bytes)",
          what, r, got, n);
    sb_put(&st, "", 0);
    for (size_t i = 0; i < n_ids; i++) {
        char piece[1024];
        size_t k;
        if (dsc_utf8_stream_push(&s, tok, ids[i], piece, sizeof piece, &k) != DSC_OK || piece[k] != '\0' ||
            !valid_utf8((const unsigned char *)piece, k))
            pieces_ok = 0;
        sb_put(&st, piece, k);
    }
    check(pieces_ok && st.n == n && memcmp(st.p, text, n) == 0 && s.n_pending == 0,
          "%s: stream decode differs (%zu vs %zu bytes)", what, st.n, n);
    free(st.p);
    free(out);
}

static void check_roundtrip(const dsc_tokenizer *tok, const sbuf *text, const char *what) {
    int32_t *ids;
    size_t n_ids = 0;
    dsc_status r = encode(tok, text->p, text->n, &ids, &n_ids);
    check(r == DSC_OK && n_ids > 0, "%s: encode failed: %s", what, dsc_last_error());
    if (r == DSC_OK) check_decode(tok, ids, n_ids, text->p, text->n, what);
    free(ids);
}

/* ----------------------------------------------------------- golden --- */

static char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    sbuf b = {0};
    char chunk[65536];
    size_t k;
    if (!f) return NULL;
    while ((k = fread(chunk, 1, sizeof chunk, f)) > 0) sb_put(&b, chunk, k);
    fclose(f);
    *n = b.n;
    return b.p;
}

static void test_golden_case(const dsc_tokenizer *tok, const cJSON *c, size_t line) {
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(c, "text"), *ref = cJSON_GetObjectItemCaseSensitive(c, "ids");
    int32_t *ids;
    size_t n_ids = 0, n;
    char what[48];
    snprintf(what, sizeof what, "case on line %zu", line);
    if (!cJSON_IsString(text) || !cJSON_IsArray(ref)) {
        check(0, "%s: no text or ids", what);
        return;
    }
    n = strlen(text->valuestring);
    dsc_status r = encode(tok, text->valuestring, n, &ids, &n_ids);
    int same = r == DSC_OK && n_ids == (size_t)cJSON_GetArraySize(ref);
    for (size_t i = 0; same && i < n_ids; i++) same = ids[i] == cJSON_GetArrayItem(ref, (int)i)->valueint;
    check(same, "%s: ids differ from the reference (%zu vs %d ids): %.60s", what, n_ids, cJSON_GetArraySize(ref),
          text->valuestring);
    if (r == DSC_OK) check_decode(tok, ids, n_ids, text->valuestring, n, what);
    free(ids);
}

static void test_golden(const dsc_tokenizer *tok, const char *cases_path) {
    size_t n = 0, line = 0, n_cases = 0;
    char *all = read_all(cases_path, &n);
    check(all != NULL, "cannot read %s", cases_path);
    for (char *p = all; p && *p;) {
        char *nl = strchr(p, '\n'); /* JSON escapes newlines inside strings */
        if (nl) *nl = '\0';
        line++;
        if (*p) {
            cJSON *c = cJSON_Parse(p);
            check(c != NULL, "line %zu: not JSON", line);
            if (c) test_golden_case(tok, c, line);
            cJSON_Delete(c);
            n_cases++;
        }
        p = nl ? nl + 1 : NULL;
    }
    check(n_cases >= 10, "only %zu cases in %s", n_cases, cases_path);
    free(all);
    group_end("golden cases");
}

/* ------------------------------------------------------- generated --- */

static void gen_chinese(sbuf *b, size_t bytes) {
    static const char *const punct[] = {"，", "。", "、", "：", "“", "”", "（", "）", "DeepSeek", "2025", " "};
    while (b->n < bytes) {
        if (rnd(12) == 0) sb_str(b, punct[rnd(sizeof punct / sizeof *punct)]);
        else sb_cp(b, 0x4e00 + rnd(0x9fa5 - 0x4e00 + 1));
    }
}

static void gen_japanese(sbuf *b, size_t bytes) {
    while (b->n < bytes) {
        uint32_t r = rnd(10);
        if (r < 4) sb_cp(b, 0x3041 + rnd(0x3096 - 0x3041 + 1));      /* hiragana */
        else if (r < 7) sb_cp(b, 0x30a1 + rnd(0x30fa - 0x30a1 + 1)); /* katakana */
        else if (r < 9) sb_cp(b, 0x4e00 + rnd(0x5000));              /* kanji */
        else sb_str(b, rnd(2) ? "。" : "ー");
    }
}

static void gen_code(sbuf *b, size_t bytes) {
    static const char *const lines[] = {
        "def forward(self, x):\n", "    return self.w2(F.silu(self.w1(x)) * self.w3(x))\n",
        "for (size_t i = 0; i < n; i++) {\n", "\ty[i] = a * x[i] + y[i]; // saxpy\n", "}\n",
        "#include <stdint.h>\n", "if (err != nil) { return fmt.Errorf(\"bad %d\", 42) }\n",
        "    let v: Vec<u32> = (0..10).map(|i| i * i).collect();\n", "x = {\"key\": [1, 2.5, -3e10, null]}\n",
        "\r\n", "        \n", "/* comment */  ", "<div class=\"a\">&nbsp;</div>\n", "$ ls -la | grep '^d'\n"};
    while (b->n < bytes) sb_str(b, lines[rnd(sizeof lines / sizeof *lines)]);
}

static void gen_emoji(sbuf *b, size_t bytes) {
    while (b->n < bytes) {
        uint32_t r = rnd(8);
        sb_cp(b, 0x1f300 + rnd(0x1faff - 0x1f300 + 1));
        if (r == 0) sb_cp(b, 0x1f3fb + rnd(5)); /* skin tone */
        if (r == 1) {                            /* ZWJ sequence */
            sb_cp(b, 0x200d);
            sb_cp(b, 0x1f4bb);
        }
        if (r == 2) sb_cp(b, 0xfe0f);
        if (r == 3) { /* flag */
            sb_cp(b, 0x1f1e6 + rnd(26));
            sb_cp(b, 0x1f1e6 + rnd(26));
        }
        if (r == 4) sb_str(b, " ");
    }
}

static void gen_spaces(sbuf *b, size_t bytes) {
    static const uint32_t ws[] = {' ', ' ', ' ', '\t', '\n', '\r', 0x0b, 0x0c, 0xa0, 0x3000, 0x2028, 0x85, 0x180e};
    while (b->n < bytes) {
        uint32_t run = rnd(4) == 0 ? 1 + rnd(3000) : 1 + rnd(8), c = ws[rnd(sizeof ws / sizeof *ws)];
        for (uint32_t i = 0; i < run; i++) sb_cp(b, rnd(8) ? c : ws[rnd(sizeof ws / sizeof *ws)]);
        sb_str(b, rnd(2) ? "word" : "字");
    }
}

static void gen_random(sbuf *b, size_t bytes) {
    while (b->n < bytes) {
        uint32_t r = rnd(4), cp;
        do {
            cp = r == 0 ? rnd(0x80) : r == 1 ? rnd(0x800) : r == 2 ? rnd(0x10000) : rnd(0x110000);
        } while (cp >= 0xd800 && cp <= 0xdfff);
        sb_cp(b, cp);
    }
}

static void test_generated(const dsc_tokenizer *tok) {
    static const struct {
        const char *name;
        void (*gen)(sbuf *, size_t);
        size_t bytes;
    } kinds[] = {{"long Chinese", gen_chinese, 200000}, {"Japanese", gen_japanese, 60000},
                 {"code", gen_code, 60000},           {"emoji", gen_emoji, 40000},
                 {"whitespace runs", gen_spaces, 80000}, {"random code points", gen_random, 60000}};
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
        for (int rep = 0; rep < 3; rep++) {
            sbuf b = {0};
            sb_put(&b, "", 0);
            kinds[k].gen(&b, kinds[k].bytes / (size_t)(1 + rep * 20)); /* one long text, two short */
            check_roundtrip(tok, &b, kinds[k].name);
            free(b.p);
        }
    }
    /* many short random strings: edges of pieces, added tokens mid-text */
    static const char *const bits[] = {"<｜User｜>", "<｜Assistant｜>", "<｜end▁of▁sentence｜>", "<｜", "｜>", " ", "\n",
                                       "  ", "a", "1", "é", "深", "😀", "'s", "\t", "<think>", "!!", "\xc2\xa0"};
    for (int i = 0; i < 3000; i++) {
        sbuf b = {0};
        sb_put(&b, "", 0);
        for (uint32_t j = 0, k = rnd(12); j < k; j++) {
            if (rnd(3)) sb_str(&b, bits[rnd(sizeof bits / sizeof *bits)]);
            else gen_random(&b, b.n + 1);
        }
        if (b.n > 0) check_roundtrip(tok, &b, "short random");
        free(b.p);
    }
    group_end("generated round trips");
}

/* ------------------------------------------------------- references --- */

/* Whitespace where PCRE2 and Oniguruma disagree (U+180E is \s to PCRE2
 * with UCP, not to Oniguruma) and other separators; ids from the reference,
 * Hugging Face tokenizers 0.22.2, on the DeepSeek-V3 tokenizer.json. */
static void test_reference_extras(const dsc_tokenizer *tok) {
    static const struct {
        const char *text;
        int32_t ids[12];
        size_t n;
    } cases[] = {
        {"a\xe1\xa0\x8e b", {67, 115522, 239, 291}, 4},
        {"x \xe1\xa0\x8e\xe1\xa0\x8e  y", {90, 223, 115522, 239, 115522, 239, 223, 383}, 8},
        {"  \xe1\xa0\x8e\x0a", {223, 223, 115522, 239, 201}, 5},
        {"\xe1\xa0\x8e\xe1\xa0\x8e", {115522, 239, 115522, 239}, 4},
        {"end \xe1\xa0\x8e", {523, 223, 115522, 239}, 4},
        {"\xc2\x85\xc2\x85x", {129, 230, 129, 230, 90}, 5},
        {"word\xe2\x80\xa8\xe2\x80\xa8 next", {3899, 300, 104, 300, 104, 2894}, 6},
        {"a\xe3\x80\x80\xe3\x80\x80" "b", {67, 18524, 18524, 68}, 4},
        {"tab\x09\x09\x0b\x0cz", {14278, 998, 202, 203, 92}, 5}};
    if (dsc_tokenizer_n_vocab(tok) != 128815) { /* ids only hold for that file */
        printf("%-28s skipped: not the DeepSeek-V3 tokenizer\n", "whitespace references");
        return;
    }
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int32_t ids[32];
        size_t n = 0;
        dsc_status r = dsc_tokenize(tok, cases[i].text, strlen(cases[i].text), 1, ids, 32, &n);
        check(r == DSC_OK && n == cases[i].n && memcmp(ids, cases[i].ids, n * sizeof *ids) == 0,
              "reference case %zu: ids differ", i);
    }
    group_end("whitespace references");
}

/* ------------------------------------------------------------- API --- */

static void test_special(const dsc_tokenizer *tok) {
    const char *eos = "<｜end▁of▁sentence｜>", *text = "a<｜User｜>b";
    int32_t ids[64];
    size_t n = 0;
    int32_t eos_id = dsc_tokenizer_find(tok, eos), user_id = dsc_tokenizer_find(tok, "<｜User｜>");
    check(eos_id >= 0 && user_id >= 0, "find: special tokens not found");
    check(dsc_tokenizer_find(tok, "no such token, surely") == -1, "find: a made-up token found");
    check(dsc_tokenizer_find(tok, " the") >= 0 && dsc_tokenizer_find(tok, " the") == dsc_tokenizer_find(tok, "Ġthe"),
          "find: raw text and ByteLevel form differ");
    check(dsc_tokenizer_n_vocab(tok) > eos_id && dsc_tokenizer_n_vocab(tok) > user_id, "n_vocab too small");
    check(dsc_tokenize(tok, text, strlen(text), 1, ids, 64, &n) == DSC_OK && n == 3 && ids[1] == user_id,
          "parse_special: <｜User｜> is not one token");
    check(dsc_tokenize(tok, text, strlen(text), 0, ids, 64, &n) == DSC_OK && n > 3, "no parse_special: matched anyway");
    for (size_t i = 0; i < n; i++) check(ids[i] != user_id, "no parse_special: special id emitted");
    check_decode(tok, ids, n, text, strlen(text), "no parse_special");
    /* empty text */
    check(dsc_tokenize(tok, "", 0, 1, ids, 64, &n) == DSC_OK && n == 0, "empty text gives ids");
    check(dsc_tokenize(tok, NULL, 0, 1, NULL, 0, &n) == DSC_OK && n == 0, "empty NULL text fails");
    group_end("added tokens and lookup");
}

/* Tokens of one character's bytes, split as the vocabulary has them. */
static void test_stream(const dsc_tokenizer *tok) {
    const char *text = "深度求索 😀👩‍💻 café 日本語 ✓";
    int32_t ids[128], one[4];
    size_t n = 0, k, n1;
    char out[64], tb[16];
    dsc_utf8_stream st = {{0}, 0};
    check(dsc_tokenize(tok, text, strlen(text), 1, ids, 128, &n) == DSC_OK, "encode failed");
    check_decode(tok, ids, n, text, strlen(text), "stream text");

    /* the three bytes of 深 (e6 b7 b1) as single-byte tokens */
    const char *ch = "深";
    for (int i = 0; i < 3; i++) {
        char name[3] = {0};
        unsigned b = (unsigned char)ch[i];
        /* ByteLevel: bytes >= 0xae except 0xad stand for themselves */
        name[0] = (char)(0xc0 | b >> 6);
        name[1] = (char)(0x80 | (b & 0x3f));
        one[i] = dsc_tokenizer_find(tok, name);
        check(one[i] >= 0, "no token for byte %02x", b);
        check(dsc_token_bytes(tok, one[i], tb, sizeof tb, &n1) == DSC_OK && n1 == 1 && (unsigned char)tb[0] == b,
              "token_bytes of byte %02x", b);
    }
    check(dsc_utf8_stream_push(&st, tok, one[0], out, sizeof out, &k) == DSC_OK && k == 0 && out[0] == '\0',
          "stream: first byte of a character emitted");
    check(dsc_utf8_stream_push(&st, tok, one[1], out, sizeof out, &k) == DSC_OK && k == 0, "stream: second byte emitted");
    check(dsc_utf8_stream_push(&st, tok, one[2], out, sizeof out, &k) == DSC_OK && k == 3 && strcmp(out, ch) == 0,
          "stream: character not completed");
    /* a broken sequence: e6 then 'a' gives U+FFFD then 'a' */
    int32_t a = dsc_tokenizer_find(tok, "a");
    check(dsc_utf8_stream_push(&st, tok, one[0], out, sizeof out, &k) == DSC_OK && k == 0, "stream: lead byte emitted");
    check(dsc_utf8_stream_push(&st, tok, a, out, sizeof out, &k) == DSC_OK && strcmp(out, "\xef\xbf\xbd" "a") == 0,
          "stream: broken sequence not replaced by U+FFFD");
    /* detokenize of a lone lead byte: U+FFFD */
    check(dsc_detokenize(tok, one, 2, out, sizeof out, &k) == DSC_OK && strcmp(out, "\xef\xbf\xbd") == 0,
          "detokenize: unfinished character not replaced");
    /* a short buffer leaves the stream untouched */
    st = (dsc_utf8_stream){{0}, 0};
    dsc_utf8_stream_push(&st, tok, one[0], out, sizeof out, &k);
    dsc_utf8_stream_push(&st, tok, one[1], out, sizeof out, &k);
    check(dsc_utf8_stream_push(&st, tok, one[2], out, 2, &k) == DSC_ERR_ARG && k == 3 && st.n_pending == 2,
          "stream: short buffer");
    check(dsc_utf8_stream_push(&st, tok, one[2], out, 4, &k) == DSC_OK && strcmp(out, ch) == 0,
          "stream: retry after a short buffer");
    group_end("streaming decode");
}

static void test_buffers(const dsc_tokenizer *tok) {
    const char *text = "Hello world, this is a test.";
    int32_t ids[64];
    size_t n = 0, need = 0;
    char out[64];
    check(dsc_tokenize(tok, text, strlen(text), 1, ids, 64, &n) == DSC_OK && n > 3, "encode failed");
    check(dsc_tokenize(tok, text, strlen(text), 1, ids, 2, &need) == DSC_ERR_ARG && need == n,
          "short id buffer: status or count");
    check(dsc_tokenize(tok, text, strlen(text), 1, NULL, 0, &need) == DSC_ERR_ARG && need == n, "size query");
    check(dsc_detokenize(tok, ids, n, out, 5, &need) == DSC_ERR_ARG && need == strlen(text) && strlen(out) < 5,
          "short text buffer");
    check(dsc_detokenize(tok, ids, n, NULL, 0, &need) == DSC_ERR_ARG && need == strlen(text), "decode size query");
    check(dsc_token_bytes(tok, ids[0], out, 1, &need) == DSC_ERR_ARG && need == 5, "short token buffer (Hello)");
    group_end("buffer sizes");
}

/* ----------------------------------------------------------- threads --- */

typedef struct {
    const dsc_tokenizer *tok;
    const sbuf *text;
    const int32_t *want;
    size_t n_want;
    int ok;
} thread_job;

static void *thread_main(void *p) {
    thread_job *j = p;
    j->ok = 1;
    for (int rep = 0; rep < 20; rep++) {
        int32_t *ids;
        size_t n = 0;
        dsc_status r = encode(j->tok, j->text->p, j->text->n, &ids, &n);
        if (r != DSC_OK || n != j->n_want || memcmp(ids, j->want, n * sizeof *ids) != 0) j->ok = 0;
        free(ids);
    }
    return NULL;
}

static void test_threads(const dsc_tokenizer *tok) {
    enum { N = 4 };
    sbuf text = {0};
    pthread_t th[N];
    thread_job job[N];
    int32_t *want;
    size_t n_want;
    sb_put(&text, "", 0);
    gen_code(&text, 20000);
    gen_chinese(&text, 40000);
    gen_emoji(&text, 50000);
    check(encode(tok, text.p, text.n, &want, &n_want) == DSC_OK, "encode failed");
    for (int i = 0; i < N; i++) {
        job[i] = (thread_job){tok, &text, want, n_want, 0};
        check(pthread_create(&th[i], NULL, thread_main, &job[i]) == 0, "pthread_create");
    }
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        check(job[i].ok, "thread %d: ids differ", i);
    }
    free(want);
    free(text.p);
    group_end("concurrent encoding");
}

/* ------------------------------------------------------- bad input --- */

static void expect_fail(dsc_status got, dsc_status want, const char *what) {
    const char *msg = dsc_last_error();
    check(got == want && msg && msg[0] != '\0' && !strchr(msg, '\n'), "%s: status %d (want %d), message '%s'", what,
          got, want, msg ? msg : "(null)");
}

static void test_bad_ids_text(const dsc_tokenizer *tok) {
    int32_t ids[16], bad[2] = {0, dsc_tokenizer_n_vocab(tok)};
    size_t n;
    char out[64];
    dsc_utf8_stream st = {{0}, 0};
    expect_fail(dsc_detokenize(tok, bad, 2, out, sizeof out, &n), DSC_ERR_ARG, "detokenize id n_vocab");
    check(strstr(dsc_last_error(), "id") != NULL, "id out of range: message does not name the id");
    bad[1] = -1;
    expect_fail(dsc_detokenize(tok, bad, 2, out, sizeof out, &n), DSC_ERR_ARG, "detokenize id -1");
    expect_fail(dsc_token_bytes(tok, 1 << 30, out, sizeof out, &n), DSC_ERR_ARG, "token_bytes huge id");
    expect_fail(dsc_utf8_stream_push(&st, tok, -5, out, sizeof out, &n), DSC_ERR_ARG, "stream id -5");
    static const struct {
        const char *s;
        size_t off;
    } bad_text[] = {{"ab\x80", 2},          {"a\xc0\x80", 1},     {"\xed\xa0\x80x", 0}, {"ok \xf4\x90\x80\x80", 3},
                    {"\xe6\xb7", 0},        {"abc\xff", 3},       {"\xf0\x9f\x98", 0},  {"深\xe5\xba", 3}};
    for (size_t i = 0; i < sizeof bad_text / sizeof *bad_text; i++) {
        char want[48];
        expect_fail(dsc_tokenize(tok, bad_text[i].s, strlen(bad_text[i].s), 1, ids, 16, &n), DSC_ERR_ARG,
                    "invalid UTF-8");
        snprintf(want, sizeof want, "offset %zu", bad_text[i].off);
        check(strstr(dsc_last_error(), want) != NULL, "invalid UTF-8 %zu: '%s' lacks '%s'", i, dsc_last_error(), want);
    }
    group_end("bad ids and text");
}

/* Writes data to a fresh temp file; returns its malloc'd path. */
static char *temp_file(const void *data, size_t n) {
    char *path = strdup("/tmp/dsc_tok_XXXXXX");
    int fd = path ? mkstemp(path) : -1;
    if (fd < 0 || write(fd, data, n) != (ssize_t)n) abort();
    close(fd);
    return path;
}

static dsc_status load_text(const char *json, dsc_tokenizer **out) {
    char *path = temp_file(json, strlen(json));
    dsc_status s = dsc_tokenizer_load(path, out);
    unlink(path);
    free(path);
    return s;
}

/* A tiny byte-level tokenizer: the 256 byte tokens (ids 0-255 in byte
 * order), then "ab", "bc", "abc", "Ġab"; `merges`, `pre` and `extra` are
 * spliced in. */
static char *tiny_json(const char *merges, const char *pre, const char *extra) {
    sbuf b = {0};
    char num[32];
    sb_str(&b, "{\"model\": {\"type\": \"BPE\", \"vocab\": {");
    for (int i = 0; i < 256; i++) {
        unsigned cp = (i >= 33 && i <= 126) || (i >= 161 && i <= 172) || i >= 174 ? (unsigned)i
                      : i <= 32                                                     ? 256u + (unsigned)i
                      : i <= 160                                                    ? 289u + (unsigned)(i - 127)
                                                                                    : 323u;
        sb_str(&b, "\"");
        if (cp == '"' || cp == '\\') sb_str(&b, "\\");
        sb_cp(&b, cp);
        snprintf(num, sizeof num, "\": %d, ", i);
        sb_str(&b, num);
    }
    sb_str(&b, "\"ab\": 256, \"bc\": 257, \"abc\": 258, \"Ġab\": 259}, \"merges\": ");
    sb_str(&b, merges);
    sb_str(&b, "}, \"pre_tokenizer\": ");
    sb_str(&b, pre);
    sb_str(&b, ", \"decoder\": {\"type\": \"ByteLevel\"}");
    sb_str(&b, extra);
    sb_str(&b, "}");
    return b.p;
}

#define PRE_BL "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true}"

static void expect_ids(const char *json, const char *text, const int32_t *want, size_t n_want, const char *what) {
    dsc_tokenizer *t = NULL;
    int32_t ids[32];
    size_t n = 0;
    dsc_status s = load_text(json, &t);
    check(s == DSC_OK, "%s: load: %s", what, dsc_last_error());
    if (s != DSC_OK) return;
    s = dsc_tokenize(t, text, strlen(text), 1, ids, 32, &n);
    int same = s == DSC_OK && n == n_want;
    for (size_t i = 0; same && i < n; i++) same = ids[i] == want[i];
    check(same, "%s: ids differ (%zu ids, first %d)", what, n, n ? ids[0] : -1);
    dsc_tokenizer_free(t);
}

/* BPE by hand: the lowest rank merges first, whatever its position. */
static void test_tiny(void) {
    char *j;
    /* "b c" outranks "a b": abc -> a|bc -> abc */
    j = tiny_json("[\"b c\", \"a b\", \"a bc\"]", PRE_BL, "");
    expect_ids(j, "abc", (const int32_t[]){258}, 1, "rank order");
    expect_ids(j, "ab", (const int32_t[]){256}, 1, "single merge");
    expect_ids(j, "cab", (const int32_t[]){'c', 256}, 2, "merge at the end");
    free(j);
    /* "a b" first: abc -> ab|c, and there is no "ab c" */
    j = tiny_json("[[\"a\", \"b\"], [\"b\", \"c\"], [\"a\", \"bc\"]]", PRE_BL, "");
    expect_ids(j, "abc", (const int32_t[]){256, 'c'}, 2, "pair merges, other order");
    free(j);
    /* add_prefix_space and the GPT-2 regex: " ab" is one word */
    j = tiny_json("[\"a b\", \"Ġ ab\"]",
                  "{\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"use_regex\": true}", "");
    expect_ids(j, "ab ab", (const int32_t[]){259, 259}, 2, "prefix space");
    free(j);
    /* ignore_merges: a word in the vocab is taken whole */
    j = tiny_json("[\"a b\"], \"ignore_merges\": true", PRE_BL, "");
    expect_ids(j, "abc", (const int32_t[]){258}, 1, "ignore_merges");
    free(j);
    /* added tokens: longest first, normalized: false before the rest */
    j = tiny_json("[]", PRE_BL,
                  ", \"added_tokens\": [{\"id\": 300, \"content\": \"<x>\", \"normalized\": false},"
                  " {\"id\": 301, \"content\": \"<x>>\", \"normalized\": false},"
                  " {\"id\": 302, \"content\": \"x><\", \"normalized\": true}]");
    expect_ids(j, "a<x>>b", (const int32_t[]){'a', 301, 'b'}, 3, "longest added token");
    expect_ids(j, "<x><x>", (const int32_t[]){300, 300}, 2, "added tokens back to back");
    expect_ids(j, "x><x>", (const int32_t[]){'x', '>', 300}, 3, "normalized: false matched first");
    free(j);
    /* a regex matching empty strings: Oniguruma's iteration steps past an
     * empty match where the last one ended, so this cuts every character */
    j = tiny_json("[\"a b\"]",
                  "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": "
                  "{\"Regex\": \"x*\"}, \"behavior\": \"Isolated\"}, " PRE_BL "]}",
                  "");
    expect_ids(j, "abxab", (const int32_t[]){'a', 'b', 'x', 'a', 'b'}, 5, "empty matches");
    free(j);
    group_end("tiny BPE by hand");
}

static void test_bad_files(const char *tok_path) {
    static char sentinel;
    dsc_tokenizer *t = (dsc_tokenizer *)&sentinel; /* must come back NULL */
    size_t n = 0;
    char *real = read_all(tok_path, &n), *path, *j;

    expect_fail(dsc_tokenizer_load("/nonexistent/dir/tokenizer.json", &t), DSC_ERR_IO, "missing file");
    check(t == NULL && strstr(dsc_last_error(), "/nonexistent/dir/tokenizer.json"), "missing file: path not named");

    /* the real file cut short at a few places */
    for (int cut = 1; cut <= 3 && real; cut++) {
        path = temp_file(real, n * (size_t)cut / 4);
        t = (dsc_tokenizer *)&sentinel;
        expect_fail(dsc_tokenizer_load(path, &t), DSC_ERR_FORMAT, "truncated tokenizer.json");
        check(t == NULL, "truncated: *out not NULL");
        unlink(path);
        free(path);
    }
    /* one byte flipped in the middle: a quote removed */
    if (real) {
        char *mid = strstr(real + n / 2, "\"");
        if (mid) *mid = ' ';
        path = temp_file(real, n);
        expect_fail(dsc_tokenizer_load(path, &t), DSC_ERR_FORMAT, "corrupt tokenizer.json");
        unlink(path);
        free(path);
    }
    free(real);

    static const struct {
        const char *json;
        dsc_status want;
        const char *what;
    } bad[] = {
        {"", DSC_ERR_FORMAT, "empty file"},
        {"[1, 2]", DSC_ERR_FORMAT, "array root"},
        {"{\"model\": 3}", DSC_ERR_FORMAT, "model not an object"},
        {"{\"model\": {\"type\": \"Unigram\", \"vocab\": {}}}", DSC_ERR_CONFIG, "Unigram"},
        {"{\"model\": {\"vocab\": {\"a\": -1}, \"merges\": []}, \"pre_tokenizer\": " PRE_BL
         ", \"decoder\": {\"type\": \"ByteLevel\"}}",
         DSC_ERR_FORMAT, "negative id"},
        {"{\"model\": {\"vocab\": {\"a\": 1e12}, \"merges\": []}, \"pre_tokenizer\": " PRE_BL
         ", \"decoder\": {\"type\": \"ByteLevel\"}}",
         DSC_ERR_FORMAT, "huge id"},
        {"{\"model\": {\"vocab\": {\"a\": 0.5}, \"merges\": []}, \"pre_tokenizer\": " PRE_BL
         ", \"decoder\": {\"type\": \"ByteLevel\"}}",
         DSC_ERR_FORMAT, "fractional id"},
        {"{\"model\": {\"vocab\": {\"a\": 0, \"b\": 0}, \"merges\": []}, \"pre_tokenizer\": " PRE_BL
         ", \"decoder\": {\"type\": \"ByteLevel\"}}",
         DSC_ERR_FORMAT, "duplicate id"},
        {"{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": [\"a b\"]}, \"pre_tokenizer\": " PRE_BL
         ", \"decoder\": {\"type\": \"ByteLevel\"}}",
         DSC_ERR_FORMAT, "merge of an unknown token"},
        {"{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": [\"a\"]}, \"pre_tokenizer\": " PRE_BL
         ", \"decoder\": {\"type\": \"ByteLevel\"}}",
         DSC_ERR_FORMAT, "merge without a space"},
        {"{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": []}, \"normalizer\": {\"type\": \"NFC\"}, "
         "\"pre_tokenizer\": " PRE_BL ", \"decoder\": {\"type\": \"ByteLevel\"}}",
         DSC_ERR_CONFIG, "NFC normalizer"},
        {"{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": {\"type\": \"Whitespace\"}, "
         "\"decoder\": {\"type\": \"ByteLevel\"}}",
         DSC_ERR_CONFIG, "Whitespace pre-tokenizer"},
        {"{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": {\"type\": \"Sequence\", "
         "\"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, \"behavior\": \"Isolated\"}, "
         PRE_BL "]}, \"decoder\": {\"type\": \"ByteLevel\"}}",
         DSC_ERR_CONFIG, "regex that does not compile"},
        {"{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": {\"type\": \"Sequence\", "
         "\"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"a\"}, \"behavior\": \"Sideways\"}, "
         PRE_BL "]}, \"decoder\": {\"type\": \"ByteLevel\"}}",
         DSC_ERR_CONFIG, "unknown behavior"},
        {"{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": {\"type\": \"Sequence\", "
         "\"pretokenizers\": [" PRE_BL ", " PRE_BL "]}, \"decoder\": {\"type\": \"ByteLevel\"}}",
         DSC_ERR_CONFIG, "step after ByteLevel"},
        {"{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": " PRE_BL "}", DSC_ERR_CONFIG,
         "no decoder"},
        {"{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": [], \"dropout\": 0.1}, \"pre_tokenizer\": " PRE_BL
         ", \"decoder\": {\"type\": \"ByteLevel\"}}",
         DSC_ERR_CONFIG, "dropout"},
        {"{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": " PRE_BL
         ", \"decoder\": {\"type\": \"ByteLevel\"}, \"added_tokens\": [{\"id\": 1, \"content\": \"x\", \"lstrip\": "
         "true}]}",
         DSC_ERR_CONFIG, "lstrip"},
        {"{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": " PRE_BL
         ", \"decoder\": {\"type\": \"ByteLevel\"}, \"added_tokens\": [{\"id\": 1}]}",
         DSC_ERR_FORMAT, "added token without content"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        t = (dsc_tokenizer *)&sentinel;
        expect_fail(load_text(bad[i].json, &t), bad[i].want, bad[i].what);
        check(t == NULL, "%s: *out not NULL", bad[i].what);
    }
    j = tiny_json("[\"a b\"]", PRE_BL, "");
    check(load_text(j, &t) == DSC_OK, "tiny tokenizer loads: %s", dsc_last_error());
    dsc_tokenizer_free(t);
    free(j);
    group_end("bad tokenizer files");
}

int main(int argc, char **argv) {
    dsc_tokenizer *tok = NULL;
    if (argc != 3) {
        fprintf(stderr, "usage: test_tokenizer TOKENIZER_JSON CASES_JSONL\n");
        return 2;
    }
    if (dsc_tokenizer_load(argv[1], &tok) != DSC_OK) {
        printf("load %s: %s\n0 passed, 1 failed\n", argv[1], dsc_last_error());
        return 1;
    }
    test_golden(tok, argv[2]);
    test_reference_extras(tok);
    test_generated(tok);
    test_special(tok);
    test_stream(tok);
    test_buffers(tok);
    test_threads(tok);
    test_bad_ids_text(tok);
    test_tiny();
    test_bad_files(argv[1]);
    dsc_tokenizer_free(tok);
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail != 0;
}
