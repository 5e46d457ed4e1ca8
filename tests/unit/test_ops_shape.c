/* Tests for ops/cpu/shape.c: reshape and flatten (views: same storage, new shape, gradients
 * through the alias), concat along inner axes of 2-D to 4-D inputs, and embedding lookup (values,
 * a table gradient that accumulates over repeated indices, an index out of range). Values are
 * checked against layouts worked out by hand, gradients by finite differences. */
#include <string.h>

#include "check.h"
#include "gradcheck.h"
#include "kiln/graph.h"

#define TOL 1e-6

/* Expects the graph built so far to fail compiling with want and a message containing needle. */
static void expect_compile_error(const char *label, kl_graph *g, kl_status want, const char *needle)
{
    kl_error err = {0};
    kl_status st = kl_graph_compile(g, 2, KL_NONE, 1, &err);
    if (!check_(st == want && strstr(err.msg, needle) != NULL, __FILE__, __LINE__, label))
        fprintf(stderr, "    %s: status %d (want %d), message '%s'\n", label, (int)st, (int)want,
                err.msg);
}

/* Reshape and flatten. */

static kl_node build_reshape_23(kl_graph *g, const kl_node *l, void *ctx)
{
    return kl_reshape(g, l[0], KL_SHAPE(2, 3));
}
static kl_node build_flatten(kl_graph *g, const kl_node *l, void *ctx)
{
    return kl_flatten(g, l[0]);
}
static kl_node build_linear_flatten(kl_graph *g, const kl_node *l, void *ctx)
{
    return kl_linear(g, kl_flatten(g, l[0]), l[1], l[2]);
}
/* softmax over the last axis of x reshaped to (2, 3) per sample, so the reshape changes what a
 * row is; the reshape sits between two ops, an alias of an activation rather than of an input. */
static kl_node build_linear_reshape_softmax(kl_graph *g, const kl_node *l, void *ctx)
{
    return kl_softmax(g, kl_reshape(g, kl_linear(g, l[0], l[1], KL_NONE), KL_SHAPE(2, 3)));
}

static kl_node build_linear_reshaped_w(kl_graph *g, const kl_node *l, void *ctx)
{
    return kl_linear(g, l[0], kl_reshape(g, l[1], KL_SHAPE(3, 7)), KL_NONE);
}

static void test_reshape_values(void)
{
    float x[12];
    double want[12]; /* reshape and flatten keep the order: the output is x again */
    for (int i = 0; i < 12; i++) {
        x[i] = (float)i;
        want[i] = i;
    }
    gc_leaf l[1] = {gc_with_values(gc_in(KL_SHAPE(2, 6)), x)};
    gc_check_forward("reshape (N, 6) to (N, 2, 3)", l, 1, build_reshape_23, NULL, KL_MODE_EVAL,
                     KL_SHAPE(2, 2, 3), want, TOL);
    gc_leaf l3[1] = {gc_with_values(gc_in(KL_SHAPE(2, 2, 3)), x)};
    gc_check_forward("flatten (N, 2, 3)", l3, 1, build_flatten, NULL, KL_MODE_EVAL, KL_SHAPE(2, 6),
                     want, TOL);
    gc_leaf l4[1] = {gc_with_values(gc_in(KL_SHAPE(2, 3, 1, 2)), x)};
    gc_check_forward("flatten (N, 3, 1, 2)", l4, 1, build_flatten, NULL, KL_MODE_EVAL,
                     KL_SHAPE(2, 6), want, TOL);
    gc_leaf l1[1] = {gc_with_values(gc_in(KL_SHAPE(1, 2, 2, 3)), x)};
    gc_check_forward("flatten at batch 1", l1, 1, build_flatten, NULL, KL_MODE_EVAL,
                     KL_SHAPE(1, 12), want, TOL);
    /* Without a batch, flatten keeps dim 0 too: a (2, 3, 2) weight becomes (2, 6). */
    gc_leaf w[1] = {gc_with_values(gc_w(KL_SHAPE(2, 3, 2)), x)};
    gc_check_forward("flatten of a weight", w, 1, build_flatten, NULL, KL_MODE_EVAL, KL_SHAPE(2, 6),
                     want, TOL);
    gc_leaf w6[1] = {gc_with_values(gc_w(KL_SHAPE(6)), x)};
    gc_check_forward("reshape of a weight", w6, 1, build_reshape_23, NULL, KL_MODE_EVAL,
                     KL_SHAPE(2, 3), want, TOL);

    /* A view costs nothing: the reshaped node reads the input's storage. */
    gc_graph t;
    if (CHECK(gc_run(&t, l, 1, build_reshape_23, NULL, KL_MODE_EVAL) == 0)) {
        CHECK(kl_graph_value(t.g, t.out)->data == kl_graph_value(t.g, t.leaf[0])->data);
        CHECK(kl_graph_batched(t.g, t.out));
    }
    kl_graph_free(t.g);
}

