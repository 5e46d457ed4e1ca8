/* The C interface of kiln's CUDA backend (the .cu files in ops/cuda/), callable from C code such
 * as runtime/buildinfo.c: device queries and memory, the optimizer and clipping on flat device
 * buffers. The op kernels are reached through the op table's .cuda column (ops/graph_impl.h). It
 * is only built when CMake finds nvcc (KILN_HAVE_CUDA), so callers guard their use with that
 * macro. A stream argument is a cudaStream_t; NULL is the default stream. */
#ifndef KILN_OPS_CUDA_H
#define KILN_OPS_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/optim.h"

#ifdef __cplusplus
extern "C" {
#endif

/* returns the number of CUDA devices, 0 when none or no driver */
int kl__cuda_device_count(void);

/* y += a * x for n floats, on the current CUDA device. x and y are host pointers: they are copied
 * to the device and y is copied back. Returns 0 on success (also for n == 0), -1 on a CUDA error or
 * a bad argument (n < 0, a NULL pointer). */
int kl__cuda_saxpy(int n, float a, const float *x, float *y);

/* Device memory: alloc returns NULL on failure (and for 0 bytes); copies wait for the copy (and
 * the work queued before it) and return 0, or -1 on a CUDA error; sync waits for the device. */
void *kl__cuda_alloc(size_t bytes);
void kl__cuda_free(void *p);
int kl__cuda_to_device(void *dst, const void *src, size_t bytes);
int kl__cuda_to_host(void *dst, const void *src, size_t bytes);
int kl__cuda_sync(void);

/* Devices and streams, for the device graph (ops/graph_device.c) and the trainer. Every function
 * returning int returns 0, or -1 on a CUDA error whose text kl__cuda_last_error then gives.
 * set_device makes index the calling thread's current device (CUDA's state is per thread).
 * device_info writes the device's name (truncated to n bytes) and its total memory. */
int kl__cuda_set_device(int index);
int kl__cuda_device_info(int index, char *name, size_t n, size_t *total_bytes);
const char *kl__cuda_last_error(void);
/* A stream of the current device (*stream: a cudaStream_t), and its end. */
int kl__cuda_stream_new(void **stream);
void kl__cuda_stream_free(void *stream);
/* Queued on stream, not waited for: zeroing bytes at p, and a copy from host to device (the host
 * bytes may be reused when the call returns: pageable memory is staged before it returns). */
int kl__cuda_zero_async(void *p, size_t bytes, void *stream);
int kl__cuda_to_device_async(void *dst, const void *src, size_t bytes, void *stream);
/* A copy from device to host after the work queued on stream; waits for it, so an error a kernel
 * hit while running is reported here. */
int kl__cuda_to_host_on(void *dst, const void *src, size_t bytes, void *stream);
/* Waits for the stream's work. check reports a launch error without waiting. */
int kl__cuda_stream_sync(void *stream);
int kl__cuda_check(void);

/* For the staged inputs (ops/graph_device.c). host_alloc gives zeroed page-locked host memory
 * (cudaHostAlloc: copies from it are truly asynchronous), NULL on failure; host_free releases it.
 * copy_async queues a device-to-device copy on stream. An event (a cudaEvent_t, without timing)
 * is recorded on a stream; sync waits for the work before it (an event never recorded is done);
 * stream_wait_event makes the work queued on stream after it wait for that work, without the
 * host waiting; event_query is 1 when that work is done, 0 when not yet, -1 on an error. */
void *kl__cuda_host_alloc(size_t bytes);
void kl__cuda_host_free(void *p);
int kl__cuda_copy_async(void *dst, const void *src, size_t bytes, void *stream);
int kl__cuda_event_new(void **event);
void kl__cuda_event_free(void *event);
int kl__cuda_event_record(void *event, void *stream);
int kl__cuda_event_sync(void *event);
int kl__cuda_event_query(void *event);
int kl__cuda_stream_wait_event(void *stream, void *event);

/* CUDA Graphs (ops/graph_device.c): capture_begin starts capturing the work queued on stream
 * (thread-local mode: only this thread's unsafe calls break it); capture_end ends it and
 * instantiates what was captured into *exec (NULL and -1 when the capture broke or the graph
 * cannot be instantiated: the captured work did not run, and the stream is no longer
 * capturing); graph_launch queues *exec on stream; graph_free releases it. */
int kl__cuda_capture_begin(void *stream);
int kl__cuda_capture_end(void *stream, void **exec);
int kl__cuda_graph_launch(void *exec, void *stream);
void kl__cuda_graph_free(void *exec);

/* A training batch's statistics added on the device (ops/cuda/metrics.cu), for a graph that keeps
 * its outputs there: sums[0] += loss[0] * b, sums[1] += the rows of out (b x k) whose first
 * largest entry is the i32 label y (classification), or sums[2] += the absolute errors against
 * the f32 targets y (b x k, regression); when loss[0] is not finite, sums[3] += 1 and, if it was
 * 0, sums[4] = step. In double, in a fixed order (one block): the same bits every run. Returns 0,
 * or -1 on a launch error. Nothing waits for the device. */
enum { KL__CUDA_STATS = 5 };
int kl__cuda_batch_stats(const float *out, const void *y, int64_t b, int64_t k, int classification,
                         const float *loss, double step, double *sums, void *stream);

/* kl_optim_step on device buffers: params, grads and state (the layout of kl_optim_state: SGD's
 * momentum, or Adam(W)'s m then v; unused for SGD without momentum) hold n floats each (2n for
 * Adam's state). steps is the number of updates taken before this one (kl_optim_steps), which the
 * caller counts. cfg must have passed kl_optim_new's checks. Returns 0, or -1 on bad segments or a
 * launch error. Nothing waits for the device. */
int kl__cuda_optim_step(const kl_optim_config *cfg, int64_t steps, float *params,
                        const float *grads, float *state, size_t n, float lr,
                        const kl_optim_segment *segs, int nsegs, void *stream);

/* kl_clip_grad_norm on a device buffer: the norm before clipping goes to *norm (device memory) and
 * the gradients are scaled on the device; work is device scratch of KL__CUDA_CLIP_WORK doubles.
 * Returns 0, or -1 on a launch error. Nothing waits for the device. */
enum { KL__CUDA_CLIP_BLOCKS = 512, KL__CUDA_CLIP_WORK = KL__CUDA_CLIP_BLOCKS + 1 };
int kl__cuda_clip_grad_norm(float *grads, size_t n, float max_norm, float *norm, double *work,
                            void *stream);

/* NCCL (ops/cuda/nccl.cu, only in a build where CMake found NCCL: KILN_HAVE_NCCL), for the
 * communicator's nccl backend. A comm is an ncclComm_t, an event a cudaEvent_t. Each returns 0,
 * or -1 with the reason in kl__nccl_last_error. unique_id writes KL__NCCL_ID_BYTES bytes; init
 * makes device the thread's current device and joins the nranks ranks of the id (it waits for
 * all of them); allreduce sums n floats of device memory in place, queued on stream; async_error
 * is -1 once the communicator has failed (ncclCommGetAsyncError); abort ends it without waiting
 * (ncclCommAbort). The communicator orders its all-reduces with the kl__cuda_event_* calls. */
enum { KL__NCCL_ID_BYTES = 128 };
const char *kl__nccl_last_error(void);
int kl__nccl_unique_id(void *id);
int kl__nccl_init(void **comm, int nranks, const void *id, int rank, int device);
int kl__nccl_allreduce(void *comm, float *buf, size_t n, void *stream);
int kl__nccl_async_error(void *comm);
void kl__nccl_abort(void *comm);
void kl__nccl_destroy(void *comm);

#ifdef __cplusplus
}
#endif

#endif
