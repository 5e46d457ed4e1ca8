/* kiln tune: runs or resumes a sweep (tune/coord.c does the work) under mpirun, srun or alone;
 * parses the command line, catches the stop signals and maps the outcome to an exit status. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "kiln/launch.h"
#include "kiln/simulate.h"
#include "kiln/stop.h"
#include "kiln/sweep.h"
#include "kiln/train.h"
#include "kiln/tune.h"
#include "kiln/tune_report.h"

static const char tune_help[] =
    "usage: kiln tune SWEEP.yaml [options]\n"
    "       kiln tune --resume DIR [options]\n"
    "       kiln tune report DIR [-o FILE]\n"
    "       kiln tune --simulate CURVES.csv SWEEP.yaml [--workers N] [--trials-csv FILE]\n"
    "                 [--target VALUE] [--seed S]\n"
    "\n"
    "Runs a hyperparameter sweep (docs/sweep.md): trials of the sweep's base config with sampled\n"
    "hyperparameters, scheduled by ASHA (or hyperband, median stopping, fifo) on the metric the\n"
    "sweep names. Under mpirun or srun, rank 0 coordinates and the other ranks train trials in\n"
    "groups of ranks_per_trial; alone, the one process does both. Every event is journalled in\n"
    "the sweep folder (default sweeps/<sweep name>-<time>/), which also gets results.csv,\n"
    "best.yaml (kiln train runs it) and best.json (the best trial and its checkpoint); each trial\n"
    "trains in trials/trial-NNNN/ like a kiln train run folder.\n"
    "\n"
    "options:\n"
    "  --dir DIR      the sweep folder (must not exist yet for a new sweep)\n"
    "  --resume DIR   continue the sweep in DIR after a crash, a kill or a signal: finished\n"
    "                 results are kept, running trials restart from their last checkpoint\n"
    "  --plain        plain progress lines instead of the live table\n"
    "  --quiet        print only errors and the final result\n"
    "\n"
    "kiln tune report DIR writes DIR/report.html (or FILE): the sweep's curves, rung occupancy\n"
    "and hyperparameters as SVG plots in one self-contained page.\n"
    "\n"
    "kiln tune --simulate drives the sweep's scheduler from a table of learning curves (CSV with\n"
    "columns trial,t,value and optionally seconds) instead of training, with N virtual workers\n"
    "(default 4); trial i of the sweep (up to its run_cap) trains along curve i. When the\n"
    "table's rows also carry their configuration (a column per parameter, named by its path),\n"
    "the sweep's sampler proposes each trial and it trains along the nearest tabulated one.\n"
    "It prints the best trial, the compute used and the scheduler's own latency;\n"
    "--trials-csv writes the per-trial outcome; --target prints the compute and simulated time\n"
    "at which the sweep first reported a metric at least as good as VALUE; --seed replaces the\n"
    "sweep's seed (one sweep file, many seeds: a search method's quality over seeds).\n"
    "\n"
    "On SIGTERM, SIGINT or SIGUSR1 the running trials checkpoint and the sweep exits with status\n"
    "75; continue it with --resume. Under Slurm, a requeued job that runs the sweep again with\n"
    "the same --dir continues it by itself. See docs/tune.md.\n"
    "\n"
    "A sweep folder is locked (kiln.lock) while a coordinator runs it: a second one is refused,\n"
    "naming the holder.\n"
    "\n"
    "exit status: 0 done, 1 error (also a sweep whose every trial failed: it prints the first\n"
    "error and how many trials hit it), 2 usage error, 4 the sweep folder is in use by another\n"
    "kiln, 75 stopped by a signal\n";

static int report(int argc, char **argv)
{
    const char *dir = NULL, *out = NULL;
    for (int i = 2; i < argc; i++) {
        if ((!strcmp(argv[i], "-o") || !strcmp(argv[i], "--output")) && i + 1 < argc)
            out = argv[++i];
        else if (argv[i][0] == '-' || dir)
            return kl__cli_usage_error("tune", "report: unexpected '%s'", argv[i]);
        else
            dir = argv[i];
    }
    if (!dir)
        return kl__cli_usage_error("tune", "report: which sweep folder?");
    kl_error err = {0};
    if (kl_tune_report(dir, out, &err) != KL_OK) {
        fprintf(stderr, "kiln tune report: %s\n", err.msg);
        return 1;
    }
    printf("wrote %s%s\n", out ? out : dir, out ? "" : "/report.html");
    return 0;
}

/* seed: replaces the sweep's (its sampler's and PBT's) when not NULL. */
static int simulate(const char *curves, const char *sweep_path, int workers, const char *csv,
                    const char *target, const uint64_t *seed)
{
    kl_error err = {0};
    kl_sweep *sw = kl_sweep_load(sweep_path, &err);
    if (sw && seed)
        sw->seed = sw->sched.seed = *seed;
    kl_curves *table = sw ? kl_curves_load(curves, &err) : NULL;
    kl_sim_result r = {0};
    /* The sweep's trial count (run_cap, or the grid's size) applies as in a real sweep: trial
     * i trains along curve i, and the table's later curves are never drawn; or, when the rows
     * carry configurations, along the curve nearest to what the sampler proposed. */
    int64_t have = table ? kl_curves_trials(table) : 0, want = sw ? kl_sweep_trials(sw) : 0;
    bool tabular = table && kl_curves_tabular(table, sw);
    if (table && !tabular)
        kl_curves_keep_first(table, want);
    kl_status st = !table    ? err.status
                   : tabular ? kl_simulate_sweep(sw, table, curves, workers, &r, &err)
                             : kl_simulate_curves_within(&sw->sched, sw->maximize, table, workers,
                                                         sw->time_budget, &r, &err);
    if (st != KL_OK) {
        fprintf(stderr, "kiln tune --simulate: %s\n", err.msg);
        kl_curves_free(table);
        kl_sweep_free(sw);
        return 1;
    }
    kl_curves_free(table);
    printf("simulated %lld trials of %s on %d workers: %lld done, %lld stopped, %lld paused, "
           "%lld failed\n",
           (long long)r.ntrials, curves, r.workers, (long long)r.n_done, (long long)r.n_stopped,
           (long long)r.n_paused, (long long)r.n_failed);
    if (tabular)
        printf("(tabular: %s proposed each trial, which trained along the nearest of the table's "
               "%lld configurations)\n",
               sw->tpe.on ? "tpe"
               : sw->grid ? "the grid"
                          : "random search",
               (long long)have);
    else if (have > want)
        printf("(the sweep runs %lld trials: the first %lld of the table's %lld curves)\n",
               (long long)want, (long long)want, (long long)have);
    else if (have < want)
        printf("(the table has %lld curves: fewer than the sweep's %lld trials)\n", (long long)have,
               (long long)want);
    if (r.best_trial >= 0)
        printf("best: trial %lld (%s), %s %.6g\n", (long long)r.best_trial,
               r.trial[r.best_trial].label, sw->metric, r.best_value);
    printf("compute: %lld epochs (%.3g of training every trial fully); simulated time %.6g\n",
           (long long)r.epochs, (double)r.epochs / ((double)r.ntrials * (double)sw->sched.max_t),
           r.makespan);
    if (r.budget_hit)
        printf("time budget: %.6g of simulated time; no job started after it\n", r.budget);
    printf("scheduler: %.3f s in %lld calls; latency p50 %.2f us, p99 %.2f us, max %.2f us\n",
           r.sched_s, (long long)r.all.calls, r.all.p50_us, r.all.p99_us, r.all.max_us);
    if (target) {
        const kl_sim_point *p = kl_sim_first_reaching(&r, sw->maximize, atof(target));
        if (p)
            printf("target %s %s: reached after %lld epochs (compute %.6g, simulated time %.6g) "
                   "by trial %lld (%s) at t %d, %s %.6g\n",
                   sw->metric, target, (long long)p->epochs, p->compute, p->time,
                   (long long)p->trial, r.trial[p->trial].label, p->t, sw->metric, p->value);
        else
            printf("target %s %s: never reached (%lld epochs in all)\n", sw->metric, target,
                   (long long)r.epochs);
    }
    int rc = 0;
    if (csv) {
        FILE *f = fopen(csv, "w");
        if (!f || kl_sim_write_trials(&r, f, &err) != KL_OK) {
            fprintf(stderr, "kiln tune --simulate: cannot write %s%s%s\n", csv,
                    err.msg[0] ? ": " : "", err.msg);
            rc = 1;
        }
        if (f)
            fclose(f);
    }
    kl_sim_result_free(&r);
    kl_sweep_free(sw);
    return rc;
}

