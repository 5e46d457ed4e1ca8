#!/usr/bin/env python3
"""Writes N synthetic run folders (run.json as kiln's recorder writes it: docs/formats.md) under a
runs root, for timing `kiln runs list` on many runs (bench/run_track_bench.sh).

Each run has the ~45 flattened params of a real MLP config (learning rate, batch size and width
drawn at random), final and best metrics and a start time; a tenth are trials of sweeps
(<root>/sweep-K/trials/trial-NNNN) as kiln tune lays them out.

usage: gen_runs.py ROOT N [--seed S]
"""
import json
import os
import random
import sys


def params(rng, i):
    p = {
        "checkpoint.every": None, "checkpoint.keep_last": 3, "data.classes": 0,
        "data.crop_padding": 0, "data.dataset": "fashion-mnist", "data.dir": None,
        "data.flip": False, "data.lazy": False, "data.limit": 0, "data.standardize": "global",
        "data.task": "classification", "data.val_fraction": 0.1, "dist.bucket_mb": 25,
        "dist.overlap": True, "dist.timeout": 300, "model.layers.0.activation": "relu",
        "model.layers.0.bias": True, "model.layers.0.type": "dense",
        "model.layers.0.units": rng.choice([64, 128, 256, 512]),
        "model.layers.1.type": "dropout", "model.layers.1.rate": round(rng.random() * 0.5, 3),
        "name": f"run-{i:05d}", "optimizer.beta1": 0.9, "optimizer.beta2": 0.999,
        "optimizer.eps": 1e-8, "optimizer.lr": 10 ** rng.uniform(-5, -1),
        "optimizer.name": rng.choice(["adam", "adamw", "sgd"]), "optimizer.weight_decay": 0,
        "runs_dir": "runs", "schedule.name": "cosine", "schedule.warmup_steps": 0,
        "train.accumulate": 1, "train.batch_size": rng.choice([32, 64, 128, 256]),
        "train.clip_norm": 0, "train.early_stop.metric": "val_loss",
        "train.early_stop.min_delta": 0, "train.early_stop.patience": 0,
        "train.epochs": rng.choice([5, 10, 20]), "train.eval_every": 1,
        "train.label_smoothing": 0, "train.seed": rng.randrange(1000), "train.threads": 0,
    }
    return p


def record(rng, i, kind, sweep=None, trial=-1):
    acc = rng.uniform(0.5, 0.92)
    loss = rng.uniform(0.2, 1.5)
    final = {"epoch": 10, "step": 8440, "train_loss": loss * 0.9, "train_accuracy": acc + 0.03,
             "val_loss": loss, "val_accuracy": acc}
    best = {k: v for k, v in final.items() if k not in ("epoch", "step")}
    best["val_accuracy"] = acc + 0.01
    return {
        "format": "kiln-run", "format_version": 1, "kind": kind, "name": f"run-{i:05d}",
        "status": rng.choice(["finished"] * 8 + ["failed", "killed"]),
        "exit_reason": "trained 10 epochs", "attempts": 1,
        "start": f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00Z",
        "end": f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:30Z",
        "params": params(rng, i),
        "metrics": {"final": final, "best": best},
        "system": {"samples_per_s": rng.uniform(1e4, 5e4), "peak_rss_bytes": 300 << 20,
                   "cpu_seconds": 60.0, "wall_seconds": 30.0},
        "provenance": {"kiln_version": "0.1.0", "host": "bench", "ranks": 1,
                       "slurm_job_id": None, "pid": 1, "config": "/bench/mlp.yaml",
                       "git": {"available": True, "commit": "0" * 40, "dirty": False}},
        "data": [], "tags": {"batch": str(i % 10)},
        "lineage": {"sweep": sweep, "trial": trial} if sweep else {},
    }


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    root, n = sys.argv[1], int(sys.argv[2])
    seed = int(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[3] == "--seed" else 0
    rng = random.Random(seed)
    os.makedirs(root, exist_ok=True)
    for i in range(n):
        if i % 10 == 9:  # a trial of one of the sweeps
            sweep = f"sweep-{i // 1000}"
            d = os.path.join(root, sweep, "trials", f"trial-{i:04d}")
            doc = record(rng, i, "trial", os.path.abspath(os.path.join(root, sweep)), i)
        else:
            d = os.path.join(root, f"run-{i:05d}")
            doc = record(rng, i, "train")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "run.json"), "w") as f:
            json.dump(doc, f, indent=2, sort_keys=True)


main()
