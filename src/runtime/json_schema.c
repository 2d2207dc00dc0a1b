/*
 * json_schema.c — structured output: the answer held to one JSON object
 * that a JSON Schema accepts (OpenAI's response_format json_schema).
 *
 * The schema is compiled into a table of nodes (object, array, string,
 * number, integer, boolean, null, any value, a set of values, alternatives)
 * and a byte-level recognizer walks it: a stack of the open containers,
 * each with its node and what it holds so far (an object's properties seen,
 * an array's items), and the lexing of the scalar at hand as JSON mode does
 * it (json_mode.c; the same whitespace bound and UTF-8 rules). An object's
 * keys are matched against its properties as they are written: without
 * additionalProperties only a property not yet given can be begun, '}'
 * only once the required ones are in, ',' only while one is left.
 * Alternatives (anyOf, oneOf, a list of types) are told apart by their
 * first byte, and objects by a tag (tagged_union: a property each fixes to
 * its own value, written first); a schema whose alternatives begin alike
 * otherwise is refused, as are
 * keywords that would need more than this (formats other than those
 * below, patterns beyond json_regex.h's, ...), so an answer
 * never breaks a rule the schema states.
 *
 * A string of a pattern is written in printable ASCII without escapes,
 * each character only if the pattern can still match (json_regex.c).
 *
 * A string of format date (2024-02-29), time (RFC 3339's full-time:
 * 23:59:59, an optional fraction of up to 9 digits, then Z or an offset
 * +05:30), date-time (date T time), duration (P1Y2M3DT4H5M6S, each part
 * optional but in that order without a gap, or P2W), uuid (8-4-4-4-12 hex
 * digits), ipv4 (four numbers 0-255 without leading zeros), ipv6 (RFC
 * 4291's text forms), hostname (RFC 1123) or email (dot-atom@host, two
 * labels or more) is held to it character by character: months 01-12, a
 * day that the month has (29 February only in a leap year), hours 00-23,
 * minutes and seconds 00-59, a hyphen or a dot only where the name can
 * still end within its lengths, "::" once.
 *
 * A number with bounds (minimum, maximum, exclusiveMinimum,
 * exclusiveMaximum) or a multipleOf is written without an exponent, in at
 * most 15 significant digits, 6 of them after the point; each digit is
 * taken only if some number it begins lies within the bounds (and is a
 * multiple, exactly in decimal), so the answer cannot run into a dead end.
 * The bounds are compared in exact decimal with the shortest text of their
 * double (cJSON's), which for numbers of 15 digits or fewer orders them as
 * a validator comparing doubles does.
 *
 * Supported: type (one or a list), properties, required,
 * additionalProperties (false, true or a schema), items, minItems,
 * maxItems, minLength, maxLength, minimum, maximum, exclusiveMinimum,
 * exclusiveMaximum, multipleOf, enum, const, anyOf, oneOf, allOf of one schema, $ref
 * to #/$defs/... or #/definitions/... (recursion allowed), and the
 * annotations (title, description, default, examples, ...). The root is
 * an object, as OpenAI requires.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "dsc.h"
#include "json_mask.h"
#include "json_regex.h"

enum { K_ANY, K_OBJECT, K_ARRAY, K_STRING, K_NUMBER, K_INTEGER, K_BOOL, K_NULL, K_ENUM, K_ANYOF };
enum { FMT_NONE, FMT_DATE, FMT_TIME, FMT_DATETIME, FMT_UUID, FMT_IPV4, FMT_IPV6, FMT_HOSTNAME, FMT_EMAIL, FMT_DURATION,
       FMT_N };
static const char *const fmt_names[FMT_N] = {"",     "date",     "time",  "date-time", "uuid",
                                             "ipv4", "ipv6", "hostname", "email", "duration"};

#define NONE 0xffffffffu
#define MAX_NODES 4096

/* Bounded numbers: values scaled by 10^NUM_FRAC (integers by 1), at most
 * NUM_DIGITS significant digits. */
typedef __int128 i128;
#define NUM_FRAC 6
#define NUM_DIGITS 15
#define NUM_FAR ((i128)1000000000000000000 * 10000) /* 10^22: beyond every value written */

typedef struct {
    uint8_t kind;
    uint8_t extra;     /* object: keys besides its properties allowed (their values: node `items`) */
    uint8_t tagged;    /* object: the opening of a tagged union (below): its one key the tag */
    uint16_t first, n; /* object: its properties; enum: its texts; anyof: its alternatives */
    uint16_t items;    /* array: the items' node; object: other keys' values' node */
    uint32_t min, max; /* array: items; string: characters (max NONE: no bound) */
    uint64_t required; /* object: bit i: property first + i is required */
    uint8_t *pick;     /* anyof: [256] the alternative (1 + index) a value's first byte selects, 0 none */
    uint8_t bounded;   /* number, integer: held to [blo, bhi] and to multiples of bmul (scaled, see NUM_FRAC) */
    uint8_t fmt;       /* string: FMT_* */
    uint16_t re;       /* string: 1 + its pattern's index in re, 0 none */
    i128 blo, bhi;
    i128 bmul;         /* multipleOf, scaled (> 0), or 0: none */
} snode;

typedef struct {
    char *text;        /* a property's name, or an enum value's JSON text */
    uint16_t len, node;
} sitem;

struct dsc_json_schema {
    snode *node;
    int n_node;
    sitem *item;       /* properties and enum texts, each object's or enum's sorted */
    int n_item, cap_item;
    uint16_t *alt;
    int n_alt, cap_alt;
    dsc_regex **re;    /* the patterns (owned) */
    int n_re;
    int root;
};

/* ------------------------------------------------------------------------ */
/* Compiling                                                                 */

typedef struct {
    dsc_json_schema *s;
    const cJSON *doc;
    const cJSON **memo_key; /* schemas compiled (by their JSON object), for $ref and recursion */
    uint16_t *memo_node;
    int n_memo;
    char path[256];
} comp;

static dsc_status cfail(comp *c, const char *what) {
    return dsc_fail(DSC_ERR_ARG, "json_schema at %s: %s", c->path, what);
}

static int new_node(comp *c, uint8_t kind) {
    if (c->s->n_node >= MAX_NODES) return -1;
    snode *n = &c->s->node[c->s->n_node];
    memset(n, 0, sizeof *n);
    n->kind = kind, n->max = NONE;
    return c->s->n_node++;
}

static int push_item(dsc_json_schema *s, char *text, uint16_t node) {
    if (s->n_item >= UINT16_MAX - 1) return -1;
    if (s->n_item == s->cap_item) {
        sitem *g = realloc(s->item, sizeof *g * (size_t)(s->cap_item * 2 + 16));
        if (!g) return -1;
        s->item = g, s->cap_item = s->cap_item * 2 + 16;
    }
    s->item[s->n_item++] = (sitem){text, (uint16_t)strlen(text), node};
    return 0;
}

static int cmp_item(const void *a, const void *b) {
    const sitem *x = a, *y = b;
    return strcmp(x->text, y->text);
}

static const char *const annotations[] = {"title", "description", "default", "examples", "$schema", "$id",
                                          "$comment", "readOnly", "writeOnly", "deprecated", "$defs", "definitions",
                                          "strict", "discriminator", NULL};
static const char *const applied[] = {"type", "properties", "required", "additionalProperties", "items", "minItems",
                                      "maxItems", "minLength", "maxLength", "enum", "const", "anyOf", "oneOf",
                                      "allOf", "$ref", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
                                      "format", "pattern", "multipleOf", NULL};
static const char *const bounds[] = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", NULL};

static int in_list(const char *k, const char *const *list) {
    for (int i = 0; list[i]; i++)
        if (!strcmp(k, list[i])) return 1;
    return 0;
}

static dsc_status compile(comp *c, const cJSON *j, int *out);

/* Appends "/key" to the path for the children's messages; returns the old length. */
static size_t path_push(comp *c, const char *a, const char *b) {
    size_t at = strlen(c->path);
    snprintf(c->path + at, sizeof c->path - at, "/%s%s%s", a, b ? "/" : "", b ? b : "");
    return at;
}

static dsc_status get_count(comp *c, const cJSON *j, const char *key, uint32_t *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!v) return DSC_OK;
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 65535 || v->valuedouble != floor(v->valuedouble)) {
        char msg[96];
        snprintf(msg, sizeof msg, "'%s' must be an integer from 0 to 65535", key);
        return cfail(c, msg);
    }
    *out = (uint32_t)v->valuedouble;
    return DSC_OK;
}

