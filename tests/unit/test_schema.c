/*
 * test_schema.c — structured output (src/runtime/json_schema.c) against a
 * generator and a validator of its own, written from JSON Schema's rules
 * over cJSON trees:
 *
 *   - schemas the grammar cannot hold to (keywords it lacks, alternatives
 *     that begin alike, a root that is not an object, bad $ref) are refused
 *     with a message naming the place;
 *   - documents generated from each test schema are accepted whole and
 *     complete, and every proper prefix is accepted and incomplete;
 *   - one-byte mutations and truncations of them: whatever the recognizer
 *     calls complete is one JSON object (json_validate.h) that the
 *     validator accepts (the grammar may be stricter than the schema: it
 *     writes integers without a fraction, keys only where allowed);
 *   - hand-written cases on each side of each rule;
 *   - the mask over DeepSeek-V3's vocabulary: generation from random
 *     logits never dead-ends, the mask equals each token tried alone, and
 *     what it writes the validator accepts;
 *   - patterns against PCRE2: random strings the recognizer takes whole
 *     PCRE2 matches, and those PCRE2 matches it takes.
 *
 * usage: test_schema DEEPSEEK_TOKENIZER_JSON
 */
#include <cjson/cJSON.h>
#include <math.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
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
/* Schemas                                                                   */

static const char *const schemas[] = {
    /* flat, typed, bounded */
    "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"maxLength\":8,\"minLength\":1},"
    "\"age\":{\"type\":\"integer\"},\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\",\"enum\":[\"a\",\"b\",\"c\"]},"
    "\"minItems\":1,\"maxItems\":3},\"ok\":{\"type\":\"boolean\"},\"score\":{\"type\":[\"number\",\"null\"]}},"
    "\"required\":[\"name\",\"age\",\"tags\"],\"additionalProperties\":false}",
    /* as pydantic writes a model: $defs, $ref, anyOf with null, titles, an enum of mixed values */
    "{\"$defs\":{\"Addr\":{\"type\":\"object\",\"title\":\"Addr\",\"properties\":{\"city\":{\"type\":\"string\","
    "\"minLength\":2,\"title\":\"City\"},\"zip\":{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"null\"}],\"default\":null}},"
    "\"required\":[\"city\",\"zip\"],\"additionalProperties\":false},\"Kind\":{\"enum\":[\"home\",\"work\",1,12,true,null]}},"
    "\"type\":\"object\",\"title\":\"Person\",\"properties\":{\"addr\":{\"$ref\":\"#/$defs/Addr\"},\"kind\":{\"$ref\":"
    "\"#/$defs/Kind\"},\"alt\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/Addr\"}}},\"required\":[\"addr\",\"kind\"],"
    "\"additionalProperties\":false}",
    /* names that are prefixes of others, other keys with a schema, const, any value */
    "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},\"ab\":{\"type\":\"string\"},\"abc\":{\"const\":\"x-1\"},"
    "\"meta\":{}},\"required\":[\"abc\"],\"additionalProperties\":{\"type\":\"number\"}}",
    /* recursion */
    "{\"$defs\":{\"Node\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\"},\"kids\":{\"type\":\"array\","
    "\"items\":{\"$ref\":\"#/$defs/Node\"},\"maxItems\":2}},\"required\":[\"v\"],\"additionalProperties\":false}},"
    "\"$ref\":\"#/$defs/Node\"}",
    /* an object of any keys and values */
    "{\"type\":\"object\"}",
    /* bounded numbers, as pydantic writes Field(ge=..., le=..., gt=..., lt=...) */
    "{\"type\":\"object\",\"properties\":{\"age\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":120},"
    "\"p\":{\"type\":\"number\",\"minimum\":0,\"maximum\":1},\"t\":{\"type\":\"number\",\"exclusiveMinimum\":-40.5,"
    "\"exclusiveMaximum\":60},\"n\":{\"type\":[\"integer\",\"null\"],\"exclusiveMinimum\":-3,\"maximum\":-1},"
    "\"big\":{\"minimum\":1000.25},\"tiny\":{\"type\":\"number\",\"exclusiveMinimum\":0.1,\"maximum\":0.100002}},"
    "\"required\":[\"age\",\"p\",\"t\",\"n\",\"big\"],\"additionalProperties\":false}",
    /* formats, as pydantic writes date, time, datetime, UUID, IPv4Address */
    "{\"type\":\"object\",\"properties\":{\"d\":{\"type\":\"string\",\"format\":\"date\"},\"t\":{\"format\":\"time\"},"
    "\"dt\":{\"type\":\"string\",\"format\":\"date-time\"},\"id\":{\"type\":\"string\",\"format\":\"uuid\"},"
    "\"ip\":{\"anyOf\":[{\"type\":\"string\",\"format\":\"ipv4\"},{\"type\":\"null\"}]}},"
    "\"required\":[\"d\",\"dt\",\"id\",\"ip\"],\"additionalProperties\":false}",
    /* patterns (the generator writes one of each one's examples) */
    "{\"type\":\"object\",\"properties\":{\"sku\":{\"type\":\"string\",\"pattern\":\"^[A-Z]{3}-\\\\d{2,4}$\","
    "\"examples\":[\"ABC-12\",\"XYZ-9876\"]},\"tag\":{\"pattern\":\"b+c\",\"examples\":[\"bc\",\"abbbc!\",\"x bc y\"]},"
    "\"ver\":{\"type\":[\"string\",\"null\"],\"pattern\":\"^v?(0|[1-9]\\\\d*)(\\\\.(0|[1-9]\\\\d*)){2}(-[a-z]+)?$\","
    "\"examples\":[\"1.2.3\",\"v10.0.1-rc\"]}},\"required\":[\"sku\",\"ver\"],\"additionalProperties\":false}",
    /* more formats, as pydantic writes a hostname, EmailStr, IPv6Address, timedelta */
    "{\"type\":\"object\",\"properties\":{\"h\":{\"type\":\"string\",\"format\":\"hostname\"},\"e\":{\"format\":\"email\"},"
    "\"v6\":{\"type\":\"string\",\"format\":\"ipv6\"},\"du\":{\"type\":[\"string\",\"null\"],\"format\":\"duration\"}},"
    "\"required\":[\"h\",\"e\",\"v6\",\"du\"],\"additionalProperties\":false}",
    /* multipleOf, as pydantic writes Field(multiple_of=...), with bounds and without */
    "{\"type\":\"object\",\"properties\":{\"q\":{\"type\":\"number\",\"multipleOf\":0.25,\"minimum\":-2,\"maximum\":3},"
    "\"even\":{\"type\":\"integer\",\"multipleOf\":2},\"cents\":{\"type\":\"number\",\"multipleOf\":0.01,"
    "\"exclusiveMinimum\":0},\"seven\":{\"type\":\"integer\",\"multipleOf\":7,\"minimum\":1000,\"maximum\":1010},"
    "\"tenth\":{\"type\":[\"number\",\"null\"],\"multipleOf\":0.1}},\"required\":[\"q\",\"even\",\"cents\",\"seven\"],"
    "\"additionalProperties\":false}",
    /* a tagged union, as pydantic writes Union[Cat, Dog, Lizard] with Field(discriminator="pet_type"); the generator
     * writes the tag first */
    "{\"$defs\":{\"Cat\":{\"type\":\"object\",\"properties\":{\"pet_type\":{\"const\":\"cat\",\"type\":\"string\"},"
    "\"meows\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":9}},\"required\":[\"pet_type\",\"meows\"],"
    "\"additionalProperties\":false},\"Dog\":{\"type\":\"object\",\"properties\":{\"pet_type\":{\"const\":\"dog\","
    "\"type\":\"string\"},\"barks\":{\"type\":\"boolean\"},\"name\":{\"type\":\"string\",\"maxLength\":4}},"
    "\"required\":[\"pet_type\",\"barks\"],\"additionalProperties\":false},\"Lizard\":{\"type\":\"object\","
    "\"properties\":{\"pet_type\":{\"enum\":[\"lizard\"]},\"scales\":{\"type\":\"integer\"}},\"required\":[\"pet_type\"]}},"
    "\"type\":\"object\",\"properties\":{\"pet\":{\"anyOf\":[{\"$ref\":\"#/$defs/Cat\"},{\"$ref\":\"#/$defs/Dog\"},"
    "{\"$ref\":\"#/$defs/Lizard\"}],\"discriminator\":{\"propertyName\":\"pet_type\"}},\"pets\":{\"type\":\"array\","
    "\"items\":{\"anyOf\":[{\"$ref\":\"#/$defs/Cat\"},{\"$ref\":\"#/$defs/Dog\"},{\"type\":\"null\"}]},\"maxItems\":3}},"
    "\"required\":[\"pet\"],\"additionalProperties\":false}",
};
enum { N_SCHEMAS = sizeof schemas / sizeof schemas[0] };

static const cJSON *resolve(const cJSON *doc, const cJSON *s) {
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(s, "$ref");
    if (!cJSON_IsString(ref)) return s;
    if (!strncmp(ref->valuestring, "#/$defs/", 8))
        return cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(doc, "$defs"), ref->valuestring + 8);
    return doc;
}

