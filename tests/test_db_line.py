#!/usr/bin/python3
"""vigild whole and its log, in the two ways a log fails on a line:

  crash      vigil-sim (the PLC, Modbus TCP loopback) runs parts fast, with
             every part's files kept and a slow disk (each commit 40 ms
             late, VIGIL_TEST_DB_COMMIT_DELAY_MS, test only); vigild is
             SIGKILLed in the middle of the burst. The file must pass PRAGMA integrity_check and hold
             a row, with the verdict the PLC got, for every result the PLC
             acknowledged; every media row's file must exist, whole (it
             decodes, of the size its row says); the next open of the log
             removes temporary and rowless files.
  disk-full  the database may not grow (VIGIL_TEST_DB_MAX_PAGES, test only):
             a pymodbus PLC polling vigild (server role) still gets one
             result per part, the status word's db-ok bit clears and
             error_code says database; under fault_policy = reject_all the
             good parts are still accepted (a log fault judges no part)
             and no stop-line is asked; once space returns (another
             connection frees pages) the bit comes back, rows are written
             again and events "db-fault" and "db-ok" say so.
  db-slow    every commit 2.5 s late, commit_timeout_ms 100, deadline
             1500 ms, fault_policy = stop_line: results go out without
             waiting for their rows, no fail-safe, good parts accepted, no
             stop-line; the fault raised (status, /metrics, events) and
             cleared.

  demo-heatmap  vigild's embedded demo configuration (its ports moved):
             rejected parts with a surface defect keep a defect map of the
             demo package's size, not blank, hottest at the simulator's
             defect, and the review API serves it for the overlay.

  fused-maps a fused package (models/real-fused-v3) keeps both its maps
             with every part, the supervised defect map and the good-only
             anomaly map, each the model's own for that part carried
             onto the frame, and the review API serves both; a good-only
             package keeps its map as an anomaly map.

  export     after a short run with every part's files kept, QA reviews
             parts with vigilctl; vigilctl export writes them as a training
             manifest (the line data set's columns), labelled by the review,
             and vigil-features - what tools/train.py runs - reads every
             exported part from the media directory it names.

usage: test_db_line.py BUILD_DIR SOURCE_ROOT crash|disk-full|db-slow|demo-heatmap|fused-maps|export
"""
import csv
import logging
import os
import re
import sqlite3
import subprocess
import sys
import time
import urllib.request

from linetest import (Vigild, binaries, fail, free_port, line_config, require_model,
                      sequence_camera, workdir)
from plctest import stop_vigild, wait_for

ST_DB_OK = 1 << 6
ST_FAULT = 1 << 2
ST_STOP_LINE = 1 << 7
FL_FAILSAFE = 1 << 2
ACCEPT = 1
ERR_DATABASE = 4
WAIT_S = 60


def count_rows(db):
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        n = con.execute("SELECT count(*) FROM inspections").fetchone()[0]
        con.close()
        return n
    except sqlite3.Error:
        return 0


def run_line(build, root, tmp, parts, rate, extra_db="", kill_at=None, env=None,
             package=None):
    """vigil-sim and vigild on parts synthetic parts; with kill_at, vigild
    is SIGKILLed once the log holds that many rows. Returns (db, results)."""
    sim_bin = binaries(build)[0]
    sim_dir = os.path.join(tmp, "sim")
    subprocess.run([sim_bin, "generate", "--out", sim_dir, "--parts", str(parts),
                    "--seed", "77", "--split", "e2e"], check=True, stdout=subprocess.DEVNULL)
    port = free_port()
    db = os.path.join(tmp, "vigil.db")
    conf = os.path.join(tmp, "vigild.conf")
    with open(conf, "w") as f:
        f.write(line_config(sequence_camera(sim_dir), sim_dir, root, port, db, package=package)
                + "keep_accepted_every = 1\n" + extra_db)
    results = os.path.join(tmp, "results.csv")
    sim = subprocess.Popen([sim_bin, "run", "--parts-dir", sim_dir, "--port", str(port),
                            "--rate", str(rate), "--results", results,
                            "--drain-timeout-s", "3" if kill_at else "30",
                            "--ready-timeout-s", "60"], stderr=subprocess.DEVNULL)
    vigild = Vigild(build, conf, os.path.join(tmp, "vigild.log"), env=env)
    try:
        if kill_at:
            # In the middle of the burst: rows and files are being written.
            vigild.wait_until(f"{kill_at} rows", lambda: count_rows(db) >= kill_at, 180)
            vigild.kill()
            sim.wait(timeout=120)
        else:
            if sim.wait(timeout=240) != 0:
                fail("vigil-sim: results lost or mislogged")
            rc = vigild.stop()
            if rc != 0:
                fail(f"vigild exited with {rc}")
    finally:
        vigild.reap()
        if sim.poll() is None:
            sim.kill()
    print(vigild.tail(1500))
    return db, results


