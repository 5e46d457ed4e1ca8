/* Tests for max_pool2d, avg_pool2d and global_avg_pool (ops/cpu/pool.c): forward values worked out
 * by hand (a known argmax and first-wins ties, padding as -inf for max and as zeros in the mean for
 * avg), gradient routing, finite-difference gradients over odd sizes, and shape errors. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "gradcheck.h"
#include "kiln/graph.h"

typedef enum pool_kind {
    POOL_MAX,
    POOL_AVG,
    POOL_GLOBAL,
    POOL_MAX_PLUS_AVG,
    POOL_GLOBAL_TWICE
} pool_kind;

typedef struct pool_case {
    pool_kind kind;
    int k, stride, pad;
} pool_case;

static kl_node build_pool(kl_graph *g, const kl_node *leaves, void *ctx)
{
    const pool_case *pc = ctx;
    kl_node x = leaves[0];
    switch (pc->kind) {
    case POOL_MAX:
        return kl_max_pool2d(g, x, pc->k, pc->stride, pc->pad);
    case POOL_AVG:
        return kl_avg_pool2d(g, x, pc->k, pc->stride, pc->pad);
    case POOL_GLOBAL:
        return kl_global_avg_pool(g, x);
    case POOL_MAX_PLUS_AVG: /* x feeds two ops: its gradient must be the sum of both */
        return kl_add(g, kl_max_pool2d(g, x, pc->k, pc->stride, pc->pad),
                      kl_avg_pool2d(g, x, pc->k, pc->stride, pc->pad));
    case POOL_GLOBAL_TWICE:
        return kl_add(g, kl_global_avg_pool(g, x), kl_global_avg_pool(g, x));
    }
    return KL_NONE;
}

/* Runs the pool on exact x; compares the output with want and, when want_dx is given, the
 * gradient of sum(output) with respect to x with want_dx. */
static void check_pool(const char *label, const pool_case *pc, kl_shape xs, const float *x,
                       kl_shape want_shape, const float *want, const float *want_dx)
{
    kl_error err = {0};
    kl_graph *g = kl_graph_new();
    if (!check_(g != NULL, __FILE__, __LINE__, label))
        return;
    kl_shape per = {.ndim = 3, .d = {xs.d[1], xs.d[2], xs.d[3]}};
    kl_node xn = kl_input(g, "x", KL_F32, per);
    kl_graph_require_grad(g, xn);
    kl_node y = build_pool(g, &xn, (void *)pc);
    kl_graph_mark_output(g, y);
    kl_node loss = kl_sum(g, y);
    kl_status st = kl_graph_compile(g, xs.d[0], loss, 1, &err);
    if (!check_(st == KL_OK, __FILE__, __LINE__, label)) {
        fprintf(stderr, "    %s\n", err.msg);
        kl_graph_free(g);
        return;
    }
    kl_tensor *xv = kl_graph_value(g, xn);
    memcpy(xv->data, x, (size_t)kl_numel(xv) * sizeof *x);
    CHECK_OK(kl_graph_forward(g, &err), &err);
    const kl_tensor *yv = kl_graph_value(g, y);
    if (check_(kl_shape_eq(&yv->shape, &want_shape), __FILE__, __LINE__, label))
        for (int64_t i = 0; i < kl_numel(yv); i++)
            CHECK_NEAR(kl_f32(yv)[i], want[i], 1e-6);
    if (want_dx) {
        CHECK_OK(kl_graph_backward(g, &err), &err);
        const kl_tensor *dx = kl_graph_grad(g, xn);
        if (check_(dx != NULL, __FILE__, __LINE__, label))
            for (int64_t i = 0; i < kl_numel(dx); i++)
                CHECK_NEAR(kl_f32(dx)[i], want_dx[i], 1e-6);
    }
    kl_graph_free(g);
}

/* x =  1 5 2 0
 *      5 3 7 7
 *      0 2 4 1
 *      6 1 1 6   (1x1x4x4, flat indices 0..15 row by row) */
static const float X44[16] = {1, 5, 2, 0, 5, 3, 7, 7, 0, 2, 4, 1, 6, 1, 1, 6};

