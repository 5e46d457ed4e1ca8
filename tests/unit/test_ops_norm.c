/* Tests for ops/cpu/norm.c: batchnorm (train and eval, running statistics as PyTorch keeps them)
 * and layernorm against values worked out by hand, their gradients by finite differences on odd
 * shapes, and the errors a user can meet: parameters of the wrong size, bad momentum or eps. */
#include <math.h>
#include <string.h>

#include "check.h"
#include "gradcheck.h"
#include "kiln/graph.h"

#define TOL 1e-5
#define EPS 1e-5f

static const kl_init ZEROS = {KL_INIT_ZEROS, 0, 0}, ONES = {KL_INIT_ONES, 0, 0};

/* batchnorm of x (2) per sample with gamma, beta params and PyTorch's initial running statistics
 * (mean 0, var 1), compiled at max_batch with every gradient requested. */
typedef struct bn_graph {
    kl_graph *g;
    kl_node x, gamma, beta, rm, rv, y, loss;
} bn_graph;

static int bn_graph_make(bn_graph *t, int64_t max_batch, float momentum)
{
    kl_error err = {0};
    t->g = kl_graph_new();
    t->x = kl_input(t->g, "x", KL_F32, KL_SHAPE(2));
    t->gamma = kl_param(t->g, "gamma", KL_SHAPE(2), ONES, KL_PARAM_NO_DECAY);
    t->beta = kl_param(t->g, "beta", KL_SHAPE(2), ZEROS, KL_PARAM_NO_DECAY);
    t->rm = kl_buffer(t->g, "running_mean", KL_SHAPE(2), ZEROS);
    t->rv = kl_buffer(t->g, "running_var", KL_SHAPE(2), ONES);
    t->y = kl_batchnorm(t->g, t->x, t->gamma, t->beta, t->rm, t->rv, momentum, EPS);
    kl_graph_mark_output(t->g, t->y);
    kl_status st = kl_graph_compile(t->g, max_batch, KL_NONE, 1, &err);
    CHECK_OK(st, &err);
    return st == KL_OK ? 0 : -1;
}

static void run(kl_graph *g)
{
    kl_error err = {0};
    CHECK_OK(kl_graph_forward(g, &err), &err);
}

/* x is 4 samples of 2 channels: channel 0 is (1, 1, 5, 5), channel 1 is (0, 2, 4, 6). */
static void test_batchnorm_values(void)
{
    bn_graph t;
    if (bn_graph_make(&t, 4, 0.1f) != 0) {
        kl_graph_free(t.g);
        return;
    }
    const float xv[] = {1, 0, 1, 2, 5, 4, 5, 6}, gv[] = {1, 2}, bv[] = {0, 0.5f};
    memcpy(kl_graph_value(t.g, t.x)->data, xv, sizeof xv);
    memcpy(kl_graph_value(t.g, t.gamma)->data, gv, sizeof gv);
    memcpy(kl_graph_value(t.g, t.beta)->data, bv, sizeof bv);
    float *rm = kl_f32(kl_graph_value(t.g, t.rm)), *rv = kl_f32(kl_graph_value(t.g, t.rv));
    CHECK(rm[0] == 0 && rm[1] == 0 && rv[0] == 1 && rv[1] == 1);

    /* Train mode. Channel 0: mean 3, biased var (4 + 4 + 4 + 4) / 4 = 4, unbiased 16/3; y =
     * (x - 3) / sqrt(4 + 1e-5) = -+0.99999875. Channel 1: mean 3, biased var (9 + 1 + 1 + 9) / 4
     * = 5, unbiased 20/3; y = 2 (x - 3) / sqrt(5 + 1e-5) + 0.5 = (-2.1832789, -0.3944263,
     * 1.3944263, 3.1832789). */
    kl_graph_set_mode(t.g, KL_MODE_TRAIN);
    run(t.g);
    const float *y = kl_f32(kl_graph_value(t.g, t.y));
    const double want_train[] = {-0.99999875, -2.1832789, -0.99999875, -0.3944263,
                                 0.99999875,  1.3944263,  0.99999875,  3.1832789};
    for (int i = 0; i < 8; i++)
        CHECK_NEAR(y[i], want_train[i], TOL);

    /* running = 0.9 running + 0.1 batch, with the unbiased variance: mean 0.1 * 3 = 0.3 for both;
     * var 0.9 + 0.1 * 16/3 = 1.4333333 and 0.9 + 0.1 * 20/3 = 1.5666667. */
    CHECK_NEAR(rm[0], 0.3, TOL);
    CHECK_NEAR(rm[1], 0.3, TOL);
    CHECK_NEAR(rv[0], 1.4333333, TOL);
    CHECK_NEAR(rv[1], 1.5666667, TOL);

    /* Eval mode uses those: channel 0 (x - 0.3) / sqrt(1.4333333 + 1e-5) = (0.5846863 twice,
     * 3.9257509 twice); channel 1 2 (x - 0.3) / sqrt(1.5666667 + 1e-5) + 0.5 = (0.0206403,
     * 3.2163719, 6.4121035, 9.6078352). The running statistics stay as they are. */
    kl_graph_set_mode(t.g, KL_MODE_EVAL);
    run(t.g);
    const double want_eval[] = {0.5846863, 0.0206403, 0.5846863, 3.2163719,
                                3.9257509, 6.4121035, 3.9257509, 9.6078352};
    for (int i = 0; i < 8; i++)
        CHECK_NEAR(y[i], want_eval[i], 2e-5);
    run(t.g);
    CHECK_NEAR(rm[0], 0.3, TOL);
    CHECK_NEAR(rv[1], 1.5666667, TOL);

    /* A second train step compounds: mean 0.9 * 0.3 + 0.1 * 3 = 0.57, var 0.9 * 1.4333333 + 0.1
     * * 16/3 = 1.8233333. */
    kl_graph_set_mode(t.g, KL_MODE_TRAIN);
    run(t.g);
    CHECK_NEAR(rm[0], 0.57, TOL);
    CHECK_NEAR(rv[0], 1.8233333, TOL);
    kl_graph_free(t.g);
}

