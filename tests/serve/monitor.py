"""Checks of kiln serve's monitoring for tests/serve/test_monitor.sh (stdlib only, run with
/usr/bin/python3): a strict parser of the Prometheus text exposition format (0.0.4), the metrics
moving by exact counts as requests are sent, the access log, and input and prediction drift.
Each subcommand prints "ok: ..." or "FAILED: ..." per check and exits 1 when any failed.

usage: monitor.py data DIR                    train.csv and test.csv for the test classifier
       monitor.py parse FILE                  parse a /metrics answer saved in FILE
       monitor.py metrics PORT MODEL LOG SLOW counters, histograms, gauges, the access log
                                              (SLOW: a model with a 1.5 s queue delay)
       monitor.py drift PORT MODEL            drift stays low on training-like inputs, rises
                                              on shifted ones
       monitor.py query PROM_PORT METRIC      the Prometheus server's query API has kiln's
                                              series (exit 0), or not yet (exit 1)
"""
import calendar
import http.client
import json
import math
import os
import random
import re
import sys
import threading
import time
import urllib.parse

FEATURES = 32
CLASSES = 3
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from client import check, finish, wait_for  # noqa: E402  (test_serve.sh's client: one failure count)


# ---- data: 32 features ~ N(0, 1) in steps of 1/256, 3 classes from the first 4 features ----

def sample(rng, shift=0.0):
    return [max(-8.0, min(8.0, round(rng.gauss(0, 1) * 256) / 256)) + shift
            for _ in range(FEATURES)]


def samples(n, seed, shift=0.0):
    rng = random.Random(seed)
    return [sample(rng, shift) for _ in range(n)]


def write_data(d):
    rng = random.Random(1000)
    w = [[rng.uniform(-1, 1) for _ in range(4)] for _ in range(CLASSES)]

    def write(path, xs):
        with open(path, "w") as f:
            f.write(",".join("f%d" % i for i in range(FEATURES)) + ",label\n")
            for x in xs:
                scores = [sum(wk[j] * x[j] for j in range(4)) for wk in w]
                f.write(",".join(repr(v) for v in x) + ",%d\n" % scores.index(max(scores)))

    write(os.path.join(d, "train.csv"), samples(2000, 1))
    write(os.path.join(d, "test.csv"), samples(200, 2))


# ---- the Prometheus text format, strictly ----

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


class FormatError(Exception):
    pass


def parse_value(s):
    if s in ("+Inf", "Inf"):
        return math.inf
    if s == "-Inf":
        return -math.inf
    if s == "NaN":
        return math.nan
    if not re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", s):
        raise FormatError("'%s' is not a sample value" % s)
    return float(s)


def parse_labels(s, i, lineno):
    """Labels from s[i] == '{'; returns (dict, index after '}')."""
    labels = {}
    i += 1
    while True:
        if s[i] == "}":
            return labels, i + 1
        m = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*").match(s, i)
        if not m:
            raise FormatError("line %d: a label name expected at column %d" % (lineno, i + 1))
        name = m.group(0)
        i = m.end()
        if s[i:i + 2] != '="':
            raise FormatError("line %d: '=\"' expected after label %s" % (lineno, name))
        i += 2
        value = []
        while s[i] != '"':
            if s[i] == "\\":
                esc = s[i + 1]
                if esc not in ('\\', '"', 'n'):
                    raise FormatError("line %d: bad escape \\%s" % (lineno, esc))
                value.append("\n" if esc == "n" else esc)
                i += 2
            elif s[i] == "\n":
                raise FormatError("line %d: a raw newline in a label value" % lineno)
            else:
                value.append(s[i])
                i += 1
        i += 1
        if name in labels:
            raise FormatError("line %d: label %s twice" % (lineno, name))
        labels[name] = "".join(value)
        if s[i] == ",":
            i += 1
        elif s[i] != "}":
            raise FormatError("line %d: ',' or '}' expected after a label" % lineno)


