/* Tests for conv2d (ops/cpu/conv.c): forward values worked out by hand, a naive direct convolution
 * as reference (also at a batch below the compiled maximum), finite-difference gradients for x and
 * w over odd sizes, strides, padding and 1x1 kernels, gradient accumulation, and shape errors. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "gradcheck.h"
#include "kiln/graph.h"
#include "kiln/rng.h"

typedef struct conv_case {
    int stride, pad;
} conv_case;

/* A fused ReLU's convolution, with a bias leaf or not. */
typedef struct relu_case {
    int stride, pad;
    bool bias;
} relu_case;

static kl_node build_conv(kl_graph *g, const kl_node *leaves, void *ctx)
{
    const conv_case *cc = ctx;
    return kl_conv2d(g, leaves[0], leaves[1], cc->stride, cc->pad);
}

/* conv2d with its bias fused (kl_conv2d_bias), and the same as two ops. */
static kl_node build_conv_bias(kl_graph *g, const kl_node *leaves, void *ctx)
{
    const conv_case *cc = ctx;
    return kl_conv2d_bias(g, leaves[0], leaves[1], leaves[2], cc->stride, cc->pad);
}

static kl_node build_conv_then_bias(kl_graph *g, const kl_node *leaves, void *ctx)
{
    const conv_case *cc = ctx;
    return kl_bias_add(g, kl_conv2d(g, leaves[0], leaves[1], cc->stride, cc->pad), leaves[2]);
}

/* Two convolutions of the same x, summed: x's gradient must be the sum of both backward passes,
 * which only holds if the kernel adds into dx. */
static kl_node build_conv_twice(kl_graph *g, const kl_node *leaves, void *ctx)
{
    const conv_case *cc = ctx;
    return kl_add(g, kl_conv2d(g, leaves[0], leaves[1], cc->stride, cc->pad),
                  kl_conv2d(g, leaves[0], leaves[2], cc->stride, cc->pad));
}

/* conv2d with a ReLU fused (kl_conv2d_relu), with or without a bias (three leaves or two), and the
 * same as separate ops. */
static kl_node build_conv_relu(kl_graph *g, const kl_node *leaves, void *ctx)
{
    const relu_case *cc = ctx;
    return kl_conv2d_relu(g, leaves[0], leaves[1], cc->bias ? leaves[2] : KL_NONE, cc->stride,
                          cc->pad);
}

static kl_node build_conv_then_relu(kl_graph *g, const kl_node *leaves, void *ctx)
{
    const relu_case *cc = ctx;
    kl_node h = kl_conv2d(g, leaves[0], leaves[1], cc->stride, cc->pad);
    return kl_relu(g, cc->bias ? kl_bias_add(g, h, leaves[2]) : h);
}

/* Runs conv2d forward on exact x and w and compares every output with want. */
static void check_conv_values(const char *label, kl_shape xs, const float *x, kl_shape ws,
                              const float *w, int stride, int pad, kl_shape want_shape,
                              const float *want)
{
    gc_leaf leaves[2] = {gc_with_values(gc_in(xs), x), gc_with_values(gc_w(ws), w)};
    conv_case cc = {stride, pad};
    gc_graph t;
    if (!check_(gc_run(&t, leaves, 2, build_conv, &cc, KL_MODE_EVAL) == 0, __FILE__, __LINE__,
                label)) {
        kl_graph_free(t.g);
        return;
    }
    const kl_tensor *y = kl_graph_value(t.g, t.out);
    if (check_(kl_shape_eq(&y->shape, &want_shape), __FILE__, __LINE__, label))
        for (int64_t i = 0; i < kl_numel(y); i++)
            CHECK_NEAR(kl_f32(y)[i], want[i], 1e-5);
    kl_graph_free(t.g);
}

/* x = [1 2 3; 4 5 6; 7 8 9] (1x1x3x3), w = [1 2; 3 4] (1x1x2x2): out[i][j] = x[i][j] + 2 x[i][j+1]
 * + 3 x[i+1][j] + 4 x[i+1][j+1] over the (padded) input. */
