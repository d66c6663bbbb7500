#!/usr/bin/python3
"""Signals that must not stop the line (app/vigild.c, docs/operations.md's
fault table): vigild whole, with vigil-sim as the PLC.
  - SIGHUP while parts flow: vigild has no reload, so it logs that, writes
    an event `signal`, and the line goes on: vigil-sim's run ends with every
    part given one result and one row, and SIGTERM then stops vigild with 0.
    (SIGHUP's default action killed vigild at once, with the PLC still
    seeing it ready.)
  - SIGPIPE: vigild's output goes to a pipe whose reader has gone away; the
    next log line (SIGHUP's warning) must cost that line only, not the
    daemon: the `signal` event after it is written and SIGTERM stops vigild
    with 0 (SIGPIPE's default action killed it at that line).
Both are checked by what vigild writes to its log database, never by time.

usage: test_signals.py BUILD_DIR SOURCE_ROOT
"""
import os
import signal
import sqlite3
import subprocess
import sys
import threading

from linetest import Line, binaries, fail, log_rows, wait_for, workdir

build, root = sys.argv[1], sys.argv[2]
PARTS = 300


def query(db, sql, empty):
    """sql's rows on the log, or empty while the log or its tables are not
    there yet (vigild creates them as it starts)."""
    try:
        return log_rows(db, sql) if os.path.exists(db) else empty
    except sqlite3.OperationalError:
        return empty


def signal_events(db):
    return query(db, "SELECT message FROM events WHERE kind = 'signal'", [])


def inspected(db):
    return query(db, "SELECT count(*) FROM inspections", [(0,)])[0][0]


def hangup_while_parts_flow(tmp):
    line = Line(build, root, tmp, PARTS, seed=31, split="e2e", rate=1800).start()
    v = line.vigild
    v.wait_until("10 parts logged", lambda: inspected(line.db) >= 10, timeout=120)
    v.p.send_signal(signal.SIGHUP)
    ev = v.wait_until("an event 'signal' after SIGHUP", lambda: signal_events(line.db))
    if "does not reload" not in ev[0][0]:
        fail(f"the signal event says {ev[0][0]!r}: want that vigild does not reload")
    if "SIGHUP" not in v.text():
        fail("no warning about SIGHUP in vigild's log")
    rc = line.wait_sim()
    if rc != 0:
        fail(f"vigil-sim exited with {rc} after SIGHUP: a part without its one result and row")
    if not v.running():
        fail("vigild stopped after SIGHUP")
    rc = line.stop()
    if rc != 0:
        fail(f"vigild exited with {rc} after SIGTERM")
    print(f"SIGHUP: logged and evented, {PARTS} parts judged and logged, clean stop")


def output_to_a_closed_pipe(tmp):
    line = Line(build, root, tmp, PARTS, seed=32, split="e2e", rate=1800)
    line.sim = subprocess.Popen(
        [binaries(build)[0], "run", "--parts-dir", line.sim_dir, "--port",
         str(line.plc_port), "--rate", "1800", "--ready-timeout-s", "60"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    p = subprocess.Popen([os.path.abspath(binaries(build)[1]), "--config", line.conf],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    started = threading.Event()
    seen = []

    def read_then_leave():
        # The reader goes away once the line runs, as a `vigild | head`
        # would: the pipe's read end is closed, vigild keeps the write end.
        for raw in p.stdout:
            seen.append(raw.decode(errors="replace"))
            if "vigild running" in seen[-1]:
                break
        p.stdout.close()
        started.set()
    threading.Thread(target=read_then_leave, daemon=True).start()
    try:
        wait_for("vigild running, then its output's reader gone", started.is_set, 120)
        if p.poll() is not None:
            fail(f"vigild exited with {p.returncode} before the test closed its output:\n"
                 + "".join(seen[-20:]))
        p.send_signal(signal.SIGHUP)   # its warning goes to the closed pipe

        def event_or_exit():
            if p.poll() is not None:
                fail(f"vigild died writing to a closed pipe (exit {p.returncode}; -13 is "
                     "SIGPIPE)")
            return signal_events(line.db)
        wait_for("the signal event written after the warning", event_or_exit, 60)
        p.send_signal(signal.SIGTERM)
        rc = p.wait(timeout=60)
        if rc != 0:
            fail(f"vigild exited with {rc} after SIGTERM (-13 is SIGPIPE)")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        if line.sim.poll() is None:
            line.sim.kill()
        line.sim.wait()
    print("SIGPIPE: a log line to a closed pipe cost nothing else; clean stop")


with workdir("vigil-signals-") as tmp:
    os.makedirs(os.path.join(tmp, "hup"))
    os.makedirs(os.path.join(tmp, "pipe"))
    hangup_while_parts_flow(os.path.join(tmp, "hup"))
    output_to_a_closed_pipe(os.path.join(tmp, "pipe"))
print("signals: ok")
