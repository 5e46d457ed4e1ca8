/* Finite-difference gradient checks for ops, and small helpers to run an op on given values.
 *
 * A test describes its leaves (batched inputs or weights, f32 or i32, with a value range) and a
 * build function that applies the op. gradcheck() compiles the graph, projects a non-scalar output
 * onto fixed random weights R (loss = sum(out * R), summed in double on the host for the numeric
 * side), runs backward, and compares every gradient element (or a sample of them) with central
 * differences. Header-only so each op family's test is one executable. */
#ifndef KILN_TEST_GRADCHECK_H
#define KILN_TEST_GRADCHECK_H

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "kiln/graph.h"
#include "kiln/rng.h"

#define GC_MAX_LEAVES 8

typedef struct gc_leaf {
    kl_shape shape; /* full shape; for a batched leaf d[0] is the batch */
    bool batched;   /* an input (batched) or a weight (a parameter) */
    bool grad;      /* check d(loss)/d(this leaf) */
    kl_dtype dtype;
    float lo, hi;        /* values uniform in [lo, hi); i32 leaves get integers in [lo, hi) */
    const float *values; /* or exact values (integral ones for i32), NULL for random */
} gc_leaf;

typedef kl_node (*gc_build_fn)(kl_graph *g, const kl_node *leaves, void *ctx);

typedef struct gc_opts {
    float eps, atol, rtol;
    int max_checks; /* per leaf; 0 checks every element */
    kl_mode mode;
    uint64_t seed;
} gc_opts;

static inline gc_opts gc_defaults(void)
{
    return (gc_opts){.eps = 1e-3f,
                     .atol = 2e-3f,
                     .rtol = 2e-2f,
                     .max_checks = 150,
                     .mode = KL_MODE_TRAIN,
                     .seed = 1234};
}

/* A batched f32 leaf with gradient, values in [-1, 1). */
static inline gc_leaf gc_in(kl_shape s)
{
    return (gc_leaf){.shape = s, .batched = true, .grad = true, .dtype = KL_F32, .lo = -1, .hi = 1};
}

/* A weight leaf with gradient, values in [-1, 1). */
static inline gc_leaf gc_w(kl_shape s)
{
    return (gc_leaf){
        .shape = s, .batched = false, .grad = true, .dtype = KL_F32, .lo = -1, .hi = 1};
}

/* A batched i32 leaf (labels, indices) with values in [0, n). */
static inline gc_leaf gc_int(kl_shape s, int n)
{
    return (gc_leaf){
        .shape = s, .batched = true, .grad = false, .dtype = KL_I32, .lo = 0, .hi = (float)n};
}

/* l with exact values (integral ones for an i32 leaf) in place of random ones. */
static inline gc_leaf gc_with_values(gc_leaf l, const float *v)
{
    l.values = v;
    return l;
}

typedef struct gc_graph {
    kl_graph *g;
    kl_node leaf[GC_MAX_LEAVES];
    kl_node out, loss, proj;
    int nleaves;
} gc_graph;

static inline kl_tensor *gc_leaf_tensor(gc_graph *t, int i)
{
    return kl_graph_value(t->g, t->leaf[i]);
}

