/* report.html's population-based training section (kiln tune report, tune/report.c): each
 * trial's lineage (which trial it copied at which epochs), each mutated hyperparameter by epoch
 * per trial, and the best trial's schedule as a table. All of it comes from the journal's
 * started events that carry a donor (tune/coord.c); a sweep without any draws nothing here. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tune/pbt_impl.h"
#include "tune/plot.h"
#include "tune/report_impl.h"

enum { MAX_ROWS = 200 }; /* trials drawn in the lineage plot */

/* The values each trial trained with, as segments of its own epochs: [from_t, to_t) with the
 * overrides of the started event that began them. */
typedef struct seg {
    int64_t trial;
    int from_t, to_t;
    int64_t donor; /* -1: a new trial */
    int donor_t, was_t;
    json_t *ov; /* borrowed */
} seg;

static int trial_last(const kl__report *rp, int64_t trial)
{
    return trial >= 0 && trial < rp->ntrials ? rp->trials[trial].last_t : 0;
}

static int collect(const kl__report *rp, seg **out)
{
    int n = 0, cap = 0, exploits = 0;
    seg *s = NULL;
    size_t i;
    json_t *ev;
    json_array_foreach(rp->events, i, ev)
    {
        const char *kind = json_string_value(json_object_get(ev, "event"));
        json_t *ov = json_object_get(ev, "overrides");
        if (!kind || strcmp(kind, "started") || !json_is_object(ov))
            continue;
        json_t *d = json_object_get(ev, "donor");
        if (n == cap) {
            seg *g = realloc(s, (size_t)(cap = cap ? 2 * cap : 64) * sizeof *s);
            if (!g)
                break;
            s = g;
        }
        int64_t trial = json_integer_value(json_object_get(ev, "trial"));
        s[n] = (seg){.trial = trial,
                     .donor = json_is_integer(d) ? json_integer_value(d) : -1,
                     .donor_t = (int)json_integer_value(json_object_get(ev, "donor_t")),
                     .was_t = (int)json_integer_value(json_object_get(ev, "from_t")),
                     .ov = ov};
        s[n].from_t = s[n].donor >= 0 ? s[n].donor_t : 0;
        exploits += s[n].donor >= 0;
        n++;
    }
    /* Each segment ends where the trial's next one was cut (its epochs when it exploited), the
     * last at the trial's last t. */
    for (int a = 0; a < n; a++) {
        s[a].to_t = trial_last(rp, s[a].trial);
        for (int b = a + 1; b < n; b++)
            if (s[b].trial == s[a].trial) {
                s[a].to_t = s[b].was_t;
                break;
            }
    }
    *out = s;
    return exploits ? n : 0;
}

static const char *row_class(const kl__report *rp, int64_t trial)
{
    return trial == rp->best ? "curve best" : "curve";
}

/* One row per trial (the first MAX_ROWS), a line over the epochs it trained itself, and for
 * each exploit a dashed link down from the donor's row at the epochs copied. */
static void plot_lineage(FILE *f, const kl__report *rp, const seg *s, int n)
{
    int64_t rows = rp->ntrials < MAX_ROWS ? rp->ntrials : MAX_ROWS;
    const double W = 900, ml = 70, mr = 30, mt = 16, mb = 40, rh = 18;
    double H = mt + mb + rh * (double)rows;
    kl__scale x = kl__scale_new(0, rp->max_t > 0 ? rp->max_t : 1, false, true, ml, W - mr);
    x.integer = true;
    fputs("<h2>Lineage</h2>\n<p class=\"note\">One row per trial over the epochs it trained "
          "itself; a dashed link comes down from the trial it copied (population-based "
          "training's exploit), at the epochs it copied, and the trial goes on from there with "
          "explored values. The best trial is red.",
          f);
    if (rows < rp->ntrials)
        fprintf(f, " The first %lld of %lld trials are drawn.", (long long)rows,
                (long long)rp->ntrials);
    fputs("</p>\n", f);
    kl__plot_svg_open(f, "plot-lineage", W, H, "each trial's lineage");
    kl__plot_x_axis(f, &x, H - mb, mt);
    for (int64_t r = 0; r<rows; r += rows> 40 ? 10 : 1)
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" dy=\".32em\">%lld</text>\n",
                ml - 6, mt + rh * ((double)r + 0.5), (long long)r);
    for (int i = 0; i < n; i++) {
        if (s[i].trial < 0 || s[i].trial >= rows)
            continue;
        double y = mt + rh * ((double)s[i].trial + 0.5);
        fprintf(f,
                "<line class=\"%s\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                "stroke=\"#4c78a8\"><title>trial %lld, epochs %d-%d: ",
                row_class(rp, s[i].trial), kl__scale_at(&x, s[i].from_t), y,
                kl__scale_at(&x, s[i].to_t > s[i].from_t ? s[i].to_t : s[i].from_t + 0.2), y,
                (long long)s[i].trial, s[i].from_t + 1, s[i].to_t);
        const char *key;
        json_t *v;
        int k = 0;
        json_object_foreach(s[i].ov, key, v)
        {
            fputs(k++ ? ", " : "", f);
            kl__report_esc(f, key);
            fputc('=', f);
            kl__report_esc(f, json_string_value(v));
        }
        fputs("</title></line>\n", f);
        if (s[i].donor < 0 || s[i].donor >= rows)
            continue;
        double yd = mt + rh * ((double)s[i].donor + 0.5), xd = kl__scale_at(&x, s[i].donor_t);
        fprintf(f,
                "<line class=\"curve failed\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" "
                "y2=\"%.1f\"/><circle class=\"end\" cx=\"%.1f\" cy=\"%.1f\" r=\"3\" "
                "fill=\"#333\"><title>trial %lld, at t=%d, copied trial %lld at t=%d</title>"
                "</circle>\n",
                xd, yd, xd, y, xd, y, (long long)s[i].trial, s[i].was_t, (long long)s[i].donor,
                s[i].donor_t);
    }
    fprintf(f,
            "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">epochs</text>\n"
            "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" transform=\"rotate(-90 %.1f "
            "%.1f)\">trial</text>\n</svg></div>\n",
            (ml + W - mr) / 2, H - 6, 18.0, mt + (H - mt - mb) / 2, 18.0, mt + (H - mt - mb) / 2);
}

