#!/usr/bin/python3
"""vigild whole, in the server role, against a pymodbus PLC, with faults
injected on purpose (issue 18, docs/operations.md "What vigild does when
something fails"). The vibration recording reaches vigild through a FIFO
the test writes, so the test decides when the source stalls: nothing here
depends on the machine being fast or slow.

  stall-kill   the vibration source stalls while the PLC keeps triggering;
               vigild is SIGKILLed at a random moment of the stall, five
               times over the same log. Every result the PLC acknowledged
               (fail-safe rejects at the deadline included) is in the log
               with the verdict the PLC got; integrity_check ok.
  stall        a stall of several seconds, then the source resumes: every
               part triggered well inside the stall gets its fail-safe at
               the deadline and its own window timeout (flag "no
               vibration" beside it in the log), so none waits behind
               another; after the stall the model judges again; the
               fail-safe rejects are counted by cause in the summary and
               an event.
  sigterm-buffered-server, sigterm-buffered-client
               in each role, the PLC stops acknowledging with results buffered, then
               vigild gets SIGTERM: the presented result stays readable
               (valid) until the PLC acknowledges it, the final status word
               clears only ready and running, and the results never taken
               are named in a warning and a plc-stop event; their rows say
               "not sent".
  queue-full   the source stalls on the second part while the PLC
               triggers 270: the parts behind it fill the inspection queue
               and the rest find it full. Those, and only those, get a
               fail-safe reject flagged "queue full" (bit 8), the status
               word shows queue full with error 11, every part still gets
               its result in trigger order, and each row says what the PLC
               got.

usage: test_faults_line.py BUILD_DIR SOURCE_ROOT SCENARIO
"""
import os
import random
import sqlite3
import struct
import sys
import threading
import time

from linetest import Vigild, camera_section, fail, free_port, generate_parts, line_config, workdir
from plctest import (ERR_QUEUE_FULL, FL_DEADLINE, FL_FAILSAFE, FL_NO_VIBRATION, FL_NOT_SENT,
                     FL_QUEUE_FULL, REJECT, ST_FAULT, ST_QUEUE_FULL, ST_READY,
                     ST_VALID, VERDICT_NAMES, WAIT_S, MasterPLC, ServerPLC, part_id,
                     quiet_pymodbus, start_vigild, stop_vigild, wait_for)

ST_RUNNING = 1 << 1
STRIDE = 2048                      # samples a part (linetest.line_config)


class FifoSource:
    """The simulated line's vibration recording written into a FIFO that
    vigild's pipeline reads: the header and the first `parts` parts'
    samples at once, the rest when resume() is called. Until then the
    source is stalled: no samples, no end of stream.

    The FIFO also has a reader of its own that never reads: GStreamer's
    filesrc opens the file twice (once to learn it cannot seek, then to
    stream), and a write that fell between its close and its reopen would
    find no reader and fail with EPIPE, leaving vigild's second open
    waiting for a writer for ever."""

    def __init__(self, wav, fifo, parts):
        with open(wav, "rb") as f:
            data = f.read()
        pos, fmt = 12, None
        while pos < len(data):
            cid, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
            if cid == b"fmt ":
                fmt = struct.unpack("<HHIIHH", data[pos + 8:pos + 24])
            if cid == b"data":
                break
            pos += 8 + size + (size & 1)
        block = fmt[4]                         # bytes per sample frame
        cut = pos + 8 + parts * STRIDE * block
        self.head, self.rest = data[:cut], data[cut:]
        self.fifo = fifo
        self.go = threading.Event()
        if os.path.exists(fifo):
            os.unlink(fifo)
        os.mkfifo(fifo)
        self.keep = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        try:
            with open(self.fifo, "wb") as f:   # at once: self.keep is a reader
                f.write(self.head)
                f.flush()
                self.go.wait()
                f.write(self.rest)
        except (BrokenPipeError, OSError):
            pass                               # the test is ending

    def resume(self):
        self.go.set()


