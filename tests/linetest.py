"""Shared pieces of the tests that run vigil-sim and vigild whole over
loopback: free ports, outcomes, simulated parts, a vigild process (the one
way a test starts, waits for and stops vigild), a test's temporary folder,
and the parts of a vigild configuration that every such test writes the
same way."""
import atexit
import contextlib
import csv
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

WAIT_S = 40             # generous: the machine is shared
QUICK_PARTS = 100       # a long run's parts under VIGIL_TEST_QUICK=1
LOG_TAIL = 4000         # characters of each vigild log a failing test prints

_started = []           # every Vigild this test started, for the logs on failure
_logs_printed = False


def print_logs():
    """The tail of every vigild log this test wrote, once: what a failure
    needs to be understood without running it again."""
    global _logs_printed
    if _logs_printed:
        return
    _logs_printed = True
    seen = set()
    for v in _started:
        if v.log_path in seen:
            continue                # vigild restarted on the same log
        seen.add(v.log_path)
        try:
            text = v.text()
        except OSError:
            continue                # its folder is already gone
        print(f"--- vigild's log {v.log_path}, last lines:\n{text[-LOG_TAIL:]}")


def fail(msg):
    print("FAIL:", msg)
    print_logs()
    sys.exit(1)


def wait_for(what, cond, timeout=WAIT_S, poll_s=0.01):
    """cond()'s first true value; fails the test after timeout seconds."""
    end = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > end:
            fail(f"timed out waiting for {what}")
        time.sleep(poll_s)


class Checks:
    """Failures collected, not fatal: a test of many independent checks
    (the review server's endpoints, its answers to hostile clients)
    reports every one that fails in a single run. finish() ends it."""

    def __init__(self):
        self.failures = []

    def fail(self, msg):
        print("FAIL:", msg)
        self.failures.append(msg)

    def check(self, cond, msg):
        if not cond:
            self.fail(msg)
        return cond

    def finish(self):
        """Exits 1 with the vigild logs' tails if any check failed; call it
        inside workdir(), while the logs are still there."""
        if self.failures:
            print_logs()
            print(f"FAIL: {len(self.failures)} checks failed")
            sys.exit(1)


def skip(msg):
    """Only for what a machine may truly lack (a tool, root, a GPU), never
    for a file the repository holds."""
    print("SKIP:", msg)
    sys.exit(77)


def require_browser(build, chromium, node_modules):
    """A browser test's tools: skips where the machine lacks chromium or
    npm (playwright-core cannot be installed), fails where npm is there
    but `make web-test-deps` was not run."""
    if not os.access(chromium, os.X_OK):
        skip(f"{chromium} is not installed (apt-get install chromium)")
    if not shutil.which("node") or not shutil.which("npm"):
        skip("node or npm is not installed, so playwright-core cannot be")
    if not os.path.isdir(os.path.join(node_modules, "playwright-core")):
        fail(f"playwright-core is not in {node_modules} although npm is here: "
             f"run `make web-test-deps BUILD={build}`")


def browser_tools(build):
    """A browser test's chromium and node_modules (VIGIL_NODE_MODULES, else
    the build's web-test/node_modules), once require_browser found them."""
    chromium = "/usr/bin/chromium"
    node_modules = os.environ.get("VIGIL_NODE_MODULES",
                                  os.path.join(build, "web-test", "node_modules"))
    require_browser(build, chromium, node_modules)
    return chromium, node_modules


def run_node_driver(tmp, source, node_modules, args, timeout, **env):
    """A browser test's playwright driver: source written to
    tmp/driver.cjs and run by node with playwright-core from node_modules
    (HOME in tmp; env: more variables, e.g. TZ), args after the script.
    Its CompletedProcess, output captured as text."""
    driver = os.path.join(tmp, "driver.cjs")
    with open(driver, "w") as f:
        f.write(source)
    return subprocess.run(["node", driver, *args],
                          env=dict(os.environ, NODE_PATH=node_modules, HOME=tmp, **env),
                          capture_output=True, text=True, timeout=timeout)


