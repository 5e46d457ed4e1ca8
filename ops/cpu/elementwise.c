/* Elementwise ops and reductions that touch each element once: add (and residual), mul, scale,
 * the activations (relu, leaky_relu, gelu, tanh, sigmoid), softmax over the last axis, dropout
 * and sum; and sub, div, clip and log_softmax, which the ONNX importer maps onto. Loops are plain
 * and contiguous so the compiler vectorises them. */
#include <math.h>

#include "kiln/rng.h"
#include "ops/graph_impl.h"

static kl_status same_shape(kl__node *n, const kl__node *const *in, kl_error *err)
{
    const char *op = kl__ops[n->op]->name;
    kl_status st;
    for (int i = 0; i < n->nin; i++)
        if ((st = kl__expect_f32(op, in[i], err)))
            return st;
    if (n->nin == 2 && (st = kl__expect_same(op, in[0], in[1], err)))
        return st;
    n->shape = in[0]->shape;
    n->batched = in[0]->batched;
    return KL_OK;
}

static kl_status add_forward(kl__ctx *c, kl_error *err)
{
    const float *a = kl_f32(c->in[0]), *b = kl_f32(c->in[1]);
    float *y = kl_f32(c->out);
    for (int64_t i = 0, end = kl_numel(c->out); i < end; i++)
        y[i] = a[i] + b[i];
    return KL_OK;
}

static void add_backward(kl__ctx *c)
{
    const float *dy = kl_f32(c->dout);
    for (int k = 0; k < 2; k++) {
        if (!c->din[k])
            continue;
        float *dx = kl_f32(c->din[k]);
        const bool fresh = c->din_fresh[k];
        for (int64_t i = 0, end = kl_numel(c->dout); i < end; i++)
            dx[i] = (fresh ? 0.0f : dx[i]) + dy[i];
    }
}

static kl_status mul_forward(kl__ctx *c, kl_error *err)
{
    const float *a = kl_f32(c->in[0]), *b = kl_f32(c->in[1]);
    float *y = kl_f32(c->out);
    for (int64_t i = 0, end = kl_numel(c->out); i < end; i++)
        y[i] = a[i] * b[i];
    return KL_OK;
}

static void mul_backward(kl__ctx *c)
{
    const float *dy = kl_f32(c->dout);
    for (int k = 0; k < 2; k++) {
        if (!c->din[k])
            continue;
        float *dx = kl_f32(c->din[k]);
        const bool fresh = c->din_fresh[k];
        const float *other = kl_f32(c->in[1 - k]);
        for (int64_t i = 0, end = kl_numel(c->dout); i < end; i++)
            dx[i] = (fresh ? 0.0f : dx[i]) + (dy[i] * other[i]);
    }
}

static kl_status scale_forward(kl__ctx *c, kl_error *err)
{
    const float *x = kl_f32(c->in[0]);
    float *y = kl_f32(c->out), a = c->attr->scale.alpha;
    for (int64_t i = 0, end = kl_numel(c->out); i < end; i++)
        y[i] = a * x[i];
    return KL_OK;
}

static void scale_backward(kl__ctx *c)
{
    const float *dy = kl_f32(c->dout);
    float *dx = kl_f32(c->din[0]), a = c->attr->scale.alpha;
    const bool fresh = c->din_fresh[0];
    for (int64_t i = 0, end = kl_numel(c->dout); i < end; i++)
        dx[i] = (fresh ? 0.0f : dx[i]) + (a * dy[i]);
}

/* Activations. Backward kernels read x or y, whichever gives the derivative most cheaply. */

/* ReLU runs on the graph's pool (ops/par.h) in ranges of whole cache lines; elementwise, so
 * every split gives the same bits. */
#define ELEM_GRAIN   1024
#define ELEM_PAR_MIN 32768