static void test_reshape_grads(void)
{
    const int64_t batches[] = {1, 5};
    char label[96];
    for (int i = 0; i < 2; i++) {
        int64_t n = batches[i];
        gc_leaf l[3] = {gc_in(KL_SHAPE(n, 3, 1, 2)), gc_w(KL_SHAPE(3, 6)), gc_w(KL_SHAPE(3))};
        snprintf(label, sizeof label, "linear(flatten(x)) grad N=%lld", (long long)n);
        gradcheck(label, l, 3, build_linear_flatten, NULL);
        gc_leaf p[2] = {gc_in(KL_SHAPE(n, 7)), gc_w(KL_SHAPE(21))};
        snprintf(label, sizeof label, "linear(x, reshape(w)) grad N=%lld", (long long)n);
        gradcheck(label, p, 2, build_linear_reshaped_w, NULL);
        gc_leaf r[2] = {gc_in(KL_SHAPE(n, 5)), gc_w(KL_SHAPE(6, 5))};
        snprintf(label, sizeof label, "softmax(reshape(linear(x))) grad N=%lld", (long long)n);
        gradcheck(label, r, 2, build_linear_reshape_softmax, NULL);
    }
}

/* A view of a parameter shares the parameter's flat storage and gradient, not the activation
 * arena (where a parameter has no offset): linear(x, reshape(w)) with w (6) read as (2, 3). */
static void test_reshape_param(void)
{
    kl_error err = {0};
    kl_graph *g = kl_graph_new();
    kl_node x = kl_input(g, "x", KL_F32, KL_SHAPE(3));
    kl_node w = kl_param(g, "w", KL_SHAPE(6), (kl_init){KL_INIT_ONES, 0, 0}, 0);
    kl_node w2 = kl_reshape(g, w, KL_SHAPE(2, 3));
    kl_node loss = kl_sum(g, kl_linear(g, x, w2, KL_NONE));
    CHECK_OK(kl_graph_compile(g, 2, loss, 1, &err), &err);
    if (err.status == KL_OK) {
        kl_shape want = KL_SHAPE(2, 3);
        CHECK(kl_shape_eq(&kl_graph_value(g, w2)->shape, &want));
        CHECK(!kl_graph_batched(g, w2));
        CHECK(kl_graph_value(g, w2)->data == kl_graph_value(g, w)->data);
        CHECK(kl_graph_grad(g, w2) != NULL && kl_graph_grad(g, w2)->data == kl_graph_grads(g));

        /* Rows x = [1, 2, 3] and [4, 5, 6] times W = ones (2, 3): (6, 6) and (15, 15), loss 42.
         * dW = sum over rows of x = (5, 7, 9) for each output row, in w's flat gradient. */
        const float xv[] = {1, 2, 3, 4, 5, 6}, dw[] = {5, 7, 9, 5, 7, 9};
        memcpy(kl_graph_value(g, x)->data, xv, sizeof xv);
        kl_graph_zero_grad(g);
        CHECK_OK(kl_graph_forward(g, &err), &err);
        CHECK_NEAR(kl_f32(kl_graph_value(g, loss))[0], 42, TOL);
        CHECK_OK(kl_graph_backward(g, &err), &err);
        for (int i = 0; i < 6; i++)
            CHECK_NEAR(kl_graph_grads(g)[i], dw[i], TOL);
    }
    kl_graph_free(g);
}