static const char *type_of(const cJSON *s) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(s, "type");
    if (cJSON_IsString(t)) return t->valuestring;
    if (cJSON_IsArray(t)) return cJSON_GetArrayItem(t, (int)(rnd() % (unsigned)cJSON_GetArraySize(t)))->valuestring;
    if (cJSON_GetObjectItemCaseSensitive(s, "properties")) return "object";
    if (cJSON_GetObjectItemCaseSensitive(s, "minimum")) return "number";
    if (cJSON_GetObjectItemCaseSensitive(s, "format") || cJSON_GetObjectItemCaseSensitive(s, "pattern")) return "string";
    return NULL;
}

/* JSON Schema's "pattern": a match anywhere in the string (PCRE2 for ECMA-262). */
static int pattern_matches(const char *pattern, const char *text) {
    int err;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, 0, &err, &off, NULL);
    if (!re) return 0;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    const int rc = pcre2_match(re, (PCRE2_SPTR)text, strlen(text), 0, 0, md, NULL);
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return rc >= 0;
}

static const char *pattern_of(const cJSON *s) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(s, "pattern");
    return cJSON_IsString(f) ? f->valuestring : NULL;
}

static const char *format_of(const cJSON *s) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(s, "format");
    return cJSON_IsString(f) ? f->valuestring : NULL;
}

static int leap(int y) { return y % 400 == 0 || (y % 4 == 0 && y % 100 != 0); }

static int month_days(int y, int m) {
    if (m == 2) return 28 + leap(y);
    return m == 4 || m == 6 || m == 9 || m == 11 ? 30 : 31;
}

/* A number's bounds as [lo, hi] (doubles; exclusive ones flagged). */
typedef struct {
    double lo, hi;
    int lo_ex, hi_ex;
} bounds;

static bounds bounds_of(const cJSON *s) {
    bounds r = {-INFINITY, INFINITY, 0, 0};
    const cJSON *x;
    if ((x = cJSON_GetObjectItemCaseSensitive(s, "minimum"))) r.lo = x->valuedouble;
    if ((x = cJSON_GetObjectItemCaseSensitive(s, "exclusiveMinimum"))) r.lo = x->valuedouble, r.lo_ex = 1;
    if ((x = cJSON_GetObjectItemCaseSensitive(s, "maximum"))) r.hi = x->valuedouble;
    if ((x = cJSON_GetObjectItemCaseSensitive(s, "exclusiveMaximum"))) r.hi = x->valuedouble, r.hi_ex = 1;
    return r;
}

/* A decimal text as d x 10^e, exactly (d: up to 30 digits). */
static void decimal_of(const char *t, __int128 *d, int *e) {
    *d = 0, *e = 0;
    const int neg = *t == '-';
    int frac = 0;
    for (t += neg; (*t >= '0' && *t <= '9') || *t == '.'; t++) {
        if (*t == '.') frac = 1;
        else *d = *d * 10 + (*t - '0'), *e -= frac;
    }
    if (*t == 'e' || *t == 'E') *e += atoi(t + 1);
    if (neg) *d = -*d;
}

/* Whether v (of at most 15 significant digits: %.15g writes it back
 * exactly) is a whole multiple of the schema's multipleOf, in exact
 * decimal, as a validator of the decimal texts reads them. */
static int multiple_ok(const cJSON *s, double v) {
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(s, "multipleOf");
    if (!m) return 1;
    char tv[48], *tm = cJSON_PrintUnformatted(m);
    snprintf(tv, sizeof tv, "%.15g", v);
    __int128 dv, dm;
    int ev, em;
    decimal_of(tv, &dv, &ev), decimal_of(tm, &dm, &em);
    free(tm);
    const int e = ev < em ? ev : em;
    for (; ev > e; ev--) dv *= 10;
    for (; em > e; em--) dm *= 10;
    return dm != 0 && dv % dm == 0;
}

static int in_bounds(const cJSON *s, double v) {
    const bounds b = bounds_of(s);
    if (!multiple_ok(s, v)) return 0;
    if (isinf(b.lo) && isinf(b.hi)) return 1; /* none: any number (an overflow to inf included) */
    return (b.lo_ex ? v > b.lo : v >= b.lo) && (b.hi_ex ? v < b.hi : v <= b.hi);
}

/* ------------------------------------------------------------------------ */
/* Generator                                                                 */

static void ws(buf *b) {
    if (rnd() % 4 == 0) puts_(b, rnd() % 2 ? " " : "\n  ");
}

static void gen(const cJSON *doc, const cJSON *s, int depth, buf *b);

static void gen_any(int depth, buf *b) {
    switch (rnd() % (depth > 2 ? 4 : 6)) {
    case 0: puts_(b, "null"); break;
    case 1: puts_(b, "-12.5e-1"); break;
    case 2: puts_(b, "\"any\""); break;
    case 3: puts_(b, rnd() % 2 ? "true" : "false"); break;
    case 4: puts_(b, "[1,{\"k\":[]},\"s\"]"); break;
    default: puts_(b, "{\"x\":{\"y\":null},\"z\":[true]}");
    }
}

static void gen_string(int min, int max, buf *b) {
    static const char *const pieces[] = {"a", "Z", "9", " ", "\xc3\xa9", "\xe6\x97\xa5", "\\n", "\\\"", "\\u00e9", "-"};
    int n = min + (int)(rnd() % 6);
    if (max >= 0 && n > max) n = max;
    puts_(b, "\"");
    for (int i = 0; i < n; i++) puts_(b, pieces[rnd() % 10]);
    puts_(b, "\"");
}

/* A number of the schema: unbounded, a few forms; bounded, one within the
 * bounds as the grammar writes it (no exponent, 6 digits after the point at
 * most), often at an edge. */
/* A multiple of multipleOf within the bounds (near 0 without them), often at an edge. */
static void gen_multiple(const cJSON *s, buf *b) {
    const bounds bd = bounds_of(s);
    char *tm = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(s, "multipleOf"));
    __int128 dm;
    int em;
    decimal_of(tm, &dm, &em);
    free(tm);
    const double m = (double)dm * pow(10, em);
    const double lo = isinf(bd.lo) ? -2000 * m : bd.lo, hi = isinf(bd.hi) ? 2000 * m : bd.hi;
    for (;;) {
        const long long k0 = (long long)ceil(lo / m), k1 = (long long)floor(hi / m);
        const long long k = rnd() % 4 == 0 ? k0 : rnd() % 3 == 0 ? k1 : k0 + (long long)(rnd() % (unsigned long long)(k1 - k0 + 1));
        __int128 d = dm * k; /* the value: d x 10^em, written exactly */
        char digits[48], t[64];
        int n = 0;
        const int neg = d < 0;
        if (neg) d = -d;
        do digits[n++] = (char)('0' + (int)(d % 10)), d /= 10; while (d);
        while (n <= -em) digits[n++] = '0';
        int at = 0;
        if (neg) t[at++] = '-';
        for (int i = n - 1; i >= 0; i--) {
            t[at++] = digits[i];
            if (i == -em && i > 0) t[at++] = '.';
        }
        for (int i = 0; i < em; i++) t[at++] = '0';
        t[at] = 0;
        if (strchr(t, '.')) { /* trailing zeros of the fraction dropped */
            while (t[at - 1] == '0') t[--at] = 0;
            if (t[at - 1] == '.') t[--at] = 0;
        }
        if (in_bounds(s, strtod(t, NULL))) {
            puts_(b, t);
            return;
        }
    }
}

static void gen_number(const cJSON *s, int integer, buf *b) {
    const bounds bd = bounds_of(s);
    if (cJSON_GetObjectItemCaseSensitive(s, "multipleOf")) {
        gen_multiple(s, b);
        return;
    }
    if (isinf(bd.lo) && isinf(bd.hi)) {
        if (integer) puts_(b, rnd() % 2 ? "-407" : "0");
        else puts_(b, rnd() % 3 == 0 ? "3" : rnd() % 2 ? "-0.25" : "6.02E+23");
        return;
    }
    const double unit = integer ? 1 : 1e-6;
    const double lo = isinf(bd.lo) ? bd.hi - 5000 : bd.lo, hi = isinf(bd.hi) ? bd.lo + 5000 : bd.hi;
    for (;;) {
        const long long n0 = (long long)ceil(lo / unit), n1 = (long long)floor(hi / unit);
        long long k = rnd() % 4 == 0 ? n0 : rnd() % 3 == 0 ? n1 : n0 + (long long)(rnd() % (unsigned long long)(n1 - n0 + 1));
        char t[64];
        if (integer) snprintf(t, sizeof t, "%lld", k);
        else { /* k millionths, trailing zeros dropped */
            snprintf(t, sizeof t, "%s%lld.%06lld", k < 0 ? "-" : "", llabs(k) / 1000000, llabs(k) % 1000000);
            size_t n = strlen(t);
            while (t[n - 1] == '0') t[--n] = 0;
            if (t[n - 1] == '.') t[--n] = 0;
        }
        if (in_bounds(s, strtod(t, NULL))) {
            puts_(b, t);
            return;
        }
    }
}

