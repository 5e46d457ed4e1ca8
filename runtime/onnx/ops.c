/* The ONNX operators kiln imports (runtime/onnx/), each mapped onto kiln's own ops with the
 * attribute semantics of every version in opsets 9 to 17, or refused with the reason: here the
 * computing ones (element-wise, linear algebra, convolution, pooling, normalisation) and the
 * table of every operator, the list docs/onnx.md publishes; the shape operators are
 * shape_ops.c's. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/onnx/onnx_impl.h"

/* ---- helpers shared with shape_ops.c (onnx_impl.h) ---- */

kl_status kl__ox_need_in(ox_import *im, ox_node *n, int i)
{
    if (i >= n->nin || !n->in[i])
        return kl__ox_fail(im, n, KL_EFORMAT, "input %d is missing", i);
    return KL_OK;
}

kl_status kl__ox_in_node(ox_import *im, ox_node *n, int i, kl_node *out)
{
    kl_status st = kl__ox_need_in(im, n, i);
    return st ? st : kl__ox_node_of(im, n, n->in[i], out);
}

kl_status kl__ox_set_out(ox_import *im, ox_node *n, kl_node node)
{
    kl_status st = kl_graph_status(im->g, im->err);
    if (st)
        return kl__ox_fail(im, n, st, "%s", im->err->msg);
    if (n->nout > 0 && n->out[0])
        kl__ox_set_node(n->out[0], node);
    return KL_OK;
}

void kl__ox_set_out_const(ox_node *n, const ox_const *c)
{
    if (n->nout > 0 && n->out[0])
        kl__ox_set_const(n->out[0], c);
}

/* An INTS attribute (up to max values): the count, or -1 when absent. */
int kl__ox_attr_ints(const ox_node *n, const char *name, int64_t *v, int max)
{
    const Onnx__AttributeProto *a = kl__ox_attr(n, name);
    if (!a)
        return -1;
    int k = a->n_ints > (size_t)max ? max + 1 : (int)a->n_ints;
    for (int i = 0; i < k && i < max; i++)
        v[i] = a->ints[i];
    return k;
}

kl_status kl__ox_norm_axis(ox_import *im, ox_node *n, int64_t axis, int nd, int *out)
{
    if (axis < -nd || axis >= nd)
        return kl__ox_fail(im, n, KL_EFORMAT, "axis %lld is outside the %d axes of the input",
                           (long long)axis, nd);
    *out = (int)(axis < 0 ? axis + nd : axis);
    return KL_OK;
}

/* A view of a graph node with the ONNX shape d (d[0] == OX_BATCH for a batched node). */
kl_status kl__ox_node_reshape(ox_import *im, ox_node *n, kl_node x, int nd, const int64_t *d,
                              kl_node *out)
{
    bool batched = kl_graph_batched(im->g, x);
    if (nd > KL_MAX_DIMS || nd < 1)
        return kl__ox_fail(im, n, KL_EUNSUPPORTED,
                           "a result of %d axes; kiln's tensors have 1 to %d", nd, KL_MAX_DIMS);
    if (batched != (d[0] == OX_BATCH))
        return kl__ox_fail(im, n, KL_EUNSUPPORTED,
                           "the result moves the batch axis (dim 0); kiln keeps the batch first");
    kl_shape s = {.ndim = batched ? nd - 1 : nd};
    for (int i = 0; i < s.ndim; i++)
        s.d[i] = d[i + (batched ? 1 : 0)];
    *out = kl_reshape(im->g, x, s);
    return kl_graph_status(im->g, im->err) ? kl__ox_fail(im, n, KL_ESHAPE, "%s", im->err->msg)
                                           : KL_OK;
}

kl_status kl__ox_map_identity(ox_import *im, ox_node *n)
{
    kl_status st = kl__ox_need_in(im, n, 0);
    if (st)
        return st;
    if (n->nout > 0 && n->out[0]) {
        const ox_value *x = n->in[0];
        n->out[0]->known = true;
        n->out[0]->is_const = x->is_const;
        n->out[0]->c = x->c;
        n->out[0]->node = x->node;
    }
    return KL_OK;
}

/* ---- element-wise ---- */

/* Dropout in inference is the identity; training mode (an input from opset 12) is refused. */
static kl_status map_dropout(ox_import *im, ox_node *n)
{
    if (im->opset >= 12 && n->nin >= 3 && n->in[2]) {
        const ox_value *t = n->in[2];
        if (!t->is_const || t->c.n != 1 ||
            (t->c.dtype == OX_I64 ? ((int64_t *)t->c.data)[0] : ((float *)t->c.data)[0]) != 0)
            return kl__ox_fail(im, n, KL_EUNSUPPORTED,
                               "training_mode must be a constant false: kiln imports models for "
                               "inference");
    }
    return kl__ox_map_identity(im, n);
}

