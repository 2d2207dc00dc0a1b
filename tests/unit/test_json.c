/*
 * test_json.c — JSON mode (src/runtime/json_mode.c) against an independent
 * recursive-descent validator of the same language: one JSON object
 * (RFC 8259), whitespace before it allowed, nothing after it, at most
 * DSC_JSON_DEPTH containers open, whitespace runs of none, one space, or a
 * newline and at most DSC_JSON_MAX_INDENT spaces or tabs, strings in valid UTF-8 (RFC 3629: no overlong forms, no
 * surrogates) without control characters.
 *
 *   - documents written by a random generator are complete, and every
 *     proper prefix is accepted and incomplete;
 *   - random byte strings from a JSON-heavy alphabet, and one-byte
 *     mutations of valid documents: the recognizer calls complete exactly
 *     those the validator accepts; a refused feed leaves the state as it was;
 *   - the mask over the tiny tokenizer's vocabulary (one byte a token) and
 *     over DeepSeek-V3's (129280 ids): the allowed tokens after a given
 *     text, added tokens never, the end only after a complete object, and
 *     generation from random logits through the mask never reaches a state
 *     where nothing is allowed and ends in a document the validator accepts;
 *   - tool calls (dsc_tool_*): bad names and a tokenizer without the
 *     markers refused; with no names the markers never come; generation
 *     from random logits in each mode (auto, required, one name forced, one
 *     call or several) never dead-ends, the mask equals each token tried
 *     alone, and the calls written parse, by a parser of this file, into
 *     names offered and arguments the validator accepts (and, for a
 *     function given a JSON Schema, arguments that follow it).
 *
 * usage: test_json DEEPSEEK_TOKENIZER_JSON TINY_TOKENIZER_JSON
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dsc.h"
#include "json_validate.h"
#include "text_buf.h"

#include "../check.h"

/* ------------------------------------------------------------------------ */
/* Documents                                                                 */

static void gen_ws(buf *b) {
    static const char *const w[] = {"", "", "", " ", "\n", "\n  ", "\n\t\t", "\n                    "};
    puts_(b, w[rnd() % 8]); /* the last: DSC_JSON_MAX_INDENT spaces */
}

static void gen_string(buf *b) {
    static const char *const parts[] = {"a", "key", " ", "\\n", "\\\"", "\\\\", "\\u00e9", "\\uD83D", "\xc3\xa9",
                                        "\xe2\x82\xac", "\xf0\x9f\x98\x80", "/", "\\/", "0", "{", "]"};
    puts_(b, "\"");
    for (int k = (int)(rnd() % 5); k > 0; k--) puts_(b, parts[rnd() % 16]);
    puts_(b, "\"");
}

static void gen_value(buf *b, int depth);

static void gen_container(buf *b, int object, int depth) {
    puts_(b, object ? "{" : "[");
    gen_ws(b);
    for (int k = 0, n = depth > 4 ? 0 : (int)(rnd() % 4); k < n; k++) {
        if (k) puts_(b, ","), gen_ws(b);
        if (object) gen_string(b), gen_ws(b), puts_(b, ":"), gen_ws(b);
        gen_value(b, depth + 1);
        gen_ws(b);
    }
    puts_(b, object ? "}" : "]");
}

static void gen_value(buf *b, int depth) {
    static const char *const nums[] = {"0", "-0", "12", "-7.25", "1e9", "3E-2", "0.5e+10", "-120.000"};
    switch (rnd() % 7) {
    case 0: gen_container(b, 1, depth); break;
    case 1: gen_container(b, 0, depth); break;
    case 2: gen_string(b); break;
    case 3: puts_(b, nums[rnd() % 8]); break;
    case 4: puts_(b, (const char *[]){"true", "false", "null"}[rnd() % 3]); break;
    default: puts_(b, nums[rnd() % 8]); break;
    }
}

/* Feeds s byte by byte: -1 if refused, else 1 complete / 0 not. A refused
 * byte must leave the state as it was. */
