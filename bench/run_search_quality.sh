#!/usr/bin/env bash
# run_search_quality.sh: search quality of `kiln tune` on the Fashion-MNIST MLP (tuning issue):
# ASHA against random search without early stopping (the fifo scheduler), on the same search
# space, the same sampler seed (so both draw the same trial configurations in the same order) and
# about the same compute (epochs trained in total). Each sweep runs under
# `mpirun -n 3 --oversubscribe kiln tune SWEEP --plain`: rank 0 coordinates, ranks 1 and 2 train
# a trial each. Prints, per method, the trials, the epochs trained, the best validation accuracy,
# the test accuracy of the best trial's model, the compute (epochs, in journal order) at which a
# trial first reached the target validation accuracy, and the wall time; then the ratio of ASHA's
# compute-to-target to random search's against the goal (<= 1/3).
#
# One pair of sweeps is one draw of the trial order. The script then replays both schedulers
# with `kiln tune --simulate --target` over many resampled orders of the random search's full
# learning curves (the real curves of real configurations, with their real epoch times), which
# gives the distribution of the ratio instead of one draw. See bench/README.md.
#
#   bench/run_search_quality.sh [--space wide|narrow] [--max-t T] [--fifo-trials N]
#                               [--asha-trials M] [--limit L] [--seed S] [--target X]
#                               [--draws D] [--out DIR] [--quick] [--analyse DIR]
#
# Environment: KILN (default /tmp/build-rel/kiln), MPIRUN (default mpirun), PYTHON (default
# /usr/bin/python3, for reading the journals), DATA (default /usr/share/datasets/fashion-mnist,
# for the test set).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
KILN=${KILN:-/tmp/build-rel/kiln}
MPIRUN=${MPIRUN:-mpirun}
PYTHON=${PYTHON:-/usr/bin/python3}
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
base=$root/examples/fashion-mnist/mlp.yaml

space=wide      # the search space (below)
max_t=27        # epochs of a trial that is never stopped; ASHA's rungs at 1, 3, 9, 27
fifo_trials=12  # random search: 12 x 27 = 324 epochs
asha_trials=108 # ASHA: about 3 epochs a trial with four rungs, so about 324 epochs
draws=400       # resampled trial orders replayed by kiln tune --simulate
limit=0         # data.limit: training samples (0: all 54000 left after the validation split)
seed=0          # the sampler's seed, the same for both sweeps
target=0.88     # the validation accuracy whose compute-to-reach is compared
out=""
analyse=""      # only read the sweeps already in this folder
target_set=""

usage() {
    sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'
    cat <<'EOF'

  --space S        wide (default) or narrow, below
  --max-t T        scheduler.max_t, the epochs of a full trial (default 27)
  --fifo-trials N  run_cap of the random search (default 12: 12 x max_t epochs)
  --asha-trials M  run_cap of the ASHA sweep (default 108: about the same epochs as 12 x 27)
  --limit L        data.limit for every trial (default 0: the full training split)
  --seed S         the sampler's seed of both sweeps (default 0)
  --target X       the validation accuracy to reach (default 0.88)
  --draws D        resampled trial orders for the simulated replay (default 400; 0: none)
  --out DIR        the folder for the sweep files, sweeps, models and logs (default: a new
                   /tmp/kiln-search-quality.*); must not hold sweeps yet
  --quick          a smoke run: max_t 3, 3 and 6 trials, data.limit 20000, target 0.80,
                   50 draws
  --analyse DIR    run nothing: print the table for the sweeps already in DIR (from --out); with
                   --target, at that target instead of the one they were run for

Both sweep files come from one template over examples/fashion-mnist/mlp.yaml and differ only in
run_cap and the scheduler: {type: asha, max_t, grace_period: 1, reduction_factor: 3} or
{type: fifo, max_t}. The metric is val_accuracy; fixed: train.threads 1 and data.limit. Spaces:
  wide    what one writes before knowing the problem: optimizer.lr log-uniform 1e-5..1e-1,
          optimizer.weight_decay log-uniform 1e-6..1e-2, model.layers.0.units in [128, 256, 512],
          model.layers.1.rate (the first dropout) uniform 0..0.5, train.batch_size in
          [64, 128, 256]; schedule.min_lr is 0 (mlp.yaml's 1e-5 would exceed the
          smallest learning rates)
  narrow  around mlp.yaml's known-good settings (the first measurement, max_t 9): lr
          log-uniform 1e-4..1e-2, and the same units, dropout and batch sizes
EOF
}

