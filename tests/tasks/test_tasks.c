/*
 * test_tasks.c — the verifiable tasks (src/tasks/tasks.h): generators
 * (determinism, levels, spellings), worked solutions (exact traces, every
 * one passing the checker), the Countdown search against an independent
 * brute force, the checker on adversarial answers, the vote and the JSON
 * lines.
 *
 *   test_tasks
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsc.h"
#include "tasks/tasks.h"

#include "../check.h"

static int n_digits(int64_t x) {
    int d = 1;
    while (x >= 10) x /= 10, d++;
    return d;
}

static task_problem countdown(int n, const int64_t *numbers, int64_t target) {
    task_problem p = {.family = TASK_COUNTDOWN, .n_numbers = n, .target = target};
    memcpy(p.numbers, numbers, (size_t)n * sizeof *numbers);
    return p;
}

/* ------------------------------------------------------------ generators */

static void test_basics(void) {
    uint64_t s = 0;
    /* splitmix64's published first outputs for state 0 */
    CHECK(task_rand(&s) == 0xE220A8397B1DCDAFull, "splitmix64 first output");
    CHECK(task_rand(&s) == 0x6E789E6AA1B965F4ull, "splitmix64 second output");
    CHECK(task_family_parse("add") == TASK_ADD && task_family_parse("mul") == TASK_MUL &&
              task_family_parse("countdown") == TASK_COUNTDOWN && task_family_parse("div") == -1 &&
              task_family_parse(NULL) == -1,
          "family names");
    CHECK(!strcmp(task_family_name(TASK_COUNTDOWN), "countdown"), "family name");
    CHECK(task_max_level(TASK_ADD) == 5 && task_max_level(TASK_MUL) == 3 && task_max_level(TASK_COUNTDOWN) == 2,
          "max levels");
    task_problem p;
    uint64_t rng = 1;
    CHECK(task_generate(TASK_ADD, 0, &rng, &p) == DSC_ERR_ARG, "level 0");
    CHECK(task_generate(TASK_ADD, 6, &rng, &p) == DSC_ERR_ARG, "add level 6");
    CHECK(task_generate(TASK_MUL, 4, &rng, &p) == DSC_ERR_ARG, "mul level 4");
    CHECK(task_generate(TASK_COUNTDOWN, 3, &rng, &p) == DSC_ERR_ARG, "countdown level 3");
    CHECK(task_generate((task_family)3, 1, &rng, &p) == DSC_ERR_ARG, "family 3");
}

static void test_determinism(void) {
    for (int f = 0; f < TASK_N_FAMILIES; f++) {
        uint64_t r1 = 42, r2 = 42, r3 = 43;
        int same = 1, differ = 0;
        for (int i = 0; i < 200; i++) {
            task_problem a, b, c;
            task_generate((task_family)f, task_max_level((task_family)f), &r1, &a);
            task_generate((task_family)f, task_max_level((task_family)f), &r2, &b);
            task_generate((task_family)f, task_max_level((task_family)f), &r3, &c);
            char *sa = task_solution(&a), *sb = task_solution(&b);
            same &= !memcmp(&a, &b, sizeof a) && !strcmp(sa, sb);
            differ |= strcmp(a.question, c.question) != 0;
            free(sa), free(sb);
        }
        CHECK(same, "%s: the same seed gives the same problems and solutions", task_family_name((task_family)f));
        CHECK(differ, "%s: another seed gives other problems", task_family_name((task_family)f));
    }
}

