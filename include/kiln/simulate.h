/* Scheduler simulation (`kiln tune --simulate`): runs a scheduler (include/kiln/sched.h) over a
 * table of learning curves instead of training, with W virtual workers in simulated time, to
 * compare schedulers and settings on curves recorded once, and to time the scheduler itself.
 *
 * The table is CSV with a header naming at least the columns `trial`, `t` and `value` (in any
 * order; other columns are ignored but in tabular mode, below): one row per (trial, epoch), t = 1,
 * 2, ... with no gaps. The
 * `trial` column holds labels (any text; "" quotes allowed); trials are numbered 0, 1, ... in the
 * order their labels first appear, and trial i of the sweep trains along curve i. An optional
 * `seconds` column gives each epoch's cost in simulated time (default 1 per epoch). `value` may
 * be nan or inf (such a value ranks as the worst). A trial that the scheduler wants to train past
 * its last row fails there (kl_sched_failed) and is counted in ran_out.
 *
 * Simulated time: every worker asks kl_sched_next when idle (lowest worker first); a NEW job
 * trains from epoch 1, a PROMOTE job from the epoch after the trial's last, each epoch ending
 * after its cost; results are reported in order of simulated time (ties: the worker that started
 * its epoch first), and after any decision other than CONTINUE the idle workers ask again. */
#ifndef KILN_SIMULATE_H
#define KILN_SIMULATE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "kiln/sched.h"
#include "kiln/status.h"
#include "kiln/sweep.h"

/* A loaded table of learning curves. */
typedef struct kl_curves kl_curves;

/* Reads a curve table from a CSV file; errors name the file, the line and the column. */
kl_curves *kl_curves_load(const char *path, kl_error *err);
/* The same from text in memory (len bytes); name is used in messages. */
kl_curves *kl_curves_parse(const char *text, size_t len, const char *name, kl_error *err);
void kl_curves_free(kl_curves *c);
int64_t kl_curves_trials(const kl_curves *c);
/* Keeps only the first n trials of the table (a sweep's run_cap); n >= the trials changes
 * nothing. */
void kl_curves_keep_first(kl_curves *c, int64_t n);
const char *kl_curves_label(const kl_curves *c, int64_t trial);
int kl_curves_epochs(const kl_curves *c, int64_t trial); /* rows of trial i: t = 1..epochs */
bool kl_curves_have_seconds(const kl_curves *c);

/* One trial at the end of a simulation. */
typedef struct kl_sim_trial {
    const char *label;    /* as in the table (owned by the result) */
    kl_trial_state state; /* PAUSED: waiting at a rung when the sweep ended (promote mode) */
    int bracket;
    int rung;     /* the highest rung reached, -1: none */
    int epochs;   /* epochs trained: the last t reported (0: none) */
    double last;  /* the value at `epochs` (NAN: none, or not finite) */
    double best;  /* its best finite value (NAN: none) */
    bool ran_out; /* the scheduler wanted more epochs than the table has: it failed there */
} kl_sim_trial;

/* A point of the sweep's anytime curve: the best value reported so far changed to `value` (trial
 * `trial` at its epoch `t`) when `epochs` epochs had been trained in all (costing `compute`), at
 * simulated time `time`. */
typedef struct kl_sim_point {
    int64_t epochs;
    double compute, time, value;
    int64_t trial;
    int t;
} kl_sim_point;

/* Wall-clock latency of scheduler calls, in microseconds; percentiles by nearest rank. */
typedef struct kl_sim_latency {
    int64_t calls;
    double p50_us, p99_us, max_us;
} kl_sim_latency;

