/* The plots of kiln tune report, each one inline <svg>: the metric against epochs per trial,
 * how many trials reached each rung, and parallel coordinates of the hyperparameters, drawn with
 * the scales and axes of tune/plot.h. Trials are coloured by their best metric on one sequential
 * scale (viridis, darkest for the best), the best trial in red on top. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/tune_report.h"
#include "tune/plot.h"
#include "tune/report_impl.h"

#define BEST_COLOR "#d62728"
enum { LABEL_CHARS = 22 };

/* The colour kl__scale over the ranked trials' best values. */
static kl__scale color_scale(const kl__report *rp)
{
    double lo = INFINITY, hi = -INFINITY;
    for (int64_t i = 0; i < rp->nranked; i++) {
        double v = rp->trials[rp->order[i]].best;
        lo = fmin(lo, v);
        hi = fmax(hi, v);
    }
    return rp->nranked ? kl__scale_new(lo, hi, true, false, 0, 1)
                       : kl__scale_new(0, 1, false, false, 0, 1);
}

static void trial_color(const kl__report *rp, const kl__scale *cs, const kl__report_trial *t,
                        char out[8])
{
    double u = kl__scale_unit(cs, t->best);
    kl__plot_color(rp->maximize ? 1 - u : u, out);
}

/* The colour kl__scale as a bar, better on top. gid names the gradient, unique in the page. */
static void gradient(FILE *f, const kl__report *rp, const kl__scale *cs, double x, double y,
                     int gid)
{
    fprintf(f, "<defs><linearGradient id=\"kl-grad-%d\" x1=\"0\" y1=\"0\" x2=\"0\" y2=\"1\">", gid);
    for (int k = 0; k <= 8; k++) {
        char c[8];
        kl__plot_color(k / 8.0, c);
        fprintf(f, "<stop offset=\"%.3f\" stop-color=\"%s\"/>", k / 8.0, c);
    }
    double hi = rp->maximize ? cs->hi : cs->lo, lo = rp->maximize ? cs->lo : cs->hi;
    fprintf(f, "</linearGradient></defs>\n<text x=\"%.1f\" y=\"%.1f\">best ", x, y + 26);
    kl__report_esc(f, rp->metric);
    fprintf(f,
            "</text><rect x=\"%.1f\" y=\"%.1f\" width=\"14\" height=\"120\" "
            "fill=\"url(#kl-grad-%d)\"/><text x=\"%.1f\" y=\"%.1f\" dy=\".32em\">%.4g "
            "(better)</text><text x=\"%.1f\" y=\"%.1f\" dy=\".32em\">%.4g</text>\n",
            x, y + 36, gid, x + 20, y + 40, hi, x + 20, y + 152, lo);
}

/* The legend at (x, y): the best trial, the colour scale (better on top) and grey for trials
 * that failed. */
static void legend(FILE *f, const kl__report *rp, const kl__scale *cs, double x, double y, int gid)
{
    fputs("<g class=\"legend\">", f);
    if (rp->best >= 0)
        fprintf(f,
                "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"" BEST_COLOR
                "\" stroke-width=\"2.5\"/><text x=\"%.1f\" y=\"%.1f\" dy=\".32em\">best: trial "
                "%lld</text>\n",
                x, y, x + 24, y, x + 30, y, (long long)rp->best);
    if (rp->nranked > 0)
        gradient(f, rp, cs, x, y, gid);
    bool failed = false;
    for (int64_t i = 0; i < rp->nstarted; i++)
        failed = failed || kl__report_failed(&rp->trials[rp->order[i]]);
    if (failed)
        fprintf(f,
                "<line class=\"failed\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
                "<text x=\"%.1f\" y=\"%.1f\" dy=\".32em\">failed, diverged</text>\n",
                x, y + 180, x + 24, y + 180, x + 30, y + 180);
    fputs("</g>\n", f);
}

/* What thin() left out, when it did. */
static void capped(FILE *f, int64_t drawn, int64_t of)
{
    if (drawn < of)
        fprintf(f,
                " Showing %lld of %lld trials, to keep the page small: the %lld best and others "
                "spread evenly over the rest.",
                (long long)drawn, (long long)of, (long long)drawn / 2);
}

