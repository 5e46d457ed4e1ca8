/* The `mpi` backend (runtime/comm_impl.h): CPU buffers over MPI, the world of a process that
 * mpirun or srun started as one of several ranks. Each call maps onto MPI with errors returned,
 * not aborted, so that a failure becomes a kl_status naming the call and the rank. The
 * all-reduce is MPI's nonblocking one. With a timeout, small all-gathers go through rank 0 point
 * to point, so that rank 0 can name the ranks that never came. */
#include <mpi.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kiln/launch.h"
#include "runtime/comm_impl.h"

/* A kl_comm's state. */
typedef struct mpi_state {
    bool owns_mpi; /* this communicator initialised MPI and finalises it */
    MPI_Comm comm, node;
    MPI_Comm coll; /* a duplicate for kiln's own point-to-point collectives: their tags cannot
                      meet a caller's messages (kl_comm_send) */
} mpi_state;

static mpi_state *state(kl_comm *c)
{
    return (mpi_state *)c->state;
}

static kl_status mpi_fail(kl_error *err, const kl_comm *c, const char *call, int code)
{
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(code, text, &len);
    return kl_error_set(err, KL_ECOMM, "%s failed on rank %d of %d: %s", call, c ? c->rank : -1,
                        c ? c->size : -1, text);
}

/* Wraps an MPI communicator (which the kl_comm then owns) and finds the node-local ranks. */
static kl_status wrap(MPI_Comm comm, kl_comm **out, kl_error *err)
{
    kl_comm *c = kl__comm_new(&kl__comm_mpi_backend, err);
    int rc;
    if (!c)
        return KL_ENOMEM;
    mpi_state *m = state(c);
    m->comm = comm;
    m->node = m->coll = MPI_COMM_NULL;
    MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm, &c->rank);
    MPI_Comm_size(comm, &c->size);
    const char *call = "MPI_Comm_split_type";
    rc = MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &m->node);
    if (rc == MPI_SUCCESS) {
        call = "MPI_Comm_dup";
        rc = MPI_Comm_dup(comm, &m->coll);
    }
    if (rc != MPI_SUCCESS) {
        kl_status st = mpi_fail(err, c, call, rc);
        kl_comm_free(c);
        return st;
    }
    MPI_Comm_set_errhandler(m->coll, MPI_ERRORS_RETURN);
    MPI_Comm_rank(m->node, &c->local_rank);
    MPI_Comm_size(m->node, &c->local_size);
    *out = c;
    return KL_OK;
}

/* MPI owns the world when it already runs (a caller initialised it) or a launcher started this
 * process as one of several ranks. */
static bool mpi_claims_world(void)
{
    int inited = 0;
    MPI_Initialized(&inited);
    return inited || kl_launch_detect().world_size > 1;
}

static kl_status mpi_world(int *argc, char ***argv, kl_comm **out, kl_error *err)
{
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        /* Open MPI's default algorithm for the nonblocking all-reduce is slower on kiln's
         * gradient buckets than its ring algorithm (bench/RESULTS.md). A value the user set
         * wins. */
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
        state(*out)->owns_mpi = !inited;
    return st;
}

static kl_status mpi_split(kl_comm *c, int color, int key, kl_comm **out, kl_error *err)
{
    MPI_Comm sub;
    kl__comm_watch(c, "split", 0);
    int rc = MPI_Comm_split(state(c)->comm, color, key, &sub);
    kl__comm_unwatch(c);
    if (rc != MPI_SUCCESS)
        return mpi_fail(err, c, "MPI_Comm_split", rc);
    return wrap(sub, out, err);
}

static void mpi_free(kl_comm *c)
{
    mpi_state *m = state(c);
    if (m->node != MPI_COMM_NULL)
        MPI_Comm_free(&m->node);
    if (m->coll != MPI_COMM_NULL)
        MPI_Comm_free(&m->coll);
    MPI_Comm_free(&m->comm);
    if (m->owns_mpi)
        MPI_Finalize();
}

static kl_status mpi_allreduce_start(kl_comm *c, float *buf, size_t n, void *req, kl_error *err)
{
    MPI_Request *r = req;
    int rc = MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, state(c)->comm, r);
    return rc == MPI_SUCCESS ? KL_OK : mpi_fail(err, c, "MPI_Iallreduce", rc);
}

static bool mpi_test(kl_comm *c, void *req)
{
    int done = 0;
    return MPI_Test(req, &done, MPI_STATUS_IGNORE) == MPI_SUCCESS && done;
}

static kl_status mpi_wait(kl_comm *c, void *req, kl_error *err)
{
    kl__comm_watch(c, "all-reduce", 0);
    int rc = MPI_Wait(req, MPI_STATUS_IGNORE);
    kl__comm_unwatch(c);
    return rc == MPI_SUCCESS ? KL_OK : mpi_fail(err, c, "MPI_Wait (all-reduce)", rc);
}

