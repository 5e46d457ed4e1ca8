/* Ops that move data rather than compute on it: reshape and flatten (views that share their
 * input's storage, so they cost nothing), concat along an axis, embedding lookup, transpose and
 * broadcast (numpy's rule), the last two strided copies, and pad2d (planes in larger ones). */
#include <math.h>
#include <string.h>

#include "ops/graph_impl.h"

/* reshape: the target is per sample for a batched input, the whole shape otherwise. */
static kl_status reshape_shape(kl__node *n, const kl__node *const *in, kl_error *err)
{
    const kl__node *x = in[0];
    kl_shape want = n->attr.reshape.shape;
    char sx[96], sw[96];
    if (x->batched) {
        if (want.ndim + 1 > KL_MAX_DIMS)
            return kl_error_set(err, KL_ESHAPE, "reshape: %s plus the batch has more than %d axes",
                                kl_shape_str(&want, sw, sizeof sw), KL_MAX_DIMS);
        for (int i = want.ndim; i > 0; i--)
            want.d[i] = want.d[i - 1];
        want.d[0] = x->shape.d[0];
        want.ndim++;
    }
    if (kl_shape_numel(&want) != kl_shape_numel(&x->shape) || want.ndim < 1)
        return kl_error_set(err, KL_ESHAPE, "reshape: cannot view %s as %s: element counts differ",
                            kl_shape_str(&x->shape, sx, sizeof sx),
                            kl_shape_str(&want, sw, sizeof sw));
    n->shape = want;
    n->batched = x->batched;
    n->dtype = x->dtype;
    return KL_OK;
}

/* An alias op: the graph points its value and gradient at the input's storage, so there is no
 * forward or backward work at all. */
const kl__op_def kl__op_reshape = {.name = "reshape",
                                   .min_in = 1,
                                   .max_in = 1,
                                   .shape = reshape_shape,
                                   .alias = true,
                                   .cuda = KL__CUDA_KERNELS(reshape)};

kl_node kl_reshape(kl_graph *g, kl_node x, kl_shape per_sample)
{
    kl__attr at = {.reshape = {per_sample}};
    return kl__graph_add(g, KL__OP_RESHAPE, &x, 1, &at);
}

kl_node kl_flatten(kl_graph *g, kl_node x)
{
    kl_shape s = kl_graph_shape(g, x);
    if (x == KL_NONE || s.ndim < 1)
        return kl_reshape(g, x, KL_SHAPE(1)); /* lets the graph report the bad input */
    int64_t rest = kl_shape_numel(&s) / s.d[0];
    return kl_reshape(g, x, kl_graph_batched(g, x) ? KL_SHAPE(rest) : KL_SHAPE(s.d[0], rest));
}

/* concat: equal shapes but for `axis`, which may count from the end (-1 is the last). */
static kl_status concat_shape(kl__node *n, const kl__node *const *in, kl_error *err)
{
    const kl__node *a = in[0];
    int nd = a->shape.ndim, axis = n->attr.concat.axis;
    char sa[96], sb[96];
    if (axis < 0)
        axis += nd;
    if (axis < 0 || axis >= nd || (axis == 0 && a->batched))
        return kl_error_set(err, KL_EINVAL, "concat: axis %d is not valid for %d-D inputs%s",
                            n->attr.concat.axis, nd, a->batched ? " (axis 0 is the batch)" : "");
    n->shape = a->shape;
    n->shape.d[axis] = 0;
    for (int i = 0; i < n->nin; i++) {
        const kl__node *b = in[i];
        bool ok = b->shape.ndim == nd && b->batched == a->batched && b->dtype == KL_F32;
        for (int d = 0; ok && d < nd; d++)
            ok = d == axis || b->shape.d[d] == a->shape.d[d];
        if (!ok)
            return kl_error_set(err, KL_ESHAPE,
                                "concat: input %d %s does not match input 0 %s except on axis %d",
                                i, kl_shape_str(&b->shape, sb, sizeof sb),
                                kl_shape_str(&a->shape, sa, sizeof sa), axis);
        n->shape.d[axis] += b->shape.d[axis];
    }
    n->attr.concat.axis = axis;
    n->batched = a->batched;
    return KL_OK;
}

