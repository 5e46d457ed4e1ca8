#!/usr/bin/env bash
# kiln tune end to end on a Fashion-MNIST slice.
#   mpi:    8 trials under mpirun -n 3 (a coordinator and two workers) finish with results.csv,
#           best.yaml (which kiln train loads), best.json and a report; --resume of the finished
#           sweep replays its journal to the same results and adds no result; trials trained by
#           a group of 2 ranks (ranks_per_trial) work, and a rank count that cannot form the
#           groups is refused.
#   resume: one process, killed with kill -9 in the middle of the sweep, then --resume: every
#           (trial, t) result is journalled exactly once, and the results equal an uninterrupted
#           sweep's (the sweep is deterministic on one process); so do they when the journal
#           is cut after a promotion and no checkpoint survives (kill -9 between a result and
#           its checkpoint).
#   stress: many small ASHA sweeps under mpirun -n 3 and -n 4, where workers pause trials that
#           are promoted at once: every one ends with exit 0, no trial failed or errored, no
#           result twice, and no message the coordinator had to ignore (a paused trial is never
#           handed to a second worker before its first one lets go of it).
#   faults: a trial that diverges ends as diverged, one whose config the trainer refuses is
#           errored at once (it would be refused every time); the sweep goes on and finishes.
#           A sweep folder in use (its coordinator blocked reading a FIFO for its data) refuses a
#           --resume that names the holder; once the holder is killed, --resume goes on.
#           (Retries up to max_failures are exercised by the resume case: a killed trial.)
#   kill_mpi: mpirun -n 3, every rank killed with kill -9 mid-sweep, then --resume on 3 ranks:
#           the journal written before the kill is kept, no result twice, every trial's results
#           are epochs 1..k without a gap, none errored.
#   promote: one process; a trial ASHA paused and promoted to max_t has the metrics, weights and
#           optimizer state of the same config trained straight through with kiln train.
#   best:   best.json, best.yaml and the closing line name the best trial's best epoch's model
#           (checkpoints/best.h5), not its last epoch's: with train_loss maximized the best epoch
#           is the first; kiln export takes it.
# usage: test_tune.sh mpi|stress|resume|kill_mpi|promote|faults|best PATH_TO_KILN   (exits 77 to skip without Fashion-MNIST or
#        mpirun)
set -uo pipefail
mode="$1"
kiln="$2"
name="test_tune ($mode)"
examples="$(cd "$(dirname "$0")/../../examples" && pwd)"
# shellcheck source=../skip.sh
source "$(dirname "$0")/../skip.sh"
[ -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] ||
    skip_missing "$name" "Fashion-MNIST is not installed (dataset-fashion-mnist)"
[[ "$mode" != mpi && "$mode" != stress && "$mode" != kill_mpi ]] || command -v mpirun >/dev/null ||
    skip_missing "$name" "no mpirun (openmpi-bin)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
cp "$examples/fashion-mnist/mlp.yaml" base.yaml
fails=0
check() { # description, command...
    local what="$1"; shift
    if "$@"; then echo "ok: $what"; else echo "FAILED: $what"; fails=$((fails + 1)); fi
}
# Every result once: no (trial, t) twice in a journal.
no_duplicates() {
    [ -z "$(grep '"event":"result"' "$1" | sed 's/.*"trial":\([0-9]*\),"t":\([0-9]*\),.*/\1 \2/' |
        sort | uniq -d)" ]
}
results_count() { grep -c '"event":"result"' "$1"; }
# results.csv without the failures column (a killed trial counts one), sorted.
core() { cut -d, -f1-6 "$1" | sort; }

sweep() { # run_cap, max_t, extra parameter lines
    cat >sweep.yaml <<EOF
base: base.yaml
metric: {name: val_accuracy, goal: maximize}
method: random
run_cap: $1
seed: 3
parameters:
  optimizer.lr: {log_uniform_values: {min: 3e-4, max: 3e-3}}
  model.layers.0.units: {values: [32, 64]}
  data.limit: {value: 1500}
  schedule.warmup_steps: {value: 0}
  train.threads: {value: 1}
$3
scheduler: {type: asha, max_t: $2, grace_period: 1, reduction_factor: 2}
EOF
}

