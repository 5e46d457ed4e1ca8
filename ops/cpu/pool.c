/* Pooling on NCHW tensors: max_pool2d, avg_pool2d and global_avg_pool, their op rows, builders
 * and CPU kernels. Every (sample, channel) plane is pooled on its own, window by window, with the
 * window clipped to the input instead of materialising the padding. */
#include <limits.h>
#include <math.h>

#include "ops/graph_impl.h"

/* max_pool2d keeps its argmax indices in the node's saved buffer, which the graph types as float:
 * they are stored as int32 in the same slots, exact for any plane of up to 2^31 elements where a
 * float is exact only up to 2^24. Only this file reads them. */
_Static_assert(sizeof(int32_t) == sizeof(float), "argmax indices must fit a saved float slot");

/* The sizes of one windowed pooling, read from the tensors a kernel sees (the current batch). */
typedef struct pool_geom {
    int64_t planes, h, w; /* x (N*C, H, W) */
    int64_t oh, ow;       /* y (N*C, OH, OW) */
    int k, stride, pad;
} pool_geom;

/* Shared by max and avg pooling. pad <= k/2 (PyTorch's rule) guarantees that every window,
 * clipped to the input, keeps at least one real element, so a max never comes from padding. */
static kl_status pool_shape(kl__node *n, const kl__node *const *in, kl_error *err)
{
    const char *op = kl__ops[n->op]->name;
    const kl__node *x = in[0];
    int k = n->attr.pool.k, stride = n->attr.pool.stride, pad = n->attr.pool.pad;
    char sx[96];
    kl_status st;
    if ((st = kl__expect_f32(op, x, err)) || (st = kl__expect_ndim(op, x, 4, 4, err)))
        return st;
    if (k < 1 || stride < 1 || pad < 0 || pad > k / 2)
        return kl_error_set(err, KL_EINVAL,
                            "%s: needs k >= 1, stride >= 1 and 0 <= pad <= k/2, got k %d, stride "
                            "%d, pad %d",
                            op, k, stride, pad);
    int64_t hp = x->shape.d[2] + 2 * (int64_t)pad, wp = x->shape.d[3] + 2 * (int64_t)pad;
    /* Checked before dividing: C division truncates toward zero, so (hp - k) / stride + 1 can be
     * 1 for a window that does not fit. */
    if (k > hp || k > wp)
        return kl_error_set(err, KL_ESHAPE,
                            "%s: the %dx%d window is larger than input %s padded by %d; use a "
                            "smaller k or a larger input",
                            op, k, k, kl_shape_str(&x->shape, sx, sizeof sx), pad);
    if (x->shape.d[2] * x->shape.d[3] > INT32_MAX)
        return kl_error_set(err, KL_EUNSUPPORTED,
                            "%s: input %s has planes over 2^31 elements, too large to index", op,
                            kl_shape_str(&x->shape, sx, sizeof sx));
    n->shape = KL_SHAPE(x->shape.d[0], x->shape.d[1], (hp - k) / stride + 1, (wp - k) / stride + 1);
    n->batched = x->batched;
    n->saved_n = n->op == KL__OP_MAX_POOL2D ? (size_t)kl_shape_numel(&n->shape) : 0;
    n->scratch_n = 0;
    return KL_OK;
}

static pool_geom pool_geom_of(const kl__ctx *c)
{
    const kl_shape *xs = &c->in[0]->shape, *ys = &c->out->shape;
    return (pool_geom){.planes = xs->d[0] * xs->d[1],
                       .h = xs->d[2],
                       .w = xs->d[3],
                       .oh = ys->d[2],
                       .ow = ys->d[3],
                       .k = c->attr->pool.k,
                       .stride = c->attr->pool.stride,
                       .pad = c->attr->pool.pad};
}

/* The window of output (oi, oj) clipped to the input: rows [*h0, *h1), columns [*w0, *w1). */
static void pool_window(const pool_geom *g, int64_t oi, int64_t oj, int64_t *h0, int64_t *h1,
                        int64_t *w0, int64_t *w1)
{
    int64_t hs = oi * g->stride - g->pad, ws = oj * g->stride - g->pad;
    *h0 = hs > 0 ? hs : 0;
    *w0 = ws > 0 ? ws : 0;
    *h1 = hs + g->k < g->h ? hs + g->k : g->h;
    *w1 = ws + g->k < g->w ? ws + g->k : g->w;
}

