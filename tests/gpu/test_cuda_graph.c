/* A whole graph on a CUDA device (kl_graph_set_device) against the same graph on the CPU: the
 * same seed gives the same initial weights, and a few training steps of kl_step (Adam with
 * clipping; SGD with Nesterov momentum and weight decay) on the same batches keep the losses,
 * parameters, batchnorm's running statistics and the optimizer state within a tolerance; the
 * host copies (to_host / to_device) round-trip; eval mode, a smaller batch and a graph compiled
 * without its loss run; and the same steps run twice on the device give the same bits (what
 * bit-exact resume needs); the step kept on the device (staged inputs, statistics summed there)
 * gives the waiting forward's bits and sums; bf16 GEMMs stay within BF16_TOL of fp32; CUDA Graph
 * replay gives the eager launches' bits. Models: an
 * MLP with dropout and a small CNN with batchnorm and pooling.
 * `--refuse` (label unit, no device needed) checks that a device is refused with KL_EUNSUPPORTED
 * when none is visible; the rest exits 77 without a device. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kiln/graph.h"
#include "kiln/step.h"
#include "ops/cuda/cuda.h"

#define BATCH 16

typedef struct net {
    kl_graph *g;
    kl_node x, y, logits, loss;
} net;

static kl_init he(void)
{
    return (kl_init){KL_INIT_HE_UNIFORM, 0, 0};
}

static kl_node dense(kl_graph *g, kl_node x, const char *name, int64_t in, int64_t out)
{
    char w[32], b[32];
    snprintf(w, sizeof w, "%s.w", name);
    snprintf(b, sizeof b, "%s.b", name);
    return kl_linear(g, x, kl_param(g, w, (kl_shape){2, {out, in}}, he(), 0),
                     kl_param(g, b, (kl_shape){1, {out}}, he(), KL_PARAM_NO_DECAY));
}

static void make_mlp(net *n)
{
    kl_graph *g = n->g = kl_graph_new();
    n->x = kl_input(g, "x", KL_F32, (kl_shape){1, {20}});
    n->y = kl_input(g, "y", KL_I32, (kl_shape){0, {0}});
    kl_node h = kl_relu(g, dense(g, n->x, "fc1", 20, 32));
    h = kl_dropout(g, h, 0.25f);
    n->logits = dense(g, kl_gelu(g, dense(g, h, "fc2", 32, 16)), "fc3", 16, 5);
    n->loss = kl_softmax_xent(g, n->logits, n->y, 0.1f);
}

static void make_cnn(net *n)
{
    kl_graph *g = n->g = kl_graph_new();
    n->x = kl_input(g, "x", KL_F32, (kl_shape){3, {1, 8, 8}});
    n->y = kl_input(g, "y", KL_I32, (kl_shape){0, {0}});
    kl_node w = kl_param(g, "conv.w", (kl_shape){4, {4, 1, 3, 3}}, he(), 0);
    kl_node h = kl_conv2d(g, n->x, w, 1, 1);
    kl_shape c = {1, {4}};
    h = kl_batchnorm(g, h, kl_param(g, "bn.g", c, (kl_init){KL_INIT_ONES, 0, 0}, KL_PARAM_NO_DECAY),
                     kl_param(g, "bn.b", c, (kl_init){KL_INIT_ZEROS, 0, 0}, KL_PARAM_NO_DECAY),
                     kl_buffer(g, "bn.mean", c, (kl_init){KL_INIT_ZEROS, 0, 0}),
                     kl_buffer(g, "bn.var", c, (kl_init){KL_INIT_ONES, 0, 0}), 0.1f, 1e-5f);
    h = kl_max_pool2d(g, kl_relu(g, h), 2, 2, 0);
    n->logits = dense(g, kl_flatten(g, h), "fc", 4 * 4 * 4, 3);
    n->loss = kl_softmax_xent(g, n->logits, n->y, 0.0f);
}

static void compile(net *n, bool cuda, void (*make)(net *))
{
    kl_error err = {0};
    make(n);
    kl_graph_mark_output(n->g, n->logits);
    if (cuda)
        CHECK_OK(kl_graph_set_device(n->g, KL_DEVICE_CUDA, 0, &err), &err);
    CHECK_OK(kl_graph_compile(n->g, BATCH, n->loss, 42, &err), &err);
    CHECK(kl_graph_device(n->g) == (cuda ? KL_DEVICE_CUDA : KL_DEVICE_CPU));
}

/* A deterministic batch for step t: features in [-1, 1], labels in 0..classes-1. */
static void fill_batch(net *n, int64_t t, int64_t b, int classes)
{
    kl_tensor *x = kl_graph_value(n->g, n->x), *y = kl_graph_value(n->g, n->y);
    int64_t per = kl_numel(x) / b;
    for (int64_t i = 0; i < b * per; i++)
        kl_f32(x)[i] = (float)sin((double)(i * 7 + t * 13) * 0.37);
    for (int64_t i = 0; i < b; i++)
        ((int32_t *)y->data)[i] = (int32_t)((i * 3 + t) % classes);
}

