"""Modbus TCP (and RTU) meters through pymodbus 3.16, driven by the register maps.

A :class:`ModbusLink` is one gateway: one ``AsyncModbusTcpClient`` (pymodbus sends one request
at a time per connection) shared by every unit id behind it. A read plans the FC03/FC04
requests for the wanted quantities from the meter model's map
(:func:`protocols.modbus.plan_reads`), sends them, and decodes the registers into quantities
(:func:`protocols.modbus.decode_response`). pymodbus' exceptions and exception responses are
translated into :mod:`collector.errors`:

* connection failure -> :class:`~collector.errors.Unreachable`;
* ``ModbusIOException`` (no reply within the timeout) or exception code 0x0B (gateway target
  device failed to respond) -> :class:`~collector.errors.NoAnswer`;
* other exception codes -> :class:`~collector.errors.AbnormalReply`;
* a reply that does not decode -> :class:`~collector.errors.BadReply`.

Modbus RTU on a local serial port uses ``AsyncModbusSerialClient`` (pyserial). The URL is
``rtu:///dev/ttyUSB0`` or ``serial:///dev/ttyUSB0``, optionally with the line settings as a
query, ``?baud=9600&parity=N&bytesize=8&stopbits=1`` (parsed by
:func:`collector.serial.parse_serial_url`); keys the URL leaves out come from
:class:`ModbusParams`. :func:`serial_available` says whether pyserial is installed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from collector.errors import AbnormalReply, BadReply, NoAnswer, Unreachable
from protocols.modbus import (
    DecodeError,
    FunctionCode,
    QuantityValue,
    RegisterMap,
    decode_response,
    load_builtin_map,
    plan_reads,
)

log = logging.getLogger(__name__)

GATEWAY_NO_RESPONSE = 0x0B
"""Modbus exception: the gateway's target device failed to respond."""


def serial_available() -> bool:
    """True when pyserial is installed (Modbus RTU on a local port is possible)."""
    return importlib.util.find_spec("serial") is not None


@dataclass(frozen=True, slots=True)
class ModbusParams:
    """Connection parameters of a Modbus link.

    Attributes:
        timeout: Seconds per request.
        retries: pymodbus retries per request.
        baudrate: Serial only.
        parity: Serial only (``N``, ``E``, ``O``).
        stopbits: Serial only.
        bytesize: Serial only.
    """

    timeout: float = 3.0
    retries: int = 1
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1
    bytesize: int = 8


