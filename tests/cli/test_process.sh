#!/usr/bin/env bash
# kiln as a process among others: stops in every phase, run-folder locks, what a killed writer
# leaves, and summaries of models too large to build. Signals go to a process that has stopped
# itself at a named point (KILN_TEST_STOP_AT, docs/architecture.md), never after a sleep: the
# test sends the signal while the process is stopped, then SIGCONT, and times the rest.
#   summary:   --summary of a 3.2-billion-parameter model in little memory and time; of 100,000
#              layers in bounded time, and linear in the layers (10,000 against 40,000).
#   stop:      SIGTERM (SIGUSR1, SIGINT) in the summary, before training (the model build), in
#              an evaluation, in the test evaluation, in a checkpoint write, in kiln export and in
#              kiln predict (reading, scoring): each ends within 2 s with status 75, leaving no
#              temporary file; stops in evaluations resume to the uninterrupted run's weights.
#   lock:      two kiln train --auto-resume on one run: the second is refused (status 4) naming
#              the first's pid; metrics.csv has each epoch once; a holder killed with SIGKILL
#              leaves its lock file but not its lock.
#   leftovers: a writer killed (SIGKILL) in the middle of a checkpoint leaves step-N.h5.tmp.PID;
#              the run's next start removes it, and keeps a live writer's.
# usage: test_process.sh summary|stop|lock|leftovers PATH_TO_KILN   (exits 77 to skip without
#        Fashion-MNIST, which every mode but summary trains on)
set -uo pipefail
mode="$1"
kiln="$2"
[[ $kiln == */* && $kiln != /* ]] && kiln="$PWD/$kiln"
name="test_process ($mode)"
here="$(cd "$(dirname "$0")" && pwd)"
examples="$(cd "$here/../../examples" && pwd)"
peer="$here/../unit/ckpt_h5py.py"
fm=/usr/share/datasets/fashion-mnist
# shellcheck source=../skip.sh
source "$here/../skip.sh"
if [[ $mode != summary && ! -e $fm/train-images-idx3-ubyte.gz ]]; then
    skip_missing "$name" "Fashion-MNIST is not installed (dataset-fashion-mnist)"
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1
fails=0
check() { # description, command...
    local what="$1"
    shift
    if "$@"; then echo "ok: $what"; else echo "FAILED: $what"; fails=$((fails + 1)); fi
}
ms() { echo $(($(date +%s%N) / 1000000)); }

# Waits until the process that $1 (a stderr file) says stopped itself at a point is stopped, and
# prints its pid; prints nothing if none did within 60 s.
stopped_pid() {
    local pid=""
    for _ in $(seq 1 240); do
        pid="$(grep -o 'stops itself at [a-z-]* (pid [0-9]*' "$1" 2>/dev/null | grep -o '[0-9]*$')"
        [[ -n $pid && "$(awk '{print $3}' /proc/"$pid"/stat 2>/dev/null)" == T ]] && break
        sleep 0.25
    done
    [[ -n $pid ]] && echo "$pid"
}

# Runs kiln ARGS in the background with KILN_TEST_STOP_AT=$2, waits for it to stop itself there,
# sends signal $3 and SIGCONT, and waits: rc is its status, took its milliseconds after SIGCONT.
# Output in $1.out and $1.err.
stop_in() { # tag, point, signal, kiln arguments...
    local tag="$1" point="$2" sig="$3" job pid start
    shift 3
    KILN_TEST_STOP_AT="$point" "$kiln" "$@" >"$tag.out" 2>"$tag.err" &
    job=$!
    pid="$(stopped_pid "$tag.err")"
    if [[ -z $pid ]]; then
        echo "$name: $tag never reached $point"
        cat "$tag.err"
        kill -9 $job
        wait $job
        rc=-1 took=-1
        return
    fi
    kill "-$sig" "$pid"
    start=$(ms)
    kill -CONT "$pid"
    wait $job
    rc=$?
    took=$(($(ms) - start))
    echo "$tag: SIG$sig at $point: exit $rc after $took ms"
}
stopped_fast() { [[ $rc -eq 75 && $took -ge 0 && $took -le 2000 ]]; }
no_temporaries() { [[ -z "$(find "$@" -name '*.tmp.*' 2>/dev/null)" ]]; }

fm_train=(--set data.limit=1200 --set train.threads=1 --set schedule.warmup_steps=0)
cp "$examples/fashion-mnist/mlp.yaml" mlp.yaml

case $mode in
summary)
    # Summaries need the data's shape only: a tiny CSV of 4 features and 3 classes.
    printf 'a,b,c,d,label\n' >tiny.csv
    for i in $(seq 0 11); do echo "$((i % 3)),$((i % 5)),$((i % 7)),$i,$((i % 3))" >>tiny.csv; done
    { printf 'data:\n  train: {format: csv, path: tiny.csv}\nmodel:\n  layers:\n'
      yes '    - dense: {units: 40000}' | head -n 3; } >big.yaml
    deep() { # layers
        { printf 'data:\n  train: {format: csv, path: tiny.csv}\nmodel:\n  layers:\n'
          yes '    - dense: {units: 4}' | head -n "$1"; } >"deep$1.yaml"
    }
    # Runs kiln ARGS, killing it if its resident memory passes 1 GiB (the weights alone of
    # big.yaml are 12 GiB); peak is its peak RSS in KiB as far as it was seen, took its ms.
    run_capped() {
        local start job rss
        start=$(ms)
        "$kiln" "$@" >out.txt 2>err.txt &
        job=$!
        peak=0
        while kill -0 $job 2>/dev/null; do
            rss="$(awk '/^VmHWM/ {print $2}' /proc/$job/status 2>/dev/null)"
            [[ -n $rss && $rss -gt $peak ]] && peak=$rss
            if [[ $peak -gt 1048576 ]]; then kill -9 $job; fi
            sleep 0.02
        done
        wait $job
        rc=$?
        took=$(($(ms) - start))
    }
    run_capped train big.yaml --summary --no-run-dir
    echo "big.yaml: exit $rc in $took ms, peak RSS seen $peak KiB"
    check "a 3.2-billion-parameter summary: exit 0" test "$rc" -eq 0
    check "it counts them all" grep -q '^total: 3200400003 parameters' out.txt
    check "with a row per layer as built" grep -Eq '^layers.2 +dense +\[40000\] +1.60G' out.txt
    check "in under 1 GiB (no weights)" test "$peak" -le 1048576
    check "within 20 s" test "$took" -le 20000
    deep 10000
    deep 40000
    deep 100000
    run_capped train deep10000.yaml --summary --no-run-dir
    t10=$took
    run_capped train deep40000.yaml --summary --no-run-dir
    t40=$took
    run_capped train deep100000.yaml --summary --no-run-dir
    echo "10,000 layers: ${t10} ms; 40,000: ${t40} ms; 100,000: ${took} ms (exit $rc)"
    check "100,000 layers: exit 0" test "$rc" -eq 0
    check "100,000 layers: every row" test "$(grep -c '^layers\.' out.txt)" -eq 100000
    check "100,000 layers within 60 s" test "$took" -le 60000
    # Four times the layers in at most eight times the time (the start-up is in both): the
    # quadratic summary took fifteen times as long.
    check "linear in the layers: 40,000 take under 8 x 10,000's time" test "$t40" -le $((8 * t10))
    ;;
stop)
    # The summary (after its first row) of a model large enough that it would still be running.
    printf 'a,b,c,d,label\n1,2,3,4,0\n2,3,4,5,1\n3,4,5,6,2\n' >tiny.csv
    { printf 'data:\n  train: {format: csv, path: tiny.csv}\nmodel:\n  layers:\n'
      yes '    - dense: {units: 4}' | head -n 20000; } >deep.yaml
    stop_in summary summary TERM train deep.yaml --summary --no-run-dir
    check "summary: status 75 within 2 s" stopped_fast
    check "summary: says where it stopped" \
        grep -q '^kiln train: stopped by signal 15 while printing the model summary' summary.err

    # Before training: in the model build, with nothing to save.
    stop_in build build USR1 train mlp.yaml "${fm_train[@]}" --name b --json
    check "build: status 75 within 2 s" stopped_fast
    check "build: says it stopped before training" \
        grep -q 'stopped by signal 10 before training started' build.err
    check "build: no step was taken, no checkpoint written" \
        test -z "$(ls runs/b/checkpoints 2>/dev/null)"

    # In the first epoch's evaluation (1080 training images, 120 validation in batches of 64):
    # the checkpoint holds the epoch's training (its 16 steps) and the resumed run ends with
    # the weights of the run that was never stopped.
    two=("${fm_train[@]}" --set train.epochs=2 --json)
    "$kiln" train mlp.yaml "${two[@]}" --name a >a.out 2>a.err
    check "uninterrupted run: exit 0" test $? -eq 0
    stop_in eval eval TERM train mlp.yaml "${two[@]}" --name e
    check "eval: status 75 within 2 s" stopped_fast
    check "eval: the checkpoint of the epoch's 16 steps" \
        grep -q 'stopped by signal 15 during evaluation at epoch 1, step 16; checkpoint runs/e/checkpoints/step-0000000016.h5 written' eval.err
    "$kiln" train mlp.yaml "${two[@]}" --name e --resume >e2.out 2>e2.err
    check "eval: resumed: exit 0" test $? -eq 0
    check "eval: resumed, epoch 1 evaluated once, then epoch 2" \
        test "$(cut -d, -f1 runs/e/metrics.csv | tr '\n' ' ')" = "epoch 1 2 "

    # In the test evaluation (no validation set, so the first evaluation is the test's).
    stop_in test eval INT train mlp.yaml "${two[@]}" --set data.val_fraction=0 --name t
    check "test evaluation: status 75 within 2 s" stopped_fast
    check "test evaluation: checkpoint of the finished epochs" \
        grep -q 'stopped by signal 2 during the test evaluation; checkpoint runs/t/checkpoints/step-0000000036.h5 written' test.err
    "$kiln" train mlp.yaml "${two[@]}" --set data.val_fraction=0 --name t --resume >t2.out 2>t2.err
    check "test evaluation: resumed: exit 0 with the test metrics" \
        grep -q '"done": true' t2.out
    "$kiln" train mlp.yaml "${two[@]}" --set data.val_fraction=0 --name u >u.out 2>u.err
    if /usr/bin/python3 -c 'import h5py' 2>/dev/null; then
        check "eval: resumed to the uninterrupted run's weights" \
            /usr/bin/python3 "$peer" compare runs/a/checkpoints/final.h5 runs/e/checkpoints/final.h5
        check "test evaluation: resumed to the uninterrupted run's weights" \
            /usr/bin/python3 "$peer" compare runs/u/checkpoints/final.h5 runs/t/checkpoints/final.h5
    fi

    # In a checkpoint write: that checkpoint is the one to continue from; no step after it.
    stop_in ckpt write TERM train mlp.yaml "${two[@]}" --set "checkpoint.every=5 steps" --name c
    check "checkpoint write: status 75 within 2 s" stopped_fast
    check "checkpoint write: stops at the checkpoint being written" \
        grep -q 'stopped by signal 15 at epoch 1, step 5; checkpoint runs/c/checkpoints/step-0000000005.h5 written' ckpt.err
    check "checkpoint write: it is the only one, whole" \
        test "$(ls runs/c/checkpoints | tr '\n' ' ')" = "step-0000000005.h5 "

    # kiln export, in the middle of writing the model file.
    stop_in export write TERM export runs/a -o model-x.h5 --no-reference
    check "export: status 75 within 2 s" stopped_fast
    check "export: says so" grep -q '^kiln export: stopped by signal 15 while exporting' export.err
    check "export: no model file, no temporary" test ! -e model-x.h5 -a -z "$(ls | grep '\.tmp\.')"

    # kiln predict: reading the input, then scoring it (10 samples a batch).
    "$kiln" export runs/a -o model.h5 --no-reference --quiet
    check "a model to predict with" test -s model.h5
    input=(--input "$fm/t10k-images-idx3-ubyte.gz" --labels "$fm/t10k-labels-idx1-ubyte.gz")
    stop_in read predict-read TERM predict model.h5 "${input[@]}" -o p.csv
    check "predict, reading: status 75 within 2 s" stopped_fast
    stop_in score predict-score TERM predict model.h5 "${input[@]}" --batch-size 10 -o p.h5
    check "predict, scoring: status 75 within 2 s" stopped_fast
    check "predict: says so" grep -q '^kiln predict: stopped by signal 15 while scoring' score.err
    check "predict: no output file, no temporary" \
        test ! -e p.csv -a ! -e p.h5 -a -z "$(ls | grep '\.tmp\.')"
    check "no temporary file in any run folder" no_temporaries runs
    ;;
lock)
    three=("${fm_train[@]}" --set train.epochs=3 --json)
    # The first holds the run folder, stopped in its model build; the second comes then.
    KILN_TEST_STOP_AT=build "$kiln" train mlp.yaml "${three[@]}" --name r --auto-resume \
        >first.out 2>first.err &
    job=$!
    holder="$(stopped_pid first.err)"
    check "the first run holds the folder" test -n "$holder"
    "$kiln" train mlp.yaml "${three[@]}" --name r --auto-resume >second.out 2>second.err
    rc=$?
    sed 's/^/    second: /' second.err
    check "the second is refused with status 4" test "$rc" -eq 4
    check "naming the holder's pid and what to do" \
        grep -q "the run folder runs/r is in use by another kiln process: pid $holder on host .*kill -TERM $holder" second.err
    kill -CONT "$holder"
    wait $job
    check "the first run finishes: exit 0" test $? -eq 0
    check "metrics.csv: one header and each epoch once, in order" \
        test "$(cut -d, -f1 runs/r/metrics.csv | tr '\n' ' ')" = "epoch 1 2 3 "
    check "the lock file stays" test -e runs/r/kiln.lock
    # A holder killed with SIGKILL (a node lost, a requeued job) takes its lock with it.
    KILN_TEST_STOP_AT=build "$kiln" train mlp.yaml "${three[@]}" --set train.epochs=4 --name r \
        --auto-resume >third.out 2>third.err &
    job=$!
    holder="$(stopped_pid third.err)"
    kill -9 "$holder"
    wait $job
    "$kiln" train mlp.yaml "${three[@]}" --set train.epochs=4 --name r --auto-resume \
        >fourth.out 2>fourth.err
    check "after the holder's SIGKILL the run continues: exit 0" test $? -eq 0
    check "metrics.csv goes on to epoch 4" \
        test "$(cut -d, -f1 runs/r/metrics.csv | tr '\n' ' ')" = "epoch 1 2 3 4 "
    ;;
leftovers)
    every=("${fm_train[@]}" --set train.epochs=2 --set "checkpoint.every=5 steps" --json)
    # SIGKILL while the step-5 checkpoint is being written: its temporary stays behind.
    KILN_TEST_STOP_AT=write "$kiln" train mlp.yaml "${every[@]}" --name k >k.out 2>k.err &
    job=$!
    writer="$(stopped_pid k.err)"
    check "the writer stopped inside a checkpoint write" test -n "$writer"
    kill -9 "$writer"
    wait $job
    dead="runs/k/checkpoints/step-0000000005.h5.tmp.$writer"
    check "kill -9 left $dead" test -s "$dead"
    # A live writer's temporary (this sleep's pid stands for a process still writing).
    sleep 600 &
    live_pid=$!
    live="runs/k/checkpoints/step-0000000009.h5.tmp.$live_pid"
    echo x >"$live"
    "$kiln" train mlp.yaml "${every[@]}" --name k --auto-resume >k2.out 2>k2.err
    check "the next start of the run: exit 0" test $? -eq 0
    check "it removed the dead writer's temporary" test ! -e "$dead"
    check "it kept the live writer's" test -e "$live"
    kill "$live_pid"
    wait "$live_pid" 2>/dev/null
    ;;
*)
    echo "usage: test_process.sh summary|stop|lock|leftovers PATH_TO_KILN" >&2
    exit 2
    ;;
esac
if [ $fails -ne 0 ]; then
    for f in *.err; do [ -s "$f" ] && { echo "--- $f:"; tail -n 20 "$f"; }; done
    echo "$name: $fails failed"
    exit 1
fi
echo "$name: all passed"