/* A host name label of n characters (1-63): letters, digits, inner hyphens. */
static void gen_label(int n, char *t, size_t *k) {
    static const char an[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    for (int i = 0; i < n; i++) t[(*k)++] = i > 0 && i < n - 1 && rnd() % 5 == 0 ? '-' : an[rnd() % (sizeof an - 1)];
}

/* The formats of schema 8, often at an edge (63-character labels, "::" at
 * either end, a dotted quad at the end, every designator of a duration). */
static void gen_formatted2(const char *f, char *t) {
    size_t k = 0;
    t[k++] = '"';
    if (!strcmp(f, "hostname") || !strcmp(f, "email")) {
        if (!strcmp(f, "email")) {
            static const char at[] = "abcXYZ019!#$%&'*+/=?^_`{|}~-";
            for (int a = 0, na = 1 + (int)(rnd() % 3); a < na; a++) {
                if (a) t[k++] = '.';
                for (int i = 0, n = 1 + (int)(rnd() % 5); i < n; i++) t[k++] = at[rnd() % (sizeof at - 1)];
            }
            t[k++] = '@';
        }
        const int labels = (!strcmp(f, "email") ? 2 : 1) + (int)(rnd() % 3);
        for (int l = 0; l < labels; l++) {
            if (l) t[k++] = '.';
            gen_label(rnd() % 6 == 0 ? 63 : 1 + (int)(rnd() % 8), t, &k);
        }
    } else if (!strcmp(f, "ipv6")) { /* n groups (a quad for the last two), those from gap to gap + skip written "::" */
        static const char hx[] = "0123456789abcdefABCDEF";
        const int quad = rnd() % 4 == 0, n = quad ? 7 : 8; /* the quad: piece 6 */
        const int gap = rnd() % 2 ? -1 : (int)(rnd() % (unsigned)n), skip = gap < 0 ? 0 : 1 + (int)(rnd() % (unsigned)(n - gap));
        for (int g = 0; g < n; g++) {
            if (g == gap) {
                t[k++] = ':', t[k++] = ':';
                g += skip - 1;
                continue;
            }
            if (g > 0 && g != gap + skip) t[k++] = ':';
            if (quad && g == n - 1) k += (size_t)sprintf(t + k, "%d.%d.%d.%d", (int)(rnd() % 256), rnd() % 2 ? 255 : 0,
                                                         (int)(rnd() % 10), (int)(rnd() % 256));
            else
                for (int i = 0, nd = 1 + (int)(rnd() % 4); i < nd; i++) t[k++] = hx[rnd() % (sizeof hx - 1)];
        }
    } else { /* duration */
        static const char *const dates[] = {"Y", "YM", "YMD", "M", "MD", "D", ""}, *const times[] = {"H", "HM", "HMS", "M", "MS", "S"};
        t[k++] = 'P';
        if (rnd() % 8 == 0) k += (size_t)sprintf(t + k, "%uW", (unsigned)(rnd() % 60));
        else {
            const char *d = dates[rnd() % 7];
            for (; *d; d++) k += (size_t)sprintf(t + k, "%u%c", (unsigned)(rnd() % 1000), *d);
            if (t[k - 1] == 'P' || rnd() % 2) {
                t[k++] = 'T';
                for (const char *h = times[rnd() % 6]; *h; h++) k += (size_t)sprintf(t + k, "%u%c", (unsigned)(rnd() % 100), *h);
            }
        }
    }
    t[k++] = '"', t[k] = 0;
}

/* A string of a format, often at an edge (29 February, 23:59:59, 255). */
static void gen_formatted(const char *f, buf *b) {
    char t[600];
    if (!strcmp(f, "hostname") || !strcmp(f, "email") || !strcmp(f, "ipv6") || !strcmp(f, "duration")) {
        gen_formatted2(f, t);
        puts_(b, t);
        return;
    }
    const int y = rnd() % 3 == 0 ? 2000 + 4 * (int)(rnd() % 20) : 1000 + (int)(rnd() % 9000), m = 1 + (int)(rnd() % 12);
    const int d = rnd() % 3 == 0 ? month_days(y, m) : 1 + (int)(rnd() % (unsigned)month_days(y, m));
    char date[16], time[48], off[8] = "Z";
    snprintf(date, sizeof date, "%04d-%02d-%02d", y, m, d);
    if (rnd() % 2) snprintf(off, sizeof off, "%c%02d:%02d", rnd() % 2 ? '+' : '-', (int)(rnd() % 24), (int)(rnd() % 60));
    snprintf(time, sizeof time, "%02d:%02d:%02d%s%s", rnd() % 4 ? (int)(rnd() % 24) : 23, (int)(rnd() % 60),
             rnd() % 4 ? (int)(rnd() % 60) : 59, rnd() % 2 ? "" : rnd() % 2 ? ".5" : ".123456789", off);
    if (!strcmp(f, "date")) snprintf(t, sizeof t, "\"%s\"", date);
    else if (!strcmp(f, "time")) snprintf(t, sizeof t, "\"%s\"", time);
    else if (!strcmp(f, "date-time")) snprintf(t, sizeof t, "\"%sT%s\"", date, time);
    else if (!strcmp(f, "uuid")) {
        static const char hex[] = "0123456789abcdefABCDEF";
        int k = 0;
        t[k++] = '"';
        for (int i = 0; i < 36; i++) t[k++] = i == 8 || i == 13 || i == 18 || i == 23 ? '-' : hex[rnd() % 22];
        t[k++] = '"', t[k] = 0;
    } else snprintf(t, sizeof t, "\"%d.%d.%d.%d\"", (int)(rnd() % 256), rnd() % 2 ? 255 : 0, (int)(rnd() % 10), (int)(rnd() % 256));
    puts_(b, t);
}

static void gen_object(const cJSON *doc, const cJSON *s, int depth, buf *b) {
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(s, "properties"), *p;
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(s, "required");
    const cJSON *add = cJSON_GetObjectItemCaseSensitive(s, "additionalProperties");
    const cJSON *keys[80];
    int n = 0;
    cJSON_ArrayForEach(p, props) {
        int required = 0;
        const cJSON *r;
        cJSON_ArrayForEach(r, req) required |= !strcmp(r->valuestring, p->string);
        if (required || (depth < 3 && rnd() % 2)) keys[n++] = p;
    }
    for (int i = n - 1; i > 0; i--) { /* any order */
        int j = (int)(rnd() % (unsigned)(i + 1));
        const cJSON *t = keys[i];
        keys[i] = keys[j], keys[j] = t;
    }
    for (int i = 1; i < n; i++) /* but a tagged union's tag (schema 10's) first, as the grammar writes it */
        if (!strcmp(keys[i]->string, "pet_type")) {
            const cJSON *t = keys[0];
            keys[0] = keys[i], keys[i] = t;
        }
    puts_(b, "{");
    ws(b);
    for (int i = 0; i < n; i++) {
        if (i) puts_(b, ","), ws(b);
        puts_(b, "\""), puts_(b, keys[i]->string), puts_(b, "\":");
        ws(b);
        gen(doc, keys[i], depth + 1, b);
    }
    const int other = (cJSON_IsObject(add) || !props) && rnd() % 2;
    if (other) { /* another key */
        if (n) puts_(b, ",");
        puts_(b, "\"other\":");
        if (cJSON_IsObject(add)) gen(doc, add, depth + 1, b);
        else gen_any(depth, b);
    }
    if (n || other) ws(b); /* (one run of whitespace between two tokens) */
    puts_(b, "}");
}

static void gen(const cJSON *doc, const cJSON *s, int depth, buf *b) {
    s = resolve(doc, s);
    const cJSON *en = cJSON_GetObjectItemCaseSensitive(s, "enum"), *cst = cJSON_GetObjectItemCaseSensitive(s, "const");
    const cJSON *any = cJSON_GetObjectItemCaseSensitive(s, "anyOf");
    if (en || cst) {
        char *t = cJSON_PrintUnformatted(cst ? cst : cJSON_GetArrayItem(en, (int)(rnd() % (unsigned)cJSON_GetArraySize(en))));
        puts_(b, t);
        free(t);
        return;
    }
    if (any) return gen(doc, cJSON_GetArrayItem(any, (int)(rnd() % (unsigned)cJSON_GetArraySize(any))), depth, b);
    const char *t = type_of(s);
    const cJSON *mn = cJSON_GetObjectItemCaseSensitive(s, "minLength"), *mx = cJSON_GetObjectItemCaseSensitive(s, "maxLength");
    const cJSON *mi = cJSON_GetObjectItemCaseSensitive(s, "minItems"), *ma = cJSON_GetObjectItemCaseSensitive(s, "maxItems");
    if (!t) gen_any(depth, b);
    else if (!strcmp(t, "object")) gen_object(doc, s, depth, b);
    else if (!strcmp(t, "string") && format_of(s)) gen_formatted(format_of(s), b);
    else if (!strcmp(t, "string") && pattern_of(s)) { /* one of its examples */
        const cJSON *ex = cJSON_GetObjectItemCaseSensitive(s, "examples");
        char *x = cJSON_PrintUnformatted(cJSON_GetArrayItem(ex, (int)(rnd() % (unsigned)cJSON_GetArraySize(ex))));
        puts_(b, x);
        free(x);
    }
    else if (!strcmp(t, "string")) gen_string(mn ? mn->valueint : 0, mx ? mx->valueint : -1, b);
    else if (!strcmp(t, "integer") || !strcmp(t, "number")) gen_number(s, !strcmp(t, "integer"), b);
    else if (!strcmp(t, "boolean")) puts_(b, rnd() % 2 ? "true" : "false");
    else if (!strcmp(t, "null")) puts_(b, "null");
    else { /* array */
        int lo = mi ? mi->valueint : 0, hi = ma ? ma->valueint : lo + 3;
        if (depth >= 3) hi = lo;
        const int n = lo + (int)(rnd() % (unsigned)(hi - lo + 1));
        puts_(b, "[");
        for (int i = 0; i < n; i++) {
            if (i) puts_(b, ","), ws(b);
            gen(doc, cJSON_GetObjectItemCaseSensitive(s, "items"), depth + 1, b);
        }
        puts_(b, "]");
    }
}

/* ------------------------------------------------------------------------ */
/* Validator                                                                 */

static int utf8_chars(const char *s) {
    int n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xc0) != 0x80;
    return n;
}

