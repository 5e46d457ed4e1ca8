/* SGD, Adam and AdamW update kernels over one flat parameter buffer, and global-norm gradient
 * clipping. The trainer calls kl_optim_step once per step after gradients are reduced; the
 * checkpoint code saves kl_optim_state (SGD: momentum; Adam(W): m then v) and kl_optim_steps. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "kiln/optim.h"
#include "ops/par.h"

struct kl_optim {
    kl_optim_config cfg;
    size_t n;          /* parameters */
    int64_t steps;     /* updates taken so far */
    float *state;      /* (state_size) SGD: buf (n); Adam(W): m (n) then v (n) */
    size_t state_size; /* floats in state: 0, n or 2n */
};

/* Coefficients that are the same for every element in one Adam(W) step. */
typedef struct adam_coef {
    float b1, one_minus_b1, b2, one_minus_b2, eps;
    float step_size;    /* lr / (1 - beta1^t) */
    float inv_sqrt_bc2; /* 1 / sqrt(1 - beta2^t) */
} adam_coef;

kl_optim_config kl_optim_defaults(kl_optim_kind kind)
{
    kl_optim_config c = {.kind = kind};
    if (kind == KL_OPTIM_ADAM || kind == KL_OPTIM_ADAMW) {
        c.beta1 = 0.9f;
        c.beta2 = 0.999f;
        c.eps = 1e-8f;
        c.weight_decay = kind == KL_OPTIM_ADAMW ? 0.01f : 0.0f;
    }
    return c;
}

const char *kl_optim_kind_name(kl_optim_kind kind)
{
    switch (kind) {
    case KL_OPTIM_SGD:
        return "sgd";
    case KL_OPTIM_ADAM:
        return "adam";
    case KL_OPTIM_ADAMW:
        return "adamw";
    }
    return "unknown";
}

/* The comparisons are written so that NaN fails them and is rejected with the bad value. */
static kl_status check_sgd(const kl_optim_config *c, kl_error *err)
{
    if (!(c->momentum >= 0.0f && c->momentum < 1.0f))
        return kl_error_set(err, KL_EINVAL,
                            "optimizer momentum is %g; it must be in [0, 1) (0 disables momentum)",
                            (double)c->momentum);
    if (!isfinite(c->dampening))
        return kl_error_set(err, KL_EINVAL, "optimizer dampening is %g; it must be a finite number",
                            (double)c->dampening);
    if (c->nesterov && c->momentum == 0.0f)
        return kl_error_set(err, KL_EINVAL,
                            "optimizer nesterov needs momentum > 0; set momentum (e.g. 0.9) or "
                            "turn nesterov off");
    if (c->nesterov && c->dampening != 0.0f)
        return kl_error_set(err, KL_EINVAL,
                            "optimizer nesterov needs dampening == 0 (it is %g); set dampening to "
                            "0 or turn nesterov off",
                            (double)c->dampening);
    return KL_OK;
}

static kl_status check_adam(const kl_optim_config *c, kl_error *err)
{
    if (!(c->beta1 >= 0.0f && c->beta1 < 1.0f))
        return kl_error_set(err, KL_EINVAL, "optimizer beta1 is %g; it must be in [0, 1), e.g. 0.9",
                            (double)c->beta1);
    if (!(c->beta2 >= 0.0f && c->beta2 < 1.0f))
        return kl_error_set(err, KL_EINVAL,
                            "optimizer beta2 is %g; it must be in [0, 1), e.g. 0.999",
                            (double)c->beta2);
    if (!(c->eps > 0.0f && isfinite(c->eps)))
        return kl_error_set(err, KL_EINVAL, "optimizer eps is %g; it must be > 0, e.g. 1e-8",
                            (double)c->eps);
    return KL_OK;
}

static kl_status check_config(const kl_optim_config *c, kl_error *err)
{
    if (c->kind != KL_OPTIM_SGD && c->kind != KL_OPTIM_ADAM && c->kind != KL_OPTIM_ADAMW)
        return kl_error_set(err, KL_EINVAL, "optimizer kind %d is not one of sgd, adam, adamw",
                            (int)c->kind);
    if (!(c->weight_decay >= 0.0f && isfinite(c->weight_decay)))
        return kl_error_set(err, KL_EINVAL,
                            "optimizer weight_decay is %g; it must be >= 0 (0 disables it)",
                            (double)c->weight_decay);
    return c->kind == KL_OPTIM_SGD ? check_sgd(c, err) : check_adam(c, err);
}

