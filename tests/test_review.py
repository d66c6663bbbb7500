#!/usr/bin/python3
"""The review web server inside vigild, over loopback: vigil-sim plays the
PLC, vigild inspects and serves [review] on a port it picks (port = 0).

Checks the inspection list and its filters, part detail with vibration
figures, an overrule with the token (read back from the SQLite file), 401
without or with a wrong token, 400 for hostile filters (SQL metacharacters,
bad escapes), 400/404 for path traversal, 414 for an oversized query, 413
for an oversized body, /metrics in Prometheus text format counting every
part, vigild --review-only over the finished log, and charts_dir found as
documented or warned about at start.

usage: test_review.py BUILD_DIR SOURCE_ROOT [PARTS]
"""
import http.client
import json
import os
import re
import socket
import sqlite3
import sys
import time
import urllib.parse

from linetest import Checks, Line, Vigild, add_part_media, workdir

build, root = sys.argv[1], sys.argv[2]
parts = int(sys.argv[3]) if len(sys.argv) > 3 else 80
SIM_RATE = 1200
TOKEN = "test-review-token-0123456789"
checks = Checks()
fail, check = checks.fail, checks.check


class Server:
    def __init__(self, port):
        self.port = port

    def request(self, method, target, body=None, headers=None):
        """Sends target as is (no normalisation); returns (status, headers, body)."""
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
        check(status == want, f"GET {target[:80]}: status {status}, want {want}: {body[:200]!r}")
        try:
            return json.loads(body)
        except ValueError:
            fail(f"GET {target[:80]}: not JSON: {body[:200]!r}")
            return {}

    def review(self, part, payload, token=TOKEN):
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = "Bearer " + token
        return self.request("POST", f"/api/parts/{part}/review", body, headers)


REVIEW_CONF = f"""
[review]
listen = 127.0.0.1
port = 0
token = {TOKEN}
"""


def check_list_and_detail(srv, db):
    con = sqlite3.connect(db)
    want_rejects = [r[0] for r in con.execute(
        "SELECT part_id FROM inspections WHERE verdict = 'reject' ORDER BY id")]
    con.close()
    got = srv.get_json("/api/inspections?verdict=reject&limit=10000").get("inspections", [])
    check([r["part_id"] for r in got] == want_rejects,
          f"rejected parts via the API {len(got)} != database {len(want_rejects)}")
    check(all(r["verdict"] == "reject" for r in got), "verdict filter let other verdicts through")
    if not check(len(got) > 0, "no rejected parts to review"):
        return None
    every = srv.get_json("/api/inspections?limit=10000").get("inspections", [])
    check(len(every) == parts, f"{len(every)} inspections listed, want {parts}")
    few = srv.get_json("/api/inspections?limit=5").get("inspections", [])
    check(len(few) == 5 and few[-1]["id"] == every[-1]["id"], "limit does not give the newest rows")
    ranged = srv.get_json("/api/inspections?min_score=0.5&max_score=1&limit=10000")["inspections"]
    check(all(r["score"] is not None and 0.5 <= r["score"] <= 1 for r in ranged),
          "score range filter let other scores through")
    cls = srv.get_json("/api/inspections?" + urllib.parse.urlencode(
        {"class": "surface+vibration", "limit": 10000}))["inspections"]
    check(all(r["class"] == "surface+vibration" for r in cls), "class filter with '+' broke")

    part = got[0]["part_id"]
    detail = srv.get_json(f"/api/parts/{part}")
    insp = detail.get("inspection", {})
    check(insp.get("part_id") == part and insp.get("verdict") == "reject",
          f"part detail of {part} is wrong: {insp}")
    vib = detail.get("vibration") or {}
    check(vib.get("iso_zone") in ("A", "B", "C", "D") and vib.get("bpfo_env") is not None,
          f"part detail lacks the vibration condition figures: {vib}")
    srv.get_json("/api/parts/4294967295", want=404)
    return part


