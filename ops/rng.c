/* Philox-4x32-10 (Salmon, Moraes, Dror, Shaw: "Parallel random numbers: as easy as 1, 2, 3",
 * SC 2011) and the stream layout kiln uses on top of it. The key is the 64-bit seed; the counter
 * holds the block index (64 bits), the stream (56 bits) and the purpose (8 bits), so distinct
 * purposes and streams never share a block. */
#include <math.h>

#include "kiln/rng.h"

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

static void philox_round(uint32_t c[4], const uint32_t k[2])
{
    uint64_t p0 = (uint64_t)PHILOX_M0 * c[0];
    uint64_t p1 = (uint64_t)PHILOX_M1 * c[2];
    uint32_t r0 = (uint32_t)(p1 >> 32) ^ c[1] ^ k[0];
    uint32_t r1 = (uint32_t)p1;
    uint32_t r2 = (uint32_t)(p0 >> 32) ^ c[3] ^ k[1];
    uint32_t r3 = (uint32_t)p0;
    c[0] = r0;
    c[1] = r1;
    c[2] = r2;
    c[3] = r3;
}

void kl_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
    uint32_t c[4] = {ctr[0], ctr[1], ctr[2], ctr[3]};
    uint32_t k[2] = {key[0], key[1]};
    for (int r = 0; r < 10; r++) {
        if (r > 0) {
            k[0] += PHILOX_W0;
            k[1] += PHILOX_W1;
        }
        philox_round(c, k);
    }
    for (int i = 0; i < 4; i++)
        out[i] = c[i];
}

void kl_rng_block(uint64_t seed, uint32_t purpose, uint64_t stream, uint64_t block, uint32_t out[4])
{
    uint32_t ctr[4] = {(uint32_t)block, (uint32_t)(block >> 32), (uint32_t)stream,
                       ((uint32_t)(stream >> 32) & 0xFFFFFFu) | (purpose << 24)};
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    kl_philox4x32(ctr, key, out);
}

/* 24 random bits make every float in [0, 1) on a grid of 2^-24 reachable, and 1.0 never. */
static inline float u32_to_unit(uint32_t w)
{
    return (float)(w >> 8) * (1.0f / 16777216.0f);
}

float kl_rng_uniform(uint64_t seed, uint32_t purpose, uint64_t stream, uint64_t i)
{
    uint32_t w[4];
    kl_rng_block(seed, purpose, stream, i / 4, w);
    return u32_to_unit(w[i % 4]);
}

void kl_rng_fill_uniform(uint64_t seed, uint32_t purpose, uint64_t stream, float *out, size_t n,
                         float lo, float hi)
{
    uint32_t w[4];
    for (size_t i = 0; i < n; i++) {
        if (i % 4 == 0)
            kl_rng_block(seed, purpose, stream, i / 4, w);
        /* lo + (hi - lo) * u can round up to hi when hi - lo needs more bits than u has left. */
        float v = lo + (hi - lo) * u32_to_unit(w[i % 4]);
        out[i] = v < hi ? v : nextafterf(hi, lo);
    }
}

/* Element i takes block i: Box-Muller on its first two words. One block per element keeps each
 * value a function of its index alone. */
void kl_rng_fill_normal(uint64_t seed, uint32_t purpose, uint64_t stream, float *out, size_t n,
                        float mean, float std)
{
    uint32_t w[4];
    for (size_t i = 0; i < n; i++) {
        kl_rng_block(seed, purpose, stream, i, w);
        double u1 = ((double)(w[0] >> 8) + 1.0) / 16777216.0; /* (0, 1] so log is finite */
        double u2 = (double)(w[1] >> 8) / 16777216.0;
        double z = sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
        out[i] = mean + std * (float)z;
    }
}
