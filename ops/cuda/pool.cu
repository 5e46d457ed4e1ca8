/* The CUDA kernels of max_pool2d, avg_pool2d and global_avg_pool (ops/cpu/pool.c): a thread per
 * output for forward; backward is a gather, a thread per input element summing the windows that
 * cover it in a fixed order, so overlapping windows need no atomics and the result is
 * deterministic. */
#include "ops/cuda/cuda_impl.h"

typedef struct pool_geom {
    int64_t planes, h, w, oh, ow;
    int k, stride, pad;
} pool_geom;

static pool_geom pool_geom_of(const kl__ctx *c)
{
    const kl_shape *xs = &c->in[0]->shape, *ys = &c->out->shape;
    pool_geom g = {
        xs->d[0] * xs->d[1],  xs->d[2],         xs->d[3], ys->d[2], ys->d[3], c->attr->pool.k,
        c->attr->pool.stride, c->attr->pool.pad};
    return g;
}

/* The window of output (oi, oj) clipped to the input: rows [*h0, *h1), columns [*w0, *w1). */
static __device__ inline void pool_window(const pool_geom &g, int64_t oi, int64_t oj, int64_t *h0,
                                          int64_t *h1, int64_t *w0, int64_t *w1)
{
    int64_t hs = oi * g.stride - g.pad, ws = oj * g.stride - g.pad;
    *h0 = hs > 0 ? hs : 0;
    *w0 = ws > 0 ? ws : 0;
    *h1 = hs + g.k < g.h ? hs + g.k : g.h;
    *w1 = ws + g.k < g.w ? ws + g.k : g.w;
}

/* The outputs whose window covers input row (or column) i: [*lo, *hi). */
static __device__ inline void covering(int64_t i, const pool_geom &g, int64_t n, int64_t *lo,
                                       int64_t *hi)
{
    int64_t a = i + g.pad - g.k + 1, b = i + g.pad; /* oi * stride in [a, b] */
    *lo = a <= 0 ? 0 : (a + g.stride - 1) / g.stride;
    *hi = b < 0 ? 0 : b / g.stride + 1;
    if (*hi > n)
        *hi = n;
}

/* The CPU's scan: the window clipped to the input, row-major, ties to the first maximum, a NaN
 * winning once. The argmax is an int32 in the saved float slot, as on the CPU. */
static __global__ void max_pool_kernel(float *y, int32_t *arg, const float *x, pool_geom g)
{
    KL__CU_FOR (t, g.planes * g.oh * g.ow) {
        int64_t oj = t % g.ow, oi = t / g.ow % g.oh, p = t / (g.ow * g.oh);
        const float *xp = x + p * g.h * g.w;
        int64_t h0, h1, w0, w1;
        pool_window(g, oi, oj, &h0, &h1, &w0, &w1);
        int64_t best = h0 * g.w + w0;
        float bv = xp[best];
        for (int64_t ih = h0; ih < h1; ih++)
            for (int64_t iw = w0; iw < w1; iw++) {
                float v = xp[ih * g.w + iw];
                if (v > bv || (v != v && bv == bv)) {
                    bv = v;
                    best = ih * g.w + iw;
                }
            }
        y[t] = bv;
        arg[t] = (int32_t)best;
    }
}

/* dx += what every output whose window covers the element sends it: max pooling's gradient when
 * the element was that output's argmax (arg), average pooling's share dy / (k*k) (arg NULL). */
static __global__ void pool_backward_kernel(float *dx, const float *dy, const int32_t *arg,
                                            pool_geom g)
{
    float inv = 1.0f / (float)(g.k * g.k);
    KL__CU_FOR (t, g.planes * g.h * g.w) {
        int64_t iw = t % g.w, ih = t / g.w % g.h, p = t / (g.w * g.h);
        int64_t i0, i1, j0, j1;
        covering(ih, g, g.oh, &i0, &i1);
        covering(iw, g, g.ow, &j0, &j1);
        float s = 0.0f;
        for (int64_t oi = i0; oi < i1; oi++)
            for (int64_t oj = j0; oj < j1; oj++) {
                int64_t o = (p * g.oh + oi) * g.ow + oj;
                if (!arg)
                    s += dy[o] * inv;
                else if (arg[o] == ih * g.w + iw)
                    s += dy[o];
            }
        dx[t] += s;
    }
}