def check_media(srv, line, part):
    """A part's files by media id: the bytes on disk, the waveform from the
    WAV, its envelope spectrum peaking at the bearing frequency the signal
    was modulated with; and never a file outside the media folder."""
    detail = srv.get_json(f"/api/parts/{part}")
    bearing = detail.get("bearing") or {}
    bpfo = bearing.get("bpfo_hz") or 0
    # [vibration.drive_end] in linetest: 29.95 Hz shaft, 9 balls 7.94 mm on 39.04 mm.
    check(abs(bpfo - 9 / 2 * 29.95 * (1 - 7.94 / 39.04)) < 1e-6, f"bearing frequencies: {bearing}")
    files = add_part_media(line.db, line.sim_dir, part, bpfo)
    detail = srv.get_json(f"/api/parts/{part}")
    listed = {m["kind"]: m for m in detail.get("media", [])}
    check(sorted(listed) == ["heatmap", "image", "vibration"], f"media listed: {listed}")
    check(all("path" not in m for m in listed.values()), "the API shows media paths")
    for kind, (mid, full) in files.items():
        status, hdrs, body = srv.request("GET", f"/api/parts/{part}/media/{mid}")
        with open(full, "rb") as f:
            want = f.read()
        check(status == 200 and body == want,
              f"media {kind} ({mid}): status {status}, {len(body)} bytes, want {len(want)}")
        check(listed.get(kind, {}).get("url") == f"/api/parts/{part}/media/{mid}",
              f"media {kind}: url {listed.get(kind)}")
    ctype = srv.request("GET", f"/api/parts/{part}/media/{files['image'][0]}")[1].get("Content-Type")
    check(ctype == "image/png", f"image served as {ctype}")

    vib = srv.get_json(f"/api/parts/{part}/vibration")
    with open(files["vibration"][1], "rb") as f:
        raw = f.read()[44:]
    want = [x[0] for x in __import__("struct").iter_unpack("<f", raw)]
    got = vib.get("waveform_g", [])
    check(vib.get("rate_hz") == 12000 and vib.get("samples") == len(want) and
          len(got) == len(want) and all(abs(a - b) <= 1e-6 for a, b in zip(got, want)),
          f"waveform: rate {vib.get('rate_hz')}, {len(got)} of {len(want)} samples, "
          f"first {got[:3]} want {want[:3]}")
    env = (vib.get("envelope") or {})
    mag, df = env.get("magnitude") or [0], env.get("df_hz") or 1
    peak = max(range(3, len(mag)), key=lambda i: mag[i], default=0)
    check(abs(peak * df - bpfo) <= df,
          f"envelope spectrum peaks at {peak * df:.1f} Hz, the signal repeats at BPFO {bpfo:.1f} Hz")

    # Another part's media id through this part: not found.
    other = srv.get_json("/api/inspections?verdict=accept&limit=1")["inspections"][0]["part_id"]
    status, _, _ = srv.request("GET", f"/api/parts/{other}/media/{files['image'][0]}")
    check(status == 404, f"media of part {part} via part {other}: status {status}, want 404")
    for target in (f"/api/parts/{part}/media/../../../../etc/passwd",
                   f"/api/parts/{part}/media/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
                   f"/api/parts/{part}/media/etc/passwd", f"/api/parts/{part}/media/-1",
                   f"/api/parts/{part}/media/99999999999", f"/api/parts/{part}/media/1x"):
        status, _, body = srv.request("GET", target)
        check(status in (400, 404) and b"root:" not in body,
              f"client path {target!r}: status {status}, want 400 or 404")
    # Rows whose path leads out of the media folder (a log edited by
    # someone else): refused, nothing outside served.
    con = sqlite3.connect(line.db)
    (media_dir,) = con.execute("SELECT value FROM meta WHERE key = 'media_dir'").fetchone()
    os.symlink("/etc/passwd", os.path.join(media_dir, "test-media", "link.png"))
    insp = con.execute("SELECT inspection_id FROM media WHERE id = ?",
                       (files["image"][0],)).fetchone()[0]
    bad = {}
    for path in ("../../../../../../etc/passwd", "/etc/passwd", "test-media/../../../etc/passwd",
                 "test-media/link.png", "test-media/./link.png", "test-media\\..\\x.png"):
        bad[path] = con.execute("INSERT INTO media (inspection_id, camera, kind, path, bytes)"
                                " VALUES (?, 'evil', 'image', ?, 1)", (insp, path)).lastrowid
    con.commit()
    for path, mid in bad.items():
        status, _, body = srv.request("GET", f"/api/parts/{part}/media/{mid}")
        check(status in (403, 404) and b"root:" not in body,
              f"media row with path {path!r}: status {status}, want 403")
    con.execute("DELETE FROM media WHERE camera = 'evil'")
    con.commit()
    con.close()


