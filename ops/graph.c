/* The autodiff graph: building nodes, running forward and backward, and the accessors.
 * Compiling (shapes at the real batch, flat buffers, the arena plan) is ops/graph_compile.c;
 * kernels live in ops/cpu/ and are reached through the op table (ops/op_table.c). */
#include <stdlib.h>
#include <string.h>

#include "ops/graph_impl.h"

kl_graph *kl_graph_new(void)
{
    kl_graph *g = calloc(1, sizeof *g);
    if (g) {
        g->loss = KL_NONE;
        g->loss_scale = 1.0f;
    }
    return g;
}

void kl_graph_free(kl_graph *g)
{
    if (!g)
        return;
    kl__graph_release(g, g->arena);
    kl__graph_release(g, g->scratch);
    kl__graph_device_free(g);
    kl__par_free(g->par);
    for (int i = 0; i < g->n; i++)
        free(g->nodes[i].name);
    free(g->nodes);
    free(g->params);
    free(g->bufs);
    free(g->param_data);
    free(g->grad_data);
    free(g->buf_data);
    free(g->ready_first);
    free(g->ready_next);
    free(g);
}

/* Records the first build error; later ones are consequences of it. */
kl_node kl__graph_fail(kl_graph *g, kl_status st, const char *msg)
{
    if (!g->failed) {
        g->failed = true;
        kl_error_set(&g->err, st, "%s", msg);
    }
    return KL_NONE;
}

static kl__node *new_node(kl_graph *g, kl__kind kind, const char *name, kl_node *id)
{
    if (g->compiled) {
        kl__graph_fail(g, KL_EINVAL, "graph: nodes cannot be added after kl_graph_compile");
        return NULL;
    }
    if (g->n == g->cap) {
        int cap = g->cap ? 2 * g->cap : 64;
        kl__node *nodes = realloc(g->nodes, (size_t)cap * sizeof *nodes);
        if (!nodes) {
            kl__graph_fail(g, KL_ENOMEM, "graph: out of memory adding a node");
            return NULL;
        }
        g->nodes = nodes;
        g->cap = cap;
    }
    kl__node *n = &g->nodes[g->n];
    memset(n, 0, sizeof *n);
    n->kind = kind;
    n->root = g->n;
    n->param = -1;
    n->val_off = n->grad_off = n->saved_off = SIZE_MAX;
    if (name) {
        n->name = strdup(name);
        if (!n->name) {
            kl__graph_fail(g, KL_ENOMEM, "graph: out of memory naming a node");
            return NULL;
        }
    }
    *id = g->n++;
    return n;
}

static bool dims_ok(kl_graph *g, const char *what, const char *name, kl_shape s, int extra)
{
    char msg[KL_ERROR_MSG_MAX], buf[96];
    bool ok = s.ndim >= 0 && s.ndim + extra <= KL_MAX_DIMS && s.ndim + extra >= 1;
    for (int i = 0; ok && i < s.ndim; i++)
        ok = s.d[i] > 0;
    if (!ok) {
        snprintf(
            msg, sizeof msg,
            "%s '%s': shape %s is not valid (dimensions must be positive, at most %d in all%s)",
            what, name ? name : "?", kl_shape_str(&s, buf, sizeof buf), KL_MAX_DIMS,
            extra ? " counting the batch" : "");
        kl__graph_fail(g, KL_ESHAPE, msg);
    }
    return ok;
}

kl_node kl_input(kl_graph *g, const char *name, kl_dtype dtype, kl_shape per_sample)
{
    kl_node id;
    if (g->failed || !dims_ok(g, "input", name, per_sample, 1))
        return KL_NONE;
    kl__node *n = new_node(g, KL__INPUT, name, &id);
    if (!n)
        return KL_NONE;
    n->dtype = dtype;
    n->batched = true;
    n->shape.ndim = per_sample.ndim + 1;
    n->shape.d[0] = 1; /* the batch, set by compile */
    for (int i = 0; i < per_sample.ndim; i++)
        n->shape.d[i + 1] = per_sample.d[i];
    return id;
}