case $mode in
mpi)
    sweep 8 4 ""
    mpirun -n 3 --oversubscribe "$kiln" tune sweep.yaml --dir s --plain >out.txt 2>err.txt
    rc=$?
    check "the 3-rank sweep exits 0" test $rc -eq 0
    check "results.csv has a row per trial" test "$(tail -n +2 s/results.csv | wc -l)" -eq 8
    check "best.json names the best epoch's checkpoint" grep -q '"checkpoint": ".*best.h5"' s/best.json
    check "best.yaml is a config kiln train loads" "$kiln" train s/best.yaml --print-config -q
    check "no result journalled twice" no_duplicates s/journal.jsonl
    check "some trial was promoted" grep -q '"job":"promote"' s/journal.jsonl
    check "the report is written" "$kiln" tune report s
    check "the report has the curves" grep -q '<svg' s/report.html
    cp s/results.csv before.csv
    before=$(results_count s/journal.jsonl)
    mpirun -n 3 --oversubscribe "$kiln" tune --resume s --plain >out2.txt 2>err2.txt
    check "resuming a finished sweep exits 0" test $? -eq 0
    check "its journal replays to the same results" cmp -s before.csv s/results.csv
    check "and no result is added" test "$(results_count s/journal.jsonl)" -eq "$before"
    # Trials trained data-parallel: one coordinator and one worker group of 2 ranks.
    sweep 3 2 ""
    echo "ranks_per_trial: 2" >>sweep.yaml
    mpirun -n 3 --oversubscribe "$kiln" tune sweep.yaml --dir g --plain >out3.txt 2>err3.txt
    check "a sweep with ranks_per_trial 2 on 3 ranks exits 0" test $? -eq 0
    check "and runs its trials" test "$(tail -n +2 g/results.csv | wc -l)" -eq 3
    mpirun -n 4 --oversubscribe "$kiln" tune sweep.yaml --dir g4 --plain >out4.txt 2>err4.txt
    check "4 ranks cannot form groups of 2 after the coordinator: refused" test $? -ne 0
    check "saying why" grep -q 'ranks_per_trial 2' err4.txt
    ;;
stress)
    # Small trials (a few hundred rows, 16 units) so that the time between a pause and the
    # worker's next message, when the race lived, is a large part of each trial.
    sweep 8 4 ""
    sed -i -e 's/data.limit: {value: 1500}/data.limit: {value: 400}/' \
        -e 's/values: \[32, 64\]/values: [8, 16]/' sweep.yaml
    runs=${KILN_TEST_TUNE_STRESS_RUNS:-6}
    for i in $(seq 1 "$runs"); do
        for n in 3 4; do
            d="s$n-$i"
            sed -i "s/^seed: .*/seed: $((i * 10 + n))/" sweep.yaml
            mpirun -n $n --oversubscribe "$kiln" tune sweep.yaml --dir "$d" --plain \
                >"$d.out.txt" 2>"$d.err.txt"
            rc=$?
            check "sweep $d exits 0" test $rc -eq 0
            check "sweep $d: no trial failed or errored" \
                eval "! grep -qE '\"event\":\"(failed|errored)\"' $d/journal.jsonl"
            check "sweep $d: no result twice" no_duplicates "$d/journal.jsonl"
            check "sweep $d: no stale message" eval "! grep -q 'ignored' $d.err.txt"
            check "sweep $d: a row per trial" test "$(tail -n +2 "$d/results.csv" | wc -l)" -eq 8
        done
    done
    ;;
