"""Data and HTTP checks for tests/serve/test_patterns.sh (stdlib only, run with /usr/bin/python3).

The serving patterns a model's config.yaml declares (pre and post steps, a feature lookup,
pipelines and ensembles) are checked here against values computed independently: kiln predict
on the inputs the pattern should have made (the transformed samples, the table's rows, the
one-hot of a model's label), combined in Python (means, weighted means, votes, top-k, threshold).
Each subcommand prints "ok: ..." or "FAILED: ..." per check and exits 1 when any failed.

usage: patterns_client.py data DIR               training CSVs, a pool of samples, the
                                                 feature table
       patterns_client.py pick DIR               the requests' samples, from kiln predict on
                                                 the pool
       patterns_client.py pipe-input DIR         one_hot(argmax(a's predict)) for the pipeline
       patterns_client.py table2 DIR             a changed feature table (reload check)
       patterns_client.py values PORT DIR        every pattern's answers, metadata, statistics
       patterns_client.py errors PORT DIR        the 400s the patterns add
       patterns_client.py members PORT DIR STATE ensemble/pipeline answers (STATE: up) or 503s
                                                 (b-down, c-down)
       patterns_client.py h5table DIR KILN OUT   the feature table as HDF5 (exit 77: no libhdf5)
       patterns_client.py lookup PORT DIR ROWS [MODEL]  look's (MODEL's) answer for the table's
                                                 ids equals ROWS'
       patterns_client.py churn PORT DIR         unload/load b while clients use ens-mean
"""
import csv
import http.client
import json
import os
import random
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from client import Client, decode, read_predictions  # noqa: E402  (test_serve.sh's client)

failures = 0

NAMES3 = ['setosa', 'ver"si\\color', "virgínica ☃"]  # JSON escapes and UTF-8
NAMES2 = ["no", "sí"]
NS = 8  # samples a request carries (b's max_batch_size is 8)

# The feature table: ids that a double cannot hold (2^53 + 1 next to 2^53), the int64 extremes,
# and the key column in the middle of the features.
TABLE_IDS = [9007199254740993, 9007199254740992, 9223372036854775807, -9223372036854775808, 42, 7]
# A request: duplicates and an order unlike the table's.
LOOK_IDS = [9007199254740993, 42, 9007199254740993, 9007199254740992, -9223372036854775808,
            9223372036854775807, 7]


def check(what, cond, detail=""):
    global failures
    if cond:
        print("ok: " + what)
    else:
        failures += 1
        print("FAILED: " + what + (" (" + str(detail)[:600] + ")" if detail != "" else ""))
    sys.stdout.flush()
    return cond


def finish():
    sys.exit(1 if failures else 0)


# ---- data ----

def weights():
    rng = random.Random(5)
    return [[rng.uniform(-1, 1) for _ in range(4)] for _ in range(3)]


def true_class(x):
    s = [sum(a * b for a, b in zip(wk, x)) for wk in weights()]
    return s.index(max(s))


def scale_clip(x):
    """a's pre steps: scale {factor: 2, offset: -1}, then clip {min: -1, max: 1}."""
    return [min(1.0, max(-1.0, 2 * v - 1)) for v in x]


def pool():
    """Candidate raw samples: 4 values k/16 (exact in FP32, JSON and CSV) in [-2.5, 2.5], so
    that a's pre steps clip nearly every one; some sit exactly on the clip's bounds once
    scaled (1.0 -> 1, 0.0 -> -1)."""
    rng = random.Random(17)
    xs = [[rng.randint(-40, 40) / 16 for _ in range(4)] for _ in range(400)]
    for i in range(0, 400, 7):
        xs[i][i % 4] = 1.0 if i % 2 else 0.0
    return xs


def cmd_pick(d):
    """Picks the NS samples the requests carry from the pool, with kiln predict's answers on
    it: a and b disagree on some (so votes tie and means differ from either member), a's
    answers after its pre steps fall on both sides of the threshold, and no value sits within
    1e-4 of a decision (so the expected answers do not hinge on rounding). Writes
    samples.json and the samples' CSVs."""
    xs = pool()
    pa, la, _ = read_predictions(os.path.join(d, "pool_pa.csv"))
    pb, lb, _ = read_predictions(os.path.join(d, "pool_pb.csv"))
    pp, _, _ = read_predictions(os.path.join(d, "pool_pre.csv"))

    def clear(r):
        s = sorted(r)
        return s[-1] - s[-2] > 1e-4

    ok = [i for i in range(len(xs)) if clear(pa[i]) and clear(pb[i]) and clear(pp[i]) and
          abs(pp[i][0] - 0.5) > 1e-4 and
          (la[i] == lb[i] or abs((pa[i][la[i]] + pb[i][la[i]]) -
                                 (pa[i][lb[i]] + pb[i][lb[i]])) > 1e-4)]
    differ = [i for i in ok if la[i] != lb[i]]
    high = [i for i in ok if pp[i][0] >= 0.5 and i not in differ]
    low = [i for i in ok if pp[i][0] < 0.5 and i not in differ]
    bounds = [i for i in ok if i % 7 == 0 and i not in differ + high[:1] + low[:1]]
    picked = differ[:3] + high[:2] + low[:2]
    # a's class 2 (raw) next to other classes: pipe-shift's one_hot refuses the one, not the rest.
    if 2 not in [la[i] for i in picked]:
        picked += [i for i in ok if la[i] == 2 and i not in picked][:1]
    picked += [i for i in bounds if i not in picked][:NS - len(picked)]
    picked += [i for i in ok if i not in picked][:NS - len(picked)]
    picked = picked[:NS]
    if len(differ) < 2 or not high or not low or len(picked) < NS or \
            not 0 < [la[i] for i in picked].count(2) < NS:
        sys.exit("pick: the pool lacks the samples the test needs (%d disagreements, %d above "
                 "the threshold, %d below)" % (len(differ), len(high), len(low)))
    with open(os.path.join(d, "samples.json"), "w") as f:
        json.dump([xs[i] for i in picked], f)
    write_samples(d)


