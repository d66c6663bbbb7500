#!/usr/bin/python3
"""vigild with two live cameras, a GigE Vision camera (Aravis's fake camera
through aravissrc, Bayer) and an RTSP IP camera (gst-rtsp-server), plus the
WAV-driven vibration source, on a simulated line. The GigE camera is killed
mid-run and started again.

Asserts: every part gets exactly one PLC result and one matching database
row; the parts inspected while the camera was away are fail-safe rejects
flagged "no frame"; vigild restarts the camera by itself and parts after the
recovery are inspected normally again.

usage: test_cameras_e2e.py BUILD_DIR SOURCE_ROOT [PARTS]
"""
import csv
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

from linetest import binaries, fail, free_port, line_config, skip

build, root = sys.argv[1], sys.argv[2]
parts = int(sys.argv[3]) if len(sys.argv) > 3 else 400
rate = 1200  # parts per minute
sim_bin, vigild_bin = binaries(build)
FLAG_FAILSAFE, FLAG_NO_FRAME = 1 << 2, 1 << 3

if not shutil.which("arv-fake-gv-camera-0.8"):
    skip("arv-fake-gv-camera-0.8 (aravis-tools) is not installed")
for element in ("aravissrc", "bayer2rgb", "rtspsrc", "jpegdec"):
    if subprocess.run(["gst-inspect-1.0", element], capture_output=True).returncode != 0:
        skip(f"GStreamer element {element} is not installed")


def start_gige():
    p = subprocess.Popen(["arv-fake-gv-camera-0.8", "-i", "127.0.0.1"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return p


procs = []
with tempfile.TemporaryDirectory(prefix="vigil-cams-") as tmp:
    try:
        sim_dir = os.path.join(tmp, "sim")
        subprocess.run([sim_bin, "generate", "--out", sim_dir, "--parts", str(parts),
                        "--seed", "5150", "--split", "cams"], check=True)
        rtsp_port, plc_port = free_port(), free_port()
        rtsp = subprocess.Popen(["/usr/bin/python3", os.path.join(root, "tests", "rtsp_camera.py"),
                                 str(rtsp_port)], stdout=subprocess.PIPE, text=True)
        procs.append(rtsp)
        if not rtsp.stdout.readline().startswith("ready"):
            fail("the RTSP camera did not start")
        gige = start_gige()
        procs.append(gige)
        db = os.path.join(tmp, "vigil.db")
        conf = os.path.join(tmp, "vigild.conf")
        with open(conf, "w") as f:
            f.write(line_config(f"""[camera.gige]
pipeline = aravissrc camera-name=127.0.0.1 ! bayer2rgb ! videoconvert ! appsink name=sink
trigger = timestamp
frame_timeout_ms = 400
watchdog_ms = 1000
restart_min_ms = 300
restart_max_ms = 1000

[camera.ip]
pipeline = rtspsrc location=rtsp://127.0.0.1:{rtsp_port}/cam latency=0 ! rtpjpegdepay ! jpegdec ! videoconvert ! appsink name=sink
trigger = timestamp
frame_timeout_ms = 400
watchdog_ms = 1000
restart_min_ms = 300
restart_max_ms = 1000

""", sim_dir, root, plc_port, db, deadline_ms=3000))
        results = os.path.join(tmp, "results.csv")
        sim = subprocess.Popen([sim_bin, "run", "--parts-dir", sim_dir, "--port", str(plc_port),
                                "--rate", str(rate), "--results", results, "--db", db,
                                "--ready-timeout-s", "60"], stdout=subprocess.PIPE, text=True)
        procs.append(sim)
        log_path = os.path.join(tmp, "vigild.log")
        vigild = subprocess.Popen([vigild_bin, "--config", conf], stdout=open(log_path, "w"),
                                  stderr=subprocess.STDOUT)
        procs.append(vigild)

        # Wait until the line runs, then pull the GigE camera's plug for 2 s.
        t0 = time.monotonic()
        while not (os.path.exists(db) and os.path.getsize(db) > 0) and time.monotonic() - t0 < 60:
            time.sleep(0.1)
        time.sleep(parts / rate * 60 / 3)
        gige.kill()
        gige.wait()
        t_kill = time.time()
        time.sleep(2.0)
        gige = start_gige()
        procs.append(gige)
        t_back = time.time()

        sim_out, _ = sim.communicate(timeout=parts / rate * 60 + 120)
        print(sim_out[-1500:])
        vigild.send_signal(signal.SIGTERM)
        vigild_rc = vigild.wait(timeout=60)
        log = open(log_path).read()
        print("\n".join(l for l in log.splitlines() if "camera" in l)[-2500:])
        if vigild_rc != 0:
            fail(f"vigild exited with {vigild_rc}")
        if sim.returncode != 0:
            fail(f"vigil-sim exited with {sim.returncode}: lost, duplicated or mislogged results")

        with open(results) as f:
            plc = list(csv.DictReader(f))
        if len(plc) != parts or any(int(r["results"]) != 1 for r in plc):
            fail("not every part got exactly one PLC result")
        con = sqlite3.connect(db)
        rows = con.execute("SELECT part_id, verdict, flags, t_wall_us FROM inspections "
                           "ORDER BY part_id").fetchall()
        con.close()
        if [r[0] for r in rows] != list(range(parts)):
            fail("database rows are not exactly one per part")
        outage = [r for r in rows if r[2] & FLAG_NO_FRAME]
        for pid, verdict, flags, t in outage:
            if verdict != "reject" or not flags & FLAG_FAILSAFE:
                fail(f"part {pid} had no frame but got {verdict} (flags {flags})")
            # Only parts around the outage lack a frame (watchdog, restart delay).
            if not (t_kill - 1.0 <= t / 1e6 <= t_back + 6.0):
                fail(f"part {pid} lacked a frame outside the outage")
        if not outage:
            fail("no part was flagged during the camera outage")
        last_out = max(r[3] for r in outage) / 1e6
        after = [r for r in rows if r[3] / 1e6 > last_out]
        if len(after) < parts / 10 or any(r[2] & FLAG_NO_FRAME for r in after):
            fail("inspection did not resume normally after the camera came back")
        if "camera gige: restarted" not in log:
            fail("vigild did not report restarting the GigE camera")
        print(f"PASS: {parts} parts, {len(outage)} fail-safe during a 2 s GigE outage, "
              f"{len(after)} inspected after recovery")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
