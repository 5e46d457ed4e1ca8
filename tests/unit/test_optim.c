/* Tests for ops/optim.c: SGD (momentum, dampening, nesterov, weight decay), Adam and AdamW
 * against values worked out by hand from PyTorch's update rules, segments, the state layout the
 * checkpoint code relies on, gradient clipping and config validation. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kiln/optim.h"

#define TOL 1e-6

/* The moments are compared relatively. The config's betas are floats: 0.999f is 0.99900001, so
 * 1 - beta2 is 0.00099998713 and v comes out 1.3e-5 (relatively) below the decimal value worked
 * out by hand; 1 - beta1 is 0.10000002, 2.4e-7 above. PyTorch's Python-double betas do not have
 * this offset, which cancels in the update through the bias correction. */
#define M_REL                1e-6
#define V_REL                2e-5
#define CHECK_REL(a, b, rel) CHECK_NEAR(a, b, (rel)*fabs((double)(b)))

static kl_optim *make(const kl_optim_config *c, size_t n)
{
    kl_error err = {0};
    kl_optim *o = kl_optim_new(c, n, &err);
    if (!check_(o != NULL, __FILE__, __LINE__, "kl_optim_new accepts a valid config"))
        fprintf(stderr, "    %s\n", err.msg);
    return o;
}

static kl_optim_config sgd(float momentum, float dampening, bool nesterov, float wd)
{
    kl_optim_config c = kl_optim_defaults(KL_OPTIM_SGD);
    c.momentum = momentum;
    c.dampening = dampening;
    c.nesterov = nesterov;
    c.weight_decay = wd;
    return c;
}

static void test_defaults(void)
{
    kl_optim_config s = kl_optim_defaults(KL_OPTIM_SGD);
    CHECK(s.kind == KL_OPTIM_SGD);
    CHECK(s.momentum == 0.0f && s.dampening == 0.0f && !s.nesterov && s.weight_decay == 0.0f);
    CHECK(s.beta1 == 0.0f && s.beta2 == 0.0f && s.eps == 0.0f);

    kl_optim_config a = kl_optim_defaults(KL_OPTIM_ADAM);
    CHECK(a.kind == KL_OPTIM_ADAM);
    CHECK(a.beta1 == 0.9f && a.beta2 == 0.999f && a.eps == 1e-8f && a.weight_decay == 0.0f);

    kl_optim_config w = kl_optim_defaults(KL_OPTIM_ADAMW);
    CHECK(w.kind == KL_OPTIM_ADAMW);
    CHECK(w.beta1 == 0.9f && w.beta2 == 0.999f && w.eps == 1e-8f && w.weight_decay == 0.01f);

    CHECK(strcmp(kl_optim_kind_name(KL_OPTIM_SGD), "sgd") == 0);
    CHECK(strcmp(kl_optim_kind_name(KL_OPTIM_ADAM), "adam") == 0);
    CHECK(strcmp(kl_optim_kind_name(KL_OPTIM_ADAMW), "adamw") == 0);
}

static void test_sgd_plain(void)
{
    kl_optim_config c = sgd(0, 0, false, 0);
    kl_optim *o = make(&c, 2);
    if (!o)
        return;
    CHECK(kl_optim_state_size(o) == 0);
    float p[2] = {1.0f, -2.0f}, g[2] = {0.5f, 0.25f};
    /* p -= lr * g: 1 - 0.1*0.5 = 0.95 and -2 - 0.1*0.25 = -2.025. */
    kl_optim_step(o, p, g, 0.1f, NULL, 0);
    CHECK_NEAR(p[0], 0.95, TOL);
    CHECK_NEAR(p[1], -2.025, TOL);
    /* Two more steps with the same gradient: 1 - 3*0.05 = 0.85, -2 - 3*0.025 = -2.075. */
    kl_optim_step(o, p, g, 0.1f, NULL, 0);
    kl_optim_step(o, p, g, 0.1f, NULL, 0);
    CHECK_NEAR(p[0], 0.85, TOL);
    CHECK_NEAR(p[1], -2.075, TOL);
    CHECK(kl_optim_steps(o) == 3);
    kl_optim_free(o);
}

