/* Tests for ops/cpu/linear.c: matmul in its four transpose combinations (and contracting over the
 * batch), linear on 2-D and 3-D inputs with and without a bias, and bias_add on 2-D to 4-D inputs,
 * against products worked out by hand; every input's gradient by finite differences on odd sizes
 * and batch 1, also when a node feeds an op twice or gradients build up over two backward passes;
 * and the shape errors a user can make, reported by kl_graph_compile. */
#include <string.h>

#include "check.h"
#include "gradcheck.h"
#include "kiln/graph.h"

#define TOL 1e-5

typedef struct mm_case {
    bool ta, tb;
} mm_case;

static kl_node build_matmul(kl_graph *g, const kl_node *l, void *ctx)
{
    const mm_case *c = ctx;
    return kl_matmul(g, l[0], l[1], c->ta, c->tb);
}

static kl_node build_linear(kl_graph *g, const kl_node *l, void *ctx)
{
    return kl_linear(g, l[0], l[1], KL_NONE);
}

static kl_node build_linear_bias(kl_graph *g, const kl_node *l, void *ctx)
{
    return kl_linear(g, l[0], l[1], l[2]);
}

static kl_node build_bias_add(kl_graph *g, const kl_node *l, void *ctx)
{
    return kl_bias_add(g, l[0], l[1]);
}

/* A = [[1, 2, 3], [4, 5, 6]] (2, 3) and B = [[7, 8], [9, 10], [11, 12]] (3, 2). Each combination
 * stores the operand it transposes already transposed, so all four compute A B:
 *   row 0: (1*7 + 2*9 + 3*11, 1*8 + 2*10 + 3*12) = (58, 64)
 *   row 1: (4*7 + 5*9 + 6*11, 4*8 + 5*10 + 6*12) = (139, 154)
 * A kernel that ignored a flag would meet mismatched inner dimensions or a wrong stride. */
static const float MAT_A[] = {1, 2, 3, 4, 5, 6};
static const float MAT_AT[] = {1, 4, 2, 5, 3, 6};
static const float MAT_B[] = {7, 8, 9, 10, 11, 12};
static const float MAT_BT[] = {7, 9, 11, 8, 10, 12};
static const double MAT_AB[] = {58, 64, 139, 154};

static void test_matmul_values(void)
{
    for (int ta = 0; ta < 2; ta++) {
        for (int tb = 0; tb < 2; tb++) {
            mm_case c = {ta, tb};
            gc_leaf l[2] = {
                gc_with_values(gc_w(ta ? KL_SHAPE(3, 2) : KL_SHAPE(2, 3)), ta ? MAT_AT : MAT_A),
                gc_with_values(gc_w(tb ? KL_SHAPE(2, 3) : KL_SHAPE(3, 2)), tb ? MAT_BT : MAT_B)};
            char label[64];
            snprintf(label, sizeof label, "matmul values ta=%d tb=%d (weights)", ta, tb);
            gc_check_forward(label, l, 2, build_matmul, &c, KL_MODE_EVAL, KL_SHAPE(2, 2), MAT_AB,
                             TOL);
        }
    }
    /* A batched a (the batch is A's 2 rows) times a weight keeps the batch in dim 0. */
    for (int tb = 0; tb < 2; tb++) {
        mm_case c = {false, tb};
        gc_leaf l[2] = {
            gc_with_values(gc_in(KL_SHAPE(2, 3)), MAT_A),
            gc_with_values(gc_w(tb ? KL_SHAPE(2, 3) : KL_SHAPE(3, 2)), tb ? MAT_BT : MAT_B)};
        gc_check_forward(tb ? "matmul values batched a, b^T" : "matmul values batched a, b", l, 2,
                         build_matmul, &c, KL_MODE_EVAL, KL_SHAPE(2, 2), MAT_AB, TOL);
    }
    /* a^T b with both batched: the batch of 3 is the contracted axis, A^T stored as (3, 2) and B
     * as (3, 2), and the (2, 2) output has no batch. */
    mm_case c = {true, false};
    gc_leaf l[2] = {gc_with_values(gc_in(KL_SHAPE(3, 2)), MAT_AT),
                    gc_with_values(gc_in(KL_SHAPE(3, 2)), MAT_B)};
    gc_check_forward("matmul values a^T b contracting the batch", l, 2, build_matmul, &c,
                     KL_MODE_EVAL, KL_SHAPE(2, 2), MAT_AB, TOL);
}

