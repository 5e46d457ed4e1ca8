/* The communicator: one struct for both backends. `self` answers every collective at once (a sum
 * over one rank is the buffer itself); `mpi` maps each call onto MPI with errors returned, not
 * aborted, so that a failure becomes a kl_status naming the call and the rank. With a timeout,
 * every wait in a collective is watched (runtime/watchdog.c), and small all-gathers go through
 * rank 0 point to point, so that rank 0 can name the ranks that never came. */
#include <limits.h>
#include <mpi.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kiln/comm.h"
#include "kiln/launch.h"
#include "runtime/watchdog.h"

struct kl_comm {
    bool mpi;
    bool owns_mpi; /* this communicator initialised MPI and finalises it */
    MPI_Comm comm, node;
    MPI_Comm coll; /* a duplicate for kiln's own point-to-point collectives: their tags cannot
                      meet a caller's messages (kl_comm_send) */
    int rank, size, local_rank, local_size;
    double timeout;    /* seconds; 0: collectives wait forever */
    kl__watchdog *wd;  /* started with the first timeout */
    const char *phase; /* what the collectives are for (kl_comm_set_phase), or NULL */
    int64_t phase_step;
};

struct kl_comm_request {
    MPI_Request req;
};

static kl_status mpi_fail(kl_error *err, const kl_comm *c, const char *call, int code)
{
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(code, text, &len);
    return kl_error_set(err, KL_ECOMM, "%s failed on rank %d of %d: %s", call, c ? c->rank : -1,
                        c ? c->size : -1, text);
}

static kl_comm *comm_new(kl_error *err)
{
    kl_comm *c = calloc(1, sizeof *c);
    if (!c)
        kl_error_set(err, KL_ENOMEM, "out of memory creating a communicator");
    return c;
}

kl_status kl_comm_self(kl_comm **out, kl_error *err)
{
    kl_comm *c = comm_new(err);
    if (!c)
        return KL_ENOMEM;
    c->size = c->local_size = 1;
    *out = c;
    return KL_OK;
}

/* Wraps an MPI communicator (which the kl_comm then owns) and finds the node-local ranks. */
static kl_status wrap(MPI_Comm comm, kl_comm **out, kl_error *err)
{
    kl_comm *c = comm_new(err);
    int rc;
    if (!c)
        return KL_ENOMEM;
    c->mpi = true;
    c->comm = comm;
    c->node = c->coll = MPI_COMM_NULL;
    MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm, &c->rank);
    MPI_Comm_size(comm, &c->size);
    const char *call = "MPI_Comm_split_type";
    rc = MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &c->node);
    if (rc == MPI_SUCCESS) {
        call = "MPI_Comm_dup";
        rc = MPI_Comm_dup(comm, &c->coll);
    }
    if (rc != MPI_SUCCESS) {
        kl_status st = mpi_fail(err, c, call, rc);
        kl_comm_free(c);
        return st;
    }
    MPI_Comm_set_errhandler(c->coll, MPI_ERRORS_RETURN);
    MPI_Comm_rank(c->node, &c->local_rank);
    MPI_Comm_size(c->node, &c->local_size);
    *out = c;
    return KL_OK;
}

kl_status kl_comm_world(int *argc, char ***argv, kl_comm **out, kl_error *err)
{
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited && kl_launch_detect().world_size <= 1)
        return kl_comm_self(out, err);
    if (!inited) {
        /* Open MPI's default nonblocking all-reduce ran kiln's gradient buckets 1.6-1.9x slower
         * than one blocking call on 2 ranks; its ring algorithm was faster than that call
         * (bench/RESULTS.md). A value the user set wins. */
        setenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm", "1", 0);
        int provided, rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
        if (rc != MPI_SUCCESS)
            return kl_error_set(err, KL_ECOMM, "MPI_Init_thread failed (%d)", rc);
    }
    MPI_Comm dup;
    int rc = MPI_Comm_dup(MPI_COMM_WORLD, &dup);
    if (rc != MPI_SUCCESS)
        return mpi_fail(err, NULL, "MPI_Comm_dup", rc);
    kl_status st = wrap(dup, out, err);
    if (st == KL_OK)
        (*out)->owns_mpi = !inited;
    return st;
}