resume)
    sweep 6 4 ""
    "$kiln" tune sweep.yaml --dir a --plain >a.txt 2>&1
    check "the uninterrupted sweep exits 0" test $? -eq 0
    # Killed with kill -9 right after its 4th result is journalled, in the middle of a trial: it
    # stops itself there (KILN_TEST_STOP_AT), at the same point however fast the machine is.
    KILN_TEST_STOP_AT=result:4 "$kiln" tune sweep.yaml --dir b --plain >b.txt 2>&1 &
    job=$!
    pid=""
    for _ in $(seq 1 600); do
        pid="$(grep -o 'stops itself at result (pid [0-9]*' b.txt | grep -o '[0-9]*$')"
        [ -n "$pid" ] && [ "$(awk '{print $3}' /proc/"$pid"/stat 2>/dev/null)" = T ] && break
        sleep 0.1
    done
    check "it stopped itself after its 4th result" test -n "$pid"
    kill -9 $job
    wait $job 2>/dev/null
    killed_at=$(results_count b/journal.jsonl)
    check "it was killed mid-sweep ($killed_at results in)" test "$killed_at" -lt "$(results_count a/journal.jsonl)"
    "$kiln" tune --resume b --plain >b2.txt 2>&1
    check "the resumed sweep exits 0" test $? -eq 0
    check "no result journalled twice" no_duplicates b/journal.jsonl
    check "as many results as the uninterrupted sweep" \
        test "$(results_count b/journal.jsonl)" -eq "$(results_count a/journal.jsonl)"
    check "the same results as the uninterrupted sweep" cmp -s <(core a/results.csv) <(core b/results.csv)
    # kill -9 between a result and its checkpoint, made deterministic: the journal up to the
    # first promotion and no checkpoint at all. The promoted trial trains again from scratch,
    # so its rung's result arrives a second time and must not end the promotion.
    cp -r a c
    rm -rf c/trials c/results.csv c/best.*
    head -n "$(grep -n '"job":"promote"' a/journal.jsonl | head -n 1 | cut -d: -f1)" \
        a/journal.jsonl >c/journal.jsonl
    "$kiln" tune --resume c --plain >c.txt 2>&1
    check "a sweep resumed without its checkpoints exits 0" test $? -eq 0
    check "and reaches the same results" \
        eval "test -s c/results.csv && cmp -s <(core a/results.csv) <(core c/results.csv)"
    check "with every result once" no_duplicates c/journal.jsonl
    # A journal an older kiln wrote (no holds, no leases, no released events) resumes too.
    cp -r a o
    rm -rf o/trials o/results.csv o/best.*
    head -n "$(grep -n '"job":"promote"' a/journal.jsonl | head -n 1 | cut -d: -f1)" \
        a/journal.jsonl | sed -e 's/,"holds":true//' -e 's/,"lease":[0-9]*//' \
        -e '/"event":"released"/d' >o/journal.jsonl
    "$kiln" tune --resume o --plain >o.txt 2>&1
    check "a sweep an older kiln began resumes" test $? -eq 0
    check "to the same results" \
        eval "test -s o/results.csv && cmp -s <(core a/results.csv) <(core o/results.csv)"
    ;;
kill_mpi)
    # The README's example: mpirun -n 3 kiln tune, every rank killed with kill -9 in the middle
    # of the sweep (the coordinator stops itself right after its 4th result, so the point is the
    # same however fast the machine is), then --resume on 3 ranks: nothing lost or repeated.
    # Which trials ASHA promotes depends on the order results arrive from two workers, so the
    # results are checked for what must hold, not against another sweep.
    sweep 6 4 ""
    KILN_TEST_STOP_AT=result:4 mpirun -n 3 --oversubscribe "$kiln" tune sweep.yaml --dir b \
        --plain >b.txt 2>&1 &
    job=$!
    pid=""
    for _ in $(seq 1 1200); do
        pid="$(grep -o 'stops itself at result (pid [0-9]*' b.txt | grep -o '[0-9]*$')"
        [ -n "$pid" ] && [ "$(awk '{print $3}' /proc/"$pid"/stat 2>/dev/null)" = T ] && break
        sleep 0.1
    done
    check "the coordinator stopped itself after its 4th result" test -n "$pid"
    ranks="$(pgrep -P $job)"
    check "the job's 3 ranks are found" test "$(echo "$ranks" | wc -w)" -eq 3
    kill -9 $ranks $job 2>/dev/null
    wait $job 2>/dev/null
    cp b/journal.jsonl killed.jsonl
    check "it was killed mid-sweep ($(results_count killed.jsonl) results in)" \
        test "$(results_count killed.jsonl)" -ge 4
    mpirun -n 3 --oversubscribe "$kiln" tune --resume b --plain >b2.txt 2>&1
    check "the resumed 3-rank sweep exits 0" test $? -eq 0
    check "nothing lost: the journal written before the kill is kept as it was" \
        cmp -s killed.jsonl <(head -n "$(wc -l <killed.jsonl)" b/journal.jsonl)
    check "nothing repeated: no result journalled twice" no_duplicates b/journal.jsonl
    check "a row per trial" test "$(tail -n +2 b/results.csv | wc -l)" -eq 6
    check "no trial errored" eval "! grep -q '\"event\":\"errored\"' b/journal.jsonl"
    # Each trial's results are its epochs 1..k, none skipped: a resumed trial went on from its
    # checkpoint instead of losing or redoing epochs.
    gaps=0
    for t in $(grep '"event":"result"' b/journal.jsonl | sed 's/.*"trial":\([0-9]*\),.*/\1/' |
        sort -un); do
        got="$(grep '"event":"result"' b/journal.jsonl | grep "\"trial\":$t," |
            sed 's/.*"t":\([0-9]*\),.*/\1/' | sort -n | tr '\n' ' ')"
        [ "$got" = "$(seq 1 "$(echo "$got" | wc -w)" | tr '\n' ' ')" ] || gaps=$((gaps + 1))
    done
    check "every trial's results are epochs 1..k without a gap" test $gaps -eq 0
    ;;
