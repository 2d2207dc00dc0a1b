/*
 * json_mode.c — JSON mode (OpenAI's response_format {"type": "json_object"},
 * the DeepSeek API's "JSON Output"): the output is held to one JSON object
 * (RFC 8259) by masking, before each sample, the tokens whose bytes cannot
 * continue one.
 *
 * The recognizer is a pushdown automaton over bytes: a mode, the kinds of
 * the open containers (a bit each, DSC_JSON_DEPTH at most), and small
 * counters (the hex digits of a \u escape, the continuation bytes of a UTF-8
 * character, the letters of a literal, the whitespace in a run). A number
 * ends at the first byte that cannot continue it, which is then taken in
 * the mode after the value. Strings take any UTF-8 but control characters,
 * as the RFC says; whitespace between tokens is none, one space, or a
 * newline and at most DSC_JSON_MAX_INDENT spaces or tabs (as llama.cpp's
 * JSON grammar has it), so a model cannot fill its answer with it. Once
 * the object is closed, only the end of sequence is allowed.
 *
 * The mask tries each token's bytes on a copy of the state; tokens whose
 * first byte the state refuses (found once per call by trying the 256
 * bytes) are refused without that, and in a string the tokens of whole
 * UTF-8 characters without a quote, a backslash or a control character
 * (most of a vocabulary) are allowed without it. Added tokens (chat markers and the like)
 * are never part of the JSON.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "dsc.h"
#include "json_mask.h"

enum {
    M_STR = J_STR, /* in a string (the scalar modes J_* of json_mask.h) */
    M_START = J_N, /* before the object: whitespace or '{'               */
    M_KEY_OR_END, /* after '{': a key or '}'                             */
    M_KEY,       /* after ',' in an object: a key                       */
    M_COLON,     /* after a key                                          */
    M_VALUE,     /* after ':' or ',' in an array                         */
    M_VAL_OR_END, /* after '[': a value or ']'                           */
    M_AFTER,     /* after a value: ',' or the container's closer         */
    M_DONE,      /* the object is closed                                 */
};

