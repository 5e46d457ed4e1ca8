/* Tests for the thread pool of kiln's own loops (ops/par.h) and the kernels that run on it: the
 * partition covers the range once, on more than one thread; every parallel kernel (conv2d's
 * im2col and col2im, the pools, relu, bias_add), the gradient norm and the optimizer update give
 * the same bits on 1, 2 and 3 threads and on two runs at the same count, with sizes above the
 * kernels' thresholds so that the parallel path is the one taken. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "gradcheck.h"
#include "kiln/graph.h"
#include "kiln/optim.h"
#include "kiln/rng.h"
#include "kiln/step.h"
#include "ops/par.h"

/* kl__par_for: every element once, ranges on grain boundaries, more than one thread at work. */
#define MAX_RANGES 64
typedef struct cover_ctx {
    atomic_int *hits;
    int64_t grain;
    bool slow; /* each range sleeps, so that every worker surely claims one */
    atomic_int bad_edges;
    pthread_t who[MAX_RANGES];
    atomic_int nwho;
} cover_ctx;

static void cover_range(void *arg, int64_t lo, int64_t hi)
{
    cover_ctx *c = arg;
    if (lo % c->grain != 0)
        atomic_fetch_add(&c->bad_edges, 1);
    for (int64_t i = lo; i < hi; i++)
        atomic_fetch_add(&c->hits[i], 1);
    int k = atomic_fetch_add(&c->nwho, 1);
    if (k < MAX_RANGES)
        c->who[k] = pthread_self();
    if (c->slow)
        nanosleep(&(struct timespec){.tv_nsec = 2000000}, NULL);
}

/* Distinct threads among the first n ranges' runners. */
static int distinct_threads(const cover_ctx *c, int n)
{
    int distinct = 0;
    for (int a = 0; a < n && a < MAX_RANGES; a++) {
        bool seen = false;
        for (int b = 0; b < a; b++)
            seen |= pthread_equal(c->who[a], c->who[b]) != 0;
        distinct += !seen;
    }
    return distinct;
}

static void test_partition(void)
{
    const int64_t sizes[] = {1, 7, 1000, 4097, 100000};
    for (int threads = 1; threads <= 4; threads++) {
        kl_error err = {0};
        kl__par *p = NULL;
        CHECK_OK(kl__par_new(threads, &p, &err), &err);
        CHECK(kl__par_threads(p) == threads);
        for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
            int64_t n = sizes[s];
            cover_ctx c = {.hits = calloc((size_t)n, sizeof(atomic_int)), .grain = 64};
            if (!CHECK(c.hits != NULL))
                continue;
            for (int rep = 0; rep < 3; rep++) /* a loop after a loop: workers come back */
                kl__par_for(p, n, c.grain, 0, cover_range, &c);
            int wrong = 0;
            for (int64_t i = 0; i < n; i++)
                wrong += atomic_load(&c.hits[i]) != 3;
            CHECK(wrong == 0);
            CHECK(atomic_load(&c.bad_edges) == 0);
            /* One range per grain up to 4 per thread; one on a single thread or grain. */
            int64_t grains = (n + c.grain - 1) / c.grain;
            int64_t ranges =
                threads == 1 || grains == 1 ? 1 : (grains < 4 * threads ? grains : 4 * threads);
            CHECK(atomic_load(&c.nwho) == 3 * ranges);
            free(c.hits);
        }
        /* Ranges that take a while: every thread of the pool runs some. */
        atomic_int hits[4096];
        for (int i = 0; i < 4096; i++)
            atomic_init(&hits[i], 0);
        cover_ctx c = {.hits = hits, .grain = 64, .slow = true};
        kl__par_for(p, 4096, c.grain, 0, cover_range, &c);
        CHECK(distinct_threads(&c, atomic_load(&c.nwho)) == threads);
        kl__par_free(p);
    }
}

/* A loop below min_work runs on the caller alone. */
static void test_min_work(void)
{
    kl_error err = {0};
    kl__par *p = NULL;
    CHECK_OK(kl__par_new(2, &p, &err), &err);
    atomic_int hits[100];
    for (int i = 0; i < 100; i++)
        atomic_init(&hits[i], 0);
    cover_ctx c = {.hits = hits, .grain = 1};
    kl__par_for(p, 100, 1, 101, cover_range, &c);
    CHECK(atomic_load(&c.nwho) == 1);
    CHECK(pthread_equal(c.who[0], pthread_self()));
    kl__par_free(p);
}

