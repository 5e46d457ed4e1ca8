#!/usr/bin/env bash
# run_serve.sh: `kiln serve` under load (the serving issue). The Fashion-MNIST MLP, one 784-float
# request per call, wrk with 2 threads; kiln's requests/s and latency against nginx answering the
# same POST with a static file of the same bytes as kiln's response (the HTTP ceiling of this
# machine), dynamic batching on against off at 256 connections, Triton's binary tensor requests
# against JSON ones, and kiln's GET /v2/health/live (its HTTP path without a model) against
# nginx's GET of the file; then open-loop runs (bench/openloop.c: a fixed arrival rate, latency
# from each request's due time) at 50% and 80% of kiln JSON's measured requests/s. Prints a
# markdown table against the goals; --help says how each configuration runs. Figures: bench/RESULTS.md ("Serving: kiln serve vs nginx").
#
#   bench/run_serve.sh [--quick] [--duration S] [--warmup S] [--reps R] [--conns N]
#                      [--batch-conns N] [--delay-us D] [--instances N --http-threads N]
#                      [--search-duration S] [--search-reps R] [--model FILE] [--out DIR]
#                      [--idle-wait S] [--max-other X] [--openloop FRACS] [--table FILE]
#
# Environment: KILN (default /tmp/build-rel/kiln, a Release build), OPENLOOP (default the
# openloop beside it, KILN's folder/bench/openloop), WRK (default wrk), NGINX
# (default nginx, or /usr/sbin/nginx), PYTHON (default /usr/bin/python3), DATA (default
# /usr/share/datasets/fashion-mnist). wrk and nginx: scripts/install-deps.sh --bench (as root).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
KILN=${KILN:-/tmp/build-rel/kiln}
OPENLOOP=${OPENLOOP:-$(dirname "$KILN")/bench/openloop}
WRK=${WRK:-wrk}
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
PYTHON=${PYTHON:-/usr/bin/python3}
DATA=${DATA:-/usr/share/datasets/fashion-mnist}

duration=10       # seconds of each measured wrk run
warmup=2          # seconds of wrk before each measured run (discarded; the server is fresh)
reps=3            # repetitions of every configuration, in a rotated order
conns=64          # connections of the nginx, JSON, binary and health runs
batch_conns=256   # connections of the batching on/off runs
delay_us=500      # --max-queue-delay-us of the third batching configuration (0: leave it out)
instances=""      # kiln serve --instances and --http-threads of the measured runs; empty: the
http_threads=""   #   best of the search below (1 or 2 each, JSON at --conns)
search_duration=5 # seconds of each search run
search_reps=2     # runs of each search configuration (their median picks the best)
model=""          # an exported model to serve; empty: train and export the MLP (about 2 s)
out=""
idle_wait=60  # seconds to wait for an idle machine before each run
max_other=0.2 # cores other processes may take during a run before it is run again
table=""      # --table FILE: print the table of an earlier run's results.tsv, run nothing
openloop_fracs="0.5 0.8" # open-loop rates, as fractions of kiln JSON's median requests/s

usage() {
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
    cat <<'EOF'

  --quick              smoke run: 3 s runs, 1 s warm-up, 1 rep, search runs of 2 s once
  --duration S         seconds of each measured run (default 10)
  --warmup S           seconds of load before each measured run, not counted (default 2)
  --reps R             repetitions of every configuration (default 3)
  --conns N            wrk connections of the ceiling, JSON, binary and health runs (default 64)
  --batch-conns N      wrk connections of the batching on/off runs (default 256)
  --delay-us D         also run batching with --max-queue-delay-us D (default 500; 0: do not)
  --instances N, --http-threads N
                       kiln's settings for the measured runs (give both: skips the search)
  --search-duration S  seconds of each settings-search run (default 5)
  --search-reps R      runs of each search configuration (default 2)
  --model FILE         serve this exported model (input 784 floats) instead of training one
  --out DIR            keep the model, bodies, logs, raw wrk output and results.tsv in DIR
                       (default: a new /tmp/kiln-serve.* folder)
  --idle-wait S        before each run wait up to S seconds for 2 idle seconds (default 60)
  --max-other X        run a configuration again (3 tries at most) when other processes took
                       more than X cores during it (default 0.2)
  --openloop FRACS     open-loop runs at these fractions of kiln JSON's median requests/s
                       (default "0.5 0.8"; "" for none)
  --table FILE         run nothing: print the table of an earlier run's results.tsv

Configurations (wrk -t2 --latency; each kiln run against a freshly started kiln serve, the
nginx runs against one nginx started at the beginning):
  nginx-post   nginx, a worker per core: the same POST as kiln-json, answered with a file of
               kiln's response bytes (the HTTP ceiling the goal divides by)
  nginx-get    nginx: GET of that file
  kiln-live    kiln: GET /v2/health/live (kiln's HTTP path, no body, no model)
  kiln-json    kiln: POST the JSON request (784 floats, about 5 KB)
  kiln-bin     kiln: POST the binary request (102-byte JSON header + 3136 bytes of float32)
  batch        kiln, JSON, --batch-conns connections, default batching (max_queue_delay_us 0)
  batch-delay  the same with --max-queue-delay-us D
  nobatch      the same with --no-batching
  nobatch-inst the same with the other instance count (2 if the settings have 1, else 1); the
               batching goal compares with the better of nobatch and nobatch-inst
  openloop-F   kiln, JSON, --conns connections of bench/openloop at F x kiln-json's median
               requests/s: requests due on a fixed schedule, latency counted from the due time
               (no coordinated omission), so queueing shows in p50/p99/p99.9
A run with any non-2xx response or socket error is flagged in the table and left out of the
medians. kiln's own statistics (GET /v2/models/NAME/stats) give the mean batch and the model
time per call. Ports: kiln --port 0 (the one it prints); nginx a free port found at start.
EOF
}

while [ $# -gt 0 ]; do
    case $1 in
    --quick) duration=3 warmup=1 reps=1 search_duration=2 search_reps=1 ;;
    --duration) duration=$2; shift ;;
    --warmup) warmup=$2; shift ;;
    --reps) reps=$2; shift ;;
    --conns) conns=$2; shift ;;
    --batch-conns) batch_conns=$2; shift ;;
    --delay-us) delay_us=$2; shift ;;
    --instances) instances=$2; shift ;;
    --http-threads) http_threads=$2; shift ;;
    --search-duration) search_duration=$2; shift ;;
    --search-reps) search_reps=$2; shift ;;
    --model) model=$2; shift ;;
    --out) out=$2; shift ;;
    --idle-wait) idle_wait=$2; shift ;;
    --max-other) max_other=$2; shift ;;
    --table) table=$2; shift ;;
    --openloop) openloop_fracs=$2; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "run_serve.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

