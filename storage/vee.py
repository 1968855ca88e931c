"""Repository functions for VEE, suspects and manual-read screening (house style R11).

SQL-first, keyword-only, an explicit async connection, never a commit: the caller owns the
transaction. Interval energy is read the way CONTRACTS.md fixes it: actual ``interval_kwh``
where the meter has any in the window, else derived from consecutive energy-register readings
exactly one interval apart (rollover-aware; a register that went backwards by less than half
its span gives a negative interval, so VEE sees negative consumption). Analytics never depend
on ``vee run`` having run: derived values are computed here and not stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, LiteralString

import numpy as np
import psycopg
from numpy.typing import NDArray
from psycopg import sql
from psycopg.types.json import Jsonb

from storage.readings import QUANTITY_IDS

Q_INTERVAL: Final = QUANTITY_IDS["interval_kwh"]
Q_INTERVAL_REVERSE: Final = QUANTITY_IDS["interval_reverse_kwh"]
Q_FORWARD: Final = QUANTITY_IDS["forward_active_total_kwh"]
Q_REVERSE: Final = QUANTITY_IDS["reverse_active_total_kwh"]
_EVER: Final = datetime(1, 1, 2, tzinfo=UTC)
Q_TARIFFS: Final = tuple(QUANTITY_IDS[f"forward_active_t{k}_kwh"] for k in range(1, 5))


@dataclass(frozen=True, slots=True)
class VeeMeter:
    """What VEE and the balance need to know of a meter."""

    id: int
    number: str
    role: str
    protocol: str
    interval_min: int
    rollover_kwh: float
    bidirectional: bool
    installed_at: datetime | None
    removed_at: datetime | None
    customer_id: str | None
    schedule: str | None = None


@dataclass(frozen=True, slots=True)
class LongSeries:
    """Readings in long format, as arrays (one entry per reading)."""

    meter_id: NDArray[np.int64]
    epoch: NDArray[np.float64]  # seconds since 1970-01-01 UTC
    value: NDArray[np.float64]


def _long(rows: Sequence[tuple[Any, ...]]) -> LongSeries:
    if not rows:
        return LongSeries(np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
    m, t, v = zip(*rows, strict=True)
    return LongSeries(np.asarray(m, dtype=np.int64), np.asarray(t, dtype=np.float64),
                      np.asarray(v, dtype=np.float64))


async def _fetch_long(
    conn: psycopg.AsyncConnection[Any], query: LiteralString, params: dict[str, Any], *,
    flag: bool = False,
) -> tuple[LongSeries, dict[int, bool]]:
    """Run a (meter, epoch, value[, flag]) query, aggregated per meter into arrays.

    Aggregating server-side and loading the float arrays in binary keeps Python out of the
    per-reading path (about 5× faster than row tuples for a few hundred thousand readings).
    Returns the series and, per meter, the OR of the fourth column (``flag=True``).
    """
    inner = sql.SQL(query) if flag else sql.SQL("SELECT x.*, false FROM ({}) x").format(
        sql.SQL(query))
    wrapped = sql.SQL(
        "SELECT q.m, array_agg(q.t), array_agg(q.v), bool_or(q.f) "
        "FROM ({}) q(m, t, v, f) GROUP BY q.m"
    ).format(inner)
    async with conn.cursor(binary=True) as cur:
        await cur.execute(wrapped, params)
        rows = await cur.fetchall()
    if not rows:
        return _long([]), {}
    sizes = np.array([len(r[1]) for r in rows], dtype=np.int64)
    meter = np.repeat(np.array([r[0] for r in rows], dtype=np.int64), sizes)
    epoch = np.concatenate([np.asarray(r[1], dtype=np.float64) for r in rows])
    value = np.concatenate([np.asarray(r[2], dtype=np.float64) for r in rows])
    return LongSeries(meter, epoch, value), {int(r[0]): bool(r[3]) for r in rows}


_METERS: Final[LiteralString] = """
SELECT id, number, role, protocol, coalesce(interval_min, %(default)s), rollover_kwh,
       bidirectional, installed_at, removed_at, customer_id, schedule