/* An object's properties, required ones and other keys. */
static dsc_status compile_object(comp *c, const cJSON *j, int id) {
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(j, "properties"), *p;
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(j, "required");
    const cJSON *add = cJSON_GetObjectItemCaseSensitive(j, "additionalProperties");
    if (props && !cJSON_IsObject(props)) return cfail(c, "'properties' must be an object");
    if (req && !cJSON_IsArray(req)) return cfail(c, "'required' must be an array of names");
    const int n = props ? cJSON_GetArraySize(props) : 0;
    if (n > 64) return cfail(c, "more than 64 properties in one object");
    const int first = c->s->n_item;
    cJSON_ArrayForEach(p, props) {
        for (const char *k = p->string; *k; k++)
            if (*k == '"' || *k == '\\' || (unsigned char)*k < 0x20)
                return cfail(c, "a property name holds a quote, a backslash or a control character");
        char *name = strdup(p->string);
        if (!name || push_item(c->s, name, 0)) {
            free(name);
            return dsc_fail(DSC_ERR_NOMEM, "json_schema: out of memory");
        }
    }
    if (n > 1) qsort(c->s->item + first, (size_t)n, sizeof *c->s->item, cmp_item);
    for (int i = 1; i < n; i++)
        if (!strcmp(c->s->item[first + i].text, c->s->item[first + i - 1].text)) return cfail(c, "a property twice");
    /* the values' schemas, by name (the items may move as the table grows) */
    for (int i = 0; i < n; i++) {
        const char *name = c->s->item[first + i].text;
        const size_t at = path_push(c, "properties", name);
        int child;
        dsc_status st = compile(c, cJSON_GetObjectItemCaseSensitive(props, name), &child);
        c->path[at] = 0;
        if (st) return st;
        c->s->item[first + i].node = (uint16_t)child;
    }
    snode *o = &c->s->node[id];
    o->first = (uint16_t)first, o->n = (uint16_t)n;
    const cJSON *r;
    cJSON_ArrayForEach(r, req) {
        int k = -1;
        for (int i = 0; i < n && cJSON_IsString(r); i++)
            if (!strcmp(c->s->item[first + i].text, r->valuestring)) k = i;
        if (k < 0) return cfail(c, "'required' names a property that 'properties' lacks");
        c->s->node[id].required |= (uint64_t)1 << k;
    }
    /* other keys: without properties any (unless false); with them only if asked for */
    int extra = props ? 0 : 1, extra_node = 0;
    if (cJSON_IsBool(add)) extra = cJSON_IsTrue(add);
    else if (cJSON_IsObject(add)) {
        const size_t at = path_push(c, "additionalProperties", NULL);
        dsc_status st = compile(c, add, &extra_node);
        c->path[at] = 0;
        if (st) return st;
        extra = 1;
    } else if (add) return cfail(c, "'additionalProperties' must be a boolean or a schema");
    c->s->node[id].extra = (uint8_t)extra, c->s->node[id].items = (uint16_t)extra_node;
    return DSC_OK;
}

/* The node of one type of schema j (its other keywords applying to it). */
/* ------------------------------------------------------------------------ */
/* Bounded numbers                                                           */

static i128 pow10_128(int k) {
    i128 p = 1;
    while (k-- > 0) p *= 10;
    return p;
}

/* A bound x 10^f rounded down (up = 0) or up, from the shortest text of its
 * double (cJSON's), exactly; clamped to +-NUM_FAR. */
static i128 scaled_bound(const cJSON *v, int f, int up) {
    char *text = cJSON_PrintUnformatted(v);
    if (!text) return 0;
    const char *p = text;
    const int neg = *p == '-';
    p += neg;
    uint64_t d = 0; /* |x| = d x 10^e */
    int e = 0, nd = 0, frac = 0;
    for (; j_digit((unsigned char)*p) || *p == '.'; p++) {
        if (*p == '.') {
            frac = 1;
            continue;
        }
        if (nd < 19) {
            d = d * 10 + (uint64_t)(*p - '0');
            nd += d != 0; /* significant digits, from the first that is not 0 */
            e -= frac;
        } else e += !frac; /* past what d holds (cJSON writes 17 digits at most) */
    }
    if (*p == 'e' || *p == 'E') e += atoi(p + 1);
    free(text);
    int k = e + f;
    i128 q, r = 0;
    if (k >= 0)
        for (q = d; k-- > 0 && q < NUM_FAR;) q *= 10;
    else if (-k > 19) q = 0, r = d != 0;
    else {
        const i128 div = pow10_128(-k);
        q = (i128)d / div, r = (i128)d % div != 0;
    }
    if (q > NUM_FAR) q = NUM_FAR;
    /* |x| = q + (0 or a part r); rounded toward the side asked */
    if (!neg) return up ? q + r : q;
    return up ? -q : -(q + r);
}

static i128 gcd128(i128 a, i128 b) {
    while (b) {
        const i128 t = a % b;
        a = b, b = t;
    }
    return a;
}

/* Whether some number that the digits so far begin (st: after '-' or a
 * digit or '.', in the grammar's form: at most NUM_DIGITS significant
 * digits, NUM_FRAC after the point, no exponent) lies within n's bounds
 * (and is a multiple of its multipleOf). */
static int reach(const snode *n, const dsc_schema_state *st, int integer) {
    const int f = integer ? 0 : NUM_FRAC, dot = st->mode == J_DOT || st->mode == J_FRAC;
    /* the magnitudes wanted */
    const i128 A = st->num_neg ? (n->bhi < 0 ? -n->bhi : 0) : (n->blo > 0 ? n->blo : 0);
    const i128 B = st->num_neg ? -n->blo : n->bhi;
    if (A > B) return 0;
    const int ni = st->num_ni, nf = st->num_nf, lead0 = ni == 1 && st->num_int == 0;
    const i128 I = st->num_int;
    /* the integer parts reachable: k more digits (or, after '-' alone, k
     * digits); each with up to fm digits after the point */
    for (int k = dot ? 0 : ni == 0 ? 1 : 0; k <= (dot || lead0 ? 0 : NUM_DIGITS - ni); k++) {
        const int digits = ni + k, zero = ni == 0 ? k == 1 : lead0; /* an integer part "0" counts no digit */
        const int fm = f < NUM_DIGITS - (zero ? 0 : digits) ? f : NUM_DIGITS - (zero ? 0 : digits);
        i128 r0, r1, g;
        if (dot) { /* the fraction so far, fm - nf more digits */
            if (fm <= nf && (fm < nf || st->mode == J_DOT)) return 0;
            r0 = (I * pow10_128(nf) + st->num_frac) * pow10_128(f - nf);
            g = pow10_128(f - fm);
            r1 = r0 + pow10_128(f - nf) - g;
        } else {
            const i128 lo = ni == 0 ? (k == 1 ? 0 : pow10_128(k - 1)) : I * pow10_128(k);
            const i128 hi = ni == 0 ? pow10_128(k) - 1 : lo + pow10_128(k) - 1;
            r0 = lo * pow10_128(f);
            g = pow10_128(f - fm);
            r1 = hi * pow10_128(f) + pow10_128(f) - g;
        }
        const i128 a = A > r0 ? A : r0, b = B < r1 ? B : r1;
        if (a > b) continue;
        /* the first value on the grid from a (r0 is on it); with multipleOf, on both grids */
        const i128 step = n->bmul ? g / gcd128(g, n->bmul) * n->bmul : g;
        const i128 first = n->bmul ? (a + step - 1) / step * step : r0 + (a - r0 + g - 1) / g * g;
        if (first <= b) return 1;
    }
    return 0;
}

/* Whether the number written (whole) lies within n's bounds. */
static int inside(const snode *n, const dsc_schema_state *st, int integer) {
    const int f = integer ? 0 : NUM_FRAC;
    i128 v = (i128)st->num_int * pow10_128(f) + (i128)st->num_frac * pow10_128(f - st->num_nf);
    if (st->num_neg) v = -v;
    return v >= n->blo && v <= n->bhi && (!n->bmul || v % n->bmul == 0);
}

/* number / integer: the bounds, if any, as [blo, bhi]; refused when no
 * number the grammar writes lies between them. */
static dsc_status compile_bounds(comp *c, const cJSON *j, int id, int integer) {
    snode *n = &c->s->node[id];
    const int f = integer ? 0 : NUM_FRAC;
    i128 lo = -NUM_FAR, hi = NUM_FAR;
    for (int i = 0; bounds[i]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, bounds[i]);
        if (!v) continue;
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) {
            char msg[128];
            snprintf(msg, sizeof msg, "'%s' must be a number%s", bounds[i],
                     cJSON_IsBool(v) ? " (draft 4's true / false form is not supported)" : "");
            return cfail(c, msg);
        }
        i128 x;
        if (i == 0) x = scaled_bound(v, f, 1), lo = x > lo ? x : lo;          /* minimum: up */
        else if (i == 1) x = scaled_bound(v, f, 0), hi = x < hi ? x : hi;     /* maximum: down */
        else if (i == 2) x = scaled_bound(v, f, 0) + 1, lo = x > lo ? x : lo; /* exclusiveMinimum */
        else x = scaled_bound(v, f, 1) - 1, hi = x < hi ? x : hi;             /* exclusiveMaximum */
        n->bounded = 1;
    }
    n->blo = lo, n->bhi = hi;
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "multipleOf");
    if (m) { /* exactly m x 10^f, a whole number */
        if (!cJSON_IsNumber(m) || !isfinite(m->valuedouble) || m->valuedouble <= 0)
            return cfail(c, "'multipleOf' must be a number above 0");
        n->bmul = scaled_bound(m, f, 0);
        if (n->bmul != scaled_bound(m, f, 1) || n->bmul < 1)
            return cfail(c, integer ? "'multipleOf' of an integer must be a whole number"
                                    : "'multipleOf' of more than 6 digits after the point is not supported");
        n->bounded = 1;
    }
    if (!n->bounded) return DSC_OK;
    dsc_schema_state st = {.mode = J_NEG, .num_neg = 1};
    int any = reach(n, &st, integer);
    st = (dsc_schema_state){.mode = J_INT};
    for (int d = 0; d <= 9 && !any; d++) st.num_int = d, st.num_ni = 1, any = reach(n, &st, integer);
    if (!any)
        return cfail(c, integer ? "no integer of at most 15 digits lies within its bounds (and is a multiple of its multipleOf)"
                                : "no number of at most 15 digits, 6 after the point, lies within its bounds (and is a "
                                  "multiple of its multipleOf)");
    return DSC_OK;
}