/* On NCHW input every channel of the train-mode output has mean beta and biased variance gamma^2
 * var / (var + eps), whatever the data. */
static void test_batchnorm_4d_moments(void)
{
    kl_error err = {0};
    kl_graph *g = kl_graph_new();
    kl_node x = kl_input(g, "x", KL_F32, KL_SHAPE(3, 2, 5));
    kl_node gamma = kl_param(g, "gamma", KL_SHAPE(3), (kl_init){KL_INIT_CONSTANT, 1.5f, 0}, 0);
    kl_node beta = kl_param(g, "beta", KL_SHAPE(3), (kl_init){KL_INIT_CONSTANT, -0.5f, 0}, 0);
    kl_node rm = kl_buffer(g, "rm", KL_SHAPE(3), ZEROS);
    kl_node rv = kl_buffer(g, "rv", KL_SHAPE(3), ONES);
    kl_node y = kl_batchnorm(g, x, gamma, beta, rm, rv, 0.1f, EPS);
    kl_graph_mark_output(g, y);
    if (kl_graph_compile(g, 2, KL_NONE, 1, &err) != KL_OK) {
        CHECK_OK(KL_EINTERNAL, &err);
        kl_graph_free(g);
        return;
    }
    kl_tensor *xt = kl_graph_value(g, x);
    kl_rng_fill_uniform(5, KL_RNG_TEST, 1, kl_f32(xt), (size_t)kl_numel(xt), 0, 4);
    run(g);
    const float *xv = kl_f32(xt), *yv = kl_f32(kl_graph_value(g, y)); /* (2, 3, 10) */
    for (int k = 0; k < 3; k++) {
        double sx = 0, sxx = 0, sy = 0, syy = 0;
        for (int n = 0; n < 2; n++)
            for (int s = 0; s < 10; s++) {
                double a = xv[(n * 3 + k) * 10 + s], b = yv[(n * 3 + k) * 10 + s];
                sx += a;
                sxx += a * a;
                sy += b;
                syy += b * b;
            }
        double vx = sxx / 20 - (sx / 20) * (sx / 20), my = sy / 20, vy = syy / 20 - my * my;
        CHECK_NEAR(my, -0.5, 1e-5);
        CHECK_NEAR(vy, 2.25 * vx / (vx + EPS), 1e-4);
    }
    kl_graph_free(g);
}

typedef struct bn_ctx {
    float momentum, eps, rm, rv;
} bn_ctx;

/* Leaves x, gamma, beta; the running statistics are buffers made here, filled with constants so
 * that eval mode normalises with something other than (0, 1). */
static kl_node build_bn(kl_graph *g, const kl_node *l, void *ctx)
{
    const bn_ctx *c = ctx;
    int64_t C = kl_graph_shape(g, l[1]).d[0];
    kl_node rm = kl_buffer(g, "rm", KL_SHAPE(C), (kl_init){KL_INIT_CONSTANT, c->rm, 0});
    kl_node rv = kl_buffer(g, "rv", KL_SHAPE(C), (kl_init){KL_INIT_CONSTANT, c->rv, 0});
    return kl_batchnorm(g, l[0], l[1], l[2], rm, rv, c->momentum, c->eps);
}

