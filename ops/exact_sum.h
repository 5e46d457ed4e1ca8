/* Exact sums of float vectors whose result does not depend on the order of the additions, for
 * dist.deterministic (trainers/train_det.c): each addend is rounded once onto a fixed grid of
 * 2^-72 and added as an integer in three int64 limbs, so that any grouping of the same addends,
 * on one process or summed across ranks with an integer all-reduce, gives the same bits.
 *
 * An accumulator for n elements is 3 * n int64 (kl__exact_size), limb-major: [0, n) holds the
 * multiples of 2^-8, [n, 2n) and [2n, 3n) the next 32 bits each (every limb signed, carries not
 * propagated until the read). Precision: an addend with |x| >= 2^-49 is represented exactly, a
 * smaller one to within 2^-73; the sum of the represented addends is exact; reading it rounds once,
 * to the nearest float. Range: |x| <=
 * 2^40 per addend (KL__EXACT_MAX) and at most 2^14 addends per element (KL__EXACT_ADDENDS), however
 * they are grouped: the top limb then stays within 2^62. */
#ifndef KILN_OPS_EXACT_SUM_H
#define KILN_OPS_EXACT_SUM_H

#include <stddef.h>
#include <stdint.h>

#define KL__EXACT_LIMBS   3
#define KL__EXACT_MAX     0x1p40f
#define KL__EXACT_ADDENDS 16384

/* The int64 count of an accumulator of n elements (0 on overflow of size_t). */
size_t kl__exact_size(size_t n);
/* Adds x[0..len) into elements [at, at + len) of acc (an accumulator of n elements). An addend
 * that is not finite or exceeds KL__EXACT_MAX in magnitude is not added: the return value counts
 * them. */
size_t kl__exact_add(int64_t *acc, size_t n, size_t at, const float *x, size_t len);
/* The sums of elements [at, at + len): out[i] is element at + i rounded to the nearest float,
 * then multiplied by `scale` when it is not 1 (one more rounding, the same for every order of the
 * addends). */
void kl__exact_get(const int64_t *acc, size_t n, size_t at, size_t len, float scale, float *out);

#endif
