"""Writing decoded MQTT uplinks to the database: readings, events, acks and the quarantine.

SQL-first repository functions (house style R11): they take an open async connection and never
commit; the collector wraps one group of uplinks in one transaction and acknowledges the MQTT
messages only after that transaction committed.

Readings of a whole group go in with one binary COPY per table, each row carrying its own
``source`` (``mqtt:<concentrator>``), inside a savepoint. That is the common case, and the one
made cheap: the group's readings are mapped to columns in one pass (meter ids from the cache,
timestamps to PostgreSQL microseconds through a cache of the repeated instants) and the COPY
stream is built column-wise by :func:`storage.readings.binary_copy_data`, without per-row
``write_row`` calls. When the
group repeats a key already stored (an MQTT redelivery, a concentrator re-sending a batch whose
receipt it missed) or repeats a key within itself, the savepoint is rolled back and each uplink
goes through :func:`storage.readings.ingest` on its own, which drops identical re-deliveries,
counts them and keeps different values as conflicts. Either way ``ingest_batch`` gets one row
per concentrator batch (``source``, ``batch_ref`` = the batch id).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, cast

import numpy  # noqa: F401 - loaded with the collector, not on its first COPY
import orjson
import psycopg
from psycopg import sql

from collector._mqtt_decode import KIND_PAYLOAD, Decoded, Fault
from protocols.mqtt import (
    BatchKind,
    CommandAck,
    EventsBatch,
    ReadingRows,
    Receipt,
    ReceiptResult,
)
from storage import quarantine
from storage.readings import (
    INTERVAL_QUANTITIES,
    QUANTITY_IDS,
    IntervalRow,
    RegisterRow,
    binary_copy_data,
    ingest,
    pg_microseconds,
)

_REGISTER_COPY: Final = sql.SQL(
    "COPY register_reading (meter_id, quantity_id, ts, value, source, received_at) "
    "FROM STDIN (FORMAT BINARY)"
)
_INTERVAL_COPY: Final = sql.SQL(
    "COPY interval_reading (meter_id, quantity_id, ts, value, interval_min, source, received_at) "
    "FROM STDIN (FORMAT BINARY)"
)

_INSERT_BATCHES: Final = (
    "INSERT INTO ingest_batch (source, batch_ref, received_at, rows_in, inserted, duplicates, "
    "conflicts, quarantined) "
    "SELECT s, b, r, n, i, 0, 0, q FROM unnest(%(sources)s::text[], %(refs)s::text[], "
    "%(received)s::timestamptz[], %(rows_in)s::int4[], %(inserted)s::int4[], "
    "%(quarantined)s::int4[]) AS t(s, b, r, n, i, q) "
    "ON CONFLICT (source, batch_ref) WHERE batch_ref IS NOT NULL DO NOTHING"
)
_SELECT_METERS: Final = (
    "SELECT number, id, interval_min FROM meter WHERE number = ANY(%(numbers)s)"
)
_INSERT_METER_EVENTS: Final = (
    "INSERT INTO meter_event (meter_id, ts, code, detail, source, received_at) "
    "SELECT m, t, c, d::jsonb, %(source)s, %(received_at)s "
    "FROM unnest(%(meters)s::int8[], %(ts)s::timestamptz[], %(codes)s::text[], "
    "%(details)s::text[]) AS e(m, t, c, d) "
    "ON CONFLICT (meter_id, ts, code) DO NOTHING"
)
_INSERT_CONCENTRATOR_EVENTS: Final = (
    "INSERT INTO concentrator_event (concentrator_id, ts, code, detail, source, received_at) "
    "SELECT %(concentrator)s, t, c, d::jsonb, %(source)s, %(received_at)s "
    "FROM unnest(%(ts)s::timestamptz[], %(codes)s::text[], %(details)s::text[]) AS e(t, c, d) "
    "ON CONFLICT (concentrator_id, ts, code) DO NOTHING"
)
_INSERT_ACK: Final = (
    "INSERT INTO command_ack (concentrator_id, command, result, ts, meter_number, meter_id, "
    "relay, status_word_3, error_bits, detail, source, received_at) "
    "VALUES (%(concentrator)s, %(command)s, %(result)s, %(ts)s, %(meter_number)s, "
    "%(meter_id)s, %(relay)s, %(status_word_3)s, %(error_bits)s, %(detail)s, %(source)s, "
    "%(received_at)s) ON CONFLICT (concentrator_id, command, result, ts) DO NOTHING"
)


@dataclass(frozen=True, slots=True)
class MeterRef:
    """What the collector needs of a meter: its id and interval (minutes, None if unset)."""

    id: int
    interval_min: int | None


class MeterCache:
    """Meter number → :class:`MeterRef`, filled on a miss and emptied every ``ttl_s``.

    Args:
        ttl_s: The whole cache is dropped after this long, so archive edits show up.
        monotonic: Time source for the ttl.
    """

    def __init__(self, *, ttl_s: float = 300.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl_s
        self._now = monotonic
        self._refs: dict[str, MeterRef] = {}
        self._ids: dict[str, int] = {}
        self._since = monotonic()

    def __len__(self) -> int:
        return len(self._refs)

    def snapshot(self) -> dict[str, MeterRef]:
        """The cached entries (the live mapping; emptied first when older than the ttl)."""
        if self._now() - self._since > self._ttl:
            self._refs = {}
            self._ids = {}
            self._since = self._now()
        return self._refs

    def ids(self) -> dict[str, int]:
        """Meter number → id of the cached entries (the live mapping)."""
        self.snapshot()
        return self._ids

    async def resolve(
        self, conn: psycopg.AsyncConnection[Any], numbers: Iterable[str]
    ) -> dict[str, MeterRef]:
        """The archive entries of ``numbers`` (unknown numbers are absent from the result).

        Args:
            conn: An open connection (read only).
            numbers: Meter numbers.

        Returns:
            Known numbers mapped to their references.
        """
        refs = self.snapshot()
        wanted = set(numbers)
        missing = [n for n in wanted if n not in refs]
        if missing:
            cur = await conn.execute(_SELECT_METERS, {"numbers": missing})
            for number, meter_id, interval in await cur.fetchall():
                refs[number] = MeterRef(int(meter_id), interval)
                self._ids[number] = int(meter_id)
        return {n: refs[n] for n in wanted if n in refs}


@dataclass(slots=True)
class Outcome:
    """What happened to one uplink.

    Attributes:
        inserted: Readings (or events, acks) stored.
        duplicates: Identical re-deliveries dropped.
        conflicts: Readings that differed from a stored value (kept for review).
        rejected: Items quarantined (readings or events of unknown meters, frames).
        quarantined: Quarantine entries written (or found waiting already).
        fault: The reason the payload as a whole (or in part) went to the quarantine.
        receipt: The receipt to publish after commit, if the uplink was a batch.
    """

    inserted: int = 0
    duplicates: int = 0
    conflicts: int = 0
    rejected: int = 0
    quarantined: int = 0
    fault: str | None = None
    receipt: Receipt | None = None


class UnknownMeters(Exception):
    """A replayed payload still names meters that are not in the archive.

    Attributes:
        reason: ``unknown_meter``.
    """

    reason = "unknown_meter"


@dataclass(slots=True)
class _Plan:
    """Rows of one uplink, before writing."""

    registers: list[tuple[Any, ...]]
    intervals: list[tuple[Any, ...]]
    unknown: set[str]
    rejected: int = 0


_REGISTER_QIDS: Final = {q: i for q, i in QUANTITY_IDS.items() if q not in INTERVAL_QUANTITIES}
_INTERVAL_QIDS: Final = {q: i for q, i in QUANTITY_IDS.items() if q in INTERVAL_QUANTITIES}


def _rows(d: Decoded) -> Sequence[tuple[Any, ...]]:
    """``(meter, quantity, ts, value, interval)`` per reading of an uplink."""
    items = d.items
    if isinstance(items, ReadingRows):
        return items.rows
    return [(it.meter, it.quantity, it.ts, it.value, it.interval) for it in items]


def _plan_readings(
    d: Decoded, refs: dict[str, MeterRef], received_at: datetime, default_interval: int
) -> _Plan:
    """The COPY tuples of one uplink, in one pass over its readings."""
    plan = _Plan([], [], set())
    source = d.source
    registers, intervals, get = plan.registers, plan.intervals, refs.get
    add_register, register_qid = registers.append, _REGISTER_QIDS.get
    for meter, quantity, ts, value, interval in _rows(d):
        ref = get(meter)
        if ref is None:
            plan.unknown.add(meter)
            plan.rejected += 1
            continue
        qid = register_qid(quantity)
        if qid is not None:
            add_register((ref.id, qid, ts, value, source, received_at))
        else:
            minutes = interval or ref.interval_min or default_interval
            intervals.append((ref.id, _INTERVAL_QIDS[quantity], ts, value, minutes, source,
                              received_at))
    return plan


@dataclass(slots=True)
class _Table:
    """The rows of one readings table for a group's COPY, as columns."""

    meter: list[int]
    quantity: list[int]
    ts: list[int]
    value: list[Any]
    interval: list[int]
    runs: list[tuple[bytes, int, int]]

    @classmethod
    def empty(cls) -> _Table:
        return cls([], [], [], [], [], [])

    def data(self, *, with_interval: bool) -> bytes:
        columns: list[tuple[str, Sequence[Any]]] = [
            ("int8", self.meter), ("int2", self.quantity), ("timestamptz", self.ts),
            ("float8", self.value)]
        if with_interval:
            columns.append(("int2", self.interval))
        return binary_copy_data(columns, self.runs)


