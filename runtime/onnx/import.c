/* The ONNX importer (include/kiln/onnx.h): reading the protobuf (protobuf-c, generated at build
 * time from Debian's onnx.proto), the model's checks (opset, domains, every node's operator,
 * cycles, dangling inputs), the walk that maps each node onto kiln's ops in dependency order, and
 * the compiled model that kiln predict and kiln serve score with. The operators are ops.c's. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "runtime/file.h"
#include "runtime/onnx/onnx_impl.h"

/* The largest file read: protobuf's own limit on a message. */
#define OX_MAX_FILE ((int64_t)2 << 30)

struct kl_onnx {
    kl_graph *g;
    int nin, nout;
    kl_onnx_io *in, *out;
    kl_node *in_nodes, *out_nodes;
    int *in_params; /* whole tensors: the parameter index of each input, else -1 */
    int64_t max_batch;
    bool dynamic, whole;
    char *names;    /* the io names, one block */
    char *producer; /* producer_name, or NULL */
    char **meta;    /* metadata_props: nmeta key, value pairs */
    int nmeta;
};

kl_status kl__ox_fail(ox_import *im, const ox_node *n, kl_status st, const char *fmt, ...)
{
    char msg[KL_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n)
        return kl_error_set(im->err, st, "%s: node '%.80s' (%s, opset %d): %s", im->what,
                            n->p->name && *n->p->name ? n->p->name : "(unnamed)", n->p->op_type,
                            im->opset, msg);
    return kl_error_set(im->err, st, "%s: %s", im->what, msg);
}

void *kl__ox_alloc(ox_import *im, int64_t count, size_t elem)
{
    if (count < 0 || (count > 0 && (uint64_t)count > SIZE_MAX / elem)) {
        kl_error_set(im->err, KL_ENOMEM, "%s: a tensor of %lld elements is too large", im->what,
                     (long long)count);
        return NULL;
    }
    if (im->nblobs == im->capblobs) {
        int cap = im->capblobs ? 2 * im->capblobs : 64;
        void **b = realloc(im->blobs, (size_t)cap * sizeof *b);
        if (!b) {
            kl_error_set(im->err, KL_ENOMEM, "%s: out of memory", im->what);
            return NULL;
        }
        im->blobs = b;
        im->capblobs = cap;
    }
    void *p = calloc(count ? (size_t)count : 1, elem);
    if (!p) {
        kl_error_set(im->err, KL_ENOMEM, "%s: out of memory for %lld elements", im->what,
                     (long long)count);
        return NULL;
    }
    im->blobs[im->nblobs++] = p;
    return p;
}

/* ---- values by name ---- */

static uint64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static ox_value *value_find(ox_import *im, const char *name)
{
    if (!im->nslots)
        return NULL;
    for (uint64_t i = name_hash(name);; i++) {
        int s = im->slots[i % (uint64_t)im->nslots];
        if (!s)
            return NULL;
        if (!strcmp(im->vals[s - 1].name, name))
            return &im->vals[s - 1];
    }
}

/* Adds a value (names are unique: a second producer is refused by the caller). The table is sized
 * once for every name the graph can have, so pointers into vals stay valid. */
static ox_value *value_add(ox_import *im, const char *name)
{
    KL_ASSERT(im->nvals < im->capvals);
    ox_value *v = &im->vals[im->nvals++];
    *v = (ox_value){.name = name, .node = KL_NONE};
    uint64_t i = name_hash(name);
    while (im->slots[i % (uint64_t)im->nslots])
        i++;
    im->slots[i % (uint64_t)im->nslots] = im->nvals;
    return v;
}

void kl__ox_set_const(ox_value *v, const ox_const *c)
{
    v->known = true;
    v->is_const = true;
    v->c = *c;
    v->node = KL_NONE;
}

void kl__ox_set_node(ox_value *v, kl_node node)
{
    v->known = true;
    v->is_const = false;
    v->node = node;
}

