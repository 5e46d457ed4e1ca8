/* Every op's CUDA kernels against its CPU kernels (the reference), and the CUDA optimizers and
 * clipping against ops/optim.c. Each op runs on random inputs of several shapes (odd sizes, batch
 * 1) through the same kl__ctx on both devices: the forward output, every input gradient (added
 * into a random gradient, or written fresh), and inputs a forward updates (batchnorm's running
 * statistics) must agree within the op's tolerance below. The op table case runs anywhere CUDA is
 * built (`test_cuda_ops --table`, label unit); the rest needs a device and exits 77 without one. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kiln/graph.h"
#include "kiln/optim.h"
#include "ops/cuda/cuda.h"
#include "ops/graph_impl.h"

/* Tolerances: |cuda - cpu| <= tol * (1 + |cpu|) per element; 0 means bit-identical.
 * - exact: copies (concat, embedding's forward, reshape has no kernels), dropout's forward (the
 *   mask is the same Philox draw, and x * keep is one rounding), max pool's forward (a max);
 * - 1e-6: one or two roundings per element, where nvcc may fuse a multiply-add into an FMA
 *   that the CPU rounds twice (scale, relu, dropout's and the pools' backward, embedding's);
 * - 1e-5: CUDA's expf/erff/tanhf are within 2 ulp of glibc's, and reductions in double summed
 *   in another order (softmax, the losses, sum, the norms, bias sums, global average pool);
 * - 1e-4: GEMMs (matmul, linear, conv2d): cuBLAS blocks the K sum in another order than
 *   OpenBLAS, with FMAs, so float rounding differs by about K * 2^-24 * sum |a_ik b_kj|, and
 *   the inputs here are in [-1, 1] with K <= 100. */
typedef struct op_tol {
    double fwd, bwd;
} op_tol;

static op_tol tol_of(kl__op op)
{
    switch (op) {
    case KL__OP_MATMUL:
    case KL__OP_LINEAR:
    case KL__OP_CONV2D:
        return (op_tol){1e-4, 1e-4};
    case KL__OP_CONCAT:
        return (op_tol){0, 0};
    case KL__OP_DROPOUT:
    case KL__OP_MAX_POOL2D:
    case KL__OP_EMBEDDING:
        return (op_tol){0, 1e-6};
    case KL__OP_ADD:
    case KL__OP_MUL:
    case KL__OP_SCALE:
    case KL__OP_RELU:
    case KL__OP_LEAKY_RELU:
    case KL__OP_AVG_POOL2D:
        return (op_tol){1e-6, 1e-6};
    default:
        return (op_tol){1e-5, 1e-5};
    }
}

/* One op on one set of input shapes. */
typedef struct spec {
    kl__op op;
    int nin;
    kl_shape in[KL__MAX_IN];
    kl_dtype dtype[KL__MAX_IN];
    int32_t range[KL__MAX_IN]; /* i32 inputs: values in [0, range) */
    unsigned batched;          /* bit i: input i is batched */
    unsigned buffer;           /* bit i: input i is a kl_buffer (batchnorm's running statistics) */
    unsigned positive;         /* bit i: values in [0.5, 1.5) instead of [-1, 1) */
    unsigned no_grad;          /* bit i: din[i] is NULL */
    kl__attr attr;
    bool train;
} spec;

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static float frand(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)(rng_state >> 40) / 16777216.0f; /* [0, 1) */
}

static void fill(void *p, int64_t n, kl_dtype dt, int32_t range, bool positive)
{
    for (int64_t i = 0; i < n; i++) {
        if (dt == KL_I32)
            ((int32_t *)p)[i] = (int32_t)(frand() * (float)range) % range;
        else
            ((float *)p)[i] = positive ? 0.5f + frand() : 2.0f * frand() - 1.0f;
    }
}

/* Counts elements outside the tolerance and prints the first few with their index. */
static int64_t compare(const char *what, const char *op, const float *got, const float *want,
                       int64_t n, double tol)
{
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        bool ok = tol == 0 ? memcmp(&got[i], &want[i], sizeof(float)) == 0
                           : d <= tol * (1.0 + fabs((double)want[i]));
        if (!ok && bad++ < 5)
            fprintf(stderr, "    %s %s[%lld]: cuda %.9g, cpu %.9g (tolerance %.1g)\n", op, what,
                    (long long)i, (double)got[i], (double)want[i], tol);
    }
    return bad;
}

