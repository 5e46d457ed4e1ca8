/* The sweep coordinator: opens or resumes a sweep folder, replays the journal into the
 * scheduler, then hands jobs to workers and decisions to reporting trials, journalling each
 * event (fsynced) before acting on it. On one rank it runs the trials itself; on N ranks, world
 * rank 0 coordinates and ranks 1..N-1 form worker groups of ranks_per_trial that train. */
#define _XOPEN_SOURCE 700 /* realpath */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kiln/clock.h"
#include "kiln/lock.h"
#include "kiln/stop.h"
#include "kiln/train.h"
#include "runtime/file.h"
#include "tune/pbt_impl.h"
#include "tune/tune_impl.h"

/* ---- journal events ---- */

static kl_status log_event(kl__tuner *tu, json_t *ev, kl_error *err)
{
    if (!ev)
        return kl_error_set(err, KL_ENOMEM, "out of memory");
    return kl_journal_append(tu->journal, ev, err);
}

static json_t *overrides_json(const kl__trial *t)
{
    json_t *o = json_object();
    for (int i = 0; o && i < t->nov; i++) {
        const char *eq = strchr(t->ov[i], '=');
        char key[256];
        snprintf(key, sizeof key, "%.*s", eq ? (int)(eq - t->ov[i]) : 0, t->ov[i]);
        json_object_set_new(o, key, json_string(eq ? eq + 1 : ""));
    }
    return o;
}

static const char *job_name(kl_job_kind k)
{
    return k == KL_JOB_NEW ? "new" : "promote";
}

/* ---- decisions ---- */

/* A trial's result: journalled with the scheduler's decision before anyone acts on it. A result
 * already in the journal (a resumed trial training an epoch again from an older checkpoint: the
 * epoch's checkpoint is written after its result, so kill -9 can fall between them) changes
 * nothing and says continue: the decision journalled with it was acted on already (the trial
 * was paused, then promoted or requeued), and the trial's job runs to its until_t. */
static kl_decision decide(kl__tuner *tu, int64_t trial, int t, double value, kl_error *err,
                          kl_status *st)
{
    kl__trial *tr = &tu->trials[trial];
    if (t <= tr->last_t)
        return KL_DECIDE_CONTINUE;
    kl_decision d = kl_sched_result(tu->sched, trial, t, value);
    json_t *ev =
        json_pack("{s:s, s:I, s:i, s:f, s:s}", "event", "result", "trial", (json_int_t)trial, "t",
                  t, "value", isfinite(value) ? value : 0.0, "decision", kl_decision_name(d));
    if (ev && !isfinite(value))
        json_object_set_new(ev, "value", json_null());
    *st = log_event(tu, ev, err);
    tr->last_t = t;
    /* Tests stop the coordinator here to kill it at a known point: right after its Nth result is
     * journalled, before it is acted on (KILN_TEST_STOP_AT=result:N, include/kiln/stop.h). */
    if (*st == KL_OK)
        kl_stop_test_point("result", 0, ++tu->results_logged);
    kl__tune_show(tu, NULL, false);
    if (d != KL_DECIDE_CONTINUE)
        kl__tune_line(tu, "trial %lld: %s at t=%d (%s %.4g)", (long long)trial, kl_decision_name(d),
                      t, tu->sw->metric, value);
    return d;
}

/* A trial's run ended badly (status: how): diverged (worst metric, the sweep goes on), refused
 * its config (errored at once: it would be refused every time), or failed otherwise (retried
 * until max_failures, then errored and never run again). */
static kl_status trial_failed(kl__tuner *tu, int64_t trial, kl_status status, const char *why,
                              kl_error *err)
{
    kl__trial *tr = &tu->trials[trial];
    const char *event;
    bool config = status == KL_EINVAL || status == KL_EUNSUPPORTED;
    if (status == KL_ERANGE) {
        tr->diverged = true;
        kl_sched_failed(tu->sched, trial);
        event = "diverged";
    } else if (++tr->failures >= tu->sw->max_failures || config) {
        kl_sched_failed(tu->sched, trial);
        event = "errored";
    } else {
        kl_sched_requeue(tu->sched, trial);
        event = "failed";
    }
    free(tr->error);
    tr->error = strdup(why);
    kl__tune_line(tu, "trial %lld %s: %s", (long long)trial, event, why);
    return log_event(tu,
                     json_pack("{s:s, s:I, s:s, s:i}", "event", event, "trial", (json_int_t)trial,
                               "error", why, "failures", tr->failures),
                     err);
}

/* A trial's job ended without a failure: a decision should have ended it. If the scheduler
 * still counts it as running (its run stopped before the job's until_t), it is a failure, not
 * a trial left running forever. */
