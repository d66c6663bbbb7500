#!/usr/bin/python3
"""The log's file deleted or moved while vigild writes it (db/db.h,
db_check_path; docs/operations.md, "The log file deleted or moved"):
vigild whole on the simulated line, vigil-sim as the PLC. Each step waits
for what vigild wrote (rows counted in the file, a line in its log), never
for a time, so that a busy machine passes as an idle one does.

  deleted  once 60 rows are in vigil.db, rm vigil.db vigil.db-wal
           vigil.db-shm; the line goes on. vigild says so (a warning naming
           the path, what it did), vigil-sim's own end check finds a row
           for each part in the file at the path, and after a clean stop
           vigil.db holds every part PLC results name exactly once, the
           event db-deleted, vigil_db_file_moves_total 1 on /metrics.
  moved    once 60 rows are in vigil.db, mv vigil.db vigil-old.db (log
           rotation). Every part is in vigil-old.db or in the fresh
           vigil.db; a part in both only as a deadline fail-safe row in the
           moved file whose model verdict came after the switch (written as
           the part's row in the fresh log). vigil-old.db stands alone
           (integrity_check, no -wal beside it) with a last db-moved event
           naming the path, the fresh log a db-moved event naming
           vigil-old.db.
  plant    both, one after the other, with [plant] forwarding to a
           PostgreSQL server the test starts (tests/pgtest.py): the
           forwarder follows the file to the written-back log and to the
           fresh one, and after the stop the central inspections are the
           moved file's rows and then the fresh log's, column by column,
           each once, and the fresh log says plant-new-log.

usage: test_db_moved.py BUILD_DIR SOURCE_ROOT deleted|moved|plant
"""
import contextlib
import os
import re
import sqlite3
import sys

from linetest import (Line, fail, log_events as events, log_rows, metric, plc_results,
                      require_model, workdir)

PARTS = 300
RATE = 1200             # parts/min: 15 s of parts, the file gone after about 3 s
BEFORE = 60             # rows in the file before it goes
DEADLINE_FLAG = 1 << 7  # VIGIL_FLAG_DEADLINE (core/part.h)
REVIEW = "\n[review]\nlisten = 127.0.0.1\nport = 0\n"


def rows_in(db):
    """Inspections in the file at db, 0 while there is no readable log
    there (vigild has not followed yet)."""
    try:
        return log_rows(db, "SELECT count(*) FROM inspections")[0][0]
    except sqlite3.Error:
        return 0


def parts_of(db):
    """{part_id: flags} of a log, failing on a part logged twice in it."""
    got = {}
    for part, flags in log_rows(db, "SELECT part_id, flags FROM inspections ORDER BY id"):
        if part in got:
            fail(f"{db}: part {part} logged twice")
        got[part] = flags
    return got


def intact(db):
    (res,) = log_rows(db, "PRAGMA integrity_check")[0]
    if res != "ok":
        fail(f"{db}: integrity_check says {res}")


def start(build, root, tmp, seed, extra="", sim_db=True):
    line = Line(build, root, tmp, PARTS, seed=seed, split="e2e", rate=RATE,
                extra_conf=extra + REVIEW, sim_db=sim_db).start()
    url = line.review_url()
    line.vigild.wait_until(f"{BEFORE} rows in the log", lambda: rows_in(line.db) >= BEFORE,
                           timeout=120)
    return line, url


def still_running(line, what):
    if line.sim.poll() is not None:
        fail(f"the line finished before {what}: the test needs more parts")


def delete_log(line, url, moves):
    """rm vigil.db*, as an operator would, while parts flow; back once
    vigild says it wrote the log back (moves: the count expected then)."""
    still_running(line, "the log was deleted")
    for sfx in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(line.db + sfx)
    if not line.vigild.wait_log(r"was deleted while vigild wrote it: the whole log .* was "
                                r"written back to " + re.escape(line.db), timeout=60):
        fail("no warning that the deleted log was written back")
    line.vigild.wait_until("the log back at its path", lambda: rows_in(line.db) > 0)
    followed(line, url, moves)


def followed(line, url, moves):
    """/metrics counts the move (counted right after the warning)."""
    line.vigild.wait_until(f"vigil_db_file_moves_total {moves}",
                           lambda: metric(url, "vigil_db_file_moves_total") == moves)
    if metric(url, "vigil_db_file_away") != 0:
        fail("/metrics says the log is still away from its path")


def move_log(line, url, moved, moves):
    """mv vigil.db vigil-old.db (log rotation) while parts flow."""
    still_running(line, "the log was moved")
    os.rename(line.db, moved)
    if not line.vigild.wait_log(r"was renamed or moved while vigild wrote it: the rows until "
                                r"now are in " + re.escape(moved), timeout=60):
        fail("no warning that the moved log was followed by a fresh one")
    followed(line, url, moves)


