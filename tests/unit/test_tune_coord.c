/* Tests of the sweep coordinator's message handling (kl__coord_handle in tune/coord.c) without
 * MPI: workers are small state machines in this process and their messages reach the
 * coordinator in orders the test chooses. A hand-made order reproduces the race where a paused
 * trial was promoted to a second worker before its first one had let go of it; thousands of
 * random orders check that no two workers ever hold one trial, that no trial fails, that every
 * sweep ends, and that the journal replays to the scheduler the coordinator ended with. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "kiln/journal.h"
#include "kiln/sched.h"
#include "kiln/sweep.h"
#include "tune/tune_impl.h"

enum { NRANKS = 4, MAX_TRIALS = 64 }; /* rank 0 coordinates, 1..3 work */

static char tmpdir[64];

/* A sweep of ntrials trials with an inline base: ASHA promote mode, eta 2, milestones 1, 2, 4. */
static void write_sweep(const char *path, int ntrials)
{
    FILE *f = fopen(path, "w");
    if (!CHECK(f != NULL))
        return;
    fprintf(f,
            "base: {data: {dataset: mnist, val_fraction: 0.1}}\n"
            "metric: {name: val_accuracy, goal: maximize}\n"
            "run_cap: %d\nseed: 1\nmax_failures: 1\n"
            "parameters:\n  optimizer.lr: {log_uniform_values: {min: 1e-4, max: 1e-1}}\n"
            "scheduler: {type: asha, max_t: 4, grace_period: 1, reduction_factor: 2}\n",
            ntrials);
    fclose(f);
}

typedef struct harness {
    kl_tune_options o;
    kl__tuner tu;
    kl__coord c;
    char journal[128];
} harness;

/* A coordinator for NRANKS ranks over a fresh journal; holds as kiln sets them for new sweeps. */
static bool open_harness(harness *h, int ntrials, bool holds)
{
    kl_error err = {0};
    memset(h, 0, sizeof *h);
    char sweep[128];
    snprintf(sweep, sizeof sweep, "%s/sweep.yaml", tmpdir);
    snprintf(h->journal, sizeof h->journal, "%s/journal.jsonl", tmpdir);
    unlink(h->journal);
    write_sweep(sweep, ntrials);
    h->o = (kl_tune_options){.quiet = true};
    kl__tuner *tu = &h->tu;
    *tu = (kl__tuner){.o = &h->o, .size = NRANKS, .nworkers = NRANKS - 1, .group_size = 1};
    tu->dir = strdup(tmpdir);
    if (!CHECK((tu->sw = kl_sweep_load(sweep, &err)) != NULL)) {
        fprintf(stderr, "    %s\n", err.msg);
        return false;
    }
    tu->ntrials = kl_sweep_trials(tu->sw);
    tu->trials = calloc((size_t)tu->ntrials + 1, sizeof *tu->trials);
    tu->sched = kl_sched_new(&tu->sw->sched, tu->sw->maximize, tu->ntrials, &err);
    tu->journal = kl_journal_open(h->journal, &err);
    if (!CHECK(tu->trials && tu->sched && tu->journal))
        return false;
    /* The journal begins as start_journal begins it, saying whether holds are on. */
    kl_sched_set_holds(tu->sched, holds);
    CHECK_OK(kl_journal_append(tu->journal,
                               json_pack("{s:s, s:b}", "event", "sweep", "holds", holds), &err),
             &err);
    return CHECK(kl__coord_init(&h->c, NRANKS, &err) == KL_OK);
}

static void close_tuner(kl__tuner *tu)
{
    for (int64_t i = 0; tu->trials && i < tu->ntrials; i++) {
        kl_sweep_overrides_free(tu->trials[i].ov, tu->trials[i].nov);
        free(tu->trials[i].error);
    }
    free(tu->trials);
    kl_sched_free(tu->sched);
    kl_journal_close(tu->journal);
    kl_sweep_free(tu->sw);
    free(tu->dir);
}

static void close_harness(harness *h)
{
    kl__coord_free(&h->c);
    close_tuner(&h->tu);
}