static kl_status job_ended(kl__tuner *tu, int64_t trial, kl_error *err)
{
    if (kl_sched_state(tu->sched, trial) != KL_TRIAL_RUNNING)
        return KL_OK;
    return trial_failed(tu, trial, KL_EINTERNAL, "its run ended before the scheduler decided", err);
}

/* A trial's worker let go of it (its job ended): a trial it paused may be promoted from now on. */
static kl_status release(kl__tuner *tu, int64_t trial, kl_error *err)
{
    if (!kl_sched_release(tu->sched, trial))
        return KL_OK;
    return log_event(tu, json_pack("{s:s, s:I}", "event", "released", "trial", (json_int_t)trial),
                     err);
}

/* The next job, journalled (with the trial's hyperparameters when it is new) with the lease
 * that makes it the trial's current assignment. */
static kl_status next_job(kl__tuner *tu, kl_job *job, int64_t *lease, kl_error *err)
{
    *lease = 0;
    /* After the time budget (or a stop request) nothing new starts; the trials running finish
     * their jobs. The scheduler is not asked, so the journal replays exactly. */
    if ((tu->sw->time_budget > 0 && kl_now() - tu->t0 >= tu->sw->time_budget) || kl_stop_signal()) {
        *job = (kl_job){.kind = KL_JOB_WAIT, .trial = -1};
        return KL_OK;
    }
    if (tu->catchup_next < tu->ncatchup)
        return kl__tune_pbt_catch_up(tu, job, lease, err);
    *job = kl_sched_next(tu->sched);
    if (job->kind != KL_JOB_NEW && job->kind != KL_JOB_PROMOTE)
        return KL_OK;
    kl_status st = kl__tune_overrides(tu, job->trial, err);
    if (st != KL_OK)
        return st;
    kl__trial *tr = &tu->trials[job->trial];
    int from_t = tr->last_t;
    *lease = tr->lease = ++tu->leases;
    /* PBT: the trial exploits a better one first (its checkpoint copied, its values explored),
     * and the journal says so with the values it continues with. */
    int64_t donor = job->kind == KL_JOB_PROMOTE ? kl_sched_donor(tu->sched, job->trial) : -1;
    if (donor >= 0 && (st = kl__tune_pbt_exploit(tu, job->trial, donor, from_t, err)) != KL_OK)
        return st;
    json_t *ev = json_pack("{s:s, s:I, s:s, s:i, s:i, s:I}", "event", "started", "trial",
                           (json_int_t)job->trial, "job", job_name(job->kind), "rung", job->rung,
                           "until_t", job->until_t, "lease", (json_int_t)*lease);
    if (ev && (job->kind == KL_JOB_NEW || donor >= 0))
        json_object_set_new(ev, "overrides", overrides_json(tr));
    if (ev && donor >= 0) {
        json_object_set_new(ev, "donor", json_integer(donor));
        json_object_set_new(ev, "donor_t", json_integer(tr->last_t));
        json_object_set_new(ev, "from_t", json_integer(from_t));
    }
    return log_event(tu, ev, err);
}

/* ---- one rank: the coordinator trains the trials itself ---- */

typedef struct local_ctx {
    kl__tuner *tu;
    kl_status st;
    kl_error err;
} local_ctx;

static kl_decision local_decide(void *ctx, int64_t trial, int t, double value)
{
    local_ctx *c = ctx;
    kl_status st = KL_OK;
    kl_decision d = decide(c->tu, trial, t, value, &c->err, &st);
    if (st != KL_OK && c->st == KL_OK)
        c->st = st;
    return st == KL_OK ? d : KL_DECIDE_STOP;
}

static kl_status run_local(kl__tuner *tu, kl_error *err)
{
    kl_comm *self = NULL;
    kl_status st = kl_comm_self(&self, err);
    while (st == KL_OK) {
        kl_job job;
        int64_t lease;
        if ((st = next_job(tu, &job, &lease, err)) != KL_OK)
            break;
        if (job.kind == KL_JOB_NONE || job.kind == KL_JOB_WAIT) /* one worker: WAIT is the end */
            break;
        kl__tune_show(tu, NULL, true);
        kl__msg m = {
            .kind = KL__MSG_JOB, .trial = job.trial, .until_t = job.until_t, .lease = lease};
        local_ctx c = {.tu = tu};
        kl_error terr = {0};
        bool catching = kl_sched_held(tu->sched, job.trial); /* a PBT catch-up */
        kl_status ts = kl__tune_run_trial(tu, self, &m, local_decide, &c, &terr);
        if (c.st != KL_OK) {
            st = kl_error_set(err, c.st, "%s", c.err.msg);
        } else if (catching) { /* no decision to undo: the trial stays paused */
            if (ts == KL_ESTOPPED)
                st = kl_error_set(err, KL_ESTOPPED, "stopped by a signal: continue with --resume");
            else if (ts != KL_OK)
                kl__tune_line(tu, "trial %lld: catching up failed: %s", (long long)job.trial,
                              terr.msg);
        } else if (ts == KL_ESTOPPED) {
            kl_sched_requeue(tu->sched, job.trial);
            st = log_event(
                tu, json_pack("{s:s, s:I}", "event", "interrupted", "trial", (json_int_t)job.trial),
                err);
            if (st == KL_OK)
                st = kl_error_set(err, KL_ESTOPPED,
                                  "stopped by a signal; the running trial "
                                  "checkpointed: continue with --resume");
        } else if (ts != KL_OK) {
            st = trial_failed(tu, job.trial, ts, terr.msg, err);
        } else {
            st = job_ended(tu, job.trial, err);
        }
        if (st == KL_OK)
            st = release(tu, job.trial, err);
    }
    kl_comm_free(self);
    return st;
}