/* A parameter (or buffer) of the graph holding a float constant, filled after compile. */
static kl_status make_leaf(ox_import *im, const ox_node *n, ox_value *v, bool buffer, kl_node *out)
{
    const ox_const *c = &v->c;
    if (c->dtype != OX_F32)
        return kl__ox_fail(im, n, KL_EUNSUPPORTED,
                           "'%s' is an integer tensor; kiln computes on floats only", v->name);
    if (c->ndim > KL_MAX_DIMS)
        return kl__ox_fail(im, n, KL_EUNSUPPORTED,
                           "'%s' has %d axes; kiln's tensors have at most %d", v->name, c->ndim,
                           KL_MAX_DIMS);
    kl_shape s = {.ndim = c->ndim ? c->ndim : 1, .d = {1}};
    for (int i = 0; i < c->ndim; i++)
        s.d[i] = c->d[i];
    for (int i = 0; i < s.ndim; i++)
        if (s.d[i] < 1)
            return kl__ox_fail(im, n, KL_EUNSUPPORTED, "'%s' is an empty tensor", v->name);
    if (im->nparams == im->capparams) {
        int cap = im->capparams ? 2 * im->capparams : 32;
        ox_param *p = realloc(im->params, (size_t)cap * sizeof *p);
        if (!p)
            return kl_error_set(im->err, KL_ENOMEM, "%s: out of memory", im->what);
        im->params = p;
        im->capparams = cap;
    }
    char name[160];
    snprintf(name, sizeof name, "%d:%.120s", im->nnames++, v->name);
    kl_init zeros = {KL_INIT_ZEROS, 0, 0};
    kl_node p = buffer ? kl_buffer(im->g, name, s, zeros) : kl_param(im->g, name, s, zeros, 0);
    kl_status st = kl_graph_status(im->g, im->err);
    if (st)
        return st;
    im->params[im->nparams++] = (ox_param){p, buffer, c->data, c->n};
    *out = p;
    return KL_OK;
}

kl_status kl__ox_node_of(ox_import *im, const ox_node *n, ox_value *v, kl_node *out)
{
    if (!v->is_const || v->node != KL_NONE) {
        *out = v->node;
        return KL_OK;
    }
    kl_status st = make_leaf(im, n, v, false, out);
    if (!st)
        v->node = *out;
    return st;
}

kl_status kl__ox_buffer_of(ox_import *im, const ox_node *n, ox_value *v, kl_node *out)
{
    if (!v->is_const)
        return kl__ox_fail(im, n, KL_EUNSUPPORTED,
                           "'%s' must be a constant (an initializer) for inference", v->name);
    return make_leaf(im, n, v, true, out);
}

int kl__ox_shape(ox_import *im, const ox_value *v, int64_t *d, bool *batched)
{
    if (v->is_const) {
        memcpy(d, v->c.d, (size_t)v->c.ndim * sizeof *d);
        *batched = false;
        return v->c.ndim;
    }
    kl_shape s = kl_graph_shape(im->g, v->node);
    *batched = kl_graph_batched(im->g, v->node);
    for (int i = 0; i < s.ndim; i++)
        d[i] = i == 0 && *batched ? OX_BATCH : s.d[i];
    return s.ndim;
}

/* ---- attributes ---- */

const Onnx__AttributeProto *kl__ox_attr(const ox_node *n, const char *name)
{
    for (size_t i = 0; i < n->p->n_attribute; i++)
        if (n->p->attribute[i]->name && !strcmp(n->p->attribute[i]->name, name))
            return n->p->attribute[i];
    return NULL;
}

int64_t kl__ox_attr_int(const ox_node *n, const char *name, int64_t dflt)
{
    const Onnx__AttributeProto *a = kl__ox_attr(n, name);
    return a ? a->i : dflt;
}

float kl__ox_attr_float(const ox_node *n, const char *name, float dflt)
{
    const Onnx__AttributeProto *a = kl__ox_attr(n, name);
    return a ? a->f : dflt;
}

/* ---- the graph's checks ---- */

static const char *node_label(const Onnx__NodeProto *p)
{
    return p->name && *p->name ? p->name : "(unnamed)";
}

/* Every node whose operator or domain kiln does not import, all of them in one message. */
static kl_status check_operators(ox_import *im, const Onnx__GraphProto *gp)
{
    char list[KL_ERROR_MSG_MAX];
    size_t at = 0;
    int bad = 0;
    for (size_t i = 0; i < gp->n_node; i++) {
        const Onnx__NodeProto *p = gp->node[i];
        bool other_domain = p->domain && *p->domain && strcmp(p->domain, "ai.onnx");
        if (!other_domain && p->op_type && kl__ox_op_find(p->op_type))
            continue;
        bad++;
        if (at < sizeof list - 1)
            at += (size_t)snprintf(list + at, sizeof list - at, "%s%s%s%s (opset %d, node '%.60s')",
                                   bad > 1 ? ", " : "", other_domain ? p->domain : "",
                                   other_domain ? "." : "", p->op_type ? p->op_type : "?",
                                   im->opset, node_label(p));
    }
    if (!bad)
        return KL_OK;
    if (at >= sizeof list - 1)
        at = sizeof list - 1;
    list[at] = '\0';
    return kl_error_set(im->err, KL_EUNSUPPORTED,
                        "%s: %d node%s kiln cannot run: %.1200s. kiln imports these operators of "
                        "the default domain, opsets 9 to 17: %s",
                        im->what, bad, bad == 1 ? "" : "s", list, kl_onnx_supported_ops());
}

