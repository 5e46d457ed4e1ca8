/* Population-based training's rules with hand-worked draws and a fixed seed: the scheduler's
 * order of jobs (new trials, then the least trained paused one), the bottom and top quantiles
 * (Ray's ceil(n q), at most floor(n / 2), finished trials left out), the donor drawn among the
 * top quantile's trials at rest, the lineage an exploiting trial takes, and explore's rules
 * (x0.8 / x1.2, list neighbours, resampling, clamping) for tune/pbt.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kiln/sched.h"
#include "tune/pbt_impl.h"

static kl_sched *make(int n, int interval, int max_t, double q, uint64_t seed)
{
    kl_sched_config c;
    memset(&c, 0, sizeof c);
    c.kind = KL_SCHED_PBT;
    c.max_t = max_t;
    c.perturbation_interval = interval;
    c.quantile_fraction = q;
    c.resample_probability = 0.25;
    c.seed = seed;
    kl_error err = {0};
    kl_sched *s = kl_sched_new(&c, true, n, &err);
    if (!s)
        fprintf(stderr, "kl_sched_new: %s\n", err.msg);
    return s;
}

/* Trial `trial`'s job from kl_sched_next, trained from its t to until_t with value v at the end
 * (and v - 1 before): the decision at until_t. */
static kl_decision train(kl_sched *s, int64_t trial, int from, int until, double v)
{
    kl_decision d = KL_DECIDE_CONTINUE;
    for (int t = from + 1; t <= until && d == KL_DECIDE_CONTINUE; t++)
        d = kl_sched_result(s, trial, t, t == until ? v : v - 1);
    return d;
}

static bool job_is(kl_job j, kl_job_kind kind, int64_t trial, int until_t)
{
    return j.kind == kind && j.trial == trial && j.until_t == until_t;
}

static void test_order_and_exploit(void)
{
    kl_sched *s = make(4, 2, 6, 0.25, 1);
    if (!CHECK(s))
        return;
    /* New trials first, each to the first perturbation point. */
    double first[4] = {0.5, 0.9, 0.7, 0.6};
    for (int i = 0; i < 4; i++) {
        kl_job j = kl_sched_next(s);
        CHECK(job_is(j, KL_JOB_NEW, i, 2));
        CHECK(kl_sched_result(s, i, 1, 0.1) == KL_DECIDE_CONTINUE);
        CHECK(kl_sched_result(s, i, 2, first[i]) == KL_DECIDE_PAUSE);
    }
    /* All paused at t = 2: the lowest id runs next. n = 4, ceil(4 x 0.25) = 1: trial 0 (0.5)
     * is the bottom quantile and trial 1 (0.9) the top; trial 0 exploits it and takes its
     * lineage: its t, last and best value. */
    kl_job j = kl_sched_next(s);
    CHECK(job_is(j, KL_JOB_PROMOTE, 0, 4));
    CHECK(kl_sched_donor(s, 0) == 1);
    CHECK(kl_sched_last_t(s, 0) == 2 && kl_sched_best(s, 0) == 0.9 && kl_sched_last(s, 0) == 0.9);
    /* Trial 1 is in the top quantile: no exploit. Ranked now: 3 (0.6), 2 (0.7), 0 (0.9, its
     * copy), 1 (0.9; equal scores rank by id). */
    j = kl_sched_next(s);
    CHECK(job_is(j, KL_JOB_PROMOTE, 1, 4) && kl_sched_donor(s, 1) == -1);
    j = kl_sched_next(s);
    CHECK(job_is(j, KL_JOB_PROMOTE, 2, 4) && kl_sched_donor(s, 2) == -1);
    /* Trial 3 is the bottom, but the top (trial 1) is running, its checkpoint moving: no
     * trial of the top quantile is at rest, so no exploit this time. */
    j = kl_sched_next(s);
    CHECK(job_is(j, KL_JOB_PROMOTE, 3, 4) && kl_sched_donor(s, 3) == -1);
    CHECK(kl_sched_next(s).kind == KL_JOB_WAIT);
    /* Trial 0 goes on from its copied t = 2 and pauses at 4 with 0.95: the best, no exploit. */
    CHECK(train(s, 0, 2, 4, 0.95) == KL_DECIDE_PAUSE);
    j = kl_sched_next(s);
    CHECK(job_is(j, KL_JOB_PROMOTE, 0, 6) && kl_sched_donor(s, 0) == -1);
    CHECK(train(s, 0, 4, 6, 0.96) == KL_DECIDE_DONE);
    CHECK(kl_sched_state(s, 0) == KL_TRIAL_DONE);
    /* Trial 3 pauses at 4 with 0.4, trial 2 with 0.8, trial 1 with 0.3. Trial 0 is done and
     * ranks no more (Ray leaves finished trials out): n = 3, ceil(0.75) = 1. The least trained
     * first: all at 4, so trial 1 (0.3, the bottom), whose donor is the top, trial 2 (0.8). */
    CHECK(train(s, 3, 2, 4, 0.4) == KL_DECIDE_PAUSE);
    CHECK(train(s, 2, 2, 4, 0.8) == KL_DECIDE_PAUSE);
    CHECK(train(s, 1, 2, 4, 0.3) == KL_DECIDE_PAUSE);
    j = kl_sched_next(s);
    CHECK(job_is(j, KL_JOB_PROMOTE, 1, 6) && kl_sched_donor(s, 1) == 2);
    CHECK(kl_sched_best(s, 1) == 0.8);
    /* The best trial: the one recorded at the most epochs, trial 0 at max_t. */
    CHECK(kl_sched_best_trial(s) == 0);
    kl_sched_free(s);
}

