#!/usr/bin/env bash
# kiln train under mpirun, from the command line: a config mistake is one message (not one per
# rank) and a non-zero exit on every rank; a batch that does not split over the ranks likewise;
# and a short 2-rank run ends with the same test metrics line shape as one rank's; with
# dist.deterministic a run resumed on 2 ranks has the weights of 1 rank's, bit for bit; a 2-rank
# run records itself once, from rank 0, naming both ranks.
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
    # dist.deterministic across a resume: 2 epochs on 1 rank, against 1 epoch on 1 rank resumed
    # for the second on 2 ranks; batch norm and dropout on. The same bits in final.h5.
    printf 'model:\n  layers:\n    - dense: {units: 16}\n    - batchnorm: {}\n    - activation: relu\n    - dropout: {rate: 0.2}\ndata: {dataset: fashion-mnist, limit: 640, val_fraction: 0.1}\ntrain: {epochs: 2, batch_size: 64}\ndist: {deterministic: true, shards: 4}\n' >det.yaml
    "$kiln" train det.yaml --name straight -q >det1.txt 2>&1 &&
        "$kiln" train det.yaml --name split --set train.epochs=1 -q >det2.txt 2>&1 &&
        mpirun -n 2 --oversubscribe "$kiln" train det.yaml --name split --resume -q >det3.txt 2>&1
    check "dist.deterministic: 1 epoch on 1 rank, resumed on 2 ranks" test $? -eq 0
    if /usr/bin/python3 -c "import h5py" 2>/dev/null || part_missing "the deterministic resume's weights (python3-h5py)"; then
        check "has the weights of 2 epochs on 1 rank, bit for bit (h5py)" /usr/bin/python3 -c "
import h5py, numpy, sys
a = h5py.File('runs/straight/checkpoints/final.h5', 'r')
b = h5py.File('runs/split/checkpoints/final.h5', 'r')
names = []
for g in ('params', 'buffers', 'optimizer'):
    a[g].visititems(lambda n, o: names.append(g + '/' + n) if isinstance(o, h5py.Dataset) else None)
sys.exit(len(names) < 4 or any(not numpy.array_equal(a[n][()], b[n][()]) for n in names))"
    fi
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
