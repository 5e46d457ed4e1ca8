#!/usr/bin/env bash
# A run stopped by a signal and resumed with `kiln train --resume` ends with the weights of a run
# that was never stopped, compared with h5py (tests/unit/ckpt_h5py.py) in the final checkpoints.
#   mpi:    2 ranks under mpirun; SIGUSR1 to one rank (stopped before step 41 by
#           KILN_TEST_STOP_AT) stops both (exit 75, a checkpoint); the resumed 2-rank run is
#           bit-identical to the uninterrupted one, and the stop checkpoint resumed on 1 process
#           (the same global batch) ends within 1e-4 relative of it.
#   single: one process; SIGTERM stops it at step 40 (exit 75), the resumed run is stopped again by
#           SIGINT at step 70, and the run resumed from that ends bit-identical to the
#           uninterrupted one.
# usage: test_resume_mpi.sh mpi|single PATH_TO_KILN   (needs Fashion-MNIST, h5py and, for mpi,
#        mpirun; exits 77 to skip without)
set -uo pipefail
mode="$1"
kiln="$2"
name="test_resume ($mode)"
case $mode in
mpi) launch=(mpirun -n 2 --oversubscribe "$kiln") ;;
single) launch=("$kiln") ;;
*) echo "usage: test_resume_mpi.sh mpi|single PATH_TO_KILN" >&2; exit 2 ;;
esac
here="$(cd "$(dirname "$0")" && pwd)"
examples="$(cd "$here/../../examples" && pwd)"
peer="$here/../unit/ckpt_h5py.py"
# shellcheck source=../skip.sh
source "$here/../skip.sh"
if [ "$mode" = mpi ] && ! command -v mpirun >/dev/null; then
    skip_missing "$name" "no mpirun (openmpi-bin)"
fi
[ -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] ||
    skip_missing "$name" "Fashion-MNIST is not installed (dataset-fashion-mnist)"
/usr/bin/python3 -c 'import h5py' 2>/dev/null ||
    skip_missing "$name" "/usr/bin/python3 without h5py (python3-h5py)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# 1800 training images in 28 batches of 64 per epoch; 4 epochs (112 steps), stopped at steps 40
# and 70. The config is copied here so that these runs' command lines differ
# from other tests' (test_rank_fault.sh kills what matches "kiln train .../mlp.yaml").
cp "$examples/fashion-mnist/mlp.yaml" resume.yaml
train=(train resume.yaml --set data.limit=2000 --set train.epochs=4
    --set schedule.warmup_steps=0 --set train.threads=1 --json)
fails=0
check() { # description, command...
    local what="$1"; shift
    if "$@"; then echo "ok: $what"; else echo "FAILED: $what"; fails=$((fails + 1)); fi
}
same() { /usr/bin/python3 "$peer" compare "$@"; } # A B [RTOL]

# Starts a run in the background (output in $1.out and $1.err) that stops itself (SIGSTOP) before
# its step $4 (KILN_TEST_STOP_AT; under mpirun, rank 1 does), sends signal $2 to the process
# `pick` names while it is stopped, then SIGCONT, and waits for the run: its status is in rc. The
# stop is at a step, not after a sleep, so a fast machine cannot finish the run first.
stop_run() { # tag, signal, pick (self | a-rank), step, kiln arguments...
    local tag="$1" sig="$2" pick="$3" step="$4" point pid=""
    shift 4
    point="step:$step"
    [ "$pick" = a-rank ] && point="step:$step@1"
    KILN_TEST_STOP_AT="$point" "${launch[@]}" "${train[@]}" "$@" >"$tag.out" 2>"$tag.err" &
    local job=$!
    for _ in $(seq 1 480); do
        pid="$(grep -o 'stops itself at step (pid [0-9]*' "$tag.err" | grep -o '[0-9]*$')"
        [ -n "$pid" ] && [ "$(awk '{print $3}' /proc/"$pid"/stat 2>/dev/null)" = T ] && break
        sleep 0.25
    done
    if [ -z "$pid" ]; then
        echo "$name: $tag never reached step $step"; cat "$tag.err"; kill -9 $job; exit 1
    fi
    kill "-$sig" "$pid"
    kill -CONT "$pid"
    wait $job
    rc=$?
    echo "$tag: SIG$sig to $pick (pid $pid) before step $((step + 1)): exit $rc"
}