def samples(d="."):
    return json.load(open(os.path.join(d, "samples.json")))


def write_csv(path, header, rows, label=None):
    with open(path, "w") as f:
        f.write(",".join(header + (["label"] if label else [])) + "\n")
        for i, r in enumerate(rows):
            f.write(",".join("%.9g" % v for v in r) + (",%d" % label[i] if label else "") + "\n")


def table_rows(seed):
    rng = random.Random(seed)
    return [[rng.randint(-40, 40) / 16 for _ in range(4)] for _ in TABLE_IDS]


def write_table(path, rows):
    """features.csv: header f0,f1,id,f2,f3 (the key column between features)."""
    with open(path, "w") as f:
        f.write("f0,f1,id,f2,f3\n")
        for i, r in zip(TABLE_IDS, rows):
            f.write("%.9g,%.9g,%d,%.9g,%.9g\n" % (r[0], r[1], i, r[2], r[3]))


def cmd_data(d):
    F4 = ["f0", "f1", "f2", "f3"]
    for name, n, seed in (("train4.csv", 300, 1), ("test4.csv", 60, 2)):
        rng = random.Random(seed)
        xs = [[rng.randint(-32, 32) / 16 for _ in range(4)] for _ in range(n)]
        write_csv(os.path.join(d, name), F4, xs, [true_class(x) for x in xs])
    # c: one-hot rows of 3 categories to 2 classes (the third category is class 1, with noise).
    for name, n, seed in (("train3.csv", 300, 9), ("test3.csv", 60, 10)):
        rng = random.Random(seed)
        ks = [rng.randrange(3) for _ in range(n)]
        ys = [(1 if k == 2 else 0) ^ (rng.random() < 0.1) for k in ks]
        write_csv(os.path.join(d, name), ["o0", "o1", "o2"],
                  [[float(i == k) for i in range(3)] for k in ks], ys)
    with open(os.path.join(d, "names3.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(NAMES3) + "\n")
    with open(os.path.join(d, "names2.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(NAMES2) + "\n")
    xs = pool()
    write_csv(os.path.join(d, "pool.csv"), F4, xs)
    write_csv(os.path.join(d, "pool_pre_x.csv"), F4, [scale_clip(x) for x in xs])
    # c's inputs: the three one-hot rows, and c-mid's [v, one_hot(k, 2)] rows.
    write_csv(os.path.join(d, "onehot3.csv"), ["o0", "o1", "o2"],
              [[float(i == k) for i in range(3)] for k in range(3)])
    write_csv(os.path.join(d, "c_mid.csv"), ["o0", "o1", "o2"], [r for _, _, r in c_mid_rows()])
    rows = table_rows(31)
    write_table(os.path.join(d, "features.csv"), rows)
    by_id = dict(zip(TABLE_IDS, rows))
    write_csv(os.path.join(d, "look_rows.csv"), F4, [by_id[i] for i in LOOK_IDS])
    write_csv(os.path.join(d, "look_rows_pre.csv"), F4, [scale_clip(by_id[i]) for i in LOOK_IDS])


def write_samples(d):
    F4 = ["f0", "f1", "f2", "f3"]
    xs = samples(d)
    write_csv(os.path.join(d, "xs.csv"), F4, xs)
    write_csv(os.path.join(d, "x_pre.csv"), F4, [scale_clip(x) for x in xs])
    # The pre steps half applied, or in the other order: the answer must not match these.
    write_csv(os.path.join(d, "x_scale.csv"), F4, [[2 * v - 1 for v in x] for x in xs])
    write_csv(os.path.join(d, "x_wrong.csv"), F4,
              [[2 * min(1.0, max(-1.0, v)) - 1 for v in x] for x in xs])


def cmd_h5table(d, kiln, out):
    """The feature table as HDF5 (datasets id, int64 (N), and x, float32 (N, 4)), written with
    the libhdf5 kiln links, through ctypes. Exits 77 when that library cannot be used."""
    import ctypes
    import re
    import subprocess
    try:
        ldd = subprocess.run(["ldd", kiln], capture_output=True, text=True).stdout
        lib = ctypes.CDLL(re.search(r"libhdf5\S*\.so\S* => (\S+)", ldd).group(1))
        hid = ctypes.c_int64  # hid_t since HDF5 1.10
        lib.H5open()
        i64 = hid.in_dll(lib, "H5T_NATIVE_LLONG_g").value
        f32t = hid.in_dll(lib, "H5T_NATIVE_FLOAT_g").value
    except Exception as e:  # no ldd, no libhdf5, an HDF5 without these symbols
        print("no HDF5 table: %s" % e)
        sys.exit(77)
    for fn in ("H5Fcreate", "H5Screate_simple", "H5Dcreate2"):
        getattr(lib, fn).restype = hid
    lib.H5Fcreate.argtypes = [ctypes.c_char_p, ctypes.c_uint, hid, hid]
    lib.H5Screate_simple.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_uint64),
                                     ctypes.c_void_p]
    lib.H5Dcreate2.argtypes = [hid, ctypes.c_char_p, hid, hid, hid, hid, hid]
    lib.H5Dwrite.argtypes = [hid, hid, hid, hid, hid, ctypes.c_char_p]
    for fn in ("H5Dclose", "H5Sclose", "H5Fclose"):
        getattr(lib, fn).argtypes = [hid]
    f = lib.H5Fcreate(out.encode(), 2, 0, 0)  # H5F_ACC_TRUNC, H5P_DEFAULT

    def dataset(name, dims, t, raw):
        space = lib.H5Screate_simple(len(dims), (ctypes.c_uint64 * len(dims))(*dims), None)
        x = lib.H5Dcreate2(f, name, t, space, 0, 0, 0)
        ok = x >= 0 and lib.H5Dwrite(x, t, 0, 0, 0, raw) >= 0  # H5S_ALL, H5P_DEFAULT
        lib.H5Dclose(x)
        lib.H5Sclose(space)
        return ok

    rows = table_rows(31)
    ok = f >= 0 and dataset(b"id", [len(TABLE_IDS)], i64,
                            struct.pack("<%dq" % len(TABLE_IDS), *TABLE_IDS)) and \
        dataset(b"x", [len(rows), 4], f32t, struct.pack("<%df" % (4 * len(rows)),
                                                        *[v for r in rows for v in r]))
    if f >= 0:
        lib.H5Fclose(f)
    if not ok:
        sys.exit("cannot write %s" % out)


def c_mid_rows():
    """c-mid's requests (one_hot {column: 1, classes: 2} on [v, k]) and what they become."""
    out = []
    for v, k in ((0.5, 0), (-1.25, 1), (3.0, 1), (0.0, 0)):
        out.append((v, k, [v, float(k == 0), float(k == 1)]))
    return out


def cmd_pipe_input(d):
    """pipe_in.csv: one_hot(argmax(a's probabilities on the raw samples))."""
    p, _, _ = read_predictions(os.path.join(d, "pa_raw.csv"))
    write_csv(os.path.join(d, "pipe_in.csv"), ["o0", "o1", "o2"],
              [[float(i == argmax(r)) for i in range(3)] for r in p])


def cmd_table2(d):
    """features.csv rewritten with entity 42's row changed (same width), and its rows for
    LOOK_IDS in look_rows2.csv."""
    rows = table_rows(31)
    rows[TABLE_IDS.index(42)] = [1.5, -2.0, 0.25, 2.5]
    write_table(os.path.join(d, "features2.csv"), rows)
    by_id = dict(zip(TABLE_IDS, rows))
    write_csv(os.path.join(d, "look_rows2.csv"), ["f0", "f1", "f2", "f3"],
              [by_id[i] for i in LOOK_IDS])




def argmax(row):
    """The first largest value's index (ties to the lower class)."""
    return row.index(max(row))


def top_k(row, k):
    """The k largest classes, ties to the lower class."""
    order = sorted(range(len(row)), key=lambda c: (-row[c], c))
    return order[:k]


def f32(v):
    return struct.unpack("<f", struct.pack("<f", v))[0]


def max_diff(a, b):
    if len(a) != len(b) or any(len(x) != len(y) for x, y in zip(a, b)):
        return float("inf")
    return max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))