/* Host and device copies of everything one kernel call touches. */
typedef struct buffers {
    kl_tensor in[KL__MAX_IN], out, dout, din[KL__MAX_IN];
    float *saved, *scratch;
} buffers;

static size_t bytes_of(const kl_tensor *t)
{
    return (size_t)kl_numel(t) * kl_dtype_size(t->dtype);
}

static void *dev_copy(const void *host, size_t bytes)
{
    void *d = kl__cuda_alloc(bytes ? bytes : 4);
    if (d && host && bytes)
        CHECK(kl__cuda_to_device(d, host, bytes) == 0);
    return d;
}

static void fill_ctx(kl__ctx *c, buffers *b, const kl__node *n, const spec *s, bool fresh)
{
    memset(c, 0, sizeof *c);
    c->nin = s->nin;
    for (int i = 0; i < s->nin; i++) {
        c->in[i] = &b->in[i];
        c->din[i] = b->din[i].data ? &b->din[i] : NULL;
        c->din_fresh[i] = fresh && c->din[i];
    }
    c->out = &b->out;
    c->dout = &b->dout;
    c->attr = &n->attr;
    c->saved = b->saved;
    c->scratch = b->scratch;
    c->train = s->train;
    c->seed = 0x5EEDull;
    c->step = 7;
    c->first_row = 3;
    c->node = 5;
}

/* The device twin of host buffers h: same shapes, device copies of the data. */
static void to_device(buffers *d, const buffers *h, const kl__node *n)
{
    *d = *h;
    for (int i = 0; i < n->nin; i++) {
        d->in[i].data = dev_copy(h->in[i].data, bytes_of(&h->in[i]));
        d->din[i].data = h->din[i].data ? dev_copy(h->din[i].data, bytes_of(&h->din[i])) : NULL;
    }
    d->out.data = dev_copy(h->out.data, bytes_of(&h->out));
    d->dout.data = dev_copy(h->dout.data, bytes_of(&h->dout));
    d->saved = dev_copy(h->saved, n->saved_n * sizeof(float));
    d->scratch = dev_copy(NULL, n->scratch_n * sizeof(float));
}

static void free_buffers(buffers *b, int nin, void (*release)(void *))
{
    for (int i = 0; i < nin; i++) {
        release(b->in[i].data);
        release(b->din[i].data);
    }
    release(b->out.data);
    release(b->dout.data);
    release(b->saved);
    release(b->scratch);
}

/* Copies a device tensor back and compares it with the CPU's. */
static void check_tensor(const char *what, const char *op, const kl_tensor *dev,
                         const kl_tensor *cpu, double tol)
{
    size_t bytes = bytes_of(cpu);
    void *got = malloc(bytes ? bytes : 4);
    if (!CHECK(got && kl__cuda_to_host(got, dev->data, bytes) == 0)) {
        free(got);
        return;
    }
    int64_t bad = cpu->dtype == KL_F32 ? compare(what, op, got, cpu->data, kl_numel(cpu), tol)
                                       : memcmp(got, cpu->data, bytes) != 0;
    if (!check_(bad == 0, __FILE__, __LINE__, what))
        fprintf(stderr, "    %s: %lld of %lld elements of %s differ\n", op, (long long)bad,
                (long long)kl_numel(cpu), what);
    free(got);
}

/* Runs s on the CPU and on the device and compares; fresh asks kernels that honour din_fresh to
 * overwrite the gradients (which then start as garbage). */
