/* Ops that move data rather than compute on it: reshape and flatten (views that share their
 * input's storage, so they cost nothing), concat along an axis, and embedding lookup. */
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
