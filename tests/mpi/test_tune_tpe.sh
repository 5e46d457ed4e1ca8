#!/usr/bin/env bash
# kiln tune with method tpe on a small CSV data set, end to end:
#   resume: one process, uninterrupted; the same sweep killed with kill -9 after its 10th result
#           and resumed: every trial gets the same values as in the uninterrupted sweep (the
#           replay proposes each trial again and checks it against the journal), and the results
#           are the same; a journal whose values were edited is refused on --resume.
#   mpi:    3 ranks (2 workers): the values travel with each job; each trial's config.yaml holds
#           the values the journal recorded for it.
# usage: test_tune_tpe.sh resume|mpi PATH_TO_KILN   (exits 77 to skip without mpirun)
set -u
mode="$1"
kiln="$2"
name="test_tune_tpe ($mode)"
[[ "$mode" != mpi ]] || command -v mpirun >/dev/null || { echo "$name: no mpirun, skipped"; exit 77; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
fails=0
check() { # description, command...
    local what="$1"; shift
    if "$@"; then echo "ok: $what"; else echo "FAILED: $what"; fails=$((fails + 1)); fi
}
# Three classes from four features, 400 rows.
awk 'BEGIN { srand(5); print "a,b,c,d,label"
    for (i = 0; i < 400; i++) { a = rand(); b = rand(); c = rand(); d = rand()
        printf "%.4f,%.4f,%.4f,%.4f,%d\n", a, b, c, d, (a + b > 1 ? (c > 0.5 ? 2 : 1) : 0) } }' >rows.csv
cat >sweep.yaml <<EOF2
base:
  data: {train: {format: csv, path: rows.csv, label_column: label}, val_fraction: 0.25}
  model: {layers: [{type: dense, units: 16, activation: relu}, {type: dense, units: 3}]}
  train: {batch_size: 32, epochs: 4, threads: 1}
metric: {name: val_accuracy}
method: tpe
run_cap: 14
seed: 5
tpe: {n_startup_trials: 4}
parameters:
  optimizer.lr: {distribution: log_uniform_values, min: 1e-3, max: 0.3}
  model.layers.0.units: {values: [4, 16, 32]}
scheduler: {type: asha, max_t: 4, grace_period: 1, reduction_factor: 2}
EOF2
# Each new trial's values as the journal recorded them, one line per trial, in trial order.
proposals() { grep '"job":"new"' "$1" | sed 's/.*"trial":\([0-9]*\),.*"overrides":\({[^}]*}\).*/\1 \2/' | sort -n; }
core() { cut -d, -f1-6,8- "$1" | sort; }

case $mode in
resume)
    "$kiln" tune sweep.yaml --dir a --plain >a.txt 2>&1
    check "the uninterrupted sweep exits 0" test $? -eq 0
    check "it proposed all 14 trials" test "$(proposals a/journal.jsonl | wc -l)" -eq 14
    check "and trained them" test "$(grep -c ',done,' a/results.csv)" -ge 2
    check "the model was fitted (values beyond the random start differ from method random)" \
        test "$(sed 's/method: tpe/method: random/; /^tpe:/d' sweep.yaml >r.yaml &&
            "$kiln" tune r.yaml --dir r --plain >r.txt 2>&1 && proposals r/journal.jsonl |
            diff - <(proposals a/journal.jsonl) | grep -c '^>')" -gt 0
    KILN_TEST_STOP_AT=result:10 "$kiln" tune sweep.yaml --dir b --plain >b.txt 2>&1 &
    job=$!
    pid=""
    for _ in $(seq 1 600); do
        pid="$(grep -o 'stops itself at result (pid [0-9]*' b.txt | grep -o '[0-9]*$')"
        [ -n "$pid" ] && [ "$(awk '{print $3}' /proc/"$pid"/stat 2>/dev/null)" = T ] && break
        sleep 0.1
    done
    check "it stopped itself after its 10th result" test -n "$pid"
    kill -9 $job
    wait $job 2>/dev/null
    check "it was killed before proposing every trial" \
        test "$(proposals b/journal.jsonl | wc -l)" -lt 14
    cp -r b e
    "$kiln" tune --resume b --plain >b2.txt 2>&1
    check "the resumed sweep exits 0" test $? -eq 0
    check "it proposed every trial as the uninterrupted sweep did" \
        cmp -s <(proposals a/journal.jsonl) <(proposals b/journal.jsonl)
    check "with the same results" cmp -s <(core a/results.csv) <(core b/results.csv)
    # A journal whose proposal was edited no longer replays.
    sed -i '0,/"optimizer.lr":"[0-9.e-]*"/s//"optimizer.lr":"0.123"/' e/journal.jsonl
    "$kiln" tune --resume e --plain >e.txt 2>&1
    check "an edited proposal is refused on --resume" test $? -ne 0
    check "naming the trial and the values" grep -q 'started trial 0 with optimizer.lr=0.123, but the TPE sampler proposes optimizer.lr=' e.txt
    ;;
mpi)
    mpirun -n 3 --oversubscribe "$kiln" tune sweep.yaml --dir m --plain >m.txt 2>&1
    check "the sweep on 3 ranks exits 0" test $? -eq 0
    check "it proposed all 14 trials" test "$(proposals m/journal.jsonl | wc -l)" -eq 14
    check "and trained them" test "$(grep -c ',done,' m/results.csv)" -ge 2
    same=0
    for i in $(seq 0 13); do
        lr="$(proposals m/journal.jsonl | awk -v i=$i '$1 == i' | grep -o '"optimizer.lr":"[^"]*"' | cut -d'"' -f4)"
        f="m/trials/trial-$(printf %04d $i)/config.yaml"
        [ -n "$lr" ] && grep -q "lr: $lr\$" "$f" && same=$((same + 1))
    done
    check "every trial trained the values its job carried ($same of 14)" test $same -eq 14
    ;;
*)
    echo "usage: test_tune_tpe.sh resume|mpi PATH_TO_KILN" >&2; exit 2 ;;
esac
if [ $fails -gt 0 ]; then echo "$name: $fails failed"; exit 1; fi
echo "$name: passed"
