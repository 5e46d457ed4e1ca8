"""Clients for tests/serve/test_online.sh: kiln serve's online learning (the feedback endpoint),
driven over HTTP with the stdlib only (/usr/bin/python3). The test model and its samples are
client.py's (784 features, 4 classes). Each subcommand prints "ok: ..." or "FAILED: ..." per check
and exits 1 when any check failed.

usage: online_client.py learn PORT MODEL SUMMARY.json   shifted labels move the model, versions
                                                         publish, a hammer sees only 200s
       online_client.py bad PORT MODEL PLAIN           malformed feedback: 4xx, server serves on
       online_client.py volatile PORT MODEL            persist: false publishes a version
       online_client.py full PORT MODEL                a full learner queue answers 503
       online_client.py auth PORT MODEL TOKEN          feedback needs the server's token
       online_client.py rate PORT MODEL                past max_rate (0.5/s): 429, Retry-After
       online_client.py publish PORT MODEL N OUT.json  N feedback requests, each publishing a
                                                         version; the versions and the served
                                                         ones to OUT.json
A last argument --token TOKEN sends the server's token with every feedback request.
"""
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import client  # noqa: E402  (the colleague's helpers: samples, bodies, a keep-alive client)
from client import check  # noqa: E402

CLASSES = client.CLASSES
# "Authorization: Bearer TOKEN" for feedback requests, when the server has a token (--token).
AUTH = {}


def feedback_doc(xs, labels, dtype="INT32", label_shape=None, rid=None):
    doc = json.loads(client.infer_body(xs, rid=rid))
    doc["inputs"].append({"name": "label", "shape": label_shape or [len(labels)],
                          "datatype": dtype, "data": labels})
    return doc


def feedback(c, model, doc, version=None, raw=None, auth=None):
    """auth: the Authorization header's value; None sends AUTH's, "" none."""
    path = "/v2/models/%s%s/feedback" % (model, "/versions/%s" % version if version else "")
    body = raw if raw is not None else json.dumps(doc).encode()
    h = {"Content-Type": "application/json"}
    h.update(AUTH if auth is None else {"Authorization": auth} if auth else {})
    st, h, b = c.request("POST", path, body, h)
    try:
        d = json.loads(b)
    except ValueError:
        d = None
    return st, d, b


def predictions(c, model, xs, version=None):
    """(model_version, probabilities rows, labels) of an inference on xs."""
    st, h, b = client.infer(c, model, client.infer_body(xs), version=version)
    if st != 200:
        raise RuntimeError("inference answered %d: %s" % (st, b[:200]))
    d, o = client.decode(h, b)
    return d["model_version"], client.rows(o["probabilities"][2], CLASSES), o["label"][2]


class Hammer:
    """Threads that send inference to a model until stopped, counting every outcome."""

    def __init__(self, port, model, threads=2):
        self.port, self.model, self.stop = port, model, threading.Event()
        self.lock = threading.Lock()
        self.requests, self.codes, self.versions, self.errors = 0, {}, {}, []
        self.ts = [threading.Thread(target=self.work) for _ in range(threads)]
        for t in self.ts:
            t.start()

    def work(self):
        cl = client.Client(self.port, retry=False)
        body = client.infer_body(client.samples(1, 31))
        while not self.stop.is_set():
            try:
                st, h, b = client.infer(cl, self.model, body)
                v = client.decode(h, b)[0]["model_version"] if st == 200 else None
            except Exception as e:  # a dropped connection or a bad answer: a failure
                cl.close()
                with self.lock:
                    self.errors.append(repr(e))
                continue
            with self.lock:
                self.requests += 1
                self.codes[st] = self.codes.get(st, 0) + 1
                if v is not None:
                    self.versions[v] = self.versions.get(v, 0) + 1
                elif len(self.errors) < 20:
                    self.errors.append("%d %s" % (st, b[:200]))
        cl.close()

    def seen(self, version):
        with self.lock:
            return version in self.versions

    def finish(self):
        self.stop.set()
        for t in self.ts:
            t.join()


def mean_prob(rows, t):
    return sum(r[t] for r in rows) / len(rows)


