/* Tests for tune/sweep*.c: every distribution and alias parsed, the defaults, every class of error
 * with its exact file:line:col and dotted key (keys the base config lacks included, placed in the
 * sweep file), the random sampler (reproducible by seed, within bounds, the right distribution
 * over 10,000 draws) and the grid (the cartesian product in order, capped by run_cap). Sweep and
 * base files live in a temporary folder that is removed at the end. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "kiln/sweep.h"
#include "sweep_fixture.h"

static kl_sweep *load_ok_(const char *text, int line)
{
    kl_error err = {0};
    kl_sweep *s = load(text, &err);
    if (!check_(s != NULL, __FILE__, line, "sweep loads"))
        fprintf(stderr, "    %s\n", err.msg);
    return s;
}
#define load_ok(text) load_ok_(text, __LINE__)

/* The load fails and the message holds "sweep.yaml:<where>" and each of the other fragments. */
static void expect_error_(const char *text, const char *where, const char *want, const char *want2,
                          int line)
{
    char at[192];
    snprintf(at, sizeof at, "%s:%s", sweep_path, where);
    kl_error err = {0};
    kl_sweep *s = load(text, &err);
    check_(s == NULL, __FILE__, line, "sweep is refused");
    kl_sweep_free(s);
    bool ok = check_(err.status != KL_OK && strstr(err.msg, at) == err.msg, __FILE__, line, at);
    ok &= check_(strstr(err.msg, want) != NULL, __FILE__, line, want);
    if (want2)
        ok &= check_(strstr(err.msg, want2) != NULL, __FILE__, line, want2);
    if (!ok)
        fprintf(stderr, "    got: %s\n", err.msg);
}
#define expect_error(text, where, want, want2) expect_error_(text, where, want, want2, __LINE__)

#define HEAD "base: base.yaml\nmetric: {name: val_accuracy}\nrun_cap: 10\nparameters:\n"

static const kl_sweep_param *param(const kl_sweep *s, const char *path)
{
    for (int i = 0; i < s->nparams; i++)
        if (strcmp(s->params[i].path, path) == 0)
            return &s->params[i];
    check_(0, __FILE__, __LINE__, path);
    return &(kl_sweep_param){0};
}

static void test_every_distribution(void)
{
    kl_sweep *s = load_ok(HEAD "  optimizer.lr: {log_uniform_values: {min: 1e-4, max: 1e-2}}\n"
                               "  optimizer.weight_decay: {loguniform: {min: 1e-6, max: 1e-3}}\n"
                               "  optimizer.beta1: {uniform: {min: 0.8, max: 0.95}}\n"
                               "  optimizer.beta2: {q_uniform: {min: 0.9, max: 0.99, q: 0.01}}\n"
                               "  model.layers.1.rate: {quniform: {min: 0, max: 0.5, q: 0.1}}\n"
                               "  model.layers.0.units: {int_uniform: {min: 16, max: 128}}\n"
                               "  data.limit: {randint: {min: 100, max: 200}}\n"
                               "  train.batch_size:\n"
                               "    values: [32, 64, 128]\n"
                               "    probabilities: [0.25, 0.25, 0.5]\n"
                               "  optimizer.name: {values: [adam, adamw]}\n"
                               "  train.seed: {grid: [1, 2, 3]}\n"
                               "  name: {value: \"007\"}\n");
    if (!s)
        return;
    CHECK(s->nparams == 11);
    const kl_sweep_param *p = param(s, "optimizer.lr");
    CHECK(p->dist == KL_DIST_LOG_UNIFORM && p->min == 1e-4 && p->max == 1e-2);
    CHECK(p->pos.line == 5 && p->pos.col == 3 && strcmp(p->pos.file, sweep_path) == 0);
    CHECK(param(s, "optimizer.weight_decay")->dist == KL_DIST_LOG_UNIFORM);
    p = param(s, "optimizer.beta1");
    CHECK(p->dist == KL_DIST_UNIFORM && p->min == 0.8 && p->max == 0.95);
    p = param(s, "optimizer.beta2");
    CHECK(p->dist == KL_DIST_Q_UNIFORM && p->q == 0.01 && p->max == 0.99);
    CHECK(param(s, "model.layers.1.rate")->dist == KL_DIST_Q_UNIFORM);
    p = param(s, "model.layers.0.units");
    CHECK(p->dist == KL_DIST_INT_UNIFORM && p->min == 16 && p->max == 128);
    CHECK(param(s, "data.limit")->dist == KL_DIST_INT_UNIFORM);
    p = param(s, "train.batch_size");
    CHECK(p->dist == KL_DIST_VALUES && p->nvalues == 3 && strcmp(p->values[2], "128") == 0);
    CHECK(p->probabilities && p->probabilities[0] == 0.25 && p->probabilities[2] == 0.5);
    p = param(s, "optimizer.name");
    CHECK(p->dist == KL_DIST_VALUES && !p->probabilities && strcmp(p->values[1], "adamw") == 0);
    p = param(s, "train.seed");
    CHECK(p->dist == KL_DIST_GRID && p->nvalues == 3 && strcmp(p->values[0], "1") == 0);
    p = param(s, "name");
    CHECK(p->dist == KL_DIST_VALUE && p->nvalues == 1 && strcmp(p->values[0], "\"007\"") == 0);
    kl_sweep_free(s);
}

static void test_defaults(void)
{
    kl_sweep *s = load_ok(HEAD "  optimizer.lr: {values: [1e-3, 1e-2]}\n");
    if (!s)
        return;
    char want[192];
    snprintf(want, sizeof want, "%s/base.yaml", dir);
    CHECK(s->base_path && strcmp(s->base_path, want) == 0 && !s->base_yaml);
    CHECK(strcmp(s->metric, "val_accuracy") == 0 && s->maximize);
    CHECK(!s->grid && s->run_cap == 10 && s->seed == 0 && kl_sweep_trials(s) == 10);
    CHECK(s->sched.kind == KL_SCHED_ASHA && !s->sched.stop_mode);
    CHECK(s->sched.max_t == 9 && s->sched.grace_period == 1 && s->sched.reduction_factor == 3);
    CHECK(s->sched.brackets == 1);
    CHECK(s->max_failures == 3 && s->ranks_per_trial == 1 && s->time_budget == 0);
    kl_sweep_free(s);

    s = load_ok("base: base.yaml\nmetric: {name: train_loss}\nmethod: grid\n"
                "parameters:\n  optimizer.lr: {values: [1e-3, 1e-2]}\n");
    CHECK(s && !s->maximize && s->grid && s->run_cap == 0 && kl_sweep_trials(s) == 2);
    kl_sweep_free(s);
}

