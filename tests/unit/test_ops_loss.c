/* Tests for ops/cpu/loss.c: softmax_xent and mse against values worked out by hand (with and
 * without label smoothing, over the run-time batch), their gradients by finite differences, and
 * the errors a user can meet: a label out of range, bad smoothing, shapes that do not fit. */
#include <math.h>
#include <string.h>

#include "check.h"
#include "gradcheck.h"
#include "kiln/graph.h"

#define TOL 1e-5

/* A per-sample shape of no dimensions: one scalar (a label) per sample. */
static const kl_shape SCALAR = {.ndim = 0};

/* A graph computing softmax_xent of (3) logits and a label per sample, compiled at max_batch with
 * d(loss)/d(logits) requested. */
typedef struct xent_graph {
    kl_graph *g;
    kl_node logits, labels, loss;
} xent_graph;

static int xent_graph_make(xent_graph *t, int64_t classes, int64_t max_batch, float smoothing)
{
    kl_error err = {0};
    t->g = kl_graph_new();
    t->logits = kl_input(t->g, "logits", KL_F32, KL_SHAPE(classes));
    t->labels = kl_input(t->g, "labels", KL_I32, SCALAR);
    kl_graph_require_grad(t->g, t->logits);
    t->loss = kl_softmax_xent(t->g, t->logits, t->labels, smoothing);
    kl_status st = kl_graph_compile(t->g, max_batch, t->loss, 1, &err);
    CHECK_OK(st, &err);
    return st == KL_OK ? 0 : -1;
}

static void xent_set(xent_graph *t, const float *logits, const int32_t *labels, int64_t n,
                     int64_t classes)
{
    memcpy(kl_graph_value(t->g, t->logits)->data, logits, (size_t)(n * classes) * sizeof(float));
    memcpy(kl_graph_value(t->g, t->labels)->data, labels, (size_t)n * sizeof(int32_t));
}

static float run_loss(kl_graph *g, kl_node loss)
{
    kl_error err = {0};
    CHECK_OK(kl_graph_forward(g, &err), &err);
    return kl_f32(kl_graph_value(g, loss))[0];
}

/* Rows of e^x = (1, 2, 3) have softmax (1/6, 1/3, 1/2). */
static void test_xent_values(void)
{
    const float l2 = logf(2.0f), l3 = logf(3.0f);
    const float logits[] = {0, l2, l3, 0, l2, l3, l3, l2, 0};
    const int32_t labels[] = {2, 0, 1};
    xent_graph t;
    kl_error err = {0};
    if (xent_graph_make(&t, 3, 3, 0.0f) != 0) {
        kl_graph_free(t.g);
        return;
    }
    CHECK(!kl_graph_batched(t.g, t.loss));
    CHECK(kl_graph_shape(t.g, t.loss).ndim == 1 && kl_graph_shape(t.g, t.loss).d[0] == 1);
    xent_set(&t, logits, labels, 3, 3);
    /* Row 0, label 2: -ln(3/6) = ln 2. Row 1, label 0: -ln(1/6) = ln 6. Row 2 is (3, 2, 1) / 6
     * with label 1: -ln(2/6) = ln 3. Mean: (ln 2 + ln 6 + ln 3) / 3 = ln 36 / 3 = 1.1945063. */
    CHECK_NEAR(run_loss(t.g, t.loss), log(36.0) / 3, TOL);

    /* The mean is over the batch being run: on the first two rows, (ln 2 + ln 6) / 2 = ln 12 / 2
     * = 1.2424533, not divided by the compiled 3. */
    CHECK_OK(kl_graph_set_batch(t.g, 2, &err), &err);
    CHECK_NEAR(run_loss(t.g, t.loss), log(12.0) / 2, TOL);

    /* d/dx = (p - onehot) / N with N = 2: row 0 (1/6, 1/3, 1/2 - 1) / 2 = (1/12, 1/6, -1/4),
     * row 1 (1/6 - 1, 1/3, 1/2) / 2 = (-5/12, 1/6, 1/4). */
    CHECK_OK(kl_graph_backward(t.g, &err), &err);
    const float *d = kl_f32(kl_graph_grad(t.g, t.logits));
    const double want[] = {1.0 / 12, 1.0 / 6, -1.0 / 4, -5.0 / 12, 1.0 / 6, 1.0 / 4};
    for (int i = 0; i < 6; i++)
        CHECK_NEAR(d[i], want[i], TOL);
    kl_graph_free(t.g);
}

/* PyTorch's smoothing: q = (1 - s) onehot + s / C. With s = 0.3 and C = 3, q is 0.8 on the label
 * and 0.1 elsewhere, and -sum q log p = 0.7 (-ln p_label) + 0.1 (ln 6 + ln 3 + ln 2). */
