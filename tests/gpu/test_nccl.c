/* The nccl communicator backend on one rank (the most one GPU allows: NCCL refuses two ranks on
 * one device): kl_comm_nccl made from a one-rank communicator joins NCCL, and its all-reduce,
 * called through the backend row (kl_comm's own calls answer a one-rank communicator without
 * the backend), sums device buffers in place after the work on the given stream: with one rank the
 * sum is the buffer itself, bit for bit, for a bucket-sized and an odd-sized buffer; wait after
 * test; the other collectives go to the host communicator. Exits 77 without a device or without
 * NCCL. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kiln/comm.h"
#include "ops/cuda/cuda.h"
#include "runtime/comm_impl.h"

static void allreduce_one(kl_comm *c, void *stream, size_t n)
{
    kl_error err = {0};
    float *host = malloc(n * sizeof *host), *back = malloc(n * sizeof *back);
    float *dev = kl__cuda_alloc(n * sizeof *dev);
    CHECK(host && back && dev);
    if (!host || !back || !dev)
        goto out;
    for (size_t i = 0; i < n; i++)
        host[i] = (float)i * 0.25f - 3.0f;
    CHECK(kl__cuda_to_device(dev, host, n * sizeof *dev) == 0);
    void *req = calloc(1, c->backend->request_size);
    CHECK_OK(c->backend->allreduce_start(c, dev, n, req, &err), &err);
    (void)c->backend->test(c, req);
    CHECK_OK(c->backend->wait(c, req, &err), &err);
    free(req);
    CHECK(kl__cuda_to_host_on(back, dev, n * sizeof *back, stream) == 0);
    CHECK(memcmp(back, host, n * sizeof *back) == 0);
out:
    kl__cuda_free(dev);
    free(host);
    free(back);
}

static void test_one_rank(void)
{
    kl_error err = {0};
    kl_comm *self = NULL, *c = NULL;
    void *stream = NULL;
    CHECK(kl__cuda_set_device(0) == 0);
    CHECK(kl__cuda_stream_new(&stream) == 0);
    CHECK_OK(kl_comm_self(&self, &err), &err);
    CHECK_OK(kl_comm_nccl(self, 0, stream, &c, &err), &err);
    if (c) {
        CHECK(strcmp(kl_comm_backend(c), "nccl") == 0);
        CHECK(kl_comm_size(c) == 1 && kl_comm_rank(c) == 0);
        CHECK_OK(kl_comm_set_timeout(c, 60, &err), &err);
        allreduce_one(c, stream, (size_t)25 << 18); /* a 25 MiB bucket */
        allreduce_one(c, stream, 1001);
        int x = 7, y = 0;
        CHECK_OK(kl_comm_allgather(c, &x, &y, sizeof x, &err), &err);
        CHECK(y == 7);
        CHECK_OK(kl_comm_barrier(c, &err), &err);
    }
    kl_comm_free(c);
    kl_comm_free(self);
    kl__cuda_stream_free(stream);
}

static const check_case cases[] = {
    CHECK_CASE(test_one_rank),
};

int main(int argc, char **argv)
{
    if (!kl_comm_have_nccl()) {
        printf("test_nccl: this build has no NCCL, skipped\n");
        return 77;
    }
    if (kl__cuda_device_count() == 0) {
        printf("test_nccl: no CUDA device, skipped\n");
        return 77;
    }
    return check_run("test_nccl", cases, CHECK_NCASES(cases), argc, argv);
}
