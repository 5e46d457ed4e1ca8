/* The plotting shared by kiln's HTML pages (kiln tune report, tune/report*.c, and kiln runs
 * report, cli/runs_report.c): scales (linear, or log10 when every value is positive and they span
 * more than KL__PLOT_MAX_LINEAR, with ticks at 1, 2 or 5 times a power of ten), the viridis
 * colour ramp, axes, an inline <svg>'s opening tag, the pages' style sheet and HTML escaping. */
#ifndef KILN_TUNE_PLOT_H
#define KILN_TUNE_PLOT_H

#include <stdbool.h>
#include <stdio.h>

#define KL__PLOT_MAX_LINEAR 20.0 /* max / min beyond which a positive axis is drawn log */
enum { KL__PLOT_MAX_TICKS = 64 };

typedef struct kl__scale {
    double lo, hi; /* the domain, lo < hi (powers of ten when log) */
    bool log, integer;
    double p0, p1; /* the pixels of lo and hi */
} kl__scale;

/* A scale over [lo, hi] drawn from pixel p0 to p1; nice: widened to tick values (decades when
 * log); allow_log: log10 when the values are positive and span more than KL__PLOT_MAX_LINEAR. */
kl__scale kl__scale_new(double lo, double hi, bool allow_log, bool nice, double p0, double p1);
/* Where v falls, 0 at lo and 1 at hi. */
double kl__scale_unit(const kl__scale *s, double v);
/* The pixel of v; values the domain cannot hold (overflowing spans) go to its low end. */
double kl__scale_at(const kl__scale *s, double v);
/* The tick values into out (KL__PLOT_MAX_TICKS at most); returns how many. */
int kl__scale_ticks(const kl__scale *s, double *out);

/* The colour of unit position u (0: the darkest) on viridis, cut before its palest yellow. */
void kl__plot_color(double u, char out[8]);
/* A vertical axis at x0 with its ticks (and grid lines to x1 when grid). */
void kl__plot_y_axis(FILE *f, const kl__scale *y, double x0, double x1, bool grid);
/* A horizontal axis at y0 with its ticks and grid lines up to y1. */
void kl__plot_x_axis(FILE *f, const kl__scale *x, double y0, double y1);
/* Opens <div class="scroll"><svg id=id ...> of w x h pixels labelled label (plain text). */
void kl__plot_svg_open(FILE *f, const char *id, double w, double h, const char *label);

/* The style sheet of the pages (a <style> element's content). */
extern const char kl__plot_style[];

/* Writes s escaped for HTML and XML text and attributes (& < > " ', control characters
 * dropped). */
void kl__report_esc(FILE *f, const char *s);

#endif
