#!/usr/bin/env bash
# kiln serve's serving patterns end to end over HTTP (docs/serve.md, config.yaml's pre, post,
# lookup, pipeline and ensemble keys), on tiny classifiers trained here from CSVs: a and b (4
# features, 3 classes, other seeds), c (3 one-hot features, 2 classes). The requests' samples are
# picked from a pool with kiln predict's help (a and b disagree on some, a's threshold sees both
# answers, no expected value sits on a rounding edge). Every value is checked against kiln
# predict on the inputs the pattern should have made, combined in Python (patterns_client.py):
#   steps:     a's pre steps (scale, then clip) equal kiln predict on the transformed samples and
#              not on the raw, half-transformed or wrongly ordered ones; one_hot (first and middle
#              column), argmax (ties to the first) and threshold as pre steps on c; post top_k
#              (ties to the lower class, names, k clamped to the classes) and threshold
#              (decision = p[0] >= 0.5); JSON and binary answers agree, BYTES names decode.
#   ensembles: mean = (pa + pb) / 2, weighted_mean [3, 1] = (3 pa + pb) / 4, vote = the vote
#              fractions and the majority (a, b and a2, a copy of a), a two-member tie broken by
#              the summed probability, an ensemble's own pre steps; members answer on the
#              ensemble's input (their own pre steps are theirs); the statistics count requests.
#   pipelines: a -> argmax -> one_hot -> c equals c's predict on one_hot(argmax(pa)); a pipeline
#              ending with a step answers that step's output; a step failing inside a pipeline
#              is a 400 naming the sample.
#   lookup:    ids joined from a CSV table (the key column between features) or an HDF5 one are
#              exact (2^53 and 2^53 + 1, the int64 extremes), in the request's order, duplicates
#              allowed, JSON or binary, INT32 or INT64, then pre steps; the table is read again
#              when its file changes, and a broken one leaves the last good one in use.
#   errors:    an unknown id, FP32 ids, ids out of range, a one_hot value out of range, a width
#              that does not chain: 400 naming what is wrong; a member unloaded: 503 until it is
#              loaded again (also under 4 clients while b is unloaded and loaded 10 times, and
#              for a composite reloaded meanwhile); bad config.yaml files (an unknown step, a bad
#              argument, a pipeline whose widths do not chain, a key given twice in a step, a
#              lookup or an ensemble, ...): UNAVAILABLE in the index with
#              the reason (config.yaml:line:col where it is the file's), counted in /metrics, the
#              others served.
#   edges:     arguments past an int (k, column), a threshold column past the model's outputs, a
#              CRLF table's line numbers, a table with a NUL byte, a pre step that overflows a
#              finite value: refused at load or a 4xx, never a crash, garbage or a 500.
# Every server is stopped with SIGTERM and must exit 0 with no sanitizer report in its log.
# usage: test_patterns.sh PATH_TO_KILN   (exits 77 without python3 or curl)
set -uo pipefail
kiln="${1:-}"
[[ $kiln == */* && $kiln != /* ]] && kiln="$PWD/$kiln"
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/lib.sh" # check, alive, start_server, stop_server, cleanup
client="$here/patterns_client.py"
py=/usr/bin/python3
name="test_patterns"
[ -x "$kiln" ] || { echo "usage: test_patterns.sh PATH_TO_KILN" >&2; exit 2; }
serve_test_setup # skips without python3 or curl; cd into a fresh $tmp

# ---- the server ----

end_server() { # pid, log name: stop_server when it runs; else it died: say so, and check its log
    if alive "$1"; then
        stop_server "$1" "$2"
    else
        check "kiln serve ($2) was still running at the end" false
        check "kiln serve ($2) leaves no sanitizer report in its log" sanitizer_clean "$2.log"
    fi
}

# ---- HTTP with curl ----

http() { # METHOD PATH [CURL ARGS...]: status in $code, body in body.out
    local method="$1" path="$2"
    shift 2
    code=$(curl -sS -m 20 -o body.out -w '%{http_code}' -X "$method" "$@" "$base$path" \
        2>curl.err) || code="curl failed: $(cat curl.err)"
}
is_json_error() {
    "$py" -c 'import json,sys; d=json.load(open("body.out")); sys.exit(0 if isinstance(d, dict) and isinstance(d.get("error"), str) and d["error"] else 1)' 2>/dev/null
}
req() { # WHAT STATUS METHOD PATH [CURL ARGS...]: the status, and a JSON error for >= 400
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
body_is() { # WHAT PYTHON-EXPRESSION over d, the last answer's JSON body
    local what="$1"
    if "$py" -c 'import json,sys; d=json.load(open("body.out")); sys.exit(0 if eval(sys.argv[1]) else 1)' "$2" 2>py.err; then
        echo "ok: $what"
    else
        echo "FAILED: $what: $2 is false for $(head -c 600 body.out) $(tail -n 1 py.err)"
        fails=$((fails + 1))
    fi
}
# index_says MODEL STATE SUBSTRING...: the index (in body.out) lists MODEL in STATE, and its
# reason holds every SUBSTRING.
index_says() {
    local m="$1" state="$2"
    shift 2
    if "$py" - "$m" "$state" "$@" <<'EOF' 2>py.err; then
import json, sys
m, state, subs = sys.argv[1], sys.argv[2], sys.argv[3:]
es = [e for e in json.load(open("body.out")) if e["name"] == m]
ok = es and all(e["state"] == state for e in es) and all(
    s in e.get("reason", "") for e in es for s in subs)
sys.exit(0 if ok else 1)
EOF
        echo "ok: the index lists $m $state${*:+, the reason naming: $*}"
    else
        echo "FAILED: the index lists $m $state${*:+, the reason naming: $*}: $("$py" -c 'import json,sys; print([e for e in json.load(open("body.out")) if e["name"] == sys.argv[1]])' "$m" 2>&1 | head -c 600)"
        fails=$((fails + 1))
    fi
}
pc() { "$py" "$client" "$@"; } # a patterns_client.py subcommand, counted as one check

finish() {
    if [ $fails -ne 0 ]; then
        for f in *.log; do # a sanitizer report whole, else the end of the log
            echo "--- $f"
            if sanitizer_clean "$f"; then tail -n 60 "$f"; else head -n 150 "$f"; fi
        done
        echo "$name: $fails FAILED ($((SECONDS - t_start)) s)"
        exit 1
    fi
    echo "$name: all passed ($((SECONDS - t_start)) s)"
    exit 0
}

# ---- models and expected values ----

pc data . || { echo "$name: cannot write the data"; exit 1; }
# make_model NAME TRAIN TEST SEED LABELS: a tiny classifier, exported to NAME.h5.
make_model() {
    cat >"$1.yaml" <<EOF
model: {layers: [{dense: {units: 8, activation: relu}}]}
data:
  train: {format: csv, path: $2}
  test: {format: csv, path: $3}
  val_fraction: 0.1
optimizer: {name: adam, lr: 0.01}
train: {epochs: 6, batch_size: 30, seed: $4, threads: 1}
EOF
    "$kiln" train "$1.yaml" --name "$1" --quiet >"$1.train.txt" 2>&1 &&
        "$kiln" export "runs/$1" -o "$1.h5" --labels "$5" >>"$1.train.txt" 2>&1
}
check "model a (4 features, 3 classes) trains and exports" make_model a train4.csv test4.csv 3 names3.txt
check "model b (the same data, another seed) trains and exports" make_model b train4.csv test4.csv 11 names3.txt
check "model c (3 one-hot features, 2 classes) trains and exports" make_model c train3.csv test3.csv 5 names2.txt
for m in a b c; do [ -s $m.h5 ] || { cat $m.train.txt; exit 1; }; done
predict() { # MODEL INPUT.csv OUT.csv
    "$kiln" predict "$1.h5" --input "$2" -o "$3" >>predict.txt 2>&1 ||
        { echo "FAILED: kiln predict $1 on $2"; cat predict.txt; fails=$((fails + 1)); }
}
predict a pool.csv pool_pa.csv
predict b pool.csv pool_pb.csv
predict a pool_pre_x.csv pool_pre.csv
[ $fails -eq 0 ] || finish
check "the requests' samples picked from the pool" pc pick .
[ -s xs.csv ] || finish
predict a xs.csv pa_raw.csv
predict b xs.csv pb.csv
predict a x_pre.csv pa_pre.csv
predict a x_scale.csv pa_scale.csv
predict a x_wrong.csv pa_wrong.csv
predict b x_pre.csv pb_pre.csv
predict a look_rows.csv plook.csv
predict a look_rows_pre.csv plook_pre.csv
predict c onehot3.csv pc_onehot3.csv
predict c c_mid.csv pc_mid.csv
pc pipe-input . && predict c pipe_in.csv pc_pipe.csv
pc table2 . && predict a look_rows2.csv plook2.csv
[ $fails -eq 0 ] || finish

# ---- the repository ----

model_dir() { # NAME FILE CONFIG: NAME/1/model.h5 from FILE (none when FILE is -), config.yaml
    mkdir -p "repo/$1"
    if [ "$2" != - ]; then mkdir -p "repo/$1/1" && cp "$2" "repo/$1/1/model.h5"; fi
    printf '%s\n' "$3" >"repo/$1/config.yaml"
}
model_dir a a.h5 'pre:
  - scale: {factor: 2, offset: -1}
  - clip: {min: -1, max: 1}
post:
  - top_k: {k: 2}
  - threshold: {value: 0.5, column: 0}'
model_dir a2 a.h5 '# a copy of a: a third vote'
model_dir b b.h5 'max_batch_size: 8'
model_dir c c.h5 '# three one-hot features, two classes'
model_dir c-oh c.h5 'pre: [{one_hot: {column: 0, classes: 3}}]'
model_dir c-mid c.h5 'pre:
  - one_hot: {column: 1, classes: 2}'
model_dir c-am c.h5 'pre:
  - argmax: {}
  - one_hot: {column: 0, classes: 3}'
model_dir c-th c.h5 'pre:
  - threshold: {value: 0.5, column: 1}
  - one_hot: {column: 0, classes: 3}'
model_dir ens-mean - 'ensemble: {members: [a, b], combine: mean}'
model_dir ens-weighted - 'ensemble:
  members: [a, b]
  combine: weighted_mean
  weights: [3, 1]'
model_dir ens-vote - 'ensemble: {members: [a, b, a2], combine: vote}
post:
  - top_k: {k: 2}'
model_dir ens-vote2 - 'ensemble: {members: [a, b], combine: vote}'
model_dir ens-pre - 'pre:
  - scale: {factor: 2, offset: -1}
  - clip: {min: -1, max: 1}
ensemble: {members: [a, b]}'
model_dir pipe - 'pipeline:
  - model: a
  - argmax: {}
  - one_hot: {column: 0, classes: 3}
  - model: c
post:
  - top_k: {k: 3}'
model_dir pipe-am - 'pipeline:
  - model: a
  - argmax: {}'
model_dir pipe-shift - 'pipeline:
  - model: a
  - argmax: {}
  - scale: {offset: 1}
  - one_hot: {column: 0, classes: 3}
  - model: c'
model_dir look a.h5 'lookup: {table: features.csv, key: id}'
cp features.csv repo/look/features.csv
# The same table as HDF5 (written through ctypes with the libhdf5 kiln links, where it can).
pc h5table . "$kiln" features.h5 >h5table.txt 2>&1
h5rc=$?
if [ $h5rc -eq 0 ]; then
    model_dir look-h5 a.h5 'lookup: {table: features.h5}'
    cp features.h5 repo/look-h5/features.h5
elif [ $h5rc -eq 77 ]; then
    part_missing "the HDF5 feature table ($(cat h5table.txt))"
else
    check "the HDF5 feature table is written" false
    cat h5table.txt
fi
model_dir look-pre a.h5 'lookup: {table: ../look/features.csv}
pre:
  - scale: {factor: 2, offset: -1}
  - clip: {min: -1, max: 1}'
# Models that must not load, each for its own reason.
model_dir bad-step a.h5 'pre:
  - clpi: {}'
model_dir bad-arg a.h5 'post:
  - top_k: {k: 0}'
model_dir bad-post a.h5 'post:
  - clip: {min: 0, max: 1}'
model_dir bad-pre a.h5 'pre:
  - top_k: {k: 2}'
model_dir bad-pipe - 'pipeline:
  - model: a
  - model: b'
model_dir bad-start - 'pipeline:
  - argmax: {}
  - model: a'
model_dir bad-oh - 'pipeline:
  - model: a
  - one_hot: {column: 3, classes: 2}
  - model: c'
model_dir bad-ens - 'ensemble: {members: [a, c]}'
model_dir bad-weights - 'ensemble: {members: [a, b], combine: weighted_mean, weights: [1]}'
model_dir bad-member - 'ensemble: {members: [a, nope]}'
model_dir bad-table a.h5 'lookup: {table: missing.csv, key: id}'
# A key given twice, in a step's arguments, a lookup and an ensemble: refused at the second one,
# as in every other mapping of config.yaml, not read as the first.
model_dir bad-dup-arg a.h5 'pre:
  - clip: {min: -1, max: 1, min: 0}'
model_dir bad-dup-look a.h5 'lookup: {table: missing.csv, key: id, key: x}'
model_dir bad-dup-ens - 'ensemble: {members: [a, b], members: [a, c]}'

start_server serve --repository repo --instances 2 || finish
good=(a a2 b c c-oh c-mid c-am c-th ens-mean ens-weighted ens-vote ens-vote2 ens-pre pipe pipe-am
    pipe-shift look look-pre)
req "the repository index" 200 POST /v2/repository/index
for m in "${good[@]}"; do index_says "$m" READY; done
index_says bad-step UNAVAILABLE "config.yaml:2:5" "clpi" "did you mean 'clip'"
index_says bad-arg UNAVAILABLE "config.yaml:2:" "k: expected an integer in [1, 1024]"
index_says bad-post UNAVAILABLE "config.yaml:2:5" "clip" "post steps add outputs"
index_says bad-pre UNAVAILABLE "config.yaml:2:5" "top_k" "post step"
index_says bad-pipe UNAVAILABLE "pipeline stage 2 (model b) takes 4 values per sample, but the stage before gives 3"
index_says bad-start UNAVAILABLE "config.yaml:2:5" "a pipeline starts with a model"
index_says bad-oh UNAVAILABLE "pipeline stage 2" "one_hot takes column 3" "3 per sample"
index_says bad-ens UNAVAILABLE "ensemble members a and c differ"
index_says bad-weights UNAVAILABLE "config.yaml:1:" "ensemble.weights" "one per member"
index_says bad-member UNAVAILABLE "nope"
index_says bad-table UNAVAILABLE "missing.csv"
index_says bad-dup-arg UNAVAILABLE "config.yaml:2:" "min: duplicate key (first set at line 2)"
index_says bad-dup-look UNAVAILABLE "config.yaml:1:" "lookup.key: duplicate key (first set at line 1)"
index_says bad-dup-ens UNAVAILABLE "config.yaml:1:" "ensemble.members: duplicate key (first set at line 1)"
http GET /metrics
for m in bad-step bad-pipe bad-member; do
    check "/metrics counts $m's load failure" \
        grep -Eq "^kiln_model_load_failures_total\{model=\"$m\"\} [1-9]" body.out
done
for m in bad-step bad-pipe bad-member; do
    req "$m's metadata" 503 GET "/v2/models/$m"
done
check "the log says ens-mean is an ensemble of 2 members, 4 values in, 3 out" \
    grep -q 'model ens-mean (an ensemble of 2 members) ready: 4 values in, 3 out' serve.log
check "the log says pipe is a pipeline of 4 stages, 4 values in, 2 out" \
    grep -q 'model pipe (a pipeline of 4 stages) ready: 4 values in, 2 out' serve.log
req "a composite has no version 2" 404 GET /v2/models/ens-mean/versions/2
req "it is served as version 1" 200 GET /v2/models/pipe/versions/1/ready

check "every pattern answers its documented values (steps, ensembles, pipelines, lookup)" \
    pc values "$port" .
if [ $h5rc -eq 0 ]; then
    req "the repository index" 200 POST /v2/repository/index
    index_says look-h5 READY
    check "look-h5 (an HDF5 table: datasets id, x) answers as look does" \
        pc lookup "$port" . plook.csv look-h5
fi
check "the patterns' bad requests: 400 naming the id, the sample, the width" pc errors "$port" .

# Members resolved per request: unloaded, the composite answers 503; loaded again, 200.
req "unload b" 200 POST /v2/repository/models/b/unload
check "with b unloaded: the ensembles 503 naming b, pipe and a 200" pc members "$port" . b-down
req "ens-mean's statistics" 200 GET /v2/models/ens-mean/stats
body_is "count the request that failed with 503 (member b unloaded) as a failure" \
    'd["model_stats"][0]["inference_stats"]["fail"]["count"] == 1'
# A composite reloaded while a member is away: the load may fail, but once the member is back
# the composite serves again (as one never reloaded does), and the server is ready.
http POST /v2/repository/models/ens-weighted/load
echo "   loading ens-weighted while b is unloaded: $code $(head -c 200 body.out)"
req "load b" 200 POST /v2/repository/models/b/load
check "b loaded again: ens-mean and pipe answer their values" pc members "$port" . up
x4='{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[0.5,1,-1,2]}]}'
req "ens-weighted, reloaded while b was unloaded, once b is back" 200 \
    POST /v2/models/ens-weighted/infer --data-binary "$x4"
req "readiness once b is back" 200 GET /v2/health/ready
req "unload c" 200 POST /v2/repository/models/c/unload
check "with c unloaded: pipe 503 naming c, ens-mean 200" pc members "$port" . c-down
req "load c" 200 POST /v2/repository/models/c/load
check "c loaded again: pipe answers its values" pc members "$port" . up
# The composites themselves: unloaded, reloaded while served.
req "unload ens-mean" 200 POST /v2/repository/models/ens-mean/unload
req "ens-mean unloaded" 404 POST /v2/models/ens-mean/infer --data-binary @/dev/null
req "the index after" 200 POST /v2/repository/index
index_says ens-mean UNAVAILABLE "unload"
req "load ens-mean" 200 POST /v2/repository/models/ens-mean/load
req "load pipe while it serves (a reload)" 200 POST /v2/repository/models/pipe/load
check "ens-mean and pipe answer their values again" pc members "$port" . up
check "b unloaded and loaded 10 times under 4 clients of ens-mean" pc churn "$port" .

# The feature table is read again when its file changes (written elsewhere, then renamed).
cp features2.csv repo/look/features.tmp && mv repo/look/features.tmp repo/look/features.csv
check "look answers from the new table (entity 42's row changed)" \
    pc lookup "$port" . plook2.csv
# A table that fails to read (a field that is not a number) leaves the last good one in use.
sed 's/^1\.5,/x,/' features2.csv >repo/look/features.tmp && mv repo/look/features.tmp repo/look/features.csv
check "a broken table leaves the last good one in use" pc lookup "$port" . plook2.csv

# A broken config.yaml fixed, then loaded through the API.
printf 'pre:\n  - clip: {min: -1, max: 1}\n' >repo/bad-step/config.yaml
req "load bad-step once its config.yaml is fixed" 200 POST /v2/repository/models/bad-step/load
req "it answers" 200 POST /v2/models/bad-step/infer \
    --data-binary '{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[5,-5,0.5,0]}]}'
req "the readiness of a served composite" 200 GET /v2/models/ens-vote/ready
req "the server is live" 200 GET /v2/health/live
stop_server "$pid" serve

# ---- edges: arguments past int, checks the load can make, tables that are not clean text ----

# Each of these must be refused when the model loads (UNAVAILABLE, the reason naming the file),
# and a request to it must get a JSON error, never a crash or an answer made of garbage.
model_dir_in() { # REPO NAME FILE CONFIG
    mkdir -p "$1/$2/1" && cp "$3" "$1/$2/1/model.h5" && printf '%s\n' "$4" >"$1/$2/config.yaml"
}
model_dir_in edge th5 a.h5 'post:
  - threshold: {value: 0.5, column: 5}'
model_dir_in edge topk a.h5 'post:
  - top_k: {k: 3000000000}'
model_dir_in edge-thcol thcol a.h5 'post:
  - threshold: {value: 0.5, column: 2147483648}'
model_dir_in edge-ohcol ohcol c.h5 'pre:
  - one_hot: {column: 4294967296, classes: 3}'
model_dir_in edge scl a.h5 'pre:
  - scale: {factor: 2}'
model_dir_in edge crlf a.h5 'lookup: {table: t.csv, key: id}'
printf 'f0,f1,id,f2,f3\r\n1,2,5,3,4\r\n1,2,x,3,4\r\n' >edge/crlf/t.csv
model_dir_in edge nul a.h5 'lookup: {table: t.csv, key: id}'
printf 'f0,f1,id,f2,f3\n1,2,5,3,4\n1,2,6,3,4\n' >edge/nul/t.csv
x1='{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[0.5,1,-1,2]}]}'
start_server edge --repository edge --instances 1 || finish
req "the edge repository's index" 200 POST /v2/repository/index
index_says th5 UNAVAILABLE "config.yaml:2:" "column 5" "3"
index_says topk UNAVAILABLE "config.yaml:2:" "k"
index_says crlf UNAVAILABLE "t.csv:3:" "'x'"
req "th5 (threshold on column 5 of 3)" 503 POST /v2/models/th5/infer --data-binary "$x1"
req "topk (k 3000000000)" 503 POST /v2/models/topk/infer --data-binary "$x1"
# A finite value that a pre step makes infinite is the request's fault, not kiln's.
req "scl (scale 2) on 3e38" 400 POST /v2/models/scl/infer \
    --data-binary '{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[3e38,0,0,0]}]}'
body_is "naming the sample" '"sample 0" in d["error"]'
l2='{"inputs":[{"name":"id","shape":[2],"datatype":"INT64","data":[5,6]}]}'
req "nul's table before it changes" 200 POST /v2/models/nul/infer --data-binary "$l2"
# The table rewritten with a NUL byte inside a row: read again on the next request.
printf 'f0,f1,id,f2,f3\n1,2,5,3,4\0,1,2,6,3\n' >edge/nul/t.tmp && mv edge/nul/t.tmp edge/nul/t.csv
http POST /v2/models/nul/infer --data-binary "$l2"
check "a table with a NUL byte: the old table answers (200) or a JSON error ($code)" \
    eval '[[ $code == 200 ]] || { [[ $code =~ ^[45] ]] && is_json_error; }'
end_server "$pid" edge
# Steps whose arguments do not fit an int, each on a server of its own (they may crash it).
for m in ohcol thcol; do
    if [ "$m" = ohcol ]; then xm='{"inputs":[{"name":"input","shape":[1,1],"datatype":"FP32","data":[1]}]}'; else xm="$x1"; fi
    start_server "edge-$m" --repository "edge-$m" --instances 1 || continue
    req "the index" 200 POST /v2/repository/index
    index_says "$m" UNAVAILABLE "config.yaml:2:" "column"
    http POST "/v2/models/$m/infer" --data-binary "$xm"
    check "$m: a JSON error (503: not loaded), not a crash ($code)" \
        eval '[[ $code == 503 ]] && is_json_error'
    end_server "$pid" "edge-$m"
done
finish
