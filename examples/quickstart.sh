#!/usr/bin/env bash
# The shortest way to see kiln work: installs the Debian packages that are missing (Fashion-MNIST
# included), builds a Release kiln in build/, then runs kiln's main job on the bundled default:
# a short ASHA sweep over the Fashion-MNIST MLP (examples/fashion-mnist/sweep.yaml) under mpirun
# (rank 0 coordinates, the other ranks train trials), exports the best trial's model, and scores
# the Fashion-MNIST test set with it. Serving over HTTP comes with `kiln serve` (planned).
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

echo "== done: $sweep_dir (results.csv, best.yaml, report.html, model.h5, predictions.csv)"
