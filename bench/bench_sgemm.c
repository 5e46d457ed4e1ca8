/* bench_sgemm: what OpenBLAS's sgemm reaches on this machine, at the GEMMs of one training step of
 * the large benchmark MLP (bench/train/mlp_large.yaml: 784-1024-1024-10, batch 256) and at one
 * large square size. It is the yardstick for issue 3's goal that kiln's training of that MLP
 * reaches at least 60% of OpenBLAS's sgemm FLOP/s measured in the same run
 * (bench/run_train_bench.sh compares the two).
 *
 * The "mix" is the exact sequence of cblas_sgemm calls kiln's linear op makes in one step of that
 * model (ops/cpu/linear.c), with the same transpose flags, sizes and beta: per layer Y = X W^T
 * forward, dW += dY^T X, and dX = dY W for every layer but the first (the input needs no
 * gradient). Its GFLOP/s is the sum of those GEMMs' flops over the median time of the whole
 * sequence: the best a framework on OpenBLAS could do on this model if it did nothing but GEMMs. */
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_stats.h"
#include "kiln/clock.h"

/* OpenBLAS extensions, declared here rather than trusted to whichever cblas.h was found. */
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
char *openblas_get_config(void);

/* One cblas_sgemm call, row-major: C (m, n) = alpha op(A) (m, k) op(B) (k, n) + beta C. */
typedef struct gemm {
    const char *what;
    int ta, tb; /* 1: the operand is stored transposed */
    int m, n, k;
    float beta;
    int in_mix; /* part of one kiln training step of the model */
} gemm;

/* batch 256; layers 784 -> 1024 -> 1024 -> 10 (the head). */
#define B 256
static const gemm mlp_large[] = {
    {"fc1 fwd   Y = X W^T", 0, 1, B, 1024, 784, 0.0f, 1},
    {"fc1 dW   += dY^T X", 1, 0, 1024, 784, B, 1.0f, 1},
    {"fc1 dX    = dY W", 0, 0, B, 784, 1024, 0.0f, 0}, /* not run: the input needs no grad */
    {"fc2 fwd   Y = X W^T", 0, 1, B, 1024, 1024, 0.0f, 1},
    {"fc2 dW   += dY^T X", 1, 0, 1024, 1024, B, 1.0f, 1},
    {"fc2 dX    = dY W", 0, 0, B, 1024, 1024, 0.0f, 1},
    {"head fwd  Y = X W^T", 0, 1, B, 10, 1024, 0.0f, 1},
    {"head dW  += dY^T X", 1, 0, 10, 1024, B, 1.0f, 1},
    {"head dX   = dY W", 0, 0, B, 1024, 10, 0.0f, 1},
};
#define NGEMM ((int)(sizeof mlp_large / sizeof mlp_large[0]))

typedef struct operands {
    float *a, *b, *c;
} operands;

typedef struct options {
    int threads; /* 0: OpenBLAS's default */
    int square;
    int reps;
    double min_rep_s;
    int csv;
} options;

static float *alloc_floats(size_t count)
{
    float *p = aligned_alloc(64, (count * sizeof(float) + 63) / 64 * 64);
    if (!p) {
        fprintf(stderr, "bench_sgemm: out of memory for %zu floats\n", count);
        exit(1);
    }
    /* Small values in [-0.5, 0.5): keeps the beta = 1 accumulations finite over many calls. */
    uint64_t s = 0x9E3779B97F4A7C15ULL ^ count;
    for (size_t i = 0; i < count; i++) {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        p[i] = (float)((double)((s * 0x2545F4914F6CDD1DULL) >> 40) / (double)(1ULL << 24) - 0.5);
    }
    return p;
}

static operands alloc_operands(const gemm *g)
{
    return (operands){alloc_floats((size_t)g->m * g->k), alloc_floats((size_t)g->k * g->n),
                      alloc_floats((size_t)g->m * g->n)};
}

static void run_gemm(const gemm *g, const operands *o)
{
    /* Leading dimensions of the stored (row-major) matrices: A is (m, k) or (k, m) if ta. */
    int lda = g->ta ? g->m : g->k, ldb = g->tb ? g->k : g->n;
    cblas_sgemm(CblasRowMajor, g->ta ? CblasTrans : CblasNoTrans, g->tb ? CblasTrans : CblasNoTrans,
                g->m, g->n, g->k, 1.0f, o->a, lda, o->b, ldb, g->beta, o->c, g->n);
}

static double flops_of(const gemm *g)
{
    return 2.0 * g->m * g->n * g->k;
}

/* Median seconds of one pass over gemms[0..count) (only those with in_mix when mix_only),
 * over reps repetitions of at least min_rep_s, after a warm-up. */
static double time_gemms(const gemm *gs, const operands *ops, int count, int mix_only,
                         const options *o)
{
    long iters = 1;
    double t;
    for (;;) { /* warm up and size a repetition */
        double t0 = kl_now();
        for (long it = 0; it < iters; it++)
            for (int i = 0; i < count; i++)
                if (!mix_only || gs[i].in_mix)
                    run_gemm(&gs[i], &ops[i]);
        t = kl_now() - t0;
        if (t >= o->min_rep_s)
            break;
        iters = t > 0 ? (long)ceil((double)iters * 1.2 * o->min_rep_s / t) : iters * 2;
        if (iters < 1)
            iters = 1;
    }
    double times[64];
    for (int r = 0; r < o->reps; r++) {
        double t0 = kl_now();
        for (long it = 0; it < iters; it++)
            for (int i = 0; i < count; i++)
                if (!mix_only || gs[i].in_mix)
                    run_gemm(&gs[i], &ops[i]);
        times[r] = (kl_now() - t0) / (double)iters;
    }
    return bench_median(times, o->reps);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_sgemm [--threads N] [--square N] [--quick] [--csv]\n"
               "  --threads N  run OpenBLAS on N threads (default: OpenBLAS's own default)\n"
               "  --square N   the large square size (default 2048)\n"
               "  --quick      3 short repetitions instead of 7 of at least 0.3 s\n"
               "  --csv        per-GEMM rows as CSV (comments start with #)\n"
               "The last line is machine-readable: 'bench_sgemm: threads=T mix_gflops=X "
               "square_gflops=Y'.\n");
}

