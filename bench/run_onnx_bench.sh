#!/usr/bin/env bash
# run_onnx_bench.sh: ONNX models in kiln, against kiln's own model files and against ONNX Runtime
# (issue 17's speed goals). Figures: bench/RESULTS.md ("ONNX models: serving and batch scoring").
#
#   1. Serving. The Fashion-MNIST MLP (examples/fashion-mnist/mlp.yaml, 1 epoch on 10000 images)
#      exported twice by `kiln export`, as model.h5 and model.onnx, each served alone by
#      `kiln serve` with the same settings; wrk POSTs the same JSON request (784 floats) on
#      CONNS connections. Goal: the ONNX model's requests/s >= 0.95 x the model file's.
#   2. Batch scoring. `kiln predict model.onnx` on the 10000 Fashion-MNIST test images at batch
#      256 with 2 threads (OpenBLAS's), against ONNX Runtime for node (onnxruntime-node from the
#      npm registry, intra-op threads 2) running the same file on the same images at batch 256,
#      for the MLP and the CNN of examples/fashion-mnist (1 epoch on 6000 images). Both time the
#      scoring alone (not reading the file). Goals: MLP >= 1.0x, CNN >= 0.8x ONNX Runtime.
#
# Every configuration runs REPS times, alternating, and the median counts.
#
#   bench/run_onnx_bench.sh [--duration S] [--reps R] [--conns N] [--out DIR]
#
# Environment: KILN (default /tmp/build-rel/kiln, a Release build), WRK (default wrk; installed by
# scripts/install-deps.sh --bench), PYTHON (default /usr/bin/python3), DATA (default
# /usr/share/datasets/fashion-mnist), NODE (default node), ORT (a folder holding
# node_modules/onnxruntime-node; default: installed under the output folder with npm).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
KILN=${KILN:-/tmp/build-rel/kiln}
WRK=${WRK:-wrk}
PYTHON=${PYTHON:-/usr/bin/python3}
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
NODE=${NODE:-node}
duration=10
reps=3
conns=64
out=""
while [ $# -gt 0 ]; do
    case $1 in
    --duration) duration=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --conns) conns=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h | --help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run_onnx_bench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ -x "$KILN" ] || { echo "run_onnx_bench.sh: $KILN not found; build a Release kiln" >&2; exit 2; }
command -v "$WRK" >/dev/null || { echo "run_onnx_bench.sh: wrk not found (scripts/install-deps.sh --bench)" >&2; exit 2; }
[ -r "$DATA/t10k-images-idx3-ubyte.gz" ] ||
    { echo "run_onnx_bench.sh: no Fashion-MNIST in $DATA (apt-get install dataset-fashion-mnist)" >&2; exit 2; }
if [ -z "$out" ]; then
    out=$(mktemp -d)
    trap 'rm -rf "$out"' EXIT
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

# ---- models ----
train_export() { # NAME CONFIG LIMIT: runs/NAME (trained anew), then NAME.h5 and NAME.onnx
    rm -rf "${out:?}/runs/$1"
    (cd "$out" && "$KILN" train "$2" --quiet --set train.epochs=1 --set "data.limit=$3" \
        --set schedule.warmup_steps=0 --set "name=$1" --set train.threads=1) >"$out/$1.train.log" 2>&1 ||
        { cat "$out/$1.train.log" >&2; echo "run_onnx_bench.sh: training $1 failed" >&2; exit 1; }
    for ext in h5 onnx; do
        "$KILN" export "$out/runs/$1/checkpoints/final.h5" -o "$out/$1.$ext" >"$out/$1.$ext.log" 2>&1 ||
            { cat "$out/$1.$ext.log" >&2; echo "run_onnx_bench.sh: exporting $1.$ext failed" >&2; exit 1; }
    done
}
echo "# training and exporting the MLP and the CNN in $out"
train_export mlp "$root/examples/fashion-mnist/mlp.yaml" 10000
train_export cnn "$root/examples/fashion-mnist/cnn.yaml" 6000

# ---- 1. serving ----
"$PYTHON" "$here/serve/make_bodies.py" "$DATA/t10k-images-idx3-ubyte.gz" 0 "$out" >/dev/null
serve_rps() { # MODEL: requests/s of one wrk run against kiln serve MODEL
    "$KILN" serve "$1" --name m --port 0 2>"$out/serve.log" &
    local pid=$! port="" _
    for _ in $(seq 1 200); do
        port=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$out/serve.log")
        [ -n "$port" ] && break
        sleep 0.05
    done
    if [ -z "$port" ]; then
        kill "$pid" 2>/dev/null || true
        cat "$out/serve.log" >&2
        echo "run_onnx_bench.sh: kiln serve $1 did not start" >&2
        exit 1
    fi
    local url=http://127.0.0.1:$port/v2/models/m/infer
    "$WRK" -t2 -c"$conns" -d2s -s "$here/serve/post_json.lua" "$url" -- "$out/request.json" >/dev/null
    "$WRK" -t2 -c"$conns" -d"${duration}s" -s "$here/serve/post_json.lua" "$url" -- "$out/request.json" \
        >"$out/wrk.txt"
    kill -TERM "$pid"
    wait "$pid" || true
    if grep -q "Non-2xx" "$out/wrk.txt"; then
        cat "$out/wrk.txt" >&2
        echo "run_onnx_bench.sh: kiln serve $1 answered errors" >&2
        exit 1
    fi
    awk '/^Requests\/sec:/ {print $2}' "$out/wrk.txt"
}
: >"$out/serve.tsv"
for _ in $(seq 1 "$reps"); do
    for ext in h5 onnx; do
        printf '%s\t%s\n' "$ext" "$(serve_rps "$out/mlp.$ext")" | tee -a "$out/serve.tsv"
    done
