"""Meter exchanges in the archive: every energy register's readings at installation and removal.

A bidirectional (PV) meter exchanged in the middle of a day: the balance needs the old meter's
end and the new meter's start on the reverse register as well as on the forward one. The
archive carries them (``end_readings`` / ``start_readings``), ``fleet load`` keeps them with
history, and ``analyze lineloss`` uses them register by register; without them the day is
不可算, never computed with a reverse term taken as zero.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest

pytestmark = pytest.mark.db

METERHUB = str(Path(sys.executable).parent / "meterhub")
TZ = ZoneInfo("Asia/Shanghai")
D0 = datetime(2026, 3, 1, tzinfo=TZ)

OLD_END = """removed = "2026-03-02T10:00:00+08:00"
end_reading = 130.0
end_readings = {{ reverse_active_total_kwh = 22.0, forward_active_t3_kwh = 70.5 }}
"""
NEW_START = """installed = "2026-03-02T10:00:00+08:00"
start_reading = 0.5
start_readings = {{ reverse_active_total_kwh = 0.25 }}
"""
ARCHIVE = """version = 1
[[area]]
id = "EX-A"
[[meter]]
number = "570000000001"
area = "EX-A"
role = "supply"
protocol = "dlt645-2007"
[[meter]]
number = "570000000002"
area = "EX-A"
protocol = "dlt645-2007"
[[meter]]
number = "570000000003"
area = "EX-A"
protocol = "dlt645-2007"
bidirectional = true
{old_end}
[[meter]]
number = "570000000004"
area = "EX-A"
protocol = "dlt645-2007"
bidirectional = true
{new_start}
"""

# quantity id -> meter -> day index -> value at local 00:00 of 2026-03-01 + day
FROZEN = {
    7: {  # daily frozen forward
        "570000000001": {0: 1000.0, 1: 1100.0, 2: 1200.0},
        "570000000002": {0: 200.0, 1: 260.0, 2: 320.0},
        "570000000003": {0: 100.0, 1: 120.0},  # removed on day 1 at 130.0
        "570000000004": {2: 15.5},  # installed on day 1 at 0.5
    },
    8: {  # daily frozen reverse
        "570000000003": {0: 10.0, 1: 20.0},  # removed at 22.0
        "570000000004": {2: 9.25},  # installed at 0.25
    },
}


def _cli(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERHUB_")}
    env["METERHUB_DATABASE_URL"] = db_url
    return subprocess.run([METERHUB, *args], capture_output=True, text=True, env=env,
                          timeout=120, check=False)


def _archive(old_end: str = OLD_END, new_start: str = NEW_START) -> str:
    return ARCHIVE.format(old_end=old_end.format(), new_start=new_start.format())


def _fleet_load(db_url: str, path: Path, text: str) -> dict[str, dict[str, int]]:
    path.write_text(text)
    proc = _cli(db_url, "fleet", "load", str(path), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def _exchange_day(db_url: str) -> dict[str, object]:
    proc = _cli(db_url, "analyze", "lineloss", "--from", "2026-03-01", "--to", "2026-03-02",
                "--area", "EX-A", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["date"]: r for r in json.loads(proc.stdout)["areas"]}
    return rows["2026-03-02"]  # type: ignore[no-any-return]


def _stored(db_url: str, number: str) -> set[tuple[str, str, float]]:
    with psycopg.connect(db_url) as conn:
        return set(conn.execute(
            "SELECT e.event, q.name, e.value FROM meter_exchange_reading e "
            "JOIN quantity q ON q.id = e.quantity_id JOIN meter m ON m.id = e.meter_id "
            "WHERE m.number = %s", (number,)).fetchall())


@pytest.fixture(scope="module")
def loaded(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("exchange") / "fleet.toml"
    _fleet_load(db_url, path, _archive())
    with psycopg.connect(db_url) as conn:
        ids = dict(conn.execute("SELECT number, id FROM meter WHERE number LIKE '5700%'"))
        rows = [(ids[number], q, D0 + timedelta(days=day), v)
                for q, meters in FROZEN.items() for number, series in meters.items()
                for day, v in series.items()]
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO register_reading (meter_id, quantity_id, ts, value, source) "
                "VALUES (%s, %s, %s, %s, 'test')", rows)
    return str(path)


@pytest.mark.usefixtures("loaded")
def test_exchange_readings_are_stored_per_register(db_url: str) -> None:
    assert _stored(db_url, "570000000003") == {
        ("removed", "reverse_active_total_kwh", 22.0),
        ("removed", "forward_active_t3_kwh", 70.5),
    }
    assert _stored(db_url, "570000000004") == {("installed", "reverse_active_total_kwh", 0.25)}
    with psycopg.connect(db_url) as conn:
        fwd = conn.execute("SELECT number, start_reading, end_reading FROM meter "
                           "WHERE number IN ('570000000003', '570000000004') ORDER BY 1").fetchall()
    assert fwd == [("570000000003", None, 130.0), ("570000000004", 0.5, None)]


@pytest.mark.usefixtures("loaded")
def test_bidirectional_exchange_mid_day_balances_both_registers(db_url: str) -> None:
    day = _exchange_day(db_url)
    # supply = supply forward 100 + customers' export: old meter 22 − 20, new meter 9.25 − 0.25
    supply = 100.0 + (22.0 - 20.0) + (9.25 - 0.25)
    # sales = 60 + old meter 130 − 120 + new meter 15.5 − 0.5 (the supply meter exports nothing)
    sales = 60.0 + (130.0 - 120.0) + (15.5 - 0.5)
    assert day["supply_kwh"] == pytest.approx(supply)
    assert day["sales_kwh"] == pytest.approx(sales)
    assert day["rate"] == pytest.approx((supply - sales) / supply * 100.0)
    assert day["coverage"] == pytest.approx(100.0)
    assert day["state"] == "high_loss"  # 26 / 111 = 23.4 % > 10 %


def test_reload_unchanged_then_without_reverse_readings(db_url: str, loaded: str) -> None:
    path = Path(loaded)
    again = _fleet_load(db_url, path, _archive())
    assert again["updated"] == {} and again["unchanged"]["meter"] == 4
    # an archive that records only the forward register of the new meter's start
    report = _fleet_load(db_url, path, _archive(new_start='installed = "2026-03-02T10:00:00'
                                                          '+08:00"\nstart_reading = 0.5\n'))
    assert report["updated"] == {"meter": 1}
    assert _stored(db_url, "570000000004") == set()
    with psycopg.connect(db_url) as conn:
        detail = conn.execute(
            "SELECT detail FROM audit_log WHERE subject_id = '570000000004' "
            "AND action = 'updated' ORDER BY id DESC LIMIT 1").fetchone()[0]  # type: ignore[index]
    assert detail["start_readings"] == {"old": {"reverse_active_total_kwh": 0.25}, "new": {}}
    day = _exchange_day(db_url)  # the reverse term of the new meter is missing: 不可算
    assert day["state"] == "not_computable" and day["rate"] is None
    # restored: computable again
    _fleet_load(db_url, path, _archive())
    assert _exchange_day(db_url)["state"] == "high_loss"


def test_csv_archive_carries_the_readings(db_url: str, tmp_path: Path) -> None:
    f = tmp_path / "meters.csv"
    f.write_text(
        "number,area,protocol,bidirectional,removed,end_reading,"
        "end_readings.reverse_active_total_kwh\n"
        "570000000021,EX-C,mqtt,true,2026-03-02T10:00:00+08:00,40.5,3.5\n"
    )
    proc = _cli(db_url, "fleet", "load", str(f))
    assert proc.returncode == 0, proc.stderr
    assert _stored(db_url, "570000000021") == {("removed", "reverse_active_total_kwh", 3.5)}


@pytest.mark.parametrize(
    ("meter", "needle"),
    [
        ("end_readings = { reverse_active_total_kwh = 3.0 }",
         "meter[0] (570000000031): end_readings need removed"),
        ('removed = "2026-03-02T10:00:00+08:00"\nend_reading = 5.0\n'
         "end_readings = { reverse_kwh = 3.0 }", "end_readings.reverse_kwh"),
        ('removed = "2026-03-02T10:00:00+08:00"\nend_reading = 5.0\n'
         "end_readings = { forward_active_total_kwh = 5.0 }",
         "end_readings: the forward active total is given as end_reading"),
        ('installed = "2026-03-02T10:00:00+08:00"\nstart_reading = 0.0\n'
         "start_readings = { reverse_active_total_kwh = -1.0 }",
         "start_readings.reverse_active_total_kwh: Input should be greater than or equal to 0"),
    ],
)
def test_bad_exchange_readings_name_the_field(db_url: str, tmp_path: Path, meter: str,
                                              needle: str) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(f'version = 1\n[[meter]]\nnumber = "570000000031"\nprotocol = "mqtt"\n{meter}\n')
    proc = _cli(db_url, "fleet", "load", str(f), "--json")
    assert proc.returncode == 2
    assert needle in json.loads(proc.stdout)["error"]["message"]