static kl_status map_unary(ox_import *im, ox_node *n)
{
    kl_node x;
    kl_status st = kl__ox_in_node(im, n, 0, &x);
    if (st)
        return st;
    const char *op = n->p->op_type;
    kl_node y = !strcmp(op, "Relu")      ? kl_relu(im->g, x)
                : !strcmp(op, "Sigmoid") ? kl_sigmoid(im->g, x)
                : !strcmp(op, "Tanh")    ? kl_tanh(im->g, x)
                : !strcmp(op, "LeakyRelu")
                    ? kl_leaky_relu(im->g, x, kl__ox_attr_float(n, "alpha", 0.01f))
                    : KL_NONE;
    return kl__ox_set_out(im, n, y);
}

/* Clip: min and max attributes before opset 11, optional constant inputs from 11. */
static kl_status map_clip(ox_import *im, ox_node *n)
{
    kl_node x;
    kl_status st = kl__ox_in_node(im, n, 0, &x);
    if (st)
        return st;
    float lim[2] = {-FLT_MAX, FLT_MAX};
    if (im->opset < 11) {
        lim[0] = kl__ox_attr_float(n, "min", -FLT_MAX);
        lim[1] = kl__ox_attr_float(n, "max", FLT_MAX);
    } else {
        for (int i = 1; i <= 2 && i < n->nin; i++) {
            const ox_value *v = n->in[i];
            if (!v)
                continue;
            if (!v->is_const || v->c.n != 1 || v->c.dtype != OX_F32)
                return kl__ox_fail(im, n, KL_EUNSUPPORTED, "%s must be a constant float scalar",
                                   i == 1 ? "min" : "max");
            lim[i - 1] = ((const float *)v->c.data)[0];
        }
    }
    return kl__ox_set_out(im, n, kl_clip(im->g, x, lim[0], lim[1]));
}

/* numpy's broadcast of two ONNX shapes (OX_BATCH for a batch axis): false when they do not fit. */
static bool broadcast_shape(int na, const int64_t *a, int nb, const int64_t *b, int *nd, int64_t *d)
{
    *nd = na > nb ? na : nb;
    for (int i = 0; i < *nd; i++) {
        int64_t x = i < *nd - na ? 1 : a[i - (*nd - na)], y = i < *nd - nb ? 1 : b[i - (*nd - nb)];
        if (x == y || y == 1)
            d[i] = x;
        else if (x == 1)
            d[i] = y;
        else
            return false;
    }
    return true;
}

static bool same_dims(int na, const int64_t *a, int nb, const int64_t *b)
{
    return na == nb && !memcmp(a, b, (size_t)na * sizeof *a);
}

/* A constant b that is one value per channel of a (axis 1 of a batched a, every other axis 1):
 * bias_add covers it. */
static bool per_channel(int na, const int64_t *a, const ox_value *b)
{
    if (!b->is_const || b->c.dtype != OX_F32 || na < 2 || a[0] != OX_BATCH || b->c.ndim > na)
        return false;
    int off = na - b->c.ndim;
    for (int i = 0; i < b->c.ndim; i++) {
        int ax = i + off;
        if (b->c.d[i] != (ax == 1 ? a[1] : 1))
            return false;
    }
    return b->c.ndim >= na - 1;
}

