/* Tests for ops/cpu/elementwise.c: each op's values at chosen points against known constants
 * (Phi(1), tanh, the logistic function, softmax of [1, 2, 3] and of logits near 1000), each op's
 * gradient by finite differences on odd sizes and batch 1, and dropout's contract: identity in
 * eval mode, about p of the elements zeroed in training with the rest scaled by 1/(1-p), a mask
 * fixed by (seed, step) and a p outside [0, 1) refused. */
#include <string.h>

#include "check.h"
#include "gradcheck.h"
#include "kiln/graph.h"

#define TOL 1e-6

/* gc_check_forward in eval mode for an output of leaf 0's shape. */
static void check_forward(const char *label, const gc_leaf *leaves, int nl, gc_build_fn build,
                          void *ctx, const double *want, double tol)
{
    gc_check_forward(label, leaves, nl, build, ctx, KL_MODE_EVAL, leaves[0].shape, want, tol);
}

/* Build functions. Unary ops take their parameter (alpha, p) from ctx when they have one. */
static kl_node build_add(kl_graph *g, const kl_node *l, void *ctx)
{
    return kl_add(g, l[0], l[1]);
}
static kl_node build_residual(kl_graph *g, const kl_node *l, void *ctx)
{
    return kl_residual(g, l[0], l[1]);
}
static kl_node build_mul(kl_graph *g, const kl_node *l, void *ctx)
{
    return kl_mul(g, l[0], l[1]);
}
static kl_node build_scale(kl_graph *g, const kl_node *l, void *ctx)
{
    return kl_scale(g, l[0], *(const float *)ctx);
}
static kl_node build_relu(kl_graph *g, const kl_node *l, void *ctx)
{
    return kl_relu(g, l[0]);
}
static kl_node build_leaky(kl_graph *g, const kl_node *l, void *ctx)
{
    return kl_leaky_relu(g, l[0], *(const float *)ctx);
}
static kl_node build_gelu(kl_graph *g, const kl_node *l, void *ctx)
{
    return kl_gelu(g, l[0]);
}
static kl_node build_tanh(kl_graph *g, const kl_node *l, void *ctx)
{
    return kl_tanh(g, l[0]);
}
static kl_node build_sigmoid(kl_graph *g, const kl_node *l, void *ctx)
{
    return kl_sigmoid(g, l[0]);
}
static kl_node build_softmax(kl_graph *g, const kl_node *l, void *ctx)
{
    return kl_softmax(g, l[0]);
}
static kl_node build_dropout(kl_graph *g, const kl_node *l, void *ctx)
{
    return kl_dropout(g, l[0], *(const float *)ctx);
}
static kl_node build_sum(kl_graph *g, const kl_node *l, void *ctx)
{
    return kl_sum(g, l[0]);
}
/* -1.5 sum(x): sum's incoming gradient is not 1, as it is when sum is the loss itself. */
static kl_node build_scaled_sum(kl_graph *g, const kl_node *l, void *ctx)
{
    return kl_scale(g, kl_sum(g, l[0]), -1.5f);
}

static void test_binary_values(void)
{
    const float a[] = {1, 2, 3, -0.5f}, b[] = {4, -5, 0.5f, 0.25f};
    gc_leaf l[2] = {gc_with_values(gc_in(KL_SHAPE(2, 2)), a),
                    gc_with_values(gc_in(KL_SHAPE(2, 2)), b)};
    /* a + b = (5, -3, 3.5, -0.25); a * b = (4, -10, 1.5, -0.125). */
    const double sum[] = {5, -3, 3.5, -0.25}, prod[] = {4, -10, 1.5, -0.125};
    check_forward("add values", l, 2, build_add, NULL, sum, TOL);
    check_forward("residual values", l, 2, build_residual, NULL, sum, TOL);
    check_forward("mul values", l, 2, build_mul, NULL, prod, TOL);
    /* 2.5 * a = (2.5, 5, 7.5, -1.25). */
    const float alpha = 2.5f;
    const double scaled[] = {2.5, 5, 7.5, -1.25};
    check_forward("scale values", l, 1, build_scale, (void *)&alpha, scaled, TOL);
}

