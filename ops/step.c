/* The training step (include/kiln/step.h): the one sequence of gradient zeroing, forward,
 * backward, finiteness check, clipping and optimizer update that `kiln train` (trainers/train.c),
 * `kiln demo` (trainers/toy.c) and online learning (kiln serve) all run. In ops/ because it is
 * arithmetic on the graph's flat buffers and nothing else: serving may use it without depending
 * on the trainers. */
#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "kiln/step.h"

struct kl_step {
    kl_graph *g;
    kl_optim *opt;
    kl_optim_segment *segs; /* one per parameter: whether weight decay applies */
    int nsegs;
    kl_lr_schedule lr;
    float clip_norm;
    bool check_grads;
};

kl_step *kl_step_new(kl_graph *g, const kl_step_config *c, kl_error *err)
{
    kl_step *s = calloc(1, sizeof *s);
    if (!s) {
        kl_error_set(err, KL_ENOMEM, "out of memory starting training");
        return NULL;
    }
    *s = (kl_step){.g = g, .lr = c->lr, .clip_norm = c->clip_norm, .check_grads = c->check_grads};
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
    return s;
}

void kl_step_free(kl_step *s)
{
    if (!s)
        return;
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
    if (st == KL_OK)
        *loss = kl_f32(kl_graph_value(s->g, kl_graph_loss(s->g)))[0];
    return st;
}

kl_status kl_step_end(kl_step *s, int64_t t, float loss, kl_error *err)
{
    if (!isfinite(loss))
        return kl_error_set(err, KL_ERANGE,
                            "the loss is %g at step %lld: training diverged, the step was not "
                            "taken; lower the learning rate",
                            (double)loss, (long long)t + 1);
    float *grads = kl_graph_grads(s->g);
    size_t n = kl_graph_param_count(s->g);
    /* Without clipping, FLT_MAX only measures: no finite norm exceeds it. */
    if (s->clip_norm > 0 || s->check_grads) {
        float norm = kl_clip_grad_norm(grads, n, s->clip_norm > 0 ? s->clip_norm : FLT_MAX);
        if (s->check_grads && !isfinite(norm))
            return kl_error_set(err, KL_ERANGE,
                                "the gradient norm is %g at step %lld: training diverged, the "
                                "step was not taken; lower the learning rate",
                                (double)norm, (long long)t + 1);
    }
    kl_optim_step(s->opt, kl_graph_params(s->g), grads, kl_lr_at(&s->lr, t), s->segs, s->nsegs);
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
