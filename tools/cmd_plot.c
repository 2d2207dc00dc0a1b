/*
 * cmd_plot.c — `dsc plot LOG.jsonl -o OUT.png`: a training log drawn as a PNG
 * chart with PLplot's cairo driver (pngcairo).
 *
 * Layout: a `dsc train` log gets loss + val_loss (top) and the per-layer
 * expert load max/mean (bottom); a GRPO log (it has "reward") a grid of
 * reward, accuracy, response_length, kl, entropy, clip_frac; --keys one panel
 * per key. A panel for KEY also draws val_KEY and eval_KEY when the log has
 * them. Skipped steps and rollbacks are vertical lines. The PNG is written to
 * a temporary file next to OUT and renamed, so a failure leaves no half file.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "plot_log.h"

static const char usage[] =
    "usage: dsc plot LOG.jsonl -o OUT.png [options]\n"
    "  Draws a JSON-lines log of dsc train / sft / grpo as a PNG chart (PLplot).\n"
    "  A train log: loss and val_loss, expert load max/mean per layer; a GRPO log:\n"
    "  reward, accuracy, response_length, kl, entropy, clip_frac (those present).\n"
    "  -o, --output OUT.png   the chart\n"
    "  --keys K1,K2,...       one panel per key instead (a panel for K also draws\n"
    "                         val_K and eval_K when the log has them)\n"
    "  --baseline VALUE       a dashed horizontal line (e.g. the bigram loss) on the\n"
    "                         loss panel, else on the first\n"
    "  --title TEXT           the chart's title (default: LOG)\n"
    "  --width W --height H   size in pixels (default 1000 x 700)\n"
    "  --smooth N             an N-point moving average drawn over each line\n";

#ifndef DSC_HAVE_PLPLOT

int cmd_plot(const cli_opts *o) {
    for (int i = 2; i < o->argc; i++)
        if (!strcmp(o->argv[i], "-h") || !strcmp(o->argv[i], "--help")) return fputs(usage, stdout), 0;
    return cli_die("plot: this dsc was built without PLplot (apt-get install libplplot-dev plplot-driver-cairo)");
}

#else

#include <plplot.h>
#include <sys/stat.h>
#include <unistd.h>

_Static_assert(sizeof(PLFLT) == sizeof(double), "PLplot built with double precision");

#define MAX_PANELS 12
#define MAX_LINES 24 /* per panel */

typedef struct {
    const char *log, *out, *keys, *title;
    double baseline;
    int have_baseline, width, height, smooth;
} plot_opts;

typedef struct {
    char title[96], ylabel[64];
    int line[MAX_LINES]; /* (n) indices into plot_log.s */
    int n, baseline;
} plot_panel;

/* ------------------------------------------------------------ options */

static int parse_int(const char *flag, const char *v, int lo, int hi, int *out) {
    char *end;
    errno = 0;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || errno || end == v || *end || x < lo || x > hi)
        return cli_die("plot: %s: '%s' is not an integer in [%d, %d]", flag, v ? v : "", lo, hi);
    *out = (int)x;
    return 0;
}

static int parse_opts(const cli_opts *co, plot_opts *o) {
    *o = (plot_opts){.width = 1000, .height = 700, .smooth = 1};
    for (int i = 2; i < co->argc; i++) {
        const char *a = co->argv[i], *v = i + 1 < co->argc ? co->argv[i + 1] : NULL;
        const int takes = a[0] == '-' && a[1] && strcmp(a, "-h") && strcmp(a, "--help");
        if (takes && cli_no_value("plot", a, v)) return 1;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return fputs(usage, stdout), -1;
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) o->out = v;
        else if (!strcmp(a, "--keys")) o->keys = v;
        else if (!strcmp(a, "--title")) o->title = v;
        else if (!strcmp(a, "--width")) { if (parse_int(a, v, 100, 10000, &o->width)) return 1; }
        else if (!strcmp(a, "--height")) { if (parse_int(a, v, 100, 10000, &o->height)) return 1; }
        else if (!strcmp(a, "--smooth")) { if (parse_int(a, v, 1, 1000000, &o->smooth)) return 1; }
        else if (!strcmp(a, "--baseline")) {
            char *end;
            o->baseline = strtod(v, &end);
            if (end == v || *end || !isfinite(o->baseline)) return cli_die("plot: --baseline: '%s' is not a number", v);
            o->have_baseline = 1;
        } else if (takes) return cli_die("plot: unknown option '%s' (see dsc plot --help)", a);
        else if (o->log) return cli_die("plot: one log at a time ('%s' and '%s')", o->log, a);
        else { o->log = a; continue; }
        i++;
    }
    if (!o->log) return cli_die("plot: no log given (usage: dsc plot LOG.jsonl -o OUT.png)");
    if (!o->out) return cli_die("plot: no output given (-o OUT.png)");
    return 0;
}