def setup(build, root, tmp, parts, deadline_ms=300, window_ms=1000, role="server",
          plc_extra=""):
    env = {"build": build, "root": root, "tmp": tmp, "port": free_port(), "role": role,
           "parts": parts,
           "db": os.path.join(tmp, "vigil.db"), "sim": os.path.join(tmp, "sim")}
    generate_parts(build, env["sim"], parts, 11)
    fifo = os.path.join(tmp, "vibration.fifo")
    conf = line_config(camera_section(env["sim"], 20000, "", "restart = never\n"),
                       env["sim"], root, env["port"], env["db"], deadline_ms=deadline_ms,
                       window_timeout_ms=window_ms,
                       plc_extra=f"mode = {role}\npeer_timeout_ms = 600000\n"
                                 "reconnect_min_ms = 50\nreconnect_max_ms = 400\n" + plc_extra)
    conf = conf.replace(f"filesrc location={env['sim']}/vibration.wav",
                        f"filesrc location={fifo}")
    env["conf"] = os.path.join(tmp, "vigild.conf")
    with open(env["conf"], "w") as f:
        f.write(conf)
    env["fifo"] = fifo
    return env


def start(env, good_parts, args=()):
    src = FifoSource(os.path.join(env["sim"], "vibration.wav"), env["fifo"], good_parts)
    # In the client role the PLC is the Modbus server, up before vigild.
    plc = ServerPLC(env["port"]) if env["role"] == "client" else None
    v = Vigild(env["build"], env["conf"], os.path.join(env["tmp"], "vigild.log"), args)
    plc = plc or MasterPLC(env["port"])
    start_vigild(v, plc)
    return v, plc, src


def take_results(plc, acked):
    """Acknowledges every result up now; records each once acknowledged."""
    while True:
        r = plc.new_result()
        if not r:
            return
        plc.ack(r[0])
        acked.append(r)


def db_rows(db):
    con = sqlite3.connect(db)
    ok = con.execute("PRAGMA integrity_check").fetchone()[0]
    rows = {r[0]: r[1:] for r in con.execute(
        "SELECT part_id, verdict, flags, model_verdict FROM inspections")}
    events = con.execute("SELECT kind, message FROM events ORDER BY id").fetchall()
    con.close()
    return ok, rows, events


def scenario_stall_kill(env):
    rng = random.Random(18)
    counter, pid = 0, 5000
    checked = 0
    for round_ in range(5):
        # Two parts with vibration, then the source stalls for good.
        v, plc, src = start(env, 2)
        acked = []
        stall_parts = rng.randint(6, 14)
        for i in range(2 + stall_parts):
            counter = counter % 65535 + 1
            pid += 1
            plc.trigger(counter, pid)
            take_results(plc, acked)
            time.sleep(0.05)
        # Somewhere in the stall: some results acknowledged, others not yet.
        wait_for("a fail-safe result", lambda: (take_results(plc, acked),
                 any(r[7] & FL_FAILSAFE for r in acked))[1])
        time.sleep(rng.uniform(0.0, 0.6))
        take_results(plc, acked)
        v.kill()
        plc.close()
        ok, rows, _ = db_rows(env["db"])
        if ok != "ok":
            fail(f"round {round_}: integrity_check says {ok}")
        for r in acked:
            p = part_id(r)
            if p not in rows:
                fail(f"round {round_}: part {p} acknowledged by the PLC ({r}) is not in the "
                     f"log after SIGKILL")
            verdict, flags = rows[p][0], rows[p][1]
            if verdict != VERDICT_NAMES[r[4]] or (r[7] & FL_FAILSAFE) != (flags & FL_FAILSAFE):
                fail(f"round {round_}: part {p}: the PLC got verdict {r[4]} flags {r[7]:#x}, "
                     f"the log says {verdict} flags {flags:#x}")
        failsafe = sum(1 for r in acked if r[7] & FL_FAILSAFE)
        print(f"round {round_}: {len(acked)} acknowledged ({failsafe} fail-safe), all logged")
        checked += failsafe
        src.resume()
        # The next vigild starts on the same log (a fresh trigger counter).
        counter = 0
    if checked < 5:
        fail(f"only {checked} fail-safe results were acknowledged over five kills")


