/* Tests of the graph itself rather than of one op: the arena plan (values stay right although
 * buffers are shared), gradient-ready callbacks, accumulation, batch and mode changes,
 * initialisation by name, flat parameter views, and the errors a user can cause. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "gradcheck.h"
#include "kiln/graph.h"
#include "kiln/rng.h"

#define IN     7
#define H      9
#define OUT    3
#define LAYERS 4

typedef struct mlp {
    kl_graph *g;
    kl_node x, y, logits, loss, hidden[LAYERS];
    kl_node w[LAYERS + 1], b[LAYERS + 1];
} mlp;

/* How build_mlp compiles: without a loss, with it (trainable), or for inference only. */
enum { EVAL = 0, TRAIN = 1, INFER = 2 };

/* A deep narrow MLP with tanh: many short-lived buffers for the planner to share. */
static void build_mlp(mlp *m, int64_t batch, int how, uint64_t seed)
{
    kl_error err = {0};
    memset(m, 0, sizeof *m);
    m->g = kl_graph_new();
    m->x = kl_input(m->g, "x", KL_F32, KL_SHAPE(IN));
    kl_node h = m->x;
    for (int l = 0; l <= LAYERS; l++) {
        char wn[16], bn[16];
        int in = l ? H : IN, out = l == LAYERS ? OUT : H;
        snprintf(wn, sizeof wn, "w%d", l);
        snprintf(bn, sizeof bn, "b%d", l);
        m->w[l] = kl_param(m->g, wn, KL_SHAPE(out, in), (kl_init){KL_INIT_XAVIER_UNIFORM, 0, 0}, 0);
        m->b[l] = kl_param(m->g, bn, KL_SHAPE(out), (kl_init){KL_INIT_UNIFORM, -0.1f, 0.1f},
                           KL_PARAM_NO_DECAY);
        h = kl_linear(m->g, h, m->w[l], m->b[l]);
        if (l < LAYERS)
            m->hidden[l] = h = kl_tanh(m->g, h);
    }
    m->logits = h;
    m->y = kl_input(m->g, "y", KL_I32, (kl_shape){0});
    m->loss = kl_softmax_xent(m->g, m->logits, m->y, 0.0f);
    kl_graph_mark_output(m->g, m->logits);
    if (how == INFER)
        CHECK_OK(kl_graph_compile_inference(m->g, batch, seed, &err), &err);
    else
        CHECK_OK(kl_graph_compile(m->g, batch, how == TRAIN ? m->loss : KL_NONE, seed, &err), &err);
    kl_tensor *x = kl_graph_value(m->g, m->x), *y = kl_graph_value(m->g, m->y);
    kl_rng_fill_uniform(5, KL_RNG_TEST, 0, kl_f32(x), (size_t)kl_numel(x), -2, 2);
    for (int64_t i = 0; y->data && i < batch; i++)
        kl_i32(y)[i] = (int32_t)(i % OUT);
}

/* The same maths in plain loops, in double. */
static void reference_logits(mlp *m, int64_t batch, double *out)
{
    const float *x = kl_f32(kl_graph_value(m->g, m->x));
    double a[H > IN ? H : IN], z[H];
    for (int64_t n = 0; n < batch; n++) {
        int width = IN;
        for (int k = 0; k < IN; k++)
            a[k] = x[n * IN + k];
        for (int l = 0; l <= LAYERS; l++) {
            const float *w = kl_f32(kl_graph_value(m->g, m->w[l]));
            const float *b = kl_f32(kl_graph_value(m->g, m->b[l]));
            int outw = l == LAYERS ? OUT : H;
            for (int j = 0; j < outw; j++) {
                z[j] = b[j];
                for (int k = 0; k < width; k++)
                    z[j] += (double)w[j * width + k] * a[k];
            }
            for (int j = 0; j < outw; j++)
                a[j] = l == LAYERS ? z[j] : tanh(z[j]);
            width = outw;
        }
        for (int j = 0; j < OUT; j++)
            out[n * OUT + j] = a[j];
    }
}

