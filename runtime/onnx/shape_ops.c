/* The ONNX importer's shape operators (runtime/onnx/): Flatten, Reshape, Unsqueeze, Squeeze,
 * Transpose, Concat and Pad as views or copies of graph nodes, and, on constants, folded at load
 * time with fold.c's helpers (Cast, Constant, Shape, Gather too), so that the shape-only parts of
 * a graph never reach it. ops.c's table dispatches here. */
#include <math.h>
#include <string.h>

#include "runtime/onnx/onnx_impl.h"

/* Axes from the attribute (before opset 13) or from constant input 1 (13 on); -1 when absent. */
static kl_status axes_of(ox_import *im, ox_node *n, int64_t *axes, int *count)
{
    if (im->opset < 13) {
        *count = kl__ox_attr_ints(n, "axes", axes, OX_MAX_DIMS);
    } else if (n->nin < 2 || !n->in[1]) {
        *count = -1;
    } else {
        const ox_value *v = n->in[1];
        if (!v->is_const || v->c.dtype != OX_I64)
            return kl__ox_fail(im, n, KL_EUNSUPPORTED, "the axes must be a constant of integers");
        *count = v->c.n > OX_MAX_DIMS ? OX_MAX_DIMS + 1 : (int)v->c.n;
        for (int i = 0; i < *count && i < OX_MAX_DIMS; i++)
            axes[i] = ((const int64_t *)v->c.data)[i];
    }
    if (*count > OX_MAX_DIMS)
        return kl__ox_fail(im, n, KL_EUNSUPPORTED, "more than %d axes", OX_MAX_DIMS);
    return KL_OK;
}

/* A constant with new dims and the same values. */
static kl_status const_reshape(ox_import *im, ox_node *n, const ox_const *x, int nd,
                               const int64_t *d)
{
    ox_const c = *x;
    int64_t prod = 1;
    if (nd > OX_MAX_DIMS)
        return kl__ox_fail(im, n, KL_EUNSUPPORTED, "a constant of %d axes", nd);
    for (int i = 0; i < nd; i++) {
        if (d[i] < 0 || (d[i] && prod > INT64_MAX / d[i]))
            return kl__ox_fail(im, n, KL_EFORMAT, "a bad target shape");
        prod *= d[i];
    }
    if (prod != x->n)
        return kl__ox_fail(im, n, KL_ESHAPE, "cannot view %lld values as %lld", (long long)x->n,
                           (long long)prod);
    c.ndim = nd;
    memcpy(c.d, d, (size_t)nd * sizeof *d);
    kl__ox_set_out_const(n, &c);
    return KL_OK;
}

/* ---- shapes ---- */

/* Flatten: (prod of axes before `axis`, prod of the rest); on a batched input axis must be 1. */
kl_status kl__ox_map_flatten(ox_import *im, ox_node *n)
{
    kl_status st = kl__ox_need_in(im, n, 0);
    if (st)
        return st;
    int64_t d[OX_MAX_DIMS], out[2] = {1, 1};
    bool batched;
    int nd = kl__ox_shape(im, n->in[0], d, &batched), a;
    int64_t axis = kl__ox_attr_int(n, "axis", 1);
    if (axis == nd)
        a = nd;
    else if ((st = kl__ox_norm_axis(im, n, axis, nd, &a)))
        return st;
    if (batched && a != 1)
        return kl__ox_fail(im, n, KL_EUNSUPPORTED,
                           "axis %d would fold the batch into other axes; kiln keeps it first", a);
    for (int i = batched ? 1 : 0; i < nd; i++)
        out[i < a ? 0 : 1] *= d[i];
    if (batched)
        out[0] = OX_BATCH;
    if (n->in[0]->is_const)
        return const_reshape(im, n, &n->in[0]->c, 2, out);
    kl_node y;
    if ((st = kl__ox_node_reshape(im, n, n->in[0]->node, 2, out, &y)))
        return st;
    return kl__ox_set_out(im, n, y);
}