/* One plot per mutated key whose values are all numbers: each trial's value over its own
 * epochs, a step at each exploit. */
static void plot_key(FILE *f, const kl__report *rp, const seg *s, int n, const char *key, int id)
{
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < n; i++) {
        const char *v = json_string_value(json_object_get(s[i].ov, key));
        char *end;
        double d = v ? strtod(v, &end) : NAN;
        if (!v || end == v || *end || !isfinite(d))
            return; /* not a number: the table says it */
        lo = fmin(lo, d);
        hi = fmax(hi, d);
    }
    if (!(lo < hi))
        hi = lo + (lo == 0 ? 1 : fabs(lo));
    const double W = 900, H = 260, ml = 70, mr = 30, mt = 16, mb = 40;
    kl__scale x = kl__scale_new(0, rp->max_t > 0 ? rp->max_t : 1, false, true, ml, W - mr);
    kl__scale y = kl__scale_new(lo, hi, true, true, H - mb, mt);
    x.integer = true;
    fputs("<h3><code>", f);
    kl__report_esc(f, key);
    fputs("</code> by epoch</h3>\n", f);
    char svgid[32];
    snprintf(svgid, sizeof svgid, "plot-pbt-%d", id);
    kl__plot_svg_open(f, svgid, W, H, key);
    kl__plot_x_axis(f, &x, H - mb, mt);
    kl__plot_y_axis(f, &y, ml, W - mr, true);
    for (int i = 0; i < n; i++) {
        double v = strtod(json_string_value(json_object_get(s[i].ov, key)), NULL);
        fprintf(f,
                "<line class=\"%s\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                "stroke=\"#4c78a8\"><title>trial %lld, epochs %d-%d: ",
                row_class(rp, s[i].trial), kl__scale_at(&x, s[i].from_t), kl__scale_at(&y, v),
                kl__scale_at(&x, s[i].to_t > s[i].from_t ? s[i].to_t : s[i].from_t + 0.2),
                kl__scale_at(&y, v), (long long)s[i].trial, s[i].from_t + 1, s[i].to_t);
        kl__report_esc(f, json_string_value(json_object_get(s[i].ov, key)));
        fputs("</title></line>\n", f);
    }
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">epochs</text>\n</svg></div>\n",
            (ml + W - mr) / 2, H - 6);
}

/* The best trial's schedule: the values its weights were trained with, by epoch. */
static void best_table(FILE *f, const kl__report *rp)
{
    json_t *sched = rp->best >= 0 ? kl__pbt_schedule(rp->events, rp->best) : NULL;
    json_t *first = json_object_get(json_array_get(sched, 0), "overrides");
    if (!first) {
        json_decref(sched);
        return;
    }
    fprintf(f,
            "<h3>The best trial's schedule</h3>\n<p class=\"note\">Trial %lld's weights were "
            "trained with these values, by epoch (best.yaml holds them, and the commands that "
            "replay them).</p>\n<div class=\"scroll\"><table class=\"trials\">\n<thead><tr>"
            "<th>epochs</th><th>trained by</th>",
            (long long)rp->best);
    const char *key;
    json_t *v;
    json_object_foreach(first, key, v)
    {
        fputs("<th>", f);
        kl__report_esc(f, key);
        fputs("</th>", f);
    }
    fputs("</tr></thead>\n<tbody>\n", f);
    size_t i;
    json_t *row;
    json_array_foreach(sched, i, row)
    {
        fprintf(f, "<tr><td class=\"n\">%lld-%lld</td><td class=\"n\">trial %lld</td>",
                (long long)json_integer_value(json_object_get(row, "from_t")) + 1,
                (long long)json_integer_value(json_object_get(row, "to_t")),
                (long long)json_integer_value(json_object_get(row, "trial")));
        json_object_foreach(first, key, v)
        {
            fputs("<td>", f);
            json_t *ov = json_object_get(row, "overrides");
            kl__report_esc(f, json_string_value(json_object_get(ov, key)));
            fputs("</td>", f);
        }
        fputs("</tr>\n", f);
    }
    fputs("</tbody>\n</table></div>\n", f);
    json_decref(sched);
}

void kl__report_pbt(FILE *f, const kl__report *rp)
{
    seg *s = NULL;
    int n = collect(rp, &s);
    if (n > 0) {
        fputs("<h2>Population-based training</h2>\n", f);
        plot_lineage(f, rp, s, n);
        /* The mutated keys: those whose value an exploit changed somewhere. */
        const char *key;
        json_t *v;
        int id = 0;
        json_t *seen = json_object();
        for (int i = 0; i < n; i++)
            if (s[i].donor >= 0)
                json_object_foreach(s[i].ov, key, v) if (!json_object_get(seen, key))
                {
                    json_object_set_new(seen, key, json_true());
                    plot_key(f, rp, s, n, key, id++);
                }
        json_decref(seen);
        best_table(f, rp);
    }
    free(s);
}