static void test_plan_values(void)
{
    kl_error err = {0};
    for (int train = 0; train <= 1; train++) {
        mlp m;
        double ref[5 * OUT];
        build_mlp(&m, 5, train ? TRAIN : EVAL, 11);
        CHECK(kl_graph_arena_bytes(m.g) < kl_graph_arena_unplanned_bytes(m.g));
        CHECK_OK(kl_graph_forward(m.g, &err), &err);
        reference_logits(&m, 5, ref);
        float before[5 * OUT];
        memcpy(before, kl_f32(kl_graph_value(m.g, m.logits)), sizeof before);
        for (int i = 0; i < 5 * OUT; i++)
            CHECK_NEAR(before[i], ref[i], 1e-5);
        if (train) {
            /* Outputs stay readable after backward although the arena is reused. */
            float loss = kl_f32(kl_graph_value(m.g, m.loss))[0];
            CHECK_OK(kl_graph_backward(m.g, &err), &err);
            CHECK(memcmp(before, kl_f32(kl_graph_value(m.g, m.logits)), sizeof before) == 0);
            CHECK(loss == kl_f32(kl_graph_value(m.g, m.loss))[0]);
            CHECK(loss > 0.1f);
        }
        kl_graph_free(m.g);
    }
}

/* Inference shares more than training: activations die as soon as their consumer ran. */
static void test_plan_sizes(void)
{
    mlp inf, tr;
    build_mlp(&inf, 64, EVAL, 1);
    build_mlp(&tr, 64, TRAIN, 1);
    size_t act = 64 * H * sizeof(float);
    CHECK(kl_graph_arena_bytes(inf.g) <= 4 * act);
    CHECK(kl_graph_arena_bytes(tr.g) < kl_graph_arena_unplanned_bytes(tr.g));
    CHECK(kl_graph_arena_bytes(inf.g) < kl_graph_arena_bytes(tr.g));
    kl_graph_free(inf.g);
    kl_graph_free(tr.g);
}

/* An inference-only graph computes the training graph's outputs bit for bit, at the full batch
 * and a smaller one, in a smaller arena than either compile with the loss, and has no loss,
 * labels or gradients. */
static void test_inference_graph(void)
{
    kl_error err = {0};
    mlp tr, ev, inf;
    build_mlp(&tr, 6, TRAIN, 7);
    build_mlp(&ev, 6, EVAL, 7);
    build_mlp(&inf, 6, INFER, 7);
    for (int64_t b = 6; b >= 3; b -= 3) {
        CHECK_OK(kl_graph_set_batch(tr.g, b, &err), &err);
        CHECK_OK(kl_graph_set_batch(inf.g, b, &err), &err);
        CHECK_OK(kl_graph_forward(tr.g, &err), &err);
        CHECK_OK(kl_graph_forward(inf.g, &err), &err);
        CHECK(memcmp(kl_f32(kl_graph_value(tr.g, tr.logits)),
                     kl_f32(kl_graph_value(inf.g, inf.logits)),
                     (size_t)(b * OUT) * sizeof(float)) == 0);
    }
    CHECK(kl_graph_arena_bytes(inf.g) < kl_graph_arena_bytes(ev.g));
    CHECK(kl_graph_arena_bytes(inf.g) < kl_graph_arena_bytes(tr.g));
    CHECK(kl_graph_value(inf.g, inf.loss)->data == NULL);
    CHECK(kl_graph_value(inf.g, inf.y)->data == NULL);
    CHECK(kl_graph_grads(inf.g) == NULL && kl_graph_grads(ev.g) != NULL);
    CHECK(kl_graph_backward(inf.g, &err) == KL_EINVAL);
    kl_graph_free(tr.g);
    kl_graph_free(ev.g);
    kl_graph_free(inf.g);

    /* Without a marked output there is nothing to compute. */
    kl_graph *g = kl_graph_new();
    kl_node x = kl_input(g, "x", KL_F32, KL_SHAPE(IN));
    kl_tanh(g, x);
    CHECK(kl_graph_compile_inference(g, 2, 1, &err) == KL_EINVAL);
    CHECK(strstr(err.msg, "kl_graph_mark_output") != NULL);
    kl_graph_free(g);
}