static void test_top_level(void)
{
    kl_sweep *s = load_ok("base: base.yaml\n"
                          "metric: {name: val_loss, goal: maximize}\n"
                          "method: random\n"
                          "run_cap: 50\n"
                          "seed: 18446744073709551615\n"
                          "max_failures: 5\n"
                          "ranks_per_trial: 2\n"
                          "time_budget: 2h\n"
                          "scheduler:\n"
                          "  type: hyperband\n"
                          "  max_t: 27\n"
                          "  reduction_factor: 3\n"
                          "  mode: stop\n"
                          "parameters:\n"
                          "  optimizer.lr: {uniform: {min: 1e-4, max: 1e-2}}\n");
    if (s) {
        CHECK(strcmp(s->metric, "val_loss") == 0 && s->maximize);
        CHECK(s->run_cap == 50 && s->seed == UINT64_MAX);
        CHECK(s->max_failures == 5 && s->ranks_per_trial == 2 && s->time_budget == 7200);
        CHECK(s->sched.kind == KL_SCHED_HYPERBAND && s->sched.stop_mode);
        CHECK(s->sched.max_t == 27 && s->sched.grace_period == 1);
        CHECK(s->sched.brackets == 4); /* rungs at 1, 3, 9, 27 */
    }
    kl_sweep_free(s);

    static const struct {
        const char *text;
        double seconds;
    } budgets[] = {
        {"30 min", 1800}, {"90 s", 90}, {"3600", 3600}, {"1.5h", 5400}, {"2 days", 172800}};
    for (size_t i = 0; i < sizeof budgets / sizeof *budgets; i++) {
        char text[256];
        snprintf(text, sizeof text, HEAD "  optimizer.lr: {value: 0.01}\ntime_budget: %s\n",
                 budgets[i].text);
        s = load_ok(text);
        CHECK(s && s->time_budget == budgets[i].seconds);
        kl_sweep_free(s);
    }
    s = load_ok(HEAD "  optimizer.lr: {value: 0.01}\nscheduler: {type: median, grace_period: 3}\n");
    CHECK(s && s->sched.kind == KL_SCHED_MEDIAN && s->sched.grace_period == 3);
    kl_sweep_free(s);
    s = load_ok(HEAD "  optimizer.lr: {value: 0.01}\nscheduler: {type: fifo}\n");
    CHECK(s && s->sched.kind == KL_SCHED_FIFO && s->sched.max_t == 9);
    kl_sweep_free(s);
}

static void test_inline_base(void)
{
    const char *text = "metric: {name: val_accuracy}\n"
                       "base:\n"
                       "  data: {dataset: fashion-mnist, val_fraction: 0.2}\n"
                       "  model:\n"
                       "    layers: [{dense: {units: 32}}]\n"
                       "  train: {epochs: 4}\n"
                       "run_cap: 3\n"
                       "parameters:\n"
                       "  model.layers.0.units: {values: [8, 16]}\n";
    kl_sweep *s = load_ok(text);
    if (s) {
        CHECK(!s->base_path && s->base_yaml && s->sched.max_t == 4);
        char **ov;
        int n;
        kl_error err = {0};
        CHECK_OK(kl_sweep_overrides(s, 0, &ov, &n, &err), &err);
        kl_config *c = kl_sweep_config(s, ov, n, NULL, 0, &err);
        CHECK(c && c->model.nlayers == 1 && c->data.val_fraction == 0.2f);
        CHECK(c && (c->model.layers[0].units == 8 || c->model.layers[0].units == 16));
        kl_config_free(c);
        kl_sweep_overrides_free(ov, n);
    }
    kl_sweep_free(s);
    /* An error inside the inline base is placed in the sweep file. */
    expect_error("metric: {name: val_accuracy}\n"
                 "run_cap: 3\n"
                 "base:\n"
                 "  data: {dataset: fashion-mnist, val_fraction: 0.2}\n"
                 "  train: {epochs: 0}\n"
                 "parameters:\n"
                 "  optimizer.lr: {value: 0.1}\n",
                 "5:19:", "train.epochs: expected an integer >= 1, got 0", NULL);
    /* A flow-style base on one line. */
    s = load_ok("base: {data: {dataset: mnist, val_fraction: 0.1}}\nmetric: {name: val_loss}\n"
                "run_cap: 2\nparameters: {optimizer.lr: {value: 0.5}}\n");
    CHECK(s && s->base_yaml && s->sched.max_t == 10);
    kl_sweep_free(s);
    expect_error("base: {data: {dataset: mnist}, trian: {}}\nmetric: {name: train_loss}\n"
                 "run_cap: 2\nparameters: {optimizer.lr: {value: 0.5}}\n",
                 "1:32:", "trian: unknown key; did you mean 'train'?", NULL);
    expect_error("metric: {name: val_loss}\nrun_cap: 2\n"
                 "base:\n  data: {dataset: mnist}\nparameters: {optimizer.lr: {value: 0.5}}\n",
                 "1:16:", "metric.name: val_loss needs validation data", "data.val_fraction");
}

static void test_top_level_errors(void)
{
    expect_error(HEAD "  optimizer.lr: {value: 0.1}\nparamters: 3\n",
                 "6:1:", "paramters: unknown key; did you mean 'parameters'?", NULL);
    expect_error("base: base.yaml\nmetric: {name: val_accuracy}\n"
                 "parameters:\n  optimizer.lr: {value: 0.1}\n",
                 "1:1:", "run_cap: missing; random search needs run_cap", NULL);
    expect_error("base: base.yaml\nmetric: {name: val_loss}\nrun_cap: 0\n"
                 "parameters: {optimizer.lr: {value: 0.5}}\n",
                 "3:10:", "run_cap: expected an integer >= 1, got 0", NULL);
    expect_error("base: nope.yaml\nmetric: {name: val_loss}\nrun_cap: 2\n"
                 "parameters: {optimizer.lr: {value: 0.5}}\n",
                 "1:7:", "base: cannot read the base config", "nope.yaml");
    expect_error("metric: {name: val_loss}\nrun_cap: 2\nparameters: {optimizer.lr: {value: 0.5}}\n",
                 "1:1:", "base: missing", NULL);
    expect_error("base: base.yaml\nmetric: {name: val_acc}\nrun_cap: 2\n"
                 "parameters: {optimizer.lr: {value: 0.5}}\n",
                 "2:16:",
                 "metric.name: expected one of (val_loss, val_accuracy, val_mae, "
                 "train_loss, train_accuracy)",
                 "did you mean 'val_accuracy'?");
    expect_error("base: base.yaml\nmetric: {name: val_loss, goal: max}\nrun_cap: 2\n"
                 "parameters: {optimizer.lr: {value: 0.5}}\n",
                 "2:32:", "metric.goal: expected one of (minimize, maximize)", NULL);
    expect_error("base: base.yaml\nmetric: {goal: minimize}\nrun_cap: 2\n"
                 "parameters: {optimizer.lr: {value: 0.5}}\n",
                 "2:9:", "metric.name: missing", NULL);
    expect_error("base: base.yaml\nmetric: {name: val_mae}\nrun_cap: 2\n"
                 "parameters: {optimizer.lr: {value: 0.5}}\n",
                 "2:16:", "metric.name: val_mae is for regression", NULL);
    expect_error(HEAD "  optimizer.lr: {value: 0.1}\nmethod: hyperopt\n",
                 "6:9:", "method: expected one of (random, grid, tpe, bayes)", NULL);
    expect_error(HEAD "  optimizer.lr: {value: 0.1}\ntime_budget: 2 fortnights\n",
                 "6:14:", "time_budget: expected a positive duration", NULL);
    expect_error(HEAD "  optimizer.lr: {value: 0.1}\nseed: -1\n",
                 "6:7:", "seed: expected an integer", NULL);
    expect_error(HEAD "  optimizer.lr: {value: 0.1}\nmax_failures: 0\n",
                 "6:15:", "max_failures: expected an integer >= 1", NULL);
    expect_error(HEAD "  optimizer.lr: {value: 0.1}\nranks_per_trial: two\n",
                 "6:18:", "ranks_per_trial: expected an integer >= 1, got \"two\"", NULL);
    expect_error("base: base.yaml\nmetric: {name: val_loss}\nrun_cap: 2\nparameters: {}\n",
                 "4:13:", "parameters: missing; give at least one", NULL);
    expect_error("base: base.yaml\nmetric: {name: val_loss}\nrun_cap: 2\nrun_cap: 3\n"
                 "parameters: {optimizer.lr: {value: 0.5}}\n",
                 "4:1:", "run_cap: duplicate key", NULL);
    expect_error("- a\n- b\n", "1:1:", "expected a sweep", NULL);
}