/* A string's pattern, compiled (json_regex.h); not with minLength / maxLength. */
static dsc_status compile_pattern(comp *c, const cJSON *pat, int id) {
    snode *n = &c->s->node[id];
    if (!cJSON_IsString(pat)) return cfail(c, "'pattern' must be a string");
    if (n->min || n->max != NONE) return cfail(c, "'minLength' / 'maxLength' beside 'pattern'");
    dsc_json_schema *s = c->s;
    if (s->n_re >= 1024) return cfail(c, "more than 1024 patterns");
    dsc_regex **g = realloc(s->re, sizeof *g * (size_t)(s->n_re + 1));
    if (!g) return dsc_fail(DSC_ERR_NOMEM, "json_schema: out of memory");
    s->re = g;
    char why[160], msg[256];
    if (!(s->re[s->n_re] = re_compile(pat->valuestring, why, sizeof why))) {
        snprintf(msg, sizeof msg, "'pattern' %.60s: %s", pat->valuestring, why);
        return cfail(c, msg);
    }
    n->re = (uint16_t)(++s->n_re);
    return DSC_OK;
}

static dsc_status compile_type(comp *c, const cJSON *j, const char *type, int id) {
    snode *n = &c->s->node[id];
    if (!strcmp(type, "object")) {
        n->kind = K_OBJECT;
        return compile_object(c, j, id);
    }
    if (!strcmp(type, "array")) {
        n->kind = K_ARRAY;
        dsc_status st = get_count(c, j, "minItems", &n->min);
        if (!st) st = get_count(c, j, "maxItems", &c->s->node[id].max);
        if (st) return st;
        const cJSON *items = cJSON_GetObjectItemCaseSensitive(j, "items");
        int child = 0;
        if (items) {
            const size_t at = path_push(c, "items", NULL);
            st = compile(c, items, &child);
            c->path[at] = 0;
            if (st) return st;
        }
        n = &c->s->node[id];
        n->items = (uint16_t)child;
        if (n->min > n->max) return cfail(c, "minItems above maxItems");
        return DSC_OK;
    }
    if (!strcmp(type, "string")) {
        n->kind = K_STRING;
        dsc_status st = get_count(c, j, "minLength", &n->min);
        if (!st) st = get_count(c, j, "maxLength", &n->max);
        if (!st && n->min > n->max) return cfail(c, "minLength above maxLength");
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(j, "pattern");
        if (!st && pat) st = compile_pattern(c, pat, id);
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(j, "format");
        if (st || !f) return st;
        if (pat) return cfail(c, "'pattern' beside 'format'");
        if (!cJSON_IsString(f)) return cfail(c, "'format' must be a string");
        for (int k = 1; k < FMT_N; k++)
            if (!strcmp(f->valuestring, fmt_names[k])) n->fmt = (uint8_t)k;
        char msg[160];
        if (!n->fmt) {
            snprintf(msg, sizeof msg,
                     "format '%.40s' is not supported (date, time, date-time, duration, uuid, ipv4, ipv6, hostname "
                     "and email are)", f->valuestring);
            return cfail(c, msg);
        }
        if (n->min || n->max != NONE) return cfail(c, "'minLength' / 'maxLength' beside 'format'");
        return DSC_OK;
    }
    if (!strcmp(type, "number")) return n->kind = K_NUMBER, compile_bounds(c, j, id, 0);
    if (!strcmp(type, "integer")) return n->kind = K_INTEGER, compile_bounds(c, j, id, 1);
    if (!strcmp(type, "boolean")) return n->kind = K_BOOL, DSC_OK;
    if (!strcmp(type, "null")) return n->kind = K_NULL, DSC_OK;
    char msg[160];
    snprintf(msg, sizeof msg, "type '%.32s' is not one of object, array, string, number, integer, boolean, null", type);
    return cfail(c, msg);
}

/* Alternatives: the nodes of a list of schemas (or of types of one). */
static dsc_status compile_alts(comp *c, const cJSON *list, const cJSON *j, int id) {
    const cJSON *x;
    int k = 0;
    uint16_t tmp[64];
    cJSON_ArrayForEach(x, list) {
        if (k == 64) return cfail(c, "more than 64 alternatives");
        int child;
        dsc_status st;
        if (j) { /* a list of types */
            if (!cJSON_IsString(x)) return cfail(c, "'type' must be a string or a list of strings");
            if ((child = new_node(c, K_ANY)) < 0) return cfail(c, "more than 4096 schemas");
            st = compile_type(c, j, x->valuestring, child);
        } else {
            char idx[16];
            snprintf(idx, sizeof idx, "%d", k);
            const size_t at = path_push(c, list->string, idx);
            st = compile(c, x, &child);
            c->path[at] = 0;
        }
        if (st) return st;
        tmp[k++] = (uint16_t)child;
    }
    if (k == 0) return cfail(c, "an empty list of alternatives");
    dsc_json_schema *s = c->s;
    if (s->n_alt + k > s->cap_alt) {
        uint16_t *g = realloc(s->alt, sizeof *g * (size_t)(s->cap_alt * 2 + k + 16));
        if (!g) return dsc_fail(DSC_ERR_NOMEM, "json_schema: out of memory");
        s->alt = g, s->cap_alt = s->cap_alt * 2 + k + 16;
    }
    memcpy(s->alt + s->n_alt, tmp, sizeof *tmp * (size_t)k);
    s->node[id].kind = K_ANYOF, s->node[id].first = (uint16_t)s->n_alt, s->node[id].n = (uint16_t)k;
    s->n_alt += k;
    return DSC_OK;
}

/* "#/$defs/NAME" or "#/definitions/NAME" */
static dsc_status resolve(comp *c, const char *ref, const cJSON **out) {
    const cJSON *defs = NULL;
    const char *name = NULL;
    if (!strncmp(ref, "#/$defs/", 8)) defs = cJSON_GetObjectItemCaseSensitive(c->doc, "$defs"), name = ref + 8;
    else if (!strncmp(ref, "#/definitions/", 14)) defs = cJSON_GetObjectItemCaseSensitive(c->doc, "definitions"), name = ref + 14;
    else if (!strcmp(ref, "#")) return *out = c->doc, DSC_OK;
    *out = name && !strchr(name, '/') && !strchr(name, '~') ? cJSON_GetObjectItemCaseSensitive(defs, name) : NULL;
    if (*out) return DSC_OK;
    char msg[160];
    snprintf(msg, sizeof msg, "'$ref' '%.80s' is not #/$defs/NAME or #/definitions/NAME of this schema", ref);
    return cfail(c, msg);
}