static int is_ws(unsigned c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
static int is_digit(unsigned c) { return j_digit(c); }

void dsc_json_start(dsc_json_state *st) {
    memset(st, 0, sizeof *st);
    st->mode = M_START;
}

int dsc_json_complete(const dsc_json_state *st) { return st->mode == M_DONE; }

/* A value ends: the mode after it, in the container now on top. */
static void value_done(dsc_json_state *st) { st->mode = st->depth ? M_AFTER : M_DONE; }

static int push(dsc_json_state *st, int object) {
    if (st->depth >= DSC_JSON_DEPTH) return -1;
    const uint64_t bit = (uint64_t)1 << st->depth;
    st->kinds = object ? st->kinds | bit : st->kinds & ~bit;
    st->depth++;
    st->mode = object ? M_KEY_OR_END : M_VAL_OR_END;
    return 0;
}

static int top_is_object(const dsc_json_state *st) { return (int)(st->kinds >> (st->depth - 1) & 1); }

/* A value begins with c (c not whitespace). */
static int value_start(dsc_json_state *st, unsigned c) {
    if (c == '{') return push(st, 1);
    if (c == '[') return push(st, 0);
    const int m = j_scalar_start(c, &st->lit, &st->n);
    if (m < 0) return -1;
    st->mode = (uint8_t)m, st->in_key = 0;
    return 0;
}

/* Whitespace where the grammar allows it, in a run j_ws takes. */
static int whitespace(dsc_json_state *st, unsigned c) { return j_ws(&st->ws, c); }

static int step(dsc_json_state *st, unsigned c) {
    switch (st->mode) {
    case M_START:
        if (is_ws(c)) return whitespace(st, c);
        st->ws = 0;
        return c == '{' ? push(st, 1) : -1;
    case M_KEY_OR_END:
    case M_KEY:
        if (is_ws(c)) return whitespace(st, c);
        st->ws = 0;
        if (c == '"') return st->mode = M_STR, st->in_key = 1, 0;
        if (c == '}' && st->mode == M_KEY_OR_END) return st->depth--, value_done(st), 0;
        return -1;
    case M_COLON:
        if (is_ws(c)) return whitespace(st, c);
        st->ws = 0;
        return c == ':' ? (st->mode = M_VALUE, 0) : -1;
    case M_VAL_OR_END:
        if (c == ']') return st->ws = 0, st->depth--, value_done(st), 0;
        /* fall through */
    case M_VALUE:
        if (is_ws(c)) return whitespace(st, c);
        st->ws = 0;
        return value_start(st, c);
    case M_AFTER:
        if (is_ws(c)) return whitespace(st, c);
        st->ws = 0;
        if (c == ',') return st->mode = top_is_object(st) ? M_KEY : M_VALUE, 0;
        if (c == (top_is_object(st) ? '}' : ']')) return st->depth--, value_done(st), 0;
        return -1;
    case M_STR:
        if (c == '"') {
            if (st->in_key) st->mode = M_COLON;
            else value_done(st);
            return 0;
        }
        /* fall through */
    case J_ESC:
    case J_HEX:
    case J_UTF8:
        return j_string(&st->mode, &st->n, &st->lo, &st->hi, c);
    case J_LIT: {
        const int r = j_literal(st->lit, &st->n, c);
        if (r == 1) value_done(st);
        return r < 0 ? -1 : 0;
    }
    case J_NEG: case J_ZERO: case J_INT: case J_DOT: case J_FRAC: case J_EXP: case J_EXP_SIGN: case J_EXP_DIG: {
        const int r = j_number(&st->mode, 0, c);
        if (r != 1) return r;
        value_done(st); /* the number ends; c belongs to what follows (a number is never the top level) */
        return step(st, c);
    }
    default: /* M_DONE: nothing more */
        return -1;
    }
}

int dsc_json_feed(dsc_json_state *st, const char *bytes, size_t n) {
    dsc_json_state s = *st;
    for (size_t i = 0; i < n; i++)
        if (step(&s, (unsigned char)bytes[i])) return -1;
    *st = s;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The mask over a vocabulary                                                */


dsc_status dsc_json_mask_new(const dsc_tokenizer *tok, int32_t n_logits, int32_t eos, dsc_json_mask **out) {
    *out = NULL;
    if (!tok || n_logits < 1) return dsc_fail(DSC_ERR_ARG, "json mask: no tokenizer or no logits");
    dsc_json_mask *m = calloc(1, sizeof *m);
    if (!m) return dsc_fail(DSC_ERR_NOMEM, "json mask: out of memory");
    m->n_logits = n_logits, m->eos = eos;
    m->off = malloc(sizeof *m->off * (size_t)n_logits);
    m->len = malloc(sizeof *m->len * (size_t)n_logits);
    m->in_str = calloc((size_t)n_logits, 1);
    size_t cap = 1 << 16, used = 0;
    m->bytes = malloc(cap);
    if (!m->off || !m->len || !m->in_str || !m->bytes) {
        dsc_json_mask_free(m);
        return dsc_fail(DSC_ERR_NOMEM, "json mask: out of memory");
    }
    const int32_t nv = dsc_tokenizer_n_vocab(tok);
    char buf[1024];
    for (int32_t id = 0; id < n_logits; id++) {
        size_t n = 0;
        m->len[id] = -1;
        if (id >= nv || dsc_token_is_added(tok, id) || dsc_token_bytes(tok, id, buf, sizeof buf, &n) || n == 0) continue;
        if (used + n > cap) {
            char *g = realloc(m->bytes, cap * 2 + n);
            if (!g) {
                dsc_json_mask_free(m);
                return dsc_fail(DSC_ERR_NOMEM, "json mask: out of memory");
            }
            m->bytes = g, cap = cap * 2 + n;
        }
        memcpy(m->bytes + used, buf, n);
        m->off[id] = (int32_t)used, m->len[id] = (int32_t)n;
        used += n;
        dsc_json_state in = {.mode = M_STR};
        m->in_str[id] = dsc_json_feed(&in, buf, n) == 0 && in.mode == M_STR;
    }
    *out = m;
    return DSC_OK;
}

void dsc_json_mask_free(dsc_json_mask *m) {
    if (!m) return;
    free(m->off);
    free(m->len);
    free(m->in_str);
    free(m->bytes);
    free(m);
}

void dsc_json_mask_apply(const dsc_json_mask *m, const dsc_json_state *st, float *logits) {
    if (dsc_json_complete(st)) { /* only the end */
        for (int32_t id = 0; id < m->n_logits; id++)
            if (id != m->eos) logits[id] = -INFINITY;
        return;
    }
    uint8_t first[256];
    for (unsigned c = 0; c < 256; c++) {
        dsc_json_state s = *st;
        first[c] = step(&s, c) == 0;
    }
    const int in_string = st->mode == M_STR;
    for (int32_t id = 0; id < m->n_logits; id++) {
        if (logits[id] == -INFINITY || (in_string && m->in_str[id])) continue;
        const int32_t n = m->len[id];
        const unsigned char *b = (const unsigned char *)m->bytes + (n > 0 ? m->off[id] : 0);
        if (n < 0 || !first[b[0]]) {
            logits[id] = -INFINITY;
            continue;
        }
        dsc_json_state s = *st;
        if (dsc_json_feed(&s, m->bytes + m->off[id], (size_t)n)) logits[id] = -INFINITY;
    }
}

int dsc_json_mask_accept(const dsc_json_mask *m, dsc_json_state *st, int32_t id) {
    if (id < 0 || id >= m->n_logits) return -1;
    if (id == m->eos) return dsc_json_complete(st) ? 0 : -1;
    if (m->len[id] < 0) return -1;
    return dsc_json_feed(st, m->bytes + m->off[id], (size_t)m->len[id]);
}

/* ------------------------------------------------------------------------ */
/* Tool calls                                                                */

/* The phases of an output that may call functions (dsc_tool_state.phase). */
enum {
    T_TEXT,  /* text; <｜tool▁calls▁begin｜> opens the calls (when names were given) */
    T_OPEN,  /* required: <｜tool▁calls▁begin｜> first                      */
    T_CALL,  /* <｜tool▁call▁begin｜>                                         */
    T_TYPE,  /* the bytes of "function" (pos of them matched)               */
    T_SEP,   /* <｜tool▁sep｜>                                                */
    T_NAME,  /* the bytes of a name and "\n```json\n" (candidates lo..hi);  */
             /* V3.1: of a name, then <｜tool▁sep｜>                           */
    T_ARGS,  /* the arguments: one JSON object                              */
    T_CLOSE, /* the bytes of "\n```"                                        */
    T_END,   /* <｜tool▁call▁end｜>                                           */
    T_NEXT,  /* "\n" or <｜tool▁call▁begin｜> (parallel), <｜tool▁calls▁end｜> */
             /* (V3.1: no "\n")                                                */
    T_DONE,  /* only the end of sequence                                    */
};

enum { MK_CALLS_BEGIN, MK_CALLS_END, MK_CALL_BEGIN, MK_CALL_END, MK_SEP, MK_OUTPUTS_BEGIN, MK_OUTPUTS_END,
       MK_OUTPUT_BEGIN, MK_OUTPUT_END, N_MARKERS };

static const char *const marker_text[N_MARKERS] = {
    "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>",     "<｜tool▁call▁begin｜>",
    "<｜tool▁call▁end｜>",    "<｜tool▁sep｜>",           "<｜tool▁outputs▁begin｜>",
    "<｜tool▁outputs▁end｜>", "<｜tool▁output▁begin｜>", "<｜tool▁output▁end｜>",
};

static const char type_lit[] = "function", name_end[] = "\n```json\n", close_lit[] = "\n```";

struct dsc_tool_grammar {
    int32_t marker[N_MARKERS];
    int required, parallel, n, v31;
    size_t n_end; /* bytes after each name in cand: name_end's, or none (V3.1) */
    char **cand;  /* [n] name + name_end, sorted by bytes */
    uint16_t *len;
    const dsc_json_schema **schema; /* [n] the arguments' schema, or NULL: any object */
};

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int name_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > DSC_TOOL_NAME_MAX) return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || is_digit((unsigned char)s[i]) ||
              s[i] == '_' || s[i] == '.' || s[i] == '-'))
            return 0;
    return 1;
}

