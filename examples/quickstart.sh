#!/usr/bin/env bash
# The shortest way to see kiln work: installs the Debian packages that are missing (Fashion-MNIST
# included), builds a Release kiln in build/, prints the model, and trains the Fashion-MNIST MLP
# (examples/fashion-mnist/mlp.yaml, about a minute on 2 cores), writing runs/fashion-mlp*/.
# Until kiln tune, export and serve exist, this training run is kiln's main job.
# usage: examples/quickstart.sh [kiln train options...], e.g. --set train.epochs=3
#        (KILN_CMAKE_ARGS adds configure arguments)
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

echo "== kiln train examples/fashion-mnist/mlp.yaml --summary"
build/kiln train examples/fashion-mnist/mlp.yaml --summary "$@"

echo "== kiln train examples/fashion-mnist/mlp.yaml"
build/kiln train examples/fashion-mnist/mlp.yaml "$@"
