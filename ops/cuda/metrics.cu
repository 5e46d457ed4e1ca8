/* A training batch's statistics on the device (ops/cuda/cuda.h, kl__cuda_batch_stats): what
 * trainers/train.c's batch_stats computes on the host from downloaded outputs, added into device
 * sums that the trainer reads once per report, so that a training step never waits for the
 * device. One block, a fixed order: the same bits every run, as the CPU's sums are. */
#include "ops/cuda/cuda.h"
#include "ops/cuda/cuda_impl.h"

static __global__ void batch_stats_kernel(const float *out, const void *y, int64_t b, int64_t k,
                                          int classification, const float *loss, double step,
                                          double *sums)
{
    double part = 0;
    for (int64_t i = threadIdx.x; i < b; i += blockDim.x) {
        const float *row = out + i * k;
        if (classification) {
            int64_t best = 0;
            for (int64_t j = 1; j < k; j++)
                best = row[j] > row[best] ? j : best;
            part += best == (int64_t)((const int32_t *)y)[i];
        } else {
            const float *t = (const float *)y + i * k;
            for (int64_t j = 0; j < k; j++)
                part += fabs((double)row[j] - (double)t[j]);
        }
    }
    double total = kl__cu_block_sum(part);
    if (threadIdx.x == 0) {
        double l = (double)loss[0];
        sums[0] += l * (double)b;
        sums[classification ? 1 : 2] += total;
        if (!isfinite(l)) {
            if (sums[3] == 0)
                sums[4] = step;
            sums[3] += 1;
        }
    }
}

extern "C" int kl__cuda_batch_stats(const float *out, const void *y, int64_t b, int64_t k,
                                    int classification, const float *loss, double step,
                                    double *sums, void *stream)
{
    if (b < 0 || k < 1 || !out || !y || !loss || !sums)
        return -1;
    batch_stats_kernel<<<1, KL__CU_THREADS, 0, (cudaStream_t)stream>>>(out, y, b, k, classification,
                                                                       loss, step, sums);
    return cudaGetLastError() == cudaSuccess ? 0 : -1;
}