static kl_node leaf(kl_graph *g, kl__kind kind, const char *name, kl_shape shape, kl_init init,
                    unsigned flags)
{
    const char *what = kind == KL__PARAM ? "parameter" : "buffer";
    if (g->failed)
        return KL_NONE;
    if (!name || !*name)
        return kl__graph_fail(g, KL_EINVAL, "graph: parameters and buffers need a name");
    if (kl_graph_find(g, name) != KL_NONE) {
        char msg[KL_ERROR_MSG_MAX];
        snprintf(msg, sizeof msg, "graph: the name '%.200s' is used twice; %s names must be unique",
                 name, what);
        return kl__graph_fail(g, KL_EINVAL, msg);
    }
    if (!dims_ok(g, what, name, shape, 0))
        return KL_NONE;
    kl_node id;
    kl__node *n = new_node(g, kind, name, &id);
    if (!n)
        return KL_NONE;
    n->dtype = KL_F32;
    n->shape = shape;
    n->init = init;
    n->flags = flags;
    n->param = kind == KL__PARAM ? g->nparams++ : g->nbufs++;
    return id;
}

kl_node kl_param(kl_graph *g, const char *name, kl_shape shape, kl_init init, unsigned flags)
{
    return leaf(g, KL__PARAM, name, shape, init, flags);
}

kl_node kl_buffer(kl_graph *g, const char *name, kl_shape shape, kl_init init)
{
    return leaf(g, KL__BUFFER, name, shape, init, 0);
}

kl_node kl__graph_add(kl_graph *g, kl__op op, const kl_node *in, int nin, const kl__attr *attr)
{
    const kl__op_def *def = kl__ops[op];
    char msg[KL_ERROR_MSG_MAX];
    if (g->failed)
        return KL_NONE;
    if (nin < def->min_in || nin > def->max_in) {
        snprintf(msg, sizeof msg, "%s: takes %d to %d inputs, got %d", def->name, def->min_in,
                 def->max_in, nin);
        return kl__graph_fail(g, KL_EINVAL, msg);
    }
    for (int i = 0; i < nin; i++) {
        if (in[i] < 0 || in[i] >= g->n) {
            snprintf(msg, sizeof msg, "%s: input %d (%d) is not a node of this graph", def->name, i,
                     (int)in[i]);
            return kl__graph_fail(g, KL_EINVAL, msg);
        }
    }
    kl_node id;
    kl__node *n = new_node(g, KL__OP, NULL, &id);
    if (!n)
        return KL_NONE;
    n->op = op;
    n->nin = nin;
    for (int i = 0; i < nin; i++)
        n->in[i] = in[i];
    if (attr)
        n->attr = *attr;
    n->dtype = KL_F32;
    const kl__node *ins[KL__MAX_IN];
    for (int i = 0; i < nin; i++)
        ins[i] = &g->nodes[in[i]];
    kl_error err = {0};
    if (def->shape(n, ins, &err) != KL_OK) {
        g->n--;
        return kl__graph_fail(g, err.status, err.msg);
    }
    return id;
}

kl_status kl_graph_status(const kl_graph *g, kl_error *err)
{
    if (!g->failed)
        return KL_OK;
    return kl_error_set(err, g->err.status, "%s", g->err.msg);
}

kl_node kl_graph_name(kl_graph *g, kl_node id, const char *name)
{
    if (id < 0 || id >= g->n)
        return KL_NONE;
    char *copy = strdup(name);
    if (!copy)
        return kl__graph_fail(g, KL_ENOMEM, "graph: out of memory naming a node");
    free(g->nodes[id].name);
    g->nodes[id].name = copy;
    return id;
}

kl_node kl_graph_find(const kl_graph *g, const char *name)
{
    for (int i = 0; i < g->n; i++)
        if (g->nodes[i].name && strcmp(g->nodes[i].name, name) == 0)
            return i;
    return KL_NONE;
}

void kl_graph_mark_output(kl_graph *g, kl_node id)
{
    if (id >= 0 && id < g->n)
        g->nodes[id].output = true;
}

void kl_graph_require_grad(kl_graph *g, kl_node id)
{
    if (id < 0 || id >= g->n || g->nodes[id].kind != KL__INPUT || g->nodes[id].dtype != KL_F32) {
        kl__graph_fail(g, KL_EINVAL, "graph: only f32 inputs can require a gradient");
        return;
    }
    g->nodes[id].requires_grad = true;
}

