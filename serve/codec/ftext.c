/* A float as the text of an inference answer (kl__float_text, called by serve/codec/respond.c):
 * printf's %.8g when strtof reads it back as the same float, else %.9g. The digits are computed
 * exactly with 128-bit integers, rounded as glibc's printf rounds (the exact binary value, to
 * nearest, ties to even), and the round trip is decided on the same integers, so the text is the
 * one snprintf and strtof would give, without their cost. A value whose exact scaled form does
 * not fit in 128 bits takes snprintf and strtof: some of those below 1e-37 (fast_digits). */
#include "serve/codec/ftext.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__extension__ typedef unsigned __int128 u128;

#define P5(hi, lo) (((u128)(hi) << 64) | (lo))

/* 5^k for k = 0..55, and its length in bits. */
static const u128 pow5[56] = {
    P5(0x0u, 0x1u),
    P5(0x0u, 0x5u),
    P5(0x0u, 0x19u),
    P5(0x0u, 0x7du),
    P5(0x0u, 0x271u),
    P5(0x0u, 0xc35u),
    P5(0x0u, 0x3d09u),
    P5(0x0u, 0x1312du),
    P5(0x0u, 0x5f5e1u),
    P5(0x0u, 0x1dcd65u),
    P5(0x0u, 0x9502f9u),
    P5(0x0u, 0x2e90eddu),
    P5(0x0u, 0xe8d4a51u),
    P5(0x0u, 0x48c27395u),
    P5(0x0u, 0x16bcc41e9u),
    P5(0x0u, 0x71afd498du),
    P5(0x0u, 0x2386f26fc1u),
    P5(0x0u, 0xb1a2bc2ec5u),
    P5(0x0u, 0x3782dace9d9u),
    P5(0x0u, 0x1158e460913du),
    P5(0x0u, 0x56bc75e2d631u),
    P5(0x0u, 0x1b1ae4d6e2ef5u),
    P5(0x0u, 0x878678326eac9u),
    P5(0x0u, 0x2a5a058fc295edu),
    P5(0x0u, 0xd3c21bcecceda1u),
    P5(0x0u, 0x422ca8b0a00a425u),
    P5(0x0u, 0x14adf4b7320334b9u),
    P5(0x0u, 0x6765c793fa10079du),
    P5(0x2u, 0x4fce5e3e2502611u),
    P5(0xau, 0x18f07d736b90be55u),
    P5(0x32u, 0x7cb2734119d3b7a9u),
    P5(0xfcu, 0x6f7c40458122964du),
    P5(0x4eeu, 0x2d6d415b85acef81u),
    P5(0x18a6u, 0xe32246c99c60ad85u),
    P5(0x7b42u, 0x6fab61f00de36399u),
    P5(0x2684cu, 0x2e58e9b04570f1fdu),
    P5(0xc097cu, 0xe7bc90715b34b9f1u),
    P5(0x3c2f70u, 0x86aed236c807a1b5u),
    P5(0x12ced32u, 0xa16a1b11e8262889u),
    P5(0x5e0a1fdu, 0x2712875988becaadu),
    P5(0x1d6329f1u, 0xc35ca4bfabb9f561u),
    P5(0x92efd1b8u, 0xd0cf37be5aa1cae5u),
    P5(0x2deaf189cu, 0x140c16b7c528f679u),
    P5(0xe596b7b0cu, 0x643c7196d9ccd05du),
    P5(0x47bf19673du, 0xf52e37f2410011d1u),
    P5(0x166bb7f0435u, 0xc9e717bb45005915u),
    P5(0x701a97b150cu, 0xf18376a85901bd69u),
    P5(0x23084f676940u, 0xb7915149bd08b30du),
    P5(0xaf298d050e43u, 0x95d69670b12b7f41u),
    P5(0x36bcfc1194751u, 0xed30f03375d97c45u),
    P5(0x111b0ec57e6499u, 0xa1f4b1014d3f6d59u),
    P5(0x558749db77f700u, 0x29c77506823d22bdu),
    P5(0x1aba4714957d300u, 0xd0e549208b31adb1u),
    P5(0x85a36366eb71f04u, 0x147a6da2b7f86475u),
    P5(0x29c30f1029939b14u, 0x6664242d97d9f649u),
    P5(0xd0cf4b50cfe20765u, 0xfff4b4e3f741cf6du),
};
static const unsigned char pow5_bits[56] = {
    1,  3,  5,  7,  10, 12,  14,  17,  19,  21,  24,  26,  28,  31,  33,  35,  38,  40,  42,
    45, 47, 49, 52, 54, 56,  59,  61,  63,  66,  68,  70,  72,  75,  77,  79,  82,  84,  86,
    89, 91, 93, 96, 98, 100, 103, 105, 107, 110, 112, 114, 117, 119, 121, 124, 126, 128,
};

