"""Shared pieces of the tests that run vigil-sim and vigild whole over
loopback: free ports, outcomes, simulated parts, a vigild process, and the
parts of a vigild configuration that every such test writes the same way."""
import atexit
import csv
import os
import re
import signal
import socket
import subprocess
import sys
import time


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def skip(msg):
    print("SKIP:", msg)
    sys.exit(77)


def read_scores(path):
    """vigil-eval --scores (or train.py --scores-out): rows by part_id."""
    with open(path) as f:
        return {r["part_id"]: r for r in csv.DictReader(f)}


def read_manifest(pkg):
    """A model package's manifest.ini as key -> value (groups merged,
    comments skipped)."""
    with open(os.path.join(pkg, "manifest.ini")) as f:
        return dict(line.strip().split("=", 1) for line in f
                    if "=" in line and not line.startswith("#"))


def read_maps(path):
    """vigil-eval --heatmaps (or train.py --maps-out): [N, H, W] float32."""
    import numpy as np
    raw = np.fromfile(path, np.uint8)
    if raw[:4].tobytes() != b"VGH1":
        fail(f"{path}: not a defect map file")
    n, w, h = (int(v) for v in raw[4:16].view("<u4"))
    return raw[16:].view("<f4").reshape(n, h, w)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def binaries(build):
    """Paths of vigil-sim and vigild in a build directory."""
    return os.path.join(build, "tools", "vigil-sim"), os.path.join(build, "app", "vigild")


def generate_parts(build, out, parts, seed, split="e2e"):
    """vigil-sim's simulated parts (images and vibration.wav) in out."""
    subprocess.run([binaries(build)[0], "generate", "--out", out, "--parts", str(parts),
                    "--seed", str(seed), "--split", split], check=True,
                   stdout=subprocess.DEVNULL)


def camera_section(sim_dir, frame_timeout_ms=5000, elements="", extra=""):
    """[camera.top]: the simulated parts' images, one frame per trigger;
    elements (e.g. "identity sleep-time=N ! ") go after the decoder."""
    return f"""[camera.top]
pipeline = multifilesrc location={sim_dir}/images/part-%05d.png index=0 caps=image/png ! pngdec ! {elements}videoconvert ! appsink name=sink
trigger = sequence
frame_timeout_ms = {frame_timeout_ms}
{extra}"""


class Vigild:
    """vigild on a configuration file, its output appended to log_path."""

    def __init__(self, build, conf, log_path, args=()):
        self.log_path = log_path
        self.log = open(log_path, "a+")
        self.p = subprocess.Popen([binaries(build)[1], "--config", conf, *args], stdout=self.log,
                                  stderr=subprocess.STDOUT)
        # A test that fails midway leaves no vigild behind.
        atexit.register(lambda: self.p.poll() is None and self.p.kill())

    def running(self):
        return self.p.poll() is None

    def stop(self, timeout=60):
        """SIGTERM (a clean stop: the parts in flight finish); its exit code."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        rc = self.p.wait(timeout=timeout)
        self.log.flush()
        return rc

    def text(self):
        with open(self.log_path) as f:
            return f.read()


def line_config(cameras, sim_dir, root, plc_port, db, vibration_extra="",
                deadline_ms=2000, plc_extra="", tail="", window_timeout_ms=5000,
                package=None):
    """A vigild configuration: the given [camera.*] sections, the simulated
    line's vibration recording (SKF 6205 bearing for the condition
    figures), the shipped synthetic model (or package), the PLC on
    plc_port (plc_extra: more [plc] keys), db, and tail (more sections)."""
    package = package or f"{root}/models/synthetic-v2"
    return f"""{cameras}
[vibration.drive_end]
pipeline = filesrc location={sim_dir}/vibration.wav ! wavparse ! audioconvert ! audioresample ! appsink name=sink
mode = sequence
rate_hz = 12000
window = 2048
stride = 2048
timeout_ms = {window_timeout_ms}
shaft_hz = 29.95
bearing_balls = 9
ball_diameter_mm = 7.94
pitch_diameter_mm = 39.04
{vibration_extra}
[model]
package = {package}
backend = opencv

[plc]
host = 127.0.0.1
port = {plc_port}
poll_ms = 2
reject_deadline_ms = {deadline_ms}
{plc_extra}
[database]
path = {db}
{tail}"""


def sequence_camera(sim_dir, name="top"):
    """A [camera.NAME] section reading the simulated parts' images in order."""
    return f"""[camera.{name}]
pipeline = multifilesrc location={sim_dir}/images/part-%05d.png index=0 caps=image/png ! pngdec ! videoconvert ! appsink name=sink
trigger = sequence
frame_timeout_ms = 5000
"""


def plc_results(results_csv, parts):
    """vigil-sim's results file read back: exactly one PLC result for each
    of `parts` parts, else the test fails; its rows."""
    with open(results_csv) as f:
        plc = list(csv.DictReader(f))
    if len(plc) != parts:
        fail(f"{len(plc)} parts in results, want {parts}")
    for row in plc:
        if int(row["results"]) != 1:
            fail(f"part {row['part_id']} got {row['results']} PLC results")
    return plc


