#!/usr/bin/env python3
"""Optuna's peer of bench_tpe: Optuna 3.1's TPESampler (its defaults, seed 0) timed on the same
history. The N finished trials that bench_tpe --history wrote (parameters and value) are added to
an in-memory study with the same four distributions (a log-uniform lr, a uniform rate, an integer
units, a categorical name); then R trials are proposed and timed one by one: study.ask() and the
four suggest calls (what a user's objective pays for a proposal), each trial told its value
before the next, so the history runs from N to N + R - 1 finished trials as in bench_tpe.
Optuna's logging is set to WARNING.

    /usr/bin/python3 bench/bench_tpe_optuna.py HISTORY.csv [--reps 200]
"""
import argparse
import csv
import math
import sys
import time


def objective(lr, rate, units, name):
    """bench_tpe.c's objective: smallest at lr 10^-2.5, rate 0.3, units 400, sgd."""
    a, b, c = math.log10(lr) + 2.5, (rate - 0.3) * 3, (units - 400) / 300.0
    return a * a + b * b + c * c + (0.0 if name == "sgd" else 0.5)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("history")
    ap.add_argument("--reps", type=int, default=200)
    args = ap.parse_args()
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = {
        "lr": FloatDistribution(1e-5, 1.0, log=True),
        "rate": FloatDistribution(0.0, 0.9),
        "units": IntDistribution(16, 1024),
        "name": CategoricalDistribution(["adam", "sgd", "adamw"]),
    }
    trials = []
    with open(args.history, newline="") as f:
        for row in csv.DictReader(f):
            params = {"lr": float(row["lr"]), "rate": float(row["rate"]),
                      "units": int(row["units"]), "name": row["name"]}
            trials.append(optuna.trial.create_trial(params=params, distributions=dists,
                                                    value=float(row["value"])))
    study = optuna.create_study(direction="minimize",
                                sampler=optuna.samplers.TPESampler(seed=0))
    study.add_trials(trials)
    us = []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        trial = study.ask()
        lr = trial.suggest_float("lr", 1e-5, 1.0, log=True)
        rate = trial.suggest_float("rate", 0.0, 0.9)
        units = trial.suggest_int("units", 16, 1024)
        name = trial.suggest_categorical("name", ["adam", "sgd", "adamw"])
        us.append((time.perf_counter() - t0) * 1e6)
        study.tell(trial, objective(lr, rate, units, name))
    us.sort()
    p99 = us[max(0, math.ceil(0.99 * len(us)) - 1)]
    p50 = us[len(us) // 2] if len(us) % 2 else 0.5 * (us[len(us) // 2 - 1] + us[len(us) // 2])
    print(f"Optuna {optuna.__version__} TPESampler suggest (ask + 4 suggests) at {len(trials)}.."
          f"{len(trials) + args.reps - 1} finished trials, {args.reps} proposals: "
          f"p50 {p50:.1f} us, p99 {p99:.1f} us, max {us[-1]:.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
