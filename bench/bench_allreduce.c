/* bench_allreduce: the cost of summing a ResNet-50 gradient set across ranks three ways.
 *
 * The gradient set is torchvision ResNet-50's 161 parameter tensors (25,557,032 floats, the sizes
 * in bench/resnet50_sizes.txt), laid out one after another in one flat buffer, as kiln keeps a
 * model's gradients. Each repetition all-reduces (sums) all of it, in place, by:
 *   per-tensor:   one blocking MPI_Allreduce per tensor, last tensor first (161 calls);
 *   bucketed:     kiln's way (trainers/train.c, make_buckets): tensors walked from the last one and
 *                 cut into contiguous buckets of about --bucket-mb MiB, every bucket started with
 *                 kl_comm_allreduce_start and all of them waited for at the end;
 *   concatenated: one MPI_Allreduce of the whole flat buffer (the floor for the bytes moved).
 * Before anything is timed each way is run once on rank-dependent small integers and every element
 * is checked against the exact sum. Timing: warm-up repetitions, then --reps repetitions with the
 * three ways interleaved, an MPI_Barrier before each, each repetition's time the slowest rank's;
 * the median is reported. Run under mpirun; rank 0 prints. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_stats.h"
#include "kiln/clock.h"
#include "kiln/comm.h"

#ifndef BENCH_SIZES_FILE
#define BENCH_SIZES_FILE "bench/resnet50_sizes.txt"
#endif

#define RESNET50_TENSORS 161
#define RESNET50_FLOATS  25557032L

enum { WAY_PER_TENSOR, WAY_BUCKETED, WAY_CONCAT, NWAYS };
static const char *const way_names[NWAYS] = {"per-tensor", "bucketed", "concatenated"};

typedef struct options {
    int reps;
    int warmup;
    double bucket_mb;
    long scale; /* every tensor's size divided by it (rounded up): the simulated cluster's runs */
    const char *sizes_file;
} options;

typedef struct range {
    size_t lo, hi; /* [lo, hi) in the flat buffer */
} range;

typedef struct gradset {
    int ntensors;
    range *tensors;
    size_t total;
    int nbuckets;
    range *buckets;
    kl_comm_request **reqs; /* per bucket */
    float *flat;
} gradset;

static kl_comm *comm;

static void die(const char *fmt, const char *what)
{
    fprintf(stderr, "bench_allreduce: ");
    fprintf(stderr, fmt, what);
    fprintf(stderr, "\n");
    MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);
}

static void check_mpi(int rc, const char *call)
{
    if (rc != MPI_SUCCESS)
        die("%s failed", call);
}

static void check_kl(kl_status st, const kl_error *err)
{
    if (st != KL_OK)
        die("%s", err->msg);
}

static void usage(void)
{
    fprintf(stderr, "usage: mpirun -n N bench_allreduce [--reps N] [--warmup N] [--bucket-mb X] "
                    "[--sizes FILE] [--scale F]\n");
}

static int parse_options(int argc, char **argv, options *o)
{
    *o = (options){
        .reps = 15, .warmup = 3, .bucket_mb = 25.0, .scale = 1, .sizes_file = BENCH_SIZES_FILE};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            usage();
            return -1;
        }
        if (!strcmp(a, "--reps"))
            o->reps = atoi(v);
        else if (!strcmp(a, "--warmup"))
            o->warmup = atoi(v);
        else if (!strcmp(a, "--bucket-mb"))
            o->bucket_mb = atof(v);
        else if (!strcmp(a, "--sizes"))
            o->sizes_file = v;
        else if (!strcmp(a, "--scale"))
            o->scale = atol(v);
        else {
            usage();
            return -1;
        }
        i++;
    }
    if (o->reps < 1 || o->warmup < 0 || !(o->bucket_mb > 0) || o->scale < 1 || o->scale > 1000000) {
        usage();
        return -1;
    }
    return 0;
}