static void test_sgd_weight_decay(void)
{
    kl_optim_config c = sgd(0, 0, false, 0.1f);
    kl_optim *o = make(&c, 1);
    if (!o)
        return;
    float p = 1.0f, g = 0.5f;
    /* d = g + wd*p = 0.5 + 0.1 = 0.6; p = 1 - 0.1*0.6 = 0.94. */
    kl_optim_step(o, &p, &g, 0.1f, NULL, 0);
    CHECK_NEAR(p, 0.94, TOL);
    /* d = 0.5 + 0.1*0.94 = 0.594; p = 0.94 - 0.0594 = 0.8806. */
    kl_optim_step(o, &p, &g, 0.1f, NULL, 0);
    CHECK_NEAR(p, 0.8806, TOL);
    kl_optim_free(o);
}

static void test_sgd_momentum(void)
{
    kl_optim_config c = sgd(0.9f, 0, false, 0);
    kl_optim *o = make(&c, 1);
    if (!o)
        return;
    CHECK(kl_optim_state_size(o) == 1);
    float p = 0.0f, g = 1.0f;
    /* Step 1 copies g into buf: buf = 1, p = -0.1. */
    kl_optim_step(o, &p, &g, 0.1f, NULL, 0);
    CHECK_NEAR(p, -0.1, TOL);
    CHECK_NEAR(kl_optim_state(o)[0], 1.0, TOL);
    /* Step 2: buf = 0.9*1 + 1 = 1.9, p = -0.1 - 0.19 = -0.29. */
    kl_optim_step(o, &p, &g, 0.1f, NULL, 0);
    CHECK_NEAR(p, -0.29, TOL);
    /* Step 3: buf = 0.9*1.9 + 1 = 2.71, p = -0.29 - 0.271 = -0.561. */
    kl_optim_step(o, &p, &g, 0.1f, NULL, 0);
    CHECK_NEAR(p, -0.561, TOL);
    CHECK_NEAR(kl_optim_state(o)[0], 2.71, TOL);
    kl_optim_free(o);
}

static void test_sgd_dampening(void)
{
    kl_optim_config c = sgd(0.9f, 0.5f, false, 0);
    kl_optim *o = make(&c, 1);
    if (!o)
        return;
    float p = 0.0f, g = 1.0f;
    /* Step 1 is not dampened: buf = 1, p = -0.1. */
    kl_optim_step(o, &p, &g, 0.1f, NULL, 0);
    CHECK_NEAR(p, -0.1, TOL);
    /* Step 2: buf = 0.9*1 + (1-0.5)*1 = 1.4, p = -0.1 - 0.14 = -0.24. */
    kl_optim_step(o, &p, &g, 0.1f, NULL, 0);
    CHECK_NEAR(p, -0.24, TOL);
    /* Step 3: buf = 0.9*1.4 + 0.5 = 1.76, p = -0.24 - 0.176 = -0.416. */
    kl_optim_step(o, &p, &g, 0.1f, NULL, 0);
    CHECK_NEAR(p, -0.416, TOL);
    CHECK_NEAR(kl_optim_state(o)[0], 1.76, TOL);
    kl_optim_free(o);
}

static void test_sgd_nesterov(void)
{
    kl_optim_config c = sgd(0.9f, 0, true, 0);
    kl_optim *o = make(&c, 1);
    if (!o)
        return;
    float p = 0.0f, g = 1.0f;
    /* Step 1: buf = 1, d = g + 0.9*buf = 1.9, p = -0.19. */
    kl_optim_step(o, &p, &g, 0.1f, NULL, 0);
    CHECK_NEAR(p, -0.19, TOL);
    /* Step 2: buf = 0.9 + 1 = 1.9, d = 1 + 0.9*1.9 = 2.71, p = -0.19 - 0.271 = -0.461. */
    kl_optim_step(o, &p, &g, 0.1f, NULL, 0);
    CHECK_NEAR(p, -0.461, TOL);
    /* Step 3: buf = 0.9*1.9 + 1 = 2.71, d = 1 + 0.9*2.71 = 3.439, p = -0.461 - 0.3439 = -0.8049. */
    kl_optim_step(o, &p, &g, 0.1f, NULL, 0);
    CHECK_NEAR(p, -0.8049, TOL);
    CHECK_NEAR(kl_optim_state(o)[0], 2.71, TOL);
    kl_optim_free(o);
}

