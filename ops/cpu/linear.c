/* Linear algebra ops on OpenBLAS: matmul (2-D, optional transposes), linear (x W^T + b) and
 * bias_add (a per-channel bias on axis 1). Every product, forward and backward, is one
 * cblas_sgemm call that reads operands in place through its transpose flags: no copies; except
 * linear's forward on at most GEMV_ROWS rows, one cblas_sgemv a row (see linear_forward). */
#include <cblas.h>
#include <string.h>

#include "ops/graph_impl.h"

/* matmul: out = op(a) op(b). A batched a keeps the batch in dim 0; with trans_a the product
 * contracts over the batch (a^T b, as in a weight gradient), so b must be batched too and the
 * output is not. */
static kl_status matmul_shape(kl__node *n, const kl__node *const *in, kl_error *err)
{
    const kl__node *a = in[0], *b = in[1];
    bool ta = n->attr.matmul.trans_a, tb = n->attr.matmul.trans_b;
    char sa[96], sb[96];
    kl_status st;
    if ((st = kl__expect_ndim("matmul", a, 2, 2, err)) ||
        (st = kl__expect_ndim("matmul", b, 2, 2, err)) || (st = kl__expect_f32("matmul", a, err)) ||
        (st = kl__expect_f32("matmul", b, err)))
        return st;
    int64_t m = ta ? a->shape.d[1] : a->shape.d[0], k = ta ? a->shape.d[0] : a->shape.d[1];
    int64_t kb = tb ? b->shape.d[1] : b->shape.d[0], nn = tb ? b->shape.d[0] : b->shape.d[1];
    if (k != kb)
        return kl_error_set(err, KL_ESHAPE, "matmul: inner dimensions differ: %s%s times %s%s",
                            kl_shape_str(&a->shape, sa, sizeof sa), ta ? "^T" : "",
                            kl_shape_str(&b->shape, sb, sizeof sb), tb ? "^T" : "");
    bool contract_batch = ta && a->batched;
    if (contract_batch ? !(b->batched && !tb) : b->batched)
        return kl_error_set(err, KL_ESHAPE,
                            "matmul: the batch must be dim 0 of the output or contracted away "
                            "(a^T b with both batched)");
    n->shape = KL_SHAPE(m, nn);
    n->batched = a->batched && !ta;
    return KL_OK;
}

static kl_status matmul_forward(kl__ctx *c, kl_error *err)
{
    const kl_tensor *a = c->in[0], *b = c->in[1];
    bool ta = c->attr->matmul.trans_a, tb = c->attr->matmul.trans_b;
    int m = (int)c->out->shape.d[0], n = (int)c->out->shape.d[1];
    int k = (int)(ta ? a->shape.d[0] : a->shape.d[1]);
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n,
                k, 1.0f, kl_f32(a), (int)a->shape.d[1], kl_f32(b), (int)b->shape.d[1], 0.0f,
                kl_f32(c->out), n);
    return KL_OK;
}

/* For C = op(A) op(B): dA = dC op(B)^T (transposed back when A was), dB = op(A)^T dC. */
static void matmul_backward(kl__ctx *c)
{
    const kl_tensor *a = c->in[0], *b = c->in[1];
    bool ta = c->attr->matmul.trans_a, tb = c->attr->matmul.trans_b;
    int m = (int)c->out->shape.d[0], n = (int)c->out->shape.d[1];
    int k = (int)(ta ? a->shape.d[0] : a->shape.d[1]);
    int lda = (int)a->shape.d[1], ldb = (int)b->shape.d[1];
    const float *dc = kl_f32(c->dout);
    /* beta 0 overwrites a fresh gradient; 1 adds to what other consumers wrote. */
    float beta0 = c->din_fresh[0] ? 0.0f : 1.0f, beta1 = c->din_fresh[1] ? 0.0f : 1.0f;
    if (c->din[0] && !ta)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, tb ? CblasNoTrans : CblasTrans, m, k, n, 1.0f, dc,
                    n, kl_f32(b), ldb, beta0, kl_f32(c->din[0]), lda);
    else if (c->din[0])
        cblas_sgemm(CblasRowMajor, tb ? CblasTrans : CblasNoTrans, CblasTrans, k, m, n, 1.0f,
                    kl_f32(b), ldb, dc, n, beta0, kl_f32(c->din[0]), lda);
    if (c->din[1] && !tb)
        cblas_sgemm(CblasRowMajor, ta ? CblasNoTrans : CblasTrans, CblasNoTrans, k, n, m, 1.0f,
                    kl_f32(a), lda, dc, n, beta1, kl_f32(c->din[1]), ldb);
    else if (c->din[1])
        cblas_sgemm(CblasRowMajor, CblasTrans, ta ? CblasTrans : CblasNoTrans, n, k, m, 1.0f, dc, n,
                    kl_f32(a), lda, beta1, kl_f32(c->din[1]), ldb);
}