typedef struct kl_sim_result {
    int64_t ntrials;     /* trials in the table, all of which the sweep runs */
    kl_sim_trial *trial; /* [ntrials] */
    int workers;
    int64_t best_trial; /* kl_sched_best_trial at the end, -1: none */
    double best_value;  /* its last value (the one it was ranked by) */
    int64_t epochs;     /* epochs trained in all: the compute */
    double compute;     /* their cost: = epochs without a seconds column */
    double makespan;    /* simulated time when the last epoch ended */
    double budget;      /* the time budget simulated (the sweep's time_budget), 0: none */
    bool budget_hit;    /* it held back a job: nothing new started after it */
    int64_t n_done, n_stopped, n_paused, n_failed, ran_out; /* trials by final state */
    double sched_s; /* wall seconds inside kl_sched_next and kl_sched_result */
    double loop_s;  /* wall seconds of the whole simulation loop (includes sched_s) */
    double load_s;  /* wall seconds reading the table (kl_simulate only, else 0) */
    kl_sim_latency next, result, all; /* kl_sched_next, kl_sched_result, both together */
    /* Every improvement of the best finite value reported (by any trial, at any epoch, in
     * order of simulated time): where the sweep first reached a given value, e.g. a target
     * accuracy, and what it had spent by then. */
    kl_sim_point *trace;
    int64_t ntrace;
    char *label_text; /* storage of the labels */
} kl_sim_result;

/* Runs the sweep described by cfg (maximize: the metric's goal) over the curves in the CSV file
 * with `workers` virtual workers (>= 1). On success fills *out (kl_sim_result_free releases it);
 * on failure *out is zeroed and err says why (the table, the scheduler settings). */
kl_status kl_simulate(const kl_sched_config *cfg, bool maximize, const char *curves_csv,
                      int workers, kl_sim_result *out, kl_error *err);
/* The same over a table already loaded (it can be simulated many times). */
kl_status kl_simulate_curves(const kl_sched_config *cfg, bool maximize, const kl_curves *c,
                             int workers, kl_sim_result *out, kl_error *err);
/* The same with a time budget (a sweep's time_budget, in simulated time; 0: none): once the
 * simulated time reaches it, no job starts, as in a real sweep; the jobs running finish.
 * kl_simulate_sweep takes it from the sweep. */
kl_status kl_simulate_curves_within(const kl_sched_config *cfg, bool maximize, const kl_curves *c,
                                    int workers, double budget, kl_sim_result *out, kl_error *err);
void kl_sim_result_free(kl_sim_result *r);

/* Tabular mode, as tabular benchmarks (LCBench, NAS-Bench) measure a search method: the table's
 * rows also carry their configuration, one column per sweep parameter, named by its path
 * (`optimizer.lr`; the same on every row of a trial). kl_curves_tabular says whether the table
 * has a column for any of sw's parameters (value parameters aside). kl_simulate_sweep runs sw as
 * it would run for real (its sampler: random, grid or tpe; its scheduler; kl_sweep_trials(sw)
 * trials): each new trial's proposed values are snapped to the nearest tabulated configuration,
 * listed values (values, grid) equal and the smallest sum of squared differences of the range
 * parameters, each scaled to [0, 1] across its range (in log space for log_uniform_values), the
 * first row on ties, and the trial trains along that row's curve (trials may share a row;
 * r->trial[i].label names it). Every parameter needs its column (errors name the missing one
 * and a cell that is not a number); a proposal whose listed values no row has is an error.
 * name is the table's, for messages. */
bool kl_curves_tabular(const kl_curves *c, const kl_sweep *sw);
kl_status kl_simulate_sweep(const kl_sweep *sw, const kl_curves *c, const char *name, int workers,
                            kl_sim_result *out, kl_error *err);

/* The first point of r's trace at least as good as target (maximize: >= target, else <=), or
 * NULL when the sweep never reported such a value. */
const kl_sim_point *kl_sim_first_reaching(const kl_sim_result *r, bool maximize, double target);

/* The per-trial table as CSV: trial,label,state,bracket,rung,epochs,last,best (labels quoted
 * when they need it, NaN as an empty field). */
kl_status kl_sim_write_trials(const kl_sim_result *r, FILE *f, kl_error *err);

#endif
