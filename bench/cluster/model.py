#!/usr/bin/env python3
"""A scaling model of kiln's data-parallel step, fitted to the simulated cluster's measurements.

Input: the rows bench/cluster/run_allreduce.sh writes (profile, nodes, scale, round, way, median
ms, min ms, max ms, load before, load after). For each link profile the ring all-reduce model

    T(way, N) = alpha * 2 (N - 1) * calls(way) + (2 (N - 1) / N) * S / B

(calls: 161 per-tensor, the buckets' count, or 1; S: ResNet-50's 102.2 MB of gradients) is fitted
by least squares (of relative errors) to the medians over rounds of the measured points (alpha:
the effective cost of one ring step, latency plus software plus, on a loaded 2-core machine,
waiting for a core; B: the effective bandwidth), and its residuals are printed. The step time at
N nodes is then compute + (1 - hidden) * T(bucketed, N), and the scaling efficiency compute /
step time, for N = 2 .. 512, twice: with the fitted alpha ("as measured": this machine's), and
with alpha = the profile's configured one-way latency ("latency-bound": what an idle cluster
whose software cost nothing would give; B the fitted one, at most the configured rate). Next to
Horovod's published 90%
(Sergeev and Del Balso, 2018: Inception V3 and ResNet-101 on 512 GPUs over 25 Gbit/s RoCE).
compute and hidden are inputs, not measurements of this machine: --compute-ms (default 200, about
a V100's fp32 step of ResNet-50 at batch 64) and --hidden (default 0: nothing hidden, the
pessimistic end). Pure Python (no numpy on these machines); writes an SVG plot.

    bench/cluster/model.py RESULTS.tsv [--svg OUT.svg] [--compute-ms C] [--hidden H]
"""
import argparse
import math
import statistics
import sys

GRAD_BYTES = 25557032 * 4
CALLS = {"per-tensor": 161, "concatenated": 1}
PROFILES = {  # name: (rate bit/s, one-way latency s) as configured
    "25g5us": (25e9, 5e-6),
    "10g50us": (10e9, 50e-6),
    "1g200us": (1e9, 200e-6),
}
NODES = [2, 4, 8, 16, 32, 64, 128, 256, 512]


def load(path):
    pts = {}
    for line in open(path):
        f = line.rstrip("\n").split("\t")
        if len(f) < 10 or f[0] not in PROFILES:
            continue
        pts.setdefault((f[0], int(f[1]), f[4]), []).append(float(f[5]) / 1e3)
    return {k: statistics.median(v) for k, v in pts.items()}, pts


def fit(points, buckets):
    """Least squares of the relative errors for (alpha, 1/B) over [(way, N, seconds)]."""
    sxx = sxy = syy = sx = sy = 0.0
    for way, n, t in points:
        x = 2 * (n - 1) * (buckets if way == "bucketed" else CALLS[way]) / t
        y = 2 * (n - 1) / n * GRAD_BYTES / t
        t = 1.0
        sxx, sxy, syy = sxx + x * x, sxy + x * y, syy + y * y
        sx, sy = sx + x * t, sy + y * t
    det = sxx * syy - sxy * sxy
    if abs(det) < 1e-30:
        sys.exit("model.py: the points do not determine both parameters")
    alpha = (sx * syy - sy * sxy) / det
    inv_b = (sxx * sy - sxy * sx) / det
    return alpha, 1 / inv_b if inv_b > 0 else float("inf")


def ring(alpha, bw, calls, n):
    return alpha * 2 * (n - 1) * calls + 2 * (n - 1) / n * GRAD_BYTES / bw