/* Builds and compiles the graph, fills the leaves. Returns 0 on success. */
static inline int gc_setup(gc_graph *t, const gc_leaf *leaves, int n, gc_build_fn build, void *ctx,
                           const gc_opts *o)
{
    kl_error err = {0};
    int64_t batch = 1;
    memset(t, 0, sizeof *t);
    t->g = kl_graph_new();
    t->nleaves = n;
    for (int i = 0; i < n; i++) {
        const gc_leaf *l = &leaves[i];
        char name[32];
        snprintf(name, sizeof name, "leaf%d", i);
        if (l->batched) {
            kl_shape per = {.ndim = l->shape.ndim - 1};
            for (int d = 1; d < l->shape.ndim; d++)
                per.d[d - 1] = l->shape.d[d];
            batch = l->shape.d[0];
            t->leaf[i] = kl_input(t->g, name, l->dtype, per);
            if (l->grad)
                kl_graph_require_grad(t->g, t->leaf[i]);
        } else {
            t->leaf[i] = kl_param(t->g, name, l->shape, (kl_init){KL_INIT_ZEROS, 0, 0}, 0);
        }
    }
    t->out = build(t->g, t->leaf, ctx);
    kl_shape os = kl_graph_shape(t->g, t->out);
    bool scalar = t->out != KL_NONE && kl_shape_numel(&os) == 1 && os.ndim == 1;
    t->proj = KL_NONE;
    if (t->out == KL_NONE || scalar) {
        t->loss = t->out;
    } else {
        /* R matches the output: per sample when the output is batched (its dim 0 is 1 until
         * compile), else a fixed buffer. */
        if (kl_graph_batched(t->g, t->out)) {
            kl_shape per = {.ndim = os.ndim - 1};
            for (int d = 1; d < os.ndim; d++)
                per.d[d - 1] = os.d[d];
            t->proj = kl_input(t->g, "R", KL_F32, per);
        } else {
            t->proj = kl_buffer(t->g, "R", os, (kl_init){KL_INIT_UNIFORM, -1, 1});
        }
        t->loss = kl_sum(t->g, kl_mul(t->g, t->out, t->proj));
    }
    kl_graph_mark_output(t->g, t->out);
    if (kl_graph_compile(t->g, batch, t->loss, o->seed, &err) != KL_OK) {
        fprintf(stderr, "gradcheck: compile failed: %s\n", err.msg);
        return -1;
    }
    kl_graph_set_mode(t->g, o->mode);
    kl_graph_set_rng(t->g, o->seed, 7, 0);
    for (int i = 0; i < n; i++) {
        const gc_leaf *l = &leaves[i];
        kl_tensor *v = gc_leaf_tensor(t, i);
        int64_t m = kl_numel(v);
        for (int64_t k = 0; k < m; k++) {
            float u = kl_rng_uniform(o->seed, KL_RNG_TEST, (uint64_t)i, (uint64_t)k);
            if (l->dtype == KL_I32)
                kl_i32(v)[k] = l->values ? (int32_t)l->values[k]
                                         : (int32_t)l->lo + (int32_t)(u * (l->hi - l->lo));
            else
                kl_f32(v)[k] = l->values ? l->values[k] : l->lo + (l->hi - l->lo) * u;
        }
    }
    if (t->proj != KL_NONE) {
        kl_tensor *r = kl_graph_value(t->g, t->proj);
        kl_rng_fill_uniform(o->seed, KL_RNG_TEST, 99, kl_f32(r), (size_t)kl_numel(r), -1, 1);
    }
    return 0;
}

/* The loss recomputed on the host in double: sum(out * R), or the scalar output itself. */
static inline double gc_loss(gc_graph *t)
{
    kl_error err = {0};
    if (kl_graph_forward(t->g, &err) != KL_OK) {
        fprintf(stderr, "gradcheck: forward failed: %s\n", err.msg);
        return NAN;
    }
    const kl_tensor *out = kl_graph_value(t->g, t->out);
    if (t->proj == KL_NONE)
        return kl_f32(out)[0];
    const float *r = kl_f32(kl_graph_value(t->g, t->proj));
    double s = 0;
    for (int64_t k = 0; k < kl_numel(out); k++)
        s += (double)kl_f32(out)[k] * r[k];
    return s;
}