/* Shape-function helpers. */

kl_status kl__expect_ndim(const char *op, const kl__node *n, int lo, int hi, kl_error *err)
{
    char buf[96];
    if (n->shape.ndim < lo || n->shape.ndim > hi)
        return kl_error_set(err, KL_ESHAPE, "%s: expects a %d-D to %d-D input, got shape %s", op,
                            lo, hi, kl_shape_str(&n->shape, buf, sizeof buf));
    return KL_OK;
}

kl_status kl__expect_same(const char *op, const kl__node *a, const kl__node *b, kl_error *err)
{
    char ba[96], bb[96];
    if (!kl_shape_eq(&a->shape, &b->shape) || a->batched != b->batched)
        return kl_error_set(err, KL_ESHAPE, "%s: input shapes differ: %s%s and %s%s", op,
                            kl_shape_str(&a->shape, ba, sizeof ba), a->batched ? " (batched)" : "",
                            kl_shape_str(&b->shape, bb, sizeof bb), b->batched ? " (batched)" : "");
    return KL_OK;
}

kl_status kl__expect_f32(const char *op, const kl__node *n, kl_error *err)
{
    if (n->dtype != KL_F32)
        return kl_error_set(err, KL_EINVAL, "%s: expects an f32 input, got %s%s%s", op,
                            kl_dtype_name(n->dtype), n->name ? " input " : "",
                            n->name ? n->name : "");
    return KL_OK;
}

/* Running. */

kl_status kl_graph_set_batch(kl_graph *g, int64_t batch, kl_error *err)
{
    if (!g->compiled)
        return kl_error_set(err, KL_EINVAL, "graph: compile before setting the batch");
    if (batch < 1 || batch > g->max_batch)
        return kl_error_set(err, KL_EINVAL,
                            "graph: batch %lld is outside 1..%lld, the size it was compiled for",
                            (long long)batch, (long long)g->max_batch);
    g->batch = batch;
    for (int i = 0; i < g->n; i++) {
        kl__node *n = &g->nodes[i];
        if (n->batched) {
            n->val.shape.d[0] = batch;
            n->grad.shape.d[0] = batch;
            n->host.shape.d[0] = batch;
        }
    }
    return KL_OK;
}

int64_t kl_graph_batch(const kl_graph *g)
{
    return g->batch;
}

int64_t kl_graph_max_batch(const kl_graph *g)
{
    return g->max_batch;
}

kl_node kl_graph_loss(const kl_graph *g)
{
    return g->loss;
}

void kl_graph_set_mode(kl_graph *g, kl_mode mode)
{
    g->mode = mode;
}

void kl_graph_set_loss_scale(kl_graph *g, float scale)
{
    g->loss_scale = scale;
}

void kl_graph_set_rng(kl_graph *g, uint64_t seed, uint64_t step, int64_t first_row)
{
    g->rng_seed = seed;
    g->rng_step = step;
    g->rng_first_row = first_row;
}

/* The node's kernels on the graph's device; compile checked that the device has them. */
static const kl__kernel *kernels(const kl_graph *g, const kl__node *n)
{
    return g->device == KL_DEVICE_CUDA ? kl__ops[n->op]->cuda : &kl__ops[n->op]->cpu;
}

static void make_ctx(kl_graph *g, kl_node i, kl__ctx *c)
{
    kl__node *n = &g->nodes[i];
    memset(c, 0, sizeof *c);
    c->nin = n->nin;
    for (int j = 0; j < n->nin; j++)
        c->in[j] = &g->nodes[n->in[j]].val;
    c->out = &n->val;
    c->attr = &n->attr;
    c->saved = n->saved_off != SIZE_MAX ? g->arena + n->saved_off : NULL;
    c->scratch = g->scratch;
    c->train = g->mode == KL_MODE_TRAIN;
    c->seed = g->rng_seed;
    c->step = g->rng_step;
    c->first_row = g->rng_first_row;
    c->node = (uint32_t)i;
    c->stream = g->stream;
    c->bf16 = g->bf16;
    c->par = g->par;
}

