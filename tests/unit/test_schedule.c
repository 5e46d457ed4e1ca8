/* Tests for ops/lr_schedule.c: warmup, step decay at its boundaries, cosine at its start,
 * middle and end, one-cycle's rise, peak and fall, and every schedule kl_lr_check must refuse,
 * against values worked out by hand (test_torch_golden.c compares cosine and one-cycle with
 * PyTorch's schedulers). */
#include <math.h>
#include <string.h>

#include "check.h"
#include "kiln/lr_schedule.h"

#define TOL 1e-6

static kl_lr_schedule constant(float base, int64_t warmup)
{
    return (kl_lr_schedule){.kind = KL_LR_CONSTANT, .base_lr = base, .warmup_steps = warmup};
}

static kl_lr_schedule step_decay(float base, int64_t warmup, int64_t step_size, float gamma)
{
    return (kl_lr_schedule){.kind = KL_LR_STEP,
                            .base_lr = base,
                            .warmup_steps = warmup,
                            .step_size = step_size,
                            .gamma = gamma};
}

static kl_lr_schedule cosine(float base, int64_t warmup, int64_t total, float min_lr)
{
    return (kl_lr_schedule){.kind = KL_LR_COSINE,
                            .base_lr = base,
                            .warmup_steps = warmup,
                            .total_steps = total,
                            .min_lr = min_lr};
}

static kl_lr_schedule onecycle(float peak, int64_t total, float pct, float div, float final_div)
{
    return (kl_lr_schedule){.kind = KL_LR_ONECYCLE,
                            .base_lr = peak,
                            .total_steps = total,
                            .pct_start = pct,
                            .div_factor = div,
                            .final_div_factor = final_div};
}

static void expect_valid(kl_lr_schedule s, int line)
{
    kl_error err = {0};
    if (!check_(kl_lr_check(&s, &err) == KL_OK, __FILE__, line, "kl_lr_check accepts"))
        fprintf(stderr, "    %s\n", err.msg);
}

static void test_names(void)
{
    CHECK(strcmp(kl_lr_kind_name(KL_LR_CONSTANT), "constant") == 0);
    CHECK(strcmp(kl_lr_kind_name(KL_LR_STEP), "step") == 0);
    CHECK(strcmp(kl_lr_kind_name(KL_LR_COSINE), "cosine") == 0);
    CHECK(strcmp(kl_lr_kind_name(KL_LR_ONECYCLE), "onecycle") == 0);
}

static void test_constant(void)
{
    kl_lr_schedule s = constant(0.5f, 0);
    expect_valid(s, __LINE__);
    CHECK(kl_lr_at(&s, 0) == 0.5f);
    CHECK(kl_lr_at(&s, 1000000) == 0.5f);
    /* A negative step is treated as step 0. */
    CHECK(kl_lr_at(&s, -3) == 0.5f);
}

static void test_warmup(void)
{
    /* base 1, warmup 4: steps 0..3 give 1/4, 2/4, 3/4, 4/4; after that base. */
    kl_lr_schedule s = constant(1.0f, 4);
    expect_valid(s, __LINE__);
    CHECK_NEAR(kl_lr_at(&s, 0), 0.25, TOL);
    CHECK_NEAR(kl_lr_at(&s, 1), 0.5, TOL);
    CHECK_NEAR(kl_lr_at(&s, 2), 0.75, TOL);
    CHECK_NEAR(kl_lr_at(&s, 3), 1.0, TOL);
    CHECK_NEAR(kl_lr_at(&s, 4), 1.0, TOL);
    CHECK_NEAR(kl_lr_at(&s, 100), 1.0, TOL);

    /* base 0.3, warmup 3: 0.1, 0.2, 0.3. */
    kl_lr_schedule t = constant(0.3f, 3);
    CHECK_NEAR(kl_lr_at(&t, 0), 0.1, TOL);
    CHECK_NEAR(kl_lr_at(&t, 1), 0.2, TOL);
    CHECK_NEAR(kl_lr_at(&t, 2), 0.3, TOL);
}

