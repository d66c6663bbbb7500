#!/usr/bin/python3
"""vigild whole with a camera whose picture goes flat mid-run and comes
back: the simulated line's images, made flat on purpose from part
FLAT_FROM on (all black as with a lens cap or the light off, all white as
a saturated sensor, mid grey with a sensor's +-1 level of noise), then the
parts' own again from part BACK_FROM on. The PLC is pymodbus polling
vigild's registers, one part at a time, so nothing here depends on speed.
Asserts:

- the parts before are judged normally;
- every part with a flat frame is a fail-safe reject with flag bit 12 in
  the PLC's result block and in its database row; while the last part's
  frame was flat, "camera ok" is clear and the error code is 1;
- one camera-flat event naming the camera, then camera-ok; /metrics and
  vigild's counts at exit count every flat part under image_flat; the
  warnings, held back to one per 10 s, account for every flat part;
- the flat rejects do not feed the quality alarm;
- the line keeps running: the parts after are judged normally again.

usage: test_camera_flat.py BUILD_DIR SOURCE_ROOT
"""
import os
import sys

import cv2
import numpy as np

from linetest import (Vigild, check_held_warnings, fail, free_port, generate_parts, log_rows,
                      require_model, wait_for, wait_rows, workdir)
from plctest import (ACCEPT, FL_FAILSAFE, FL_NO_FRAME, MARGINAL, REJECT, ST_CAMERA_OK,
                     MasterPLC, failsafe_total, quiet_pymodbus, run_part, start_vigild,
                     status_with, stepped_line_config, stop_vigild)

build, root = sys.argv[1], sys.argv[2]
FLAT_FROM, BACK_FROM, PARTS = 8, 20, 26
FL_IMAGE_FLAT, ST_QUALITY_ALARM, ERR_CAMERA = 1 << 12, 1 << 14, 1
SEED = 4343


def cap_lens(sim):
    """Makes the frames of parts FLAT_FROM .. BACK_FROM - 1 flat, a third
    each black, white, and grey with +-1 level of noise; returns them."""
    rng = np.random.default_rng(SEED)
    flat = list(range(FLAT_FROM, BACK_FROM))
    third = len(flat) // 3
    for k, part in enumerate(flat):
        path = os.path.join(sim, "images", f"part-{part:05d}.png")
        img = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
        if img is None:
            fail(f"cannot read {path}")
        if k < third:
            img[:] = 0
        elif k < 2 * third:
            img[:] = 255
        else:
            img = (128 + rng.integers(-1, 2, img.shape)).astype(np.uint8)
        if not cv2.imwrite(path, img):
            fail(f"cannot write {path}")
    return flat


def judged_normally(what, r):
    if r[4] not in (ACCEPT, REJECT, MARGINAL) or r[7] & (FL_FAILSAFE | FL_IMAGE_FLAT):
        fail(f"{what}: result {r}, want the model's verdict, no fail-safe, no flat flag")


quiet_pymodbus()
require_model(root)
with workdir("vigil-camflat-") as tmp:
    sim, port, db = os.path.join(tmp, "sim"), free_port(), os.path.join(tmp, "vigil.db")
    generate_parts(build, sim, PARTS, SEED)
    flat = cap_lens(sim)
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
        if i < FLAT_FROM or i >= BACK_FROM:
            judged_normally(f"part {i}, its own picture", r)
        elif r[4] != REJECT or r[7] & (FL_FAILSAFE | FL_IMAGE_FLAT) != \
                FL_FAILSAFE | FL_IMAGE_FLAT or r[7] & FL_NO_FRAME:
            fail(f"part {i}, its frame flat: result {r}, want a fail-safe reject flagged "
                 "flat (bits 2 and 12), with a frame")
        if i == FLAT_FROM - 1 or i == BACK_FROM:
            status_with(plc, f"camera ok after part {i}", lambda s: s[1] & ST_CAMERA_OK)
        elif i == FLAT_FROM:
            status_with(plc, "camera ok clear and error 1 after the first flat part",
                        lambda s: not s[1] & ST_CAMERA_OK and s[2] == ERR_CAMERA)
    wait_for(f"/metrics counting {len(flat)} flat parts",
             lambda: failsafe_total(url, "image_flat") == len(flat))
    status = plc.status()
    if status[1] & ST_QUALITY_ALARM:
        fail(f"status {status}: a quality alarm raised by the flat frames' rejects")
    rows = wait_rows(db, "SELECT part_id, verdict, flags FROM inspections ORDER BY part_id",
                     PARTS)
    text = stop_vigild(v, plc)

    if [r[0] for r in rows] != list(range(PARTS)):
        fail(f"database part ids {[r[0] for r in rows]}, want 0..{PARTS - 1} once each")
    for pid, verdict, flags in rows:
        r = results[pid]
        if verdict != {ACCEPT: "accept", REJECT: "reject", MARGINAL: "marginal"}[r[4]] or \
                flags & 0xffff != r[7]:
            fail(f"part {pid}: database {verdict}, flags {flags:#x}; the PLC got {r}")

    ev = log_rows(db, "SELECT kind, message FROM events ORDER BY id")
    cam = [(k, m) for k, m in ev if k in ("camera-flat", "camera-ok")]
    if [k for k, _ in cam] != ["camera-flat", "camera-ok"]:
        fail(f"camera events {cam}, want one camera-flat, then camera-ok")
    if f"camera top: part {FLAT_FROM}: frame flat, its grey levels' standard deviation " \
            "0.00 below flat_level 2" not in cam[0][1] or f"part {BACK_FROM}:" not in cam[1][1]:
        fail(f"camera events {cam}: want the camera, the parts and the contrast named")
    if any(k.startswith("alarm-") for k, _ in ev):
        fail(f"quality alarm events {[e for e in ev if e[0].startswith('alarm-')]}")
    if f"image_flat {len(flat)}" not in text:
        fail(f"vigild's counts at exit do not say image_flat {len(flat)}")

    warned = check_held_warnings(text, "image from camera top",
                                 r"its grey levels' standard deviation is (\S+), below "
                                 r"flat_level 2;", "frames", FLAT_FROM, len(flat))
    print(f"PASS: {len(flat)} flat frames rejected and flagged, {len(warned)} warning(s), "
          f"events {[k for k, _ in cam]}")
