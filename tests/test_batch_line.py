#!/usr/bin/python3
"""Batching in vigild ([model] max_batch): parts that wait for the model.

Parts queue by construction, not by a race between the model and a clock:
vigil-sim (the PLC, Modbus TCP loopback) triggers in bursts of BURST parts
(--burst), each trigger as soon as vigild has taken the one before
(status trigger_seen, so none is missed), and starts the next burst only
when the last one has all its results. The burst's first part finds the
inspect thread idle and runs alone; the rest are triggered during that
run, wait in vigild, and go through in runs of up to max_batch. What this
relies on is that one model run outlasts two trigger handshakes: the model
is models/real-v3 on the reference backend in int8 (with its shipped
calibration) with two cameras a part (the same images), about 160 ms a
run on the idle development machine, against a handshake of two PLC polls
(poll_ms = 2) that needs next to no CPU. A faster machine shortens the
model run but not poll_ms; a busy one stretches the model run more than
the handshake, which mostly waits. (The test used to trigger at a fixed
rate and count on the model being slower than it, which an idle machine
was not: 100 model runs for 100 parts.) Waiting for each burst's results
keeps every part within its deadline however slow the machine: at most
BURST parts wait at once.

Asserts that /metrics' vigil_infer_batch_size histogram saw model runs of
more than one part and none above max_batch, that its count of parts is
every part, that vigild took every trigger and missed none, that every
part still got exactly one PLC result and one database row with the same
verdict, none missed its deadline, and that the verdicts are those the
same vigild gives with max_batch = 1 (batching changes when a part is
judged, never how). Prints the trigger spacing within bursts and the
model's time for a part judged alone (measurements, not asserted).

usage: test_batch_line.py BUILD_DIR SOURCE_ROOT [PARTS]
"""
import json
import os
import re
import sqlite3
import sys
import urllib.request

from linetest import Line, fail, plc_results, sequence_camera, workdir

build, root = sys.argv[1], sys.argv[2]
parts = int(sys.argv[3]) if len(sys.argv) > 3 else 150
MAX_BATCH = 8
BURST = MAX_BATCH + 1  # a burst: a run of one part, then one of up to MAX_BATCH
RATE = 6000  # parts/min: bursts start at most every 100 ms; in practice they wait for results

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
        m = re.match(r'^(vigil_infer_batch_size_\w+|vigil_(?:missed_)?triggers_total)'
                     r'(\{le="([^"]+)"\})? (\S+)$', line)
        if m:
            out[(m.group(1), m.group(3))] = float(m.group(4))
    return out


def run(tmp, max_batch, rate):
    """One run of the line; (verdicts by part from the PLC, the batch
    histogram as /metrics shows it after the last part)."""
    os.makedirs(tmp, exist_ok=True)
    line = Line(build, root, tmp, parts, 7373, "batch", extra_conf=REVIEW, rate=rate,
                sim_args=["--burst", str(BURST)])
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
        sim_rc = line.wait_sim(timeout=600)
        hist = metrics(url)
    finally:
        rc = line.stop()
    if rc != 0:
        fail(f"vigild exited with {rc}")
    if sim_rc != 0:
        fail(f"vigil-sim exited with {sim_rc} (lost, duplicated or mislogged results)")

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
    triggers = hist.get(("vigil_triggers_total", None))
    missed = hist.get(("vigil_missed_triggers_total", None))
    if triggers != parts or missed != 0:
        fail(f"vigild took {triggers} triggers and missed {missed}, want {parts} and 0")
    print(f"max_batch {max_batch}: {s['parts_per_min']:.0f} parts/min, "
          f"latency p50 {s['latency_ms']['p50']} ms")
    burst_spacing(line.db, max_batch)
    return verdicts, hist


def burst_spacing(db, max_batch):
    """Prints the time between triggers within a burst, as vigild stamped
    them, and the model's time for a part judged alone (infer_ms of each
    burst's first part when max_batch is 1): the two the batching rests on."""
    con = sqlite3.connect(db)
    rows = con.execute("SELECT part_id, t_wall_us, infer_ms FROM inspections "
                       "ORDER BY part_id").fetchall()
    con.close()
    gaps = sorted((rows[i][1] - rows[i - 1][1]) / 1000 for i in range(1, len(rows))
                  if rows[i][0] % BURST != 0)
    alone = sorted(r[2] for r in rows if r[0] % BURST == 0 and r[2] is not None)
    if gaps:
        print(f"max_batch {max_batch}: triggers within a burst {gaps[len(gaps) // 2]:.1f} ms "
              f"apart (median), {gaps[-1]:.1f} ms at most")
    if alone:
        print(f"max_batch {max_batch}: a burst's first part (alone in its run) took "
              f"{alone[len(alone) // 2]:.0f} ms (median), {alone[0]:.0f} ms at least")


with workdir("vigil-batch-") as tmp:
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