while [ $# -gt 0 ]; do
    case $1 in
    --space) space=$2; shift ;;
    --max-t) max_t=$2; shift ;;
    --fifo-trials) fifo_trials=$2; shift ;;
    --asha-trials) asha_trials=$2; shift ;;
    --limit) limit=$2; shift ;;
    --seed) seed=$2; shift ;;
    --target) target=$2 target_set=$2; shift ;;
    --draws) draws=$2; shift ;;
    --out) out=$2; shift ;;
    --quick) max_t=3 fifo_trials=3 asha_trials=6 limit=20000 target=0.80 draws=50 ;;
    --analyse) analyse=$2; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "run_search_quality.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
case $space in
wide | narrow) ;;
*) echo "run_search_quality.sh: --space is wide or narrow, not '$space'" >&2; exit 2 ;;
esac

for b in "$KILN" "$PYTHON"; do
    if [ ! -x "$b" ]; then
        echo "run_search_quality.sh: $b not found; build kiln (cmake --build /tmp/build-rel -j2" \
             "--target kiln) or set KILN / PYTHON" >&2
        exit 2
    fi
done
for f in t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz; do
    if [ ! -r "$DATA/$f" ]; then
        echo "run_search_quality.sh: $DATA/$f not found (apt-get install dataset-fashion-mnist," \
             "or set DATA)" >&2
        exit 2
    fi
done

if [ "$(id -u)" = 0 ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1}
    export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}
fi
export OPENBLAS_NUM_THREADS=1

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

if [ -n "$analyse" ]; then
    out=$analyse
    if [ ! -f "$out/params.env" ]; then
        echo "run_search_quality.sh: $out/params.env not found; --analyse takes a folder made" \
             "by this script's --out" >&2
        exit 2
    fi
    # shellcheck disable=SC1091
    . "$out/params.env"
    target=${target_set:-$target} # --analyse DIR --target X: the same sweeps at another target
else
    if [ -z "$out" ]; then
        out=$(mktemp -d /tmp/kiln-search-quality.XXXXXX)
    fi
    mkdir -p "$out"
    if [ -e "$out/asha" ] || [ -e "$out/fifo" ]; then
        echo "run_search_quality.sh: $out already holds sweeps; pick another --out, or" \
             "--analyse $out" >&2
        exit 2
    fi
    cat >"$out/params.env" <<EOF
space=$space max_t=$max_t fifo_trials=$fifo_trials asha_trials=$asha_trials limit=$limit seed=$seed target=$target
EOF

    space_params() {
        if [ "$space" = wide ]; then
            cat <<EOF
  optimizer.lr:
    log_uniform_values: {min: 1e-5, max: 1e-1}
  optimizer.weight_decay:
    log_uniform_values: {min: 1e-6, max: 1e-2}
  schedule.min_lr:
    value: 0
EOF
        else
            cat <<EOF
  optimizer.lr:
    log_uniform_values: {min: 1e-4, max: 1e-2}
EOF
        fi
    }
    # One template; SCHEDULER and RUN_CAP are the only differences between the two sweeps.
    template() {
        cat <<EOF
# run_search_quality.sh: $1 ($space space, max_t $max_t, run_cap $2, seed $seed, data.limit $limit)
base: $base
metric:
  name: val_accuracy
  goal: maximize
method: random
run_cap: $2
seed: $seed
parameters:
$(space_params)
  train.batch_size:
    values: [64, 128, 256]
  model.layers.0.units:
    values: [128, 256, 512]
  model.layers.1.rate:
    uniform: {min: 0.0, max: 0.5}
  data.limit:
    value: $limit
  train.threads:
    value: 1
scheduler: $3
EOF
    }
    template "ASHA" "$asha_trials" \
        "{type: asha, max_t: $max_t, grace_period: 1, reduction_factor: 3}" >"$out/asha.yaml"
    template "random search, no early stopping" "$fifo_trials" \
        "{type: fifo, max_t: $max_t}" >"$out/fifo.yaml"

    echo "# kiln: $KILN ($("$KILN" --version 2>&1 | head -1))"
    echo "# out: $out"
    echo "# $space space, max_t $max_t, fifo run_cap $fifo_trials, asha run_cap $asha_trials," \
         "data.limit $limit, seed $seed, target $target"
    for m in asha fifo; do
        echo "# $m: start $(date -u +%H:%M:%S), load average $(loadavg)"
        t0=$(date +%s.%N)
        if ! "$MPIRUN" -n 3 --oversubscribe "$KILN" tune "$out/$m.yaml" --dir "$out/$m" --plain \
            >"$out/$m.log" 2>&1; then
            echo "run_search_quality.sh: the $m sweep failed; its output:" >&2
            tail -n 40 "$out/$m.log" >&2
            exit 1
        fi
        t1=$(date +%s.%N)
        awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f\n", b - a }' >"$out/$m.wall"
        echo "# $m: done in $(cat "$out/$m.wall") s, load average $(loadavg)"
    done
