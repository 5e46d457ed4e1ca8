/* A kiln model as an ONNX file (`kiln export -o model.onnx`, docs/onnx.md): the model spec of the
 * checkpoint's config walked layer by layer, as runtime/builder.c builds it, into ONNX nodes of
 * opset 17 with the trained weights as initializers, in inference form (dropout left out, batch
 * normalisation with its running statistics). The stored standardisation becomes Sub and Div
 * nodes at the input, a classifier ends in Softmax (the probabilities kiln predict returns), the
 * batch axis is dynamic, and the class names and task go into the model's metadata_props. Written
 * with the protobuf-c code generated from onnx.proto, atomically. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kiln/stop.h"
#include "kiln/version.h"
#include "onnx.pb-c.h"
#include "runtime/modelfile_parts.h"

#define OW_OPSET      17
#define OW_IR_VERSION 8 /* the IR version of opset 17 (ONNX 1.12) */

/* The model being written: every allocation goes on one list, freed at the end; the protobuf
 * messages point into it and into the graph's weights (never copied). */
typedef struct ow {
    kl_modelfile *mf;
    kl_graph *g;
    Onnx__GraphProto graph;
    size_t cap_nodes, cap_inits;
    void **blobs;
    size_t nblobs, capblobs;
    const char *cur; /* the value the next layer reads */
    int rank;        /* of cur, per sample */
    int nvalues;     /* counter naming intermediate values */
    kl_error *err;
} ow;

static void *ow_alloc(ow *w, size_t size)
{
    if (w->nblobs == w->capblobs) {
        size_t cap = w->capblobs ? 2 * w->capblobs : 64;
        void **b = realloc(w->blobs, cap * sizeof *b);
        if (!b)
            return NULL;
        w->blobs = b;
        w->capblobs = cap;
    }
    void *p = calloc(1, size ? size : 1);
    if (p)
        w->blobs[w->nblobs++] = p;
    return p;
}

static char *ow_str(ow *w, const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char *s = ow_alloc(w, strlen(buf) + 1);
    if (s)
        memcpy(s, buf, strlen(buf) + 1);
    return s;
}

static kl_status oom(ow *w)
{
    return kl_error_set(w->err, KL_ENOMEM, "out of memory writing the ONNX model");
}

/* Appends p to the array *arr of *n (capacity *cap) pointers, growing it on the blob list. */
static bool push(ow *w, void ***arr, size_t *n, size_t *cap, void *p)
{
    if (*n == *cap) {
        size_t c = *cap ? 2 * *cap : 16;
        void **a = ow_alloc(w, c * sizeof *a);
        if (!a)
            return false;
        if (*n)
            memcpy(a, *arr, *n * sizeof *a);
        *arr = a;
        *cap = c;
    }
    (*arr)[(*n)++] = p;
    return true;
}

/* ---- nodes and initializers ---- */

static Onnx__AttributeProto *attr(ow *w, const char *name, Onnx__AttributeProto__AttributeType t)
{
    Onnx__AttributeProto *a = ow_alloc(w, sizeof *a);
    if (!a)
        return NULL;
    onnx__attribute_proto__init(a);
    a->name = (char *)name;
    a->has_type = 1;
    a->type = t;
    return a;
}

