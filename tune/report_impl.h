/* kiln tune report's private state, shared by tune/report.c (the journal read into trials, the
 * page, its summary and its table) and tune/report_plot.c (the three SVG plots). */
#ifndef KILN_TUNE_REPORT_IMPL_H
#define KILN_TUNE_REPORT_IMPL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "kiln/status.h"

typedef enum kl__report_state {
    KL__REPORT_PENDING, /* waiting to run (again, after a failed try) */
    KL__REPORT_RUNNING,
    KL__REPORT_PAUSED,
    KL__REPORT_STOPPED,
    KL__REPORT_DONE,
    KL__REPORT_INTERRUPTED, /* a signal stopped the sweep while it ran; --resume continues it */
    KL__REPORT_DIVERGED,
    KL__REPORT_FAILED, /* errored: failed max_failures times */
    KL__REPORT_NSTATES
} kl__report_state;

typedef struct kl__report_point {
    int t;
    double v; /* finite: results whose value was null are not kept */
} kl__report_point;

typedef struct kl__report_trial {
    int64_t id;
    bool started;
    kl__report_state state;
    json_t *overrides;     /* borrowed from the events: key -> value as text; NULL when none */
    kl__report_point *pts; /* finite results, t increasing */
    int npts, cap;
    int last_t;        /* the last t reported (0: none), null values included */
    double last, best; /* the last and best values (NAN: none) */
    const char *error; /* the last failure's message (borrowed), NULL when none */
} kl__report_trial;

typedef struct kl__report {
    json_t *events; /* the journal; the strings below point into it */
    const char *dir, *sweep, *metric;
    bool maximize;
    int64_t planned;          /* the trials the sweep runs (its `trials`) */
    kl__report_trial *trials; /* by id */
    int64_t ntrials;          /* ids 0 .. ntrials - 1 appeared in the journal */
    int64_t *order;           /* the started trials: ranked ones best first, then the failed
                                 ones by their best, then those without a value */
    int64_t nstarted;         /* entries of order */
    int64_t nranked;          /* the first nranked of order have a value and did not fail */
    int64_t best;             /* the best trial, -1: none */
    const char **keys;        /* the swept keys (from the overrides), sorted */
    int nkeys;
    int max_t;       /* the sweep event's max_t, else the largest until_t or t seen */
    int *milestones; /* rung milestones (epochs), increasing */
    int nmilestones;
    int64_t nresults;             /* result events with a finite value */
    double first_time, last_time; /* valid when timed: some event had a time */
    bool timed;
    int resumed;
    bool finished;
} kl__report;

/* True for a trial that failed or diverged: it holds the worst metric whatever it reached. */
static inline bool kl__report_failed(const kl__report_trial *t)
{
    return t->state == KL__REPORT_FAILED || t->state == KL__REPORT_DIVERGED;
}

/* tune/report.c: a trial's hyperparameters as escaped "key=value, key=value" (escaped with
 * kl__report_esc, tune/plot.h), and a state's name. */
void kl__report_params(FILE *f, const kl__report_trial *t);
const char *kl__report_state_name(kl__report_state s);

/* tune/report_plot.c: each plot as an <svg> element (or a line saying why there is none). */
kl_status kl__report_plot_curves(FILE *f, const kl__report *rp, kl_error *err);
void kl__report_plot_rungs(FILE *f, const kl__report *rp);
kl_status kl__report_plot_parallel(FILE *f, const kl__report *rp, kl_error *err);

/* tune/report_pbt.c: population-based training's lineage, values by epoch and the best trial's
 * schedule; nothing for a sweep without exploits. */
void kl__report_pbt(FILE *f, const kl__report *rp);

#endif