static void test_forward_by_hand(void)
{
    const float x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    const float w[4] = {1, 2, 3, 4};
    kl_shape xs = KL_SHAPE(1, 1, 3, 3), ws = KL_SHAPE(1, 1, 2, 2);

    /* Stride 1, pad 0: OH = (3 - 2)/1 + 1 = 2.
     * (0,0) 1+4+12+20 = 37, (0,1) 2+6+15+24 = 47, (1,0) 4+10+21+32 = 67, (1,1) 5+12+24+36 = 77. */
    const float s1p0[4] = {37, 47, 67, 77};
    check_conv_values("conv s1 p0", xs, x, ws, w, 1, 0, KL_SHAPE(1, 1, 2, 2), s1p0);

    /* Stride 2, pad 0: OH = (3 - 2)/2 + 1 = 1 (floor): only the top-left window, 37. */
    const float s2p0[1] = {37};
    check_conv_values("conv s2 p0", xs, x, ws, w, 2, 0, KL_SHAPE(1, 1, 1, 1), s2p0);

    /* Stride 1, pad 1: OH = (3 + 2 - 2)/1 + 1 = 4, over the zero-padded 5x5
     *   0 0 0 0 0 / 0 1 2 3 0 / 0 4 5 6 0 / 0 7 8 9 0 / 0 0 0 0 0.
     * Row 0 sees only 3 p[1][j] + 4 p[1][j+1]: 4, 3+8 = 11, 6+12 = 18, 9.
     * Row 1: 0+2+0+16 = 18, 37, 47, 3+0+18+0 = 21.
     * Row 2: 0+8+0+28 = 36, 67, 77, 6+0+27+0 = 33.
     * Row 3 sees only p[3][j] + 2 p[3][j+1]: 14, 7+16 = 23, 8+18 = 26, 9. */
    const float s1p1[16] = {4, 11, 18, 9, 18, 37, 47, 21, 36, 67, 77, 33, 14, 23, 26, 9};
    check_conv_values("conv s1 p1", xs, x, ws, w, 1, 1, KL_SHAPE(1, 1, 4, 4), s1p1);

    /* Stride 2, pad 1: OH = (3 + 2 - 2)/2 + 1 = 2, rows and columns 0 and 2 of the above. */
    const float s2p1[4] = {4, 18, 36, 77};
    check_conv_values("conv s2 p1", xs, x, ws, w, 2, 1, KL_SHAPE(1, 1, 2, 2), s2p1);

    /* Two channels in, two out, 1x1 kernel (the pointwise path), batch 2: y[o] = sum_c w[o][c]
     * x[c]. x sample 0: c0 = [1 2; 3 4], c1 = [10 20; 30 40]; sample 1 is sample 0 negated.
     * w = [[1, 0.5], [-2, 0]]: y0 = c0 + c1/2 = [6 12; 18 24], y1 = -2 c0 = [-2 -4; -6 -8]. */
    const float px[16] = {1, 2, 3, 4, 10, 20, 30, 40, -1, -2, -3, -4, -10, -20, -30, -40};
    const float pw[4] = {1, 0.5f, -2, 0};
    const float py[16] = {6, 12, 18, 24, -2, -4, -6, -8, -6, -12, -18, -24, 2, 4, 6, 8};
    check_conv_values("conv 1x1", KL_SHAPE(2, 2, 2, 2), px, KL_SHAPE(2, 2, 1, 1), pw, 1, 0,
                      KL_SHAPE(2, 2, 2, 2), py);
}