def scenario_stall(env):
    v, plc, src = start(env, 3)
    acked = []
    counter = 0

    def trigger(pid):
        nonlocal counter
        counter += 1
        plc.trigger(counter, pid)
        take_results(plc, acked)

    for i in range(3):
        trigger(100 + i)
    wait_for("the first parts judged", lambda: (take_results(plc, acked), len(acked) >= 3)[1])
    # The stall: parts keep coming for 4 s; the source is silent.
    stall_end = time.monotonic() + 4.0
    triggered = {}
    pid = 200
    while time.monotonic() < stall_end:
        triggered[pid] = time.monotonic()
        trigger(pid)
        pid += 1
        time.sleep(0.1)
    src.resume()
    # After the stall the model judges again.
    for i in range(3):
        trigger(900 + i)
    wait_for("every result", lambda: (take_results(plc, acked),
             len(acked) >= 3 + len(triggered) + 3)[1])
    got = {part_id(r): r for r in acked}
    for p in range(900, 903):
        if got[p][7] & FL_FAILSAFE:
            fail(f"part {p} after the stall: still fail-safe {got[p]}")
    # Parts triggered more than 2 s before the source resumed (window
    # timeout 1 s) timed out on their own deadlines: each one's row keeps
    # the "no vibration" flag beside the fail-safe the PLC got.
    early = [p for p, t in triggered.items() if t < stall_end - 2.0]
    ok = wait_for("the late verdicts in the log", lambda: (lambda r: r if all(
        p in r[1] and r[1][p][1] & FL_NO_VIBRATION for p in early) else None)(
        db_rows(env["db"])))
    rows = ok[1]
    for p in early:
        verdict, flags, model_verdict = rows[p]
        if verdict != "reject" or not flags & FL_FAILSAFE or got[p][4] != REJECT:
            fail(f"part {p} in the stall: PLC {got[p]}, log {rows[p]}")
    if not any(r[1] & FL_DEADLINE for r in rows.values()):
        fail("no deadline fail-safe in the log")
    text = stop_vigild(v, plc)
    if "fail-safe rejects by cause:" not in text or "deadline" not in text.split(
            "fail-safe rejects by cause:")[1].splitlines()[0]:
        fail("the summary does not count the fail-safe rejects by cause")
    events = db_rows(env["db"])[2]
    if not any(k == "failsafe" for k, _ in events):
        fail(f"no failsafe event: {events}")


def scenario_sigterm_buffered(env):
    # A long grace, so that the PLC below has all the time it needs to
    # take two results; the third stays presented, the fourth never is.
    v, plc, src = start(env, 20, ("--grace-ms", "15000"))
    src.resume()
    for i in range(4):
        plc.trigger(i + 1, 700 + i)
    # Results up to the buffer wait; the PLC takes none. (buffered counts
    # verdicts still waiting for their rows too: wait for the presented one.)
    wait_for("four verdicts buffered, the first presented",
             lambda: plc.status()[5] == 4 and plc.result()[8] == 1)
    first = plc.result()
    v.terminate()
    # Stopping: ready and running clear, the rest of the word stays, and
    # the presented result stays valid until the PLC takes it.
    st = wait_for("ready cleared", lambda: (lambda s: s if not s[1] & ST_READY else None)(
        plc.status()))
    if st[1] & ST_RUNNING or not st[1] & ST_VALID or not st[1] & (1 << 3):
        fail(f"status while stopping {st[1]:#x}: want ready and running clear, "
             "model loaded and results_valid kept")
    r = plc.result()
    if r[8] != 1 or r[0] != first[0]:
        fail(f"the presented result {first} is not readable while stopping: {r}")
    plc.res_counter = r[0]
    plc.ack(r[0])
    r2 = plc.next_result()
    plc.ack(r2[0])
    r3 = plc.next_result()                     # presented, never acknowledged
    # vigild presents it until the grace ends, then says so.
    rc = v.wait(timeout=WAIT_S + 15)
    if env["role"] == "client":
        # The PLC keeps what vigild wrote last: ready and running clear,
        # the rest as it was, result 3 still valid and the only one buffered
        # (the never-presented one is gone with vigild).
        st, r = plc.status(), plc.result()
        if st[1] & (ST_READY | ST_RUNNING) or not st[1] & ST_VALID or not st[1] & (1 << 3) \
                or st[5] != 1 or r[8] != 1 or part_id(r) != part_id(r3):
            fail(f"final status {st} (word {st[1]:#x}), result {r}: want ready and running "
                 "clear, model loaded, results_valid and the presented result kept")
    plc.close()
    text = v.text()
    print(text[-2000:])
    if rc != 0:
        fail(f"vigild exited with {rc}")
    ok, rows, events = db_rows(env["db"])
    taken = {part_id(first), part_id(r2)}
    presented = part_id(r3)
    if "presented, not acknowledged" not in text or f"part {presented})" not in text:
        fail(f"no warning naming part {presented}, presented and not acknowledged")
    for p in range(700, 704):
        verdict, flags, _ = rows[p]
        if p in taken or p == presented:
            if flags & FL_NOT_SENT:
                fail(f"part {p} reached the PLC but its row says not sent")
        elif not (flags & FL_NOT_SENT and verdict == "reject"):
            fail(f"part {p} was never presented but its row says {verdict} flags {flags:#x}")
    if not any(k == "plc-stop" for k, _ in events):
        fail(f"no plc-stop event: {events}")


