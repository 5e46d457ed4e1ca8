/* bench_overlap: how much of the gradient all-reduce hides behind backward, with the backward
 * computation replaced by a calibrated busy-wait, so that ranks sharing a small machine's cores
 * do not turn a network measurement into a CPU one (bench/cluster, issue 23).
 *
 * The model is bench/train/mlp_large.yaml (784-1024-1024-10, kiln's head included) at --batch
 * rows per rank. Calibration: each rank times, on one thread, the GEMMs kiln's backward makes for
 * each layer (weight gradient, and input gradient for all but the first layer), the median of 5,
 * and rank 0's times are used by all (--backward-ms MS: scaled to sum to MS). A step's backward
 * then walks the layers from the last, busy-waiting each layer's weight-gradient time, marking its
 * tensors' gradients ready (bucket starts: kiln's rule from trainers/train.c, a first bucket of at
 * most 1 MiB, then --bucket-mb), and busy-waiting its input-gradient time. Two ways, interleaved,
 * --reps each: on:  buckets start as their gradients are ready; kl_comm_test on every bucket in
 * flight when a gradient is ready (what kiln's trainer does) and, with --test-us T > 0, every T us
 * of the busy-wait (test calls inside long kernels, a lever for Open MPI's TCP progress); off: the
 * same busy-wait, then every bucket started and waited for. Exposed time = the step's time minus
 * its busy-wait, the slowest rank's; hidden share = 1 - exposed(on) / exposed(off), of the medians.
 * --scale F divides every tensor's size by F (for links run at 1/F of their rate; the busy-wait is
 * not scaled). Run under mpirun. */
#include <cblas.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_stats.h"
#include "kiln/clock.h"
#include "kiln/comm.h"

#define NLAYERS  3
#define NTENSORS (2 * NLAYERS)
#define MAX_REPS 1000

static const int dims[NLAYERS + 1] = {784, 1024, 1024, 10};

typedef struct options {
    int reps, warmup, batch;
    double bucket_mb, test_us, backward_ms;
    long scale;
} options;

typedef struct bucket {
    size_t lo, hi; /* [lo, hi) in the flat gradient buffer */
    int last;      /* the tensor whose readiness starts it (the lowest index in it) */
    kl_comm_request *req;
} bucket;

static kl_comm *comm;
static double dw_s[NLAYERS], dx_s[NLAYERS]; /* calibrated backward times per layer */
static size_t toff[NTENSORS + 1];           /* tensor t: [toff[t], toff[t + 1]) */
static bucket buckets[NTENSORS];
static int nbuckets;
static float *grads;

static void die(const char *what)
{
    fprintf(stderr, "bench_overlap: %s\n", what);
    MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);
}

static int parse_options(int argc, char **argv, options *o)
{
    *o = (options){.reps = 15, .warmup = 3, .batch = 256, .bucket_mb = 25.0, .scale = 1};
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (!strcmp(a, "--reps"))
            o->reps = atoi(v);
        else if (!strcmp(a, "--warmup"))
            o->warmup = atoi(v);
        else if (!strcmp(a, "--batch"))
            o->batch = atoi(v);
        else if (!strcmp(a, "--bucket-mb"))
            o->bucket_mb = atof(v);
        else if (!strcmp(a, "--test-us"))
            o->test_us = atof(v);
        else if (!strcmp(a, "--scale"))
            o->scale = atol(v);
        else if (!strcmp(a, "--backward-ms"))
            o->backward_ms = atof(v);
        else
            return -1;
    }
    if (argc % 2 == 0 || o->reps < 1 || o->reps > MAX_REPS || o->warmup < 0 || o->batch < 1 ||
        o->batch > 65536 || !(o->bucket_mb > 0) || o->test_us < 0 || o->scale < 1 ||
        !(o->backward_ms >= 0 && o->backward_ms < 1e6) || o->scale > 1000000)
        return -1;
    return 0;
}

