#!/usr/bin/python3
"""vigilctl --central over a real PostgreSQL that this test starts
(tests/pgtest.py): the schema created by `vigilctl --central ... upgrade`
(the same migrations a station's forwarder runs), filled with known rows of
four stations on two sites in the schema's format (docs/plant-schema.md)
through psycopg2, then list and its filters, show, export, stations and a
central review checked against those rows and the tables; and the errors:
no schema yet, a wrong password, an unreachable server, a newer schema,
hostile filters. The password travels in a passfile (PGPASSFILE), never on
the command line, and no message prints it.

  rows     the above, over rows the test writes
  station  one vigild station with [plant] on a vigil-sim line forwards
           to the server: vigilctl --central list of the station equals its
           local log (ids, parts, verdicts, times to the microsecond),
           stations counts its rows and yield, and a central review written
           by vigilctl flows back into the station's log.
  page     vigild --review-only with [review] central over the rows
           scenario's data: /api/plant/stations and /api/plant/inspections
           filtered by site, line, station, verdict, since and until; a
           central review POSTed (401 without the token); bad queries 400,
           the server down 502 on one line without the password.

usage: test_central.py BUILD_DIR SOURCE_ROOT rows|station|page
"""
import csv
import datetime
import io
import json
import os
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import linetest  # noqa: E402
import pgtest  # noqa: E402

CTL = os.path.join(sys.argv[1], "tools", "vigilctl")
PASSWORD = "s3cret-central"
UTC = datetime.timezone.utc
checks = linetest.Checks()

# Four stations: (site, line, station) and how many inspections each logs.
STATIONS = [("north", "L1", "S1", 12), ("north", "L1", "S2", 8), ("north", "L2", "S1", 6),
            ("south", "L1", "S1", 10)]


def us(t):
    """A datetime as µs since the epoch, exactly."""
    return (t - datetime.datetime(1970, 1, 1, tzinfo=UTC)) // datetime.timedelta(microseconds=1)


def run(env, conninfo, *args, ok=True):
    p = subprocess.run([CTL, "--central", conninfo, *args], capture_output=True, text=True,
                       timeout=60, env=env)
    if ok and p.returncode != 0:
        linetest.fail(f"vigilctl --central {' '.join(args)}: rc {p.returncode}: {p.stderr}")
    return p


def plant_db(pg, tmp):
    """The role vigil and its database plant on pg, the password in a
    passfile (PGPASSFILE in the env returned), as docs/operations.md says:
    the conninfo on the command line carries none. (env, conninfo,
    passfile)."""
    pg.create_role("vigil", PASSWORD, "plant")
    passfile = pg.passfile(tmp, "vigil", PASSWORD)
    return (dict(os.environ, PGPASSFILE=passfile, TZ="UTC"), pg.conninfo("vigil", None, "plant"),
            passfile)


def office_conf(tmp, central, token):
    """The plant office's vigild --review-only configuration with [review]
    central = central, over a local log of its own; its path."""
    log = os.path.join(tmp, "office.db")
    if not os.path.exists(log):
        subprocess.run([CTL, "--db", log, "upgrade"], check=True, capture_output=True,
                       timeout=60)
    path = os.path.join(tmp, "office.conf")
    with open(path, "w") as f:
        f.write(f"[database]\npath = {log}\n\n[review]\nlisten = 127.0.0.1\n"
                f"port = 0\ntoken = {token}\ncentral = {central}\n")
    return path


