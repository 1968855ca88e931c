"""Completeness (采集成功率) per meter, gateway and area, with a channel fault and meter faults."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from collector.completeness import completeness
from storage.readings import RegisterRow, ingest

pytestmark = pytest.mark.db

TZ = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 3, 1)
T0 = datetime(2026, 3, 1, tzinfo=TZ)


@pytest.fixture
def fresh_db(empty_db: str) -> Iterator[str]:
    """A migrated database of its own for one test."""
    from storage import migrate

    with psycopg.connect(empty_db, autocommit=True) as conn:
        migrate.upgrade(conn)
    yield empty_db


async def _meter(conn: psycopg.AsyncConnection[Any], number: str, gateway: str,
                 area: str) -> int:
    cur = await conn.execute(
        "INSERT INTO meter (number, protocol, gateway_id, interval_min) "
        "VALUES (%s, 'dlt645-2007', %s, 60) RETURNING id", (number, gateway))
    row = await cur.fetchone()
    assert row is not None
    await conn.execute("INSERT INTO meter_area (meter_id, area_id) VALUES (%s, %s)",
                       (row[0], area))
    return int(row[0])


async def test_channel_fault_is_told_from_meter_faults(fresh_db: str) -> None:
    async with await psycopg.AsyncConnection.connect(fresh_db) as conn:
        await conn.execute("INSERT INTO area (id) VALUES ('A1'), ('A2')")
        await conn.execute("INSERT INTO gateway (id, url) VALUES ('G1', 'tcp://x:1'), "
                           "('G2', 'tcp://x:2')")
        g1 = [await _meter(conn, f"00000000000{i}", "G1", "A1") for i in (1, 2, 3)]
        for i in (1, 2):
            await _meter(conn, f"00000000001{i}", "G2", "A2")
        rows: list[RegisterRow] = []
        for k, mid in enumerate(g1):
            rows.append(RegisterRow(mid, 7, T0, 100.0 + k))  # the 00:00 freeze
            for h in range(24):
                if 10 <= h <= 12:
                    continue  # the whole gateway G1 was down 10:00-12:59: a channel fault
                if k == 1 and h in (5, 6, 7):
                    continue  # meter 2 alone missed three slots: a meter fault
                rows.append(RegisterRow(mid, 1, T0 + timedelta(hours=h), 100.0 + h))
        rows.append(RegisterRow(g1[2], 1, T0 + timedelta(hours=3, minutes=7), 1.0))  # off-slot
        await ingest(conn, rows, source="test", received_at=T0)
        await conn.commit()
        report = await completeness(conn, start=DAY, end=DAY, tz="Asia/Shanghai")

    by_meter = {r.meter: r for r in report.meters}
    m1, m2, m3 = (by_meter[f"00000000000{i}"] for i in (1, 2, 3))
    assert (m1.expected, m1.received, m1.channel_missing, m1.meter_missing) == (25, 22, 3, 0)
    assert m1.fault == "channel"
    assert (m2.received, m2.channel_missing, m2.meter_missing, m2.fault) == (19, 3, 3, "meter")
    assert m3.received == 22  # the off-schedule reading does not count
    assert m1.rate == pytest.approx(100 * 22 / 25)

    gws = {g.id: g for g in report.gateways}
    assert gws["G1"].channel_fault and gws["G1"].faulty_meters == 1
    assert (gws["G1"].expected, gws["G1"].received) == (75, 63)
    # G2 answered nothing all day: every gap is the channel's (freezes count as the meters')
    assert gws["G2"].channel_fault and gws["G2"].received == 0
    assert gws["G2"].channel_missing == 48 and gws["G2"].meter_missing == 2
    areas = {a.id: a for a in report.areas}
    assert areas["A1"].meters == 3 and areas["A1"].rate == pytest.approx(100 * 63 / 75)
    assert areas["A2"].rate == 0.0


async def test_installation_inside_the_day_limits_what_is_expected(fresh_db: str) -> None:
    async with await psycopg.AsyncConnection.connect(fresh_db) as conn:
        await conn.execute("INSERT INTO area (id) VALUES ('A1')")
        await conn.execute("INSERT INTO gateway (id, url) VALUES ('G1', 'tcp://x:1')")
        mid = await _meter(conn, "000000000001", "G1", "A1")
        await conn.execute("UPDATE meter SET installed_at = %s WHERE id = %s",
                           (T0 + timedelta(hours=18), mid))
        await ingest(conn, [RegisterRow(mid, 1, T0 + timedelta(hours=h), 1.0 + h)
                            for h in range(18, 24)], source="t", received_at=T0)
        await conn.commit()
        report = await completeness(conn, start=DAY, end=DAY + timedelta(days=1),
                                    tz="Asia/Shanghai")
    first, second = report.meters
    assert (first.day, first.expected, first.received, first.fault) == (DAY, 6, 6, None)
    assert (second.expected, second.received) == (25, 0)  # next day: 24 slots + the freeze
    assert second.fault == "meter"  # a single-meter gateway cannot prove a channel fault
