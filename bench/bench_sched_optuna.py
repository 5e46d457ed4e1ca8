#!/usr/bin/env python3
"""Optuna's peer of bench_sched: the same curve table driven through Optuna 3.1's
SuccessiveHalvingPruner (min_resource=1, reduction_factor=3, min_early_stopping_rate=0) with a
RandomSampler and in-memory storage, one trial at a time (n_jobs=1). Trial i follows curve i of
the table (trial.number = i): every epoch t = 1..max_t it calls trial.report(value, t) and
trial.should_prune(), and raises TrialPruned when told to; a trial that is never pruned returns
its value at max_t. Optuna's logging is set to WARNING so that no line per trial is printed.

The figure is the wall time of study.optimize (the table is read before the clock starts), plus
the latency of each should_prune call (the pruner's decision) and of report + should_prune.

    /usr/bin/python3 bench/bench_sched_optuna.py CURVES.csv [--trials N] [--max-t 81] [--suggest]

--suggest adds one trial.suggest_float per trial (a log-uniform "lr"), so that the sampler does
work as in a real sweep; kiln's simulation samples nothing.
"""
import argparse
import csv
import sys
import time


def read_curves(path, max_trials):
    """Values per trial label, in order of first appearance, indexed by t - 1."""
    curves, order = {}, []
    with open(path, newline="") as f:
        rows = csv.reader(f)
        header = next(rows)
        ti, tt, tv = header.index("trial"), header.index("t"), header.index("value")
        for row in rows:
            if not row:
                continue
            label = row[ti]
            if label not in curves:
                if len(order) == max_trials:
                    continue
                curves[label] = {}
                order.append(label)
            curves[label][int(row[tt])] = float(row[tv])
    return [[c[t] for t in range(1, len(c) + 1)] for c in (curves[l] for l in order)]


def pct(sorted_ns, p):
    """Nearest-rank percentile in microseconds."""
    k = max(0, -(-len(sorted_ns) * p // 100) - 1)
    return sorted_ns[int(k)] / 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("curves")
    ap.add_argument("--trials", type=int, default=10000)
    ap.add_argument("--max-t", type=int, default=81)
    ap.add_argument("--suggest", action="store_true")
    args = ap.parse_args()

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    curves = read_curves(args.curves, args.trials)
    n = min(args.trials, len(curves))
    if any(len(c) < args.max_t for c in curves[:n]):
        sys.exit("bench_sched_optuna: some curves have fewer than --max-t epochs")
    with open("/proc/loadavg") as f:
        print("# load average before:", f.read().strip())
    print(f"# optuna {optuna.__version__}, {n} trials, max_t {args.max_t}, "
          f"suggest={args.suggest}")

    prune_ns, step_ns = [], []
    epochs = [0]
    clock = time.perf_counter_ns

    def objective(trial):
        curve = curves[trial.number]
        if args.suggest:
            trial.suggest_float("lr", 1e-5, 1e-1, log=True)
        for t in range(1, args.max_t + 1):
            t0 = clock()
            trial.report(curve[t - 1], t)
            t1 = clock()
            prune = trial.should_prune()
            t2 = clock()
            prune_ns.append(t2 - t1)
            step_ns.append(t2 - t0)
            epochs[0] += 1
            if prune:
                raise optuna.TrialPruned()
        return curve[args.max_t - 1]

    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=0),
        pruner=optuna.pruners.SuccessiveHalvingPruner(
            min_resource=1, reduction_factor=3, min_early_stopping_rate=0),
    )
    t0 = time.perf_counter()
    study.optimize(objective, n_trials=n, n_jobs=1, gc_after_trial=False)
    wall = time.perf_counter() - t0

    states = [t.state for t in study.trials]
    done = sum(s == optuna.trial.TrialState.COMPLETE for s in states)
    pruned = sum(s == optuna.trial.TrialState.PRUNED for s in states)
    best = study.best_trial
    prune_ns.sort()
    step_ns.sort()
    with open("/proc/loadavg") as f:
        print("# load average after:", f.read().strip())
    print(f"# complete {done}, pruned {pruned}; best trial {best.number} value {best.value:.6f}")
    print(f"# should_prune p50/p99/max {pct(prune_ns, 50):.1f}/{pct(prune_ns, 99):.1f}/"
          f"{prune_ns[-1] / 1e3:.1f} us; report + should_prune p50/p99/max "
          f"{pct(step_ns, 50):.1f}/{pct(step_ns, 99):.1f}/{step_ns[-1] / 1e3:.1f} us")
    print(f"bench_sched_optuna: trials={n} epochs={epochs[0]} wall_s={wall:.3f} "
          f"per_trial_us={1e6 * wall / n:.1f} best_trial={best.number} "
          f"prune_p50_us={pct(prune_ns, 50):.1f} prune_p99_us={pct(prune_ns, 99):.1f}")


if __name__ == "__main__":
    main()
