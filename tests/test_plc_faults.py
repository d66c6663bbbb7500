#!/usr/bin/python3
"""vigild whole against a PLC that fails the way PLCs do (issue 18, items
3, 8 and 9), over loopback. Each scenario starts its own vigild on a few
simulated parts and asserts behaviour; the only time bounds are generous
failure bounds, never speed:

  restart      vigild in the server role (restart-client: the client role);
               the PLC counts across the wrap (65533 .. 65535, 1, 2), leaves
               its last result unacknowledged, restarts its program
               (writes 0, counts again from 1), then
               restarts again without writing 0 (a step backwards). Each
               restart is a new PLC session: no trigger counted as missed,
               no frame skipped (every later part gets the model's verdict,
               with its own part id), the previous session's result is
               taken down (valid 0) and never presented as new, a
               plc-restart event per restart, the status word healthy, and
               SIGTERM ends well within a failure bound.
  grace        a camera that never delivers, with a 60 s frame timeout:
               SIGTERM with parts waiting for their frames ends within the
               grace (5 s) plus a generous margin, not at their timeouts.
  accept-drop  vigild in the client role against a peer that accepts each
               connection and closes it at once: the attempts back off (few
               connections in 4 s), one warning, vigil_plc_link_up 0 and a
               plc-link-down event; then a real PLC takes the port: the link
               comes up (plc-link-up), parts flow; the PLC's server goes
               away and comes back: plc-link-down, plc-link-up again.
  silent       vigild in the server role; the PLC stops polling for longer
               than peer_timeout_ms, then polls again: status bit 10 and
               error 7 meanwhile, events plc-silent then plc-polling.

usage: test_plc_faults.py BUILD_DIR SOURCE_ROOT SCENARIO
"""
import os
import re
import socket
import sqlite3
import threading
import time
import urllib.request

from linetest import Vigild, camera_section, fail, free_port, line_config
from plctest import (FL_FAILSAFE, ST_FAULT, ST_READY, ST_VALID, TRIG, MasterPLC,
                     ServerPLC, part_id, run_part, scenario_main, start_vigild, wait_for)

ST_PLC_SILENT, ERR_PLC_SILENT = 1 << 10, 7
GRACE_S = 5                        # vigild's default --grace-ms
STOP_BOUND_S = GRACE_S + 20        # a failure bound: the grace and a generous margin


def config(env, mode, deadline_ms=20000, plc_extra="", elements="", frame_timeout_ms=20000,
           tail=""):
    conf = os.path.join(env["tmp"], "vigild.conf")
    with open(conf, "w") as f:
        f.write(line_config(camera_section(env["sim"], frame_timeout_ms, elements,
                                           "restart = never\n"),
                            env["sim"], env["root"], env["port"], env["db"],
                            deadline_ms=deadline_ms, window_timeout_ms=20000,
                            plc_extra=f"mode = {mode}\n" + plc_extra, tail=tail))
    return conf


def events(db, kind_like="plc-%"):
    """The events table's (kind, message) rows of kind_like, in order."""
    try:
        con = sqlite3.connect(db)
        r = con.execute("SELECT kind, message FROM events WHERE kind LIKE ? ORDER BY id",
                        (kind_like,)).fetchall()
        con.close()
    except sqlite3.Error:
        return []
    return r


def wait_event_kinds(db, want):
    """Waits until the PLC events' kinds are exactly want (a list); the rows."""
    return wait_for(f"events {want}",
                    lambda: (lambda e: e if [k for k, _ in e] == want else None)(events(db)))


def stop_within_bound(v):
    """SIGTERM; fails unless vigild exits cleanly within STOP_BOUND_S.
    Returns (log text, seconds it took)."""
    t0 = time.monotonic()
    rc = v.stop(timeout=STOP_BOUND_S)
    took = time.monotonic() - t0
    text = v.text()
    print(text[-3000:])
    if rc != 0:
        fail(f"vigild exited with {rc}")
    return text, took


def start_server_role(env, conf, bit=ST_READY):
    """vigild and its PLC once status bit `bit` is up (ready by default:
    the line can inspect; running: it takes triggers)."""
    v = Vigild(env["build"], conf, os.path.join(env["tmp"], "vigild.log"))
    plc = MasterPLC(env["port"])
    start_vigild(v, plc, bit)
    return v, plc


def start_client_role(env, conf, plc):
    v = Vigild(env["build"], conf, os.path.join(env["tmp"], "vigild.log"))
    start_vigild(v, plc)
    return v


