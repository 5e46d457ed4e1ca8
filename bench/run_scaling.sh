#!/usr/bin/env bash
# run_scaling.sh: data-parallel scaling of `kiln train` (issue 4): MLP 784-1024-1024-10 at a
# global batch of 512, 1 rank against 2 ranks (shared memory and loopback TCP, gradient all-reduce
# overlapped with backward or not), and 2 independent 1-rank processes as the machine's ceiling.
# Prints a table against the goals. See bench/README.md ("Data-parallel scaling").
#
#   bench/run_scaling.sh [--quick] [--epochs N] [--limit K] [--reps R] [--bucket-mb X] [--out DIR]
#                        [--idle-wait S] [--max-other X] [--table FILE]
#
# Environment: KILN (default /tmp/build-rel/kiln), MPIRUN (default mpirun), PYTHON (default
# /usr/bin/python3, for reading the JSON lines).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KILN=${KILN:-/tmp/build-rel/kiln}
MPIRUN=${MPIRUN:-mpirun}
PYTHON=${PYTHON:-/usr/bin/python3}
config=$here/train/mlp_large.yaml

batch=512   # the global batch: train.batch_size, split evenly over the ranks
epochs=4    # the first is the warm-up; steady state = median of the rest
limit=30720 # training samples per epoch (data.limit): 60 steps of 512; 0 = all 60000
reps=3
bucket_mb="" # empty: kiln's default dist.bucket_mb
out=""
idle_wait=120 # seconds to wait for an idle machine before each run
max_other=0.2 # cores other processes may take during a run before it is run again
table=""      # --table FILE: print the table of an earlier run's results.tsv, run nothing

usage() {
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
    cat <<'EOF'

  --quick         2 epochs of 5120 samples, 1 rep: a smoke run, too noisy for figures
  --epochs N      epochs per run, the first a warm-up (default 4)
  --limit K       training samples per epoch, data.limit (default 30720; 0 = all 60000)
  --reps R        repetitions; each runs every configuration once, in a rotated order (default 3)
  --bucket-mb X   dist.bucket_mb for the 2-rank runs (default: kiln's, 25)
  --out DIR       keep the raw JSON lines and results.tsv in DIR (default: a new temp dir)
  --idle-wait S   before each run wait up to S seconds for 2 idle seconds (default 120; 0: no wait)
  --max-other X   run a configuration again (3 tries at most) when other processes took more than
                  X cores during it (default 0.2)
  --table FILE    run nothing: print the table of an earlier run's results.tsv (files may be
                  concatenated if their repetitions, column 2, are relabelled to stay distinct)

Configurations, all with train.threads=1 and OPENBLAS_NUM_THREADS=1:
  1rank     1 rank, batch 512, no mpirun                                  (the baseline, "a")
  shm       mpirun -n 2 --mca btl vader,self, dist.overlap=true
  shm-off   the same with dist.overlap=false
  tcp       mpirun -n 2 --mca btl tcp,self, dist.overlap=true
  tcp-off   the same with dist.overlap=false
  indep     2 independent 1-rank processes at batch 256 at the same time, pinned to cores 0
            and 1 (as mpirun binds its 2 ranks); their samples/s summed
EOF
}

while [ $# -gt 0 ]; do
    case $1 in
    --quick) epochs=2 limit=5120 reps=1 ;;
    --epochs) epochs=$2; shift ;;
    --limit) limit=$2; shift ;;
    --reps) reps=$2; shift ;;
    --bucket-mb) bucket_mb=$2; shift ;;
    --out) out=$2; shift ;;
    --idle-wait) idle_wait=$2; shift ;;
    --max-other) max_other=$2; shift ;;
    --table) table=$2; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "run_scaling.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