static void test_reshape_errors(void)
{
    kl_graph *g = kl_graph_new();
    kl_node x = kl_input(g, "x", KL_F32, KL_SHAPE(6));
    CHECK(kl_reshape(g, x, KL_SHAPE(4, 2)) == KL_NONE);
    expect_compile_error("reshape 6 elements as 8", g, KL_ESHAPE, "reshape");
    kl_graph_free(g);

    g = kl_graph_new();
    x = kl_input(g, "x", KL_F32, KL_SHAPE(6));
    CHECK(kl_reshape(g, x, KL_SHAPE(1, 2, 1, 3)) == KL_NONE); /* 5 axes with the batch */
    expect_compile_error("reshape to 4 axes per sample", g, KL_ESHAPE, "reshape");
    kl_graph_free(g);
}

/* Concat. */

typedef struct cat_case {
    int n, axis;
} cat_case;

static kl_node build_concat(kl_graph *g, const kl_node *l, void *ctx)
{
    const cat_case *c = ctx;
    return kl_concat(g, l, c->n, c->axis);
}

static void test_concat_values(void)
{
    /* 2-D on axis 1: [[1, 2], [3, 4]] and [[5], [6]] -> [[1, 2, 5], [3, 4, 6]]. */
    const float a2[] = {1, 2, 3, 4}, b2[] = {5, 6};
    const double w2[] = {1, 2, 5, 3, 4, 6};
    gc_leaf l2[2] = {gc_with_values(gc_in(KL_SHAPE(2, 2)), a2),
                     gc_with_values(gc_in(KL_SHAPE(2, 1)), b2)};
    gc_check_forward("concat 2-D axis 1", l2, 2, build_concat, &(cat_case){2, 1}, KL_MODE_EVAL,
                     KL_SHAPE(2, 3), w2, TOL);
    gc_check_forward("concat 2-D axis -1", l2, 2, build_concat, &(cat_case){2, -1}, KL_MODE_EVAL,
                     KL_SHAPE(2, 3), w2, TOL);

    /* Three inputs on axis 1: [[1, 2], [3, 4]], [[5], [6]], [[7, 8], [9, 10]]. */
    const float c2[] = {7, 8, 9, 10};
    const double w3in[] = {1, 2, 5, 7, 8, 3, 4, 6, 9, 10};
    gc_leaf l3in[3] = {l2[0], l2[1], gc_with_values(gc_in(KL_SHAPE(2, 2)), c2)};
    gc_check_forward("concat three inputs", l3in, 3, build_concat, &(cat_case){3, 1}, KL_MODE_EVAL,
                     KL_SHAPE(2, 5), w3in, TOL);

    /* The same 12 numbers laid out per case: a holds 1..4, b holds 5..12. */
    const float a[] = {1, 2, 3, 4}, b[] = {5, 6, 7, 8, 9, 10, 11, 12};
    /* 3-D on axis 1: a (2, 1, 2), b (2, 2, 2); sample 0 is a's [1, 2] then b's [5, 6], [7, 8]. */
    const double w31[] = {1, 2, 5, 6, 7, 8, 3, 4, 9, 10, 11, 12};
    gc_leaf l31[2] = {gc_with_values(gc_in(KL_SHAPE(2, 1, 2)), a),
                      gc_with_values(gc_in(KL_SHAPE(2, 2, 2)), b)};
    gc_check_forward("concat 3-D axis 1", l31, 2, build_concat, &(cat_case){2, 1}, KL_MODE_EVAL,
                     KL_SHAPE(2, 3, 2), w31, TOL);
    /* 3-D on the last axis: a (2, 2, 1), b (2, 2, 2); each row is a's one value, b's two. */
    const double wlast[] = {1, 5, 6, 2, 7, 8, 3, 9, 10, 4, 11, 12};
    gc_leaf l32[2] = {gc_with_values(gc_in(KL_SHAPE(2, 2, 1)), a),
                      gc_with_values(gc_in(KL_SHAPE(2, 2, 2)), b)};
    gc_check_forward("concat 3-D axis -1", l32, 2, build_concat, &(cat_case){2, -1}, KL_MODE_EVAL,
                     KL_SHAPE(2, 2, 3), wlast, TOL);
    /* 4-D on axis 1 (channels): a (2, 1, 1, 2), b (2, 2, 1, 2), the 3-D axis 1 layout again. */
    gc_leaf l41[2] = {gc_with_values(gc_in(KL_SHAPE(2, 1, 1, 2)), a),
                      gc_with_values(gc_in(KL_SHAPE(2, 2, 1, 2)), b)};
    gc_check_forward("concat 4-D axis 1", l41, 2, build_concat, &(cat_case){2, 1}, KL_MODE_EVAL,
                     KL_SHAPE(2, 3, 1, 2), w31, TOL);
    /* 4-D on axis 3: a (2, 1, 2, 1), b (2, 1, 2, 2), the last-axis layout again. */
    gc_leaf l43[2] = {gc_with_values(gc_in(KL_SHAPE(2, 1, 2, 1)), a),
                      gc_with_values(gc_in(KL_SHAPE(2, 1, 2, 2)), b)};
    gc_check_forward("concat 4-D axis 3", l43, 2, build_concat, &(cat_case){2, 3}, KL_MODE_EVAL,
                     KL_SHAPE(2, 1, 2, 3), wlast, TOL);
    /* 4-D on axis 2: a (2, 2, 1, 1), b (2, 2, 2, 1); each channel is a's value then b's two. */
    gc_leaf l42[2] = {gc_with_values(gc_in(KL_SHAPE(2, 2, 1, 1)), a),
                      gc_with_values(gc_in(KL_SHAPE(2, 2, 2, 1)), b)};
    gc_check_forward("concat 4-D axis 2", l42, 2, build_concat, &(cat_case){2, 2}, KL_MODE_EVAL,
                     KL_SHAPE(2, 2, 3, 1), wlast, TOL);
    /* Weights (no batch) may be joined on axis 0: [1, 2] over [[5, 6], [7, 8]]. */
    const double w0[] = {1, 2, 5, 6, 7, 8};
    gc_leaf lw[2] = {gc_with_values(gc_w(KL_SHAPE(1, 2)), a),
                     gc_with_values(gc_w(KL_SHAPE(2, 2)), b)};
    gc_check_forward("concat weights axis 0", lw, 2, build_concat, &(cat_case){2, 0}, KL_MODE_EVAL,
                     KL_SHAPE(3, 2), w0, TOL);
}