static Onnx__AttributeProto *attr_i(ow *w, const char *name, int64_t v)
{
    Onnx__AttributeProto *a = attr(w, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    if (a) {
        a->has_i = 1;
        a->i = v;
    }
    return a;
}

static Onnx__AttributeProto *attr_f(ow *w, const char *name, float v)
{
    Onnx__AttributeProto *a = attr(w, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    if (a) {
        a->has_f = 1;
        a->f = v;
    }
    return a;
}

/* An INTS attribute of n copies of v. */
static Onnx__AttributeProto *attr_is(ow *w, const char *name, int n, int64_t v)
{
    Onnx__AttributeProto *a = attr(w, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    int64_t *ints = a ? ow_alloc(w, (size_t)n * sizeof *ints) : NULL;
    if (!ints)
        return NULL;
    for (int i = 0; i < n; i++)
        ints[i] = v;
    a->n_ints = (size_t)n;
    a->ints = ints;
    return a;
}

/* A node op(inputs) -> out, named after the layer; out NULL makes a fresh value name, which
 * becomes the current value. attrs (nattrs of them, NULL ones meaning out of memory) are its
 * attributes. */
static kl_status node(ow *w, const char *op, const char *layer, const char *const *in, int nin,
                      const char *out, Onnx__AttributeProto **attrs, int nattrs)
{
    Onnx__NodeProto *n = ow_alloc(w, sizeof *n);
    char **ins = ow_alloc(w, (size_t)nin * sizeof *ins), **outs = ow_alloc(w, sizeof *outs);
    Onnx__AttributeProto **as = ow_alloc(w, (size_t)nattrs * sizeof *as);
    if (!n || !ins || !outs || !as)
        return oom(w);
    onnx__node_proto__init(n);
    for (int i = 0; i < nin; i++)
        ins[i] = (char *)in[i];
    for (int i = 0; i < nattrs; i++)
        if (!(as[i] = attrs[i]))
            return oom(w);
    n->n_input = (size_t)nin;
    n->input = ins;
    if (!(outs[0] = out ? (char *)out : ow_str(w, "%s.%s_%d", layer, op, w->nvalues++)) ||
        !(n->name = ow_str(w, "%s/%s", layer, op)))
        return oom(w);
    n->n_output = 1;
    n->output = outs;
    n->op_type = (char *)op;
    n->n_attribute = (size_t)nattrs;
    n->attribute = as;
    if (!push(w, (void ***)&w->graph.node, &w->graph.n_node, &w->cap_nodes, n))
        return oom(w);
    w->cur = outs[0];
    return KL_OK;
}

/* A float initializer named name of shape dims, its raw_data pointing at data (little-endian
 * floats: the host's, on every platform kiln builds for). */
static kl_status initializer(ow *w, const char *name, const float *data, int ndim,
                             const int64_t *dims)
{
    Onnx__TensorProto *t = ow_alloc(w, sizeof *t);
    int64_t *d = ow_alloc(w, (size_t)(ndim ? ndim : 1) * sizeof *d), n = 1;
    if (!t || !d)
        return oom(w);
    onnx__tensor_proto__init(t);
    for (int i = 0; i < ndim; i++)
        n *= (d[i] = dims[i]);
    t->n_dims = (size_t)ndim;
    t->dims = d;
    t->has_data_type = 1;
    t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    t->name = (char *)name;
    t->has_raw_data = 1;
    t->raw_data.len = (size_t)n * sizeof(float);
    t->raw_data.data = (uint8_t *)data;
    if (!push(w, (void ***)&w->graph.initializer, &w->graph.n_initializer, &w->cap_inits, t))
        return oom(w);
    return KL_OK;
}

/* The trained parameter (or, with buffer, batch normalisation's running statistic) of that name,
 * as an initializer under the same name. */
static kl_status weight(ow *w, const char *name, bool buffer)
{
    int n = buffer ? kl_graph_num_buffers(w->g) : kl_graph_num_params(w->g);
    for (int i = 0; i < n; i++) {
        const kl_param_info *p = buffer ? kl_graph_buffer(w->g, i) : kl_graph_param(w->g, i);
        if (strcmp(p->name, name) != 0)
            continue;
        const float *base = buffer ? kl_graph_buffers(w->g) : kl_graph_params(w->g);
        return initializer(w, p->name, base + p->offset, p->shape.ndim, p->shape.d);
    }
    return kl_error_set(w->err, KL_EFORMAT, "%s: the model has no %s '%s'", w->mf->path,
                        buffer ? "buffer" : "parameter", name);
}

/* ---- layers ---- */

static kl_status unsupported(ow *w, const char *layer, const char *what)
{
    return kl_error_set(w->err, KL_EUNSUPPORTED,
                        "%s: model.%s (%s): exporting it to ONNX is not supported yet; export a "
                        "kiln model file (-o MODEL.h5) instead",
                        w->mf->path, layer, what);
}

static kl_status activation(ow *w, const char *layer, kl_activation a, float alpha)
{
    const char *in[] = {w->cur};
    switch (a) {
    case KL_ACT_NONE:
        return KL_OK;
    case KL_ACT_RELU:
        return node(w, "Relu", layer, in, 1, NULL, NULL, 0);
    case KL_ACT_LEAKY_RELU:
        return node(w, "LeakyRelu", layer, in, 1, NULL,
                    (Onnx__AttributeProto *[]){attr_f(w, "alpha", alpha)}, 1);
    case KL_ACT_TANH:
        return node(w, "Tanh", layer, in, 1, NULL, NULL, 0);
    case KL_ACT_SIGMOID:
        return node(w, "Sigmoid", layer, in, 1, NULL, NULL, 0);
    case KL_ACT_GELU:
        break;
    }
    return unsupported(w, layer, "the gelu activation");
}

static kl_status flatten(ow *w, const char *layer)
{
    const char *in[] = {w->cur};
    w->rank = 1;
    return node(w, "Flatten", layer, in, 1, NULL, (Onnx__AttributeProto *[]){attr_i(w, "axis", 1)},
                1);
}

/* Gemm with the (units, in) weight transposed, as kl_linear computes; out NULL: a fresh value. */
static kl_status dense(ow *w, const char *layer, const kl_layer_spec *l, const char *out)
{
    kl_status st = w->rank > 1 ? flatten(w, layer) : KL_OK;
    char *wn = ow_str(w, "%s.weight", layer), *bn = ow_str(w, "%s.bias", layer);
    if (st || !wn || !bn)
        return st ? st : oom(w);
    if ((st = weight(w, wn, false)) || (l->bias && (st = weight(w, bn, false))))
        return st;
    const char *in[] = {w->cur, wn, bn};
    w->rank = 1;
    return node(w, "Gemm", layer, in, l->bias ? 3 : 2, out,
                (Onnx__AttributeProto *[]){attr_i(w, "transB", 1)}, 1);
}

static kl_status conv(ow *w, const char *layer, const kl_layer_spec *l)
{
    char *wn = ow_str(w, "%s.weight", layer), *bn = ow_str(w, "%s.bias", layer);
    kl_status st = wn && bn ? weight(w, wn, false) : oom(w);
    if (st || (l->bias && (st = weight(w, bn, false))))
        return st;
    const char *in[] = {w->cur, wn, bn};
    Onnx__AttributeProto *as[] = {attr_is(w, "kernel_shape", 2, l->kernel),
                                  attr_is(w, "strides", 2, l->stride ? l->stride : 1),
                                  attr_is(w, "pads", 4, l->padding)};
    return node(w, "Conv", layer, in, l->bias ? 3 : 2, NULL, as, 3);
}

static kl_status pool(ow *w, const char *layer, const kl_layer_spec *l)
{
    const char *in[] = {w->cur};
    bool avg = l->kind == KL_LAYER_AVG_POOL;
    /* kiln's average divides by k*k, padding included (count_include_pad). */
    Onnx__AttributeProto *as[] = {attr_is(w, "kernel_shape", 2, l->kernel),
                                  attr_is(w, "strides", 2, l->stride ? l->stride : l->kernel),
                                  attr_is(w, "pads", 4, l->padding),
                                  attr_i(w, "count_include_pad", 1)};
    return node(w, avg ? "AveragePool" : "MaxPool", layer, in, 1, NULL, as, avg ? 4 : 3);
}

static kl_status batchnorm(ow *w, const char *layer, const kl_layer_spec *l)
{
    char *names[4] = {ow_str(w, "%s.weight", layer), ow_str(w, "%s.bias", layer),
                      ow_str(w, "%s.running_mean", layer), ow_str(w, "%s.running_var", layer)};
    kl_status st = KL_OK;
    for (int i = 0; i < 4 && !st; i++)
        st = names[i] ? weight(w, names[i], i >= 2) : oom(w);
    if (st)
        return st;
    const char *in[] = {w->cur, names[0], names[1], names[2], names[3]};
    return node(w, "BatchNormalization", layer, in, 5, NULL,
                (Onnx__AttributeProto *[]){attr_f(w, "epsilon", l->eps)}, 1);
}

static kl_status layers(ow *w, const kl_layer_spec *ls, int n, const char *prefix);

static kl_status layer(ow *w, const kl_layer_spec *l, const char *name)
{
    kl_status st = KL_OK;
    const char *in[2] = {w->cur};
    switch (l->kind) {
    case KL_LAYER_DENSE:
        st = dense(w, name, l, NULL);
        break;
    case KL_LAYER_CONV2D:
        st = conv(w, name, l);
        break;
    case KL_LAYER_MAX_POOL:
    case KL_LAYER_AVG_POOL:
        return pool(w, name, l);
    case KL_LAYER_GLOBAL_AVG_POOL:
        /* ONNX keeps (C, 1, 1) where kiln gives (C). */
        if ((st = node(w, "GlobalAveragePool", name, in, 1, NULL, NULL, 0)))
            return st;
        return flatten(w, name);
    case KL_LAYER_BATCHNORM:
        return batchnorm(w, name, l);
    case KL_LAYER_LAYERNORM:
        return unsupported(w, name, "layernorm");
    case KL_LAYER_DROPOUT:
        return KL_OK; /* inference form: the identity */
    case KL_LAYER_ACTIVATION:
        break;
    case KL_LAYER_FLATTEN:
        return flatten(w, name);
    case KL_LAYER_RESIDUAL:
        if ((st = layers(w, l->layers, l->nlayers, name)))
            return st;
        in[1] = w->cur;
        st = node(w, "Add", name, in, 2, NULL, NULL, 0);
        break;
    }
    return st ? st : activation(w, name, l->activation, l->alpha);
}

static kl_status layers(ow *w, const kl_layer_spec *ls, int n, const char *prefix)
{
    for (int i = 0; i < n; i++) {
        char *name = ow_str(w, "%s.%d", prefix, i);
        kl_status st = name ? layer(w, &ls[i], name) : oom(w);
        if (st)
            return st;
    }
    return KL_OK;
}

/* ---- the graph's edges ---- */

/* A float tensor value of shape (batch, dims...), the batch a named (dynamic) dimension. */
static Onnx__ValueInfoProto *value_info(ow *w, const char *name, int ndim, const int64_t *dims)
{
    Onnx__ValueInfoProto *v = ow_alloc(w, sizeof *v);
    Onnx__TypeProto *t = ow_alloc(w, sizeof *t);
    Onnx__TypeProto__Tensor *tt = ow_alloc(w, sizeof *tt);
    Onnx__TensorShapeProto *s = ow_alloc(w, sizeof *s);
    Onnx__TensorShapeProto__Dimension **d = ow_alloc(w, (size_t)(ndim + 1) * sizeof *d);
    if (!v || !t || !tt || !s || !d)
        return NULL;
    for (int i = 0; i <= ndim; i++) {
        if (!(d[i] = ow_alloc(w, sizeof *d[i])))
            return NULL;
        onnx__tensor_shape_proto__dimension__init(d[i]);
        if (i == 0) {
            d[i]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            d[i]->dim_param = "batch";
        } else {
            d[i]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            d[i]->dim_value = dims[i - 1];
        }
    }
    onnx__value_info_proto__init(v);
    onnx__type_proto__init(t);
    onnx__type_proto__tensor__init(tt);
    onnx__tensor_shape_proto__init(s);
    s->n_dim = (size_t)ndim + 1;
    s->dim = d;
    tt->has_elem_type = 1;
    tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    tt->shape = s;
    t->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    t->tensor_type = tt;
    v->name = (char *)name;
    v->type = t;
    return v;
}

/* The stored standardisation as (x - mean) / std, exactly kiln predict's arithmetic: one mean
 * and std for all features, or one per feature shaped like a sample (broadcast over the batch). */
static kl_status standardise(ow *w)
{
    const kl_modelfile_signature *s = &w->mf->sig;
    if (s->nstats == 0)
        return KL_OK;
    int64_t one = 1;
    int ndim = s->nstats == 1 ? 1 : s->input.ndim;
    const int64_t *dims = s->nstats == 1 ? &one : s->input.d;
    kl_status st;
    if ((st = initializer(w, "standardise.mean", w->mf->mean, ndim, dims)) ||
        (st = initializer(w, "standardise.std", w->mf->std, ndim, dims)))
        return st;
    const char *sub[] = {w->cur, "standardise.mean"};
    if ((st = node(w, "Sub", "standardise", sub, 2, NULL, NULL, 0)))
        return st;
    const char *div[] = {w->cur, "standardise.std"};
    return node(w, "Div", "standardise", div, 2, NULL, NULL, 0);
}

/* s as a JSON string (quotes and escapes) appended to buf at *at; false when it does not fit. */
static bool json_str(char *buf, size_t cap, size_t *at, const char *s)
{
    size_t n = *at;
    if (n + 1 >= cap)
        return false;
    buf[n++] = '"';
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        int len = c == '"' || c == '\\' ? snprintf(esc, sizeof esc, "\\%c", c)
                  : c < 0x20            ? snprintf(esc, sizeof esc, "\\u%04x", c)
                                        : snprintf(esc, sizeof esc, "%c", c);
        if (n + (size_t)len + 2 >= cap)
            return false;
        memcpy(buf + n, esc, (size_t)len);
        n += (size_t)len;
    }
    buf[n++] = '"';
    buf[n] = '\0';
    *at = n;
    return true;
}

/* metadata_props: the task, the class names (a JSON array, class 0 first) and what made it. */
static kl_status metadata(ow *w, Onnx__ModelProto *m)
{
    const kl_modelfile *mf = w->mf;
    bool cls = mf->sig.task == KL_TASK_CLASSIFICATION;
    size_t cap = 16, at = 0;
    for (int k = 0; cls && k < mf->nlabels; k++)
        cap += 6 * strlen(mf->labels[k]) + 4; /* worst case: every byte \u00XX */
    char *names = ow_alloc(w, cap);
    if (!names)
        return oom(w);
    names[at++] = '[';
    for (int k = 0; cls && k < mf->nlabels; k++) {
        if (k)
            names[at++] = ',';
        if (!json_str(names, cap, &at, mf->labels[k]))
            return oom(w);
    }
    names[at++] = ']';
    names[at] = '\0';
    const char *kv[][2] = {{"task", cls ? "classification" : "regression"},
                           {"class_names", names},
                           {"standardisation", mf->sig.nstats == 0   ? "none"
                                               : mf->sig.nstats == 1 ? "global (Sub, Div)"
                                                                     : "per feature (Sub, Div)"},
                           {"kiln_checkpoint", mf->path}};
    size_t n = cls ? 4 : 3, j = 0;
    Onnx__StringStringEntryProto **e = ow_alloc(w, n * sizeof *e);
    if (!e)
        return oom(w);
    for (size_t i = 0; i < 4; i++) {
        if (!cls && i == 1)
            continue;
        if (!(e[j] = ow_alloc(w, sizeof *e[j])))
            return oom(w);
        onnx__string_string_entry_proto__init(e[j]);
        e[j]->key = (char *)kv[i][0];
        e[j++]->value = (char *)kv[i][1];
    }
    m->n_metadata_props = n;
    m->metadata_props = e;
    return KL_OK;
}

/* The whole graph: input, standardisation, layers, head, softmax for a classifier, output. */
static kl_status build_graph(ow *w)
{
    const kl_modelfile_signature *s = &w->mf->sig;
    bool cls = s->task == KL_TASK_CLASSIFICATION;
    const char *out_name = s->output_name;
    int64_t k = s->outputs;
    Onnx__ValueInfoProto *in = value_info(w, s->input_name, s->input.ndim, s->input.d);
    Onnx__ValueInfoProto *out = value_info(w, out_name, 1, &k);
    Onnx__ValueInfoProto **ins = ow_alloc(w, sizeof *ins), **outs = ow_alloc(w, sizeof *outs);
    if (!in || !out || !ins || !outs)
        return oom(w);
    ins[0] = in;
    outs[0] = out;
    w->graph.name = "kiln";
    w->graph.n_input = w->graph.n_output = 1;
    w->graph.input = ins;
    w->graph.output = outs;
    w->cur = s->input_name;
    w->rank = s->input.ndim;
    const kl_model_spec *spec = &kl_modelfile_config(w->mf)->model;
    kl_layer_spec head = {.kind = KL_LAYER_DENSE, .units = (int)k, .bias = true};
    kl_status st;
    if ((st = standardise(w)) || (st = layers(w, spec->layers, spec->nlayers, "layers")) ||
        (st = dense(w, "head", &head, cls ? NULL : out_name)))
        return st;
    const char *logits[] = {w->cur};
    return cls ? node(w, "Softmax", "head", logits, 1, out_name,
                      (Onnx__AttributeProto *[]){attr_i(w, "axis", 1)}, 1)
               : KL_OK;
}

/* ---- the file ---- */

static kl_status write_atomic(const char *path, const uint8_t *buf, size_t n, kl_error *err)
{
    char tmp[PATH_MAX];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= sizeof tmp)
        return kl_error_set(err, KL_EINVAL, "%s: the path is too long", path);
    kl_stop_remove_on_quit(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return kl_error_set(err, KL_EIO, "cannot create %s: %s", tmp, strerror(errno));
    size_t done = 0;
    while (done < n) {
        ssize_t r = write(fd, buf + done, n - done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        done += (size_t)r;
    }
    int e = done < n ? (errno ? errno : EIO) : 0;
    if (!e && fsync(fd) != 0)
        e = errno;
    if (close(fd) != 0 && !e)
        e = errno;
    if (!e && rename(tmp, path) != 0)
        e = errno;
    if (e) {
        unlink(tmp);
        return kl_error_set(err, KL_EIO, "cannot write %s: %s", path, strerror(e));
    }
    /* The rename is durable once the folder holding both names is synced. */
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
    int dfd = open(*dir ? dir : "/", O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return KL_OK;
}

kl_status kl__modelfile_write_onnx(kl_modelfile *mf, const char *path, kl_error *err)
{
    if (mf->onnx || !mf->built)
        return kl_error_set(err, KL_EUNSUPPORTED,
                            "%s: only a model built from a kiln checkpoint exports to ONNX",
                            mf->path);
    ow w = {.mf = mf, .g = mf->m.g, .err = err};
    onnx__graph_proto__init(&w.graph);
    Onnx__ModelProto m = ONNX__MODEL_PROTO__INIT;
    Onnx__OperatorSetIdProto opset = ONNX__OPERATOR_SET_ID_PROTO__INIT, *opsets[] = {&opset};
    opset.domain = "";
    opset.has_version = 1;
    opset.version = OW_OPSET;
    m.has_ir_version = 1;
    m.ir_version = OW_IR_VERSION;
    m.n_opset_import = 1;
    m.opset_import = opsets;
    m.producer_name = "kiln";
    m.producer_version = KL_VERSION;
    m.graph = &w.graph;
    kl_status st = kl_graph_to_host(w.g, KL_GRAPH_PARAMS | KL_GRAPH_BUFFERS, err);
    if (!st)
        st = build_graph(&w);
    if (!st)
        st = metadata(&w, &m);
    uint8_t *buf = NULL;
    size_t n = st ? 0 : onnx__model_proto__get_packed_size(&m);
    if (!st && n > (size_t)INT32_MAX)
        st = kl_error_set(err, KL_EUNSUPPORTED,
                          "%s: the model is %zu bytes, past protobuf's 2 GiB; ONNX external data "
                          "is not supported yet",
                          path, n);
    if (!st && !(buf = malloc(n ? n : 1)))
        st = oom(&w);
    if (!st && onnx__model_proto__pack(&m, buf) != n)
        st = kl_error_set(err, KL_EIO, "%s: the ONNX protobuf did not pack", path);
    if (!st)
        st = write_atomic(path, buf, n, err);
    free(buf);
    for (size_t i = 0; i < w.nblobs; i++)
        free(w.blobs[i]);
    free(w.blobs);
    return st;
}