static void test_sgd_momentum_weight_decay(void)
{
    kl_optim_config c = sgd(0.9f, 0, false, 0.1f);
    kl_optim *o = make(&c, 1);
    if (!o)
        return;
    float p = 1.0f, g = 0.0f;
    /* Step 1: d = 0 + 0.1*1 = 0.1, buf = 0.1, p = 1 - 0.01 = 0.99. */
    kl_optim_step(o, &p, &g, 0.1f, NULL, 0);
    CHECK_NEAR(p, 0.99, TOL);
    /* Step 2: d = 0.1*0.99 = 0.099, buf = 0.09 + 0.099 = 0.189, p = 0.99 - 0.0189 = 0.9711. */
    kl_optim_step(o, &p, &g, 0.1f, NULL, 0);
    CHECK_NEAR(p, 0.9711, TOL);
    CHECK_NEAR(kl_optim_state(o)[0], 0.189, TOL);
    kl_optim_free(o);
}

static void test_adam_two_steps(void)
{
    kl_optim_config c = kl_optim_defaults(KL_OPTIM_ADAM);
    kl_optim *o = make(&c, 1);
    if (!o)
        return;
    float p = 1.0f, g = 0.5f;
    /* Step 1 (t = 1): m = 0.1*0.5 = 0.05, v = 0.001*0.25 = 0.00025,
     * mhat = 0.05/(1-0.9) = 0.5, vhat = 0.00025/(1-0.999) = 0.25, sqrt(vhat) = 0.5,
     * p = 1 - 0.1 * 0.5/(0.5 + 1e-8) = 0.900000002. */
    kl_optim_step(o, &p, &g, 0.1f, NULL, 0);
    CHECK_NEAR(p, 0.900000002, TOL);
    CHECK_REL(kl_optim_state(o)[0], 0.05, M_REL);
    CHECK_REL(kl_optim_state(o)[1], 0.00025, V_REL);
    /* Step 2 (t = 2), g = -0.25: m = 0.9*0.05 + 0.1*(-0.25) = 0.02,
     * v = 0.999*0.00025 + 0.001*0.0625 = 0.00031225,
     * mhat = 0.02/(1-0.81) = 0.105263158, vhat = 0.00031225/(1-0.998001) = 0.156203102,
     * sqrt(vhat) = 0.395225381, p = 0.9 - 0.1*0.105263158/0.395225381 = 0.873366299. */
    g = -0.25f;
    kl_optim_step(o, &p, &g, 0.1f, NULL, 0);
    CHECK_NEAR(p, 0.873366299, TOL);
    CHECK_REL(kl_optim_state(o)[0], 0.02, M_REL);
    CHECK_REL(kl_optim_state(o)[1], 0.00031225, V_REL);
    CHECK(kl_optim_steps(o) == 2);
    kl_optim_free(o);
}

/* eps is added to the bias-corrected sqrt(vhat), as in PyTorch; a large eps makes that visible. */
static void test_adam_eps(void)
{
    kl_optim_config c = kl_optim_defaults(KL_OPTIM_ADAM);
    c.eps = 0.1f;
    kl_optim *o = make(&c, 1);
    if (!o)
        return;
    float p = 1.0f, g = 0.5f;
    /* mhat = 0.5, sqrt(vhat) = 0.5, p = 1 - 0.1 * 0.5/(0.5 + 0.1) = 1 - 0.0833333 = 0.9166667.
     * With eps added to sqrt(v) = 0.0158 before the correction it would be 0.9863. */
    kl_optim_step(o, &p, &g, 0.1f, NULL, 0);
    CHECK_NEAR(p, 0.91666667, TOL);
    kl_optim_free(o);
}

/* AdamW shrinks p by (1 - lr*wd) outside the moments; Adam adds wd*p to the gradient, so it
 * shows up in m and v and, on the first step, cancels out of the update entirely. */
