#!/usr/bin/env bash
# A rank stopped with SIGSTOP (alive but stuck) in data-parallel training must not hang the job:
# with dist.timeout 3 s, another rank's watchdog ends the job, naming the rank, the collective and
# the step, well within 30 s.
# usage: test_hang.sh PATH_TO_KILN   (needs mpirun and Fashion-MNIST; exits 77 to skip without)
set -uo pipefail
kiln="$1"
examples="$(cd "$(dirname "$0")/../../examples" && pwd)"
command -v mpirun >/dev/null || { echo "test_hang: no mpirun, skipped"; exit 77; }
[ -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] ||
    { echo "test_hang: Fashion-MNIST not installed, skipped"; exit 77; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Long enough that it is still training when the kill comes: many epochs on a slice.
mpirun -n 2 --oversubscribe "$kiln" train "$examples/fashion-mnist/mlp.yaml" \
    --set data.limit=6400 --set train.epochs=500 --set schedule.warmup_steps=0 \
    --set train.threads=1 --set dist.timeout=3 --no-run-dir --json >out.txt 2>err.txt &
job=$!
for _ in $(seq 1 120); do # wait for the first epoch: both ranks are in the training loop
    grep -q '"epoch"' out.txt 2>/dev/null && break
    sleep 0.5
done
if ! grep -q '"epoch"' out.txt; then
    echo "test_hang: training never started"; cat err.txt; kill -9 $job; exit 1
fi
victim="$(pgrep -P $job -f 'kiln train' | tail -n 1)"
[ -n "$victim" ] || { echo "test_hang: no rank process found under mpirun"; kill -9 $job; exit 1; }
start=$SECONDS
kill -STOP "$victim"
wait $job
rc=$?
took=$((SECONDS - start))
echo "test_hang: stopped rank pid $victim; mpirun exited with status $rc after ${took}s"
kill -9 "$victim" 2>/dev/null # in case the launcher left it stopped
grep 'dist.timeout' err.txt
pgrep -f "kiln train $examples/fashion-mnist/mlp.yaml" >/dev/null && {
    echo "test_hang: a rank is still running"; pkill -9 -f "kiln train $examples"; exit 1; }
if [ "$rc" -ne 0 ] && [ "$took" -lt 30 ] && grep -q 'waited more than 3 s in the .* at step [0-9]* (dist.timeout)' err.txt; then
    echo "test_hang: 1 passed, 0 failed"
    exit 0
fi
echo "test_hang: 0 passed, 1 failed"
exit 1
