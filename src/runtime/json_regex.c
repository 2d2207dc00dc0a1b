/*
 * json_regex.c — JSON Schema patterns as position (Glushkov) automata
 * (json_regex.h). The pattern is parsed into a tree, counted repetitions
 * spelled out, and each character position numbered; first, last and
 * follow sets are then bit masks, and a state is the set of positions
 * that the string read so far may end on.
 */
#include "json_regex.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint64_t lo, hi; /* ASCII characters 0-63, 64-127 */
} cset;

struct dsc_regex {
    int n;                           /* positions 1..n (0: the start)        */
    uint64_t follow[RE_MAX_POS + 1]; /* follow[0]: the first positions       */
    uint64_t last;                   /* accepting states (bit 0: the empty string) */
    uint64_t live;                   /* states from which a match can be completed */
    uint64_t with[128];              /* the positions whose class holds the character */
};

static int cs_has(const cset *s, unsigned c) { return c < 64 ? (int)(s->lo >> c & 1) : c < 128 ? (int)(s->hi >> (c - 64) & 1) : 0; }
static void cs_add(cset *s, unsigned c) {
    if (c < 64) s->lo |= (uint64_t)1 << c;
    else if (c < 128) s->hi |= (uint64_t)1 << (c - 64);
}
static void cs_range(cset *s, unsigned a, unsigned b) {
    for (unsigned c = a; c <= b && c < 128; c++) cs_add(s, c);
}
static void cs_or(cset *s, const cset *t) { s->lo |= t->lo, s->hi |= t->hi; }
static cset cs_not(const cset *s) { return (cset){~s->lo, ~s->hi}; }

/* The characters a string of the grammar holds: printable ASCII but '"' and '\\'. */
static int writable(unsigned c) { return c >= 0x20 && c < 0x7f && c != '"' && c != '\\'; }

/* ------------------------------------------------------------------------ */
/* Parsing                                                                   */

enum { A_EMPTY, A_SET, A_CAT, A_ALT, A_REP };

typedef struct {
    int kind, a, b; /* children (node indices) */
    int min, max;   /* A_REP: max -1 unbounded */
    cset set;       /* A_SET */
} anode;

#define MAX_NODES 1024
#define MAX_COUNT 64

typedef struct {
    const char *p, *end;
    anode node[MAX_NODES];
    int n;
    char *err;
    size_t cap;
    int failed;
} parser;

static int fail(parser *ps, const char *what) {
    if (!ps->failed) snprintf(ps->err, ps->cap, "%s", what);
    ps->failed = 1;
    return -1;
}

static int node(parser *ps, int kind, int a, int b) {
    if (ps->n >= MAX_NODES) return fail(ps, "the pattern is too long");
    ps->node[ps->n] = (anode){.kind = kind, .a = a, .b = b};
    return ps->n++;
}

static int set_node(parser *ps, cset s) {
    const int i = node(ps, A_SET, -1, -1);
    if (i >= 0) ps->node[i].set = s;
    return i;
}

/* \d \w \s and their negations into s; 1 if c is one of them */
static int class_escape(unsigned c, cset *s) {
    cset t = {0, 0};
    switch (c | 0x20) {
    case 'd': cs_range(&t, '0', '9'); break;
    case 'w': cs_range(&t, '0', '9'), cs_range(&t, 'a', 'z'), cs_range(&t, 'A', 'Z'), cs_add(&t, '_'); break;
    case 's': cs_add(&t, ' '), cs_range(&t, '\t', '\r'); break;
    default: return 0;
    }
    if (c >= 'A' && c <= 'Z') t = cs_not(&t);
    cs_or(s, &t);
    return 1;
}

/* The character an escape \c stands for (one that is not a class), or -1. */
static int char_escape(parser *ps, unsigned c, int in_class) {
    switch (c) {
    case 't': return '\t';
    case 'n': return '\n';
    case 'r': return '\r';
    case 'v': return '\v';
    case 'f': return '\f';
    case 'b':
        if (in_class) return '\b';
        return fail(ps, "word boundaries (\\b) are not supported");
    case 'B': return fail(ps, "word boundaries (\\B) are not supported");
    default: break;
    }
    if (c >= '1' && c <= '9') return fail(ps, "backreferences are not supported");
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') {
        char msg[64];
        snprintf(msg, sizeof msg, "the escape \\%c is not supported", (int)c);
        return fail(ps, msg);
    }
    if (c == '0' || c >= 128) return fail(ps, "the escape is not supported");
    return (int)c; /* escaped punctuation: itself */
}