def scenario_queue_full(env):
    # Part 1 has its vibration; part 2's never comes while the source is
    # stalled, so the acquire thread waits on it (the window timeout and
    # the deadline are a minute) and the triggers behind it fill the
    # inspection queue (256 parts). The rest find it full.
    n = env["parts"]
    v, plc, src = start(env, 1)
    for i in range(n):
        plc.trigger(i + 1, 1000 + i)
    st = plc.status()
    if not st[1] & ST_QUEUE_FULL or not st[1] & ST_FAULT or st[2] != ERR_QUEUE_FULL:
        fail(f"status after {n} triggers into a stalled line {st} (word {st[1]:#x}): want "
             f"queue full (bit 13) with fault (bit 2) and error {ERR_QUEUE_FULL}")
    src.resume()
    # Every part gets its result, in trigger order, once.
    got = []
    for _ in range(n):
        r = plc.next_result()
        plc.ack(r[0])
        got.append(r)
    if [part_id(r) for r in got] != list(range(1000, 1000 + n)):
        fail(f"results not one per part in trigger order: {[part_id(r) for r in got]}")
    full = [i for i, r in enumerate(got) if r[7] & FL_QUEUE_FULL]
    # Parts 1 and 2 left the queue and 256 waited in it: the rest found it
    # full, and only they.
    if not full or full != list(range(full[0], n)) or full[0] > 258:
        fail(f"results flagged queue full: {full}; want every part from the 259th at the "
             "latest to the last")
    for i in full:
        if got[i][4] != REJECT or not got[i][7] & FL_FAILSAFE:
            fail(f"queue-full part {part_id(got[i])}: result {got[i]}, want a fail-safe reject")
    text = stop_vigild(v, plc)
    if "queue_full" not in text.split("fail-safe rejects by cause:")[-1].splitlines()[0]:
        fail("the summary does not count the queue-full fail-safe rejects")
    ok, rows, _ = db_rows(env["db"])
    if ok != "ok" or len(rows) != n:
        fail(f"integrity {ok}, {len(rows)} rows for {n} parts")
    for i in range(n):
        verdict, flags, _ = rows[1000 + i]
        if (i in full) != bool(flags & FL_QUEUE_FULL) or (i in full and verdict != "reject"):
            fail(f"part {1000 + i}: row {verdict} flags {flags:#x}, PLC result {got[i]}")


SCENARIOS = {
    "stall-kill": (scenario_stall_kill, 60, {}),
    "stall": (scenario_stall, 80, {}),
    "sigterm-buffered-server": (scenario_sigterm_buffered, 20,
                                {"deadline_ms": 20000, "window_ms": 20000}),
    "sigterm-buffered-client": (scenario_sigterm_buffered, 20,
                                {"deadline_ms": 20000, "window_ms": 20000, "role": "client"}),
    "queue-full": (scenario_queue_full, 270,
                   {"deadline_ms": 60000, "window_ms": 60000,
                    "plc_extra": "result_buffer = 1000\n"}),
}


def main():
    build, root, name = sys.argv[1], sys.argv[2], sys.argv[3]
    quiet_pymodbus()
    fn, parts, kw = SCENARIOS[name]
    with workdir(f"vigil-faults-{name}-") as tmp:
        fn(setup(build, root, tmp, parts, **kw))
    print(f"{name}: OK")


if __name__ == "__main__":
    main()