/* Rank 0 reads the sizes and broadcasts them, so every rank agrees on the layout. */
static void load_sizes(const options *o, int rank, gradset *g)
{
    long sizes[RESNET50_TENSORS + 1];
    int n = 0;
    if (rank == 0) {
        FILE *f = fopen(o->sizes_file, "r");
        if (!f)
            die("cannot open %s", o->sizes_file);
        long v;
        while (n <= RESNET50_TENSORS && fscanf(f, "%ld", &v) == 1)
            sizes[n++] = v;
        fclose(f);
    }
    check_mpi(MPI_Bcast(&n, 1, MPI_INT, 0, MPI_COMM_WORLD), "MPI_Bcast");
    check_mpi(MPI_Bcast(sizes, n, MPI_LONG, 0, MPI_COMM_WORLD), "MPI_Bcast");
    if (n != RESNET50_TENSORS)
        die("%s: expected 161 tensor sizes", o->sizes_file);
    g->ntensors = n;
    g->tensors = malloc((size_t)n * sizeof *g->tensors);
    if (!g->tensors)
        die("%s", "out of memory");
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        if (sizes[i] <= 0)
            die("%s: a tensor size is not positive", o->sizes_file);
        off += (size_t)sizes[i];
    }
    if (off != (size_t)RESNET50_FLOATS)
        die("%s: the sizes do not sum to ResNet-50's 25,557,032 floats", o->sizes_file);
    /* --scale F: each tensor 1/F of its size, for a link whose rate is 1/F of the one it stands
     * for (bench/cluster), so that every transfer takes the time it would at the full rate. */
    off = 0;
    for (int i = 0; i < n; i++) {
        size_t len = ((size_t)sizes[i] + (size_t)o->scale - 1) / (size_t)o->scale;
        g->tensors[i] = (range){off, off + len};
        off += len;
    }
    g->total = off;
}

/* The same cut as make_buckets in trainers/train.c: walk the tensors from the last one, start a
 * new bucket once the current one holds at least cap floats. */
static void make_buckets(gradset *g, double bucket_mb)
{
    size_t cap = (size_t)(bucket_mb * 1048576.0 / sizeof(float));
    if (cap == 0)
        cap = 1;
    g->buckets = calloc((size_t)g->ntensors, sizeof *g->buckets);
    g->reqs = calloc((size_t)g->ntensors, sizeof *g->reqs);
    if (!g->buckets || !g->reqs)
        die("%s", "out of memory");
    range *cur = NULL;
    for (int p = g->ntensors - 1; p >= 0; p--) {
        if (!cur || cur->hi - cur->lo >= cap) {
            cur = &g->buckets[g->nbuckets++];
            cur->hi = g->tensors[p].hi;
        }
        cur->lo = g->tensors[p].lo;
    }
}

static void run_way(gradset *g, int way)
{
    kl_error err = {0};
    switch (way) {
    case WAY_PER_TENSOR:
        for (int p = g->ntensors - 1; p >= 0; p--) {
            range t = g->tensors[p];
            check_mpi(MPI_Allreduce(MPI_IN_PLACE, g->flat + t.lo, (int)(t.hi - t.lo), MPI_FLOAT,
                                    MPI_SUM, MPI_COMM_WORLD),
                      "MPI_Allreduce");
        }
        break;
    case WAY_BUCKETED:
        for (int b = 0; b < g->nbuckets; b++)
            check_kl(kl_comm_allreduce_start(comm, g->flat + g->buckets[b].lo,
                                             g->buckets[b].hi - g->buckets[b].lo, &g->reqs[b],
                                             &err),
                     &err);
        for (int b = 0; b < g->nbuckets; b++)
            check_kl(kl_comm_wait(comm, g->reqs[b], &err), &err);
        break;
    default:
        check_mpi(
            MPI_Allreduce(MPI_IN_PLACE, g->flat, (int)g->total, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD),
            "MPI_Allreduce");
        break;
    }
}