static int run(const char *s, size_t n, int *state_kept) {
    dsc_json_state st;
    dsc_json_start(&st);
    for (size_t i = 0; i < n; i++) {
        dsc_json_state before = st;
        if (dsc_json_feed(&st, s + i, 1)) {
            *state_kept &= !memcmp(&before, &st, sizeof st);
            return -1;
        }
    }
    return dsc_json_complete(&st);
}

static void test_recognizer(void) {
    int kept = 1, docs = 0, prefixes_ok = 1, agree = 0, agree_all = 1, n_valid = 0;
    buf b = {0};
    for (int it = 0; it < 3000; it++) {
        b.n = 0;
        gen_ws(&b);
        gen_container(&b, 1, 0);
        if (!validate(b.b, b.n)) {
            CHECK(0, "the validator refuses a generated document: %s", b.b);
            continue;
        }
        docs++;
        CHECK(run(b.b, b.n, &kept) == 1, "a generated document is not complete: %s", b.b);
        for (size_t k = 0; k < b.n; k++) prefixes_ok &= run(b.b, k, &kept) == 0;
        /* one byte changed: both agree */
        for (int m = 0; m < 8; m++) {
            char *c = malloc(b.n + 1);
            memcpy(c, b.b, b.n + 1);
            static const char sub[] = "{}[]\",: \t\nab01-.eE\\u\x80\xc3\xff";
            c[rnd() % b.n] = sub[rnd() % (sizeof sub - 1)];
            const int r = run(c, b.n, &kept), v = validate(c, b.n);
            agree_all &= (r == 1) == v, agree++;
            if ((r == 1) != v) printf("disagree (recognizer %d, validator %d): %s\n", r, v, c);
            free(c);
        }
    }
    CHECK(prefixes_ok, "every proper prefix of a document accepted and incomplete");
    /* random strings */
    static const char alpha[] = "{{}}[]\"\"\"::,,  \n0123-.eEtrufalsn\\u/a\xc3\xa9\xe2\x82\xac\xed\xa0\xf4\x90\x01";
    for (int it = 0; it < 200000; it++) {
        char s[24];
        const size_t n = 1 + rnd() % 20;
        s[0] = '{';
        for (size_t i = 1; i < n; i++) s[i] = alpha[rnd() % (sizeof alpha - 1)];
        const int r = run(s, n, &kept), v = validate(s, n);
        n_valid += v;
        agree_all &= (r == 1) == v, agree++;
        if ((r == 1) != v) printf("disagree (recognizer %d, validator %d): %.*s\n", r, v, (int)n, s);
    }
    CHECK(agree_all, "recognizer and validator agree on %d strings", agree);
    CHECK(kept, "a refused byte leaves the state unchanged");
    CHECK(n_valid > 100, "random strings include valid documents (%d)", n_valid);
    /* the bounds */
    b.n = 0;
    for (int d = 0; d < DSC_JSON_DEPTH; d++) puts_(&b, d ? "[" : "{\"a\":");
    for (int d = DSC_JSON_DEPTH - 1; d > 0; d--) puts_(&b, "]");
    puts_(&b, "}");
    CHECK(run(b.b, b.n, &kept) == 1 && validate(b.b, b.n), "%d containers deep", DSC_JSON_DEPTH);
    dsc_json_state st;
    dsc_json_start(&st);
    CHECK(dsc_json_feed(&st, b.b, (size_t)DSC_JSON_DEPTH + 4) == 0 && dsc_json_feed(&st, "[", 1) == -1,
          "one container more refused");
    char ws[DSC_JSON_MAX_INDENT + 2];
    ws[0] = '\n';
    memset(ws + 1, ' ', sizeof ws - 1);
    dsc_json_start(&st);
    CHECK(dsc_json_feed(&st, "{", 1) == 0 && dsc_json_feed(&st, ws, DSC_JSON_MAX_INDENT + 1) == 0 &&
          dsc_json_feed(&st, " ", 1) == -1 && dsc_json_feed(&st, "\t", 1) == -1 && dsc_json_feed(&st, "}", 1) == 0 &&
          dsc_json_complete(&st), "a newline and %d spaces in a run, not one more", DSC_JSON_MAX_INDENT);
    static const char *const bad_ws[] = {"{  }", "{\n\n}", "{\t}", "{\r\n}", "{ \n}", "{\"a\":1 \n}", "{\"a\" :\n\n1}"};
    int refused = 1;
    for (size_t i = 0; i < sizeof bad_ws / sizeof bad_ws[0]; i++) {
        int kept_ws = 1;
        refused &= run(bad_ws[i], strlen(bad_ws[i]), &kept_ws) == -1 && !validate(bad_ws[i], strlen(bad_ws[i])) && kept_ws;
    }
    CHECK(refused, "two spaces, two newlines, a tab or a CR first, a space then a newline: refused");
    dsc_json_start(&st);
    CHECK(dsc_json_feed(&st, "{\"a\": 12", 8) == 0 && !dsc_json_complete(&st) && dsc_json_feed(&st, "}", 1) == 0 &&
          dsc_json_complete(&st) && dsc_json_feed(&st, " ", 1) == -1,
          "a number ends at the closer; nothing after the object");
    printf("json recognizer: %d generated documents (and their prefixes), %d strings compared with the validator "
           "(%d valid)\n", docs, agree, n_valid);
    free(b.b);
}

