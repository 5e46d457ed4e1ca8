/* Synthetic data sets and a minimal mini-batch fit loop for `kiln demo` and the learning tests.
 * Everything random is drawn from the counter-based generator, so a seed fixes the data, the
 * initial weights and the batch order alike. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/clock.h"
#include "kiln/data.h"
#include "kiln/rng.h"
#include "kiln/step.h"
#include "kiln/toy.h"
#include "kiln/train.h"

static kl_status data_alloc(kl_toy_data *d, kl_shape xs, int classes, kl_error *err)
{
    memset(d, 0, sizeof *d);
    d->classes = classes;
    d->x = kl_tensor_new(KL_F32, xs, err);
    d->y = d->x ? kl_tensor_new(KL_I32, KL_SHAPE(xs.d[0]), err) : NULL;
    if (!d->y) {
        kl_toy_data_free(d);
        return err ? err->status : KL_ENOMEM;
    }
    return KL_OK;
}

void kl_toy_data_free(kl_toy_data *d)
{
    kl_tensor_free(d->x);
    kl_tensor_free(d->y);
    d->x = d->y = NULL;
}

kl_status kl_toy_xor(kl_toy_data *d, kl_error *err)
{
    kl_status st = data_alloc(d, KL_SHAPE(4, 2), 2, err);
    if (st != KL_OK)
        return st;
    for (int i = 0; i < 4; i++) {
        kl_f32(d->x)[2 * i] = (float)(i & 1);
        kl_f32(d->x)[2 * i + 1] = (float)(i >> 1);
        kl_i32(d->y)[i] = (i & 1) ^ (i >> 1);
    }
    return KL_OK;
}

kl_status kl_toy_spirals(kl_toy_data *d, int n, int classes, float noise, uint64_t seed,
                         kl_error *err)
{
    if (n < classes || classes < 2)
        return kl_error_set(err, KL_EINVAL, "spirals: need at least 2 classes and one point each");
    kl_status st = data_alloc(d, KL_SHAPE(n, 2), classes, err);
    if (st != KL_OK)
        return st;
    float *x = kl_f32(d->x);
    kl_rng_fill_normal(seed, KL_RNG_SAMPLE, 1, x, (size_t)n * 2, 0.0f, noise);
    for (int i = 0; i < n; i++) {
        int k = i % classes;
        float r = (float)(i / classes + 1) / (float)(n / classes + 1); /* radius in (0, 1] */
        float t = 4.0f * r + 2.0f * 3.14159265f * (float)k / (float)classes;
        x[2 * i] += r * cosf(t);
        x[2 * i + 1] += r * sinf(t);
        kl_i32(d->y)[i] = k;
    }
    return KL_OK;
}

kl_status kl_toy_strokes(kl_toy_data *d, int n, int size, float noise, uint64_t seed, kl_error *err)
{
    if (size < 6 || n < 1)
        return kl_error_set(err, KL_EINVAL, "strokes: images must be at least 6x6");
    kl_status st = data_alloc(d, KL_SHAPE(n, 1, size, size), 4, err);
    if (st != KL_OK)
        return st;
    float *x = kl_f32(d->x);
    kl_rng_fill_normal(seed, KL_RNG_SAMPLE, 2, x, (size_t)n * size * size, 0.0f, noise);
    for (int i = 0; i < n; i++) {
        int k = i % 4, len = size / 2;
        int r0 = (int)(kl_rng_uniform(seed, KL_RNG_SAMPLE, 3, 2 * (uint64_t)i) * (size - len));
        int c0 = (int)(kl_rng_uniform(seed, KL_RNG_SAMPLE, 3, 2 * (uint64_t)i + 1) * (size - len));
        float *img = x + (size_t)i * size * size;
        for (int s = 0; s < len; s++) {
            int r = k == 1 ? r0 + s : k == 0 ? r0 + len / 2 : r0 + s;
            int c = k == 0 ? c0 + s : k == 1 ? c0 + len / 2 : k == 2 ? c0 + s : c0 + len - 1 - s;
            img[r * size + c] += 1.0f;
        }
        kl_i32(d->y)[i] = k;
    }
    return KL_OK;
}