static int parse_alt(parser *ps);

static int parse_class(parser *ps) {
    cset s = {0, 0};
    const int neg = ps->p < ps->end && *ps->p == '^';
    ps->p += neg;
    while (ps->p < ps->end && *ps->p != ']') {
        unsigned c = (unsigned char)*ps->p++;
        if (c >= 128) return fail(ps, "characters other than ASCII in a pattern are not supported");
        if (c == '\\') {
            if (ps->p >= ps->end) break;
            const unsigned e = (unsigned char)*ps->p++;
            if (class_escape(e, &s)) continue;
            const int x = char_escape(ps, e, 1);
            if (x < 0) return -1;
            c = (unsigned)x;
        }
        if (ps->p + 1 < ps->end && ps->p[0] == '-' && ps->p[1] != ']') { /* a range */
            ps->p++;
            unsigned d = (unsigned char)*ps->p++;
            if (d >= 128) return fail(ps, "characters other than ASCII in a pattern are not supported");
            if (d == '\\') {
                if (ps->p >= ps->end) break;
                const int x = char_escape(ps, (unsigned char)*ps->p++, 1);
                if (x < 0) return ps->failed ? -1 : fail(ps, "a class escape ends a range");
                d = (unsigned)x;
            }
            if (d < c) return fail(ps, "a range out of order in a class");
            cs_range(&s, c, d);
        } else cs_add(&s, c);
    }
    if (ps->p >= ps->end) return fail(ps, "an unterminated class ([...)");
    ps->p++; /* ']' */
    return set_node(ps, neg ? cs_not(&s) : s);
}

static int parse_atom(parser *ps) {
    const unsigned c = (unsigned char)*ps->p++;
    cset s = {0, 0};
    switch (c) {
    case '(': {
        if (ps->p < ps->end && *ps->p == '?') {
            if (ps->p + 1 < ps->end && ps->p[1] == ':') ps->p += 2;
            else return fail(ps, "lookaround and named groups are not supported");
        }
        const int a = parse_alt(ps);
        if (a < 0) return -1;
        if (ps->p >= ps->end || *ps->p != ')') return fail(ps, "an unclosed group");
        ps->p++;
        return a;
    }
    case ')': return fail(ps, "an unmatched ')'");
    case '[': return parse_class(ps);
    case '.': /* any character but line terminators */
        s = (cset){~(uint64_t)0, ~(uint64_t)0};
        s.lo &= ~(((uint64_t)1 << '\n') | ((uint64_t)1 << '\r'));
        return set_node(ps, s);
    case '*': case '+': case '?': return fail(ps, "a quantifier with nothing to repeat");
    case '^': case '$': return fail(ps, "anchors other than a leading '^' and a trailing '$' are not supported");
    case '\\': {
        if (ps->p >= ps->end) return fail(ps, "a pattern ends in '\\'");
        const unsigned e = (unsigned char)*ps->p++;
        if (class_escape(e, &s)) return set_node(ps, s);
        const int x = char_escape(ps, e, 0);
        if (x < 0) return -1;
        cs_add(&s, (unsigned)x);
        return set_node(ps, s);
    }
    default:
        if (c >= 128) return fail(ps, "characters other than ASCII in a pattern are not supported");
        cs_add(&s, c);
        return set_node(ps, s);
    }
}

