/* Checkpoint write and read throughput against the disk's own: a model of about 100M parameters
 * (with Adam's two moments, as a real checkpoint holds them: 1.2 GB) is saved with kl_ckpt_save
 * (HDF5, temporary file, fsync, rename, fsync of the folder) and read back with kl_ckpt_open +
 * kl_ckpt_read_weights + kl_ckpt_read_state, against the same bytes written with plain write()
 * and fsync() to a temporary file renamed into place, and read with plain read() into the same
 * buffers kiln's reader fills (see raw_read). Runs alternate so that both see the same disk and
 * cache state.
 *
 *   bench_ckpt [--dir DIR] [--params N] [--reps R] [--settle S]
 *   (defaults: the current folder, 100M, 3 reps, 0 s)
 *
 * --settle S waits S seconds before every timed write (both files are already fsynced). On a
 * virtual disk fsync returns when the host has the data, and the host goes on flushing it for
 * seconds: without a pause, whichever write comes first in a repetition pays for the previous one's
 * flush (measured: 1.1 s alone, 2-4.5 s right behind another 1.2 GB), which swamps the difference
 * being measured. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_stats.h"
#include "kiln/ckpt.h"
#include "kiln/clock.h"
#include "kiln/optim.h"

/* Let the disk finish what earlier writes left it (see --settle above). */
static void quiet(double settle)
{
    if (settle <= 0)
        return;
    struct timespec ts = {(time_t)settle, (long)((settle - (double)(time_t)settle) * 1e9)};
    nanosleep(&ts, NULL);
}

/* The baseline: the same bytes through write() + fsync, then rename and a folder fsync, which is
 * the least any durable atomic save must do. */
static double raw_write(const char *dir, const float *const *bufs, const size_t *sizes, int n)
{
    char tmp[4096], path[4096];
    snprintf(tmp, sizeof tmp, "%s/raw.bin.tmp", dir);
    snprintf(path, sizeof path, "%s/raw.bin", dir);
    double t0 = kl_now();
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        perror(tmp);
        exit(1);
    }
    for (int i = 0; i < n; i++) {
        const char *p = (const char *)bufs[i];
        size_t left = sizes[i] * sizeof(float);
        while (left > 0) {
            ssize_t w = write(fd, p, left);
            if (w <= 0) {
                perror("write");
                exit(1);
            }
            p += w;
            left -= (size_t)w;
        }
    }
    fsync(fd);
    close(fd);
    rename(tmp, path);
    int dfd = open(dir, O_RDONLY);
    fsync(dfd);
    close(dfd);
    return kl_now() - t0;
}

/* Into the buffers kiln's reader fills, so that both pay the same page faults: the weights into
 * the graph's own parameter buffer (into0: compiled and initialised, so already touched, as in a
 * resuming process; the file holds the same values, so the model is unchanged), the optimizer
 * state into freshly allocated memory (kl_ckpt_read_state allocates it too). */
static double raw_read(const char *dir, const size_t *sizes, int n, float *into0)
{
    char path[4096];
    float *bufs[8];
    snprintf(path, sizeof path, "%s/raw.bin", dir);
    double t0 = kl_now();
    for (int i = 0; i < n; i++)
        if (!(bufs[i] = i == 0 && into0 ? into0 : malloc(sizes[i] * sizeof(float)))) {
            perror("malloc");
            exit(1);
        }
    int fd = open(path, O_RDONLY);
    for (int i = 0; i < n; i++) {
        char *p = (char *)bufs[i];
        size_t left = sizes[i] * sizeof(float);
        while (left > 0) {
            ssize_t r = read(fd, p, left);
            if (r <= 0) {
                perror("read");
                exit(1);
            }
            p += r;
            left -= (size_t)r;
        }
    }
    close(fd);
    double t = kl_now() - t0;
    for (int i = 0; i < n; i++)
        if (bufs[i] != into0)
            free(bufs[i]);
    return t;
}

