#!/usr/bin/env bash
# kiln tune with the pbt scheduler on a small CSV data set, end to end:
#   resume: one process, uninterrupted; the same sweep killed with kill -9 after its 22nd result
#           and resumed: the same exploits (trial, donor, t, values) in the same order, and the
#           same results; best.yaml's schedule replays with kiln train to the best trial's last
#           epoch; report.html draws the lineage, each mutated key by epoch and the best
#           trial's schedule; a journal whose explored values were edited is refused on --resume;
#           --simulate refuses pbt.
#   mpi:    3 ranks (2 workers): exploits copy checkpoints across worker groups; each trial's
#           config.yaml holds the values its last job carried.
# usage: test_tune_pbt.sh resume|mpi PATH_TO_KILN   (exits 77 to skip without mpirun; KEEP=1
# keeps the temporary folder)
set -u
mode="$1"
kiln="$2"
name="test_tune_pbt ($mode)"
[[ "$mode" != mpi ]] || command -v mpirun >/dev/null || { echo "$name: no mpirun, skipped"; exit 77; }
tmp="$(mktemp -d)"
if [ -n "${KEEP:-}" ]; then echo "keeping $tmp"; else trap 'rm -rf "$tmp"' EXIT; fi
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
  model: {layers: [{type: dense, units: 16, activation: relu}, {type: dropout, rate: 0.1}, {type: dense, units: 3}]}
  optimizer: {name: sgd, momentum: 0.5}
  train: {batch_size: 32, epochs: 8, threads: 1}
metric: {name: val_accuracy}
run_cap: 6
seed: 4
parameters:
  optimizer.lr: {distribution: log_uniform_values, min: 1e-3, max: 0.3}
  optimizer.momentum: {values: [0.5, 0.9]}
  model.layers.1.rate: {values: [0.0, 0.1, 0.3]}
scheduler:
  type: pbt
  perturbation_interval: 2
  quantile_fraction: 0.34
  hyperparam_mutations:
    optimizer.lr: {distribution: log_uniform_values, min: 1e-3, max: 0.3}
    optimizer.momentum: [0.5, 0.7, 0.9]
    model.layers.1.rate: [0.0, 0.1, 0.2, 0.3]
EOF2
# Every exploit as the journal recorded it, in order, without its time and lease.
exploits() { grep '"donor"' "$1" | sed 's/"lease":[0-9]*,//; s/,"time":.*//'; }
core() { cut -d, -f1-6,8- "$1" | sort; }

