/* kiln runs report: one self-contained HTML page comparing runs (docs/runs.md): their learning
 * curves overlaid (from each run's metrics.csv), parallel coordinates of the parameters that
 * differ against a metric, and the table of differing parameters, final and best metrics and
 * provenance. Plain HTML and inline SVG, no script, drawn with tune/plot.h as kiln tune's
 * report.html is. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "kiln/track.h"
#include "tune/plot.h"

/* The metrics.csv columns drawn as curves, in this order, when some run has them. */
static const char *const curve_metrics[] = {"val_loss", "val_accuracy", "val_mae", "train_loss",
                                            "train_accuracy"};
enum { NCURVES = sizeof curve_metrics / sizeof *curve_metrics, MAX_ROWS = 1000000 };

typedef struct series {
    double *epoch, *v[NCURVES]; /* (n) each, NAN where the row has no value */
    int n;
} series;

typedef struct report_run {
    char *id;
    json_t *doc;
    series s;
    char color[8];
} report_run;

/* metrics.csv of a run into s; a run without one has no curves. Rows past MAX_ROWS are left
 * out. */
static void read_curves(const char *root, const char *id, series *s)
{
    size_t n = strlen(root) + strlen(id) + 16;
    char *path = malloc(n), line[4096];
    if (!path)
        return;
    snprintf(path, n, "%s/%s/metrics.csv", root, id);
    FILE *f = fopen(path, "r");
    free(path);
    if (!f)
        return;
    int col[NCURVES + 1], ncol = 0; /* col[k]: the column of curve_metrics[k]; [NCURVES] epoch */
    for (int k = 0; k <= NCURVES; k++)
        col[k] = -1;
    if (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        for (char *c = strtok(line, ","); c; c = strtok(NULL, ","), ncol++) {
            if (!strcmp(c, "epoch"))
                col[NCURVES] = ncol;
            for (int k = 0; k < NCURVES; k++)
                if (!strcmp(c, curve_metrics[k]))
                    col[k] = ncol;
        }
    }
    int cap = 0;
    while (col[NCURVES] >= 0 && s->n < MAX_ROWS && fgets(line, sizeof line, f)) {
        if (s->n == cap) {
            int nc = cap ? cap * 2 : 64;
            bool ok = true;
            double *p = realloc(s->epoch, (size_t)nc * sizeof *p);
            ok = p != NULL;
            if (p)
                s->epoch = p;
            for (int k = 0; ok && k < NCURVES; k++) {
                p = realloc(s->v[k], (size_t)nc * sizeof *p);
                ok = p != NULL;
                if (p)
                    s->v[k] = p;
            }
            if (!ok)
                break;
            cap = nc;
        }
        double vals[64];
        int c = 0;
        for (char *p = line; p && c < 64; c++) {
            char *comma = strchr(p, ','), *end;
            if (comma)
                *comma = '\0';
            vals[c] = strtod(p, &end);
            if (end == p || !isfinite(vals[c]))
                vals[c] = NAN;
            p = comma ? comma + 1 : NULL;
        }
        s->epoch[s->n] = col[NCURVES] < c ? vals[col[NCURVES]] : NAN;
        for (int k = 0; k < NCURVES; k++)
            s->v[k][s->n] = col[k] >= 0 && col[k] < c ? vals[col[k]] : NAN;
        if (!isnan(s->epoch[s->n]))
            s->n++;
    }
    fclose(f);
}

static void free_run(report_run *r)
{
    free(r->id);
    json_decref(r->doc);
    free(r->s.epoch);
    for (int k = 0; k < NCURVES; k++)
        free(r->s.v[k]);
}

static void esc(FILE *f, const char *s)
{
    kl__report_esc(f, s);
}

