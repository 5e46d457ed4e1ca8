/* The model builder: a model spec becomes graph nodes layer by layer, with stable parameter names
 * ("layers.3.weight", "layers.4.layers.0.bias", "head.weight"), an output head sized from the
 * data, a loss, and one summary row per layer (shape, parameters, FLOPs) for --summary. A summary
 * alone builds each layer into a scratch graph of its own and prints its row at once: the op
 * shape functions give the shapes, nothing is compiled or allocated, and the work grows linearly
 * with the layers (one graph of all of them would look up every parameter name among all). */
#include <stdlib.h>
#include <string.h>

#include "kiln/model.h"
#include "kiln/stop.h"

typedef struct kl_model_row {
    char name[48]; /* "layers.3" */
    kl_layer_kind kind;
    bool head;
    kl_shape out; /* per sample */
    int64_t params, flops;
} kl_model_row;

/* Building state: the current node and its per-sample shape. A summary (out set) builds into
 * scratch graphs, one per layer, and prints rows instead of keeping them. */
typedef struct build {
    kl_graph *g;
    kl_model *m;
    kl_node h;
    kl_shape s; /* per sample */
    kl_error *err;
    FILE *out;             /* a summary's rows go here; NULL: a real build */
    int64_t params, flops; /* a summary's totals */
} build;

static const kl_init k_weight = {KL_INIT_HE_UNIFORM, 0, 0}; /* PyTorch's Linear/Conv2d default */
static const kl_init k_zeros = {KL_INIT_ZEROS, 0, 0};
static const kl_init k_ones = {KL_INIT_ONES, 0, 0};

static kl_node param(build *b, const char *prefix, const char *what, kl_shape shape, kl_init init,
                     unsigned flags)
{
    char name[96];
    snprintf(name, sizeof name, "%s.%s", prefix, what);
    return kl_param(b->g, name, shape, init, flags);
}

static kl_node buffer(build *b, const char *prefix, const char *what, int64_t n, kl_init init)
{
    char name[96];
    snprintf(name, sizeof name, "%s.%s", prefix, what);
    return kl_buffer(b->g, name, KL_SHAPE(n), init);
}

static kl_node activate(build *b, kl_node h, kl_activation a, float alpha)
{
    switch (a) {
    case KL_ACT_NONE:
        return h;
    case KL_ACT_RELU:
        return kl_relu(b->g, h);
    case KL_ACT_LEAKY_RELU:
        return kl_leaky_relu(b->g, h, alpha);
    case KL_ACT_GELU:
        return kl_gelu(b->g, h);
    case KL_ACT_TANH:
        return kl_tanh(b->g, h);
    case KL_ACT_SIGMOID:
        return kl_sigmoid(b->g, h);
    }
    return h;
}

static int64_t per_sample(const kl_shape *s)
{
    return kl_shape_numel(s);
}

static void human(double v, char *buf, size_t n);

static void print_row(FILE *f, const kl_model_row *r)
{
    char sh[96], p[32], fl[32];
    human((double)r->params, p, sizeof p);
    human((double)r->flops, fl, sizeof fl);
    fprintf(f, "%-20s %-16s %-18s %12s %12s\n", r->name,
            r->head ? "dense (head)" : kl_layer_kind_name(r->kind),
            kl_shape_str(&r->out, sh, sizeof sh), r->params ? p : "-", fl);
}

/* Adds a row for the layer just built; its shape is the graph's (batch dropped). A summary prints
 * it at once. */
static kl_status add_row(build *b, const char *name, kl_layer_kind kind, bool head, int64_t params,
                         int64_t flops)
{
    kl_model *m = b->m;
    kl_model_row row = {.kind = kind, .head = head, .out = b->s, .params = params, .flops = flops};
    snprintf(row.name, sizeof row.name, "%s", name);
    if (b->out) {
        print_row(b->out, &row);
        b->params += params;
        b->flops += flops;
        kl_stop_test_point("summary", 0, -1);
        return KL_OK;
    }
    if ((m->nlayers & (m->nlayers - 1)) == 0) { /* grown by doubling: at 0, 1, 2, 4, ... */
        size_t cap = m->nlayers ? 2 * (size_t)m->nlayers : 1;
        kl_model_row *rows = realloc(m->rows, cap * sizeof *rows);
        if (!rows)
            return kl_error_set(b->err, KL_ENOMEM, "out of memory building the model");
        m->rows = rows;
    }
    m->rows[m->nlayers++] = row;
    return KL_OK;
}

/* A summary's fresh scratch graph, whose input has the current per-sample shape. */
static kl_status scratch(build *b)
{
    kl_graph_free(b->g);
    if (!(b->g = kl_graph_new()))
        return kl_error_set(b->err, KL_ENOMEM, "out of memory describing the model");
    b->h = kl_input(b->g, "x", KL_F32, b->s);
    return KL_OK;
}

