#!/usr/bin/env bash
# kiln serve's online learning end to end over HTTP (docs/serve.md, "Online learning"), on a
# small classifier trained here from client.py's synthetic CSV (784 features, 4 classes):
#   - feedback whose labels are shifted to one class the model rarely predicts for the samples:
#     each answer counts the steps, every publish_every steps a version is published into the
#     repository (a complete version folder with a kiln-model file that kiln predict reads and
#     scores as the server does), the model's metadata lists it, and predictions move toward the
#     fed class; a client inferring all along sees only 200s;
#   - malformed feedback gets 4xx with a JSON error (409 for a model without online_learning)
#     and the server keeps serving; a full learner queue answers 503;
#   - persist: false publishes a version from a temporary folder, not the repository's, and
#     the folder is gone once the server stops; a wrong online_learning key is reported;
#   - the published versions are served again after a restart.
# Every server is stopped with SIGTERM and must exit 0 with no sanitizer report in its log.
# usage: test_online.sh PATH_TO_KILN   (exits 77 without python3 or curl)
set -uo pipefail
kiln="${1:-}"
[[ $kiln == */* && $kiln != /* ]] && kiln="$PWD/$kiln"
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/lib.sh" # check, alive, start_server, stop_server, cleanup
client="$here/client.py"
oc="$here/online_client.py"
py=/usr/bin/python3
name="test_online"
serve_test_setup # skips without python3 or curl; cd into a fresh $tmp
finish() {
    if [ $fails -ne 0 ]; then
        for f in *.log; do
            echo "--- $f"
            if sanitizer_clean "$f"; then tail -n 40 "$f"; else head -n 150 "$f"; fi
        done
        echo "$name: $fails FAILED ($((SECONDS - t_start)) s)"
        exit 1
    fi
    echo "$name: all passed ($((SECONDS - t_start)) s)"
    exit 0
}

# ---- the model and the repository ----

"$py" "$client" data . 1 || { echo "$name: cannot write the data"; exit 1; }
cat >model.yaml <<EOF
model: {layers: [{dense: {units: 16, activation: relu}}]}
data:
  train: {format: csv, path: train.csv}
  test: {format: csv, path: test.csv}
  val_fraction: 0.1
optimizer: {name: adam, lr: 0.01}
train: {epochs: 3, batch_size: 40, seed: 3, threads: 1}
EOF
"$kiln" train model.yaml --name model --quiet >train.txt 2>&1 &&
    "$kiln" export runs/model -o model.h5 --labels names.txt >>train.txt 2>&1
check "a test model trains and exports" test -s model.h5
[ -s model.h5 ] || { cat train.txt; exit 1; }
"$py" "$client" csv 32 5 s.csv # the samples online_client.py learn feeds

for m in m plain vol q typo neg sec all pin dflt rate; do mkdir -p "repo/$m/1" && cp model.h5 "repo/$m/1/model.h5"; done
# m and q take many feedback requests in a row: a max_rate well above the default 10 a second.
printf 'instances: 1\nonline_learning: {lr: 0.05, batch_size: 8, publish_every: 4, keep_versions: 2, max_rate: 1000}\n' \
    >repo/m/config.yaml
# keep_versions: the default (3), with every version served, and with a published version pinned.
printf 'instances: 1\nonline_learning: {publish_every: 1}\n' >repo/dflt/config.yaml
printf 'instances: 1\nversions: all\nonline_learning: {publish_every: 1, keep_versions: 1}\n' \
    >repo/all/config.yaml
printf 'instances: 1\nversions: [1, 2]\nonline_learning: {publish_every: 1, keep_versions: 1}\n' \
    >repo/pin/config.yaml
printf 'instances: 1\n' >repo/plain/config.yaml
printf 'instances: 1\nonline_learning:\n  lr: 0.05\n  optimizer: adam\n  batch_size: 16\n  publish_every: 2\n  persist: false\n' \
    >repo/vol/config.yaml
printf 'instances: 1\nmax_batch_size: 256\nonline_learning: {batch_size: 1, publish_every: 100000, max_queue: 1, max_rate: 1000}\n' \
    >repo/q/config.yaml
printf 'online_learning: {publish_evry: 3}\n' >repo/typo/config.yaml
printf 'instances: 1\nonline_learning: {publish_every: 1000}\n' >repo/sec/config.yaml
printf 'instances: 1\nonline_learning: {publish_every: 1000, max_rate: 0.5}\n' >repo/rate/config.yaml
printf 'online_learning: {lr: -1}\n' >repo/neg/config.yaml
mkdir tmpdir
export TMPDIR="$tmp/tmpdir" # where persist: false versions go

# ---- one server: learning, bad feedback, persist: false, a full queue ----

# With a token, feedback needs it as the repository endpoints do: it changes the model.
start_server online --repository repo --auth-token sekret || finish
tok=(--token sekret)
check "a misspelt online_learning key is reported with the likely one" grep -q \
    "model typo: repo/typo/config.yaml:1:19: online_learning.publish_evry: unknown key; did you mean 'publish_every'" \
    online.log
check "a negative learning rate is reported" grep -q \
    "model neg: repo/neg/config.yaml:1:23: online_learning.lr: expected a number in (0, 100\]" online.log
check "shifted labels: steps, published versions, predictions moving; inference sees only 200s" \
    "$py" "$oc" learn "$port" m learn.json "${tok[@]}"
latest=$("$py" -c 'import json; print(json.load(open("learn.json"))["published"][-1])' 2>/dev/null)
published=$("$py" -c 'import json; print(" ".join(json.load(open("learn.json"))["published"]))' 2>/dev/null)
check "versions were published ($published)" test -n "$latest"
# Each published version names the one it continued (the model file's /lineage, shown in the
# metadata): the first the base version 1, each later one the version published before it.
parent=$(echo 1 $published | tr ' ' '\n' | tail -n 2 | head -n 1)
check "version $latest's metadata names its parent, version $parent" "$py" -c '
import json, sys, urllib.request
d = json.load(urllib.request.urlopen(sys.argv[1]))
lin = d["parameters"]["lineage"]
print("   lineage", lin)
assert lin["parent_version"] == sys.argv[2], lin
assert lin["parent"].endswith("/%s/model.h5" % sys.argv[2]), lin' \
    "$base/v2/models/m/versions/$latest" "$parent"
# folders_are DIR "N N...": DIR holds these version folders, config.yaml and nothing else (no
# temporary or half-pruned folder).
folders_are() {
    local got
    got=$(ls -A "$1" | grep -v '^config.yaml$' | sort -n | xargs)
    [ "$got" = "$2" ] || { echo "   $1 holds: $got"; return 1; }
}
# served_is MODEL "N N...": the model's metadata lists these versions.
served_is() {
    curl -s "$base/v2/models/$1" | "$py" -c 'import json, sys
d = json.load(sys.stdin)
print("   %s serves %s" % (sys.argv[1], d["versions"]))
sys.exit(0 if d["versions"] == sys.argv[2].split() else 1)' "$1" "$2"
}
newest2=$(echo $published | tr ' ' '\n' | tail -n 2 | xargs)
check "keep_versions 2: repo/m holds the base version and the newest two published ($newest2)" \
    folders_are repo/m "1 $newest2"
for v in $newest2; do
    check "version folder repo/m/$v holds model.h5 and online learning's marker" \
        test -s "repo/m/$v/model.h5" -a -s "repo/m/$v/online.json"
done
check "the base version has no marker" test ! -e repo/m/1/online.json
check "the log says which versions were pruned" \
    test "$(grep -c "model m: version [0-9]* pruned (online_learning.keep_versions: 2)" online.log)" -eq 3
"$kiln" predict "repo/m/$latest/model.h5" --input s.csv -o p.csv >predict.txt 2>&1
check "kiln predict reads the published version $latest" test $? -eq 0
check "and scores as the server's version $latest does, with the model's class names" "$py" -c '
import csv, json
rows = list(csv.reader(open("p.csv", encoding="utf-8")))
assert rows[0][2:] == ["p_cat", "p_say \"hi\"", "p_back\\slash", "p_naïve café"], rows[0]
got = json.load(open("learn.json"))["probabilities"]
want = [[float(v) for v in r[2:]] for r in rows[1:5]]
assert max(abs(a - b) for g, w in zip(got, want) for a, b in zip(g, w)) <= 1e-6, (got, want)'
check "the log says each version was published" \
    test "$(grep -c "model m: online learning published version" online.log)" -eq "$(echo $published | wc -w)"
check "malformed feedback: 4xx with a JSON error each; inference and feedback go on" \
    "$py" "$oc" bad "$port" m plain "${tok[@]}"
check "persist: false publishes version 2 and serves it" "$py" "$oc" volatile "$port" vol "${tok[@]}"
check "persist: false leaves the repository alone" test ! -e repo/vol/2
check "persist: false writes into a temporary folder" test -s "$(echo tmpdir/kiln-online-vol-*/2/model.h5)"
check "a full learner queue: 503s and 200s" "$py" "$oc" full "$port" q "${tok[@]}"
check "feedback without the token, or with another, gets 401 and teaches nothing" \
    "$py" "$oc" auth "$port" sec sekret
check "past max_rate: 429 with Retry-After, nothing learnt; then taken again" \
    "$py" "$oc" rate "$port" rate "${tok[@]}"
check "keep_versions by default: 5 feedback requests publish versions 2 to 6" \
    "$py" "$oc" publish "$port" dflt 5 dflt.json "${tok[@]}"
check "only the newest 3 published stay on disk, with the base version" folders_are repo/dflt "1 4 5 6"
check "versions: all, keep_versions: 1: 3 feedback requests publish versions 2 to 4" \
    "$py" "$oc" publish "$port" all 3 all.json "${tok[@]}"
check "the base version and the newest published one serve" served_is all "1 4"
check "and only they are on disk" folders_are repo/all "1 4"
# versions: [1, 2] pins the first published version: a later one is written but not served,
# and pruning, which takes no version in service, leaves version 2.
"$py" "$oc" publish "$port" pin 3 pin.json "${tok[@]}" >pin.txt
check "versions: [1, 2]: the pinned version 2 serves beside the base version" served_is pin "1 2"
check "version 2 stays past keep_versions: 1 (it serves); version 3 is pruned, 4 kept" \
    folders_are repo/pin "1 2 4"
stop_server "$pid" online
check "the temporary folder is removed when the server stops" test -z "$(ls -A tmpdir)"

# ---- each published version's run record (docs/runs.md) ----

# record_is DIR PARENT_VERSION PARENT_RUN PUBLISH_EVERY: DIR/run.json is an online record whose
# lineage names the parent version and its run, with the feedback its steps learnt from.
record_is() {
    "$py" - "$@" <<'PY'
import json, math, os, sys
d, parent, run, every = sys.argv[1], sys.argv[2], os.path.realpath(sys.argv[3]), int(sys.argv[4])
r = json.load(open(os.path.join(d, "run.json")))
lin, fin = r["lineage"], r["metrics"]["final"]
print("   %s: %s, lineage %s, final %s" % (d, r["exit_reason"], lin, fin))
assert r["format"] == "kiln-run" and r["kind"] == "online" and r["status"] == "finished", r
assert r["name"] == "%s/%s" % tuple(d.split("/")[-2:]), r["name"]
assert lin["parent_version"] == int(parent) and lin["parent_run"] == run, lin
assert lin["parent"] == os.path.realpath(os.path.join(d, "..", parent, "model.h5")) or \
    lin["parent"].endswith("/%s/model.h5" % parent), lin
assert lin["source_run"] == os.path.realpath("runs/model"), lin
assert fin["new_steps"] == every and fin["step"] >= every, fin
batch = r["params"]["online_learning.batch_size"]
assert every <= fin["feedback"] <= every * batch, (fin, batch)
assert math.isfinite(fin["train_loss"]) and fin["train_loss"] >= 0, fin
assert r["params"]["online_learning.publish_every"] == every, r["params"]
assert r["params"]["model.layers.0.units"] == 16, r["params"]
assert r["system"]["wall_seconds"] >= 0 and r["provenance"]["kiln_version"], r
PY
}
newest=$(echo $newest2 | cut -d' ' -f2)
older=$(echo $newest2 | cut -d' ' -f1)
check "m's version $newest has a run record naming version $older and its run" \
    record_is "repo/m/$newest" "$older" "repo/m/$older" 4
# pin's version 2 is the first published: its parent, version 1, was exported from runs/model.
check "pin's first published version names version 1 and the run that trained it" \
    record_is repo/pin/2 1 runs/model 1
"$kiln" runs --root repo/m list --where kind=online >runs.txt 2>&1
check "kiln runs lists m's published versions as runs" \
    test "$(grep -cE "^($older|$newest) +finished" runs.txt)" -eq 2
"$kiln" runs --root repo/m show "$newest" >show.txt 2>&1
check "kiln runs show names the parent version" grep -q "^parent    version $older, " show.txt
[ $fails -eq 0 ] || cat runs.txt show.txt

# ---- a restart serves the published version ----

start_server again --repository repo || finish
code=$(curl -s -o meta.json -w '%{http_code}' "$base/v2/models/m")
check "after a restart, m serves the last published version $latest ($code)" "$py" -c '
import json, sys
d = json.load(open("meta.json"))
sys.exit(0 if d["versions"] == [sys.argv[1]] else 1)' "$latest"
stop_server "$pid" again
finish