/* Reshape: 0 copies the input's dim (unless allowzero, opset 14), -1 is inferred, and the batch
 * placeholder of a folded Shape keeps the batch. A batched input must keep its batch in dim 0. */
kl_status kl__ox_map_reshape(ox_import *im, ox_node *n)
{
    kl_status st;
    if ((st = kl__ox_need_in(im, n, 0)) || (st = kl__ox_need_in(im, n, 1)))
        return st;
    const ox_value *sv = n->in[1];
    if (!sv->is_const || sv->c.dtype != OX_I64 || sv->c.ndim != 1)
        return kl__ox_fail(im, n, KL_EUNSUPPORTED,
                           "the target shape must be a constant (or fold to one at load time)");
    if (sv->c.n > OX_MAX_DIMS || sv->c.n < 1)
        return kl__ox_fail(im, n, KL_EUNSUPPORTED, "a target of %lld axes", (long long)sv->c.n);
    int64_t d[OX_MAX_DIMS], t[OX_MAX_DIMS];
    bool batched;
    int nd = kl__ox_shape(im, n->in[0], d, &batched), nt = (int)sv->c.n, infer = -1;
    bool allowzero = im->opset >= 14 && kl__ox_attr_int(n, "allowzero", 0);
    int64_t per = 1, known = 1; /* elements per sample, and the target's known product */
    for (int i = batched ? 1 : 0; i < nd; i++)
        per *= d[i];
    for (int i = 0; i < nt; i++) {
        int64_t v = ((const int64_t *)sv->c.data)[i];
        if (v == 0 && !allowzero) {
            if (i >= nd)
                return kl__ox_fail(im, n, KL_EFORMAT, "a 0 at axis %d copies no input axis", i);
            v = d[i];
        }
        if (v == OX_BATCH && i != 0)
            return kl__ox_fail(im, n, KL_EUNSUPPORTED, "the batch size moves to axis %d", i);
        if (v == -1) {
            if (infer >= 0)
                return kl__ox_fail(im, n, KL_EFORMAT, "more than one -1 in the target shape");
            infer = i;
        } else if (v < -1 && v != OX_BATCH)
            return kl__ox_fail(im, n, KL_EFORMAT, "target dim %lld", (long long)v);
        t[i] = v;
    }
    /* The batch: a placeholder or copied dim 0, the file's fixed batch, or a -1 that leaves the
     * per-sample size intact. */
    if (batched) {
        if (t[0] != OX_BATCH && !(im->batch > 0 && t[0] == im->batch) && infer != 0)
            return kl__ox_fail(im, n, KL_EUNSUPPORTED,
                               "the target [%lld, ...] changes the batch axis; kiln keeps the "
                               "batch in dim 0",
                               (long long)t[0]);
        t[0] = OX_BATCH;
        if (infer == 0)
            infer = -1;
    } else if (t[0] == OX_BATCH)
        return kl__ox_fail(im, n, KL_EUNSUPPORTED, "a batch size given to an unbatched tensor");
    for (int i = batched ? 1 : 0; i < nt; i++)
        if (i != infer) {
            if (t[i] && known > INT64_MAX / t[i])
                return kl__ox_fail(im, n, KL_EFORMAT, "the target shape overflows");
            known *= t[i];
        }
    if (infer >= 0) {
        if (!known || per % known)
            return kl__ox_fail(im, n, KL_ESHAPE, "cannot infer the -1 of the target shape");
        t[infer] = per / known;
    } else if (known != per)
        return kl__ox_fail(im, n, KL_ESHAPE, "%lld elements cannot take the target shape",
                           (long long)per);
    if (n->in[0]->is_const)
        return const_reshape(im, n, &n->in[0]->c, nt, t);
    kl_node y;
    if ((st = kl__ox_node_reshape(im, n, n->in[0]->node, nt, t, &y)))
        return st;
    return kl__ox_set_out(im, n, y);
}