static void trial_title(FILE *f, const kl__report *rp, const kl__report_trial *t)
{
    fprintf(f, "<title>trial %lld (%s, t=%d): best ", (long long)t->id,
            kl__report_state_name(t->state), t->last_t);
    if (isnan(t->best))
        fputs("none", f);
    else
        fprintf(f, "%.6g", t->best);
    fputs("; ", f);
    kl__report_params(f, t);
    fputs("</title>", f);
}

/* ---- plot 1: the metric against epochs ---- */

/* Thins sel (n trials, best first) to at most cap: the best cap / 2, and the others spread
 * evenly over the remaining ranks, so that a capped plot still shows where the bad trials lie. */
static int64_t thin(int64_t *sel, int64_t n, int64_t cap)
{
    if (n <= cap)
        return n;
    int64_t half = cap / 2, rest = cap - half;
    for (int64_t j = 0; j < rest; j++) /* reads at or after where it writes */
        sel[half + j] = sel[half + j * (n - half) / rest];
    return cap;
}

/* The trials to draw, best first: those with a finite result, within the caps. */
static int64_t pick_curves(const kl__report *rp, int64_t *sel, int64_t *with_points)
{
    int64_t n = 0, most = 1;
    for (int64_t i = 0; i < rp->nstarted; i++) {
        const kl__report_trial *t = &rp->trials[rp->order[i]];
        if (t->npts > 0) {
            sel[n++] = rp->order[i];
            most = t->npts > most ? t->npts : most;
        }
    }
    *with_points = n;
    int64_t cap = KL_TUNE_REPORT_MAX_POINTS / most;
    return thin(sel, n,
                cap < 1                          ? 1
                : cap < KL_TUNE_REPORT_MAX_LINES ? cap
                                                 : KL_TUNE_REPORT_MAX_LINES);
}

static void curve(FILE *f, const kl__report *rp, const kl__report_trial *t, const kl__scale *x,
                  const kl__scale *y, const kl__scale *cs)
{
    char c[8] = BEST_COLOR;
    const char *cls = t->id == rp->best      ? "curve best"
                      : kl__report_failed(t) ? "curve failed"
                                             : "curve";
    if (t->id != rp->best && !kl__report_failed(t))
        trial_color(rp, cs, t, c);
    fprintf(f, "<polyline class=\"%s\" stroke=\"%s\" points=\"", cls,
            kl__report_failed(t) ? "#999999" : c);
    for (int i = 0; i < t->npts; i++)
        fprintf(f, "%s%.1f,%.1f", i ? " " : "", kl__scale_at(x, t->pts[i].t),
                kl__scale_at(y, t->pts[i].v));
    fputs("\">", f);
    trial_title(f, rp, t);
    fputs("</polyline>\n", f);
    /* A dot where a trial ended before max_t (paused, stopped, failed), or its only point. */
    const kl__report_point *e = &t->pts[t->npts - 1];
    bool early = t->state != KL__REPORT_RUNNING && t->state != KL__REPORT_DONE && e->t < rp->max_t;
    if (early || t->npts == 1)
        fprintf(f, "<circle class=\"end\" cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"/>\n",
                kl__scale_at(x, e->t), kl__scale_at(y, e->v), kl__report_failed(t) ? "#999999" : c);
}

