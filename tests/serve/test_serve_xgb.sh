#!/usr/bin/env bash
# XGBoost models in kiln predict and kiln serve (docs/serve.md): boosters trained here by
# python3-xgboost on a small synthetic set (a 3-class multi:softprob classifier, a binary:logistic
# classifier, a reg:squarederror regressor), saved as JSON and UBJSON; kiln's answers checked
# against XGBoost's own predict_proba / predict to 1e-6 through kiln predict, a single served file
# and a repository whose version folders hold xgboost.json or xgboost.ubj (Triton FIL's names),
# with concurrent requests batched dynamically; a multi:softmax booster, a truncated file and online
# learning refused with the reason.
# usage: test_serve_xgb.sh KILN   (exit 77 without python3-xgboost, numpy, h5py or curl)
set -u
kiln="$(realpath "$1")"
py=/usr/bin/python3
name=test_serve_xgb
. "$(dirname "$0")/lib.sh"
serve_test_setup
"$py" -c 'import xgboost, numpy, h5py' 2>/dev/null ||
    { echo "$name: skipped: no python3-xgboost, python3-numpy or python3-h5py"; exit 77; }

# The boosters, the inputs (x.h5, 200 rows of 6 features) and XGBoost's own answers (want.npz).
"$py" - <<'PY'
import h5py, numpy as np, xgboost as xgb
rng = np.random.default_rng(3)
x = rng.standard_normal((600, 6)).astype(np.float32)
y3 = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int) + (x[:, 2] > 0.8)
y2 = (x[:, 3] * x[:, 4] > 0).astype(int)
yr = (x[:, 0] * 2 - x[:, 5] ** 2 + 0.1 * rng.standard_normal(600)).astype(np.float32)
test = rng.standard_normal((200, 6)).astype(np.float32)
p = dict(n_estimators=20, max_depth=3, learning_rate=0.3, random_state=0)
models = {"multi": xgb.XGBClassifier(objective="multi:softprob", **p).fit(x, y3),
          "binary": xgb.XGBClassifier(objective="binary:logistic", **p).fit(x, y2),
          "reg": xgb.XGBRegressor(objective="reg:squarederror", **p).fit(x, yr)}
want = {}
for k, m in models.items():
    m.get_booster().save_model(f"{k}.json")
    m.get_booster().save_model(f"{k}.ubj")
    want[k] = m.predict_proba(test) if k != "reg" else m.predict(test)[:, None]
np.savez("want.npz", **want)
xgb.XGBClassifier(objective="multi:softmax", **p).fit(x, y3).get_booster().save_model("softmax.json")
with h5py.File("x.h5", "w") as f:
    f["x"] = test
PY

# compare.py WHICH CSV: kiln predict's CSV against XGBoost's answers for model WHICH, to 1e-6,
# with the classes (argmax) and class names "0".."K-1" for a classifier.
cat >compare.py <<'PY'
import csv, sys, numpy as np
which, path = sys.argv[1], sys.argv[2]
want = np.load("want.npz")[which]
rows = list(csv.reader(open(path)))
head, body = rows[0], rows[1:]
cols = [i for i, h in enumerate(head) if h.startswith("p_") or h.startswith("prediction")]
got = np.array([[float(r[i]) for i in cols] for r in body], np.float32)
ok = got.shape == want.shape and np.abs(got - want).max() <= 1e-6
if which != "reg":
    ok = ok and [int(r[0]) for r in body] == list(want.argmax(1)) and \
        [r[1] for r in body] == [str(c) for c in want.argmax(1)]
print(f"  {which} {path}: max |diff| {np.abs(got - want).max() if got.shape == want.shape else 'shape'}")
sys.exit(0 if ok else 1)
PY
for m in multi binary reg; do
    for ext in json ubj; do
        "$kiln" predict "$m.$ext" --input x.h5 -o "p_${m}_${ext}.csv" --quiet
        check "kiln predict $m.$ext matches XGBoost to 1e-6" "$py" compare.py "$m" "p_${m}_${ext}.csv"
    done
