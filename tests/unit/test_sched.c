/* Tests of the trial schedulers (include/kiln/sched.h) and the curve-table simulator
 * (include/kiln/simulate.h): hand-worked ASHA sequences, ties, milestones at and off exact
 * powers of eta, stop-mode cutoffs against numpy's, Hyperband brackets, the median rule, fifo,
 * failed and requeued trials, random sweeps of 10,000 trials against the paper's rule recomputed
 * by brute force, and curve tables with their errors. */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kiln/sched.h"
#include "kiln/simulate.h"

static kl_sched_config config(kl_sched_kind kind, int grace, int eta, int max_t)
{
    kl_sched_config c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    c.grace_period = grace;
    c.reduction_factor = eta;
    c.max_t = max_t;
    return c;
}

static kl_sched *make(kl_sched_config c, bool maximize, int64_t n)
{
    kl_error err = {0};
    kl_sched *s = kl_sched_new(&c, maximize, n, &err);
    if (!CHECK(s != NULL))
        fprintf(stderr, "    %s\n", err.msg);
    return s;
}

/* A scheduler for n trials with the first k started (each checked to be new trial i). */
static kl_sched *started(kl_sched_config c, bool maximize, int64_t n, int k)
{
    kl_sched *s = make(c, maximize, n);
    for (int i = 0; s && i < k; i++) {
        kl_job j = kl_sched_next(s);
        CHECK(j.kind == KL_JOB_NEW && j.trial == i);
    }
    return s;
}

typedef double (*curve_fn)(int64_t trial, int t);

/* One worker: takes jobs until NONE, trains each from the trial's last t on, reporting
 * curve(trial, t) every epoch until a decision other than CONTINUE. Writes a token per job:
 * "N3/1P" = new trial 3, ended at t = 1 with PAUSE; "P3>2/9D" = trial 3 promoted to rung 2,
 * ended at t = 9 with DONE (decisions C P S D); "X" = NONE. Checks that a trial never trains past
 * its job's until_t and that PAUSE and DONE come exactly at it. */
static void drive_serial(kl_sched *s, curve_fn curve, char *out, size_t cap)
{
    static const char dec[] = "CPSD";
    size_t len = 0;
    out[0] = '\0';
    for (int guard = 0; guard < 100000; guard++) {
        kl_job j = kl_sched_next(s);
        if (j.kind == KL_JOB_NONE) {
            snprintf(out + len, cap - len, "X");
            return;
        }
        if (!CHECK(j.kind == KL_JOB_NEW || j.kind == KL_JOB_PROMOTE))
            return;
        CHECK(kl_sched_state(s, j.trial) == KL_TRIAL_RUNNING);
        int t = kl_sched_last_t(s, j.trial);
        kl_decision d;
        do {
            t++;
            d = kl_sched_result(s, j.trial, t, curve(j.trial, t));
        } while (d == KL_DECIDE_CONTINUE && t < j.until_t);
        CHECK(d != KL_DECIDE_CONTINUE);
        CHECK(t <= j.until_t);
        if (d == KL_DECIDE_PAUSE || d == KL_DECIDE_DONE)
            CHECK(t == j.until_t);
        if (j.kind == KL_JOB_NEW)
            len += (size_t)snprintf(out + len, cap - len, "N%lld/%d%c ", (long long)j.trial, t,
                                    dec[d]);
        else
            len += (size_t)snprintf(out + len, cap - len, "P%lld>%d/%d%c ", (long long)j.trial,
                                    j.rung, t, dec[d]);
        if (len >= cap)
            return;
    }
    CHECK(!"drive_serial did not end");
}

static bool check_seq(const char *got, const char *want)
{
    if (check_(strcmp(got, want) == 0, __FILE__, __LINE__, "job sequence")) {
        return true;
    }
    fprintf(stderr, "    got  %s\n    want %s\n", got, want);
    return false;
}

/* A scheduler for n trials driven by one worker along curve (drive_serial), its job sequence
 * checked against want; returned for further checks (NULL when it could not be made). */
static kl_sched *serial(kl_sched_config c, bool maximize, int64_t n, curve_fn curve,
                        const char *want)
{
    char got[1024];
    kl_sched *s = make(c, maximize, n);
    if (s) {
        drive_serial(s, curve, got, sizeof got);
        check_seq(got, want);
    }
    return s;
}

/* The hand-worked example: 9 trials whose curves are base + t / 100, so every trial keeps its
 * rank at every t. */
static const double hand_base[9] = {0.5, 0.7, 0.6, 0.9, 0.4, 0.8, 0.3, 0.95, 0.2};
static double hand_curve(int64_t i, int t)
{
    return hand_base[i] + t / 100.0;
}
static double hand_curve_neg(int64_t i, int t)
{
    return -hand_curve(i, t);
}

/* ASHA, promote mode, eta = 3, r = 1, R = 27 (rungs 1, 3, 9, 27), 9 trials, one worker.
 * Rung 0 values are base + 0.01; ranks in brackets, "top m" = floor(n / 3):
 *   N0 .51, N1 .71, N2 .61: n=3, m=1: trial 1 is best and unpromoted  -> P1>1 (.73 at t=3)
 *   rung 1 n=1 (m=0); rung 0: best paused is 2, rank 1 >= 1            -> N3 (.91)
 *   rung 0 n=4, m=1: 3 is best, unpromoted                              -> P3>1 (.93)
 *   rung 1 n=2 (m=0); rung 0 best paused 2 has rank 2                   -> N4 (.41), N5 (.81)
 *   rung 0 n=6, m=2: 5 has rank 1 (behind 3)                            -> P5>1 (.83)
 *   rung 1 n=3, m=1: 3 (.93) is best, checked before rung 0             -> P3>2 (.99 at t=9)
 *   rung 2 n=1; rung 1: 5 has rank 1; rung 0 n=6: 2 has rank 3          -> N6 (.31), N7 (.96)
 *   rung 0 n=8, m=2: 7 is best                                          -> P7>1 (.98)
 *   rung 1 n=4, m=1: 7 is best                                          -> P7>2 (1.04)
 *   rung 2 n=2 (m=0); rung 1: 5 rank 2; rung 0: 2 rank 4                -> N8 (.21)
 *   nothing promotable, no trial left, nothing running                  -> NONE
 * Rung 0 ends with 4 promoted (1, 3, 5, 7) of n = 9, more than floor(9 / 3) = 3: each was in the
 * top third when it went (1 when n was 3), as the paper's rule allows. Epochs: 9 + 4 x 2 + 2 x 6
 * = 29. */
static const char *hand_want = "N0/1P N1/1P N2/1P P1>1/3P N3/1P P3>1/3P N4/1P N5/1P P5>1/3P "
                               "P3>2/9P N6/1P N7/1P P7>1/3P P7>2/9P N8/1P X";

static void test_asha_hand(void)
{
    char got[1024];
    kl_sched *s = make(config(KL_SCHED_ASHA, 1, 3, 27), true, 9);
    if (!s)
        return;
    CHECK(kl_sched_num_rungs(s) == 4);
    drive_serial(s, hand_curve, got, sizeof got);
    check_seq(got, hand_want);
    CHECK(kl_sched_rung_count(s, 0) == 9);
    CHECK(kl_sched_rung_count(s, 1) == 4);
    CHECK(kl_sched_rung_count(s, 2) == 2);
    CHECK(kl_sched_rung_count(s, 3) == 0);
    CHECK(kl_sched_best_trial(s) == 7);
    CHECK(kl_sched_rung(s, 7) == 2 && kl_sched_rung(s, 5) == 1 && kl_sched_rung(s, 8) == 0);
    CHECK(kl_sched_last_t(s, 3) == 9);
    CHECK_NEAR(kl_sched_last(s, 3), 0.99, 1e-12);
    CHECK_NEAR(kl_sched_best(s, 7), 1.04, 1e-12);
    for (int i = 0; i < 9; i++)
        CHECK(kl_sched_state(s, i) == KL_TRIAL_PAUSED);
    CHECK(kl_sched_state(s, 9) == KL_TRIAL_PENDING);
    CHECK(kl_sched_created(s) == 9);
    kl_sched_free(s);

    /* The same goal minimized: the same sequence. */
    s = serial(config(KL_SCHED_ASHA, 1, 3, 27), false, 9, hand_curve_neg, hand_want);
    if (!s)
        return;
    CHECK(kl_sched_best_trial(s) == 7);
    kl_sched_free(s);

    /* R = 9 (rungs 1, 3, 9): the rung-2 promotions are the top, so they end DONE. */
    s = serial(config(KL_SCHED_ASHA, 1, 3, 9), true, 9, hand_curve,
               "N0/1P N1/1P N2/1P P1>1/3P N3/1P P3>1/3P N4/1P N5/1P P5>1/3P P3>2/9D N6/1P "
               "N7/1P P7>1/3P P7>2/9D N8/1P X");
    if (!s)
        return;
    CHECK(kl_sched_state(s, 3) == KL_TRIAL_DONE && kl_sched_state(s, 7) == KL_TRIAL_DONE);
    CHECK(kl_sched_best_trial(s) == 7);
    kl_sched_free(s);
}