done

# ---- 2. batch scoring ----
"$PYTHON" - "$DATA/t10k-images-idx3-ubyte.gz" "$out/x.f32" <<'EOF'
import gzip, sys
import numpy as np
raw = gzip.open(sys.argv[1]).read()
(np.frombuffer(raw, np.uint8, offset=16).astype(np.float32) / 255).tofile(sys.argv[2])  # as kiln's IDX loader
EOF
if [ -z "${ORT:-}" ]; then
    ORT="$out/ort"
    if [ ! -d "$ORT/node_modules/onnxruntime-node" ]; then
        mkdir -p "$ORT"
        npm install --ignore-scripts --no-audit --no-fund --prefix "$ORT" onnxruntime-node \
            >"$out/npm.log" 2>&1 || { cat "$out/npm.log" >&2; echo "run_onnx_bench.sh: npm failed" >&2; exit 1; }
    fi
fi
cat >"$out/ort_time.js" <<'EOF'
// Times ONNX Runtime's session.run over the images at a batch size: samples/s of the scoring.
const ort = require('onnxruntime-node');
const fs = require('fs');
(async () => {
  const [model, xfile, dims, batch] = process.argv.slice(2);
  const buf = fs.readFileSync(xfile);
  const x = new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4);
  const per = dims.split(',').map(Number);
  const feat = per.reduce((a, b) => a * b, 1), n = x.length / feat, b = Number(batch);
  const s = await ort.InferenceSession.create(model, {intraOpNumThreads: 2, interOpNumThreads: 1});
  const run = async (i) => {
    const m = Math.min(b, n - i);
    const t = new ort.Tensor('float32', x.subarray(i * feat, (i + m) * feat), [m, ...per]);
    await s.run({[s.inputNames[0]]: t});
  };
  await run(0); // warm-up
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i += b) await run(i);
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log((n / secs).toFixed(1));
})().catch(e => { console.error(e.message); process.exit(1); });
EOF
kiln_sps() { # MODEL: samples/s kiln predict reports for its scoring
    OPENBLAS_NUM_THREADS=2 "$KILN" predict "$1" --input "$DATA/t10k-images-idx3-ubyte.gz" \
        --batch-size 256 -o "$out/pred.csv" 2>&1 | sed -n 's/.*s (\([0-9.]*\) samples\/s.*/\1/p'
}
: >"$out/predict.tsv"
for _ in $(seq 1 "$reps"); do
    for model in mlp cnn; do
        # the per-sample input shape the exported graph declares (after its batch axis)
        dims=$("$PYTHON" -c 'import sys, onnx
d = onnx.load(sys.argv[1]).graph.input[0].type.tensor_type.shape.dim[1:]
print(",".join(str(x.dim_value) for x in d))' "$out/$model.onnx")
        k=$(kiln_sps "$out/$model.onnx")
        o=$(NODE_PATH="$ORT/node_modules" "$NODE" "$out/ort_time.js" "$out/$model.onnx" "$out/x.f32" "$dims" 256)
        printf '%s\tkiln\t%s\n%s\tort\t%s\n' $model "$k" $model "$o" | tee -a "$out/predict.tsv"
    done
done

# ---- table ----
h5=$(awk '$1 == "h5" {print $2}' "$out/serve.tsv" | median)
ox=$(awk '$1 == "onnx" {print $2}' "$out/serve.tsv" | median)
echo
echo "# kiln: $KILN, $("$KILN" --version 2>/dev/null | head -1); $reps reps, median; $(nproc) cores"
echo "| what | kiln | peer | ratio | goal |"
echo "|---|---|---|---|---|"
awk -v a="$ox" -v b="$h5" 'BEGIN {printf "| kiln serve, MLP: ONNX vs kiln model file (requests/s, %s connections) | %.0f | %.0f | %.2f | >= 0.95 |\n", "'"$conns"'", a, b, a / b}'
for model in mlp cnn; do
    k=$(awk -v m=$model '$1 == m && $2 == "kiln" {print $3}' "$out/predict.tsv" | median)
    o=$(awk -v m=$model '$1 == m && $2 == "ort" {print $3}' "$out/predict.tsv" | median)
    goal=">= 1.0"
    [ $model = cnn ] && goal=">= 0.8"
    awk -v k="$k" -v o="$o" -v m="$model" -v g="$goal" \
        'BEGIN {printf "| kiln predict %s.onnx vs ONNX Runtime (samples/s, batch 256, 2 threads) | %.0f | %.0f | %.2f | %s |\n", toupper(m), k, o, k / o, g}'
done
