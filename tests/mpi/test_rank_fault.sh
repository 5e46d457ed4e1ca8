#!/usr/bin/env bash
# A rank that fails must not hang the job, in the middle of data-parallel training or before it.
#   kill:    SIGKILL one rank; the whole job must end with a non-zero status well within 60 s.
#   stop:    SIGSTOP one rank (alive but stuck); with dist.timeout 3 s, another rank's watchdog
#            must end the job within 30 s, naming the rank, the collective and the step.
#   startup: one rank stops itself (KILN_TEST_STOP_AT, SIGSTOP) as it starts preparing the data,
#            and, in a second job, as it starts building the model; with dist.timeout 3 s the job
#            must end with status 3 (well within the 60 s the test waits: 30 s, room for mpirun's
#            teardown on a loaded machine), rank 0 naming the rank that did not arrive in the
#            startup agreement (or the model check). The data is a 40-row CSV, so that the ranks
#            reach the agreements before the one under test together: with Fashion-MNIST, rank 0
#            could still be reading when rank 1 had waited 3 s, and rank 1 timed out instead.
# usage: test_rank_fault.sh kill|stop|startup PATH_TO_KILN   (needs mpirun and Fashion-MNIST;
#        exits 77 to skip without)
set -uo pipefail
mode="$1"
kiln="$2"
name="test_rank_fault ($mode)"
case $mode in
kill) signal=-9 limit=60 extra=() ;;
stop) signal=-STOP limit=30 extra=(--set dist.timeout=3) ;;
startup) ;;
*) echo "usage: test_rank_fault.sh kill|stop|startup PATH_TO_KILN" >&2; exit 2 ;;
esac
examples="$(cd "$(dirname "$0")/../../examples" && pwd)"
# shellcheck source=../skip.sh
source "$(dirname "$0")/../skip.sh"
command -v mpirun >/dev/null || skip_missing "$name" "no mpirun (openmpi-bin)"
[ -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] ||
    skip_missing "$name" "Fashion-MNIST is not installed (dataset-fashion-mnist)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

# A rank stuck before training: $1 the point where rank 1 stops itself, $2 what rank 0 waits in.
stuck_at_start() {
    local point="$1" where="$2" job stopped="" rc=-1 took
    mpirun -n 2 --oversubscribe -x KILN_TEST_STOP_AT="$point@1" "$kiln" train small.yaml \
        --set dist.timeout=3 --no-run-dir >"$point.out" 2>"$point.err" &
    job=$!
    for _ in $(seq 1 240); do # the rank has stopped itself: the hook says so, then SIGSTOPs
        stopped="$(grep -o "stops itself at $point (pid [0-9]*" "$point.err" | grep -o '[0-9]*$')"
        [ -n "$stopped" ] && [ "$(awk '{print $3}' /proc/"$stopped"/stat 2>/dev/null)" = T ] && break
        sleep 0.25
    done
    if [ -z "$stopped" ]; then
        echo "$name: rank 1 never reached $point"; cat "$point.err"; kill -9 $job; return 1
    fi
    local start=$SECONDS
    for _ in $(seq 1 120); do
        kill -0 $job 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 $job 2>/dev/null; then
        echo "$name: the job still waits 60 s after rank 1 stopped at $point"
        kill -9 $job "$stopped" 2>/dev/null
        wait $job
        return 1
    fi
    wait $job
    rc=$?
    took=$((SECONDS - start))
    kill -9 "$stopped" 2>/dev/null
    echo "$name: rank 1 stopped at $point; mpirun exited with status $rc ${took}s later"
    grep 'dist.timeout' "$point.err"
    [ "$rc" -eq 3 ] && [ "$took" -le 30 ] &&
        grep -q "rank 0 waited more than 3 s in the $where (dist.timeout): rank 1 did not arrive" \
            "$point.err"
}
if [ "$mode" = startup ]; then
    { echo "a,b,label"; for i in $(seq 1 40); do echo "$i,$((i % 7)),$((i % 2))"; done; } >rows.csv
    printf 'model: {layers: [{dense: {units: 4}}]}\ndata: {train: {format: csv, path: %s}}\ntrain: {epochs: 1, batch_size: 8, threads: 1}\n' \
        "$tmp/rows.csv" >small.yaml
    fails=0
    stuck_at_start data "startup agreement after preparing the data" || fails=$((fails + 1))
    stuck_at_start build "model check" || fails=$((fails + 1))
    echo "$name: $((2 - fails)) passed, $fails failed"
    [ $fails -eq 0 ]
    exit
fi
# Long enough that it is still training when the fault comes: many epochs on a slice.
mpirun -n 2 --oversubscribe "$kiln" train "$examples/fashion-mnist/mlp.yaml" \
    --set data.limit=6400 --set train.epochs=500 --set schedule.warmup_steps=0 \
    --set train.threads=1 "${extra[@]}" --no-run-dir --json >out.txt 2>err.txt &
job=$!
for _ in $(seq 1 120); do # wait for the first epoch: both ranks are in the training loop
    grep -q '"epoch"' out.txt 2>/dev/null && break
    sleep 0.5
done
if ! grep -q '"epoch"' out.txt; then
    echo "$name: training never started"; cat err.txt; kill -9 $job; exit 1
fi
ranks="$(pgrep -P $job -f 'kiln train')" # this job's ranks only: other tests may train too
victim="$(echo "$ranks" | tail -n 1)"
[ -n "$victim" ] || { echo "$name: no rank process found under mpirun"; kill -9 $job; exit 1; }
start=$SECONDS
kill "$signal" "$victim"
wait $job
rc=$?
took=$((SECONDS - start))
echo "$name: signalled rank pid $victim; mpirun exited with status $rc after ${took}s"
kill -9 "$victim" 2>/dev/null # in case the launcher left a stopped rank behind
grep 'dist.timeout' err.txt
alive() { # a live rank (not a zombie waiting to be reaped)
    for pid in $ranks; do
        [ -e /proc/$pid ] && [ "$(awk '{print $3}' /proc/$pid/stat 2>/dev/null)" != Z ] && return 0
    done
    return 1
}
for _ in $(seq 1 20); do alive || break; sleep 0.5; done # the launcher's kill takes a moment
if alive; then
    echo "$name: a rank is still running 10 s after mpirun exited"; kill -9 $ranks 2>/dev/null
    exit 1
fi
ok=0
[ "$rc" -ne 0 ] && [ "$took" -lt "$limit" ] && ok=1
if [ "$mode" = stop ] &&
    ! grep -q 'waited more than 3 s in the .* at step [0-9]* (dist.timeout)' err.txt; then
    ok=0
fi
if [ $ok = 1 ]; then
    echo "$name: 1 passed, 0 failed"
    exit 0
fi
echo "$name: 0 passed, 1 failed"
exit 1