kl_optim *kl_optim_new(const kl_optim_config *cfg, size_t n, kl_error *err)
{
    if (!cfg) {
        kl_error_set(err, KL_EINVAL, "optimizer config is NULL; pass a kl_optim_config");
        return NULL;
    }
    if (check_config(cfg, err) != KL_OK)
        return NULL;

    size_t per_param = cfg->kind == KL_OPTIM_SGD ? (cfg->momentum > 0.0f ? 1 : 0) : 2;
    if (per_param && n > SIZE_MAX / sizeof(float) / per_param) {
        kl_error_set(err, KL_ENOMEM, "optimizer state for %zu parameters does not fit in memory",
                     n);
        return NULL;
    }
    kl_optim *o = calloc(1, sizeof *o);
    if (!o) {
        kl_error_set(err, KL_ENOMEM, "out of memory allocating the %s optimizer",
                     kl_optim_kind_name(cfg->kind));
        return NULL;
    }
    o->cfg = *cfg;
    o->n = n;
    o->state_size = per_param * n;
    /* Zeroed state means a checkpoint taken before the first step saves zeros, not garbage. */
    if (o->state_size > 0) {
        o->state = calloc(o->state_size, sizeof *o->state);
        if (!o->state) {
            kl_error_set(err, KL_ENOMEM,
                         "out of memory allocating %zu floats of %s optimizer state", o->state_size,
                         kl_optim_kind_name(cfg->kind));
            free(o);
            return NULL;
        }
    }
    return o;
}

void kl_optim_free(kl_optim *o)
{
    if (!o)
        return;
    free(o->state);
    free(o);
}

float *kl_optim_state(kl_optim *o)
{
    return o->state;
}
size_t kl_optim_state_size(const kl_optim *o)
{
    return o->state_size;
}
int64_t kl_optim_steps(const kl_optim *o)
{
    return o->steps;
}

void kl_optim_set_steps(kl_optim *o, int64_t steps)
{
    KL_ASSERT(steps >= 0);
    o->steps = steps;
}

/* Plain SGD: p -= lr * (g + wd * p). */
static void sgd_range(float *restrict p, const float *restrict g, size_t count, float lr, float wd)
{
    for (size_t i = 0; i < count; i++)
        p[i] -= lr * (g[i] + wd * p[i]);
}

/* SGD with momentum. The first step copies the gradient into the buffer instead of blending it,
 * as PyTorch does, so dampening does not shrink the first update. */
static void sgd_momentum_range(float *restrict p, const float *restrict g, float *restrict buf,
                               size_t count, float lr, float wd, const kl_optim_config *c,
                               bool first)
{
    const float mom = c->momentum, keep = 1.0f - c->dampening;
    if (first) {
        for (size_t i = 0; i < count; i++)
            buf[i] = g[i] + wd * p[i];
    } else {
        for (size_t i = 0; i < count; i++)
            buf[i] = mom * buf[i] + keep * (g[i] + wd * p[i]);
    }
    /* Nesterov looks ahead along the new buffer; d = g + mom * buf with g recomputed from the
     * parameter before this step's update, which is still in p here. */
    if (c->nesterov) {
        for (size_t i = 0; i < count; i++)
            p[i] -= lr * ((g[i] + wd * p[i]) + mom * buf[i]);
    } else {
        for (size_t i = 0; i < count; i++)
            p[i] -= lr * buf[i];
    }
}

/* One Adam(W) update of a range. pscale is AdamW's decoupled decay (1 - lr*wd, or 1) and l2 is
 * Adam's coupled decay (wd, or 0); the kernel applies the first before reading p for the second,
 * which is the order PyTorch uses. */
static void adam_range(float *restrict p, const float *restrict g, float *restrict m,
                       float *restrict v, size_t count, const adam_coef *k, float pscale, float l2)
{
    const float b1 = k->b1, a1 = k->one_minus_b1, b2 = k->b2, a2 = k->one_minus_b2;
    const float eps = k->eps, step_size = k->step_size, inv_sqrt_bc2 = k->inv_sqrt_bc2;
    for (size_t i = 0; i < count; i++) {
        float pi = p[i] * pscale;
        float gi = g[i] + l2 * pi;
        float mi = b1 * m[i] + a1 * gi;
        float vi = b2 * v[i] + a2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = pi - step_size * mi / (sqrtf(vi) * inv_sqrt_bc2 + eps);
    }
}

/* One range's update, what step_range splits across the pool. */
typedef struct range_job {
    kl_optim *o;
    float *params;
    const float *grads;
    float lr, wd;
    size_t off;
    const adam_coef *k;
} range_job;

