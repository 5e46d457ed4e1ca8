/* The optimizer updates and global-norm clipping of ops/optim.c on flat device buffers, behind
 * kl__cuda_optim_step and kl__cuda_clip_grad_norm (ops/cuda/cuda.h). The per-element formulas are
 * the CPU's; the clip's sum of squares is a two-stage reduction in double with a fixed grid, so
 * it gives the same bits every run, and the norm stays on the device. */
#include "ops/cuda/cuda_impl.h"

extern "C" {
#include "ops/cuda/cuda.h"
}

typedef struct optim_coef {
    float lr, wd, mom, keep; /* SGD */
    bool nesterov, first;
    float b1, a1, b2, a2, eps, step_size, inv_sqrt_bc2; /* Adam(W) */
    float pscale, l2;
} optim_coef;

static __global__ void sgd_kernel(float *p, const float *g, float *buf, size_t n, optim_coef k)
{
    KL__CU_FOR (i, n) {
        if (!buf) {
            p[i] -= k.lr * (g[i] + k.wd * p[i]);
            continue;
        }
        float gi = g[i] + k.wd * p[i];
        float b = k.first ? gi : k.mom * buf[i] + k.keep * gi;
        buf[i] = b;
        p[i] -= k.nesterov ? k.lr * (gi + k.mom * b) : k.lr * b;
    }
}

static __global__ void adam_kernel(float *p, const float *g, float *m, float *v, size_t n,
                                   optim_coef k)
{
    KL__CU_FOR (i, n) {
        float pi = p[i] * k.pscale;
        float gi = g[i] + k.l2 * pi;
        float mi = k.b1 * m[i] + k.a1 * gi;
        float vi = k.b2 * v[i] + k.a2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = pi - k.step_size * mi / (sqrtf(vi) * k.inv_sqrt_bc2 + k.eps);
    }
}

/* One range with or without decay, as the CPU's step_range. */
static void step_range(const kl_optim_config *c, optim_coef k, float *params, const float *grads,
                       float *state, size_t n, size_t off, size_t count, bool decay, cudaStream_t s)
{
    if (count == 0)
        return;
    float wd = decay ? c->weight_decay : 0.0f;
    unsigned blocks = kl__cu_blocks((int64_t)count);
    if (c->kind == KL_OPTIM_SGD) {
        k.wd = wd;
        sgd_kernel<<<blocks, KL__CU_THREADS, 0, s>>>(params + off, grads + off,
                                                     state ? state + off : NULL, count, k);
        return;
    }
    k.pscale = c->kind == KL_OPTIM_ADAMW ? 1.0f - k.lr * wd : 1.0f;
    k.l2 = c->kind == KL_OPTIM_ADAM ? wd : 0.0f;
    adam_kernel<<<blocks, KL__CU_THREADS, 0, s>>>(params + off, grads + off, state + off,
                                                  state + n + off, count, k);
}

extern "C" int kl__cuda_optim_step(const kl_optim_config *cfg, int64_t steps, float *params,
                                   const float *grads, float *state, size_t n, float lr,
                                   const kl_optim_segment *segs, int nsegs, void *stream)
{
    cudaStream_t s = (cudaStream_t)stream;
    optim_coef k = {};
    k.lr = lr;
    k.mom = cfg->momentum;
    k.keep = 1.0f - cfg->dampening;
    k.nesterov = cfg->nesterov;
    k.first = steps == 0;
    if (cfg->kind != KL_OPTIM_SGD) {
        /* As adam_coefficients in ops/optim.c: the bias corrections in double, on the host. */
        double t = (double)(steps + 1);
        double bc1 = 1.0 - pow((double)cfg->beta1, t), bc2 = 1.0 - pow((double)cfg->beta2, t);
        k.b1 = cfg->beta1;
        k.a1 = 1.0f - cfg->beta1;
        k.b2 = cfg->beta2;
        k.a2 = 1.0f - cfg->beta2;
        k.eps = cfg->eps;
        k.step_size = (float)((double)lr / bc1);
        k.inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2));
    }
    if (cfg->kind == KL_OPTIM_SGD && cfg->momentum == 0.0f)
        state = NULL;
    if (!segs) {
        step_range(cfg, k, params, grads, state, n, 0, n, true, s);
    } else {
        size_t pos = 0;
        for (int i = 0; i < nsegs; i++) {
            size_t off = segs[i].offset, count = segs[i].count;
            if (off < pos || off > n || count > n - off)
                return -1;
            step_range(cfg, k, params, grads, state, n, pos, off - pos, false, s);
            step_range(cfg, k, params, grads, state, n, off, count, segs[i].decay, s);
            pos = off + count;
        }
        step_range(cfg, k, params, grads, state, n, pos, n - pos, false, s);
    }
    return cudaGetLastError() == cudaSuccess ? 0 : -1;
}

/* Stage one: block b sums the squares of its grid-stride share into part[b]; stage two: one block
 * adds the parts in order and writes the norm. Both in double, as the CPU. */
static __global__ void sumsq_kernel(double *part, const float *g, size_t n)
{
    double s = 0;
    KL__CU_FOR (i, n)
        s += (double)g[i] * (double)g[i];
    s = kl__cu_block_sum(s);
    if (threadIdx.x == 0)
        part[blockIdx.x] = s;
}

static __global__ void norm_kernel(float *norm, double *total, const double *part, int nparts)
{
    double s = 0;
    for (int i = threadIdx.x; i < nparts; i += blockDim.x)
        s += part[i];
    s = kl__cu_block_sum(s);
    if (threadIdx.x == 0) {
        *total = sqrt(s);
        *norm = (float)*total;
    }
}

/* The scale reads the norm on the device: clipping needs no round trip to the host. */
static __global__ void clip_kernel(float *g, size_t n, const double *norm, float max_norm)
{
    double nv = *norm;
    if (!(nv > (double)max_norm))
        return;
    float scale = (float)((double)max_norm / (nv + 1e-6));
    KL__CU_FOR (i, n)
        g[i] *= scale;
}

extern "C" int kl__cuda_clip_grad_norm(float *grads, size_t n, float max_norm, float *norm,
                                       double *work, void *stream)
{
    cudaStream_t s = (cudaStream_t)stream;
    sumsq_kernel<<<KL__CUDA_CLIP_BLOCKS, KL__CU_THREADS, 0, s>>>(work, grads, n);
    norm_kernel<<<1, KL__CU_THREADS, 0, s>>>(norm, work + KL__CUDA_CLIP_BLOCKS, work,
                                             KL__CUDA_CLIP_BLOCKS);
    clip_kernel<<<kl__cu_blocks((int64_t)n), KL__CU_THREADS, 0, s>>>(
        grads, n, work + KL__CUDA_CLIP_BLOCKS, max_norm);
    return cudaGetLastError() == cudaSuccess ? 0 : -1;
}