/* Padding counts as -inf, so only the clipped window is scanned. Ties go to the first maximum in
 * row-major order; a NaN wins over numbers (it propagates, as in PyTorch). */
/* Whether v replaces the running maximum bv: larger, or the first NaN (v != v is a NaN test: a
 * NaN wins once, as PyTorch's max pool propagates it). A select, not a branch: which element wins
 * is data, and a mispredicted branch per window cost more than the scan. */
static inline bool max_takes(float v, float bv)
{
    return (v > bv) | ((v != v) & (bv == bv));
}

/* A row of the 2x2, stride 2, unpadded windows of most CNNs, compared pairwise without branches
 * so that the compiler vectorises across windows (ties keep the first in row-major order, as the
 * general scan does). A NaN is only noted: false sends the row through the general scan, which
 * propagates it. i0 is the row's first input index in its (H, W) plane. */
static bool max_row2(const float *restrict r0, const float *restrict r1, int64_t ow, int32_t i0,
                     int32_t w, float *restrict y, int32_t *restrict arg)
{
    int32_t nan = 0;
    for (int64_t oj = 0; oj < ow; oj++) {
        float a = r0[2 * oj], b = r0[2 * oj + 1], c = r1[2 * oj], d = r1[2 * oj + 1];
        int32_t ia = i0 + 2 * (int32_t)oj;
        nan |= (a != a) | (b != b) | (c != c) | (d != d);
        float m01 = b > a ? b : a, m23 = d > c ? d : c;
        int32_t a01 = b > a ? ia + 1 : ia, a23 = d > c ? ia + w + 1 : ia + w;
        y[oj] = m23 > m01 ? m23 : m01;
        arg[oj] = m23 > m01 ? a23 : a01;
    }
    return nan == 0;
}

/* The pools run on the graph's pool (ops/par.h) over planes: each plane's outputs and gradients
 * are its own, so every split gives the same bits. Below POOL_PAR_MIN input floats they stay on
 * the calling thread. */
#define POOL_PAR_MIN 16384

static int64_t pool_par_min(const pool_geom *g)
{
    return POOL_PAR_MIN / (g->h * g->w) + 1;
}

static void max_pool_planes(void *arg_, int64_t lo, int64_t hi)
{
    const kl__ctx *c = arg_;
    pool_geom g = pool_geom_of(c);
    bool fast = g.k == 2 && g.stride == 2 && g.pad == 0;
    int64_t per = g.oh * g.ow;
    const float *x = kl_f32(c->in[0]);             /* (N*C, H, W) */
    float *y = kl_f32(c->out) + lo * per;          /* (N*C, OH, OW) */
    int32_t *arg = (int32_t *)c->saved + lo * per; /* (N*C, OH, OW): flat index into (H, W) */
    for (int64_t p = lo; p < hi; p++) {
        const float *xp = x + p * g.h * g.w;
        for (int64_t oi = 0; oi < g.oh; oi++) {
            int64_t i0 = 2 * oi * g.w;
            if (fast && max_row2(xp + i0, xp + i0 + g.w, g.ow, (int32_t)i0, (int32_t)g.w, y, arg)) {
                y += g.ow;
                arg += g.ow;
                continue;
            }
            for (int64_t oj = 0; oj < g.ow; oj++, y++, arg++) {
                int64_t h0, h1, w0, w1;
                pool_window(&g, oi, oj, &h0, &h1, &w0, &w1);
                int64_t best = h0 * g.w + w0;
                float bv = xp[best];
                for (int64_t ih = h0; ih < h1; ih++)
                    for (int64_t iw = w0; iw < w1; iw++) {
                        float v = xp[ih * g.w + iw];
                        bool take = max_takes(v, bv);
                        bv = take ? v : bv;
                        best = take ? ih * g.w + iw : best;
                    }
                *y = bv;
                *arg = (int32_t)best;
            }
        }
    }
}