def wait_for_log(log_path, proc, pattern, timeout=60):
    """The first match of pattern in a growing log, or None when proc ends
    or timeout passes first."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        with open(log_path) as f:
            m = re.search(pattern, f.read())
        if m:
            return m
        if proc.poll() is not None:
            return None
        time.sleep(0.1)
    return None


class Line:
    """vigil-sim as the PLC and vigild with one camera over `parts` freshly
    generated parts, all in folder tmp; extra_conf is appended to vigild's
    configuration (e.g. a [review] section), sim_args to vigil-sim run's
    (e.g. ["--burst", "10"]). Start with start(); stop() ends both and
    returns vigild's exit status."""

    def __init__(self, build, root, tmp, parts, seed, split, extra_conf="", rate=1200,
                 sim_args=()):
        self.sim_bin, self.vigild_bin = binaries(build)
        self.tmp, self.parts, self.rate = tmp, parts, rate
        self.sim_args = list(sim_args)
        self.sim_dir = os.path.join(tmp, "sim")
        self.db = os.path.join(tmp, "vigil.db")
        self.conf = os.path.join(tmp, "vigild.conf")
        self.log_path = os.path.join(tmp, "vigild.log")
        self.plc_port = free_port()
        subprocess.run([self.sim_bin, "generate", "--out", self.sim_dir, "--parts", str(parts),
                        "--seed", str(seed), "--split", split], check=True,
                       stdout=subprocess.DEVNULL)
        with open(self.conf, "w") as f:
            f.write(line_config(sequence_camera(self.sim_dir), self.sim_dir, root,
                                self.plc_port, self.db) + extra_conf)
        self.sim = self.vigild = self.log = None

    def start(self):
        t = self.tmp
        self.sim = subprocess.Popen(
            [self.sim_bin, "run", "--parts-dir", self.sim_dir, "--port", str(self.plc_port),
             "--rate", str(self.rate), "--results", os.path.join(t, "results.csv"),
             "--summary", os.path.join(t, "summary.json"), "--db", self.db,
             "--ready-timeout-s", "60"] + self.sim_args, stdout=subprocess.DEVNULL)
        self.log = open(self.log_path, "w")
        self.vigild = subprocess.Popen([self.vigild_bin, "--config", self.conf], stdout=self.log,
                                       stderr=subprocess.STDOUT)
        return self

    def review_url(self, timeout=60):
        """The review server's address as vigild logged it, or None."""
        m = wait_for_log(self.log_path, self.vigild,
                         r"review: serving (http://127\.0\.0\.1:(\d+)/)", timeout)
        return m.group(1) if m else None

    def wait_sim(self, timeout=240):
        """vigil-sim's exit status: 0 when every part got one result and row."""
        return self.sim.wait(timeout=timeout)

    def stop(self):
        rc = None
        if self.vigild:
            self.vigild.send_signal(signal.SIGTERM)
            rc = self.vigild.wait(timeout=60)
        if self.sim and self.sim.poll() is None:
            self.sim.kill()
            self.sim.wait()
        if self.log:
            self.log.close()
        return rc

    def log_tail(self, n=3000):
        with open(self.log_path) as f:
            return f.read()[-n:]


def add_part_media(db, sim_dir, part_id, mod_hz, rate_hz=12000, n=8192):
    """Keeps files with part_id's latest inspection the way the database
    writer does (table media, paths relative to the log's media folder):
    the part's camera image as 8-bit gray PNG, a defect heatmap (a hot
    square over the image's centre) and a mono float32 WAV whose envelope
    repeats at mod_hz (a 3.5 kHz carrier, amplitude-modulated). Returns
    {kind: (media id, full path)}. Rows the writer kept for that inspection
    are replaced (their files stay), so the test knows what the files hold."""
    import sqlite3
    import struct

    import cv2
    import numpy as np

    con = sqlite3.connect(db)
    (media_dir,) = con.execute("SELECT value FROM meta WHERE key = 'media_dir'").fetchone()
    (insp,) = con.execute("SELECT max(id) FROM inspections WHERE part_id = ?",
                          (part_id,)).fetchone()
    con.execute("DELETE FROM media WHERE inspection_id = ?", (insp,))
    day = "test-media"
    os.makedirs(os.path.join(media_dir, day), exist_ok=True)
    gray = cv2.imread(os.path.join(sim_dir, "images", f"part-{part_id:05d}.png"),
                      cv2.IMREAD_GRAYSCALE)
    heat = np.zeros((gray.shape[0] // 4, gray.shape[1] // 4), np.uint8)
    h, w = heat.shape
    heat[h // 4:3 * h // 4, w // 4:3 * w // 4] = 255
    t = np.arange(n) / rate_hz
    x = (0.2 * (1 + np.cos(2 * np.pi * mod_hz * t)) * np.sin(2 * np.pi * 3500 * t)
         ).astype("<f4")
    files = {}
    for kind, name in (("image", f"{insp}-{part_id}-top.png"),
                       ("heatmap", f"{insp}-{part_id}-heatmap.png"),
                       ("vibration", f"{insp}-{part_id}-vibration.wav")):
        full = os.path.join(media_dir, day, name)
        if kind == "image":
            cv2.imwrite(full, gray)
        elif kind == "heatmap":
            cv2.imwrite(full, heat)
        else:
            with open(full, "wb") as f:
                f.write(b"RIFF" + struct.pack("<I", 36 + 4 * n) + b"WAVEfmt " +
                        struct.pack("<IHHIIHH", 16, 3, 1, rate_hz, 4 * rate_hz, 4, 32) +
                        b"data" + struct.pack("<I", 4 * n) + x.tobytes())
        cur = con.execute("INSERT INTO media (inspection_id, camera, kind, path, bytes)"
                          " VALUES (?, ?, ?, ?, ?)",
                          (insp, "drive_end" if kind == "vibration" else "top", kind,
                           f"{day}/{name}", os.path.getsize(full)))
        files[kind] = (cur.lastrowid, full)
    con.commit()
    con.close()
    return files