/* ---- N ranks: messages ---- */

static kl_status send_msg(kl_comm *c, int to, kl__msg *m, kl_error *err)
{
    return kl_comm_send(c, to, to == 0 ? KL__TAG_TO_COORD : KL__TAG_TO_WORKER, m, sizeof *m, err);
}

static kl_status recv_msg(kl_comm *c, int from, kl__msg *m, int *src, kl_error *err)
{
    size_t n = 0;
    kl_status st = kl_comm_recv(c, from, from < 0 ? KL__TAG_TO_COORD : KL__TAG_TO_WORKER, m,
                                sizeof *m, src, &n, err);
    if (st == KL_OK && n != sizeof *m)
        st = kl_error_set(err, KL_ECOMM, "a tune message of %zu bytes, expected %zu", n, sizeof *m);
    return st;
}

kl_status kl__coord_init(kl__coord *c, int size, kl_error *err)
{
    *c = (kl__coord){0};
    c->idle = calloc((size_t)size, sizeof *c->idle);
    c->trial = calloc((size_t)size, sizeof *c->trial);
    c->lease = calloc((size_t)size, sizeof *c->lease);
    if (c->idle && c->trial && c->lease)
        return KL_OK;
    kl__coord_free(c);
    return kl_error_set(err, KL_ENOMEM, "out of memory");
}

void kl__coord_free(kl__coord *c)
{
    free(c->idle);
    free(c->trial);
    free(c->lease);
    *c = (kl__coord){0};
}

/* Whether rank src holds trial under this lease, and the lease is the trial's current one. */
static bool holds(const kl__tuner *tu, const kl__coord *c, int src, int64_t trial, int64_t lease)
{
    return trial >= 0 && trial < tu->ntrials && c->trial[src] == trial + 1 &&
           c->lease[src] == lease && tu->trials[trial].lease == lease;
}

static void note_stale(kl__tuner *tu, const kl__msg *m, int src, const char *what)
{
    kl__tune_line(tu,
                  "ignored %s from rank %d about trial %lld: it no longer holds that trial "
                  "(lease %lld)",
                  what, src, (long long)m->trial, (long long)m->lease);
}

/* A worker's run of its trial ended with a failure or a stop signal. Only a trial the scheduler
 * still counts as running is failed or requeued: one that was decided already (paused, stopped,
 * done) keeps its decision, and its worker is done with it. */
static kl_status run_ended(kl__tuner *tu, kl__coord *c, const kl__msg *m, int src, kl_error *err)
{
    if (m->kind == KL__MSG_STOPPED)
        c->stopping = true;
    if (!holds(tu, c, src, m->trial, m->lease)) {
        note_stale(tu, m, src, m->kind == KL__MSG_FAILED ? "a failure" : "a stop");
        return KL_OK;
    }
    if (kl_sched_state(tu->sched, m->trial) != KL_TRIAL_RUNNING) {
        if (m->kind == KL__MSG_FAILED)
            kl__tune_line(tu, "trial %lld failed after its decision (which stands): %s",
                          (long long)m->trial, m->text);
        return KL_OK;
    }
    if (m->kind == KL__MSG_FAILED)
        return trial_failed(tu, m->trial, (kl_status)m->status, m->text, err);
    kl_sched_requeue(tu->sched, m->trial);
    return log_event(
        tu, json_pack("{s:s, s:I}", "event", "interrupted", "trial", (json_int_t)m->trial), err);
}

/* Rank src's job is over and it is idle: the trial it held is released (if its lease is still the
 * trial's), and a trial left running without a decision counts as failed. */