def crash(build, root, tmp):
    parts = 1500
    # A slow disk (test only: every commit 40 ms late) opens the window in
    # which a result could reach the PLC before its row is in the file.
    db, results = run_line(build, root, tmp, parts, 3000, kill_at=300,
                           extra_db="commit_timeout_ms = 5000\n",
                           env={"VIGIL_TEST_DB_COMMIT_DELAY_MS": "40"})

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
    if not media:
        fail("no media files were written before the kill")
    check_media(db, media_dir)
    left = leftovers(db, media_dir)

    # What the next start sweeps (vigilctl opens the log as vigild does):
    # the crash's own leftovers, and planted ones - a temporary file and a
    # file without a row - in the folder written last.
    day = max((d for d in os.listdir(media_dir) if d.isdigit()),
              key=lambda d: os.stat(os.path.join(media_dir, d)).st_mtime)
    for name in ("999999-1-top.tmp.png", "999999-1-vibration.tmp.wav", "999998-1-top.png"):
        with open(os.path.join(media_dir, day, name), "wb") as f:
            f.write(b"\x89PNG half")
    subprocess.run([os.path.join(build, "tools", "vigilctl"), "--db", db, "upgrade"],
                   check=True, capture_output=True)
    after = leftovers(db, media_dir)
    if after:
        fail(f"left after the next open: {after[:5]}")
    check_media(db, media_dir)
    print(f"PASS crash: {len(acked)} results acknowledged, all in the database; "
          f"{len(rows)} rows ({len(rows) - len(acked)} committed but not yet acknowledged), "
          f"{len(media)} media files whole, integrity ok; the kill left {len(left)} "
          f"temporary or rowless file(s), swept with 3 planted ones at the next open")


def check_media(db, media_dir):
    """Every media row's file is there, of the size the row says, and
    decodes: 8-bit PNG of the camera's or the map's size, float WAV."""
    import cv2
    con = sqlite3.connect(db)
    media = con.execute("SELECT kind, path, bytes FROM media").fetchall()
    con.close()
    for kind, path, size in media:
        full = os.path.join(media_dir, path)
        if not os.path.exists(full):
            fail(f"media row {path}: no file")
        if os.path.getsize(full) != size:
            fail(f"{path}: {os.path.getsize(full)} bytes, the row says {size}")
        if kind == "vibration":
            with open(full, "rb") as f:
                head = f.read(44)
            if head[:4] != b"RIFF" or head[8:12] != b"WAVE" or size != 44 + 2048 * 4:
                fail(f"{path}: not a whole WAV of 2048 samples")
            continue
        img = cv2.imread(full, cv2.IMREAD_UNCHANGED)
        want = (192, 192) if kind == "image" else None
        if img is None or img.ndim != 2 or (want and img.shape != want) or img.size == 0:
            fail(f"{path}: does not decode as an 8-bit gray PNG of {want or 'map'} size")