/* Sends one message to the coordinator; the answers land in out. */
static int deliver(harness *h, int src, kl__msg m, kl__reply *out)
{
    kl_error err = {0};
    int n = -1;
    kl_status st = kl__coord_handle(&h->tu, &h->c, &m, src, out, &n, &err);
    if (!CHECK(st == KL_OK))
        fprintf(stderr, "    %s\n", err.msg);
    return n;
}

static kl__msg ready(int64_t trial, int64_t lease)
{
    return (kl__msg){.kind = KL__MSG_READY, .trial = trial, .lease = lease};
}

static kl__msg result(int64_t trial, int64_t lease, int t, double value)
{
    return (kl__msg){
        .kind = KL__MSG_RESULT, .trial = trial, .lease = lease, .t = t, .value = value};
}

/* How many events of this kind the journal holds so far. */
static int count_events(const char *path, const char *kind)
{
    kl_error err = {0};
    json_t *events = kl_journal_read(path, &err);
    int n = 0;
    size_t i;
    json_t *ev;
    json_array_foreach(events, i, ev)
    {
        const char *k = json_string_value(json_object_get(ev, "event"));
        n += k && !strcmp(k, kind);
    }
    json_decref(events);
    return n;
}

/* The three workers start trials 0, 1, 2 and all pause at rung 0 (t = 1); trial 1 is the best.
 * Rank 3's READY comes first, before ranks 1 and 2 let go of trials 0 and 1. */
static void pause_three(harness *h, kl__reply *out)
{
    for (int w = 1; w <= 3; w++) {
        CHECK(deliver(h, w, ready(0, 0), out) == 1);
        CHECK(out[0].to == w && out[0].msg.kind == KL__MSG_JOB && out[0].msg.trial == w - 1);
        CHECK(out[0].msg.lease == w && out[0].msg.until_t == 1);
    }
    static const double values[] = {0.5, 0.9, 0.4};
    for (int w = 1; w <= 3; w++) {
        CHECK(deliver(h, w, result(w - 1, w, 1, values[w - 1]), out) == 1);
        CHECK(out[0].to == w && out[0].msg.decision == KL_DECIDE_PAUSE);
    }
}

/* The race, with holds (every sweep this kiln begins): the best paused trial is not promoted while
 * its worker still holds it; once released it is, and a late or repeated message from a worker
 * that no longer holds a trial changes nothing. */
static void test_race_held(void)
{
    harness h;
    kl__reply out[NRANKS];
    if (!open_harness(&h, 6, true)) {
        close_harness(&h);
        return;
    }
    pause_three(&h, out);
    CHECK(deliver(&h, 3, ready(2, 3), out) == 1);
    CHECK(out[0].to == 3 && out[0].msg.kind == KL__MSG_JOB);
    CHECK(out[0].msg.trial == 3); /* a new trial: 1 and 0 are still held */
    CHECK(kl_sched_held(h.tu.sched, 1) && kl_sched_held(h.tu.sched, 0));
    CHECK(deliver(&h, 2, ready(1, 2), out) == 1); /* rank 2 lets go of trial 1 */
    CHECK(out[0].to == 2 && out[0].msg.kind == KL__MSG_JOB && out[0].msg.trial == 1);
    CHECK(out[0].msg.until_t == 2 && out[0].msg.lease == 5);
    /* Rank 2's READY again (a duplicate of an old lease), and a result from rank 1 for trial 1
     * under its old lease: neither touches trial 1's new run. */
    CHECK(deliver(&h, 2, ready(1, 2), out) == 0);
    CHECK(deliver(&h, 1, result(1, 2, 2, 0.99), out) == 1);
    CHECK(out[0].msg.decision == KL_DECIDE_STOP);
    CHECK(kl_sched_state(h.tu.sched, 1) == KL_TRIAL_RUNNING);
    CHECK(kl_sched_last_t(h.tu.sched, 1) == 1);
    CHECK(count_events(h.journal, "failed") == 0 && count_events(h.journal, "errored") == 0);
    CHECK(count_events(h.journal, "released") == 2);
    close_harness(&h);
}

/* Without holds (the early events of a sweep begun by an older kiln), the paused trial goes to a
 * second worker at once, as before; the lease still keeps the first worker's late READY from
 * failing the trial the second one now runs, which is what aborted the coordinator. */