done
out=$("$kiln" predict softmax.json --input x.h5 -o s.csv --quiet 2>&1)
check "a multi:softmax booster is refused with the reason" \
    grep -q 'objective multi:softmax predicts class indices.*multi:softprob' <<<"$out"
head -c 300 multi.json >truncated.json
out=$("$kiln" predict truncated.json --input x.h5 -o t.csv --quiet 2>&1)
rc=$?
check "a truncated model is refused (exit 1) with XGBoost's reason and no stack trace" \
    test "$rc" -eq 1 -a -n "$(grep 'truncated.json: XGBoost cannot load the model: ' <<<"$out")" \
    -a -z "$(grep 'Stack trace' <<<"$out")"

# infer.py URL WHICH ROWS: ROWS requests of one to three test rows from 4 threads, every answer
# checked against XGBoost's to 1e-6, with the output's name and shape.
cat >infer.py <<'PY'
import json, sys, threading, urllib.request
import h5py, numpy as np
url, which, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
x, want = h5py.File("x.h5")["x"][:], np.load("want.npz")[which]
name = "predictions" if which == "reg" else "probabilities"
bad = []
def worker(k):
    for i in range(rows // 4):
        n, at = 1 + (i % 3), (k * 37 + i * 5) % 190
        body = json.dumps({"inputs": [{"name": "input", "shape": [n, 6], "datatype": "FP32",
                                       "data": x[at:at + n].flatten().tolist()}]}).encode()
        req = urllib.request.Request(url + "/infer", body, {"Content-Type": "application/json"})
        out = json.load(urllib.request.urlopen(req, timeout=10))["outputs"][0]
        got = np.array(out["data"], np.float32).reshape(out["shape"])
        if out["name"] != name or out["shape"] != [n, want.shape[1]] or \
                np.abs(got - want[at:at + n]).max() > 1e-6:
            bad.append(f"request {k}.{i}: {out['name']} {out['shape']} {got.tolist()}")
ts = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
[t.start() for t in ts]
[t.join() for t in ts]
print("\n".join(bad[:3]) or f"  {rows} requests answered as XGBoost predicts")
sys.exit(1 if bad else 0)
PY

# A single file.
if start_server single multi.json --instances 1; then
    meta=$(curl -s "$base/v2/models/multi")
    check "metadata gives the booster's signature" \
        "$py" -c 'import json,sys; m=json.loads(sys.argv[1]); i,o=m["inputs"][0],m["outputs"][0]; sys.exit(not (i["shape"]==[-1,6] and o["name"]=="probabilities" and o["shape"]==[-1,3]))' "$meta"
    check "a single xgboost.json answers as XGBoost predicts" "$py" infer.py "$base/v2/models/multi" multi 40
    stop_server "$pid" single
fi

# A repository: xgboost.json and xgboost.ubj version folders; online learning refused.
mkdir -p repo/multi/1 repo/binary/1 repo/reg/2 repo/learner/1
cp multi.json repo/multi/1/xgboost.json
cp binary.ubj repo/binary/1/xgboost.ubj
cp reg.json repo/reg/2/xgboost.json
cp reg.json repo/learner/1/xgboost.json
printf 'max_batch_size: 16\nmax_queue_delay_us: 2000\ninstances: 1\n' >repo/multi/config.yaml
printf 'online_learning: {}\n' >repo/learner/config.yaml
if start_server repo --repository repo; then
    for m in multi binary reg; do
        check "the repository's $m answers concurrent requests as XGBoost predicts" \
            "$py" infer.py "$base/v2/models/$m" "$m" 120
    done
    stats=$(curl -s "$base/v2/models/multi/stats")
    check "concurrent requests were batched (a model call of more than 3 samples)" \
        "$py" -c 'import json,sys; s=json.loads(sys.argv[1])["model_stats"][0]; sys.exit(not any(b["batch_size"] > 3 for b in s["batch_stats"]))' "$stats"
    check "online_learning on an XGBoost model is refused with the reason" \
        grep -q 'learner version 1 failed to load: .*online learning is not supported for XGBoost models yet' repo.log
    stop_server "$pid" repo
fi

echo "$name: $fails failure(s) in $((SECONDS - t_start)) s"
[ "$fails" -eq 0 ]
