#!/usr/bin/python3
"""vigild whole, in the server role, against a pymodbus PLC that misbehaves
in the ways docs/plc.md promises to survive. Each scenario starts its own
vigild on a few simulated parts and asserts behaviour, never timing:

  double-ack   the PLC acknowledges every result twice, and once more after
               the next result is up: one result per part, in order, the
               stale ack takes nothing down.
  never-ack    the PLC never acknowledges: result_buffer = 2 fills, the rest
               overrun (counted, status bit 9, error 5, logged to the
               database); once it acknowledges, the buffered ones come in
               order, then the valid flag and the overrun bit go down.
  deadline     the camera is slowed far past reject_deadline_ms: the late
               parts get a fail-safe reject (flag bit 2, no fault flags), in
               order, and the database keeps one row each.
  fault-reject_all / fault-stop_line
               more triggers than the camera has frames: the parts past the
               end are rejected (fail-safe), the status word shows the fault
               and error 1; the stop-line bit only with stop_line.
  job          the PLC selects job 2 (reject everything); an unknown job is
               refused (bit 11, error 6) and job 2 stays; vigild restarts and
               is still on job 2 from the state file.
  job-model    jobs with their own model packages, switched while parts
               flow: models/real-v2 (another input size), a corrupt copy of
               synthetic-v2 (refused, error 9, the running model goes on), a
               missing package (error 8), a copy with its own thresholds;
               every part gets one result and one row naming the model that
               judged it; the selection survives a restart, and a start-up
               selection whose package is corrupt falls back to [model].
  malformed    requests vigild must refuse with a Modbus exception (wrong
               function, out-of-range address, bad length, a write outside
               the trigger block; from mbpoll and raw frames), bytes that
               are not Modbus, and a master that sends a request byte by
               byte: vigild answers the rest, never stalls, parts go on.
  answers      the answers docs/plc.md promises, by the Modbus
               specification, to raw frames, pymodbus and mbpoll: exception
               01 for functions 1, 2, 4, 5, 15, 17 and codes 128-255 (the
               function byte with its high bit set: 0x83 stays 0x83); unit
               ids 1, 255 and 0 answered, others neither answered nor done;
               parts go on between and after them.

usage: test_plc_handshake.py BUILD_DIR SOURCE_ROOT SCENARIO
"""
import os
import shutil
import socket
import sqlite3
import struct
import time

from linetest import Vigild, camera_section, fail, line_config
from plctest import (ERR_JOB, ERR_PKG_CORRUPT, ERR_PKG_MISSING, FL_DEADLINE, FL_FAILSAFE,
                     FL_MODEL_ERROR, FL_NO_FRAME, FL_NOT_SENT, FL_NO_VIBRATION, REJECT, RES,
                     ST_CAMERA_OK, ST_FAULT,
                     ST_JOB_LOADING, ST_JOB_REFUSED, ST_OVERRUN, ST_STOP_LINE, ST_VALID, STAT,
                     TRIG, WAIT_S, MasterPLC, mbpoll_read, mbpoll_write, part_id,
                     scenario_main, start_vigild, stop_vigild, wait_for)


def config(env, deadline_ms=20000, plc_extra="", elements="", tail="", name="vigild.conf"):
    """vigild in the server role on env's simulated parts; slow timeouts,
    so only what a scenario provokes goes wrong. That includes the wait for
    a row's commit: on a busy machine a commit can take longer than the
    default 100 ms, and the database fault it raises (error 4) would
    outrank the error a scenario looks for."""
    tail = "commit_timeout_ms = 10000\n" + tail
    conf = os.path.join(env["tmp"], name)
    with open(conf, "w") as f:
        f.write(line_config(camera_section(env["sim"], 20000, elements, "restart = never\n"),
                            env["sim"], env["root"], env["port"], env["db"],
                            deadline_ms=deadline_ms, window_timeout_ms=20000,
                            plc_extra="mode = server\npeer_timeout_ms = 600000\n" + plc_extra,
                            tail=tail))
    return conf


def rows(db, want, timeout=WAIT_S, columns="part_id, verdict, flags"):
    """The database rows (part_id, verdict, flags) once there are want."""
    def get():
        try:
            con = sqlite3.connect(db)
            r = con.execute(f"SELECT {columns} FROM inspections ORDER BY part_id").fetchall()
            con.close()
        except sqlite3.Error:
            return None
        return r if len(r) >= want else None
    return wait_for(f"{want} database rows", get, timeout)