/* Two batchnorms of the same x share its gradient: each must add into it. */
static kl_node build_bn_twice(kl_graph *g, const kl_node *l, void *ctx)
{
    const bn_ctx *c = ctx;
    int64_t C = kl_graph_shape(g, l[1]).d[0];
    kl_node rm = kl_buffer(g, "rm", KL_SHAPE(C), (kl_init){KL_INIT_CONSTANT, c->rm, 0});
    kl_node rv = kl_buffer(g, "rv", KL_SHAPE(C), (kl_init){KL_INIT_CONSTANT, c->rv, 0});
    kl_node a = kl_batchnorm(g, l[0], l[1], l[2], rm, rv, c->momentum, c->eps);
    kl_node b = kl_batchnorm(g, l[0], l[1], l[2], rm, rv, c->momentum, c->eps);
    return kl_add(g, a, b);
}

static void test_batchnorm_gradcheck(void)
{
    static const struct {
        kl_shape x;
        kl_mode mode;
    } cases[] = {
        {{2, {3, 4}}, KL_MODE_TRAIN},       {{2, {7, 3}}, KL_MODE_TRAIN},
        {{2, {2, 5}}, KL_MODE_TRAIN},       {{4, {1, 3, 3, 5}}, KL_MODE_TRAIN},
        {{4, {3, 2, 3, 3}}, KL_MODE_TRAIN}, {{3, {2, 3, 5}}, KL_MODE_TRAIN},
        {{2, {1, 4}}, KL_MODE_EVAL},        {{2, {5, 3}}, KL_MODE_EVAL},
        {{4, {1, 3, 2, 3}}, KL_MODE_EVAL},  {{4, {2, 5, 3, 1}}, KL_MODE_EVAL},
    };
    bn_ctx ctx = {0.1f, EPS, 0.2f, 1.7f};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char label[80], sb[64];
        kl_shape x = cases[i].x;
        gc_leaf leaves[3] = {gc_in(x), gc_w(KL_SHAPE(x.d[1])), gc_w(KL_SHAPE(x.d[1]))};
        gc_opts o = gc_defaults();
        o.mode = cases[i].mode;
        snprintf(label, sizeof label, "batchnorm %s %s", kl_shape_str(&x, sb, sizeof sb),
                 cases[i].mode == KL_MODE_TRAIN ? "train" : "eval");
        gradcheck_opts(label, leaves, 3, build_bn, &ctx, &o);
    }
    gc_leaf leaves[3] = {gc_in(KL_SHAPE(4, 3, 2, 2)), gc_w(KL_SHAPE(3)), gc_w(KL_SHAPE(3))};
    gradcheck("batchnorm used twice accumulates", leaves, 3, build_bn_twice, &ctx);
    gc_opts o = gc_defaults();
    o.mode = KL_MODE_EVAL;
    gradcheck_opts("batchnorm used twice accumulates (eval)", leaves, 3, build_bn_twice, &ctx, &o);
    /* x needs no gradient (a first layer): din[0] is NULL. */
    leaves[0].grad = false;
    gradcheck("batchnorm without d(x)", leaves, 3, build_bn, &ctx);
}

static kl_status bn_build_status(kl_shape gamma, kl_shape rv, bool rm_is_param, float momentum,
                                 float eps, kl_error *err)
{
    kl_graph *g = kl_graph_new();
    kl_node x = kl_input(g, "x", KL_F32, KL_SHAPE(3, 4, 4));
    kl_node ga = kl_param(g, "gamma", gamma, ONES, 0);
    kl_node be = kl_param(g, "beta", KL_SHAPE(3), ZEROS, 0);
    kl_node rm = rm_is_param ? kl_param(g, "rm", KL_SHAPE(3), ZEROS, 0)
                             : kl_buffer(g, "rm", KL_SHAPE(3), ZEROS);
    kl_node rvn = kl_buffer(g, "rv", rv, ONES);
    kl_node y = kl_batchnorm(g, x, ga, be, rm, rvn, momentum, eps);
    CHECK(y == KL_NONE);
    kl_status st = kl_graph_compile(g, 2, KL_NONE, 1, err);
    kl_graph_free(g);
    return st;
}

