/*
 * plot_log.h — a JSON-lines training log (`dsc train`, `dsc sft`, `dsc grpo`)
 * read into numeric series for `dsc plot`. Independent of PLplot.
 *
 * A record is a line that is a JSON object with a numeric "step". Every other
 * numeric member becomes a series ("loss"); an array of numbers becomes one
 * series per element ("expert_load_max_mean" element 2 = MoE layer 2). Nulls,
 * non-finite numbers and those beyond PLOT_MAX_ABS are left out. A line with a string "event" is an
 * event ("skipped", "rolled_back", "diverged"), not a record: its numbers are
 * not plotted. Lines without a "step" (headers) are ignored.
 */
#ifndef DSC_PLOT_LOG_H
#define DSC_PLOT_LOG_H

#include <stddef.h>

#define PLOT_MAX_SERIES 256   /* further keys are ignored                     */
#define PLOT_MAX_ELEMENTS 64  /* longer arrays (per-expert counts) are ignored */
#define PLOT_MAX_ABS 1e100    /* larger values are left out like non-finite ones: the
                                 axis arithmetic stays finite                     */
#define PLOT_MAX_STEP 9007199254740992.0 /* 2^53: steps are integers a double holds */

typedef struct {
    char *key;     /* the log's member name                                    */
    int index;     /* element of an array-valued member, or -1 for a number    */
    double *x, *y; /* (n) step and value in the log's order; x falls after a rollback */
    size_t n, cap;
} plot_series;

typedef enum { PLOT_EV_SKIPPED, PLOT_EV_ROLLED_BACK, PLOT_EV_DIVERGED, PLOT_EV_COUNT } plot_event_kind;

typedef struct {
    double step;
    plot_event_kind kind;
} plot_event;

typedef struct {
    plot_series *s; /* (n_s) in the order their keys first appear */
    size_t n_s;
    plot_event *ev; /* (n_ev) */
    size_t n_ev, cap_ev;
    size_t n_lines;    /* non-blank lines read                    */
    size_t n_records;  /* lines with a numeric "step", events included */
    double xmin, xmax; /* steps of all records; valid when n_records > 0 */
} plot_log;

/* Reads PATH into *L (zeroed first). Returns 0, or 1 with a one-line message
 * in err ("LOG:LINE: malformed JSON") and *L freed. A last line without its
 * newline that does not parse is taken as still being written and ignored. */
int plot_log_read(plot_log *L, const char *path, char *err, size_t cap);
void plot_log_free(plot_log *L);

/* The index in L->s of the series (key, index), or -1. */
int plot_log_find(const plot_log *L, const char *key, int index);

/* Whether some series comes from member KEY (a number or an array). */
int plot_log_has(const plot_log *L, const char *key);

#endif