/* a^T b over the batch at a run-time batch smaller than the compiled one: the kernel must
 * contract over the rows being run only. Rows 0..1 of a = [[1, 2], [3, 4]] and b = [[5], [6]]:
 * a^T b = [[1*5 + 3*6], [2*5 + 4*6]] = [[23], [34]]; with all three rows (a row 2 = [100, 100],
 * b row 2 = [1]) it would be [[123], [134]]. */
static void test_matmul_contract_smaller_batch(void)
{
    kl_error err = {0};
    kl_graph *g = kl_graph_new();
    kl_node a = kl_input(g, "a", KL_F32, KL_SHAPE(2));
    kl_node b = kl_input(g, "b", KL_F32, KL_SHAPE(1));
    kl_node y = kl_matmul(g, a, b, true, false);
    kl_graph_mark_output(g, y);
    CHECK_OK(kl_graph_compile(g, 3, KL_NONE, 1, &err), &err);
    if (err.status == KL_OK) {
        const float av[] = {1, 2, 3, 4, 100, 100}, bv[] = {5, 6, 1};
        memcpy(kl_graph_value(g, a)->data, av, sizeof av);
        memcpy(kl_graph_value(g, b)->data, bv, sizeof bv);
        CHECK(!kl_graph_batched(g, y));
        CHECK_OK(kl_graph_forward(g, &err), &err);
        CHECK_NEAR(kl_f32(kl_graph_value(g, y))[0], 123, TOL);
        CHECK_NEAR(kl_f32(kl_graph_value(g, y))[1], 134, TOL);
        CHECK_OK(kl_graph_set_batch(g, 2, &err), &err);
        CHECK_OK(kl_graph_forward(g, &err), &err);
        CHECK_NEAR(kl_f32(kl_graph_value(g, y))[0], 23, TOL);
        CHECK_NEAR(kl_f32(kl_graph_value(g, y))[1], 34, TOL);
    }
    kl_graph_free(g);
}

/* x = [[1, 2, 3], [4, 5, 6]], W = [[1, 0, -1], [2, 1, 0]] (out 2, in 3), b = (0.5, -1):
 *   x W^T row 0: (1 - 3, 2 + 2) = (-2, 4); row 1: (4 - 6, 8 + 5) = (-2, 13)
 *   plus b: (-1.5, 3) and (-1.5, 12). */
static const float LIN_X[] = {1, 2, 3, 4, 5, 6};
static const float LIN_W[] = {1, 0, -1, 2, 1, 0};
static const float LIN_B[] = {0.5f, -1};