const kl__op_def kl__op_matmul = {
    .name = "matmul",
    .min_in = 2,
    .max_in = 2,
    .shape = matmul_shape,
    .cpu = {.forward = matmul_forward, .backward = matmul_backward, .fresh_grads = true},
    .cuda = KL__CUDA_KERNELS(matmul)};

kl_node kl_matmul(kl_graph *g, kl_node a, kl_node b, bool trans_a, bool trans_b)
{
    kl__attr at = {.matmul = {trans_a, trans_b}};
    return kl__graph_add(g, KL__OP_MATMUL, (kl_node[]){a, b}, 2, &at);
}

/* linear: x (..., in) W^T (in, out) + b (out). Leading axes are folded into rows, so
 * (N, T, in) inputs work unchanged. */
static kl_status linear_shape(kl__node *n, const kl__node *const *in, kl_error *err)
{
    const kl__node *x = in[0], *w = in[1];
    char sx[96], sw[96];
    kl_status st;
    if ((st = kl__expect_f32("linear", x, err)) || (st = kl__expect_ndim("linear", w, 2, 2, err)))
        return st;
    if (x->shape.d[x->shape.ndim - 1] != w->shape.d[1] || w->batched)
        return kl_error_set(err, KL_ESHAPE,
                            "linear: input %s does not fit weight %s (out, in): the last axis of "
                            "the input must be 'in'",
                            kl_shape_str(&x->shape, sx, sizeof sx),
                            kl_shape_str(&w->shape, sw, sizeof sw));
    if (n->nin == 3 && (in[2]->shape.ndim != 1 || in[2]->shape.d[0] != w->shape.d[0]))
        return kl_error_set(err, KL_ESHAPE, "linear: bias %s should be (%lld) for weight %s",
                            kl_shape_str(&in[2]->shape, sx, sizeof sx), (long long)w->shape.d[0],
                            kl_shape_str(&w->shape, sw, sizeof sw));
    n->shape = x->shape;
    n->shape.d[n->shape.ndim - 1] = w->shape.d[0];
    n->batched = x->batched;
    return KL_OK;
}

enum { GEMV_ROWS = 7 }; /* linear's forward on at most this many rows: one GEMV a row */

static kl_status linear_forward(kl__ctx *c, kl_error *err)
{
    const kl_tensor *x = c->in[0], *w = c->in[1];
    int out = (int)w->shape.d[0], inf = (int)w->shape.d[1], rows = (int)kl__rows(x);
    float *y = kl_f32(c->out); /* (rows, out) */
    /* A few rows (serving a request or a small dynamic batch): y_r = W x_r, one GEMV a row.
     * OpenBLAS's sgemm packs all of W on every call, which for so few rows costs more than the
     * products; past GEMV_ROWS rows sgemm wins (bench/RESULTS.md, "After the GEMV path
     * for few rows"). */
    if (rows <= GEMV_ROWS)
        for (int r = 0; r < rows; r++)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, out, inf, 1.0f, kl_f32(w), inf,
                        kl_f32(x) + (size_t)r * inf, 1, 0.0f, y + (size_t)r * out, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, out, inf, 1.0f, kl_f32(x), inf,
                    kl_f32(w), inf, 0.0f, y, out);
    if (c->nin == 3) {
        const float *b = kl_f32(c->in[2]);
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < out; j++)
                y[(size_t)r * out + j] += b[j];
    }
    return KL_OK;
}

