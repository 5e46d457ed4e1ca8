/* Scheduler throughput: ASHA over a table of learning curves, without training. Writes a
 * deterministic curve table (value(i, t) = a_i (1 - exp(-t / b_i)) + noise, seeded), loads it
 * with kl_curves_load and runs kl_simulate_curves over it R times per mode, reporting the wall
 * time of the simulation loop and of the scheduler calls, and the latency percentiles of
 * kl_sched_next + kl_sched_result. bench/bench_sched_optuna.py drives Optuna over the same table.
 *
 *   bench_sched --write-curves PATH [--trials N] [--max-t T] [--seed S]
 *   bench_sched [--curves PATH] [--trials N] [--max-t T] [--seed S] [--eta E] [--grace G]
 *               [--workers W] [--mode promote|stop|both] [--reps R]
 *
 * Without --curves the table is written to /tmp/kiln-curves-N-T-S.csv first (and reused). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_stats.h"
#include "kiln/clock.h"
#include "kiln/simulate.h"

typedef struct opts {
    const char *curves, *write;
    int64_t trials;
    int max_t, eta, grace, workers, reps;
    uint64_t seed;
    bool promote, stop;
} opts;

static uint64_t splitmix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* A uniform in (0, 1) keyed by (seed, trial, t, k). */
static double unit(uint64_t seed, int64_t i, int t, int k)
{
    uint64_t x = splitmix(
        seed ^ splitmix((uint64_t)i * 0x100000001b3ull ^ splitmix((uint64_t)t * 8 + (uint64_t)k)));
    return ((double)(x >> 11) + 0.5) / 9007199254740992.0;
}

/* The table: trial i saturates at a_i in U(0.6, 0.95) with time constant b_i in U(2, 40)
 * epochs, plus normal noise of standard deviation 0.005 per epoch (Box-Muller). Values are
 * written with 6 decimals, as an accuracy would be logged. */
static int write_curves(const char *path, int64_t n, int max_t, uint64_t seed)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        return 1;
    }
    fputs("trial,t,value\n", f);
    for (int64_t i = 0; i < n; i++) {
        double a = 0.6 + 0.35 * unit(seed, i, 0, 0), b = 2.0 + 38.0 * unit(seed, i, 0, 1);
        for (int t = 1; t <= max_t; t++) {
            double u1 = unit(seed, i, t, 2), u2 = unit(seed, i, t, 3);
            double noise = 0.005 * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
            fprintf(f, "%lld,%d,%.6f\n", (long long)i, t, a * (1.0 - exp(-t / b)) + noise);
        }
    }
    if (fclose(f) != 0) {
        perror(path);
        return 1;
    }
    return 0;
}

static void print_load(const char *when)
{
    FILE *f = fopen("/proc/loadavg", "r");
    char line[128] = "?";
    if (f) {
        if (!fgets(line, sizeof line, f))
            strcpy(line, "?\n");
        fclose(f);
    }
    printf("# load average %s: %s", when, line);
}