static void test_adamw_vs_adam_l2(void)
{
    kl_optim_config ca = kl_optim_defaults(KL_OPTIM_ADAM);
    kl_optim_config cw = kl_optim_defaults(KL_OPTIM_ADAMW);
    ca.weight_decay = cw.weight_decay = 0.1f;
    kl_optim *a = make(&ca, 1), *w = make(&cw, 1);
    if (a && w) {
        float pa = 1.0f, pw = 1.0f, g = 0.5f;
        kl_optim_step(a, &pa, &g, 0.1f, NULL, 0);
        kl_optim_step(w, &pw, &g, 0.1f, NULL, 0);
        /* Adam: g' = 0.5 + 0.1*1 = 0.6, m = 0.06, v = 0.00036, mhat/sqrt(vhat) = 0.6/0.6 = 1,
         * p = 1 - 0.1 = 0.9. */
        CHECK_NEAR(pa, 0.9, TOL);
        CHECK_REL(kl_optim_state(a)[0], 0.06, M_REL);
        CHECK_REL(kl_optim_state(a)[1], 0.00036, V_REL);
        /* AdamW: p = 1*(1 - 0.1*0.1) = 0.99, then m = 0.05, v = 0.00025, p = 0.99 - 0.1 = 0.89. */
        CHECK_NEAR(pw, 0.89, TOL);
        CHECK_REL(kl_optim_state(w)[0], 0.05, M_REL);
        CHECK_REL(kl_optim_state(w)[1], 0.00025, V_REL);
    }
    kl_optim_free(a);
    kl_optim_free(w);
}

/* Only segments with decay = true are decayed; gaps between segments are updated undecayed. */
static void test_segments_sgd(void)
{
    kl_optim_config c = sgd(0, 0, false, 0.1f);
    kl_optim *o = make(&c, 6);
    if (!o)
        return;
    float p[6] = {1, 1, 1, 1, 1, 1}, g[6] = {0, 0, 0, 0, 0, 0.5f};
    /* Segment [1,3) decays, [3,4) does not, 0 and [4,6) are gaps. Decayed: p = 1 - 0.1*0.1 = 0.99.
     * Element 5 has no decay but a gradient: 1 - 0.1*0.5 = 0.95. */
    kl_optim_segment segs[2] = {{.offset = 1, .count = 2, .decay = true},
                                {.offset = 3, .count = 1, .decay = false}};
    kl_optim_step(o, p, g, 0.1f, segs, 2);
    CHECK_NEAR(p[0], 1.0, TOL);
    CHECK_NEAR(p[1], 0.99, TOL);
    CHECK_NEAR(p[2], 0.99, TOL);
    CHECK_NEAR(p[3], 1.0, TOL);
    CHECK_NEAR(p[4], 1.0, TOL);
    CHECK_NEAR(p[5], 0.95, TOL);

    /* A non-NULL empty list decays nothing; NULL decays everything. */
    float q[6] = {1, 1, 1, 1, 1, 1}, h[6] = {0};
    kl_optim_step(o, q, h, 0.1f, segs, 0);
    CHECK_NEAR(q[0], 1.0, TOL);
    CHECK_NEAR(q[5], 1.0, TOL);
    kl_optim_step(o, q, h, 0.1f, NULL, 0);
    CHECK_NEAR(q[0], 0.99, TOL);
    CHECK_NEAR(q[5], 0.99, TOL);
    kl_optim_free(o);
}

/* With segments, Adam's and AdamW's moments are updated for every parameter; only the decay
 * term depends on the segment. */