static void test_scheduler_errors(void)
{
#define SCHED HEAD "  optimizer.lr: {value: 0.1}\nscheduler:\n"
    expect_error(SCHED "  reduction_factor: 1\n",
                 "7:21:", "scheduler.reduction_factor: expected an integer >= 2, got 1", NULL);
    expect_error(SCHED "  grace_period: 0\n",
                 "7:17:", "scheduler.grace_period: expected an integer >= 1, got 0", NULL);
    expect_error(SCHED "  grace_period: 12\n", "7:17:",
                 "scheduler.grace_period: grace_period 12 is above max_t 9 (the base config's "
                 "train.epochs)",
                 NULL);
    expect_error(SCHED "  max_t: 3\n  grace_period: 4\n",
                 "8:17:", "scheduler.grace_period: grace_period 4 is above max_t 3", NULL);
    expect_error(SCHED "  type: hyperband\n  brackets: 0\n",
                 "8:13:", "scheduler.brackets: expected an integer >= 1, got 0", NULL);
    expect_error(SCHED "  type: hyperband\n  brackets: 4\n",
                 "8:13:", "scheduler.brackets: 4 brackets do not fit", "at most 3 fit");
    expect_error(SCHED "  type: ashaa\n", "7:9:",
                 "scheduler.type: expected one of (fifo, asha, hyperband, median, pbt), got "
                 "\"ashaa\"; "
                 "did you mean 'asha'?",
                 NULL);
    expect_error(SCHED "  type: fifo\n  grace_period: 2\n", "8:3:",
                 "scheduler.grace_period: not used by the fifo scheduler; its keys are: type, "
                 "max_t",
                 NULL);
    expect_error(SCHED "  mode: pause\n", "7:9:", "scheduler.mode: expected one of (promote, stop)",
                 NULL);
    expect_error(SCHED "  grace: 2\n",
                 "7:3:", "scheduler.grace: unknown key; valid keys: type, max_t, grace_period",
                 NULL);
#undef SCHED
}

/* scheduler: {type: pbt, ...}: Ray Tune's defaults, both forms of a mutation, and the keys PBT
 * refuses to change mid-run. */
static void test_pbt(void)
{
#define PBT                                                                                     \
    HEAD "  optimizer.lr: {values: [0.01, 0.1]}\n  model.layers.1.rate: {values: [0.1, 0.3]}\n" \
         "scheduler:\n  type: pbt\n"
    kl_sweep *s = load_ok(PBT "  perturbation_interval: 2\n  hyperparam_mutations:\n"
                              "    optimizer.lr: {distribution: log_uniform_values, min: 0.001, "
                              "max: 0.5}\n    model.layers.1.rate: [0.1, 0.2, 0.3]\n");
    CHECK(s->sched.kind == KL_SCHED_PBT && s->sched.perturbation_interval == 2);
    CHECK(s->sched.quantile_fraction == 0.25 && s->sched.resample_probability == 0.25);
    CHECK(s->sched.max_t == 9 && s->nmutations == 2);
    CHECK(s->mutations[0].dist == KL_DIST_LOG_UNIFORM && s->mutations[0].max == 0.5);
    CHECK(s->mutations[1].dist == KL_DIST_GRID && s->mutations[1].nvalues == 3 &&
          strcmp(s->mutations[1].values[1], "0.2") == 0);
    kl_sweep_free(s);
    s = load_ok(PBT "  perturbation_interval: 3\n  quantile_fraction: 0.5\n"
                    "  resample_probability: 0\n  hyperparam_mutations: {optimizer.lr: [0.01, "
                    "0.1]}\n");
    CHECK(s->sched.quantile_fraction == 0.5 && s->sched.resample_probability == 0);
    kl_sweep_free(s);
    expect_error(PBT "  hyperparam_mutations: {optimizer.lr: [0.1]}\n",
                 "8:3:", "scheduler.perturbation_interval: missing; pbt checks each trial", NULL);
    expect_error(PBT "  perturbation_interval: 2\n",
                 "8:3:", "scheduler.hyperparam_mutations: missing; pbt needs the hyperparameters",
                 NULL);
    expect_error(PBT "  perturbation_interval: 9\n  hyperparam_mutations: {optimizer.lr: [0.1]}\n",
                 "9:26:", "perturbation_interval 9 is not below max_t 9", NULL);
    expect_error(PBT "  perturbation_interval: 2\n  quantile_fraction: 0.6\n"
                     "  hyperparam_mutations: {optimizer.lr: [0.1]}\n",
                 "10:22:", "scheduler.quantile_fraction: 0.6 is outside [0, 0.5]", NULL);
    expect_error(PBT "  perturbation_interval: 2\n  hyperparam_mutations: {model.layers.0.units: "
                     "[8, 16]}\n",
                 "10:26:",
                 "scheduler.hyperparam_mutations.model.layers.0.units: pbt cannot change "
                 "model.layers.0.units in the middle of a run",
                 "optimizer.lr, weight_decay");
    expect_error(PBT
                 "  perturbation_interval: 2\n  hyperparam_mutations: {optimizer.eps: [1e-8]}\n",
                 "10:26:", "optimizer.eps is not among the sweep's parameters; add it there", NULL);
    expect_error(PBT "  perturbation_interval: 2\n  hyperparam_mutations: {optimizer.lr: {value: "
                     "0.1}}\n",
                 "10:40:", "a mutation is a list of values or a distribution", "not one value");
    expect_error(PBT "  perturbation_interval: 2\n  grace_period: 1\n"
                     "  hyperparam_mutations: {optimizer.lr: [0.1]}\n",
                 "10:3:", "scheduler.grace_period: not used by the pbt scheduler",
                 "perturbation_interval, quantile_fraction");
#undef PBT
}

