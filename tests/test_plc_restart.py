#!/usr/bin/python3
"""vigild restarted (SIGKILL, as a crash or a power cut) against a PLC
whose registers outlive it: vigild in the client role, the PLC a pymodbus
server holding the registers across every restart (docs/plc.md,
"Restarts of vigild"). Asserts behaviour, never timing:

  client   run 1: three parts, the third presented and not acknowledged,
           then SIGKILL. Run 2: the PLC's job_select (2) is a baseline, not
           a request; the result left valid is taken down, counter and part
           kept; the next result's counter goes on (4, not 1). SIGKILL, and
           two triggers raised while vigild is down. Run 3: the last gets
           a fail-safe reject (flag bits 2 and 10, not inspected) with its
           database row and a plc-unanswered event, the one before it is
           counted as missed; the next part is
           judged by the model. Run 4, the state file lost and the PLC's
           result block zeroed, its ack still 1: the first result is
           counter 2, and the stale ack does not take it.

usage: test_plc_restart.py BUILD_DIR SOURCE_ROOT SCENARIO
"""
import os
import sqlite3

from linetest import Vigild, camera_section, fail, line_config
from plctest import (FL_FAILSAFE, REJECT, RES, RES_REGS, STAT, STAT_REGS, TRIG, ServerPLC,
                     part_id, run_part, scenario_main, start_vigild, stop_vigild, wait_for)

FL_NOT_INSPECTED = 1 << 10
JOBS = "\n[job.1]\nreject = 0.99\nmarginal = 0.99\n\n[job.2]\nreject = 0\nmarginal = 0\n"


def config(env):
    conf = os.path.join(env["tmp"], "vigild.conf")
    with open(conf, "w") as f:
        f.write(line_config(camera_section(env["sim"], 20000, "", "restart = never\n"),
                            env["sim"], env["root"], env["port"], env["db"],
                            deadline_ms=20000, window_timeout_ms=20000,
                            plc_extra="mode = client\n",
                            tail="commit_timeout_ms = 10000\n" + JOBS))
    return conf


def start(env, conf, plc):
    # The status block of a killed run still says ready: only the new
    # run's first write may.
    plc.write(STAT, [0] * STAT_REGS)
    v = Vigild(env["build"], conf, os.path.join(env["tmp"], "vigild.log"))
    start_vigild(v, plc)
    return v


def row(db, pid):
    """The database row (verdict, flags) of part pid, once there is one."""
    def get():
        try:
            con = sqlite3.connect(db)
            r = con.execute("SELECT verdict, flags FROM inspections WHERE part_id = ?",
                            (pid,)).fetchall()
            con.close()
        except sqlite3.Error:
            return None
        return r or None
    return wait_for(f"the row of part {pid}", get)


def events(db, kind):
    try:
        con = sqlite3.connect(db)
        r = con.execute("SELECT message FROM events WHERE kind = ?", (kind,)).fetchall()
        con.close()
    except sqlite3.Error:
        return []
    return [m for (m,) in r]