static void test_xent_smoothing_values(void)
{
    const float l2 = logf(2.0f), l3 = logf(3.0f);
    const float logits[] = {0, l2, l3, 0, l2, l3};
    const int32_t labels[] = {2, 0};
    xent_graph t;
    kl_error err = {0};
    if (xent_graph_make(&t, 3, 2, 0.3f) != 0) {
        kl_graph_free(t.g);
        return;
    }
    xent_set(&t, logits, labels, 2, 3);
    /* Row 0: 0.7 ln 2 + 0.1 ln 36 = 0.8435549; row 1: 0.7 ln 6 + 0.1 ln 36 = 1.6125835;
     * mean 1.2280692. */
    double r0 = 0.7 * log(2.0) + 0.1 * log(36.0), r1 = 0.7 * log(6.0) + 0.1 * log(36.0);
    CHECK_NEAR(run_loss(t.g, t.loss), (r0 + r1) / 2, TOL);
    CHECK_NEAR((r0 + r1) / 2, 1.2280692, 1e-7);

    /* d/dx = (p - q) / 2: row 0 (1/6 - 0.1, 1/3 - 0.1, 1/2 - 0.8) / 2, row 1 (1/6 - 0.8,
     * 1/3 - 0.1, 1/2 - 0.1) / 2. */
    CHECK_OK(kl_graph_backward(t.g, &err), &err);
    const float *d = kl_f32(kl_graph_grad(t.g, t.logits));
    const double want[] = {(1.0 / 6 - 0.1) / 2, (1.0 / 3 - 0.1) / 2, (0.5 - 0.8) / 2,
                           (1.0 / 6 - 0.8) / 2, (1.0 / 3 - 0.1) / 2, (0.5 - 0.1) / 2};
    for (int i = 0; i < 6; i++)
        CHECK_NEAR(d[i], want[i], TOL);
    kl_graph_free(t.g);
}

/* Logits far apart must not overflow exp(): row (1000, 0, -1000) has log p = (0, -1000, -2000)
 * to float precision, so label 0 costs 0 and label 2 costs 2000; the mean is 1000. */
static void test_xent_stable(void)
{
    const float logits[] = {1000, 0, -1000, 1000, 0, -1000};
    const int32_t labels[] = {0, 2};
    xent_graph t;
    kl_error err = {0};
    if (xent_graph_make(&t, 3, 2, 0.0f) != 0) {
        kl_graph_free(t.g);
        return;
    }
    xent_set(&t, logits, labels, 2, 3);
    float loss = run_loss(t.g, t.loss);
    CHECK(isfinite(loss));
    CHECK_NEAR(loss, 1000.0, 1e-3);
    CHECK_OK(kl_graph_backward(t.g, &err), &err);
    const float *d = kl_f32(kl_graph_grad(t.g, t.logits));
    /* p = (1, 0, 0) on both rows: row 0 (label 0) gets 0, row 1 (label 2) gets (1, 0, -1) / 2. */
    const double want[] = {0, 0, 0, 0.5, 0, -0.5};
    for (int i = 0; i < 6; i++)
        CHECK_NEAR(d[i], want[i], TOL);
    kl_graph_free(t.g);
}

static kl_node build_xent(kl_graph *g, const kl_node *l, void *ctx)
{
    return kl_softmax_xent(g, l[0], l[1], *(const float *)ctx);
}

/* The loss used twice: backward must add into d(logits), not overwrite it. */
static kl_node build_xent_twice(kl_graph *g, const kl_node *l, void *ctx)
{
    float s = *(const float *)ctx;
    return kl_add(g, kl_softmax_xent(g, l[0], l[1], s), kl_softmax_xent(g, l[0], l[1], s));
}

static void test_xent_gradcheck(void)
{
    static const struct {
        int64_t n, c;
        float smoothing, range;
    } cases[] = {{5, 7, 0.0f, 1}, {1, 3, 0.0f, 1}, {4, 11, 0.2f, 3}, {3, 2, 0.5f, 2}, {9, 5, 0, 4}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char label[64];
        gc_leaf leaves[2] = {gc_in(KL_SHAPE(cases[i].n, cases[i].c)),
                             gc_int(KL_SHAPE(cases[i].n), (int)cases[i].c)};
        leaves[0].lo = -cases[i].range;
        leaves[0].hi = cases[i].range;
        snprintf(label, sizeof label, "softmax_xent (%lld, %lld) s=%g", (long long)cases[i].n,
                 (long long)cases[i].c, (double)cases[i].smoothing);
        gradcheck(label, leaves, 2, build_xent, (void *)&cases[i].smoothing);
    }
    float s = 0.1f;
    gc_leaf leaves[2] = {gc_in(KL_SHAPE(3, 4)), gc_int(KL_SHAPE(3), 4)};
    gradcheck("softmax_xent used twice accumulates", leaves, 2, build_xent_twice, &s);
}

