/* The autodiff graph: building nodes, compiling (shapes at the real batch, flat parameter and
 * gradient buffers, the activation arena plan) and running forward and backward.
 * Kernels live in ops/cpu/ and are reached through the op table (ops/op_table.c). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/rng.h"
#include "ops/graph_impl.h"

/* Arena buffers start on 64-byte boundaries (16 floats) so kernels get aligned rows. */
#define KL__ALIGN_FLOATS 16

struct kl_graph {
    kl__node *nodes;
    int n, cap;
    kl_error err; /* the first build error, reported by compile */
    bool failed;
    bool compiled;
    int64_t max_batch, batch;
    kl_node loss;
    kl_mode mode;
    uint64_t rng_seed, rng_step;

    kl_param_info *params, *bufs;
    int nparams, nbufs;
    size_t param_total, buf_total;
    float *param_data, *grad_data, *buf_data;

    float *arena, *scratch;
    size_t arena_n, unplanned_n, scratch_n; /* floats */

    uint64_t pass;    /* backward passes so far: stamps grad zeroing */
    int *ready_first; /* per node: first param whose gradient is final after its backward */
    int *ready_next;  /* per param: the next one in that list */
    kl_grad_ready_fn ready_fn;
    void *ready_ctx;
};

kl_graph *kl_graph_new(void)
{
    kl_graph *g = calloc(1, sizeof *g);
    if (g)
        g->loss = KL_NONE;
    return g;
}

void kl_graph_free(kl_graph *g)
{
    if (!g)
        return;
    for (int i = 0; i < g->n; i++)
        free(g->nodes[i].name);
    free(g->nodes);
    free(g->params);
    free(g->bufs);
    free(g->param_data);
    free(g->grad_data);
    free(g->buf_data);
    free(g->arena);
    free(g->scratch);
    free(g->ready_first);
    free(g->ready_next);
    free(g);
}

