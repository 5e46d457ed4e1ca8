/* Counter-based random numbers (Philox-4x32-10, Salmon et al., SC 2011).
 * Every draw is a pure function of (seed, purpose, stream, index), so initialisation, dropout,
 * shuffling and sampling are reproducible whatever the rank count, thread count or call order. */
#ifndef KILN_RNG_H
#define KILN_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef enum kl_rng_purpose {
    KL_RNG_INIT = 1,
    KL_RNG_DROPOUT = 2,
    KL_RNG_SHUFFLE = 3,
    KL_RNG_AUGMENT = 4,
    KL_RNG_SAMPLE = 5,
    KL_RNG_TPE = 6, /* the TPE sampler's candidates (tune/tpe.c) */
    KL_RNG_TEST = 15
} kl_rng_purpose;

/* The raw Philox-4x32-10 bijection. */
void kl_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* Four 32-bit words for block `block` of the stream (seed, purpose, stream). */
void kl_rng_block(uint64_t seed, uint32_t purpose, uint64_t stream, uint64_t block,
                  uint32_t out[4]);

/* Element i of the stream as a float in [0, 1) (24 random bits). */
float kl_rng_uniform(uint64_t seed, uint32_t purpose, uint64_t stream, uint64_t i);

/* Fill out[0..n) with elements 0..n-1 of the stream: uniform in [lo, hi), or normal(mean, std)
 * by Box-Muller. */
void kl_rng_fill_uniform(uint64_t seed, uint32_t purpose, uint64_t stream, float *out, size_t n,
                         float lo, float hi);
void kl_rng_fill_normal(uint64_t seed, uint32_t purpose, uint64_t stream, float *out, size_t n,
                        float mean, float std);

#endif
