#!/usr/bin/python3
"""A Modbus TCP server that nobody on this project wrote (pymodbus, not
libmodbus), for tests/test-plc.c to check plc/plc.c against.

It holds a preset trigger block, listens on a free loopback port and prints,
one line each, flushed:

    PORT <port>
    READ fc=<fc> addr=<addr> count=<n> values=<0x....,...>   (register reads)
    WRITE fc=<fc> addr=<addr> count=<n> values=<0x....,...>  (register writes)
    DONE                       after --writes write requests, then exits 0
    TIMEOUT                    if they do not come within --timeout s; exits 1

Addresses are protocol addresses (zero_mode), as in docs/plc.md.
Written for pymodbus 3.0 (Debian 12's python3-pymodbus 3.0.0rc1).
"""
import argparse
import asyncio
import logging
import sys

from pymodbus.datastore import (
    ModbusSequentialDataBlock,
    ModbusServerContext,
    ModbusSlaveContext,
)
from pymodbus.server.async_io import ModbusTcpServer

READ_FCS = (3, 4)


def emit(line):
    print(line, flush=True)


def hexlist(values):
    return ",".join(f"0x{v:04x}" for v in values)


class RecordingSlave(ModbusSlaveContext):
    """Prints every register read and write it serves."""

    def __init__(self, want_writes, done, **kwargs):
        super().__init__(**kwargs)
        self.want_writes = want_writes
        self.writes = 0
        self.done = done

    def getValues(self, fc_as_hex, address, count=1):  # noqa: N802 (pymodbus API)
        values = super().getValues(fc_as_hex, address, count)
        # Write requests read back what they wrote; only report real reads.
        if fc_as_hex in READ_FCS:
            emit(f"READ fc={fc_as_hex} addr={address} count={count} values={hexlist(values)}")
        return values

    def setValues(self, fc_as_hex, address, values):  # noqa: N802 (pymodbus API)
        super().setValues(fc_as_hex, address, values)
        if not isinstance(values, list):
            values = [values]
        emit(f"WRITE fc={fc_as_hex} addr={address} count={len(values)} values={hexlist(values)}")
        self.writes += 1
        if self.writes >= self.want_writes:
            self.done.set()


async def serve(args):
    done = asyncio.Event()
    slave = RecordingSlave(
        args.writes,
        done,
        hr=ModbusSequentialDataBlock(0, [0] * 1024),
        zero_mode=True,
    )
    part_id = int(args.part_id, 0)
    # Preset on the data block, so it is not reported as a client write.
    slave.store["h"].setValues(
        args.trigger_base,
        [args.counter, part_id >> 16, part_id & 0xFFFF, args.ack],
    )
    server = ModbusTcpServer(
        ModbusServerContext(slaves=slave, single=True),
        address=("127.0.0.1", 0),
        allow_reuse_address=True,
    )
    task = asyncio.create_task(server.serve_forever())
    await server.serving
    emit(f"PORT {server.server.sockets[0].getsockname()[1]}")
    rc = 0
    try:
        await asyncio.wait_for(done.wait(), args.timeout)
        emit("DONE")
    except asyncio.TimeoutError:
        emit("TIMEOUT")
        rc = 1
    # pymodbus logs every open session it cancels as an error; here that is
    # the expected end of the exchange.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    await server.shutdown()
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    return rc


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trigger-base", type=int, default=0)
    ap.add_argument("--counter", type=int, default=1)
    ap.add_argument("--part-id", default="0")
    ap.add_argument("--ack", type=int, default=0)
    ap.add_argument("--writes", type=int, default=1, help="write requests to wait for")
    ap.add_argument("--timeout", type=float, default=20.0)
    args = ap.parse_args()
    return asyncio.run(serve(args))


if __name__ == "__main__":
    sys.exit(main())