static kl_node deep_build(kl_graph *g, const kl_node *leaves, void *ctx)
{
    /* Multi-consumer nodes, an alias (reshape) and a concat: gradients of shared storage. */
    kl_node h = kl_tanh(g, kl_linear(g, leaves[0], leaves[1], KL_NONE));
    kl_node r = kl_reshape(g, h, KL_SHAPE(2, 3));
    kl_node f = kl_flatten(g, kl_sigmoid(g, r));
    kl_node both = kl_concat(g, (kl_node[]){h, f, kl_mul(g, h, f)}, 3, 1);
    return kl_linear(g, kl_add(g, kl_scale(g, both, 0.5f), kl_relu(g, both)), leaves[2], KL_NONE);
}

/* One node feeding the same op twice: the second gradient must add to the first, so neither may
 * overwrite its gradient as a fresh one. */
static kl_node twice_build(kl_graph *g, const kl_node *leaves, void *ctx)
{
    kl_node h = kl_tanh(g, leaves[0]);
    kl_node sq = kl_mul(g, h, h);
    kl_node m = kl_matmul(g, kl_add(g, sq, h), kl_add(g, h, h), true, false);
    return kl_sum(g, m);
}

static void test_deep_gradients(void)
{
    gc_leaf one[] = {gc_in(KL_SHAPE(3, 5))};
    gradcheck("a node used twice by one op", one, 1, twice_build, NULL);

    gc_leaf leaves[] = {gc_in(KL_SHAPE(3, 4)), gc_w(KL_SHAPE(6, 4)), gc_w(KL_SHAPE(2, 18))};
    gradcheck("deep graph with shared storage", leaves, 3, deep_build, NULL);
    leaves[0].shape.d[0] = 1;
    gradcheck("deep graph, batch 1", leaves, 3, deep_build, NULL);
}

typedef struct ready_log {
    kl_graph *g;
    int order[2 * (LAYERS + 1)], n;
    float *snapshot;
} ready_log;

static void on_ready(void *ctx, int p)
{
    ready_log *r = ctx;
    const kl_param_info *info = kl_graph_param(r->g, p);
    r->order[r->n++] = p;
    memcpy(r->snapshot + info->offset, kl_graph_grads(r->g) + info->offset,
           info->numel * sizeof(float));
}

/* Each gradient is announced once, last layer first, and is already final when announced. */
static void test_grad_ready(void)
{
    kl_error err = {0};
    mlp m;
    build_mlp(&m, 4, TRAIN, 3);
    ready_log r = {.g = m.g, .snapshot = calloc(kl_graph_param_count(m.g), sizeof(float))};
    kl_graph_on_grad_ready(m.g, on_ready, &r);
    kl_graph_zero_grad(m.g);
    CHECK_OK(kl_graph_forward(m.g, &err), &err);
    CHECK_OK(kl_graph_backward(m.g, &err), &err);
    CHECK(r.n == kl_graph_num_params(m.g));
    int seen[2 * (LAYERS + 1)] = {0};
    for (int i = 0; i < r.n; i++)
        seen[r.order[i]]++;
    for (int p = 0; p < kl_graph_num_params(m.g); p++)
        CHECK(seen[p] == 1);
    /* Params are created w0, b0, w1, b1...: the last layer's (8, 9) come first. */
    CHECK(r.order[0] >= 2 * LAYERS && r.order[1] >= 2 * LAYERS);
    CHECK(r.order[r.n - 1] <= 1);
    CHECK(memcmp(r.snapshot, kl_graph_grads(m.g), kl_graph_param_count(m.g) * sizeof(float)) == 0);
    free(r.snapshot);
    kl_graph_free(m.g);
}

