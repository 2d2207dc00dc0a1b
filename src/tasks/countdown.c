/*
 * countdown.c — the Countdown family: reach a target from a few numbers
 * with + - * /. Generation and the worked search follow the game's rules
 * (every intermediate value a positive integer: subtraction only when the
 * result is > 0, division only when exact); the checker, task_countdown_eval,
 * accepts any expression whose exact rational value is the target.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "tasks/task_internal.h"

/* ------------------------------------------------------------ generation */

/* The game's numbers: 1..10 twice each, 25 50 75 100 once. */
static const int64_t cd_pool[24] = {1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 25, 50, 75, 100};
#define CD_TARGET_MIN 10
#define CD_TARGET_MAX 999

void countdown_question(const int64_t *numbers, int n, int64_t target, char *q, size_t cap) {
    size_t k = (size_t)snprintf(q, cap, "Using the numbers [");
    for (int i = 0; i < n && k < cap; i++)
        k += (size_t)snprintf(q + k, cap - k, "%s%lld", i ? ", " : "", (long long)numbers[i]);
    if (k < cap) snprintf(q + k, cap - k, "], each at most once, with + - * and /, make %lld.", (long long)target);
}

/* One move of the game on a and b (either order): the result, or -1 when
 * it is not a positive integer or would overflow. */
static int64_t cd_apply(int64_t a, int64_t b, char op) {
    int64_t hi = a > b ? a : b, lo = a > b ? b : a, r;
    switch (op) {
    case '+': return __builtin_add_overflow(hi, lo, &r) ? -1 : r;
    case '-': return hi > lo ? hi - lo : -1;
    case '*': return __builtin_mul_overflow(hi, lo, &r) ? -1 : r;
    default: return lo > 0 && hi % lo == 0 ? hi / lo : -1;
    }
}

/* A random expression over some (2..n) of the numbers: its value, or -1
 * when a move was not allowed. */
static int64_t cd_random_value(const int64_t *numbers, int n, uint64_t *rng) {
    int64_t v[TASK_MAX_NUMBERS];
    memcpy(v, numbers, (size_t)n * sizeof v[0]);
    int k = 2 + (int)task_uniform(rng, (uint64_t)n - 1);
    for (int i = 0; i < k; i++) { /* the first k of a partial shuffle */
        int j = i + (int)task_uniform(rng, (uint64_t)(n - i));
        int64_t t = v[i];
        v[i] = v[j], v[j] = t;
    }
    for (; k > 1; k--) {
        int i = (int)task_uniform(rng, (uint64_t)k), j = (int)task_uniform(rng, (uint64_t)k - 1);
        if (j >= i) j++;
        int64_t r = cd_apply(v[i], v[j], "+-*/"[task_uniform(rng, 4)]);
        if (r < 0) return -1;
        int lo = i < j ? i : j, hi = i < j ? j : i;
        v[lo] = r, v[hi] = v[k - 1];
    }
    return v[0];
}

dsc_status countdown_generate(int level, uint64_t *rng, task_problem *out) {
    const int n = level + 2;
    memset(out, 0, sizeof *out);
    out->family = TASK_COUNTDOWN;
    out->n_numbers = n;
    for (;;) { /* some draws (1 1 2) reach nothing in range: draw again */
        int64_t pool[24];
        memcpy(pool, cd_pool, sizeof pool);
        for (int i = 0; i < n; i++) {
            int j = i + (int)task_uniform(rng, (uint64_t)(24 - i));
            int64_t t = pool[i];
            pool[i] = pool[j], pool[j] = t;
            out->numbers[i] = pool[i];
        }
        for (int attempt = 0; attempt < 64; attempt++) {
            int64_t t = cd_random_value(out->numbers, n, rng);
            int offered = 0;
            for (int i = 0; i < n; i++) offered |= out->numbers[i] == t;
            if (t < CD_TARGET_MIN || t > CD_TARGET_MAX || offered) continue; /* no one-number answers */
            out->target = t;
            countdown_question(out->numbers, n, t, out->question, sizeof out->question);
            return DSC_OK;
        }
    }
}

/* ---------------------------------------------------------------- search */