def svg(curves, measured, out, compute_ms, hidden):
    w, h, l, r, t, b = 640, 400, 60, 150, 30, 50
    xs = lambda n: l + (math.log2(n) - 1) / (math.log2(512) - 1) * (w - l - r)
    ys = lambda e: t + (1 - e) * (h - t - b)
    colours = {"25g5us": "#1b9e77", "10g50us": "#d95f02", "1g200us": "#7570b3"}
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
         'font-family="sans-serif" font-size="11">',
         f'<rect width="{w}" height="{h}" fill="white"/>',
         f'<text x="{l}" y="18" font-size="13">kiln data-parallel ResNet-50: modelled scaling '
         f'efficiency (compute {compute_ms:g} ms/step, {100 * hidden:.0f}% hidden)</text>']
    for e in (0, 0.2, 0.4, 0.6, 0.8, 1.0):
        o.append(f'<line x1="{l}" x2="{w - r}" y1="{ys(e):.1f}" y2="{ys(e):.1f}" stroke="#ddd"/>')
        o.append(f'<text x="{l - 6}" y="{ys(e) + 4:.1f}" text-anchor="end">{100 * e:.0f}%</text>')
    for n in NODES:
        o.append(f'<text x="{xs(n):.1f}" y="{h - b + 16}" text-anchor="middle">{n}</text>')
    o.append(f'<text x="{(l + w - r) / 2}" y="{h - 12}" text-anchor="middle">nodes</text>')
    o.append(f'<line x1="{l}" x2="{w - r}" y1="{ys(0.9):.1f}" y2="{ys(0.9):.1f}" '
             'stroke="black" stroke-dasharray="5,4"/>')
    o.append(f'<text x="{w - r + 6}" y="{ys(0.9) + 4:.1f}">Horovod, 512 GPUs: 90%</text>')
    for k, (p, (fitted, bound)) in enumerate(curves.items()):
        c = colours[p]
        for pts, dash in ((fitted, ""), (bound, ' stroke-dasharray="6,3"')):
            path = " ".join(f"{'M' if i == 0 else 'L'}{xs(n):.1f},{ys(e):.1f}"
                            for i, (n, e) in enumerate(pts))
            o.append(f'<path d="{path}" fill="none" stroke="{c}" stroke-width="2"{dash}/>')
        o.append(f'<text x="{w - r + 6}" y="{t + 30 + 16 * k}" fill="{c}">{p}</text>')
        for n, e in measured.get(p, []):
            o.append(f'<circle cx="{xs(n):.1f}" cy="{ys(e):.1f}" r="4" fill="{c}"/>')
    o.append(f'<text x="{w - r + 6}" y="{t + 90}">solid: as measured</text>')
    o.append(f'<text x="{w - r + 6}" y="{t + 106}">dashed: latency-bound</text>')
    o.append(f'<text x="{w - r + 6}" y="{t + 122}">dots: measured points</text>')
    o.append("</svg>")
    open(out, "w").write("\n".join(o) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results")
    ap.add_argument("--svg")
    ap.add_argument("--compute-ms", type=float, default=200.0)
    ap.add_argument("--hidden", type=float, default=0.0)
    ap.add_argument("--buckets", type=int, default=4,
                    help="bucketed calls (bench_allreduce's count at 25 MiB: 4)")
    a = ap.parse_args()
    if not (a.compute_ms > 0 and 0 <= a.hidden < 1):
        sys.exit("model.py: --compute-ms must be > 0 and --hidden in [0, 1)")
    med, raw = load(a.results)
    curves, measured = {}, {}
    comp = a.compute_ms / 1e3
    for p, (rate, lat) in PROFILES.items():
        pts = [(way, n, t) for (pp, n, way), t in med.items() if pp == p]
        if len({n for _, n, _ in pts}) < 1 or len(pts) < 2:
            continue
        alpha, bw = fit(pts, a.buckets)
        print(f"{p}: fitted alpha {1e6 * alpha:.0f} us per ring step (configured one-way "
              f"latency {1e6 * lat:.0f} us), bandwidth {8 * bw / 1e9:.2f} Gbit/s "
              f"(configured {rate / 1e9:g})")
        for way, n, t in sorted(pts):
            calls = a.buckets if way == "bucketed" else CALLS[way]
            m = ring(alpha, bw, calls, n)
            spread = raw[(p, n, way)]
            print(f"  {n} nodes {way:13s} measured {1e3 * t:8.1f} ms (rounds {min(spread) * 1e3:.0f}"
                  f"-{max(spread) * 1e3:.0f}), model {1e3 * m:8.1f} ms ({100 * (m / t - 1):+.0f}%)")
        eff = [(n, comp / (comp + (1 - a.hidden) * ring(alpha, bw, a.buckets, n))) for n in NODES]
        bw_l = min(bw, rate / 8)
        eff_l = [(n, comp / (comp + (1 - a.hidden) * ring(lat, bw_l, a.buckets, n)))
                 for n in NODES]
        curves[p] = (eff, eff_l)
        measured[p] = [(n, comp / (comp + (1 - a.hidden) * t)) for way, n, t in pts
                       if way == "bucketed"]
        for label, series in (("as measured", eff), ("latency-bound", eff_l)):
            over = [n for n, e in series if e >= 0.9]
            print(f"  efficiency, {label}: " + ", ".join(f"{n}: {100 * e:.0f}%" for n, e in series)
                  + f"; >= 90% up to {max(over) if over else 'no'} nodes")
    if a.svg and curves:
        svg(curves, measured, a.svg, a.compute_ms, a.hidden)
        print(f"plot: {a.svg}")


if __name__ == "__main__":
    main()
