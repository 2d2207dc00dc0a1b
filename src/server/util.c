/*
 * util.c — byte buffers, JSON string output, errors in the OpenAI shape,
 * the log line, and a chat message built for the translated APIs.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "srv.h"

/* ------------------------------------------------------------------------ */
/* Buffers                                                                   */

static int sbuf_grow(sbuf *b, size_t extra) {
    if (b->oom) return 0;
    if (b->n + extra + 1 <= b->cap) return 1;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + extra + 1) {
        if (cap > SIZE_MAX / 2) {
            b->oom = 1;
            return 0;
        }
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return 0;
    }
    b->p = p;
    b->cap = cap;
    return 1;
}

void sbuf_put(sbuf *b, const char *s, size_t n) {
    if (!sbuf_grow(b, n)) return;
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

void sbuf_puts(sbuf *b, const char *s) { sbuf_put(b, s, strlen(s)); }

void sbuf_printf(sbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char tmp[256];
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    if ((size_t)k < sizeof tmp) {
        sbuf_put(b, tmp, (size_t)k);
        return;
    }
    if (!sbuf_grow(b, (size_t)k)) return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)k + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)k;
}

void sbuf_free(sbuf *b) {
    free(b->p);
    *b = (sbuf){0};
}

char *sbuf_take(sbuf *b, size_t *n) {
    char *p = b->p;
    *n = b->n;
    *b = (sbuf){0};
    return p;
}

/* Length of the valid UTF-8 character at s[0..n), or 0 if it is not one. */
static size_t utf8_char(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) len = 2, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, cp = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, cp = c & 0x07;
    else return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

void sbuf_json_str(sbuf *b, const char *s, size_t n) {
    if (!s) s = "", n = 0;
    const unsigned char *u = (const unsigned char *)s;
    sbuf_put(b, "\"", 1);
    size_t run = 0; /* start of bytes that go out verbatim */
    for (size_t i = 0; i < n;) {
        unsigned c = u[i];
        const char *esc = NULL;
        char hex[8];
        size_t k = 1;
        if (c == '"') esc = "\\\"";
        else if (c == '\\') esc = "\\\\";
        else if (c == '\n') esc = "\\n";
        else if (c == '\r') esc = "\\r";
        else if (c == '\t') esc = "\\t";
        else if (c < 0x20 || c == 0x7F) snprintf(hex, sizeof hex, "\\u%04x", c), esc = hex;
        else if (c >= 0x80 && (k = utf8_char(u + i, n - i)) == 0) esc = "\xEF\xBF\xBD", k = 1;
        if (esc) {
            sbuf_put(b, s + run, i - run);
            sbuf_puts(b, esc);
            run = i + k;
        }
        i += k;
    }
    sbuf_put(b, s + run, n - run);
    sbuf_put(b, "\"", 1);
}

double srv_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

void srv_vlog(const char *fmt, va_list ap) {
    static const char tag[] = "dsc serve: ";
    char line[1024];
    memcpy(line, tag, sizeof tag - 1);
    const size_t room = sizeof line - sizeof tag; /* the text, its newline, a NUL */
    int k = vsnprintf(line + sizeof tag - 1, room, fmt, ap);
    if (k < 0) return;
    size_t n = sizeof tag - 1 + ((size_t)k < room - 1 ? (size_t)k : room - 1);
    while (n > sizeof tag - 1 && line[n - 1] == '\n') n--; /* libmicrohttpd's messages end with one */
    line[n++] = '\n';
    fwrite(line, 1, n, stderr); /* one write a line: lines of different threads never mix */
}

void srv_log(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    srv_vlog(fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------------------ */
/* Errors                                                                    */

int srv_fail(srv_err *e, int status, const char *type, const char *param, const char *code, const char *fmt, ...) {
    e->status = status;
    e->type = type;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return -1;
}

static void json_str_or_null(sbuf *b, const char *s) {
    if (s) sbuf_json_str(b, s, strlen(s));
    else sbuf_puts(b, "null");
}

void srv_err_json(const srv_err *e, sbuf *out) {
    sbuf_puts(out, "{\"error\":{\"message\":");
    sbuf_json_str(out, e->message, strlen(e->message));
    sbuf_puts(out, ",\"type\":");
    json_str_or_null(out, e->type);
    sbuf_puts(out, ",\"param\":");
    json_str_or_null(out, e->param[0] ? e->param : NULL);
    sbuf_puts(out, ",\"code\":");
    json_str_or_null(out, e->code);
    sbuf_puts(out, "}}");
}

int srv_code_index(int status) {
    switch (status) {
    case 200: return SRV_CODE_200;
    case 400: return SRV_CODE_400;
    case 401: return SRV_CODE_401;
    case 404: return SRV_CODE_404;
    case 405: return SRV_CODE_405;
    case 413: return SRV_CODE_413;
    case 500: return SRV_CODE_500;
    case 503: return SRV_CODE_503;
    default: return SRV_CODE_OTHER;
    }
}

/* ------------------------------------------------------------------------ */
/* Chat requests built by the translated APIs (anthropic.c, responses.c)     */

struct cJSON *srv_add_message(struct cJSON *msgs, const char *role, const char *content) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", role);
    if (content) cJSON_AddStringToObject(m, "content", content);
    else cJSON_AddNullToObject(m, "content");
    cJSON_AddItemToArray(msgs, m);
    return m;
}

/* Call k of a choice as far as it is known: whole once made, else the one
 * being written (its arguments so far), else NULL. */
const srv_call *srv_choice_call(const srv_choice *c, int k, const char **args, size_t *n, int *whole) {
    *whole = k < c->n_calls;
    const srv_call *call = *whole ? &c->calls[k] : c->live_open && k == c->n_calls ? &c->live : NULL;
    *args = !call ? "" : *whole ? call->arguments : c->live_args.p ? c->live_args.p : "";
    *n = !call ? 0 : *whole ? strlen(*args) : c->live_args.n;
    return call;
}

/* The error said of another field: param now, and in the message the old
 * param's name replaced by it (once). */
void srv_err_rename(srv_err *e, const char *now) {
    char old[sizeof e->param], msg[sizeof e->message];
    snprintf(old, sizeof old, "%s", e->param);
    snprintf(e->param, sizeof e->param, "%s", now);
    const char *at = old[0] ? strstr(e->message, old) : NULL;
    if (!at) return;
    snprintf(msg, sizeof msg, "%.*s%s%s", (int)(at - e->message), e->message, now, at + strlen(old));
    memcpy(e->message, msg, sizeof msg);
}