FROM meter
WHERE (%(number)s::text IS NULL OR number = %(number)s)
  AND (%(ids)s::int8[] IS NULL OR id = ANY(%(ids)s))
ORDER BY number
"""


async def meters(
    conn: psycopg.AsyncConnection[Any], *, default_interval: int, number: str | None = None,
    ids: list[int] | None = None,
) -> list[VeeMeter]:
    """Meters of the archive (all, one by number, or some by id), ordered by number."""
    cur = await conn.execute(_METERS, {"default": default_interval, "number": number,
                                       "ids": ids})
    return [VeeMeter(*r) for r in await cur.fetchall()]


_SPANS: Final[LiteralString] = """
SELECT meter_id, min(ts), max(ts) FROM (
    SELECT meter_id, ts FROM interval_reading
    WHERE meter_id = ANY(%(ids)s) AND quantity_id = %(iq)s
    UNION ALL
    SELECT meter_id, ts FROM register_reading
    WHERE meter_id = ANY(%(ids)s) AND quantity_id = %(rq)s
) r GROUP BY meter_id
"""


async def data_spans(
    conn: psycopg.AsyncConnection[Any], *, ids: list[int]
) -> dict[int, tuple[datetime, datetime]]:
    """First and last actual interval or energy-register timestamp per meter."""
    cur = await conn.execute(_SPANS, {"ids": ids, "iq": Q_INTERVAL, "rq": Q_FORWARD})
    return {int(m): (a, b) for m, a, b in await cur.fetchall()}


_INTERVALS: Final[LiteralString] = """
WITH iv AS (
    SELECT meter_id, ts, value FROM interval_reading
    WHERE meter_id = ANY(%(ids)s) AND quantity_id = %(iq)s
      AND ts > %(start)s AND ts <= %(end)s
),
with_iv AS (SELECT DISTINCT meter_id FROM iv),
reg AS (
    SELECT r.meter_id, r.ts, r.value,
           lag(r.ts) OVER w AS prev_ts, lag(r.value) OVER w AS prev_value
    FROM register_reading r
    WHERE r.meter_id = ANY(%(ids)s) AND r.quantity_id = %(rq)s
      AND r.ts >= %(start)s - interval '1 day' AND r.ts <= %(end)s
      AND NOT EXISTS (SELECT 1 FROM with_iv w WHERE w.meter_id = r.meter_id)
    WINDOW w AS (PARTITION BY r.meter_id ORDER BY r.ts)
)
SELECT meter_id, extract(epoch FROM ts)::float8, value, false FROM iv
UNION ALL
SELECT g.meter_id, extract(epoch FROM g.ts)::float8,
       CASE WHEN g.prev_value - g.value > m.rollover_kwh / 2
            THEN g.value - g.prev_value + m.rollover_kwh
            ELSE g.value - g.prev_value END,
       true
FROM reg g JOIN meter m ON m.id = g.meter_id
WHERE g.ts > %(start)s
  AND g.ts - g.prev_ts = make_interval(mins => coalesce(m.interval_min, %(default)s))