static kl_status map_binary(ox_import *im, ox_node *n)
{
    const char *op = n->p->op_type;
    kl_status st;
    if ((st = kl__ox_need_in(im, n, 0)) || (st = kl__ox_need_in(im, n, 1)))
        return st;
    ox_value *va = n->in[0], *vb = n->in[1];
    int64_t da[OX_MAX_DIMS], db[OX_MAX_DIMS], d[OX_MAX_DIMS];
    bool ba, bb;
    int na = kl__ox_shape(im, va, da, &ba), nb = kl__ox_shape(im, vb, db, &bb), nd;
    if (!broadcast_shape(na, da, nb, db, &nd, d))
        return kl__ox_fail(im, n, KL_ESHAPE, "the input shapes do not broadcast");
    for (int i = 1; i < nd; i++)
        if (d[i] == OX_BATCH)
            return kl__ox_fail(im, n, KL_EUNSUPPORTED, "the batch axis would move");
    bool mul = !strcmp(op, "Mul"), div = !strcmp(op, "Div"), sub = !strcmp(op, "Sub");
    kl_node a, b, y;
    if ((st = kl__ox_in_node(im, n, 0, &a)))
        return st;
    /* A constant scalar multiplier or divisor is a scale. */
    if ((mul || div) && vb->is_const && vb->c.dtype == OX_F32 && vb->c.n == 1 &&
        same_dims(na, da, nd, d)) {
        float v = ((const float *)vb->c.data)[0];
        return kl__ox_set_out(im, n, kl_scale(im->g, a, div ? 1.0f / v : v));
    }
    /* A per-channel constant added or subtracted is bias_add. */
    if (!mul && !div && same_dims(na, da, nd, d) && per_channel(na, da, vb)) {
        ox_value bias = {
            .name = vb->name, .is_const = true, .known = true, .c = vb->c, .node = KL_NONE};
        bias.c.ndim = 1;
        bias.c.d[0] = da[1];
        if (sub) {
            float *neg = kl__ox_alloc(im, vb->c.n, sizeof(float));
            if (!neg)
                return KL_ENOMEM;
            for (int64_t i = 0; i < vb->c.n; i++)
                neg[i] = -((const float *)vb->c.data)[i];
            bias.c.data = neg;
        }
        if ((st = kl__ox_node_of(im, n, &bias, &b)))
            return st;
        return kl__ox_set_out(im, n, kl_bias_add(im->g, a, b));
    }
    if ((st = kl__ox_in_node(im, n, 1, &b)))
        return st;
    bool a_full = same_dims(na, da, nd, d), b_full = same_dims(nb, db, nd, d);
    if (!a_full && !b_full)
        return kl__ox_fail(
            im, n, KL_EUNSUPPORTED,
            "both inputs need broadcasting; kiln broadcasts one input to the other's "
            "shape (not supported yet)");
    if (!a_full)
        a = kl_broadcast(im->g, a, b);
    if (!b_full)
        b = kl_broadcast(im->g, b, a);
    y = !strcmp(op, "Add") ? kl_add(im->g, a, b)
        : sub              ? kl_sub(im->g, a, b)
        : mul              ? kl_mul(im->g, a, b)
                           : kl_div(im->g, a, b);
    return kl__ox_set_out(im, n, y);
}

/* Softmax and LogSoftmax: before opset 13 over every axis from `axis` (default 1) on, the input
 * seen as 2-D; from 13 over the one axis (default -1). kiln's ops work on the last axis, so the
 * input is viewed (before 13) or transposed (13 on) to bring those axes last. */
static kl_status map_softmax(ox_import *im, ox_node *n)
{
    kl_node x, y;
    kl_status st = kl__ox_in_node(im, n, 0, &x);
    if (st)
        return st;
    bool logsm = !strcmp(n->p->op_type, "LogSoftmax");
    int64_t d[OX_MAX_DIMS];
    bool batched;
    int nd = kl__ox_shape(im, n->in[0], d, &batched), a = 0;
    if ((st = kl__ox_norm_axis(im, n, kl__ox_attr_int(n, "axis", im->opset < 13 ? 1 : -1), nd, &a)))
        return st;
    if (a == 0 && batched)
        return kl__ox_fail(im, n, KL_EUNSUPPORTED,
                           "a softmax over the batch axis (axis 0) is not supported");
    if (a == nd - 1) {
        y = logsm ? kl_log_softmax(im->g, x) : kl_softmax(im->g, x);
        return kl__ox_set_out(im, n, y);
    }
    if (im->opset < 13) {
        int64_t flat[OX_MAX_DIMS];
        int64_t rest = 1;
        memcpy(flat, d, (size_t)a * sizeof *d);
        for (int i = a; i < nd; i++)
            rest *= d[i];
        flat[a] = rest;
        kl_node v, back;
        if ((st = kl__ox_node_reshape(im, n, x, a + 1, flat, &v)))
            return st;
        y = logsm ? kl_log_softmax(im->g, v) : kl_softmax(im->g, v);
        if ((st = kl__ox_node_reshape(im, n, y, nd, d, &back)))
            return st;
        return kl__ox_set_out(im, n, back);
    }
    int perm[KL_MAX_DIMS];
    for (int i = 0; i < nd; i++)
        perm[i] = i;
    perm[a] = nd - 1;
    perm[nd - 1] = a;
    kl_node t = kl_transpose(im->g, x, perm);
    y = logsm ? kl_log_softmax(im->g, t) : kl_softmax(im->g, t);
    return kl__ox_set_out(im, n, kl_transpose(im->g, y, perm));
}

