"""The line PLC played by pymodbus (a Modbus stack nobody here wrote), for
the tests that run vigild whole (tests/test_plc_*.py), and mbpoll reading
vigild's registers from the command line. Registers as in docs/plc.md,
default block bases.

  MasterPLC  vigild in the server role: the PLC is a Modbus TCP client.
  ServerPLC  vigild in the client role: the PLC is a Modbus TCP server.
Both offer read(addr, n) and write(addr, values), and the handshake steps
on top of them (PLC): trigger, next_result, ack.
"""
import asyncio
import logging
import re
import subprocess
import threading
import time
import urllib.request

from linetest import WAIT_S, camera_section, fail, line_config, wait_for

TRIG, RES, STAT = 0, 10, 20        # PLC_REGMAP_DEFAULT
TRIG_REGS, STAT_REGS, RES_REGS = 5, 9, 10
# Status word bits, error codes and result flags (plc/plc.h, core/part.h).
ST_READY, ST_FAULT, ST_CAMERA_OK, ST_STOP_LINE = 1, 1 << 2, 1 << 4, 1 << 7
ST_VALID, ST_OVERRUN, ST_JOB_REFUSED, ST_JOB_LOADING = 1 << 8, 1 << 9, 1 << 11, 1 << 12
ST_QUEUE_FULL = 1 << 13
ERR_JOB, ERR_PKG_MISSING, ERR_PKG_CORRUPT, ERR_PKG_UNFIT, ERR_QUEUE_FULL = 6, 8, 9, 10, 11
ERR_PKG_GATE = 12
FL_FAILSAFE, FL_NO_FRAME, FL_NO_VIBRATION, FL_MODEL_ERROR = 1 << 2, 1 << 3, 1 << 4, 1 << 5
FL_DEADLINE, FL_QUEUE_FULL, FL_NOT_SENT = 1 << 7, 1 << 8, 1 << 9
ACCEPT, REJECT, MARGINAL = 1, 2, 3
VERDICT_NAMES = {ACCEPT: "accept", REJECT: "reject", MARGINAL: "marginal"}


def quiet_pymodbus():
    """pymodbus logs every refused connect while vigild starts, and every
    session it cancels, as errors."""
    logging.basicConfig()
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


def part_id(r):
    """The part id of a result block (high word first)."""
    return r[1] << 16 | r[2]


def run_part(plc, counter, pid, ack=True):
    """One part: trigger, its result (which must be its own), ack."""
    plc.trigger(counter, pid)
    r = plc.next_result()
    if part_id(r) != pid or r[3] != counter:
        fail(f"part {pid} (trigger {counter}) got result {r}")
    if ack:
        plc.ack(r[0])
    return r


class PLC:
    """The handshake of docs/plc.md on top of read() and write()."""
    res_counter = None

    def status(self):
        return self.read(STAT, STAT_REGS)

    def result(self):
        return self.read(RES, RES_REGS)

    def trigger(self, counter, part):
        """Raises a trigger and waits until vigild took it (trigger_seen)."""
        self.write(TRIG, [counter, part >> 16, part & 0xFFFF])
        wait_for(f"trigger_seen = {counter}", lambda: self.status()[4] == counter,
                 poll_s=0.0005)

    def ack(self, counter):
        self.write(TRIG + 3, [counter])

    def select_job(self, job):
        self.write(TRIG + 4, [job])

    def next_result(self, timeout=WAIT_S):
        """Waits for a result with a new counter and valid = 1."""
        r = wait_for("a new result",
                     lambda: (lambda r: r if r[8] == 1 and r[0] != self.res_counter else None)(
                         self.result()), timeout)
        self.res_counter = r[0]
        return r

    def new_result(self):
        """The result block if it holds a result not yet taken, else None."""
        r = self.result()
        if r[8] == 1 and r[0] != self.res_counter:
            self.res_counter = r[0]
            return r
        return None


class MasterPLC(PLC):
    """vigild in the server role: the PLC is a pymodbus client polling it."""

    def __init__(self, port):
        from pymodbus.client import ModbusTcpClient
        self.port = port
        self.c = ModbusTcpClient("127.0.0.1", port=port, timeout=2)

    def _retry(self, fn):
        for _ in range(400):
            try:
                if not self.c.connected:
                    self.c.connect()
                rr = fn()
                if not rr.isError():
                    return rr
            except Exception:  # noqa: BLE001 refused while vigild starts
                pass
            time.sleep(0.05)
        fail("vigild's Modbus server does not answer")

    def read(self, addr, n):
        return self._retry(lambda: self.c.read_holding_registers(addr, n, slave=1)).registers

    def write(self, addr, values):
        self._retry(lambda: self.c.write_registers(addr, values, slave=1))

    def cut(self, seconds):
        """Drops the connection for a while, as a PLC that restarts."""
        self.c.close()
        time.sleep(seconds)

    def close(self):
        self.c.close()


