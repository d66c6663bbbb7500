#!/usr/bin/python3
"""Issue 18 item 13: the review server under clients that hold connections,
over raw loopback sockets against vigild --review-only.

A patient server ([review] request_timeout_s = 60, max_connections = 16):
Content-Length 99999999999 with no body gets 413 and -1 gets 400, a chunked
body 411, all answered at once and closed (the client gives up long before
the server's own timeout, and the status tells a refusal from a timeout);
a client that sends its request in pieces is served; beyond 16 open
connections a new one gets 503 at once while the 16 are held, and once
they go a request is served again; vigild stops cleanly with connections
still held.

An impatient one (request_timeout_s = 2, default max_connections): half a
request's headers, a body shorter than declared and a silent connection
each get 408 and are closed, no sooner than the timeout; 200 slow half-open
connections are all answered (408 or 503) and closed, after which a
request is served and vigild holds no more sockets than before.

usage: test_review_faults.py BUILD_DIR
"""
import os
import re
import select
import socket
import sys
import time

from linetest import Checks, Vigild, workdir

build = sys.argv[1]
checks = Checks()
fail, check = checks.fail, checks.check
# Failure bounds only: generous for a machine shared by many jobs.
ANSWER_S = 30
PATIENT_TIMEOUT_S = 60
IMPATIENT_TIMEOUT_S = 2
CAP = 16


class Server:
    """vigild --review-only on tmp/NAME.conf; its port from its log."""

    def __init__(self, tmp, name, review_keys):
        conf = os.path.join(tmp, name + ".conf")
        with open(conf, "w") as f:
            f.write(f"[database]\npath = {os.path.join(tmp, 'vigil.db')}\n\n"
                    f"[review]\nlisten = 127.0.0.1\nport = 0\n{review_keys}\n")
        self.vigild = Vigild(build, conf, os.path.join(tmp, name + ".log"), ["--review-only"])
        self.port = self.vigild.review_port()

    def connect(self, data=b""):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=ANSWER_S)
        if data:
            s.sendall(data)
        return s

    def open_fds(self):
        return len(os.listdir(f"/proc/{self.vigild.p.pid}/fd"))

    def stop(self):
        return self.vigild.stop(timeout=30)


def read_answer(s, timeout=ANSWER_S):
    """What the server sends until it closes, and whether it closed within
    timeout: (bytes, closed)."""
    s.settimeout(timeout)
    out = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                return out, True
            out += d
    except socket.timeout:
        return out, False
    except ConnectionResetError:
        return out, True
    finally:
        s.close()


def status_of(answer):
    m = re.match(rb"HTTP/1\.[01] (\d{3}) ", answer)
    return int(m.group(1)) if m else 0


def check_answer(what, answer, closed, want):
    """answer is a whole HTTP response with status want, a JSON error and
    Connection: close, and the server closed the connection after it."""
    head, _, body = answer.partition(b"\r\n\r\n")
    ok = check(closed, f"{what}: the server kept the connection open "
               f"({ANSWER_S} s; got {answer[:80]!r})")
    ok = check(status_of(answer) == want,
               f"{what}: status {status_of(answer)}, want {want}: {answer[:200]!r}") and ok
    if not ok:
        return False
    check(b"connection: close" in head.lower(), f"{what}: no Connection: close: {head!r}")
    check(body.startswith(b'{"error":'), f"{what}: the body is not a JSON error: {body[:100]!r}")
    return True