void kl_toy_model_free(kl_toy_model *m)
{
    kl_graph_free(m->g);
    m->g = NULL;
}

static kl_node dense(kl_graph *g, kl_node x, int in, int out, int layer)
{
    char wn[32], bn[32];
    snprintf(wn, sizeof wn, "fc%d.weight", layer);
    snprintf(bn, sizeof bn, "fc%d.bias", layer);
    kl_node w = kl_param(g, wn, KL_SHAPE(out, in), (kl_init){KL_INIT_HE_UNIFORM, 0, 0}, 0);
    kl_node b = kl_param(g, bn, KL_SHAPE(out), (kl_init){KL_INIT_ZEROS, 0, 0}, KL_PARAM_NO_DECAY);
    return kl_linear(g, x, w, b);
}

/* Adds the labels, the loss and compiles: the common tail of every toy model. */
static kl_status finish(kl_toy_model *m, kl_node logits, int64_t batch, uint64_t seed,
                        kl_error *err)
{
    m->logits = logits;
    m->y = kl_input(m->g, "labels", KL_I32, (kl_shape){0});
    m->loss = kl_softmax_xent(m->g, logits, m->y, 0.0f);
    kl_graph_mark_output(m->g, logits);
    kl_status st = kl_graph_compile(m->g, batch, m->loss, seed, err);
    if (st != KL_OK)
        kl_toy_model_free(m);
    return st;
}

kl_status kl_toy_mlp(kl_toy_model *m, int in, const int *hidden, int nhidden, int classes,
                     int64_t batch, uint64_t seed, kl_error *err)
{
    memset(m, 0, sizeof *m);
    if (!(m->g = kl_graph_new()))
        return kl_error_set(err, KL_ENOMEM, "out of memory creating a graph");
    m->x = kl_input(m->g, "x", KL_F32, KL_SHAPE(in));
    kl_node h = m->x;
    int width = in;
    for (int i = 0; i < nhidden; i++) {
        h = kl_relu(m->g, dense(m->g, h, width, hidden[i], i + 1));
        width = hidden[i];
    }
    return finish(m, dense(m->g, h, width, classes, nhidden + 1), batch, seed, err);
}

kl_status kl_toy_cnn(kl_toy_model *m, int size, int classes, int64_t batch, uint64_t seed,
                     kl_error *err)
{
    kl_init he = {KL_INIT_HE_UNIFORM, 0, 0}, zero = {KL_INIT_ZEROS, 0, 0};
    kl_init one = {KL_INIT_ONES, 0, 0};
    memset(m, 0, sizeof *m);
    if (!(m->g = kl_graph_new()))
        return kl_error_set(err, KL_ENOMEM, "out of memory creating a graph");
    kl_graph *g = m->g;
    m->x = kl_input(g, "x", KL_F32, KL_SHAPE(1, size, size));
    kl_node w1 = kl_param(g, "conv1.weight", KL_SHAPE(8, 1, 3, 3), he, 0);
    kl_node h = kl_conv2d(g, m->x, w1, 1, 1);
    h = kl_batchnorm(g, h, kl_param(g, "bn1.weight", KL_SHAPE(8), one, KL_PARAM_NO_DECAY),
                     kl_param(g, "bn1.bias", KL_SHAPE(8), zero, KL_PARAM_NO_DECAY),
                     kl_buffer(g, "bn1.running_mean", KL_SHAPE(8), zero),
                     kl_buffer(g, "bn1.running_var", KL_SHAPE(8), one), 0.1f, 1e-5f);
    h = kl_max_pool2d(g, kl_relu(g, h), 2, 2, 0);
    kl_node w2 = kl_param(g, "conv2.weight", KL_SHAPE(16, 8, 3, 3), he, 0);
    kl_node b2 = kl_param(g, "conv2.bias", KL_SHAPE(16), zero, KL_PARAM_NO_DECAY);
    h = kl_relu(g, kl_bias_add(g, kl_conv2d(g, h, w2, 1, 1), b2));
    h = kl_global_avg_pool(g, h);
    return finish(m, dense(g, h, 16, classes, 1), batch, seed, err);
}

