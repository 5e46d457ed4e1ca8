/* The CUDA kernels of the elementwise ops and reductions of ops/cpu/elementwise.c: add, mul,
 * scale, the activations, softmax over the last axis, dropout (the CPU's mask, drawn from the same
 * Philox counters) and sum (a fixed-order reduction, result left on the device). */
#include "ops/cuda/cuda_impl.h"

static __global__ void accumulate_kernel(float *dst, const float *src, int64_t n, bool fresh)
{
    KL__CU_FOR (i, n)
        dst[i] = (fresh ? 0.0f : dst[i]) + src[i];
}

void kl__cu_accumulate(cudaStream_t stream, float *dst, const float *src, int64_t n, bool fresh)
{
    accumulate_kernel<<<kl__cu_blocks(n), KL__CU_THREADS, 0, stream>>>(dst, src, n, fresh);
}

/* The unary and binary maps: one kernel each for forward and backward, switched on a small enum
 * so the formulas sit side by side as in the CPU file. */
typedef enum map_op {
    MAP_ADD,
    MAP_MUL,
    MAP_SCALE,
    MAP_RELU,
    MAP_LEAKY,
    MAP_GELU,
    MAP_TANH,
    MAP_SIGMOID
} map_op;

static __device__ inline float map_forward(map_op op, float a, float b, float alpha)
{
    switch (op) {
    case MAP_ADD:
        return a + b;
    case MAP_MUL:
        return a * b;
    case MAP_SCALE:
        return alpha * a;
    case MAP_RELU:
        return a > 0.0f ? a : 0.0f;
    case MAP_LEAKY:
        return a > 0.0f ? a : alpha * a;
    case MAP_GELU:
        return 0.5f * a * (1.0f + erff(a * 0.70710678118654752f));
    case MAP_TANH:
        return tanhf(a);
    case MAP_SIGMOID:
        return 1.0f / (1.0f + expf(-a));
    }
    return 0.0f;
}

/* The gradient of input 0 given dy, x (input 0), y (the output) and, for mul, the other input. */
static __device__ inline float map_backward(map_op op, float dy, float x, float y, float other,
                                            float alpha)
{
    switch (op) {
    case MAP_ADD:
        return dy;
    case MAP_MUL:
        return dy * other;
    case MAP_SCALE:
        return alpha * dy;
    case MAP_RELU:
        return x > 0.0f ? dy : 0.0f;
    case MAP_LEAKY:
        return x > 0.0f ? dy : alpha * dy;
    case MAP_GELU: {
        float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
        float pdf = 0.3989422804014327f * expf(-0.5f * x * x);
        return dy * (cdf + x * pdf);
    }
    case MAP_TANH:
        return dy * (1.0f - y * y);
    case MAP_SIGMOID:
        return dy * y * (1.0f - y);
    }
    return 0.0f;
}

static __global__ void map_forward_kernel(map_op op, float *y, const float *a, const float *b,
                                          float alpha, int64_t n)
{
    KL__CU_FOR (i, n)
        y[i] = map_forward(op, a[i], b ? b[i] : 0.0f, alpha);
}

static __global__ void map_backward_kernel(map_op op, float *dx, const float *dy, const float *x,
                                           const float *y, const float *other, float alpha,
                                           int64_t n, bool fresh)
{
    KL__CU_FOR (i, n) {
        float g = map_backward(op, dy[i], x ? x[i] : 0.0f, y ? y[i] : 0.0f, other ? other[i] : 0.0f,
                               alpha);
        dx[i] = (fresh ? 0.0f : dx[i]) + g;
    }
}

static kl_status map_run_forward(kl__ctx *c, map_op op, const char *name, kl_error *err)
{
    int64_t n = kl_numel(c->out);
    float alpha = op == MAP_SCALE || op == MAP_LEAKY ? c->attr->scale.alpha : 0.0f;
    map_forward_kernel<<<kl__cu_blocks(n), KL__CU_THREADS, 0, kl__cu_stream(c)>>>(
        op, kl_f32(c->out), kl_f32(c->in[0]), c->nin == 2 ? kl_f32(c->in[1]) : NULL, alpha, n);
    return kl__cu_launched(name, err);
}