int main(int argc, char **argv)
{
    const char *dir = ".";
    int64_t nparams = 100000000;
    int reps = 3;
    double settle = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--params") && i + 1 < argc)
            nparams = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--settle") && i + 1 < argc)
            settle = atof(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_ckpt [--dir DIR] [--params N] [--reps R] [--settle S]\n");
            return 2;
        }
    }
    /* A 10-layer MLP-like set of square weight matrices of about nparams in all. */
    enum { LAYERS = 10 };
    int64_t side = 1;
    while ((side + 1) * (side + 1) * LAYERS <= nparams)
        side++;
    kl_error err = {0};
    kl_model m = {.g = kl_graph_new()};
    m.opts.input.ndim = 1;
    m.opts.input.d[0] = side;
    m.opts.outputs = (int)side;
    char name[32];
    for (int l = 0; l < LAYERS; l++) {
        snprintf(name, sizeof name, "layers.%d.weight", l);
        kl_param(m.g, name, KL_SHAPE(side, side), (kl_init){KL_INIT_ZEROS, 0, 0}, 0);
    }
    if (kl_graph_compile(m.g, 1, KL_NONE, 1, &err) != KL_OK) {
        fprintf(stderr, "bench_ckpt: %s\n", err.msg);
        return 1;
    }
    size_t np = kl_graph_param_count(m.g);
    float *p = kl_graph_params(m.g);
    for (size_t i = 0; i < np; i++)
        p[i] = (float)(i % 1000) * 1e-3f;
    kl_optim_config oc = kl_optim_defaults(KL_OPTIM_ADAM);
    kl_optim *opt = kl_optim_new(&oc, np, &err);
    if (!opt) {
        fprintf(stderr, "bench_ckpt: %s\n", err.msg);
        return 1;
    }
    float *state = kl_optim_state(opt);
    for (size_t i = 0; i < kl_optim_state_size(opt); i++)
        state[i] = (float)(i % 777) * 1e-4f;
    int ncols;
    const char *const *cols = kl_ckpt_history_columns(&ncols);
    kl_ckpt_state st = {.step = 1000,
                        .epoch = 1,
                        .seed = 1,
                        .optim_kind = KL_OPTIM_ADAM,
                        .optim_steps = 1000,
                        .optim_state = state,
                        .optim_state_size = kl_optim_state_size(opt),
                        .history = {0, ncols, (const char **)cols, NULL}};
    double bytes = (double)(np + kl_optim_state_size(opt)) * sizeof(float);
    char path[4096];
    snprintf(path, sizeof path, "%s/bench.h5", dir);
    const float *wbufs[2] = {p, state};
    size_t sizes[2] = {np, kl_optim_state_size(opt)};
    double *tw = calloc((size_t)reps, sizeof *tw), *tr = calloc((size_t)reps, sizeof *tr);
    double *bw = calloc((size_t)reps, sizeof *bw), *br = calloc((size_t)reps, sizeof *br);
    if (!tw || !tr || !bw || !br)
        return 1;
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("bench_ckpt: %zu parameters (%d x %lld x %lld) + Adam state = %.2f GB, %d reps, in %s\n",
           np, LAYERS, (long long)side, (long long)side, bytes / 1e9, reps, dir);
    for (int r = 0; r < reps; r++) {
        /* Alternate which goes first: the second write also pays for freeing the first's blocks
         * of the file it replaces, and caches warm up. */
        if (r % 2 == 0) {
            quiet(settle);
            bw[r] = raw_write(dir, wbufs, sizes, 2);
        }
        quiet(settle);
        double t0 = kl_now();
        if (kl_ckpt_save(path, "model: {}\n", &m, &st, &err) != KL_OK) {
            fprintf(stderr, "bench_ckpt: %s\n", err.msg);
            return 1;
        }
        tw[r] = kl_now() - t0;
        if (r % 2 == 1) {
            quiet(settle);
            bw[r] = raw_write(dir, wbufs, sizes, 2);
        }
        if (r % 2 == 0)
            br[r] = raw_read(dir, sizes, 2, p);
        t0 = kl_now();
        kl_ckpt *c = NULL;
        kl_ckpt_state back = {0};
        if (kl_ckpt_open(path, false, &c, &err) != KL_OK ||
            kl_ckpt_read_weights(c, m.g, &err) != KL_OK ||
            kl_ckpt_read_state(c, m.g, &back, &err) != KL_OK) {
            fprintf(stderr, "bench_ckpt: %s\n", err.msg);
            return 1;
        }
        tr[r] = kl_now() - t0;
        if (r % 2 == 1)
            br[r] = raw_read(dir, sizes, 2, p);
        if (back.optim_state_size != st.optim_state_size ||
            memcmp(back.optim_state, state, st.optim_state_size * sizeof(float)) != 0) {
            fprintf(stderr, "bench_ckpt: the optimizer state did not read back equal\n");
            return 1;
        }
        kl_ckpt_state_free(&back);
        kl_ckpt_close(c);
        printf("  rep %d: write kiln %.2f s, raw %.2f s; read kiln %.2f s, raw %.2f s\n", r + 1,
               tw[r], bw[r], tr[r], br[r]);
    }
    double w = bench_median(tw, reps), wb = bench_median(bw, reps), rd = bench_median(tr, reps),
           rb = bench_median(br, reps);
    printf("write: kiln %.0f MB/s, write()+fsync %.0f MB/s: %.0f%% of raw (goal >= 80%%)\n",
           bytes / w / 1e6, bytes / wb / 1e6, 100 * wb / w);
    printf("read:  kiln %.0f MB/s, read() %.0f MB/s: %.0f%% of raw (goal >= 80%%)\n",
           bytes / rd / 1e6, bytes / rb / 1e6, 100 * rb / rd);
    char raw[4096];
    snprintf(raw, sizeof raw, "%s/raw.bin", dir);
    unlink(raw);
    unlink(path);
    free(tw);
    free(tr);
    free(bw);
    free(br);
    kl_optim_free(opt);
    kl_graph_free(m.g);
    return 0;
}