static void test_linear_values(void)
{
    gc_leaf l[3] = {gc_with_values(gc_in(KL_SHAPE(2, 3)), LIN_X),
                    gc_with_values(gc_w(KL_SHAPE(2, 3)), LIN_W),
                    gc_with_values(gc_w(KL_SHAPE(2)), LIN_B)};
    const double no_bias[] = {-2, 4, -2, 13}, bias[] = {-1.5, 3, -1.5, 12};
    gc_check_forward("linear values without bias", l, 2, build_linear, NULL, KL_MODE_EVAL,
                     KL_SHAPE(2, 2), no_bias, TOL);
    gc_check_forward("linear values with bias", l, 3, build_linear_bias, NULL, KL_MODE_EVAL,
                     KL_SHAPE(2, 2), bias, TOL);

    /* (N 2, T 2, in 3): the rows above, then [0, 1, 0] -> (0, 1) and [-1, 0, 2] -> (-1 - 2,
     * -2 + 0) = (-3, -2); plus b: (0.5, 0) and (-2.5, -3). */
    const float x3[] = {1, 2, 3, 4, 5, 6, 0, 1, 0, -1, 0, 2};
    const double want3[] = {-1.5, 3, -1.5, 12, 0.5, 0, -2.5, -3};
    gc_leaf l3[3] = {gc_with_values(gc_in(KL_SHAPE(2, 2, 3)), x3), l[1], l[2]};
    gc_check_forward("linear values on (N, T, in)", l3, 3, build_linear_bias, NULL, KL_MODE_EVAL,
                     KL_SHAPE(2, 2, 2), want3, TOL);

    /* Up to 7 rows take one GEMV a row (all of the above), more take sgemm: the first row above
     * alone, and the two rows above repeated to 9 rows. */
    gc_leaf l1[3] = {gc_with_values(gc_in(KL_SHAPE(1, 3)), LIN_X), l[1], l[2]};
    gc_check_forward("linear values, one row", l1, 2, build_linear, NULL, KL_MODE_EVAL,
                     KL_SHAPE(1, 2), no_bias, TOL);
    gc_check_forward("linear values with bias, one row", l1, 3, build_linear_bias, NULL,
                     KL_MODE_EVAL, KL_SHAPE(1, 2), bias, TOL);
    float x9[27];
    double want9[18];
    for (int r = 0; r < 9; r++) {
        memcpy(x9 + 3 * r, LIN_X + 3 * (r % 2), 3 * sizeof(float));
        want9[2 * r] = bias[2 * (r % 2)];
        want9[2 * r + 1] = bias[2 * (r % 2) + 1];
    }
    gc_leaf l9[3] = {gc_with_values(gc_in(KL_SHAPE(9, 3)), x9), l[1], l[2]};
    gc_check_forward("linear values with bias, 9 rows (sgemm)", l9, 3, build_linear_bias, NULL,
                     KL_MODE_EVAL, KL_SHAPE(9, 2), want9, TOL);
}

static void test_bias_add_values(void)
{
    /* [[1, 2, 3], [4, 5, 6]] + (10, 20, 30) along axis 1. */
    const float x2[] = {1, 2, 3, 4, 5, 6}, b2[] = {10, 20, 30};
    const double want2[] = {11, 22, 33, 14, 25, 36};
    gc_leaf l2[2] = {gc_with_values(gc_in(KL_SHAPE(2, 3)), x2),
                     gc_with_values(gc_w(KL_SHAPE(3)), b2)};
    gc_check_forward("bias_add values 2-D", l2, 2, build_bias_add, NULL, KL_MODE_EVAL,
                     KL_SHAPE(2, 3), want2, TOL);

    /* (N 2, C 3, H 2, W 1) holding 0..11, so element k is in channel (k / 2) % 3; b = (0.5, 1.5,
     * 2.5): n 0 is (0 1 | 2 3 | 4 5) + b -> (0.5 1.5 | 3.5 4.5 | 6.5 7.5), n 1 is (6 7 | 8 9 |
     * 10 11) + b -> (6.5 7.5 | 9.5 10.5 | 12.5 13.5). */
    float x4[12];
    for (int k = 0; k < 12; k++)
        x4[k] = (float)k;
    const float b4[] = {0.5f, 1.5f, 2.5f};
    const double want4[] = {0.5, 1.5, 3.5, 4.5, 6.5, 7.5, 6.5, 7.5, 9.5, 10.5, 12.5, 13.5};
    gc_leaf l4[2] = {gc_with_values(gc_in(KL_SHAPE(2, 3, 2, 1)), x4),
                     gc_with_values(gc_w(KL_SHAPE(3)), b4)};
    gc_check_forward("bias_add values 4-D", l4, 2, build_bias_add, NULL, KL_MODE_EVAL,
                     KL_SHAPE(2, 3, 2, 1), want4, TOL);
}