/* ------------------------------------------------------------ layout */

/* Appends the series of member KEY to the panel (one per array element). */
static void panel_add_key(plot_panel *p, const plot_log *L, const char *key) {
    for (size_t i = 0; i < L->n_s && p->n < MAX_LINES; i++)
        if (!strcmp(L->s[i].key, key)) p->line[p->n++] = (int)i;
}

static int listed(const char *const *keys, int n, const char *k) {
    for (int i = 0; i < n; i++)
        if (!strcmp(keys[i], k)) return 1;
    return 0;
}

/* A panel for KEY, with val_KEY and eval_KEY unless those have their own. */
static void panel_for_key(plot_panel *p, const plot_log *L, const char *key, const char *const *keys, int n_keys) {
    memset(p, 0, sizeof *p);
    snprintf(p->title, sizeof p->title, "%s", key);
    snprintf(p->ylabel, sizeof p->ylabel, "%s", key);
    panel_add_key(p, L, key);
    static const char *const prefix[] = {"val_", "eval_"};
    for (int i = 0; i < 2; i++) {
        char c[128];
        snprintf(c, sizeof c, "%s%s", prefix[i], key);
        if (!listed(keys, n_keys, c)) panel_add_key(p, L, c);
    }
}

/* Whether series i is the first of its key (arrays have one per element). */
static int first_of_key(const plot_log *L, size_t i) {
    for (size_t j = 0; j < i; j++)
        if (!strcmp(L->s[j].key, L->s[i].key)) return 0;
    return 1;
}

/* "loss, val_loss, lr, ..." (truncated) for an error message. */
static void key_list(const plot_log *L, char *buf, size_t cap) {
    size_t n = 0;
    buf[0] = 0;
    for (size_t i = 0; i < L->n_s && n < cap; i++) {
        if (!first_of_key(L, i)) continue;
        n += (size_t)snprintf(buf + n, cap - n, "%s%s", n ? ", " : "", L->s[i].key);
    }
    if (n >= cap && cap > 4) memcpy(buf + cap - 4, "...", 4);
}

static int layout_keys(const plot_opts *o, const plot_log *L, plot_panel *p, int *n_p) {
    char *list = strdup(o->keys);
    const char *keys[MAX_PANELS];
    int n = 0, rc = 0;
    if (!list) return cli_die("plot: out of memory");
    for (char *k = strtok(list, ","); k && !rc; k = strtok(NULL, ",")) {
        while (*k == ' ') k++;
        for (char *e = k + strlen(k); e > k && e[-1] == ' ';) *--e = 0;
        if (!*k) continue;
        if (n == MAX_PANELS) rc = cli_die("plot: --keys: at most %d keys", MAX_PANELS);
        else if (!plot_log_has(L, k)) {
            char have[400];
            key_list(L, have, sizeof have);
            rc = cli_die("plot: %s has no values for key '%s' (it has: %s)", o->log, k, have);
        } else keys[n++] = k;
    }
    if (!rc && !n) rc = cli_die("plot: --keys: no key given");
    for (int i = 0; i < n && !rc; i++) panel_for_key(&p[i], L, keys[i], keys, n);
    *n_p = n;
    free(list);
    return rc;
}