def check_kept_media(srv, db, part):
    """The files vigild itself kept with a rejected part: served by id as
    they are on disk, and the spectrum of its vibration window gives back
    the envelope figures the line logged for it."""
    con = sqlite3.connect(db)
    (media_dir,) = con.execute("SELECT value FROM meta WHERE key = 'media_dir'").fetchone()
    rows = con.execute("SELECT m.id, m.kind, m.path FROM media m JOIN inspections i"
                       " ON i.id = m.inspection_id WHERE i.part_id = ?", (part,)).fetchall()
    logged = con.execute("SELECT v.ftf_env, v.bpfo_env, v.bpfi_env, v.bsf_env FROM vibration v"
                         " JOIN inspections i ON i.id = v.inspection_id WHERE i.part_id = ?",
                         (part,)).fetchone()
    con.close()
    kinds = sorted(k for _, k, _ in rows)
    if not check("image" in kinds and "vibration" in kinds,
                 f"vigild kept {kinds} for rejected part {part}, want an image and its vibration"):
        return
    for mid, kind, path in rows:
        status, _, body = srv.request("GET", f"/api/parts/{part}/media/{mid}")
        with open(os.path.join(media_dir, path), "rb") as f:
            check(status == 200 and body == f.read(), f"kept {kind} {mid}: status {status}")
    env = srv.get_json(f"/api/parts/{part}/vibration").get("envelope") or {}
    got = [env.get(k) for k in ("ftf_env", "bpfo_env", "bpfi_env", "bsf_env")]
    check(logged is not None and all(g is not None and abs(g - w) <= 1e-4 * max(1, abs(w))
                                     for g, w in zip(got, logged)),
          f"envelope figures from the kept window {got}, logged {logged}")


def error_of(body):
    try:
        return json.loads(body).get("error", "")
    except (ValueError, AttributeError):
        return ""


def check_refusals(srv, db):
    """A part id that is not one is the client's mistake (400 naming it),
    whatever the route and method; no answer, 4xx or 5xx, names a path of
    the server's (the log's folder)."""
    folder = os.path.dirname(os.path.abspath(db)).encode()
    post = {"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"}
    for method, target, want, said in (
            ("POST", "/api/parts/abc/escape", 400, "'abc' is not a part id"),
            ("POST", "/api/parts/abc/review", 400, "'abc' is not a part id"),
            ("GET", "/api/parts/abc", 400, "'abc' is not a part id"),
            ("GET", "/api/parts/-1/vibration", 400, "'-1' is not a part id"),
            ("GET", "/api/parts/4294967296", 400, "'4294967296' is not a part id"),
            ("GET", "/api/parts/1/media/x1", 400, "'x1' is not a media id"),
            ("GET", "/api/parts/1/nothing", 404, "not found"),
            ("POST", "/api/parts/99999/escape", 404, "no inspection of part 99999"),
            ("POST", "/api/parts/99999/review", 404, "no inspection of part 99999"),
            ("GET", "/api/parts/99999", 404, "no inspection of part 99999"),
            ("GET", "/api/inspections?shift=lunch", 400, "the shifts: "),
            ("GET", "/api/inspections?limit=0", 400, "limit is a whole number from 1 to 10000"),
            ("GET", "/api/inspections?min_score=nan", 400, "min_score is a number from 0 to 1"),
            ("GET", "/api/inspections?since=2026-12-02&until=2026-12-01", 400,
             "since is not before until"),
            ("GET", "/api/inspections?min_score=0.9&max_score=0.1", 400,
             "min_score is above max_score")):
        body = json.dumps({"note": "x", "decision": "confirm"}).encode()
        status, _, answer = srv.request(method, target, body if method == "POST" else None,
                                        post if method == "POST" else None)
        check(status == want and said in error_of(answer) and folder not in answer,
              f"{method} {target}: {status} {answer[:200]!r}, want {want} saying {said!r}")
    status, _, answer = srv.request("GET", "/report?shift=lunch")
    check(status == 400 and b"the shifts: " in answer and folder not in answer,
          f"/report?shift=lunch: {status} {answer[:200]!r}")
    status = srv.get_json("/api/status")
    check(status.get("database") == os.path.basename(db),
          f"/api/status names the log {status.get('database')!r}, want its file name only")


