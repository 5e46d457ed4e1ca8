#!/usr/bin/env bash
# kiln under a real single-node Slurm cluster (tests/slurm/cluster.sh), submitted as users do:
#   train:   `sbatch --wait slurm/train.sbatch CONFIG ...` with 2 tasks (srun --mpi=pmix) finishes,
#            and its run folder runs/kiln-train-<job id>/ has final.h5 and a metrics row per epoch.
#   tune:    `sbatch --wait slurm/tune.sbatch SWEEP` with 2 tasks (a coordinator and a worker)
#            finishes with results.csv, best.json and a journal that says so; the same sweep
#            preempted with USR1 once a result is in (its worker stopped at a step by
#            KILN_TEST_STOP_AT) requeues itself, and its restart continues the sweep (--resume) to
#            the same results, none journalled twice.
#   preempt: a script from `kiln slurm script train` runs uninterrupted once; then again, and
#            with its ranks stopped before step 41 (KILN_TEST_STOP_AT), after the first epoch's
#            checkpoint, `scancel --batch --signal=USR1` (what Slurm sends --grace seconds before
#            the time limit) stops it: kiln exits 75, the script requeues
#            the job, and the requeued start resumes from the stop checkpoint and ends with
#            final weights bit-identical to the uninterrupted run's (h5py). The same again with
#            the mpirun fallback (--launcher mpirun), which the script signals with USR1 too.
# usage: test_slurm.sh train|tune|preempt PATH_TO_KILN   (exits 77 without Fashion-MNIST or h5py,
#        or when Slurm cannot be installed or started here)
set -uo pipefail
mode="$1"
kiln="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"
name="test_slurm ($mode)"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
peer="$root/tests/unit/ckpt_h5py.py"
# shellcheck source=../skip.sh
source "$here/../skip.sh"
[ -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] ||
    skip_missing "$name" "Fashion-MNIST is not installed (dataset-fashion-mnist)"
if [ "$mode" = preempt ] && ! /usr/bin/python3 -c 'import h5py' 2>/dev/null; then
    skip_missing "$name" "/usr/bin/python3 without h5py (python3-h5py)"
fi

tmp="$(mktemp -d /tmp/kiln-slurm.XXXXXX)"
. "$here/cluster.sh"
trap 'cluster_stop; rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
t0=$SECONDS
cluster_start "$tmp" || exit $?
mkdir "$tmp/work" && cd "$tmp/work" || exit 1
# The jobs get this environment (sbatch exports it): this build's kiln first on PATH, Open MPI
# allowed to run as root, and its shared-memory files kept in the test's folder.
export PATH="$(dirname "$kiln"):$PATH"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
export OMPI_MCA_btl_vader_backing_directory="$tmp/work"
# LeakSanitizer (kiln's tests build with it) is told of Open MPI's own allocations, as under mpirun.
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$root/tests/mpi/lsan.supp:print_suppressions=0:fast_unwind_on_malloc=0}"
cp "$root/examples/fashion-mnist/mlp.yaml" cfg.yaml