static dsc_status compile(comp *c, const cJSON *j, int *out) {
    if (cJSON_IsTrue(j) || (cJSON_IsObject(j) && !j->child)) return *out = 0, DSC_OK; /* any value */
    if (!cJSON_IsObject(j)) return cfail(c, "a schema must be an object (or true)");
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(j, "$ref");
    if (ref) {
        if (!cJSON_IsString(ref)) return cfail(c, "'$ref' must be a string");
        const cJSON *target;
        dsc_status st = resolve(c, ref->valuestring, &target);
        if (st) return st;
        for (const cJSON *k = j->child; k; k = k->next)
            if (strcmp(k->string, "$ref") && !in_list(k->string, annotations))
                return cfail(c, "keywords beside '$ref' (only annotations may go with it)");
        j = target;
        if (cJSON_IsTrue(j) || (cJSON_IsObject(j) && !j->child)) return *out = 0, DSC_OK;
        if (!cJSON_IsObject(j)) return cfail(c, "'$ref' leads to something that is not a schema");
    }
    for (int i = 0; i < c->n_memo; i++)
        if (c->memo_key[i] == j) return *out = c->memo_node[i], DSC_OK;
    for (const cJSON *k = j->child; k; k = k->next)
        if (!in_list(k->string, annotations) && !in_list(k->string, applied)) {
            char msg[128];
            snprintf(msg, sizeof msg, "the keyword '%.40s' is not supported", k->string);
            return cfail(c, msg);
        }
    const int id = new_node(c, K_ANY);
    if (id < 0) return cfail(c, "more than 4096 schemas");
    c->memo_key[c->n_memo] = j, c->memo_node[c->n_memo++] = (uint16_t)id;
    *out = id;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(j, "type");
    const cJSON *en = cJSON_GetObjectItemCaseSensitive(j, "enum"), *cst = cJSON_GetObjectItemCaseSensitive(j, "const");
    const cJSON *any = cJSON_GetObjectItemCaseSensitive(j, "anyOf");
    const cJSON *one = cJSON_GetObjectItemCaseSensitive(j, "oneOf"), *all = cJSON_GetObjectItemCaseSensitive(j, "allOf");
    if (!!en + !!cst + !!any + !!one + !!all > 1) return cfail(c, "more than one of enum, const, anyOf, oneOf, allOf");
    for (int i = 0; bounds[i]; i++)
        if ((en || cst || any || one || all) && cJSON_GetObjectItemCaseSensitive(j, bounds[i])) {
            char msg[128];
            snprintf(msg, sizeof msg, "'%s' beside enum, const, anyOf, oneOf or allOf", bounds[i]);
            return cfail(c, msg);
        }
    if (en || cst) { /* the values' texts, as cJSON writes them (compact) */
        if (en && (!cJSON_IsArray(en) || !en->child)) return cfail(c, "'enum' must be a non-empty array");
        const int first = c->s->n_item;
        const cJSON *v = en ? en->child : cst;
        for (; v; v = en ? v->next : NULL) {
            char *text = cJSON_PrintUnformatted(v);
            if (!text || push_item(c->s, text, 0)) {
                free(text);
                return dsc_fail(DSC_ERR_NOMEM, "json_schema: out of memory");
            }
        }
        int n = c->s->n_item - first;
        if (n > 1) qsort(c->s->item + first, (size_t)n, sizeof *c->s->item, cmp_item);
        for (int i = first + 1; i < first + n; i++) /* the same value twice: once */
            if (!strcmp(c->s->item[i].text, c->s->item[i - 1].text)) {
                free(c->s->item[i].text);
                memmove(c->s->item + i, c->s->item + i + 1, sizeof *c->s->item * (size_t)(first + n - i - 1));
                n--, c->s->n_item--, i--;
            }
        c->s->node[id].kind = K_ENUM, c->s->node[id].first = (uint16_t)first, c->s->node[id].n = (uint16_t)n;
        return DSC_OK;
    }
    if (all) {
        if (!cJSON_IsArray(all) || cJSON_GetArraySize(all) != 1) return cfail(c, "'allOf' of other than one schema");
        if (type) return cfail(c, "'type' beside 'allOf'");
        /* the node stands for its one schema: compiled, then copied over */
        int child;
        const size_t at = path_push(c, "allOf", "0");
        dsc_status st = compile(c, all->child, &child);
        c->path[at] = 0;
        if (st) return st;
        c->s->node[id] = c->s->node[child];
        if (c->s->node[id].pick) c->s->node[id].pick = NULL, c->s->node[id].kind = K_ANYOF; /* pick built later */
        return DSC_OK;
    }
    if (any || one) {
        if (type) return cfail(c, "'type' beside 'anyOf' / 'oneOf'");
        const cJSON *list = any ? any : one;
        if (!cJSON_IsArray(list)) return cfail(c, "'anyOf' / 'oneOf' must be an array of schemas");
        return compile_alts(c, list, NULL, id);
    }
    if (cJSON_IsArray(type)) return compile_alts(c, type, j, id);
    if (cJSON_IsString(type)) return compile_type(c, j, type->valuestring, id);
    if (type) return cfail(c, "'type' must be a string or a list of strings");
    /* no type: the keywords say what it is, or any value */
    if (cJSON_GetObjectItemCaseSensitive(j, "properties") || cJSON_GetObjectItemCaseSensitive(j, "required") ||
        cJSON_GetObjectItemCaseSensitive(j, "additionalProperties"))
        return compile_type(c, j, "object", id);
    if (cJSON_GetObjectItemCaseSensitive(j, "items") || cJSON_GetObjectItemCaseSensitive(j, "minItems") ||
        cJSON_GetObjectItemCaseSensitive(j, "maxItems"))
        return compile_type(c, j, "array", id);
    if (cJSON_GetObjectItemCaseSensitive(j, "minLength") || cJSON_GetObjectItemCaseSensitive(j, "maxLength") ||
        cJSON_GetObjectItemCaseSensitive(j, "format") || /* a format, a pattern: a string (any value may be one; */
        cJSON_GetObjectItemCaseSensitive(j, "pattern"))  /* this grammar writes one) */
        return compile_type(c, j, "string", id);
    for (int i = 0; bounds[i]; i++) /* bounds: a number (any value may be one; this grammar writes a number) */
        if (cJSON_GetObjectItemCaseSensitive(j, bounds[i])) return compile_type(c, j, "number", id);
    return DSC_OK; /* K_ANY */
}

/* The bytes a value of node id can begin with (whitespace aside). */
static void first_bytes(const dsc_json_schema *s, int id, uint8_t set[256], int depth) {
    const snode *n = &s->node[id];
    switch (n->kind) {
    case K_OBJECT: set['{'] = 1; break;
    case K_ARRAY: set['['] = 1; break;
    case K_STRING: set['"'] = 1; break;
    case K_NUMBER:
    case K_INTEGER:
        set['-'] = 1;
        for (int d = '0'; d <= '9'; d++) set[d] = 1;
        break;
    case K_BOOL: set['t'] = set['f'] = 1; break;
    case K_NULL: set['n'] = 1; break;
    case K_ENUM:
        for (int i = 0; i < n->n; i++) set[(unsigned char)s->item[n->first + i].text[0]] = 1;
        break;
    case K_ANYOF:
        if (depth < 64)
            for (int i = 0; i < n->n; i++) first_bytes(s, s->alt[n->first + i], set, depth + 1);
        break;
    default: /* any value */
        for (const char *p = "{[\"-0123456789tfn"; *p; p++) set[(unsigned char)*p] = 1;
    }
}

/* The value of property `name` of object node o when the schema fixes it
 * (a const, an enum of one): its item, or -1. */
static int fixed_value(const dsc_json_schema *s, const snode *o, const char *name) {
    for (int k = 0; k < o->n; k++) {
        const sitem *p = &s->item[o->first + k];
        if (strcmp(p->text, name)) continue;
        const snode *v = &s->node[p->node];
        return v->kind == K_ENUM && v->n == 1 ? v->first : -1;
    }
    return -1;
}

/* Alternatives that are objects told apart by a property each fixes to
 * its own value (pydantic's discriminated unions: a Literal field, the
 * OpenAPI discriminator): a tagged union. Its objects open with that
 * property, the tag, and its value picks the alternative: node `tagged`
 * (an object of the tag alone, its value an enum of theirs, each item
 * naming its alternative) stands for them, in alt at slot; -1 when they
 * are not such (no property that every one fixes to values all different). */
static int tagged_union(dsc_json_schema *s, const snode *n, int *slot) {
    int objs[64], k = 0;
    for (int i = 0; i < n->n; i++)
        if (s->node[s->alt[n->first + i]].kind == K_OBJECT) {
            if (k == 64) return -1;
            if (!k) *slot = i;
            objs[k++] = s->alt[n->first + i];
        }
    if (k < 2 || s->n_node + 2 > MAX_NODES) return -1;
    const snode *o0 = &s->node[objs[0]];
    for (int t = 0; t < o0->n; t++) { /* a candidate tag: each of o0's properties */
        const char *tag = s->item[o0->first + t].text;
        int vals[64], ok = 1;
        for (int j = 0; j < k && ok; j++) {
            vals[j] = fixed_value(s, &s->node[objs[j]], tag);
            ok = vals[j] >= 0;
            for (int i = 0; i < j && ok; i++) ok = strcmp(s->item[vals[i]].text, s->item[vals[j]].text) != 0;
        }
        if (!ok) continue;
        /* the enum of the tag's values, each item's node its object; then the object of the tag alone */
        const int en = s->n_node++, first = s->n_item;
        for (int j = 0; j < k; j++) {
            char *text = strdup(s->item[vals[j]].text);
            if (!text || push_item(s, text, (uint16_t)objs[j])) return free(text), -2;
        }
        qsort(s->item + first, (size_t)k, sizeof *s->item, cmp_item);
        memset(&s->node[en], 0, sizeof s->node[en]);
        s->node[en].kind = K_ENUM, s->node[en].first = (uint16_t)first, s->node[en].n = (uint16_t)k, s->node[en].max = NONE;
        const int ob = s->n_node++;
        char *name = strdup(tag);
        if (!name || push_item(s, name, (uint16_t)en)) return free(name), -2;
        memset(&s->node[ob], 0, sizeof s->node[ob]);
        s->node[ob].kind = K_OBJECT, s->node[ob].first = (uint16_t)(s->n_item - 1), s->node[ob].n = 1;
        s->node[ob].required = 1, s->node[ob].tagged = 1, s->node[ob].max = NONE;
        return ob;
    }
    return -1;
}

