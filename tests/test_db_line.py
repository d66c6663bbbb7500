#!/usr/bin/python3
"""vigild whole and its log, in the two ways a log fails on a line:

  crash      vigil-sim (the PLC, Modbus TCP loopback) runs parts fast, with
             every part's files kept; vigild is SIGKILLed in the middle of
             the burst. The file must pass PRAGMA integrity_check and hold
             a row, with the verdict the PLC got, for every result the PLC
             acknowledged; every media row's file must exist.
  disk-full  the database may not grow (VIGIL_TEST_DB_MAX_PAGES, test only):
             a pymodbus PLC polling vigild (server role) still gets one
             result per part, the status word's db-ok bit clears and
             error_code says database; once space returns (another
             connection frees pages) the bit comes back, rows are written
             again and an event "db-ok" says so.

usage: test_db_line.py BUILD_DIR SOURCE_ROOT crash|disk-full
"""
import csv
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

from linetest import binaries, fail, free_port, line_config

ST_DB_OK = 1 << 6
ERR_DATABASE = 4
WAIT_S = 60


def wait_for(what, cond, timeout=WAIT_S):
    end = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > end:
            fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def count_rows(db):
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        n = con.execute("SELECT count(*) FROM inspections").fetchone()[0]
        con.close()
        return n
    except sqlite3.Error:
        return 0


def crash(build, root, tmp):
    sim_bin, vigild_bin = binaries(build)
    parts = 1500
    sim_dir = os.path.join(tmp, "sim")
    subprocess.run([sim_bin, "generate", "--out", sim_dir, "--parts", str(parts),
                    "--seed", "77", "--split", "e2e"], check=True, stdout=subprocess.DEVNULL)
    port = free_port()
    db = os.path.join(tmp, "vigil.db")
    conf = os.path.join(tmp, "vigild.conf")
    with open(conf, "w") as f:
        f.write(line_config(f"""[camera.top]
pipeline = multifilesrc location={sim_dir}/images/part-%05d.png index=0 caps=image/png ! pngdec ! videoconvert ! appsink name=sink
trigger = sequence
frame_timeout_ms = 5000
""", sim_dir, root, port, db) + "keep_accepted_every = 1\n")
    results = os.path.join(tmp, "results.csv")
    sim = subprocess.Popen([sim_bin, "run", "--parts-dir", sim_dir, "--port", str(port),
                            "--rate", "3000", "--results", results, "--drain-timeout-s", "3",
                            "--ready-timeout-s", "60"], stderr=subprocess.DEVNULL)
    log_path = os.path.join(tmp, "vigild.log")
    with open(log_path, "w") as log:
        vigild = subprocess.Popen([vigild_bin, "--config", conf], stdout=log,
                                  stderr=subprocess.STDOUT)
        try:
            # In the middle of the burst: rows and files are being written.
            wait_for("300 rows", lambda: vigild.poll() is not None or count_rows(db) >= 300, 180)
            if vigild.poll() is not None:
                fail(f"vigild exited with {vigild.returncode}")
            vigild.send_signal(signal.SIGKILL)
            vigild.wait(timeout=30)
            sim.wait(timeout=120)
        finally:
            for p in (vigild, sim):
                if p.poll() is None:
                    p.kill()
    with open(log_path) as f:
        print(f.read()[-1500:])

    with open(results) as f:
        acked = {int(r["part_id"]): r["verdict"] for r in csv.DictReader(f)
                 if int(r["results"]) > 0}
    if len(acked) < 100 or len(acked) >= parts:
        fail(f"{len(acked)} of {parts} results acknowledged: not a kill in mid-run")

    con = sqlite3.connect(db)
    check = con.execute("PRAGMA integrity_check").fetchone()[0]
    rows = dict(con.execute("SELECT part_id, verdict FROM inspections").fetchall())
    media = con.execute("SELECT path FROM media").fetchall()
    media_dir = con.execute("SELECT value FROM meta WHERE key = 'media_dir'").fetchone()[0]
    con.close()
    if check != "ok":
        fail(f"integrity_check after SIGKILL: {check}")
    missing = sorted(set(acked) - set(rows))
    if missing:
        fail(f"{len(missing)} acknowledged result(s) not in the database: parts {missing[:20]}")
    wrong = [p for p in acked if rows[p] != acked[p]]
    if wrong:
        fail(f"parts {wrong[:20]}: the database's verdict is not the one the PLC got")
    gone = [m[0] for m in media if not os.path.exists(os.path.join(media_dir, m[0]))]
    if gone:
        fail(f"{len(gone)} media rows without their file: {gone[:5]}")
    if not media:
        fail("no media files were written before the kill")
    print(f"PASS crash: {len(acked)} results acknowledged, all in the database; "
          f"{len(rows)} rows ({len(rows) - len(acked)} committed but not yet acknowledged), "
          f"{len(media)} media files, integrity ok")