/* The default panels: a train log, a GRPO log, else every key. */
static void layout_default(const plot_log *L, plot_panel *p, int *n_p) {
    static const char *const grpo[] = {"reward", "accuracy", "response_length", "kl", "entropy", "clip_frac"};
    int n = 0;
    if (plot_log_has(L, "reward")) {
        for (size_t i = 0; i < sizeof grpo / sizeof grpo[0]; i++)
            if (plot_log_has(L, grpo[i])) panel_for_key(&p[n++], L, grpo[i], NULL, 0);
    } else if (plot_log_has(L, "loss")) {
        panel_for_key(&p[n], L, "loss", NULL, 0);
        snprintf(p[n++].title, sizeof p->title, "training loss");
        if (plot_log_has(L, "expert_load_max_mean")) {
            panel_for_key(&p[n], L, "expert_load_max_mean", NULL, 0);
            snprintf(p[n++].title, sizeof p->title, "expert load: busiest expert / mean, per MoE layer");
        }
    } else {
        for (size_t i = 0; i < L->n_s && n < 9; i++) {
            const char *k = L->s[i].key;
            const int companion = (!strncmp(k, "val_", 4) && plot_log_has(L, k + 4)) ||
                                  (!strncmp(k, "eval_", 5) && plot_log_has(L, k + 5));
            if (first_of_key(L, i) && !companion) panel_for_key(&p[n++], L, k, NULL, 0);
        }
    }
    *n_p = n;
}

/* ------------------------------------------------------------ drawing */

enum { COL_BG, COL_FG, COL_GRID, COL_BASE, COL_LINE = 4, N_LINE_COLS = 8, COL_FAINT = COL_LINE + N_LINE_COLS,
       COL_EVENT = COL_FAINT + N_LINE_COLS, N_COLS = COL_EVENT + PLOT_EV_COUNT };

static void set_colours(void) {
    /* Paul Tol's "bright" and "vibrant" schemes: distinct, colour-blind safe. */
    static const int rgb[N_LINE_COLS] = {0x4477AA, 0xCC3311, 0x228833, 0xEE7733,
                                         0xAA3377, 0x33BBEE, 0xCCBB44, 0x222222};
    static const int ev[PLOT_EV_COUNT] = {0xEE9944, 0xAA3377, 0x000000};
    plscmap0n(N_COLS);
    plscol0(COL_BG, 255, 255, 255);
    plscol0(COL_FG, 0, 0, 0);
    plscol0(COL_GRID, 0xDD, 0xDD, 0xDD);
    plscol0(COL_BASE, 0x55, 0x55, 0x55);
    for (int i = 0; i < N_LINE_COLS; i++) {
        plscol0(COL_LINE + i, rgb[i] >> 16, rgb[i] >> 8 & 255, rgb[i] & 255);
        plscol0a(COL_FAINT + i, rgb[i] >> 16, rgb[i] >> 8 & 255, rgb[i] & 255, 0.3);
    }
    for (int i = 0; i < PLOT_EV_COUNT; i++) plscol0(COL_EVENT + i, ev[i] >> 16, ev[i] >> 8 & 255, ev[i] & 255);
}

/* PLplot text treats '#' as an escape. */
static void escape_text(char *dst, size_t cap, const char *src) {
    size_t n = 0;
    for (; *src && n + 2 < cap; src++) {
        if (*src == '#') dst[n++] = '#';
        dst[n++] = *src;
    }
    dst[n] = 0;
}

static void series_label(const plot_series *s, char *buf, size_t cap) {
    if (s->index < 0) snprintf(buf, cap, "%s", s->key);
    else if (!strncmp(s->key, "expert_", 7) || !strncmp(s->key, "bias_", 5)) snprintf(buf, cap, "layer %d", s->index);
    else snprintf(buf, cap, "%s[%d]", s->key, s->index);
}

/* The y range of the panel's values (and baseline), with a 5% margin. */
static void y_range(const plot_panel *p, const plot_log *L, const plot_opts *o, double *lo, double *hi) {
    *lo = INFINITY;
    *hi = -INFINITY;
    for (int i = 0; i < p->n; i++)
        for (size_t j = 0; j < L->s[p->line[i]].n; j++) {
            const double y = L->s[p->line[i]].y[j];
            *lo = fmin(*lo, y);
            *hi = fmax(*hi, y);
        }
    if (p->baseline) *lo = fmin(*lo, o->baseline), *hi = fmax(*hi, o->baseline);
    double m = (*hi - *lo) * 0.05;
    if (!(m > 1e-12 * fmax(fabs(*lo), fabs(*hi)))) m = fmax(fabs(*hi) * 0.05, 1e-3);
    *lo -= m;
    *hi += m;
}

/* Draws runs of rising steps as lines; a rollback (the step falls) breaks it. */
static void draw_runs(const double *x, const double *y, size_t n) {
    for (size_t a = 0, b; a < n; a = b) {
        for (b = a + 1; b < n && x[b] > x[b - 1];) b++;
        if (b - a > 1) plline((PLINT)(b - a), x + a, y + a);
    }
}

