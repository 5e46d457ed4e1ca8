"""A kiln model file written from docs/formats.md ("Model file") alone, as a tool outside kiln
would write one: random weights for a small CNN, a /config holding only the model section (no
data: the writer never saw kiln's training data), per-feature standardisation, and inputs to
score.

    formats_writer.py MODEL.h5 INPUT.h5 SEED
"""
import sys

import h5py
import numpy as np

CONFIG = """model:
  layers:
    - conv2d: {filters: 4, kernel: 3, padding: 1, activation: relu}
    - batchnorm: {eps: 0.001}
    - max_pool: {kernel: 2}
    - type: dense
      units: 16
      activation: tanh
"""
C, H, W, CLASSES = 2, 6, 6, 3


def main(model, inputs, seed):
    rng = np.random.default_rng(seed)

    def f32(*shape, scale=0.5):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    with h5py.File(model, "w") as f:
        f.attrs["format"] = "kiln-model"
        f.attrs["format_version"] = np.int64(1)
        f.attrs["kiln_version"] = "formats_writer.py"
        f.attrs["created"] = "2026-12-07T00:00:00Z"
        f.create_dataset("config", data=CONFIG, dtype=h5py.string_dtype())
        m = f.create_group("model")
        m.attrs["outputs"] = np.int64(CLASSES)
        m.attrs["task"] = "classification"
        m.attrs["label_smoothing"] = 0.0
        m.attrs["seed"] = np.int64(seed)
        m.create_dataset("input_shape", data=np.array([C, H, W], np.int32))
        p = f.create_group("params")
        p["layers.0.weight"] = f32(4, C, 3, 3)  # (out, in, kh, kw)
        p["layers.0.bias"] = f32(4)
        p["layers.1.weight"] = 1 + f32(4, scale=0.1)
        p["layers.1.bias"] = f32(4, scale=0.1)
        p["layers.3.weight"] = f32(16, 4 * 3 * 3)  # flattened (C, H, W) after the pool
        p["layers.3.bias"] = f32(16)
        p["head.weight"] = f32(CLASSES, 16)
        p["head.bias"] = f32(CLASSES)
        b = f.create_group("buffers")
        b["layers.1.running_mean"] = f32(4, scale=0.2)
        b["layers.1.running_var"] = (0.5 + rng.random(4)).astype(np.float32)
        pre = f.create_group("preprocessing")
        pre.attrs["nstats"] = np.int64(C * H * W)
        pre.attrs["standardize"] = "feature"
        pre.attrs["formula"] = "x' = (x - mean) / std, in float32, before the model"
        pre["mean"] = f32(C * H * W, scale=3)
        pre["std"] = (0.5 + 2 * rng.random(C * H * W)).astype(np.float32)
        s = f.create_group("signature")
        s.attrs["task"] = "classification"
        i = s.create_group("inputs/input")
        i.attrs["datatype"] = "FP32"
        i.attrs["shape"] = np.array([-1, C, H, W], np.int64)
        o = s.create_group("outputs/probabilities")
        o.attrs["datatype"] = "FP32"
        o.attrs["shape"] = np.array([-1, CLASSES], np.int64)
        f.create_dataset("labels", data=["cat", "dog, or wolf", "bird"],
                         dtype=h5py.string_dtype())
    with h5py.File(inputs, "w") as f:
        f["x"] = f32(64, C, H, W, scale=4)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