/* Backward adds: two forward-backward passes without zeroing give twice the gradient. */
static void test_accumulate(void)
{
    kl_error err = {0};
    mlp m;
    build_mlp(&m, 4, TRAIN, 3);
    size_t n = kl_graph_param_count(m.g);
    float *once = malloc(n * sizeof *once);
    kl_graph_zero_grad(m.g);
    CHECK_OK(kl_graph_forward(m.g, &err), &err);
    CHECK_OK(kl_graph_backward(m.g, &err), &err);
    memcpy(once, kl_graph_grads(m.g), n * sizeof *once);
    CHECK_OK(kl_graph_forward(m.g, &err), &err);
    CHECK_OK(kl_graph_backward(m.g, &err), &err);
    int bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += fabsf(kl_graph_grads(m.g)[i] - 2 * once[i]) > 1e-6f * (1 + fabsf(once[i]));
    CHECK(bad == 0);
    kl_graph_zero_grad(m.g);
    CHECK(kl_graph_grads(m.g)[0] == 0.0f && kl_graph_grads(m.g)[n - 1] == 0.0f);
    free(once);
    kl_graph_free(m.g);
}

/* A smaller batch on the same plan gives the same per-sample results. */
static void test_set_batch(void)
{
    kl_error err = {0};
    mlp m;
    build_mlp(&m, 8, TRAIN, 9);
    CHECK_OK(kl_graph_forward(m.g, &err), &err);
    float full[8 * OUT];
    memcpy(full, kl_f32(kl_graph_value(m.g, m.logits)), sizeof full);
    CHECK_OK(kl_graph_set_batch(m.g, 3, &err), &err);
    CHECK(kl_graph_value(m.g, m.logits)->shape.d[0] == 3);
    CHECK(kl_graph_batch(m.g) == 3 && kl_graph_max_batch(m.g) == 8);
    CHECK_OK(kl_graph_forward(m.g, &err), &err);
    for (int i = 0; i < 3 * OUT; i++) /* BLAS may block a 3-row product differently */
        CHECK_NEAR(full[i], kl_f32(kl_graph_value(m.g, m.logits))[i], 1e-6);
    CHECK_OK(kl_graph_backward(m.g, &err), &err);
    CHECK(kl_graph_set_batch(m.g, 9, &err) == KL_EINVAL && strstr(err.msg, "1..8"));
    CHECK(kl_graph_set_batch(m.g, 0, &err) == KL_EINVAL);
    kl_graph_free(m.g);
}

/* Dropout acts in training only; eval mode is deterministic whatever the step. */
static void test_modes(void)
{
    kl_error err = {0};
    kl_graph *g = kl_graph_new();
    kl_node x = kl_input(g, "x", KL_F32, KL_SHAPE(100));
    kl_node d = kl_dropout(g, x, 0.5f);
    kl_graph_mark_output(g, d);
    CHECK_OK(kl_graph_compile(g, 2, KL_NONE, 1, &err), &err);
    kl_tensor *xv = kl_graph_value(g, x);
    for (int i = 0; i < 200; i++)
        kl_f32(xv)[i] = 1.0f;
    kl_graph_set_mode(g, KL_MODE_EVAL);
    CHECK_OK(kl_graph_forward(g, &err), &err);
    int same = 0, zeros = 0;
    for (int i = 0; i < 200; i++)
        same += kl_f32(kl_graph_value(g, d))[i] == 1.0f;
    CHECK(same == 200);
    kl_graph_set_mode(g, KL_MODE_TRAIN);
    CHECK_OK(kl_graph_forward(g, &err), &err);
    for (int i = 0; i < 200; i++)
        zeros += kl_f32(kl_graph_value(g, d))[i] == 0.0f;
    CHECK(zeros > 60 && zeros < 140);
    kl_graph_free(g);
}

