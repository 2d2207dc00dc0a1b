/*
 * pretok.c — the pre-tokenizer's regexes: Oniguruma patterns (what the
 * reference compiles tokenizer.json's Split patterns with) run on PCRE2.
 *
 * The two dialects agree on what these patterns use (\p{..} classes,
 * lookahead, counted repeats) except for a few escapes, rewritten here:
 *   \s, \S   Oniguruma: Unicode White_Space. PCRE2 with UCP also takes
 *            U+180E, so \s becomes [\t\n\x0b\f\r\x85\p{Z}] (= White_Space).
 *   \h, \H   Oniguruma: a hex digit. PCRE2: horizontal space.
 *   \uHHHH   Oniguruma only; PCRE2 writes \x{HHHH}.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "tokenizer/tokenizer.h"

/* GPT-2's pattern, as the reference's ByteLevel pre-tokenizer has it. */
const char tok_bytelevel_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

#define RX_SPACE "\\t\\n\\x0b\\f\\r\\x85\\p{Z}"
#define RX_HEX "0-9a-fA-F"

static int rx_is_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

/* Writes the PCRE2 form of escape pat[0..] (pat[0] is the letter after the
 * backslash) to *o; returns the pattern bytes used, 0 if unsupported. */
static size_t rx_escape(const char *pat, int in_class, char **o) {
    const char *rep = NULL;
    size_t used = 1;
    switch (pat[0]) {
    case 's': rep = in_class ? RX_SPACE : "[" RX_SPACE "]"; break;
    case 'S': rep = in_class ? NULL : "[^" RX_SPACE "]"; break;
    case 'h': rep = in_class ? RX_HEX : "[" RX_HEX "]"; break;
    case 'H': rep = in_class ? NULL : "[^" RX_HEX "]"; break;
    case 'u':
        if (!(rx_is_hex(pat[1]) && rx_is_hex(pat[2]) && rx_is_hex(pat[3]) && rx_is_hex(pat[4]))) return 0;
        *o += sprintf(*o, "\\x{%.4s}", pat + 1);
        return 5;
    default:
        *(*o)++ = '\\';
        *(*o)++ = pat[0];
        return 1;
    }
    if (!rep) return 0;
    memcpy(*o, rep, strlen(rep));
    *o += strlen(rep);
    return used;
}

/* Rewrites pat into out (room for 32 bytes per pattern byte). Returns the
 * offset of an unsupported escape, or -1 when all went well. */
static long rx_translate(const char *pat, char *out) {
    char *o = out;
    int depth = 0;      /* [ ] nesting: Oniguruma allows sets inside sets */
    int class_open = 0; /* just after "[" or "[^": a "]" here is literal */
    for (size_t i = 0; pat[i]; i++) {
        char c = pat[i];
        int was_open = class_open;
        class_open = 0;
        if (c == '\\' && pat[i + 1]) {
            size_t used = rx_escape(pat + i + 1, depth > 0, &o);
            if (used == 0) return (long)i;
            i += used;
            continue;
        }
        *o++ = c;
        if (c == '[') {
            depth++;
            class_open = 1;
        } else if (c == '^' && was_open) {
            class_open = 1;
        } else if (c == ']' && depth > 0 && !was_open) {
            depth--;
        }
    }
    *o = '\0';
    return -1;
}

static dsc_status rx_compile(const char *pat, uint32_t opts, const char *field, tok_split *out) {
    int err;
    PCRE2_SIZE at;
    out->re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, opts, &err, &at, NULL);
    if (!out->re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(err, msg, sizeof msg);
        return dsc_fail(DSC_ERR_CONFIG, "%s: regex does not compile: %s (offset %zu of its PCRE2 form)", field,
                        (const char *)msg, (size_t)at);
    }
    /* without JIT the interpreter still works, only slower */
    out->jit = pcre2_jit_compile(out->re, PCRE2_JIT_COMPLETE) == 0;
    return DSC_OK;
}

dsc_status tok_regex_compile(const char *pat, int literal, const char *field, tok_split *out) {
    size_t n = strlen(pat), cap;
    char *buf;
    long bad;
    dsc_status s;
    out->re = NULL;
    out->jit = 0;
    if (n == 0) return DSC_OK; /* as in the reference, an empty pattern never splits */
    if (literal) return rx_compile(pat, PCRE2_UTF | PCRE2_LITERAL, field, out);
    if (!dsc_mul_size(n, 32, &cap) || !(buf = malloc(cap + 1)))
        return dsc_fail(DSC_ERR_NOMEM, "%s: no memory for a pattern of %zu bytes", field, n);
    bad = rx_translate(pat, buf);
    if (bad >= 0) {
        free(buf);
        return dsc_fail(DSC_ERR_CONFIG, "%s: escape \\%c at offset %ld is not supported", field, pat[bad + 1], bad);
    }
    s = rx_compile(buf, PCRE2_UTF | PCRE2_UCP, field, out);
    free(buf);
    return s;
}
