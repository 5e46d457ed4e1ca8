/* Exact, order-independent sums of float vectors in fixed point (ops/exact_sum.h): the
 * arithmetic behind dist.deterministic. An addend x becomes x * 2^72 = a * 2^64 + b * 2^32 + c
 * with integers a, b and c of x's sign, |b| < 2^32 and |c| <= 2^32, computed in double from |x|
 * where every step but the rounding of c is exact; integer additions of the limbs then
 * commute. */
#include <math.h>
#include <stdint.h>

#include "ops/exact_sum.h"

/* GCC's and Clang's 128-bit integers, for the one conversion back to float. */
__extension__ typedef __int128 i128;

size_t kl__exact_size(size_t n)
{
    return n > SIZE_MAX / (KL__EXACT_LIMBS * sizeof(int64_t)) ? 0 : n * KL__EXACT_LIMBS;
}

size_t kl__exact_add(int64_t *acc, size_t n, size_t at, const float *x, size_t len)
{
    int64_t *hi = acc + at, *mid = acc + n + at, *lo = acc + 2 * n + at;
    size_t refused = 0;
    for (size_t i = 0; i < len; i++) {
        float v = x[i];
        if (!(fabsf(v) <= KL__EXACT_MAX)) { /* NaN too */
            refused++;
            continue;
        }
        /* d = |x| * 2^8 <= 2^48. Each fractional part below holds a subset of x's 24
         * significant bits, so it is exact; only c rounds (half away from zero), and only for
         * |x| < 2^-49. A negative x adds the negated limbs of |x|. */
        double d = (double)fabsf(v) * 0x1p8;
        int64_t a = (int64_t)d;
        double r = (d - (double)a) * 0x1p32;
        int64_t b = (int64_t)r;
        int64_t c = (int64_t)((r - (double)b) * 0x1p32 + 0.5);
        int64_t sign = v < 0 ? -1 : 1;
        hi[i] += sign * a;
        mid[i] += sign * b;
        lo[i] += sign * c;
    }
    return refused;
}

void kl__exact_get(const int64_t *acc, size_t n, size_t at, size_t len, float scale, float *out)
{
    const int64_t *hi = acc + at, *mid = acc + n + at, *lo = acc + 2 * n + at;
    for (size_t i = 0; i < len; i++) {
        /* |hi| <= 2^62 and |mid|, |lo| <= 2^46 within the limits: the value fits easily. */
        i128 v = (i128)hi[i] * ((i128)1 << 64) + (i128)mid[i] * ((i128)1 << 32) + lo[i];
        float f = ldexpf((float)v, -72); /* the conversion rounds once; 2^-72 is exact */
        out[i] = scale == 1.0f ? f : f * scale;
    }
}