static double flat_curve(int64_t i, int t)
{
    return 0.5;
}

/* Ties rank by arrival at the rung: the earlier one is better. */
static void test_asha_ties(void)
{
    /* All equal, one worker: trial 0 arrived first, so it is the top third of 3. */
    kl_sched *s =
        serial(config(KL_SCHED_ASHA, 1, 3, 27), true, 3, flat_curve, "N0/1P N1/1P N2/1P P0>1/3P X");
    if (!s)
        return;
    kl_sched_free(s);

    /* Three workers report in the order 2, 0, 1 with equal values: 2 arrived first. */
    s = make(config(KL_SCHED_ASHA, 1, 3, 27), true, 6);
    if (!s)
        return;
    for (int i = 0; i < 3; i++) {
        kl_job j = kl_sched_next(s);
        CHECK(j.kind == KL_JOB_NEW && j.trial == i && j.rung == 0 && j.until_t == 1);
    }
    CHECK(kl_sched_result(s, 2, 1, 0.5) == KL_DECIDE_PAUSE);
    CHECK(kl_sched_result(s, 0, 1, 0.5) == KL_DECIDE_PAUSE);
    CHECK(kl_sched_result(s, 1, 1, 0.5) == KL_DECIDE_PAUSE);
    kl_job j = kl_sched_next(s);
    CHECK(j.kind == KL_JOB_PROMOTE && j.trial == 2 && j.rung == 1 && j.until_t == 3);
    /* Three more, equal, arriving 5, 3, 4: n = 6, m = 2: 2 is promoted, 0 is next by arrival. */
    for (int i = 3; i < 6; i++)
        CHECK(kl_sched_next(s).trial == i);
    CHECK(kl_sched_result(s, 5, 1, 0.5) == KL_DECIDE_PAUSE);
    CHECK(kl_sched_result(s, 3, 1, 0.5) == KL_DECIDE_PAUSE);
    CHECK(kl_sched_result(s, 4, 1, 0.5) == KL_DECIDE_PAUSE);
    j = kl_sched_next(s);
    CHECK(j.kind == KL_JOB_PROMOTE && j.trial == 0);
    j = kl_sched_next(s); /* rank 2 is not in the top 2: nothing to start, 2 trials running */
    CHECK(j.kind == KL_JOB_WAIT && j.trial == -1);
    kl_sched_free(s);
}

/* Values that are not finite rank last and are never promoted. */
static void test_asha_nan(void)
{
    kl_sched *s = started(config(KL_SCHED_ASHA, 1, 3, 27), true, 4, 3);
    if (!s)
        return;
    CHECK(kl_sched_result(s, 0, 1, NAN) == KL_DECIDE_PAUSE);
    CHECK(kl_sched_result(s, 1, 1, INFINITY) == KL_DECIDE_PAUSE); /* not finite: the worst */
    CHECK(kl_sched_result(s, 2, 1, -1e300) == KL_DECIDE_PAUSE);
    kl_job j = kl_sched_next(s);
    CHECK(j.kind == KL_JOB_PROMOTE && j.trial == 2);
    CHECK(isnan(kl_sched_last(s, 1)) && isnan(kl_sched_best(s, 1)));
    CHECK(kl_sched_best_trial(s) == 2);
    kl_sched_free(s);

    s = make(config(KL_SCHED_ASHA, 1, 3, 27), true, 4);
    if (!s)
        return;
    for (int i = 0; i < 3; i++) {
        kl_sched_next(s);
        kl_sched_result(s, i, 1, NAN);
    }
    j = kl_sched_next(s); /* all NaN: no promotion, a new trial */
    CHECK(j.kind == KL_JOB_NEW && j.trial == 3);
    CHECK(kl_sched_best_trial(s) == -1);
    kl_sched_free(s);
}

static void check_milestones(kl_sched_kind kind, int grace, int eta, int max_t, const int *want,
                             int n)
{
    kl_sched *s = make(config(kind, grace, eta, max_t), true, 1);
    if (!s)
        return;
    int ok = kl_sched_num_rungs(s) == n;
    for (int k = 0; ok && k < n; k++)
        ok = kl_sched_milestone(s, k) == want[k];
    ok = ok && kl_sched_milestone(s, n) == -1 && kl_sched_milestone(s, -1) == -1;
    if (!check_(ok, __FILE__, __LINE__, "milestones")) {
        fprintf(stderr, "    grace %d eta %d max_t %d: got", grace, eta, max_t);
        for (int k = 0; k < kl_sched_num_rungs(s); k++)
            fprintf(stderr, " %d", kl_sched_milestone(s, k));
        fprintf(stderr, "\n");
    }
    kl_sched_free(s);
}

/* Milestones at exact powers of eta (where floor(log(R) / log(eta)) is off by one in floating
 * point: log(243) / log(3) = 4.999...) and off them. */
static void test_milestones(void)
{
    check_milestones(KL_SCHED_ASHA, 1, 3, 27, (int[]){1, 3, 9, 27}, 4);
    check_milestones(KL_SCHED_ASHA, 1, 3, 81, (int[]){1, 3, 9, 27, 81}, 5);
    check_milestones(KL_SCHED_ASHA, 1, 3, 243, (int[]){1, 3, 9, 27, 81, 243}, 6);
    check_milestones(KL_SCHED_ASHA, 1, 3, 30, (int[]){1, 3, 9, 27, 30}, 5);
    check_milestones(KL_SCHED_ASHA, 1, 3, 26, (int[]){1, 3, 9, 26}, 4);
    check_milestones(KL_SCHED_ASHA, 1, 3, 28, (int[]){1, 3, 9, 27, 28}, 5);
    check_milestones(KL_SCHED_ASHA, 3, 3, 27, (int[]){3, 9, 27}, 3);
    check_milestones(KL_SCHED_ASHA, 2, 2, 16, (int[]){2, 4, 8, 16}, 4);
    check_milestones(KL_SCHED_ASHA, 1, 4, 64, (int[]){1, 4, 16, 64}, 4);
    check_milestones(KL_SCHED_ASHA, 5, 3, 5, (int[]){5}, 1);
    check_milestones(KL_SCHED_ASHA, 1, 3, 1, (int[]){1}, 1);
    check_milestones(KL_SCHED_FIFO, 1, 3, 27, (int[]){27}, 1);
    check_milestones(KL_SCHED_MEDIAN, 2, 3, 27, (int[]){27}, 1);
    /* No overflow near INT_MAX: 1, 2, ..., 2^30, then INT_MAX. */
    int big[32];
    for (int k = 0; k < 31; k++)
        big[k] = 1 << k;
    big[31] = INT_MAX;
    check_milestones(KL_SCHED_ASHA, 1, 2, INT_MAX, big, 32);

    /* Promote mode starts at rung 0's milestone, stop mode trains toward max_t. */
    kl_sched *s = make(config(KL_SCHED_ASHA, 2, 3, 30), true, 2);
    if (!s)
        return;
    kl_job j = kl_sched_next(s);
    CHECK(j.kind == KL_JOB_NEW && j.rung == 0 && j.until_t == 2);
    kl_sched_free(s);
    kl_sched_config c = config(KL_SCHED_ASHA, 2, 3, 30);
    c.stop_mode = true;
    s = make(c, true, 2);
    if (!s)
        return;
    j = kl_sched_next(s);
    CHECK(j.kind == KL_JOB_NEW && j.rung == 3 && j.until_t == 30);
    kl_sched_free(s);
}

static void check_refused(kl_sched_config c, int64_t n, const char *word)
{
    kl_error err = {0};
    kl_sched *s = kl_sched_new(&c, true, n, &err);
    if (!check_(s == NULL && err.status == KL_EINVAL && strstr(err.msg, word), __FILE__, __LINE__,
                "refused with a message"))
        fprintf(stderr, "    want '%s' in: %s\n", word, err.msg);
    kl_sched_free(s);
}