/* {n}, {n,}, {n,m}: 1 with the counts, 0 when not a quantifier (then '{' is itself) */
static int counts(parser *ps, int *min, int *max) {
    const char *q = ps->p + 1;
    long a = 0, b;
    if (q >= ps->end || *q < '0' || *q > '9') return 0;
    for (; q < ps->end && *q >= '0' && *q <= '9'; q++)
        if (a < 100000) a = a * 10 + (*q - '0');
    b = a;
    if (q < ps->end && *q == ',') {
        q++;
        b = -1;
        if (q < ps->end && *q >= '0' && *q <= '9')
            for (b = 0; q < ps->end && *q >= '0' && *q <= '9'; q++)
                if (b < 100000) b = b * 10 + (*q - '0');
    }
    if (q >= ps->end || *q != '}') return 0;
    ps->p = q + 1;
    *min = (int)a, *max = (int)b;
    return 1;
}

static int parse_rep(parser *ps) {
    int a = parse_atom(ps);
    int quantified = 0;
    while (a >= 0 && ps->p < ps->end) {
        int min, max;
        const char c = *ps->p;
        if (c == '*') min = 0, max = -1, ps->p++;
        else if (c == '+') min = 1, max = -1, ps->p++;
        else if (c == '?') min = 0, max = 1, ps->p++;
        else if (c != '{' || !counts(ps, &min, &max)) break;
        if (quantified) return fail(ps, "a quantifier after a quantifier");
        if (min > MAX_COUNT || max > MAX_COUNT || (max >= 0 && max < min))
            return fail(ps, max >= 0 && max < min ? "a count out of order ({n,m} with m < n)" : "a count above 64");
        if (ps->p < ps->end && *ps->p == '?') ps->p++; /* lazy: the same strings match */
        const int r = node(ps, A_REP, a, -1);
        if (r >= 0) ps->node[r].min = min, ps->node[r].max = max;
        a = r, quantified = 1;
    }
    return a;
}

static int parse_cat(parser *ps) {
    int a = node(ps, A_EMPTY, -1, -1);
    while (a >= 0 && ps->p < ps->end && *ps->p != '|' && *ps->p != ')') {
        const int b = parse_rep(ps);
        if (b < 0) return -1;
        a = ps->node[a].kind == A_EMPTY ? b : node(ps, A_CAT, a, b);
    }
    return a;
}

static int parse_alt(parser *ps) {
    int a = parse_cat(ps);
    while (a >= 0 && ps->p < ps->end && *ps->p == '|') {
        ps->p++;
        const int b = parse_cat(ps);
        if (b < 0) return -1;
        a = node(ps, A_ALT, a, b);
    }
    return a;
}

/* ------------------------------------------------------------------------ */
/* The position automaton                                                    */

typedef struct {
    int nullable;
    uint64_t first, last;
} gl;

typedef struct {
    dsc_regex *re;
    const parser *ps;
    cset cls[RE_MAX_POS + 1];
    int over;
} builder;

static gl cat(builder *b, gl x, gl y) {
    for (int p = 0; p <= RE_MAX_POS; p++)
        if (x.last >> p & 1) b->re->follow[p] |= y.first;
    return (gl){x.nullable && y.nullable, x.first | (x.nullable ? y.first : 0), y.last | (y.nullable ? x.last : 0)};
}

/* The positions of node i, numbered afresh (a repetition spells its child out). */
static gl glu(builder *b, int i) {
    const anode *a = &b->ps->node[i];
    gl r = {1, 0, 0};
    switch (a->kind) {
    case A_SET:
        if (b->re->n >= RE_MAX_POS) {
            b->over = 1;
            return r;
        }
        b->re->n++;
        b->cls[b->re->n] = a->set;
        return (gl){0, (uint64_t)1 << b->re->n, (uint64_t)1 << b->re->n};
    case A_CAT: {
        const gl x = glu(b, a->a);
        return cat(b, x, glu(b, a->b));
    }
    case A_ALT: {
        const gl x = glu(b, a->a), y = glu(b, a->b);
        return (gl){x.nullable || y.nullable, x.first | y.first, x.last | y.last};
    }
    case A_REP:
        for (int k = 0; k < a->min && !b->over; k++) {
            const gl x = glu(b, a->a);
            r = cat(b, r, x);
            if (!x.first && !x.last) return r; /* no character in it: more of it adds nothing (and costs 64^depth) */
        }
        if (a->max < 0 && !b->over) { /* then any number more */
            gl x = glu(b, a->a);
            for (int p = 0; p <= RE_MAX_POS; p++)
                if (x.last >> p & 1) b->re->follow[p] |= x.first;
            x.nullable = 1;
            r = cat(b, r, x);
        }
        for (int k = a->min; k < a->max && !b->over; k++) {
            gl x = glu(b, a->a);
            x.nullable = 1;
            r = cat(b, r, x);
            if (!x.first && !x.last) break;
        }
        return r;
    default: /* A_EMPTY */
        return r;
    }
}

