/*
 * cmd_tasks.c — `dsc tasks`: verifiable problems (src/tasks/tasks.h) as
 * JSON lines, as SFT conversations with their worked solutions, or as
 * plain text for pretraining; and the checking of completions.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../src/core/fileio.h"
#include "../src/tasks/tasks.h"
#include "cli.h"

static const char usage_tasks[] =
    "usage: dsc tasks --family add|mul|countdown|all --n N [--level L] [--seed S]\n"
    "                 [--format problems|sft|text] [-o FILE]\n"
    "       dsc tasks --check PROBLEMS.jsonl --completions COMPLETIONS.jsonl [-o FILE]\n"
    "\n"
    "Generates N problems (seeded, the same on every machine; --seed defaults to 1):\n"
    "  --family     add (levels 1-5: operands of 1..L digits), mul (1-3), countdown\n"
    "               (1: 3 numbers, 2: 4 numbers), or all (the three in turn)\n"
    "  --level      defaults to the family's highest\n"
    "  --format     problems: {\"question\", \"answer\"} or {\"question\", \"numbers\", \"target\"}\n"
    "               sft: {\"messages\": [user question, assistant \"<think>\\n\" + solution]}\n"
    "               text: \"QUESTION\\n<think>\\nSOLUTION\\n\\n\" per problem\n"
    "--check reads one completion per problem (a JSON string, or an object with a\n"
    "\"completion\" string) and writes {\"format_ok\", \"correct\", \"answer\", \"key\"} per line;\n"
    "the totals go to stderr.\n";

typedef enum { FMT_PROBLEMS, FMT_SFT, FMT_TEXT } tasks_format;

typedef struct {
    int family; /* -1: all */
    long n;
    int level;  /* 0: each family's highest */
    uint64_t seed;
    tasks_format format;
    const char *output, *check, *completions;
} tasks_opts;

static int parse_long(const char *flag, const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return cli_die("tasks: %s: '%s' is not an integer in [%ld, %ld]", flag, s, lo, hi);
    *out = v;
    return 0;
}

static int tasks_parse(const cli_opts *o, tasks_opts *t) {
    int family_set = 0;
    long v;
    for (int i = 2; i < o->argc; i++) {
        const char *a = o->argv[i], *val = i + 1 < o->argc ? o->argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage_tasks, stdout);
            return -1;
        }
        if (a[0] != '-') return cli_die("tasks: unexpected argument '%s' (see dsc tasks --help)", a);
        if (cli_no_value("tasks", a, val)) return 1;
        i++;
        if (!strcmp(a, "--family")) {
            t->family = strcmp(val, "all") ? task_family_parse(val) : -1;
            if (strcmp(val, "all") && t->family < 0)
                return cli_die("tasks: --family: '%s' is not add, mul, countdown or all", val);
            family_set = 1;
        } else if (!strcmp(a, "--n")) {
            if (parse_long(a, val, 1, 1000000000, &t->n)) return 1;
        } else if (!strcmp(a, "--level")) {
            if (parse_long(a, val, 1, 9, &v)) return 1;
            t->level = (int)v;
        } else if (!strcmp(a, "--seed")) {
            char *end;
            errno = 0;
            t->seed = strtoull(val, &end, 10);
            if (errno || end == val || *end || !(val[0] >= '0' && val[0] <= '9'))
                return cli_die("tasks: --seed: '%s' is not an unsigned 64-bit integer", val);
        } else if (!strcmp(a, "--format")) {
            if (!strcmp(val, "problems")) t->format = FMT_PROBLEMS;
            else if (!strcmp(val, "sft")) t->format = FMT_SFT;
            else if (!strcmp(val, "text")) t->format = FMT_TEXT;
            else return cli_die("tasks: --format: '%s' is not problems, sft or text", val);
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) t->output = val;
        else if (!strcmp(a, "--check")) t->check = val;
        else if (!strcmp(a, "--completions")) t->completions = val;
        else return cli_die("tasks: unknown option '%s' (see dsc tasks --help)", a);
    }
    if (t->check || t->completions) {
        if (!t->check || !t->completions) return cli_die("tasks: --check and --completions go together");
        return 0;
    }
    if (!family_set || !t->n) return cli_die("tasks: --family and --n are needed (see dsc tasks --help)");
    for (int f = 0; f < TASK_N_FAMILIES && t->level; f++)
        if ((t->family < 0 || t->family == f) && t->level > task_max_level((task_family)f))
            return cli_die("tasks: --level %d is above %s's highest, %d", t->level, task_family_name((task_family)f),
                           task_max_level((task_family)f));
    return 0;
}

/* Appends {"role": role, "content": content} to msgs; 0 when out of memory. */
static int add_message(cJSON *msgs, const char *role, const char *content) {
    cJSON *m = cJSON_CreateObject();
    if (!m || !cJSON_AddItemToArray(msgs, m)) {
        cJSON_Delete(m);
        return 0;
    }
    return cJSON_AddStringToObject(m, "role", role) && cJSON_AddStringToObject(m, "content", content);
}

/* One problem in the chosen format; 0, or 1 when out of memory. */
static int tasks_emit(FILE *out, const task_problem *p, tasks_format format) {
    if (format == FMT_PROBLEMS) {
        char *line = task_to_json(p);
        if (!line) return 1;
        fprintf(out, "%s\n", line);
        free(line);
        return 0;
    }
    char *sol = task_solution(p);
    if (!sol) return 1;
    if (format == FMT_TEXT) {
        fprintf(out, "%s\n<think>\n%s\n\n", p->question, sol);
        free(sol);
        return 0;
    }
    size_t n = strlen(sol) + sizeof "<think>\n";
    char *answer = malloc(n), *line = NULL;
    cJSON *j = cJSON_CreateObject(), *msgs = cJSON_AddArrayToObject(j, "messages");
    if (answer) snprintf(answer, n, "<think>\n%s", sol);
    if (answer && add_message(msgs, "user", p->question) && add_message(msgs, "assistant", answer))
        line = cJSON_PrintUnformatted(j);
    if (line) fprintf(out, "%s\n", line);
    cJSON_Delete(j);
    free(line);
    free(answer);
    free(sol);
    return !line;
}