static void test_config_errors(void)
{
    check_refused(config(KL_SCHED_ASHA, 1, 1, 27), 10, "reduction_factor");
    check_refused(config(KL_SCHED_HYPERBAND, 1, 0, 27), 10, "reduction_factor");
    check_refused(config(KL_SCHED_ASHA, 28, 3, 27), 10, "grace_period (28) is larger than max_t");
    check_refused(config(KL_SCHED_MEDIAN, 0, 3, 27), 10, "grace_period");
    check_refused(config(KL_SCHED_FIFO, 1, 3, 0), 10, "max_t");
    check_refused(config((kl_sched_kind)99, 1, 3, 27), 10, "not one of");
    check_refused(config(KL_SCHED_ASHA, 1, 3, 27), -1, "trials");
    kl_sched_config c = config(KL_SCHED_HYPERBAND, 1, 3, 27);
    c.brackets = -1;
    check_refused(c, 10, "brackets");
    kl_error err = {0};
    CHECK(kl_sched_new(NULL, true, 1, &err) == NULL && err.status == KL_EINVAL);
    /* fifo ignores eta and grace. */
    kl_sched *s = make(config(KL_SCHED_FIFO, 0, 0, 5), true, 1);
    kl_sched_free(s);
    /* No trials: nothing to run. */
    s = make(config(KL_SCHED_ASHA, 1, 3, 27), true, 0);
    if (s)
        CHECK(kl_sched_next(s).kind == KL_JOB_NONE && kl_sched_best_trial(s) == -1);
    kl_sched_free(s);
}

/* Stop mode, against cutoffs computed by numpy 1.24 (Debian 12):
 *   np.nanpercentile(v, (1 - 1/3) * 100) for v = [.5] -> .5, [.5, .3] -> 0.43333333333333335,
 *   [.5, .3, .6] -> 0.5333333333333333, [.5, .3, .6, .45] -> 0.5, [.6] -> .6,
 *   [.6, .7] -> 0.6666666666666666, [.8] -> .8.
 * Five trials (eta 3, R = 27: rungs 1, 3, 9 below the top), values reported in this order:
 *   t=1: 0 .5 (no cutoff: C), 1 .3 (< .5: S), 2 .6 (>= .4333: C), 3 .45 (< .5333: S),
 *        4 .55 (>= .5: C)
 *   t=3: 0 .6 (no cutoff: C), 2 .7 (>= .6: C), 4 .65 (< .6667: S)
 *   t=9: 2 .8 (C), 0 .75 (< .8: S); 2 goes on to 27: DONE. */
static void stop_example(bool maximize)
{
    double sign = maximize ? 1.0 : -1.0;
    kl_sched_config c = config(KL_SCHED_ASHA, 1, 3, 27);
    c.stop_mode = true;
    kl_sched *s = make(c, maximize, 5);
    if (!s)
        return;
    for (int i = 0; i < 5; i++) {
        kl_job j = kl_sched_next(s);
        CHECK(j.kind == KL_JOB_NEW && j.trial == i && j.until_t == 27 && j.rung == 3);
    }
    CHECK(kl_sched_next(s).kind == KL_JOB_WAIT);
    CHECK(kl_sched_result(s, 0, 1, sign * 0.5) == KL_DECIDE_CONTINUE);
    CHECK(kl_sched_result(s, 1, 1, sign * 0.3) == KL_DECIDE_STOP);
    CHECK(kl_sched_result(s, 2, 1, sign * 0.6) == KL_DECIDE_CONTINUE);
    CHECK(kl_sched_result(s, 3, 1, sign * 0.45) == KL_DECIDE_STOP);
    CHECK(kl_sched_result(s, 4, 1, sign * 0.55) == KL_DECIDE_CONTINUE);
    CHECK(kl_sched_rung_count(s, 0) == 5);
    CHECK(kl_sched_state(s, 1) == KL_TRIAL_STOPPED && kl_sched_rung(s, 1) == 0);
    /* Between milestones nothing is judged, even a bad value. */
    CHECK(kl_sched_result(s, 0, 2, sign * 0.01) == KL_DECIDE_CONTINUE);
    CHECK(kl_sched_result(s, 2, 2, sign * 0.01) == KL_DECIDE_CONTINUE);
    CHECK(kl_sched_result(s, 4, 2, sign * 0.01) == KL_DECIDE_CONTINUE);
    CHECK(kl_sched_result(s, 0, 3, sign * 0.6) == KL_DECIDE_CONTINUE);
    CHECK(kl_sched_result(s, 2, 3, sign * 0.7) == KL_DECIDE_CONTINUE);
    CHECK(kl_sched_result(s, 4, 3, sign * 0.65) == KL_DECIDE_STOP);
    /* Trial 2 skips from 3 to 9 in one report: recorded at rung 2 (milestone 9). */
    CHECK(kl_sched_result(s, 2, 9, sign * 0.8) == KL_DECIDE_CONTINUE);
    CHECK(kl_sched_rung(s, 2) == 2);
    for (int t = 4; t < 9; t++)
        CHECK(kl_sched_result(s, 0, t, sign * 0.7) == KL_DECIDE_CONTINUE);
    CHECK(kl_sched_result(s, 0, 9, sign * 0.75) == KL_DECIDE_STOP);
    for (int t = 10; t < 27; t++)
        CHECK(kl_sched_result(s, 2, t, sign * 0.85) == KL_DECIDE_CONTINUE);
    CHECK(kl_sched_result(s, 2, 27, sign * 0.9) == KL_DECIDE_DONE);
    CHECK(kl_sched_rung(s, 2) == 3 && kl_sched_rung_count(s, 3) == 1);
    CHECK(kl_sched_next(s).kind == KL_JOB_NONE);
    CHECK(kl_sched_best_trial(s) == 2);
    CHECK_NEAR(kl_sched_best(s, 2), sign * 0.9, 0);
    kl_sched_free(s);
}

/* Stop-mode decisions as tables: results reported in order by trials started 0, 1, ..., each
 * with the decision it must get (ANY: not checked). FAIL as t fails the trial instead. */
enum { ANY = -1, FAIL = -1 };
typedef struct report {
    int trial, t; /* t = 0 ends the list */
    double value;
    int want;   /* a kl_decision, or ANY */
    bool below; /* report the largest double below value */
} report;

#define R(trial, t, value, want)     \
    {                                \
        trial, t, value, want, false \
    }
#define BELOW(trial, t, value, want) \
    {                                \
        trial, t, value, want, true  \
    }
#define FAILED(trial)                \
    {                                \
        trial, FAIL, 0.0, ANY, false \
    }

typedef struct decision_case {
    const char *what;
    int trials;
    report reports[8];
} decision_case;

static const decision_case stop_cases[] = {
    {"a value equal to the cutoff goes on (Ray stops only below it)",
     4,
     {R(0, 1, 0.5, ANY), R(1, 1, 0.3, ANY), R(2, 1, 0.43333333333333335, KL_DECIDE_CONTINUE)}},
    {"a value just below the cutoff stops",
     4,
     {R(0, 1, 0.5, ANY), R(1, 1, 0.3, ANY), BELOW(2, 1, 0.43333333333333335, KL_DECIDE_STOP)}},
    /* numpy's lerp is two-sided: np.nanpercentile([.29, .5], 200 / 3) is exactly 0.43, where
     * a + (b - a) g would give 0.43000000000000005 and stop a value of 0.43. */
    {"numpy's two-sided lerp",
     3,
     {R(0, 1, 0.29, ANY), R(1, 1, 0.5, ANY), R(2, 1, 0.43, KL_DECIDE_CONTINUE)}},
    {"NaN stops even as the first at its rung, and sets no cutoff for the next",
     3,
     {R(0, 1, NAN, KL_DECIDE_STOP), R(1, 1, 0.1, KL_DECIDE_CONTINUE),
      R(2, 1, -INFINITY, KL_DECIDE_STOP)}},
    /* A failed trial's values leave the percentile, as NaN does for np.nanpercentile: the cutoff
     * is over [.5, .9] = .7667 while 1 stands, over [.5] = .5 once it failed. */
    {"a trial's values count while it stands",
     3,
     {R(0, 1, 0.5, ANY), R(1, 1, 0.9, ANY), R(2, 1, 0.6, KL_DECIDE_STOP)}},
    {"a failed trial's values leave the percentile",
     3,
     {R(0, 1, 0.5, ANY), R(1, 1, 0.9, ANY), FAILED(1), R(2, 1, 0.6, KL_DECIDE_CONTINUE)}},
};

static void run_decision_case(kl_sched_config c, const decision_case *dc)
{
    kl_sched *s = started(c, true, dc->trials, dc->trials);
    if (!s)
        return;
    for (const report *r = dc->reports; r->t != 0; r++) {
        if (r->t == FAIL) {
            kl_sched_failed(s, r->trial);
            continue;
        }
        double v = r->below ? nextafter(r->value, -INFINITY) : r->value;
        kl_decision d = kl_sched_result(s, r->trial, r->t, v);
        if (r->want != ANY && !check_(d == (kl_decision)r->want, __FILE__, __LINE__, dc->what))
            fprintf(stderr, "    trial %d at t=%d: %s, want %s\n", r->trial, r->t,
                    kl_decision_name(d), kl_decision_name((kl_decision)r->want));
    }
    kl_sched_free(s);
}

