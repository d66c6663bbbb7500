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

usage: test_plc_handshake.py BUILD_DIR SOURCE_ROOT SCENARIO
"""
import os
import sqlite3
import sys
import tempfile
import time

from linetest import Vigild, camera_section, fail, free_port, generate_parts, line_config, skip
from plctest import (ERR_JOB, FL_FAILSAFE, FL_MODEL_ERROR, FL_NO_FRAME, FL_NO_VIBRATION,
                     REJECT, ST_CAMERA_OK, ST_FAULT, ST_JOB_REFUSED, ST_OVERRUN, ST_STOP_LINE,
                     ST_VALID, TRIG, WAIT_S, MasterPLC, quiet_pymodbus, start_vigild,
                     stop_vigild, wait_for)


def config(env, deadline_ms=20000, plc_extra="", elements="", tail="", name="vigild.conf"):
    """vigild in the server role on env's simulated parts; slow timeouts,
    so only what a scenario provokes goes wrong."""
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
    ids = [r[0] for r in rows(env["db"], n)]
    if ids != [200 + i for i in range(n)]:
        fail(f"database rows {ids}")
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
    if last[4] != REJECT or not last[7] & FL_FAILSAFE or last[7] & (
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
        if f.read().strip() != "job=2":
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


SCENARIOS = {
    "double-ack": scenario_double_ack,
    "never-ack": scenario_never_ack,
    "deadline": scenario_deadline,
    "fault-reject_all": lambda env: scenario_fault(env, "reject_all"),
    "fault-stop_line": lambda env: scenario_fault(env, "stop_line"),
    "job": scenario_job,
}


def main():
    if len(sys.argv) != 4 or sys.argv[3] not in SCENARIOS:
        print(__doc__)
        sys.exit(2)
    build, root, name = sys.argv[1:]
    quiet_pymodbus()
    if not os.path.exists(os.path.join(root, "models", "synthetic-v1", "manifest.ini")):
        skip("no model package")
    with tempfile.TemporaryDirectory(prefix="vigil-plc-hs-") as tmp:
        sim = os.path.join(tmp, "sim")
        generate_parts(build, sim, 3 if name.startswith("fault") else 60, 5)
        env = {"tmp": tmp, "build": build, "root": root, "sim": sim, "port": free_port(),
               "db": os.path.join(tmp, "vigil.db")}
        SCENARIOS[name](env)
    print("PASS", name)


if __name__ == "__main__":
    main()