kl_status kl_graph_set_threads(kl_graph *g, int threads, kl_error *err)
{
    if (threads < 1)
        return kl_error_set(err, KL_EINVAL, "graph: threads must be at least 1, got %d", threads);
    if (kl__par_threads(g->par) == threads)
        return KL_OK;
    kl__par *p;
    kl_status st = kl__par_new(threads, &p, err);
    if (st != KL_OK)
        return st;
    kl__par_free(g->par);
    g->par = p;
    return KL_OK;
}

static kl_status forward_ops(kl_graph *g, kl_error *err)
{
    kl_status st = KL_OK;
    for (int i = 0; i < g->n && st == KL_OK; i++) {
        kl__node *n = &g->nodes[i];
        if (n->kind != KL__OP || kl__ops[n->op]->alias || !n->live)
            continue;
        kl__ctx c;
        make_ctx(g, i, &c);
        st = kernels(g, n)->forward(&c, err);
    }
    return st;
}

kl_status kl_graph_forward(kl_graph *g, kl_error *err)
{
    if (!g->compiled)
        return kl_error_set(err, KL_EINVAL, "graph: compile before running forward");
    kl_status st = kl__graph_device_inputs(g, err);
    if (st == KL_OK)
        st = kl__graph_device_run(g, 0, forward_ops, err);
    return st == KL_OK ? kl__graph_device_outputs(g, err) : st;
}

static void zero_grad_once(kl_graph *g, kl_node k)
{
    kl__node *r = &g->nodes[g->nodes[k].root];
    if (r->kind == KL__PARAM || r->grad_gen == g->pass)
        return;
    r->grad_gen = g->pass;
    kl__graph_device_zero(g, r->grad.data, (size_t)kl_numel(&r->grad));
}

/* Whether input j of op n may be written (=) rather than added into: its gradient has not been
 * touched in this pass, the kernel supports it, and no other input of n shares its storage (as in
 * mul(x, x), where the second write must add to the first). Claims the buffer when it says yes. */
static bool take_fresh(kl_graph *g, const kl__node *n, int j)
{
    kl__node *r = &g->nodes[g->nodes[n->in[j]].root];
    if (!kernels(g, n)->fresh_grads || r->kind == KL__PARAM || r->grad_gen == g->pass)
        return false;
    for (int k = 0; k < n->nin; k++)
        if (k != j && g->nodes[n->in[k]].root == g->nodes[n->in[j]].root)
            return false;
    r->grad_gen = g->pass;
    return true;
}

static void fire_ready(kl_graph *g, kl_node i)
{
    if (!g->ready_fn)
        return;
    for (int p = g->ready_first[i]; p >= 0; p = g->ready_next[p])
        g->ready_fn(g->ready_ctx, p);
}

/* Backward's kernels after the seed. A new pass each call, so that a call repeated after a failed
 * capture zeroes and claims its gradients afresh. */
static kl_status backward_ops(kl_graph *g, kl_error *err)
{
    (void)err;
    g->pass++;
    g->nodes[g->loss].grad_gen = g->pass;
    for (int i = g->loss; i >= 0; i--) {
        kl__node *n = &g->nodes[i];
        if (kl__visited_in_backward(g, n) && !kl__ops[n->op]->alias) {
            kl__ctx c;
            make_ctx(g, i, &c);
            c.dout = &n->grad;
            for (int j = 0; j < n->nin; j++) {
                kl__node *in = &g->nodes[n->in[j]];
                if (in->needs_grad && in->grad.data) {
                    c.din_fresh[j] = take_fresh(g, n, j);
                    if (!c.din_fresh[j])
                        zero_grad_once(g, n->in[j]);
                    c.din[j] = &in->grad;
                }
            }
            kernels(g, n)->backward(&c);
        }
        fire_ready(g, i);
    }
    return KL_OK;
}