/* Iterative deepening over the game's states, so that the solution shown
 * has the fewest moves. The numbers are kept in decreasing order; pairs
 * are tried larger first (i < j), each with + - * / as "larger op smaller".
 * Every new value is compared with the target, so expressions over any
 * subset of the numbers are found; "x*1" and "x/1" are skipped, as they
 * only drop the 1. A line of the trace is one path of moves, down to the
 * depth limit ("... no") or to the target ("... yes"); the trace keeps the
 * last CD_SHOWN dead ends before the solution, which share its first moves. */
#define CD_SHOWN 3
#define CD_MOVES (TASK_MAX_NUMBERS - 1)

typedef struct {
    int64_t a, b, c;
    char op;
    signed char from_a, from_b; /* the move that made a (b), or -1 for a given number */
} cd_move;

typedef struct {
    cd_move move[CD_MOVES];
    int n;
} cd_path;

typedef struct {
    int64_t target;
    cd_path path;              /* the moves so far */
    cd_path dead[CD_SHOWN];    /* a ring of the latest dead ends */
    long n_dead;
} cd_search;

static int cd_dfs(cd_search *s, const int64_t *v, const signed char *from, int k, int limit) {
    const int depth = s->path.n;
    for (int i = 0; i < k; i++)
        for (int j = i + 1; j < k; j++)
            for (int o = 0; o < 4; o++) {
                const char op = "+-*/"[o];
                if ((op == '*' || op == '/') && v[j] == 1) continue;
                const int64_t r = cd_apply(v[i], v[j], op);
                if (r < 0) continue;
                s->path.move[depth] = (cd_move){v[i], v[j], r, op, from[i], from[j]};
                s->path.n = depth + 1;
                if (r == s->target) return 1;
                if (k == 2 || depth + 1 == limit) {
                    s->dead[s->n_dead++ % CD_SHOWN] = s->path;
                    continue;
                }
                /* the state after the move: the others, with r in its place by size */
                int64_t nv[TASK_MAX_NUMBERS];
                signed char nf[TASK_MAX_NUMBERS];
                int m = 0, placed = 0;
                for (int t = 0; t < k; t++) {
                    if (t == i || t == j) continue;
                    if (!placed && r >= v[t]) nv[m] = r, nf[m++] = (signed char)depth, placed = 1;
                    nv[m] = v[t], nf[m++] = from[t];
                }
                if (!placed) nv[m] = r, nf[m++] = (signed char)depth;
                if (cd_dfs(s, nv, nf, m, limit)) return 1;
                s->path.n = depth;
            }
    return 0;
}

static void cd_print_line(task_buf *b, const cd_path *p, const char *end) {
    for (int d = 0; d < p->n; d++)
        task_buf_printf(b, "%s%lld%c%lld=%lld", d ? ", " : "", (long long)p->move[d].a, p->move[d].op,
                        (long long)p->move[d].b, (long long)p->move[d].c);
    task_buf_printf(b, " %s\n", end);
}

/* The expression of move d, fully parenthesised except at the top. */
static void cd_print_expr(task_buf *b, const cd_path *p, int d, int top) {
    const cd_move *m = &p->move[d];
    if (!top) task_buf_printf(b, "(");
    if (m->from_a < 0) task_buf_printf(b, "%lld", (long long)m->a);
    else cd_print_expr(b, p, m->from_a, 0);
    task_buf_printf(b, "%c", m->op);
    if (m->from_b < 0) task_buf_printf(b, "%lld", (long long)m->b);
    else cd_print_expr(b, p, m->from_b, 0);
    if (!top) task_buf_printf(b, ")");
}

/* The trace:
 *
 *   9+2=11, 10-1=9 no          (the last 3 dead ends at the solution's depth)
 *   9-2=7, 10+7=17 no
 *   9-2=7, 10-7=3 no
 *   9-2=7, 10*7=70 yes
 *   </think>
 *
 *   \boxed{10*(9-2)}
 *
 * A target that is one of the numbers is the line "N yes"; an unsolvable
 * problem ends "no solution" and \boxed{none}. */
