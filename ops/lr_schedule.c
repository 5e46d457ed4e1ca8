/* Learning-rate schedules: linear warmup followed by constant, step-decay or cosine rates, and the
 * one-cycle policy. They
 * sit next to the optimizer because they are maths, not a loop: the config (runtime/config.c)
 * calls kl_lr_check on the configured schedule and the trainers call kl_lr_at every step; the
 * rate depends only on the step number, so a run resumed from a checkpoint sees the same rates. */
#include <math.h>

#include "kiln/lr_schedule.h"

/* C17 has no M_PI; this is pi to more digits than a double holds. */
static const double schedule_pi = 3.14159265358979323846;

const char *kl_lr_kind_name(kl_lr_kind kind)
{
    switch (kind) {
    case KL_LR_CONSTANT:
        return "constant";
    case KL_LR_STEP:
        return "step";
    case KL_LR_COSINE:
        return "cosine";
    case KL_LR_ONECYCLE:
        return "onecycle";
    }
    return "unknown";
}

/* The one-cycle fields. The rise ends at step e = pct_start * total_steps - 1, which must be
 * past step 0 or the rise would divide by zero; pct_start < 1 keeps e before the last step. */
static kl_status onecycle_check(const kl_lr_schedule *s, kl_error *err)
{
    if (s->warmup_steps != 0)
        return kl_error_set(err, KL_EINVAL,
                            "learning-rate warmup_steps is %lld; the onecycle schedule's rise is "
                            "its warmup (pct_start), so it needs 0",
                            (long long)s->warmup_steps);
    if (!(s->pct_start > 0.0f && s->pct_start < 1.0f))
        return kl_error_set(err, KL_EINVAL,
                            "learning-rate pct_start is %g; the onecycle schedule needs it in "
                            "(0, 1), e.g. 0.3",
                            (double)s->pct_start);
    if (!(s->div_factor >= 1.0f && isfinite(s->div_factor)))
        return kl_error_set(err, KL_EINVAL,
                            "learning-rate div_factor is %g; the onecycle schedule needs a finite "
                            "number >= 1, e.g. 25",
                            (double)s->div_factor);
    if (!(s->final_div_factor >= 1.0f && isfinite(s->final_div_factor)))
        return kl_error_set(err, KL_EINVAL,
                            "learning-rate final_div_factor is %g; the onecycle schedule needs a "
                            "finite number >= 1, e.g. 1e4",
                            (double)s->final_div_factor);
    double rise_end = (double)s->pct_start * (double)s->total_steps - 1.0;
    if (!(rise_end > 0.0))
        return kl_error_set(err, KL_EINVAL,
                            "learning-rate total_steps is %lld; with pct_start %g the onecycle "
                            "schedule would have no rise: it needs pct_start x total_steps > 1",
                            (long long)s->total_steps, (double)s->pct_start);
    return KL_OK;
}

/* The comparisons are written so that NaN fails them and is rejected with the bad value. */
kl_status kl_lr_check(const kl_lr_schedule *s, kl_error *err)
{
    if (!s)
        return kl_error_set(err, KL_EINVAL, "learning-rate schedule is NULL");
    if (s->kind != KL_LR_CONSTANT && s->kind != KL_LR_STEP && s->kind != KL_LR_COSINE &&
        s->kind != KL_LR_ONECYCLE)
        return kl_error_set(err, KL_EINVAL,
                            "learning-rate schedule kind %d is not one of constant, step, cosine, "
                            "onecycle",
                            (int)s->kind);
    if (!(s->base_lr > 0.0f && isfinite(s->base_lr)))
        return kl_error_set(err, KL_EINVAL,
                            "learning-rate base_lr is %g; it must be a finite number > 0",
                            (double)s->base_lr);
    if (s->warmup_steps < 0)
        return kl_error_set(err, KL_EINVAL,
                            "learning-rate warmup_steps is %lld; it must be >= 0 (0 disables it)",
                            (long long)s->warmup_steps);
    if (s->kind == KL_LR_STEP) {
        if (s->step_size <= 0)
            return kl_error_set(err, KL_EINVAL,
                                "learning-rate step_size is %lld; the step schedule needs it > 0",
                                (long long)s->step_size);
        if (!(s->gamma > 0.0f && s->gamma <= 1.0f))
            return kl_error_set(err, KL_EINVAL,
                                "learning-rate gamma is %g; the step schedule needs it in (0, 1], "
                                "e.g. 0.1",
                                (double)s->gamma);
    }
    if (s->kind == KL_LR_COSINE) {
        if (s->total_steps <= s->warmup_steps)
            return kl_error_set(err, KL_EINVAL,
                                "learning-rate total_steps is %lld; the cosine schedule needs it "
                                "greater than warmup_steps (%lld)",
                                (long long)s->total_steps, (long long)s->warmup_steps);
        if (!(s->min_lr >= 0.0f && s->min_lr <= s->base_lr))
            return kl_error_set(err, KL_EINVAL,
                                "learning-rate min_lr is %g; the cosine schedule needs it in "
                                "[0, base_lr] = [0, %g]",
                                (double)s->min_lr, (double)s->base_lr);
    }
    return s->kind == KL_LR_ONECYCLE ? onecycle_check(s, err) : KL_OK;
}

/* gamma^k by repeated squaring: exact powers of an integer exponent, in log2(k) multiplications,
 * so a schedule at step 10^9 with step_size 1 costs no more than one at step 10. */
static double int_pow(double gamma, int64_t k)
{
    double result = 1.0;
    while (k > 0 && result != 0.0) {
        if (k & 1)
            result *= gamma;
        gamma *= gamma;
        k >>= 1;
    }
    return result;
}

/* cosine(a -> b, p) of PyTorch's OneCycleLR._annealing_cos. */
static double anneal_cos(double a, double b, double p)
{
    return b + (a - b) / 2.0 * (cos(schedule_pi * p) + 1.0);
}

/* In double throughout, as PyTorch computes it in Python floats. */
static float onecycle_at(const kl_lr_schedule *s, int64_t step)
{
    double peak = s->base_lr, lo = peak / (double)s->div_factor;
    double end = lo / (double)s->final_div_factor, last = (double)(s->total_steps - 1);
    double e = (double)s->pct_start * (double)s->total_steps - 1.0, t = (double)step;
    if (t <= e)
        return (float)anneal_cos(lo, peak, t / e);
    if (t >= last)
        return (float)end;
    return (float)anneal_cos(peak, end, (t - e) / (last - e));
}

float kl_lr_at(const kl_lr_schedule *s, int64_t step)
{
    double base = s->base_lr;
    if (step < 0)
        step = 0;
    if (step < s->warmup_steps)
        return (float)(base * (double)(step + 1) / (double)s->warmup_steps);

    int64_t after = step - s->warmup_steps;
    switch (s->kind) {
    case KL_LR_CONSTANT:
        return s->base_lr;
    case KL_LR_STEP:
        KL_ASSERT(s->step_size > 0);
        return (float)(base * int_pow(s->gamma, after / s->step_size));
    case KL_LR_COSINE: {
        int64_t span = s->total_steps - s->warmup_steps;
        KL_ASSERT(span > 0);
        if (after >= span)
            return s->min_lr;
        double min = s->min_lr;
        double c = cos(schedule_pi * (double)after / (double)span);
        return (float)(min + (base - min) * (1.0 + c) / 2.0);
    }
    case KL_LR_ONECYCLE:
        return onecycle_at(s, step);
    }
    return s->base_lr;
}