static void test_stop_mode(void)
{
    stop_example(true);
    stop_example(false);
    kl_sched_config c = config(KL_SCHED_ASHA, 1, 3, 27);
    c.stop_mode = true;
    for (size_t i = 0; i < sizeof stop_cases / sizeof *stop_cases; i++)
        run_decision_case(c, &stop_cases[i]);
}

/* Hyperband: brackets, their milestones and grace periods, and round-robin assignment. */
static void test_hyperband(void)
{
    kl_sched *s = make(config(KL_SCHED_HYPERBAND, 1, 3, 27), true, 8);
    if (!s)
        return;
    CHECK(kl_sched_num_brackets(s) == 4);
    static const int want[4][4] = {{1, 3, 9, 27}, {3, 9, 27}, {9, 27}, {27}};
    static const int nwant[4] = {4, 3, 2, 1};
    for (int b = 0; b < 4; b++) {
        CHECK(kl_sched_bracket_num_rungs(s, b) == nwant[b]);
        for (int k = 0; k < nwant[b]; k++)
            CHECK(kl_sched_bracket_milestone(s, b, k) == want[b][k]);
        CHECK(kl_sched_bracket_milestone(s, b, nwant[b]) == -1);
    }
    CHECK(kl_sched_bracket_num_rungs(s, 4) == 0);
    for (int i = 0; i < 8; i++) {
        kl_job j = kl_sched_next(s);
        CHECK(j.kind == KL_JOB_NEW && j.trial == i && j.rung == 0);
        CHECK(j.until_t == want[i % 4][0]);
        CHECK(kl_sched_bracket(s, i) == i % 4);
    }
    CHECK(kl_sched_bracket(s, 8) == -1);
    kl_sched_free(s);

    /* brackets: 2 asks for two; 9 asks for more than fit (grace 4: 4, 12 <= 30 < 36). */
    kl_sched_config c = config(KL_SCHED_HYPERBAND, 1, 3, 27);
    c.brackets = 2;
    s = make(c, true, 4);
    if (s)
        CHECK(kl_sched_num_brackets(s) == 2);
    kl_sched_free(s);
    c = config(KL_SCHED_HYPERBAND, 4, 3, 30);
    c.brackets = 9;
    s = make(c, true, 4);
    if (s) {
        CHECK(kl_sched_num_brackets(s) == 2);
        CHECK(kl_sched_bracket_milestone(s, 1, 0) == 12 &&
              kl_sched_bracket_milestone(s, 1, 1) == 30);
    }
    kl_sched_free(s);
    /* Default with room for more than 4: at most 4. */
    s = make(config(KL_SCHED_HYPERBAND, 1, 2, 1024), true, 4);
    if (s)
        CHECK(kl_sched_num_brackets(s) == 4);
    kl_sched_free(s);
    /* ASHA ignores brackets. */
    c = config(KL_SCHED_ASHA, 1, 3, 27);
    c.brackets = 3;
    s = make(c, true, 4);
    if (s)
        CHECK(kl_sched_num_brackets(s) == 1);
    kl_sched_free(s);

    /* Promote mode, eta 3, R = 9: bracket 0 has rungs 1, 3, 9, bracket 1 has 3, 9 and bracket 2
     * only 9. Promotions are looked for at milestone 3 (bracket 0 rung 1, then bracket 1 rung
     * 0), then 1 (bracket 0 rung 0). With the hand curves, one worker:
     *   N0 (b0) .51 P, N1 (b1) .73 at 3 P, N2 (b2) to 9 D, N3 (b0) .91 P, N4 (b1) .43 P,
     *   N5 (b2) D, N6 (b0) .31 P; b0 rung 0 has n=3: 3 is the top third       -> P3>1 to 3
     *   b0 rung 1 n=1, b1 rung 0 n=2, b0 rung 0: 0 has rank 1                 -> N7 (b1) .98 P
     *   b1 rung 0 n=3: 7 is the top third; its next rung is the top (9)       -> P7>1 to 9, D
     *   nothing else                                                          -> N8 (b2), X */
    s = make(config(KL_SCHED_HYPERBAND, 1, 3, 9), true, 9);
    if (!s)
        return;
    CHECK(kl_sched_num_brackets(s) == 3);
    char got[512];
    drive_serial(s, hand_curve, got, sizeof got);
    check_seq(got, "N0/1P N1/3P N2/9D N3/1P N4/3P N5/9D N6/1P P3>1/3P N7/3P P7>1/9D N8/9D X");
    CHECK(kl_sched_best_trial(s) == 7);
    CHECK(kl_sched_bracket_rung_count(s, 1, 0) == 3 && kl_sched_bracket_rung_count(s, 1, 1) == 1);
    CHECK(kl_sched_bracket_rung_count(s, 2, 0) == 3);
    kl_sched_free(s);

    /* Stop mode: a bracket-1 trial is first judged at t = 3, its bracket's first milestone. */
    c = config(KL_SCHED_HYPERBAND, 1, 3, 27);
    c.stop_mode = true;
    s = make(c, true, 2);
    if (!s)
        return;
    kl_sched_next(s);
    kl_job j = kl_sched_next(s);
    CHECK(j.trial == 1 && j.until_t == 27);
    CHECK(kl_sched_result(s, 1, 1, 0.1) == KL_DECIDE_CONTINUE && kl_sched_rung(s, 1) == -1);
    CHECK(kl_sched_result(s, 1, 2, 0.1) == KL_DECIDE_CONTINUE && kl_sched_rung(s, 1) == -1);
    CHECK(kl_sched_result(s, 1, 3, 0.1) == KL_DECIDE_CONTINUE && kl_sched_rung(s, 1) == 0);
    CHECK(kl_sched_bracket_rung_count(s, 1, 0) == 1 && kl_sched_rung_count(s, 0) == 0);
    kl_sched_free(s);
}

/* Median rule curves in sixteenths, so that every running average is exact:
 *   T0 8 9 10 11 12, T1 6 7 8 9 10, T2 10 11 12 13 14, T3 2 3 4 5 6, T4 14 2 2 2 2, T5 8 8 8 8 8.
 */
static const double med_table[6][5] = {{8, 9, 10, 11, 12}, {6, 7, 8, 9, 10}, {10, 11, 12, 13, 14},
                                       {2, 3, 4, 5, 6},    {14, 2, 2, 2, 2}, {8, 8, 8, 8, 8}};
static double med_curve(int64_t i, int t)
{
    return med_table[i][t - 1] / 16.0;
}
static double med_curve_neg(int64_t i, int t)
{
    return -med_curve(i, t);
}
static double med_curve_013(int64_t i, int t)
{
    return med_curve(i == 2 ? 3 : i, t);
}

/* One worker, max_t 5, in sixteenths:
 * grace 1: T0-T2 never have 3 others (DONE). T3 at t=1: median of 8, 6, 10 = 8 > best 2: stop.
 *   T4 at 1: median of 8 6 10 2 = 7 < 14; later its best stays 14: DONE despite 2s.
 *   T5 at 1: median of 8 6 10 2 14 = 8, best 8 is not strictly worse: on; at 2: averages
 *   8.5 6.5 10.5 8 (T3 never reached 2) -> 8.25 > 8: stop.
 * grace 2: T3 at 2: averages 8.5 6.5 10.5 -> 8.5 > 3: stop. T5 at 2: 8.5 6.5 10.5 2.5 8 -> 8:
 *   on; at 3: 9 7 11 6 -> 8: on; at 4: 9.5 7.5 11.5 5 -> 8.5 > 8: stop. */
static void test_median(void)
{
    char got[512];
    for (int neg = 0; neg < 2; neg++) {
        kl_sched *s = make(config(KL_SCHED_MEDIAN, 1, 3, 5), !neg, 6);
        if (!s)
            return;
        drive_serial(s, neg ? med_curve_neg : med_curve, got, sizeof got);
        check_seq(got, "N0/5D N1/5D N2/5D N3/1S N4/5D N5/2S X");
        CHECK(kl_sched_best_trial(s) == 2);
        CHECK(kl_sched_rung_count(s, 0) == 4 && kl_sched_rung(s, 3) == -1);
        kl_sched_free(s);
    }
    kl_sched *s = serial(config(KL_SCHED_MEDIAN, 2, 3, 5), true, 6, med_curve,
                         "N0/5D N1/5D N2/5D N3/2S N4/5D N5/4S X");
    if (!s)
        return;
    kl_sched_free(s);

    /* T0, T1, then T3: only two others, fewer than KL_SCHED_MEDIAN_MIN_SAMPLES: T3 goes on. */
    s = serial(config(KL_SCHED_MEDIAN, 1, 3, 5), true, 3, med_curve_013, "N0/5D N1/5D N2/5D X");
    if (!s)
        return;
    kl_sched_free(s);

    /* Before any trial finishes, the best is the best value at the most epochs reported. */
    s = started(config(KL_SCHED_MEDIAN, 1, 3, 5), true, 3, 3);
    if (!s)
        return;
    kl_sched_result(s, 0, 1, 0.9);
    kl_sched_result(s, 1, 1, 0.5);
    CHECK(kl_sched_best_trial(s) == 0);
    kl_sched_result(s, 1, 2, 0.4);
    CHECK(kl_sched_best_trial(s) == 1);
    kl_sched_free(s);
}

