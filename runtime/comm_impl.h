/* The communicator's backend table, private to runtime/comm*.c. runtime/comm.c holds what every
 * backend shares (argument checks, the one-rank answers, the collective timeout and its phases,
 * requests, choosing the world's backend) and calls a backend through its row; each backend is
 * one row in a file of its own: `self` (runtime/comm_self.c), `mpi` (runtime/comm_mpi.c) and
 * `nccl` (runtime/comm_nccl.c: device buffers, made from an MPI communicator by kl_comm_nccl).
 *
 * What a backend provides (a new one, such as NCCL for GPU buffers, is one more row):
 * - name, and the bytes of its own state after a kl_comm (state_size) and after a request
 *   (request_size); comm.c allocates both, zeroed, and frees them.
 * - claims_world: whether this process's world is this backend's (the launcher started several
 *   ranks, the library is already running). NULL: always. kl_comm_world takes the first row of
 *   its list (comm.c) that claims the process.
 * - world: the communicator of every rank of the job, with rank, size, local_rank and
 *   local_size set. split: the communicator of the ranks that passed the same color.
 * - free: releases the backend's state (comm.c stops the watchdog first and frees the struct).
 * - allreduce_start, test, wait: a nonblocking sum in place. start may return before the data
 *   has moved (MPI's nonblocking all-reduce; a GPU backend enqueues on a stream); test drives it
 *   on without blocking; wait blocks until buf holds the sum. Every other call returns when it
 *   has completed.
 * - allreduce_i64 (an exact integer sum in place), bcast, barrier, allgather: blocking
 *   collectives.
 * - send, recv: blocking point-to-point messages (the tune coordinator's); a backend without
 *   peers returns an error that says so.
 *
 * The collectives (allreduce_start, test, wait, allreduce_i64, bcast, barrier, allgather) are
 * called only with
 * size > 1: comm.c answers a one-rank communicator itself, so a backend that always has one rank
 * (self) leaves them NULL. Counts have been checked against INT_MAX. A backend watches each of
 * its waits on other ranks with kl__comm_watch/kl__comm_unwatch (a wait in a collective; not
 * send and recv), so that a collective timeout ends a stuck rank, and names the ranks that did
 * not arrive with kl__watchdog_missing where it can tell. There is no abort: the watchdog ends a
 * stuck process with _exit, which every launcher turns into the end of the job. */
#ifndef KILN_RUNTIME_COMM_IMPL_H
#define KILN_RUNTIME_COMM_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kiln/comm.h"
#include "runtime/watchdog.h"

typedef struct kl__comm_backend {
    const char *name; /* what kl_comm_backend answers */
    size_t state_size, request_size;
    bool (*claims_world)(void);
    kl_status (*world)(int *argc, char ***argv, kl_comm **out, kl_error *err);
    kl_status (*split)(kl_comm *c, int color, int key, kl_comm **out, kl_error *err);
    void (*free)(kl_comm *c);
    /* req: request_size bytes of the backend's, for test and wait to find the collective. */
    kl_status (*allreduce_start)(kl_comm *c, float *buf, size_t n, void *req, kl_error *err);
    bool (*test)(kl_comm *c, void *req); /* false on an error too: wait reports it */
    kl_status (*wait)(kl_comm *c, void *req, kl_error *err);
    kl_status (*allreduce_i64)(kl_comm *c, int64_t *buf, size_t n, kl_error *err);
    kl_status (*bcast)(kl_comm *c, void *buf, size_t bytes, int root, kl_error *err);
    kl_status (*barrier)(kl_comm *c, kl_error *err);
    kl_status (*allgather)(kl_comm *c, const void *send, void *recv, size_t bytes, kl_error *err);
    kl_status (*send)(kl_comm *c, int dest, int tag, const void *buf, size_t bytes, kl_error *err);
    kl_status (*recv)(kl_comm *c, int src, int tag, void *buf, size_t cap, int *from, size_t *bytes,
                      kl_error *err);
} kl__comm_backend;

extern const kl__comm_backend kl__comm_self_backend;
extern const kl__comm_backend kl__comm_mpi_backend;
extern const kl__comm_backend kl__comm_nccl_backend; /* only where KILN_HAVE_NCCL */

struct kl_comm {
    const kl__comm_backend *backend;
    int rank, size, local_rank, local_size; /* set by the backend */
    double timeout;                         /* seconds; 0: collectives wait forever */
    kl__watchdog *wd;                       /* started with the first timeout */
    const char *phase; /* what the collectives are for (kl_comm_set_phase), or NULL */
    int64_t phase_step;
    max_align_t state[]; /* the backend's state_size bytes */
};

/* A new communicator of backend b, zeroed (state too), with one rank; NULL with err set. */
kl_comm *kl__comm_new(const kl__comm_backend *b, kl_error *err);
/* Whether c's waits are watched: a timeout is set and c has a watchdog. */
bool kl__comm_watched(const kl_comm *c);
/* A wait in collective `call` begins (grace: seconds allowed beyond the timeout, for a rank that
 * leaves the naming of the missing to another) and ends; no-ops unless kl__comm_watched. The
 * phase set with kl_comm_set_phase names the wait when there is one. */
void kl__comm_watch(kl_comm *c, const char *call, double grace);
void kl__comm_unwatch(kl_comm *c);

#endif
