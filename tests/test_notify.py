#!/usr/bin/python3
"""vigild supervised as systemd would (app/notify.c), without systemd: the
test is the service manager's end of NOTIFY_SOCKET, a unix datagram socket
in its folder, and gives vigild WATCHDOG_USEC. A vigil-sim line (the PLC)
feeds it parts. Checked by polling, never by timing:
  - started with no PLC and its vibration recording behind a FIFO the test
    has not filled yet, vigild tries the PLC and says "starting" in STATUS=,
    and sends no READY=1; once the test feeds the recording, READY=1 comes
    (the PLC still away: a fault in STATUS=, not an endless start); once
    vigil-sim listens, the fault clears;
  - STATUS= lines carry the rate and the parts inspected, and WATCHDOG=1
    pings keep coming while parts flow;
  - SIGTERM: STOPPING=1, no ping after it, and a clean exit;
  - with the test hook VIGIL_TEST_HANG=inspect:10 the inspect thread hangs
    after 10 parts: vigild logs that the inspect thread makes no progress,
    and no WATCHDOG=1 comes during three watchdog intervals after that
    (STATUS= names the stalled thread); SIGTERM still stops it cleanly;
  - a malformed VIGIL_TEST_HANG is refused, naming the variable;
  - --review-only sends READY=1 once the page listens;
  - without NOTIFY_SOCKET vigild runs as before: no word of systemd, the
    watchdog or a notification in its log.

usage: test_notify.py BUILD_DIR SOURCE_ROOT
"""
import os
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import time

from linetest import (Vigild, binaries, fail, free_port, generate_parts, line_config,
                      require_model, sequence_camera, workdir)

build, root = sys.argv[1], sys.argv[2]

WATCHDOG_US = 5_000_000   # vigild pings every 2.5 s; a thread stalls after 5 s
PARTS = 150
RATE = 300                # parts/min: 30 s of parts, several pings' worth
HANG_AFTER = 10
STATUS_RE = re.compile(r"^STATUS=(\w+): ([\d.]+) parts/min, (\d+) inspected, (\d+) fail-safe")

# vigild must see only what this test gives it, even when the test itself
# runs under a service manager.
for var in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "VIGIL_TEST_HANG"):
    os.environ.pop(var, None)