/* The per-sample shape of node h (the graph's shape without the batch axis). */
static kl_shape sample_shape(kl_graph *g, kl_node h)
{
    kl_shape full = kl_graph_shape(g, h), s = {.ndim = full.ndim - 1};
    for (int i = 1; i < full.ndim; i++)
        s.d[i - 1] = full.d[i];
    return s;
}

static kl_status layer_error(build *b, const kl_layer_spec *l, const char *name, const char *what)
{
    return kl_error_set(b->err, KL_EINVAL, "%s:%d:%d: model.%s (%s): %s",
                        l->pos.file ? l->pos.file : "model", l->pos.line, l->pos.col, name,
                        kl_layer_kind_name(l->kind), what);
}

static kl_status build_layers(build *b, const kl_layer_spec *layers, int n, const char *prefix);

static kl_status dense(build *b, const kl_layer_spec *l, const char *name, int64_t *params,
                       int64_t *flops)
{
    if (b->s.ndim > 1) {
        b->h = kl_flatten(b->g, b->h);
        b->s = KL_SHAPE(per_sample(&b->s));
    }
    int64_t in = b->s.d[0];
    kl_node w = param(b, name, "weight", KL_SHAPE(l->units, in), k_weight, 0);
    kl_node bias =
        l->bias ? param(b, name, "bias", KL_SHAPE(l->units), k_zeros, KL_PARAM_NO_DECAY) : KL_NONE;
    b->h = activate(b, kl_linear(b->g, b->h, w, bias), l->activation, l->alpha);
    *params = in * l->units + (l->bias ? l->units : 0);
    *flops = 2 * in * l->units;
    return KL_OK;
}

static kl_status conv(build *b, const kl_layer_spec *l, const char *name, int64_t *params,
                      int64_t *flops)
{
    if (b->s.ndim != 3)
        return layer_error(b, l, name,
                           "needs (channels, height, width) inputs; put it before "
                           "any dense or flatten layer");
    int64_t c = b->s.d[0], k = l->kernel;
    int stride = l->stride ? l->stride : 1;
    kl_node w = param(b, name, "weight", KL_SHAPE(l->filters, c, k, k), k_weight, 0);
    kl_node bias = l->bias
                       ? param(b, name, "bias", KL_SHAPE(l->filters), k_zeros, KL_PARAM_NO_DECAY)
                       : KL_NONE;
    /* On the CPU the bias and a ReLU are fused into the convolution (kl_conv2d_bias,
     * kl_conv2d_relu: the same values and gradients, fewer passes each way); the CUDA kernels
     * take them as ops of their own. */
    bool cpu = b->m->opts.device == KL_DEVICE_CPU;
    kl_node h;
    if (cpu && l->activation == KL_ACT_RELU) {
        h = kl_conv2d_relu(b->g, b->h, w, bias, stride, l->padding);
    } else {
        h = cpu && l->bias ? kl_conv2d_bias(b->g, b->h, w, bias, stride, l->padding)
                           : kl_conv2d(b->g, b->h, w, stride, l->padding);
        if (l->bias && !cpu)
            h = kl_bias_add(b->g, h, bias);
        h = activate(b, h, l->activation, l->alpha);
    }
    b->h = h;
    kl_shape out = sample_shape(b->g, b->h);
    *params = l->filters * c * k * k + (l->bias ? l->filters : 0);
    *flops = h == KL_NONE ? 0 : 2 * c * k * k * per_sample(&out);
    return KL_OK;
}

static kl_status norm(build *b, const kl_layer_spec *l, const char *name, int64_t *params)
{
    /* One statement per node: argument evaluation order is unspecified in C, and creation order
     * decides where each parameter sits in the flat buffers. */
    bool bn = l->kind == KL_LAYER_BATCHNORM;
    int64_t c = bn ? b->s.d[0] : b->s.d[b->s.ndim - 1];
    kl_node gamma = param(b, name, "weight", KL_SHAPE(c), k_ones, KL_PARAM_NO_DECAY);
    kl_node beta = param(b, name, "bias", KL_SHAPE(c), k_zeros, KL_PARAM_NO_DECAY);
    if (bn) {
        kl_node mean = buffer(b, name, "running_mean", c, k_zeros);
        kl_node var = buffer(b, name, "running_var", c, k_ones);
        b->h = kl_batchnorm(b->g, b->h, gamma, beta, mean, var, l->momentum, l->eps);
    } else {
        b->h = kl_layernorm(b->g, b->h, gamma, beta, l->eps);
    }
    *params = 2 * c;
    return KL_OK;
}