def fill(pg, conninfo_pw):
    """Known rows, written as the forwarder writes them: today's between
    midnight (UTC, the test's TZ) and now, older ones two days back.
    Returns the inspections as dicts keyed by (site, line, station, id)."""
    now = datetime.datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    rows = {}
    conn = pg.connect("plant", user="vigil", password=PASSWORD)
    with conn.cursor() as cur:
        for si, (site, line, station, n) in enumerate(STATIONS):
            for i in range(1, n + 1):
                if i <= n // 2:
                    # today: spread inside [midnight, now), microseconds kept
                    t = midnight + (now - midnight) * (i / (n + 1))
                else:
                    t = midnight - datetime.timedelta(days=2, seconds=i, microseconds=7 * i)
                verdict = ["accept", "accept", "reject", "marginal"][(i + si) % 4]
                cls = {"accept": "none", "reject": "surface", "marginal": "vibration"}[verdict]
                r = dict(site=site, line=line, station=station, local_id=i, t=t,
                         part_id=1000 * (si + 1) + i, verdict=verdict, defect_class=cls,
                         score=round(0.05 + 0.9 * i / n, 6), model=f"m-{site}-{si % 2}",
                         job=si)
                rows[(site, line, station, i)] = r
                cur.execute(
                    "INSERT INTO inspections (site, line, station, local_id, t, part_id,"
                    " trigger_counter, seq, verdict, verdict_code, defect_class, flags, score,"
                    " vision_score, signal_score, latency_ms, infer_ms, model_version, job,"
                    " local_station) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,0,%s,%s,%s,2.5,"
                    " 1.5,%s,%s,%s)",
                    (site, line, station, i, t, r["part_id"], i, i, verdict,
                     {"accept": 1, "reject": 2, "marginal": 3}[verdict], cls, r["score"],
                     r["score"], 0.1, r["model"], si, f"cell-{station}"))
            cur.execute(
                "INSERT INTO stations (site, line, station, host, model_version, last_seen,"
                " last_batch, backlog_inspections, backlog_events, backlog_reviews, lag_s)"
                " VALUES (%s,%s,%s,%s,%s,now(),now(),%s,%s,%s,%s)",
                (site, line, station, f"host{si}", f"m-{site}-{si % 2}", si, 2 * si, 1, 0.5 * si))
        # A review made at the station, forwarded up.
        cur.execute("INSERT INTO reviews (site, line, station, local_id, origin,"
                    " inspection_local_id, part_id, decision, verdict, reviewer)"
                    " VALUES ('north','L1','S2',1,'station',2,2002,'overrule','reject','ann')")
    conn.close()
    return rows, midnight


def listed(env, conninfo, *filters):
    p = run(env, conninfo, "list", "--format", "json", *filters)
    try:
        return json.loads(p.stdout)
    except ValueError as e:
        linetest.fail(f"list {filters}: not JSON ({e}): {p.stdout[:400]}")


def keys(items):
    return [(r["site"], r["line"], r["station"], r["local_id"]) for r in items]


def expect(rows, pred):
    """The keys of the rows that pass pred, oldest first as list gives them."""
    sel = [r for r in rows.values() if pred(r)]
    sel.sort(key=lambda r: (r["t"], r["site"], r["line"], r["station"], r["local_id"]))
    return [(r["site"], r["line"], r["station"], r["local_id"]) for r in sel]


