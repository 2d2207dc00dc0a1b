/*
 * tasks.c — the task families (see tasks.h): the generator's random
 * numbers, integer addition and multiplication with their worked
 * solutions, the checker of completions, the vote and the JSON lines.
 * Countdown's generation, search and evaluation are in countdown.c.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "core/status.h"
#include "tasks/task_internal.h"

/* ---------------------------------------------------------------- basics */

static const char *const task_names[TASK_N_FAMILIES] = {"add", "mul", "countdown"};
static const int task_levels[TASK_N_FAMILIES] = {5, 3, 2};

const char *task_family_name(task_family f) {
    return (unsigned)f < TASK_N_FAMILIES ? task_names[f] : "?";
}

int task_family_parse(const char *name) {
    for (int f = 0; name && f < TASK_N_FAMILIES; f++)
        if (!strcmp(name, task_names[f])) return f;
    return -1;
}

int task_max_level(task_family f) { return (unsigned)f < TASK_N_FAMILIES ? task_levels[f] : 0; }

/* splitmix64 (Steele, Lea, Flood 2014), as in Java's SplittableRandom. */
uint64_t task_rand(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Lemire's multiply-shift: the top 64 bits of r * n (bias below 2^-50 for
 * the small n used here). */
uint64_t task_uniform(uint64_t *rng, uint64_t n) {
    return (uint64_t)(((unsigned __int128)task_rand(rng) * n) >> 64);
}

void task_buf_printf(task_buf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (int pass = 0; pass < 2; pass++) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) break;
        if (b->p && b->n + (size_t)k < b->cap) {
            b->n += (size_t)k;
            return;
        }
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + (size_t)k + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) break;
        b->p = p, b->cap = cap;
    }
    free(b->p);
    *b = (task_buf){.oom = 1};
}

char *task_buf_take(task_buf *b) {
    char *p = b->oom ? NULL : b->p ? b->p : calloc(1, 1);
    *b = (task_buf){0};
    return p;
}

/* ------------------------------------------------------------ arithmetic */

/* A number of 1..level digits, the count uniform, then the number uniform
 * among those of that many digits (one digit: 0..9). */
static int64_t arith_operand(uint64_t *rng, int level) {
    const int digits = 1 + (int)task_uniform(rng, (uint64_t)level);
    if (digits == 1) return (int64_t)task_uniform(rng, 10);
    int64_t lo = 1;
    for (int i = 1; i < digits; i++) lo *= 10;
    return lo + (int64_t)task_uniform(rng, (uint64_t)(9 * lo));
}

static void arith_question(task_problem *p) {
    snprintf(p->question, sizeof p->question, "What is %lld %c %lld?", (long long)p->a,
             p->family == TASK_ADD ? '+' : '*', (long long)p->b);
}

dsc_status task_generate(task_family f, int level, uint64_t *rng, task_problem *out) {
    if ((unsigned)f >= TASK_N_FAMILIES) return dsc_fail(DSC_ERR_ARG, "tasks: family %d is not a task family", (int)f);
    if (level < 1 || level > task_levels[f])
        return dsc_fail(DSC_ERR_ARG, "tasks: %s: level %d is not in [1, %d]", task_names[f], level, task_levels[f]);
    if (!rng || !out) return dsc_fail(DSC_ERR_ARG, "tasks: no generator state or output");
    if (f == TASK_COUNTDOWN) return countdown_generate(level, rng, out);
    memset(out, 0, sizeof *out);
    out->family = f;
    out->a = arith_operand(rng, level);
    out->b = arith_operand(rng, level);
    out->target = f == TASK_ADD ? out->a + out->b : out->a * out->b;
    arith_question(out);
    return DSC_OK;
}

/* Column addition, right to left, "x+y+carry=sum" per column:
 *
 *   48213+09377
 *   3+7+0=10
 *   ...
 *   4+0+1=5
 *   so 57590
 *   </think>
 *
 *   \boxed{57590}                                                         */