/* ---- linear algebra ---- */

/* The transpose of a 2-D float constant, as a new constant value (weights stored (in, out)). */
static kl_status const_transpose(ox_import *im, ox_node *n, const ox_value *v, float alpha,
                                 bool transpose, ox_value *out)
{
    const ox_const *c = &v->c;
    if (c->dtype != OX_F32 || c->ndim != 2)
        return kl__ox_fail(im, n, KL_EUNSUPPORTED, "'%s' must be a 2-D float matrix", v->name);
    float *t = kl__ox_alloc(im, c->n, sizeof(float));
    if (!t)
        return KL_ENOMEM;
    int64_t r = c->d[0], k = c->d[1];
    const float *s = c->data;
    for (int64_t i = 0; i < r; i++)
        for (int64_t j = 0; j < k; j++)
            t[transpose ? j * r + i : i * k + j] = alpha * s[i * k + j];
    *out = (ox_value){.name = v->name, .known = true, .is_const = true, .c = *c, .node = KL_NONE};
    out->c.data = t;
    if (transpose) {
        out->c.d[0] = k;
        out->c.d[1] = r;
    }
    return KL_OK;
}

/* A bias constant C of (M), (1, M) or a scalar, scaled by beta, as an (M) value; false if C has
 * another shape (then it is added by broadcasting). */
static kl_status bias_of(ox_import *im, ox_node *n, const ox_value *v, int64_t m, float beta,
                         ox_value *out, bool *ok)
{
    const ox_const *c = &v->c;
    *ok = v->is_const && c->dtype == OX_F32 &&
          ((c->ndim == 1 && (c->d[0] == m || c->d[0] == 1)) ||
           (c->ndim == 2 && c->d[0] == 1 && (c->d[1] == m || c->d[1] == 1)) || c->ndim == 0);
    if (!*ok)
        return KL_OK;
    float *b = kl__ox_alloc(im, m, sizeof(float));
    if (!b)
        return KL_ENOMEM;
    for (int64_t i = 0; i < m; i++)
        b[i] = beta * ((const float *)c->data)[c->n == 1 ? 0 : i];
    *out = (ox_value){.name = v->name,
                      .known = true,
                      .is_const = true,
                      .node = KL_NONE,
                      .c = {.dtype = OX_F32, .ndim = 1, .d = {m}, .n = m, .data = b}};
    return KL_OK;
}

/* Gemm: alpha op(A) op(B) + beta C. A constant B becomes linear's (out, in) weight with alpha
 * folded in, a vector C its bias with beta folded in. */
static kl_status map_gemm(ox_import *im, ox_node *n)
{
    kl_status st;
    kl_node a, y, w, bias = KL_NONE;
    if ((st = kl__ox_in_node(im, n, 0, &a)) || (st = kl__ox_need_in(im, n, 1)))
        return st;
    bool ta = kl__ox_attr_int(n, "transA", 0), tb = kl__ox_attr_int(n, "transB", 0);
    float alpha = kl__ox_attr_float(n, "alpha", 1.0f), beta = kl__ox_attr_float(n, "beta", 1.0f);
    if (kl_graph_shape(im->g, a).ndim != 2)
        return kl__ox_fail(im, n, KL_ESHAPE, "A must be 2-D");
    if (ta && kl_graph_batched(im->g, a))
        return kl__ox_fail(im, n, KL_EUNSUPPORTED,
                           "transA on a batched A would contract the batch; not supported");
    ox_value *vb = n->in[1], *vc = n->nin > 2 ? n->in[2] : NULL;
    if (vb->is_const) {
        ox_value wt;
        if ((st = const_transpose(im, n, vb, alpha, !tb, &wt)) ||
            (st = kl__ox_node_of(im, n, &wt, &w)))
            return st;
        int64_t m = wt.c.d[0];
        bool ok = false;
        ox_value bv;
        if (vc && (st = bias_of(im, n, vc, m, beta, &bv, &ok)))
            return st;
        if (ok && (st = kl__ox_node_of(im, n, &bv, &bias)))
            return st;
        y = kl_linear(im->g, a, w, bias);
        if (!vc || ok)
            return kl__ox_set_out(im, n, y);
    } else {
        if ((st = kl__ox_in_node(im, n, 1, &w)))
            return st;
        y = kl_matmul(im->g, a, w, ta, tb);
        if (alpha != 1.0f)
            y = kl_scale(im->g, y, alpha);
        if (!vc)
            return kl__ox_set_out(im, n, y);
    }
    /* A C that is not a vector: beta C broadcast and added. */
    kl_node c;
    if ((st = kl__ox_node_of(im, n, vc, &c)))
        return st;
    if (beta != 1.0f)
        c = kl_scale(im->g, c, beta);
    kl_shape sy = kl_graph_shape(im->g, y), sc = kl_graph_shape(im->g, c);
    if (!kl_shape_eq(&sy, &sc) || kl_graph_batched(im->g, y) != kl_graph_batched(im->g, c))
        c = kl_broadcast(im->g, c, y);
    return kl__ox_set_out(im, n, kl_add(im->g, y, c));
}