static void test_segments_adam(void)
{
    kl_optim_segment segs[2] = {{.offset = 0, .count = 1, .decay = true},
                                {.offset = 1, .count = 1, .decay = false}};
    kl_optim_config ca = kl_optim_defaults(KL_OPTIM_ADAM);
    kl_optim_config cw = kl_optim_defaults(KL_OPTIM_ADAMW);
    ca.weight_decay = cw.weight_decay = 0.1f;
    kl_optim *a = make(&ca, 2), *w = make(&cw, 2);
    if (a && w) {
        float pa[2] = {1, 1}, pw[2] = {1, 1}, g[2] = {0.5f, 0.5f};
        kl_optim_step(a, pa, g, 0.1f, segs, 2);
        kl_optim_step(w, pw, g, 0.1f, segs, 2);
        /* Adam: decayed m = 0.1*0.6 = 0.06, undecayed m = 0.1*0.5 = 0.05 (see above). */
        const float *sa = kl_optim_state(a);
        CHECK_REL(sa[0], 0.06, M_REL);
        CHECK_REL(sa[1], 0.05, M_REL);
        CHECK_REL(sa[2], 0.00036, V_REL);
        CHECK_REL(sa[3], 0.00025, V_REL);
        /* AdamW: decayed p = 0.99 - 0.1 = 0.89, undecayed p = 1 - 0.1 = 0.9; equal moments. */
        const float *sw = kl_optim_state(w);
        CHECK_NEAR(pw[0], 0.89, TOL);
        CHECK_NEAR(pw[1], 0.9, TOL);
        CHECK_REL(sw[0], 0.05, M_REL);
        CHECK_REL(sw[1], 0.05, M_REL);
        CHECK_REL(sw[2], 0.00025, V_REL);
        CHECK_REL(sw[3], 0.00025, V_REL);
    }
    kl_optim_free(a);
    kl_optim_free(w);
}

/* The checkpoint code saves the state as documented: Adam(W) m (n floats) then v (n floats),
 * SGD the momentum buffer (n floats) or nothing. */
static void test_state_layout(void)
{
    kl_optim_config c = kl_optim_defaults(KL_OPTIM_ADAM);
    kl_optim *o = make(&c, 3);
    if (o) {
        CHECK(kl_optim_state_size(o) == 6);
        float p[3] = {0, 0, 0}, g[3] = {1.0f, -2.0f, 3.0f};
        kl_optim_step(o, p, g, 0.01f, NULL, 0);
        const float *s = kl_optim_state(o);
        /* m = 0.1*g, v = 0.001*g^2. */
        CHECK_REL(s[0], 0.1, M_REL);
        CHECK_REL(s[1], -0.2, M_REL);
        CHECK_REL(s[2], 0.3, M_REL);
        CHECK_REL(s[3], 0.001, V_REL);
        CHECK_REL(s[4], 0.004, V_REL);
        CHECK_REL(s[5], 0.009, V_REL);
        kl_optim_free(o);
    }
    kl_optim_config cm = sgd(0.5f, 0, false, 0);
    kl_optim *m = make(&cm, 3);
    if (m) {
        CHECK(kl_optim_state_size(m) == 3);
        CHECK(kl_optim_state(m) != NULL);
        kl_optim_free(m);
    }
    kl_optim_config cs = sgd(0, 0, false, 0);
    kl_optim *s0 = make(&cs, 3);
    if (s0) {
        CHECK(kl_optim_state_size(s0) == 0);
        kl_optim_free(s0);
    }
}

/* Copying the state and step count into a fresh optimizer and stepping must give bit-identical
 * parameters to stepping the original: this is what resuming from a checkpoint does. */
static void resume_matches(kl_optim_config c)
{
    enum { N = 5 };
    const float g1[N] = {0.1f, -0.2f, 0.3f, -0.4f, 0.5f}, g2[N] = {-0.3f, 0.1f, 0.2f, 0.0f, 1.0f};
    float pa[N] = {1, 2, 3, 4, 5}, pb[N];
    kl_optim *a = make(&c, N), *b = make(&c, N);
    if (a && b) {
        kl_optim_step(a, pa, g1, 0.05f, NULL, 0);
        memcpy(pb, pa, sizeof pa);
        size_t sz = kl_optim_state_size(a);
        CHECK(kl_optim_state_size(b) == sz);
        if (sz)
            memcpy(kl_optim_state(b), kl_optim_state(a), sz * sizeof(float));
        kl_optim_set_steps(b, kl_optim_steps(a));
        kl_optim_step(a, pa, g2, 0.05f, NULL, 0);
        kl_optim_step(b, pb, g2, 0.05f, NULL, 0);
        CHECK(memcmp(pa, pb, sizeof pa) == 0);
        CHECK(kl_optim_steps(b) == 2);
    }
    kl_optim_free(a);
    kl_optim_free(b);
}