/* The centred moving average of y over up to w points, within each run;
 * sum: (n + 1) scratch for prefix sums. */
static void smooth(const double *x, const double *y, size_t n, int w, double *sum, double *out) {
    const size_t h = (size_t)w / 2;
    sum[0] = 0;
    for (size_t i = 0; i < n; i++) sum[i + 1] = sum[i] + y[i];
    for (size_t a = 0, b; a < n; a = b) {
        for (b = a + 1; b < n && x[b] > x[b - 1];) b++;
        for (size_t i = a; i < b; i++) {
            const size_t lo = i - a > h ? i - h : a, hi = b - i > h + 1 ? i + h + 1 : b;
            out[i] = (sum[hi] - sum[lo]) / (double)(hi - lo);
        }
    }
}

#define SPARSE 60              /* a series with fewer points (val_loss) also gets markers, */
                               /* when it is short or sparser than the log (sparse())     */
#define MARKER_GLYPH "#(850)" /* a filled circle (Hershey code)                          */
#define MARKER 1.8            /* its size, in character heights                          */
#define LEGEND_DX 0.02        /* the legend's offset from the viewport's corner (normalised) */
#define LEGEND_DY 0.03
#define LEGEND_LINE 0.06      /* the length of its line samples (normalised)             */
#define LEGEND_SPACING 1.6    /* its row height, in character heights                    */

/* Whether the series gets markers: few points, where the lines alone would
 * hide them (val_loss every 250 steps, a short log). */
static int sparse(const plot_series *s, const plot_log *L) {
    return s->n < SPARSE && (s->n <= 20 || 3 * s->n <= L->n_records);
}

static int draw_series(const plot_series *s, int colour, int smooth_n, int markers) {
    if (smooth_n > 1 && s->n > 2) {
        double *m = malloc((2 * s->n + 1) * sizeof *m); /* (n) the average, (n + 1) prefix sums */
        if (!m) return -1;
        smooth(s->x, s->y, s->n, smooth_n, m + s->n, m);
        plcol0(COL_FAINT + colour);
        draw_runs(s->x, s->y, s->n);
        plcol0(COL_LINE + colour);
        draw_runs(s->x, m, s->n);
        free(m);
    } else {
        plcol0(COL_LINE + colour);
        draw_runs(s->x, s->y, s->n);
    }
    if (markers) {
        PLFLT def, ht;
        plgchr(&def, &ht);
        plschr(0, MARKER * ht / def);
        plstring((PLINT)s->n, s->x, s->y, MARKER_GLYPH);
        plschr(0, ht / def);
    }
    return 0;
}

typedef struct {
    int n, opt[MAX_LINES + 1 + PLOT_EV_COUNT], colour[MAX_LINES + 1 + PLOT_EV_COUNT], text_col[MAX_LINES + 1 + PLOT_EV_COUNT];
    int style[MAX_LINES + 1 + PLOT_EV_COUNT], sym_n[MAX_LINES + 1 + PLOT_EV_COUNT];
    double width[MAX_LINES + 1 + PLOT_EV_COUNT], sym_scale[MAX_LINES + 1 + PLOT_EV_COUNT];
    const char *text[MAX_LINES + 1 + PLOT_EV_COUNT], *sym[MAX_LINES + 1 + PLOT_EV_COUNT];
    char label[MAX_LINES][64];
} legend;

static void legend_add(legend *g, const char *text, int colour, int style, int marker) {
    const int i = g->n++;
    g->opt[i] = PL_LEGEND_LINE | (marker ? PL_LEGEND_SYMBOL : 0);
    g->text[i] = text;
    g->text_col[i] = COL_FG;
    g->colour[i] = colour;
    g->style[i] = style;
    g->width[i] = style == 1 ? 2.0 : 1.5;
    g->sym[i] = MARKER_GLYPH;
    g->sym_n[i] = 1;
}

typedef struct {
    double x0, x1, y0, y1; /* a rectangle: the panel's cell (normalised page coordinates), a window */
} rect;

/* How many points of the lines (sampled along each segment) fall in r, in the
 * window's normalised coordinates [0, 1]. */
