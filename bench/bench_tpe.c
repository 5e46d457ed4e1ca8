/* TPE suggest latency: the time kl_tpe_suggest takes to propose one trial of a four-parameter
 * space (a log-uniform learning rate, a uniform dropout rate, an integer width, a categorical
 * optimizer) once 1,000 trials have finished. The history is TPE's own sweep of N trials on a
 * synthetic objective under fifo, each finished as soon as it is proposed; then R more trials
 * are proposed and timed one by one (each finished before the next, so the history runs from N
 * to N + R - 1 finished trials). --history writes the first N trials (parameters and value) as
 * CSV, which bench/bench_tpe_optuna.py loads into Optuna 3.1 to time its TPESampler on the same
 * history. It also prints a hash of every proposal (FNV-1a of the overrides in trial order), so
 * that two builds can be shown to propose the same trials.
 *
 *   bench_tpe [--trials N (1000)] [--reps R (200)] [--seed S] [--history PATH] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_stats.h"
#include "kiln/clock.h"
#include "kiln/sched.h"
#include "kiln/sweep.h"
#include "kiln/tpe.h"

static const char base_text[] = "data: {dataset: fashion-mnist, val_fraction: 0.1}\n"
                                "model:\n"
                                "  layers:\n"
                                "    - dense: {units: 64, activation: relu}\n"
                                "    - dropout: {rate: 0.2}\n"
                                "optimizer: {name: adam, lr: 1e-3}\n"
                                "train: {epochs: 1}\n";

/* The space bench_tpe_optuna.py declares too. */
static const char sweep_fmt[] = "base: base.yaml\n"
                                "metric: {name: val_loss}\n"
                                "method: tpe\n"
                                "run_cap: %d\n"
                                "seed: %llu\n"
                                "parameters:\n"
                                "  optimizer.lr: {log_uniform_values: {min: 1e-5, max: 1}}\n"
                                "  model.layers.1.rate: {uniform: {min: 0, max: 0.9}}\n"
                                "  model.layers.0.units: {int_uniform: {min: 16, max: 1024}}\n"
                                "  optimizer.name: {values: [adam, sgd, adamw]}\n"
                                "scheduler: {type: fifo, max_t: 1}\n";

/* Smallest at lr 10^-2.5, rate 0.3, units 400, sgd; bench_tpe_optuna.py has the same. */
static double objective(char **ov, double *lr, double *rate, long *units, const char **name)
{
    *lr = strtod(strchr(ov[0], '=') + 1, NULL);
    *rate = strtod(strchr(ov[1], '=') + 1, NULL);
    *units = strtol(strchr(ov[2], '=') + 1, NULL, 10);
    *name = strchr(ov[3], '=') + 1;
    double a = log10(*lr) + 2.5, b = (*rate - 0.3) * 3, c = (*units - 400) / 300.0;
    return a * a + b * b + c * c + (strcmp(*name, "sgd") ? 0.5 : 0);
}

static uint64_t fnv1a(uint64_t h, const char *s)
{
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return (h ^ '\n') * 0x100000001b3ull;
}

static int write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        perror(path);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    int n = 1000, reps = 200;
    unsigned long long seed = 0;
    const char *history = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--trials") && i + 1 < argc)
            n = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--history") && i + 1 < argc)
            history = argv[++i];
        else {
            fprintf(stderr,
                    "usage: bench_tpe [--trials N] [--reps R] [--seed S] [--history PATH]\n");
            return 2;
        }
    }
    if (n < 1 || reps < 1) {
        fprintf(stderr, "bench_tpe: --trials and --reps must be at least 1\n");
        return 2;
    }
    char dir[] = "/tmp/kiln-bench-tpe-XXXXXX", base[64], sweep[64], text[2048];
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(base, sizeof base, "%s/base.yaml", dir);
    snprintf(sweep, sizeof sweep, "%s/sweep.yaml", dir);
    snprintf(text, sizeof text, sweep_fmt, n + reps, seed);
    kl_error err = {0};
    kl_sweep *sw = NULL;
    if (write_text(base, base_text) == 0 && write_text(sweep, text) == 0)
        sw = kl_sweep_load(sweep, &err);
    unlink(base);
    unlink(sweep);
    rmdir(dir);
    if (!sw) {
        fprintf(stderr, "bench_tpe: %s\n", err.msg);
        return 1;
    }
    kl_sched *s = kl_sched_new(&sw->sched, false, n + reps, &err);
    kl_tpe *t = s ? kl_tpe_new(sw, &err) : NULL;
    double *us = malloc((size_t)reps * sizeof *us), *cpu = malloc((size_t)reps * sizeof *cpu);
    FILE *h = history ? fopen(history, "w") : NULL;
    if (!t || !us || !cpu || (history && !h)) {
        fprintf(stderr, "bench_tpe: %s\n", err.msg[0] ? err.msg : "out of memory or no file");
        return 1;
    }
    if (h)
        fputs("trial,lr,rate,units,name,value\n", h);
    double build_s = 0;
    uint64_t hash = 0xcbf29ce484222325ull;
    for (int i = 0; i < n + reps; i++) {
        kl_job job = kl_sched_next(s);
        char **ov;
        int np;
        struct timespec c0, c1;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
        int64_t t0 = kl_now_ns();
        kl_status st = kl_tpe_suggest(t, s, job.trial, &ov, &np, &err);
        int64_t ns = kl_now_ns() - t0;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
        if (st != KL_OK) {
            fprintf(stderr, "bench_tpe: %s\n", err.msg);
            return 1;
        }
        double lr, rate;
        long units;
        const char *name;
        double v = objective(ov, &lr, &rate, &units, &name);
        if (i < n && h)
            fprintf(h, "%d,%.17g,%.17g,%ld,%s,%.17g\n", i, lr, rate, units, name, v);
        if (i < n)
            build_s += (double)ns / 1e9;
        else {
            us[i - n] = (double)ns / 1e3;
            cpu[i - n] =
                (double)(c1.tv_sec - c0.tv_sec) * 1e6 + (double)(c1.tv_nsec - c0.tv_nsec) / 1e3;
        }
        for (int j = 0; j < np; j++)
            hash = fnv1a(hash, ov[j]);
        kl_sched_result(s, job.trial, 1, v);
        kl_sweep_overrides_free(ov, np);
    }
    if (h && fclose(h) != 0) {
        perror(history);
        return 1;
    }
    int k99 = (int)ceil(0.99 * reps) - 1;
    k99 = k99 < 0 ? 0 : k99;
    double p50 = bench_median(us, reps), c50 = bench_median(cpu, reps); /* sorts them */
    printf("kiln TPE suggest (4 parameters, 24 candidates) at %d..%d finished trials, %d "
           "proposals: p50 %.1f us, p99 %.1f us, max %.1f us; thread CPU time p50 %.1f us, p99 "
           "%.1f us, min %.1f us (the first %d proposals: %.3f s); proposals' hash 0x%016llx\n",
           n, n + reps - 1, reps, p50, us[k99], us[reps - 1], c50, cpu[k99], cpu[0], n, build_s,
           (unsigned long long)hash);
    free(us);
    free(cpu);
    kl_tpe_free(t);
    kl_sched_free(s);
    kl_sweep_free(sw);
    return 0;
}