summarize() { # results.tsv: the table and the goals
    "$PYTHON" - "$1" "$max_other" <<'EOF'
import statistics, sys
# results.tsv: configuration, rep, samples/s, comm wait s/epoch, steps/epoch, other load (cores)
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
limit = float(sys.argv[2])
confs = ("1rank", "shm", "shm-off", "tcp", "tcp-off", "indep")
val = {(r[0], r[1]): r for r in rows}
reps = [k for k in dict.fromkeys(r[1] for r in rows) if all((c, k) in val for c in confs)]
if not reps:
    sys.exit("run_scaling.sh: no repetition with every configuration in " + sys.argv[1])
# A repetition in which a kept run was still disturbed (other load over --max-other after its
# retries) is left out, unless every repetition was.
clean = [k for k in reps if all(float(val[(c, k)][5]) <= limit for c in confs)]
dropped = len(reps) - len(clean)
if clean:
    reps = clean
def rate(c, k): return float(val[(c, k)][2])
def wait(c, k): return float(val[(c, k)][3])
def med(f): return statistics.median(f(k) for k in reps)
def span(f, pct=False):
    v = [f(k) for k in reps]
    if len(v) < 2:
        return "1 rep"
    return f"{100 * min(v):.0f} to {100 * max(v):.0f}%" if pct else f"{min(v):.2f} to {max(v):.2f}"
# Ratios are paired within a repetition (its runs are minutes apart) before the median is taken:
# that cancels most of the machine's slow drift, which moves every configuration together.
def ratio(c): return lambda k: rate(c, k) / rate("1rank", k)
def of_ceiling(c): return lambda k: rate(c, k) / rate("indep", k)
def hidden(tr):
    return lambda k: 1 - wait(tr, k) / wait(tr + "-off", k) if wait(tr + "-off", k) > 0 else 0.0
steps = int(statistics.median(float(val[("shm", k)][4]) for k in reps))
label = {
    "1rank": "(a) 1 rank x 1 thread, batch 512",
    "shm": "(b) 2 ranks x 1 thread, shared memory (vader), overlap on",
    "shm-off": "(e) 2 ranks, shared memory, overlap off",
    "tcp": "(c) 2 ranks, TCP loopback, overlap on",
    "tcp-off": "(d) 2 ranks, TCP loopback, overlap off",
    "indep": "(f) 2 independent 1-rank processes, batch 256 each, summed",
}
print("| configuration | samples/s | x (a) (range) | comm wait s/epoch | ms/step | hidden share (range) |")
print("|---|---|---|---|---|---|")
for c in confs:
    x = "1" if c == "1rank" else f"{med(ratio(c)):.2f}x ({span(ratio(c))})"
    w = ms = hid = ""
    if c not in ("1rank", "indep"):
        mw = med(lambda k: wait(c, k))
        w, ms = f"{mw:.3f}", f"{1000 * mw / steps:.2f}"
    if c in ("shm", "tcp"):
        hid = f"{100 * med(hidden(c)):.0f}% ({span(hidden(c), True)})"
    print(f"| {label[c]} | {med(lambda k: rate(c, k)):.0f} | {x} | {w} | {ms} | {hid} |")
print()
print(f"{len(reps)} repetitions. A run's steady state is the median over its epochs after the "
      f"first; samples/s and waits are medians over repetitions; ratios and hidden shares are "
      f"medians of the per-repetition values (range in brackets). {steps} steps per epoch. "
      f"Hidden share = 1 - wait(overlap on) / wait(overlap off) at the same transport.")
print(f"Machine ceiling: 2 independent processes give {med(ratio('indep')):.2f}x (a); 2 ranks reach "
      f"{100 * med(of_ceiling('shm')):.0f}% of it over shared memory "
      f"({span(of_ceiling('shm'), True)}) and {100 * med(of_ceiling('tcp')):.0f}% over TCP "
      f"({span(of_ceiling('tcp'), True)}).")
other = [float(val[(c, k)][5]) for c in confs for k in reps]
if dropped and clean:
    print(f"Left out: {dropped} repetition(s) with a run during which other processes took more "
          f"than {limit} cores even after retries.")
print(f"Other processes' load during the runs in the table: at most {max(other):.2f} cores"
      + ("" if clean else f" -- every repetition was disturbed (over {limit} cores): the machine "
         f"was not idle, rerun when it is") + ".")
g1, g2 = med(ratio("shm")), med(hidden("tcp"))
print(f"goal: 2 ranks >= 1.8x 1 rank: {g1:.2f}x, {'met' if g1 >= 1.8 else 'NOT met'}")
print(f"goal: all-reduce hidden behind backward over TCP >= 50%: {100 * g2:.0f}%, "
      f"{'met' if g2 >= 0.5 else 'NOT met'}")
EOF
}