static void test_matmul_grads(void)
{
    const int64_t batches[] = {1, 5};
    char label[96];
    /* Both operands weights: op(a) (3, 7) times op(b) (7, 5). */
    for (int ta = 0; ta < 2; ta++) {
        for (int tb = 0; tb < 2; tb++) {
            mm_case c = {ta, tb};
            gc_leaf l[2] = {gc_w(ta ? KL_SHAPE(7, 3) : KL_SHAPE(3, 7)),
                            gc_w(tb ? KL_SHAPE(5, 7) : KL_SHAPE(7, 5))};
            snprintf(label, sizeof label, "matmul grad weights ta=%d tb=%d", ta, tb);
            gradcheck(label, l, 2, build_matmul, &c);
        }
    }
    for (int i = 0; i < 2; i++) {
        int64_t n = batches[i];
        /* A batched a (N, 7) times b (7, 3) or b^T with b (3, 7). */
        for (int tb = 0; tb < 2; tb++) {
            mm_case c = {false, tb};
            gc_leaf l[2] = {gc_in(KL_SHAPE(n, 7)), gc_w(tb ? KL_SHAPE(3, 7) : KL_SHAPE(7, 3))};
            snprintf(label, sizeof label, "matmul grad batched a N=%lld tb=%d", (long long)n, tb);
            gradcheck(label, l, 2, build_matmul, &c);
        }
        /* a^T b contracting the batch: a (N, 7), b (N, 3) give (7, 3). */
        mm_case c = {true, false};
        gc_leaf l[2] = {gc_in(KL_SHAPE(n, 7)), gc_in(KL_SHAPE(n, 3))};
        snprintf(label, sizeof label, "matmul grad a^T b over the batch N=%lld", (long long)n);
        gradcheck(label, l, 2, build_matmul, &c);
    }
}

/* A node feeding both operands: both backward products add into one gradient, so each must
 * accumulate rather than overwrite. a^T a over the batch is a Gram matrix; w w squares a weight. */
static kl_node build_gram(kl_graph *g, const kl_node *l, void *ctx)
{
    return kl_matmul(g, l[0], l[0], true, false);
}
static kl_node build_square(kl_graph *g, const kl_node *l, void *ctx)
{
    const mm_case *c = ctx;
    return kl_matmul(g, l[0], l[0], c->ta, c->tb);
}
/* op(...) + one of its inputs: the add's backward runs first and writes that input's gradient,
 * so the op's backward must add to it. */
static kl_node build_matmul_plus_a(kl_graph *g, const kl_node *l, void *ctx)
{
    return kl_add(g, build_matmul(g, l, ctx), l[0]);
}
static kl_node build_matmul_plus_b(kl_graph *g, const kl_node *l, void *ctx)
{
    return kl_add(g, build_matmul(g, l, ctx), l[1]);
}
static kl_node build_bias_add_plus_x(kl_graph *g, const kl_node *l, void *ctx)
{
    return kl_add(g, kl_bias_add(g, l[0], l[1]), l[0]);
}
/* x + linear(x, w) with w (7, 7): x's gradient has two contributions. */
static kl_node build_linear_skip(kl_graph *g, const kl_node *l, void *ctx)
{
    return kl_residual(g, kl_linear(g, l[0], l[1], l[2]), l[0]);
}