/* Views the tensors as (outer, axis * inner) blocks and copies block rows. */
static void concat_dims(const kl_tensor *t, int axis, int64_t *outer, int64_t *inner)
{
    *outer = 1;
    *inner = 1;
    for (int d = 0; d < axis; d++)
        *outer *= t->shape.d[d];
    for (int d = axis + 1; d < t->shape.ndim; d++)
        *inner *= t->shape.d[d];
}

static kl_status concat_forward(kl__ctx *c, kl_error *err)
{
    int axis = c->attr->concat.axis;
    int64_t outer, inner, at = 0, width = c->out->shape.d[axis];
    concat_dims(c->out, axis, &outer, &inner);
    for (int i = 0; i < c->nin; i++) {
        int64_t w = c->in[i]->shape.d[axis];
        for (int64_t o = 0; o < outer; o++)
            memcpy(kl_f32(c->out) + (o * width + at) * inner, kl_f32(c->in[i]) + o * w * inner,
                   (size_t)(w * inner) * sizeof(float));
        at += w;
    }
    return KL_OK;
}

static void concat_backward(kl__ctx *c)
{
    int axis = c->attr->concat.axis;
    int64_t outer, inner, at = 0, width = c->out->shape.d[axis];
    concat_dims(c->out, axis, &outer, &inner);
    for (int i = 0; i < c->nin; i++) {
        int64_t w = c->in[i]->shape.d[axis];
        if (c->din[i]) {
            for (int64_t o = 0; o < outer; o++) {
                const float *src = kl_f32(c->dout) + (o * width + at) * inner;
                float *dst = kl_f32(c->din[i]) + o * w * inner;
                for (int64_t k = 0; k < w * inner; k++)
                    dst[k] += src[k];
            }
        }
        at += w;
    }
}

const kl__op_def kl__op_concat = {.name = "concat",
                                  .min_in = 1,
                                  .max_in = KL__MAX_IN,
                                  .shape = concat_shape,
                                  .cpu = {.forward = concat_forward, .backward = concat_backward},
                                  .cuda = KL__CUDA_KERNELS(concat)};

kl_node kl_concat(kl_graph *g, const kl_node *xs, int n, int axis)
{
    kl__attr at = {.concat = {axis}};
    return kl__graph_add(g, KL__OP_CONCAT, xs, n, &at);
}

/* embedding: i32 indices (N, ...) pick rows of table (V, D), giving (N, ..., D). */
static kl_status embedding_shape(kl__node *n, const kl__node *const *in, kl_error *err)
{
    const kl__node *idx = in[0], *tab = in[1];
    char si[96], st[96];
    if (idx->dtype != KL_I32 || tab->shape.ndim != 2 || tab->batched ||
        idx->shape.ndim + 1 > KL_MAX_DIMS)
        return kl_error_set(err, KL_ESHAPE,
                            "embedding: needs i32 indices of at most %d axes and a (V, D) table, "
                            "got %s indices %s and table %s",
                            KL_MAX_DIMS - 1, kl_dtype_name(idx->dtype),
                            kl_shape_str(&idx->shape, si, sizeof si),
                            kl_shape_str(&tab->shape, st, sizeof st));
    n->shape = idx->shape;
    n->shape.d[n->shape.ndim++] = tab->shape.d[1];
    n->batched = idx->batched;
    return KL_OK;
}

static kl_status embedding_forward(kl__ctx *c, kl_error *err)
{
    const int32_t *idx = kl_i32(c->in[0]);
    int64_t v = c->in[1]->shape.d[0], d = c->in[1]->shape.d[1];
    for (int64_t i = 0, end = kl_numel(c->in[0]); i < end; i++) {
        if (idx[i] < 0 || idx[i] >= v)
            return kl_error_set(err, KL_ERANGE,
                                "embedding: index %d at position %lld is outside [0, %lld)",
                                (int)idx[i], (long long)i, (long long)v);
        memcpy(kl_f32(c->out) + i * d, kl_f32(c->in[1]) + (int64_t)idx[i] * d,
               (size_t)d * sizeof(float));
    }
    return KL_OK;
}

