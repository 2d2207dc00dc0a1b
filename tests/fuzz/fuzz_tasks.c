/*
 * fuzz_tasks.c — libFuzzer target for the task parsers (src/tasks): the
 * JSON line reader, the Countdown expression evaluator, \boxed{} extraction
 * and the checker of completions. The first byte picks the parser; the rest
 * is its input. Invariants: a problem read from JSON writes back to JSON
 * that reads as the same problem; a Countdown value has a positive,
 * reduced denominator; a verdict's strings are terminated and a correct
 * answer has a vote key.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tasks/tasks.h"
#include "fuzz_check.h"

static int64_t gcd(int64_t a, int64_t b) {
    if (a < 0) a = -a;
    while (b) {
        int64_t t = a % b;
        a = b, b = t;
    }
    return a;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    char *s = malloc(size);
    if (!s) return 0;
    memcpy(s, data + 1, size - 1);
    s[size - 1] = 0;
    task_problem p;
    switch (data[0] % 4) {
    case 0:
        if (task_from_json(s, &p) == DSC_OK) {
            char *line = task_to_json(&p);
            task_problem q;
            FUZZ_CHECK(line && task_from_json(line, &q) == DSC_OK);
            FUZZ_CHECK(q.family == p.family && q.target == p.target && !strcmp(q.question, p.question));
            free(line);
        }
        break;
    case 1: {
        const int64_t nums[4] = {3, 7, 25, 50};
        int64_t num = 0, den = 0;
        char why[128];
        if (task_countdown_eval(s, nums, 4, &num, &den, why, sizeof why)) FUZZ_CHECK(den > 0 && gcd(num, den) <= 1);
        else FUZZ_CHECK(memchr(why, 0, sizeof why) != NULL);
        break;
    }
    case 2: {
        char out[64];
        if (task_extract_boxed(s, out, sizeof out)) FUZZ_CHECK(memchr(out, 0, sizeof out) != NULL);
        break;
    }
    default: {
        const char *js[3] = {"{\"question\": \"What is 48213 + 9377?\", \"answer\": \"57590\"}",
                             "{\"question\": \"What is 347 * 86?\", \"answer\": \"29842\"}",
                             ("{\"question\": \"Using the numbers [3, 7, 25, 50], each at most once, with + - * and /, make 82.\", "
                              "\"numbers\": [3, 7, 25, 50], \"target\": 82}")};
        for (int i = 0; i < 3; i++) {
            FUZZ_CHECK(task_from_json(js[i], &p) == DSC_OK);
            task_verdict v;
            task_check(&p, s, &v);
            FUZZ_CHECK(memchr(v.answer, 0, sizeof v.answer) && memchr(v.key, 0, sizeof v.key));
            FUZZ_CHECK(!v.correct || v.key[0]);
        }
    }
    }
    free(s);
    return 0;
}
