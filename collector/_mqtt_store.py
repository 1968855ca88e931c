"""Writing decoded MQTT uplinks to the database: readings, events, acks and the quarantine.

SQL-first repository functions (house style R11): they take an open async connection and never
commit; the collector wraps one group of uplinks in one transaction and acknowledges the MQTT
messages only after that transaction committed.

Readings of a whole group go in with one binary COPY per table, each row carrying its own
``source`` (``mqtt:<concentrator>``), inside a savepoint. That is the common case. When the
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
from typing import Any, Final

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
    ingest,
)

_REGISTER_COPY: Final = sql.SQL(
    "COPY register_reading (meter_id, quantity_id, ts, value, source, received_at) "
    "FROM STDIN (FORMAT BINARY)"
)
_REGISTER_TYPES: Final = ["int8", "int2", "timestamptz", "float8", "text", "timestamptz"]
_INTERVAL_COPY: Final = sql.SQL(
    "COPY interval_reading (meter_id, quantity_id, ts, value, interval_min, source, received_at) "
    "FROM STDIN (FORMAT BINARY)"
)
_INTERVAL_TYPES: Final = ["int8", "int2", "timestamptz", "float8", "int2", "text", "timestamptz"]

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
    """Meter number → :class:`MeterRef`, refreshed on a miss and after ``ttl_s``.

    Args:
        ttl_s: Entries older than this are looked up again (archive edits show up).
        monotonic: Time source for the ttl.
    """

    def __init__(self, *, ttl_s: float = 300.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl_s
        self._now = monotonic
        self._refs: dict[str, tuple[MeterRef, float]] = {}

    def __len__(self) -> int:
        return len(self._refs)

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
        now = self._now()
        wanted = set(numbers)
        missing = [n for n in wanted if n not in self._refs or now - self._refs[n][1] > self._ttl]
        if missing:
            cur = await conn.execute(_SELECT_METERS, {"numbers": missing})
            for number, meter_id, interval in await cur.fetchall():
                self._refs[number] = (MeterRef(int(meter_id), interval), now)
        return {n: self._refs[n][0] for n in wanted if n in self._refs}


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


def _numbers(decoded: Sequence[Decoded]) -> set[str]:
    numbers: set[str] = set()
    for d in decoded:
        if isinstance(d.items, ReadingRows):
            numbers.update([r[0] for r in d.items.rows])
        else:
            numbers.update(it.meter for it in d.items)
        if isinstance(d.message, EventsBatch):
            numbers.update(e.meter for e in d.message.events if e.meter is not None)
        elif isinstance(d.message, CommandAck) and d.message.meter is not None:
            numbers.add(d.message.meter)
    return numbers


async def _copy(
    conn: psycopg.AsyncConnection[Any], stmt: sql.Composed | sql.SQL, types: list[str],
    rows: Iterable[tuple[Any, ...]],
) -> None:
    async with conn.cursor() as cur, cur.copy(stmt) as copy:
        copy.set_types(types)
        for row in rows:
            await copy.write_row(row)


async def _fast_path(
    conn: psycopg.AsyncConnection[Any], decoded: Sequence[Decoded], plans: Sequence[_Plan],
    received: Sequence[datetime], outcomes: list[Outcome],
) -> bool:
    """One COPY per table for the whole group; False if a key repeats (rolled back).

    A key stored already, or repeated within the group, makes the COPY fail on the primary key;
    checking for that in Python first would cost more than the rare failed COPY.
    """
    try:
        async with conn.transaction():
            if any(p.registers for p in plans):
                await _copy(conn, _REGISTER_COPY, _REGISTER_TYPES,
                            (r for p in plans for r in p.registers))
            if any(p.intervals for p in plans):
                await _copy(conn, _INTERVAL_COPY, _INTERVAL_TYPES,
                            (r for p in plans for r in p.intervals))
    except psycopg.errors.UniqueViolation:
        return False
    params = []
    for d, p, at, out in zip(decoded, plans, received, outcomes, strict=True):
        n = len(p.registers) + len(p.intervals)
        out.inserted += n
        if n or p.rejected:
            params.append((d.source, d.batch, at, n + p.rejected, n, p.rejected))
    if params:
        columns = list(zip(*params, strict=True))
        await conn.execute(_INSERT_BATCHES, {
            "sources": list(columns[0]), "refs": list(columns[1]), "received": list(columns[2]),
            "rows_in": list(columns[3]), "inserted": list(columns[4]),
            "quarantined": list(columns[5]),
        })
    return True


async def _slow_path(
    conn: psycopg.AsyncConnection[Any], decoded: Sequence[Decoded], plans: Sequence[_Plan],
    received: Sequence[datetime], outcomes: list[Outcome],
) -> None:
    """Each uplink through the idempotent ingest: duplicates dropped, conflicts kept."""
    for d, p, at, out in zip(decoded, plans, received, outcomes, strict=True):
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
    refs = await meters.resolve(conn, _numbers(decoded))
    plans = [_plan_readings(d, refs, at, default_interval) for d, at in zip(
        decoded, received, strict=True)]
    if replay:
        unknown = {n for p in plans for n in p.unknown} | (_numbers(decoded) - set(refs))
        if unknown:
            raise UnknownMeters(
                f"meter(s) {', '.join(sorted(unknown)[:10])} still not in the archive")
    for p, out in zip(plans, outcomes, strict=True):
        out.rejected += p.rejected
    if any(p.registers or p.intervals or p.rejected for p in plans) and not await _fast_path(
            conn, decoded, plans, received, outcomes):
        await _slow_path(conn, decoded, plans, received, outcomes)
    for d, p, at, out in zip(decoded, plans, received, outcomes, strict=True):
        unknown = set(p.unknown)
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

