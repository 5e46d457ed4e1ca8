#!/usr/bin/env python3
"""The GPU twins of kiln train's speed benchmarks (issue 16, "Speed"), in PyTorch 2.x on CUDA:
the models of bench/train/{mlp_small,cnn,mlp_huge}.yaml (built as bench/train_torch.py builds
them; mlp_huge is 784-4096-4096-10), the same batch, Adam (lr 1e-3, PyTorch's defaults, which are
kiln's), softmax cross-entropy, Fashion-MNIST standardised as kiln does, full batches of a fresh
shuffle each epoch. The data is on the device before timing (as the issue asks of the twin;
kiln copies each batch up from host memory, through page-locked buffers). The loss is summed on
the device and read once per epoch, as kiln reads its sums (kiln every 20 steps). --bf16 runs
forward and loss under torch.autocast(dtype=torch.bfloat16), PyTorch's mixed precision (fp32
weights, fp32 Adam state).

Prints one JSON object per epoch and a summary line {"done": true, "samples_per_s": median of the
epochs after the first (the warm-up), "max_memory_allocated": bytes, ...}. --gemm instead times
cuBLAS through torch.matmul on square bf16 (and fp32) matrices of --gemm-size and prints
{"gemm": dtype, "tflops": ...}: the card's dense GEMM rate in the same run.

usage: python3 bench/train_torch_gpu.py --model {mlp_small,mlp_huge,cnn} [--batch B] [--bf16]
                                        [--epochs E] [--limit N] [--steps S] [--device D]
       python3 bench/train_torch_gpu.py --gemm [--gemm-size N] [--device D]
--device cpu runs the same code on the CPU (a syntax and smoke check where there is no GPU)."""
import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_torch import DATA_DIR, MODELS, load_train  # noqa: E402  (same data, same builders)

BUILDERS = dict(MODELS)
BUILDERS["mlp_huge"] = (4096, lambda: nn.Sequential(
    nn.Flatten(),
    nn.Linear(784, 4096), nn.ReLU(),
    nn.Linear(4096, 4096), nn.ReLU(),
    nn.Linear(4096, 10)))


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gemm_rate(device, n, dtype, reps):
    """TFLOP/s of n x n x n products (2 n^3 FLOPs each) in dtype, after a warm-up."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    c = a @ b
    sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        c = a @ b
    sync(device)
    secs = time.perf_counter() - t0
    del c
    return 2.0 * n * n * n * reps / secs / 1e12


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=sorted(BUILDERS))
    ap.add_argument("--batch", type=int, default=0, help="the batch (default: the model's)")
    ap.add_argument("--bf16", action="store_true", help="torch.autocast to bfloat16")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--limit", type=int, default=0, help="the first N training samples (0: all)")
    ap.add_argument("--steps", type=int, default=0, help="at most S steps per epoch (0: all)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--data-dir", default=DATA_DIR)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--gemm", action="store_true", help="time cuBLAS GEMMs instead of training")
    ap.add_argument("--gemm-size", type=int, default=8192)
    ap.add_argument("--gemm-reps", type=int, default=20)
    a = ap.parse_args()
    device = torch.device(a.device)
    if a.gemm:
        for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
            print(json.dumps({"gemm": name, "n": a.gemm_size, "reps": a.gemm_reps,
                              "tflops": round(gemm_rate(device, a.gemm_size, dtype, a.gemm_reps), 3),
                              "device": torch.cuda.get_device_name(device)
                              if device.type == "cuda" else "cpu"}), flush=True)
        return
    if not a.model:
        ap.error("give --model, or --gemm")
    if a.epochs < 2:
        ap.error("--epochs must be at least 2: the first epoch is a warm-up")
    torch.manual_seed(a.seed)
    batch, build = BUILDERS[a.model]
    batch = a.batch or batch
    x, y = load_train(a.data_dir, a.limit)
    x, y = x.to(device), y.to(device)
    steps = x.shape[0] // batch
    if a.steps:
        steps = min(steps, a.steps)
    if steps < 1:
        sys.exit(f"train_torch_gpu.py: {x.shape[0]} samples make no full batch of {batch}")
    model = build().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator(device=device).manual_seed(a.seed)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model.train()
    rates = []
    for epoch in range(1, a.epochs + 1):
        sync(device)
        t0 = time.perf_counter()
        perm = torch.randperm(x.shape[0], generator=gen, device=device)
        total = torch.zeros((), device=device)
        for s in range(steps):
            idx = perm[s * batch:(s + 1) * batch]
            xb, yb = x.index_select(0, idx), y.index_select(0, idx)
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=a.bf16):
                loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            total += loss.detach().float()
        mean = total.item() / steps
        sync(device)
        secs = time.perf_counter() - t0
        rate = steps * batch / secs
        if epoch > 1:
            rates.append(rate)
        print(json.dumps({"epoch": epoch, "train_loss": round(mean, 6),
                          "samples_per_s": round(rate, 3), "seconds": round(secs, 6),
                          "warmup": epoch == 1}), flush=True)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    print(json.dumps({"done": True, "model": a.model, "batch": batch, "bf16": a.bf16,
                      "steps_per_epoch": steps, "epochs_timed": len(rates),
                      "samples_per_s": round(statistics.median(rates), 3),
                      "max_memory_allocated": peak, "torch": torch.__version__,
                      "device": torch.cuda.get_device_name(device)
                      if device.type == "cuda" else "cpu"}), flush=True)


if __name__ == "__main__":
    main()