/* The median of 5 timings of one row-major GEMM, C (m, n) = A (m, k) B (k, n). */
static double time_gemm(int m, int n, int k)
{
    float *a = calloc((size_t)m * (size_t)k, sizeof *a);
    float *b = calloc((size_t)k * (size_t)n, sizeof *b);
    float *c = calloc((size_t)m * (size_t)n, sizeof *c);
    if (!a || !b || !c)
        die("out of memory");
    double t[5];
    for (int r = 0; r < 5; r++) {
        double t0 = kl_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a, k, b, n, 0.0f, c,
                    n);
        t[r] = kl_now() - t0;
    }
    free(a);
    free(b);
    free(c);
    return bench_median(t, 5);
}

/* Layer l (in, out): dW = X^T (in, B) dY (B, out); dX = dY (B, out) W^T (out, in). */
static void calibrate(const options *o, int rank)
{
    double t[2 * NLAYERS];
    for (int l = 0; l < NLAYERS; l++) {
        t[2 * l] = time_gemm(dims[l], dims[l + 1], o->batch);
        t[2 * l + 1] = l == 0 ? 0.0 : time_gemm(o->batch, dims[l], dims[l + 1]);
    }
    if (MPI_Bcast(t, 2 * NLAYERS, MPI_DOUBLE, 0, MPI_COMM_WORLD) != MPI_SUCCESS)
        die("MPI_Bcast failed");
    double sum = 0;
    for (int l = 0; l < 2 * NLAYERS; l++)
        sum += t[l];
    /* --backward-ms: the same shares of a backward time measured elsewhere (a loaded machine's
     * GEMMs run slow, and slower compute would hide more). */
    double k = o->backward_ms > 0 && sum > 0 ? o->backward_ms * 1e-3 / sum : 1.0;
    for (int l = 0; l < NLAYERS; l++) {
        dw_s[l] = k * t[2 * l];
        dx_s[l] = k * t[2 * l + 1];
    }
    (void)rank;
}

/* Tensors in creation order: layer 0's weights and bias, layer 1's, ...; buckets cut from the
 * last tensor back as trainers/train.c does: the first at most 1 MiB, the rest bucket_mb. */
static void make_layout(const options *o)
{
    size_t off = 0;
    for (int l = 0; l < NLAYERS; l++) {
        size_t w = (size_t)dims[l] * (size_t)dims[l + 1], b = (size_t)dims[l + 1];
        size_t sz[2] = {(w + (size_t)o->scale - 1) / (size_t)o->scale,
                        (b + (size_t)o->scale - 1) / (size_t)o->scale};
        for (int j = 0; j < 2; j++) {
            toff[2 * l + j] = off;
            off += sz[j];
        }
    }
    toff[NTENSORS] = off;
    size_t cap = (size_t)(o->bucket_mb * 1048576.0 / sizeof(float));
    size_t first_cap = (size_t)(1048576 / sizeof(float)) / (size_t)o->scale;
    if (cap == 0)
        cap = 1;
    if (first_cap == 0)
        first_cap = 1;
    bucket *cur = NULL;
    for (int t = NTENSORS - 1; t >= 0; t--) {
        size_t limit = nbuckets == 1 && cap > first_cap ? first_cap : cap;
        if (!cur || cur->hi - cur->lo >= limit) {
            cur = &buckets[nbuckets++];
            cur->hi = toff[t + 1];
        }
        cur->lo = toff[t];
        cur->last = t;
    }
    grads = calloc(off, sizeof *grads);
    if (!grads)
        die("out of memory");
}

static void start_bucket(bucket *b)
{
    kl_error err = {0};
    if (kl_comm_allreduce_start(comm, grads + b->lo, b->hi - b->lo, &b->req, &err) != KL_OK)
        die(err.msg);
}

static void test_all(void)
{
    for (int i = 0; i < nbuckets; i++)
        if (buckets[i].req)
            kl_comm_test(comm, buckets[i].req);
}