@dataclass(slots=True)
class _Counts:
    """One uplink's share of the group's COPY."""

    registers: int = 0
    intervals: int = 0
    rejected: int = 0
    unknown: set[str] | None = None


_TS_CACHE: dict[datetime, int] = {}
"""Instant → PostgreSQL microseconds: readings repeat a few slot times many times over."""
_TS_CACHE_MAX: Final = 100_000


def _ts_micros(ts: datetime) -> int:
    us = _TS_CACHE[ts] = pg_microseconds(ts)
    return us


def _plan_group(
    decoded: Sequence[Decoded], received: Sequence[datetime], meters: MeterCache,
    default_interval: int,
) -> tuple[_Table, _Table, list[_Counts]]:
    """The group's readings as COPY columns; unknown meters counted apart.

    An uplink of known meters and register quantities only (the common case) is mapped a
    column at a time (``zip``/``map``, no Python code per reading); any other goes reading
    by reading.
    """
    refs, ids_get = meters.snapshot(), meters.ids().get
    registers, intervals = _Table.empty(), _Table.empty()
    rm, rq, rt, rv = (registers.meter.append, registers.quantity.append, registers.ts.append,
                      registers.value.append)
    get, register_qid, interval_qid = refs.get, _REGISTER_QIDS.get, _INTERVAL_QIDS.__getitem__
    if len(_TS_CACHE) > _TS_CACHE_MAX:
        _TS_CACHE.clear()
    ts_get = _TS_CACHE.get
    counts: list[_Counts] = []
    for d, at in zip(decoded, received, strict=True):
        c = _Counts()
        counts.append(c)
        rows = _rows(d)
        if not rows:
            continue
        r0, i0 = len(registers.meter), len(intervals.meter)
        numbers, quantities, stamps, values, _intervals = zip(*rows, strict=True)
        ids = list(map(ids_get, numbers))
        qids = list(map(register_qid, quantities))
        if None not in ids and None not in qids:
            # a batch shares one datetime object per distinct time: map those few, then
            # look up by the same objects (identity: no aware-datetime comparisons)
            distinct = dict.fromkeys(stamps)
            for t in distinct:
                distinct[t] = ts_get(t) or _ts_micros(t)
            micros = list(map(distinct.__getitem__, stamps))
            registers.meter.extend(cast("list[int]", ids))
            registers.quantity.extend(cast("list[int]", qids))
            registers.ts.extend(cast("list[int]", micros))
            registers.value.extend(values)
            rows = ()
        for meter, quantity, ts, value, interval in rows:
            ref = get(meter)
            if ref is None:
                if c.unknown is None:
                    c.unknown = set()
                c.unknown.add(meter)
                c.rejected += 1
                continue
            us = ts_get(ts)
            if us is None:
                us = _TS_CACHE[ts] = pg_microseconds(ts)
            qid = register_qid(quantity)
            if qid is not None:
                rm(ref.id)
                rq(qid)
                rt(us)
                rv(value)
            else:
                intervals.meter.append(ref.id)
                intervals.quantity.append(interval_qid(quantity))
                intervals.ts.append(us)
                intervals.value.append(value)
                intervals.interval.append(interval or ref.interval_min or default_interval)
        c.registers = len(registers.meter) - r0
        c.intervals = len(intervals.meter) - i0
        if c.registers or c.intervals:
            source, at_us = d.source.encode(), pg_microseconds(at)
            if c.registers:
                registers.runs.append((source, at_us, c.registers))
            if c.intervals:
                intervals.runs.append((source, at_us, c.intervals))
    return registers, intervals, counts