static void test_batchnorm_errors(void)
{
    kl_error err = {0};
    CHECK(bn_build_status(KL_SHAPE(4), KL_SHAPE(3), false, 0.1f, EPS, &err) == KL_ESHAPE);
    CHECK(strstr(err.msg, "batchnorm") && strstr(err.msg, "gamma"));
    CHECK(bn_build_status(KL_SHAPE(3, 1), KL_SHAPE(3), false, 0.1f, EPS, &err) == KL_ESHAPE);
    CHECK(strstr(err.msg, "batchnorm") && strstr(err.msg, "gamma"));
    CHECK(bn_build_status(KL_SHAPE(3), KL_SHAPE(2), false, 0.1f, EPS, &err) == KL_ESHAPE);
    CHECK(strstr(err.msg, "batchnorm") && strstr(err.msg, "running_var"));
    CHECK(bn_build_status(KL_SHAPE(3), KL_SHAPE(3), true, 0.1f, EPS, &err) == KL_EINVAL);
    CHECK(strstr(err.msg, "batchnorm") && strstr(err.msg, "kl_buffer"));
    CHECK(bn_build_status(KL_SHAPE(3), KL_SHAPE(3), false, 1.5f, EPS, &err) == KL_EINVAL);
    CHECK(strstr(err.msg, "batchnorm") && strstr(err.msg, "momentum"));
    CHECK(bn_build_status(KL_SHAPE(3), KL_SHAPE(3), false, -0.1f, EPS, &err) == KL_EINVAL);
    CHECK(bn_build_status(KL_SHAPE(3), KL_SHAPE(3), false, 0.1f, 0.0f, &err) == KL_EINVAL);
    CHECK(strstr(err.msg, "batchnorm") && strstr(err.msg, "eps"));
    CHECK(bn_build_status(KL_SHAPE(3), KL_SHAPE(3), false, 0.1f, -1e-5f, &err) == KL_EINVAL);

    /* Training on one value per channel has no variance to normalise by; eval mode is fine. */
    bn_graph t;
    if (bn_graph_make(&t, 1, 0.1f) == 0) {
        kl_graph_set_mode(t.g, KL_MODE_TRAIN);
        CHECK(kl_graph_forward(t.g, &err) == KL_ESHAPE);
        CHECK(strstr(err.msg, "batchnorm") && strstr(err.msg, "batch of 2"));
        kl_graph_set_mode(t.g, KL_MODE_EVAL);
        CHECK_OK(kl_graph_forward(t.g, &err), &err);
    }
    kl_graph_free(t.g);
}

/* x is two rows of 4: (1, 2, 3, 4) with mean 2.5 and biased var (2.25 + 0.25 + 0.25 + 2.25) / 4
 * = 1.25; (-1, 0, 0, 1) with mean 0 and var 0.5. gamma (1, 1, 2, 2), beta (0, 0, 0, 1). A third
 * row (5, 5, 5, 5) has no variance: xhat is 0 and y is beta. */
static void test_layernorm_values(void)
{
    kl_error err = {0};
    kl_graph *g = kl_graph_new();
    kl_node x = kl_input(g, "x", KL_F32, KL_SHAPE(4));
    kl_node gamma = kl_param(g, "gamma", KL_SHAPE(4), ONES, 0);
    kl_node beta = kl_param(g, "beta", KL_SHAPE(4), ZEROS, 0);
    kl_node y = kl_layernorm(g, x, gamma, beta, EPS);
    kl_graph_mark_output(g, y);
    if (kl_graph_compile(g, 3, KL_NONE, 1, &err) != KL_OK) {
        CHECK_OK(KL_EINTERNAL, &err);
        kl_graph_free(g);
        return;
    }
    const float xv[] = {1, 2, 3, 4, -1, 0, 0, 1, 5, 5, 5, 5}, gv[] = {1, 1, 2, 2},
                bv[] = {0, 0, 0, 1};
    memcpy(kl_graph_value(g, x)->data, xv, sizeof xv);
    memcpy(kl_graph_value(g, gamma)->data, gv, sizeof gv);
    memcpy(kl_graph_value(g, beta)->data, bv, sizeof bv);
    run(g);
    /* Row 0: xhat = (-1.5, -0.5, 0.5, 1.5) / sqrt(1.25 + 1e-5) = (-1.3416354, -0.4472118,
     * 0.4472118, 1.3416354), y = (-1.3416354, -0.4472118, 0.8944236, 3.6832708). Row 1: xhat =
     * (-1, 0, 0, 1) / sqrt(0.5 + 1e-5) = (-1.4141994, 0, 0, 1.4141994), y = (-1.4141994, 0, 0,
     * 3.8283988). */
    const double want[] = {-1.3416354, -0.4472118, 0.8944236, 3.6832708, -1.4141994, 0,
                           0,          3.8283988,  0,         0,         0,          1};
    const float *yv = kl_f32(kl_graph_value(g, y));
    for (int i = 0; i < 12; i++)
        CHECK_NEAR(yv[i], want[i], TOL);
    kl_graph_free(g);
}

