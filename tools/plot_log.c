/*
 * plot_log.c — reads a JSON-lines training log into series (plot_log.h).
 */
#define _POSIX_C_SOURCE 200809L
#include "plot_log.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/core/fileio.h"

/* Grows *p (elements of size sz) to hold at least need; 0 or -1 out of memory. */
static int grow(void **p, size_t *cap, size_t need, size_t sz) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need) {
        if (c > SIZE_MAX / 2 / sz) return -1;
        c *= 2;
    }
    void *q = realloc(*p, c * sz);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

static int series_push(plot_series *s, double x, double y) {
    size_t cx = s->cap, cy = s->cap;
    if (grow((void **)&s->x, &cx, s->n + 1, sizeof(double)) || grow((void **)&s->y, &cy, s->n + 1, sizeof(double)))
        return -1;
    s->cap = cx < cy ? cx : cy;
    s->x[s->n] = x;
    s->y[s->n] = y;
    s->n++;
    return 0;
}

int plot_log_find(const plot_log *L, const char *key, int index) {
    for (size_t i = 0; i < L->n_s; i++)
        if (L->s[i].index == index && !strcmp(L->s[i].key, key)) return (int)i;
    return -1;
}

int plot_log_has(const plot_log *L, const char *key) {
    for (size_t i = 0; i < L->n_s; i++)
        if (!strcmp(L->s[i].key, key)) return 1;
    return 0;
}

/* Adds the point (x, y) to the series (key, index), made on first use.
 * Non-finite y and series past PLOT_MAX_SERIES are dropped. */
static int add_point(plot_log *L, const char *key, int index, double x, double y) {
    if (!(fabs(y) <= PLOT_MAX_ABS)) return 0;
    int i = plot_log_find(L, key, index);
    if (i < 0) {
        if (L->n_s >= PLOT_MAX_SERIES) return 0;
        if (!L->s && !(L->s = calloc(PLOT_MAX_SERIES, sizeof *L->s))) return -1;
        plot_series *s = &L->s[L->n_s];
        if (!(s->key = strdup(key))) return -1;
        s->index = index;
        i = (int)L->n_s++;
    }
    return series_push(&L->s[i], x, y);
}

static int add_event(plot_log *L, const char *name, double step) {
    static const char *const names[PLOT_EV_COUNT] = {"skipped", "rolled_back", "diverged"};
    for (int k = 0; k < PLOT_EV_COUNT; k++) {
        if (strcmp(name, names[k])) continue;
        if (grow((void **)&L->ev, &L->cap_ev, L->n_ev + 1, sizeof *L->ev)) return -1;
        L->ev[L->n_ev++] = (plot_event){step, (plot_event_kind)k};
    }
    return 0; /* other events (checkpoint) are not drawn */
}

/* One record: its numbers and arrays of numbers, or its event. */
static int add_record(plot_log *L, const cJSON *r, double step) {
    if (!L->n_records || step < L->xmin) L->xmin = step;
    if (!L->n_records || step > L->xmax) L->xmax = step;
    L->n_records++;
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(r, "event");
    if (cJSON_IsString(ev)) return add_event(L, ev->valuestring, step);
    for (const cJSON *m = r->child; m; m = m->next) {
        if (!m->string || !strcmp(m->string, "step")) continue;
        if (cJSON_IsNumber(m) && add_point(L, m->string, -1, step, m->valuedouble)) return -1;
        if (!cJSON_IsArray(m) || cJSON_GetArraySize(m) > PLOT_MAX_ELEMENTS) continue;
        int i = 0;
        for (const cJSON *e = m->child; e; e = e->next, i++)
            if (cJSON_IsNumber(e) && add_point(L, m->string, i, step, e->valuedouble)) return -1;
    }
    return 0;
}

static int is_blank(const char *s) {
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\r' && *s != '\n') return 0;
    return 1;
}

/* One line; 1 with err set when it is bad. */
static int read_line(plot_log *L, const char *path, size_t lineno, const char *line, int partial, char *err,
                     size_t cap) {
    if (is_blank(line)) return 0;
    const char *end = NULL;
    cJSON *r = cJSON_ParseWithOpts(line, &end, 1);
    if (!r) {
        if (partial) return 0; /* the last line, still being written */
        snprintf(err, cap, "%s:%zu: malformed JSON", path, lineno);
        return 1;
    }
    L->n_lines++;
    int rc = 0;
    const cJSON *step = cJSON_GetObjectItemCaseSensitive(r, "step");
    if (!cJSON_IsObject(r)) {
        snprintf(err, cap, "%s:%zu: not a JSON object", path, lineno);
        rc = 1;
    } else if (step && !cJSON_IsNumber(step)) {
        snprintf(err, cap, "%s:%zu: \"step\" is not a number", path, lineno);
        rc = 1;
    } else if (step && !(fabs(step->valuedouble) <= PLOT_MAX_STEP)) {
        snprintf(err, cap, "%s:%zu: \"step\" %g is out of range", path, lineno, step->valuedouble);
        rc = 1;
    } else if (step && add_record(L, r, step->valuedouble)) {
        snprintf(err, cap, "%s: out of memory", path);
        rc = 1;
    }
    cJSON_Delete(r);
    return rc;
}

int plot_log_read(plot_log *L, const char *path, char *err, size_t cap) {
    memset(L, 0, sizeof *L);
    FILE *f;
    if (fio_open_read(path, &f)) { /* a FIFO or a directory is refused, not waited on */
        snprintf(err, cap, "%s", dsc_last_error());
        return 1;
    }
    char *line = NULL;
    size_t lcap = 0, lineno = 0;
    ssize_t len;
    int rc = 0;
    while (!rc && (len = getline(&line, &lcap, f)) >= 0) {
        lineno++;
        if (memchr(line, '\0', (size_t)len)) {
            snprintf(err, cap, "%s:%zu: malformed JSON", path, lineno);
            rc = 1;
            break;
        }
        rc = read_line(L, path, lineno, line, len == 0 || line[len - 1] != '\n', err, cap);
    }
    if (!rc && ferror(f)) {
        snprintf(err, cap, "cannot read %s: %s", path, strerror(errno));
        rc = 1;
    }
    free(line);
    fclose(f);
    if (rc) plot_log_free(L);
    return rc;
}

void plot_log_free(plot_log *L) {
    for (size_t i = 0; i < L->n_s; i++) {
        free(L->s[i].key);
        free(L->s[i].x);
        free(L->s[i].y);
    }
    free(L->s);
    free(L->ev);
    memset(L, 0, sizeof *L);
}