promote)
    # docs/tune.md: a promoted trial resumes from its checkpoint, bit-identical to never having
    # paused. A trial that ASHA paused and promoted up to max_t is trained again straight
    # through with kiln train from its own config.yaml: every epoch's metrics and the final
    # weights and optimizer state must be the same.
    sweep 4 4 ""
    "$kiln" tune sweep.yaml --dir p --plain >p.txt 2>&1
    check "the sweep exits 0" test $? -eq 0
    trial=""
    for t in $(grep '"decision":"done"' p/journal.jsonl | sed 's/.*"trial":\([0-9]*\),.*/\1/'); do
        if [ "$(grep -c "\"trial\":$t,\"job\":\"promote\"" p/journal.jsonl)" -ge 1 ] &&
            grep -q "\"trial\":$t,.*\"decision\":\"pause\"" p/journal.jsonl; then
            trial=$t
            break
        fi
    done
    check "a trial was paused, promoted and trained to max_t" test -n "$trial"
    dir="p/trials/trial-$(printf %04d "${trial:-0}")"
    "$kiln" train "$dir/config.yaml" --name straight -q >straight.txt 2>&1
    check "its config trains straight through" test $? -eq 0
    check "every epoch's metrics are the same" \
        cmp -s <(cut -d, -f1-8 "$dir/metrics.csv") <(cut -d, -f1-8 runs/straight/metrics.csv)
    if /usr/bin/python3 -c "import h5py" 2>/dev/null || part_missing "the weights' comparison (python3-h5py)"; then
        check "the final weights and optimizer state are the same bits (h5py)" /usr/bin/python3 -c "
import h5py, numpy, sys
a = h5py.File('$dir/checkpoints/final.h5', 'r')
b = h5py.File('runs/straight/checkpoints/final.h5', 'r')
names = []
for g in ('params', 'buffers', 'optimizer'):
    if g in a:
        a[g].visititems(lambda n, o: names.append(g + '/' + n) if isinstance(o, h5py.Dataset) else None)
sys.exit(not names or any(not numpy.array_equal(a[n][()], b[n][()]) for n in names))"
    fi
    ;;
faults)
    # Trial values: SGD at lr 1e6 diverges; batch_size 100000 is larger than the data, so its
    # run fails.
    cat >sweep.yaml <<EOF
base: base.yaml
metric: {name: val_loss, goal: minimize}
method: grid
parameters:
  optimizer.name: {value: sgd}
  optimizer.lr: {grid: [1e6, 0.05]}
  train.batch_size: {grid: [100000, 64]}
  data.limit: {value: 1000}
  schedule.warmup_steps: {value: 0}
  train.threads: {value: 1}
max_failures: 2
scheduler: {type: fifo, max_t: 2}
EOF
    "$kiln" tune sweep.yaml --dir f --plain >out.txt 2>&1
    check "the sweep with bad trials exits 0" test $? -eq 0
    check "the diverging trial is marked diverged" grep -q '^1,diverged' f/results.csv
    check "the trials whose config the trainer refuses are errored at once" \
        test "$(grep -c '"event":"errored".*"failures":1' f/journal.jsonl)" -eq 2
    check "and say so in results.csv" test "$(grep -c '^[02],errored,' f/results.csv)" -eq 2
    check "the good trial finished" grep -q '^3,done,' f/results.csv
    check "it is the best" grep -q '"trial": 3' f/best.json
    # Every trial fails, all 6 with batch_size 100000 (the same error). The sweep exits
    # 1 and says why; on a terminal (script(1) gives it one, where a pseudo-terminal can be
    # opened) its table shows no rung -1 or nan for trials without a value.
    sed -i 's/grid: \[100000, 64\]/grid: [100000, 100000]/; s/grid: \[1e6, 0.05\]/grid: [1e6, 0.05, 0.01]/' sweep.yaml
    "$kiln" tune sweep.yaml --dir allfail --plain >af.txt 2>&1
    check "a sweep whose every trial failed exits 1" test $? -eq 1
    check "saying so, with the first error and how many trials hit it" grep -q \
        "every one of the 6 trials failed, so there is no best trial; 6 of them with the error of the first, trial 0: .*batch_size" af.txt
    check "and writes no best.json" test ! -e allfail/best.json
    if script -qec true /dev/null >/dev/null 2>&1; then
        script -qec "$kiln tune sweep.yaml --dir allfail-tty" /dev/null >aft.txt 2>&1
        check "on a terminal too (exit 1)" grep -q "every one of the 6 trials failed" aft.txt
        check "its table shows no rung -1, nor nan" bash -c "! grep -Eq ' -1 |nan' aft.txt"
    else
        echo "skipped: the live table on a terminal (no pseudo-terminal can be opened here)"
    fi
    # The lock: the first coordinator holds the folder while it waits for data from a FIFO that
    # nobody writes, a wait that lasts as long as the test wants.
    mkfifo rows.csv
    cat >lock.yaml <<EOF