static void relu_range(void *arg, int64_t lo, int64_t hi)
{
    const kl__ctx *c = arg;
    const float *x = kl_f32(c->in[0]);
    float *y = kl_f32(c->out);
    for (int64_t i = lo; i < hi; i++)
        y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

static kl_status relu_forward(kl__ctx *c, kl_error *err)
{
    (void)err;
    kl__par_for(c->par, kl_numel(c->out), ELEM_GRAIN, ELEM_PAR_MIN, relu_range, c);
    return KL_OK;
}

/* dy is loaded whatever the sign of x so that the select vectorises (a conditional load would
 * be a data-dependent branch); dx and dy never share storage (the plan keeps both alive here). */
static void relu_back_range(void *arg, int64_t lo, int64_t hi)
{
    const kl__ctx *c = arg;
    const float *restrict x = kl_f32(c->in[0]), *restrict dy = kl_f32(c->dout);
    float *restrict dx = kl_f32(c->din[0]);
    if (c->din_fresh[0]) {
        for (int64_t i = lo; i < hi; i++) {
            float g = dy[i];
            dx[i] = x[i] > 0.0f ? g : 0.0f;
        }
    } else {
        for (int64_t i = lo; i < hi; i++) {
            float g = dy[i];
            dx[i] += x[i] > 0.0f ? g : 0.0f;
        }
    }
}

static void relu_backward(kl__ctx *c)
{
    kl__par_for(c->par, kl_numel(c->dout), ELEM_GRAIN, ELEM_PAR_MIN, relu_back_range, c);
}

static kl_status leaky_relu_forward(kl__ctx *c, kl_error *err)
{
    const float *x = kl_f32(c->in[0]);
    float *y = kl_f32(c->out), a = c->attr->scale.alpha;
    for (int64_t i = 0, end = kl_numel(c->out); i < end; i++)
        y[i] = x[i] > 0.0f ? x[i] : a * x[i];
    return KL_OK;
}

static void leaky_relu_backward(kl__ctx *c)
{
    const float *x = kl_f32(c->in[0]), *dy = kl_f32(c->dout);
    float *dx = kl_f32(c->din[0]), a = c->attr->scale.alpha;
    const bool fresh = c->din_fresh[0];
    for (int64_t i = 0, end = kl_numel(c->dout); i < end; i++)
        dx[i] = (fresh ? 0.0f : dx[i]) + (x[i] > 0.0f ? dy[i] : a * dy[i]);
}

/* GELU, exact form as PyTorch's default: x * Phi(x), Phi the standard normal CDF. */
static kl_status gelu_forward(kl__ctx *c, kl_error *err)
{
    const float *x = kl_f32(c->in[0]);
    float *y = kl_f32(c->out);
    for (int64_t i = 0, end = kl_numel(c->out); i < end; i++)
        y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
    return KL_OK;
}

static void gelu_backward(kl__ctx *c)
{
    const float *x = kl_f32(c->in[0]), *dy = kl_f32(c->dout);
    float *dx = kl_f32(c->din[0]);
    const bool fresh = c->din_fresh[0];
    const float inv_sqrt_2pi = 0.3989422804014327f;
    for (int64_t i = 0, end = kl_numel(c->dout); i < end; i++) {
        float cdf = 0.5f * (1.0f + erff(x[i] * 0.70710678118654752f));
        float pdf = inv_sqrt_2pi * expf(-0.5f * x[i] * x[i]);
        dx[i] = (fresh ? 0.0f : dx[i]) + (dy[i] * (cdf + x[i] * pdf));
    }
}

static kl_status tanh_forward(kl__ctx *c, kl_error *err)
{
    const float *x = kl_f32(c->in[0]);
    float *y = kl_f32(c->out);
    for (int64_t i = 0, end = kl_numel(c->out); i < end; i++)
        y[i] = tanhf(x[i]);
    return KL_OK;
}

static void tanh_backward(kl__ctx *c)
{
    const float *y = kl_f32(c->out), *dy = kl_f32(c->dout);
    float *dx = kl_f32(c->din[0]);
    const bool fresh = c->din_fresh[0];
    for (int64_t i = 0, end = kl_numel(c->dout); i < end; i++)
        dx[i] = (fresh ? 0.0f : dx[i]) + (dy[i] * (1.0f - y[i] * y[i]));
}

static kl_status sigmoid_forward(kl__ctx *c, kl_error *err)
{
    const float *x = kl_f32(c->in[0]);
    float *y = kl_f32(c->out);
    for (int64_t i = 0, end = kl_numel(c->out); i < end; i++)
        y[i] = 1.0f / (1.0f + expf(-x[i]));
    return KL_OK;
}

static void sigmoid_backward(kl__ctx *c)
{
    const float *y = kl_f32(c->out), *dy = kl_f32(c->dout);
    float *dx = kl_f32(c->din[0]);
    const bool fresh = c->din_fresh[0];
    for (int64_t i = 0, end = kl_numel(c->dout); i < end; i++)
        dx[i] = (fresh ? 0.0f : dx[i]) + (dy[i] * y[i] * (1.0f - y[i]));
}

/* Softmax over the last axis, shifted by the row maximum so exp never overflows. */
static kl_status softmax_forward(kl__ctx *c, kl_error *err)
{
    const kl_tensor *xt = c->in[0];
    int64_t cols = xt->shape.d[xt->shape.ndim - 1], rows = kl__rows(xt);
    for (int64_t r = 0; r < rows; r++) {
        const float *x = kl_f32(xt) + r * cols;
        float *y = kl_f32(c->out) + r * cols, mx = x[0];
        for (int64_t j = 1; j < cols; j++)
            mx = x[j] > mx ? x[j] : mx;
        double s = 0;
        for (int64_t j = 0; j < cols; j++)
            s += y[j] = expf(x[j] - mx);
        float inv = (float)(1.0 / s);
        for (int64_t j = 0; j < cols; j++)
            y[j] *= inv;
    }
    return KL_OK;
}

/* dx = y * (dy - sum(dy * y)) per row. */
static void softmax_backward(kl__ctx *c)
{
    const kl_tensor *yt = c->out;
    int64_t cols = yt->shape.d[yt->shape.ndim - 1], rows = kl__rows(yt);
    for (int64_t r = 0; r < rows; r++) {
        const float *y = kl_f32(yt) + r * cols, *dy = kl_f32(c->dout) + r * cols;
        float *dx = kl_f32(c->din[0]) + r * cols;
        const bool fresh = c->din_fresh[0];
        double dot = 0;
        for (int64_t j = 0; j < cols; j++)
            dot += (double)dy[j] * y[j];
        for (int64_t j = 0; j < cols; j++)
            dx[j] = (fresh ? 0.0f : dx[j]) + (y[j] * (dy[j] - (float)dot));
    }
}

/* Ops the ONNX importer maps onto (runtime/onnx/): sub and div of equal shapes, clip to [lo, hi]
 * and log_softmax over the last axis. */

static kl_status sub_forward(kl__ctx *c, kl_error *err)
{
    const float *a = kl_f32(c->in[0]), *b = kl_f32(c->in[1]);
    float *y = kl_f32(c->out);
    for (int64_t i = 0, end = kl_numel(c->out); i < end; i++)
        y[i] = a[i] - b[i];
    return KL_OK;
}

static void sub_backward(kl__ctx *c)
{
    const float *dy = kl_f32(c->dout);
    for (int k = 0; k < 2; k++) {
        if (!c->din[k])
            continue;
        float *dx = kl_f32(c->din[k]), sign = k == 0 ? 1.0f : -1.0f;
        const bool fresh = c->din_fresh[k];
        for (int64_t i = 0, end = kl_numel(c->dout); i < end; i++)
            dx[i] = (fresh ? 0.0f : dx[i]) + sign * dy[i];
    }
}

static kl_status div_forward(kl__ctx *c, kl_error *err)
{
    const float *a = kl_f32(c->in[0]), *b = kl_f32(c->in[1]);
    float *y = kl_f32(c->out);
    for (int64_t i = 0, end = kl_numel(c->out); i < end; i++)
        y[i] = a[i] / b[i];
    return KL_OK;
}

/* y = a / b: da = dy / b, db = -dy a / b^2 = -dy y / b. */
static void div_backward(kl__ctx *c)
{
    const float *dy = kl_f32(c->dout), *b = kl_f32(c->in[1]), *y = kl_f32(c->out);
    for (int k = 0; k < 2; k++) {
        if (!c->din[k])
            continue;
        float *dx = kl_f32(c->din[k]);
        const bool fresh = c->din_fresh[k];
        for (int64_t i = 0, end = kl_numel(c->dout); i < end; i++) {
            float g = k == 0 ? dy[i] / b[i] : -dy[i] * y[i] / b[i];
            dx[i] = (fresh ? 0.0f : dx[i]) + g;
        }
    }
}

static kl_status clip_shape(kl__node *n, const kl__node *const *in, kl_error *err)
{
    float lo = n->attr.clip.lo, hi = n->attr.clip.hi;
    if (isnan(lo) || isnan(hi) || lo > hi)
        return kl_error_set(err, KL_EINVAL, "clip: needs lo <= hi, got lo %g and hi %g", (double)lo,
                            (double)hi);
    return same_shape(n, in, err);
}

/* A NaN stays NaN, as in ONNX's Clip and PyTorch's clamp. */
static kl_status clip_forward(kl__ctx *c, kl_error *err)
{
    const float *x = kl_f32(c->in[0]);
    float *y = kl_f32(c->out), lo = c->attr->clip.lo, hi = c->attr->clip.hi;
    for (int64_t i = 0, end = kl_numel(c->out); i < end; i++)
        y[i] = x[i] < lo ? lo : x[i] > hi ? hi : x[i];
    return KL_OK;
}

/* The gradient passes where lo <= x <= hi (PyTorch's clamp). */
static void clip_backward(kl__ctx *c)
{
    const float *x = kl_f32(c->in[0]), *dy = kl_f32(c->dout);
    float *dx = kl_f32(c->din[0]), lo = c->attr->clip.lo, hi = c->attr->clip.hi;
    const bool fresh = c->din_fresh[0];
    for (int64_t i = 0, end = kl_numel(c->dout); i < end; i++)
        dx[i] = (fresh ? 0.0f : dx[i]) + (x[i] >= lo && x[i] <= hi ? dy[i] : 0.0f);
}

/* log_softmax over the last axis: (x - max) - log(sum(exp(x - max))), the sum in double; x - max
 * first, since max + log(sum) would round at the scale of max. */
static kl_status log_softmax_forward(kl__ctx *c, kl_error *err)
{
    const kl_tensor *xt = c->in[0];
    int64_t cols = xt->shape.d[xt->shape.ndim - 1], rows = kl__rows(xt);
    for (int64_t r = 0; r < rows; r++) {
        const float *x = kl_f32(xt) + r * cols;
        float *y = kl_f32(c->out) + r * cols, mx = x[0];
        for (int64_t j = 1; j < cols; j++)
            mx = x[j] > mx ? x[j] : mx;
        double s = 0;
        for (int64_t j = 0; j < cols; j++)
            s += exp((double)x[j] - mx);
        float lse = (float)log(s);
        for (int64_t j = 0; j < cols; j++)
            y[j] = (x[j] - mx) - lse;
    }
    return KL_OK;
}

/* dx = dy - exp(y) * sum(dy) per row. */
static void log_softmax_backward(kl__ctx *c)
{
    const kl_tensor *yt = c->out;
    int64_t cols = yt->shape.d[yt->shape.ndim - 1], rows = kl__rows(yt);
    const bool fresh = c->din_fresh[0];
    for (int64_t r = 0; r < rows; r++) {
        const float *y = kl_f32(yt) + r * cols, *dy = kl_f32(c->dout) + r * cols;
        float *dx = kl_f32(c->din[0]) + r * cols;
        double s = 0;
        for (int64_t j = 0; j < cols; j++)
            s += dy[j];
        for (int64_t j = 0; j < cols; j++)
            dx[j] = (fresh ? 0.0f : dx[j]) + (dy[j] - expf(y[j]) * (float)s);
    }
}

/* Dropout (inverted): in training an element is kept with probability 1-p and scaled by 1/(1-p).
 * The mask is a pure function of (seed, step, node, element), so backward redraws it instead of
 * storing it. */
static kl_status dropout_shape(kl__node *n, const kl__node *const *in, kl_error *err)
{
    float p = n->attr.dropout.p;
    if (!(p >= 0.0f && p < 1.0f))
        return kl_error_set(err, KL_EINVAL, "dropout: p = %g is outside [0, 1)", (double)p);
    return same_shape(n, in, err);
}

/* The draw for element i is keyed by its sample's row in the global batch (first_row + its row
 * here), so a batch cut into rank slices or micro-batches gets the masks the whole batch gets. */
static inline bool dropout_keep(const kl__ctx *c, int64_t i)
{
    uint64_t stream = (c->step << 24) | (c->node & 0xFFFFFFu);
    int64_t row = kl_numel(c->out) / c->out->shape.d[0];
    return kl_rng_uniform(c->seed, KL_RNG_DROPOUT, stream, (uint64_t)(c->first_row * row + i)) >=
           c->attr->dropout.p;
}

static kl_status dropout_forward(kl__ctx *c, kl_error *err)
{
    const float *x = kl_f32(c->in[0]);
    float *y = kl_f32(c->out), p = c->attr->dropout.p, keep = 1.0f / (1.0f - p);
    for (int64_t i = 0, end = kl_numel(c->out); i < end; i++)
        y[i] = !c->train || p == 0.0f ? x[i] : (dropout_keep(c, i) ? x[i] * keep : 0.0f);
    return KL_OK;
}

static void dropout_backward(kl__ctx *c)
{
    const float *dy = kl_f32(c->dout);
    float *dx = kl_f32(c->din[0]), p = c->attr->dropout.p, keep = 1.0f / (1.0f - p);
    const bool fresh = c->din_fresh[0];
    for (int64_t i = 0, end = kl_numel(c->dout); i < end; i++)
        dx[i] = (fresh ? 0.0f : dx[i]) +
                (!c->train || p == 0.0f ? dy[i] : (dropout_keep(c, i) ? dy[i] * keep : 0.0f));
}

/* sum: every element into a scalar (1), accumulated in double. */
static kl_status sum_shape(kl__node *n, const kl__node *const *in, kl_error *err)
{
    kl_status st = kl__expect_f32("sum", in[0], err);
    n->shape = KL_SHAPE(1);
    n->batched = false;
    return st;
}

static kl_status sum_forward(kl__ctx *c, kl_error *err)
{
    const float *x = kl_f32(c->in[0]);
    int64_t n = kl_numel(c->in[0]), i = 0;
    /* Four partial sums break the add-latency chain; the order is fixed, so results are too. */
    double s[4] = {0, 0, 0, 0};
    for (; i + 4 <= n; i += 4)
        for (int k = 0; k < 4; k++)
            s[k] += x[i + k];
    for (; i < n; i++)
        s[0] += x[i];
    kl_f32(c->out)[0] = (float)((s[0] + s[1]) + (s[2] + s[3]));
    return KL_OK;
}

static void sum_backward(kl__ctx *c)
{
    float *dx = kl_f32(c->din[0]), d = kl_f32(c->dout)[0];
    const bool fresh = c->din_fresh[0];
    for (int64_t i = 0, end = kl_numel(c->in[0]); i < end; i++)
        dx[i] = (fresh ? 0.0f : dx[i]) + d;
}

const kl__op_def kl__op_add = {
    .name = "add",
    .min_in = 2,
    .max_in = 2,
    .shape = same_shape,
    .cpu = {.forward = add_forward, .backward = add_backward, .fresh_grads = true},
    .cuda = KL__CUDA_KERNELS(add)};
const kl__op_def kl__op_mul = {
    .name = "mul",
    .min_in = 2,
    .max_in = 2,
    .shape = same_shape,
    .cpu = {.forward = mul_forward, .backward = mul_backward, .fresh_grads = true},
    .cuda = KL__CUDA_KERNELS(mul)};
const kl__op_def kl__op_scale = {
    .name = "scale",
    .min_in = 1,
    .max_in = 1,
    .shape = same_shape,
    .cpu = {.forward = scale_forward, .backward = scale_backward, .fresh_grads = true},
    .cuda = KL__CUDA_KERNELS(scale)};
const kl__op_def kl__op_relu = {
    .name = "relu",
    .min_in = 1,
    .max_in = 1,
    .shape = same_shape,
    .cpu = {.forward = relu_forward, .backward = relu_backward, .fresh_grads = true},
    .cuda = KL__CUDA_KERNELS(relu)};
const kl__op_def kl__op_leaky_relu = {
    .name = "leaky_relu",
    .min_in = 1,
    .max_in = 1,
    .shape = same_shape,
    .cpu = {.forward = leaky_relu_forward, .backward = leaky_relu_backward, .fresh_grads = true},
    .cuda = KL__CUDA_KERNELS(leaky_relu)};
const kl__op_def kl__op_gelu = {
    .name = "gelu",
    .min_in = 1,
    .max_in = 1,
    .shape = same_shape,
    .cpu = {.forward = gelu_forward, .backward = gelu_backward, .fresh_grads = true},
    .cuda = KL__CUDA_KERNELS(gelu)};
const kl__op_def kl__op_tanh = {
    .name = "tanh",
    .min_in = 1,
    .max_in = 1,
    .shape = same_shape,
    .cpu = {.forward = tanh_forward, .backward = tanh_backward, .fresh_grads = true},
    .cuda = KL__CUDA_KERNELS(tanh)};
const kl__op_def kl__op_sigmoid = {
    .name = "sigmoid",
    .min_in = 1,
    .max_in = 1,
    .shape = same_shape,
    .cpu = {.forward = sigmoid_forward, .backward = sigmoid_backward, .fresh_grads = true},
    .cuda = KL__CUDA_KERNELS(sigmoid)};
const kl__op_def kl__op_softmax = {
    .name = "softmax",
    .min_in = 1,
    .max_in = 1,
    .shape = same_shape,
    .cpu = {.forward = softmax_forward, .backward = softmax_backward, .fresh_grads = true},
    .cuda = KL__CUDA_KERNELS(softmax)};
const kl__op_def kl__op_sub = {
    .name = "sub",
    .min_in = 2,
    .max_in = 2,
    .shape = same_shape,
    .cpu = {.forward = sub_forward, .backward = sub_backward, .fresh_grads = true},
    .cuda = KL__CUDA_KERNELS(sub)};
const kl__op_def kl__op_div = {
    .name = "div",
    .min_in = 2,
    .max_in = 2,
    .shape = same_shape,
    .cpu = {.forward = div_forward, .backward = div_backward, .fresh_grads = true},
    .cuda = KL__CUDA_KERNELS(div)};
const kl__op_def kl__op_clip = {
    .name = "clip",
    .min_in = 1,
    .max_in = 1,
    .shape = clip_shape,
    .cpu = {.forward = clip_forward, .backward = clip_backward, .fresh_grads = true},
    .cuda = KL__CUDA_KERNELS(clip)};
const kl__op_def kl__op_log_softmax = {
    .name = "log_softmax",
    .min_in = 1,
    .max_in = 1,
    .shape = same_shape,
    .cpu = {.forward = log_softmax_forward, .backward = log_softmax_backward, .fresh_grads = true},
    .cuda = KL__CUDA_KERNELS(log_softmax)};
const kl__op_def kl__op_dropout = {
    .name = "dropout",
    .min_in = 1,
    .max_in = 1,
    .shape = dropout_shape,
    .cpu = {.forward = dropout_forward, .backward = dropout_backward, .fresh_grads = true},
    .cuda = KL__CUDA_KERNELS(dropout)};
const kl__op_def kl__op_sum = {
    .name = "sum",
    .min_in = 1,
    .max_in = 1,
    .shape = sum_shape,
    .cpu = {.forward = sum_forward, .backward = sum_backward, .fresh_grads = true},
    .cuda = KL__CUDA_KERNELS(sum)};

static kl_node unary(kl_graph *g, kl__op op, kl_node x, const kl__attr *at)
{
    return kl__graph_add(g, op, &x, 1, at);
}

kl_node kl_add(kl_graph *g, kl_node a, kl_node b)
{
    return kl__graph_add(g, KL__OP_ADD, (kl_node[]){a, b}, 2, NULL);
}

kl_node kl_sub(kl_graph *g, kl_node a, kl_node b)
{
    return kl__graph_add(g, KL__OP_SUB, (kl_node[]){a, b}, 2, NULL);
}

kl_node kl_div(kl_graph *g, kl_node a, kl_node b)
{
    return kl__graph_add(g, KL__OP_DIV, (kl_node[]){a, b}, 2, NULL);
}

kl_node kl_clip(kl_graph *g, kl_node x, float lo, float hi)
{
    return unary(g, KL__OP_CLIP, x, &(kl__attr){.clip = {lo, hi}});
}

kl_node kl_log_softmax(kl_graph *g, kl_node x)
{
    return unary(g, KL__OP_LOG_SOFTMAX, x, NULL);
}

kl_node kl_residual(kl_graph *g, kl_node x, kl_node skip)
{
    return kl_add(g, x, skip);
}

kl_node kl_mul(kl_graph *g, kl_node a, kl_node b)
{
    return kl__graph_add(g, KL__OP_MUL, (kl_node[]){a, b}, 2, NULL);
}

kl_node kl_scale(kl_graph *g, kl_node x, float alpha)
{
    return unary(g, KL__OP_SCALE, x, &(kl__attr){.scale = {alpha}});
}

kl_node kl_leaky_relu(kl_graph *g, kl_node x, float alpha)
{
    return unary(g, KL__OP_LEAKY_RELU, x, &(kl__attr){.scale = {alpha}});
}

kl_node kl_dropout(kl_graph *g, kl_node x, float p)
{
    return unary(g, KL__OP_DROPOUT, x, &(kl__attr){.dropout = {p}});
}

kl_node kl_relu(kl_graph *g, kl_node x)
{
    return unary(g, KL__OP_RELU, x, NULL);
}
kl_node kl_gelu(kl_graph *g, kl_node x)
{
    return unary(g, KL__OP_GELU, x, NULL);
}
kl_node kl_tanh(kl_graph *g, kl_node x)
{
    return unary(g, KL__OP_TANH, x, NULL);
}
kl_node kl_sigmoid(kl_graph *g, kl_node x)
{
    return unary(g, KL__OP_SIGMOID, x, NULL);
}
kl_node kl_softmax(kl_graph *g, kl_node x)
{
    return unary(g, KL__OP_SOFTMAX, x, NULL);
}
kl_node kl_sum(kl_graph *g, kl_node x)
{
    return unary(g, KL__OP_SUM, x, NULL);
}
