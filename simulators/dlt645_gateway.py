"""DL/T 645-2007 meters on an RS-485 bus behind a transparent TCP gateway (DTU).

One gateway = one TCP endpoint and one half-duplex bus: requests for any meter address on the
bus are answered one at a time (an ``asyncio.Lock``), after a latency plus the serial time of
request and reply (11 bits per byte at ``baud``). A share of replies is dropped or corrupted;
meters that are offline, missing a slot or not (yet, or any longer) installed stay silent.

Two modes (CONTRACTS.md ``[[gateway]] mode``):

* ``connect``: the gateway listens on a TCP port and the collector connects to it.
* ``listen``: the gateway connects out to the collector's listener, sends ``REG:<id>\\r\\n``
  and ``HB\\r\\n`` every ``heartbeat_s`` (protocols.md §11a), and reconnects when dropped.

Frames are decoded and encoded with :mod:`protocols.dlt645` only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from meterhub.clock import Clock
from protocols.dlt645 import (
    BROADCAST_ADDRESS,
    NEED_DATA,
    WILDCARD_ADDRESS,
    AbnormalResponse,
    Ack,
    Frame,
    FrameDecoder,
    Function1997,
    Function2007,
    ReadAddressRequest,
    ReadAddressResponse,
    ReadRequest,
    ReadResponse,
    RemoteCommand,
    RemoteControlRequest,
    TimeSyncRequest,
    Version,
    WriteRequest,
    decode_message,
    decode_values,
    detect_version,
    error_word,
    pack,
)
from simulators.scenario import DevicesConfig
from simulators.world import World

log = logging.getLogger(__name__)

ACTIONS = {
    RemoteCommand.TRIP: "trip",
    RemoteCommand.CLOSE: "close",
    RemoteCommand.CLOSE_ALLOWED: "close_allowed",
    RemoteCommand.PROTECT: "protect",
    RemoteCommand.PROTECT_RELEASE: "unprotect",
}
BROADCAST_MAX_STEP_S = 300.0


def _err(names: list[str]) -> int:
    return error_word(names, Version.V2007)


class MeterBus:
    """The meters of one gateway and how they answer DL/T 645-2007 requests.

    Args:
        world: the simulated world.
        meters: meter record indices on this bus.
        clock: the simulated clock.
        config: device settings (latency, baud, drop and corrupt shares).
        seed: random stream for drops and corruption.
    """

    def __init__(
        self, world: World, meters: list[int], clock: Clock, config: DevicesConfig, seed: int
    ) -> None:
        self.world = world
        self.clock = clock
        self.config = config
        self.by_address = {world.m_number[m]: m for m in meters}
        self.lock = asyncio.Lock()
        self.rng = np.random.default_rng(seed)
        self.frames_answered = 0
        self.requests = 0

    def now(self) -> float:
        """Simulated epoch seconds."""
        return self.clock.now().timestamp()

    async def exchange(self, frame: Frame, raw_len: int) -> bytes | None:
        """Put one request on the bus and return the wire reply (None when silent)."""
        async with self.lock:
            self.requests += 1
            reply = self.answer(frame)
            cfg = self.config
            wire_bytes = raw_len + (len(reply) if reply else 0)
            delay = cfg.latency_ms / 1000.0 + (wire_bytes * 11.0 / cfg.baud if cfg.baud else 0.0)
            if delay > 0:
                await asyncio.sleep(delay)
            if reply is None:
                return None
            if cfg.drop_share and self.rng.random() < cfg.drop_share:
                return None
            if cfg.corrupt_share and self.rng.random() < cfg.corrupt_share:
                buf = bytearray(reply)
                i = int(self.rng.integers(4, len(buf)))
                buf[i] ^= 0x5A
                reply = bytes(buf)
            self.frames_answered += 1
            return reply

    # --------------------------------------------------------------- answers
    def answer(self, frame: Frame) -> bytes | None:
        """The reply to one request frame (None: no reply on the bus)."""
        if frame.is_response:
            return None
        version = detect_version(frame)
        msg, _warnings = decode_message(frame, version)
        t = self.now()
        w = self.world
        if isinstance(msg, TimeSyncRequest):
            if msg.address == BROADCAST_ADDRESS:
                when = datetime.strptime(msg.time, "%Y-%m-%d %H:%M:%S")
                for rec in self.by_address.values():
                    if not w.silent(rec, t):
                        w.set_clock(w.m_point[rec], t, when, max_step_s=BROADCAST_MAX_STEP_S)
            return None
        if isinstance(msg, ReadAddressRequest):
            if msg.address != WILDCARD_ADDRESS or len(self.by_address) != 1:
                return None  # several meters would answer at once: garbage, no reply
            ((addr, only),) = self.by_address.items()
            if w.silent(only, t) or self._is_1997(only):
                return None
            return pack(ReadAddressResponse(addr), preamble=4)
        address = getattr(msg, "address", None)
        if not isinstance(address, str):
            return None
        m = self.by_address.get(address)
        if m is None or w.silent(m, t):
            return None
        if self._is_1997(m):
            return self._answer_1997(address, m, msg, version, t)
        if version is Version.V1997:
            return None  # a 2007 meter does not know the 1997 function codes
        if isinstance(msg, ReadRequest):
            return pack(self._read(address, m, msg.di, t), preamble=4)
        if isinstance(msg, RemoteControlRequest):
            return pack(self._remote(address, m, msg, t), preamble=4)
        if isinstance(msg, WriteRequest):
            return pack(self._write(address, m, msg, t), preamble=4)
        return pack(
            AbnormalResponse(address, frame.control & 0x1F, _err(["other_error"])), preamble=4
        )

    def _is_1997(self, m: int) -> bool:
        return bool(self.world.protocol[self.world.m_point[m]] == "dlt645-1997")

    def _answer_1997(
        self, address: str, m: int, msg: Any, version: Version, t: float
    ) -> bytes | None:
        """A DL/T 645-1997 meter: reads of energies, instantaneous values, date and time."""
        fn = int(Function1997.READ)
        err = error_word(["di_error"], Version.V1997)
        if version is Version.V2007:
            # 1997 meters answer a 2007-style read with a DI error (protocols.md §9)
            if isinstance(msg, ReadRequest):
                return pack(AbnormalResponse(address, fn, err, version=Version.V1997), preamble=4)
            return None
        if not isinstance(msg, ReadRequest):
            return None
        w = self.world
        p = w.m_point[m]
        di = msg.di
        regs = w.registers(m, t)
        g = int((t - w.t0) // w.slot_s)
        total = float(regs[0] + w.spike_at(m, g)) % 1_000_000.0
        values: list[object] | None = None
        if di == 0x9010:
            values = [total]
        elif di == 0x901F:
            values = [total, *(float(x) for x in regs[1:5])]
        elif 0x9011 <= di <= 0x9014:
            values = [float(regs[di - 0x9010])]
        elif di in (0x9020, 0x902F):
            values = [float(regs[5])] if di == 0x9020 else [float(regs[5]), 0.0, 0.0, 0.0, 0.0]
        elif di in (0xB611, 0xB621, 0xB630, 0xB650):
            inst = w.instantaneous(m, t)
            if di == 0xB611:
                values = [round(inst["voltage_a_v"])]
            elif di == 0xB621:
                values = [round(inst["current_a_a"], 2)]
            elif di == 0xB630:
                values = [inst["active_power_total_kw"]]
            else:
                values = [inst["power_factor_total"]]
        elif di == 0xC010:
            values = [w.meter_time(p, t).strftime("%Y-%m-%d")]
        elif di == 0xC011:
            values = [w.meter_time(p, t).strftime("%H:%M:%S")]
        elif di == 0xC032:
            values = [address]
        if values is None:
            return pack(AbnormalResponse(address, fn, err, version=Version.V1997), preamble=4)
        return pack(
            ReadResponse.from_values(address, di, values, version=Version.V1997), preamble=4
        )

    def _read(self, address: str, m: int, di: int, t: float) -> Any:
        w = self.world
        p = w.m_point[m]
        fn = int(Function2007.READ)
        regs = w.registers(m, t)
        g = int((t - w.t0) // w.slot_s)
        spike = w.spike_at(m, g)
        total = float(regs[0] + spike) % 1_000_000.0
        tariffs = [float(x) for x in regs[1:5]]
        values: list[object] | None = None
        if di == 0x00010000:
            values = [total]
        elif di == 0x0001FF00:
            values = [total, *tariffs]
        elif 0x00010100 <= di <= 0x00010400 and di & 0xFF == 0 and (di >> 8) & 0xFF >= 1:
            values = [tariffs[((di >> 8) & 0xFF) - 1]]
        elif di in (0x00020000, 0x0002FF00):
            values = [float(regs[5])]
        elif di in (0x02010100, 0x02020100, 0x02030000, 0x02060000, 0x02800002):
            inst = w.instantaneous(m, t)
            key = {
                0x02010100: "voltage_a_v",
                0x02020100: "current_a_a",
                0x02030000: "active_power_total_kw",
                0x02060000: "power_factor_total",
                0x02800002: "frequency_hz",
            }[di]
            values = [inst[key]]
        elif di == 0x04000101:
            values = [w.meter_time(p, t).strftime("%Y-%m-%d")]
        elif di == 0x04000102:
            values = [w.meter_time(p, t).strftime("%H:%M:%S")]
        elif di in (0x04000401, 0x04000402):
            values = [address]
        elif di == 0x04000503:
            values = [w.status_word_3(m, t)]
        elif di == 0x03110000:
            values = [w.power_down_count(p, t)]
        elif (di & 0xFFFFFF00) in (0x05060000, 0x05060100, 0x05060200) and 1 <= di & 0xFF <= 0x3E:
            fz = w.freeze_before(m, t, di & 0xFF)
            if fz is not None:
                vals, label = fz
                kind = (di >> 8) & 0xFF
                if kind == 0:
                    values = [datetime.fromtimestamp(label, UTC).strftime("%Y-%m-%d %H:%M")]
                elif kind == 1:
                    values = [float(x) for x in vals[:5]]
                else:
                    values = [float(vals[5])]
        if values is None:
            return AbnormalResponse(address, fn, _err(["no_requested_data"]))
        return ReadResponse.from_values(address, di, values)

    def _remote(self, address: str, m: int, msg: RemoteControlRequest, t: float) -> Any:
        fn = int(Function2007.REMOTE_CONTROL)
        action = ACTIONS.get(msg.command)  # type: ignore[call-overload]
        if action is None:
            return Ack(address, fn)  # alarm / alarm release: accepted, nothing to simulate
        try:
            deadline = datetime.strptime(msg.deadline, "%Y-%m-%d %H:%M:%S")
        except ValueError:
            return AbnormalResponse(address, fn, _err(["other_error"]))
        if deadline < self.world.meter_time(self.world.m_point[m], t):
            return AbnormalResponse(address, fn, _err(["other_error"]))
        result = self.world.relay_command(m, t, action)
        if result == "accepted":
            return Ack(address, fn)
        if result == "no_relay":
            return AbnormalResponse(address, fn, _err(["other_error"]))
        return AbnormalResponse(address, fn, _err(["password_error"]))

    def _write(self, address: str, m: int, msg: WriteRequest, t: float) -> Any:
        fn = int(Function2007.WRITE)
        w = self.world
        p = w.m_point[m]
        if msg.di not in (0x04000101, 0x04000102):
            return AbnormalResponse(address, fn, _err(["password_error"]))
        values, warnings = decode_values(msg.di, msg.data, Version.V2007)
        if warnings or not values:
            return AbnormalResponse(address, fn, _err(["other_error"]))
        current = w.meter_time(p, t)
        text = str(values[0].value)
        if msg.di == 0x04000101:
            new = datetime.strptime(text + current.strftime(" %H:%M:%S"), "%Y-%m-%d %H:%M:%S")
        else:
            new = datetime.strptime(current.strftime("%Y-%m-%d ") + text, "%Y-%m-%d %H:%M:%S")
        w.set_clock(p, t, new, max_step_s=None)
        return Ack(address, fn)


class Dlt645Gateway:
    """A transparent TCP gateway in front of one :class:`MeterBus`.

    Args:
        gateway_id: the archive id (``G0001``).
        bus: the meters behind it.
        mode: ``connect`` (listen on a port) or ``listen`` (connect out and register).
        config: device settings.
    """

    def __init__(self, gateway_id: str, bus: MeterBus, mode: str, config: DevicesConfig) -> None:
        self.id = gateway_id
        self.bus = bus
        self.mode = mode
        self.config = config
        self.server: asyncio.AbstractServer | None = None
        self.port = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.writers: set[asyncio.StreamWriter] = set()
        self.registrations = 0

    async def start(self, host: str, port: int = 0) -> None:
        """Start serving (``connect`` mode) or connecting out (``listen`` mode)."""
        if self.mode == "connect":
            self.server = await asyncio.start_server(self._on_client, host, port)
            self.port = self.server.sockets[0].getsockname()[1]
        else:
            target = self.config.dtu_connect_to
            task = asyncio.create_task(self._connect_out(target))
            self.tasks.add(task)

    @property
    def url(self) -> str:
        """``tcp://host:port`` of a listening gateway."""
        return f"tcp://{self.config.host}:{self.port}"

    async def close(self) -> None:
        """Stop serving and close every connection."""
        if self.server is not None:
            self.server.close()
        for wr in list(self.writers):
            wr.close()
        await asyncio.sleep(0)
        for task in list(self.tasks):
            task.cancel()
        for task in list(self.tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.server is not None:
            with contextlib.suppress(Exception):
                await self.server.wait_closed()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._serve(reader, writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        decoder = FrameDecoder()
        try:
            while True:
                data = await reader.read(4096)
                if not data:
                    break
                decoder.feed(data)
                while True:
                    before = len(decoder.buffered)
                    frame = decoder.next_frame()
                    if frame is NEED_DATA:
                        break
                    used = max(1, before - len(decoder.buffered))
                    reply = await self.bus.exchange(frame, used)  # type: ignore[arg-type]
                    if reply is not None:
                        writer.write(reply)
                        await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _connect_out(self, target: str) -> None:
        parts = urlsplit(target)
        host, port = parts.hostname or "127.0.0.1", parts.port or 0
        delay = 1.0
        while True:
            try:
                reader, writer = await asyncio.open_connection(host, port)
            except OSError:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            delay = 1.0
            writer.write(f"REG:{self.id}\r\n".encode("ascii"))
            await writer.drain()
            self.registrations += 1
            hb = asyncio.create_task(self._heartbeat(writer))
            try:
                await self._serve(reader, writer)
            finally:
                hb.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await hb
            await asyncio.sleep(delay)

    async def _heartbeat(self, writer: asyncio.StreamWriter) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_s)
            async with self.bus.lock:
                writer.write(b"HB\r\n")
                await writer.drain()
