"""Slow clients against kiln serve (tests/serve/test_serve.sh slow; stdlib only, /usr/bin/python3).

Slow-loris clients open many connections and drip their request a byte at a time, never idle
long enough for an idle timeout, to hold every connection the server has. The server under test
runs with small limits (--max-connections-per-client PER, --max-connections TOTAL,
--header-timeout H, --body-timeout B, and a long --timeout so that only the whole-request
deadlines can cut a dripping client). The drips come from other loopback addresses (127.0.0.2
and up) than the normal requests (127.0.0.1), as they would from other machines. Checks:
  - one address gets PER connections, and its next one is closed unanswered at once; a normal
    request meanwhile is answered 200 at once;
  - a client dripping its headers is answered 408 and closed H seconds after it connected,
    though it never paused; one dripping its body, B seconds after its headers;
  - dripping clients from several addresses up to TOTAL: a normal request gets 503 (with a JSON
    error and Retry-After) at once, not silence; once they are cut, 200 again.
Prints "ok: ..." or "FAILED: ..." per check and exits 1 when any failed.

usage: slow_client.py PORT PER TOTAL H B
"""
import http.client
import json
import socket
import sys
import threading
import time

import client
from client import check, wait_for


def normal_request(port, timeout=5):
    """GET /v2/health/live from 127.0.0.1 on a new connection: (status, headers, body, seconds);
    status -1 when the connection was closed or reset without an answer."""
    t = time.time()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", "/v2/health/live")
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read(), time.time() - t
    except (OSError, http.client.HTTPException):
        return -1, {}, b"", time.time() - t
    finally:
        c.close()


class Drip:
    """A connection from a given loopback address that sends its request one byte at a time,
    every `every` seconds, and records what comes back and when the server closes it."""

    def __init__(self, port, source, data, every, head=b""):
        """head: sent whole at once, before the drip."""
        self.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.s.bind((source, 0))
        self.s.connect(("127.0.0.1", port))
        self.s.sendall(head)
        self.s.setblocking(False)
        self.data, self.every, self.sent = data, every, 0
        self.t0 = self.last = time.time()
        self.got, self.closed_at = b"", None

    def step(self, now):
        if self.closed_at is not None:
            return
        try:
            while True:
                chunk = self.s.recv(65536)
                if not chunk:
                    self.closed_at = now
                    return
                self.got += chunk
        except BlockingIOError:
            pass
        except OSError:
            self.closed_at = now
            return
        if now - self.last >= self.every and self.sent < len(self.data):
            try:
                self.sent += self.s.send(self.data[self.sent:self.sent + 1])
                self.last = now
            except OSError:
                self.closed_at = now

    def close(self):
        self.s.close()


class Drips:
    """Drip connections stepped by one thread every 20 ms."""

    def __init__(self):
        self.all, self.lock, self.stop = [], threading.Lock(), threading.Event()
        self.t = threading.Thread(target=self.run)
        self.t.start()

    def add(self, d):
        with self.lock:
            self.all.append(d)
        return d

    def run(self):
        while not self.stop.is_set():
            now = time.time()
            with self.lock:
                for d in self.all:
                    d.step(now)
            time.sleep(0.02)

    def finish(self):
        self.stop.set()
        self.t.join()
        for d in self.all:
            d.close()


def headers_forever():
    """A request whose headers never end: a header line after another."""
    return (b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n" +
            b"".join(b"X-Slow-%d: drip\r\n" % i for i in range(10000)))


def connections(port):
    """kiln_http_connections (this scrape's connection included), or -1."""
    n = client.metric(port, "kiln_http_connections")
    return -1 if n is None else int(n)


def answered_408(d):
    return d.got.startswith(b"HTTP/1.1 408 ") and client.is_json_error(d.got.partition(b"\r\n\r\n")[2])


def per_client(port, per, h, drips):
    """PER dripping connections from 127.0.0.2; the next one from there is closed unanswered."""
    mine = [drips.add(Drip(port, "127.0.0.2", headers_forever(), 0.25)) for _ in range(per)]
    check("the server holds the %d dripping connections of 127.0.0.2" % per,
          wait_for(lambda: connections(port) >= per + 1, 3), connections(port))
    extra = drips.add(Drip(port, "127.0.0.2", headers_forever(), 0.25))
    check("the %dth connection from 127.0.0.2 is closed unanswered at once" % (per + 1),
          wait_for(lambda: extra.closed_at is not None, 2) and extra.got == b"",
          (extra.closed_at, extra.got[:80]))
    st, _, _, took = normal_request(port)
    check("meanwhile a normal request from 127.0.0.1 is answered 200 at once (%.2f s)" % took,
          st == 200 and took < 1.5, (st, took))
    check("the dripping connections are cut within %d s + 2 s, though never idle" % h,
          wait_for(lambda: all(d.closed_at is not None for d in mine), h + 2),
          [d.closed_at and d.closed_at - d.t0 for d in mine])
    held = [d.closed_at - d.t0 for d in mine if d.closed_at is not None]
    check("no sooner than --header-timeout %d s after they connected (%.2f to %.2f s)"
          % (h, min(held or [0]), max(held or [0])), held and min(held) >= h - 0.3, held)
    check("each answered 408 with a JSON error before it closed",
          all(answered_408(d) for d in mine), [d.got[:60] for d in mine if not answered_408(d)])
    check("each had dripped part of its headers only",
          all(0 < d.sent < len(d.data) for d in mine), [d.sent for d in mine])


def slow_body(port, b, drips):
    """Whole headers, then a body a byte at a time: cut B seconds after the headers."""
    head = (b"POST /v2/models/clf/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\n\r\n")
    d = drips.add(Drip(port, "127.0.0.1", b" " * 100000, 0.25, head))
    check("a client dripping its body is cut within %d s + 2 s" % b,
          wait_for(lambda: d.closed_at is not None, b + 2), d.closed_at and d.closed_at - d.t0)
    took = (d.closed_at or time.time()) - d.t0
    check("no sooner than --body-timeout %d s after its headers (%.2f s)" % (b, took),
          took >= b - 0.3, took)
    check("answered 408 with a JSON error", answered_408(d), d.got[:200])


def total(port, per, limit, h, drips):
    """Dripping connections from 127.0.0.3 and up, PER each, until TOTAL are open: a normal
    request then gets 503 at once; after the drips are cut, 200."""
    n, addr = 0, 3
    while n < limit:
        for _ in range(min(per, limit - n)):
            drips.add(Drip(port, "127.0.0.%d" % addr, headers_forever(), 0.25))
            n += 1
        addr += 1
    seen = {}

    def refused():
        st, hd, body, took = normal_request(port)
        seen.update(st=st, headers=hd, body=body, took=took)
        return st == 503
    got = wait_for(refused, h - 0.5)
    check("with %d dripping connections open, a normal request gets 503 at once (%.2f s)"
          % (limit, seen.get("took", -1)), got and seen["took"] < 1.5, seen)
    check("the 503 has a JSON error and Retry-After",
          client.is_json_error(seen.get("body", b"")) and
          seen.get("headers", {}).get("retry-after") == "1", seen)
    ok = wait_for(lambda: normal_request(port)[0] == 200, h + 3)
    check("once the dripping connections are cut, a normal request gets 200", ok)


def main():
    port, per, limit, h, b = (int(a) for a in sys.argv[1:6])
    drips = Drips()
    try:
        per_client(port, per, h, drips)
        slow_body(port, b, drips)
        total(port, per, limit, h, drips)
    finally:
        drips.finish()
    client.finish()


if __name__ == "__main__":
    main()