/* Quantiles: ceil(n q) trials each, at most floor(n / 2) (Ray's); q = 0 exploits nothing. With
 * two top trials at rest the donor is the k-th of them, k = floor(u x 2), u the seed's draw for
 * (trial 0, t = 2): 0.781485 with seed 1 (the better), 0.380365 with seed 3 (the other). */
static void test_quantiles_and_draws(void)
{
    CHECK(fabs(kl__pbt_unit(1, 0, 2, 0) - 0.781485) < 1e-6);
    CHECK(fabs(kl__pbt_unit(3, 0, 2, 0) - 0.380365) < 1e-6);
    const struct {
        uint64_t seed;
        double q;
        int64_t donor;
    } cases[] = {{1, 0.5, 3}, {3, 0.5, 2}, {1, 0.0, -1}, {1, 0.25, 3}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        kl_sched *s = make(4, 2, 6, cases[c].q, cases[c].seed);
        if (!CHECK(s))
            return;
        double v[4] = {0.1, 0.2, 0.7, 0.8}; /* bottom: 0, 1; top: 2, 3 */
        for (int i = 0; i < 4; i++) {
            kl_sched_next(s);
            train(s, i, 0, 2, v[i]);
        }
        CHECK(kl_sched_next(s).trial == 0);
        if (!CHECK(kl_sched_donor(s, 0) == cases[c].donor))
            fprintf(stderr, "    case %zu: donor %lld\n", c, (long long)kl_sched_donor(s, 0));
        kl_sched_free(s);
    }
    /* Three trials, q = 0.5: ceil(1.5) = 2 is more than 1.5, so floor(1.5) = 1 each. Trial 0
     * (the bottom) exploits trial 2 and ranks with its value (3) from then on, so trial 1 (2)
     * is the bottom when its turn comes, and exploits trial 2 too. */
    kl_sched *s = make(3, 2, 6, 0.5, 1);
    for (int i = 0; i < 3; i++) {
        kl_sched_next(s);
        train(s, i, 0, 2, (double)(i + 1));
    }
    CHECK(kl_sched_next(s).trial == 0 && kl_sched_donor(s, 0) == 2);
    CHECK(kl_sched_next(s).trial == 1 && kl_sched_donor(s, 1) == 2);
    CHECK(kl_sched_next(s).trial == 2 && kl_sched_donor(s, 2) == -1);
    kl_sched_free(s);
    /* One trial has nobody to copy; a failed trial ranks no more. */
    s = make(2, 1, 3, 0.5, 1);
    kl_sched_next(s);
    train(s, 0, 0, 1, 0.5);
    CHECK(kl_sched_next(s).kind == KL_JOB_NEW);
    kl_sched_failed(s, 1);
    CHECK(kl_sched_next(s).trial == 0 && kl_sched_donor(s, 0) == -1);
    kl_sched_free(s);
}