static void test_parameter_errors(void)
{
    expect_error(HEAD "  optimizer.lr: {unifrom: {min: 0.1, max: 0.2}}\n", "5:18:",
                 "parameters.optimizer.lr.unifrom: unknown distribution; did you mean 'uniform'?",
                 NULL);
    expect_error(HEAD "  optimizer.lr: {normal: {mu: 0, sigma: 1}}\n", "5:18:",
                 "parameters.optimizer.lr.normal: unknown distribution; use one of value, values",
                 NULL);
    expect_error(HEAD "  optimizer.lr: {value: 0.1, values: [0.2]}\n",
                 "5:30:", "parameters.optimizer.lr.values: a parameter has one distribution",
                 "'value'");
    expect_error(HEAD "  optimizer.lr: {probabilities: [1]}\n",
                 "5:17:", "parameters.optimizer.lr: no distribution", NULL);
    expect_error(HEAD "  optimizer.lr: 0.1\n",
                 "5:17:", "parameters.optimizer.lr: expected a mapping with one distribution",
                 NULL);
    expect_error(HEAD "  optimizer.lr: {uniform: {min: 0.1, max: 0.01}}\n",
                 "5:33:", "parameters.optimizer.lr.uniform.min: min 0.1 is above max 0.01", NULL);
    expect_error(HEAD "  optimizer.lr: {uniform: {min: 0.1, max: 0.1}}\n",
                 "5:33:", "parameters.optimizer.lr.uniform.min: min equals max", "value: 0.1");
    expect_error(HEAD "  optimizer.lr: {log_uniform_values: {min: 0, max: 0.1}}\n", "5:44:",
                 "parameters.optimizer.lr.log_uniform_values.min: log_uniform_values needs 0 < "
                 "min",
                 "not their logarithms");
    expect_error(HEAD "  optimizer.lr: {loguniform: {min: -9, max: -2}}\n",
                 "5:36:", "parameters.optimizer.lr.loguniform.min: loguniform needs 0 < min", NULL);
    expect_error(HEAD "  optimizer.lr: {q_uniform: {min: 0.1, max: 0.5, q: 0}}\n",
                 "5:53:", "parameters.optimizer.lr.q_uniform.q: q must be positive", NULL);
    expect_error(HEAD "  optimizer.lr: {quniform: {min: 0.1, max: 0.2, q: 0.5}}\n", "5:52:",
                 "parameters.optimizer.lr.quniform.q: no multiple of q = 0.5 lies in [0.1, 0.2]",
                 NULL);
    expect_error(HEAD "  optimizer.lr: {uniform: {min: 0.1}}\n",
                 "5:27:", "parameters.optimizer.lr.uniform.max: missing; uniform needs min and max",
                 NULL);
    expect_error(HEAD "  optimizer.lr: {uniform: {min: 0.1, max: 0.2, q: 0.1}}\n",
                 "5:48:", "parameters.optimizer.lr.uniform.q: unknown key", NULL);
    expect_error(HEAD "  optimizer.lr: {uniform: {min: low, max: 0.2}}\n",
                 "5:33:", "parameters.optimizer.lr.uniform.min: expected a number, got \"low\"",
                 NULL);
    expect_error(HEAD "  data.limit: {int_uniform: {min: 1.5, max: 9}}\n",
                 "5:35:", "parameters.data.limit.int_uniform.min: expected an integer",
                 "both included");
    expect_error(HEAD "  data.limit: {randint: {min: 1, max: 9.25}}\n",
                 "5:39:", "parameters.data.limit.randint.max: expected an integer", NULL);
    expect_error(HEAD "  train.batch_size: {values: []}\n",
                 "5:30:", "parameters.train.batch_size.values: expected a non-empty sequence",
                 NULL);
    expect_error(HEAD "  train.batch_size: {values: [32, 64], probabilities: [0.5]}\n", "5:55:",
                 "parameters.train.batch_size.probabilities: expected a sequence of 2 numbers, one "
                 "per value, got 1",
                 NULL);
    expect_error(HEAD "  train.batch_size: {values: [32, 64], probabilities: [1.5, -0.5]}\n",
                 "5:61:",
                 "parameters.train.batch_size.probabilities.1: a probability cannot be "
                 "negative",
                 NULL);
    expect_error(HEAD "  train.batch_size: {values: [32, 64], probabilities: [0.5, 0.4]}\n",
                 "5:55:", "parameters.train.batch_size.probabilities: the probabilities sum to 0.9",
                 NULL);
    expect_error(HEAD "  train.batch_size: {grid: [32], probabilities: [1]}\n",
                 "5:34:", "parameters.train.batch_size.probabilities: probabilities go with values",
                 NULL);
    expect_error(HEAD "  train.epochs: {values: [3, 5]}\n",
                 "5:3:", "parameters.train.epochs: the scheduler sets train.epochs",
                 "scheduler.max_t");
    expect_error(HEAD "  optimizer.lr: {value: 1}\n  optimizer.lr: {value: 2}\n",
                 "6:3:", "parameters.optimizer.lr: duplicate key", NULL);
    /* Within 1e-6 of 1 is accepted. */
    kl_sweep *s = load_ok(HEAD "  train.batch_size: {values: [1, 2, 3], "
                               "probabilities: [0.3333333, 0.3333333, 0.3333334]}\n"
                               "  data.limit: {int_uniform: {min: 5, max: 5}}\n");
    kl_sweep_free(s);
}

/* W&B's own form: the distribution's keys in the parameter mapping, the distribution named by
 * `distribution` or inferred (categorical, constant, int_uniform for integer bounds, uniform). */