if [ -n "$table" ]; then
    [ -r "$table" ] || { echo "run_scaling.sh: cannot read $table" >&2; exit 2; }
    summarize "$table"
    exit 0
fi

if [ "$epochs" -lt 2 ]; then
    echo "run_scaling.sh: --epochs must be at least 2 (the first is a warm-up)" >&2; exit 2
fi
if [ "$reps" -lt 1 ]; then
    echo "run_scaling.sh: --reps must be at least 1" >&2; exit 2
fi
if [ ! -x "$KILN" ]; then
    echo "run_scaling.sh: $KILN not found; build it (cmake --build /tmp/build-rel -j2 --target" \
         "kiln) or set KILN" >&2
    exit 2
fi
if ! command -v "$MPIRUN" >/dev/null; then
    echo "run_scaling.sh: $MPIRUN not found; install Open MPI or set MPIRUN" >&2; exit 2
fi
if ! "$PYTHON" -c 'import json, statistics' 2>/dev/null; then
    echo "run_scaling.sh: $PYTHON cannot run (set PYTHON to a Python 3)" >&2; exit 2
fi
# mpirun refuses root (containers run as root) without these.
if ((EUID == 0)); then
    export OMPI_ALLOW_RUN_AS_ROOT="${OMPI_ALLOW_RUN_AS_ROOT:-1}"
    export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}"
fi
export OPENBLAS_NUM_THREADS=1

if [ -z "$out" ]; then
    out=$(mktemp -d /tmp/kiln-scaling.XXXXXX)
else
    mkdir -p "$out"
fi
results=$out/results.tsv
: >"$results"

common=(train "$config" --json --no-run-dir --set train.threads=1 --set train.epochs="$epochs"
        --set data.limit="$limit")
dist=()
[ -n "$bucket_mb" ] && dist=(--set dist.bucket_mb="$bucket_mb")
mpi2=("$MPIRUN" -n 2 --bind-to core --mca pml ob1 -x OPENBLAS_NUM_THREADS)
pin0=() pin1=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    pin0=(taskset -c 0) pin1=(taskset -c 1)
fi

# Prints "samples/s comm_wait_s steps_per_epoch": medians over the epochs after the first.
steady() {
    "$PYTHON" -c '
import json, statistics, sys
e = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{\"epoch\"")]
if len(e) < 2:
    sys.exit("run_scaling.sh: " + sys.argv[1] + " has fewer than 2 epochs; see its stderr file")
rate = statistics.median(x["samples_per_s"] for x in e[1:])
wait = statistics.median(x["comm_wait_s"] for x in e[1:])
print(f"{rate:.1f} {wait:.5f}", e[0]["step"])' "$1"
}

# CPU seconds the whole machine was busy (/proc/stat: user nice system irq softirq steal), and
# the CPU seconds of this script's finished children (bash's `times`): their difference over a
# run is what other processes took, printed per run as "other load" in cores.
machine_busy() {
    awk -v hz="$(getconf CLK_TCK)" '/^cpu / { print ($2 + $3 + $4 + $7 + $8 + $9) / hz; exit }' /proc/stat
}
children_cpu() { # sets child_cpu; `times` must run in this shell, not in a $(...) subshell
    times >"$out/times"
    child_cpu=$(awk 'NR == 2 { t = 0; for (i = 1; i <= 2; i++) { split($i, a, "m"); t += a[1] * 60 + a[2] }
                              print t }' "$out/times")
}
now() { date +%s.%N; }

# Waits (at most $idle_wait seconds) until the machine has been idle for 2 s (under 0.1 cores
# busy), so that a run does not start on top of someone else's build; says when it gave up.
wait_idle() {
    local waited=0 b0 b1
    while [ "$waited" -lt "$idle_wait" ]; do
        b0=$(machine_busy)
        sleep 2
        b1=$(machine_busy)
        awk -v a="$b0" -v b="$b1" 'BEGIN { exit !((b - a) / 2 < 0.1) }' && return 0
        waited=$((waited + 2))
    done
    [ "$idle_wait" -gt 0 ] && echo "# machine still busy after ${idle_wait} s; running anyway"
    return 0
}

fail() {
    echo "run_scaling.sh: $1 failed; its stderr:" >&2
    cat "$2" >&2
    exit 1
}

