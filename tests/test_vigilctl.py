#!/usr/bin/python3
"""vigilctl over a real SQLite log: filters, formats, Pareto, reviews, and
hostile input (SQL metacharacters, bad values) refused cleanly.

The log is created by vigilctl upgrade (the same db_open as vigild) and
filled with known rows through Python's sqlite3.

usage: test_vigilctl.py BUILD_DIR
"""
import csv
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile

ctl = os.path.join(sys.argv[1], "tools", "vigilctl")
failures = []


def run(*args, ok=True, env=None):
    p = subprocess.run([ctl, "--db", db, *args], capture_output=True, text=True, timeout=30,
                       env=env)
    if ok and p.returncode != 0:
        failures.append(f"{args}: rc {p.returncode}: {p.stderr}")
    if not ok and p.returncode == 0:
        failures.append(f"{args}: accepted, want refused")
    return p


def json_or(text, default, what):
    try:
        return json.loads(text)
    except ValueError:
        failures.append(f"{what}: not JSON: {text[:80]!r}")
        return default


def check(cond, what):
    if not cond:
        failures.append(what)


with tempfile.TemporaryDirectory(prefix="vigil-ctl-") as tmp:
    db = os.path.join(tmp, "vigil.db")
    run("upgrade")
    con = sqlite3.connect(db)
    check(con.execute("PRAGMA user_version").fetchone()[0] >= 3, "upgrade did not apply the schema")
    base = 1_795_000_000_000_000  # 2026-11-18 UTC, in microseconds
    rows = []
    for i in range(60):
        verdict = ["accept", "reject", "marginal"][i % 3]
        cls = "none" if verdict == "accept" else ["surface", "vibration", "surface+vibration"][i % 4 % 3]
        rows.append((i, i, i, base + i * 600_000_000, verdict, {"accept": 1, "reject": 2, "marginal": 3}[verdict],
                     cls, 0, i / 60, 0.1, 0.2, 2.5, 1.0, "synthetic-1", None))
    con.executemany("INSERT INTO inspections (part_id, trigger_counter, seq, t_wall_us, verdict,"
                    " verdict_code, defect_class, flags, score, vision_score, signal_score,"
                    " latency_ms, infer_ms, model_version, image_path)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    con.commit()
    con.close()

    out = run("list", "--format", "csv").stdout
    got = list(csv.DictReader(io.StringIO(out)))
    check(len(got) == 60, f"list csv: {len(got)} rows, want 60")
    out = run("list", "--format", "json", "--verdict", "reject", "--min-score", "0.5").stdout
    js = json.loads(out)
    want = [r for r in rows if r[4] == "reject" and r[8] >= 0.5]
    check(len(js) == len(want), f"json reject >= 0.5: {len(js)} rows, want {len(want)}")
    check(all(r["verdict"] == "reject" and r["score"] >= 0.5 for r in js), "filter leaked rows")
    js = json.loads(run("list", "--format", "json", "--part", "7").stdout)
    check(len(js) == 1 and js[0]["part_id"] == 7, "--part 7")
    js = json.loads(run("list", "--format", "json", "--limit", "5").stdout)
    check([r["part_id"] for r in js] == [55, 56, 57, 58, 59], "--limit gives the newest, oldest first")
    # Time window [part 10's time, part 20's time): parts 10..19.
    import datetime
    utc = lambda us: datetime.datetime.fromtimestamp(us / 1e6, datetime.timezone.utc).isoformat()
    js = json.loads(run("list", "--format", "json", "--since", utc(rows[10][3]),
                        "--until", utc(rows[20][3])).stdout)
    check([r["part_id"] for r in js] == list(range(10, 20)),
          f"--since/--until: {[r['part_id'] for r in js]}")

    # The forms docs/operations.md shows: a date alone is local midnight, a
    # time to the minute or second is local unless it carries a zone. In
    # UTC+8 (POSIX TZ "VTZ-8") the rows run 19:06:40 on the 18th to 04:56:40
    # on the 19th, local: midnight of the 19th falls between parts 29 and 30.
    east8 = dict(os.environ, TZ="VTZ-8")
    ids = lambda *a: [r["part_id"] for r in json.loads(run("list", "--format", "json", *a,
                                                           env=east8).stdout or "[]")]
    for args, want in ((["--since", "2026-11-19"], list(range(30, 60))),
                       (["--until", "2026-11-19"], list(range(0, 30))),
                       (["--since", "2026-11-19T01:00", "--until", "2026-11-19T01:30"], [36, 37, 38]),
                       (["--since", "2026-11-19T01:06:40", "--until", "2026-11-19T01:16:41"], [36, 37]),
                       (["--since", "2026-11-18T17:00Z", "--until", "2026-11-18T17:30+00:00"], [36, 37, 38]),
                       (["--since", "2026-11-19T01:00+08:00", "--until", "2026-11-18T17:30:00Z"], [36, 37, 38])):
        got = ids(*args)
        check(got == want, f"{args} in UTC+8: {got}, want {want}")
    p = run("export", "--since", "2026-11-01", env=east8)
    check(p.returncode == 0, f"export --since 2026-11-01 (docs' example): {p.stderr}")

    # An overrule to the line's own verdict (part 4 is a reject) changes
    # nothing and would count as overruled: refused (2), naming the
    # verdict and confirm, nothing stored.
    p = run("review", "--part", "4", "--overrule", "reject", ok=False)
    check(p.returncode == 2 and not p.stdout and "--overrule" in p.stderr and
          "judged it reject already" in p.stderr and "confirm" in p.stderr,
          f"overrule of a reject to reject: rc {p.returncode}, {p.stdout!r} {p.stderr!r}")
    # Reviews: overrule part 5 (a marginal) to reject with a note holding CSV/SQL metacharacters.
    note = "looked again, crack at edge; it's real, \"obvious\" -- '; DROP TABLE inspections; --"
    run("review", "--part", "5", "--overrule", "reject", "--note", note, "--reviewer", "qa1")
    run("review", "--part", "3", "--confirm")
    js = json.loads(run("list", "--format", "json", "--reviewed", "yes").stdout)
    check(sorted(r["part_id"] for r in js) == [3, 5],
          f"--reviewed yes: {[r['part_id'] for r in js]}")
    r5 = next((r for r in js if r["part_id"] == 5), {})
    check(r5.get("review") == "overrule" and r5.get("review_verdict") == "reject" and
          r5.get("review_note") == note, f"review of part 5 not stored as given: {r5}")
    out = run("list", "--format", "csv", "--part", "5").stdout
    check(list(csv.DictReader(io.StringIO(out)))[0]["review_note"] == note, "CSV quoting of the note")
    p = run("review", "--part", "999", "--confirm", ok=False)
    check(p.returncode == 1 and "no inspection of part 999" in p.stderr and db in p.stderr,
          f"review of a missing part: rc {p.returncode}: {p.stderr}")

    # The Pareto counts the reviewed verdict: 21 rejects + 19 marginals, part 5 now a reject.
    out = run("pareto", "--by", "shift").stdout
    print(out)
    check("reject causes (Pareto)" in out, "pareto prints its causes")
    total = sum(int(line.split()[2]) for line in out.splitlines()[1:] if line[:4].isdigit())
    check(total == 60, f"pareto buckets sum to {total}, want 60")

    # --format csv and json give the same buckets as the table (RFC 4180,
    # header first); the JSON's causes are the Pareto worked out.
    table = {line[:18].strip(): line.split()[2:] for line in out.splitlines()[1:] if line[:4].isdigit()}
    p = run("pareto", "--by", "shift", "--format", "csv")
    got = list(csv.DictReader(io.StringIO(p.stdout)))
    if not p.stdout.startswith("shift,parts,yield_pct,rejected,marginal,"):
        check(False, f"pareto csv header: {p.stdout[:80]!r}")
        got = [dict.fromkeys(("shift", "parts", "rejected", "rejects_surface", "rejects_vibration",
                              "rejects_both", "rejects_none"), "0")]
    check(len(got) == len(table) and all(table.get(r["shift"], [None])[0] == r["parts"] for r in got),
          f"pareto csv rows {got} differ from the table {table}")
    check(sum(int(r["parts"]) for r in got) == 60, "pareto csv parts do not sum to 60")
    check(sum(int(r["rejected"]) for r in got) == 21, "pareto csv: 21 rejects")
    cls_sum = sum(int(r[k]) for r in got for k in ("rejects_surface", "rejects_vibration",
                                                     "rejects_both", "rejects_none"))
    js = json_or(run("pareto", "--format", "json").stdout, {}, "pareto --format json")
    check(sum(b["parts"] for b in js.get("buckets", [])) == 60, f"pareto json buckets: {js}")
    causes = js.get("causes", [])
    check(sum(c["rejects"] for c in causes) == cls_sum and causes
          and abs(causes[-1]["cumulative_pct"] - 100) < 1e-9
          and [c["rejects"] for c in causes] == sorted((c["rejects"] for c in causes), reverse=True),
          f"pareto json causes: {causes}")
    # The commands with one output of their own refuse a --format they would ignore.
    for args in (["review", "--part", "3", "--confirm", "--format", "csv"], ["upgrade", "--format", "json"],
                 ["export", "--format", "json"], ["pareto", "--format", "xml"]):
        p = run(*args, ok=False)
        check("--format" in p.stderr, f"{args}: {p.stderr!r}")
    run("export", "--format", "csv")

    # Export: the two reviewed parts have no files kept here, so they are
    # left out and counted; the manifest still has its header.
    p = run("export")
    check(p.stdout == "part_id,split,image,mask,image_class,vibration,vib_start,vib_len,"
          "vib_class,defect\n", f"export without files: {p.stdout!r}")
    check("0 reviewed part(s)" in p.stderr and "2 left out" in p.stderr, f"export: {p.stderr}")

    # A copied log (the database and its .media folder copied together)
    # exports its own files, names its own folder, and a maintenance open
    # of a copy leaves the original's folder alone.
    def ctl_at(path, *args):
        return subprocess.run([ctl, "--db", path, *args], capture_output=True, text=True, timeout=30)

    orig = os.path.join(tmp, "orig", "vigil.db")
    os.makedirs(os.path.dirname(orig))
    ctl_at(orig, "upgrade")
    day = os.path.join(orig + ".media", "20261118")
    os.makedirs(day)

    def log_part(n):
        con = sqlite3.connect(orig)
        con.execute("INSERT INTO inspections (id, part_id, trigger_counter, seq, t_wall_us, verdict,"
                    " verdict_code, defect_class, flags, score) VALUES (?,?,?,?,?,'reject',2,'surface',0,0.9)",
                    (n, n, n, n, base + n))
        for kind, name, size in (("image", f"{n}-{n}-top.png", 100), ("vibration", f"{n}-{n}-vibration.wav", 448)):
            with open(os.path.join(day, name), "wb") as f:
                f.write(b"\0" * size)
            con.execute("INSERT INTO media (inspection_id, camera, kind, path, bytes) VALUES (?,?,?,?,?)",
                        (n, "top" if kind == "image" else None, kind, f"20261118/{name}", size))
        con.commit()
        con.close()

    log_part(1)
    check(ctl_at(orig, "review", "--part", "1", "--confirm").returncode == 0, "review in the original")
    copy = os.path.join(tmp, "copy", "vigil.db")
    os.makedirs(os.path.dirname(copy))
    shutil.copy(orig, copy)
    shutil.copytree(orig + ".media", copy + ".media")
    lone = os.path.join(tmp, "lone", "vigil.db")
    os.makedirs(os.path.dirname(lone))
    shutil.copy(orig, lone)
    log_part(2)   # the original goes on after the copies were made
    p = ctl_at(copy, "export")
    check(p.returncode == 0 and "1 reviewed part(s)" in p.stderr and
          p.stderr.rstrip().endswith(f"data root {copy}.media (train.py --data-root)"),
          f"export of the copy names its own folder: {p.stderr}")
    p = ctl_at(orig, "export")
    check(p.returncode == 0 and f"data root {orig}.media " in p.stderr, f"export of the original: {p.stderr}")
    p = ctl_at(lone, "export")
    check(p.returncode == 1 and f"no media folder {lone}.media" in p.stderr and orig in p.stderr,
          f"export of a copy without its folder: rc {p.returncode}: {p.stderr}")
    p = ctl_at(lone, "upgrade")
    check(p.returncode == 0 and os.path.isdir(lone + ".media"), f"upgrade of the lone copy: {p.stderr}")
    check(os.path.exists(os.path.join(day, "2-2-top.png")),
          "upgrade of a copy swept the original's newer files")
    moved = os.path.join(tmp, "moved")
    os.rename(os.path.dirname(orig), moved)   # the log moved with its folder
    p = ctl_at(os.path.join(moved, "vigil.db"), "export")
    check(p.returncode == 0 and f"data root {moved}/vigil.db.media " in p.stderr,
          f"export of a moved log: {p.stderr}")

    # Every option of every command, a bad value each: exit 2, nothing on
    # stdout (a script must not take a header line or [] for "no parts"),
    # and a message naming the option, the value and what it must be. The
    # filters' rules are the review API's (db_filter_set), word for word.
    rules = {
        "time": "an ISO 8601 time", "verdict": "accept, reject or marginal",
        "class": "none, surface, vibration or surface+vibration", "score": "a number from 0 to 1",
        "part": "a whole number from 0 to 4294967295", "reviewed": "yes or no",
        "limit": "a whole number from 1 to 10000", "job": "a whole number from 0 to 65535",
        "model": "1 to 100 printable bytes", "station": "1 to 100 printable bytes",
        "format": "table, csv or json", "by": "hour or shift", "shifts": "early 06:00",
    }
    filters = [("--since", "yesterday-ish", "time"), ("--until", "2026-13-01", "time"),
               ("--since", "", "time"), ("--verdict", "rejected", "verdict"),
               ("--verdict", "", "verdict"), ("--class", "Surface", "class"),
               ("--min-score", "nan", "score"), ("--min-score", "1.5", "score"),
               ("--max-score", "-0.1", "score"), ("--max-score", "x", "score"),
               ("--part", "-3", "part"), ("--part", "abc", "part"),
               ("--part", "4294967296", "part"), ("--reviewed", "maybe", "reviewed"),
               ("--limit", "-5", "limit"), ("--limit", "0", "limit"),
               ("--limit", "10001", "limit"), ("--limit", "5x", "limit"),
               ("--shift", "lunch", "shifts"), ("--shift", "2026-11-18 lunch", "shifts"),
               ("--job", "x", "job"), ("--job", "-3", "job"), ("--job", "65536", "job"),
               ("--model", "", "model"), ("--station", "", "station")]
    bad = [([cmd, opt, value], opt, value, rule)
           for cmd in ("list", "pareto", "export") for opt, value, rule in filters]
    bad += [([cmd, "--format", "xml"], "--format", "xml", "format")
             for cmd in ("list", "pareto", "escapes")]
    bad += [(["list", "--format", "csv", "--verdict", "rejected"], "--verdict", "rejected",
             "verdict"),
            (["list", "--format", "json", "--class", "Surface"], "--class", "Surface", "class"),
            (["pareto", "--by", "week"], "--by", "week", "by"),
            (["export", "--format", "json"], "--format", "json", "csv"),
            (["export", "--split", "train,val"], "--split", "train,val", "plain name"),
            (["review", "--part", "abc", "--confirm"], "--part", "abc", "part"),
            (["review", "--part", "4", "--overrule", "maybe"], "--overrule", "maybe", "verdict"),
            (["review", "--part", "4", "--confirm", "--reviewer", ""], "--reviewer", "", "name"),
            (["escapes", "--neighbours", "-1"], "--neighbours", "-1", "from 0 to 100"),
            (["escapes", "--neighbours", "101"], "--neighbours", "101", "from 0 to 100"),
            (["escapes", "--mark", "--part", "x", "--note", "n"], "--part", "x", "part"),
            (["report", "--shift", "lunch"], "--shift", "lunch", "shifts"),
            (["report", "--shift", "early"], "--shift", "early", "shifts"),
            (["list", "--since", "2026-12-02", "--until", "2026-12-01"], "--since", "2026-12-02",
             "is not before --until"),
            (["pareto", "--min-score", "0.9", "--max-score", "0.1"], "--min-score", "0.9",
             "is above --max-score")]
    for args, opt, value, rule in bad:
        p = run(*args, ok=False)
        want = rules.get(rule, rule)
        check(p.returncode == 2 and not p.stdout and opt in p.stderr and f"'{value}'" in p.stderr
              and want in p.stderr,
              f"{args}: rc {p.returncode}, stdout {p.stdout[:60]!r}, stderr {p.stderr.strip()!r};"
              f" want 2, nothing, and a message naming {opt}, '{value}' and {want!r}")
    # An option the command does not read is refused, not ignored (report
    # --verdict would print the whole shift as if filtered), naming the
    # commands that read it.
    for args, opt, where in ((["report", "--shift", "current", "--verdict", "reject"], "--verdict",
                              "list, pareto, export"),
                             (["escapes", "--since", "2026-11-01"], "--since", "list"),
                             (["upgrade", "--limit", "3"], "--limit", "list"),
                             (["review", "--part", "3", "--confirm", "--format", "csv"],
                              "--format", "list"),
                             (["list", "--note", "x"], "--note", "review"),
                             (["list", "--confirm"], "--confirm", "review"),
                             (["pareto", "--out", os.path.join(tmp, "p.txt")], "--out", "export"),
                             (["export", "--by", "hour"], "--by", "pareto"),
                             (["list", "--site", "north"], "--site", "--central list"),
                             (["review", "--part", "3", "--confirm", "--defect-type", "crack"],
                              "--defect-type", "--central review"),
                             (["escapes", "--part", "3"], "--part", "--mark"),
                             (["escapes", "--mark", "--part", "3", "--note", "n",
                               "--neighbours", "2"], "--neighbours", "without --mark")):
        p = run(*args, ok=False)
        check(p.returncode == 2 and not p.stdout and f"{opt} is for" in p.stderr
              and where in p.stderr,
              f"{args}: rc {p.returncode}, stdout {p.stdout[:60]!r}, stderr {p.stderr.strip()!r}")
    # A log that cannot be read: 1, and still nothing on stdout.
    for args in (["list"], ["list", "--format", "csv"], ["list", "--format", "json"],
                 ["escapes", "--format", "csv"], ["pareto"], ["export"]):
        p = subprocess.run([ctl, "--db", os.path.join(tmp, "none.db"), *args], capture_output=True,
                           text=True, timeout=30)
        check(p.returncode == 1 and not p.stdout and "none.db" in p.stderr,
              f"{args} of a missing log: rc {p.returncode}, stdout {p.stdout[:60]!r}, {p.stderr!r}")
    # The good values next to the bad: the bounds are in.
    for args in (["list", "--limit", "10000"], ["list", "--limit", "1"], ["list", "--part", "0"],
                 ["list", "--min-score", "0", "--max-score", "1"], ["list", "--job", "65535"],
                 ["list", "--part", "4294967295"], ["escapes", "--neighbours", "100"],
                 ["escapes", "--neighbours", "0"]):
        run(*args)

    # Hostile or malformed input is refused with a message, and nothing changes.
    for args in (["list", "--verdict", "reject' OR '1'='1"], ["list", "--class", "x; DROP TABLE reviews"],
                 ["list", "--since", "yesterday-ish"],
                 ["list", "--until", "2026-13-01"], ["list", "--since", "2026-11-19T1:00"], ["list", "--format", "xml"],
                 ["pareto", "--by", "week"], ["review", "--part", "4", "--overrule", "maybe"],
                 ["list", "--reviewed", "perhaps"], ["frobnicate"],
                 ["export", "--split", "train,val"], ["export", "--reviewed", "no"],
                 ["export", "--out", os.path.join(tmp, "no-such-dir", "m.csv")]):
        p = run(*args, ok=False)
        check(p.stderr.strip() != "", f"{args}: no message")
    con = sqlite3.connect(db)
    check(con.execute("SELECT count(*) FROM inspections").fetchone()[0] == 60, "rows changed")
    check(con.execute("SELECT count(*) FROM reviews").fetchone()[0] == 2, "reviews changed")
    con.close()

if failures:
    print("FAIL:\n  " + "\n  ".join(failures))
    sys.exit(1)
print("PASS")