static void test_wandb_forms(void)
{
    kl_sweep *s = load_ok(
        HEAD "  optimizer.lr: {distribution: log_uniform_values, min: 1e-4, max: 1e-2}\n"
             "  optimizer.weight_decay: {distribution: log_uniform, min: -9.2103404, max: 0}\n"
             "  optimizer.beta1: {distribution: uniform, min: 0.8, max: 0.95}\n"
             "  optimizer.beta2: {distribution: q_uniform, min: 0.9, max: 0.99, q: 0.01}\n"
             "  model.layers.0.units: {distribution: int_uniform, min: 16, max: 128}\n"
             "  data.limit: {min: 100, max: 200}\n"
             "  model.layers.1.rate: {min: 0, max: 0.5}\n"
             "  train.batch_size: {distribution: categorical, values: [32, 64],"
             " probabilities: [0.25, 0.75]}\n"
             "  optimizer.name: {distribution: constant, value: adamw}\n"
             "  train.seed: {values: [1, 2]}\n"
             "  name: {value: run}\n");
    if (!s)
        return;
    CHECK(s->nparams == 11);
    const kl_sweep_param *p = param(s, "optimizer.lr");
    CHECK(p->dist == KL_DIST_LOG_UNIFORM && p->min == 1e-4 && p->max == 1e-2);
    CHECK(p->pos.line == 5 && p->pos.col == 3);
    p = param(s, "optimizer.weight_decay"); /* e^-9.2103404 = 1e-4, e^0 = 1 */
    CHECK(p->dist == KL_DIST_LOG_UNIFORM && fabs(p->min - 1e-4) < 1e-10 && p->max == 1);
    p = param(s, "optimizer.beta1");
    CHECK(p->dist == KL_DIST_UNIFORM && p->min == 0.8 && p->max == 0.95);
    p = param(s, "optimizer.beta2");
    CHECK(p->dist == KL_DIST_Q_UNIFORM && p->q == 0.01 && p->min == 0.9);
    p = param(s, "model.layers.0.units");
    CHECK(p->dist == KL_DIST_INT_UNIFORM && p->min == 16 && p->max == 128);
    p = param(s, "data.limit");
    CHECK(p->dist == KL_DIST_INT_UNIFORM && p->min == 100 && p->max == 200);
    p = param(s, "model.layers.1.rate");
    CHECK(p->dist == KL_DIST_UNIFORM && p->min == 0 && p->max == 0.5);
    p = param(s, "train.batch_size");
    CHECK(p->dist == KL_DIST_VALUES && p->nvalues == 2 && p->probabilities &&
          p->probabilities[1] == 0.75);
    p = param(s, "optimizer.name");
    CHECK(p->dist == KL_DIST_VALUE && p->nvalues == 1 && strcmp(p->values[0], "adamw") == 0);
    p = param(s, "train.seed");
    CHECK(p->dist == KL_DIST_VALUES && p->nvalues == 2);
    CHECK(param(s, "name")->dist == KL_DIST_VALUE);
    kl_sweep_free(s);

    /* The same space in both forms draws the same trials. */
    kl_sweep *a = load_ok(HEAD "  optimizer.lr: {log_uniform_values: {min: 1e-4, max: 1e-2}}\n"
                               "  data.limit: {int_uniform: {min: 100, max: 200}}\n");
    kl_sweep *b = load_ok(HEAD "  optimizer.lr: {distribution: log_uniform_values, min: 1e-4, "
                               "max: 1e-2}\n"
                               "  data.limit: {min: 100, max: 200}\n");
    for (int64_t i = 0; a && b && i < 10; i++) {
        char **oa, **ob;
        int na, nb;
        kl_error err = {0};
        CHECK(kl_sweep_overrides(a, i, &oa, &na, &err) == KL_OK);
        CHECK(kl_sweep_overrides(b, i, &ob, &nb, &err) == KL_OK);
        CHECK(na == 2 && nb == 2 && !strcmp(oa[0], ob[0]) && !strcmp(oa[1], ob[1]));
        kl_sweep_overrides_free(oa, na);
        kl_sweep_overrides_free(ob, nb);
    }
    kl_sweep_free(a);
    kl_sweep_free(b);
}

static void test_wandb_errors(void)
{
    expect_error(HEAD "  optimizer.lr: {distribution: unifrom, min: 0.1, max: 0.2}\n", "5:32:",
                 "parameters.optimizer.lr.distribution: unknown distribution \"unifrom\"; did "
                 "you mean 'uniform'?",
                 NULL);
    expect_error(HEAD "  optimizer.lr: {distribution: normal, mu: 0, sigma: 1}\n",
                 "5:40:", "parameters.optimizer.lr.mu: unknown key", NULL);
    expect_error(HEAD "  optimizer.lr: {distribution: normal, min: 0, max: 1}\n",
                 "5:32:", "parameters.optimizer.lr.distribution: normal is not supported yet",
                 NULL);
    expect_error(HEAD "  optimizer.lr: {distribution: uniform, min: 0.1, max: 0.01}\n",
                 "5:46:", "parameters.optimizer.lr.min: min 0.1 is above max 0.01", NULL);
    expect_error(HEAD "  optimizer.lr: {distribution: uniform, min: 0.1}\n",
                 "5:17:", "parameters.optimizer.lr.max: missing; uniform needs min and max", NULL);
    expect_error(HEAD "  optimizer.lr: {distribution: log_uniform_values, min: 0, max: 0.1}\n",
                 "5:57:", "parameters.optimizer.lr.min: log_uniform_values needs 0 < min, got 0",
                 "not their logarithms");
    expect_error(HEAD "  optimizer.lr: {distribution: log_uniform, min: -1000, max: 0}\n",
                 "5:50:", "parameters.optimizer.lr.min: e^-1000 is out of range",
                 "log_uniform_values");
    expect_error(HEAD "  optimizer.lr: {distribution: q_uniform, min: 0.1, max: 0.5, q: 0}\n",
                 "5:66:", "parameters.optimizer.lr.q: q must be positive", NULL);
    expect_error(HEAD "  optimizer.lr: {distribution: uniform, min: 0.1, max: 0.5, q: 0.1}\n",
                 "5:61:",
                 "parameters.optimizer.lr.q: q does not go with distribution uniform, which "
                 "takes min and max",
                 NULL);
    expect_error(HEAD "  data.limit: {distribution: int_uniform, min: 1.5, max: 9}\n",
                 "5:48:", "parameters.data.limit.min: expected an integer", NULL);
    expect_error(HEAD "  optimizer.lr: {min: low, max: 0.2}\n",
                 "5:23:", "parameters.optimizer.lr.min: expected a number, got \"low\"", NULL);
    expect_error(HEAD "  train.batch_size: {distribution: categorical}\n", "5:21:",
                 "parameters.train.batch_size.values: missing; distribution categorical needs "
                 "values",
                 NULL);
    expect_error(HEAD "  train.batch_size: {distribution: categorical, values: [1], value: 1}\n",
                 "5:62:",
                 "parameters.train.batch_size.value: value does not go with distribution "
                 "categorical",
                 NULL);
    expect_error(HEAD "  train.batch_size: {distribution: constant, values: [1]}\n", "5:46:",
                 "parameters.train.batch_size.values: values does not go with distribution "
                 "constant",
                 NULL);
    expect_error(HEAD "  train.batch_size: {distribution: categorical, values: [32, 64], "
                      "probabilities: [0.5, 0.4]}\n",
                 "5:82:", "parameters.train.batch_size.probabilities: the probabilities sum to 0.9",
                 NULL);
    expect_error(HEAD "  optimizer.lr: {distribution: [uniform], min: 0.1, max: 0.2}\n",
                 "5:32:", "parameters.optimizer.lr.distribution: expected a distribution's name",
                 NULL);
    expect_error(HEAD "  optimizer.lr: {min: 0.1, max: 0.2, min: 0.3}\n",
                 "5:38:", "parameters.optimizer.lr.min: duplicate key", NULL);
    expect_error("base: base.yaml\nmetric: {name: val_loss}\nmethod: grid\nparameters:\n"
                 "  optimizer.lr: {distribution: uniform, min: 0.1, max: 0.2}\n",
                 "5:32:", "parameters.optimizer.lr: method grid enumerates values", NULL);
    /* Values the base config refuses are placed at the value, as in kiln's form. */
    expect_error(HEAD "  optimizer.lr: {min: 0, max: 0.1}\n",
                 "5:23:", "parameters.optimizer.lr.min: the base config (",
                 "refuses optimizer.lr=0: optimizer.lr");
    expect_error(HEAD "  model.layers.1.rate: {values: [0.1, 1.5]}\n",
                 "5:39:", "parameters.model.layers.1.rate.values.1: the base config", NULL);
    expect_error(HEAD "  optimizer:\n    parameters:\n      lr: {values: [0.1]}\n", "6:5:",
                 "parameters.optimizer.parameters: nested parameters (W&B's form for a "
                 "mapping's keys) are not supported; give each key its own dotted path",
                 NULL);
    expect_error(HEAD "  train.epochs: {min: 1, max: 3}\n",
                 "5:3:", "parameters.train.epochs: the scheduler sets train.epochs", NULL);
}

