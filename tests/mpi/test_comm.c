/* The communicator, run alone (the self backend) and under mpirun -n 2 and -n 4 (the MPI
 * backend): sums, overlapping nonblocking all-reduces, broadcast, all-gather, split, barrier and
 * node-local ranks, and what the self backend refuses. Every rank checks its own results; mpirun
 * fails if any rank does. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kiln/comm.h"
#include "kiln/launch.h"

static void test_allreduce(kl_comm *c)
{
    kl_error err = {0};
    int rank = kl_comm_rank(c), size = kl_comm_size(c);
    enum { N = 1001 }; /* odd, and two buffers in flight at once */
    float *a = malloc(N * sizeof *a), *b = malloc(N * sizeof *b);
    for (int i = 0; i < N; i++) {
        a[i] = (float)(rank + i); /* small integers: every sum is exact in f32 */
        b[i] = (float)(rank * i);
    }
    kl_comm_request *ra, *rb;
    CHECK_OK(kl_comm_allreduce_start(c, a, N, &ra, &err), &err);
    CHECK_OK(kl_comm_allreduce_start(c, b, N, &rb, &err), &err);
    CHECK_OK(kl_comm_wait(c, rb, &err), &err); /* in the other order */
    CHECK_OK(kl_comm_wait(c, ra, &err), &err);
    int bad = 0, tri = size * (size - 1) / 2;
    for (int i = 0; i < N; i++)
        bad += a[i] != (float)(size * i + tri) || b[i] != (float)(tri * i);
    CHECK(bad == 0);
    CHECK_OK(kl_comm_allreduce(c, a, 0, &err), &err); /* an empty bucket is fine */
    free(a);
    free(b);
}

/* Integer sums are exact beyond what a float or a double holds. */
static void test_allreduce_i64(kl_comm *c)
{
    kl_error err = {0};
    int rank = kl_comm_rank(c), size = kl_comm_size(c);
    int64_t v[3] = {((int64_t)1 << 60) + rank, -(int64_t)rank * 3, 7};
    CHECK_OK(kl_comm_allreduce_i64(c, v, 3, &err), &err);
    int64_t tri = (int64_t)size * (size - 1) / 2;
    CHECK(v[0] == ((int64_t)size << 60) + tri && v[1] == -3 * tri && v[2] == 7 * size);
}

static void test_bcast_allgather(kl_comm *c)
{
    kl_error err = {0};
    int rank = kl_comm_rank(c), size = kl_comm_size(c), root = size - 1;
    int v[3] = {rank, rank * 2, 7};
    CHECK_OK(kl_comm_bcast(c, v, sizeof v, root, &err), &err);
    CHECK(v[0] == root && v[1] == 2 * root && v[2] == 7);
    int mine = 10 * rank, *all = calloc((size_t)size, sizeof *all);
    CHECK_OK(kl_comm_allgather(c, &mine, all, sizeof mine, &err), &err);
    for (int j = 0; j < size; j++)
        CHECK(all[j] == 10 * j);
    free(all);
    CHECK_OK(kl_comm_barrier(c, &err), &err);
}

/* Even and odd ranks form two groups; each sums within itself only. */
static void test_split(kl_comm *c)
{
    kl_error err = {0};
    int rank = kl_comm_rank(c), size = kl_comm_size(c);
    kl_comm *g = NULL;
    CHECK_OK(kl_comm_split(c, rank % 2, rank, &g, &err), &err);
    if (!g)
        return;
    int want = size == 1 ? 1 : (rank % 2 == 0 ? (size + 1) / 2 : size / 2);
    CHECK(kl_comm_size(g) == want);
    CHECK(kl_comm_rank(g) == (size == 1 ? 0 : rank / 2));
    float one = 1.0f;
    CHECK_OK(kl_comm_allreduce(g, &one, 1, &err), &err);
    CHECK(one == (float)want);
    kl_comm_free(g);
}

/* The self backend's rows beyond the one-rank collectives: it has no peer to message, and a
 * split gives another self communicator. */
static void test_self_rows(kl_comm *self)
{
    kl_error err = {0};
    int v = 0, from = -1;
    size_t got = 0;
    CHECK(kl_comm_send(self, 0, 1, &v, sizeof v, &err) == KL_EINVAL);
    CHECK(strstr(err.msg, "send: a one-process communicator has no peer") != NULL);
    CHECK(kl_comm_recv(self, -1, 1, &v, sizeof v, &from, &got, &err) == KL_EINVAL);
    CHECK(strstr(err.msg, "recv: a one-process communicator has no peer") != NULL);
    kl_comm *g = NULL;
    CHECK_OK(kl_comm_split(self, 3, 0, &g, &err), &err);
    if (g)
        CHECK(kl_comm_size(g) == 1 && !strcmp(kl_comm_backend(g), "self"));
    kl_comm_free(g);
    CHECK(kl_comm_test(self, NULL));
}

int main(int argc, char **argv)
{
    kl_error err = {0};
    kl_comm *c = NULL;
    if (kl_comm_world(&argc, &argv, &c, &err) != KL_OK) {
        fprintf(stderr, "test_comm: %s\n", err.msg);
        return 1;
    }
    int size = kl_comm_size(c);
    CHECK(size == kl_launch_detect().world_size); /* under mpirun -n 4: four MPI ranks, not self */
    CHECK(!strcmp(kl_comm_backend(c), size > 1 ? "mpi" : "self"));
    CHECK(kl_comm_rank(c) >= 0 && kl_comm_rank(c) < size);
    CHECK(kl_comm_local_size(c) >= 1 && kl_comm_local_size(c) <= size);
    CHECK(kl_comm_local_rank(c) >= 0 && kl_comm_local_rank(c) < kl_comm_local_size(c));
    test_allreduce(c);
    test_allreduce_i64(c);
    test_bcast_allgather(c);
    test_split(c);

    kl_comm *self = NULL; /* a self communicator works inside an MPI job too */
    CHECK_OK(kl_comm_self(&self, &err), &err);
    if (self) {
        CHECK(kl_comm_size(self) == 1 && kl_comm_rank(self) == 0);
        test_allreduce(self);
        test_allreduce_i64(self);
        test_self_rows(self);
        kl_comm_free(self);
    }
    char name[32];
    snprintf(name, sizeof name, "test_comm[%d/%d]", kl_comm_rank(c), size);
    kl_comm_free(c);
    return check_report(name);
}
