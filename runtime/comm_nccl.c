/* The `nccl` backend (runtime/comm_impl.h): all-reduces of CUDA device buffers with NCCL, for the
 * gradients of ranks that each have a GPU of their own. It is made from an MPI communicator
 * (kl_comm_nccl): rank 0 creates NCCL's unique id and broadcasts it over MPI, and every call but
 * the all-reduce (broadcast, barrier, all-gather, send, receive: host buffers) goes to that
 * communicator. The all-reduce runs on a communication stream of its own, after the work queued
 * so far on the stream given at creation (the graph's: an event recorded there, which the
 * communication stream waits for on the device), so a bucket started from backward's
 * gradient-ready callback overlaps the rest of backward and the host never waits during it. Its
 * wait polls an event recorded after the all-reduce, and NCCL's asynchronous error, and past the
 * communicator's timeout aborts NCCL (ncclCommAbort) and fails naming the rank, the collective
 * and the step. Built only when
 * CMake finds NCCL (KILN_HAVE_NCCL); without it kl_comm_nccl says so. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "kiln/clock.h"
#include "runtime/comm_impl.h"
#ifdef KILN_HAVE_NCCL
#include "ops/cuda/cuda.h"
#endif

#ifdef KILN_HAVE_NCCL

typedef struct nccl_state {
    kl_comm *host;     /* the MPI communicator it was made from (not owned) */
    void *nccl;        /* ncclComm_t, NULL after an abort */
    void *stream;      /* cudaStream_t: the caller's, whose work comes before an all-reduce */
    void *comm_stream; /* the all-reduces' own */
    int device;
} nccl_state;

typedef struct nccl_request {
    void *ready; /* recorded on the caller's stream before the all-reduce */
    void *event; /* recorded after the all-reduce */
} nccl_request;

static nccl_state *state(kl_comm *c)
{
    return (nccl_state *)c->state;
}

bool kl_comm_have_nccl(void)
{
    return true;
}

/* why: the failed call's text (kl__nccl_last_error, or kl__cuda_last_error for the events). */
static kl_status nccl_fail(kl_comm *c, const char *what, const char *why, kl_error *err)
{
    const char *phase = c->phase ? c->phase : "gradient all-reduce";
    char step[48] = "";
    if (c->phase && c->phase_step >= 0)
        snprintf(step, sizeof step, " at step %lld", (long long)c->phase_step);
    return kl_error_set(err, KL_ECOMM, "rank %d of %d: NCCL all-reduce (%s%s) %s: %s", c->rank,
                        c->size, phase, step, what, why);
}

/* Ends the NCCL communicator for good: what follows a timeout or an asynchronous error. */
static void abort_nccl(kl_comm *c)
{
    kl__nccl_abort(state(c)->nccl);
    state(c)->nccl = NULL;
}

static void free_events(nccl_request *r)
{
    kl__cuda_event_free(r->ready);
    kl__cuda_event_free(r->event);
    r->ready = r->event = NULL;
}

static kl_status nccl_allreduce_start(kl_comm *c, float *buf, size_t n, void *req, kl_error *err)
{
    nccl_state *s = state(c);
    nccl_request *r = req;
    if (!s->nccl)
        return kl_error_set(err, KL_ECOMM,
                            "rank %d: the NCCL communicator was aborted after an earlier failure",
                            c->rank);
    if (kl__cuda_event_new(&r->ready) != 0 || kl__cuda_event_record(r->ready, s->stream) != 0 ||
        kl__cuda_stream_wait_event(s->comm_stream, r->ready) != 0) {
        free_events(r);
        return nccl_fail(c, "could not be ordered after backward", kl__cuda_last_error(), err);
    }
    if (kl__nccl_allreduce(s->nccl, buf, n, s->comm_stream) != 0) {
        free_events(r);
        return nccl_fail(c, "could not start", kl__nccl_last_error(), err);
    }
    if (kl__cuda_event_new(&r->event) != 0 ||
        kl__cuda_event_record(r->event, s->comm_stream) != 0) {
        free_events(r);
        return nccl_fail(c, "could not be followed", kl__cuda_last_error(), err);
    }
    return KL_OK;
}

static bool nccl_test(kl_comm *c, void *req)
{
    (void)c;
    nccl_request *r = req;
    return kl__cuda_event_query(r->event) == 1;
}

static kl_status nccl_wait(kl_comm *c, void *req, kl_error *err)
{
    nccl_request *r = req;
    double t0 = kl_now();
    kl_status st = KL_OK;
    /* The watchdog is the last resort, should the abort itself hang: it allows a grace. */
    kl__comm_watch(c, "NCCL all-reduce", 30);
    for (long spins = 0;; spins++) {
        int q = kl__cuda_event_query(r->event);
        if (q == 1)
            break;
        if (q < 0) {
            st = nccl_fail(c, "failed on the device", kl__cuda_last_error(), err);
            abort_nccl(c);
            break;
        }
        if (kl__nccl_async_error(state(c)->nccl) != 0) {
            st = nccl_fail(c, "failed", kl__nccl_last_error(), err);
            abort_nccl(c);
            break;
        }
        if (c->timeout > 0 && kl_now() - t0 > c->timeout) {
            st = kl_error_set(err, KL_ECOMM,
                              "rank %d of %d: NCCL all-reduce (%s, step %lld) did not finish "
                              "within dist.timeout (%g s): a rank is stuck or gone; NCCL aborted",
                              c->rank, c->size, c->phase ? c->phase : "gradient all-reduce",
                              (long long)c->phase_step, c->timeout);
            abort_nccl(c);
            break;
        }
        /* Spin briefly (a bucket usually lands within microseconds of backward), then sleep. */
        if (spins > 1000) {
            struct timespec ts = {0, 50000};
            nanosleep(&ts, NULL);
        }
    }
    kl__comm_unwatch(c);
    free_events(r);
    return st;
}