static kl_node build_ln(kl_graph *g, const kl_node *l, void *ctx)
{
    return kl_layernorm(g, l[0], l[1], l[2], EPS);
}

static kl_node build_ln_twice(kl_graph *g, const kl_node *l, void *ctx)
{
    return kl_add(g, kl_layernorm(g, l[0], l[1], l[2], EPS),
                  kl_layernorm(g, l[0], l[1], l[2], EPS));
}

static void test_layernorm_gradcheck(void)
{
    const kl_shape shapes[] = {KL_SHAPE(3, 5), KL_SHAPE(1, 7), KL_SHAPE(2, 3, 4),
                               KL_SHAPE(2, 2, 3, 5), KL_SHAPE(4, 2)};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        char label[64], sb[64];
        int64_t D = shapes[i].d[shapes[i].ndim - 1];
        gc_leaf leaves[3] = {gc_in(shapes[i]), gc_w(KL_SHAPE(D)), gc_w(KL_SHAPE(D))};
        snprintf(label, sizeof label, "layernorm %s", kl_shape_str(&shapes[i], sb, sizeof sb));
        gradcheck(label, leaves, 3, build_ln, NULL);
    }
    /* An unbatched 1-D x (a weight) is one row. */
    gc_leaf w[3] = {gc_w(KL_SHAPE(6)), gc_w(KL_SHAPE(6)), gc_w(KL_SHAPE(6))};
    gradcheck("layernorm of a weight", w, 3, build_ln, NULL);
    gc_leaf two[3] = {gc_in(KL_SHAPE(3, 4)), gc_w(KL_SHAPE(4)), gc_w(KL_SHAPE(4))};
    gradcheck("layernorm used twice accumulates", two, 3, build_ln_twice, NULL);
    two[0].grad = false;
    gradcheck("layernorm without d(x)", two, 3, build_ln, NULL);
}

static void test_layernorm_errors(void)
{
    kl_error err = {0};
    kl_graph *g = kl_graph_new();
    kl_node x = kl_input(g, "x", KL_F32, KL_SHAPE(2, 5));
    kl_node ga = kl_param(g, "gamma", KL_SHAPE(2), ONES, 0);
    kl_node be = kl_param(g, "beta", KL_SHAPE(5), ZEROS, 0);
    CHECK(kl_layernorm(g, x, ga, be, EPS) == KL_NONE);
    CHECK(kl_graph_compile(g, 2, KL_NONE, 1, &err) == KL_ESHAPE);
    CHECK(strstr(err.msg, "layernorm") && strstr(err.msg, "gamma"));
    kl_graph_free(g);

    g = kl_graph_new();
    x = kl_input(g, "x", KL_F32, KL_SHAPE(5));
    ga = kl_param(g, "gamma", KL_SHAPE(5), ONES, 0);
    be = kl_param(g, "beta", KL_SHAPE(5), ZEROS, 0);
    CHECK(kl_layernorm(g, x, ga, be, 0.0f) == KL_NONE);
    CHECK(kl_graph_compile(g, 2, KL_NONE, 1, &err) == KL_EINVAL);
    CHECK(strstr(err.msg, "layernorm") && strstr(err.msg, "eps"));
    kl_graph_free(g);

    /* A batched x needs an axis besides the batch to normalise over. */
    g = kl_graph_new();
    x = kl_input(g, "x", KL_F32, (kl_shape){.ndim = 0});
    ga = kl_param(g, "gamma", KL_SHAPE(1), ONES, 0);
    be = kl_param(g, "beta", KL_SHAPE(1), ZEROS, 0);
    CHECK(kl_layernorm(g, x, ga, be, EPS) == KL_NONE);
    CHECK(kl_graph_compile(g, 2, KL_NONE, 1, &err) == KL_ESHAPE);
    CHECK(strstr(err.msg, "layernorm") != NULL);
    kl_graph_free(g);
}

static const check_case cases[] = {
    CHECK_CASE(test_batchnorm_values),    CHECK_CASE(test_batchnorm_4d_moments),
    CHECK_CASE(test_batchnorm_gradcheck), CHECK_CASE(test_batchnorm_errors),
    CHECK_CASE(test_layernorm_values),    CHECK_CASE(test_layernorm_gradcheck),
    CHECK_CASE(test_layernorm_errors),
};

int main(int argc, char **argv)
{
    return check_run("test_ops_norm", cases, CHECK_NCASES(cases), argc, argv);
}
