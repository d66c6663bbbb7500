#!/usr/bin/python3
"""A full disk, for real (issue 18): vigild's log and media on a 2 MB tmpfs
that the test fills with a filler file and frees again, twice.

vigild runs in the server role; the PLC (pymodbus, tests/plctest.py) runs
one part at a time. Each episode: the filler takes every free byte, parts
run until the database fault is raised (vigil_db_ok 0), more parts run than
the spool ([database] spool_rows, 16 here) holds, the filler goes, and with
no part running the log must resume by itself: vigil_db_ok back to 1 within
a generous bound, the spool written. At the end:

  - every result the PLC got is a row in the file or counted in
    vigil_db_rows_dropped_total{table="inspections"} (rows + dropped =
    results), and rows were dropped only because the spool was full;
  - vigil_db_rows_written_total equals the rows in tables inspections,
    events and trend;
  - each episode has its "db-fault" event (naming the full disk), a
    "db-rows-dropped" event with the counts, and a "db-ok" after them;
  - PRAGMA integrity_check is ok.

Needs root to mount the tmpfs (CI runs as root); skips with the reason
otherwise.

usage: test_faults_disk.py BUILD_DIR SOURCE_ROOT
"""
import errno
import os
import re
import sqlite3
import subprocess
import sys
import time
import urllib.request

from linetest import Vigild, fail, free_port, generate_parts, require_model, skip, workdir
from plctest import MasterPLC, quiet_pymodbus, start_vigild, wait_for
from test_plc_handshake import config

SPOOL_ROWS = 16
RESUME_S = 20      # a failure bound for "within seconds", generous for a busy host


