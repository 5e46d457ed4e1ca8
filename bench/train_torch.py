#!/usr/bin/python3
"""The three speed-benchmark models of bench/train/*.yaml trained in PyTorch 1.13 (CPU), the peer
kiln train is held to in issue 3 ("Speed"). Same model, batch, optimizer (Adam, lr 1e-3, PyTorch's
defaults, which are kiln's), loss (softmax cross-entropy, mean over the batch), data (Fashion-MNIST
train split read from the IDX .gz files, /255 then standardised with the global mean and population
std of the training split, float32 tensors in memory) and epoch shape (a fresh shuffle each epoch,
full batches only, the remainder dropped, as kiln does).

Timing follows kiln's `samples_per_s`: the clock runs from the epoch's shuffle to the end of its last
step; each step gathers the batch from the in-memory tensor (index_select, as kiln's
kl_data_gather copies rows), then zero_grad, forward, loss, backward, optimizer step, and reads the
loss (kiln reads it too, to check it is finite). Nothing else (no evaluation) is timed. The first
epoch is the warm-up; the summary is the median samples/s of the epochs after it.

Prints one JSON object per epoch, like `kiln train --json`, and a last one with the summary:
  {"model": ..., "threads": T, "samples_per_s": median, "epochs_timed": E - 1, ...}

usage: /usr/bin/python3 bench/train_torch.py --model {mlp_small,mlp_large,cnn} [--threads T]
                                             [--epochs E] [--limit N] [--steps S]
(Debian's python3-torch, CPU; the `python3` first on PATH may not have torch.)"""
import argparse
import gzip
import json
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn as nn

DATA_DIR = "/usr/share/datasets/fashion-mnist"

# model name -> (batch size, builder). Mirrors bench/train/<name>.yaml; kiln's head (dense to the
# 10 classes) is the last Linear here.
MODELS = {
    "mlp_small": (64, lambda: nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 256), nn.ReLU(),
        nn.Linear(256, 128), nn.ReLU(),
        nn.Linear(128, 10))),
    "mlp_large": (256, lambda: nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 1024), nn.ReLU(),
        nn.Linear(1024, 1024), nn.ReLU(),
        nn.Linear(1024, 10))),
    "cnn": (64, lambda: nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 128), nn.ReLU(),
        nn.Linear(128, 10))),
}


def read_idx(path):
    """An IDX file (gzip or raw) as a numpy array of its stored shape."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        sys.exit(f"train_torch.py: {path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_train(data_dir, limit):
    """Training images (N, 1, 28, 28) float32 standardised like kiln's `standardize: global`
    (x / 255, then (x - mean) / std with the mean and population std of every training value, in
    double), and labels (N,) int64."""
    x = read_idx(os.path.join(data_dir, "train-images-idx3-ubyte.gz"))
    y = read_idx(os.path.join(data_dir, "train-labels-idx1-ubyte.gz"))
    if limit:
        x, y = x[:limit], y[:limit]
    x = x.astype(np.float32) / np.float32(255.0)
    mean = x.mean(dtype=np.float64)
    std = np.sqrt(((x.astype(np.float64) - mean) ** 2).mean())
    x = (x - np.float32(mean)) / np.float32(std)
    return (torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).reshape(-1, 1, 28, 28),
            torch.from_numpy(y.astype(np.int64)))


def train_epoch(model, opt, loss_fn, x, y, batch, steps, gen):
    """One epoch of `steps` full batches; returns (seconds, mean loss)."""
    t0 = time.perf_counter()
    perm = torch.randperm(x.shape[0], generator=gen)
    total = 0.0
    for s in range(steps):
        idx = perm[s * batch:(s + 1) * batch]
        xb, yb = x.index_select(0, idx), y.index_select(0, idx)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        total += loss.item()
    return time.perf_counter() - t0, total / steps


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, choices=sorted(MODELS))
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: default)")
    ap.add_argument("--epochs", type=int, default=3,
                    help="epochs in all, the first a warm-up (default 3, as kiln's bench configs)")
    ap.add_argument("--limit", type=int, default=0,
                    help="use the first N training samples, like kiln's data.limit (0: all)")
    ap.add_argument("--steps", type=int, default=0,
                    help="at most this many steps per epoch (0: every full batch)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--data-dir", default=DATA_DIR)
    a = ap.parse_args()
    if a.epochs < 2:
        ap.error("--epochs must be at least 2: the first epoch is a warm-up")
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    batch, build = MODELS[a.model]
    x, y = load_train(a.data_dir, a.limit)
    steps = x.shape[0] // batch
    if a.steps:
        steps = min(steps, a.steps)
    if steps < 1:
        sys.exit(f"train_torch.py: {x.shape[0]} samples make no full batch of {batch}")
    model = build()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(a.seed)
    model.train()
    rates = []
    for epoch in range(1, a.epochs + 1):
        secs, loss = train_epoch(model, opt, loss_fn, x, y, batch, steps, gen)
        rate = steps * batch / secs
        if epoch > 1:
            rates.append(rate)
        print(json.dumps({"epoch": epoch, "train_loss": round(loss, 6), "samples_per_s": round(rate, 3),
                          "seconds": round(secs, 6), "warmup": epoch == 1}), flush=True)
    print(json.dumps({"done": True, "model": a.model, "threads": torch.get_num_threads(),
                      "batch": batch, "steps_per_epoch": steps, "epochs_timed": len(rates),
                      "samples_per_s": round(statistics.median(rates), 3),
                      "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