static void linear_backward(kl__ctx *c)
{
    const kl_tensor *x = c->in[0], *w = c->in[1];
    int out = (int)w->shape.d[0], inf = (int)w->shape.d[1], rows = (int)kl__rows(x);
    const float *dy = kl_f32(c->dout); /* (rows, out) */
    if (c->din[0])                     /* dx (rows, in) += dy W */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, inf, out, 1.0f, dy, out,
                    kl_f32(w), inf, c->din_fresh[0] ? 0.0f : 1.0f, kl_f32(c->din[0]), inf);
    if (c->din[1]) /* dW (out, in) += dy^T x */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, inf, rows, 1.0f, dy, out,
                    kl_f32(x), inf, 1.0f, kl_f32(c->din[1]), inf);
    if (c->nin == 3 && c->din[2]) {
        float *db = kl_f32(c->din[2]);
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < out; j++)
                db[j] += dy[(size_t)r * out + j];
    }
}

const kl__op_def kl__op_linear = {
    .name = "linear",
    .min_in = 2,
    .max_in = 3,
    .shape = linear_shape,
    .cpu = {.forward = linear_forward, .backward = linear_backward, .fresh_grads = true},
    .cuda = KL__CUDA_KERNELS(linear)};

kl_node kl_linear(kl_graph *g, kl_node x, kl_node w, kl_node b)
{
    if (b == KL_NONE)
        return kl__graph_add(g, KL__OP_LINEAR, (kl_node[]){x, w}, 2, NULL);
    return kl__graph_add(g, KL__OP_LINEAR, (kl_node[]){x, w, b}, 3, NULL);
}

/* bias_add: x (N, C, ...) + b (C) along axis 1, the channel axis of NCHW and of (N, C). */
static kl_status bias_add_shape(kl__node *n, const kl__node *const *in, kl_error *err)
{
    const kl__node *x = in[0], *b = in[1];
    char sx[96], sb[96];
    kl_status st;
    if ((st = kl__expect_ndim("bias_add", x, 2, 4, err)) ||
        (st = kl__expect_f32("bias_add", x, err)))
        return st;
    if (b->shape.ndim != 1 || b->shape.d[0] != x->shape.d[1] || b->batched)
        return kl_error_set(err, KL_ESHAPE, "bias_add: bias %s should be (%lld) for input %s",
                            kl_shape_str(&b->shape, sb, sizeof sb), (long long)x->shape.d[1],
                            kl_shape_str(&x->shape, sx, sizeof sx));
    n->shape = x->shape;
    n->batched = x->batched;
    return KL_OK;
}

static void bias_dims(const kl_tensor *x, int64_t *outer, int64_t *ch, int64_t *inner)
{
    *outer = x->shape.d[0];
    *ch = x->shape.d[1];
    *inner = kl_numel(x) / (*outer * *ch);
}

/* bias_add runs on the graph's pool (ops/par.h): forward and dx over rows (o, k) of inner
 * elements, db over channels, each channel summed over o in order by one thread, so every split
 * gives the same bits. Loops under BIAS_PAR_MIN floats stay on the calling thread. */
#define BIAS_PAR_MIN 32768

static void bias_rows(void *arg, int64_t lo, int64_t hi)
{
    const kl__ctx *c = arg;
    int64_t outer, ch, inner;
    bias_dims(c->in[0], &outer, &ch, &inner);
    const float *x = kl_f32(c->in[0]), *b = kl_f32(c->in[1]);
    float *y = kl_f32(c->out);
    for (int64_t r = lo; r < hi; r++) {
        size_t base = (size_t)(r * inner);
        float bk = b[r % ch];
        for (int64_t i = 0; i < inner; i++)
            y[base + i] = x[base + i] + bk;
    }
}

static int64_t bias_min_rows(const kl_tensor *x, int64_t rows)
{
    return BIAS_PAR_MIN / (kl_numel(x) / rows) + 1;
}

