/* Normalisation ops: batchnorm over every axis but the channel axis 1, with PyTorch's running
 * statistics, and layernorm over the last axis. Both save the mean and inverse standard deviation
 * they normalised with, so backward never recomputes statistics; every reduction is in double. */
#include <math.h>

#include "ops/graph_impl.h"

/* batchnorm: x (N, C, ...) normalised per channel, y = gamma (x - mean) invstd + beta. Train mode
 * uses the batch's mean and biased variance and moves the running statistics towards them
 * (running_var towards the unbiased variance, as PyTorch does); eval mode uses the running
 * statistics. saved holds mean (C), invstd (C) and one flag: whether they were batch statistics,
 * which decides the backward formula even if the mode changes between forward and backward. */
static const char *const bn_input_names[5] = {"x", "gamma", "beta", "running_mean", "running_var"};

static kl_status bn_shape(kl__node *n, const kl__node *const *in, kl_error *err)
{
    const kl__node *x = in[0];
    float momentum = n->attr.norm.momentum, eps = n->attr.norm.eps;
    char sx[96], sp[96];
    kl_status st;
    if (!(momentum >= 0.0f && momentum <= 1.0f))
        return kl_error_set(err, KL_EINVAL, "batchnorm: momentum %g is outside [0, 1]",
                            (double)momentum);
    if (!(eps > 0.0f && isfinite(eps)))
        return kl_error_set(err, KL_EINVAL, "batchnorm: eps %g must be positive (1e-5 is usual)",
                            (double)eps);
    if ((st = kl__expect_ndim("batchnorm", x, 2, 4, err)) ||
        (st = kl__expect_f32("batchnorm", x, err)))
        return st;
    int64_t C = x->shape.d[1];
    for (int i = 1; i < 5; i++) {
        if ((st = kl__expect_f32("batchnorm", in[i], err)))
            return st;
        if (in[i]->shape.ndim != 1 || in[i]->shape.d[0] != C || in[i]->batched)
            return kl_error_set(err, KL_ESHAPE,
                                "batchnorm: %s %s should be (%lld), one value per channel of "
                                "input %s (N, C, ...)",
                                bn_input_names[i], kl_shape_str(&in[i]->shape, sp, sizeof sp),
                                (long long)C, kl_shape_str(&x->shape, sx, sizeof sx));
    }
    /* Forward writes the running statistics, which only buffers may own. */
    for (int i = 3; i < 5; i++)
        if (in[i]->kind != KL__BUFFER)
            return kl_error_set(err, KL_EINVAL,
                                "batchnorm: %s must be a kl_buffer (it is updated in train mode)",
                                bn_input_names[i]);
    n->shape = x->shape;
    n->batched = x->batched;
    n->saved_n = 2 * (size_t)C + 1;
    n->scratch_n = 0;
    return KL_OK;
}

/* x viewed as (N, C, S): S is H*W for NCHW, 1 for (N, C). */
static void bn_dims(const kl_tensor *x, int64_t *N, int64_t *C, int64_t *S)
{
    *N = x->shape.d[0];
    *C = x->shape.d[1];
    *S = kl_numel(x) / (*N * *C);
}

/* The batch mean and biased variance of channel k (two passes, for accuracy). */
static void bn_channel_stats(const float *x, int64_t N, int64_t C, int64_t S, int64_t k,
                             double *mean, double *var)
{
    double sum = 0, sq = 0;
    for (int64_t i = 0; i < N; i++) {
        const float *p = x + (i * C + k) * S;
        for (int64_t s = 0; s < S; s++)
            sum += p[s];
    }
    *mean = sum / (double)(N * S);
    for (int64_t i = 0; i < N; i++) {
        const float *p = x + (i * C + k) * S;
        for (int64_t s = 0; s < S; s++) {
            double d = p[s] - *mean;
            sq += d * d;
        }
    }
    *var = sq / (double)(N * S);
}

