#!/usr/bin/python3
"""End to end: vigil-sim (the PLC, on Modbus TCP loopback) + vigild (real
GStreamer pipelines, OpenCV DNN, SQLite) for a run of synthetic parts.

Asserts that every part got exactly one PLC result, exactly one database row
with the same verdict, that no part was lost or duplicated, and that the
model separates good from defective parts.

usage: test_e2e.py BUILD_DIR SOURCE_ROOT [PARTS]
"""
import json
import os
import sqlite3
import sys

from linetest import Line, fail, plc_results, workdir

build, root = sys.argv[1], sys.argv[2]
parts = int(sys.argv[3]) if len(sys.argv) > 3 else 120


with workdir("vigil-e2e-") as tmp:
    line = Line(build, root, tmp, parts, 4242, "e2e").start()
    db = line.db
    results = os.path.join(tmp, "results.csv")
    summary = os.path.join(tmp, "summary.json")
    try:
        sim_rc = line.wait_sim(timeout=240)
    finally:
        vigild_rc = line.stop()
    print(line.log_tail(3000))
    if vigild_rc != 0:
        fail(f"vigild exited with {vigild_rc}")
    if sim_rc != 0:
        fail(f"vigil-sim exited with {sim_rc} (lost, duplicated or mislogged results)")

    # The PLC's view, part by part.
    plc = plc_results(results, parts)
    plc_verdict = {int(r["part_id"]): r["verdict"] for r in plc}

    # The database's view, read independently of vigild and vigil-sim.
    con = sqlite3.connect(db)
    rows = con.execute("SELECT part_id, verdict FROM inspections ORDER BY id").fetchall()
    if con.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
        fail("integrity_check failed")
    vib = con.execute("SELECT i.part_id, v.bpfo_env, v.rms_velocity_mm_s, v.iso_zone "
                      "FROM vibration v JOIN inspections i ON i.id = v.inspection_id").fetchall()
    con.close()
    if len(vib) != parts:
        fail(f"{len(vib)} vibration condition rows, want {parts}")
    vib_class = {int(r["part_id"]): r["vib_class"] for r in plc}
    outer = [v[1] for v in vib if vib_class[v[0]] == "outer_race"]
    normal = [v[1] for v in vib if vib_class[v[0]] == "normal"]
    if not outer or not normal:
        fail("the parts lack outer-race or normal vibration classes")
    mean = lambda xs: sum(xs) / len(xs)
    print(f"BPFO envelope line: outer race {mean(outer):.1f}, normal {mean(normal):.1f} x median")
    if mean(outer) < 2 * mean(normal):
        fail("the BPFO envelope line does not stand out on outer-race faults")
    if any(v[3] not in ("A", "B", "C", "D") for v in vib):
        fail("a vibration row lacks its ISO zone")
    if len(rows) != parts:
        fail(f"{len(rows)} database rows, want {parts}")
    ids = [r[0] for r in rows]
    if sorted(ids) != list(range(parts)):
        fail("database part ids are not exactly 0..N-1 (lost or duplicated)")
    for pid, verdict in rows:
        if plc_verdict[pid] != verdict:
            fail(f"part {pid}: PLC got {plc_verdict[pid]}, database says {verdict}")

    with open(summary) as f:
        s = json.load(f)
    for key in ("parts", "accepted", "rejected", "escapes", "false_rejects", "parts_per_min",
                "latency_ms", "db_rows", "plc_results"):
        if key not in s:
            fail(f"summary lacks {key}")
    if not (s["parts"] == s["plc_results"] == s["db_rows"] == parts):
        fail(f"summary counts disagree: {s}")
    errors = s["escapes"] + s["false_rejects"]
    print(f"escapes {s['escapes']}, false rejects {s['false_rejects']}, "
          f"missed deadlines {s['missed_deadlines']}, p50 {s['latency_ms']['p50']} ms")
    if s["missed_deadlines"] > 0:
        fail(f"{s['missed_deadlines']} parts missed the deadline")
    if errors > 0.08 * parts:
        fail(f"{errors} escapes + false rejects in {parts} parts: the model does not separate")
    print(f"PASS: {parts} parts, one PLC result and one matching row each")