def require_model(root, name="synthetic-v2"):
    """Fails, naming the file, when a committed model package is missing:
    a broken checkout must not turn a test green as a skip."""
    path = os.path.join(root, "models", name, "manifest.ini")
    if not os.path.exists(path):
        fail(f"{path} is missing: the model package is committed in models/, "
             "so this checkout is broken")


def quick_parts(parts):
    """parts, or QUICK_PARTS when VIGIL_TEST_QUICK=1 shortens a run of
    1,000 parts or more for a quick local run (CI runs them whole)."""
    if os.environ.get("VIGIL_TEST_QUICK") == "1" and parts >= 1000:
        print(f"VIGIL_TEST_QUICK=1: {QUICK_PARTS} parts instead of {parts}")
        return QUICK_PARTS
    return parts


@contextlib.contextmanager
def workdir(prefix):
    """A fresh temporary folder for one run, removed afterwards. Every
    vigild started meanwhile is killed first if it still runs, and an error
    that is not a test failure (a traceback, a timeout) prints the logs'
    tails before they go; fail() prints them itself."""
    tmp = tempfile.mkdtemp(prefix=prefix)
    first = len(_started)
    try:
        yield tmp
    except Exception:
        print_logs()
        raise
    finally:
        for v in _started[first:]:
            v.reap()
        shutil.rmtree(tmp, ignore_errors=True)


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


