/* The ONNX importer's constant folding (runtime/onnx/): the operators that only move or pick
 * values (Gather, Concat, Cast) computed on the host at load time, so that a Shape -> Gather ->
 * Unsqueeze -> Concat chain feeding a Reshape becomes a constant target shape and no node of the
 * graph. ops.c calls these when every input of such a node is a constant. */
#include <math.h>
#include <string.h>

#include "runtime/onnx/onnx_impl.h"

kl_status kl__ox_const_new(ox_import *im, const ox_node *n, ox_dtype dtype, int ndim,
                           const int64_t *d, ox_const *c)
{
    int64_t bytes;
    char what[160];
    snprintf(what, sizeof what, "%s: a constant of node '%.80s'", im->what,
             n && n->p->name ? n->p->name : "(initializer)");
    if (ndim < 0 || ndim > OX_MAX_DIMS)
        return kl__ox_fail(im, n, KL_EUNSUPPORTED, "a constant of %d axes; at most %d", ndim,
                           OX_MAX_DIMS);
    kl_status st = kl_dims_check(ndim, ndim ? d : (const int64_t[]){1}, 8, what, &bytes, im->err);
    if (st)
        return st;
    *c = (ox_const){.dtype = dtype, .ndim = ndim, .n = bytes / 8};
    if (ndim)
        memcpy(c->d, d, (size_t)ndim * sizeof *d);
    c->data = kl__ox_alloc(im, c->n, dtype == OX_F32 ? sizeof(float) : sizeof(int64_t));
    return c->data ? KL_OK : KL_ENOMEM;
}

static size_t esize(ox_dtype t)
{
    return t == OX_F32 ? sizeof(float) : sizeof(int64_t);
}

/* Gather along axis: out = data[..., idx[j], ...], negative indices counting from the end. */
kl_status kl__ox_fold_gather(ox_import *im, ox_node *n, const ox_const *data, const ox_const *idx,
                             int64_t axis, ox_const *out)
{
    if (idx->dtype != OX_I64)
        return kl__ox_fail(im, n, KL_EFORMAT, "indices must be integers");
    if (axis < -data->ndim || axis >= data->ndim || data->ndim == 0)
        return kl__ox_fail(im, n, KL_EFORMAT, "axis %lld is outside the %d axes of data",
                           (long long)axis, data->ndim);
    int a = (int)(axis < 0 ? axis + data->ndim : axis);
    int nd = data->ndim - 1 + idx->ndim;
    int64_t d[OX_MAX_DIMS * 2];
    if (nd > OX_MAX_DIMS)
        return kl__ox_fail(im, n, KL_EUNSUPPORTED, "the result has %d axes; at most %d", nd,
                           OX_MAX_DIMS);
    memcpy(d, data->d, (size_t)a * sizeof *d);
    memcpy(d + a, idx->d, (size_t)idx->ndim * sizeof *d);
    memcpy(d + a + idx->ndim, data->d + a + 1, (size_t)(data->ndim - a - 1) * sizeof *d);
    kl_status st = kl__ox_const_new(im, n, data->dtype, nd, d, out);
    if (st)
        return st;
    int64_t outer = 1, inner = 1, len = data->d[a];
    for (int i = 0; i < a; i++)
        outer *= data->d[i];
    for (int i = a + 1; i < data->ndim; i++)
        inner *= data->d[i];
    size_t es = esize(data->dtype);
    for (int64_t j = 0; j < idx->n; j++) {
        int64_t k = ((const int64_t *)idx->data)[j];
        if (k < -len || k >= len)
            return kl__ox_fail(im, n, KL_EFORMAT, "index %lld is outside [-%lld, %lld)",
                               (long long)k, (long long)len, (long long)len);
        if (k < 0)
            k += len;
        for (int64_t o = 0; o < outer; o++)
            memcpy((char *)out->data + ((o * idx->n + j) * inner) * (int64_t)es,
                   (const char *)data->data + ((o * len + k) * inner) * (int64_t)es,
                   (size_t)inner * es);
    }
    return KL_OK;
}

