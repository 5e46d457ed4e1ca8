/* Tests for serve/sched/slo.c, the batch cap under a latency target: no target leaves the cap at
 * max; a p99 under the target raises it by one a window, up to max; a p99 over it cuts it to
 * three quarters, down to 1; only the window's 99th percentile counts, not its mean or a single
 * outlier. Model-call durations are made up, so the test needs no server and no clock. */
#include "check.h"
#include "serve/sched/slo.h"

/* Feeds one window: all at `base` seconds but `slow` of them at `high`. */
static int window(kl__slo *s, double base, int slow, double high)
{
    int cap = s->cap;
    for (int i = 0; i < KL__SLO_WINDOW; i++)
        cap = kl__slo_observe(s, i < slow ? high : base);
    return cap;
}

static void test_no_target(void)
{
    kl__slo s;
    kl__slo_init(&s, 0, 64);
    CHECK(s.cap == 64);
    CHECK(window(&s, 10.0, 0, 0) == 64); /* any latency: no target, no change */
    CHECK(s.raised == 0 && s.lowered == 0);
}

static void test_increase_and_decrease(void)
{
    kl__slo s;
    kl__slo_init(&s, 5, 64); /* 5 ms */
    CHECK(s.cap == 32);
    /* Mid-window nothing moves. */
    for (int i = 0; i < KL__SLO_WINDOW - 1; i++)
        CHECK(kl__slo_observe(&s, 0.001) == 32);
    CHECK(kl__slo_observe(&s, 0.001) == 33);
    CHECK(window(&s, 0.001, 0, 0) == 34);
    /* Over the target: three quarters. */
    CHECK(window(&s, 0.009, 0, 0) == 25);
    CHECK(window(&s, 0.009, 0, 0) == 18);
    CHECK(s.raised == 2 && s.lowered == 2);
    /* Never past max, never under 1. */
    for (int i = 0; i < 100; i++)
        window(&s, 0.001, 0, 0);
    CHECK(s.cap == 64);
    for (int i = 0; i < 30; i++)
        window(&s, 1.0, 0, 0);
    CHECK(s.cap == 1);
    CHECK(window(&s, 0.001, 0, 0) == 2);
}

static void test_percentile(void)
{
    kl__slo s;
    kl__slo_init(&s, 5, 64);
    /* One slow request in 128 is under the 1% the p99 leaves out: the cap still grows. */
    CHECK(window(&s, 0.001, 1, 0.5) == 33);
    /* Three slow ones (2.3%) put the p99 over the target. */
    CHECK(window(&s, 0.001, 3, 0.5) == 24);
    /* A target exactly met is met. */
    CHECK(window(&s, s.target_s, 0, 0) == 25);
}

static void test_small_max(void)
{
    kl__slo s;
    kl__slo_init(&s, 5, 1);
    CHECK(s.cap == 1);
    CHECK(window(&s, 1.0, 0, 0) == 1);
    CHECK(window(&s, 0.001, 0, 0) == 1);
    kl__slo_init(&s, 5, 2);
    CHECK(s.cap == 1);
    CHECK(window(&s, 0.001, 0, 0) == 2);
}

static const check_case cases[] = {
    CHECK_CASE(test_no_target),
    CHECK_CASE(test_increase_and_decrease),
    CHECK_CASE(test_percentile),
    CHECK_CASE(test_small_max),
};

int main(int argc, char **argv)
{
    return check_run("test_serve_slo", cases, CHECK_NCASES(cases), argc, argv);
}
