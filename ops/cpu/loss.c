/* Loss ops: softmax cross-entropy (fused log-softmax, with label smoothing) and mean squared
 * error. Both reduce a batch to one unbatched scalar, the mean over the batch being run, which
 * is what kl_graph_compile accepts as a loss; sums are kept in double. */
#include <math.h>

#include "ops/graph_impl.h"

/* softmax_xent: logits (N, C) f32 and labels (N) i32 give the mean over the N rows of
 * -sum_j q_j log softmax(logits)_j, with q = (1 - s) onehot(label) + s / C (PyTorch's label
 * smoothing). The probabilities are saved for backward, which is then one subtraction. */
static kl_status xent_shape(kl__node *n, const kl__node *const *in, kl_error *err)
{
    const kl__node *x = in[0], *y = in[1];
    float s = n->attr.xent.smoothing;
    char sx[96], sy[96];
    kl_status st;
    if (!(s >= 0.0f && s < 1.0f))
        return kl_error_set(err, KL_EINVAL,
                            "softmax_xent: label smoothing %g is outside [0, 1); 0 turns it off",
                            (double)s);
    if ((st = kl__expect_ndim("softmax_xent", x, 2, 2, err)) ||
        (st = kl__expect_f32("softmax_xent", x, err)))
        return st;
    if (y->dtype != KL_I32)
        return kl_error_set(err, KL_EINVAL,
                            "softmax_xent: labels must be an i32 input of class indices, got %s",
                            kl_dtype_name(y->dtype));
    if (y->shape.ndim != 1 || y->shape.d[0] != x->shape.d[0] || y->batched != x->batched)
        return kl_error_set(err, KL_ESHAPE,
                            "softmax_xent: labels %s should be (N) for logits %s (N, C): one "
                            "class index per row",
                            kl_shape_str(&y->shape, sy, sizeof sy),
                            kl_shape_str(&x->shape, sx, sizeof sx));
    n->shape = KL_SHAPE(1);
    n->batched = false;
    n->saved_n = (size_t)kl_shape_numel(&x->shape); /* the softmax, (N, C) */
    n->scratch_n = 0;
    return KL_OK;
}

static kl_status xent_forward(kl__ctx *c, kl_error *err)
{
    const kl_tensor *x = c->in[0];
    int64_t N = x->shape.d[0], C = x->shape.d[1];
    const float *logits = kl_f32(x);          /* (N, C) */
    const int32_t *labels = kl_i32(c->in[1]); /* (N) */
    float *p = c->saved;                      /* (N, C) */
    double s = c->attr->xent.smoothing, total = 0;
    for (int64_t i = 0; i < N; i++) {
        const float *row = logits + i * C;
        float *prow = p + i * C;
        int32_t y = labels[i];
        if (y < 0 || y >= C)
            return kl_error_set(err, KL_ERANGE,
                                "softmax_xent: label %d at row %lld is outside [0, %lld); labels "
                                "must be class indices below the model's %lld outputs",
                                (int)y, (long long)i, (long long)C, (long long)C);
        /* Shifting by the row's maximum keeps every exp() at most 1, so large logits cannot
         * overflow; log p_j = x_j - lse follows without ever forming log(0). */
        float mx = row[0];
        for (int64_t j = 1; j < C; j++)
            mx = row[j] > mx ? row[j] : mx;
        double sum = 0, sum_x = 0;
        for (int64_t j = 0; j < C; j++) {
            sum += exp((double)row[j] - mx);
            sum_x += row[j];
        }
        double lse = mx + log(sum);
        for (int64_t j = 0; j < C; j++)
            prow[j] = (float)exp((double)row[j] - lse);
        /* -sum_j q_j log p_j = (1 - s)(lse - x_y) + (s / C) sum_j (lse - x_j). */
        total += (1.0 - s) * (lse - row[y]) + s / (double)C * ((double)C * lse - sum_x);
    }
    kl_f32(c->out)[0] = (float)(total / (double)N);
    return KL_OK;
}