# Runs one configuration; a run during which other processes took more than $max_other cores is
# run again (at most 3 tries; the least disturbed is kept, and counted in the summary if it is
# still over).
run_config() { # name rep
    local c=$1 r=$2 try b0 c0 t0 b1 c1 t1 other best=""
    for try in 1 2 3; do
        wait_idle
        children_cpu
        b0=$(machine_busy) c0=$child_cpu t0=$(now)
        run_one "$c" "$r" "$try"
        children_cpu
        b1=$(machine_busy) c1=$child_cpu t1=$(now)
        other=$(awk -v b0="$b0" -v b1="$b1" -v c0="$c0" -v c1="$c1" -v t0="$t0" -v t1="$t1" \
            'BEGIN { o = ((b1 - b0) - (c1 - c0)) / (t1 - t0); printf "%.2f", o < 0 ? 0 : o }')
        echo "# rep $r  $c: $(cat "$out/line"), other load $other cores"
        if [ -z "$best" ] || awk -v o="$other" -v b="$best" 'BEGIN { exit !(o < b) }'; then
            best=$other
            echo -e "$c\t$r\t$(cat "$out/row")\t$other" >"$out/best"
        fi
        awk -v o="$other" -v m="$max_other" 'BEGIN { exit !(o <= m) }' && break
        [ $try -lt 3 ] && echo "# other processes took more than $max_other cores: running $c again"
    done
    cat "$out/best" >>"$results"
}

run_one() { # name rep try: writes the progress text to $out/line and the figures to $out/row
    local c=$1 r=$2 f=$out/$1_r$2 s
    [ "$3" = 1 ] || f=${f}_try$3
    case $c in
    1rank) "$KILN" "${common[@]}" --set train.batch_size="$batch" >"$f.json" 2>"$f.err" ||
        fail "$c (rep $r)" "$f.err" ;;
    shm | shm-off | tcp | tcp-off)
        local btl=vader,self ov=true
        [[ $c == tcp* ]] && btl=tcp,self
        [[ $c == *-off ]] && ov=false
        "${mpi2[@]}" --mca btl "$btl" "$KILN" "${common[@]}" --set train.batch_size="$batch" \
            --set dist.overlap="$ov" "${dist[@]}" >"$f.json" 2>"$f.err" ||
            fail "$c (rep $r)" "$f.err"
        ;;
    indep)
        "${pin0[@]}" "$KILN" "${common[@]}" --set train.batch_size=$((batch / 2)) \
            >"${f}_p0.json" 2>"${f}_p0.err" &
        local p0=$!
        "${pin1[@]}" "$KILN" "${common[@]}" --set train.batch_size=$((batch / 2)) \
            >"${f}_p1.json" 2>"${f}_p1.err" &
        local p1=$! a b
        wait "$p0" || fail "$c process 0 (rep $r)" "${f}_p0.err"
        wait "$p1" || fail "$c process 1 (rep $r)" "${f}_p1.err"
        s=$(steady "${f}_p0.json")
        read -r -a a <<<"$s"
        s=$(steady "${f}_p1.json")
        read -r -a b <<<"$s"
        echo "${a[0]} + ${b[0]} samples/s" >"$out/line"
        echo -e "$("$PYTHON" -c "print(${a[0]} + ${b[0]})")\t0\t${a[2]}" >"$out/row"
        return
        ;;
    esac
    local v
    s=$(steady "$f.json")
    read -r -a v <<<"$s"
    echo "${v[0]} samples/s, comm wait ${v[1]} s/epoch (${v[2]} steps)" >"$out/line"
    echo -e "${v[0]}\t${v[1]}\t${v[2]}" >"$out/row"
}

configs=(1rank shm tcp tcp-off shm-off indep)
n=${#configs[@]}
echo "# kiln train scaling: $config, global batch $batch, $epochs epochs of $limit samples" \
     "(0 = all; first epoch = warm-up), $reps rep(s), dist.bucket_mb ${bucket_mb:-default}"
echo "# kiln: $KILN  mpirun: $("$MPIRUN" --version 2>/dev/null | head -1)  raw outputs: $out"
echo "# cpu: $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores"
echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$reps"); do
    # Rotate the order every repetition so that no configuration always runs first or last.
    for i in $(seq 0 $((n - 1))); do
        run_config "${configs[$(((i + r - 1) % n))]}" "$r"
    done
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

summarize "$results"
