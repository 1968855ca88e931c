"""MQTT concentrators (paho-mqtt 2.x, callback API v2, MQTT v5) reading their meters on schedule.

Each concentrator:

* reads its meters at every interval boundary of simulated time and publishes
  ``up/readings`` batches (registers, tariff registers, reverse energy where collected, and
  ``interval_kwh`` from consecutive reads), at most ``mqtt.batch_size`` readings a batch;
* after each local midnight reads the daily freezes (``daily_frozen_forward_active_total_kwh``
  stamped with the meter's own freeze time) and re-reads freezes it missed in the last
  ``mqtt.reread_days`` days;
* publishes ``up/events`` (power loss/restore, relay state changes, clock resets);
* answers ``down/read`` (quantities, or one forwarded DL/T 645 frame answered by the meter's
  own codec, sent back on ``up/frames``), ``down/relay`` and ``down/time`` with ``up/acks``
  (a repeated command id gets the same ack again);
* keeps every batch until a ``down/receipt`` names it; while the broker is unreachable it keeps
  reading into the buffer and re-sends everything unacknowledged after reconnecting;
* when injected offline, disconnects and neither reads nor publishes for that window.

Payloads are built and parsed with :mod:`protocols.mqtt` only.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties

from meterhub.clock import Clock
from protocols.dlt645 import NEED_DATA as DLT_NEED_DATA
from protocols.dlt645 import FrameDecoder
from protocols.mqtt import (
    AckResult,
    CommandAck,
    EventCode,
    EventsBatch,
    ForwardedFrame,
    FramesBatch,
    MeterEvent,
    MqttError,
    ReadCommand,
    Reading,
    ReadingsBatch,
    Receipt,
    RelayCommand,
    RelayState,
    TimeSync,
    downlink_filter,
    encode_uplink,
    parse_downlink,
)
from simulators.dlt645_gateway import MeterBus
from simulators.scenario import DevicesConfig, MqttConfig
from simulators.world import World

log = logging.getLogger(__name__)


@dataclass
class BrokerParams:
    """How to reach the broker."""

    host: str
    port: int
    username: str
    password: str
    tls: bool = False

    @classmethod
    def from_url(cls, url: str, username: str, password: str) -> BrokerParams:
        """Parse ``mqtt://host:port`` (``mqtts://`` for TLS).

        Raises:
            ValueError: the URL is not an mqtt:// or mqtts:// URL with a host.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"not an mqtt:// URL: {url!r}")
        tls = parts.scheme == "mqtts"
        return cls(
            parts.hostname,
            parts.port or (8883 if tls else 1883),
            username or (parts.username or ""),
            password or (parts.password or ""),
            tls,
        )