/* Orders the nodes so that each comes after the producers of its inputs (Kahn's algorithm),
 * refusing a value produced twice, an input nothing produces, and a cycle. */
static kl_status topo_order(ox_import *im, const Onnx__GraphProto *gp, int *order)
{
    size_t nn = gp->n_node;
    int *indeg = calloc(nn ? nn : 1, sizeof *indeg), *producer = NULL;
    kl_status st = KL_OK;
    if (!indeg)
        return kl_error_set(im->err, KL_ENOMEM, "%s: out of memory", im->what);
    /* Node outputs as values; producer[v] is the node that makes value v, or -1. */
    if (!(producer = malloc((size_t)im->capvals * sizeof *producer))) {
        free(indeg);
        return kl_error_set(im->err, KL_ENOMEM, "%s: out of memory", im->what);
    }
    for (int v = 0; v < im->capvals; v++)
        producer[v] = -1;
    for (size_t i = 0; i < nn && !st; i++)
        for (size_t o = 0; o < gp->node[i]->n_output && !st; o++) {
            const char *name = gp->node[i]->output[o];
            if (!*name)
                continue;
            if (value_find(im, name))
                st = kl_error_set(im->err, KL_EFORMAT,
                                  "%s: value '%.100s' is produced twice (node '%.60s' and before "
                                  "it); a graph assigns each value once",
                                  im->what, name, node_label(gp->node[i]));
            else
                producer[value_add(im, name) - im->vals] = (int)i;
        }
    for (size_t i = 0; i < nn && !st; i++)
        for (size_t k = 0; k < gp->node[i]->n_input && !st; k++) {
            const char *name = gp->node[i]->input[k];
            if (!*name)
                continue;
            ox_value *v = value_find(im, name);
            if (!v)
                st = kl_error_set(im->err, KL_EFORMAT,
                                  "%s: node '%.60s' (%s) reads '%.100s', which no node, graph "
                                  "input or initializer produces",
                                  im->what, node_label(gp->node[i]), gp->node[i]->op_type, name);
            else if (producer[v - im->vals] >= 0)
                indeg[i]++;
        }
    /* Kahn: a queue in order[] of the nodes whose producers are all placed. */
    int head = 0, tail = 0;
    for (size_t i = 0; i < nn && !st; i++)
        if (!indeg[i])
            order[tail++] = (int)i;
    while (!st && head < tail) {
        const Onnx__NodeProto *p = gp->node[order[head++]];
        for (size_t o = 0; o < p->n_output; o++) {
            if (!*p->output[o])
                continue;
            for (size_t j = 0; j < nn; j++)
                for (size_t k = 0; k < gp->node[j]->n_input; k++)
                    if (!strcmp(gp->node[j]->input[k], p->output[o]) && --indeg[j] == 0)
                        order[tail++] = (int)j;
        }
    }
    if (!st && tail < (int)nn) {
        for (size_t i = 0; i < nn; i++)
            if (indeg[i]) {
                st = kl_error_set(im->err, KL_EFORMAT,
                                  "%s: the graph has a cycle through node '%.60s' (%s): %zu of "
                                  "%zu nodes wait on a cycle and cannot be ordered",
                                  im->what, node_label(gp->node[i]), gp->node[i]->op_type,
                                  nn - (size_t)tail, nn);
                break;
            }
    }
    free(indeg);
    free(producer);
    return st;
}

/* ---- graph inputs and outputs ---- */

