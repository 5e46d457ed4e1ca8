#!/usr/bin/env bash
# kiln serve end to end over HTTP, on small classifiers trained here from a synthetic CSV (784
# features, 4 classes whose names need JSON escaping and UTF-8; no dataset needed).
#   api:    every endpoint with curl (status and JSON); inference equals kiln predict on the same
#           samples; flat, nested, FP64, INT32/INT64 and binary (Triton) requests agree; outputs
#           by name; the request id echoed; the repository endpoints with and without the token,
#           unload/load, a model that fails to load, path traversal refused; a non-loopback
#           --host without a token refused; SIGTERM with requests in flight answers them and
#           exits 0.
#   bad:    malformed, mismatched and oversized requests and misbehaving sockets (stalled,
#           closed, garbage) each get their 4xx with a JSON error or are dropped; the server
#           keeps answering others meanwhile and afterwards.
#   load:   32 keep-alive clients at once: all 200, every answer equals the unbatched one, and
#           the statistics show batches formed (and none with --no-batching); a full queue
#           answers 503 and nothing else.
#   reload: a client hammers a repository model while a poll brings in version 2 (version 1
#           retired), then a garbage version 3 (UNAVAILABLE with the reason, version 2 serves
#           on), then a good version 3, then takes 3 away (version 2 again); the client sees
#           only 200s throughout. Also: versions `all` and `[1, 3]`, a model whose config.yaml
#           is wrong, a model whose folder goes away, unload/load churn under clients, the
#           index read while a fast poll rewrites it, and config.yaml's device: a GPU that cannot
#           be had refused at load, auto serving as kiln predict does.
#   slow:   slow-loris clients (slow_client.py) that drip their requests from other loopback
#           addresses: the per-client and total connection limits hold, a normal request is
#           answered at once (200, or 503 at the total), and the drips are cut with 408 at the
#           whole-request deadlines, not the idle timeout.
# Every server is stopped with SIGTERM and must exit 0 with no sanitizer report in its log.
# usage: test_serve.sh api|bad|load|reload|slow PATH_TO_KILN   (exits 77 without python3 or curl)
set -uo pipefail
mode="${1:-}"
kiln="${2:-}"
[[ $kiln == */* && $kiln != /* ]] && kiln="$PWD/$kiln"
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/lib.sh" # check, alive, start_server, stop_server, cleanup
client="$here/client.py"
py=/usr/bin/python3
name="test_serve ($mode)"
serve_test_setup # skips without python3 or curl; cd into a fresh $tmp

# ---- servers ----


# await_exit PID LOG SECONDS: the server exits 0 within SECONDS, its log free of sanitizer
# reports.
await_exit() {
    local p="$1" log="$2.log" limit="$3" t=0
    while alive "$p" && [ $t -lt $((limit * 10)) ]; do
        sleep 0.1
        t=$((t + 1))
    done
    if alive "$p"; then
        kill -9 "$p"
        wait "$p" 2>/dev/null
        check "kiln serve ($2) exits within $limit s of SIGTERM" false
        return
    fi
    wait "$p"
    local rc=$?
    check "kiln serve ($2) exits 0 on SIGTERM, in $(awk "BEGIN{print $t/10}") s" test $rc -eq 0
    check "kiln serve ($2) leaves no sanitizer report in its log" sanitizer_clean "$log"
}

# ---- HTTP with curl ----

# http METHOD PATH [CURL ARGS...]: the answer's status in $code, its body in body.out, its
# headers in head.out.
http() {
    local method="$1" path="$2"
    shift 2
    code=$(curl -sS -m 20 --path-as-is -D head.out -o body.out -w '%{http_code}' -X "$method" \
        "$@" "$base$path" 2>curl.err) || code="curl failed: $(cat curl.err)"
}
is_json_error() { # the body is {"error": "<something>"}
    "$py" -c 'import json,sys; d=json.load(open("body.out")); sys.exit(0 if isinstance(d, dict) and isinstance(d.get("error"), str) and d["error"] else 1)' 2>/dev/null
}
# req WHAT STATUS METHOD PATH [CURL ARGS...]: checks the status, and that an error is a JSON
# error.
req() {
    local what="$1" want="$2" method="$3" path="$4"
    shift 4
    http "$method" "$path" "$@"
    if [ "$code" = "$want" ] && { [ "$want" -lt 400 ] || is_json_error; }; then
        echo "ok: $what: $method $path -> $want"
    else
        echo "FAILED: $what: $method $path -> $code (want $want$([ "$want" -ge 400 ] && echo ' with a JSON error')): $(head -c 300 body.out)"
        fails=$((fails + 1))
    fi
}
# body_is WHAT PYTHON-EXPRESSION: checks an expression over d, the last answer's JSON body.
body_is() {
    local what="$1"
    if "$py" -c 'import json,sys; d=json.load(open("body.out")); sys.exit(0 if eval(sys.argv[1]) else 1)' "$2" 2>py.err; then
        echo "ok: $what"
    else
        echo "FAILED: $what: $2 is false for $(head -c 400 body.out) $(tail -n 1 py.err)"
        fails=$((fails + 1))
    fi
}
# eventually CMD...: CMD holds within 20 s (polled every 0.1 s).
eventually() { for _ in $(seq 1 200); do "$@" && return 0; sleep 0.1; done; return 1; }
# metric NAME: the value of an unlabelled series in /metrics.
metric() { curl -s -m 5 "$base/metrics" | sed -n "s/^$1 \([0-9.e+]*\)\$/\1/p"; }
infer_json() { # the request body for N samples of seed S (client.py's samples)
    "$py" -c "import sys; sys.path.insert(0, '$here'); import client; sys.stdout.buffer.write(client.infer_body(client.samples($1, $2)))"
}

# ---- models ----

"$py" "$client" data . 1 || { echo "$name: cannot write the data"; exit 1; }
# make_model NAME SEED EPOCHS: trains on train.csv and exports NAME.h5 with names.txt's labels.
make_model() {
    cat >"$1.yaml" <<EOF
model: {layers: [{dense: {units: 16, activation: relu}}]}
data:
  train: {format: csv, path: train.csv}
  test: {format: csv, path: test.csv}
  val_fraction: 0.1
optimizer: {name: adam, lr: 0.01}
train: {epochs: $3, batch_size: 40, seed: $2, threads: 1}
EOF
    "$kiln" train "$1.yaml" --name "$1" --quiet >"$1.train.txt" 2>&1 &&
        "$kiln" export "runs/$1" -o "$1.h5" --labels names.txt >>"$1.train.txt" 2>&1
}
check "a test model trains and exports" make_model model 3 3
[ -s model.h5 ] || { cat model.train.txt; exit 1; }

finish() {
    if [ $fails -ne 0 ]; then
        for f in *.log; do # a sanitizer report whole, else the end of the log
            echo "--- $f"
            if sanitizer_clean "$f"; then tail -n 60 "$f"; else grep -v 'through the repository API' "$f" | head -n 150; fi
        done
        echo "$name: $fails FAILED ($((SECONDS - t_start)) s)"
        exit 1
    fi
    echo "$name: all passed ($((SECONDS - t_start)) s)"
    exit 0
}

case $mode in
api)
    start_server api model.h5 --name clf --instances 2 || finish
    # A port a server holds is refused to another (no SO_REUSEPORT sharing it), before the
    # model loads (a model file that does not exist is not even looked at), suggesting --port 0.
    "$kiln" serve model.h5 --name clf2 --port "$port" >second.log 2>&1
    check "a second server on the same port exits 1" test $? -eq 1
    check "saying it cannot listen there" grep -q "cannot listen on 127.0.0.1:$port" second.log
    "$kiln" serve absent.h5 --port "$port" >third.log 2>&1
    check "before loading the model, suggesting --port 0" \
        grep -q "cannot listen on 127.0.0.1:$port: the port is in use .*--port 0" third.log
    req "server metadata" 200 GET /v2
    body_is "it names kiln and its extensions" \
        'd["name"] == "kiln" and {"binary_tensor_data", "model_repository", "statistics"} <= set(d["extensions"])'
    req "liveness" 200 GET /v2/health/live
    body_is "live is true" 'd == {"live": True}'
    req "readiness" 200 GET /v2/health/ready
    body_is "ready is true" 'd == {"ready": True}'
    http HEAD /v2/health/live -I
    check "HEAD /v2/health/live answers 200" test "$code" = 200
    req "model metadata" 200 GET /v2/models/clf
    body_is "name, versions, the input [-1, 784] FP32" \
        'd["name"] == "clf" and d["versions"] == ["1"] and d["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 784]}]'
    body_is "outputs probabilities, label, label_name" \
        '[(o["name"], o["datatype"], o["shape"]) for o in d["outputs"]] == [("probabilities", "FP32", [-1, 4]), ("label", "INT32", [-1]), ("label_name", "BYTES", [-1])]'
    body_is "the class names from kiln export --labels" \
        'd["parameters"]["labels"] == ["cat", "say \"hi\"", "back\\slash", "naïve café"]'
    req "version metadata" 200 GET /v2/models/clf/versions/1
    body_is "the same model" 'd["name"] == "clf" and d["parameters"]["version"] == "1"'
    req "model readiness" 200 GET /v2/models/clf/ready
    body_is "ready" 'd["ready"] is True and d["name"] == "clf"'
    req "version readiness" 200 GET /v2/models/clf/versions/1/ready
    req "--name clf: no model under the file's stem" 404 GET /v2/models/model
    req "an unknown version's metadata" 404 GET /v2/models/clf/versions/2
    req "the model's statistics before any request" 200 GET /v2/models/clf/stats
    body_is "zero counts" \
        'd["model_stats"][0]["name"] == "clf" and d["model_stats"][0]["version"] == "1" and d["model_stats"][0]["inference_count"] == 0 and d["model_stats"][0]["batch_stats"] == []'
    req "a curl infer" 200 POST /v2/models/clf/infer -H 'Content-Type: application/json' \
        --data-binary "$(infer_json 2 5)"
    body_is "answers the three outputs for 2 samples" \
        '[o["shape"] for o in d["outputs"]] == [[2, 4], [2], [2]]'
    # The inference forms, against kiln predict on the same samples (x.csv).
    "$kiln" predict model.h5 --input x.csv -o p.csv >predict.txt 2>&1
    check "kiln predict on x.csv" test $? -eq 0
    check "inference equals kiln predict; JSON forms, datatypes and binary data agree" \
        "$py" "$client" api "$port" clf p.csv
    req "the statistics after the requests" 200 GET /v2/models/clf/versions/1/stats
    body_is "count samples, model calls, batch sizes, success and durations" \
        '(lambda s: s["inference_count"] >= 40 and s["execution_count"] >= 20 and s["inference_stats"]["success"]["count"] >= 20 and s["inference_stats"]["success"]["ns"] > 0 and s["last_inference"] > 0 and all(b["compute_infer"]["count"] > 0 for b in s["batch_stats"]) and 16 in [b["batch_size"] for b in s["batch_stats"]])(d["model_stats"][0])'
    stop_server "$pid" api

    # A repository, with a model that fails to load and a model folder outside it.
    mkdir -p repo/clf/1 repo/broken/1 repo/slow/1 outside/1
    cp model.h5 repo/clf/1/model.h5
    cp model.h5 repo/slow/1/model.h5
    echo 'max_queue_delay_us: 1500000' >repo/slow/config.yaml
    cp model.h5 outside/1/model.h5
    head -c 3000 model.h5 >repo/broken/1/model.h5
    start_server repo --repository repo --auth-token sekret --instances 1 || finish
    check "the log says why broken failed to load" grep -q 'model broken version 1 failed to load' repo.log
    auth=(-H 'Authorization: Bearer sekret')
    # A model whose files fail to load is in the index; it does not take the others out.
    http GET /v2/health/ready
    check "readiness with a model that fails to load: 200 ($code)" test "$code" = 200
    body_is "ready is true" 'd == {"ready": True}'
    req "the broken model's metadata" 503 GET /v2/models/broken
    req "the broken model's readiness" 503 GET /v2/models/broken/ready
    req "the index without a token" 401 POST /v2/repository/index
    check "401 says how to authenticate" grep -qi '^WWW-Authenticate: Bearer' head.out
    req "the index with a wrong token" 401 POST /v2/repository/index -H 'Authorization: Bearer sekre'
    req "the index with a longer token" 401 POST /v2/repository/index -H 'Authorization: Bearer sekret2'
    req "the index with the token as Basic" 401 POST /v2/repository/index -H 'Authorization: Basic sekret'
    # RFC 7235: the scheme is case-insensitive, and one or more spaces separate it from the token.
    req "the index with 'bearer' in lower case" 200 POST /v2/repository/index -H 'Authorization: bearer sekret'
    req "the index with 'BEARER'" 200 POST /v2/repository/index -H 'Authorization: BEARER sekret'
    req "the index with two spaces after the scheme" 200 POST /v2/repository/index -H 'Authorization: Bearer  sekret'
    req "a lower-case scheme with a wrong token" 401 POST /v2/repository/index -H 'Authorization: bearer sekre'
    req "a scheme that only starts with Bearer" 401 POST /v2/repository/index -H 'Authorization: Bearersekret'
    req "a scheme and no token" 401 POST /v2/repository/index -H 'Authorization: bearer'
    req "the index with the token" 200 POST /v2/repository/index "${auth[@]}"
    body_is "lists clf READY and broken UNAVAILABLE with the reason" \
        'sorted((e["name"], e.get("version"), e["state"]) for e in d) == [("broken", "1", "UNAVAILABLE"), ("clf", "1", "READY"), ("slow", "1", "READY")] and all(e["reason"] for e in d if e["name"] == "broken")'
    req "GET on the index" 405 GET /v2/repository/index "${auth[@]}"
    req "unload without the token" 401 POST /v2/repository/models/clf/unload
    req "so clf still serves" 200 GET /v2/models/clf
    req "unload with the token" 200 POST /v2/repository/models/clf/unload "${auth[@]}"
    req "an unloaded model's metadata" 404 GET /v2/models/clf
    req "an unloaded model's readiness" 404 GET /v2/models/clf/ready
    req "infer on an unloaded model" 404 POST /v2/models/clf/infer --data-binary "$(infer_json 1 5)"
    req "the index after unload" 200 POST /v2/repository/index "${auth[@]}"
    body_is "says clf is unloaded" \
        '[e["state"] for e in d if e["name"] == "clf"] == ["UNAVAILABLE"] and "unload" in [e["reason"] for e in d if e["name"] == "clf"][0]'
    req "unload it again" 404 POST /v2/repository/models/clf/unload "${auth[@]}"
    req "load without the token" 401 POST /v2/repository/models/clf/load
    req "load with the token" 200 POST /v2/repository/models/clf/load "${auth[@]}"
    req "a loaded model's metadata" 200 GET /v2/models/clf
    req "infer after load" 200 POST /v2/models/clf/infer --data-binary "$(infer_json 1 5)"
    req "load a model the repository lacks" 404 POST /v2/repository/models/nope/load "${auth[@]}"
    req "load a model that fails" 400 POST /v2/repository/models/broken/load "${auth[@]}"
    req "unload the broken model" 200 POST /v2/repository/models/broken/unload "${auth[@]}"
    req "readiness once the broken model is unloaded" 200 GET /v2/health/ready
    # Path traversal: refused, and nothing outside the repository is loaded.
    for p in '..%2F..%2Fetc' '..%2Foutside' '..' '%2E%2E' '.hidden' 'clf%2F..%2F..%2Foutside' \
        "$(printf 'a%.0s' $(seq 1 65))"; do
        http POST "/v2/repository/models/$p/load" "${auth[@]}"
        check "load of '$p' is refused (400/404) with a JSON error ($code)" \
            eval '[[ $code == 400 || $code == 404 ]] && is_json_error'
    done
    http POST /v2/repository/models/../outside/load "${auth[@]}"
    check "load of ../outside (raw path) is refused ($code)" eval '[[ $code == 400 || $code == 404 ]]'
    for p in '/v2/models/../infer' '/v2/models/..%2Foutside/infer' '/v2/models/%2E%2E/infer' \
        '/v2/models/../../v2/models/clf/infer'; do
        http POST "$p" --data-binary "$(infer_json 1 5)"
        check "POST $p is refused (400/404) ($code)" eval '[[ $code == 400 || $code == 404 ]]'
    done
    req "no model 'outside'" 404 GET /v2/models/outside
    req "the index after the traversal attempts" 200 POST /v2/repository/index "${auth[@]}"
    body_is "holds only the repository's models" 'sorted(set(e["name"] for e in d)) == ["broken", "clf", "slow"]'
    check "the log shows no load but clf's" \
        test "$(grep -c 'through the repository API' repo.log)" -eq 3
    check "unload with requests in flight: they finish on the unloaded version" \
        "$py" "$client" unload "$port" slow sekret
    stop_server "$pid" repo

    # A non-loopback address without a token is refused at start.
    for host in 0.0.0.0 :: 192.0.2.1; do
        timeout 20 "$kiln" serve model.h5 --host "$host" --port 0 >host.txt 2>&1
        rc=$?
        check "--host $host without --auth-token is refused at start (exit $rc)" test $rc -eq 1
        check "saying to give --auth-token" grep -q "binding $host exposes the server.*--auth-token" host.txt
    done
    KILN_AUTH_TOKEN='' timeout 20 "$kiln" serve model.h5 --host 0.0.0.0 --port 0 >host.txt 2>&1
    check "an empty KILN_AUTH_TOKEN is no token" test $? -eq 1
    # What the host resolves to counts: localhost is loopback, and needs no token.
    "$kiln" serve model.h5 --host localhost --port 0 >localhost.log 2>&1 &
    lpid=$!
    pids+=("$lpid")
    listening() { grep -q 'listening on http://localhost:' localhost.log; }
    check "--host localhost without a token starts" eventually listening
    stop_server "$lpid" localhost

    # SIGTERM with requests in flight: a long batching delay keeps them queued when it comes.
    start_server term model.h5 --name clf --instances 1 --max-queue-delay-us 2500000 || finish
    check "SIGTERM with 4 requests in flight: they get 200, new connections do not" \
        "$py" "$client" term "$port" clf "$pid"
    await_exit "$pid" term 5 # the requests wait at most 2.5 s for their batch
    check "the log says it is stopping with requests in flight" \
        grep -q 'stopping: no new connections; answering the [1-9][0-9]* requests in flight' term.log
    ;;
bad)
    start_server bad model.h5 --name clf --max-body-mb 1 --timeout 2 --max-batch-size 8 \
        --instances 1 || finish
    check "malformed and mismatched requests: 4xx with a JSON error each" \
        "$py" "$client" bad "$port" clf
    # Bodies around --max-body-mb 1: whitespace pads a good request to the limit and past it.
    "$py" - "$here" <<'EOF'
import sys
sys.path.insert(0, sys.argv[1])
import client
good = client.infer_body(client.samples(1, 5))
open("limit.json", "wb").write(good + b" " * ((1 << 20) - len(good)))
open("over.json", "wb").write(good + b" " * ((1 << 20) + 1 - len(good)))
open("big.json", "wb").write(good + b" " * (3 << 20))
EOF
    req "a body of exactly 1 MiB" 200 POST /v2/models/clf/infer --data-binary @limit.json
    req "a body of 1 MiB + 1 byte" 413 POST /v2/models/clf/infer --data-binary @over.json
    req "a 3 MiB body with Content-Length" 413 POST /v2/models/clf/infer --data-binary @big.json
    req "a 3 MiB body, chunked" 413 POST /v2/models/clf/infer --data-binary @big.json \
        -H 'Transfer-Encoding: chunked'
    req "1 MiB + 1 byte, chunked" 413 POST /v2/models/clf/infer --data-binary @over.json \
        -H 'Transfer-Encoding: chunked'
    req "exactly 1 MiB, chunked" 200 POST /v2/models/clf/infer --data-binary @limit.json \
        -H 'Transfer-Encoding: chunked'
    req "an empty body with curl" 400 POST /v2/models/clf/infer --data-binary ''
    req "form data" 400 POST /v2/models/clf/infer -F 'inputs=[1, 2]'
    check "stalled, closed and garbage sockets are dropped; others answered meanwhile" \
        "$py" "$client" raw "$port" clf 2
    req "after all of it, a good request" 200 POST /v2/models/clf/infer \
        --data-binary "$(infer_json 1 5)"
    check "the server process is alive" alive "$pid"
    req "and live" 200 GET /v2/health/live
    # SIGTERM while a client holds a request whose body never comes: dropped after --timeout.
    "$py" "$client" stall "$port" clf 20 >stall.txt 2>&1 &
    pids+=($!)
    for _ in $(seq 1 50); do grep -q stalled stall.txt && break; sleep 0.1; done
    # Its headers are in once it is a request in flight (besides the scrape asking).
    stall_in_flight() { test "$(metric kiln_requests_in_flight)" -ge 2; }
    check "the stalled request is in flight" eventually stall_in_flight
    kill -TERM "$pid"
    await_exit "$pid" bad 6
    ;;
load)
    # Without --instances: one instance per two cores, at least one (the HTTP threads take one per
    # core).
    start_server defaults model.h5 --name clf || finish
    cores=$(getconf _NPROCESSORS_ONLN)
    want=$((cores / 2 > 0 ? cores / 2 : 1))
    curl -s -m 5 "$base/metrics" >metrics.out
    check "by default $want instance(s) on $cores cores" \
        grep -Eq "^kiln_instances\\{[^}]*\\} $want\$" metrics.out
    stop_server "$pid" defaults
    start_server batched model.h5 --name clf --max-queue-delay-us 2000 --instances 1 || finish
    check "32 clients with dynamic batching: all 200, unbatched answers, batches formed" \
        "$py" "$client" load "$port" clf batched
    stop_server "$pid" batched
    start_server unbatched model.h5 --name clf --no-batching --instances 1 || finish
    check "32 clients with --no-batching: all 200, one request a model call" \
        "$py" "$client" load "$port" clf unbatched
    stop_server "$pid" unbatched
    start_server burst model.h5 --name clf --max-queue 1 --instances 1 \
        --max-queue-delay-us 1000000 || finish
    check "a burst against --max-queue 1: 503s with JSON errors and 200s, nothing else" \
        "$py" "$client" burst "$port" clf
    stop_server "$pid" burst
    ;;
reload)
    check "a second model (another seed, more epochs) trains and exports" make_model b 11 8
    "$py" "$client" csv 1 31 h.csv # the hammer's sample
    "$kiln" predict model.h5 --input h.csv -o pa.csv >/dev/null 2>&1 &&
        "$kiln" predict b.h5 --input h.csv -o pb.csv >/dev/null 2>&1
    check "kiln predict scores the hammer's sample with both models" test $? -eq 0
    check "the two models answer differently" eval '! cmp -s pa.csv pb.csv'
    mkdir -p repo/m/1 repo/multi/1 repo/multi/2 repo/pick/1 repo/pick/2
    cp model.h5 repo/m/1/model.h5
    printf 'versions: {latest: 1}\nmax_queue_delay_us: 500\n' >repo/m/config.yaml
    # Version policies: all versions, and a list naming a version the repository lacks.
    cp model.h5 repo/multi/1/model.h5 && cp b.h5 repo/multi/2/model.h5
    echo 'versions: all' >repo/multi/config.yaml
    cp model.h5 repo/pick/1/model.h5 && cp b.h5 repo/pick/2/model.h5
    echo 'versions: [1, 3]' >repo/pick/config.yaml
    start_server reload --repository repo --poll 0.5 --instances 1 || finish
    req "a model with versions: all" 200 GET /v2/models/multi
    body_is "serves both" 'd["versions"] == ["1", "2"] and d["parameters"]["version"] == "2"'
    for v in 1 2; do
        http POST /v2/models/multi/versions/$v/infer --data-binary "$(infer_json 1 31)"
        cp body.out "multi$v.json"
        check "multi version $v answers 200 ($code)" test "$code" = 200
    done
    check "as its own file does" "$py" -c '
import csv, json
for v, p in (("1", "pa.csv"), ("2", "pb.csv")):
    d = json.load(open("multi%s.json" % v))
    want = [float(x) for x in list(csv.reader(open(p, encoding="utf-8")))[1][2:]]
    got = [o for o in d["outputs"] if o["name"] == "probabilities"][0]["data"]
    assert d["model_version"] == v and max(abs(a - b) for a, b in zip(got, want)) <= 1e-6, v'
    req "multi's statistics" 200 GET /v2/models/multi/stats
    body_is "cover both versions" '[s["version"] for s in d["model_stats"]] == ["1", "2"] and [s["inference_count"] for s in d["model_stats"]] == [1, 1]'
    req "a model with versions: [1, 3]" 200 GET /v2/models/pick
    body_is "serves version 1 only" 'd["versions"] == ["1"]'
    req "pick's version 2, outside the list" 404 GET /v2/models/pick/versions/2
    req "the index" 200 POST /v2/repository/index
    body_is "says version 3 of pick is missing" \
        '[e["state"] for e in d if e["name"] == "pick" and e.get("version") == "3"] == ["UNAVAILABLE"] and "no model.h5" in [e["reason"] for e in d if e["name"] == "pick" and e.get("version") == "3"][0]'
    "$py" "$client" hammer "$port" m hammer.json stop.flag >hammer.txt 2>&1 &
    hpid=$!
    pids+=("$hpid")
    # hammer_has EXPR [SECONDS]: waits until EXPR holds over h, the hammer's summary so far.
    hammer_has() {
        local t=0
        while [ $t -lt $((${2:-20} * 10)) ]; do
            "$py" -c 'import json,sys; h=json.load(open("hammer.json")); sys.exit(0 if eval(sys.argv[1]) else 1)' "$1" 2>/dev/null && return 0
            sleep 0.1
            t=$((t + 1))
        done
        return 1
    }
    # answer_is VERSION PRED.csv: the hammer's last answer from VERSION equals kiln predict's.
    answer_is() {
        "$py" -c '
import csv, json, sys
h = json.load(open("hammer.json"))
want = [float(v) for v in list(csv.reader(open(sys.argv[2], encoding="utf-8")))[1][2:]]
got = h["answers"][sys.argv[1]]
sys.exit(0 if max(abs(a - b) for a, b in zip(got, want)) <= 1e-6 else 1)' "$1" "$2"
    }
    check "the hammer gets answers from version 1" hammer_has 'h["versions"].get("1", 0) >= 20'
    check "version 1 answers as model.h5 does" answer_is 1 pa.csv
    # Version 2: written elsewhere on the same file system, then moved into place.
    mkdir staging2 && cp b.h5 staging2/model.h5 && mv staging2 repo/m/2
    check "the poll brings version 2 into service" hammer_has 'h["last_version"] == "2"'
    check "version 2 answers as b.h5 does" answer_is 2 pb.csv
    for _ in $(seq 1 50); do grep -q 'model m version 1 retired' reload.log && break; sleep 0.1; done
    check "with latest: 1, version 1 is retired" grep -q 'model m version 1 retired' reload.log
    req "the model's versions" 200 GET /v2/models/m
    body_is "are [2]" 'd["versions"] == ["2"]'
    req "version 1 is gone" 404 GET /v2/models/m/versions/1/ready
    # Version 3: garbage bytes.
    mkdir staging3 && "$py" -c 'import random; r = random.Random(3); open("staging3/model.h5", "wb").write(bytes(r.randrange(256) for _ in range(5000)))' &&
        cp staging3/model.h5 staging3.garbage && mv staging3 repo/m/3
    for _ in $(seq 1 100); do grep -q 'model m version 3 failed to load' reload.log && break; sleep 0.1; done
    check "the log reports version 3's failure" grep -q 'model m version 3 failed to load: .' reload.log
    served2=$("$py" -c 'import json; print(json.load(open("hammer.json"))["versions"].get("2", 0))')
    req "the repository index" 200 POST /v2/repository/index
    body_is "shows version 3 UNAVAILABLE with a reason, version 2 READY" \
        'sorted((e["version"], e["state"]) for e in d if e["name"] == "m") == [("2", "READY"), ("3", "UNAVAILABLE")] and [e["reason"] for e in d if e["name"] == "m" and e["version"] == "3"][0] != ""'
    check "version 2 keeps serving" hammer_has "h['versions']['2'] >= $served2 + 30"
    req "the model's versions after the failure" 200 GET /v2/models/m
    body_is "are still [2]" 'd["versions"] == ["2"]'
    polls0=$(metric kiln_repository_polls_total)
    two_more_polls() { test "$(metric kiln_repository_polls_total)" -ge $((polls0 + 2)); }
    check "two more polls run" eventually two_more_polls
    check "an unchanged failed file is not retried every poll" \
        test "$(grep -c 'model m version 3 failed to load' reload.log)" -eq 1
    # A good file replaces the garbage: version 3 loads and takes over.
    cp model.h5 repo/m/3/model.h5.tmp && mv repo/m/3/model.h5.tmp repo/m/3/model.h5
    check "a good version 3 replacing the garbage comes into service" \
        hammer_has 'h["last_version"] == "3"'
    check "and answers as its file does" answer_is 3 pa.csv
    # Version 3's model.h5 replaced in place: another file moved over it (a new inode), then the
    # same file rewritten (cp over it), garbage and good. Each good file serves, under the same
    # version number, once fully loaded; the garbage is noted while the file before serves on.
    # index_is EXPR: EXPR holds over d, the repository index.
    index_is() {
        http POST /v2/repository/index
        "$py" -c 'import json,sys; d=json.load(open("body.out")); sys.exit(0 if eval(sys.argv[1]) else 1)' "$1" 2>/dev/null
    }
    cp b.h5 repo/m/3/model.h5.new && mv repo/m/3/model.h5.new repo/m/3/model.h5
    check "another file moved over version 3's model.h5 serves as version 3" \
        eventually answer_is 3 pb.csv
    check "the log says version 3 was reloaded" grep -q 'model m version 3 reloaded' reload.log
    fails3=$(grep -c 'model m version 3 failed to load' reload.log)
    cp staging3.garbage repo/m/3/model.h5
    more_failures() { test "$(grep -c 'model m version 3 failed to load' reload.log)" -gt "$fails3"; }
    check "garbage copied over it in place fails to load, and is logged" eventually more_failures
    check "the log says the file before serves on" \
        grep -q 'model m version 3 failed to load: its model file changed and the file loaded before serves on' reload.log
    check "the index shows version 3 READY, with the reason" eventually index_is \
        '[(e["version"], e["state"], "changed" in e["reason"]) for e in d if e["name"] == "m"] == [("3", "READY", True)]'
    served3=$("$py" -c 'import json; print(json.load(open("hammer.json"))["versions"]["3"])')
    check "version 3 keeps answering" hammer_has "h['versions']['3'] >= $served3 + 20"
    check "as b.h5 does" answer_is 3 pb.csv
    cp model.h5 repo/m/3/model.h5
    check "a good file copied over it in place serves as version 3" eventually answer_is 3 pa.csv
    check "the index then shows version 3 READY with no reason" eventually index_is \
        '[(e["version"], e["state"], e["reason"]) for e in d if e["name"] == "m"] == [("3", "READY", "")]'
    req "the index then" 200 POST /v2/repository/index
    body_is "shows only version 3 of m, READY" '[(e["version"], e["state"]) for e in d if e["name"] == "m"] == [("3", "READY")]'
    for _ in 1 2 3; do
        req "loading the served model again through the API" 200 POST /v2/repository/models/m/load
    done
    # Rolling back: version 3's folder leaves, and version 2 serves again.
    mv repo/m/3 trash3
    check "with version 3 gone, version 2 comes back into service" \
        hammer_has 'h["last_version"] == "2" and h["versions"]["3"] > 0'
    for _ in $(seq 1 50); do grep -q 'model m version 3 retired' reload.log && break; sleep 0.1; done
    req "the model's versions after the rollback" 200 GET /v2/models/m
    body_is "are [2]" 'd["versions"] == ["2"]'
    touch stop.flag
    for _ in $(seq 1 100); do alive "$hpid" || break; sleep 0.1; done
    check "the hammer stops" eval '! alive $hpid'
    check "over the whole run the hammer saw only 200s and no dropped connection" "$py" -c '
import json, sys
h = json.load(open("hammer.json"))
print("   hammer: %d requests, codes %s, versions %s, errors %s" % (h["requests"], h["codes"],
      h["versions"], h["errors"][:3]))
sys.exit(0 if h.get("done") and h["requests"] > 100 and list(h["codes"]) == ["200"]
         and not h["errors"] else 1)'
    check "unloading and loading m while 4 clients infer: 200, 404 or 503 with JSON errors" \
        "$py" "$client" churn "$port" m
    # A new model whose config.yaml is wrong: reported, and loaded once fixed and asked for.
    mkdir -p staging_n/1 && cp model.h5 staging_n/1/model.h5 &&
        printf 'max_batch_sise: 8\n' >staging_n/config.yaml && mv staging_n repo/n
    for _ in $(seq 1 50); do grep -q 'model n: ' reload.log && break; sleep 0.1; done
    check "the log names n's config.yaml, the bad key and the likely one" grep -q \
        "model n: repo/n/config.yaml:1:1: max_batch_sise: unknown key; did you mean 'max_batch_size'" \
        reload.log
    req "the index with n" 200 POST /v2/repository/index
    body_is "shows n UNAVAILABLE, saying why" \
        '[e["state"] for e in d if e["name"] == "n"] == ["UNAVAILABLE"] and "config.yaml:1:1" in [e["reason"] for e in d if e["name"] == "n"][0]'
    req "n's metadata" 503 GET /v2/models/n
    req "m still answers" 200 POST /v2/models/m/infer --data-binary "$(infer_json 1 5)"
    # A latency target out of range is refused with its place; one in range shows in the stats.
    printf 'max_batch_size: 8\nlatency_slo_ms: -2\n' >repo/n/config.yaml
    req "loading n with latency_slo_ms -2" 400 POST /v2/repository/models/n/load
    body_is "naming n's config.yaml, line 2 and latency_slo_ms" \
        '"repo/n/config.yaml:2:" in d["error"] and "latency_slo_ms" in d["error"]'
    printf 'max_batch_size: 8\nlatency_slo_ms: 50\n' >repo/n/config.yaml
    req "loading n once its config.yaml is fixed" 200 POST /v2/repository/models/n/load
    req "n's metadata then" 200 GET /v2/models/n
    body_is "with max_batch_size 8" 'd["parameters"]["max_batch_size"] == 8'
    req "n infers" 200 POST /v2/models/n/infer --data-binary "$(infer_json 1 5)"
    req "n's stats" 200 GET /v2/models/n/stats
    body_is "show the latency target and a batch cap of half of max_batch_size" \
        'd["model_stats"][0]["latency_slo"] == {"target_ms": 50, "batch_cap": 4, "raised": 0, "lowered": 0}'
    req "readiness with every model serving" 200 GET /v2/health/ready
    # A model whose folder leaves the repository stops being served, and is no longer known.
    mv repo/n trash_n
    for _ in $(seq 1 50); do grep -q 'model n version 1 retired' reload.log && break; sleep 0.1; done
    check "the poll retires the removed model n" grep -q 'model n version 1 retired' reload.log
    req "n's metadata once its folder is gone" 404 GET /v2/models/n
    http GET /v2/health/ready
    check "the server is still ready: every model left in the repository serves ($code)" \
        test "$code" = 200
    stop_server "$pid" reload

    # Devices: a GPU the machine cannot have is refused at load with the reason, whatever the
    # machine; device auto serves (on the CPU without a GPU: the same answers as kiln predict;
    # on a GPU within rounding); cuda where no GPU is visible is refused too.
    mkdir -p devs/far/1 devs/auto/1 devs/want/1
    for d in far auto want; do cp model.h5 devs/$d/1/model.h5; done
    printf 'device: cuda\ngpu: 255\n' >devs/far/config.yaml
    echo 'device: auto' >devs/auto/config.yaml
    echo 'device: cuda' >devs/want/config.yaml
    gpu=0
    nvidia-smi -L >/dev/null 2>&1 && gpu=1
    start_server devs --repository devs --instances 1 || finish
    check "the log says why far (gpu 255) failed to load" grep -Eq \
        'model far version 1 failed to load: .*(gpu 255: only [0-9]+ CUDA devices? (is|are) visible|device: cuda was asked for)' \
        devs.log
    req "far's metadata" 503 GET /v2/models/far
    req "the index" 200 POST /v2/repository/index
    body_is "lists far UNAVAILABLE, saying why" \
        '[e["state"] for e in d if e["name"] == "far"] == ["UNAVAILABLE"] and "cuda" in [e["reason"] for e in d if e["name"] == "far"][0].lower()'
    if [ $gpu = 0 ]; then
        check "device: cuda without a visible GPU is refused, saying so" grep -Eq \
            'model want version 1 failed to load: device: cuda was asked for, but (no CUDA device is visible|this build of kiln has no CUDA support).*config.yaml or --device' \
            devs.log
        check "device: auto without a GPU serves on the CPU" grep -q 'model auto version 1 ready.*, on CPU$' devs.log
    else
        check "device: cuda with a GPU serves on it" grep -q 'model want version 1 ready.*, on CUDA device 0' devs.log
    fi
    for d in auto want; do
        [ $gpu = 0 ] && [ $d = want ] && continue
        http POST /v2/models/$d/infer --data-binary "$(infer_json 1 31)"
        cp body.out "dev_$d.json"
        check "$d answers 200 ($code)" test "$code" = 200
        # On the CPU the same calls as kiln predict's; on a GPU its GEMMs round differently.
        check "$d answers as kiln predict on the CPU does" "$py" -c '
import csv, json, sys
d = json.load(open(sys.argv[1]))
want = [float(x) for x in list(csv.reader(open("pa.csv", encoding="utf-8")))[1][2:]]
got = [o for o in d["outputs"] if o["name"] == "probabilities"][0]["data"]
sys.exit(0 if max(abs(a - b) for a, b in zip(got, want)) <= float(sys.argv[2]) else 1)' \
            "dev_$d.json" "$([ $gpu = 1 ] && echo 1e-4 || echo 1e-6)"
    done
    stop_server "$pid" devs

    # The index read while a fast poll rewrites it: a model whose version list names 1500
    # versions the repository lacks gets a note for each, on every poll.
    mkdir -p race/r/1 && cp model.h5 race/r/1/model.h5
    "$py" -c 'print("versions: [1, %s]" % ", ".join(str(i) for i in range(3, 1502)))' \
        >race/r/config.yaml
    start_server race --repository race --poll 0.05 --instances 1 || finish
    check "reading the index while the poll rewrites its notes" "$py" "$client" index "$port" 3
    check "the server survives it" alive "$pid"
    stop_server "$pid" race
    ;;
slow)
    # Small limits, so that a few slow clients reach them; a long idle --timeout, so that only
    # the whole-request deadlines can cut a client that drips its request.
    start_server slow model.h5 --name clf --instances 1 --timeout 60 --header-timeout 2 \
        --body-timeout 2 --max-connections 24 --max-connections-per-client 8 \
        --access-log access.log || finish
    check "slow clients: per-client and total limits, whole-request deadlines (408)" \
        "$py" "$here/slow_client.py" "$port" 8 24 2 2
    curl -s "$base/metrics" >metrics.txt
    check "the metrics count the cuts at the headers' deadline" \
        grep -Eq '^kiln_http_deadline_cuts_total\{phase="headers"\} ([89]|[1-9][0-9]+)$' metrics.txt
    check "and the one at the body's" grep -qx 'kiln_http_deadline_cuts_total{phase="body"} 1' metrics.txt
    check "the access log says the slow body's request ended at its deadline" \
        grep -q '"path":"/v2/models/clf/infer".*"ended":"deadline"' access.log
    stop_server "$pid" slow
    ;;
*)
    echo "usage: test_serve.sh api|bad|load|reload|slow PATH_TO_KILN" >&2
    exit 2
    ;;
esac
finish