def check_list(env, ci, rows):
    every = listed(env, ci)
    checks.check(keys(every) == expect(rows, lambda r: True),
                 f"list: {len(every)} rows, want all {len(rows)} oldest first")
    # One row's values, the time to the microsecond.
    r0 = rows[("north", "L1", "S1", 7)]
    got = [x for x in every if (x["site"], x["station"], x["local_id"]) == ("north", "S1", 7)
           and x["line"] == "L1"]
    if checks.check(len(got) == 1, "list: north/L1/S1/7 missing"):
        g = got[0]
        t = datetime.datetime.fromisoformat(g["time"])
        checks.check(us(t) == us(r0["t"]), f"list: time {g['time']} != {r0['t']}")
        checks.check((g["part_id"], g["verdict"], g["class"], g["model_version"], g["job"]) ==
                     (r0["part_id"], r0["verdict"], r0["defect_class"], r0["model"], r0["job"]),
                     f"list: row {g} != {r0}")
        checks.check(abs(g["score"] - r0["score"]) < 1e-9, f"list: score {g['score']}")

    cases = [
        (["--site", "north"], lambda r: r["site"] == "north"),
        (["--site", "north", "--line", "L1"], lambda r: r["site"] == "north" and r["line"] == "L1"),
        (["--station", "S1"], lambda r: r["station"] == "S1"),
        (["--site", "south", "--line", "L1", "--station", "S1", "--verdict", "reject"],
         lambda r: r["site"] == "south" and r["verdict"] == "reject"),
        (["--class", "vibration"], lambda r: r["defect_class"] == "vibration"),
        (["--part", "2003"], lambda r: r["part_id"] == 2003),
        (["--model", "m-north-1"], lambda r: r["model"] == "m-north-1"),
        (["--job", "3"], lambda r: r["job"] == 3),
        (["--min-score", "0.5", "--max-score", "0.8"], lambda r: 0.5 <= r["score"] <= 0.8),
        (["--reviewed", "yes"], lambda r: (r["site"], r["line"], r["station"], r["local_id"]) ==
         ("north", "L1", "S2", 2)),
        # Hostile text is a value, never SQL.
        (["--site", "north' OR '1'='1"], lambda r: False),
    ]
    for args, pred in cases:
        got = keys(listed(env, ci, *args))
        checks.check(got == expect(rows, pred), f"list {args}: {got} != {expect(rows, pred)}")

    # --since/--until: exactly the rows of [since, until), the bound given
    # to the microsecond with its offset.
    r = rows[("north", "L1", "S1", 2)]
    since = r["t"].isoformat()
    until = rows[("north", "L1", "S1", 5)]["t"].isoformat()
    got = keys(listed(env, ci, "--site", "north", "--line", "L1", "--station", "S1",
                      "--since", since, "--until", until))
    checks.check(got == [("north", "L1", "S1", i) for i in (2, 3, 4)],
                 f"list --since {since} --until {until}: {got}")
    # --limit: the newest N, still oldest first.
    got = keys(listed(env, ci, "--site", "south", "--limit", "3"))
    want = expect(rows, lambda r: r["site"] == "south")[-3:]
    checks.check(got == want, f"list --limit 3: {got} != {want}")

    # The table names each row the way show and review take it.
    p = run(env, ci, "list", "--site", "north", "--line", "L2")
    checks.check("north/L2/S1/3 " in p.stdout and p.stdout.rstrip().endswith("6 inspection(s)"),
                 f"list table: {p.stdout}")
    p = run(env, ci, "list", "--format", "csv", "--station", "S2")
    got = list(csv.DictReader(io.StringIO(p.stdout)))
    checks.check(len(got) == 8 and got[0]["site"] == "north" and "review_origin" in got[0],
                 f"list csv: {p.stdout[:300]}")