/* Initial values follow (seed, parameter name): creation order does not matter. */
static void test_init_by_name(void)
{
    kl_error err = {0};
    kl_graph *a = kl_graph_new(), *b = kl_graph_new(), *c = kl_graph_new();
    kl_init he = {KL_INIT_HE_NORMAL, 0, 0};
    kl_param(a, "first", KL_SHAPE(4, 5), he, 0);
    kl_node a2 = kl_param(a, "second", KL_SHAPE(3, 5), he, 0);
    kl_node b2 = kl_param(b, "second", KL_SHAPE(3, 5), he, 0);
    kl_param(b, "first", KL_SHAPE(4, 5), he, 0);
    kl_node c2 = kl_param(c, "second", KL_SHAPE(3, 5), he, 0);
    kl_node sa = kl_sum(a, a2), sb = kl_sum(b, b2), sc = kl_sum(c, c2);
    CHECK_OK(kl_graph_compile(a, 1, sa, 42, &err), &err);
    CHECK_OK(kl_graph_compile(b, 1, sb, 42, &err), &err);
    CHECK_OK(kl_graph_compile(c, 1, sc, 43, &err), &err);
    CHECK(memcmp(kl_f32(kl_graph_value(a, a2)), kl_f32(kl_graph_value(b, b2)), 15 * 4) == 0);
    CHECK(memcmp(kl_f32(kl_graph_value(a, a2)), kl_f32(kl_graph_value(c, c2)), 15 * 4) != 0);
    /* He normal: std sqrt(2/5) ~ 0.63; 20 values are not all tiny. */
    float mx = 0;
    for (int i = 0; i < 20; i++)
        mx = fmaxf(mx, fabsf(kl_graph_params(a)[i]));
    CHECK(mx > 0.3f && mx < 4.0f);
    kl_graph_free(a);
    kl_graph_free(b);
    kl_graph_free(c);
}

static void test_flat_views(void)
{
    mlp m;
    build_mlp(&m, 2, TRAIN, 1);
    size_t total = 0;
    for (int p = 0; p < kl_graph_num_params(m.g); p++) {
        const kl_param_info *info = kl_graph_param(m.g, p);
        CHECK(info->offset == total);
        CHECK(info->numel == (size_t)kl_shape_numel(&info->shape));
        CHECK(kl_f32(kl_graph_value(m.g, info->node)) == kl_graph_params(m.g) + info->offset);
        CHECK(kl_f32(kl_graph_grad(m.g, info->node)) == kl_graph_grads(m.g) + info->offset);
        total += info->numel;
    }
    CHECK(total == kl_graph_param_count(m.g));
    CHECK(!strcmp(kl_graph_param(m.g, 1)->name, "b0"));
    CHECK(kl_graph_param(m.g, 1)->flags == KL_PARAM_NO_DECAY);
    CHECK(kl_graph_find(m.g, "w3") == m.w[3]);
    CHECK(kl_graph_find(m.g, "nope") == KL_NONE);
    CHECK(kl_graph_param(m.g, kl_graph_num_params(m.g)) == NULL);
    kl_graph_free(m.g);
}

