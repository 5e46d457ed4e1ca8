/* The Tree-structured Parzen Estimator sampler (`method: tpe`, alias `bayes`; docs/sweep.md),
 * as Optuna 3.1's TPESampler defines it, fitted on the results a trial scheduler holds: with
 * ASHA or Hyperband on the highest rung with enough results (BOHB's rule), with running trials
 * counted as the worst result (the constant liar). The coordinator, `kiln tune --simulate` and
 * the tests call it as each new trial starts. Its proposals are a pure function of the sweep
 * (its seed), the scheduler's state and the trials proposed before, so replaying a sweep's
 * journal proposes exactly what the sweep proposed. */
#ifndef KILN_TPE_H
#define KILN_TPE_H

#include <stdint.h>

#include "kiln/sched.h"
#include "kiln/status.h"
#include "kiln/sweep.h"

typedef struct kl_tpe kl_tpe;

/* A sampler for sw (which must outlive it; sw->tpe holds the settings, used whether or not
 * sw->tpe.on). */
kl_tpe *kl_tpe_new(const kl_sweep *sw, kl_error *err);
void kl_tpe_free(kl_tpe *t);

/* Trial `trial`'s overrides, as kl_sweep_overrides gives them ("key=value", one per parameter,
 * malloc'd; kl_sweep_overrides_free releases them). trial must be the next one
 * (kl_tpe_count(t)) and every earlier trial must be known to sched, whose results are the
 * history. Until a rung (or, for fifo and median, the finished trials) holds enough results, the
 * trial is the random sampler's trial `trial` (the same values as method random); after, each
 * parameter is the best of n_ei_candidates draws from l(x) by l(x) / g(x). KL_ERANGE for a trial
 * that is not the next or past the sweep's trials, KL_ENOMEM. */
kl_status kl_tpe_suggest(kl_tpe *t, const kl_sched *sched, int64_t trial, char ***out, int *n,
                         kl_error *err);
/* Trials proposed so far. */
int64_t kl_tpe_count(const kl_tpe *t);
/* What the last proposal was fitted on: the rung's epochs (max_t for fifo and median), 0 when it
 * was a random draw; and how many results it saw there (running trials not counted). */
int kl_tpe_last_budget(const kl_tpe *t, int64_t *nresults);

#endif