def check_review(srv, db, part):
    note = "scratch is a lint fibre'; DROP TABLE reviews; --"
    status, hdrs, body = srv.review(part, {"decision": "overrule", "verdict": "accept", "note": note},
                                    token=None)
    check(status == 401, f"review without a token: status {status}, want 401")
    check("Bearer" in (hdrs.get("WWW-Authenticate") or ""), "401 lacks WWW-Authenticate: Bearer")
    for bad in ("", "x", TOKEN[:-1], TOKEN + "x", TOKEN.upper()):
        status, _, _ = srv.review(part, {"decision": "confirm"}, token=bad)
        check(status == 401, f"review with token {bad!r}: status {status}, want 401")
    status, _, body = srv.request("POST", f"/api/parts/{part}/review", b'{"decision":"confirm"}',
                                  {"Authorization": "Basic " + TOKEN})
    check(status == 401, f"review with a Basic header: status {status}, want 401")
    status, _, body = srv.review(part, {"decision": "overrule", "verdict": "maybe"})
    check(status == 400, f"overrule to 'maybe': status {status}, want 400")
    status, _, body = srv.review(part, {"decision": "overrule"})
    check(status == 400, f"overrule without a verdict: status {status}, want 400")
    status, _, body = srv.request("POST", f"/api/parts/{part}/review", b"not json",
                                  {"Authorization": "Bearer " + TOKEN})
    check(status == 400, f"review with a body that is not JSON: status {status}, want 400")
    # A review may carry a painted mask (up to 1 MiB + 16 kB in all): a
    # Content-Length over that is refused on the headers.
    status, _, body = srv.request("POST", f"/api/parts/{part}/review", None,
                                  {"Authorization": "Bearer " + TOKEN,
                                   "Content-Length": str(1024 * 1024 + 16 * 1024 + 1)})
    check(status == 413, f"review with a body over 1 MiB + 16 kB: status {status}, want 413")
    status, _, body = srv.review(4294967295, {"decision": "confirm"})
    check(status == 404, f"review of a part never inspected: status {status}, want 404")
    # An overrule to the verdict the line gave changes nothing and would
    # count as overruled in the shift report: 400, saying to confirm.
    line_verdict = srv.get_json(f"/api/parts/{part}")["inspection"]["verdict"]
    status, _, body = srv.review(part, {"decision": "overrule", "verdict": line_verdict})
    msg = error_of(body)
    check(status == 400 and f"judged it {line_verdict} already" in msg and "confirm" in msg,
          f"overrule of a {line_verdict} to {line_verdict}: status {status}, {msg!r}; want 400 "
          "saying the line's verdict and confirm")
    con = sqlite3.connect(db)
    n = con.execute("SELECT count(*) FROM reviews").fetchone()[0]
    con.close()
    check(n == 0, f"{n} reviews stored by refused requests")

    status, _, body = srv.review(part, {"decision": "overrule", "verdict": "accept", "note": note,
                                        "reviewer": "qa-test"})
    check(status == 200, f"overrule with the token: status {status}: {body[:200]!r}")
    con = sqlite3.connect(db)
    rows = con.execute("SELECT i.part_id, r.decision, r.verdict, r.note, r.reviewer FROM reviews r"
                       " JOIN inspections i ON i.id = r.inspection_id").fetchall()
    con.close()
    check(rows == [(part, "overrule", "accept", note, "qa-test")],
          f"the review in the database is {rows}")
    listed = srv.get_json(f"/api/inspections?part={part}")["inspections"]
    check(len(listed) == 1 and listed[0]["review"] == "overrule" and
          listed[0]["review_verdict"] == "accept" and listed[0]["review_note"] == note,
          f"the list does not show the review: {listed}")
    reviewed = srv.get_json("/api/inspections?reviewed=yes")["inspections"]
    check([r["part_id"] for r in reviewed] == [part], "reviewed=yes does not find the review")


HOSTILE = [
    "verdict=" + urllib.parse.quote("reject' OR '1'='1"),
    "verdict=" + urllib.parse.quote("reject; DROP TABLE inspections; --"),
    "class=" + urllib.parse.quote("none' UNION SELECT * FROM reviews --"),
    "min_score=" + urllib.parse.quote("0 OR 1=1"),
    "max_score=" + urllib.parse.quote("1); DELETE FROM inspections; --"),
    "min_score=nan", "max_score=inf", "min_score=2", "min_score=-0.5",
    "part=" + urllib.parse.quote("1 OR 1=1"), "part=-1", "part=99999999999", "part=0x10",
    "limit=-1", "limit=0", "limit=" + urllib.parse.quote("10; DROP TABLE inspections"),
    "reviewed=maybe", "verdict=%zz", "verdict=reject%00", "verdict=%ff%fe",
    urllib.parse.quote("verdict') --") + "=x",
]


