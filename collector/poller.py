"""The polling collector: DL/T 645 and Modbus meters read on their schedules into TimescaleDB.

One :class:`Poller` serves every polled meter of the archive (protocols ``dlt645-2007``,
``dlt645-1997`` and ``modbus`` with a gateway). Each gateway is one bus, so its reads run one
after another, while gateways run concurrently; a gateway that does not answer, floods or sends
garbage costs only its own bus time.

One cycle (:meth:`Poller.run_cycle`) does, per gateway and in this order:

1. interval reads of the energy registers for the current slot, for the meters whose slot
   reading is not stored yet (so a restarted poller reads only what is missing), supply meters
   first, as long as the slot's grace window lasts. No read waits past half of what is left of
   the grace window, so one silent meter leaves time for the others on its bus; a reply that
   comes after the grace window is not stored as the slot's reading;
2. daily-freeze reads (``05060001`` + ``05060101``, DI0 = n-th most recent) for freezes due and
   missing in the re-read window, in :func:`collector.schedule.reread_priority` order, with a
   back-off per missing freeze; freezes older than the meter keeps (it answers
   ``no_requested_data``) are not asked for again;
3. clock checks (date + time), corrected by broadcast (sent, no reply waited for) or addressed
   write + read-back.

Steps 2 and 3 are low-priority: they stop at the next wake-up (:meth:`Poller.next_wake`) and
none of their requests waits past it, so they never delay the next slot's reads; what is left
is done in a later cycle. Times are on the poller's clock, which may run faster than real time
(a simulated fleet): waits are converted to real time with the clock's ``to_wall``. A cycle
waits for its gateways until the next wake-up at most; a gateway still busy then goes on in
the background (its next cycle queued behind it) and does not hold up the others.

Readings go through :func:`storage.readings.ingest` (source ``dlt645:<gateway>`` /
``modbus:<gateway>``) in batches, one transaction each, so a reading is either committed or
read again; a re-read is an idempotent duplicate. Corrupt frames and garbage are quarantined
(kind ``dlt645-frame``). :meth:`Poller.read_relay_state` serves control/'s read-back of
status word 3.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.types.json import Jsonb

from collector.dlt645 import (
    DTU_MODELS,
    Corrupt,
    Dlt645Link,
    DtuListener,
    DtuModel,
    LinkParams,
)
from collector.errors import AbnormalReply, BadReply, CollectorError, LinkError, Unreachable
from collector.modbus import ModbusLink, ModbusParams, register_map
from collector.schedule import (
    ClockAction,
    MissingFreeze,
    ScheduleConfig,
    clock_action,
    freeze_days_due,
    freeze_index,
    local_midnight,
    next_slot,
    reread_plan,
    slot_due,
)
from collector.serial import SerialLink, open_link
from meterhub.clock import Clock
from protocols.dlt645 import (
    RelayStatus,
    TimeSyncRequest,
    Version,
    WriteRequest,
    decode_status_word_3,
    encode_values,
)
from storage import quarantine
from storage.readings import QUANTITY_IDS, RegisterRow, ingest

log = logging.getLogger(__name__)

FORWARD = "forward_active_total_kwh"
REVERSE = "reverse_active_total_kwh"
FROZEN = "daily_frozen_forward_active_total_kwh"
FROZEN_REVERSE = "daily_frozen_reverse_active_total_kwh"
_ENERGY_DI = {
    Version.V2007: {FORWARD: 0x00010000, REVERSE: 0x00020000},
    Version.V1997: {FORWARD: 0x9010, REVERSE: 0x9020},
}
_VERSIONS = {"dlt645-2007": Version.V2007, "dlt645-1997": Version.V1997}


@dataclass(frozen=True, slots=True)
class PollMeter:
    """A polled meter as the poller needs it."""

    id: int
    number: str
    protocol: str
    role: str
    gateway_id: str
    unit_id: int | None
    model: str | None
    interval_min: int
    bidirectional: bool
    billing: bool


@dataclass(frozen=True, slots=True)
class PollGateway:
    """A gateway of the archive."""

    id: str
    url: str | None
    mode: str
    model: str | None


@dataclass(frozen=True)
class CollectorConfig:
    """Collector settings (defaults from CONTRACTS.md and protocols.md §11a).

    Attributes:
        link: DL/T 645 link parameters (FE preamble, timeout, retries).
        modbus: Modbus parameters.
        schedule: Schedule settings.
        listen_host: Where DTUs connect in.
        listen_port: Port of the DTU listener (0: any free port).
        dtu_models: DTU registration/heartbeat formats by model name.
        tls_cert: Certificate file for TLS on the DTU listener, or None for plain TCP.
        tls_key: Its key file.
        batch_size: Readings per ingest transaction.
        reread_backoff_s: First back-off of a missing freeze that could not be read.
        reread_backoff_max_s: Largest back-off.
        clock_checks: Check and correct meter clocks.
        quarantine_per_flush: Most faults quarantined per gateway between two commits; a
            flooding gateway's excess is only counted (``faults_not_kept``).
    """

    link: LinkParams = field(default_factory=LinkParams)
    modbus: ModbusParams = field(default_factory=ModbusParams)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    listen_host: str = "0.0.0.0"
    listen_port: int = 9645
    dtu_models: Mapping[str, DtuModel] = field(default_factory=lambda: dict(DTU_MODELS))
    tls_cert: str | None = None
    tls_key: str | None = None
    batch_size: int = 500
    reread_backoff_s: float = 900.0
    reread_backoff_max_s: float = 6 * 3600.0
    clock_checks: bool = True
    quarantine_per_flush: int = 20

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> CollectorConfig:
        """Build the settings from a mapping, e.g. a ``[collector]`` table of a settings file.

        Keys: ``preamble``, ``timeout``, ``retries``, ``connect_timeout`` (DL/T 645 link);
        ``modbus_timeout``, ``modbus_retries``; ``interval_min``, ``grace_fraction``,
        ``freeze_read_from`` (``"HH:MM"``), ``reread_days``, ``clock_tolerance_s``,
        ``broadcast_max_s``, ``midnight_guard_min``, ``clock_check_hours`` (schedule);
        ``listen_host``, ``listen_port``, ``tls_cert``, ``tls_key``, ``batch_size``,
        ``reread_backoff_s``, ``reread_backoff_max_s``, ``clock_checks``,
        ``quarantine_per_flush``; ``dtu_models`` (model name -> table for
        :meth:`collector.dlt645.DtuModel.from_mapping`).

        Args:
            data: The mapping.

        Returns:
            The settings; absent keys keep their defaults.

        Raises:
            ValueError: An unknown key or an invalid value.
        """
        link_keys = {"preamble", "timeout", "retries", "connect_timeout"}
        sched_keys = {"interval_min", "grace_fraction", "freeze_read_from", "reread_days",
                      "clock_tolerance_s", "broadcast_max_s", "midnight_guard_min",
                      "clock_check_hours"}
        top_keys = {"listen_host", "listen_port", "tls_cert", "tls_key", "batch_size",
                    "reread_backoff_s", "reread_backoff_max_s", "clock_checks",
                    "quarantine_per_flush"}
        unknown = set(data) - link_keys - sched_keys - top_keys - {
            "modbus_timeout", "modbus_retries", "dtu_models"}
        if unknown:
            raise ValueError(f"unknown collector setting(s): {', '.join(sorted(unknown))}")
        sched = {k: data[k] for k in sched_keys if k in data}
        if isinstance(sched.get("freeze_read_from"), str):
            hh, mm = str(sched["freeze_read_from"]).split(":")
            sched["freeze_read_from"] = time(int(hh), int(mm))
        models = dict(DTU_MODELS)
        for name, table in dict(data.get("dtu_models", {})).items():
            models[name] = DtuModel.from_mapping(name, table)
        modbus = ModbusParams(timeout=float(data.get("modbus_timeout", 3.0)),
                              retries=int(data.get("modbus_retries", 1)))
        return cls(link=LinkParams(**{k: data[k] for k in link_keys if k in data}),
                   modbus=modbus, schedule=ScheduleConfig(**sched), dtu_models=models,
                   **{k: data[k] for k in top_keys if k in data})


@dataclass(slots=True)
class PollStats:
    """Counters for the status line and tests."""

    cycles: int = 0
    reads_ok: int = 0
    no_answer: int = 0
    unreachable: int = 0
    abnormal: int = 0
    bad_replies: int = 0
    slots_missed: int = 0
    inserted: int = 0
    duplicates: int = 0
    conflicts: int = 0
    quarantined: int = 0
    faults_not_kept: int = 0
    clock_syncs: int = 0

    def line(self) -> str:
        """One status line."""
        return (f"cycles={self.cycles} reads={self.reads_ok} no_answer={self.no_answer} "
                f"unreachable={self.unreachable} abnormal={self.abnormal} "
                f"bad={self.bad_replies} stored={self.inserted} dup={self.duplicates} "
                f"conflicts={self.conflicts} quarantined={self.quarantined} "
                f"faults_not_kept={self.faults_not_kept} "
                f"missed_slots={self.slots_missed} clock_syncs={self.clock_syncs}")


_ARCHIVE_SQL = """
SELECT m.id, m.number, m.protocol, m.role, m.gateway_id, m.unit_id, m.model,
       coalesce(m.interval_min, %(default)s), m.bidirectional, m.account_id IS NOT NULL