/* ------------------------------------------------------------------------ */
/* The mask                                                                  */

static int allowed(const float *l, int32_t id) { return l[id] != -INFINITY; }

static void test_mask_tiny(const char *path) {
    dsc_tokenizer *tok;
    if (dsc_tokenizer_load(path, &tok)) {
        CHECK(0, "tiny tokenizer: %s", dsc_last_error());
        return;
    }
    const int32_t V = 512, eos = 1; /* the golden models' vocabulary; byte b is id b + 2 */
    dsc_json_mask *m;
    CHECK(dsc_json_mask_new(tok, V, eos, &m) == DSC_OK, "mask: %s", dsc_last_error());
    float *l = malloc(sizeof(float) * V);
    dsc_json_state st;
    dsc_json_start(&st);
    dsc_json_feed(&st, "{", 1);
    for (int32_t i = 0; i < V; i++) l[i] = 0;
    dsc_json_mask_apply(m, &st, l);
    int ok = 1;
    for (int c = 0; c < 256; c++) ok &= allowed(l, c + 2) == (c == '"' || c == '}' || c == ' ' || c == '\n');
    CHECK(ok && !allowed(l, eos) && !allowed(l, 0), "after '{': a key's quote, '}', a space or a newline; not the end, not BOS");
    dsc_json_feed(&st, "\"k\":[1", 6);
    for (int32_t i = 0; i < V; i++) l[i] = 0;
    dsc_json_mask_apply(m, &st, l);
    ok = 1;
    for (int c = 0; c < 256; c++) ok &= allowed(l, c + 2) == (strchr("0123456789.eE,] \n", c) && c);
    CHECK(ok, "in a number in an array: digits, '.', 'e', ',', ']', a space or a newline");
    l[']' + 2] = -INFINITY;
    dsc_json_mask_apply(m, &st, l);
    CHECK(!allowed(l, ']' + 2), "a logit already -inf stays so");
    dsc_json_feed(&st, "]}", 2);
    for (int32_t i = 0; i < V; i++) l[i] = 0;
    dsc_json_mask_apply(m, &st, l);
    int n_ok = 0;
    for (int32_t i = 0; i < V; i++) n_ok += allowed(l, i);
    CHECK(dsc_json_complete(&st) && n_ok == 1 && allowed(l, eos), "complete: the end alone");
    CHECK(dsc_json_mask_accept(m, &st, eos) == 0, "the end accepted when complete");
    dsc_json_start(&st);
    CHECK(dsc_json_mask_accept(m, &st, eos) == -1 && dsc_json_mask_accept(m, &st, 'x' + 2) == -1 &&
          dsc_json_mask_accept(m, &st, '{' + 2) == 0 && dsc_json_mask_accept(m, &st, V) == -1,
          "accept: the end before the object, a letter before it, ids out of range refused");
    free(l);
    dsc_json_mask_free(m);
    dsc_tokenizer_free(tok);
}