# The stop's message (once, from rank 0) and its checkpoint, with nothing half-written beside it.
check_stop() { # tag, run
    check "$1: exit status 75" test "$rc" -eq 75
    check "$1: stderr names the checkpoint written" \
        grep -q "stopped by .*; checkpoint runs/$2/checkpoints/step-[0-9]*\.h5 written" "$1.err"
    check "$1: said once" test "$(grep -c 'stopped by' "$1.err")" -eq 1
    check "$1: one step-N.h5 and no temporary file" only_stop_checkpoint "runs/$2/checkpoints"
}
only_stop_checkpoint() { # folder
    [ "$(ls "$1" | wc -l)" -eq 1 ] && ls "$1" | grep -qx 'step-[0-9]*\.h5'
}

"${launch[@]}" "${train[@]}" --name a >a.out 2>a.err
rc=$?
check "uninterrupted run a: exit 0" test $rc -eq 0
check "run a: final.h5" test -s runs/a/checkpoints/final.h5

if [ "$mode" = mpi ]; then
    # SIGUSR1 to one rank (mpirun forwards a SIGUSR1 sent to itself to every rank, which works
    # too; one rank is the harder case: the request travels with the step's all-reduce).
    stop_run b USR1 a-rank 40 --name b
    check_stop b b
    cp runs/b/checkpoints/step-*.h5 stop.h5
    "${launch[@]}" "${train[@]}" --name b --resume >b2.out 2>b2.err
    rc=$?
    check "b resumed on 2 ranks: exit 0" test $rc -eq 0
    e="$(grep -o 'at epoch [0-9]*' b.err | grep -o '[0-9]*$')"
    check "b resumed inside the epoch it stopped in (${e:-?}): it reports that epoch to 4" \
        test "$(grep -o '"epoch": [0-9]*' b2.out | grep -o '[0-9]*$' | tr '\n' ' ')" = \
        "$(seq -s ' ' "${e:-0}" 4) "
    check "b's metrics.csv continues: a header and epochs 1 to 4" \
        test "$(cut -d, -f1 runs/b/metrics.csv | tr '\n' ' ')" = "epoch 1 2 3 4 "
    check "b resumed: bit-identical to a" same runs/a/checkpoints/final.h5 runs/b/checkpoints/final.h5
    check "the comparison can fail: the stop checkpoint is not a's final weights" \
        test "$(same runs/a/checkpoints/final.h5 stop.h5 >/dev/null; echo $?)" -eq 1
    # Another rank count with the same global batch: equal up to the order of the sums.
    "$kiln" "${train[@]}" --name c --resume stop.h5 >c.out 2>c.err
    rc=$?
    check "b's stop checkpoint resumed on 1 process: exit 0" test $rc -eq 0
    check "on 1 process: within 1e-4 relative of a" \
        same runs/a/checkpoints/final.h5 runs/c/checkpoints/final.h5 1e-4
else
    stop_run t TERM self 40 --name t
    check_stop t t
    stop_run t2 INT self 70 --name t --resume
    check "t resumed, then SIGINT: exit 75" test "$rc" -eq 75
    check "t2: stopped by signal 2 with a checkpoint" \
        grep -q 'stopped by signal 2 .*checkpoint runs/t/checkpoints/step-' t2.err
    "$kiln" "${train[@]}" --name t --resume >t3.out 2>t3.err
    rc=$?
    check "t resumed again: exit 0" test $rc -eq 0
    check "t, stopped twice: bit-identical to a" \
        same runs/a/checkpoints/final.h5 runs/t/checkpoints/final.h5
fi
if [ $fails -ne 0 ]; then
    for f in *.err; do echo "--- $f:"; cat "$f"; done
    echo "$name: $fails failed"
    exit 1
fi
echo "$name: all passed"
