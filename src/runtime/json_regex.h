/*
 * json_regex.h — a JSON Schema "pattern" (ECMA-262 regular expression, a
 * subset) as a position automaton over the ASCII characters a string of
 * the schema grammar may hold, for json_schema.c.
 *
 * Taken: literals, '.', classes ([a-z0-9_], [^...], \d \w \s and their
 * negations, inside classes too), escaped punctuation, groups ( ) and
 * (?: ), alternation |, quantifiers * + ? {n} {n,} {n,m} (a lazy '?' after
 * one changes what is matched first, not what matches: ignored), '^' at
 * the pattern's start and '$' at its end. A pattern matches anywhere in
 * the string, as in JSON Schema, unless anchored. Refused: lookaround,
 * backreferences, \b, \p{...}, \x and \u escapes, anchors elsewhere, and
 * patterns of more than RE_MAX_POS character positions once counted
 * repetitions are spelled out.
 *
 * The strings written are held to the printable ASCII characters but '"'
 * and '\\' (no escapes), which every regex here reads as itself; a state
 * is the set of positions last read (bit 0: none yet), and it keeps only
 * positions from which a match can still be completed with such
 * characters, so a string never runs into a dead end.
 */
#ifndef DSC_JSON_REGEX_H
#define DSC_JSON_REGEX_H

#include <stddef.h>
#include <stdint.h>

#define RE_MAX_POS 63

typedef struct dsc_regex dsc_regex;

/* NULL with a one-line reason in err when refused or out of memory. */
dsc_regex *re_compile(const char *pattern, char *err, size_t cap);
void re_free(dsc_regex *re);

/* The state before any character; never 0. */
uint64_t re_start(const dsc_regex *re);
/* The state after character c, 0 when no match can follow. */
uint64_t re_step(const dsc_regex *re, uint64_t set, unsigned c);
/* Whether the string read so far matches. */
int re_accepts(const dsc_regex *re, uint64_t set);

#endif