/* Each alternative's first bytes: none shared (else the schema is refused),
 * but for objects of a tagged union, which share '{'. */
static dsc_status build_picks(dsc_json_schema *s) {
    for (int id = 0; id < s->n_node; id++) {
        snode *n = &s->node[id];
        if (n->kind != K_ANYOF) continue;
        if (!(n->pick = calloc(256, 1))) return dsc_fail(DSC_ERR_NOMEM, "json_schema: out of memory");
        int slot = -1;
        const int tu = tagged_union(s, n, &slot);
        if (tu == -2) return dsc_fail(DSC_ERR_NOMEM, "json_schema: out of memory");
        n = &s->node[id]; /* (nodes appended: the array itself does not move) */
        if (tu >= 0) n->pick['{'] = (uint8_t)(slot + 1), s->alt[n->first + slot] = (uint16_t)tu;
        for (int i = 0; i < n->n; i++) {
            uint8_t set[256] = {0};
            if (tu >= 0 && i != slot && s->node[s->alt[n->first + i]].kind == K_OBJECT) continue; /* the union's */
            if (tu >= 0 && i == slot) continue;
            first_bytes(s, s->alt[n->first + i], set, 0);
            for (int b = 0; b < 256; b++) {
                if (!set[b]) continue;
                if (n->pick[b])
                    return dsc_fail(DSC_ERR_ARG, "json_schema: alternatives (anyOf, oneOf or a list of types) that "
                                                 "begin alike ('%c') are not supported: they must differ in type", b);
                n->pick[b] = (uint8_t)(i + 1);
            }
        }
    }
    for (int id = 0; id < s->n_node; id++) /* an alternative that is the list itself, by way of others */
        for (int b = 0; b < 256 && s->node[id].kind == K_ANYOF; b++) {
            int at = id, hops = 0;
            while (s->node[at].kind == K_ANYOF && s->node[at].pick && s->node[at].pick[b] && hops++ <= 64)
                at = s->alt[s->node[at].first + s->node[at].pick[b] - 1];
            if (hops > 64) return dsc_fail(DSC_ERR_ARG, "json_schema: alternatives that lead back to themselves");
        }
    return DSC_OK;
}

dsc_status dsc_json_schema_new(const char *text, size_t len, dsc_json_schema **out) {
    *out = NULL;
    cJSON *doc = text ? cJSON_ParseWithLength(text, len) : NULL;
    if (!doc) return dsc_fail(DSC_ERR_ARG, "json_schema: not JSON");
    dsc_json_schema *s = calloc(1, sizeof *s);
    comp c = {.s = s, .doc = doc, .path = "#"};
    dsc_status st = DSC_OK;
    if (!s || !(s->node = calloc(MAX_NODES, sizeof *s->node)) || !(c.memo_key = calloc(MAX_NODES, sizeof *c.memo_key)) ||
        !(c.memo_node = calloc(MAX_NODES, sizeof *c.memo_node)))
        st = dsc_fail(DSC_ERR_NOMEM, "json_schema: out of memory");
    if (!st && new_node(&c, K_ANY) != 0) st = dsc_fail(DSC_ERR_NOMEM, "json_schema: out of memory"); /* node 0: any value */
    if (!st) st = compile(&c, doc, &s->root);
    if (!st && s->node[s->root].kind != K_OBJECT)
        st = dsc_fail(DSC_ERR_ARG, "json_schema: the root must be an object schema (\"type\": \"object\")");
    if (!st) st = build_picks(s);
    free(c.memo_key);
    free(c.memo_node);
    cJSON_Delete(doc);
    if (st) {
        dsc_json_schema_free(s);
        return st;
    }
    *out = s;
    return DSC_OK;
}

void dsc_json_schema_free(dsc_json_schema *s) {
    if (!s) return;
    for (int i = 0; s->node && i < s->n_node; i++) free(s->node[i].pick);
    for (int i = 0; i < s->n_re; i++) re_free(s->re[i]);
    free(s->re);
    for (int i = 0; i < s->n_item; i++) free(s->item[i].text);
    free(s->node);
    free(s->item);
    free(s->alt);
    free(s);
}

/* ------------------------------------------------------------------------ */
/* The recognizer                                                            */

enum {
    M_STR = J_STR, /* in a string (a key when in_key; the scalar modes J_* of json_mask.h) */
    M_VALUE = J_N, /* a value of node val (whitespace first)                     */
    M_OBJ_FIRST, /* after '{': a key or '}'                                    */
    M_OBJ_KEY,   /* after ',' in an object: a key                              */
    M_COLON,     /* after a key: ':' (val is the value's node)                 */
    M_ARR_FIRST, /* after '[': a value or ']'                                  */
    M_AFTER,     /* after a value in a container: ',' or its closer            */
    M_ENUM,      /* one of node val's texts (items lo..hi matched for pos bytes) */
    M_DONE,      /* the object is closed                                       */
};

