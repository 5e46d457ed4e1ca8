/* kiln tune report (include/kiln/tune_report.h): reads a sweep folder's journal into one record
 * per trial (its state, its results, its hyperparameters), then writes report.html: the
 * summary, the plots (tune/report_plot.c) and the table of trials. The page is polyglot
 * HTML5/XML, so that xmllint can check it, and every string from the journal is escaped. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "kiln/journal.h"
#include "kiln/tune_report.h"
#include "kiln/version.h"
#include "tune/plot.h"
#include "tune/report_impl.h"

/* More milestones than this (the median stopping rule stops at any epoch) are drawn as this
 * many evenly spaced ones. */
enum { MAX_RUNGS = 40 };

static const char *const state_names[KL__REPORT_NSTATES] = {
    "pending", "running", "paused", "stopped", "done", "interrupted", "diverged", "failed"};

const char *kl__report_state_name(kl__report_state s)
{
    return state_names[s];
}

void kl__report_params(FILE *f, const kl__report_trial *t)
{
    const char *key;
    json_t *v;
    int i = 0;
    json_object_foreach(t->overrides, key, v)
    {
        fputs(i++ ? ", " : "", f);
        kl__report_esc(f, key);
        fputc('=', f);
        kl__report_esc(f, json_is_string(v) ? json_string_value(v) : "?");
    }
}

/* ---- the journal, read into trials ---- */

static kl_status oom(kl_error *err)
{
    return kl_error_set(err, KL_ENOMEM, "out of memory");
}

static int64_t int_member(const json_t *ev, const char *key, int64_t dflt)
{
    json_t *v = json_object_get(ev, key);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : dflt;
}

/* The trial an event names, created (not started) when it is new. */
static kl_status trial_of(kl__report *rp, int64_t *cap, const json_t *ev, size_t line,
                          kl__report_trial **out, kl_error *err)
{
    const char *kind = json_string_value(json_object_get(ev, "event"));
    int64_t id = int_member(ev, "trial", -1);
    if (id < 0 || id >= rp->planned)
        return kl_error_set(err, KL_EFORMAT,
                            "%s/journal.jsonl:%zu: the %s event names trial %lld, but the sweep "
                            "has trials 0 to %lld; is the journal damaged?",
                            rp->dir, line, kind, (long long)id, (long long)rp->planned - 1);
    if (id >= *cap) {
        int64_t n = *cap ? *cap : 64;
        while (n <= id)
            n *= 2;
        kl__report_trial *t = realloc(rp->trials, (size_t)n * sizeof *t);
        if (!t)
            return oom(err);
        rp->trials = t;
        *cap = n;
    }
    for (; rp->ntrials <= id; rp->ntrials++)
        rp->trials[rp->ntrials] = (kl__report_trial){
            .id = rp->ntrials, .state = KL__REPORT_PENDING, .last = NAN, .best = NAN};
    *out = &rp->trials[id];
    return KL_OK;
}

static kl_status add_milestone(kl__report *rp, int *cap, int m)
{
    if (m <= 0)
        return KL_OK;
    if (rp->nmilestones == *cap) {
        int n = *cap ? 2 * *cap : 16;
        int *p = realloc(rp->milestones, (size_t)n * sizeof *p);
        if (!p)
            return KL_ENOMEM;
        rp->milestones = p;
        *cap = n;
    }
    rp->milestones[rp->nmilestones++] = m;
    return KL_OK;
}

static kl_status add_point(kl__report_trial *t, int at, double v, bool maximize)
{
    if (t->npts == t->cap) {
        int n = t->cap ? 2 * t->cap : 8;
        kl__report_point *p = realloc(t->pts, (size_t)n * sizeof *p);
        if (!p)
            return KL_ENOMEM;
        t->pts = p;
        t->cap = n;
    }
    t->pts[t->npts++] = (kl__report_point){at, v};
    if (isnan(t->best) || (maximize ? v > t->best : v < t->best))
        t->best = v;
    return KL_OK;
}

