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
assert d['system']['peak_rss_bytes'] > 0 and d['system']['cpu_seconds'] > 0
assert 'device_memory_peak_bytes' not in d['system']  # a CPU run holds no device memory"
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
# a sweep folder directly under the working directory: its root is "." and the trials are
# indexed there, with no warning
expect 0 'best: trial' -- tune sweep.yaml --dir s2
check "no indexing warning for --dir s2" bash -c "! grep -q 'run record' '$out'"
expect 0 's2/trials/trial-0001 +finished' -- runs --root . list --where kind=trial

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

# a run killed with SIGKILL cannot say so: its record says running, and show tells it apart
KILN_TEST_STOP_AT=step:20 "$kiln" train tiny.yaml --name lost -q --set train.epochs=50 \
    2>"$tmp/lost.err" &
job=$!
for _ in $(seq 1 200); do
    [[ "$(awk '{print $3}' /proc/$job/stat 2>/dev/null)" == T ]] && break
    sleep 0.1
done
expect 0 'status +running$' -- runs show lost
expect 0 '^lost +running ' -- runs list
kill -KILL "$job"
wait "$job" 2>/dev/null
job=
expect 0 'status +running \(but no kiln holds its folder' -- runs show lost
expect 0 '^lost +lost ' -- runs list
expect 0 'removed runs/lost' -- runs delete lost --purge

# recording never stops training: an index that cannot be opened (a folder where the file goes)
# is a warning, and run.json is still written
mkdir -p broken/index.sqlite
expect 0 'warning: run record .*opening the runs index.*training goes on' -- \
    train tiny.yaml --name warned -q --set runs_dir=broken
check "the run finished and recorded itself" [ "$(json broken/warned/run.json "d['status']")" = finished ]

# a failed run says why
expect 1 '' -- train tiny.yaml --name failed -q --set train.batch_size=1000
expect 0 'status +failed' -- runs show failed

# MLflow's file store, read back as mlflow.store.tracking.file_store.FileStore reads it: numeric
# experiment folders with meta.yaml, run folders named by their 32-hex id with meta.yaml (status
# as RunStatus numbers), params/KEY holding the value, metrics/NAME lines "timestamp value step",
# tags/KEY, artifacts/.
expect 2 'export: which format\? --mlflow DIR' -- runs export
expect 2 "export: unknown option '--csv'" -- runs export --csv x
expect 0 'exported 2 runs to mlruns \(MLflow file store, experiment .runs.\)' -- \
    runs export --mlflow mlruns clean fast
expect 0 'exported 5 runs to mlruns' -- runs export --mlflow mlruns
mlcheck() {
    python3 - "$@" <<'EOF2'
import os, re, sys, yaml
root, commit = sys.argv[1], sys.argv[2]
exps = {}
for e in os.listdir(root):
    if not e.isdigit():
        assert e == ".trash", e
        continue
    meta = yaml.safe_load(open(os.path.join(root, e, "meta.yaml")))
    assert meta["experiment_id"] == e and meta["lifecycle_stage"] == "active", meta
    assert meta["artifact_location"] == "file://" + os.path.abspath(os.path.join(root, e))
    assert isinstance(meta["creation_time"], int)
    exps[meta["name"]] = e
assert set(exps) == {"Default", "runs"}, exps
runs = {}
exp = os.path.join(root, exps["runs"])
for r in os.listdir(exp):
    if r == "meta.yaml":
        continue
    assert re.fullmatch(r"[0-9a-f]{32}", r), r
    d = os.path.join(exp, r)
    meta = yaml.safe_load(open(os.path.join(d, "meta.yaml")))
    assert meta["run_id"] == meta["run_uuid"] == r and meta["experiment_id"] == exps["runs"]
    assert meta["status"] in (1, 3, 4, 5) and meta["source_type"] == 4 and meta["tags"] == []
    assert meta["artifact_uri"] == "file://" + os.path.abspath(d) + "/artifacts"
    assert isinstance(meta["start_time"], int) and meta["lifecycle_stage"] == "active"
    tags = {t: open(os.path.join(d, "tags", t)).read() for t in os.listdir(os.path.join(d, "tags"))}
    params = {p: open(os.path.join(d, "params", p)).read() for p in os.listdir(os.path.join(d, "params"))}
    metrics = {}
    for m in os.listdir(os.path.join(d, "metrics")):
        lines = open(os.path.join(d, "metrics", m)).read().splitlines()
        pts = []
        for line in lines:
            f = line.strip().split(" ")
            assert len(f) in (2, 3), (m, line)
            pts.append((int(f[0]), float(f[1]), int(f[2]) if len(f) == 3 else 0))
        metrics[m] = pts
    assert tags["mlflow.runName"] == meta["run_name"]
    assert os.path.exists(os.path.join(d, "artifacts", "run.json"))
    runs[meta["run_name"]] = (meta, tags, params, metrics)
assert set(runs) == {"clean", "fast", "slow", "killed", "failed"}, set(runs)
meta, tags, params, metrics = runs["fast"]
assert meta["status"] == 3 and meta["end_time"] >= meta["start_time"]
assert params["optimizer.lr"] == "0.05" and params["train.batch_size"] == "16", params
assert tags["mlflow.source.git.commit"] == commit and tags["kiln.git.dirty"] == "true"
assert [p[2] for p in metrics["val_loss"]] == [1, 2, 3], metrics["val_loss"]
ts = [p[0] for p in metrics["val_loss"]]
assert ts == sorted(ts) and ts[0] >= meta["start_time"], ts
assert runs["killed"][0]["status"] == 5 and runs["failed"][0]["status"] == 4
assert runs["clean"][1]["kiln.git.dirty"] == "false"
print("mlflow layout ok:", len(runs), "runs")
EOF2
}
check "MLflow file-store layout" mlcheck mlruns "$commit"
expect 0 'exported 5 runs to mlruns' -- runs export --mlflow mlruns
check "export again: the same runs and experiment" mlcheck mlruns "$commit"

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
