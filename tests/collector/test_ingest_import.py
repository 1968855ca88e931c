"""Idempotent ingest, CSV import, the archive and the quarantine, on the real database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from storage.readings import IntervalRow, RegisterRow, ingest

pytestmark = pytest.mark.db

METERHUB = str(Path(sys.executable).parent / "meterhub")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _cli(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERHUB_")}
    env["METERHUB_DATABASE_URL"] = db_url
    return subprocess.run([METERHUB, *args], capture_output=True, text=True, env=env,
                          timeout=120, check=False)


async def _meter(conn: psycopg.AsyncConnection[Any], number: str) -> int:
    cur = await conn.execute(
        "INSERT INTO meter (number, protocol) VALUES (%s, 'mqtt') "
        "ON CONFLICT (number) DO UPDATE SET number = EXCLUDED.number RETURNING id",
        (number,),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def test_same_batch_twice_is_stored_once(db_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        m = await _meter(conn, "880000000001")
        rows = [RegisterRow(m, 1, T0 + timedelta(minutes=15 * i), 100.0 + i) for i in range(500)]
        first = await ingest(conn, rows, source="test", received_at=T0)
        second = await ingest(conn, rows, source="test", received_at=T0)
        assert (first.inserted, first.duplicates, first.conflicts) == (500, 0, 0)
        assert (second.inserted, second.duplicates, second.conflicts) == (0, 500, 0)
        cur = await conn.execute("SELECT count(*) FROM register_reading WHERE meter_id = %s", (m,))
        assert (await cur.fetchone()) == (500,)
        await conn.rollback()


async def test_different_value_is_a_conflict_and_never_overwrites(db_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        m = await _meter(conn, "880000000002")
        await ingest(conn, [IntervalRow(m, 20, T0, 0.25, 15)], source="a", received_at=T0)
        mixed = [
            IntervalRow(m, 20, T0, 0.30, 15),  # different value: conflict
            IntervalRow(m, 20, T0, 0.25, 15),  # identical: duplicate
            IntervalRow(m, 20, T0 + timedelta(minutes=15), 0.5, 15),  # new
            IntervalRow(m, 20, T0 + timedelta(minutes=15), 0.5, 15),  # repeated in the batch
        ]
        res = await ingest(conn, mixed, source="b", received_at=T0)
        assert (res.rows_in, res.inserted, res.duplicates, res.conflicts) == (4, 1, 2, 1)
        cur = await conn.execute(
            "SELECT value FROM interval_reading WHERE meter_id = %s AND ts = %s", (m, T0)
        )
        assert (await cur.fetchone()) == (0.25,)
        cur = await conn.execute(
            "SELECT stored_value, offered_value, source FROM reading_conflict WHERE meter_id = %s",
            (m,),
        )
        assert await cur.fetchall() == [(0.25, 0.30, "b")]
        # the same conflicting value again is not recorded twice
        again = await ingest(conn, mixed[:1], source="b", received_at=T0)
        assert again.conflicts == 1
        cur = await conn.execute("SELECT count(*) FROM reading_conflict WHERE meter_id = %s", (m,))
        assert (await cur.fetchone()) == (1,)
        await conn.rollback()


FLEET = """
version = 1
timezone = "Asia/Shanghai"
[[area]]
id = "T-A1"
loss_band = [0.0, 8.0]
[[meter]]
number = "770000000001"
area = "T-A1"
role = "supply"
protocol = "dlt645-2007"
ct = 40
[[meter]]
number = "770000000002"
area = "T-A1"
protocol = "dlt645-2007"
customer = "T-CUST1"
account = "T-ACC1"
"""

CSV = """\ufeffmeter,ts,quantity,value,read_kind,reader
770000000001,2026-01-01T00:00:00+08:00,forward_active_total_kwh,100.5,meter,
770000000001,2026-01-01T00:15:00+08:00,forward_active_total_kwh,101.5,meter,
770000000002,2026-01-01T00:15:00+08:00,interval_kwh,0.25,meter,
770000000002,2026-01-01T00:30:00+08:00,interval_kwh,0.5,meter,
770000000002,2026-01-01T00:45:00+08:00,interval_kwh,0.5,meter,
770000000009,2026-01-01T00:30:00+08:00,interval_kwh,0.5,meter,
770000000002,2026-01-01T00:45:00,interval_kwh,0.5,meter,
770000000002,2026-01-01T01:00:00+08:00,interval_kwh,abc,meter,
770000000002,2026-01-01T01:00:00+08:00,no_such_quantity,1,meter,
770000000002,2026-01-02T00:00:00+08:00,forward_active_total_kwh,12.0,manual,Zhang
"""


def test_fleet_import_quarantine_end_to_end(db_url: str, tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(FLEET)
    first = _cli(db_url, "fleet", "load", str(fleet), "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["created"] == {"area": 1, "meter": 2}
    again = _cli(db_url, "fleet", "load", str(fleet), "--json")
    assert json.loads(again.stdout)["created"] == {}
    assert json.loads(again.stdout)["unchanged"] == {"area": 1, "meter": 2}

    csv_file = tmp_path / "history.csv"
    csv_file.write_text(CSV, encoding="utf-8")
    imp = _cli(db_url, "import", "readings", str(csv_file), "--json")
    assert imp.returncode == 1, imp.stderr  # some rows quarantined
    doc = json.loads(imp.stdout)
    assert doc["inserted"] == 6
    assert [(r["line"], r["reason"]) for r in doc["rejected"]] == [
        (7, "unknown_meter"), (8, "naive_timestamp"), (9, "bad_value"), (10, "unknown_quantity"),
    ]
    assert doc["intervals_inferred"] == {"770000000001": 15, "770000000002": 15}

    # re-importing the same file changes nothing
    before = _counts(db_url)
    again_imp = _cli(db_url, "import", "readings", str(csv_file), "--json")
    assert again_imp.returncode == 1
    assert json.loads(again_imp.stdout)["inserted"] == 0
    assert json.loads(again_imp.stdout)["duplicates"] == 6
    assert _counts(db_url) == before

    listed = json.loads(_cli(db_url, "quarantine", "list", "--json").stdout)["items"]
    unknown = [i for i in listed if i["reason"] == "unknown_meter"]
    assert len(unknown) == 1 and unknown[0]["context"]["line"] == 7
    shown = json.loads(_cli(db_url, "quarantine", "show", str(unknown[0]["id"])).stdout)
    assert shown["raw_text"].startswith("770000000009,")

    # fix the cause (add the meter to the archive), then replay
    fleet.write_text(FLEET + '[[meter]]\nnumber = "770000000009"\narea = "T-A1"\n'
                     'protocol = "dlt645-2007"\n')
    assert _cli(db_url, "fleet", "load", str(fleet)).returncode == 0
    replay = _cli(db_url, "quarantine", "replay", str(unknown[0]["id"]), "--json")
    assert replay.returncode == 0, replay.stdout
    assert json.loads(replay.stdout)["replayed"][0]["ok"] is True
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT r.value FROM interval_reading r JOIN meter m ON m.id = r.meter_id "
            "WHERE m.number = '770000000009'"
        ).fetchone()
        assert row == (0.5,)
        manual = conn.execute(
            "SELECT read_kind, reader FROM register_reading r JOIN meter m ON m.id = r.meter_id "
            "WHERE m.number = '770000000002'"
        ).fetchone()
        assert manual == ("manual", "Zhang")


def _counts(db_url: str) -> tuple[int, ...]:
    with psycopg.connect(db_url) as conn:
        return tuple(
            conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # type: ignore[index]
            for t in ("register_reading", "interval_reading", "quarantine", "reading_conflict")
        )


def test_fleet_reload_keeps_history(db_url: str, tmp_path: Path) -> None:
    fleet = tmp_path / "f.toml"
    base = (
        'version = 1\n[[area]]\nid = "H-A1"\n[[area]]\nid = "H-A2"\n'
        '[[meter]]\nnumber = "660000000001"\narea = "{area}"\nprotocol = "mqtt"\nct = {ct}\n'
    )
    fleet.write_text(base.format(area="H-A1", ct=1))
    assert _cli(db_url, "fleet", "load", str(fleet)).returncode == 0
    fleet.write_text(base.format(area="H-A2", ct=50))
    moved = _cli(db_url, "fleet", "load", str(fleet), "--json")
    assert json.loads(moved.stdout)["updated"] == {"meter": 1}
    with psycopg.connect(db_url) as conn:
        areas = conn.execute(
            "SELECT ma.area_id, ma.valid_to IS NULL FROM meter_area ma JOIN meter m ON m.id = "
            "ma.meter_id WHERE m.number = '660000000001' ORDER BY ma.valid_from NULLS FIRST"
        ).fetchall()
        assert areas == [("H-A1", False), ("H-A2", True)]
        mults = conn.execute(
            "SELECT mm.ct FROM meter_multiplier mm JOIN meter m ON m.id = mm.meter_id "
            "WHERE m.number = '660000000001' ORDER BY valid_from"
        ).fetchall()
        assert mults == [(1.0,), (50.0,)]
        audit = conn.execute(
            "SELECT count(*) FROM audit_log WHERE subject_id = '660000000001'"
        ).fetchone()
        assert audit == (2,)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('version = 1\n[[meter]]\nnumber = "12"\nprotocol = "mqtt"\n', "meter[0] (12).number"),
        ('version = 1\n[[meter]]\nnumber = "660000000002"\nprotocol = "x"\n', "protocol"),
        ('version = 1\n[[meter]]\nnumber = "660000000002"\nprotocol = "mqtt"\ncolour = 1\n',
         "colour: unknown key"),
        ('version = 2\n', "version"),
        ('version = 1\ntimezone = "UTC"\n', "timezone"),
        ("version = [", "not valid TOML"),
    ],
)
def test_bad_archives_name_the_field(db_url: str, tmp_path: Path, text: str, needle: str) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(text)
    proc = _cli(db_url, "fleet", "load", str(f), "--json")
    assert proc.returncode == 2
    assert needle in json.loads(proc.stdout)["error"]["message"]


def test_unreadable_csv_is_exit_2(db_url: str, tmp_path: Path) -> None:
    f = tmp_path / "latin1.csv"
    f.write_bytes("meter,ts,quantity,value\n770000000001,ü".encode("latin-1"))
    proc = _cli(db_url, "import", "readings", str(f), "--json")
    assert proc.returncode == 2
    assert json.loads(proc.stdout)["error"]["reason"] == "not_utf8"
    g = tmp_path / "header.csv"
    g.write_text("meter,when,quantity,value\n")
    proc = _cli(db_url, "import", "readings", str(g), "--json")
    assert proc.returncode == 2
    assert "ts" in json.loads(proc.stdout)["error"]["message"]
