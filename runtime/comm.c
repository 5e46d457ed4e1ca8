/* The communicator's public calls (include/kiln/comm.h) and what every backend shares: argument
 * checks, the answers of a one-rank communicator (a sum over one rank is the buffer itself),
 * requests, the collective timeout with its watchdog (runtime/watchdog.c) and the phase that
 * names a wait, and the choice of the world's backend. Everything else goes through the
 * communicator's backend row (runtime/comm_impl.h): `self` (comm_self.c) or `mpi` (comm_mpi.c). */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/comm_impl.h"

/* A started all-reduce: the backend's request_size bytes in state. */
struct kl_comm_request {
    bool in_flight; /* false: nothing was started (one rank) */
    max_align_t state[];
};

/* The backends that may own the world, in the order they are asked: MPI's when a launcher
 * started several ranks or MPI already runs, else one process alone. A backend chosen per
 * process (a GPU backend, or one named by the caller or the environment) goes before them. */
static const kl__comm_backend *const world_backends[] = {&kl__comm_mpi_backend,
                                                         &kl__comm_self_backend};

kl_comm *kl__comm_new(const kl__comm_backend *b, kl_error *err)
{
    kl_comm *c = calloc(1, sizeof *c + b->state_size);
    if (!c) {
        kl_error_set(err, KL_ENOMEM, "out of memory creating a communicator");
        return NULL;
    }
    c->backend = b;
    c->size = c->local_size = 1;
    return c;
}

kl_status kl_comm_world(int *argc, char ***argv, kl_comm **out, kl_error *err)
{
    size_t n = sizeof world_backends / sizeof *world_backends, i = 0;
    while (i + 1 < n && world_backends[i]->claims_world && !world_backends[i]->claims_world())
        i++;
    return world_backends[i]->world(argc, argv, out, err);
}

kl_status kl_comm_self(kl_comm **out, kl_error *err)
{
    return kl__comm_self_backend.world(NULL, NULL, out, err);
}

void kl_comm_free(kl_comm *c)
{
    if (!c)
        return;
    kl__watchdog_stop(c->wd);
    c->backend->free(c);
    free(c);
}

int kl_comm_rank(const kl_comm *c)
{
    return c->rank;
}
int kl_comm_size(const kl_comm *c)
{
    return c->size;
}
int kl_comm_local_rank(const kl_comm *c)
{
    return c->local_rank;
}
int kl_comm_local_size(const kl_comm *c)
{
    return c->local_size;
}
const char *kl_comm_backend(const kl_comm *c)
{
    return c->backend->name;
}

kl_status kl_comm_set_timeout(kl_comm *c, double seconds, kl_error *err)
{
    if (!(seconds >= 0))
        return kl_error_set(err, KL_EINVAL, "a collective timeout of %g s: give 0 or more",
                            seconds);
    c->timeout = seconds;
    if (!c->wd && seconds > 0 && c->size > 1 && !(c->wd = kl__watchdog_start(c->rank)))
        return kl_error_set(err, KL_ENOMEM, "cannot start the collective watchdog thread");
    return KL_OK;
}

double kl_comm_timeout(const kl_comm *c)
{
    return c->timeout;
}

void kl_comm_set_phase(kl_comm *c, const char *what, int64_t step)
{
    c->phase = what;
    c->phase_step = step;
}

bool kl__comm_watched(const kl_comm *c)
{
    return c->wd && c->timeout > 0;
}

void kl__comm_watch(kl_comm *c, const char *call, double grace)
{
    if (kl__comm_watched(c))
        kl__watchdog_enter(c->wd, c->timeout, grace, c->phase ? c->phase : call,
                           c->phase ? c->phase_step : -1);
}

void kl__comm_unwatch(kl_comm *c)
{
    kl__watchdog_leave(c->wd);
}

/* The backends take counts as ints (MPI's); kiln's buffers are bucketed well below that. */
static kl_status count_ok(size_t n, const char *call, kl_error *err)
{
    if (n > INT_MAX)
        return kl_error_set(err, KL_EINVAL,
                            "%s: %zu elements is more than one MPI call takes; "
                            "use smaller buckets",
                            call, n);
    return KL_OK;
}

kl_status kl_comm_allreduce_start(kl_comm *c, float *buf, size_t n, kl_comm_request **req,
                                  kl_error *err)
{
    kl_status st = count_ok(n, "allreduce", err);
    if (st != KL_OK)
        return st;
    kl_comm_request *r = calloc(1, sizeof *r + c->backend->request_size);
    if (!r)
        return kl_error_set(err, KL_ENOMEM, "out of memory starting an all-reduce");
    if (c->size > 1) {
        if ((st = c->backend->allreduce_start(c, buf, n, r->state, err)) != KL_OK) {
            free(r);
            return st;
        }
        r->in_flight = true;
    }
    *req = r;
    return KL_OK;
}

kl_status kl_comm_wait(kl_comm *c, kl_comm_request *req, kl_error *err)
{
    kl_status st = req->in_flight ? c->backend->wait(c, req->state, err) : KL_OK;
    free(req);
    return st;
}

bool kl_comm_test(kl_comm *c, kl_comm_request *req)
{
    return !req || !req->in_flight || c->backend->test(c, req->state);
}

kl_status kl_comm_allreduce(kl_comm *c, float *buf, size_t n, kl_error *err)
{
    kl_comm_request *r = NULL;
    kl_status st = kl_comm_allreduce_start(c, buf, n, &r, err);
    return st == KL_OK ? kl_comm_wait(c, r, err) : st;
}

kl_status kl_comm_allreduce_i64(kl_comm *c, int64_t *buf, size_t n, kl_error *err)
{
    kl_status st = count_ok(n, "allreduce", err);
    if (st != KL_OK || c->size == 1)
        return st;
    return c->backend->allreduce_i64(c, buf, n, err);
}

kl_status kl_comm_bcast(kl_comm *c, void *buf, size_t bytes, int root, kl_error *err)
{
    kl_status st = count_ok(bytes, "bcast", err);
    if (st != KL_OK || c->size == 1)
        return st;
    return c->backend->bcast(c, buf, bytes, root, err);
}

kl_status kl_comm_barrier(kl_comm *c, kl_error *err)
{
    return c->size == 1 ? KL_OK : c->backend->barrier(c, err);
}

kl_status kl_comm_allgather(kl_comm *c, const void *send, void *recv, size_t bytes, kl_error *err)
{
    kl_status st = count_ok(bytes, "allgather", err);
    if (st != KL_OK)
        return st;
    if (c->size == 1) {
        memmove(recv, send, bytes);
        return KL_OK;
    }
    return c->backend->allgather(c, send, recv, bytes, err);
}

kl_status kl_comm_send(kl_comm *c, int dest, int tag, const void *buf, size_t bytes, kl_error *err)
{
    kl_status st = count_ok(bytes, "send", err);
    return st == KL_OK ? c->backend->send(c, dest, tag, buf, bytes, err) : st;
}

kl_status kl_comm_recv(kl_comm *c, int src, int tag, void *buf, size_t cap, int *from,
                       size_t *bytes, kl_error *err)
{
    kl_status st = count_ok(cap, "recv", err);
    return st == KL_OK ? c->backend->recv(c, src, tag, buf, cap, from, bytes, err) : st;
}

kl_status kl_comm_split(kl_comm *c, int color, int key, kl_comm **out, kl_error *err)
{
    return c->backend->split(c, color, key, out, err);
}