static int valid(const cJSON *doc, const cJSON *s, const cJSON *v);

/* RFC 3339 full-date, full-time (an offset required), date-time; RFC 4122's
 * text form; dotted-quad IPv4 without leading zeros. */
static int valid_date(const char *x) {
    int y, m, d, n = -1;
    return strlen(x) == 10 && sscanf(x, "%4d-%2d-%2d%n", &y, &m, &d, &n) == 3 && n == 10 && x[4] == '-' &&
           x[7] == '-' && y >= 1 && m >= 1 && m <= 12 && d >= 1 && d <= month_days(y, m);
}

static int valid_time(const char *x) {
    int h, mi, se, n = -1;
    if (sscanf(x, "%2d:%2d:%2d%n", &h, &mi, &se, &n) != 3 || n != 8 || h > 23 || mi > 59 || se > 59) return 0;
    for (int i = 0; i < 8; i++)
        if (i % 3 == 2 ? x[i] != ':' : x[i] < '0' || x[i] > '9') return 0;
    x += 8;
    if (*x == '.') {
        int k = 0;
        while (x[1 + k] >= '0' && x[1 + k] <= '9') k++;
        if (k == 0) return 0;
        x += 1 + k;
    }
    if (!strcmp(x, "Z")) return 1;
    int oh, om;
    n = -1;
    return (*x == '+' || *x == '-') && sscanf(x + 1, "%2d:%2d%n", &oh, &om, &n) == 2 && n == 5 && x[1] >= '0' &&
           x[1] <= '9' && x[4] >= '0' && x[4] <= '9' && oh <= 23 && om <= 59;
}

/* RFC 4291 2.2's text forms of an IPv6 address: eight groups of 1-4 hex
 * digits, "::" once for one or more zero groups, a dotted quad for the last
 * two. Read by splitting, apart from the automaton. */
static int valid_ipv6(const char *x) {
    const char *dbl = strstr(x, "::");
    if (dbl && strstr(dbl + 1, "::")) return 0;
    int groups = 0;
    for (int side = 0; side < (dbl ? 2 : 1); side++) {
        const char *p = side ? dbl + 2 : x, *end = dbl && !side ? dbl : x + strlen(x);
        if (p == end) continue; /* "::" at an end */
        for (;;) {
            const char *q = p;
            while (q < end && *q != ':') q++;
            const size_t n = (size_t)(q - p);
            if (q == end && memchr(p, '.', n)) { /* the last piece: a dotted quad */
                char quad[20], again[20];
                unsigned a, b, c, d;
                if (n >= sizeof quad) return 0;
                memcpy(quad, p, n), quad[n] = 0;
                if (sscanf(quad, "%3u.%3u.%3u.%3u", &a, &b, &c, &d) != 4 || a > 255 || b > 255 || c > 255 || d > 255) return 0;
                snprintf(again, sizeof again, "%u.%u.%u.%u", a, b, c, d);
                if (strcmp(again, quad)) return 0;
                groups += 2;
                break;
            }
            if (n < 1 || n > 4) return 0;
            for (const char *r = p; r < q; r++)
                if (!strchr("0123456789abcdefABCDEF", *r)) return 0;
            groups++;
            if (q == end) break;
            p = q + 1;
            if (p == end) return 0; /* a single ':' at the end */
        }
    }
    return dbl ? groups <= 7 : groups == 8;
}

/* hostname (RFC 1123 labels, 253 characters at most, no final dot), email
 * (ajv's: a dot-atom, '@', two labels or more), duration (RFC 3339 appendix
 * A's ABNF, designators upper case): regular expressions from those texts. */
static const char *const re_hostname =
    "^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$";
static const char *const re_email =
    "^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
    "[A-Za-z0-9])?\\.)+[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$";
static const char *const re_duration =
    "^P(?:(?:\\d+Y(?:\\d+M(?:\\d+D)?)?|\\d+M(?:\\d+D)?|\\d+D)(?:T(?:\\d+H(?:\\d+M(?:\\d+S)?)?|\\d+M(?:\\d+S)?|\\d+S))?"
    "|T(?:\\d+H(?:\\d+M(?:\\d+S)?)?|\\d+M(?:\\d+S)?|\\d+S)|\\d+W)$";

static int valid_format(const char *f, const char *x) {
    if (!strcmp(f, "hostname")) return pattern_matches(re_hostname, x);
    if (!strcmp(f, "email")) return pattern_matches(re_email, x);
    if (!strcmp(f, "duration")) return pattern_matches(re_duration, x);
    if (!strcmp(f, "ipv6")) return valid_ipv6(x);
    if (!strcmp(f, "date")) return valid_date(x);
    if (!strcmp(f, "time")) return valid_time(x);
    if (!strcmp(f, "date-time")) {
        char d[11];
        if (strlen(x) < 11 || x[10] != 'T') return 0;
        memcpy(d, x, 10), d[10] = 0;
        return valid_date(d) && valid_time(x + 11);
    }
    if (!strcmp(f, "uuid")) {
        if (strlen(x) != 36) return 0;
        for (int i = 0; i < 36; i++)
            if (i == 8 || i == 13 || i == 18 || i == 23 ? x[i] != '-' : !strchr("0123456789abcdefABCDEF", x[i]) || !x[i])
                return 0;
        return 1;
    }
    /* ipv4: read back as it would be written */
    unsigned a, b2, c, d;
    char again[32];
    if (sscanf(x, "%3u.%3u.%3u.%3u", &a, &b2, &c, &d) != 4 || a > 255 || b2 > 255 || c > 255 || d > 255) return 0;
    snprintf(again, sizeof again, "%u.%u.%u.%u", a, b2, c, d);
    return !strcmp(again, x);
}

static int valid_type(const cJSON *doc, const cJSON *s, const char *t, const cJSON *v) {
    if (!strcmp(t, "null")) return cJSON_IsNull(v);
    if (!strcmp(t, "boolean")) return cJSON_IsBool(v);
    if (!strcmp(t, "number")) return cJSON_IsNumber(v) && in_bounds(s, v->valuedouble);
    if (!strcmp(t, "integer"))
        return cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble) && in_bounds(s, v->valuedouble);
    if (!strcmp(t, "string")) {
        const cJSON *mn = cJSON_GetObjectItemCaseSensitive(s, "minLength"), *mx = cJSON_GetObjectItemCaseSensitive(s, "maxLength");
        return cJSON_IsString(v) && (!mn || utf8_chars(v->valuestring) >= mn->valueint) &&
               (!mx || utf8_chars(v->valuestring) <= mx->valueint) &&
               (!format_of(s) || valid_format(format_of(s), v->valuestring)) &&
               (!pattern_of(s) || pattern_matches(pattern_of(s), v->valuestring));
    }
    if (!strcmp(t, "array")) {
        const cJSON *mi = cJSON_GetObjectItemCaseSensitive(s, "minItems"), *ma = cJSON_GetObjectItemCaseSensitive(s, "maxItems");
        const cJSON *items = cJSON_GetObjectItemCaseSensitive(s, "items"), *x;
        if (!cJSON_IsArray(v)) return 0;
        const int n = cJSON_GetArraySize(v);
        if ((mi && n < mi->valueint) || (ma && n > ma->valueint)) return 0;
        cJSON_ArrayForEach(x, v) if (items && !valid(doc, items, x)) return 0;
        return 1;
    }
    /* object */
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(s, "properties"), *req = cJSON_GetObjectItemCaseSensitive(s, "required");
    const cJSON *add = cJSON_GetObjectItemCaseSensitive(s, "additionalProperties"), *x, *r;
    if (!cJSON_IsObject(v)) return 0;
    cJSON_ArrayForEach(r, req) if (!cJSON_GetObjectItemCaseSensitive(v, r->valuestring)) return 0;
    cJSON_ArrayForEach(x, v) {
        const cJSON *ps = cJSON_GetObjectItemCaseSensitive(props, x->string);
        int times = 0;
        for (const cJSON *y = v->child; y; y = y->next) times += !strcmp(y->string, x->string);
        if (ps && times > 1) return 0; /* a property twice */
        if (ps ? !valid(doc, ps, x) : cJSON_IsFalse(add) ? 0 : cJSON_IsObject(add) ? !valid(doc, add, x) : 0) return 0;
    }
    return 1;
}