fi

# The best trial's model on the test set: its latest checkpoint (best.json), exported and scored.
for m in asha fifo; do
    if [ ! -f "$out/$m/best.json" ]; then
        echo "run_search_quality.sh: $out/$m/best.json not found: did the $m sweep finish?" >&2
        exit 1
    fi
    if [ ! -f "$out/$m.test" ]; then
        ckpt=$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["checkpoint"])' \
            "$out/$m/best.json")
        "$KILN" export "$ckpt" -o "$out/$m-best.h5" --no-reference --quiet
        "$KILN" predict "$out/$m-best.h5" --input "$DATA/t10k-images-idx3-ubyte.gz" \
            --labels "$DATA/t10k-labels-idx1-ubyte.gz" -o "$out/$m-test.csv" \
            >"$out/$m.test" 2>&1
    fi
done

"$PYTHON" - "$out" "$target" "$max_t" <<'EOF'
import json, os, re, sys

out, target, max_t = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])

def journal(m):
    ev = [json.loads(l) for l in open(os.path.join(out, m, "journal.jsonl")) if l.strip()]
    res = [e for e in ev if e["event"] == "result"]
    started = {e["trial"] for e in ev if e["event"] == "started"}
    curves = {}
    for e in res:
        curves.setdefault(e["trial"], {})[e["t"]] = e["value"]
    bj = json.load(open(os.path.join(out, m, "best.json")))
    txt = open(os.path.join(out, m + ".test")).read()
    acc = re.search(r"accuracy[ =:]+([0-9.]+)", txt)
    wall_file = os.path.join(out, m + ".wall")
    return dict(ev=ev, res=res, t0=ev[0]["time"], trials=len(started), epochs=len(res),
                curves=curves, full=sum(1 for c in curves.values() if max(c) >= max_t),
                wall=float(open(wall_file).read()) if os.path.exists(wall_file) else None,
                jwall=ev[-1]["time"] - ev[0]["time"], best_trial=bj["trial"], best_t=bj["t"],
                test=float(acc.group(1)) if acc else None, test_txt=txt.strip())

def best_in(x, n):
    """The best value among the first n results in journal order (n epochs of compute)."""
    return max((e["value"] for e in x["res"][:n] if e["value"] is not None), default=None)

def reach(x, level):
    """(epochs, trial, t, seconds) at the first result >= level, in journal order; or None."""
    for i, e in enumerate(x["res"], 1):
        if e["value"] is not None and e["value"] >= level:
            return i, e["trial"], e["t"], e["time"] - x["t0"]
    return None

