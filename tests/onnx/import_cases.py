#!/usr/bin/env python3
"""The ONNX importer through `kiln predict`, on models built here with onnx.helper: operator
semantics that change between opsets (Softmax and LogSoftmax before and after 13,
BatchNormalization 9/14/15, Clip before and after 11, Unsqueeze/Squeeze axes as attribute or input,
grouped, dilated and strided convolutions, uneven padding of Conv, MaxPool and AveragePool (and
SAME_UPPER), constant Pad at opsets 9 and 13,
Reshape's 0 and -1 and a folded Shape chain), initializers in raw_data, typed fields and external
data files, each against numpy; and the refusals, each by its message: a truncated or malformed
protobuf, unsupported operators (all of them named), an opset outside 9..17, a cycle, a dangling
input, external data outside the model's folder (by path and by symlink), a raw_data size that
does not match, Pad in reflect mode, AveragePool padding without count_include_pad,
training-mode batch normalisation.

usage: import_cases.py KILN WORKDIR   (exit 0 pass, 1 fail, 77 without python3-onnx)"""
import csv
import os
import subprocess
import sys

try:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError as e:
    print(f"SKIP: {e} (install python3-onnx)")
    sys.exit(77)

KILN, WORK = sys.argv[1], sys.argv[2]
failures = 0
rng = np.random.default_rng(3)


def check(cond, label, detail=""):
    global failures
    print(f"{'ok  ' if cond else 'FAIL'} {label}{'' if cond else ': ' + detail}")
    failures += not cond