char *countdown_solution(const task_problem *p) {
    cd_search s = {.target = p->target};
    const int n = p->n_numbers < 0 ? 0 : p->n_numbers > TASK_MAX_NUMBERS ? TASK_MAX_NUMBERS : p->n_numbers;
    int64_t v[TASK_MAX_NUMBERS];
    signed char from[TASK_MAX_NUMBERS];
    memset(from, -1, sizeof from); /* all given numbers */
    int m = 0, given = 0;
    for (int i = 0; i < n; i++) {
        given |= p->numbers[i] == p->target;
        if (p->numbers[i] <= 0) continue; /* not a number of the game */
        int t = m++;
        for (; t > 0 && v[t - 1] < p->numbers[i]; t--) v[t] = v[t - 1];
        v[t] = p->numbers[i];
    }
    task_buf b = {0};
    if (given) {
        task_buf_printf(&b, "%lld yes\n</think>\n\n\\boxed{%lld}", (long long)p->target, (long long)p->target);
        return task_buf_take(&b);
    }
    int found = 0;
    for (int limit = 1; limit < m && !found; limit++) {
        s.n_dead = 0, s.path.n = 0;
        found = cd_dfs(&s, v, from, m, limit);
    }
    const long shown = s.n_dead < CD_SHOWN ? s.n_dead : CD_SHOWN;
    for (long d = s.n_dead - shown; d < s.n_dead; d++) cd_print_line(&b, &s.dead[d % CD_SHOWN], "no");
    if (found) {
        cd_print_line(&b, &s.path, "yes");
        task_buf_printf(&b, "</think>\n\n\\boxed{");
        cd_print_expr(&b, &s.path, s.path.n - 1, 1);
        task_buf_printf(&b, "}");
    } else {
        task_buf_printf(&b, "no solution\n</think>\n\n\\boxed{none}");
    }
    return task_buf_take(&b);
}

/* ------------------------------------------------------------ evaluation */

/* Exact rationals: n / d with d > 0, reduced; INT64_MIN never occurs, so
 * negation and absolute values are safe. */
typedef struct {
    int64_t n, d;
} cd_q;

typedef struct {
    const char *s;
    size_t pos;
    const int64_t *numbers;
    int n_numbers;
    int used[TASK_MAX_NUMBERS];
    int depth;
    char *why;
    size_t why_cap;
    int failed;
} cd_parser;

static int64_t cd_gcd(int64_t a, int64_t b) {
    if (a < 0) a = -a;
    if (b < 0) b = -b;
    while (b) {
        int64_t t = a % b;
        a = b, b = t;
    }
    return a;
}

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static int cd_fail(cd_parser *P, const char *fmt, ...) {
    if (!P->failed && P->why && P->why_cap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(P->why, P->why_cap, fmt, ap);
        va_end(ap);
    }
    P->failed = 1;
    return 0;
}

static int cd_make(cd_parser *P, int64_t n, int64_t d, cd_q *out) {
    if (n == INT64_MIN || d == INT64_MIN) return cd_fail(P, "overflow");
    if (d < 0) n = -n, d = -d;
    int64_t g = cd_gcd(n, d);
    if (g > 1) n /= g, d /= g;
    if (n == 0) d = 1;
    *out = (cd_q){n, d};
    return 1;
}

static int cd_arith(cd_parser *P, cd_q x, char op, cd_q y, cd_q *out) {
    int64_t n, d, t, u;
    if (op == '-') op = '+', y.n = -y.n;
    if (op == '/') {
        if (y.n == 0) return cd_fail(P, "division by zero");
        int64_t yn = y.n;
        op = '*', y.n = y.d, y.d = yn;
        if (y.d < 0) y.n = -y.n, y.d = -y.d;
    }
    if (op == '+') {
        int64_t g = cd_gcd(x.d, y.d);
        if (__builtin_mul_overflow(x.n, y.d / g, &t) || __builtin_mul_overflow(y.n, x.d / g, &u) ||
            __builtin_add_overflow(t, u, &n) || __builtin_mul_overflow(x.d / g, y.d, &d))
            return cd_fail(P, "overflow");
    } else {
        int64_t g1 = cd_gcd(x.n, y.d), g2 = cd_gcd(y.n, x.d);
        if (g1 == 0) g1 = 1;
        if (g2 == 0) g2 = 1;
        if (__builtin_mul_overflow(x.n / g1, y.n / g2, &n) || __builtin_mul_overflow(x.d / g2, y.d / g1, &d))
            return cd_fail(P, "overflow");
    }
    return cd_make(P, n, d, out);
}