static kl_status bn_forward(kl__ctx *c, kl_error *err)
{
    int64_t N, C, S;
    bn_dims(c->in[0], &N, &C, &S);
    int64_t M = N * S;
    const float *x = kl_f32(c->in[0]), *gamma = kl_f32(c->in[1]), *beta = kl_f32(c->in[2]);
    /* The running statistics are kl_buffer storage, writable by design; the ctx holds every input
     * as const because most ops must not write them. */
    float *rmean = (float *)kl_f32(c->in[3]), *rvar = (float *)kl_f32(c->in[4]); /* (C) */
    float *mean = c->saved, *invstd = c->saved + C;                              /* (C), (C) */
    float momentum = c->attr->norm.momentum;
    double eps = c->attr->norm.eps;
    char sx[96];
    if (c->train && M < 2)
        return kl_error_set(err, KL_ESHAPE,
                            "batchnorm: training needs more than one value per channel, got "
                            "input %s; use a batch of 2 or more, or eval mode",
                            kl_shape_str(&c->in[0]->shape, sx, sizeof sx));
    c->saved[2 * C] = c->train ? 1.0f : 0.0f;
    for (int64_t k = 0; k < C; k++) {
        if (c->train) {
            double m, v;
            bn_channel_stats(x, N, C, S, k, &m, &v);
            mean[k] = (float)m;
            invstd[k] = (float)(1.0 / sqrt(v + eps));
            rmean[k] = (float)((1.0 - momentum) * rmean[k] + (double)momentum * m);
            rvar[k] = (float)((1.0 - momentum) * rvar[k] +
                              (double)momentum * v * (double)M / (double)(M - 1));
        } else {
            mean[k] = rmean[k];
            invstd[k] = (float)(1.0 / sqrt((double)rvar[k] + eps));
        }
    }
    float *y = kl_f32(c->out); /* (N, C, S) */
    for (int64_t i = 0; i < N; i++)
        for (int64_t k = 0; k < C; k++) {
            float a = gamma[k] * invstd[k], b = beta[k] - a * mean[k];
            int64_t base = (i * C + k) * S;
            for (int64_t s = 0; s < S; s++)
                y[base + s] = a * x[base + s] + b;
        }
    return KL_OK;
}

/* With batch statistics: dx = gamma invstd / M (M dy - sum(dy) - xhat sum(dy xhat)). With
 * running statistics, which are constants: dx = gamma invstd dy. Both: dgamma = sum(dy xhat),
 * dbeta = sum(dy), per channel over N and S. */
static void bn_backward(kl__ctx *c)
{
    int64_t N, C, S;
    bn_dims(c->in[0], &N, &C, &S);
    double M = (double)(N * S);
    const float *x = kl_f32(c->in[0]), *gamma = kl_f32(c->in[1]); /* (N, C, S), (C) */
    const float *dy = kl_f32(c->dout);                            /* (N, C, S) */
    const float *mean = c->saved, *invstd = c->saved + C;         /* (C), (C) */
    bool batch_stats = c->saved[2 * C] != 0.0f;
    float *dx = c->din[0] ? kl_f32(c->din[0]) : NULL;
    for (int64_t k = 0; k < C; k++) {
        double sdy = 0, sdyx = 0;
        for (int64_t i = 0; i < N; i++) {
            int64_t base = (i * C + k) * S;
            for (int64_t s = 0; s < S; s++) {
                double xhat = ((double)x[base + s] - mean[k]) * invstd[k];
                sdy += dy[base + s];
                sdyx += dy[base + s] * xhat;
            }
        }
        if (c->din[1])
            kl_f32(c->din[1])[k] += (float)sdyx;
        if (c->din[2])
            kl_f32(c->din[2])[k] += (float)sdy;
        if (!dx)
            continue;
        double a = (double)gamma[k] * invstd[k];
        for (int64_t i = 0; i < N; i++) {
            int64_t base = (i * C + k) * S;
            for (int64_t s = 0; s < S; s++) {
                if (!batch_stats) {
                    dx[base + s] += (float)(a * dy[base + s]);
                    continue;
                }
                double xhat = ((double)x[base + s] - mean[k]) * invstd[k];
                dx[base + s] += (float)(a / M * (M * dy[base + s] - sdy - xhat * sdyx));
            }
        }
    }
}

const kl__op_def kl__op_batchnorm = {.name = "batchnorm",
                                     .min_in = 5,
                                     .max_in = 5,
                                     .shape = bn_shape,
                                     .cpu = {.forward = bn_forward, .backward = bn_backward},
                                     .cuda = KL__CUDA_KERNELS(batchnorm)};

kl_node kl_batchnorm(kl_graph *g, kl_node x, kl_node gamma, kl_node beta, kl_node running_mean,
                     kl_node running_var, float momentum, float eps)
{
    kl__attr at = {.norm = {momentum, eps}};
    return kl__graph_add(g, KL__OP_BATCHNORM,
                         (kl_node[]){x, gamma, beta, running_mean, running_var}, 5, &at);
}

/* layernorm: each row of x (..., D) normalised over its D values, y = gamma xhat + beta with
 * gamma, beta (D). saved holds mean (rows) then invstd (rows). */