/* The textbook definition, one output at a time. */
static void conv_direct(const float *x, const float *w, float *y, int n, int c, int h, int wd,
                        int o, int kh, int kw, int stride, int pad, int oh, int ow)
{
    for (int s = 0; s < n; s++)
        for (int f = 0; f < o; f++)
            for (int i = 0; i < oh; i++)
                for (int j = 0; j < ow; j++) {
                    double acc = 0;
                    for (int ch = 0; ch < c; ch++)
                        for (int a = 0; a < kh; a++)
                            for (int b = 0; b < kw; b++) {
                                int ih = i * stride - pad + a, iw = j * stride - pad + b;
                                if (ih < 0 || ih >= h || iw < 0 || iw >= wd)
                                    continue;
                                acc += (double)x[((s * c + ch) * h + ih) * wd + iw] *
                                       w[((f * c + ch) * kh + a) * kw + b];
                            }
                    y[((s * o + f) * oh + i) * ow + j] = (float)acc;
                }
}

typedef struct ref_case {
    int n, c, h, w, o, kh, kw, stride, pad;
} ref_case;

/* Compiles for batch rc->n, then runs at batch n - 1 (when n > 1) and at n, comparing both with
 * conv_direct: the kernels must follow the current batch, not the compiled one. */
static void test_against_direct(const ref_case *rc)
{
    kl_error err = {0};
    kl_graph *g = kl_graph_new();
    if (!CHECK(g != NULL))
        return;
    kl_node x = kl_input(g, "x", KL_F32, KL_SHAPE(rc->c, rc->h, rc->w));
    kl_node w = kl_param(g, "w", KL_SHAPE(rc->o, rc->c, rc->kh, rc->kw),
                         (kl_init){KL_INIT_UNIFORM, -1, 1}, 0);
    kl_node y = kl_conv2d(g, x, w, rc->stride, rc->pad);
    kl_graph_mark_output(g, y);
    kl_status st = kl_graph_compile(g, rc->n, KL_NONE, 42, &err);
    CHECK_OK(st, &err);
    if (st != KL_OK) {
        kl_graph_free(g);
        return;
    }
    int oh = (rc->h + 2 * rc->pad - rc->kh) / rc->stride + 1;
    int ow = (rc->w + 2 * rc->pad - rc->kw) / rc->stride + 1;
    kl_tensor *xv = kl_graph_value(g, x);
    kl_rng_fill_uniform(7, KL_RNG_TEST, 1, kl_f32(xv), (size_t)kl_numel(xv), -1, 1);
    size_t ny = (size_t)rc->n * rc->o * oh * ow;
    float *ref = malloc(ny * sizeof *ref);
    if (!CHECK(ref != NULL)) {
        kl_graph_free(g);
        return;
    }
    for (int batch = rc->n > 1 ? rc->n - 1 : 1; batch <= rc->n; batch++) {
        CHECK_OK(kl_graph_set_batch(g, batch, &err), &err);
        CHECK_OK(kl_graph_forward(g, &err), &err);
        const kl_tensor *yv = kl_graph_value(g, y);
        kl_shape want = KL_SHAPE(batch, rc->o, oh, ow);
        CHECK(kl_shape_eq(&yv->shape, &want));
        conv_direct(kl_f32(xv), kl_f32(kl_graph_value(g, w)), ref, batch, rc->c, rc->h, rc->w,
                    rc->o, rc->kh, rc->kw, rc->stride, rc->pad, oh, ow);
        double worst = 0;
        for (int64_t i = 0; i < kl_numel(yv); i++)
            worst = fmax(worst, fabs((double)kl_f32(yv)[i] - ref[i]));
        CHECK_NEAR(worst, 0.0, 1e-4);
    }
    free(ref);
    kl_graph_free(g);
}

typedef struct grad_case {
    const char *label;
    int n, c, h, w, o, kh, kw, stride, pad;
} grad_case;