/* The declared shape of a graph input or output: fixed dims, or -1 where a dim is symbolic. */
static kl_status io_shape(ox_import *im, const Onnx__ValueInfoProto *vi, bool input, int *ndim,
                          int64_t *d)
{
    const char *kind = input ? "input" : "output";
    const Onnx__TypeProto *tp = vi->type;
    if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type)
        return kl_error_set(im->err, KL_EUNSUPPORTED, "%s: graph %s '%s' is not a tensor", im->what,
                            kind, vi->name);
    const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
    if (tt->elem_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT)
        return kl_error_set(
            im->err, KL_EUNSUPPORTED,
            "%s: graph %s '%s' has element type %d; kiln takes FLOAT (1) inputs and "
            "outputs only",
            im->what, kind, vi->name, tt->elem_type);
    *ndim = -1;
    if (!tt->shape)
        return KL_OK;
    if (tt->shape->n_dim > KL_MAX_DIMS || tt->shape->n_dim < 1)
        return kl_error_set(im->err, KL_EUNSUPPORTED,
                            "%s: graph %s '%s' has %zu axes; kiln takes 1 to %d", im->what, kind,
                            vi->name, tt->shape->n_dim, KL_MAX_DIMS);
    *ndim = (int)tt->shape->n_dim;
    for (int i = 0; i < *ndim; i++) {
        const Onnx__TensorShapeProto__Dimension *dim = tt->shape->dim[i];
        bool fixed = dim->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
        if (fixed && dim->dim_value < 1)
            return kl_error_set(im->err, KL_EUNSUPPORTED,
                                "%s: graph %s '%s' has dim %d of size %lld; kiln needs sizes of "
                                "at least 1",
                                im->what, kind, vi->name, i, (long long)dim->dim_value);
        d[i] = fixed ? dim->dim_value : -1;
    }
    return KL_OK;
}

static kl_status add_input(ox_import *im, const Onnx__ValueInfoProto *vi, ox_value *v)
{
    int nd;
    int64_t d[KL_MAX_DIMS];
    kl_status st = io_shape(im, vi, true, &nd, d);
    if (st)
        return st;
    if (nd < 0)
        return kl_error_set(im->err, KL_EUNSUPPORTED,
                            "%s: graph input '%s' declares no shape; kiln needs one", im->what,
                            vi->name);
    for (int i = im->whole ? 0 : 1; i < nd; i++)
        if (d[i] < 0)
            return kl_error_set(
                im->err, KL_EUNSUPPORTED,
                "%s: graph input '%s' has a symbolic dim %d; kiln needs fixed sizes "
                "for all but the batch (dim 0)",
                im->what, vi->name, i);
    kl_shape s = {.ndim = nd};
    memcpy(s.d, d, sizeof d);
    kl_node node;
    if (im->whole) {
        char name[160];
        snprintf(name, sizeof name, "input:%.120s", vi->name);
        node = kl_param(im->g, name, s, (kl_init){KL_INIT_ZEROS, 0, 0}, 0);
    } else {
        if (d[0] > 0) {
            if (im->batch > 0 && im->batch != d[0])
                return kl_error_set(im->err, KL_EUNSUPPORTED,
                                    "%s: graph inputs fix different batches (%lld and %lld)",
                                    im->what, (long long)im->batch, (long long)d[0]);
            im->batch = d[0];
        }
        kl_shape per = {.ndim = nd - 1};
        memcpy(per.d, d + 1, sizeof(int64_t) * (size_t)(nd - 1));
        node = kl_input(im->g, vi->name, KL_F32, per);
    }
    if ((st = kl_graph_status(im->g, im->err)))
        return st;
    kl__ox_set_node(v, node);
    return KL_OK;
}

/* ---- the walk ---- */

static kl_status map_node(ox_import *im, const Onnx__NodeProto *p)
{
    ox_node n = {.p = p};
    if (p->n_input > sizeof n.in / sizeof n.in[0] || p->n_output > sizeof n.out / sizeof n.out[0])
        return kl__ox_fail(im, &n, KL_EUNSUPPORTED, "%zu inputs and %zu outputs are too many",
                           p->n_input, p->n_output);
    n.nin = (int)p->n_input;
    n.nout = (int)p->n_output;
    for (int i = 0; i < n.nin; i++)
        n.in[i] = *p->input[i] ? value_find(im, p->input[i]) : NULL;
    for (int i = 0; i < n.nout; i++)
        n.out[i] = *p->output[i] ? value_find(im, p->output[i]) : NULL;
    kl_status st = kl__ox_op_find(p->op_type)->map(im, &n);
    if (st)
        return st;
    if ((st = kl_graph_status(im->g, im->err)))
        return kl__ox_fail(im, &n, st, "%s", im->err->msg);
    /* Only the first output of most operators is computed; a later one that the graph names must
     * have been set by the operator (or the node is refused). */
    for (int i = 0; i < n.nout; i++)
        if (n.out[i] && !n.out[i]->known)
            return kl__ox_fail(im, &n, KL_EUNSUPPORTED,
                               "output %d ('%s') is not supported yet; kiln computes output 0 only",
                               i, n.out[i]->name);
    return KL_OK;
}