summarize() { # results.tsv [settings line]: the table and the goals
    "$PYTHON" - "$1" "$max_other" <<'EOF'
import statistics, sys
# results.tsv: config, rep, conns, settings, requests/s, p50 us, p99 us, requests, non-2xx,
# socket errors, server cores, wrk cores, other cores, mean batch, model us per call, kiln ok,
# kiln failed, model busy (cores: model-call seconds / wall seconds)
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
limit = float(sys.argv[2])
F = dict(conf=0, rep=1, conns=2, settings=3, rps=4, p50=5, p99=6, n=7, bad=8, sock=9, srv=10,
         wrk=11, other=12, batch=13, model_us=14, ok=15, fail=16, model_busy=17)
def g(r, k): return r[F[k]] if F[k] < len(r) else ""
def num(r, k): return float(g(r, k)) if g(r, k) not in ("", "-") else None
def clean(r):  # every response 2xx, no socket error, no request kiln counted as failed
    return num(r, "bad") == 0 and num(r, "sock") == 0 and (num(r, "fail") or 0) == 0
def med(v): return statistics.median(v) if v else None
def rng(v, fmt="{:.0f}"): return (fmt.format(min(v)) + "-" + fmt.format(max(v))) if len(v) > 1 else "1 run"

search = [r for r in rows if g(r, "conf").startswith("search:")]
main = [r for r in rows if not g(r, "conf").startswith("search:")]
if search:
    print("Settings search (kiln-json, %s connections; requests/s per run, median):" % g(search[0], "conns"))
    print()
    print("| instances | http threads | requests/s (runs) | median | p99 ms (median) | errors |")
    print("|---|---|---|---|---|---|")
    for s in dict.fromkeys(g(r, "settings") for r in search):
        rs = [r for r in search if g(r, "settings") == s]
        ok = [r for r in rs if clean(r)]
        i, h = s.split("/")
        print(f"| {i} | {h} | {', '.join('%.0f' % num(r, 'rps') + ('' if clean(r) else ' (errors)') for r in rs)} "
              f"| {med([num(r, 'rps') for r in ok]) or 0:.0f} | {(med([num(r, 'p99') for r in ok]) or 0) / 1000:.1f} "
              f"| {sum(num(r, 'bad') + num(r, 'sock') for r in rs):.0f} |")
    print()

confs = list(dict.fromkeys(g(r, "conf") for r in main))
label = {
    "nginx-post": "nginx: same POST, static file of kiln's response bytes (ceiling)",
    "nginx-get": "nginx: GET of that file",
    "kiln-live": "kiln: GET /v2/health/live (HTTP path only)",
    "kiln-json": "kiln: JSON request",
    "kiln-bin": "kiln: binary tensor request",
    "batch": "kiln: JSON, dynamic batching (default, delay 0)",
    "batch-delay": "kiln: JSON, dynamic batching, max_queue_delay_us %s",
    "nobatch": "kiln: JSON, --no-batching",
    "nobatch-inst": "kiln: JSON, --no-batching, the other instance count",
}
by = {c: [r for r in main if g(r, "conf") == c] for c in confs}
good = {c: [r for r in by[c] if clean(r)] for c in confs}
def mrps(c): return med([num(r, "rps") for r in good.get(c, [])])
# Ratios are paired within a repetition (its runs are seconds apart) before the median is taken.
def ratio(a, b):
    v = []
    for ra in good.get(a, []):
        for rb in good.get(b, []):
            if g(ra, "rep") == g(rb, "rep"):
                v.append(num(ra, "rps") / num(rb, "rps"))
    return v
print("| configuration | conns | kiln settings | requests/s median (range) | p50 ms | p99 ms (range) "
      "| vs nginx-post | server cores | server CPU us/req | wrk cores | other cores | mean batch "
      "| model us/call | model busy | non-2xx, socket errors |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for c in confs:
    rs, ok = by[c], good[c]
    name = label.get(c, c)
    if "%s" in name:
        name = name % g(rs[0], "settings").split("/")[2] if g(rs[0], "settings").count("/") >= 2 else name % "?"
    st = g(rs[0], "settings")
    st = "-" if c.startswith("nginx") else "inst %s, http %s" % tuple(st.split("/")[:2])
    errs = ", ".join(f"{num(r, 'bad'):.0f}+{num(r, 'sock'):.0f}" for r in rs)
    flag = "" if len(ok) == len(rs) else f" **{len(rs) - len(ok)} run(s) with errors, left out**"
    if not ok:
        print(f"| {name} | {g(rs[0], 'conns')} | {st} | errors in every run | | | | | | | | | | | {errs}{flag} |")
        continue
    rps = [num(r, "rps") for r in ok]
    p99 = [num(r, "p99") / 1000 for r in ok]
    cpu_req = [num(r, "srv") / num(r, "rps") * 1e6 for r in ok]
    vs = ratio(c, "nginx-post") if c != "nginx-post" else []
    vs_s = f"{100 * med(vs):.0f}% ({rng([100 * x for x in vs])})" if vs else ("100%" if c == "nginx-post" else "")
    def mcol(k, fmt):
        v = [num(r, k) for r in ok if num(r, k) is not None]
        return fmt.format(med(v)) if v else ""
    print(f"| {name} | {g(rs[0], 'conns')} | {st} | {med(rps):.0f} ({rng(rps)}) "
          f"| {med([num(r, 'p50') for r in ok]) / 1000:.2f} | {med(p99):.1f} ({rng(p99, '{:.1f}')}) "
          f"| {vs_s} | {mcol('srv', '{:.2f}')} | {med(cpu_req):.0f} | {mcol('wrk', '{:.2f}')} | {mcol('other', '{:.2f}')} "
          f"| {mcol('batch', '{:.1f}')} | {mcol('model_us', '{:.0f}')} | {mcol('model_busy', '{:.2f}')} "
          f"| {errs}{flag} |")
print()
nrep = len(dict.fromkeys(g(r, "rep") for r in main))
others = [num(r, "other") for r in main]
print(f"{nrep} repetition(s); requests/s, latencies and cores are medians over the clean runs "
      f"(range in brackets); ratios are medians of per-repetition ratios. Cores = CPU seconds / "
      f"wall seconds during the measured run: the server's, wrk's, and everything else's "
      f"(other processes; at most {max(others):.2f} cores in the runs kept"
      + (f", over the {limit} allowed in some: the machine was not idle" if max(others) > limit else "")
      + "). Server CPU us/req = server cores / requests/s. Model us/call and model busy (seconds "
      "in model calls / wall seconds) come from kiln's statistics (batch_stats). Errors per run: "
      "non-2xx + socket errors.")
print()
def verdict(ok): return "met" if ok else "NOT met"
j, n = mrps("kiln-json"), mrps("nginx-post")
for c, what in (("kiln-json", "kiln JSON"), ("nginx-post", "nginx"), ("batch", "batching on"),
                ("nobatch", "batching off")):
    if c in by and not good[c]:
        print(f"goal: not measured: every {what} run had errors, NOT met")
if j and n:
    r = med(ratio("kiln-json", "nginx-post"))
    p99 = med([num(x, "p99") / 1000 for x in good["kiln-json"]])
    print(f"goal: kiln JSON >= 50% of nginx's requests/s: {100 * r:.0f}%, {verdict(r >= 0.50)}")
    print(f"goal: kiln JSON p99 <= 5 ms: {p99:.1f} ms, {verdict(p99 <= 5)}")
# Batching is held against the better --no-batching configuration (higher median).
nbs = [c for c in ("nobatch", "nobatch-inst") if mrps(c)]
b = mrps("batch")
if b and nbs:
    nb = max(nbs, key=mrps)
    r = med(ratio("batch", nb))
    p99b = med([num(x, "p99") for x in good["batch"]])
    p99n = med([num(x, "p99") for x in good[nb]])
    print(f"goal: dynamic batching >= 2x --no-batching at {g(by['batch'][0], 'conns')} connections "
          f"(against {nb}, the better off configuration): {r:.2f}x, {verdict(r >= 2)}; p99 "
          f"{p99b / 1000:.1f} ms against {p99n / 1000:.1f} ms, {verdict(p99b <= p99n)}")
    if mrps("batch-delay"):
        rd = med(ratio("batch-delay", nb))
        print(f"      with max_queue_delay_us: {rd:.2f}x, {verdict(rd >= 2)}")
if mrps("kiln-bin") and j:
    rb = med(ratio('kiln-bin', 'nginx-post'))
    print(f"goal: binary requests >= 80% of nginx: {100 * rb:.0f}%, {verdict(rb >= 0.80)} "
          f"({med(ratio('kiln-bin', 'kiln-json')):.2f}x JSON's requests/s)")
if mrps("kiln-live") and mrps("nginx-get"):
    print(f"kiln GET /v2/health/live / nginx GET: {med(ratio('kiln-live', 'nginx-get')):.2f}x")
if any(not clean(r) for r in rows):
    print("WARNING: some runs had non-2xx responses or socket errors (see the last column); "
          "they are not in the medians")
# openloop.tsv: conf, rep, rate, achieved, p50, p90, p99, p99.9, max (ms), due, late, errors,
# non-2xx, server cores, other cores
import os
ol = os.path.join(os.path.dirname(os.path.abspath(sys.argv[1])), "openloop.tsv")
orows = [l.rstrip("\n").split("\t") for l in open(ol) if l.strip()] if os.path.exists(ol) else []
if orows:
    print()
    print("Open loop (bench/openloop, kiln JSON; latency from each request's due time; medians "
          "over repetitions, range in brackets):")
    print()
    print("| load | rate req/s | achieved | p50 ms | p99 ms | p99.9 ms | max ms | late+errors+non-2xx "
          "| server CPU us/req | other cores |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for c in dict.fromkeys(r[0] for r in orows):
        rs = [r for r in orows if r[0] == c]
        def col(i, fmt="{:.2f}"):
            v = [float(r[i]) for r in rs]
            return fmt.format(med(v)) + (f" ({rng(v, fmt)})" if len(v) > 1 else "")
        cpu = [float(r[13]) / float(r[3]) * 1e6 for r in rs if float(r[3]) > 0]
        print(f"| {100 * float(c.split('-')[1]):.0f}% | {col(2, '{:.0f}')} | {col(3, '{:.0f}')} "
              f"| {col(4)} | {col(6)} | {col(7)} | {col(8)} "
              f"| {', '.join(r[10] + '+' + r[11] + '+' + r[12] for r in rs)} "
              f"| {med(cpu) if cpu else 0:.0f} | {col(14)} |")
EOF
}

if [ -n "$table" ]; then
    [ -r "$table" ] || { echo "run_serve.sh: cannot read $table" >&2; exit 2; }
    summarize "$table"
    exit 0
fi

# ---- checks ----
if [ ! -x "$KILN" ]; then
    echo "run_serve.sh: $KILN not found; build a Release kiln (cmake -S . -B /tmp/build-rel" \
         "-DCMAKE_BUILD_TYPE=Release -DKILN_BUILD_TESTS=OFF && cmake --build /tmp/build-rel -j2" \
         "--target kiln) or set KILN" >&2
    exit 2
fi
missing=()
command -v "$WRK" >/dev/null || missing+=(wrk)
[ -x "$NGINX" ] || command -v "$NGINX" >/dev/null || missing+=(nginx)
if [ ${#missing[@]} -gt 0 ]; then
    echo "run_serve.sh: ${missing[*]} not found: install with 'scripts/install-deps.sh --bench'" \
         "(as root; or apt-get install -y ${missing[*]}), or set WRK / NGINX" >&2
    exit 2
fi
if ! "$PYTHON" -c 'import json, statistics, urllib.request' 2>/dev/null; then
    echo "run_serve.sh: $PYTHON cannot run (set PYTHON to a Python 3)" >&2; exit 2
fi
images=$DATA/t10k-images-idx3-ubyte.gz
if [ ! -r "$images" ]; then
    echo "run_serve.sh: $images not found; install Fashion-MNIST (scripts/install-deps.sh" \
         "--with-data) or set DATA" >&2
    exit 2
fi
if { [ -n "$instances" ] && [ -z "$http_threads" ]; } || { [ -z "$instances" ] && [ -n "$http_threads" ]; }; then
    echo "run_serve.sh: give --instances and --http-threads together (or neither: search)" >&2
    exit 2
fi
[ "$reps" -ge 1 ] || { echo "run_serve.sh: --reps must be at least 1" >&2; exit 2; }

if [ -z "$out" ]; then
    out=$(mktemp -d /tmp/kiln-serve.XXXXXX)
else
    mkdir -p "$out"
    out=$(cd "$out" && pwd)
fi
results=$out/results.tsv
: >"$results"

# ---- processes: every one this script starts is stopped on exit ----
kiln_pid="" nginx_pid=""
stop_kiln() {
    if [ -n "$kiln_pid" ]; then
        kill -TERM "$kiln_pid" 2>/dev/null || true
        wait "$kiln_pid" 2>/dev/null || true
        kiln_pid=""
    fi
}
stop_nginx() {
    if [ -n "$nginx_pid" ]; then
        kill -QUIT "$nginx_pid" 2>/dev/null || true # graceful: the master stops its workers
        wait "$nginx_pid" 2>/dev/null || true
        nginx_pid=""
    fi
}
cleanup() {
    stop_kiln
    stop_nginx
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- the model and the request bodies ----
if [ -z "$model" ]; then
    echo "# training and exporting the Fashion-MNIST MLP (1 epoch on 10000 images) in $out"
    rm -rf "$out/runs/bench-serve"
    (cd "$out" && "$KILN" train "$root/examples/fashion-mnist/mlp.yaml" --quiet \
        --set train.epochs=1 --set data.limit=10000 --set schedule.warmup_steps=0 \
        --set name=bench-serve --set train.threads=1) >"$out/train.log" 2>&1 ||
        { cat "$out/train.log" >&2; echo "run_serve.sh: kiln train failed" >&2; exit 1; }
    "$KILN" export "$out/runs/bench-serve/checkpoints/final.h5" -o "$out/model.h5" \
        >"$out/export.log" 2>&1 ||
        { cat "$out/export.log" >&2; echo "run_serve.sh: kiln export failed" >&2; exit 1; }
    model=$out/model.h5
fi
[ -r "$model" ] || { echo "run_serve.sh: cannot read $model" >&2; exit 2; }
name=fmnist
"$PYTHON" "$here/serve/make_bodies.py" "$images" 0 "$out" | sed 's/^/# bodies: /'
hlen=$(cat "$out/request.bin.hlen")
infer_path=/v2/models/$name/infer

# ---- starting servers ----
start_kiln() { # kiln serve options...: sets kiln_pid and kiln_port
    : >"$out/kiln.log"
    # wrk's connections all come from one address: no per-client limit (nginx has none either).
    "$KILN" serve "$model" --name "$name" --port 0 --max-connections-per-client 0 "$@" \
        2>"$out/kiln.log" &
    kiln_pid=$!
    kiln_port=""
    local i
    for i in $(seq 1 200); do
        kiln_port=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$out/kiln.log")
        [ -n "$kiln_port" ] && return 0
        if ! kill -0 "$kiln_pid" 2>/dev/null; then
            cat "$out/kiln.log" >&2
            echo "run_serve.sh: kiln serve $* exited" >&2
            exit 1
        fi
        sleep 0.05
    done
    cat "$out/kiln.log" >&2
    echo "run_serve.sh: kiln serve $* did not say where it listens within 10 s" >&2
    exit 1
}

free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_nginx() { # a private nginx as this user: its own config, prefix, logs and temp folders
    local d=$out/nginx workers
    workers=$(nproc)
    mkdir -p "$d/html" "$d/logs" "$d/tmp"
    cp "$out/response.json" "$d/html/infer.json"
    nginx_port=$(free_port)
    {
        echo "daemon off;"
        echo "master_process on;"
        echo "worker_processes $workers;"
        ((EUID == 0)) && echo "user $(id -un) $(id -gn);" # else the workers would run as nobody
        echo "pid $d/nginx.pid;"
        echo "error_log $d/logs/error.log warn;"
        echo "events { worker_connections 4096; }"
        cat <<EOF
http {
    access_log off;
    keepalive_requests 100000000;
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
    server {
        listen 127.0.0.1:$nginx_port;
        root $d/html;
        default_type application/json;
        # Every path is the one file. The static module answers POST with 405: the error page
        # turns that into the file with a 200, after the request body is read and dropped.
        location / {
            try_files /infer.json =404;
            error_page 405 =200 \$uri;
        }
    }
}
EOF
    } >"$d/nginx.conf"
    "$NGINX" -c "$d/nginx.conf" -p "$d/" >"$d/logs/stdout.log" 2>&1 &
    nginx_pid=$!
    local i
    for i in $(seq 1 100); do
        if "$PYTHON" -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2)' \
            "$nginx_port" 2>/dev/null; then
            return 0
        fi
        if ! kill -0 "$nginx_pid" 2>/dev/null; then
            cat "$d/logs/stdout.log" "$d/logs/error.log" >&2 2>/dev/null || true
            echo "run_serve.sh: nginx did not start" >&2
            exit 1
        fi
        sleep 0.05
    done
    echo "run_serve.sh: nginx did not listen on port $nginx_port within 5 s" >&2
    exit 1
}

# Checks both request bodies against kiln (200, the same outputs, the class kiln predict gives)
# and writes kiln's JSON response, the bytes nginx will serve, to $out/response.json.
check_kiln_answers() {
    "$PYTHON" - "$kiln_port" "$infer_path" "$out" "$hlen" <<'EOF'
import json, sys, urllib.request
port, path, out, hlen = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
url = f"http://127.0.0.1:{port}{path}"
def post(body, headers):
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        if r.status != 200:
            sys.exit(f"run_serve.sh: {url} answered {r.status}")
        return r.read()
js = post(open(f"{out}/request.json", "rb").read(), {"Content-Type": "application/json"})
bn = post(open(f"{out}/request.bin", "rb").read(),
          {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": hlen})
a, b = json.loads(js), json.loads(bn)
if a["outputs"] != b["outputs"]:
    sys.exit("run_serve.sh: the JSON and binary requests got different answers:\n%s\n%s" % (js, bn))
out_by = {o["name"]: o["data"] for o in a["outputs"]}
p = out_by.get("probabilities")
if not p or len(p) != 10 or abs(sum(p) - 1) > 1e-3:
    sys.exit("run_serve.sh: unexpected answer: %s" % js.decode())
open(f"{out}/response.json", "wb").write(js)
print(f"# kiln answers both bodies with 200 and the same outputs ({len(js)} bytes of JSON): "
      f"class {out_by.get('label')} {out_by.get('label_name')}, p = {max(p):.3f}")
EOF
}

# kiln's statistics of the model: "ok failed inferences executions model_call_ns"
kiln_stats() {
    "$PYTHON" - "$kiln_port" "$name" <<'EOF'
import json, sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/v2/models/{sys.argv[2]}/stats", timeout=10) as r:
    m = json.load(r)["model_stats"][0]
s = m["inference_stats"]
# compute_infer of inference_stats counts every request with its batch's time (as Triton's
# does); batch_stats counts each model call once.
calls = sum(b["compute_infer"]["ns"] for b in m.get("batch_stats", []))
print(s["success"]["count"], s["fail"]["count"], m["inference_count"], m["execution_count"], calls)
EOF
}

# ---- CPU accounting (as run_scaling.sh): the machine's busy seconds, a process tree's ----
clk=$(getconf CLK_TCK)
machine_busy() {
    awk -v hz="$clk" '/^cpu / { print ($2 + $3 + $4 + $7 + $8 + $9) / hz; exit }' /proc/stat
}
proc_cpu() { # pid...: user + system seconds of these processes (all their threads)
    local p t=0 s
    for p in "$@"; do
        s=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null) || continue
        t=$(awk -v s="$s" -v t="$t" -v hz="$clk" 'BEGIN { split(s, f, " "); print t + (f[12] + f[13]) / hz }')
    done
    echo "$t"
}
server_cpu() { # the server of the current run: kiln, or nginx's master and workers
    if [ "$server" = kiln ]; then
        proc_cpu "$kiln_pid"
    else
        # shellcheck disable=SC2046
        proc_cpu "$nginx_pid" $(pgrep -P "$nginx_pid" || true)
    fi
}
children_cpu() { # sets child_cpu: reaped children's CPU seconds (wrk); `times` must run here
    times >"$out/times"
    child_cpu=$(awk 'NR == 2 { t = 0; for (i = 1; i <= 2; i++) { split($i, a, "m"); t += a[1] * 60 + a[2] }
                              print t }' "$out/times")
}
now() { date +%s.%N; }

# Waits (at most $idle_wait seconds) until the machine has been idle for 2 s (under 0.1 cores
# busy), so that a run does not start on top of someone else's work; says when it gave up.
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

# ---- one run ----
# run_one CONF REP CONNS SETTINGS DURATION: starts the configuration's server (kiln) or uses
# nginx, warms up, measures, and appends a row to $out/row.
run_one() {
    local c=$1 r=$2 n=$3 st=$4 dur=$5 url script args=() kopts=() f
    local inst=${st%%/*} rest=${st#*/} http delay=""
    http=${rest%%/*}
    [ "$rest" != "$http" ] && delay=${rest#*/}
    f=$out/${c//[:\/]/_}_r$r
    server=kiln
    case $c in
    nginx-post) server=nginx url=http://127.0.0.1:$nginx_port$infer_path
        script=post_json.lua args=(-- "$out/request.json") ;;
    nginx-get) server=nginx url=http://127.0.0.1:$nginx_port$infer_path script=get.lua ;;
    kiln-live) script=get.lua ;;
    kiln-bin) script=post_binary.lua args=(-- "$out/request.bin" "$hlen") ;;
    nobatch | nobatch-inst) script=post_json.lua args=(-- "$out/request.json") kopts=(--no-batching) ;;
    batch-delay) script=post_json.lua args=(-- "$out/request.json")
        kopts=(--max-queue-delay-us "$delay") ;;
    *) script=post_json.lua args=(-- "$out/request.json") ;;
    esac
    if [ $server = kiln ]; then
        start_kiln --instances "$inst" --http-threads "$http" "${kopts[@]}"
        if [ "$c" = kiln-live ]; then
            url=http://127.0.0.1:$kiln_port/v2/health/live
        else
            url=http://127.0.0.1:$kiln_port$infer_path
        fi
    fi
    "$WRK" -t2 -c"$n" -d"${warmup}s" -s "$here/serve/$script" "$url" "${args[@]}" >"$f.warmup" 2>&1 ||
        { cat "$f.warmup" >&2; echo "run_serve.sh: wrk failed ($c warm-up)" >&2; exit 1; }
    local s0=(0 0 0 0 0) s1=(0 0 0 0 0) b0 b1 c0 c1 t0 t1 v0 v1
    [ $server = kiln ] && read -r -a s0 <<<"$(kiln_stats)"
    children_cpu
    b0=$(machine_busy) v0=$(server_cpu) c0=$child_cpu t0=$(now)
    "$WRK" -t2 -c"$n" -d"${dur}s" --latency -s "$here/serve/$script" "$url" "${args[@]}" >"$f.wrk" 2>&1 ||
        { cat "$f.wrk" >&2; echo "run_serve.sh: wrk failed ($c)" >&2; exit 1; }
    children_cpu
    b1=$(machine_busy) v1=$(server_cpu) c1=$child_cpu t1=$(now)
    [ $server = kiln ] && read -r -a s1 <<<"$(kiln_stats)"
    [ $server = kiln ] && stop_kiln
    "$PYTHON" - "$f.wrk" "$c" "$r" "$n" "$st" "$b0" "$b1" "$v0" "$v1" "$c0" "$c1" "$t0" "$t1" \
        "${s0[*]}" "${s1[*]}" "$server" >"$out/row" <<'EOF'