static int valid(const cJSON *doc, const cJSON *s, const cJSON *v) {
    s = resolve(doc, s);
    if (cJSON_IsTrue(s) || !s->child) return 1;
    const cJSON *en = cJSON_GetObjectItemCaseSensitive(s, "enum"), *cst = cJSON_GetObjectItemCaseSensitive(s, "const");
    const cJSON *any = cJSON_GetObjectItemCaseSensitive(s, "anyOf"), *x;
    if (en || cst) {
        char *t = cJSON_PrintUnformatted(v);
        int ok = 0;
        for (x = cst ? cst : en->child; x && !ok; x = cst ? NULL : x->next) {
            char *u = cJSON_PrintUnformatted(x);
            ok = !strcmp(t, u);
            free(u);
        }
        free(t);
        return ok;
    }
    if (any) {
        cJSON_ArrayForEach(x, any) if (valid(doc, x, v)) return 1;
        return 0;
    }
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(s, "type");
    if (cJSON_IsArray(t)) {
        cJSON_ArrayForEach(x, t) if (valid_type(doc, s, x->valuestring, v)) return 1;
        return 0;
    }
    if (cJSON_IsString(t)) return valid_type(doc, s, t->valuestring, v);
    if (cJSON_GetObjectItemCaseSensitive(s, "properties")) return valid_type(doc, s, "object", v);
    if (cJSON_IsString(v) && format_of(s)) return valid_format(format_of(s), v->valuestring); /* formats: strings only */
    if (cJSON_IsString(v) && pattern_of(s)) return pattern_matches(pattern_of(s), v->valuestring);
    return !cJSON_IsNumber(v) || in_bounds(s, v->valuedouble); /* bounds hold numbers only */
}

/* A document: one JSON object (the strict grammar) that the schema accepts. */
static int valid_doc(const cJSON *doc, const char *text, size_t n) {
    if (!validate(text, n)) return 0;
    cJSON *v = cJSON_ParseWithLength(text, n);
    const int ok = v && valid(doc, doc, v);
    cJSON_Delete(v);
    return ok;
}

/* ------------------------------------------------------------------------ */
/* Tests                                                                     */

static int feed_all(const dsc_json_schema *s, const char *text, int *complete) {
    dsc_schema_state st;
    dsc_schema_start(s, &st);
    const int ok = dsc_schema_feed(s, &st, text, strlen(text)) == 0;
    *complete = ok && dsc_schema_complete(&st);
    return ok;
}

