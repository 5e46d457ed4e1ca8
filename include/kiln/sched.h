/* Trial schedulers: fifo, ASHA (promote and stop variants), Hyperband brackets and the median
 * stopping rule, behind one small interface. A scheduler is pure bookkeeping: it knows trials by
 * id (0, 1, 2, ... in creation order), results by (trial, t = epochs done, value) and answers two
 * questions: what an idle worker should do next, and what a trial that just reported does next.
 * It does no I/O and no MPI, so the coordinator, `kiln tune --simulate` and the tests drive the
 * same code. It is deterministic: the same calls in the same order give the same answers, so a
 * journal replayed into a fresh scheduler puts it exactly where it was.
 *
 * Rungs. A bracket with grace period r has milestones r * eta^k for k = 0, 1, ... while they are
 * below max_t, then max_t itself as the top rung: r = 1, eta = 3 gives 1, 3, 9, 27 for
 * max_t = 27, 1, 3, 9, 27, 81 for 81, and 1, 3, 9, 27, 30 for 30 (the last step may be shorter
 * than a factor eta; Ray Tune's ASHA has the same milestones and treats max_t as completion).
 * They are computed with integer loops, never floor(log(x) / log(eta)), which loses a rung at
 * exact powers. fifo and the median rule have one rung, max_t.
 *
 * Values. Each value is ranked by its goal (larger is better when maximizing); a value that is
 * not finite (NaN, +-inf: the journal stores them as null) ranks below every number, and so does
 * every value of a failed trial. Equal values rank by arrival: the one recorded at the rung
 * first ranks better.
 *
 * ASHA, promote mode (Li et al., "A System for Massively Parallel Hyperparameter Tuning", MLSys
 * 2020, algorithm 2): a new trial trains to the first milestone and pauses; kl_sched_next looks
 * at the rungs from the highest below the top down to 0 and promotes the best paused trial of the
 * first rung where it ranks within the top floor(n / eta) of the n values recorded there, to the
 * next milestone; otherwise it starts a new trial. A trial is promoted from a rung at most once,
 * and never with a value that is not finite.
 * Promoted trials can outnumber floor(n / eta) when good values arrive late (a trial promoted
 * when n was 3 keeps its promotion when better ones arrive), as in the paper.
 *
 * ASHA, stop mode (Ray Tune's AsyncHyperBandScheduler): a new trial trains toward max_t. When it
 * first reports at or past a rung's milestone (the highest such rung below the top), the cutoff
 * is np.nanpercentile over the finite values recorded at that rung before it, at
 * (1 - 1 / eta) * 100, numpy's linear method, on values negated when minimizing (Ray's rule, to
 * the bit); the trial goes on when its value is at least the cutoff and stops when below it, and
 * its value is recorded either way. With no finite value recorded there yet there is no cutoff
 * and the trial goes on. A value that is not finite stops the trial at any rung (Ray would let a
 * NaN continue). Reaching max_t is DONE; values between milestones are not judged.
 *
 * Hyperband: brackets of ASHA (promote or stop mode as configured), bracket s with grace period
 * grace * eta^s for s = 0, 1, ..., as many as `brackets` asks (0: up to 4) of those whose grace
 * period is at most max_t. Trial i goes to bracket i mod brackets (Ray draws it at random, with
 * a softmax over the brackets' rung counts). Promotions are looked for from the highest milestone
 * down, across brackets; at equal milestones the lower bracket first.
 *
 * Median stopping rule (Golovin et al., "Google Vizier", KDD 2017, as Ray Tune's
 * MedianStoppingRule): from t = grace_period on, a trial reporting t stops if its best value so
 * far is strictly worse than the median of the running averages at t (the mean of each one's
 * values for epochs 1..t; Ray averages from grace_period on) of the other trials that reached t,
 * once there are at least KL_SCHED_MEDIAN_MIN_SAMPLES of them. A running average that includes a
 * value that is not finite is the worst. It never pauses.
 *
 * fifo: every trial trains to max_t (CONTINUE, then DONE).
 *
 * The best trial is the one whose latest recording is at the most epochs, with the best value
 * there (ties: the earlier arrival). Recordings are rung values for ASHA and Hyperband (a trial
 * half-way between rungs counts at the rung it last reached) and every report for fifo and the
 * median rule. */
#ifndef KILN_SCHED_H
#define KILN_SCHED_H

#include <stdbool.h>
#include <stdint.h>

#include "kiln/status.h"
#include "kiln/sweep.h"

typedef enum kl_decision {
    KL_DECIDE_CONTINUE, /* train on */
    KL_DECIDE_PAUSE,    /* stop here and keep the checkpoint: it may be promoted later */
    KL_DECIDE_STOP,     /* stopped early for good */
    KL_DECIDE_DONE      /* reached max_t */
} kl_decision;

typedef enum kl_job_kind {
    KL_JOB_NEW,     /* start trial `trial` (the next id) */
    KL_JOB_PROMOTE, /* resume paused trial `trial` from its checkpoint */
    KL_JOB_WAIT,    /* nothing to start now; results of running trials may change that */
    KL_JOB_NONE     /* the sweep has nothing more to run */
} kl_job_kind;

typedef struct kl_job {
    kl_job_kind kind;
    int64_t trial; /* -1 for WAIT and NONE */
    int rung;      /* the rung the trial is heading for (stop mode, fifo, median: the top) */
    int until_t;   /* train until t reaches this (promote mode: the rung's milestone; else max_t) */
} kl_job;