class ModbusLink:
    """One Modbus gateway (TCP) or serial port (RTU), shared by its unit ids.

    Args:
        gateway_id: The archive id.
        url: ``tcp://host:port``, or ``rtu:///dev/ttyUSB0`` / ``serial:///dev/ttyUSB0`` with
            optional ``?baud=&parity=&bytesize=&stopbits=`` (RTU needs pyserial).
        params: Timeouts and line settings.
    """

    def __init__(self, gateway_id: str, url: str, *, params: ModbusParams | None = None) -> None:
        from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient

        self.gateway_id = gateway_id
        self.url = url
        self.params = p = params or ModbusParams()
        self._lock = asyncio.Lock()
        self.requests = 0
        self.errors = 0
        parts = urlsplit(url)
        self._client: Any
        if parts.scheme == "tcp":
            if not parts.hostname:
                raise ValueError(f"gateway {gateway_id}: url must be tcp://host:port")
            self._client = AsyncModbusTcpClient(parts.hostname, port=parts.port or 502,
                                                timeout=p.timeout, retries=p.retries,
                                                reconnect_delay=0.5, reconnect_delay_max=30)
        elif parts.scheme in ("rtu", "serial"):
            if not serial_available():
                raise ValueError(f"gateway {gateway_id}: Modbus RTU needs pyserial, "
                                 "which is not installed")
            from pymodbus import FramerType

            from collector.serial import SerialLine, parse_serial_url

            line = parse_serial_url(url, schemes=("rtu", "serial"), gap=False, defaults=SerialLine(
                "", baudrate=p.baudrate, bytesize=p.bytesize, parity=p.parity,
                stopbits=p.stopbits))
            if line.stopbits not in (1, 2):
                raise ValueError(f"gateway {gateway_id}: Modbus RTU needs 1 or 2 stop bits")
            self._client = AsyncModbusSerialClient(line.port, framer=FramerType.RTU,
                                                   baudrate=line.baudrate,
                                                   bytesize=line.bytesize, parity=line.parity,
                                                   stopbits=int(line.stopbits), timeout=p.timeout,
                                                   retries=p.retries)
        else:
            raise ValueError(f"gateway {gateway_id}: unsupported Modbus url {url!r}")

    async def _connect(self) -> None:
        if self._client.connected:
            return
        try:
            ok = await self._client.connect()
        except OSError as exc:
            raise Unreachable(f"cannot connect to {self.url}: {exc}", endpoint=self.url) from exc
        if not ok:
            raise Unreachable(f"cannot connect to {self.url}", endpoint=self.url)

    async def read_registers(self, unit: int, function: FunctionCode, start: int,
                             count: int) -> list[int]:
        """One FC03/FC04 read.

        Args:
            unit: Modbus unit (device) id.
            function: FC03 or FC04.
            start: First wire address.
            count: Number of registers.

        Returns:
            The register values.

        Raises:
            Unreachable: No connection.
            NoAnswer: Timeout, or the gateway says the device did not respond.
            AbnormalReply: Any other Modbus exception response.
        """
        from pymodbus.exceptions import ConnectionException, ModbusIOException

        async with self._lock:
            await self._connect()
            self.requests += 1
            call = (self._client.read_input_registers
                    if function is FunctionCode.READ_INPUT_REGISTERS
                    else self._client.read_holding_registers)
            try:
                rr = await call(start, count=count, device_id=unit)
            except ConnectionException as exc:
                self.errors += 1
                raise Unreachable(f"{self.url}: {exc}", endpoint=self.url) from exc
            except (ModbusIOException, TimeoutError, OSError) as exc:
                self.errors += 1
                raise NoAnswer(f"{self.url} unit {unit}: no answer ({exc})",
                               endpoint=self.url) from exc
        if rr.isError():
            self.errors += 1
            code = int(getattr(rr, "exception_code", 0) or 0)
            if code == GATEWAY_NO_RESPONSE:
                raise NoAnswer(f"{self.url} unit {unit}: device did not respond",
                               endpoint=self.url)
            raise AbnormalReply(f"{self.url} unit {unit}: exception {code:#04x}",
                                error_bits=(f"modbus_exception_{code:#04x}",), code=code)
        return list(rr.registers)

    async def read(self, unit: int, register_map: RegisterMap,
                   quantities: Iterable[str] | None = None) -> dict[str, QuantityValue]:
        """Read quantities of one meter through its register map.

        Args:
            unit: Modbus unit id (from the archive).
            register_map: The meter model's map.
            quantities: Wanted quantities (default: those of the map that are in the
                meterhub vocabulary and present).

        Returns:
            Quantity name -> decoded value.

        Raises:
            LinkError: As :meth:`read_registers`.
            AbnormalReply: A Modbus exception response.
            BadReply: Registers that do not decode.
        """
        out: dict[str, QuantityValue] = {}
        for req in plan_reads(register_map, quantities=quantities):
            regs = await self.read_registers(unit, req.function, req.start, req.count)
            try:
                values = decode_response(register_map, req, regs)
            except DecodeError as exc:
                raise BadReply(f"{self.url} unit {unit}: {exc}", reason=str(exc.reason)) from exc
            for v in values:
                out[v.quantity] = v
        return out

    async def close(self) -> None:
        """Close the client."""
        self._client.close()


_MAPS: dict[str, RegisterMap] = {}


def register_map(model: str) -> RegisterMap:
    """The built-in register map of a model, cached.

    Raises:
        MapError: No such map.
    """
    if model not in _MAPS:
        _MAPS[model] = load_builtin_map(model)
    return _MAPS[model]