dsc_status dsc_tool_grammar_new_format(const dsc_tokenizer *tok, const char *const *names, int n_names, int required,
                                       int parallel, int format, dsc_tool_grammar **out) {
    *out = NULL;
    if (!tok || n_names < 0 || n_names > DSC_TOOL_MAX || (n_names && !names) || (required && !n_names) ||
        (format != DSC_TOOL_FORMAT_V3 && format != DSC_TOOL_FORMAT_V31))
        return dsc_fail(DSC_ERR_ARG, "tool grammar: bad arguments");
    dsc_tool_grammar *g = calloc(1, sizeof *g);
    if (!g) return dsc_fail(DSC_ERR_NOMEM, "tool grammar: out of memory");
    g->required = required, g->parallel = parallel, g->n = n_names;
    g->v31 = format == DSC_TOOL_FORMAT_V31;
    g->n_end = g->v31 ? 0 : sizeof name_end - 1;
    for (int k = 0; k < N_MARKERS; k++)
        if ((g->marker[k] = dsc_tokenizer_find(tok, marker_text[k])) < 0) {
            dsc_tool_grammar_free(g);
            return dsc_fail(DSC_ERR_ARG, "tool calls: the tokenizer has no token '%s'", marker_text[k]);
        }
    g->cand = calloc((size_t)n_names + 1, sizeof *g->cand);
    g->len = calloc((size_t)n_names + 1, sizeof *g->len);
    g->schema = calloc((size_t)n_names + 1, sizeof *g->schema);
    if (!g->cand || !g->len || !g->schema) {
        dsc_tool_grammar_free(g);
        return dsc_fail(DSC_ERR_NOMEM, "tool grammar: out of memory");
    }
    for (int i = 0; i < n_names; i++) {
        if (!names[i] || !name_ok(names[i])) {
            dsc_tool_grammar_free(g);
            return dsc_fail(DSC_ERR_ARG, "tool calls: '%.80s' is not a function name (1 to %d of A-Z a-z 0-9 _ . -)",
                            names[i] ? names[i] : "(null)", DSC_TOOL_NAME_MAX);
        }
        const size_t n = strlen(names[i]);
        if (!(g->cand[i] = malloc(n + sizeof name_end))) {
            dsc_tool_grammar_free(g);
            return dsc_fail(DSC_ERR_NOMEM, "tool grammar: out of memory");
        }
        memcpy(g->cand[i], names[i], n);
        memcpy(g->cand[i] + n, name_end + sizeof name_end - 1 - g->n_end, g->n_end + 1);
    }
    qsort(g->cand, (size_t)n_names, sizeof *g->cand, cmp_str);
    for (int i = 0; i < n_names; i++) {
        if (i && !strcmp(g->cand[i], g->cand[i - 1])) {
            dsc_fail(DSC_ERR_ARG, "tool calls: the function name '%.*s' is given twice", (int)strcspn(g->cand[i], "\n"),
                     g->cand[i]);
            dsc_tool_grammar_free(g);
            return DSC_ERR_ARG;
        }
        g->len[i] = (uint16_t)strlen(g->cand[i]);
    }
    *out = g;
    return DSC_OK;
}