static kl_status mpi_allreduce_i64(kl_comm *c, int64_t *buf, size_t n, kl_error *err)
{
    kl__comm_watch(c, "all-reduce", 0);
    int rc = MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_INT64_T, MPI_SUM, state(c)->comm);
    kl__comm_unwatch(c);
    return rc == MPI_SUCCESS ? KL_OK : mpi_fail(err, c, "MPI_Allreduce (int64)", rc);
}

static kl_status mpi_bcast(kl_comm *c, void *buf, size_t bytes, int root, kl_error *err)
{
    kl__comm_watch(c, "broadcast", 0);
    int rc = MPI_Bcast(buf, (int)bytes, MPI_BYTE, root, state(c)->comm);
    kl__comm_unwatch(c);
    return rc == MPI_SUCCESS ? KL_OK : mpi_fail(err, c, "MPI_Bcast", rc);
}

static kl_status mpi_barrier(kl_comm *c, kl_error *err)
{
    kl__comm_watch(c, "barrier", 0);
    int rc = MPI_Barrier(state(c)->comm);
    kl__comm_unwatch(c);
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
    MPI_Comm coll = state(c)->coll;
    MPI_Request *reqs = malloc((size_t)size * sizeof *reqs);
    if (!reqs)
        return kl_error_set(err, KL_ENOMEM, "out of memory in an all-gather");
    for (int r = 0; r < size; r++)
        reqs[r] = MPI_REQUEST_NULL;
    if (c->rank == 0) {
        memmove(recv, send, bytes);
        kl__comm_watch(c, "all-gather", 0);
        for (int r = 1; r < size && rc == MPI_SUCCESS; r++)
            rc = MPI_Irecv((char *)recv + (size_t)r * bytes, (int)bytes, MPI_BYTE, r, TAG_BLOCK,
                           coll, &reqs[r]);
        if (rc == MPI_SUCCESS)
            rc = wait_all(c, reqs, size, true);
        kl__watchdog_missing(c->wd, NULL);
        for (int r = 1; r < size && rc == MPI_SUCCESS; r++)
            rc = MPI_Isend(recv, (int)table, MPI_BYTE, r, TAG_TABLE, coll, &reqs[r]);
    } else {
        kl__comm_watch(c, "all-gather", 2.0);
        kl__watchdog_missing(c->wd, "rank 0, which gathers it, did not answer");
        rc = MPI_Isend(send, (int)bytes, MPI_BYTE, 0, TAG_BLOCK, coll, &reqs[0]);
        if (rc == MPI_SUCCESS)
            rc = MPI_Irecv(recv, (int)table, MPI_BYTE, 0, TAG_TABLE, coll, &reqs[1]);
    }
    if (rc == MPI_SUCCESS)
        rc = wait_all(c, reqs, size, false);
    kl__comm_unwatch(c);
    free(reqs);
    return rc == MPI_SUCCESS ? KL_OK : mpi_fail(err, c, "all-gather (point to point)", rc);
}

static kl_status mpi_allgather(kl_comm *c, const void *send, void *recv, size_t bytes,
                               kl_error *err)
{
    if (kl__comm_watched(c) && (size_t)c->size * bytes <= GATHER_P2P_MAX)
        return gather_p2p(c, send, recv, bytes, err);
    kl__comm_watch(c, "all-gather", 0);
    int rc = MPI_Allgather(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, state(c)->comm);
    kl__comm_unwatch(c);
    return rc == MPI_SUCCESS ? KL_OK : mpi_fail(err, c, "MPI_Allgather", rc);
}

static kl_status mpi_send(kl_comm *c, int dest, int tag, const void *buf, size_t bytes,
                          kl_error *err)
{
    int rc = MPI_Send(buf, (int)bytes, MPI_BYTE, dest, tag, state(c)->comm);
    return rc == MPI_SUCCESS ? KL_OK : mpi_fail(err, c, "MPI_Send", rc);
}

/* Polled with sleeps rather than a blocking MPI_Recv, which Open MPI serves by spinning: a tune
 * coordinator waits minutes between messages and must not take a core from the trainers beside
 * it. The sleep grows to 2 ms, a negligible delay per message. */
static kl_status mpi_recv(kl_comm *c, int src, int tag, void *buf, size_t cap, int *from,
                          size_t *bytes, kl_error *err)
{
    MPI_Status s;
    MPI_Request req;
    int rc = MPI_Irecv(buf, (int)cap, MPI_BYTE, src < 0 ? MPI_ANY_SOURCE : src, tag, state(c)->comm,
                       &req);
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

const kl__comm_backend kl__comm_mpi_backend = {
    .name = "mpi",
    .state_size = sizeof(mpi_state),
    .request_size = sizeof(MPI_Request),
    .claims_world = mpi_claims_world,
    .world = mpi_world,
    .split = mpi_split,
    .free = mpi_free,
    .allreduce_start = mpi_allreduce_start,
    .test = mpi_test,
    .wait = mpi_wait,
    .allreduce_i64 = mpi_allreduce_i64,
    .bcast = mpi_bcast,
    .barrier = mpi_barrier,
    .allgather = mpi_allgather,
    .send = mpi_send,
    .recv = mpi_recv,
};