static void test_resume(void)
{
    resume_matches(sgd(0.9f, 0.1f, false, 0.01f));
    resume_matches(sgd(0.9f, 0, true, 0.01f));
    kl_optim_config a = kl_optim_defaults(KL_OPTIM_ADAM);
    a.weight_decay = 0.01f;
    resume_matches(a);
    resume_matches(kl_optim_defaults(KL_OPTIM_ADAMW));

    /* A resumed Adam that forgot the step count would use t = 1 and get a different update. */
    kl_optim_config c = kl_optim_defaults(KL_OPTIM_ADAM);
    kl_optim *x = make(&c, 1), *y = make(&c, 1);
    if (x && y) {
        float px = 1, py = 1, g = 0.5f, g2 = -0.25f;
        kl_optim_step(x, &px, &g, 0.1f, NULL, 0);
        py = px;
        memcpy(kl_optim_state(y), kl_optim_state(x), 2 * sizeof(float));
        kl_optim_step(x, &px, &g2, 0.1f, NULL, 0);
        kl_optim_step(y, &py, &g2, 0.1f, NULL, 0);
        CHECK(fabsf(px - py) > 1e-3f);
    }
    kl_optim_free(x);
    kl_optim_free(y);
}

static void test_clip(void)
{
    float g[2] = {3.0f, 4.0f};
    /* Norm 5 is below 10: returned, nothing scaled. */
    CHECK_NEAR(kl_clip_grad_norm(g, 2, 10.0f), 5.0, TOL);
    CHECK(g[0] == 3.0f && g[1] == 4.0f);
    /* Norm equal to max_norm is not above it: unchanged. */
    CHECK_NEAR(kl_clip_grad_norm(g, 2, 5.0f), 5.0, TOL);
    CHECK(g[0] == 3.0f && g[1] == 4.0f);
    /* Norm 5 above 1: scale 1/(5 + 1e-6), g = (0.6, 0.8) to 1e-6, new norm 1 within 1e-5. */
    CHECK_NEAR(kl_clip_grad_norm(g, 2, 1.0f), 5.0, TOL);
    CHECK_NEAR(g[0], 3.0 / (5.0 + 1e-6), 1e-7);
    CHECK_NEAR(g[1], 4.0 / (5.0 + 1e-6), 1e-7);
    CHECK_NEAR(sqrt((double)g[0] * g[0] + (double)g[1] * g[1]), 1.0, 1e-5);
    CHECK_NEAR(kl_clip_grad_norm(NULL, 0, 1.0f), 0.0, 0.0);

    /* 2^22 elements of 0.001f: norm = 2048 * 0.001f. A float accumulator stalls once the sum of
     * squares nears 4 (its ulp is then half of each 1e-6 addend) and would be off by percents. */
    size_t n = (size_t)1 << 22;
    float *big = malloc(n * sizeof *big);
    CHECK(big != NULL);
    if (!big)
        return;
    for (size_t i = 0; i < n; i++)
        big[i] = 0.001f;
    double want = 2048.0 * (double)0.001f;
    CHECK_NEAR(kl_clip_grad_norm(big, n, 1.0f), want, 1e-5);
    double sumsq = 0;
    for (size_t i = 0; i < n; i++)
        sumsq += (double)big[i] * big[i];
    CHECK_NEAR(sqrt(sumsq), 1.0, 1e-5);
    free(big);
}

/* Each config must be refused with KL_EINVAL and a message that names the field. */
static void expect_rejected(kl_optim_config c, const char *field, int line)
{
    kl_error err = {0};
    kl_optim *o = kl_optim_new(&c, 4, &err);
    check_(o == NULL, __FILE__, line, "kl_optim_new rejects the config");
    check_(err.status == KL_EINVAL, __FILE__, line, "status is KL_EINVAL");
    check_(err.msg[0] != '\0', __FILE__, line, "message is not empty");
    if (!check_(strstr(err.msg, field) != NULL, __FILE__, line, "message names the field"))
        fprintf(stderr, "    wanted '%s' in: %s\n", field, err.msg);
    kl_optim_free(o);
}