static kl_status job_over(kl__tuner *tu, kl__coord *c, int src, kl_error *err)
{
    kl_status st = KL_OK;
    if (c->trial[src] > 0) {
        int64_t trial = c->trial[src] - 1;
        c->running--;
        if (tu->trials[trial].lease == c->lease[src]) {
            st = job_ended(tu, trial, err);
            if (st == KL_OK)
                st = release(tu, trial, err);
        }
    }
    c->trial[src] = 0;
    c->lease[src] = 0;
    c->idle[c->nidle++] = src;
    return st;
}

/* Jobs for the idle workers while there are any: a result may have made several possible. */
static kl_status serve_idle(kl__tuner *tu, kl__coord *c, kl__reply *out, int *nout, kl_error *err)
{
    c->stopping = c->stopping || kl_stop_signal() != 0;
    while (c->nidle > 0) {
        kl_job job = {.kind = KL_JOB_NONE};
        int64_t lease = 0;
        kl_status st;
        if (!c->stopping && (st = next_job(tu, &job, &lease, err)) != KL_OK)
            return st;
        if (job.kind == KL_JOB_WAIT && c->running > 0)
            break; /* a running trial's result may unlock work */
        int w = c->idle[--c->nidle];
        kl__reply *r = &out[(*nout)++];
        r->to = w;
        r->msg = (kl__msg){.kind = KL__MSG_EXIT};
        if (job.kind == KL_JOB_NEW || job.kind == KL_JOB_PROMOTE) {
            r->msg = (kl__msg){
                .kind = KL__MSG_JOB, .trial = job.trial, .until_t = job.until_t, .lease = lease};
            if ((st = kl__tune_job_pack(tu, &r->msg, err)) != KL_OK)
                return st;
            c->running++;
            c->trial[w] = job.trial + 1;
            c->lease[w] = lease;
            kl__tune_show(tu, NULL, true);
        } else {
            c->exited++;
        }
    }
    return KL_OK;
}

kl_status kl__coord_handle(kl__tuner *tu, kl__coord *c, const kl__msg *m, int src, kl__reply *out,
                           int *nout, kl_error *err)
{
    *nout = 0;
    if (src < 1 || src >= tu->size)
        return kl_error_set(err, KL_ECOMM, "a tune message from rank %d, which is no worker", src);
    kl_status st = KL_OK;
    switch ((kl__msg_kind)m->kind) {
    case KL__MSG_RESULT: {
        kl__reply *r = &out[(*nout)++];
        r->to = src;
        r->msg = (kl__msg){.kind = KL__MSG_DECISION,
                           .trial = m->trial,
                           .lease = m->lease,
                           .decision = KL_DECIDE_STOP};
        bool mine = holds(tu, c, src, m->trial, m->lease);
        bool current = mine && kl_sched_state(tu->sched, m->trial) == KL_TRIAL_RUNNING && m->t >= 1;
        if (current)
            r->msg.decision = (int32_t)decide(tu, m->trial, m->t, m->value, err, &st);
        else if (mine && kl_sched_held(tu->sched, m->trial)) /* a PBT catch-up: to its until_t */
            r->msg.decision = KL_DECIDE_CONTINUE;
        else
            note_stale(tu, m, src, "a result");
        return st;
    }
    case KL__MSG_FAILED:
    case KL__MSG_STOPPED:
    case KL__MSG_READY:                  /* each says the worker is idle now */
        if (m->lease != c->lease[src]) { /* it is not: it has a newer job */
            note_stale(tu, m, src, "an end of job");
            return KL_OK;
        }
        if (m->kind != KL__MSG_READY && (st = run_ended(tu, c, m, src, err)) != KL_OK)
            return st;
        if ((st = job_over(tu, c, src, err)) != KL_OK)
            return st;
        return serve_idle(tu, c, out, nout, err);
    default:
        return kl_error_set(err, KL_ECOMM, "a tune message of kind %d from rank %d", (int)m->kind,
                            src);
    }
}

/* The coordinator's loop: answer whoever speaks, until every worker has been sent home. */
static kl_status coordinate(kl__tuner *tu, kl_error *err)
{
    kl__coord c;
    kl_status st = kl__coord_init(&c, tu->size, err);
    kl__reply *out = st == KL_OK ? calloc((size_t)tu->size, sizeof *out) : NULL;
    if (st == KL_OK && !out)
        st = kl_error_set(err, KL_ENOMEM, "out of memory");
    while (st == KL_OK && c.exited < tu->nworkers) {
        kl__msg m;
        int src, n = 0;
        if ((st = recv_msg(tu->world, -1, &m, &src, err)) != KL_OK)
            break;
        st = kl__coord_handle(tu, &c, &m, src, out, &n, err);
        for (int i = 0; st == KL_OK && i < n; i++)
            st = send_msg(tu->world, out[i].to, &out[i].msg, err);
    }
    bool stopping = c.stopping;
    free(out);
    kl__coord_free(&c);
    if (st == KL_OK && stopping)
        st = kl_error_set(err, KL_ESTOPPED,
                          "stopped by a signal; the running trials "
                          "checkpointed: continue with --resume");
    return st;
}

