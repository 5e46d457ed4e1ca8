#!/usr/bin/env bash
# run_table_quality.sh: search quality on the tabular Fashion-MNIST benchmark (smarter search
# issue). Over many seeds, it replays each search method against the table of
# bench/build_table.sh (200 configurations of the wide space x 27 epochs, validation accuracy per
# epoch) with `kiln tune --simulate TABLE SWEEP --workers W --target X` (docs/tune.md, "Tabular
# mode": every proposal trains along the nearest tabulated configuration's curve), and measures:
#   - compute to reach 0.89 and 0.90 validation accuracy: epochs trained, summed over trials, in
#     the order results arrived with W simulated workers, until a reported value first reaches
#     the target (or "not reached" within the target budget);
#   - the best final validation accuracy at a fixed budget: the sweep's best trial's last value
#     (the table holds validation accuracy only; there is no test accuracy to report).
# Methods: random search (fifo), random + ASHA, TPE (fifo), TPE + ASHA, TPE + ASHA in stop mode,
# PBT (kiln refuses pbt under --simulate: reported as not supported yet), and the peer, Optuna
# 3.1's TPESampler(seed) + SuccessiveHalvingPruner (min_resource 1, reduction_factor 3, as
# kiln's ASHA) on the same table, with the same snapping rule and simulated workers
# (bench/table_quality.py). Prints a markdown table with the goal lines; raw results per seed in
# OUT/budget.tsv and OUT/target.tsv, the sweep files in OUT/sweeps/.
#
#   bench/run_table_quality.sh [--table CSV] [--seeds N] [--first-seed S] [--budget E]
#                              [--target-budget E] [--workers W] [--targets LIST]
#                              [--methods LIST] [--jobs J] [--out DIR] [--analyse DIR]
#
# Environment: KILN (default /tmp/build-rel/kiln, a Release build), PYTHON (default
# /usr/bin/python3, with numpy, PyYAML and, for the peer, optuna 3.1).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KILN=${KILN:-/tmp/build-rel/kiln}
PYTHON=${PYTHON:-/usr/bin/python3}
table=$here/tables/fashion-mnist-wide.csv
seeds=200
first_seed=0
budget=0        # 0: 12 x max_t epochs (run_search_quality.sh's budget)
target_budget=0 # 0: the table's configurations x max_t epochs
workers=2       # as the table was built: mpirun -n 3, two workers
targets=0.89,0.90
methods=random,random+asha,tpe,tpe+asha,tpe+asha-stop,pbt,optuna
jobs=1
out=""
analyse=""

usage() {
    sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'
    cat <<'EOF'

  --table CSV          the table (default bench/tables/fashion-mnist-wide.csv, from
                       bench/build_table.sh)
  --seeds N            seeds per method (default 200): kiln's sweep seed and Optuna's
                       TPESampler(seed) are S = first-seed .. first-seed + N - 1
  --first-seed S       (default 0)
  --budget E           the fixed budget, in epochs (default 12 x max_t = 324): each method's
                       run_cap is E over its expected epochs per trial (fifo and pbt: max_t;
                       ASHA, grace 1, eta 3: 3 at max_t 27); the table shows the epochs each
                       actually used. Optuna gets TPE + ASHA's trial count, and a second row
                       cuts it at the epochs kiln's TPE + ASHA used on each seed
  --target-budget E    the compute-to-target runs, in epochs (default: configurations x max_t,
                       5400): run_cap as above; a target first reached later is "not reached"
                       (Optuna's run stops at E epochs, or once every target is reached)
  --workers W          simulated workers (default 2, as build_table.sh trained the table)
  --targets LIST       validation accuracies to reach, comma-separated (default 0.89,0.90; the
                       goal lines use the last)
  --methods LIST       a subset of random,random+asha,tpe,tpe+asha,tpe+asha-stop,pbt,optuna
  --jobs J             seeds run in parallel (default 1); each job is one process at a time
  --out DIR            the folder for the sweeps and the results (default: a new
                       /tmp/kiln-table-quality.*); must not hold results yet
  --analyse DIR        run nothing: print the report again from DIR's TSV files

kiln tune --simulate takes one --target and no seed, so every seed gets its own copy of each
sweep file (seed: S) and kiln runs once for the budget and once per target; the sweeps' space is
bench/build_table.sh's own `parameters:` lines, read from that script. About 7 s of one core per
seed with every method (most of it kiln's TPE over 1800 trials and Optuna): 200 seeds take
about 25 minutes, or half that with --jobs 2 on two idle cores.
EOF
}

while [ $# -gt 0 ]; do
    case $1 in
    --table) table=$2; shift ;;
    --seeds) seeds=$2; shift ;;
    --first-seed) first_seed=$2; shift ;;
    --budget) budget=$2; shift ;;
    --target-budget) target_budget=$2; shift ;;
    --workers) workers=$2; shift ;;
    --targets) targets=$2; shift ;;
    --methods) methods=$2; shift ;;
    --jobs) jobs=$2; shift ;;
    --out) out=$2; shift ;;
    --analyse) analyse=$2; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "run_table_quality.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done

if [ ! -x "$PYTHON" ]; then
    echo "run_table_quality.sh: $PYTHON not found; set PYTHON" >&2
    exit 2
fi
if [ -n "$analyse" ]; then
    if [ ! -f "$analyse/params.tsv" ] || [ ! -f "$analyse/budget.tsv" ]; then
        echo "run_table_quality.sh: $analyse holds no results of this script (params.tsv," \
             "budget.tsv); --analyse takes a folder made by its --out" >&2
        exit 2
    fi
    exec "$PYTHON" "$here/table_quality.py" analyse "$analyse"
fi

if [ ! -f "$table" ]; then
    echo "run_table_quality.sh: the table $table does not exist; build it with" \
         "bench/build_table.sh (about an hour of both cores; it writes" \
         "bench/tables/fashion-mnist-wide.csv), or pass --table PATH" >&2
    exit 2
fi
if [ ! -x "$KILN" ]; then
    echo "run_table_quality.sh: $KILN not found; build kiln (cmake --build /tmp/build-rel" \
         "--target kiln) or set KILN" >&2
    exit 2
fi
mods="import numpy, yaml"
case ",$methods," in
*,optuna,*) mods="$mods, optuna; v = optuna.__version__
assert v.startswith('3.1'), 'optuna ' + v + ', not 3.1'" ;;
esac
if ! err=$("$PYTHON" -c "$mods" 2>&1); then
    echo "run_table_quality.sh: $PYTHON lacks what the analysis needs (numpy, PyYAML, and" \
         "optuna 3.1 for the peer): ${err##*$'\n'}" >&2
    exit 2
fi

if [ -z "$out" ]; then
    out=$(mktemp -d /tmp/kiln-table-quality.XXXXXX)
fi
mkdir -p "$out"
if [ -e "$out/budget.tsv" ]; then
    echo "run_table_quality.sh: $out already holds results; pick another --out, or" \
         "--analyse $out" >&2
    exit 2
fi

echo "# kiln: $KILN ($("$KILN" --version 2>&1 | head -1)); out: $out"
echo "# start $(date -u +%H:%M:%S), load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$PYTHON" "$here/table_quality.py" run --table "$table" --out "$out" --kiln "$KILN" \
    --seeds "$seeds" --first-seed "$first_seed" --budget "$budget" \
    --target-budget "$target_budget" --workers "$workers" --targets "$targets" \
    --methods "$methods" --jobs "$jobs" | tee "$out/report.md"
echo "# done $(date -u +%H:%M:%S), load average $(cut -d' ' -f1-3 /proc/loadavg)"