static void test_grid_errors(void)
{
#define GRID "base: base.yaml\nmetric: {name: val_loss}\nmethod: grid\nparameters:\n"
    expect_error(GRID "  optimizer.lr: {uniform: {min: 0.1, max: 0.2}}\n",
                 "5:18:", "parameters.optimizer.lr.uniform: method grid enumerates values", NULL);
    expect_error(GRID "  data.limit: {int_uniform: {min: 1, max: 3}}\n",
                 "5:16:", "parameters.data.limit.int_uniform: method grid enumerates values", NULL);
    expect_error(GRID "  train.batch_size: {values: [32, 64], probabilities: [0.5, 0.5]}\n",
                 "5:40:",
                 "parameters.train.batch_size.probabilities: method grid tries every "
                 "value once",
                 NULL);
#undef GRID
}

/* Keys and values the base config refuses are placed in the sweep file. */
static void test_base_config_errors(void)
{
    char want[512];
    snprintf(want, sizeof want,
             "parameters.optimizer.lrr: not a key the base config (%s) takes: optimizer.lrr: "
             "unknown key; did you mean 'lr'?",
             base_path);
    expect_error(HEAD "  optimizer.lrr: {values: [0.1, 0.2]}\n", "5:3:", want, NULL);
    expect_error(HEAD "  optimizer.lr: {value: 0.1}\n  model.layers.7.units: {value: 3}\n",
                 "6:3:", "parameters.model.layers.7.units: not a key the base config",
                 "no item '7' in a sequence of 2");
    expect_error(HEAD "  model.layers.1.units: {value: 3}\n",
                 "5:3:", "parameters.model.layers.1.units: not a key the base config",
                 "not a field of dropout");
    /* A value: at the value, quoting the override and the config's message. */
    expect_error(HEAD "  model.layers.1.rate: {values: [0.1, 1.5]}\n",
                 "5:39:", "parameters.model.layers.1.rate.values.1: the base config",
                 "refuses model.layers.1.rate=1.5: model.layers.1.rate: expected a number in "
                 "[0, 1), got 1.5");
    /* A range's ends are tried: lr must be positive. */
    expect_error(HEAD "  optimizer.lr: {uniform: {min: 0, max: 0.1}}\n",
                 "5:33:", "parameters.optimizer.lr.uniform.min: the base config",
                 "refuses optimizer.lr=0: optimizer.lr: expected a positive number, got 0");
    expect_error(HEAD "  model.layers.1.rate: {uniform: {min: 0.2, max: 1}}\n",
                 "5:50:", "parameters.model.layers.1.rate.uniform.max: the base config", "got 1");
    expect_error(HEAD "  train.batch_size: {uniform: {min: 16, max: 256}}\n",
                 "5:3:", "parameters.train.batch_size: the base config",
                 "int_uniform draws integers");
    expect_error(HEAD "  optimizer.name: {value: rmsprop}\n",
                 "5:27:", "parameters.optimizer.name.value: the base config",
                 "expected one of (sgd, adam, adamw), got \"rmsprop\"");
    /* Parameters that only make sense together are tried together: sgd takes momentum. */
    kl_sweep *s = load_ok(HEAD "  optimizer.name: {value: sgd}\n"
                               "  optimizer.momentum: {uniform: {min: 0.5, max: 0.99}}\n");
    kl_sweep_free(s);
    expect_error(HEAD "  optimizer.momentum: {uniform: {min: 0.5, max: 0.99}}\n",
                 "5:3:", "parameters.optimizer.momentum: not a key the base config",
                 "not used by adam");
}

/* "key=value" -> value as a number. */
static double value_of(const char *ov)
{
    const char *eq = strchr(ov, '=');
    return eq ? strtod(eq + 1, NULL) : NAN;
}

static char **overrides(const kl_sweep *s, int64_t i, int *n)
{
    char **ov = NULL;
    kl_error err = {0};
    if (!check_(kl_sweep_overrides(s, i, &ov, n, &err) == KL_OK, __FILE__, __LINE__,
                "trial overrides"))
        fprintf(stderr, "    trial %lld: %s\n", (long long)i, err.msg);
    return ov;
}

static bool same_trial(const kl_sweep *a, const kl_sweep *b, int64_t i)
{
    int na = 0, nb = 0;
    char **x = overrides(a, i, &na), **y = overrides(b, i, &nb);
    bool same = x && y && na == nb;
    for (int j = 0; same && j < na; j++)
        same = strcmp(x[j], y[j]) == 0;
    kl_sweep_overrides_free(x, na);
    kl_sweep_overrides_free(y, nb);
    return same;
}

#define SPACE                                                        \
    "run_cap: 100\n"                                                 \
    "parameters:\n"                                                  \
    "  optimizer.lr: {log_uniform_values: {min: 1e-4, max: 1e-2}}\n" \
    "  train.batch_size: {values: [32, 64, 128]}\n"                  \
    "  model.layers.0.units: {int_uniform: {min: 16, max: 256}}\n"

