#!/usr/bin/python3
"""vigild whole with an accelerometer that dies mid-run and comes back: the
simulated line's recording, its windows made flat on purpose from part
DEAD_FROM on (all zero as with the cable pulled, a constant as from a
stuck ADC, that constant with +-1 step of a 16-bit ADC over +-50 g), then
real again from part ALIVE_FROM on. The PLC is pymodbus polling vigild's
registers, one part at a time, so nothing here depends on speed. Asserts:

- the parts before are judged normally (no fail-safe, vibration figures);
- every part with a flat window is a fail-safe reject with flag bit 11 in
  the PLC's result block and in its database row, without vibration
  figures; while the last part was flat, "sensor ok" is clear and the
  error code is 2;
- one sensor-flat event naming the sensor, then sensor-ok; /metrics and
  the failsafe events count every flat part under sensor_flat; the
  warnings, held back to one per 10 s, account for every flat part;
- the flat rejects do not feed the quality alarm (a window of 10 parts at
  an expected reject rate of 0.5 would raise it on 10 flat rejects);
- the line keeps running: the parts after are judged normally again, and
  vigild stops cleanly.

usage: test_sensor_flat.py BUILD_DIR SOURCE_ROOT
"""
import os
import re
import struct
import sys

import numpy as np

from linetest import (Vigild, check_held_warnings, fail, free_port, generate_parts, log_rows,
                      require_model, wait_for, wait_rows, workdir)
from plctest import (ACCEPT, FL_FAILSAFE, FL_NO_VIBRATION, MARGINAL, REJECT, MasterPLC,
                     failsafe_total, quiet_pymodbus, run_part, start_vigild, status_with,
                     stepped_line_config, stop_vigild)

build, root = sys.argv[1], sys.argv[2]
WINDOW = 2048
DEAD_FROM, ALIVE_FROM, PARTS = 8, 20, 26
LSB_G = 100 / 65536            # a 16-bit ADC over +-50 g (100 mV/g into +-5 V)
FL_CLIPPED, FL_VIB_FLAT = 1 << 6, 1 << 11
ST_SENSOR_OK, ST_QUALITY_ALARM, ERR_SENSOR = 1 << 5, 1 << 14, 2
SEED = 4242


def kill_sensor(wav):
    """Makes the windows of parts DEAD_FROM .. ALIVE_FROM - 1 flat, a third
    each all zero, constant, and constant with +-1 ADC step; returns the
    dead parts."""
    with open(wav, "rb") as f:
        raw = f.read()
    at = raw.index(b"data")
    (n,) = struct.unpack("<I", raw[at + 4:at + 8])
    x = np.frombuffer(raw[at + 8:at + 8 + n], "<f4").copy()
    if x.size < PARTS * WINDOW:
        fail(f"{wav}: {x.size} samples, want {PARTS * WINDOW} at least")
    rng = np.random.default_rng(SEED)
    dead = list(range(DEAD_FROM, ALIVE_FROM))
    third = len(dead) // 3
    for k, part in enumerate(dead):
        w = x[part * WINDOW:(part + 1) * WINDOW]
        if k < third:
            w[:] = 0
        elif k < 2 * third:
            w[:] = 0.21
        else:
            w[:] = 0.21 + LSB_G * rng.integers(-1, 2, WINDOW)
    with open(wav, "wb") as f:
        f.write(raw[:at + 8] + x.astype("<f4").tobytes() + raw[at + 8 + n:])
    return dead


def judged_normally(what, r):
    if r[4] not in (ACCEPT, REJECT, MARGINAL) or r[7] & (FL_FAILSAFE | FL_VIB_FLAT):
        fail(f"{what}: result {r}, want the model's verdict, no fail-safe, no flat flag")