static void test_max_by_hand(void)
{
    kl_shape xs = KL_SHAPE(1, 1, 4, 4);

    /* k2 s2 p0: windows [1 5; 5 3] -> 5, a tie of indices 1 and 4 that goes to 1 (first);
     * [2 0; 7 7] -> 7, a tie of 6 and 7 that goes to 6; [0 2; 6 1] -> 6 at 12; [4 1; 1 6] -> 6 at
     * 15. d sum / dx is 1 at those four indices. */
    const pool_case k2 = {POOL_MAX, 2, 2, 0};
    const float y1[4] = {5, 7, 6, 6};
    const float dx1[16] = {0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 1};
    check_pool("max k2 s2 p0", &k2, xs, X44, KL_SHAPE(1, 1, 2, 2), y1, dx1);

    /* k3 s2 p1: OH = (4 + 2 - 3)/2 + 1 = 2; windows cover rows/cols {0,1} and {1,2,3}.
     * (0,0) rows 0-1, cols 0-1: [1 5; 5 3] -> 5 at 1.
     * (0,1) rows 0-1, cols 1-3: [5 2 0; 3 7 7] -> 7 at 6.
     * (1,0) rows 1-3, cols 0-1: [5 3; 0 2; 6 1] -> 6 at 12.
     * (1,1) rows 1-3, cols 1-3: [3 7 7; 2 4 1; 1 1 6] -> 7 at 6 again, so dx[6] = 2. */
    const pool_case k3 = {POOL_MAX, 3, 2, 1};
    const float y2[4] = {5, 7, 6, 7};
    const float dx2[16] = {0, 1, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1, 0, 0, 0};
    check_pool("max k3 s2 p1", &k3, xs, X44, KL_SHAPE(1, 1, 2, 2), y2, dx2);

    /* Padding is -inf, not 0: x = [-1 -2; -3 -4], k2 s1 p1, OH = (2 + 2 - 2)/1 + 1 = 3. Each
     * window holds the real elements it overlaps: corners see one element (-1, -2, -3, -4), edges
     * two (max(-1,-2) = -1, max(-1,-3) = -1, max(-2,-4) = -2, max(-3,-4) = -3), the centre all four
     * (-1). With zero padding every output would be 0. */
    const pool_case neg = {POOL_MAX, 2, 1, 1};
    const float xneg[4] = {-1, -2, -3, -4};
    const float y3[9] = {-1, -1, -2, -1, -1, -2, -3, -3, -4};
    /* Index 0 wins 4 windows, 1 wins 2, 2 wins 2, 3 wins 1. */
    const float dx3[4] = {4, 2, 2, 1};
    check_pool("max k2 s1 p1 negative", &neg, KL_SHAPE(1, 1, 2, 2), xneg, KL_SHAPE(1, 1, 3, 3), y3,
               dx3);

    /* Batch 2, two channels: planes are pooled separately; k2 s2 on 2x2 planes is each plane's
     * max. Planes [1 2 3 4], [8 7 6 5], [0 -1 -2 -3], [2 9 9 2] -> 4, 8, 0, 9 (index 1: first). */
    const pool_case whole = {POOL_MAX, 2, 2, 0};
    const float xb[16] = {1, 2, 3, 4, 8, 7, 6, 5, 0, -1, -2, -3, 2, 9, 9, 2};
    const float yb[4] = {4, 8, 0, 9};
    const float dxb[16] = {0, 0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0};
    check_pool("max batch 2 planes", &whole, KL_SHAPE(2, 2, 2, 2), xb, KL_SHAPE(2, 2, 1, 1), yb,
               dxb);
}

static void test_avg_by_hand(void)
{
    /* k2 s2 p0 on X44: (1+5+5+3)/4 = 3.5, (2+0+7+7)/4 = 4, (0+2+6+1)/4 = 2.25, (4+1+1+6)/4 = 3.
     * Every input is in exactly one window: dx = 1/4 everywhere. */
    const pool_case k2 = {POOL_AVG, 2, 2, 0};
    const float y1[4] = {3.5f, 4, 2.25f, 3};
    float dx1[16];
    for (int i = 0; i < 16; i++)
        dx1[i] = 0.25f;
    check_pool("avg k2 s2 p0", &k2, KL_SHAPE(1, 1, 4, 4), X44, KL_SHAPE(1, 1, 2, 2), y1, dx1);

    /* Padding counts in the divisor: x = [1 2; 3 4], k2 s1 p1, OH = 3, always divided by 4.
     * (0,0) 1/4, (0,1) (1+2)/4, (0,2) 2/4, (1,0) (1+3)/4, (1,1) 10/4, (1,2) (2+4)/4, (2,0) 3/4,
     * (2,1) (3+4)/4, (2,2) 4/4. Each input lies in 4 windows: dx = 4/4 = 1. */
    const pool_case pad = {POOL_AVG, 2, 1, 1};
    const float x2[4] = {1, 2, 3, 4};
    const float y2[9] = {0.25f, 0.75f, 0.5f, 1, 2.5f, 1.5f, 0.75f, 1.75f, 1};
    const float dx2[4] = {1, 1, 1, 1};
    check_pool("avg k2 s1 p1 counts padding", &pad, KL_SHAPE(1, 1, 2, 2), x2, KL_SHAPE(1, 1, 3, 3),
               y2, dx2);

    /* k3 s2 p1 on X44 (windows as in the max case), divisor 9:
     * (0,0) 1+5+5+3 = 14, (0,1) 5+2+0+3+7+7 = 24, (1,0) 5+3+0+2+6+1 = 17,
     * (1,1) 3+7+7+2+4+1+1+1+6 = 32. Rows/cols 1 lie in both windows along that axis. */
    const pool_case k3 = {POOL_AVG, 3, 2, 1};
    const float y3[4] = {14.0f / 9, 24.0f / 9, 17.0f / 9, 32.0f / 9};
    float dx3[16];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++)
            dx3[i * 4 + j] = (float)((i == 1 ? 2 : 1) * (j == 1 ? 2 : 1)) / 9.0f;
    check_pool("avg k3 s2 p1", &k3, KL_SHAPE(1, 1, 4, 4), X44, KL_SHAPE(1, 1, 2, 2), y3, dx3);
}

