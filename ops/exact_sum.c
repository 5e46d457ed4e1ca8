/* Exact, order-independent sums of float vectors in fixed point (ops/exact_sum.h): the
 * arithmetic behind dist.deterministic. An addend x becomes x * 2^72 = a * 2^64 + b * 2^32 + c
 * with integers |a| <= 2^48, |b| <= 2^31 and |c| <= 2^31, computed in double where every step but
 * the rounding of c is exact; integer additions of the limbs then commute. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "ops/exact_sum.h"

/* GCC's and Clang's 128-bit integers, for the one conversion back to float. */
__extension__ typedef __int128 i128;
__extension__ typedef unsigned __int128 u128;

size_t kl__exact_size(size_t n)
{
    return n > SIZE_MAX / (KL__EXACT_LIMBS * sizeof(int64_t)) ? 0 : n * KL__EXACT_LIMBS;
}

/* d rounded to the nearest integer (ties to even) for |d| < 2^51, as a double and in *i: adding
 * 1.5 * 2^52 leaves the integer in the low bits of the sum's representation. Plain arithmetic
 * and bit copies, so that the loops below vectorise. */
static inline double round_i64(double d, int64_t *i)
{
    const double magic = 0x1.8p52;
    double t = d + magic;
    int64_t bt, bm;
    memcpy(&bt, &t, sizeof bt);
    memcpy(&bm, &magic, sizeof bm);
    *i = bt - bm;
    return t - magic;
}

size_t kl__exact_add(int64_t *acc, size_t n, size_t at, const float *x, size_t len)
{
    int64_t *hi = acc + at, *mid = acc + n + at, *lo = acc + 2 * n + at;
    const float max = KL__EXACT_MAX;
    uint32_t max_bits;
    memcpy(&max_bits, &max, sizeof max_bits);
    size_t refused = 0;
    for (size_t i = 0; i < len; i++) {
        /* The range check on the bits (NaN and infinity are above 2^40 there too): an integer
         * comparison, which unlike a float one cannot trap, so the loop has no branch. */
        float v;
        uint32_t bits;
        memcpy(&bits, &x[i], sizeof bits);
        int ok = (bits & 0x7fffffffu) <= max_bits;
        refused += (size_t)(1 - ok);
        memcpy(&v, &x[i], sizeof v);
        /* d = x * 2^8, |d| <= 2^48. Each remainder below holds at most x's 24 significant bits
         * and their complement to the next integer, so it is exact; only c rounds (to nearest,
         * ties to even), and only for |x| < 2^-49. */
        double d = (double)(ok ? v : 0.0f) * 0x1p8;
        int64_t a, b, c;
        double r = (d - round_i64(d, &a)) * 0x1p32;
        double r2 = (r - round_i64(r, &b)) * 0x1p32;
        round_i64(r2, &c);
        hi[i] += a;
        mid[i] += b;
        lo[i] += c;
    }
    return refused;
}

/* v * 2^-72 rounded once to the nearest float: v is first rounded to 53 bits with its lost bits
 * kept as a sticky last bit (round to odd), which makes the double's rounding to float the
 * correct rounding of v, subnormal results included. */
static float fixed_to_float(i128 v)
{
    bool neg = v < 0;
    u128 u = neg ? -(u128)v : (u128)v;
    uint64_t h = (uint64_t)(u >> 64), l = (uint64_t)u;
    int bits = h ? 128 - __builtin_clzll(h) : l ? 64 - __builtin_clzll(l) : 0;
    int k = bits > 53 ? bits - 53 : 0;
    uint64_t top = (uint64_t)(u >> k) | (k && (u & (((u128)1 << k) - 1)) != 0);
    uint64_t scale_bits = (uint64_t)(1023 + k - 72) << 52; /* 2^(k - 72), a normal double */
    double scale;
    memcpy(&scale, &scale_bits, sizeof scale);
    float f = (float)((double)top * scale);
    return neg ? -f : f;
}

void kl__exact_get(const int64_t *acc, size_t n, size_t at, size_t len, float scale, float *out)
{
    const int64_t *hi = acc + at, *mid = acc + n + at, *lo = acc + 2 * n + at;
    for (size_t i = 0; i < len; i++) {
        /* |hi| <= 2^62 and |mid|, |lo| <= 2^45 within the limits: the value fits easily. */
        i128 v = (i128)hi[i] * ((i128)1 << 64) + (i128)mid[i] * ((i128)1 << 32) + lo[i];
        float f = fixed_to_float(v);
        out[i] = scale == 1.0f ? f : f * scale;
    }
}