/* The run's value of a param as text (numbers %g), "-" when it has none. */
static void param_text(const report_run *r, const char *key, char *buf, size_t n)
{
    json_t *v = json_object_get(json_object_get(r->doc, "params"), key);
    if (!v)
        snprintf(buf, n, "-");
    else if (json_is_string(v))
        snprintf(buf, n, "%s", json_string_value(v));
    else if (json_is_number(v))
        snprintf(buf, n, "%.6g", json_number_value(v));
    else
        snprintf(buf, n, "%s", json_is_true(v) ? "true" : json_is_false(v) ? "false" : "null");
}

/* The params whose values differ between the runs, sorted (a JSON array of keys). */
static json_t *differing(const report_run *r, int n)
{
    json_t *all = json_object(), *out = json_array();
    for (int i = 0; i < n; i++) {
        const char *k;
        json_t *v;
        json_object_foreach(json_object_get(r[i].doc, "params"), k, v)
            json_object_set_new(all, k, json_true());
    }
    const char *k;
    json_t *v;
    json_object_del(all, "name"); /* it names the run: no parameter of the training */
    json_object_foreach(all, k, v)
    {
        char a[256], b[256];
        param_text(&r[0], k, a, sizeof a);
        for (int i = 1; i < n; i++) {
            param_text(&r[i], k, b, sizeof b);
            if (strcmp(a, b)) {
                json_array_append_new(out, json_string(k));
                break;
            }
        }
    }
    json_decref(all);
    return out;
}

static double metric_of(const report_run *r, const char *which, const char *name)
{
    json_t *v = json_object_get(json_object_get(json_object_get(r->doc, "metrics"), which), name);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

/* One plot of metric k against the epoch, a line per run. */
static void curves_plot(FILE *f, const report_run *r, int n, int k)
{
    double lo = INFINITY, hi = -INFINITY, emax = 1;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < r[i].s.n; j++)
            if (!isnan(r[i].s.v[k][j])) {
                lo = fmin(lo, r[i].s.v[k][j]);
                hi = fmax(hi, r[i].s.v[k][j]);
                emax = fmax(emax, r[i].s.epoch[j]);
            }
    if (!(lo <= hi))
        return;
    const double W = 760, H = 300, L = 60, R = 200, T = 20, B = 40;
    kl__scale x = kl__scale_new(1, emax, false, true, L, W - R);
    kl__scale y = kl__scale_new(lo, hi, false, true, H - B, T);
    x.integer = true;
    char id[64], label[96];
    snprintf(id, sizeof id, "curves-%s", curve_metrics[k]);
    snprintf(label, sizeof label, "%s by epoch, one line per run", curve_metrics[k]);
    fprintf(f, "<h3>%s</h3>\n", curve_metrics[k]);
    kl__plot_svg_open(f, id, W, H, label);
    kl__plot_y_axis(f, &y, L, W - R, true);
    kl__plot_x_axis(f, &x, H - B, T);
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">epoch</text>\n", (L + W - R) / 2,
            H - 6);
    for (int i = 0; i < n; i++) {
        fprintf(f, "<polyline class=\"curve\" data-run=\"");
        esc(f, r[i].id);
        fprintf(f, "\" stroke=\"%s\" points=\"", r[i].color);
        for (int j = 0; j < r[i].s.n; j++)
            if (!isnan(r[i].s.v[k][j]))
                fprintf(f, "%.1f,%.1f ", kl__scale_at(&x, r[i].s.epoch[j]),
                        kl__scale_at(&y, r[i].s.v[k][j]));
        fprintf(f, "\"><title>");
        esc(f, r[i].id);
        fprintf(f, "</title></polyline>\n");
    }
    for (int i = 0; i < n; i++) { /* the legend */
        double ly = T + 10 + 16 * i;
        fprintf(f,
                "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"%s\" "
                "stroke-width=\"2.5\"/><text x=\"%.0f\" y=\"%.0f\" dy=\".32em\">",
                W - R + 12, ly, W - R + 32, ly, r[i].color, W - R + 38, ly);
        esc(f, r[i].id);
        fprintf(f, "</text>\n");
    }
    fprintf(f, "</svg></div>\n");
}

