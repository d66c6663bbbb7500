#!/usr/bin/python3
"""The review API behind the page's daily work (issue 23, ux), over a line
run by vigil-sim + vigild on loopback:

- /api/inspections says how many rows match beyond its limit (total,
  has_more), equal to a count in the SQLite file;
- /api/reference gives the newest accepted part with a kept image of the
  camera, skips a part a reviewer overruled, and 404s for a camera that
  kept none;
- the condition figures are honest over a demo-like run: with the demo's
  machine class (ISO 10816-3 group 2, flexible) every logged zone is what
  the standard's limits give for the logged velocity and no good part (by
  the simulator's truth) is in zone C or D, and the good parts' envelope
  lines lie under the figures the page's note states.

usage: test_review_ux.py BUILD_DIR SOURCE_ROOT [PARTS]
"""
import csv
import json
import os
import re
import sqlite3
import sys
import urllib.error
import urllib.request

from linetest import Checks, Line, workdir

build, root = sys.argv[1], sys.argv[2]
parts = int(sys.argv[3]) if len(sys.argv) > 3 else 300
TOKEN = "ux-api-token-0123456789"
checks = Checks()
check = checks.check
# ISO 10816-3 group 2 (15-300 kW), flexible foundation: A/B, B/C, C/D in mm/s.
GROUP2_FLEXIBLE = (2.3, 4.5, 7.1)


def get(url, want=200):
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            status, body = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, body = e.code, e.read()
    check(status == want, f"GET {url}: {status}, want {want}: {body[:200]!r}")
    return json.loads(body) if body else {}


