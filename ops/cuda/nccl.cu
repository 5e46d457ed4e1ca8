/* NCCL behind a C interface (ops/cuda/cuda.h, "NCCL") for the communicator's nccl backend
 * (runtime/comm_nccl.c), which may not include CUDA's headers. Built only when CMake finds NCCL
 * (KILN_HAVE_NCCL). Every call returns 0, or -1 with the reason in kl__nccl_last_error. */
#include "ops/cuda/cuda.h"

#include <cuda_runtime.h>
#include <nccl.h>
#include <stdio.h>
#include <string.h>

static_assert(KL__NCCL_ID_BYTES == NCCL_UNIQUE_ID_BYTES, "the unique id's size");

static thread_local char last_error[256] = "no NCCL error";

static int nccl_failed(ncclResult_t r, const char *call)
{
    if (r == ncclSuccess)
        return 0;
    snprintf(last_error, sizeof last_error, "%s: %s", call, ncclGetErrorString(r));
    return -1;
}

static int cuda_failed(cudaError_t e, const char *call)
{
    if (e == cudaSuccess)
        return 0;
    snprintf(last_error, sizeof last_error, "%s: %s", call, cudaGetErrorString(e));
    (void)cudaGetLastError();
    return -1;
}

extern "C" const char *kl__nccl_last_error(void)
{
    return last_error;
}

extern "C" int kl__nccl_unique_id(void *id)
{
    ncclUniqueId u;
    if (nccl_failed(ncclGetUniqueId(&u), "ncclGetUniqueId"))
        return -1;
    memcpy(id, &u, sizeof u);
    return 0;
}

extern "C" int kl__nccl_init(void **comm, int nranks, const void *id, int rank, int device)
{
    ncclUniqueId u;
    ncclComm_t c = NULL;
    memcpy(&u, id, sizeof u);
    if (cuda_failed(cudaSetDevice(device), "cudaSetDevice") ||
        nccl_failed(ncclCommInitRank(&c, nranks, u, rank), "ncclCommInitRank"))
        return -1;
    *comm = c;
    return 0;
}

extern "C" int kl__nccl_allreduce(void *comm, float *buf, size_t n, void *stream)
{
    return nccl_failed(
        ncclAllReduce(buf, buf, n, ncclFloat, ncclSum, (ncclComm_t)comm, (cudaStream_t)stream),
        "ncclAllReduce");
}

extern "C" int kl__nccl_async_error(void *comm)
{
    ncclResult_t async = ncclSuccess;
    if (nccl_failed(ncclCommGetAsyncError((ncclComm_t)comm, &async), "ncclCommGetAsyncError"))
        return -1;
    return async == ncclInProgress ? 0 : nccl_failed(async, "NCCL (asynchronous error)");
}

extern "C" void kl__nccl_abort(void *comm)
{
    if (comm)
        (void)ncclCommAbort((ncclComm_t)comm);
}

extern "C" void kl__nccl_destroy(void *comm)
{
    if (comm)
        (void)ncclCommDestroy((ncclComm_t)comm);
}