def leftovers(db, media_dir):
    """Files under the media directory that no media row names."""
    con = sqlite3.connect(db)
    named = {r[0] for r in con.execute("SELECT path FROM media")}
    con.close()
    found = []
    for day in os.listdir(media_dir):
        for name in os.listdir(os.path.join(media_dir, day)):
            if os.path.join(day, name) not in named:
                found.append(os.path.join(day, name))
    return found


def labels(sim):
    """defect (0/1) of each simulated part, in order."""
    with open(os.path.join(sim, "parts.csv")) as f:
        return [int(r["defect"]) for r in csv.DictReader(f)]


def check_fault_verdicts(name, results, truth, want_good):
    """Under either fault policy a database fault judges no part: no
    result during it is a fail-safe, and the good parts are accepted."""
    if any(r["flags"] & FL_FAILSAFE for r in results):
        fail(f"{name}: fail-safe verdicts during a database fault: "
             f"{[(r['i'], r['flags']) for r in results if r['flags'] & FL_FAILSAFE]}")
    good = [r for r in results if truth[r["i"]] == 0]
    if len(good) < want_good:
        fail(f"{name}: only {len(good)} good parts during the fault")
    wrong = [r["i"] for r in good if r["verdict"] != ACCEPT]
    if wrong:
        fail(f"{name}: good parts {wrong} not accepted during a database fault")
    return len(good)