static void embedding_backward(kl__ctx *c)
{
    const int32_t *idx = kl_i32(c->in[0]);
    int64_t d = c->in[1]->shape.d[1];
    if (!c->din[1])
        return;
    for (int64_t i = 0, end = kl_numel(c->in[0]); i < end; i++) {
        const float *src = kl_f32(c->dout) + i * d;
        float *dst = kl_f32(c->din[1]) + (int64_t)idx[i] * d;
        for (int64_t k = 0; k < d; k++)
            dst[k] += src[k];
    }
}

const kl__op_def kl__op_embedding = {
    .name = "embedding",
    .min_in = 2,
    .max_in = 2,
    .shape = embedding_shape,
    .cpu = {.forward = embedding_forward, .backward = embedding_backward},
    .cuda = KL__CUDA_KERNELS(embedding)};

kl_node kl_embedding(kl_graph *g, kl_node indices, kl_node table)
{
    return kl__graph_add(g, KL__OP_EMBEDDING, (kl_node[]){indices, table}, 2, NULL);
}

/* transpose: output axis i is input axis perm[i]; a batched input keeps its batch first. */
static kl_status transpose_shape(kl__node *n, const kl__node *const *in, kl_error *err)
{
    const kl__node *x = in[0];
    const int *perm = n->attr.transpose.perm;
    int nd = x->shape.ndim;
    bool seen[KL_MAX_DIMS] = {false};
    char sx[96];
    kl_status st;
    if ((st = kl__expect_f32("transpose", x, err)))
        return st;
    for (int i = 0; i < nd; i++) {
        if (perm[i] < 0 || perm[i] >= nd || seen[perm[i]])
            return kl_error_set(err, KL_EINVAL,
                                "transpose: the permutation is not one of the %d axes of %s", nd,
                                kl_shape_str(&x->shape, sx, sizeof sx));
        seen[perm[i]] = true;
    }
    if (x->batched && perm[0] != 0)
        return kl_error_set(err, KL_EUNSUPPORTED,
                            "transpose: moving the batch axis of %s (batched) is not supported",
                            kl_shape_str(&x->shape, sx, sizeof sx));
    n->shape.ndim = nd;
    for (int i = 0; i < nd; i++)
        n->shape.d[i] = x->shape.d[perm[i]];
    n->batched = x->batched;
    return KL_OK;
}

/* The strides (in elements) of a row-major shape, padded to KL_MAX_DIMS axes at the front. */
static void strides_of(const kl_shape *s, int64_t st[KL_MAX_DIMS])
{
    int64_t acc = 1;
    for (int i = s->ndim - 1; i >= 0; i--) {
        st[i] = acc;
        acc *= s->d[i];
    }
}

/* Walks every output element; src(i) is the input offset of output element i, given per output
 * axis by step[] (0 for an axis the input does not vary along). forward copies x into y; backward
 * adds dy into dx at the same offsets. */
static void strided_walk(const kl_shape *out, const int64_t *step, float *x, float *y, bool forward)
{
    int64_t d[KL_MAX_DIMS] = {1, 1, 1, 1}, s[KL_MAX_DIMS] = {0, 0, 0, 0};
    int pad = KL_MAX_DIMS - out->ndim;
    for (int i = 0; i < out->ndim; i++) {
        d[pad + i] = out->d[i];
        s[pad + i] = step[i];
    }
    int64_t o = 0;
    for (int64_t a = 0; a < d[0]; a++)
        for (int64_t b = 0; b < d[1]; b++)
            for (int64_t e = 0; e < d[2]; e++) {
                const int64_t base = a * s[0] + b * s[1] + e * s[2];
                for (int64_t f = 0; f < d[3]; f++, o++) {
                    if (forward)
                        y[o] = x[base + f * s[3]];
                    else
                        x[base + f * s[3]] += y[o];
                }
            }
}