dsc_status dsc_tool_grammar_new(const dsc_tokenizer *tok, const char *const *names, int n_names, int required,
                                int parallel, dsc_tool_grammar **out) {
    return dsc_tool_grammar_new_format(tok, names, n_names, required, parallel, DSC_TOOL_FORMAT_V3, out);
}

int dsc_tool_grammar_format(const dsc_tool_grammar *g) { return g->v31 ? DSC_TOOL_FORMAT_V31 : DSC_TOOL_FORMAT_V3; }

void dsc_tool_grammar_free(dsc_tool_grammar *g) {
    if (!g) return;
    for (int i = 0; g->cand && i < g->n; i++) free(g->cand[i]);
    free(g->cand);
    free(g->len);
    free(g->schema);
    free(g);
}

dsc_status dsc_tool_grammar_set_schema(dsc_tool_grammar *g, const char *name, const dsc_json_schema *schema) {
    const size_t n = name ? strlen(name) : 0;
    for (int i = 0; i < g->n; i++)
        if (n && g->len[i] == n + g->n_end && !memcmp(g->cand[i], name, n)) {
            g->schema[i] = schema;
            return DSC_OK;
        }
    return dsc_fail(DSC_ERR_ARG, "tool grammar: no function '%.80s'", name ? name : "(null)");
}