static void run_spec(const spec *s, bool fresh)
{
    const kl__op_def *row = kl__ops[s->op];
    kl__node nodes[KL__MAX_IN], n;
    const kl__node *in[KL__MAX_IN];
    kl_error err = {0};
    memset(nodes, 0, sizeof nodes);
    memset(&n, 0, sizeof n);
    for (int i = 0; i < s->nin; i++) {
        nodes[i].kind = s->buffer >> i & 1 ? KL__BUFFER : KL__INPUT;
        nodes[i].dtype = s->dtype[i];
        nodes[i].shape = s->in[i];
        nodes[i].batched = s->batched >> i & 1;
        in[i] = &nodes[i];
    }
    n.kind = KL__OP;
    n.op = s->op;
    n.nin = s->nin;
    n.attr = s->attr;
    n.dtype = KL_F32;
    if (!check_(row->shape(&n, in, &err) == KL_OK, __FILE__, __LINE__, row->name)) {
        fprintf(stderr, "    %s: %s\n", row->name, err.msg);
        return;
    }
    fresh = fresh && row->cpu.fresh_grads;

    buffers h, d;
    memset(&h, 0, sizeof h);
    for (int i = 0; i < s->nin; i++) {
        h.in[i] = (kl_tensor){s->dtype[i], s->in[i], NULL};
        h.in[i].data = malloc(bytes_of(&h.in[i]) + 4);
        if (h.in[i].data)
            fill(h.in[i].data, kl_numel(&h.in[i]), s->dtype[i], s->range[i], s->positive >> i & 1);
        if (h.in[i].data && s->dtype[i] == KL_F32 && !(s->no_grad >> i & 1) &&
            !(s->buffer >> i & 1)) {
            h.din[i] = (kl_tensor){KL_F32, s->in[i], malloc(bytes_of(&h.in[i]) + 4)};
            if (!CHECK(h.din[i].data))
                continue;
            fill(h.din[i].data, kl_numel(&h.din[i]), KL_F32, 0, false);
            if (fresh)
                for (int64_t k = 0; k < kl_numel(&h.din[i]); k++)
                    kl_f32(&h.din[i])[k] = 12345.0f; /* must be overwritten */
        }
    }
    h.out =
        (kl_tensor){KL_F32, n.shape, calloc((size_t)kl_shape_numel(&n.shape) + 1, sizeof(float))};
    h.dout = (kl_tensor){KL_F32, n.shape, calloc((size_t)kl_numel(&h.out) + 1, sizeof(float))};
    if (h.dout.data)
        fill(h.dout.data, kl_numel(&h.dout), KL_F32, 0, false);
    h.saved = calloc(n.saved_n + 1, sizeof(float));
    h.scratch = calloc(n.scratch_n + 1, sizeof(float));
    bool allocated = h.out.data && h.dout.data && h.saved && h.scratch;
    for (int i = 0; i < s->nin; i++)
        allocated = allocated && h.in[i].data;
    if (!CHECK(allocated)) {
        free_buffers(&h, s->nin, free);
        return;
    }
    to_device(&d, &h, &n); /* before the CPU changes anything */

    kl__ctx c;
    fill_ctx(&c, &h, &n, s, fresh);
    CHECK_OK(row->cpu.forward(&c, &err), &err);
    if (row->cpu.backward)
        row->cpu.backward(&c);

    const kl__kernel *k = kl__op_kernels(s->op, true, &err);
    if (CHECK(k != NULL)) {
        fill_ctx(&c, &d, &n, s, fresh);
        CHECK_OK(k->forward(&c, &err), &err);
        if (k->backward)
            k->backward(&c);
        CHECK(kl__cuda_sync() == 0);
        op_tol t = tol_of(s->op);
        check_tensor("forward", row->name, &d.out, &h.out, t.fwd);
        char what[32];
        for (int i = 0; i < s->nin; i++) {
            snprintf(what, sizeof what, "input %d", i);
            check_tensor(what, row->name, &d.in[i], &h.in[i], t.fwd); /* running statistics */
            snprintf(what, sizeof what, "gradient %d", i);
            if (h.din[i].data && row->cpu.backward)
                check_tensor(what, row->name, &d.din[i], &h.din[i], t.bwd);
        }
    }
    free_buffers(&d, s->nin, kl__cuda_free);
    free_buffers(&h, s->nin, free);
}

static void run_both(const spec *s)
{
    run_spec(s, false);
    run_spec(s, true);
}

/* Shorthands for the cases. */
#define SH(...) KL_SHAPE(__VA_ARGS__)