def disk_full(build, root, tmp):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from test_plc_handshake import PLC, Vigild, config

    logging.basicConfig()
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    sim_bin, _ = binaries(build)
    sim = os.path.join(tmp, "sim")
    subprocess.run([sim_bin, "generate", "--out", sim, "--parts", "120", "--seed", "5",
                    "--split", "e2e"], check=True, stdout=subprocess.DEVNULL)
    port = free_port()
    db = os.path.join(tmp, "vigil.db")
    # A log whose file may not grow: ballast fills it, max_page_count is
    # its size now.
    subprocess.run([os.path.join(build, "tools", "vigilctl"), "--db", db, "upgrade"], check=True)
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE ballast (b BLOB)")
    con.execute("INSERT INTO ballast VALUES (zeroblob(400000))")
    con.commit()
    pages = con.execute("PRAGMA page_count").fetchone()[0]
    con.close()
    os.environ["VIGIL_TEST_DB_MAX_PAGES"] = str(pages)
    conf = config(tmp, sim, os.path.join(root, "models", "synthetic-v1"), port, db,
                  plc_extra="reject_deadline_ms = 20000\n")
    v = Vigild(tmp, build, conf)
    plc = PLC(port)
    wait_for("ready", lambda: v.p.poll() is not None or plc.status()[1] & 1)
    if v.p.poll() is not None:
        fail("vigild exited:\n" + v.text())
    if not plc.status()[1] & ST_DB_OK:
        fail(f"db-ok clear before any write: status {plc.status()}")

    got = []

    def part(i):
        plc.trigger(i + 1, 500 + i)
        r = plc.next_result()
        got.append(r[1] << 16 | r[2])
        plc.ack(r[0])

    # The tables' first pages have room for a few rows; then it is full.
    i = 0
    while plc.status()[1] & ST_DB_OK:
        if i >= 90:
            fail(f"no database fault after {i} parts: status {plc.status()}")
        part(i)
        i += 1
        time.sleep(0.05)
    st = plc.status()
    if st[2] != ERR_DATABASE:
        fail(f"status {st}: want error_code {ERR_DATABASE} (database)")
    before = count_rows(db)
    for _ in range(4):
        part(i)
        i += 1
    if count_rows(db) != before:
        fail(f"{count_rows(db) - before} rows written into a full database?")

    # Space returns.
    con = sqlite3.connect(db, timeout=10)
    con.execute("DROP TABLE ballast")
    con.commit()
    con.close()
    while not plc.status()[1] & ST_DB_OK:
        if i >= 115:
            fail(f"db-ok did not come back: status {plc.status()}")
        part(i)
        i += 1
    if got != [500 + k for k in range(i)]:
        fail(f"results {got}: want one per part, in order")
    plc.close()
    rc = v.stop()
    text = v.text()
    print(text[-2000:])
    if rc != 0:
        fail(f"vigild exited with {rc}")
    con = sqlite3.connect(db)
    events = [r[0] for r in con.execute("SELECT kind FROM events")]
    logged = con.execute("SELECT count(*) FROM inspections").fetchone()[0]
    con.close()
    if "db-ok" not in events:
        fail(f"no db-ok event once space returned: events {events}")
    if logged == 0:
        fail("no rows written once space returned")
    print(f"PASS disk-full: {i} parts, one result each; db-ok bit and error 4 while full; "
          f"{logged} rows once space returned, events {events}")


def main():
    if len(sys.argv) != 4 or sys.argv[3] not in ("crash", "disk-full"):
        print(__doc__)
        sys.exit(2)
    build, root, name = sys.argv[1:]
    if not os.path.exists(os.path.join(root, "models", "synthetic-v1", "manifest.ini")):
        print("SKIP: no model package")
        sys.exit(77)
    with tempfile.TemporaryDirectory(prefix="vigil-db-line-") as tmp:
        (crash if name == "crash" else disk_full)(build, root, tmp)


if __name__ == "__main__":
    main()