r = {m: journal(m) for m in ("asha", "fifo")}
common = min(r["asha"]["epochs"], r["fifo"]["epochs"])
names = {"asha": "ASHA (eta 3, grace 1)", "fifo": "random search (fifo)"}
f = lambda x, d=4: "-" if x is None else f"{x:.{d}f}"
print()
print(f"| method | trials | epochs trained | trials to max_t | best val acc | best trial (t) "
      f"| best val acc in the first {common} epochs | test acc of the best "
      f"| compute to {target:g} (epochs) | time to {target:g} | wall time |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for m in ("asha", "fifo"):
    x = r[m]
    h = reach(x, target)
    hit = "not reached" if h is None else f"{h[0]} (trial {h[1]}, epoch {h[2]})"
    hit_s = "-" if h is None else f"{h[3]:.0f} s"
    wall = f"{x['wall']:.0f} s" if x["wall"] is not None else f"{x['jwall']:.0f} s (journal)"
    best = best_in(x, x["epochs"])
    print(f"| {names[m]} | {x['trials']} | {x['epochs']} | {x['full']} | {f(best)} "
          f"| {x['best_trial']} ({x['best_t']}) | {f(best_in(x, common))} | {f(x['test'])} "
          f"| {hit} | {hit_s} | {wall} |")
print()
for m in ("asha", "fifo"):
    acc_lines = [l for l in r[m]["test_txt"].splitlines() if "accuracy" in l]
    print(f"# {m} best trial {r[m]['best_trial']} on the test set: "
          f"{acc_lines[-1] if acc_lines else r[m]['test_txt']}")

# Why: the random search's full curves say how common the target is among the configurations
# and how early it shows; ASHA's rungs say what it could see when it decided.
fc = r["fifo"]["curves"]
first = {t: next((k for k in sorted(c) if c[k] is not None and c[k] >= target), None)
         for t, c in fc.items()}
got = sorted(k for k in first.values() if k is not None)
print(f"# random search's {len(fc)} configurations: {len(got)} reach {target:g} by epoch "
      f"{max_t} (first at epochs {', '.join(map(str, got)) or '-'})")
for k in (1, 3):
    vals = [c[k] for c in r["asha"]["curves"].values() if k in c and c[k] is not None]
    if vals:
        print(f"# ASHA's best value at epoch {k}: {max(vals):.4f} over {len(vals)} trials")

print()
print("| target | ASHA compute (epochs) | random compute (epochs) | ASHA / random |")
print("|---|---|---|---|")
for level in sorted({target, 0.885, 0.89, 0.8925, 0.895}):
    a, b = reach(r["asha"], level), reach(r["fifo"], level)
    ratio = f"{a[0] / b[0]:.2f}" if a and b else "-"
    print(f"| {level:g} | {a[0] if a else 'not reached'} | {b[0] if b else 'not reached'} "
          f"| {ratio} |")
print()
a, b = reach(r["asha"], target), reach(r["fifo"], target)
if a and b:
    ratio = a[0] / b[0]
    print(f"ASHA / random compute to {target:g}: {a[0]} / {b[0]} = {ratio:.2f} "
          f"(goal <= 0.33): {'met' if ratio <= 1 / 3 + 1e-12 else 'NOT met'}")
elif a:
    print(f"ASHA / random compute to {target:g}: random search did not reach it, ASHA did in "
          f"{a[0]} epochs (goal met)")
else:
    who = "neither method" if not b else "ASHA"
    print(f"ASHA / random compute to {target:g}: {who} reached it: goal NOT met")
EOF

# The replay: one sweep pair is one draw of the trial order, and the compute to the target
# swings with it (the first good draw decides random search's figure). Resample orders from the
# random search's full learning curves (real configurations with their real per-epoch times,
# drawn with replacement: a bootstrap over the space) and let kiln's own schedulers decide on
# each order with `kiln tune --simulate --target`, with 2 workers as in the real sweeps.
if [ "$draws" -gt 0 ]; then
    "$PYTHON" - "$out" "$target" "$max_t" "$KILN" "$draws" "$seed" "$asha_trials" <<'EOF'
import json, os, random, re, statistics, subprocess, sys

out, target, max_t, kiln = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
draws, seed, n = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
ev = [json.loads(l) for l in open(os.path.join(out, "fifo", "journal.jsonl")) if l.strip()]
start, last, curves = {}, {}, {}
for e in ev:
    if e["event"] == "started":
        start[e["trial"]] = last[e["trial"]] = e["time"]
    elif e["event"] == "result":
        k = e["trial"]
        curves.setdefault(k, []).append((e["t"], e["value"], e["time"] - last[k]))
        last[k] = e["time"]
pool = [c for k, c in sorted(curves.items()) if [t for t, _, _ in c] == list(range(1, max_t + 1))]
if not pool:
    sys.exit("replay: the random search has no trial trained to max_t")

def table(path, order):
    with open(path, "w") as f:
        f.write("trial,t,value,seconds\n")
        for i, p in enumerate(order):
            for t, v, sec in pool[p]:
                f.write(f"r{i}-c{p},{t},{'nan' if v is None else repr(v)},{sec:.6f}\n")

def reach(sweep, path):
    txt = subprocess.run([kiln, "tune", "--simulate", path, sweep, "--workers", "2",
                          "--target", str(target)], check=True, capture_output=True,
                         text=True).stdout
    m = re.search(r"reached after (\d+) epochs", txt)
    return int(m.group(1)) if m else None

# ASHA's other variant (Ray Tune's stop mode: a trial trains on unless it is below the cut of
# the earlier arrivals at its rung, so an early good draw is never paused) is replayed too, from
# the ASHA sweep file with only the mode changed.
asha = open(os.path.join(out, "asha.yaml")).read()
if "mode:" not in asha and "{type: asha," in asha:
    with open(os.path.join(out, "asha-stop.yaml"), "w") as f:
        f.write(asha.replace("{type: asha,", "{type: asha, mode: stop,"))
sweeps = [("ASHA (promote)", "asha.yaml"), ("ASHA (stop)", "asha-stop.yaml"),
          ("random search", "fifo.yaml")]
sweeps = [(k, os.path.join(out, f)) for k, f in sweeps if os.path.exists(os.path.join(out, f))]
# The compute to the target whatever the budget: every sweep runs all n trials of an order
# (kiln tune --simulate runs the sweep's run_cap trials, as a real sweep would).
def uncapped(k, path):
    text = re.sub(r"^run_cap: *\d+", f"run_cap: {n}", open(path).read(), flags=re.M)
    p = os.path.join(out, "replay-" + os.path.basename(path))
    with open(p, "w") as f:
        f.write(text)
    return k, p
sweeps = [uncapped(k, p) for k, p in sweeps]
csv = os.path.join(out, "replay.csv")
# The real order first: the replay of the random search must match its real sweep.
table(csv, range(len(pool)))
print(f"\n# replay check: random search on its own {len(pool)} curves in the real order reaches "
      f"{target:g} after {reach(dict(sweeps)['random search'], csv)} epochs")
rng = random.Random(seed)
got, none = {k: [] for k, _ in sweeps}, 0
for d in range(draws):
    table(csv, [rng.randrange(len(pool)) for _ in range(n)])
    r = {k: reach(path, csv) for k, path in sweeps}
    if None in r.values():
        none += 1
        continue
    for k in r:
        got[k].append(r[k])
os.unlink(csv)
good = sum(1 for c in pool if any(v is not None and v >= target for _, v, _ in c))
print(f"# replay: {draws} orders of {n} trials resampled from {len(pool)} full curves "
      f"({good} of which reach {target:g}); {none} orders where a method never reached it")
fifo = got["random search"]
if fifo:
    print(f"| method | compute to {target:g}: mean | median | quartiles | ratio of means to random "
          f"| median ratio (quartiles) | orders with ratio <= 1/3 |")
    print("|---|---|---|---|---|---|---|")
    for k, _ in sweeps:
        v = got[k]
        qq = statistics.quantiles(v, n=4)
        ratios = [a / b for a, b in zip(v, fifo)]
        q = statistics.quantiles(ratios, n=4)
        met = sum(1 for x in ratios if x <= 1 / 3 + 1e-12)
        print(f"| {k} | {statistics.mean(v):.1f} | {statistics.median(v):g} "
              f"| {qq[0]:g} - {qq[2]:g} | {statistics.mean(v) / statistics.mean(fifo):.2f} "
              f"| {statistics.median(ratios):.2f} ({q[0]:.2f} - {q[2]:.2f}) "
              f"| {met} of {len(ratios)} |")
EOF
fi