/* Operand sizes within the level, every size drawn, the exact spelling. */
static void test_arith_levels(void) {
    for (int f = TASK_ADD; f <= TASK_MUL; f++)
        for (int level = 1; level <= task_max_level((task_family)f); level++) {
            uint64_t rng = (uint64_t)(100 * f + level);
            int count[6] = {0}, ok = 1, spelled = 1;
            const int N = 3000;
            for (int i = 0; i < N; i++) {
                task_problem p;
                task_generate((task_family)f, level, &rng, &p);
                ok &= p.a >= 0 && p.b >= 0 && n_digits(p.a) <= level && n_digits(p.b) <= level &&
                      p.target == (f == TASK_ADD ? p.a + p.b : p.a * p.b) && (int)p.family == f;
                count[n_digits(p.a)]++, count[n_digits(p.b)]++;
                char q[256];
                snprintf(q, sizeof q, "What is %lld %s %lld?", (long long)p.a, f == TASK_ADD ? "+" : "*",
                         (long long)p.b);
                spelled &= !strcmp(q, p.question);
            }
            int uniform = 1;
            for (int d = 1; d <= level; d++) uniform &= count[d] > 2 * N / level * 8 / 10;
            CHECK(ok, "%s level %d: operands within the level", task_family_name((task_family)f), level);
            CHECK(uniform, "%s level %d: digit counts uniform", task_family_name((task_family)f), level);
            CHECK(spelled, "%s level %d: question spelling", task_family_name((task_family)f), level);
        }
}

static void test_countdown_levels(void) {
    for (int level = 1; level <= 2; level++) {
        uint64_t rng = (uint64_t)level;
        int ok = 1, spelled = 1;
        for (int i = 0; i < 2000; i++) {
            task_problem p;
            task_generate(TASK_COUNTDOWN, level, &rng, &p);
            int times[101] = {0}, valid = p.n_numbers == level + 2 && p.target >= 10 && p.target <= 999;
            for (int k = 0; k < p.n_numbers; k++) {
                const int64_t x = p.numbers[k];
                const int large = x == 25 || x == 50 || x == 75 || x == 100;
                valid &= ((x >= 1 && x <= 10) || large) && ++times[x] <= (large ? 1 : 2) && x != p.target;
            }
            ok &= valid;
            char q[256] = "Using the numbers [";
            for (int k = 0; k < p.n_numbers; k++)
                snprintf(q + strlen(q), sizeof q - strlen(q), "%s%lld", k ? ", " : "", (long long)p.numbers[k]);
            snprintf(q + strlen(q), sizeof q - strlen(q), "], each at most once, with + - * and /, make %lld.",
                     (long long)p.target);
            spelled &= !strcmp(q, p.question);
            if (!valid) printf("  bad problem: %s\n", p.question);
        }
        CHECK(ok, "countdown level %d: numbers from the pool, target in 10..999", level);
        CHECK(spelled, "countdown level %d: question spelling", level);
    }
}

/* ------------------------------------------------------------- solutions */