/* Copies the samples idx[0..n) of d into the model's inputs. */
static void load_batch(kl_toy_model *m, const kl_toy_data *d, const int64_t *idx, int64_t n)
{
    kl_dataset kd = {.x = d->x, .y = d->y, .classes = d->classes};
    /* In memory: gathering cannot fail. */
    (void)kl_data_gather(&kd, idx, n, kl_f32(kl_graph_value(m->g, m->x)),
                         kl_graph_value(m->g, m->y)->data, NULL);
}

kl_status kl_toy_fit(kl_toy_model *m, const kl_toy_data *d, const kl_toy_fit_config *cfg, FILE *log,
                     float *final_loss, kl_error *err)
{
    kl_error local;
    if (!err)
        err = &local;
    if (cfg->batch < 1 || cfg->batch > kl_graph_max_batch(m->g) || cfg->epochs < 0)
        return kl_error_set(err, KL_EINVAL, "fit: batch %lld must be within 1..%lld",
                            (long long)cfg->batch, (long long)kl_graph_max_batch(m->g));
    int64_t n = d->x->shape.d[0], batch = cfg->batch, step = 0;
    int64_t steps_per_epoch = (n + batch - 1) / batch;
    kl_status st = kl_lr_check(&cfg->lr, err);
    if (st != KL_OK)
        return st;
    kl_step_config sc = {.optim = cfg->optim, .lr = cfg->lr};
    kl_step *train_step = kl_step_new(m->g, &sc, err);
    int64_t *idx = malloc((size_t)n * sizeof *idx);
    if (!train_step || !idx) {
        st = train_step ? kl_error_set(err, KL_ENOMEM, "out of memory starting to fit")
                        : err->status;
        goto out;
    }
    for (int epoch = 0; epoch < cfg->epochs; epoch++) {
        double t0 = kl_now(), loss_sum = 0;
        kl_data_shuffle(idx, n, cfg->seed, (uint64_t)epoch);
        kl_graph_set_mode(m->g, KL_MODE_TRAIN);
        for (int64_t s = 0; s < steps_per_epoch; s++, step++) {
            int64_t b = s * batch + batch <= n ? batch : n - s * batch;
            float loss = 0;
            if ((st = kl_graph_set_batch(m->g, b, err)) != KL_OK)
                goto out;
            load_batch(m, d, idx + s * batch, b);
            kl_step_begin(train_step);
            if ((st = kl_step_pass(train_step, cfg->seed, step, 0, &loss, err)) != KL_OK)
                goto out;
            if ((st = kl_step_end(train_step, step, loss, err)) != KL_OK) {
                st = kl_error_set(err, KL_ERANGE,
                                  "the loss diverged to %g at epoch %d; lower the learning rate",
                                  (double)loss, epoch + 1);
                goto out;
            }
            loss_sum += loss * (double)b;
        }
        float loss = (float)(loss_sum / (double)n);
        if (final_loss)
            *final_loss = loss;
        if (log) {
            float acc = 0;
            double dt = kl_now() - t0;
            if ((st = kl_toy_accuracy(m, d, &acc, err)) != KL_OK)
                goto out;
            fprintf(log, "  epoch %3d/%d  loss %.4f  train acc %5.1f%%  lr %.4g  %8.0f samples/s\n",
                    epoch + 1, cfg->epochs, (double)loss, 100.0 * acc,
                    (double)kl_step_lr(train_step, step - 1), (double)n / (dt > 0 ? dt : 1e-9));
            fflush(log);
        }
    }
out:
    kl_step_free(train_step);
    free(idx);
    return st;
}

/* The trainer's evaluation, on the toy model and data seen as a kiln model and data set. */
kl_status kl_toy_accuracy(kl_toy_model *m, const kl_toy_data *d, float *acc, kl_error *err)
{
    kl_model km = {.g = m->g, .x = m->x, .y = m->y, .output = m->logits, .loss = m->loss};
    km.opts.task = KL_TASK_CLASSIFICATION;
    kl_dataset kd = {.x = d->x, .y = d->y, .classes = d->classes};
    double loss, accuracy, mae;
    kl_status st = kl_evaluate(&km, &kd, &loss, &accuracy, &mae, err);
    *acc = (float)accuracy;
    return st;
}