class Manager:
    """The service manager's end of NOTIFY_SOCKET: every assignment vigild
    sends ("READY=1", "STATUS=..."), in order of arrival."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setblocking(False)
        self.msgs = []

    def poll(self):
        """Takes what has arrived; the messages so far."""
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return self.msgs
            self.msgs.extend(a for a in data.decode().split("\n") if a)

    def since(self, i, prefix):
        """The messages from index i on that start with prefix."""
        return [m for m in self.poll()[i:] if m.startswith(prefix)]

    def wait(self, v, what, cond, start=0, timeout=60):
        """The first message from index start on that cond accepts, as
        (index, message); fails if vigild exits or timeout passes first."""
        def found():
            for i, m in enumerate(self.poll()[start:], start):
                if cond(m):
                    return i, m
            return None
        return v.wait_until(what, found, timeout=timeout)

    def close(self):
        self.sock.close()


def status(m):
    """(state, rate, inspected, failsafe) of a STATUS= line, or None."""
    s = STATUS_RE.match(m)
    return (s.group(1), float(s.group(2)), int(s.group(3)), int(s.group(4))) if s else None


def start_sim(tmp, sim_dir, port, tag):
    return subprocess.Popen(
        [binaries(build)[0], "run", "--parts-dir", sim_dir, "--port", str(port), "--rate",
         str(RATE), "--results", os.path.join(tmp, f"results-{tag}.csv"),
         "--ready-timeout-s", "120"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_sim(sim):
    if sim.poll() is None:
        sim.kill()
    sim.wait()


def write_conf(tmp, sim_dir, port, tag, extra=""):
    conf = os.path.join(tmp, f"vigild-{tag}.conf")
    with open(conf, "w") as f:
        f.write(line_config(sequence_camera(sim_dir), sim_dir, root, port,
                            os.path.join(tmp, f"vigil-{tag}.db")) + extra)
    return conf


def notify_env(mgr):
    return {"NOTIFY_SOCKET": mgr.path, "WATCHDOG_USEC": str(WATCHDOG_US)}


def feed_fifo(fifo, fd_hold, data):
    """Writes data into fifo for vigild's vibration source, then closes it
    (end of stream); gives up quietly once vigild has closed its end."""
    try:
        fd = os.open(fifo, os.O_WRONLY)
        os.close(fd_hold)   # from now on vigild's end is the only reader
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except OSError:
        pass


def supervised_run(tmp, sim_dir):
    """READY only once the line is up, STATUS, pings while parts flow,
    STOPPING on SIGTERM."""
    port = free_port()
    conf = write_conf(tmp, sim_dir, port, "run")
    # The vibration recording comes through a FIFO the test fills when it
    # chooses: until then no window can come, so the line cannot be ready.
    fifo = os.path.join(tmp, "vibration.fifo")
    os.mkfifo(fifo)
    with open(conf) as f:
        text = f.read()
    with open(conf, "w") as f:
        f.write(text.replace(f"location={sim_dir}/vibration.wav", f"location={fifo}"))
    # Held open for writing, so that vigild's open does not wait for a writer.
    fd_hold = os.open(fifo, os.O_RDWR)
    mgr = Manager(os.path.join(tmp, "notify-run.sock"))
    v = Vigild(build, conf, os.path.join(tmp, "vigild-run.log"), env=notify_env(mgr))
    if not v.wait_log(r"PLC 127\.0\.0\.1:%d: cannot connect" % port):
        fail("vigild did not report the PLC unreachable")
    mgr.wait(v, "STATUS= while the vibration source has nothing",
             lambda m: m.startswith("STATUS=starting: waiting for the cameras and the "
                                    "vibration source"))
    if mgr.since(0, "READY=1"):
        fail("READY=1 before the vibration source delivered")

    with open(os.path.join(sim_dir, "vibration.wav"), "rb") as f:
        wav = f.read()
    threading.Thread(target=feed_fifo, args=(fifo, fd_hold, wav), daemon=True).start()
    # No PLC yet: READY=1 all the same once the source delivers, with the
    # PLC's absence a fault in STATUS=, not a start that never ends.
    i_ready, _ = mgr.wait(v, "READY=1", lambda m: m == "READY=1", timeout=120)
    if "line ready: every camera and the vibration source deliver" not in v.text():
        fail("READY=1 came before vigild logged every source delivering")
    mgr.wait(v, "STATUS= naming the PLC link down",
             lambda m: m.startswith("STATUS=inspecting") and "plc-link down" in m,
             start=i_ready)

    sim = start_sim(tmp, sim_dir, port, "run")
    try:
        i1, m1 = mgr.wait(v, "STATUS= with parts inspected",
                          lambda m: (status(m) or ("", 0, 0, 0))[2] > 0, start=i_ready,
                          timeout=120)
        print("first status with parts:", m1)
        n1 = status(m1)[2]
        # Three pings after parts began to flow, then more parts inspected:
        # the pings came while they flowed.
        v.wait_until("3 WATCHDOG=1 pings while parts flow",
                     lambda: len(mgr.since(i1, "WATCHDOG=1")) >= 3, timeout=120)
        i2 = len(mgr.poll())
        _, m2 = mgr.wait(v, "STATUS= with more parts inspected",
                         lambda m: (status(m) or ("", 0, 0, 0))[2] > n1, start=i2,
                         timeout=120)
        print("later status:", m2)
        state, rate, _, _ = status(m2)
        if state != "inspecting" or rate <= 0 or "no faults" not in m2:
            fail(f"STATUS= while parts flow says {m2!r}: want inspecting at a rate "
                 "above 0, no faults")
        if "watchdog:" in v.text():
            fail("a thread was reported stalled in a healthy run")

        v.terminate()
        i_stop, _ = mgr.wait(v, "STOPPING=1", lambda m: m == "STOPPING=1")
        rc = v.wait()
        if rc != 0:
            fail(f"vigild exited with {rc} after SIGTERM")
        if mgr.since(i_stop, "WATCHDOG=1"):
            fail("a WATCHDOG=1 ping after STOPPING=1")
        pings = len(mgr.since(0, "WATCHDOG=1"))
        statuses = len(mgr.since(0, "STATUS="))
        print(f"supervised run: READY=1, {statuses} STATUS=, {pings} WATCHDOG=1, STOPPING=1")
    finally:
        stop_sim(sim)
        mgr.close()


def hang_run(tmp, sim_dir):
    """The inspect thread hangs after HANG_AFTER parts: the pings stop and
    the log names it."""
    port = free_port()
    conf = write_conf(tmp, sim_dir, port, "hang")
    mgr = Manager(os.path.join(tmp, "notify-hang.sock"))
    sim = start_sim(tmp, sim_dir, port, "hang")
    env = dict(notify_env(mgr), VIGIL_TEST_HANG=f"inspect:{HANG_AFTER}")
    v = Vigild(build, conf, os.path.join(tmp, "vigild-hang.log"), env=env)
    try:
        mgr.wait(v, "READY=1", lambda m: m == "READY=1", timeout=120)
        mgr.wait(v, "a first WATCHDOG=1", lambda m: m == "WATCHDOG=1", timeout=120)
        if not v.wait_log(r"VIGIL_TEST_HANG: the inspect thread hangs now", timeout=120):
            fail("the inspect thread never hung")
        m = v.wait_log(r"watchdog: the (\S+) thread has made no progress", timeout=120)
        if not m:
            fail("vigild never reported the hung thread")
        if m.group(1) != "inspect":
            fail(f"the stalled thread reported is {m.group(1)!r}, want 'inspect'")
        # Every ping sent before the report is in the socket by now.
        i_stall = len(mgr.poll())
        quiet_end = time.monotonic() + 3 * WATCHDOG_US / 1e6
        while time.monotonic() < quiet_end:
            if mgr.since(i_stall, "WATCHDOG=1"):
                fail("WATCHDOG=1 ping after the inspect thread was reported stalled")
            if not v.running():
                fail(f"vigild exited with {v.p.returncode} while the inspect thread hung")
            time.sleep(0.1)
        stalled = [s for s in mgr.since(i_stall, "STATUS=") if "stalled: inspect thread" in s]
        if not stalled:
            fail("no STATUS= naming the stalled inspect thread")
        print("status while hung:", stalled[-1])

        v.terminate()
        mgr.wait(v, "STOPPING=1", lambda m: m == "STOPPING=1")
        rc = v.wait()
        if rc != 0:
            fail(f"vigild exited with {rc} after SIGTERM with the inspect thread hung")
    finally:
        stop_sim(sim)
        mgr.close()


def bad_hook(tmp, sim_dir):
    """A malformed test hook stops vigild at start, naming it."""
    conf = write_conf(tmp, sim_dir, free_port(), "bad")
    for value in ("inspect", "inspect:", "inspect:ten", "writer:3", "inspect:-1"):
        r = subprocess.run([binaries(build)[1], "--config", conf], capture_output=True,
                           text=True, timeout=120,
                           env=dict(os.environ, VIGIL_TEST_HANG=value))
        if r.returncode == 0 or f"VIGIL_TEST_HANG={value}: expected THREAD:PARTS" not in r.stderr:
            fail(f"VIGIL_TEST_HANG={value}: exit {r.returncode}, stderr {r.stderr[-500:]!r}")


def review_only(tmp, sim_dir):
    """--review-only: READY=1 once the page listens."""
    conf = write_conf(tmp, sim_dir, free_port(), "run",
                      "\n[review]\nlisten = 127.0.0.1\nport = 0\n")
    mgr = Manager(os.path.join(tmp, "notify-review.sock"))
    v = Vigild(build, conf, os.path.join(tmp, "vigild-review.log"), ["--review-only"],
               env=notify_env(mgr))
    try:
        mgr.wait(v, "READY=1 from --review-only", lambda m: m == "READY=1")
        if not re.search(r"review: serving http://127\.0\.0\.1:\d+/", v.text()):
            fail("--review-only sent READY=1 before the page listened")
        mgr.wait(v, "a WATCHDOG=1 from --review-only", lambda m: m == "WATCHDOG=1")
        v.terminate()
        mgr.wait(v, "STOPPING=1 from --review-only", lambda m: m == "STOPPING=1")
        if v.wait() != 0:
            fail("vigild --review-only did not stop cleanly")
    finally:
        mgr.close()


def unsupervised(tmp, sim_dir):
    """No NOTIFY_SOCKET: as before, and not a word about it."""
    port = free_port()
    conf = write_conf(tmp, sim_dir, port, "plain")
    sim = start_sim(tmp, sim_dir, port, "plain")
    v = Vigild(build, conf, os.path.join(tmp, "vigild-plain.log"),
               env={"WATCHDOG_USEC": str(WATCHDOG_US)})
    try:
        v.wait_until("10 parts logged without NOTIFY_SOCKET",
                     lambda: db_rows(os.path.join(tmp, "vigil-plain.db")) >= 10, timeout=120,
                     poll_s=0.2)
        if v.stop() != 0:
            fail("vigild without NOTIFY_SOCKET did not stop cleanly")
        for word in ("systemd", "watchdog", "WATCHDOG", "NOTIFY_SOCKET"):
            if word in v.text():
                fail(f"vigild without NOTIFY_SOCKET mentions {word!r}: {v.tail()}")
    finally:
        stop_sim(sim)


def db_rows(db):
    """Inspections in a vigild log so far (0 before it has any)."""
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute("SELECT count(*) FROM inspections").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def main():
    require_model(root)
    with workdir("vigil-notify-") as tmp:
        sim_dir = os.path.join(tmp, "sim")
        generate_parts(build, sim_dir, PARTS, seed=24, split="notify")
        bad_hook(tmp, sim_dir)
        supervised_run(tmp, sim_dir)
        review_only(tmp, sim_dir)
        hang_run(tmp, sim_dir)
        unsupervised(tmp, sim_dir)
    print("PASS")


main()
