/* The C interface of kiln's CUDA backend (the .cu files in ops/cuda/), callable from C code such
 * as runtime/buildinfo.c. It is only built when CMake finds nvcc (KILN_HAVE_CUDA), so callers
 * guard their use with that macro. */
#ifndef KILN_OPS_CUDA_H
#define KILN_OPS_CUDA_H

#ifdef __cplusplus
extern "C" {
#endif

/* returns the number of CUDA devices, 0 when none or no driver */
int kl__cuda_device_count(void);

/* y += a * x for n floats, on the current CUDA device. x and y are host pointers: they are copied
 * to the device and y is copied back. Returns 0 on success (also for n == 0), -1 on a CUDA error or
 * a bad argument (n < 0, a NULL pointer). */
int kl__cuda_saxpy(int n, float a, const float *x, float *y);

#ifdef __cplusplus
}
#endif

#endif
