#!/usr/bin/python3
"""Checks kiln's HDF5 data sets against h5py, the peer reader and writer.

usage: check_h5py.py PATH_TO_KILN

1. A CSV written here is converted with `kiln data convert`; h5py must find the documented
   kiln-dataset layout (docs/data.md) and the same values.
2. Files written by h5py in other types (float64 x, int64 y, uint8 images) must be read by
   `kiln data info`, and broken ones (lengths that differ, NaN, a missing dataset) refused with
   exit status 1 and a message naming the file.
"""
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np

kiln = sys.argv[1]
failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
        print("FAIL:", what)


def run(*args):
    p = subprocess.run([kiln, "data", *args], capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr


with tempfile.TemporaryDirectory(prefix="kiln-h5py-") as tmp:
    csv = os.path.join(tmp, "small.csv")
    rows = [(0.5, -1.25, 2), (3.0, 4.5, 0), (1e-3, 7.0, 1), (2.0, 2.0, 2)]
    with open(csv, "w") as f:
        f.write("f1,f2,label\n")
        for r in rows:
            f.write("%r,%r,%d\n" % r)
    out = os.path.join(tmp, "small.h5")
    rc, text = run("convert", csv, "-o", out)
    check(rc == 0, "convert exits 0: " + text)
    with h5py.File(out, "r") as h:
        fmt = h.attrs["format"]
        fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
        check(fmt == "kiln-dataset", "format attribute is kiln-dataset, got %r" % fmt)
        check(int(h.attrs["format_version"]) == 1, "format_version is 1")
        check(int(h.attrs["classes"]) == 3, "classes is 3")
        x, y = h["x"], h["y"]
        check(x.dtype == np.float32 and x.shape == (4, 2), "x is f32 (4, 2): %s %s" % (x.dtype, x.shape))
        check(y.dtype == np.int32 and y.shape == (4,), "y is i32 (4,): %s %s" % (y.dtype, y.shape))
        want = np.array([r[:2] for r in rows], dtype=np.float32)
        check(np.array_equal(x[()], want), "x values")
        check(list(y[()]) == [2, 0, 1, 2], "y values")
    check(not [n for n in os.listdir(tmp) if ".tmp." in n], "no temporary file left behind")

    # Regression: y f32 (N, 1).
    rc, text = run("convert", csv, "-o", os.path.join(tmp, "reg.h5"), "--task", "regression",
                   "--label-column", "f2")
    check(rc == 0, "regression convert exits 0: " + text)
    with h5py.File(os.path.join(tmp, "reg.h5"), "r") as h:
        check(h["y"].dtype == np.float32 and h["y"].shape == (4, 1), "regression y is f32 (4, 1)")
        check(np.allclose(h["y"][:, 0], [-1.25, 4.5, 7.0, 2.0]), "regression y values")

    peer = os.path.join(tmp, "peer.h5")
    with h5py.File(peer, "w") as h:
        h["images"] = np.arange(5 * 2 * 3 * 3, dtype=np.uint8).reshape(5, 2, 3, 3)
        h["x"] = np.linspace(-1, 1, 10, dtype=np.float64).reshape(5, 2)
        h["y"] = np.array([0, 1, 1, 0, 3], dtype=np.int64)
        h["short"] = np.array([0, 1], dtype=np.int16)
        h["yf"] = np.array([0.5, 1, 1, 0, 3], dtype=np.float64)
        h["bad"] = np.array([[0, 1], [np.nan, 2], [0, 0], [1, 1], [2, 2]], dtype=np.float32)
    rc, text = run("info", peer)
    check(rc == 0 and "5 samples" in text and "classes: 4" in text, "peer float64/int64: " + text)
    rc, text = run("info", peer, "--x", "images")
    check(rc == 0 and "[5, 2, 3, 3]" in text and "max 89 " in text, "peer uint8 images: " + text)
    rc, text = run("info", peer, "--y", "short")
    check(rc == 1 and "peer.h5" in text and "5 samples" in text, "length mismatch refused: " + text)
    rc, text = run("info", peer, "--x", "bad")
    check(rc == 1 and "NaN" in text and "sample 1 " in text, "NaN refused: " + text)
    rc, text = run("info", peer, "--y", "labels")
    check(rc == 1 and "'labels'" in text, "missing dataset named: " + text)
    rc, text = run("info", peer, "--y", "yf")
    check(rc == 1 and "integer labels" in text, "float labels refused for classification: " + text)
    rc, text = run("info", peer, "--y", "yf", "--task", "regression")
    check(rc == 0, "float y read for regression: " + text)

print("check_h5py: %d failed" % len(failures))
sys.exit(1 if failures else 0)