def finish(line):
    """The run to its end and a clean stop; the PLC's parts."""
    if line.wait_sim(timeout=600) != 0:
        fail("vigil-sim reports a part without its one result (or, checking the log, "
             "without its row at the path)")
    if line.stop() != 0:
        fail("vigild did not stop cleanly")
    return {int(r["part_id"]) for r in plc_results(os.path.join(line.tmp, "results.csv"),
                                                  PARTS)}


def split_parts(plc, moved, fresh):
    """Every part in the moved file or the fresh log; in both only as a
    deadline fail-safe row before the switch and the part's late row
    after it."""
    before, after = parts_of(moved), parts_of(fresh)
    missing = plc - before.keys() - after.keys()
    if missing:
        fail(f"{len(missing)} parts in neither file: {sorted(missing)[:10]}")
    for part in before.keys() & after.keys():
        if not before[part] & DEADLINE_FLAG:
            fail(f"part {part} is in both files, not as a deadline fail-safe row")
    if len(before) < BEFORE or not after:
        fail(f"{len(before)} rows in the moved file, {len(after)} in the fresh log")
    return before, after


def no_wal(db, moved):
    """After the stop, before the test opens either file: the moved file
    holds its rows itself, not in a -wal under any name."""
    for f in (moved + "-wal", db + "-wal"):
        if os.path.exists(f):
            fail(f"{f} left after the stop")


def check_moved_files(db, moved):
    intact(moved)
    intact(db)
    if not any(db in m for m in events(moved, "db-moved")):
        fail(f"the moved file's db-moved events {events(moved, 'db-moved')} do not name {db}")
    if not any(moved in m for m in events(db, "db-moved")):
        fail(f"the fresh log's db-moved events {events(db, 'db-moved')} do not name {moved}")


def scenario_deleted(build, root, tmp):
    line, url = start(build, root, tmp, seed=71)
    delete_log(line, url, 1)
    plc = finish(line)
    got = parts_of(line.db)
    if set(got) != plc:
        fail(f"parts missing from vigil.db: {sorted(plc - set(got))[:10]}")
    if len(events(line.db, "db-deleted")) != 1:
        fail(f"db-deleted events: {events(line.db, 'db-deleted')}")
    intact(line.db)
    print(f"PASS deleted: all {len(plc)} parts in the file at the path, once each")


def scenario_moved(build, root, tmp):
    line, url = start(build, root, tmp, seed=72, sim_db=False)
    moved = os.path.join(tmp, "vigil-old.db")
    move_log(line, url, moved, 1)
    plc = finish(line)
    no_wal(line.db, moved)
    before, after = split_parts(plc, moved, line.db)
    check_moved_files(line.db, moved)
    print(f"PASS moved: {len(before)} parts in the moved file, {len(after)} in the fresh log, "
          f"none in neither")


def scenario_plant(build, root, tmp):
    import pgtest
    from test_plant import (CENTRAL_INSPECTIONS, LOCAL_INSPECTIONS, PASSWORD, ROLE, DBNAME,
                            plant_section, same_rows)

    with contextlib.closing(pgtest.Postgres()) as pg:
        pg.start()
        conninfo = pg.create_role(ROLE, PASSWORD, DBNAME)
        ids = ("plant-m", "line-1", "st-m")
        line, url = start(build, root, tmp, seed=73, sim_db=False,
                          extra=plant_section(conninfo, *ids).replace(REVIEW, ""))
        delete_log(line, url, 1)
        line.vigild.wait_until(f"{2 * BEFORE} rows in the written-back log",
                               lambda: rows_in(line.db) >= 2 * BEFORE, timeout=120)
        moved = os.path.join(tmp, "vigil-old.db")
        move_log(line, url, moved, 2)
        plc = finish(line)
        no_wal(line.db, moved)
        split_parts(plc, moved, line.db)
        check_moved_files(line.db, moved)
        text = line.vigild.text()
        for said in ("was written back after a delete; forwarding goes on in it",
                     "every row of the moved log went up; forwarding goes on in the fresh log"):
            if said not in text:
                fail(f"the forwarder did not say: {said}")
        if len(events(line.db, "plant-new-log")) != 1:
            fail("the fresh log has no plant-new-log event")
        # The fresh log's rows continue after the moved file's centrally.
        (base,) = log_rows(line.db, "SELECT CAST(value AS INTEGER) FROM meta"
                                    " WHERE key = 'plant_base_inspections'")[0]
        local = log_rows(moved, LOCAL_INSPECTIONS) + [
            (r[0] + base,) + tuple(r[1:]) for r in log_rows(line.db, LOCAL_INSPECTIONS)]
        same_rows("inspections", local, pg.query(DBNAME, CENTRAL_INSPECTIONS, ids))
        print(f"PASS plant: {len(local)} inspections forwarded once each, from the written-back "
              "log, the moved file and the fresh log")


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    build, root, scenario = sys.argv[1:]
    require_model(root)
    with workdir(f"vigil-db-moved-{scenario}-") as tmp:
        {"deleted": scenario_deleted, "moved": scenario_moved,
         "plant": scenario_plant}[scenario](build, root, tmp)


if __name__ == "__main__":
    main()