static spec unary(kl__op op, kl_shape x)
{
    return (spec){.op = op, .nin = 1, .in = {x}, .batched = 1, .train = true};
}

static spec binary(kl__op op, kl_shape a, kl_shape b)
{
    return (spec){.op = op, .nin = 2, .in = {a, b}, .batched = 3, .train = true};
}

static const kl_shape some_shapes[] = {{1, {1}}, {2, {1, 7}}, {2, {5, 33}}, {4, {3, 4, 5, 6}}};
#define NSHAPES (int)(sizeof some_shapes / sizeof *some_shapes)

static void test_op_table(void)
{
    kl_error err = {0};
    for (int op = 1; op < KL__OP_COUNT; op++) {
        const kl__op_def *row = kl__ops[op];
        if (!check_(row->cuda != NULL, __FILE__, __LINE__, row->name))
            continue;
        if (row->alias) {
            CHECK(row->cuda->forward == NULL && row->cuda->backward == NULL);
            continue;
        }
        bool ok = kl__op_kernels((kl__op)op, true, &err) == row->cuda && row->cuda->forward &&
                  (!row->cpu.backward || row->cuda->backward) &&
                  row->cuda->fresh_grads == row->cpu.fresh_grads;
        if (!check_(ok, __FILE__, __LINE__, "a CUDA forward and backward like the CPU's"))
            fprintf(stderr, "    op %s: its CUDA kernels are missing or differ in fresh_grads\n",
                    row->name);
    }
}

static void test_matmul(void)
{
    for (int t = 0; t < 4; t++) {
        bool ta = t & 1, tb = t & 2;
        int64_t m = 5, k = 33, n = 7;
        spec s = {.op = KL__OP_MATMUL, .nin = 2, .attr = {.matmul = {ta, tb}}, .train = true};
        s.in[0] = ta ? SH(k, m) : SH(m, k);
        s.in[1] = tb ? SH(n, k) : SH(k, n);
        run_both(&s);
        s.in[0] = ta ? SH(k, 1) : SH(1, k); /* one row */
        run_both(&s);
    }
}

static void test_linear(void)
{
    const int64_t rows[] = {1, 3, 64};
    for (int i = 0; i < 3; i++) {
        spec s = {.op = KL__OP_LINEAR,
                  .nin = 3,
                  .in = {SH(rows[i], 19), SH(11, 19), SH(11)},
                  .batched = 1,
                  .train = true};
        run_both(&s);
        s.nin = 2;
        s.no_grad = 1; /* the first layer: no gradient for x */
        run_both(&s);
    }
    spec s3 = {.op = KL__OP_LINEAR, .nin = 3, .in = {SH(2, 3, 5), SH(4, 5), SH(4)}, .batched = 1};
    run_both(&s3);
}

static void test_bias_add(void)
{
    spec a = {.op = KL__OP_BIAS_ADD, .nin = 2, .in = {SH(3, 5), SH(5)}, .batched = 1};
    spec b = {.op = KL__OP_BIAS_ADD, .nin = 2, .in = {SH(2, 3, 7, 5), SH(3)}, .batched = 1};
    spec c = {.op = KL__OP_BIAS_ADD, .nin = 2, .in = {SH(1, 300, 3), SH(300)}, .batched = 1};
    run_both(&a);
    run_both(&b);
    run_both(&c);
}

static void run_unary_shapes(kl__op op, float alpha)
{
    for (int i = 0; i < NSHAPES; i++) {
        spec s = unary(op, some_shapes[i]);
        s.attr.scale.alpha = alpha;
        run_both(&s);
    }
}

static void test_add(void)
{
    for (int i = 0; i < NSHAPES; i++) {
        spec s = binary(KL__OP_ADD, some_shapes[i], some_shapes[i]);
        run_both(&s);
        s.no_grad = 2;
        run_both(&s);
    }
}

static void test_mul(void)
{
    for (int i = 0; i < NSHAPES; i++) {
        spec s = binary(KL__OP_MUL, some_shapes[i], some_shapes[i]);
        run_both(&s);
    }
}