def parse(text):
    """Parses an exposition; returns (types, samples) where samples maps (name, sorted label
    items) to the value. Raises FormatError on anything the format does not allow, and on what
    Prometheus's conventions forbid that kiln promises: a counter not named *_total, a family
    split in two, a histogram whose buckets do not add up."""
    if text and not text.endswith("\n"):
        raise FormatError("the last line has no newline")
    types, helps, samples, order = {}, {}, {}, []
    closed = set()  # families another family came after
    current = None

    def family_of(name):
        for suffix in ("_bucket", "_sum", "_count"):
            base = name[:-len(suffix)]
            if name.endswith(suffix) and types.get(base) in ("histogram", "summary"):
                return base
        return name

    def enter(fam, lineno):
        nonlocal current
        if fam != current:
            if fam in closed:
                raise FormatError("line %d: family %s is split in two" % (lineno, fam))
            if current is not None:
                closed.add(current)
            current = fam
            order.append(fam)

    for lineno, line in enumerate(text.split("\n")[:-1], 1):
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                if not NAME.match(name):
                    raise FormatError("line %d: bad metric name %s" % (lineno, name))
                table = helps if parts[1] == "HELP" else types
                if name in table:
                    raise FormatError("line %d: a second %s for %s" % (lineno, parts[1], name))
                if parts[1] == "TYPE":
                    if len(parts) != 4 or parts[3] not in TYPES:
                        raise FormatError("line %d: bad TYPE line" % lineno)
                    if name in samples_names(samples):
                        raise FormatError("line %d: TYPE %s after its samples" % (lineno, name))
                table[name] = parts[3] if len(parts) == 4 else ""
                enter(name, lineno)
            continue
        m = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*").match(line)
        if not m:
            raise FormatError("line %d: no metric name: %s" % (lineno, line))
        name, i = m.group(0), m.end()
        labels = {}
        if i < len(line) and line[i] == "{":
            labels, i = parse_labels(line + "\n", i, lineno)
        rest = line[i:]
        if not rest.startswith(" "):
            raise FormatError("line %d: a space expected before the value" % lineno)
        fields = rest.split()
        if len(fields) not in (1, 2):
            raise FormatError("line %d: value [timestamp] expected: %r" % (lineno, rest))
        value = parse_value(fields[0])
        if len(fields) == 2 and not re.fullmatch(r"-?\d+", fields[1]):
            raise FormatError("line %d: bad timestamp" % lineno)
        fam = family_of(name)
        enter(fam, lineno)
        key = (name, tuple(sorted(labels.items())))
        if key in samples:
            raise FormatError("line %d: series %s%s twice" % (lineno, name, labels))
        samples[key] = value
        t = types.get(fam, "untyped")
        if t == "counter":
            if not name.endswith("_total"):
                raise FormatError("line %d: counter %s does not end in _total" % (lineno, name))
            if not value >= 0:
                raise FormatError("line %d: counter %s is %s" % (lineno, name, value))
        if t == "histogram":
            if name == fam + "_bucket" and "le" not in labels:
                raise FormatError("line %d: a bucket without le" % lineno)
            if name == fam:
                raise FormatError("line %d: histogram sample %s without a suffix" % (lineno, name))
    check_histograms(types, samples)
    return types, samples


def samples_names(samples):
    return {k[0] for k in samples}


def check_histograms(types, samples):
    for fam, t in types.items():
        if t != "histogram":
            continue
        series = {}
        for (name, labels), v in samples.items():
            if name == fam + "_bucket":
                rest = tuple(kv for kv in labels if kv[0] != "le")
                le = dict(labels)["le"]
                series.setdefault(rest, []).append((parse_value(le), v))
        for rest, buckets in series.items():
            buckets.sort()
            if buckets[-1][0] != math.inf:
                raise FormatError("%s%s has no +Inf bucket" % (fam, dict(rest)))
            for (a, x), (b, y) in zip(buckets, buckets[1:]):
                if y < x:
                    raise FormatError("%s%s: bucket le=%s holds less than le=%s" %
                                      (fam, dict(rest), b, a))
            count = samples.get((fam + "_count", rest))
            total = samples.get((fam + "_sum", rest))
            if count is None or total is None:
                raise FormatError("%s%s lacks _sum or _count" % (fam, dict(rest)))
            if count != buckets[-1][1]:
                raise FormatError("%s%s: _count %s but +Inf bucket %s" %
                                  (fam, dict(rest), count, buckets[-1][1]))


# ---- HTTP ----

class Client:
    def __init__(self, port):
        self.port, self.conn = port, None

    def request(self, method, path, body=None, headers=None):
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        self.conn.request(method, path, body=body, headers=headers or {})
        r = self.conn.getresponse()
        data = r.read()
        if r.getheader("Connection", "").lower() == "close":
            self.conn.close()
            self.conn = None
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data