"""


async def interval_energy(
    conn: psycopg.AsyncConnection[Any], *, ids: list[int], start: datetime, end: datetime,
    default_interval: int, reverse: bool = False,
) -> tuple[LongSeries, set[int]]:
    """Interval energy with timestamps in (start, end]: actual, else derived from registers.

    Args:
        conn: the connection.
        ids: meter ids.
        start: exclusive lower bound (interval ends).
        end: inclusive upper bound.
        default_interval: minutes for meters without an interval in the archive.
        reverse: export (``interval_reverse_kwh`` / the reverse register) instead of import.

    Returns:
        The readings and the ids of meters whose values were derived from registers.
    """
    if not ids:
        return _long([]), set()
    params = {
        "ids": ids, "start": start, "end": end, "default": default_interval,
        "iq": Q_INTERVAL_REVERSE if reverse else Q_INTERVAL,
        "rq": Q_REVERSE if reverse else Q_FORWARD,
    }
    series, flags = await _fetch_long(conn, _INTERVALS, params, flag=True)
    return series, {m for m, f in flags.items() if f}


_REGISTER_SLOTS: Final[LiteralString] = """
SELECT meter_id, extract(epoch FROM ts)::float8, value FROM register_reading
WHERE meter_id = ANY(%(ids)s) AND quantity_id = %(rq)s AND ts > %(start)s AND ts <= %(end)s
"""


async def register_readings(
    conn: psycopg.AsyncConnection[Any], *, ids: list[int], start: datetime, end: datetime,
    quantity: int = Q_FORWARD,
) -> LongSeries:
    """Actual register readings with timestamps in (start, end]."""
    if not ids:
        return _long([])
    series, _ = await _fetch_long(conn, _REGISTER_SLOTS, {"ids": ids, "rq": quantity,
                                                          "start": start, "end": end})
    return series


_CONFLICTS: Final[LiteralString] = """
SELECT DISTINCT meter_id, extract(epoch FROM ts)::float8, quantity_id::float8
FROM reading_conflict
WHERE meter_id = ANY(%(ids)s) AND quantity_id = ANY(%(qs)s) AND ts > %(start)s AND ts <= %(end)s
"""


async def conflict_slots(
    conn: psycopg.AsyncConnection[Any], *, ids: list[int], quantities: list[int],
    start: datetime, end: datetime,
) -> LongSeries:
    """Distinct (meter, ts) that received a different value for one of ``quantities``."""
    if not ids:
        return _long([])
    cur = await conn.execute(_CONFLICTS, {"ids": ids, "qs": quantities, "start": start,
                                          "end": end})
    return _long(await cur.fetchall())


_ESTIMATES: Final[LiteralString] = """
SELECT DISTINCT ON (meter_id, ts) meter_id, extract(epoch FROM ts)::float8, value
FROM reading_revision
WHERE meter_id = ANY(%(ids)s) AND quantity_id = %(q)s AND origin = %(origin)s
  AND ts > %(start)s AND ts <= %(end)s
ORDER BY meter_id, ts, version DESC
"""


async def revisions(
    conn: psycopg.AsyncConnection[Any], *, ids: list[int], start: datetime, end: datetime,
    quantity: int = Q_INTERVAL, origin: str = "estimated",
) -> LongSeries:
    """Latest revision of one origin per (meter, ts) in (start, end]."""
    if not ids:
        return _long([])
    series, _ = await _fetch_long(conn, _ESTIMATES, {"ids": ids, "q": quantity,
                                                     "origin": origin, "start": start,
                                                     "end": end})
    return series


_OUTAGES: Final[LiteralString] = """
SELECT meter_id, extract(epoch FROM ts)::float8,
       coalesce(extract(epoch FROM (detail->>'end')::timestamptz), 'NaN')::float8
FROM meter_event
WHERE meter_id = ANY(%(ids)s) AND code = 'power_loss'
  AND ts <= %(end)s AND coalesce((detail->>'end')::timestamptz, ts + interval '1 day') > %(start)s
