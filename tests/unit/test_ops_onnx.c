/* Tests for the ops the ONNX importer maps onto: sub, div, clip, log_softmax
 * (ops/cpu/elementwise.c) and transpose, broadcast, pad2d (ops/cpu/shape.c): values at hand-worked
 * points, gradients by finite differences (batched inputs and weights, batch 1 and 3), and the
 * shape functions' refusals. */
#include <math.h>
#include <string.h>

#include "check.h"
#include "gradcheck.h"
#include "kiln/graph.h"

static kl_node build_sub(kl_graph *g, const kl_node *l, void *ctx)
{
    return kl_sub(g, l[0], l[1]);
}
static kl_node build_div(kl_graph *g, const kl_node *l, void *ctx)
{
    return kl_div(g, l[0], l[1]);
}
static kl_node build_clip(kl_graph *g, const kl_node *l, void *ctx)
{
    return kl_clip(g, l[0], -0.5f, 0.25f);
}
static kl_node build_log_softmax(kl_graph *g, const kl_node *l, void *ctx)
{
    return kl_log_softmax(g, l[0]);
}
static kl_node build_transpose(kl_graph *g, const kl_node *l, void *ctx)
{
    return kl_transpose(g, l[0], (const int *)ctx);
}
static kl_node build_broadcast(kl_graph *g, const kl_node *l, void *ctx)
{
    return kl_broadcast(g, l[0], l[1]);
}
static kl_node build_pad2d(kl_graph *g, const kl_node *l, void *ctx)
{
    const int *p = ctx;
    return kl_pad2d(g, l[0], p[0], p[1], p[2], p[3], -2.5f);
}

static void test_values(void)
{
    const float a[] = {1, 2, 3, -0.5f}, b[] = {4, -5, 0.5f, 0.25f};
    gc_leaf l[2] = {gc_with_values(gc_in(KL_SHAPE(2, 2)), a),
                    gc_with_values(gc_in(KL_SHAPE(2, 2)), b)};
    const double diff[] = {-3, 7, 2.5, -0.75}, quot[] = {0.25, -0.4, 6, -2};
    gc_check_forward("sub values", l, 2, build_sub, NULL, KL_MODE_EVAL, KL_SHAPE(2, 2), diff, 1e-6);
    gc_check_forward("div values", l, 2, build_div, NULL, KL_MODE_EVAL, KL_SHAPE(2, 2), quot, 1e-6);
    /* clip to [-0.5, 0.25] of (1, 2, 3, -0.5) and of b. */
    const double ca[] = {0.25, 0.25, 0.25, -0.5};
    gc_check_forward("clip values", l, 1, build_clip, NULL, KL_MODE_EVAL, KL_SHAPE(2, 2), ca, 1e-6);
    /* log_softmax([1, 2, 3]) = [1, 2, 3] - log(e + e^2 + e^3) = [1, 2, 3] - 3.4076059644. */
    const float x[] = {1, 2, 3, 1001, 1002, 1003};
    gc_leaf sl[1] = {gc_with_values(gc_in(KL_SHAPE(2, 3)), x)};
    const double ls[] = {-2.4076059644, -1.4076059644, -0.4076059644,
                         -2.4076059644, -1.4076059644, -0.4076059644};
    gc_check_forward("log_softmax values", sl, 1, build_log_softmax, NULL, KL_MODE_EVAL,
                     KL_SHAPE(2, 3), ls, 1e-5);
    /* (1, 2, 3) transposed with perm (0, 2, 1): [[1, 2, 3], [4, 5, 6]] -> [[1, 4], [2, 5], [3, 6]].
     */
    const float t[] = {1, 2, 3, 4, 5, 6};
    const int perm[] = {0, 2, 1};
    gc_leaf tl[1] = {gc_with_values(gc_in(KL_SHAPE(1, 2, 3)), t)};
    const double tt[] = {1, 4, 2, 5, 3, 6};
    gc_check_forward("transpose values", tl, 1, build_transpose, (void *)perm, KL_MODE_EVAL,
                     KL_SHAPE(1, 3, 2), tt, 0);
    /* A (3) weight broadcast over (2, 3) batched rows repeats itself. */
    const float w[] = {7, 8, 9}, z[] = {0, 0, 0, 0, 0, 0};
    gc_leaf bl[2] = {gc_with_values(gc_w(KL_SHAPE(3)), w),
                     gc_with_values(gc_in(KL_SHAPE(2, 3)), z)};
    const double bb[] = {7, 8, 9, 7, 8, 9};
    gc_check_forward("broadcast values", bl, 2, build_broadcast, NULL, KL_MODE_EVAL, KL_SHAPE(2, 3),
                     bb, 0);
    /* A (1, 1, 2, 2) plane padded by top 1, bottom 0, left 0, right 2 with -2.5. */
    const float p[] = {1, 2, 3, 4};
    const int pads[] = {1, 0, 0, 2};
    gc_leaf pl[1] = {gc_with_values(gc_in(KL_SHAPE(1, 1, 2, 2)), p)};
    const double pp[] = {-2.5, -2.5, -2.5, -2.5, 1, 2, -2.5, -2.5, 3, 4, -2.5, -2.5};
    gc_check_forward("pad2d values", pl, 1, build_pad2d, (void *)pads, KL_MODE_EVAL,
                     KL_SHAPE(1, 1, 3, 4), pp, 0);
}