def get(srv, target):
    """A whole GET on its own connection: (status, body)."""
    s = srv.connect(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    answer, _ = read_answer(s)
    return status_of(answer), answer.partition(b"\r\n\r\n")[2]


def metric(srv, name):
    status, body = get(srv, "/metrics")
    if status != 200:
        return None
    m = re.search(rb"^" + re.escape(name.encode()) + rb" (\S+)$", body, re.M)
    return float(m.group(1)) if m else None


def wait_for(what, cond, timeout=ANSWER_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    fail(f"{what} (waited {timeout} s)")
    return False


HALF_HEADERS = b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n"


def check_patient(tmp):
    srv = Server(tmp, "patient", f"request_timeout_s = {PATIENT_TIMEOUT_S}\n"
                                 f"max_connections = {CAP}")
    held = []
    try:
        # Refused on the headers: answered now, not after a body that never
        # comes. The client gives up after ANSWER_S, well inside the
        # server's 60 s, and a timeout would be a 408.
        cases = [
            ("Content-Length: 99999999999", 413),
            ("Content-Length: -1", 400),
            ("Content-Length: 12abc", 400),
            ("Transfer-Encoding: chunked", 411),
        ]
        for header, want in cases:
            s = srv.connect(f"POST /api/parts/1/review HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                            f"Content-Type: application/json\r\n{header}\r\n\r\n".encode())
            answer, closed = read_answer(s)
            if want == 400 and header.endswith("abc"):
                # libsoup refuses this one itself, with an empty 400.
                check(closed and status_of(answer) == 400, f"{header}: {answer[:100]!r}")
            else:
                check_answer(header, answer, closed, want)
        # A body over the limit that arrived whole is refused too, and never
        # reaches the handler (a review may be longer: it carries a mask).
        s = srv.connect(b"POST /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        b"Content-Length: 20000\r\n\r\n" + b"x" * 20000)
        answer, closed = read_answer(s)
        check(status_of(answer) == 413, f"a whole 20 kB body: {answer[:100]!r}")

        # A slow but valid client is served.
        s = srv.connect()
        for piece in (b"GET /api/st", b"atus HTTP/1.1\r\nHo", b"st: 127.0.0.1\r\n", b"\r\n"):
            s.sendall(piece)
            time.sleep(0.2)
        answer, closed = read_answer(s)
        check(status_of(answer) == 200 and closed,
              f"a request in pieces: {answer[:100]!r}, closed {closed}")

        # The cap: connections beyond it get 503 at once, in the order they
        # came; the first CAP are held (the server waits 60 s for them).
        extra = 40
        conns = [srv.connect(HALF_HEADERS) for _ in range(CAP + extra)]
        refused = set()
        deadline = time.monotonic() + ANSWER_S
        while len(refused) < extra and time.monotonic() < deadline:
            ready, _, _ = select.select([c for c in conns if c not in refused], [], [], 0.5)
            refused.update(ready)
        check(refused == set(conns[CAP:]),
              f"{len(refused)} connections refused, want the last {extra} of {CAP + extra}")
        for c in conns[CAP:]:
            if c in refused:
                answer, closed = read_answer(c)
                check_answer("a connection beyond max_connections", answer, closed, 503)
        status, _ = get(srv, "/api/status")
        check(status == 503, f"a request while {CAP} connections are held: {status}, want 503")
        # The held ones go; the server serves again and counts what it refused.
        for c in conns[:CAP]:
            c.close()
        wait_for("a request after the held connections closed",
                 lambda: get(srv, "/api/status")[0] == 200)
        n = metric(srv, 'vigil_review_refused_total{reason="max_connections"}')
        check(n is not None and n >= extra + 1, f"refused for max_connections: {n}")
        n = metric(srv, 'vigil_review_refused_total{reason="body"}')
        check(n is not None and n >= 4, f"refused on the body length: {n}")

        # vigild stops cleanly with connections held.
        held = [srv.connect(HALF_HEADERS) for _ in range(4)]
        wait_for("the held connections counted",
                 lambda: metric(srv, "vigil_review_connections") == 5)
    finally:
        rc = srv.stop()
    check(rc == 0, f"vigild with connections held exited with {rc}")
    for c in held:
        c.close()


def check_impatient(tmp):
    srv = Server(tmp, "impatient", f"request_timeout_s = {IMPATIENT_TIMEOUT_S}")
    try:
        get(srv, "/metrics")
        fds_before = srv.open_fds()
        slow = [
            ("half a request's headers", HALF_HEADERS),
            ("a body shorter than declared",
             b"POST /api/parts/1/review HTTP/1.1\r\nHost: 127.0.0.1\r\n"
             b"Content-Length: 100\r\n\r\n{\"decision\":"),
            ("a silent connection", b""),
        ]
        for what, data in slow:
            t0 = time.monotonic()
            s = srv.connect(data)
            answer, closed = read_answer(s)
            elapsed = time.monotonic() - t0
            check_answer(what, answer, closed, 408)
            # The server's timer starts after this client connected, so the
            # 408 cannot come sooner.
            check(elapsed >= IMPATIENT_TIMEOUT_S - 0.05,
                  f"{what}: 408 after {elapsed:.2f} s, before the {IMPATIENT_TIMEOUT_S} s timeout")

        # 200 slow half-open connections: every one is answered and closed,
        # none is left pinning the server.
        conns = [srv.connect(HALF_HEADERS) for _ in range(200)]
        answers = {}
        deadline = time.monotonic() + IMPATIENT_TIMEOUT_S + 60
        while len(answers) < len(conns) and time.monotonic() < deadline:
            pending = [c for c in conns if c not in answers]
            ready, _, _ = select.select(pending, [], [], 0.5)
            for c in ready:
                answers[c] = read_answer(c)
        check(len(answers) == len(conns),
              f"{len(conns) - len(answers)} of 200 half-open connections never answered")
        statuses = [status_of(a) for a, _ in answers.values()]
        check(all(st in (408, 503) for st in statuses) and all(c for _, c in answers.values()),
              f"half-open connections answered {sorted(set(statuses))}, want 408 or 503 "
              "and closed")
        print(f"200 half-open: {statuses.count(408)} timed out (408), "
              f"{statuses.count(503)} refused (503)")
        status, _ = get(srv, "/api/status")
        check(status == 200, f"a request after 200 half-open connections: {status}")
        wait_for("vigild back to one connection (this /metrics)",
                 lambda: metric(srv, "vigil_review_connections") == 1)
        n = metric(srv, 'vigil_review_refused_total{reason="request_timeout"}')
        check(n is not None and n >= len(slow) + statuses.count(408),
              f"refused for request_timeout: {n}")
        # No socket left behind (a slack of 2 for whatever GLib opens lazily).
        wait_for(f"vigild's open files back to {fds_before} (+2)",
                 lambda: srv.open_fds() <= fds_before + 2)
    finally:
        rc = srv.stop()
    check(rc == 0, f"vigild exited with {rc}")


def check_bad_configs(tmp):
    cases = [("max_connections = 0", "[review] max_connections"),
             ("request_timeout_s = 0", "[review] request_timeout_s"),
             ("request_timeout_s = ten", "[review] request_timeout_s")]
    for i, (body, want) in enumerate(cases):
        path = os.path.join(tmp, f"bad-{i}.conf")
        with open(path, "w") as f:
            f.write(f"[database]\npath = {tmp}/vigil.db\n\n[review]\nport = 0\n{body}\n")
        r = Vigild.once(build, path, ["--review-only"], timeout=30)
        out = r.stdout + r.stderr
        check(r.returncode != 0 and f"{path}:" in out and want in out,
              f"bad [review] {body!r}: rc {r.returncode}, output {out.strip()[-300:]!r}")


def main():
    with workdir("vigil-review-faults-") as tmp:
        check_patient(tmp)
        check_impatient(tmp)
        check_bad_configs(tmp)
        checks.finish()
    print("PASS: the review server answers or closes every connection it cannot serve")


main()
