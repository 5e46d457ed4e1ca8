#!/usr/bin/env bash
# The shortest way to see kiln work: installs the Debian packages that are missing (Fashion-MNIST
# included), builds a Release kiln in build/, then runs kiln's main job on the bundled default:
# a short ASHA sweep over the Fashion-MNIST MLP (examples/fashion-mnist/sweep.yaml) under mpirun
# (rank 0 coordinates, the other ranks train trials), exports the best trial's model, and scores
# the Fashion-MNIST test set with it, then serves it with `kiln serve` and asks for one
# prediction over HTTP (Open Inference Protocol v2).
# usage: examples/quickstart.sh          (KILN_CMAKE_ARGS adds configure arguments;
#                                          QUICKSTART_RANKS sets the rank count, default 3)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

echo "== deps"
scripts/install-deps.sh --with-data

echo "== build (Release, in build/)"
read -r -a extra_args <<<"${KILN_CMAKE_ARGS:-}"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DKILN_BUILD_TESTS=OFF "${extra_args[@]}"
cmake --build build -j"$(nproc 2>/dev/null || echo 2)"

echo "== kiln --version"
build/kiln --version

# mpirun refuses root unless told; more ranks than cores need --oversubscribe.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
ranks="${QUICKSTART_RANKS:-3}"
sweep_dir="sweeps/quickstart-$(date +%Y%m%d-%H%M%S)"

echo "== mpirun -n $ranks kiln tune examples/fashion-mnist/sweep.yaml"
mpirun -n "$ranks" --oversubscribe build/kiln tune examples/fashion-mnist/sweep.yaml \
    --dir "$sweep_dir"

echo "== kiln tune report $sweep_dir"
build/kiln tune report "$sweep_dir"

echo "== kiln export (the best trial)"
best_ckpt="$(sed -n 's/.*"checkpoint": "\(.*\)".*/\1/p' "$sweep_dir/best.json")"
build/kiln export "$best_ckpt" -o "$sweep_dir/model.h5"

echo "== kiln predict (the Fashion-MNIST test set)"
data=/usr/share/datasets/fashion-mnist
build/kiln predict "$sweep_dir/model.h5" --input "$data/t10k-images-idx3-ubyte.gz" \
    --labels "$data/t10k-labels-idx1-ubyte.gz" --output "$sweep_dir/predictions.csv"
echo "the first prediction:"
sed -n 2p "$sweep_dir/predictions.csv" | cut -d, -f1-2

echo "== kiln serve (one prediction over HTTP)"
build/kiln serve "$sweep_dir/model.h5" --name fashion --port 0 2>"$sweep_dir/serve.log" &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
port=""
for _ in $(seq 1 100); do
    port="$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$sweep_dir/serve.log")"
    [ -n "$port" ] && break
    kill -0 "$server" 2>/dev/null || { cat "$sweep_dir/serve.log"; exit 1; }
    sleep 0.1
done
cat "$sweep_dir/serve.log"
# The first test image as an inference request: its 784 pixels scaled to [0, 1], as kiln's IDX
# reader gives them to training (the model standardises them itself).
python3 - "$data/t10k-images-idx3-ubyte.gz" >"$sweep_dir/request.json" <<'PY'
import gzip, json, sys
with gzip.open(sys.argv[1]) as f:
    pixels = [b / 255 for b in f.read(16 + 784)[16:]]
print(json.dumps({"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32",
                              "data": pixels}], "outputs": [{"name": "label_name"}]}))
PY
echo "POST http://127.0.0.1:$port/v2/models/fashion/infer (the first test image):"
curl -sS --fail-with-body -H 'Content-Type: application/json' \
    --data-binary @"$sweep_dir/request.json" "http://127.0.0.1:$port/v2/models/fashion/infer"
echo
kill -TERM "$server"
wait "$server"

echo "== done: $sweep_dir (results.csv, best.yaml, report.html, model.h5, predictions.csv)"
cat <<EOF

kiln is built in $root/build/kiln; nothing is installed yet. To run it as \`kiln\`:
  cmake --install $root/build
(into /usr/local: bin/kiln, and libkiln with its headers, a CMake package and kiln.pc for
other C projects), or: export PATH="$root/build:\$PATH". Then, for example:
  kiln train $root/examples/fashion-mnist/mlp.yaml
  kiln train $sweep_dir/best.yaml --name best    (the best trial's config, trained again)
EOF