def start(env, conf):
    v = Vigild(env["build"], conf, os.path.join(env["tmp"], "vigild.log"))
    plc = MasterPLC(env["port"])
    start_vigild(v, plc)
    return v, plc


finish = stop_vigild


def scenario_double_ack(env):
    v, plc = start(env, config(env))
    n = 6
    got = []
    for i in range(n):
        plc.trigger(i + 1, 100 + i)
        r = plc.next_result()
        got.append((r[1] << 16 | r[2], r[3]))
        plc.ack(r[0])
        plc.ack(r[0])                              # the second ack: nothing changes
        if i == 0:
            wait_for("valid down", lambda: plc.result()[8] == 0)
    # A stale ack while the next result is up must not take it down.
    plc.trigger(n + 1, 100 + n)
    r = plc.next_result()
    got.append((r[1] << 16 | r[2], r[3]))
    plc.ack((r[0] - 1) or 65535)
    time.sleep(0.2)
    again = plc.result()
    if again[0] != r[0] or again[8] != 1 or plc.status()[5] != 1:
        fail(f"a stale acknowledge took result {r} down: now {again}, status {plc.status()}")
    plc.ack(r[0])
    wait_for("valid down after the last ack", lambda: plc.result()[8] == 0)
    st = plc.status()
    if st[5] != 0 or st[1] & ST_VALID:
        fail(f"status after the last ack: {st}")
    want = [(100 + i, i + 1) for i in range(n + 1)]
    if got != want:
        fail(f"results {got}, want {want}")
    rows(env["db"], n + 1)
    finish(v, plc)


def scenario_never_ack(env):
    v, plc = start(env, config(env, plc_extra="result_buffer = 2\n"))
    n = 8
    for i in range(n):
        plc.trigger(i + 1, 200 + i)
    # Every verdict is in once buffered + lost = n.
    st = wait_for("every verdict taken",
                  lambda: (lambda s: s if s[5] + s[7] == n else None)(plc.status()))
    print("status with a full buffer:", st)
    if st[5] != 3 or st[6] != 2 or st[7] != n - 3:
        fail(f"buffered {st[5]} (want 3), capacity {st[6]} (want 2), overruns {st[7]} "
             f"(want {n - 3})")
    if not st[1] & ST_OVERRUN or st[2] != 5:
        fail(f"status word {st[1]:#x}, error {st[2]}: want the overrun bit and error 5")
    # The PLC catches up: the buffered results in order, then nothing.
    got = []
    for _ in range(3):
        r = plc.next_result()
        got.append((r[1] << 16 | r[2], r[3]))
        plc.ack(r[0])
    if got != [(200, 1), (201, 2), (202, 3)]:
        fail(f"buffered results {got}")
    wait_for("valid down", lambda: plc.result()[8] == 0)
    # Every part is in the database, the overrun ones included (a buffered
    # result is logged when it goes to the PLC).
    db = rows(env["db"], n)
    ids = [r[0] for r in db]
    if ids != [200 + i for i in range(n)]:
        fail(f"database rows {ids}")
    # The overrun ones say what the PLC was left with: no result, a reject.
    for pid, verdict, flags in db[3:]:
        if verdict != "reject" or not flags & FL_NOT_SENT or not flags & FL_FAILSAFE:
            fail(f"overrun part {pid} logged as {verdict}, flags {flags:#x}: want reject, "
                 "fail-safe, not sent")
    for pid, verdict, flags in db[:3]:
        if flags & FL_NOT_SENT:
            fail(f"buffered part {pid} reached the PLC but is logged as not sent")
    st = wait_for("overrun bit down once drained",
                  lambda: (lambda s: s if not s[1] & ST_OVERRUN else None)(plc.status()))
    if st[7] != n - 3 or st[5] != 0 or st[2] != 0:
        fail(f"status after draining {st}: overruns stay counted, error clears")
    # The gap shows in the trigger echo of the next result.
    plc.trigger(n + 1, 200 + n)
    r = plc.next_result()
    if (r[1] << 16 | r[2], r[3]) != (200 + n, n + 1):
        fail(f"result after the overrun: {r}")
    plc.ack(r[0])
    text = finish(v, plc)
    if text.count("result overrun") != n - 3:
        fail(f"want {n - 3} overrun warnings in the log")
    if f"fail-safe rejects by cause: overrun {n - 3}" not in text:
        fail(f"the summary does not count {n - 3} overrun fail-safes")


