/* The CUDA backend's device queries and its first kernel, behind the C interface in
 * ops/cuda/cuda.h. runtime/buildinfo.c asks it how many devices there are; kl__cuda_saxpy is the
 * smallest real kernel, there so that a CUDA build compiles, links and can be tested against the
 * CPU end to end. */
#include "ops/cuda/cuda.h"
#include "ops/devmem.h"

#include <cuda_runtime.h>
#include <stddef.h>
#include <string.h>

/* The text of this thread's last failure in the functions below (CUDA's strings are static). */
static thread_local const char *last_error = "no CUDA error";

static int failed(cudaError_t e)
{
    if (e == cudaSuccess)
        return 0;
    last_error = cudaGetErrorString(e);
    (void)cudaGetLastError(); /* a sticky error stays; a recoverable one is cleared */
    return -1;
}

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
    if (bytes == 0 || failed(cudaMalloc(&p, bytes)))
        return NULL;
    kl__devmem_alloc(p, bytes);
    return p;
}

extern "C" void kl__cuda_free(void *p)
{
    if (p) {
        kl__devmem_free(p);
        cudaFree(p);
    }
}

static int copy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind)
{
    if (bytes == 0)
        return 0;
    return failed(cudaMemcpy(dst, src, bytes, kind));
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
    return failed(cudaDeviceSynchronize());
}

extern "C" const char *kl__cuda_last_error(void)
{
    return last_error;
}

extern "C" int kl__cuda_set_device(int index)
{
    return failed(cudaSetDevice(index));
}

extern "C" int kl__cuda_device_info(int index, char *name, size_t n, size_t *total_bytes)
{
    cudaDeviceProp prop;
    if (failed(cudaGetDeviceProperties(&prop, index)))
        return -1;
    if (n > 0) {
        size_t len = strnlen(prop.name, sizeof prop.name);
        len = len < n - 1 ? len : n - 1;
        memcpy(name, prop.name, len);
        name[len] = '\0';
    }
    *total_bytes = prop.totalGlobalMem;
    return 0;
}

extern "C" int kl__cuda_stream_new(void **stream)
{
    cudaStream_t s = NULL;
    if (failed(cudaStreamCreate(&s)))
        return -1;
    *stream = s;
    return 0;
}

extern "C" void kl__cuda_stream_free(void *stream)
{
    if (stream)
        (void)cudaStreamDestroy((cudaStream_t)stream);
}

extern "C" int kl__cuda_zero_async(void *p, size_t bytes, void *stream)
{
    return bytes ? failed(cudaMemsetAsync(p, 0, bytes, (cudaStream_t)stream)) : 0;
}

extern "C" int kl__cuda_to_device_async(void *dst, const void *src, size_t bytes, void *stream)
{
    if (bytes == 0)
        return 0;
    return failed(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, (cudaStream_t)stream));
}

extern "C" int kl__cuda_to_host_on(void *dst, const void *src, size_t bytes, void *stream)
{
    cudaStream_t s = (cudaStream_t)stream;
    if (bytes && failed(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s)))
        return -1;
    return failed(cudaStreamSynchronize(s));
}

extern "C" int kl__cuda_stream_sync(void *stream)
{
    return failed(cudaStreamSynchronize((cudaStream_t)stream));
}

extern "C" int kl__cuda_check(void)
{
    return failed(cudaGetLastError());
}

/* ---- pinned host memory, device-to-device copies and events, for the staged inputs ---- */

extern "C" void *kl__cuda_host_alloc(size_t bytes)
{
    void *p = NULL;
    if (bytes == 0 || failed(cudaHostAlloc(&p, bytes, cudaHostAllocDefault)))
        return NULL;
    memset(p, 0, bytes);
    return p;
}

extern "C" void kl__cuda_host_free(void *p)
{
    if (p)
        (void)cudaFreeHost(p);
}

extern "C" int kl__cuda_copy_async(void *dst, const void *src, size_t bytes, void *stream)
{
    if (bytes == 0)
        return 0;
    return failed(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, (cudaStream_t)stream));
}

extern "C" int kl__cuda_event_new(void **event)
{
    cudaEvent_t e = NULL;
    if (failed(cudaEventCreateWithFlags(&e, cudaEventDisableTiming)))
        return -1;
    *event = e;
    return 0;
}

extern "C" void kl__cuda_event_free(void *event)
{
    if (event)
        (void)cudaEventDestroy((cudaEvent_t)event);
}

extern "C" int kl__cuda_event_record(void *event, void *stream)
{
    return failed(cudaEventRecord((cudaEvent_t)event, (cudaStream_t)stream));
}

extern "C" int kl__cuda_event_sync(void *event)
{
    return failed(cudaEventSynchronize((cudaEvent_t)event));
}

extern "C" int kl__cuda_stream_wait_event(void *stream, void *event)
{
    return failed(cudaStreamWaitEvent((cudaStream_t)stream, (cudaEvent_t)event, 0));
}

extern "C" int kl__cuda_event_query(void *event)
{
    cudaError_t e = cudaEventQuery((cudaEvent_t)event);
    if (e == cudaErrorNotReady)
        return 0;
    return failed(e) ? -1 : 1;
}

/* ---- CUDA Graphs: a stream's work captured once and replayed ---- */

extern "C" int kl__cuda_capture_begin(void *stream)
{
    /* Thread-local: only this thread's unsafe calls (an allocation, a synchronisation) break the
     * capture; other threads (kiln serve's instances) go on. */
    return failed(cudaStreamBeginCapture((cudaStream_t)stream, cudaStreamCaptureModeThreadLocal));
}

extern "C" int kl__cuda_capture_end(void *stream, void **exec)
{
    cudaGraph_t graph = NULL;
    cudaGraphExec_t e = NULL;
    *exec = NULL;
    cudaError_t rc = cudaStreamEndCapture((cudaStream_t)stream, &graph);
    if (rc == cudaSuccess)
        rc = cudaGraphInstantiate(&e, graph, 0);
    if (graph)
        (void)cudaGraphDestroy(graph);
    if (failed(rc))
        return -1;
    *exec = e;
    return 0;
}

extern "C" int kl__cuda_graph_launch(void *exec, void *stream)
{
    return failed(cudaGraphLaunch((cudaGraphExec_t)exec, (cudaStream_t)stream));
}

extern "C" void kl__cuda_graph_free(void *exec)
{
    if (exec)
        (void)cudaGraphExecDestroy((cudaGraphExec_t)exec);
}