static void test_race_leases(void)
{
    harness h;
    kl__reply out[NRANKS];
    if (!open_harness(&h, 6, false)) {
        close_harness(&h);
        return;
    }
    pause_three(&h, out);
    CHECK(deliver(&h, 3, ready(2, 3), out) == 1);
    CHECK(out[0].to == 3 && out[0].msg.kind == KL__MSG_JOB && out[0].msg.trial == 1);
    int64_t lease = out[0].msg.lease;
    CHECK(deliver(&h, 2, ready(1, 2), out) == 1); /* trial 1's first worker, late */
    CHECK(kl_sched_state(h.tu.sched, 1) == KL_TRIAL_RUNNING);
    CHECK(count_events(h.journal, "failed") == 0 && count_events(h.journal, "errored") == 0);
    /* Its second worker goes on: its result counts. */
    CHECK(deliver(&h, 3, result(1, lease, 2, 0.95), out) == 1);
    CHECK(out[0].msg.decision == KL_DECIDE_PAUSE);
    close_harness(&h);
}

/* ---- random orders ---- */

typedef struct worker {
    int64_t trial; /* the trial it holds, -1: none */
    int64_t lease;
    int until_t, t;
    bool waiting; /* a message sent, its answer not applied yet */
    bool done;    /* told to exit */
    kl__msg next; /* what it says when it next speaks */
} worker;

static uint64_t rng_state;
static uint32_t rnd(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33);
}

/* A learning curve: better with t, different per trial, equal values now and then. */
static double curve(int64_t trial, int t)
{
    return (double)((trial * 7919) % 13) / 16.0 + 0.02 * t;
}

typedef struct world {
    worker w[NRANKS];
    int holder[MAX_TRIALS]; /* which rank holds each trial, 0: none */
    int ckpt_t[MAX_TRIALS]; /* the epoch each trial's checkpoint holds */
    bool ok;
} world;

/* A worker hears the coordinator. Holding a trial is from the JOB until the READY that follows
 * its last decision; the checkpoint of an epoch is written after its decision, as the trainer
 * does. */
static void hear(world *wd, int r, const kl__msg *m)
{
    worker *w = &wd->w[r];
    w->waiting = false;
    if (m->kind == KL__MSG_EXIT) {
        w->done = true;
        return;
    }
    if (m->kind == KL__MSG_JOB) {
        if (!CHECK(wd->holder[m->trial] == 0)) {
            fprintf(stderr, "    trial %lld given to rank %d while rank %d holds it\n",
                    (long long)m->trial, r, wd->holder[m->trial]);
            wd->ok = false;
        }
        wd->holder[m->trial] = r;
        *w = (worker){.trial = m->trial, .lease = m->lease, .until_t = m->until_t};
        w->t = wd->ckpt_t[m->trial] + 1;
        w->next = result(w->trial, w->lease, w->t, curve(w->trial, w->t));
        return;
    }
    CHECK(m->kind == KL__MSG_DECISION && m->trial == w->trial);
    wd->ckpt_t[w->trial] = w->t;
    if (m->decision == KL_DECIDE_CONTINUE && w->t < w->until_t) {
        w->t++;
        w->next = result(w->trial, w->lease, w->t, curve(w->trial, w->t));
    } else {
        w->next = ready(w->trial, w->lease); /* it lets go when it says so */
    }
}