static kl_status ln_shape(kl__node *n, const kl__node *const *in, kl_error *err)
{
    const kl__node *x = in[0];
    float eps = n->attr.norm.eps;
    char sx[96], sp[96];
    kl_status st;
    if (!(eps > 0.0f && isfinite(eps)))
        return kl_error_set(err, KL_EINVAL, "layernorm: eps %g must be positive (1e-5 is usual)",
                            (double)eps);
    if ((st = kl__expect_ndim("layernorm", x, x->batched ? 2 : 1, 4, err)) ||
        (st = kl__expect_f32("layernorm", x, err)))
        return st;
    int64_t D = x->shape.d[x->shape.ndim - 1];
    for (int i = 1; i < 3; i++) {
        if ((st = kl__expect_f32("layernorm", in[i], err)))
            return st;
        if (in[i]->shape.ndim != 1 || in[i]->shape.d[0] != D || in[i]->batched)
            return kl_error_set(
                err, KL_ESHAPE, "layernorm: %s %s should be (%lld), the last axis of input %s",
                i == 1 ? "gamma" : "beta", kl_shape_str(&in[i]->shape, sp, sizeof sp), (long long)D,
                kl_shape_str(&x->shape, sx, sizeof sx));
    }
    n->shape = x->shape;
    n->batched = x->batched;
    n->saved_n = 2 * (size_t)(kl_shape_numel(&x->shape) / D);
    n->scratch_n = 0;
    return KL_OK;
}

static kl_status ln_forward(kl__ctx *c, kl_error *err)
{
    (void)err; /* cannot fail */
    const kl_tensor *xt = c->in[0];
    int64_t rows = kl__rows(xt), D = xt->shape.d[xt->shape.ndim - 1];
    const float *x = kl_f32(xt), *gamma = kl_f32(c->in[1]), *beta = kl_f32(c->in[2]);
    float *y = kl_f32(c->out);                         /* (rows, D) */
    float *mean = c->saved, *invstd = c->saved + rows; /* (rows), (rows) */
    double eps = c->attr->norm.eps;
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * D;
        double sum = 0, sq = 0;
        for (int64_t j = 0; j < D; j++)
            sum += xr[j];
        double m = sum / (double)D;
        for (int64_t j = 0; j < D; j++)
            sq += ((double)xr[j] - m) * ((double)xr[j] - m);
        double is = 1.0 / sqrt(sq / (double)D + eps);
        mean[r] = (float)m;
        invstd[r] = (float)is;
        for (int64_t j = 0; j < D; j++)
            y[r * D + j] = (float)(((double)xr[j] - m) * is) * gamma[j] + beta[j];
    }
    return KL_OK;
}

/* Per row, with g = dy gamma: dx = invstd / D (D g - sum(g) - xhat sum(g xhat)); dgamma and dbeta
 * sum dy xhat and dy over the rows. */
static void ln_backward(kl__ctx *c)
{
    const kl_tensor *xt = c->in[0];
    int64_t rows = kl__rows(xt), D = xt->shape.d[xt->shape.ndim - 1];
    const float *x = kl_f32(xt), *gamma = kl_f32(c->in[1]);
    const float *dy = kl_f32(c->dout);                       /* (rows, D) */
    const float *mean = c->saved, *invstd = c->saved + rows; /* (rows), (rows) */
    float *dx = c->din[0] ? kl_f32(c->din[0]) : NULL;
    float *dgamma = c->din[1] ? kl_f32(c->din[1]) : NULL;
    float *dbeta = c->din[2] ? kl_f32(c->din[2]) : NULL;
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * D, *dyr = dy + r * D;
        double m = mean[r], is = invstd[r], sg = 0, sgx = 0;
        for (int64_t j = 0; j < D; j++) {
            double xhat = ((double)xr[j] - m) * is, g = (double)dyr[j] * gamma[j];
            sg += g;
            sgx += g * xhat;
            if (dgamma)
                dgamma[j] += (float)(dyr[j] * xhat);
            if (dbeta)
                dbeta[j] += dyr[j];
        }
        if (!dx)
            continue;
        for (int64_t j = 0; j < D; j++) {
            double xhat = ((double)xr[j] - m) * is, g = (double)dyr[j] * gamma[j];
            dx[r * D + j] += (float)(is / (double)D * ((double)D * g - sg - xhat * sgx));
        }
    }
}

const kl__op_def kl__op_layernorm = {.name = "layernorm",
                                     .min_in = 3,
                                     .max_in = 3,
                                     .shape = ln_shape,
                                     .cpu = {.forward = ln_forward, .backward = ln_backward},
                                     .cuda = KL__CUDA_KERNELS(layernorm)};

kl_node kl_layernorm(kl_graph *g, kl_node x, kl_node gamma, kl_node beta, float eps)
{
    kl__attr at = {.norm = {0.0f, eps}};
    return kl__graph_add(g, KL__OP_LAYERNORM, (kl_node[]){x, gamma, beta}, 3, &at);
}
