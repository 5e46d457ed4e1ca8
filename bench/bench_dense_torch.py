#!/usr/bin/python3
"""The dense-layer step of bench_dense.c in PyTorch (the peer users would otherwise reach for):
y = x W^T + b, loss = sum(y), backward to dX, dW and db, same sizes and timing scheme (median of
interleaved-free repetitions of at least 0.3 s). Prints one line per size in bench_dense's units.
usage: /usr/bin/python3 bench/bench_dense_torch.py [--threads N]   (Debian's python3-torch, CPU)"""
import argparse
import statistics
import time

import torch

SIZES = [(256, 784, 1024), (64, 256, 128)]


def step(x, layer):
    layer.zero_grad(set_to_none=False)
    x.grad = None
    layer(x).sum().backward()


def time_size(n, fin, fout, reps, min_rep_s):
    torch.manual_seed(1)
    layer = torch.nn.Linear(fin, fout)
    x = torch.randn(n, fin, requires_grad=True)
    for _ in range(5):
        step(x, layer)
    iters, t0 = 1, time.perf_counter()
    while True:
        t0 = time.perf_counter()
        for _ in range(iters):
            step(x, layer)
        if time.perf_counter() - t0 >= min_rep_s:
            break
        iters *= 2
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(iters):
            step(x, layer)
        times.append((time.perf_counter() - t0) / iters)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    reps, min_rep = (3, 0.05) if a.quick else (7, 0.3)
    print(f"# PyTorch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"BLAS: {torch.backends.mkldnn.is_available() and 'mkldnn available' or 'no mkldnn'}")
    for n, fin, fout in SIZES:
        t = time_size(n, fin, fout, reps, min_rep)
        gf = 6.0 * n * fin * fout / t / 1e9
        print(f"{n:4d} x {fin:4d} -> {fout:4d}  torch {t * 1e3:9.3f} ms  {gf:8.2f} GF/s")


if __name__ == "__main__":
    main()