import json, sys
a = sys.argv
w = None
for line in open(a[1]):
    if line.startswith("WRK "):
        w = json.loads(line[4:])
if w is None:
    sys.exit("run_serve.sh: no WRK line in " + a[1])
busy, srv, wrk, wall = (float(a[7]) - float(a[6]), float(a[9]) - float(a[8]),
                        float(a[11]) - float(a[10]), float(a[13]) - float(a[12]))
other = max(0.0, (busy - srv - wrk) / wall)
rps = w["requests"] / (w["duration_us"] / 1e6)
sock = w["connect"] + w["read"] + w["write"] + w["timeout"]
batch = model_us = ok = fail = busy_model = "-"
if a[16] == "kiln":
    s0, s1 = [int(x) for x in a[14].split()], [int(x) for x in a[15].split()]
    ok, fail = s1[0] - s0[0], s1[1] - s0[1]
    inf, ex, ns = s1[2] - s0[2], s1[3] - s0[3], s1[4] - s0[4]
    if ex > 0:
        batch, model_us = f"{inf / ex:.2f}", f"{ns / ex / 1000:.1f}"
    busy_model = f"{ns / 1e9 / wall:.2f}"
print("\t".join(str(x) for x in (a[2], a[3], a[4], a[5], f"{rps:.1f}", w["p50_us"], w["p99_us"],
      w["requests"], w["status"], sock, f"{srv / wall:.2f}", f"{wrk / wall:.2f}", f"{other:.2f}",
      batch, model_us, ok, fail, busy_model)))
