/* bench_dense: the cost of one dense layer's forward + backward through kiln's graph, against the
 * same maths written as bare OpenBLAS calls on preallocated buffers.
 *
 * kiln's linear op is three cblas_sgemm calls (Y = X W^T, dX = dY W, dW = dY^T X) plus a bias add
 * and a column sum, so the bare path (the same three sgemm calls, the same loops, the same zeroing
 * of dW and db) is the fastest a framework on OpenBLAS could go: anything kiln costs above it is
 * framework overhead (graph walk, arena, gradient zeroing, its elementwise loops). Both paths are
 * checked to agree on dW, dX, db and the loss before anything is timed. */
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_stats.h"
#include "kiln/clock.h"
#include "kiln/graph.h"

/* OpenBLAS extensions, declared here rather than trusted to whichever cblas.h was found. */
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
char *openblas_get_config(void);

#define MAX_REL_DIFF 1e-4

typedef struct dense_size {
    int n, in, out; /* batch, input features, output features */
} dense_size;

static const dense_size sizes[] = {{256, 784, 1024}, {64, 256, 128}};

typedef struct options {
    int threads; /* 0: OpenBLAS's default */
    int reps;
    double min_rep_s; /* each repetition runs at least this long */
    double warmup_s;
    int csv;
} options;

/* The bare path's buffers, one allocation each, all preallocated. */
typedef struct bare_dense {
    int n, in, out;
    float *x;  /* (n, in) */
    float *w;  /* (out, in) */
    float *b;  /* (out) */
    float *y;  /* (n, out) */
    float *dy; /* (n, out) */
    float *dx; /* (n, in) */
    float *dw; /* (out, in) */
    float *db; /* (out) */
    double loss;
} bare_dense;

/* The kiln path: x (n, in) requiring a gradient, as a hidden layer's input would. */
typedef struct kiln_dense {
    kl_graph *g;
    kl_node x, w, b, y, loss;
} kiln_dense;

/* xorshift64*: uniform floats in [-1, 1), the same on every run. */
static float next_uniform(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    uint64_t r = *s * 0x2545F4914F6CDD1DULL;
    return (float)((double)(r >> 40) / (double)(1ULL << 24) * 2.0 - 1.0);
}

static void fill_uniform(float *p, size_t count, uint64_t *s)
{
    for (size_t i = 0; i < count; i++)
        p[i] = next_uniform(s);
}

static void bare_free(bare_dense *d)
{
    free(d->x);
    free(d->w);
    free(d->b);
    free(d->y);
    free(d->dy);
    free(d->dx);
    free(d->dw);
    free(d->db);
}

static float *alloc_floats(size_t count)
{
    return aligned_alloc(64, (count * sizeof(float) + 63) / 64 * 64);
}

static int bare_init(bare_dense *d, dense_size sz, uint64_t seed)
{
    size_t n = (size_t)sz.n, in = (size_t)sz.in, out = (size_t)sz.out;
    *d = (bare_dense){.n = sz.n, .in = sz.in, .out = sz.out};
    d->x = alloc_floats(n * in);
    d->w = alloc_floats(out * in);
    d->b = alloc_floats(out);
    d->y = alloc_floats(n * out);
    d->dy = alloc_floats(n * out);
    d->dx = alloc_floats(n * in);
    d->dw = alloc_floats(out * in);
    d->db = alloc_floats(out);
    if (!d->x || !d->w || !d->b || !d->y || !d->dy || !d->dx || !d->dw || !d->db) {
        bare_free(d);
        return -1;
    }
    uint64_t s = seed;
    fill_uniform(d->x, n * in, &s);
    fill_uniform(d->w, out * in, &s);
    fill_uniform(d->b, out, &s);
    return 0;
}

