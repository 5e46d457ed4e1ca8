#!/usr/bin/env bash
# kiln serve's monitoring end to end, on a small classifier trained here from a synthetic CSV (32
# features ~ N(0, 1), 3 classes; monitor.py writes it and does the HTTP checks).
#   metrics:    GET /metrics parses strictly as the Prometheus text format; its counters and
#               histograms move by exact counts as inference, bad, unknown-model and other
#               requests are sent; a request waiting for its batch shows in the queue depth
#               and the queue histogram; a broken version and a refused monitoring config are counted
#               as load failures; --access-log writes one JSON line per request with the
#               fields (to a file, and to stderr with -), and X-Request-Id answers carry its ids.
#   drift:      1000 training-like samples keep max PSI under 0.1 and the drift flag at 0;
#               inputs shifted by 3 standard deviations raise it over 0.2 and the flag to 1 (all
#               features over the threshold once the window is full); training-like inputs
#               bring it back.
#   prometheus: a real Prometheus server (Debian's package, installed here when missing) scrapes
#               /metrics every second; its target is healthy and its query API returns kiln's
#               series with the counts sent.
# Every server is stopped with SIGTERM and must exit 0 with no sanitizer report in its log.
# usage: test_monitor.sh metrics|drift|prometheus PATH_TO_KILN   (77: no python3 or curl, or no
# prometheus that can be installed)
set -uo pipefail
mode="${1:-}"
kiln="${2:-}"
[[ $kiln == */* && $kiln != /* ]] && kiln="$PWD/$kiln"
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/lib.sh" # check, alive, start_server, stop_server, cleanup
mon="$here/monitor.py"
py=/usr/bin/python3
name="test_monitor ($mode)"
serve_test_setup # skips without python3 or curl; cd into a fresh $tmp

# ---- servers (as tests/serve/test_serve.sh starts and stops them) ----

not_alive() { ! alive "$1"; }


finish() {
    if [ $fails -ne 0 ]; then
        for f in *.log; do echo "--- $f"; tail -n 40 "$f"; done
        echo "$name: $fails FAILED ($((SECONDS - t_start)) s)"
        exit 1
    fi
    echo "$name: all passed ($((SECONDS - t_start)) s)"
    exit 0
}

infer_body() { # N SEED: a request for N training-like samples
    "$py" -c "import sys; sys.path.insert(0, '$here'); import monitor; sys.stdout.buffer.write(monitor.infer_body(monitor.samples($1, $2)))"
}

# A free TCP port on 127.0.0.1 (for Prometheus, which does not say which port 0 gave it).
free_port() {
    "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ---- the model ----

"$py" "$mon" data . || { echo "$name: cannot write the data"; exit 1; }
cat >model.yaml <<EOF
model: {layers: [{dense: {units: 16, activation: relu}}]}
data:
  train: {format: csv, path: train.csv}
  test: {format: csv, path: test.csv}
  val_fraction: 0.1
optimizer: {name: adam, lr: 0.01}
train: {epochs: 3, batch_size: 50, seed: 3, threads: 1}
EOF
"$kiln" train model.yaml --name model --quiet >train.txt 2>&1 &&
    "$kiln" export runs/model -o model.h5 >>train.txt 2>&1
check "a test classifier trains and exports with reference statistics" \
    grep -q 'reference: 1800 training samples' train.txt
[ -s model.h5 ] || { cat train.txt; exit 1; }

case $mode in
metrics)
    check "the strict parser refuses what the format forbids" "$py" - "$here" <<'EOF'
import sys
sys.path.insert(0, sys.argv[1])
import monitor
bad = ['a 1',  # no newline at the end
       'a{x="1} 1\n', 'a{x=1} 1\n', 'a{x="\\q"} 1\n', 'a 1 2 3\n', 'a one\n', '1a 1\n',
       '# TYPE c counter\nc 1\n',  # a counter not named _total
       '# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na{x="y"} 2\n',  # a family split in two
       '# TYPE a gauge\n# TYPE a gauge\na 1\n', 'a 1\na 2\n',
       '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n',
       '# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n',
       '# TYPE h histogram\nh_bucket{le="+Inf"} 3\nh_sum 1\nh_count 2\n']
for text in bad:
    try:
        monitor.parse(text)
        print("accepted: %r" % text)
        sys.exit(1)
    except monitor.FormatError:
        pass
t, s = monitor.parse('# HELP a_total x\n# TYPE a_total counter\na_total{m="q\\"\\\\\\n"} 3\n'
                     '# TYPE h histogram\nh_bucket{le="0.5"} 1\nh_bucket{le="+Inf"} 2\n'
                     'h_sum 0.7\nh_count 2\nu NaN\n')
sys.exit(0 if s[("a_total", (("m", 'q"\\\n'),))] == 3 and len(s) == 6 else 1)
EOF
    # A repository: the model, a version that fails to load, a config.yaml that is refused.
    mkdir -p repo/clf/1 repo/broken/1 repo/badcfg/1 repo/slow/1
    cp model.h5 repo/clf/1/model.h5
    cp model.h5 repo/slow/1/model.h5
    printf 'instances: 1\nmax_queue_delay_us: 1500000\n' >repo/slow/config.yaml
    cp model.h5 repo/badcfg/1/model.h5
    head -c 3000 model.h5 >repo/broken/1/model.h5
    printf 'instances: 2\nmonitoring: {window: 1000, psi_threshold: 0.2, min_samples: 100}\n' \
        >repo/clf/config.yaml
    printf 'monitoring: {window: 100, psi_treshold: 0.3}\n' >repo/badcfg/config.yaml
    start_server metrics --repository repo --access-log access.log || finish
    check "the refused config.yaml's message names the key and its place" \
        grep -q "config.yaml:1:.*psi_treshold.*psi_threshold" metrics.log
    curl -s "$base/metrics" >metrics.txt
    check "curl's copy of /metrics parses" "$py" "$mon" parse metrics.txt
    check "the refused config.yaml is counted as a load failure of badcfg" \
        grep -qx 'kiln_model_load_failures_total{model="badcfg"} 1' metrics.txt
    # The lines so far (health checks, the scrape above) are not the checks' business: empty
    # the log once the scrape's line is in (it is written after its answer has gone).
    for _ in $(seq 1 100); do
        tail -n 1 access.log | grep -q '"path":"/metrics"' && break
        sleep 0.05
    done
    : >access.log
    check "counters, histograms and the access log move by exact counts" \
        "$py" "$mon" metrics "$port" clf access.log slow
    stop_server "$pid" metrics

    # --access-log -: the lines go to stderr, with the server's own messages.
    start_server stderr model.h5 --name clf --access-log - || finish
    curl -s -o /dev/null -X POST "$base/v2/models/clf/infer" --data-binary "$(infer_body 2 3)"
    curl -s -o /dev/null "$base/v2/health/ready"
    stop_server "$pid" stderr
    check "--access-log - writes one JSON line per request to stderr" "$py" -c '
import json, sys
docs = [json.loads(l) for l in open("stderr.log") if l.startswith("{")]
docs = [d for d in docs if d["path"] != "/v2/health/live"]  # the start-up probes
sys.exit(0 if [(d["path"], d["status"], d["model"]) for d in docs] == [("/v2/models/clf/infer", 200, "clf"), ("/v2/health/ready", 200, None)] else 1)'
    timeout 30 "$kiln" serve model.h5 --port 0 --access-log /nonexistent/dir/x.log >nolog.log 2>&1
    check "an access log that cannot be opened is refused (exit $?), naming it" \
        grep -q 'cannot open the access log /nonexistent/dir/x.log' nolog.log
    ;;
drift)
    start_server drift model.h5 --name clf --instances 1 || finish
    check "input and prediction drift over the window, from low to flagged and back" \
        "$py" "$mon" drift "$port" clf
    stop_server "$pid" drift
    ;;
prometheus)
    if ! command -v prometheus >/dev/null; then
        echo "prometheus is not installed: installing Debian's package"
        { [ "$(id -u)" = 0 ] && apt-get update -q &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q prometheus; } >apt.txt 2>&1
        command -v prometheus >/dev/null || {
            tail -n 5 apt.txt
            skip_missing "$name" "no prometheus (apt-get install prometheus)"
        }
    fi
    start_server kiln model.h5 --name clf --instances 1 || finish
    for i in 1 2 3; do
        curl -s -o /dev/null -X POST "$base/v2/models/clf/infer" --data-binary "$(infer_body $i $i)"
    done
    cat >prometheus.yml <<EOF
global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: kiln
    scrape_interval: 2s
    scrape_timeout: 2s
    static_configs: [{targets: ['127.0.0.1:$port']}]
EOF
    pport=$(free_port)
    prometheus --config.file=prometheus.yml --storage.tsdb.path=tsdb \
        --web.listen-address="127.0.0.1:$pport" >prometheus.log 2>&1 &
    prom=$!
    pids+=("$prom")
    t0=$SECONDS
    got=1
    while [ $((SECONDS - t0)) -lt 60 ] && alive "$prom"; do
        "$py" "$mon" query "$pport" 'kiln_requests_total{endpoint="infer",code="200"}' \
            >query.txt 2>&1 && { got=0; break; }
        sleep 0.5
    done
    check "Prometheus's query API returns kiln_requests_total within $((SECONDS - t0)) s" \
        test $got -eq 0
    check "with the 3 requests sent, labelled by model and version" "$py" -c '
import json, sys
r = json.loads(open("query.txt").read())
sys.exit(0 if len(r) == 1 and r[0]["metric"]["model"] == "clf" and r[0]["metric"]["version"] == "1" and r[0]["metric"]["job"] == "kiln" and r[0]["value"][1] == "3" else 1)'
    # A loaded machine can make one scrape late: what follows is asked again for up to 20 s.
    eventually() { for _ in $(seq 1 40); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done; "$@"; }
    check "and kiln's histograms" eventually "$py" "$mon" query "$pport" \
        'kiln_inference_request_duration_seconds_count{model="clf"} == 3'
    check "and the drift gauges" eventually "$py" "$mon" query "$pport" \
        'kiln_drift_window_samples{model="clf"} == 6'
    cat >target.py <<'EOF'
import http.client, json, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=5)
c.request("GET", "/api/v1/targets")
t = json.loads(c.getresponse().read())["data"]["activeTargets"]
print([(x["health"], x["lastError"]) for x in t])
sys.exit(0 if len(t) == 1 and t[0]["health"] == "up" and t[0]["lastError"] == "" else 1)
EOF
    check "the scrape target is healthy (Prometheus parsed every line)" \
        eventually "$py" target.py "$pport"
    kill -TERM "$prom" 2>/dev/null
    for _ in $(seq 1 100); do alive "$prom" || break; sleep 0.1; done
    check "Prometheus stops on SIGTERM" not_alive "$prom"
    wait "$prom" 2>/dev/null
    stop_server "$pid" kiln
    ;;
*)
    echo "usage: test_monitor.sh metrics|drift|prometheus PATH_TO_KILN"
    exit 2
    ;;
esac
finish
