"""A reader of kiln model files written from docs/formats.md ("Model file") and docs/config.md
(the layer kinds and their defaults) alone: it rebuilds the network in numpy (float64) from the
file's /config, /params, /buffers and /preprocessing, as a tool outside kiln would.

    formats_reader.py MODEL.h5 INPUT.h5 KILN.csv TOL
        scores INPUT.h5's dataset x with MODEL.h5 and compares with `kiln predict`'s CSV
        (probabilities for classification, predictions for regression): exit 1 when any value
        differs by more than TOL, printing the largest difference.

Needs numpy, h5py and a YAML parser (python3-yaml): /config is YAML text.
"""
import csv
import math
import sys

import h5py
import numpy as np
import yaml

# The kinds whose one field may be written as the layer's value (`- dropout: 0.2`).
ONE_FIELD = {"activation": "activation", "dropout": "rate"}
ERF = np.vectorize(math.erf)


def layer_spec(item):
    """A layer as {type, fields...}: `type:` form, one-key compact form, or a plain kind."""
    if isinstance(item, str):
        return {"type": item}
    if "type" in item:
        return dict(item)
    (kind, value), = item.items()
    if value is None:
        return {"type": kind}
    if isinstance(value, dict):
        return dict(value, type=kind)
    return {"type": kind, ONE_FIELD[kind]: value}


def num(l, key, default):
    """A numeric setting: kiln writes YAML 1.2 numbers (1e-05), which a YAML 1.1 parser such as
    PyYAML returns as strings."""
    return float(l.get(key, default))


def activate(x, name, alpha):
    if name in (None, "none"):
        return x
    if name == "relu":
        return np.maximum(x, 0)
    if name == "leaky_relu":
        return np.where(x > 0, x, alpha * x)
    if name == "gelu":
        return 0.5 * x * (1 + ERF(x / math.sqrt(2)))
    if name == "tanh":
        return np.tanh(x)
    if name == "sigmoid":
        return 1 / (1 + np.exp(-x))
    raise ValueError("unknown activation " + name)


def windows(x, k, stride, pad, fill):
    """(N, C, H, W) -> (N, C, OH, OW, k, k) windows of x padded by pad with fill (floor sizes)."""
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=fill)
    oh = (x.shape[2] - k) // stride + 1
    ow = (x.shape[3] - k) // stride + 1
    w = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))
    return w[:, :, : (oh - 1) * stride + 1 : stride, : (ow - 1) * stride + 1 : stride]


class Model:
    def __init__(self, path):
        f = h5py.File(path, "r")
        if f.attrs["format"] != "kiln-model" or not 1 <= f.attrs["format_version"] <= 1:
            raise ValueError(path + ": not a kiln model file of version 1")
        self.params = {k: f["params"][k][...].astype(np.float64) for k in f["params"]}
        self.buffers = {k: f["buffers"][k][...].astype(np.float64) for k in f["buffers"]}
        cfg = yaml.safe_load(f["config"][()].decode()) or {}
        self.layers = [layer_spec(l) for l in ((cfg.get("model") or {}).get("layers") or [])]
        self.task = f["model"].attrs["task"]
        self.task = self.task.decode() if isinstance(self.task, bytes) else self.task
        self.input_shape = tuple(int(d) for d in f["model/input_shape"][...])
        pre = f["preprocessing"]
        self.mean = self.std = None
        if pre.attrs["nstats"] > 0:
            self.mean = pre["mean"][...].astype(np.float32)
            self.std = pre["std"][...].astype(np.float32)
        self.used = set()

    def p(self, name):
        self.used.add(name)
        return self.params[name]

    def layer(self, x, l, name):
        t = l["type"]
        act, alpha = l.get("activation", "none"), num(l, "alpha", 0.01)
        if t == "dense":
            x = x.reshape(len(x), -1)
            x = x @ self.p(name + ".weight").T
            if l.get("bias", True):
                x = x + self.p(name + ".bias")
            return activate(x, act, alpha)
        if t == "conv2d":
            w = self.p(name + ".weight")  # (out, in, kh, kw)
            win = windows(x, l["kernel"], l.get("stride", 1), l.get("padding", 0), 0.0)
            x = np.einsum("ncijhw,ochw->noij", win, w)
            if l.get("bias", True):
                x = x + self.p(name + ".bias")[None, :, None, None]
            return activate(x, act, alpha)
        if t in ("max_pool", "avg_pool"):
            k = l["kernel"]
            stride, pad = l.get("stride", k), l.get("padding", 0)
            if t == "max_pool":
                return windows(x, k, stride, pad, -np.inf).max(axis=(4, 5))
            return windows(x, k, stride, pad, 0.0).sum(axis=(4, 5)) / (k * k)
        if t == "global_avg_pool":
            return x.mean(axis=(2, 3))
        if t == "batchnorm":
            shape = (1, -1) + (1,) * (x.ndim - 2)  # channels on axis 1
            m = self.buffers[name + ".running_mean"].reshape(shape)
            v = self.buffers[name + ".running_var"].reshape(shape)
            g = self.p(name + ".weight").reshape(shape)
            b = self.p(name + ".bias").reshape(shape)
            return (x - m) / np.sqrt(v + num(l, "eps", 1e-5)) * g + b
        if t == "layernorm":
            m = x.mean(axis=-1, keepdims=True)
            v = x.var(axis=-1, keepdims=True)
            xh = (x - m) / np.sqrt(v + num(l, "eps", 1e-5))
            return xh * self.p(name + ".weight") + self.p(name + ".bias")
        if t == "dropout":
            return x
        if t == "activation":
            return activate(x, act, alpha)
        if t == "flatten":
            return x.reshape(len(x), -1)
        if t == "residual":
            h = x
            for j, sub in enumerate(l["layers"]):
                h = self.layer(h, layer_spec(sub), "%s.%d" % (name, j))
            return activate(h + x, act, alpha)
        raise ValueError("layer kind %s is not in docs/formats.md" % t)

    def forward(self, x):
        """Raw inputs (N, input_shape...) -> probabilities or predictions (N, outputs)."""
        x = np.asarray(x, np.float32).reshape((len(x),) + self.input_shape)
        if self.mean is not None:  # x' = (x - mean) / std in float32, per feature or global
            flat = x.reshape(len(x), -1)
            x = ((flat - self.mean) / self.std).astype(np.float32).reshape(x.shape)
        x = x.astype(np.float64)
        for i, l in enumerate(self.layers):
            x = self.layer(x, l, "layers.%d" % i)
        x = self.layer(x, {"type": "dense"}, "head")
        unused = set(self.params) - self.used
        if unused:
            raise ValueError("parameters the doc's layers never used: %s" % sorted(unused))
        if self.task == "regression":
            return x
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


def kiln_csv(path, task):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    head, body = rows[0], rows[1:]
    cols = [i for i, h in enumerate(head) if h.startswith("p_" if task != "regression" else "pred")]
    return np.array([[float(r[i]) for i in cols] for r in body])


def main(model, inputs, kiln, tol):
    m = Model(model)
    x = h5py.File(inputs, "r")["x"][...]
    ours, theirs = m.forward(x), kiln_csv(kiln, m.task)
    if ours.shape != theirs.shape:
        print("FAIL %s: the reader gives %s, kiln %s" % (model, ours.shape, theirs.shape))
        return 1
    diff = np.abs(ours - theirs).max()
    kinds = sorted({l["type"] for l in m.layers})
    print("%s (%s): max |reader - kiln predict| = %.3g (tolerance %g)" % (model, ", ".join(kinds),
                                                                        diff, tol))
    return 0 if diff <= tol else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])))