def check_show_review(env, ci, rows, pg):
    p = run(env, ci, "show", "north/L1/S1/7")
    r = rows[("north", "L1", "S1", 7)]
    for want in (f"part_id              {r['part_id']}", f"verdict              {r['verdict']}",
                 "local_station        cell-S1", "reviews              0"):
        checks.check(want in p.stdout, f"show: no '{want}' in:\n{p.stdout}")
    p = run(env, ci, "show", "north/L1/S1/99", ok=False)
    checks.check(p.returncode == 1 and "no inspection north/L1/S1/99" in p.stderr,
                 f"show of a missing row: rc {p.returncode} {p.stderr}")
    p = run(env, ci, "show", "north/L1/7", ok=False)
    checks.check(p.returncode == 2 and "SITE/LINE/STATION/LOCAL_ID" in p.stderr,
                 f"show of a bad name: rc {p.returncode} {p.stderr}")

    # A central review: origin central, no local id, the station's ids.
    p = run(env, ci, "review", "north/L1/S1/7", "--overrule", "accept", "--note", 'ok, "fine"',
            "--reviewer", "qa-central", "--defect-type", "scratch")
    checks.check("overruled (accept)" in p.stdout, f"review: {p.stdout}")
    got = pg.query("plant", "SELECT origin, local_id, inspection_local_id, part_id, decision,"
                   " verdict, note, reviewer, defect_type FROM reviews"
                   " WHERE site = 'north' AND line = 'L1' AND station = 'S1'")
    checks.check(got == [("central", None, 7, r["part_id"], "overrule", "accept", 'ok, "fine"',
                          "qa-central", "scratch")], f"the central review row: {got}")
    # Confirming keeps the line's verdict.
    r2 = rows[("south", "L1", "S1", 3)]
    run(env, ci, "review", "south/L1/S1/3", "--confirm", "--reviewer", "qa2")
    got = pg.query("plant", "SELECT origin, decision, verdict FROM reviews WHERE site = 'south'")
    checks.check(got == [("central", "confirm", r2["verdict"])], f"a central confirm: {got}")
    # list shows the latest review, and whose.
    got = [x for x in listed(env, ci, "--reviewed", "yes")
           if (x["site"], x["station"], x["local_id"]) == ("north", "S1", 7)]
    checks.check(len(got) == 1 and (got[0]["review"], got[0]["review_verdict"],
                                    got[0]["review_origin"], got[0]["defect_type"]) ==
                 ("overrule", "accept", "central", "scratch"), f"list after review: {got}")
    p = run(env, ci, "show", "north/L1/S1/7")
    checks.check("reviews              1" in p.stdout and "central" in p.stdout and
                 "qa-central" in p.stdout, f"show after review: {p.stdout}")

    # Refused: nothing written.
    before = pg.query("plant", "SELECT count(*) FROM reviews")[0][0]
    for args, rc in ((["north/L1/S1/99", "--confirm"], 1),
                     (["north/L1/S1/7", "--overrule", "broken"], 2),
                     (["north/L1/S1/7", "--confirm", "--overrule", "accept"], 2),
                     (["north/L1/S1/7", "--confirm", "--defect-type", "two words"], 2),
                     # north/L1/S1/7 is a marginal: nothing to overrule.
                     (["north/L1/S1/7", "--overrule", "marginal"], 2)):
        p = run(env, ci, "review", *args, ok=False)
        checks.check(p.returncode == rc and p.stderr.strip().count("\n") == 0,
                     f"review {args}: rc {p.returncode}, want {rc}: {p.stderr}")
    p = run(env, ci, "review", "north/L1/S1/7", "--overrule", "marginal", ok=False)
    checks.check("judged it marginal already" in p.stderr and "confirm" in p.stderr and
                 not p.stdout, f"central overrule to the line's verdict: {p.stderr}")
    after = pg.query("plant", "SELECT count(*) FROM reviews")[0][0]
    checks.check(after == before, f"refused reviews wrote rows: {before} -> {after}")


def check_export_stations(env, ci, rows, midnight, tmp):
    out = os.path.join(tmp, "south.csv")
    p = run(env, ci, "export", "--site", "south", "--verdict", "accept", "--out", out)
    with open(out, newline="") as f:
        got = list(csv.DictReader(f))
    want = expect(rows, lambda r: r["site"] == "south" and r["verdict"] == "accept")
    checks.check([(x["site"], x["line"], x["station"], int(x["local_id"])) for x in got] == want,
                 f"export: {got}")
    checks.check(f"{len(want)} inspection(s)" in p.stderr, f"export's count: {p.stderr}")

    p = run(env, ci, "stations", "--format", "json")
    got = {(s["site"], s["line"], s["station"]): s for s in json.loads(p.stdout)}
    checks.check(sorted(got) == sorted(s[:3] for s in STATIONS), f"stations: {sorted(got)}")
    for si, (site, line, station, n) in enumerate(STATIONS):
        s = got.get((site, line, station))
        if not s:
            continue
        today = [r for r in rows.values() if (r["site"], r["line"], r["station"]) ==
                 (site, line, station) and r["t"] >= midnight]
        accepted = sum(r["verdict"] == "accept" for r in today)
        checks.check(s["rows_today"] == len(today), f"stations {site}/{line}/{station}: "
                     f"rows_today {s['rows_today']}, want {len(today)}")
        checks.check(abs(s["yield_today"] - accepted / len(today)) < 1e-9,
                     f"stations: yield_today {s['yield_today']}, want {accepted}/{len(today)}")
        checks.check((s["backlog"], s["lag_s"], s["model_version"], s["host"]) ==
                     (3 * si + 1, 0.5 * si, f"m-{site}-{si % 2}", f"host{si}"),
                     f"stations: {s}")
    p = run(env, ci, "stations", "--site", "north", "--line", "L1")
    checks.check("north/L1/S1" in p.stdout and "north/L1/S2" in p.stdout and
                 "north/L2" not in p.stdout and "2 station(s)" in p.stdout, f"stations: {p.stdout}")