/* d(mean loss)/d x_ij = (p_ij - q_ij) / N. */
static void xent_backward(kl__ctx *c)
{
    if (!c->din[0])
        return;
    int64_t N = c->in[0]->shape.d[0], C = c->in[0]->shape.d[1];
    const int32_t *labels = kl_i32(c->in[1]); /* (N) */
    const float *p = c->saved;                /* (N, C) */
    float *dx = kl_f32(c->din[0]);            /* (N, C) */
    float s = c->attr->xent.smoothing;
    float scale = kl_f32(c->dout)[0] / (float)N, off = s / (float)C;
    for (int64_t i = 0; i < N; i++) {
        for (int64_t j = 0; j < C; j++)
            dx[i * C + j] += scale * (p[i * C + j] - off);
        /* Forward has checked the labels; this guard only keeps a backward called after a failed
         * forward from writing outside the row. */
        if (labels[i] >= 0 && labels[i] < C)
            dx[i * C + labels[i]] -= scale * (1.0f - s);
    }
}

const kl__op_def kl__op_softmax_xent = {.name = "softmax_xent",
                                        .min_in = 2,
                                        .max_in = 2,
                                        .shape = xent_shape,
                                        .cpu = {.forward = xent_forward, .backward = xent_backward},
                                        .cuda = KL__CUDA_KERNELS(softmax_xent)};

kl_node kl_softmax_xent(kl_graph *g, kl_node logits, kl_node labels, float smoothing)
{
    kl__attr at = {.xent = {smoothing}};
    return kl__graph_add(g, KL__OP_SOFTMAX_XENT, (kl_node[]){logits, labels}, 2, &at);
}

/* mse: mean over every element of (pred - target)^2, for pred and target of one shape. */
static kl_status mse_shape(kl__node *n, const kl__node *const *in, kl_error *err)
{
    kl_status st;
    if ((st = kl__expect_f32("mse", in[0], err)) || (st = kl__expect_f32("mse", in[1], err)) ||
        (st = kl__expect_same("mse", in[0], in[1], err)))
        return st;
    n->shape = KL_SHAPE(1);
    n->batched = false;
    n->saved_n = n->scratch_n = 0;
    return KL_OK;
}

static kl_status mse_forward(kl__ctx *c, kl_error *err)
{
    (void)err; /* cannot fail */
    const float *p = kl_f32(c->in[0]), *t = kl_f32(c->in[1]);
    int64_t count = kl_numel(c->in[0]);
    double sum = 0;
    for (int64_t i = 0; i < count; i++) {
        double d = (double)p[i] - t[i];
        sum += d * d;
    }
    kl_f32(c->out)[0] = (float)(sum / (double)count);
    return KL_OK;
}

/* d/dp = 2 (p - t) / count, and its negative for the target. */
static void mse_backward(kl__ctx *c)
{
    const float *p = kl_f32(c->in[0]), *t = kl_f32(c->in[1]);
    int64_t count = kl_numel(c->in[0]);
    float scale = 2.0f * kl_f32(c->dout)[0] / (float)count;
    float *dp = c->din[0] ? kl_f32(c->din[0]) : NULL, *dt = c->din[1] ? kl_f32(c->din[1]) : NULL;
    for (int64_t i = 0; i < count; i++) {
        float g = scale * (p[i] - t[i]);
        if (dp)
            dp[i] += g;
        if (dt)
            dt[i] -= g;
    }
}

const kl__op_def kl__op_mse = {.name = "mse",
                               .min_in = 2,
                               .max_in = 2,
                               .shape = mse_shape,
                               .cpu = {.forward = mse_forward, .backward = mse_backward},
                               .cuda = KL__CUDA_KERNELS(mse)};

kl_node kl_mse(kl_graph *g, kl_node pred, kl_node target)
{
    return kl__graph_add(g, KL__OP_MSE, (kl_node[]){pred, target}, 2, NULL);
}
