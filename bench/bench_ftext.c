/* The CPU cost of one float of an inference answer as text: kl__float_text (serve/codec/ftext.c)
 * against what it replaced, snprintf "%.8g" kept when strtof reads it back, else "%.9g". The
 * floats are softmax outputs of 10 classes from random logits (values like 0.22674449 and
 * 8.4070962e-05), the same for both. Each repetition formats --calls floats; the figure is CPU
 * time (CLOCK_PROCESS_CPUTIME_ID) per float, the median of --reps repetitions. Both must give the
 * same text for every float, else the benchmark fails.
 *
 *   bench_ftext [--calls N (10000000)] [--reps R (5)] */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_stats.h"
#include "serve/codec/ftext.h"

#define NVALUES 10000 /* distinct floats, cycled through */
#define CLASSES 10

static double cpu_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static size_t old_text(float f, char *s)
{
    snprintf(s, KL__FLOAT_TEXT_MAX, "%.8g", (double)f);
    if (strtof(s, NULL) != f)
        snprintf(s, KL__FLOAT_TEXT_MAX, "%.9g", (double)f);
    return strlen(s);
}

/* Softmax rows of logits uniform in [-5, 5). */
static void softmax_values(float *v)
{
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int r = 0; r < NVALUES; r += CLASSES) {
        double z[CLASSES], sum = 0;
        for (int k = 0; k < CLASSES; k++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            z[k] = exp((double)(x >> 11) / 9007199254740992.0 * 10 - 5);
            sum += z[k];
        }
        for (int k = 0; k < CLASSES; k++)
            v[r + k] = (float)(z[k] / sum);
    }
}

/* CPU seconds per float of `calls` floats through fn; the lengths' sum keeps the work. */
static double time_calls(size_t (*fn)(float, char *), const float *v, long calls, size_t *sum)
{
    char s[KL__FLOAT_TEXT_MAX];
    double t0 = cpu_seconds();
    for (long i = 0; i < calls; i++)
        *sum += fn(v[i % NVALUES], s);
    return (cpu_seconds() - t0) / (double)calls;
}

int main(int argc, char **argv)
{
    long calls = 10000000;
    int reps = 5;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--calls"))
            calls = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps"))
            reps = atoi(argv[i + 1]);
    }
    if (calls < 1 || reps < 1 || reps > 100) {
        fprintf(stderr, "usage: bench_ftext [--calls N >= 1] [--reps 1..100]\n");
        return 2;
    }
    static float v[NVALUES];
    softmax_values(v);
    for (int i = 0; i < NVALUES; i++) {
        char a[KL__FLOAT_TEXT_MAX], b[KL__FLOAT_TEXT_MAX];
        if (old_text(v[i], a) != kl__float_text(v[i], b) || strcmp(a, b)) {
            fprintf(stderr, "bench_ftext: %.9g is \"%s\", was \"%s\"\n", (double)v[i], b, a);
            return 1;
        }
    }
    double t_old[100], t_new[100];
    size_t sum = 0;
    for (int r = 0; r < reps; r++) { /* alternating, so that a busy moment hits both */
        t_old[r] = time_calls(old_text, v, calls, &sum);
        t_new[r] = time_calls(kl__float_text, v, calls, &sum);
    }
    double o = bench_median(t_old, reps), n = bench_median(t_new, reps);
    printf("bench_ftext: %ld softmax floats x %d reps (checksum %zu)\n", calls, reps, sum);
    printf("  snprintf+strtof  %7.1f ns/float\n", o * 1e9);
    printf("  kl__float_text   %7.1f ns/float  (%.1fx)\n", n * 1e9, o / n);
    return 0;
}