static size_t points_in(const plot_panel *p, const plot_log *L, const plot_opts *o, rect win, rect r) {
    size_t hits = 0;
    const double sx = 1 / (win.x1 - win.x0), sy = 1 / (win.y1 - win.y0);
#define IN(x, y) ((x) >= r.x0 && (x) <= r.x1 && (y) >= r.y0 && (y) <= r.y1)
    for (int i = 0; i < p->n; i++) {
        const plot_series *s = &L->s[p->line[i]];
        const size_t m = s->n < 400 ? 400 / s->n : 1; /* samples per segment */
        for (size_t j = 0; j < s->n; j++) {
            const double u = (s->x[j] - win.x0) * sx, v = (s->y[j] - win.y0) * sy;
            hits += IN(u, v);
            if (j + 1 == s->n || s->x[j + 1] <= s->x[j]) continue;
            const double du = (s->x[j + 1] - s->x[j]) * sx / (double)m, dv = (s->y[j + 1] - s->y[j]) * sy / (double)m;
            for (size_t k = 1; k < m; k++) hits += IN(u + du * (double)k, v + dv * (double)k);
        }
    }
    if (p->baseline)
        for (int k = 0; k <= 100; k++) hits += IN(k / 100.0, (o->baseline - win.y0) * sy);
#undef IN
    return hits;
}

/* The corner of the viewport where a legend of w x h (normalised) covers the
 * fewest points: top right, bottom right, top left, bottom left on a tie. */
static int legend_corner(const plot_panel *p, const plot_log *L, const plot_opts *o, rect win, double w, double h) {
    static const int pos[4] = {PL_POSITION_TOP | PL_POSITION_RIGHT, PL_POSITION_BOTTOM | PL_POSITION_RIGHT,
                               PL_POSITION_TOP | PL_POSITION_LEFT, PL_POSITION_BOTTOM | PL_POSITION_LEFT};
    size_t best = (size_t)-1;
    int at = 0;
    for (int i = 0; i < 4; i++) {
        const int right = pos[i] & PL_POSITION_RIGHT, top = pos[i] & PL_POSITION_TOP;
        const double pad = 0.06; /* keep lines a little clear of it too */
        const rect r = {right ? 1 - LEGEND_DX - w - pad : 0, right ? 1 : LEGEND_DX + w + pad,
                        top ? 1 - LEGEND_DY - h - pad : 0, top ? 1 : LEGEND_DY + h + pad};
        const size_t n = points_in(p, L, o, win, r);
        if (n < best) best = n, at = pos[i];
    }
    return at;
}

/* Draws the legend (when it has two entries or more) where it hides least;
 * vp: the viewport's width and height in mm, ch the character height in mm. */
static void legend_draw(legend *g, const plot_panel *p, const plot_log *L, const plot_opts *o, rect win,
                        const double *vp, double ch, double scale) {
    if (g->n < 2) return;
    const int cols = g->n > 6 ? 2 : 1, rows = (g->n + cols - 1) / cols;
    size_t chars = 0;
    for (int i = 0; i < g->n; i++) chars = strlen(g->text[i]) > chars ? strlen(g->text[i]) : chars;
    const double w = cols * (LEGEND_LINE + (3.0 + 0.65 * (double)chars) * ch / vp[0]);
    const double h = (rows * LEGEND_SPACING + 0.5) * ch / vp[1];
    for (int i = 0; i < g->n; i++) g->sym_scale[i] = 0.8 * MARKER * scale;
    PLFLT lw, lh;
    pllegend(&lw, &lh, PL_LEGEND_BACKGROUND | PL_LEGEND_BOUNDING_BOX,
             PL_POSITION_INSIDE | legend_corner(p, L, o, win, w, h), LEGEND_DX, LEGEND_DY, LEGEND_LINE, COL_BG,
             COL_GRID, 1, rows, cols, g->n, g->opt, 1.0, scale, LEGEND_SPACING, 0.0, g->text_col, g->text, NULL, NULL,
             NULL, NULL, g->colour, g->style, g->width, g->colour, g->sym_scale, g->sym_n, g->sym);
}

