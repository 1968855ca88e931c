"""Register values at period boundaries, for the same-period line loss (同期线损).

For each boundary instant (local 00:00 for days, month starts for months) and meter, the value
is the daily frozen register stamped at that instant when one exists, else the energy register
read nearest to it within the freeze tolerance. Values come from ``reading_best`` (edited >
actual > substituted > estimated), and each carries whether it is an estimate. Never a
billing-cycle read: only values at the boundary instants count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg

from storage.readings import QUANTITY_IDS, QUANTITY_NAMES

FORWARD = (QUANTITY_IDS["daily_frozen_forward_active_total_kwh"],
           QUANTITY_IDS["forward_active_total_kwh"])
REVERSE = (QUANTITY_IDS["daily_frozen_reverse_active_total_kwh"],
           QUANTITY_IDS["reverse_active_total_kwh"])


@dataclass(frozen=True, slots=True)
class MeterInfo:
    """What the balance needs to know of a meter."""

    id: int
    number: str
    role: str
    bidirectional: bool
    rollover_kwh: float
    installed_at: datetime | None
    start_reading: float | None
    removed_at: datetime | None
    end_reading: float | None
    #: every energy register read at installation / removal, by quantity name: the forward
    #: active total (``start_reading`` / ``end_reading``) and the archive's other registers
    start_readings: dict[str, float] = field(default_factory=dict)
    end_readings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AreaInfo:
    """An area and its own thresholds (None = the site default)."""

    id: str
    loss_band_lo: float | None
    loss_band_hi: float | None
    coverage_min: float | None
    estimated_max: float | None
    low_energy_kwh: float | None


async def areas(conn: psycopg.AsyncConnection[Any], *, area: str | None = None) -> list[AreaInfo]:
    """All areas (or one), ordered by id."""
    cur = await conn.execute(
        "SELECT id, loss_band_lo, loss_band_hi, coverage_min, estimated_max, low_energy_kwh "
        "FROM area WHERE %(a)s::text IS NULL OR id = %(a)s ORDER BY id",
        {"a": area},
    )
    return [AreaInfo(*r) for r in await cur.fetchall()]


async def memberships(
    conn: psycopg.AsyncConnection[Any], *, start: datetime, end: datetime
) -> list[tuple[int, str, datetime | None, datetime | None]]:
    """(meter id, area id, valid_from, valid_to) rows overlapping [start, end)."""
    cur = await conn.execute(
        "SELECT meter_id, area_id, valid_from, valid_to FROM meter_area "
        "WHERE tstzrange(valid_from, valid_to) && tstzrange(%s, %s)",
        (start, end),
    )
    return list(await cur.fetchall())


async def meters(conn: psycopg.AsyncConnection[Any], *, ids: list[int]) -> dict[int, MeterInfo]:
    """Meter facts by id, with their installation and removal readings per register."""
    cur = await conn.execute(
        "SELECT id, number, role, bidirectional, rollover_kwh, installed_at, start_reading, "
        "removed_at, end_reading FROM meter WHERE id = ANY(%s)",
        (ids,),
    )
    rows = await cur.fetchall()
    cur = await conn.execute(
        "SELECT meter_id, event, quantity_id, value FROM meter_exchange_reading "
        "WHERE meter_id = ANY(%s)",
        (ids,),
    )
    extra: dict[tuple[int, str], dict[str, float]] = {}
    for mid, event, qid, value in await cur.fetchall():
        extra.setdefault((mid, event), {})[QUANTITY_NAMES[qid]] = float(value)
    out: dict[int, MeterInfo] = {}
    fwd = "forward_active_total_kwh"
    for r in rows:
        start = dict(extra.get((r[0], "installed"), {}))
        end = dict(extra.get((r[0], "removed"), {}))
        if r[6] is not None:
            start[fwd] = float(r[6])
        if r[8] is not None:
            end[fwd] = float(r[8])
        out[r[0]] = MeterInfo(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8],
                              start_readings=start, end_readings=end)
    return out


async def multipliers(
    conn: psycopg.AsyncConnection[Any], *, ids: list[int]
) -> dict[int, list[tuple[datetime, float]]]:
    """CT × PT history per meter: [(valid_from, multiplier)] ascending."""
    cur = await conn.execute(
        "SELECT meter_id, valid_from, ct * pt FROM meter_multiplier WHERE meter_id = ANY(%s) "
        "ORDER BY meter_id, valid_from",
        (ids,),
    )
    out: dict[int, list[tuple[datetime, float]]] = {}
    for mid, since, mult in await cur.fetchall():
        out.setdefault(mid, []).append((since, float(mult)))
    return out


async def boundary_values(
    conn: psycopg.AsyncConnection[Any],
    *,
    ids: list[int],
    boundaries: list[datetime],
    tolerance: timedelta,
    quantities: tuple[int, int],
) -> dict[tuple[int, int], tuple[float, bool]]:
    """(meter id, boundary index) → (value, is_estimate) for the frozen-or-register pair.

    ``quantities`` is (daily frozen quantity, register quantity): the frozen value at exactly
    the boundary wins; else the register value nearest to the boundary within ``tolerance``,
    the earlier one when two are equally near.
    """
    if not ids or not boundaries:
        return {}
    frozen_q, register_q = quantities
    cur = await conn.execute(
        """
        WITH b AS (SELECT i - 1 AS idx, t FROM unnest(%(b)s::timestamptz[]) WITH ORDINALITY
                   AS u(t, i)),
        cand AS (
            SELECT rb.meter_id, b.idx, rb.value, rb.origin,
                   CASE WHEN rb.quantity_id = %(fq)s THEN 0 ELSE 1 END AS pref,
                   abs(extract(epoch FROM rb.ts - b.t)) AS dist, rb.ts
            FROM b JOIN reading_best rb
              ON rb.meter_id = ANY(%(ids)s)
             AND rb.quantity_id IN (%(fq)s, %(rq)s)
             AND rb.ts BETWEEN b.t - %(tol)s AND b.t + %(tol)s
            WHERE rb.quantity_id = %(rq)s OR rb.ts = b.t
        )
        SELECT DISTINCT ON (meter_id, idx) meter_id, idx, value, origin
        FROM cand ORDER BY meter_id, idx, pref, dist, ts
        """,
        {"b": boundaries, "ids": ids, "fq": frozen_q, "rq": register_q, "tol": tolerance},
    )
    return {
        (int(mid), int(idx)): (float(v), origin in ("estimated", "substituted"))
        for mid, idx, v, origin in await cur.fetchall()
    }
