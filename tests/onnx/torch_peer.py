#!/usr/bin/env python3
"""kiln predict on ONNX models exported by PyTorch (torch.onnx.export), against PyTorch itself; with
--ort also ONNX Runtime (onnxruntime-node, installed from the npm registry with
--ignore-scripts into WORKDIR) on the same files, against PyTorch and against kiln.

Three networks: an MLP, a CNN with batch normalisation and a residual block, each exported at
opsets 11, 13 and 17 with a dynamic batch. The weights are PyTorch's seeded initialisation, and
batch normalisation's running statistics are drawn at random so that they matter. The inputs are
the first 1000 Fashion-MNIST test images scaled to [0, 1] when the dataset is installed
(dataset-fashion-mnist), random ones otherwise. kiln's outputs must be within 1e-4 of PyTorch's
and give the same classes (argmax); ONNX Runtime's likewise.

usage: torch_peer.py [--ort] KILN WORKDIR   (exit 0 pass, 1 fail, 77 without python3-torch or
h5py, or with --ort where npm cannot install onnxruntime-node: the registry is unreachable)"""
import csv
import gzip
import json
import os
import shutil
import subprocess
import sys

try:
    import h5py
    import numpy as np
    import torch
    import torch.nn as nn
except ImportError as e:
    print(f"SKIP: {e} (install python3-torch and python3-h5py)")
    sys.exit(77)

TOL = 1e-4
N = 1000
FASHION = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Dropout(0.2),
                                 nn.Linear(128, 64), nn.Tanh(), nn.Linear(64, 10))

    def forward(self, x):
        return self.net(x)


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.LeakyReLU(0.1),
            nn.AvgPool2d(2))
        self.head = nn.Linear(16 * 7 * 7, 10)

    def forward(self, x):
        x = self.features(x)
        return torch.log_softmax(self.head(x.view(x.size(0), -1)), dim=1)


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, stride=2, padding=1)
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        x = torch.relu(x + y)
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return torch.softmax(self.head(x), dim=1)


def randomise_bn(model, gen):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=gen) * 0.2)
            m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=gen) * 0.1)


def inputs():
    if os.path.exists(FASHION):
        with gzip.open(FASHION, "rb") as f:
            raw = f.read()
        x = np.frombuffer(raw, dtype=np.uint8, offset=16)[: N * 784].astype(np.float32) / 255
        return x.reshape(N, 1, 28, 28), "Fashion-MNIST test images"
    rng = np.random.default_rng(7)
    return rng.random((N, 1, 28, 28), dtype=np.float32), "random inputs (no Fashion-MNIST)"


def kiln_predict(kiln, model, h5, out):
    r = subprocess.run([kiln, "predict", model, "--input", h5, "-o", out, "--quiet"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"kiln predict {model}: exit {r.returncode}: {r.stderr.strip()}")
    with open(out) as f:
        rows = list(csv.reader(f))[1:]
    return np.array([[float(v) for v in row] for row in rows], dtype=np.float32)


NODE_RUNNER = r"""
const ort = require('onnxruntime-node');
const fs = require('fs');
(async () => {
  const [model, xfile, n, outfile] = process.argv.slice(2);
  const buf = fs.readFileSync(xfile);
  const x = new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4);
  const s = await ort.InferenceSession.create(model);
  const t = new ort.Tensor('float32', x, [Number(n), 1, 28, 28]);
  const r = await s.run({[s.inputNames[0]]: t});
  fs.writeFileSync(outfile, Buffer.from(r[s.outputNames[0]].data.buffer));
})().catch(e => { console.error(e.message); process.exit(1); });
"""


def setup_ort(work):
    """The folder holding node_modules/onnxruntime-node, or None with the reason."""
    folder = os.path.join(work, "ort")
    if os.path.isdir(os.path.join(folder, "node_modules", "onnxruntime-node")):
        return folder, None
    if not shutil.which("npm") or not shutil.which("node"):
        return None, "npm or node is not installed"
    os.makedirs(folder, exist_ok=True)
    r = subprocess.run(["npm", "install", "--ignore-scripts", "--no-audit", "--no-fund",
                        "--prefix", folder, "onnxruntime-node"],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        return None, "npm could not install onnxruntime-node (registry unreachable?): " + \
            r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "npm failed"
    return folder, None


def ort_run(folder, model, x, work):
    runner = os.path.join(folder, "run.js")
    with open(runner, "w") as f:
        f.write(NODE_RUNNER)
    xfile, ofile = os.path.join(work, "x.f32"), os.path.join(work, "ort.f32")
    x.astype(np.float32).tofile(xfile)
    env = dict(os.environ, NODE_PATH=os.path.join(folder, "node_modules"))
    r = subprocess.run(["node", runner, model, xfile, str(len(x)), ofile], capture_output=True,
                       text=True, env=env, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(f"onnxruntime-node on {model}: {r.stderr.strip()}")
    return np.fromfile(ofile, dtype=np.float32).reshape(len(x), -1)


def compare(name, got, want):
    diff = float(np.max(np.abs(got - want))) if got.shape == want.shape else float("inf")
    same = got.shape == want.shape and bool(np.all(got.argmax(1) == want.argmax(1)))
    ok = diff <= TOL and same
    print(f"  {name:<34} max |diff| {diff:.3g}, classes {'equal' if same else 'DIFFER'}"
          f"{'' if ok else '  FAIL'}")
    return ok


def main():
    args = sys.argv[1:]
    with_ort = args[:1] == ["--ort"]
    args = args[1:] if with_ort else args
    if len(args) != 2:
        print(__doc__)
        return 2
    kiln, work = args
    os.makedirs(work, exist_ok=True)
    ort_folder = None
    if with_ort:
        ort_folder, ort_why = setup_ort(work)
        if not ort_folder:
            print(f"SKIP: {ort_why}")
            return 77
    x, source = inputs()
    h5 = os.path.join(work, "inputs.h5")
    with h5py.File(h5, "w") as f:
        f["x"] = x
    print(f"{N} {source}" + ("; and onnxruntime-node" if with_ort else ""))
    ok = True
    for name, cls in (("mlp", MLP), ("cnn_bn", CNN), ("residual", Residual)):
        torch.manual_seed(0)
        model = cls()
        randomise_bn(model, torch.Generator().manual_seed(1))
        model.eval()
        with torch.no_grad():
            want = model(torch.from_numpy(x)).numpy()
        for opset in (11, 13, 17):
            path = os.path.join(work, f"{name}_opset{opset}.onnx")
            torch.onnx.export(model, torch.from_numpy(x[:2]), path, opset_version=opset,
                              input_names=["image"], output_names=["scores"],
                              dynamic_axes={"image": {0: "batch"}, "scores": {0: "batch"}})
            try:
                got = kiln_predict(kiln, path, h5, os.path.join(work, f"{name}_{opset}.csv"))
                ok &= compare(f"kiln {name} opset {opset}", got, want)
                if ort_folder:
                    ort_out = ort_run(ort_folder, path, x, work)
                    ok &= compare(f"onnxruntime {name} opset {opset}", ort_out, want)
                    ok &= compare(f"kiln vs onnxruntime {name} {opset}", got, ort_out)
            except RuntimeError as e:
                print(f"  {name} opset {opset}: {e}  FAIL")
                ok = False
    print("torch_peer: " + ("all within %g of PyTorch, same classes" % TOL if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