static double max_rel(const float *a, const float *b, size_t n)
{
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]) / (1.0 + fabs((double)b[i]));
        if (!(d <= worst)) /* NaN counts as the worst */
            worst = isnan(d) ? INFINITY : d;
    }
    return worst;
}

/* Adam divides each update by the gradient's running RMS, so a gradient that is zero up to
 * rounding (where the two devices may disagree on its sign) would move its weight by about lr
 * on one device and the opposite way on the other; eps 1e-4 keeps such updates below
 * lr * 1e-3 while a real gradient still gets a full step. */
static kl_step_config adam_clip(void)
{
    kl_step_config c = {.optim = kl_optim_defaults(KL_OPTIM_ADAM),
                        .lr = {.kind = KL_LR_CONSTANT, .base_lr = 1e-2f},
                        .clip_norm = 1.0f,
                        .check_grads = true};
    c.optim.eps = 1e-4f;
    return c;
}

static kl_step_config sgd_nesterov(void)
{
    kl_step_config c = {.optim = kl_optim_defaults(KL_OPTIM_SGD),
                        .lr = {.kind = KL_LR_CONSTANT, .base_lr = 5e-2f}};
    c.optim.momentum = 0.9f;
    c.optim.nesterov = true;
    c.optim.weight_decay = 1e-3f;
    return c;
}

/* Runs steps on both graphs and compares as it goes; returns the device's final loss. */
static float train_both(net *cpu, net *dev, const kl_step_config *cfg, int steps, int classes,
                        double tol)
{
    kl_error err = {0};
    kl_step *sc = kl_step_new(cpu->g, cfg, &err), *sd = kl_step_new(dev->g, cfg, &err);
    CHECK(sc && sd);
    float ld = 0;
    for (int t = 0; sc && sd && t < steps; t++) {
        /* The last step runs a smaller batch on the same plan. */
        int64_t b = t == steps - 1 ? BATCH - 5 : BATCH;
        CHECK_OK(kl_graph_set_batch(cpu->g, b, &err), &err);
        CHECK_OK(kl_graph_set_batch(dev->g, b, &err), &err);
        fill_batch(cpu, t, b, classes);
        fill_batch(dev, t, b, classes);
        float lc = 0;
        kl_step_begin(sc);
        kl_step_begin(sd);
        CHECK_OK(kl_step_pass(sc, 7, t, 0, &lc, &err), &err);
        CHECK_OK(kl_step_pass(sd, 7, t, 0, &ld, &err), &err);
        CHECK_NEAR(ld, lc, tol * (1 + fabsf(lc)));
        const kl_tensor *oc = kl_graph_value(cpu->g, cpu->logits);
        const kl_tensor *od = kl_graph_value(dev->g, dev->logits);
        CHECK(od && kl_numel(od) == kl_numel(oc));
        if (od)
            CHECK(max_rel(kl_f32(od), kl_f32(oc), (size_t)kl_numel(oc)) <= tol);
        CHECK_OK(kl_graph_to_host(dev->g, KL_GRAPH_GRADS, &err), &err);
        size_t np = kl_graph_param_count(cpu->g);
        CHECK(max_rel(kl_graph_grads(dev->g), kl_graph_grads(cpu->g), np) <= tol);
        CHECK_OK(kl_step_end(sc, t, lc, &err), &err);
        CHECK_OK(kl_step_end(sd, t, ld, &err), &err);
    }
    if (sc && sd) {
        size_t np = kl_graph_param_count(cpu->g), nb = kl_graph_buffer_count(cpu->g);
        CHECK_OK(kl_graph_to_host(dev->g, KL_GRAPH_PARAMS | KL_GRAPH_BUFFERS, &err), &err);
        double dp = max_rel(kl_graph_params(dev->g), kl_graph_params(cpu->g), np);
        double db = max_rel(kl_graph_buffers(dev->g), kl_graph_buffers(cpu->g), nb);
        printf("  %d steps: params within %.3g, buffers within %.3g\n", steps, dp, db);
        CHECK(dp <= tol && db <= tol);
        CHECK_OK(kl_step_state_to_host(sd, &err), &err);
        kl_optim *oc = kl_step_optim(sc), *od = kl_step_optim(sd);
        CHECK(kl_optim_steps(od) == kl_optim_steps(oc) && kl_optim_steps(od) == steps);
        CHECK(kl_optim_state_size(od) == kl_optim_state_size(oc));
        CHECK(max_rel(kl_optim_state(od), kl_optim_state(oc), kl_optim_state_size(oc)) <= tol);
    }
    kl_step_free(sc);
    kl_step_free(sd);
    return ld;
}

