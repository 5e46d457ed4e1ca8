/* ops/step.c, the training step every trainer runs: bit for bit the sequence it replaced (zero,
 * forward, backward, clip, update with weight-decay segments, dropout keyed by the step),
 * gradients adding up over passes, refused non-finite losses and gradients that leave the
 * weights untouched, and the schedule's rate. */
#include <math.h>
#include <string.h>

#include "check.h"
#include "kiln/step.h"

enum { BATCH = 8, IN = 5, HIDDEN = 16, CLASSES = 3 };

typedef struct net {
    kl_graph *g;
    kl_node x, y, loss;
} net;

/* A small classifier with dropout (so that the step's dropout stream matters), weight decay on
 * the weights and not on the biases, and a fixed batch in its inputs. */
static void net_make(net *n)
{
    kl_error err = {0};
    kl_init he = {KL_INIT_HE_UNIFORM, 0, 0}, zero = {KL_INIT_ZEROS, 0, 0};
    n->g = kl_graph_new();
    n->x = kl_input(n->g, "x", KL_F32, KL_SHAPE(IN));
    n->y = kl_input(n->g, "y", KL_I32, (kl_shape){0});
    kl_node w1 = kl_param(n->g, "w1", KL_SHAPE(HIDDEN, IN), he, 0);
    kl_node b1 = kl_param(n->g, "b1", KL_SHAPE(HIDDEN), zero, KL_PARAM_NO_DECAY);
    kl_node w2 = kl_param(n->g, "w2", KL_SHAPE(CLASSES, HIDDEN), he, 0);
    kl_node b2 = kl_param(n->g, "b2", KL_SHAPE(CLASSES), zero, KL_PARAM_NO_DECAY);
    kl_node h = kl_dropout(n->g, kl_relu(n->g, kl_linear(n->g, n->x, w1, b1)), 0.25f);
    n->loss = kl_softmax_xent(n->g, kl_linear(n->g, h, w2, b2), n->y, 0.0f);
    CHECK_OK(kl_graph_compile(n->g, BATCH, n->loss, 11, &err), &err);
    kl_graph_set_mode(n->g, KL_MODE_TRAIN);
    float *x = kl_f32(kl_graph_value(n->g, n->x));
    int32_t *y = kl_i32(kl_graph_value(n->g, n->y));
    for (int i = 0; i < BATCH * IN; i++)
        x[i] = sinf(0.7f * (float)i) * 2.0f;
    for (int i = 0; i < BATCH; i++)
        y[i] = i % CLASSES;
}

static kl_step_config config(void)
{
    kl_step_config c = {.optim = kl_optim_defaults(KL_OPTIM_SGD), .clip_norm = 0.5f};
    c.optim.momentum = 0.9f;
    c.optim.weight_decay = 0.01f;
    c.lr = (kl_lr_schedule){.kind = KL_LR_STEP, .base_lr = 0.1f, .step_size = 2, .gamma = 0.5f};
    return c;
}

static bool same_params(net *a, net *b)
{
    size_t n = kl_graph_param_count(a->g);
    return n == kl_graph_param_count(b->g) &&
           memcmp(kl_graph_params(a->g), kl_graph_params(b->g), n * sizeof(float)) == 0;
}

/* Five steps through kl_step against the sequence the trainers wrote out by hand. */
static void test_same_as_by_hand(void)
{
    kl_error err = {0};
    net a, b;
    net_make(&a);
    net_make(&b);
    kl_step_config c = config();
    kl_step *s = kl_step_new(a.g, &c, &err);
    kl_optim *opt = kl_optim_new(&c.optim, kl_graph_param_count(b.g), &err);
    int np = kl_graph_num_params(b.g);
    kl_optim_segment segs[4];
    for (int i = 0; i < np; i++) {
        const kl_param_info *p = kl_graph_param(b.g, i);
        segs[i] = (kl_optim_segment){p->offset, p->numel, !(p->flags & KL_PARAM_NO_DECAY)};
    }
    for (int64_t t = 0; t < 5; t++) {
        float loss = 0;
        kl_step_begin(s);
        CHECK_OK(kl_step_pass(s, 7, t, 0, &loss, &err), &err);
        CHECK_OK(kl_step_end(s, t, loss, &err), &err);

        kl_graph_zero_grad(b.g);
        kl_graph_set_rng(b.g, 7, (uint64_t)t, 0);
        CHECK_OK(kl_graph_forward(b.g, &err), &err);
        CHECK_OK(kl_graph_backward(b.g, &err), &err);
        CHECK(loss == kl_f32(kl_graph_value(b.g, b.loss))[0]);
        kl_clip_grad_norm(kl_graph_grads(b.g), kl_graph_param_count(b.g), c.clip_norm);
        kl_optim_step(opt, kl_graph_params(b.g), kl_graph_grads(b.g), kl_lr_at(&c.lr, t), segs, np);
        CHECK(same_params(&a, &b));
    }
    CHECK(kl_optim_steps(kl_step_optim(s)) == 5);
    CHECK(kl_step_lr(s, 4) == kl_lr_at(&c.lr, 4));
    kl_optim_free(opt);
    kl_step_free(s);
    kl_graph_free(a.g);
    kl_graph_free(b.g);
}