EOF
}

# Runs one configuration; a run during which other processes took more than $max_other cores is
# run again (3 tries at most; the least disturbed is kept).
run_config() { # conf rep conns settings duration
    local try other best="" row
    for try in 1 2 3; do
        wait_idle
        run_one "$@"
        row=$(cat "$out/row")
        other=$(cut -f13 <<<"$row")
        IFS=$'\t' read -r -a v <<<"$row"
        echo "# rep $2  $1 (${3} conns, $4): ${v[4]} req/s, p50 $((v[5] / 1000)).$(printf %03d $((v[5] % 1000))) ms," \
             "p99 $((v[6] / 1000)).$(printf %03d $((v[6] % 1000))) ms, non-2xx ${v[8]}, socket errors ${v[9]}," \
             "cores: server ${v[10]} wrk ${v[11]} other $other; mean batch ${v[13]}"
        if [ -z "$best" ] || awk -v o="$other" -v b="$best" 'BEGIN { exit !(o < b) }'; then
            best=$other
            echo "$row" >"$out/best"
        fi
        awk -v o="$other" -v m="$max_other" 'BEGIN { exit !(o <= m) }' && break
        [ $try -lt 3 ] && echo "# other processes took more than $max_other cores: running $1 again"
    done
    cat "$out/best" >>"$results"
}