static void add_solution(const task_problem *p, task_buf *b) {
    char x[24], y[24];
    int n = snprintf(x, sizeof x, "%lld", (long long)p->a), ny = snprintf(y, sizeof y, "%lld", (long long)p->b);
    if (ny > n) n = ny;
    snprintf(x, sizeof x, "%0*lld", n, (long long)p->a);
    snprintf(y, sizeof y, "%0*lld", n, (long long)p->b);
    task_buf_printf(b, "%s+%s\n", x, y);
    for (int i = n - 1, carry = 0; i >= 0; i--) {
        const int s = (x[i] - '0') + (y[i] - '0') + carry;
        task_buf_printf(b, "%d+%d+%d=%d\n", x[i] - '0', y[i] - '0', carry, s);
        carry = s / 10;
    }
    task_buf_printf(b, "so %lld", (long long)p->target);
}

/* Partial products by the digits of B from the right (with their place
 * value; a zero digit gives 0), then the running sums:
 *
 *   347*86
 *   347*6=2082
 *   347*80=27760
 *   2082+27760=29842
 *   </think>
 *
 *   \boxed{29842}                                                         */
static void mul_solution(const task_problem *p, task_buf *b) {
    int64_t partial[20];
    int n = 0;
    task_buf_printf(b, "%lld*%lld", (long long)p->a, (long long)p->b);
    int64_t rest = p->b, place = 1;
    do { /* every partial is at most a * b, which fits */
        const int64_t mult = (rest % 10) * place;
        partial[n] = p->a * mult;
        task_buf_printf(b, "\n%lld*%lld=%lld", (long long)p->a, (long long)mult, (long long)partial[n]);
        n++, rest /= 10;
        if (rest) place *= 10;
    } while (rest && n < 20);
    int64_t sum = partial[0];
    for (int i = 1; i < n; i++) {
        task_buf_printf(b, "\n%lld+%lld=%lld", (long long)sum, (long long)partial[i], (long long)(sum + partial[i]));
        sum += partial[i];
    }
}

char *task_solution(const task_problem *p) {
    if (!p) return NULL;
    if (p->family == TASK_COUNTDOWN) return countdown_solution(p);
    task_buf b = {0};
    if (p->family == TASK_ADD) add_solution(p, &b);
    else mul_solution(p, &b);
    task_buf_printf(&b, "\n</think>\n\n\\boxed{%lld}", (long long)p->target);
    return task_buf_take(&b);
}

/* --------------------------------------------------------------- checking */

/* The last \boxed{...} of t: the boxes are found left to right, each
 * running to its matching brace (boxes inside it are its content). An
 * unclosed one runs to the end, so it is the last, and there is no answer.
 * On success [*open, *close) is the content and *box where "\boxed{" starts. */
static int boxed_span(const char *t, size_t *box, size_t *open, size_t *close) {
    static const char tag[] = "\\boxed{";
    int found = 0;
    for (const char *s = strstr(t, tag); s; s = strstr(s, tag)) {
        const char *q = s + sizeof tag - 1;
        for (int depth = 1; depth; q++) {
            if (!*q) return 0;
            depth += (*q == '{') - (*q == '}');
        }
        *box = (size_t)(s - t), *open = *box + sizeof tag - 1, *close = (size_t)(q - 1 - t);
        found = 1;
        s = q;
    }
    return found;
}

int task_extract_boxed(const char *text, char *out, size_t cap) {
    size_t box, open, close;
    if (!text || !boxed_span(text, &box, &open, &close) || close - open >= cap) return 0;
    memcpy(out, text + open, close - open);
    out[close - open] = 0;
    return 1;
}

static int only_space(const char *s, size_t n) {
    for (size_t i = 0; i < n && s[i]; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r') return 0;
    return 1;
}

/* Add / mul: a digits-only answer, its canonical form into key, 1 if right. */
static int arith_check(const task_problem *p, const char *a, size_t n, task_verdict *v) {
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++)
        if (a[i] < '0' || a[i] > '9') return 0;
    while (n > 1 && a[0] == '0') a++, n--;
    if (n >= sizeof v->key) return 0; /* far beyond any target: no vote */
    memcpy(v->key, a, n);
    v->key[n] = 0;
    char want[24];
    snprintf(want, sizeof want, "%lld", (long long)p->target);
    return !strcmp(v->key, want);
}

