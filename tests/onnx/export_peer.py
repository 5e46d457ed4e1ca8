#!/usr/bin/env python3
"""kiln export -o model.onnx against three readers: onnx.checker (python3-onnx) must accept the
file, ONNX Runtime (onnxruntime-node from the npm registry, tests/onnx/ort_node.py) must give the
outputs kiln predict gives on the kiln model file exported from the same checkpoint within 1e-5,
and kiln's own importer (kiln predict model.onnx) must too, with the class names read back from
the file's metadata.

Networks: the MLP and the CNN of examples/fashion-mnist and a third CNN that takes every layer
ONNX export writes (conv2d without bias, batchnorm, leaky_relu, avg_pool with padding, a residual
block, global_avg_pool, tanh, sigmoid, per-feature standardisation), each trained for one epoch
on a few hundred Fashion-MNIST images (data.limit) so that the test stays short; scored on the
first 1000 test images. A layer export cannot write yet (layernorm) is refused naming the layer.

usage: export_peer.py KILN WORKDIR   (exit 0 pass, 1 fail, 77 without python3-onnx, h5py or the
dataset-fashion-mnist package, or when npm cannot install onnxruntime-node: then every other
check has still run and passed)"""
import csv
import gzip
import json
import os
import subprocess
import sys

try:
    import h5py
    import numpy as np
    import onnx
except ImportError as e:
    print(f"SKIP: {e} (install python3-onnx, python3-h5py and python3-numpy)")
    sys.exit(77)
from ort_node import ort_run, setup_ort  # noqa: E402  (after the skip check)

TOL = 1e-5
N = 1000
FASHION = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples",
                        "fashion-mnist")
SHORT = ["--set", "train.epochs=1", "--set", "schedule.warmup_steps=2"]

EVERY_LAYER = """
name: every-layer
model:
  layers:
    - conv2d: {filters: 6, kernel: 3, padding: 1, bias: false}
    - batchnorm
    - activation: {activation: leaky_relu, alpha: 0.2}
    - avg_pool: {kernel: 3, stride: 2, padding: 1}
    - residual:
        layers:
          - conv2d: {filters: 6, kernel: 3, padding: 1, activation: sigmoid}
          - batchnorm: {eps: 0.001}
        activation: relu
    - max_pool: {kernel: 2}
    - global_avg_pool
    - dense: {units: 16, activation: tanh}
    - dropout: 0.1
data:
  dataset: fashion-mnist
  val_fraction: 0.1
  standardize: feature
train:
  batch_size: 32
  seed: 3
"""

LAYERNORM = """
name: layernorm
model:
  layers:
    - dense: {units: 8}
    - layernorm
data:
  dataset: fashion-mnist
  limit: 200
train:
  epochs: 1
"""


def run(cmd, cwd):
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])}...: exit {r.returncode}: {r.stderr.strip()}")
    return r


def predict(kiln, model, h5, out, work):
    """kiln predict's scores (the p_ columns of a classifier, else every column) and header."""
    run([kiln, "predict", model, "--input", h5, "-o", out, "--quiet"], work)
    with open(os.path.join(work, out)) as f:
        rows = list(csv.reader(f))
    head = rows[0]
    cols = [i for i, h in enumerate(head) if h.startswith("p_")] or list(range(len(head)))
    return np.array([[float(r[i]) for i in cols] for r in rows[1:]], dtype=np.float32), \
        [head[i][2:] for i in cols]


def compare(name, got, want):
    diff = float(np.max(np.abs(got - want))) if got.shape == want.shape else float("inf")
    ok = diff <= TOL
    print(f"  {name:<40} max |diff| {diff:.3g}{'' if ok else '  FAIL'}")
    return ok