static kl_status check_opset(ox_import *im, const Onnx__ModelProto *mp)
{
    im->opset = -1;
    for (size_t i = 0; i < mp->n_opset_import; i++) {
        const char *dom = mp->opset_import[i]->domain;
        if (!dom || !*dom || !strcmp(dom, "ai.onnx"))
            im->opset =
                (int)(mp->opset_import[i]->version < 0 || mp->opset_import[i]->version > 1000
                          ? 1000
                          : mp->opset_import[i]->version);
    }
    if (im->opset < 0)
        return kl_error_set(im->err, KL_EFORMAT,
                            "%s: the model imports no opset of the default domain", im->what);
    if (im->opset < 9 || im->opset > 17)
        return kl_error_set(im->err, KL_EUNSUPPORTED,
                            "%s: opset %d of the default domain; kiln imports opsets 9 to 17 "
                            "(convert it with onnx.version_converter)",
                            im->what, im->opset);
    return KL_OK;
}

/* Makes the values: initializers (constants), graph inputs that no initializer shadows, then the
 * node outputs (topo_order). */
static kl_status make_values(ox_import *im, const Onnx__GraphProto *gp)
{
    size_t total = gp->n_initializer + gp->n_input;
    for (size_t i = 0; i < gp->n_node; i++)
        total += gp->node[i]->n_output;
    if (total > (size_t)INT_MAX / 4)
        return kl_error_set(im->err, KL_EUNSUPPORTED, "%s: too many values", im->what);
    im->capvals = (int)total + 1;
    im->nslots = 2 * im->capvals + 1;
    im->vals = calloc((size_t)im->capvals, sizeof *im->vals);
    im->slots = calloc((size_t)im->nslots, sizeof *im->slots);
    if (!im->vals || !im->slots)
        return kl_error_set(im->err, KL_ENOMEM, "%s: out of memory", im->what);
    for (size_t i = 0; i < gp->n_initializer; i++) {
        const Onnx__TensorProto *t = gp->initializer[i];
        const char *name = t->name ? t->name : "";
        if (!*name || value_find(im, name))
            return kl_error_set(im->err, KL_EFORMAT, "%s: initializer %zu ('%.100s') has %s name",
                                im->what, i, name, *name ? "a duplicate" : "no");
        ox_const c;
        kl_status st = kl__ox_tensor(im, t, name, &c);
        if (st)
            return st;
        kl__ox_set_const(value_add(im, name), &c);
    }
    for (size_t i = 0; i < gp->n_input; i++) {
        const char *name = gp->input[i]->name ? gp->input[i]->name : "";
        if (!*name)
            return kl_error_set(im->err, KL_EFORMAT, "%s: graph input %zu has no name", im->what,
                                i);
        ox_value *v = value_find(im, name);
        if (v && v->is_const)
            continue; /* an initializer's default for it (IR version 3) */
        if (v)
            return kl_error_set(im->err, KL_EFORMAT, "%s: graph input '%.100s' is declared twice",
                                im->what, name);
        kl_status st = add_input(im, gp->input[i], value_add(im, name));
        if (st)
            return st;
    }
    return KL_OK;
}

static kl_status import_graph(ox_import *im, const Onnx__ModelProto *mp)
{
    kl_status st;
    if (!mp->graph)
        return kl_error_set(im->err, KL_EFORMAT, "%s: the model has no graph", im->what);
    const Onnx__GraphProto *gp = mp->graph;
    if ((st = check_opset(im, mp)) || (st = check_operators(im, gp)) || (st = make_values(im, gp)))
        return st;
    if (gp->n_output < 1)
        return kl_error_set(im->err, KL_EFORMAT, "%s: the graph has no outputs", im->what);
    int *order = calloc(gp->n_node ? gp->n_node : 1, sizeof *order);
    if (!order)
        return kl_error_set(im->err, KL_ENOMEM, "%s: out of memory", im->what);
    st = topo_order(im, gp, order);
    for (size_t i = 0; i < gp->n_node && !st; i++)
        st = map_node(im, gp->node[order[i]]);
    free(order);
    return st;
}

/* ---- the compiled model ---- */

static void import_free(ox_import *im)
{
    for (int i = 0; i < im->nblobs; i++)
        free(im->blobs[i]);
    free(im->blobs);
    free(im->vals);
    free(im->slots);
    free(im->params);
}