static void transpose_steps(const kl__ctx *c, int64_t step[KL_MAX_DIMS])
{
    int64_t st[KL_MAX_DIMS];
    strides_of(&c->in[0]->shape, st);
    for (int i = 0; i < c->out->shape.ndim; i++)
        step[i] = st[c->attr->transpose.perm[i]];
}

static kl_status transpose_forward(kl__ctx *c, kl_error *err)
{
    int64_t step[KL_MAX_DIMS];
    transpose_steps(c, step);
    strided_walk(&c->out->shape, step, kl_f32(c->in[0]), kl_f32(c->out), true);
    return KL_OK;
}

static void transpose_backward(kl__ctx *c)
{
    int64_t step[KL_MAX_DIMS];
    transpose_steps(c, step);
    strided_walk(&c->out->shape, step, kl_f32(c->din[0]), kl_f32(c->dout), false);
}

const kl__op_def kl__op_transpose = {
    .name = "transpose",
    .min_in = 1,
    .max_in = 1,
    .shape = transpose_shape,
    .cpu = {.forward = transpose_forward, .backward = transpose_backward},
    .cuda = KL__CUDA_KERNELS(transpose)};

kl_node kl_transpose(kl_graph *g, kl_node x, const int *perm)
{
    kl__attr at = {0};
    kl_shape s = kl_graph_shape(g, x);
    for (int i = 0; i < s.ndim && i < KL_MAX_DIMS; i++)
        at.transpose.perm[i] = perm[i];
    return kl__graph_add(g, KL__OP_TRANSPOSE, &x, 1, &at);
}

/* broadcast: x repeated to like's shape by numpy's rule; like gives only the shape and the batch.
 */
static kl_status broadcast_shape(kl__node *n, const kl__node *const *in, kl_error *err)
{
    const kl__node *x = in[0], *like = in[1];
    int nx = x->shape.ndim, nl = like->shape.ndim;
    char sx[96], sl[96];
    kl_status st;
    if ((st = kl__expect_f32("broadcast", x, err)))
        return st;
    bool ok = nx <= nl && (!x->batched || (like->batched && nx == nl));
    for (int i = 0; ok && i < nx; i++) {
        int64_t a = x->shape.d[nx - 1 - i], b = like->shape.d[nl - 1 - i];
        ok = a == b || a == 1;
    }
    if (!ok)
        return kl_error_set(err, KL_ESHAPE, "broadcast: cannot broadcast %s%s to %s%s",
                            kl_shape_str(&x->shape, sx, sizeof sx), x->batched ? " (batched)" : "",
                            kl_shape_str(&like->shape, sl, sizeof sl),
                            like->batched ? " (batched)" : "");
    n->shape = like->shape;
    n->batched = like->batched;
    n->dtype = KL_F32;
    return KL_OK;
}

/* The input offset steps per output axis: x's stride where x has the axis at full size, else 0. */
static void broadcast_steps(const kl__ctx *c, int64_t step[KL_MAX_DIMS])
{
    const kl_shape *xs = &c->in[0]->shape, *ys = &c->out->shape;
    int64_t st[KL_MAX_DIMS];
    strides_of(xs, st);
    int off = ys->ndim - xs->ndim;
    for (int i = 0; i < ys->ndim; i++)
        step[i] = i < off || xs->d[i - off] == 1 ? 0 : st[i - off];
}

static kl_status broadcast_forward(kl__ctx *c, kl_error *err)
{
    int64_t step[KL_MAX_DIMS];
    broadcast_steps(c, step);
    strided_walk(&c->out->shape, step, kl_f32(c->in[0]), kl_f32(c->out), true);
    return KL_OK;
}

/* dx is the sum of dy over the repeated axes. */
static void broadcast_backward(kl__ctx *c)
{
    int64_t step[KL_MAX_DIMS];
    if (!c->din[0])
        return;
    broadcast_steps(c, step);
    strided_walk(&c->out->shape, step, kl_f32(c->din[0]), kl_f32(c->dout), false);
}

const kl__op_def kl__op_broadcast = {
    .name = "broadcast",
    .min_in = 2,
    .max_in = 2,
    .shape = broadcast_shape,
    .cpu = {.forward = broadcast_forward, .backward = broadcast_backward},
    .cuda = KL__CUDA_KERNELS(broadcast)};