/* Unsqueeze and Squeeze: views; axes from the attribute (before 13) or input 1 (13 on). */
kl_status kl__ox_map_squeeze(ox_import *im, ox_node *n)
{
    kl_status st = kl__ox_need_in(im, n, 0);
    if (st)
        return st;
    bool unsq = !strcmp(n->p->op_type, "Unsqueeze");
    int64_t axes[OX_MAX_DIMS + 1], d[OX_MAX_DIMS], t[OX_MAX_DIMS * 2];
    int na = 0;
    bool batched, hit[OX_MAX_DIMS * 2] = {false};
    if ((st = axes_of(im, n, axes, &na)))
        return st;
    int nd = kl__ox_shape(im, n->in[0], d, &batched), nt = unsq ? nd + (na < 0 ? 0 : na) : nd;
    if (unsq && na < 0)
        return kl__ox_fail(im, n, KL_EFORMAT, "axes are required");
    for (int i = 0; i < na; i++) {
        int a;
        if ((st = kl__ox_norm_axis(im, n, axes[i], nt, &a)))
            return st;
        if (hit[a])
            return kl__ox_fail(im, n, KL_EFORMAT, "axis %d is given twice", a);
        hit[a] = true;
        if (!unsq && d[a] != 1)
            return kl__ox_fail(im, n, KL_ESHAPE, "axis %d has size %lld, not 1", a,
                               (long long)d[a]);
    }
    int k = 0;
    if (unsq) {
        for (int i = 0, j = 0; i < nt; i++)
            t[k++] = hit[i] ? 1 : d[j++];
    } else {
        for (int i = 0; i < nd; i++)
            if (!(na < 0 ? d[i] == 1 : hit[i]))
                t[k++] = d[i];
    }
    if (n->in[0]->is_const)
        return const_reshape(im, n, &n->in[0]->c, k, t);
    kl_node y;
    if ((st = kl__ox_node_reshape(im, n, n->in[0]->node, k, t, &y)))
        return st;
    return kl__ox_set_out(im, n, y);
}

kl_status kl__ox_map_transpose(ox_import *im, ox_node *n)
{
    kl_node x;
    kl_status st = kl__ox_in_node(im, n, 0, &x);
    if (st)
        return st;
    int nd = kl_graph_shape(im->g, x).ndim, perm[KL_MAX_DIMS];
    int64_t p[KL_MAX_DIMS + 1];
    int c = kl__ox_attr_ints(n, "perm", p, KL_MAX_DIMS);
    if (c != -1 && c != nd)
        return kl__ox_fail(im, n, KL_EFORMAT, "perm has %d entries for %d axes", c, nd);
    for (int i = 0; i < nd; i++) {
        int64_t v = c == -1 ? nd - 1 - i : p[i];
        perm[i] = v >= 0 && v < nd ? (int)v : -1;
    }
    return kl__ox_set_out(im, n, kl_transpose(im->g, x, perm));
}

kl_status kl__ox_map_concat(ox_import *im, ox_node *n)
{
    kl_status st;
    bool all_const = true;
    if (n->nin < 1)
        return kl__ox_fail(im, n, KL_EFORMAT, "no inputs");
    if (!kl__ox_attr(n, "axis"))
        return kl__ox_fail(im, n, KL_EFORMAT, "the axis attribute is required");
    int64_t axis = kl__ox_attr_int(n, "axis", 0);
    for (int i = 0; i < n->nin; i++) {
        if ((st = kl__ox_need_in(im, n, i)))
            return st;
        all_const &= n->in[i]->is_const;
    }
    if (all_const) {
        ox_const c;
        if ((st = kl__ox_fold_concat(im, n, axis, &c)))
            return st;
        kl__ox_set_out_const(n, &c);
        return KL_OK;
    }
    if (n->nin > 8)
        return kl__ox_fail(im, n, KL_EUNSUPPORTED, "more than %d computed inputs", 8);
    kl_node xs[8];
    for (int i = 0; i < n->nin; i++)
        if ((st = kl__ox_in_node(im, n, i, &xs[i])))
            return st;
    int nd = kl_graph_shape(im->g, xs[0]).ndim, a;
    if ((st = kl__ox_norm_axis(im, n, axis, nd, &a)))
        return st;
    return kl__ox_set_out(im, n, kl_concat(im->g, xs, n->nin, a));
}

