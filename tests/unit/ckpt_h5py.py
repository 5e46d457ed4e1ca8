#!/usr/bin/python3
"""Reads kiln's checkpoints with h5py, the peer reader (layout: include/kiln/ckpt.h).

usage: ckpt_h5py.py check CKPT EXPECT_DIR
           CKPT against what tests/unit/test_ckpt.c says it wrote into EXPECT_DIR: expect.txt
           (format_version, kiln_version, step, optimizer_state lines, then `param|buffer NAME
           OFFSET DIMS...`) and params.f32, buffers.f32, optimizer.f32 (raw little-endian
           float32). Checks the root attributes (format "kiln-checkpoint", format_version,
           kiln_version, created), every parameter's and buffer's shape and bits, /state's step
           and the optimizer state's length and bits.
       ckpt_h5py.py compare A B [RTOL]
           the parameters and buffers of two checkpoints: the same names and shapes, and
           bit-identical values; with RTOL, parameters within max |a - b| <= RTOL * max |b|
           over all of them together (so that near-zero weights do not dominate).
Exits 0 when everything holds, 1 otherwise, 77 when h5py is not installed.
"""
import datetime
import os
import re
import sys

try:
    import h5py
    import numpy as np
except ImportError:
    print("ckpt_h5py.py: h5py (python3-h5py) is not installed, skipped")
    sys.exit(77)

failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
        print("FAIL:", what)
    return ok


def as_str(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def read_expect(folder):
    facts, tensors = {}, []
    with open(os.path.join(folder, "expect.txt")) as f:
        for line in f:
            w = line.split()
            if w[0] in ("param", "buffer"):
                tensors.append((w[0], w[1], int(w[2]), tuple(int(d) for d in w[3:])))
            else:
                facts[w[0]] = w[1]
    return facts, tensors


def raw(folder, name):
    return np.fromfile(os.path.join(folder, name), dtype="<f4")


def check_one(path, folder):
    facts, tensors = read_expect(folder)
    flat = {"param": raw(folder, "params.f32"), "buffer": raw(folder, "buffers.f32")}
    with h5py.File(path, "r") as f:
        a = f.attrs
        check(as_str(a.get("format")) == "kiln-checkpoint", "root format is kiln-checkpoint")
        check(int(a.get("format_version", -1)) == int(facts["format_version"]),
              "format_version is %s" % facts["format_version"])
        check(as_str(a.get("kiln_version")) == facts["kiln_version"],
              "kiln_version is %s" % facts["kiln_version"])
        created = as_str(a.get("created"))
        if check(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", created) is not None,
                 "created is an ISO 8601 UTC time, got %r" % created):
            t = datetime.datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ")
            age = datetime.datetime.utcnow() - t
            check(abs(age.total_seconds()) < 3600, "created is now, got %s" % created)
        names = {"param": set(), "buffer": set()}
        for kind, name, offset, shape in tensors:
            group = "params" if kind == "param" else "buffers"
            names[kind].add(name)
            d = f[group].get(name)
            if not check(isinstance(d, h5py.Dataset), "/%s/%s exists" % (group, name)):
                continue
            check(d.shape == shape, "/%s/%s has shape %s, kiln wrote %s" %
                  (group, name, d.shape, shape))
            check(d.dtype == np.float32, "/%s/%s is float32, not %s" % (group, name, d.dtype))
            n = int(np.prod(shape)) if shape else 1
            want = flat[kind][offset:offset + n].reshape(shape)
            got = np.asarray(d[()], dtype="<f4")
            check(got.shape == want.shape and got.tobytes() == want.tobytes(),
                  "/%s/%s holds the values kiln wrote, bit for bit" % (group, name))
        check(set(f["params"].keys()) == names["param"], "/params holds the model's parameters")
        check(set(f["buffers"].keys()) == names["buffer"], "/buffers holds the model's buffers")
        check(int(f["state"].attrs["step"]) == int(facts["step"]),
              "/state step is %s" % facts["step"])
        state = f["optimizer"]["state"]
        check(state.shape == (int(facts["optimizer_state"]),),
              "/optimizer/state has %s values, got %s" % (facts["optimizer_state"], state.shape))
        check(np.asarray(state[()], dtype="<f4").tobytes() == raw(folder, "optimizer.f32").tobytes(),
              "/optimizer/state holds the values kiln wrote")
        order = [t[1] for t in sorted((t for t in tensors if t[0] == "param"), key=lambda t: t[2])]
        got = [as_str(s) for s in f["optimizer"]["params"][()]] if "params" in f["optimizer"] else None
        check(got == order, "/optimizer/params names the parameters in the state's order %s, got %s"
              % (order, got))
        check(isinstance(f["config"][()], (bytes, str)), "/config is a string")


def tensors_of(f):
    out = {}
    for group in ("params", "buffers"):
        for name, d in f[group].items():
            out["%s/%s" % (group, name)] = np.asarray(d[()], dtype="<f4")
    return out


def compare(pa, pb, rtol):
    with h5py.File(pa, "r") as fa, h5py.File(pb, "r") as fb:
        for f, p in ((fa, pa), (fb, pb)):
            check(as_str(f.attrs.get("format")) == "kiln-checkpoint", "%s is a checkpoint" % p)
        a, b = tensors_of(fa), tensors_of(fb)
    if not check(a.keys() == b.keys() and len(a) > 0, "the same tensors in both"):
        return
    diff = scale = 0.0
    for k in sorted(a):
        if not check(a[k].shape == b[k].shape, "%s: shapes %s and %s" % (k, a[k].shape, b[k].shape)):
            continue
        if rtol is None:
            check(a[k].tobytes() == b[k].tobytes(), "%s is bit-identical" % k)
        elif k.startswith("params/"):
            diff = max(diff, float(np.max(np.abs(a[k].astype(np.float64) - b[k]))))
            scale = max(scale, float(np.max(np.abs(b[k]))))
    if rtol is not None:
        rel = diff / (scale if scale > 0 else 1.0)
        print("ckpt_h5py.py: relative difference of the parameters %.3g (tolerance %.3g)" %
              (rel, rtol))
        check(rel <= rtol, "parameters within %g relative" % rtol)


def main(argv):
    if len(argv) >= 4 and argv[1] == "check":
        check_one(argv[2], argv[3])
    elif len(argv) in (4, 5) and argv[1] == "compare":
        compare(argv[2], argv[3], float(argv[4]) if len(argv) == 5 else None)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    if failures:
        print("ckpt_h5py.py: %d failed" % len(failures))
        return 1
    print("ckpt_h5py.py: all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
