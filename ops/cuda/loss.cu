/* The CUDA kernels of softmax_xent and mse (ops/cpu/loss.c). The losses are reduced in one block,
 * in double and a fixed order, and stay on the device. A label outside [0, C) cannot be reported
 * without waiting for the device, so the forward kernel makes the loss NaN instead: the step then
 * refuses it as non-finite rather than training on garbage. */
#include "ops/cuda/cuda_impl.h"

/* A warp per row (rows strided over the block's warps): the row maximum, lse and the smoothed
 * loss as the CPU computes them; each warp keeps its rows' sum, and the block adds the warps. */
static __global__ void xent_forward_kernel(float *out, float *p, const float *logits,
                                           const int32_t *labels, int64_t N, int64_t C, double s)
{
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    double total = 0;
    bool bad = false;
    for (int64_t i = warp; i < N; i += warps) {
        const float *row = logits + i * C;
        float *prow = p + i * C;
        int32_t y = labels[i];
        float mx = row[0];
        for (int64_t j = lane; j < C; j += 32)
            mx = row[j] > mx ? row[j] : mx;
        for (int o = 16; o > 0; o /= 2) {
            float v = __shfl_xor_sync(0xffffffffu, mx, o);
            mx = v > mx ? v : mx;
        }
        double sum = 0, sum_x = 0;
        for (int64_t j = lane; j < C; j += 32) {
            sum += exp((double)row[j] - mx);
            sum_x += row[j];
        }
        for (int o = 16; o > 0; o /= 2) {
            sum += __shfl_xor_sync(0xffffffffu, sum, o);
            sum_x += __shfl_xor_sync(0xffffffffu, sum_x, o);
        }
        double lse = mx + log(sum);
        for (int64_t j = lane; j < C; j += 32)
            prow[j] = (float)exp((double)row[j] - lse);
        if (y < 0 || y >= C)
            bad = true;
        else
            total += (1.0 - s) * (lse - row[y]) + s / (double)C * ((double)C * lse - sum_x);
    }
    total = kl__cu_block_sum(lane == 0 ? total : 0.0);
    bool any_bad = __syncthreads_or(bad);
    if (threadIdx.x == 0)
        out[0] = any_bad ? nanf("") : (float)(total / (double)N);
}

/* d(mean loss)/d x_ij = (p_ij - q_ij) / N, added into dx in the CPU's two steps. */
static __global__ void xent_backward_kernel(float *dx, const float *p, const int32_t *labels,
                                            const float *dout, int64_t N, int64_t C, float s)
{
    float scale = dout[0] / (float)N, off = s / (float)C;
    KL__CU_FOR (t, N * C) {
        int64_t i = t / C, j = t % C;
        float g = dx[t] + scale * (p[t] - off);
        if (labels[i] == j)
            g -= scale * (1.0f - s);
        dx[t] = g;
    }
}

static kl_status xent_forward(kl__ctx *c, kl_error *err)
{
    const kl_tensor *x = c->in[0];
    int64_t N = x->shape.d[0], C = x->shape.d[1];
    xent_forward_kernel<<<1, KL__CU_THREADS, 0, kl__cu_stream(c)>>>(
        kl_f32(c->out), c->saved, kl_f32(x), kl_i32(c->in[1]), N, C,
        (double)c->attr->xent.smoothing);
    return kl__cu_launched("softmax_xent", err);
}

static void xent_backward(kl__ctx *c)
{
    if (!c->din[0])
        return;
    int64_t N = c->in[0]->shape.d[0], C = c->in[0]->shape.d[1];
    xent_backward_kernel<<<kl__cu_blocks(N * C), KL__CU_THREADS, 0, kl__cu_stream(c)>>>(
        kl_f32(c->din[0]), c->saved, kl_i32(c->in[1]), kl_f32(c->dout), N, C,
        c->attr->xent.smoothing);
}

extern "C" const kl__kernel kl__cuda_softmax_xent = {xent_forward, xent_backward, false};

static __global__ void mse_forward_kernel(float *out, const float *p, const float *t, int64_t n)
{
    double sum = 0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        double d = (double)p[i] - t[i];
        sum += d * d;
    }
    sum = kl__cu_block_sum(sum);
    if (threadIdx.x == 0)
        out[0] = (float)(sum / (double)n);
}

/* d/dp = 2 (p - t) / count, and its negative for the target. */
static __global__ void mse_backward_kernel(float *dp, float *dt, const float *p, const float *t,
                                           const float *dout, int64_t n)
{
    float scale = 2.0f * dout[0] / (float)n;
    KL__CU_FOR (i, n) {
        float g = scale * (p[i] - t[i]);
        if (dp)
            dp[i] += g;
        if (dt)
            dt[i] -= g;
    }
}

static kl_status mse_forward(kl__ctx *c, kl_error *err)
{
    mse_forward_kernel<<<1, KL__CU_THREADS, 0, kl__cu_stream(c)>>>(
        kl_f32(c->out), kl_f32(c->in[0]), kl_f32(c->in[1]), kl_numel(c->in[0]));
    return kl__cu_launched("mse", err);
}

static void mse_backward(kl__ctx *c)
{
    int64_t n = kl_numel(c->in[0]);
    mse_backward_kernel<<<kl__cu_blocks(n), KL__CU_THREADS, 0, kl__cu_stream(c)>>>(
        c->din[0] ? kl_f32(c->din[0]) : NULL, c->din[1] ? kl_f32(c->din[1]) : NULL,
        kl_f32(c->in[0]), kl_f32(c->in[1]), kl_f32(c->dout), n);
}

extern "C" const kl__kernel kl__cuda_mse = {mse_forward, mse_backward, false};
