#!/usr/bin/python3
"""A vibration transmitter on Modbus TCP for tests/test-sensors.c, played
by pymodbus (a Modbus stack nobody on this project wrote). Serves input
registers on 127.0.0.1:PORT (0: a free port) and prints "PORT <port>".

Registers (protocol addresses), the layout of a typical 4-20 mA/Modbus
vibration transmitter:
  100      RMS velocity, u16, 0.01 mm/s per count     4.53 mm/s -> 453
  102-103  RMS acceleration, float32, low word first  1.25 g
  110      temperature, s16, 0.1 degC per count       -12.5 degC -> -125

usage: transmitter_peer.py [PORT]
"""
import asyncio
import struct
import sys

from pymodbus.datastore import (
    ModbusSequentialDataBlock,
    ModbusServerContext,
    ModbusSlaveContext,
)
from pymodbus.server.async_io import ModbusTcpServer


async def serve(port):
    regs = [0] * 256
    regs[100] = 453
    hi, lo = struct.unpack(">HH", struct.pack(">f", 1.25))
    regs[102], regs[103] = lo, hi
    regs[110] = (-125) & 0xFFFF
    slave = ModbusSlaveContext(ir=ModbusSequentialDataBlock(0, regs), zero_mode=True)
    server = ModbusTcpServer(ModbusServerContext(slaves=slave, single=True),
                             address=("127.0.0.1", port), allow_reuse_address=True)
    task = asyncio.create_task(server.serve_forever())
    await server.serving
    print(f"PORT {server.server.sockets[0].getsockname()[1]}", flush=True)
    await task


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