static void test_reproducible(void)
{
    const char *pre = "base: base.yaml\nmetric: {name: val_loss}\n";
    char text[1024];
    snprintf(text, sizeof text, "%sseed: 5\n" SPACE, pre);
    kl_sweep *a = load_ok(text), *b = load_ok(text);
    snprintf(text, sizeof text, "%sseed: 6\n" SPACE, pre);
    kl_sweep *c = load_ok(text);
    /* A parameter added at the end leaves the others' draws as they were. */
    snprintf(text, sizeof text, "%sseed: 5\n" SPACE "  optimizer.weight_decay: {value: 0.1}\n",
             pre);
    kl_sweep *d = load_ok(text);
    if (!a || !b || !c || !d)
        goto out;
    int differ = 0, prefix_same = 0;
    for (int64_t i = 99; i >= 0; i--) { /* any order of calls gives the same trials */
        CHECK(same_trial(a, b, i));
        differ += !same_trial(a, c, i);
        int na, nd;
        char **x = overrides(a, i, &na), **y = overrides(d, i, &nd);
        bool same = x && y && nd == na + 1;
        for (int j = 0; same && j < na; j++)
            same = strcmp(x[j], y[j]) == 0;
        prefix_same += same;
        kl_sweep_overrides_free(x, na);
        kl_sweep_overrides_free(y, nd);
    }
    CHECK(differ >= 90);
    CHECK(prefix_same == 100);
    int n;
    char **ov = overrides(a, 0, &n);
    CHECK(n == 3 && ov && strncmp(ov[0], "optimizer.lr=", 13) == 0);
    CHECK(n == 3 && ov && strncmp(ov[2], "model.layers.0.units=", 21) == 0);
    kl_sweep_overrides_free(ov, n);
    kl_error err = {0};
    CHECK(kl_sweep_overrides(a, 100, &ov, &n, &err) == KL_ERANGE && !ov && n == 0);
    CHECK(strstr(err.msg, "no trial 100; the sweep has trials 0 to 99") != NULL);
    CHECK(kl_sweep_overrides(a, -1, &ov, &n, &err) == KL_ERANGE);
out:
    kl_sweep_free(a);
    kl_sweep_free(b);
    kl_sweep_free(c);
    kl_sweep_free(d);
}

enum { DRAWS = 10000 };

static void test_random_bounds(void)
{
    kl_sweep *s = load_ok("base: base.yaml\nmetric: {name: val_loss}\nrun_cap: 10000\nseed: 3\n"
                          "parameters:\n"
                          "  train.label_smoothing: {uniform: {min: 0.1, max: 0.5}}\n"
                          "  optimizer.lr: {log_uniform_values: {min: 1e-4, max: 1e-2}}\n"
                          "  data.limit: {int_uniform: {min: 3, max: 7}}\n"
                          "  model.layers.1.rate: {q_uniform: {min: 0.05, max: 0.5, q: 0.05}}\n"
                          "  train.batch_size: {values: [32, 64, 128], "
                          "probabilities: [0.2, 0.3, 0.5]}\n"
                          "  optimizer.name: {grid: [adam, sgd]}\n");
    if (!s)
        return;
    double sum_u = 0, sum_log = 0;
    int inside = 0, ints = 0, qmult = 0, ends[2] = {0, 0}, limit[8] = {0}, batch[3] = {0}, sgd = 0;
    for (int64_t i = 0; i < DRAWS; i++) {
        int n;
        char **ov = overrides(s, i, &n);
        if (!ov)
            break;
        float u = (float)value_of(ov[0]), lr = (float)value_of(ov[1]);
        double lim = value_of(ov[2]), rate = value_of(ov[3]), bs = value_of(ov[4]);
        sum_u += u;
        sum_log += log(lr);
        inside += u >= 0.1f && u <= 0.5f && lr >= 1e-4f && lr <= 1e-2f && lim >= 3 && lim <= 7 &&
                  (float)rate >= 0.05f && (float)rate <= 0.5f;
        const char *v = strchr(ov[2], '=') + 1;
        ints += strspn(v, "0123456789") == strlen(v) && lim == floor(lim);
        qmult += fabs(rate / 0.05 - nearbyint(rate / 0.05)) < 1e-5;
        ends[0] += lim == 3;
        ends[1] += lim == 7;
        if (lim >= 3 && lim <= 7)
            limit[(int)lim]++;
        batch[0] += bs == 32;
        batch[1] += bs == 64;
        batch[2] += bs == 128;
        sgd += strcmp(ov[5], "optimizer.name=sgd") == 0;
        kl_sweep_overrides_free(ov, n);
    }
    CHECK(inside == DRAWS && ints == DRAWS && qmult == DRAWS);
    CHECK(ends[0] > 0 && ends[1] > 0);
    /* Uniform on [0.1, 0.5]: mean 0.3, standard error 0.0012. */
    CHECK_NEAR(sum_u / DRAWS, 0.3, 0.006);
    /* log(lr) uniform on [log 1e-4, log 1e-2]: mean log(1e-3), standard error 0.013. */
    CHECK_NEAR(sum_log / DRAWS, log(1e-3), 0.06);
    for (int k = 3; k <= 7; k++)
        CHECK_NEAR(limit[k] / (double)DRAWS, 0.2, 0.02);
    CHECK_NEAR(batch[0] / (double)DRAWS, 0.2, 0.02);
    CHECK_NEAR(batch[1] / (double)DRAWS, 0.3, 0.02);
    CHECK_NEAR(batch[2] / (double)DRAWS, 0.5, 0.02);
    CHECK_NEAR(sgd / (double)DRAWS, 0.5, 0.02); /* a grid under method random: drawn uniformly */
    kl_sweep_free(s);
}

/* Drawn floats print with few digits and read back as the same float; strings and collections
 * pass as written. */
static void test_value_text(void)
{
    kl_sweep *s = load_ok(HEAD "  model.layers.1.rate: {q_uniform: {min: 0.1, max: 0.3, q: 0.1}}\n"
                               "  name: {values: [\"007\", 'it''s', plain text]}\n"
                               "  model.layers: {value: [flatten, {dense: {units: 32}}]}\n");
    if (!s)
        return;
    int seen[3] = {0}, names[3] = {0};
    for (int64_t i = 0; i < 10; i++) {
        int n;
        char **ov = overrides(s, i, &n);
        if (!ov)
            break;
        seen[0] += strcmp(ov[0], "model.layers.1.rate=0.1") == 0;
        seen[1] += strcmp(ov[0], "model.layers.1.rate=0.2") == 0;
        seen[2] += strcmp(ov[0], "model.layers.1.rate=0.3") == 0;
        names[0] += strcmp(ov[1], "name=\"007\"") == 0;
        names[1] += strcmp(ov[1], "name=\"it's\"") == 0;
        names[2] += strcmp(ov[1], "name=plain text") == 0;
        CHECK(strcmp(ov[2], "model.layers=[flatten, {dense: {units: 32}}]") == 0);
        kl_sweep_overrides_free(ov, n);
    }
    CHECK(seen[0] + seen[1] + seen[2] == 10 && names[0] + names[1] + names[2] == 10);
    CHECK(names[0] > 0);
    kl_sweep_free(s);
}

