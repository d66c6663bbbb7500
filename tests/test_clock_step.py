#!/usr/bin/python3
"""The wall clock stepped while vigild runs (db/db-clock.c; docs/operations.md,
"The wall clock steps"): vigild whole on the simulated line, vigil-sim as
the PLC, vigild's wall clock moved by libfaketime (Debian's libfaketime,
LD_PRELOAD; the monotonic and boot clocks left alone, as a real step
leaves them). This is the one stand-in here: stepping the machine's own
clock would move every other process's too.

An industrial PC whose RTC battery is flat boots at the firmware's date,
and NTP moves its clock forward once the network is up. vigild starts 400
days behind, with max_age_days = 30 and a retention run every second. The
log holds, from an earlier run, one part stamped 200 days before the real
now: in the future while the clock is behind, 200 days old after the
step. Once 60 rows are in the log the clock steps forward to the real time.

Checked: a warning and an event clock-stepped saying forward by 400 d,
vigil_clock_steps_total 1; the earlier run's old part goes at the next
retention run (so retention ran on the stepped clock), while every part
of this run, stamped 400 days ago and so 370 days past max_age_days,
stays: vigil-sim's end check finds a row for each part at the end. Then
the clock steps back a day: a second event, saying back, and the rows
stamped before it, a day ahead of the clock now, are forwarded to the
plant's PostgreSQL (a server the test starts, tests/pgtest.py) at once:
the forwarder's backlog goes to 0 while vigild runs, rather than waiting
a day for them to look settled.

usage: test_clock_step.py BUILD_DIR SOURCE_ROOT
"""
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
import urllib.request

import pgtest
from linetest import Line, fail, log_events as events, log_rows, metric, workdir

PARTS = 500
RATE = 1200        # parts/min: 25 s of parts, the step after about 3 s
BEFORE = 60        # rows in the log before the step
DAY_US = 86400 * 1_000_000
FORWARD = r"(400 d 0 h 0 min|399 d 23 h 59 min)"
BACK = r"(1 d 0 h 0 min|23 h 59 min 59 s)"
FAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"
CONF = """
[review]
listen = 127.0.0.1
port = 0
[database]
max_age_days = 30
protect_days = 7
retention_period_s = 1
[plant]
conninfo = {conninfo}
site = plant-a
line = line-1
station = station-1
retry_max_s = 2
settle_s = 1
"""


def plant_backlog(url):
    with urllib.request.urlopen(url + "api/status", timeout=30) as r:
        return sum(json.loads(r.read())["plant"]["backlog"].values())


def set_clock(path, offset):
    """libfaketime's offset from the real time ("-400d", "+0"), read again
    by vigild within a second (FAKETIME_CACHE_DURATION)."""
    with open(path + ".new", "w") as f:
        f.write(offset + "\n")
    os.replace(path + ".new", path)


def main(build, root):
    if not os.path.exists(FAKETIME):
        print(f"SKIP: {FAKETIME} is missing (Debian package libfaketime)")
        return 77
    with workdir("vigil-clock-") as tmp, pgtest.server() as pg:
        conninfo = pg.create_role("vigil_station", "Cl0ck-s3cret", "plant")
        clock = os.path.join(tmp, "faketime")
        set_clock(clock, "-400d")
        env = {"LD_PRELOAD": FAKETIME, "FAKETIME_TIMESTAMP_FILE": clock,
               "FAKETIME_CACHE_DURATION": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
        line = Line(build, root, tmp, PARTS, seed=81, split="e2e", rate=RATE,
                    extra_conf=CONF.format(conninfo=conninfo),
                    env=env)
        # An earlier run's part, 200 days before the real now; vigil-sim
        # numbers its parts from 1, so this one is part 1,000,001.
        subprocess.run([os.path.join(build, "tools", "vigilctl"), "--db", line.db, "upgrade"],
                       check=True, capture_output=True, timeout=30)
        con = sqlite3.connect(line.db)
        con.execute("INSERT INTO inspections (part_id, trigger_counter, seq, t_wall_us, verdict,"
                    " verdict_code, defect_class, flags, score, vision_score, signal_score,"
                    " latency_ms, infer_ms, model_version) VALUES (1000001, 0, 0, ?, 'reject',"
                    " 2, 'surface', 0, 0.9, 0.9, 0.1, 2.0, 1.0, 'earlier')",
                    (int(time.time() * 1e6) - 200 * DAY_US,))
        con.commit()
        con.close()
        line.start()
        url = line.review_url()
        line.vigild.wait_until(f"{BEFORE} rows in the log", lambda: log_rows(
            line.db, "SELECT count(*) FROM inspections WHERE part_id < 1000000")[0][0] >= BEFORE,
            timeout=120)
        (first,) = log_rows(line.db, "SELECT min(t_wall_us) FROM inspections"
                            " WHERE part_id < 1000000")[0]
        if not first < time.time() * 1e6 - 399 * DAY_US:
            fail(f"the first row is stamped {first}: vigild's clock was not 400 days behind")
        if line.sim.poll() is not None:
            fail("the line finished before the step: the test needs more parts")
        set_clock(clock, "+0")
        # To the second, or a second short: the clocks are read apart.
        if not line.vigild.wait_log(r"the wall clock stepped forward by " + FORWARD, timeout=60):
            fail("no warning that the wall clock stepped forward")
        line.vigild.wait_until("vigil_clock_steps_total 1",
                               lambda: metric(url, "vigil_clock_steps_total") == 1)
        line.vigild.wait_until("the earlier run's part removed by retention", lambda: not log_rows(
            line.db, "SELECT 1 FROM inspections WHERE part_id = 1000001"), timeout=60)
        # Back while parts flow: the rows of the last settle_s are not
        # forwarded yet, and are a day ahead of the clock after it.
        if line.sim.poll() is not None:
            fail("the line finished before the step back: the test needs more parts")
        set_clock(clock, "-1d")
        if not line.vigild.wait_log(r"the wall clock stepped back by " + BACK, timeout=60):
            fail("no warning that the wall clock stepped back")
        if line.wait_sim(timeout=600) != 0:
            fail("vigil-sim reports a part without its one result or its row in the log")
        line.vigild.wait_until("the plant backlog at 0 after the step back",
                               lambda: plant_backlog(url) == 0, timeout=60)
        if line.stop() != 0:
            fail("vigild did not stop cleanly")
        (rows, old) = log_rows(line.db, "SELECT count(*), sum(t_wall_us < ?) FROM inspections",
                               (int(time.time() * 1e6) - 399 * DAY_US,))[0]
        if rows != PARTS or old < BEFORE:
            fail(f"{rows} rows after the run, {old} of them stamped before the step: want "
                 f"{PARTS}, at least {BEFORE}")
        stepped = events(line.db, "clock-stepped")
        if (len(stepped) != 2 or not re.search("forward by " + FORWARD, stepped[0])
                or not re.search("back by " + BACK, stepped[1])):
            fail(f"clock-stepped events: {stepped}")
        removed = events(line.db, "retention")
        if not removed or not removed[0].startswith("removed 1 inspection(s)"):
            fail(f"retention events: {removed}")
        print(f"PASS: {rows} parts kept, {old} stamped 400 days back; the earlier run's part "
              f"went; events: {stepped}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
