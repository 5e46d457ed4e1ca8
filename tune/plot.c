/* The plotting shared by kiln's HTML pages (tune/plot.h): scales and their ticks, the viridis
 * ramp, axes, the <svg> opening tag and the style sheet. Each page draws its own plots with
 * them: tune/report_plot.c (a sweep), cli/runs_report.c (runs side by side). */
#include <math.h>
#include <stdio.h>

#include "tune/plot.h"

const char kl__plot_style[] =
    "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;"
    "color:#222;max-width:1200px;margin:1.5em auto;padding:0 1em}\n"
    "h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em}\n"
    "table{border-collapse:collapse;font-size:14px}\n"
    "th,td{padding:3px 10px;text-align:left;border-bottom:1px solid #e3e3e3;vertical-align:top}\n"
    "td.n{text-align:right;font-variant-numeric:tabular-nums}\n"
    "tr.best td{background:#fde3e1}\n"
    ".note{color:#555;font-size:13px}\n"
    ".scroll{overflow-x:auto}\n"
    "code{font-size:13px}\n"
    "svg{display:block;font-family:inherit;font-size:11px}\n"
    "svg .grid{stroke:#ececec}\n"
    "svg .axis{stroke:#555;fill:none}\n"
    "svg text{fill:#333;paint-order:stroke;stroke:#fff;stroke-width:3px;stroke-linejoin:round}\n"
    "svg .curve,svg .pc{fill:none;stroke-width:1.2;stroke-opacity:.55}\n"
    "svg .curve:hover,svg .pc:hover{stroke-width:3;stroke-opacity:1}\n"
    "svg .best{stroke:#d62728;stroke-width:2.5;stroke-opacity:1}\n"
    "svg .failed{stroke:#999;stroke-dasharray:3 3}\n"
    "svg .end{stroke:none}\n"
    "svg .bar{fill:#4c78a8}svg .bar:hover{fill:#2b5a8a}\n";

static double nice_step(double span, int n)
{
    double raw = span / n, mag = pow(10, floor(log10(raw))), f = raw / mag;
    return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}

/* A scale over [lo, hi]; nice: widened to tick values (decades when log). */
kl__scale kl__scale_new(double lo, double hi, bool allow_log, bool nice, double p0, double p1)
{
    kl__scale s = {.lo = lo, .hi = hi, .p0 = p0, .p1 = p1};
    s.log = allow_log && lo > 0 && hi / lo > KL__PLOT_MAX_LINEAR;
    if (s.log) {
        if (nice) {
            s.lo = pow(10, floor(log10(lo) + 1e-9));
            s.hi = pow(10, ceil(log10(hi) - 1e-9));
        }
        return s;
    }
    if (!(hi > lo)) { /* one value: a band around it */
        double d = lo != 0 ? fabs(lo) * 0.1 : 1;
        s.lo = lo - d;
        s.hi = hi + d;
    }
    if (nice && isfinite(s.hi - s.lo)) {
        double step = nice_step(s.hi - s.lo, 5);
        s.lo = floor(s.lo / step + 1e-9) * step;
        s.hi = ceil(s.hi / step - 1e-9) * step;
    }
    return s;
}

/* Where v falls, 0 at lo and 1 at hi. */
double kl__scale_unit(const kl__scale *s, double v)
{
    if (s->log)
        return (log10(v) - log10(s->lo)) / (log10(s->hi) - log10(s->lo));
    return s->hi > s->lo ? (v - s->lo) / (s->hi - s->lo) : 0;
}

/* The pixel of v; values the domain cannot hold (overflowing spans) go to its low end. */
double kl__scale_at(const kl__scale *s, double v)
{
    double u = kl__scale_unit(s, v);
    return s->p0 + (isfinite(u) ? u : 0) * (s->p1 - s->p0);
}