static void test_scale(void)
{
    run_unary_shapes(KL__OP_SCALE, -0.37f);
}
static void test_relu(void)
{
    run_unary_shapes(KL__OP_RELU, 0);
}
static void test_leaky_relu(void)
{
    run_unary_shapes(KL__OP_LEAKY_RELU, 0.01f);
}
static void test_gelu(void)
{
    run_unary_shapes(KL__OP_GELU, 0);
}
static void test_tanh(void)
{
    run_unary_shapes(KL__OP_TANH, 0);
}
static void test_sigmoid(void)
{
    run_unary_shapes(KL__OP_SIGMOID, 0);
}

static void test_softmax(void)
{
    run_unary_shapes(KL__OP_SOFTMAX, 0);
    spec wide = unary(KL__OP_SOFTMAX, SH(3, 1001)); /* rows wider than a block */
    run_both(&wide);
}

/* The mask must be the CPU's exactly: forward is compared bit for bit (tol_of). */
static void test_dropout(void)
{
    for (int i = 0; i < NSHAPES; i++) {
        spec s = unary(KL__OP_DROPOUT, some_shapes[i]);
        s.attr.dropout.p = 0.3f;
        run_both(&s);
        s.train = false; /* eval: a copy */
        run_both(&s);
    }
    spec big = unary(KL__OP_DROPOUT, SH(17, 1000));
    big.attr.dropout.p = 0.5f;
    run_both(&big);
}

static void test_softmax_xent(void)
{
    const int64_t n[] = {1, 7, 64}, c[] = {2, 10, 37};
    for (int i = 0; i < 3; i++)
        for (int sm = 0; sm < 2; sm++) {
            spec s = {.op = KL__OP_SOFTMAX_XENT,
                      .nin = 2,
                      .in = {SH(n[i], c[i]), SH(n[i])},
                      .dtype = {KL_F32, KL_I32},
                      .range = {0, (int32_t)c[i]},
                      .batched = 3,
                      .attr = {.xent = {sm ? 0.1f : 0.0f}},
                      .train = true};
            run_both(&s);
        }
}

static void test_mse(void)
{
    for (int i = 0; i < NSHAPES; i++) {
        spec s = binary(KL__OP_MSE, some_shapes[i], some_shapes[i]);
        run_both(&s);
    }
}

static void test_sum(void)
{
    run_unary_shapes(KL__OP_SUM, 0);
    spec big = unary(KL__OP_SUM, SH(3, 100003));
    run_both(&big);
}

/* Odd sizes, stride 2, padding, pointwise (1x1), a kernel as large as the padded input. */
static void test_conv2d(void)
{
    static const struct {
        int64_t n, c, h, w, o, k;
        int stride, pad;
    } g[] = {{1, 1, 5, 5, 1, 3, 1, 0}, {2, 3, 7, 6, 4, 3, 1, 1}, {3, 2, 9, 8, 5, 3, 2, 1},
             {2, 5, 4, 3, 6, 1, 1, 0}, {1, 2, 3, 3, 3, 5, 1, 1}, {2, 3, 6, 6, 2, 2, 2, 0}};
    for (size_t i = 0; i < sizeof g / sizeof *g; i++) {
        spec s = {.op = KL__OP_CONV2D,
                  .nin = 2,
                  .in = {SH(g[i].n, g[i].c, g[i].h, g[i].w), SH(g[i].o, g[i].c, g[i].k, g[i].k)},
                  .batched = 1,
                  .attr = {.conv = {g[i].stride, g[i].pad}},
                  .train = true};
        run_both(&s);
    }
}

static void run_pools(kl__op op)
{
    static const struct {
        int64_t n, c, h, w;
        int k, stride, pad;
    } g[] = {{1, 1, 4, 4, 2, 2, 0},
             {2, 3, 7, 5, 3, 2, 1},
             {2, 2, 6, 6, 3, 1, 1},
             {1, 3, 5, 5, 2, 1, 0},
             {3, 1, 9, 7, 3, 3, 0}};
    for (size_t i = 0; i < sizeof g / sizeof *g; i++) {
        spec s = unary(op, SH(g[i].n, g[i].c, g[i].h, g[i].w));
        s.attr.pool.k = g[i].k;
        s.attr.pool.stride = g[i].stride;
        s.attr.pool.pad = g[i].pad;
        run_both(&s);
    }
}