static void map_run_backward(kl__ctx *c, map_op op)
{
    int64_t n = kl_numel(c->dout);
    float alpha = op == MAP_SCALE || op == MAP_LEAKY ? c->attr->scale.alpha : 0.0f;
    for (int k = 0; k < c->nin; k++) {
        if (!c->din[k])
            continue;
        const float *other = op == MAP_MUL ? kl_f32(c->in[1 - k]) : NULL;
        map_backward_kernel<<<kl__cu_blocks(n), KL__CU_THREADS, 0, kl__cu_stream(c)>>>(
            op, kl_f32(c->din[k]), kl_f32(c->dout), kl_f32(c->in[0]), kl_f32(c->out), other, alpha,
            n, c->din_fresh[k]);
    }
}

#define KL__CU_MAP_OP(name, op)                                \
    static kl_status name##_forward(kl__ctx *c, kl_error *err) \
    {                                                          \
        return map_run_forward(c, op, #name, err);             \
    }                                                          \
    static void name##_backward(kl__ctx *c)                    \
    {                                                          \
        map_run_backward(c, op);                               \
    }                                                          \
    extern "C" const kl__kernel kl__cuda_##name = {name##_forward, name##_backward, true};

KL__CU_MAP_OP(add, MAP_ADD)
KL__CU_MAP_OP(mul, MAP_MUL)
KL__CU_MAP_OP(scale, MAP_SCALE)
KL__CU_MAP_OP(relu, MAP_RELU)
KL__CU_MAP_OP(leaky_relu, MAP_LEAKY)
KL__CU_MAP_OP(gelu, MAP_GELU)
KL__CU_MAP_OP(tanh, MAP_TANH)
KL__CU_MAP_OP(sigmoid, MAP_SIGMOID)

/* Softmax over the last axis, a block per row: the row maximum, then the exponentials summed in
 * double, as the CPU. */
static __global__ void softmax_forward_kernel(float *y, const float *x, int64_t cols)
{
    const float *xr = x + blockIdx.x * cols;
    float *yr = y + blockIdx.x * cols, mx = xr[0];
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x)
        mx = xr[j] > mx ? xr[j] : mx;
    mx = kl__cu_block_max(mx);
    double s = 0;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x)
        s += yr[j] = expf(xr[j] - mx);
    float inv = (float)(1.0 / kl__cu_block_sum(s));
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x)
        yr[j] *= inv;
}

/* dx = y (dy - sum(dy y)) per row. */
static __global__ void softmax_backward_kernel(float *dx, const float *y, const float *dy,
                                               int64_t cols, bool fresh)
{
    int64_t base = blockIdx.x * cols;
    double dot = 0;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x)
        dot += (double)dy[base + j] * y[base + j];
    float d = (float)kl__cu_block_sum(dot);
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x)
        dx[base + j] = (fresh ? 0.0f : dx[base + j]) + (y[base + j] * (dy[base + j] - d));
}

static kl_status softmax_forward(kl__ctx *c, kl_error *err)
{
    const kl_tensor *x = c->in[0];
    int64_t cols = x->shape.d[x->shape.ndim - 1], rows = kl__rows(x);
    if (rows > 0)
        softmax_forward_kernel<<<(unsigned)rows, KL__CU_THREADS, 0, kl__cu_stream(c)>>>(
            kl_f32(c->out), kl_f32(x), cols);
    return kl__cu_launched("softmax", err);
}

static void softmax_backward(kl__ctx *c)
{
    const kl_tensor *y = c->out;
    int64_t cols = y->shape.d[y->shape.ndim - 1], rows = kl__rows(y);
    if (rows > 0)
        softmax_backward_kernel<<<(unsigned)rows, KL__CU_THREADS, 0, kl__cu_stream(c)>>>(
            kl_f32(c->din[0]), kl_f32(y), kl_f32(c->dout), cols, c->din_fresh[0]);
}

extern "C" const kl__kernel kl__cuda_softmax = {softmax_forward, softmax_backward, true};

/* Dropout: the CPU's dropout_keep, element for element. Forward maps x and backward maps dy
 * through the same mask; in eval mode, or with p == 0, both copy. */
typedef struct dropout_key {
    uint64_t seed, stream, first;
    float p, keep;
    bool active;
} dropout_key;

static dropout_key dropout_key_of(const kl__ctx *c)
{
    float p = c->attr->dropout.p;
    int64_t row = kl_numel(c->out) / c->out->shape.d[0];
    dropout_key k = {c->seed,
                     (c->step << 24) | (c->node & 0xFFFFFFu),
                     (uint64_t)(c->first_row * row),
                     p,
                     1.0f / (1.0f - p),
                     c->train && p != 0.0f};
    return k;
}

