/* The `self` backend (runtime/comm_impl.h): one process alone, the world of a process that no
 * launcher started as one of several ranks, and what kl_comm_self gives inside any job. It has
 * no state and no peers; its collectives are those of one rank, which runtime/comm.c answers
 * itself. */
#include "runtime/comm_impl.h"

static kl_status self_world(int *argc, char ***argv, kl_comm **out, kl_error *err)
{
    kl_comm *c = kl__comm_new(&kl__comm_self_backend, err);
    if (!c)
        return KL_ENOMEM;
    *out = c;
    return KL_OK;
}

/* Every color holds the one rank. */
static kl_status self_split(kl_comm *c, int color, int key, kl_comm **out, kl_error *err)
{
    return self_world(NULL, NULL, out, err);
}

static void self_free(kl_comm *c) {}

static kl_status self_send(kl_comm *c, int dest, int tag, const void *buf, size_t bytes,
                           kl_error *err)
{
    return kl_error_set(err, KL_EINVAL, "send: a one-process communicator has no peer");
}

static kl_status self_recv(kl_comm *c, int src, int tag, void *buf, size_t cap, int *from,
                           size_t *bytes, kl_error *err)
{
    return kl_error_set(err, KL_EINVAL, "recv: a one-process communicator has no peer");
}

const kl__comm_backend kl__comm_self_backend = {
    .name = "self",
    .world = self_world,
    .split = self_split,
    .free = self_free,
    .send = self_send,
    .recv = self_recv,
};