def fault_line(build, root, tmp, parts, seed):
    """vigild in the server role on generated parts; the PLC (pymodbus
    master) runs one part at a time."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from plctest import MasterPLC
    from test_plc_handshake import config

    logging.basicConfig()
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    sim_bin, _ = binaries(build)
    sim = os.path.join(tmp, "sim")
    subprocess.run([sim_bin, "generate", "--out", sim, "--parts", str(parts), "--seed",
                    str(seed), "--split", "e2e"], check=True, stdout=subprocess.DEVNULL)
    env = {"tmp": tmp, "sim": sim, "root": root, "port": free_port(),
           "db": os.path.join(tmp, "vigil.db"), "build": build}
    return env, labels(sim), Vigild, MasterPLC, config


def run_part(plc, i, out):
    t0 = time.monotonic()
    plc.trigger(i + 1, 500 + i)
    r = plc.next_result()
    plc.ack(r[0])
    out.append({"i": i, "part": r[1] << 16 | r[2], "verdict": r[4], "flags": r[7],
                "s": time.monotonic() - t0})


def disk_full(build, root, tmp):
    env, truth, Vigild, MasterPLC, config = fault_line(build, root, tmp, 120, 5)
    db = env["db"]
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
    # A deadline the commit wait would overrun if it blocked on the disk.
    # No recent ring: its media rows would move the part at which the file
    # fills, and with it which parts (the model's own marginals among
    # them) fall in the fault.
    conf = config(env, deadline_ms=3000, plc_extra="fault_policy = reject_all\n",
                  tail="recent_images_mb = 0\n")
    v = Vigild(build, conf, os.path.join(tmp, "vigild.log"))
    plc = MasterPLC(env["port"])
    v.wait_until("ready", lambda: plc.status()[1] & 1, WAIT_S, 0.01)
    if not plc.status()[1] & ST_DB_OK:
        fail(f"db-ok clear before any write: status {plc.status()}")

    got, during = [], []

    # The tables' first pages have room for a few rows; then it is full.
    i = 0
    while plc.status()[1] & ST_DB_OK:
        if i >= 90:
            fail(f"no database fault after {i} parts: status {plc.status()}")
        run_part(plc, i, got)
        i += 1
        time.sleep(0.05)
    st = plc.status()
    if st[2] != ERR_DATABASE or not st[1] & ST_FAULT or st[1] & ST_STOP_LINE:
        fail(f"status {st}: want error_code {ERR_DATABASE} (database), the fault bit, "
             "and no stop-line")
    before = count_rows(db)
    for _ in range(12):
        run_part(plc, i, during)
        i += 1
    if plc.status()[1] & ST_DB_OK:
        fail(f"db-ok came back while the disk is still full: status {plc.status()}")
    if count_rows(db) != before:
        fail(f"{count_rows(db) - before} rows written into a full database?")
    good = check_fault_verdicts("disk-full", during, truth, 4)
    got += during

    # Space returns.
    con = sqlite3.connect(db, timeout=10)
    con.execute("DROP TABLE ballast")
    con.commit()
    con.close()
    while not plc.status()[1] & ST_DB_OK:
        if i >= 115:
            fail(f"db-ok did not come back: status {plc.status()}")
        run_part(plc, i, got)
        i += 1
    if [r["part"] for r in got] != [500 + k for k in range(i)]:
        fail(f"results {[r['part'] for r in got]}: want one per part, in order")
    stop_vigild(v, plc)
    con = sqlite3.connect(db)
    events = [r[0] for r in con.execute("SELECT kind FROM events")]
    logged = con.execute("SELECT count(*) FROM inspections").fetchone()[0]
    con.close()
    if "db-ok" not in events or "db-fault" not in events:
        fail(f"no db-fault and db-ok events once space returned: events {events}")
    if logged == 0:
        fail("no rows written once space returned")
    print(f"PASS disk-full: {i} parts, one result each; db-ok bit and error 4 while full, "
          f"no stop-line; under reject_all no fail-safe and all {good} good parts accepted "
          f"during the fault (trigger to result max {max(r['s'] for r in during) * 1000:.0f} "
          f"ms); {logged} rows once space returned, events {events}")


def db_slow(build, root, tmp):
    """Each commit takes 2.5 s (VIGIL_TEST_DB_COMMIT_DELAY_MS, test only),
    commit_timeout_ms is 100, the deadline 1500 ms: a result that waited
    for its row would be a fail-safe reject. Under fault_policy = stop_line
    (disk-full runs reject_all) it must go out after at most
    commit_timeout_ms, judged by the model, with the fault raised (status,
    /metrics vigil_db_ok, events) but no stop-line; once the writer catches
    up the fault clears, and every row is in the file."""
    env, truth, Vigild, MasterPLC, config = fault_line(build, root, tmp, 40, 6)
    os.environ["VIGIL_TEST_DB_COMMIT_DELAY_MS"] = "2500"
    conf = config(env, deadline_ms=1500, plc_extra="fault_policy = stop_line\n",
                  tail="\n[review]\nlisten = 127.0.0.1\nport = 0\n")
    # config() gives the handshake tests a long commit wait; this scenario
    # is about the short one (a key may be given only once).
    with open(conf) as f:
        text = f.read()
    with open(conf, "w") as f:
        f.write(re.sub(r"(?m)^commit_timeout_ms = \d+$", "commit_timeout_ms = 100", text))
    v = Vigild(build, conf, os.path.join(tmp, "vigild.log"))
    plc = MasterPLC(env["port"])
    v.wait_until("ready", lambda: plc.status()[1] & 1, WAIT_S, 0.01)
    url = v.review_url()

    def db_ok_metric():
        with urllib.request.urlopen(url + "metrics", timeout=10) as r:
            line = [x for x in r.read().decode().splitlines() if x.startswith("vigil_db_ok ")]
        return float(line[0].split()[1]) if line else None

    if db_ok_metric() != 1:
        fail(f"vigil_db_ok {db_ok_metric()} before any part")
    got, faulted = [], 0
    for i in range(30):
        run_part(plc, i, got)
        faulted += not plc.status()[1] & ST_DB_OK
    if not faulted:
        fail("the database fault was never raised on a 2.5 s commit")
    st = plc.status()
    metric_in_fault = db_ok_metric()
    if st[1] & ST_DB_OK or st[2] != ERR_DATABASE or st[1] & ST_STOP_LINE or metric_in_fault != 0:
        fail(f"status {st}, vigil_db_ok {metric_in_fault}: want db-ok clear, error 4, no "
             "stop-line and the metric 0 while the writer is behind")
    good = check_fault_verdicts("db-slow", got, truth, 10)
    # The writer catches up: the fault clears by itself.
    wait_for("db-ok back", lambda: plc.status()[1] & ST_DB_OK, WAIT_S)
    if db_ok_metric() != 1:
        fail(f"vigil_db_ok {db_ok_metric()} once the writer caught up")
    stop_vigild(v, plc)
    con = sqlite3.connect(env["db"])
    events = [r[0] for r in con.execute("SELECT kind FROM events ORDER BY id")]
    logged = con.execute("SELECT count(*) FROM inspections").fetchone()[0]
    con.close()
    if logged != 30:
        fail(f"{logged} rows, want 30")
    if "db-fault" not in events or "db-ok" not in events[events.index("db-fault"):]:
        fail(f"events {events}: want db-fault, then db-ok")
    print(f"PASS db-slow: 30 parts, commits 2.5 s late, stop_line; status fault on "
          f"{faulted}, no stop-line, no fail-safe, all {good} good parts accepted; trigger to result max "
          f"{max(r['s'] for r in got) * 1000:.0f} ms; 30 rows, events {events}")


def demo_heatmap(build, root, tmp):
    """The demo's own configuration (vigild's embedded default, as `make
    demo` runs it; only the two ports moved so that it runs beside other
    tests) on the demo's kind of parts: every rejected part with a surface
    defect keeps a defect map of the package's size, not blank, hot where
    the simulator drew the defect, and the review API serves it for the
    overlay."""
    import cv2
    import json
    sim_bin = binaries(build)[0]
    conf_text = Vigild.once(build, args=["--print-default-config"], check=True).stdout
    pkg = re.search(r"(?m)^package = (.*)$", conf_text).group(1)
    with open(os.path.join(pkg, "manifest.ini")) as f:
        manifest = f.read()
    m = re.search(r"(?m)^heatmap_width=(\d+)\n^heatmap_height=(\d+)", manifest)
    if not m:
        fail(f"the demo's package {pkg} has no defect map (heatmap_output)")
    map_w, map_h = int(m.group(1)), int(m.group(2))
    port = free_port()
    conf_text = re.sub(r"(?m)^port = 1502$", f"port = {port}", conf_text)
    conf_text = re.sub(r"(?m)^port = 8080$", "port = 0", conf_text)
    conf = os.path.join(tmp, "demo.conf")
    with open(conf, "w") as f:
        f.write(conf_text)
    parts = 60
    sim = os.path.join(tmp, "sim")
    subprocess.run([sim_bin, "generate", "--out", sim, "--parts", str(parts), "--seed",
                    "20261129", "--split", "demo"], check=True, stdout=subprocess.DEVNULL)
    runner = subprocess.Popen([sim_bin, "run", "--parts-dir", sim, "--port", str(port),
                               "--rate", "600", "--results", os.path.join(tmp, "results.csv"),
                               "--ready-timeout-s", "60"], stderr=subprocess.DEVNULL)
    # In tmp: the demo configuration's relative paths land there.
    vigild = Vigild(build, conf, os.path.join(tmp, "vigild.log"), cwd=tmp)
    try:
        url = vigild.review_url()
        if runner.wait(timeout=240) != 0:
            fail("vigil-sim: results lost or mislogged")
        db = os.path.join(tmp, "vigil.db")
        con = sqlite3.connect(db)
        wait_for("the media rows", lambda: con.execute(
            "SELECT count(*) FROM inspections WHERE verdict = 'reject' AND id NOT IN"
            " (SELECT inspection_id FROM media WHERE kind = 'heatmap')").fetchone()[0] == 0,
            60)
        rejects = con.execute(
            "SELECT i.id, i.part_id, m.id, m.path FROM inspections i JOIN media m ON"
            " m.inspection_id = i.id AND m.kind = 'heatmap' WHERE i.verdict = 'reject'"
            " AND i.defect_class IN ('surface', 'surface+vibration')").fetchall()
        media_dir = con.execute("SELECT value FROM meta WHERE key = 'media_dir'"
                                ).fetchone()[0]
        con.close()
        if len(rejects) < 5:
            fail(f"{len(rejects)} surface rejects with a defect map in {parts} parts")
        on_defect = 0
        for _, part, _, path in rejects:
            heat = cv2.imread(os.path.join(media_dir, path), cv2.IMREAD_UNCHANGED)
            if heat is None or heat.shape != (map_h, map_w):
                fail(f"part {part}: heatmap {path} is not {map_w}x{map_h}")
            if heat.max() < 128:
                fail(f"part {part}: a surface reject whose defect map peaks at "
                     f"{heat.max() / 255:.2f}: blank for the overlay")
            mask = cv2.imread(os.path.join(sim, "masks", f"part-{part:05d}.png"),
                              cv2.IMREAD_GRAYSCALE)
            cells = cv2.resize((mask > 0).astype("float32"), (map_w, map_h),
                               interpolation=cv2.INTER_AREA) > 0
            y, x = divmod(int(heat.argmax()), map_w)
            on_defect += bool(cells[max(y - 1, 0):y + 2, max(x - 1, 0):x + 2].any())
        if on_defect < 0.8 * len(rejects):
            fail(f"the hottest cell is near the defect in {on_defect} of {len(rejects)} "
                 "surface rejects")
        # What the review page's overlay loads.
        _, part, mid, path = rejects[0]
        with urllib.request.urlopen(url + f"api/parts/{part}", timeout=20) as r:
            listed = [x for x in json.load(r)["media"] if x["kind"] == "heatmap"]
        if not listed:
            fail(f"part {part}: the review API lists no heatmap")
        with urllib.request.urlopen(url + listed[0]["url"].lstrip("/"),
                                    timeout=20) as r:
            body = r.read()
        with open(os.path.join(media_dir, path), "rb") as f:
            if body != f.read():
                fail(f"part {part}: the review API serves other bytes than the heatmap")
    finally:
        vigild.stop()
        if runner.poll() is None:
            runner.kill()
    print(f"PASS demo-heatmap: {os.path.basename(pkg)}, {len(rejects)} surface rejects in "
          f"{parts} parts, each with a {map_w}x{map_h} defect map that is not blank; the "
          f"hottest cell next to the simulator's defect in {on_defect}; served for the overlay")


def kept_maps(build, root, tmp, pkg, parts, evals):
    """vigild with pkg on parts simulated parts, every part's files kept:
    (the maps each part keeps, kind -> its pixels, the log's path, the
    media folder). Each kept map must be the C runtime's own for that part
    (vigil-eval's flag in evals, by the media kind it is kept as), to one
    grey level, carried back onto the frame: pkg letterboxes the square
    simulated frames into its wider input, so a kept map is the model's
    cells over the frame, the border columns cut away."""
    import cv2
    import numpy as np
    from linetest import read_manifest, read_maps
    work = os.path.join(tmp, os.path.basename(pkg))
    os.makedirs(work)
    db, _ = run_line(build, root, work, parts, 50, package=pkg)
    sim = os.path.join(work, "sim")
    man = read_manifest(pkg)
    in_w, in_h = int(man["input_width"]), int(man["input_height"])
    map_w = int(man["heatmap_width"])
    frame = cv2.imread(os.path.join(sim, "images", "part-00000.png"), cv2.IMREAD_GRAYSCALE)
    if frame.shape[0] != frame.shape[1] or in_w <= in_h or (in_w - in_h) % 8:
        fail(f"the check assumes square frames ({frame.shape}) in a wide input ({in_w}x{in_h}) "
             "whose border is whole cells")
    c0 = (in_w - in_h) // 2 * map_w // in_w
    want = {}
    for kind, flag in evals.items():
        out = os.path.join(work, kind + ".maps")
        subprocess.run([os.path.join(build, "tools", "vigil-eval"), "--manifest",
                        os.path.join(sim, "parts.csv"), "--model", pkg, "--json",
                        os.path.join(work, "e.json"), flag, out], check=True,
                       stderr=subprocess.DEVNULL)
        want[kind] = read_maps(out)[:, :, c0:map_w - c0]
    con = sqlite3.connect(db)
    rows = con.execute("SELECT i.part_id, m.kind, m.path FROM inspections i JOIN media m"
                       " ON m.inspection_id = i.id WHERE m.kind IN ('heatmap', 'anomaly')"
                       ).fetchall()
    media_dir = con.execute("SELECT value FROM meta WHERE key = 'media_dir'").fetchone()[0]
    con.close()
    kept = {}
    for part, kind, path in rows:
        got = cv2.imread(os.path.join(media_dir, path), cv2.IMREAD_UNCHANGED)
        ref = np.rint(np.clip(want[kind][part], 0, 1) * 255) if kind in want else None
        if got is None or ref is None or got.shape != ref.shape or \
                np.abs(got.astype(float) - ref).max() > 1:
            fail(f"{os.path.basename(pkg)}, part {part}: the kept {kind} {path} is not the "
                 f"model's {evals.get(kind, 'map')}")
        kept.setdefault(part, {})[kind] = (got, path)
    # keep_accepted_every = 1: every part keeps its files.
    if len(kept) != parts or any(set(k) != set(evals) for k in kept.values()):
        fail(f"{os.path.basename(pkg)}: {len(kept)} of {parts} parts keep maps, want "
             f"{sorted(evals)}: { {p: sorted(k) for p, k in kept.items()} }")
    return kept, os.path.join(work, "vigild.conf"), media_dir


def fused_maps(build, root, tmp):
    """A fused package (models/real-fused-v3: a supervised model joined with
    a good-only one, tools/fuse.py) gives two maps a part: vigild keeps
    both with every part, the defect map and the anomaly map, each the
    model's own (kept_maps), the two not the same; the review API lists and
    serves both. A good-only package (models/good-only-v1) keeps its one
    map as an anomaly map, so that the review page names it so."""
    import json
    parts = 24
    kept, conf, media_dir = kept_maps(build, root, tmp,
                                      os.path.join(root, "models", "real-fused-v3"), parts,
                                      {"heatmap": "--heatmaps", "anomaly": "--anomaly-maps"})
    differ = sum(bool((k["heatmap"][0] != k["anomaly"][0]).any()) for k in kept.values())
    if differ < parts // 2:
        fail(f"the defect and anomaly maps are the same picture on {parts - differ} parts")
    kept_maps(build, root, tmp, os.path.join(root, "models", "good-only-v1"), 8,
              {"anomaly": "--heatmaps"})
    with open(conf, "a") as f:
        f.write("\n[review]\nlisten = 127.0.0.1\nport = 0\n")
    vigild = Vigild(build, conf, os.path.join(tmp, "review.log"), args=["--review-only"])
    try:
        url = vigild.review_url()
        part = sorted(kept)[0]
        with urllib.request.urlopen(url + f"api/parts/{part}", timeout=20) as r:
            listed = {x["kind"]: x for x in json.load(r)["media"]}
        for kind in ("heatmap", "anomaly"):
            if kind not in listed:
                fail(f"part {part}: the review API lists no {kind}: {sorted(listed)}")
            with urllib.request.urlopen(url + listed[kind]["url"].lstrip("/"), timeout=20) as r:
                body = r.read()
            with open(os.path.join(media_dir, kept[part][kind][1]), "rb") as f:
                if body != f.read():
                    fail(f"part {part}: the review API serves other bytes than the {kind}")
    finally:
        vigild.stop()
    print(f"PASS fused-maps: {parts} parts, each with its defect map and anomaly map as the "
          f"model gave them over the frame ({differ} with two different pictures), both "
          "served; a good-only package's map kept as an anomaly map")


def export(build, root, tmp):
    db, _ = run_line(build, root, tmp, 30, 1200)
    ctl = os.path.join(build, "tools", "vigilctl")
    con = sqlite3.connect(db)
    rows = con.execute("SELECT part_id, verdict, defect_class FROM inspections ORDER BY id"
                       ).fetchall()
    con.close()
    # QA: overrule two rejects to accept and two accepts to reject, confirm
    # four more; the rest stay unreviewed and are not exported.
    rejects = [r[0] for r in rows if r[1] == "reject"][:2]
    accepts = [r[0] for r in rows if r[1] == "accept"][:2]
    confirmed = [r[0] for r in rows if r[0] not in rejects + accepts][:4]
    if len(rejects) < 2 or len(accepts) < 2:
        fail(f"the run lacks rejects or accepts: {rows}")
    want = {}
    for p in rejects:
        subprocess.run([ctl, "--db", db, "review", "--part", str(p), "--overrule", "accept"],
                       check=True)
        want[p] = 0
    for p in accepts:
        subprocess.run([ctl, "--db", db, "review", "--part", str(p), "--overrule", "reject"],
                       check=True)
        want[p] = 1
    verdict = {r[0]: r[1] for r in rows}
    for p in confirmed:
        subprocess.run([ctl, "--db", db, "review", "--part", str(p), "--confirm"], check=True)
        want[p] = 0 if verdict[p] == "accept" else 1

    manifest = os.path.join(tmp, "reviewed.csv")
    p = subprocess.run([ctl, "--db", db, "export", "--out", manifest], capture_output=True,
                       text=True)
    if p.returncode != 0:
        fail(f"export: {p.stderr}")
    print(p.stderr.strip())
    media_dir = p.stderr.rsplit("data root ", 1)[1].split(" ")[0]
    with open(manifest) as f:
        header = f.readline().strip()
        f.seek(0)
        got = list(csv.DictReader(f))
    if header != "part_id,split,image,mask,image_class,vibration,vib_start,vib_len,vib_class,defect":
        fail(f"manifest header {header}")
    if len(got) != len(want):
        fail(f"{len(got)} parts exported, want the {len(want)} reviewed")
    for r in got:
        part = int(r["part_id"].split("-")[1])
        if int(r["defect"]) != want[part]:
            fail(f"part {part}: defect {r['defect']}, but QA said {want[part]}")
        if (r["image_class"] != "free" or r["vib_class"] != "normal") != bool(int(r["defect"])):
            fail(f"part {part}: classes {r['image_class']}/{r['vib_class']} for defect {r['defect']}")
        if r["mask"] != "" or r["split"] not in ("train", "val") or r["vib_len"] != "2048":
            fail(f"row {r}")
        for col in ("image", "vibration"):
            if os.path.isabs(r[col]) or not os.path.exists(os.path.join(media_dir, r[col])):
                fail(f"{col} {r[col]} is not a file under {media_dir}")
    # What tools/train.py runs on a manifest: every part reads.
    feats = os.path.join(tmp, "reviewed.vgf")
    subprocess.run([os.path.join(build, "tools", "vigil-features"), "--manifest", manifest,
                    "--data-root", media_dir, "--width", "64", "--height", "64",
                    "--window", "2048", "--rate", "12000", "--out", feats,
                    "--masks-out", feats + ".masks"], check=True)
    with open(feats, "rb") as f:
        head = f.read(8)
    if head[:4] != b"VGF1" or int.from_bytes(head[4:8], "little") != len(want):
        fail(f"vigil-features read {head!r}, want {len(want)} parts")
    print(f"PASS export: {len(want)} reviewed parts, labels from the reviews, "
          f"read by vigil-features from {media_dir}")


def main():
    scenarios = {"crash": crash, "disk-full": disk_full, "db-slow": db_slow,
                 "demo-heatmap": demo_heatmap, "fused-maps": fused_maps, "export": export}
    if len(sys.argv) != 4 or sys.argv[3] not in scenarios:
        print(__doc__)
        sys.exit(2)
    build, root, name = sys.argv[1:]
    require_model(root)
    with workdir("vigil-db-line-") as tmp:
        scenarios[name](build, root, tmp)


if __name__ == "__main__":
    main()