static kl_status residual(build *b, const kl_layer_spec *l, const char *name)
{
    kl_node skip = b->h;
    kl_shape in = b->s;
    kl_status st = build_layers(b, l->layers, l->nlayers, name);
    if (st != KL_OK)
        return st;
    if (!kl_shape_eq(&in, &b->s)) {
        char si[96], so[96], msg[300];
        snprintf(msg, sizeof msg,
                 "the block maps %s to %s; a residual block must keep the shape so that it can "
                 "add its input",
                 kl_shape_str(&in, si, sizeof si), kl_shape_str(&b->s, so, sizeof so));
        return layer_error(b, l, name, msg);
    }
    if (b->out) { /* the block's layers each had their own graph: add in a new one */
        if ((st = scratch(b)) != KL_OK)
            return st;
        skip = kl_input(b->g, "skip", KL_F32, in);
    }
    b->h = activate(b, kl_residual(b->g, b->h, skip), l->activation, l->alpha);
    return KL_OK;
}

static kl_status build_layer(build *b, const kl_layer_spec *l, const char *name)
{
    int64_t params = 0, flops = 0;
    kl_status st = b->out && l->kind != KL_LAYER_RESIDUAL ? scratch(b) : KL_OK;
    int64_t numel_in = per_sample(&b->s);
    if (st != KL_OK)
        return st;
    switch (l->kind) {
    case KL_LAYER_DENSE:
        st = dense(b, l, name, &params, &flops);
        break;
    case KL_LAYER_CONV2D:
        st = conv(b, l, name, &params, &flops);
        break;
    case KL_LAYER_MAX_POOL:
    case KL_LAYER_AVG_POOL:
        if (b->s.ndim != 3)
            return layer_error(b, l, name, "needs (channels, height, width) inputs");
        b->h = (l->kind == KL_LAYER_MAX_POOL ? kl_max_pool2d : kl_avg_pool2d)(
            b->g, b->h, l->kernel, l->stride ? l->stride : l->kernel, l->padding);
        break;
    case KL_LAYER_GLOBAL_AVG_POOL:
        if (b->s.ndim != 3)
            return layer_error(b, l, name, "needs (channels, height, width) inputs");
        b->h = kl_global_avg_pool(b->g, b->h);
        break;
    case KL_LAYER_BATCHNORM:
    case KL_LAYER_LAYERNORM:
        st = norm(b, l, name, &params);
        break;
    case KL_LAYER_DROPOUT:
        b->h = kl_dropout(b->g, b->h, l->rate);
        break;
    case KL_LAYER_ACTIVATION:
        b->h = activate(b, b->h, l->activation, l->alpha);
        break;
    case KL_LAYER_FLATTEN:
        b->h = kl_flatten(b->g, b->h);
        break;
    case KL_LAYER_RESIDUAL:
        return residual(b, l, name);
    }
    if (st != KL_OK)
        return st;
    kl_error gerr = {0};
    if (kl_graph_status(b->g, &gerr) != KL_OK)
        return layer_error(b, l, name, gerr.msg);
    b->s = sample_shape(b->g, b->h);
    if (l->kind != KL_LAYER_DENSE && l->kind != KL_LAYER_CONV2D)
        flops = l->kind == KL_LAYER_FLATTEN ? 0 : numel_in; /* one operation per input element */
    return add_row(b, name, l->kind, false, params, flops);
}

static kl_status build_layers(build *b, const kl_layer_spec *layers, int n, const char *prefix)
{
    for (int i = 0; i < n; i++) {
        char name[48];
        snprintf(name, sizeof name, "%s.%d", prefix, i);
        kl_status st = build_layer(b, &layers[i], name);
        if (st != KL_OK)
            return st;
    }
    return KL_OK;
}

/* The head: a dense layer to the outputs, then the loss. */
static kl_status head(build *b, const kl_model_options *o)
{
    kl_layer_spec l = {.kind = KL_LAYER_DENSE, .units = o->outputs, .bias = true};
    int64_t params, flops;
    kl_model *m = b->m;
    dense(b, &l, "head", &params, &flops);
    m->output = b->h;
    kl_graph_mark_output(b->g, m->output);
    if (o->task == KL_TASK_CLASSIFICATION) {
        m->y = kl_input(b->g, "labels", KL_I32, (kl_shape){0});
        m->loss = kl_softmax_xent(b->g, m->output, m->y, o->label_smoothing);
    } else {
        m->y = kl_input(b->g, "targets", KL_F32, KL_SHAPE(o->outputs));
        m->loss = kl_mse(b->g, m->output, m->y);
    }
    kl_error gerr = {0};
    if (kl_graph_status(b->g, &gerr) != KL_OK)
        return kl_error_set(b->err, gerr.status, "model head: %s", gerr.msg);
    b->s = sample_shape(b->g, b->h);
    return add_row(b, "head", KL_LAYER_DENSE, true, params, flops);
}