def infer_body(xs, rid=None):
    doc = {"inputs": [{"name": "input", "shape": [len(xs), FEATURES], "datatype": "FP32",
                       "data": [v for x in xs for v in x]}]}
    if rid is not None:
        doc["id"] = rid
    return json.dumps(doc).encode()


def scrape(c):
    status, headers, body = c.request("GET", "/metrics")
    if status != 200:
        raise FormatError("GET /metrics answered %d: %s" % (status, body[:200]))
    ctype = headers.get("content-type", "")
    if not ctype.startswith("text/plain") or "version=0.0.4" not in ctype:
        raise FormatError("GET /metrics has Content-Type %r" % ctype)
    return parse(body.decode("utf-8"))


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0)


# ---- metrics ----

def cmd_metrics(port, model, log_path, slow):
    c = Client(port)
    sent = []  # (method, path, status, request id, bytes in, bytes out) per request

    def send(method, path, body=None, headers=None):
        status, h, data = c.request(method, path, body, headers)
        sent.append((method, path, status, h.get("x-request-id"), len(body or b""), len(data)))
        return status, h, data

    try:
        types0, s0 = scrape(c)
    except FormatError as e:
        check("GET /metrics parses as the Prometheus text format", False, e)
        finish()
    sent.append(("GET", "/metrics", 200, None, 0, None))
    check("GET /metrics parses as the Prometheus text format (%d series)" % len(s0), True)
    want_types = {"kiln_requests_total": "counter", "kiln_inference_request_duration_seconds":
                  "histogram", "kiln_inference_queue_duration_seconds": "histogram",
                  "kiln_inference_compute_duration_seconds": "histogram",
                  "kiln_inference_batch_size": "histogram", "kiln_queue_depth": "gauge",
                  "kiln_instances_busy": "gauge", "kiln_model_load_failures_total": "counter",
                  "kiln_build_info": "gauge", "kiln_uptime_seconds": "gauge",
                  "kiln_input_drift_psi_max": "gauge", "kiln_input_drift_detected": "gauge",
                  "kiln_prediction_drift_psi": "gauge", "kiln_feedback_samples_total": "counter"}
    check("every family kiln documents is there, with its type",
          all(types0.get(k) == t for k, t in want_types.items()),
          {k: types0.get(k) for k, t in want_types.items() if types0.get(k) != t})
    v1 = {"model": model, "version": "1"}
    check("a version's inference series exist before its first request",
          (("kiln_requests_total", tuple(sorted(dict(v1, endpoint="infer", code="200").items())))
           in s0) and value(s0, "kiln_inference_request_duration_seconds_count", **v1) == 0)
    check("the broken model's load failure is counted",
          value(s0, "kiln_model_load_failures_total", model="broken") == 1 and
          value(s0, "kiln_model_load_failures_total", model=model) == 0)
    check("kiln_build_info is 1 with a version label",
          any(k[0] == "kiln_build_info" and dict(k[1]).get("version") and v == 1
              for k, v in s0.items()))
    check("kiln_instances is the configured 2", value(s0, "kiln_instances", **v1) == 2)

    # Requests one after another: each its own model call, of its size.
    sizes = [1, 2, 3, 5, 8, 1, 4]
    ids = {}
    for i, n in enumerate(sizes):
        rid = "req-%d" % i if i % 2 == 0 else None
        status, h, data = send("POST", "/v2/models/%s/infer" % model,
                               infer_body(samples(n, 100 + i), rid))
        check("inference %d (%d samples) answers 200" % (i, n), status == 200, data[:200])
        if rid:
            check("X-Request-Id is the request's id %s" % rid, h.get("x-request-id") == rid,
                  h.get("x-request-id"))
        else:
            check("X-Request-Id is generated when the request has no id",
                  bool(h.get("x-request-id")), h)
        ids[h.get("x-request-id")] = status
    bad = json.dumps({"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32",
                                  "data": [1, 2, 3]}]}).encode()
    for _ in range(2):
        status, h, _ = send("POST", "/v2/models/%s/infer" % model, bad)
        check("a mismatched input answers 400 with an X-Request-Id",
              status == 400 and h.get("x-request-id"))
    status, _, _ = send("POST", "/v2/models/nosuchmodel-%d/infer" % random.randrange(10**6),
                        infer_body(samples(1, 5)))
    check("an unknown model answers 404", status == 404)
    status, _, _ = send("GET", "/v2/models/%s" % model)
    check("metadata answers 200", status == 200)
    status, _, _ = send("GET", "/nowhere", headers={"X-Request-Id": "from-proxy-7"})
    check("an unknown route answers 404", status == 404)
    check("a client's X-Request-Id header is taken", sent[-1][3] == "from-proxy-7", sent[-1])
    status, _, _ = send("POST", "/metrics")
    check("POST /metrics answers 405", status == 405)

    types1, s1 = scrape(c)
    sent.append(("GET", "/metrics", 200, None, 0, None))

    def delta(name, **labels):
        return value(s1, name, **labels) - value(s0, name, **labels)

    n = len(sizes)
    ok = dict(v1, endpoint="infer")
    check("kiln_requests_total{infer,200} rose by exactly %d" % n,
          delta("kiln_requests_total", code="200", **ok) == n,
          delta("kiln_requests_total", code="200", **ok))
    check("kiln_requests_total{infer,400} rose by exactly 2",
          delta("kiln_requests_total", code="400", **ok) == 2)
    check("the unknown model's 404 is counted with empty model and version labels",
          delta("kiln_requests_total", model="", version="", endpoint="infer", code="404") == 1)
    check("no series names the unknown model",
          not any("nosuchmodel" in str(k) for k in s1))
    check("the metadata request is counted on the version",
          delta("kiln_requests_total", code="200", endpoint="metadata", **v1) == 1)
    check("the unknown route is counted as other, 404",
          delta("kiln_requests_total", model="", version="", endpoint="other", code="404") == 1)
    check("POST /metrics is counted as metrics, 405",
          delta("kiln_requests_total", model="", version="", endpoint="metrics", code="405") == 1)
    check("the first scrape is counted (metrics, 200)",
          delta("kiln_requests_total", model="", version="", endpoint="metrics",
                code="200") == 1)
    for h in ("request", "queue", "compute"):
        name = "kiln_inference_%s_duration_seconds" % h
        check("%s_count rose by exactly %d" % (name, n), delta(name + "_count", **v1) == n,
              delta(name + "_count", **v1))
        check("%s_sum rose, and by less than %d x 10 s" % (name, n),
              0 <= delta(name + "_sum", **v1) < 10 * n)
    total = delta("kiln_inference_request_duration_seconds_sum", **v1)
    parts = (delta("kiln_inference_queue_duration_seconds_sum", **v1) +
             delta("kiln_inference_compute_duration_seconds_sum", **v1))
    check("total time is at least queue plus compute time (%.6f >= %.6f)" % (total, parts),
          total >= parts - 1e-6)
    check("every request's total time is under 10 s (the +Inf bucket holds none)",
          delta("kiln_inference_request_duration_seconds_bucket", le="10", **v1) == n)
    check("kiln_inference_batch_size_count rose by %d (one model call per request)" % n,
          delta("kiln_inference_batch_size_count", **v1) == n)
    check("kiln_inference_batch_size_sum rose by %d samples" % sum(sizes),
          delta("kiln_inference_batch_size_sum", **v1) == sum(sizes))
    for le, k in (("1", 2), ("2", 3), ("4", 5), ("8", 7)):
        check("batch-size bucket le=%s rose by %d" % (le, k),
              delta("kiln_inference_batch_size_bucket", le=le, **v1) == k,
              delta("kiln_inference_batch_size_bucket", le=le, **v1))
    check("kiln_inference_samples_total rose by %d" % sum(sizes),
          delta("kiln_inference_samples_total", **v1) == sum(sizes))
    check("kiln_inference_executions_total rose by %d" % n,
          delta("kiln_inference_executions_total", **v1) == n)
    check("kiln_queue_depth and kiln_instances_busy are 0 when idle",
          value(s1, "kiln_queue_depth", **v1) == 0 and
          value(s1, "kiln_instances_busy", **v1) == 0)
    check("kiln_drift_window_samples counts the %d samples scored" % sum(sizes),
          value(s1, "kiln_drift_window_samples", **v1) == sum(sizes))
    check("kiln_uptime_seconds moved forward",
          value(s1, "kiln_uptime_seconds") >= value(s0, "kiln_uptime_seconds"))
    c.conn.close()

    # The access log: one line per request, written once its answer has gone.
    lines = []
    for _ in range(100):
        lines = open(log_path, encoding="utf-8").read().splitlines()
        if len(lines) >= len(sent):
            break
        time.sleep(0.05)
    check("the access log has one line per request (%d)" % len(sent), len(lines) == len(sent),
          len(lines))
    docs = []
    for line in lines:
        try:
            docs.append(json.loads(line))
        except ValueError as e:
            check("an access log line is JSON", False, "%s: %r" % (e, line))
    fields = {"time", "id", "method", "path", "model", "version", "status", "latency_s",
              "bytes_in", "bytes_out"}
    check("every line has the fields", all(fields <= set(d) for d in docs),
          [sorted(fields - set(d)) for d in docs if not fields <= set(d)])
    stamp = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")
    check("times are RFC 3339 UTC with milliseconds",
          all(stamp.match(d["time"]) for d in docs), [d["time"] for d in docs][:3])
    now = time.time()
    check("times are now, in UTC",
          all(-2 <= now - calendar.timegm(time.strptime(d["time"][:19], "%Y-%m-%dT%H:%M:%S"))
              < 120 for d in docs), [d["time"] for d in docs][:2])
    check("the lines are the requests, in order: method, path, status",
          [(d["method"], d["path"], d["status"]) for d in docs] ==
          [(m, p, s) for m, p, s, _, _, _ in sent],
          [(d["method"], d["path"], d["status"]) for d in docs])
    check("ids match the X-Request-Id answers",
          all(r is None or d["id"] == r for d, (_, _, _, r, _, _) in zip(docs, sent)))
    check("ids are unique", len({d["id"] for d in docs}) == len(docs))
    check("bytes in and out are the bodies' sizes",
          all(d["bytes_in"] == bi and (bo is None or d["bytes_out"] == bo)
              for d, (_, _, _, _, bi, bo) in zip(docs, sent)),
          [(d["bytes_in"], d["bytes_out"], bi, bo) for d, (_, _, _, _, bi, bo) in
           zip(docs, sent)][:4])
    check("latencies are non-negative numbers under 10 s",
          all(isinstance(d["latency_s"], float) and 0 <= d["latency_s"] < 10 for d in docs))
    infer = [d for d in docs if d["path"].endswith("/infer") and d["status"] in (200, 400)]
    check("inference lines name the model and version",
          infer and all(d["model"] == model and d["version"] == "1" for d in infer))
    check("the unknown model's line has null model and version",
          any(d["status"] == 404 and d["model"] is None and d["version"] is None for d in docs))

    # A model whose batches wait 1.5 s to fill: its request sits in the queue meanwhile.
    answers = []
    t = threading.Thread(target=lambda: answers.append(Client(port).request(
        "POST", "/v2/models/%s/infer" % slow, infer_body(samples(1, 3)))[0]))
    t.start()
    vs = {"model": slow, "version": "1"}
    waiting = []

    def queued():
        waiting[:] = [scrape(Client(port))[1]]
        return value(waiting[0], "kiln_queue_depth", **vs) == 1
    wait_for(queued, 1.4)  # the batch waits 1.5 s; the check below says whether it was seen
    s2 = waiting[0]
    t.join()
    _, s3 = scrape(Client(port))
    check("a request waiting for its batch to fill shows in kiln_queue_depth (1, then 0)",
          value(s2, "kiln_queue_depth", **vs) == 1 and value(s3, "kiln_queue_depth", **vs) == 0
          and answers == [200], (value(s2, "kiln_queue_depth", **vs), answers))
    check("and its queue time (over 1 s) in the 2.5 s bucket, not the 1 s one",
          value(s3, "kiln_inference_queue_duration_seconds_bucket", le="1", **vs) == 0 and
          value(s3, "kiln_inference_queue_duration_seconds_bucket", le="2.5", **vs) == 1)
    finish()


