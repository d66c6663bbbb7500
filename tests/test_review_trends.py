#!/usr/bin/python3
"""GET /api/trends over a log with known timestamps, served by vigild
--review-only (no running line): hour and shift buckets count the right
parts, the p-chart's centre line and per-bucket limits are the textbook
ones, the bucket with a burst of rejects is flagged and no other is, a
baseline of N buckets moves the centre line, and bad parameters get a 400
naming the parameter.

The log is created by vigilctl upgrade (the same db_open as vigild) and
filled with known rows through Python's sqlite3; vigild runs with TZ=UTC so
that local hours and shifts are known.

usage: test_review_trends.py BUILD_DIR SOURCE_ROOT
"""
import datetime
import json
import math
import os
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request

from linetest import Checks, Vigild, workdir

build, root = sys.argv[1], sys.argv[2]
checks = Checks()
fail, check = checks.fail, checks.check

DAY = datetime.datetime(2026, 11, 18, tzinfo=datetime.timezone.utc)
BASE_US = int(DAY.timestamp()) * 1_000_000
HOUR_US = 3600 * 1_000_000
BURST_HOUR = 10


def rejects_in(hour):
    return 30 if hour == BURST_HOUR else 4


def fill(db):
    """24 hours of 100 parts each: 4 rejects (surface) and 2 marginal
    (vibration) an hour, but 30 rejects in hour 10."""
    rows = []
    n = 0
    for h in range(24):
        for i in range(100):
            verdict = "reject" if i < rejects_in(h) else "marginal" if i >= 98 else "accept"
            cls = {"reject": "surface", "marginal": "vibration", "accept": "none"}[verdict]
            t = BASE_US + h * HOUR_US + i * 30_000_000
            rows.append((n, n, n, t, verdict, {"accept": 1, "reject": 2, "marginal": 3}[verdict],
                         cls, 0, 0.5, 0.5, 0.5, 2.0, 1.0, "synthetic-1", None))
            n += 1
    con = sqlite3.connect(db)
    con.executemany("INSERT INTO inspections (part_id, trigger_counter, seq, t_wall_us, verdict,"
                    " verdict_code, defect_class, flags, score, vision_score, signal_score,"
                    " latency_ms, infer_ms, model_version, image_path)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    con.commit()
    con.close()


def get(url, want=200):
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            status, body = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, body = e.code, e.read()
    check(status == want, f"GET {url}: status {status}, want {want}: {body[:200]!r}")
    try:
        return json.loads(body)
    except ValueError:
        fail(f"GET {url}: not JSON: {body[:200]!r}")


def check_hours(base):
    js = get(base + "api/trends?bucket=hour&since=2026-11-18&until=2026-11-19")
    b = js["buckets"]
    check(js["bucket"] == "hour" and len(b) == 24, f"hour: {len(b)} buckets, want 24")
    check(all(x["parts"] == 100 for x in b), f"hour: parts {[x['parts'] for x in b]}")
    check(b[0]["label"] == "2026-11-18 00:00" and b[0]["start_us"] == BASE_US,
          f"hour: first bucket {b[0]['label']} {b[0]['start_us']}")
    check(all(x["rejected"] == rejects_in(h) and x["marginal"] == 2 for h, x in enumerate(b)),
          f"hour: rejected {[x['rejected'] for x in b]}")
    check(all(x["classes"]["surface"] == x["rejected"] and x["classes"]["vibration"] == 2
              for x in b), "hour: class counts")
    check(math.isclose(b[3]["yield"], 0.94) and math.isclose(b[3]["reject_rate"], 0.04),
          f"hour: yield {b[3]['yield']} reject_rate {b[3]['reject_rate']}")
    p_bar = (23 * 4 + 30) / 2400
    check(math.isclose(js["p_bar"], p_bar), f"p_bar {js['p_bar']}, want {p_bar}")
    ucl = p_bar + 3 * math.sqrt(p_bar * (1 - p_bar) / 100)
    check(math.isclose(b[0]["ucl"], ucl), f"ucl {b[0]['ucl']}, want {ucl}")
    check(b[0]["lcl"] == 0, f"lcl {b[0]['lcl']}, want 0 (clipped)")
    flagged = [h for h, x in enumerate(b) if x["out_of_control"]]
    check(flagged == [BURST_HOUR], f"out of control: hours {flagged}, want [{BURST_HOUR}]")
    # A baseline of the first 5 hours: p_bar 4 %.
    js = get(base + "api/trends?bucket=hour&since=2026-11-18&until=2026-11-19&baseline=5")
    check(js["baseline_buckets"] == 5 and math.isclose(js["p_bar"], 0.04),
          f"baseline=5: p_bar {js['p_bar']}")
    # An empty stretch: zero parts, null rates, never flagged.
    js = get(base + "api/trends?since=2026-11-19&until=2026-11-19T03:00")
    check(len(js["buckets"]) == 3 and all(x["parts"] == 0 and x["yield"] is None
                                           and not x["out_of_control"] for x in js["buckets"]),
          f"empty hours: {js['buckets'][:1]}")


def check_shifts(base):
    js = get(base + "api/trends?bucket=shift&since=2026-11-18T00:00&until=2026-11-19")
    b = js["buckets"]
    got = [(x["label"], x["parts"], x["rejected"]) for x in b]
    want = [("2026-11-17 night", 600, 24), ("2026-11-18 early", 800, 58),
            ("2026-11-18 late", 800, 32), ("2026-11-18 night", 200, 8)]
    check(got == want, f"shift buckets {got}, want {want}")
    check(js["shifts"] == "early 06:00, late 14:00, night 22:00", f"shifts {js.get('shifts')}")
    check(b[1]["start_us"] == BASE_US + 6 * HOUR_US and b[1]["end_us"] == BASE_US + 14 * HOUR_US,
          "early shift's bounds")
    check(b[3]["end_us"] == BASE_US + 30 * HOUR_US, "last night shift ends at 06:00 next day")


def check_errors(base):
    for query, word in [("bucket=day", "bucket"), ("since=yesterday", "since"),
                        ("until=2026-13-45", "until"), ("baseline=0", "baseline"),
                        ("since=2026-11-19&until=2026-11-18", "since"),
                        ("since=2020-01-01&until=2026-01-01", "hours")]:
        js = get(base + "api/trends?" + query, want=400)
        check(js and word in js.get("error", ""), f"{query}: error {js}, want one naming {word}")


with workdir("vigil-trends-") as tmp:
    db = os.path.join(tmp, "vigil.db")
    subprocess.run([os.path.join(build, "tools", "vigilctl"), "--db", db, "upgrade"],
                   check=True, capture_output=True, timeout=60)
    fill(db)
    conf = os.path.join(tmp, "review.conf")
    with open(conf, "w") as f:
        f.write(f"[database]\npath = {db}\n\n[review]\nlisten = 127.0.0.1\nport = 0\n")
    vigild = Vigild(build, conf, os.path.join(tmp, "vigild.log"), ["--review-only"],
                    env={"TZ": "UTC"})
    base = vigild.review_url()
    check_hours(base)
    check_shifts(base)
    check_errors(base)
    vigild.terminate()
    check(vigild.wait() == 0, "vigild --review-only did not stop cleanly")
    checks.finish()
