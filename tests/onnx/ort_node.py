"""ONNX Runtime for node (onnxruntime-node from the npm registry) as a peer for tests/onnx/: installed
with --ignore-scripts into a work folder (its install script only downloads GPU binaries; the CPU
runtime is inside the package), then run on a model and a float32 batch by a small node script."""
import os
import shutil
import subprocess

import numpy as np

NODE_RUNNER = r"""
const ort = require('onnxruntime-node');
const fs = require('fs');
(async () => {
  const [model, xfile, dims, outfile] = process.argv.slice(2);
  const buf = fs.readFileSync(xfile);
  const x = new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4);
  const s = await ort.InferenceSession.create(model);
  const t = new ort.Tensor('float32', x, dims.split(',').map(Number));
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
    dims = ",".join(str(d) for d in x.shape)
    r = subprocess.run(["node", runner, model, xfile, dims, ofile], capture_output=True,
                       text=True, env=env, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(f"onnxruntime-node on {model}: {r.stderr.strip()}")
    return np.fromfile(ofile, dtype=np.float32).reshape(len(x), -1)