static int tasks_generate(const tasks_opts *t, FILE *out) {
    uint64_t rng = t->seed;
    task_problem p;
    for (long i = 0; i < t->n; i++) {
        const task_family f = t->family < 0 ? (task_family)(i % TASK_N_FAMILIES) : (task_family)t->family;
        if (task_generate(f, t->level ? t->level : task_max_level(f), &rng, &p)) return cli_die_status();
        if (tasks_emit(out, &p, t->format)) return cli_die("tasks: out of memory");
    }
    return 0;
}

/* The completion on a line of --completions: a JSON string or {"completion": "..."}. */
static const char *completion_of(const cJSON *j) {
    if (cJSON_IsString(j)) return j->valuestring;
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "completion");
    return cJSON_IsString(c) ? c->valuestring : NULL;
}

static int blank(const char *s) { return strspn(s, " \t\r\n") == strlen(s); }

/* Whether line and every line after it in f are blank (white space only). */
static int rest_blank(const char *line, FILE *f) {
    if (!blank(line)) return 0;
    char *l = NULL;
    size_t cap = 0;
    int all = 1;
    while (all && getline(&l, &cap, f) >= 0) all = blank(l);
    free(l);
    return all;
}

/* Checks the completions in fc against the problems in fp, line by line. */
static int tasks_check_files(const tasks_opts *t, FILE *fp, FILE *fc, FILE *out) {
    char *lp = NULL, *lc = NULL;
    size_t cp = 0, cc = 0;
    long line = 0, n_correct = 0, n_format = 0;
    int rc = 0;
    while (!rc) {
        const ssize_t np = getline(&lp, &cp, fp), nc = getline(&lc, &cc, fc);
        if (np < 0 && nc < 0) break;
        if ((np < 0 && rest_blank(lc, fc)) || (nc < 0 && rest_blank(lp, fp))) break; /* blank lines at the end */
        line++;
        if (np < 0 || nc < 0) {
            rc = cli_die("tasks: %s ends at line %ld, before %s", np < 0 ? t->check : t->completions, line,
                         np < 0 ? t->completions : t->check);
            break;
        }
        task_problem p;
        if (task_from_json(lp, &p)) {
            rc = cli_die("tasks: %s:%ld: %s", t->check, line, dsc_last_error());
            break;
        }
        if (fio_json_has_nul(lc, strlen(lc))) {
            rc = cli_die("tasks: %s:%ld: the completion holds \\u0000 (NUL), which would cut it short", t->completions,
                         line);
            break;
        }
        cJSON *j = fio_parse_json(lc, strlen(lc));
        const char *c = completion_of(j);
        task_verdict v;
        if (c) task_check(&p, c, &v);
        else rc = cli_die("tasks: %s:%ld: %s", t->completions, line,
                          j ? "expected a JSON string or {\"completion\": \"...\"}" : fio_json_error());
        cJSON_Delete(j);
        if (rc) break;
        n_correct += v.correct, n_format += v.format_ok;
        cJSON *r = cJSON_CreateObject();
        cJSON_AddBoolToObject(r, "format_ok", v.format_ok);
        cJSON_AddBoolToObject(r, "correct", v.correct);
        cJSON_AddStringToObject(r, "answer", v.answer);
        cJSON_AddStringToObject(r, "key", v.key);
        char *s = cJSON_PrintUnformatted(r);
        cJSON_Delete(r);
        if (!s) rc = cli_die("tasks: out of memory");
        else fprintf(out, "%s\n", s);
        free(s);
    }
    if (!rc)
        fprintf(stderr, "dsc: tasks: %ld checked: %ld correct, %ld well formatted\n", line, n_correct, n_format);
    free(lp);
    free(lc);
    return rc;
}

static int same_file(FILE *f, const char *path) {
    struct stat a, b;
    return f && stat(path, &b) == 0 && fstat(fileno(f), &a) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

int cmd_tasks(const cli_opts *o) {
    tasks_opts t = {.family = -1, .seed = 1};
    int rc = tasks_parse(o, &t);
    if (rc) return rc < 0 ? 0 : rc;
    /* the inputs first: -o is emptied only once they are open, and never when it is one of them */
    FILE *fp = NULL, *fc = NULL, *out = stdout;
    if (t.check && (!(fp = cli_fopen_read("tasks", t.check)) || !(fc = cli_fopen_read("tasks", t.completions)))) rc = 1;
    if (!rc && t.output && (same_file(fp, t.output) || same_file(fc, t.output)))
        rc = cli_die("tasks: -o %s is one of the input files", t.output);
    if (!rc && t.output && fio_create(t.output, 0, &out)) rc = cli_die("tasks: %s", dsc_last_error());
    if (!rc) rc = t.check ? tasks_check_files(&t, fp, fc, out) : tasks_generate(&t, out);
    if (out && (out != stdout ? fclose(out) : fflush(out)) && !rc)
        rc = cli_die("tasks: %s: write failed", t.output ? t.output : "stdout");
    if (fp) fclose(fp);
    if (fc) fclose(fc);
    return rc;
}
