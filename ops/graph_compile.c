/* Compiling a graph: shape functions rerun at the real batch, parameters, gradients and buffers
 * laid out in flat buffers and initialised, and every activation, activation gradient and saved
 * value planned into one arena by lifetime. Called once per graph by kl_graph_compile, or by
 * kl_graph_compile_inference for a graph that only ever computes its outputs. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/rng.h"
#include "ops/graph_impl.h"

/* Arena buffers start on 64-byte boundaries (16 floats) so kernels get aligned rows. */
#define KL__ALIGN_FLOATS 16
/* The most floats one plan may hold: their bytes, with room to spare for alignment padding, fit
 * in a size_t, so no size or offset computed below can wrap. */
#define KL__MAX_FLOATS (SIZE_MAX / sizeof(float) / 2)

static uint64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a: the init stream follows the name, not order */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static void init_values(const kl__node *n, float *v, uint64_t seed)
{
    size_t numel = (size_t)kl_shape_numel(&n->shape);
    int64_t fan_in = n->shape.ndim >= 2 ? (int64_t)numel / n->shape.d[0] : n->shape.d[0];
    int64_t receptive = n->shape.ndim >= 2 ? fan_in / n->shape.d[1] : 1;
    int64_t fan_out = n->shape.ndim >= 2 ? n->shape.d[0] * receptive : n->shape.d[0];
    uint64_t stream = name_hash(n->name);
    float bound;
    switch (n->init.kind) {
    case KL_INIT_ZEROS:
        memset(v, 0, numel * sizeof *v);
        break;
    case KL_INIT_ONES:
    case KL_INIT_CONSTANT:
        for (size_t i = 0; i < numel; i++)
            v[i] = n->init.kind == KL_INIT_ONES ? 1.0f : n->init.a;
        break;
    case KL_INIT_UNIFORM:
        kl_rng_fill_uniform(seed, KL_RNG_INIT, stream, v, numel, n->init.a, n->init.b);
        break;
    case KL_INIT_NORMAL:
        kl_rng_fill_normal(seed, KL_RNG_INIT, stream, v, numel, n->init.a, n->init.b);
        break;
    case KL_INIT_HE_NORMAL:
        kl_rng_fill_normal(seed, KL_RNG_INIT, stream, v, numel, 0.0f, sqrtf(2.0f / fan_in));
        break;
    case KL_INIT_HE_UNIFORM:
        bound = 1.0f / sqrtf((float)fan_in);
        kl_rng_fill_uniform(seed, KL_RNG_INIT, stream, v, numel, -bound, bound);
        break;
    case KL_INIT_XAVIER_UNIFORM:
        bound = sqrtf(6.0f / (float)(fan_in + fan_out));
        kl_rng_fill_uniform(seed, KL_RNG_INIT, stream, v, numel, -bound, bound);
        break;
    }
}

/* *total += n floats, unless the total would pass KL__MAX_FLOATS. */
static bool add_floats(size_t *total, size_t n)
{
    if (n > KL__MAX_FLOATS || *total > KL__MAX_FLOATS - n)
        return false;
    *total += n;
    return true;
}

