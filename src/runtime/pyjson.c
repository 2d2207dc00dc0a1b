/*
 * pyjson.c — JSON as Python's json.dumps(ensure_ascii=False) writes it.
 */
#include "runtime/pyjson.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} pj_buf;

static void pj_put(pj_buf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->n + n + 1) * 2 + 64;
        char *g = realloc(b->p, cap);
        if (!g) {
            b->oom = 1;
            return;
        }
        b->p = g, b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void pj_puts(pj_buf *b, const char *s) { pj_put(b, s, strlen(s)); }

static void pj_string(pj_buf *b, const char *s) {
    pj_put(b, "\"", 1);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        char e[8];
        switch (*c) {
        case '"': pj_put(b, "\\\"", 2); break;
        case '\\': pj_put(b, "\\\\", 2); break;
        case '\n': pj_put(b, "\\n", 2); break;
        case '\r': pj_put(b, "\\r", 2); break;
        case '\t': pj_put(b, "\\t", 2); break;
        case '\b': pj_put(b, "\\b", 2); break;
        case '\f': pj_put(b, "\\f", 2); break;
        default:
            if (*c < 0x20) snprintf(e, sizeof e, "\\u%04x", *c), pj_put(b, e, 6);
            else pj_put(b, (const char *)c, 1);
        }
    }
    pj_put(b, "\"", 1);
}

static void pj_number(pj_buf *b, double v) {
    char t[40];
    if (!isfinite(v)) snprintf(t, sizeof t, "%s", isnan(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity");
    else if (v == floor(v) && fabs(v) < 9007199254740992.0) snprintf(t, sizeof t, "%.0f", v);
    else
        for (int prec = 1; prec <= 17; prec++) { /* repr: the shortest that reads back */
            snprintf(t, sizeof t, "%.*g", prec, v);
            if (strtod(t, NULL) == v) break;
        }
    pj_puts(b, t);
}

static void pj_value(pj_buf *b, const cJSON *v, int depth) {
    const cJSON *x;
    int first = 1;
    if (depth > 512) { /* deeper than any document cJSON reads */
        b->oom = 1;
        return;
    }
    if (cJSON_IsObject(v)) {
        pj_put(b, "{", 1);
        cJSON_ArrayForEach(x, v) {
            if (!first) pj_put(b, ", ", 2);
            first = 0;
            pj_string(b, x->string ? x->string : "");
            pj_put(b, ": ", 2);
            pj_value(b, x, depth + 1);
        }
        pj_put(b, "}", 1);
    } else if (cJSON_IsArray(v)) {
        pj_put(b, "[", 1);
        cJSON_ArrayForEach(x, v) {
            if (!first) pj_put(b, ", ", 2);
            first = 0;
            pj_value(b, x, depth + 1);
        }
        pj_put(b, "]", 1);
    } else if (cJSON_IsString(v)) {
        pj_string(b, v->valuestring);
    } else if (cJSON_IsNumber(v)) {
        pj_number(b, v->valuedouble);
    } else if (cJSON_IsTrue(v)) {
        pj_puts(b, "true");
    } else if (cJSON_IsFalse(v)) {
        pj_puts(b, "false");
    } else {
        pj_puts(b, "null");
    }
}

char *pyjson_print(const cJSON *v) {
    pj_buf b = {0};
    pj_value(&b, v, 0);
    if (!b.oom && !b.p) pj_put(&b, "", 0);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