/* A worker leader's side of a decision: ask the coordinator. */
typedef struct remote_ctx {
    kl__tuner *tu;
    int64_t lease; /* the job's */
    kl_status st;
    kl_error err;
} remote_ctx;

static kl_decision remote_decide(void *ctx, int64_t trial, int t, double value)
{
    remote_ctx *c = ctx;
    kl__msg m = {.kind = KL__MSG_RESULT, .trial = trial, .t = t, .value = value, .lease = c->lease};
    if (c->st == KL_OK && (c->st = send_msg(c->tu->world, 0, &m, &c->err)) == KL_OK)
        c->st = recv_msg(c->tu->world, 0, &m, NULL, &c->err);
    return c->st == KL_OK ? (kl_decision)m.decision : KL_DECIDE_STOP;
}

/* A worker group: the leader asks for jobs and tells its group; all train together. */
static kl_status work(kl__tuner *tu, kl_error *err)
{
    bool leader = kl_comm_rank(tu->group) == 0;
    kl_status st = KL_OK;
    kl__msg ready = {.kind = KL__MSG_READY};
    for (;;) {
        kl__msg job = {0};
        if (leader && (st = send_msg(tu->world, 0, &ready, err)) == KL_OK)
            st = recv_msg(tu->world, 0, &job, NULL, err);
        if (st != KL_OK)
            return st;
        if ((st = kl_comm_bcast(tu->group, &job, sizeof job, 0, err)) != KL_OK)
            return st;
        if (job.kind == KL__MSG_EXIT)
            return KL_OK;
        remote_ctx c = {.tu = tu, .lease = job.lease};
        kl_error terr = {0};
        kl_status ts = kl__tune_run_trial(tu, tu->group, &job, remote_decide, &c, &terr);
        if (c.st != KL_OK) /* the coordinator is gone: nothing left to do */
            return kl_error_set(err, c.st, "%s", c.err.msg);
        ready = (kl__msg){.kind = KL__MSG_READY, .trial = job.trial, .lease = job.lease};
        if (ts == KL_ESTOPPED) {
            ready.kind = KL__MSG_STOPPED;
        } else if (ts != KL_OK) {
            ready.kind = KL__MSG_FAILED;
            ready.status = (int32_t)ts;
            snprintf(ready.text, sizeof ready.text, "%s", terr.msg);
        }
    }
}

/* ---- opening, resuming, replaying ---- */

static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

/* Replays the journal: every call the scheduler saw, in order, so that it is where it was. A
 * trial that was running when the sweep stopped counts one failure and runs again from its
 * checkpoint; a trial paused but not released is released (its worker is gone). Holds are on
 * from the event that says so: sweeps begun by a kiln without them (no "holds" in the sweep
 * event) replay their early events as they happened. */
