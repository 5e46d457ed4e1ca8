#!/usr/bin/env python3
"""scikit-learn models through ONNX (docs/onnx.md, "scikit-learn"): a multinomial
LogisticRegression and an MLPClassifier (two ReLU hidden layers), each behind a StandardScaler,
fitted here on a small synthetic set (python3-sklearn), written as ONNX graphs with onnx.helper
from the fitted coefficients (Sub and Div for the scaler, Gemm, Relu, Softmax), then scored by
kiln predict; kiln's probabilities must be within 1e-5 of scikit-learn's predict_proba (which
computes in float64) and give the same classes as predict.

usage: sklearn_peer.py KILN WORKDIR   (exit 0 pass, 1 fail, 77 without python3-sklearn or
python3-onnx)"""
import csv
import os
import subprocess
import sys

try:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
except ImportError as e:
    print(f"SKIP: {e} (install python3-sklearn and python3-onnx)")
    sys.exit(77)

TOL = 1e-5
F, K = 8, 4


def scaler_nodes(scaler, inits):
    """Sub of the mean, Div by the scale: StandardScaler's transform."""
    inits += [numpy_helper.from_array(scaler.mean_.astype(np.float32), "mean"),
              numpy_helper.from_array(scaler.scale_.astype(np.float32), "scale")]
    return [helper.make_node("Sub", ["x", "mean"], ["centred"]),
            helper.make_node("Div", ["centred", "scale"], ["z0"])]


def logreg_graph(pipe):
    scaler, clf = pipe.steps[0][1], pipe.steps[1][1]
    inits = [numpy_helper.from_array(clf.coef_.astype(np.float32), "w"),
             numpy_helper.from_array(clf.intercept_.astype(np.float32), "b")]
    nodes = scaler_nodes(scaler, inits) + [
        helper.make_node("Gemm", ["z0", "w", "b"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["p"], axis=1)]
    return nodes, inits


def mlp_graph(pipe):
    scaler, clf = pipe.steps[0][1], pipe.steps[1][1]
    inits = []
    nodes = scaler_nodes(scaler, inits)
    h = "z0"
    for i, (w, b) in enumerate(zip(clf.coefs_, clf.intercepts_)):
        inits += [numpy_helper.from_array(w.astype(np.float32), f"w{i}"),
                  numpy_helper.from_array(b.astype(np.float32), f"b{i}")]
        nodes.append(helper.make_node("Gemm", [h, f"w{i}", f"b{i}"], [f"a{i}"]))  # x @ W + b
        h = f"a{i}"
        if i + 1 < len(clf.coefs_):
            nodes.append(helper.make_node("Relu", [h], [f"r{i}"]))
            h = f"r{i}"
    nodes.append(helper.make_node("Softmax", [h], ["p"], axis=1))
    return nodes, inits


def save(nodes, inits, name, path):
    g = helper.make_graph(nodes, name,
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", F])],
                          [helper.make_tensor_value_info("p", TensorProto.FLOAT, ["batch", K])],
                          inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(m)
    onnx.save(m, path)


def kiln_predict(kiln, model, xcsv, out):
    r = subprocess.run([kiln, "predict", model, "--input", xcsv, "-o", out, "--quiet"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"kiln predict {model}: exit {r.returncode}: {r.stderr.strip()}")
    with open(out) as f:
        return np.array([[float(v) for v in row] for row in list(csv.reader(f))[1:]])


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    kiln, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    x, y = make_classification(n_samples=800, n_features=F, n_informative=6, n_classes=K,
                               random_state=0)
    x = (x * 3 + 5).astype(np.float32)  # far from standardised, so that the scaler matters
    train, test = slice(0, 600), slice(600, 800)
    xcsv = os.path.join(work, "x.csv")
    np.savetxt(xcsv, x[test], delimiter=",", header=",".join(f"f{i}" for i in range(F)),
               comments="", fmt="%.9g")
    models = {
        "logreg": (make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)),
                   logreg_graph),
        "mlp": (make_pipeline(StandardScaler(),
                              MLPClassifier((16, 12), max_iter=400, random_state=0)),
                mlp_graph),
    }
    ok = True
    for name, (pipe, graph) in models.items():
        pipe.fit(x[train], y[train])
        path = os.path.join(work, f"{name}.onnx")
        save(*graph(pipe), name, path)
        want = pipe.predict_proba(x[test])
        try:
            got = kiln_predict(kiln, path, xcsv, os.path.join(work, f"{name}.csv"))
        except RuntimeError as e:
            print(f"  {name}: {e}  FAIL")
            ok = False
            continue
        diff = float(np.abs(got - want).max()) if got.shape == want.shape else float("inf")
        same = got.shape == want.shape and bool(np.all(got.argmax(1) == pipe.predict(x[test])))
        good = diff <= TOL and same
        print(f"  {name}: kiln vs predict_proba max |diff| {diff:.3g}, classes "
              f"{'equal' if same else 'DIFFER'}{'' if good else '  FAIL'}")
        ok &= good
    print("sklearn_peer: " + ("passed" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