void kl_onnx_free(kl_onnx *m)
{
    if (!m)
        return;
    kl_graph_free(m->g);
    free(m->in);
    free(m->out);
    free(m->in_nodes);
    free(m->out_nodes);
    free(m->in_params);
    free(m->names);
    free(m->producer);
    for (int i = 0; i < 2 * m->nmeta; i++)
        free(m->meta[i]);
    free(m->meta);
    free(m);
}

/* An io entry: the name, the ONNX shape (dim 0 -1 for a dynamic batch) and floats per sample. */
static void io_entry(kl_onnx *m, kl_node node, const char *name, kl_onnx_io *io)
{
    kl_shape s = kl_graph_shape(m->g, node);
    io->name = name;
    io->shape = s;
    io->features = kl_shape_numel(&s);
    if (!m->whole) {
        io->features /= s.d[0] > 0 ? s.d[0] : 1;
        io->shape.d[0] = m->dynamic ? -1 : m->max_batch;
    }
}

/* Checks an output's declared shape against the one kiln computed: a disagreement is a model
 * kiln would score wrongly, refused rather than served. */
static kl_status check_output(ox_import *im, kl_onnx *m, const Onnx__ValueInfoProto *vi,
                              kl_node node)
{
    int nd;
    int64_t d[KL_MAX_DIMS];
    kl_status st = io_shape(im, vi, false, &nd, d);
    if (st)
        return st;
    kl_shape s = kl_graph_shape(m->g, node);
    bool batched = kl_graph_batched(m->g, node);
    char got[96];
    if (!m->whole && !batched)
        return kl_error_set(im->err, KL_EUNSUPPORTED,
                            "%s: graph output '%s' does not depend on the batch; kiln scores "
                            "batches",
                            im->what, vi->name);
    if (nd < 0)
        return KL_OK;
    bool ok = nd == s.ndim;
    for (int i = 0; ok && i < nd; i++)
        ok = d[i] < 0 || (i == 0 && batched) || d[i] == s.d[i];
    if (!ok)
        return kl_error_set(im->err, KL_EFORMAT,
                            "%s: graph output '%s' is declared with %d axes (%lld, ...) but "
                            "computes to %s",
                            im->what, vi->name, nd, (long long)(nd > 0 ? d[0] : 0),
                            kl_shape_str(&s, got, sizeof got));
    return KL_OK;
}

/* The io tables: names copied into one block, nodes, and the outputs marked. */
static kl_status make_io(ox_import *im, kl_onnx *m, const Onnx__GraphProto *gp)
{
    size_t bytes = 0;
    int nin = 0;
    for (size_t i = 0; i < gp->n_input; i++) {
        ox_value *v = value_find(im, gp->input[i]->name);
        if (v && !v->is_const) {
            nin++;
            bytes += strlen(v->name) + 1;
        }
    }
    for (size_t i = 0; i < gp->n_output; i++)
        bytes += strlen(gp->output[i]->name ? gp->output[i]->name : "") + 1;
    m->nin = nin;
    m->nout = (int)gp->n_output;
    m->in = calloc((size_t)nin + 1, sizeof *m->in);
    m->out = calloc((size_t)m->nout, sizeof *m->out);
    m->in_nodes = calloc((size_t)nin + 1, sizeof *m->in_nodes);
    m->out_nodes = calloc((size_t)m->nout, sizeof *m->out_nodes);
    m->in_params = calloc((size_t)nin + 1, sizeof *m->in_params);
    m->names = malloc(bytes + 1);
    if (!m->in || !m->out || !m->in_nodes || !m->out_nodes || !m->in_params || !m->names)
        return kl_error_set(im->err, KL_ENOMEM, "%s: out of memory", im->what);
    char *at = m->names;
    for (size_t i = 0, k = 0; i < gp->n_input; i++) {
        ox_value *v = value_find(im, gp->input[i]->name);
        if (!v || v->is_const)
            continue;
        m->in_nodes[k] = v->node;
        m->in[k++].name = strcpy(at, v->name);
        at += strlen(at) + 1;
    }
    for (int i = 0; i < m->nout; i++) {
        const char *name = gp->output[i]->name ? gp->output[i]->name : "";
        ox_value *v = value_find(im, name);
        kl_status st;
        if (!v || !v->known)
            return kl_error_set(im->err, KL_EFORMAT,
                                "%s: graph output '%.100s' is produced by no node", im->what, name);
        if ((st = kl__ox_node_of(im, NULL, v, &m->out_nodes[i])) ||
            (st = check_output(im, m, gp->output[i], m->out_nodes[i])))
            return st;
        m->out[i].name = strcpy(at, name);
        at += strlen(at) + 1;
        kl_graph_mark_output(m->g, m->out_nodes[i]);
    }
    return KL_OK;
}