/* Vertical lines at the events; present[k]: whether kind k has one. */
static void draw_events(const plot_log *L, double y0, double y1, int *present) {
    plwidth(1.5);
    for (int k = 0; k < PLOT_EV_COUNT; k++) {
        present[k] = 0;
        plcol0(COL_EVENT + k);
        pllsty(k == PLOT_EV_SKIPPED ? 3 : 2);
        for (size_t e = 0; e < L->n_ev; e++)
            if (L->ev[e].kind == (plot_event_kind)k) pljoin(L->ev[e].step, y0, L->ev[e].step, y1), present[k] = 1;
    }
    pllsty(1);
}

/* One panel in cell c; mm: page width, height and character height (mm), scale: the character scale. */
static int draw_panel(const plot_panel *p, const plot_log *L, const plot_opts *o, rect c, const double *mm, double scale) {
    /* Margins in character heights: tick labels and y label left, x label below, title above. */
    const double ch = mm[2], ml = 7.0 * ch / mm[0], mb = 4.4 * ch / mm[1], mt = 3.0 * ch / mm[1], mr = 2.5 * ch / mm[0];
    rect win = {L->xmin, L->xmax, 0, 0};
    if (win.x1 <= win.x0) win.x0 -= 1, win.x1 += 1;
    if (win.x0 >= 0 && win.x0 <= 0.1 * win.x1) win.x0 = 0; /* steps from 1: start the axis at 0 */
    win.x1 += 0.015 * (win.x1 - win.x0);                   /* the last point clear of the frame  */
    y_range(p, L, o, &win.y0, &win.y1);
    const rect vp = {c.x0 + ml, c.x1 - mr, c.y0 + mb, c.y1 - mt};
    plvpor(vp.x0, vp.x1, vp.y0, vp.y1);
    plwind(win.x0, win.x1, win.y0, win.y1);
    plcol0(COL_GRID);
    plwidth(1.0);
    plbox("g", 0, 0, "g", 0, 0);
    int present[PLOT_EV_COUNT];
    draw_events(L, win.y0, win.y1, present); /* under the lines */
    legend g = {0};
    plwidth(2.0);
    for (int i = 0; i < p->n; i++) {
        const plot_series *s = &L->s[p->line[i]];
        if (draw_series(s, i % N_LINE_COLS, o->smooth, sparse(s, L))) return cli_die("plot: out of memory");
        series_label(s, g.label[i], sizeof g.label[i]);
        legend_add(&g, g.label[i], COL_LINE + i % N_LINE_COLS, 1, sparse(s, L));
    }
    if (p->baseline) {
        plcol0(COL_BASE);
        pllsty(2);
        plwidth(1.5);
        pljoin(win.x0, o->baseline, win.x1, o->baseline);
        pllsty(1);
        legend_add(&g, "baseline", COL_BASE, 2, 0);
    }
    static const char *const names[PLOT_EV_COUNT] = {"skipped step", "rolled back", "diverged"};
    for (int k = 0; k < PLOT_EV_COUNT; k++)
        if (present[k]) legend_add(&g, names[k], COL_EVENT + k, k == PLOT_EV_SKIPPED ? 3 : 2, 0);
    plwidth(1.0);
    plcol0(COL_FG);
    plbox("bcnst", 0, 0, "bcnstv", 0, 0);
    char title[200], ylabel[140];
    escape_text(title, sizeof title, p->title);
    escape_text(ylabel, sizeof ylabel, p->ylabel);
    pllab("step", ylabel, title);
    const double vp_mm[2] = {(vp.x1 - vp.x0) * mm[0], (vp.y1 - vp.y0) * mm[1]};
    legend_draw(&g, p, L, o, win, vp_mm, ch, scale);
    return 0;
}

/* ------------------------------------------------------------ output */

static char tmp_path[4096]; /* the PNG being written, removed on failure */

/* PLplot calls this instead of returning from a fatal error; it would exit. */
static int plplot_exit(const char *msg) {
    if (tmp_path[0]) unlink(tmp_path);
    fprintf(stderr, "dsc: plot: PLplot: %s\n", msg && *msg ? msg : "fatal error");
    fflush(stderr);
    _exit(1);
}

static int have_pngcairo(void) {
    const char *menu[128], *devs[128];
    const char **pm = menu, **pd = devs;
    int n = 128;
    plgDevs(&pm, &pd, &n);
    for (int i = 0; i < n; i++)
        if (devs[i] && !strcmp(devs[i], "pngcairo")) return 1;
    return 0;
}