const int32_t *dsc_tool_markers(const dsc_tool_grammar *g) { return g->marker; }

void dsc_tool_start(const dsc_tool_grammar *g, dsc_tool_state *st) {
    memset(st, 0, sizeof *st);
    st->phase = g->required ? T_OPEN : T_TEXT;
}

int dsc_tool_where(const dsc_tool_state *st) {
    return st->phase == T_TEXT ? DSC_TOOL_TEXT : st->phase == T_DONE ? DSC_TOOL_DONE : DSC_TOOL_CALLING;
}

/* One byte of text; -1 where the phase takes none or not this one. */
static int tool_step(const dsc_tool_grammar *g, dsc_tool_state *st, unsigned c) {
    switch (st->phase) {
    case T_TEXT:
        return 0;
    case T_TYPE:
        if (c != (unsigned char)type_lit[st->pos]) return -1;
        if (++st->pos == sizeof type_lit - 1) st->phase = T_SEP;
        return 0;
    case T_NAME: { /* the candidates lo..hi share pos bytes; keep those whose next is c */
        uint16_t lo = st->lo, hi = st->hi;
        if (c == 0) return -1; /* a name's end (V3.1's names end in none of their bytes) */
        while (lo < hi && (unsigned char)g->cand[lo][st->pos] != c) lo++;
        hi = lo;
        while (hi < st->hi && (unsigned char)g->cand[hi][st->pos] == c) hi++;
        if (lo == hi) return -1;
        st->lo = lo, st->hi = hi;
        if (++st->pos == g->len[lo] && !g->v31) { /* a whole candidate: no other is its prefix (names hold no '\n') */
            st->phase = T_ARGS;
            if (g->schema[lo]) dsc_schema_start(g->schema[lo], &st->sargs);
            else dsc_json_start(&st->args);
        }
        return 0;
    }
    case T_ARGS: { /* lo: the function called; st is the caller's copy (tool_feed), stepped in place */
        const dsc_json_schema *sc = g->schema[st->lo];
        if (sc ? dsc_schema_step(sc, &st->sargs, c) : step(&st->args, c)) return -1;
        if (sc ? dsc_schema_complete(&st->sargs) : dsc_json_complete(&st->args))
            st->phase = g->v31 ? T_END : T_CLOSE, st->pos = 0;
        return 0;
    }
    case T_CLOSE:
        if (c != (unsigned char)close_lit[st->pos]) return -1;
        if (++st->pos == sizeof close_lit - 1) st->phase = T_END;
        return 0;
    case T_NEXT:
        if (c != '\n' || !g->parallel || g->v31) return -1;
        st->phase = T_CALL;
        return 0;
    default:
        return -1;
    }
}

static int tool_feed(const dsc_tool_grammar *g, dsc_tool_state *st, const char *bytes, size_t n) {
    dsc_tool_state s = *st;
    for (size_t i = 0; i < n; i++)
        if (tool_step(g, &s, (unsigned char)bytes[i])) return -1;
    *st = s;
    return 0;
}

static int marker_index(const dsc_tool_grammar *g, int32_t id) {
    for (int k = 0; k < N_MARKERS; k++)
        if (g->marker[k] == id) return k;
    return -1;
}