def scenario_deadline(env):
    # Each frame takes 2 s to leave the camera; the deadline is 300 ms.
    n = 3
    v, plc = start(env, config(env, deadline_ms=300,
                               elements="identity sleep-time=2000000 ! "))
    for i in range(n):
        plc.trigger(i + 1, 300 + i)
    got = []
    for _ in range(n):
        r = plc.next_result()
        got.append(r)
        plc.ack(r[0])
    if [(r[1] << 16 | r[2], r[3]) for r in got] != [(300 + i, i + 1) for i in range(n)]:
        fail(f"results {got}")
    last = got[-1]
    # Frame 2 cannot exist before 6 s after the camera started.
    if last[4] != REJECT or not last[7] & FL_FAILSAFE or not last[7] & FL_DEADLINE or last[7] & (
            FL_NO_FRAME | FL_NO_VIBRATION | FL_MODEL_ERROR):
        fail(f"the last part's result {last}: want a deadline fail-safe reject")
    failsafe = [r[1] << 16 | r[2] for r in got if r[7] & FL_FAILSAFE]
    # The late verdicts are logged, as rejects, once they come.
    db = rows(env["db"], n)
    for pid, verdict, flags in db:
        if pid in failsafe and (verdict != "reject" or not flags & FL_FAILSAFE):
            fail(f"database row of fail-safe part {pid}: {verdict}, flags {flags:#x}")
    st = plc.status()
    if st[1] & ST_FAULT:
        fail(f"a slow camera is not a fault: status {st}")
    text = finish(v, plc)
    for pid in failsafe:
        if f"part {pid}: no verdict within 300 ms, fail-safe reject" not in text:
            fail(f"no deadline warning for part {pid}")


def scenario_fault(env, policy):
    # The simulation has 3 parts: parts 4 and 5 find the camera at its end.
    v, plc = start(env, config(env, plc_extra=f"fault_policy = {policy}\n"))
    st = plc.status()
    if st[1] & (ST_FAULT | ST_STOP_LINE) or not st[1] & ST_CAMERA_OK:
        fail(f"status before any fault: {st}")
    got = []
    for i in range(5):
        plc.trigger(i + 1, 400 + i)
        r = plc.next_result()
        got.append(r)
        plc.ack(r[0])
    for r in got[3:]:
        if r[4] != REJECT or not r[7] & FL_FAILSAFE:
            fail(f"part {r[2]} without a frame: result {r}, want a fail-safe reject")
    st = wait_for("the fault in the status word",
                  lambda: (lambda s: s if s[1] & ST_FAULT else None)(plc.status()))
    print(f"{policy}: status {st}")
    if st[1] & ST_CAMERA_OK or st[2] != 1:
        fail(f"status word {st[1]:#x}, error {st[2]}: want camera ok clear and error 1")
    if bool(st[1] & ST_STOP_LINE) != (policy == "stop_line"):
        fail(f"{policy}: stop-line bit is {bool(st[1] & ST_STOP_LINE)}")
    rows(env["db"], 5)
    finish(v, plc)


def scenario_job(env):
    tail = "\n[job.1]\nreject = 0.99\nmarginal = 0.99\n\n[job.2]\nreject = 0\nmarginal = 0\n"
    conf = config(env, plc_extra="job = 1\n", tail=tail)
    state = env["db"] + ".plc-state"
    v, plc = start(env, conf)
    if plc.status()[3] != 1:
        fail(f"active job {plc.status()[3]}, want the configured job 1")
    plc.write(TRIG + 4, [2])
    wait_for("job 2 active", lambda: plc.status()[3] == 2)
    plc.trigger(1, 500)
    r = plc.next_result()
    plc.ack(r[0])
    if r[4] != REJECT or r[7] & FL_FAILSAFE:
        fail(f"job 2 rejects every part on its score: got {r}")
    plc.write(TRIG + 4, [9])
    st = wait_for("job 9 refused",
                  lambda: (lambda s: s if s[1] & ST_JOB_REFUSED else None)(plc.status()))
    if st[2] != ERR_JOB or st[3] != 2:
        fail(f"after selecting job 9: error {st[2]} (want 6), job {st[3]} (want 2)")
    text = finish(v, plc)
    if "PLC selected job 9, which is not configured" not in text:
        fail("no warning for job 9")
    with open(state) as f:
        if f.read().splitlines()[0] != "job=2":
            fail(f"{state} does not hold job 2")

    # A restart: the trigger block is zeroed (no request), job 2 stays.
    v, plc = start(env, conf)
    st = plc.status()
    if st[3] != 2 or st[1] & ST_JOB_REFUSED:
        fail(f"after a restart: job {st[3]}, want 2 from {state}")
    plc.trigger(1, 501)
    r = plc.next_result()
    plc.ack(r[0])
    if r[4] != REJECT:
        fail(f"after a restart, job 2 still rejects: got {r}")
    finish(v, plc)