kl_status kl_graph_backward(kl_graph *g, kl_error *err)
{
    if (!g->compiled || g->loss == KL_NONE)
        return kl_error_set(err, KL_EINVAL,
                            "graph: backward needs a graph compiled with a loss node");
    kl__node *l = &g->nodes[g->loss];
    kl_status st = kl__graph_device_seed_grad(g, kl_f32(&l->grad), err);
    if (st == KL_OK)
        st = kl__graph_device_run(g, 1, backward_ops, err);
    return st == KL_OK ? kl__graph_device_check(g, "running backward", err) : st;
}

void kl_graph_zero_grad(kl_graph *g)
{
    if (kl__graph_grads_at(g))
        kl__graph_device_zero(g, kl__graph_grads_at(g), g->param_total);
}

void kl_graph_on_grad_ready(kl_graph *g, kl_grad_ready_fn fn, void *ctx)
{
    g->ready_fn = fn;
    g->ready_ctx = ctx;
}

/* Accessors. */

kl_tensor *kl_graph_value(kl_graph *g, kl_node id)
{
    if (!g->compiled || id < 0 || id >= g->n)
        return NULL;
    if (g->device != KL_DEVICE_CPU) /* the host view: NULL but for inputs, outputs and the loss */
        return g->nodes[id].host.data ? &g->nodes[id].host : NULL;
    return &g->nodes[id].val;
}

kl_tensor *kl_graph_grad(kl_graph *g, kl_node id)
{
    if (!g->compiled || id < 0 || id >= g->n || !g->nodes[id].grad.data ||
        g->device != KL_DEVICE_CPU)
        return NULL;
    return &g->nodes[id].grad;
}

kl_shape kl_graph_shape(const kl_graph *g, kl_node id)
{
    kl_shape none = {0};
    if (id < 0 || id >= g->n)
        return none;
    return g->compiled ? g->nodes[id].val.shape : g->nodes[id].shape;
}

bool kl_graph_batched(const kl_graph *g, kl_node id)
{
    return id >= 0 && id < g->n && g->nodes[id].batched;
}

int kl_graph_num_params(const kl_graph *g)
{
    return g->nparams;
}
int kl_graph_num_buffers(const kl_graph *g)
{
    return g->nbufs;
}
float *kl_graph_params(kl_graph *g)
{
    return g->param_data;
}
float *kl_graph_grads(kl_graph *g)
{
    return g->grad_data;
}
float *kl_graph_buffers(kl_graph *g)
{
    return g->buf_data;
}
size_t kl_graph_param_count(const kl_graph *g)
{
    return g->param_total;
}
size_t kl_graph_buffer_count(const kl_graph *g)
{
    return g->buf_total;
}
int kl_graph_num_nodes(const kl_graph *g)
{
    return g->n;
}
size_t kl_graph_arena_bytes(const kl_graph *g)
{
    return g->arena_n * sizeof(float);
}
size_t kl_graph_arena_unplanned_bytes(const kl_graph *g)
{
    return g->unplanned_n * sizeof(float);
}

const kl_param_info *kl_graph_param(const kl_graph *g, int i)
{
    return g->compiled && i >= 0 && i < g->nparams ? &g->params[i] : NULL;
}

const kl_param_info *kl_graph_buffer(const kl_graph *g, int i)
{
    return g->compiled && i >= 0 && i < g->nbufs ? &g->bufs[i] : NULL;
}

const char *kl_graph_op_name(const kl_graph *g, kl_node id)
{
    if (id < 0 || id >= g->n)
        return "?";
    const kl__node *n = &g->nodes[id];
    switch (n->kind) {
    case KL__INPUT:
        return "input";
    case KL__PARAM:
        return "param";
    case KL__BUFFER:
        return "buffer";
    case KL__OP:
        break;
    }
    return kl__ops[n->op]->name;
}

void kl_graph_print(const kl_graph *g, FILE *f)
{
    char buf[96];
    for (int i = 0; i < g->n; i++) {
        const kl__node *n = &g->nodes[i];
        fprintf(f, "%4d  %-16s %-24s %s", i, kl_graph_op_name(g, i), n->name ? n->name : "",
                kl_shape_str(&n->shape, buf, sizeof buf));
        for (int j = 0; j < n->nin; j++)
            fprintf(f, "%s%d", j ? "," : "  <- ", (int)n->in[j]);
        fputc('\n', f);
    }
}
