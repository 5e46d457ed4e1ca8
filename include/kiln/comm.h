/* Communicators: how data-parallel ranks exchange gradients and agree on state. A kl_comm has a
 * rank, a size, a local (same-node) rank and a backend: `self` (one process, every collective a
 * no-op) or `mpi` (CPU buffers, nonblocking all-reduce). Backends are rows of one table
 * (runtime/comm_impl.h); an NCCL backend for GPU buffers is one more row behind the same calls. */
#ifndef KILN_COMM_H
#define KILN_COMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kiln/status.h"

typedef struct kl_comm kl_comm;
typedef struct kl_comm_request kl_comm_request;

/* The process's communicator: MPI's world when the process was started by a launcher as one of
 * several ranks (mpirun, srun), else `self`. Initialises MPI when it uses it. */
kl_status kl_comm_world(int *argc, char ***argv, kl_comm **out, kl_error *err);
/* A one-process communicator, whatever launched the process. */
kl_status kl_comm_self(kl_comm **out, kl_error *err);
/* Frees a communicator; freeing the world one also finalises MPI if it initialised it. */
void kl_comm_free(kl_comm *c);

int kl_comm_rank(const kl_comm *c);
int kl_comm_size(const kl_comm *c);
int kl_comm_local_rank(const kl_comm *c); /* among the ranks on this node */
int kl_comm_local_size(const kl_comm *c);
const char *kl_comm_backend(const kl_comm *c); /* "self" or "mpi" */

/* The exit status of a process that a collective timeout ended. */
#define KL_COMM_EXIT_TIMEOUT 3

/* A timeout for every collective of c (dist.timeout): a rank that waits longer than `seconds` in
 * one of them ends its process with KL_COMM_EXIT_TIMEOUT and a message naming itself, what it
 * waited in (kl_comm_set_phase) and, where the collective can tell, the ranks that did not
 * arrive. A stopped or stuck rank cannot report itself and the others would wait for it forever;
 * the launcher ends the job once one rank exits. With a timeout, small all-gathers go to rank 0
 * point to point and back, so rank 0 knows who never sent: every rank of c sets the same
 * timeout, or none. 0 (the default) waits forever. Only collectives are watched, not
 * kl_comm_send/recv. */
kl_status kl_comm_set_timeout(kl_comm *c, double seconds, kl_error *err);
double kl_comm_timeout(const kl_comm *c);
/* What the next collectives are for, as a timeout's message names it ("startup agreement",
 * "gradient all-reduce"), and the training step (-1: none); what must outlive those calls (a
 * literal). NULL goes back to naming the call ("broadcast"). */
void kl_comm_set_phase(kl_comm *c, const char *what, int64_t step);

/* Sums n floats in place across the ranks. _start returns at once with a request that
 * kl_comm_wait completes (and frees); buf must not be touched in between. */
kl_status kl_comm_allreduce_start(kl_comm *c, float *buf, size_t n, kl_comm_request **req,
                                  kl_error *err);
kl_status kl_comm_wait(kl_comm *c, kl_comm_request *req, kl_error *err);
/* Whether req has completed, driving it on: MPI moves a nonblocking collective forward only
 * inside MPI calls, so a caller overlapping it with computation tests it now and then. The
 * request still goes to kl_comm_wait, which then returns at once. */
bool kl_comm_test(kl_comm *c, kl_comm_request *req);
kl_status kl_comm_allreduce(kl_comm *c, float *buf, size_t n, kl_error *err);
/* Sums n int64 in place across the ranks, blocking. Integer sums are exact, so the result does
 * not depend on the order in which the ranks' values meet (dist.deterministic's exact sums). */
kl_status kl_comm_allreduce_i64(kl_comm *c, int64_t *buf, size_t n, kl_error *err);

kl_status kl_comm_bcast(kl_comm *c, void *buf, size_t bytes, int root, kl_error *err);
kl_status kl_comm_barrier(kl_comm *c, kl_error *err);
/* recv holds size * bytes: every rank's send block in rank order; send and recv do not overlap. */
kl_status kl_comm_allgather(kl_comm *c, const void *send, void *recv, size_t bytes, kl_error *err);
/* Point-to-point messages (the tune coordinator's, blocking): send bytes to rank dest, and
 * receive one message with tag from rank src (-1: any rank) into buf of cap bytes, learning who
 * sent it and its size. Not available on a one-process communicator. */
kl_status kl_comm_send(kl_comm *c, int dest, int tag, const void *buf, size_t bytes, kl_error *err);
kl_status kl_comm_recv(kl_comm *c, int src, int tag, void *buf, size_t cap, int *from,
                       size_t *bytes, kl_error *err);
/* Ranks with the same color form a new communicator, ordered by key then old rank. */
kl_status kl_comm_split(kl_comm *c, int color, int key, kl_comm **out, kl_error *err);

/* An `nccl` communicator over the ranks of host (an MPI one): each rank gives its own CUDA device
 * and a stream of it (a cudaStream_t, such as a device graph's). Its all-reduce sums CUDA device
 * buffers on a communication stream of its own, after the work already queued on that stream
 * (ordered on the device: start returns at once); its wait fails (KL_ECOMM, naming the rank, the
 * phase and the step) on an asynchronous NCCL error or past the timeout (kl_comm_set_timeout on
 * it), after aborting NCCL. Its other calls go to host. Every rank of host must call it.
 * KL_EUNSUPPORTED when the build has no NCCL (kl_comm_have_nccl). Free it before host. */
kl_status kl_comm_nccl(kl_comm *host, int device, void *stream, kl_comm **out, kl_error *err);
bool kl_comm_have_nccl(void);

#endif