static int countdown_check(const task_problem *p, const char *a, size_t n, task_verdict *v) {
    char *expr = malloc(n + 1);
    if (!expr) return 0;
    memcpy(expr, a, n);
    expr[n] = 0;
    int64_t num, den;
    const int ok = task_countdown_eval(expr, p->numbers, p->n_numbers, &num, &den, NULL, 0);
    free(expr);
    if (!ok) return 0;
    if (den == 1) snprintf(v->key, sizeof v->key, "%lld", (long long)num);
    else snprintf(v->key, sizeof v->key, "%lld/%lld", (long long)num, (long long)den);
    return den == 1 && num == p->target;
}

/* format_ok: non-blank reasoning, exactly one "</think>", the answer's box
 * after it and nothing but whitespace after the box (a summary between
 * "</think>" and the box is allowed). */
void task_check(const task_problem *p, const char *completion, task_verdict *v) {
    memset(v, 0, sizeof *v);
    size_t box, open, close;
    if (!p || !completion || !boxed_span(completion, &box, &open, &close)) return;
    const char *c = completion, *think = strstr(c, "</think>");
    const size_t after = think ? (size_t)(think - c) + 8 : 0;
    v->format_ok = think && !strstr(think + 8, "</think>") && !only_space(c, (size_t)(think - c)) && box >= after &&
                   only_space(c + close + 1, (size_t)-1);
    const size_t n = close - open;
    memcpy(v->answer, c + open, n < sizeof v->answer ? n : sizeof v->answer - 1);
    v->correct = p->family == TASK_COUNTDOWN ? countdown_check(p, c + open, n, v) : arith_check(p, c + open, n, v);
}

float task_reward(const task_verdict *v, float format_weight) {
    return (float)v->correct + format_weight * (float)v->format_ok;
}

int task_vote(const task_verdict *v, const double *logp, int n) {
    int best = -1, best_votes = 0;
    double best_sum = 0;
    for (int i = 0; i < n; i++) {
        if (!v[i].key[0]) continue;
        int seen = 0;
        for (int j = 0; j < i && !seen; j++) seen = !strcmp(v[j].key, v[i].key);
        if (seen) continue; /* counted with its first sample */
        int votes = 0, pick = i;
        double sum = 0;
        for (int j = i; j < n; j++) {
            if (strcmp(v[j].key, v[i].key)) continue;
            votes++;
            sum += logp ? logp[j] : 0;
            if (logp && logp[j] > logp[pick]) pick = j;
        }
        if (votes > best_votes || (votes == best_votes && sum > best_sum))
            best = pick, best_votes = votes, best_sum = sum;
    }
    return best;
}

/* ------------------------------------------------------------ JSON lines */

#define TASK_JSON_MAX 9007199254740992.0 /* 2^53: larger doubles skip integers */

/* Parses digits at *s into *v; 0 when there are none or they overflow. */
static int parse_uint(const char **s, int64_t *v) {
    const char *q = *s;
    *v = 0;
    for (; *q >= '0' && *q <= '9'; q++)
        if (__builtin_mul_overflow(*v, 10, v) || __builtin_add_overflow(*v, *q - '0', v)) return 0;
    if (q == *s) return 0;
    *s = q;
    return 1;
}

static dsc_status arith_from_json(const cJSON *j, const char *q, task_problem *p) {
    const char *s = q;
    int ok = !strncmp(s, "What is ", 8) && (s += 8, parse_uint(&s, &p->a)) && s[0] == ' ' &&
             (s[1] == '+' || s[1] == '*') && s[2] == ' ';
    if (ok) {
        p->family = s[1] == '+' ? TASK_ADD : TASK_MUL;
        s += 3;
        ok = parse_uint(&s, &p->b) && !strcmp(s, "?");
    }
    if (ok) { /* spelled exactly: no leading zeros, no extra spaces */
        arith_question(p);
        ok = !strcmp(p->question, q);
    }
    if (!ok)
        return dsc_fail(DSC_ERR_FORMAT, "task: question: not \"What is A + B?\" or \"What is A * B?\" (nor Countdown, "
                                        "which has numbers)");
    if (p->family == TASK_ADD ? __builtin_add_overflow(p->a, p->b, &p->target)
                              : __builtin_mul_overflow(p->a, p->b, &p->target))
        return dsc_fail(DSC_ERR_FORMAT, "task: question: the result does not fit in 64 bits");
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "answer");
    if (!cJSON_IsString(a)) return dsc_fail(DSC_ERR_FORMAT, "task: answer: expected a string");
    char want[24];
    snprintf(want, sizeof want, "%lld", (long long)p->target);
    if (strcmp(a->valuestring, want))
        return dsc_fail(DSC_ERR_FORMAT, "task: answer: \"%.40s\" is not %s", a->valuestring, want);
    return DSC_OK;
}

