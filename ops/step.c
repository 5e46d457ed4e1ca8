/* The training step (include/kiln/step.h): the one sequence of gradient zeroing, forward,
 * backward, finiteness check, clipping and optimizer update that `kiln train` (trainers/train.c),
 * `kiln demo` (trainers/toy.c) and online learning (kiln serve) all run. In ops/ because it is
 * arithmetic on the graph's flat buffers and nothing else: serving may use it without depending
 * on the trainers. */
#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "kiln/step.h"
#include "ops/graph_impl.h"
#ifdef KILN_HAVE_CUDA
#include "ops/cuda/cuda.h"
#endif

struct kl_step {
    kl_graph *g;
    kl_optim *opt;
    kl_optim_segment *segs; /* one per parameter: whether weight decay applies */
    int nsegs;
    kl_lr_schedule lr;
    float clip_norm;
    bool check_grads;
    kl_optim_config optim;
    /* A device graph's optimizer state (kl_optim_state's layout, whose host copy checkpoints
     * read: kl_step_state_to_host), the clip's norm and its work space, in device memory. */
    float *dev_state, *dev_norm;
    double *dev_work;
};

#ifdef KILN_HAVE_CUDA
static kl_status cuda_failed(const char *what, kl_error *err)
{
    return kl_error_set(err, KL_EIO, "training step: %s on the CUDA device failed: %s", what,
                        kl__cuda_last_error());
}

static kl_status device_new(kl_step *s, kl_error *err)
{
    size_t n = kl_optim_state_size(s->opt);
    void *stream = s->g->stream;
    s->dev_norm = kl__cuda_alloc(sizeof(float));
    s->dev_work = kl__cuda_alloc(KL__CUDA_CLIP_WORK * sizeof(double));
    s->dev_state = n ? kl__cuda_alloc(n * sizeof(float)) : NULL;
    if (!s->dev_norm || !s->dev_work || (n && !s->dev_state))
        return kl_error_set(err, KL_ENOMEM,
                            "out of CUDA device memory for the optimizer state (%zu MiB): %s",
                            n * sizeof(float) >> 20, kl__cuda_last_error());
    if (kl__cuda_zero_async(s->dev_state, n * sizeof(float), stream) != 0 ||
        kl__cuda_stream_sync(stream) != 0)
        return cuda_failed("zeroing the optimizer state", err);
    return KL_OK;
}

static void device_free(kl_step *s)
{
    kl__cuda_free(s->dev_state);
    kl__cuda_free(s->dev_norm);
    kl__cuda_free(s->dev_work);
}

/* The device's clip and update. The loss came back with forward (once per pass: a later
 * speed-up keeps it on the device until a report); the norm is read only when check_grads asks
 * for it, and nothing else waits for the device. */
static kl_status device_end(kl_step *s, int64_t t, kl_error *err)
{
    kl_graph *g = s->g;
    size_t n = g->param_total;
    void *stream = g->stream;
    if (kl__cuda_set_device(g->device_index) != 0)
        return cuda_failed("selecting the device", err);
    if (s->clip_norm > 0 || s->check_grads) {
        if (kl__cuda_clip_grad_norm(g->dev_grads, n, s->clip_norm > 0 ? s->clip_norm : FLT_MAX,
                                    s->dev_norm, s->dev_work, stream) != 0)
            return kl_error_set(err, KL_EIO,
                                "training step: clipping could not be launched on the CUDA "
                                "device");
        float norm = 0;
        if (s->check_grads && kl__cuda_to_host_on(&norm, s->dev_norm, sizeof norm, stream) != 0)
            return cuda_failed("clipping the gradients", err);
        if (s->check_grads && !isfinite(norm))
            return kl_error_set(err, KL_ERANGE,
                                "the gradient norm is %g at step %lld: training diverged, the "
                                "step was not taken; lower the learning rate",
                                (double)norm, (long long)t + 1);
    }
    int64_t steps = kl_optim_steps(s->opt);
    if (kl__cuda_optim_step(&s->optim, steps, g->dev_params, g->dev_grads, s->dev_state, n,
                            kl_lr_at(&s->lr, t), s->segs, s->nsegs, stream) != 0)
        return kl_error_set(err, KL_EIO,
                            "training step: the optimizer update could not be launched on the "
                            "CUDA device (%zu parameters in %d segments)",
                            n, s->nsegs);
    kl_optim_set_steps(s->opt, steps + 1);
    return KL_OK;
}

static kl_status state_copy(kl_step *s, bool up, kl_error *err)
{
    size_t bytes = kl_optim_state_size(s->opt) * sizeof(float);
    float *host = kl_optim_state(s->opt);
    void *stream = s->g->stream;
    if (kl__cuda_set_device(s->g->device_index) != 0)
        return cuda_failed("selecting the device", err);
    int rc = up ? kl__cuda_to_device_async(s->dev_state, host, bytes, stream)
                : kl__cuda_to_host_on(host, s->dev_state, bytes, stream);
    if (rc == 0 && up)
        rc = kl__cuda_stream_sync(stream);
    return rc == 0 ? KL_OK : cuda_failed("copying the optimizer state", err);
}
#else
/* Without CUDA a graph cannot be on a device (kl_graph_set_device refuses), so these are never
 * reached; they keep kl_step's code the same in both builds. */