ORDER BY meter_id, ts
"""


async def outages(
    conn: psycopg.AsyncConnection[Any], *, ids: list[int], start: datetime, end: datetime,
) -> LongSeries:
    """``power_loss`` events: value = epoch of the reported end, NaN when none was reported."""
    if not ids:
        return _long([])
    cur = await conn.execute(_OUTAGES, {"ids": ids, "start": start, "end": end})
    return _long(await cur.fetchall())


_CLOCK: Final[LiteralString] = """
SELECT meter_id, extract(epoch FROM ts)::float8, extract(epoch FROM meter_ts - ts)::float8
FROM register_reading
WHERE meter_id = ANY(%(ids)s) AND meter_ts IS NOT NULL AND ts > %(start)s AND ts <= %(end)s
ORDER BY meter_id, ts
"""


async def clock_checks(
    conn: psycopg.AsyncConnection[Any], *, ids: list[int], start: datetime, end: datetime,
) -> LongSeries:
    """Clock offsets (meter clock − slot time, seconds) seen in readings that carry one."""
    if not ids:
        return _long([])
    cur = await conn.execute(_CLOCK, {"ids": ids, "start": start, "end": end})
    return _long(await cur.fetchall())


_PRESENT: Final[LiteralString] = """
SELECT DISTINCT quantity_id FROM register_reading
WHERE meter_id = ANY(%(ids)s) AND ts >= %(start)s AND ts <= %(end)s
"""


async def register_quantities(
    conn: psycopg.AsyncConnection[Any], *, ids: list[int], start: datetime, end: datetime,
) -> set[int]:
    """Register quantities any of the meters has in [start, end]."""
    if not ids:
        return set()
    cur = await conn.execute(_PRESENT, {"ids": ids, "start": start, "end": end})
    return {int(r[0]) for r in await cur.fetchall()}


_STAGE_ESTIMATES: Final[LiteralString] = """
CREATE TEMP TABLE IF NOT EXISTS vee_stage_estimate (
    meter_id int8, ts timestamptz, value float8, method text, reason text
) ON COMMIT DROP
"""

_WRITE_ESTIMATES: Final[LiteralString] = """
WITH latest AS (
    SELECT DISTINCT ON (r.meter_id, r.ts) r.meter_id, r.ts, r.value, r.method, r.version
    FROM reading_revision r
    JOIN vee_stage_estimate s ON s.meter_id = r.meter_id AND s.ts = r.ts
    WHERE r.quantity_id = %(q)s AND r.origin = 'estimated'
    ORDER BY r.meter_id, r.ts, r.version DESC
),
ins AS (
    INSERT INTO reading_revision (meter_id, quantity_id, ts, origin, version, value, method,
                                  reason, created_by, note)
    SELECT s.meter_id, %(q)s, s.ts, 'estimated', coalesce(l.version, 0) + 1, s.value, s.method,
           s.reason, %(by)s, %(note)s
    FROM vee_stage_estimate s LEFT JOIN latest l ON l.meter_id = s.meter_id AND l.ts = s.ts
    WHERE l.meter_id IS NULL OR abs(l.value - s.value) > 1e-9
       OR l.method IS DISTINCT FROM s.method
    RETURNING 1
)
SELECT count(*) FROM ins
"""


async def write_estimates(
    conn: psycopg.AsyncConnection[Any], *, rows: Sequence[tuple[int, datetime, float, str, str]],
    created_by: str, note: str | None = None, quantity: int = Q_INTERVAL,
) -> int:
    """Store estimates (meter id, ts, value, method, reason) as ``estimated`` revisions.

    A slot whose latest estimate already has the same value and method gets nothing new, so a
    re-run is idempotent; a different estimate becomes the next version.

    Returns:
        The number of new revision rows.
    """
    if not rows:
        return 0
    await conn.execute(_STAGE_ESTIMATES)
    await conn.execute("TRUNCATE vee_stage_estimate")
    async with conn.cursor() as cur, cur.copy(
        "COPY vee_stage_estimate (meter_id, ts, value, method, reason) FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["int8", "timestamptz", "float8", "text", "text"])
        for r in rows:
            await copy.write_row(r)
    cur = await conn.execute(_WRITE_ESTIMATES, {"q": quantity, "by": created_by, "note": note})
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def start_run(
    conn: psycopg.AsyncConnection[Any], *, d_from: date, d_to: date, created_by: str,
) -> int:
    """Open a ``vee_run`` row and return its id."""
    cur = await conn.execute(
        "INSERT INTO vee_run (d_from, d_to, created_by) VALUES (%s, %s, %s) RETURNING id",
        (d_from, d_to, created_by),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def finish_run(
    conn: psycopg.AsyncConnection[Any], *, run_id: int, meters: int, written: int,
    unchanged: int, held: int,
) -> None:
    """Record what a run did."""
    await conn.execute(
        "UPDATE vee_run SET meters = %s, estimates_written = %s, estimates_unchanged = %s, "
        "estimates_held = %s WHERE id = %s",
        (meters, written, unchanged, held, run_id),
    )


async def write_meter_results(
    conn: psycopg.AsyncConnection[Any], *, run_id: int | None, d_from: date, d_to: date,
    rows: Sequence[tuple[int, dict[str, Any]]],
) -> None:
    """Upsert ``vee report`` rows (meter id, report dict) for a window.

    A meter counted on a calendar-month reading cycle has no fixed interval: its row stores
    ``interval_min`` 0 (``"interval": null`` in the report).
    """
    if not rows:
        return
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO vee_meter_result (meter_id, d_from, d_to, interval_min, first_ts, "
            "last_ts, expected, received, missing, gaps, gap_slots_max, duplicates, estimated, "
            "flags, run_id, computed_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
            "%s, %s, %s, %s, now()) ON CONFLICT (meter_id, d_from, d_to) DO UPDATE SET "
            "interval_min = EXCLUDED.interval_min, first_ts = EXCLUDED.first_ts, "
            "last_ts = EXCLUDED.last_ts, expected = EXCLUDED.expected, "
            "received = EXCLUDED.received, missing = EXCLUDED.missing, gaps = EXCLUDED.gaps, "
            "gap_slots_max = EXCLUDED.gap_slots_max, duplicates = EXCLUDED.duplicates, "
            "estimated = EXCLUDED.estimated, flags = EXCLUDED.flags, run_id = EXCLUDED.run_id, "
            "computed_at = now()",
            [(mid, d_from, d_to, r["interval"] or 0, r["first"], r["last"], r["expected"],
              r["received"], r["missing"], r["gaps"], r["gap_slots_max"], r["duplicates"],
              r["estimated"], Jsonb(r["flags"]), run_id) for mid, r in rows],
        )


async def replace_flags(
    conn: psycopg.AsyncConnection[Any], *, run_id: int | None, ids: list[int], d_from: date,
    d_to: date, rows: Sequence[tuple[int, date, str, int]],
) -> None:
    """Replace the meters' flag rows of the window's days with (meter, day, rule, count)."""
    await conn.execute(
        "DELETE FROM vee_flag WHERE meter_id = ANY(%s) AND day BETWEEN %s AND %s",
        (ids, d_from, d_to),
    )
    if not rows:
        return
    async with conn.cursor() as cur, cur.copy(
        "COPY vee_flag (meter_id, day, rule, count, run_id) FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["int8", "date", "text", "int4", "int8"])
        for mid, day, rule, count in rows:
            await copy.write_row((mid, day, rule, count, run_id))


async def line_loss_days(
    conn: psycopg.AsyncConnection[Any], *, first: date, last: date,
) -> dict[str, dict[date, float]]:
    """Computed daily line-loss rates per area: {area: {date: rate %}} (not-computable skipped)."""
    cur = await conn.execute(
        "SELECT area_id, label, rate FROM line_loss WHERE period = 'day' AND rate IS NOT NULL "
        "AND label BETWEEN %s AND %s",
        (first.isoformat(), last.isoformat()),
    )
    out: dict[str, dict[date, float]] = {}
    for area, label, rate in await cur.fetchall():
        out.setdefault(area, {})[date.fromisoformat(label)] = float(rate)
    return out


async def hold_estimates(
    conn: psycopg.AsyncConnection[Any], *, run_id: int,
    rows: Sequence[tuple[int, datetime, float, str, str, str, date, float, float]],
) -> None:
    """Keep estimates for review: (meter, ts, value, method, reason, area, day, rate, baseline).

    An open review row is refreshed; a decided one (approved/rejected) is left alone.
    """
    if not rows:
        return
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO vee_estimate_review (meter_id, quantity_id, ts, value, method, reason, "
            "area_id, day, rate, baseline_rate, run_id) VALUES (%s, %s, %s, %s, %s, %s, %s, "
            "%s, %s, %s, %s) ON CONFLICT (meter_id, quantity_id, ts) DO UPDATE SET "
            "value = EXCLUDED.value, method = EXCLUDED.method, reason = EXCLUDED.reason, "
            "rate = EXCLUDED.rate, baseline_rate = EXCLUDED.baseline_rate, "
            "run_id = EXCLUDED.run_id WHERE vee_estimate_review.status = 'open'",
            [(m, Q_INTERVAL, ts, v, me, re, a, d, r, b, run_id)
             for m, ts, v, me, re, a, d, r, b in rows],
        )


async def meter_by_number(
    conn: psycopg.AsyncConnection[Any], *, number: str
) -> tuple[int, int | None] | None:
    """(id, interval_min) of a meter, or None."""
    cur = await conn.execute("SELECT id, interval_min FROM meter WHERE number = %s", (number,))
    row = await cur.fetchone()
    return (int(row[0]), row[1]) if row else None


async def add_revision(
    conn: psycopg.AsyncConnection[Any], *, meter_id: int, quantity_id: int, ts: datetime,
    origin: str, value: float, method: str, reason: str | None, created_by: str,
    note: str | None,
) -> int:
    """Insert the next version of a revision of one origin for a slot; returns the version."""
    cur = await conn.execute(
        "INSERT INTO reading_revision (meter_id, quantity_id, ts, origin, version, value, "
        "method, reason, created_by, note) "
        "SELECT %(m)s, %(q)s, %(ts)s, %(o)s, coalesce(max(version), 0) + 1, %(v)s, %(me)s, "
        "%(re)s, %(by)s, %(note)s FROM reading_revision "
        "WHERE meter_id = %(m)s AND quantity_id = %(q)s AND ts = %(ts)s AND origin = %(o)s "
        "RETURNING version",
        {"m": meter_id, "q": quantity_id, "ts": ts, "o": origin, "v": value, "me": method,
         "re": reason, "by": created_by, "note": note},
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def audit(
    conn: psycopg.AsyncConnection[Any], *, actor: str, action: str, subject_type: str,
    subject_id: str, detail: dict[str, Any],
) -> None:
    """Append to the audit log."""
    await conn.execute(
        "INSERT INTO audit_log (actor, action, subject_type, subject_id, detail) "
        "VALUES (%s, %s, %s, %s, %s)",
        (actor, action, subject_type, subject_id, Jsonb(detail)),
    )


async def resolve_review(
    conn: psycopg.AsyncConnection[Any], *, meter_id: int, quantity_id: int, ts: datetime,
    status: str, by: str,
) -> tuple[float, str, str | None] | None:
    """Decide an open held estimate; returns its (value, method, reason) or None if none."""
    cur = await conn.execute(
        "UPDATE vee_estimate_review SET status = %s, resolved_by = %s, resolved_at = now() "
        "WHERE meter_id = %s AND quantity_id = %s AND ts = %s AND status = 'open' "
        "RETURNING value, method, reason",
        (status, by, meter_id, quantity_id, ts),
    )
    row = await cur.fetchone()
    return (float(row[0]), str(row[1]), row[2]) if row else None


async def actual_value(
    conn: psycopg.AsyncConnection[Any], *, meter_id: int, quantity_id: int, ts: datetime,
) -> float | None:
    """The actual reading of a slot, if any."""
    cur = await conn.execute(
        "SELECT value FROM register_reading WHERE meter_id = %(m)s AND quantity_id = %(q)s "
        "AND ts = %(ts)s UNION ALL SELECT value FROM interval_reading WHERE meter_id = %(m)s "
        "AND quantity_id = %(q)s AND ts = %(ts)s",
        {"m": meter_id, "q": quantity_id, "ts": ts},
    )
    row = await cur.fetchone()
    return float(row[0]) if row else None


# --------------------------------------------------------------------------- suspects


async def replace_suspects(
    conn: psycopg.AsyncConnection[Any], *, area: str, d_from: date, d_to: date,
    rows: Sequence[dict[str, Any]],
) -> None:
    """Replace an area's stored suspects for a window (rows carry the JSON fields plus
    ``meter_id``, ``rank`` and ``alert``)."""
    await conn.execute(
        "DELETE FROM suspect WHERE area_id = %s AND d_from = %s AND d_to = %s",
        (area, d_from, d_to),
    )
    if not rows:
        return
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO suspect (area_id, d_from, d_to, meter_number, meter_id, rank, kind, "
            "score, alert, error_estimate, uncertainty, since, evidence) VALUES (%s, %s, %s, "
            "%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            [(area, d_from, d_to, r["meter"], r["meter_id"], r["rank"], r["kind"], r["score"],
              r["alert"], r["error_estimate"], r["uncertainty"],
              datetime.fromisoformat(r["since"]) if r["since"] else None, Jsonb(r["evidence"]))
             for r in rows],
        )


async def multipliers(
    conn: psycopg.AsyncConnection[Any], *, ids: list[int]
) -> dict[int, list[tuple[datetime, float]]]:
    """CT × PT history per meter (ascending); meters without history use the archive's ct × pt.

    Same source as :func:`storage.boundaries.multipliers`, with the meter row as fallback so
    that every meter has one multiplier, applied exactly once.
    """
    cur = await conn.execute(
        "SELECT m.id, h.valid_from, "
        "coalesce(h.ct * h.pt, m.ct * m.pt) FROM meter m "
        "LEFT JOIN meter_multiplier h ON h.meter_id = m.id WHERE m.id = ANY(%s) "
        "ORDER BY m.id, h.valid_from",
        (ids,),
    )
    out: dict[int, list[tuple[datetime, float]]] = {}
    for mid, since, mult in await cur.fetchall():
        out.setdefault(int(mid), []).append((since or _EVER, float(mult)))
    return out


async def has_reverse(
    conn: psycopg.AsyncConnection[Any], *, ids: list[int], start: datetime, end: datetime,
) -> set[int]:
    """Meters with any export data (reverse register or interval) in (start, end]."""
    if not ids:
        return set()
    cur = await conn.execute(
        "SELECT DISTINCT meter_id FROM register_reading WHERE meter_id = ANY(%(ids)s) "
        "AND quantity_id IN (%(r)s, %(fr)s) AND ts > %(s)s AND ts <= %(e)s AND value > 0 "
        "UNION SELECT DISTINCT meter_id FROM interval_reading WHERE meter_id = ANY(%(ids)s) "
        "AND quantity_id = %(ir)s AND ts > %(s)s AND ts <= %(e)s",
        {"ids": ids, "r": Q_REVERSE, "fr": QUANTITY_IDS["daily_frozen_reverse_active_total_kwh"],
         "ir": Q_INTERVAL_REVERSE, "s": start, "e": end},
    )
    return {int(r[0]) for r in await cur.fetchall()}


# ------------------------------------------------------------------ manual reads


_MANUAL: Final[LiteralString] = """
SELECT r.meter_id, r.ts, r.value, r.reader FROM register_reading r
WHERE r.read_kind = 'manual' AND r.quantity_id = ANY(%(qs)s)
  AND r.ts >= %(start)s AND r.ts < %(end)s
  AND (%(ids)s::int8[] IS NULL OR r.meter_id = ANY(%(ids)s))
