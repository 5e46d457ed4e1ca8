#!/usr/bin/env bash
# Builds the example model repository in examples/serving/repository/: trains two Fashion-MNIST
# classifiers (an MLP and a small CNN, a few epochs each) and a tiny "department" model (a
# one-hot class to the store department that sells it), and exports each as <name>/1/model.h5
# next to the config.yaml files that declare the ensemble and the pipeline. Then serve it:
#   kiln serve --repository examples/serving/repository
# usage: examples/serving/build.sh [PATH_TO_KILN]   (default build/kiln; needs Fashion-MNIST:
#        apt-get install dataset-fashion-mnist)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
kiln="${1:-$root/build/kiln}"
[[ $kiln == /* ]] || kiln="$PWD/$kiln"
repo="$here/repository"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"

train_export() { # NAME CONFIG [export options...]
    local name="$1" config="$2"
    shift 2
    echo "== $name"
    "$kiln" train "$config" --name "$name" --quiet
    mkdir -p "$repo/$name/1"
    "$kiln" export "runs/$name/checkpoints/final.h5" -o "$repo/$name/1/model.h5" "$@" >/dev/null
    echo "   $repo/$name/1/model.h5"
}

cat >mlp.yaml <<'YAML'
model:
  layers:
    - dense: {units: 256, activation: relu}
    - dense: {units: 128, activation: relu}
data: {dataset: fashion-mnist, val_fraction: 0.1, limit: 20000}
optimizer: {name: adam, lr: 1e-3}
train: {epochs: 3, batch_size: 64, seed: 1}
YAML
cat >cnn.yaml <<'YAML'
model:
  layers:
    - conv2d: {filters: 8, kernel: 3, padding: 1, activation: relu}
    - max_pool: {kernel: 2}
    - dense: {units: 64, activation: relu}
data: {dataset: fashion-mnist, val_fraction: 0.1, limit: 20000}
optimizer: {name: adam, lr: 1e-3}
train: {epochs: 2, batch_size: 64, seed: 2}
YAML
# Department of each Fashion-MNIST class: tops (T-shirt, pullover, coat, shirt), trousers and
# dresses, footwear (sandal, sneaker, ankle boot), bags.
python3 - <<'PY'
dept = [0, 1, 0, 1, 0, 2, 0, 2, 3, 2]
with open("department.csv", "w") as f:
    f.write(",".join(f"c{k}" for k in range(10)) + ",label\n")
    for _ in range(60):
        for k in range(10):
            f.write(",".join("1" if j == k else "0" for j in range(10)) + f",{dept[k]}\n")
with open("departments.txt", "w") as f:
    f.write("tops\ntrousers and dresses\nfootwear\nbags\n")
PY
cat >department.yaml <<'YAML'
model:
  layers:
    - dense: {units: 16, activation: relu}
data: {train: {format: csv, path: department.csv}, standardize: none}
optimizer: {name: adam, lr: 1e-2}
train: {epochs: 40, batch_size: 60, seed: 3}
YAML

train_export fashion-mlp mlp.yaml
train_export fashion-cnn cnn.yaml
train_export department department.yaml --labels departments.txt --no-reference
echo "== done: kiln serve --repository $repo"