static void test_grads(void)
{
    char label[96];
    for (int64_t n = 1; n <= 3; n += 2) {
        gc_leaf two[2] = {gc_in(KL_SHAPE(n, 3, 5)), gc_in(KL_SHAPE(n, 3, 5))};
        two[1].lo = 0.5f; /* a divisor away from 0 */
        two[1].hi = 2.0f;
        snprintf(label, sizeof label, "sub grad N=%lld", (long long)n);
        gradcheck(label, two, 2, build_sub, NULL);
        snprintf(label, sizeof label, "div grad N=%lld", (long long)n);
        gradcheck(label, two, 2, build_div, NULL);
        /* Values in [-1, 1) straddle both limits; finite differences at eps 1e-3 rarely land
         * within eps of them, and the default tolerance absorbs the few that do not. */
        gc_leaf one[1] = {gc_in(KL_SHAPE(n, 7))};
        one[0].lo = -0.49f;
        one[0].hi = 0.24f; /* inside the limits: the gradient is dy */
        snprintf(label, sizeof label, "clip grad inside N=%lld", (long long)n);
        gradcheck(label, one, 1, build_clip, NULL);
        one[0].lo = 0.3f;
        one[0].hi = 2.0f; /* above: no gradient */
        snprintf(label, sizeof label, "clip grad above N=%lld", (long long)n);
        gradcheck(label, one, 1, build_clip, NULL);
        gc_leaf sm[1] = {gc_in(KL_SHAPE(n, 2, 6))};
        sm[0].lo = -3;
        sm[0].hi = 3;
        snprintf(label, sizeof label, "log_softmax grad N=%lld", (long long)n);
        gradcheck(label, sm, 1, build_log_softmax, NULL);
        const int perm3[] = {0, 2, 1}, perm4[] = {0, 3, 1, 2};
        gc_leaf t3[1] = {gc_in(KL_SHAPE(n, 3, 4))}, t4[1] = {gc_in(KL_SHAPE(n, 2, 3, 4))};
        snprintf(label, sizeof label, "transpose 3-D grad N=%lld", (long long)n);
        gradcheck(label, t3, 1, build_transpose, (void *)perm3);
        snprintf(label, sizeof label, "transpose 4-D grad N=%lld", (long long)n);
        gradcheck(label, t4, 1, build_transpose, (void *)perm4);
        /* A per-channel weight (C, 1, 1) and a batched (N, 1, H, 1) input, each broadcast to
         * (N, C, H, W): their gradients sum over the repeated axes. */
        gc_leaf bw[2] = {gc_w(KL_SHAPE(3, 1, 1)), gc_in(KL_SHAPE(n, 3, 4, 5))};
        bw[1].grad = false;
        snprintf(label, sizeof label, "broadcast weight grad N=%lld", (long long)n);
        gradcheck(label, bw, 2, build_broadcast, NULL);
        gc_leaf bx[2] = {gc_in(KL_SHAPE(n, 1, 4, 1)), gc_in(KL_SHAPE(n, 3, 4, 5))};
        bx[1].grad = false;
        snprintf(label, sizeof label, "broadcast input grad N=%lld", (long long)n);
        gradcheck(label, bx, 2, build_broadcast, NULL);
        const int pads[] = {0, 2, 1, 0};
        gc_leaf pd[1] = {gc_in(KL_SHAPE(n, 2, 3, 4))};
        snprintf(label, sizeof label, "pad2d grad N=%lld", (long long)n);
        gradcheck(label, pd, 1, build_pad2d, (void *)pads);
    }
}

static void test_shape_errors(void)
{
    kl_graph *g = kl_graph_new();
    kl_error err = {0};
    kl_node x = kl_input(g, "x", KL_F32, KL_SHAPE(3, 4));
    const int moves_batch[] = {1, 0, 2};
    CHECK(kl_transpose(g, x, moves_batch) == KL_NONE);
    CHECK(kl_graph_status(g, &err) == KL_EUNSUPPORTED && strstr(err.msg, "batch axis"));
    kl_graph_free(g);

    g = kl_graph_new();
    x = kl_input(g, "x", KL_F32, KL_SHAPE(3, 4));
    kl_node w = kl_param(g, "w", KL_SHAPE(5), (kl_init){KL_INIT_ZEROS, 0, 0}, 0);
    CHECK(kl_broadcast(g, w, x) == KL_NONE);
    CHECK(kl_graph_status(g, &err) == KL_ESHAPE && strstr(err.msg, "cannot broadcast"));
    kl_graph_free(g);

    g = kl_graph_new();
    x = kl_input(g, "x", KL_F32, KL_SHAPE(3));
    CHECK(kl_clip(g, x, 1.0f, -1.0f) == KL_NONE);
    CHECK(kl_graph_status(g, &err) == KL_EINVAL && strstr(err.msg, "lo <= hi"));
    kl_graph_free(g);
}

static const check_case cases[] = {
    CHECK_CASE(test_values),
    CHECK_CASE(test_grads),
    CHECK_CASE(test_shape_errors),
};

int main(int argc, char **argv)
{
    return check_run("test_ops_onnx", cases, CHECK_NCASES(cases), argc, argv);
}