static kl__report_state decision_state(const char *d)
{
    if (!d || !strcmp(d, "continue"))
        return KL__REPORT_RUNNING;
    if (!strcmp(d, "pause"))
        return KL__REPORT_PAUSED;
    if (!strcmp(d, "stop"))
        return KL__REPORT_STOPPED;
    return KL__REPORT_DONE;
}

/* A result: a point when its value is finite; a result already seen (a resumed trial training
 * an epoch again) changes nothing. */
static kl_status on_result(kl__report *rp, kl__report_trial *t, const json_t *ev, int *mcap)
{
    int at = (int)int_member(ev, "t", 0);
    if (at <= t->last_t)
        return KL_OK;
    json_t *jv = json_object_get(ev, "value");
    double v = json_is_number(jv) ? json_number_value(jv) : NAN;
    const char *d = json_string_value(json_object_get(ev, "decision"));
    t->last_t = at;
    t->last = isfinite(v) ? v : NAN;
    t->state = decision_state(d);
    if (at > rp->max_t)
        rp->max_t = at;
    if ((t->state == KL__REPORT_PAUSED || t->state == KL__REPORT_STOPPED) &&
        add_milestone(rp, mcap, at) != KL_OK)
        return KL_ENOMEM;
    if (!isfinite(v))
        return KL_OK;
    rp->nresults++;
    return add_point(t, at, v, rp->maximize);
}

static kl_status on_started(kl__report *rp, kl__report_trial *t, const json_t *ev, int *mcap)
{
    int until = (int)int_member(ev, "until_t", 0);
    json_t *ov = json_object_get(ev, "overrides");
    t->started = true;
    t->state = KL__REPORT_RUNNING;
    if (json_is_object(ov))
        t->overrides = ov;
    if (until > rp->max_t)
        rp->max_t = until;
    return add_milestone(rp, mcap, until);
}

static kl_status on_sweep(kl__report *rp, const json_t *ev, kl_error *err)
{
    rp->sweep = json_string_value(json_object_get(ev, "sweep"));
    rp->metric = json_string_value(json_object_get(ev, "metric"));
    rp->maximize = json_is_true(json_object_get(ev, "maximize"));
    rp->planned = int_member(ev, "trials", 0);
    rp->max_t = (int)int_member(ev, "max_t", 0);
    if (!rp->metric || rp->planned <= 0)
        return kl_error_set(err, KL_EFORMAT,
                            "%s/journal.jsonl:1: the sweep event has no metric or no trial count; "
                            "is this a kiln sweep journal?",
                            rp->dir);
    return KL_OK;
}

/* One event into the trials. Events this kiln does not know are skipped: a newer kiln may
 * journal more. */