static void test_refused(void) {
    static const char *const bad[][2] = {
        {"{\"type\":\"object\",\"properties\":{\"e\":{\"type\":\"string\",\"pattern\":\"^(?!a)\"}}}", "lookaround"},
        {"{\"type\":\"object\",\"properties\":{\"e\":{\"type\":\"string\",\"pattern\":\"(a)\\\\1\"}}}", "backreferences"},
        {"{\"type\":\"object\",\"properties\":{\"e\":{\"type\":\"string\",\"pattern\":\"a^b\"}}}", "anchors"},
        {"{\"type\":\"object\",\"properties\":{\"e\":{\"type\":\"string\",\"pattern\":\"[a-z]{50}x{20}\"}}}", "positions"},
        {"{\"type\":\"object\",\"properties\":{\"e\":{\"type\":\"string\",\"pattern\":\"^\\\\t$\"}}}", "no string"},
        {"{\"type\":\"object\",\"properties\":{\"e\":{\"type\":\"string\",\"pattern\":\"a\",\"maxLength\":3}}}", "beside 'pattern'"},
        {"{\"type\":\"object\",\"properties\":{\"e\":{\"type\":\"string\",\"pattern\":7}}}", "must be a string"},
        {"{\"type\":\"object\",\"properties\":{\"d\":{\"type\":\"string\",\"format\":\"uri\"}}}", "#/properties/d: format 'uri'"},
        {"{\"type\":\"object\",\"properties\":{\"d\":{\"type\":\"string\",\"format\":\"date\",\"maxLength\":8}}}", "beside 'format'"},
        {"{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\",\"multipleOf\":0.5}}}", "a whole number"},
        {"{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"number\",\"multipleOf\":0.0000001}}}", "6 digits"},
        {"{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"number\",\"multipleOf\":0}}}", "above 0"},
        {"{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"number\",\"multipleOf\":\"2\"}}}", "above 0"},
        {"{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\",\"multipleOf\":7,\"minimum\":1,\"maximum\":6}}}",
         "multiple of its multipleOf"},
        {"{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\",\"exclusiveMinimum\":true}}}", "draft 4"},
        {"{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"number\",\"minimum\":2,\"maximum\":1.5}}}", "#/properties/n: no number"},
        {"{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\",\"minimum\":2.5,\"maximum\":2.9}}}", "no integer"},
        {"{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"number\",\"minimum\":1e-7,\"maximum\":9e-7}}}", "6 after"},
        {"{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\",\"minimum\":1e15}}}", "15 digits"},
        {"{\"type\":\"object\",\"properties\":{\"n\":{\"enum\":[1,2],\"maximum\":1}}}", "beside"},
        {"{\"type\":\"array\"}", "root"},
        {"{\"type\":\"object\",\"properties\":{\"x\":{\"anyOf\":[{\"type\":\"integer\"},{\"type\":\"number\"}]}}}", "alike"},
        {"{\"type\":\"object\",\"properties\":{\"x\":{\"anyOf\":[{\"enum\":[\"a\"]},{\"type\":\"string\"}]}}}", "alike"},
        /* objects without a property each fixes to its own value: no tag */
        {"{\"type\":\"object\",\"properties\":{\"x\":{\"anyOf\":[{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\"}}},"
         "{\"type\":\"object\",\"properties\":{\"b\":{\"type\":\"string\"}}}]}}}", "alike"},
        {"{\"type\":\"object\",\"properties\":{\"x\":{\"anyOf\":[{\"type\":\"object\",\"properties\":{\"t\":{\"const\":1}}},"
         "{\"type\":\"object\",\"properties\":{\"t\":{\"const\":1}}}]}}}", "alike"},
        {"{\"type\":\"object\",\"properties\":{\"x\":{\"$ref\":\"#/$defs/None\"}}}", "'$ref'"},
        {"{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"array\",\"minItems\":3,\"maxItems\":2}}}", "minItems"},
        {"{\"type\":\"object\",\"properties\":{\"x\":{\"enum\":[]}}}", "'enum'"},
        {"{\"type\":\"object\",\"required\":[\"nope\"],\"properties\":{}}", "'required'"},
        {"{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"date\"}}}", "type 'date'"},
        {"{\"type\":\"object\",\"properties\":{\"q\\\"\":{}}}", "quote"},
        {"[1,2", "not JSON"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dsc_json_schema *s = NULL;
        const dsc_status st = dsc_json_schema_new(bad[i][0], strlen(bad[i][0]), &s);
        CHECK(st == DSC_ERR_ARG && !s && strstr(dsc_last_error(), bad[i][1]), "refused %s: %s", bad[i][0], dsc_last_error());
    }
    /* a pattern repeating nothing in depth: compiled at once (each repetition of no character spelled out
     * once; 64^4 times took minutes), and it means a+ */
    const char *deep = "{\"type\":\"object\",\"properties\":{\"x\":{\"pattern\":\"^((((){64}){64}){64}){64}a+$\"}}}";
    dsc_json_schema *s = NULL;
    int complete = 0;
    CHECK(dsc_json_schema_new(deep, strlen(deep), &s) == DSC_OK && feed_all(s, "{\"x\":\"aa\"}", &complete) && complete &&
              !feed_all(s, "{\"x\":\"\"}", &complete),
          "a pattern of nested repetitions of nothing");
    dsc_json_schema_free(s);
}


static void test_cases(void) {
    static const struct {
        int schema;
        const char *text;
        int complete; /* -1: refused on the way */
    } cases[] = {
        {0, "{\"name\":\"bo\",\"age\":3,\"tags\":[\"a\"]}", 1},
        {0, "{\"tags\":[\"c\",\"a\"],\"age\":-0,\"name\":\"x\",\"ok\":false,\"score\":null}", 1},
        {0, "{\"name\":\"bo\",\"age\":3}", -1},                          /* '}' before tags */
        {0, "{\"name\":\"bo\",\"age\":3.5", -1},                          /* an integer */
        {0, "{\"name\":\"123456789\"", -1},                               /* maxLength 8 */
        {0, "{\"name\":\"\"", -1},                                        /* minLength 1 */
        {0, "{\"name\":\"x\",\"name\"", -1},                              /* given twice */
        {0, "{\"nom\"", -1},                                              /* not a property */
        {0, "{\"age\":1,\"name\":\"x\",\"tags\":[]", -1},                 /* minItems 1 */
        {0, "{\"age\":1,\"name\":\"x\",\"tags\":[\"a\",\"b\",\"c\",", -1}, /* maxItems 3 */
        {0, "{\"age\":1,\"name\":\"x\",\"tags\":[\"d\"", -1},             /* enum */
        {0, "{\"age\":1,\"name\":\"x\",\"tags\":[\"a\"],\"score\":1e3}", 1},
        {0, "{\"age\":1,\"name\":\"x\",\"tags\":[\"a\"],\"ok\":null", -1},
        {0, "{\"age\":1,\"name\":\"x\",\"tags\":[\"a\"],\"ok\":true,\"score\":1,\"name\"", -1},
        {0, "{\"age\":1,\"name\":\"x\",\"tags\":[\"a\"],\"ok\":true,\"score\":1,", -1}, /* no property left */
        {1, "{\"kind\":12,\"addr\":{\"zip\":null,\"city\":\"Oslo\"}}", 1},
        {1, "{\"kind\":1 ,\"addr\":{\"zip\":\"0150\",\"city\":\"Os\"}}", 1},
        {1, "{\"kind\":13", -1},
        {1, "{\"kind\":\"hom\"", -1},
        {1, "{\"kind\":true,\"addr\":{\"city\":\"O\"", -1},
        {1, "{\"addr\":{\"city\":\"Oslo\",\"zip\":0", -1},
        {1, "{\"kind\":null,\"alt\":[],\"addr\":{\"city\":\"ab\",\"zip\":\"\"}}", 1},
        {2, "{\"abc\":\"x-1\",\"a\":1,\"ab\":\"s\",\"zz\":2.5,\"meta\":[{}]}", 1},
        {2, "{\"abc\":\"x-2\"", -1},
        {2, "{\"a\":1,\"zz\":\"s\"", -1}, /* other keys: numbers */
        {2, "{\"ab\":\"s\"}", -1},        /* abc required */
        {3, "{\"v\":1,\"kids\":[{\"v\":2,\"kids\":[]},{\"v\":3,\"kids\":[{\"v\":4}]}]}", 1},
        {3, "{\"v\":1,\"kids\":[{\"v\":2},{\"v\":3},", -1},
        {4, "{\"a\":[1,{\"b\":null}],\"a\":\"twice is JSON\"}", 1},
        {4, " {}", 1},
        {4, "  {}", -1},
        {4, "{} x", -1},
        {5, "{\"age\":0,\"p\":1.0,\"t\":-40.499999,\"n\":-1,\"big\":1000.25}", 1},
        {5, "{\"age\":120,\"p\":0,\"t\":59.999999,\"n\":null,\"big\":2e3}", -1},  /* big: no exponent */
        {5, "{\"age\":120,\"p\":0.000001,\"t\":0,\"n\":-2,\"big\":99999,\"tiny\":0.100002}", 1},
        {5, "{\"age\":-0,\"p\":-0,\"t\":-0,\"n\":-2,\"big\":1000.3}", 1},
        {5, "{\"age\":121", -1},           /* maximum 120 */
        {5, "{\"age\":-1", -1},            /* minimum 0 */
        {5, "{\"age\":1.0", -1},           /* an integer */
        {5, "{\"age\":12", 0},             /* 12, or 120 */
        {5, "{\"age\":1200", -1},
        {5, "{\"p\":1.000001", -1},        /* maximum 1 */
        {5, "{\"p\":0.9999999", -1},       /* 6 digits after the point */
        {5, "{\"p\":1e0", -1},             /* no exponent */
        {5, "{\"t\":-40.5", -1},           /* exclusiveMinimum: -40.5 and below */
        {5, "{\"t\":-40.50", -1},
        {5, "{\"t\":60", -1},              /* exclusiveMaximum */
        {5, "{\"t\":6", 0},                /* 6 or 6.x or 59.x: goes on */
        {5, "{\"n\":-3", -1},              /* exclusiveMinimum -3 */
        {5, "{\"n\":0", -1},               /* maximum -1 */
        {5, "{\"n\":-1,", 0},
        {5, "{\"big\":1000.24", -1},       /* 1000.24x < 1000.25 */
        {5, "{\"big\":1000.2", 0},         /* 1000.25 to 1000.29 */
        {5, "{\"big\":1000.25,", 0},
        {5, "{\"big\":999", 0},            /* 9990 and up */
        {5, "{\"big\":123456789012345.1", -1}, /* 16 significant digits */
        {5, "{\"tiny\":0.1,", -1},         /* exclusiveMinimum 0.1 */
        {5, "{\"tiny\":0.100001,", 0},
        {5, "{\"tiny\":0.100003", -1},     /* maximum 0.100002 */
        {6, "{\"d\":\"2024-02-29\",\"dt\":\"1999-12-31T23:59:59.5+05:30\",\"id\":\"123e4567-E89B-12d3-a456-426614174000\","
            "\"ip\":\"255.0.10.1\",\"t\":\"00:00:00Z\"}", 1},
        {6, "{\"d\":\"2023-02-29", -1},         /* not a leap year */
        {6, "{\"d\":\"2100-02-29", -1},         /* nor 2100 */
        {6, "{\"d\":\"2000-02-29\"", 0},       /* but 2000 */
        {6, "{\"d\":\"2023-04-31", -1},         /* April: 30 days */
        {6, "{\"d\":\"2023-13", -1},
        {6, "{\"d\":\"2023-00", -1},
        {6, "{\"d\":\"2023-1-", -1},
        {6, "{\"d\":\"0999", -1},               /* years from 1000 */
        {6, "{\"d\":\"2023-01-01T", -1},        /* a date alone */
        {6, "{\"d\":\"2023-01-0\"", -1},
        {6, "{\"t\":\"24", -1},
        {6, "{\"t\":\"12:60", -1},
        {6, "{\"t\":\"12:00:00\"", -1},        /* an offset or Z needed */
        {6, "{\"t\":\"12:00:00.\"", -1},
        {6, "{\"t\":\"12:00:00.Z", -1},         /* a digit after the point */
        {6, "{\"t\":\"12:00:00.1234567890", -1}, /* 9 at most */
        {6, "{\"t\":\"12:00:00+24", -1},
        {6, "{\"t\":\"12:00:00z", -1},
        {6, "{\"dt\":\"2024-01-01 00", -1},     /* T */
        {6, "{\"dt\":\"2024-01-01T00:00:00-00:00\"", 0},
        {6, "{\"id\":\"123e4567e", -1},         /* a dash at 8 */
        {6, "{\"id\":\"123e4567-e89g", -1},
        {6, "{\"id\":\"123e4567-e89b-12d3-a456-4266141740001", -1},
        {6, "{\"ip\":\"192.168.00", -1},         /* no leading zero */
        {6, "{\"ip\":\"256", -1},
        {6, "{\"ip\":\"1.2.3\"", -1},
        {6, "{\"ip\":\"1.2.3.4.", -1},
        {6, "{\"ip\":null,", 0},
        {6, "{\"ip\":\"\\u0031", -1},         /* no escapes in a format */
        {7, "{\"sku\":\"ABC-12\",\"ver\":\"v0.10.2-beta\",\"tag\":\"zbbc\"}", 1},
        {7, "{\"ver\":null,\"sku\":\"XYZ-9999\"}", 1},
        {7, "{\"sku\":\"ABC-1\"", -1},            /* 2 to 4 digits */
        {7, "{\"sku\":\"ABC-12345", -1},
        {7, "{\"sku\":\"AbC", -1},
        {7, "{\"sku\":\"ABC-123\\", -1},          /* no escapes */
        {7, "{\"ver\":\"01", -1},                   /* no leading zero */
        {7, "{\"ver\":\"1.2\"", -1},
        {7, "{\"ver\":\"1.2.3-\"", -1},
        {7, "{\"ver\":\"1.2.3-rc\"", 0},
        {7, "{\"tag\":\"abc\"", 0},               /* b+c anywhere */
        {7, "{\"tag\":\"ac\"", -1},
        {7, "{\"tag\":\"\xc3\xa9" "bc", -1},      /* ASCII only */
        {8, "{\"h\":\"a-1.Example.org\",\"e\":\"first.o'neil+x@mail-1.example.co\",\"v6\":\"2001:DB8::ff00:42:8329\","
            "\"du\":\"P1Y2M10DT2H30M\"}", 1},
        {8, "{\"h\":\"x\",\"e\":\"a@b.c\",\"v6\":\"::\",\"du\":null}", 1},
        {8, "{\"v6\":\"::ffff:192.0.2.128\",", 0},
        {8, "{\"v6\":\"1:2:3:4:5:6:7:8\",", 0},
        {8, "{\"v6\":\"1:2:3:4:5:6:1.2.3.4\",", 0},
        {8, "{\"v6\":\"1:2:3:4:5:6:7::\",", 0},
        {8, "{\"v6\":\"::1:2:3:4:5:6:7\",", 0},
        {8, "{\"v6\":\"::1:2:3:4:5:6:7:", -1},      /* an eighth beside "::" */
        {8, "{\"v6\":\"1:2:3:4:5:6:7\"", -1},      /* seven groups, no "::" */
        {8, "{\"v6\":\"1:2:3:4:5:6:7:8:", -1},      /* a ninth */
        {8, "{\"v6\":\"1::2::", -1},                /* "::" twice */
        {8, "{\"v6\":\"1:2:3:4:5:6:7::8", -1},      /* "::" for no group */
        {8, "{\"v6\":\"12345", -1},
        {8, "{\"v6\":\":1", -1},
        {8, "{\"v6\":\"::1:\"", -1},
        {8, "{\"v6\":\"1:2:3:4:5:1.2", -1},         /* a quad after five groups, without "::" */
        {8, "{\"v6\":\"::01.", -1},                 /* a leading zero in an octet */
        {8, "{\"v6\":\"::256.", -1},
        {8, "{\"v6\":\"::a.", -1},
        {8, "{\"h\":\"-a", -1},
        {8, "{\"h\":\"a-\"", -1},
        {8, "{\"h\":\"a-.", -1},
        {8, "{\"h\":\"a..", -1},
        {8, "{\"h\":\"a.\"", -1},                  /* no final dot */
        {8, "{\"h\":\"a_b", -1},
        {8, "{\"h\":\"0123456789012345678901234567890123456789012345678901234567890123", -1}, /* a 64th */
        {8, "{\"h\":\"01234567890123456789012345678901234567890123456789012345678901-", -1}, /* '-' as the 63rd: no room to end */
        {8, "{\"h\":\"0123456789012345678901234567890123456789012345678901234567890-", 0},  /* as the 62nd: one more fits */
        {8, "{\"e\":\"a@b\"", -1},                 /* two labels at least */
        {8, "{\"e\":\".a", -1},
        {8, "{\"e\":\"a..", -1},
        {8, "{\"e\":\"a@@", -1},
        {8, "{\"e\":\"a b", -1},
        {8, "{\"e\":\"a@-b", -1},
        {8, "{\"e\":\"a@b.c-\"", -1},
        {8, "{\"du\":\"P\"", -1},
        {8, "{\"du\":\"PT\"", -1},
        {8, "{\"du\":\"P1DT\"", -1},
        {8, "{\"du\":\"P1Y1D", -1},                 /* months between */
        {8, "{\"du\":\"PT1H1S", -1},                /* minutes between */
        {8, "{\"du\":\"P1W1", -1},                  /* weeks alone */
        {8, "{\"du\":\"P1D1", -1},                  /* nothing after days but T */
        {8, "{\"du\":\"P1.5D", -1},
        {8, "{\"du\":\"p1D", -1},
        {8, "{\"du\":\"P4W\",", 0},
        {8, "{\"du\":\"PT36H\",", 0},
        {8, "{\"du\":\"P0D\",", 0},
        {9, "{\"q\":-1.75,\"even\":-4,\"cents\":19.99,\"seven\":1008,\"tenth\":-0.3}", 1},
        {9, "{\"q\":3,\"even\":0,\"cents\":0.01,\"seven\":1001,\"tenth\":null}", 1},
        {9, "{\"q\":0.3", -1},           /* 0.3x: no multiple of 0.25 */
        {9, "{\"q\":0.2", 0},            /* 0.25 */
        {9, "{\"q\":0.25,", 0},
        {9, "{\"q\":0.5,", 0},
        {9, "{\"q\":0.50,", 0},
        {9, "{\"q\":3.25", -1},          /* maximum 3 */
        {9, "{\"q\":-2.25", -1},
        {9, "{\"even\":3,", -1},
        {9, "{\"even\":3", 0},           /* 30, 32, ... */
        {9, "{\"even\":1.", -1},         /* an integer */
        {9, "{\"cents\":0.001", -1},
        {9, "{\"cents\":0,", -1},        /* exclusiveMinimum 0 */
        {9, "{\"cents\":0.10,", 0},
        {9, "{\"seven\":1002", -1},      /* 1001 and 1008 only */
        {9, "{\"seven\":100", 0},
        {9, "{\"seven\":1008,", 0},
        {9, "{\"tenth\":1.23", -1},
        {9, "{\"tenth\":1e1", -1},       /* no exponent */
        {9, "{\"tenth\":-0.7,", 0},
        {10, "{\"pet\":{\"pet_type\":\"dog\",\"barks\":true,\"name\":\"Rex\"},\"pets\":[{\"pet_type\":\"cat\",\"meows\":3},null]}", 1},
        {10, "{\"pet\":{\"pet_type\":\"lizard\",\"other\"", -1}, /* properties given: no other keys written */
        {10, "{\"pet\":{\"pet_type\":\"lizard\",\"scales\":-2}}", 1},
        {10, "{\"pet\":{\"pet_type\":\"lizard\"}}", 1},
        {10, "{\"pet\":{\"barks\"", -1},                 /* the tag first */
        {10, "{\"pet\":{}", -1},
        {10, "{\"pet\":{\"pet_type\":\"cow\"", -1},
        {10, "{\"pet\":{\"pet_type\":\"cat\",\"barks\"", -1}, /* a Cat does not bark */
        {10, "{\"pet\":{\"pet_type\":\"cat\",\"pet_type\"", -1}, /* the tag once */
        {10, "{\"pet\":{\"pet_type\":\"cat\"}", -1},    /* meows required */
        {10, "{\"pet\":{\"pet_type\":\"cat\",\"meows\":10", -1},
        {10, "{\"pet\":{\"pet_type\":\"dog\",\"name\":\"Rexie\"", -1},
        {10, "{\"pets\":[{\"pet_type\":\"lizard\"", -1}, /* not among the items' alternatives */
        {10, "{\"pets\":[null,{\"pet_type\":\"dog\",\"barks\":false}],\"pet\":{\"pet_type\":\"cat\",\"meows\":0}}", 1},
    };
    dsc_json_schema *s[N_SCHEMAS];
    for (int i = 0; i < N_SCHEMAS; i++)
        CHECK(dsc_json_schema_new(schemas[i], strlen(schemas[i]), &s[i]) == DSC_OK, "schema %d: %s", i, dsc_last_error());
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int complete;
        const int ok = feed_all(s[cases[i].schema], cases[i].text, &complete);
        CHECK(cases[i].complete < 0 ? !ok : ok && complete == cases[i].complete, "schema %d: %s", cases[i].schema,
              cases[i].text);
    }
    for (int i = 0; i < N_SCHEMAS; i++) dsc_json_schema_free(s[i]);
}