def check_keeps_package(what, pkg, write):
    """write() (a tool run, returning its CompletedProcess) aims at the
    existing package pkg: it must be refused, saying so, and leave pkg's
    file what (e.g. vision.onnx) byte for byte as it was."""
    path = os.path.join(pkg, what)
    with open(path, "rb") as f:
        before = f.read()
    r = write()
    with open(path, "rb") as f:
        after = f.read()
    if r.returncode == 0 or "exists and is not empty" not in r.stderr or before != after:
        fail(f"writing into the existing package {pkg}: exit {r.returncode}, stderr "
             f"{r.stderr.strip()[-200:]!r}, {what} {'kept' if before == after else 'changed'}")


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
    """vigild on a configuration file: the one way a test starts it, waits
    for it and stops it. Its output (stdout and stderr) is appended to
    log_path, so a second vigild on the same log keeps the first's lines;
    env adds variables, cwd is its working folder. Whatever way the test
    ends, it leaves no vigild running (workdir() and an exit hook kill it),
    and a failing test prints the tail of its log (fail())."""

    def __init__(self, build, conf, log_path, args=(), env=None, cwd=None, exe=None,
                 user=None):
        """exe: another vigild binary (an installed copy) than the build's;
        user: a user name to run it as, in that user's group only (the test
        runs as root)."""
        self.log_path = log_path
        self.log = open(log_path, "a+")
        as_user = {}
        if user:
            import pwd
            as_user = dict(user=user, group=pwd.getpwnam(user).pw_gid, extra_groups=[])
        # Absolute, so that cwd does not change which binary runs.
        self.p = subprocess.Popen([os.path.abspath(exe or binaries(build)[1]), "--config", conf, *args],
                                  stdout=self.log, stderr=subprocess.STDOUT, cwd=cwd,
                                  env=dict(os.environ, **env) if env else None, **as_user)
        _started.append(self)
        atexit.register(self.reap)

    @staticmethod
    def once(build, conf=None, args=(), timeout=60, cwd=None, check=False):
        """vigild run to its end, for what stops it at once (a configuration
        it refuses, --print-default-config): the completed process, its
        output captured as text; timeout is a failure bound, check as
        subprocess.run's."""
        cmd = [os.path.abspath(binaries(build)[1])] + (["--config", conf] if conf else [])
        return subprocess.run(cmd + list(args), capture_output=True, text=True,
                              timeout=timeout, cwd=cwd, check=check)

    def running(self):
        return self.p.poll() is None

    def reap(self):
        """Kills it if it still runs (a test that ended midway)."""
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()

    def wait_until(self, what, cond, timeout=60, poll_s=0.05):
        """cond()'s first true value; fails the test if vigild exits first
        or timeout seconds (a failure bound) pass."""
        def step():
            # Whether it had exited before cond looks: what it said before
            # exiting (its log, a notification datagram) is there by then,
            # so a vigild that says it and exits at once is not failed.
            exited = self.p.poll() is not None
            got = cond()
            if not got and exited:
                fail(f"vigild exited with {self.p.returncode} before {what}")
            return got
        return wait_for(what, step, timeout, poll_s)

    def wait_log(self, pattern, timeout=60):
        """The first match of pattern in its log, or None when it exits or
        timeout passes first."""
        return wait_for_log(self.log_path, self.p, pattern, timeout)

    def review_url(self, timeout=60):
        """The review server's address as vigild logged it; fails the test
        if it never does."""
        m = self.wait_log(r"review: serving (http://127\.0\.0\.1:\d+/)", timeout)
        if not m:
            fail("vigild did not log the review server's address")
        return m.group(1)

    def review_port(self, timeout=60):
        return int(self.review_url(timeout).rsplit(":", 1)[1].rstrip("/"))

    def terminate(self):
        """SIGTERM without waiting: a clean stop begins (the parts in
        flight finish, a presented result waits out the grace)."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)

    def wait(self, timeout=60):
        """Its exit status once it ends; fails the test if it still runs
        after timeout seconds, a failure bound (and kills it)."""
        try:
            rc = self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.reap()
            fail(f"vigild still running {timeout} s after SIGTERM")
        self.log.flush()
        return rc

    def stop(self, timeout=60):
        """SIGTERM and its exit status (see terminate() and wait())."""
        self.terminate()
        return self.wait(timeout)

    def kill(self):
        """SIGKILL, as a power cut would stop it; its exit status."""
        self.p.send_signal(signal.SIGKILL)
        return self.p.wait()

    def text(self):
        with open(self.log_path) as f:
            return f.read()

    def tail(self, n=3000):
        return self.text()[-n:]


def line_config(cameras, sim_dir, root, plc_port, db, vibration_extra="",
                deadline_ms=2000, plc_extra="", tail="", window_timeout_ms=5000,
                package=None, model_extra=""):
    """A vigild configuration: the given [camera.*] sections, the simulated
    line's vibration recording (SKF 6205 bearing for the condition
    figures), the shipped synthetic model (or package; model_extra: more
    [model] keys), the PLC on plc_port (plc_extra: more [plc] keys), db,
    and tail (more [database] keys, then more sections)."""
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
{model_extra}
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
    configuration (e.g. a [review] section), conf_kw go to line_config()
    (e.g. vibration_extra), sim_args to vigil-sim run's (e.g. ["--burst",
    "10"]); sim_db=False: vigil-sim does not check the log at the path for
    a row per part (a test that moves the log away checks it itself); env:
    variables vigild gets beside the test's.
    Start with start(); self.vigild is then its Vigild; stop() ends both
    and returns vigild's exit status."""

    def __init__(self, build, root, tmp, parts, seed, split, extra_conf="", rate=1200,
                 sim_args=(), conf_kw=None, sim_db=True, env=None):
        self.build = build
        self.sim_bin = binaries(build)[0]
        self.tmp, self.parts, self.rate = tmp, parts, rate
        self.sim_args = list(sim_args)
        self.sim_db = sim_db
        self.env = env
        self.sim_dir = os.path.join(tmp, "sim")
        self.db = os.path.join(tmp, "vigil.db")
        self.conf = os.path.join(tmp, "vigild.conf")
        self.log_path = os.path.join(tmp, "vigild.log")
        self.plc_port = free_port()
        generate_parts(build, self.sim_dir, parts, seed, split)
        with open(self.conf, "w") as f:
            f.write(line_config(sequence_camera(self.sim_dir), self.sim_dir, root,
                                self.plc_port, self.db, **(conf_kw or {})) + extra_conf)
        self.sim = self.vigild = None

    def start(self):
        t = self.tmp
        self.sim = subprocess.Popen(
            [self.sim_bin, "run", "--parts-dir", self.sim_dir, "--port", str(self.plc_port),
             "--rate", str(self.rate), "--results", os.path.join(t, "results.csv"),
             "--summary", os.path.join(t, "summary.json"),
             *(["--db", self.db] if self.sim_db else []),
             "--ready-timeout-s", "60"] + self.sim_args, stdout=subprocess.DEVNULL)
        self.vigild = Vigild(self.build, self.conf, self.log_path, env=self.env)
        return self

    def review_url(self, timeout=60):
        """The review server's address as vigild logged it (fails if none)."""
        return self.vigild.review_url(timeout)

    def wait_sim(self, timeout=240):
        """vigil-sim's exit status: 0 when every part got one result and row."""
        return self.sim.wait(timeout=timeout)

    def stop(self):
        rc = self.vigild.stop() if self.vigild else None
        if self.sim and self.sim.poll() is None:
            self.sim.kill()
            self.sim.wait()
        return rc

    def log_tail(self, n=3000):
        return self.vigild.tail(n)