echo "# kiln serve vs nginx: wrk -t2 --latency, ${duration}s runs after ${warmup}s warm-up," \
     "$reps rep(s); raw outputs: $out"
echo "# kiln: $KILN ($(grep -s '^CMAKE_BUILD_TYPE' "$(dirname "$KILN")/CMakeCache.txt" | cut -d= -f2 || true))," \
     "$($KILN --version 2>/dev/null | head -1); $("$WRK" --version 2>&1 | head -1 | cut -d' ' -f1-2);" \
     "$("$NGINX" -v 2>&1 | sed 's/.*version: //')"
echo "# cpu: $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores"
echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg)"

# The answers first: kiln's JSON response is also the file nginx serves.
start_kiln
check_kiln_answers
stop_kiln
start_nginx
ngx=$("$PYTHON" -c '
import sys, urllib.request
r = urllib.request.urlopen(urllib.request.Request(sys.argv[1], data=open(sys.argv[2], "rb").read(), method="POST"), timeout=10)
b = r.read()
print(r.status, len(b), b == open(sys.argv[3], "rb").read())' \
    "http://127.0.0.1:$nginx_port$infer_path" "$out/request.json" "$out/response.json")
[ "$ngx" = "200 $(wc -c <"$out/response.json") True" ] ||
    { echo "run_serve.sh: nginx answered the POST with '$ngx' (status, bytes, same)" >&2; exit 1; }
echo "# nginx on port $nginx_port answers the same POST with 200 and the same bytes"

# Settings: instances x HTTP threads, JSON at --conns connections.
if [ -z "$instances" ]; then
    for r in $(seq 1 "$search_reps"); do
        for st in 1/1 1/2 2/1 2/2; do
            run_config "search:$st" "$r" "$conns" "$st" "$search_duration"
        done
    done
    best=$("$PYTHON" - "$results" <<'EOF'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.startswith("search:")]
med = {}
for s in dict.fromkeys(r[3] for r in rows):
    v = [float(r[4]) for r in rows if r[3] == s and r[8] == "0" and r[9] == "0"]
    if v:
        med[s] = statistics.median(v)
if not med:
    sys.exit("run_serve.sh: every settings-search run had errors")
print(max(med, key=med.get))
EOF
)
    instances=${best%/*} http_threads=${best#*/}
    echo "# best settings: --instances $instances --http-threads $http_threads"