static void test_activation_values(void)
{
    const float x[] = {-2, 0, 3};
    gc_leaf l[1] = {gc_with_values(gc_in(KL_SHAPE(1, 3)), x)};
    const double relu[] = {0, 0, 3}, leaky[] = {-0.2, 0, 3};
    const float slope = 0.1f;
    check_forward("relu at -2, 0, 3", l, 1, build_relu, NULL, relu, TOL);
    check_forward("leaky_relu(0.1) at -2, 0, 3", l, 1, build_leaky, (void *)&slope, leaky, TOL);

    /* gelu(x) = x Phi(x) with Phi(1) = 0.8413447461, Phi(2) = 0.9772498681, Phi(-0.5) =
     * 0.3085375387 (normal tables): gelu(-1) = -(1 - Phi(1)), gelu(-0.5) = -0.5 Phi(-0.5). */
    const float gx[] = {1, 0, -1, 2, -0.5f};
    gc_leaf gl[1] = {gc_with_values(gc_in(KL_SHAPE(1, 5)), gx)};
    const double gelu[] = {0.8413447461, 0, -0.1586552539, 2 * 0.9772498681, -0.5 * 0.3085375387};
    check_forward("gelu at 1, 0, -1, 2, -0.5", gl, 1, build_gelu, NULL, gelu, 1e-6);

    /* tanh(0.5) = 0.4621171573, tanh(-1) = -0.7615941560, tanh(2) = 0.9640275801. */
    const float tx[] = {0, 0.5f, -1, 2};
    gc_leaf tl[1] = {gc_with_values(gc_in(KL_SHAPE(2, 2)), tx)};
    const double tanh_v[] = {0, 0.4621171573, -0.7615941560, 0.9640275801};
    check_forward("tanh at 0, 0.5, -1, 2", tl, 1, build_tanh, NULL, tanh_v, 1e-6);

    /* 1 / (1 + e^-x): 0.5 at 0, e/(1+e) = 0.7310585786 at 1, 1/(1+e^2) = 0.1192029220 at -2; at
     * +-20 it saturates to 1 - 2.06e-9 and 2.06e-9 without NaN. */
    const float sx[] = {0, 1, -2, 20, -20};
    gc_leaf sl[1] = {gc_with_values(gc_in(KL_SHAPE(1, 5)), sx)};
    const double sig[] = {0.5, 0.7310585786, 0.1192029220, 1 - 2.0611536e-9, 2.0611536e-9};
    check_forward("sigmoid at 0, 1, -2, 20, -20", sl, 1, build_sigmoid, NULL, sig, 1e-6);
}

static void test_softmax_values(void)
{
    /* softmax([1, 2, 3]) = e^k / (e + e^2 + e^3) = (0.0900305732, 0.2447284711, 0.6652409558);
     * the second row is the first shifted by 10, which softmax does not see. */
    const float x[] = {1, 2, 3, 11, 12, 13};
    gc_leaf l[1] = {gc_with_values(gc_in(KL_SHAPE(2, 3)), x)};
    const double want[] = {0.0900305732, 0.2447284711, 0.6652409558,
                           0.0900305732, 0.2447284711, 0.6652409558};
    check_forward("softmax of [1, 2, 3]", l, 1, build_softmax, NULL, want, 1e-6);

    /* Logits near 1000 overflow a naive exp: softmax([1000, 1001]) = softmax([0, 1]) =
     * (1/(1+e), e/(1+e)) = (0.2689414214, 0.7310585786), and so does [-1000, -999], where a
     * shift by anything but the row maximum underflows; [-1000, 0] gives (0, 1). */
    const float big[] = {1000, 1001, -1000, -999, -1000, 0};
    gc_leaf bl[1] = {gc_with_values(gc_in(KL_SHAPE(3, 2)), big)};
    const double bwant[] = {0.2689414214, 0.7310585786, 0.2689414214, 0.7310585786, 0, 1};
    check_forward("softmax of [1000, 1001] and [-1000, -999]", bl, 1, build_softmax, NULL, bwant,
                  1e-6);

    /* Rows of a random 3-D input sum to 1 over the last axis. */
    gc_graph t;
    gc_leaf rl[1] = {gc_in(KL_SHAPE(3, 4, 7))};
    rl[0].lo = -5;
    rl[0].hi = 5;
    if (CHECK(gc_run(&t, rl, 1, build_softmax, NULL, KL_MODE_EVAL) == 0)) {
        const float *y = kl_f32(kl_graph_value(t.g, t.out));
        int bad = 0;
        for (int r = 0; r < 12; r++) {
            double s = 0;
            for (int j = 0; j < 7; j++) {
                s += y[r * 7 + j];
                bad += !(y[r * 7 + j] > 0);
            }
            bad += !(fabs(s - 1) <= 1e-6);
        }
        CHECK(bad == 0);
    }
    kl_graph_free(t.g);
}

