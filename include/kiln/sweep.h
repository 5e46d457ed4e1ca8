/* Sweep files (`kiln tune sweep.yaml`, docs/sweep.md): the base train config, the metric and its
 * goal, the search space over dotted config keys, the sampler (random, grid or tpe), the
 * scheduler's settings and the sweep's limits. A sweep is loaded once; under random and grid, trial
 * i's hyperparameters are a pure function of (seed, i), so a resumed sweep regenerates exactly the
 * trials it had (under tpe, of the seed and the results before it: kiln/tpe.h). */
#ifndef KILN_SWEEP_H
#define KILN_SWEEP_H

#include <stdbool.h>
#include <stdint.h>

#include "kiln/config.h"
#include "kiln/status.h"

typedef enum kl_sweep_dist {
    KL_DIST_VALUE,       /* value: one fixed value */
    KL_DIST_VALUES,      /* values: [...], optional probabilities: [...] */
    KL_DIST_UNIFORM,     /* uniform {min, max} */
    KL_DIST_LOG_UNIFORM, /* log_uniform_values (alias loguniform) {min, max}, 0 < min */
    KL_DIST_Q_UNIFORM,   /* q_uniform (alias quniform) {min, max, q}: round(x / q) * q */
    KL_DIST_INT_UNIFORM, /* int_uniform (alias randint) {min, max}: an integer, both inclusive */
    KL_DIST_GRID         /* grid: [...]: enumerated by method grid, drawn uniformly by random */
} kl_sweep_dist;

typedef struct kl_sweep_param {
    char *path; /* dotted config key as --set takes it: "optimizer.lr", "model.layers.0.units" */
    kl_sweep_dist dist;
    double min, max, q;
    /* VALUE, VALUES, GRID: each value as override text: plain scalars as written, quoted ones
     * double-quoted (so "3" stays a string), sequences and mappings in flow style. */
    char **values;
    double *probabilities; /* VALUES: NULL for uniform */
    int nvalues;
    kl_source_pos pos; /* of the parameter's key in the sweep file */
} kl_sweep_param;

typedef enum kl_sched_kind {
    KL_SCHED_FIFO,      /* every trial to max_t */
    KL_SCHED_ASHA,      /* asynchronous successive halving (Li et al., MLSys 2020) */
    KL_SCHED_HYPERBAND, /* ASHA brackets with different grace periods */
    KL_SCHED_MEDIAN,    /* median stopping rule */
    KL_SCHED_PBT        /* population-based training (Jaderberg et al. 2017, as Ray Tune) */
} kl_sched_kind;

typedef struct kl_sched_config {
    kl_sched_kind kind;
    int max_t;            /* the most epochs a trial trains (default: the base's train.epochs) */
    int grace_period;     /* r: the first rung's epochs (default 1) */
    int reduction_factor; /* eta (default 3) */
    int brackets;   /* hyperband (default: as many as fit, at most 4); 1 for the other kinds */
    bool stop_mode; /* mode: stop (Ray Tune's ASHA) instead of promote (the paper's) */
    /* pbt: a trial is checked every perturbation_interval epochs; the bottom quantile_fraction
     * copies a trial of the top one; resample_probability of each mutation being drawn afresh
     * instead of perturbed. seed: the draws (the sweep's seed). */
    int perturbation_interval;
    double quantile_fraction, resample_probability;
    uint64_t seed;
} kl_sched_config;

/* method: tpe (alias bayes) and its settings (the sweep's `tpe` mapping; docs/sweep.md). */
typedef struct kl_tpe_config {
    bool on;
    int n_startup_trials; /* results needed before the model is fit; random until then (10) */
    int n_ei_candidates;  /* candidates drawn from l(x) per parameter (24) */
    double prior_weight;  /* the prior kernel's weight (1.0) */
    bool constant_liar;   /* running trials count as the worst result (true) */
} kl_tpe_config;

typedef struct kl_sweep {
    char *path;      /* the sweep file */
    char *base_path; /* base: a train config path (resolved against the sweep file's folder) */
    char *base_yaml; /* or base: an inline mapping, as YAML text */
    char *metric;    /* metric.name: val_accuracy, val_loss, train_loss, ... */
    bool maximize;   /* metric.goal */
    bool grid;       /* method: grid (else random, or tpe when tpe.on) */
    kl_tpe_config tpe;
    kl_sweep_param *params;
    int nparams;
    int64_t run_cap; /* trials at most (grid: the grid's size when 0) */
    uint64_t seed;   /* the sampler's seed */
    kl_sched_config sched;
    /* pbt: scheduler.hyperparam_mutations, in the order written. A YAML list (Ray's categorical
     * list: explore moves to a neighbour) is stored as KL_DIST_GRID; a distribution mapping
     * (explore multiplies by 0.8 or 1.2) as the parameters' distributions are. */
    kl_sweep_param *mutations;
    int nmutations;
    int max_failures;    /* a trial failing this often is errored, never retried (default 3) */
    int ranks_per_trial; /* ranks that train one trial data-parallel (default 1) */
    double time_budget;  /* seconds; 0: none. No new trial starts after it */
} kl_sweep;

/* Loads and checks a sweep file: every error names file:line:col and the key (an unknown
 * distribution, min > max, a log range that is not positive, a key that is not in the base
 * config). Each parameter is tried on the base config, with the others at trial 0's values: every
 * listed value and both ends of a range, so a value the config refuses is found here, at its place
 * in the sweep file. Defaults that depend on the base (sched.max_t, sched.brackets) are filled. */
kl_sweep *kl_sweep_load(const char *path, kl_error *err);
void kl_sweep_free(kl_sweep *s);

/* How many trials the sweep runs: run_cap, or the grid's size (capped by run_cap when set). */
int64_t kl_sweep_trials(const kl_sweep *s);

/* Trial i's overrides as "key=value" strings for kl_config_load (malloc'd array of malloc'd
 * strings in *out, *n of them: one per parameter, in the parameters' order;
 * kl_sweep_overrides_free releases them). i runs from 0 to kl_sweep_trials() - 1 (KL_ERANGE
 * otherwise). Random: every draw is keyed by (seed, i, parameter index); grid: the i-th point in
 * row-major order of the parameters as written (the last one varies fastest). */
kl_status kl_sweep_overrides(const kl_sweep *s, int64_t i, char ***out, int *n, kl_error *err);
void kl_sweep_overrides_free(char **o, int n);

/* The base config with the given overrides applied (and extra ones after them, e.g. the
 * scheduler's train.epochs): what trial i trains. When n is the parameter count (overrides from
 * kl_sweep_overrides), an error in override k is placed at parameter k in the sweep file;
 * errors in extra keep the config loader's "--set:N:col" (N counts from 1 over both lists). */
kl_config *kl_sweep_config(const kl_sweep *s, char *const *overrides, int n,
                           const char *const *extra, int nextra, kl_error *err);

#endif
