#!/usr/bin/env bash
# kiln serve on ONNX models (docs/onnx.md): a single model.onnx file and a repository version
# folder holding model.onnx with config.yaml beside it, the answers checked against numpy on the
# same weights and against kiln predict; concurrent requests batched dynamically (the batch axis
# of the graph is dynamic); and online_learning refused for an ONNX version with the reason.
# usage: test_serve_onnx.sh KILN   (exit 77 without python3-onnx, numpy or curl)
set -u
kiln="$(realpath "$1")"
py=/usr/bin/python3
name=test_serve_onnx
. "$(dirname "$0")/lib.sh"
serve_test_setup
"$py" -c 'import onnx, numpy' 2>/dev/null || { echo "$name: skipped: no python3-onnx"; exit 77; }

# An MLP, 4 features -> 8 (relu) -> 3, with a dynamic batch; weights.npz keeps its weights.
"$py" - <<'PY'
import numpy as np, onnx
from onnx import TensorProto, helper, numpy_helper
rng = np.random.default_rng(5)
w1, b1 = rng.standard_normal((8, 4)).astype(np.float32), rng.standard_normal(8).astype(np.float32)
w2, b2 = rng.standard_normal((3, 8)).astype(np.float32), rng.standard_normal(3).astype(np.float32)
np.savez("weights.npz", w1=w1, b1=b1, w2=w2, b2=b2)
inits = [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))]
nodes = [helper.make_node("Gemm", ["features", "w1", "b1"], ["h"], transB=1),
         helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("Gemm", ["r", "w2", "b2"], ["scores"], transB=1)]
g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 4])],
                      [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 3])], inits)
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
onnx.checker.check_model(m)
onnx.save(m, "mlp.onnx")
PY
mkdir -p repo/net/1 repo/learner/1
cp mlp.onnx repo/net/1/model.onnx
cp mlp.onnx repo/learner/1/model.onnx
printf 'max_batch_size: 16\nmax_queue_delay_us: 2000\ninstances: 1\n' >repo/net/config.yaml
printf 'online_learning: {}\n' >repo/learner/config.yaml

# infer.py URL ROWS: sends ROWS requests of one to three samples from 4 threads, checks every
# answer against numpy to 1e-5 and the output's name, datatype and shape; prints the batch sizes
# the server reports when asked with --stats.
cat >infer.py <<'PY'
import json, sys, threading, urllib.request
import numpy as np
url, rows = sys.argv[1], int(sys.argv[2])
w = np.load("weights.npz")
def want(x):
    return np.maximum(x @ w["w1"].T + w["b1"], 0) @ w["w2"].T + w["b2"]
bad = []
def worker(k):
    rng = np.random.default_rng(k)
    for i in range(rows // 4):
        n = 1 + (i % 3)
        x = rng.standard_normal((n, 4)).astype(np.float32)
        body = json.dumps({"inputs": [{"name": "features", "shape": [n, 4], "datatype": "FP32",
                                       "data": x.flatten().tolist()}]}).encode()
        req = urllib.request.Request(url + "/infer", body, {"Content-Type": "application/json"})
        out = json.load(urllib.request.urlopen(req, timeout=10))["outputs"][0]
        got = np.array(out["data"], np.float32).reshape(out["shape"])
        if out["name"] != "scores" or out["datatype"] != "FP32" or out["shape"] != [n, 3] or \
                not np.allclose(got, want(x), rtol=1e-5, atol=1e-5):
            bad.append(f"request {k}.{i}: {out['name']} {out['shape']} {got.tolist()} vs {want(x).tolist()}")
ts = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
[t.start() for t in ts]
[t.join() for t in ts]
print("\n".join(bad[:3]) or f"{rows} requests answered as numpy computes")
sys.exit(1 if bad else 0)
PY

# A single file.
if start_server single mlp.onnx --instances 1; then
    meta=$(curl -s "$base/v2/models/mlp")
    check "metadata names the graph's input and output" \
        "$py" -c 'import json,sys; m=json.loads(sys.argv[1]); i,o=m["inputs"][0],m["outputs"][0]; sys.exit(not (i["name"]=="features" and i["shape"]==[-1,4] and o["name"]=="scores" and o["shape"]==[-1,3]))' "$meta"
    check "a single model.onnx answers as numpy computes" "$py" infer.py "$base/v2/models/mlp" 40
    stop_server "$pid" single
fi

# A repository: model.onnx in a version folder with config.yaml beside it; online learning refused.
if start_server repo --repository repo; then
    check "a repository's model.onnx answers concurrent requests as numpy computes" \
        "$py" infer.py "$base/v2/models/net" 200
    stats=$(curl -s "$base/v2/models/net/stats")
    check "concurrent requests were batched (a model call of more than 3 samples)" \
        "$py" -c 'import json,sys; s=json.loads(sys.argv[1])["model_stats"][0]; sys.exit(not any(b["batch_size"] > 3 for b in s["batch_stats"]))' "$stats"
    check "online_learning on an ONNX model is refused with the reason" \
        grep -q 'learner version 1 failed to load: .*online learning is not supported for ONNX models yet' repo.log
    stop_server "$pid" repo
fi

# kiln predict on the same file gives the same numbers.
"$py" -c 'import numpy as np; rng=np.random.default_rng(9); x=rng.standard_normal((5,4)); np.savetxt("x.csv", x, delimiter=",", header="a,b,c,d", comments="")'
"$kiln" predict mlp.onnx --input x.csv -o p.csv --quiet
check "kiln predict mlp.onnx matches numpy" "$py" -c '
import numpy as np
w = np.load("weights.npz"); x = np.loadtxt("x.csv", delimiter=",", skiprows=1).astype(np.float32)
want = np.maximum(x @ w["w1"].T + w["b1"], 0) @ w["w2"].T + w["b2"]
got = np.loadtxt("p.csv", delimiter=",", skiprows=1)
raise SystemExit(not np.allclose(got, want, rtol=1e-5, atol=1e-5))'

echo "$name: $fails failure(s) in $((SECONDS - t_start)) s"
[ "$fails" -eq 0 ]