static void test_mask_v3(const char *path) {
    dsc_tokenizer *tok;
    if (dsc_tokenizer_load(path, &tok)) {
        CHECK(0, "deepseek-v3 tokenizer: %s", dsc_last_error());
        return;
    }
    const int32_t V = 129280, eos = dsc_tokenizer_find(tok, "<｜end▁of▁sentence｜>"),
                  user = dsc_tokenizer_find(tok, "<｜User｜>");
    dsc_json_mask *m;
    CHECK(eos >= 0 && user >= 0 && dsc_tokenizer_find(tok, "{\"") >= 0, "the markers and '{\"' are tokens");
    CHECK(dsc_token_is_added(tok, user) && !dsc_token_is_added(tok, dsc_tokenizer_find(tok, "{\"")),
          "<｜User｜> is an added token, '{\"' is not");
    CHECK(dsc_json_mask_new(tok, V, eos, &m) == DSC_OK, "mask: %s", dsc_last_error());
    float *l = malloc(sizeof(float) * V);
    /* generation from random logits through the mask; every 25th step the
     * mask against each token tried on its own (dsc_json_mask_accept) */
    int dead = 0, valid = 0, complete = 0, runs = 20, brute = 0, brute_same = 1;
    float *z = malloc(sizeof(float) * V);
    double ms = 0;
    long applies = 0;
    buf out = {0};
    for (int r = 0; r < runs; r++) {
        dsc_json_state st;
        dsc_json_start(&st);
        out.n = 0;
        for (int step = 0; step < 300 && !dsc_json_complete(&st); step++) {
            if (step % 25 == 0) {
                for (int32_t i = 0; i < V; i++) z[i] = 0;
                dsc_json_mask_apply(m, &st, z);
                for (int32_t i = 0; i < V; i++) {
                    dsc_json_state t = st;
                    brute_same &= allowed(z, i) == (dsc_json_mask_accept(m, &t, i) == 0);
                }
                brute++;
            }
            for (int32_t i = 0; i < V; i++) l[i] = (float)(rnd() % 1000) / 100.0f;
            /* favour the closers now and then, so that objects end */
            if (r % 2 == 0) l[dsc_tokenizer_find(tok, "}")] += 9, l[dsc_tokenizer_find(tok, "\"")] += 9;
            l[user] += 100; /* never allowed, however likely */
            struct timespec t0, t1;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            dsc_json_mask_apply(m, &st, l);
            clock_gettime(CLOCK_MONOTONIC, &t1);
            ms += (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6, applies++;
            int32_t best = -1;
            for (int32_t i = 0; i < V; i++)
                if (allowed(l, i) && (best < 0 || l[i] > l[best])) best = i;
            if (best < 0) {
                dead++;
                break;
            }
            char piece[256];
            size_t pn = 0;
            if (best != eos) dsc_token_bytes(tok, best, piece, sizeof piece, &pn), put(&out, piece, pn);
            if (dsc_json_mask_accept(m, &st, best)) {
                dead++;
                break;
            }
        }
        if (dsc_json_complete(&st)) complete++, valid += validate(out.b, out.n);
    }
    CHECK(dead == 0, "never a state where no token is allowed (%d)", dead);
    CHECK(brute_same && brute > 50, "the mask = each token tried on its own, in %d states", brute);
    free(z);
    CHECK(complete >= runs / 2 && valid == complete, "%d of %d generations complete, %d of them valid", complete, runs,
          valid);
    printf("json mask, DeepSeek-V3 vocabulary (%d ids): %.2f ms an application (mean of %ld); %d of %d random "
           "generations closed their object within 300 tokens, all valid\n", V, ms / (double)applies, applies, complete,
           runs);
    free(out.b);
    free(l);
    dsc_json_mask_free(m);
    dsc_tokenizer_free(tok);
}

/* ------------------------------------------------------------------------ */
/* Tool calls                                                                */

static const char *const tool_marker[5] = {"<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>", "<｜tool▁call▁begin｜>",
                                           "<｜tool▁call▁end｜>", "<｜tool▁sep｜>"};

/* The calls' part of an output, its markers written as bytes 1 to 5 (in
 * tool_marker's order; bytes a call's text never holds), checked on its
 * own: 1, then calls 3 "function" 5 NAME "\n```json\n" ARGS "\n```" 4 each
 * ("\n" between two allowed), then 2; NAME one of names, ARGS a document
 * validate() accepts. V3.1 (v31): calls 3 NAME 5 ARGS 4, nothing between.
 * Returns the calls, -1 if the part is not so. */
/* With a schema on get_weather's arguments: {"city": a string of at most 5
 * characters, "unit": "c" or "f"}, city required, no other key; counts the
 * arguments that break it. */
static int weather_schema, weather_bad, weather_seen;

static void check_weather(const char *args, size_t n) {
    cJSON *o = cJSON_ParseWithLength(args, n);
    const cJSON *city = cJSON_GetObjectItemCaseSensitive(o, "city"), *unit = cJSON_GetObjectItemCaseSensitive(o, "unit");
    int keys = 0, chars = 0;
    for (const cJSON *k = o ? o->child : NULL; k; k = k->next) keys++;
    for (const char *p = cJSON_IsString(city) ? city->valuestring : ""; *p; p++) chars += ((unsigned char)*p & 0xc0) != 0x80;
    weather_seen++;
    weather_bad += !cJSON_IsObject(o) || !cJSON_IsString(city) || chars > 5 || keys != 1 + (unit != NULL) ||
                   (unit && !(cJSON_IsString(unit) && (!strcmp(unit->valuestring, "c") || !strcmp(unit->valuestring, "f"))));
    cJSON_Delete(o);
}

static int parse_calls(const char *s, size_t n, const char *const *names, int n_names, int v31) {
    size_t i = 0;
    int calls = 0;
    const char *name_end = v31 ? "\5" : "\n```json\n", *args_end = v31 ? "\4" : "\n```\4";
    const size_t ne = strlen(name_end), ae = strlen(args_end);
    if (n < 1 || s[i++] != 1) return -1;
    for (;;) {
        if (calls && i < n && s[i] == '\n' && !v31) i++;
        if (i >= n || s[i] != 3) return -1;
        i++;
        if (!v31 && (n - i < 9 || memcmp(s + i, "function\5", 9))) return -1;
        i += v31 ? 0 : 9;
        const char *nl = memchr(s + i, name_end[0], n - i);
        if (!nl) return -1;
        int known = 0;
        for (int k = 0; k < n_names; k++)
            known |= strlen(names[k]) == (size_t)(nl - (s + i)) && !memcmp(names[k], s + i, (size_t)(nl - (s + i)));
        i = (size_t)(nl - s);
        if (!known || n - i < ne || memcmp(s + i, name_end, ne)) return -1;
        i += ne;
        size_t j = i;
        while (j + ae <= n && memcmp(s + j, args_end, ae)) j++;
        if (j + ae > n || !validate(s + i, j - i)) return -1;
        if (weather_schema && !memcmp(nl - 11, "get_weather", 11)) check_weather(s + i, j - i);
        i = j + ae, calls++;
        if (i < n && s[i] == 2) return i + 1 == n ? calls : -1;
    }
}

static void test_tools(const char *v3, const char *tiny) {
    dsc_tokenizer *tok, *small;
    if (dsc_tokenizer_load(v3, &tok) || dsc_tokenizer_load(tiny, &small)) {
        CHECK(0, "tokenizers: %s", dsc_last_error());
        return;
    }
    const char *names[] = {"get", "get_time", "get_weather", "search.web", "a-b"};
    const int n_names = 5;
    dsc_tool_grammar *g = NULL;
    const char *bad[] = {"get", "has space"}, *twice[] = {"f", "g", "f"};
    CHECK(dsc_tool_grammar_new(small, names, n_names, 0, 1, &g) == DSC_ERR_ARG && !g &&
          strstr(dsc_last_error(), "tool▁calls▁begin"), "a tokenizer without the markers: an error naming one");
    CHECK(dsc_tool_grammar_new(tok, bad, 2, 0, 1, &g) == DSC_ERR_ARG && strstr(dsc_last_error(), "has space"),
          "a name with a space refused");
    CHECK(dsc_tool_grammar_new(tok, twice, 3, 0, 1, &g) == DSC_ERR_ARG && strstr(dsc_last_error(), "'f'"),
          "a name twice refused");
    CHECK(dsc_tool_grammar_new(tok, NULL, 0, 1, 1, &g) == DSC_ERR_ARG, "required without names refused");
    const int32_t V = 129280, eos = dsc_tokenizer_find(tok, "<｜end▁of▁sentence｜>");
    int32_t mk[5];
    for (int k = 0; k < 5; k++) mk[k] = dsc_tokenizer_find(tok, tool_marker[k]);
    dsc_json_mask *m;
    CHECK(dsc_json_mask_new(tok, V, eos, &m) == DSC_OK, "mask: %s", dsc_last_error());
    float *l = malloc(sizeof(float) * V), *z = malloc(sizeof(float) * V);
    buf calls_part = {0};
    /* text only (tool_choice none): the markers never, the rest as without tools */
    CHECK(dsc_tool_grammar_new(tok, NULL, 0, 0, 1, &g) == DSC_OK, "a grammar of no names: %s", dsc_last_error());
    dsc_tool_state st;
    dsc_tool_start(g, &st);
    for (int32_t i = 0; i < V; i++) l[i] = 0;
    dsc_tool_mask_apply(g, m, &st, l);
    int n_ok = 0, markers_ok = 1;
    for (int32_t i = 0; i < V; i++) n_ok += allowed(l, i);
    for (int k = 0; k < 5; k++) markers_ok &= !allowed(l, mk[k]);
    CHECK(markers_ok && n_ok == V - 9 && allowed(l, eos), "no names: all but the 9 tool markers (%d of %d)", n_ok, V);
    dsc_tool_grammar_free(g);
    /* generation from random logits through the mask, in each mode: auto
     * (the calls begun by a boosted marker in some runs), required, one name
     * forced, calls in parallel or not; every 20th step the mask against
     * each token tried on its own */
    int dead = 0, brute = 0, brute_same = 1, runs = 0, with_calls = 0, valid = 0, text_markers = 0, shape = 0;
    double ms = 0;
    long applies = 0;
    static const char weather[] = "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\",\"maxLength\":5},"
                                  "\"unit\":{\"enum\":[\"c\",\"f\"]}},\"required\":[\"city\"],\"additionalProperties\":false}";
    dsc_json_schema *ws;
    CHECK(dsc_json_schema_new(weather, strlen(weather), &ws) == DSC_OK, "weather schema: %s", dsc_last_error());
    int runs_v31 = 0, calls_v31 = 0;
    for (int fmt = 0; fmt < 2; fmt++) /* DeepSeek-V3's call format, then V3.1's */
    for (int mode = 0; mode < 5; mode++)
        for (int r = 0; r < 5; r++, runs++) {
            const int required = mode >= 1, parallel = mode != 2, forced = mode >= 3;
            const char *const *nm = forced ? names + 2 : names;
            const int nn = forced ? 1 : n_names;
            CHECK(dsc_tool_grammar_new_format(tok, nm, nn, required, parallel, fmt, &g) == DSC_OK &&
                  dsc_tool_grammar_format(g) == fmt, "grammar: %s", dsc_last_error());
            runs_v31 += fmt;
            weather_schema = mode == 4;
            if (weather_schema)
                CHECK(dsc_tool_grammar_set_schema(g, "get_weather", ws) == DSC_OK &&
                      dsc_tool_grammar_set_schema(g, "get_time", ws) == DSC_ERR_ARG, "set_schema: get_weather only");
            dsc_tool_start(g, &st);
            calls_part.n = 0;
            int in_calls = 0, done = 0;
            for (int step = 0; step < 400 && !done; step++) {
                if (step % 20 == 0) {
                    for (int32_t i = 0; i < V; i++) z[i] = 0;
                    dsc_tool_mask_apply(g, m, &st, z);
                    for (int32_t i = 0; i < V; i++) {
                        dsc_tool_state t = st;
                        brute_same &= allowed(z, i) == (dsc_tool_mask_accept(g, m, &t, i) == 0);
                    }
                    brute++;
                }
                for (int32_t i = 0; i < V; i++) l[i] = (float)(rnd() % 1000) / 100.0f;
                if (step > 3 + r) l[mk[0]] += r % 2 ? 50 : 0;      /* begin the calls (auto, some runs) */
                if (r < 3) l[dsc_tokenizer_find(tok, "}")] += 9, l[dsc_tokenizer_find(tok, "\"")] += 9;
                l[mk[1]] += 9 + r, l[mk[2]] += 3;                   /* end them, now and then another */
                l[eos] += step > 30 && !in_calls ? 12 : 0;
                struct timespec t0, t1;
                clock_gettime(CLOCK_MONOTONIC, &t0);
                dsc_tool_mask_apply(g, m, &st, l);
                clock_gettime(CLOCK_MONOTONIC, &t1);
                ms += (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6, applies++;
                int32_t best = -1;
                for (int32_t i = 0; i < V; i++)
                    if (allowed(l, i) && (best < 0 || l[i] > l[best])) best = i;
                if (best < 0 || dsc_tool_mask_accept(g, m, &st, best)) {
                    dead++;
                    break;
                }
                int k = 0;
                while (k < 5 && mk[k] != best) k++;
                if (!in_calls && k < 5 && k != 0) text_markers++;
                if (k == 0) in_calls = 1;
                if (in_calls && k < 5) {
                    const char b = (char)(k + 1);
                    put(&calls_part, &b, 1);
                } else if (in_calls) {
                    char piece[256];
                    size_t pn = 0;
                    dsc_token_bytes(tok, best, piece, sizeof piece, &pn);
                    put(&calls_part, piece, pn);
                }
                shape += dsc_tool_where(&st) != (k == 1 ? DSC_TOOL_DONE : in_calls ? DSC_TOOL_CALLING : DSC_TOOL_TEXT);
                if (best == eos || dsc_tool_where(&st) == DSC_TOOL_DONE) done = 1;
            }
            if (in_calls && dsc_tool_where(&st) == DSC_TOOL_DONE) {
                with_calls++;
                const int c = parse_calls(calls_part.b, calls_part.n, nm, nn, fmt);
                valid += c >= 1 && (parallel || c == 1);
                calls_v31 += fmt && c >= 1;
            }
            if (required) shape += !in_calls && done; /* ended without calls */
            dsc_tool_grammar_free(g);
        }
    CHECK(dead == 0, "never a state where no token is allowed (%d)", dead);
    CHECK(brute_same && brute > 50, "the mask = each token tried on its own, in %d states", brute);
    CHECK(text_markers == 0 && shape == 0, "no call marker in text; where() follows the markers (%d, %d)", text_markers,
          shape);
    CHECK(with_calls >= runs / 2 && valid == with_calls, "%d of %d generations made calls, %d of them in the format",
          with_calls, runs, valid);
    CHECK(calls_v31 >= runs_v31 / 2, "V3.1's format: %d of %d generations made calls", calls_v31, runs_v31);
    CHECK(weather_seen >= 3 && weather_bad == 0, "arguments held to get_weather's schema: %d calls, %d not", weather_seen,
          weather_bad);
    dsc_json_schema_free(ws);
    printf("tool mask, DeepSeek-V3 vocabulary: %.2f ms an application (mean of %ld); %d of %d random generations "
           "closed their calls within 400 tokens, all parsed\n", ms / (double)applies, applies, with_calls, runs);
    free(calls_part.b);
    free(l);
    free(z);
    dsc_json_mask_free(m);
    dsc_tokenizer_free(tok);
    dsc_tokenizer_free(small);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: test_json DEEPSEEK_TOKENIZER_JSON TINY_TOKENIZER_JSON\n");
        return 2;
    }
    test_recognizer();
    test_mask_tiny(argv[2]);
    test_mask_v3(argv[1]);
    test_tools(argv[1], argv[2]);
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
