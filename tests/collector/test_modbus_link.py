"""Modbus TCP reads through the register maps against the simulated pymodbus gateways."""

from __future__ import annotations

import socket
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from collector.errors import AbnormalReply, NoAnswer, Unreachable
from collector.modbus import ModbusLink, ModbusParams, register_map
from protocols.modbus import FunctionCode
from simulators.runner import Fleet
from simulators.scenario import parse_scenario

TZ = ZoneInfo("Asia/Shanghai")


class FixedClock:
    """A clock that stands still."""

    def __init__(self, t: datetime) -> None:
        self.t = t

    def now(self) -> datetime:
        return self.t

    async def sleep_until(self, instant: datetime) -> None:
        raise AssertionError(f"not expected to sleep until {instant}")


def _scenario(**injections: float) -> object:
    return parse_scenario({
        "version": 1, "seed": 5, "areas": 1, "meters_per_area": 6, "days": 3, "speed": 1.0,
        "devices": {"dlt645_share": 0.0, "modbus_share": 1.0, "mqtt_share": 0.0,
                    "modbus_meters_per_gateway": 8, "modbus_model": "sdm630"},
        "injections": injections})


async def test_reads_quantities_by_the_register_map() -> None:
    clock = FixedClock(datetime(2026, 1, 2, 12, 0, tzinfo=TZ))
    async with Fleet(_scenario(), clock=clock) as fleet:  # type: ignore[arg-type]
        gw = fleet.modbus[0]
        link = ModbusLink(gw.id, gw.url, params=ModbusParams(timeout=1.0, retries=0))
        w = fleet.world
        t = clock.now().timestamp()
        rmap = register_map("sdm630")
        for unit, m in gw.units.items():
            values = await link.read(unit, rmap, ["forward_active_total_kwh", "voltage_a_v"])
            assert values["forward_active_total_kwh"].value == pytest.approx(
                float(w.registers(m, t)[0]), rel=1e-6)  # float32 on the wire
            assert values["voltage_a_v"].unit == "V"
        # a whole map read plans few requests and decodes every quantity
        every = await link.read(next(iter(gw.units)), rmap)
        assert set(every) == set(rmap.quantities)
        with pytest.raises(AbnormalReply):  # no such register block on the meter
            await link.read_registers(next(iter(gw.units)), FunctionCode.READ_HOLDING_REGISTERS,
                                      0xF000, 2)
        await link.close()


async def test_silent_meter_is_no_answer_and_closed_port_unreachable() -> None:
    clock = FixedClock(datetime(2026, 1, 2, 12, 0, tzinfo=TZ))
    async with Fleet(_scenario(offline=1.0, offline_days=(3, 3)),  # type: ignore[arg-type]
                     clock=clock) as fleet:
        gw = fleet.modbus[0]
        link = ModbusLink(gw.id, gw.url, params=ModbusParams(timeout=1.0, retries=0))
        t = clock.now().timestamp()
        silent = [u for u, m in gw.units.items() if fleet.world.silent(m, t)]
        assert silent
        with pytest.raises(NoAnswer):
            await link.read(silent[0], register_map("sdm630"), ["forward_active_total_kwh"])
        await link.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    link = ModbusLink("G9", f"tcp://127.0.0.1:{port}", params=ModbusParams(timeout=0.5))
    with pytest.raises(Unreachable):
        await link.read(1, register_map("sdm630"), ["forward_active_total_kwh"])
    await link.close()