fails=0
check() { # description, command...
    local what="$1"; shift
    if "$@"; then echo "ok: $what"; else echo "FAILED: $what"; fails=$((fails + 1)); fi
}
has() { grep -q -- "$2" "$1"; } # file, pattern
field() { scontrol show job "$1" 2>/dev/null | grep -o "$2=[^ ]*" | head -n 1 | cut -d= -f2; }
# Waits until job $1 has ended (COMPLETED, FAILED, ...), at most $2 seconds.
wait_job() {
    local s
    for _ in $(seq 1 $(($2 * 2))); do
        s="$(field "$1" JobState)"
        case $s in COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY) return 0 ;; esac
        sleep 0.5
    done
    echo "$name: job $1 still ${s:-unknown} after $2 s"
    return 1
}
# The processes of a job that stopped themselves at a step (KILN_TEST_STOP_AT=step:N, printed in
# log $1 with their pids), once $2 of them are stopped.
stopped_pids() { # log, count
    local pids=""
    for _ in $(seq 1 480); do
        pids="$(grep -o 'stops itself at step (pid [0-9]*' "$1" 2>/dev/null | grep -o '[0-9]*$')"
        [ "$(echo $pids | wc -w)" -eq "$2" ] && in_state T $pids && break
        sleep 0.25
    done
    [ "$(echo $pids | wc -w)" -eq "$2" ] && in_state T $pids && echo $pids
}
in_state() { # state pid...
    local want="$1" pid
    shift
    for pid in "$@"; do [ "$(awk '{print $3}' /proc/"$pid"/stat 2>/dev/null)" = "$want" ] || return 1; done
}
usr1_pending() { # pid...: SIGUSR1 (10, bit 9) waits in each process's pending set
    local pid mask
    for pid in "$@"; do
        mask="$(awk '/^ShdPnd/ {print $2}' /proc/"$pid"/status 2>/dev/null)"
        [ -n "$mask" ] && (((0x$mask >> 9) & 1)) || return 1
    done
}
# USR1 to job $1's batch shell, as Slurm sends it --grace seconds before the time limit, while $3
# of its processes are stopped at a step (log $2), never after a sleep: a fast machine cannot
# finish first. Once the launcher has passed the signal on (pending in the stopped processes)
# they go on, and must stop at that step.
usr1_while_stopped() { # job, log, processes
    local pids
    pids="$(stopped_pids "$2" "$3")"
    if [ -z "$pids" ]; then
        echo "$name: job $1 did not stop at its step"; return 1
    fi
    scancel --batch --signal=USR1 "$1"
    for _ in $(seq 1 240); do
        usr1_pending $pids && break
        sleep 0.25
    done
    usr1_pending $pids || echo "$name: job $1's stopped processes never got USR1"
    kill -CONT $pids
}
# Small and quick: 1800 training images in batches of 64, one BLAS thread per rank.
small=(--set data.limit=2000 --set schedule.warmup_steps=0 --set train.threads=1)

case $mode in
train)
    out="$(timeout 300 sbatch --wait --parsable --ntasks=2 --cpus-per-task=1 \
        "$root/slurm/train.sbatch" cfg.yaml "${small[@]}" --set train.epochs=3)"
    rc=$?
    job="${out%%;*}"
    log="kiln-train-$job.out"
    run="runs/kiln-train-$job"
    check "sbatch --wait train.sbatch: exit 0" test "$rc" -eq 0
    check "the job completed" test "$(field "$job" JobState)" = COMPLETED
    check "its output file is %x-%j.out" test -s "$log"
    check "kiln trained on 2 ranks under srun" has "$log" "on 2 ranks (mpi) on CPU, run folder $run"
    check "Slurm's tasks and MPI's ranks agree (no warning)" \
        test "$(grep -c 'warning: Slurm started' "$log")" -eq 0
    check "the run is named after the job: final.h5" test -s "$run/checkpoints/final.h5"
    check "metrics.csv: a header and epochs 1 to 3" \
        test "$(cut -d, -f1 "$run/metrics.csv" | tr '\n' ' ')" = "epoch 1 2 3 "
    check "the script logged kiln's exit" has "$log" "kiln-slurm: kiln exited 0"
    ;;
tune)
    cat >sweep.yaml <<EOF
base: cfg.yaml
metric: {name: val_accuracy, goal: maximize}
method: random
run_cap: 4
seed: 3
parameters:
  optimizer.lr: {log_uniform_values: {min: 3e-4, max: 3e-3}}
  data.limit: {value: 1500}
  schedule.warmup_steps: {value: 0}
  train.threads: {value: 1}