def _other_numbers(decoded: Sequence[Decoded]) -> set[str]:
    """Meters named by events and command acks (readings are planned against the cache)."""
    numbers: set[str] = set()
    for d in decoded:
        if isinstance(d.message, EventsBatch):
            numbers.update(e.meter for e in d.message.events if e.meter is not None)
        elif isinstance(d.message, CommandAck) and d.message.meter is not None:
            numbers.add(d.message.meter)
    return numbers


async def _copy(conn: psycopg.AsyncConnection[Any], stmt: sql.SQL, data: bytes) -> None:
    async with conn.cursor() as cur, cur.copy(stmt) as copy:
        await copy.write(data)


async def _fast_path(
    conn: psycopg.AsyncConnection[Any], decoded: Sequence[Decoded], tables: tuple[_Table, _Table],
    counts: Sequence[_Counts], received: Sequence[datetime], outcomes: list[Outcome],
) -> bool:
    """One COPY per table for the whole group; False if a key repeats (rolled back).

    A key stored already, or repeated within the group, makes the COPY fail on the primary key;
    checking for that in Python first would cost more than the rare failed COPY.
    """
    registers, intervals = tables
    register_data = registers.data(with_interval=False) if registers.meter else None
    interval_data = intervals.data(with_interval=True) if intervals.meter else None
    try:
        async with conn.transaction():
            if register_data is not None:
                await _copy(conn, _REGISTER_COPY, register_data)
            if interval_data is not None:
                await _copy(conn, _INTERVAL_COPY, interval_data)
    except psycopg.errors.UniqueViolation:
        return False
    params = []
    for d, c, at, out in zip(decoded, counts, received, outcomes, strict=True):
        n = c.registers + c.intervals
        out.inserted += n
        if n or c.rejected:
            params.append((d.source, d.batch, at, n + c.rejected, n, c.rejected))
    if params:
        columns = list(zip(*params, strict=True))
        await conn.execute(_INSERT_BATCHES, {
            "sources": list(columns[0]), "refs": list(columns[1]), "received": list(columns[2]),
            "rows_in": list(columns[3]), "inserted": list(columns[4]),
            "quarantined": list(columns[5]),
        })
    return True