static __global__ void dropout_kernel(float *dst, const float *src, dropout_key k, int64_t n,
                                      bool accumulate, bool fresh)
{
    KL__CU_FOR (i, n) {
        float v = src[i];
        if (k.active)
            v = kl__cu_rng_uniform(k.seed, KL_RNG_DROPOUT, k.stream, k.first + (uint64_t)i) >= k.p
                    ? v * k.keep
                    : 0.0f;
        dst[i] = accumulate ? (fresh ? 0.0f : dst[i]) + v : v;
    }
}

static kl_status dropout_forward(kl__ctx *c, kl_error *err)
{
    int64_t n = kl_numel(c->out);
    dropout_kernel<<<kl__cu_blocks(n), KL__CU_THREADS, 0, kl__cu_stream(c)>>>(
        kl_f32(c->out), kl_f32(c->in[0]), dropout_key_of(c), n, false, false);
    return kl__cu_launched("dropout", err);
}

static void dropout_backward(kl__ctx *c)
{
    int64_t n = kl_numel(c->dout);
    dropout_kernel<<<kl__cu_blocks(n), KL__CU_THREADS, 0, kl__cu_stream(c)>>>(
        kl_f32(c->din[0]), kl_f32(c->dout), dropout_key_of(c), n, true, c->din_fresh[0]);
}

extern "C" const kl__kernel kl__cuda_dropout = {dropout_forward, dropout_backward, true};

/* sum: one block over every element, in double and a fixed order; the scalar stays on the device
 * (the graph reads losses once per report, not per step). */
static __global__ void sum_kernel(float *out, const float *x, int64_t n)
{
    double s = 0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
        s += x[i];
    s = kl__cu_block_sum(s);
    if (threadIdx.x == 0)
        out[0] = (float)s;
}

/* dx += d(sum), read from the device. */
static __global__ void sum_backward_kernel(float *dx, const float *dout, int64_t n, bool fresh)
{
    float d = dout[0];
    KL__CU_FOR (i, n)
        dx[i] = (fresh ? 0.0f : dx[i]) + d;
}

static kl_status sum_forward(kl__ctx *c, kl_error *err)
{
    sum_kernel<<<1, KL__CU_THREADS, 0, kl__cu_stream(c)>>>(kl_f32(c->out), kl_f32(c->in[0]),
                                                           kl_numel(c->in[0]));
    return kl__cu_launched("sum", err);
}

static void sum_backward(kl__ctx *c)
{
    int64_t n = kl_numel(c->in[0]);
    sum_backward_kernel<<<kl__cu_blocks(n), KL__CU_THREADS, 0, kl__cu_stream(c)>>>(
        kl_f32(c->din[0]), kl_f32(c->dout), n, c->din_fresh[0]);
}

extern "C" const kl__kernel kl__cuda_sum = {sum_forward, sum_backward, true};

/* sub and div: a kernel per input gradient, since their formulas differ between a and b. */
static __global__ void sub_div_forward_kernel(bool div, float *y, const float *a, const float *b,
                                              int64_t n)
{
    KL__CU_FOR (i, n)
        y[i] = div ? a[i] / b[i] : a[i] - b[i];
}

/* sub: da = dy, db = -dy; div: da = dy / b, db = -dy y / b. */
static __global__ void sub_div_backward_kernel(bool div, int k, float *dx, const float *dy,
                                               const float *b, const float *y, int64_t n,
                                               bool fresh)
{
    KL__CU_FOR (i, n) {
        float g = div ? (k == 0 ? dy[i] / b[i] : -dy[i] * y[i] / b[i]) : (k == 0 ? dy[i] : -dy[i]);
        dx[i] = (fresh ? 0.0f : dx[i]) + g;
    }
}

static kl_status sub_div_forward(kl__ctx *c, bool div, kl_error *err)
{
    int64_t n = kl_numel(c->out);
    sub_div_forward_kernel<<<kl__cu_blocks(n), KL__CU_THREADS, 0, kl__cu_stream(c)>>>(
        div, kl_f32(c->out), kl_f32(c->in[0]), kl_f32(c->in[1]), n);
    return kl__cu_launched(div ? "div" : "sub", err);
}

static void sub_div_backward(kl__ctx *c, bool div)
{
    int64_t n = kl_numel(c->dout);
    for (int k = 0; k < 2; k++)
        if (c->din[k])
            sub_div_backward_kernel<<<kl__cu_blocks(n), KL__CU_THREADS, 0, kl__cu_stream(c)>>>(
                div, k, kl_f32(c->din[k]), kl_f32(c->dout), kl_f32(c->in[1]), kl_f32(c->out), n,
                c->din_fresh[k]);
}