ORDER BY r.meter_id, r.ts
"""


async def manual_reads(
    conn: psycopg.AsyncConnection[Any], *, start: datetime, end: datetime,
    ids: list[int] | None = None,
) -> list[tuple[int, datetime, float, str | None]]:
    """Manual energy-register reads (meter id, ts, value, reader) in [start, end)."""
    cur = await conn.execute(_MANUAL, {
        "qs": [Q_FORWARD, QUANTITY_IDS["daily_frozen_forward_active_total_kwh"]],
        "start": start, "end": end, "ids": ids})
    return [(int(m), ts, float(v), rd) for m, ts, v, rd in await cur.fetchall()]


async def read_spacing_days(
    conn: psycopg.AsyncConnection[Any], *, ids: list[int]
) -> dict[int, float]:
    """Median days between consecutive energy-register readings per meter (two or more)."""
    if not ids:
        return {}
    cur = await conn.execute(
        "SELECT meter_id, percentile_cont(0.5) WITHIN GROUP (ORDER BY d) FROM ("
        "  SELECT meter_id, extract(epoch FROM ts - lag(ts) OVER (PARTITION BY meter_id "
        "  ORDER BY ts)) / 86400.0 AS d FROM register_reading "
        "  WHERE meter_id = ANY(%s) AND quantity_id = %s) x "
        "WHERE d IS NOT NULL GROUP BY meter_id",
        (ids, Q_FORWARD),
    )
    return {int(m): float(d) for m, d in await cur.fetchall()}


_AUTOMATIC: Final[LiteralString] = """
SELECT meter_id, extract(epoch FROM ts)::float8, value FROM register_reading
WHERE read_kind = 'meter' AND quantity_id = ANY(%(qs)s) AND meter_id = ANY(%(ids)s)
  AND ts >= %(start)s AND ts <= %(end)s