def scenario_client(env):
    conf = config(env)
    plc = ServerPLC(env["port"])
    state = env["db"] + ".plc-state"

    # Run 1: results 1 and 2 taken, 3 presented and never acknowledged.
    v = start(env, conf, plc)
    for i in range(3):
        r = run_part(plc, i + 1, 100 + i, ack=i < 2)
        if r[0] != i + 1:
            fail(f"run 1: result {r}, want counter {i + 1}")
    v.kill()
    left = plc.result()
    if left[8] != 1 or left[0] != 3:
        fail(f"after SIGKILL the PLC holds {left}, want result 3 valid")

    # Run 2: job_select already 2 at start selects nothing.
    plc.select_job(2)
    v = start(env, conf, plc)
    r = wait_for("the killed run's result taken down",
                 lambda: (lambda r: r if r[8] == 0 else None)(plc.result()))
    if r[:8] != left[:8] or r[9] != left[9]:
        fail(f"taking result 3 down changed it: {left} -> {r}")
    if plc.status()[4] != 3:
        fail(f"trigger_seen {plc.status()[4]}: trigger 3 was answered, want 3")
    plc.res_counter = r[0]
    r = run_part(plc, 4, 103)
    if r[0] != 4:
        fail(f"run 2: result counter {r[0]}, want 4 (going on from 3)")
    if r[9] != 0 or plc.status()[3] != 0:
        fail(f"run 2 judged under job {r[9]} (active {plc.status()[3]}): a job_select "
             "written before the start is no request")
    # A change of job_select is one: job 1 runs, and job 2 never did.
    plc.select_job(1)
    wait_for("job 1 active", lambda: plc.status()[3] == 1)
    text = v.text()
    if "PLC selected job 2" in text or "PLC shows job_select 2 at start" not in text:
        fail("job_select 2 at start was taken as a request, or not logged as a baseline")
    wait_for("result 4 acknowledged", lambda: plc.result()[8] == 0)
    v.kill()
    with open(state) as f:
        kept = [ln for ln in f.read().splitlines() if ln.strip()]
    if kept != ["job=1", "result_counter=4", "trigger_counter=4", "part_id=103"]:
        fail(f"{state} holds {kept}")

    # Run 3: two triggers raised while vigild was down (5, part 104, then 6,
    # part 105): the last gets a fail-safe reject, the one before is missed.
    plc.write(TRIG, [5, 0, 104])
    plc.write(TRIG, [6, 0, 105])
    v = start(env, conf, plc)
    r = plc.next_result()
    want = FL_FAILSAFE | FL_NOT_INSPECTED
    if part_id(r) != 105 or r[3] != 6 or r[4] != REJECT or r[7] & want != want or r[0] != 5:
        fail(f"the trigger raised while vigild was down got {r}, want counter 5, "
             "a fail-safe reject of part 105, not inspected")
    plc.ack(r[0])
    verdict, flags = row(env["db"], 105)[0]
    if verdict != "reject" or flags & want != want:
        fail(f"part 105's row: verdict {verdict}, flags {flags:#x}")
    msgs = wait_for("a plc-unanswered event", lambda: events(env["db"], "plc-unanswered"))
    if len(msgs) != 1 or "trigger 6 (part 105)" not in msgs[0]:
        fail(f"plc-unanswered events {msgs}")
    if "from 4 to 6: 1 trigger(s) missed while vigild was down" not in v.text():
        fail("trigger 5, raised while vigild was down before 6, was not counted as missed")
    # The state file removed while vigild runs is written again with the
    # next result (each result's record is written in place, through a
    # descriptor that must not go on writing the removed file).
    os.unlink(state)
    r = run_part(plc, 7, 106)
    if r[7] & FL_FAILSAFE or r[0] != 6:
        fail(f"the part after it was not judged by the model: {r}")
    with open(state) as f:
        kept = [ln for ln in f.read().splitlines() if ln.strip()]
    if kept != ["job=1", "result_counter=6", "trigger_counter=7", "part_id=106"]:
        fail(f"{state} removed while running, then holds {kept}")
    wait_for("result 6 acknowledged", lambda: plc.result()[8] == 0)
    v.kill()

    # Run 4: the state file lost, the PLC's result block zeroed, its ack
    # still 1: the first result skips counter 1.
    os.unlink(state)
    plc.write(RES, [0] * RES_REGS)
    plc.ack(1)
    plc.res_counter = 0
    v = start(env, conf, plc)
    r = run_part(plc, 8, 107, ack=False)
    if r[0] != 2:
        fail(f"run 4: result counter {r[0]}, want 2 (1 is the PLC's stale ack)")
    # vigild has read the trigger block (ack 1) after presenting result 2
    # once it has seen the next trigger.
    plc.trigger(9, 108)
    now = plc.result()
    if now[0] != 2 or now[8] != 1 or plc.status()[5] < 1:
        fail(f"the stale ack 1 took result 2 down: now {now}, status {plc.status()}")
    plc.ack(2)
    r = plc.next_result()
    if part_id(r) != 108:
        fail(f"after acknowledging result 2: {r}")
    plc.ack(r[0])
    text = stop_vigild(v, plc)
    if "taken as the baseline" not in text:
        fail("no warning that the trigger shown at a start without state was adopted")


SCENARIOS = {"client": scenario_client}


def main():
    scenario_main(__doc__, SCENARIOS, "vigil-plc-restart-", lambda name: 12, 23)


if __name__ == "__main__":
    main()
