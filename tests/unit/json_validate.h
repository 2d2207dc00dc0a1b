/*
 * json_validate.h — an independent recursive-descent validator of the
 * language JSON mode (src/runtime/json_mode.c) holds output to: one JSON
 * object (RFC 8259), whitespace before it allowed, nothing after it, at most
 * DSC_JSON_DEPTH containers open, whitespace runs of none, one space, or a
 * newline and at most DSC_JSON_MAX_INDENT spaces or tabs, strings in valid UTF-8 (RFC 3629: no overlong forms, no
 * surrogates) without control characters. validate(s, n) says whether s is
 * such a document. Used by test_json and fuzz_json_mode.
 */
#ifndef DSC_TESTS_JSON_VALIDATE_H
#define DSC_TESTS_JSON_VALIDATE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "dsc.h"

typedef struct {
    const unsigned char *s;
    size_t n, i;
    int depth;
} vp;

/* A whitespace run: none, one space, or a newline and at most
 * DSC_JSON_MAX_INDENT spaces or tabs; any more whitespace after it is out. */
static int v_ws(vp *p) {
    if (p->i < p->n && p->s[p->i] == ' ') {
        p->i++;
    } else if (p->i < p->n && p->s[p->i] == '\n') {
        p->i++;
        for (int k = 0; k < DSC_JSON_MAX_INDENT && p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t'); k++) p->i++;
    }
    return !(p->i < p->n && p->s[p->i] && strchr(" \t\n\r", p->s[p->i]));
}

/* One UTF-8 character from s[i]: decoded, then checked by its value. */
static int v_utf8(vp *p) {
    const unsigned c = p->s[p->i];
    int len = c >= 0xf0 && c <= 0xf7 ? 4 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xc0 && c <= 0xdf ? 2 : 0;
    if (!len || p->i + (size_t)len > p->n) return 0;
    uint32_t cp = c & (len == 2 ? 0x1f : len == 3 ? 0x0f : 0x07);
    for (int k = 1; k < len; k++) {
        const unsigned b = p->s[p->i + (size_t)k];
        if ((b & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (b & 0x3f);
    }
    static const uint32_t least[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < least[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    p->i += (size_t)len;
    return 1;
}

static int v_string(vp *p) {
    if (p->i >= p->n || p->s[p->i] != '"') return 0;
    p->i++;
    while (p->i < p->n) {
        const unsigned c = p->s[p->i];
        if (c == '"') return p->i++, 1;
        if (c < 0x20) return 0;
        if (c == '\\') {
            if (++p->i >= p->n) return 0;
            const unsigned e = p->s[p->i++];
            if (e == 'u') {
                for (int k = 0; k < 4; k++, p->i++)
                    if (p->i >= p->n || !strchr("0123456789abcdefABCDEF", p->s[p->i]) || !p->s[p->i]) return 0;
            } else if (!strchr("\"\\/bfnrt", e) || !e) {
                return 0;
            }
        } else if (c >= 0x80) {
            if (!v_utf8(p)) return 0;
        } else {
            p->i++;
        }
    }
    return 0;
}

static int v_digits(vp *p) {
    size_t k = p->i;
    while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') p->i++;
    return p->i > k;
}

static int v_number(vp *p) {
    if (p->i < p->n && p->s[p->i] == '-') p->i++;
    if (p->i < p->n && p->s[p->i] == '0') p->i++;
    else if (p->i >= p->n || p->s[p->i] < '1' || p->s[p->i] > '9' || !v_digits(p)) return 0;
    if (p->i < p->n && p->s[p->i] == '.' && (p->i++, !v_digits(p))) return 0;
    if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
        p->i++;
        if (p->i < p->n && (p->s[p->i] == '+' || p->s[p->i] == '-')) p->i++;
        if (!v_digits(p)) return 0;
    }
    return 1;
}

static int v_value(vp *p);

static int v_container(vp *p, int object) {
    if (++p->depth > DSC_JSON_DEPTH) return 0;
    p->i++; /* the opener */
    const char close = object ? '}' : ']';
    if (!v_ws(p)) return 0;
    if (p->i < p->n && p->s[p->i] == close) return p->i++, p->depth--, 1;
    for (;;) {
        if (object) {
            if (!v_string(p) || !v_ws(p) || p->i >= p->n || p->s[p->i++] != ':' || !v_ws(p)) return 0;
        }
        if (!v_value(p) || !v_ws(p) || p->i >= p->n) return 0;
        const unsigned c = p->s[p->i++];
        if (c == (unsigned)close) return p->depth--, 1;
        if (c != ',' || !v_ws(p)) return 0;
    }
}

static int v_value(vp *p) {
    if (p->i >= p->n) return 0;
    const unsigned c = p->s[p->i];
    if (c == '{') return v_container(p, 1);
    if (c == '[') return v_container(p, 0);
    if (c == '"') return v_string(p);
    for (int k = 0; k < 3; k++) {
        static const char *const w[3] = {"true", "false", "null"};
        const size_t l = strlen(w[k]);
        if (p->n - p->i >= l && !memcmp(p->s + p->i, w[k], l)) return p->i += l, 1;
    }
    return v_number(p);
}

static int validate(const char *s, size_t n) {
    vp p = {(const unsigned char *)s, n, 0, 0};
    return v_ws(&p) && p.i < n && p.s[p.i] == '{' && v_container(&p, 1) && p.i == n;
}

#endif