static void test_grid(void)
{
    kl_sweep *s = load_ok("base: base.yaml\nmetric: {name: val_loss}\nmethod: grid\n"
                          "parameters:\n"
                          "  train.batch_size: {values: [16, 32, 64]}\n"
                          "  data.limit: {value: 500}\n"
                          "  optimizer.name: {grid: [adam, sgd]}\n");
    if (!s)
        return;
    static const char *const want[6][2] = {{"16", "adam"}, {"16", "sgd"},  {"32", "adam"},
                                           {"32", "sgd"},  {"64", "adam"}, {"64", "sgd"}};
    CHECK(kl_sweep_trials(s) == 6);
    int seen[6] = {0};
    for (int64_t i = 0; i < 6; i++) {
        int n;
        char **ov = overrides(s, i, &n);
        if (!ov)
            break;
        char a[64], b[64];
        snprintf(a, sizeof a, "train.batch_size=%s", want[i][0]);
        snprintf(b, sizeof b, "optimizer.name=%s", want[i][1]);
        CHECK(n == 3 && strcmp(ov[0], a) == 0 && strcmp(ov[1], "data.limit=500") == 0 &&
              strcmp(ov[2], b) == 0);
        for (int k = 0; k < 6; k++) {
            snprintf(a, sizeof a, "train.batch_size=%s", want[k][0]);
            snprintf(b, sizeof b, "optimizer.name=%s", want[k][1]);
            seen[k] += strcmp(ov[0], a) == 0 && strcmp(ov[2], b) == 0;
        }
        kl_sweep_overrides_free(ov, n);
    }
    for (int k = 0; k < 6; k++)
        CHECK(seen[k] == 1);
    kl_sweep_free(s);

    s = load_ok("base: base.yaml\nmetric: {name: val_loss}\nmethod: grid\nrun_cap: 4\n"
                "parameters:\n"
                "  train.batch_size: {values: [16, 32, 64]}\n"
                "  optimizer.name: {grid: [adam, sgd]}\n");
    if (s) {
        CHECK(kl_sweep_trials(s) == 4);
        int n;
        char **ov = overrides(s, 3, &n);
        CHECK(ov && strcmp(ov[0], "train.batch_size=32") == 0 &&
              strcmp(ov[1], "optimizer.name=sgd") == 0);
        kl_sweep_overrides_free(ov, n);
        kl_error err = {0};
        CHECK(kl_sweep_overrides(s, 4, &ov, &n, &err) == KL_ERANGE);
    }
    kl_sweep_free(s);
    /* run_cap above the grid's size leaves it whole. */
    s = load_ok("base: base.yaml\nmetric: {name: val_loss}\nmethod: grid\nrun_cap: 40\n"
                "parameters:\n  train.batch_size: {values: [16, 32, 64]}\n");
    CHECK(s && kl_sweep_trials(s) == 3);
    kl_sweep_free(s);
}

static void test_trial_config(void)
{
    kl_sweep *s = load_ok(HEAD "  optimizer.lr: {log_uniform_values: {min: 1e-4, max: 1e-2}}\n"
                               "  train.batch_size: {values: [32, 128]}\n");
    if (!s)
        return;
    int n;
    char **ov = overrides(s, 2, &n);
    const char *extra[] = {"train.epochs=3", "train.eval_every=1"};
    kl_error err = {0};
    kl_config *c = ov ? kl_sweep_config(s, ov, n, extra, 2, &err) : NULL;
    if (!check_(c != NULL, __FILE__, __LINE__, "trial config builds"))
        fprintf(stderr, "    %s\n", err.msg);
    if (c && ov) {
        CHECK(c->schedule.base_lr == strtof(strchr(ov[0], '=') + 1, NULL));
        CHECK(c->train.batch_size == (int64_t)value_of(ov[1]));
        CHECK(c->train.epochs == 3 && c->model.nlayers == 2 && strcmp(c->path, base_path) == 0);
    }
    kl_config_free(c);
    kl_sweep_overrides_free(ov, n);
    /* An override the config refuses is placed at its parameter in the sweep file. */
    char *bad[] = {"optimizer.lr=-1", "train.batch_size=32"};
    c = kl_sweep_config(s, bad, 2, NULL, 0, &err);
    CHECK(c == NULL && err.status == KL_EINVAL);
    char want[512];
    snprintf(want, sizeof want,
             "%s:5:3: parameters.optimizer.lr: the base config (%s) refuses optimizer.lr=-1: "
             "optimizer.lr: expected a positive number, got -1",
             sweep_path, base_path);
    if (!CHECK(strcmp(err.msg, want) == 0))
        fprintf(stderr, "    got:  %s\n    want: %s\n", err.msg, want);
    /* Extra overrides' errors stay the config loader's. */
    const char *bad_extra[] = {"train.epochz=3"};
    char *good[] = {"optimizer.lr=0.001", "train.batch_size=32"};
    c = kl_sweep_config(s, good, 2, bad_extra, 1, &err);
    CHECK(c == NULL && strstr(err.msg, "--set:3:7: train.epochz: unknown key") == err.msg);
    kl_sweep_free(s);
}

static void test_missing_file(void)
{
    kl_error err = {0};
    char path[192];
    snprintf(path, sizeof path, "%s/none.yaml", dir);
    CHECK(kl_sweep_load(path, &err) == NULL && err.status == KL_EIO);
    CHECK(strstr(err.msg, "cannot read sweep file") && strstr(err.msg, "none.yaml"));
    CHECK(kl_sweep_load(path, NULL) == NULL);
    expect_error("base: base.yaml\nmetric: [\n", "", "malformed YAML", NULL);
}

static const check_case cases[] = {
    CHECK_CASE(test_every_distribution),
    CHECK_CASE(test_defaults),
    CHECK_CASE(test_top_level),
    CHECK_CASE(test_inline_base),
    CHECK_CASE(test_top_level_errors),
    CHECK_CASE(test_scheduler_errors),
    CHECK_CASE(test_pbt),
    CHECK_CASE(test_parameter_errors),
    CHECK_CASE(test_grid_errors),
    CHECK_CASE(test_base_config_errors),
    CHECK_CASE(test_wandb_forms),
    CHECK_CASE(test_wandb_errors),
    CHECK_CASE(test_reproducible),
    CHECK_CASE(test_random_bounds),
    CHECK_CASE(test_value_text),
    CHECK_CASE(test_grid),
    CHECK_CASE(test_trial_config),
    CHECK_CASE(test_missing_file),
};

int main(int argc, char **argv)
{
    return sweep_fixture_run("test_sweep", "sweep", cases, CHECK_NCASES(cases), argc, argv);
}