static kl_status max_pool_forward(kl__ctx *c, kl_error *err)
{
    (void)err;
    pool_geom g = pool_geom_of(c);
    kl__par_for(c->par, g.planes, 1, pool_par_min(&g), max_pool_planes, c);
    return KL_OK;
}

/* Each output's gradient goes to the input element that was its maximum; overlapping windows
 * that share a maximum add up. */
static void max_pool_back_planes(void *arg_, int64_t lo, int64_t hi)
{
    kl__ctx *c = arg_;
    pool_geom g = pool_geom_of(c);
    const float *dy = kl_f32(c->dout);        /* (N*C, OH, OW) */
    const int32_t *arg = (int32_t *)c->saved; /* (N*C, OH, OW) */
    float *dx = kl_f32(c->din[0]);            /* (N*C, H, W) */
    int64_t per = g.oh * g.ow;
    for (int64_t p = lo; p < hi; p++) {
        float *dxp = dx + p * g.h * g.w;
        for (int64_t i = 0; i < per; i++)
            dxp[arg[p * per + i]] += dy[p * per + i];
    }
}

static void max_pool_backward(kl__ctx *c)
{
    pool_geom g = pool_geom_of(c);
    kl__par_for(c->par, g.planes, 1, pool_par_min(&g), max_pool_back_planes, c);
}

/* The divisor is always k*k, padding included (PyTorch's count_include_pad=True): with floor
 * output sizes no window reaches past the padding, so every window has k*k slots. */
static void avg_pool_planes(void *arg, int64_t lo, int64_t hi)
{
    const kl__ctx *c = arg;
    pool_geom g = pool_geom_of(c);
    const float *x = kl_f32(c->in[0]);            /* (N*C, H, W) */
    float *y = kl_f32(c->out) + lo * g.oh * g.ow; /* (N*C, OH, OW) */
    float inv = 1.0f / (float)(g.k * g.k);
    for (int64_t p = lo; p < hi; p++) {
        const float *xp = x + p * g.h * g.w;
        for (int64_t oi = 0; oi < g.oh; oi++)
            for (int64_t oj = 0; oj < g.ow; oj++, y++) {
                int64_t h0, h1, w0, w1;
                pool_window(&g, oi, oj, &h0, &h1, &w0, &w1);
                float s = 0.0f;
                for (int64_t ih = h0; ih < h1; ih++)
                    for (int64_t iw = w0; iw < w1; iw++)
                        s += xp[ih * g.w + iw];
                *y = s * inv;
            }
    }
}

static kl_status avg_pool_forward(kl__ctx *c, kl_error *err)
{
    (void)err;
    pool_geom g = pool_geom_of(c);
    kl__par_for(c->par, g.planes, 1, pool_par_min(&g), avg_pool_planes, c);
    return KL_OK;
}

static void avg_pool_back_planes(void *arg, int64_t lo, int64_t hi)
{
    const kl__ctx *c = arg;
    pool_geom g = pool_geom_of(c);
    const float *dy = kl_f32(c->dout) + lo * g.oh * g.ow; /* (N*C, OH, OW) */
    float *dx = kl_f32(c->din[0]);                        /* (N*C, H, W) */
    float inv = 1.0f / (float)(g.k * g.k);
    for (int64_t p = lo; p < hi; p++) {
        float *dxp = dx + p * g.h * g.w;
        for (int64_t oi = 0; oi < g.oh; oi++)
            for (int64_t oj = 0; oj < g.ow; oj++, dy++) {
                int64_t h0, h1, w0, w1;
                pool_window(&g, oi, oj, &h0, &h1, &w0, &w1);
                float d = *dy * inv;
                for (int64_t ih = h0; ih < h1; ih++)
                    for (int64_t iw = w0; iw < w1; iw++)
                        dxp[ih * g.w + iw] += d;
            }
    }
}

static void avg_pool_backward(kl__ctx *c)
{
    pool_geom g = pool_geom_of(c);
    kl__par_for(c->par, g.planes, 1, pool_par_min(&g), avg_pool_back_planes, c);
}