/* Lays out parameters (and their gradients) and buffers in flat buffers, in creation order. */
static kl_status alloc_flat(kl_graph *g, uint64_t seed, kl_error *err)
{
    g->params = calloc((size_t)g->nparams + 1, sizeof *g->params);
    g->bufs = calloc((size_t)g->nbufs + 1, sizeof *g->bufs);
    if (!g->params || !g->bufs)
        return kl_error_set(err, KL_ENOMEM, "graph: out of memory for the parameter table");
    for (int i = 0; i < g->n; i++) {
        kl__node *n = &g->nodes[i];
        if (n->kind != KL__PARAM && n->kind != KL__BUFFER)
            continue;
        kl_param_info *p = n->kind == KL__PARAM ? &g->params[n->param] : &g->bufs[n->param];
        size_t *total = n->kind == KL__PARAM ? &g->param_total : &g->buf_total;
        p->name = n->name;
        p->node = i;
        p->shape = n->shape;
        p->numel = (size_t)kl_shape_numel(&n->shape);
        p->offset = *total;
        p->flags = n->flags;
        if (!add_floats(total, p->numel))
            return kl_error_set(err, KL_ESHAPE,
                                "graph: the parameters and buffers hold more values than memory "
                                "can address (at %s)",
                                n->name ? n->name : "an unnamed parameter");
    }
    g->param_data = calloc(g->param_total + 1, sizeof(float));
    g->grad_data = g->inference ? NULL : calloc(g->param_total + 1, sizeof(float));
    g->buf_data = calloc(g->buf_total + 1, sizeof(float));
    if (!g->param_data || (!g->inference && !g->grad_data) || !g->buf_data)
        return kl_error_set(err, KL_ENOMEM, "graph: out of memory for %zu parameters",
                            g->param_total);
    /* Initialised on the host on every device, so a device graph starts from the same values. */
    for (int i = 0; i < g->n; i++) {
        kl__node *n = &g->nodes[i];
        if (n->kind == KL__PARAM)
            init_values(n, g->param_data + g->params[n->param].offset, seed);
        else if (n->kind == KL__BUFFER)
            init_values(n, g->buf_data + g->bufs[n->param].offset, seed);
    }
    kl_status st = kl__graph_device_flat(g, err);
    if (st != KL_OK)
        return st;
    float *params = kl__graph_params_at(g), *grads = kl__graph_grads_at(g);
    float *bufs = g->device == KL_DEVICE_CUDA ? g->dev_bufs : g->buf_data;
    for (int i = 0; i < g->n; i++) {
        kl__node *n = &g->nodes[i];
        if (n->kind == KL__PARAM) {
            size_t at = g->params[n->param].offset;
            n->val = (kl_tensor){KL_F32, n->shape, params + at};
            n->grad = (kl_tensor){KL_F32, n->shape, grads ? grads + at : NULL};
            n->host = (kl_tensor){KL_F32, n->shape, g->param_data + at};
        } else if (n->kind == KL__BUFFER) {
            size_t at = g->bufs[n->param].offset;
            n->val = (kl_tensor){KL_F32, n->shape, bufs + at};
            n->host = (kl_tensor){KL_F32, n->shape, g->buf_data + at};
        }
    }
    return KL_OK;
}

/* Reruns every shape function at the real batch size. */
static kl_status reshape_all(kl_graph *g, int64_t batch, kl_error *err)
{
    for (int i = 0; i < g->n; i++) {
        kl__node *n = &g->nodes[i];
        if (n->kind == KL__INPUT) {
            n->shape.d[0] = batch;
        } else if (n->kind == KL__OP) {
            const kl__node *ins[KL__MAX_IN];
            for (int j = 0; j < n->nin; j++)
                ins[j] = &g->nodes[n->in[j]];
            kl_status st = kl__ops[n->op]->shape(n, ins, err);
            if (st != KL_OK)
                return st;
        }
        /* A model built from a file or a config can ask for any size: each node's must fit
         * before anything is planned from it, and then its consumers' shape functions, which
         * multiply its dimensions, cannot overflow either. */
        char what[160];
        snprintf(what, sizeof what, "graph: node %d (%s)", i,
                 n->name                ? n->name
                 : n->kind == KL__OP    ? kl__ops[n->op]->name
                 : n->kind == KL__INPUT ? "input"
                                        : "parameter");
        if (kl_shape_check(&n->shape, n->dtype, what, NULL, err) != KL_OK)
            return KL_ESHAPE;
        if (n->saved_n > KL__MAX_FLOATS || n->scratch_n > KL__MAX_FLOATS)
            return kl_error_set(err, KL_ESHAPE,
                                "%s: needs more working memory than memory can "
                                "address",
                                what);
    }
    return KL_OK;
}

