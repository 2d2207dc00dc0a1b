/*
 * utf8.c — UTF-8 checks, the ByteLevel alphabet, and decoding ids to text.
 *
 * Decoding follows the reference's ByteLevel decoder and Rust's
 * String::from_utf8_lossy: the bytes of all tokens are joined, and each
 * maximal invalid subpart (Unicode 15, section 3.9, "U+FFFD substitution
 * of maximal subparts") becomes one U+FFFD.
 */
#include <string.h>

#include "core/status.h"
#include "tokenizer/tokenizer.h"

static const char utf8_fffd[3] = {(char)0xef, (char)0xbf, (char)0xbd};

/* ---------------------------------------------------------- alphabet --- */

/* GPT-2's bytes_to_unicode(): printable Latin-1 bytes stand for themselves,
 * the other 68 bytes (0-32, 127-160, 173) take U+0100.. in byte order. */
static int bytelevel_is_self(unsigned b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174; }

uint32_t tok_bytelevel_char(uint8_t b) {
    if (bytelevel_is_self(b)) return b;
    if (b <= 32) return 256u + b;
    if (b <= 160) return 256u + 33u + (b - 127u);
    return 256u + 33u + 34u; /* 173 */
}

int tok_bytelevel_byte(uint32_t cp) {
    if (cp < 256) return bytelevel_is_self(cp) ? (int)cp : -1;
    if (cp <= 256 + 32) return (int)(cp - 256);
    if (cp <= 256 + 33 + 33) return (int)(cp - 256 - 33 + 127);
    if (cp == 256 + 33 + 34) return 173;
    return -1;
}

/* ------------------------------------------------------------- scan --- */

enum { U8_OK, U8_BAD, U8_SHORT };

/* Classifies the sequence at p[0..n), n >= 1: U8_OK with *len its length;
 * U8_BAD with *len the bytes one U+FFFD replaces; U8_SHORT if p[0..n) is a
 * valid but unfinished prefix. Ranges from Unicode table 3-7. */
static int utf8_scan(const unsigned char *p, size_t n, size_t *len) {
    unsigned c = p[0], lo = 0x80, hi = 0xbf;
    size_t need;
    *len = 1;
    if (c < 0x80) return U8_OK;
    if (c < 0xc2 || c > 0xf4) return U8_BAD;
    if (c < 0xe0) {
        need = 1;
    } else if (c < 0xf0) {
        need = 2;
        if (c == 0xe0) lo = 0xa0; /* overlong */
        if (c == 0xed) hi = 0x9f; /* surrogates */
    } else {
        need = 3;
        if (c == 0xf0) lo = 0x90; /* overlong */
        if (c == 0xf4) hi = 0x8f; /* above U+10FFFF */
    }
    for (size_t k = 1; k <= need; k++) {
        if (k >= n) return U8_SHORT;
        if (p[k] < lo || p[k] > hi) {
            *len = k;
            return U8_BAD;
        }
        lo = 0x80;
        hi = 0xbf;
    }
    *len = need + 1;
    return U8_OK;
}

size_t tok_utf8_check(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, len;
    while (i < n) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        if (utf8_scan(p + i, n - i, &len) != U8_OK) return i;
        i += len;
    }
    return n;
}

size_t tok_utf8_len(unsigned char c) {
    if (c < 0xc0) return 1;
    if (c < 0xe0) return 2;
    if (c < 0xf0) return 3;
    return c < 0xf8 ? 4 : 1;
}

size_t tok_utf8_decode(const char *s, size_t n, uint32_t *cp) {
    const unsigned char *p = (const unsigned char *)s;
    size_t len = tok_utf8_len(p[0]);
    uint32_t c;
    if (len > n || len == 1) {
        *cp = p[0];
        return 1;
    }
    c = p[0] & (0x7f >> len);
    for (size_t k = 1; k < len; k++) c = (c << 6) | (p[k] & 0x3f);
    *cp = c;
    return len;
}

/* ----------------------------------------------------------- writer --- */

/* Collects output into buf (cap bytes, one kept for the NUL), counting what
 * would be needed; once something does not fit, nothing more is written,
 * so buf always holds whole characters. buf may be NULL when cap is 0. */
typedef struct {
    char *buf;
    size_t cap;
    size_t need;    /* bytes of the whole output */
    size_t written; /* bytes now in buf */
    int full;
} u8_writer;

static void u8w_put(u8_writer *w, const void *p, size_t k) {
    if (!w->full && w->need + k < w->cap) {
        memcpy(w->buf + w->need, p, k);
        w->written = w->need + k;
    } else {
        w->full = 1;
    }
    w->need += k;
}

static void u8w_end(u8_writer *w) {
    if (w->cap > 0) w->buf[w->written] = '\0';
}

/* Appends in[0..k) to the stream: whole characters go to w, an unfinished
 * one waits in st->pending (at most 3 bytes, always a valid prefix). */