static void test_global_by_hand(void)
{
    /* (2, 2, 2, 2) -> (2, 2): the plane means (1+2+3+4)/4 = 2.5, (-1+0+0+5)/4 = 1, 0, 10. dx is
     * 1/4 everywhere. */
    const pool_case gp = {POOL_GLOBAL, 0, 0, 0};
    const float x[16] = {1, 2, 3, 4, -1, 0, 0, 5, 0, 0, 0, 0, 10, 10, 10, 10};
    const float y[4] = {2.5f, 1, 0, 10};
    float dx[16];
    for (int i = 0; i < 16; i++)
        dx[i] = 0.25f;
    check_pool("global avg", &gp, KL_SHAPE(2, 2, 2, 2), x, KL_SHAPE(2, 2), y, dx);
}

/* Distinct values 0.01 apart in a scrambled order (i * 7919 mod m is a permutation when m and the
 * prime 7919 are coprime): no two elements of a window are within gradcheck's 2 * eps, so the
 * finite differences never cross a max's kink. */
static float *distinct_values(int64_t m)
{
    float *v = malloc((size_t)m * sizeof *v);
    if (!v)
        return NULL;
    for (int64_t i = 0; i < m; i++)
        v[i] = 0.01f * (float)((i * 7919) % m - m / 2);
    return v;
}

typedef struct grad_case {
    const char *label;
    pool_kind kind;
    int n, c, h, w, k, stride, pad;
} grad_case;