/* A requeued Slurm job (SLURM_RESTART_COUNT > 0) that runs `kiln tune SWEEP --dir DIR` again
 * finds its sweep begun in DIR and continues it, as --resume DIR would. */
static void slurm_resume(kl_tune_options *o, bool lead)
{
    char journal[PATH_MAX];
    int restarts = kl_launch_slurm().restart_count;
    if (!o->sweep || !o->dir || o->resume || restarts == 0)
        return;
    snprintf(journal, sizeof journal, "%s/journal.jsonl", o->dir);
    if (access(journal, F_OK) != 0)
        return;
    o->resume = true;
    o->sweep = NULL;
    if (lead && !o->quiet)
        fprintf(stderr, "Slurm restarted this job (%d time%s): continuing the sweep in %s\n",
                restarts, restarts == 1 ? "" : "s", o->dir);
}

int kl__cli_tune(int argc, char **argv)
{
    kl_tune_options o = {.tty = -1};
    const char *curves = NULL, *trials_csv = NULL, *target = NULL;
    int workers = 4;
    uint64_t seed = 0;
    bool have_seed = false;
    long long count;
    if (argc >= 2 && !strcmp(argv[1], "report"))
        return report(argc, argv);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(tune_help, stdout);
            return 0;
        } else if (!strcmp(a, "--dir") || !strcmp(a, "--resume")) {
            if (i + 1 >= argc)
                return kl__cli_usage_error("tune", "%s needs a folder", a);
            o.dir = argv[++i];
            o.resume = o.resume || !strcmp(a, "--resume");
        } else if (!strcmp(a, "--simulate") || !strcmp(a, "--trials-csv") ||
                   !strcmp(a, "--workers") || !strcmp(a, "--target") || !strcmp(a, "--seed")) {
            if (i + 1 >= argc)
                return kl__cli_usage_error("tune", "%s needs a value", a);
            const char *v = argv[++i];
            if (!strcmp(a, "--simulate"))
                curves = v;
            else if (!strcmp(a, "--trials-csv"))
                trials_csv = v;
            else if (!strcmp(a, "--seed")) {
                char *end;
                errno = 0;
                unsigned long long x = strtoull(v, &end, 10);
                if (end == v || *end || errno || v[0] == '-')
                    return kl__cli_usage_error("tune", "--seed needs a whole number >= 0, got '%s'",
                                               v);
                seed = x;
                have_seed = true;
            } else if (!strcmp(a, "--target")) {
                char *end;
                double x = strtod(v, &end);
                if (end == v || *end || !isfinite(x))
                    return kl__cli_usage_error("tune", "--target needs a finite number, got '%s'",
                                               v);
                target = v;
            } else if (!kl__cli_int(v, 1, INT_MAX, &count)) {
                return kl__cli_usage_error("tune", "--workers needs a count >= 1, got '%s'", v);
            } else {
                workers = (int)count;
            }
        } else if (!strcmp(a, "--plain")) {
            o.tty = 0;
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            o.quiet = true;
        } else if (a[0] == '-') {
            return kl__cli_usage_error("tune", "unknown option '%s'", a);
        } else if (o.sweep) {
            return kl__cli_usage_error("tune", "one sweep file please, got '%s' and '%s'", o.sweep,
                                       a);
        } else {
            o.sweep = a;
        }
    }
    if (curves) {
        if (!o.sweep || o.resume)
            return kl__cli_usage_error("tune", "--simulate needs the sweep file whose scheduler "
                                               "it runs: kiln tune --simulate CURVES.csv "
                                               "SWEEP.yaml");
        return simulate(curves, o.sweep, workers, trials_csv, target, have_seed ? &seed : NULL);
    }
    if (target || have_seed)
        return kl__cli_usage_error("tune",
                                   "%s goes with --simulate (a real sweep's is in its file)",
                                   target ? "--target" : "--seed");
    if (!o.sweep && !o.resume)
        return kl__cli_usage_error("tune", "which sweep? e.g. kiln tune "
                                           "examples/fashion-mnist/sweep.yaml");
    if (o.sweep && o.resume)
        return kl__cli_usage_error("tune", "--resume continues the sweep its folder names; drop "
                                           "the sweep file");
    kl_error err = {0};
    kl_comm *world = NULL;
    if (kl_comm_world(NULL, NULL, &world, &err) != KL_OK) {
        fprintf(stderr, "kiln tune: %s\n", err.msg);
        return 1;
    }
    kl_stop_catch_signals();
    bool lead = kl_comm_rank(world) == 0;
    kl_launch_check_world(kl_comm_size(world), kl_comm_rank(world), stderr);
    slurm_resume(&o, lead);
    kl_status st = kl_tune_run(&o, world, &err);
    kl_comm_free(world);
    if (st == KL_ESTOPPED) {
        if (lead)
            fprintf(stderr, "kiln tune: %s\n", err.msg);
        return 75;
    }
    if (st != KL_OK && (lead || st == KL_ECOMM))
        fprintf(stderr, "kiln tune: %s\n", err.msg);
    return st == KL_OK ? 0 : st == KL_EBUSY ? 4 : 1;
}