static void test_step(void)
{
    /* base 1, step_size 10, gamma 0.1: 1 for steps 0-9, 0.1 for 10-19, 0.01 for 20-29. */
    kl_lr_schedule s = step_decay(1.0f, 0, 10, 0.1f);
    expect_valid(s, __LINE__);
    CHECK_NEAR(kl_lr_at(&s, 0), 1.0, TOL);
    CHECK_NEAR(kl_lr_at(&s, 9), 1.0, TOL);
    CHECK_NEAR(kl_lr_at(&s, 10), 0.1, TOL);
    CHECK_NEAR(kl_lr_at(&s, 19), 0.1, TOL);
    CHECK_NEAR(kl_lr_at(&s, 20), 0.01, TOL);
    CHECK_NEAR(kl_lr_at(&s, 29), 0.01, TOL);
    CHECK_NEAR(kl_lr_at(&s, 30), 0.001, 1e-9);

    /* With warmup 5 the decay counts from the end of warmup: s = step - 5, so step 14 (s = 9)
     * is still 1 and step 15 (s = 10) is the first at 0.1. During warmup: (step+1)/5. */
    kl_lr_schedule w = step_decay(1.0f, 5, 10, 0.1f);
    expect_valid(w, __LINE__);
    CHECK_NEAR(kl_lr_at(&w, 0), 0.2, TOL);
    CHECK_NEAR(kl_lr_at(&w, 4), 1.0, TOL);
    CHECK_NEAR(kl_lr_at(&w, 5), 1.0, TOL);
    CHECK_NEAR(kl_lr_at(&w, 14), 1.0, TOL);
    CHECK_NEAR(kl_lr_at(&w, 15), 0.1, TOL);
    CHECK_NEAR(kl_lr_at(&w, 25), 0.01, TOL);

    /* gamma 0.5, step_size 3, base 0.8: step 9 is s/3 = 3 decays, 0.8 * 0.125 = 0.1. */
    kl_lr_schedule h = step_decay(0.8f, 0, 3, 0.5f);
    CHECK_NEAR(kl_lr_at(&h, 8), 0.2, TOL);
    CHECK_NEAR(kl_lr_at(&h, 9), 0.1, TOL);

    /* gamma 1 is a constant rate. */
    kl_lr_schedule one = step_decay(0.5f, 0, 1, 1.0f);
    expect_valid(one, __LINE__);
    CHECK(kl_lr_at(&one, 123456789) == 0.5f);

    /* A huge step must be quick and give 0.5^(10^12), which is 0 in float. */
    kl_lr_schedule big = step_decay(1.0f, 0, 1, 0.5f);
    float far = kl_lr_at(&big, (int64_t)1000000000000);
    CHECK(far == 0.0f);
    /* 0.5^100 = 7.88860905e-31 exactly representable as a power of two. */
    CHECK(kl_lr_at(&big, 100) == ldexpf(1.0f, -100));
}

static void test_cosine(void)
{
    /* base 1, min 0.1, warmup 10, total 110: T = 100 cosine steps after warmup. */
    kl_lr_schedule s = cosine(1.0f, 10, 110, 0.1f);
    expect_valid(s, __LINE__);
    /* Warmup: step 0 is 1/10, step 9 is 10/10. */
    CHECK_NEAR(kl_lr_at(&s, 0), 0.1, TOL);
    CHECK_NEAR(kl_lr_at(&s, 9), 1.0, TOL);
    /* Start, s = 0: 0.1 + 0.9*(1 + cos 0)/2 = 1. */
    CHECK_NEAR(kl_lr_at(&s, 10), 1.0, TOL);
    /* s = 25: 0.1 + 0.9*(1 + cos(pi/4))/2 = 0.1 + 0.9*0.853553391 = 0.868198052. */
    CHECK_NEAR(kl_lr_at(&s, 35), 0.868198052, TOL);
    /* Middle, s = 50: 0.1 + 0.9*(1 + cos(pi/2))/2 = 0.55. */
    CHECK_NEAR(kl_lr_at(&s, 60), 0.55, TOL);
    /* s = 99: 0.1 + 0.9*(1 + cos(0.99 pi))/2 = 0.1 + 0.9*(1 - 0.999506560)/2 = 0.100222048. */
    CHECK_NEAR(kl_lr_at(&s, 109), 0.100222048, TOL);
    /* End, s = T, and after: min_lr exactly. */
    CHECK(kl_lr_at(&s, 110) == 0.1f);
    CHECK(kl_lr_at(&s, 111) == 0.1f);
    CHECK(kl_lr_at(&s, 1000000) == 0.1f);

    /* Never rising after warmup. */
    int rising = 0;
    for (int64_t i = 11; i <= 120; i++)
        rising += kl_lr_at(&s, i) > kl_lr_at(&s, i - 1);
    CHECK(rising == 0);

    /* No warmup, min 0: s = step, T = 4; step 2 = 0.5*(1 + cos(pi/2)) = 0.5 * base. */
    kl_lr_schedule z = cosine(2.0f, 0, 4, 0.0f);
    expect_valid(z, __LINE__);
    CHECK_NEAR(kl_lr_at(&z, 0), 2.0, TOL);
    CHECK_NEAR(kl_lr_at(&z, 2), 1.0, TOL);
    CHECK(kl_lr_at(&z, 4) == 0.0f);

    /* min_lr == base_lr is allowed and is a constant rate. */
    kl_lr_schedule flat = cosine(0.5f, 0, 10, 0.5f);
    expect_valid(flat, __LINE__);
    CHECK_NEAR(kl_lr_at(&flat, 3), 0.5, TOL);
}

