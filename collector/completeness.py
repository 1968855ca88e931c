"""Collection completeness (采集成功率): expected vs received readings by the polling schedule.

Per meter and local day, ``expected`` counts the schedule slots of the energy register while the
meter was installed (slots counted from local midnight at the meter's interval) plus, for
DL/T 645-2007 meters, the day's 00:00 freeze; ``received`` counts those that are stored.
Readings stamped off the schedule (an import at odd times) do not count.

A missing slot is a **channel fault** when every meter behind the same gateway missed that slot
(the gateway, DTU or its link was down: one field visit), and a **meter fault** when other meters
on the gateway were read (the meter, its wiring or its RS-485 port: a visit per meter). A gateway
with a single polled meter cannot tell the two apart; its gaps count as meter faults. Rows are
rolled up per gateway and per area (the meter's area on that day).

The work is one SQL statement (house style R11); Python only sums the groups.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from typing import Any

import psycopg

_SQL = """
WITH days AS (
    SELECT d::date AS day,
           (d::timestamp AT TIME ZONE %(tz)s) AS t0,
           ((d + interval '1 day')::timestamp AT TIME ZONE %(tz)s) AS t1
    FROM generate_series(%(start)s::date, %(end)s::date, interval '1 day') AS d
),
polled AS (
    SELECT m.id, m.number, m.gateway_id, m.protocol, m.installed_at, m.removed_at,
           make_interval(mins => coalesce(m.interval_min, %(default)s)) AS step
    FROM meter m
    WHERE m.protocol IN ('dlt645-2007', 'dlt645-1997', 'modbus') AND m.gateway_id IS NOT NULL
),
win AS (
    SELECT p.*, d.day, d.t0, d.t1,
           greatest(d.t0, coalesce(p.installed_at, d.t0)) AS a,
           least(d.t1, coalesce(p.removed_at, d.t1)) AS b,
           (SELECT ma.area_id FROM meter_area ma
             WHERE ma.meter_id = p.id
               AND (ma.valid_from IS NULL OR ma.valid_from < d.t1)
               AND (ma.valid_to IS NULL OR ma.valid_to > d.t0)
             ORDER BY ma.valid_from DESC NULLS LAST LIMIT 1) AS area_id
    FROM polled p CROSS JOIN days d
),
slots AS (
    SELECT w.id, w.day, w.gateway_id, s AS slot
    FROM win w
    CROSS JOIN LATERAL generate_series(w.t0, w.t1 - interval '1 microsecond', w.step) AS s
    WHERE s >= w.a AND s < w.b
),
got AS (
    SELECT s.id, s.day, s.gateway_id, s.slot, (r.meter_id IS NOT NULL) AS ok
    FROM slots s
    LEFT JOIN register_reading r
      ON r.meter_id = s.id AND r.quantity_id = 1 AND r.ts = s.slot
),
gw_slot AS (
    SELECT gateway_id, slot, bool_or(ok) AS any_ok, count(*) AS n
    FROM got GROUP BY gateway_id, slot
),
per_meter AS (
    SELECT g.id, g.day,
           count(*) AS slots_expected,
           count(*) FILTER (WHERE g.ok) AS slots_received,
           count(*) FILTER (WHERE NOT g.ok AND NOT gs.any_ok AND gs.n >= 2) AS channel_missing
    FROM got g JOIN gw_slot gs ON gs.gateway_id = g.gateway_id AND gs.slot = g.slot
    GROUP BY g.id, g.day
)
SELECT w.number, w.gateway_id, w.area_id, w.day,
       coalesce(pm.slots_expected, 0)::int,
       coalesce(pm.slots_received, 0)::int,
       coalesce(pm.channel_missing, 0)::int,
       (w.protocol = 'dlt645-2007' AND w.a <= w.t0 AND w.b > w.t0) AS freeze_expected,
       EXISTS (SELECT 1 FROM register_reading r
                WHERE r.meter_id = w.id AND r.quantity_id = 7 AND r.ts = w.t0) AS freeze_received