static int is_ws(unsigned c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

void dsc_schema_start(const dsc_json_schema *s, dsc_schema_state *st) {
    memset(st, 0, sizeof *st);
    st->mode = M_VALUE;
    st->val = (uint16_t)s->root;
}

int dsc_schema_complete(const dsc_schema_state *st) { return st->mode == M_DONE; }

static int top_is_object(const dsc_schema_state *st) { return (int)(st->kinds >> (st->depth - 1) & 1); }

/* The node of the open container's values: an array's items, an object's
 * other keys' (a property's is set as its key closes). */
static void value_done(const dsc_json_schema *s, dsc_schema_state *st) {
    (void)s;
    st->mode = st->depth ? M_AFTER : M_DONE;
}

/* An enum's value whole: item `item`. The tag of a tagged union's object
 * picks the alternative: the object goes on as that one, the tag given. */
static void enum_done(const dsc_json_schema *s, dsc_schema_state *st, uint16_t item) {
    if (st->depth && top_is_object(st) && s->node[st->node[st->depth - 1]].tagged) {
        const snode *u = &s->node[st->node[st->depth - 1]], *o = &s->node[s->item[item].node];
        st->node[st->depth - 1] = s->item[item].node, st->seen[st->depth - 1] = 0;
        for (int k = 0; k < o->n; k++)
            if (!strcmp(s->item[o->first + k].text, s->item[u->first].text)) st->seen[st->depth - 1] = (uint64_t)1 << k;
    }
    value_done(s, st);
}

static int push(dsc_schema_state *st, uint16_t node, int object) {
    if (st->depth >= DSC_SCHEMA_DEPTH) return -1;
    const uint32_t bit = (uint32_t)1 << st->depth;
    st->kinds = object ? st->kinds | bit : st->kinds & ~bit;
    st->node[st->depth] = node, st->seen[st->depth] = 0, st->count[st->depth] = 0;
    st->depth++;
    st->mode = object ? M_OBJ_FIRST : M_ARR_FIRST;
    return 0;
}

/* The frame's object node, or NULL for an object of any keys (node 0). */
static const snode *frame_object(const dsc_json_schema *s, const dsc_schema_state *st) {
    const snode *n = &s->node[st->node[st->depth - 1]];
    return n->kind == K_OBJECT ? n : NULL;
}

/* Whether a property not yet given can still be begun, or another key. */
static int key_possible(const dsc_json_schema *s, const dsc_schema_state *st) {
    const snode *o = frame_object(s, st);
    if (!o || o->extra) return 1;
    const uint64_t all = o->n == 64 ? ~(uint64_t)0 : ((uint64_t)1 << o->n) - 1;
    return (st->seen[st->depth - 1] & all) != all;
}

static int may_close_object(const dsc_json_schema *s, const dsc_schema_state *st) {
    const snode *o = frame_object(s, st);
    return !o || (st->seen[st->depth - 1] & o->required) == o->required;
}

/* A key begins (after its quote): its candidates, the object's properties. */
static void key_start(const dsc_json_schema *s, dsc_schema_state *st) {
    const snode *o = frame_object(s, st);
    st->mode = M_STR, st->in_key = 1, st->pos = 0, st->chars = 0;
    st->lo = o ? o->first : 0, st->hi = o ? (uint16_t)(o->first + o->n) : 0;
}

/* One raw byte of a key: the properties not yet given that it continues;
 * without other keys allowed, one must be left. */
static int key_byte(const dsc_json_schema *s, dsc_schema_state *st, unsigned c) {
    const snode *o = frame_object(s, st);
    if (!o) return st->pos++, 0; /* an object of any keys */
    uint16_t lo = st->lo, hi;
    while (lo < st->hi && (st->pos >= s->item[lo].len || (unsigned char)s->item[lo].text[st->pos] != c)) lo++;
    hi = lo;
    while (hi < st->hi && st->pos < s->item[hi].len && (unsigned char)s->item[hi].text[st->pos] == c) hi++;
    int open = 0; /* a property not yet given among them */
    for (uint16_t i = lo; i < hi && !open; i++) open = !(st->seen[st->depth - 1] >> (i - o->first) & 1);
    if (!o->extra && !open) return -1;
    st->lo = lo, st->hi = hi, st->pos++;
    return 0;
}

/* A key's closing quote: the value's node (a property's, or other keys'). */
static int key_end(const dsc_json_schema *s, dsc_schema_state *st) {
    const snode *o = frame_object(s, st);
    st->in_key = 0;
    st->mode = M_COLON;
    if (!o) return st->val = 0, 0;
    if (st->lo < st->hi && s->item[st->lo].len == st->pos) { /* the shortest candidate, whole */
        const int k = st->lo - o->first;
        if (st->seen[st->depth - 1] >> k & 1) return -1; /* given already */
        st->seen[st->depth - 1] |= (uint64_t)1 << k;
        st->val = s->item[st->lo].node;
        return 0;
    }
    if (!o->extra) return -1;
    st->val = o->items;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Formatted strings: st->pos the state, st->num_int what it remembers      */

static int days_in(int64_t year, int64_t month) {
    static const int d[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    return month == 2 && leap ? 29 : d[month - 1];
}

/* date, positions 0-9 of YYYY-MM-DD (years 1000-9999); acc: the digits so far */
static int date_char(uint32_t p, int64_t *acc, unsigned c) {
    if (p == 4 || p == 7) return c == '-' ? 0 : -1;
    if (!j_digit(c)) return -1;
    const int d = (int)(c - '0');
    if (p == 0 && d == 0) return -1;
    if (p == 5 && d > 1) return -1;
    if (p == 6 && (*acc % 10 == 0 ? d == 0 : d > 2)) return -1; /* month 01-12 */
    if (p == 8 || p == 9) {
        const int64_t ym = p == 8 ? *acc : *acc / 10, dim = days_in(ym / 100, ym % 100);
        if (p == 8 && d > dim / 10) return -1;
        if (p == 9 && (*acc % 10 == 0 ? d == 0 : *acc % 10 == dim / 10 && d > dim % 10)) return -1;
    }
    *acc = *acc * 10 + d;
    return 0;
}

/* time (RFC 3339 full-time): 0-7 HH:MM:SS, 8 after the seconds, 9 the
 * first digit of a fraction, 10 more of them (acc: how many), 11-15 an
 * offset's HH:MM, 16 whole */
static int time_char(uint32_t *p, int64_t *acc, unsigned c) {
    const uint32_t q = *p;
    if (q == 2 || q == 5 || q == 13) return c == ':' ? (++*p, 0) : -1;
    if (q == 8 || q == 10) {
        if (q == 8 && c == '.') return *p = 9, 0;
        if (q == 10 && j_digit(c) && *acc < 9) return ++*acc, 0;
        if (c == 'Z') return *p = 16, 0;
        return c == '+' || c == '-' ? (*p = 11, 0) : -1;
    }
    if (q == 16 || !j_digit(c)) return -1;
    const int d = (int)(c - '0');
    if (q == 9) return *p = 10, *acc = 1, 0;
    if ((q == 0 || q == 11) && d > 2) return -1;                 /* hours 00-23 */
    if ((q == 1 || q == 12) && *acc == 2 && d > 3) return -1;
    if ((q == 3 || q == 6 || q == 14) && d > 5) return -1;       /* minutes, seconds 00-59 */
    *acc = d, ++*p;
    return 0;
}

static int is_alnum(unsigned c) { return j_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z'); }
static int is_hex(unsigned c) { return j_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f'); }

/* A label of a host name (RFC 1123: letters, digits, inner hyphens, 1-63
 * characters). *len: its characters so far, *hyphen: whether the last was
 * '-'; room: characters the whole name may still take (a label must end
 * within it). 1: c continues the label, 0: c is not a label's, -1 refused. */
static int label_char(uint32_t *len, uint32_t *hyphen, uint32_t room, unsigned c) {
    if (is_alnum(c)) return *len < 63 && room >= 1 ? (++*len, *hyphen = 0, 1) : -1;
    if (c == '-') return *len >= 1 && *len < 62 && room >= 2 ? (++*len, *hyphen = 1, 1) : -1;
    return 0;
}

/* host name: pos its characters (at most 253), acc the label's, chars 1
 * after a '-'. No trailing dot. */
static int hostname_char(dsc_schema_state *st, unsigned c) {
    uint32_t len = (uint32_t)st->num_int;
    const int k = label_char(&len, &st->chars, 253 - st->pos, c);
    if (k == 0 && c == '.' && len >= 1 && !st->chars && st->pos + 2 <= 253) len = 0, st->chars = 0;
    else if (k <= 0) return -1;
    st->num_int = len, st->pos++;
    return 0;
}

/* email (the addr-spec's common form: a dot-atom, '@', a host name of two
 * labels or more): pos 0 the local part, 1 the domain; acc the atom's or
 * label's characters; chars 1 after a '-'; num_frac the domain's dots. */
static int email_char(dsc_schema_state *st, unsigned c) {
    uint32_t len = (uint32_t)st->num_int;
    if (st->pos == 0) {
        if (is_alnum(c) || (c < 128 && strchr("!#$%&'*+/=?^_`{|}~-", (int)c) && c)) return st->num_int = len + 1, 0;
        if ((c == '.' || c == '@') && len >= 1) return st->num_int = 0, st->pos = c == '@', 0;
        return -1;
    }
    const int k = label_char(&len, &st->chars, UINT32_MAX, c);
    if (k == 0 && c == '.' && len >= 1 && !st->chars) len = 0, st->num_frac++;
    else if (k <= 0) return -1;
    st->num_int = len;
    return 0;
}

/* ipv6 (RFC 4291 2.2: eight groups of 1-4 hex digits, "::" once for one or
 * more of them, the last two possibly a dotted quad). pos: bits 0-3 the
 * groups done, 4-6 the digits of the group begun, 7 "::" seen, 8 the last
 * character a ':', 9 a ':' begins the address, 10 in the dotted quad, 11-12
 * its dots, 13 the last two characters the "::"; acc: the group's (or
 * octet's) value read as decimal, -1 when it cannot be an octet. */
enum { V6_DIGITS = 4, V6_DOUBLE = 1 << 7, V6_COLON = 1 << 8, V6_LEAD = 1 << 9, V6_QUAD = 1 << 10, V6_DOTS = 11,
       V6_TAIL = 1 << 13 };

static int ipv6_char(dsc_schema_state *st, unsigned c) {
    uint32_t p = st->pos;
    const uint32_t groups = p & 15, digits = p >> V6_DIGITS & 7, dbl = !!(p & V6_DOUBLE), max = dbl ? 7 : 8;
    int64_t *acc = &st->num_int;
    if (p & V6_QUAD) { /* a dotted quad: dots, then an octet's digits (no leading zero) */
        const uint32_t dots = p >> V6_DOTS & 3;
        if (c == '.') return digits && dots < 3 ? (st->pos = (p & ~(7u << V6_DIGITS | 3u << V6_DOTS)) | (dots + 1) << V6_DOTS, *acc = 0, 0) : -1;
        if (!j_digit(c) || digits == 3 || (digits && *acc == 0) || *acc * 10 + (c - '0') > 255) return -1;
        *acc = *acc * 10 + (c - '0');
        st->pos = (p & ~(7u << V6_DIGITS)) | (digits + 1) << V6_DIGITS;
        return 0;
    }
    if (p & V6_LEAD) return c == ':' ? (st->pos = V6_DOUBLE | V6_COLON | V6_TAIL, 0) : -1;
    p &= ~(uint32_t)V6_TAIL;
    if (is_hex(c)) {
        if (digits == 4 || (!digits && groups + 1 > max)) return -1;
        *acc = !j_digit(c) || *acc < 0 || (digits && *acc == 0) ? -1 : *acc * 10 + (c - '0');
        if (*acc > 255) *acc = -1;
        st->pos = (p & ~(7u << V6_DIGITS) & ~V6_COLON) | (digits + 1) << V6_DIGITS;
        return 0;
    }
    if (c == ':') {
        if (p == 0) return st->pos = V6_LEAD, 0;
        if (digits) { /* a group ends: another must follow, or "::" */
            if (groups + 1 > (dbl ? 6u : 7u)) return -1;
            st->pos = (p & ~(7u << V6_DIGITS) & ~15u) | (groups + 1) | V6_COLON, *acc = 0;
            return 0;
        }
        if ((p & V6_COLON) && !dbl) return st->pos = p | V6_DOUBLE | V6_TAIL, 0; /* "::" after groups <= 7 */
        return -1;
    }
    if (c == '.') { /* the group was the quad's first octet: two groups' room left */
        if (!digits || *acc < 0 || (dbl ? groups + 2 > 7 : groups != 6)) return -1;
        st->pos = (p & 15u) | (p & V6_DOUBLE) | V6_QUAD | 1u << V6_DOTS, *acc = 0;
        return 0;
    }
    return -1;
}

static int ipv6_whole(uint32_t p) {
    const uint32_t groups = p & 15, digits = p >> V6_DIGITS & 7;
    if (p & V6_QUAD) return (p >> V6_DOTS & 3) == 3 && digits;
    if (p & V6_LEAD) return 0;
    if (!digits) return (p & V6_TAIL) != 0; /* ends with "::" */
    return p & V6_DOUBLE ? groups + 1 <= 7 : groups + 1 == 8;
}

/* duration (RFC 3339 appendix A): P, then Y[M[D]] or M[D] or D with an
 * optional T part, or the T part, or W; T: H[M[S]] or M[S] or S. pos: the
 * last designator (below), chars 1 while its number is being written. */
enum { DU_START, DU_P, DU_Y, DU_MO, DU_D, DU_T, DU_H, DU_MI, DU_S, DU_W };

/* The designator that can follow `last` and is c, or -1. */
static int du_next(uint32_t last, unsigned c) {
    switch (last) {
    case DU_P: return c == 'Y' ? DU_Y : c == 'M' ? DU_MO : c == 'D' ? DU_D : c == 'W' ? DU_W : -1;
    case DU_Y: return c == 'M' ? DU_MO : -1;
    case DU_MO: return c == 'D' ? DU_D : -1;
    case DU_T: return c == 'H' ? DU_H : c == 'M' ? DU_MI : c == 'S' ? DU_S : -1;
    case DU_H: return c == 'M' ? DU_MI : -1;
    case DU_MI: return c == 'S' ? DU_S : -1;
    default: return -1;
    }
}

static int duration_char(dsc_schema_state *st, unsigned c) {
    const uint32_t last = st->pos;
    if (last == DU_START) return c == 'P' ? (st->pos = DU_P, 0) : -1;
    if (j_digit(c)) { /* a number, only where a designator can follow it */
        if (!st->chars && last != DU_P && last != DU_Y && last != DU_MO && last != DU_T && last != DU_H && last != DU_MI)
            return -1;
        return st->chars = 1, 0;
    }
    if (st->chars) {
        const int d = du_next(last, c);
        return d < 0 ? -1 : (st->pos = (uint32_t)d, st->chars = 0, 0);
    }
    if (c == 'T' && (last == DU_P || last == DU_Y || last == DU_MO || last == DU_D)) return st->pos = DU_T, 0;
    return -1;
}

/* Character c of a string of format f: 0 with the state advanced, -1 refused. */
static int fmt_char(uint8_t f, dsc_schema_state *st, unsigned c) {
    uint32_t *p = &st->pos;
    int64_t *acc = &st->num_int;
    switch (f) {
    case FMT_DATE: return *p < 10 && !date_char(*p, acc, c) ? (++*p, 0) : -1;
    case FMT_DATETIME:
        if (*p < 10) return !date_char(*p, acc, c) ? (++*p, 0) : -1;
        if (*p == 10) return c == 'T' ? (++*p, *acc = 0, 0) : -1;
        {
            uint32_t q = *p - 11;
            if (time_char(&q, acc, c)) return -1;
            *p = q + 11;
            return 0;
        }
    case FMT_TIME: return time_char(p, acc, c);
    case FMT_IPV6: return ipv6_char(st, c);
    case FMT_HOSTNAME: return hostname_char(st, c);
    case FMT_EMAIL: return email_char(st, c);
    case FMT_DURATION: return duration_char(st, c);
    case FMT_UUID:
        if (*p >= 36) return -1;
        if (*p == 8 || *p == 13 || *p == 18 || *p == 23) return c == '-' ? (++*p, 0) : -1;
        return j_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ? (++*p, 0) : -1;
    default: { /* FMT_IPV4: pos = dots x 4 + the octet's digits; acc its value */
        const uint32_t dots = *p / 4, nd = *p % 4;
        if (c == '.') return nd > 0 && dots < 3 ? (*p = (dots + 1) * 4, 0) : -1;
        if (!j_digit(c) || nd == 3 || (nd > 0 && *acc == 0)) return -1; /* no leading zero */
        const int64_t v = (nd ? *acc * 10 : 0) + (int64_t)(c - '0');
        if (v > 255) return -1;
        return *acc = v, ++*p, 0;
    }
    }
}

/* Whether a string of format f may end in state st. */
static int fmt_whole(uint8_t f, const dsc_schema_state *st) {
    switch (f) {
    case FMT_DATE: return st->pos == 10;
    case FMT_DATETIME: return st->pos == 11 + 16;
    case FMT_TIME: return st->pos == 16;
    case FMT_UUID: return st->pos == 36;
    case FMT_IPV6: return ipv6_whole(st->pos);
    case FMT_HOSTNAME: return st->num_int >= 1 && !st->chars;
    case FMT_EMAIL: return st->pos == 1 && st->num_frac >= 1 && st->num_int >= 1 && !st->chars;
    case FMT_DURATION: return st->pos >= DU_Y && st->pos != DU_T && !st->chars;
    default: return st->pos / 4 == 3 && st->pos % 4 > 0;
    }
}

/* A value of node id begins with c (not whitespace). */
static int value_start(const dsc_json_schema *s, dsc_schema_state *st, uint16_t id, unsigned c) {
    const snode *n = &s->node[id];
    for (int hops = 0; n->kind == K_ANYOF; hops++) { /* the alternative c begins (chains bounded at compile time) */
        if (!n->pick[c] || hops > 64) return -1;
        id = s->alt[n->first + n->pick[c] - 1], n = &s->node[id];
    }
    st->val = id;
    switch (n->kind) {
    case K_OBJECT: return c == '{' ? push(st, id, 1) : -1;
    case K_ARRAY: return c == '[' ? push(st, id, 0) : -1;
    case K_STRING:
        if (c != '"') return -1;
        break;
    case K_BOOL:
        if (c != 't' && c != 'f') return -1;
        break;
    case K_NULL:
        if (c != 'n') return -1;
        break;
    case K_INTEGER:
    case K_NUMBER:
        if (c != '-' && !j_digit(c)) return -1;
        break;
    case K_ENUM:
        st->mode = M_ENUM, st->lo = n->first, st->hi = (uint16_t)(n->first + n->n), st->pos = 0;
        return -2; /* the byte is matched in M_ENUM */
    default: /* any value: containers of any keys / items (node 0) */
        if (c == '{') return push(st, 0, 1);
        if (c == '[') return push(st, 0, 0);
    }
    const int m = j_scalar_start(c, &st->lit, &st->n);
    if (m < 0) return -1;
    st->mode = (uint8_t)m, st->in_key = 0, st->chars = 0, st->pos = 0, st->num_int = 0, st->num_frac = 0;
    if (n->kind == K_STRING && n->re) st->re_set = re_start(s->re[n->re - 1]);
    if ((n->kind == K_INTEGER || n->kind == K_NUMBER) && n->bounded) { /* c: '-' or a digit */
        st->num_neg = c == '-', st->num_ni = c != '-', st->num_int = c == '-' ? 0 : (int64_t)(c - '0');
        st->num_nf = 0, st->num_frac = 0;
        if (!reach(n, st, n->kind == K_INTEGER)) return -1;
    }
    return 0;
}

static int whitespace(dsc_schema_state *st, unsigned c) { return j_ws(&st->ws, c); }

/* A string's character: one more, within maxLength (keys unbounded). */
static int one_char(const dsc_json_schema *s, dsc_schema_state *st) {
    if (st->in_key) return 0;
    const snode *n = &s->node[st->val];
    if (n->kind == K_STRING && st->chars >= n->max) return -1;
    st->chars++;
    return 0;
}

static int step(const dsc_json_schema *s, dsc_schema_state *st, unsigned c);

static int begin_value(const dsc_json_schema *s, dsc_schema_state *st, uint16_t id, unsigned c) {
    const int r = value_start(s, st, id, c);
    return r == -2 ? step(s, st, c) : r;
}

static int step(const dsc_json_schema *s, dsc_schema_state *st, unsigned c) {
    if (st->in_key && st->mode <= J_UTF8 && !(st->mode == M_STR && c == '"') && key_byte(s, st, c)) /* a key's bytes */
        return -1;
    switch (st->mode) {
    case M_VALUE:
        if (is_ws(c)) return whitespace(st, c);
        st->ws = 0;
        return begin_value(s, st, st->val, c);
    case M_OBJ_FIRST:
    case M_OBJ_KEY:
        if (is_ws(c)) return whitespace(st, c);
        st->ws = 0;
        if (c == '"' && key_possible(s, st)) return key_start(s, st), 0;
        if (c == '}' && st->mode == M_OBJ_FIRST && may_close_object(s, st)) return st->depth--, value_done(s, st), 0;
        return -1;
    case M_COLON:
        if (is_ws(c)) return whitespace(st, c);
        st->ws = 0;
        return c == ':' ? (st->mode = M_VALUE, 0) : -1;
    case M_ARR_FIRST: {
        const snode *a = &s->node[st->node[st->depth - 1]];
        const uint32_t min = a->kind == K_ARRAY ? a->min : 0, max = a->kind == K_ARRAY ? a->max : NONE;
        if (c == ']') return min == 0 ? (st->ws = 0, st->depth--, value_done(s, st), 0) : -1;
        if (is_ws(c)) return whitespace(st, c);
        st->ws = 0;
        if (max == 0) return -1;
        st->count[st->depth - 1] = 1;
        return begin_value(s, st, a->kind == K_ARRAY ? a->items : 0, c);
    }
    case M_AFTER:
        if (is_ws(c)) return whitespace(st, c);
        st->ws = 0;
        if (top_is_object(st)) {
            if (c == ',' && key_possible(s, st)) return st->mode = M_OBJ_KEY, 0;
            if (c == '}' && may_close_object(s, st)) return st->depth--, value_done(s, st), 0;
            return -1;
        } else {
            const snode *a = &s->node[st->node[st->depth - 1]];
            const uint32_t min = a->kind == K_ARRAY ? a->min : 0, max = a->kind == K_ARRAY ? a->max : NONE;
            uint16_t *count = &st->count[st->depth - 1];
            if (c == ',' && *count < max) {
                if (*count < UINT16_MAX) (*count)++; /* past that, only a maximum of none is left to compare */
                return st->mode = M_VALUE, st->val = a->kind == K_ARRAY ? a->items : 0, 0;
            }
            if (c == ']' && *count >= min) return st->depth--, value_done(s, st), 0;
            return -1;
        }
    case M_STR:
        if (c == '"') {
            if (st->in_key) return key_end(s, st);
            const snode *n = &s->node[st->val];
            if (n->kind == K_STRING && st->chars < n->min) return -1;
            if (n->kind == K_STRING && n->fmt && !fmt_whole(n->fmt, st)) return -1;
            if (n->kind == K_STRING && n->re && !re_accepts(s->re[n->re - 1], st->re_set)) return -1;
            return value_done(s, st), 0;
        }
        if (!st->in_key && s->node[st->val].kind == K_STRING && s->node[st->val].fmt)
            return fmt_char(s->node[st->val].fmt, st, c); /* ASCII only: no escape, no UTF-8 */
        if (!st->in_key && s->node[st->val].kind == K_STRING && s->node[st->val].re) { /* the same */
            st->re_set = re_step(s->re[s->node[st->val].re - 1], st->re_set, c);
            return st->re_set ? 0 : -1;
        }
        if (one_char(s, st)) return -1; /* c begins a character (else it is refused, and the count with it) */
        /* fall through */
    case J_ESC:
    case J_HEX:
    case J_UTF8:
        return j_string(&st->mode, &st->n, &st->ulo, &st->uhi, c);
    case J_LIT: {
        const int r = j_literal(st->lit, &st->n, c);
        if (r == 1) value_done(s, st);
        return r < 0 ? -1 : 0;
    }
    case J_NEG: case J_ZERO: case J_INT: case J_DOT: case J_FRAC: case J_EXP: case J_EXP_SIGN: case J_EXP_DIG: {
        const snode *n = &s->node[st->val];
        const int integer = n->kind == K_INTEGER, bounded = (integer || n->kind == K_NUMBER) && n->bounded;
        if (bounded && (c == 'e' || c == 'E')) return -1; /* bounded: no exponent */
        const int r = j_number(&st->mode, integer, c);
        if (r < 0) return -1;
        if (r == 1) {
            if (bounded && !inside(n, st, integer)) return -1;
            value_done(s, st); /* the number ends; c belongs to what follows (never the top level) */
            return step(s, st, c);
        }
        if (!bounded || c == '.') return bounded && !reach(n, st, integer) ? -1 : 0;
        if (st->mode == J_FRAC) { /* a digit after the point */
            if (st->num_nf > NUM_FRAC) return -1;
            st->num_frac = st->num_frac * 10 + (int32_t)(c - '0'), st->num_nf++;
        } else {
            if (st->num_ni > NUM_DIGITS) return -1;
            st->num_int = st->num_int * 10 + (int64_t)(c - '0'), st->num_ni++;
        }
        return reach(n, st, integer) ? 0 : -1;
    }
    case M_ENUM: {
        uint16_t lo = st->lo, hi;
        while (lo < st->hi && (st->pos >= s->item[lo].len || (unsigned char)s->item[lo].text[st->pos] != c)) lo++;
        hi = lo;
        while (hi < st->hi && st->pos < s->item[hi].len && (unsigned char)s->item[hi].text[st->pos] == c) hi++;
        if (lo < hi) {
            st->lo = lo, st->hi = hi, st->pos++;
            if (hi - lo == 1 && s->item[lo].len == st->pos) enum_done(s, st, lo); /* whole, and no longer one goes on */
            return 0;
        }
        /* a value whole (a number that another extends, as 1 and 12) ends here; c follows it */
        int whole = -1;
        for (uint16_t i = st->lo; i < st->hi && whole < 0; i++)
            if (s->item[i].len == st->pos) whole = i;
        if (whole < 0) return -1;
        enum_done(s, st, (uint16_t)whole);
        return step(s, st, c);
    }
    default: /* M_DONE */
        return -1;
    }
}

int dsc_schema_step(const dsc_json_schema *s, dsc_schema_state *st, unsigned c) { return step(s, st, c); }

int dsc_schema_feed(const dsc_json_schema *s, dsc_schema_state *st, const char *bytes, size_t n) {
    dsc_schema_state t = *st;
    for (size_t i = 0; i < n; i++)
        if (step(s, &t, (unsigned char)bytes[i])) return -1;
    *st = t;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The mask                                                                  */

int dsc_schema_free_string(const dsc_json_schema *s, const dsc_schema_state *st) {
    if (st->mode != M_STR) return 0;
    if (!st->in_key) return s->node[st->val].max == NONE && !s->node[st->val].fmt && !s->node[st->val].re;
    const snode *o = frame_object(s, st);
    return !o || o->extra;
}

void dsc_schema_mask_apply(const dsc_json_schema *s, const dsc_json_mask *m, const dsc_schema_state *st, float *logits) {
    if (dsc_schema_complete(st)) {
        for (int32_t id = 0; id < m->n_logits; id++)
            if (id != m->eos) logits[id] = -INFINITY;
        return;
    }
    uint8_t first[256];
    for (unsigned c = 0; c < 256; c++) {
        dsc_schema_state t = *st;
        first[c] = step(s, &t, c) == 0;
    }
    /* in a string, whole characters without a quote or backslash go on
     * it untried: always in a key of an object that takes other keys or a
     * value string of no maximum length, within the maximum else */
    const snode *o = st->depth ? frame_object(s, st) : NULL;
    /* (a formatted string's characters are each tried) */
    const int in_str = st->mode == M_STR && (st->in_key || (!s->node[st->val].fmt && !s->node[st->val].re));
    const int other_key = in_str && st->in_key && (!o || o->extra);
    const uint32_t room = !in_str || st->in_key ? NONE : s->node[st->val].max == NONE ? NONE : s->node[st->val].max - st->chars;
    const snode *vn = st->mode == M_STR && !st->in_key ? &s->node[st->val] : NULL;
    const dsc_regex *re = vn && vn->kind == K_STRING && vn->re ? s->re[vn->re - 1] : NULL;
    for (int32_t id = 0; id < m->n_logits; id++) {
        if (logits[id] == -INFINITY) continue;
        if (re && m->in_str[id]) { /* a string of a pattern, the token inside it: the automaton alone decides */
            uint64_t set = st->re_set;
            const unsigned char *b = (const unsigned char *)m->bytes + m->off[id];
            for (int32_t k = 0; k < m->len[id] && set; k++) set = re_step(re, set, b[k]);
            if (!set) logits[id] = -INFINITY;
            continue;
        }
        if (in_str && m->in_str[id] && (other_key || (!st->in_key && room == NONE))) continue;
        if (in_str && m->in_str[id] && !st->in_key) { /* its characters against the room left */
            uint32_t chars = 0; /* as one_char counts them: an escape (whole in such a token) is one */
            const unsigned char *b = (const unsigned char *)m->bytes + m->off[id];
            for (int32_t k = 0; k < m->len[id]; k++) {
                chars += (b[k] & 0xc0) != 0x80;
                if (b[k] == '\\') k += b[k + 1] == 'u' ? 5 : 1;
            }
            if (chars > room) logits[id] = -INFINITY;
            continue;
        }
        const int32_t n = m->len[id];
        if (n < 0 || !first[(unsigned char)m->bytes[m->off[id]]]) {
            logits[id] = -INFINITY;
            continue;
        }
        dsc_schema_state t = *st; /* tried on this copy, byte by byte */
        for (int32_t k = 0; k < n; k++)
            if (step(s, &t, (unsigned char)m->bytes[m->off[id] + k])) {
                logits[id] = -INFINITY;
                break;
            }
    }
}

int dsc_schema_mask_accept(const dsc_json_schema *s, const dsc_json_mask *m, dsc_schema_state *st, int32_t id) {
    if (id < 0 || id >= m->n_logits) return -1;
    if (id == m->eos) return dsc_schema_complete(st) ? 0 : -1;
    if (m->len[id] < 0) return -1;
    return dsc_schema_feed(s, st, m->bytes + m->off[id], (size_t)m->len[id]);
}