/* An axis of the parallel plot: a param (numbers on a scale, text as evenly spaced values) or,
 * last, the metric. */
typedef struct pc_axis {
    const char *key;
    bool numeric;
    kl__scale s;
    json_t *cats; /* text values -> position */
    double x;
} pc_axis;

static double axis_y(const pc_axis *a, const report_run *r, const char *metric)
{
    if (!a->key) {
        double v = metric_of(r, "final", metric);
        return isnan(v) ? NAN : kl__scale_at(&a->s, v);
    }
    json_t *v = json_object_get(json_object_get(r->doc, "params"), a->key);
    if (a->numeric)
        return json_is_number(v) ? kl__scale_at(&a->s, json_number_value(v)) : NAN;
    char buf[256];
    param_text(r, a->key, buf, sizeof buf);
    json_t *pos = json_object_get(a->cats, buf);
    return pos ? kl__scale_at(&a->s, json_number_value(pos)) : NAN;
}

static void fit_axis(pc_axis *a, const report_run *r, int n, const char *metric, double top,
                     double bottom)
{
    double lo = INFINITY, hi = -INFINITY;
    a->numeric = true;
    for (int i = 0; i < n; i++) {
        double v = NAN;
        if (!a->key) {
            v = metric_of(&r[i], "final", metric);
        } else {
            json_t *j = json_object_get(json_object_get(r[i].doc, "params"), a->key);
            if (j && !json_is_number(j))
                a->numeric = false;
            v = json_is_number(j) ? json_number_value(j) : NAN;
        }
        if (!isnan(v)) {
            lo = fmin(lo, v);
            hi = fmax(hi, v);
        }
    }
    if (a->numeric) {
        a->s = lo <= hi ? kl__scale_new(lo, hi, true, true, bottom, top)
                        : kl__scale_new(0, 1, false, false, bottom, top);
        return;
    }
    a->cats = json_object();
    int k = 0;
    for (int i = 0; i < n; i++) {
        char buf[256];
        param_text(&r[i], a->key, buf, sizeof buf);
        if (!json_object_get(a->cats, buf))
            json_object_set_new(a->cats, buf, json_integer(k++));
    }
    a->s = kl__scale_new(0, k > 1 ? k - 1 : 1, false, false, bottom, top);
}

static void draw_axis(FILE *f, pc_axis *a, const char *metric, double top, double bottom)
{
    fprintf(f, "<g class=\"pc-axis\">");
    if (a->numeric) {
        kl__plot_y_axis(f, &a->s, a->x, a->x, false);
    } else {
        fprintf(f, "<line class=\"axis\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", a->x,
                top, a->x, bottom);
        const char *k;
        json_t *v;
        json_object_foreach(a->cats, k, v)
        {
            fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" dy=\".32em\" text-anchor=\"end\">", a->x - 6,
                    kl__scale_at(&a->s, json_number_value(v)));
            esc(f, k);
            fprintf(f, "</text>");
        }
    }
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", a->x, top - 10);
    esc(f, a->key ? a->key : metric);
    fprintf(f, "</text></g>\n");
}