def metrics(port):
    """/metrics as {series: value}, series with their labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def dropped(m, table=None):
    """vigil_db_rows_dropped_total summed over causes (and tables)."""
    total = 0
    for k, v in m.items():
        if k.startswith("vigil_db_rows_dropped_total{") and (
                table is None or f'table="{table}"' in k):
            total += v
    return int(total)


def fill(path):
    """Writes path until the file system has no byte left; its size."""
    n = 0
    with open(path, "wb", buffering=0) as f:
        for chunk in (1 << 16, 4096, 512, 1):
            block = b"\0" * chunk
            try:
                while True:
                    f.write(block)
                    n += chunk
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
    return n


def file_rows(db):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("inspections", "events", "trend")}
    finally:
        con.close()


def run_part(plc, i, parts):
    plc.trigger(i + 1, 500 + i)
    r = plc.next_result()
    plc.ack(r[0])
    parts.append(r[1] << 16 | r[2])


def settled(port, db):
    """Metrics once the writer has nothing left to do: the spool empty and
    the rows-written counter agreeing with the file across two looks (an
    event may be written in between)."""
    def look():
        m1 = metrics(port)
        rows = file_rows(db)
        m2 = metrics(port)
        written = m1["vigil_db_rows_written_total"]
        if (m1.get("vigil_db_spool_rows") == 0 and written == sum(rows.values()) and
                m2["vigil_db_rows_written_total"] == written):
            return m2, rows
        return None
    return wait_for("the writer settled, its counter equal to the file's rows", look, 30, 0.2)


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        sys.exit(2)
    build, root = sys.argv[1:]
    require_model(root)
    if os.geteuid() != 0:
        skip("mounting a tmpfs needs root (CI runs this as root)")
    quiet_pymodbus()
    with workdir("vigil-faults-disk-") as tmp:
        fs = os.path.join(tmp, "fs")
        os.mkdir(fs)
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", fs],
                           capture_output=True, text=True)
        if p.returncode != 0:
            skip(f"cannot mount a tmpfs: {p.stderr.strip()}")
        try:
            scenario(build, root, tmp, fs)
        finally:
            subprocess.run(["umount", "-l", fs], check=False)


def scenario(build, root, tmp, fs):
    sim = os.path.join(tmp, "sim")
    generate_parts(build, sim, 400, 8)
    env = {"tmp": tmp, "sim": sim, "root": root, "port": free_port(),
           "db": os.path.join(fs, "vigil.db"), "build": build}
    conf = config(env, deadline_ms=3000, plc_extra="fault_policy = reject_all\n",
                  tail=f"spool_rows = {SPOOL_ROWS}\n\n[review]\nlisten = 127.0.0.1\nport = 0\n")
    log_path = os.path.join(tmp, "vigild.log")
    v = Vigild(build, conf, log_path)
    plc = MasterPLC(env["port"])
    start_vigild(v, plc)
    port = v.review_port()
    parts = []
    for _ in range(5):
        run_part(plc, len(parts), parts)
    if metrics(port)["vigil_db_ok"] != 1:
        fail("the database fault is raised before the disk is full")

    episodes = []
    for episode in (1, 2):
        filler = os.path.join(fs, f"filler-{episode}")
        size = fill(filler)
        # Rows fit for a while (free room in the file's and the WAL's
        # pages); then the disk refuses them.
        first = len(parts)
        while metrics(port)["vigil_db_ok"] == 1:
            if len(parts) - first >= 200:
                fail(f"episode {episode}: no database fault after {len(parts) - first} parts "
                     "on a full disk")
            run_part(plc, len(parts), parts)
        # More parts than the spool holds.
        for _ in range(SPOOL_ROWS + 14):
            run_part(plc, len(parts), parts)
        during = metrics(port)
        if during["vigil_db_ok"] != 0:
            fail(f"episode {episode}: the fault cleared while the disk is still full")
        if during.get("vigil_db_spool_rows", 0) != SPOOL_ROWS:
            fail(f"episode {episode}: {during.get('vigil_db_spool_rows')} rows in the spool, "
                 f"want it full ({SPOOL_ROWS})")
        os.remove(filler)
        # No part runs now: the log must come back on its own.
        t0 = time.monotonic()
        wait_for(f"episode {episode}: vigil_db_ok back to 1 once space returned",
                 lambda: metrics(port)["vigil_db_ok"] == 1, RESUME_S, 0.1)
        resumed_s = time.monotonic() - t0
        after, rows = settled(port, env["db"])
        if rows["inspections"] + dropped(after, "inspections") != len(parts):
            fail(f"episode {episode}: {len(parts)} results, {rows['inspections']} rows and "
                 f"{dropped(after, 'inspections')} counted dropped")
        episodes.append((size, len(parts) - first, resumed_s))

    for _ in range(5):
        run_part(plc, len(parts), parts)
    final, rows = settled(port, env["db"])
    plc.close()
    rc = v.stop()
    print(v.text()[-3000:])
    if rc != 0:
        fail(f"vigild exited with {rc}")

    if len(set(parts)) != len(parts) or parts != [500 + k for k in range(len(parts))]:
        fail(f"results {parts}: want one per part, in order")
    causes = {k: v for k, v in final.items() if k.startswith("vigil_db_rows_dropped_total")}
    spool_full = sum(v for k, v in causes.items() if 'cause="spool_full"' in k)
    if spool_full < 2 * 14 or dropped(final) != spool_full:
        fail(f"dropped by cause {causes}: want only spool_full, at least 28")
    con = sqlite3.connect(env["db"])
    check = con.execute("PRAGMA integrity_check").fetchone()[0]
    logged = [r[0] for r in con.execute("SELECT part_id FROM inspections ORDER BY id")]
    events = con.execute("SELECT kind, message FROM events ORDER BY id").fetchall()
    con.close()
    if check != "ok":
        fail(f"integrity_check: {check}")
    if len(set(logged)) != len(logged) or not set(logged) <= set(parts):
        fail(f"rows {logged}: not a subset of the PLC's parts, once each")
    if len(logged) + dropped(final, "inspections") != len(parts):
        fail(f"{len(parts)} results, {len(logged)} rows and {dropped(final, 'inspections')} "
             "counted dropped")
    kinds = [k for k, _ in events]
    full = [i for i, (k, msg) in enumerate(events) if k == "db-fault" and "full" in msg]
    if len(full) != 2:
        fail(f"events {events}: want one db-fault naming the full disk per episode")
    for i in full:
        rest = kinds[i + 1:]
        if "db-ok" not in rest or "db-rows-dropped" not in rest[:rest.index("db-ok")]:
            fail(f"events {kinds}: want db-rows-dropped, then db-ok after each db-fault")
    for _, msg in (e for e in events if e[0] == "db-rows-dropped"):
        if not re.search(r"\d+ row\(s\).*spool", msg):
            fail(f"db-rows-dropped says {msg!r}: want the count and the cause")
    print(f"PASS faults-disk: {len(parts)} parts, one result each; "
          + "; ".join(f"episode {n}: filler {s // 1024} KiB, {p} parts, resumed "
                      f"{r:.1f} s after the space returned"
                      for n, (s, p, r) in enumerate(episodes, 1))
          + f"; {len(logged)} rows + {dropped(final, 'inspections')} dropped (spool full) = "
          f"{len(parts)} results; rows written {int(final['vigil_db_rows_written_total'])} = "
          f"the file's {sum(rows.values())}; integrity ok")


if __name__ == "__main__":
    main()
