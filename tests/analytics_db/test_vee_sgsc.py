"""VEE from the database on 50 real households (SGSC, ../shared/data), imported as CSV.

The CSV is written here from the parquet file and never committed. Importing all 1.45 M rows
took 40–104 s on the development machine (bench/analytics_accuracy.py measures it), too slow
for CI, so the test imports two months: every
customer with data in them (49 of the 50), interval ends 2013-09-01 00:30 … 2013-11-01 00:00,
about 137 k rows. They hold real gaps (59 runs, 3 091 missing half-hours), the 2013-10-06
duplicate stamps (some with two different values) and the near-all-zero customer. Timestamps
are naive fixed UTC+10 interval ends, so the site time zone is Australia/Brisbane (UTC+10, no
daylight saving).

Expected figures are derived from the raw rows with NumPy set operations, never hard-coded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from analytics.vee import RULES
from analytics.vee_db import vee_edit_command, vee_report_command, vee_run_command
from tests.analytics_db.conftest import settings_for
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.db

PARQUET = SHARED_DATA / "sgsc_50" / "sgsc_50_customers_halfhourly.parquet"
METERHUB = str(Path(sys.executable).parent / "meterhub")
UTC10 = timezone(timedelta(hours=10))
FIRST = np.datetime64("2013-09-01T00:00")
LAST = np.datetime64("2013-11-01T00:00")


def _number(customer: int) -> str:
    return f"9000{customer:08d}"


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    pq = pytest.importorskip("pyarrow.parquet")
    t = pq.read_table(PARQUET, columns=["customer_id", "reading_datetime",
                                        "general_supply_kwh"])
    ts = t["reading_datetime"].to_numpy().astype("datetime64[m]")
    sel = (ts > FIRST) & (ts <= LAST)
    return {"customer": t["customer_id"].to_numpy()[sel], "ts": ts[sel],
            "value": t["general_supply_kwh"].to_numpy().astype(np.float64)[sel]}


@pytest.fixture(scope="module")
def sgsc(raw: dict[str, Any], new_db: Any, tmp_path_factory: pytest.TempPathFactory,
         ) -> tuple[str, Any]:
    url = new_db()
    path = tmp_path_factory.mktemp("sgsc") / "sgsc.csv"
    stamps = np.datetime_as_string(raw["ts"], unit="m")
    with path.open("w") as fh:
        fh.write("meter,ts,quantity,value\n")
        for c, s, v in zip(raw["customer"].tolist(), stamps.tolist(), raw["value"].tolist(),
                           strict=True):
            fh.write(f"{_number(c)},{s}:00+10:00,interval_kwh,{v!r}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERHUB_")}
    env.update(METERHUB_DATABASE_URL=url, METERHUB_TIMEZONE="Australia/Brisbane")
    proc = subprocess.run([METERHUB, "import", "readings", str(path), "--create-meters",
                           "--json"], capture_output=True, text=True, env=env, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["meters_created"] == np.unique(raw["customer"]).size
    return url, settings_for(url, timezone="Australia/Brisbane")


def _expected(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Completeness and duplicates per meter from the raw rows."""
    out = {}
    slot = ((raw["ts"] - FIRST) // np.timedelta64(30, "m")).astype(np.int64)
    for c in np.unique(raw["customer"]):
        sel = raw["customer"] == c
        s, v = slot[sel], raw["value"][sel]
        slots = np.unique(s)
        steps = np.diff(slots)
        pairs = np.unique(np.stack([s, v]), axis=1)
        _, n_values = np.unique(pairs[0], return_counts=True)
        first = raw["ts"][sel].min().astype(datetime).replace(tzinfo=UTC10)
        last = raw["ts"][sel].max().astype(datetime).replace(tzinfo=UTC10)
        out[_number(int(c))] = {
            "expected": int(slots[-1] - slots[0] + 1), "received": int(slots.size),
            "gaps": int((steps > 1).sum()), "gap_slots_max": int(steps.max() - 1),
            "duplicates": int((n_values > 1).sum()), "first": first, "last": last,
            "zeros": int((v == 0).sum()), "rows": int(sel.sum()),
        }
    return out


def _json(capsys: pytest.CaptureFixture[str]) -> Any:
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # exactly one JSON document
    return json.loads(out)


def test_report_counts_every_real_gap_and_duplicate(
    sgsc: tuple[str, Any], raw: dict[str, Any], capsys: pytest.CaptureFixture[str],
) -> None:
    url, settings = sgsc
    assert vee_report_command(settings, url, as_json=True) == 0
    rows = {r["meter"]: r for r in _json(capsys)["meters"]}
    want = _expected(raw)
    assert set(rows) == set(want)
    for number, w in want.items():
        r = rows[number]
        assert list(r) == ["meter", "interval", "first", "last", "expected", "received",
                           "missing", "gaps", "gap_slots_max", "duplicates", "estimated",
                           "flags"]
        assert set(r["flags"]) == set(RULES)
        assert r["interval"] == 30
        assert datetime.fromisoformat(r["first"]) == w["first"]
        assert datetime.fromisoformat(r["last"]) == w["last"]
        assert (r["expected"], r["received"], r["gaps"], r["gap_slots_max"]) == (
            w["expected"], w["received"], w["gaps"], w["gap_slots_max"]), number
        assert r["missing"] == w["expected"] - w["received"]
        assert r["flags"]["gap"] == r["missing"]
        assert r["duplicates"] == w["duplicates"] == r["flags"]["duplicate"], number
    assert sum(w["gaps"] for w in want.values()) > 0
    assert sum(w["duplicates"] for w in want.values()) > 0


def _zero_days(raw: dict[str, Any]) -> dict[str, int]:
    """Local days whose received half-hours (first delivery of each) are all zero."""
    out = {}
    day = (raw["ts"] - np.timedelta64(30, "m")).astype("datetime64[D]")
    for c in np.unique(raw["customer"]):
        sel = np.flatnonzero(raw["customer"] == c)
        _, first = np.unique(raw["ts"][sel], return_index=True)
        keep = sel[first]
        d, v = day[keep], raw["value"][keep]
        days = np.unique(d)
        nonzero = np.unique(d[v != 0])
        out[_number(int(c))] = int(days.size - np.intersect1d(days, nonzero).size)
    return out


def test_near_all_zero_meter_is_flagged(
    sgsc: tuple[str, Any], raw: dict[str, Any], capsys: pytest.CaptureFixture[str],
) -> None:
    url, settings = sgsc
    want = _expected(raw)
    worst = max(want, key=lambda n: want[n]["zeros"])
    assert want[worst]["zeros"] > 0.5 * want[worst]["rows"]  # the near-all-zero customer
    assert vee_report_command(settings, url, as_json=True) == 0
    rows = {r["meter"]: r for r in _json(capsys)["meters"]}
    zero = {n: r["flags"]["zero_consumption"] for n, r in rows.items()}
    assert zero[worst] > 0
    assert zero == _zero_days(raw)  # every all-zero day of every meter, no other
    assert vee_report_command(settings, url, meter=worst, as_json=True) == 0
    one = _json(capsys)["meters"]
    assert [r["meter"] for r in one] == [worst]
    assert one[0]["flags"]["zero_consumption"] == zero[worst]


def test_run_estimates_without_hiding_gaps_and_is_idempotent(
    sgsc: tuple[str, Any], capsys: pytest.CaptureFixture[str],
) -> None:
    url, settings = sgsc
    assert vee_report_command(settings, url, as_json=True) == 0
    before = {r["meter"]: r for r in _json(capsys)["meters"]}
    assert vee_run_command(settings, url, date_from="2013-09-01", date_to="2013-10-31",
                           as_json=True) == 0
    first = _json(capsys)
    assert first["estimates"]["written"] > 0
    assert vee_report_command(settings, url, as_json=True) == 0
    after = {r["meter"]: r for r in _json(capsys)["meters"]}
    for number, r in after.items():
        b = before[number]
        # estimating a gap does not hide it
        assert (r["missing"], r["gaps"], r["flags"]["gap"]) == (b["missing"], b["gaps"],
                                                                b["flags"]["gap"])
        assert r["estimated"] <= r["missing"]
    assert sum(r["estimated"] for r in after.values()) == first["estimates"]["written"]
    with psycopg.connect(url) as conn:
        n_rev = conn.execute("SELECT count(*) FROM reading_revision").fetchone()[0]
        methods = {m for (m,) in conn.execute(
            "SELECT DISTINCT method FROM reading_revision WHERE origin = 'estimated' "
            "AND created_by = 'vee'")}
        stored = conn.execute("SELECT count(*), sum(missing) FROM vee_meter_result").fetchone()
        flags = dict(conn.execute("SELECT rule, sum(count) FROM vee_flag GROUP BY rule"))
    assert n_rev == first["estimates"]["written"]
    # the per-day flag rows add up to the run's counts of the slot and daily rules
    for rule in ("gap", "duplicate", "zero_consumption", "spike"):
        assert flags.get(rule, 0) == first["flags"][rule], rule
    assert stored[1] == sum(r["missing"] for r in after.values())
    assert methods <= {"linear", "like_day"} and methods
    assert stored[0] == len(after)
    assert vee_run_command(settings, url, date_from="2013-09-01", date_to="2013-10-31",
                           as_json=True) == 0
    second = _json(capsys)
    assert second["estimates"]["written"] == 0
    assert second["estimates"]["unchanged"] == first["estimates"]["written"]
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM reading_revision").fetchone()[0] == n_rev


def test_edit_is_a_revision_with_who_when_why(
    sgsc: tuple[str, Any], raw: dict[str, Any], capsys: pytest.CaptureFixture[str],
) -> None:
    url, settings = sgsc
    c = int(raw["customer"][0])
    ts = raw["ts"][raw["customer"] == c][10].astype(datetime).replace(tzinfo=UTC10)
    number = _number(c)
    rc = vee_edit_command(settings, url, meter=number, quantity="interval_kwh",
                          ts=ts.isoformat(), value=0.123, reason="meter test bench re-read",
                          by="inspector.li", as_json=True)
    assert rc == 0
    doc = _json(capsys)
    assert doc["version"] == 1 and doc["by"] == "inspector.li"
    with psycopg.connect(url) as conn:
        best = conn.execute(
            "SELECT b.value, b.origin, b.reason FROM reading_best b JOIN meter m "
            "ON m.id = b.meter_id WHERE m.number = %s AND b.quantity_id = 20 AND b.ts = %s",
            (number, ts)).fetchone()
        actual = conn.execute(
            "SELECT value FROM interval_reading i JOIN meter m ON m.id = i.meter_id "
            "WHERE m.number = %s AND i.ts = %s", (number, ts)).fetchone()
        audit = conn.execute(
            "SELECT actor, detail->>'reason' FROM audit_log WHERE action = 'reading_edited' "
            "AND subject_id = %s", (number,)).fetchall()
    assert best == (0.123, "edited", "meter test bench re-read")
    assert actual is not None and actual[0] == doc["actual"]  # the actual value stays
    assert audit == [("inspector.li", "meter test bench re-read")]
    assert vee_edit_command(settings, url, meter="999999999999", quantity="interval_kwh",
                            ts=ts.isoformat(), value=1.0, reason="x", by="y") == 2
    assert vee_edit_command(settings, url, meter=number, quantity="interval_kwh",
                            ts="2013-09-02T10:00", value=1.0, reason="x", by="y") == 64
    capsys.readouterr()