static kl_status on_event(kl__report *rp, const json_t *ev, size_t line, int64_t *tcap, int *mcap,
                          kl_error *err)
{
    const char *kind = json_string_value(json_object_get(ev, "event"));
    if (!kind)
        return KL_OK;
    if (!strcmp(kind, "resumed") || !strcmp(kind, "finished")) {
        rp->resumed += kind[0] == 'r';
        rp->finished = kind[0] == 'f';
        return KL_OK;
    }
    static const char *const per_trial[] = {"started", "result",   "failed",
                                            "errored", "diverged", "interrupted"};
    size_t k = 0;
    while (k < sizeof per_trial / sizeof *per_trial && strcmp(kind, per_trial[k]))
        k++;
    if (k == sizeof per_trial / sizeof *per_trial)
        return KL_OK;
    kl__report_trial *t = NULL; /* set by trial_of when it succeeds */
    kl_status st = trial_of(rp, tcap, ev, line, &t, err);
    if (st != KL_OK)
        return st;
    if (k == 0)
        st = on_started(rp, t, ev, mcap);
    else if (k == 1)
        st = on_result(rp, t, ev, mcap);
    else {
        static const kl__report_state ends[] = {KL__REPORT_PENDING, KL__REPORT_FAILED,
                                                KL__REPORT_DIVERGED, KL__REPORT_INTERRUPTED};
        const char *why = json_string_value(json_object_get(ev, "error"));
        t->state = ends[k - 2];
        t->error = why ? why : t->error;
    }
    return st == KL_OK ? KL_OK : oom(err);
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* The rung milestones: until_t of the jobs handed out (promote mode), the epochs at which
 * trials paused or stopped (stop mode) and max_t, or evenly spaced ones when there are many. */
static void finish_milestones(kl__report *rp)
{
    int n = 0;
    if (rp->nmilestones == 0)
        return;
    qsort(rp->milestones, (size_t)rp->nmilestones, sizeof *rp->milestones, cmp_int);
    for (int i = 0; i < rp->nmilestones; i++)
        if (rp->milestones[i] <= rp->max_t &&
            (n == 0 || rp->milestones[i] != rp->milestones[n - 1]))
            rp->milestones[n++] = rp->milestones[i];
    rp->nmilestones = n;
    if (n > MAX_RUNGS) {
        n = 0;
        for (int k = 1; k <= MAX_RUNGS; k++) {
            int m = (int)(((int64_t)rp->max_t * k + MAX_RUNGS - 1) / MAX_RUNGS);
            if (n == 0 || m != rp->milestones[n - 1])
                rp->milestones[n++] = m;
        }
        rp->nmilestones = n;
    }
}

typedef struct rank_key {
    int group; /* 0: ranked, 1: failed with a value, 2: no value */
    double key;
    int64_t id;
} rank_key;

static int cmp_rank(const void *a, const void *b)
{
    const rank_key *x = a, *y = b;
    if (x->group != y->group)
        return x->group - y->group;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* The started trials in rank order, and the best. */
static kl_status finish_order(kl__report *rp)
{
    rank_key *k = malloc((size_t)(rp->ntrials ? rp->ntrials : 1) * sizeof *k);
    rp->order = malloc((size_t)(rp->ntrials ? rp->ntrials : 1) * sizeof *rp->order);
    if (!k || !rp->order) {
        free(k);
        return KL_ENOMEM;
    }
    int64_t n = 0;
    for (int64_t i = 0; i < rp->ntrials; i++) {
        const kl__report_trial *t = &rp->trials[i];
        if (!t->started)
            continue;
        int group = isnan(t->best) ? 2 : kl__report_failed(t) ? 1 : 0;
        double key = isnan(t->best) ? 0 : rp->maximize ? -t->best : t->best;
        k[n++] = (rank_key){group, key, i};
    }
    qsort(k, (size_t)n, sizeof *k, cmp_rank);
    rp->nstarted = n;
    rp->nranked = 0;
    for (int64_t i = 0; i < n; i++) {
        rp->order[i] = k[i].id;
        rp->nranked += k[i].group == 0;
    }
    rp->best = rp->nranked > 0 ? rp->order[0] : -1;
    free(k);
    return KL_OK;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The swept keys: every key of every trial's overrides, once, sorted. */
static kl_status finish_keys(kl__report *rp)
{
    size_t n = 0, cap = 0;
    for (int64_t i = 0; i < rp->ntrials; i++)
        cap += json_object_size(rp->trials[i].overrides);
    rp->keys = malloc((cap ? cap : 1) * sizeof *rp->keys);
    if (!rp->keys)
        return KL_ENOMEM;
    for (int64_t i = 0; i < rp->ntrials; i++) {
        const char *key;
        json_t *v;
        json_object_foreach(rp->trials[i].overrides, key, v) rp->keys[n++] = key;
    }
    qsort(rp->keys, n, sizeof *rp->keys, cmp_str);
    int u = 0;
    for (size_t i = 0; i < n; i++)
        if (u == 0 || strcmp(rp->keys[i], rp->keys[u - 1]))
            rp->keys[u++] = rp->keys[i];
    rp->nkeys = u;
    return KL_OK;
}

static void rp_free(kl__report *rp)
{
    for (int64_t i = 0; i < rp->ntrials; i++)
        free(rp->trials[i].pts);
    free(rp->trials);
    free(rp->order);
    free(rp->keys);
    free(rp->milestones);
    json_decref(rp->events);
}

static kl_status rp_load(kl__report *rp, const char *dir, kl_error *err)
{
    char *path = malloc(strlen(dir) + sizeof "/journal.jsonl");
    if (!path)
        return oom(err);
    strcpy(path, dir);
    strcat(path, "/journal.jsonl");
    rp->dir = dir;
    rp->events = kl_journal_read(path, err);
    free(path);
    if (!rp->events)
        return err ? err->status : KL_EIO;
    json_t *first = json_array_get(rp->events, 0);
    const char *kind = json_string_value(json_object_get(first, "event"));
    if (!kind || strcmp(kind, "sweep"))
        return kl_error_set(err, KL_EFORMAT,
                            "%s/journal.jsonl: %s; is %s a sweep folder of kiln tune?", dir,
                            first ? "the first event is not the sweep event" : "it is empty", dir);
    kl_status st = on_sweep(rp, first, err);
    int64_t tcap = 0;
    int mcap = 0;
    for (size_t i = 0; st == KL_OK && i < json_array_size(rp->events); i++) {
        json_t *ev = json_array_get(rp->events, i), *jt = json_object_get(ev, "time");
        if (json_is_number(jt)) {
            double s = json_number_value(jt);
            rp->first_time = !rp->timed || s < rp->first_time ? s : rp->first_time;
            rp->last_time = !rp->timed || s > rp->last_time ? s : rp->last_time;
            rp->timed = true;
        }
        if (i > 0)
            st = on_event(rp, ev, i + 1, &tcap, &mcap, err);
    }
    if (st != KL_OK)
        return st;
    if (add_milestone(rp, &mcap, rp->max_t) != KL_OK || finish_order(rp) != KL_OK ||
        finish_keys(rp) != KL_OK)
        return oom(err);
    finish_milestones(rp);
    return KL_OK;
}

/* ---- the page ---- */

static void num(FILE *f, double v)
{
    if (isnan(v))
        fputs("&#8212;", f);
    else
        fprintf(f, "%.6g", v);
}

static void duration(FILE *f, double s)
{
    if (!(s >= 0))
        s = 0;
    long long m = (long long)(s / 60), h = m / 60;
    if (s < 60)
        fprintf(f, "%.1f s", s);
    else if (h == 0)
        fprintf(f, "%lld min %02d s", m, (int)fmod(s, 60));
    else if (h < 48)
        fprintf(f, "%lld h %02lld min", h, m % 60);
    else
        fprintf(f, "%lld d %02lld h", h / 24, h % 24);
}

static void utc(FILE *f, double s)
{
    time_t t = (time_t)s;
    struct tm tm;
    char buf[32];
    if (gmtime_r(&t, &tm) && strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm))
        fputs(buf, f);
}

static void row(FILE *f, const char *name)
{
    fprintf(f, "<tr><th>%s</th><td>", name);
}

static void summary_trials(FILE *f, const kl__report *rp)
{
    int64_t n[KL__REPORT_NSTATES] = {0};
    for (int64_t i = 0; i < rp->ntrials; i++)
        n[rp->trials[i].state] += rp->trials[i].started;
    static const kl__report_state shown[] = {
        KL__REPORT_DONE,    KL__REPORT_STOPPED,     KL__REPORT_PAUSED,   KL__REPORT_RUNNING,
        KL__REPORT_PENDING, KL__REPORT_INTERRUPTED, KL__REPORT_DIVERGED, KL__REPORT_FAILED};
    row(f, "trials");
    fprintf(f, "%lld started of %lld", (long long)rp->nstarted, (long long)rp->planned);
    int k = 0;
    for (size_t i = 0; i < sizeof shown / sizeof *shown; i++)
        if (n[shown[i]] > 0)
            fprintf(f, "%s%lld %s", k++ ? ", " : ": ", (long long)n[shown[i]],
                    kl__report_state_name(shown[i]));
    fputs("</td></tr>\n", f);
}

static void summary_best(FILE *f, const kl__report *rp)
{
    row(f, "best");
    if (rp->best < 0) {
        fputs("none yet: no trial has reported a finite value</td></tr>\n", f);
        return;
    }
    const kl__report_trial *b = &rp->trials[rp->best];
    fprintf(f, "<strong id=\"best-trial\">trial %lld</strong>: ", (long long)b->id);
    kl__report_esc(f, rp->metric);
    fputc(' ', f);
    num(f, b->best);
    fprintf(f, " (last ");
    num(f, b->last);
    fprintf(f, " at t=%d, %s)<br/><code>", b->last_t, kl__report_state_name(b->state));
    kl__report_params(f, b);
    fputs("</code></td></tr>\n", f);
}

static void summary_compute(FILE *f, const kl__report *rp)
{
    int64_t trained = 0;
    for (int64_t i = 0; i < rp->ntrials; i++)
        trained += rp->trials[i].started ? rp->trials[i].last_t : 0;
    int64_t full = rp->nstarted * rp->max_t;
    row(f, "compute");
    fprintf(f, "%lld epochs trained", (long long)trained);
    if (full > 0)
        fprintf(f,
                ", %.0f%% of the %lld that training each of the %lld trials to max_t = %d would "
                "take",
                100.0 * (double)trained / (double)full, (long long)full, (long long)rp->nstarted,
                rp->max_t);
    fputs("</td></tr>\n", f);
}

static void summary_time(FILE *f, const kl__report *rp)
{
    row(f, "wall time");
    if (rp->timed) {
        duration(f, rp->last_time - rp->first_time);
        fputs(", from ", f);
        utc(f, rp->first_time);
        fputs(" to ", f);
        utc(f, rp->last_time);
    } else {
        fputs("unknown: the events have no times", f);
    }
    if (rp->resumed > 0)
        fprintf(f, " (resumed %d time%s)", rp->resumed, rp->resumed > 1 ? "s" : "");
    fputs("</td></tr>\n", f);
    row(f, "status");
    if (rp->finished)
        fputs("finished", f);
    else {
        fputs("not finished: the journal has no finished event (the sweep is running, or was "
              "stopped; <code>kiln tune --resume ",
              f);
        kl__report_esc(f, rp->dir);
        fputs("</code> continues it)", f);
    }
    fputs("</td></tr>\n", f);
}

static void write_summary(FILE *f, const kl__report *rp)
{
    fputs("<table class=\"summary\">\n", f);
    row(f, "sweep file");
    fputs("<code>", f);
    kl__report_esc(f, rp->sweep ? rp->sweep : "?");
    fputs("</code></td></tr>\n", f);
    row(f, "metric");
    kl__report_esc(f, rp->metric);
    fprintf(f, " (%s)</td></tr>\n", rp->maximize ? "maximize" : "minimize");
    summary_trials(f, rp);
    summary_best(f, rp);
    summary_compute(f, rp);
    summary_time(f, rp);
    fputs("</table>\n", f);
}

static void write_table(FILE *f, const kl__report *rp)
{
    fputs("<h2>Trials</h2>\n", f);
    if (rp->nstarted == 0) {
        fputs("<p class=\"note\">No trial has started.</p>\n", f);
        return;
    }
    int64_t rows = rp->nstarted < KL_TUNE_REPORT_MAX_ROWS ? rp->nstarted : KL_TUNE_REPORT_MAX_ROWS;
    fputs("<p class=\"note\">Best first; failed and diverged trials after the others, whatever "
          "they reached.",
          f);
    if (rows < rp->nstarted)
        fprintf(f, " The %lld best of %lld trials (results.csv has them all).", (long long)rows,
                (long long)rp->nstarted);
    fputs("</p>\n<div class=\"scroll\"><table class=\"trials\">\n<thead><tr><th>trial</th>"
          "<th>state</th><th>best</th><th>last</th><th>t</th>",
          f);
    for (int k = 0; k < rp->nkeys; k++) {
        fputs("<th>", f);
        kl__report_esc(f, rp->keys[k]);
        fputs("</th>", f);
    }
    fputs("</tr></thead>\n<tbody>\n", f);
    for (int64_t r = 0; r < rows; r++) {
        const kl__report_trial *t = &rp->trials[rp->order[r]];
        fprintf(f, "<tr%s><td class=\"n\">%lld</td><td", t->id == rp->best ? " class=\"best\"" : "",
                (long long)t->id);
        if (t->error) { /* the last failure's message, on hover */
            fputs(" title=\"", f);
            kl__report_esc(f, t->error);
            fputc('"', f);
        }
        fprintf(f, ">%s</td><td class=\"n\">", kl__report_state_name(t->state));
        num(f, t->best);
        fputs("</td><td class=\"n\">", f);
        num(f, t->last);
        fprintf(f, "</td><td class=\"n\">%d</td>", t->last_t);
        for (int k = 0; k < rp->nkeys; k++) {
            fputs("<td>", f);
            kl__report_esc(f, json_string_value(json_object_get(t->overrides, rp->keys[k])));
            fputs("</td>", f);
        }
        fputs("</tr>\n", f);
    }
    fputs("</tbody>\n</table></div>\n", f);
}

static kl_status write_page(FILE *f, const kl__report *rp, kl_error *err)
{
    fputs("<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n"
          "<meta charset=\"utf-8\"/>\n"
          "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n"
          "<title>Sweep report: ",
          f);
    kl__report_esc(f, rp->dir);
    fprintf(f, "</title>\n<style>\n%s</style>\n</head>\n<body>\n<h1>Sweep <code>", kl__plot_style);
    kl__report_esc(f, rp->dir);
    fputs("</code></h1>\n", f);
    write_summary(f, rp);
    if (rp->nresults == 0)
        fputs("<p class=\"empty\">No results yet: no trial has reported a finite value of the "
              "metric, so there is nothing to plot.</p>\n",
              f);
    kl_status st = kl__report_plot_curves(f, rp, err);
    if (st == KL_OK)
        kl__report_plot_rungs(f, rp);
    if (st == KL_OK)
        st = kl__report_plot_parallel(f, rp, err);
    if (st != KL_OK)
        return st;
    kl__report_pbt(f, rp);
    write_table(f, rp);
    fputs("<p class=\"note\">Written by kiln " KL_VERSION " <code>kiln tune report</code> from ",
          f);
    kl__report_esc(f, rp->dir);
    fputs("/journal.jsonl.</p>\n</body>\n</html>\n", f);
    return KL_OK;
}

kl_status kl_tune_report(const char *sweep_dir, const char *out_path, kl_error *err)
{
    kl__report rp = {0};
    char *dflt = NULL;
    kl_status st = rp_load(&rp, sweep_dir, err);
    if (st == KL_OK && !out_path) {
        if (!(dflt = malloc(strlen(sweep_dir) + sizeof "/report.html")))
            st = oom(err);
        else
            out_path = strcat(strcpy(dflt, sweep_dir), "/report.html");
    }
    FILE *f = NULL;
    if (st == KL_OK && !(f = fopen(out_path, "w")))
        st = kl_error_set(err, KL_EIO, "cannot write the report %s: %s", out_path, strerror(errno));
    if (st == KL_OK)
        st = write_page(f, &rp, err);
    if (f) {
        bool bad = ferror(f) != 0;
        if ((fclose(f) != 0 || bad) && st == KL_OK)
            st = kl_error_set(err, KL_EIO, "cannot write the report %s: %s", out_path,
                              strerror(errno));
        struct stat sb; /* never remove what is not a plain file, such as /dev/stdout */
        if (st != KL_OK && stat(out_path, &sb) == 0 && S_ISREG(sb.st_mode))
            remove(out_path);
    }
    free(dflt);
    rp_free(&rp);
    return st;
}
