/* One training step on a compiled graph, the same arithmetic for `kiln train`, `kiln demo` and
 * kiln serve's online learning: zero the gradients, forward and backward (once per micro-batch,
 * gradients adding up), refuse a loss (and, if asked, a gradient norm) that is not finite, clip
 * the global gradient norm, and one optimizer update at the schedule's rate for the step.
 *
 *     kl_step_begin(s);                                   zero the gradients
 *     for each micro-batch: fill the graph's inputs, then
 *         kl_step_pass(s, seed, t, first_row, &loss, err); forward and backward
 *     (data-parallel: all-reduce the gradients here)
 *     kl_step_end(s, t, mean_loss, err);                  check, clip, update at kl_lr_at(t)
 *
 * The step number t is the caller's (it also keys dropout and checkpoints); a step keeps only
 * what the update needs: the optimizer, its weight-decay segments, the schedule and the clip. */
#ifndef KILN_STEP_H
#define KILN_STEP_H

#include <stdbool.h>
#include <stdint.h>

#include "kiln/graph.h"
#include "kiln/lr_schedule.h"
#include "kiln/optim.h"
#include "kiln/status.h"

typedef struct kl_step_config {
    kl_optim_config optim;
    kl_lr_schedule lr; /* step t's rate is kl_lr_at(&lr, t); the caller checks it (kl_lr_check) */
    float clip_norm;   /* > 0: scale the gradients to a global L2 norm of at most this */
    bool check_grads;  /* also refuse a step whose gradient norm is not finite */
} kl_step_config;

typedef struct kl_step kl_step;

/* A step for g, compiled with its loss: an optimizer over every parameter, weight decay skipping
 * those flagged KL_PARAM_NO_DECAY. NULL with err set when the optimizer config is refused
 * (kl_optim_new's messages) or memory runs out. */
kl_step *kl_step_new(kl_graph *g, const kl_step_config *c, kl_error *err);
void kl_step_free(kl_step *s);

/* Starts a step: zeroes the gradients. */
void kl_step_begin(kl_step *s);
/* Forward and backward of the batch in the graph's inputs, adding into the gradients; dropout is
 * drawn for (seed, t, first_row) (kl_graph_set_rng: first_row places a micro-batch or a rank's
 * slice in the global batch). *loss is this pass's loss; 0 on a device graph that keeps its
 * outputs (kl_graph_keep_outputs), whose loss stays on the device for its caller to read and
 * check (kl_graph_stats_take), so that nothing waits for the device. */
kl_status kl_step_pass(kl_step *s, uint64_t seed, int64_t t, int64_t first_row, float *loss,
                       kl_error *err);
/* Ends step t with its loss (the mean over its passes, and over ranks when data-parallel):
 * KL_ERANGE, touching no weight, when the loss or (check_grads) the gradients' norm is not
 * finite; the message is general, so callers that know more (the epoch, the model) say it
 * instead. Otherwise clips and updates the parameters at kl_lr_at(lr, t). */
kl_status kl_step_end(kl_step *s, int64_t t, float loss, kl_error *err);

/* The rate of step t. */
float kl_step_lr(const kl_step *s, int64_t t);
/* The optimizer, for checkpoints (its state and step count). On a device graph
 * (kl_graph_set_device) the step clips and updates on the device, with the optimizer state in
 * device memory: kl_optim_state(kl_step_optim(s)) is then its host copy, current after
 * kl_step_state_to_host; after writing it (a resume) kl_step_state_to_device puts it back. The step
 * count stays on the host either way. Both do nothing on a CPU graph. */
kl_optim *kl_step_optim(kl_step *s);
kl_status kl_step_state_to_host(kl_step *s, kl_error *err);
kl_status kl_step_state_to_device(kl_step *s, kl_error *err);

#endif