static int parse_int(const char *s, int lo, int hi, const char *opt, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == 0 || *end || v < lo || v > hi) {
        fprintf(stderr, "bench_sgemm: %s takes an integer from %d to %d, not '%s'\n", opt, lo, hi,
                s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int parse_args(int argc, char **argv, options *o)
{
    *o = (options){.threads = 0, .square = 2048, .reps = 7, .min_rep_s = 0.3, .csv = 0};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            if (parse_int(argv[++i], 1, 1024, "--threads", &o->threads))
                return -1;
        } else if (strcmp(argv[i], "--square") == 0 && i + 1 < argc) {
            if (parse_int(argv[++i], 16, 16384, "--square", &o->square))
                return -1;
        } else if (strcmp(argv[i], "--quick") == 0) {
            o->reps = 3;
            o->min_rep_s = 0.05;
        } else if (strcmp(argv[i], "--csv") == 0) {
            o->csv = 1;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            exit(0);
        } else {
            fprintf(stderr, "bench_sgemm: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return -1;
        }
    }
    return 0;
}

static void print_row(const options *o, const gemm *g, double t)
{
    double gf = flops_of(g) / t * 1e-9;
    if (o->csv)
        printf("\"%s\",%c%c,%d,%d,%d,%g,%d,%.6f,%.2f\n", g->what, g->ta ? 'T' : 'N',
               g->tb ? 'T' : 'N', g->m, g->n, g->k, (double)g->beta, g->in_mix, t * 1e3, gf);
    else
        printf("%-22s %c%c %5d x %5d x %5d  beta %g  %9.3f ms  %8.2f GF/s%s\n", g->what,
               g->ta ? 'T' : 'N', g->tb ? 'T' : 'N', g->m, g->n, g->k, (double)g->beta, t * 1e3, gf,
               g->in_mix ? "" : "  (not in a kiln step)");
}

int main(int argc, char **argv)
{
    options o;
    if (parse_args(argc, argv, &o) != 0)
        return 2;
    if (o.threads > 0)
        openblas_set_num_threads(o.threads);
    int threads = openblas_get_num_threads();
    printf(
        "# bench_sgemm: OpenBLAS sgemm at the GEMMs of one training step of MLP 784-1024-1024-10, "
        "batch %d, and at %d^3\n",
        B, o.square);
    printf("# OpenBLAS config: %s\n", openblas_get_config());
    printf("# OpenBLAS threads: %d%s\n", threads, o.threads > 0 ? " (--threads)" : " (default)");
    printf("# %d repetitions of >= %.2f s each, median; GF/s = 2 m n k / time\n", o.reps,
           o.min_rep_s);
    if (o.csv)
        printf("gemm,trans,m,n,k,beta,in_mix,ms,gflops\n");
    fflush(stdout);

    operands ops[NGEMM];
    for (int i = 0; i < NGEMM; i++)
        ops[i] = alloc_operands(&mlp_large[i]);
    double mix_flops = 0;
    for (int i = 0; i < NGEMM; i++) {
        print_row(&o, &mlp_large[i], time_gemms(&mlp_large[i], &ops[i], 1, 0, &o));
        fflush(stdout);
        if (mlp_large[i].in_mix)
            mix_flops += flops_of(&mlp_large[i]);
    }
    double mix_t = time_gemms(mlp_large, ops, NGEMM, 1, &o);
    double mix_gf = mix_flops / mix_t * 1e-9;
    printf("%-22s    %-19s  %.3f GFLOP  %9.3f ms  %8.2f GF/s\n", "mix: one step's GEMMs", "",
           mix_flops * 1e-9, mix_t * 1e3, mix_gf);
    printf("# mix flops per sample: %.0f (%.4f MFLOP)\n", mix_flops / B, mix_flops / B * 1e-6);
    fflush(stdout);
    for (int i = 0; i < NGEMM; i++) {
        free(ops[i].a);
        free(ops[i].b);
        free(ops[i].c);
    }

    gemm sq = {"square  C = A B", 0, 0, o.square, o.square, o.square, 0.0f, 0};
    operands so = alloc_operands(&sq);
    double sq_t = time_gemms(&sq, &so, 1, 0, &o);
    double sq_gf = flops_of(&sq) / sq_t * 1e-9;
    printf("%-22s NN %5d x %5d x %5d  beta 0  %9.3f ms  %8.2f GF/s\n", sq.what, sq.m, sq.n, sq.k,
           sq_t * 1e3, sq_gf);
    free(so.a);
    free(so.b);
    free(so.c);
    printf("bench_sgemm: threads=%d mix_gflops=%.2f square_gflops=%.2f mix_flops_per_sample=%.0f\n",
           threads, mix_gf, sq_gf, mix_flops / B);
    return 0;
}