static kl_status bias_add_forward(kl__ctx *c, kl_error *err)
{
    (void)err;
    int64_t outer, ch, inner;
    bias_dims(c->in[0], &outer, &ch, &inner);
    kl__par_for(c->par, outer * ch, 1, bias_min_rows(c->in[0], outer * ch), bias_rows, c);
    return KL_OK;
}

static void bias_dx_range(void *arg, int64_t lo, int64_t hi)
{
    const kl__ctx *c = arg;
    const float *dy = kl_f32(c->dout);
    float *dx = kl_f32(c->din[0]);
    const bool fresh = c->din_fresh[0];
    for (int64_t i = lo; i < hi; i++)
        dx[i] = (fresh ? 0.0f : dx[i]) + dy[i];
}

typedef struct bias_grad_job {
    const float *dy;   /* (outer, ch, inner) */
    const float *relu; /* a ReLU's output laid out as dy, whose zeros mask dy; or NULL */
    int64_t outer, ch, inner;
    float *db; /* (ch) */
} bias_grad_job;

/* Four partial sums break the add-latency chain (fixed order: deterministic). With mask, the
 * values are relu backward's, dy where mask > 0 else +0 (a select: the same floats). */
static double row_sum(const float *row, const float *mask, int64_t inner)
{
    double s4[4] = {0, 0, 0, 0};
    int64_t i = 0;
    if (mask) {
        for (; i + 4 <= inner; i += 4)
            for (int q = 0; q < 4; q++)
                s4[q] += mask[i + q] > 0.0f ? row[i + q] : 0.0f;
        for (; i < inner; i++)
            s4[0] += mask[i] > 0.0f ? row[i] : 0.0f;
    } else {
        for (; i + 4 <= inner; i += 4)
            for (int q = 0; q < 4; q++)
                s4[q] += row[i + q];
        for (; i < inner; i++)
            s4[0] += row[i];
    }
    return (s4[0] + s4[1]) + (s4[2] + s4[3]);
}

static void bias_db_channels(void *arg, int64_t lo, int64_t hi)
{
    const bias_grad_job *j = arg;
    int64_t ch = j->ch, inner = j->inner;
    for (int64_t o = 0; o < j->outer; o++)
        for (int64_t k = lo; k < hi; k++) {
            size_t at = (size_t)((o * ch + k) * inner);
            j->db[k] += (float)row_sum(j->dy + at, j->relu ? j->relu + at : NULL, inner);
        }
}

static void bias_grad(kl__par *par, const float *dy, const float *relu, int64_t outer, int64_t ch,
                      int64_t inner, float *db)
{
    bias_grad_job j = {dy, relu, outer, ch, inner, db};
    if (outer * inner <= 0)
        return;
    kl__par_for(par, ch, 1, BIAS_PAR_MIN / (outer * inner) + 1, bias_db_channels, &j);
}

void kl__bias_grad(kl__par *par, const float *dy, int64_t outer, int64_t ch, int64_t inner,
                   float *db)
{
    bias_grad(par, dy, NULL, outer, ch, inner, db);
}

void kl__bias_grad_relu(kl__par *par, const float *dy, const float *y, int64_t outer, int64_t ch,
                        int64_t inner, float *db)
{
    bias_grad(par, dy, y, outer, ch, inner, db);
}

static void bias_add_backward(kl__ctx *c)
{
    int64_t outer, ch, inner;
    bias_dims(c->in[0], &outer, &ch, &inner);
    if (c->din[0])
        kl__par_for(c->par, kl_numel(c->dout), 1024, BIAS_PAR_MIN, bias_dx_range, c);
    if (c->din[1])
        kl__bias_grad(c->par, kl_f32(c->dout), outer, ch, inner, kl_f32(c->din[1]));
}

const kl__op_def kl__op_bias_add = {
    .name = "bias_add",
    .min_in = 2,
    .max_in = 2,
    .shape = bias_add_shape,
    .cpu = {.forward = bias_add_forward, .backward = bias_add_backward, .fresh_grads = true},
    .cuda = KL__CUDA_KERNELS(bias_add)};

kl_node kl_bias_add(kl_graph *g, kl_node x, kl_node b)
{
    return kl__graph_add(g, KL__OP_BIAS_ADD, (kl_node[]){x, b}, 2, NULL);
}
