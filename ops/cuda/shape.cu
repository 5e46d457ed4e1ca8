/* The CUDA kernels of the data-moving ops (ops/cpu/shape.c): reshape (an alias: the graph shares
 * storage, so its kernels are empty here as on the CPU), concat, embedding, transpose, broadcast
 * and pad2d. Embedding's backward adds rows of dout into the table in the CPU's order, a thread
 * per column: deterministic, unlike an atomicAdd scatter, at the cost of parallelism over the D
 * columns only (README.md). */
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

/* transpose and broadcast: output element i reads input offset sum_k coord_k(i) * step[k] (step 0
 * along an axis the input repeats). Backward of transpose scatters (every input offset is hit
 * once); backward of broadcast is a thread per input element summing, in the CPU's order, the
 * output elements that read it: deterministic, no atomics. */
typedef struct walk4 {
    int64_t d[KL_MAX_DIMS], step[KL_MAX_DIMS];
} walk4;

static walk4 walk_of(const kl_shape *out, const int64_t *step)
{
    walk4 w;
    int pad = KL_MAX_DIMS - out->ndim;
    for (int i = 0; i < KL_MAX_DIMS; i++) {
        w.d[i] = i < pad ? 1 : out->d[i - pad];
        w.step[i] = i < pad ? 0 : step[i - pad];
    }
    return w;
}

static __device__ inline int64_t walk_src(const walk4 &w, int64_t i)
{
    int64_t off = 0;
    for (int k = KL_MAX_DIMS - 1; k >= 0; k--) {
        off += (i % w.d[k]) * w.step[k];
        i /= w.d[k];
    }
    return off;
}

static __global__ void gather_kernel(float *y, const float *x, walk4 w, int64_t n)
{
    KL__CU_FOR (i, n)
        y[i] = x[walk_src(w, i)];
}

static __global__ void scatter_kernel(float *dx, const float *dy, walk4 w, int64_t n)
{
    KL__CU_FOR (i, n)
        dx[walk_src(w, i)] += dy[i];
}

static void strides_of(const kl_shape *s, int64_t st[KL_MAX_DIMS])
{
    int64_t acc = 1;
    for (int i = s->ndim - 1; i >= 0; i--) {
        st[i] = acc;
        acc *= s->d[i];
    }
}

static walk4 transpose_walk(const kl__ctx *c)
{
    int64_t st[KL_MAX_DIMS], step[KL_MAX_DIMS];
    strides_of(&c->in[0]->shape, st);
    for (int i = 0; i < c->out->shape.ndim; i++)
        step[i] = st[c->attr->transpose.perm[i]];
    return walk_of(&c->out->shape, step);
}

static kl_status transpose_forward(kl__ctx *c, kl_error *err)
{
    int64_t n = kl_numel(c->out);
    gather_kernel<<<kl__cu_blocks(n), KL__CU_THREADS, 0, kl__cu_stream(c)>>>(
        kl_f32(c->out), kl_f32(c->in[0]), transpose_walk(c), n);
    return kl__cu_launched("transpose", err);
}

static void transpose_backward(kl__ctx *c)
{
    int64_t n = kl_numel(c->dout);
    scatter_kernel<<<kl__cu_blocks(n), KL__CU_THREADS, 0, kl__cu_stream(c)>>>(
        kl_f32(c->din[0]), kl_f32(c->dout), transpose_walk(c), n);
}

extern "C" const kl__kernel kl__cuda_transpose = {transpose_forward, transpose_backward, false};

static walk4 broadcast_walk(const kl__ctx *c)
{
    const kl_shape *xs = &c->in[0]->shape, *ys = &c->out->shape;
    int64_t st[KL_MAX_DIMS], step[KL_MAX_DIMS];
    strides_of(xs, st);
    int off = ys->ndim - xs->ndim;
    for (int i = 0; i < ys->ndim; i++)
        step[i] = i < off || xs->d[i - off] == 1 ? 0 : st[i - off];
    return walk_of(ys, step);
}

/* Thread j owns input element j: it visits the output coordinates whose offset is j, that is the
 * repeated axes (step 0) at every index and the others at j's own coordinate. */
