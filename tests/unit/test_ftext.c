/* Tests for serve/codec/ftext.c, a float as an inference answer's text: kl__float_text against
 * what it replaces, snprintf "%.8g" kept when strtof reads it back as the float, else "%.9g".
 * Byte for byte, over whole stretches of bit patterns (binades near 1e-5, 0.1, 1 and 1e7, the
 * top of the subnormals), every power of two and the floats around every power of ten, the
 * extremes, and random bit patterns. KILN_FTEXT_FULL=1 compares all 2^32 bit patterns. */
#include <float.h>
#include <stdint.h>
#include <time.h>

#include "check.h"
#include "serve/codec/ftext.h"

/* The stride through a binade's 2^23 mantissas, and how many random patterns: sized so that the
 * suite takes a few seconds in the sanitizer build. */
enum { BINADE_STRIDE = 41, BINADE_EDGE = 1 << 14, NRANDOM = 400000 };

static size_t reference(float f, char *s)
{
    if (!isfinite(f))
        return 0;
    snprintf(s, 32, "%.8g", (double)f);
    if (strtof(s, NULL) != f)
        snprintf(s, 32, "%.9g", (double)f);
    return strlen(s);
}

static float from_bits(uint32_t bits)
{
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* The floats a case compared and those that differed (the first few are printed); a case ends
 * with done(), one check. */
static uint64_t compared, mismatched;

/* One float, both signs. */
static void same(float f)
{
    for (int sign = 0; sign < 2; sign++, f = -f) {
        if (!isfinite(f))
            return;
        char want[32], got[KL__FLOAT_TEXT_MAX];
        size_t nwant = reference(f, want), ngot = kl__float_text(f, got);
        compared++;
        if (ngot == nwant && !strcmp(got, want))
            continue;
        if (mismatched++ < 10) {
            uint32_t bits;
            memcpy(&bits, &f, sizeof bits);
            fprintf(stderr, "float 0x%08x: got \"%s\" (%zu), want \"%s\" (%zu)\n", (unsigned)bits,
                    got, ngot, want, nwant);
        }
    }
}

static void done(const char *name)
{
    printf("%s: %llu floats, %llu differ\n", name, (unsigned long long)compared,
           (unsigned long long)mismatched);
    CHECK(mismatched == 0);
}

/* The binade of biased exponent `biased` (0: the subnormals), mantissas from `lo`: its first and
 * last BINADE_EDGE mantissas, and every BINADE_STRIDE-th between. */
static void binade(unsigned biased, uint32_t lo)
{
    uint32_t base = biased << 23, n = (1u << 23) - lo;
    for (uint32_t i = 0; i < n; i++) {
        if (i >= BINADE_EDGE && i < n - BINADE_EDGE && i % BINADE_STRIDE)
            continue;
        same(from_bits(base + lo + i));
    }
}

static void test_extremes(void)
{
    const float v[] = {0.0f,        FLT_MIN,        FLT_MAX,       FLT_TRUE_MIN,   1.0f,
                       0.1f,        0.5f,           1e-4f,         9.99999975e-5f, 0.00010151937f,
                       0.22674449f, 8.4070962e-05f, 16777215.0f,   16777216.0f,    1e8f,
                       99999999.0f, 123456789.0f,   3.4028235e38f, 1e-38f,         1.17549421e-38f};
    for (size_t i = 0; i < sizeof v / sizeof *v; i++)
        same(v[i]);
    done("test_extremes");
    char s[KL__FLOAT_TEXT_MAX];
    /* Strings the C library does not decide: the sign of zero, and 2^-12 = 0.000244140625 with
     * its ninth digit an exact tie, rounded to even. */
    CHECK(kl__float_text(-0.0f, s) == 2 && !strcmp(s, "-0"));
    CHECK(kl__float_text(0.0f, s) == 1 && !strcmp(s, "0"));
    CHECK(kl__float_text(0x1p-12f, s) == 13 && !strcmp(s, "0.00024414062"));
    CHECK(kl__float_text(0.1f, s) == 3 && !strcmp(s, "0.1"));
    CHECK(kl__float_text(1e-5f, s) == 13 && !strcmp(s, "9.9999997e-06"));
    CHECK(kl__float_text(-1e30f, s) == 6 && !strcmp(s, "-1e+30"));
}

static void test_binades(void)
{
    binade(110, 0);      /* [7.6e-6, 1.5e-5) */
    binade(123, 0);      /* [0.0625, 0.125) */
    binade(127, 0);      /* [1, 2) */
    binade(150, 0);      /* [8.4e6, 1.7e7) */
    binade(0, 1u << 22); /* the top half of the subnormals */
    binade(254, 0);      /* up to FLT_MAX */
    binade(1, 0);        /* the smallest normals */
    done("test_binades");
}

static void test_powers(void)
{
    for (int k = -149; k <= 127; k++) {
        float p = ldexpf(1.0f, k), lo = p, hi = p;
        same(p);
        for (int i = 0; i < 16; i++) {
            same(lo = nextafterf(lo, 0.0f));
            same(hi = nextafterf(hi, INFINITY));
        }
    }
    for (int k = -45; k <= 38; k++) {
        char s[16];
        snprintf(s, sizeof s, "1e%d", k);
        float p = strtof(s, NULL), lo = p, hi = p;
        same(p);
        for (int i = 0; i < 256; i++) {
            same(lo = nextafterf(lo, 0.0f));
            same(hi = nextafterf(hi, INFINITY));
        }
    }
    done("test_powers");
}

static void test_random(void)
{
    uint64_t x = 0x9e3779b97f4a7c15u; /* xorshift64, a fixed seed */
    for (int i = 0; i < NRANDOM; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        same(from_bits((uint32_t)(x >> 32) & 0x7fffffffu));
    }
    done("test_random");
}

/* With KILN_FTEXT_FULL=1, all 2^32 bit patterns (most of an hour in a Release build); with
 * KILN_FTEXT_FULL=LO:HI, the magnitudes in [LO, HI), both signs (1e-9:2 is a quarter of them). */
static void test_all(void)
{
    const char *full = getenv("KILN_FTEXT_FULL");
    if (!full) {
        printf("test_all: skipped (KILN_FTEXT_FULL=1 or =LO:HI runs it)\n");
        CHECK(true);
        return;
    }
    uint32_t lo = 0, hi = 0x7f800000u;
    if (strcmp(full, "1")) {
        char *end;
        float flo = strtof(full, &end), fhi = *end == ':' ? strtof(end + 1, &end) : NAN;
        if (!CHECK(*end == '\0' && flo >= 0 && fhi > flo && fhi <= INFINITY))
            return;
        memcpy(&lo, &flo, sizeof lo);
        memcpy(&hi, &fhi, sizeof hi);
    }
    clock_t t0 = clock();
    for (uint32_t bits = lo; bits < hi; bits++)
        same(from_bits(bits));
    printf("test_all: [0x%08x, 0x%08x), %.0f s CPU\n", (unsigned)lo, (unsigned)hi,
           (double)(clock() - t0) / CLOCKS_PER_SEC);
    done("test_all");
}

static const check_case cases[] = {
    CHECK_CASE(test_extremes), CHECK_CASE(test_binades), CHECK_CASE(test_powers),
    CHECK_CASE(test_random),   CHECK_CASE(test_all),
};

int main(int argc, char **argv)
{
    return check_run("test_ftext", cases, CHECK_NCASES(cases), argc, argv);
}