/* The gradient norm's sum and the clip: the same bits on every thread count. */
static void test_sum_sq(void)
{
    size_t n = 1000003;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y), *z = malloc(n * sizeof *z);
    if (!CHECK(x && y && z))
        goto out;
    kl_rng_fill_uniform(5, KL_RNG_TEST, 1, x, n, -3, 3);
    memcpy(y, x, n * sizeof *x);
    float norm1 = kl_clip_grad_norm(y, n, 1.0f);
    double serial = 0; /* a plain sum agrees to rounding */
    for (size_t i = 0; i < n; i++)
        serial += (double)x[i] * x[i];
    CHECK_NEAR(norm1, sqrt(serial), 1e-6 * sqrt(serial));
    for (int threads = 2; threads <= 3; threads++) {
        kl_error err = {0};
        kl__par *p = NULL;
        CHECK_OK(kl__par_new(threads, &p, &err), &err);
        memcpy(z, x, n * sizeof *x);
        float norm = kl__clip_grad_norm(p, z, n, 1.0f);
        CHECK(memcmp(&norm, &norm1, sizeof norm) == 0);
        CHECK(memcmp(y, z, n * sizeof *y) == 0);
        kl__par_free(p);
    }
out:
    free(x);
    free(y);
    free(z);
}

/* Three optimizer steps on 1, 2 and 3 threads, with segments (decay on part of the range). */
static void test_optim(void)
{
    const kl_optim_kind kinds[] = {KL_OPTIM_SGD, KL_OPTIM_ADAM, KL_OPTIM_ADAMW};
    size_t n = 300007;
    float *ref = malloc(n * sizeof *ref), *p = malloc(n * sizeof *p), *g = malloc(n * sizeof *g);
    if (!CHECK(ref && p && g))
        goto out;
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
        kl_optim_config cfg = kl_optim_defaults(kinds[k]);
        cfg.weight_decay = 0.01f;
        if (kinds[k] == KL_OPTIM_SGD)
            cfg.momentum = 0.9f;
        kl_optim_segment segs[] = {{.offset = 1000, .count = 200000, .decay = true},
                                   {.offset = 250000, .count = 100, .decay = false}};
        for (int threads = 1; threads <= 3; threads++) {
            kl_error err = {0};
            kl__par *par = NULL;
            kl_optim *o = kl_optim_new(&cfg, n, &err);
            CHECK_OK(kl__par_new(threads, &par, &err), &err);
            if (!CHECK(o != NULL))
                continue;
            kl_rng_fill_uniform(6, KL_RNG_TEST, 1, p, n, -1, 1);
            for (int step = 0; step < 3; step++) {
                kl_rng_fill_uniform(6, KL_RNG_TEST, 2 + (uint64_t)step, g, n, -1, 1);
                kl__optim_step(o, par, p, g, 1e-2f, segs, 2);
            }
            if (threads == 1)
                memcpy(ref, p, n * sizeof *p);
            else
                CHECK(memcmp(ref, p, n * sizeof *p) == 0);
            kl_optim_free(o);
            kl__par_free(par);
        }
    }
out:
    free(ref);
    free(p);
    free(g);
}

/* The kernels: an op's output and every gradient, on a given thread count. */
typedef enum op_kind {
    OP_CONV,
    OP_CONV1,
    OP_CONV_BIAS,
    OP_CONV_BIAS_1X1,
    OP_MAXPOOL,
    OP_AVGPOOL,
    OP_RELU,
    OP_BIAS4,
    OP_BIAS2
} op_kind;

static kl_node build_op(kl_graph *g, const kl_node *l, void *ctx)
{
    switch (*(const op_kind *)ctx) {
    case OP_CONV:
        return kl_conv2d(g, l[0], l[1], 1, 1);
    case OP_CONV1:
        return kl_conv2d(g, l[0], l[1], 2, 0);
    case OP_CONV_BIAS:
        return kl_conv2d_bias(g, l[0], l[1], l[2], 1, 1);
    case OP_CONV_BIAS_1X1:
        return kl_conv2d_bias(g, l[0], l[1], l[2], 1, 0);
    case OP_MAXPOOL:
        return kl_max_pool2d(g, l[0], 2, 2, 0);
    case OP_AVGPOOL:
        return kl_avg_pool2d(g, l[0], 3, 2, 1);
    case OP_RELU:
        return kl_relu(g, l[0]);
    case OP_BIAS4:
    case OP_BIAS2:
        return kl_bias_add(g, l[0], l[1]);
    }
    return KL_NONE;
}