class Concentrator:
    """One simulated concentrator and its meters.

    Args:
        cid: concentrator id (also its MQTT username and client id).
        world: the simulated world.
        meters: meter records read by this concentrator.
        index: concentrator index in the world.
        clock: the simulated clock.
        broker: broker connection parameters.
        config: MQTT settings of the scenario.
        devices: device settings (for the DL/T 645 answers to forwarded frames).
    """

    def __init__(
        self,
        cid: str,
        world: World,
        meters: list[int],
        index: int,
        clock: Clock,
        broker: BrokerParams,
        config: MqttConfig,
        devices: DevicesConfig,
    ) -> None:
        self.id = cid
        self.world = world
        self.meters = np.array(sorted(meters), dtype=np.int64)
        self.index = index
        self.clock = clock
        self.broker = broker
        self.cfg = config
        self.bus = MeterBus(world, meters, clock, devices, seed=world.sc.seed * 7919 + index)
        self.by_number = {world.m_number[m]: m for m in meters}
        self.buffer: OrderedDict[tuple[str, str], tuple[str, bytes]] = OrderedDict()
        self.seq = itertools.count(1)
        self.connected = asyncio.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.inbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self.acks: dict[str, bytes] = {}
        self.last_regs: dict[int, tuple[int, float]] = {}
        self.frozen_sent: set[tuple[int, int]] = set()
        self.published = 0
        self.readings_sent = 0
        self.receipts = 0
        self.skipped_slots = 0
        self.client: mqtt.Client | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._online = True
        self._relay_seen: dict[int, bool] = {}
        self._clock_reset_sent: set[int] = set()

    # ---------------------------------------------------------------- broker
    def _make_client(self) -> mqtt.Client:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.id, protocol=mqtt.MQTTv5)
        if self.broker.username or self.broker.password:
            c.username_pw_set(self.broker.username or self.id, self.broker.password or None)
        if self.broker.tls:
            c.tls_set()
        c.max_inflight_messages_set(self.cfg.inflight_max)
        c.max_queued_messages_set(self.cfg.buffer_limit)
        c.reconnect_delay_set(min_delay=1, max_delay=10)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        return c

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: Any,
        reason_code: Any,
        properties: Properties | None,
    ) -> None:
        del userdata, flags, properties
        if reason_code.is_failure:
            log.warning("%s: broker refused the connection: %s", self.id, reason_code)
            return
        client.subscribe(downlink_filter(self.id), qos=1)
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._connected)

    def _connected(self) -> None:
        self.connected.set()
        self._resend()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: Any,
        reason_code: Any,
        properties: Properties | None,
    ) -> None:
        del client, userdata, flags, reason_code, properties
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.connected.clear)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        del client, userdata
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.inbox.put_nowait, (msg.topic, bytes(msg.payload)))

    async def start(self) -> None:
        """Connect (in the background) and start reading on schedule."""
        self.loop = asyncio.get_running_loop()
        self.client = self._make_client()
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=30)
        self.client.loop_start()
        self._tasks = [
            asyncio.create_task(self._schedule()),
            asyncio.create_task(self._commands()),
            asyncio.create_task(self._resender()),
        ]

    async def _go_offline(self) -> None:
        """An injected outage of the concentrator: drop the broker connection, stop reading."""
        self._online = False
        self.connected.clear()
        if self.client is not None:
            self.client.disconnect()
            await asyncio.to_thread(self.client.loop_stop)

    def _go_online(self) -> None:
        """Back from an outage: reconnect (the buffer is re-sent once connected)."""
        self._online = True
        self.client = self._make_client()
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=30)
        self.client.loop_start()

    async def close(self) -> None:
        """Stop reading and disconnect."""
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.disconnect()
            await asyncio.to_thread(self.client.loop_stop)

    # -------------------------------------------------------------- publish
    def _publish(self, message: Any, *, keep: bool = True) -> None:
        topic, payload = encode_uplink(self.id, message)
        key = (topic, str(getattr(message, "batch", "")))
        if keep:
            self.buffer[key] = (topic, payload)
            while len(self.buffer) > self.cfg.buffer_limit:
                self.buffer.popitem(last=False)
        if self._online and self.connected.is_set() and self.client is not None:
            self.client.publish(topic, payload, qos=self.cfg.qos)
            self.published += 1

    def _resend(self) -> None:
        if not self._online or self.client is None or not self.connected.is_set():
            return
        for topic, payload in list(self.buffer.values()):
            self.client.publish(topic, payload, qos=self.cfg.qos)
            self.published += 1

    async def _resender(self) -> None:
        while True:
            await asyncio.sleep(15.0)
            self._resend()

    def _iso(self, t: float) -> datetime:
        return datetime.fromtimestamp(t, UTC).astimezone(self.world.zone)

    def _batches(self, readings: list[Reading], command: str | None = None) -> None:
        size = self.cfg.batch_size
        for k in range(0, len(readings), size):
            seq = next(self.seq)
            batch = ReadingsBatch(
                batch=f"{self.id}-r{seq}",
                seq=seq,
                command=command,
                sent=self._iso(self.clock.now().timestamp()),
                readings=tuple(readings[k : k + size]),
            )
            self._publish(batch)
            self.readings_sent += len(batch.readings)

    # ------------------------------------------------------------- schedule
    def _offline(self, g: int) -> bool:
        """True when the concentrator is down for the slot ending at boundary ``g``."""
        win = self.world.conc_offline.get(self.index)
        return win is not None and win[0] <= g - 1 < win[1]

    async def _schedule(self) -> None:
        w = self.world
        now = self.clock.now().timestamp()
        g = max(0, int(np.ceil((now - w.t0) / w.slot_s)))
        while True:
            t = w.g_time(g)
            await self.clock.sleep_until(datetime.fromtimestamp(t, UTC))
            offline = self._offline(g)
            if offline and self._online:
                await self._go_offline()
            elif not offline and not self._online:
                self._go_online()
            if not offline:
                d = w.day_of(t - 1e-6)
                now_g = int((self.clock.now().timestamp() - w.t0) // w.slot_s)
                if w.days and 0 <= d < min(w.days) and now_g > g:
                    # fell behind by more than the days kept in memory: skip ahead
                    log.warning(
                        "%s: %d slots behind the simulated clock; skipping them", self.id, now_g - g
                    )
                    self.skipped_slots += now_g - g
                    g = now_g
                    await asyncio.sleep(0)
                    continue
                self.read_slot(g)
                await asyncio.sleep(0)  # let the other concentrators and devices run
            g += 1

    def read_slot(self, g: int) -> None:
        """Read every meter at slot boundary ``g`` and publish readings and events."""
        w = self.world
        t = w.g_time(g)
        ms = self.meters
        silent = w.silent_many(ms, t - 1e-6)
        regs = w.registers_many(ms, t)
        readings: list[Reading] = []
        ts = self._iso(t)
        for i, m in enumerate(ms):
            m = int(m)
            p = w.m_point[m]
            if silent[i]:
                continue
            num = w.m_number[m]
            r = regs[i]
            readings.append(
                Reading(meter=num, quantity="forward_active_total_kwh", ts=ts, value=float(r[0]))
            )
            for k in range(4):
                readings.append(
                    Reading(
                        meter=num,
                        quantity=f"forward_active_t{k + 1}_kwh",
                        ts=ts,
                        value=float(r[1 + k]),
                    )
                )
            if (w.bidir_archive[p] or (r[5] > 0 and not w.has_pv[p])) and not (
                w.has_pv[p] and not w.bidir_archive[p]
            ):
                readings.append(
                    Reading(
                        meter=num, quantity="reverse_active_total_kwh", ts=ts, value=float(r[5])
                    )
                )
            prev = self.last_regs.get(m)
            if prev is not None and prev[0] == g - 1:
                delta = (float(r[0]) - prev[1]) % 1_000_000.0 + w.spike_at(m, g)
                readings.append(
                    Reading(
                        meter=num,
                        quantity="interval_kwh",
                        ts=ts,
                        value=round(delta, 2),
                        interval=w.sc.interval,
                    )
                )
            self.last_regs[m] = (g, float(r[0]))
        if g % w.S == 0:
            readings.extend(self._freezes(g, t + 300.0))
        if readings:
            self._batches(readings)
        self._events(t)

    def _freezes(self, g: int, t: float) -> list[Reading]:
        w = self.world
        b = g // w.S
        out = []
        for m in self.meters:
            m = int(m)
            if w.silent(m, t):
                continue
            for back in range(self.cfg.reread_days + 1):
                bb = b - back
                if bb < 0 or (m, bb) in self.frozen_sent:
                    continue
                fz = w.freezes.get(bb)
                if fz is None or not fz.valid[m] or fz.instant[m] > t:
                    continue
                ts = datetime.fromtimestamp(float(fz.label[m]), UTC).replace(tzinfo=w.zone)
                out.append(
                    Reading(
                        meter=w.m_number[m],
                        quantity="daily_frozen_forward_active_total_kwh",
                        ts=ts,
                        value=float(fz.values[m, 0]),
                    )
                )
                self.frozen_sent.add((m, bb))
        return out

    def _events(self, t: float) -> None:
        w = self.world
        events: list[MeterEvent] = []
        t_prev = t - w.slot_s
        for m in self.meters:
            m = int(m)
            p = w.m_point[m]
            a = int(w.true_area[p])
            if a in w.outages:
                g0, g1 = w.outages[a]
                if t_prev < w.g_time(g0) <= t:
                    events.append(
                        MeterEvent(
                            meter=w.m_number[m],
                            code=EventCode.POWER_LOSS,
                            ts=self._iso(w.g_time(g0)),
                        )
                    )
                if t_prev < w.g_time(g1) <= t:
                    events.append(
                        MeterEvent(
                            meter=w.m_number[m],
                            code=EventCode.POWER_LOSS,
                            ts=self._iso(w.g_time(g0)),
                            end=self._iso(w.g_time(g1)),
                        )
                    )
            if p in w.relays and w.meter_installed(m, t):
                closed = w.relay_status(m, t)[0]
                if self._relay_seen.get(m, True) != closed:
                    events.append(
                        MeterEvent(
                            meter=w.m_number[m],
                            code=EventCode.RELAY_STATE,
                            ts=self._iso(t),
                            relay=RelayState.CLOSED if closed else RelayState.OPEN,
                        )
                    )
                self._relay_seen[m] = closed
            for f in w.faults.get(p, []):
                if f["kind"] == "clock_reset" and m not in self._clock_reset_sent:
                    tr = w.g_time(int(f["since_g"]))
                    if tr <= t:
                        prev = w.meter_time(p, tr - 1.0)
                        events.append(
                            MeterEvent(
                                meter=w.m_number[m],
                                code=EventCode.CLOCK_RESET,
                                ts=datetime(2000, 1, 1, tzinfo=w.zone),
                                previous_time=prev.replace(tzinfo=w.zone),
                            )
                        )
                        self._clock_reset_sent.add(m)
        for k in range(0, len(events), 500):
            seq = next(self.seq)
            self._publish(
                EventsBatch(batch=f"{self.id}-e{seq}", seq=seq, events=tuple(events[k : k + 500]))
            )

    # ------------------------------------------------------------- commands
    async def _commands(self) -> None:
        while True:
            topic, payload = await self.inbox.get()
            try:
                _cid, msg = parse_downlink(topic, payload)
            except MqttError as exc:
                log.warning("%s: bad downlink on %s: %s", self.id, topic, exc)
                continue
            if not self._online:
                continue
            try:
                self.handle(msg)
            except Exception:  # a faulty command must not stop the concentrator
                log.exception("%s: command failed", self.id)

    def handle(self, msg: Any) -> None:
        """Act on one parsed downlink message."""
        now = self.clock.now().timestamp()
        if isinstance(msg, Receipt):
            kind = {"readings": "readings", "events": "events", "frames": "frames"}[str(msg.kind)]
            for key in [k for k in self.buffer if k[1] == msg.batch and k[0].endswith("/" + kind)]:
                del self.buffer[key]
            self.receipts += 1
            return
        if isinstance(msg, RelayCommand | TimeSync | ReadCommand) and msg.command in self.acks:
            self._ack_again(msg.command)
            return
        if isinstance(msg, RelayCommand):
            self._relay(msg, now)
        elif isinstance(msg, TimeSync):
            self._time(msg, now)
        elif isinstance(msg, ReadCommand):
            self._read(msg, now)

    def _ack(self, ack: CommandAck) -> None:
        topic, payload = encode_uplink(self.id, ack)
        self.acks[ack.command] = payload
        if self._online and self.client is not None and self.connected.is_set():
            self.client.publish(topic, payload, qos=self.cfg.qos)

    def _ack_again(self, command: str) -> None:
        payload = self.acks[command]
        if self.client is not None and self.connected.is_set():
            self.client.publish(f"meterhub/v1/c/{self.id}/up/acks", payload, qos=self.cfg.qos)

    def _relay(self, msg: RelayCommand, now: float) -> None:
        w = self.world
        m = self.by_number.get(msg.meter)
        ts = self._iso(now)
        if m is None:
            self._ack(
                CommandAck(
                    command=msg.command,
                    result=AckResult.REJECTED,
                    ts=ts,
                    meter=msg.meter,
                    detail="unknown meter",
                )
            )
            return
        if msg.deadline.timestamp() < now:
            self._ack(
                CommandAck(command=msg.command, result=AckResult.EXPIRED, ts=ts, meter=msg.meter)
            )
            return
        if w.silent(m, now):
            self._ack(
                CommandAck(command=msg.command, result=AckResult.NO_ANSWER, ts=ts, meter=msg.meter)
            )
            return
        result = w.relay_command(m, now, str(msg.action))
        closed = w.relay_status(m, now)[0]
        word = w.status_word_3(m, now)
        if result == "accepted":
            self._ack(
                CommandAck(
                    command=msg.command,
                    result=AckResult.DONE,
                    ts=ts,
                    meter=msg.meter,
                    status_word_3=word,
                    relay=RelayState.CLOSED if closed else RelayState.OPEN,
                )
            )
        else:
            bits = ("password_error",) if result == "refused_protected" else ("other_error",)
            self._ack(
                CommandAck(
                    command=msg.command,
                    result=AckResult.REFUSED,
                    ts=ts,
                    meter=msg.meter,
                    error_bits=bits,
                    status_word_3=word,
                )
            )

    def _time(self, msg: TimeSync, now: float) -> None:
        w = self.world
        target = msg.time.astimezone(w.zone).replace(tzinfo=None)
        numbers = msg.meters or tuple(self.by_number)
        for num in numbers:
            m = self.by_number.get(num)
            if m is None or w.silent(m, now):
                continue
            p = w.m_point[m]
            w.set_clock(p, now, target, max_step_s=None)
        self._ack(CommandAck(command=msg.command, result=AckResult.DONE, ts=self._iso(now)))

    def _read(self, msg: ReadCommand, now: float) -> None:
        w = self.world
        ts = self._iso(now)
        if msg.deadline is not None and msg.deadline.timestamp() < now:
            self._ack(CommandAck(command=msg.command, result=AckResult.EXPIRED, ts=ts))
            return
        if msg.frame is not None:
            dec = FrameDecoder()
            dec.feed(bytes.fromhex(msg.frame))
            frame = dec.next_frame()
            reply = None if frame is DLT_NEED_DATA else self.bus.answer(frame)  # type: ignore[arg-type]
            if reply is None:
                self._ack(
                    CommandAck(
                        command=msg.command, result=AckResult.NO_ANSWER, ts=ts, meter=msg.meters[0]
                    )
                )
                return
            seq = next(self.seq)
            self._publish(
                FramesBatch(
                    batch=f"{self.id}-f{seq}",
                    seq=seq,
                    command=msg.command,
                    frames=(ForwardedFrame(ts=ts, hex=reply.hex(), meter=msg.meters[0], port=2),),
                )
            )
            self._ack(CommandAck(command=msg.command, result=AckResult.DONE, ts=ts))
            return
        readings: list[Reading] = []
        quantities = msg.quantities or ("forward_active_total_kwh",)
        for num in msg.meters:
            m = self.by_number.get(num)
            if m is None or w.silent(m, now):
                continue
            regs = w.registers(m, now)
            inst = w.instantaneous(m, now)
            for q in quantities:
                value: float | int | None = None
                if q == "forward_active_total_kwh":
                    value = float(regs[0])
                elif q.startswith("forward_active_t"):
                    value = float(regs[int(q[16])])
                elif q == "reverse_active_total_kwh":
                    value = float(regs[5])
                elif q == "status_word_3":
                    value = w.status_word_3(m, now)
                elif q == "daily_frozen_forward_active_total_kwh":
                    fz = w.freeze_before(m, now)
                    if fz is not None:
                        readings.append(
                            Reading(
                                meter=num,
                                quantity=q,
                                ts=datetime.fromtimestamp(fz[1], UTC).replace(tzinfo=w.zone),
                                value=float(fz[0][0]),
                            )
                        )
                    continue
                elif q in inst:
                    value = inst[q]
                if value is not None:
                    readings.append(Reading(meter=num, quantity=q, ts=ts, value=value))
        if readings:
            self._batches(readings, command=msg.command)
            self._ack(CommandAck(command=msg.command, result=AckResult.DONE, ts=ts))
        else:
            self._ack(CommandAck(command=msg.command, result=AckResult.NO_ANSWER, ts=ts))