static void test_sum_values(void)
{
    /* 1 + 2 + 3 + 4.5 - 0.25 + 0 = 10.25, as a (1) tensor without a batch. */
    const float x[] = {1, 2, 3, 4.5f, -0.25f, 0};
    gc_leaf l[1] = {gc_with_values(gc_in(KL_SHAPE(2, 3)), x)};
    const double want[] = {10.25};
    gc_check_forward("sum values", l, 1, build_sum, NULL, KL_MODE_EVAL, KL_SHAPE(1), want, TOL);
}

/* Values in +-[0.1, 1): finite differences with eps 1e-3 never straddle relu's kink. */
static void away_from_zero(float *v, int64_t n, uint64_t stream)
{
    for (int64_t i = 0; i < n; i++) {
        float u = kl_rng_uniform(42, KL_RNG_TEST, stream, (uint64_t)i);
        v[i] = (i % 2 ? -1.0f : 1.0f) * (0.1f + 0.9f * u);
    }
}

static void test_grads(void)
{
    const int64_t batches[] = {1, 5};
    const float alpha = -1.5f, slope = 0.2f;
    char label[96];
    gc_opts o = gc_defaults();
    for (int i = 0; i < 2; i++) {
        int64_t n = batches[i];
        const kl_shape shapes[] = {KL_SHAPE(n, 7), KL_SHAPE(n, 3, 5)};
        for (int s = 0; s < 2; s++) {
            kl_shape sh = shapes[s];
            gc_leaf two[2] = {gc_in(sh), gc_in(sh)};
            two[1].lo = 0.5f; /* a second operand unlike the first */
            two[1].hi = 2.0f;
            gc_leaf one[1] = {gc_in(sh)};
            one[0].lo = -3; /* reach the tails of the activations */
            one[0].hi = 3;
#define GC(name, leaves, nl, fn, ctx)                                                      \
    do {                                                                                   \
        snprintf(label, sizeof label, "%s grad %d-D N=%lld", name, sh.ndim, (long long)n); \
        gradcheck_opts(label, leaves, nl, fn, ctx, &o);                                    \
    } while (0)
            GC("add", two, 2, build_add, NULL);
            GC("residual", two, 2, build_residual, NULL);
            GC("mul", two, 2, build_mul, NULL);
            GC("scale", one, 1, build_scale, (void *)&alpha);
            GC("gelu", one, 1, build_gelu, NULL);
            GC("tanh", one, 1, build_tanh, NULL);
            GC("sigmoid", one, 1, build_sigmoid, NULL);
            GC("softmax", one, 1, build_softmax, NULL);
            GC("sum", one, 1, build_sum, NULL);
            GC("scaled sum", one, 1, build_scaled_sum, NULL);

            float kinked[5 * 3 * 5];
            away_from_zero(kinked, kl_shape_numel(&sh), (uint64_t)(10 * i + s));
            gc_leaf k[1] = {gc_with_values(gc_in(sh), kinked)};
            GC("relu", k, 1, build_relu, NULL);
            GC("leaky_relu", k, 1, build_leaky, (void *)&slope);
#undef GC
        }
    }
    /* A sum of a weight: the gradient reaches a parameter too, and is 1 everywhere. */
    gc_leaf w[1] = {gc_w(KL_SHAPE(3, 5))};
    gradcheck("sum grad of a weight", w, 1, build_sum, NULL);
}

/* A graph running dropout(x, p) on a (rows, cols) input, compiled without a loss: forward only. */
typedef struct drop_graph {
    kl_graph *g;
    kl_node x, y;
} drop_graph;

