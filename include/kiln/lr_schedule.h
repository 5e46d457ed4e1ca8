/* Learning-rate schedules: constant, step decay and cosine, each with optional linear warmup, and
 * the one-cycle policy (a cosine rise then a cosine fall). kl_lr_at is a pure function of the
 * step, so a resumed run gets the same rates. */
#ifndef KILN_LR_SCHEDULE_H
#define KILN_LR_SCHEDULE_H

#include <stdint.h>

#include "kiln/status.h"

typedef enum kl_lr_kind { KL_LR_CONSTANT, KL_LR_STEP, KL_LR_COSINE, KL_LR_ONECYCLE } kl_lr_kind;

typedef struct kl_lr_schedule {
    kl_lr_kind kind;
    float base_lr;
    int64_t warmup_steps;   /* lr rises linearly from base_lr/warmup to base_lr over these steps */
    int64_t step_size;      /* STEP: multiply by gamma every step_size steps after warmup */
    float gamma;            /* STEP: in (0, 1] */
    int64_t total_steps;    /* COSINE: warmup included; lr reaches min_lr at total_steps.
                             * ONECYCLE: the whole cycle */
    float min_lr;           /* COSINE: in [0, base_lr] */
    float pct_start;        /* ONECYCLE: the share of total_steps spent rising, in (0, 1) */
    float div_factor;       /* ONECYCLE: the first rate is base_lr / div_factor (>= 1) */
    float final_div_factor; /* ONECYCLE: the last is base_lr / div_factor / this (>= 1) */
} kl_lr_schedule;

/* KL_EINVAL, naming the field, for base_lr <= 0 or not finite, warmup_steps < 0, STEP with
 * step_size <= 0 or gamma outside (0, 1], COSINE with total_steps <= warmup_steps or min_lr
 * outside [0, base_lr], ONECYCLE with warmup_steps > 0 (its rise is the warmup), pct_start
 * outside (0, 1), div_factor or final_div_factor below 1 or not finite, or pct_start *
 * total_steps <= 1 (no rise). Fields the kind does not use are not checked. */
kl_status kl_lr_check(const kl_lr_schedule *s, kl_error *err);

/* The rate for step (0-based; a negative step counts as 0) of a schedule that passed kl_lr_check.
 * Warmup: base_lr * (step + 1) / warmup_steps while step < warmup_steps. After it, with
 * s = step - warmup_steps and T = total_steps - warmup_steps: CONSTANT base_lr; STEP
 * base_lr * gamma^(s / step_size), integer division; COSINE
 * min_lr + (base_lr - min_lr) * (1 + cos(pi * s / T)) / 2, and min_lr for s >= T.
 * ONECYCLE is PyTorch's OneCycleLR (anneal_strategy 'cos', two phases, the rates only: the
 * optimizer's momentum is not cycled): with T = total_steps, e = pct_start * T - 1,
 * lo = base_lr / div_factor and end = lo / final_div_factor, step <= e rises as
 * cosine(lo -> base_lr, step / e), later steps fall as cosine(base_lr -> end,
 * (step - e) / (T - 1 - e)), where cosine(a -> b, p) = b + (a - b) (1 + cos(pi p)) / 2;
 * end for step >= T - 1. */
float kl_lr_at(const kl_lr_schedule *s, int64_t step);
const char *kl_lr_kind_name(kl_lr_kind kind);

#endif