static void test_shared_input_grads(void)
{
    const int64_t batches[] = {1, 5};
    char label[96];
    for (int i = 0; i < 2; i++) {
        gc_leaf l[3] = {gc_in(KL_SHAPE(batches[i], 7)), gc_w(KL_SHAPE(7, 7)), gc_w(KL_SHAPE(7))};
        snprintf(label, sizeof label, "matmul grad a^T a N=%lld", (long long)batches[i]);
        gradcheck(label, l, 1, build_gram, NULL);
        snprintf(label, sizeof label, "x + linear(x) grad N=%lld", (long long)batches[i]);
        gradcheck(label, l, 3, build_linear_skip, NULL);
    }
    for (int i = 0; i < 2; i++) {
        gc_leaf l[2] = {gc_in(KL_SHAPE(batches[i], 5)), gc_w(KL_SHAPE(5))};
        snprintf(label, sizeof label, "bias_add(x) + x grad N=%lld", (long long)batches[i]);
        gradcheck(label, l, 2, build_bias_add_plus_x, NULL);
        mm_case c = {false, false};
        gc_leaf m[2] = {gc_in(KL_SHAPE(batches[i], 5)), gc_w(KL_SHAPE(5, 5))};
        snprintf(label, sizeof label, "matmul(x, w) + x grad N=%lld", (long long)batches[i]);
        gradcheck(label, m, 2, build_matmul_plus_a, &c);
    }
    for (int ta = 0; ta < 2; ta++) {
        for (int tb = 0; tb < 2; tb++) {
            mm_case c = {ta, tb};
            gc_leaf ab[2] = {gc_w(KL_SHAPE(5, 5)), gc_w(KL_SHAPE(5, 5))};
            snprintf(label, sizeof label, "matmul(a, b) + a grad ta=%d tb=%d", ta, tb);
            gradcheck(label, ab, 2, build_matmul_plus_a, &c);
            snprintf(label, sizeof label, "matmul(a, b) + b grad ta=%d tb=%d", ta, tb);
            gradcheck(label, ab, 2, build_matmul_plus_b, &c);
            gc_leaf w[1] = {gc_w(KL_SHAPE(5, 5))};
            snprintf(label, sizeof label, "matmul grad w w ta=%d tb=%d", ta, tb);
            gradcheck(label, w, 1, build_square, &c);
        }
    }
}

static void test_linear_grads(void)
{
    const int64_t batches[] = {1, 5};
    char label[96];
    for (int i = 0; i < 2; i++) {
        int64_t n = batches[i];
        gc_leaf l[3] = {gc_in(KL_SHAPE(n, 7)), gc_w(KL_SHAPE(3, 7)), gc_w(KL_SHAPE(3))};
        snprintf(label, sizeof label, "linear grad N=%lld no bias", (long long)n);
        gradcheck(label, l, 2, build_linear, NULL);
        snprintf(label, sizeof label, "linear grad N=%lld bias", (long long)n);
        gradcheck(label, l, 3, build_linear_bias, NULL);
        gc_leaf l3[3] = {gc_in(KL_SHAPE(n, 3, 7)), gc_w(KL_SHAPE(5, 7)), gc_w(KL_SHAPE(5))};
        snprintf(label, sizeof label, "linear grad (N=%lld, T=3, in=7)", (long long)n);
        gradcheck(label, l3, 3, build_linear_bias, NULL);
    }
}

static void test_bias_add_grads(void)
{
    const int64_t batches[] = {1, 5};
    char label[96];
    for (int i = 0; i < 2; i++) {
        int64_t n = batches[i];
        const kl_shape shapes[] = {KL_SHAPE(n, 7), KL_SHAPE(n, 3, 5), KL_SHAPE(n, 3, 5, 3)};
        for (int s = 0; s < 3; s++) {
            gc_leaf l[2] = {gc_in(shapes[s]), gc_w(KL_SHAPE(shapes[s].d[1]))};
            snprintf(label, sizeof label, "bias_add grad %d-D N=%lld", shapes[s].ndim,
                     (long long)n);
            gradcheck(label, l, 2, build_bias_add, NULL);
        }
    }
}

/* kl_graph_backward adds into the parameter gradients: two backward passes without zeroing give
 * twice the gradient of one, for every parameter of every op here. */