static int drop_make(drop_graph *d, float p, int64_t rows, int64_t cols)
{
    kl_error err = {0};
    d->g = kl_graph_new();
    d->x = kl_input(d->g, "x", KL_F32, KL_SHAPE(cols));
    d->y = kl_dropout(d->g, d->x, p);
    kl_graph_mark_output(d->g, d->y);
    kl_status st = kl_graph_compile(d->g, rows, KL_NONE, 1, &err);
    CHECK_OK(st, &err);
    if (st != KL_OK)
        return -1;
    float *x = kl_f32(kl_graph_value(d->g, d->x));
    for (int64_t i = 0; i < rows * cols; i++)
        x[i] = 1.0f + (float)(i % 7); /* never 0, so a zero output is a dropped element */
    return 0;
}

static const float *drop_run_at(drop_graph *d, uint64_t seed, uint64_t step, int64_t first_row)
{
    kl_error err = {0};
    kl_graph_set_rng(d->g, seed, step, first_row);
    CHECK_OK(kl_graph_forward(d->g, &err), &err);
    return kl_f32(kl_graph_value(d->g, d->y));
}

static const float *drop_run(drop_graph *d, uint64_t seed, uint64_t step)
{
    return drop_run_at(d, seed, step, 0);
}

static void test_dropout(void)
{
    enum { ROWS = 4, COLS = 25000, N = ROWS * COLS };
    const float p = 0.3f;
    drop_graph d;
    if (drop_make(&d, p, ROWS, COLS) != 0) {
        kl_graph_free(d.g);
        return;
    }
    const float *x = kl_f32(kl_graph_value(d.g, d.x));
    float *first = malloc(N * sizeof *first);
    if (!CHECK(first != NULL)) {
        kl_graph_free(d.g);
        return;
    }

    /* Eval mode passes x through unchanged. */
    kl_graph_set_mode(d.g, KL_MODE_EVAL);
    const float *y = drop_run(&d, 5, 1);
    CHECK(memcmp(y, x, N * sizeof *y) == 0);

    /* Training zeroes about p of 1e5 elements (one standard deviation of the fraction is
     * sqrt(0.3 * 0.7 / 1e5) = 0.0014, so 0.01 is 7 of them) and scales the rest by 1/(1-p). */
    kl_graph_set_mode(d.g, KL_MODE_TRAIN);
    y = drop_run(&d, 5, 1);
    int64_t zeros = 0, bad_scale = 0;
    for (int64_t i = 0; i < N; i++) {
        if (y[i] == 0.0f)
            zeros++;
        else if (!(fabs(y[i] - x[i] / (1.0 - 0.3)) <= 1e-5 * x[i]))
            bad_scale++;
    }
    CHECK_NEAR((double)zeros / N, 0.3, 0.01);
    CHECK(bad_scale == 0);
    memcpy(first, y, N * sizeof *first);

    /* The same (seed, step) gives the same mask; another step or seed a different one (two
     * independent masks agree on an element with probability 0.58, so they differ on ~42%). */
    y = drop_run(&d, 5, 1);
    CHECK(memcmp(y, first, N * sizeof *y) == 0);
    y = drop_run(&d, 5, 2);
    int64_t differ = 0;
    for (int64_t i = 0; i < N; i++)
        differ += (y[i] == 0.0f) != (first[i] == 0.0f);
    CHECK_NEAR((double)differ / N, 2 * 0.3 * 0.7, 0.01);
    y = drop_run(&d, 6, 1);
    differ = 0;
    for (int64_t i = 0; i < N; i++)
        differ += (y[i] == 0.0f) != (first[i] == 0.0f);
    CHECK_NEAR((double)differ / N, 2 * 0.3 * 0.7, 0.01);

    /* Rows of the batch get different masks: row 1 is not a copy of row 0. */
    y = drop_run(&d, 5, 1);
    differ = 0;
    for (int64_t j = 0; j < COLS; j++)
        differ += (y[j] == 0.0f) != (y[COLS + j] == 0.0f);
    CHECK(differ > COLS / 4);

    /* A slice of the batch (a rank's share, a micro-batch) told where its rows start draws the
     * whole batch's masks for those rows. */
    y = drop_run(&d, 5, 1);
    memcpy(first, y, N * sizeof *first);
    kl_error err = {0};
    CHECK_OK(kl_graph_set_batch(d.g, 2, &err), &err);
    float *xs = kl_f32(kl_graph_value(d.g, d.x));
    for (int64_t i = 0; i < 2 * COLS; i++)
        xs[i] = 1.0f + (float)((2 * COLS + i) % 7);
    y = drop_run_at(&d, 5, 1, 2);
    CHECK(memcmp(y, first + 2 * COLS, 2 * COLS * sizeof *y) == 0);
    free(first);
    kl_graph_free(d.g);

    /* p = 0 keeps everything in training too. */
    if (drop_make(&d, 0.0f, 2, 5) == 0) {
        kl_graph_set_mode(d.g, KL_MODE_TRAIN);
        y = drop_run(&d, 5, 1);
        CHECK(memcmp(y, kl_f32(kl_graph_value(d.g, d.x)), 10 * sizeof *y) == 0);
    }
    kl_graph_free(d.g);
}

