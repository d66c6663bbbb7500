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
import asyncio
import logging
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from pymodbus.client import ModbusTcpClient
from pymodbus.datastore import ModbusSequentialDataBlock, ModbusServerContext, ModbusSlaveContext
from pymodbus.server.async_io import ModbusTcpServer

TRIG, RES, STAT = 0, 10, 20        # PLC_REGMAP_DEFAULT
STAT_REGS, RES_REGS = 9, 9


def fail(msg):
    print("FAIL:", msg, flush=True)
    sys.exit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def model_dir(root):
    d = os.path.join(root, "models", "synthetic-v1")
    return d if os.path.exists(os.path.join(d, "manifest.ini")) else None


class ServerPLC:
    """Client role: the PLC is a pymodbus server on its own event loop."""

    def __init__(self, port):
        self.port = port
        self.block = ModbusSequentialDataBlock(0, [0] * 64)
        self.ctx = ModbusServerContext(slaves=ModbusSlaveContext(hr=self.block, zero_mode=True),
                                       single=True)
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.start()

    def start(self):
        async def go():
            self.server = ModbusTcpServer(self.ctx, address=("127.0.0.1", self.port),
                                          allow_reuse_address=True)
            self.task = asyncio.ensure_future(self.server.serve_forever())
            await self.server.serving
        asyncio.run_coroutine_threadsafe(go(), self.loop).result(10)

    def cut(self, seconds):
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

        async def stop():
            await self.server.shutdown()
            self.task.cancel()
        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        time.sleep(seconds)
        self.start()

    def read(self, addr, n):
        return self.block.getValues(addr, n)

    def write(self, addr, values):
        self.block.setValues(addr, values)


class ClientPLC:
    """Server role: the PLC is a pymodbus client polling vigild."""

    def __init__(self, port):
        self.port = port
        self.c = ModbusTcpClient("127.0.0.1", port=port, timeout=2)

    def _retry(self, fn):
        for _ in range(200):
            try:
                if not self.c.connected:
                    self.c.connect()
                rr = fn()
                if not rr.isError():
                    return rr
            except Exception:  # noqa: BLE001 connection refused while vigild starts
                pass
            time.sleep(0.05)
        fail("vigild's Modbus server does not answer")

    def read(self, addr, n):
        return self._retry(lambda: self.c.read_holding_registers(addr, n, slave=1)).registers

    def write(self, addr, values):
        self._retry(lambda: self.c.write_registers(addr, values, slave=1))

    def cut(self, seconds):
        self.c.close()
        time.sleep(seconds)


def check_mbpoll(port, last_part):
    """mbpoll, a third Modbus master, reads the status and result blocks."""
    def regs(ref, n):
        out = subprocess.run(["mbpoll", "-m", "tcp", "-a", "1", "-r", str(ref + 1), "-c", str(n),
                              "-t", "4", "-1", "-p", str(port), "127.0.0.1"],
                             capture_output=True, text=True, timeout=20)
        if out.returncode != 0:
            fail(f"mbpoll: {out.stdout} {out.stderr}")
        vals = {}
        for line in out.stdout.splitlines():
            if line.startswith("["):
                k, v = line.split(":", 1)
                vals[int(k.strip("[]")) - 1] = int(v.split()[0])
        return [vals[ref + i] for i in range(n)]
    st = regs(STAT, STAT_REGS)
    res = regs(RES, RES_REGS)
    print(f"mbpoll: status {st}, result {res}")
    if st[8] != 2 or not st[1] & 1:
        fail(f"mbpoll reads status {st}: want map version 2 and ready")
    if (res[1] << 16 | res[2]) != last_part:
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
    # pymodbus logs every refused connect while vigild starts as an error.
    logging.basicConfig()
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    if a.bench:
        a.cut_at = a.parts          # no link cut: it would be measured too
    elif a.cut_at < 0:
        a.cut_at = a.parts // 2
    pkg = model_dir(a.root)
    if not pkg:
        print("SKIP: no model package")
        sys.exit(77)
    vigild_bin = os.path.join(a.build, "app", "vigild")
    sim_bin = os.path.join(a.build, "tools", "vigil-sim")

    with tempfile.TemporaryDirectory(prefix="vigil-plc-") as tmp:
        sim_dir = os.path.join(tmp, "sim")
        subprocess.run([sim_bin, "generate", "--out", sim_dir, "--parts", str(a.parts),
                        "--seed", "77", "--split", "e2e"], check=True,
                       stdout=subprocess.DEVNULL)
        port = free_port()
        db = os.path.join(tmp, "vigil.db")
        conf = os.path.join(tmp, "vigild.conf")
        with open(conf, "w") as f:
            f.write(f"""[camera.top]
pipeline = multifilesrc location={sim_dir}/images/part-%05d.png index=0 caps=image/png ! pngdec ! videoconvert ! appsink name=sink
trigger = sequence
frame_timeout_ms = 5000

[vibration.drive_end]
pipeline = filesrc location={sim_dir}/vibration.wav ! wavparse ! audioconvert ! audioresample ! appsink name=sink
mode = sequence
rate_hz = 12000
window = 2048
stride = 2048
timeout_ms = 5000

[model]
package = {pkg}
backend = opencv

[plc]
mode = {a.role}
host = 127.0.0.1
port = {port}
poll_ms = 2
reject_deadline_ms = 5000
result_buffer = 64
reconnect_min_ms = 50
reconnect_max_ms = 400
peer_timeout_ms = 500

[database]
path = {db}
""")
        plc = ServerPLC(port) if a.role == "client" else None
        log = open(os.path.join(tmp, "vigild.log"), "w+")
        vigild = subprocess.Popen([vigild_bin, "--config", conf], stdout=log,
                                  stderr=subprocess.STDOUT)
        if plc is None:
            plc = ClientPLC(port)

        results = []          # (part id, trigger echo, verdict, latency s)
        raised = {}           # trigger counter -> (part id, time)
        state = {"res_counter": 0}

        def take_results():
            r = plc.read(RES, RES_REGS)
            if r[0] != state["res_counter"] and r[8] == 1:
                state["res_counter"] = r[0]
                pid = r[1] << 16 | r[2]
                t0 = raised.get(r[3], (None, time.monotonic()))[1]
                results.append((pid, r[3], r[4], time.monotonic() - t0))
                if a.ack_delay_ms:
                    time.sleep(a.ack_delay_ms / 1000)
                plc.write(TRIG + 3, [r[0]])

        try:
            t_end = time.monotonic() + 60
            while not plc.read(STAT, STAT_REGS)[1] & 1:       # ready
                if time.monotonic() > t_end or vigild.poll() is not None:
                    fail("vigild did not report ready")
                time.sleep(0.05)
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
            vigild.send_signal(signal.SIGTERM)
            vigild_rc = vigild.wait(timeout=60)
        log.seek(0)
        text = log.read()
        print(text[-2500:])
        if vigild_rc != 0:
            fail(f"vigild exited with {vigild_rc}")
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
        names = {1: "accept", 2: "reject", 3: "marginal"}
        for (pid, _, verdict, _), (rpid, rverdict) in zip(results, rows):
            if names.get(verdict) != rverdict:
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