/* x joined to itself: both slices of the output's gradient add into x's. */
static kl_node build_concat_self(kl_graph *g, const kl_node *l, void *ctx)
{
    const kl_node xs[3] = {l[0], l[1], l[0]};
    return kl_concat(g, xs, 3, -1);
}

static void test_concat_grads(void)
{
    const int64_t batches[] = {1, 5};
    char label[96];
    for (int i = 0; i < 2; i++) {
        int64_t n = batches[i];
        struct {
            kl_shape a, b, c;
            int nin, axis;
        } cases[] = {
            {KL_SHAPE(n, 3), KL_SHAPE(n, 4), KL_SHAPE(n, 1), 3, 1},
            {KL_SHAPE(n, 2, 3), KL_SHAPE(n, 3, 3), {0}, 2, 1},
            {KL_SHAPE(n, 2, 3), KL_SHAPE(n, 2, 5), {0}, 2, -1},
            {KL_SHAPE(n, 1, 3, 2), KL_SHAPE(n, 2, 3, 2), {0}, 2, 1},
            {KL_SHAPE(n, 2, 1, 3), KL_SHAPE(n, 2, 3, 3), {0}, 2, 2},
            {KL_SHAPE(n, 2, 3, 1), KL_SHAPE(n, 2, 3, 4), KL_SHAPE(n, 2, 3, 2), 3, 3},
        };
        for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
            gc_leaf l[3] = {gc_in(cases[k].a), gc_in(cases[k].b), gc_in(cases[k].c)};
            cat_case c = {cases[k].nin, cases[k].axis};
            snprintf(label, sizeof label, "concat grad %d-D axis %d N=%lld", cases[k].a.ndim,
                     c.axis, (long long)n);
            gradcheck(label, l, c.n, build_concat, &c);
        }
    }
    gc_leaf w[2] = {gc_w(KL_SHAPE(1, 3)), gc_w(KL_SHAPE(4, 3))};
    gradcheck("concat grad weights axis 0", w, 2, build_concat, &(cat_case){2, 0});
    for (int i = 0; i < 2; i++) {
        gc_leaf l[2] = {gc_in(KL_SHAPE(batches[i], 3, 2)), gc_in(KL_SHAPE(batches[i], 3, 1))};
        snprintf(label, sizeof label, "concat(x, y, x) grad N=%lld", (long long)batches[i]);
        gradcheck(label, l, 2, build_concat_self, NULL);
    }
}