static void test_gradients(void)
{
    const grad_case cases[] = {
        {"max N1 C1 5x5 k3 s1 p0", POOL_MAX, 1, 1, 5, 5, 3, 1, 0},
        {"max N3 C3 7x7 k3 s2 p1", POOL_MAX, 3, 3, 7, 7, 3, 2, 1},
        {"max N3 C3 7x5 k3 s1 p1 (overlapping)", POOL_MAX, 3, 3, 7, 5, 3, 1, 1},
        {"max N2 C2 6x5 k2 s2 p0", POOL_MAX, 2, 2, 6, 5, 2, 2, 0},
        {"max N1 C3 5x7 k1 s2 p0", POOL_MAX, 1, 3, 5, 7, 1, 2, 0},
        {"avg N1 C1 5x5 k3 s1 p0", POOL_AVG, 1, 1, 5, 5, 3, 1, 0},
        {"avg N3 C3 7x7 k3 s2 p1", POOL_AVG, 3, 3, 7, 7, 3, 2, 1},
        {"avg N3 C1 5x7 k2 s1 p1", POOL_AVG, 3, 1, 5, 7, 2, 1, 1},
        {"avg N2 C3 6x5 k2 s2 p0", POOL_AVG, 2, 3, 6, 5, 2, 2, 0},
        {"global N1 C3 5x7", POOL_GLOBAL, 1, 3, 5, 7, 0, 0, 0},
        {"global N3 C1 1x1", POOL_GLOBAL, 3, 1, 1, 1, 0, 0, 0},
        {"global N3 C3 7x5", POOL_GLOBAL, 3, 3, 7, 5, 0, 0, 0},
        {"max + avg N3 C3 7x7 k3 s2 p1 (shared x)", POOL_MAX_PLUS_AVG, 3, 3, 7, 7, 3, 2, 1},
        {"global twice N2 C3 5x5 (shared x)", POOL_GLOBAL_TWICE, 2, 3, 5, 5, 0, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const grad_case *gc = &cases[i];
        gc_leaf x = gc_in(KL_SHAPE(gc->n, gc->c, gc->h, gc->w));
        float *vals = distinct_values((int64_t)gc->n * gc->c * gc->h * gc->w);
        if (!CHECK(vals != NULL))
            return;
        x.values = vals;
        pool_case pc = {gc->kind, gc->k, gc->stride, gc->pad};
        gradcheck(gc->label, &x, 1, build_pool, &pc);
        free(vals);
    }
}

/* Builds a pool of x (per-sample xs) and expects compile to fail with want, naming the op. */
static void expect_pool_error(pool_kind kind, kl_shape xs, int k, int stride, int pad,
                              kl_status want, const char *op)
{
    kl_error err = {0};
    kl_graph *g = kl_graph_new();
    if (!CHECK(g != NULL))
        return;
    kl_node x = kl_input(g, "x", KL_F32, xs);
    pool_case pc = {kind, k, stride, pad};
    CHECK(build_pool(g, &x, &pc) == KL_NONE);
    kl_status st = kl_graph_compile(g, 2, KL_NONE, 1, &err);
    if (!CHECK(st == want) || !CHECK(strstr(err.msg, op) != NULL))
        fprintf(stderr, "    %s: status %d, message: %s\n", op, (int)st, err.msg);
    kl_graph_free(g);
}

static void test_shape_errors(void)
{
    /* A window larger than the (padded) input, including 4 on 3 with stride 2, where truncating
     * division would wrongly give one output. */
    expect_pool_error(POOL_MAX, KL_SHAPE(1, 3, 3), 5, 1, 0, KL_ESHAPE, "max_pool2d");
    expect_pool_error(POOL_MAX, KL_SHAPE(1, 3, 3), 4, 2, 0, KL_ESHAPE, "max_pool2d");
    expect_pool_error(POOL_AVG, KL_SHAPE(1, 8, 2), 3, 1, 0, KL_ESHAPE, "avg_pool2d");
    /* Not NCHW. */
    expect_pool_error(POOL_MAX, KL_SHAPE(3, 5), 2, 2, 0, KL_ESHAPE, "max_pool2d");
    expect_pool_error(POOL_GLOBAL, KL_SHAPE(7), 0, 0, 0, KL_ESHAPE, "global_avg_pool");
    /* Padding over half the window, zero window, zero stride, negative padding. */
    expect_pool_error(POOL_MAX, KL_SHAPE(1, 5, 5), 3, 1, 2, KL_EINVAL, "max_pool2d");
    expect_pool_error(POOL_AVG, KL_SHAPE(1, 5, 5), 2, 2, 2, KL_EINVAL, "avg_pool2d");
    expect_pool_error(POOL_MAX, KL_SHAPE(1, 5, 5), 0, 1, 0, KL_EINVAL, "max_pool2d");
    expect_pool_error(POOL_AVG, KL_SHAPE(1, 5, 5), 2, 0, 0, KL_EINVAL, "avg_pool2d");
    expect_pool_error(POOL_MAX, KL_SHAPE(1, 5, 5), 2, 1, -1, KL_EINVAL, "max_pool2d");
}

/* A NaN in a window propagates (as in PyTorch), on the 2x2 stride-2 fast path and the general
 * scan alike; windows without one are unaffected. */
static void test_max_nan(void)
{
    const float x[8] = {1, NAN, 3, 4, /* row 0 */ 5, 6, 7, 2};
    for (int k = 2; k <= 3; k++) { /* k 2: fast path; k 3 with stride 2, pad 1: general */
        gc_leaf leaf = gc_in(KL_SHAPE(1, 1, 2, 4));
        leaf.values = x;
        const pool_case pc = {POOL_MAX, k, 2, k == 2 ? 0 : 1};
        gc_graph t;
        if (!CHECK(gc_run(&t, &leaf, 1, build_pool, (void *)&pc, KL_MODE_EVAL) == 0)) {
            kl_graph_free(t.g);
            continue;
        }
        const float *y = kl_f32(kl_graph_value(t.g, t.out));
        CHECK(isnan(y[0]));
        if (k == 2)
            CHECK(y[1] == 7.0f);
        kl_graph_free(t.g);
    }
}

static const check_case cases[] = {
    CHECK_CASE(test_max_by_hand),    CHECK_CASE(test_max_nan),   CHECK_CASE(test_avg_by_hand),
    CHECK_CASE(test_global_by_hand), CHECK_CASE(test_gradients), CHECK_CASE(test_shape_errors),
};

int main(int argc, char **argv)
{
    return check_run("test_ops_pool", cases, CHECK_NCASES(cases), argc, argv);
}
