/*
 * task_internal.h — pieces shared by tasks.c (arithmetic, checking, JSON)
 * and countdown.c (Countdown generation, search and evaluation). Not part
 * of the interface: see tasks.h.
 */
#ifndef DSC_TASK_INTERNAL_H
#define DSC_TASK_INTERNAL_H

#include <stdarg.h>

#include "tasks/tasks.h"

/* A growing string for the worked solutions; oom is set (and the text
 * dropped) when an allocation fails. */
typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} task_buf;

void task_buf_printf(task_buf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Hands the text over (malloc'd, NUL-ended) or NULL after an allocation
 * failure; b is empty afterwards. */
char *task_buf_take(task_buf *b);

/* A uniform integer in [0, n), n >= 1. */
uint64_t task_uniform(uint64_t *rng, uint64_t n);

/* The Countdown question for numbers and target, as in tasks.h. */
void countdown_question(const int64_t *numbers, int n, int64_t target, char *q, size_t cap);
dsc_status countdown_generate(int level, uint64_t *rng, task_problem *out);
char *countdown_solution(const task_problem *p);

#endif
