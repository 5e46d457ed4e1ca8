#!/usr/bin/env bash
# build_table.sh: the tabular benchmark for `kiln tune --simulate` (smarter search issue): trains N
# configurations (default 200) of the Fashion-MNIST MLP, drawn at random from the wide space of
# bench/run_search_quality.sh, for max_t epochs each (default 27) on a fixed training subset
# (data.limit, default 12000), as one fifo sweep (no early stopping: every curve is whole), then
# writes the table: trial,t,value,seconds and one column per swept parameter, named by its path,
# with each trial's value of it. `kiln tune --simulate TABLE SWEEP` then snaps the proposals of
# any sampler to these rows (docs/tune.md, "Tabular mode").
#
# It resumes where it stopped: run it again after a kill or a reboot and the sweep goes on with
# `kiln tune --resume` (trials resume from their last checkpoint); once the sweep has finished,
# it only writes the table again. On the 2-core VM of bench/RESULTS.md the whole table is about
# an hour of both cores (mpirun -n 3: rank 0 coordinates, two workers train).
#
#   bench/build_table.sh [--trials N] [--max-t T] [--limit L] [--seed S] [--dir DIR] [--out CSV]
#
# Environment: KILN (default /tmp/build-rel/kiln), MPIRUN (default mpirun), PYTHON (default
# /usr/bin/python3, to turn the journal into the table).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
KILN=${KILN:-/tmp/build-rel/kiln}
MPIRUN=${MPIRUN:-mpirun}
PYTHON=${PYTHON:-/usr/bin/python3}
trials=200
max_t=27
limit=12000
seed=0
dir=/tmp/kiln-table
out=$here/tables/fashion-mnist-wide.csv

while [ $# -gt 0 ]; do
    case $1 in
    --trials) trials=$2; shift 2 ;;
    --max-t) max_t=$2; shift 2 ;;
    --limit) limit=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h | --help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "build_table.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
done

mkdir -p "$dir"
sweep=$dir/sweep.yaml
if [ ! -e "$dir/sweep/journal.jsonl" ]; then
    cat >"$sweep" <<EOF
# build_table.sh: $trials configurations of the wide space, max_t $max_t, data.limit $limit
base: $root/examples/fashion-mnist/mlp.yaml
metric: {name: val_accuracy, goal: maximize}
method: random
run_cap: $trials
seed: $seed
parameters:
  optimizer.lr: {log_uniform_values: {min: 1e-5, max: 1e-1}}
  optimizer.weight_decay: {log_uniform_values: {min: 1e-6, max: 1e-2}}
  schedule.min_lr: {value: 0}
  train.batch_size: {values: [64, 128, 256]}
  model.layers.0.units: {values: [128, 256, 512]}
  model.layers.1.rate: {uniform: {min: 0.0, max: 0.5}}
  data.limit: {value: $limit}
  train.threads: {value: 1}
scheduler: {type: fifo, max_t: $max_t}
EOF
    "$MPIRUN" -n 3 --oversubscribe "$KILN" tune "$sweep" --dir "$dir/sweep" --plain
elif ! grep -q '"event":"finished"' "$dir/sweep/journal.jsonl"; then
    "$MPIRUN" -n 3 --oversubscribe "$KILN" tune --resume "$dir/sweep" --plain
fi

# The table from the journal: each result's epoch and value, its seconds (the time since the
# trial's previous event), and the trial's swept values from its "started" event.
mkdir -p "$(dirname "$out")"
"$PYTHON" - "$dir/sweep/journal.jsonl" "$out" <<'EOF'
import csv, json, sys

journal, out = sys.argv[1], sys.argv[2]
overrides, last_time, rows, keys = {}, {}, {}, []
for line in open(journal):
    ev = json.loads(line)
    trial = ev.get("trial")
    if ev["event"] == "started":
        last_time[trial] = ev["time"]
        if "overrides" in ev:
            overrides[trial] = ev["overrides"]
            keys += [k for k in ev["overrides"] if k not in keys]
    elif ev["event"] == "result":
        value = "nan" if ev["value"] is None else ev["value"]
        rows.setdefault(trial, {})[ev["t"]] = (value, ev["time"] - last_time[trial])
        last_time[trial] = ev["time"]
with open(out, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["trial", "t", "value", "seconds"] + keys)
    for trial in sorted(rows):
        for t in sorted(rows[trial]):
            value, seconds = rows[trial][t]
            w.writerow([trial, t, value, f"{seconds:.3f}"] + [overrides[trial][k] for k in keys])
print(f"build_table.sh: {len(rows)} curves in {out}")
EOF