def check_hostile(srv, db):
    for q in HOSTILE:
        status, _, body = srv.request("GET", "/api/inspections?" + q)
        ok = check(status == 400, f"hostile filter {q!r}: status {status}, want 400")
        # libsoup itself refuses a URI it cannot parse (a bad escape), with
        # an empty 400; every 400 of the server's own carries a message.
        if ok and body:
            try:
                msg = json.loads(body)["error"]
                check(isinstance(msg, str) and msg, f"hostile filter {q!r}: no message")
            except (ValueError, KeyError):
                fail(f"hostile filter {q!r}: the 400 is not a JSON error: {body[:100]!r}")
    traversal = [
        "/static/../../../../etc/passwd", "/static/..%2f..%2f..%2fetc%2fpasswd",
        "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/static/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/../../../etc/passwd", "/static/..\\..\\etc\\passwd", "/static/.%2e/.%2e/etc/passwd",
        "/static//etc/passwd", "/static/%00index.html", "/static/.hidden",
        "/static/review.js/../../../etc/passwd", "/vendor/../../../../etc/passwd",
        "/vendor/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    ]
    for t in traversal:
        status, _, body = srv.request("GET", t)
        check(status in (400, 404), f"path traversal {t!r}: status {status}, want 400 or 404")
        check(b"root:" not in body, f"path traversal {t!r} served /etc/passwd")
    long_query = "/api/inspections?verdict=reject&part=" + "1" * 8000
    status, _, _ = srv.request("GET", long_query)
    check(status in (414, 400), f"8 kB query string: status {status}, want 414")
    status, _, _ = srv.request("GET", "/api/inspections?" + "a=b&" * 700)
    check(status in (414, 400), f"2.8 kB query string: status {status}, want 414")
    status, _, _ = srv.request("PUT", "/api/inspections")
    check(status == 405, f"PUT: status {status}, want 405")
    status, _, _ = srv.request("DELETE", "/api/parts/1/review")
    check(status == 405, f"DELETE review: status {status}, want 405")
    con = sqlite3.connect(db)
    n = con.execute("SELECT count(*) FROM inspections").fetchone()[0]
    ok = con.execute("PRAGMA integrity_check").fetchone()[0]
    con.close()
    check(n == parts and ok == "ok", f"after hostile input: {n} rows, integrity {ok}")
    # The server still answers.
    srv.get_json("/api/inspections?limit=1")


METRIC_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def parse_metrics(text):
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            check(not line or line.startswith("# HELP ") or line.startswith("# TYPE "),
                  f"metrics: bad comment line {line!r}")
            continue
        m = METRIC_LINE.match(line)
        if not check(m, f"metrics: line is not in the text format: {line!r}"):
            continue
        samples[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return samples


def scrape(srv):
    status, hdrs, body = srv.request("GET", "/metrics")
    check(status == 200, f"/metrics: status {status}")
    check((hdrs.get("Content-Type") or "").startswith("text/plain"), "/metrics is not text/plain")
    return parse_metrics(body.decode())


def histogram(m, name, label=""):
    """[(le, cumulative count)] of one histogram, in the order scraped."""
    pre = name + "_bucket{" + (label + "," if label else "") + 'le="'
    return [(float(k[len(pre):-2]), v) for k, v in m.items() if k.startswith(pre)]


def check_metrics_running(srv, line):
    """Scrapes while vigil-sim runs: the PLC link is up and the camera
    delivers frames at some moment; returns the run's duration in s."""
    t0, link_up, fps = time.time(), set(), 0.0
    while line.sim.poll() is None and time.time() - t0 < 240:
        m = scrape(srv)
        link_up.add(m.get("vigil_plc_link_up"))
        fps = max(fps, m.get('vigil_camera_fps{camera="top"}', 0))
        time.sleep(0.5)
    check(1 in link_up, f"vigil_plc_link_up never 1 while the line ran: {link_up}")
    check(fps > 0, "vigil_camera_fps{camera=\"top\"} never above 0 while the line ran")
    return time.time() - t0


def check_metrics(srv, db, run_s):
    """After the run: every figure against the log read independently."""
    # The link goes down once vigil-sim has gone; the log is read after
    # that, so that the writer has caught up. The bound is for a busy
    # host, polled, not waited out.
    deadline = time.monotonic() + 60
    while True:
        m = scrape(srv)
        if m.get("vigil_plc_link_up") == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    con = sqlite3.connect(db)
    by_verdict = dict(con.execute("SELECT verdict, count(*) FROM inspections GROUP BY verdict"))
    latencies = [r[0] for r in con.execute("SELECT latency_ms FROM inspections")]
    infer = [r[0] for r in con.execute("SELECT infer_ms FROM inspections")]
    con.close()
    for v in ("accept", "reject", "marginal"):
        got = m.get(f'vigil_parts_total{{verdict="{v}"}}')
        check(got == by_verdict.get(v, 0),
              f"/metrics counts {got} {v} parts, the log {by_verdict.get(v, 0)}")
    check(m.get("vigil_latency_seconds_count") == parts,
          f"latency histogram counts {m.get('vigil_latency_seconds_count')}, want {parts}")
    buckets = histogram(m, "vigil_latency_seconds")
    check(len(buckets) == 13 and buckets[-1][0] == float("inf"),
          f"latency buckets: {buckets}")
    for le, count in buckets:
        want = sum(1 for x in latencies if x <= le * 1000 * (1 + 1e-12))
        check(count == want, f"latency bucket le={le}: {count} parts, the log has {want}")
    check(abs(m.get("vigil_latency_seconds_sum", 0) - sum(latencies) / 1000) <= 1e-6 * parts,
          f"latency sum {m.get('vigil_latency_seconds_sum')} s, the log {sum(latencies) / 1000} s")

    for stage in ("capture_wait", "inference", "plc_write", "db_write"):
        label = f'stage="{stage}"'
        b = histogram(m, "vigil_stage_seconds", label)
        counts = [c for _, c in b]
        check(len(b) == 17 and counts == sorted(counts) and b[-1][0] == float("inf"),
              f"stage {stage}: buckets not cumulative up to +Inf: {b}")
        check(m.get(f"vigil_stage_seconds_count{{{label}}}") == parts and counts[-1:] == [parts],
              f"stage {stage}: {m.get(f'vigil_stage_seconds_count{{{label}}}')} parts, "
              f"want {parts}")
        check(m.get(f"vigil_stage_seconds_sum{{{label}}}", 0) > 0, f"stage {stage}: sum is 0")
    infer_sum = m.get('vigil_stage_seconds_sum{stage="inference"}', 0)
    check(abs(infer_sum - sum(infer) / 1000) <= 1e-6 * parts,
          f"inference stage sum {infer_sum} s, the log's infer_ms add up to {sum(infer) / 1000} s")
    # A part's capture wait and inference both lie between its trigger and
    # its PLC result.
    inside = m.get('vigil_stage_seconds_sum{stage="capture_wait"}', 0) + infer_sum
    check(inside <= m.get("vigil_latency_seconds_sum", 0) + 1e-6,
          f"capture wait + inference ({inside} s) exceed trigger-to-PLC latency "
          f"({m.get('vigil_latency_seconds_sum')} s)")

    for q in ("inspect", "results", "log"):
        depth = m.get(f'vigil_queue_depth{{queue="{q}"}}')
        check(depth == 0, f"queue {q} holds {depth} after the run")
    check(m.get("vigil_plc_link_up") == 0, "vigil_plc_link_up still 1 after the PLC went away")
    frames = m.get('vigil_camera_frames_total{camera="top"}', 0)
    check(frames >= parts, f"camera top delivered {frames} frames for {parts} parts")
    check(m.get("vigil_cameras") == 1, f"vigil_cameras is {m.get('vigil_cameras')}")
    check(m.get("vigil_db_rows_written_total", 0) >= parts,
          f"db rows written {m.get('vigil_db_rows_written_total')} < {parts}")
    check(m.get("vigil_db_rows_failed_total") == 0, "db rows failed is not 0")
    lag = m.get("vigil_db_write_lag_seconds", -1)
    check(0 < lag < 10, f"db write lag {lag} s: a commit takes some time, and not 10 s here")
    lag_max = m.get("vigil_db_write_lag_max_seconds", -1)
    check(lag <= lag_max < 10, f"db write lag max {lag_max} s, last {lag} s")
    high = m.get("vigil_db_queue_high_water", 0)
    check(1 <= high <= 4096, f"db queue high water {high}: some row waited, within queue_depth")

    h = srv.get_json("/api/history")
    n = len(h.get("t", []))
    check(n > 0 and all(len(h.get(k, [])) == n for k in ("rate_per_min", "yield", "latency_ms")),
          f"/api/history arrays: {[(k, len(v)) for k, v in h.items() if isinstance(v, list)]}")
    check(h.get("t") == sorted(h.get("t", [])), "/api/history times are not in order")
    rates = [r for r in h.get("rate_per_min", []) if r is not None]
    top = max(rates, default=0)
    # Every part falls inside the 10 s window at some sample, unless the
    # run took longer; vigil-sim never goes faster than SIM_RATE.
    low = 0.5 * parts * 60 / max(run_s + 2, h.get("window_s", 10))
    check(low <= top <= 1.3 * SIM_RATE,
          f"/api/history's highest rate {top:.0f}/min is outside [{low:.0f}, {1.3 * SIM_RATE:.0f}]")
    check(all(0 <= y <= 1 for y in h.get("yield", []) if y is not None), "a yield outside 0..1")
    print(f"metrics: {len(m)} samples, {sum(by_verdict.values())} parts by verdict, "
          f"history {n} points, top rate {top:.0f}/min")


def check_page(srv):
    status, hdrs, body = srv.request("GET", "/")
    check(status == 200 and b"Vigil defect log" in body, f"GET /: status {status}")
    check((hdrs.get("Content-Type") or "").startswith("text/html"), "GET / is not text/html")
    check("default-src 'self'" in (hdrs.get("Content-Security-Policy") or ""), "no CSP header")
    for name, ctype in (("review.js", "text/javascript"), ("review.css", "text/css")):
        status, hdrs, body = srv.request("GET", "/static/" + name)
        check(status == 200 and (hdrs.get("Content-Type") or "").startswith(ctype),
              f"/static/{name}: status {status}, type {hdrs.get('Content-Type')}")
    status, _, _ = srv.request("GET", "/static/nosuch.js")
    check(status == 404, f"/static/nosuch.js: status {status}, want 404")
    # The charting library, from where `make web-deps` puts it; only its
    # two files are served from there.
    uplot = os.path.join(build, "web-vendor", "node_modules", "uplot", "dist")
    status, hdrs, body = srv.request("GET", "/vendor/uPlot.iife.min.js")
    if os.path.isfile(os.path.join(uplot, "uPlot.iife.min.js")):
        check(status == 200 and (hdrs.get("Content-Type") or "").startswith("text/javascript"),
              f"/vendor/uPlot.iife.min.js: status {status}")
    else:
        check(status == 404, f"/vendor/uPlot.iife.min.js without the library: status {status}")
    for other in ("package.json", "uPlot.d.ts", "..%2f..%2fpackage.json"):
        status, _, _ = srv.request("GET", "/vendor/" + other)
        check(status in (400, 404), f"/vendor/{other}: status {status}, want 404")


def check_bad_configs(tmp, db):
    """A bad [review] section stops vigild with FILE:LINE: [review] KEY."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    cases = [
        ("port = 70000", "[review] port"),
        ("tokne = abcdefghijkl", "[review] tokne: unknown key"),
        ("token = short", "[review] token: the token is shorter"),
        ("token = abcdefghijkl\ntoken_file = /nonexistent", "[review] token_file"),
        ("token_file = /nonexistent/token", "[review] token_file"),
        ("listen = localhost", "[review] listen: 'localhost' is not an IP address"),
        ("static_dir = /nonexistent", "[review] static_dir"),
        (f"port = {taken.getsockname()[1]}", "cannot listen"),
    ]
    for i, (body, want) in enumerate(cases):
        path = os.path.join(tmp, f"bad-{i}.conf")
        with open(path, "w") as f:
            f.write(f"[database]\npath = {db}\n\n[review]\n{body}\n")
        r = Vigild.once(build, path, ["--review-only"], timeout=30)
        out = r.stdout + r.stderr
        check(r.returncode != 0 and f"{path}:" in out and want in out,
              f"bad [review] {body!r}: rc {r.returncode}, output {out.strip()[-300:]!r}, "
              f"want {want!r}")
    taken.close()


def check_charts_dir(tmp, db):
    """charts_dir as README and docs/operations.md give it: the folder
    `make web-deps` fills (an npm prefix), uPlot's package folder or its
    dist folder all serve the library; a folder without it is a warning at
    start naming FILE:LINE: [review] charts_dir, not a silent 404."""
    dist = os.path.join(tmp, "charts", "prefix", "node_modules", "uplot", "dist")
    os.makedirs(dist)
    for name in ("uPlot.iife.min.js", "uPlot.min.css"):
        with open(os.path.join(dist, name), "w") as f:
            f.write(f"/* {name} for the test */\n")
    links = os.path.join(tmp, "charts", "links")
    empty = os.path.join(tmp, "charts", "empty")
    os.makedirs(links)
    os.makedirs(empty)
    for name in ("uPlot.iife.min.js", "uPlot.min.css"):
        os.symlink(os.path.join(dist, name), os.path.join(links, name))
    cases = [(os.path.join(tmp, "charts", "prefix"), True), (os.path.dirname(dist), True),
             (dist, True), (empty, False), (links, False)]
    for i, (folder, ok) in enumerate(cases):
        path = os.path.join(tmp, f"charts-{i}.conf")
        with open(path, "w") as f:
            f.write(f"[database]\npath = {db}\n\n[review]\nlisten = 127.0.0.1\nport = 0\n"
                    f"charts_dir = {folder}\n")
        vigild = Vigild(build, path, os.path.join(tmp, f"charts-{i}.log"), ["--review-only"])
        try:
            # The warning comes before the server says where it serves.
            status, _, body = Server(vigild.review_port()).request("GET", "/vendor/uPlot.iife.min.js")
        finally:
            rc = vigild.stop(timeout=30)
        log = vigild.text()
        warned = f"{path}:7: [review] charts_dir:" in log
        if ok:
            check(status == 200 and b"uPlot.iife.min.js for the test" in body and not warned,
                  f"charts_dir = {folder}: status {status}, warned {warned}")
        else:
            check(status == 404 and warned and (folder + "/uPlot.iife.min.js") in log,
                  f"charts_dir = {folder}: status {status}, no warning naming the file: {log[-400:]!r}")
        check(rc == 0, f"vigild --review-only with charts_dir = {folder} exited with {rc}")


def main():
    with workdir("vigil-review-") as tmp:
        line = Line(build, root, tmp, parts, seed=777, split="review", extra_conf=REVIEW_CONF,
                    rate=SIM_RATE).start()
        db, conf = line.db, line.conf
        try:
            srv = Server(line.vigild.review_port())
            status = srv.get_json("/api/status")
            check(status.get("line") is True and status.get("writes_enabled") is True,
                  f"/api/status while running: {status}")
            # the model judging parts, and on what (linetest's backend = opencv)
            check(status.get("model_version") == "synthetic-2" and
                  status.get("model_backend") == "opencv" and
                  status.get("model_precision") == "fp32", f"/api/status model: {status}")
            info = {k: v for k, v in scrape(srv).items() if k.startswith("vigil_model_info")}
            check(info == {'vigil_model_info{version="synthetic-2",backend="opencv",'
                           'precision="fp32"}': 1.0}, f"/metrics vigil_model_info: {info}")
            run_s = check_metrics_running(srv, line)
            sim_rc = line.wait_sim()
            check(sim_rc == 0, f"vigil-sim exited with {sim_rc}")
            # vigil-sim checked every row; the server reads the same file.
            status = srv.get_json("/api/status")
            check(status.get("parts") == parts, f"/api/status counts {status.get('parts')} parts")
            check_metrics(srv, db, run_s)
            check_page(srv)
            part = check_list_and_detail(srv, db)
            if part is not None:
                rejects = srv.get_json("/api/inspections?verdict=reject")["inspections"]
                check_kept_media(srv, db, rejects[-1]["part_id"])
                check_media(srv, line, part)
                check_review(srv, db, part)
            check_hostile(srv, db)
            check_refusals(srv, db)
        finally:
            vigild_rc = line.stop()
        check(vigild_rc == 0, f"vigild exited with {vigild_rc}")
        # vigil-sim took every result, the last one included: vigild saw
        # each acknowledged before the simulated PLC went away.
        con = sqlite3.connect(db)
        stops = con.execute("SELECT message FROM events WHERE kind = 'plc-stop'").fetchall()
        con.close()
        check(stops == [], f"a normal run's end logged plc-stop: {stops}")

        # The page over the finished log, without the line.
        vigild = Vigild(build, conf, os.path.join(tmp, "review-only.log"), ["--review-only"])
        try:
            srv = Server(vigild.review_port())
            status = srv.get_json("/api/status")
            check(status.get("line") is False and status.get("inspections") == parts,
                  f"--review-only status: {status}")
            m = parse_metrics(srv.request("GET", "/metrics")[2].decode())
            check(m.get("vigil_line_running") == 0, "--review-only metrics claim a line")
            h = srv.get_json("/api/history")
            check(h.get("line") is False and h.get("t") == [], f"--review-only history: {h}")
            status, _, _ = srv.review(part, {"decision": "confirm"}, token="wrong-token-123")
            check(status == 401, f"--review-only review with a wrong token: {status}")
            # A log that cannot be read: 500, its reason (which names the
            # file) in vigild's log, not in the answer.
            os.rename(db, db + ".away")
            try:
                for target in ("/api/inspections", f"/api/parts/{part}", "/api/escapes",
                               "/api/facets", "/report?shift=current"):
                    status, _, answer = srv.request("GET", target)
                    check(status == 500 and os.path.dirname(db).encode() not in answer
                          and b"vigil.db" not in answer,
                          f"GET {target} of a log gone: {status} {answer[:200]!r}, want 500 "
                          "without its path")
            finally:
                os.rename(db + ".away", db)
        finally:
            rc = vigild.stop(timeout=30)
        check(rc == 0, f"vigild --review-only exited with {rc}")
        check_bad_configs(tmp, db)
        check_charts_dir(tmp, db)
        checks.finish()
    print(f"PASS: review server over {parts} parts")


main()
