#!/usr/bin/python3
"""vigild whole with pymodbus as the line PLC, in either role, over loopback.

  client role: the PLC is a pymodbus TCP server; vigild polls and writes it.
  server role: vigild is the Modbus server; the PLC is a pymodbus client.

The PLC follows docs/plc.md: it raises a trigger (part id and counter in one
write), waits until vigild reports it in trigger_seen, takes every result
whose counter changes and acknowledges it. Midway the link is cut (client
role: the PLC's server goes away for a second; server role: the PLC drops its
connection) with parts in flight. Every part id must get exactly one result,
in trigger order, and one database row with the same verdict.
--ack-delay-ms makes a PLC that acknowledges late; --bench runs without the
link cut and prints the median trigger-to-result-valid latency on a BENCH
line (bench/plc-latency.sh runs it in both roles).

usage: test_plc_line.py BUILD_DIR SOURCE_ROOT client|server [--parts N] [--rate PER_S]
"""
import argparse
import os
import sqlite3
import statistics
import time

from linetest import (Vigild, camera_section, fail, free_port, generate_parts, line_config,
                      quick_parts, require_model, workdir)
from plctest import (RES, RES_REGS, STAT, STAT_REGS, ST_READY, TRIG, VERDICT_NAMES, MasterPLC,
                     ServerPLC, mbpoll_read, part_id, quiet_pymodbus, start_vigild, stop_vigild)


def check_mbpoll(port, last_part):
    """mbpoll, a third Modbus master, reads the status and result blocks."""
    st, out = mbpoll_read(port, STAT, STAT_REGS)
    if st is None:
        fail(f"mbpoll: {out}")
    res, out = mbpoll_read(port, RES, RES_REGS)
    if res is None:
        fail(f"mbpoll: {out}")
    print(f"mbpoll: status {st}, result {res}")
    if st[8] != 3 or not st[1] & ST_READY:
        fail(f"mbpoll reads status {st}: want map version 3 and ready")
    if part_id(res) != last_part:
        fail(f"mbpoll reads result {res}: want part {last_part}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("root")
    ap.add_argument("role", choices=["client", "server"])
    ap.add_argument("--parts", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=25.0, help="parts per second")
    ap.add_argument("--cut-at", type=int, default=-1, help="part index of the link cut")
    ap.add_argument("--ack-delay-ms", type=float, default=0)
    ap.add_argument("--bench", action="store_true")
    a = ap.parse_args()
    if not a.bench:             # a benchmark's figure is over the parts asked for
        a.parts = quick_parts(a.parts)
    quiet_pymodbus()
    if a.bench:
        a.cut_at = a.parts          # no link cut: it would be measured too
    elif a.cut_at < 0:
        a.cut_at = a.parts // 2
    require_model(a.root)

    with workdir("vigil-plc-") as tmp:
        sim_dir = os.path.join(tmp, "sim")
        generate_parts(a.build, sim_dir, a.parts, 77)
        port = free_port()
        db = os.path.join(tmp, "vigil.db")
        conf = os.path.join(tmp, "vigild.conf")
        with open(conf, "w") as f:
            f.write(line_config(camera_section(sim_dir), sim_dir, a.root, port, db,
                                deadline_ms=5000, plc_extra=f"""mode = {a.role}
result_buffer = 64
reconnect_min_ms = 50
reconnect_max_ms = 400
peer_timeout_ms = 500
"""))
        plc = ServerPLC(port) if a.role == "client" else None
        vigild = Vigild(a.build, conf, os.path.join(tmp, "vigild.log"))
        if plc is None:
            plc = MasterPLC(port)

        results = []          # (part id, trigger echo, verdict, latency s)
        raised = {}           # trigger counter -> (part id, time)

        def take_results():
            r = plc.new_result()
            if r:
                t0 = raised.get(r[3], (None, time.monotonic()))[1]
                results.append((part_id(r), r[3], r[4], time.monotonic() - t0))
                if a.ack_delay_ms:
                    time.sleep(a.ack_delay_ms / 1000)
                plc.ack(r[0])

        try:
            start_vigild(vigild, plc)
            counter = plc.read(TRIG, 1)[0]
            t0 = time.monotonic()
            for i in range(a.parts):
                due = t0 + i / a.rate
                while time.monotonic() < due:
                    take_results()
                    time.sleep(0.001)
                counter = counter % 65535 + 1
                raised[counter] = (i, time.monotonic())
                plc.write(TRIG, [counter, i >> 16, i & 0xFFFF])
                t_seen = time.monotonic() + 10
                while plc.read(STAT + 4, 1)[0] != counter:        # trigger_seen
                    take_results()
                    if time.monotonic() > t_seen:
                        fail(f"vigild did not take trigger {counter} (part {i})")
                    time.sleep(0.0005)
                if i == a.cut_at:
                    # Right after vigild took the trigger: its result is
                    # still to come when the link goes.
                    print(f"cutting the link after part {i}, "
                          f"{i + 1 - len(results)} part(s) in flight", flush=True)
                    plc.cut(1.0)
            t_drain = time.monotonic() + 30
            while len(results) < a.parts and time.monotonic() < t_drain:
                take_results()
                time.sleep(0.001)
            elapsed = time.monotonic() - t0
            if a.role == "server":
                check_mbpoll(port, a.parts - 1)
        finally:
            stop_vigild(vigild, plc)
        ids = [r[0] for r in results]
        if ids != list(range(a.parts)):
            dup = len(ids) - len(set(ids))
            fail(f"{len(ids)} results for {a.parts} parts ({dup} duplicated), "
                 f"first out of order at {next((k for k, v in enumerate(ids) if v != k), None)}")
        con = sqlite3.connect(db)
        rows = con.execute("SELECT part_id, verdict FROM inspections ORDER BY part_id").fetchall()
        con.close()
        if [r[0] for r in rows] != list(range(a.parts)):
            fail(f"{len(rows)} database rows, want one per part")
        for (pid, _, verdict, _), (rpid, rverdict) in zip(results, rows):
            if VERDICT_NAMES.get(verdict) != rverdict:
                fail(f"part {pid}: PLC got verdict {verdict}, database says {rverdict}")
        lat = sorted(r[3] * 1000 for r in results)
        p50 = statistics.median(lat)
        print(f"{a.role}: {a.parts} parts in {elapsed:.1f} s ({a.parts / elapsed:.1f}/s), "
              f"one result each, in order; trigger-to-result-valid p50 {p50:.1f} ms, "
              f"p95 {lat[int(0.95 * (len(lat) - 1))]:.1f} ms")
        if a.bench:
            print(f"BENCH {a.role}: median trigger-to-result-valid {p50:.1f} ms "
                  f"over {a.parts} parts at {a.rate:g}/s")
        print("PASS")


if __name__ == "__main__":
    main()