FROM meter m
WHERE m.protocol IN ('dlt645-2007', 'dlt645-1997', 'modbus') AND m.gateway_id IS NOT NULL
  AND (m.installed_at IS NULL OR m.installed_at <= %(now)s)
  AND (m.removed_at IS NULL OR m.removed_at > %(now)s)
ORDER BY m.gateway_id, (m.role <> 'supply'), m.number
"""


async def load_poll_archive(
    conn: psycopg.AsyncConnection[Any], *, now: datetime, default_interval: int
) -> tuple[list[PollMeter], list[PollGateway]]:
    """The polled meters and the gateways of the archive, as of ``now``.

    Args:
        conn: Open connection.
        now: Meters installed after or removed before this instant are left out.
        default_interval: Interval for meters without one.

    Returns:
        ``(meters, gateways)``.
    """
    cur = await conn.execute(_ARCHIVE_SQL, {"default": default_interval, "now": now})
    meters = [PollMeter(int(r[0]), r[1], r[2], r[3], r[4], r[5], r[6], int(r[7]), bool(r[8]),
                        bool(r[9])) for r in await cur.fetchall()]
    cur = await conn.execute("SELECT id, url, mode, model FROM gateway ORDER BY id")
    gateways = [PollGateway(r[0], r[1], r[2], r[3]) for r in await cur.fetchall()]
    return meters, gateways


class Poller:
    """Polls the archive's DL/T 645 and Modbus meters (house style R16 worker shape).

    Args:
        db_url: Database URL.
        clock: The clock (wall or simulated) the schedule follows.
        tz: Site time zone.
        config: Collector settings.
    """

    def __init__(self, *, db_url: str, clock: Clock, tz: ZoneInfo,
                 config: CollectorConfig | None = None) -> None:
        self.db_url = db_url
        self.clock = clock
        self.tz = tz
        self.config = config or CollectorConfig()
        self.stats = PollStats()
        self.links: dict[str, Dlt645Link | SerialLink] = {}
        self.modbus_links: dict[str, ModbusLink] = {}
        self.meters: dict[str, PollMeter] = {}
        self.gateways: dict[str, PollGateway] = {}
        self.listener: DtuListener | None = None
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._db_lock = asyncio.Lock()
        self._rows: list[tuple[str, RegisterRow]] = []
        self._faults: list[tuple[str, Corrupt]] = []
        self._faults_queued: dict[str, int] = {}
        self._events: list[tuple[int, datetime, str, dict[str, Any], str]] = []
        self._reread_next: dict[tuple[int, date], tuple[datetime, int]] = {}
        self._clock_checked: dict[int, datetime] = {}
        self._broadcast_day: dict[str, date] = {}
        self._cycle_started: datetime | None = None
        self._retry_at: datetime | None = None
        self._freeze_depth: dict[int, tuple[int, date]] = {}
        self._jobs: dict[str, asyncio.Task[None]] = {}

    # ----------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Connect to the database, load the archive, open links, start the DTU listener.

        Raises:
            psycopg.OperationalError: The database cannot be reached.
            Unreachable: The DTU listener cannot bind.
        """
        await self._db()
        await self.refresh_archive()
        if any(g.mode == "listen" for g in self.gateways.values()):
            listen = {gid: link for gid, link in self.links.items()
                      if isinstance(link, Dlt645Link) and self.gateways[gid].mode == "listen"}
            self.listener = DtuListener(
                listen, host=self.config.listen_host, port=self.config.listen_port,
                models=list(self.config.dtu_models.values()), tls=self._server_tls(),
            )
            await self.listener.start()
            log.info("DTU listener on %s:%d", self.config.listen_host, self.listener.port)

    def _server_tls(self) -> ssl.SSLContext | None:
        if not self.config.tls_cert:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.config.tls_cert, self.config.tls_key)
        return ctx

    async def close(self) -> None:
        """Flush what is buffered, close links, the listener and the database connection."""
        for job in self._jobs.values():
            job.cancel()
        for job in self._jobs.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await job
        self._jobs.clear()
        with contextlib.suppress(Exception):
            await self.flush()
        if self.listener is not None:
            await self.listener.close()
        for link in self.links.values():
            await link.close()
        for mb in self.modbus_links.values():
            await mb.close()
        if self._conn is not None:
            await self._conn.close()

    async def __aenter__(self) -> Poller:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ----------------------------------------------------------------- archive
    async def refresh_archive(self) -> None:
        """Reload meters and gateways; open links for new gateways."""
        meters, gateways = await load_poll_archive(
            await self._db(), now=self.clock.now(),
            default_interval=self.config.schedule.interval_min)
        self.meters = {m.number: m for m in meters}
        self.gateways = {g.id: g for g in gateways}
        used = {m.gateway_id: m.protocol for m in meters}
        for gid, proto in used.items():
            g = self.gateways.get(gid)
            if g is None:
                continue
            if proto == "modbus":
                if gid not in self.modbus_links and g.url:
                    self.modbus_links[gid] = ModbusLink(gid, g.url, params=self.config.modbus)
            elif gid not in self.links:
                model = self.config.dtu_models.get(g.model or "generic-dtu",
                                                   DTU_MODELS["generic-dtu"])
                tls = ssl.create_default_context() if (g.url or "").startswith("tls:") else None
                params = self.config.link
                if tls is not None:
                    params = LinkParams(params.preamble, params.timeout, params.retries,
                                        params.connect_timeout, params.follow_up_max, tls)
                self.links[gid] = open_link(
                    gid, g.url if g.mode == "connect" else None, params,
                    model=model, on_fault=self._on_fault)
        if self.listener is not None:  # listen-mode gateways added later
            self.listener.links = {gid: link for gid, link in self.links.items()
                                   if isinstance(link, Dlt645Link) and gid in self.gateways
                                   and self.gateways[gid].mode == "listen"}

    def _on_fault(self, gateway_id: str, event: Corrupt) -> None:
        queued = self._faults_queued.get(gateway_id, 0)
        if queued >= self.config.quarantine_per_flush:  # a flooding gateway: count, keep going
            self.stats.faults_not_kept += 1
            return
        self._faults_queued[gateway_id] = queued + 1
        self._faults.append((gateway_id, event))

    # ----------------------------------------------------------------- storage
    def _add(self, source: str, row: RegisterRow) -> None:
        self._rows.append((source, row))

    async def _db(self) -> psycopg.AsyncConnection[Any]:
        """The database connection, reopened after a loss."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = await psycopg.AsyncConnection.connect(self.db_url, autocommit=True)
        return self._conn

    async def flush(self) -> None:
        """Commit buffered readings, quarantined faults and meter events in one transaction.

        Raises:
            psycopg.Error: The commit failed; everything stays buffered for the next flush.
        """
        if not (self._rows or self._faults or self._events):
            return
        async with self._db_lock:
            conn = await self._db()
            rows, self._rows = self._rows, []
            faults, self._faults = self._faults, []
            self._faults_queued.clear()
            events, self._events = self._events, []
            by_source: dict[str, list[RegisterRow]] = defaultdict(list)
            for source, row in rows:
                by_source[source].append(row)
            received = self.clock.now()
            try:
                async with conn.transaction():
                    for source, group in by_source.items():
                        res = await ingest(conn, group, source=source,
                                           received_at=received)
                        self.stats.inserted += res.inserted
                        self.stats.duplicates += res.duplicates
                        self.stats.conflicts += res.conflicts
                    for gid, ev in faults:
                        await quarantine.add(
                            conn, source=f"dlt645:{gid}", kind="dlt645-frame",
                            raw=ev.raw, reason=ev.reason, message=ev.message,
                            context={"gateway": gid},
                        )
                    for meter_id, ts, code, detail, source in events:
                        await conn.execute(
                            "INSERT INTO meter_event (meter_id, ts, code, detail, source) "
                            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                            (meter_id, ts, code, Jsonb(detail), source),
                        )
            except BaseException:
                # keep them for the next flush (a failed transaction stored nothing)
                self._rows[:0] = rows
                self._faults[:0] = faults
                self._events[:0] = events
                raise
            self.stats.quarantined += len(faults)

    async def _maybe_flush(self) -> None:
        if len(self._rows) >= self.config.batch_size:
            await self.flush()

    async def _stored_slot(self, slot: datetime, ids: list[int]) -> set[int]:
        cur = await (await self._db()).execute(
            "SELECT meter_id FROM register_reading WHERE quantity_id = %s AND ts = %s "
            "AND meter_id = ANY(%s)", (QUANTITY_IDS[FORWARD], slot, ids))
        return {int(r[0]) for r in await cur.fetchall()}

    async def _stored_freezes(self, days: list[date], ids: list[int]) -> set[tuple[int, date]]:
        cur = await (await self._db()).execute(
            "SELECT meter_id, ts FROM register_reading WHERE quantity_id = %s "
            "AND ts = ANY(%s) AND meter_id = ANY(%s)",
            (QUANTITY_IDS[FROZEN], [local_midnight(d, self.tz) for d in days], ids))
        return {(int(r[0]), r[1].astimezone(self.tz).date()) for r in await cur.fetchall()}

    async def _blocking(self, days: list[date], ids: list[int]) -> set[tuple[int, date]]:
        """(meter, day) whose missing 00:00 reading blocks a stored line-loss result."""
        cur = await (await self._db()).execute(
            "SELECT DISTINCT meter_id, boundary FROM line_loss_blocker "
            "WHERE boundary = ANY(%s) AND meter_id = ANY(%s)",
            ([local_midnight(d, self.tz) for d in days], ids))
        return {(int(r[0]), r[1].astimezone(self.tz).date()) for r in await cur.fetchall()}

    # ----------------------------------------------------------------- cycle
    async def run_cycle(self) -> None:
        """Do every read that is due now, on every gateway concurrently, and commit."""
        now = self.clock.now()
        self._cycle_started = now
        self._retry_at = None
        await self.refresh_archive()
        by_gw: dict[str, list[PollMeter]] = defaultdict(list)
        for m in self.meters.values():
            by_gw[m.gateway_id].append(m)
        cfg = self.config.schedule
        # interval slots already stored (a restarted poller reads only what is missing)
        due: dict[int, datetime] = {}
        by_slot: dict[datetime, list[int]] = defaultdict(list)
        for m in self.meters.values():
            slot = slot_due(now, m.interval_min, self.tz, cfg.grace_fraction)
            if slot is not None:
                due[m.id] = slot
                by_slot[slot].append(m.id)
        stored: set[int] = set()
        for slot, ids in by_slot.items():
            stored |= await self._stored_slot(slot, ids)
        # freezes due and missing
        days = freeze_days_due(now, self.tz, read_from=cfg.freeze_read_from,
                               days=cfg.reread_days)
        freezers = [m for m in self.meters.values() if m.protocol == "dlt645-2007"]
        have = await self._stored_freezes(days, [m.id for m in freezers])
        blocking = await self._blocking(days, [m.id for m in freezers])
        missing = [MissingFreeze(m.number, m.role, d, m.billing, (m.id, d) in blocking)
                   for m in freezers for d in days if (m.id, d) not in have
                   and self._reread_ok(m.id, d, now) and self._freeze_kept(m.id, d, now)]
        plan = reread_plan(missing, now, self.tz, cfg.reread_days)
        freezes_by_gw: dict[str, list[MissingFreeze]] = defaultdict(list)
        for item in plan:
            freezes_by_gw[self.meters[item.meter].gateway_id].append(item)
        wake = self.next_wake()
        jobs = []
        for gid, ms in by_gw.items():
            interval = [(m, due[m.id]) for m in ms if m.id in due and m.id not in stored]
            jobs.append(self._gateway_job(gid, interval, freezes_by_gw.get(gid, [])))
        if jobs:
            # every request of a gateway's cycle ends by the next wake-up; a gateway that is
            # still busy then (e.g. a Modbus gateway that does not answer) goes on in the
            # background rather than holding up the next slot on every other gateway
            done, _pending = await asyncio.wait(jobs, timeout=self._real_seconds(wake) + 1.0)
            for job in done:
                exc = job.exception()
                if exc is not None:
                    raise exc
        await self.flush()
        self.stats.cycles += 1

    def _gateway_job(self, gid: str, interval: list[tuple[PollMeter, datetime]],
                     freezes: list[MissingFreeze]) -> asyncio.Task[None]:
        """A gateway's share of a cycle as a task, queued behind its previous one if any."""
        prev = self._jobs.get(gid)

        async def job() -> None:
            if prev is not None and not prev.done():
                await asyncio.wait({prev})
            await self._run_gateway(gid, interval, freezes)

        task = asyncio.ensure_future(job())
        task.add_done_callback(self._job_done)
        self._jobs[gid] = task
        return task

    @staticmethod
    def _job_done(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.debug("gateway cycle failed: %s", task.exception())

    def _real_seconds(self, instant: datetime) -> float:
        """Real seconds until the poller's clock reaches ``instant`` (0 when it has)."""
        to_wall = getattr(self.clock, "to_wall", None)
        if callable(to_wall):  # a simulated clock, possibly faster than real time
            left = (to_wall(instant) - datetime.now(UTC)).total_seconds()
        else:
            left = (instant - self.clock.now()).total_seconds()
        return max(0.0, left)

    def _deadline(self, instant: datetime, share: float = 1.0) -> float:
        """Event-loop time at ``share`` of the real time left until ``instant``."""
        return asyncio.get_running_loop().time() + share * self._real_seconds(instant)

    def _freeze_kept(self, meter_id: int, day: date, now: datetime) -> bool:
        """False when the meter is known not to keep the freeze of ``day`` (too old for it)."""
        known = self._freeze_depth.get(meter_id)
        if known is None:
            return True
        depth, as_of = known  # the meter kept at most `depth` freezes on `as_of`
        n = freeze_index(day, now, self.tz)
        return n <= depth + (now.astimezone(self.tz).date() - as_of).days

    def _note_retry(self, m: PollMeter, slot: datetime) -> None:
        """A slot read failed: come back half-way through what is left of its grace window."""
        window = timedelta(minutes=m.interval_min * self.config.schedule.grace_fraction)
        start = self._cycle_started or self.clock.now()
        at = start + (slot + window - start) / 2
        if at > start and (self._retry_at is None or at < self._retry_at):
            self._retry_at = at

    def _reread_ok(self, meter_id: int, day: date, now: datetime) -> bool:
        nxt = self._reread_next.get((meter_id, day))
        return nxt is None or nxt[0] <= now

    def _reread_failed(self, meter_id: int, day: date, now: datetime) -> None:
        _, attempts = self._reread_next.get((meter_id, day), (now, 0))
        delay = min(self.config.reread_backoff_s * 2 ** attempts,
                    self.config.reread_backoff_max_s)
        self._reread_next[(meter_id, day)] = (now + timedelta(seconds=delay), attempts + 1)

    async def _run_gateway(self, gid: str, interval: list[tuple[PollMeter, datetime]],
                           freezes: list[MissingFreeze]) -> None:
        link = self.links.get(gid)
        if link is not None and link.url is None and not link.connected:
            self.stats.unreachable += 1  # DTU not registered: nothing to wait for
            self.stats.slots_missed += len(interval)
            return
        grace = self.config.schedule.grace_fraction
        try:
            # 1. the slot reads, first: each waits for at most half of what is left of its
            # slot's grace window, so a silent meter cannot use up the window of the others
            for m, slot in interval:
                if slot_due(self.clock.now(), m.interval_min, self.tz, grace) != slot:
                    self.stats.slots_missed += 1
                    continue
                end = slot + timedelta(minutes=m.interval_min * grace)
                if not await self._guard(self._read_interval(m, slot, self._deadline(end, 0.5))):
                    self._note_retry(m, slot)
                await self._maybe_flush()
            # 2. and 3. low priority: they stop at the next wake-up and none of their requests
            # waits past it, so they never delay the next slot's reads
            for item in freezes:
                if self._low_priority_over():
                    return
                m = self.meters[item.meter]
                ok = await self._guard(self._read_freeze(m, item.day,
                                                         self._deadline(self.next_wake())))
                if not ok:
                    self._reread_failed(m.id, item.day, self.clock.now())
                await self._maybe_flush()
            if self.config.clock_checks and link is not None:
                for m in list(self.meters.values()):
                    if m.gateway_id == gid and m.protocol == "dlt645-2007":
                        if self._low_priority_over():
                            return
                        await self._guard(self._check_clock(link, m))
        except Unreachable as exc:
            self.stats.unreachable += 1
            log.warning("gateway %s unreachable: %s", gid, exc)

    def _low_priority_over(self) -> bool:
        """True once the next wake-up has come: re-reads and clock checks wait for a later cycle."""
        return self.clock.now() >= self.next_wake()

    async def _guard(self, coro: Any) -> bool:
        """Run one read; count its failure. Unreachable aborts the gateway's cycle."""
        try:
            await coro
        except Unreachable:
            raise
        except AbnormalReply as exc:
            self.stats.abnormal += 1
            log.debug("abnormal reply: %s", exc)
        except (BadReply, ValueError) as exc:  # ValueError: an odd freeze label or date
            self.stats.bad_replies += 1
            log.debug("bad reply: %s", exc)
        except LinkError as exc:
            self.stats.no_answer += 1
            log.debug("no answer: %s", exc)
        else:
            self.stats.reads_ok += 1
            return True
        return False

    # ----------------------------------------------------------------- reads
    async def _read_interval(self, m: PollMeter, slot: datetime,
                             deadline: float | None = None) -> None:
        wanted = [FORWARD, REVERSE] if m.bidirectional else [FORWARD]
        rows = []  # all of a meter's slot readings, or none: a retry then reads them all
        if m.protocol == "modbus":
            mb = self.modbus_links[m.gateway_id]
            rmap = register_map(m.model or "sdm630")
            qs = [q for q in wanted if rmap.entry(q) is not None]
            values = await mb.read(m.unit_id if m.unit_id is not None else 1, rmap, qs)
            rows = [RegisterRow(m.id, QUANTITY_IDS[q], slot, float(values[q].value)) for q in qs]
            source = f"modbus:{m.gateway_id}"
        else:
            version = _VERSIONS[m.protocol]
            link = self.links[m.gateway_id]
            for q in wanted:
                result = await link.read(m.number, _ENERGY_DI[version][q], version=version,
                                         deadline=deadline)
                value = result.values().get(q)
                if isinstance(value, int | float):
                    rows.append(RegisterRow(m.id, QUANTITY_IDS[q], slot, float(value)))
            source = f"dlt645:{m.gateway_id}"
        if slot_due(self.clock.now(), m.interval_min, self.tz,
                    self.config.schedule.grace_fraction) != slot:
            # read after the slot's grace window: a register read then is not the slot's value
            self.stats.slots_missed += 1
            log.debug("meter %s: slot %s read too late, not stored", m.number, slot)
            return
        for row in rows:
            self._add(source, row)

    async def _read_freeze(self, m: PollMeter, day: date, deadline: float | None = None) -> None:
        link = self.links[m.gateway_id]
        now = self.clock.now()
        n = freeze_index(day, now, self.tz)
        try:
            label = await link.read(m.number, 0x05060000 + n, deadline=deadline)
        except AbnormalReply as exc:
            if n >= 2 and "no_requested_data" in exc.error_bits:
                # the meter keeps fewer than n freezes (it is newer than that): this day and
                # older ones are never there, so they are not asked for again
                self._freeze_depth[m.id] = (n - 1, now.astimezone(self.tz).date())
            raise
        label_text = label.values().get("daily_frozen_time")
        if not isinstance(label_text, str):
            raise BadReply(f"meter {m.number}: freeze {n} has no time label", reason="no_label")
        frozen_at = datetime.strptime(label_text, "%Y-%m-%d %H:%M").replace(tzinfo=self.tz)
        source = f"dlt645:{m.gateway_id}"
        parts = [(0x05060100 + n, FROZEN)]
        if m.bidirectional:
            parts.append((0x05060200 + n, FROZEN_REVERSE))
        rows = []  # all of a freeze's values, or none
        for di, q in parts:
            value = (await link.read(m.number, di, deadline=deadline)).values().get(q)
            if isinstance(value, int | float):
                rows.append(RegisterRow(m.id, QUANTITY_IDS[q], frozen_at, float(value),
                                        meter_ts=frozen_at))
        for row in rows:
            self._add(source, row)

    async def _meter_time(self, link: Dlt645Link | SerialLink, m: PollMeter,
                          deadline: float | None = None) -> tuple[datetime, datetime]:
        d = (await link.read(m.number, 0x04000101, deadline=deadline)).values().get("date")
        t = (await link.read(m.number, 0x04000102, deadline=deadline)).values().get("time")
        true = self.clock.now()
        if not isinstance(d, str) or not isinstance(t, str):
            raise BadReply(f"meter {m.number}: unreadable clock", reason="bad_clock")
        return datetime.strptime(f"{d} {t}", "%Y-%m-%d %H:%M:%S").replace(tzinfo=self.tz), true

    async def _check_clock(self, link: Dlt645Link | SerialLink, m: PollMeter) -> None:
        now = self.clock.now()
        last = self._clock_checked.get(m.id)
        cfg = self.config.schedule
        if last is not None and now - last < timedelta(hours=cfg.clock_check_hours):
            return
        local_now = now.astimezone(self.tz)
        minute = local_now.hour * 60 + local_now.minute
        if minute < cfg.midnight_guard_min or minute >= 1440 - cfg.midnight_guard_min:
            return  # no sync near the 00:00 freeze: not worth reading the clock either
        deadline = self._deadline(self.next_wake())
        meter_time, true = await self._meter_time(link, m, deadline)
        today = true.astimezone(self.tz).date()
        action = clock_action(meter_time, true, self.tz, tolerance_s=cfg.clock_tolerance_s,
                              broadcast_max_s=cfg.broadcast_max_s,
                              midnight_guard_min=cfg.midnight_guard_min,
                              broadcast_done_today=self._broadcast_day.get(m.gateway_id) == today)
        offset = (meter_time - true).total_seconds()
        if action is ClockAction.DEFER:
            return
        self._clock_checked[m.id] = now
        if action is ClockAction.NONE:
            return
        local = self.clock.now().astimezone(self.tz)
        if action is ClockAction.BROADCAST:
            # a broadcast has no reply: it returns once sent
            await link.exchange(TimeSyncRequest(local.strftime("%Y-%m-%d %H:%M:%S")),
                                expect_reply=False)
            self._broadcast_day[m.gateway_id] = today
        else:
            for di, text in ((0x04000101, local.strftime("%Y-%m-%d")),
                             (0x04000102, local.strftime("%H:%M:%S"))):
                await link.exchange(WriteRequest(m.number, di, encode_values(di, [text])),
                                    deadline=deadline)
        after, true_after = await self._meter_time(link, m, deadline)
        left = (after - true_after).total_seconds()
        self.stats.clock_syncs += 1
        self._events.append((m.id, true, "clock_sync", {
            "offset_s": offset, "method": action.name.lower(), "offset_after_s": left,
            "confirmed": abs(left) <= cfg.clock_tolerance_s}, f"dlt645:{m.gateway_id}"))

    # ----------------------------------------------------------------- on demand
    async def read_relay_state(self, meter_number: str) -> RelayStatus:
        """Read status word 3 (relay state, protocols.md §8.4) of a DL/T 645-2007 meter now.

        The value is also stored (``status_word_3`` at the instant of the read).

        Args:
            meter_number: The 12-digit meter number.

        Returns:
            The decoded relay status.

        Raises:
            KeyError: The meter is not a polled DL/T 645-2007 meter of the archive.
            AbnormalReply: The meter answered abnormally.
            LinkError: The gateway or meter could not be reached.
            BadReply: The reply carries no status word.
        """
        m = self.meters.get(meter_number)
        if m is None:
            await self.refresh_archive()
            m = self.meters.get(meter_number)
        if m is None or m.protocol != "dlt645-2007":
            raise KeyError(f"meter {meter_number} is not a polled DL/T 645-2007 meter")
        result = await self.links[m.gateway_id].read(m.number, 0x04000503)
        word = result.values().get("status_word_3")
        if not isinstance(word, int):
            raise BadReply(f"meter {meter_number}: no status word in the reply",
                           reason="no_status_word")
        self._add(f"dlt645:{m.gateway_id}",
                  RegisterRow(m.id, QUANTITY_IDS["status_word_3"], self.clock.now(),
                              float(word)))
        await self.flush()
        return decode_status_word_3(word)

    async def read_now(self, meter_number: str, di: int) -> dict[str, Any]:
        """Read one data identifier of a DL/T 645 meter now (an on-demand read).

        Nothing is stored: the caller decides what the values mean.

        Args:
            meter_number: The 12-digit meter number.
            di: The data identifier.

        Returns:
            Decoded values by name.

        Raises:
            KeyError: The meter is not a polled DL/T 645 meter of the archive.
            AbnormalReply: The meter answered abnormally.
            LinkError: The gateway or meter could not be reached.
        """
        m = self.meters.get(meter_number)
        if m is None or m.protocol not in _VERSIONS:
            raise KeyError(f"meter {meter_number} is not a polled DL/T 645 meter")
        version = _VERSIONS[m.protocol]
        result = await self.links[m.gateway_id].read(m.number, di, version=version)
        return result.values()

    # ----------------------------------------------------------------- loop
    def next_wake(self) -> datetime:
        """When the next cycle is due: the first slot boundary after the last cycle began.

        A slot that began while a cycle ran is due at once (the instant is in the past). The
        daily freeze read time (00:05) is a wake-up of its own. When slot reads failed, a
        retry pass (补抄 within the slot) comes first, half-way through the rest of the slot's
        grace window; it reads only what is still missing.
        """
        now = self._cycle_started or self.clock.now()
        intervals = {m.interval_min for m in self.meters.values()} or {
            self.config.schedule.interval_min}
        wake = min(next_slot(now, i, self.tz) for i in intervals)
        if any(m.protocol == "dlt645-2007" for m in self.meters.values()):
            local = now.astimezone(self.tz)  # the daily freezes are read from 00:05
            freeze = datetime.combine(local.date(), self.config.schedule.freeze_read_from,
                                      tzinfo=self.tz)
            if freeze <= now:
                freeze = datetime.combine(local.date() + timedelta(days=1),
                                          self.config.schedule.freeze_read_from, tzinfo=self.tz)
            wake = min(wake, freeze)
        if self._retry_at is not None and self._retry_at < wake:
            return self._retry_at
        return wake

    async def async_run(self, stop: asyncio.Event) -> None:
        """Run cycles at every slot until ``stop`` is set (the current cycle finishes)."""
        while not stop.is_set():
            try:
                await self.run_cycle()
            except (CollectorError, psycopg.Error) as exc:
                log.error("poll cycle failed: %s", exc)
            except Exception:  # a long-running collector logs and carries on
                log.exception("poll cycle failed")
            wake = self.next_wake()
            sleeper = asyncio.ensure_future(self.clock.sleep_until(wake))
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
            for t in (sleeper, stopper):
                t.cancel()
