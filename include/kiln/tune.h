/* kiln tune: a sweep run by a coordinator. World rank 0 coordinates (the scheduler, the
 * journal, the live table and the outputs); the other ranks form worker groups of
 * ranks_per_trial, each a data-parallel trainer on its own communicator that asks rank 0 for
 * jobs and reports every epoch's metric. On one rank the coordinator runs the trials itself.
 * Each trial is the same trainer as `kiln train`, with the trial's overrides, in its own run
 * folder under <sweep folder>/trials/. */
#ifndef KILN_TUNE_H
#define KILN_TUNE_H

#include <stdbool.h>

#include "kiln/comm.h"
#include "kiln/status.h"

typedef struct kl_tune_options {
    const char *sweep; /* the sweep file, for a new sweep */
    const char *dir;   /* the sweep folder; a new sweep defaults to sweeps/<name>-<timestamp> */
    bool resume;       /* continue the sweep in dir (its journal says what happened) */
    bool quiet;        /* the final summary only */
    int tty;           /* the live table: 1 yes, 0 plain lines, -1 when stderr is a terminal */
} kl_tune_options;

/* Runs (or resumes) a sweep over the ranks of world. Returns KL_ESTOPPED when a signal stopped
 * it (the running trials checkpointed; --resume continues). */
kl_status kl_tune_run(const kl_tune_options *o, kl_comm *world, kl_error *err);

#endif
