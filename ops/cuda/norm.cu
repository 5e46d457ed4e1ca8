/* The CUDA kernels of batchnorm and layernorm (ops/cpu/norm.c). batchnorm runs a block per
 * channel and layernorm a block per row: each block reduces its statistics in double and a fixed
 * order, then writes its own outputs, so one launch does a pass and nothing is atomic. saved
 * holds what the CPU saves (mean, invstd and batchnorm's train flag), in device memory. */
#include "ops/cuda/cuda_impl.h"

/* x viewed as (N, C, S). */
static void bn_dims(const kl_tensor *x, int64_t *N, int64_t *C, int64_t *S)
{
    *N = x->shape.d[0];
    *C = x->shape.d[1];
    *S = kl_numel(x) / (*N * *C);
}

/* Element t of channel k, t over N*S. */
static __device__ inline int64_t bn_at(int64_t t, int64_t k, int64_t C, int64_t S)
{
    return ((t / S) * C + k) * S + t % S;
}

static __global__ void bn_forward_kernel(float *y, float *saved, float *rmean, float *rvar,
                                         const float *x, const float *gamma, const float *beta,
                                         int64_t N, int64_t C, int64_t S, bool train,
                                         float momentum, double eps)
{
    int64_t k = blockIdx.x, M = N * S;
    float *mean = saved, *invstd = saved + C;
    if (train) {
        double sum = 0, sq = 0;
        for (int64_t t = threadIdx.x; t < M; t += blockDim.x)
            sum += x[bn_at(t, k, C, S)];
        double m = kl__cu_block_sum(sum) / (double)M;
        for (int64_t t = threadIdx.x; t < M; t += blockDim.x) {
            double d = x[bn_at(t, k, C, S)] - m;
            sq += d * d;
        }
        double v = kl__cu_block_sum(sq) / (double)M;
        if (threadIdx.x == 0) {
            mean[k] = (float)m;
            invstd[k] = (float)(1.0 / sqrt(v + eps));
            rmean[k] = (float)((1.0 - momentum) * rmean[k] + (double)momentum * m);
            rvar[k] = (float)((1.0 - momentum) * rvar[k] +
                              (double)momentum * v * (double)M / (double)(M - 1));
        }
    } else if (threadIdx.x == 0) {
        mean[k] = rmean[k];
        invstd[k] = (float)(1.0 / sqrt((double)rvar[k] + eps));
    }
    if (k == 0 && threadIdx.x == 0)
        saved[2 * C] = train ? 1.0f : 0.0f;
    __syncthreads(); /* mean[k] and invstd[k] are visible to the block */
    float a = gamma[k] * invstd[k], b = beta[k] - a * mean[k];
    for (int64_t t = threadIdx.x; t < M; t += blockDim.x)
        y[bn_at(t, k, C, S)] = a * x[bn_at(t, k, C, S)] + b;
}

static __global__ void bn_backward_kernel(float *dx, float *dgamma, float *dbeta, const float *x,
                                          const float *gamma, const float *dy, const float *saved,
                                          int64_t N, int64_t C, int64_t S)
{
    int64_t k = blockIdx.x, Mi = N * S;
    double M = (double)Mi, mean = saved[k], invstd = saved[C + k];
    bool batch_stats = saved[2 * C] != 0.0f;
    double sdy = 0, sdyx = 0;
    for (int64_t t = threadIdx.x; t < Mi; t += blockDim.x) {
        int64_t i = bn_at(t, k, C, S);
        double xhat = ((double)x[i] - mean) * invstd;
        sdy += dy[i];
        sdyx += dy[i] * xhat;
    }
    sdy = kl__cu_block_sum(sdy);
    sdyx = kl__cu_block_sum(sdyx);
    if (threadIdx.x == 0) {
        if (dgamma)
            dgamma[k] += (float)sdyx;
        if (dbeta)
            dbeta[k] += (float)sdy;
    }
    if (!dx)
        return;
    double a = (double)gamma[k] * invstd;
    for (int64_t t = threadIdx.x; t < Mi; t += blockDim.x) {
        int64_t i = bn_at(t, k, C, S);
        if (!batch_stats) {
            dx[i] += (float)(a * dy[i]);
            continue;
        }
        double xhat = ((double)x[i] - mean) * invstd;
        dx[i] += (float)(a / M * (M * dy[i] - sdy - xhat * sdyx));
    }
}

static kl_status bn_forward(kl__ctx *c, kl_error *err)
{
    int64_t N, C, S;
    bn_dims(c->in[0], &N, &C, &S);
    char sx[96];
    if (c->train && N * S < 2)
        return kl_error_set(err, KL_ESHAPE,
                            "batchnorm: training needs more than one value per channel, got "
                            "input %s; use a batch of 2 or more, or eval mode",
                            kl_shape_str(&c->in[0]->shape, sx, sizeof sx));
    if (C > 0)
        bn_forward_kernel<<<(unsigned)C, KL__CU_THREADS, 0, kl__cu_stream(c)>>>(
            kl_f32(c->out), c->saved, (float *)kl_f32(c->in[3]), (float *)kl_f32(c->in[4]),
            kl_f32(c->in[0]), kl_f32(c->in[1]), kl_f32(c->in[2]), N, C, S, c->train,
            c->attr->norm.momentum, (double)c->attr->norm.eps);
    return kl__cu_launched("batchnorm", err);
}