def cmd_learn(port, model, summary_path):
    """Labels shifted to one class the model rarely predicts for these samples: every request
    is its steps, every publish_every steps publish a version (the config: batch_size 8,
    publish_every 4, so each request of 16 samples is 2 steps and every second one publishes),
    and the predictions move toward the fed class, while a hammer sees only 200s."""
    c = client.Client(port)
    xs = client.samples(32, 5)
    v0, before, labels0 = predictions(c, model, xs)
    counts = [labels0.count(k) for k in range(CLASSES)]
    t = counts.index(min(counts))  # the class least predicted for these samples
    print("   version %s predicts classes %s; feeding class %d" % (v0, counts, t))
    hammer = Hammer(port, model)
    check("the hammer is answered by version %s" % v0,
          client.wait_for(lambda: hammer.seen(v0), 10), hammer.versions)
    steps, published, ok = 0, [], True
    for i in range(10):
        half = xs[16 * (i % 2):16 * (i % 2) + 16]
        st, d, b = feedback(c, model, feedback_doc(half, [t] * 16, rid="fb%d" % i))
        steps += 2
        want_pub = str(int(v0) + steps // 4) if steps % 4 == 0 else None
        good = (st == 200 and d is not None and d.get("model_name") == model and
                d.get("accepted") == 16 and d.get("steps") == steps and
                d.get("published_version") == want_pub and d.get("id") == "fb%d" % i and
                isinstance(d.get("model_version"), str))
        ok &= check("feedback %d: 200, 16 accepted, %d steps, published %s" % (i, steps, want_pub),
                    good, (st, b[:300]))
        if good and want_pub:
            published.append(want_pub)
    if published:
        check("the hammer is answered by version %s" % published[-1],
              client.wait_for(lambda: hammer.seen(published[-1]), 10), hammer.versions)
    hammer.finish()
    st, h, b = c.request("GET", "/v2/models/%s" % model)
    meta = json.loads(b) if st == 200 else {}
    latest = published[-1] if published else None
    check("the model's metadata lists the last published version (%s) alone" % latest,
          st == 200 and meta.get("versions") == [latest], b[:300])
    v1, after, labels1 = predictions(c, model, xs)
    check("inference answers from version %s" % latest, v1 == latest, v1)
    p0, p1 = mean_prob(before, t), mean_prob(after, t)
    check("the fed class's mean probability rose from %.3f to %.3f" % (p0, p1), p1 > p0 + 0.3)
    check("more samples are predicted as class %d (%d, then %d)" %
          (t, labels0.count(t), labels1.count(t)), labels1.count(t) > labels0.count(t) + 8)
    vv, byv, _ = predictions(c, model, xs, version=latest)
    check("version %s by number answers the same" % latest,
          vv == latest and client.max_diff(byv, after) == 0)
    print("   hammer: %d requests, codes %s, versions %s, errors %s" %
          (hammer.requests, hammer.codes, hammer.versions, hammer.errors[:3]))
    check("the hammer saw only 200s and no dropped connection while versions were published",
          hammer.requests > 20 and list(hammer.codes) == [200] and not hammer.errors)
    check("the hammer was answered by the first and by published versions",
          v0 in hammer.versions and len(hammer.versions) >= 2, hammer.versions)
    with open(summary_path, "w") as f:
        json.dump({"published": published, "class": t,
                   "probabilities": [r for r in after[:4]]}, f)


def cmd_bad(port, model, plain):
    """Malformed feedback: each gets its 4xx with a JSON error, and nothing is learnt from it."""
    c = client.Client(port)
    xs = client.samples(2, 8)
    st, d, b = feedback(c, model, feedback_doc(xs, [0, 1]))
    check("a good feedback first: 200", st == 200, b[:300])
    steps = d["steps"] if st == 200 else -1

    def expect(what, code, doc=None, raw=None, path_model=None, version=None, says=None):
        st, d, b = feedback(c, path_model or model, doc, version=version, raw=raw)
        good = st == code and client.is_json_error(b) and (
            says is None or says in json.loads(b)["error"])
        check("%s: %d with a JSON error%s" % (what, code, " naming '%s'" % says if says else ""),
              good, (st, b[:300]))

    expect("a class label past the last class", 400, feedback_doc(xs, [0, CLASSES]),
           says="classes 0 to 3")
    expect("a negative class label", 400, feedback_doc(xs, [-1, 0]), says="class -1")
    expect("more labels than samples", 400, feedback_doc(xs, [0, 1, 2]), says="3 samples")
    expect("fewer labels than samples", 400, feedback_doc(xs, [0]), says="1 samples")
    expect("FP32 labels for a classifier", 400, feedback_doc(xs, [0.0, 1.0], dtype="FP32"),
           says="INT32 or INT64")
    expect("labels of shape [2, 2]", 400, feedback_doc(xs, [0, 1, 0, 1], label_shape=[2, 2]),
           says="one class label per sample")
    no_label = json.loads(client.infer_body(xs))
    expect("no label input", 400, no_label, says="'label'")
    extra = feedback_doc(xs, [0, 1])
    extra["inputs"].append({"name": "weight", "shape": [2], "datatype": "FP32", "data": [1, 1]})
    expect("an input the model does not take", 400, extra, says="weight")
    narrow = feedback_doc([x[:700] for x in xs], [0, 1])
    narrow["inputs"][0]["shape"] = [2, 700]
    expect("inputs of 700 features", 400, narrow, says="784")
    nan = feedback_doc(xs, [0, 1])
    nan["inputs"][0]["data"][5] = "NaN"
    expect("a NaN input", 400, raw=json.dumps(nan).replace('"NaN"', "NaN").encode())
    expect("malformed JSON", 400, raw=b'{"inputs": [')
    expect("an empty body", 400, raw=b"")
    expect("a model without online_learning", 409, feedback_doc(xs, [0, 1]), path_model=plain,
           says="online_learning")
    expect("an unknown model", 404, feedback_doc(xs, [0, 1]), path_model="nope")
    expect("an unknown version", 404, feedback_doc(xs, [0, 1]), version=99)
    st, h, b = c.request("GET", "/v2/models/%s/feedback" % model)
    check("GET on feedback: 405 (%d)" % st, st == 405 and client.is_json_error(b))
    st, h, b = client.infer(c, model, client.infer_body(xs))
    check("inference still answers 200", st == 200, (st, b[:200]))
    st, d, b = feedback(c, model, feedback_doc(xs, [2, 3], dtype="INT64"))
    check("a good feedback (INT64 labels) after the bad ones takes one step more (%s)" %
          (d or {}).get("steps"), st == 200 and d["steps"] == steps + 1, b[:300])


def cmd_volatile(port, model):
    """persist: false (batch_size 16, publish_every 2): the second request publishes version 2
    from a temporary folder; the shell checks the repository did not get it."""
    c = client.Client(port)
    xs = client.samples(16, 9)
    st, d, b = feedback(c, model, feedback_doc(xs, [1] * 16))
    check("first feedback: 200, one step, nothing published",
          st == 200 and d["steps"] == 1 and d["published_version"] is None, b[:300])
    st, d, b = feedback(c, model, feedback_doc(xs, [1] * 16))
    check("second feedback: 200, two steps, version 2 published",
          st == 200 and d["steps"] == 2 and d["published_version"] == "2", b[:300])
    st, h, b = c.request("GET", "/v2/models/%s" % model)
    check("the model serves version 2 alone", st == 200 and json.loads(b)["versions"] == ["2"],
          b[:300])
    v, _, _ = predictions(c, model, xs, version=2)
    check("version 2 answers inference", v == "2")


def cmd_full(port, model):
    """A learner with max_queue 1 and batch_size 1 takes 256 steps per request of 256 samples:
    requests sent together get 200 or 503 (with a JSON error), some of each."""
    body = json.dumps(feedback_doc(client.samples(256, 3), [0] * 256)).encode()
    for attempt in range(3):
        codes, bad = {}, []
        lock = threading.Lock()

        def work():
            cl = client.Client(port, retry=False)
            try:
                st, d, b = feedback(cl, model, None, raw=body)
            except Exception as e:
                st, b = repr(e), b""
            cl.close()
            with lock:
                codes[st] = codes.get(st, 0) + 1
                if st == 503 and not client.is_json_error(b):
                    bad.append(b[:200])

        ts = [threading.Thread(target=work) for _ in range(10)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        if codes.get(503):
            break
    print("   codes: %s" % codes)
    check("10 feedback requests at once: only 200s and 503s, some of each",
          set(codes) <= {200, 503} and codes.get(200, 0) >= 1 and codes.get(503, 0) >= 1
          and not bad, (codes, bad[:2]))


def cmd_auth(port, model, token):
    """A server with --auth-token: feedback without the token, or with another, gets 401 and
    teaches nothing; the token (the scheme in any case) is taken; inference stays open."""
    c = client.Client(port)
    xs = client.samples(2, 8)
    doc = feedback_doc(xs, [0, 1])
    st, d, b = feedback(c, model, doc, auth="Bearer " + token)
    check("feedback with the token: 200", st == 200, b[:300])
    steps = d["steps"] if st == 200 else -1
    for what, auth in (("no Authorization header", ""), ("a wrong token", "Bearer x" + token),
                       ("the token as Basic", "Basic " + token),
                       ("the token without a scheme", token)):
        st, _, b = c.request("POST", "/v2/models/%s/feedback" % model, json.dumps(doc).encode(),
                             {"Authorization": auth} if auth else {})
        check("feedback with %s: 401 with a JSON error" % what,
              st == 401 and client.is_json_error(b), (st, b[:300]))
    st, d, b = feedback(c, model, doc, auth="bearer " + token)
    check("feedback with 'bearer' in lower case: 200, one step more than before the 401s "
          "(%s)" % (d or {}).get("steps"), st == 200 and d["steps"] == steps + 1, b[:300])
    st, _, b = client.infer(c, model, client.infer_body(xs))
    check("inference without the token: 200", st == 200, b[:200])
    st, _, b = c.request("GET", "/v2/models/%s" % model)
    check("metadata without the token: 200", st == 200, b[:200])


def cmd_rate(port, model):
    """A model with max_rate 0.5 (a bucket of one request): the second request at once gets 429
    with Retry-After and teaches nothing; after Retry-After seconds one is taken again."""
    c = client.Client(port)
    doc = feedback_doc(client.samples(2, 8), [0, 1])
    st, d, b = feedback(c, model, doc)
    check("the first feedback: 200", st == 200, b[:300])
    steps = d["steps"] if st == 200 else -1
    path = "/v2/models/%s/feedback" % model
    st, h, b = c.request("POST", path, json.dumps(doc).encode(), AUTH)
    retry = h.get("retry-after", "")
    check("the second at once: 429 with a JSON error naming max_rate",
          st == 429 and client.is_json_error(b) and "max_rate" in json.loads(b)["error"],
          (st, b[:300]))
    check("with Retry-After in whole seconds, 1 or 2 (%r)" % retry, retry in ("1", "2"), h)
    t0, got = time.time(), []

    def taken():
        got[:] = [feedback(c, model, doc)]
        return got[0][0] != 429
    client.wait_for(taken, 5)
    st, d, b = got[0]
    took = time.time() - t0
    check("asked again until taken: 200 after %.1f s, within Retry-After + 1 s" % took,
          st == 200 and took <= int(retry or 2) + 1, (st, b[:300]))
    check("one step more than the first: the 429s taught nothing (%s)" % (d or {}).get("steps"),
          st == 200 and d["steps"] == steps + 1, b[:300])
    st, _, b = client.infer(c, model, client.infer_body(client.samples(2, 8)))
    check("inference is not rate limited: 200", st == 200, b[:200])


def cmd_publish(port, model, n, out_path):
    """N feedback requests of 2 samples to a model that publishes every step: each answers 200
    and publishes a version. OUT.json gets the published versions and the served ones."""
    c = client.Client(port)
    xs = client.samples(2, 12)
    published = []
    for i in range(n):
        st, d, b = feedback(c, model, feedback_doc(xs, [i % CLASSES, (i + 1) % CLASSES]))
        check("%s: feedback %d answers 200 and publishes a version" % (model, i),
              st == 200 and d.get("published_version") is not None, b[:300])
        published.append(d.get("published_version") if st == 200 else None)
    st, _, b = c.request("GET", "/v2/models/%s" % model)
    check("%s: metadata answers 200" % model, st == 200, b[:200])
    with open(out_path, "w") as f:
        json.dump({"published": published,
                   "served": json.loads(b)["versions"] if st == 200 else None}, f)


def main():
    argv = sys.argv
    if len(argv) > 2 and argv[-2] == "--token":
        AUTH["Authorization"] = "Bearer " + argv[-1]
        argv = argv[:-2]
    cmd, port, args = argv[1], int(argv[2]), argv[3:]
    if cmd == "learn":
        cmd_learn(port, args[0], args[1])
    elif cmd == "bad":
        cmd_bad(port, args[0], args[1])
    elif cmd == "volatile":
        cmd_volatile(port, args[0])
    elif cmd == "full":
        cmd_full(port, args[0])
    elif cmd == "auth":
        cmd_auth(port, args[0], args[1])
    elif cmd == "rate":
        cmd_rate(port, args[0])
    elif cmd == "publish":
        cmd_publish(port, args[0], int(args[1]), args[2])
    else:
        print(__doc__)
        sys.exit(2)
    client.finish()


if __name__ == "__main__":
    main()