/* Records the first build error; later ones are consequences of it. */
static kl_node build_fail(kl_graph *g, kl_status st, const char *msg)
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
        build_fail(g, KL_EINVAL, "graph: nodes cannot be added after kl_graph_compile");
        return NULL;
    }
    if (g->n == g->cap) {
        int cap = g->cap ? 2 * g->cap : 64;
        kl__node *nodes = realloc(g->nodes, (size_t)cap * sizeof *nodes);
        if (!nodes) {
            build_fail(g, KL_ENOMEM, "graph: out of memory adding a node");
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
            build_fail(g, KL_ENOMEM, "graph: out of memory naming a node");
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
        build_fail(g, KL_ESHAPE, msg);
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
        return build_fail(g, KL_EINVAL, "graph: parameters and buffers need a name");
    if (kl_graph_find(g, name) != KL_NONE) {
        char msg[KL_ERROR_MSG_MAX];
        snprintf(msg, sizeof msg, "graph: the name '%.200s' is used twice; %s names must be unique",
                 name, what);
        return build_fail(g, KL_EINVAL, msg);
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
        return build_fail(g, KL_EINVAL, msg);
    }
    for (int i = 0; i < nin; i++) {
        if (in[i] < 0 || in[i] >= g->n) {
            snprintf(msg, sizeof msg, "%s: input %d (%d) is not a node of this graph", def->name, i,
                     (int)in[i]);
            return build_fail(g, KL_EINVAL, msg);
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
        return build_fail(g, err.status, err.msg);
    }
    return id;
}

kl_node kl_graph_name(kl_graph *g, kl_node id, const char *name)
{
    if (id < 0 || id >= g->n)
        return KL_NONE;
    char *copy = strdup(name);
    if (!copy)
        return build_fail(g, KL_ENOMEM, "graph: out of memory naming a node");
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
        build_fail(g, KL_EINVAL, "graph: only f32 inputs can require a gradient");
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

/* Compiling. */

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
        *total += p->numel;
    }
    g->param_data = calloc(g->param_total + 1, sizeof(float));
    g->grad_data = calloc(g->param_total + 1, sizeof(float));
    g->buf_data = calloc(g->buf_total + 1, sizeof(float));
    if (!g->param_data || !g->grad_data || !g->buf_data)
        return kl_error_set(err, KL_ENOMEM, "graph: out of memory for %zu parameters",
                            g->param_total);
    for (int i = 0; i < g->n; i++) {
        kl__node *n = &g->nodes[i];
        if (n->kind == KL__PARAM) {
            const kl_param_info *p = &g->params[n->param];
            init_values(n, g->param_data + p->offset, seed);
            n->val = (kl_tensor){KL_F32, n->shape, g->param_data + p->offset};
            n->grad = (kl_tensor){KL_F32, n->shape, g->grad_data + p->offset};
        } else if (n->kind == KL__BUFFER) {
            const kl_param_info *p = &g->bufs[n->param];
            init_values(n, g->buf_data + p->offset, seed);
            n->val = (kl_tensor){KL_F32, n->shape, g->buf_data + p->offset};
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
    }
    return KL_OK;
}

static bool visited_in_backward(const kl_graph *g, const kl__node *n)
{
    return g->loss != KL_NONE && n->kind == KL__OP && n->on_path && n->needs_grad;
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
        if (visited_in_backward(g, n) && !kl__ops[n->op]->backward && !kl__ops[n->op]->alias)
            return kl_error_set(err, KL_EUNSUPPORTED,
                                "graph: op %s (node %d) has no gradient but the loss needs one "
                                "through it",
                                kl__ops[n->op]->name, i);
    }
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
        val_end[i] = visited_in_backward(g, n) ? end - 1 - i : i;
        /* Inputs stay intact through the step: callers read labels back, and gradient checks
         * perturb one element and run forward again. */
        if (n->output || i == g->loss || n->kind == KL__INPUT)
            val_end[i] = end;
        grad_start[i] = i == g->loss ? end - 1 - i : end;
    }
    for (int c = 0; c < N; c++) {
        const kl__node *n = &g->nodes[c];
        int t = visited_in_backward(g, n) ? end - 1 - c : c;
        for (int j = 0; j < n->nin; j++) {
            int k = n->in[j];
            if (t > val_end[k])
                val_end[k] = t;
            if (visited_in_backward(g, n) && t < grad_start[k])
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
                                 visited_in_backward(g, n) ? end - 1 - i : i, &n->saved_off};
    }
    for (int i = 0; i < nb; i++)
        g->unplanned_n += b[i].size;
    g->arena_n = place(b, nb);
    free(val_end);
    free(grad_start);
    free(b);

    size_t bytes = (g->arena_n + KL__ALIGN_FLOATS) * sizeof(float);
    g->arena = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!g->arena)
        return kl_error_set(err, KL_ENOMEM, "graph: out of memory for a %zu MiB activation arena",
                            bytes >> 20);
    memset(g->arena, 0, bytes);
    return KL_OK;
}

/* Points every node's tensors at its storage, and finds when each parameter's gradient is final:
 * after the backward of its first consumer, which backward reaches last. */