/* Copies the constants into the compiled graph's parameters and buffers. */
static void fill_params(ox_import *im, kl_onnx *m)
{
    int nn = kl_graph_num_nodes(m->g);
    float *pd = kl_graph_params(m->g), *bd = kl_graph_buffers(m->g);
    for (int i = 0; i < kl_graph_num_params(m->g); i++) {
        const kl_param_info *pi = kl_graph_param(m->g, i);
        for (int k = 0; k < m->nin; k++)
            if (pi->node == m->in_nodes[k])
                m->in_params[k] = i;
    }
    for (int i = 0; i < im->nparams; i++) {
        const ox_param *p = &im->params[i];
        int count = p->buffer ? kl_graph_num_buffers(m->g) : kl_graph_num_params(m->g);
        for (int k = 0; k < count; k++) {
            const kl_param_info *pi =
                p->buffer ? kl_graph_buffer(m->g, k) : kl_graph_param(m->g, k);
            if (pi->node == p->node) {
                KL_ASSERT((int64_t)pi->numel == p->n && p->node < nn);
                memcpy((p->buffer ? bd : pd) + pi->offset, p->data, (size_t)p->n * sizeof(float));
                break;
            }
        }
    }
}

/* The model's producer_name and metadata_props, copied: the proto is freed after the import. */
static kl_status copy_metadata(kl_onnx *m, const Onnx__ModelProto *mp, const char *what,
                               kl_error *err)
{
    size_t n = mp->n_metadata_props;
    if (n > INT_MAX / 2 || (mp->producer_name && !(m->producer = strdup(mp->producer_name))) ||
        (n && !(m->meta = calloc(2 * n, sizeof *m->meta))))
        return kl_error_set(err, KL_ENOMEM, "%s: out of memory for its metadata", what);
    for (size_t i = 0; i < n; i++) {
        const Onnx__StringStringEntryProto *e = mp->metadata_props[i];
        m->nmeta++;
        if (!(m->meta[2 * i] = strdup(e->key ? e->key : "")) ||
            !(m->meta[2 * i + 1] = strdup(e->value ? e->value : "")))
            return kl_error_set(err, KL_ENOMEM, "%s: out of memory for its metadata", what);
    }
    return KL_OK;
}

const char *kl_onnx_producer(const kl_onnx *m)
{
    return m->producer;
}

const char *kl_onnx_metadata(const kl_onnx *m, const char *key)
{
    for (int i = 0; i < m->nmeta; i++)
        if (!strcmp(m->meta[2 * i], key))
            return m->meta[2 * i + 1];
    return NULL;
}

static kl_status import_model(const Onnx__ModelProto *mp, const char *what, const char *dir,
                              const kl_onnx_opts *opts, kl_onnx **out, kl_error *err)
{
    kl_onnx_opts o = opts ? *opts : (kl_onnx_opts){0};
    ox_import im = {.what = what, .dir = dir, .whole = o.whole_tensors, .batch = -1, .err = err};
    kl_onnx *m = calloc(1, sizeof *m);
    kl_status st;
    *out = NULL;
    if (!m || !(m->g = im.g = kl_graph_new())) {
        free(m);
        return kl_error_set(err, KL_ENOMEM, "%s: out of memory", what);
    }
    m->whole = o.whole_tensors;
    if (o.max_batch < 0)
        st = kl_error_set(err, KL_EINVAL, "%s: max batch %lld is negative", what,
                          (long long)o.max_batch);
    else
        st = import_graph(&im, mp);
    if (!st) {
        m->dynamic = !m->whole && im.batch < 0;
        m->max_batch = m->whole ? 1 : im.batch > 0 ? im.batch : o.max_batch ? o.max_batch : 1;
        if (!m->whole && im.batch > 0 && o.max_batch > 0 && o.max_batch < im.batch)
            m->max_batch = o.max_batch; /* smaller batches of a fixed-batch model run too */
        st = make_io(&im, m, mp->graph);
    }
    if (!st)
        st = kl_graph_compile_inference(m->g, m->max_batch, 0, err);
    if (!st) {
        kl_graph_set_mode(m->g, KL_MODE_EVAL);
        fill_params(&im, m);
        for (int i = 0; i < m->nin; i++)
            io_entry(m, m->in_nodes[i], m->in[i].name, &m->in[i]);
        for (int i = 0; i < m->nout; i++)
            io_entry(m, m->out_nodes[i], m->out[i].name, &m->out[i]);
    }
    import_free(&im);
    if (!st)
        st = copy_metadata(m, mp, what, err);
    if (st) {
        kl_onnx_free(m);
        return st;
    }
    *out = m;
    return KL_OK;
}