scheduler: {type: asha, max_t: 2, grace_period: 1, reduction_factor: 2}
EOF
    out="$(timeout 300 sbatch --wait --parsable --ntasks=2 "$root/slurm/tune.sbatch" sweep.yaml)"
    rc=$?
    job="${out%%;*}"
    log="kiln-tune-$job.out"
    dir="sweeps/kiln-tune-$job"
    check "sbatch --wait tune.sbatch: exit 0" test "$rc" -eq 0
    check "the job completed" test "$(field "$job" JobState)" = COMPLETED
    check "the sweep folder is named after the job" test -s "$dir/journal.jsonl"
    check "results.csv has a row per trial" test "$(tail -n +2 "$dir/results.csv" | wc -l)" -eq 4
    check "best.json names the best epoch's checkpoint" grep -q '"checkpoint": ".*best.h5"' "$dir/best.json"
    check "the journal says the sweep finished" grep -q '"event":"finished"' "$dir/journal.jsonl"
    check "rank 0 coordinated, rank 1 trained" has "$log" "1 worker, folder $dir"
    # The same sweep preempted once a result is in: USR1 to the batch shell, the trials
    # checkpoint, kiln exits 75, the job requeues itself and its restart continues the sweep
    # (kiln tune --resume) to the same results, each journalled once.
    # The worker stops itself in its first trial's second epoch (step 30 of 21 a epoch), after
    # that trial's first result.
    job="$(KILN_TEST_STOP_AT=step:30 sbatch --parsable --ntasks=2 "$root/slurm/tune.sbatch" \
        sweep.yaml | cut -d';' -f1)"
    dir2="sweeps/kiln-tune-$job"
    log2="kiln-tune-$job.out"
    usr1_while_stopped "$job" "$log2" 1
    # The restart has the job's environment too, so its worker may stop at a step 30 of its own:
    # it is let go.
    while [ -z "$(field "$job" JobState | grep -x 'COMPLETED\|FAILED\|CANCELLED')" ]; do
        for pid in $(grep -o 'stops itself at step (pid [0-9]*' "$log2" | grep -o '[0-9]*$'); do
            in_state T "$pid" && kill -CONT "$pid"
        done
        sleep 0.5
    done &
    releaser=$!
    check "preempted: the job ended after a requeue" wait_job "$job" 200
    kill $releaser 2>/dev/null
    wait $releaser 2>/dev/null
    check "preempted: COMPLETED, exit 0:0, requeued once" \
        test "$(field "$job" JobState) $(field "$job" ExitCode) $(field "$job" Restarts)" = \
        "COMPLETED 0:0 1"
    check "preempted: kiln checkpointed and exited 75" has "$log2" "kiln-slurm: kiln exited 75"
    check "preempted: the journal says so" grep -q '"event":"interrupted"' "$dir2/journal.jsonl"
    check "preempted: the restart resumed the sweep" has "$log2" "tune --resume $dir2 "
    check "preempted: the restart finished" has "$log2" "kiln-slurm: kiln exited 0"
    check "preempted: no result journalled twice" test -z "$(grep '"event":"result"' \
        "$dir2/journal.jsonl" | sed 's/.*"trial":\([0-9]*\),"t":\([0-9]*\),.*/\1 \2/' |
        sort | uniq -d)"
    check "preempted: the results of the uninterrupted sweep" \
        cmp -s <(cut -d, -f1-6 "$dir/results.csv" | sort) <(cut -d, -f1-6 "$dir2/results.csv" | sort)
    ;;