def post_review(base, part, payload):
    req = urllib.request.Request(f"{base}/api/parts/{part}/review", json.dumps(payload).encode(),
                                 {"Content-Type": "application/json",
                                  "Authorization": "Bearer " + TOKEN}, method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status


def zone(v, limits):
    return "A" if v < limits[0] else "B" if v < limits[1] else "C" if v < limits[2] else "D"


def check_counts(base, con):
    (n,) = con.execute("SELECT count(*) FROM inspections").fetchone()
    (rejects,) = con.execute("SELECT count(*) FROM inspections WHERE verdict = 'reject'").fetchone()
    page = get(f"{base}/api/inspections?limit=5")
    check(len(page.get("inspections", [])) == 5 and page.get("total") == n and
          page.get("has_more") is True,
          f"limit 5 of {n}: {len(page.get('inspections', []))} rows, total {page.get('total')}, "
          f"has_more {page.get('has_more')}")
    check(rejects > 3, f"only {rejects} rejects: the run is too small for the test")
    page = get(f"{base}/api/inspections?verdict=reject&limit=3")
    check(page.get("total") == rejects and page.get("has_more") is True,
          f"rejects, limit 3: total {page.get('total')}, want {rejects}")
    page = get(f"{base}/api/inspections?verdict=reject&limit={rejects}")
    check(len(page["inspections"]) == rejects and page.get("total") == rejects and
          page.get("has_more") is False, f"all {rejects} rejects: {page.get('total')}, "
          f"has_more {page.get('has_more')}")
    print(f"counts: {n} parts, {rejects} rejects; total and has_more agree with the file")


def accepted_with_image(con, camera):
    """Part ids (newest first) whose latest inspection is accepted, not
    overruled, with a kept image of camera."""
    return [r[0] for r in con.execute(
        "SELECT i.part_id FROM inspections i JOIN media m ON m.inspection_id = i.id"
        " WHERE i.verdict = 'accept' AND m.kind = 'image' AND m.camera = ?"
        " AND i.id = (SELECT max(id) FROM inspections WHERE part_id = i.part_id)"
        " AND NOT EXISTS (SELECT 1 FROM reviews r WHERE r.inspection_id = i.id"
        "                 AND r.verdict != 'accept')"
        " ORDER BY i.id DESC", (camera,))]


def check_reference(base, db):
    con = sqlite3.connect(db)
    want = accepted_with_image(con, "top")
    con.close()
    if not check(len(want) >= 2, f"{len(want)} accepted parts kept an image: too few to test"):
        return
    ref = get(f"{base}/api/reference?camera=top")
    check(ref.get("part_id") == want[0] and ref.get("verdict") == "accept" and
          ref.get("camera") == "top", f"reference {ref}, want part {want[0]}")
    img = urllib.request.urlopen(base + ref["url"], timeout=30).read()
    check(img[:8] == b"\x89PNG\r\n\x1a\n", "the reference image is not the kept PNG")
    # A reviewer finds the reference part defective: it is no reference.
    check(post_review(base, want[0], {"decision": "overrule", "verdict": "reject",
                                      "reviewer": "ux-test"}) == 200, "overrule refused")
    ref = get(f"{base}/api/reference?camera=top")
    check(ref.get("part_id") == want[1], f"after overruling {want[0]}: reference {ref}, "
          f"want {want[1]}")
    get(f"{base}/api/reference?camera=no-such-camera", want=404)
    print(f"reference: part {want[0]}, then {want[1]} once {want[0]} was overruled")


def check_condition(db, sim_dir):
    truth = {}
    with open(os.path.join(sim_dir, "parts.csv")) as f:
        for r in csv.DictReader(f):
            truth[int(r["part_id"][1:])] = r["vib_class"]
    con = sqlite3.connect(db)
    rows = con.execute("SELECT i.part_id, v.rms_velocity_mm_s, v.iso_zone, v.ftf_env,"
                       " v.bpfo_env, v.bpfi_env, v.bsf_env FROM inspections i"
                       " JOIN vibration v ON v.inspection_id = i.id").fetchall()
    con.close()
    good = [r for r in rows if truth[r[0]] == "normal"]
    if not check(len(good) > 100, f"{len(good)} good parts: too few"):
        return
    wrong = [r[:3] for r in rows if r[2] != zone(r[1], GROUP2_FLEXIBLE)]
    check(not wrong, f"zones that are not group 2 flexible's for the velocity: {wrong[:5]}")
    cd = [r[:3] for r in good if r[2] in "CD"]
    class_i = sum(1 for r in good if zone(r[1], (0.71, 1.8, 4.5)) in "CD")
    print(f"zone C/D: {len(cd)} of {len(good)} good parts (class I would give {class_i})")
    check(not cd, f"good parts in zone C/D: {cd[:5]}")
    # The page's note on envelope lines, checked against the data.
    with open(os.path.join(root, "app", "web", "index.html")) as f:
        html = f.read()
    top = float(re.search(r'id="d-envelope-good">([\d.]+)<', html).group(1))
    p99 = float(re.search(r'id="d-envelope-good99">([\d.]+)<', html).group(1))
    lines = sorted(x for r in good for x in r[3:7])
    over = sum(1 for x in lines if x >= p99)
    print(f"good envelope lines: max {lines[-1]:.1f} x median (page: up to {top}), "
          f"{over} of {len(lines)} at or over {p99}")
    check(lines[-1] < top, f"a good part's envelope line is {lines[-1]:.1f} x median, the page "
          f"says up to {top}")
    check(over <= 0.01 * len(lines), f"{over} of {len(lines)} good lines at or over {p99}, the "
          f"page says 99 % under")


def main():
    with workdir("vigil-review-ux-") as tmp:
        line = Line(build, root, tmp, parts, seed=7, split="demo",
                    extra_conf=f"\n[review]\nlisten = 127.0.0.1\nport = 0\ntoken = {TOKEN}\n",
                    conf_kw={"vibration_extra": "iso_class = group2-flexible"}).start()
        try:
            check(line.wait_sim() == 0, "vigil-sim failed")
            base = line.review_url().rstrip("/")
            con = sqlite3.connect(line.db)
            check_counts(base, con)
            con.close()
            check_reference(base, line.db)
            check_condition(line.db, line.sim_dir)
        finally:
            line.stop()
        checks.finish()
    print("PASS: list totals, the reference good part and honest condition figures")


main()