static void test_max_pool2d(void)
{
    run_pools(KL__OP_MAX_POOL2D);
}
static void test_avg_pool2d(void)
{
    run_pools(KL__OP_AVG_POOL2D);
}

static void test_global_avg_pool(void)
{
    spec a = unary(KL__OP_GLOBAL_AVG_POOL, SH(1, 1, 1, 1));
    spec b = unary(KL__OP_GLOBAL_AVG_POOL, SH(3, 5, 7, 9));
    spec c = unary(KL__OP_GLOBAL_AVG_POOL, SH(2, 3, 31, 33));
    run_both(&a);
    run_both(&b);
    run_both(&c);
}

static void test_batchnorm(void)
{
    const kl_shape xs[] = {SH(2, 3), SH(5, 4, 3, 3), SH(1, 2, 5, 7), SH(64, 3)};
    for (int i = 0; i < 4; i++)
        for (int train = 0; train < 2; train++) {
            int64_t C = xs[i].d[1];
            spec s = {.op = KL__OP_BATCHNORM,
                      .nin = 5,
                      .in = {xs[i], SH(C), SH(C), SH(C), SH(C)},
                      .batched = 1,
                      .buffer = 8 | 16,
                      .positive = 16,
                      .attr = {.norm = {0.1f, 1e-5f}},
                      .train = train};
            run_both(&s);
        }
}

static void test_layernorm(void)
{
    const kl_shape xs[] = {SH(1, 5), SH(7, 33), SH(2, 3, 300)};
    for (int i = 0; i < 3; i++) {
        int64_t D = xs[i].d[xs[i].ndim - 1];
        spec s = {.op = KL__OP_LAYERNORM,
                  .nin = 3,
                  .in = {xs[i], SH(D), SH(D)},
                  .batched = 1,
                  .attr = {.norm = {0.0f, 1e-5f}},
                  .train = true};
        run_both(&s);
    }
}

static void test_concat(void)
{
    spec a = {.op = KL__OP_CONCAT,
              .nin = 3,
              .in = {SH(2, 3), SH(2, 5), SH(2, 1)},
              .batched = 7,
              .attr = {.concat = {1}}};
    spec b = {.op = KL__OP_CONCAT,
              .nin = 2,
              .in = {SH(1, 2, 3, 4), SH(1, 3, 3, 4)},
              .batched = 3,
              .attr = {.concat = {1}},
              .no_grad = 1};
    spec c = {.op = KL__OP_CONCAT,
              .nin = 2,
              .in = {SH(3, 2, 5), SH(3, 2, 2)},
              .batched = 3,
              .attr = {.concat = {-1}}};
    run_both(&a);
    run_both(&b);
    run_both(&c);
}

/* Repeated indices make backward add several rows into one. */
static void test_embedding(void)
{
    spec a = {.op = KL__OP_EMBEDDING,
              .nin = 2,
              .in = {SH(1), SH(3, 4)},
              .dtype = {KL_I32, KL_F32},
              .range = {3, 0},
              .batched = 1};
    spec b = {.op = KL__OP_EMBEDDING,
              .nin = 2,
              .in = {SH(9, 7), SH(5, 33)},
              .dtype = {KL_I32, KL_F32},
              .range = {5, 0},
              .batched = 1};
    run_both(&a);
    run_both(&b);
}

/* A few steps of each optimizer on the CPU and the device from the same start; segments leave
 * gaps and mix decayed and undecayed runs. Element formulas are the CPU's, so only FMA
 * contraction and sqrtf separate them: 1e-5 relative after the steps. */
