#!/usr/bin/python3
"""Batching in vigild ([model] max_batch): a line faster than the model.

vigil-sim (the PLC, Modbus TCP loopback) triggers parts faster than the
model judges one part at a time, so parts wait in vigild and the inspect
thread runs them in batches of up to max_batch. The model is the
bottleneck on purpose: models/real-v3 on the reference backend in int8
(with its shipped calibration) and two cameras a part (the same images),
so about 160 ms a part on the idle development machine, against a trigger
every 100 ms (600 parts/min). With one camera in fp32 a part took 43 ms,
under the 50 ms of a 1,200 parts/min line, so an idle host never queued
one (CI failed that way); and at 1,200 parts/min a host whose cores the
backlog keeps busy can miss a trigger (the PLC thread is not scheduled
within 50 ms), which fails the run for a reason that is not batching. Asserts that
/metrics' vigil_infer_batch_size histogram saw model runs of more than one
part and none above max_batch, that its count of parts is every part, that
every part still got exactly one PLC result and one database row with the
same verdict, none missed its deadline, and that the verdicts are those
the same vigild gives with max_batch = 1 (batching changes when a part is
judged, never how).

usage: test_batch_line.py BUILD_DIR SOURCE_ROOT [PARTS]
"""
import json
import os
import re
import sqlite3
import sys
import tempfile
import urllib.request

from linetest import Line, fail, plc_results, sequence_camera

build, root = sys.argv[1], sys.argv[2]
parts = int(sys.argv[3]) if len(sys.argv) > 3 else 150
MAX_BATCH = 8
RATE = 600  # parts/min: a trigger every 100 ms, room for a busy host's PLC thread

REVIEW = """
[review]
listen = 127.0.0.1
port = 0
token = batch-test-token
"""


def metrics(url):
    with urllib.request.urlopen(url + "metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r'^(vigil_infer_batch_size_\w+)(\{le="([^"]+)"\})? (\S+)$', line)
        if m:
            out[(m.group(1), m.group(3))] = float(m.group(4))
    return out


def run(tmp, max_batch, rate):
    """One run of the line; (verdicts by part from the PLC, the batch
    histogram as /metrics shows it after the last part)."""
    os.makedirs(tmp, exist_ok=True)
    line = Line(build, root, tmp, parts, 7373, "batch", extra_conf=REVIEW, rate=rate)
    with open(line.conf) as f:
        conf = f.read()
    conf = conf.replace("backend = opencv",
                        f"backend = reference\nprecision = int8\nmax_batch = {max_batch}")
    conf = conf.replace("reject_deadline_ms = 2000", "reject_deadline_ms = 20000")
    conf, n = re.subn(r"^package = .*$", f"package = {root}/models/real-v3", conf, flags=re.M)
    if n != 1:
        fail(f"the line's configuration has {n} package lines, want 1")
    conf += "\n" + sequence_camera(line.sim_dir, "side")  # the same images again
    with open(line.conf, "w") as f:
        f.write(conf)
    line.start()
    try:
        url = line.review_url()
        if not url:
            fail("vigild did not log the review server's address:\n" + line.log_tail())
        sim_rc = line.wait_sim(timeout=600)
        hist = metrics(url)
    finally:
        rc = line.stop()
    if rc != 0:
        fail(f"vigild exited with {rc}:\n{line.log_tail()}")
    if sim_rc != 0:
        fail(f"vigil-sim exited with {sim_rc} (lost, duplicated or mislogged results):\n"
             + line.log_tail())

    plc = plc_results(os.path.join(tmp, "results.csv"), parts)
    verdicts = {int(r["part_id"]): r["verdict"] for r in plc}
    con = sqlite3.connect(line.db)
    rows = con.execute("SELECT part_id, verdict FROM inspections ORDER BY id").fetchall()
    con.close()
    if sorted(r[0] for r in rows) != list(range(parts)):
        fail("database part ids are not exactly 0..N-1 (lost or duplicated)")
    for pid, verdict in rows:
        if verdicts[pid] != verdict:
            fail(f"part {pid}: PLC got {verdicts[pid]}, database says {verdict}")
    with open(os.path.join(tmp, "summary.json")) as f:
        s = json.load(f)
    if s["missed_deadlines"] > 0:
        fail(f"{s['missed_deadlines']} parts missed the deadline")
    print(f"max_batch {max_batch}: {s['parts_per_min']:.0f} parts/min, "
          f"latency p50 {s['latency_ms']['p50']} ms")
    return verdicts, hist


with tempfile.TemporaryDirectory(prefix="vigil-batch-") as tmp:
    batched, hist = run(os.path.join(tmp, "batched"), MAX_BATCH, RATE)
    buckets = sorted((float("inf") if le == "+Inf" else float(le), n)
                     for (name, le), n in hist.items() if name.endswith("_bucket"))
    print("vigil_infer_batch_size buckets (le, cumulative runs):", buckets)
    runs = hist.get(("vigil_infer_batch_size_count", None))
    judged = hist.get(("vigil_infer_batch_size_sum", None))
    singles = dict(buckets).get(1.0)
    if runs is None or judged is None or singles is None:
        fail(f"/metrics lacks the vigil_infer_batch_size histogram: {hist}")
    if judged != parts:
        fail(f"the batches judged {judged} parts, want {parts}")
    if runs >= parts or singles >= runs:
        fail(f"{runs} model runs for {parts} parts, {singles} of one part: no batching")
    if dict(buckets).get(float(MAX_BATCH)) != runs:
        fail(f"a batch above max_batch {MAX_BATCH}: {buckets}")
    print(f"{parts} parts in {runs:.0f} model runs, {runs - singles:.0f} of more than one part")

    single, hist1 = run(os.path.join(tmp, "single"), 1, RATE)
    if hist1.get(("vigil_infer_batch_size_count", None)) != parts:
        fail(f"max_batch 1 ran {hist1} model runs, want one per part")
    differ = [p for p in range(parts) if batched[p] != single[p]]
    if differ:
        fail(f"parts {differ[:10]} got another verdict in a batch than alone")
    print(f"PASS: {parts} parts batched, one PLC result and row each, "
          "verdicts equal to max_batch 1")