static kl_status sub_forward(kl__ctx *c, kl_error *err)
{
    return sub_div_forward(c, false, err);
}
static void sub_backward(kl__ctx *c)
{
    sub_div_backward(c, false);
}
static kl_status div_forward(kl__ctx *c, kl_error *err)
{
    return sub_div_forward(c, true, err);
}
static void div_backward(kl__ctx *c)
{
    sub_div_backward(c, true);
}
extern "C" const kl__kernel kl__cuda_sub = {sub_forward, sub_backward, true};
extern "C" const kl__kernel kl__cuda_div = {div_forward, div_backward, true};

static __global__ void clip_kernel(float *y, const float *x, float lo, float hi, int64_t n)
{
    KL__CU_FOR (i, n)
        y[i] = x[i] < lo ? lo : x[i] > hi ? hi : x[i];
}

static __global__ void clip_backward_kernel(float *dx, const float *dy, const float *x, float lo,
                                            float hi, int64_t n, bool fresh)
{
    KL__CU_FOR (i, n)
        dx[i] = (fresh ? 0.0f : dx[i]) + (x[i] >= lo && x[i] <= hi ? dy[i] : 0.0f);
}

static kl_status clip_forward(kl__ctx *c, kl_error *err)
{
    int64_t n = kl_numel(c->out);
    clip_kernel<<<kl__cu_blocks(n), KL__CU_THREADS, 0, kl__cu_stream(c)>>>(
        kl_f32(c->out), kl_f32(c->in[0]), c->attr->clip.lo, c->attr->clip.hi, n);
    return kl__cu_launched("clip", err);
}

static void clip_backward(kl__ctx *c)
{
    int64_t n = kl_numel(c->dout);
    clip_backward_kernel<<<kl__cu_blocks(n), KL__CU_THREADS, 0, kl__cu_stream(c)>>>(
        kl_f32(c->din[0]), kl_f32(c->dout), kl_f32(c->in[0]), c->attr->clip.lo, c->attr->clip.hi, n,
        c->din_fresh[0]);
}

extern "C" const kl__kernel kl__cuda_clip = {clip_forward, clip_backward, true};

/* log_softmax over the last axis, a block per row, the sum in double as on the CPU. */
static __global__ void log_softmax_forward_kernel(float *y, const float *x, int64_t cols)
{
    const float *xr = x + blockIdx.x * cols;
    float *yr = y + blockIdx.x * cols, mx = xr[0];
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x)
        mx = xr[j] > mx ? xr[j] : mx;
    mx = kl__cu_block_max(mx);
    double s = 0;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x)
        s += exp((double)xr[j] - mx);
    float lse = (float)log(kl__cu_block_sum(s));
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x)
        yr[j] = (xr[j] - mx) - lse;
}

/* dx = dy - exp(y) sum(dy) per row. */
static __global__ void log_softmax_backward_kernel(float *dx, const float *y, const float *dy,
                                                   int64_t cols, bool fresh)
{
    int64_t base = blockIdx.x * cols;
    double s = 0;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x)
        s += dy[base + j];
    float d = (float)kl__cu_block_sum(s);
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x)
        dx[base + j] = (fresh ? 0.0f : dx[base + j]) + (dy[base + j] - expf(y[base + j]) * d);
}

static kl_status log_softmax_forward(kl__ctx *c, kl_error *err)
{
    const kl_tensor *x = c->in[0];
    int64_t cols = x->shape.d[x->shape.ndim - 1], rows = kl__rows(x);
    if (rows > 0)
        log_softmax_forward_kernel<<<(unsigned)rows, KL__CU_THREADS, 0, kl__cu_stream(c)>>>(
            kl_f32(c->out), kl_f32(x), cols);
    return kl__cu_launched("log_softmax", err);
}

static void log_softmax_backward(kl__ctx *c)
{
    const kl_tensor *y = c->out;
    int64_t cols = y->shape.d[y->shape.ndim - 1], rows = kl__rows(y);
    if (rows > 0)
        log_softmax_backward_kernel<<<(unsigned)rows, KL__CU_THREADS, 0, kl__cu_stream(c)>>>(
            kl_f32(c->din[0]), kl_f32(y), kl_f32(c->dout), cols, c->din_fresh[0]);
}

extern "C" const kl__kernel kl__cuda_log_softmax = {log_softmax_forward, log_softmax_backward,
                                                    true};