static void test_exact_traces(void) {
    static const struct {
        task_family f;
        int64_t a, b;
        const char *want;
    } cases[] = {
        {TASK_ADD, 48213, 9377,
         "48213+09377\n3+7+0=10\n1+7+1=9\n2+3+0=5\n8+9+0=17\n4+0+1=5\nso 57590\n</think>\n\n\\boxed{57590}"},
        {TASK_ADD, 99, 1, "99+01\n9+1+0=10\n9+0+1=10\nso 100\n</think>\n\n\\boxed{100}"},
        {TASK_ADD, 0, 0, "0+0\n0+0+0=0\nso 0\n</think>\n\n\\boxed{0}"},
        {TASK_MUL, 347, 86, "347*86\n347*6=2082\n347*80=27760\n2082+27760=29842\n</think>\n\n\\boxed{29842}"},
        {TASK_MUL, 347, 6, "347*6\n347*6=2082\n</think>\n\n\\boxed{2082}"},
        {TASK_MUL, 347, 105,
         "347*105\n347*5=1735\n347*0=0\n347*100=34700\n1735+0=1735\n1735+34700=36435\n</think>\n\n\\boxed{36435}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        task_problem p = {.family = cases[i].f, .a = cases[i].a, .b = cases[i].b};
        p.target = p.family == TASK_ADD ? p.a + p.b : p.a * p.b;
        char *s = task_solution(&p);
        CHECK(s && !strcmp(s, cases[i].want), "trace %lld %c %lld:\n%s\nwanted\n%s", (long long)p.a,
              p.family == TASK_ADD ? '+' : '*', (long long)p.b, s, cases[i].want);
        free(s);
    }
    /* Countdown: the fewest moves; the dead ends are the last three before it */
    static const struct {
        int n;
        int64_t numbers[6], target;
        const char *want;
    } cd[] = {
        {4, {3, 7, 25, 50}, 82, "50+25=75, 75+7=82 yes\n</think>\n\n\\boxed{(50+25)+7}"},
        {4, {9, 10, 2, 1}, 70,
         "9+2=11, 10-1=9 no\n9-2=7, 10+7=17 no\n9-2=7, 10-7=3 no\n9-2=7, 10*7=70 yes\n</think>\n\n\\boxed{10*(9-2)}"},
        {2, {25, 3}, 25, "25 yes\n</think>\n\n\\boxed{25}"},
        {2, {1, 1}, 500, "1+1=2 no\nno solution\n</think>\n\n\\boxed{none}"},
    };
    for (size_t i = 0; i < sizeof cd / sizeof cd[0]; i++) {
        task_problem p = countdown(cd[i].n, cd[i].numbers, cd[i].target);
        char *s = task_solution(&p);
        CHECK(s && !strcmp(s, cd[i].want), "countdown trace %zu:\n%s\nwanted\n%s", i, s, cd[i].want);
        free(s);
    }
}

/* Every worked solution is well formatted and right, and short. */
static void test_solutions_check(void) {
    static const int max_len[TASK_N_FAMILIES] = {100, 130, 250};
    for (int f = 0; f < TASK_N_FAMILIES; f++)
        for (int level = 1; level <= task_max_level((task_family)f); level++) {
            uint64_t rng = (uint64_t)(7 + 10 * f + level);
            int ok = 1, longest = 0, regular = 1;
            double total = 0;
            const int N = 3000;
            for (int i = 0; i < N; i++) {
                task_problem p;
                task_generate((task_family)f, level, &rng, &p);
                char *s = task_solution(&p);
                task_verdict v;
                task_check(&p, s, &v);
                const int n = (int)strlen(s);
                if (ok && !(v.format_ok && v.correct)) printf("  not passing: %s\n%s\n", p.question, s);
                ok &= v.format_ok && v.correct;
                regular &= strstr(s, "\n</think>\n\n\\boxed{") != NULL && s[n - 1] == '}' && strncmp(s, "<think>", 7);
                longest = n > longest ? n : longest;
                total += n;
                free(s);
            }
            const char *name = task_family_name((task_family)f);
            CHECK(ok, "%s level %d: every solution passes the checker", name, level);
            CHECK(regular, "%s level %d: solutions end \"\\n</think>\\n\\n\\boxed{...}\"", name, level);
            CHECK(longest <= max_len[f], "%s level %d: longest solution %d > %d chars", name, level, longest,
                  max_len[f]);
            if (level == task_max_level((task_family)f))
                printf("  %s level %d: solutions %.1f chars on average, %d at most\n", name, level, total / N,
                       longest);
        }
}

/* The search against a brute force over every order of the moves. */
static void reach(const int64_t *v, int k, char *seen, int64_t cap) {
    for (int i = 0; i < k; i++)
        if (v[i] < cap) seen[v[i]] = 1;
    for (int i = 0; i < k; i++)
        for (int j = 0; j < k; j++) {
            if (i == j) continue;
            int64_t rest[TASK_MAX_NUMBERS], r[4];
            int m = 0, nr = 0;
            for (int t = 0; t < k; t++)
                if (t != i && t != j) rest[m++] = v[t];
            r[nr++] = v[i] + v[j], r[nr++] = v[i] * v[j];
            if (v[i] > v[j]) r[nr++] = v[i] - v[j];
            if (v[i] % v[j] == 0) r[nr++] = v[i] / v[j];
            for (int t = 0; t < nr; t++) {
                rest[m] = r[t];
                reach(rest, m + 1, seen, cap);
            }
        }
}

static void test_search_complete(void) {
    uint64_t rng = 5;
    int agree = 1;
    for (int set = 0; set < 12; set++) {
        task_problem p;
        task_generate(TASK_COUNTDOWN, 1 + set % 2, &rng, &p);
        enum { CAP = 400 };
        char seen[CAP] = {0};
        reach(p.numbers, p.n_numbers, seen, CAP);
        for (int64_t t = 1; t < CAP; t++) {
            p.target = t;
            char *s = task_solution(&p);
            task_verdict v;
            task_check(&p, s, &v);
            if (agree && v.correct != seen[t])
                printf("  %s: search %d, brute force %d\n", p.question, v.correct, seen[t]);
            agree &= v.correct == seen[t];
            free(s);
        }
    }
    CHECK(agree, "Countdown search finds a solution exactly when the brute force does");
    /* six large numbers, unreachable: the whole search, still quick */
    task_problem p = countdown(6, (const int64_t[]){100, 75, 50, 25, 10, 9}, 9997);
    char *s = task_solution(&p);
    CHECK(s && strstr(s, "no solution\n</think>\n\n\\boxed{none}"), "six numbers, 9997 unreachable");
    free(s);
}

/* --------------------------------------------------------------- checker */

static void test_extract_boxed(void) {
    char out[64];
    CHECK(!task_extract_boxed("the answer is 5", out, sizeof out), "no box");
    CHECK(task_extract_boxed("\\boxed{}", out, sizeof out) && !strcmp(out, ""), "empty box");
    CHECK(!task_extract_boxed("\\boxed{12", out, sizeof out), "unclosed box");
    CHECK(task_extract_boxed("x \\boxed{{57590}} y", out, sizeof out) && !strcmp(out, "{57590}"), "nested braces");
    CHECK(task_extract_boxed("\\boxed{\\frac{1}{2}}", out, sizeof out) && !strcmp(out, "\\frac{1}{2}"), "frac");
    CHECK(task_extract_boxed("\\boxed{1} then \\boxed{2}.", out, sizeof out) && !strcmp(out, "2"), "last box wins");
    CHECK(!task_extract_boxed("\\boxed{1} then \\boxed{2", out, sizeof out), "the last box unclosed");
    CHECK(task_extract_boxed("\\boxed{a \\boxed{b} c}", out, sizeof out) && !strcmp(out, "a \\boxed{b} c"),
          "a box in a box is content");
    CHECK(!task_extract_boxed("\\boxed{123456}", out, 6) && task_extract_boxed("\\boxed{12345}", out, 6),
          "capacity");
}

static task_verdict check(const task_problem *p, const char *completion) {
    task_verdict v;
    task_check(p, completion, &v);
    return v;
}

static void test_check_arith(void) {
    task_problem p = {.family = TASK_ADD, .a = 48213, .b = 9377, .target = 57590};
    task_verdict v = check(&p, "3+7=10\n</think>\n\n\\boxed{57590}");
    CHECK(v.format_ok && v.correct && !strcmp(v.key, "57590") && !strcmp(v.answer, "57590"), "right");
    v = check(&p, "r\n</think>\n\n\\boxed{57591}");
    CHECK(v.format_ok && !v.correct && !strcmp(v.key, "57591"), "wrong: key %s", v.key);
    v = check(&p, "r\n</think>\n\n\\boxed{}");
    CHECK(!v.correct && !v.key[0], "empty box");
    v = check(&p, "r\n</think>\n\n57590");
    CHECK(!v.format_ok && !v.correct && !v.key[0] && !v.answer[0], "no box");
    v = check(&p, "r\n</think>\n\n\\boxed{57590");
    CHECK(!v.format_ok && !v.correct && !v.key[0], "unclosed box");
    v = check(&p, "r\n</think>\n\n\\boxed{{57590}}");
    CHECK(!v.correct && !v.key[0] && !strcmp(v.answer, "{57590}"), "nested braces are not digits");
    v = check(&p, "r\n</think>\n\n\\boxed{+57590}");
    CHECK(!v.correct && !v.key[0], "sign");
    v = check(&p, "r\n</think>\n\n\\boxed{57,590}");
    CHECK(!v.correct && !v.key[0], "commas");
    v = check(&p, "r\n</think>\n\n\\boxed{57 590}");
    CHECK(!v.correct && !v.key[0], "spaces");
    v = check(&p, "r\n</think>\n\n\\boxed{0057590}");
    CHECK(v.correct && !strcmp(v.key, "57590"), "leading zeros: key %s", v.key);
    v = check(&p, "r\n</think>\n\n\\boxed{157590}");
    CHECK(!v.correct && !strcmp(v.key, "157590"), "a longer number");
    v = check(&p, "r\n</think>\n\n\\boxed{99999999999999999999999999999999999999}");
    CHECK(!v.correct && !strcmp(v.key, "99999999999999999999999999999999999999"), "beyond 64 bits");
    v = check(&p, "r\n</think>\n\n\\boxed{9999999999999999999999999999999999999999999999999999999999999999999999999}");
    CHECK(!v.correct && !v.key[0], "longer than a key: no vote");
    v = check(&p, "r\n</think>\n\n\\boxed{1} and \\boxed{57590}");
    CHECK(v.correct && v.format_ok, "the last box wins");
    v = check(&p, "r\n</think>\n\n\\boxed{57590} and \\boxed{1}");
    CHECK(!v.correct, "the last box wins (wrong)");
    task_problem z = {.family = TASK_MUL, .a = 0, .b = 7, .target = 0};
    v = check(&z, "r\n</think>\n\n\\boxed{000}");
    CHECK(v.correct && !strcmp(v.key, "0"), "zero");

    /* the format */
    v = check(&p, "\\boxed{57590}");
    CHECK(v.correct && !v.format_ok, "right without </think>: correct, badly formatted");
    v = check(&p, "</think>\n\n\\boxed{57590}");
    CHECK(v.correct && !v.format_ok, "no reasoning");
    v = check(&p, " \n\t</think>\n\n\\boxed{57590}");
    CHECK(v.correct && !v.format_ok, "blank reasoning");
    v = check(&p, "r</think>x</think>\\boxed{57590}");
    CHECK(v.correct && !v.format_ok, "two </think>");
    v = check(&p, "r \\boxed{57590}\n</think>\n\nso that is it");
    CHECK(v.correct && !v.format_ok, "the box inside the reasoning");
    v = check(&p, "r\n</think>\n\n\\boxed{57590}\nis the answer");
    CHECK(v.correct && !v.format_ok, "text after the box");
    v = check(&p, "r</think>The sum is \\boxed{57590} \n\n ");
    CHECK(v.correct && v.format_ok, "a summary before the box, whitespace after it");
    CHECK(task_reward(&v, 0.1f) == 1.1f, "reward");
    v = check(&p, "r\n</think>\n\n\\boxed{1}");
    CHECK(task_reward(&v, 0.25f) == 0.25f, "reward of a wrong, well formatted answer");
}

static void test_countdown_eval(void) {
    static const int64_t nums[4] = {3, 7, 25, 50}, n377[3] = {3, 7, 7}, n2525[2] = {25, 25}, n247[3] = {2, 4, 7};
    int64_t n = 0, d = 0;
    char why[128];
#define EVAL(e, ns, k) task_countdown_eval(e, ns, k, &n, &d, why, sizeof why)
    CHECK(EVAL("(50+25)+(7-3)", nums, 4) && n == 79 && d == 1, "(50+25)+(7-3)");
    CHECK(EVAL("50+25*3-7", nums, 4) && n == 118 && d == 1, "precedence");
    CHECK(EVAL("50-25-7", nums, 4) && n == 18, "left associative -");
    CHECK(EVAL("50/25/7", nums, 4) && n == 2 && d == 7, "left associative /: %lld/%lld", (long long)n, (long long)d);
    CHECK(EVAL(" ( 50 + 25 ) *\t3\n", nums, 4) && n == 225, "whitespace");
    CHECK(EVAL("7", nums, 4) && n == 7, "one number");
    CHECK(EVAL("3-50", nums, 4) && n == -47 && d == 1, "negative values are allowed");
    CHECK(!EVAL("3/(7-7)", n377, 3) && !strcmp(why, "division by zero"),
          "division by zero: %s", why);
    CHECK(!EVAL("25+25+31", nums, 4) && strstr(why, "25"), "25 reused: %s", why);
    CHECK(EVAL("25+25", n2525, 2) && n == 50, "25 offered twice");
    CHECK(!EVAL("50+31", nums, 4) && strstr(why, "31"), "31 not offered: %s", why);
    CHECK(!EVAL("-3+7", nums, 4) && strstr(why, "syntax"), "unary minus: %s", why);
    CHECK(!EVAL("7*(-3)", nums, 4), "unary minus in parentheses");
    CHECK(!EVAL("+3", nums, 4), "unary plus");
    CHECK(EVAL("(7/2)*4", n247, 3) && n == 14 && d == 1, "a fraction on the way");
    CHECK(EVAL("7/2", n247, 3) && n == 7 && d == 2, "a fraction");
    CHECK(EVAL("(3-7)/(50-25)", nums, 4) && n == -4 && d == 25, "negative fraction, reduced");
    /* LaTeX and Unicode multiplication and division signs, as models write them */
    CHECK(EVAL("(50 + 25) \\times 3 \\div 7", nums, 4) && n == 225 && d == 7, "\\times and \\div: %lld/%lld", (long long)n,
          (long long)d);
    CHECK(EVAL("3\\cdot(50-25)", nums, 4) && n == 75 && d == 1, "\\cdot");
    CHECK(EVAL("50 \xc3\x97 3 \xc3\xb7 25 \xc2\xb7 7", nums, 4) && n == 42 && d == 1, "U+00D7, U+00F7, U+00B7: %lld/%lld",
          (long long)n, (long long)d);
    const char *bad[] = {"3++4", "(3+4", "3 4", "", "   ", "()", "3+", "3)", "(3)(7)", "3*x", "3^7", "3.0", "3,7",
                         "3 \\timesy 7", "3 \\tim 7", "3 \\divide 7", "3 \\ 7", "3 \xc3 7", "\\times 3"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(!EVAL(bad[i], nums, 4) && why[0], "'%s' rejected (%s)", bad[i], why);
    const int64_t big[3] = {4000000000, 4000000000, 4000000000};
    CHECK(!EVAL("4000000000*4000000000*4000000000", big, 3) && strstr(why, "overflow"), "overflow: %s", why);
    CHECK(!EVAL("99999999999999999999", nums, 4) && strstr(why, "overflow"), "a literal beyond 64 bits: %s", why);
    char deep[400] = "";
    for (int i = 0; i < 150; i++) strcat(deep, "(");
    strcat(deep, "3");
    for (int i = 0; i < 150; i++) strcat(deep, ")");
    CHECK(!EVAL(deep, nums, 4), "150 nested parentheses rejected");
    CHECK(task_countdown_eval("3", nums, 4, &n, &d, NULL, 0) &&
              !task_countdown_eval("3/(7-7)", n377, 3, &n, &d, NULL, 0),
          "why may be NULL");
#undef EVAL
}

static void test_check_countdown(void) {
    task_problem p = countdown(4, (const int64_t[]){3, 7, 25, 50}, 82);
    task_verdict v = check(&p, "50+25=75, 75+7=82 yes\n</think>\n\n\\boxed{(50+25)+7}");
    CHECK(v.format_ok && v.correct && !strcmp(v.key, "82"), "right");
    v = check(&p, "r\n</think>\n\n\\boxed{ 7 + 25 + 50 }");
    CHECK(v.format_ok && v.correct, "right, other order and spaces");
    v = check(&p, "r\n</think>\n\n\\boxed{50+25+3}");
    CHECK(!v.correct && !strcmp(v.key, "78"), "wrong value: key %s", v.key);
    v = check(&p, "r\n</think>\n\n\\boxed{(50+25)/7}");
    CHECK(!v.correct && !strcmp(v.key, "75/7"), "fraction key: %s", v.key);
    v = check(&p, "r\n</think>\n\n\\boxed{50+25+7+7-7}");
    CHECK(!v.correct && !v.key[0], "a number reused: no key");
    v = check(&p, "r\n</think>\n\n\\boxed{82}");
    CHECK(!v.correct && !v.key[0], "the target itself is not a number offered");
    v = check(&p, "r\n</think>\n\n\\boxed{(50+25)+7=82}");
    CHECK(!v.correct && !v.key[0], "an equation is not an expression");
    task_problem q = countdown(3, (const int64_t[]){2, 3, 7}, 7);
    v = check(&q, "r\n</think>\n\n\\boxed{(7/2)*(3-...)}");
    CHECK(!v.correct, "garbage");
    task_problem r = countdown(3, (const int64_t[]){3, 3, 7}, 7);
    v = check(&r, "r\n</think>\n\n\\boxed{(7/3)*3}");
    CHECK(v.correct && !strcmp(v.key, "7"), "an inexact division on the way is allowed");
}

/* ------------------------------------------------------------------ vote */

static void test_vote(void) {
    task_verdict v[6];
    memset(v, 0, sizeof v);
    const char *k1[] = {"5", "6", "5", "7", "5", "6"};
    for (int i = 0; i < 6; i++) strcpy(v[i].key, k1[i]);
    const double lp1[] = {-9, -1, -3, -0.5, -2, -1};
    CHECK(task_vote(v, lp1, 6) == 4, "majority, its most likely sample: %d", task_vote(v, lp1, 6));
    const char *k2[] = {"5", "6", "6", "5"};
    for (int i = 0; i < 4; i++) strcpy(v[i].key, k2[i]);
    const double lp2[] = {-1, -3, -0.5, -2};
    CHECK(task_vote(v, lp2, 4) == 0, "tie: 5 has the larger summed logp (-3 > -3.5)");
    const double lp3[] = {-4, -1, -0.5, -2};
    CHECK(task_vote(v, lp3, 4) == 2, "tie: 6 has the larger summed logp (-1.5 > -6)");
    const char *k3[] = {"", "", "", "7"};
    for (int i = 0; i < 4; i++) strcpy(v[i].key, k3[i]);
    CHECK(task_vote(v, lp3, 4) == 3, "empty keys do not vote");
    for (int i = 0; i < 4; i++) v[i].key[0] = 0;
    CHECK(task_vote(v, lp3, 4) == -1, "no keys: -1");
    CHECK(task_vote(v, NULL, 0) == -1, "no samples: -1");
    strcpy(v[1].key, "8"), strcpy(v[2].key, "9");
    CHECK(task_vote(v, NULL, 4) == 1, "no logp: the first key seen wins a tie");
}

/* ------------------------------------------------------------------ JSON */

static void test_json_round_trip(void) {
    int ok = 1;
    for (int f = 0; f < TASK_N_FAMILIES; f++) {
        uint64_t rng = (uint64_t)(77 + f);
        for (int i = 0; i < 300; i++) {
            task_problem p, q;
            task_generate((task_family)f, 1 + i % task_max_level((task_family)f), &rng, &p);
            char *line = task_to_json(&p);
            const dsc_status s = line ? task_from_json(line, &q) : DSC_ERR_NOMEM;
            if (ok && (s || memcmp(&p, &q, sizeof p)))
                printf("  round trip: %s -> %s\n", line, s ? dsc_last_error() : "");
            ok &= !s && !memcmp(&p, &q, sizeof p);
            free(line);
        }
    }
    CHECK(ok, "problems survive to_json / from_json");
    task_problem p = {.family = TASK_ADD, .a = 48213, .b = 9377, .target = 57590};
    strcpy(p.question, "What is 48213 + 9377?");
    char *line = task_to_json(&p);
    CHECK(line && !strcmp(line, "{\"question\":\"What is 48213 + 9377?\",\"answer\":\"57590\"}"), "add line: %s", line);
    free(line);
    task_problem c = countdown(4, (const int64_t[]){3, 7, 25, 50}, 82);
    strcpy(c.question, "Using the numbers [3, 7, 25, 50], each at most once, with + - * and /, make 82.");
    line = task_to_json(&c);
    CHECK(line && !strcmp(line, "{\"question\":\"Using the numbers [3, 7, 25, 50], each at most once, with + - * "
                                "and /, make 82.\",\"numbers\":[3,7,25,50],\"target\":82}"),
          "countdown line: %s", line);
    free(line);
    task_problem q;
    CHECK(!task_from_json("{\"question\": \"What is 12 * 34?\", \"answer\": \"408\", \"id\": 7}", &q) &&
              q.family == TASK_MUL && q.a == 12 && q.b == 34 && q.target == 408,
          "mul with spaces and another field");
}

static void test_json_errors(void) {
    static const struct {
        const char *line, *field;
    } cases[] = {
        {"not json", "JSON"},
        {"{\"question\": \"What is 2 + 3?\", \"answer\": \"5\"} x", "JSON"},
        {"[1, 2]", "object"},
        {"{}", "question"},
        {"{\"question\": 5, \"answer\": \"5\"}", "question"},
        {"{\"question\": \"What is 2 + 3?\"}", "answer"},
        {"{\"question\": \"What is 2 + 3?\", \"answer\": 5}", "answer"},
        {"{\"question\": \"What is 2 + 3?\", \"answer\": \"6\"}", "answer"},
        {"{\"question\": \"What is 2 + 3?\", \"answer\": \"05\"}", "answer"},
        {"{\"question\": \"What is 2 - 3?\", \"answer\": \"-1\"}", "question"},
        {"{\"question\": \"What is 02 + 3?\", \"answer\": \"5\"}", "question"},
        {"{\"question\": \"What is 2 + 3\", \"answer\": \"5\"}", "question"},
        {"{\"question\": \"What is 2  + 3?\", \"answer\": \"5\"}", "question"},
        {"{\"question\": \"What is -2 + 3?\", \"answer\": \"1\"}", "question"},
        {"{\"question\": \"What is 2 + 3? \", \"answer\": \"5\"}", "question"},
        {"{\"question\": \"What is 9999999999 * 9999999999?\", \"answer\": \"1\"}", "question"},
        {"{\"question\": \"What is 99999999999999999999 + 1?\", \"answer\": \"1\"}", "question"},
        {"{\"question\": \"Using the numbers [3, 7], each at most once, with + - * and /, make 21.\", \"target\": 21}",
         "numbers"},
        {"{\"question\": \"q\", \"numbers\": 3, \"target\": 21}", "numbers"},
        {"{\"question\": \"q\", \"numbers\": [], \"target\": 21}", "numbers"},
        {"{\"question\": \"q\", \"numbers\": [1, 2, 3, 4, 5, 6, 7], \"target\": 21}", "numbers"},
        {"{\"question\": \"q\", \"numbers\": [3, 2.5], \"target\": 21}", "numbers[1]"},
        {"{\"question\": \"q\", \"numbers\": [\"3\"], \"target\": 21}", "numbers[0]"},
        {"{\"question\": \"q\", \"numbers\": [3, 0], \"target\": 21}", "numbers[1]"},
        {"{\"question\": \"q\", \"numbers\": [3, -7], \"target\": 21}", "numbers[1]"},
        {"{\"question\": \"q\", \"numbers\": [3, 7]}", "target"},
        {"{\"question\": \"q\", \"numbers\": [3, 7], \"target\": \"21\"}", "target"},
        {"{\"question\": \"q\", \"numbers\": [3, 7], \"target\": 21.5}", "target"},
        {"{\"question\": \"q\", \"numbers\": [3, 7], \"target\": 1e30}", "target"},
        {"{\"question\": \"Using the numbers [3, 7], each at most once, with + - * and /, make 21.\", "
         "\"numbers\": [3, 8], \"target\": 21}",
         "question"},
        {"{\"question\": \"Using the numbers [3, 7], each at most once, with + - * and /, make 21.\", "
         "\"numbers\": [3, 7], \"target\": 22}",
         "question"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        task_problem p;
        const dsc_status s = task_from_json(cases[i].line, &p);
        const char *msg = dsc_last_error();
        CHECK(s == DSC_ERR_FORMAT && strstr(msg, cases[i].field) && !strchr(msg, '\n') && p.family == 0 &&
                  p.question[0] == 0,
              "%s -> %d '%s' (wanted the field %s)", cases[i].line, (int)s, msg, cases[i].field);
    }
    task_problem p;
    CHECK(!task_from_json("{\"question\": \"Using the numbers [3, 7], each at most once, with + - * and /, make 21.\", "
                          "\"numbers\": [3, 7], \"target\": 21}",
                          &p) &&
              p.family == TASK_COUNTDOWN && p.n_numbers == 2 && p.target == 21,
          "a countdown line");
}

int main(void) {
    test_basics();
    test_determinism();
    test_arith_levels();
    test_countdown_levels();
    test_exact_traces();
    test_solutions_check();
    test_search_complete();
    test_extract_boxed();
    test_check_arith();
    test_countdown_eval();
    test_check_countdown();
    test_vote();
    test_json_round_trip();
    test_json_errors();
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail != 0;
}