int kl__scale_ticks(const kl__scale *s, double *out)
{
    int n = 0;
    if (s->log) {
        int d0 = (int)lround(floor(log10(s->lo) + 1e-9)),
            d1 = (int)lround(ceil(log10(s->hi) - 1e-9));
        int every = (d1 - d0 + 7) / 8;
        for (int d = d0; d <= d1 && n < KL__PLOT_MAX_TICKS - 3; d += every ? every : 1)
            for (int m = 1; m <= 5; m += m == 1 ? 1 : 3) { /* 1, 2, 5 */
                double v = m * pow(10, d);
                if ((m == 1 || d1 - d0 <= 2) && v >= s->lo * (1 - 1e-9) && v <= s->hi * (1 + 1e-9))
                    out[n++] = v;
            }
        return n;
    }
    double step = nice_step(s->hi - s->lo, 5);
    if (s->integer)
        step = step < 1 ? 1 : round(step);
    for (double k = ceil(s->lo / step - 1e-9);
         k * step <= s->hi + 1e-9 * step && n < KL__PLOT_MAX_TICKS; k++)
        out[n++] = k * step == 0 ? 0 : k * step; /* no -0 */
    return n;
}

/* The colour of unit position u (0: the best) on viridis, cut before its palest yellow. */
void kl__plot_color(double u, char out[8])
{
    const unsigned char stops[][3] = {{0x44, 0x01, 0x54}, {0x47, 0x2d, 0x7b}, {0x3b, 0x52, 0x8b},
                                      {0x2c, 0x72, 0x8e}, {0x21, 0x91, 0x8c}, {0x28, 0xae, 0x80},
                                      {0x5e, 0xc9, 0x62}, {0xad, 0xdc, 0x30}, {0xfd, 0xe7, 0x25}};
    double x = (isnan(u) ? 1 : fmin(fmax(u, 0), 1)) * 0.9 * 8;
    int i = (int)x < 8 ? (int)x : 7;
    double f = x - i;
    int c[3];
    for (int k = 0; k < 3; k++)
        c[k] = (int)lround(stops[i][k] + f * (stops[i + 1][k] - stops[i][k]));
    snprintf(out, 8, "#%02x%02x%02x", c[0], c[1], c[2]);
}

void kl__plot_y_axis(FILE *f, const kl__scale *y, double x0, double x1, bool grid)
{
    double v[KL__PLOT_MAX_TICKS];
    int n = kl__scale_ticks(y, v);
    for (int i = 0; i < n; i++) {
        double py = kl__scale_at(y, v[i]);
        if (grid)
            fprintf(f, "<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", x0,
                    py, x1, py);
        fprintf(f,
                "<line class=\"axis\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
                "<text x=\"%.1f\" y=\"%.1f\" dy=\".32em\" text-anchor=\"end\">%g</text>\n",
                x0 - 4, py, x0, py, x0 - 6, py, v[i]);
    }
    fprintf(f, "<line class=\"axis\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", x0,
            y->p0, x0, y->p1);
}

void kl__plot_x_axis(FILE *f, const kl__scale *x, double y0, double y1)
{
    double v[KL__PLOT_MAX_TICKS];
    int n = kl__scale_ticks(x, v);
    for (int i = 0; i < n; i++) {
        double px = kl__scale_at(x, v[i]);
        fprintf(f,
                "<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
                "<line class=\"axis\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
                "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n",
                px, y0, px, y1, px, y0, px, y0 + 4, px, y0 + 16, v[i]);
    }
    fprintf(f, "<line class=\"axis\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", x->p0,
            y0, x->p1, y0);
}

void kl__plot_svg_open(FILE *f, const char *id, double w, double h, const char *label)
{
    fprintf(f,
            "<div class=\"scroll\"><svg xmlns=\"http://www.w3.org/2000/svg\" id=\"%s\" "
            "width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" role=\"img\" "
            "aria-label=\"%s\">\n",
            id, w, h, w, h, label);
}

void kl__report_esc(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        switch (c) {
        case '&':
            fputs("&amp;", f);
            break;
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        case '\'':
            fputs("&#39;", f);
            break;
        default:
            /* XML 1.0 allows no other control characters, not even as references. */
            if (c >= 0x20 || c == '\t' || c == '\n')
                fputc(c, f);
            else if (c != '\r')
                fputc('?', f);
        }
    }
}