/* GEMMs in another order and with FMAs (ops/cuda/README.md), over a few steps of Adam: the
 * per-op tolerances of test_cuda_ops grow a little with each update. */
#define TOL 1e-3

static void test_same_start(void)
{
    net c, d;
    kl_error err = {0};
    compile(&c, false, make_cnn);
    compile(&d, true, make_cnn);
    CHECK_OK(kl_graph_to_host(d.g, KL_GRAPH_PARAMS | KL_GRAPH_BUFFERS, &err), &err);
    size_t np = kl_graph_param_count(c.g), nb = kl_graph_buffer_count(c.g);
    CHECK(memcmp(kl_graph_params(d.g), kl_graph_params(c.g), np * sizeof(float)) == 0);
    CHECK(memcmp(kl_graph_buffers(d.g), kl_graph_buffers(c.g), nb * sizeof(float)) == 0);
    /* A round trip through the device keeps every bit, and to_device is what the device uses. */
    kl_graph_params(d.g)[0] = 0.5f;
    CHECK_OK(kl_graph_to_device(d.g, KL_GRAPH_PARAMS, &err), &err);
    kl_graph_params(d.g)[0] = 0.0f;
    CHECK_OK(kl_graph_to_host(d.g, KL_GRAPH_PARAMS, &err), &err);
    CHECK(kl_graph_params(d.g)[0] == 0.5f);
    /* Only inputs, outputs, the loss and parameters have host views on a device graph. */
    CHECK(kl_graph_value(d.g, d.x) && kl_graph_value(d.g, d.logits));
    CHECK(kl_graph_grad(d.g, d.logits) == NULL);
    kl_graph_free(c.g);
    kl_graph_free(d.g);
}

static void test_mlp_adam(void)
{
    net c, d;
    compile(&c, false, make_mlp);
    compile(&d, true, make_mlp);
    kl_step_config cfg = adam_clip();
    train_both(&c, &d, &cfg, 6, 5, TOL);
    kl_graph_free(c.g);
    kl_graph_free(d.g);
}

static void test_cnn_sgd(void)
{
    net c, d;
    compile(&c, false, make_cnn);
    compile(&d, true, make_cnn);
    kl_step_config cfg = sgd_nesterov();
    train_both(&c, &d, &cfg, 6, 3, TOL);
    /* Eval mode: batchnorm's running statistics, no dropout. */
    kl_error err = {0};
    kl_graph_set_mode(c.g, KL_MODE_EVAL);
    kl_graph_set_mode(d.g, KL_MODE_EVAL);
    fill_batch(&c, 99, kl_graph_batch(c.g), 3);
    fill_batch(&d, 99, kl_graph_batch(d.g), 3);
    CHECK_OK(kl_graph_forward(c.g, &err), &err);
    CHECK_OK(kl_graph_forward(d.g, &err), &err);
    const kl_tensor *oc = kl_graph_value(c.g, c.logits), *od = kl_graph_value(d.g, d.logits);
    CHECK(max_rel(kl_f32(od), kl_f32(oc), (size_t)kl_numel(oc)) <= TOL);
    kl_graph_free(c.g);
    kl_graph_free(d.g);
}