void kl_comm_free(kl_comm *c)
{
    if (!c)
        return;
    kl__watchdog_stop(c->wd);
    if (c->mpi) {
        if (c->node != MPI_COMM_NULL)
            MPI_Comm_free(&c->node);
        if (c->coll != MPI_COMM_NULL)
            MPI_Comm_free(&c->coll);
        MPI_Comm_free(&c->comm);
        if (c->owns_mpi)
            MPI_Finalize();
    }
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
    return c->mpi ? "mpi" : "self";
}

kl_status kl_comm_set_timeout(kl_comm *c, double seconds, kl_error *err)
{
    if (!(seconds >= 0))
        return kl_error_set(err, KL_EINVAL, "a collective timeout of %g s: give 0 or more",
                            seconds);
    c->timeout = seconds;
    if (!c->wd && seconds > 0 && c->mpi && c->size > 1 && !(c->wd = kl__watchdog_start(c->rank)))
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

/* A wait in collective `call` begins (grace: seconds allowed beyond the timeout) and ends. */
static void watch(kl_comm *c, const char *call, double grace)
{
    if (c->wd && c->timeout > 0)
        kl__watchdog_enter(c->wd, c->timeout, grace, c->phase ? c->phase : call,
                           c->phase ? c->phase_step : -1);
}

static void unwatch(kl_comm *c)
{
    kl__watchdog_leave(c->wd);
}

/* MPI counts are ints; kiln's buffers are bucketed well below that. */
static kl_status count_ok(const kl_comm *c, size_t n, const char *call, kl_error *err)
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
    kl_status st = count_ok(c, n, "allreduce", err);
    if (st != KL_OK)
        return st;
    kl_comm_request *r = calloc(1, sizeof *r);
    if (!r)
        return kl_error_set(err, KL_ENOMEM, "out of memory starting an all-reduce");
    r->req = MPI_REQUEST_NULL;
    if (c->mpi && c->size > 1) {
        int rc = MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, c->comm, &r->req);
        if (rc != MPI_SUCCESS) {
            free(r);
            return mpi_fail(err, c, "MPI_Iallreduce", rc);
        }
    }
    *req = r;
    return KL_OK;
}

kl_status kl_comm_wait(kl_comm *c, kl_comm_request *req, kl_error *err)
{
    int rc = MPI_SUCCESS;
    if (req->req != MPI_REQUEST_NULL) {
        watch(c, "all-reduce", 0);
        rc = MPI_Wait(&req->req, MPI_STATUS_IGNORE);
        unwatch(c);
    }
    free(req);
    return rc == MPI_SUCCESS ? KL_OK : mpi_fail(err, c, "MPI_Wait (all-reduce)", rc);
}

