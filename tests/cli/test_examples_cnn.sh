#!/usr/bin/env bash
# The issue-21 examples, examples/fashion-mnist/best.yaml and sweep-cnn.yaml, as a user runs them
# but tiny: best.yaml builds the network its comments describe; the sweep, with its search space
# and layer numbers unchanged but 2 trials of 1 epoch on 200 images, runs to a best trial under
# kiln tune, and the command its comments give for training that trial on all the data reads.
# Skipped (exit 77) without Fashion-MNIST.
# usage: test_examples_cnn.sh PATH_TO_KILN
set -uo pipefail
kiln="$1"
[[ $kiln == */* && $kiln != /* ]] && kiln="$PWD/$kiln"
examples="$(cd "$(dirname "$0")/../../examples" && pwd)"
fm=/usr/share/datasets/fashion-mnist
# shellcheck source=../skip.sh
source "$(dirname "${BASH_SOURCE[0]}")/../skip.sh"
[[ -e $fm/train-images-idx3-ubyte.gz ]] ||
    skip_missing test_examples_cnn "Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)"
# shellcheck source=expect.sh
source "$(dirname "${BASH_SOURCE[0]}")/expect.sh"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1
out="$tmp/out"

best="$examples/fashion-mnist/best.yaml"
sweep="$examples/fashion-mnist/sweep-cnn.yaml"

# The network of best.yaml's comments: 0.43M parameters, 30.1M FLOPs a sample, and the layers
# the sweep's parameters name (0, 4, 7, 11 convolutions, 15 dense, 16 its dropout).
expect 0 '^total: 427626 parameters \(1.63 MiB\), 30.10M FLOPs per sample forward' -- \
    train "$best" --summary
expect 0 '^layers.11 +conv2d +\[128, 7, 7\]' -- train "$best" --summary
expect 0 '^layers.16 +dropout +\[256\]' -- train "$best" --summary
expect 0 '^  name: onecycle$' -- train "$best" --print-config

# The sweep, small: the base without the test set (one trial's test pass would cost more than
# its training here), batches of 20 so that 180 images are 9 steps (one-cycle needs a rise).
sed "s|^  dataset: fashion-mnist$|  train: {format: idx, path: $fm/train-images-idx3-ubyte.gz, labels: $fm/train-labels-idx1-ubyte.gz}|" \
    "$best" >best-small.yaml
check "best-small.yaml has no test set" grep -q '^  train: {format: idx' best-small.yaml
sed -e "s|^base: best.yaml .*|base: $tmp/best-small.yaml|" -e 's/^run_cap: 27$/run_cap: 2/' \
    -e 's/^    value: 20000$/    value: 200/' -e 's/^  max_t: 9 .*/  max_t: 1/' \
    -e 's/^parameters:$/parameters:\n  train.batch_size: {value: 20}/' "$sweep" >sweep.yaml
check "sweep.yaml was made small" test "$(grep -cE '^(run_cap: 2|    value: 200|  max_t: 1|  train.batch_size: \{value: 20\})$' sweep.yaml)" -eq 4
expect 0 'best: trial' -- tune sweep.yaml --dir sweeps/cnn --plain
check "the sweep wrote best.yaml" test -s sweeps/cnn/best.yaml
check "both trials are done" test "$(grep -c '^[01],done,' sweeps/cnn/results.csv)" -eq 2
# The command that trains the best trial on all the data reads (printed, not run).
expect 0 '^  limit: 0$' -- train sweeps/cnn/best.yaml --set data.limit=0 \
    --set data.val_fraction=0 --set train.epochs=18 --print-config
expect 0 '^  epochs: 18$' -- train sweeps/cnn/best.yaml --set data.limit=0 \
    --set data.val_fraction=0 --set train.epochs=18 --print-config

echo "test_examples_cnn: $passed passed, $failed failed"
((failed == 0))