/* Passes between begin and end add their gradients: two passes give twice one pass's (to
 * rounding: a GEMM that adds into its output sums in another order). */
static void test_passes_add_up(void)
{
    kl_error err = {0};
    net a;
    net_make(&a);
    kl_step_config c = config();
    kl_step *s = kl_step_new(a.g, &c, &err);
    size_t n = kl_graph_param_count(a.g);
    float once[256], loss = 0;
    CHECK(n <= 256);
    kl_step_begin(s);
    CHECK_OK(kl_step_pass(s, 7, 0, 0, &loss, &err), &err);
    memcpy(once, kl_graph_grads(a.g), n * sizeof(float));
    CHECK_OK(kl_step_pass(s, 7, 0, 0, &loss, &err), &err);
    bool twice = true;
    for (size_t i = 0; i < n; i++)
        twice = twice && fabsf(kl_graph_grads(a.g)[i] - 2.0f * once[i]) <= 1e-5f * fabsf(once[i]);
    CHECK(twice);
    kl_step_begin(s);
    bool zeroed = true;
    for (size_t i = 0; i < n; i++)
        zeroed = zeroed && kl_graph_grads(a.g)[i] == 0.0f;
    CHECK(zeroed);
    kl_step_free(s);
    kl_graph_free(a.g);
}

/* A loss, or with check_grads a gradient, that is not finite is refused and the weights stay. */
static void test_refuses_non_finite(void)
{
    kl_error err = {0};
    net a;
    net_make(&a);
    kl_step_config c = config();
    c.clip_norm = 0;
    c.check_grads = true;
    kl_step *s = kl_step_new(a.g, &c, &err);
    size_t n = kl_graph_param_count(a.g);
    float before[256], loss = 0;
    memcpy(before, kl_graph_params(a.g), n * sizeof(float));
    kl_step_begin(s);
    CHECK_OK(kl_step_pass(s, 7, 0, 0, &loss, &err), &err);
    CHECK(kl_step_end(s, 0, NAN, &err) == KL_ERANGE && strstr(err.msg, "loss is nan"));
    CHECK(kl_step_end(s, 0, INFINITY, &err) == KL_ERANGE);
    kl_graph_grads(a.g)[3] = INFINITY;
    CHECK(kl_step_end(s, 0, loss, &err) == KL_ERANGE && strstr(err.msg, "gradient norm"));
    CHECK(memcmp(before, kl_graph_params(a.g), n * sizeof(float)) == 0);
    CHECK(kl_optim_steps(kl_step_optim(s)) == 0);
    kl_step_free(s);

    /* Without check_grads the gradients are not measured: the update is taken. */
    c.check_grads = false;
    s = kl_step_new(a.g, &c, &err);
    kl_step_begin(s);
    CHECK_OK(kl_step_pass(s, 7, 0, 0, &loss, &err), &err);
    kl_graph_grads(a.g)[3] = INFINITY;
    CHECK_OK(kl_step_end(s, 0, loss, &err), &err);
    CHECK(isinf(kl_graph_params(a.g)[3]));
    kl_step_free(s);
    kl_graph_free(a.g);
}

static void test_refuses_bad_optimizer(void)
{
    kl_error err = {0};
    net a;
    net_make(&a);
    kl_step_config c = config();
    c.optim.momentum = 2.0f;
    CHECK(kl_step_new(a.g, &c, &err) == NULL && err.status == KL_EINVAL);
    CHECK(strstr(err.msg, "momentum") != NULL);
    kl_step_free(NULL);
    kl_graph_free(a.g);
}

static const check_case cases[] = {
    CHECK_CASE(test_same_as_by_hand),
    CHECK_CASE(test_passes_add_up),
    CHECK_CASE(test_refuses_non_finite),
    CHECK_CASE(test_refuses_bad_optimizer),
};

int main(int argc, char **argv)
{
    return check_run("test_step", cases, CHECK_NCASES(cases), argc, argv);
}