/* Draws the panels into tmp_path; plend on every path once plinit ran. */
static int draw(const plot_opts *o, const plot_log *L, plot_panel *p, int n_p) {
    plsexit(plplot_exit);
    plsdev("pngcairo");
    plsfnam(tmp_path);
    plspage(0, 0, o->width, o->height, 0, 0);
    set_colours();
    plinit();
    pladv(0);
    PLFLT def, ht, xmin, xmax, ymin, ymax;
    plschr(0, 0.8);
    plgchr(&def, &ht);
    plvpor(0, 1, 0, 1);
    plgspa(&xmin, &xmax, &ymin, &ymax);
    const double mm[3] = {xmax - xmin, ymax - ymin, ht}; /* page width, height, character height (mm) */
    const int cols = n_p <= 2 ? 1 : n_p <= 4 ? 2 : 3, rows = (n_p + cols - 1) / cols;
    const double top = 1.0 - 3.2 * ht / mm[1]; /* below the chart title */
    plwind(0, 1, 0, 1);
    plcol0(COL_FG);
    char title[600];
    escape_text(title, sizeof title, o->title ? o->title : o->log);
    plschr(0, 1.0);
    plmtex("t", -1.5, 0.5, 0.5, title);
    plschr(0, cols > 1 ? 0.7 : 0.8);
    plgchr(&def, &ht);
    const double mmp[3] = {mm[0], mm[1], ht};
    int rc = 0;
    for (int i = 0; i < n_p && !rc; i++) {
        const int r = i / cols, k = i % cols;
        const rect c = {(double)k / cols, (double)(k + 1) / cols, top * (rows - r - 1) / rows, top * (rows - r) / rows};
        rc = draw_panel(&p[i], L, o, c, mmp, ht / def);
    }
    plend();
    return rc;
}

static int check_png(const char *path) {
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    unsigned char b[8];
    FILE *f = fopen(path, "rb");
    const int ok = f && fread(b, 1, 8, f) == 8 && !memcmp(b, sig, 8);
    if (f) fclose(f);
    return ok;
}

static int plot_write(const plot_opts *o, const plot_log *L, plot_panel *p, int n_p) {
    if (!have_pngcairo())
        return cli_die("plot: PLplot has no pngcairo device (apt-get install plplot-driver-cairo)");
    if (snprintf(tmp_path, sizeof tmp_path, "%s.XXXXXX", o->out) >= (int)sizeof tmp_path)
        return cli_die("plot: output path too long");
    const int fd = mkstemp(tmp_path);
    if (fd < 0) {
        tmp_path[0] = 0;
        return cli_die("plot: cannot write %s: %s", o->out, strerror(errno));
    }
    const mode_t mask = umask(0); /* mkstemp made it 0600; make it like any new file */
    umask(mask);
    (void)fchmod(fd, 0666 & ~mask);
    close(fd);
    int rc = draw(o, L, p, n_p);
    if (!rc && !check_png(tmp_path)) rc = cli_die("plot: PLplot wrote no PNG for %s", o->out);
    if (!rc && rename(tmp_path, o->out)) rc = cli_die("plot: cannot write %s: %s", o->out, strerror(errno));
    if (rc) unlink(tmp_path);
    tmp_path[0] = 0;
    return rc;
}

int cmd_plot(const cli_opts *co) {
    plot_opts o;
    int rc = parse_opts(co, &o);
    if (rc) return rc < 0 ? 0 : rc;
    plot_log L;
    char err[512];
    if (plot_log_read(&L, o.log, err, sizeof err)) return cli_die("plot: %s", err);
    plot_panel p[MAX_PANELS];
    int n_p = 0;
    if (!L.n_lines) rc = cli_die("plot: %s: empty log", o.log);
    else if (!L.n_s) rc = cli_die("plot: %s: no numeric key to plot", o.log);
    else if (o.keys) rc = layout_keys(&o, &L, p, &n_p);
    else layout_default(&L, p, &n_p);
    if (!rc && !n_p) rc = cli_die("plot: %s: no numeric key to plot", o.log);
    if (!rc && o.have_baseline) {
        int b = 0;
        for (int i = 0; i < n_p; i++)
            if (!strcmp(L.s[p[i].line[0]].key, "loss")) {
                b = i;
                break;
            }
        p[b].baseline = 1;
    }
    if (!rc) rc = plot_write(&o, &L, p, n_p);
    plot_log_free(&L);
    return rc;
}

#endif