def check_errors(env, ci, pg, tmp):
    def one_line(p, *wants):
        err = p.stderr.strip()
        checks.check(p.returncode == 1 and "\n" not in err and all(w in err for w in wants) and
                     PASSWORD not in err and "wrong-pw" not in err,
                     f"want rc 1 and one line naming {wants}, no password: rc {p.returncode}: "
                     f"{p.stderr}")

    # A wrong password, given in a passfile of its own.
    bad = pg.passfile(tmp, "vigil", "wrong-pw", "plant", name="bad.pgpass")
    one_line(run(dict(env, PGPASSFILE=bad), ci, "list", ok=False), "127.0.0.1", "plant",
             "cannot connect", "password authentication failed")
    # In the conninfo itself: still not printed.
    p = run(env, ci + " password=wrong-pw", "stations", ok=False)
    one_line(p, "127.0.0.1", "cannot connect")
    # Nobody listening.
    port = linetest.free_port()
    one_line(run(env, f"host=127.0.0.1 port={port} dbname=plant user=vigil connect_timeout=5",
                 "list", ok=False), "127.0.0.1", f"port {port}", "cannot connect")
    # A database with no central schema yet.
    pg.query("postgres", 'CREATE DATABASE "empty" OWNER "vigil"')
    one_line(run(env, ci.replace("dbname=plant", "dbname=empty"), "list", ok=False),
             "database empty", "no Vigil central schema", "upgrade")
    # A schema newer than this build: refused, untouched.
    pg.query("plant", "UPDATE vigil_schema SET version = 99")
    p = run(env, ci, "list", ok=False)
    checks.check(p.returncode == 1 and "version 99 is newer" in p.stderr, f"newer: {p.stderr}")
    pg.query("plant", "UPDATE vigil_schema SET version = 1")
    # Usage errors.
    for args in (["list", "--shift", "current"], ["list", "--verdict", "maybe"],
                 ["stations", "--format", "xml"], ["export", "--format", "json"], ["frobnicate"],
                 ["show"]):
        p = run(env, ci, *args, ok=False)
        checks.check(p.returncode == 2, f"{args}: rc {p.returncode}, want 2: {p.stderr}")
    # Read before connecting: a bad value is 2 naming it, nothing on stdout,
    # even with a server that cannot be reached (which would be 1).
    nowhere = "host=127.0.0.1 port=1 dbname=plant user=vigil connect_timeout=2"
    for args, said in ((["list", "--limit", "0"], "--limit is a whole number from 1 to 10000"),
                       (["list", "--verdict", "rejected"], "--verdict is accept, reject or"),
                       (["export", "--part", "-1"], "--part is a part id"),
                       (["list", "--note", "x"], "--note is for"),
                       (["stations", "--format", "xml"], "--format is table, csv or json"),
                       (["stations", "--station", ""], "--station is empty"),
                       (["show", "north/L1/x"], "SITE/LINE/STATION/LOCAL_ID"),
                       (["review", "north/L1/S1/7"], "--confirm or --overrule")):
        p = run(env, nowhere, *args, ok=False)
        checks.check(p.returncode == 2 and said in p.stderr and not p.stdout,
                     f"{args} before connecting: rc {p.returncode}, {p.stderr!r}; want 2, {said!r}")
    p = subprocess.run([CTL, "--db", os.path.join(tmp, "x.db"), "list", "--site", "north"],
                       capture_output=True, text=True, timeout=30)
    checks.check(p.returncode == 2 and "--site is for --central" in p.stderr,
                 f"--site without --central: {p.returncode} {p.stderr}")