static void wait_all(void)
{
    kl_error err = {0};
    for (int i = 0; i < nbuckets; i++) {
        if (buckets[i].req && kl_comm_wait(comm, buckets[i].req, &err) != KL_OK)
            die(err.msg);
        buckets[i].req = NULL;
    }
}

/* Busy-waits s seconds (the computation it stands for), with test calls every test_us when on. */
static void busy(double s, double test_us, int overlap)
{
    double end = kl_now() + s, next = test_us > 0 ? kl_now() + test_us * 1e-6 : end + 1;
    double now;
    while ((now = kl_now()) < end) {
        if (overlap && now >= next) {
            test_all();
            next = now + test_us * 1e-6;
        }
    }
}

/* One step's backward and all-reduce; returns its time minus the busy-wait's. */
static double step(const options *o, int overlap)
{
    double busy_s = 0, t0 = kl_now();
    for (int l = NLAYERS - 1; l >= 0; l--) {
        busy(dw_s[l], o->test_us, overlap);
        busy_s += dw_s[l];
        if (overlap) {
            for (int i = 0; i < nbuckets; i++)
                if (buckets[i].last == 2 * l)
                    start_bucket(&buckets[i]);
            test_all();
        }
        busy(dx_s[l], o->test_us, overlap);
        busy_s += dx_s[l];
    }
    if (!overlap)
        for (int i = 0; i < nbuckets; i++)
            start_bucket(&buckets[i]);
    wait_all();
    return kl_now() - t0 - busy_s;
}

int main(int argc, char **argv)
{
    kl_error err = {0};
    if (kl_comm_world(&argc, &argv, &comm, &err) != KL_OK)
        die(err.msg);
    if (strcmp(kl_comm_backend(comm), "mpi") != 0)
        die("run it under mpirun");
    options o;
    if (parse_options(argc, argv, &o) != 0) {
        fprintf(stderr, "usage: mpirun -n N bench_overlap [--reps N] [--warmup N] [--batch B] "
                        "[--bucket-mb X] [--test-us T] [--scale F] "
                        "[--backward-ms MS]\n");
        kl_comm_free(comm);
        return 2;
    }
    int rank = kl_comm_rank(comm);
    calibrate(&o, rank);
    make_layout(&o);
    double exposed[2][MAX_REPS];
    for (int r = -o.warmup; r < o.reps; r++) {
        for (int w = 0; w < 2; w++) {
            if (MPI_Barrier(MPI_COMM_WORLD) != MPI_SUCCESS)
                die("MPI_Barrier failed");
            double e = step(&o, w == 0), slowest;
            if (MPI_Allreduce(&e, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD) != MPI_SUCCESS)
                die("MPI_Allreduce failed");
            if (r >= 0)
                exposed[w][r] = slowest;
        }
    }
    if (rank == 0) {
        double on = bench_median(exposed[0], o.reps), off = bench_median(exposed[1], o.reps);
        double total = 0;
        for (int l = 0; l < NLAYERS; l++)
            total += dw_s[l] + dx_s[l];
        printf("mlp_large backward, batch %d per rank, %d ranks: busy-wait %.2f ms (dW/dX per "
               "layer, last first:",
               o.batch, kl_comm_size(comm), 1e3 * total);
        for (int l = NLAYERS - 1; l >= 0; l--)
            printf(" %.2f/%.2f", 1e3 * dw_s[l], 1e3 * dx_s[l]);
        printf(")\n%d buckets (%.1f MB of gradients, scale 1/%ld), test calls every %g us\n",
               nbuckets, (double)toff[NTENSORS] * 4e-6, o.scale, o.test_us);
        printf("exposed all-reduce ms, median of %d: overlap on %.2f, off %.2f; hidden share "
               "%.0f%% (goal >= 70%%)\n",
               o.reps, 1e3 * on, 1e3 * off, off > 0 ? 100.0 * (1.0 - on / off) : 0.0);
    }
    free(grads);
    kl_comm_free(comm);
    return 0;
}