static void u8_feed(dsc_utf8_stream *st, const unsigned char *in, size_t k, u8_writer *w) {
    size_t i = 0, len;
    int r;
    if (st->n_pending > 0) {
        unsigned char tmp[8];
        size_t np = (size_t)st->n_pending, t = k < 4 ? k : 4;
        memcpy(tmp, st->pending, np);
        memcpy(tmp + np, in, t);
        r = utf8_scan(tmp, np + t, &len);
        if (r == U8_SHORT) { /* np + k < 4, so all of in fits */
            memcpy(st->pending + np, in, k);
            st->n_pending += (int)k;
            return;
        }
        /* pending is a valid prefix, so the sequence ends at or after it */
        u8w_put(w, r == U8_OK ? (const void *)tmp : utf8_fffd, r == U8_OK ? len : 3);
        i = len - np;
        st->n_pending = 0;
    }
    while (i < k) {
        size_t j = i;
        while (j < k && in[j] < 0x80) j++;
        if (j > i) {
            u8w_put(w, in + i, j - i);
            i = j;
            continue;
        }
        r = utf8_scan(in + i, k - i, &len);
        if (r == U8_SHORT) {
            memcpy(st->pending, in + i, k - i);
            st->n_pending = (int)(k - i);
            return;
        }
        u8w_put(w, r == U8_OK ? (const void *)(in + i) : utf8_fffd, r == U8_OK ? len : 3);
        i += len;
    }
}

/* ------------------------------------------------------------ public --- */

static dsc_status tok_check_id(const dsc_tokenizer *tok, int32_t id) {
    if (id < 0 || id >= tok->n_vocab)
        return dsc_fail(DSC_ERR_ARG, "token id %d is out of range [0, %d)", id, tok->n_vocab);
    return DSC_OK;
}

static size_t tok_len(const dsc_tokenizer *tok, int32_t id) {
    return tok->byte_len[id] == TOK_NO_TOKEN ? 0 : tok->byte_len[id];
}

dsc_status dsc_token_bytes(const dsc_tokenizer *tok, int32_t id, char *buf, size_t cap, size_t *n_bytes) {
    dsc_status s;
    size_t len;
    if (!tok || !n_bytes || (!buf && cap > 0)) return dsc_fail(DSC_ERR_ARG, "dsc_token_bytes: NULL argument");
    if ((s = tok_check_id(tok, id)) != DSC_OK) return s;
    len = tok_len(tok, id);
    *n_bytes = len;
    if (len > cap) return dsc_fail(DSC_ERR_ARG, "token %d has %zu bytes, the buffer holds %zu", id, len, cap);
    if (len > 0) memcpy(buf, tok->bytes + tok->byte_off[id], len);
    return DSC_OK;
}

dsc_status dsc_detokenize(const dsc_tokenizer *tok, const int32_t *ids, size_t n, char *buf, size_t cap,
                          size_t *n_bytes) {
    dsc_utf8_stream st = {{0}, 0};
    u8_writer w = {buf, cap, 0, 0, 0};
    dsc_status s;
    if (!tok || !n_bytes || (!ids && n > 0) || (!buf && cap > 0))
        return dsc_fail(DSC_ERR_ARG, "dsc_detokenize: NULL argument");
    for (size_t i = 0; i < n; i++)
        if ((s = tok_check_id(tok, ids[i])) != DSC_OK) return s;
    for (size_t i = 0; i < n; i++)
        u8_feed(&st, (const unsigned char *)tok->bytes + tok->byte_off[ids[i]], tok_len(tok, ids[i]), &w);
    if (st.n_pending > 0) u8w_put(&w, utf8_fffd, 3); /* text ends inside a character */
    u8w_end(&w);
    *n_bytes = w.need;
    if (w.full) return dsc_fail(DSC_ERR_ARG, "detokenize: text of %zu bytes does not fit a buffer of %zu", w.need, cap);
    return DSC_OK;
}

dsc_status dsc_utf8_stream_push(dsc_utf8_stream *st, const dsc_tokenizer *tok, int32_t id, char *out, size_t cap,
                                size_t *n_out) {
    dsc_utf8_stream trial;
    u8_writer w = {NULL, 0, 0, 0, 0};
    const unsigned char *p;
    size_t len;
    dsc_status s;
    if (!st || !tok || !n_out || (!out && cap > 0)) return dsc_fail(DSC_ERR_ARG, "dsc_utf8_stream_push: NULL argument");
    if (st->n_pending < 0 || st->n_pending > 3)
        return dsc_fail(DSC_ERR_ARG, "utf8 stream: n_pending %d is not in [0, 3]", st->n_pending);
    if (st->n_pending > 0 && utf8_scan((const unsigned char *)st->pending, (size_t)st->n_pending, &len) != U8_SHORT)
        return dsc_fail(DSC_ERR_ARG, "utf8 stream: the %d pending bytes are not the start of a UTF-8 character "
                                     "(a stream not zeroed, or written to)", st->n_pending);
    if ((s = tok_check_id(tok, id)) != DSC_OK) return s;
    p = (const unsigned char *)tok->bytes + tok->byte_off[id];
    len = tok_len(tok, id);
    /* a dry run first, so that a short buffer leaves the stream as it was */
    trial = *st;
    u8_feed(&trial, p, len, &w);
    *n_out = w.need;
    if (w.need >= cap)
        return dsc_fail(DSC_ERR_ARG, "utf8 stream: %zu bytes (and a NUL) do not fit a buffer of %zu", w.need, cap);
    w = (u8_writer){out, cap, 0, 0, 0};
    u8_feed(st, p, len, &w);
    u8w_end(&w);
    return DSC_OK;
}