typedef struct op_case {
    const char *name;
    op_kind kind;
    gc_leaf leaves[3];
    int nleaves;
} op_case;

/* Runs forward and backward on threads; returns the output followed by every leaf's gradient
 * (malloc'd, *len floats), or NULL. */
static float *run_op(const op_case *oc, int threads, size_t *len)
{
    gc_graph t;
    gc_opts o = gc_defaults();
    kl_error err = {0};
    float *res = NULL;
    if (gc_setup(&t, oc->leaves, oc->nleaves, build_op, (void *)&oc->kind, &o) != 0)
        goto out;
    CHECK_OK(kl_graph_set_threads(t.g, threads, &err), &err);
    if (kl_graph_forward(t.g, &err) != KL_OK || kl_graph_backward(t.g, &err) != KL_OK) {
        fprintf(stderr, "%s: %s\n", oc->name, err.msg);
        goto out;
    }
    const kl_tensor *parts[1 + GC_MAX_LEAVES];
    int np = 0;
    parts[np++] = kl_graph_value(t.g, t.out);
    for (int i = 0; i < oc->nleaves; i++)
        parts[np++] = kl_graph_grad(t.g, t.leaf[i]);
    *len = 0;
    for (int i = 0; i < np; i++)
        *len += (size_t)kl_numel(parts[i]);
    if (!(res = malloc(*len * sizeof *res)))
        goto out;
    size_t at = 0;
    for (int i = 0; i < np; i++) {
        memcpy(res + at, kl_f32(parts[i]), (size_t)kl_numel(parts[i]) * sizeof *res);
        at += (size_t)kl_numel(parts[i]);
    }
out:
    kl_graph_free(t.g);
    return res;
}

static void test_kernels(void)
{
    /* Sizes above each kernel's threshold for going parallel. */
    const op_case op_cases[] = {
        {"conv2d 3x3 pad 1",
         OP_CONV,
         {gc_in(KL_SHAPE(8, 3, 12, 12)), gc_w(KL_SHAPE(8, 3, 3, 3))},
         2},
        {"conv2d 1 channel stride 2",
         OP_CONV1,
         {gc_in(KL_SHAPE(16, 1, 28, 28)), gc_w(KL_SHAPE(4, 1, 3, 3))},
         2},
        {"conv2d with bias",
         OP_CONV_BIAS,
         {gc_in(KL_SHAPE(8, 3, 12, 12)), gc_w(KL_SHAPE(32, 3, 3, 3)), gc_w(KL_SHAPE(32))},
         3},
        {"conv2d 1x1 with bias",
         OP_CONV_BIAS_1X1,
         {gc_in(KL_SHAPE(8, 16, 12, 12)), gc_w(KL_SHAPE(32, 16, 1, 1)), gc_w(KL_SHAPE(32))},
         3},
        {"max_pool2d 2x2", OP_MAXPOOL, {gc_in(KL_SHAPE(8, 16, 20, 20))}, 1},
        {"avg_pool2d 3x3 stride 2 pad 1", OP_AVGPOOL, {gc_in(KL_SHAPE(8, 16, 20, 20))}, 1},
        {"relu", OP_RELU, {gc_in(KL_SHAPE(8, 16, 20, 20))}, 1},
        {"bias_add NCHW", OP_BIAS4, {gc_in(KL_SHAPE(8, 16, 20, 20)), gc_w(KL_SHAPE(16))}, 2},
        {"bias_add (N, C)", OP_BIAS2, {gc_in(KL_SHAPE(64, 1024)), gc_w(KL_SHAPE(1024))}, 2},
    };
    for (size_t k = 0; k < sizeof op_cases / sizeof *op_cases; k++) {
        const op_case *oc = &op_cases[k];
        size_t n1 = 0, n = 0;
        float *ref = run_op(oc, 1, &n1);
        if (!check_(ref != NULL, __FILE__, __LINE__, oc->name))
            continue;
        /* 2 twice: the same count gives the same bits run after run. */
        const int counts[] = {2, 2, 3};
        for (size_t c = 0; c < sizeof counts / sizeof *counts; c++) {
            float *got = run_op(oc, counts[c], &n);
            if (check_(got && n == n1 && memcmp(ref, got, n * sizeof *got) == 0, __FILE__, __LINE__,
                       oc->name) == 0)
                fprintf(stderr, "    %s: %d threads differ from 1\n", oc->name, counts[c]);
            free(got);
        }
        free(ref);
    }
}

