"""Line loss, suspects and manual-read screening on seeded simulated worlds (real database).

Each world goes into its own fresh database through the archive loader and the ingest
(``tests/analytics_db/simdb.py``); the commands run as an operator runs them and their output
is compared with the simulator's ground truth. The CI worlds are small (two areas of 50
customers, 30 days of 15-minute data); ``bench/analytics_accuracy.py`` runs the full-size set.

The balance measures each customer meter's error relative to the area's supply meter (a supply
meter that reads 0.5 % low makes every customer look 0.5 % fast), so the truth compared with ε
is ``(1 + ε_customer) / (1 + ε_supply) − 1`` with each ε averaged over the window.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from analytics.screening_db import vee_screen_command
from analytics.suspects_db import analyze_suspects_command
from analytics.vee_db import vee_approve_command, vee_report_command, vee_run_command
from tests.analytics_db.conftest import settings_for
from tests.analytics_db.simdb import area_truth, load_world, make_world
from tests.simulators.helpers import ALL_FAULTS

pytestmark = pytest.mark.db

METERHUB = str(Path(sys.executable).parent / "meterhub")
START = "2026-03-01"


def _load(url: str, world: Any, tmp: Path, **kw: Any) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
            return await load_world(conn, world, tmp, **kw)

    return asyncio.run(run())


def _json(capsys: pytest.CaptureFixture[str]) -> Any:
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    return json.loads(out)


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERHUB_")}
    env["METERHUB_DATABASE_URL"] = url
    return subprocess.run([METERHUB, *args], capture_output=True, text=True, env=env,
                          timeout=300, check=False)


def test_line_loss_equals_the_truth(new_db: Any, tmp_path: Path) -> None:
    """Every fault of the simulator at once: exchanges, wrong areas, wrong supply CT, PV export
    not collected, offline meters and concentrators, skipped manual reads, clocks, rollover."""
    world = make_world({"seed": 7, "areas": 3, "meters_per_area": 16, "days": 6,
                        "start": START, "devices": {
                            "dlt645_share": 0.5, "modbus_share": 0.2, "mqtt_share": 0.3,
                            "manual_share": 0.1, "meters_per_gateway": 8,
                            "meters_per_concentrator": 8},
                        "load": {"pv_share": 0.15}, "injections": dict(ALL_FAULTS)})
    url = new_db()
    truth = area_truth(_load(url, world, tmp_path, intervals=False))
    proc = _cli(url, "analyze", "lineloss", "--from", START, "--to", "2026-03-06", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["areas"]
    assert {(r["area"], r["date"]) for r in rows} == set(truth)
    computable = 0
    for r in rows:
        t = truth[(r["area"], r["date"])]
        if t["computable"]:
            computable += 1
            assert r["state"] != "not_computable", r
            assert abs(r["rate"] - t["rate"]) < 0.01, (r, t["rate"])
        else:
            assert r["state"] == "not_computable" and r["rate"] is None, (r, t)
    assert 0 < computable < len(rows)  # both kinds occur


def _world_scores(url: str, settings: Any, world: Any, truth: dict[str, Any],
                  capsys: pytest.CaptureFixture[str]) -> tuple[list[dict[str, Any]], dict]:
    days = world.sc.days
    end = date.fromordinal(date.fromisoformat(START).toordinal() + days - 1).isoformat()
    assert analyze_suspects_command(settings, url, date_from=START, date_to=end,
                                    show_all=True, as_json=True) == 0
    rows = _json(capsys)["suspects"]
    meters = {m["number"]: m for m in truth["meters"]}
    return rows, meters


def _relative_error(meters: dict[str, Any], truth: dict[str, Any], number: str) -> float:
    m = meters[number]
    supply = next(a["supply_meter"] for a in truth["areas"] if a["id"] == m["area"])
    e_c = float(np.mean(m["error"]["epsilon_by_day"]))
    e_s = float(np.mean(meters[supply]["error"]["epsilon_by_day"]))
    return (1.0 + e_c) / (1.0 + e_s) - 1.0


SIZE = {"areas": 2, "meters_per_area": 50, "days": 30, "start": START,
        "devices": {"dlt645_share": 0.5, "modbus_share": 0.1, "mqtt_share": 0.4},
        "load": {"pv_share": 0.0}}


def test_meter_errors_and_out_of_class_meters(new_db: Any, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    world = make_world({**SIZE, "seed": 21, "injections": {
        "fast": 0.06, "slow": 0.06, "missing_slots": 0.002}}, faults_from_start=True)
    url = new_db()
    truth = _load(url, world, tmp_path, resolution=1e-4)
    settings = settings_for(url)
    rows, meters = _world_scores(url, settings, world, truth, capsys)
    assert len({r["meter"] for r in rows}) == len(rows) == 100  # one entry per meter
    err = [abs(r["error_estimate"] - _relative_error(meters, truth, r["meter"]))
           for r in rows if r["error_estimate"] is not None]
    assert len(err) >= 95
    mae_pp = 100.0 * float(np.mean(err))
    assert mae_pp <= 0.3, mae_pp
    out = {n for n in (r["meter"] for r in rows)
           if abs(_relative_error(meters, truth, n)) >= 0.02}
    found = {r["meter"] for r in rows if r["score"] >= 1.0}
    assert len(out) >= 8
    tp = len(out & found)
    assert tp / len(found) >= 0.9 and tp / len(out) >= 0.9, (sorted(out), sorted(found))
    # the default output lists only the alerts, ordered by score within each area
    end = "2026-03-30"
    assert analyze_suspects_command(settings, url, date_from=START, date_to=end,
                                    as_json=True) == 0
    alerts = _json(capsys)["suspects"]
    assert {r["meter"] for r in alerts} == found
    for a in ("A001", "A002"):
        scores = [r["score"] for r in alerts if r["area"] == a]
        assert scores == sorted(scores, reverse=True)
    with psycopg.connect(url) as conn:
        stored = conn.execute("SELECT count(*), count(*) FILTER (WHERE alert) FROM suspect "
                              "WHERE d_from = %s AND d_to = %s", (START, end)).fetchone()
    assert stored == (100, len(found))


def test_theft_customers_rank_in_their_area_top_three(new_db: Any, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    world = make_world({**SIZE, "seed": 22, "injections": {"theft": 0.04}},
                       faults_from_start=True)
    url = new_db()
    truth = _load(url, world, tmp_path, resolution=1e-4)
    rows, meters = _world_scores(url, settings_for(url), world, truth, capsys)
    thieves = [n for n, m in meters.items() if m["theft"]]
    assert len(thieves) >= 4
    hits = 0
    for n in thieves:
        area = [r["meter"] for r in rows if r["area"] == meters[n]["area"]]
        hits += n in area[:3]
    assert hits / len(thieves) >= 0.8, (hits, thieves)


def test_clean_areas_raise_no_alert(new_db: Any, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    world = make_world({**SIZE, "areas": 3, "seed": 23, "injections": {"missing_slots": 0.002}})
    url = new_db()
    truth = _load(url, world, tmp_path, resolution=1e-4)
    rows, _ = _world_scores(url, settings_for(url), world, truth, capsys)
    alerted = {r["area"] for r in rows if r["score"] >= 1.0}
    assert len(rows) == 150
    assert 1 - len(alerted) / 3 >= 0.95, [r for r in rows if r["score"] >= 1.0]


def test_wrong_area_meters_are_placed_in_their_true_area(
    new_db: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """户变关系 errors: a meter archived under the wrong area is reported there as
    ``wrong_area`` with the area whose balance it really belongs to, and that area does not
    spread the meter's load over its own customers as false thefts."""
    world = make_world({**SIZE, "areas": 3, "seed": 51, "injections": {"wrong_area": 0.01}})
    url = new_db()
    truth = _load(url, world, tmp_path, resolution=1e-4)
    rows, meters = _world_scores(url, settings_for(url), world, truth, capsys)
    wrong = {n: m for n, m in meters.items() if m["area"] != m["true_area"]}
    assert len(wrong) >= 2
    alerts = [r for r in rows if r["score"] >= 1.0]
    assert {r["meter"] for r in alerts} == set(wrong)
    for r in alerts:
        assert r["kind"] == "wrong_area"
        assert r["area"] == wrong[r["meter"]]["area"]
        assert r["evidence"]["true_area"] == wrong[r["meter"]]["true_area"]