/* MatMul: a constant 2-D B is linear's weight (transposed at load); two computed 2-D matrices
 * are matmul. */
static kl_status map_matmul(ox_import *im, ox_node *n)
{
    kl_status st;
    kl_node a, b;
    if ((st = kl__ox_in_node(im, n, 0, &a)) || (st = kl__ox_need_in(im, n, 1)))
        return st;
    if (n->in[1]->is_const && n->in[1]->c.ndim == 2) {
        ox_value wt;
        if ((st = const_transpose(im, n, n->in[1], 1.0f, true, &wt)) ||
            (st = kl__ox_node_of(im, n, &wt, &b)))
            return st;
        return kl__ox_set_out(im, n, kl_linear(im->g, a, b, KL_NONE));
    }
    if ((st = kl__ox_in_node(im, n, 1, &b)))
        return st;
    if (kl_graph_shape(im->g, a).ndim != 2 || kl_graph_shape(im->g, b).ndim != 2)
        return kl__ox_fail(im, n, KL_EUNSUPPORTED,
                           "MatMul of computed tensors of more than 2 axes (batched matrix "
                           "products) is not supported yet");
    return kl__ox_set_out(im, n, kl_matmul(im->g, a, b, false, false));
}

/* ---- convolution and pooling ---- */

/* The padding of a window over an (H, W) input with a (kH, kW) window, from auto_pad and pads:
 * p = [top, left, bottom, right] (ONNX's order). */
static kl_status window_pads(ox_import *im, ox_node *n, const int64_t *hw, const int64_t *k,
                             int64_t stride, int64_t *p)
{
    const Onnx__AttributeProto *ap = kl__ox_attr(n, "auto_pad");
    char mode[16] = "NOTSET";
    if (ap && ap->has_s) {
        size_t len = ap->s.len < sizeof mode - 1 ? ap->s.len : sizeof mode - 1;
        memcpy(mode, ap->s.data, len);
        mode[len] = '\0';
    }
    p[0] = p[1] = p[2] = p[3] = 0;
    if (!strcmp(mode, "SAME_UPPER") || !strcmp(mode, "SAME_LOWER")) {
        for (int i = 0; i < 2; i++) {
            int64_t out = (hw[i] + stride - 1) / stride;
            int64_t total = (out - 1) * stride + k[i] - hw[i];
            total = total < 0 ? 0 : total;
            p[i] = p[i + 2] = total / 2;
            p[!strcmp(mode, "SAME_UPPER") ? i + 2 : i] += total % 2;
        }
    } else if (!strcmp(mode, "NOTSET")) {
        int c = kl__ox_attr_ints(n, "pads", p, 4);
        if (c != -1 && c != 4)
            return kl__ox_fail(im, n, KL_EFORMAT, "pads needs 4 values for a 2-D window");
    } else if (strcmp(mode, "VALID"))
        return kl__ox_fail(im, n, KL_EFORMAT, "auto_pad '%s' is not an ONNX mode", mode);
    for (int i = 0; i < 4; i++)
        if (p[i] < 0 || p[i] > 1 << 20)
            return kl__ox_fail(im, n, KL_EUNSUPPORTED,
                               "pads [%lld, %lld, %lld, %lld]: each must be from 0 to 2^20",
                               (long long)p[0], (long long)p[1], (long long)p[2], (long long)p[3]);
    return KL_OK;
}

/* The window's padding as kiln's ops take it: *pad on every side when p is even and at most
 * max_even; otherwise x padded with value by a pad2d node first (*x replaced) and *pad 0. */