# ---- drift ----

def stats_drift(c, model):
    status, _, data = c.request("GET", "/v2/models/%s/versions/1/stats" % model)
    d = json.loads(data)
    return d["model_stats"][0]["drift"]


def cmd_drift(port, model):
    c = Client(port)
    d = stats_drift(c, model)
    check("the stats carry a drift object: window 1000, threshold 0.2, empty",
          d["window"] == 1000 and d["psi_threshold"] == 0.2 and d["samples"] == 0 and
          d["reference"] is True and d["input"]["drifted"] is False, d)

    def send(n, seed, shift):
        xs = samples(n, seed, shift)
        for i in range(0, n, 50):
            status, _, data = c.request("POST", "/v2/models/%s/infer" % model,
                                        infer_body(xs[i:i + 50]))
            if status != 200:
                check("inference answers 200", False, data[:200])
                finish()

    def read():
        _, s = scrape(c)
        lab = {"model": model, "version": "1"}
        return {k: value(s, "kiln_" + k, **lab) for k in (
            "input_drift_psi_max", "input_drift_psi_mean", "input_drift_features",
            "input_drift_detected", "prediction_drift_psi", "prediction_drift_detected",
            "drift_window_samples", "drift_psi_threshold")}

    t0 = time.time()
    send(1000, 7, 0.0)
    m = read()
    d = stats_drift(c, model)
    print("training-like inputs: %s (%.1f s)" % (m, time.time() - t0))
    check("1000 training-like samples fill the window", m["drift_window_samples"] == 1000 and
          d["samples"] == 1000 and d["observed"] == 1000)
    check("their max PSI is low (%.4f < 0.1)" % m["input_drift_psi_max"],
          m["input_drift_psi_max"] < 0.1)
    check("no feature is over the threshold, and the flag is 0",
          m["input_drift_features"] == 0 and m["input_drift_detected"] == 0)
    check("prediction PSI is low (%.4f < 0.1) and not flagged" % m["prediction_drift_psi"],
          m["prediction_drift_psi"] < 0.1 and m["prediction_drift_detected"] == 0)
    psi = d["input"]["psi"]
    check("the stats list one PSI per feature, their max and mean as /metrics says",
          len(psi) == FEATURES and abs(max(psi) - m["input_drift_psi_max"]) < 1e-4 and
          abs(sum(psi) / len(psi) - m["input_drift_psi_mean"]) < 1e-4 and
          psi.index(max(psi)) == d["input"]["psi_max_feature"], d["input"])
    check("kiln_drift_psi_threshold is 0.2", m["drift_psi_threshold"] == 0.2)

    send(500, 8, 3.0)
    m = read()
    print("half the window shifted by 3 std: %s" % m)
    check("half a window of inputs shifted by 3 std raises max PSI over 0.2 and the flag",
          m["input_drift_psi_max"] > 0.2 and m["input_drift_detected"] == 1)
    send(1000, 9, 3.0)
    m = read()
    d = stats_drift(c, model)
    print("all shifted: %s" % m)
    check("a whole window shifted: every feature over the threshold (%d)" %
          m["input_drift_features"], m["input_drift_features"] == FEATURES and
          m["input_drift_psi_mean"] > 2 and d["input"]["features_over_threshold"] == FEATURES and
          d["input"]["drifted"] is True and min(d["input"]["psi"]) > 2)
    check("the stats' drift object says the same",
          abs(d["input"]["psi_max"] - m["input_drift_psi_max"]) < 1e-4 and
          d["observed"] == 2500 and d["samples"] == 1000)

    send(1000, 10, 0.0)
    m = read()
    print("back to training-like inputs: %s" % m)
    check("a window of training-like inputs again brings the flag back to 0",
          m["input_drift_psi_max"] < 0.1 and m["input_drift_detected"] == 0)
    check("the feedback window is empty without feedback",
          d["feedback"] == {"samples": 0, "labelled": 0, "accuracy": None}, d["feedback"])
    finish()


