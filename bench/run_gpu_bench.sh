#!/usr/bin/env bash
# run_gpu_bench.sh: kiln train on a GPU against its PyTorch twin (bench/train_torch_gpu.py, a CUDA
# build of PyTorch 2.x) on the speed goals of issue 16, with the card's cuBLAS GEMM rate and the
# GPU memory each run uses, measured in the same run. tests/gpu/check.sh runs it after its
# correctness checks; bench/RESULTS.md ("GPU training") says how to read the figures.
#
#   bench/run_gpu_bench.sh KILN OUTDIR [SECONDS]
#
# Runs, each once, kiln first then PyTorch (about 2 minutes on one H100):
#   mlp_small  bench/train/mlp_small.yaml (784-256-128-10, batch 64, Adam)    vs PyTorch eager
#   mlp_huge   bench/train/mlp_huge.yaml  (784-4096-4096-10, batch 4096, bf16) vs PyTorch autocast
#   cnn        bench/train/cnn.yaml at batch 256                               vs PyTorch eager
# GPU memory in use: the peak of nvidia-smi's memory.used (sampled every 100 ms) during a run
# less its value before the run (the CUDA context included, for both). Raw output (JSON lines,
# samples) goes to OUTDIR; OUTDIR/summary.txt has the table. PYTHON (default python3) must import
# a CUDA build of torch. SECONDS (default 600) bounds the whole: a run that would start with
# less than 20 s left is skipped and says so in runs.txt. Exits non-zero when a run failed.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
kiln=${1:?usage: run_gpu_bench.sh KILN OUTDIR [SECONDS]}
out=${2:?usage: run_gpu_bench.sh KILN OUTDIR [SECONDS]}
budget=${3:-600}
PYTHON=${PYTHON:-python3}
mkdir -p "$out"
status=0

mem_now() { nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 | head -1; }
# measure NAME CMD...: runs CMD (at most 150 s) with stdout to NAME.json and stderr to NAME.log,
# sampling the GPU's memory into NAME.mem (first line: the value before the run).
measure() {
    local name="$1" left=$((budget - SECONDS))
    shift
    if [ $left -lt 20 ]; then
        echo "$name: skipped (${left} s of the ${budget} s budget left)" >>"$out/runs.txt"
        return
    fi
    [ $left -gt 150 ] && left=150
    mem_now >"$out/$name.mem"
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 -lms 100 \
        >>"$out/$name.mem" 2>/dev/null &
    local sampler=$!
    timeout "$left" "$@" >"$out/$name.json" 2>"$out/$name.log"
    local rc=$?
    kill "$sampler" 2>/dev/null
    wait "$sampler" 2>/dev/null
    echo "$name: status $rc" >>"$out/runs.txt"
    [ $rc -eq 0 ] || status=1
}

measure gemm "$PYTHON" "$here/train_torch_gpu.py" --gemm
kj=(--no-run-dir --json --set train.device=cuda)
measure kiln-mlp_small "$kiln" train "$here/train/mlp_small.yaml" "${kj[@]}"
measure torch-mlp_small "$PYTHON" "$here/train_torch_gpu.py" --model mlp_small
measure kiln-mlp_huge "$kiln" train "$here/train/mlp_huge.yaml" "${kj[@]}"
measure torch-mlp_huge "$PYTHON" "$here/train_torch_gpu.py" --model mlp_huge --bf16
measure kiln-cnn "$kiln" train "$here/train/cnn.yaml" "${kj[@]}" --set train.batch_size=256
measure torch-cnn "$PYTHON" "$here/train_torch_gpu.py" --model cnn --batch 256

"$PYTHON" - "$out" >"$out/summary.txt" 2>&1 <<'PY'
import json, os, statistics, sys
out = sys.argv[1]
def lines(name):
    try:
        return [json.loads(l) for l in open(os.path.join(out, name + ".json")) if l.startswith("{")]
    except (OSError, ValueError):
        return []
def rate(name):
    ls = lines(name)
    done = [l for l in ls if l.get("done") and "samples_per_s" in l]  # the twin's summary
    if done:
        return done[-1]["samples_per_s"]
    eps = [l["samples_per_s"] for l in ls if "epoch" in l and l.get("samples_per_s")]
    return statistics.median(eps[1:]) if len(eps) > 1 else None
def mem(name):
    try:
        v = [float(x) for x in open(os.path.join(out, name + ".mem")) if x.strip()]
    except (OSError, ValueError):
        return None
    return max(v) - v[0] if len(v) > 1 else None
gemm = {l["gemm"]: l["tflops"] for l in lines("gemm") if "gemm" in l}
card = next((l["device"] for l in lines("gemm") if "device" in l), "?")
print("card: %s; cuBLAS GEMM (torch.matmul, 8192^3): bf16 %s TFLOP/s, fp32 %s TFLOP/s"
      % (card, gemm.get("bf16"), gemm.get("fp32")))
# GEMM FLOPs per sample of a training step: forward 2*sum(in*out), backward dW for every layer
# and dX for all but the first.
def mlp_flops(sizes):
    pairs = list(zip(sizes, sizes[1:]))
    f = sum(2 * a * b for a, b in pairs)
    return f + f + sum(2 * a * b for a, b in pairs[1:])
goals = {"mlp_small": 2.0, "mlp_huge": 1.0, "cnn": 1.2}
print("| model | kiln samples/s | PyTorch samples/s | kiln / PyTorch | goal | kiln GPU MiB | PyTorch GPU MiB |")
print("|---|---|---|---|---|---|---|")
for m in ("mlp_small", "mlp_huge", "cnn"):
    k, t = rate("kiln-" + m), rate("torch-" + m)
    ratio = "%.2fx" % (k / t) if k and t else "-"
    print("| %s | %s | %s | %s | %.1fx | %s | %s |" % (m, k, t, ratio, goals[m], mem("kiln-" + m),
                                                      mem("torch-" + m)))
k = rate("kiln-mlp_huge")
if k and gemm.get("bf16"):
    tf = k * mlp_flops([784, 4096, 4096, 10]) / 1e12
    print("mlp_huge: kiln %.1f TFLOP/s of GEMM work = %.0f%% of the bf16 GEMM rate (goal 70%%)"
          % (tf, 100 * tf / gemm["bf16"]))
PY
cat "$out/summary.txt"
exit $status