static void apply_pads(ox_import *im, const int64_t *p, int64_t max_even, float value, kl_node *x,
                       int *pad)
{
    if (p[0] == p[1] && p[0] == p[2] && p[0] == p[3] && p[0] <= max_even) {
        *pad = (int)p[0];
        return;
    }
    *pad = 0;
    *x = kl_pad2d(im->g, *x, (int)p[0], (int)p[2], (int)p[1], (int)p[3], value);
}

/* strides and dilations of a 2-D window: one stride for both axes, dilation 1. */
static kl_status window_stride(ox_import *im, ox_node *n, int *stride, int64_t *dil)
{
    int64_t s[4] = {1, 1}, dl[4] = {1, 1};
    int cs = kl__ox_attr_ints(n, "strides", s, 2), cd = kl__ox_attr_ints(n, "dilations", dl, 2);
    if ((cs != -1 && cs != 2) || (cd != -1 && cd != 2))
        return kl__ox_fail(im, n, KL_EUNSUPPORTED, "strides and dilations need 2 values (2-D)");
    if (s[0] != s[1] || s[0] < 1 || s[0] > 1 << 20)
        return kl__ox_fail(im, n, KL_EUNSUPPORTED,
                           "strides [%lld, %lld]: kiln takes one stride for both axes",
                           (long long)s[0], (long long)s[1]);
    if (dl[0] < 1 || dl[1] < 1 || dl[0] > 1 << 16 || dl[1] > 1 << 16)
        return kl__ox_fail(im, n, KL_EFORMAT, "dilations [%lld, %lld] out of range",
                           (long long)dl[0], (long long)dl[1]);
    if (!dil && (dl[0] != 1 || dl[1] != 1))
        return kl__ox_fail(im, n, KL_EUNSUPPORTED, "dilations other than 1 are not supported yet");
    if (dil) {
        dil[0] = dl[0];
        dil[1] = dl[1];
    }
    *stride = (int)s[0];
    return KL_OK;
}

/* A grouped or dilated convolution as a plain one: W (M, C/group, kH, kW) spread into a weight
 * (M, C, (kH-1) dH + 1, (kW-1) dW + 1) that is zero outside each output channel's group and
 * between the dilated taps. The products with those zeros add exact zeros (for finite inputs),
 * so the result is the grouped (or dilated) convolution's, at group times (and the dilated
 * window's) cost. */
static kl_status spread_weight(ox_import *im, ox_node *n, const ox_value *wv, int64_t c,
                               int64_t group, const int64_t *dil, ox_value *out)
{
    const ox_const *w = &wv->c;
    if (!wv->is_const || w->dtype != OX_F32 || w->ndim != 4)
        return kl__ox_fail(im, n, KL_EUNSUPPORTED,
                           "a grouped or dilated convolution needs W as a constant (M, C/group, "
                           "kH, kW)");
    int64_t m = w->d[0], cg = w->d[1], kh = w->d[2], kw = w->d[3];
    if (group < 1 || m % group || cg * group != c)
        return kl__ox_fail(im, n, KL_ESHAPE,
                           "group %lld does not divide W (%lld, %lld, ...) and the input's %lld "
                           "channels",
                           (long long)group, (long long)m, (long long)cg, (long long)c);
    int64_t d[4] = {m, c, (kh - 1) * dil[0] + 1, (kw - 1) * dil[1] + 1};
    ox_const big;
    kl_status st = kl__ox_const_new(im, n, OX_F32, 4, d, &big);
    if (st)
        return st;
    const float *src = w->data;
    float *dst = big.data;
    for (int64_t o = 0; o < m; o++) {
        int64_t first = o / (m / group) * cg; /* the group's first input channel */
        for (int64_t k = 0; k < cg; k++)
            for (int64_t i = 0; i < kh; i++)
                for (int64_t j = 0; j < kw; j++)
                    dst[((o * c + first + k) * d[2] + i * dil[0]) * d[3] + j * dil[1]] =
                        src[((o * cg + k) * kh + i) * kw + j];
    }
    *out = (ox_value){.name = wv->name, .known = true, .is_const = true, .c = big, .node = KL_NONE};
    return KL_OK;
}

static kl_status need_4d(ox_import *im, ox_node *n, kl_node x, int64_t *hw)
{
    kl_shape s = kl_graph_shape(im->g, x);
    if (s.ndim != 4)
        return kl__ox_fail(im, n, KL_EUNSUPPORTED,
                           "an input of %d axes; kiln's %s takes (N, C, H, W) only", s.ndim,
                           n->p->op_type);
    hw[0] = s.d[2];
    hw[1] = s.d[3];
    return KL_OK;
}