async def _slow_path(
    conn: psycopg.AsyncConnection[Any], decoded: Sequence[Decoded], refs: dict[str, MeterRef],
    received: Sequence[datetime], default_interval: int, outcomes: list[Outcome],
) -> None:
    """Each uplink through the idempotent ingest: duplicates dropped, conflicts kept."""
    for d, at, out in zip(decoded, received, outcomes, strict=True):
        p = _plan_readings(d, refs, at, default_interval)
        regs = [RegisterRow(r[0], r[1], r[2], r[3]) for r in p.registers]
        ivs = [IntervalRow(r[0], r[1], r[2], r[3], r[4]) for r in p.intervals]
        for rows, ref in ((regs, d.batch),
                          (ivs, f"{d.batch}#interval" if regs and d.batch else d.batch)):
            if not rows:
                continue
            res = await ingest(conn, rows, source=d.source, received_at=at, batch_ref=ref,
                               quarantined=p.rejected)
            out.inserted += res.inserted
            out.duplicates += res.duplicates
            out.conflicts += res.conflicts


def _event_detail(event: Any) -> str | None:
    detail: dict[str, Any] = {}
    if event.end is not None:
        detail["end"] = event.end.isoformat()
    if event.relay is not None:
        detail["relay"] = str(event.relay)
    if event.previous_time is not None:
        detail["previous_time"] = event.previous_time.isoformat()
    if event.detail is not None:
        detail["detail"] = event.detail
    return orjson.dumps(detail).decode() if detail else None