/* One sweep in a random order of the workers' messages; returns whether it ended well. */
static bool random_sweep(uint64_t seed, int ntrials)
{
    harness h;
    world wd = {.ok = true};
    kl__reply out[NRANKS];
    rng_state = seed;
    if (!open_harness(&h, ntrials, true)) {
        close_harness(&h);
        return false;
    }
    for (int r = 1; r < NRANKS; r++)
        wd.w[r] = (worker){.trial = -1, .next = ready(0, 0)};
    int steps = 0;
    for (; steps < 100000; steps++) {
        int can[NRANKS], n = 0;
        for (int r = 1; r < NRANKS; r++)
            if (!wd.w[r].done && !wd.w[r].waiting)
                can[n++] = r;
        if (n == 0)
            break;
        int r = can[rnd() % (uint32_t)n];
        kl__msg m = wd.w[r].next;
        if (m.kind == KL__MSG_READY && wd.w[r].trial >= 0) {
            wd.holder[wd.w[r].trial] = 0;
            wd.w[r].trial = -1;
        }
        wd.w[r].waiting = true;
        int nout = deliver(&h, r, m, out);
        for (int i = 0; i < nout; i++)
            hear(&wd, out[i].to, &out[i].msg);
        if (nout < 0)
            break;
    }
    bool all_done = true;
    for (int r = 1; r < NRANKS; r++)
        all_done = all_done && wd.w[r].done;
    wd.ok = CHECK(all_done) && wd.ok;
    wd.ok =
        CHECK(count_events(h.journal, "failed") + count_events(h.journal, "errored") == 0) && wd.ok;
    for (int64_t t = 0; t < h.tu.ntrials; t++) {
        kl_trial_state st = kl_sched_state(h.tu.sched, t);
        wd.ok = CHECK(st == KL_TRIAL_DONE || st == KL_TRIAL_PAUSED) && wd.ok;
        wd.ok = CHECK(!kl_sched_held(h.tu.sched, t)) && wd.ok;
    }

    /* The journal replays to the same scheduler: states, last results, the best trial. */
    kl_error err = {0};
    harness r;
    memset(&r, 0, sizeof r);
    r.o = h.o;
    r.tu = (kl__tuner){.o = &r.o, .size = NRANKS, .nworkers = NRANKS - 1, .group_size = 1};
    r.tu.dir = strdup(tmpdir);
    r.tu.sw = h.tu.sw; /* shared, freed with h */
    r.tu.ntrials = h.tu.ntrials;
    r.tu.trials = calloc((size_t)r.tu.ntrials + 1, sizeof *r.tu.trials);
    r.tu.sched = kl_sched_new(&h.tu.sw->sched, h.tu.sw->maximize, h.tu.ntrials, &err);
    json_t *events = kl_journal_read(h.journal, &err);
    snprintf(r.journal, sizeof r.journal, "%s/replay.jsonl", tmpdir);
    unlink(r.journal);
    r.tu.journal = kl_journal_open(r.journal, &err);
    kl_status st = events && r.tu.sched && r.tu.trials && r.tu.journal
                       ? kl__tune_replay(&r.tu, events, &err)
                       : KL_EINTERNAL;
    if (!CHECK(st == KL_OK)) {
        fprintf(stderr, "    %s\n", err.msg);
        wd.ok = false;
    }
    for (int64_t t = 0; st == KL_OK && t < h.tu.ntrials; t++) {
        wd.ok = CHECK(kl_sched_state(r.tu.sched, t) == kl_sched_state(h.tu.sched, t)) && wd.ok;
        wd.ok = CHECK(kl_sched_last_t(r.tu.sched, t) == kl_sched_last_t(h.tu.sched, t)) && wd.ok;
    }
    wd.ok = CHECK(kl_sched_best_trial(r.tu.sched) == kl_sched_best_trial(h.tu.sched)) && wd.ok;
    wd.ok = CHECK(r.tu.leases == h.tu.leases) && wd.ok;
    wd.ok = CHECK(count_events(r.journal, "released") == 0) && wd.ok; /* nothing was held */
    json_decref(events);
    r.tu.sw = NULL;
    close_tuner(&r.tu);
    close_harness(&h);
    if (!wd.ok)
        fprintf(stderr, "    random_sweep(seed %llu, %d trials) failed after %d steps\n",
                (unsigned long long)seed, ntrials, steps);
    return wd.ok;
}

static void test_random_orders(void)
{
    int failed = 0;
    for (uint64_t seed = 1; seed <= 600 && failed < 3; seed++)
        failed += !random_sweep(seed, 4 + (int)(seed % 13));
    CHECK(failed == 0);
}

static const check_case cases[] = {
    CHECK_CASE(test_race_held),
    CHECK_CASE(test_race_leases),
    CHECK_CASE(test_random_orders),
};

int main(int argc, char **argv)
{
    /* The journal fsyncs every event: on tmpfs that costs nothing. */
    snprintf(tmpdir, sizeof tmpdir, "%s/kiln-test-coord-XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    int rc = check_run("test_tune_coord", cases, CHECK_NCASES(cases), argc, argv);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    return rc;
}