static void test_invalid_configs(void)
{
    kl_optim_config c;

    c = sgd(0, 0, false, -0.1f);
    expect_rejected(c, "weight_decay", __LINE__);
    c = kl_optim_defaults(KL_OPTIM_ADAM);
    c.weight_decay = -1e-4f;
    expect_rejected(c, "weight_decay", __LINE__);
    c = kl_optim_defaults(KL_OPTIM_ADAMW);
    c.weight_decay = NAN;
    expect_rejected(c, "weight_decay", __LINE__);

    expect_rejected(sgd(-0.1f, 0, false, 0), "momentum", __LINE__);
    expect_rejected(sgd(1.0f, 0, false, 0), "momentum", __LINE__);
    expect_rejected(sgd(NAN, 0, false, 0), "momentum", __LINE__);
    expect_rejected(sgd(0, 0, true, 0), "nesterov", __LINE__);
    expect_rejected(sgd(0.9f, 0.1f, true, 0), "dampening", __LINE__);

    kl_optim_kind adams[2] = {KL_OPTIM_ADAM, KL_OPTIM_ADAMW};
    for (int i = 0; i < 2; i++) {
        c = kl_optim_defaults(adams[i]);
        c.beta1 = 1.0f;
        expect_rejected(c, "beta1", __LINE__);
        c = kl_optim_defaults(adams[i]);
        c.beta1 = -0.1f;
        expect_rejected(c, "beta1", __LINE__);
        c = kl_optim_defaults(adams[i]);
        c.beta2 = 1.0f;
        expect_rejected(c, "beta2", __LINE__);
        c = kl_optim_defaults(adams[i]);
        c.beta2 = -0.5f;
        expect_rejected(c, "beta2", __LINE__);
        c = kl_optim_defaults(adams[i]);
        c.eps = 0.0f;
        expect_rejected(c, "eps", __LINE__);
        c = kl_optim_defaults(adams[i]);
        c.eps = -1e-8f;
        expect_rejected(c, "eps", __LINE__);
    }

    c = kl_optim_defaults(KL_OPTIM_SGD);
    c.kind = (kl_optim_kind)42;
    expect_rejected(c, "kind", __LINE__);

    kl_error err = {0};
    CHECK(kl_optim_new(NULL, 4, &err) == NULL);
    CHECK(err.status == KL_EINVAL && err.msg[0] != '\0');
    /* A NULL kl_error is allowed: the call still fails cleanly. */
    c = sgd(0, 0, false, -1.0f);
    CHECK(kl_optim_new(&c, 4, NULL) == NULL);
}

static void test_empty(void)
{
    kl_optim_config c = kl_optim_defaults(KL_OPTIM_ADAMW);
    kl_optim *o = make(&c, 0);
    if (!o)
        return;
    CHECK(kl_optim_state_size(o) == 0);
    kl_optim_step(o, NULL, NULL, 0.1f, NULL, 0);
    CHECK(kl_optim_steps(o) == 1);
    kl_optim_free(o);
    kl_optim_free(NULL);
}

static const check_case cases[] = {
    CHECK_CASE(test_defaults),
    CHECK_CASE(test_sgd_plain),
    CHECK_CASE(test_sgd_weight_decay),
    CHECK_CASE(test_sgd_momentum),
    CHECK_CASE(test_sgd_dampening),
    CHECK_CASE(test_sgd_nesterov),
    CHECK_CASE(test_sgd_momentum_weight_decay),
    CHECK_CASE(test_adam_two_steps),
    CHECK_CASE(test_adam_eps),
    CHECK_CASE(test_adamw_vs_adam_l2),
    CHECK_CASE(test_segments_sgd),
    CHECK_CASE(test_segments_adam),
    CHECK_CASE(test_state_layout),
    CHECK_CASE(test_resume),
    CHECK_CASE(test_clip),
    CHECK_CASE(test_invalid_configs),
    CHECK_CASE(test_empty),
};

int main(int argc, char **argv)
{
    return check_run("test_optim", cases, CHECK_NCASES(cases), argc, argv);
}