/* Pad, constant mode: the spatial axes of an (N, C, H, W) input by pad2d, with the value of the
 * attribute (before opset 11) or of constant input 2 (11 on); pads of nothing (all 0) in any mode
 * are the identity. Pads come from the attribute before 11 and from constant input 1 from 11. */
kl_status kl__ox_map_pad(ox_import *im, ox_node *n)
{
    int64_t pads[2 * OX_MAX_DIMS + 1];
    int np;
    float value = 0.0f;
    if (im->opset < 11) {
        np = kl__ox_attr_ints(n, "pads", pads, 2 * OX_MAX_DIMS);
        value = kl__ox_attr_float(n, "value", 0.0f);
    } else {
        const ox_value *v = n->nin > 1 ? n->in[1] : NULL, *c = n->nin > 2 ? n->in[2] : NULL;
        if (!v || !v->is_const || v->c.dtype != OX_I64)
            return kl__ox_fail(im, n, KL_EUNSUPPORTED, "the pads must be a constant of integers");
        np = v->c.n > 2 * OX_MAX_DIMS ? 2 * OX_MAX_DIMS + 1 : (int)v->c.n;
        for (int i = 0; i < np && i < 2 * OX_MAX_DIMS; i++)
            pads[i] = ((const int64_t *)v->c.data)[i];
        if (c && (!c->is_const || c->c.dtype != OX_F32 || c->c.n != 1))
            return kl__ox_fail(im, n, KL_EUNSUPPORTED,
                               "constant_value must be a constant float scalar");
        value = c ? ((const float *)c->c.data)[0] : 0.0f;
    }
    bool any = false;
    for (int i = 0; i < np && i < 2 * OX_MAX_DIMS; i++)
        any |= pads[i] != 0;
    if (!any)
        return kl__ox_map_identity(im, n);
    const Onnx__AttributeProto *mode = kl__ox_attr(n, "mode");
    bool constant =
        !mode || !mode->has_s || (mode->s.len == 8 && !memcmp(mode->s.data, "constant", 8));
    kl_node x;
    kl_status st = kl__ox_in_node(im, n, 0, &x);
    if (st)
        return st;
    kl_shape s = kl_graph_shape(im->g, x);
    bool spatial = constant && s.ndim == 4 && np == 8 && !pads[0] && !pads[1] && !pads[4] &&
                   !pads[5] && isfinite(value);
    for (int i = 0; spatial && i < 8; i++)
        spatial = pads[i] >= 0 && pads[i] <= 1 << 20;
    if (!spatial)
        return kl__ox_fail(im, n, KL_EUNSUPPORTED,
                           "kiln pads the last two axes of a 4-D tensor by non-negative amounts "
                           "with a constant (other modes, axes or negative pads: not supported "
                           "yet)");
    return kl__ox_set_out(
        im, n, kl_pad2d(im->g, x, (int)pads[2], (int)pads[6], (int)pads[3], (int)pads[7], value));
}

/* ---- constants, folded ---- */

kl_status kl__ox_map_cast(ox_import *im, ox_node *n)
{
    kl_status st = kl__ox_need_in(im, n, 0);
    if (st)
        return st;
    int64_t to = kl__ox_attr_int(n, "to", 0);
    if (n->in[0]->is_const) {
        ox_const c;
        if ((st = kl__ox_fold_cast(im, n, &n->in[0]->c, to, &c)))
            return st;
        kl__ox_set_out_const(n, &c);
        return KL_OK;
    }
    if (to != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT)
        return kl__ox_fail(im, n, KL_EUNSUPPORTED,
                           "a cast of a computed tensor to data type %lld; kiln computes on "
                           "FLOAT (1) only",
                           (long long)to);
    return kl__ox_map_identity(im, n);
}