/* A marker, or a token that is not text (added tokens, eos): the phase
 * after it, or -1 where it cannot come. */
static int tool_symbol(const dsc_tool_grammar *g, const dsc_tool_state *st, int32_t id, int32_t eos) {
    const int k = marker_index(g, id);
    switch (st->phase) {
    case T_TEXT:
        if (k == MK_CALLS_BEGIN) return g->n ? T_CALL : -1;
        return k < 0 ? T_TEXT : -1; /* eos, chat markers: as without tools */
    case T_OPEN:
        return k == MK_CALLS_BEGIN ? T_CALL : -1;
    case T_CALL:
        return k == MK_CALL_BEGIN ? (g->v31 ? T_NAME : T_TYPE) : -1;
    case T_SEP:
        return k == MK_SEP ? T_NAME : -1;
    case T_NAME: /* V3.1: <｜tool▁sep｜> after a whole name (the shortest of lo..hi, sorted first) */
        return g->v31 && k == MK_SEP && st->lo < st->hi && st->pos == g->len[st->lo] ? T_ARGS : -1;
    case T_END:
        return k == MK_CALL_END ? T_NEXT : -1;
    case T_NEXT:
        if (k == MK_CALL_BEGIN && g->parallel) return g->v31 ? T_NAME : T_TYPE;
        return k == MK_CALLS_END ? T_DONE : -1;
    case T_DONE:
        return id == eos ? T_DONE : -1;
    default:
        return -1;
    }
}

void dsc_tool_mask_apply(const dsc_tool_grammar *g, const dsc_json_mask *m, const dsc_tool_state *st, float *logits) {
    if (st->phase == T_TEXT) { /* only the markers that cannot open the calls */
        for (int k = 0; k < N_MARKERS; k++)
            if (g->marker[k] < m->n_logits && tool_symbol(g, st, g->marker[k], m->eos) < 0)
                logits[g->marker[k]] = -INFINITY;
        return;
    }
    uint8_t first[256];
    for (unsigned c = 0; c < 256; c++) {
        dsc_tool_state s = *st;
        first[c] = tool_step(g, &s, c) == 0;
    }
    const dsc_json_schema *sc = st->phase == T_ARGS ? g->schema[st->lo] : NULL;
    const int in_string = st->phase == T_ARGS && (sc ? dsc_schema_free_string(sc, &st->sargs) : st->args.mode == M_STR);
    for (int32_t id = 0; id < m->n_logits; id++) {
        if (logits[id] == -INFINITY || (in_string && m->in_str[id])) continue;
        const int32_t n = m->len[id];
        if (n < 0) { /* not text: a marker, eos, another added token */
            if (tool_symbol(g, st, id, m->eos) < 0) logits[id] = -INFINITY;
            continue;
        }
        dsc_tool_state s = *st;
        if (!first[(unsigned char)m->bytes[m->off[id]]] || tool_feed(g, &s, m->bytes + m->off[id], (size_t)n))
            logits[id] = -INFINITY;
    }
}

int dsc_tool_mask_accept(const dsc_tool_grammar *g, const dsc_json_mask *m, dsc_tool_state *st, int32_t id) {
    if (id < 0 || id >= m->n_logits) return -1;
    if (m->len[id] >= 0) return tool_feed(g, st, m->bytes + m->off[id], (size_t)m->len[id]);
    const int ph = tool_symbol(g, st, id, m->eos);
    if (ph < 0) return -1;
    if (ph == T_NAME) st->pos = 0, st->lo = 0, st->hi = (uint16_t)g->n;
    if (ph == T_TYPE) st->pos = 0;
    if (ph == T_ARGS) { /* V3.1: the name was whole; its arguments begin */
        st->hi = (uint16_t)(st->lo + 1);
        if (g->schema[st->lo]) dsc_schema_start(g->schema[st->lo], &st->sargs);
        else dsc_json_start(&st->args);
    }
    st->phase = (uint8_t)ph;
    return 0;
}