static void update_range(void *arg, int64_t lo, int64_t hi)
{
    const range_job *j = arg;
    kl_optim *o = j->o;
    const kl_optim_config *c = &o->cfg;
    float *params = j->params, lr = j->lr, wd = j->wd;
    const float *grads = j->grads;
    const adam_coef *k = j->k;
    size_t off = j->off + (size_t)lo, count = (size_t)(hi - lo);
    switch (c->kind) {
    case KL_OPTIM_SGD:
        if (o->state_size == 0)
            sgd_range(params + off, grads + off, count, lr, wd);
        else
            sgd_momentum_range(params + off, grads + off, o->state + off, count, lr, wd, c,
                               o->steps == 0);
        break;
    case KL_OPTIM_ADAM:
        adam_range(params + off, grads + off, o->state + off, o->state + o->n + off, count, k, 1.0f,
                   wd);
        break;
    case KL_OPTIM_ADAMW:
        adam_range(params + off, grads + off, o->state + off, o->state + o->n + off, count, k,
                   1.0f - lr * wd, 0.0f);
        break;
    }
}

/* Updates [off, off + count) with or without weight decay; every range goes through here. Each
 * element's update reads and writes that element only, so any split gives the same bits. */
static void step_range(kl_optim *o, kl__par *par, float *params, const float *grads, float lr,
                       size_t off, size_t count, bool decay, const adam_coef *k)
{
    range_job j = {o, params, grads, lr, decay ? o->cfg.weight_decay : 0.0f, off, k};
    kl__par_for(par, (int64_t)count, 1024, 32768, update_range, &j);
}

static adam_coef adam_coefficients(const kl_optim_config *c, float lr, int64_t t)
{
    /* The bias corrections are computed in double, as PyTorch does in Python; beta^t for a large
     * t is tiny and 1 - beta^t must not round to a worse value than necessary. */
    double bc1 = 1.0 - pow((double)c->beta1, (double)t);
    double bc2 = 1.0 - pow((double)c->beta2, (double)t);
    adam_coef k = {
        .b1 = c->beta1,
        .one_minus_b1 = 1.0f - c->beta1,
        .b2 = c->beta2,
        .one_minus_b2 = 1.0f - c->beta2,
        .eps = c->eps,
        .step_size = (float)((double)lr / bc1),
        .inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2)),
    };
    return k;
}

void kl_optim_step(kl_optim *o, float *params, const float *grads, float lr,
                   const kl_optim_segment *segs, int nsegs)
{
    kl__optim_step(o, NULL, params, grads, lr, segs, nsegs);
}

void kl__optim_step(kl_optim *o, kl__par *par, float *params, const float *grads, float lr,
                    const kl_optim_segment *segs, int nsegs)
{
    KL_ASSERT(o != NULL);
    KL_ASSERT(o->n == 0 || (params != NULL && grads != NULL));
    KL_ASSERT(segs == NULL || nsegs >= 0);
    adam_coef k = {0};
    if (o->cfg.kind != KL_OPTIM_SGD)
        k = adam_coefficients(&o->cfg, lr, o->steps + 1);

    if (!segs) {
        step_range(o, par, params, grads, lr, 0, o->n, true, &k);
    } else {
        /* Segments are walked in order and the gaps between them are updated without decay, so
         * every parameter gets exactly one update whatever the segments cover. */
        size_t pos = 0;
        for (int s = 0; s < nsegs; s++) {
            size_t off = segs[s].offset, count = segs[s].count;
            KL_ASSERT(off >= pos && off <= o->n && count <= o->n - off);
            step_range(o, par, params, grads, lr, pos, off - pos, false, &k);
            step_range(o, par, params, grads, lr, off, count, segs[s].decay, &k);
            pos = off + count;
        }
        step_range(o, par, params, grads, lr, pos, o->n - pos, false, &k);
    }
    o->steps++;
}

float kl_clip_grad_norm(float *grads, size_t n, float max_norm)
{
    return kl__clip_grad_norm(NULL, grads, n, max_norm);
}

float kl__clip_grad_norm(kl__par *par, float *grads, size_t n, float max_norm)
{
    /* The sum of squares is kept in double: in float, millions of small squares stop adding up
     * once the running sum is large, and the norm comes out too small. Fixed slices summed in
     * order give the same bits on every thread count. */
    double norm = sqrt(kl__par_sum_sq(par, grads, n));
    if (norm > (double)max_norm)
        kl__par_scale(par, grads, n, (float)((double)max_norm / (norm + 1e-6)));
    return (float)norm;
}