async def _store_events(
    conn: psycopg.AsyncConnection[Any], d: Decoded, refs: dict[str, MeterRef],
    at: datetime, out: Outcome,
) -> set[str]:
    batch = d.message
    assert isinstance(batch, EventsBatch)
    unknown: set[str] = set()
    meter_rows: list[tuple[int, datetime, str, str | None]] = []
    own_rows: list[tuple[datetime, str, str | None]] = []
    for e in batch.events:
        if e.meter is None:
            own_rows.append((e.ts, str(e.code), _event_detail(e)))
        elif e.meter in refs:
            meter_rows.append((refs[e.meter].id, e.ts, str(e.code), _event_detail(e)))
        else:
            unknown.add(e.meter)
            out.rejected += 1
    if meter_rows:
        cur = await conn.execute(_INSERT_METER_EVENTS, {
            "source": d.source, "received_at": at,
            "meters": [r[0] for r in meter_rows], "ts": [r[1] for r in meter_rows],
            "codes": [r[2] for r in meter_rows], "details": [r[3] for r in meter_rows],
        })
        out.inserted += cur.rowcount
        out.duplicates += len(meter_rows) - cur.rowcount
    if own_rows:
        cur = await conn.execute(_INSERT_CONCENTRATOR_EVENTS, {
            "concentrator": d.concentrator, "source": d.source, "received_at": at,
            "ts": [r[0] for r in own_rows], "codes": [r[1] for r in own_rows],
            "details": [r[2] for r in own_rows],
        })
        out.inserted += cur.rowcount
        out.duplicates += len(own_rows) - cur.rowcount
    return unknown


async def _store_ack(
    conn: psycopg.AsyncConnection[Any], d: Decoded, refs: dict[str, MeterRef],
    at: datetime, out: Outcome,
) -> None:
    ack = d.message
    assert isinstance(ack, CommandAck)
    ref = refs.get(ack.meter) if ack.meter is not None else None
    cur = await conn.execute(_INSERT_ACK, {
        "concentrator": d.concentrator, "command": ack.command, "result": str(ack.result),
        "ts": ack.ts, "meter_number": ack.meter, "meter_id": ref.id if ref else None,
        "relay": str(ack.relay) if ack.relay is not None else None,
        "status_word_3": ack.status_word_3, "error_bits": list(ack.error_bits),
        "detail": ack.detail, "source": d.source, "received_at": at,
    })
    out.inserted += cur.rowcount
    out.duplicates += 1 - cur.rowcount


async def _quarantine(conn: psycopg.AsyncConnection[Any], d: Decoded, fault: Fault) -> None:
    context = dict(fault.context)
    if d.batch is not None:
        context.setdefault("batch", d.batch)
        context.setdefault("seq", d.seq)
    await quarantine.add(conn, source=d.source, kind=fault.kind, raw=fault.raw,
                         reason=fault.reason, message=fault.message, context=context)