dsc_regex *re_compile(const char *pattern, char *err, size_t cap) {
    parser *ps = calloc(1, sizeof *ps);
    dsc_regex *re = calloc(1, sizeof *re);
    builder *b = calloc(1, sizeof *b);
    if (!ps || !re || !b) {
        snprintf(err, cap, "out of memory");
        free(ps), free(re), free(b);
        return NULL;
    }
    const size_t len = strlen(pattern);
    ps->p = pattern, ps->end = pattern + len, ps->err = err, ps->cap = cap;
    /* anchors: a leading '^', a trailing '$' (not escaped); else any characters before / after */
    const int head = len && pattern[0] == '^';
    size_t bs = 0;
    while (bs + 1 < len && pattern[len - 2 - bs] == '\\') bs++;
    const int tail = len > (size_t)head && pattern[len - 1] == '$' && bs % 2 == 0;
    ps->p += head, ps->end -= tail;
    int root = parse_alt(ps);
    if (root >= 0 && ps->p < ps->end) root = fail(ps, "an unmatched ')'");
    const cset any = {~(uint64_t)0, ~(uint64_t)0};
    if (root >= 0 && !head) {
        const int s = set_node(ps, any), r = s >= 0 ? node(ps, A_REP, s, -1) : -1;
        if (r >= 0) ps->node[r].min = 0, ps->node[r].max = -1;
        root = r >= 0 ? node(ps, A_CAT, r, root) : -1;
    }
    if (root >= 0 && !tail) {
        const int s = set_node(ps, any), r = s >= 0 ? node(ps, A_REP, s, -1) : -1;
        if (r >= 0) ps->node[r].min = 0, ps->node[r].max = -1;
        root = r >= 0 ? node(ps, A_CAT, root, r) : -1;
    }
    if (root >= 0) {
        b->re = re, b->ps = ps;
        const gl g = glu(b, root);
        if (b->over) {
            snprintf(err, cap, "more than %d character positions once counts are spelled out", RE_MAX_POS);
            root = -1;
        } else {
            re->follow[0] = g.first;
            re->last = g.last | (g.nullable ? 1 : 0);
        }
    }
    if (root >= 0) {
        /* the characters written: only positions that one of them enters */
        uint64_t enter = 0;
        for (int p = 1; p <= re->n; p++)
            for (unsigned c = 0; c < 128; c++)
                if (writable(c) && cs_has(&b->cls[p], c)) {
                    re->with[c] |= (uint64_t)1 << p;
                    enter |= (uint64_t)1 << p;
                }
        /* live: accepting, or followed by an enterable live position */
        uint64_t live = re->last, before;
        do {
            before = live;
            for (int p = 0; p <= re->n; p++)
                if (re->follow[p] & enter & live) live |= (uint64_t)1 << p;
        } while (live != before);
        re->live = live;
        if (!(live & 1)) {
            snprintf(err, cap, "no string of printable ASCII characters (without '\"' or '\\\\') matches it");
            root = -1;
        }
    }
    free(ps);
    free(b);
    if (root < 0) {
        free(re);
        return NULL;
    }
    return re;
}

void re_free(dsc_regex *re) { free(re); }

uint64_t re_start(const dsc_regex *re) { return 1; }

uint64_t re_step(const dsc_regex *re, uint64_t set, unsigned c) {
    if (c >= 128 || !writable(c)) return 0;
    uint64_t next = 0;
    for (uint64_t m = set; m; m &= m - 1) next |= re->follow[__builtin_ctzll(m)]; /* the positions in the set */
    return next & re->with[c] & re->live;
}

int re_accepts(const dsc_regex *re, uint64_t set) { return (set & re->last) != 0; }