def model(name, nodes, inputs, outputs, inits=(), opset=13):
    g = helper.make_graph(nodes, name, inputs, outputs, initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def io(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def save(m, name, check_model=True):
    path = os.path.join(WORK, name + ".onnx")
    if check_model:
        onnx.checker.check_model(m)
    onnx.save(m, path)
    return path


def predict(path, x):
    """kiln predict's outputs for x (n, ...), or its error message."""
    inp, out = path + ".in.csv", path + ".out.csv"
    flat = x.reshape(len(x), -1)
    with open(inp, "w") as f:
        f.write(",".join(f"f{i}" for i in range(flat.shape[1])) + "\n")
        for row in flat:
            f.write(",".join(repr(float(v)) for v in row) + "\n")
    r = subprocess.run([KILN, "predict", path, "--input", inp, "-o", out, "--quiet"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return None, r.stderr.strip()
    with open(out) as f:
        rows = list(csv.reader(f))[1:]
    return np.array([[float(v) for v in row] for row in rows], dtype=np.float32), ""


def agrees(label, path, x, want, tol=1e-5):
    got, err = predict(path, x)
    want = want.reshape(len(x), -1)
    ok = got is not None and got.shape == want.shape and np.allclose(got, want, rtol=1e-4, atol=tol)
    check(ok, label, err or f"max |diff| {np.max(np.abs(got - want)) if got is not None and got.shape == want.shape else 'shape ' + str(None if got is None else got.shape)}")


def refused(label, path, *words, x=None):
    got, err = predict(path, np.zeros((2, 4), np.float32) if x is None else x)
    ok = got is None and all(w in err for w in words)
    check(ok, label, f"wanted {words} in: {err!r}")


def softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def test_softmax():
    x = rng.standard_normal((5, 2, 3)).astype(np.float32)
    for op in ("Softmax", "LogSoftmax"):
        f = (lambda v, a: np.log(softmax(v, a))) if op == "LogSoftmax" else softmax
        # Before 13, axis 1 means the trailing axes as one; from 13, axis 1 alone.
        m = model("sm", [helper.make_node(op, ["x"], ["y"], axis=1)], [io("x", ["N", 2, 3])],
                  [io("y", ["N", 2, 3])], opset=11)
        want = f(x.reshape(5, 6), 1).reshape(5, 2, 3)
        agrees(f"{op} opset 11 axis 1 over the trailing axes", save(m, op + "11"), x, want)
        m = model("sm", [helper.make_node(op, ["x"], ["y"], axis=1)], [io("x", ["N", 2, 3])],
                  [io("y", ["N", 2, 3])], opset=13)
        agrees(f"{op} opset 13 axis 1 alone", save(m, op + "13"), x, f(x, 1))
        m = model("sm", [helper.make_node(op, ["x"], ["y"])], [io("x", ["N", 2, 3])],
                  [io("y", ["N", 2, 3])], opset=13)
        agrees(f"{op} opset 13 default axis -1", save(m, op + "13d"), x, f(x, 2))


def bn_model(opset, **attrs):
    c = 3
    inits = [numpy_helper.from_array(rng.random(c).astype(np.float32) + 0.5, "scale"),
             numpy_helper.from_array(rng.standard_normal(c).astype(np.float32), "bias"),
             numpy_helper.from_array(rng.standard_normal(c).astype(np.float32), "mean"),
             numpy_helper.from_array(rng.random(c).astype(np.float32) + 0.5, "var")]
    node = helper.make_node("BatchNormalization", ["x", "scale", "bias", "mean", "var"], ["y"],
                            **attrs)
    return model("bn", [node], [io("x", ["N", c, 2, 2])], [io("y", ["N", c, 2, 2])], inits,
                 opset), [numpy_helper.to_array(t) for t in inits]


def test_batchnorm():
    x = rng.standard_normal((4, 3, 2, 2)).astype(np.float32)
    for opset in (9, 14, 15):
        m, (s, b, mu, var) = bn_model(opset, epsilon=1e-3)
        r = lambda v: v.reshape(1, 3, 1, 1)
        want = (x - r(mu)) / np.sqrt(r(var) + 1e-3) * r(s) + r(b)
        agrees(f"BatchNormalization opset {opset}", save(m, f"bn{opset}"), x, want)
    m, _ = bn_model(15, training_mode=1)
    refused("BatchNormalization training_mode 1", save(m, "bn_train", False), "training_mode",
            x=x)


def test_clip_and_shapes():
    x = rng.standard_normal((3, 4)).astype(np.float32)
    m = model("c", [helper.make_node("Clip", ["x"], ["y"], min=-0.5, max=0.5)], [io("x", ["N", 4])],
              [io("y", ["N", 4])], opset=9)
    agrees("Clip opset 9 (attributes)", save(m, "clip9"), x, np.clip(x, -0.5, 0.5))
    inits = [numpy_helper.from_array(np.array(-0.25, np.float32), "lo"),
             numpy_helper.from_array(np.array(0.75, np.float32), "hi")]
    m = model("c", [helper.make_node("Clip", ["x", "lo", "hi"], ["y"])], [io("x", ["N", 4])],
              [io("y", ["N", 4])], inits, opset=13)
    agrees("Clip opset 13 (inputs)", save(m, "clip13"), x, np.clip(x, -0.25, 0.75))
    # x (N, 4) -> Unsqueeze -> (N, 1, 4) -> Squeeze -> (N, 4): axes as attribute and as input.
    m = model("u", [helper.make_node("Unsqueeze", ["x"], ["u"], axes=[1]),
                    helper.make_node("Squeeze", ["u"], ["y"], axes=[1])],
              [io("x", ["N", 4])], [io("y", ["N", 4])], opset=11)
    agrees("Unsqueeze/Squeeze opset 11 (axes attribute)", save(m, "unsq11"), x, x)
    ax = numpy_helper.from_array(np.array([1], np.int64), "axes")
    m = model("u", [helper.make_node("Unsqueeze", ["x", "axes"], ["u"]),
                    helper.make_node("Squeeze", ["u", "axes"], ["y"])],
              [io("x", ["N", 4])], [io("y", ["N", 4])], [ax], opset=13)
    agrees("Unsqueeze/Squeeze opset 13 (axes input)", save(m, "unsq13"), x, x)
    # The flatten PyTorch exports: Shape -> Gather(0) -> Unsqueeze -> Concat with -1 -> Reshape,
    # then Transpose of the per-sample axes and a Gemm with transB.
    x3 = rng.standard_normal((3, 2, 3)).astype(np.float32)
    w = rng.standard_normal((5, 6)).astype(np.float32)
    inits = [numpy_helper.from_array(np.array(0, np.int64), "zero"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus1"),
             numpy_helper.from_array(np.array([0], np.int64), "ax0"),
             numpy_helper.from_array(w, "w")]
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 1]),
             helper.make_node("Shape", ["t"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             helper.make_node("Unsqueeze", ["n", "ax0"], ["n1"]),
             helper.make_node("Concat", ["n1", "minus1"], ["target"], axis=0),
             helper.make_node("Reshape", ["t", "target"], ["flat"]),
             helper.make_node("Gemm", ["flat", "w"], ["y"], transB=1, alpha=0.5)]
    m = model("f", nodes, [io("x", ["N", 2, 3])], [io("y", ["N", 5])], inits, opset=13)
    want = 0.5 * x3.transpose(0, 2, 1).reshape(3, 6) @ w.T
    agrees("Shape/Gather/Unsqueeze/Concat folded into Reshape, Transpose, Gemm", save(m, "flat"),
           x3, want)
    # Broadcasting: (N, 3, 4) + (4) - (3, 1) * (1, 4) / scalar.
    xb = rng.standard_normal((2, 3, 4)).astype(np.float32)
    b1 = rng.standard_normal(4).astype(np.float32)
    b2 = rng.standard_normal((3, 1)).astype(np.float32)
    inits = [numpy_helper.from_array(b1, "b1"), numpy_helper.from_array(b2, "b2"),
             numpy_helper.from_array(np.array(2.0, np.float32), "two")]
    nodes = [helper.make_node("Add", ["x", "b1"], ["a"]), helper.make_node("Sub", ["a", "b2"], ["s"]),
             helper.make_node("Mul", ["s", "x"], ["p"]), helper.make_node("Div", ["p", "two"], ["y"])]
    m = model("b", nodes, [io("x", ["N", 3, 4])], [io("y", ["N", 3, 4])], inits)
    agrees("Add, Sub, Mul, Div with broadcasting", save(m, "bcast"), xb, (xb + b1 - b2) * xb / 2)


def test_initializers():
    x = rng.standard_normal((3, 4)).astype(np.float32)
    w = rng.standard_normal((4, 2)).astype(np.float32)
    typed = helper.make_tensor("w", TensorProto.FLOAT, [4, 2], w.flatten().tolist())
    m = model("t", [helper.make_node("MatMul", ["x", "w"], ["y"])], [io("x", ["N", 4])],
              [io("y", ["N", 2])], [typed])
    agrees("initializer in float_data", save(m, "typed"), x, x @ w)
    m = model("t", [helper.make_node("MatMul", ["x", "w"], ["y"])], [io("x", ["N", 4])],
              [io("y", ["N", 2])], [numpy_helper.from_array(w, "w")])
    agrees("initializer in raw_data", save(m, "raw"), x, x @ w)
    ext = os.path.join(WORK, "ext")
    os.makedirs(ext, exist_ok=True)
    onnx.save(m, os.path.join(ext, "model.onnx"), save_as_external_data=True,
              all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    agrees("initializer in an external data file", os.path.join(ext, "model.onnx"), x, x @ w)
    for label, loc in (("a path with ..", "../outside.bin"), ("an absolute path", "/etc/passwd")):
        bad = onnx.load(os.path.join(ext, "model.onnx"), load_external_data=False)
        for e in bad.graph.initializer[0].external_data:
            if e.key == "location":
                e.value = loc
        refused(f"external data at {label}", save(bad, "ext_bad", False), "leaves the model's folder",
                x=x)
    os.makedirs(os.path.join(WORK, "lnk"), exist_ok=True)
    link = os.path.join(WORK, "lnk", "weights.bin")
    if not os.path.lexists(link):
        os.symlink(os.path.join(ext, "weights.bin"), link)
    bad = onnx.load(os.path.join(ext, "model.onnx"), load_external_data=False)
    onnx.save(bad, os.path.join(WORK, "lnk", "model.onnx"))
    refused("external data through a symlink out of the folder",
            os.path.join(WORK, "lnk", "model.onnx"), "outside the model's folder", x=x)
    short = numpy_helper.from_array(w, "w")
    short.raw_data = short.raw_data[:-4]
    m = model("t", [helper.make_node("MatMul", ["x", "w"], ["y"])], [io("x", ["N", 4])],
              [io("y", ["N", 2])], [short])
    refused("raw_data shorter than the shape", save(m, "short", False), "raw_data", "needs 32",
            x=x)


def test_answers_refused():
    m = model("r", [helper.make_node("Relu", ["x"], ["y"])], [io("x", ["N", 2])],
              [io("y", ["N", 2])])
    path = save(m, "answers")
    with open(path + ".csv", "w") as f:
        f.write("a,b,label\n1,2,0\n3,4,1\n")
    r = subprocess.run([KILN, "predict", path, "--input", path + ".csv"], capture_output=True,
                       text=True)
    check(r.returncode == 1 and "scoring an ONNX model against answers is not supported yet" in
          r.stderr, "kiln predict refuses answers for an ONNX model", r.stderr.strip())


def test_export_refused():
    r = subprocess.run([KILN, "export", "runs/any", "-o", os.path.join(WORK, "m.onnx")],
                       capture_output=True, text=True)
    check(r.returncode == 2 and "exporting to ONNX is not supported yet" in r.stderr,
          "kiln export -o m.onnx says ONNX export is not supported yet", r.stderr.strip())


def test_refusals():
    good = model("r", [helper.make_node("Relu", ["x"], ["y"])], [io("x", ["N", 4])],
                 [io("y", ["N", 4])])
    data = good.SerializeToString()
    path = os.path.join(WORK, "trunc.onnx")
    with open(path, "wb") as f:
        f.write(data[: len(data) - 7])
    refused("a truncated protobuf", path, "malformed or truncated")
    with open(path, "wb") as f:
        f.write(b"\x0a\xff\xff\xff\xff\x0f garbage")
    refused("a malformed protobuf", path, "malformed or truncated")
    m = model("r", [helper.make_node("Exp", ["x"], ["e"], name="exp_1"),
                    helper.make_node("Relu", ["e"], ["r"]),
                    helper.make_node("Sin", ["r"], ["y"], name="sin_2")],
              [io("x", ["N", 4])], [io("y", ["N", 4])])
    refused("unsupported operators, every one named", save(m, "unsup"), "2 nodes kiln cannot run",
            "Exp (opset 13, node 'exp_1')", "Sin (opset 13, node 'sin_2')", "Gemm")
    for opset in (8, 18):
        m = model("r", [helper.make_node("Relu", ["x"], ["y"])], [io("x", ["N", 4])],
                  [io("y", ["N", 4])], opset=opset)
        refused(f"opset {opset}", save(m, f"opset{opset}", False), f"opset {opset}", "9 to 17")
    m = model("r", [helper.make_node("Add", ["x", "z"], ["y"], name="a"),
                    helper.make_node("Relu", ["y"], ["z"], name="b")],
              [io("x", ["N", 4])], [io("y", ["N", 4])])
    refused("a cycle", save(m, "cycle", False), "cycle")
    m = model("r", [helper.make_node("Add", ["x", "nope"], ["y"], name="a")], [io("x", ["N", 4])],
              [io("y", ["N", 4])])
    refused("a dangling input", save(m, "dangle", False), "reads 'nope'", "no node")
    m = model("p", [helper.make_node("Pad", ["x", "pads"], ["y"], mode="reflect", name="mirror")],
              [io("x", ["N", 2, 5, 5])], [io("y", ["N", 2, 7, 7])],
              [numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads")])
    refused("Pad in reflect mode", save(m, "reflect"), "node 'mirror' (Pad, opset 13)",
            "other modes", x=np.zeros((1, 50), np.float32))
    m = model("a", [helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3],
                                     pads=[1, 1, 1, 1], name="avg")],
              [io("x", ["N", 2, 5, 5])], [io("y", ["N", 2, 5, 5])])
    refused("AveragePool padding with count_include_pad 0", save(m, "avgpad"),
            "count_include_pad 0", x=np.zeros((1, 50), np.float32))


def conv_ref(x, w, group, dil, stride, pads):
    """numpy's direct convolution: x (N, C, H, W), w (M, C/group, kH, kW), pads [top, left,
    bottom, right]."""
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    t, l, b, r = pads
    xp = np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)))
    eh, ew = (kh - 1) * dil + 1, (kw - 1) * dil + 1
    oh, ow = (xp.shape[2] - eh) // stride + 1, (xp.shape[3] - ew) // stride + 1
    y = np.zeros((n, m, oh, ow), np.float64)
    for o in range(m):
        g = o // (m // group)
        for i in range(oh):
            for j in range(ow):
                patch = xp[:, g * cg:(g + 1) * cg, i * stride:i * stride + eh:dil,
                           j * stride:j * stride + ew:dil]
                y[:, o, i, j] = np.sum(patch * w[o], axis=(1, 2, 3))
    return y


def test_conv():
    x = rng.standard_normal((2, 4, 7, 7)).astype(np.float32)
    for group, dil, stride, pads in ((2, 1, 1, [1] * 4), (4, 1, 2, [1] * 4), (1, 2, 1, [2] * 4),
                                     (2, 2, 1, [0] * 4), (1, 1, 2, [0, 1, 1, 0])):
        w = rng.standard_normal((6 if group != 4 else 8, 4 // group, 3, 3)).astype(np.float32)
        b = rng.standard_normal(w.shape[0]).astype(np.float32)
        want = conv_ref(x, w, group, dil, stride, pads) + b.reshape(1, -1, 1, 1)
        node = helper.make_node("Conv", ["x", "w", "b"], ["y"], group=group, dilations=[dil, dil],
                                strides=[stride, stride], pads=pads, kernel_shape=[3, 3])
        m = model("c", [node], [io("x", ["N", 4, 7, 7])], [io("y", ["N"] + list(want.shape[1:]))],
                  [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
        agrees(f"Conv group {group}, dilation {dil}, stride {stride}, pads {pads}",
               save(m, f"conv_g{group}_d{dil}_p{pads[1]}"), x, want, tol=1e-4)
    # SAME_UPPER with stride 2 on 7 pixels pads 0 before and 1 after (uneven), as TensorFlow does.
    w = rng.standard_normal((3, 4, 2, 2)).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w"], ["y"], strides=[2, 2], auto_pad="SAME_UPPER")
    want = conv_ref(x, w, 1, 1, 2, [0, 0, 1, 1])
    m = model("c", [node], [io("x", ["N", 4, 7, 7])], [io("y", ["N", 3, 4, 4])],
              [numpy_helper.from_array(w, "w")])
    agrees("Conv auto_pad SAME_UPPER, stride 2 (uneven padding)", save(m, "conv_same"), x, want,
           tol=1e-4)


def pool_ref(x, k, stride, pads, op, fill):
    t, l, b, r = pads
    xp = np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)), constant_values=fill)
    oh, ow = (xp.shape[2] - k) // stride + 1, (xp.shape[3] - k) // stride + 1
    y = np.zeros(x.shape[:2] + (oh, ow), np.float32)
    for i in range(oh):
        for j in range(ow):
            y[:, :, i, j] = op(xp[:, :, i * stride:i * stride + k, j * stride:j * stride + k],
                               axis=(2, 3))
    return y


def test_pool_and_pad():
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    for pads in ([0, 1, 1, 0], [2, 2, 2, 2]):
        want = pool_ref(x, 3, 2, pads, np.max, -np.inf)
        node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2],
                                pads=pads)
        m = model("p", [node], [io("x", ["N", 3, 6, 6])], [io("y", ["N"] + list(want.shape[1:]))])
        agrees(f"MaxPool pads {pads}", save(m, f"maxpool_{pads[1]}{pads[2]}"), x, want)
        want = pool_ref(x, 3, 2, pads, np.mean, 0)
        node = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2],
                                pads=pads, count_include_pad=1)
        m = model("p", [node], [io("x", ["N", 3, 6, 6])], [io("y", ["N"] + list(want.shape[1:]))])
        agrees(f"AveragePool pads {pads}, count_include_pad 1",
               save(m, f"avgpool_{pads[1]}{pads[2]}"), x, want)
    want = np.pad(x, ((0, 0), (0, 0), (1, 0), (2, 1)), constant_values=0.5)
    for opset in (9, 13):
        if opset == 9:
            node = helper.make_node("Pad", ["x"], ["y"], pads=[0, 0, 1, 2, 0, 0, 0, 1], value=0.5)
            inits = []
        else:
            node = helper.make_node("Pad", ["x", "pads", "v"], ["y"])
            inits = [numpy_helper.from_array(np.array([0, 0, 1, 2, 0, 0, 0, 1], np.int64), "pads"),
                     numpy_helper.from_array(np.array(0.5, np.float32), "v")]
        m = model("p", [node], [io("x", ["N", 3, 6, 6])], [io("y", ["N", 3, 7, 9])], inits,
                  opset=opset)
        agrees(f"Pad constant 0.5, opset {opset}", save(m, f"pad{opset}"), x, want)


def main():
    os.makedirs(WORK, exist_ok=True)
    for t in (test_softmax, test_batchnorm, test_clip_and_shapes, test_conv, test_pool_and_pad,
              test_initializers,
              test_answers_refused, test_export_refused, test_refusals):
        t()
    print(f"import_cases: {failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