static kl_status map_conv(ox_import *im, ox_node *n)
{
    kl_status st;
    kl_node x, w, y;
    int64_t hw[2], ks[2], dil[2], kattr[4];
    int stride, pad;
    if ((st = kl__ox_in_node(im, n, 0, &x)) || (st = need_4d(im, n, x, hw)) ||
        (st = kl__ox_need_in(im, n, 1)) || (st = window_stride(im, n, &stride, dil)))
        return st;
    int64_t group = kl__ox_attr_int(n, "group", 1), c = kl_graph_shape(im->g, x).d[1];
    if (group != 1 || dil[0] != 1 || dil[1] != 1) {
        ox_value spread;
        if ((st = spread_weight(im, n, n->in[1], c, group, dil, &spread)) ||
            (st = kl__ox_node_of(im, n, &spread, &w)))
            return st;
    } else if ((st = kl__ox_in_node(im, n, 1, &w)))
        return st;
    kl_shape ws = kl_graph_shape(im->g, w);
    if (ws.ndim != 4)
        return kl__ox_fail(im, n, KL_ESHAPE, "W must be (M, C, kH, kW)");
    ks[0] = ws.d[2];
    ks[1] = ws.d[3];
    int kc = kl__ox_attr_ints(n, "kernel_shape", kattr, 2);
    if (kc != -1 &&
        (kc != 2 || (kattr[0] - 1) * dil[0] + 1 != ks[0] || (kattr[1] - 1) * dil[1] + 1 != ks[1]))
        return kl__ox_fail(im, n, KL_ESHAPE, "kernel_shape does not match W");
    int64_t p[4];
    if ((st = window_pads(im, n, hw, ks, stride, p)))
        return st;
    apply_pads(im, p, INT32_MAX, 0.0f, &x, &pad);
    y = kl_conv2d(im->g, x, w, stride, pad);
    if (n->nin > 2 && n->in[2]) {
        kl_node b;
        if ((st = kl__ox_in_node(im, n, 2, &b)))
            return st;
        y = kl_bias_add(im->g, y, b);
    }
    return kl__ox_set_out(im, n, y);
}

/* MaxPool and AveragePool: a square window, one stride. Even padding up to half the window is the
 * pool's own; other padding (at most the window less 1 on each side) is a pad2d node first, of
 * -inf for MaxPool and of zeros for AveragePool, whose divisor then counts it (count_include_pad
 * 1; with 0 and padding the average is refused). ceil_mode is taken where it changes nothing. */
static kl_status map_pool(ox_import *im, ox_node *n)
{
    kl_status st;
    kl_node x;
    int64_t hw[2], k[4], p[4];
    int stride, pad;
    bool avg = !strcmp(n->p->op_type, "AveragePool");
    if ((st = kl__ox_in_node(im, n, 0, &x)) || (st = need_4d(im, n, x, hw)))
        return st;
    if (kl__ox_attr_ints(n, "kernel_shape", k, 2) != 2 || k[0] != k[1] || k[0] < 1 ||
        k[0] > 1 << 20)
        return kl__ox_fail(im, n, KL_EUNSUPPORTED,
                           "kernel_shape must be a square 2-D window (non-square: not supported "
                           "yet)");
    k[1] = k[0];
    if ((st = window_stride(im, n, &stride, NULL)) || (st = window_pads(im, n, hw, k, stride, p)))
        return st;
    for (int i = 0; i < 4; i++)
        if (p[i] >= k[0])
            return kl__ox_fail(im, n, KL_EFORMAT,
                               "pads [%lld, %lld, %lld, %lld] reach a whole "
                               "%lld-wide window",
                               (long long)p[0], (long long)p[1], (long long)p[2], (long long)p[3],
                               (long long)k[0]);
    if (kl__ox_attr_int(n, "ceil_mode", 0)) {
        for (int i = 0; i < 2; i++) {
            int64_t span = hw[i] + p[i] + p[i + 2] - k[0];
            if (span >= 0 && span % stride)
                return kl__ox_fail(im, n, KL_EUNSUPPORTED,
                                   "ceil_mode 1 where it adds a partial window is not supported "
                                   "yet");
        }
    }
    bool padded = p[0] || p[1] || p[2] || p[3];
    if (avg && padded && !kl__ox_attr_int(n, "count_include_pad", 0))
        return kl__ox_fail(im, n, KL_EUNSUPPORTED,
                           "padding with count_include_pad 0: kiln's average counts the padding "
                           "(not supported yet)");
    apply_pads(im, p, k[0] / 2, avg ? 0.0f : -INFINITY, &x, &pad);
    kl_node y = avg ? kl_avg_pool2d(im->g, x, (int)k[0], stride, pad)
                    : kl_max_pool2d(im->g, x, (int)k[0], stride, pad);
    return kl__ox_set_out(im, n, y);
}