FROM win w
LEFT JOIN per_meter pm ON pm.id = w.id AND pm.day = w.day
WHERE w.b > w.a
ORDER BY w.day, w.gateway_id, w.number
"""


@dataclass(frozen=True, slots=True)
class MeterDay:
    """Completeness of one meter on one local day.

    Attributes:
        meter: Meter number.
        gateway: Gateway id.
        area: Area id that day (None if unassigned).
        day: Local date.
        expected: Readings expected by the schedule (slots plus the freeze).
        received: Of those, stored.
        channel_missing: Missing slots that every meter of the gateway missed.
        meter_missing: Other missing readings (this meter's own fault).
        rate: ``received / expected`` in percent (None when nothing was expected).
        fault: ``channel``, ``meter`` or None when complete; ``meter`` wins when both occur.
    """

    meter: str
    gateway: str
    area: str | None
    day: date
    expected: int
    received: int
    channel_missing: int
    meter_missing: int
    rate: float | None
    fault: str | None


@dataclass(frozen=True, slots=True)
class GroupDay:
    """Completeness of a gateway or an area on one local day.

    Attributes:
        level: ``gateway`` or ``area``.
        id: Gateway or area id.
        day: Local date.
        meters: Polled meters.
        expected: Expected readings.
        received: Stored readings.
        rate: Percent (None when nothing was expected).
        channel_missing: Readings missing for a channel fault.
        meter_missing: Readings missing for meter faults.
        channel_fault: True when the group has channel-wide gaps.
        faulty_meters: Meters with a meter fault.
    """

    level: str
    id: str
    day: date
    meters: int
    expected: int
    received: int
    rate: float | None
    channel_missing: int
    meter_missing: int
    channel_fault: bool
    faulty_meters: int


@dataclass(frozen=True, slots=True)
class Completeness:
    """Completeness rows per meter, gateway and area."""

    meters: list[MeterDay]
    gateways: list[GroupDay]
    areas: list[GroupDay]


def _rate(received: int, expected: int) -> float | None:
    return 100.0 * received / expected if expected else None


def _group(level: str, key: str, day: date, rows: list[MeterDay]) -> GroupDay:
    expected = sum(r.expected for r in rows)
    received = sum(r.received for r in rows)
    channel = sum(r.channel_missing for r in rows)
    return GroupDay(level, key, day, len(rows), expected, received, _rate(received, expected),
                    channel, sum(r.meter_missing for r in rows), channel > 0,
                    sum(1 for r in rows if r.meter_missing > 0))


async def completeness(
    conn: psycopg.AsyncConnection[Any], *, start: date, end: date, tz: str,
    default_interval: int = 15,
) -> Completeness:
    """Expected vs received polled readings per meter, gateway and area and local day.

    Args:
        conn: Open connection (read only).
        start: First local date.
        end: Last local date (inclusive).
        tz: Site time zone name.
        default_interval: Interval of meters without one in the archive.

    Returns:
        The rows, ordered by day, gateway and meter.
    """
    cur = await conn.execute(_SQL, {"tz": tz, "start": start, "end": end,
                                    "default": default_interval})
    meters: list[MeterDay] = []
    for (number, gw, area, day, s_exp, s_got, chan, f_exp, f_got) in await cur.fetchall():
        expected = s_exp + (1 if f_exp else 0)
        received = s_got + (1 if f_exp and f_got else 0)
        missing = expected - received
        meter_missing = missing - chan
        fault = "meter" if meter_missing else "channel" if chan else None
        meters.append(MeterDay(number, gw, area, day, expected, received, chan, meter_missing,
                               _rate(received, expected), fault))
    by_gw: dict[tuple[str, date], list[MeterDay]] = defaultdict(list)
    by_area: dict[tuple[str, date], list[MeterDay]] = defaultdict(list)
    for r in meters:
        by_gw[(r.gateway, r.day)].append(r)
        if r.area is not None:
            by_area[(r.area, r.day)].append(r)
    def order(item: tuple[tuple[str, date], list[MeterDay]]) -> tuple[date, str]:
        return item[0][1], item[0][0]

    gateways = [_group("gateway", k, d, rows) for (k, d), rows in sorted(by_gw.items(), key=order)]
    areas = [_group("area", k, d, rows) for (k, d), rows in sorted(by_area.items(), key=order)]
    return Completeness(meters, gateways, areas)