/* Marks which nodes need gradients and which the loss depends on. */
static kl_status mark_grads(kl_graph *g, kl_error *err)
{
    for (int i = 0; i < g->n; i++) {
        kl__node *n = &g->nodes[i];
        n->needs_grad = n->kind == KL__PARAM || n->requires_grad;
        for (int j = 0; j < n->nin; j++)
            n->needs_grad |= g->nodes[n->in[j]].needs_grad;
        n->root = kl__ops[n->op] && kl__ops[n->op]->alias ? g->nodes[n->in[0]].root : i;
    }
    if (g->loss == KL_NONE)
        return KL_OK;
    g->nodes[g->loss].on_path = true;
    for (int i = g->loss; i >= 0; i--) {
        kl__node *n = &g->nodes[i];
        if (!n->on_path)
            continue;
        for (int j = 0; j < n->nin; j++)
            g->nodes[n->in[j]].on_path = true;
        if (kl__visited_in_backward(g, n) && !kl__ops[n->op]->cpu.backward &&
            !kl__ops[n->op]->alias)
            return kl_error_set(err, KL_EUNSUPPORTED,
                                "graph: op %s (node %d) has no gradient but the loss needs one "
                                "through it",
                                kl__ops[n->op]->name, i);
    }
    return KL_OK;
}

/* Marks the nodes forward computes: all of them, or in an inference graph those an output
 * depends on (a loss and its labels are left out, and get no storage). */
static kl_status mark_live(kl_graph *g, kl_error *err)
{
    bool any = false;
    for (int i = 0; i < g->n; i++) {
        g->nodes[i].live = !g->inference || g->nodes[i].output;
        any |= g->nodes[i].output;
    }
    if (g->inference && !any)
        return kl_error_set(err, KL_EINVAL,
                            "graph: an inference graph computes its outputs, and none is marked "
                            "(kl_graph_mark_output)");
    for (int i = g->n - 1; i >= 0; i--)
        if (g->nodes[i].live)
            for (int j = 0; j < g->nodes[i].nin; j++)
                g->nodes[g->nodes[i].in[j]].live = true;
    return KL_OK;
}

typedef struct plan_buf {
    size_t size;
    int start, end; /* inclusive, on the timeline of forward then backward steps */
    size_t *offset;
} plan_buf;

static int by_size_desc(const void *pa, const void *pb)
{
    const plan_buf *a = pa, *b = pb;
    if (a->size != b->size)
        return a->size < b->size ? 1 : -1;
    return a->start - b->start;
}

static size_t aligned(size_t n)
{
    return (n + KL__ALIGN_FLOATS - 1) / KL__ALIGN_FLOATS * KL__ALIGN_FLOATS;
}

/* Greedy-by-size placement: each buffer, largest first, takes the lowest offset that overlaps no
 * already placed buffer alive at the same time. Returns the arena size in floats. */
static size_t place(plan_buf *b, int nb)
{
    qsort(b, (size_t)nb, sizeof *b, by_size_desc);
    size_t top = 0;
    for (int i = 0; i < nb; i++) {
        size_t off = 0;
        bool moved = true;
        while (moved) {
            moved = false;
            for (int j = 0; j < i; j++) {
                bool live = b[j].start <= b[i].end && b[i].start <= b[j].end;
                bool overlap = off < *b[j].offset + b[j].size && *b[j].offset < off + b[i].size;
                if (live && overlap) {
                    off = *b[j].offset + b[j].size;
                    moved = true;
                }
            }
        }
        *b[i].offset = off;
        if (off + b[i].size > top)
            top = off + b[i].size;
    }
    return top;
}