static kl_status map_global_avg_pool(ox_import *im, ox_node *n)
{
    kl_status st;
    kl_node x, y;
    int64_t hw[2];
    if ((st = kl__ox_in_node(im, n, 0, &x)) || (st = need_4d(im, n, x, hw)))
        return st;
    kl_shape s = kl_graph_shape(im->g, x);
    bool batched = kl_graph_batched(im->g, x);
    int64_t d[4] = {batched ? OX_BATCH : s.d[0], s.d[1], 1, 1};
    if ((st = kl__ox_node_reshape(im, n, kl_global_avg_pool(im->g, x), 4, d, &y)))
        return st;
    return kl__ox_set_out(im, n, y);
}

/* BatchNormalization in inference: the running statistics (buffers) normalise. */
static kl_status map_batchnorm(ox_import *im, ox_node *n)
{
    kl_status st;
    kl_node x, gamma, beta, mean, var;
    if (im->opset >= 14 && kl__ox_attr_int(n, "training_mode", 0))
        return kl__ox_fail(im, n, KL_EUNSUPPORTED,
                           "training_mode 1: kiln imports models for inference");
    if ((st = kl__ox_in_node(im, n, 0, &x)) || (st = kl__ox_in_node(im, n, 1, &gamma)) ||
        (st = kl__ox_in_node(im, n, 2, &beta)) || (st = kl__ox_need_in(im, n, 3)) ||
        (st = kl__ox_need_in(im, n, 4)) || (st = kl__ox_buffer_of(im, n, n->in[3], &mean)) ||
        (st = kl__ox_buffer_of(im, n, n->in[4], &var)))
        return st;
    float eps = kl__ox_attr_float(n, "epsilon", 1e-5f);
    return kl__ox_set_out(im, n, kl_batchnorm(im->g, x, gamma, beta, mean, var, 0.1f, eps));
}

/* ---- the table ---- */

const ox_op kl__ox_ops[] = {
    {"Add", map_binary},
    {"AveragePool", map_pool},
    {"BatchNormalization", map_batchnorm},
    {"Cast", kl__ox_map_cast},
    {"Clip", map_clip},
    {"Concat", kl__ox_map_concat},
    {"Constant", kl__ox_map_constant},
    {"Conv", map_conv},
    {"Div", map_binary},
    {"Dropout", map_dropout},
    {"Flatten", kl__ox_map_flatten},
    {"Gather", kl__ox_map_gather},
    {"Gemm", map_gemm},
    {"GlobalAveragePool", map_global_avg_pool},
    {"Identity", kl__ox_map_identity},
    {"LeakyRelu", map_unary},
    {"LogSoftmax", map_softmax},
    {"MatMul", map_matmul},
    {"MaxPool", map_pool},
    {"Mul", map_binary},
    {"Pad", kl__ox_map_pad},
    {"Relu", map_unary},
    {"Reshape", kl__ox_map_reshape},
    {"Shape", kl__ox_map_shape},
    {"Sigmoid", map_unary},
    {"Softmax", map_softmax},
    {"Squeeze", kl__ox_map_squeeze},
    {"Sub", map_binary},
    {"Tanh", map_unary},
    {"Transpose", kl__ox_map_transpose},
    {"Unsqueeze", kl__ox_map_squeeze},
};
const int kl__ox_nops = (int)(sizeof kl__ox_ops / sizeof kl__ox_ops[0]);

const ox_op *kl__ox_op_find(const char *name)
{
    for (int i = 0; i < kl__ox_nops; i++)
        if (!strcmp(kl__ox_ops[i].name, name))
            return &kl__ox_ops[i];
    return NULL;
}

const char *kl_onnx_supported_ops(void)
{
    return "Add, AveragePool, BatchNormalization, Cast, Clip, Concat, Constant, Conv, Div, "
           "Dropout, Flatten, Gather, Gemm, GlobalAveragePool, Identity, LeakyRelu, LogSoftmax, "
           "MatMul, MaxPool, Mul, Pad, Relu, Reshape, Shape, Sigmoid, Softmax, Squeeze, Sub, Tanh, "
           "Transpose, Unsqueeze";
}