kl_status kl__tune_replay(kl__tuner *tu, json_t *events, kl_error *err)
{
    size_t i;
    json_t *ev;
    json_array_foreach(events, i, ev)
    {
        const char *kind = json_string_value(json_object_get(ev, "event"));
        int64_t trial = json_integer_value(json_object_get(ev, "trial"));
        if (kind && (!strcmp(kind, "sweep") || !strcmp(kind, "resumed")) &&
            json_is_true(json_object_get(ev, "holds")))
            kl_sched_set_holds(tu->sched, true);
        if (!kind || !strcmp(kind, "sweep") || !strcmp(kind, "resumed") ||
            !strcmp(kind, "finished"))
            continue;
        if (trial < 0 || trial >= tu->ntrials)
            return kl_error_set(err, KL_EFORMAT,
                                "%s/journal.jsonl: event %zu names trial %lld, "
                                "which this sweep does not have",
                                tu->dir, i + 1, (long long)trial);
        kl__trial *tr = &tu->trials[trial];
        if (!strcmp(kind, "started")) {
            kl_job job = kl_sched_next(tu->sched);
            if (job.trial != trial || (job.kind != KL_JOB_NEW && job.kind != KL_JOB_PROMOTE))
                return kl_error_set(err, KL_EFORMAT,
                                    "%s/journal.jsonl: event %zu started trial %lld, but the "
                                    "scheduler replays trial %lld there: the sweep file or "
                                    "kiln's scheduler changed since the sweep began",
                                    tu->dir, i + 1, (long long)trial, (long long)job.trial);
            tr->lease = ++tu->leases;
            if (tu->tpe && job.kind == KL_JOB_NEW) {
                kl_status st = kl__tune_tpe_replay(tu, trial, ev, i + 1, err);
                if (st != KL_OK)
                    return st;
            }
            if (tu->sw->sched.kind == KL_SCHED_PBT && job.kind == KL_JOB_PROMOTE) {
                kl_status st = kl__tune_pbt_replay(tu, trial, ev, i + 1, err);
                if (st != KL_OK)
                    return st;
            }
        } else if (!strcmp(kind, "catch_up")) {
            tr->lease = ++tu->leases;
        } else if (!strcmp(kind, "released")) {
            kl_sched_release(tu->sched, trial);
        } else if (!strcmp(kind, "result")) {
            json_t *v = json_object_get(ev, "value");
            int t = (int)json_integer_value(json_object_get(ev, "t"));
            kl_sched_result(tu->sched, trial, t, json_is_number(v) ? json_number_value(v) : NAN);
            tr->last_t = t;
        }
        const char *why = json_string_value(json_object_get(ev, "error"));
        bool failure =
            !strcmp(kind, "diverged") || !strcmp(kind, "errored") || !strcmp(kind, "failed");
        if (why && failure) {
            free(tr->error);
            tr->error = strdup(why);
        }
        if (!strcmp(kind, "diverged")) {
            tr->diverged = true;
            kl_sched_failed(tu->sched, trial);
        } else if (!strcmp(kind, "errored")) {
            tr->failures++;
            kl_sched_failed(tu->sched, trial);
        } else if (!strcmp(kind, "failed")) {
            tr->failures++;
            kl_sched_requeue(tu->sched, trial);
        } else if (!strcmp(kind, "interrupted")) {
            kl_sched_requeue(tu->sched, trial);
        }
    }
    kl_status st = KL_OK;
    for (int64_t t = 0; st == KL_OK && t < tu->ntrials; t++)
        if (kl_sched_state(tu->sched, t) == KL_TRIAL_RUNNING)
            st = trial_failed(tu, t, KL_EIO, "the sweep ended while it ran", err);
    for (int64_t t = 0; st == KL_OK && t < tu->ntrials; t++) {
        bool behind = false;
        if (tu->sw->sched.kind == KL_SCHED_PBT && kl_sched_held(tu->sched, t) &&
            (st = kl__tune_pbt_behind(tu, t, &behind, err)) != KL_OK)
            break;
        if (behind)
            tu->catchup[tu->ncatchup++] = t;
        else
            st = release(tu, t, err);
    }
    return st;
}

static kl_status make_folder(kl__tuner *tu, kl_error *err)
{
    char buf[PATH_MAX];
    if (tu->o->dir) {
        snprintf(buf, sizeof buf, "%s", tu->o->dir);
    } else {
        const char *base =
            strrchr(tu->o->sweep, '/') ? strrchr(tu->o->sweep, '/') + 1 : tu->o->sweep;
        int stem = (int)strcspn(base, ".");
        char stamp[32];
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
        mkdir("sweeps", 0755);
        snprintf(buf, sizeof buf, "sweeps/%.*s-%s", stem, base, stamp);
    }
    for (char *p = buf + 1; *p; p++) /* its parents, as mkdir -p */
        if (*p == '/') {
            *p = '\0';
            mkdir(buf, 0755);
            *p = '/';
        }
    if (mkdir(buf, 0755) != 0 && !(errno == EEXIST && tu->o->resume))
        return kl_error_set(
            err, KL_EIO, "cannot create the sweep folder %s: %s%s", buf, strerror(errno),
            errno == EEXIST ? " (continue it with --resume, or pick another --dir)" : "");
    snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "/trials");
    mkdir(buf, 0755);
    buf[strlen(buf) - 7] = '\0';
    return (tu->dir = strdup(buf)) ? KL_OK : kl_error_set(err, KL_ENOMEM, "out of memory");
}

/* Rank 0: the folder, the journal, and the sweep file (a resumed sweep re-reads the file it
 * started from and refuses it if it changed). */