/* One training step of the layer, written out: what kiln's graph should cost at best. */
static void bare_step(bare_dense *d)
{
    int n = d->n, in = d->in, out = d->out;
    size_t ny = (size_t)n * out;
    memset(d->dw, 0, (size_t)out * in * sizeof(float));
    memset(d->db, 0, (size_t)out * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, d->x, in, d->w, in, 0.0f,
                d->y, out);
    for (int r = 0; r < n; r++)
        for (int j = 0; j < out; j++)
            d->y[(size_t)r * out + j] += d->b[j];
    /* The same four-way double sum kiln's sum op uses, so the two differ only in framework work. */
    double s[4] = {0, 0, 0, 0};
    size_t i = 0;
    for (; i + 4 <= ny; i += 4)
        for (int k = 0; k < 4; k++)
            s[k] += d->y[i + k];
    for (; i < ny; i++)
        s[0] += d->y[i];
    d->loss = (s[0] + s[1]) + (s[2] + s[3]);
    for (i = 0; i < ny; i++)
        d->dy[i] = 1.0f;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in, out, 1.0f, d->dy, out, d->w, in,
                0.0f, d->dx, in);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, n, 1.0f, d->dy, out, d->x, in,
                1.0f, d->dw, in);
    for (int r = 0; r < n; r++)
        for (int j = 0; j < out; j++)
            d->db[j] += d->dy[(size_t)r * out + j];
}

static int copy_into(kl_tensor *t, const float *src, size_t count, const char *what)
{
    if (!t || (size_t)kl_numel(t) != count) {
        fprintf(stderr, "bench_dense: kiln's %s view is missing or has the wrong size\n", what);
        return -1;
    }
    memcpy(t->data, src, count * sizeof(float));
    return 0;
}

/* Builds and compiles the kiln graph, then loads the bare path's x, w and b into it so that both
 * compute on the same numbers. */
static int kiln_init(kiln_dense *k, const bare_dense *d)
{
    kl_error err = {0};
    kl_graph *g = kl_graph_new();
    if (!g) {
        fprintf(stderr, "bench_dense: out of memory for a graph\n");
        return -1;
    }
    k->g = g;
    k->x = kl_input(g, "x", KL_F32, KL_SHAPE(d->in));
    kl_graph_require_grad(g, k->x);
    k->w = kl_param(g, "w", KL_SHAPE(d->out, d->in), (kl_init){KL_INIT_HE_UNIFORM, 0, 0}, 0);
    k->b = kl_param(g, "b", KL_SHAPE(d->out), (kl_init){KL_INIT_ZEROS, 0, 0}, KL_PARAM_NO_DECAY);
    k->y = kl_linear(g, k->x, k->w, k->b);
    k->loss = kl_sum(g, k->y);
    if (kl_graph_compile(g, d->n, k->loss, 1, &err) != KL_OK) {
        fprintf(stderr, "bench_dense: compiling the graph failed: %s\n", err.msg);
        return -1;
    }
    size_t n = (size_t)d->n, in = (size_t)d->in, out = (size_t)d->out;
    if (copy_into(kl_graph_value(g, k->x), d->x, n * in, "x") ||
        copy_into(kl_graph_value(g, k->w), d->w, out * in, "w") ||
        copy_into(kl_graph_value(g, k->b), d->b, out, "b"))
        return -1;
    return 0;
}

static int kiln_step(kiln_dense *k)
{
    kl_error err = {0};
    kl_graph_zero_grad(k->g);
    if (kl_graph_forward(k->g, &err) != KL_OK || kl_graph_backward(k->g, &err) != KL_OK) {
        fprintf(stderr, "bench_dense: kiln step failed: %s\n", err.msg);
        return -1;
    }
    return 0;
}

/* max |a - b| / max |b|: the error relative to the tensor's scale, so that entries that happen to
 * be near zero do not blow it up. */
static double rel_diff(const float *a, const float *b, size_t count)
{
    double diff = 0, scale = 0;
    for (size_t i = 0; i < count; i++) {
        double e = fabs((double)a[i] - (double)b[i]);
        if (!(e <= diff)) /* also catches NaN */
            diff = e;
        if (fabs((double)b[i]) > scale)
            scale = fabs((double)b[i]);
    }
    return scale > 0 ? diff / scale : diff;
}