class PartFlow:
    """A PLC running parts one after the other without waiting for their
    results (they are taken and acknowledged as they come), noting the
    status it saw just before each trigger and the job it expects to end up
    running (want: the last selection that is not to be refused)."""

    def __init__(self, plc, first_part, want=0):
        self.plc, self.next_part, self.counter, self.want = plc, first_part, 0, want
        self.raised = []              # (part id, status before its trigger, want)
        self.results = []

    def select(self, job, runs=True):
        self.plc.select_job(job)
        if runs:
            self.want = job

    def take(self):
        while True:
            r = self.plc.new_result()
            if not r:
                return
            self.results.append(r)
            self.plc.ack(r[0])

    def part(self):
        st = self.plc.status()
        self.counter = self.counter % 65535 + 1
        self.plc.trigger(self.counter, self.next_part)
        self.raised.append((self.next_part, st, self.want))
        self.next_part += 1
        self.take()
        time.sleep(0.02)
        return st

    def until(self, what, cond, then=3, limit_s=WAIT_S):
        """Parts until cond(status) holds, then `then` more; the status."""
        end = time.monotonic() + limit_s
        while not cond(self.part()):
            if time.monotonic() > end:
                fail(f"parts kept flowing but never {what}: status {self.plc.status()}")
        for _ in range(then):
            self.part()
        return self.plc.status()

    def drain(self):
        wait_for("every result", lambda: self.take() or len(self.results) >= len(self.raised))
        ids = [part_id(r) for r in self.results]
        if ids != [p[0] for p in self.raised]:
            fail(f"results for parts {ids}, want {[p[0] for p in self.raised]}")


def package_copy(env, name, edit=None, flip=None):
    """A copy of synthetic-v2 in tmp: edit(manifest text) -> new text, or
    one byte flipped in the file flip."""
    src = os.path.join(env["root"], "models", "synthetic-v2")
    dst = os.path.join(env["tmp"], name)
    shutil.copytree(src, dst)
    if edit:
        path = os.path.join(dst, "manifest.ini")
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(edit(text))
    if flip:
        with open(os.path.join(dst, flip), "r+b") as f:
            f.seek(200)
            b = f.read(1)
            f.seek(200)
            f.write(bytes([b[0] ^ 0xFF]))
    return dst


