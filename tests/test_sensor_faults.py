#!/usr/bin/python3
"""vigild whole with a vibration source that misbehaves: windows with gaps
(buffers dropped inside the real pipeline by identity drop-probability) or
clipping (a clip level below the signal). Asserts that such windows are
flagged, not invented: each affected part is a fail-safe reject flagged
"no vibration" (gap) or "clipped", carries no vibration figures, and the
events table shows the sensor fault opening and, after a good window,
closing.

usage: test_sensor_faults.py BUILD_DIR SOURCE_ROOT gap|clip
"""
import sqlite3
import sys

from linetest import Line, fail, workdir

build, root, scenario = sys.argv[1], sys.argv[2], sys.argv[3]
parts = 60
FLAG_FAILSAFE, FLAG_NO_FRAME, FLAG_NO_VIBRATION, FLAG_CLIPPED = 1 << 2, 1 << 3, 1 << 4, 1 << 6

with workdir("vigil-sensor-") as tmp:
    line = Line(build, root, tmp, parts, 31, "faults", rate=600, conf_kw={
        "vibration_extra": "clip_level = 0.01\n" if scenario == "clip" else ""})
    db = line.db
    if scenario == "gap":
        with open(line.conf) as f:
            text = f.read()
        # 10 ms buffers, 3 % dropped: about half the 170 ms windows have a gap.
        text = text.replace("audioresample ! appsink",
                            "audioresample ! audiobuffersplit output-buffer-duration=1/100 ! "
                            "identity drop-probability=0.03 ! appsink")
        with open(line.conf, "w") as f:
            f.write(text)
    line.start()
    try:
        sim_rc = line.wait_sim(timeout=120)
    finally:
        vigild_rc = line.stop()
    print(line.log_tail(2000))
    if vigild_rc != 0 or sim_rc != 0:
        fail(f"vigild exited with {vigild_rc}, vigil-sim with {sim_rc}")
    con = sqlite3.connect(db)
    rows = con.execute("SELECT i.part_id, i.verdict, i.flags, v.inspection_id FROM inspections i "
                       "LEFT JOIN vibration v ON v.inspection_id = i.id "
                       "ORDER BY i.part_id").fetchall()
    events = [k for k, in con.execute("SELECT kind FROM events WHERE kind LIKE 'sensor-%' "
                                      "ORDER BY id")]
    con.close()
    if [r[0] for r in rows] != list(range(parts)):
        fail("database rows are not exactly one per part")
    want = FLAG_NO_VIBRATION if scenario == "gap" else FLAG_CLIPPED
    bad = [r for r in rows if r[2] & (FLAG_NO_VIBRATION | FLAG_CLIPPED)]
    for pid, verdict, flags, vib in bad:
        if flags & (FLAG_NO_VIBRATION | FLAG_CLIPPED) != want:
            fail(f"part {pid}: flags {flags}, want only {want} among the vibration flags")
        if verdict != "reject" or not flags & FLAG_FAILSAFE:
            fail(f"part {pid}: a flagged window gave {verdict} (flags {flags})")
        if vib is not None:
            fail(f"part {pid}: vibration figures logged from a flagged window")
    good = [r for r in rows if not r[2] & (FLAG_NO_VIBRATION | FLAG_CLIPPED | FLAG_NO_FRAME)]
    if any(r[3] is None for r in good):
        fail("a part with a good window has no vibration figures")
    if scenario == "clip":
        if len(bad) != parts:
            fail(f"{len(bad)} of {parts} windows flagged as clipped at a 0.01 g clip level")
        if events != ["sensor-fault"]:
            fail(f"want one sensor-fault event for a sensor clipping throughout, got {events}")
    else:
        if not bad or not good:
            fail(f"{len(bad)} windows with gaps, {len(good)} without: want both")
        # Fault and recovery alternate, starting with a fault.
        if not events or events[0] != "sensor-fault" or "sensor-ok" not in events or \
           any(a == b for a, b in zip(events, events[1:])):
            fail(f"sensor events do not alternate fault / ok: {events}")
    print(f"PASS: {scenario}: {len(bad)} of {parts} windows flagged, events {events[:6]}")