/* The same steps twice on the device: the same bits (deterministic kernels). */
static void test_device_repeats(void)
{
    net a, b, c;
    kl_error err = {0};
    compile(&c, false, make_cnn);
    compile(&a, true, make_cnn);
    compile(&b, true, make_cnn);
    kl_step_config cfg = adam_clip();
    float la = train_both(&c, &a, &cfg, 4, 3, TOL);
    float lb = train_both(&c, &b, &cfg, 4, 3, 1e30); /* c has moved on: compare a with b */
    CHECK(la == lb);
    CHECK_OK(kl_graph_to_host(a.g, KL_GRAPH_PARAMS | KL_GRAPH_BUFFERS, &err), &err);
    CHECK_OK(kl_graph_to_host(b.g, KL_GRAPH_PARAMS | KL_GRAPH_BUFFERS, &err), &err);
    size_t np = kl_graph_param_count(a.g), nb = kl_graph_buffer_count(a.g);
    CHECK(memcmp(kl_graph_params(a.g), kl_graph_params(b.g), np * sizeof(float)) == 0);
    CHECK(memcmp(kl_graph_buffers(a.g), kl_graph_buffers(b.g), nb * sizeof(float)) == 0);
    kl_graph_free(a.g);
    kl_graph_free(b.g);
    kl_graph_free(c.g);
}

/* The step kept on the device (kl_graph_keep_outputs: inputs through the two page-locked slots
 * and the copy stream, nothing waiting, the statistics summed there) against the waiting
 * forward on another device graph: the same weights bit for bit, and the same sums as the host
 * computes from the downloaded outputs (the same float losses summed in the same order: equal),
 * read in two parts; a non-finite loss is then found at the next read, naming its step. */
static void test_kept_step(void)
{
    net a, b;
    kl_error err = {0};
    compile(&a, true, make_mlp);
    compile(&b, true, make_mlp);
    kl_step_config cfg = sgd_nesterov();
    kl_step *sa = kl_step_new(a.g, &cfg, &err), *sb = kl_step_new(b.g, &cfg, &err);
    CHECK(sa && sb);
    CHECK_OK(kl_graph_keep_outputs(b.g, true, &err), &err);
    double want[3] = {0}, got[3] = {0}, part[3];
    int64_t bad = -1, first = -2;
    const int steps = 7;
    for (int t = 0; sa && sb && t < steps; t++) {
        int64_t n = t == steps - 1 ? BATCH - 5 : BATCH;
        CHECK_OK(kl_graph_set_batch(a.g, n, &err), &err);
        CHECK_OK(kl_graph_set_batch(b.g, n, &err), &err);
        fill_batch(&a, t, n, 5);
        fill_batch(&b, t, n, 5);
        float la = 0, lb = 1;
        kl_step_begin(sa);
        kl_step_begin(sb);
        CHECK_OK(kl_step_pass(sa, 7, t, 0, &la, &err), &err);
        CHECK_OK(kl_step_pass(sb, 7, t, 0, &lb, &err), &err);
        CHECK(lb == 0); /* not read: it stays on the device */
        CHECK_OK(kl_graph_stats_add(b.g, b.logits, b.y, t, &err), &err);
        const kl_tensor *o = kl_graph_value(a.g, a.logits), *y = kl_graph_value(a.g, a.y);
        want[0] += (double)la * (double)n;
        for (int64_t i = 0; i < n; i++) {
            const float *row = kl_f32(o) + i * 5;
            int64_t best = 0;
            for (int64_t j = 1; j < 5; j++)
                best = row[j] > row[best] ? j : best;
            want[1] += best == kl_i32(y)[i];
        }
        CHECK_OK(kl_step_end(sa, t, la, &err), &err);
        CHECK_OK(kl_step_end(sb, t, lb, &err), &err);
        if (t == 2 || t == steps - 1) {
            CHECK_OK(kl_graph_stats_take(b.g, part, &bad, &first, &err), &err);
            CHECK(bad == 0 && first == -1);
            for (int k = 0; k < 3; k++)
                got[k] += part[k];
        }
    }
    printf("  kept: loss sum %.9g (waiting: %.9g), hits %g (%g)\n", got[0], want[0], got[1],
           want[1]);
    CHECK(got[0] == want[0] && got[1] == want[1] && got[2] == 0);
    size_t np = kl_graph_param_count(a.g);
    CHECK_OK(kl_graph_to_host(a.g, KL_GRAPH_PARAMS, &err), &err);
    CHECK_OK(kl_graph_to_host(b.g, KL_GRAPH_PARAMS, &err), &err);
    CHECK(memcmp(kl_graph_params(a.g), kl_graph_params(b.g), np * sizeof(float)) == 0);
    /* A label out of range in step 9 (the device's softmax_xent makes that loss NaN, as
     * ops/cuda/README.md says): found at the read after step 10, naming step 9. */
    for (int t = 8; sb && t < 11; t++) {
        CHECK_OK(kl_graph_set_batch(b.g, BATCH, &err), &err);
        fill_batch(&b, t, BATCH, 5);
        if (t == 9)
            kl_i32(kl_graph_value(b.g, b.y))[3] = 99;
        float lb = 0;
        kl_step_begin(sb);
        CHECK_OK(kl_step_pass(sb, 7, t, 0, &lb, &err), &err);
        CHECK_OK(kl_graph_stats_add(b.g, b.logits, b.y, t, &err), &err);
        CHECK_OK(kl_step_end(sb, t, lb, &err), &err);
    }
    CHECK_OK(kl_graph_stats_take(b.g, part, &bad, &first, &err), &err);
    printf("  kept: %lld non-finite losses, the first at step %lld\n", (long long)bad,
           (long long)first);
    CHECK(bad >= 1 && first == 9);
    CHECK_OK(kl_graph_keep_outputs(b.g, false, &err), &err);
    kl_step_free(sa);
    kl_step_free(sb);
    kl_graph_free(a.g);
    kl_graph_free(b.g);
}

