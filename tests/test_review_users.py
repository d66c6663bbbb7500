#!/usr/bin/python3
"""Issue 23, "who did what": per-user tokens on the review server, against
vigild --review-only over a real SQLite log on loopback.

Users are made by vigilctl user add (viewer, reviewer, admin). A viewer's
token posting a review gets 403 naming the role needed; a reviewer's gets
200 and the stored row names the reviewer (not the body's free-text
reviewer); an unknown token and none get 401; an admin's second review
makes the part's history (GET /api/parts/ID "reviews") hold both, newest
first, with who and when; /api/whoami says who a token is. With
read_requires_token, reads need a viewer's token while the page itself
stays open. The shared token still works as before (free-text reviewer).
A users file with a bad line, a name given twice, or given together with
the shared token refuses start, naming the file and line.

usage: test_review_users.py BUILD_DIR
"""
import http.client
import json
import os
import sqlite3
import subprocess
import sys
import time

from linetest import Checks, Vigild, rejects_log, workdir

build = sys.argv[1]
ctl = os.path.join(build, "tools", "vigilctl")
checks = Checks()
fail, check = checks.fail, checks.check
SHARED = "shared-demo-token-0123456789"


def vigilctl(*args):
    p = subprocess.run([ctl, *args], capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        fail(f"vigilctl {' '.join(args)}: rc {p.returncode}: {p.stderr}")
    return p.stdout


class Server:
    def __init__(self, tmp, name, db, review_keys):
        conf = os.path.join(tmp, name + ".conf")
        with open(conf, "w") as f:
            f.write(f"[database]\npath = {db}\n\n[review]\nlisten = 127.0.0.1\nport = 0\n"
                    f"{review_keys}\n")
        self.vigild = Vigild(build, conf, os.path.join(tmp, name + ".log"), ["--review-only"])
        self.port = self.vigild.review_port()

    def request(self, method, target, token=None, body=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            if token is not None:
                headers["Authorization"] = "Bearer " + token
            c.request(method, target, body=json.dumps(body) if body is not None else None,
                      headers=headers)
            r = c.getresponse()
            data = r.read()
            try:
                return r.status, json.loads(data)
            except ValueError:
                return r.status, data
        finally:
            c.close()

    def review(self, part, token, **body):
        return self.request("POST", f"/api/parts/{part}/review", token, body)

    def stop(self):
        rc = self.vigild.stop(timeout=30)
        check(rc == 0, f"vigild exited with {rc}")


def refused_start(tmp, name, review_keys, db, *want):
    conf = os.path.join(tmp, name + ".conf")
    with open(conf, "w") as f:
        f.write(f"[database]\npath = {db}\n\n[review]\nlisten = 127.0.0.1\nport = 0\n"
                f"{review_keys}\n")
    r = Vigild.once(build, conf, ["--review-only"], timeout=30)
    out = r.stdout + r.stderr
    check(r.returncode != 0, f"{name}: vigild started (rc {r.returncode}): {out[-400:]}")
    for w in want:
        check(w in out, f"{name}: the error does not say {w!r}: {out[-600:]}")


with workdir("vigil-users-") as tmp:
    db = os.path.join(tmp, "vigil.db")
    rejects_log(build, db)
    users = os.path.join(tmp, "users")
    with open(users, "w") as f:
        f.write("# QA users of line 3\n\n")
    tok = {name: vigilctl("user", "add", name, "--role", role, "--users", users).strip()
           for name, role in (("vera", "viewer"), ("rita", "reviewer"), ("adam", "admin"))}
    srv = Server(tmp, "users", db, f"users_file = {users}")

    # Reads stay open without read_requires_token.
    status, body = srv.request("GET", "/api/inspections")
    check(status == 200 and len(body.get("inspections", [])) == 5,
          f"open read without a token: {status} {str(body)[:200]}")

    status, body = srv.request("GET", "/api/whoami", tok["rita"])
    check(status == 200 and body.get("name") == "rita" and body.get("role") == "reviewer"
          and body.get("auth") == "users", f"whoami rita: {status} {body}")
    status, body = srv.request("GET", "/api/whoami")
    check(status == 200 and body.get("signed_in") is False and body.get("auth") == "users",
          f"whoami without a token: {status} {body}")
    status, body = srv.request("GET", "/api/whoami", "not-a-token-of-anyone")
    check(status == 401, f"whoami with an unknown token: {status} {body}")

    status, body = srv.review(3, tok["vera"], decision="confirm")
    check(status == 403 and "reviewer" in body.get("error", "") and "vera" in body.get("error", ""),
          f"viewer's review: {status} {body}, want 403 naming the role reviewer")
    status, body = srv.review(3, "wrong-token-0123456789", decision="confirm")
    check(status == 401, f"unknown token's review: {status} {body}")
    status, body = srv.review(3, None, decision="confirm")
    check(status == 401, f"review without a token: {status} {body}")
    status, body = srv.review(3, tok["rita"][:-1] + "x", decision="confirm")
    check(status == 401, f"a near miss of rita's token: {status} {body}")

    status, body = srv.review(3, tok["rita"], decision="overrule", verdict="accept",
                              note="scratch is on the fixture", reviewer="mallory")
    check(status == 200 and body.get("reviewer") == "rita", f"rita's review: {status} {body}")
    con = sqlite3.connect(db)
    rows = con.execute("SELECT r.reviewer, r.decision, r.verdict, r.t_wall_us FROM reviews r"
                       " JOIN inspections i ON i.id = r.inspection_id WHERE i.part_id = 3"
                       " ORDER BY r.id").fetchall()
    con.close()
    check(len(rows) == 1 and rows[0][:3] == ("rita", "overrule", "accept"),
          f"stored review: {rows}, want rita's overrule to accept (not the body's mallory)")
    check(rows and abs(rows[0][3] / 1e6 - time.time()) < 3600,
          f"the review's time is not now: {rows}")

    status, body = srv.review(3, tok["adam"], decision="confirm", note="checked again")
    check(status == 200 and body.get("reviewer") == "adam", f"adam's review: {status} {body}")
    status, part = srv.request("GET", "/api/parts/3")
    hist = part.get("reviews") if status == 200 else None
    check(isinstance(hist, list) and len(hist) == 2, f"history of part 3: {status} {hist}")
    if isinstance(hist, list) and len(hist) == 2:
        check([h["reviewer"] for h in hist] == ["adam", "rita"],
              f"history is not newest first: {hist}")
        # Confirming keeps the line's verdict (reject), as before.
        check(hist[0]["decision"] == "confirm" and hist[0]["verdict"] == "reject"
              and hist[0]["note"] == "checked again", f"adam's entry: {hist[0]}")
        check(hist[1]["decision"] == "overrule" and hist[1]["verdict"] == "accept"
              and hist[1]["note"] == "scratch is on the fixture", f"rita's entry: {hist[1]}")
        check(all(h.get("time") and h.get("t_wall_us") for h in hist), f"no when: {hist}")
        check(hist[0]["t_wall_us"] >= hist[1]["t_wall_us"], f"times out of order: {hist}")
    status, part = srv.request("GET", "/api/parts/4")
    check(status == 200 and part.get("reviews") == [], f"unreviewed part 4: {status} {part}")
    srv.stop()

    # read_requires_token: the log needs a viewer's token, the page does not.
    srv = Server(tmp, "closed", db, f"users_file = {users}\nread_requires_token = true")
    for target in ("/api/inspections", "/api/parts/3", "/api/status", "/metrics"):
        status, _ = srv.request("GET", target)
        check(status == 401, f"read_requires_token: GET {target} without a token: {status}")
        status, _ = srv.request("GET", target, tok["vera"])
        check(status == 200, f"read_requires_token: GET {target} as viewer: {status}")
    for target in ("/", "/static/review.js", "/static/users.js", "/api/whoami"):
        status, _ = srv.request("GET", target)
        check(status == 200, f"read_requires_token: GET {target} (open) without a token: {status}")
    srv.stop()

    # The shared token of the demo: reviews as before, by the free-text name.
    srv = Server(tmp, "shared", db, f"token = {SHARED}")
    status, body = srv.review(4, SHARED, decision="confirm", reviewer="demo-qa")
    check(status == 200 and body.get("reviewer") == "demo-qa", f"shared token: {status} {body}")
    status, body = srv.request("GET", "/api/whoami", SHARED)
    check(status == 200 and body.get("auth") == "token" and body.get("name") is None,
          f"whoami with the shared token: {status} {body}")
    srv.stop()

    # Refused at start, naming the users file and its line.
    bad = os.path.join(tmp, "users-bad")
    with open(users) as f:
        good_lines = f.read()
    with open(bad, "w") as f:
        f.write(good_lines + "carol boss " + "ab" * 32 + "\n")
    bad_line = good_lines.count("\n") + 1
    refused_start(tmp, "bad-role", f"users_file = {bad}", db, f"{bad}:{bad_line}:", "boss",
                  "users_file")
    with open(bad, "w") as f:
        f.write(good_lines + "carol reviewer 12345\n")
    refused_start(tmp, "bad-hash", f"users_file = {bad}", db, f"{bad}:{bad_line}:", "64 hex")
    with open(bad, "w") as f:
        f.write(good_lines + "rita admin " + "cd" * 32 + "\n")
    refused_start(tmp, "twice", f"users_file = {bad}", db, f"{bad}:{bad_line}:", "rita",
                  "twice")
    refused_start(tmp, "both", f"users_file = {users}\ntoken = {SHARED}", db, "users_file",
                  "not both")
    refused_start(tmp, "missing", f"users_file = {tmp}/no-such-users", db, "no-such-users")
    refused_start(tmp, "reads-without-users", "read_requires_token = true", db,
                  "read_requires_token")
    checks.finish()
print("OK")