static kl_status device_new(kl_step *s, kl_error *err)
{
    (void)s;
    return kl_error_set(err, KL_EUNSUPPORTED, "this build of kiln has no CUDA support");
}

static void device_free(kl_step *s)
{
    (void)s;
}

static kl_status device_end(kl_step *s, int64_t t, kl_error *err)
{
    (void)s, (void)t;
    return kl_error_set(err, KL_EUNSUPPORTED, "this build of kiln has no CUDA support");
}

static kl_status state_copy(kl_step *s, bool up, kl_error *err)
{
    (void)s, (void)up;
    return kl_error_set(err, KL_EUNSUPPORTED, "this build of kiln has no CUDA support");
}
#endif

static bool on_device(const kl_step *s)
{
    return kl_graph_device(s->g) != KL_DEVICE_CPU;
}

kl_step *kl_step_new(kl_graph *g, const kl_step_config *c, kl_error *err)
{
    kl_step *s = calloc(1, sizeof *s);
    if (!s) {
        kl_error_set(err, KL_ENOMEM, "out of memory starting training");
        return NULL;
    }
    *s = (kl_step){.g = g,
                   .lr = c->lr,
                   .clip_norm = c->clip_norm,
                   .check_grads = c->check_grads,
                   .optim = c->optim};
    if (!(s->opt = kl_optim_new(&c->optim, kl_graph_param_count(g), err))) {
        free(s);
        return NULL;
    }
    s->nsegs = kl_graph_num_params(g);
    if (!(s->segs = calloc((size_t)s->nsegs + 1, sizeof *s->segs))) {
        kl_step_free(s);
        kl_error_set(err, KL_ENOMEM, "out of memory starting training");
        return NULL;
    }
    for (int i = 0; i < s->nsegs; i++) {
        const kl_param_info *p = kl_graph_param(g, i);
        s->segs[i] = (kl_optim_segment){p->offset, p->numel, !(p->flags & KL_PARAM_NO_DECAY)};
    }
    if (on_device(s) && device_new(s, err) != KL_OK) {
        kl_step_free(s);
        return NULL;
    }
    return s;
}

void kl_step_free(kl_step *s)
{
    if (!s)
        return;
    /* The graph may be gone already (callers free the model first): only the step's own
     * pointers say whether it holds device memory. */
    if (s->dev_state || s->dev_norm || s->dev_work)
        device_free(s);
    kl_optim_free(s->opt);
    free(s->segs);
    free(s);
}

void kl_step_begin(kl_step *s)
{
    kl_graph_zero_grad(s->g);
}

kl_status kl_step_pass(kl_step *s, uint64_t seed, int64_t t, int64_t first_row, float *loss,
                       kl_error *err)
{
    kl_graph_set_rng(s->g, seed, (uint64_t)t, first_row);
    kl_status st = kl_graph_forward(s->g, err);
    if (st == KL_OK)
        st = kl_graph_backward(s->g, err);
    /* A graph that keeps its outputs on the device left the loss there: its caller reads it
     * (kl_graph_stats_take) and checks it. */
    if (st == KL_OK)
        *loss = s->g->keep_outputs ? 0.0f : kl_f32(kl_graph_value(s->g, kl_graph_loss(s->g)))[0];
    return st;
}

kl_status kl_step_end(kl_step *s, int64_t t, float loss, kl_error *err)
{
    if (!isfinite(loss))
        return kl_error_set(err, KL_ERANGE,
                            "the loss is %g at step %lld: training diverged, the step was not "
                            "taken; lower the learning rate",
                            (double)loss, (long long)t + 1);
    if (on_device(s))
        return device_end(s, t, err);
    float *grads = kl_graph_grads(s->g);
    size_t n = kl_graph_param_count(s->g);
    /* Without clipping, FLT_MAX only measures: no finite norm exceeds it. */
    if (s->clip_norm > 0 || s->check_grads) {
        float norm = kl__clip_grad_norm(kl__graph_par(s->g), grads, n,
                                        s->clip_norm > 0 ? s->clip_norm : FLT_MAX);
        if (s->check_grads && !isfinite(norm))
            return kl_error_set(err, KL_ERANGE,
                                "the gradient norm is %g at step %lld: training diverged, the "
                                "step was not taken; lower the learning rate",
                                (double)norm, (long long)t + 1);
    }
    kl__optim_step(s->opt, kl__graph_par(s->g), kl_graph_params(s->g), grads, kl_lr_at(&s->lr, t),
                   s->segs, s->nsegs);
    return KL_OK;
}

float kl_step_lr(const kl_step *s, int64_t t)
{
    return kl_lr_at(&s->lr, t);
}

kl_optim *kl_step_optim(kl_step *s)
{
    return s->opt;
}

kl_status kl_step_state_to_host(kl_step *s, kl_error *err)
{
    return on_device(s) ? state_copy(s, false, err) : KL_OK;
}

kl_status kl_step_state_to_device(kl_step *s, kl_error *err)
{
    return on_device(s) ? state_copy(s, true, err) : KL_OK;
}
