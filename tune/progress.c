/* What a sweep shows while it runs. On a terminal, a table redrawn in place (the best trials and
 * the running ones: trial, rung, t, metric, best, state, hyperparameters) under a line with the
 * counts per state and the best so far; elsewhere, plain lines for every decision and a summary
 * line every few seconds. The coordinator calls kl__tune_show and kl__tune_line. */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/clock.h"
#include "tune/tune_impl.h"

enum { TABLE_ROWS = 12 };

static void clear_table(kl__tuner *tu)
{
    if (tu->tty && tu->drawn_lines > 0)
        fprintf(stderr, "\033[%dF\033[J", tu->drawn_lines);
    tu->drawn_lines = 0;
}

/* The counts per state and the best so far, in one line. */
static void summary_line(const kl__tuner *tu, char *buf, size_t size)
{
    int64_t n[KL_TRIAL_FAILED + 1] = {0};
    for (int64_t i = 0; i < tu->ntrials; i++)
        n[kl_sched_state(tu->sched, i)]++;
    int64_t best = kl_sched_best_trial(tu->sched);
    double el = kl_now() - tu->t0;
    int at = snprintf(buf, size,
                      "[%02d:%02d:%02d] %lld/%lld trials: %lld running, %lld paused, %lld "
                      "stopped, %lld done, %lld failed",
                      (int)(el / 3600), (int)fmod(el / 60, 60), (int)fmod(el, 60),
                      (long long)kl_sched_created(tu->sched), (long long)tu->ntrials,
                      (long long)n[KL_TRIAL_RUNNING], (long long)n[KL_TRIAL_PAUSED],
                      (long long)n[KL_TRIAL_STOPPED], (long long)n[KL_TRIAL_DONE],
                      (long long)n[KL_TRIAL_FAILED]);
    if (best >= 0 && at > 0 && (size_t)at < size)
        snprintf(buf + at, size - (size_t)at, "; best: trial %lld, %s %.4f", (long long)best,
                 tu->sw->metric, kl_sched_best(tu->sched, best));
}

/* The trial's hyperparameters, short: "lr=0.0031 batch_size=64" (the last part of each key). */
static void config_str(const kl__trial *t, char *buf, size_t size)
{
    size_t at = 0;
    buf[0] = '\0';
    for (int i = 0; t->ov && i < t->nov && at < size; i++) {
        const char *kv = t->ov[i], *eq = strchr(kv, '='), *dot = kv;
        for (const char *p = kv; eq && p < eq; p++)
            if (*p == '.')
                dot = p + 1;
        at += (size_t)snprintf(buf + at, size - at, "%s%s", i ? " " : "", dot);
    }
}

/* Rows worth a look: the running trials first, then the best by their best value. */
static int row_order(const kl__tuner *tu, int64_t *rows, int max)
{
    int n = 0;
    for (int64_t i = 0; i < tu->ntrials && n < max; i++)
        if (kl_sched_state(tu->sched, i) == KL_TRIAL_RUNNING)
            rows[n++] = i;
    int running = n;
    while (n < max) {
        int64_t pick = -1;
        double pv = 0;
        for (int64_t i = 0; i < tu->ntrials; i++) {
            double v = kl_sched_best(tu->sched, i);
            kl_trial_state st = kl_sched_state(tu->sched, i);
            if (st == KL_TRIAL_PENDING || st == KL_TRIAL_RUNNING || isnan(v))
                continue;
            bool taken = false;
            for (int k = running; k < n && !taken; k++)
                taken = rows[k] == i;
            if (taken)
                continue;
            if (pick < 0 || (tu->sw->maximize ? v > pv : v < pv)) {
                pick = i;
                pv = v;
            }
        }
        if (pick < 0)
            break;
        rows[n++] = pick;
    }
    return n;
}

/* A table cell: the number, or "-" for none yet (a rung below 0, t 0, a value that is NAN). */
static const char *cell_int(char *buf, size_t size, int v, int none)
{
    if (v <= none)
        return "-";
    snprintf(buf, size, "%d", v);
    return buf;
}

static const char *cell_num(char *buf, size_t size, double v)
{
    if (isnan(v))
        return "-";
    snprintf(buf, size, "%.4f", v);
    return buf;
}

static void draw(kl__tuner *tu)
{
    char line[512], cfg[256];
    summary_line(tu, line, sizeof line);
    clear_table(tu);
    fprintf(stderr, "%s\n", line);
    fprintf(stderr, "  %-6s %-4s %-4s %-12s %-12s %-9s %s\n", "trial", "rung", "t", tu->sw->metric,
            "best", "state", "config");
    int64_t rows[TABLE_ROWS];
    int n = row_order(tu, rows, TABLE_ROWS);
    for (int i = 0; i < n; i++) {
        int64_t t = rows[i];
        char rung[16], at[16], last[32], best[32];
        config_str(&tu->trials[t], cfg, sizeof cfg);
        fprintf(stderr, "  %-6lld %-4s %-4s %-12s %-12s %-9s %.60s\n", (long long)t,
                cell_int(rung, sizeof rung, kl_sched_rung(tu->sched, t), -1),
                cell_int(at, sizeof at, kl_sched_last_t(tu->sched, t), 0),
                cell_num(last, sizeof last, kl_sched_last(tu->sched, t)),
                cell_num(best, sizeof best, kl_sched_best(tu->sched, t)),
                kl_trial_state_name(kl_sched_state(tu->sched, t)), cfg);
    }
    fflush(stderr);
    tu->drawn_lines = n + 2;
}

void kl__tune_show(kl__tuner *tu, const char *event, bool force)
{
    (void)event;
    if (!tu->sched || tu->o->quiet)
        return;
    double now = kl_now();
    if (tu->tty) {
        if (force || now - tu->last_draw >= 0.2) {
            draw(tu);
            tu->last_draw = now;
        }
    } else if (now - tu->last_draw >= 10.0) { /* plain output: a summary now and then */
        char line[512];
        summary_line(tu, line, sizeof line);
        fprintf(stderr, "%s\n", line);
        tu->last_draw = now;
    }
}

void kl__tune_line(kl__tuner *tu, const char *fmt, ...)
{
    if (tu->o->quiet)
        return;
    clear_table(tu);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (tu->tty && tu->sched)
        draw(tu);
}