def _receipt(d: Decoded, out: Outcome) -> Receipt | None:
    if d.batch is None or d.seq is None or d.kind not in ("readings", "events", "frames"):
        return None
    stored = out.inserted + out.duplicates + out.conflicts
    whole = d.fault is not None or (stored == 0 and out.rejected > 0)
    reason = out.fault[:500] if out.fault else None
    return Receipt(kind=BatchKind(d.kind), batch=d.batch, seq=d.seq,
                   result=ReceiptResult.QUARANTINED if whole else ReceiptResult.COMMITTED,
                   accepted=out.inserted, duplicates=out.duplicates, conflicts=out.conflicts,
                   rejected=out.rejected, reason=reason)


async def store_group(
    conn: psycopg.AsyncConnection[Any],
    decoded: Sequence[Decoded],
    received: Sequence[datetime],
    *,
    meters: MeterCache,
    default_interval: int,
    replay: bool = False,
) -> list[Outcome]:
    """Store a group of decoded uplinks. The caller owns the transaction.

    Args:
        conn: An open connection inside a transaction.
        decoded: The uplinks, in the order they were received.
        received: When each was received (``received_at`` of its rows).
        meters: The meter cache.
        default_interval: Interval in minutes for ``interval_kwh`` of meters without one.
        replay: Replaying a quarantined payload: unknown meters raise instead of being
            quarantined again.

    Returns:
        One :class:`Outcome` per uplink, with the receipt to publish after commit.

    Raises:
        UnknownMeters: ``replay`` and the payload still names meters not in the archive.
        psycopg.Error: The database failed; nothing of the group is stored (the caller rolls
            back and retries).
    """
    outcomes = [Outcome() for _ in decoded]
    refs = meters.snapshot()
    tables = _plan_group(decoded, received, meters, default_interval)
    misses = {n for c in tables[2] if c.unknown for n in c.unknown}
    others = _other_numbers(decoded)
    if misses or not others <= refs.keys():
        found = await meters.resolve(conn, misses | others)
        if misses & found.keys():  # meters seen for the first time: plan again
            refs = meters.snapshot()
            tables = _plan_group(decoded, received, meters, default_interval)
    registers, intervals, counts = tables
    if replay:
        unknown = {n for c in counts if c.unknown for n in c.unknown} | (others - refs.keys())
        if unknown:
            raise UnknownMeters(
                f"meter(s) {', '.join(sorted(unknown)[:10])} still not in the archive")
    for c, out in zip(counts, outcomes, strict=True):
        out.rejected += c.rejected
    if any(c.registers or c.intervals or c.rejected for c in counts) and not await _fast_path(
            conn, decoded, (registers, intervals), counts, received, outcomes):
        await _slow_path(conn, decoded, refs, received, default_interval, outcomes)
    for d, c, at, out in zip(decoded, counts, received, outcomes, strict=True):
        unknown = set(c.unknown or ())
        if d.fault is not None:
            out.fault = d.fault.reason
            await _quarantine(conn, d, d.fault)
            out.quarantined += 1
        elif isinstance(d.message, EventsBatch):
            unknown |= await _store_events(conn, d, refs, at, out)
        elif isinstance(d.message, CommandAck):
            await _store_ack(conn, d, refs, at, out)
        for fault in d.frame_faults:
            await _quarantine(conn, d, fault)
            out.rejected += 1
            out.quarantined += 1
            out.fault = out.fault or fault.reason
        if unknown:
            listed = sorted(unknown)
            await _quarantine(conn, d, Fault(
                KIND_PAYLOAD, d.payload, "unknown_meter",
                f"{len(listed)} meter(s) not in the archive: {', '.join(listed[:10])}"
                + (" …" if len(listed) > 10 else ""),
                {"topic": d.topic, "meters": listed[:200], "unknown_meters": len(listed)},
            ))
            out.quarantined += 1
            out.fault = "unknown_meter"
        out.receipt = _receipt(d, out)
    return outcomes