/* The bits of the smallest float >= 10^k, for k = -44..39 (infinity's for 10^39): a positive
 * float's bits order as its value does, so |f| >= 10^k exactly when its bits are >= these. */
static const uint32_t pow10_float[84] = {
    0x00000008u, 0x00000048u, 0x000002cau, 0x00001be1u, 0x000116c3u, 0x000ae398u, 0x006ce3efu,
    0x02081cebu, 0x03aa2425u, 0x0554ad2eu, 0x0704ec3du, 0x08a6274cu, 0x0a4fb11fu, 0x0c01ceb4u,
    0x0da24260u, 0x0f4ad2f8u, 0x10fd87b6u, 0x129e74d2u, 0x14461207u, 0x15f79688u, 0x179abe15u,
    0x19416d9bu, 0x1af1c901u, 0x1c971da1u, 0x1e3ce509u, 0x1fec1e4bu, 0x219392efu, 0x233877abu,
    0x24e69595u, 0x26901d7du, 0x283424ddu, 0x29e12e14u, 0x2b8cbccdu, 0x2d2fec00u, 0x2edbe6ffu,
    0x30897060u, 0x322bcc78u, 0x33d6bf95u, 0x358637beu, 0x3727c5adu, 0x38d1b718u, 0x3a83126fu,
    0x3c23d70bu, 0x3dcccccdu, 0x3f800000u, 0x41200000u, 0x42c80000u, 0x447a0000u, 0x461c4000u,
    0x47c35000u, 0x49742400u, 0x4b189680u, 0x4cbebc20u, 0x4e6e6b28u, 0x501502f9u, 0x51ba43b8u,
    0x5368d4a6u, 0x551184e8u, 0x56b5e621u, 0x58635faau, 0x5a0e1bcau, 0x5bb1a2bdu, 0x5d5e0b6cu,
    0x5f0ac724u, 0x60ad78ecu, 0x6258d727u, 0x64078679u, 0x65a96817u, 0x6753c21cu, 0x69045952u,
    0x6aa56fa6u, 0x6c4ecb90u, 0x6e013f3au, 0x6fa18f08u, 0x7149f2cau, 0x72fc6f7du, 0x749dc5aeu,
    0x7645371au, 0x77f684e0u, 0x799a130cu, 0x7b4097cfu, 0x7cf0bdc3u, 0x7e96769au, 0x7f800000u,
};

/* P significant digits of |f|, rounded: |f| is about d * 10^(x-P+1), 10^(P-1) <= d < 10^P. The
 * exact value scaled by the 10^s that gave the digits is num / den, and err / den is how far d
 * is from it (d above it when above), which is what the round trip check needs. */
typedef struct {
    uint32_t d;
    int x;
    u128 num, den, err;
    bool above;
} digits;

/* |f| = m * 2^e rounded to p digits, given x0 = floor(log10 |f|); false when the exact
 * computation does not fit in 128 bits. |f| * 10^s = m * 2^(e+s) * 5^s with s = p-1-x0 is
 * num / den, both integers; num must fit, and so must 4 * m * err (err <= den / 2) for
 * reads_back. Every float from 1e-37 up to FLT_MAX fits; below, most do not (5^s is too
 * long), but subnormals under about 1e-40 do (m is short). */
static bool fast_digits(uint32_t m, int e, int mbits, int x0, int p, digits *g)
{
    int s = p - 1 - x0, a = e + s;
    if (s > 55 || s < -55)
        return false;
    int up2 = a > 0 ? a : 0, down2 = a < 0 ? -a : 0;
    int up5 = s > 0 ? s : 0, down5 = s < 0 ? -s : 0;
    if (mbits + pow5_bits[up5] + up2 > 128 || mbits + 1 + pow5_bits[down5] + down2 > 128)
        return false;
    g->num = ((u128)m * pow5[up5]) << up2;
    g->den = pow5[down5] << down2;
    u128 q, r;
    if (down5 == 0) { /* den is a power of two */
        q = g->num >> down2;
        r = g->num & (g->den - 1);
    } else {
        q = g->num / g->den;
        r = g->num % g->den;
    }
    g->above = 2 * r > g->den || (2 * r == g->den && (q & 1));
    g->err = g->above ? g->den - r : r;
    g->d = (uint32_t)q + g->above;
    g->x = x0;
    uint32_t top = p == 8 ? 100000000u : 1000000000u;
    if (g->d == top) { /* 9.99999999e-5 rounds up to 1e-4 */
        g->d /= 10;
        g->x++;
    }
    return true;
}