static double fifo_curve(int64_t i, int t)
{
    return (double)((i * 7) % 5) + t;
}

static void test_fifo(void)
{
    kl_sched *s =
        serial(config(KL_SCHED_FIFO, 1, 3, 4), true, 3, fifo_curve, "N0/4D N1/4D N2/4D X");
    if (!s)
        return;
    CHECK(kl_sched_best_trial(s) == 2); /* at t = 4: 4, 6, 8 */
    kl_sched_free(s);
    s = make(config(KL_SCHED_FIFO, 1, 3, 4), false, 3);
    if (!s)
        return;
    for (int i = 0; i < 3; i++) {
        kl_job j = kl_sched_next(s);
        CHECK(j.kind == KL_JOB_NEW && j.until_t == 4);
    }
    CHECK(kl_sched_next(s).kind == KL_JOB_WAIT);
    for (int t = 1; t < 4; t++)
        for (int i = 0; i < 3; i++)
            CHECK(kl_sched_result(s, i, t, fifo_curve(i, t)) == KL_DECIDE_CONTINUE);
    for (int i = 0; i < 3; i++)
        CHECK(kl_sched_result(s, i, 4, fifo_curve(i, 4)) == KL_DECIDE_DONE);
    CHECK(kl_sched_best_trial(s) == 0); /* minimizing: 0 + 4 */
    CHECK(kl_sched_next(s).kind == KL_JOB_NONE);
    kl_sched_free(s);
}

/* Holds: a paused trial counts at its rung at once but is promoted only once released, and the
 * sweep is not over (WAIT, not NONE) while a trial is held. */
static void test_holds(void)
{
    kl_sched *s = make(config(KL_SCHED_ASHA, 1, 2, 4), true, 3);
    if (!s)
        return;
    kl_sched_set_holds(s, true);
    for (int i = 0; i < 3; i++)
        kl_sched_next(s);
    CHECK(kl_sched_result(s, 0, 1, 0.9) == KL_DECIDE_PAUSE);
    CHECK(kl_sched_result(s, 1, 1, 0.5) == KL_DECIDE_PAUSE);
    CHECK(kl_sched_held(s, 0) && kl_sched_held(s, 1));
    CHECK(kl_sched_rung_count(s, 0) == 2);
    CHECK(kl_sched_next(s).kind == KL_JOB_WAIT); /* trial 2 runs */
    CHECK(kl_sched_result(s, 2, 1, 0.4) == KL_DECIDE_PAUSE);
    CHECK(kl_sched_next(s).kind == KL_JOB_WAIT); /* nothing runs, but 0 and 1 are held */
    CHECK(kl_sched_release(s, 1) && !kl_sched_release(s, 1));
    CHECK(kl_sched_next(s).kind == KL_JOB_WAIT); /* 1 ranks second of 3: not in the top 1 */
    CHECK(kl_sched_release(s, 0) && kl_sched_release(s, 2));
    kl_job j = kl_sched_next(s);
    CHECK(j.kind == KL_JOB_PROMOTE && j.trial == 0 && j.until_t == 2);
    CHECK(!kl_sched_held(s, 0) && kl_sched_state(s, 0) == KL_TRIAL_RUNNING);
    CHECK(kl_sched_result(s, 0, 2, 0.95) == KL_DECIDE_PAUSE);
    CHECK(kl_sched_next(s).kind == KL_JOB_WAIT);
    CHECK(kl_sched_release(s, 0));
    CHECK(kl_sched_next(s).kind == KL_JOB_NONE); /* alone at rung 1: floor(1 / 2) = 0 go up */
    kl_sched_free(s);

    /* Off (the default), a pause is a candidate at once. */
    s = make(config(KL_SCHED_ASHA, 1, 2, 4), true, 2);
    if (!s)
        return;
    kl_sched_next(s);
    kl_sched_next(s);
    CHECK(kl_sched_result(s, 0, 1, 0.9) == KL_DECIDE_PAUSE && !kl_sched_held(s, 0));
    CHECK(kl_sched_result(s, 1, 1, 0.5) == KL_DECIDE_PAUSE);
    j = kl_sched_next(s);
    CHECK(j.kind == KL_JOB_PROMOTE && j.trial == 0 && !kl_sched_release(s, 0));
    kl_sched_free(s);
}

static void test_failed_requeued(void)
{
    /* Promote mode: trial 0 (the top third) is promoted, then fails: its rung-0 value now ranks
     * last, so trial 1 takes its place in the top third. */
    kl_sched *s = started(config(KL_SCHED_ASHA, 1, 3, 27), true, 5, 3);
    if (!s)
        return;
    kl_sched_result(s, 0, 1, 0.9);
    kl_sched_result(s, 1, 1, 0.5);
    kl_sched_result(s, 2, 1, 0.4);
    kl_job j = kl_sched_next(s);
    CHECK(j.kind == KL_JOB_PROMOTE && j.trial == 0);
    CHECK(kl_sched_best_trial(s) == 0);
    kl_sched_failed(s, 0);
    CHECK(kl_sched_state(s, 0) == KL_TRIAL_FAILED);
    CHECK(kl_sched_best_trial(s) == 1);
    j = kl_sched_next(s);
    CHECK(j.kind == KL_JOB_PROMOTE && j.trial == 1 && j.rung == 1 && j.until_t == 3);

    /* Trial 1 dies at t = 2 and is requeued; so is a new trial 3 at t = 0. The queue is served
     * first, in order, with the same targets, before the new trial 4. */
    CHECK(kl_sched_result(s, 1, 2, 0.55) == KL_DECIDE_CONTINUE);
    j = kl_sched_next(s);
    CHECK(j.kind == KL_JOB_NEW && j.trial == 3);
    kl_sched_requeue(s, 1);
    kl_sched_requeue(s, 3);
    CHECK(kl_sched_state(s, 1) == KL_TRIAL_PAUSED && kl_sched_state(s, 3) == KL_TRIAL_PAUSED);
    j = kl_sched_next(s);
    CHECK(j.kind == KL_JOB_PROMOTE && j.trial == 1 && j.rung == 1 && j.until_t == 3);
    j = kl_sched_next(s);
    CHECK(j.kind == KL_JOB_PROMOTE && j.trial == 3 && j.rung == 0 && j.until_t == 1);
    j = kl_sched_next(s);
    CHECK(j.kind == KL_JOB_NEW && j.trial == 4);
    /* Resumed from an older checkpoint, trial 1 reports t = 2 again: nothing recorded twice. */
    CHECK(kl_sched_result(s, 1, 1, 0.5) == KL_DECIDE_CONTINUE);
    CHECK(kl_sched_result(s, 1, 2, 0.55) == KL_DECIDE_CONTINUE);
    CHECK(kl_sched_result(s, 1, 3, 0.6) == KL_DECIDE_PAUSE);
    CHECK(kl_sched_rung_count(s, 0) == 3 && kl_sched_rung_count(s, 1) == 1);
    CHECK(kl_sched_result(s, 3, 1, 0.45) == KL_DECIDE_PAUSE);
    CHECK(kl_sched_result(s, 4, 1, 0.3) == KL_DECIDE_PAUSE);
    /* Rung 0: 1 .5, 3 .45, 2 .4, 4 .3, 0 failed; n = 5, m = 1, 1 already promoted. */
    CHECK(kl_sched_next(s).kind == KL_JOB_NONE);
    CHECK(kl_sched_best_trial(s) == 1);
    kl_error err = {0};
    CHECK(kl_sched_status(s, &err) == KL_OK);
    kl_sched_free(s);

    /* Stop mode: a requeued trial comes back toward max_t; a failure frees its worker. */
    kl_sched_config c = config(KL_SCHED_ASHA, 1, 3, 27);
    c.stop_mode = true;
    s = make(c, true, 2);
    if (!s)
        return;
    kl_sched_next(s);
    kl_sched_requeue(s, 0);
    j = kl_sched_next(s);
    CHECK(j.kind == KL_JOB_PROMOTE && j.trial == 0 && j.until_t == 27 && j.rung == 3);
    kl_sched_failed(s, 0);
    j = kl_sched_next(s);
    CHECK(j.kind == KL_JOB_NEW && j.trial == 1);
    kl_sched_failed(s, 1);
    CHECK(kl_sched_next(s).kind == KL_JOB_NONE);
    CHECK(kl_sched_best_trial(s) == -1);
    kl_sched_free(s);
}

