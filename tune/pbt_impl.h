/* Private to kiln tune: population-based training's explore and exploit (tune/pbt.c), which
 * tune/coord.c calls and tests/unit/test_pbt.c checks. */
#ifndef KILN_TUNE_PBT_IMPL_H
#define KILN_TUNE_PBT_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "kiln/sched.h"
#include "kiln/status.h"
#include "kiln/sweep.h"

/* The uniform number in [0, 1) of PBT's k-th draw for (trial, key), from the seed: the donor's
 * draw is k = 0 keyed by the trial's epochs when checked (tune/sched_pbt.c), explore's are
 * k >= 1 by the same epochs. */
double kl__pbt_unit(uint64_t seed, int64_t trial, int key, int k);
/* Ray Tune's explore of one mutation m whose current value is the override text cur, into out:
 * u[0] < resample draws afresh (a list: its u[1]-th part; a distribution: its draw at u[1]);
 * else a list moves to the previous value when u[1] > 0.5 and to the next otherwise (clamped at
 * its ends; a value not in the list is drawn afresh), and a number is multiplied by 1.2 when
 * u[1] > 0.5 and by 0.8 otherwise (int_uniform: truncated, q_uniform: rounded to q; a range's
 * value clamped to [min, max], which Ray does not do). */
kl_status kl__pbt_explore_one(const kl_sweep_param *m, double resample, const char *cur,
                              const double u[2], char *out, size_t cap, kl_error *err);
/* The overrides ov (the donor's) with every mutation explored, drawn from (the sweep's seed,
 * trial, t: the epochs it was checked at): a new array in *out (kl_sweep_overrides_free). */
kl_status kl__pbt_explore(const kl_sweep *sw, char *const *ov, int nov, int64_t trial, int t,
                          char ***out, kl_error *err);
/* Exploit: the latest checkpoint of checkpoint folder from (and its best.h5) into folder to,
 * each copied to a temporary file, synced and renamed; then to's other periodic checkpoints go. */
kl_status kl__pbt_copy_checkpoint(const char *from, const char *to, kl_error *err);

/* A PBT trial's hyperparameters by epoch from the journal's events: its lineage, the segments
 * [{from_t, to_t, trial, overrides}] in order, each the epochs from_t + 1 .. to_t trained with
 * those values in that trial's folder (an exploit continues its donor's segments up to the
 * epochs it copied). An empty array for a trial that never started. */
json_t *kl__pbt_schedule(json_t *events, int64_t trial);

/* kiln tune's side, for tune/coord.c (kl__tuner is tune/tune_impl.h's). When the scheduler
 * hands out a job whose trial exploits donor (kl_sched_donor): the donor's checkpoint copied
 * into the trial's folder, and the donor's values explored as the trial's own (its coordinator
 * last_t the donor's; from_t: the trial's before, the epochs it was checked at). On replay of that
 * job's journalled started event ev: the same values, which must be the journal's, and no copy (it
 * was made before the event was journalled). */
struct kl__tuner;
kl_status kl__tune_pbt_exploit(struct kl__tuner *tu, int64_t trial, int64_t donor, int from_t,
                               kl_error *err);
kl_status kl__tune_pbt_replay(struct kl__tuner *tu, int64_t trial, json_t *ev, size_t eventno,
                              kl_error *err);
/* A resumed sweep: whether a paused trial's latest checkpoint is older than its pause (the sweep
 * died after journalling its result and before the checkpoint), so that its files do not hold
 * the state it would be copied with. Such a trial stays held, and before any other job the
 * coordinator hands out one that trains it to its pause again (its results there are the
 * journal's, answered from it), journalled as catch_up; then it is released. A sweep resumed
 * mid-catch-up catches up again. */
kl_status kl__tune_pbt_behind(struct kl__tuner *tu, int64_t trial, bool *behind, kl_error *err);
kl_status kl__tune_pbt_catch_up(struct kl__tuner *tu, kl_job *job, int64_t *lease, kl_error *err);

#endif