static void test_generated(void) {
    long docs = 0, prefixes_ok = 1, mutants = 0, accepted = 0, unsound = 0;
    for (int i = 0; i < N_SCHEMAS; i++) {
        cJSON *doc = cJSON_Parse(schemas[i]);
        dsc_json_schema *s;
        if (dsc_json_schema_new(schemas[i], strlen(schemas[i]), &s)) continue;
        buf b = {0};
        int all_ok = 1, all_valid = 1;
        for (int k = 0; k < 400; k++, docs++) {
            b.n = 0;
            gen(doc, doc, 0, &b);
            all_valid &= valid_doc(doc, b.b, b.n);
            dsc_schema_state st;
            dsc_schema_start(s, &st);
            for (size_t j = 0; j < b.n; j++) { /* byte by byte: every proper prefix incomplete */
                if (dsc_schema_feed(s, &st, b.b + j, 1)) {
                    all_ok = 0;
                    break;
                }
                if (j + 1 < b.n && dsc_schema_complete(&st)) prefixes_ok = 0;
            }
            all_ok &= dsc_schema_complete(&st);
            /* mutants: a byte changed, or the text cut */
            for (int m = 0; m < 20; m++, mutants++) {
                char *t = malloc(b.n + 1);
                memcpy(t, b.b, b.n + 1);
                size_t n = b.n;
                if (m % 5 == 4) n = rnd() % b.n;
                else {
                    static const char alphabet[] = "{}[]\":,0-9.eaxn \\tu\xc3";
                    t[rnd() % n] = alphabet[rnd() % (sizeof alphabet - 1)];
                }
                dsc_schema_start(s, &st);
                if (dsc_schema_feed(s, &st, t, n) == 0 && dsc_schema_complete(&st)) {
                    accepted++;
                    if (!valid_doc(doc, t, n)) {
                        if (unsound++ < 3) fprintf(stderr, "schema %d accepted an invalid document: %.*s\n", i, (int)n, t);
                    }
                }
                free(t);
            }
        }
        CHECK(all_valid, "schema %d: the generated documents are valid (the generator and validator agree)", i);
        CHECK(all_ok, "schema %d: 400 generated documents accepted whole, complete", i);
        free(b.b);
        dsc_json_schema_free(s);
        cJSON_Delete(doc);
    }
    CHECK(prefixes_ok, "no proper prefix complete");
    CHECK(unsound == 0 && accepted > 100, "of %ld mutants, %ld complete, all valid (%ld not)", mutants, accepted, unsound);
    printf("schema recognizer: %ld generated documents, %ld mutants (%ld still complete and valid)\n", docs, mutants,
           accepted);
}

/* Strings of property "s" of schema sc against a definition: `count`
 * random strings over alpha (0 to max characters), each to be taken whole
 * exactly when valid(def, it) says so (c->unsound and c->incomplete count
 * the exceptions) and, taken so far, to have some character that goes on
 * (c->dead counts those that have none). */
typedef struct {
    long strings, valid, unsound, incomplete, dead;
} str_counts;

static void random_strings(const dsc_json_schema *sc, const char *what, const char *alpha, int max, int count,
                           int (*valid)(const char *def, const char *x), const char *def, str_counts *c) {
    for (int k = 0; k < count; k++, c->strings++) {
        char str[32], text[64];
        const int n = (int)(rnd() % (unsigned)(max + 1));
        for (int j = 0; j < n; j++) str[j] = alpha[rnd() % strlen(alpha)];
        str[n] = 0;
        snprintf(text, sizeof text, "{\"s\":\"%s\"}", str);
        int complete;
        const int ok = feed_all(sc, text, &complete) && complete, v = valid(def, str);
        dsc_schema_state st;
        dsc_schema_start(sc, &st);
        if (dsc_schema_feed(sc, &st, text, strlen(text) - 2) == 0) { /* taken so far (the quote open): it goes on */
            int next = 0;
            for (unsigned ch = 0x20; ch < 0x7f && !next; ch++) {
                dsc_schema_state t = st;
                const char b = (char)ch;
                next = dsc_schema_feed(sc, &t, &b, 1) == 0;
            }
            if (!next && c->dead++ < 3) fprintf(stderr, "%s: \"%s\" taken, then nothing\n", what, str);
        }
        c->valid += v;
        if (ok && !v && c->unsound++ < 3) fprintf(stderr, "%s: took \"%s\", not valid\n", what, str);
        if (v && !ok && c->incomplete++ < 3) fprintf(stderr, "%s: refused \"%s\", valid\n", what, str);
    }
}

