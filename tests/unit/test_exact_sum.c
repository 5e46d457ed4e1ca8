/* The exact sum behind dist.deterministic (ops/exact_sum.c): the same addends summed in any order
 * and any grouping (accumulators added limb by limb, as an integer all-reduce does) give the same
 * bits; the result is the exact sum rounded once, checked against a reference built from each
 * float's mantissa and exponent (frexpf) as one 128-bit integer; tiny addends stay within the
 * stated error; out-of-range and non-finite addends are counted and left out; the range limits
 * hold at their edges. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ops/exact_sum.h"

__extension__ typedef __int128 i128;

enum { N = 257, K = 64 }; /* elements, addends per element */

static uint64_t rng_state = 0x9e3779b97f4a7c15u;
static uint64_t next_u64(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* A random float of either sign with a random exponent in [emin, emax). */
static float random_float(int emin, int emax)
{
    uint64_t u = next_u64();
    float m = 1.0f + (float)(u & 0x7fffff) / 0x1p23f;
    int e = emin + (int)((u >> 23) % (uint64_t)(emax - emin));
    return ldexpf((u >> 40) & 1 ? -m : m, e);
}

/* x * 2^72 as an integer, for |x| >= 2^-49: the 24-bit mantissa shifted into place. */
static i128 as_fixed(float x)
{
    int e;
    float m = frexpf(x, &e); /* x = m * 2^e, 0.5 <= |m| < 1 */
    int64_t mi = (int64_t)ldexpf(m, 24);
    int shift = e - 24 + 72; /* >= 0 for |x| >= 2^-49 */
    return (i128)mi * ((i128)1 << shift);
}

static float *addends(int emin, int emax)
{
    float *x = malloc((size_t)K * N * sizeof *x);
    for (size_t i = 0; x && i < (size_t)K * N; i++)
        x[i] = random_float(emin, emax);
    return x;
}

/* Every order and grouping gives the same bits, which are the exact sum rounded once. */
static void test_order_independent(void)
{
    float *x = addends(-49, 34);
    size_t sz = kl__exact_size(N);
    int64_t *fwd = calloc(sz, sizeof *fwd), *rev = calloc(sz, sizeof *rev);
    int64_t *g1 = calloc(sz, sizeof *g1), *g2 = calloc(sz, sizeof *g2);
    float *a = malloc(N * sizeof *a), *b = malloc(N * sizeof *b), *c = malloc(N * sizeof *c);
    if (!CHECK(x && fwd && rev && g1 && g2 && a && b && c))
        return;
    size_t refused = 0;
    for (int k = 0; k < K; k++)
        refused += kl__exact_add(fwd, N, 0, x + (size_t)k * N, N);
    for (int k = K - 1; k >= 0; k--)
        refused += kl__exact_add(rev, N, 0, x + (size_t)k * N, N);
    /* Two "ranks": the odd addends and the even ones, then their limbs added. */
    for (int k = 0; k < K; k++)
        refused += kl__exact_add(k % 2 ? g1 : g2, N, 0, x + (size_t)k * N, N);
    for (size_t i = 0; i < sz; i++)
        g1[i] += g2[i];
    CHECK(refused == 0);
    kl__exact_get(fwd, N, 0, N, 1.0f, a);
    kl__exact_get(rev, N, 0, N, 1.0f, b);
    kl__exact_get(g1, N, 0, N, 1.0f, c);
    CHECK(memcmp(a, b, N * sizeof *a) == 0);
    CHECK(memcmp(a, c, N * sizeof *a) == 0);
    /* The reference: the exact integer sum, rounded to float once. */
    int bad = 0, float_order_differs = 0;
    for (int i = 0; i < N; i++) {
        i128 s = 0;
        float f_fwd = 0, f_rev = 0;
        for (int k = 0; k < K; k++) {
            s += as_fixed(x[(size_t)k * N + i]);
            f_fwd += x[(size_t)k * N + i];
            f_rev += x[(size_t)(K - 1 - k) * N + i];
        }
        float want = ldexpf((float)s, -72);
        bad += memcmp(&want, &a[i], sizeof want) != 0;
        float_order_differs += f_fwd != f_rev;
    }
    CHECK(bad == 0);
    /* The plain float sums of the same addends do depend on the order (what this is for). */
    CHECK(float_order_differs > 0);
    free(x), free(fwd), free(rev), free(g1), free(g2), free(a), free(b), free(c);
}

/* Below 2^-49 an addend is rounded to the 2^-72 grid: within 2^-73 each. */
static void test_tiny(void)
{
    float *x = addends(-90, -49);
    size_t sz = kl__exact_size(N);
    int64_t *acc = calloc(sz, sizeof *acc);
    float *got = malloc(N * sizeof *got);
    if (!CHECK(x && acc && got))
        return;
    for (int k = 0; k < K; k++)
        CHECK(kl__exact_add(acc, N, 0, x + (size_t)k * N, N) == 0);
    kl__exact_get(acc, N, 0, N, 1.0f, got);
    int bad = 0;
    for (int i = 0; i < N; i++) {
        long double s = 0;
        for (int k = 0; k < K; k++)
            s += x[(size_t)k * N + i]; /* exact: these span fewer bits than a long double */
        long double tol = K * 0x1p-73L + fabsl(s) * 0x1p-24L;
        bad += fabsl((long double)got[i] - s) > tol;
    }
    CHECK(bad == 0);
    free(x), free(acc), free(got);
}

/* Non-finite and too large addends are counted and left out; the largest allowed, at the
 * addend limit, sums without overflow, and signs cancel exactly. */
static void test_range(void)
{
    enum { M = 6 };
    int64_t acc[3 * M] = {0};
    float x[M] = {NAN, INFINITY, -0x1p41f, KL__EXACT_MAX, -KL__EXACT_MAX, 1.5f}, out[M];
    CHECK(kl__exact_size(M) == 3 * M);
    CHECK(kl__exact_size(SIZE_MAX / 8) == 0);
    size_t refused = 0;
    for (int k = 0; k < KL__EXACT_ADDENDS; k++)
        refused += kl__exact_add(acc, M, 0, x, M);
    CHECK(refused == 3 * (size_t)KL__EXACT_ADDENDS);
    kl__exact_get(acc, M, 0, M, 1.0f, out);
    CHECK(out[0] == 0 && out[1] == 0 && out[2] == 0);
    CHECK(out[3] == 0x1p54f && out[4] == -0x1p54f);
    CHECK(out[5] == 1.5f * KL__EXACT_ADDENDS);
    /* A scale applies after the sum. */
    int64_t one[3] = {0};
    float third = -1.0f / 3.0f, y;
    kl__exact_add(one, 1, 0, &third, 1);
    kl__exact_add(one, 1, 0, &third, 1);
    kl__exact_get(one, 1, 0, 1, 0.5f, &y);
    CHECK(y == third);
    /* Offsets address one element of each limb. */
    int64_t two[6] = {0};
    float z[2];
    CHECK(kl__exact_add(two, 2, 1, &third, 1) == 0);
    kl__exact_get(two, 2, 0, 2, 1.0f, z);
    CHECK(z[0] == 0 && z[1] == third);
}

static const check_case cases[] = {
    CHECK_CASE(test_order_independent),
    CHECK_CASE(test_tiny),
    CHECK_CASE(test_range),
};

int main(int argc, char **argv)
{
    return check_run("test_exact_sum", cases, CHECK_NCASES(cases), argc, argv);
}