static void bn_backward(kl__ctx *c)
{
    int64_t N, C, S;
    bn_dims(c->in[0], &N, &C, &S);
    if (C > 0)
        bn_backward_kernel<<<(unsigned)C, KL__CU_THREADS, 0, kl__cu_stream(c)>>>(
            c->din[0] ? kl_f32(c->din[0]) : NULL, c->din[1] ? kl_f32(c->din[1]) : NULL,
            c->din[2] ? kl_f32(c->din[2]) : NULL, kl_f32(c->in[0]), kl_f32(c->in[1]),
            kl_f32(c->dout), c->saved, N, C, S);
}

extern "C" const kl__kernel kl__cuda_batchnorm = {bn_forward, bn_backward, false};

/* layernorm: a block per row; saved holds mean (rows) then invstd (rows). */
static __global__ void ln_forward_kernel(float *y, float *saved, const float *x, const float *gamma,
                                         const float *beta, int64_t rows, int64_t D, double eps)
{
    int64_t r = blockIdx.x;
    const float *xr = x + r * D;
    double sum = 0, sq = 0;
    for (int64_t j = threadIdx.x; j < D; j += blockDim.x)
        sum += xr[j];
    double m = kl__cu_block_sum(sum) / (double)D;
    for (int64_t j = threadIdx.x; j < D; j += blockDim.x)
        sq += ((double)xr[j] - m) * ((double)xr[j] - m);
    double is = 1.0 / sqrt(kl__cu_block_sum(sq) / (double)D + eps);
    if (threadIdx.x == 0) {
        saved[r] = (float)m;
        saved[rows + r] = (float)is;
    }
    for (int64_t j = threadIdx.x; j < D; j += blockDim.x)
        y[r * D + j] = (float)(((double)xr[j] - m) * is) * gamma[j] + beta[j];
}

/* dx per row, with g = dy gamma: invstd / D (D g - sum(g) - xhat sum(g xhat)). */
static __global__ void ln_backward_dx_kernel(float *dx, const float *x, const float *gamma,
                                             const float *dy, const float *saved, int64_t rows,
                                             int64_t D)
{
    int64_t r = blockIdx.x;
    const float *xr = x + r * D, *dyr = dy + r * D;
    double m = saved[r], is = saved[rows + r], sg = 0, sgx = 0;
    for (int64_t j = threadIdx.x; j < D; j += blockDim.x) {
        double xhat = ((double)xr[j] - m) * is, g = (double)dyr[j] * gamma[j];
        sg += g;
        sgx += g * xhat;
    }
    sg = kl__cu_block_sum(sg);
    sgx = kl__cu_block_sum(sgx);
    for (int64_t j = threadIdx.x; j < D; j += blockDim.x) {
        double xhat = ((double)xr[j] - m) * is, g = (double)dyr[j] * gamma[j];
        dx[r * D + j] += (float)(is / (double)D * ((double)D * g - sg - xhat * sgx));
    }
}

/* dgamma and dbeta: a thread per column, rows in order, adding in float as the CPU does. */
static __global__ void ln_backward_params_kernel(float *dgamma, float *dbeta, const float *x,
                                                 const float *dy, const float *saved, int64_t rows,
                                                 int64_t D)
{
    KL__CU_FOR (j, D) {
        float dg = dgamma ? dgamma[j] : 0.0f, db = dbeta ? dbeta[j] : 0.0f;
        for (int64_t r = 0; r < rows; r++) {
            double xhat = ((double)x[r * D + j] - saved[r]) * saved[rows + r];
            dg += (float)(dy[r * D + j] * xhat);
            db += dy[r * D + j];
        }
        if (dgamma)
            dgamma[j] = dg;
        if (dbeta)
            dbeta[j] = db;
    }
}

static kl_status ln_forward(kl__ctx *c, kl_error *err)
{
    const kl_tensor *x = c->in[0];
    int64_t rows = kl__rows(x), D = x->shape.d[x->shape.ndim - 1];
    if (rows > 0)
        ln_forward_kernel<<<(unsigned)rows, KL__CU_THREADS, 0, kl__cu_stream(c)>>>(
            kl_f32(c->out), c->saved, kl_f32(x), kl_f32(c->in[1]), kl_f32(c->in[2]), rows, D,
            (double)c->attr->norm.eps);
    return kl__cu_launched("layernorm", err);
}

static void ln_backward(kl__ctx *c)
{
    const kl_tensor *x = c->in[0];
    int64_t rows = kl__rows(x), D = x->shape.d[x->shape.ndim - 1];
    cudaStream_t s = kl__cu_stream(c);
    if (c->din[0] && rows > 0)
        ln_backward_dx_kernel<<<(unsigned)rows, KL__CU_THREADS, 0, s>>>(
            kl_f32(c->din[0]), kl_f32(x), kl_f32(c->in[1]), kl_f32(c->dout), c->saved, rows, D);
    if (c->din[1] || c->din[2])
        ln_backward_params_kernel<<<kl__cu_blocks(D), KL__CU_THREADS, 0, s>>>(
            c->din[1] ? kl_f32(c->din[1]) : NULL, c->din[2] ? kl_f32(c->din[2]) : NULL, kl_f32(x),
            kl_f32(c->dout), c->saved, rows, D);
}

extern "C" const kl__kernel kl__cuda_layernorm = {ln_forward, ln_backward, false};