static __global__ void broadcast_backward_kernel(float *dx, const float *dy, walk4 w, int64_t nx)
{
    KL__CU_FOR (j, nx) {
        /* Along an axis x has at full size, j's coordinate is (j / step) % d: the steps are x's
         * strides. */
        int64_t lo[KL_MAX_DIMS], hi[KL_MAX_DIMS];
        for (int k = 0; k < KL_MAX_DIMS; k++) {
            lo[k] = w.step[k] > 0 ? (j / w.step[k]) % w.d[k] : 0;
            hi[k] = w.step[k] > 0 ? lo[k] + 1 : w.d[k];
        }
        float s = 0.0f;
        for (int64_t a = lo[0]; a < hi[0]; a++)
            for (int64_t b = lo[1]; b < hi[1]; b++)
                for (int64_t e = lo[2]; e < hi[2]; e++)
                    for (int64_t f = lo[3]; f < hi[3]; f++)
                        s += dy[((a * w.d[1] + b) * w.d[2] + e) * w.d[3] + f];
        dx[j] += s;
    }
}

static kl_status broadcast_forward(kl__ctx *c, kl_error *err)
{
    int64_t n = kl_numel(c->out);
    gather_kernel<<<kl__cu_blocks(n), KL__CU_THREADS, 0, kl__cu_stream(c)>>>(
        kl_f32(c->out), kl_f32(c->in[0]), broadcast_walk(c), n);
    return kl__cu_launched("broadcast", err);
}

static void broadcast_backward(kl__ctx *c)
{
    int64_t nx = kl_numel(c->in[0]);
    if (c->din[0])
        broadcast_backward_kernel<<<kl__cu_blocks(nx), KL__CU_THREADS, 0, kl__cu_stream(c)>>>(
            kl_f32(c->din[0]), kl_f32(c->dout), broadcast_walk(c), nx);
}

extern "C" const kl__kernel kl__cuda_broadcast = {broadcast_forward, broadcast_backward, false};

/* pad2d: a thread per output element, which reads x or is the pad value; backward a thread per
 * input element, which reads its place in dy. */
static __global__ void pad2d_kernel(float *y, const float *x, int64_t planes, int64_t h, int64_t w,
                                    int64_t oh, int64_t ow, int top, int left, float v)
{
    KL__CU_FOR (t, planes * oh * ow) {
        int64_t p = t / (oh * ow), r = t % (oh * ow), i = r / ow - top, j = r % ow - left;
        y[t] = i >= 0 && i < h && j >= 0 && j < w ? x[(p * h + i) * w + j] : v;
    }
}

static __global__ void pad2d_backward_kernel(float *dx, const float *dy, int64_t planes, int64_t h,
                                             int64_t w, int64_t oh, int64_t ow, int top, int left,
                                             bool fresh)
{
    KL__CU_FOR (t, planes * h * w) {
        int64_t p = t / (h * w), r = t % (h * w), i = r / w, j = r % w;
        dx[t] = (fresh ? 0.0f : dx[t]) + dy[(p * oh + i + top) * ow + j + left];
    }
}

static kl_status pad2d_forward(kl__ctx *c, kl_error *err)
{
    const kl_shape *xs = &c->in[0]->shape, *ys = &c->out->shape;
    int64_t planes = xs->d[0] * xs->d[1];
    pad2d_kernel<<<kl__cu_blocks(kl_numel(c->out)), KL__CU_THREADS, 0, kl__cu_stream(c)>>>(
        kl_f32(c->out), kl_f32(c->in[0]), planes, xs->d[2], xs->d[3], ys->d[2], ys->d[3],
        c->attr->pad.top, c->attr->pad.left, c->attr->pad.value);
    return kl__cu_launched("pad2d", err);
}

static void pad2d_backward(kl__ctx *c)
{
    const kl_shape *xs = &c->in[0]->shape, *ys = &c->out->shape;
    int64_t planes = xs->d[0] * xs->d[1];
    pad2d_backward_kernel<<<kl__cu_blocks(kl_numel(c->in[0])), KL__CU_THREADS, 0,
                            kl__cu_stream(c)>>>(
        kl_f32(c->din[0]), kl_f32(c->dout), planes, xs->d[2], xs->d[3], ys->d[2], ys->d[3],
        c->attr->pad.top, c->attr->pad.left, c->din_fresh[0]);
}

extern "C" const kl__kernel kl__cuda_pad2d = {pad2d_forward, pad2d_backward, true};