/* The divisor is k*k, padding included, as on the CPU. */
static __global__ void avg_pool_kernel(float *y, const float *x, pool_geom g)
{
    float inv = 1.0f / (float)(g.k * g.k);
    KL__CU_FOR (t, g.planes * g.oh * g.ow) {
        int64_t oj = t % g.ow, oi = t / g.ow % g.oh, p = t / (g.ow * g.oh);
        const float *xp = x + p * g.h * g.w;
        int64_t h0, h1, w0, w1;
        pool_window(g, oi, oj, &h0, &h1, &w0, &w1);
        float s = 0.0f;
        for (int64_t ih = h0; ih < h1; ih++)
            for (int64_t iw = w0; iw < w1; iw++)
                s += xp[ih * g.w + iw];
        y[t] = s * inv;
    }
}

static kl_status max_pool_forward(kl__ctx *c, kl_error *err)
{
    pool_geom g = pool_geom_of(c);
    max_pool_kernel<<<kl__cu_blocks(kl_numel(c->out)), KL__CU_THREADS, 0, kl__cu_stream(c)>>>(
        kl_f32(c->out), (int32_t *)c->saved, kl_f32(c->in[0]), g);
    return kl__cu_launched("max_pool2d", err);
}

static void max_pool_backward(kl__ctx *c)
{
    pool_geom g = pool_geom_of(c);
    pool_backward_kernel<<<kl__cu_blocks(kl_numel(c->in[0])), KL__CU_THREADS, 0,
                           kl__cu_stream(c)>>>(kl_f32(c->din[0]), kl_f32(c->dout),
                                               (const int32_t *)c->saved, g);
}

static kl_status avg_pool_forward(kl__ctx *c, kl_error *err)
{
    pool_geom g = pool_geom_of(c);
    avg_pool_kernel<<<kl__cu_blocks(kl_numel(c->out)), KL__CU_THREADS, 0, kl__cu_stream(c)>>>(
        kl_f32(c->out), kl_f32(c->in[0]), g);
    return kl__cu_launched("avg_pool2d", err);
}

static void avg_pool_backward(kl__ctx *c)
{
    pool_geom g = pool_geom_of(c);
    pool_backward_kernel<<<kl__cu_blocks(kl_numel(c->in[0])), KL__CU_THREADS, 0,
                           kl__cu_stream(c)>>>(kl_f32(c->din[0]), kl_f32(c->dout), NULL, g);
}

extern "C" const kl__kernel kl__cuda_max_pool2d = {max_pool_forward, max_pool_backward, false};
extern "C" const kl__kernel kl__cuda_avg_pool2d = {avg_pool_forward, avg_pool_backward, false};

/* A block per plane, summed in double. */
static __global__ void global_avg_pool_kernel(float *y, const float *x, int64_t hw)
{
    const float *xp = x + blockIdx.x * hw;
    double s = 0;
    for (int64_t i = threadIdx.x; i < hw; i += blockDim.x)
        s += xp[i];
    s = kl__cu_block_sum(s);
    if (threadIdx.x == 0)
        y[blockIdx.x] = (float)(s / (double)hw);
}

static __global__ void global_avg_pool_backward_kernel(float *dx, const float *dy, int64_t planes,
                                                       int64_t hw)
{
    KL__CU_FOR (t, planes * hw)
        dx[t] += dy[t / hw] / (float)hw;
}

static kl_status global_avg_pool_forward(kl__ctx *c, kl_error *err)
{
    const kl_shape *xs = &c->in[0]->shape;
    int64_t planes = xs->d[0] * xs->d[1], hw = xs->d[2] * xs->d[3];
    if (planes > 0)
        global_avg_pool_kernel<<<(unsigned)planes, KL__CU_THREADS, 0, kl__cu_stream(c)>>>(
            kl_f32(c->out), kl_f32(c->in[0]), hw);
    return kl__cu_launched("global_avg_pool", err);
}

static void global_avg_pool_backward(kl__ctx *c)
{
    const kl_shape *xs = &c->in[0]->shape;
    int64_t planes = xs->d[0] * xs->d[1], hw = xs->d[2] * xs->d[3];
    global_avg_pool_backward_kernel<<<kl__cu_blocks(planes * hw), KL__CU_THREADS, 0,
                                      kl__cu_stream(c)>>>(kl_f32(c->din[0]), kl_f32(c->dout),
                                                          planes, hw);
}

extern "C" const kl__kernel kl__cuda_global_avg_pool = {global_avg_pool_forward,
                                                        global_avg_pool_backward, false};
