"""Modbus TCP meters: one pymodbus 3.16 server per gateway, one unit id per meter.

Each meter is a ``SimDevice`` whose registers are filled, on every request, from the world
through the meter model's register map (:func:`protocols.modbus.encode_values`). A meter that
is offline or missing the current slot answers exception 0x0B (gateway target device failed
to respond), as an RS-485-to-TCP gateway does for a silent meter. Modbus meters here keep no
daily freezes and no clock (like SDM630 and DTSU666): the collector polls their energy
registers at the interval boundaries.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from meterhub.clock import Clock
from protocols.modbus import RegisterMap, encode_values, load_builtin_map
from simulators.world import World


class ModbusGateway:
    """Modbus TCP endpoint serving the meters of one gateway.

    Args:
        gateway_id: the archive id.
        world: the simulated world.
        units: unit id -> meter record.
        clock: the simulated clock.
        model: register map name shipped with :mod:`protocols.modbus`.
    """

    def __init__(
        self, gateway_id: str, world: World, units: dict[int, int], clock: Clock, model: str
    ) -> None:
        self.id = gateway_id
        self.world = world
        self.units = units
        self.clock = clock
        self.map: RegisterMap = load_builtin_map(model)
        self.server: ModbusTcpServer | None = None
        self.port = 0
        self.host = "127.0.0.1"
        self.frames_answered = 0
        size = max(e.end for e in self.map.entries)
        size += size % 2
        self.size = size

    def _values(self, m: int, t: float, first: int, end: int) -> dict[str, float]:
        w = self.world
        wanted = [e.quantity for e in self.map.entries if e.address < end and e.end > first]
        regs = w.registers(m, t)
        inst = w.instantaneous(m, t)
        vals: dict[str, float] = {}
        for q in wanted:
            if q == "forward_active_total_kwh":
                vals[q] = float(regs[0])
            elif q == "reverse_active_total_kwh":
                vals[q] = float(regs[5])
            elif q == "combined_active_total_kwh":
                vals[q] = float(regs[0] + regs[5])
            elif q in inst:
                vals[q] = inst[q]
            elif q.startswith("voltage_") and q.count("_") == 2 and len(q.split("_")[1]) == 1:
                vals[q] = inst["voltage_a_v"]
            elif q.startswith("voltage_"):
                vals[q] = round(inst["voltage_a_v"] * 1.732, 1)
            elif q in ("ct_ratio", "pt_ratio"):
                vals[q] = 1.0
        return vals

    async def _action(
        self,
        m: int,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        current_registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        del function_code
        if set_values is not None:
            return ExcCodes.ILLEGAL_FUNCTION
        t = self.clock.now().timestamp()
        if self.world.silent(m, t):
            return ExcCodes.GATEWAY_NO_RESPONSE
        vals = self._values(m, t, address, address + count)
        blocks = encode_values(self.map, vals)
        for block in blocks:
            for i, word in enumerate(block.registers):
                idx = block.start + i - start_address
                if 0 <= idx < len(current_registers):
                    current_registers[idx] = word
        self.frames_answered += 1
        return None

    def devices(self) -> list[SimDevice]:
        """One ``SimDevice`` per unit, registers refreshed by an action on every request."""
        out = []
        for unit, m in sorted(self.units.items()):
            out.append(
                SimDevice(
                    id=unit,
                    simdata=[SimData(0, count=self.size, values=0, datatype=DataType.REGISTERS)],
                    action=functools.partial(self._action, m),
                )
            )
        return out

    async def start(self, host: str, port: int = 0) -> None:
        """Start the Modbus TCP server on ``host`` (``port`` 0 picks a free one)."""
        self.host = host
        self.server = ModbusTcpServer(self.devices(), address=(host, port))
        await self.server.serve_forever(background=True)
        transport: Any = self.server.transport
        self.port = int(transport.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        """``tcp://host:port`` of the gateway."""
        return f"tcp://{self.host}:{self.port}"

    async def close(self) -> None:
        """Stop the server."""
        if self.server is not None:
            with contextlib.suppress(Exception):
                await self.server.shutdown()