kl_status kl__report_plot_curves(FILE *f, const kl__report *rp, kl_error *err)
{
    if (rp->nresults == 0)
        return KL_OK;
    int64_t *sel = malloc((size_t)rp->nstarted * sizeof *sel), with_points;
    if (!sel)
        return kl_error_set(err, KL_ENOMEM, "out of memory");
    int64_t n = pick_curves(rp, sel, &with_points);
    double lo = INFINITY, hi = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        for (int k = 0; k < rp->trials[sel[i]].npts; k++) {
            lo = fmin(lo, rp->trials[sel[i]].pts[k].v);
            hi = fmax(hi, rp->trials[sel[i]].pts[k].v);
        }
    const double W = 900, H = 420, ml = 70, mr = 190, mt = 16, mb = 50;
    kl__scale x = {.lo = 0, .hi = rp->max_t, .integer = true, .p0 = ml, .p1 = W - mr};
    kl__scale y = kl__scale_new(lo, hi, true, true, H - mb, mt), cs = color_scale(rp);
    fputs("<h2>The metric per epoch</h2>\n<p class=\"note\">One line per trial: ", f);
    kl__report_esc(f, rp->metric);
    fputs(" after each epoch. A line that ends early is a trial the scheduler stopped or paused "
          "(a dot marks where); hover over a line for its trial and hyperparameters.",
          f);
    capped(f, n, with_points);
    fputs("</p>\n", f);
    kl__plot_svg_open(f, "plot-curves", W, H, "the metric against epochs, one line per trial");
    kl__plot_y_axis(f, &y, ml, W - mr, true);
    kl__plot_x_axis(f, &x, H - mb, mt);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">epochs (t)%s</text>\n",
            (ml + W - mr) / 2, H - 12, y.log ? "; log scale" : "");
    fprintf(f, "<text transform=\"translate(16 %.1f) rotate(-90)\" text-anchor=\"middle\">",
            (H - mb + mt) / 2);
    kl__report_esc(f, rp->metric);
    fputs("</text>\n", f);
    for (int64_t i = n - 1; i >= 0; i--) /* the best last, on top */
        curve(f, rp, &rp->trials[sel[i]], &x, &y, &cs);
    legend(f, rp, &cs, W - mr + 20, mt + 10, 1);
    fputs("</svg></div>\n", f);
    free(sel);
    return KL_OK;
}

/* ---- plot 2: rung occupancy ---- */

void kl__report_plot_rungs(FILE *f, const kl__report *rp)
{
    if (rp->nresults == 0 || rp->nmilestones == 0)
        return;
    int64_t most = 1;
    for (int r = 0; r < rp->nmilestones; r++) {
        int64_t c = 0;
        for (int64_t i = 0; i < rp->ntrials; i++)
            c += rp->trials[i].started && rp->trials[i].last_t >= rp->milestones[r];
        most = c > most ? c : most;
    }
    const double W = 900, H = 300, ml = 70, mr = 30, mt = 24, mb = 50;
    kl__scale y = kl__scale_new(0, (double)most, false, true, H - mb, mt);
    y.integer = true;
    double band = (W - ml - mr) / rp->nmilestones, bw = fmin(band * 0.7, 80);
    int every = (rp->nmilestones + 19) / 20;
    fputs("<h2>Rung occupancy</h2>\n<p class=\"note\">How many trials trained to each rung's "
          "milestone (the epochs at which the scheduler decides, and max_t).</p>\n",
          f);
    kl__plot_svg_open(f, "plot-rungs", W, H, "trials that reached each rung");
    kl__plot_y_axis(f, &y, ml, W - mr, true);
    fprintf(f, "<line class=\"axis\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", ml,
            H - mb, W - mr, H - mb);
    for (int r = 0; r < rp->nmilestones; r++) {
        int m = rp->milestones[r];
        int64_t c = 0;
        for (int64_t i = 0; i < rp->ntrials; i++)
            c += rp->trials[i].started && rp->trials[i].last_t >= m;
        double cx = ml + band * (r + 0.5), top = kl__scale_at(&y, (double)c);
        fprintf(f,
                "<rect class=\"bar\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\">"
                "<title>t &#8805; %d: %lld of %lld trials (%.0f%%)</title></rect>"
                "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%lld</text>\n",
                cx - bw / 2, top, bw, H - mb - top, m, (long long)c, (long long)rp->nstarted,
                rp->nstarted ? 100.0 * (double)c / (double)rp->nstarted : 0.0, cx, top - 4,
                (long long)c);
        if (r % every == 0 || r == rp->nmilestones - 1)
            fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%d</text>\n", cx,
                    H - mb + 16, m);
    }
    fprintf(f,
            "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">rung milestone (epochs)</text>\n"
            "<text transform=\"translate(16 %.1f) rotate(-90)\" text-anchor=\"middle\">"
            "trials</text>\n</svg></div>\n",
            (ml + W - mr) / 2, H - 12, (H - mb + mt) / 2);
}

/* ---- plot 3: parallel coordinates ---- */

typedef struct pc_axis {
    const char *key; /* NULL: the metric */
    bool numeric;
    kl__scale s;
    const char **cats; /* categorical: the values, sorted */
    int ncats;
    double x;
} pc_axis;