preempt)
    # A checkpoint every epoch, all kept: the stop's too, to check that it differs.
    train=("${small[@]}" --set train.epochs=5 --set "checkpoint.every=1 epoch"
        --set checkpoint.keep_last=0)
    # Starts a job from script $1 whose ranks stop themselves (SIGSTOP) before step 41, in the
    # second of its 5 epochs (KILN_TEST_STOP_AT); prints its id.
    submit() { KILN_TEST_STOP_AT=step:40 sbatch --parsable "$1" | cut -d';' -f1; }
    # USR1 while both ranks are stopped before step 41 (usr1_while_stopped).
    preempt() { usr1_while_stopped "$2" "kiln-train-$2.out" 2; }
    # The checks of one preempted job: $1 tag, $2 job id.
    check_preempted() {
        local tag="$1" job="$2" run="runs/kiln-train-$2" log="kiln-train-$2.out"
        check "$tag: the job ended after a requeue" wait_job "$job" 200
        check "$tag: COMPLETED, exit 0:0" \
            test "$(field "$job" JobState) $(field "$job" ExitCode)" = "COMPLETED 0:0"
        check "$tag: requeued once (Restarts=1)" test "$(field "$job" Restarts)" = 1
        check "$tag: the script passed USR1 on" has "$log" "kiln-slurm: SIGUSR1"
        check "$tag: kiln checkpointed and exited 75" has "$log" "kiln-slurm: kiln exited 75"
        check "$tag: kiln named its stop checkpoint" \
            has "$log" "stopped by signal 10.*checkpoint $run/checkpoints/step-[0-9]*\.h5 written"
        check "$tag: the script requeued the job" has "$log" "requeueing job $job"
        check "$tag: the second start is a restart" has "$log" "job $job start 2 "
        check "$tag: the restart resumed from the stop checkpoint" \
            has "$log" "resuming from $run/checkpoints/step-[0-9]*\.h5"
        check "$tag: the restart finished" has "$log" "kiln-slurm: kiln exited 0"
        check "$tag: metrics.csv continues: a header and epochs 1 to 5" \
            test "$(cut -d, -f1 "$run/metrics.csv" | tr '\n' ' ')" = "epoch 1 2 3 4 5 "
        check "$tag: bit-identical to the uninterrupted run" \
            /usr/bin/python3 "$peer" compare "$ref/checkpoints/final.h5" "$run/checkpoints/final.h5"
    }

    kiln slurm script train cfg.yaml --ntasks 2 --time 10:00 --grace 60 "${train[@]}" >job.sbatch
    check "kiln slurm script train: a script" test -s job.sbatch
    check "... that bash can read" bash -n job.sbatch
    check "... that runs this kiln" grep -q "^KILN=$kiln " job.sbatch
    out="$(timeout 300 sbatch --wait --parsable job.sbatch)"
    check "the uninterrupted job: exit 0" test $? -eq 0
    ref="runs/kiln-train-${out%%;*}"
    check "the uninterrupted job: final.h5" test -s "$ref/checkpoints/final.h5"

    job="$(submit job.sbatch)"
    preempt "runs/kiln-train-$job" "$job"
    check_preempted srun "$job"
    stop="$(grep -o "checkpoint runs/[^ ]*/step-[0-9]*\.h5 written" "kiln-train-$job.out" |
        cut -d' ' -f2)"
    check "the comparison can fail: the stop checkpoint is not the final weights" \
        test "$(/usr/bin/python3 "$peer" compare "$ref/checkpoints/final.h5" "${stop:-none}" \
            >/dev/null 2>&1; echo $?)" -eq 1
    check "... which exists" test -s "${stop:-none}"

    kiln slurm script train cfg.yaml --ntasks 2 --launcher mpirun "${train[@]}" >mpirun.sbatch
    job="$(submit mpirun.sbatch)"
    preempt "runs/kiln-train-$job" "$job"
    check_preempted mpirun "$job"
    ;;
*)
    echo "usage: test_slurm.sh train|tune|preempt PATH_TO_KILN" >&2
    exit 2
    ;;
esac

if [ $fails -ne 0 ]; then
    for f in *.out; do echo "--- $f:"; cat "$f"; done
    tail -n 30 "$tmp"/log/slurmctld.log "$tmp"/log/slurmd.log
    echo "$name: $fails failed ($((SECONDS - t0)) s)"
    exit 1
fi
echo "$name: all passed ($((SECONDS - t0)) s)"
