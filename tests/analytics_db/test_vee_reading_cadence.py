"""``vee report`` counts manually read meters on their reading cycle, not the archived interval.

A reading-book meter read once a day (or once a month) has one expected read per cycle; its
archived interval (15 minutes by default) says nothing about how often a reader visits it.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from analytics.vee_db import vee_report_command, vee_run_command
from tests.analytics_db.conftest import settings_for

pytestmark = pytest.mark.db

TZ = ZoneInfo("Asia/Shanghai")

ARCHIVE = """version = 1
[[area]]
id = "RC-A"
[[meter]]
number = "580000000001"
area = "RC-A"
protocol = "manual"
interval = 15
[[meter]]
number = "580000000002"
area = "RC-A"
protocol = "manual"
schedule = "monthly"
[[meter]]
number = "580000000003"
area = "RC-A"
protocol = "manual"
schedule = "daily"
interval = 1440
[[meter]]
number = "580000000004"
area = "RC-A"
protocol = "manual"
[[meter]]
number = "580000000005"
area = "RC-A"
protocol = "mqtt"
interval = 60
"""


def _reads() -> list[tuple[str, datetime, float]]:
    rows: list[tuple[str, datetime, float]] = []
    # daily reads at 09:xx on 2026-01-01 … 01-10, none on the 4th and the 7th
    for d in range(10):
        if d in (3, 6):
            continue
        ts = datetime(2026, 1, 1, 9, 0, tzinfo=TZ) + timedelta(days=d, minutes=3 * d)
        rows.append(("580000000001", ts, 100.0 + 7.0 * d))
        rows.append(("580000000003", ts, 500.0 + 5.0 * d))
    # monthly reads on the 5th, January … June, none in March
    for k, month in enumerate((1, 2, 4, 5, 6)):
        ts = datetime(2026, month, 5, 10, 0, tzinfo=TZ)
        rows.append(("580000000002", ts, 1000.0 + 200.0 * k))
        rows.append(("580000000004", ts, 3000.0 + 150.0 * k))
    return rows


def _json(capsys: pytest.CaptureFixture[str]) -> Any:
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def url(new_db: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    import asyncio

    from collector.archive import load_file
    from storage.archive import load_archive

    db = new_db()
    path = tmp_path_factory.mktemp("cadence") / "fleet.toml"
    path.write_text(ARCHIVE)
    archive = load_file(path, site_timezone="Asia/Shanghai")

    async def load() -> None:
        async with await psycopg.AsyncConnection.connect(db) as conn, conn.transaction():
            await load_archive(conn, archive, actor="test", now=datetime.now(TZ))

    asyncio.run(load())
    with psycopg.connect(db) as conn:
        ids = dict(conn.execute("SELECT number, id FROM meter").fetchall())
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO register_reading (meter_id, quantity_id, ts, value, source, "
                "read_kind, reader) VALUES (%s, 1, %s, %s, 'book', 'manual', 'Li')",
                [(ids[n], ts, v) for n, ts, v in _reads()])
            # the 60-minute meter: hourly intervals on 2026-01-01, one missing
            cur.executemany(
                "INSERT INTO interval_reading (meter_id, quantity_id, ts, value, interval_min, "
                "source) VALUES (%s, 20, %s, 1.0, 60, 'test')",
                [(ids["580000000005"], datetime(2026, 1, 1, h, tzinfo=TZ), ) for h in range(1, 24)
                 if h != 12])
    return str(db)


def test_daily_manual_meters_expect_one_read_a_day(url: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    s = settings_for(url)
    assert vee_report_command(s, url, date_from="2026-01-01", date_to="2026-01-10",
                              as_json=True) == 0
    rows = {r["meter"]: r for r in _json(capsys)["meters"]}
    for number in ("580000000001", "580000000003"):  # archived 15 min / daily schedule
        r = rows[number]
        assert r["interval"] == 1440
        assert (r["expected"], r["received"], r["missing"]) == (10, 8, 2), r
        assert (r["gaps"], r["gap_slots_max"]) == (2, 1), r
        assert r["flags"]["gap"] == 2
        assert r["first"].startswith("2026-01-01T09:00") and r["last"].startswith("2026-01-10")
    # an automatically read meter keeps its interval
    r = rows["580000000005"]
    assert r["interval"] == 60
    assert (r["expected"], r["received"], r["missing"]) == (23, 22, 1), r


def test_monthly_manual_meters_expect_one_read_a_month(url: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    s = settings_for(url)
    assert vee_report_command(s, url, as_json=True) == 0
    rows = {r["meter"]: r for r in _json(capsys)["meters"]}
    for number in ("580000000002", "580000000004"):  # schedule "monthly" / inferred
        r = rows[number]
        assert r["interval"] is None, r  # a calendar month has no fixed length
        assert (r["expected"], r["received"], r["missing"], r["gaps"]) == (6, 5, 1, 1), r
        assert r["first"].startswith("2026-01-05") and r["last"].startswith("2026-06-05")


def test_vee_run_stores_the_cycle_rows(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    s = settings_for(url)
    assert vee_run_command(s, url, date_from="2026-01-01", date_to="2026-01-10",
                           as_json=True) == 0
    capsys.readouterr()
    with psycopg.connect(url) as conn:
        got = {n: tuple(rest) for n, *rest in conn.execute(
            "SELECT m.number, r.interval_min, r.expected, r.received, r.missing "
            "FROM vee_meter_result r JOIN meter m ON m.id = r.meter_id "
            "WHERE r.d_from = '2026-01-01'").fetchall()}
        flags = conn.execute(
            "SELECT f.day, f.count FROM vee_flag f JOIN meter m ON m.id = f.meter_id "
            "WHERE m.number = '580000000001' AND f.rule = 'gap' ORDER BY f.day").fetchall()
    assert got["580000000001"] == (1440, 10, 8, 2)
    assert got["580000000005"][0] == 60
    assert [(d.isoformat(), c) for d, c in flags] == [("2026-01-04", 1), ("2026-01-07", 1)]


def test_report_for_one_manual_meter(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    s = settings_for(url)
    assert vee_report_command(s, url, meter="580000000001", as_json=True) == 0
    (r,) = _json(capsys)["meters"]
    assert (r["interval"], r["expected"], r["received"]) == (1440, 10, 8)