static void run_optim(kl_optim_config cfg, const char *name)
{
    enum { N = 1037, STEPS = 4 };
    const kl_optim_segment segs[] = {{0, 300, true}, {300, 11, false}, {500, 500, true}};
    kl_error err = {0};
    kl_optim *o = kl_optim_new(&cfg, N, &err);
    float *p = malloc(N * sizeof *p), *g = malloc(N * sizeof *g), *got = malloc(2 * N * 4);
    if (!CHECK(o && p && g && got))
        goto out;
    fill(p, N, KL_F32, 0, false);
    size_t ns = kl_optim_state_size(o);
    float *dp = dev_copy(p, N * 4), *dg = kl__cuda_alloc(N * 4);
    float *ds = ns ? dev_copy(kl_optim_state(o), ns * 4) : NULL;
    for (int t = 0; t < STEPS; t++) {
        fill(g, N, KL_F32, 0, false);
        CHECK(kl__cuda_to_device(dg, g, N * 4) == 0);
        CHECK(kl__cuda_optim_step(&cfg, kl_optim_steps(o), dp, dg, ds, N, 0.05f, segs, 3, NULL) ==
              0);
        kl_optim_step(o, p, g, 0.05f, segs, 3);
    }
    CHECK(kl__cuda_to_host(got, dp, N * 4) == 0);
    CHECK(compare("params", name, got, p, N, 1e-5) == 0);
    if (ns) {
        CHECK(kl__cuda_to_host(got, ds, ns * 4) == 0);
        CHECK(compare("state", name, got, kl_optim_state(o), (int64_t)ns, 1e-5) == 0);
    }
    kl__cuda_free(dp);
    kl__cuda_free(dg);
    kl__cuda_free(ds);
out:
    kl_optim_free(o);
    free(p);
    free(g);
    free(got);
}

static void test_optim(void)
{
    kl_optim_config sgd = kl_optim_defaults(KL_OPTIM_SGD);
    sgd.weight_decay = 0.01f;
    run_optim(sgd, "sgd");
    sgd.momentum = 0.9f;
    sgd.dampening = 0.1f;
    run_optim(sgd, "sgd momentum");
    sgd.dampening = 0.0f;
    sgd.nesterov = true;
    run_optim(sgd, "sgd nesterov");
    kl_optim_config adam = kl_optim_defaults(KL_OPTIM_ADAM);
    adam.weight_decay = 0.01f;
    run_optim(adam, "adam");
    run_optim(kl_optim_defaults(KL_OPTIM_ADAMW), "adamw");
}

/* Clipped (a norm far above max_norm) and untouched (below it), on more elements than the
 * reduction's grid has threads. */
static void test_clip(void)
{
    enum { N = 300007 };
    float *g = malloc(N * sizeof *g), *got = malloc(N * sizeof *got);
    float *dg = kl__cuda_alloc(N * 4), *dnorm = kl__cuda_alloc(4);
    double *work = kl__cuda_alloc(KL__CUDA_CLIP_WORK * sizeof(double));
    if (!CHECK(g && got && dg && dnorm && work))
        goto out;
    const float max_norm[] = {1.0f, 1e6f};
    for (int i = 0; i < 2; i++) {
        fill(g, N, KL_F32, 0, false);
        CHECK(kl__cuda_to_device(dg, g, N * 4) == 0);
        CHECK(kl__cuda_clip_grad_norm(dg, N, max_norm[i], dnorm, work, NULL) == 0);
        float want = kl_clip_grad_norm(g, N, max_norm[i]), norm = 0;
        CHECK(kl__cuda_to_host(&norm, dnorm, 4) == 0);
        CHECK_NEAR(norm, want, 1e-6 * want);
        CHECK(kl__cuda_to_host(got, dg, N * 4) == 0);
        CHECK(compare("gradients", "clip", got, g, N, i == 0 ? 1e-6 : 0) == 0);
    }
out:
    free(g);
    free(got);
    kl__cuda_free(dg);
    kl__cuda_free(dnorm);
    kl__cuda_free(work);
}

/* The ops the ONNX importer maps onto. */
static void test_sub_div(void)
{
    for (int i = 0; i < NSHAPES; i++) {
        spec s = binary(KL__OP_SUB, some_shapes[i], some_shapes[i]);
        run_both(&s);
        s.op = KL__OP_DIV;
        s.positive = 2; /* divisors in [0.5, 1.5): away from 0 */
        run_both(&s);
    }
}

static void test_clip_op(void)
{
    for (int i = 0; i < NSHAPES; i++) {
        spec s = unary(KL__OP_CLIP, some_shapes[i]);
        s.attr.clip.lo = -0.3f;
        s.attr.clip.hi = 0.6f;
        run_both(&s);
    }
}