static void cd_space(cd_parser *P) {
    while (P->s[P->pos] == ' ' || P->s[P->pos] == '\t' || P->s[P->pos] == '\n' || P->s[P->pos] == '\r') P->pos++;
}

static int cd_expr(cd_parser *P, cd_q *out);

/* factor := INTEGER | "(" expr ")" */
static int cd_factor(cd_parser *P, cd_q *out) {
    cd_space(P);
    const char c = P->s[P->pos];
    if (c == '(') {
        if (++P->depth > 64) return cd_fail(P, "parentheses nested deeper than 64");
        P->pos++;
        if (!cd_expr(P, out)) return 0;
        cd_space(P);
        if (P->s[P->pos] != ')') return cd_fail(P, "syntax error at character %zu", P->pos);
        P->pos++, P->depth--;
        return 1;
    }
    if (c < '0' || c > '9') return cd_fail(P, "syntax error at character %zu", P->pos);
    int64_t v = 0;
    for (; P->s[P->pos] >= '0' && P->s[P->pos] <= '9'; P->pos++)
        if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, P->s[P->pos] - '0', &v))
            return cd_fail(P, "overflow in a number");
    int offered = 0;
    for (int i = 0; i < P->n_numbers; i++) {
        if (P->numbers[i] != v) continue;
        offered = 1;
        if (!P->used[i]) {
            P->used[i] = 1;
            return cd_make(P, v, 1, out);
        }
    }
    return cd_fail(P, offered ? "%lld used more often than offered" : "%lld is not one of the numbers", (long long)v);
}

/* The multiplicative operator at P->pos as '*' or '/' (0 if none), with its
 * length: ASCII, LaTeX (\times, \cdot, \div, not followed by a letter) or
 * UTF-8 (U+00D7, U+00B7, U+00F7). */
static char cd_mulop(const cd_parser *P, size_t *len) {
    static const struct {
        const char *text;
        char op;
    } ops[] = {{"*", '*'}, {"/", '/'}, {"\\times", '*'}, {"\\cdot", '*'}, {"\\div", '/'},
               {"\xc3\x97", '*'}, {"\xc2\xb7", '*'}, {"\xc3\xb7", '/'}};
    const char *s = P->s + P->pos;
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        const size_t n = strlen(ops[i].text);
        if (strncmp(s, ops[i].text, n)) continue;
        if (ops[i].text[0] == '\\' && ((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= 'A' && s[n] <= 'Z'))) continue;
        *len = n;
        return ops[i].op;
    }
    return 0;
}

/* term := factor (mulop factor)*, mulop as cd_mulop */
static int cd_term(cd_parser *P, cd_q *out) {
    if (!cd_factor(P, out)) return 0;
    for (;;) {
        cd_space(P);
        size_t len = 0;
        const char op = cd_mulop(P, &len);
        if (!op) return 1;
        P->pos += len;
        cd_q y;
        if (!cd_factor(P, &y) || !cd_arith(P, *out, op, y, out)) return 0;
    }
}

/* expr := term (("+" | "-") term)* */
static int cd_expr(cd_parser *P, cd_q *out) {
    if (!cd_term(P, out)) return 0;
    for (;;) {
        cd_space(P);
        const char op = P->s[P->pos];
        if (op != '+' && op != '-') return 1;
        P->pos++;
        cd_q y;
        if (!cd_term(P, &y) || !cd_arith(P, *out, op, y, out)) return 0;
    }
}

int task_countdown_eval(const char *expr, const int64_t *numbers, int n_numbers, int64_t *num, int64_t *den,
                        char *why, size_t why_cap) {
    cd_parser P = {.s = expr, .numbers = numbers, .n_numbers = n_numbers, .why = why, .why_cap = why_cap};
    if (why && why_cap) why[0] = 0;
    if (n_numbers < 0 || n_numbers > TASK_MAX_NUMBERS || (n_numbers && !numbers))
        return cd_fail(&P, "%lld numbers offered, not 0..6", (long long)n_numbers);
    cd_q v;
    if (!cd_expr(&P, &v)) return 0;
    cd_space(&P);
    if (P.s[P.pos]) return cd_fail(&P, "syntax error at character %zu", P.pos);
    *num = v.n, *den = v.d;
    return 1;
}