static void test_concat_errors(void)
{
    kl_graph *g = kl_graph_new();
    kl_node xs[2] = {kl_input(g, "a", KL_F32, KL_SHAPE(3)), kl_input(g, "b", KL_F32, KL_SHAPE(3))};
    CHECK(kl_concat(g, xs, 2, 0) == KL_NONE);
    expect_compile_error("concat batched inputs on axis 0", g, KL_EINVAL, "concat");
    kl_graph_free(g);

    g = kl_graph_new();
    xs[0] = kl_input(g, "a", KL_F32, KL_SHAPE(3, 2));
    xs[1] = kl_input(g, "b", KL_F32, KL_SHAPE(4, 3));
    CHECK(kl_concat(g, xs, 2, 1) == KL_NONE);
    expect_compile_error("concat (N, 3, 2) and (N, 4, 3) on axis 1", g, KL_ESHAPE, "concat");
    kl_graph_free(g);

    g = kl_graph_new();
    xs[0] = kl_input(g, "a", KL_F32, KL_SHAPE(3, 2));
    xs[1] = kl_input(g, "b", KL_F32, KL_SHAPE(3));
    CHECK(kl_concat(g, xs, 2, 1) == KL_NONE);
    expect_compile_error("concat 3-D and 2-D", g, KL_ESHAPE, "concat");
    kl_graph_free(g);

    g = kl_graph_new();
    xs[0] = kl_input(g, "a", KL_F32, KL_SHAPE(3));
    xs[1] = kl_param(g, "w", KL_SHAPE(1, 3), (kl_init){KL_INIT_ZEROS, 0, 0}, 0);
    CHECK(kl_concat(g, xs, 2, 1) == KL_NONE);
    expect_compile_error("concat batched and unbatched", g, KL_ESHAPE, "concat");
    kl_graph_free(g);

    g = kl_graph_new();
    xs[0] = kl_input(g, "a", KL_F32, KL_SHAPE(3));
    xs[1] = kl_input(g, "b", KL_F32, KL_SHAPE(3));
    CHECK(kl_concat(g, xs, 2, 2) == KL_NONE);
    expect_compile_error("concat on axis 2 of 2-D inputs", g, KL_EINVAL, "concat");
    kl_graph_free(g);
}

/* Embedding. */

static kl_node build_embedding(kl_graph *g, const kl_node *l, void *ctx)
{
    return kl_embedding(g, l[0], l[1]);
}

static void test_embedding_values(void)
{
    float table[12]; /* (4, 3) holding 0..11, so row r is (3r, 3r+1, 3r+2) */
    for (int i = 0; i < 12; i++)
        table[i] = (float)i;
    /* Indices [[0, 3, 1], [2, 2, 0]] pick rows 0, 3, 1 and 2, 2, 0. */
    const float idx[] = {0, 3, 1, 2, 2, 0};
    const double want[] = {0, 1, 2, 9, 10, 11, 3, 4, 5, 6, 7, 8, 6, 7, 8, 0, 1, 2};
    gc_leaf l[2] = {gc_with_values(gc_int(KL_SHAPE(2, 3), 4), idx),
                    gc_with_values(gc_w(KL_SHAPE(4, 3)), table)};
    gc_check_forward("embedding (N, T) indices", l, 2, build_embedding, NULL, KL_MODE_EVAL,
                     KL_SHAPE(2, 3, 3), want, TOL);
    /* One index per sample: (N) -> (N, D). */
    const float idx1[] = {3, 0};
    const double want1[] = {9, 10, 11, 0, 1, 2};
    gc_leaf l1[2] = {gc_with_values(gc_int(KL_SHAPE(2), 4), idx1), l[1]};
    gc_check_forward("embedding (N) indices", l1, 2, build_embedding, NULL, KL_MODE_EVAL,
                     KL_SHAPE(2, 3), want1, TOL);
}

/* d sum(embedding) / d table[r][k] is how often row r is picked: [[0, 3, 1], [2, 2, 0]] picks
 * rows 0 and 2 twice and rows 1 and 3 once, and the repeats must add, not overwrite. */