bool kl_comm_test(kl_comm *c, kl_comm_request *req)
{
    (void)c;
    int done = 1;
    if (req && req->req != MPI_REQUEST_NULL &&
        MPI_Test(&req->req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS)
        return false; /* kl_comm_wait reports the error */
    return done != 0;
}

kl_status kl_comm_allreduce(kl_comm *c, float *buf, size_t n, kl_error *err)
{
    kl_comm_request *r = NULL;
    kl_status st = kl_comm_allreduce_start(c, buf, n, &r, err);
    return st == KL_OK ? kl_comm_wait(c, r, err) : st;
}

kl_status kl_comm_bcast(kl_comm *c, void *buf, size_t bytes, int root, kl_error *err)
{
    kl_status st = count_ok(c, bytes, "bcast", err);
    if (st != KL_OK || !c->mpi || c->size == 1)
        return st;
    watch(c, "broadcast", 0);
    int rc = MPI_Bcast(buf, (int)bytes, MPI_BYTE, root, c->comm);
    unwatch(c);
    return rc == MPI_SUCCESS ? KL_OK : mpi_fail(err, c, "MPI_Bcast", rc);
}

kl_status kl_comm_barrier(kl_comm *c, kl_error *err)
{
    if (!c->mpi || c->size == 1)
        return KL_OK;
    watch(c, "barrier", 0);
    int rc = MPI_Barrier(c->comm);
    unwatch(c);
    return rc == MPI_SUCCESS ? KL_OK : mpi_fail(err, c, "MPI_Barrier", rc);
}

/* All-gathers of up to this many bytes in all go through rank 0 when a timeout is set. */
enum { GATHER_P2P_MAX = 1 << 20, TAG_BLOCK = 1, TAG_TABLE = 2 };

/* Describes the ranks whose block rank 0 still waits for: "rank 3 did not arrive", "ranks 1, 2
 * and 5 did not arrive", "ranks 1, 2, 3, 4, 5, ... (40 in all) did not arrive". */
static void describe_missing(const MPI_Request *reqs, int size, char *buf, size_t cap)
{
    int n = 0, shown = 0;
    size_t at = 0;
    for (int r = 1; r < size; r++)
        n += reqs[r] != MPI_REQUEST_NULL;
    buf[0] = '\0';
    for (int r = 1; r < size && shown < n && at < cap; r++) {
        if (reqs[r] == MPI_REQUEST_NULL)
            continue;
        if (shown == 5 && n > 6) {
            at += (size_t)snprintf(buf + at, cap - at, ", ... (%d in all)", n);
            break;
        }
        const char *sep = shown == 0       ? (n == 1 ? "rank " : "ranks ")
                          : shown == n - 1 ? " and "
                                           : ", ";
        at += (size_t)snprintf(buf + at, cap - at, "%s%d", sep, r);
        shown++;
    }
    if (n > 0 && at < cap)
        snprintf(buf + at, cap - at, " did not arrive");
}

/* Waits for every request in reqs[0..n), polling so that rank 0 (track) can tell the watchdog
 * who is missing as blocks come in. The sleep between polls grows to 1 ms: these waits are at
 * startup, where a rank may wait minutes for the others to load their data. */
static int wait_all(kl_comm *c, MPI_Request *reqs, int n, bool track)
{
    char who[160];
    int rc = MPI_SUCCESS, left = 0, shown = -1;
    for (int i = 0; i < n; i++)
        left += reqs[i] != MPI_REQUEST_NULL;
    for (long wait_ns = 10000; left > 0;) {
        if (track && left != shown) {
            describe_missing(reqs, n, who, sizeof who);
            kl__watchdog_missing(c->wd, who);
            shown = left;
        }
        int done = 0;
        for (int i = 0; i < n && rc == MPI_SUCCESS; i++) {
            int flag = 0;
            if (reqs[i] != MPI_REQUEST_NULL &&
                (rc = MPI_Test(&reqs[i], &flag, MPI_STATUS_IGNORE)) == MPI_SUCCESS && flag)
                done++;
        }
        if (rc != MPI_SUCCESS)
            return rc;
        left -= done;
        if (done == 0) {
            struct timespec ts = {0, wait_ns};
            nanosleep(&ts, NULL);
            wait_ns = wait_ns < 1000000 ? 2 * wait_ns : 1000000;
        }
    }
    return rc;
}

/* The all-gather as rank 0 collecting every block and sending the table back. Rank 0 knows who
 * has not sent; the other ranks only that rank 0 has not answered, so they wait a little longer
 * than the timeout and leave the naming to rank 0. */
static kl_status gather_p2p(kl_comm *c, const void *send, void *recv, size_t bytes, kl_error *err)
{
    int size = c->size, rc = MPI_SUCCESS;
    size_t table = (size_t)size * bytes;
    MPI_Request *reqs = malloc((size_t)size * sizeof *reqs);
    if (!reqs)
        return kl_error_set(err, KL_ENOMEM, "out of memory in an all-gather");
    for (int r = 0; r < size; r++)
        reqs[r] = MPI_REQUEST_NULL;
    if (c->rank == 0) {
        memmove(recv, send, bytes);
        watch(c, "all-gather", 0);
        for (int r = 1; r < size && rc == MPI_SUCCESS; r++)
            rc = MPI_Irecv((char *)recv + (size_t)r * bytes, (int)bytes, MPI_BYTE, r, TAG_BLOCK,
                           c->coll, &reqs[r]);
        if (rc == MPI_SUCCESS)
            rc = wait_all(c, reqs, size, true);
        kl__watchdog_missing(c->wd, NULL);
        for (int r = 1; r < size && rc == MPI_SUCCESS; r++)
            rc = MPI_Isend(recv, (int)table, MPI_BYTE, r, TAG_TABLE, c->coll, &reqs[r]);
    } else {
        watch(c, "all-gather", 2.0);
        kl__watchdog_missing(c->wd, "rank 0, which gathers it, did not answer");
        rc = MPI_Isend(send, (int)bytes, MPI_BYTE, 0, TAG_BLOCK, c->coll, &reqs[0]);
        if (rc == MPI_SUCCESS)
            rc = MPI_Irecv(recv, (int)table, MPI_BYTE, 0, TAG_TABLE, c->coll, &reqs[1]);
    }
    if (rc == MPI_SUCCESS)
        rc = wait_all(c, reqs, size, false);
    unwatch(c);
    free(reqs);
    return rc == MPI_SUCCESS ? KL_OK : mpi_fail(err, c, "all-gather (point to point)", rc);
}

kl_status kl_comm_allgather(kl_comm *c, const void *send, void *recv, size_t bytes, kl_error *err)
{
    kl_status st = count_ok(c, bytes, "allgather", err);
    if (st != KL_OK)
        return st;
    if (!c->mpi || c->size == 1) {
        memmove(recv, send, bytes);
        return KL_OK;
    }
    if (c->wd && c->timeout > 0 && (size_t)c->size * bytes <= GATHER_P2P_MAX)
        return gather_p2p(c, send, recv, bytes, err);
    watch(c, "all-gather", 0);
    int rc = MPI_Allgather(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, c->comm);
    unwatch(c);
    return rc == MPI_SUCCESS ? KL_OK : mpi_fail(err, c, "MPI_Allgather", rc);
}

kl_status kl_comm_send(kl_comm *c, int dest, int tag, const void *buf, size_t bytes, kl_error *err)
{
    kl_status st = count_ok(c, bytes, "send", err);
    if (st != KL_OK)
        return st;
    if (!c->mpi)
        return kl_error_set(err, KL_EINVAL, "send: a one-process communicator has no peer");
    int rc = MPI_Send(buf, (int)bytes, MPI_BYTE, dest, tag, c->comm);
    return rc == MPI_SUCCESS ? KL_OK : mpi_fail(err, c, "MPI_Send", rc);
}

kl_status kl_comm_recv(kl_comm *c, int src, int tag, void *buf, size_t cap, int *from,
                       size_t *bytes, kl_error *err)
{
    kl_status st = count_ok(c, cap, "recv", err);
    if (st != KL_OK)
        return st;
    if (!c->mpi)
        return kl_error_set(err, KL_EINVAL, "recv: a one-process communicator has no peer");
    /* Polled with sleeps rather than a blocking MPI_Recv, which Open MPI serves by spinning: a
     * tune coordinator waits minutes between messages and must not take a core from the
     * trainers beside it. The sleep grows to 2 ms, a negligible delay per message. */
    MPI_Status s;
    MPI_Request req;
    int rc = MPI_Irecv(buf, (int)cap, MPI_BYTE, src < 0 ? MPI_ANY_SOURCE : src, tag, c->comm, &req);
    int done = 0;
    for (long wait_ns = 20000; rc == MPI_SUCCESS;) {
        rc = MPI_Test(&req, &done, &s);
        if (rc != MPI_SUCCESS || done)
            break;
        struct timespec ts = {0, wait_ns};
        nanosleep(&ts, NULL);
        wait_ns = wait_ns < 2000000 ? 2 * wait_ns : 2000000;
    }
    if (rc != MPI_SUCCESS)
        return mpi_fail(err, c, "MPI_Recv", rc);
    int n = 0;
    MPI_Get_count(&s, MPI_BYTE, &n);
    if (from)
        *from = s.MPI_SOURCE;
    if (bytes)
        *bytes = (size_t)n;
    return KL_OK;
}

kl_status kl_comm_split(kl_comm *c, int color, int key, kl_comm **out, kl_error *err)
{
    if (!c->mpi)
        return kl_comm_self(out, err);
    MPI_Comm sub;
    watch(c, "split", 0);
    int rc = MPI_Comm_split(c->comm, color, key, &sub);
    unwatch(c);
    if (rc != MPI_SUCCESS)
        return mpi_fail(err, c, "MPI_Comm_split", rc);
    return wrap(sub, out, err);
}
