#!/usr/bin/env bash
# Experiment tracking as a user meets it (docs/runs.md): tiny runs trained on a small CSV in a git
# repository with an uncommitted change, a sweep, then every `kiln runs` command and its errors:
# run.json's provenance (commit, dirty flag, the diff), lineage (trial to sweep, model file to run),
# list with --where/--sort/--tag, show, compare (differing params only, --all), tag, delete to the
# trash and --purge, a run in use refused, a killed run recorded as killed, the index rebuilt
# from the folders when removed.
# usage: test_runs.sh PATH_TO_KILN
set -uo pipefail
kiln="$1"
[[ $kiln == */* && $kiln != /* ]] && kiln="$PWD/$kiln"
# shellcheck source=expect.sh
source "$(dirname "${BASH_SOURCE[0]}")/expect.sh"
tmp="$(mktemp -d)"
out="$tmp/out"
trap 'kill -9 "${job:-}" 2>/dev/null; rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1
check() { # description, command...
    local what="$1"
    shift
    if "$@"; then passed=$((passed + 1)); else
        failed=$((failed + 1))
        echo "FAIL: $what"
    fi
}

python3 -c "
import random
random.seed(1)
print('a,b,label')
for i in range(200):
    a, b = random.random(), random.random()
    print(f'{a:.4f},{b:.4f},{int(a + b > 1)}')" >d.csv
cat >tiny.yaml <<'EOF'
model:
  layers:
    - dense: {units: 8, activation: relu}
data: {train: {format: csv, path: d.csv}, val_fraction: 0.2}
optimizer: {name: adam, lr: 1e-2}
train: {epochs: 3, batch_size: 16}
EOF
git init -q . && git add tiny.yaml && git -c user.email=t@t -c user.name=t commit -qm tiny
commit="$(git rev-parse HEAD)"

expect 0 'done: 3 epochs' -- train tiny.yaml --name clean -q
echo '# an uncommitted change' >>tiny.yaml
expect 0 'done: 3 epochs' -- train tiny.yaml --name fast -q --set optimizer.lr=0.05
expect 0 'done: 3 epochs' -- train tiny.yaml --name slow -q --set optimizer.lr=0.001 \
    --set train.batch_size=32

# run.json: the flattened config, provenance and data.
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }
check "params flattened" [ "$(json runs/fast/run.json "d['params']['optimizer.lr']")" = 0.05 ]
check "status finished" [ "$(json runs/fast/run.json "d['status']")" = finished ]
check "git commit" [ "$(json runs/clean/run.json "d['provenance']['git']['commit']")" = "$commit" ]
check "clean run not dirty" [ "$(json runs/clean/run.json "d['provenance']['git']['dirty']")" = False ]
check "dirty run dirty" [ "$(json runs/fast/run.json "d['provenance']['git']['dirty']")" = True ]
check "diff saved" grep -q '+# an uncommitted change' runs/fast/git.diff
check "data hashed" [ "$(json runs/fast/run.json "d['data'][0]['sha256']")" = "$(sha256sum d.csv | cut -c1-64)" ]
check "samples/s" python3 -c "
import json; d = json.load(open('runs/fast/run.json')); assert d['system']['samples_per_s'] > 0
assert d['system']['peak_rss_bytes'] > 0 and d['system']['cpu_seconds'] > 0"
check "index made" [ -f runs/index.sqlite ]

# list
expect 0 'clean .*finished' -- runs list
expect 0 'RUN +STATUS +START +metrics.val_loss +metrics.val_accuracy' -- runs list
"$kiln" runs list --where 'params.optimizer.lr<0.02' >"$out" 2>&1
check "--where on a param" [ "$(grep -c finished "$out")" = 2 ]
check "--where left out fast" bash -c "! grep -q '^fast' '$out'"
"$kiln" runs list --where 'params.optimizer.lr>=0.01' --where 'params.train.batch_size=16' \
    --sort -params.optimizer.lr >"$out" 2>&1
check "two --where, --sort descending" [ "$(awk 'NR>1 {print $1}' "$out" | tr '\n' ' ')" = "fast clean " ]
"$kiln" runs list --sort params.optimizer.lr >"$out" 2>&1
check "--sort ascending" [ "$(awk 'NR>1 {print $1}' "$out" | tr '\n' ' ')" = "slow clean fast " ]
expect 0 'slow' -- runs list --where 'metrics.epoch=3' --where 'best.val_loss>0' --limit 3
expect 2 "--where 'params.x<<1': unexpected '<' at column 10" -- runs list --where 'params.x<<1'
expect 2 "--where 'lr<1': unknown field 'lr'" -- runs list --where 'lr<1'
expect 2 "metrics.val_loss is a number; 'low' is not" -- runs list --where 'metrics.val_loss<low'
expect 2 "--sort 'x!': unexpected '!'" -- runs list --sort 'x!'
expect 2 "--tag needs KEY=VALUE" -- runs list --tag team
expect 2 "unknown option '--bogus'" -- runs list --bogus
expect 1 'runs root nowhere: no such folder' -- runs --root nowhere list

# show and compare
expect 0 "git +$commit \(dirty, uncommitted diff in git.diff\)" -- runs show fast
expect 0 'optimizer.lr +0.05' -- runs show runs/fast
expect 0 'status +finished \(trained 3 epochs\)' -- runs show fast
expect 0 'data +train +.*d.csv  [0-9]+ bytes  sha256 [0-9a-f]{64}' -- runs show fast
expect 1 "no run 'nope' under runs" -- runs show nope
expect 2 'show takes one RUN' -- runs show
"$kiln" runs compare clean fast slow >"$out" 2>&1
check "compare: lr differs" grep -Eq '^  optimizer.lr +0.01 +0.05 +0.001' "$out"
check "compare: batch differs" grep -Eq '^  train.batch_size +16 +16 +32' "$out"
check "compare: same params hidden" bash -c "! grep -q '^  optimizer.name' '$out'"
check "compare: metrics side by side" grep -Eq '^  val_accuracy( +[0-9.]+){3}' "$out"
check "compare: provenance" grep -Eq "^  git commit +${commit:0:12} +${commit:0:12}\+dirty" "$out"
expect 0 '^  optimizer.name +adam +adam' -- runs compare clean fast --all
expect 2 'compare needs two runs or more, got 1' -- runs compare clean

# tag
expect 0 'fast: tag stage=try' -- runs tag fast team=vision stage=try
check "tag in run.json" [ "$(json runs/fast/run.json "d['tags']['team']")" = vision ]
"$kiln" runs list --tag team=vision >"$out" 2>&1
check "--tag filters" [ "$(awk 'NR>1 {print $1}' "$out" | tr '\n' ' ')" = "fast " ]
expect 0 'fast: tag team removed' -- runs tag fast team=
check "tag removed" [ "$(json runs/fast/run.json "'team' in d['tags']")" = False ]
expect 2 "tag: expected KEY=VALUE, got 'oops'" -- runs tag fast oops

# a sweep: its trials point to it, under the sweeps root
cat >sweep.yaml <<'EOF'
base: tiny.yaml
metric: {name: val_accuracy, goal: maximize}
method: grid
parameters:
  optimizer.lr:
    values: [0.01, 0.1]
scheduler: {type: fifo, max_t: 2}
EOF
expect 0 'best: trial' -- tune sweep.yaml --dir sweeps/s1
check "trial lineage" [ "$(json sweeps/s1/trials/trial-0001/run.json "d['lineage']['sweep']")" = "$tmp/sweeps/s1" ]
expect 0 's1/trials/trial-0001 +finished' -- runs --root sweeps list --where kind=trial
expect 0 'sweep +.*/sweeps/s1, trial 1' -- runs --root sweeps show trial-0001
expect 1 "run 'trials' is ambiguous|no run 'trials'" -- runs --root sweeps show trials

# export records the run and checkpoint
expect 0 "lineage: run $tmp/runs/fast" -- export runs/fast -o fast.h5

# a killed run: running while it trains (and its folder cannot be deleted), killed after
KILN_TEST_STOP_AT=step:20 "$kiln" train tiny.yaml --name killed -q --set train.epochs=50 \
    2>"$tmp/killed.err" &
job=$!
for _ in $(seq 1 200); do
    [[ "$(awk '{print $3}' /proc/$job/stat 2>/dev/null)" == T ]] && break
    sleep 0.1
done
expect 0 'status +running' -- runs show killed
expect 1 'in use|kiln.lock|held' -- runs delete killed
kill -TERM "$job"
kill -CONT "$job"
wait "$job"
check "killed exits 75" [ $? = 75 ]
job=
expect 0 'status +killed \(stopped by signal 15' -- runs show killed

# a failed run says why
expect 1 '' -- train tiny.yaml --name failed -q --set train.batch_size=1000
expect 0 'status +failed' -- runs show failed

# the index is a cache: removed, it is rebuilt from the folders
rm -f runs/index.sqlite runs/index.sqlite-wal runs/index.sqlite-shm
expect 0 'slow .*finished' -- runs list
check "rebuilt index" [ -f runs/index.sqlite ]

# delete: to the trash, then for good
expect 0 'moved runs/slow to runs/.trash/slow-' -- runs delete slow
check "in the trash" bash -c "ls -d runs/.trash/slow-*/run.json >/dev/null"
"$kiln" runs list >"$out" 2>&1
check "deleted run not listed" bash -c "! grep -q '^slow' '$out'"
expect 0 'removed runs/clean' -- runs delete clean --purge
check "purged" [ ! -e runs/clean ]
expect 1 "no run 'clean'" -- runs delete clean
expect 2 'delete needs a RUN' -- runs delete
expect 2 "unknown command 'frob'" -- runs frob
expect 2 'which command' -- runs
expect 0 'usage: kiln runs' -- runs --help

echo "test_runs: $passed passed, $failed failed"
[[ $failed == 0 ]]