def scenario_job_model(env):
    real = os.path.join(env["root"], "models", "real-v2")
    corrupt = package_copy(env, "corrupt", flip="vision.onnx")
    # Its own version and thresholds (reject everything); its modules are
    # synthetic-v2's, checksums and all.
    strict = package_copy(env, "strict", edit=lambda t: t.replace(
        "version=synthetic-2", "version=synthetic-2-strict").replace(
        "reject=0.5", "reject=0.0").replace("marginal=0.3", "marginal=0.0"))
    missing = os.path.join(env["tmp"], "no-such-package")
    tail = (f"\n[job.2]\npackage = {real}\n\n[job.3]\npackage = {corrupt}\n"
            f"\n[job.4]\npackage = {missing}\n\n[job.5]\npackage = {strict}\n")
    conf = config(env, tail=tail)
    version = {0: "synthetic-2", 2: "real-2", 5: "synthetic-2-strict"}
    v, plc = start(env, conf)
    flow = PartFlow(plc, 600, 0)
    for _ in range(4):
        flow.part()
    # A real second model, selected while parts flow.
    flow.select(2)
    st = flow.until("job 2 running", lambda s: s[3] == 2 and not s[1] & ST_JOB_LOADING)
    if st[1] & ST_JOB_REFUSED or st[2]:
        fail(f"job 2 runs, yet status {st}")
    # A corrupt package: refused, job 2 keeps inspecting.
    flow.select(3, runs=False)
    st = flow.until("job 3 refused", lambda s: s[1] & ST_JOB_REFUSED)
    if st[2] != ERR_PKG_CORRUPT or st[3] != 2 or st[1] & ST_JOB_LOADING:
        fail(f"after the corrupt job 3: error {st[2]} (want {ERR_PKG_CORRUPT}), job {st[3]} "
             f"(want 2), status {st[1]:#x}")
    flow.select(4, runs=False)
    st = flow.until("job 4 refused", lambda s: s[1] & ST_JOB_REFUSED and s[2] == ERR_PKG_MISSING)
    if st[3] != 2:
        fail(f"after the missing job 4: job {st[3]}, want 2")
    # A package with its own thresholds; a job without any keeps them.
    flow.select(5)
    st = flow.until("job 5 running", lambda s: s[3] == 5 and not s[1] & ST_JOB_LOADING)
    if st[1] & ST_JOB_REFUSED or st[2]:
        fail(f"job 5 runs, yet status {st}")
    flow.drain()
    text = finish(v, plc)
    check_models(env, flow, version, ["synthetic-2", "real-2", "synthetic-2-strict"])
    for r in flow.results:
        if r[7] & (FL_FAILSAFE | FL_MODEL_ERROR):
            fail(f"part {part_id(r)} got a fail-safe result {r}: a model stopped inspecting")
    con = sqlite3.connect(env["db"])
    events = con.execute("SELECT kind, message FROM events ORDER BY id").fetchall()
    con.close()
    print("events:", *events, sep="\n  ")
    loaded = [m for k, m in events if k == "model-loaded"]
    refused = [m for k, m in events if k == "model-refused"]
    if (len(loaded) != 3 or not loaded[0].startswith("model synthetic-2 ")
            or not loaded[1].startswith("model real-2 ")
            or not loaded[2].startswith("model synthetic-2-strict ")):
        fail(f"model-loaded events {loaded}: want the start's, job 2's and job 5's")
    if (len(refused) != 2 or "SHA-256" not in refused[0] or corrupt not in refused[0]
            or missing not in refused[1] or "job 2 (model real-2) keeps running" not in refused[1]):
        fail(f"model-refused events {refused}")
    if "model package " + corrupt + " refused" not in text:
        fail("no warning about the corrupt package in the log")
    state = env["db"] + ".plc-state"
    with open(state) as f:
        if f.read().splitlines()[0] != "job=5":
            fail(f"{state} does not hold job 5")

    # A restart runs job 5's package from the start.
    v, plc = start(env, conf)
    st = plc.status()
    if st[3] != 5 or st[1] & (ST_JOB_REFUSED | ST_JOB_LOADING):
        fail(f"after a restart: status {st}, want job 5 running")
    flow = PartFlow(plc, 700, 5)
    for _ in range(3):
        flow.part()
    flow.drain()
    finish(v, plc)
    check_models(env, flow, version, ["synthetic-2-strict"])

    # A start-up selection whose package is now corrupt: [model] runs,
    # the PLC sees the refusal.
    with open(state, "w") as f:
        f.write("job=3\n")
    v, plc = start(env, conf)
    st = plc.status()
    if st[3] != 0 or not st[1] & ST_JOB_REFUSED or st[2] != ERR_PKG_CORRUPT:
        fail(f"starting on corrupt job 3: status {st}, want job 0 and error {ERR_PKG_CORRUPT}")
    flow = PartFlow(plc, 800, 0)
    for _ in range(2):
        flow.part()
    flow.drain()
    text = finish(v, plc)
    check_models(env, flow, version, ["synthetic-2"])
    if "starting on job 0" not in text:
        fail("no warning that vigild started on job 0")


