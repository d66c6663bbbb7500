#!/usr/bin/python3
"""Tracing escapes through the review server's API (issue 23), over a log of
two real runs made on purpose (tracetest.py: two stations, two jobs, two
model versions), served by vigild --review-only.

Checks that each filter (since/until, shift, job, model, station) narrows
the list to exactly the rows the database holds for it; /api/facets and
/api/shifts; the CSV of a view round-trips through Python's csv module with
a note holding commas, quotes and line breaks, and carries the same rows as
the list; an escape marked with the token is stored and listed with its
neighbours on its own station; bad filter values are 400 naming the field.

usage: test_review_trace.py BUILD_DIR SOURCE_ROOT [PARTS]
"""
import csv
import datetime
import io
import json
import os
import sqlite3
import subprocess
import sys
import urllib.parse

from linetest import Checks, Vigild, workdir
from tracetest import TOKEN, Server, two_station_log

build, root = sys.argv[1], sys.argv[2]
parts = int(sys.argv[3]) if len(sys.argv) > 3 else 30
checks = Checks()
fail, check = checks.fail, checks.check


def iso_utc(us):
    t = datetime.datetime.fromtimestamp(us / 1e6, datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def ids(srv, **q):
    q.setdefault("limit", 10000)
    got = srv.get_json("/api/inspections?" + urllib.parse.urlencode(q)).get("inspections", [])
    return [r["id"] for r in got]


def db_ids(db, where="1", args=()):
    con = sqlite3.connect(db)
    r = [x[0] for x in con.execute(f"SELECT id FROM inspections WHERE {where} ORDER BY id", args)]
    con.close()
    return r


def check_filters(srv, db):
    every = ids(srv)
    check(every == db_ids(db) and len(every) == 2 * parts,
          f"unfiltered list has {len(every)} rows, want {2 * parts}")
    for q, where, args in (
            ({"station": "press-1"}, "station = ?", ("press-1",)),
            ({"station": "press-2"}, "station = ?", ("press-2",)),
            ({"job": "0"}, "job = 0", ()),
            ({"job": "1"}, "job = 1", ()),
            ({"model": "synthetic-1"}, "model_version = ?", ("synthetic-1",)),
            ({"model": "synthetic-2", "station": "press-2"}, "0", ()),
            ({"station": "press-9"}, "0", ())):
        want = db_ids(db, where, args)
        got = ids(srv, **q)
        check(got == want, f"filter {q}: {len(got)} rows, want {len(want)}")
    row = srv.get_json("/api/inspections?station=press-2&limit=1")["inspections"][0]
    check(row.get("station") == "press-2" and row.get("job") == 1 and
          row.get("model_version") == "synthetic-1", f"a row lacks station/job/model: {row}")

    # since/until: [since, until) on the wall clock, given to the microsecond.
    con = sqlite3.connect(db)
    times = [t for (t,) in con.execute("SELECT t_wall_us FROM inspections ORDER BY id")]
    con.close()
    lo, hi = times[parts // 2], times[parts + parts // 2]
    want = db_ids(db, "t_wall_us >= ? AND t_wall_us < ?", (lo, hi))
    got = ids(srv, since=iso_utc(lo), until=iso_utc(hi))
    check(got == want and len(want) > 0, f"since/until: {len(got)} rows, want {len(want)}")
    got = ids(srv, since=iso_utc(lo), until=iso_utc(hi), station="press-1")
    check(got == db_ids(db, "t_wall_us >= ? AND t_wall_us < ? AND station = 'press-1'",
                        (lo, hi)), "since/until with station")


def check_shifts(srv, db):
    sh = srv.get_json("/api/shifts?n=6")
    occ = sh.get("occurrences", [])
    check(sh.get("plan") == "early 06:00, late 14:00, night 22:00" and len(occ) == 6,
          f"/api/shifts: {sh}")
    check(all(a["start_us"] == b["end_us"] for a, b in zip(occ, occ[1:])),
          "shift occurrences are not back to back, newest first")
    con = sqlite3.connect(db)
    times = [t for (t,) in con.execute("SELECT t_wall_us FROM inspections")]
    con.close()
    with_rows = 0
    for o in occ:
        want = db_ids(db, "t_wall_us >= ? AND t_wall_us < ?", (o["start_us"], o["end_us"]))
        got = ids(srv, shift=o["label"])
        check(got == want, f"shift {o['label']}: {len(got)} rows, want {len(want)}")
        with_rows += bool(want)
    # The runs took seconds: their rows lie in one or two (at a change of
    # shift) of the occurrences just listed, never none.
    check(with_rows in (1, 2) and all(occ[-1]["start_us"] <= t for t in times),
          f"{with_rows} listed shifts hold the runs' rows")
    # A shift's name alone: its local hours on every day.
    check(sh.get("names") == ["early", "late", "night"], f"/api/shifts names: {sh.get('names')}")
    con = sqlite3.connect(db)
    rows = con.execute("SELECT id, t_wall_us FROM inspections ORDER BY id").fetchall()
    con.close()

    def daily(t_us):
        hm = datetime.datetime.fromtimestamp(t_us // 1_000_000).strftime("%H:%M")
        return "early" if "06:00" <= hm < "14:00" else "late" if "14:00" <= hm < "22:00" else "night"
    total = 0
    for name in ("early", "late", "night"):
        got = ids(srv, shift=name)
        want = [i for i, t in rows if daily(t) == name]
        check(got == want, f"shift {name} (every day): {len(got)} rows, want {len(want)}")
        total += len(got)
    check(total == len(rows), "the shifts by name do not cover the log")
    got = ids(srv, shift="current")
    check(got == db_ids(db, "t_wall_us >= ?", (occ[0]["start_us"],)), "shift=current")


def check_bad(srv):
    for q, field in (({"job": "one"}, "job"), ({"job": "-1"}, "job"), ({"job": "70000"}, "job"),
                     ({"since": "yesterday"}, "since"), ({"until": "2026-13-40"}, "until"),
                     ({"shift": "2026-12-06 lunch"}, "shift"),
                     ({"shift": "2026-02-30 night"}, "shift"),
                     ({"shift": "x" * 80}, "shift"),
                     ({"model": "v1\x01"}, "model"), ({"station": "s" * 200}, "station"),
                     ({"stations": "press-1"}, "stations")):
        for path in ("/api/inspections?", "/api/inspections.csv?"):
            status, _, body = srv.request("GET", path + urllib.parse.urlencode(q))
            try:
                err = json.loads(body).get("error", "")
            except ValueError:
                err = ""
            check(status == 400 and field in err,
                  f"{path}{q}: status {status} {body[:120]!r}, want 400 naming {field}")


def check_facets(srv):
    f = srv.get_json("/api/facets")
    got = {k: sorted((v["value"], v["rows"]) for v in f.get(k, [])) for k in
           ("job", "model_version", "station")}
    want = {"job": [("0", parts), ("1", parts)],
            "model_version": [("synthetic-1", parts), ("synthetic-2", parts)],
            "station": [("press-1", parts), ("press-2", parts)]}
    check(got == want, f"/api/facets: {got}, want {want}")
    check(f["station"][0]["value"] == "press-2", "facets are not most recent first")


def check_csv(srv, db):
    rows = srv.get_json("/api/inspections?station=press-2&limit=10000")["inspections"]
    part = rows[3]["part_id"]
    # An overrule names a verdict other than the line's (the same one is
    # refused: nothing to overrule).
    right = "accept" if rows[3]["verdict"] != "accept" else "reject"
    note = 'burr, on the "left" flange,\nfound at goods-in; 2nd line\r\nend'
    status, _, body = srv.request(
        "POST", f"/api/parts/{part}/review",
        json.dumps({"decision": "overrule", "verdict": right, "note": note}).encode(),
        {"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"})
    check(status == 200, f"review with a note: {status} {body[:200]!r}")
    status, hdrs, body = srv.request("GET", "/api/inspections.csv?station=press-2")
    check(status == 200 and hdrs.get("Content-Type", "").startswith("text/csv"),
          f"CSV: status {status}, type {hdrs.get('Content-Type')}")
    check("attachment" in (hdrs.get("Content-Disposition") or ""),
          f"CSV is not an attachment: {hdrs.get('Content-Disposition')}")
    table = list(csv.DictReader(io.StringIO(body.decode(), newline="")))
    check([int(r["id"]) for r in table] == [r["id"] for r in rows],
          f"CSV rows {len(table)} differ from the list's {len(rows)}")
    mine = [r for r in table if int(r["part_id"]) == part]
    check(len(mine) == 1 and mine[0]["review_note"] == note and
          mine[0]["review"] == "overrule" and mine[0]["review_verdict"] == right,
          f"the note did not round-trip through the CSV: {mine}")
    check(all(r["station"] == "press-2" and r["job"] == "1" and r["model_version"] == "synthetic-1"
              and r["shift"] for r in table), "CSV columns station/job/model/shift wrong")
    # No limit given: every row of the view, not the list's 200.
    status, _, body = srv.request("GET", "/api/inspections.csv")
    n = len(list(csv.DictReader(io.StringIO(body.decode(), newline=""))))
    check(n == 2 * parts, f"CSV of the whole log has {n} rows, want {2 * parts}")


def escape(srv, part, payload, token=TOKEN):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = "Bearer " + token
    return srv.request("POST", f"/api/parts/{part}/escape", json.dumps(payload).encode(),
                       headers)


def check_escapes(srv, db):
    rows = srv.get_json("/api/inspections?station=press-2&limit=10000")["inspections"]
    first, mid = rows[0], rows[parts // 2]
    status, _, _ = escape(srv, mid["part_id"], {"note": "x"}, token=None)
    check(status == 401, f"escape without a token: {status}, want 401")
    status, _, _ = escape(srv, mid["part_id"], {"note": "x"}, token="wrong-token-12345")
    check(status == 401, f"escape with a wrong token: {status}, want 401")
    status, _, _ = escape(srv, mid["part_id"], {"reporter": "qa"})
    check(status == 400, f"escape without a note: {status}, want 400")
    status, _, _ = escape(srv, 4294967295, {"note": "x"})
    check(status == 404, f"escape of a part never inspected: {status}, want 404")
    con = sqlite3.connect(db)
    check(con.execute("SELECT count(*) FROM escapes").fetchone()[0] == 0,
          "refused requests stored an escape")
    con.close()

    note = 'customer claim 4711: "crack", at the bore'
    status, _, body = escape(srv, mid["part_id"], {"note": note, "reporter": "qa-anna"})
    check(status == 200, f"escape: {status} {body[:200]!r}")
    status, _, body = escape(srv, first["part_id"], {"note": "goods-in"})
    check(status == 200, f"escape of run 2's first part: {status} {body[:200]!r}")
    con = sqlite3.connect(db)
    stored = con.execute("SELECT inspection_id, note, reporter FROM escapes ORDER BY id").fetchall()
    con.close()
    check(stored == [(mid["id"], note, "qa-anna"), (first["id"], "goods-in", "web")],
          f"escapes stored: {stored}")

    esc = srv.get_json("/api/escapes?neighbours=2").get("escapes", [])
    check(len(esc) == 2 and esc[0]["inspection_id"] == first["id"] and
          esc[1]["inspection_id"] == mid["id"], f"/api/escapes order: {esc}")
    if len(esc) == 2:
        e = esc[1]
        check(e["note"] == note and e["reporter"] == "qa-anna" and e["part_id"] == mid["part_id"],
              f"escape fields: {e}")
        nb = [r["id"] for r in e["neighbours"]]
        want = [r["id"] for r in rows[parts // 2 - 2: parts // 2 + 3]]
        check(nb == want, f"neighbours {nb}, want {want}")
        check(all("verdict" in r and "score" in r for r in e["neighbours"]),
              "neighbours lack verdict and score")
        # Run 2's first part: the rows before it are press-1's, another
        # station, so none of them is its neighbour.
        nb = [r["id"] for r in esc[0]["neighbours"]]
        check(nb == [r["id"] for r in rows[:3]], f"neighbours at a station's start {nb}")
    srv.get_json("/api/escapes?neighbours=99", want=400)
    status, _, _ = srv.request("GET", f"/api/parts/{mid['part_id']}/escape")
    check(status == 405, f"GET of the escape route: {status}, want 405")


def vigilctl(db, *args):
    return subprocess.run([os.path.join(build, "tools", "vigilctl"), "--db", db, *args],
                          capture_output=True, text=True, timeout=60)


def check_vigilctl(srv, db):
    """The same filters and the escape report from the command line."""
    for args, where, qargs in ((["--station", "press-2"], "station = 'press-2'", ()),
                               (["--job", "0"], "job = 0", ()),
                               (["--model", "synthetic-1", "--station", "press-1"], "0", ()),
                               (["--shift", "current"], "t_wall_us >= ?",
                                (srv.get_json("/api/shifts?n=1")["occurrences"][0]["start_us"],)),
                               (["--shift", "night", "--station", "press-1"],
                                "station = 'press-1' AND (strftime('%H:%M', t_wall_us / 1000000,"
                                " 'unixepoch', 'localtime') >= '22:00' OR strftime('%H:%M',"
                                " t_wall_us / 1000000, 'unixepoch', 'localtime') < '06:00')",
                                ())):
        p = vigilctl(db, "list", "--format", "csv", *args)
        got = list(csv.DictReader(io.StringIO(p.stdout)))
        want = db_ids(db, where, qargs)
        check(p.returncode == 0 and len(got) == len(want),
              f"vigilctl list {args}: rc {p.returncode}, {len(got)} rows, want {len(want)}: "
              f"{p.stderr}")
        if args[0] == "--station" and got:
            check(all(r["station"] == "press-2" and r["job"] == "1" for r in got),
                  "vigilctl list CSV lacks station/job")
    for args, name in ((["--job", "x"], "--job"), (["--job", "-3"], "--job"),
                       (["--shift", "2026-12-06 lunch"], "--shift"),
                       (["--shift", "tomorrow"], "--shift"), (["--station", ""], "--station")):
        for cmd in ("list", "export", "pareto"):
            p = vigilctl(db, cmd, *args)
            check(p.returncode == 2 and name in p.stderr,
                  f"vigilctl {cmd} {args}: rc {p.returncode}, want 2 naming {name}: {p.stderr}")

    rows = srv.get_json("/api/inspections?station=press-1&limit=10000")["inspections"]
    p = vigilctl(db, "escapes", "--format", "json", "--neighbours", "2")
    try:
        esc = json.loads(p.stdout)
    except ValueError:
        esc = []
    check(p.returncode == 0 and len(esc) == 2, f"vigilctl escapes json: {p.stdout[:200]} {p.stderr}")
    if len(esc) == 2:
        parts = esc[1]["parts"]
        check(len(parts) == 5 and [x["escape"] for x in parts] == [False, False, True, False, False]
              and esc[1]["reporter"] == "qa-anna", f"vigilctl escapes neighbours: {esc[1]}")
    p = vigilctl(db, "escapes", "--format", "csv", "--neighbours", "1")
    table = list(csv.DictReader(io.StringIO(p.stdout)))
    check(p.returncode == 0 and [r["position"] for r in table] == ["0", "1", "-1", "0", "1"],
          f"vigilctl escapes csv positions: {[r['position'] for r in table]} {p.stderr}")
    check(any(r["note"].startswith('customer claim 4711: "crack"') for r in table),
          "vigilctl escapes csv lost the note's quotes")
    p = vigilctl(db, "escapes", "--mark", "--part", str(rows[0]["part_id"]))
    check(p.returncode == 2 and "--note" in p.stderr, f"escapes --mark without a note: {p.stderr}")
    p = vigilctl(db, "escapes", "--mark", "--part", "4294967295", "--note", "x")
    check(p.returncode == 1 and "no inspection" in p.stderr, f"escapes --mark of no part: {p.stderr}")
    p = vigilctl(db, "escapes", "--mark", "--part", str(rows[0]["part_id"]), "--note",
                 "line 2, goods-in", "--reviewer", "qa-ben")
    check(p.returncode == 0, f"vigilctl escapes --mark: {p.stderr}")
    esc = srv.get_json("/api/escapes?neighbours=0")["escapes"]
    check(len(esc) == 3 and esc[0]["reporter"] == "qa-ben" and esc[0]["note"] == "line 2, goods-in"
          and len(esc[0]["neighbours"]) == 1, f"the escape vigilctl marked: {esc[:1]}")


def check_bad_station(tmp, conf):
    """A bad [database] station stops vigild with FILE:LINE: [database] station."""
    with open(conf) as f:
        text = f.read()
    for i, bad in enumerate(("station = " + "s" * 70, "station =")):
        path = os.path.join(tmp, f"bad-station-{i}.conf")
        with open(path, "w") as f:
            f.write(text.replace("station = press-2", bad))
        r = Vigild.once(build, path, timeout=30)
        out = r.stdout + r.stderr
        check(r.returncode != 0 and f"{path}:" in out and "[database] station" in out,
              f"bad {bad[:20]!r}: rc {r.returncode}, output {out.strip()[-300:]!r}")


def check_users(tmp, db):
    """With per-user tokens: a viewer may read the escapes and the CSV but
    not mark one (403); a reviewer marks one, named as its reporter whatever
    the body says; with read_requires_token, no token reads nothing (401)."""
    users = os.path.join(tmp, "users")
    tok = {name: subprocess.run([os.path.join(build, "tools", "vigilctl"), "user", "add", name,
                                 "--role", role, "--users", users], capture_output=True,
                                text=True, timeout=60, check=True).stdout.strip()
           for name, role in (("vera", "viewer"), ("rita", "reviewer"))}
    conf = os.path.join(tmp, "users.conf")
    with open(conf, "w") as f:
        f.write(f"[database]\npath = {db}\n\n[review]\nlisten = 127.0.0.1\nport = 0\n"
                f"users_file = {users}\nread_requires_token = true\n")
    vigild = Vigild(build, conf, os.path.join(tmp, "users.log"), ["--review-only"])
    try:
        srv = Server(vigild.review_port(), check)
        for target in ("/api/escapes", "/api/inspections.csv", "/api/facets", "/api/shifts"):
            status, _, _ = srv.request("GET", target)
            check(status == 401, f"read_requires_token: GET {target} without a token: {status}")
            status, _, _ = srv.request("GET", target, headers={"Authorization": "Bearer " + tok["vera"]})
            check(status == 200, f"GET {target} with a viewer's token: {status}")
        status, _, body = srv.request("GET", "/api/inspections?limit=1",
                                      headers={"Authorization": "Bearer " + tok["vera"]})
        part = json.loads(body)["inspections"][0]["part_id"]
        before = srv.request("GET", "/api/escapes", headers={"Authorization": "Bearer " + tok["vera"]})
        n = len(json.loads(before[2])["escapes"])
        status, _, body = escape(srv, part, {"note": "viewer"}, token=tok["vera"])
        check(status == 403 and b"reviewer" in body, f"a viewer's escape: {status} {body[:200]!r}")
        status, _, body = escape(srv, part, {"note": "line 3 claim", "reporter": "someone"},
                                 token=tok["rita"])
        check(status == 200, f"a reviewer's escape: {status} {body[:200]!r}")
        _, _, body = srv.request("GET", "/api/escapes", headers={"Authorization": "Bearer " + tok["vera"]})
        esc = json.loads(body)["escapes"]
        check(len(esc) == n + 1 and esc[0]["reporter"] == "rita" and esc[0]["note"] == "line 3 claim",
              f"the reviewer's escape: {esc[:1]}")
    finally:
        rc = vigild.stop(timeout=30)
    check(rc == 0, f"vigild --review-only with users exited with {rc}")


def main():
    with workdir("vigil-trace-") as tmp:
        db, conf = two_station_log(build, root, tmp, parts)
        vigild = Vigild(build, conf, os.path.join(tmp, "review-only.log"), ["--review-only"])
        try:
            srv = Server(vigild.review_port(), check)
            check_filters(srv, db)
            check_shifts(srv, db)
            check_bad(srv)
            check_facets(srv)
            check_csv(srv, db)
            check_escapes(srv, db)
            check_vigilctl(srv, db)
        finally:
            rc = vigild.stop(timeout=30)
        check(rc == 0, f"vigild --review-only exited with {rc}")
        check_bad_station(tmp, conf)
        check_users(tmp, db)
        checks.finish()
    print(f"PASS: tracing over two runs of {parts} parts")


main()
