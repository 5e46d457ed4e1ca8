#!/usr/bin/env bash
# docs/formats.md ("Model file") is enough for a tool outside kiln, both ways:
# - a model file written by tests/cli/formats_writer.py from the doc alone, whose /config holds
#   only the model section (no data), loads in kiln predict and scores as numpy does;
# - tests/cli/formats_reader.py, a numpy reader written from the doc alone, scores the model
#   files kiln exports for every layer kind docs/config.md lists (each activation, conv2d with
#   stride and padding, both pools with padding, global_avg_pool, batchnorm on images and on
#   flat features, layernorm, dropout, flatten, nested residual blocks, a linear model, a
#   regression) as kiln predict does;
# - a checkpoint whose /optimizer/params (doctored with h5py) does not list the model's
#   parameters in the model's order is refused on resume, naming the file and the field.
# Tolerance 2e-5 on probabilities and predictions: kiln computes in float32 (sums of up to 128
# products here, values of order 1, about 1e-6 apart from float64), the reader in float64.
# Skipped (exit 77) without python3-h5py or python3-yaml.
# usage: test_formats_peer.sh PATH_TO_KILN
set -uo pipefail
kiln="$1"
[[ $kiln == */* && $kiln != /* ]] && kiln="$PWD/$kiln"
here="$(cd "$(dirname "$0")" && pwd)"
py=/usr/bin/python3
tol=2e-5
# shellcheck source=../skip.sh
source "$here/../skip.sh"
"$py" -c 'import h5py, numpy, yaml' 2>/dev/null ||
    skip_missing test_formats_peer "no python3-h5py or python3-yaml (the peer reader and writer)"
# shellcheck source=expect.sh
source "$here/expect.sh"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1
out="$tmp/out"

# A model file from outside: no data section in /config, labels with a comma.
"$py" "$here/formats_writer.py" outside.h5 outside_x.h5 7
check "the writer writes a model without data in /config" \
    "$py" -c 'import h5py, sys; c = h5py.File("outside.h5")["config"][()].decode()
sys.exit("data" in c)'
expect 0 '' -- predict outside.h5 --input outside_x.h5 -o outside.csv
check "kiln predict scores the outside model as numpy does" \
    "$py" "$here/formats_reader.py" outside.h5 outside_x.h5 outside.csv "$tol"
check "its class names come from /labels" grep -q '^[0-9],"dog, or wolf",' outside.csv

# Data for kiln's own models: 2x8x8 images, 3 classes from a fixed linear rule, and 2
# regression targets; inputs far from zero-mean so that standardisation matters.
"$py" - <<'EOF'
import h5py, numpy as np
rng = np.random.default_rng(3)
x = (rng.standard_normal((96, 2, 8, 8)) * 2 + 1).astype(np.float32)
w = rng.standard_normal((3, 128))
with h5py.File("train.h5", "w") as f:
    f["x"] = x
    f["y"] = np.argmax(x.reshape(96, -1) @ w.T, axis=1).astype(np.int32)
with h5py.File("reg.h5", "w") as f:
    f["x"] = x
    f["y"] = (x.reshape(96, -1) @ w[:2].T / 10).astype(np.float32)
with h5py.File("score.h5", "w") as f:
    f["x"] = (rng.standard_normal((40, 2, 8, 8)) * 2 + 1).astype(np.float32)
EOF

# model NAME DATA_LINES LAYER_LINES: trains two epochs, exports, predicts and compares.
model() {
    local name="$1" data="$2" layers="$3"
    cat >"$name.yaml" <<EOF
name: $name
model:
  layers:
$layers
data:
$data
optimizer: {name: adam, lr: 0.01}
train: {epochs: 2, batch_size: 16, seed: 5, threads: 1}
EOF
    expect 0 '' -- train "$name.yaml"
    expect 0 '' -- export "runs/$name" -o "$name.h5" --no-reference
    expect 0 '' -- predict "$name.h5" --input score.h5 -o "$name.csv"
    check "the reader scores $name as kiln predict does" \
        "$py" "$here/formats_reader.py" "$name.h5" score.h5 "$name.csv" "$tol"
}

cls='  train: {format: hdf5, path: train.h5}
  standardize: feature'
model dense "$cls" '    - dense: {units: 8, activation: relu}
    - dense: {units: 6, bias: false, activation: leaky_relu, alpha: 0.2}
    - type: dense
      units: 5
      activation: sigmoid'
model conv "$cls" '    - conv2d: {filters: 3, kernel: 3, stride: 2, padding: 1, activation: gelu}
    - conv2d: {filters: 2, kernel: 2, bias: false, activation: tanh}
    - flatten'
model pool "$cls" '    - max_pool: {kernel: 3, stride: 2, padding: 1}
    - avg_pool: {kernel: 2, padding: 1}
    - conv2d: {filters: 3, kernel: 2, padding: 1}
    - avg_pool: {kernel: 2, stride: 1}'
model norm "$cls" '    - conv2d: {filters: 3, kernel: 3}
    - batchnorm: {momentum: 0.5}
    - layernorm: {eps: 0.001}
    - activation: leaky_relu
    - flatten:
    - batchnorm: {eps: 0.01}
    - dropout: 0.3
    - layernorm'
model residual "  train: {format: hdf5, path: train.h5}
  standardize: global" '    - conv2d: {filters: 4, kernel: 3, padding: 1}
    - residual:
        layers:
          - conv2d: {filters: 4, kernel: 3, padding: 1, activation: relu}
          - batchnorm
          - residual: {layers: [{conv2d: {filters: 4, kernel: 1}}], activation: sigmoid}
        activation: relu
    - global_avg_pool
    - residual: {layers: [{dense: {units: 4}}, {activation: gelu}]}'
model linear '  train: {format: hdf5, path: train.h5}
  standardize: none' '    []'
model regression '  train: {format: hdf5, path: reg.h5}
  task: regression
  standardize: feature' '    - dense: {units: 8, activation: tanh}'

# A checkpoint's /optimizer/params must name the model's parameters in the model's order: a
# state laid out for other parameters is refused on resume, naming the file and the field.
# doctor RUN HOW: a copy of runs/norm as runs/RUN whose /optimizer/params is changed (h5py).
doctor() {
    cp -r runs/norm "runs/$1" && "$py" - "runs/$1/checkpoints/final.h5" "$2" <<'PY'
import sys, h5py
with h5py.File(sys.argv[1], "r+") as f:
    names = [n.decode() for n in f["optimizer/params"][()]]
    if sys.argv[2] == "swap":  # batchnorm's weight and bias: the same shape, only names differ
        i = names.index("layers.1.weight")
        names[i], names[i + 1] = names[i + 1], names[i]
    elif sys.argv[2] == "drop":
        names = names[:-1]
    else:  # one string, not a list
        names = ",".join(names)
    del f["optimizer/params"]
    f.create_dataset("optimizer/params", data=names, dtype=h5py.string_dtype())
PY
}
doctor swapped swap
doctor short drop
doctor scalar join
expect 0 '' -- train norm.yaml --resume runs/norm --change train.epochs=3
want="runs/swapped/checkpoints/final.h5: /optimizer/params\\[2\\] is 'layers.1.bias' where"
want+=" the model's parameter 2 is 'layers.1.weight'"
expect 1 "$want" -- train norm.yaml --resume runs/swapped --change train.epochs=3
want="runs/short/checkpoints/final.h5: /optimizer/params names 11 parameters but the model has 12"
expect 1 "$want" -- train norm.yaml --resume runs/short --change train.epochs=3
expect 1 'runs/scalar/checkpoints/final.h5: /optimizer/params is not a list of parameter names' \
    -- train norm.yaml --resume runs/scalar --change train.epochs=3

echo "test_formats_peer: $passed passed, $failed failed"
[[ $failed == 0 ]]