# ---- requests and answers ----

def body(rows, name="input", dtype="FP32", shape=None, outputs=None, params=None):
    flat = [v for r in rows for v in r]
    if dtype.startswith("INT"):
        flat = [int(v) for v in flat]
    doc = {"inputs": [{"name": name, "shape": shape or [len(rows), len(rows[0])],
                       "datatype": dtype, "data": flat}]}
    if outputs is not None:
        doc["outputs"] = outputs
    if params is not None:
        doc["parameters"] = params
    return json.dumps(doc).encode()


def ids_body(ids, dtype="INT64", shape=None, binary=False, outputs=None):
    """A lookup request: input "id", shape [n] (or the given one); JSON text or Triton binary."""
    inp = {"name": "id", "shape": shape or [len(ids)], "datatype": dtype}
    raw = b""
    if binary:
        raw = struct.pack("<%d%s" % (len(ids), {"INT32": "i", "INT64": "q"}[dtype]), *ids)
        inp["parameters"] = {"binary_data_size": len(raw)}
    else:
        inp["data"] = ids
    doc = {"inputs": [inp]}
    if outputs is not None:
        doc["outputs"] = outputs
    head = json.dumps(doc).encode()
    return head + raw, (len(head) if binary else None)




def infer(c, model, data, header_len=None):
    h = {"Content-Type": "application/json"}
    if header_len is not None:
        h["Inference-Header-Content-Length"] = str(header_len)
    return c.request("POST", "/v2/models/%s/infer" % model, data, h)