static void test_xent_errors(void)
{
    kl_error err = {0};
    xent_graph t;
    if (xent_graph_make(&t, 10, 5, 0.0f) == 0) {
        float logits[50] = {0};
        int32_t labels[] = {0, 9, 3, 12, 1};
        xent_set(&t, logits, labels, 5, 10);
        CHECK(kl_graph_forward(t.g, &err) == KL_ERANGE);
        CHECK(strstr(err.msg, "softmax_xent") != NULL);
        CHECK(strstr(err.msg, "label 12 at row 3") != NULL);
        CHECK(strstr(err.msg, "[0, 10)") != NULL);
        labels[3] = 4;
        labels[0] = -1;
        xent_set(&t, logits, labels, 5, 10);
        CHECK(kl_graph_forward(t.g, &err) == KL_ERANGE);
        CHECK(strstr(err.msg, "label -1 at row 0") != NULL);
        /* Rows past the batch being run are not read. */
        labels[0] = 0;
        xent_set(&t, logits, labels, 5, 10);
        kl_i32(kl_graph_value(t.g, t.labels))[4] = 77;
        CHECK_OK(kl_graph_set_batch(t.g, 4, &err), &err);
        CHECK_OK(kl_graph_forward(t.g, &err), &err);
    }
    kl_graph_free(t.g);

    /* Smoothing must lie in [0, 1); the builder records the error and compile reports it. */
    const float bad_smoothing[] = {1.0f, -0.1f, NAN};
    for (int i = 0; i < 3; i++) {
        kl_graph *g = kl_graph_new();
        kl_node x = kl_input(g, "x", KL_F32, KL_SHAPE(4));
        kl_node y = kl_input(g, "y", KL_I32, SCALAR);
        kl_node loss = kl_softmax_xent(g, x, y, bad_smoothing[i]);
        CHECK(loss == KL_NONE);
        CHECK(kl_graph_compile(g, 2, loss, 1, &err) == KL_EINVAL);
        CHECK(strstr(err.msg, "softmax_xent") && strstr(err.msg, "smoothing"));
        kl_graph_free(g);
    }

    /* Labels must be i32 (N). */
    kl_graph *g = kl_graph_new();
    kl_node x = kl_input(g, "x", KL_F32, KL_SHAPE(4));
    kl_node yf = kl_input(g, "yf", KL_F32, SCALAR);
    CHECK(kl_softmax_xent(g, x, yf, 0.0f) == KL_NONE);
    CHECK(kl_graph_compile(g, 2, KL_NONE, 1, &err) == KL_EINVAL);
    CHECK(strstr(err.msg, "softmax_xent") && strstr(err.msg, "i32"));
    kl_graph_free(g);

    g = kl_graph_new();
    x = kl_input(g, "x", KL_F32, KL_SHAPE(4));
    kl_node y2 = kl_input(g, "y2", KL_I32, KL_SHAPE(2));
    CHECK(kl_softmax_xent(g, x, y2, 0.0f) == KL_NONE);
    CHECK(kl_graph_compile(g, 2, KL_NONE, 1, &err) == KL_ESHAPE);
    CHECK(strstr(err.msg, "softmax_xent") != NULL);
    kl_graph_free(g);
}

/* pred (1, 2, 3, 4) and target (0, 2, 5, 3), as a batch of 2 samples of 2: differences
 * (1, 0, -2, 1), squares (1, 0, 4, 1), mean 6 / 4 = 1.5. */
static void test_mse_values(void)
{
    kl_error err = {0};
    kl_graph *g = kl_graph_new();
    kl_node p = kl_input(g, "pred", KL_F32, KL_SHAPE(2));
    kl_node t = kl_input(g, "target", KL_F32, KL_SHAPE(2));
    kl_graph_require_grad(g, p);
    kl_graph_require_grad(g, t);
    kl_node loss = kl_mse(g, p, t);
    CHECK(!kl_graph_batched(g, loss));
    if (kl_graph_compile(g, 2, loss, 1, &err) != KL_OK) {
        CHECK_OK(KL_EINTERNAL, &err);
        kl_graph_free(g);
        return;
    }
    const float pv[] = {1, 2, 3, 4}, tv[] = {0, 2, 5, 3};
    memcpy(kl_graph_value(g, p)->data, pv, sizeof pv);
    memcpy(kl_graph_value(g, t)->data, tv, sizeof tv);
    CHECK_NEAR(run_loss(g, loss), 1.5, TOL);

    /* d/dp = 2 (p - t) / 4 = (0.5, 0, -1, 0.5); d/dt is its negative. */
    CHECK_OK(kl_graph_backward(g, &err), &err);
    const float *dp = kl_f32(kl_graph_grad(g, p)), *dt = kl_f32(kl_graph_grad(g, t));
    const double want[] = {0.5, 0, -1, 0.5};
    for (int i = 0; i < 4; i++) {
        CHECK_NEAR(dp[i], want[i], TOL);
        CHECK_NEAR(dt[i], -want[i], TOL);
    }

    /* On the first sample only: squares (1, 0), mean 0.5, not 1 / 4. */
    CHECK_OK(kl_graph_set_batch(g, 1, &err), &err);
    CHECK_NEAR(run_loss(g, loss), 0.5, TOL);
    kl_graph_free(g);
}