static void test_embedding_grad_counts(void)
{
    kl_error err = {0};
    kl_graph *g = kl_graph_new();
    kl_node idx = kl_input(g, "idx", KL_I32, KL_SHAPE(3));
    kl_node tab = kl_param(g, "table", KL_SHAPE(4, 3), (kl_init){KL_INIT_ONES, 0, 0}, 0);
    kl_node loss = kl_sum(g, kl_embedding(g, idx, tab));
    CHECK_OK(kl_graph_compile(g, 2, loss, 1, &err), &err);
    if (err.status == KL_OK) {
        const int32_t iv[] = {0, 3, 1, 2, 2, 0};
        memcpy(kl_graph_value(g, idx)->data, iv, sizeof iv);
        kl_graph_zero_grad(g);
        CHECK_OK(kl_graph_forward(g, &err), &err);
        CHECK_NEAR(kl_f32(kl_graph_value(g, loss))[0], 18, TOL); /* six rows of three ones */
        CHECK_OK(kl_graph_backward(g, &err), &err);
        const float *d = kl_f32(kl_graph_grad(g, tab));
        const float count[] = {2, 1, 2, 1};
        for (int r = 0; r < 4; r++)
            for (int k = 0; k < 3; k++)
                CHECK_NEAR(d[r * 3 + k], count[r], TOL);
    }
    kl_graph_free(g);
}

static void test_embedding_grads(void)
{
    const int64_t batches[] = {1, 5};
    char label[96];
    for (int i = 0; i < 2; i++) {
        /* 7 (or 35) indices into 5 rows: some row is picked more than once. */
        gc_leaf l[2] = {gc_int(KL_SHAPE(batches[i], 7), 5), gc_w(KL_SHAPE(5, 3))};
        snprintf(label, sizeof label, "embedding grad N=%lld", (long long)batches[i]);
        gradcheck(label, l, 2, build_embedding, NULL);
    }
}

static void test_embedding_errors(void)
{
    const int32_t bad[][4] = {{0, 1, 2, 3}, {0, 1, 2, 4}, {0, -1, 2, 3}};
    const char *where[] = {NULL, "position 3", "position 1"};
    for (int c = 0; c < 3; c++) {
        kl_error err = {0};
        kl_graph *g = kl_graph_new();
        kl_node idx = kl_input(g, "idx", KL_I32, KL_SHAPE(2));
        kl_node tab = kl_param(g, "table", KL_SHAPE(4, 3), (kl_init){KL_INIT_ONES, 0, 0}, 0);
        kl_node y = kl_embedding(g, idx, tab);
        kl_graph_mark_output(g, y);
        CHECK_OK(kl_graph_compile(g, 2, KL_NONE, 1, &err), &err);
        if (err.status == KL_OK) {
            memcpy(kl_graph_value(g, idx)->data, bad[c], sizeof bad[c]);
            kl_status st = kl_graph_forward(g, &err);
            if (!where[c]) {
                CHECK(st == KL_OK);
            } else if (!CHECK(st == KL_ERANGE && strstr(err.msg, where[c]) != NULL &&
                              strstr(err.msg, "embedding") != NULL)) {
                fprintf(stderr, "    status %d, message '%s'\n", (int)st, err.msg);
            }
        }
        kl_graph_free(g);
    }

    /* f32 indices are refused when the graph is built. */
    kl_graph *g = kl_graph_new();
    kl_node idx = kl_input(g, "idx", KL_F32, KL_SHAPE(2));
    kl_node tab = kl_param(g, "table", KL_SHAPE(4, 3), (kl_init){KL_INIT_ONES, 0, 0}, 0);
    CHECK(kl_embedding(g, idx, tab) == KL_NONE);
    expect_compile_error("embedding with f32 indices", g, KL_ESHAPE, "embedding");
    kl_graph_free(g);
}

static const check_case cases[] = {
    CHECK_CASE(test_reshape_values),        CHECK_CASE(test_reshape_grads),
    CHECK_CASE(test_reshape_param),         CHECK_CASE(test_reshape_errors),
    CHECK_CASE(test_concat_values),         CHECK_CASE(test_concat_grads),
    CHECK_CASE(test_concat_errors),         CHECK_CASE(test_embedding_values),
    CHECK_CASE(test_embedding_grad_counts), CHECK_CASE(test_embedding_grads),
    CHECK_CASE(test_embedding_errors),
};

int main(int argc, char **argv)
{
    return check_run("test_ops_shape", cases, CHECK_NCASES(cases), argc, argv);
}