/* Rank r holds (r + 1) * (i % 13 + 1) at element i: small integers, so the float sums are exact. */
static int check_way(gradset *g, int way, int rank, int size)
{
    for (size_t i = 0; i < g->total; i++)
        g->flat[i] = (float)((rank + 1) * (int)(i % 13 + 1));
    run_way(g, way);
    long bad = 0;
    size_t first_bad = 0;
    float ranks_sum = (float)(size * (size + 1) / 2);
    for (size_t i = 0; i < g->total; i++) {
        if (g->flat[i] != ranks_sum * (float)(i % 13 + 1) && bad++ == 0)
            first_bad = i;
    }
    long all_bad = 0;
    check_mpi(MPI_Allreduce(&bad, &all_bad, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce");
    if (bad)
        fprintf(stderr, "rank %d: %s: %ld wrong sums, the first at element %zu (%g, want %g)\n",
                rank, way_names[way], bad, first_bad, (double)g->flat[first_bad],
                (double)(ranks_sum * (float)(first_bad % 13 + 1)));
    return all_bad == 0;
}

int main(int argc, char **argv)
{
    kl_error err = {0};
    check_kl(kl_comm_world(&argc, &argv, &comm, &err), &err);
    if (strcmp(kl_comm_backend(comm), "mpi") != 0) {
        fprintf(stderr, "bench_allreduce: run it under mpirun (the communicator is \"%s\")\n",
                kl_comm_backend(comm));
        kl_comm_free(comm);
        return 1;
    }
    int rank = kl_comm_rank(comm), size = kl_comm_size(comm);
    options o;
    if (parse_options(argc, argv, &o) != 0) {
        kl_comm_free(comm);
        return 2;
    }

    gradset g = {0};
    load_sizes(&o, rank, &g);
    make_buckets(&g, o.bucket_mb);
    g.flat = malloc(g.total * sizeof *g.flat);
    if (!g.flat)
        die("%s", "out of memory");

    int ok = 1;
    for (int w = 0; w < NWAYS; w++)
        ok &= check_way(&g, w, rank, size);
    if (!ok) {
        if (rank == 0)
            fprintf(stderr, "bench_allreduce: wrong sums, nothing timed\n");
        kl_comm_free(comm);
        return 1;
    }

    /* Zeros from here on: sums that stay put, so no repetition meets overflow or denormals. */
    memset(g.flat, 0, g.total * sizeof *g.flat);
    for (int r = 0; r < o.warmup; r++)
        for (int w = 0; w < NWAYS; w++)
            run_way(&g, w);

    double *times[NWAYS];
    for (int w = 0; w < NWAYS; w++) {
        times[w] = malloc((size_t)o.reps * sizeof *times[w]);
        if (!times[w])
            die("%s", "out of memory");
    }
    for (int r = 0; r < o.reps; r++) {
        for (int w = 0; w < NWAYS; w++) {
            check_mpi(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
            double t0 = kl_now();
            run_way(&g, w);
            double t = kl_now() - t0, slowest;
            check_mpi(MPI_Allreduce(&t, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD),
                      "MPI_Allreduce");
            times[w][r] = slowest;
        }
    }

    if (rank == 0) {
        double med[NWAYS], lo[NWAYS], hi[NWAYS];
        for (int w = 0; w < NWAYS; w++) {
            med[w] = bench_median(times[w], o.reps); /* sorts */
            lo[w] = times[w][0];
            hi[w] = times[w][o.reps - 1];
        }
        size_t biggest = 0;
        for (int b = 0; b < g.nbuckets; b++)
            if (g.buckets[b].hi - g.buckets[b].lo > biggest)
                biggest = g.buckets[b].hi - g.buckets[b].lo;
        printf("all-reduce (sum) of ResNet-50's gradients: %d tensors, %zu floats (%.1f MB), "
               "%d ranks\n",
               g.ntensors, g.total, (double)(g.total * sizeof(float)) / 1e6, size);
        if (o.scale > 1)
            printf("scaled: every tensor 1/%ld of its size (rounded up)\n", o.scale);
        printf("bucketed: %d buckets of about %.1f MiB (largest %.1f MiB)\n", g.nbuckets,
               o.bucket_mb, (double)(biggest * sizeof(float)) / 1048576.0);
        printf("all sums checked exact; median of %d repetitions after %d warm-up, slowest rank\n",
               o.reps, o.warmup);
        printf("%-14s %10s %10s %10s %8s %8s\n", "way", "calls", "median ms", "min ms", "max ms",
               "GB/s");
        int calls[NWAYS] = {g.ntensors, g.nbuckets, 1};
        for (int w = 0; w < NWAYS; w++)
            printf("%-14s %10d %10.2f %10.2f %8.2f %8.2f\n", way_names[w], calls[w], 1e3 * med[w],
                   1e3 * lo[w], 1e3 * hi[w], (double)(g.total * sizeof(float)) / med[w] / 1e9);
        double r1 = med[WAY_PER_TENSOR] / med[WAY_BUCKETED];
        double r2 = med[WAY_BUCKETED] / med[WAY_CONCAT];
        printf("per-tensor / bucketed:   %.2fx (goal >= 3x): %s\n", r1,
               r1 >= 3.0 ? "met" : "NOT met");
        printf("bucketed / concatenated: %.3f (goal <= 1.10): %s\n", r2,
               r2 <= 1.10 ? "met" : "NOT met");
    }

    for (int w = 0; w < NWAYS; w++)
        free(times[w]);
    free(g.flat);
    free(g.tensors);
    free(g.buckets);
    free(g.reqs);
    kl_comm_free(comm);
    return 0;
}
