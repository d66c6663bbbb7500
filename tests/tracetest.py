"""A log made on purpose for the tracing tests (test_review_trace.py and
test_review_trace_browser.py): two real runs of the simulated line into one
database, so that every tracing filter has two values to tell apart.

  run 1: station press-1, job 0 (the [model] package synthetic-v2)
  run 2: station press-2, job 1 ([job.1] package synthetic-v1)
"""
import http.client
import json
import os
import sqlite3

from linetest import Line, fail, plc_results, require_model

TOKEN = "test-trace-token-0123456789"
REVIEW_CONF = f"""
[review]
listen = 127.0.0.1
port = 0
token = {TOKEN}
"""


def two_station_log(build, root, tmp, parts):
    """Runs both lines one after the other; returns (db, conf) where conf is
    run 2's configuration (with [review]) for vigild --review-only."""
    require_model(root, "synthetic-v1")
    require_model(root, "synthetic-v2")
    runs = [
        dict(station="press-1", plc_extra="", extra=""),
        dict(station="press-2",
             plc_extra=f"job = 1\nstate_file = {tmp}/run2/plc.state\n",
             extra=f"\n[job.1]\npackage = {root}/models/synthetic-v1\n"),
    ]
    db = conf = None
    for i, r in enumerate(runs):
        sub = os.path.join(tmp, f"run{i + 1}")
        os.makedirs(sub, exist_ok=True)
        line = Line(build, root, sub, parts, seed=300 + i, split="trace",
                    extra_conf=r["extra"] + REVIEW_CONF,
                    conf_kw=dict(plc_extra=r["plc_extra"], tail=f"station = {r['station']}\n"))
        if db is None:
            db = line.db
        else:
            # Both runs write the one log, as one database gathers a plant.
            with open(line.conf) as f:
                text = f.read().replace(f"path = {line.db}", f"path = {db}")
            with open(line.conf, "w") as f:
                f.write(text)
            line.db = db
        conf = line.conf
        line.start()
        try:
            # vigil-sim compares the whole log with its own run, which the
            # second run's log no longer is: its results file is checked
            # instead.
            sim_rc = line.wait_sim()
            if i == 0 and sim_rc != 0:
                fail(f"run 1: vigil-sim exited with {sim_rc}")
            plc_results(os.path.join(sub, "results.csv"), parts)
        finally:
            rc = line.stop()
        if rc != 0:
            fail(f"run {i + 1}: vigild exited with {rc}: {line.log_tail()}")
    con = sqlite3.connect(db)
    got = con.execute("SELECT station, job, model_version, count(*) FROM inspections"
                      " GROUP BY 1, 2, 3 ORDER BY 1").fetchall()
    con.close()
    want = [("press-1", 0, "synthetic-2", parts), ("press-2", 1, "synthetic-1", parts)]
    if got != want:
        fail(f"the two runs logged {got}, want {want}")
    return db, conf


class Server:
    """The review server at 127.0.0.1:port; check is the test's Checks.check."""

    def __init__(self, port, check):
        self.port, self.check = port, check

    def request(self, method, target, body=None, headers=None):
        """Sends target as is; returns (status, headers, body)."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        try:
            c.putrequest(method, target, skip_accept_encoding=True)
            hdrs = dict(headers or {})
            if body is not None:
                hdrs.setdefault("Content-Length", str(len(body)))
            for k, v in hdrs.items():
                c.putheader(k, v)
            c.endheaders(body)
            r = c.getresponse()
            return r.status, r.headers, r.read()
        except (ConnectionError, http.client.HTTPException) as e:
            return 0, {}, str(e).encode()
        finally:
            c.close()

    def get_json(self, target, want=200):
        status, _, body = self.request("GET", target)
        self.check(status == want,
                   f"GET {target[:80]}: status {status}, want {want}: {body[:200]!r}")
        try:
            return json.loads(body)
        except ValueError:
            self.check(False, f"GET {target[:80]}: not JSON: {body[:200]!r}")
            return {}