static kl_status check_outputs(const kl_model_options *opts, kl_error *err)
{
    if (opts->outputs < 1)
        return kl_error_set(err, KL_EINVAL, "model: %d outputs; the data gives no classes",
                            opts->outputs);
    return KL_OK;
}

kl_status kl_model_build(const kl_model_spec *spec, const kl_model_options *opts, kl_model *m,
                         kl_error *err)
{
    memset(m, 0, sizeof *m);
    m->opts = *opts;
    if (check_outputs(opts, err) != KL_OK)
        return err ? err->status : KL_EINVAL;
    if (!(m->g = kl_graph_new()))
        return kl_error_set(err, KL_ENOMEM, "out of memory building the model");
    build b = {.g = m->g, .m = m, .s = opts->input, .err = err};
    m->x = b.h = kl_input(m->g, "x", KL_F32, opts->input);
    kl_status st = build_layers(&b, spec->layers, spec->nlayers, "layers");
    if (st == KL_OK)
        st = head(&b, opts);
    if (st == KL_OK && opts->device != KL_DEVICE_CPU)
        st = kl_graph_set_device(m->g, opts->device, opts->device_index, err);
    if (st == KL_OK && opts->bf16)
        st = kl_graph_set_bf16(m->g, true, err);
    if (st == KL_OK && opts->cuda_graph)
        st = kl_graph_set_cuda_graph(m->g, true, err);
    if (st == KL_OK && opts->inference && !opts->trainable)
        st = kl_graph_compile_inference(m->g, opts->batch, opts->seed, err);
    else if (st == KL_OK)
        st = kl_graph_compile(m->g, opts->batch, opts->trainable ? m->loss : KL_NONE, opts->seed,
                              err);
    if (st != KL_OK)
        kl_model_free(m);
    return st;
}

static void print_header(FILE *f, const kl_shape *input)
{
    char sh[96];
    fprintf(f, "%-20s %-16s %-18s %12s %12s\n", "layer", "type", "output", "params", "FLOPs");
    fprintf(f, "%-20s %-16s %-18s %12s %12s\n", "input", "", kl_shape_str(input, sh, sizeof sh), "",
            "");
}

static void print_total(FILE *f, int64_t params, int64_t flops)
{
    char fl[32];
    human((double)flops, fl, sizeof fl);
    fprintf(f, "total: %lld parameters (%.2f MiB), %s FLOPs per sample forward\n",
            (long long)params, (double)params * 4.0 / 1048576.0, fl);
}

kl_status kl_model_summarize(const kl_model_spec *spec, const kl_model_options *opts, FILE *f,
                             kl_error *err)
{
    kl_model m = {.opts = *opts}; /* the head's nodes land here; no graph is kept */
    build b = {.m = &m, .s = opts->input, .err = err, .out = f};
    if (check_outputs(opts, err) != KL_OK)
        return err ? err->status : KL_EINVAL;
    print_header(f, &opts->input);
    kl_status st = build_layers(&b, spec->layers, spec->nlayers, "layers");
    if (st == KL_OK && (st = scratch(&b)) == KL_OK)
        st = head(&b, opts);
    if (st == KL_OK)
        print_total(f, b.params, b.flops);
    kl_graph_free(b.g);
    return st;
}

void kl_model_free(kl_model *m)
{
    kl_graph_free(m->g);
    free(m->rows);
    m->g = NULL;
    m->rows = NULL;
    m->nlayers = 0;
}

int64_t kl_model_flops(const kl_model *m)
{
    int64_t f = 0;
    for (int i = 0; i < m->nlayers; i++)
        f += m->rows[i].flops;
    return f;
}

static void human(double v, char *buf, size_t n)
{
    const char *unit = "";
    if (v >= 1e9) {
        v /= 1e9;
        unit = "G";
    } else if (v >= 1e6) {
        v /= 1e6;
        unit = "M";
    } else if (v >= 1e3) {
        v /= 1e3;
        unit = "k";
    }
    snprintf(buf, n, *unit ? "%.2f%s" : "%.0f%s", v, unit);
}

void kl_model_summary(const kl_model *m, FILE *f)
{
    int64_t params = 0;
    print_header(f, &m->opts.input);
    for (int i = 0; i < m->nlayers; i++) {
        print_row(f, &m->rows[i]);
        params += m->rows[i].params;
    }
    print_total(f, params, kl_model_flops(m));
}
