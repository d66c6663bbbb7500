#!/usr/bin/python3
"""vigild whole with a Modbus vibration transmitter ([transmitter.NAME]),
played by pymodbus on loopback (tests/transmitter_peer.py), next to the
simulated line. The transmitter is killed once a quarter of the parts are
logged, so parts are inspected both with it and after it whatever the
machine's speed.

Asserts: the readings are stored as trend points with the transmitter's
values (scale, signed and CDAB float32 decoding); every part carries the
reading current at its inspection; after the transmitter went away parts
carry its last reading marked stale, never a reading newer than the kill
(flagged, not invented); the events table says it stopped answering.

usage: test_transmitter_line.py BUILD_DIR SOURCE_ROOT
"""
import math
import os
import sqlite3
import subprocess
import sys
import time

from linetest import Line, fail, workdir

build, root = sys.argv[1], sys.argv[2]
parts, rate = 80, 600
KILL_AFTER = parts // 4  # parts logged before the transmitter goes away


def inspected(db):
    """Rows in the inspections table so far (0 before vigild created it)."""
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute("SELECT count(*) FROM inspections").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


with workdir("vigil-tx-") as tmp:
    peer = subprocess.Popen(["/usr/bin/python3", os.path.join(root, "tests", "transmitter_peer.py")],
                            stdout=subprocess.PIPE, text=True)
    tx_port = int(peer.stdout.readline().split()[1])
    line = Line(build, root, tmp, parts, 7, "tx", rate=rate, extra_conf=f"""
[transmitter.bearing_housing]
host = 127.0.0.1
port = {tx_port}
registers = input
word_order = CDAB
velocity_register = 100
velocity_type = u16
velocity_scale = 0.01
acceleration_register = 102
acceleration_type = f32
temperature_register = 110
temperature_type = s16
temperature_scale = 0.1
poll_ms = 50
timeout_ms = 200
stale_ms = 300
""").start()
    db = line.db
    try:
        # The kill comes after a quarter of the parts are logged, not
        # after a fixed time: a slow start must not leave no part inspected
        # with the transmitter up, nor a slow run none after it went away.
        line.vigild.wait_until(f"{KILL_AFTER} rows", lambda: inspected(db) >= KILL_AFTER, 120,
                               0.01)
        peer.kill()
        peer.wait()
        t_kill_us = time.time() * 1e6
        sim_rc = line.wait_sim(timeout=120)
    finally:
        vigild_rc = line.stop()
        if peer.poll() is None:
            peer.kill()
    print(line.log_tail(1500))
    if vigild_rc != 0 or sim_rc != 0:
        fail(f"vigild exited with {vigild_rc}, vigil-sim with {sim_rc}")
    con = sqlite3.connect(db)
    points = con.execute("SELECT t_wall_us, velocity_mm_s, accel_g, temperature_c, stale "
                         "FROM trend WHERE part_id IS NULL AND source = 'bearing_housing'").fetchall()
    per_part = con.execute("SELECT t.part_id, t.t_wall_us, t.velocity_mm_s, t.stale, i.t_wall_us "
                           "FROM trend t JOIN inspections i ON i.part_id = t.part_id "
                           "WHERE t.part_id IS NOT NULL ORDER BY t.part_id").fetchall()
    events = con.execute("SELECT kind, message FROM events WHERE message LIKE 'transmitter%'"
                         ).fetchall()
    triggered = con.execute("SELECT part_id, t_wall_us FROM inspections ORDER BY part_id"
                            ).fetchall()
    con.close()
    if len(points) < 10:
        fail(f"only {len(points)} trend points for a transmitter polled every 50 ms")
    for t, v, a, temp, stale in points:
        if not (math.isclose(v, 4.53) and a == 1.25 and math.isclose(temp, -12.5)) or stale:
            fail(f"trend point {v}, {a}, {temp} (stale {stale}): want 4.53, 1.25, -12.5")
        if t > t_kill_us:
            fail("a trend point dated after the transmitter was gone")
    # Every part triggered once the transmitter had answered carries a
    # reading; one triggered before its first answer (the poll thread
    # connects beside the line's start, which does not wait for it) has
    # none to carry, which is not a made-up one.
    if [pid for pid, _ in triggered] != list(range(parts)):
        fail(f"inspected parts {[pid for pid, _ in triggered]}, want 0..{parts - 1} once each")
    first_reading = min(t for t, *_ in points)
    carried = [r[0] for r in per_part]
    want = [pid for pid, t in triggered if t >= first_reading or pid in carried]
    if carried != want:
        fail(f"parts {carried} carry a transmitter reading, want {want}: every part "
             f"triggered after its first answer at {first_reading}")
    fresh = [r for r in per_part if not r[3]]
    stale = [r for r in per_part if r[3]]
    if not fresh or not stale:
        fail(f"{len(fresh)} parts with a current reading, {len(stale)} stale: want both")
    for pid, t_reading, v, is_stale, t_part in per_part:
        if t_reading > t_kill_us:
            fail(f"part {pid} carries a reading dated after the transmitter was gone")
        if not is_stale and t_part - t_reading > 300_000 + 100_000:
            fail(f"part {pid}: a reading {(t_part - t_reading) / 1000:.0f} ms old is not stale")
        # Parts well after the kill must not look current.
        if t_part > t_kill_us + 600_000 and not is_stale:
            fail(f"part {pid}, after the transmitter went away, carries a current reading")
    if ("sensor-fault", "transmitter bearing_housing: not answering") not in events:
        fail(f"no sensor-fault event for the transmitter: {events}")
    print(f"PASS: {len(points)} trend points, {len(fresh)} parts with a current reading, "
          f"{len(stale)} with the last one marked stale")