def check_models(env, flow, version, want_runs):
    """Every part's row names the model that judged it, and its result the
    job: the running job's when the PLC triggered it with the job it wanted
    running and none loading, and the models follow each other in
    want_runs' order, never back and forth."""
    got = {pid: (verdict, model) for pid, verdict, model in rows(
        env["db"], 0, columns="part_id, verdict, model_version")}
    models = []
    for pid, st, want in flow.raised:
        if pid not in got:
            fail(f"part {pid} has no database row")
        verdict, model = got[pid]
        if st[3] == want and not st[1] & ST_JOB_LOADING and model != version[want]:
            fail(f"part {pid}, triggered while job {st[3]} ran: judged by {model}, "
                 f"want {version[st[3]]}")
        if model == "synthetic-2-strict" and verdict != "reject":
            fail(f"part {pid}: {verdict} under a package whose thresholds reject all")
        if not models or models[-1] != model:
            models.append(model)
    # The PLC learns the job of each part from its result.
    for r in flow.results:
        if version.get(r[9]) != got[part_id(r)][1]:
            fail(f"part {part_id(r)}: result says job {r[9]}, the row says model "
                 f"{got[part_id(r)][1]}")
    print("models in part order:", models)
    if models != want_runs:
        fail(f"models in part order {models}, want {want_runs}")


def modbus_frame(pdu, tid, unit):
    """A Modbus TCP request: MBAP header and PDU."""
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu


def modbus_raw(sock, pdu, tid=1, unit=1):
    """Sends one Modbus TCP request; (function, exception code or 0), or
    None when vigild closed the connection."""
    got = modbus_exchange(sock, pdu, tid, unit)
    if got is None:
        return None
    body = got[1]
    return (body[0] & 0x7F, body[1]) if body[0] & 0x80 else (body[0], 0)


def modbus_exchange(sock, pdu, tid=1, unit=1):
    """Sends one Modbus TCP request; the reply's (unit id, PDU), or None
    when vigild closed the connection. The reply must carry tid: the
    first reply on the connection after sending is taken as this one's."""
    sock.sendall(modbus_frame(pdu, tid, unit))
    head = b""
    while len(head) < 7:
        chunk = sock.recv(7 - len(head))
        if not chunk:
            return None
        head += chunk
    length = struct.unpack(">H", head[4:6])[0]
    body = b""
    while len(body) < length - 1:
        chunk = sock.recv(length - 1 - len(body))
        if not chunk:
            return None
        body += chunk
    if struct.unpack(">H", head[:2])[0] != tid:
        fail(f"reply to transaction {tid} carries {head[:2]!r}")
    return head[6], body


def scenario_malformed(env):
    # The slow master below pauses for whole parts between its bytes: give
    # it longer than the 500 ms after which a stalled request is dropped.
    v, plc = start(env, config(env, plc_extra="timeout_ms = 5000\n"))
    flow = PartFlow(plc, 900)
    flow.part()
    port = env["port"]
    # mbpoll as a service laptop: reads the status block, is refused
    # elsewhere.
    st, out = mbpoll_read(port, STAT, 9)
    if st is None or st[8] != 3:
        fail(f"mbpoll cannot read the status block: {out}")
    for what, args, want in (
            ("coils", ("0", "0"), "Illegal function"),
            ("registers past the map", (60000 - 1, "4"), "Illegal data address"),
            ("input registers", ("0", "3"), "Illegal function")):
        vals, out = mbpoll_read(port, int(args[0]), 2, args[1])
        print(f"mbpoll {what}: {out.strip()}")
        if vals is not None or want.lower() not in out.lower():
            fail(f"mbpoll reading {what}: {out!r}, want an exception ({want})")
    # mbpoll writes job_select (docs/plc.md): job 9 is not configured.
    ok, out = mbpoll_write(port, TRIG + 4, [9])
    if not ok:
        fail(f"mbpoll cannot write job_select: {out}")
    st = wait_for("job 9 refused", lambda: (lambda s: s if s[1] & ST_JOB_REFUSED else None)(
        plc.status()))
    if st[2] != ERR_JOB:
        fail(f"after mbpoll selected job 9: status {st}, want error {ERR_JOB}")
    ok, out = mbpoll_write(port, RES + 4, [1])
    if ok or "illegal data address" not in out.lower():
        fail(f"mbpoll wrote a verdict into the result block: {out}")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        cases = [
            ("an unknown function", bytes([0x41, 0, 0]), (0x41, 1)),
            ("diagnostics", bytes([0x08, 0, 0, 0x12, 0x34]), (0x08, 1)),
            ("reading 0 registers", struct.pack(">BHH", 3, 0, 0), (3, 3)),
            ("reading 200 registers", struct.pack(">BHH", 3, 0, 200), (3, 3)),
            ("reading past the map", struct.pack(">BHH", 3, 65530, 4), (3, 2)),
            ("a byte count that disagrees", struct.pack(">BHHB", 16, TRIG, 2, 3) + b"\0\1\0",
             (16, 3)),
            ("a forged verdict", struct.pack(">BHH", 6, RES + 4, 1), (6, 2)),
            ("a write past the trigger block", struct.pack(">BHHB", 16, TRIG + 3, 4, 8) +
             bytes(8), (16, 2)),
            ("a good read after them", struct.pack(">BHH", 3, STAT, 9), (3, 0)),
        ]
        for tid, (what, pdu, want) in enumerate(cases, 1):
            got = modbus_raw(s, pdu, tid)
            print(f"{what}: {got}")
            if got != want:
                fail(f"{what}: reply {got}, want function {want[0]} exception {want[1]}")
    # Bytes that are not Modbus: vigild ends that session only.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        try:
            if s.recv(100) != b"":
                fail("vigild answered an HTTP request")
        except ConnectionResetError:
            pass  # closed with our bytes unread
    # A master that sends its request a byte at a time, with parts going
    # on meanwhile on the PLC's own connection.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        req = struct.pack(">HHHB", 77, 0, 6, 1) + struct.pack(">BHH", 3, STAT, 9)
        for i, b in enumerate(req):
            s.sendall(bytes([b]))
            if i in (2, 8):
                flow.part()
            time.sleep(0.03)
        head = s.recv(9)
        if len(head) < 9 or head[:2] != b"\0\x4d" or head[7] != 3:
            fail(f"the slow master's read got {head!r}")
    flow.part()
    flow.drain()
    if not v.running():
        fail("vigild died")
    finish(v, plc)
    rows(env["db"], len(flow.raised))


