"""HTTP clients for tests/serve/test_serve.sh (stdlib only, run with /usr/bin/python3).

kiln serve is driven here the way Open Inference Protocol v2 clients drive it: JSON and Triton
binary tensor requests over keep-alive connections, many threads at once, raw sockets that
misbehave, a client that hammers a model while its versions change. Each subcommand prints
"ok: ..." or "FAILED: ..." per check and exits 1 when any check failed, so the shell script
counts it as one check and the log says which part broke.

usage: client.py data DIR SEED              training and sample CSVs for the test model
       client.py csv N SEED OUT              the samples a client sends, as a CSV
       client.py api PORT MODEL PRED.csv    inference: JSON forms, binary, outputs, id
       client.py bad PORT MODEL             malformed requests: 4xx with a JSON error each
       client.py raw PORT MODEL TIMEOUT     raw sockets: stalled, closed, garbage clients
       client.py load PORT MODEL MODE       concurrency: batched | unbatched
       client.py burst PORT MODEL           a full queue answers 503
       client.py term PORT MODEL PID        SIGTERM while requests are in flight
       client.py unload PORT MODEL TOKEN    unload while requests are in flight
       client.py churn PORT MODEL           unload and load while clients infer
       client.py stall PORT MODEL SECONDS   hold a request whose body never comes
       client.py index PORT SECONDS         read the repository index from 4 threads
       client.py hammer PORT MODEL OUT STOP infer until the STOP file appears; summary to OUT
"""
import csv
import http.client
import json
import math
import os
import random
import signal
import socket
import struct
import sys
import threading
import time

FEATURES = 784
CLASSES = 4
failures = 0


def check(what, cond, detail=""):
    global failures
    if cond:
        print("ok: " + what)
    else:
        failures += 1
        print("FAILED: " + what + (" (" + str(detail) + ")" if detail != "" else ""))
    sys.stdout.flush()
    return cond


def finish():
    sys.exit(1 if failures else 0)


# ---- data ----

def sample(rng):
    """784 values k/64, k in [-128, 128]: exact in FP32, FP64, CSV and JSON text."""
    return [rng.randint(-128, 128) / 64.0 for _ in range(FEATURES)]


def samples(n, seed):
    rng = random.Random(seed)
    return [sample(rng) for _ in range(n)]


def write_data(d, seed):
    """train.csv and test.csv (4 classes from the first 8 features), x.csv (16 samples, no
    label) and names.txt (class names that need JSON escaping and UTF-8)."""
    rng = random.Random(1000)
    w = [[rng.uniform(-1, 1) for _ in range(8)] for _ in range(CLASSES)]

    def write(path, n, s):
        with open(path, "w") as f:
            f.write(",".join("px%d" % i for i in range(FEATURES)) + ",label\n")
            for x in samples(n, s):
                scores = [sum(wk[j] * x[j] for j in range(8)) for wk in w]
                y = scores.index(max(scores))
                f.write(",".join("%.9g" % v for v in x) + ",%d\n" % y)

    write(os.path.join(d, "train.csv"), 400, seed)
    write(os.path.join(d, "test.csv"), 60, seed + 1)
    with open(os.path.join(d, "x.csv"), "w") as f:
        f.write(",".join("px%d" % i for i in range(FEATURES)) + "\n")
        for x in samples(16, 77):
            f.write(",".join("%.9g" % v for v in x) + "\n")
    with open(os.path.join(d, "names.txt"), "w", encoding="utf-8") as f:
        f.write('cat\nsay "hi"\nback\\slash\nnaïve café\n')


def read_predictions(path):
    """kiln predict's CSV: (probabilities, labels, label names) per row."""
    rows = list(csv.reader(open(path, encoding="utf-8")))
    assert rows[0][:2] == ["label", "label_name"], rows[0][:3]
    return ([[float(v) for v in r[2:]] for r in rows[1:]], [int(r[0]) for r in rows[1:]],
            [r[1] for r in rows[1:]])


# ---- requests and answers ----

class Client:
    """One keep-alive connection to the server, reopened when the server closes it."""

    def __init__(self, port, timeout=30, retry=True):
        """retry: send a request again once when the server had closed the kept-alive
        connection (where no request should ever go unanswered, leave it off)."""
        self.port, self.timeout, self.conn, self.retry = port, timeout, None, retry

    def request(self, method, path, body=None, headers=None):
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                                       timeout=self.timeout)
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                r = self.conn.getresponse()
                data = r.read()
                if r.getheader("Connection", "").lower() == "close":
                    self.close()
                return r.status, {k.lower(): v for k, v in r.getheaders()}, data
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # A kept-alive connection the server closed between requests: once more.
                self.close()
                if attempt or not self.retry:
                    raise

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def wait_for(cond, seconds):
    """Polls cond every 20 ms until it holds or seconds pass: whether it held. Tests wait for a
    state this way, never for a fixed time."""
    end = time.time() + seconds
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def metric(port, name, **labels):
    """The value of series name{labels} in GET /metrics (labels given must all match), or None
    when it is absent or the scrape fails."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
        c.close()
    except (OSError, http.client.HTTPException):
        return None
    want = ['%s="%s"' % kv for kv in labels.items()]
    for line in text.splitlines():
        series, _, v = line.rpartition(" ")
        if series.partition("{")[0] == name and all(w in series for w in want):
            return float(v)
    return None


def nest(flat, shape):
    if len(shape) == 1:
        return flat
    step = len(flat) // shape[0]
    return [nest(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]


def infer_body(xs, dtype="FP32", shape=None, nested=False, outputs=None, rid=None, params=None):
    flat = [v for x in xs for v in x]
    if dtype in ("INT32", "INT64"):
        flat = [int(v) for v in flat]
    shape = shape or [len(xs), FEATURES]
    inp = {"name": "input", "shape": shape, "datatype": dtype,
           "data": nest(flat, shape) if nested else flat}
    doc = {"inputs": [inp]}
    if outputs is not None:
        doc["outputs"] = outputs
    if rid is not None:
        doc["id"] = rid
    if params is not None:
        doc["parameters"] = params
    return json.dumps(doc).encode()


BIN_FORMAT = {"FP32": "f", "FP64": "d", "INT32": "i", "INT64": "q"}


def binary_body(xs, dtype="FP32", outputs=None, params=None, shape=None):
    """Triton's binary tensor data: (body, JSON header length)."""
    flat = [v for x in xs for v in x]
    if dtype in ("INT32", "INT64"):
        flat = [int(v) for v in flat]
    raw = struct.pack("<%d%s" % (len(flat), BIN_FORMAT[dtype]), *flat)
    inp = {"name": "input", "shape": shape or [len(xs), FEATURES], "datatype": dtype,
           "parameters": {"binary_data_size": len(raw)}}
    doc = {"inputs": [inp]}
    if outputs is not None:
        doc["outputs"] = outputs
    if params is not None:
        doc["parameters"] = params
    head = json.dumps(doc).encode()
    return head + raw, len(head)