static kl_status open_sweep(kl__tuner *tu, char *sweep_path, size_t size, kl_error *err)
{
    /* A new sweep's file is read and checked before its folder exists, so a mistake in it
     * leaves nothing behind. */
    if (!tu->o->resume) {
        if (!realpath(tu->o->sweep, sweep_path))
            return kl_error_set(err, KL_EIO, "%s: %s", tu->o->sweep, strerror(errno));
        if (!(tu->sw = kl_sweep_load(sweep_path, err)))
            return err->status;
    }
    kl_status st = make_folder(tu, err);
    /* One coordinator per sweep folder: a second --resume of a sweep that runs is refused. */
    if (st == KL_OK)
        st = kl_dir_lock(tu->dir, "sweep", &tu->lock, err);
    if (st != KL_OK)
        return st;
    char jpath[PATH_MAX + 32];
    snprintf(jpath, sizeof jpath, "%s/journal.jsonl", tu->dir);
    json_t *events = NULL;
    if (tu->o->resume) {
        if (!(events = kl_journal_read(jpath, err)))
            return err->status;
        json_t *first = json_array_get(events, 0);
        const char *p = json_string_value(json_object_get(first, "sweep"));
        if (!p) {
            json_decref(events);
            return kl_error_set(err, KL_EFORMAT,
                                "%s does not begin with a sweep event: not a "
                                "kiln sweep folder",
                                jpath);
        }
        snprintf(sweep_path, size, "%s", p);
        size_t len = 0;
        char *text = kl__file_read(p, "sweep file", &len, NULL);
        uint64_t h = text ? fnv1a(text, len) : 0;
        free(text);
        char hex[32];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
        const char *want = json_string_value(json_object_get(first, "sweep_hash"));
        if (!text || !want || strcmp(want, hex) != 0) {
            json_decref(events);
            return kl_error_set(err, KL_EINVAL,
                                "%s: the sweep file %s %s since the sweep began; a resumed sweep "
                                "must run the same search",
                                tu->dir, p, text ? "changed" : "is gone");
        }
    }
    json_decref(events);
    if (!(tu->journal = kl_journal_open(jpath, err)))
        return err->status;
    return KL_OK;
}

static kl_status start_journal(kl__tuner *tu, const char *sweep_path, kl_error *err)
{
    char jpath[PATH_MAX + 32];
    snprintf(jpath, sizeof jpath, "%s/journal.jsonl", tu->dir);
    if (tu->o->resume) {
        json_t *events = kl_journal_read(jpath, err);
        if (!events)
            return err->status;
        kl_status st = kl__tune_replay(tu, events, err);
        json_decref(events);
        kl_sched_set_holds(tu->sched, true);
        if (st == KL_OK)
            st = log_event(
                tu, json_pack("{s:s, s:i, s:b}", "event", "resumed", "ranks", tu->size, "holds", 1),
                err);
        return st;
    }
    size_t len = 0;
    char *text = kl__file_read(sweep_path, "sweep file", &len, NULL), hex[32];
    if (!text)
        return kl_error_set(err, KL_EIO, "cannot read %s", sweep_path);
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)fnv1a(text, len));
    char copy[PATH_MAX + 32];
    snprintf(copy, sizeof copy, "%s/sweep.yaml", tu->dir);
    FILE *f = fopen(copy, "w");
    if (f) {
        fwrite(text, 1, len, f);
        fclose(f);
    }
    free(text);
    kl_sched_set_holds(tu->sched, true);
    return log_event(tu,
                     json_pack("{s:s, s:s, s:s, s:I, s:s, s:b, s:i, s:i, s:b}", "event", "sweep",
                               "sweep", sweep_path, "sweep_hash", hex, "trials",
                               (json_int_t)tu->ntrials, "metric", tu->sw->metric, "maximize",
                               tu->sw->maximize, "ranks", tu->size, "max_t", tu->sw->sched.max_t,
                               "holds", 1),
                     err);
}

/* Every rank loads the sweep (workers need it to build their trials' configs); rank 0 decides
 * the folder and the file, and tells the others. */
static kl_status setup(kl__tuner *tu, kl_error *err)
{
    struct {
        int32_t status;
        char msg[KL_ERROR_MSG_MAX];
        char sweep[PATH_MAX];
        char dir[PATH_MAX];
    } *hdr = calloc(1, sizeof *hdr);
    if (!hdr)
        return kl_error_set(err, KL_ENOMEM, "out of memory");
    kl_status st = KL_OK;
    if (tu->rank == 0) {
        st = open_sweep(tu, hdr->sweep, sizeof hdr->sweep, err);
        if (st == KL_OK && !tu->sw && !(tu->sw = kl_sweep_load(hdr->sweep, err)))
            st = err->status;
        if (st == KL_OK)
            snprintf(hdr->dir, sizeof hdr->dir, "%s", tu->dir);
        hdr->status = st;
        if (st != KL_OK)
            snprintf(hdr->msg, sizeof hdr->msg, "%s", err->msg);
    }
    if (tu->size > 1 && (st = kl_comm_bcast(tu->world, hdr, sizeof *hdr, 0, err)) != KL_OK) {
        free(hdr);
        return st;
    }
    if (hdr->status != KL_OK) {
        st = tu->rank == 0 ? (kl_status)hdr->status
                           : kl_error_set(err, (kl_status)hdr->status, "%s", hdr->msg);
        free(hdr);
        return st;
    }
    if (tu->rank != 0) {
        tu->dir = strdup(hdr->dir);
        if (!(tu->sw = kl_sweep_load(hdr->sweep, err)))
            st = err->status;
    }
    free(hdr);
    if (st != KL_OK)
        return st;
    tu->ntrials = kl_sweep_trials(tu->sw);
    tu->trials = calloc((size_t)tu->ntrials + 1, sizeof *tu->trials);
    tu->catchup = calloc((size_t)tu->ntrials + 1, sizeof *tu->catchup);
    if (!tu->trials || !tu->catchup)
        return kl_error_set(err, KL_ENOMEM, "out of memory");
    int rpt = tu->sw->ranks_per_trial;
    if (tu->size > 1 && (tu->size - 1) % rpt != 0)
        return kl_error_set(err, KL_EINVAL,
                            "%d ranks: rank 0 coordinates and the other %d must form groups of "
                            "ranks_per_trial %d; run with 1 + a multiple of %d ranks",
                            tu->size, tu->size - 1, rpt, rpt);
    tu->group_size = tu->size > 1 ? rpt : 1;
    tu->nworkers = tu->size > 1 ? (tu->size - 1) / rpt : 1;
    return KL_OK;
}

