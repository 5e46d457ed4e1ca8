/* What the CUDA kernel files in ops/cuda/ share, and nothing outside them includes: the op table's
 * contract seen from C++ (ops/graph_impl.h under extern "C"), launch sizes, the deterministic block
 * reduction every sum uses, row-major GEMM on cuBLAS with a handle per thread and device, and
 * Philox as a device function (the same bits as ops/rng.c). */
#ifndef KILN_OPS_CUDA_IMPL_H
#define KILN_OPS_CUDA_IMPL_H

/* The C library's headers first, outside extern "C": in C++ they declare overloads. */
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cublas_v2.h>
#include <cuda_runtime.h>

extern "C" {
#include "kiln/rng.h"
#include "ops/graph_impl.h"
}

/* Threads per block of every kernel here; the block reductions below assume this size. */
#define KL__CU_THREADS 256

static inline cudaStream_t kl__cu_stream(const kl__ctx *c)
{
    return (cudaStream_t)c->stream;
}

/* Blocks for a grid-stride loop over n elements; the grid is capped because each thread then
 * loops, and n == 0 still launches one block (the kernels check their bounds). */
static inline unsigned kl__cu_blocks(int64_t n)
{
    int64_t b = (n + KL__CU_THREADS - 1) / KL__CU_THREADS;
    return (unsigned)(b < 1 ? 1 : b > 65535 * 4 ? 65535 * 4 : b);
}

#define KL__CU_FOR(i, n)                                                               \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (int64_t)(n); \
         i += (int64_t)blockDim.x * gridDim.x)

/* A forward kernel's launch result as a kl_status that names the op. */
static inline kl_status kl__cu_launched(const char *op, kl_error *err)
{
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess)
        return KL_OK;
    return kl_error_set(err, KL_EINTERNAL, "%s: a CUDA kernel failed to start: %s", op,
                        cudaGetErrorString(e));
}

/* The sum of v over the block (KL__CU_THREADS threads, all calling), in a fixed tree order so the
 * result does not depend on scheduling; every thread gets it. Summing in double as the CPU kernels
 * do keeps the two within rounding of the last float. */
static __device__ inline double kl__cu_block_sum(double v)
{
    __shared__ double part[KL__CU_THREADS];
    __syncthreads(); /* a previous call's readers are done with part */
    part[threadIdx.x] = v;
    __syncthreads();
    for (int half = KL__CU_THREADS / 2; half > 0; half /= 2) {
        if ((int)threadIdx.x < half)
            part[threadIdx.x] += part[threadIdx.x + half];
        __syncthreads();
    }
    return part[0];
}

/* The maximum of v over the block; a NaN anywhere makes it NaN (fmaxf would drop it). */
static __device__ inline float kl__cu_block_max(float v)
{
    __shared__ float part[KL__CU_THREADS];
    __syncthreads();
    part[threadIdx.x] = v;
    __syncthreads();
    for (int half = KL__CU_THREADS / 2; half > 0; half /= 2) {
        if ((int)threadIdx.x < half) {
            float a = part[threadIdx.x], b = part[threadIdx.x + half];
            part[threadIdx.x] = b > a || b != b ? b : a;
        }
        __syncthreads();
    }
    return part[0];
}

/* Philox-4x32-10 and kl_rng_uniform of ops/rng.c, bit for bit: a dropout mask drawn here is the
 * mask the CPU draws for the same (seed, purpose, stream, index). */
static __device__ inline float kl__cu_rng_uniform(uint64_t seed, uint32_t purpose, uint64_t stream,
                                                  uint64_t i)
{
    uint64_t block = i / 4;
    uint32_t c[4] = {(uint32_t)block, (uint32_t)(block >> 32), (uint32_t)stream,
                     ((uint32_t)(stream >> 32) & 0xFFFFFFu) | (purpose << 24)};
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int r = 0; r < 10; r++) {
        if (r > 0) {
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        uint32_t hi0 = __umulhi(0xD2511F53u, c[0]), lo0 = 0xD2511F53u * c[0];
        uint32_t hi1 = __umulhi(0xCD9E8D57u, c[2]), lo1 = 0xCD9E8D57u * c[2];
        uint32_t r0 = hi1 ^ c[1] ^ k0, r2 = hi0 ^ c[3] ^ k1;
        c[0] = r0;
        c[1] = lo1;
        c[2] = r2;
        c[3] = lo0;
    }
    return (float)(c[i % 4] >> 8) * (1.0f / 16777216.0f);
}

/* cuBLAS, row-major. kl__cu_gemm is cblas_sgemm(CblasRowMajor, ...) with the same arguments, run
 * as the column-major product C^T = op(B)^T op(A)^T, so every CPU call ports one to one. The
 * handle is the calling thread's for the current device, created on first use, with FP32 maths
 * (no TF32) and atomics off: the same inputs give the same bits on the same card. On the stream of
 * ctx; with ctx->bf16 (kl_graph_set_bf16) cublasGemmEx rounds the fp32 inputs to bf16 and
 * accumulates in fp32 (CUBLAS_COMPUTE_32F_FAST_16BF). Returns false when there is no handle or
 * cuBLAS refuses the call. */
cublasHandle_t kl__cu_blas(cudaStream_t stream);
bool kl__cu_gemm(const kl__ctx *ctx, bool ta, bool tb, int m, int n, int k, float alpha,
                 const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);
/* A forward kernel's error when kl__cu_gemm returned false. Backward kernels cannot return one:
 * the handle they use was made by the forward pass before them. */
kl_status kl__cu_gemm_failed(const char *op, kl_error *err);

/* dst = (fresh ? 0 : dst) + src over n floats: the accumulation of most backward kernels. */
void kl__cu_accumulate(cudaStream_t stream, float *dst, const float *src, int64_t n, bool fresh);

#endif
