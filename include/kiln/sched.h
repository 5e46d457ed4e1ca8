/* Trial schedulers: fifo, ASHA (promote and stop variants), Hyperband brackets and the median
 * stopping rule, behind one small interface. A scheduler is pure bookkeeping: it knows trials by
 * id (0, 1, 2, ... in creation order), results by (trial, t = epochs done, value) and answers two
 * questions: what an idle worker should do next, and what a trial that just reported does next.
 * It does no I/O and no MPI, so the coordinator, `kiln tune --simulate` and the tests drive the
 * same code. It is deterministic: the same calls in the same order give the same answers, so a
 * journal replayed into a fresh scheduler puts it exactly where it was.
 *
 * The rules each scheduler follows (rungs, how values rank, ASHA in promote and stop mode,
 * Hyperband, the median stopping rule, fifo and which trial is best) are specified in
 * tune/README.md, "Trial schedulers"; tests/unit/test_sched.c checks them. */
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
 * go of it (which returns whether it was held; a trial not held, or not created, is no error). Off
 * (the default), it is a candidate at once, as for a simulated worker whose job ends the moment it
 * hears the decision. Turning holds on or off affects the pauses that follow. */
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
/* PBT: the trial whose checkpoint and hyperparameters the trial's current job starts from (it
 * exploited that trial when the job was handed out), -1: none. It took that trial's last_t,
 * last, best and latest recording (its lineage) at that moment. */
int64_t kl_sched_donor(const kl_sched *s, int64_t trial);
/* ASHA and Hyperband: whether the trial recorded a value at the rung of t epochs (of its
 * bracket), and that value in *value (NAN: not finite, or the trial failed since). Always false
 * for the other schedulers, which keep no rungs. The TPE sampler fits on these (kiln/tpe.h). */
bool kl_sched_value_at(const kl_sched *s, int64_t trial, int t, double *value);
/* Hyperband's brackets (one for the other schedulers), bracket b's rungs as above. */
int kl_sched_num_brackets(const kl_sched *s);
int kl_sched_bracket_num_rungs(const kl_sched *s, int bracket);
int kl_sched_bracket_milestone(const kl_sched *s, int bracket, int rung);
int kl_sched_bracket_rung_count(const kl_sched *s, int bracket, int rung);
const char *kl_trial_state_name(kl_trial_state st);
const char *kl_decision_name(kl_decision d);

#endif
