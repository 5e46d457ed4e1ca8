/* The CUDA backend's device queries and its first kernel, behind the C interface in
 * ops/cuda/cuda.h. runtime/buildinfo.c asks it how many devices there are; kl__cuda_saxpy is the
 * smallest real kernel, there so that a CUDA build compiles, links and can be tested against the
 * CPU end to end. */
#include "ops/cuda/cuda.h"

#include <cuda_runtime.h>
#include <stddef.h>

extern "C" int kl__cuda_device_count(void)
{
    int n = 0;

    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        /* No driver or no device: clear the error so that it does not surface in a later call. */
        (void)cudaGetLastError();
        return 0;
    }
    return n;
}

/* y[i] += a * x[i] in a grid-stride loop. The index is a size_t so that the last stride past an n
 * near INT_MAX does not overflow. */
static __global__ void saxpy_kernel(int n, float a, const float *x, float *y)
{
    size_t stride = (size_t)blockDim.x * gridDim.x;

    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (size_t)n; i += stride)
        y[i] += a * x[i];
}

extern "C" int kl__cuda_saxpy(int n, float a, const float *x, float *y)
{
    const int threads = 256;
    size_t bytes = (size_t)n * sizeof(float);
    float *d_x = NULL, *d_y = NULL;
    int blocks, status = -1;

    if (n < 0 || (n > 0 && (x == NULL || y == NULL)))
        return -1;
    if (n == 0)
        return 0;
    blocks = (n + threads - 1) / threads;
    if (blocks > 65535)
        blocks = 65535;

    if (cudaMalloc((void **)&d_x, bytes) != cudaSuccess ||
        cudaMalloc((void **)&d_y, bytes) != cudaSuccess)
        goto out;
    if (cudaMemcpy(d_x, x, bytes, cudaMemcpyHostToDevice) != cudaSuccess ||
        cudaMemcpy(d_y, y, bytes, cudaMemcpyHostToDevice) != cudaSuccess)
        goto out;
    saxpy_kernel<<<blocks, threads>>>(n, a, d_x, d_y);
    if (cudaGetLastError() != cudaSuccess)
        goto out;
    /* cudaMemcpy waits for the kernel and reports an error it hit while running. */
    if (cudaMemcpy(y, d_y, bytes, cudaMemcpyDeviceToHost) != cudaSuccess)
        goto out;
    status = 0;
out:
    if (status != 0)
        (void)cudaGetLastError();
    cudaFree(d_x);
    cudaFree(d_y);
    return status;
}

extern "C" void *kl__cuda_alloc(size_t bytes)
{
    void *p = NULL;
    if (bytes == 0 || cudaMalloc(&p, bytes) != cudaSuccess) {
        (void)cudaGetLastError();
        return NULL;
    }
    return p;
}

extern "C" void kl__cuda_free(void *p)
{
    if (p)
        cudaFree(p);
}

static int copy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind)
{
    if (bytes == 0)
        return 0;
    if (cudaMemcpy(dst, src, bytes, kind) != cudaSuccess) {
        (void)cudaGetLastError();
        return -1;
    }
    return 0;
}

extern "C" int kl__cuda_to_device(void *dst, const void *src, size_t bytes)
{
    return copy(dst, src, bytes, cudaMemcpyHostToDevice);
}

extern "C" int kl__cuda_to_host(void *dst, const void *src, size_t bytes)
{
    return copy(dst, src, bytes, cudaMemcpyDeviceToHost);
}

extern "C" int kl__cuda_sync(void)
{
    return cudaDeviceSynchronize() == cudaSuccess ? 0 : -1;
}