def scenario_restart(env, role):
    conf = config(env, role, plc_extra="peer_timeout_ms = 600000\n")
    if role == "server":
        v, plc = start_server_role(env, conf)
    else:
        # The counter the PLC shows when vigild connects was raised before.
        plc = ServerPLC(env["port"])
        plc.write(TRIG, [65532, 0, 0])
        v = start_client_role(env, conf, plc)
    got = []
    # A session that runs across the wrap: 65535 -> 1 is one step.
    for i, counter in enumerate((65533, 65534, 65535, 1, 2)):
        got.append(run_part(plc, counter, 100 + i, ack=i < 4))
    stale = got[-1]
    if plc.result()[8] != 1:
        fail(f"the unacknowledged result of part 104 is not up: {plc.result()}")

    # The PLC program restarts: 0, then counting again from 1. A restarted
    # program has forgotten the result counter it saw.
    plc.write(TRIG, [0, 0, 0])
    plc.write(TRIG + 3, [0])
    wait_for("trigger_seen 0", lambda: plc.status()[4] == 0)
    r = wait_for("the previous session's result taken down",
                 lambda: (lambda r: r if r[8] == 0 else None)(plc.result()))
    if r[0] != stale[0] or part_id(r) != 104:
        fail(f"after the restart the result block reads {r}, want result {stale[0]} "
             "(part 104) with valid 0")
    if plc.status()[1] & (ST_VALID | ST_FAULT) or plc.status()[5] != 0:
        fail(f"status after the restart {plc.status()}: want no result waiting, no fault")
    plc.res_counter = None
    for i in range(6):
        got.append(run_part(plc, i + 1, 200 + i))
    if got[5][0] != stale[0] % 65535 + 1:
        fail(f"first result after the restart has counter {got[5][0]}, want {stale[0] + 1}")

    # Restarted again, and its 0 never seen: 6 -> 1 is a step backwards.
    for i in range(3):
        got.append(run_part(plc, i + 1, 300 + i))
    st = plc.status()
    print("status after two restarts:", st)
    if st[1] & ST_FAULT or st[2] != 0 or st[4] != 3:
        fail(f"status after two restarts {st}: want healthy, trigger_seen 3")
    for r in got:
        if r[7] & FL_FAILSAFE:
            fail(f"part {part_id(r)}: fail-safe result {r}; every part has its frames")
    wait_event_kinds(env["db"], ["plc-restart", "plc-restart"])
    text, took = stop_within_bound(v)
    print(f"SIGTERM to exit: {took:.1f} s")
    m = re.search(r"vigild: (\d+) triggers, .* (\d+) missed triggers", text)
    if not m or m.group(1) != "14" or m.group(2) != "0":
        fail("the summary line does not read 14 triggers, 0 missed")
    if "trigger(s) missed" in text:
        fail("a trigger was counted as missed")
    con = sqlite3.connect(env["db"])
    db = con.execute("SELECT part_id, verdict, flags FROM inspections ORDER BY part_id").fetchall()
    con.close()
    want = [100 + i for i in range(5)] + [200 + i for i in range(6)] + [300 + i for i in range(3)]
    if [r[0] for r in db] != want:
        fail(f"database rows {[r[0] for r in db]}, want {want}")
    for pid, verdict, flags in db:
        if flags & FL_FAILSAFE:
            fail(f"row of part {pid}: fail-safe ({verdict}, flags {flags:#x})")
    for kind, msg in events(env["db"]):
        print(f"event {kind}: {msg}")


def scenario_grace(env):
    # A camera that is up and never delivers a frame (nothing is sent to
    # its UDP port), with a frame timeout far longer than the grace.
    n = 3
    camera = f"""[camera.top]
pipeline = udpsrc address=127.0.0.1 port={free_port()} caps=video/x-raw,format=GRAY8,width=64,height=64,framerate=0/1 ! videoconvert ! appsink name=sink
trigger = sequence
frame_timeout_ms = 60000
restart = never
"""
    conf = os.path.join(env["tmp"], "vigild.conf")
    with open(conf, "w") as f:
        f.write(line_config(camera, env["sim"], env["root"], env["port"], env["db"],
                            deadline_ms=60000, window_timeout_ms=20000,
                            plc_extra="mode = server\npeer_timeout_ms = 600000\n"))
    # Ready once its pipeline plays: a triggered (sequence) camera sends
    # nothing before its first trigger (docs/plc.md, "Ready").
    v, plc = start_server_role(env, conf)
    for i in range(n):
        plc.trigger(i + 1, 400 + i)
    if plc.result()[8]:
        fail(f"a result without a frame: {plc.result()}")
    text, took = stop_within_bound(v)
    print(f"SIGTERM with {n} parts waiting for frames that never come (frame timeout 60 s): "
          f"exited after {took:.1f} s (grace {GRACE_S} s)")
    if "stopped with results the PLC never took" not in text:
        fail("vigild did not stop with parts still waiting")


class DropPeer:
    """A TCP peer on loopback that accepts every connection and closes it
    at once, counting them."""

    def __init__(self, port):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(16)
        self.accepted = []          # monotonic times
        self.running = True
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while self.running:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(time.monotonic())
            c.close()

    def close(self):
        self.running = False
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(10)