quiet_pymodbus()
require_model(root)
with workdir("vigil-flat-") as tmp:
    sim, port, db = os.path.join(tmp, "sim"), free_port(), os.path.join(tmp, "vigil.db")
    generate_parts(build, sim, PARTS, SEED)
    dead = kill_sensor(os.path.join(sim, "vibration.wav"))
    conf = os.path.join(tmp, "vigild.conf")
    with open(conf, "w") as f:
        f.write(stepped_line_config(sim, root, port, db, "window_parts = 10\n"
                                    "baseline_parts = 10\nexpected_reject_rate = 0.5\n"))
    v = Vigild(build, conf, os.path.join(tmp, "vigild.log"))
    plc = MasterPLC(port)
    start_vigild(v, plc)
    url = v.review_url()

    results = {}
    for i in range(PARTS):
        results[i] = r = run_part(plc, i + 1, i)
        if i < DEAD_FROM or i >= ALIVE_FROM:
            judged_normally(f"part {i}, its window real", r)
        elif r[4] != REJECT or r[7] & (FL_FAILSAFE | FL_VIB_FLAT) != FL_FAILSAFE | FL_VIB_FLAT \
                or r[7] & (FL_NO_VIBRATION | FL_CLIPPED):
            fail(f"part {i}, its window flat: result {r}, want a fail-safe reject flagged "
                 "flat (bits 2 and 11) only")
        if i == DEAD_FROM - 1 or i == ALIVE_FROM:
            status_with(plc, f"sensor ok after part {i}", lambda s: s[1] & ST_SENSOR_OK)
        elif i == DEAD_FROM:
            status_with(plc, "sensor ok clear and error 2 after the first flat part",
                        lambda s: not s[1] & ST_SENSOR_OK and s[2] == ERR_SENSOR)
    # Every flat part is counted under its cause once its result is out.
    wait_for(f"/metrics counting {len(dead)} flat parts",
             lambda: failsafe_total(url, "sensor_flat") == len(dead))
    status = plc.status()
    if status[1] & ST_QUALITY_ALARM:
        fail(f"status {status}: a quality alarm raised by the dead sensor's rejects")
    rows = wait_rows(db, "SELECT i.part_id, i.verdict, i.flags, v.inspection_id IS NOT NULL "
                     "FROM inspections i LEFT JOIN vibration v ON v.inspection_id = i.id "
                     "ORDER BY i.part_id", PARTS)
    text = stop_vigild(v, plc)

    if [r[0] for r in rows] != list(range(PARTS)):
        fail(f"database part ids {[r[0] for r in rows]}, want 0..{PARTS - 1} once each")
    for pid, verdict, flags, has_figures in rows:
        r = results[pid]
        if verdict != {ACCEPT: "accept", REJECT: "reject", MARGINAL: "marginal"}[r[4]] or \
                flags & 0xffff != r[7]:
            fail(f"part {pid}: database {verdict}, flags {flags:#x}; the PLC got {r}")
        if bool(has_figures) == (pid in dead):
            fail(f"part {pid}: vibration figures {'logged' if has_figures else 'missing'}")

    ev = log_rows(db, "SELECT kind, message FROM events ORDER BY id")
    sensor = [(k, m) for k, m in ev if k.startswith("sensor-")]
    if [k for k, _ in sensor] != ["sensor-flat", "sensor-ok"]:
        fail(f"sensor events {sensor}, want one sensor-flat, then sensor-ok")
    if f"vibration drive_end: part {DEAD_FROM}: window flat, its range 0 below flat_level " \
            "0.01" not in sensor[0][1] or f"part {ALIVE_FROM}:" not in sensor[1][1]:
        fail(f"sensor events {sensor}: want the sensor, the parts and the range named")
    counted = sum(int(n) for k, m in ev if k == "failsafe"
                  for n in re.findall(r"\bsensor_flat (\d+)", m))
    if counted != len(dead):
        fail(f"failsafe events count {counted} flat parts, want {len(dead)}")
    if any(k.startswith("alarm-") for k, _ in ev):
        fail(f"quality alarm events {[e for e in ev if e[0].startswith('alarm-')]}")
    if f"fail-safe rejects by cause: sensor_flat {len(dead)}" not in text:
        fail(f"vigild's counts at exit do not say sensor_flat {len(dead)}")

    # One warning a period at most, each naming the sensor and the range;
    # with what they held back, they account for every flat part.
    warned = check_held_warnings(text, "vibration window from drive_end",
                                 r"its range is (\S+) over 2048 samples, below flat_level "
                                 r"0\.01;", "windows", DEAD_FROM, len(dead))
    print(f"PASS: {len(dead)} flat parts rejected and flagged, {len(warned)} warning(s), "
          f"events {[k for k, _ in sensor]}")