def scenario_rows():
    with linetest.workdir("vigil-central-") as tmp, pgtest.server("vigil-central-pg-") as pg:
        env, ci, _ = plant_db(pg, tmp)

        p = run(env, ci, "list", ok=False)
        checks.check(p.returncode == 1 and "no Vigil central schema" in p.stderr,
                     f"list before any schema: {p.returncode} {p.stderr}")
        p = run(env, ci, "upgrade")
        checks.check("version 1" in p.stdout, f"upgrade: {p.stdout}")
        rows, midnight = fill(pg, ci)
        check_list(env, ci, rows)
        check_show_review(env, ci, rows, pg)
        check_export_stations(env, ci, rows, midnight, tmp)
        check_errors(env, ci, pg, tmp)
        checks.finish()
    print("PASS rows")


def scenario_station(build, root):
    linetest.require_model(root)
    parts = linetest.quick_parts(60)
    ids = ("mill", "L7", "st-3")
    with linetest.workdir("vigil-central-st-") as tmp, pgtest.server("vigil-central-pg-") as pg:
        env, ci, passfile = plant_db(pg, tmp)
        ln = linetest.Line(build, root, tmp, parts, seed=24, split="e2e", rate=600,
                           extra_conf=f"\n[plant]\nconninfo = {ci}\npassfile = {passfile}\n"
                           f"site = {ids[0]}\nline = {ids[1]}\nstation = {ids[2]}\n"
                           "batch = 20\nretry_max_s = 2\nsettle_s = 1\n")
        ln.start()
        try:
            if ln.wait_sim(timeout=600) != 0:
                linetest.fail("vigil-sim reports missing results or rows")
            # Two statements: PostgreSQL resolves every table of a
            # statement before running it, so one that names inspections
            # fails until the station has created the schema.
            linetest.wait_for("every inspection in the central database", lambda: pg.query(
                "plant", "SELECT to_regclass('inspections') IS NOT NULL")[0][0] and pg.query(
                "plant", "SELECT count(*) = %s FROM inspections", (parts,))[0][0],
                timeout=120, poll_s=0.2)
            local = linetest.log_rows(ln.db, "SELECT id, part_id, verdict, t_wall_us"
                                      " FROM inspections ORDER BY id")
            got = listed(env, ci, "--site", ids[0], "--line", ids[1], "--station", ids[2])
            mine = [(r["local_id"], r["part_id"], r["verdict"],
                     us(datetime.datetime.fromisoformat(r["time"]))) for r in got]
            checks.check(sorted(mine) == sorted(local) and len(mine) == parts,
                         f"list of the station: {len(mine)} rows, {parts} local; first "
                         f"{mine[:2]} vs {local[:2]}")
            checks.check(listed(env, ci, "--site", "other") == [], "list --site other: rows")

            day0 = us(datetime.datetime.now(UTC).replace(hour=0, minute=0, second=0,
                                                          microsecond=0))
            p = run(env, ci, "stations", "--format", "json")
            day1 = us(datetime.datetime.now(UTC).replace(hour=0, minute=0, second=0,
                                                          microsecond=0))
            st = json.loads(p.stdout)
            today = [r for r in local if r[3] >= day1]
            checks.check(len(st) == 1 and (st[0]["site"], st[0]["line"], st[0]["station"]) == ids,
                         f"stations: {st}")
            if st and day0 == day1:       # not across midnight
                acc = sum(r[2] == "accept" for r in today)
                checks.check(st[0]["rows_today"] == len(today) and
                             abs(st[0]["yield_today"] - acc / len(today)) < 1e-9,
                             f"stations: {st[0]}, want {len(today)} rows, {acc} accepted")

            # A central review by vigilctl flows back into the station's log.
            local_id, part_id, verdict, _ = local[len(local) // 2]
            right = "accept" if verdict != "accept" else "reject"
            key = "/".join(ids) + f"/{local_id}"
            run(env, ci, "review", key, "--overrule", right, "--note", "from the plant office",
                "--reviewer", "qa-plant")
            back = linetest.wait_for(
                "the central review in the station's log", lambda: linetest.log_rows(
                    ln.db, "SELECT inspection_id, decision, verdict, note, reviewer FROM reviews"
                           " WHERE central_id IS NOT NULL"), timeout=120, poll_s=0.2)
            checks.check(back == [(local_id, "overrule", right, "from the plant office",
                                   "qa-plant")], f"the review in the station's log: {back}")
        finally:
            rc = ln.stop()
        checks.check(rc == 0, f"vigild exit status {rc}")
        checks.finish()
    print("PASS station")


def http(url, body=None, token=None):
    """(status, JSON body) of a GET, or of a POST of body as JSON."""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if token:
        headers["Authorization"] = "Bearer " + token
    req = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(),
                                 headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def scenario_page(build):
    token = "plant-office-token"
    with linetest.workdir("vigil-central-page-") as tmp, pgtest.server("vigil-central-pg-") as pg:
        env, ci, passfile = plant_db(pg, tmp)
        run(env, ci, "upgrade")
        rows, midnight = fill(pg, ci)

        def conf(central):
            return office_conf(tmp, central, token)

        # A conninfo libpq cannot parse is a configuration error.
        r = linetest.Vigild.once(build, conf("host"), ["--review-only"], timeout=60)
        checks.check(r.returncode != 0 and "central" in r.stderr and "office.conf" in r.stderr,
                     f"a bad central: rc {r.returncode}: {r.stderr}")

        vigild = linetest.Vigild(build, conf(ci + f" passfile={passfile}"),
                                 os.path.join(tmp, "office.log"), ["--review-only"],
                                 env={"TZ": "UTC"})
        url = vigild.review_url()
        st, body = http(url + "api/plant")
        checks.check(st == 200 and body == {"central": True}, f"/api/plant: {st} {body}")
        st, body = http(url + "api/plant/stations")
        got = {(s["site"], s["line"], s["station"]): s for s in body.get("stations", [])}
        checks.check(st == 200 and sorted(got) == sorted(s[:3] for s in STATIONS),
                     f"/api/plant/stations: {st} {body}")
        for site, line, station, n in STATIONS:
            s = got.get((site, line, station))
            today = [r for r in rows.values() if (r["site"], r["line"], r["station"]) ==
                     (site, line, station) and r["t"] >= midnight]
            checks.check(s is None or s["rows_today"] == len(today),
                         f"/api/plant/stations {site}/{line}/{station}: {s}, {len(today)} today")
        st, body = http(url + "api/plant/stations?site=south")
        checks.check(st == 200 and [s["site"] for s in body["stations"]] == ["south"],
                     f"/api/plant/stations?site=south: {st} {body}")

        def api(**q):
            st, body = http(url + "api/plant/inspections?" + urllib.parse.urlencode(q))
            if st != 200:
                checks.fail(f"/api/plant/inspections {q}: {st} {body}")
                return []
            return [(r["site"], r["line"], r["station"], r["local_id"])
                    for r in body["inspections"]]

        def newest_first(pred):
            """As the page lists them: newest first, ties by ids."""
            sel = sorted((r for r in rows.values() if pred(r)),
                         key=lambda r: (-us(r["t"]), r["site"], r["line"], r["station"],
                                        -r["local_id"]))
            return [(r["site"], r["line"], r["station"], r["local_id"]) for r in sel]

        for q, pred in (
                ({}, lambda r: True),
                ({"site": "north", "line": "L1"},
                 lambda r: r["site"] == "north" and r["line"] == "L1"),
                ({"site": "north", "station": "S1", "verdict": "reject"},
                 lambda r: r["site"] == "north" and r["station"] == "S1" and
                 r["verdict"] == "reject"),
                ({"since": us(midnight), "until": us(midnight) + 86400 * 10**6},
                 lambda r: r["t"] >= midnight),
                ({"site": "north' OR '1'='1"}, lambda r: False)):
            checks.check(api(**q) == newest_first(pred), f"/api/plant/inspections {q}: "
                         f"{api(**q)} != {newest_first(pred)}")
        checks.check(len(api(limit=5)) == 5, "/api/plant/inspections?limit=5")
        for q in ({"verdict": "maybe"}, {"since": "yesterday"}, {"shift": "night"},
                  {"limit": "0"}, {"site": "x" * 65}):
            st, body = http(url + "api/plant/inspections?" + urllib.parse.urlencode(q))
            checks.check(st == 400 and body.get("error"), f"{q}: {st} {body}, want 400")

        # A central review from the page: the reviewer's token needed. The
        # row is a reject: overruled to accept.
        want = {"site": "north", "line": "L2", "station": "S1", "local_id": 4,
                "decision": "overrule", "verdict": "accept", "note": "from the page"}
        st, body = http(url + "api/plant/review", want)
        checks.check(st == 401, f"a review without the token: {st} {body}")
        st, body = http(url + "api/plant/review", want, token)
        checks.check(st == 200 and body.get("origin") == "central" and
                     body.get("verdict") == "accept", f"a review: {st} {body}")
        got = pg.query("plant", "SELECT origin, local_id, inspection_local_id, decision, verdict,"
                       " note FROM reviews WHERE site = 'north' AND line = 'L2'")
        checks.check(got == [("central", None, 4, "overrule", "accept", "from the page")],
                     f"the page's central review: {got}")
        k = api(site="north", line="L2", station="S1", limit=100)
        st, body = http(url + "api/plant/inspections?site=north&line=L2")
        row = [r for r in body.get("inspections", []) if r["local_id"] == 4]
        checks.check(len(row) == 1 and (row[0]["review"], row[0]["review_origin"]) ==
                     ("overrule", "central"), f"the list after the review: {row} ({len(k)})")
        for bad, code in ((dict(want, local_id=99), 404), (dict(want, decision="maybe"), 400),
                          (dict(want, verdict="great"), 400), (dict(want, local_id="4"), 400),
                          (dict(want, defect_type="two words"), 400),
                          (dict(want, verdict="reject"), 400)):
            st, body = http(url + "api/plant/review", bad, token)
            checks.check(st == code, f"review {bad}: {st} {body}, want {code}")
        # An overrule to the line's own verdict (the row is a reject) would
        # count as overruled: refused, saying so.
        st, body = http(url + "api/plant/review", dict(want, verdict="reject"), token)
        checks.check("judged it reject already" in body.get("error", "") and
                     "confirm" in body.get("error", ""), f"overrule to reject: {st} {body}")
        got = pg.query("plant", "SELECT count(*) FROM reviews WHERE site = 'north' AND line = 'L2'")
        checks.check(got == [(1,)], f"refused page reviews wrote rows: {got}")

        # The server down: 502, one line naming it, never the password.
        pg.stop()
        st, body = http(url + "api/plant/stations")
        err = body.get("error", "")
        checks.check(st == 502 and "127.0.0.1" in err and "cannot connect" in err and
                     "\n" not in err and PASSWORD not in err, f"server down: {st} {body}")
        checks.check(vigild.running(), "vigild --review-only exited with the database down")
        checks.check(vigild.stop() == 0, "vigild --review-only did not stop cleanly")
        checks.finish()
    print("PASS page")


def main():
    if len(sys.argv) != 4 or sys.argv[3] not in ("rows", "station", "page"):
        sys.exit(__doc__)
    if not os.path.exists(CTL):
        linetest.fail(f"{CTL} is not built")
    if sys.argv[3] == "rows":
        scenario_rows()
    elif sys.argv[3] == "page":
        scenario_page(sys.argv[1])
    else:
        scenario_station(sys.argv[1], sys.argv[2])


if __name__ == "__main__":
    main()