"""


async def automatic_registers(
    conn: psycopg.AsyncConnection[Any], *, ids: list[int], start: datetime, end: datetime,
) -> LongSeries:
    """The meters' own automatic forward-register readings (polls, freezes) in [start, end]:
    what a manual read of the same meter can be checked against."""
    if not ids:
        return _long([])
    series, _ = await _fetch_long(conn, _AUTOMATIC, {
        "qs": [Q_FORWARD, QUANTITY_IDS["daily_frozen_forward_active_total_kwh"]],
        "ids": ids, "start": start, "end": end})
    return series


async def manual_meter_ids(conn: psycopg.AsyncConnection[Any]) -> list[int]:
    """Meters read by hand: protocol ``manual`` or with any manual read."""
    cur = await conn.execute(
        "SELECT id FROM meter WHERE protocol = 'manual' UNION "
        "SELECT DISTINCT meter_id FROM register_reading WHERE read_kind = 'manual'"
    )
    return sorted(int(r[0]) for r in await cur.fetchall())


async def replace_read_scores(
    conn: psycopg.AsyncConnection[Any], *, ids: list[int], first: date, last: date,
    rows: Sequence[tuple[int, date, datetime | None, str | None, float | None, float, float,
                         float, list[str]]],
) -> None:
    """Replace the meters' per-read screening rows of cycles in [first, last]."""
    await conn.execute(
        "DELETE FROM manual_read_score WHERE meter_id = ANY(%s) AND cycle BETWEEN %s AND %s",
        (ids, first, last),
    )
    if not rows:
        return
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO manual_read_score (meter_id, cycle, ts, reader, value, "
            "estimated_score, skipped_score, error_score, evidence) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            list(rows),
        )


async def replace_reader_scores(
    conn: psycopg.AsyncConnection[Any], *, d_from: date, d_to: date,
    rows: Sequence[tuple[str, int, float, int, int, float]],
) -> None:
    """Replace the per-reader summary of a window."""
    await conn.execute("DELETE FROM reader_score WHERE d_from = %s AND d_to = %s",
                       (d_from, d_to))
    if not rows:
        return
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO reader_score (reader, d_from, d_to, reads, estimated, skipped, errors, "
            "score) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            [(r, d_from, d_to, n, e, s, x, sc) for r, n, e, s, x, sc in rows],
        )


def day_start(d: date, zone: Any) -> datetime:
    """Local midnight of ``d`` as an aware datetime."""
    return datetime(d.year, d.month, d.day, tzinfo=zone)


def days_between(first: date, last: date) -> list[date]:
    """Every date from ``first`` to ``last`` inclusive."""
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]