def cmd_query(prom_port, metric):
    """Exit 0 when Prometheus answers the query with kiln's series."""
    q = urllib.parse.urlencode({"query": metric})
    try:
        c = http.client.HTTPConnection("127.0.0.1", prom_port, timeout=5)
        c.request("GET", "/api/v1/query?" + q)
        r = c.getresponse()
        d = json.loads(r.read())
    except (OSError, ValueError):
        sys.exit(1)
    res = d.get("data", {}).get("result", []) if d.get("status") == "success" else []
    if res:
        print(json.dumps(res[:3]))
    sys.exit(0 if res else 1)


def main():
    a = sys.argv[1:]
    if a[:1] == ["data"]:
        write_data(a[1])
    elif a[:1] == ["parse"]:
        try:
            types, s = parse(open(a[1], encoding="utf-8").read())
        except FormatError as e:
            print("FAILED: %s" % e)
            sys.exit(1)
        print("ok: %d families, %d series" % (len(types), len(s)))
    elif a[:1] == ["metrics"]:
        cmd_metrics(int(a[1]), a[2], a[3], a[4])
    elif a[:1] == ["drift"]:
        cmd_drift(int(a[1]), a[2])
    elif a[:1] == ["query"]:
        cmd_query(int(a[1]), a[2])
    else:
        print(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main()