/* Checks analytic against numeric gradients of every leaf marked grad. Returns failures. */
static inline int gradcheck_opts(const char *label, const gc_leaf *leaves, int n, gc_build_fn build,
                                 void *ctx, const gc_opts *o)
{
    gc_graph t;
    kl_error err = {0};
    int bad = 0;
    if (gc_setup(&t, leaves, n, build, ctx, o) != 0) {
        CHECK(!"gradcheck setup");
        kl_graph_free(t.g);
        return 1;
    }
    kl_graph_zero_grad(t.g);
    if (kl_graph_forward(t.g, &err) != KL_OK || kl_graph_backward(t.g, &err) != KL_OK) {
        fprintf(stderr, "%s: forward/backward failed: %s\n", label, err.msg);
        CHECK(!"forward/backward");
        kl_graph_free(t.g);
        return 1;
    }
    /* Copy every analytic gradient before any finite-difference forward: an input's gradient
     * lives in the arena, which the next forward reuses. */
    float *analytic[GC_MAX_LEAVES] = {0};
    for (int i = 0; i < n; i++) {
        kl_tensor *gt = leaves[i].grad ? kl_graph_grad(t.g, t.leaf[i]) : NULL;
        if (leaves[i].grad && !gt) {
            fprintf(stderr, "%s: leaf %d has no gradient\n", label, i);
            bad++;
        } else if (gt) {
            size_t bytes = (size_t)kl_numel(gt) * sizeof(float);
            analytic[i] = malloc(bytes);
            KL_ASSERT(analytic[i]);
            memcpy(analytic[i], gt->data, bytes);
        }
    }
    for (int i = 0; i < n && bad < 5; i++) {
        if (!analytic[i])
            continue;
        kl_tensor *v = gc_leaf_tensor(&t, i);
        int64_t m = kl_numel(v);
        int64_t stride = o->max_checks && m > o->max_checks ? m / o->max_checks : 1;
        for (int64_t k = 0; k < m && bad < 5; k += stride) {
            float *x = &kl_f32(v)[k], x0 = *x;
            *x = x0 + o->eps;
            double lp = gc_loss(&t);
            *x = x0 - o->eps;
            double lm = gc_loss(&t);
            *x = x0;
            double num = (lp - lm) / (2.0 * o->eps), ana = analytic[i][k];
            double tol = o->atol + o->rtol * fmax(fabs(num), fabs(ana));
            if (!(fabs(num - ana) <= tol)) {
                fprintf(stderr, "%s: leaf %d element %lld: analytic %.6g, numeric %.6g\n", label, i,
                        (long long)k, ana, num);
                bad++;
            }
        }
    }
    for (int i = 0; i < n; i++)
        free(analytic[i]);
    check_(bad == 0, __FILE__, __LINE__, label);
    kl_graph_free(t.g);
    return bad;
}

static inline int gradcheck(const char *label, const gc_leaf *leaves, int n, gc_build_fn build,
                            void *ctx)
{
    gc_opts o = gc_defaults();
    return gradcheck_opts(label, leaves, n, build, ctx, &o);
}

/* Runs forward once on exact leaf values (from leaves[i].values) and returns the graph, for
 * forward-value tests; the caller reads kl_graph_value(t->g, t->out) and frees t->g. */
static inline int gc_run(gc_graph *t, const gc_leaf *leaves, int n, gc_build_fn build, void *ctx,
                         kl_mode mode)
{
    gc_opts o = gc_defaults();
    o.mode = mode;
    kl_error err = {0};
    if (gc_setup(t, leaves, n, build, ctx, &o) != 0)
        return -1;
    if (kl_graph_forward(t->g, &err) != KL_OK) {
        fprintf(stderr, "gc_run: forward failed: %s\n", err.msg);
        return -1;
    }
    return 0;
}

/* Runs build in mode on exact leaf values and compares the output with want_shape and want
 * (|got - want| <= tol per element). Counts one check for the run, one for the shape and one for
 * the values, printing the shapes or up to 4 bad elements under label when one fails. */
static inline void gc_check_forward(const char *label, const gc_leaf *leaves, int nl,
                                    gc_build_fn build, void *ctx, kl_mode mode, kl_shape want_shape,
                                    const double *want, double tol)
{
    gc_graph t;
    char got_s[96], want_s[96];
    if (!check_(gc_run(&t, leaves, nl, build, ctx, mode) == 0, __FILE__, __LINE__, label)) {
        kl_graph_free(t.g);
        return;
    }
    const kl_tensor *y = kl_graph_value(t.g, t.out);
    if (!check_(kl_shape_eq(&y->shape, &want_shape), __FILE__, __LINE__, label)) {
        fprintf(stderr, "    %s: shape %s, want %s\n", label,
                kl_shape_str(&y->shape, got_s, sizeof got_s),
                kl_shape_str(&want_shape, want_s, sizeof want_s));
        kl_graph_free(t.g);
        return;
    }
    int bad = 0;
    for (int64_t i = 0; i < kl_numel(y); i++) {
        if (!(fabs((double)kl_f32(y)[i] - want[i]) <= tol)) {
            if (bad++ < 4)
                fprintf(stderr, "    %s: element %lld is %.9g, want %.9g\n", label, (long long)i,
                        (double)kl_f32(y)[i], want[i]);
        }
    }
    check_(bad == 0, __FILE__, __LINE__, label);
    kl_graph_free(t.g);
}

#endif
