/*
 * tasks.h — verifiable tasks for reasoning training and evaluation: integer
 * addition, multiplication and Countdown. Each family has a seeded
 * generator with difficulty levels, a worked step-by-step solution (the
 * cold-start SFT traces) and a checker of model answers.
 *
 * The chat format is DeepSeek-R1's: the prompt is the user's question in the
 * chat template, ending "<｜Assistant｜><think>\n" (DSC_CHAT_REASONING). A
 * *completion* is the text the model writes after that prompt:
 *
 *   REASONING\n</think>\n\n\boxed{ANSWER}
 *
 * Questions (exact spellings):
 *   add:        What is 48213 + 9377?
 *   mul:        What is 347 * 86?
 *   countdown:  Using the numbers [3, 7, 25, 50], each at most once, with + - * and /, make 82.
 */
#ifndef DSC_TASKS_H
#define DSC_TASKS_H

#include <stddef.h>
#include <stdint.h>

#include "dsc.h"

typedef enum { TASK_ADD = 0, TASK_MUL = 1, TASK_COUNTDOWN = 2 } task_family;
#define TASK_N_FAMILIES 3
#define TASK_MAX_NUMBERS 6

typedef struct {
    task_family family;
    int64_t a, b;                       /* add / mul operands (>= 0)                        */
    int32_t n_numbers;                  /* countdown: the numbers offered                   */
    int64_t numbers[TASK_MAX_NUMBERS];
    int64_t target;                     /* add / mul: a + b or a * b; countdown: the target  */
    char question[256];                 /* the user message, spelled as above               */
} task_problem;

/* "add", "mul", "countdown" <-> family; task_family_parse returns -1 if unknown. */
const char *task_family_name(task_family f);
int task_family_parse(const char *name);

/* The highest level of each family: add 5 (operands of 1..level digits),
 * mul 3 (1..level digits by 1..level digits), countdown 2 (level 1: 3
 * numbers, level 2: 4 numbers; numbers from 1-10 and 25/50/75/100,
 * target 10..999, always solvable). */
int task_max_level(task_family f);

/* A 64-bit generator (splitmix64): the same seed gives the same problems on
 * every machine. */
uint64_t task_rand(uint64_t *state);

/* Draws a problem of family f at level 1..task_max_level(f) (the operand
 * sizes are drawn uniformly up to the level's maximum). DSC_ERR_ARG for a
 * bad family or level. */
dsc_status task_generate(task_family f, int level, uint64_t *rng, task_problem *out);

/* A worked solution of p as a completion (see above): column addition,
 * partial products, or a short search for Countdown. malloc'd, NUL-ended;
 * NULL only when out of memory. Deterministic for a problem. */
char *task_solution(const task_problem *p);

/* The content of the last \boxed{...} of text, braces balanced (nested
 * braces kept), into out (NUL-terminated). Returns 1 when found, 0 when
 * there is none, it is not closed, or it does not fit in cap. */
int task_extract_boxed(const char *text, char *out, size_t cap);

/* Evaluates a Countdown expression (integers, + - * /, also written \times,
 * \cdot, \div or as the Unicode signs, parentheses, unary
 * minus not allowed) with exact rational arithmetic. Every integer must be
 * one of numbers[], each used at most as often as it is offered. On success
 * *num / *den (den > 0, reduced) is the value and 1 is returned; otherwise 0
 * with a reason in why (division by zero, a number not offered or reused,
 * a syntax error, overflow). why may be NULL. */
int task_countdown_eval(const char *expr, const int64_t *numbers, int n_numbers, int64_t *num, int64_t *den,
                        char *why, size_t why_cap);

typedef struct {
    int format_ok;       /* reasoning, one "</think>", then \boxed{...} after it */
    int correct;         /* the boxed answer is right                            */
    char answer[128];    /* the boxed content ("" when none)                     */
    char key[64];        /* the vote key: add/mul the integer in canonical form;  */
                         /* countdown the value ("81", "7/2") of a valid expression; */
                         /* "" when there is no valid answer (it gets no vote)   */
} task_verdict;

/* Checks a completion against p. Add / mul: the boxed content is an integer
 * (optional sign and commas/spaces are not accepted: digits only, leading
 * zeros allowed) equal to target. Countdown: a valid expression whose value
 * is exactly target. The answer is the last box of the whole completion
 * (see task_extract_boxed); format_ok also wants it after "</think>" with
 * only whitespace after it (a summary between "</think>" and the box is
 * allowed). */
void task_check(const task_problem *p, const char *completion, task_verdict *v);

/* The reward of a verdict: correct + format_weight x format_ok. */
float task_reward(const task_verdict *v, float format_weight);

/* JSON lines. Arithmetic: {"question": "...", "answer": "57590"}; Countdown:
 * {"question": "...", "numbers": [3, 7, 25, 50], "target": 82}. Reading
 * accepts exactly those (the family is recognised from the question for
 * arithmetic, which must be "What is A + B?" or "What is A * B?" with answer
 * equal to the result); errors name the field at fault. task_to_json
 * returns a malloc'd line without newline. */
dsc_status task_from_json(const char *line, task_problem *p);
char *task_to_json(const task_problem *p);

/* Majority vote over n verdicts: the key with most votes wins; a tie goes to
 * the key whose samples have the larger summed log-probability (logp[i] is
 * the summed token log-probability of sample i). Samples with an empty key
 * do not vote. Returns the index of a sample carrying the winning key (the
 * one with the highest logp among them), or -1 when no sample has a key.
 * logp may be NULL: ties then go to the key seen first. */
int task_vote(const task_verdict *v, const double *logp, int n);

#endif
