"""Modbus RTU on a serial line: ModbusLink against pymodbus' RTU server over a pty null modem.

Two pseudo-terminals are joined master to master by the test (a null-modem cable); pymodbus'
``ModbusSerialServer`` opens one slave path, :class:`collector.modbus.ModbusLink` the other,
both through pyserial, so the requests and replies are real RTU frames with CRC. No assertion
depends on timing.

The line runs 8N1 (the Modbus default): pymodbus configures the port twice (it changes the
pyserial timeout after opening), and a Linux pty rejects the second ``tcsetattr`` with
``PARENB`` set when the speed does not change. Parity from the URL is checked on the client's
settings instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

import pytest
from pymodbus import FramerType
from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import DataType, SimData, SimDevice

from collector.errors import NoAnswer, Unreachable
from collector.modbus import ModbusLink, ModbusParams, register_map
from protocols.modbus import FunctionCode, encode_values

UNIT = 7
LINE = "baud=9600&parity=N&bytesize=8&stopbits=1"


class NullModem:
    """Two ptys whose master sides the loop copies into each other.

    Attributes:
        mute: While True, nothing from side B reaches side A (a meter that does not answer).
    """

    def __init__(self) -> None:
        self.mute = False
        self.loop = asyncio.get_running_loop()
        self.a_master, self.a_slave = os.openpty()
        self.b_master, self.b_slave = os.openpty()
        self.a_path = os.ttyname(self.a_slave)
        self.b_path = os.ttyname(self.b_slave)
        for src, dst in ((self.a_master, self.b_master), (self.b_master, self.a_master)):
            os.set_blocking(src, False)
            self.loop.add_reader(src, self._copy, src, dst)

    def _copy(self, src: int, dst: int) -> None:
        try:
            data = os.read(src, 4096)
            if not (self.mute and src == self.b_master):
                os.write(dst, data)
        except OSError:
            self.loop.remove_reader(src)

    def close(self) -> None:
        for fd in (self.a_master, self.b_master):
            with contextlib.suppress(Exception):
                self.loop.remove_reader(fd)
        for fd in (self.a_master, self.a_slave, self.b_master, self.b_slave):
            with contextlib.suppress(OSError):
                os.close(fd)


@contextlib.asynccontextmanager
async def rtu_meter() -> AsyncIterator[NullModem]:
    """An SDM630-style meter (unit 7, 9600 8N1) on side B of a null modem."""
    rmap = register_map("sdm630")
    registers = [0] * 0x0060
    for block in encode_values(rmap, {"voltage_a_v": 230.0, "forward_active_total_kwh": 1234.5}):
        registers[block.start:block.start + len(block.registers)] = block.registers
    device = SimDevice(id=UNIT, simdata=[SimData(0, count=len(registers), values=registers,
                                                 datatype=DataType.REGISTERS)])
    modem = NullModem()
    server = ModbusSerialServer(device, framer=FramerType.RTU, port=modem.b_path,
                                baudrate=9600, parity="N", bytesize=8, stopbits=1)
    await server.serve_forever(background=True)
    try:
        yield modem
    finally:
        with contextlib.suppress(Exception):
            await server.shutdown()
        modem.close()


async def test_rtu_read_through_the_register_map() -> None:
    async with rtu_meter() as modem:
        link = ModbusLink("R1", f"rtu://{modem.a_path}?{LINE}",
                          params=ModbusParams(timeout=1.0, retries=1))
        # the line settings of the URL reached the pymodbus client
        comm = link._client.comm_params
        assert (comm.baudrate, comm.parity, comm.bytesize, comm.stopbits) == (9600, "N", 8, 1)
        values = await link.read(UNIT, register_map("sdm630"),
                                 ["voltage_a_v", "forward_active_total_kwh"])
        assert values["voltage_a_v"].value == pytest.approx(230.0)
        assert values["forward_active_total_kwh"].value == pytest.approx(1234.5)
        regs = await link.read_registers(UNIT, FunctionCode.READ_INPUT_REGISTERS, 0, 2)
        assert regs == [0x4366, 0x0000]  # 230.0 as float32, high word first
        await link.close()


async def test_rtu_silent_meter_and_missing_port() -> None:
    async with rtu_meter() as modem:
        link = ModbusLink("R1", f"serial://{modem.a_path}?{LINE}",
                          params=ModbusParams(timeout=0.3, retries=0))
        modem.mute = True
        with pytest.raises(NoAnswer):
            await link.read_registers(UNIT, FunctionCode.READ_INPUT_REGISTERS, 0, 2)
        modem.mute = False
        assert await link.read_registers(UNIT, FunctionCode.READ_INPUT_REGISTERS, 0, 2)
        await link.close()
    link = ModbusLink("R2", "rtu:///dev/meterhub-no-such-tty", params=ModbusParams(timeout=0.3))
    with pytest.raises(Unreachable):
        await link.read_registers(UNIT, FunctionCode.READ_INPUT_REGISTERS, 0, 2)
    await link.close()


async def test_rtu_url_forms() -> None:
    link = ModbusLink("R1", "rtu:///dev/ttyUSB0", params=ModbusParams(baudrate=2400))
    comm = link._client.comm_params
    assert (comm.baudrate, comm.parity, comm.bytesize, comm.stopbits) == (2400, "N", 8, 1)
    link = ModbusLink("R1", "serial:///dev/ttyUSB0?baud=19200&parity=e&stopbits=2&bytesize=7")
    comm = link._client.comm_params
    assert (comm.baudrate, comm.parity, comm.bytesize, comm.stopbits) == (19200, "E", 7, 2)
    for bad in ("rtu:///dev/ttyUSB0?gap_ms=5", "rtu:///dev/ttyUSB0?stopbits=1.5", "rtu://"):
        with pytest.raises(ValueError):
            ModbusLink("R1", bad)