static void test_onecycle(void)
{
    /* peak 1, div 10 (start 0.1), final_div 100 (end 0.001), T = 20, pct 0.25: the rise ends at
     * e = 0.25 * 20 - 1 = 4, the fall runs from 4 to T - 1 = 19 (15 steps). */
    kl_lr_schedule s = onecycle(1.0f, 20, 0.25f, 10.0f, 100.0f);
    expect_valid(s, __LINE__);
    CHECK_NEAR(kl_lr_at(&s, 0), 0.1, TOL);
    CHECK_NEAR(kl_lr_at(&s, -3), 0.1, TOL);
    /* Step 2, halfway up: 1 + (0.1 - 1)/2 * (cos(pi/2) + 1) = 0.55. */
    CHECK_NEAR(kl_lr_at(&s, 2), 0.55, TOL);
    CHECK(kl_lr_at(&s, 4) == 1.0f);
    /* Step 9, a third of the fall: 0.001 + 0.999/2 * (cos(pi/3) + 1) = 0.75025; step 14, two
     * thirds: 0.001 + 0.999/2 * (cos(2pi/3) + 1) = 0.25075. */
    CHECK_NEAR(kl_lr_at(&s, 9), 0.75025, TOL);
    CHECK_NEAR(kl_lr_at(&s, 14), 0.25075, TOL);
    /* The last step and after: the end rate. */
    CHECK(kl_lr_at(&s, 19) == 0.001f);
    CHECK(kl_lr_at(&s, 20) == 0.001f);
    CHECK(kl_lr_at(&s, 1000000) == 0.001f);

    /* Rising to the peak, then never rising. */
    int falls = 0, rises = 0;
    for (int64_t i = 1; i <= 4; i++)
        falls += kl_lr_at(&s, i) <= kl_lr_at(&s, i - 1);
    for (int64_t i = 5; i <= 25; i++)
        rises += kl_lr_at(&s, i) > kl_lr_at(&s, i - 1);
    CHECK(falls == 0 && rises == 0);

    /* Fields it does not use are not checked, and warmup is not one of its own. */
    kl_lr_schedule o = onecycle(0.1f, 100, 0.3f, 25.0f, 1e4f);
    o.min_lr = -5.0f;
    o.gamma = 7.0f;
    expect_valid(o, __LINE__);
}

/* Each schedule must be refused with KL_EINVAL and a message that names the field. */
static void expect_rejected(kl_lr_schedule s, const char *field, int line)
{
    kl_error err = {0};
    kl_status st = kl_lr_check(&s, &err);
    check_(st == KL_EINVAL, __FILE__, line, "kl_lr_check returns KL_EINVAL");
    check_(err.status == KL_EINVAL, __FILE__, line, "err.status is KL_EINVAL");
    check_(err.msg[0] != '\0', __FILE__, line, "message is not empty");
    if (!check_(strstr(err.msg, field) != NULL, __FILE__, line, "message names the field"))
        fprintf(stderr, "    wanted '%s' in: %s\n", field, err.msg);
}

