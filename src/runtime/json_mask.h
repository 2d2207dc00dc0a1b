/*
 * json_mask.h — the vocabulary's bytes as JSON mode's mask keeps them
 * (json_mode.c), shared with the schema grammar (json_schema.c).
 */
#ifndef DSC_JSON_MASK_H
#define DSC_JSON_MASK_H

#include <stdint.h>
#include <string.h>

#include "dsc.h"

struct dsc_json_mask {
    int32_t n_logits, eos;
    int32_t *off, *len; /* [n_logits] each token's bytes in `bytes`; len -1: an added token or none (never text) */
    uint8_t *in_str;    /* [n_logits] 1: whole characters of a string, no '"' or '\\' (go on any string) */
    char *bytes;
};

/* The lexing of a JSON scalar (RFC 8259), shared by JSON mode and the
 * schema grammar, whose modes begin with these: in a string after its
 * opening quote (strings in valid UTF-8, RFC 3629, without control
 * characters), in a literal, in a number. */
enum { J_STR, J_ESC, J_HEX, J_UTF8, J_LIT, J_NEG, J_ZERO, J_INT, J_DOT, J_FRAC, J_EXP, J_EXP_SIGN, J_EXP_DIG, J_N };

static inline int j_digit(unsigned c) { return c >= '0' && c <= '9'; }

/* Whitespace between a document's tokens as llama.cpp's JSON grammar has
 * it: none, one space, or a newline and at most DSC_JSON_MAX_INDENT spaces
 * or tabs (so a model cannot fill its answer with blank lines). *ws counts
 * the run: 0 none yet, 1 a space, 2 + k a newline and k indents. */
static inline int j_ws(uint8_t *ws, unsigned c) {
    if (*ws == 0) return c == ' ' ? (*ws = 1, 0) : c == '\n' ? (*ws = 2, 0) : -1;
    if (*ws >= 2 && *ws < 2 + DSC_JSON_MAX_INDENT && (c == ' ' || c == '\t')) return (*ws)++, 0;
    return -1;
}

/* Byte c of a string, but for its closing quote (the caller's): 0 with the
 * mode advanced (n, lo, hi: a \u escape's digits or a character's
 * continuation bytes to come, the next one's range), -1 if refused. */
static inline int j_string(uint8_t *mode, uint8_t *n, uint8_t *lo, uint8_t *hi, unsigned c) {
    switch (*mode) {
    case J_STR:
        if (c == '\\') return *mode = J_ESC, 0;
        if (c < 0x20) return -1;
        if (c < 0x80) return 0;
        /* lead bytes C2-DF, E0-EF, F0-F4; the second byte's range narrowed
         * for E0, ED, F0 and F4 (no overlongs, no surrogates, nothing past
         * U+10FFFF) */
        if (c >= 0xc2 && c <= 0xdf) return *mode = J_UTF8, *n = 1, *lo = 0x80, *hi = 0xbf, 0;
        if (c >= 0xe0 && c <= 0xef)
            return *mode = J_UTF8, *n = 2, *lo = c == 0xe0 ? 0xa0 : 0x80, *hi = c == 0xed ? 0x9f : 0xbf, 0;
        if (c >= 0xf0 && c <= 0xf4)
            return *mode = J_UTF8, *n = 3, *lo = c == 0xf0 ? 0x90 : 0x80, *hi = c == 0xf4 ? 0x8f : 0xbf, 0;
        return -1;
    case J_UTF8:
        if (c < *lo || c > *hi) return -1;
        *lo = 0x80, *hi = 0xbf;
        if (--*n == 0) *mode = J_STR;
        return 0;
    case J_ESC:
        if (c == 'u') return *mode = J_HEX, *n = 4, 0;
        if (c && strchr("\"\\/bfnrt", (int)c)) return *mode = J_STR, 0;
        return -1;
    case J_HEX:
        if (!(j_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) return -1;
        if (--*n == 0) *mode = J_STR;
        return 0;
    default:
        return -1;
    }
}

/* Byte c of literal lit (true, false, null) after n letters: 0 goes on, 1
 * it is whole with c, -1 refused. */
static inline int j_literal(uint8_t lit, uint8_t *n, unsigned c) {
    static const char *const words[3] = {"true", "false", "null"};
    if (c != (unsigned char)words[lit][*n]) return -1;
    return words[lit][++*n] == 0;
}

/* The mode a value beginning with c takes, if a scalar: J_STR ('"'), a
 * number's, J_LIT (lit set); -1 otherwise. */
static inline int j_scalar_start(unsigned c, uint8_t *lit, uint8_t *n) {
    switch (c) {
    case '"': return J_STR;
    case '-': return J_NEG;
    case '0': return J_ZERO;
    case 't': case 'f': case 'n': return *lit = c == 't' ? 0 : c == 'f' ? 1 : 2, *n = 1, J_LIT;
    default: return c >= '1' && c <= '9' ? J_INT : -1;
    }
}

/* Byte c of a number (integer: no fraction, no exponent): 0 goes on, 1 the
 * number ended before c (c belongs to what follows), -1 refused. */
static inline int j_number(uint8_t *mode, int integer, unsigned c) {
    switch (*mode) {
    case J_NEG:
        if (c == '0') return *mode = J_ZERO, 0;
        return c >= '1' && c <= '9' ? (*mode = J_INT, 0) : -1;
    case J_DOT:
        return j_digit(c) ? (*mode = J_FRAC, 0) : -1;
    case J_EXP:
        if (c == '+' || c == '-') return *mode = J_EXP_SIGN, 0;
        /* fall through */
    case J_EXP_SIGN:
        return j_digit(c) ? (*mode = J_EXP_DIG, 0) : -1;
    default: /* J_ZERO, J_INT, J_FRAC, J_EXP_DIG */
        if (j_digit(c) && *mode != J_ZERO) return 0;
        if (!integer && c == '.' && (*mode == J_ZERO || *mode == J_INT)) return *mode = J_DOT, 0;
        if (!integer && (c == 'e' || c == 'E') && *mode != J_EXP_DIG) return *mode = J_EXP, 0;
        return 1;
    }
}

/* One byte of a schema's document, in place (json_schema.c): 0 with st
 * advanced, -1 if refused, st then left as it may be (callers step a copy). */
int dsc_schema_step(const dsc_json_schema *s, dsc_schema_state *st, unsigned c);

/* Whether st is in a string that any token of whole characters without a
 * quote or backslash goes on (json_schema.c). */
int dsc_schema_free_string(const dsc_json_schema *s, const dsc_schema_state *st);

#endif