def test_estimate_that_would_hide_a_loss_step_is_held(new_db: Any, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A thief starts on day 10 in a small area; its meter sends nothing that day. The line
    loss from the frozen registers steps up; the like-day estimate of the thief's day would
    cover the step, so it is held for review instead of written. A gap on an ordinary day of
    another meter is estimated as usual."""
    world = make_world({"seed": 31, "areas": 1, "meters_per_area": 5, "days": 14,
                        "start": START, "devices": {"dlt645_share": 0.0, "modbus_share": 0.0,
                                                    "mqtt_share": 1.0},
                        "load": {"pv_share": 0.0}, "injections": {"theft": 0.2}})
    thief = int(np.flatnonzero(world.theft_frac > 0)[0])
    world.theft_frac[thief] = 0.9
    world.theft_since[thief] = 9 * world.S
    url = new_db()
    _load(url, world, tmp_path, resolution=1e-4)
    settings = settings_for(url)
    proc = _cli(url, "analyze", "lineloss", "--from", START, "--to", "2026-03-14", "--json")
    assert proc.returncode == 0, proc.stderr
    rates = {r["date"]: r["rate"] for r in json.loads(proc.stdout)["areas"]}
    assert rates["2026-03-10"] - float(np.median([rates[f"2026-03-0{d}"] for d in range(1, 10)
                                                  ])) >= 2.0
    number = world.m_number[thief]
    other = world.m_number[next(p for p in world.customers if p != thief)]
    with psycopg.connect(url) as conn:
        conn.execute(
            "DELETE FROM interval_reading USING meter WHERE meter.id = meter_id "
            "AND meter.number = %s AND ts > '2026-03-10T00:00+08:00' "
            "AND ts <= '2026-03-11T00:00+08:00'", (number,))
        conn.execute(
            "DELETE FROM interval_reading USING meter WHERE meter.id = meter_id "
            "AND meter.number = %s AND ts > '2026-03-05T10:00+08:00' "
            "AND ts <= '2026-03-05T14:00+08:00'", (other,))
    assert vee_run_command(settings, url, date_from="2026-03-02", date_to="2026-03-14",
                           as_json=True) == 0
    doc = _json(capsys)
    assert doc["estimates"]["held"] == 96
    assert doc["estimates"]["written"] == 16
    with psycopg.connect(url) as conn:
        held = conn.execute(
            "SELECT m.number, r.day, count(*), min(r.ts) FROM vee_estimate_review r "
            "JOIN meter m ON m.id = r.meter_id GROUP BY 1, 2").fetchall()
        written = conn.execute(
            "SELECT m.number, count(*) FROM reading_revision r JOIN meter m "
            "ON m.id = r.meter_id WHERE origin = 'estimated' GROUP BY 1").fetchall()
    assert [(h[0], h[1].isoformat(), h[2]) for h in held] == [(number, "2026-03-10", 96)]
    assert written == [(other, 16)]
    first_ts = held[0][3].isoformat()
    assert vee_approve_command(settings, url, meter=number, ts=first_ts, by="auditor.wang",
                               as_json=True) == 0
    approved = _json(capsys)
    assert approved["decision"] == "approved" and approved["version"] == 1
    assert vee_approve_command(settings, url, meter=number, ts=first_ts, by="x") == 2
    capsys.readouterr()
    with psycopg.connect(url) as conn:
        rev = conn.execute(
            "SELECT origin, method, created_by FROM reading_revision r JOIN meter m "
            "ON m.id = r.meter_id WHERE m.number = %s", (number,)).fetchall()
        status = conn.execute("SELECT status, count(*) FROM vee_estimate_review GROUP BY 1 "
                              "ORDER BY 1").fetchall()
    assert rev == [("edited", "approved_estimate", "auditor.wang")]
    assert status == [("approved", 1), ("open", 95)]


def test_manual_read_screening(new_db: Any, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    world = make_world({"seed": 11, "areas": 1, "meters_per_area": 30, "days": 30,
                        "start": START, "devices": {"dlt645_share": 0.5, "mqtt_share": 0.5,
                                                    "modbus_share": 0.0, "manual_share": 0.6},
                        "load": {"pv_share": 0.0},
                        "injections": {"manual_estimated": 0.08, "manual_skipped": 0.08,
                                       "manual_mistyped": 0.08}})
    url = new_db()
    truth = _load(url, world, tmp_path, intervals=False, freezes=False)
    settings = settings_for(url)
    assert vee_screen_command(settings, url, date_from=START, date_to="2026-03-31",
                              show_all=True, as_json=True) == 0
    doc = _json(capsys)
    kind = {(m["number"], r["ts"][:10]): r["kind"]
            for m in truth["meters"] for r in m["manual_reads"]}
    skipped = {k for k, v in kind.items() if v == "skipped"}
    flagged_skip = {(r["meter"], r["cycle"]) for r in doc["reads"] if r["skipped"] >= 0.5}
    # the first cycle of a meter cannot be told from "not read yet"
    assert len(skipped) >= 20
    assert len(skipped & flagged_skip) / len(skipped) >= 0.9
    assert flagged_skip <= skipped
    assert {r["reader"] for r in doc["readers"]} == {"reader-0", "reader-1", "reader-2"}
    assert sum(r["skipped"] for r in doc["readers"]) == len(flagged_skip)
    actual = [r for r in doc["reads"] if kind.get((r["meter"], r["cycle"])) == "actual"]
    assert actual and all(r["skipped"] == 0.0 for r in actual)
    with psycopg.connect(url) as conn:
        n = conn.execute("SELECT count(*) FROM manual_read_score").fetchone()[0]
        readers = conn.execute("SELECT count(*) FROM reader_score").fetchone()[0]
    assert n == len(doc["reads"]) and readers == 3


def test_vee_on_register_meters(new_db: Any, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    """DL/T 645 meters deliver only their energy register every 15 minutes: VEE derives the
    intervals, counts completeness on the register, fills each missing register slot once,
    and flags a reading that arrives from a meter after its removal."""
    world = make_world({"seed": 5, "areas": 1, "meters_per_area": 12, "days": 7, "start": START,
                        "devices": {"dlt645_share": 1.0, "modbus_share": 0.0,
                                    "mqtt_share": 0.0},
                        "load": {"pv_share": 0.0},
                        "injections": {"missing_slots": 0.01, "exchange": 0.1}})
    url = new_db()
    truth = _load(url, world, tmp_path, resolution=1e-4)
    settings = settings_for(url)
    removed = next(m for m in truth["meters"] if m["removed"])
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO register_reading (meter_id, quantity_id, ts, value, source) "
            "SELECT id, 1, removed_at + interval '1 hour', end_reading + 1, 'test' "
            "FROM meter WHERE number = %s", (removed["number"],))
        spans = {n: (a, b) for n, a, b in conn.execute(
            "SELECT m.number, min(r.ts), max(r.ts) FROM register_reading r JOIN meter m "
            "ON m.id = r.meter_id WHERE r.quantity_id = 1 GROUP BY 1")}
    assert vee_run_command(settings, url, date_from=START, date_to="2026-03-07",
                           as_json=True) == 0
    run = _json(capsys)
    assert vee_report_command(settings, url, date_from=START, date_to="2026-03-07",
                              as_json=True) == 0
    rows = {r["meter"]: r for r in _json(capsys)["meters"]}
    missing_total = 0
    # the truth lists a point's missing slots on its first meter
    by_point = {m["point"]: m["missing"]["slots"] for m in truth["meters"]
                if not m["installed"]}
    for m in truth["meters"]:
        r = rows[m["number"]]
        first, last = spans[m["number"]]
        holes = [s for s in by_point[m["point"]] if first < datetime.fromisoformat(s) < last]
        after = 3 if m["number"] == removed["number"] else 0  # the late read's 3 empty slots
        assert r["missing"] == len(holes) + after, m["number"]
        assert r["received"] + r["missing"] == r["expected"]
        # each missing slot filled once, none after the removal
        assert r["estimated"] == r["missing"] - after, m["number"]
        missing_total += r["missing"]
        want_after = 1 if m["number"] == removed["number"] else 0
        assert r["flags"]["read_after_removal"] == want_after
    assert missing_total > 0
    assert run["estimates"]["written"] >= missing_total
    with psycopg.connect(url) as conn:
        per_day = dict(conn.execute(
            "SELECT f.rule || ':' || m.number, sum(f.count) FROM vee_flag f JOIN meter m "
            "ON m.id = f.meter_id GROUP BY 1"))
    assert per_day[f"read_after_removal:{removed['number']}"] == 1
    assert sum(v for k, v in per_day.items() if k.startswith("gap:")) == missing_total
    assert sum(v for k, v in per_day.items() if k.startswith("read_after")) == 1

