/* Optimizer update kernels on flat parameter and gradient buffers, and gradient clipping.
 * Semantics follow PyTorch's torch.optim.SGD, Adam and AdamW so results can be compared to it.
 * The optimizer state (momentum, moments) is one flat buffer the checkpoint code can save. */
#ifndef KILN_OPTIM_H
#define KILN_OPTIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kiln/status.h"

typedef enum kl_optim_kind { KL_OPTIM_SGD, KL_OPTIM_ADAM, KL_OPTIM_ADAMW } kl_optim_kind;

typedef struct kl_optim_config {
    kl_optim_kind kind;
    float momentum;          /* SGD */
    float dampening;         /* SGD */
    bool nesterov;           /* SGD; needs momentum > 0 and dampening == 0 */
    float weight_decay;      /* L2 added to the gradient (SGD, Adam) or decoupled (AdamW) */
    float beta1, beta2, eps; /* Adam, AdamW */
} kl_optim_config;

/* A run of the flat buffer and whether weight decay applies to it. The segments given to one
 * kl_optim_step are sorted by offset and do not overlap; parameters outside every segment are
 * updated without weight decay. */
typedef struct kl_optim_segment {
    size_t offset, count;
    bool decay;
} kl_optim_segment;

typedef struct kl_optim kl_optim;

/* Defaults as in PyTorch: SGD without momentum or decay; Adam(W) betas 0.9, 0.999, eps 1e-8,
 * weight_decay 0 for Adam and 0.01 for AdamW. */
kl_optim_config kl_optim_defaults(kl_optim_kind kind);
const char *kl_optim_kind_name(kl_optim_kind kind);

/* An optimizer for n parameters. Returns NULL with err set (KL_EINVAL) for a negative
 * weight_decay, momentum outside [0, 1), nesterov without momentum or with dampening, beta1 or
 * beta2 outside [0, 1), or eps <= 0; and with KL_ENOMEM when the state cannot be allocated. */
kl_optim *kl_optim_new(const kl_optim_config *cfg, size_t n, kl_error *err);
void kl_optim_free(kl_optim *o);

/* One update with learning rate lr. segs == NULL decays everything. Adam's bias correction uses
 * t = kl_optim_steps() + 1; SGD's first step (steps == 0) copies the gradient into the momentum. */
void kl_optim_step(kl_optim *o, float *params, const float *grads, float lr,
                   const kl_optim_segment *segs, int nsegs);

/* The state, for checkpoints: state_size floats and the number of steps taken. Layout: SGD with
 * momentum holds the momentum buffer (n floats), SGD without momentum nothing (NULL, 0), Adam and
 * AdamW the first moment m (n floats) followed by the second moment v (n floats). */
float *kl_optim_state(kl_optim *o);
size_t kl_optim_state_size(const kl_optim *o);
int64_t kl_optim_steps(const kl_optim *o);
void kl_optim_set_steps(kl_optim *o, int64_t steps);

/* Scales grads so their global L2 norm is at most max_norm; returns the norm before clipping.
 * As PyTorch's clip_grad_norm_, the scale is max_norm / (norm + 1e-6), applied only when
 * norm > max_norm; the norm is accumulated in double. */
float kl_clip_grad_norm(float *grads, size_t n, float max_norm);

#endif