static const char *value_of(const kl__report_trial *t, const char *key)
{
    return json_string_value(json_object_get(t->overrides, key));
}

static bool parse_num(const char *s, double *v)
{
    char *end;
    *v = strtod(s, &end);
    return end != s && *end == '\0' && isfinite(*v);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A key's axis over the drawn trials: numeric when every value is a number, else categories. */
static kl_status axis_fit(pc_axis *a, const kl__report *rp, const int64_t *sel, int64_t n,
                          double p0, double p1)
{
    double lo = INFINITY, hi = -INFINITY, v;
    a->numeric = true;
    for (int64_t i = 0; i < n; i++) {
        const char *s = value_of(&rp->trials[sel[i]], a->key);
        if (s && parse_num(s, &v)) {
            lo = fmin(lo, v);
            hi = fmax(hi, v);
        } else if (s) {
            a->numeric = false;
        }
    }
    if (a->numeric) {
        a->s = isfinite(lo) ? kl__scale_new(lo, hi, true, true, p0, p1)
                            : kl__scale_new(0, 1, 0, 0, p0, p1);
        return KL_OK;
    }
    a->s = (kl__scale){.lo = 0, .hi = 1, .p0 = p0, .p1 = p1};
    if (!(a->cats = malloc((size_t)n * sizeof *a->cats)))
        return KL_ENOMEM;
    for (int64_t i = 0; i < n; i++)
        if (value_of(&rp->trials[sel[i]], a->key))
            a->cats[a->ncats++] = value_of(&rp->trials[sel[i]], a->key);
    qsort(a->cats, (size_t)a->ncats, sizeof *a->cats, cmp_str);
    int u = 0;
    for (int i = 0; i < a->ncats; i++)
        if (u == 0 || strcmp(a->cats[i], a->cats[u - 1]))
            a->cats[u++] = a->cats[i];
    a->ncats = u;
    return KL_OK;
}

/* The pixel height of trial t on axis a, NAN when it has no value there. */
static double axis_y(const pc_axis *a, const kl__report_trial *t)
{
    if (!a->key)
        return kl__report_failed(t) || isnan(t->best) ? NAN : kl__scale_at(&a->s, t->best);
    const char *s = value_of(t, a->key);
    double v;
    if (!s)
        return NAN;
    if (a->numeric)
        return parse_num(s, &v) ? kl__scale_at(&a->s, v) : NAN;
    const char **at = bsearch(&s, a->cats, (size_t)a->ncats, sizeof *a->cats, cmp_str);
    return at ? a->s.p0 + (a->s.p1 - a->s.p0) * ((double)(at - a->cats) + 0.5) / a->ncats : NAN;
}

/* Text cut to LABEL_CHARS bytes from its end, on a UTF-8 boundary, "..." in front. */
static void short_label(FILE *f, const char *s)
{
    size_t n = strlen(s);
    if (n <= LABEL_CHARS) {
        kl__report_esc(f, s);
        return;
    }
    const char *p = s + n - (LABEL_CHARS - 1);
    while ((*p & 0xc0) == 0x80)
        p++;
    fputs("&#8230;", f);
    kl__report_esc(f, p);
}

static void axis_draw(FILE *f, const pc_axis *a, const kl__report *rp, double top)
{
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\"><title>", a->x, top - 16);
    kl__report_esc(f, a->key ? a->key : rp->metric);
    fputs("</title>", f);
    short_label(f, a->key ? a->key : rp->metric);
    fprintf(f, "%s</text>\n", a->key ? "" : " (best)");
    if (a->numeric) {
        kl__plot_y_axis(f, &a->s, a->x, a->x, false);
        return;
    }
    int every = (a->ncats + 19) / 20;
    for (int i = 0; i < a->ncats; i++) {
        double py = a->s.p0 + (a->s.p1 - a->s.p0) * (i + 0.5) / a->ncats;
        fprintf(f, "<line class=\"axis\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>",
                a->x - 4, py, a->x, py);
        if (i % every == 0) {
            fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" dy=\".32em\" text-anchor=\"end\">", a->x - 6,
                    py);
            short_label(f, a->cats[i]);
            fputs("</text>", f);
        }
    }
    fprintf(f, "\n<line class=\"axis\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", a->x,
            a->s.p0, a->x, a->s.p1);
}