def metric(url, name):
    with urllib.request.urlopen(url + "metrics", timeout=10) as r:
        lines = [x for x in r.read().decode().splitlines() if x.startswith(name + " ")]
    return float(lines[0].split()[1]) if lines else None


def scenario_accept_drop(env):
    window_s = 4.0
    peer = DropPeer(env["port"])
    conf = config(env, "client", plc_extra="reconnect_min_ms = 100\nreconnect_max_ms = 2000\n",
                  tail="\n[review]\nlisten = 127.0.0.1\nport = 0\n")
    log_path = os.path.join(env["tmp"], "vigild.log")
    v = Vigild(env["build"], conf, log_path)
    url = v.review_url()
    wait_for("a first connection", lambda: peer.accepted)
    first = peer.accepted[0]
    log_before = len(v.text().splitlines())
    time.sleep(window_s)
    attempts = sum(1 for t in peer.accepted if t - first <= window_s)
    link_up = metric(url, "vigil_plc_link_up")
    lines = [x for x in v.text().splitlines()[log_before:] if "PLC" in x]
    print(f"a peer that drops every connection: {attempts} connection(s) in {window_s:g} s, "
          f"{len(lines)} log line(s) about the PLC after the first, vigil_plc_link_up "
          f"{link_up}")
    # With 100 ms doubling, 6 or 7 attempts fit in 4 s on any machine (a
    # slow one makes fewer); a reconnect on every failure makes thousands.
    if attempts > 12:
        fail(f"{attempts} connections in {window_s:g} s: no back-off")
    if len(lines) > 3:
        fail("log lines about the PLC keep coming:\n" + "\n".join(lines[:20]))
    if link_up != 0:
        fail(f"vigil_plc_link_up {link_up} while no exchange ever succeeded")
    wait_event_kinds(env["db"], ["plc-link-down"])
    if "before any exchange" not in v.text():
        fail("no warning that the peer closed the connection before any exchange")

    # A real PLC takes the port: found within the back-off's cap.
    peer.close()
    plc = ServerPLC(env["port"])
    wait_for("vigild's status in the PLC", lambda: plc.status()[1] & ST_READY)
    wait_for("vigil_plc_link_up 1", lambda: metric(url, "vigil_plc_link_up") == 1)
    counter = plc.read(TRIG, 1)[0]
    for i in range(3):
        counter = counter % 65535 + 1
        run_part(plc, counter, 500 + i)
    wait_event_kinds(env["db"], ["plc-link-down", "plc-link-up"])
    # Link loss: the PLC's server goes away for a second and comes back.
    plc.cut(1.0)
    wait_for("vigil_plc_link_up 1 again", lambda: metric(url, "vigil_plc_link_up") == 1)
    for i in range(3, 5):
        counter = counter % 65535 + 1
        run_part(plc, counter, 500 + i)
    got = wait_event_kinds(env["db"], ["plc-link-down", "plc-link-up", "plc-link-down",
                                       "plc-link-up"])
    for kind, msg in got:
        print(f"event {kind}: {msg}")
    stop_within_bound(v)


def scenario_silent(env):
    v, plc = start_server_role(env, config(env, "server", plc_extra="peer_timeout_ms = 1000\n"))
    run_part(plc, 1, 600)

    def kinds():
        return [k for k, _ in events(env["db"])]
    # A start slow enough for the PLC to count as silent shows as a pair
    # already (both written within 0.2 s); only what follows is counted.
    wait_for("no silence pending", lambda: len(kinds()) % 2 == 0)
    n0 = len(kinds())
    if kinds() != ["plc-silent", "plc-polling"] * (n0 // 2):
        fail(f"PLC events while the PLC polls: {events(env['db'])}")
    plc.close()
    wait_for("a plc-silent event", lambda: kinds()[n0:] == ["plc-silent"])
    # Polling again: the first read may still show the silence.
    st = plc.status()
    print("status on the PLC's return:", st)
    if st[1] & ST_PLC_SILENT and st[2] != ERR_PLC_SILENT:
        fail(f"status {st}: silent bit without error 7")
    wait_for("the silent bit down", lambda: not plc.status()[1] & ST_PLC_SILENT)
    run_part(plc, 2, 601)
    wait_for("a plc-polling event", lambda: kinds()[n0:] == ["plc-silent", "plc-polling"])
    for kind, msg in events(env["db"]):
        print(f"event {kind}: {msg}")
    plc.close()
    stop_within_bound(v)


SCENARIOS = {
    "restart": lambda env: scenario_restart(env, "server"),
    "restart-client": lambda env: scenario_restart(env, "client"),
    "grace": scenario_grace,
    "accept-drop": scenario_accept_drop,
    "silent": scenario_silent,
}


def main():
    scenario_main(__doc__, SCENARIOS, "vigil-plc-faults-", lambda name: 20, 18)


if __name__ == "__main__":
    main()
