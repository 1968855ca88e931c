"""VEE rules that need more than the intervals, fed from the database: outage events, tariff
registers, the CT × PT history and the meters' own clocks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from psycopg.types.json import Jsonb

from analytics.vee_db import vee_report_command
from tests.analytics_db.conftest import settings_for

pytestmark = pytest.mark.db

METERHUB = str(Path(sys.executable).parent / "meterhub")
TZ = ZoneInfo("Asia/Shanghai")
D0 = datetime(2026, 4, 1, tzinfo=TZ)
DAYS = 10
STEP = timedelta(minutes=15)

ARCHIVE = """
version = 1
[[area]]
id = "VR-A"
[[meter]]
number = "660000000001"
area = "VR-A"
protocol = "mqtt"
interval = 15
[[meter]]
number = "660000000002"
area = "VR-A"
protocol = "mqtt"
interval = 15
[[meter]]
number = "660000000003"
area = "VR-A"
protocol = "dlt645-2007"
interval = 15
"""


@pytest.fixture(scope="module")
def db(new_db: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Any]:
    url = new_db()
    f = tmp_path_factory.mktemp("vr") / "a.toml"
    f.write_text(ARCHIVE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERHUB_")}
    env["METERHUB_DATABASE_URL"] = url
    proc = subprocess.run([METERHUB, "fleet", "load", str(f)], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    with psycopg.connect(url) as conn:
        ids = dict(conn.execute("SELECT number, id FROM meter"))
        m1, m2, m3 = ids["660000000001"], ids["660000000002"], ids["660000000003"]
        iv, reg = [], []
        for s in range(-1, DAYS * 96):
            ts = D0 + (s + 1) * STEP
            day = s // 96
            if s >= 0:
                iv.append((m1, ts, 0.0 if day == 4 else 0.1))  # day 5: outage (event below)
                iv.append((m2, ts, 0.0 if day == 5 else 0.1))  # day 6: zero, no outage
            # register meter, with a clock 90 s fast from day 3 on, read every hour
            meter_ts = (ts + timedelta(seconds=90 if day >= 3 else 5)
                        if s >= 0 and s % 4 == 3 else None)
            reg.append((m3, 1, ts, 1000.0 + 0.1 * (s + 1), meter_ts))
        for d in range(DAYS + 1):
            total = 1000.0 + 9.6 * d
            parts = [total * 0.1, total * 0.3, total * 0.4, total * 0.2]
            if d >= 7:
                parts[2] -= 0.5  # tariff 3 stuck: total ≠ Σ tariffs (示值不平)
            for k, v in enumerate(parts):
                reg.append((m3, 2 + k, D0 + timedelta(days=d), round(v, 2), None))
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO interval_reading (meter_id, quantity_id, ts, value, interval_min, "
                "source) VALUES (%s, 20, %s, %s, 15, 'test')", iv)
            cur.executemany(
                "INSERT INTO register_reading (meter_id, quantity_id, ts, value, meter_ts, "
                "source) VALUES (%s, %s, %s, %s, %s, 'test')", reg)
        conn.execute(
            "INSERT INTO meter_event (meter_id, ts, code, detail, source) "
            "VALUES (%s, %s, 'power_loss', %s, 'test')",
            (m1, D0 + timedelta(days=4), Jsonb({"end": (D0 + timedelta(days=5)).isoformat()})))
        conn.execute(
            "INSERT INTO meter_multiplier (meter_id, valid_from, ct, pt) VALUES "
            "(%s, %s, 1, 1), (%s, %s, 2, 1)",
            (m3, D0 - timedelta(days=30), m3, D0 + timedelta(days=3, hours=10)))
    return url, settings_for(url)


def test_rules_fed_from_the_database(db: tuple[str, Any],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    url, settings = db
    assert vee_report_command(settings, url, date_from="2026-04-01", date_to="2026-04-10",
                              as_json=True) == 0
    rows = {r["meter"]: r for r in json.loads(capsys.readouterr().out)["meters"]}
    f1, f2, f3 = (rows[f"66000000000{k}"]["flags"] for k in (1, 2, 3))
    assert (f1["zero_consumption_outage"], f1["zero_consumption"]) == (1, 0)
    assert (f2["zero_consumption_outage"], f2["zero_consumption"]) == (0, 1)
    # boundaries 7, 8, 9 and 10 (2026-04-08 … 04-11 00:00) show total ≠ Σ tariffs
    assert f3["total_vs_tariffs"] == 4
    assert f3["multiplier_change"] == 1
    # hourly clock checks from day 3 on are 90 s off (> 60 s); one step of 85 s
    assert f3["clock_tolerance"] == 7 * 24
    assert f3["time_reset"] == 1
    # the register meter's intervals are derived and complete; they agree with the registers
    r3 = rows["660000000003"]
    assert (r3["expected"], r3["received"], r3["missing"]) == (DAYS * 96, DAYS * 96, 0)
    assert f3["register_vs_intervals"] == 0
    assert f3["negative_consumption"] == 0