/* Patterns against PCRE2 on random strings over their alphabets: what the
 * recognizer takes whole PCRE2 matches (sound), and what PCRE2 matches the
 * recognizer takes (complete; these patterns are not made stricter). The
 * patterns as JSON string contents. */
static void test_patterns(void) {
    static const char *const pats[][2] = {
        {"^[A-Z]{3}-\\\\d{2,4}$", "ABZ-019x"},
        {"b+c", "abc "},
        {"^(ab|a)*c?$", "abc"},
        {"^v?(0|[1-9]\\\\d*)(\\\\.(0|[1-9]\\\\d*)){2}$", "v0129."},
        {"^[^a-c]x*$", "abcx-"},
        {"^\\\\w+@\\\\w+\\\\.(com|org)$", "a@.comrgx"},
        {"^.{2,3}$", "ab"},
        {"(x|yz)+w?", "xyzw"},
        {"^(?:\\\\s|-)?\\\\d+(?:\\\\.\\\\d{1,2})?$", " -1.5"},
        {"^[\\\\-+]?x{1,3}?$", "-+x"},
        {"^(a\\\\t|b)x?$", "abx"}, /* "a" leads nowhere the grammar writes */
        {"^((){64}){64}a+$", "ab"}, /* repeated nothing: spelled out once */
    };
    str_counts c = {0};
    for (size_t i = 0; i < sizeof pats / sizeof pats[0]; i++) {
        char schema[512];
        snprintf(schema, sizeof schema, "{\"type\":\"object\",\"properties\":{\"s\":{\"type\":\"string\",\"pattern\":\"%s\"}}}",
                 pats[i][0]);
        dsc_json_schema *s;
        if (dsc_json_schema_new(schema, strlen(schema), &s)) {
            CHECK(0, "pattern %s: %s", pats[i][0], dsc_last_error());
            continue;
        }
        char pattern[128]; /* the pattern itself: the JSON string's escapes undone */
        cJSON *doc = cJSON_Parse(schema);
        snprintf(pattern, sizeof pattern, "%s",
                 pattern_of(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(doc, "properties"), "s")));
        cJSON_Delete(doc);
        random_strings(s, pattern, pats[i][1], 8, 4000, pattern_matches, pattern, &c);
        dsc_json_schema_free(s);
    }
    CHECK(c.dead == 0, "patterns: every string taken so far goes on (%ld dead ends)", c.dead);
    CHECK(c.unsound == 0 && c.incomplete == 0 && c.valid > 1000,
          "patterns: of %ld random strings, %ld matched by PCRE2, all taken whole, no other (%ld taken but not matched, "
          "%ld matched but refused)", c.strings, c.valid, c.unsound, c.incomplete);
    printf("patterns: %ld random strings, %ld matched by PCRE2, the same taken whole by the recognizer\n", c.strings,
           c.valid);
}

/* The formats of schema 8 against their definitions (valid_format) on
 * random strings over alphabets of their characters: taken whole exactly
 * when valid, and every string taken so far can go on. */
static void test_formats(void) {
    static const char *const fmts[][3] = {
        {"hostname", "ab9-.", "14"},  {"email", "a1.-@", "14"},      {"ipv6", "0a1f:.:", "16"},
        {"ipv6", "::255.1ab", "20"}, {"ipv6", "1:1::", "24"},  {"duration", "PT1YMDHSW", "10"}, {"duration", "PT12MS", "8"},
    };
    str_counts c = {0};
    for (size_t i = 0; i < sizeof fmts / sizeof fmts[0]; i++) {
        char schema[160];
        snprintf(schema, sizeof schema, "{\"type\":\"object\",\"properties\":{\"s\":{\"type\":\"string\",\"format\":\"%s\"}}}",
                 fmts[i][0]);
        dsc_json_schema *s;
        if (dsc_json_schema_new(schema, strlen(schema), &s)) {
            CHECK(0, "format %s: %s", fmts[i][0], dsc_last_error());
            continue;
        }
        random_strings(s, fmts[i][0], fmts[i][1], atoi(fmts[i][2]), 8000, valid_format, fmts[i][0], &c);
        dsc_json_schema_free(s);
    }
    CHECK(c.dead == 0, "formats: every string taken so far goes on (%ld dead ends)", c.dead);
    CHECK(c.unsound == 0 && c.incomplete == 0 && c.valid > 2000,
          "formats: of %ld random strings, %ld valid, all taken whole, no other (%ld taken but not valid, %ld valid but "
          "refused)", c.strings, c.valid, c.unsound, c.incomplete);
    printf("formats: %ld random strings, %ld valid, the same taken whole by the recognizer\n", c.strings, c.valid);
}

static int allowed(const float *l, int32_t id) { return l[id] != -INFINITY; }

static void test_mask(const char *path) {
    dsc_tokenizer *tok;
    if (dsc_tokenizer_load(path, &tok)) {
        CHECK(0, "deepseek-v3 tokenizer: %s", dsc_last_error());
        return;
    }
    const int32_t V = 129280, eos = dsc_tokenizer_find(tok, "<｜end▁of▁sentence｜>");
    dsc_json_mask *m;
    CHECK(dsc_json_mask_new(tok, V, eos, &m) == DSC_OK, "mask: %s", dsc_last_error());
    float *l = malloc(sizeof(float) * V), *z = malloc(sizeof(float) * V);
    const int32_t closers[] = {dsc_tokenizer_find(tok, "}"), dsc_tokenizer_find(tok, "\""), dsc_tokenizer_find(tok, "]"),
                               dsc_tokenizer_find(tok, ",")};
    int dead = 0, brute = 0, brute_same = 1, runs = 0, complete = 0, good = 0;
    double ms = 0;
    long applies = 0;
    buf out = {0};
    for (int i = 0; i < N_SCHEMAS; i++) {
        cJSON *doc = cJSON_Parse(schemas[i]);
        dsc_json_schema *s;
        CHECK(dsc_json_schema_new(schemas[i], strlen(schemas[i]), &s) == DSC_OK, "schema %d", i);
        for (int r = 0; r < 4; r++, runs++) {
            dsc_schema_state st;
            dsc_schema_start(s, &st);
            out.n = 0;
            for (int step = 0; step < 400 && !dsc_schema_complete(&st); step++) {
                if (step % 20 == 0) {
                    for (int32_t k = 0; k < V; k++) z[k] = 0;
                    dsc_schema_mask_apply(s, m, &st, z);
                    for (int32_t k = 0; k < V; k++) {
                        dsc_schema_state t = st;
                        const int same = allowed(z, k) == (dsc_schema_mask_accept(s, m, &t, k) == 0);
                        if (!same && getenv("DSC_DEBUG"))
                            fprintf(stderr, "schema %d token %d (%.*s) mask %d mode %d in_key %d val %d chars %u after: %.*s\n", i, k,
                                    m ? 8 : 0, "", allowed(z, k), st.mode, st.in_key, st.val, st.chars, (int)out.n, out.b);
                        brute_same &= same;
                    }
                    brute++;
                }
                for (int32_t k = 0; k < V; k++) l[k] = (float)(rnd() % 1000) / 100.0f;
                for (int k = 0; k < 4; k++) l[closers[k]] += (float)(r * 3);
                struct timespec t0, t1;
                clock_gettime(CLOCK_MONOTONIC, &t0);
                dsc_schema_mask_apply(s, m, &st, l);
                clock_gettime(CLOCK_MONOTONIC, &t1);
                ms += (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6, applies++;
                int32_t best = -1;
                for (int32_t k = 0; k < V; k++)
                    if (allowed(l, k) && (best < 0 || l[k] > l[best])) best = k;
                char piece[256];
                size_t pn = 0;
                if (best >= 0) dsc_token_bytes(tok, best, piece, sizeof piece, &pn), put(&out, piece, pn);
                if (best < 0 || dsc_schema_mask_accept(s, m, &st, best)) {
                    dead++;
                    break;
                }
            }
            if (dsc_schema_complete(&st)) {
                complete++;
                dsc_schema_state t = st;
                good += valid_doc(doc, out.b, out.n) && dsc_schema_mask_accept(s, m, &t, eos) == 0;
            }
        }
        dsc_json_schema_free(s);
        cJSON_Delete(doc);
    }
    CHECK(dead == 0, "never a state where no token is allowed (%d)", dead);
    CHECK(brute_same && brute > 50, "the mask = each token tried on its own, in %d states", brute);
    CHECK(complete >= runs / 2 && good == complete, "%d of %d generations complete, %d of them valid", complete, runs, good);
    printf("schema mask, DeepSeek-V3 vocabulary: %.2f ms an application (mean of %ld); %d of %d random generations "
           "complete within 400 tokens, all valid\n", ms / (double)applies, applies, complete, runs);
    free(out.b);
    free(l);
    free(z);
    dsc_json_mask_free(m);
    dsc_tokenizer_free(tok);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_schema DEEPSEEK_TOKENIZER_JSON\n");
        return 2;
    }
    rng = 0x9e3779b97f4a7c15ull;
    test_refused();
    test_cases();
    test_generated();
    test_patterns();
    test_formats();
    test_mask(argv[1]);
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