static int json_int(const cJSON *x, double lo, int64_t *v) {
    if (!cJSON_IsNumber(x)) return 0;
    const double d = x->valuedouble;
    if (!(d >= lo && d <= TASK_JSON_MAX) || d != (double)(int64_t)d) return 0;
    *v = (int64_t)d;
    return 1;
}

static dsc_status countdown_from_json(const cJSON *j, const char *q, task_problem *p) {
    p->family = TASK_COUNTDOWN;
    const cJSON *nums = cJSON_GetObjectItemCaseSensitive(j, "numbers"), *x;
    if (!cJSON_IsArray(nums))
        return dsc_fail(DSC_ERR_FORMAT, "task: numbers: expected an array of 1..%d integers", TASK_MAX_NUMBERS);
    const int n = cJSON_GetArraySize(nums);
    if (n < 1 || n > TASK_MAX_NUMBERS)
        return dsc_fail(DSC_ERR_FORMAT, "task: numbers: %d numbers, not 1..%d", n, TASK_MAX_NUMBERS);
    int i = 0;
    cJSON_ArrayForEach(x, nums) {
        if (!json_int(x, 1, &p->numbers[i]))
            return dsc_fail(DSC_ERR_FORMAT, "task: numbers[%d]: expected a positive integer below 2^53", i);
        i++;
    }
    p->n_numbers = n;
    if (!json_int(cJSON_GetObjectItemCaseSensitive(j, "target"), -TASK_JSON_MAX, &p->target))
        return dsc_fail(DSC_ERR_FORMAT, "task: target: expected an integer within +-2^53");
    countdown_question(p->numbers, n, p->target, p->question, sizeof p->question);
    if (strcmp(p->question, q))
        return dsc_fail(DSC_ERR_FORMAT, "task: question: does not match numbers and target (expected \"%s\")",
                        p->question);
    return DSC_OK;
}

dsc_status task_from_json(const char *line, task_problem *p) {
    memset(p, 0, sizeof *p);
    cJSON *j = line ? fio_parse_json(line, strlen(line)) : NULL;
    dsc_status s = DSC_OK;
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(j, "question");
    if (!j) s = dsc_fail(DSC_ERR_FORMAT, "task: %s", line ? fio_json_error() : "no text");
    else if (!cJSON_IsObject(j)) s = dsc_fail(DSC_ERR_FORMAT, "task: not a JSON object");
    else if (!cJSON_IsString(q)) s = dsc_fail(DSC_ERR_FORMAT, "task: question: expected a string");
    else if (cJSON_GetObjectItemCaseSensitive(j, "numbers") || !strncmp(q->valuestring, "Using the numbers", 17))
        s = countdown_from_json(j, q->valuestring, p);
    else s = arith_from_json(j, q->valuestring, p);
    cJSON_Delete(j);
    if (s) memset(p, 0, sizeof *p);
    return s;
}

char *task_to_json(const task_problem *p) {
    cJSON *j = cJSON_CreateObject(), *nums = NULL;
    char num[24];
    int ok = j && cJSON_AddStringToObject(j, "question", p->question);
    if (p->family == TASK_COUNTDOWN) {
        ok = ok && (nums = cJSON_AddArrayToObject(j, "numbers"));
        for (int i = 0; ok && i < p->n_numbers && i < TASK_MAX_NUMBERS; i++) {
            snprintf(num, sizeof num, "%lld", (long long)p->numbers[i]);
            cJSON *x = cJSON_CreateRaw(num); /* exact for every int64 */
            ok = x && cJSON_AddItemToArray(nums, x);
        }
        snprintf(num, sizeof num, "%lld", (long long)p->target);
        ok = ok && cJSON_AddRawToObject(j, "target", num);
    } else {
        snprintf(num, sizeof num, "%lld", (long long)p->target);
        ok = ok && cJSON_AddStringToObject(j, "answer", num);
    }
    char *line = ok ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    return line;
}