static kl_sweep_param range(kl_sweep_dist dist, double min, double max)
{
    kl_sweep_param p = {.path = "optimizer.lr", .dist = dist, .min = min, .max = max, .q = 0.5};
    return p;
}

static bool explores(const kl_sweep_param *m, const char *cur, double u0, double u1,
                     const char *want)
{
    char out[64];
    kl_error err = {0};
    double u[2] = {u0, u1};
    kl_status st = kl__pbt_explore_one(m, 0.25, cur, u, out, sizeof out, &err);
    bool ok = st == KL_OK && !strcmp(out, want);
    if (!ok)
        fprintf(stderr, "    %s from %s with (%g, %g): got %s (%s), want %s\n", m->path, cur, u0,
                u1, st == KL_OK ? out : "error", err.msg, want);
    return ok;
}

static void test_explore(void)
{
    /* A range: u[0] >= 0.25 perturbs, by 1.2 when u[1] > 0.5, else by 0.8; clamped to it. */
    kl_sweep_param lr = range(KL_DIST_LOG_UNIFORM, 1e-3, 0.5);
    CHECK(explores(&lr, "0.1", 0.9, 0.7, "0.12"));
    CHECK(explores(&lr, "0.1", 0.9, 0.3, "0.08"));
    CHECK(explores(&lr, "0.1", 0.25, 0.5, "0.08")); /* 0.5 is not above 0.5 */
    CHECK(explores(&lr, "0.45", 0.9, 0.9, "0.5"));
    CHECK(explores(&lr, "0.001", 0.9, 0.1, "0.001"));
    /* u[0] < 0.25 draws afresh: log-uniform at u[1] = 0.5 is sqrt(1e-3 x 0.5). */
    CHECK(explores(&lr, "0.1", 0.1, 0.5, "0.02236068"));
    kl_sweep_param units = range(KL_DIST_INT_UNIFORM, 1, 10);
    CHECK(explores(&units, "7", 0.9, 0.9, "8")); /* 8.4, truncated as Ray's int() */
    CHECK(explores(&units, "7", 0.9, 0.1, "5")); /* 5.6 */
    kl_sweep_param q = range(KL_DIST_Q_UNIFORM, 0, 10);
    CHECK(explores(&q, "2.5", 0.9, 0.9, "3")); /* 3.0, a multiple of 0.5 */
    /* A list: the previous value when u[1] > 0.5, else the next, clamped at the ends; a value
     * not in it, or u[0] < 0.25, draws the u[1]-th part. Values compare as numbers. */
    char *vals[] = {"0.1", "0.2", "0.3"};
    kl_sweep_param list = {
        .path = "model.layers.1.rate", .dist = KL_DIST_GRID, .values = vals, .nvalues = 3};
    CHECK(explores(&list, "0.2", 0.9, 0.7, "0.1"));
    CHECK(explores(&list, "0.2", 0.9, 0.3, "0.3"));
    CHECK(explores(&list, "0.3", 0.9, 0.3, "0.3"));
    CHECK(explores(&list, "0.1", 0.9, 0.7, "0.1"));
    CHECK(explores(&list, "0.20", 0.9, 0.7, "0.1"));
    CHECK(explores(&list, "0.25", 0.9, 0.5, "0.2"));
    CHECK(explores(&list, "0.2", 0.1, 0.99, "0.3"));
    /* values: [...] as a distribution is Ray's tune.choice: a number to perturb, unclamped. */
    kl_sweep_param choice = {
        .path = "optimizer.lr", .dist = KL_DIST_VALUES, .values = vals, .nvalues = 3};
    CHECK(explores(&choice, "0.3", 0.9, 0.9, "0.36"));
    CHECK(explores(&choice, "0.3", 0.1, 0.0, "0.1"));
    char out[64];
    kl_error err = {0};
    double u[2] = {0.9, 0.9};
    CHECK(kl__pbt_explore_one(&choice, 0.25, "adam", u, out, sizeof out, &err) == KL_EINVAL &&
          strstr(err.msg, "optimizer.lr is 'adam', which is no number to perturb"));
}

static const check_case cases[] = {
    CHECK_CASE(test_order_and_exploit),
    CHECK_CASE(test_quantiles_and_draws),
    CHECK_CASE(test_explore),
};

int main(int argc, char **argv)
{
    return check_run("test_pbt", cases, CHECK_NCASES(cases), argc, argv);
}