/* Whether strtof reads g's decimal back as f = m * 2^e: strtof rounds to nearest, ties to even,
 * so it does when the decimal lies strictly inside f's rounding interval, or on its edge and
 * m is even. In units of 1 / den after scaling, half of f's ulp is num / (2m); below a power of
 * two (not the smallest normal), the float below is half an ulp away, so the edge is num / (4m). */
static bool reads_back(const digits *g, uint32_t m, int e)
{
    if (g->err == 0)
        return true;
    bool narrow = !g->above && m == 1u << 23 && e > -149;
    u128 dist = (u128)(narrow ? 4 : 2) * m * g->err;
    return dist < g->num || (dist == g->num && (m & 1) == 0);
}

/* printf's %.Pg from p digits d and exponent x: style e when x < -4 or x >= p, else fixed;
 * trailing zeros and a bare '.' dropped; the exponent signed, at least two digits. The digits
 * are copied 9 at a time and the end moved back: out has room, the longest text being 15. */
static size_t put_g(char *out, bool neg, uint32_t d, int x, int p)
{
    static const char pairs[] = "00010203040506070809101112131415161718192021222324"
                                "25262728293031323334353637383940414243444546474849"
                                "50515253545556575859606162636465666768697071727374"
                                "75767778798081828384858687888990919293949596979899";
    char dig[16] = {0};
    int i = p;
    for (; i >= 2; i -= 2, d /= 100)
        memcpy(dig + i - 2, pairs + 2 * (d % 100), 2);
    if (i == 1)
        dig[0] = (char)('0' + d);
    int n = p;
    while (n > 1 && dig[n - 1] == '0')
        n--;
    char *o = out;
    if (neg)
        *o++ = '-';
    if (x < -4 || x >= p) {
        *o++ = dig[0];
        *o = '.';
        memcpy(o + 1, dig + 1, 8);
        o += n > 1 ? n : 0;
        int ax = x < 0 ? -x : x; /* at most 45 for a float */
        o[0] = 'e';
        o[1] = x < 0 ? '-' : '+';
        memcpy(o + 2, pairs + 2 * ax, 2);
        o += 4;
    } else if (x >= 0) {
        memcpy(o, dig, 9);
        o += x + 1;
        if (n > x + 1) {
            *o = '.';
            memcpy(o + 1, dig + x + 1, 8);
            o += n - x;
        }
    } else {
        memcpy(o, "0.0000", 6);
        o += 1 - x;
        memcpy(o, dig, 9);
        o += n;
    }
    *o = '\0';
    return (size_t)(o - out);
}

/* The same text through snprintf and strtof, for what fast_digits cannot compute. */
static size_t slow_text(float f, char *out)
{
    snprintf(out, KL__FLOAT_TEXT_MAX, "%.8g", (double)f);
    if (strtof(out, NULL) != f)
        snprintf(out, KL__FLOAT_TEXT_MAX, "%.9g", (double)f);
    return strlen(out);
}

size_t kl__float_text(float f, char *out)
{
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    bool neg = bits >> 31;
    uint32_t abs = bits & 0x7fffffffu;
    if (abs >= 0x7f800000u)
        return slow_text(f, out);
    if (abs == 0)
        return put_g(out, neg, 0, 0, 1);
    int biased = (int)(abs >> 23);
    uint32_t m = biased ? (abs & 0x7fffffu) | 1u << 23 : abs;
    int e = (biased ? biased : 1) - 150;
    int mbits = 32 - __builtin_clz(m);
    /* 2^b <= |f| < 2^(b+1) with b = e + mbits - 1, so floor(log10 |f|) is floor(b log10(2))
     * (78913 / 2^18 is exact enough for |b| < 1600) or one more; the table decides. */
    int b = e + mbits - 1;
    int x0 = ((b * 78913 + (64 << 18)) >> 18) - 64;
    x0 += abs >= pow10_float[x0 + 1 + 44];
    digits g;
    if (!fast_digits(m, e, mbits, x0, 8, &g))
        return slow_text(f, out);
    if (reads_back(&g, m, e))
        return put_g(out, neg, g.d, g.x, 8);
    if (!fast_digits(m, e, mbits, x0, 9, &g))
        return slow_text(f, out);
    return put_g(out, neg, g.d, g.x, 9); /* 9 digits always read back */
}