static void check_accumulates(const char *label, const gc_leaf *leaves, int n, gc_build_fn build,
                              void *ctx)
{
    gc_graph t;
    gc_opts o = gc_defaults();
    kl_error err = {0};
    if (!check_(gc_setup(&t, leaves, n, build, ctx, &o) == 0, __FILE__, __LINE__, label)) {
        kl_graph_free(t.g);
        return;
    }
    size_t np = kl_graph_param_count(t.g);
    float *once = malloc(np * sizeof *once);
    kl_graph_zero_grad(t.g);
    if (!once || kl_graph_forward(t.g, &err) != KL_OK || kl_graph_backward(t.g, &err) != KL_OK) {
        check_(0, __FILE__, __LINE__, label);
        free(once);
        kl_graph_free(t.g);
        return;
    }
    memcpy(once, kl_graph_grads(t.g), np * sizeof *once);
    CHECK_OK(kl_graph_forward(t.g, &err), &err);
    CHECK_OK(kl_graph_backward(t.g, &err), &err);
    int bad = 0, nonzero = 0;
    for (size_t i = 0; i < np; i++) {
        bad += !(fabs(kl_graph_grads(t.g)[i] - 2.0 * once[i]) <= 1e-5 * (1 + fabs(once[i])));
        nonzero += once[i] != 0.0f;
    }
    check_(bad == 0 && nonzero > 0, __FILE__, __LINE__, label);
    free(once);
    kl_graph_free(t.g);
}

static void test_grads_accumulate(void)
{
    for (int ta = 0; ta < 2; ta++) {
        for (int tb = 0; tb < 2; tb++) {
            mm_case c = {ta, tb};
            gc_leaf l[2] = {gc_w(KL_SHAPE(3, 3)), gc_w(KL_SHAPE(3, 3))};
            check_accumulates("matmul gradients accumulate", l, 2, build_matmul, &c);
        }
    }
    mm_case c = {false, false};
    gc_leaf m[2] = {gc_in(KL_SHAPE(4, 3)), gc_w(KL_SHAPE(3, 5))};
    check_accumulates("matmul batched a gradients accumulate", m, 2, build_matmul, &c);
    gc_leaf l[3] = {gc_in(KL_SHAPE(4, 3)), gc_w(KL_SHAPE(5, 3)), gc_w(KL_SHAPE(5))};
    check_accumulates("linear gradients accumulate", l, 3, build_linear_bias, NULL);
    gc_leaf b[2] = {gc_in(KL_SHAPE(4, 3, 2)), gc_w(KL_SHAPE(3))};
    check_accumulates("bias_add gradients accumulate", b, 2, build_bias_add, NULL);
}

/* Builds x (per sample) and w (a weight) and calls op, then expects compile to fail with want and
 * a message naming the op. */
typedef kl_node (*pair_op)(kl_graph *g, kl_node x, kl_node w);

static void expect_compile_error(const char *label, kl_shape x_per, kl_shape w_shape, pair_op op,
                                 kl_status want, const char *name)
{
    kl_error err = {0};
    kl_graph *g = kl_graph_new();
    kl_node x = kl_input(g, "x", KL_F32, x_per);
    kl_node w = kl_param(g, "w", w_shape, (kl_init){KL_INIT_ZEROS, 0, 0}, 0);
    kl_node y = op(g, x, w);
    kl_status st = kl_graph_compile(g, 2, KL_NONE, 1, &err);
    if (!check_(y == KL_NONE && st == want && strstr(err.msg, name) != NULL, __FILE__, __LINE__,
                label))
        fprintf(stderr, "    %s: node %d, status %d (want %d), message '%s'\n", label, (int)y,
                (int)st, (int)want, err.msg);
    kl_graph_free(g);
}

static kl_node op_matmul(kl_graph *g, kl_node x, kl_node w)
{
    return kl_matmul(g, x, w, false, false);
}
static kl_node op_matmul_tb(kl_graph *g, kl_node x, kl_node w)
{
    return kl_matmul(g, x, w, false, true);
}
static kl_node op_matmul_wx(kl_graph *g, kl_node x, kl_node w)
{
    return kl_matmul(g, w, x, false, false); /* the batch would land in dim 1 */
}
static kl_node op_linear(kl_graph *g, kl_node x, kl_node w)
{
    return kl_linear(g, x, w, KL_NONE);
}
static kl_node op_linear_bad_bias(kl_graph *g, kl_node x, kl_node w)
{
    kl_node b = kl_param(g, "b", KL_SHAPE(4), (kl_init){KL_INIT_ZEROS, 0, 0}, 0);
    return kl_linear(g, x, w, b);
}
static kl_node op_bias_add(kl_graph *g, kl_node x, kl_node b)
{
    return kl_bias_add(g, x, b);
}