def check_one(kiln, work, name, config, limit, x, h5, ort_folder):
    run([kiln, "train", config, "--name", name, "--set", f"data.limit={limit}"] + SHORT, work)
    onnx_path = os.path.join(work, f"{name}.onnx")
    run([kiln, "export", f"runs/{name}", "-o", f"{name}.h5", "--no-reference", "--quiet"], work)
    out = run([kiln, "export", f"runs/{name}", "-o", f"{name}.onnx"], work).stdout
    if "opset 17" not in out:
        print(f"  {name}: kiln export said nothing of opset 17:\n{out}  FAIL")
        return False
    model = onnx.load(onnx_path)
    onnx.checker.check_model(model, full_check=True)
    meta = {p.key: p.value for p in model.metadata_props}
    opset = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    want, labels = predict(kiln, f"{name}.h5", h5, f"{name}_h5.csv", work)
    ok = opset == [17] and batch.dim_param != "" and meta.get("task") == "classification" and \
        json.loads(meta.get("class_names", "null")) == labels
    ops = sorted({n.op_type for n in model.graph.node})
    print(f"  {name}: checker accepts it; opset {opset}, batch '{batch.dim_param}', "
          f"{len(model.graph.node)} nodes ({', '.join(ops)}), class names "
          f"{'match' if ok else 'or metadata WRONG'}")
    got, names = predict(kiln, onnx_path, h5, f"{name}_onnx.csv", work)
    if names != labels:
        print(f"  {name}: kiln's importer reads class names {names}, not {labels}  FAIL")
        ok = False
    ok &= compare(f"kiln importer vs kiln predict ({name})", got, want)
    if ort_folder:
        ok &= compare(f"onnxruntime vs kiln predict ({name})",
                      ort_run(ort_folder, onnx_path, x, work), want)
    return ok


def check_refusal(kiln, work):
    with open(os.path.join(work, "layernorm.yaml"), "w") as f:
        f.write(LAYERNORM)
    run([kiln, "train", "layernorm.yaml", "--name", "layernorm"], work)
    r = subprocess.run([kiln, "export", "runs/layernorm", "-o", "ln.onnx"], cwd=work,
                       capture_output=True, text=True)
    ok = r.returncode == 1 and "model.layers.1 (layernorm)" in r.stderr and \
        "not supported yet" in r.stderr and not os.path.exists(os.path.join(work, "ln.onnx"))
    print(f"  layernorm refused: {r.stderr.strip()}{'' if ok else '  FAIL'}")
    return ok


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    kiln, work = os.path.abspath(sys.argv[1]), sys.argv[2]
    if not os.path.exists(FASHION):
        print("SKIP: Fashion-MNIST is not installed (dataset-fashion-mnist)")
        return 77
    os.makedirs(work, exist_ok=True)
    subprocess.run(["rm", "-rf", os.path.join(work, "runs")], check=True)
    ort_folder, ort_why = setup_ort(work)
    with gzip.open(FASHION, "rb") as f:
        raw = f.read()
    x = np.frombuffer(raw, dtype=np.uint8, offset=16)[: N * 784].astype(np.float32) / 255
    x = x.reshape(N, 1, 28, 28)
    h5 = os.path.join(work, "inputs.h5")
    with h5py.File(h5, "w") as f:
        f["x"] = x
    every = os.path.join(work, "every_layer.yaml")
    with open(every, "w") as f:
        f.write(EVERY_LAYER)
    print(f"{N} Fashion-MNIST test images; onnxruntime-node: {ort_folder and 'yes' or ort_why}")
    ok = True
    for name, config, limit in (("mlp", os.path.join(EXAMPLES, "mlp.yaml"), 1000),
                                ("cnn", os.path.join(EXAMPLES, "cnn.yaml"), 300),
                                ("every_layer", every, 300)):
        try:
            ok &= check_one(kiln, work, name, config, limit, x, h5, ort_folder)
        except (RuntimeError, onnx.checker.ValidationError) as e:
            print(f"  {name}: {e}  FAIL")
            ok = False
    ok &= check_refusal(kiln, work)
    print("export_peer: " + ("passed" if ok else "FAILED"))
    if ok and not ort_folder:
        print(f"SKIP: ONNX Runtime was not checked: {ort_why}")
        return 77
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