const kl__op_def kl__op_max_pool2d = {
    .name = "max_pool2d",
    .min_in = 1,
    .max_in = 1,
    .shape = pool_shape,
    .cpu = {.forward = max_pool_forward, .backward = max_pool_backward},
    .cuda = KL__CUDA_KERNELS(max_pool2d)};
const kl__op_def kl__op_avg_pool2d = {
    .name = "avg_pool2d",
    .min_in = 1,
    .max_in = 1,
    .shape = pool_shape,
    .cpu = {.forward = avg_pool_forward, .backward = avg_pool_backward},
    .cuda = KL__CUDA_KERNELS(avg_pool2d)};

/* Max over each k x k window, padding counting as -inf: x (N, C, H, W) ->
 * (N, C, OH, OW) with OH = (H + 2 pad - k) / stride + 1 (floor); needs pad <= k/2. The gradient
 * goes to the first maximum of each window. */
kl_node kl_max_pool2d(kl_graph *g, kl_node x, int k, int stride, int pad)
{
    kl__attr at = {.pool = {k, stride, pad}};
    return kl__graph_add(g, KL__OP_MAX_POOL2D, &x, 1, &at);
}

/* Mean over each k x k window, sizes as kl_max_pool2d. Padding counts as zeros in the mean: the
 * divisor is always k*k (PyTorch's default count_include_pad=True), so border outputs are pulled
 * toward zero. */
kl_node kl_avg_pool2d(kl_graph *g, kl_node x, int k, int stride, int pad)
{
    kl__attr at = {.pool = {k, stride, pad}};
    return kl__graph_add(g, KL__OP_AVG_POOL2D, &x, 1, &at);
}

/* global_avg_pool: (N, C, H, W) -> (N, C), the mean of each plane. */
static kl_status global_avg_pool_shape(kl__node *n, const kl__node *const *in, kl_error *err)
{
    const kl__node *x = in[0];
    kl_status st;
    if ((st = kl__expect_f32("global_avg_pool", x, err)) ||
        (st = kl__expect_ndim("global_avg_pool", x, 4, 4, err)))
        return st;
    n->shape = KL_SHAPE(x->shape.d[0], x->shape.d[1]);
    n->batched = x->batched;
    n->saved_n = n->scratch_n = 0;
    return KL_OK;
}

/* Sums in double: a plane can hold thousands of elements. */
static kl_status global_avg_pool_forward(kl__ctx *c, kl_error *err)
{
    const kl_shape *xs = &c->in[0]->shape;
    int64_t planes = xs->d[0] * xs->d[1], hw = xs->d[2] * xs->d[3];
    const float *x = kl_f32(c->in[0]); /* (N*C, H*W) */
    float *y = kl_f32(c->out);         /* (N*C) */
    for (int64_t p = 0; p < planes; p++) {
        double s = 0.0;
        for (int64_t i = 0; i < hw; i++)
            s += x[p * hw + i];
        y[p] = (float)(s / (double)hw);
    }
    return KL_OK;
}

static void global_avg_pool_backward(kl__ctx *c)
{
    const kl_shape *xs = &c->in[0]->shape;
    int64_t planes = xs->d[0] * xs->d[1], hw = xs->d[2] * xs->d[3];
    const float *dy = kl_f32(c->dout); /* (N*C) */
    float *dx = kl_f32(c->din[0]);     /* (N*C, H*W) */
    for (int64_t p = 0; p < planes; p++) {
        float d = dy[p] / (float)hw;
        for (int64_t i = 0; i < hw; i++)
            dx[p * hw + i] += d;
    }
}

const kl__op_def kl__op_global_avg_pool = {
    .name = "global_avg_pool",
    .min_in = 1,
    .max_in = 1,
    .shape = global_avg_pool_shape,
    .cpu = {.forward = global_avg_pool_forward, .backward = global_avg_pool_backward},
    .cuda = KL__CUDA_KERNELS(global_avg_pool)};

kl_node kl_global_avg_pool(kl_graph *g, kl_node x)
{
    return kl__graph_add(g, KL__OP_GLOBAL_AVG_POOL, &x, 1, NULL);
}
