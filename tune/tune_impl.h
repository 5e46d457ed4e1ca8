/* kiln tune's private state, shared by tune/coord.c (the coordinator and the message loop),
 * tune/worker.c (running one trial), tune/progress.c (the live table) and tune/results.c (the
 * outputs). */
#ifndef KILN_TUNE_IMPL_H
#define KILN_TUNE_IMPL_H

#include <stdint.h>
#include <stdio.h>

#include "kiln/data.h"
#include "kiln/journal.h"
#include "kiln/lock.h"
#include "kiln/sched.h"
#include "kiln/sweep.h"
#include "kiln/tpe.h"
#include "kiln/tune.h"

/* What the coordinator knows of a trial beyond the scheduler. */
typedef struct kl__trial {
    char **ov; /* the trial's overrides ("key=value") */
    int nov;
    int failures; /* failed runs so far (crashes, errors, a sweep killed while it ran) */
    int last_t;   /* the last result journaled */
    char *error;  /* the last failure's message */
    bool diverged;
    int64_t lease; /* its latest assignment to a worker (1, 2, ... across the sweep), 0: none */
} kl__trial;

/* Messages between the coordinator (world rank 0) and the worker groups' leaders. */
enum { KL__TAG_TO_COORD = 7001, KL__TAG_TO_WORKER = 7002 };

typedef enum kl__msg_kind {
    KL__MSG_READY,    /* worker -> coordinator: idle */
    KL__MSG_RESULT,   /* worker: trial's metric at t */
    KL__MSG_FAILED,   /* worker: the trial's run failed (msg) or diverged */
    KL__MSG_STOPPED,  /* worker: a signal stopped the trial after its checkpoint */
    KL__MSG_JOB,      /* coordinator -> worker: run trial until until_t */
    KL__MSG_DECISION, /* coordinator: what the trial that reported does next */
    KL__MSG_EXIT      /* coordinator: the sweep is over */
} kl__msg_kind;

/* Every message about a trial carries the lease of the assignment it answers: a JOB's lease
 * comes back in that job's RESULTs, in its FAILED or STOPPED, and in the READY that follows it.
 * The coordinator acts only on messages of a trial's current lease. */
typedef struct kl__msg {
    int32_t kind;
    int32_t t, until_t, decision;
    int32_t status; /* FAILED: the run's kl_status (KL_ERANGE: diverged) */
    int64_t trial;
    int64_t lease;
    double value;
    char text[KL_ERROR_MSG_MAX];
} kl__msg;

/* How a trial's epochs are decided: in the coordinator's own process (one rank) or by asking it
 * over MPI (a worker leader). */
typedef kl_decision (*kl__decide_fn)(void *ctx, int64_t trial, int t, double value);

typedef struct kl__tuner {
    const kl_tune_options *o;
    kl_sweep *sw;
    kl_sched *sched;
    kl_tpe *tpe; /* rank 0, method tpe: proposes each new trial's values */
    kl_journal *journal;
    kl_comm *world, *group; /* group: this worker group's communicator (NULL on rank 0) */
    int rank, size, group_size, nworkers;
    /* A worker rank's place among the worker ranks of its node, and their count: the GPU it
     * trains on (kl_train_options.device_slot). 0 slots: a single process, which trains on its
     * own device choice. */
    int device_slot, device_slots;
    char *dir;         /* the sweep folder */
    kl_lock *lock;     /* rank 0: held on dir while the sweep runs */
    kl__trial *trials; /* kl_sweep_trials() of them */
    int64_t ntrials;
    int64_t leases; /* assignments made so far, journalled ones included */
    /* PBT, resumed: paused trials whose checkpoint is older than their pause (the sweep died
     * in between), held until a job trains them to it again (kl__tune_pbt_catch_up). */
    int64_t *catchup;
    int64_t ncatchup, catchup_next;
    int64_t results_logged; /* by this process: the test point "result" counts them */
    double t0;              /* when this run of the sweep started */
    /* The live table. */
    bool tty;
    int drawn_lines;
    double last_draw;
    /* A worker's data cache: trials that do not tune data.* or train.seed share one load. */
    char *data_key;
    kl_data_splits data;
    bool have_data;
} kl__tuner;

/* The coordinator's view of its workers (world ranks 1..size-1). */
typedef struct kl__coord {
    int *idle; /* ranks waiting for a job */
    int nidle, exited, running;
    int64_t *trial; /* [size]: the trial each rank holds + 1, 0: none */
    int64_t *lease; /* [size]: the lease of that assignment */
    bool stopping;  /* a worker was stopped by a signal, or this process was */
} kl__coord;

/* A message the coordinator sends in answer. */
typedef struct kl__reply {
    int to;
    kl__msg msg;
} kl__reply;

/* tune/coord.c, for the message loop and its tests: kl__coord_handle takes one message from
 * world rank src, journals and decides what it implies, and writes the answers to send into
 * out[*nout] (out holds tu->size of them). A message of an assignment the sender no longer
 * holds changes nothing and is noted. kl__tune_replay puts a fresh scheduler where the journal's
 * events left it (a sweep resumed from its folder). */
kl_status kl__coord_init(kl__coord *c, int size, kl_error *err);
void kl__coord_free(kl__coord *c);
kl_status kl__coord_handle(kl__tuner *tu, kl__coord *c, const kl__msg *m, int src, kl__reply *out,
                           int *nout, kl_error *err);
kl_status kl__tune_replay(kl__tuner *tu, json_t *events, kl_error *err);

/* tune/worker.c: trains trial `job->trial` on comm (the group, or self) until the scheduler says
 * otherwise, resuming from the trial folder's latest checkpoint when it has one. decide is
 * called on comm's rank 0 after every epoch. Returns KL_OK when a decision ended it, KL_ERANGE
 * when it diverged, KL_ESTOPPED on a signal, or the failure. */
kl_status kl__tune_run_trial(kl__tuner *tu, kl_comm *comm, const kl__msg *job, kl__decide_fn decide,
                             void *ctx, kl_error *err);
void kl__tune_free_data(kl__tuner *tu);
/* The trial's folder and its overrides, which every rank can compute from the sweep. */
void kl__tune_trial_dir(const kl__tuner *tu, int64_t trial, char *buf, size_t size);
kl_status kl__tune_overrides(kl__tuner *tu, int64_t trial, kl_error *err);

/* tune/tune_tpe.c, method tpe: a replayed "started" event (ev, the journal's eventno-th) of a
 * new trial proposes the trial again, which must give the values the journal holds; a job's
 * message carries its trial's values (text, one "key=value" a line) from the coordinator, who
 * alone holds the history, to the worker, who stores them as the trial's overrides. */
kl_status kl__tune_tpe_replay(kl__tuner *tu, int64_t trial, json_t *ev, size_t eventno,
                              kl_error *err);
kl_status kl__tune_job_pack(kl__tuner *tu, kl__msg *m, kl_error *err);
kl_status kl__tune_job_unpack(kl__tuner *tu, const kl__msg *m, kl_error *err);

/* tune/progress.c: the live table (redrawn in place on a terminal, plain lines otherwise). */
void kl__tune_show(kl__tuner *tu, const char *event, bool force);
void kl__tune_line(kl__tuner *tu, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* tune/results.c: the sweep's outputs: results.csv, best.yaml and best.json. */
kl_status kl__tune_write_outputs(kl__tuner *tu, kl_error *err);
/* A finished sweep whose every trial failed (none has a value to rank): an error that says why,
 * the first failed trial's error and how many trials hit the same one. */
kl_status kl__tune_check_failed(const kl__tuner *tu, kl_error *err);

#endif