fi
st=$instances/$http_threads

configs=(nginx-post kiln-json kiln-bin kiln-live nginx-get batch nobatch)
[ "$delay_us" -gt 0 ] && configs+=(batch-delay)
# Without batching a second instance may pay (two model calls at once): run the other count too,
# so that batching is compared with the better of the two.
other_inst=$((instances == 1 ? 2 : 1))
configs+=(nobatch-inst)
n=${#configs[@]}
for r in $(seq 1 "$reps"); do
    # Rotate the order every repetition so that no configuration always runs first or last.
    for i in $(seq 0 $((n - 1))); do
        c=${configs[$(((i + r - 1) % n))]}
        case $c in
        batch | nobatch) run_config "$c" "$r" "$batch_conns" "$st" "$duration" ;;
        batch-delay) run_config "$c" "$r" "$batch_conns" "$st/$delay_us" "$duration" ;;
        nobatch-inst) run_config "$c" "$r" "$batch_conns" "$other_inst/$http_threads" "$duration" ;;
        *) run_config "$c" "$r" "$conns" "$st" "$duration" ;;
        esac
    done
done
stop_nginx

# Open loop: a fixed arrival rate at fractions of kiln JSON's median requests/s.
run_openloop() { # conf rep rate
    local f=$out/${1}_r$2 b0 b1 v0 v1 t0 t1
    server=kiln
    start_kiln --instances "$instances" --http-threads "$http_threads"
    b0=$(machine_busy) v0=$(server_cpu) t0=$(now)
    "$OPENLOOP" --port "$kiln_port" --path "$infer_path" --body "$out/request.json" \
        --rate "$3" --conns "$conns" --duration "$duration" --warmup "$warmup" >"$f.ol" 2>&1 || true
    b1=$(machine_busy) v1=$(server_cpu) t1=$(now)
    stop_kiln
    grep -q '^rate=' "$f.ol" || { cat "$f.ol" >&2; echo "run_serve.sh: openloop failed" >&2; exit 1; }
    "$PYTHON" - "$f.ol" "$1" "$2" "$b0" "$b1" "$v0" "$v1" "$t0" "$t1" >>"$out/openloop.tsv" <<'EOF'
import sys
a = sys.argv
line = [l for l in open(a[1]) if l.startswith("rate=")][-1]
kv = dict(x.split("=") for x in line.split())
busy, srv, wall = float(a[5]) - float(a[4]), float(a[7]) - float(a[6]), float(a[9]) - float(a[8])
# openloop's own CPU is not measured apart: "other" includes it (one thread, light).
print("\t".join([a[2], a[3], kv["rate"], kv["achieved"], kv["p50"], kv["p90"], kv["p99"],
      kv["p999"], kv["max"], kv["due"], kv["late"], kv["errors"], kv["non2xx"],
      f"{srv / wall:.2f}", f"{max(0.0, busy - srv) / wall:.2f}"]))
EOF
    tail -n 1 "$out/openloop.tsv" | awk -F'\t' '{ printf "# rep %s  %s: rate %s, achieved %s, p50 %s ms, p99 %s ms, p99.9 %s ms, late %s, errors %s\n", $2, $1, $3, $4, $5, $7, $8, $11, $12 }'
}
if [ -n "$openloop_fracs" ]; then
    if [ ! -x "$OPENLOOP" ]; then
        echo "# no open-loop runs: $OPENLOOP is not built (cmake --build BUILD --target openloop)"
    else
        max_rps=$("$PYTHON" -c '
import statistics, sys
v = [float(l.split("\t")[4]) for l in open(sys.argv[1]) if l.startswith("kiln-json\t")]
print(f"{statistics.median(v):.0f}" if v else 0)' "$results")
        for r in $(seq 1 "$reps"); do
            for frac in $openloop_fracs; do
                wait_idle
                run_openloop "openloop-$frac" "$r" "$(awk -v m="$max_rps" -v f="$frac" 'BEGIN { printf "%.0f", m * f }')"
            done
        done
    fi
fi
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

summarize "$results"