/* Runs steps t0..t1-1 of the kept step on n (SGD with Nesterov), the statistics summed on the
 * device; step `partial` runs a smaller batch. */
static void kept_steps(net *n, kl_step *s, int t0, int t1, int partial)
{
    kl_error err = {0};
    for (int t = t0; t < t1; t++) {
        int64_t b = t == partial ? BATCH - 5 : BATCH;
        float l = 0;
        CHECK_OK(kl_graph_set_batch(n->g, b, &err), &err);
        fill_batch(n, t, b, 3);
        kl_step_begin(s);
        CHECK_OK(kl_step_pass(s, 7, t, 0, &l, &err), &err);
        CHECK_OK(kl_graph_stats_add(n->g, n->logits, n->y, t, &err), &err);
        CHECK_OK(kl_step_end(s, t, l, &err), &err);
    }
}

/* CUDA Graphs (kl_graph_set_cuda_graph) against eager launches on the CNN (no dropout): after
 * the warm-up both parts replay, a partial batch in between runs eagerly, and the weights,
 * buffers and sums are the same bits; the MLP, with dropout, never captures. */
static void test_cuda_graph_replay(void)
{
    net a, b, d;
    kl_error err = {0};
    compile(&a, true, make_cnn);
    compile(&b, true, make_cnn);
    compile(&d, true, make_mlp);
    kl_step_config cfg = sgd_nesterov();
    kl_step *sa = kl_step_new(a.g, &cfg, &err), *sb = kl_step_new(b.g, &cfg, &err);
    kl_step *sd = kl_step_new(d.g, &cfg, &err);
    CHECK(sa && sb && sd);
    CHECK_OK(kl_graph_set_cuda_graph(a.g, true, &err), &err);
    CHECK_OK(kl_graph_set_cuda_graph(d.g, true, &err), &err);
    CHECK_OK(kl_graph_keep_outputs(a.g, true, &err), &err);
    CHECK_OK(kl_graph_keep_outputs(b.g, true, &err), &err);
    CHECK_OK(kl_graph_keep_outputs(d.g, true, &err), &err);
    if (sa && sb && sd) {
        kept_steps(&a, sa, 0, 10, 6);
        kept_steps(&b, sb, 0, 10, 6);
        for (int t = 0; t < 5; t++) {
            float l = 0;
            fill_batch(&d, t, BATCH, 5);
            kl_step_begin(sd);
            CHECK_OK(kl_step_pass(sd, 7, t, 0, &l, &err), &err);
            CHECK_OK(kl_step_end(sd, t, l, &err), &err);
        }
    }
    printf("  CUDA Graphs replaying: %d of 2 (eager graph: %d, with dropout: %d)\n",
           kl_graph_cuda_graphs(a.g), kl_graph_cuda_graphs(b.g), kl_graph_cuda_graphs(d.g));
    CHECK(kl_graph_cuda_graphs(a.g) == 2 && kl_graph_cuda_graphs(b.g) == 0 &&
          kl_graph_cuda_graphs(d.g) == 0);
    double sa3[3], sb3[3];
    int64_t bad = -1, first = -1;
    CHECK_OK(kl_graph_stats_take(a.g, sa3, &bad, &first, &err), &err);
    CHECK_OK(kl_graph_stats_take(b.g, sb3, &bad, &first, &err), &err);
    CHECK(memcmp(sa3, sb3, sizeof sa3) == 0);
    size_t np = kl_graph_param_count(a.g), nb = kl_graph_buffer_count(a.g);
    CHECK_OK(kl_graph_to_host(a.g, KL_GRAPH_PARAMS | KL_GRAPH_BUFFERS, &err), &err);
    CHECK_OK(kl_graph_to_host(b.g, KL_GRAPH_PARAMS | KL_GRAPH_BUFFERS, &err), &err);
    CHECK(memcmp(kl_graph_params(a.g), kl_graph_params(b.g), np * sizeof(float)) == 0);
    CHECK(memcmp(kl_graph_buffers(a.g), kl_graph_buffers(b.g), nb * sizeof(float)) == 0);
    kl_step_free(sa);
    kl_step_free(sb);
    kl_step_free(sd);
    kl_graph_free(a.g);
    kl_graph_free(b.g);
    kl_graph_free(d.g);
}