/* Concat of constant inputs (every one of n's inputs) along axis. */
kl_status kl__ox_fold_concat(ox_import *im, ox_node *n, int64_t axis, ox_const *out)
{
    const ox_const *a = &n->in[0]->c;
    if (axis < -a->ndim || axis >= a->ndim)
        return kl__ox_fail(im, n, KL_EFORMAT, "axis %lld is outside the %d axes of the inputs",
                           (long long)axis, a->ndim);
    int ax = (int)(axis < 0 ? axis + a->ndim : axis);
    int64_t d[OX_MAX_DIMS];
    memcpy(d, a->d, sizeof d);
    d[ax] = 0;
    for (int i = 0; i < n->nin; i++) {
        const ox_const *b = &n->in[i]->c;
        bool ok = b->ndim == a->ndim && b->dtype == a->dtype;
        for (int k = 0; ok && k < a->ndim; k++)
            ok = k == ax || b->d[k] == a->d[k];
        if (!ok)
            return kl__ox_fail(im, n, KL_EFORMAT, "input %d does not match input 0 but on axis %d",
                               i, ax);
        if (d[ax] > INT64_MAX - b->d[ax])
            return kl__ox_fail(im, n, KL_EFORMAT, "the result is too large");
        d[ax] += b->d[ax];
    }
    kl_status st = kl__ox_const_new(im, n, a->dtype, a->ndim, d, out);
    if (st)
        return st;
    int64_t outer = 1, inner = 1, at = 0;
    for (int k = 0; k < ax; k++)
        outer *= a->d[k];
    for (int k = ax + 1; k < a->ndim; k++)
        inner *= a->d[k];
    size_t es = esize(a->dtype);
    for (int i = 0; i < n->nin; i++) {
        const ox_const *b = &n->in[i]->c;
        int64_t w = b->d[ax] * inner;
        for (int64_t o = 0; o < outer; o++)
            memcpy((char *)out->data + (o * d[ax] * inner + at) * (int64_t)es,
                   (const char *)b->data + o * w * (int64_t)es, (size_t)w * es);
        at += w;
    }
    return KL_OK;
}

/* Cast between the types kiln keeps: to FLOAT (1) or to INT64 (7) / INT32 (6), values kept as
 * int64 (truncated toward zero as C and ONNX do). The batch placeholder does not become a float. */
kl_status kl__ox_fold_cast(ox_import *im, ox_node *n, const ox_const *x, int64_t to, ox_const *out)
{
    bool to_f = to == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    bool to_i =
        to == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 || to == ONNX__TENSOR_PROTO__DATA_TYPE__INT32;
    if (!to_f && !to_i)
        return kl__ox_fail(im, n, KL_EUNSUPPORTED,
                           "a cast to data type %lld; kiln casts to FLOAT (1), INT32 (6) and "
                           "INT64 (7) only",
                           (long long)to);
    kl_status st = kl__ox_const_new(im, n, to_f ? OX_F32 : OX_I64, x->ndim, x->d, out);
    if (st)
        return st;
    for (int64_t i = 0; i < x->n; i++) {
        if (x->dtype == OX_I64) {
            int64_t v = ((const int64_t *)x->data)[i];
            if (v == OX_BATCH && to_f)
                return kl__ox_fail(im, n, KL_EUNSUPPORTED,
                                   "arithmetic on the batch size is not supported yet");
            if (to_f)
                ((float *)out->data)[i] = (float)v;
            else
                ((int64_t *)out->data)[i] = v;
        } else {
            float v = ((const float *)x->data)[i];
            if (to_f)
                ((float *)out->data)[i] = v;
            else if (!(fabsf(v) < 9.2e18f))
                return kl__ox_fail(im, n, KL_EFORMAT, "%g does not fit an integer", (double)v);
            else
                ((int64_t *)out->data)[i] = (int64_t)v;
        }
    }
    return KL_OK;
}