static void tuner_free(kl__tuner *tu)
{
    for (int64_t i = 0; tu->trials && i < tu->ntrials; i++) {
        kl_sweep_overrides_free(tu->trials[i].ov, tu->trials[i].nov);
        free(tu->trials[i].error);
    }
    free(tu->trials);
    free(tu->catchup);
    kl__tune_free_data(tu);
    kl_sched_free(tu->sched);
    kl_tpe_free(tu->tpe);
    kl_journal_close(tu->journal);
    kl_sweep_free(tu->sw);
    kl_comm_free(tu->group);
    kl_dir_unlock(tu->lock);
    free(tu->dir);
}

/* Which GPU each worker rank trains on: the workers (every rank but the coordinator, which
 * trains nothing and takes no GPU) split apart, and a worker's local rank among them is its slot.
 * A group's own local rank would put every group of a node on its first GPU. */
static kl_status worker_slots(kl__tuner *tu, kl_error *err)
{
    kl_comm *workers = NULL;
    kl_status st = kl_comm_split(tu->world, tu->rank == 0 ? 0 : 1, tu->rank, &workers, err);
    if (st == KL_OK && tu->rank != 0) {
        tu->device_slot = kl_comm_local_rank(workers);
        tu->device_slots = kl_comm_local_size(workers);
    }
    kl_comm_free(workers);
    return st;
}

kl_status kl_tune_run(const kl_tune_options *o, kl_comm *world, kl_error *err)
{
    kl__tuner tu = {.o = o, .world = world, .t0 = kl_now()};
    tu.rank = kl_comm_rank(world);
    tu.size = kl_comm_size(world);
    kl_status st = setup(&tu, err);
    /* The world splits into the coordinator (color 0) and the worker groups (1, 2, ...). */
    if (st == KL_OK && tu.size > 1)
        st = kl_comm_split(world, tu.rank == 0 ? 0 : 1 + (tu.rank - 1) / tu.group_size, tu.rank,
                           &tu.group, err);
    if (st == KL_OK && tu.size > 1)
        st = worker_slots(&tu, err);
    if (st == KL_OK && tu.rank == 0) {
        if (!(tu.sched = kl_sched_new(&tu.sw->sched, tu.sw->maximize, tu.ntrials, err)))
            st = err->status;
        if (st == KL_OK && tu.sw->tpe.on && !(tu.tpe = kl_tpe_new(tu.sw, err)))
            st = err->status;
        int tty = o->tty >= 0 ? o->tty : isatty(STDERR_FILENO);
        tu.tty = tty && !o->quiet;
        char sweep_path[PATH_MAX];
        snprintf(sweep_path, sizeof sweep_path, "%s", tu.sw->path);
        if (st == KL_OK)
            st = start_journal(&tu, sweep_path, err);
        if (st == KL_OK) {
            kl__tune_line(&tu, "sweep %s: %lld trials, %s %s, %d worker%s, folder %s", tu.sw->path,
                          (long long)tu.ntrials, tu.sw->maximize ? "maximize" : "minimize",
                          tu.sw->metric, tu.nworkers, tu.nworkers == 1 ? "" : "s", tu.dir);
            st = tu.size > 1 ? coordinate(&tu, err) : run_local(&tu, err);
        }
        if (tu.sched) {
            kl_error oerr = {0};
            kl__tune_show(&tu, NULL, true);
            kl_status ost = kl__tune_write_outputs(&tu, &oerr);
            if (st == KL_OK && ost != KL_OK) {
                *err = oerr;
                st = ost;
            }
            if (st == KL_OK)
                st = log_event(&tu, json_pack("{s:s}", "event", "finished"), err);
            if (st == KL_OK)
                st = kl__tune_check_failed(&tu, err);
        }
    } else if (st == KL_OK) {
        st = work(&tu, err);
    }
    tuner_free(&tu);
    return st;
}