/* R runs of one mode; prints each and the medians. */
static int run_mode(const opts *o, const kl_curves *c, bool stop_mode)
{
    kl_sched_config cfg = {0};
    cfg.kind = KL_SCHED_ASHA;
    cfg.max_t = o->max_t;
    cfg.grace_period = o->grace;
    cfg.reduction_factor = o->eta;
    cfg.stop_mode = stop_mode;
    const char *mode = stop_mode ? "stop" : "promote";
    double loop[64], sched[64], p50[64], p99[64], mx[64];
    kl_sim_result r = {0};
    for (int rep = 0; rep < o->reps; rep++) {
        kl_error err = {0};
        kl_sim_result_free(&r);
        if (kl_simulate_curves(&cfg, true, c, o->workers, &r, &err) != KL_OK) {
            fprintf(stderr, "bench_sched: %s\n", err.msg);
            return 1;
        }
        loop[rep] = r.loop_s;
        sched[rep] = r.sched_s;
        p50[rep] = r.all.p50_us;
        p99[rep] = r.all.p99_us;
        mx[rep] = r.all.max_us;
        printf("%-8s %7d %4d %8lld %9lld %6lld %8.4f %9.2f %9.2f %9lld %7.3f %7.3f %8.1f\n", mode,
               o->workers, rep + 1, (long long)r.ntrials, (long long)r.epochs,
               (long long)r.best_trial, r.best_value, 1e3 * r.loop_s, 1e3 * r.sched_s,
               (long long)r.all.calls, r.all.p50_us, r.all.p99_us, r.all.max_us);
    }
    printf("# %s: done %lld, stopped %lld, paused %lld, failed %lld; simulated makespan %.0f "
           "epochs; next p50/p99 %.3f/%.3f us, result p50/p99 %.3f/%.3f us\n",
           mode, (long long)r.n_done, (long long)r.n_stopped, (long long)r.n_paused,
           (long long)r.n_failed, r.makespan, r.next.p50_us, r.next.p99_us, r.result.p50_us,
           r.result.p99_us);
    printf("bench_sched: mode=%s workers=%d trials=%lld epochs=%lld best_trial=%lld "
           "loop_ms=%.3f sched_ms=%.3f p50_us=%.3f p99_us=%.3f max_us=%.1f (medians of %d)\n",
           mode, o->workers, (long long)r.ntrials, (long long)r.epochs, (long long)r.best_trial,
           1e3 * bench_median(loop, o->reps), 1e3 * bench_median(sched, o->reps),
           bench_median(p50, o->reps), bench_median(p99, o->reps), bench_median(mx, o->reps),
           o->reps);
    kl_sim_result_free(&r);
    return 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: bench_sched --write-curves PATH [--trials N] [--max-t T] [--seed S]\n"
                    "       bench_sched [--curves PATH] [--trials N] [--max-t T] [--seed S] "
                    "[--eta E] [--grace G]\n"
                    "                   [--workers W] [--mode promote|stop|both] [--reps R]\n");
    return 2;
}

int main(int argc, char **argv)
{
    opts o = {NULL, NULL, 10000, 81, 3, 1, 1, 5, 1, true, true};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return usage();
        i++;
        if (strcmp(a, "--curves") == 0)
            o.curves = v;
        else if (strcmp(a, "--write-curves") == 0)
            o.write = v;
        else if (strcmp(a, "--trials") == 0)
            o.trials = atoll(v);
        else if (strcmp(a, "--max-t") == 0)
            o.max_t = atoi(v);
        else if (strcmp(a, "--eta") == 0)
            o.eta = atoi(v);
        else if (strcmp(a, "--grace") == 0)
            o.grace = atoi(v);
        else if (strcmp(a, "--workers") == 0)
            o.workers = atoi(v);
        else if (strcmp(a, "--seed") == 0)
            o.seed = strtoull(v, NULL, 10);
        else if (strcmp(a, "--reps") == 0)
            o.reps = atoi(v);
        else if (strcmp(a, "--mode") == 0) {
            o.promote = strcmp(v, "promote") == 0 || strcmp(v, "both") == 0;
            o.stop = strcmp(v, "stop") == 0 || strcmp(v, "both") == 0;
            if (!o.promote && !o.stop)
                return usage();
        } else
            return usage();
    }
    if (o.trials < 1 || o.max_t < 1 || o.reps < 1 || o.reps > 64 || o.workers < 1)
        return usage();
    if (o.write)
        return write_curves(o.write, o.trials, o.max_t, o.seed);

    char path[256];
    if (!o.curves) {
        snprintf(path, sizeof path, "/tmp/kiln-curves-%lld-%d-%llu.csv", (long long)o.trials,
                 o.max_t, (unsigned long long)o.seed);
        if (access(path, R_OK) != 0 && write_curves(path, o.trials, o.max_t, o.seed) != 0)
            return 1;
        o.curves = path;
    }
    kl_error err = {0};
    double t0 = kl_now();
    kl_curves *c = kl_curves_load(o.curves, &err);
    if (!c) {
        fprintf(stderr, "bench_sched: %s\n", err.msg);
        return 1;
    }
    printf("# curves: %s (%lld trials, read in %.3f s); ASHA eta %d, grace %d, max_t %d\n",
           o.curves, (long long)kl_curves_trials(c), kl_now() - t0, o.eta, o.grace, o.max_t);
    print_load("before");
    printf("%-8s %7s %4s %8s %9s %6s %8s %9s %9s %9s %7s %7s %8s\n", "mode", "workers", "rep",
           "trials", "epochs", "best", "value", "loop_ms", "sched_ms", "calls", "p50_us", "p99_us",
           "max_us");
    int rc = 0;
    if (o.promote)
        rc |= run_mode(&o, c, false);
    if (o.stop)
        rc |= run_mode(&o, c, true);
    print_load("after");
    kl_curves_free(c);
    return rc;
}