/* Three training steps of a small CNN (fused conv bias, relu, max pool, linear, cross-entropy;
 * Adam with clipping) through kl_step: the same parameters on 1, 2 and 3 threads. */
static float *train_cnn(int threads, size_t *n)
{
    enum { BATCH = 32 };
    kl_error err = {0};
    kl_init he = {KL_INIT_HE_UNIFORM, 0, 0}, zero = {KL_INIT_ZEROS, 0, 0};
    kl_graph *g = kl_graph_new();
    kl_node x = kl_input(g, "x", KL_F32, KL_SHAPE(1, 28, 28));
    kl_node y = kl_input(g, "y", KL_I32, (kl_shape){0});
    kl_node w = kl_param(g, "w", KL_SHAPE(8, 1, 3, 3), he, 0);
    kl_node b = kl_param(g, "b", KL_SHAPE(8), zero, KL_PARAM_NO_DECAY);
    kl_node fw = kl_param(g, "fw", KL_SHAPE(32, 8 * 14 * 14), he, 0);
    kl_node fb = kl_param(g, "fb", KL_SHAPE(32), zero, KL_PARAM_NO_DECAY);
    kl_node h = kl_max_pool2d(g, kl_relu(g, kl_conv2d_bias(g, x, w, b, 1, 1)), 2, 2, 0);
    h = kl_linear(g, kl_reshape(g, h, KL_SHAPE(8 * 14 * 14)), fw, fb);
    kl_node loss = kl_softmax_xent(g, h, y, 0.0f);
    CHECK_OK(kl_graph_compile(g, BATCH, loss, 3, &err), &err);
    CHECK_OK(kl_graph_set_threads(g, threads, &err), &err);
    kl_graph_set_mode(g, KL_MODE_TRAIN);
    kl_rng_fill_uniform(8, KL_RNG_TEST, 1, kl_f32(kl_graph_value(g, x)), BATCH * 28 * 28, -1, 1);
    int32_t *labels = kl_i32(kl_graph_value(g, y));
    for (int i = 0; i < BATCH; i++)
        labels[i] = i % 32;
    kl_step_config c = {.optim = kl_optim_defaults(KL_OPTIM_ADAM), .clip_norm = 0.5f};
    c.lr = (kl_lr_schedule){.kind = KL_LR_CONSTANT, .base_lr = 1e-2f};
    kl_step *s = kl_step_new(g, &c, &err);
    float *res = NULL;
    if (CHECK(s != NULL)) {
        for (int64_t t = 0; t < 3; t++) {
            float l = 0;
            kl_step_begin(s);
            CHECK_OK(kl_step_pass(s, 7, t, 0, &l, &err), &err);
            CHECK_OK(kl_step_end(s, t, l, &err), &err);
        }
        *n = kl_graph_param_count(g);
        if ((res = malloc(*n * sizeof *res)))
            memcpy(res, kl_graph_params(g), *n * sizeof *res);
    }
    kl_step_free(s);
    kl_graph_free(g);
    return res;
}

static void test_train_steps(void)
{
    size_t n1 = 0, n = 0;
    float *ref = train_cnn(1, &n1);
    if (!CHECK(ref != NULL))
        return;
    const int counts[] = {2, 2, 3};
    for (size_t c = 0; c < sizeof counts / sizeof *counts; c++) {
        float *got = train_cnn(counts[c], &n);
        CHECK(got && n == n1 && memcmp(ref, got, n * sizeof *got) == 0);
        free(got);
    }
    free(ref);
}

static void test_bad_threads(void)
{
    kl_error err = {0};
    kl_graph *g = kl_graph_new();
    CHECK(kl_graph_set_threads(g, 0, &err) == KL_EINVAL);
    CHECK(strstr(err.msg, "threads") != NULL);
    CHECK_OK(kl_graph_set_threads(g, 2, &err), &err);
    CHECK_OK(kl_graph_set_threads(g, 1, &err), &err);
    kl_graph_free(g);
}

static const check_case cases[] = {
    CHECK_CASE(test_partition),   CHECK_CASE(test_min_work), CHECK_CASE(test_sum_sq),
    CHECK_CASE(test_optim),       CHECK_CASE(test_kernels),  CHECK_CASE(test_train_steps),
    CHECK_CASE(test_bad_threads),
};

int main(int argc, char **argv)
{
    return check_run("test_par", cases, CHECK_NCASES(cases), argc, argv);
}
