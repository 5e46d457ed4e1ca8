/* Accounting of kiln's device memory (ops/devmem.c): ops/cuda/device.cu notes every allocation it
 * makes and every one it frees, so that the process's peak is known without asking CUDA, whose
 * cudaMemGetInfo counts every process on the device and CUDA's own context. Plain C with no CUDA
 * in it, so that the accounting is built and tested everywhere. */
#ifndef KILN_OPS_DEVMEM_H
#define KILN_OPS_DEVMEM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* p (not NULL) was just allocated with bytes bytes of device memory. */
void kl__devmem_alloc(const void *p, size_t bytes);
/* p is about to be freed; a pointer never noted (or NULL) is ignored. */
void kl__devmem_free(const void *p);

#ifdef __cplusplus
}
#endif

#endif
