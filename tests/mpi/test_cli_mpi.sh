#!/usr/bin/env bash
# kiln train under mpirun, from the command line: a config mistake is one message (not one per
# rank) and a non-zero exit on every rank; a batch that does not split over the ranks likewise;
# and a short 2-rank run ends with the same test metrics line shape as one rank's; a 2-rank run
# records itself once, from rank 0, naming both ranks.
# usage: test_cli_mpi.sh PATH_TO_KILN   (needs mpirun; exits 77 to skip without)
set -uo pipefail
kiln="$1"
name="test_cli_mpi"
# shellcheck source=../skip.sh
source "$(dirname "$0")/../skip.sh"
command -v mpirun >/dev/null || skip_missing "$name" "no mpirun (openmpi-bin)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fails=0
check() { # description, condition...
    local what="$1"; shift
    if "$@"; then echo "ok: $what"; else echo "FAILED: $what"; fails=$((fails + 1)); fi
}

printf 'model:\n  layers:\n    - dense: {units: 8}\ndata: {dataset: fashion-mnist}\ntrain: {epochs: 1, batch_sise: 64}\n' >bad.yaml
mpirun -n 3 --oversubscribe "$kiln" train bad.yaml --no-run-dir >out.txt 2>err.txt
rc=$?
check "a bad key exits non-zero under mpirun" test $rc -ne 0
check "the bad key is named with file:line:col" grep -q 'bad.yaml:5:.*batch_sise' err.txt
check "and printed once, not once per rank" test "$(grep -c 'batch_sise' err.txt)" -eq 1

printf 'model:\n  layers:\n    - dense: {units: 8}\ndata: {dataset: fashion-mnist}\ntrain: {epochs: 1, batch_size: 64}\n' >ok.yaml
if [ -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    mpirun -n 3 --oversubscribe "$kiln" train ok.yaml --set data.limit=640 --no-run-dir \
        >out.txt 2>err.txt
    rc=$?
    check "a batch of 64 over 3 ranks is refused" test $rc -ne 0
    check "naming train.batch_size, once" test "$(grep -c 'train.batch_size 64' err.txt)" -eq 1
    # A short 2-rank run prints its epoch and metrics lines once (rank 0's), in the shape one
    # rank's run prints them: the same line with only the numbers differing.
    "$kiln" train ok.yaml --set data.limit=640 --no-run-dir >one.txt 2>&1
    rc1=$?
    mpirun -n 2 --oversubscribe "$kiln" train ok.yaml --set data.limit=640 --no-run-dir \
        >two.txt 2>err.txt
    rc2=$?
    check "1 and 2 ranks train the short run" test $rc1 -eq 0 -a $rc2 -eq 0
    check "2 ranks print one epoch line and one metrics line" \
        test "$(grep -c '^epoch ' two.txt)" -eq 1 -a "$(grep -c '^done: ' two.txt)" -eq 1
    shape() { grep "$1" "$2" | sed 's/[0-9][0-9.]*k\{0,1\}/N/g'; }
    check "the metrics line has one rank's shape, test loss and accuracy included" \
        test -n "$(shape '^done: ' one.txt | grep 'test loss N acc N%')" \
        -a "$(shape '^done: ' one.txt)" = "$(shape '^done: ' two.txt)"
    check "the epoch line too" test "$(shape '^epoch ' one.txt)" = "$(shape '^epoch ' two.txt)"
else
    part_missing "the batch that does not split over 3 ranks (dataset-fashion-mnist)"
fi
# The run record (docs/runs.md) of a 2-rank run: written by rank 0, once, naming both ranks.
printf 'a,b,label\n' >d.csv
for i in $(seq 1 64); do echo "$((i % 7)),$((i % 5)),$((i % 2))" >>d.csv; done
printf 'model:\n  layers:\n    - dense: {units: 4}\ndata: {train: {format: csv, path: d.csv}}\ntrain: {epochs: 2, batch_size: 16}\n' >csv.yaml
mpirun -n 2 --oversubscribe "$kiln" train csv.yaml --name two -q >out.txt 2>err.txt
rc=$?
check "a 2-rank run with a run folder succeeds" test $rc -eq 0
check "its run.json says finished on 2 ranks" python3 -c '
import json; d = json.load(open("runs/two/run.json"))
assert d["status"] == "finished" and d["provenance"]["ranks"] == 2, d["status"]'
check "one record: no other rank wrote a temporary file" test -z "$(ls runs/two | grep tmp)"
if [ $fails -ne 0 ]; then
    echo "--- stderr of the last run:"; cat err.txt
    exit 1
fi
echo "$name: all passed"