def decode(headers, body):
    """An inference answer: (JSON header, {output name: (datatype, shape, flat values)})."""
    hl = headers.get("inference-header-content-length")
    n = int(hl) if hl is not None else len(body)
    doc = json.loads(body[:n])
    at, outs = n, {}
    for o in doc["outputs"]:
        size = o.get("parameters", {}).get("binary_data_size")
        if size is None:
            vals = o["data"]
        else:
            raw = body[at:at + size]
            at += size
            if o["datatype"] == "BYTES":
                vals, k = [], 0
                while k < len(raw):
                    (m,) = struct.unpack_from("<I", raw, k)
                    vals.append(raw[k + 4:k + 4 + m].decode("utf-8"))
                    k += 4 + m
            else:
                f = {"FP32": "f", "INT32": "i"}[o["datatype"]]
                vals = list(struct.unpack("<%d%s" % (size // 4, f), raw))
        outs[o["name"]] = (o["datatype"], o["shape"], vals)
    if at != len(body):
        raise ValueError("%d bytes after the outputs" % (len(body) - at))
    return doc, outs


def f32(vals):
    """Values as the FP32 numbers they are (JSON text read as doubles, binary FP32 data)."""
    return list(struct.unpack("<%df" % len(vals), struct.pack("<%df" % len(vals), *vals)))


def rows(vals, k):
    return [vals[i * k:(i + 1) * k] for i in range(len(vals) // k)]


def max_diff(a, b):
    return max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))


def is_json_error(body):
    try:
        d = json.loads(body)
        return isinstance(d, dict) and isinstance(d.get("error"), str) and d["error"] != ""
    except ValueError:
        return False


def infer(c, model, body, headers=None, version=None):
    path = "/v2/models/%s%s/infer" % (model, "/versions/%s" % version if version else "")
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    return c.request("POST", path, body, h)


# ---- api: the inference forms agree with each other and with kiln predict ----

def cmd_api(port, model, pred_csv):
    c = Client(port)
    xs = samples(16, 77)  # the samples of x.csv
    p_want, l_want, n_want = read_predictions(pred_csv)
    st, h, body = infer(c, model, infer_body(xs))
    check("JSON FP32 flat infer answers 200", st == 200, body[:300])
    if st != 200:
        return
    doc, outs = decode(h, body)
    check("the answer names the model and version",
          doc.get("model_name") == model and doc.get("model_version") == "1", doc)
    check("probabilities are FP32 [16, 4], label INT32 [16], label_name BYTES [16]",
          outs["probabilities"][:2] == ("FP32", [16, CLASSES])
          and outs["label"][:2] == ("INT32", [16]) and outs["label_name"][:2] == ("BYTES", [16]),
          {k: v[:2] for k, v in outs.items()})
    probs = rows(outs["probabilities"][2], CLASSES)
    check("probabilities equal kiln predict's within 1e-6", max_diff(probs, p_want) <= 1e-6,
          max_diff(probs, p_want))
    check("labels equal kiln predict's", outs["label"][2] == l_want, (outs["label"][2], l_want))
    check("label names equal kiln predict's (quotes, backslash, UTF-8 intact)",
          outs["label_name"][2] == n_want, (outs["label_name"][2], n_want))
    check("labels are the argmax", all(r.index(max(r)) == l for r, l in zip(probs, l_want)))

    def same(what, body, headers=None):
        st, h, b = infer(c, model, body, headers)
        if not check(what + ": 200", st == 200, b[:300]):
            return None
        d, o = decode(h, b)
        check(what + ": the same answer as flat FP32 JSON",
              f32(o["probabilities"][2]) == f32(outs["probabilities"][2])
              and o["label"][2] == outs["label"][2] and o["label_name"][2] == outs["label_name"][2],
              max_diff(rows(o["probabilities"][2], CLASSES), probs))
        return d, o

    same("nested data [16, 784]", infer_body(xs, nested=True))
    same("nested data [16, 28, 28]", infer_body(xs, shape=[16, 28, 28], nested=True))
    same("flat data with shape [16, 28, 28]", infer_body(xs, shape=[16, 28, 28]))
    same("FP64 data", infer_body(xs, dtype="FP64"))
    same("FP32 text with exponents", (
        '{"inputs":[{"name":"input","shape":[16,%d],"datatype":"FP32","data":[%s]}]}'
        % (FEATURES, ",".join("%.6e" % v for x in xs for v in x))).encode())
    # Integers: the same integer samples as INT32, INT64 and FP32 give the same answer.
    rng = random.Random(5)
    ints = [[rng.randint(-2, 2) for _ in range(FEATURES)] for _ in range(3)]
    st, h, b = infer(c, model, infer_body(ints))
    if check("FP32 integer-valued samples: 200", st == 200, b[:300]):
        _, want = decode(h, b)
        for dt in ("INT32", "INT64"):
            for binary in (False, True):
                if binary:
                    body2, hl = binary_body(ints, dtype=dt)
                    st, h, b = infer(c, model, body2, {"Inference-Header-Content-Length": str(hl)})
                else:
                    st, h, b = infer(c, model, infer_body(ints, dtype=dt))
                ok = st == 200 and decode(h, b)[1]["probabilities"][2] == want["probabilities"][2]
                check("%s %s data agrees with FP32" % (dt, "binary" if binary else "JSON"), ok,
                      (st, b[:200]))

    # Binary: inputs and every output.
    body2, hl = binary_body(xs, params={"binary_data_output": True})
    st, h, b = infer(c, model, body2, {"Inference-Header-Content-Length": str(hl)})
    if check("binary input, binary_data_output: 200", st == 200, b[:300]):
        check("the answer says its JSON header length",
              "inference-header-content-length" in h, h)
        d, o = decode(h, b)
        check("every output is binary",
              all("binary_data_size" in x.get("parameters", {}) for x in d["outputs"]), d)
        check("binary outputs equal the JSON ones",
              o["probabilities"][2] == f32(outs["probabilities"][2])
              and o["label"][2] == outs["label"][2] and o["label_name"][2] == outs["label_name"][2],
              (o["label_name"][2], outs["label_name"][2]))
        check("binary probabilities equal kiln predict's within 1e-6",
              max_diff(rows(o["probabilities"][2], CLASSES), p_want) <= 1e-6)
    body2, hl = binary_body(xs, dtype="FP64", outputs=[
        {"name": "probabilities", "parameters": {"binary_data": True}}, {"name": "label"}])
    st, h, b = infer(c, model, body2, {"Inference-Header-Content-Length": str(hl)})
    if check("FP64 binary input, binary probabilities only: 200", st == 200, b[:300]):
        d, o = decode(h, b)
        check("probabilities binary, label JSON, label_name left out",
              [x["name"] for x in d["outputs"]] == ["probabilities", "label"]
              and "binary_data_size" in d["outputs"][0].get("parameters", {})
              and "data" in d["outputs"][1], d)
        check("and they agree with JSON", o["label"][2] == outs["label"][2]
              and max_diff(rows(o["probabilities"][2], CLASSES), probs) <= 1e-7)
    # A binary answer to a JSON request.
    same("JSON input, binary outputs", infer_body(xs, params={"binary_data_output": True}))

    # Outputs by name, and the request id.
    st, h, b = infer(c, model, infer_body(xs[:2], outputs=[{"name": "label"}]))
    d = json.loads(b) if st == 200 else {}
    check("outputs [label] answers only label",
          st == 200 and [o["name"] for o in d.get("outputs", [])] == ["label"]
          and d["outputs"][0]["data"] == l_want[:2], b[:300])
    st, h, b = infer(c, model, infer_body(xs[:2], outputs=[{"name": "label_name"},
                                                           {"name": "probabilities"}]))
    d = json.loads(b) if st == 200 else {}
    check("outputs [label_name, probabilities] answers those two",
          st == 200 and sorted(o["name"] for o in d.get("outputs", []))
          == ["label_name", "probabilities"], b[:300])
    rid = 'req-42 "quoted" \\ ü'
    st, h, b = infer(c, model, infer_body(xs[:1], rid=rid))
    check("the request id is echoed", st == 200 and json.loads(b).get("id") == rid, b[:300])
    st, h, b = infer(c, model, infer_body(xs[:1]))
    check("no id in, no id out", st == 200 and "id" not in json.loads(b), b[:300])
    st, h, b = infer(c, model, infer_body(xs[:3]), version="1")
    check("infer on /versions/1 answers the same",
          st == 200 and decode(h, b)[1]["label"][2] == l_want[:3], b[:300])
    # One sample at a time: each equals kiln predict's row.
    worst, labels = 0.0, []
    for i, x in enumerate(xs):
        st, h, b = infer(c, model, infer_body([x]))
        o = decode(h, b)[1] if st == 200 else None
        if o is None:
            worst = math.inf
            break
        worst = max(worst, max_diff([o["probabilities"][2]], [p_want[i]]))
        labels += o["label"][2]
    check("one sample a request: kiln predict's answers (within 1e-6)",
          worst <= 1e-6 and labels == l_want, worst)


# ---- bad: every malformed request gets its 4xx and a JSON error ----

def cmd_bad(port, model):
    c = Client(port)
    x = samples(9, 3)
    good = infer_body(x[:1])

    def expect(what, code, body, headers=None, path=None, method="POST", says=None):
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        try:
            st, _, b = c.request(method, path or "/v2/models/%s/infer" % model, body, h)
        except (OSError, http.client.HTTPException) as e:
            c.close()
            return check("%s: %d with a JSON error" % (what, code), False, repr(e))
        ok = st == code and is_json_error(b) and (says is None or says in json.loads(b)["error"])
        return check("%s: %d with a JSON error" % (what, code), ok, "got %d %r" % (st, b[:200]))

    def doc(shape, data, dtype="FP32", name="input", **more):
        inp = {"name": name, "shape": shape, "datatype": dtype, "data": data}
        inp.update(more)
        return json.dumps({"inputs": [inp]}).encode()

    expect("malformed JSON", 400, b'{"inputs": [{"name": "input", "shape": [1,')
    expect("malformed JSON after valid data", 400, good[:-1] + b",}")
    expect("an empty body", 400, b"")
    expect("a JSON array, not an object", 400, b"[1, 2, 3]")
    expect("no inputs", 400, b'{"outputs": []}')
    expect("inputs empty", 400, b'{"inputs": []}')
    expect("inputs an object", 400, b'{"inputs": {"name": "input"}}')
    expect("17 inputs", 400, json.dumps({"inputs": [json.loads(doc([1, 784], x[0]))["inputs"][0]]
                                         * 17}).encode())
    expect("two inputs", 400, json.dumps({"inputs": [json.loads(doc([1, 784], x[0]))["inputs"][0]]
                                          * 2}).encode())
    expect("datatype FP16", 400, doc([1, 784], x[0], dtype="FP16"))
    expect("datatype BYTES", 400, doc([1, 784], x[0], dtype="BYTES"))
    expect("no datatype", 400, json.dumps({"inputs": [{"name": "input", "shape": [1, 784],
                                                       "data": x[0]}]}).encode())
    expect("a wrong input name", 400, doc([1, 784], x[0], name="pixels"))
    expect("shape [2, 784] with 784 values", 400, doc([2, 784], x[0]))
    expect("shape [1, 784] with 1568 values", 400, doc([1, 784], x[0] + x[1]))
    expect("shape [1, 783] with 783 values", 400, doc([1, 783], x[0][:783]))
    expect("shape [1, 785] with 785 values", 400, doc([1, 785], x[0] + [0.0]))
    expect("a negative dimension [-1, 784]", 400, doc([-1, 784], x[0]))
    expect("shape [1, -784]", 400, doc([1, -784], x[0]))
    expect("huge dimensions [1000000000, 1000000000]", 400,
           doc([1000000000, 1000000000], x[0]))
    expect("dimensions whose product overflows", 400,
           doc([2 ** 62, 2 ** 62, 16], x[0]))
    expect("shape [1e9, 784] (a float dimension)", 400, doc([1e9, 784], x[0]))
    expect("a rank 1 shape [784]", 400, doc([784], x[0]))
    expect("9 dimensions", 400, doc([1] * 8 + [784], x[0]))
    expect("zero samples [0, 784]", 400, doc([0, 784], []))
    expect("a string in the data", 400, doc([1, 784], ["NaN"] + x[0][1:]))

    def first_is(token, dtype="FP32"):
        """A [1, 784] request whose first value is the raw JSON text token."""
        return ('{"inputs": [{"name": "input", "shape": [1, 784], "datatype": "%s", "data": [%s,%s]}]}'
                % (dtype, token, ",".join(repr(v) for v in x[0][1:]))).encode()

    check("the first_is helper makes a good request", infer(c, model, first_is("0.5"))[0] == 200)
    expect("a NaN literal in the JSON", 400, first_is("NaN"))
    expect("a nan literal in the JSON", 400, first_is("nan"))
    expect("an Infinity literal", 400, first_is("Infinity"))
    expect("-inf", 400, first_is("-inf"))
    expect("1e999 (infinite as FP32)", 400, first_is("1e999"), says="infinite")
    expect("1e39 (infinite as FP32, finite as FP64)", 400, first_is("1e39"), says="infinite")
    expect("1e309 as FP64", 400, first_is("1e309", "FP64"), says="infinite")
    expect("hex 0x10", 400, first_is("0x10"))
    expect("a leading +", 400, first_is("+1"))
    expect("true", 400, first_is("true"))
    expect("null", 400, first_is("null"))
    expect("an empty element", 400, first_is(""))
    expect("data nested 100000 deep", 400,
           b'{"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32", "data": '
           + b"[" * 100000 + b"]" * 100000 + b"}]}")
    expect("a document nested 100000 deep", 400,
           b'{"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32", "data": [1], '
           b'"x": ' + b"[" * 100000 + b"]" * 100000 + b"}]}")
    expect("an INT32 value out of range", 400,
           doc([1, 784], [2 ** 31] + [0] * 783, dtype="INT32"))
    expect("a fraction in INT32 data", 400, doc([1, 784], [0.5] + [0] * 783, dtype="INT32"))
    expect("id a number", 400, json.dumps({"id": 7, "inputs": json.loads(good)["inputs"]})
           .encode())
    expect("duplicate keys", 400, good.replace(b'"datatype": "FP32"',
                                               b'"datatype": "FP32", "datatype": "FP32"'))
    expect("parameters not an object", 400, infer_body(x[:1])[:-1] + b', "parameters": 3}')
    expect("outputs not an array", 400, infer_body(x[:1])[:-1] + b', "outputs": {"a": 1}}')
    expect("a batch of 9 over max_batch_size 8", 400, infer_body(x[:9]), says="max_batch_size")
    check("a batch of 8 is fine", infer(c, model, infer_body(x[:8]))[0] == 200)
    expect("an unknown output name", 400, infer_body(x[:1], outputs=[{"name": "logits"}]))
    expect("an output without a name", 400, infer_body(x[:1], outputs=[{"binary_data": True}]))
    expect("an unknown model", 404, good, path="/v2/models/nope/infer")
    expect("an unknown version", 404, good, path="/v2/models/%s/versions/7/infer" % model)
    expect("version 0", 404, good, path="/v2/models/%s/versions/0/infer" % model)
    expect("version 'abc'", 404, good, path="/v2/models/%s/versions/abc/infer" % model)
    expect("version 99999999999999999999 (overflows)", 404, good,
           path="/v2/models/%s/versions/99999999999999999999/infer" % model)
    expect("GET on /infer", 405, None, path="/v2/models/%s/infer" % model, method="GET")
    expect("PUT on /infer", 405, good, path="/v2/models/%s/infer" % model, method="PUT")
    expect("POST on /v2/health/live", 405, b"{}", path="/v2/health/live")
    expect("DELETE on /v2/models/m", 405, None, path="/v2/models/%s" % model, method="DELETE")
    expect("an unknown route /v3", 404, None, path="/v3", method="GET")
    expect("an unknown route /v2/models/m/bogus", 404, None,
           path="/v2/models/%s/bogus" % model, method="GET")
    expect("a path of 600 bytes", 404, None, path="/v2/" + "a" * 600, method="GET")
    expect("a path of 20 segments", 404, None, path="/v2" + "/a" * 20, method="GET")

    # The binary extension.
    nan = list(x[0])
    nan[100] = float("nan")
    body, hl = binary_body([nan])
    expect("NaN in binary data", 400, body, {"Inference-Header-Content-Length": str(hl)},
           says="NaN")
    inf = list(x[0])
    inf[5] = float("-inf")
    body, hl = binary_body([inf], dtype="FP64")
    expect("-Inf in FP64 binary data", 400, body, {"Inference-Header-Content-Length": str(hl)},
           says="infinite")
    body, hl = binary_body([x[0]])
    expect("a truncated binary payload", 400, body[:hl + 1000],
           {"Inference-Header-Content-Length": str(hl)})
    expect("binary bytes left over", 400, body + b"\0" * 8,
           {"Inference-Header-Content-Length": str(hl)})
    expect("Inference-Header-Content-Length larger than the body", 400, body,
           {"Inference-Header-Content-Length": str(len(body) + 1)})
    expect("Inference-Header-Content-Length not a number", 400, body,
           {"Inference-Header-Content-Length": "12abc"})
    expect("Inference-Header-Content-Length negative", 400, body,
           {"Inference-Header-Content-Length": "-5"})
    expect("Inference-Header-Content-Length 0", 400, body,
           {"Inference-Header-Content-Length": "0"})
    big = body.replace(b'"binary_data_size": %d' % (784 * 4), b'"binary_data_size": 4000000000')
    expect("binary_data_size over the body", 400, big,
           {"Inference-Header-Content-Length": str(hl + len(big) - len(body))})
    neg = body.replace(b'"binary_data_size": %d' % (784 * 4), b'"binary_data_size": -3136')
    expect("binary_data_size negative", 400, neg,
           {"Inference-Header-Content-Length": str(hl + 1)})
    huge, hl2 = binary_body([x[0]], shape=[1000000000, 1000000000])
    expect("huge dimensions with binary data", 400, huge,
           {"Inference-Header-Content-Length": str(hl2)})
    both = body[:hl].replace(b'"parameters"', b'"data": [1], "parameters"')
    expect("both data and binary_data_size", 400, both + body[hl:],
           {"Inference-Header-Content-Length": str(len(both))})

    st, _, b = infer(c, model, good)
    check("after all of that a good request answers 200", st == 200, b[:200])


# ---- raw: clients that misbehave at the socket level ----

def connect(port):
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def read_all(s, limit):
    """Everything until the server closes, or limit seconds: (bytes, closed)."""
    data, end = b"", time.time() + limit
    while time.time() < end:
        s.settimeout(max(0.05, end - time.time()))
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


def cmd_raw(port, model, timeout):
    good = infer_body(samples(1, 9))
    c = Client(port, timeout=5)

    def good_request():
        t = time.time()
        try:
            st, _, _ = infer(c, model, good)
        except (OSError, http.client.HTTPException):
            c.close()
            st = -1
        return st, time.time() - t

    # A slow client: half the headers, then nothing.
    slow = connect(port)
    slow.sendall(b"POST /v2/models/%s/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty"
                 % model.encode())
    t_sent = time.time()
    answers = [good_request() for _ in range(5)]
    check("while a client stalls mid-headers, others get 200 at once",
          all(st == 200 and dt < 2 for st, dt in answers), answers)
    _, closed = read_all(slow, timeout + 6 - (time.time() - t_sent))
    waited = time.time() - t_sent
    check("the stalled client is dropped after --timeout %d s (%.1f s)" % (timeout, waited),
          closed and waited >= timeout - 0.5, (closed, waited))
    slow.close()
    # Many slow clients at once (fewer than the connection limit).
    slows = []
    for _ in range(50):
        s = connect(port)
        s.sendall(b"GET /v2/health/live HTTP/1.1\r\n")
        slows.append(s)
    answers = [good_request() for _ in range(3)]
    check("with 50 stalled clients, others still get 200 at once",
          all(st == 200 and dt < 2 for st, dt in answers), answers)
    for s in slows:
        s.close()

    # Connect and close at once, many times; and close with a request half sent.
    for _ in range(30):
        connect(port).close()
    for _ in range(10):
        s = connect(port)
        s.sendall(b"POST /v2/models/%s/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                  % (model.encode(), len(good)) + good[:100])
        s.close()
    # Requests whose client leaves before the answer (the connection is suspended meanwhile).
    for _ in range(20):
        s = connect(port)
        s.sendall(b"POST /v2/models/%s/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                  % (model.encode(), len(good)) + good)
        s.shutdown(socket.SHUT_RDWR)
        s.close()
    st, dt = good_request()
    check("after 30 clients that closed at once, 10 that left mid-body and 20 that left "
          "before the answer: 200", st == 200, st)

    # Pipelining: three requests in one write, answered in order on the one connection.
    s = connect(port)
    s.sendall(b"".join(
        b"POST /v2/models/%s/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % (model.encode(), len(b)) + b
        for b in (infer_body(samples(1, 9), rid="p%d" % k) for k in range(3))))
    data, closed = read_all(s, 3)
    s.close()
    ids = [data.find(b'"id":"p%d"' % k) for k in range(3)]
    check("three pipelined requests get three 200s, in order",
          data.count(b"HTTP/1.1 200 ") == 3 and -1 not in ids and ids == sorted(ids),
          (data.count(b"HTTP/1.1 200 "), ids, data[:200]))

    keepalive_and_continue(port, model, good)

    # Garbage.
    rng = random.Random(200)
    s = connect(port)
    s.sendall(bytes(rng.randrange(256) for _ in range(200)))
    data, closed = read_all(s, timeout + 4)
    s.close()
    check("200 garbage bytes: answered 4xx or dropped, not left hanging",
          closed and (data == b"" or data[9:10] == b"4"), (closed, data[:80]))
    s = connect(port)
    s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(189))  # a TLS hello
    data, closed = read_all(s, timeout + 4)
    s.close()
    check("a TLS client hello: answered 4xx or dropped", closed and (data == b""
                                                                    or data[9:10] == b"4"),
          (closed, data[:80]))
    s = connect(port)
    s.sendall(b"GARBAGE / HTTP/9.9\r\n\r\n")
    data, closed = read_all(s, timeout + 4)
    s.close()
    check("an unknown method and HTTP version: a 4xx/5xx answer or dropped",
          data == b"" or data[9:10] in (b"4", b"5"), data[:80])
    # A Content-Length over the limit is refused without waiting for the body.
    s = connect(port)
    s.sendall(b"POST /v2/models/%s/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n"
              % model.encode())
    data, closed = read_all(s, 3)
    s.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    check("a Content-Length over --max-body-mb is answered 413 before the body is sent",
          head.startswith(b"HTTP/1.1 413") and is_json_error(rest), data[:200])
    s = connect(port)
    s.sendall(b"POST /v2/models/%s/infer HTTP/1.1\r\nHost: x\r\n"
              b"Content-Length: 99999999999999999999999\r\n\r\n" % model.encode())
    data, closed = read_all(s, 3)
    s.close()
    check("an overflowing Content-Length: a 4xx answer or dropped",
          data == b"" or data[9:10] == b"4", data[:200])
    st, dt = good_request()
    check("after the raw clients a good request answers 200", st == 200, st)
    query_and_coding(port, model, good)


def read_answer(s, limit=5):
    """One answer with a Content-Length from s: (status, body), (None, what came) on a timeout or
    a close."""
    data, end = b"", time.time() + limit
    while time.time() < end:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if sep:
            n = 0
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    n = int(v)
            if len(rest) >= n:
                return int(head[9:12]), rest[:n]
        s.settimeout(max(0.05, end - time.time()))
        try:
            chunk = s.recv(65536)
        except (socket.timeout, ConnectionResetError):
            break
        if not chunk:
            break
        data += chunk
    return None, data


def keepalive_and_continue(port, model, good):
    """Keep-alive (requests one after another on one connection, each answered before the
    next is sent, the connection left open) and Expect: 100-continue (the interim 100 before
    the body, then the answer), as HTTP/1.1 clients rely on."""
    head = (b"POST /v2/models/%s/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n" % (model.encode(), len(good)))
    s = connect(port)
    answers = []
    for _ in range(5):
        s.sendall(head + b"\r\n" + good)
        answers.append(read_answer(s))
    s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
    answers.append(read_answer(s))
    s.close()
    check("keep-alive: five inferences then a health check on one connection, all 200",
          [a[0] for a in answers] == [200] * 6 and b'"outputs"' in answers[0][1],
          [(a[0], a[1][:80]) for a in answers])
    s = connect(port)
    s.sendall(head + b"Expect: 100-continue\r\n\r\n")
    interim, _ = read_answer(s, 3)
    s.sendall(good)
    status, body = read_answer(s)
    # The same again on the same connection: the interim answer did not end it.
    s.sendall(head + b"Expect: 100-continue\r\n\r\n")
    interim2, _ = read_answer(s, 3)
    s.sendall(good)
    status2, body2 = read_answer(s)
    s.close()
    check("Expect: 100-continue: 100 before the body, then 200, twice on one connection",
          (interim, status, interim2, status2) == (100, 200, 100, 200) and body == body2,
          (interim, status, interim2, status2, body[:80]))
    # A client that sends the body without waiting for the 100 is answered too.
    s = connect(port)
    s.sendall(head + b"Expect: 100-continue\r\n\r\n" + good)
    data, _ = read_all(s, 2)
    s.close()
    check("Expect: 100-continue with the body sent at once: one 200",
          data.count(b"HTTP/1.1 200 ") == 1 and b'"outputs"' in data, data[:200])


def exchange(port, data, limit=5):
    """Sends data on a new connection and reads until the server closes or limit seconds:
    (status or None, body, closed, seconds to the whole answer)."""
    s = connect(port)
    t = time.time()
    s.sendall(data)
    got, closed = read_all(s, limit)
    s.close()
    head, _, body = got.partition(b"\r\n\r\n")
    status = int(head[9:12]) if head.startswith(b"HTTP/1.1 ") else None
    return status, body, closed, time.time() - t


def query_and_coding(port, model, good):
    """Long queries and transfer codings kiln cannot read: a 4xx at once, not a connection held
    until a timeout."""
    def expect(what, data, code, close):
        st, body, closed, took = exchange(port, data)
        ok = st == code and is_json_error(body[:body.rfind(b"}") + 1]) and took < 1.5
        check("%s: %d with a JSON error at once%s (%.2f s)" % (
            what, code, ", then closed" if close else "", took),
              ok and (closed or not close), (st, body[:200], closed))

    def get(query):
        return b"GET /v2/health/live?%s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % query

    many = b"&".join(b"a%d=%d" % (i, i) for i in range(500))
    expect("500 query parameters", get(many), 414, False)
    expect("3000 empty query parameters", get(b"&" * 3000), 414, False)
    expect("65 query parameters", get(b"&".join(b"p%d=1" % i for i in range(65))), 414, False)
    expect("500 query parameters on infer", b"POST /v2/models/%s/infer?%s HTTP/1.1\r\nHost: x\r\n"
           b"Content-Length: %d\r\n\r\n" % (model.encode(), many, len(good)) + good, 414, True)
    st, _, _, _ = exchange(port, get(b"&".join(b"p%d=1" % i for i in range(64))))
    check("64 query parameters are let through (and ignored): 200", st == 200, st)

    def post(headers, body):
        return (b"POST /v2/models/%s/infer HTTP/1.1\r\nHost: x\r\n" % model.encode() +
                headers + b"\r\n" + body)

    def chunked(body):
        return b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)

    expect("Transfer-Encoding: gzip", post(b"Transfer-Encoding: gzip\r\n", good), 400, True)
    expect("Transfer-Encoding: gzip, chunked",
           post(b"Transfer-Encoding: gzip, chunked\r\n", chunked(good)), 400, True)
    expect("Transfer-Encoding: identity",
           post(b"Transfer-Encoding: identity\r\nContent-Length: %d\r\n" % len(good), good),
           400, True)
    expect("two Transfer-Encoding headers",
           post(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n", chunked(good)),
           400, True)
    expect("Transfer-Encoding: chunked with a Content-Length",
           post(b"Transfer-Encoding: chunked\r\nContent-Length: %d\r\n" % len(good),
                chunked(good)), 400, True)
    st, _, _, _ = exchange(port, post(b"Transfer-Encoding: Chunked\r\nConnection: close\r\n",
                                      chunked(good)))
    check("Transfer-Encoding: Chunked (the coding's name in any case): 200", st == 200, st)


# ---- load: many clients, dynamic batching ----

def parallel(n_threads, work):
    """Runs work(thread index) on n_threads threads; returns their results."""
    out = [None] * n_threads

    def run(i):
        try:
            out[i] = work(i)
        except Exception as e:  # the check below reports it
            out[i] = e

    ts = [threading.Thread(target=run, args=(i,)) for i in range(n_threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    return out


def stats(port, model):
    st, _, b = Client(port).request("GET", "/v2/models/%s/stats" % model)
    return json.loads(b)["model_stats"][0] if st == 200 else None


def cmd_load(port, model, mode):
    pool = samples(48, 21)
    c = Client(port)
    want = []
    for x in pool:  # one at a time: each its own model call
        st, h, b = infer(c, model, infer_body([x]))
        if st != 200:
            check("the unbatched answer for a sample", False, b[:200])
            return
        o = decode(h, b)[1]
        want.append((o["probabilities"][2], o["label"][2][0], o["label_name"][2][0]))
    base = stats(port, model)
    threads, per = 32, 25
    rng = random.Random(4)
    # Each request: 1 sample when unbatched, else 1 to 3 samples from the pool.
    plan = [[[rng.randrange(len(pool)) for _ in range(1 if mode == "unbatched" or
                                                      rng.random() < 0.5 else rng.randint(2, 3))]
             for _ in range(per)] for _ in range(threads)]

    def work(i):
        cl, res = Client(port, retry=False), []
        for idx in plan[i]:
            st, h, b = infer(cl, model, infer_body([pool[k] for k in idx], rid="%d" % i))
            res.append((idx, st, h, b))
        cl.close()
        return res

    t0 = time.time()
    results = parallel(threads, work)
    took = time.time() - t0
    errors = [r for r in results if isinstance(r, Exception)]
    check("%d threads x %d requests finished (%.1f s)" % (threads, per, took), not errors, errors)
    if errors:
        return
    flat = [r for rs in results for r in rs]
    codes = sorted(set(st for _, st, _, _ in flat))
    check("every request answered 200", codes == [200], codes)
    worst, wrong = 0.0, 0
    for idx, st, h, b in flat:
        if st != 200:
            continue
        o = decode(h, b)[1]
        p = rows(o["probabilities"][2], CLASSES)
        for r, k in enumerate(idx):
            worst = max(worst, max_diff([p[r]], [want[k][0]]))
            wrong += o["label"][2][r] != want[k][1] or o["label_name"][2][r] != want[k][2]
    check("every answer equals the unbatched answer for its samples (within 1e-6, labels "
          "exact; worst %.2g)" % worst, worst <= 1e-6 and wrong == 0, (worst, wrong))
    ids = all(json.loads(b[:int(h.get("inference-header-content-length", len(b)))])
              .get("id") == "%d" % i for i, rs in enumerate(results) for _, _, h, b in rs)
    check("every answer carries its own request's id", ids)
    s = stats(port, model)
    sent = sum(len(idx) for idx, _, _, _ in flat)
    inf, ex = s["inference_count"] - base["inference_count"], \
        s["execution_count"] - base["execution_count"]
    print("   stats: %d samples in %d requests, %d model calls, batch sizes %s" % (
        inf, len(flat), ex, [(x["batch_size"], x["compute_infer"]["count"])
                             for x in s["batch_stats"]]))
    check("inference_count counts the samples", inf == sent, (inf, sent))
    check("success counts the requests",
          s["inference_stats"]["success"]["count"] - base["inference_stats"]["success"]["count"]
          == len(flat), s["inference_stats"]["success"])
    check("batch_stats add up to execution_count and inference_count",
          sum(x["compute_infer"]["count"] for x in s["batch_stats"]) == s["execution_count"]
          and sum(x["batch_size"] * x["compute_infer"]["count"] for x in s["batch_stats"])
          == s["inference_count"], s["batch_stats"])
    if mode == "batched":
        # Requests carry up to 3 samples: fewer model calls than requests, and a batch of more
        # than 3, show that requests were combined.
        check("batches formed: execution_count < inference_count, and < requests",
              ex < inf and ex < len(flat), (ex, inf, len(flat)))
        check("some batch combines requests (more than 3 samples)",
              any(x["batch_size"] > 3 for x in s["batch_stats"]), s["batch_stats"])
    else:
        check("without batching every model call is one request's sample",
              [x["batch_size"] for x in s["batch_stats"]] == [1] and ex == inf, s["batch_stats"])


def cmd_burst(port, model):
    """A server with --max-queue 1 and a long batching delay: the first request waits in the
    queue for the delay, so a burst finds the queue full."""
    body = infer_body(samples(1, 8))

    def work(i):
        cl = Client(port)
        st, h, b = infer(cl, model, body)
        cl.close()
        return st, b

    base = stats(port, model)
    results = parallel(16, work)
    errors = [r for r in results if isinstance(r, Exception)]
    check("16 concurrent requests against --max-queue 1 all answered", not errors, errors)
    if errors:
        return
    codes = [st for st, _ in results]
    n503 = codes.count(503)
    print("   codes: %s" % sorted(codes))
    check("some requests are turned away with 503", n503 >= 1, codes)
    check("some are answered 200", codes.count(200) >= 1, codes)
    check("no other status", set(codes) <= {200, 503}, codes)
    check("every 503 carries a JSON error",
          all(is_json_error(b) for st, b in results if st == 503))
    s = stats(port, model)
    check("the stats count the 503s as failures",
          s["inference_stats"]["fail"]["count"] - base["inference_stats"]["fail"]["count"]
          == n503, s["inference_stats"]["fail"])
    st, _, b = infer(Client(port), model, body)
    check("after the burst a request answers 200", st == 200, b[:200])


# ---- term: SIGTERM with requests in flight ----

def cmd_term(port, model, pid):
    """The server batches with a long delay, so requests sit in its queue when TERM comes."""
    body = infer_body(samples(2, 6))

    def work(i):
        time.sleep(0.05 * i)
        cl = Client(port, timeout=60)
        st, h, b = infer(cl, model, body)
        return st, b

    out = [None] * 4
    ts = [threading.Thread(target=lambda i=i: out.__setitem__(i, work(i))) for i in range(4)]
    for t in ts:
        t.start()
    # An idle kept-alive connection and one stalled mid-headers must not hold the exit up.
    idle = Client(port)
    st, _, _ = idle.request("GET", "/v2/health/live")
    check("an idle kept-alive connection is open", st == 200)
    stalled = connect(port)
    stalled.sendall(b"GET /v2/health/live HTTP/1.1\r\nHo")
    check("the 4 requests wait in the queue for their batch",
          wait_for(lambda: metric(port, "kiln_queue_depth", model=model) == 4, 10),
          metric(port, "kiln_queue_depth", model=model))
    t0 = time.time()
    os.kill(pid, signal.SIGTERM)

    def refused():
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
            s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            data, closed = read_all(s, 2)
            s.close()
            return data == b""
        except (ConnectionRefusedError, ConnectionResetError):
            return True
    check("after SIGTERM new connections are refused (or dropped unanswered)",
          wait_for(refused, 2))
    for t in ts:
        t.join(60)
    check("the 4 requests in flight at SIGTERM are answered 200 (%.1f s after it)"
          % (time.time() - t0), all(o is not None and o[0] == 200 for o in out),
          [o and o[0] for o in out])
    check("with their outputs", all(o and o[0] == 200 and "probabilities" in
                                     decode({}, o[1])[1] for o in out))
    idle.close()
    stalled.close()


# ---- unload and churn: versions leave while requests hold them ----

def cmd_unload(port, model, token):
    """model batches with a long delay, so requests wait in its queue when it is unloaded."""
    body = infer_body(samples(1, 6))
    out = [None] * 3

    def work(i):
        try:
            st, h, b = infer(Client(port, timeout=60, retry=False), model, body)
            out[i] = (st, json.loads(b).get("model_version") if st == 200 else b[:200])
        except (OSError, http.client.HTTPException) as e:
            out[i] = (-1, repr(e))

    ts = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in ts:
        t.start()
    check("the 3 requests wait in the queue for their batch",
          wait_for(lambda: metric(port, "kiln_queue_depth", model=model) == 3, 10),
          metric(port, "kiln_queue_depth", model=model))
    c = Client(port)
    st, _, b = c.request("POST", "/v2/repository/models/%s/unload" % model, b"",
                         {"Authorization": "Bearer " + token})
    check("unload with 3 requests in flight answers 200", st == 200, b[:200])
    st, _, _ = c.request("GET", "/v2/models/%s" % model)
    check("the model is gone at once (404)", st == 404, st)
    busy = [t.is_alive() for t in ts]
    for t in ts:
        t.join(60)
    check("the requests were still in flight at the unload", all(busy), busy)
    check("and are answered 200 by the unloaded version", out == [(200, "1")] * 3, out)


def cmd_churn(port, model):
    """Inference from 4 threads while a fifth unloads and loads the model 15 times."""
    body = infer_body(samples(1, 6))
    stop = time.time() + 60
    done = [False]
    codes = {}
    lock = threading.Lock()

    def infer_loop(i):
        cl = Client(port, retry=False)
        while not done[0] and time.time() < stop:
            try:
                st, _, b = infer(cl, model, body)
                st = st if st == 200 or is_json_error(b) else "%d without a JSON error" % st
            except (OSError, http.client.HTTPException) as e:
                cl.close()
                st = repr(e)
            with lock:
                codes[st] = codes.get(st, 0) + 1

    admin = []

    def churn():
        cl = Client(port, retry=False)
        for k in range(15):
            for action in ("unload", "load"):
                st, _, b = cl.request("POST", "/v2/repository/models/%s/%s" % (model, action), b"")
                admin.append((action, st))
            time.sleep(0.02)
        done[0] = True

    ts = [threading.Thread(target=infer_loop, args=(i,)) for i in range(4)]
    ts.append(threading.Thread(target=churn))
    for t in ts:
        t.start()
    for t in ts:
        t.join(90)
    print("   codes while churning: %s" % codes)
    check("every unload and load answered 200", all(st == 200 for _, st in admin), admin)
    check("requests meanwhile got 200, or 404/503 with a JSON error",
          set(codes) <= {200, 404, 503} and codes.get(200, 0) > 0, codes)
    st, _, b = infer(Client(port), model, body)
    check("after the churn the model answers 200", st == 200, b[:200])


def cmd_index(port, seconds):
    """4 threads read the repository index for SECONDS while the poll rewrites it."""
    stop = time.time() + seconds
    codes = {}
    lock = threading.Lock()

    def work(i):
        cl = Client(port, retry=False)
        while time.time() < stop:
            try:
                st, _, b = cl.request("POST", "/v2/repository/index", b"")
                st = st if st != 200 or isinstance(json.loads(b), list) else "200 not a list"
            except (OSError, http.client.HTTPException, ValueError) as e:
                cl.close()
                st = repr(e)[:60]
            with lock:
                codes[st] = codes.get(st, 0) + 1
            if st != 200:
                break  # a server that went away refuses every later try

    for r in parallel(4, work):
        if isinstance(r, Exception):
            codes[repr(r)[:60]] = 1
    print("   index answers: %s" % codes)
    check("the index, read while the poll runs, always answers 200",
          list(codes) == [200] and codes[200] > 10, codes)


def cmd_stall(port, model, seconds):
    """Holds a connection with its headers sent and its body cut short."""
    s = connect(port)
    s.sendall(b"POST /v2/models/%s/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n"
              % model.encode() + b"{" * 100)
    print("stalled")
    sys.stdout.flush()
    time.sleep(seconds)
    s.close()


# ---- hammer: a client that never stops, while the repository changes ----

def cmd_hammer(port, model, out_path, stop_path):
    x = samples(1, 31)
    body = infer_body(x)
    lock = threading.Lock()
    summary = {"requests": 0, "codes": {}, "versions": {}, "errors": [], "answers": {},
               "last_version": None}
    deadline = time.time() + 120

    def work(i):
        cl = Client(port, retry=False)
        while not os.path.exists(stop_path) and time.time() < deadline:
            try:
                st, h, b = infer(cl, model, body)
            except (OSError, http.client.HTTPException) as e:
                cl.close()
                with lock:
                    summary["exceptions"] = summary.get("exceptions", 0) + 1
                    if len(summary["errors"]) < 20:
                        summary["errors"].append(repr(e))
                continue
            with lock:
                summary["requests"] += 1
                summary["codes"][str(st)] = summary["codes"].get(str(st), 0) + 1
                if st == 200:
                    d, o = decode(h, b)
                    v = d["model_version"]
                    summary["versions"][v] = summary["versions"].get(v, 0) + 1
                    summary["answers"][v] = o["probabilities"][2]
                    summary["last_version"] = v
                elif len(summary["errors"]) < 20:
                    summary["errors"].append("%d %s" % (st, b[:200]))
            # What the shell script waits on: the versions seen so far.
            if i == 0:
                with lock:
                    tmp = out_path + ".tmp"
                    with open(tmp, "w") as f:
                        json.dump(summary, f)
                    os.replace(tmp, out_path)
        cl.close()

    ts = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    summary["done"] = True
    with open(out_path + ".tmp", "w") as f:
        json.dump(summary, f)
    os.replace(out_path + ".tmp", out_path)


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "data":
        write_data(args[0], int(args[1]))
        return
    if cmd == "csv":  # client.py csv N SEED OUT: samples(N, SEED) as a CSV without labels
        with open(args[2], "w") as f:
            f.write(",".join("px%d" % i for i in range(FEATURES)) + "\n")
            for x in samples(int(args[0]), int(args[1])):
                f.write(",".join("%.9g" % v for v in x) + "\n")
        return
    port = int(args[0])
    if cmd == "api":
        cmd_api(port, args[1], args[2])
    elif cmd == "bad":
        cmd_bad(port, args[1])
    elif cmd == "raw":
        cmd_raw(port, args[1], int(args[2]))
    elif cmd == "load":
        cmd_load(port, args[1], args[2])
    elif cmd == "burst":
        cmd_burst(port, args[1])
    elif cmd == "term":
        cmd_term(port, args[1], int(args[2]))
    elif cmd == "unload":
        cmd_unload(port, args[1], args[2])
    elif cmd == "churn":
        cmd_churn(port, args[1])
    elif cmd == "index":
        cmd_index(port, float(args[1]))
    elif cmd == "stall":
        cmd_stall(port, args[1], float(args[2]))
        return
    elif cmd == "hammer":
        cmd_hammer(port, args[1], args[2], args[3])
        return
    else:
        print(__doc__)
        sys.exit(2)
    finish()


if __name__ == "__main__":
    main()
