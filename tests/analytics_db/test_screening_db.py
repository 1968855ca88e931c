"""``vee screen`` from the database: 估抄 / 错抄 found with their evidence, checked against a
meter's automatic register where it has one."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from analytics.screening_db import vee_screen_command
from tests.analytics_db.conftest import settings_for
from tests.analytics_db.simdb import load_world, make_world

pytestmark = pytest.mark.db

START = "2026-03-01"
TZ = ZoneInfo("Asia/Shanghai")


def test_estimated_and_mistyped_reads_of_a_simulated_book(
    new_db: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world = make_world({"seed": 12, "areas": 1, "meters_per_area": 30, "days": 30,
                        "start": START, "devices": {"dlt645_share": 0.5, "mqtt_share": 0.5,
                                                    "modbus_share": 0.0, "manual_share": 0.6},
                        "load": {"pv_share": 0.0},
                        "injections": {"manual_estimated": 0.08, "manual_skipped": 0.08,
                                       "manual_mistyped": 0.08}})
    url = new_db()

    async def load() -> dict[str, Any]:
        async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
            return await load_world(conn, world, tmp_path, intervals=False, freezes=False)

    truth = asyncio.run(load())
    assert vee_screen_command(settings_for(url), url, date_from=START, date_to="2026-03-31",
                              show_all=True, as_json=True) == 0
    reads = {(r["meter"], r["cycle"]): r for r in json.loads(capsys.readouterr().out)["reads"]}
    kind = {(m["number"], r["ts"][:10]): r for m in truth["meters"] for r in m["manual_reads"]}
    for name, attr in (("estimated", "estimated"), ("mistyped", "error")):
        want = {k for k, r in kind.items() if r["kind"] == name
                and abs(r["value"] - r["true_value"]) > 0.005}
        got = {k for k, r in reads.items() if r[attr] >= 0.5}
        assert len(want) >= 20
        assert len(want & got) / len(want) >= 0.85, name  # recall
        assert len(want & got) / len(got) >= 0.85, name  # precision
        assert all(reads[k]["evidence"] for k in got)
    actual = [k for k, r in kind.items() if r["kind"] == "actual"]
    false = [k for k in actual
             if max(reads[k]["estimated"], reads[k]["error"], reads[k]["skipped"]) >= 0.5]
    assert len(false) <= 0.02 * len(actual)


def test_a_polled_meter_read_by_hand_is_checked_against_its_register(
    new_db: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from collector.archive import load_file
    from storage.archive import load_archive

    url = new_db()
    path = tmp_path / "f.toml"
    path.write_text('version = 1\n[[meter]]\nnumber = "590000000001"\nprotocol = "dlt645-2007"\n'
                    'interval = 60\n')
    archive = load_file(path, site_timezone="Asia/Shanghai")

    async def load() -> None:
        async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
            await load_archive(conn, archive, actor="test", now=datetime.now(TZ))

    asyncio.run(load())
    t0 = datetime(2026, 3, 1, tzinfo=TZ)

    def register(t: datetime) -> float:  # 0.3 kWh an hour, from 1000.17 kWh
        return round(1000.17 + 0.3 * (t - t0).total_seconds() / 3600.0, 2)

    polls = [t0 + timedelta(hours=h) for h in range(24 * 8)]
    manual = {d: t0 + timedelta(days=d, hours=9, minutes=30) for d in range(8)}
    written = {d: register(t) for d, t in manual.items()}
    written[3] = written[3] + 2.41  # written without reading the meter
    written[5] = written[5] * 10.0  # the decimal point one place off
    with psycopg.connect(url) as conn:
        mid = conn.execute("SELECT id FROM meter WHERE number = '590000000001'").fetchone()[0]
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO register_reading (meter_id, quantity_id, ts, value, source) "
                "VALUES (%s, 1, %s, %s, 'poll')", [(mid, t, register(t)) for t in polls])
            cur.executemany(
                "INSERT INTO register_reading (meter_id, quantity_id, ts, value, source, "
                "read_kind, reader) VALUES (%s, 1, %s, %s, 'book', 'manual', 'Wang')",
                [(mid, manual[d], written[d]) for d in manual])
    assert vee_screen_command(settings_for(url), url, date_from=START, date_to="2026-03-08",
                              show_all=True, as_json=True) == 0
    reads = {r["cycle"]: r for r in json.loads(capsys.readouterr().out)["reads"]}
    assert reads["2026-03-04"]["estimated"] == 1.0
    assert "differs_from_ami" in reads["2026-03-04"]["evidence"]
    assert reads["2026-03-06"]["error"] == 1.0
    assert {"differs_from_ami", "times_ten_slip"} <= set(reads["2026-03-06"]["evidence"])
    for day in ("2026-03-02", "2026-03-03", "2026-03-05", "2026-03-07"):
        r = reads[day]
        assert "matches_ami" in r["evidence"], r
        assert max(r["estimated"], r["error"], r["skipped"]) == 0.0, r