/* bf16 GEMMs (kl_graph_set_bf16) against fp32 on the device, the MLP and the CNN (whose conv2d
 * GEMMs are bf16 too), a few Adam steps from the same weights: bf16 keeps 8 bits of each input,
 * a relative rounding of 2^-9 per product; summed over the dot products of these small layers
 * and carried through 4 updates the losses stay within BF16_TOL relative, and the weights
 * within it too. */
#define BF16_TOL 3e-2
static void bf16_against_fp32(void (*make)(net *), int classes)
{
    net f, h;
    kl_error err = {0};
    compile(&f, true, make);
    compile(&h, true, make);
    CHECK_OK(kl_graph_set_bf16(h.g, true, &err), &err); /* the GEMMs read it as they launch */
    kl_step_config cfg = adam_clip();
    kl_step *sf = kl_step_new(f.g, &cfg, &err), *sh = kl_step_new(h.g, &cfg, &err);
    CHECK(sf && sh);
    double worst = 0;
    for (int t = 0; sf && sh && t < 4; t++) {
        fill_batch(&f, t, BATCH, classes);
        fill_batch(&h, t, BATCH, classes);
        float lf = 0, lh = 0;
        kl_step_begin(sf);
        kl_step_begin(sh);
        CHECK_OK(kl_step_pass(sf, 7, t, 0, &lf, &err), &err);
        CHECK_OK(kl_step_pass(sh, 7, t, 0, &lh, &err), &err);
        double d = fabs((double)lh - (double)lf) / (1.0 + fabs((double)lf));
        worst = d > worst || isnan(d) ? d : worst;
        CHECK_OK(kl_step_end(sf, t, lf, &err), &err);
        CHECK_OK(kl_step_end(sh, t, lh, &err), &err);
    }
    size_t np = kl_graph_param_count(f.g);
    CHECK_OK(kl_graph_to_host(f.g, KL_GRAPH_PARAMS, &err), &err);
    CHECK_OK(kl_graph_to_host(h.g, KL_GRAPH_PARAMS, &err), &err);
    double dp = max_rel(kl_graph_params(h.g), kl_graph_params(f.g), np);
    printf("  bf16: losses within %.3g of fp32's, params within %.3g (tolerance %g)\n", worst, dp,
           BF16_TOL);
    CHECK(worst <= BF16_TOL && dp <= BF16_TOL);
    /* Not the same bits: the GEMMs did round their inputs. */
    CHECK(memcmp(kl_graph_params(h.g), kl_graph_params(f.g), np * sizeof(float)) != 0);
    kl_step_free(sf);
    kl_step_free(sh);
    kl_graph_free(f.g);
    kl_graph_free(h.g);
}