kl_status kl_onnx_load_buffer(const void *data, size_t n, const char *what,
                              const kl_onnx_opts *opts, kl_onnx **out, kl_error *err)
{
    *out = NULL;
    Onnx__ModelProto *mp = onnx__model_proto__unpack(NULL, n, data);
    if (!mp)
        return kl_error_set(err, KL_EFORMAT,
                            "%s: not an ONNX model: the protobuf is malformed or truncated", what);
    kl_status st = import_model(mp, what, NULL, opts, out, err);
    onnx__model_proto__free_unpacked(mp, NULL);
    return st;
}

kl_status kl_onnx_load(const char *path, const kl_onnx_opts *opts, kl_onnx **out, kl_error *err)
{
    *out = NULL;
    /* The size is asked first only to refuse a file protobuf cannot take before reading it; the
     * read itself (runtime/file.c) does not trust it. */
    struct stat sb;
    if (stat(path, &sb) == 0 && sb.st_size > OX_MAX_FILE)
        return kl_error_set(err, KL_EUNSUPPORTED, "%s: larger than 2 GiB, protobuf's limit", path);
    size_t size;
    char *buf = kl__file_read(path, "ONNX model", &size, err);
    if (!buf)
        return err ? err->status : KL_EIO;
    if (size > (size_t)OX_MAX_FILE) {
        free(buf);
        return kl_error_set(err, KL_EUNSUPPORTED, "%s: larger than 2 GiB, protobuf's limit", path);
    }
    Onnx__ModelProto *mp = onnx__model_proto__unpack(NULL, size, (const uint8_t *)buf);
    free(buf);
    if (!mp)
        return kl_error_set(err, KL_EFORMAT,
                            "%s: not an ONNX model: the protobuf is malformed or truncated", path);
    char *dir = strdup(path);
    kl_status st;
    if (!dir)
        st = kl_error_set(err, KL_ENOMEM, "out of memory");
    else {
        char *slash = strrchr(dir, '/');
        if (slash)
            *slash = '\0';
        st = import_model(mp, path, slash ? dir : ".", opts, out, err);
    }
    free(dir);
    onnx__model_proto__free_unpacked(mp, NULL);
    return st;
}

int kl_onnx_num_inputs(const kl_onnx *m)
{
    return m->nin;
}
const kl_onnx_io *kl_onnx_input(const kl_onnx *m, int i)
{
    return i >= 0 && i < m->nin ? &m->in[i] : NULL;
}
int kl_onnx_num_outputs(const kl_onnx *m)
{
    return m->nout;
}
const kl_onnx_io *kl_onnx_output(const kl_onnx *m, int i)
{
    return i >= 0 && i < m->nout ? &m->out[i] : NULL;
}
int64_t kl_onnx_max_batch(const kl_onnx *m)
{
    return m->max_batch;
}
bool kl_onnx_dynamic_batch(const kl_onnx *m)
{
    return m->dynamic;
}
kl_graph *kl_onnx_graph(kl_onnx *m)
{
    return m->g;
}

kl_status kl_onnx_run(kl_onnx *m, const float *const *x, int64_t n, float *const *y, kl_error *err)
{
    if (n < 1 || n > m->max_batch || (m->whole && n != 1))
        return kl_error_set(err, KL_EINVAL,
                            "onnx: a batch of %lld samples; this model takes 1 to %lld",
                            (long long)n, (long long)m->max_batch);
    kl_status st = m->whole ? KL_OK : kl_graph_set_batch(m->g, n, err);
    if (st)
        return st;
    for (int i = 0; i < m->nin; i++) {
        size_t bytes = (size_t)(n * m->in[i].features) * sizeof(float);
        float *dst = m->whole
                         ? kl_graph_params(m->g) + kl_graph_param(m->g, m->in_params[i])->offset
                         : kl_f32(kl_graph_value(m->g, m->in_nodes[i]));
        if (dst) /* NULL: an input no output depends on, which has no storage */
            memcpy(dst, x[i], bytes);
    }
    if ((st = kl_graph_forward(m->g, err)))
        return st;
    for (int i = 0; i < m->nout; i++)
        memcpy(y[i], kl_f32(kl_graph_value(m->g, m->out_nodes[i])),
               (size_t)(n * m->out[i].features) * sizeof(float));
    return KL_OK;
}
