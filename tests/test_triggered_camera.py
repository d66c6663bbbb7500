#!/usr/bin/python3
"""vigild whole with a hardware-triggered camera (`trigger = sequence`, a
live source): a udpsrc the test feeds one simulated part's image per
trigger, as the camera would on its trigger line; the PLC (pymodbus, vigild
in the server role) waits for each result before the next trigger. The test
decides when a frame is missing or doubled, so nothing depends on the
machine being fast or slow.

  ready   no frame comes before the first trigger: vigild reports ready
          all the same (the PLC triggers only once it is), and the first
          parts are judged on their own images.
  miss    the camera misses part N's trigger: part N is a fail-safe reject
          flagged "no frame"; every other part is judged on its own image
          (the stored image is compared with each part's); a camera-desync
          event is logged.
  extra   the camera fires twice on part N (the next trigger comes 0.2 s
          later, more than slack_ms): the extra frame is dropped and every
          part is judged on its own image; a camera-desync event.

usage: test_triggered_camera.py BUILD_DIR SOURCE_ROOT SCENARIO
"""
import os
import socket
import sqlite3
import sys
import time

import numpy as np
from PIL import Image

from linetest import (Vigild, fail, free_port, generate_parts, line_config, workdir)
from plctest import (FL_FAILSAFE, FL_NO_FRAME, ST_READY, MasterPLC, part_id, quiet_pymodbus,
                     stop_vigild)

PARTS = 16
FAULT_PART = 6


def camera(port):
    return f"""[camera.top]
pipeline = udpsrc address=127.0.0.1 port={port} buffer-size=4000000 \
caps=video/x-raw,format=GRAY8,width=192,height=192,framerate=0/1 ! videoconvert ! \
appsink name=sink
trigger = sequence
frame_timeout_ms = 400
"""


def stored_images(db):
    """{part_id: (flags, stored image or None)} from the inspection log."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        rows = con.execute("SELECT i.part_id, i.flags, m.path FROM inspections i LEFT JOIN "
                           "media m ON m.inspection_id = i.id AND m.kind = 'image' "
                           "ORDER BY i.part_id").fetchall()
        events = [k for (k,) in con.execute("SELECT kind FROM events")]
    finally:
        con.close()
    out = {}
    for pid, flags, path in rows:
        img = np.array(Image.open(os.path.join(db + ".media", path))) if path else None
        out[pid] = (flags, img)
    return out, events


def main():
    build, root, scenario = sys.argv[1], sys.argv[2], sys.argv[3]
    if scenario not in ("ready", "miss", "extra"):
        fail(f"unknown scenario {scenario}")
    quiet_pymodbus()
    with workdir("vigil-trigcam-") as tmp:
        sim = os.path.join(tmp, "sim")
        generate_parts(build, sim, PARTS + 2, 7)
        imgs = [np.array(Image.open(f"{sim}/images/part-{k:05d}.png")) for k in range(PARTS)]
        cam_port, plc_port = free_port(), free_port()
        db = os.path.join(tmp, "vigil.db")
        conf = os.path.join(tmp, "vigild.conf")
        with open(conf, "w") as f:
            f.write(line_config(camera(cam_port), sim, root, plc_port, db, deadline_ms=1500,
                                plc_extra="mode = server\npeer_timeout_ms = 600000\n",
                                tail="keep_accepted_every = 1\n"))
        v = Vigild(build, conf, os.path.join(tmp, "vigild.log"))
        plc = MasterPLC(plc_port)
        # Ready with no frame sent: a triggered camera has none to send.
        v.wait_until("ready before the first trigger", lambda: plc.status()[1] & ST_READY,
                     60, 0.01)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        got = {}
        for k in range(PARTS):
            plc.trigger(k + 1, k)
            if not (scenario == "miss" and k == FAULT_PART):
                sock.sendto(imgs[k].tobytes(), ("127.0.0.1", cam_port))
            if scenario == "extra" and k == FAULT_PART:
                sock.sendto(imgs[k].tobytes(), ("127.0.0.1", cam_port))
                # The line's spacing: the next part comes well after the
                # double shot (more than the camera's slack_ms, 20 ms).
                time.sleep(0.2)
            r = plc.next_result()
            got[part_id(r)] = r[7]
            plc.ack(r[0])
        sock.close()
        stop_vigild(v, plc)
        rows, events = stored_images(db)
        if sorted(rows) != list(range(PARTS)):
            fail(f"parts logged: {sorted(rows)}, want 0..{PARTS - 1}")
        for pid in range(PARTS):
            flags, img = rows[pid]
            missing = scenario == "miss" and pid == FAULT_PART
            if missing:
                if not flags & FL_NO_FRAME or not got[pid] & FL_FAILSAFE or img is not None:
                    fail(f"part {pid}: its frame never came, yet flags {flags:#x}, PLC flags "
                         f"{got[pid]:#x}, image stored: {img is not None}")
                continue
            if flags & FL_NO_FRAME or img is None:
                fail(f"part {pid}: no frame (flags {flags:#x}) though the camera sent it")
            same = [k for k in range(PARTS) if (img == imgs[k]).all()]
            if same != [pid]:
                fail(f"part {pid} judged on the image of part(s) {same}")
        if scenario != "ready" and "camera-desync" not in events:
            fail(f"no camera-desync event: {events}")
        if scenario == "ready" and "camera-desync" in events:
            fail("a camera-desync event with no fault")
        print(f"{scenario}: {PARTS} parts, each judged on its own image or failed safe")


if __name__ == "__main__":
    main()
