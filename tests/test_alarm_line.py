#!/usr/bin/python3
"""vigild whole, in the server role, with a pymodbus PLC: a burst of
defective parts raises the quality alarm and good parts clear it.

The simulated parts are good (no surface defect, no bearing fault) except
parts 41..60, whose images are replaced by surface-defect images of a second
generated set: a burst of rejects built on purpose. [alarm] judges windows
of 20 parts against an expected reject rate of 5 % (upper control limit
5 % + 3 sigma = 19.6 %, 4 rejects in 20). The test checks, by polling and
never by timing, that:
  - the good parts raise nothing (status bit 14 clear, gauge 0);
  - the burst sets status bit 14 and error code 13 over Modbus, the gauge
    vigil_alarm{kind="yield"} 1, /api/status lists the alarm with its start,
    and the log gets an alarm-yield event with the figures;
  - good parts after it clear all three, with an alarm-clear event;
  - every part still got its own result (alarms never change verdicts);
  - then the PLC selects job 2, the same package with thresholds that
    reject every part: its first 20 parts raise alarm-model-change (gauge
    vigil_alarm{kind="model_change"} 1), as a model change gone wrong would.

usage: test_alarm_line.py BUILD_DIR SOURCE_ROOT
"""
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import urllib.request

from linetest import Vigild, binaries, fail, require_model, wait_for, workdir
from plctest import MasterPLC, quiet_pymodbus, start_vigild, stepped_line_config, stop_vigild

ST_QUALITY_ALARM, ERR_QUALITY_ALARM = 1 << 14, 13
GOOD, BURST, COLLAPSE = 40, 20, 20
PARTS = GOOD + BURST + GOOD + COLLAPSE

build, root = sys.argv[1], sys.argv[2]


def generate(out, parts, seed, p_surface):
    subprocess.run([binaries(build)[0], "generate", "--out", out, "--parts", str(parts),
                    "--seed", str(seed), "--p-surface", str(p_surface), "--p-vibration", "0"],
                   check=True, stdout=subprocess.DEVNULL, timeout=300)


def http(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read().decode()


def gauge(base, kind):
    m = re.search(r'^vigil_alarm\{kind="%s"\} (\S+)$' % kind, http(base + "metrics"), re.M)
    return float(m.group(1)) if m else None


def events(db):
    try:
        con = sqlite3.connect(db)
        r = con.execute("SELECT kind, message FROM events WHERE kind LIKE 'alarm%' ORDER BY id"
                        ).fetchall()
        con.close()
        return r
    except sqlite3.Error:
        return []


def run_parts(plc, first, n):
    """Triggers parts first..first+n-1 one at a time and takes each result."""
    got = []
    for i in range(first, first + n):
        plc.trigger(i, i)
        r = plc.next_result()
        got.append((r[1] << 16 | r[2], r[4]))
        plc.ack(r[0])
    return got


def main():
    quiet_pymodbus()
    require_model(root)
    with workdir("vigil-alarm-") as tmp:
        sim, bad = os.path.join(tmp, "sim"), os.path.join(tmp, "bad")
        generate(sim, PARTS, 23, 0.0)
        generate(bad, BURST, 24, 1.0)
        for k in range(BURST):
            shutil.copy(os.path.join(bad, "images", f"part-{k:05d}.png"),
                        os.path.join(sim, "images", f"part-{GOOD + k:05d}.png"))
        port = 0
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        db = os.path.join(tmp, "vigil.db")
        conf = os.path.join(tmp, "vigild.conf")
        with open(conf, "w") as f:
            f.write(stepped_line_config(sim, root, port, db, "window_parts = 20\n"
                                        "baseline_parts = 20\nexpected_reject_rate = 0.05\n\n"
                                        "[job.2]\nreject = 0\nmarginal = 0\n"))
        v = Vigild(build, conf, os.path.join(tmp, "vigild.log"))
        plc = MasterPLC(port)
        start_vigild(v, plc)
        base = v.review_url()

        got = run_parts(plc, 1, GOOD)
        st = plc.status()
        if st[1] & ST_QUALITY_ALARM or st[2] == ERR_QUALITY_ALARM or gauge(base, "yield") != 0:
            fail(f"good parts raised the alarm: status {st}, events {events(db)}")

        got += run_parts(plc, GOOD + 1, BURST)
        st = v.wait_until("status bit 14 (quality alarm)",
                          lambda: (lambda s: s if s[1] & ST_QUALITY_ALARM else None)(plc.status()))
        if st[2] != ERR_QUALITY_ALARM:
            fail(f"quality alarm: error code {st[2]}, want {ERR_QUALITY_ALARM} (status {st})")
        if gauge(base, "yield") != 1:
            fail("vigil_alarm{kind=\"yield\"} is not 1 while the alarm is raised")
        alarms = json.loads(http(base + "api/status")).get("alarms", {})
        active = [a for a in alarms.get("active", []) if a["kind"] == "yield"]
        if not alarms.get("enabled") or not active or not active[0]["since_us"] \
                or "upper control limit" not in active[0]["message"]:
            fail(f"/api/status alarms: {alarms}")
        ev = wait_for("an alarm-yield event",
                      lambda: [e for e in events(db) if e[0] == "alarm-yield"] or None)
        if "parts rejected" not in ev[0][1]:
            fail(f"alarm-yield event without its figures: {ev}")

        got += run_parts(plc, GOOD + BURST + 1, GOOD)
        v.wait_until("status bit 14 clear",
                     lambda: not plc.status()[1] & ST_QUALITY_ALARM)
        st = plc.status()
        if st[2] == ERR_QUALITY_ALARM:
            fail(f"error code 13 stays after the alarm cleared: {st}")
        if gauge(base, "yield") != 0:
            fail("vigil_alarm{kind=\"yield\"} is not 0 after the alarm cleared")
        wait_for("an alarm-clear event for yield",
                 lambda: [e for e in events(db) if e[0] == "alarm-clear"
                          and e[1].startswith("yield")] or None)
        if any(e[0] == "alarm-model-change" for e in events(db)):
            fail(f"an alarm-model-change without a model change: {events(db)}")

        plc.select_job(2)
        v.wait_until("job 2 active", lambda: plc.status()[3] == 2)
        first = 2 * GOOD + BURST + 1
        got += run_parts(plc, first, COLLAPSE)
        ev = wait_for("an alarm-model-change event",
                      lambda: [e for e in events(db) if e[0] == "alarm-model-change"] or None)
        if "(job 2)" not in ev[0][1] or "collapsed" not in ev[0][1]:
            fail(f"alarm-model-change without its figures: {ev}")
        if gauge(base, "model_change") != 1 or not plc.status()[1] & ST_QUALITY_ALARM:
            fail(f"model change alarm: gauge {gauge(base, 'model_change')}, "
                 f"status {plc.status()}")
        if any(verdict != 2 for p, verdict in got[first - 1:]):
            fail(f"job 2 did not reject every part: {got[first - 1:]}")

        if [p for p, _ in got] != list(range(1, PARTS + 1)):
            fail(f"results for parts {[p for p, _ in got]}")
        rejects = sum(1 for p, verdict in got if GOOD < p <= GOOD + BURST and verdict == 2)
        print(f"burst: {rejects} of {BURST} defective parts rejected; events: {events(db)}")
        stop_vigild(v, plc)
    print("PASS")


main()
