#!/usr/bin/env bash
# run_allreduce.sh: bench_allreduce (ResNet-50's gradient set per-tensor, bucketed and
# concatenated) on the simulated cluster, one rank per node, for each profile and node count.
# Each profile runs at a rate scaled down to what linkemu forwards on this machine, and the
# gradient set and bucket size are scaled by the same factor, so that every transfer takes the
# time it would at the profile's full rate while the latency stays the profile's own
# (bench/RESULTS.md, "Simulated cluster"). A control row, "floor", has no added latency and a
# rate linkemu cannot reach: what the machine's CPUs and the emulator cost by themselves.
#
#   bench/cluster/run_allreduce.sh [--nodes "2 4"] [--profiles "..."] [--rounds R] [--reps K]
#                                  [--out FILE]
# Prints one line per run; appends rows (profile, nodes, scale, round, way, median ms, min ms,
# max ms, load average before, after) to --out (default /tmp/kiln-cluster-allreduce.tsv).
# Environment: BENCH (default /tmp/b-cluster-rel/bench/bench_allreduce).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH=${BENCH:-/tmp/b-cluster-rel/bench/bench_allreduce}
nodes="2 4"
profiles="25g5us 10g50us 1g200us floor"
rounds=1
reps=5
out=/tmp/kiln-cluster-allreduce.tsv
while [ $# -gt 0 ]; do
    case $1 in
    --nodes) nodes=$2; shift ;;
    --profiles) profiles=$2; shift ;;
    --rounds) rounds=$2; shift ;;
    --reps) reps=$2; shift ;;
    --out) out=$2; shift ;;
    *) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
    esac
    shift
done
[ -x "$BENCH" ] || { echo "run_allreduce.sh: no $BENCH (build bench_allreduce or set BENCH)" >&2; exit 2; }
"$here/cluster.sh" check

# The scale per profile: its rate over 250 Mbit/s, well within what linkemu forwarded per node
# with 4 nodes sending at once on this 2-core machine (about 1.1 Gbit/s each), so that 8 nodes
# and the ranks' own CPU fit too (bench/RESULTS.md, "Simulated cluster").
scale_of() {
    case $1 in
    25g5us) echo 100 ;;
    10g50us) echo 40 ;;
    1g200us) echo 4 ;;
    floor) echo 40 ;;
    esac
}
spec_of() { [ "$1" = floor ] && echo custom:100000:0:0 || echo "$1"; }

trap '"$here/cluster.sh" down' EXIT
for r in $(seq 1 "$rounds"); do
    for n in $nodes; do
        for p in $profiles; do
            f=$(scale_of "$p")
            bucket=$(awk -v f="$f" 'BEGIN { printf "%g", 25 / f }')
            spec=$(spec_of "$p")
            scale_opt=(--scale "$f")
            [ "$p" = floor ] && scale_opt=()
            "$here/cluster.sh" up "$n" "$spec" "${scale_opt[@]}" >/dev/null
            l0=$(cut -d' ' -f1 /proc/loadavg)
            log=$(mktemp /tmp/kiln-cluster-run.XXXXXX)
            if ! timeout 600 "$here/cluster.sh" mpirun -n "$n" "$BENCH" --scale "$f" \
                --bucket-mb "$bucket" --reps "$reps" --warmup 1 >"$log" 2>&1; then
                echo "run_allreduce.sh: $p, $n nodes failed:" >&2
                cat "$log" >&2
                rm -f "$log"
                exit 1
            fi
            l1=$(cut -d' ' -f1 /proc/loadavg)
            "$here/cluster.sh" down 2>>"$log"
            awk -v p="$p" -v n="$n" -v f="$f" -v r="$r" -v l0="$l0" -v l1="$l1" '
                $1 == "per-tensor" || $1 == "bucketed" || $1 == "concatenated" {
                    if (NF == 6) print p "\t" n "\t" f "\t" r "\t" $1 "\t" $3 "\t" $4 "\t" $5 "\t" l0 "\t" l1
                }' "$log" >>"$out"
            echo "# round $r, $p, $n nodes (scale $f, load $l0 -> $l1): $(grep -h 'per-tensor /' "$log")," \
                 "$(grep -h 'bucketed /' "$log"); $(grep -h '^linkemu:' "$log" | sed 's/^linkemu: //')"
            rm -f "$log"
        done
    done
done