def rows_of(vals, k):
    return [vals[i * k:(i + 1) * k] for i in range(len(vals) // k)]


def answer(c, model, data, what, header_len=None):
    """Infers; returns the decoded outputs, or None (a failed check) when not 200."""
    st, h, b = infer(c, model, data, header_len)
    if not check("%s: 200" % what, st == 200, "%d %s" % (st, b[:300])):
        return None
    return decode(h, b)[1]


def error(c, model, data, code, says, what, header_len=None):
    """The request gets code with a JSON error containing every string in says."""
    st, _, b = infer(c, model, data, header_len)
    try:
        msg = json.loads(b).get("error", "")
    except ValueError:
        msg = None
    ok = st == code and isinstance(msg, str) and msg and all(s in msg for s in says)
    check("%s: %d with a JSON error naming %s" % (what, code, says), ok, "%d %s" % (st, b[:300]))
    return msg


def classifier_is(what, outs, p_want, k, names, n):
    """probabilities equal p_want within 1e-6; label the argmax of the answer's own
    probabilities (and of p_want's, away from near-ties); label_name its name."""
    if outs is None:
        return None
    dt, shape, vals = outs["probabilities"]
    check("%s: probabilities FP32 [%d, %d]" % (what, n, k), dt == "FP32" and shape == [n, k],
          (dt, shape))
    p = rows_of(vals, k)
    check("%s: probabilities equal the expected ones within 1e-6" % what,
          max_diff(p, p_want) <= 1e-6, (p, p_want))
    labels = outs["label"][2]
    check("%s: label INT32 [%d] is the argmax" % (what, n),
          outs["label"][0] == "INT32" and outs["label"][1] == [n] and
          labels == [argmax(r) for r in p], (labels, p))
    clear = [i for i, r in enumerate(p_want) if sorted(r)[-1] - sorted(r)[-2] > 1e-5]
    check("%s: and the expected argmax" % what,
          all(labels[i] == argmax(p_want[i]) for i in clear), (labels, p_want))
    check("%s: label_name BYTES [%d] names the label" % (what, n),
          outs["label_name"][:2] == ("BYTES", [n]) and
          outs["label_name"][2] == [names[x] for x in labels], outs["label_name"])
    return p


# ---- values ----

def cmd_values(port, d):
    c = Client(port)
    J = lambda *p: os.path.join(d, *p)
    xs = samples(d)
    pa_raw, la_raw, _ = read_predictions(J("pa_raw.csv"))
    pb, lb, _ = read_predictions(J("pb.csv"))
    pa_pre, _, _ = read_predictions(J("pa_pre.csv"))
    pa_scale, _, _ = read_predictions(J("pa_scale.csv"))
    pa_wrong, _, _ = read_predictions(J("pa_wrong.csv"))
    pc1h, _, _ = read_predictions(J("pc_onehot3.csv"))
    pc_mid, _, _ = read_predictions(J("pc_mid.csv"))
    pc_pipe, _, _ = read_predictions(J("pc_pipe.csv"))
    plook, _, _ = read_predictions(J("plook.csv"))
    ens_requests = [0, 0]  # ens-mean: successful requests, samples

    # -- metadata --
    def meta(model):
        st, _, b = c.request("GET", "/v2/models/%s" % model)
        check("metadata of %s: 200" % model, st == 200, b[:300])
        return json.loads(b) if st == 200 else {}

    def io(m):
        return ([(i["name"], i["datatype"], i["shape"]) for i in m.get("inputs", [])],
                [(o["name"], o["datatype"], o["shape"]) for o in m.get("outputs", [])])

    cls3 = [("probabilities", "FP32", [-1, 3]), ("label", "INT32", [-1]),
            ("label_name", "BYTES", [-1])]
    cls2 = [("probabilities", "FP32", [-1, 2]), ("label", "INT32", [-1]),
            ("label_name", "BYTES", [-1])]
    topk = lambda k: [("top_k_labels", "INT32", [-1, k]), ("top_k_scores", "FP32", [-1, k]),
                      ("top_k_label_names", "BYTES", [-1, k])]
    m = meta("a")
    check("a's metadata: input of open width (pre steps), outputs with top_k's and decision",
          io(m) == ([("input", "FP32", [-1, -1])], cls3 + topk(2) + [("decision", "INT32", [-1])]),
          io(m))
    for name in ("ens-mean", "ens-weighted", "ens-vote"):
        m = meta(name)
        want = cls3 + (topk(2) if name == "ens-vote" else [])
        check("%s's metadata: kiln-ensemble, version 1, a's input [-1, 4], the members' classes"
              % name, m.get("platform") == "kiln-ensemble" and m.get("versions") == ["1"] and
              io(m) == ([("input", "FP32", [-1, 4])], want), (m.get("platform"), io(m)))
        check("%s's metadata carries parameters.labels, the members' class names (as a model's "
              "does)" % name, m.get("parameters", {}).get("labels") == NAMES3, m.get("parameters"))
    m = meta("ens-pre")
    check("ens-pre's metadata: input of open width (the ensemble's own pre steps)",
          io(m) == ([("input", "FP32", [-1, -1])], cls3), io(m))
    m = meta("pipe")
    check("pipe's metadata carries parameters.labels, c's class names",
          m.get("parameters", {}).get("labels") == NAMES2, m.get("parameters"))
    check("pipe's metadata: kiln-pipeline, a's input [-1, 4], c's 2 classes, top_k {k: 3} "
          "clamped to 2", m.get("platform") == "kiln-pipeline" and m.get("versions") == ["1"]
          and io(m) == ([("input", "FP32", [-1, 4])], cls2 + topk(2)), (m.get("platform"), io(m)))
    m = meta("pipe-am")
    check("pipe-am's metadata (a pipeline ending with a step): output FP32 [-1, 1]",
          io(m) == ([("input", "FP32", [-1, 4])], [("output", "FP32", [-1, 1])]), io(m))
    m = meta("look")
    check("look's metadata: input id INT64 [-1], a's outputs",
          io(m) == ([("id", "INT64", [-1])], cls3), io(m))

    # -- a: pre steps (scale, then clip) and post steps (top_k {k: 2}, threshold) --
    outs = answer(c, "a", body(xs), "a on the raw samples")
    p = classifier_is("a (pre: scale, clip)", outs, pa_pre, 3, NAMES3, NS)
    if p:
        check("a's answer is not kiln predict on the raw samples (the pre steps act)",
              max_diff(p, pa_raw) > 1e-3, max_diff(p, pa_raw))
        check("nor on the scaled samples unclipped (clip acts)",
              max_diff(p, pa_scale) > 1e-3, max_diff(p, pa_scale))
        check("nor on clip-then-scale (the steps run in their order)",
              max_diff(p, pa_wrong) > 1e-3, max_diff(p, pa_wrong))
        tl, ts, tn = (outs[k] for k in ("top_k_labels", "top_k_scores", "top_k_label_names"))
        check("top_k_labels INT32 [8, 2], top_k_scores FP32 [8, 2], top_k_label_names BYTES "
              "[8, 2]", (tl[:2], ts[:2], tn[:2]) ==
              (("INT32", [NS, 2]), ("FP32", [NS, 2]), ("BYTES", [NS, 2])), (tl[:2], ts[:2], tn[:2]))
        check("top_k_labels are the 2 best classes of the answer's probabilities",
              rows_of(tl[2], 2) == [top_k(r, 2) for r in p], (tl[2], p))
        check("and of kiln predict's", rows_of(tl[2], 2) == [top_k(r, 2) for r in pa_pre],
              (tl[2], pa_pre))
        check("top_k_scores are those classes' probabilities (exactly)",
              rows_of(ts[2], 2) == [[r[k] for k in top_k(r, 2)] for r in p], ts[2])
        check("top_k_label_names name them",
              rows_of(tn[2], 2) == [[NAMES3[k] for k in top_k(r, 2)] for r in p], tn[2])
        dec = outs["decision"]
        check("decision INT32 [8] is p[0] >= 0.5",
              dec[:2] == ("INT32", [NS]) and dec[2] == [int(r[0] >= 0.5) for r in p], (dec, p))
        check("decision agrees with kiln predict's p[0] >= 0.5",
              dec[2] == [int(r[0] >= 0.5) for r in pa_pre], (dec[2], [r[0] for r in pa_pre]))
        check("the samples get both decisions", set(dec[2]) == {0, 1}, dec[2])
        # The same request, every output binary: the same values; BYTES names decode.
        st, h, b = infer(c, "a", body(xs, params={"binary_data_output": True}))
        if check("a with binary_data_output: 200 with Inference-Header-Content-Length",
                 st == 200 and "inference-header-content-length" in h, (st, b[:200])):
            bouts = decode(h, b)[1]
            check("every binary output equals the JSON one (FP32 exactly, names as UTF-8)",
                  set(bouts) == set(outs) and all(
                      (bouts[k][0], bouts[k][1]) == (outs[k][0], outs[k][1]) and
                      (bouts[k][2] == outs[k][2] if outs[k][0] != "FP32" else
                       bouts[k][2] == [f32(v) for v in outs[k][2]]) for k in outs),
                  {k: (bouts[k], outs[k]) for k in outs if k in bouts and bouts[k] != outs[k]})
        st, h, b = infer(c, "a", body(xs, outputs=[
            {"name": "top_k_label_names", "parameters": {"binary_data": True}},
            {"name": "decision"}]))
        if check("a asked for binary top_k_label_names and JSON decision: 200",
                 st == 200, b[:300]):
            doc, bo = decode(h, b)
            check("the answer holds those two, the names binary",
                  [o["name"] for o in doc["outputs"]] == ["top_k_label_names", "decision"] and
                  "binary_data_size" in doc["outputs"][0].get("parameters", {}) and
                  "data" in doc["outputs"][1], doc["outputs"])
            check("the binary BYTES names decode to the top 2 class names (quotes, backslash, "
                  "UTF-8 intact)", bo["top_k_label_names"][2] ==
                  [NAMES3[k] for r in p for k in top_k(r, 2)], bo["top_k_label_names"])
        # One sample at a time: the same answers (no batch-dependent step). Within 1e-6, not
        # exactly: the model's first layer takes one GEMV a row up to 7 rows and sgemm beyond,
        # which round differently (docs/serve.md, "Batching").
        one = [answer(c, "a", body([x]), "a on sample %d alone" % i) for i, x in enumerate(xs)]
        if all(one):
            diff = max_diff([o["probabilities"][2] for o in one], p)
            check("one sample a request: the same probabilities (within 1e-6) and decisions",
                  diff <= 1e-6 and [o["decision"][2][0] for o in one] == dec[2], diff)

    # -- the other pre steps on c (3 one-hot features to 2 classes) --
    outs = answer(c, "c-oh", body([[0], [2], [1], [2]]), "c-oh (pre: one_hot {column: 0, "
                  "classes: 3}) on categories [0, 2, 1, 2]")
    classifier_is("c-oh", outs, [pc1h[k] for k in (0, 2, 1, 2)], 2, NAMES2, 4)
    outs = answer(c, "c-mid", body([[v, k] for v, k, _ in c_mid_rows()]),
                  "c-mid (pre: one_hot {column: 1, classes: 2}) on [v, k] rows")
    classifier_is("c-mid: [v, k] becomes [v, k == 0, k == 1]", outs, pc_mid, 2, NAMES2, 4)
    am = [[2, 2, 1], [0, 5, 5], [-1, -3, 0.5], [7, 7, 7], [0.25, 0.5, 0.125]]
    outs = answer(c, "c-am", body(am), "c-am (pre: argmax, one_hot {classes: 3})")
    classifier_is("c-am: argmax (ties to the first) then one-hot", outs,
                  [pc1h[k] for k in (0, 1, 2, 0, 1)], 2, NAMES2, 5)
    th = [[9, 0.5], [9, f32(0.49999997)], [-9, 1.0], [0, -0.5], [0, 0.75]]
    outs = answer(c, "c-th", body(th), "c-th (pre: threshold {value: 0.5, column: 1}, one_hot)")
    classifier_is("c-th: column 1 >= 0.5 gives category 1, else 0", outs,
                  [pc1h[k] for k in (1, 0, 1, 0, 1)], 2, NAMES2, 5)

    # -- ensembles (members answer on the raw samples: their own pre steps are theirs) --
    mean = [[(x + y) / 2 for x, y in zip(ra, rb)] for ra, rb in zip(pa_raw, pb)]
    outs = answer(c, "ens-mean", body(xs), "ens-mean")
    if outs:
        ens_requests[0] += 1
        ens_requests[1] += NS
    classifier_is("ens-mean = (pa + pb) / 2", outs, mean, 3, NAMES3, NS)
    check("the members' answers differ (the ensemble is not trivially one of them)",
          max_diff(pa_raw, pb) > 1e-3, max_diff(pa_raw, pb))
    wmean = [[(3 * x + y) / 4 for x, y in zip(ra, rb)] for ra, rb in zip(pa_raw, pb)]
    pa_pre_, pb_pre = read_predictions(J("pa_pre.csv"))[0], read_predictions(J("pb_pre.csv"))[0]
    outs = answer(c, "ens-pre", body(xs), "ens-pre (the ensemble's own pre: scale, clip)")
    classifier_is("ens-pre = (pa + pb) / 2 on the transformed samples", outs,
                  [[(x + y) / 2 for x, y in zip(ra, rb)] for ra, rb in zip(pa_pre_, pb_pre)],
                  3, NAMES3, NS)
    outs = answer(c, "ens-weighted", body(xs), "ens-weighted")
    classifier_is("ens-weighted (weights [3, 1]) = (3 pa + pb) / 4", outs, wmean, 3, NAMES3, NS)
    check("the samples show a and b disagreeing at least once", la_raw != lb, (la_raw, lb))
    votes = [[(int(la == k) * 2 + int(lb_ == k)) / 3 for k in range(3)]
             for la, lb_ in zip(la_raw, lb)]
    outs = answer(c, "ens-vote", body(xs), "ens-vote (a, b, a2)")
    p = classifier_is("ens-vote: the vote fractions, the majority label", outs, votes, 3, NAMES3,
                      NS)
    if p:
        check("ens-vote's label is a's (a and a2 outvote b)", outs["label"][2] == la_raw,
              (outs["label"][2], la_raw))
        check("ens-vote's top_k: the 2 most voted, ties (0 votes) to the lower class",
              rows_of(outs["top_k_labels"][2], 2) == [top_k(r, 2) for r in votes] and
              rows_of(outs["top_k_label_names"][2], 2) ==
              [[NAMES3[k] for k in top_k(r, 2)] for r in votes], outs["top_k_labels"])
        st, h, b = infer(c, "ens-vote", body(xs, params={"binary_data_output": True}))
        bo = decode(h, b)[1] if st == 200 else {}
        check("ens-vote with binary_data_output: the same outputs, BYTES top_k names decoded",
              st == 200 and set(bo) == set(outs) and all(
                  bo[k][2] == (outs[k][2] if outs[k][0] != "FP32" else
                               [f32(v) for v in outs[k][2]]) for k in outs), (st, b[:300]))
    # Two members: a disagreement is a tie, broken by the larger summed probability.
    outs = answer(c, "ens-vote2", body(xs), "ens-vote2 (a, b)")
    v2 = [[(int(la == k) + int(lb_ == k)) / 2 for k in range(3)] for la, lb_ in zip(la_raw, lb)]
    if outs:
        p = rows_of(outs["probabilities"][2], 3)
        check("ens-vote2: the vote fractions", max_diff(p, v2) <= 1e-6, (p, v2))
        want = []
        for i, r in enumerate(v2):
            best = max(r)
            tied = [k for k in range(3) if r[k] == best]
            want.append(max(tied, key=lambda k: (pa_raw[i][k] + pb[i][k], -k)))
        check("ens-vote2: a tie goes to the class with the larger summed probability",
              outs["label"][2] == want, (outs["label"][2], want, v2))

    # -- pipelines --
    want = [pc1h[argmax(r)] for r in pa_raw]
    check("pipe's expected answer (c's predict on one_hot(argmax(pa))) equals kiln predict on "
          "pipe_in.csv (within 1e-6: 4 rows and 8 rows round differently)",
          max_diff(want, pc_pipe) <= 1e-6, (want, pc_pipe))
    outs = answer(c, "pipe", body(xs), "pipe (a, argmax, one_hot, c)")
    p = classifier_is("pipe = c on one_hot(argmax(pa))", outs, pc_pipe, 2, NAMES2, NS)
    if p:
        check("pipe's top_k (k 3 clamped to c's 2 classes): both classes best first, c's names",
              rows_of(outs["top_k_labels"][2], 2) == [top_k(r, 2) for r in p] and
              rows_of(outs["top_k_scores"][2], 2) == [[r[k] for k in top_k(r, 2)] for r in p] and
              rows_of(outs["top_k_label_names"][2], 2) ==
              [[NAMES2[k] for k in top_k(r, 2)] for r in p], outs["top_k_labels"])
    outs = answer(c, "pipe-am", body(xs), "pipe-am (a, argmax)")
    if outs:
        check("pipe-am answers output FP32 [8, 1] = a's label on the raw samples",
              outs.get("output", (None, None, None))[:2] == ("FP32", [NS, 1]) and
              outs["output"][2] == [float(x) for x in la_raw] and list(outs) == ["output"],
              outs)

    # -- feature lookup --
    data, _ = ids_body(LOOK_IDS)
    outs = answer(c, "look", data, "look with 7 INT64 ids (2^53 + 1, duplicates, the extremes)")
    classifier_is("look = a on the table's rows, in the request's order", outs, plook, 3,
                  NAMES3, len(LOOK_IDS))
    check("2^53 and 2^53 + 1 are different entities (ids are exact)",
          max_diff([plook[0]], [plook[3]]) > 1e-3, (plook[0], plook[3]))
    outs = answer(c, "look-pre", ids_body(LOOK_IDS)[0], "look-pre (lookup, then a's pre steps)")
    classifier_is("look-pre = a on the table's rows scaled and clipped", outs,
                  read_predictions(J("plook_pre.csv"))[0], 3, NAMES3, len(LOOK_IDS))
    data, hl = ids_body(LOOK_IDS, binary=True)
    outs = answer(c, "look", data, "look with binary INT64 ids", header_len=hl)
    classifier_is("look, binary ids", outs, plook, 3, NAMES3, len(LOOK_IDS))
    data, _ = ids_body([[i] for i in LOOK_IDS], shape=[len(LOOK_IDS), 1])
    outs = answer(c, "look", data, "look with ids of shape [7, 1]")
    classifier_is("look, ids [n, 1]", outs, plook, 3, NAMES3, len(LOOK_IDS))
    small = [42, 7, 42]
    for dt, binary in (("INT32", False), ("INT32", True)):
        data, hl = ids_body(small, dt, binary=binary)
        outs = answer(c, "look", data, "look with %s ids %s%s" % (dt, small,
                      " (binary)" if binary else ""), header_len=hl)
        classifier_is("look, %s ids" % dt, outs,
                      [plook[LOOK_IDS.index(i)] for i in small], 3, NAMES3, 3)

    # -- ens-mean's statistics count its requests --
    for k in range(3):
        outs = answer(c, "ens-mean", body(xs[:k + 1]), "ens-mean with %d samples" % (k + 1))
        if outs:
            ens_requests[0] += 1
            ens_requests[1] += k + 1
            classifier_is("ens-mean with %d samples" % (k + 1), outs, mean[:k + 1], 3, NAMES3,
                          k + 1)
    st, _, b = c.request("GET", "/v2/models/ens-mean/stats")
    if check("ens-mean's statistics: 200", st == 200, b[:300]):
        s = json.loads(b)["model_stats"]
        check("one entry, ens-mean version 1", [(x["name"], x["version"]) for x in s] ==
              [("ens-mean", "1")], s)
        s = s[0]
        check("success count = %d requests, inference_count = %d samples" % tuple(ens_requests),
              s["inference_stats"]["success"]["count"] == ens_requests[0] and
              s["inference_count"] == ens_requests[1], s)
        check("success ns > 0 and last_inference > 0 (the statistics extension's durations and "
              "time, as a model's)", s["inference_stats"]["success"]["ns"] > 0 and
              s["last_inference"] > 0, s)

    # -- many clients at once: composites batched with plain traffic, same answers --
    plan = [("a", body(xs[:2]), None), ("ens-mean", body(xs[2:5]), None),
            ("ens-vote", body(xs[:1]), None), ("pipe", body(xs[3:8]), None),
            ("look", ids_body(LOOK_IDS[:4])[0], None), ("ens-weighted", body(xs[1:2]), None)]
    want = {}
    for model, data, _ in plan:
        st, h, b = infer(c, model, data)
        want[model] = (st, decode(h, b)[1] if st == 200 else b)

    def same(got, want):
        """The same status and outputs; FP32 values within 1e-6 (a request batched with others
        may go through another BLAS routine than alone), everything else exactly."""
        if got[0] != want[0] or got[0] != 200:
            return got == want
        a, b = got[1], want[1]
        return set(a) == set(b) and all(
            a[k][:2] == b[k][:2] and len(a[k][2]) == len(b[k][2]) and
            (all(abs(x - y) <= 1e-6 for x, y in zip(a[k][2], b[k][2]))
             if a[k][0] in ("FP32", "FP64") else a[k][2] == b[k][2]) for k in a)

    def work(i):
        cl, bad = Client(port, retry=False), []
        for r in range(15):
            model, data, _ = plan[(i + r) % len(plan)]
            st, h, b = infer(cl, model, data)
            got = (st, decode(h, b)[1] if st == 200 else b)
            if not same(got, want[model]):
                bad.append((model, st, b[:200]))
        cl.close()
        return bad

    results = parallel(8, work)
    bad = [r for r in results if isinstance(r, Exception) or r]
    check("8 clients x 15 requests over a, the ensembles, the pipeline and the lookup: each "
          "answer equals the one alone (FP32 within 1e-6)", not bad and all(w[0] == 200 for w in want.values()),
          bad[:3])
    c.close()


def parallel(n, work):
    out = [None] * n

    def run(i):
        try:
            out[i] = work(i)
        except Exception as e:  # reported by the caller
            out[i] = e

    ts = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(90)
    return out


# ---- errors ----

def cmd_errors(port, d):
    c = Client(port)
    xs = samples(d)
    data, _ = ids_body([42, 9007199254740994, 7])
    error(c, "look", data, 400, ["9007199254740994", "sample 1"],
          "look with an unknown id (2^53 + 2, next to two known ones)")
    data, _ = ids_body([-9223372036854775807])
    error(c, "look", data, 400, ["-9223372036854775807"], "look with an unknown negative id")
    for dt in ("FP32", "FP64"):
        doc = {"inputs": [{"name": "id", "shape": [2], "datatype": dt, "data": [42.0, 7.0]}]}
        error(c, "look", json.dumps(doc).encode(), 400, ["INT32 or INT64"],
              "look with %s ids" % dt)
    for dt, v in (("INT64", "9223372036854775808"), ("INT32", "2147483648"), ("INT64", "42.0")):
        doc = '{"inputs":[{"name":"id","shape":[1],"datatype":"%s","data":[%s]}]}' % (dt, v)
        error(c, "look", doc.encode(), 400, ["data"], "look with %s id %s" % (dt, v))
    # Ids read through jansson (an escaped key): exact all the same.
    doc = ('{"inputs":[{"name":"id","shape":[2],"datatype":"INT64","d\\u0061ta":'
           '[9007199254740993,9007199254740992]}]}')
    got = answer(c, "look", doc.encode(), "look with its data under an escaped key")
    want = answer(c, "look", ids_body([9007199254740993, 9007199254740992])[0], "look")
    check("the escaped key's ids answer as the plain ones (2^53 + 1 exact)",
          got is not None and got == want, (got, want))
    error(c, "look", ids_body([[42, 7]], shape=[1, 2])[0], 400, ["shape [n]"],
          "look with ids of shape [1, 2]")
    error(c, "look", body(xs[:1]), 400, ["'id'"], "look sent the model's input, not ids")
    error(c, "look", ids_body([], shape=[0])[0], 400, ["no samples"], "look with no ids")
    error(c, "c-oh", body([[0], [2], [3]]), 400, ["sample 2", "one_hot"],
          "c-oh with category 3 of 3 in sample 2")
    error(c, "c-oh", body([[1.5]]), 400, ["sample 0"], "c-oh with category 1.5")
    error(c, "c-oh", body([[0], [-1]]), 400, ["sample 1"], "c-oh with category -1")
    error(c, "c-am", body([[1, 1, 1, 1, 1], [0, 1, 2, 3, 9]]), 400, ["sample 1", "4"],
          "c-am with 5 values, sample 1's argmax 4 not one of one_hot's 3 categories")
    error(c, "c-th", body([[1]]), 400, ["column 1"], "c-th with 1 value (threshold on column 1)")
    error(c, "pipe", body([x[:3] for x in xs[:2]]), 400, ["4"], "pipe with 3 values a sample")
    error(c, "ens-mean", body(xs[:2], outputs=[{"name": "top_k_labels"}]), 400,
          ["top_k_labels"], "ens-mean asked for an output it lacks")
    error(c, "ens-mean", body((xs + xs)[:9]), 400, ["max_batch_size", "b"],
          "ens-mean with 9 samples (member b takes at most 8)")
    error(c, "a", body([x + [0] for x in xs[:1]]), 400, ["5", "4"],
          "a with 5 values a sample")
    # A step inside a pipeline refusing a value (pipe-shift: a, argmax, +1, one_hot of 3, c):
    # a's class 2 becomes 3, not a category; the error comes from the instance that ran a.
    pa_raw, la_raw, _ = read_predictions(os.path.join(d, "pa_raw.csv"))
    if 2 in la_raw:
        error(c, "pipe-shift", body(xs), 400, ["sample %d" % la_raw.index(2), "one_hot"],
              "pipe-shift on samples of which %d is a's class 2 (one_hot gets 3)" %
              la_raw.index(2))
    ok = [i for i in range(NS) if la_raw[i] != 2]
    pc1h, _, _ = read_predictions(os.path.join(d, "pc_onehot3.csv"))
    if ok:
        outs = answer(c, "pipe-shift", body([xs[i] for i in ok]),
                      "pipe-shift on a's classes 0 and 1 only")
        classifier_is("pipe-shift = c on one_hot(argmax(pa) + 1)", outs,
                      [pc1h[la_raw[i] + 1] for i in ok], 2, NAMES2, len(ok))
    check("the samples hold a's class 2 and others (pipe-shift's error and answer are tested)",
          2 in la_raw and ok, la_raw)
    # The server still answers after all of these.
    outs = answer(c, "pipe", body(xs[:1]), "pipe after the errors")
    c.close()
    finish()


# ---- members down, and churn ----

def cmd_members(port, d, state):
    c = Client(port)
    xs = samples(d)
    if state == "up":
        pa_raw, _, _ = read_predictions(os.path.join(d, "pa_raw.csv"))
        pb, _, _ = read_predictions(os.path.join(d, "pb.csv"))
        pc_pipe, _, _ = read_predictions(os.path.join(d, "pc_pipe.csv"))
        mean = [[(x + y) / 2 for x, y in zip(ra, rb)] for ra, rb in zip(pa_raw, pb)]
        classifier_is("ens-mean", answer(c, "ens-mean", body(xs), "ens-mean"), mean, 3, NAMES3,
                      NS)
        classifier_is("pipe", answer(c, "pipe", body(xs), "pipe"), pc_pipe, 2, NAMES2, NS)
    elif state == "b-down":
        for m in ("ens-mean", "ens-weighted", "ens-vote"):
            error(c, m, body(xs), 503, ["b"], "%s with member b unloaded" % m)
        answer(c, "pipe", body(xs), "pipe (a, c) with b unloaded")
        answer(c, "a", body(xs), "a with b unloaded")
    elif state == "c-down":
        error(c, "pipe", body(xs), 503, ["c"], "pipe with stage c unloaded")
        answer(c, "ens-mean", body(xs), "ens-mean (a, b) with c unloaded")
    c.close()
    finish()


def cmd_lookup(port, d, rows_csv, model="look"):
    p, _, _ = read_predictions(os.path.join(d, rows_csv))
    c = Client(port)
    # The table is read again when its file changes: the first request after the change may
    # still race the rename by a few ms, so allow a short while.
    for _ in range(30):
        outs = answer(c, model, ids_body(LOOK_IDS)[0], model)
        if outs is None or max_diff(rows_of(outs["probabilities"][2], 3), p) <= 1e-6:
            break
        time.sleep(0.1)
    classifier_is("%s: a on %s" % (model, rows_csv), outs, p, 3, NAMES3, len(LOOK_IDS))
    c.close()
    finish()


def cmd_churn(port, d):
    """4 clients infer on ens-mean while a fifth unloads and loads b 10 times: every answer is
    a 200 with the right values or a 503 with a JSON error; then 200 again."""
    xs = samples(d)[:2]
    pa_raw, _, _ = read_predictions(os.path.join(d, "pa_raw.csv"))
    pb, _, _ = read_predictions(os.path.join(d, "pb.csv"))
    mean = [[(x + y) / 2 for x, y in zip(ra, rb)] for ra, rb in zip(pa_raw[:2], pb[:2])]
    done, lock, codes, wrong = [False], threading.Lock(), {}, []

    def work(i):
        cl = Client(port, retry=False)
        while not done[0]:
            try:
                st, h, b = infer(cl, "ens-mean", body(xs))
                if st == 200:
                    p = rows_of(decode(h, b)[1]["probabilities"][2], 3)
                    if max_diff(p, mean) > 1e-6:
                        wrong.append(p)
                elif not is_json_error(b):
                    st = "%d without a JSON error" % st
            except (OSError, http.client.HTTPException) as e:
                cl.close()
                st = repr(e)
            with lock:
                codes[st] = codes.get(st, 0) + 1
        cl.close()

    admin = []

    def churn():
        cl = Client(port, retry=False)
        for _ in range(10):
            for action in ("unload", "load"):
                st, _, _ = cl.request("POST", "/v2/repository/models/b/%s" % action, b"")
                admin.append((action, st))
                time.sleep(0.03)
        done[0] = True

    ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    ts.append(threading.Thread(target=churn))
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    print("   ens-mean's answers while b churned: %s" % codes)
    check("every unload and load of b answered 200", all(st == 200 for _, st in admin), admin)
    check("ens-mean meanwhile: 200 or 503 with a JSON error, some 200",
          set(codes) <= {200, 503} and codes.get(200, 0) > 0, codes)
    check("every 200 carried the right mean", not wrong, wrong[:2])
    st, _, b = infer(Client(port), "ens-mean", body(xs))
    check("after the churn ens-mean answers 200", st == 200, b[:300])
    finish()


def is_json_error(b):
    try:
        d = json.loads(b)
        return isinstance(d, dict) and isinstance(d.get("error"), str) and d["error"] != ""
    except ValueError:
        return False


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "data":
        cmd_data(args[0])
    elif cmd == "pick":
        cmd_pick(args[0])
    elif cmd == "h5table":
        cmd_h5table(*args)
    elif cmd == "pipe-input":
        cmd_pipe_input(args[0])
    elif cmd == "table2":
        cmd_table2(args[0])
    elif cmd == "values":
        cmd_values(int(args[0]), args[1])
        finish()
    elif cmd == "errors":
        cmd_errors(int(args[0]), args[1])
    elif cmd == "members":
        cmd_members(int(args[0]), args[1], args[2])
    elif cmd == "lookup":
        cmd_lookup(int(args[0]), *args[1:])
    elif cmd == "churn":
        cmd_churn(int(args[0]), args[1])
    else:
        print(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main()