typedef enum kl_trial_state {
    KL_TRIAL_PENDING, /* not created yet */
    KL_TRIAL_RUNNING,
    KL_TRIAL_PAUSED,
    KL_TRIAL_STOPPED,
    KL_TRIAL_DONE,
    KL_TRIAL_FAILED /* errored or diverged: it holds the worst metric */
} kl_trial_state;

typedef struct kl_sched kl_sched;

/* The median stopping rule judges a trial only against at least this many others (as Ray). */
#define KL_SCHED_MEDIAN_MIN_SAMPLES 3

/* A scheduler for at most max_trials trials (the sweep's trial count, at most INT32_MAX - 1).
 * maximize: the metric's goal. Refuses settings that make no sense (eta < 2, grace > max_t) with
 * a message. cfg->brackets is used by hyperband only (0: as many as fit, at most 4). Memory:
 * about (100 + 50 x rungs) bytes per trial created. */
kl_sched *kl_sched_new(const kl_sched_config *cfg, bool maximize, int64_t max_trials,
                       kl_error *err);
void kl_sched_free(kl_sched *s);

/* The next job for an idle worker; a NEW or PROMOTE job marks its trial running. Requeued
 * trials come first (in the order they were requeued), then promotions, then a new trial; WAIT
 * while trials run (or are held) and none of those is possible, NONE when nothing runs either. */
kl_job kl_sched_next(kl_sched *s);
/* A running trial's metric at t epochs (t = 1, 2, ...); the answer says what it does next.
 * Promote mode: CONTINUE before the job's until_t, then PAUSE (recorded at that rung) or DONE at
 * max_t. t may repeat or go back after a requeue (a trial resumed from an older checkpoint); a
 * rung already recorded is not recorded again. Calling it for a trial that is not running is a
 * bug (KL_ASSERT). */
kl_decision kl_sched_result(kl_sched *s, int64_t trial, int t, double value);
/* A running trial that ended without a decision: diverged or failed for good. It counts as
 * holding the worst possible metric from now on: its values at every rung it reached rank last
 * (so its place in the top of a rung goes to the next trial), it is never the best trial, and it
 * frees its worker. (The median rule keeps the running averages it already contributed.) */
void kl_sched_failed(kl_sched *s, int64_t trial);
/* A running trial to be run again from its last checkpoint (its worker died): it goes back to
 * the queue, which kl_sched_next serves before anything else, as a PROMOTE job with the same
 * target (rung, until_t); from scratch if it has no checkpoint. Until then it reads as PAUSED. */
void kl_sched_requeue(kl_sched *s, int64_t trial);
/* Holds. A worker that hears PAUSE still writes the trial's checkpoint before it stops; were the
 * trial promoted in the meantime, a second worker would train it in the same folder from an older
 * checkpoint. With holds on, a trial paused by kl_sched_result is held: its value counts at its
 * rung at once, but it is no candidate for promotion until kl_sched_release says its worker let
 * go of it (which returns whether it was held; a trial not held, or not created, is no error). Off (the default), it is a candidate at once, as
 * for a simulated worker whose job ends the moment it hears the decision. Turning holds on or off
 * affects the pauses that follow. */
void kl_sched_set_holds(kl_sched *s, bool on);
bool kl_sched_release(kl_sched *s, int64_t trial);
bool kl_sched_held(const kl_sched *s, int64_t trial);
/* KL_OK, or KL_ENOMEM (with a message in err) once the scheduler could not grow its tables for
 * a new trial: from then on it starts no new trial (it still judges results, promotes and serves
 * requeues), so kl_sched_next ends with WAIT and NONE early. Check it when the sweep ends. */
kl_status kl_sched_status(const kl_sched *s, kl_error *err);

/* Per trial; a trial not created yet reads as PENDING, -1, 0, NAN. */
kl_trial_state kl_sched_state(const kl_sched *s, int64_t trial);
int kl_sched_rung(const kl_sched *s, int64_t trial);    /* the highest rung reached, -1: none */
int kl_sched_last_t(const kl_sched *s, int64_t trial);  /* the last t reported, 0: none */
double kl_sched_last(const kl_sched *s, int64_t trial); /* its value (NAN: none, not finite) */
double kl_sched_best(const kl_sched *s, int64_t trial); /* its best finite value (NAN: none) */
int kl_sched_bracket(const kl_sched *s, int64_t trial); /* its bracket, -1: not created */
int64_t kl_sched_best_trial(const kl_sched *s);         /* the best trial so far, -1: none */
int kl_sched_num_rungs(const kl_sched *s);              /* bracket 0's */
int kl_sched_milestone(const kl_sched *s, int rung);    /* epochs at rung k (bracket 0's), -1 */
int kl_sched_rung_count(const kl_sched *s, int rung);   /* trials that reached rung k (bracket 0) */
int64_t kl_sched_created(const kl_sched *s);            /* trials created so far */
/* Hyperband's brackets (one for the other schedulers), bracket b's rungs as above. */
int kl_sched_num_brackets(const kl_sched *s);
int kl_sched_bracket_num_rungs(const kl_sched *s, int bracket);
int kl_sched_bracket_milestone(const kl_sched *s, int bracket, int rung);
int kl_sched_bracket_rung_count(const kl_sched *s, int bracket, int rung);
const char *kl_trial_state_name(kl_trial_state st);
const char *kl_decision_name(kl_decision d);

#endif