def scenario_answers(env):
    """What vigild answers, by the Modbus specification (docs/plc.md,
    Server role), to raw frames, pymodbus and mbpoll, with unit_id = 1:
    every function but 3, 6, 16, 22 and 23 gets exception 01 with the
    function's high bit set (0x83 included, answered 0x83), unit ids 1,
    255 and 0 are answered, others neither answered nor done. Parts are
    triggered between the groups and after them: each gets its result."""
    v, plc = start(env, config(env))
    flow = PartFlow(plc, 1000)
    flow.part()
    port = env["port"]
    read_status = struct.pack(">BHH", 3, STAT, 9)
    read_job = struct.pack(">BHH", 3, TRIG + 4, 1)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        cases = [
            ("read coils (1)", struct.pack(">BHH", 1, 0, 2), 0x81),
            ("read discrete inputs (2)", struct.pack(">BHH", 2, 0, 2), 0x82),
            ("read input registers (4)", struct.pack(">BHH", 4, STAT, 9), 0x84),
            ("write coil (5)", struct.pack(">BHH", 5, 0, 0xFF00), 0x85),
            ("write coils (15)", struct.pack(">BHHBB", 15, 0, 3, 1, 5), 0x8F),
            ("report slave id (17)", bytes([0x11]), 0x91),
            ("function 0x83", bytes([0x83]) + read_status[1:], 0x83),
            ("function 0x90", struct.pack(">BHHB", 0x90, TRIG, 1, 2) + b"\0\1", 0x90),
            ("function 0xFF", bytes([0xFF]), 0xFF),
        ]
        for tid, (what, pdu, fc) in enumerate(cases, 1):
            got = modbus_exchange(s, pdu, tid)
            print(f"{what}: {got}")
            if got != (1, bytes([fc, 1])):
                fail(f"{what}: reply {got}, want unit 1, function {fc:#x}, exception 01")
        flow.part()
        # The unit ids that address vigild on TCP; each reply carries its own.
        for tid, unit in enumerate((1, 255, 0), 100):
            got = modbus_exchange(s, read_status, tid, unit)
            if got is None or got[0] != unit or got[1][:2] != bytes([3, 18]) or \
                    got[1][2 + 2 * 8:] != b"\0\3":
                fail(f"reading the status block as unit {unit}: {got}")
        # Other unit ids: job_select = 9 is neither answered nor done. The
        # first reply after them must be the one to the read that follows
        # (modbus_exchange checks its transaction id).
        for tid, unit in enumerate((2, 7, 247, 254), 200):
            s.sendall(modbus_frame(struct.pack(">BHH", 6, TRIG + 4, 9), tid, unit))
        got = modbus_exchange(s, read_job, 300)
        if got != (1, bytes([3, 2, 0, 0])):
            fail(f"job_select after writes to other unit ids: {got}, want 0")
    flow.part()

    # pymodbus, a Modbus stack nobody here wrote, as a second master.
    from pymodbus.client import ModbusTcpClient
    c = ModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
    if not c.connect():
        fail("pymodbus cannot connect")
    for what, call, fc in (
            ("read_coils", lambda u: c.read_coils(0, 2, slave=u), 1),
            ("read_discrete_inputs", lambda u: c.read_discrete_inputs(0, 2, slave=u), 2),
            ("read_input_registers", lambda u: c.read_input_registers(STAT, 9, slave=u), 4),
            ("write_coil", lambda u: c.write_coil(0, True, slave=u), 5),
            ("write_coils", lambda u: c.write_coils(0, [True, False, True], slave=u), 15)):
        rr = call(1)
        print(f"pymodbus {what}: {rr}")
        if not rr.isError() or getattr(rr, "exception_code", None) != 1 or \
                rr.function_code != fc | 0x80:
            fail(f"pymodbus {what}: {rr}, want an exception 01 to function {fc}")
    for unit in (1, 255, 0):
        rr = c.read_holding_registers(STAT, 9, slave=unit)
        if rr.isError() or rr.registers[8] != 3:
            fail(f"pymodbus reading the status block as unit {unit}: {rr}")
    try:
        rr = c.read_holding_registers(STAT, 9, slave=5)
        print(f"pymodbus as unit 5: {rr}")
        answered = not rr.isError()
    except Exception as e:  # noqa: BLE001 pymodbus raises on no reply
        print(f"pymodbus as unit 5: {e!r}")
        answered = False
    if answered:
        fail(f"vigild answered pymodbus as unit 5: {rr}")
    c.close()
    flow.part()

    # mbpoll, a libmodbus master, as the service laptop would use it.
    for what, ftype in (("coils", "0"), ("discrete inputs", "1"), ("input registers", "3")):
        vals, out = mbpoll_read(port, 0, 2, ftype)
        print(f"mbpoll {what}: {out.strip()}")
        if vals is not None or "illegal function" not in out.lower():
            fail(f"mbpoll reading {what}: {out!r}, want exception 01 (Illegal function)")
    for what, values in (("a coil (5)", [1]), ("coils (15)", [1, 0, 1])):
        ok, out = mbpoll_write(port, 0, values, "0")
        print(f"mbpoll writing {what}: {out.strip()}")
        if ok or "illegal function" not in out.lower():
            fail(f"mbpoll writing {what}: {out!r}, want exception 01 (Illegal function)")
    for unit in (1, 255, 0):
        vals, out = mbpoll_read(port, STAT, 9, unit=unit)
        if vals is None or vals[8] != 3:
            fail(f"mbpoll reading the status block as unit {unit}: {out}")
    vals, out = mbpoll_read(port, STAT, 9, unit=5)
    print(f"mbpoll as unit 5: {out.strip()}")
    if vals is not None or "timed out" not in out.lower():
        fail(f"mbpoll as unit 5: {out!r}, want no reply (a time-out)")

    for _ in range(2):
        flow.part()
    flow.drain()
    if not v.running():
        fail("vigild died")
    if plc.read(TRIG + 4, 1) != [0]:
        fail("a request vigild refused or ignored changed job_select")
    finish(v, plc)
    rows(env["db"], len(flow.raised))


SCENARIOS = {
    "double-ack": scenario_double_ack,
    "never-ack": scenario_never_ack,
    "deadline": scenario_deadline,
    "fault-reject_all": lambda env: scenario_fault(env, "reject_all"),
    "fault-stop_line": lambda env: scenario_fault(env, "stop_line"),
    "job": scenario_job,
    "job-model": scenario_job_model,
    "malformed": scenario_malformed,
    "answers": scenario_answers,
}


def parts(name):
    # job-model raises parts for as long as a package takes to load,
    # which a busy host stretches (26 parts in its first run, with two
    # CPU hogs beside it): room for 9 times that before the camera's
    # images run out and parts turn fail-safe.
    return 3 if name.startswith("fault") else 240 if name == "job-model" else 60


def main():
    scenario_main(__doc__, SCENARIOS, "vigil-plc-hs-", parts, 5)


if __name__ == "__main__":
    main()