kl_node kl_broadcast(kl_graph *g, kl_node x, kl_node like)
{
    return kl__graph_add(g, KL__OP_BROADCAST, (kl_node[]){x, like}, 2, NULL);
}

/* pad2d: each (H, W) plane placed at (top, left) in a larger one filled with value. */
static kl_status pad2d_shape(kl__node *n, const kl__node *const *in, kl_error *err)
{
    const kl__node *x = in[0];
    int t = n->attr.pad.top, b = n->attr.pad.bottom, l = n->attr.pad.left, r = n->attr.pad.right;
    kl_status st;
    if ((st = kl__expect_f32("pad2d", x, err)) || (st = kl__expect_ndim("pad2d", x, 4, 4, err)))
        return st;
    if (t < 0 || b < 0 || l < 0 || r < 0 || isnan(n->attr.pad.value))
        return kl_error_set(err, KL_EINVAL,
                            "pad2d: pads must be at least 0 and the value a number, got top %d, "
                            "bottom %d, left %d, right %d",
                            t, b, l, r);
    n->shape = x->shape;
    n->shape.d[2] += (int64_t)t + b;
    n->shape.d[3] += (int64_t)l + r;
    n->batched = x->batched;
    return KL_OK;
}

/* The sizes of a pad2d: planes (N*C) of (h, w) inside (oh, ow). */
static void pad2d_dims(const kl__ctx *c, int64_t *planes, int64_t *h, int64_t *w, int64_t *oh,
                       int64_t *ow)
{
    const kl_shape *xs = &c->in[0]->shape;
    *planes = xs->d[0] * xs->d[1];
    *h = xs->d[2];
    *w = xs->d[3];
    *oh = c->out->shape.d[2];
    *ow = c->out->shape.d[3];
}

static kl_status pad2d_forward(kl__ctx *c, kl_error *err)
{
    int64_t planes, h, w, oh, ow;
    pad2d_dims(c, &planes, &h, &w, &oh, &ow);
    const float *x = kl_f32(c->in[0]);
    float *y = kl_f32(c->out), v = c->attr->pad.value;
    int top = c->attr->pad.top, left = c->attr->pad.left;
    for (int64_t p = 0; p < planes; p++) {
        float *yp = y + p * oh * ow;
        for (int64_t i = 0; i < oh * ow; i++)
            yp[i] = v;
        for (int64_t i = 0; i < h; i++)
            memcpy(yp + (i + top) * ow + left, x + (p * h + i) * w, (size_t)w * sizeof(float));
    }
    return KL_OK;
}

/* dx is dy's inner window; the padding takes no gradient. */
static void pad2d_backward(kl__ctx *c)
{
    int64_t planes, h, w, oh, ow;
    pad2d_dims(c, &planes, &h, &w, &oh, &ow);
    const float *dy = kl_f32(c->dout);
    float *dx = kl_f32(c->din[0]);
    int top = c->attr->pad.top, left = c->attr->pad.left;
    const bool fresh = c->din_fresh[0];
    for (int64_t p = 0; p < planes; p++)
        for (int64_t i = 0; i < h; i++)
            for (int64_t j = 0; j < w; j++) {
                float g = dy[(p * oh + i + top) * ow + j + left];
                float *d = dx + (p * h + i) * w + j;
                *d = (fresh ? 0.0f : *d) + g;
            }
}

const kl__op_def kl__op_pad2d = {
    .name = "pad2d",
    .min_in = 1,
    .max_in = 1,
    .shape = pad2d_shape,
    .cpu = {.forward = pad2d_forward, .backward = pad2d_backward, .fresh_grads = true},
    .cuda = KL__CUDA_KERNELS(pad2d)};

kl_node kl_pad2d(kl_graph *g, kl_node x, int top, int bottom, int left, int right, float value)
{
    kl__attr at = {.pad = {top, bottom, left, right, value}};
    return kl__graph_add(g, KL__OP_PAD2D, &x, 1, &at);
}