def log_rows(db, sql, args=()):
    """The rows of one query on a station's SQLite log, opened read-only
    so that the test never takes the writer's lock."""
    import sqlite3

    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def rejects_log(build, db):
    """A station's log made by `vigilctl upgrade` holding five rejected
    parts, 1 to 5, a second apart from 1_795_000_000_000_000 us: what the
    review tests that need no line log into."""
    import sqlite3

    subprocess.run([os.path.join(build, "tools", "vigilctl"), "--db", db, "upgrade"], check=True,
                   capture_output=True, timeout=30)
    con = sqlite3.connect(db)
    base = 1_795_000_000_000_000
    con.executemany("INSERT INTO inspections (part_id, trigger_counter, seq, t_wall_us,"
                    " verdict, verdict_code, defect_class, flags, score, vision_score,"
                    " signal_score, latency_ms, infer_ms, model_version, image_path)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    [(i, i, i, base + i * 1_000_000, "reject", 2, "surface", 0, 0.9, 0.9,
                      0.1, 2.0, 1.0, "synthetic-1", None) for i in range(1, 6)])
    con.commit()
    con.close()
    return db


def log_events(db, kind):
    """The messages of a station log's events of one kind, in the order
    written."""
    return [m for (m,) in log_rows(db, "SELECT message FROM events WHERE kind = ? ORDER BY id",
                                   (kind,))]


def metric(url, name):
    """One unlabelled figure of the review server's /metrics at url
    (ending in /); fails the test when it has none."""
    import urllib.request

    text = urllib.request.urlopen(url + "metrics", timeout=30).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    fail(f"/metrics has no {name}")
    return None


def wait_rows(db, sql, n):
    """The rows of sql on a station's log once there are n of them at
    least (the log may not exist yet, or be busy: asked again)."""
    import sqlite3

    def get():
        try:
            rows = log_rows(db, sql)
        except sqlite3.Error:
            return None
        return rows if len(rows) >= n else None
    return wait_for(f"{n} rows of {sql!r} in {db}", get)


def check_held_warnings(text, what, detail, things, first, count):
    """A fault's warnings in vigild's log, held back to one per 10 s with
    the number left out (app/line-inspect.c, warning_due): the first at
    part `first` with the value detail's one group reads as 0, and with
    what they held back (and what the first part without the fault says
    was held since), they account for `count` parts. what: "image from
    camera top"; things: "frames"."""
    warned = re.findall(rf"part (\d+): {what} is flat: {detail}.*?"
                        rf"(?:\(and (\d+) more flat {things} in the last 10 s\))?$", text, re.M)
    resumed = re.findall(rf"{what} is not flat again; (\d+) more flat {things} since the last "
                         r"warning", text)
    if not warned or int(warned[0][0]) != first or float(warned[0][1]) != 0:
        fail(f"flat warnings {warned}: want the first at part {first}, value 0")
    total = sum(1 + int(held or 0) for _, _, held in warned) + sum(int(n) for n in resumed)
    if total != count:
        fail(f"warnings {warned} and {resumed} account for {total} flat parts, want {count}")
    return warned


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