/* Parallel coordinates: one axis per differing param and the metric last, one line per run. */
static void parallel_plot(FILE *f, const report_run *r, int n, json_t *keys, const char *metric)
{
    int na = (int)json_array_size(keys) + 1;
    pc_axis *ax = calloc((size_t)na, sizeof *ax);
    if (!ax)
        return;
    const double T = 40, B = 30, H = 340, gap = 120, L = 90;
    double W = L + gap * (na - 1) + 90;
    for (int a = 0; a < na; a++) {
        ax[a].key = a < na - 1 ? json_string_value(json_array_get(keys, (size_t)a)) : NULL;
        ax[a].x = L + gap * a;
        fit_axis(&ax[a], r, n, metric, T, H - B);
    }
    char label[160];
    snprintf(label, sizeof label, "the parameters that differ against the final %s", metric);
    kl__plot_svg_open(f, "parallel", W, H, label);
    for (int i = 0; i < n; i++) {
        fprintf(f, "<polyline class=\"pc\" data-run=\"");
        esc(f, r[i].id);
        fprintf(f, "\" stroke=\"%s\" points=\"", r[i].color);
        for (int a = 0; a < na; a++) {
            double y = axis_y(&ax[a], &r[i], metric);
            if (!isnan(y))
                fprintf(f, "%.1f,%.1f ", ax[a].x, y);
        }
        fprintf(f, "\"><title>");
        esc(f, r[i].id);
        fprintf(f, "</title></polyline>\n");
    }
    for (int a = 0; a < na; a++)
        draw_axis(f, &ax[a], metric, T, H - B);
    fprintf(f, "</svg></div>\n");
    for (int a = 0; a < na; a++)
        json_decref(ax[a].cats);
    free(ax);
}

static void cell_row(FILE *f, const char *label, const char *cls, char cells[][64], int n)
{
    fprintf(f, "<tr%s%s%s><th>", cls ? " class=\"" : "", cls ? cls : "", cls ? "\"" : "");
    esc(f, label);
    fprintf(f, "</th>");
    for (int i = 0; i < n; i++) {
        fprintf(f, "<td class=\"n\">");
        esc(f, cells[i]);
        fprintf(f, "</td>");
    }
    fprintf(f, "</tr>\n");
}

/* The differing params, then final and best metrics, then provenance. */
static void table(FILE *f, const report_run *r, int n, json_t *keys)
{
    char(*cells)[64] = calloc((size_t)n, sizeof *cells);
    if (!cells)
        return;
    fprintf(f, "<table id=\"params\"><tr><th></th>");
    for (int i = 0; i < n; i++) {
        fprintf(f, "<th><span style=\"color:%s\">&#9632;</span> ", r[i].color);
        esc(f, r[i].id);
        fprintf(f, "</th>");
    }
    fprintf(f, "</tr>\n");
    size_t k;
    json_t *key;
    json_array_foreach(keys, k, key)
    {
        for (int i = 0; i < n; i++)
            param_text(&r[i], json_string_value(key), cells[i], sizeof cells[i]);
        cell_row(f, json_string_value(key), "param", cells, n);
    }
    for (int m = 0; m < NCURVES; m++)
        for (int b = 0; b < 2; b++) {
            bool any = false;
            for (int i = 0; i < n; i++) {
                double v = metric_of(&r[i], b ? "best" : "final", curve_metrics[m]);
                any |= !isnan(v);
                snprintf(cells[i], sizeof cells[i], isnan(v) ? "-" : "%.6g", v);
            }
            char label[64];
            snprintf(label, sizeof label, "%s (%s)", curve_metrics[m], b ? "best" : "final");
            if (any)
                cell_row(f, label, "metric", cells, n);
        }
    for (int i = 0; i < n; i++) {
        json_t *g = json_object_get(json_object_get(r[i].doc, "provenance"), "git");
        const char *c = json_string_value(json_object_get(g, "commit"));
        snprintf(cells[i], sizeof cells[i], "%.12s%s", c ? c : "none",
                 json_is_true(json_object_get(g, "dirty")) ? "+dirty" : "");
    }
    cell_row(f, "git commit", NULL, cells, n);
    for (int i = 0; i < n; i++) {
        const char *s = json_string_value(json_object_get(r[i].doc, "status"));
        snprintf(cells[i], sizeof cells[i], "%s", s ? s : "-");
    }
    cell_row(f, "status", NULL, cells, n);
    fprintf(f, "</table>\n");
    free(cells);
}