static void test_bf16(void)
{
    bf16_against_fp32(make_mlp, 5);
    bf16_against_fp32(make_cnn, 3);
}

/* Compiled for inference (no loss, as kiln predict's graph): the loss node, which nothing
 * consumes, is still read back, as evaluation with labels needs. */
static void test_inference_graph(void)
{
    net c, d;
    kl_error err = {0};
    make_mlp(&c);
    make_mlp(&d);
    kl_graph_mark_output(c.g, c.logits);
    kl_graph_mark_output(d.g, d.logits);
    CHECK_OK(kl_graph_set_device(d.g, KL_DEVICE_CUDA, 0, &err), &err);
    CHECK_OK(kl_graph_compile(c.g, BATCH, KL_NONE, 42, &err), &err);
    CHECK_OK(kl_graph_compile(d.g, BATCH, KL_NONE, 42, &err), &err);
    kl_graph_set_mode(c.g, KL_MODE_EVAL);
    kl_graph_set_mode(d.g, KL_MODE_EVAL);
    fill_batch(&c, 3, BATCH, 5);
    fill_batch(&d, 3, BATCH, 5);
    CHECK_OK(kl_graph_forward(c.g, &err), &err);
    CHECK_OK(kl_graph_forward(d.g, &err), &err);
    const kl_tensor *lc = kl_graph_value(c.g, c.loss), *ld = kl_graph_value(d.g, d.loss);
    CHECK(ld != NULL);
    if (ld)
        CHECK_NEAR(kl_f32(ld)[0], kl_f32(lc)[0], TOL);
    const kl_tensor *oc = kl_graph_value(c.g, c.logits), *od = kl_graph_value(d.g, d.logits);
    CHECK(max_rel(kl_f32(od), kl_f32(oc), (size_t)kl_numel(oc)) <= TOL);
    kl_graph_free(c.g);
    kl_graph_free(d.g);
}

/* Without a device (this case runs where there is none): a clear KL_EUNSUPPORTED. */
static void test_refused(void)
{
    kl_error err = {0};
    kl_graph *g = kl_graph_new();
    kl_status st = kl_graph_set_device(g, KL_DEVICE_CUDA, 0, &err);
    CHECK(st == KL_EUNSUPPORTED);
    CHECK(strstr(err.msg, "no CUDA device is visible") != NULL);
    CHECK(kl_graph_device(g) == KL_DEVICE_CPU);
    /* bf16 is a GPU's: a CPU graph refuses it. */
    err = (kl_error){0};
    CHECK(kl_graph_set_bf16(g, true, &err) == KL_EUNSUPPORTED);
    CHECK(strstr(err.msg, "bf16") && strstr(err.msg, "CUDA device"));
    CHECK(kl_graph_set_bf16(g, false, &err) == KL_OK);
    kl_graph_free(g);
}

static const check_case device_cases[] = {
    CHECK_CASE(test_same_start),     CHECK_CASE(test_mlp_adam),          CHECK_CASE(test_cnn_sgd),
    CHECK_CASE(test_device_repeats), CHECK_CASE(test_inference_graph),   CHECK_CASE(test_kept_step),
    CHECK_CASE(test_bf16),           CHECK_CASE(test_cuda_graph_replay),
};

static const check_case refuse_cases[] = {
    CHECK_CASE(test_refused),
};

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--refuse") == 0) {
        if (kl__cuda_device_count() > 0) {
            printf("test_cuda_graph --refuse: a device is visible, nothing to refuse\n");
            return 77;
        }
        return check_run("test_cuda_graph", refuse_cases, CHECK_NCASES(refuse_cases), 1, argv);
    }
    if (kl__cuda_device_count() == 0) {
        printf("test_cuda_graph: no CUDA device, skipped\n");
        return 77;
    }
    return check_run("test_cuda_graph", device_cases, CHECK_NCASES(device_cases), argc, argv);
}