static void test_errors(void)
{
    kl_error err = {0};
    kl_graph *g = kl_graph_new();
    kl_node x = kl_input(g, "x", KL_F32, KL_SHAPE(4));
    kl_node w = kl_param(g, "w", KL_SHAPE(3, 5), (kl_init){KL_INIT_ZEROS, 0, 0}, 0);
    kl_node bad = kl_linear(g, x, w, KL_NONE); /* 4 features into a (3, 5) weight */
    CHECK(bad == KL_NONE);
    CHECK(kl_relu(g, bad) == KL_NONE); /* the error passes through */
    CHECK(kl_graph_compile(g, 2, KL_NONE, 1, &err) == KL_ESHAPE);
    CHECK(strstr(err.msg, "linear") && strstr(err.msg, "[3, 5]"));
    kl_graph_free(g);

    g = kl_graph_new();
    kl_param(g, "w", KL_SHAPE(2), (kl_init){KL_INIT_ZEROS, 0, 0}, 0);
    kl_param(g, "w", KL_SHAPE(2), (kl_init){KL_INIT_ZEROS, 0, 0}, 0);
    CHECK(kl_graph_compile(g, 1, KL_NONE, 1, &err) == KL_EINVAL && strstr(err.msg, "'w'"));
    kl_graph_free(g);

    g = kl_graph_new();
    kl_input(g, "x", KL_F32, KL_SHAPE(0));
    CHECK(kl_graph_compile(g, 1, KL_NONE, 1, &err) == KL_ESHAPE && strstr(err.msg, "'x'"));
    kl_graph_free(g);

    g = kl_graph_new();
    x = kl_input(g, "x", KL_F32, KL_SHAPE(3));
    kl_node r = kl_relu(g, x);
    CHECK(kl_relu(g, 99) == KL_NONE);
    CHECK(kl_graph_compile(g, 1, r, 1, &err) != KL_OK && strstr(err.msg, "not a node"));
    kl_graph_free(g);

    g = kl_graph_new();
    x = kl_input(g, "x", KL_F32, KL_SHAPE(3));
    r = kl_relu(g, x);
    CHECK(kl_graph_compile(g, 2, r, 1, &err) == KL_EINVAL && strstr(err.msg, "scalar"));
    kl_graph_free(g);

    g = kl_graph_new();
    x = kl_input(g, "x", KL_F32, KL_SHAPE(3));
    r = kl_sum(g, kl_relu(g, x));
    CHECK(kl_graph_compile(g, 0, r, 1, &err) == KL_EINVAL);
    CHECK_OK(kl_graph_compile(g, 2, KL_NONE, 1, &err), &err);
    CHECK(kl_graph_compile(g, 2, KL_NONE, 1, &err) == KL_EINVAL);
    CHECK(kl_graph_backward(g, &err) == KL_EINVAL && strstr(err.msg, "loss"));
    CHECK(kl_relu(g, x) == KL_NONE); /* no nodes after compile */
    kl_graph_free(g);

    g = kl_graph_new();
    CHECK(kl_graph_forward(g, &err) == KL_EINVAL);
    CHECK(kl_graph_compile(g, 1, KL_NONE, 1, &err) == KL_EINVAL);
    kl_graph_free(g);
}

/* Sizes a model file or a config can ask for are refused at compile, before any allocation,
 * with KL_ESHAPE naming what is too large: a node whose shape at the batch size overflows, and
 * parameters or activations that fit one by one but not together. */
static void test_sizes_refused(void)
{
    kl_error err = {0};
    kl_graph *g = kl_graph_new();
    kl_node x = kl_input(g, "x", KL_F32, KL_SHAPE((int64_t)1 << 40));
    kl_relu(g, x);
    CHECK(kl_graph_compile(g, (int64_t)1 << 30, KL_NONE, 1, &err) == KL_ESHAPE);
    CHECK(strstr(err.msg, "x") != NULL);
    kl_graph_free(g);

    g = kl_graph_new();
    for (int i = 0; i < 16; i++) { /* 2^60 floats each, 2^64 together */
        char name[8];
        snprintf(name, sizeof name, "w%d", i);
        kl_param(g, name, KL_SHAPE((int64_t)1 << 30, (int64_t)1 << 30),
                 (kl_init){KL_INIT_ZEROS, 0, 0}, 0);
    }
    CHECK(kl_graph_compile(g, 1, KL_NONE, 1, &err) == KL_ESHAPE);
    CHECK(strstr(err.msg, "parameters and buffers") != NULL);
    kl_graph_free(g);

    g = kl_graph_new();
    kl_node h = kl_input(g, "x", KL_F32, KL_SHAPE((int64_t)1 << 28));
    for (int i = 0; i < 64; i++) /* 2^58 floats each at batch 2^30, 2^64 together */
        h = kl_scale(g, h, 2.0f);
    CHECK(kl_graph_compile(g, (int64_t)1 << 30, KL_NONE, 1, &err) == KL_ESHAPE);
    CHECK(strstr(err.msg, "activations") != NULL);
    kl_graph_free(g);
}