case $mode in
resume)
    "$kiln" tune sweep.yaml --dir a --plain >a.txt 2>&1
    check "the uninterrupted sweep exits 0" test $? -eq 0
    n="$(exploits a/journal.jsonl | wc -l)"
    check "trials exploited others ($n)" test "$n" -ge 2
    check "every trial reached max_t" test "$(grep -c ',done,' a/results.csv)" -eq 6
    check "best.json names a best.h5" grep -q '"checkpoint": *".*best.h5"' a/best.json
    # An exploit copied its donor's checkpoint: the trial's folder has no checkpoint of its own
    # past the copy, and it trained on from the donor's t.
    first="$(exploits a/journal.jsonl | head -1)"
    tr="$(echo "$first" | grep -o '"trial":[0-9]*' | cut -d: -f2)"
    dt="$(echo "$first" | grep -o '"donor_t":[0-9]*' | cut -d: -f2)"
    check "trial $tr's next result after its exploit is at t = $((dt + 1))" \
        test "$(sed -n "/\"trial\":$tr,\"job\":\"promote\".*\"donor\"/,\$p" a/journal.jsonl |
            grep "\"event\":\"result\",\"trial\":$tr," | head -1 | grep -o '"t":[0-9]*' | cut -d: -f2)" \
        -eq $((dt + 1))
    # best.yaml's schedule replays: kiln train segment by segment gives the best trial's last
    # epoch to the printed digits.
    check "best.json holds the schedule" grep -q '"schedule"' a/best.json
    grep '^#   kiln train' a/best.yaml | sed "s|^#   kiln|\"$kiln\"|" >replay.sh
    check "best.yaml holds replay commands" test -s replay.sh
    bash replay.sh >replay.txt 2>&1
    check "the replay runs" test $? -eq 0
    best="$(grep -o '"trial": *[0-9]*' a/best.json | head -1 | grep -o '[0-9]*$')"
    row() { grep '^8,' "$1" | tail -1 | cut -d, -f1-6; }
    check "and ends where trial $best ended" test "$(row runs/pbt-replay/metrics.csv)" = \
        "$(row a/trials/trial-$(printf %04d "$best")/metrics.csv)"
    "$kiln" train a/best.yaml --name pbt-replay --resume --change model.layers.0.units=8 >c1.txt 2>&1
    check "kiln train --change of a layer's width is refused as the checkpoint loads" \
        grep -q 'parameter layers.0.weight has shape (16, 4) in the file, but the model needs (8, 4)' c1.txt
    "$kiln" train a/best.yaml --name pbt-replay --resume --change optimizer.momentum=0 >c2.txt 2>&1
    check "and of SGD's momentum to 0, saying why" \
        grep -q 'the changed optimizer needs 0: a change such as SGD.s momentum to or from 0' c2.txt
    "$kiln" tune report a >report.txt 2>&1
    check "kiln tune report draws the lineage" grep -q 'id="plot-lineage"' a/report.html
    check "and each mutated key by epoch" test "$(grep -c 'id="plot-pbt-' a/report.html)" -eq 3
    check "and the best trial's schedule" grep -q "The best trial's schedule" a/report.html
    check "with a row per segment" test \
        "$(grep -o '<td class="n">trial [0-9]*</td>' a/report.html | wc -l)" -ge 1
    if command -v xmllint >/dev/null; then
        check "the page is well-formed" xmllint --noout a/report.html
    fi
    KILN_TEST_STOP_AT=result:22 "$kiln" tune sweep.yaml --dir b --plain >b.txt 2>&1 &
    job=$!
    pid=""
    for _ in $(seq 1 600); do
        pid="$(grep -o 'stops itself at result (pid [0-9]*' b.txt | grep -o '[0-9]*$')"
        [ -n "$pid" ] && [ "$(awk '{print $3}' /proc/"$pid"/stat 2>/dev/null)" = T ] && break
        sleep 0.1
    done
    check "it stopped itself after its 22nd result" test -n "$pid"
    kill -9 $job
    wait $job 2>/dev/null
    check "it was killed midway" test "$(grep -c '"finished"' b/journal.jsonl)" -eq 0
    "$kiln" tune --resume b --plain >b2.txt 2>&1
    check "the resumed sweep exits 0" test $? -eq 0
    check "it made the exploits the uninterrupted sweep made" \
        cmp -s <(exploits a/journal.jsonl) <(exploits b/journal.jsonl)
    check "with the same results" cmp -s <(core a/results.csv) <(core b/results.csv)
    # A journal whose explored values were edited no longer replays.
    cp -r a e
    if grep -q '"donor"' e/journal.jsonl; then
        sed -i '0,/\("donor":[0-9]*\)/s//\1/; 0,/"job":"promote","rung":0,"until_t":\([0-9]*\),"lease":\([0-9]*\),"overrides":{"optimizer.lr":"[^"]*"/s//"job":"promote","rung":0,"until_t":\1,"lease":\2,"overrides":{"optimizer.lr":"0.123"/' e/journal.jsonl
        "$kiln" tune --resume e --plain >e.txt 2>&1
        check "an edited exploit is refused on --resume" test $? -ne 0
        check "naming the trials and the values" grep -q 'exploited trial [0-9]* with optimizer.lr=0.123, but pbt explores optimizer.lr=' e.txt
    else
        check "the killed sweep had exploited before its 22nd result" false
    fi
    awk 'BEGIN { print "trial,t,value"; for (i = 0; i < 6; i++) for (t = 1; t <= 8; t++)
        printf "%d,%d,%.3f\n", i, t, 0.5 + 0.05 * t - 0.01 * i }' >curves.csv
    "$kiln" tune --simulate curves.csv sweep.yaml >s.txt 2>&1
    check "--simulate refuses pbt" grep -q 'cannot run the pbt scheduler' s.txt
    ;;
mpi)
    mpirun -n 3 --oversubscribe "$kiln" tune sweep.yaml --dir m --plain >m.txt 2>&1
    check "the sweep on 3 ranks exits 0" test $? -eq 0
    check "every trial reached max_t" test "$(grep -c ',done,' m/results.csv)" -eq 6
    n="$(exploits m/journal.jsonl | wc -l)"
    check "trials exploited others ($n)" test "$n" -ge 1
    same=0
    for i in $(seq 0 5); do
        last="$(grep "\"event\":\"started\",\"trial\":$i,.*\"overrides\"" m/journal.jsonl | tail -1)"
        lr="$(echo "$last" | grep -o '"optimizer.lr":"[^"]*"' | cut -d'"' -f4)"
        f="m/trials/trial-$(printf %04d $i)/config.yaml"
        [ -n "$lr" ] && grep -q "lr: $lr\$" "$f" && same=$((same + 1))
    done
    check "every trial trained the values its last job carried ($same of 6)" test $same -eq 6
    ;;
*)
    echo "usage: test_tune_pbt.sh resume|mpi PATH_TO_KILN" >&2; exit 2 ;;
esac
if [ $fails -gt 0 ]; then echo "$name: $fails failed"; exit 1; fi
echo "$name: passed"