base:
  data: {train: {format: csv, path: rows.csv, label_column: label}, val_fraction: 0.25}
  model: {layers: [{type: dense, units: 4}]}
  train: {batch_size: 4}
metric: {name: val_loss}
run_cap: 2
parameters:
  optimizer.lr: {values: [0.01, 0.1]}
scheduler: {type: fifo, max_t: 1}
EOF
    "$kiln" tune lock.yaml --dir l --plain >l1.txt 2>&1 &
    holder=$!
    for _ in $(seq 1 300); do grep -q '^pid' l/kiln.lock 2>/dev/null && break; sleep 0.1; done
    timeout 60 "$kiln" tune --resume l --plain >l2.txt 2>&1 # without the lock: blocked too
    check "a second coordinator on a sweep folder in use is refused (exit 4)" test $? -eq 4
    check "naming the holder" grep -q "in use by another kiln process: pid $holder" l2.txt
    kill -9 $holder
    wait $holder 2>/dev/null
    rm rows.csv
    { echo "a,b,label"; for i in $(seq 1 40); do echo "$i,$((i % 7)),$((i % 2))"; done; } >rows.csv
    "$kiln" tune --resume l --plain >l3.txt 2>&1
    check "once the holder is killed, --resume goes on" test $? -eq 0
    ;;
best)
    # The training loss falls epoch after epoch, so maximizing it makes epoch 1 every trial's
    # best and epoch 3 its last.
    cat >sweep.yaml <<EOF
base: base.yaml
metric: {name: train_loss, goal: maximize}
method: grid
parameters:
  optimizer.lr: {grid: [1e-3, 2e-3]}
  data.limit: {value: 1000}
  schedule.warmup_steps: {value: 0}
  train.threads: {value: 1}
scheduler: {type: fifo, max_t: 3}
EOF
    "$kiln" tune sweep.yaml --dir b --plain >out.txt 2>&1
    check "the sweep exits 0" test $? -eq 0
    trial=$(sed -n 's/.*"trial": \([0-9]*\).*/\1/p' b/best.json)
    ck="b/trials/trial-000$trial/checkpoints"
    check "best.json names the trial's best.h5" grep -q "\"checkpoint\": \"$ck/best.h5\"" b/best.json
    check "beside its final.h5, another file" bash -c "test -s $ck/final.h5 && ! cmp -s $ck/final.h5 $ck/best.h5"
    first=$(awk -F, 'NR == 2 {print $3}' "b/trials/trial-000$trial/metrics.csv")
    value=$(sed -n 's/.*"value": \([-0-9.e]*\).*/\1/p' b/best.json)
    check "best.json's value is epoch 1's ($first ~ $value)" \
        python3 -c "import sys; sys.exit(abs($first - $value) > 1e-6 * abs($value))"
    check "best.yaml names that model" grep -q "model: $ck/best.h5" b/best.yaml
    check "so does the closing line" grep -q "best epoch's model $ck/best.h5" out.txt
    if /usr/bin/python3 -c "import h5py" 2>/dev/null; then
        check "best.h5 holds epoch 1 (h5py)" /usr/bin/python3 -c "
import h5py, sys
sys.exit(int(h5py.File('$ck/best.h5')['state'].attrs['epoch']) != 1)"
    else
        part_missing "best.h5's epoch (no python3-h5py)"
    fi
    "$kiln" export "$(sed -n 's/.*"checkpoint": "\(.*\)".*/\1/p' b/best.json)" -o m.h5 >x.txt 2>&1
    check "kiln export takes it" test $? -eq 0
    ;;
*)
    echo "usage: test_tune.sh mpi|stress|resume|kill_mpi|promote|faults|best PATH_TO_KILN" >&2; exit 2 ;;
esac
if [ $fails -ne 0 ]; then
    for f in *.txt; do echo "--- $f"; tail -n 30 "$f"; done
    exit 1
fi
echo "$name: all passed"