static kl_node build_mse(kl_graph *g, const kl_node *l, void *ctx)
{
    return kl_mse(g, l[0], l[1]);
}

static kl_node build_mse_twice(kl_graph *g, const kl_node *l, void *ctx)
{
    return kl_add(g, kl_mse(g, l[0], l[1]), kl_mse(g, l[1], l[0]));
}

static void test_mse_gradcheck(void)
{
    const kl_shape shapes[] = {KL_SHAPE(3, 5), KL_SHAPE(1, 7), KL_SHAPE(2, 3, 5),
                               KL_SHAPE(3, 2, 3, 3), KL_SHAPE(1, 1)};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        char label[64], sb[64];
        gc_leaf leaves[2] = {gc_in(shapes[i]), gc_in(shapes[i])};
        snprintf(label, sizeof label, "mse %s", kl_shape_str(&shapes[i], sb, sizeof sb));
        gradcheck(label, leaves, 2, build_mse, NULL);
    }
    /* A fixed target (a weight, not batched) against a weight prediction. */
    gc_leaf w[2] = {gc_w(KL_SHAPE(4, 3)), gc_w(KL_SHAPE(4, 3))};
    gradcheck("mse weights", w, 2, build_mse, NULL);
    /* Only the prediction needs a gradient: the target's din is NULL. */
    gc_leaf p[2] = {gc_in(KL_SHAPE(3, 4)), gc_in(KL_SHAPE(3, 4))};
    p[1].grad = false;
    gradcheck("mse target without gradient", p, 2, build_mse, NULL);
    gc_leaf two[2] = {gc_in(KL_SHAPE(2, 5)), gc_in(KL_SHAPE(2, 5))};
    gradcheck("mse used twice accumulates", two, 2, build_mse_twice, NULL);
}

static void test_mse_errors(void)
{
    kl_error err = {0};
    kl_graph *g = kl_graph_new();
    kl_node p = kl_input(g, "pred", KL_F32, KL_SHAPE(4));
    kl_node t = kl_input(g, "target", KL_F32, KL_SHAPE(5));
    kl_node loss = kl_mse(g, p, t);
    CHECK(loss == KL_NONE);
    CHECK(kl_graph_compile(g, 2, loss, 1, &err) == KL_ESHAPE);
    CHECK(strstr(err.msg, "mse") != NULL);
    kl_graph_free(g);

    /* A batched prediction against an unbatched target of the same per-sample size. */
    g = kl_graph_new();
    p = kl_input(g, "pred", KL_F32, KL_SHAPE(4));
    t = kl_param(g, "target", KL_SHAPE(1, 4), (kl_init){KL_INIT_ZEROS, 0, 0}, 0);
    CHECK(kl_mse(g, p, t) == KL_NONE);
    CHECK(kl_graph_compile(g, 1, KL_NONE, 1, &err) == KL_ESHAPE);
    CHECK(strstr(err.msg, "mse") != NULL);
    kl_graph_free(g);

    g = kl_graph_new();
    p = kl_input(g, "pred", KL_F32, KL_SHAPE(4));
    t = kl_input(g, "target", KL_I32, KL_SHAPE(4));
    CHECK(kl_mse(g, p, t) == KL_NONE);
    CHECK(kl_graph_compile(g, 1, KL_NONE, 1, &err) == KL_EINVAL);
    CHECK(strstr(err.msg, "mse") != NULL);
    kl_graph_free(g);
}

static const check_case cases[] = {
    CHECK_CASE(test_xent_values),   CHECK_CASE(test_xent_smoothing_values),
    CHECK_CASE(test_xent_stable),   CHECK_CASE(test_xent_gradcheck),
    CHECK_CASE(test_xent_errors),   CHECK_CASE(test_mse_values),
    CHECK_CASE(test_mse_gradcheck), CHECK_CASE(test_mse_errors),
};

int main(int argc, char **argv)
{
    return check_run("test_ops_loss", cases, CHECK_NCASES(cases), argc, argv);
}