/* Devices: the CPU is the default and always accepted; CUDA is refused with KL_EUNSUPPORTED in a
 * build without it or where no GPU is visible (CI), saying which; a compiled graph keeps its
 * device, and on the CPU the host copies are the buffers themselves (to_host does nothing). */
static void test_devices(void)
{
    kl_error err = {0};
    kl_graph *g = kl_graph_new();
    CHECK(kl_graph_device(g) == KL_DEVICE_CPU);
    CHECK_OK(kl_graph_set_device(g, KL_DEVICE_CPU, 0, &err), &err);
    kl_status st = kl_graph_set_device(g, KL_DEVICE_CUDA, 0, &err);
    if (st != KL_OK) {
        CHECK(st == KL_EUNSUPPORTED);
        CHECK(strstr(err.msg, "no CUDA support") || strstr(err.msg, "no CUDA device is visible"));
        CHECK(kl_graph_device(g) == KL_DEVICE_CPU);
    }
    CHECK_OK(kl_graph_set_device(g, KL_DEVICE_CPU, 0, &err), &err);
    kl_node x = kl_input(g, "x", KL_F32, (kl_shape){1, {3}});
    kl_node w = kl_param(g, "w", (kl_shape){2, {2, 3}}, (kl_init){KL_INIT_ONES, 0, 0}, 0);
    kl_node out = kl_linear(g, x, w, KL_NONE);
    CHECK(kl_graph_to_host(g, KL_GRAPH_PARAMS, &err) == KL_EINVAL); /* not compiled */
    CHECK_OK(kl_graph_compile(g, 2, KL_NONE, 1, &err), &err);
    CHECK(kl_graph_set_device(g, KL_DEVICE_CUDA, 0, &err) == KL_EINVAL);
    CHECK(strstr(err.msg, "before kl_graph_compile") != NULL);
    kl_graph_params(g)[0] = 2.0f;
    CHECK_OK(kl_graph_to_host(g, KL_GRAPH_PARAMS | KL_GRAPH_GRADS | KL_GRAPH_BUFFERS, &err), &err);
    CHECK_OK(kl_graph_to_device(g, KL_GRAPH_PARAMS, &err), &err);
    CHECK(kl_graph_params(g)[0] == 2.0f);
    CHECK(kl_graph_stream(g) == NULL && kl_graph_device_grads(g) == NULL);
    float *xv = kl_f32(kl_graph_value(g, x));
    for (int i = 0; i < 6; i++)
        xv[i] = 1.0f;
    CHECK_OK(kl_graph_forward(g, &err), &err);
    CHECK(kl_f32(kl_graph_value(g, out))[0] == 4.0f); /* 2 + 1 + 1 */
    kl_graph_free(g);
}

static const check_case cases[] = {
    CHECK_CASE(test_devices),         CHECK_CASE(test_plan_values),    CHECK_CASE(test_plan_sizes),
    CHECK_CASE(test_inference_graph), CHECK_CASE(test_deep_gradients), CHECK_CASE(test_grad_ready),
    CHECK_CASE(test_accumulate),      CHECK_CASE(test_set_batch),      CHECK_CASE(test_modes),
    CHECK_CASE(test_init_by_name),    CHECK_CASE(test_flat_views),     CHECK_CASE(test_errors),
    CHECK_CASE(test_sizes_refused),
};

int main(int argc, char **argv)
{
    return check_run("test_graph", cases, CHECK_NCASES(cases), argc, argv);
}