/* Plans the arena. Step i of the timeline is node i's forward; step 2N-1-i its backward. */
static kl_status plan_arena(kl_graph *g, kl_error *err)
{
    int N = g->n, end = 2 * N;
    int *val_end = malloc((size_t)N * sizeof *val_end);
    int *grad_start = malloc((size_t)N * sizeof *grad_start);
    plan_buf *b = calloc((size_t)3 * N + 1, sizeof *b);
    if (!val_end || !grad_start || !b) {
        free(val_end);
        free(grad_start);
        free(b);
        return kl_error_set(err, KL_ENOMEM, "graph: out of memory planning the arena");
    }
    for (int i = 0; i < N; i++) {
        kl__node *n = &g->nodes[i];
        val_end[i] = kl__visited_in_backward(g, n) ? end - 1 - i : i;
        /* Inputs stay intact through the step: callers read labels back, and gradient checks
         * perturb one element and run forward again. */
        if (n->output || i == g->loss || n->kind == KL__INPUT)
            val_end[i] = end;
        grad_start[i] = i == g->loss ? end - 1 - i : end;
    }
    for (int c = 0; c < N; c++) {
        const kl__node *n = &g->nodes[c];
        if (!n->live)
            continue;
        int t = kl__visited_in_backward(g, n) ? end - 1 - c : c;
        for (int j = 0; j < n->nin; j++) {
            int k = n->in[j];
            if (t > val_end[k])
                val_end[k] = t;
            if (kl__visited_in_backward(g, n) && t < grad_start[k])
                grad_start[k] = t;
        }
    }
    /* Aliases share their root's storage: extend the root's lifetimes to cover them. */
    for (int i = N - 1; i >= 0; i--) {
        int r = g->nodes[i].root;
        if (r != i) {
            if (val_end[i] > val_end[r])
                val_end[r] = val_end[i];
            if (grad_start[i] < grad_start[r])
                grad_start[r] = grad_start[i];
        }
    }
    int nb = 0;
    g->unplanned_n = 0;
    for (int i = 0; i < N; i++) {
        kl__node *n = &g->nodes[i];
        if (!n->live)
            continue;
        if ((n->kind != KL__INPUT && n->kind != KL__OP) || n->root != i)
            goto saved;
        size_t numel = aligned((size_t)kl_shape_numel(&n->shape));
        b[nb++] = (plan_buf){numel, n->kind == KL__INPUT ? 0 : i, val_end[i], &n->val_off};
        if (n->needs_grad && n->on_path && g->loss != KL_NONE)
            b[nb++] = (plan_buf){numel, grad_start[i], n->kind == KL__INPUT ? end : end - 1 - i,
                                 &n->grad_off};
    saved:
        if (n->saved_n)
            b[nb++] = (plan_buf){aligned(n->saved_n), i,
                                 kl__visited_in_backward(g, n) ? end - 1 - i : i, &n->saved_off};
    }
    bool fits = true; /* then no offset place() computes can overflow: each is below this sum */
    for (int i = 0; i < nb && fits; i++)
        fits = add_floats(&g->unplanned_n, b[i].size);
    g->arena_n = fits ? place(b, nb) : 0;
    free(val_end);
    free(grad_start);
    free(b);
    if (!fits)
        return kl_error_set(err, KL_ESHAPE,
                            "graph: the activations hold more values than memory can address");

    return kl__graph_alloc(g, &g->arena, g->arena_n, "the activation arena", err);
}

/* Points every node's tensors at its storage, and finds when each parameter's gradient is final:
 * after the backward of its first consumer, which backward reaches last. */