kl_status kl__ox_map_constant(ox_import *im, ox_node *n)
{
    ox_const c;
    kl_status st;
    const Onnx__AttributeProto *a;
    if ((a = kl__ox_attr(n, "value"))) {
        if (!a->t)
            return kl__ox_fail(im, n, KL_EFORMAT, "value holds no tensor");
        if ((st = kl__ox_tensor(im, a->t, n->out[0] ? n->out[0]->name : "constant", &c)))
            return st;
    } else if ((a = kl__ox_attr(n, "value_float")) || (a = kl__ox_attr(n, "value_int"))) {
        bool f = !strcmp(a->name, "value_float");
        if ((st = kl__ox_const_new(im, n, f ? OX_F32 : OX_I64, 0, NULL, &c)))
            return st;
        if (f)
            ((float *)c.data)[0] = a->f;
        else
            ((int64_t *)c.data)[0] = a->i;
    } else if ((a = kl__ox_attr(n, "value_floats")) || (a = kl__ox_attr(n, "value_ints"))) {
        bool f = !strcmp(a->name, "value_floats");
        int64_t len = (int64_t)(f ? a->n_floats : a->n_ints);
        if ((st = kl__ox_const_new(im, n, f ? OX_F32 : OX_I64, 1, &len, &c)))
            return st;
        for (int64_t i = 0; i < len; i++) {
            if (f)
                ((float *)c.data)[i] = a->floats[i];
            else
                ((int64_t *)c.data)[i] = a->ints[i];
        }
    } else
        return kl__ox_fail(im, n, KL_EUNSUPPORTED,
                           "kiln reads value, value_float(s) and value_int(s) constants (sparse "
                           "and string ones: not supported yet)");
    kl__ox_set_out_const(n, &c);
    return KL_OK;
}

/* Shape: the input's dims, the batch as OX_BATCH; start and end from opset 15. */
kl_status kl__ox_map_shape(ox_import *im, ox_node *n)
{
    kl_status st = kl__ox_need_in(im, n, 0);
    if (st)
        return st;
    int64_t d[OX_MAX_DIMS];
    bool batched;
    int nd = kl__ox_shape(im, n->in[0], d, &batched);
    int64_t lo = im->opset >= 15 ? kl__ox_attr_int(n, "start", 0) : 0;
    int64_t hi = im->opset >= 15 ? kl__ox_attr_int(n, "end", nd) : nd;
    lo = lo < 0 ? lo + nd : lo;
    hi = hi < 0 ? hi + nd : hi;
    lo = lo < 0 ? 0 : lo > nd ? nd : lo;
    hi = hi < lo ? lo : hi > nd ? nd : hi;
    int64_t len = hi - lo;
    ox_const c;
    if ((st = kl__ox_const_new(im, n, OX_I64, 1, &len, &c)))
        return st;
    memcpy(c.data, d + lo, (size_t)len * sizeof *d);
    kl__ox_set_out_const(n, &c);
    return KL_OK;
}

kl_status kl__ox_map_gather(ox_import *im, ox_node *n)
{
    kl_status st;
    if ((st = kl__ox_need_in(im, n, 0)) || (st = kl__ox_need_in(im, n, 1)))
        return st;
    if (!n->in[0]->is_const || !n->in[1]->is_const)
        return kl__ox_fail(im, n, KL_EUNSUPPORTED,
                           "Gather on computed tensors is not supported yet (only on constants "
                           "and shapes, folded at load time)");
    ox_const c;
    if ((st = kl__ox_fold_gather(im, n, &n->in[0]->c, &n->in[1]->c, kl__ox_attr_int(n, "axis", 0),
                                 &c)))
        return st;
    kl__ox_set_out_const(n, &c);
    return KL_OK;
}