static void test_dropout_grads(void)
{
    const int64_t batches[] = {1, 5};
    const float ps[] = {0.5f, 0.2f};
    char label[96];
    for (int i = 0; i < 2; i++) {
        gc_leaf l[1] = {gc_in(KL_SHAPE(batches[i], 3, 7))};
        gc_opts o = gc_defaults();
        o.max_checks = 0;
        for (int m = 0; m < 2; m++) {
            o.mode = m ? KL_MODE_EVAL : KL_MODE_TRAIN;
            snprintf(label, sizeof label, "dropout(%.1f) grad N=%lld %s", (double)ps[i],
                     (long long)batches[i], m ? "eval" : "train");
            gradcheck_opts(label, l, 1, build_dropout, (void *)&ps[i], &o);
        }
    }
}

static void test_dropout_bad_p(void)
{
    const float bad[] = {1.0f, -0.1f, 1.5f, NAN};
    for (int i = 0; i < 4; i++) {
        kl_error err = {0};
        kl_graph *g = kl_graph_new();
        kl_node x = kl_input(g, "x", KL_F32, KL_SHAPE(3));
        kl_node y = kl_dropout(g, x, bad[i]);
        kl_status st = kl_graph_compile(g, 2, KL_NONE, 1, &err);
        if (!CHECK(y == KL_NONE && st == KL_EINVAL && strstr(err.msg, "dropout") != NULL))
            fprintf(stderr, "    p = %g: status %d, message '%s'\n", (double)bad[i], (int)st,
                    err.msg);
        kl_graph_free(g);
    }
}

static void test_shape_errors(void)
{
    kl_error err = {0};
    kl_graph *g = kl_graph_new();
    kl_node a = kl_input(g, "a", KL_F32, KL_SHAPE(3));
    kl_node b = kl_input(g, "b", KL_F32, KL_SHAPE(4));
    CHECK(kl_add(g, a, b) == KL_NONE);
    CHECK(kl_graph_compile(g, 2, KL_NONE, 1, &err) == KL_ESHAPE && strstr(err.msg, "add"));
    kl_graph_free(g);

    /* A batched (N, 3) and a (1, 3) weight differ in kind even when N is 1. */
    g = kl_graph_new();
    a = kl_input(g, "a", KL_F32, KL_SHAPE(3));
    b = kl_param(g, "w", KL_SHAPE(1, 3), (kl_init){KL_INIT_ZEROS, 0, 0}, 0);
    CHECK(kl_mul(g, a, b) == KL_NONE);
    CHECK(kl_graph_compile(g, 1, KL_NONE, 1, &err) == KL_ESHAPE && strstr(err.msg, "mul"));
    kl_graph_free(g);

    /* Integer inputs are not for arithmetic. */
    g = kl_graph_new();
    a = kl_input(g, "a", KL_I32, KL_SHAPE(3));
    CHECK(kl_relu(g, a) == KL_NONE);
    CHECK(kl_graph_compile(g, 1, KL_NONE, 1, &err) == KL_EINVAL && strstr(err.msg, "relu"));
    kl_graph_free(g);
}

static const check_case cases[] = {
    CHECK_CASE(test_binary_values),  CHECK_CASE(test_activation_values),
    CHECK_CASE(test_softmax_values), CHECK_CASE(test_sum_values),
    CHECK_CASE(test_grads),          CHECK_CASE(test_dropout),
    CHECK_CASE(test_dropout_grads),  CHECK_CASE(test_dropout_bad_p),
    CHECK_CASE(test_shape_errors),
};

int main(int argc, char **argv)
{
    return check_run("test_ops_elementwise", cases, CHECK_NCASES(cases), argc, argv);
}