class ServerPLC(PLC):
    """vigild in the client role: the PLC is a pymodbus server on its own
    event loop, holding the registers vigild polls and writes."""

    def __init__(self, port):
        from pymodbus.datastore import (ModbusSequentialDataBlock, ModbusServerContext,
                                        ModbusSlaveContext)
        self.port = port
        self.block = ModbusSequentialDataBlock(0, [0] * 64)
        self.ctx = ModbusServerContext(slaves=ModbusSlaveContext(hr=self.block, zero_mode=True),
                                       single=True)
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.start()

    def start(self):
        from pymodbus.server.async_io import ModbusTcpServer

        async def go():
            self.server = ModbusTcpServer(self.ctx, address=("127.0.0.1", self.port),
                                          allow_reuse_address=True)
            self.task = asyncio.ensure_future(self.server.serve_forever())
            await self.server.serving
        asyncio.run_coroutine_threadsafe(go(), self.loop).result(10)

    def cut(self, seconds):
        """The PLC's server goes away for a while."""
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

    def close(self):
        pass


def mbpoll_read(port, addr, n, function_type="4", unit=1, timeout_s=None):
    """Registers addr.. addr+n-1 (protocol addresses) read by mbpoll, a
    third Modbus master, from unit id unit (mbpoll's own timeout: timeout_s
    seconds, else its default of 1); (values or None, mbpoll's output)."""
    wait = ["-o", str(timeout_s)] if timeout_s else []
    out = subprocess.run(["mbpoll", "-m", "tcp", "-a", str(unit), "-r", str(addr + 1),
                          "-c", str(n), "-t", function_type, "-1"] + wait +
                         ["-p", str(port), "127.0.0.1"],
                         capture_output=True, text=True, timeout=20)
    if out.returncode != 0:
        return None, out.stdout + out.stderr
    vals = {}
    for line in out.stdout.splitlines():
        if line.startswith("["):
            k, v = line.split(":", 1)
            vals[int(k.strip("[]")) - 1] = int(v.split()[0])
    return [vals[addr + i] for i in range(n)], out.stdout


def mbpoll_write(port, addr, values, function_type="4"):
    """mbpoll writes holding registers (or, with function_type "0", coils)
    from addr on; (ok, its output)."""
    out = subprocess.run(["mbpoll", "-m", "tcp", "-a", "1", "-r", str(addr + 1),
                          "-t", function_type, "-p", str(port), "127.0.0.1"] +
                         [str(v) for v in values],
                         capture_output=True, text=True, timeout=20)
    return out.returncode == 0, out.stdout + out.stderr


def stepped_line_config(sim, root, port, db, alarm):
    """A line in the server role for a pymodbus PLC that runs one part at a
    time: slow timeouts (deadline, window, commit), so that on a busy
    machine nothing but the fault a test builds goes wrong (a late commit
    would raise a database fault, error 4); the review server on a free
    port for /metrics; alarm: the [alarm] section's keys."""
    return line_config(camera_section(sim, 20000, "", "restart = never\n"), sim, root, port,
                       db, deadline_ms=20000, window_timeout_ms=20000,
                       plc_extra="mode = server\npeer_timeout_ms = 600000\n",
                       tail="commit_timeout_ms = 10000\n\n"
                            "[review]\nlisten = 127.0.0.1\nport = 0\n\n"
                            f"[alarm]\n{alarm}")


def failsafe_total(url, cause):
    """vigil_failsafe_total{cause} as vigild's /metrics (at url) says it;
    None when the cause is not listed."""
    with urllib.request.urlopen(url + "metrics", timeout=10) as r:
        text = r.read().decode()
    m = re.search(rf'^vigil_failsafe_total\{{cause="{cause}"\}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else None


def status_with(plc, what, cond):
    """The status block once cond(status) holds."""
    return wait_for(what, lambda: (lambda s: s if cond(s) else None)(plc.status()))


def start_vigild(vigild, plc, bit=ST_READY):
    """Waits until vigild reports status bit `bit` (ready by default: the
    line can inspect) to plc; fails if it exits first."""
    what = "ready" if bit == ST_READY else f"status bit {bit:#x}"
    vigild.wait_until(what, lambda: plc.status()[1] & bit, 60, 0.01)


def stop_vigild(vigild, plc):
    """Stops vigild cleanly; its log (tail printed). Fails on a bad exit."""
    plc.close()
    rc = vigild.stop()
    text = vigild.text()
    print(text[-3000:])
    if rc != 0:
        fail(f"vigild exited with {rc}")
    return text


def scenario_main(doc, scenarios, prefix, parts, seed):
    """The command line of a scenario script (BUILD_DIR SOURCE_ROOT
    SCENARIO): parts(name) simulated parts in a fresh folder, then
    scenarios[name](env)."""
    import os
    import sys

    from linetest import free_port, generate_parts, require_model, workdir
    if len(sys.argv) != 4 or sys.argv[3] not in scenarios:
        print(doc)
        sys.exit(2)
    build, root, name = sys.argv[1:]
    quiet_pymodbus()
    require_model(root)
    with workdir(prefix) as tmp:
        sim = os.path.join(tmp, "sim")
        generate_parts(build, sim, parts(name), seed)
        env = {"tmp": tmp, "build": build, "root": root, "sim": sim, "port": free_port(),
               "db": os.path.join(tmp, "vigil.db")}
        scenarios[name](env)
    print("PASS", name)