static kl_status bind(kl_graph *g, kl_error *err)
{
    size_t scratch = 0;
    for (int i = 0; i < g->n; i++) {
        kl__node *n = &g->nodes[i];
        if (!n->live)
            continue; /* no storage: its val and grad stay empty */
        if (n->scratch_n > scratch)
            scratch = n->scratch_n;
        if (n->kind != KL__INPUT && n->kind != KL__OP)
            continue;
        const kl__node *r = &g->nodes[n->root];
        if (r->kind == KL__PARAM || r->kind == KL__BUFFER) {
            /* A view of a parameter or buffer shares its flat storage. */
            n->val = (kl_tensor){n->dtype, n->shape, r->val.data};
            if (r->grad.data && n->on_path)
                n->grad = (kl_tensor){KL_F32, n->shape, r->grad.data};
            continue;
        }
        n->val = (kl_tensor){n->dtype, n->shape, g->arena + r->val_off};
        if (r->grad_off != SIZE_MAX && n->needs_grad && n->on_path)
            n->grad = (kl_tensor){KL_F32, n->shape, g->arena + r->grad_off};
    }
    g->scratch_n = scratch;
    kl_status st = kl__graph_alloc(g, &g->scratch, scratch, "the scratch", err);
    if (st != KL_OK)
        return st;
    g->ready_first = malloc((size_t)g->n * sizeof(int));
    g->ready_next = malloc(((size_t)g->nparams + 1) * sizeof(int));
    if (!g->ready_first || !g->ready_next)
        return kl_error_set(err, KL_ENOMEM, "graph: out of memory binding tensors");
    for (int i = 0; i < g->n; i++)
        g->ready_first[i] = -1;
    for (int p = 0; p < g->nparams; p++) {
        kl_node pn = g->params[p].node;
        int first = -1;
        for (int c = pn + 1; c < g->n && first < 0; c++) {
            const kl__node *n = &g->nodes[c];
            for (int j = 0; j < n->nin && first < 0; j++)
                if (n->in[j] == pn && kl__visited_in_backward(g, n))
                    first = c;
        }
        /* A parameter the loss does not reach is final (zero) once backward starts. */
        int at = first >= 0 ? first : (g->loss != KL_NONE ? g->loss : 0);
        g->ready_next[p] = g->ready_first[at];
        g->ready_first[at] = p;
    }
    return KL_OK;
}

static kl_status compile(kl_graph *g, int64_t max_batch, kl_node loss, bool inference,
                         uint64_t seed, kl_error *err)
{
    kl_status st;
    if (g->failed)
        return kl_error_set(err, g->err.status, "%s", g->err.msg);
    if (g->compiled)
        return kl_error_set(err, KL_EINVAL, "graph: already compiled");
    if (max_batch < 1)
        return kl_error_set(err, KL_EINVAL, "graph: the batch size must be at least 1, got %lld",
                            (long long)max_batch);
    if (g->n == 0)
        return kl_error_set(err, KL_EINVAL, "graph: nothing to compile, the graph is empty");
    if (loss != KL_NONE) {
        if (loss < 0 || loss >= g->n)
            return kl_error_set(err, KL_EINVAL, "graph: the loss (%d) is not a node", (int)loss);
        const kl__node *l = &g->nodes[loss];
        if (l->kind != KL__OP || kl_shape_numel(&l->shape) != 1 || l->batched)
            return kl_error_set(err, KL_EINVAL,
                                "graph: the loss must be a scalar computed from the batch (for "
                                "example softmax_xent or mse), node %d is not",
                                (int)loss);
    }
    g->loss = loss;
    g->inference = inference;
    g->max_batch = g->batch = max_batch;
    if ((st = reshape_all(g, max_batch, err)) != KL_OK)
        return st;
    if ((st = mark_live(g, err)) != KL_OK || (st = mark_grads(g, err)) != KL_OK)
        return st;
    if ((st = alloc_flat(g, seed, err)) != KL_OK)
        return st;
    if ((st = plan_arena(g, err)) != KL_OK)
        return st;
    if ((st = bind(g, err)) != KL_OK)
        return st;
    if ((st = kl__graph_device_stage(g, err)) != KL_OK)
        return st;
    g->compiled = true;
    return KL_OK;
}

kl_status kl_graph_compile(kl_graph *g, int64_t max_batch, kl_node loss, uint64_t seed,
                           kl_error *err)
{
    return compile(g, max_batch, loss, false, seed, err);
}

kl_status kl_graph_compile_inference(kl_graph *g, int64_t max_batch, uint64_t seed, kl_error *err)
{
    return compile(g, max_batch, KL_NONE, true, seed, err);
}
