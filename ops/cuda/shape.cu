/* The CUDA kernels of the data-moving ops (ops/cpu/shape.c): reshape (an alias: the graph shares
 * storage, so its kernels are empty here as on the CPU), concat and embedding. Embedding's backward
 * adds rows of dout into the table in the CPU's order, a thread per column: deterministic, unlike
 * an atomicAdd scatter, at the cost of parallelism over the D columns only (README.md). */
#include "ops/cuda/cuda_impl.h"

extern "C" const kl__kernel kl__cuda_reshape = {NULL, NULL, false};

/* Input i (outer, w*inner) to or from its block of the output (outer, width*inner) at column at. */
static __global__ void concat_kernel(float *out, float *part, int64_t outer, int64_t width,
                                     int64_t w, int64_t at, int64_t inner, bool forward)
{
    KL__CU_FOR (t, outer * w * inner) {
        int64_t o = t / (w * inner), r = t % (w * inner);
        float *wide = out + (o * width + at) * inner + r;
        if (forward)
            *wide = part[t];
        else
            part[t] += *wide;
    }
}

static void concat_dims(const kl_tensor *t, int axis, int64_t *outer, int64_t *inner)
{
    *outer = 1;
    *inner = 1;
    for (int d = 0; d < axis; d++)
        *outer *= t->shape.d[d];
    for (int d = axis + 1; d < t->shape.ndim; d++)
        *inner *= t->shape.d[d];
}

static void concat_run(kl__ctx *c, bool forward)
{
    int axis = c->attr->concat.axis;
    int64_t outer, inner, at = 0, width = c->out->shape.d[axis];
    concat_dims(c->out, axis, &outer, &inner);
    float *wide = forward ? kl_f32(c->out) : kl_f32(c->dout);
    for (int i = 0; i < c->nin; i++) {
        int64_t w = c->in[i]->shape.d[axis];
        float *part = forward ? kl_f32(c->in[i]) : c->din[i] ? kl_f32(c->din[i]) : NULL;
        if (part)
            concat_kernel<<<kl__cu_blocks(outer * w * inner), KL__CU_THREADS, 0,
                            kl__cu_stream(c)>>>(wide, part, outer, width, w, at, inner, forward);
        at += w;
    }
}

static kl_status concat_forward(kl__ctx *c, kl_error *err)
{
    concat_run(c, true);
    return kl__cu_launched("concat", err);
}

static void concat_backward(kl__ctx *c)
{
    concat_run(c, false);
}

extern "C" const kl__kernel kl__cuda_concat = {concat_forward, concat_backward, false};

/* An index outside [0, V) cannot be reported without waiting for the device: its output row is
 * NaN, which a loss downstream turns into a non-finite step that is refused. */
static __global__ void embedding_kernel(float *out, const int32_t *idx, const float *table,
                                        int64_t n, int64_t v, int64_t d)
{
    KL__CU_FOR (t, n * d) {
        int64_t i = t / d, k = t % d;
        int32_t row = idx[i];
        out[t] = row >= 0 && row < v ? table[(int64_t)row * d + k] : nanf("");
    }
}

static __global__ void embedding_backward_kernel(float *dtable, const int32_t *idx,
                                                 const float *dout, int64_t n, int64_t v, int64_t d)
{
    KL__CU_FOR (k, d)
        for (int64_t i = 0; i < n; i++)
            if (idx[i] >= 0 && idx[i] < v)
                dtable[(int64_t)idx[i] * d + k] += dout[i * d + k];
}

static kl_status embedding_forward(kl__ctx *c, kl_error *err)
{
    int64_t n = kl_numel(c->in[0]), v = c->in[1]->shape.d[0], d = c->in[1]->shape.d[1];
    embedding_kernel<<<kl__cu_blocks(n * d), KL__CU_THREADS, 0, kl__cu_stream(c)>>>(
        kl_f32(c->out), kl_i32(c->in[0]), kl_f32(c->in[1]), n, v, d);
    return kl__cu_launched("embedding", err);
}

static void embedding_backward(kl__ctx *c)
{
    int64_t n = kl_numel(c->in[0]), v = c->in[1]->shape.d[0], d = c->in[1]->shape.d[1];
    if (c->din[1])
        embedding_backward_kernel<<<kl__cu_blocks(d), KL__CU_THREADS, 0, kl__cu_stream(c)>>>(
            kl_f32(c->din[1]), kl_i32(c->in[0]), kl_f32(c->dout), n, v, d);
}

extern "C" const kl__kernel kl__cuda_embedding = {embedding_forward, embedding_backward, false};