static void test_gradients(void)
{
    const grad_case cases[] = {
        {"grad N1 C1 5x5 k3 s1 p0", 1, 1, 5, 5, 1, 3, 3, 1, 0},
        {"grad N3 C3 7x5 k3 s2 p1", 3, 3, 7, 5, 2, 3, 3, 2, 1},
        {"grad N1 C3 7x7 k3 s1 p1", 1, 3, 7, 7, 4, 3, 3, 1, 1},
        {"grad N3 C1 5x7 k3 s2 p0", 3, 1, 5, 7, 3, 3, 3, 2, 0},
        {"grad N2 C3 5x7 k1 s1 p0 (pointwise)", 2, 3, 5, 7, 4, 1, 1, 1, 0},
        {"grad N1 C2 7x7 k1 s2 p1", 1, 2, 7, 7, 3, 1, 1, 2, 1},
        {"grad N3 C3 6x5 k3x2 s1 p1", 3, 3, 6, 5, 2, 3, 2, 1, 1},
        {"grad N1 C2 5x5 k5 s1 p0 (kernel = input)", 1, 2, 5, 5, 2, 5, 5, 1, 0},
        {"grad N2 C1 7x7 k2 s3 p0 (inputs no window reaches)", 2, 1, 7, 7, 2, 2, 2, 3, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const grad_case *gc = &cases[i];
        gc_leaf leaves[2] = {gc_in(KL_SHAPE(gc->n, gc->c, gc->h, gc->w)),
                             gc_w(KL_SHAPE(gc->o, gc->c, gc->kh, gc->kw))};
        conv_case cc = {gc->stride, gc->pad};
        gradcheck(gc->label, leaves, 2, build_conv, &cc);
    }
    gc_leaf shared[3] = {gc_in(KL_SHAPE(2, 3, 5, 5)), gc_w(KL_SHAPE(2, 3, 3, 3)),
                         gc_w(KL_SHAPE(2, 3, 3, 3))};
    conv_case cc = {2, 1};
    gradcheck("grad x shared by two convs", shared, 3, build_conv_twice, &cc);
    gc_leaf shared1[3] = {gc_in(KL_SHAPE(2, 3, 5, 5)), gc_w(KL_SHAPE(2, 3, 1, 1)),
                          gc_w(KL_SHAPE(2, 3, 1, 1))};
    conv_case pw = {1, 0};
    gradcheck("grad x shared by two pointwise convs", shared1, 3, build_conv_twice, &pw);
}

/* The fused bias: finite-difference gradients of x, w and b, and the same bits as conv2d then
 * bias_add (forward and every gradient), on the im2col and the pointwise paths. */
static void test_fused_bias(void)
{
    const struct {
        const char *label;
        kl_shape xs, ws;
        conv_case cc;
    } cases[] = {
        {"bias 3x3 s1 p1", KL_SHAPE(3, 2, 6, 5), KL_SHAPE(4, 2, 3, 3), {1, 1}},
        {"bias 3x3 s2 p0", KL_SHAPE(2, 3, 7, 7), KL_SHAPE(3, 3, 3, 3), {2, 0}},
        {"bias 1x1 (pointwise)", KL_SHAPE(2, 3, 5, 4), KL_SHAPE(4, 3, 1, 1), {1, 0}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        gc_leaf leaves[3] = {gc_in(cases[i].xs), gc_w(cases[i].ws),
                             gc_w(KL_SHAPE(cases[i].ws.d[0]))};
        gradcheck(cases[i].label, leaves, 3, build_conv_bias, (void *)&cases[i].cc);
        gc_graph a, b;
        kl_error err = {0};
        gc_opts o = gc_defaults();
        bool ok = gc_setup(&a, leaves, 3, build_conv_bias, (void *)&cases[i].cc, &o) == 0 &&
                  gc_setup(&b, leaves, 3, build_conv_then_bias, (void *)&cases[i].cc, &o) == 0;
        ok = ok && kl_graph_forward(a.g, &err) == KL_OK && kl_graph_backward(a.g, &err) == KL_OK;
        ok = ok && kl_graph_forward(b.g, &err) == KL_OK && kl_graph_backward(b.g, &err) == KL_OK;
        if (check_(ok, __FILE__, __LINE__, cases[i].label)) {
            const kl_tensor *ya = kl_graph_value(a.g, a.out), *yb = kl_graph_value(b.g, b.out);
            CHECK(kl_numel(ya) == kl_numel(yb) &&
                  memcmp(kl_f32(ya), kl_f32(yb), (size_t)kl_numel(ya) * sizeof(float)) == 0);
            for (int l = 0; l < 3; l++) {
                const kl_tensor *ga = kl_graph_grad(a.g, a.leaf[l]);
                const kl_tensor *gb = kl_graph_grad(b.g, b.leaf[l]);
                CHECK(memcmp(kl_f32(ga), kl_f32(gb), (size_t)kl_numel(ga) * sizeof(float)) == 0);
            }
        }
        kl_graph_free(a.g);
        kl_graph_free(b.g);
    }
    /* A bias that is not one float per filter. */
    kl_graph *g = kl_graph_new();
    kl_node x = kl_input(g, "x", KL_F32, KL_SHAPE(2, 5, 5));
    kl_node w = kl_param(g, "w", KL_SHAPE(4, 2, 3, 3), (kl_init){KL_INIT_ZEROS, 0, 0}, 0);
    kl_node b = kl_param(g, "b", KL_SHAPE(3), (kl_init){KL_INIT_ZEROS, 0, 0}, 0);
    CHECK(kl_conv2d_bias(g, x, w, b, 1, 1) == KL_NONE);
    kl_error err = {0};
    CHECK(kl_graph_status(g, &err) == KL_ESHAPE);
    CHECK(strstr(err.msg, "bias") != NULL);
    kl_graph_free(g);
}

/* kl_graph_backward adds into the parameter gradients: two passes give twice one pass. */
static void test_weight_grad_accumulates(void)
{
    kl_error err = {0};
    kl_graph *g = kl_graph_new();
    if (!CHECK(g != NULL))
        return;
    kl_node x = kl_input(g, "x", KL_F32, KL_SHAPE(2, 5, 5));
    kl_node w = kl_param(g, "w", KL_SHAPE(3, 2, 3, 3), (kl_init){KL_INIT_UNIFORM, -1, 1}, 0);
    kl_node loss = kl_sum(g, kl_conv2d(g, x, w, 1, 1));
    kl_status st = kl_graph_compile(g, 2, loss, 3, &err);
    CHECK_OK(st, &err);
    if (st != KL_OK) {
        kl_graph_free(g);
        return;
    }
    kl_tensor *xv = kl_graph_value(g, x);
    kl_rng_fill_uniform(9, KL_RNG_TEST, 2, kl_f32(xv), (size_t)kl_numel(xv), -1, 1);
    const kl_tensor *dw = kl_graph_grad(g, w);
    float once[54];
    kl_graph_zero_grad(g);
    CHECK_OK(kl_graph_forward(g, &err), &err);
    CHECK_OK(kl_graph_backward(g, &err), &err);
    memcpy(once, dw->data, sizeof once);
    CHECK_OK(kl_graph_forward(g, &err), &err);
    CHECK_OK(kl_graph_backward(g, &err), &err);
    for (int i = 0; i < 54; i++)
        CHECK_NEAR(kl_f32(dw)[i], 2.0f * once[i], 1e-4);
    kl_graph_free(g);
}

/* Builds x (per-sample xs) conv w (ws) and expects compile to fail with want, naming conv2d. */
static void expect_conv_error(kl_shape xs, kl_shape ws, int stride, int pad, kl_status want)
{
    kl_error err = {0};
    kl_graph *g = kl_graph_new();
    if (!CHECK(g != NULL))
        return;
    kl_node x = kl_input(g, "x", KL_F32, xs);
    kl_node w = kl_param(g, "w", ws, (kl_init){KL_INIT_HE_UNIFORM, 0, 0}, 0);
    CHECK(kl_conv2d(g, x, w, stride, pad) == KL_NONE);
    kl_status st = kl_graph_compile(g, 2, KL_NONE, 1, &err);
    if (!CHECK(st == want) || !CHECK(strstr(err.msg, "conv2d") != NULL))
        fprintf(stderr, "    status %d, message: %s\n", (int)st, err.msg);
    kl_graph_free(g);
}

static void test_shape_errors(void)
{
    /* 3 channels in x, 2 in w. */
    expect_conv_error(KL_SHAPE(3, 5, 5), KL_SHAPE(4, 2, 3, 3), 1, 0, KL_ESHAPE);
    /* A 5x5 kernel on a 3x3 input, and 4x4 on 3x3 with stride 2, where truncating division
     * would wrongly give one output row. */
    expect_conv_error(KL_SHAPE(1, 3, 3), KL_SHAPE(1, 1, 5, 5), 1, 0, KL_ESHAPE);
    expect_conv_error(KL_SHAPE(1, 3, 3), KL_SHAPE(1, 1, 4, 4), 2, 0, KL_ESHAPE);
    /* Too wide only. */
    expect_conv_error(KL_SHAPE(1, 8, 3), KL_SHAPE(1, 1, 3, 4), 1, 0, KL_ESHAPE);
    /* Not NCHW. */
    expect_conv_error(KL_SHAPE(3, 5), KL_SHAPE(4, 3, 3, 3), 1, 0, KL_ESHAPE);
    expect_conv_error(KL_SHAPE(3, 5, 5), KL_SHAPE(4, 3, 3), 1, 0, KL_ESHAPE);
    /* Bad stride and padding. */
    expect_conv_error(KL_SHAPE(1, 5, 5), KL_SHAPE(1, 1, 3, 3), 0, 0, KL_EINVAL);
    expect_conv_error(KL_SHAPE(1, 5, 5), KL_SHAPE(1, 1, 3, 3), 1, -1, KL_EINVAL);
}

/* A batch large enough that the GEMMs run over several chunks of samples (the column block is
 * capped at 32 MiB) gives the same y, dx and dW as running the samples one by one. */
typedef struct conv_net {
    kl_graph *g;
    kl_node x, r, w, y;
} conv_net;

static void conv_net_build(conv_net *n, int64_t batch)
{
    kl_error err = {0};
    n->g = kl_graph_new();
    n->x = kl_input(n->g, "x", KL_F32, KL_SHAPE(1, 28, 28));
    n->r = kl_input(n->g, "r", KL_F32, KL_SHAPE(32, 28, 28));
    kl_graph_require_grad(n->g, n->x);
    n->w = kl_param(n->g, "w", KL_SHAPE(32, 1, 3, 3), (kl_init){KL_INIT_UNIFORM, -1, 1}, 0);
    n->y = kl_conv2d(n->g, n->x, n->w, 1, 1);
    kl_graph_mark_output(n->g, n->y);
    kl_node loss = kl_sum(n->g, kl_mul(n->g, n->y, n->r));
    CHECK_OK(kl_graph_compile(n->g, batch, loss, 5, &err), &err);
}

static void test_chunked_batch(void)
{
    enum { N = 300, XS = 28 * 28, YS = 32 * 28 * 28 };
    kl_error err = {0};
    conv_net big, one;
    conv_net_build(&big, N);
    conv_net_build(&one, 1);
    float *x = kl_f32(kl_graph_value(big.g, big.x)), *r = kl_f32(kl_graph_value(big.g, big.r));
    kl_rng_fill_uniform(3, KL_RNG_TEST, 0, x, (size_t)N * XS, -1, 1);
    kl_rng_fill_uniform(3, KL_RNG_TEST, 1, r, (size_t)N * YS, -1, 1);
    kl_graph_zero_grad(big.g);
    CHECK_OK(kl_graph_forward(big.g, &err), &err);
    CHECK_OK(kl_graph_backward(big.g, &err), &err);
    kl_graph_zero_grad(one.g);
    double worst = 0;
    for (int s = 0; s < N; s++) {
        memcpy(kl_f32(kl_graph_value(one.g, one.x)), x + (size_t)s * XS, XS * sizeof(float));
        memcpy(kl_f32(kl_graph_value(one.g, one.r)), r + (size_t)s * YS, YS * sizeof(float));
        CHECK_OK(kl_graph_forward(one.g, &err), &err);
        CHECK_OK(kl_graph_backward(one.g, &err), &err); /* dW accumulates over the samples */
        const float *y1 = kl_f32(kl_graph_value(one.g, one.y));
        const float *yb = kl_f32(kl_graph_value(big.g, big.y)) + (size_t)s * YS;
        const float *dx1 = kl_f32(kl_graph_grad(one.g, one.x));
        const float *dxb = kl_f32(kl_graph_grad(big.g, big.x)) + (size_t)s * XS;
        for (int i = 0; i < YS; i++)
            worst = fmax(worst, fabs((double)y1[i] - yb[i]));
        for (int i = 0; i < XS; i++)
            worst = fmax(worst, fabs((double)dx1[i] - dxb[i]));
    }
    CHECK(worst < 1e-4);
    const float *dw1 = kl_graph_grads(one.g), *dwb = kl_graph_grads(big.g);
    for (int i = 0; i < 32 * 9; i++)
        CHECK_NEAR(dw1[i], dwb[i], 1e-3 * (1 + fabs(dwb[i])));
    kl_graph_free(big.g);
    kl_graph_free(one.g);
}

static void test_against_direct_cases(void)
{
    const ref_case refs[] = {
        {2, 3, 6, 5, 4, 3, 3, 2, 1}, /* the case the op is specified by */
        {3, 2, 7, 6, 5, 3, 3, 1, 1},
        {2, 3, 5, 4, 4, 1, 1, 1, 0}, /* pointwise */
        {1, 4, 9, 7, 2, 5, 3, 2, 2},
    };
    for (size_t i = 0; i < sizeof refs / sizeof refs[0]; i++)
        test_against_direct(&refs[i]);
}

/* The fused ReLU: finite-difference gradients, and the same bits as conv2d (then bias_add) then
 * relu, forward and every gradient, with and without a bias, on the im2col ("same" and strided)
 * and pointwise paths. */
static void test_fused_relu(void)
{
    const struct {
        const char *label;
        kl_shape xs, ws;
        relu_case cc;
    } cases[] = {
        {"relu+bias 3x3 s1 p1", KL_SHAPE(3, 2, 6, 5), KL_SHAPE(4, 2, 3, 3), {1, 1, true}},
        {"relu 3x3 s1 p1, no bias", KL_SHAPE(2, 3, 6, 6), KL_SHAPE(4, 3, 3, 3), {1, 1, false}},
        {"relu+bias 3x3 s2 p0", KL_SHAPE(2, 3, 7, 7), KL_SHAPE(3, 3, 3, 3), {2, 0, true}},
        {"relu+bias 1x1 (pointwise)", KL_SHAPE(2, 3, 5, 4), KL_SHAPE(4, 3, 1, 1), {1, 0, true}},
        {"relu 1x1 (pointwise), no bias",
         KL_SHAPE(2, 3, 4, 4),
         KL_SHAPE(5, 3, 1, 1),
         {1, 0, false}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int nl = cases[i].cc.bias ? 3 : 2;
        gc_leaf leaves[3] = {gc_in(cases[i].xs), gc_w(cases[i].ws),
                             gc_w(KL_SHAPE(cases[i].ws.d[0]))};
        if (cases[i].cc.bias) {
            /* Finite differences must not straddle the ReLU's kink: x and w in +-[0.02, 0.05)
             * keep the convolution within +-0.07 of the bias, which is +-[0.5, 1), so no step
             * of 1e-3 changes an output's sign. (Without a bias the kink cannot be kept away;
             * those cases rest on the bit-for-bit comparison below and conv2d's and relu's own
             * finite-difference tests.) */
            static float xv[512], wv[128], bv[8];
            KL_ASSERT(kl_shape_numel(&cases[i].xs) <= 512 && kl_shape_numel(&cases[i].ws) <= 128 &&
                      cases[i].ws.d[0] <= 8);
            for (int64_t k = 0; k < kl_shape_numel(&cases[i].xs); k++)
                xv[k] = (k % 3 ? 1.0f : -1.0f) *
                        (0.02f + 0.03f * kl_rng_uniform(7, KL_RNG_TEST, i, (uint64_t)k));
            for (int64_t k = 0; k < kl_shape_numel(&cases[i].ws); k++)
                wv[k] = (k % 2 ? 1.0f : -1.0f) *
                        (0.02f + 0.03f * kl_rng_uniform(8, KL_RNG_TEST, i, (uint64_t)k));
            for (int64_t k = 0; k < cases[i].ws.d[0]; k++)
                bv[k] = (k % 2 ? -1.0f : 1.0f) *
                        (0.5f + 0.5f * kl_rng_uniform(9, KL_RNG_TEST, i, (uint64_t)k));
            gc_leaf fd[3] = {gc_with_values(leaves[0], xv), gc_with_values(leaves[1], wv),
                             gc_with_values(leaves[2], bv)};
            gradcheck(cases[i].label, fd, 3, build_conv_relu, (void *)&cases[i].cc);
        }
        gc_graph a, b;
        kl_error err = {0};
        gc_opts o = gc_defaults();
        bool ok = gc_setup(&a, leaves, nl, build_conv_relu, (void *)&cases[i].cc, &o) == 0 &&
                  gc_setup(&b, leaves, nl, build_conv_then_relu, (void *)&cases[i].cc, &o) == 0;
        ok = ok && kl_graph_forward(a.g, &err) == KL_OK && kl_graph_backward(a.g, &err) == KL_OK;
        ok = ok && kl_graph_forward(b.g, &err) == KL_OK && kl_graph_backward(b.g, &err) == KL_OK;
        if (check_(ok, __FILE__, __LINE__, cases[i].label)) {
            const kl_tensor *ya = kl_graph_value(a.g, a.out), *yb = kl_graph_value(b.g, b.out);
            int64_t zeros = 0;
            for (int64_t k = 0; k < kl_numel(ya); k++)
                zeros += kl_f32(ya)[k] == 0.0f;
            /* Both signs occur, so the mask is exercised. */
            CHECK(zeros > 0 && zeros < kl_numel(ya));
            CHECK(kl_numel(ya) == kl_numel(yb) &&
                  memcmp(kl_f32(ya), kl_f32(yb), (size_t)kl_numel(ya) * sizeof(float)) == 0);
            for (int l = 0; l < nl; l++) {
                const kl_tensor *ga = kl_graph_grad(a.g, a.leaf[l]);
                const kl_tensor *gb = kl_graph_grad(b.g, b.leaf[l]);
                if (!check_(memcmp(kl_f32(ga), kl_f32(gb), (size_t)kl_numel(ga) * sizeof(float)) ==
                                0,
                            __FILE__, __LINE__, cases[i].label))
                    fprintf(stderr, "    leaf %d's gradient differs from conv2d then relu\n", l);
            }
        }
        kl_graph_free(a.g);
        kl_graph_free(b.g);
    }
}

static const check_case cases[] = {
    CHECK_CASE(test_forward_by_hand), CHECK_CASE(test_against_direct_cases),
    CHECK_CASE(test_gradients),       CHECK_CASE(test_weight_grad_accumulates),
    CHECK_CASE(test_shape_errors),    CHECK_CASE(test_chunked_batch),
    CHECK_CASE(test_fused_bias),      CHECK_CASE(test_fused_relu),
};

int main(int argc, char **argv)
{
    return check_run("test_ops_conv", cases, CHECK_NCASES(cases), argc, argv);
}