static kl_status bind(kl_graph *g, kl_error *err)
{
    size_t scratch = 0;
    for (int i = 0; i < g->n; i++) {
        kl__node *n = &g->nodes[i];
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
    g->scratch = malloc((scratch + 1) * sizeof(float));
    g->ready_first = malloc((size_t)g->n * sizeof(int));
    g->ready_next = malloc(((size_t)g->nparams + 1) * sizeof(int));
    if (!g->scratch || !g->ready_first || !g->ready_next)
        return kl_error_set(err, KL_ENOMEM, "graph: out of memory binding tensors");
    for (int i = 0; i < g->n; i++)
        g->ready_first[i] = -1;
    for (int p = 0; p < g->nparams; p++) {
        kl_node pn = g->params[p].node;
        int first = -1;
        for (int c = pn + 1; c < g->n && first < 0; c++) {
            const kl__node *n = &g->nodes[c];
            for (int j = 0; j < n->nin && first < 0; j++)
                if (n->in[j] == pn && visited_in_backward(g, n))
                    first = c;
        }
        /* A parameter the loss does not reach is final (zero) once backward starts. */
        int at = first >= 0 ? first : (g->loss != KL_NONE ? g->loss : 0);
        g->ready_next[p] = g->ready_first[at];
        g->ready_first[at] = p;
    }
    return KL_OK;
}

kl_status kl_graph_compile(kl_graph *g, int64_t max_batch, kl_node loss, uint64_t seed,
                           kl_error *err)
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
    g->max_batch = g->batch = max_batch;
    if ((st = reshape_all(g, max_batch, err)) != KL_OK)
        return st;
    if ((st = mark_grads(g, err)) != KL_OK)
        return st;
    if ((st = alloc_flat(g, seed, err)) != KL_OK)
        return st;
    if ((st = plan_arena(g, err)) != KL_OK)
        return st;
    if ((st = bind(g, err)) != KL_OK)
        return st;
    g->compiled = true;
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
void kl_graph_set_mode(kl_graph *g, kl_mode mode)
{
    g->mode = mode;
}

void kl_graph_set_rng(kl_graph *g, uint64_t seed, uint64_t step)
{
    g->rng_seed = seed;
    g->rng_step = step;
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
    c->node = (uint32_t)i;
}

kl_status kl_graph_forward(kl_graph *g, kl_error *err)
{
    if (!g->compiled)
        return kl_error_set(err, KL_EINVAL, "graph: compile before running forward");
    for (int i = 0; i < g->n; i++) {
        kl__node *n = &g->nodes[i];
        if (n->kind != KL__OP || kl__ops[n->op]->alias)
            continue;
        kl__ctx c;
        make_ctx(g, i, &c);
        kl_status st = kl__ops[n->op]->forward(&c, err);
        if (st != KL_OK)
            return st;
    }
    return KL_OK;
}

static void zero_grad_once(kl_graph *g, kl_node k)
{
    kl__node *r = &g->nodes[g->nodes[k].root];
    if (r->kind == KL__PARAM || r->grad_gen == g->pass)
        return;
    r->grad_gen = g->pass;
    memset(r->grad.data, 0, (size_t)kl_numel(&r->grad) * sizeof(float));
}

static void fire_ready(kl_graph *g, kl_node i)
{
    if (!g->ready_fn)
        return;
    for (int p = g->ready_first[i]; p >= 0; p = g->ready_next[p])
        g->ready_fn(g->ready_ctx, p);
}

kl_status kl_graph_backward(kl_graph *g, kl_error *err)
{
    if (!g->compiled || g->loss == KL_NONE)
        return kl_error_set(err, KL_EINVAL,
                            "graph: backward needs a graph compiled with a loss node");
    g->pass++;
    kl__node *l = &g->nodes[g->loss];
    l->grad_gen = g->pass;
    kl_f32(&l->grad)[0] = 1.0f;
    for (int i = g->loss; i >= 0; i--) {
        kl__node *n = &g->nodes[i];
        if (visited_in_backward(g, n) && !kl__ops[n->op]->alias) {
            kl__ctx c;
            make_ctx(g, i, &c);
            c.dout = &n->grad;
            for (int j = 0; j < n->nin; j++) {
                kl__node *in = &g->nodes[n->in[j]];
                if (in->needs_grad && in->grad.data) {
                    zero_grad_once(g, n->in[j]);
                    c.din[j] = &in->grad;
                }
            }
            kl__ops[n->op]->backward(&c);
        }
        fire_ready(g, i);
    }
    return KL_OK;
}

void kl_graph_zero_grad(kl_graph *g)
{
    if (g->grad_data)
        memset(g->grad_data, 0, g->param_total * sizeof(float));
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
    return &g->nodes[id].val;
}

kl_tensor *kl_graph_grad(kl_graph *g, kl_node id)
{
    if (!g->compiled || id < 0 || id >= g->n || !g->nodes[id].grad.data)
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