static void page(FILE *f, report_run *r, int n, const char *metric)
{
    json_t *keys = differing(r, n);
    fprintf(f,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>"
            "kiln runs report</title>\n<style>\n%s"
            "th{font-weight:600}tr.metric th{font-weight:400}\n</style>\n</head>\n<body>\n"
            "<h1>Runs compared</h1>\n<p class=\"note\">",
            kl__plot_style);
    for (int i = 0; i < n; i++) {
        fprintf(f, "%s<code>", i ? ", " : "");
        esc(f, r[i].id);
        fprintf(f, "</code>");
    }
    fprintf(f, ": %zu parameter%s differ%s.</p>\n<h2>Learning curves</h2>\n", json_array_size(keys),
            json_array_size(keys) == 1 ? "" : "s", json_array_size(keys) == 1 ? "s" : "");
    for (int k = 0; k < NCURVES; k++)
        curves_plot(f, r, n, k);
    fprintf(f, "<h2>Parameters against the final ");
    esc(f, metric);
    fprintf(f, "</h2>\n");
    parallel_plot(f, r, n, keys, metric);
    fprintf(f, "<h2>Differing parameters, metrics and provenance</h2>\n");
    table(f, r, n, keys);
    fprintf(f, "</body>\n</html>\n");
    json_decref(keys);
}

int kl__cli_runs_report(const char *root, int argc, char **argv)
{
    kl_runs_index *ix = NULL;
    const char *out = NULL, *metric = NULL;
    int n = 0, rc = 0;
    report_run *r = calloc((size_t)argc, sizeof *r);
    if (!r)
        return 1;
    for (int i = 1; i < argc && rc == 0; i++) {
        if (!strcmp(argv[i], "-o") || !strcmp(argv[i], "--metric")) {
            if (i + 1 >= argc)
                rc = kl__cli_usage_error("runs", "report: %s needs a value", argv[i]);
            else if (!strcmp(argv[i], "-o"))
                out = argv[++i];
            else
                metric = argv[++i];
        } else if (argv[i][0] == '-') {
            rc = kl__cli_usage_error("runs", "report: unknown option '%s'", argv[i]);
        } else {
            n++;
        }
    }
    if (rc == 0 && !out)
        rc = kl__cli_usage_error("runs", "report: where to? -o compare.html");
    if (rc == 0 && n < 1)
        rc = kl__cli_usage_error("runs", "report needs a RUN or more");
    if (rc == 0 && !(ix = kl__cli_runs_open(root)))
        rc = 1;
    n = 0;
    for (int i = 1; i < argc && rc == 0; i++) {
        if (!strcmp(argv[i], "-o") || !strcmp(argv[i], "--metric")) {
            i++;
        } else {
            r[n].doc = kl__cli_run_load(ix, argv[i], &r[n].id);
            rc = r[n].doc ? 0 : 1;
            if (r[n].doc)
                read_curves(kl_runs_index_root(ix), r[n].id, &r[n].s);
            n++;
        }
    }
    if (rc == 0 && !metric) /* the first of the curve metrics some run has */
        for (int k = 0; k < NCURVES && !metric; k++)
            for (int i = 0; i < n && !metric; i++)
                if (!isnan(metric_of(&r[i], "final", curve_metrics[k])))
                    metric = curve_metrics[k];
    for (int i = 0; i < n; i++)
        kl__plot_color(n > 1 ? (double)i / (n - 1) : 0, r[i].color);
    FILE *f = rc == 0 ? fopen(out, "w") : NULL;
    if (rc == 0 && !f) {
        fprintf(stderr, "kiln runs: cannot write %s\n", out);
        rc = 1;
    }
    if (f) {
        page(f, r, n, metric ? metric : "val_loss");
        if (fclose(f) != 0) {
            fprintf(stderr, "kiln runs: cannot write %s\n", out);
            rc = 1;
        } else {
            printf("wrote %s: %d run%s\n", out, n, n == 1 ? "" : "s");
        }
    }
    for (int i = 0; i < n; i++)
        free_run(&r[i]);
    free(r);
    kl_runs_index_close(ix);
    return rc;
}