static void test_shape_errors(void)
{
    expect_compile_error("matmul (N, 4) times (5, 3)", KL_SHAPE(4), KL_SHAPE(5, 3), op_matmul,
                         KL_ESHAPE, "matmul");
    expect_compile_error("matmul (N, 4) times (4, 3)^T", KL_SHAPE(4), KL_SHAPE(4, 3), op_matmul_tb,
                         KL_ESHAPE, "matmul");
    expect_compile_error("matmul (3, N) times batched b", KL_SHAPE(3), KL_SHAPE(3, 1), op_matmul_wx,
                         KL_ESHAPE, "matmul");
    expect_compile_error("matmul 3-D a", KL_SHAPE(2, 4), KL_SHAPE(4, 3), op_matmul, KL_ESHAPE,
                         "matmul");
    expect_compile_error("linear (N, 7) with w (3, 6)", KL_SHAPE(7), KL_SHAPE(3, 6), op_linear,
                         KL_ESHAPE, "linear");
    expect_compile_error("linear 1-D weight", KL_SHAPE(7), KL_SHAPE(7), op_linear, KL_ESHAPE,
                         "linear");
    expect_compile_error("linear bias (4) for w (3, 7)", KL_SHAPE(7), KL_SHAPE(3, 7),
                         op_linear_bad_bias, KL_ESHAPE, "linear");
    expect_compile_error("bias_add bias (4) for (N, 3)", KL_SHAPE(3), KL_SHAPE(4), op_bias_add,
                         KL_ESHAPE, "bias_add");
    expect_compile_error("bias_add bias (2) for (N, 3, 2, 2)", KL_SHAPE(3, 2, 2), KL_SHAPE(2),
                         op_bias_add, KL_ESHAPE, "bias_add");
    expect_compile_error("bias_add 2-D bias", KL_SHAPE(3), KL_SHAPE(3, 1), op_bias_add, KL_ESHAPE,
                         "bias_add");

    /* a^T b over the batch needs b batched: a weight b is refused. */
    kl_error err = {0};
    kl_graph *g = kl_graph_new();
    kl_node a = kl_input(g, "a", KL_F32, KL_SHAPE(3));
    kl_node w = kl_param(g, "w", KL_SHAPE(1, 2), (kl_init){KL_INIT_ZEROS, 0, 0}, 0);
    kl_matmul(g, a, w, true, false);
    kl_status st = kl_graph_compile(g, 1, KL_NONE, 1, &err);
    CHECK(st == KL_ESHAPE && strstr(err.msg, "matmul") != NULL);
    kl_graph_free(g);
}

/* Two batched leaves checked in one gradcheck call. A batched input's gradient lives in the
 * activation arena, which every finite-difference forward reuses; with a^T b over a batch of 1
 * the arena plan puts leaf 1's gradient where a forward activation goes, so this fails unless
 * gradcheck.h copies every analytic gradient before its first finite difference. */
static void test_gradcheck_harness(void)
{
    mm_case c = {true, false};
    gc_leaf l[2] = {gc_in(KL_SHAPE(1, 7)), gc_in(KL_SHAPE(1, 3))};
    gradcheck("two batched leaves in one gradcheck (a^T b, N=1)", l, 2, build_matmul, &c);
}

static const check_case cases[] = {
    CHECK_CASE(test_matmul_values),     CHECK_CASE(test_matmul_contract_smaller_batch),
    CHECK_CASE(test_linear_values),     CHECK_CASE(test_bias_add_values),
    CHECK_CASE(test_matmul_grads),      CHECK_CASE(test_linear_grads),
    CHECK_CASE(test_bias_add_grads),    CHECK_CASE(test_shared_input_grads),
    CHECK_CASE(test_grads_accumulate),  CHECK_CASE(test_shape_errors),
    CHECK_CASE(test_gradcheck_harness),
};

int main(int argc, char **argv)
{
    return check_run("test_ops_linear", cases, CHECK_NCASES(cases), argc, argv);
}