static void pc_line(FILE *f, const kl__report *rp, const kl__report_trial *t, const pc_axis *ax,
                    int nax, const kl__scale *cs)
{
    char c[8] = "#999999";
    const char *cls = "pc failed";
    if (!kl__report_failed(t) && isnan(t->best)) { /* no result yet */
        cls = "pc none";
        strcpy(c, "#bbbbbb");
    } else if (t->id == rp->best) {
        cls = "pc best";
        strcpy(c, BEST_COLOR);
    } else if (!kl__report_failed(t) && !isnan(t->best)) {
        cls = "pc";
        trial_color(rp, cs, t, c);
    }
    fprintf(f, "<polyline class=\"%s\" stroke=\"%s\" points=\"", cls, c);
    int k = 0;
    for (int i = 0; i < nax; i++) {
        double py = axis_y(&ax[i], t);
        if (!isnan(py))
            fprintf(f, "%s%.1f,%.1f", k++ ? " " : "", ax[i].x, py);
    }
    fputs("\">", f);
    trial_title(f, rp, t);
    fputs("</polyline>\n", f);
}

static void parallel_draw(FILE *f, const kl__report *rp, const int64_t *sel, int64_t n,
                          const pc_axis *ax, int nax, double W, double H, double mt)
{
    kl__scale cs = color_scale(rp);
    fputs("<h2>Hyperparameters</h2>\n<p class=\"note\">Parallel coordinates: one axis per swept "
          "key (log kl__scale when its values span more than a factor of 20), the best ",
          f);
    kl__report_esc(f, rp->metric);
    fputs(" last; one line per trial, coloured by its best value.", f);
    capped(f, n, rp->nstarted);
    fputs("</p>\n", f);
    kl__plot_svg_open(f, "plot-parallel", W, H, "parallel coordinates of the hyperparameters");
    for (int i = 0; i < nax; i++)
        axis_draw(f, &ax[i], rp, mt);
    for (int64_t i = n - 1; i >= 0; i--)
        pc_line(f, rp, &rp->trials[sel[i]], ax, nax, &cs);
    legend(f, rp, &cs, ax[nax - 1].x + 40, mt + 10, 3);
    fputs("</svg></div>\n", f);
}

kl_status kl__report_plot_parallel(FILE *f, const kl__report *rp, kl_error *err)
{
    if (rp->nresults == 0)
        return KL_OK;
    int64_t *sel = malloc((size_t)rp->nstarted * sizeof *sel);
    if (!sel)
        return kl_error_set(err, KL_ENOMEM, "out of memory");
    memcpy(sel, rp->order, (size_t)rp->nstarted * sizeof *sel);
    int64_t n = thin(sel, rp->nstarted, KL_TUNE_REPORT_MAX_LINES);
    const int nax = rp->nkeys + 1;
    const double ml = 90, mr = 210, mt = 44, mb = 20, H = 440;
    double W = fmax(900, ml + mr + 150.0 * (nax - 1));
    pc_axis *ax = calloc((size_t)nax, sizeof *ax);
    kl_status st = ax ? KL_OK : KL_ENOMEM;
    for (int i = 0; st == KL_OK && i < nax; i++) {
        ax[i].key = i < rp->nkeys ? rp->keys[i] : NULL;
        ax[i].x = nax == 1 ? (ml + W - mr) / 2 : ml + (W - mr - ml) * i / (nax - 1);
        if (ax[i].key) {
            st = axis_fit(&ax[i], rp, sel, n, H - mb, mt);
            continue;
        }
        kl__scale cs = color_scale(rp); /* the metric: the ranked trials' best values */
        ax[i].numeric = true;
        ax[i].s = kl__scale_new(cs.lo, cs.hi, true, true, H - mb, mt);
    }
    if (st == KL_OK)
        parallel_draw(f, rp, sel, n, ax, nax, W, H, mt);
    for (int i = 0; ax && i < nax; i++)
        free(ax[i].cats);
    free(ax);
    free(sel);
    return st == KL_OK ? KL_OK : kl_error_set(err, st, "out of memory");
}