/* Runs one step of each and compares dW, dX, db and the loss; returns the worst difference. */
static double verify(kiln_dense *k, bare_dense *d, int print)
{
    if (kiln_step(k) != 0)
        return INFINITY;
    bare_step(d);
    size_t n = (size_t)d->n, in = (size_t)d->in, out = (size_t)d->out;
    const kl_tensor *dw = kl_graph_grad(k->g, k->w), *dx = kl_graph_grad(k->g, k->x);
    const kl_tensor *db = kl_graph_grad(k->g, k->b), *loss = kl_graph_value(k->g, k->loss);
    if (!dw || !dx || !db || !loss) {
        fprintf(stderr, "bench_dense: kiln did not compute every gradient\n");
        return INFINITY;
    }
    float bare_loss = (float)d->loss;
    double e_dw = rel_diff(kl_f32(dw), d->dw, out * in);
    double e_dx = rel_diff(kl_f32(dx), d->dx, n * in);
    double e_db = rel_diff(kl_f32(db), d->db, out);
    double e_loss = rel_diff(kl_f32(loss), &bare_loss, 1);
    if (print)
        printf("# check %dx%d->%d: max relative difference dW %.2e, dX %.2e, db %.2e, loss %.2e\n",
               d->n, d->in, d->out, e_dw, e_dx, e_db, e_loss);
    double worst = fmax(fmax(e_dw, e_dx), fmax(e_db, e_loss));
    return isnan(e_dw + e_dx + e_db + e_loss) ? INFINITY : worst;
}

/* Times iters steps of one path; returns seconds per step, or a negative number on error. */
static double time_kiln(kiln_dense *k, long iters)
{
    double t0 = kl_now();
    for (long i = 0; i < iters; i++)
        if (kiln_step(k) != 0)
            return -1;
    return (kl_now() - t0) / (double)iters;
}

static double time_bare(bare_dense *d, long iters)
{
    double t0 = kl_now();
    for (long i = 0; i < iters; i++)
        bare_step(d);
    return (kl_now() - t0) / (double)iters;
}

typedef struct result {
    double kiln_s, bare_s;       /* median seconds per step */
    double ratio_min, ratio_max; /* kiln/bare within one repetition, the spread over them */
} result;

/* Warms both paths up, sizes a repetition to last at least min_rep_s for the slower path, then
 * runs reps repetitions of each, alternating which goes first so that both see the same noise. */
static int measure(kiln_dense *k, bare_dense *d, const options *o, result *res)
{
    double t_k = time_kiln(k, 1), t_b = time_bare(d, 1);
    long warm = 1;
    while (t_k >= 0 && (double)warm * (t_k + t_b) < o->warmup_s) {
        warm *= 2;
        t_k = time_kiln(k, warm);
        t_b = time_bare(d, warm);
    }
    if (t_k < 0)
        return -1;
    double per_step = fmax(t_k, t_b);
    long iters = (long)ceil(o->min_rep_s / per_step);
    if (iters < 1)
        iters = 1;
    double kt[64], bt[64];
    for (int r = 0; r < o->reps; r++) {
        if (r % 2 == 0) {
            kt[r] = time_kiln(k, iters);
            bt[r] = time_bare(d, iters);
        } else {
            bt[r] = time_bare(d, iters);
            kt[r] = time_kiln(k, iters);
        }
        if (kt[r] < 0)
            return -1;
    }
    res->ratio_min = INFINITY;
    res->ratio_max = 0;
    for (int r = 0; r < o->reps; r++) {
        res->ratio_min = fmin(res->ratio_min, kt[r] / bt[r]);
        res->ratio_max = fmax(res->ratio_max, kt[r] / bt[r]);
    }
    res->kiln_s = bench_median(kt, o->reps);
    res->bare_s = bench_median(bt, o->reps);
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_dense [--threads N] [--quick] [--csv]\n"
               "  --threads N  run OpenBLAS on N threads (default: OpenBLAS's own default)\n"
               "  --quick      3 short repetitions instead of 7 of at least 0.3 s\n"
               "  --csv        print the results as CSV (comments start with #)\n");
}

static int parse_args(int argc, char **argv, options *o)
{
    *o = (options){.threads = 0, .reps = 7, .min_rep_s = 0.3, .warmup_s = 0.2, .csv = 0};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            char *end;
            long t = strtol(argv[++i], &end, 10);
            if (*end || t < 1 || t > 1024) {
                fprintf(stderr, "bench_dense: --threads takes a count from 1 to 1024, not '%s'\n",
                        argv[i]);
                return -1;
            }
            o->threads = (int)t;
        } else if (strcmp(argv[i], "--quick") == 0) {
            o->reps = 3;
            o->min_rep_s = 0.05;
            o->warmup_s = 0.05;
        } else if (strcmp(argv[i], "--csv") == 0) {
            o->csv = 1;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            exit(0);
        } else {
            fprintf(stderr, "bench_dense: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return -1;
        }
    }
    return 0;
}