static void test_check_rejects(void)
{
    expect_rejected(constant(0.0f, 0), "base_lr", __LINE__);
    expect_rejected(constant(-0.1f, 0), "base_lr", __LINE__);
    expect_rejected(constant(NAN, 0), "base_lr", __LINE__);
    expect_rejected(constant(INFINITY, 0), "base_lr", __LINE__);
    expect_rejected(constant(0.1f, -1), "warmup_steps", __LINE__);
    expect_rejected(step_decay(0.1f, -5, 10, 0.5f), "warmup_steps", __LINE__);

    expect_rejected(step_decay(0.1f, 0, 0, 0.5f), "step_size", __LINE__);
    expect_rejected(step_decay(0.1f, 0, -10, 0.5f), "step_size", __LINE__);
    expect_rejected(step_decay(0.1f, 0, 10, 0.0f), "gamma", __LINE__);
    expect_rejected(step_decay(0.1f, 0, 10, -0.5f), "gamma", __LINE__);
    expect_rejected(step_decay(0.1f, 0, 10, 1.5f), "gamma", __LINE__);
    expect_rejected(step_decay(0.1f, 0, 10, NAN), "gamma", __LINE__);

    expect_rejected(cosine(0.1f, 10, 10, 0.0f), "total_steps", __LINE__);
    expect_rejected(cosine(0.1f, 10, 5, 0.0f), "total_steps", __LINE__);
    expect_rejected(cosine(0.1f, 0, 0, 0.0f), "total_steps", __LINE__);
    expect_rejected(cosine(0.1f, 0, 100, -0.01f), "min_lr", __LINE__);
    expect_rejected(cosine(0.1f, 0, 100, 0.2f), "min_lr", __LINE__);
    expect_rejected(cosine(0.1f, 0, 100, NAN), "min_lr", __LINE__);

    kl_lr_schedule warm = onecycle(0.1f, 100, 0.3f, 25.0f, 1e4f);
    warm.warmup_steps = 10;
    expect_rejected(warm, "warmup_steps", __LINE__);
    expect_rejected(onecycle(0.1f, 100, 0.0f, 25.0f, 1e4f), "pct_start", __LINE__);
    expect_rejected(onecycle(0.1f, 100, 1.0f, 25.0f, 1e4f), "pct_start", __LINE__);
    expect_rejected(onecycle(0.1f, 100, NAN, 25.0f, 1e4f), "pct_start", __LINE__);
    expect_rejected(onecycle(0.1f, 100, 0.3f, 0.5f, 1e4f), "div_factor", __LINE__);
    expect_rejected(onecycle(0.1f, 100, 0.3f, INFINITY, 1e4f), "div_factor", __LINE__);
    expect_rejected(onecycle(0.1f, 100, 0.3f, 25.0f, 0.0f), "final_div_factor", __LINE__);
    expect_rejected(onecycle(0.1f, 100, 0.3f, 25.0f, NAN), "final_div_factor", __LINE__);
    /* No rise: pct_start * total_steps <= 1 (0.3 * 3 = 0.9, 0.25 * 4 = 1, and no steps). */
    expect_rejected(onecycle(0.1f, 3, 0.3f, 25.0f, 1e4f), "total_steps", __LINE__);
    expect_rejected(onecycle(0.1f, 4, 0.25f, 25.0f, 1e4f), "total_steps", __LINE__);
    expect_rejected(onecycle(0.1f, 0, 0.3f, 25.0f, 1e4f), "total_steps", __LINE__);
    /* The shortest: a rise to e = 0.25 * 5 - 1 = 0.25, then the fall to step 4. */
    kl_lr_schedule shortest = onecycle(1.0f, 5, 0.25f, 10.0f, 100.0f);
    expect_valid(shortest, __LINE__);
    CHECK_NEAR(kl_lr_at(&shortest, 0), 0.1, TOL);
    CHECK(kl_lr_at(&shortest, 4) == 0.001f);
    CHECK(kl_lr_at(&shortest, 1) < 1.0f && kl_lr_at(&shortest, 1) > kl_lr_at(&shortest, 2));

    kl_lr_schedule bad = constant(0.1f, 0);
    bad.kind = (kl_lr_kind)7;
    expect_rejected(bad, "kind", __LINE__);

    kl_error err = {0};
    CHECK(kl_lr_check(NULL, &err) == KL_EINVAL);
    CHECK(err.msg[0] != '\0');
    /* A NULL kl_error is allowed. */
    kl_lr_schedule s = constant(-1.0f, 0);
    CHECK(kl_lr_check(&s, NULL) == KL_EINVAL);

    /* Fields a kind does not use are not checked: a constant schedule ignores gamma. */
    kl_lr_schedule c = constant(0.1f, 0);
    c.gamma = 5.0f;
    c.step_size = -1;
    expect_valid(c, __LINE__);
}

static const check_case cases[] = {
    CHECK_CASE(test_names),         CHECK_CASE(test_constant), CHECK_CASE(test_warmup),
    CHECK_CASE(test_step),          CHECK_CASE(test_cosine),   CHECK_CASE(test_onecycle),
    CHECK_CASE(test_check_rejects),
};

int main(int argc, char **argv)
{
    return check_run("test_schedule", cases, CHECK_NCASES(cases), argc, argv);
}