static void test_log_softmax(void)
{
    run_unary_shapes(KL__OP_LOG_SOFTMAX, 0);
    spec wide = unary(KL__OP_LOG_SOFTMAX, SH(3, 1001));
    run_both(&wide);
}

static void test_transpose(void)
{
    spec a = {.op = KL__OP_TRANSPOSE, .nin = 1, .in = {SH(3, 4, 5)}, .batched = 1, .train = true};
    a.attr.transpose.perm[0] = 0;
    a.attr.transpose.perm[1] = 2;
    a.attr.transpose.perm[2] = 1;
    spec b = {
        .op = KL__OP_TRANSPOSE, .nin = 1, .in = {SH(2, 3, 4, 5)}, .batched = 1, .train = true};
    const int perm[] = {0, 3, 1, 2};
    memcpy(b.attr.transpose.perm, perm, sizeof perm);
    run_both(&a);
    run_both(&b);
}

static void test_broadcast(void)
{
    /* A per-channel weight and a batched input with repeated axes, to (N, C, H, W). */
    spec a = {.op = KL__OP_BROADCAST,
              .nin = 2,
              .in = {SH(3, 1, 1), SH(2, 3, 4, 5)},
              .batched = 2,
              .train = true,
              .no_grad = 2};
    spec b = {.op = KL__OP_BROADCAST,
              .nin = 2,
              .in = {SH(2, 1, 4, 1), SH(2, 3, 4, 5)},
              .batched = 3,
              .train = true,
              .no_grad = 2};
    run_both(&a);
    run_both(&b);
}

static void test_pad2d(void)
{
    spec s = {.op = KL__OP_PAD2D, .nin = 1, .in = {SH(2, 3, 4, 5)}, .batched = 1, .train = true};
    s.attr.pad.top = 1;
    s.attr.pad.right = 2;
    s.attr.pad.value = -1.5f;
    run_both(&s);
}

static const check_case table_cases[] = {CHECK_CASE(test_op_table)};

static const check_case cases[] = {
    CHECK_CASE(test_op_table),   CHECK_CASE(test_matmul),     CHECK_CASE(test_linear),
    CHECK_CASE(test_bias_add),   CHECK_CASE(test_add),        CHECK_CASE(test_mul),
    CHECK_CASE(test_scale),      CHECK_CASE(test_relu),       CHECK_CASE(test_leaky_relu),
    CHECK_CASE(test_gelu),       CHECK_CASE(test_tanh),       CHECK_CASE(test_sigmoid),
    CHECK_CASE(test_softmax),    CHECK_CASE(test_dropout),    CHECK_CASE(test_softmax_xent),
    CHECK_CASE(test_mse),        CHECK_CASE(test_sum),        CHECK_CASE(test_conv2d),
    CHECK_CASE(test_max_pool2d), CHECK_CASE(test_avg_pool2d), CHECK_CASE(test_global_avg_pool),
    CHECK_CASE(test_batchnorm),  CHECK_CASE(test_layernorm),  CHECK_CASE(test_concat),
    CHECK_CASE(test_embedding),  CHECK_CASE(test_optim),      CHECK_CASE(test_clip),
    CHECK_CASE(test_sub_div),    CHECK_CASE(test_clip_op),    CHECK_CASE(test_log_softmax),
    CHECK_CASE(test_transpose),  CHECK_CASE(test_broadcast),  CHECK_CASE(test_pad2d),
};

/* CUDA cannot be used in a child forked after the parent initialised it, and check_run forks a
 * child per case: so the device count is asked in a child of its own. */
static int device_count_in_child(void)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0)
        _exit(kl__cuda_device_count() > 0 ? 0 : 1);
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) < 0)
        return 0;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--table") == 0)
        return check_run("test_cuda_ops", table_cases, CHECK_NCASES(table_cases), 1, argv);
    if (!device_count_in_child()) {
        printf("test_cuda_ops: no CUDA device, skipped\n");
        return 77;
    }
    return check_run("test_cuda_ops", cases, CHECK_NCASES(cases), argc, argv);
}