static void print_result(const options *o, dense_size sz, const result *r)
{
    double flops = 3.0 * 2.0 * sz.n * sz.in * sz.out; /* three GEMMs of n x in x out */
    double overhead = 100.0 * (r->kiln_s / r->bare_s - 1.0);
    if (o->csv)
        printf("%d,%d,%d,%d,%.6f,%.6f,%.2f,%.2f,%.2f,%.2f,%.2f\n", sz.n, sz.in, sz.out,
               openblas_get_num_threads(), 1e3 * r->kiln_s, 1e3 * r->bare_s,
               flops / r->kiln_s * 1e-9, flops / r->bare_s * 1e-9, overhead,
               100.0 * (r->ratio_min - 1.0), 100.0 * (r->ratio_max - 1.0));
    else
        printf("%4d x %4d -> %4d  %9.3f ms  %9.3f ms  %8.2f  %8.2f  %+7.1f%%  [%+.1f%%, %+.1f%%]\n",
               sz.n, sz.in, sz.out, 1e3 * r->kiln_s, 1e3 * r->bare_s, flops / r->kiln_s * 1e-9,
               flops / r->bare_s * 1e-9, overhead, 100.0 * (r->ratio_min - 1.0),
               100.0 * (r->ratio_max - 1.0));
}

/* Sets up both paths for one size, checks they agree, and times them. */
static int run_size(const options *o, dense_size sz)
{
    bare_dense d;
    kiln_dense k = {0};
    result r;
    int rc = -1;
    if (bare_init(&d, sz, 0x9E3779B97F4A7C15ULL ^ (uint64_t)sz.in) != 0) {
        fprintf(stderr, "bench_dense: out of memory for the %dx%d->%d buffers\n", sz.n, sz.in,
                sz.out);
        return -1;
    }
    if (kiln_init(&k, &d) != 0)
        goto done;
    double worst = verify(&k, &d, 1);
    if (!(worst <= MAX_REL_DIFF)) {
        fprintf(stderr,
                "bench_dense: kiln and bare BLAS disagree at %dx%d->%d (max relative difference "
                "%.2e > %.0e): not timing wrong maths\n",
                sz.n, sz.in, sz.out, worst, MAX_REL_DIFF);
        goto done;
    }
    if (measure(&k, &d, o, &r) != 0)
        goto done;
    /* The timed loops must have kept computing the same thing. */
    worst = verify(&k, &d, 0);
    if (!(worst <= MAX_REL_DIFF)) {
        fprintf(stderr, "bench_dense: kiln and bare BLAS disagree after timing (%.2e)\n", worst);
        goto done;
    }
    print_result(o, sz, &r);
    rc = 0;
done:
    kl_graph_free(k.g);
    bare_free(&d);
    return rc;
}

int main(int argc, char **argv)
{
    options o;
    if (parse_args(argc, argv, &o) != 0)
        return 2;
    if (o.threads > 0)
        openblas_set_num_threads(o.threads);
    printf("# bench_dense: dense layer forward + backward, kiln graph vs bare OpenBLAS sgemm\n");
    printf("# OpenBLAS config: %s\n", openblas_get_config());
    printf("# OpenBLAS threads: %d%s\n", openblas_get_num_threads(),
           o.threads > 0 ? " (--threads)" : " (OpenBLAS default)");
    printf("# %d repetitions of >= %.2f s each, median per step; GFLOP/s counts 3 GEMMs "
           "(6 n in out)\n",
           o.reps, o.min_rep_s);
    if (o.csv)
        printf("batch,in,out,threads,kiln_ms,bare_ms,kiln_gflops,bare_gflops,overhead_pct,"
               "overhead_min_pct,overhead_max_pct\n");
    else
        printf("%-18s  %12s  %12s  %8s  %8s  %8s  %s\n", "size (n x in->out)", "kiln", "bare",
               "kiln GF/s", "bare GF/s", "overhead", "[min, max] over reps");
    fflush(stdout);
    int failed = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        if (run_size(&o, sizes[i]) != 0)
            failed = 1;
        fflush(stdout);
    }
    return failed;
}