/* A tiny deterministic generator for the random tests. */
static uint64_t rnd_state;
static uint64_t rnd(void)
{
    uint64_t z = (rnd_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double rnd_unit(void)
{
    return (double)(rnd() >> 11) / 9007199254740992.0;
}

/* The value of trial i at t: a pure function (a requeued trial sees the same values again),
 * quantised to 1/32 so that ties are common, and NaN now and then. */
static double rand_value(int64_t i, int t)
{
    uint64_t save = rnd_state;
    rnd_state = (uint64_t)i * 1000003u + (uint64_t)t * 7919u;
    double u = rnd_unit(), v = floor(rnd_unit() * 32.0) / 32.0;
    rnd_state = save;
    return u < 0.005 ? NAN : v;
}

enum { MAXR = 8 };

/* The test's own record of every rung, to recompute the paper's rule by brute force. */
typedef struct ref_entry {
    int64_t trial;
    double score;
    bool worst;
    uint64_t seq;
} ref_entry;

typedef struct ref {
    bool maximize;
    int eta, nrungs, milestone[MAXR];
    ref_entry *rung[MAXR];
    int64_t count[MAXR];
    uint64_t seq;
    int64_t n;
    kl_trial_state *state;
    int *trial_rung; /* highest rung recorded */
    bool *queued;
    bool *failed;
    uint32_t *promoted_from; /* bit k: promoted from rung k */
} ref;

static bool ref_better(const ref_entry *a, const ref_entry *b)
{
    if (a->worst != b->worst)
        return b->worst;
    if (a->score != b->score)
        return a->score > b->score;
    return a->seq < b->seq;
}

static int64_t ref_rank(const ref *R, int k, const ref_entry *e)
{
    int64_t r = 0;
    for (int64_t i = 0; i < R->count[k]; i++)
        r += ref_better(&R->rung[k][i], e);
    return r;
}

/* The job the paper's rule gives now, ignoring the requeue queue: the best unpromoted paused
 * trial with a finite value at the highest rung where it ranks within floor(n / eta); -1: none. */
static int64_t ref_promotion(const ref *R, int *from)
{
    for (int k = R->nrungs - 2; k >= 0; k--) {
        const ref_entry *best = NULL;
        for (int64_t i = 0; i < R->count[k]; i++) {
            const ref_entry *e = &R->rung[k][i];
            if (R->state[e->trial] != KL_TRIAL_PAUSED || R->trial_rung[e->trial] != k ||
                R->queued[e->trial] || e->worst)
                continue;
            if (!best || ref_better(e, best))
                best = e;
        }
        if (best && ref_rank(R, k, best) < R->count[k] / R->eta) {
            *from = k;
            return best->trial;
        }
    }
    return -1;
}

static void ref_record(ref *R, int64_t trial, int k, double v)
{
    ref_entry e = {trial, R->maximize ? v : -v, !isfinite(v), R->seq++};
    if (!isfinite(v))
        e.score = 0;
    R->rung[k][R->count[k]++] = e;
    R->trial_rung[trial] = k;
}

static void ref_fail(ref *R, int64_t trial)
{
    R->failed[trial] = true;
    R->state[trial] = KL_TRIAL_FAILED;
    for (int k = 0; k < R->nrungs; k++)
        for (int64_t i = 0; i < R->count[k]; i++)
            if (R->rung[k][i].trial == trial)
                R->rung[k][i].worst = true;
}

typedef struct worker_slot {
    int64_t trial;
    int t, until;
} worker_slot;

/* A random promote-mode sweep of n trials with W workers: results in random order, 0.5% of
 * epochs a failure and 0.5% a requeue (resuming up to 2 epochs back). Every job is checked
 * against the brute-force rule (every `every`-th call: it costs O(n) per call) and every
 * promotion against the floor(n / eta) bound at that moment. Returns a hash of the jobs. */
static uint64_t random_promote(int64_t n, int W, int every, uint64_t seed)
{
    kl_sched_config c = config(KL_SCHED_ASHA, 1, 3, 81);
    ref R;
    memset(&R, 0, sizeof R);
    R.maximize = (seed & 1) != 0;
    R.eta = 3;
    R.n = n;
    kl_sched *s = make(c, R.maximize, n);
    if (!s)
        return 0;
    R.nrungs = kl_sched_num_rungs(s);
    CHECK(R.nrungs == 5);
    for (int k = 0; k < R.nrungs; k++) {
        R.milestone[k] = kl_sched_milestone(s, k);
        R.rung[k] = calloc((size_t)n, sizeof *R.rung[k]);
    }
    R.state = calloc((size_t)n, sizeof *R.state);
    R.trial_rung = malloc((size_t)n * sizeof *R.trial_rung);
    R.queued = calloc((size_t)n, sizeof *R.queued);
    R.failed = calloc((size_t)n, sizeof *R.failed);
    R.promoted_from = calloc((size_t)n, sizeof *R.promoted_from);
    int64_t *queue = malloc((size_t)n * sizeof *queue), qh = 0, ql = 0;
    int *rewind_by = calloc((size_t)n, sizeof *rewind_by);
    worker_slot *w = malloc((size_t)W * sizeof *w);
    for (int64_t i = 0; i < n; i++)
        R.trial_rung[i] = -1;
    for (int i = 0; i < W; i++)
        w[i].trial = -1;
    rnd_state = seed;
    uint64_t hash = 1469598103934665603ull;
    int64_t created = 0, calls = 0, bad_jobs = 0, bad_decisions = 0, bad_bound = 0;
    int busy = 0;
    for (;;) {
        /* Fill idle workers. */
        bool none = false;
        for (int i = 0; i < W && !none; i++) {
            if (w[i].trial >= 0)
                continue;
            int from = -1;
            int64_t want = -1;
            bool check_now = (calls++ % every) == 0, requeued = ql > 0;
            if (requeued)
                want = queue[qh];
            else if (check_now)
                want = ref_promotion(&R, &from);
            kl_job j = kl_sched_next(s);
            hash = (hash ^ (uint64_t)(j.kind * 1000003 + j.trial)) * 1099511628211ull;
            if (requeued) {
                bad_jobs += !(j.kind == KL_JOB_PROMOTE && j.trial == want);
                qh = (qh + 1) % n;
                ql--;
                R.queued[j.trial] = false;
            } else if (j.kind == KL_JOB_PROMOTE) {
                int k = j.rung - 1;
                if (check_now)
                    bad_jobs += !(want == j.trial && from == k);
                /* Paused at rung k, finite there, never promoted from k, in the top third. */
                const ref_entry *e = NULL;
                for (int64_t x = 0; x < R.count[k]; x++)
                    if (R.rung[k][x].trial == j.trial)
                        e = &R.rung[k][x];
                bool ok = e && !e->worst && R.state[j.trial] == KL_TRIAL_PAUSED &&
                          R.trial_rung[j.trial] == k && !(R.promoted_from[j.trial] >> k & 1) &&
                          ref_rank(&R, k, e) < R.count[k] / R.eta;
                bad_bound += !ok;
                R.promoted_from[j.trial] |= 1u << k;
            } else if (j.kind == KL_JOB_NEW) {
                bad_jobs += j.trial != created || (check_now && want >= 0);
                created++;
            } else {
                bad_jobs += check_now && want >= 0;
                bad_jobs += created < n || (j.kind == KL_JOB_WAIT) != (busy > 0);
                none = true;
                break;
            }
            R.state[j.trial] = KL_TRIAL_RUNNING;
            bad_jobs += j.until_t != R.milestone[j.rung];
            w[i].trial = j.trial;
            w[i].t = kl_sched_last_t(s, j.trial);
            w[i].until = j.until_t;
            if (requeued) {
                /* It resumes from a checkpoint up to 2 epochs back (reporting those epochs
                 * again), never before the milestone it last reached. */
                int k = R.trial_rung[j.trial], floor_t = k >= 0 ? R.milestone[k] : 0;
                w[i].t -= rewind_by[j.trial];
                if (w[i].t < floor_t)
                    w[i].t = floor_t;
            }
            busy++;
        }
        if (busy == 0)
            break;
        /* One epoch of a random busy worker. */
        int i;
        do
            i = (int)(rnd() % (uint64_t)W);
        while (w[i].trial < 0);
        int64_t tr = w[i].trial;
        double u = rnd_unit();
        if (u < 0.005) {
            kl_sched_failed(s, tr);
            ref_fail(&R, tr);
        } else if (u < 0.01) {
            kl_sched_requeue(s, tr);
            rewind_by[tr] = (int)(rnd() % 3);
            R.state[tr] = KL_TRIAL_PAUSED;
            R.queued[tr] = true;
            queue[(qh + ql) % n] = tr;
            ql++;
        } else {
            int t = ++w[i].t;
            double v = rand_value(tr, t);
            kl_decision d = kl_sched_result(s, tr, t, v);
            if (t < w[i].until) {
                bad_decisions += d != KL_DECIDE_CONTINUE;
                continue;
            }
            int k = kl_sched_rung(s, tr);
            bad_decisions += k < 0 || R.milestone[k] != t ||
                             d != (k == R.nrungs - 1 ? KL_DECIDE_DONE : KL_DECIDE_PAUSE);
            if (k >= 0)
                ref_record(&R, tr, k, v);
            R.state[tr] = d == KL_DECIDE_DONE ? KL_TRIAL_DONE : KL_TRIAL_PAUSED;
        }
        w[i].trial = -1;
        busy--;
    }
    CHECK(bad_jobs == 0);
    CHECK(bad_decisions == 0);
    CHECK(bad_bound == 0);
    CHECK(created == n && kl_sched_created(s) == n);
    CHECK(kl_sched_next(s).kind == KL_JOB_NONE);
    /* Final states and rung counts agree with the reference; rungs shrink going up. */
    int64_t state_mismatch = 0;
    for (int64_t i = 0; i < n; i++)
        state_mismatch +=
            kl_sched_state(s, i) != R.state[i] || kl_sched_rung(s, i) != R.trial_rung[i];
    CHECK(state_mismatch == 0);
    for (int k = 0; k < R.nrungs; k++) {
        CHECK(kl_sched_rung_count(s, k) == R.count[k]);
        if (k > 0)
            CHECK(R.count[k] <= R.count[k - 1]);
    }
    /* The best trial: the best finite value at the highest milestone reached (not failed). */
    int64_t want_best = -1;
    for (int k = R.nrungs - 1; k >= 0 && want_best < 0; k--) {
        const ref_entry *b = NULL;
        for (int64_t x = 0; x < R.count[k]; x++) {
            const ref_entry *e = &R.rung[k][x];
            if (e->worst || R.failed[e->trial] || R.trial_rung[e->trial] != k)
                continue;
            if (!b || ref_better(e, b))
                b = e;
        }
        if (b)
            want_best = b->trial;
    }
    CHECK(kl_sched_best_trial(s) == want_best);
    for (int k = 0; k < R.nrungs; k++)
        free(R.rung[k]);
    free(R.state);
    free(R.trial_rung);
    free(R.queued);
    free(R.failed);
    free(R.promoted_from);
    free(queue);
    free(rewind_by);
    free(w);
    kl_sched_free(s);
    return hash;
}

/* numpy's linear percentile, written independently of tune/sched.c: sort, then interpolate. */
static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double ref_percentile(double *v, int64_t m, double q)
{
    qsort(v, (size_t)m, sizeof *v, cmp_double);
    double idx = (double)(m - 1) * q;
    if (idx >= (double)(m - 1))
        return v[m - 1];
    int64_t lo = (int64_t)floor(idx);
    double g = idx - (double)lo, d = v[lo + 1] - v[lo];
    return g >= 0.5 ? v[lo + 1] - d * (1.0 - g) : v[lo] + d * g;
}

/* A random stop-mode sweep: every judged result against the cutoff recomputed from scratch. */
static void random_stop(int64_t n, int W, uint64_t seed, bool maximize)
{
    kl_sched_config c = config(KL_SCHED_ASHA, 1, 3, 81);
    c.stop_mode = true;
    kl_sched *s = make(c, maximize, n);
    if (!s)
        return;
    int nr = kl_sched_num_rungs(s);
    double *vals[MAXR], *scratch = malloc((size_t)n * sizeof *scratch);
    int64_t cnt[MAXR] = {0};
    for (int k = 0; k < nr; k++)
        vals[k] = malloc((size_t)n * sizeof *vals[k]);
    worker_slot *w = malloc((size_t)W * sizeof *w);
    rnd_state = seed;
    int64_t bad = 0, stops = 0;
    int busy = 0;
    for (int i = 0; i < W; i++)
        w[i].trial = -1;
    double q = (1.0 - 1.0 / 3.0) * 100.0 / 100.0;
    for (;;) {
        for (int i = 0; i < W; i++) {
            if (w[i].trial >= 0)
                continue;
            kl_job j = kl_sched_next(s);
            if (j.kind != KL_JOB_NEW)
                break;
            w[i].trial = j.trial;
            w[i].t = 0;
            busy++;
        }
        if (busy == 0)
            break;
        int i;
        do
            i = (int)(rnd() % (uint64_t)W);
        while (w[i].trial < 0);
        int64_t tr = w[i].trial;
        int t = ++w[i].t;
        double v = rand_value(tr, t);
        kl_decision d = kl_sched_result(s, tr, t, v);
        kl_decision want = KL_DECIDE_CONTINUE;
        int k = -1;
        for (int r = 0; r < nr - 1; r++)
            if (kl_sched_milestone(s, r) == t)
                k = r;
        if (t == 81) {
            want = KL_DECIDE_DONE;
        } else if (k >= 0) {
            int64_t m = 0;
            for (int64_t x = 0; x < cnt[k]; x++)
                if (!isnan(vals[k][x]))
                    scratch[m++] = vals[k][x];
            double score = maximize ? v : -v;
            if (!isfinite(v) || (m > 0 && score < ref_percentile(scratch, m, q)))
                want = KL_DECIDE_STOP;
            vals[k][cnt[k]++] = isfinite(v) ? score : NAN;
        }
        bad += d != want;
        stops += d == KL_DECIDE_STOP;
        if (d != KL_DECIDE_CONTINUE) {
            w[i].trial = -1;
            busy--;
        }
    }
    CHECK(bad == 0);
    CHECK(stops > n / 2);
    for (int k = 0; k < nr - 1; k++)
        CHECK(kl_sched_rung_count(s, k) == cnt[k]);
    for (int k = 0; k < nr; k++)
        free(vals[k]);
    free(scratch);
    free(w);
    kl_sched_free(s);
}

static void test_random(void)
{
    /* 1,000 trials with the brute-force rule checked at every call, twice with the same seed
     * (the scheduler is deterministic: same calls, same jobs), and 10,000 trials checked at
     * every 16th call and every promotion. */
    uint64_t h1 = random_promote(1000, 7, 1, 11);
    uint64_t h2 = random_promote(1000, 7, 1, 11);
    CHECK(h1 == h2 && h1 != 0);
    random_promote(1000, 1, 1, 12);
    random_promote(10000, 32, 16, 13);
    random_stop(2000, 16, 21, true);
    random_stop(2000, 5, 22, false);
}

/* A curve table for the hand-worked ASHA example: labels "lr=<i>", 27 epochs each. */
static char *hand_table(bool seconds)
{
    size_t cap = 1 << 16, len = 0;
    char *s = malloc(cap);
    len += (size_t)snprintf(s + len, cap - len,
                            seconds ? "trial,t,value,seconds\n" : "trial,t,value\n");
    for (int i = 0; i < 9; i++)
        for (int t = 1; t <= 27; t++)
            len += (size_t)snprintf(s + len, cap - len,
                                    seconds ? "lr=%d,%d,%.17g,2\n" : "lr=%d,%d,%.17g\n", i, t,
                                    hand_curve(i, t));
    return s;
}

static void test_simulate(void)
{
    kl_error err = {0};
    kl_sched_config c = config(KL_SCHED_ASHA, 1, 3, 27);
    char *text = hand_table(false);
    kl_curves *cv = kl_curves_parse(text, strlen(text), "hand.csv", &err);
    if (!CHECK(cv != NULL)) {
        fprintf(stderr, "    %s\n", err.msg);
        free(text);
        return;
    }
    CHECK(kl_curves_trials(cv) == 9 && kl_curves_epochs(cv, 3) == 27);
    CHECK(strcmp(kl_curves_label(cv, 4), "lr=4") == 0 && !kl_curves_have_seconds(cv));
    kl_sim_result r;
    CHECK_OK(kl_simulate_curves(&c, true, cv, 1, &r, &err), &err);
    /* One worker: exactly the hand-worked sequence. */
    CHECK(r.ntrials == 9 && r.epochs == 29 && r.compute == 29.0 && r.makespan == 29.0);
    CHECK(r.best_trial == 7 && fabs(r.best_value - 1.04) < 1e-12);
    CHECK(r.n_paused == 9 && r.n_done == 0 && r.ran_out == 0 && r.workers == 1);
    CHECK(r.trial && strcmp(r.trial[7].label, "lr=7") == 0 && r.trial[7].rung == 2 &&
          r.trial[7].epochs == 9 && r.trial[8].epochs == 1);
    /* 16 next calls (15 jobs and NONE) and 29 results, each timed. */
    CHECK(r.next.calls == 16 && r.result.calls == 29 && r.all.calls == 45);
    CHECK(r.all.p50_us <= r.all.p99_us && r.all.p99_us <= r.all.max_us);
    CHECK(r.sched_s > 0 && r.sched_s <= r.loop_s);
    /* The anytime trace: the first result, then every improvement, ending at the best. */
    if (CHECK(r.ntrace >= 2 && r.trace)) {
        CHECK(r.trace[0].epochs == 1 && r.trace[0].trial == 0 && r.trace[0].t == 1 &&
              fabs(r.trace[0].value - 0.51) < 1e-12 && r.trace[0].time == 1.0);
        for (int64_t i = 1; i < r.ntrace; i++)
            CHECK(r.trace[i].epochs > r.trace[i - 1].epochs &&
                  r.trace[i].value > r.trace[i - 1].value &&
                  r.trace[i].compute == (double)r.trace[i].epochs);
        const kl_sim_point *end = &r.trace[r.ntrace - 1];
        CHECK(end->trial == 7 && end->t == 9 && fabs(end->value - 1.04) < 1e-12);
        /* 1.0 first comes from trial 7 (0.95 + t / 100) at t = 5. */
        const kl_sim_point *p = kl_sim_first_reaching(&r, true, 1.0);
        CHECK(p && p->trial == 7 && p->t == 5 && p->epochs >= 5 && p->epochs < end->epochs);
        CHECK(kl_sim_first_reaching(&r, true, 1.05) == NULL);
        CHECK(kl_sim_first_reaching(&r, true, 0.51) == &r.trace[0]);
        CHECK(kl_sim_first_reaching(&r, false, 0.6) == &r.trace[0]);
        CHECK(kl_sim_first_reaching(&r, false, 0.5) == NULL);
    }

    /* The per-trial table. */
    FILE *f = tmpfile();
    if (CHECK(f != NULL)) {
        CHECK_OK(kl_sim_write_trials(&r, f, &err), &err);
        rewind(f);
        char line[256];
        CHECK(fgets(line, sizeof line, f) &&
              strcmp(line, "trial,label,state,bracket,rung,epochs,last,best\n") == 0);
        for (int i = 0; i < 7; i++) /* trials 0-6 */
            CHECK(fgets(line, sizeof line, f) != NULL);
        CHECK(fgets(line, sizeof line, f) && strncmp(line, "7,lr=7,paused,0,2,9,1.0", 23) == 0);
        fclose(f);
    }
    kl_sim_result_free(&r);
    CHECK(r.trial == NULL);

    /* Three workers: the same trials, each trained once; compute = the sum of their epochs. */
    CHECK_OK(kl_simulate_curves(&c, true, cv, 3, &r, &err), &err);
    int64_t sum = 0;
    for (int64_t i = 0; i < r.ntrials; i++)
        sum += r.trial[i].epochs;
    CHECK(r.epochs == sum && r.makespan < (double)r.epochs && r.makespan >= r.epochs / 3.0);
    kl_sim_result_free(&r);

    /* Fifo wants 27 epochs of every trial: 243 in all, done. */
    kl_sched_config fifo = config(KL_SCHED_FIFO, 1, 3, 27);
    CHECK_OK(kl_simulate_curves(&fifo, true, cv, 4, &r, &err), &err);
    CHECK(r.epochs == 243 && r.n_done == 9 && r.best_trial == 7);
    kl_sim_result_free(&r);
    /* ... and with max_t 30 the table runs out at 27: every trial fails there. */
    fifo.max_t = 30;
    CHECK_OK(kl_simulate_curves(&fifo, true, cv, 4, &r, &err), &err);
    CHECK(r.epochs == 243 && r.n_failed == 9 && r.ran_out == 9 && r.trial[0].ran_out);
    CHECK(r.best_trial == -1);
    kl_sim_result_free(&r);
    CHECK(kl_simulate_curves(&c, true, cv, 0, &r, &err) == KL_EINVAL);
    kl_curves_free(cv);
    free(text);

    /* A seconds column: every epoch costs 2. Through a file, with kl_simulate. */
    text = hand_table(true);
    char path[] = "/tmp/kiln-test-sched-XXXXXX";
    int fd = mkstemp(path);
    if (CHECK(fd >= 0)) {
        FILE *out = fdopen(fd, "w");
        fputs(text, out);
        fclose(out);
        CHECK_OK(kl_simulate(&c, true, path, 1, &r, &err), &err);
        CHECK(r.epochs == 29 && r.compute == 58.0 && r.makespan == 58.0 && r.load_s > 0);
        kl_sim_result_free(&r);
        remove(path);
    }
    free(text);
    CHECK(kl_simulate(&c, true, "/nonexistent/curves.csv", 1, &r, &err) == KL_EIO);
    CHECK(strstr(err.msg, "/nonexistent/curves.csv") != NULL);
}

static void check_table_error(const char *text, const char *want)
{
    kl_error err = {0};
    kl_curves *c = kl_curves_parse(text, strlen(text), "t.csv", &err);
    if (!check_(c == NULL && err.status == KL_EFORMAT && strstr(err.msg, want), __FILE__, __LINE__,
                "table refused"))
        fprintf(stderr, "    want '%s' in: %s\n", want, c ? "(accepted)" : err.msg);
    kl_curves_free(c);
}

static void test_tables(void)
{
    /* Columns in any order, extra ones ignored, CRLF, blank lines, quoted labels. */
    const char *ok = "value,note,trial,t\r\n"
                     "0.5,x,\"a,b\",1\r\n"
                     "\r\n"
                     "0.25, y ,\"say \"\"hi\"\"\",1\r\n"
                     "nan,z,\"a,b\",2\r\n"
                     " 0.75 ,w,\"say \"\"hi\"\"\", 2 \r\n";
    kl_error err = {0};
    kl_curves *c = kl_curves_parse(ok, strlen(ok), "ok.csv", &err);
    if (CHECK(c != NULL)) {
        CHECK(kl_curves_trials(c) == 2 && kl_curves_epochs(c, 0) == 2);
        CHECK(strcmp(kl_curves_label(c, 0), "a,b") == 0);
        CHECK(strcmp(kl_curves_label(c, 1), "say \"hi\"") == 0);
        CHECK(kl_curves_label(c, 2) == NULL);
    } else {
        fprintf(stderr, "    %s\n", err.msg);
    }
    kl_curves_free(c);

    check_table_error("", "empty");
    check_table_error("trial,t\n1,1\n", "no 'value' column");
    check_table_error("trial,value,t,t\n", "twice");
    check_table_error("trial,t,value\n", "no rows");
    check_table_error("trial,t,value\na,1,0.5\na,1,0.6\n",
                      "second row for t = 1 (the first is on line 2)");
    check_table_error("trial,t,value\na,1,0.5\na,3,0.6\n", "no row for t = 2");
    check_table_error("trial,t,value\na,0,0.5\n", "t is '0'");
    check_table_error("trial,t,value\na,1.5,0.5\n", "t is '1.5'");
    check_table_error("trial,t,value\na,1,\n", "value is ''");
    check_table_error("trial,t,value\na,1,0.5x\n", "t.csv:2: value is '0.5x'");
    check_table_error("trial,t,value\na,1\n", "t.csv:2: 2 fields, but the header has 3");
    check_table_error("trial,t,value\n\"a,1,0.5\n", "t.csv:2: a quoted field is not closed");
    check_table_error("trial,t,value,seconds\na,1,0.5,-1\n", "seconds is '-1'");
}

static const check_case cases[] = {
    CHECK_CASE(test_asha_hand),  CHECK_CASE(test_asha_ties),       CHECK_CASE(test_asha_nan),
    CHECK_CASE(test_milestones), CHECK_CASE(test_config_errors),   CHECK_CASE(test_stop_mode),
    CHECK_CASE(test_hyperband),  CHECK_CASE(test_median),          CHECK_CASE(test_fifo),
    CHECK_CASE(test_holds),      CHECK_CASE(test_failed_requeued), CHECK_CASE(test_random),
    CHECK_CASE(test_simulate),   CHECK_CASE(test_tables),
};

int main(int argc, char **argv)
{
    return check_run("test_sched", cases, CHECK_NCASES(cases), argc, argv);
}