/* Host buffers: the MPI communicator's. */
static kl_status nccl_allreduce_i64(kl_comm *c, int64_t *buf, size_t n, kl_error *err)
{
    return kl_comm_allreduce_i64(state(c)->host, buf, n, err);
}

static kl_status nccl_bcast(kl_comm *c, void *buf, size_t bytes, int root, kl_error *err)
{
    return kl_comm_bcast(state(c)->host, buf, bytes, root, err);
}

static kl_status nccl_barrier(kl_comm *c, kl_error *err)
{
    return kl_comm_barrier(state(c)->host, err);
}

static kl_status nccl_allgather(kl_comm *c, const void *send, void *recv, size_t bytes,
                                kl_error *err)
{
    return kl_comm_allgather(state(c)->host, send, recv, bytes, err);
}

static kl_status nccl_send(kl_comm *c, int dest, int tag, const void *buf, size_t bytes,
                           kl_error *err)
{
    return kl_comm_send(state(c)->host, dest, tag, buf, bytes, err);
}

static kl_status nccl_recv(kl_comm *c, int src, int tag, void *buf, size_t cap, int *from,
                           size_t *bytes, kl_error *err)
{
    return kl_comm_recv(state(c)->host, src, tag, buf, cap, from, bytes, err);
}

static kl_status nccl_split(kl_comm *c, int color, int key, kl_comm **out, kl_error *err)
{
    (void)c, (void)color, (void)key, (void)out;
    return kl_error_set(err, KL_EUNSUPPORTED,
                        "nccl: splitting an NCCL communicator is not supported yet; split the "
                        "MPI communicator and make an NCCL one from each part");
}

static void nccl_free(kl_comm *c)
{
    kl__nccl_destroy(state(c)->nccl);
    kl__cuda_stream_free(state(c)->comm_stream);
}

const kl__comm_backend kl__comm_nccl_backend = {
    .name = "nccl",
    .state_size = sizeof(nccl_state),
    .request_size = sizeof(nccl_request),
    .split = nccl_split,
    .free = nccl_free,
    .allreduce_start = nccl_allreduce_start,
    .test = nccl_test,
    .wait = nccl_wait,
    .allreduce_i64 = nccl_allreduce_i64,
    .bcast = nccl_bcast,
    .barrier = nccl_barrier,
    .allgather = nccl_allgather,
    .send = nccl_send,
    .recv = nccl_recv,
};

kl_status kl_comm_nccl(kl_comm *host, int device, void *stream, kl_comm **out, kl_error *err)
{
    unsigned char id[KL__NCCL_ID_BYTES] = {0};
    *out = NULL;
    /* Rank 0's failure travels with the id, so every rank returns instead of waiting in init. */
    struct {
        int32_t ok;
        char msg[KL_ERROR_MSG_MAX];
    } hdr = {1, ""};
    if (host->rank == 0 && kl__nccl_unique_id(id) != 0) {
        hdr.ok = 0;
        snprintf(hdr.msg, sizeof hdr.msg, "%s", kl__nccl_last_error());
    }
    kl_comm_set_phase(host, "NCCL id broadcast", -1);
    kl_status st = kl_comm_bcast(host, &hdr, sizeof hdr, 0, err);
    if (st == KL_OK)
        st = kl_comm_bcast(host, id, sizeof id, 0, err);
    kl_comm_set_phase(host, NULL, -1);
    if (st != KL_OK)
        return st;
    if (!hdr.ok)
        return kl_error_set(err, KL_ECOMM, "rank 0 could not create an NCCL id: %s", hdr.msg);
    kl_comm *c = kl__comm_new(&kl__comm_nccl_backend, err);
    if (!c)
        return KL_ENOMEM;
    c->rank = host->rank;
    c->size = host->size;
    c->local_rank = host->local_rank;
    c->local_size = host->local_size;
    *state(c) = (nccl_state){.host = host, .stream = stream, .device = device};
    const char *why = NULL;
    if (kl__nccl_init(&state(c)->nccl, c->size, id, c->rank, device) != 0)
        why = kl__nccl_last_error();
    else if (kl__cuda_stream_new(&state(c)->comm_stream) != 0)
        why = kl__cuda_last_error();
    if (why) {
        st =
            kl_error_set(err, KL_ECOMM, "rank %d of %d: NCCL could not start on CUDA device %d: %s",
                         c->rank, c->size, device, why);
        kl_comm_free(c);
        return st;
    }
    *out = c;
    return KL_OK;
}

#else

bool kl_comm_have_nccl(void)
{
    return false;
}

kl_status kl_comm_nccl(kl_comm *host, int device, void *stream, kl_comm **out, kl_error *err)
{
    (void)host, (void)device, (void)stream;
    *out = NULL;
    return kl_error_set(err, KL_EUNSUPPORTED,
                        "this build of kiln has no NCCL (CMake did not find nccl.h and libnccl "
                        "with CUDA)");
}

#endif
