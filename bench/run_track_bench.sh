#!/usr/bin/env bash
# run_track_bench.sh: the two speed goals of experiment tracking (issue 18, docs/runs.md).
#   1. `kiln runs list` over 10,000 runs under 200 ms: runs made by gen_runs.py, the index built
#      by a first list (timed too), then REPS timed lists with the index current, and a list with
#      a --where and a --sort.
#   2. A tracked run's samples/s within 1% of an untracked one: bench/train/mlp_small.yaml trained
#      alternately with a run folder (run.json, the index) and with --no-run-dir, REPS times each;
#      the median samples/s of every epoch after the first.
# usage: BUILD=/tmp/build-rel bench/run_track_bench.sh [list|train|all] [REPS]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD=${BUILD:-/tmp/build-rel}
KILN=${KILN:-$BUILD/kiln}
what=${1:-all}
reps=${2:-5}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ms() { echo $(($(date +%s%N) / 1000000)); }
# Wall and CPU (user + system) milliseconds of one command, "WALL CPU", its output to $out_file.
timed() {
    /usr/bin/time -f "%e %U %S" -o "$tmp/time" "$@" >"$out_file"
    awk '{printf "%d %d\n", $1 * 1000, ($2 + $3) * 1000}' "$tmp/time"
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

if [[ $what == list || $what == all ]]; then
    python3 "$here/gen_runs.py" "$tmp/runs" 10000
    t0=$(ms)
    "$KILN" runs --root "$tmp/runs" list >/dev/null
    echo "first list (builds the index from 10,000 run.json): $(($(ms) - t0)) ms"
    out_file="$tmp/list.txt"
    for _ in $(seq "$reps"); do timed "$KILN" runs --root "$tmp/runs" list; done >"$tmp/t1"
    echo "list, 10,000 runs, median of $reps: wall $(cut -d' ' -f1 "$tmp/t1" | median) ms," \
        "CPU $(cut -d' ' -f2 "$tmp/t1" | median) ms; rows $(($(wc -l <"$out_file") - 1))"
    for _ in $(seq "$reps"); do
        timed "$KILN" runs --root "$tmp/runs" list --where 'params.optimizer.lr<1e-3' \
            --where 'metrics.val_accuracy>0.8' --sort -metrics.val_accuracy
    done >"$tmp/t2"
    echo "list --where x2 --sort, median of $reps: wall $(cut -d' ' -f1 "$tmp/t2" | median) ms," \
        "CPU $(cut -d' ' -f2 "$tmp/t2" | median) ms; rows $(($(wc -l <"$out_file") - 1))"
    timed "$KILN" --version >/dev/null
    echo "for scale, kiln --version (process start): wall/CPU ms $(timed "$KILN" --version)"
fi

if [[ $what == train || $what == all ]]; then
    cd "$tmp"
    sps() { # the median samples/s of the epochs after the first, from --json lines
        python3 -c "
import json, statistics, sys
v = [json.loads(l)['samples_per_s'] for l in sys.stdin if l.startswith('{\"epoch\"')][1:]
print(statistics.median(v))"
    }
    # Each run's samples/s, and its process CPU seconds (user + system: the recorder's whole cost,
    # git and hashing included, and less sensitive than wall time to other load on the machine).
    one() { # tag, kiln train arguments...
        local tag=$1
        shift
        /usr/bin/time -f "%U %S" -o "$tmp/time" "$KILN" train "$here/train/mlp_small.yaml" \
            --json --set train.threads=1 "$@" 2>/dev/null | sps >>"$tag.txt"
        awk '{print $1 + $2}' "$tmp/time" >>"$tag.cpu"
    }
    for r in $(seq "$reps"); do
        one untracked --no-run-dir
        one tracked --name "tracked-$r"
    done
    for tag in untracked tracked; do
        echo "$tag samples/s: $(tr '\n' ' ' <$tag.txt)-> median $(median <$tag.txt);" \
            "CPU s: $(tr '\n' ' ' <$tag.cpu)-> median $(median <$tag.cpu)"
    done
    python3 -c "print(f'tracked / untracked - 1: samples/s {($(median <tracked.txt) / \
$(median <untracked.txt) - 1) * 100:+.2f}%, CPU {($(median <tracked.cpu) / \
$(median <untracked.cpu) - 1) * 100:+.2f}%')"
fi
