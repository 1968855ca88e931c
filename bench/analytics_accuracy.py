"""Accuracy of the analytics from the database, full size, against the simulator's truth.

Run: ``.venv/bin/python bench/analytics_accuracy.py`` (a few minutes; the provisioned
TimescaleDB must be up). Writes ``bench/results/analytics_accuracy.json``.

Each simulated world goes into its own scratch database (archive loader + ingest, as in
``tests/analytics_db/simdb.py``); the commands' own functions run on it:

* ``lineloss``: worlds with every simulator fault (exchanges, wrong areas, wrong supply CT,
  uncollected PV export, offline meters and concentrators, skipped manual reads, clock drift
  and resets, rollover, outages): per area-day, ``analyze lineloss`` rate vs the truth's
  ``registered.rate`` where computable, and ``not_computable`` exactly where the truth says
  ``computable: false``.
* ``meter_error``: areas of 50 customers, 30 days of 15-minute data, 6 % fast and 6 % slow
  meters (3–12 %), 0.2 % of slots missing. MAE of ε against the truth relative to the supply
  meter (``(1 + ε_c) / (1 + ε_s) − 1``, the quantity a balance can observe; the simulator's
  truth is absolute, a balance sees only the ratio to the supply meter) on the last day (the
  estimate is the most recent regime's) and over the window, and against the absolute ε;
  precision and recall of the out-of-class meters (|ε| ≥ 2 % on the last day) among the
  alerts; how many faults starting inside the window were dated and the median dating
  error (against the midnight from which the simulator applies the error: it steps a
  meter's error per day, from the first day whose noon is at or after the injection time).
  Variants: data at 0.0001 kWh (high-resolution energy) and at 0.01 kWh (what a register
  shows: DL/T 645 meters as registers, the others as interval values rounded to
  0.01 kWh each, as ``tests/analytics_db/simdb.py`` writes them; and every meter as
  registers truncated to 0.01 kWh, as a collector stores polled or concentrator-sent
  registers, whose differences telescope; a supply meter's 0.01 kWh is 0.2–0.8 kWh primary
  behind its CT), faults from the first day and from a random day inside the window (a
  step).
* ``theft``: 4 % of customers bypass 30–70 % of their load at night: share of thieves in
  their area's top 3, from the first day and from a random day.
* ``clean``: no injections: share of areas without any alert.
* ``wrong_area``: 1 % of customers archived under the next area: how many are found, how many
  get their true area named, and alerts on other meters.
* ``pv_not_collected``: half of the PV customers archived as import-only: alerts (all false).
* ``screening``: manual meters with 8 % 估抄, 8 % 漏抄, 8 % 错抄 reads: recall and precision of
  each kind and the share of actual reads flagged.
* ``sgsc``: all 1.45 M rows of the 50 SGSC households as CSV through ``import readings``
  (seconds), ``vee report`` over everything (seconds), and whether its gaps and duplicate
  counts equal those derived from the raw rows.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from analytics.commands import compute_lineloss  # noqa: E402 - after the path set-up
from analytics.screening_db import screen_reads  # noqa: E402
from analytics.suspects_db import compute_suspects  # noqa: E402
from analytics.vee_db import vee_report  # noqa: E402
from meterhub.database import database_url  # noqa: E402
from meterhub.settings import load_settings  # noqa: E402
from storage import migrate  # noqa: E402
from tests.analytics_db.simdb import area_truth, load_world, make_world  # noqa: E402
from tests.simulators.helpers import ALL_FAULTS  # noqa: E402

OUT = REPO / "bench" / "results" / "analytics_accuracy.json"
START = "2026-03-01"
SGSC = REPO.parent / "shared" / "data" / "sgsc_50" / "sgsc_50_customers_halfhourly.parquet"
SIZE = {"meters_per_area": 50, "days": 30, "start": START,
        "devices": {"dlt645_share": 0.5, "modbus_share": 0.1, "mqtt_share": 0.4},
        "load": {"pv_share": 0.0}}


class Scratch:
    """A scratch database on the provisioned server, dropped on exit."""

    def __init__(self, server: str) -> None:
        self.server = server
        self.name = f"meterhub_bench_{secrets.token_hex(4)}"
        self.url = urlunsplit(urlsplit(server)._replace(path="/" + self.name))

    def __enter__(self) -> str:
        with psycopg.connect(self.server, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{self.name}"')
        with psycopg.connect(self.url, autocommit=True) as conn:
            migrate.upgrade(conn)
        return self.url

    def __exit__(self, *exc: object) -> None:
        with psycopg.connect(self.server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def _settings(url: str, **extra: str) -> Any:
    env = {"METERHUB_DATABASE_URL": url}
    env.update({f"METERHUB_{k.upper()}": v for k, v in extra.items()})
    return load_settings(environ=env)


async def _in_tx(url: str, fn: Callable[[Any], Any]) -> Any:
    async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
        return await fn(conn)


def _world_db(server: str, world: Any, **kw: Any) -> tuple[Scratch, str, dict[str, Any]]:
    scratch = Scratch(server)
    url = scratch.__enter__()
    with tempfile.TemporaryDirectory() as tmp:
        truth = asyncio.run(_in_tx(url, lambda c: load_world(c, world, Path(tmp), **kw)))
    return scratch, url, truth


def _end(days: int) -> date:
    return date.fromisoformat(START) + timedelta(days=days - 1)


def lineloss(server: str, seeds: list[int]) -> dict[str, Any]:
    """Line loss vs the truth on worlds with every fault."""
    n = match_state = computable = 0
    worst = 0.0
    for seed in seeds:
        world = make_world({"seed": seed, "areas": 8, "meters_per_area": 30, "days": 10,
                            "start": START, "devices": {
                                "dlt645_share": 0.5, "modbus_share": 0.2, "mqtt_share": 0.3,
                                "manual_share": 0.1, "meters_per_gateway": 8,
                                "meters_per_concentrator": 8},
                            "load": {"pv_share": 0.15}, "injections": dict(ALL_FAULTS)})
        scratch, url, truth = _world_db(server, world, intervals=False)
        try:
            s = _settings(url)

            async def run(conn: Any, s: Any = s) -> Any:
                return await compute_lineloss(conn, s, d_from=date.fromisoformat(START),
                                              d_to=_end(10))

            rep = asyncio.run(_in_tx(url, run))
        finally:
            scratch.__exit__()
        t = area_truth(truth)
        for r in rep.areas:
            tr = t[(r.area, r.date)]
            n += 1
            if tr["computable"]:
                computable += 1
                ok = r.rate is not None and r.state != "not_computable"
                if ok:
                    worst = max(worst, abs(r.rate - tr["rate"]))
                match_state += ok
            else:
                match_state += r.state == "not_computable" and r.rate is None
    return {"area_days": n, "computable": computable, "state_matches": match_state,
            "max_abs_rate_diff_pp": worst}


async def _write_registers(conn: Any, w: Any, resolution: float) -> None:
    """Every meter's slot readings as energy registers shown to ``resolution`` (truncated).

    What a collector stores when it polls registers (DL/T 645, Modbus) or a concentrator
    sends them (MQTT): the database derives interval energy as register differences, so the
    rounding telescopes. Slots the world marks missing have no reading.
    """
    from simulators.world import ROLLOVER
    from storage.readings import QUANTITY_IDS, RegisterRow, ingest

    cur = await conn.execute("SELECT number, id FROM meter")
    ids = dict(await cur.fetchall())
    lo, hi = w._install_bounds()
    q_fwd = QUANTITY_IDS["forward_active_total_kwh"]
    q_rev = QUANTITY_IDS["reverse_active_total_kwh"]
    now = datetime.now(UTC)
    for d in range(w.sc.days):
        day = w.days[d]
        t_end = w.g_time(d * w.S) + (np.arange(w.S) + 1) * w.slot_s
        stamps = [datetime.fromtimestamp(t, UTC) for t in t_end]
        inc = day.inc.astype(np.float64)
        rows = []
        for m in range(w.M):
            p = w.m_point[m]
            if w.protocol[p] == "manual":
                continue
            mid = ids[w.m_number[m]]
            ok = (t_end > lo[m]) & (t_end <= hi[m]) & ~day.missing[p]
            base = w.m_base6[m] - w.m_adj[m]
            fwd = np.mod(base[0] + day.start[p, 0] + np.cumsum(inc[p, 0]), ROLLOVER)
            rev = np.mod(base[5] + day.start[p, 5] + np.cumsum(inc[p, 1]), ROLLOVER)
            fwd = np.floor(fwd / resolution + 1e-9) * resolution
            rev = np.floor(rev / resolution + 1e-9) * resolution
            for k in np.flatnonzero(ok):
                rows.append(RegisterRow(mid, q_fwd, stamps[k], round(float(fwd[k]), 6)))
                if w.bidir_archive[p]:
                    rows.append(RegisterRow(mid, q_rev, stamps[k], round(float(rev[k]), 6)))
        await ingest(conn, rows, source="bench-registers", received_at=now)


def _suspects(server: str, world: Any, resolution: float, registers: bool = False
              ) -> tuple[list[Any], dict[str, Any]]:
    if registers:
        scratch = Scratch(server)
        url = scratch.__enter__()

        async def load(conn: Any) -> Any:
            with tempfile.TemporaryDirectory() as tmp:
                truth = await load_world(conn, world, Path(tmp), intervals=False)
            await _write_registers(conn, world, resolution)
            return truth

        truth = asyncio.run(_in_tx(url, load))
    else:
        scratch, url, truth = _world_db(server, world, resolution=resolution)
    try:
        s = _settings(url)
        rep = asyncio.run(_in_tx(url, lambda c: compute_suspects(
            c, s, d_from=date.fromisoformat(START), d_to=_end(world.sc.days))))
    finally:
        scratch.__exit__()
    return rep.suspects, truth


def _eps(truth: dict[str, Any], last: bool = False
         ) -> tuple[dict[str, float], dict[str, float]]:
    """Absolute and supply-relative ε per meter: the window mean, or the last day's."""
    meters = {m["number"]: m for m in truth["meters"]}
    supply = {a["id"]: a["supply_meter"] for a in truth["areas"]}

    def pick(v: list[float]) -> float:
        return float(v[-1]) if last else float(np.mean(v))

    absolute, relative = {}, {}
    for n, m in meters.items():
        e = pick(m["error"]["epsilon_by_day"])
        e_s = pick(meters[supply[m["area"]]]["error"]["epsilon_by_day"])
        absolute[n] = e
        relative[n] = (1 + e) / (1 + e_s) - 1
    return absolute, relative


def _effective_start(since: str) -> str:
    """When a simulated meter error really starts: the simulator applies a day's error from
    its midnight when the day's noon is at or after the injection instant (``since``)."""
    t = datetime.fromisoformat(since)
    day = t.replace(hour=0, minute=0, second=0, microsecond=0)
    if t > day + timedelta(hours=12):
        day += timedelta(days=1)
    return day.isoformat()


def meter_error(server: str, areas: int, seed: int, resolution: float,
                from_start: bool, registers: bool = False) -> dict[str, Any]:
    """MAE and out-of-class precision / recall.

    The estimate is the most recent regime's (after a step the fit found), so it is compared
    with the truth of the last day (``mae_relative_pp``, out-of-class sets) and, for
    reference, with the window mean (``mae_relative_window_mean_pp``). With faults from the
    first day both are the same.
    """
    world = make_world({**SIZE, "areas": areas, "seed": seed, "injections": {
        "fast": 0.06, "slow": 0.06, "missing_slots": 0.002}}, faults_from_start=from_start)
    rows, truth = _suspects(server, world, resolution, registers)
    absolute, relative = _eps(truth, last=True)
    _, rel_mean = _eps(truth)
    fitted = [r for r in rows if r.error_estimate is not None and r.kind != "supply_ratio"]
    out = {r.meter for r in rows if abs(relative[r.meter]) >= 0.02}
    found = {r.meter for r in rows if r.score >= 1.0}
    tp = len(out & found)
    meters = {m["number"]: m for m in truth["meters"]}
    starts = {}
    for r in rows:
        for f in meters[r.meter]["faults"]:
            if f["kind"] in ("meter_fast", "meter_slow") and f.get("since"):
                starts[r.meter] = _effective_start(f["since"])
    dated = [r for r in rows if r.meter in starts and r.since is not None]
    since_err_h = [abs((datetime.fromisoformat(r.since)
                        - datetime.fromisoformat(starts[r.meter])).total_seconds()) / 3600
                   for r in dated]
    stepped_truth = [n for n, v in starts.items() if v[:10] != START]
    return {
        "areas": areas, "meters": len(rows), "fitted": len(fitted), "resolution_kwh": resolution,
        "data": ("registers: every meter's energy register, intervals derived as differences"
                 if registers else "simdb: DL/T 645 registers, other meters interval values "
                 "rounded each"),
        "faults_from_first_day": from_start,
        "mae_relative_pp": 100 * float(np.mean([abs(r.error_estimate - relative[r.meter])
                                                for r in fitted])),
        "mae_relative_window_mean_pp": 100 * float(np.mean(
            [abs(r.error_estimate - rel_mean[r.meter]) for r in fitted])),
        "mae_absolute_pp": 100 * float(np.mean([abs(r.error_estimate - absolute[r.meter])
                                                for r in fitted])),
        "median_uncertainty_pp": 100 * float(np.median([r.uncertainty for r in fitted
                                                        if r.uncertainty is not None])),
        "out_of_class": len(out), "alerts": len(found),
        "precision": tp / len(found) if found else None,
        "recall": tp / len(out) if out else None,
        "faults_starting_inside": len(stepped_truth),
        "dated": len([r for r in dated if r.meter in stepped_truth]),
        "median_dating_error_h": float(np.median(since_err_h)) if since_err_h else None,
        "areas_insufficient": sorted({r.area for r in rows
                                      if "insufficient_data" in r.evidence}),
    }


def theft(server: str, areas: int, seed: int, from_start: bool) -> dict[str, Any]:
    """Share of thieves in their area's top 3."""
    world = make_world({**SIZE, "areas": areas, "seed": seed,
                        "injections": {"theft": 0.04}}, faults_from_start=from_start)
    rows, truth = _suspects(server, world, 1e-4)
    meters = {m["number"]: m for m in truth["meters"]}
    thieves = [n for n, m in meters.items() if m["theft"]]
    top3 = {n for n in thieves if n in [r.meter for r in rows
                                          if r.area == meters[n]["area"]][:3]}
    end = datetime.fromisoformat(START).replace(tzinfo=None) + timedelta(days=world.sc.days)
    # nights of theft inside the window (theft runs 22:00-06:00)
    nights = {n: max(0.0, (end - datetime.fromisoformat(meters[n]["theft"]["since"])
                           .replace(tzinfo=None)).total_seconds() / 86400) for n in thieves}
    late = [n for n in thieves if nights[n] < 2.0]
    per_area = {a: sum(meters[n]["area"] == a for n in thieves) for a in
                {meters[n]["area"] for n in thieves}}
    top_k = {n for n in thieves if n in [r.meter for r in rows if r.area == meters[n]["area"]][
        : max(3, per_area[meters[n]["area"]])]}
    return {"areas": areas, "thieves": len(thieves), "in_top3": len(top3),
            "share_in_top3": len(top3) / len(thieves) if thieves else None,
            "faults_from_first_day": from_start,
            "most_thieves_in_one_area": max(per_area.values(), default=0),
            "in_top_max3_or_area_thieves": len(top_k),
            "thefts_starting_in_last_2_days": len(late),
            "of_those_in_top3": len(set(late) & top3),
            "other_alerts": sum(r.score >= 1.0 and not meters[r.meter]["theft"]
                                for r in rows)}


def clean(server: str, areas: int, seed: int) -> dict[str, Any]:
    """Share of clean areas without an alert."""
    world = make_world({**SIZE, "areas": areas, "seed": seed,
                        "injections": {"missing_slots": 0.002}})
    rows, _ = _suspects(server, world, 1e-4)
    alerted = {r.area for r in rows if r.score >= 1.0}
    return {"areas": areas, "areas_with_alert": len(alerted),
            "share_without_alert": 1 - len(alerted) / areas}


def wrong_area(server: str, areas: int, seed: int) -> dict[str, Any]:
    """户变关系 errors: found in the archived area, placed in the true one, no false alerts."""
    world = make_world({**SIZE, "areas": areas, "seed": seed,
                        "injections": {"wrong_area": 0.01, "missing_slots": 0.002}})
    rows, truth = _suspects(server, world, 1e-4)
    meters = {m["number"]: m for m in truth["meters"]}
    wrong = {n for n, m in meters.items() if m["area"] != m["true_area"]}
    alerts = [r for r in rows if r.score >= 1.0]
    found = {r.meter for r in alerts if r.kind == "wrong_area"}
    placed = sum(r.evidence.get("true_area") == meters[r.meter]["true_area"]
                 for r in alerts if r.meter in wrong)
    return {"areas": areas, "wrong_area_meters": len(wrong), "found": len(found & wrong),
            "true_area_named": int(placed), "other_alerts": len({r.meter for r in alerts}
                                                                  - wrong)}


def pv_not_collected(server: str, areas: int, seed: int) -> dict[str, Any]:
    """PV export that no meter collects (meters archived as import-only): false alerts."""
    world = make_world({**SIZE, "areas": areas, "seed": seed, "load": {"pv_share": 0.1},
                        "injections": {"pv_not_collected": 0.5}})
    rows, _ = _suspects(server, world, 1e-4)
    alerted = {r.area for r in rows if r.score >= 1.0}
    return {"areas": areas, "alerts": sum(r.score >= 1.0 for r in rows),
            "areas_with_alert": len(alerted),
            "alert_kinds": sorted({r.kind for r in rows if r.score >= 1.0}),
            "note": "the uncollected PV meters cannot be named from the archive; the export "
                    "the area's bidirectional meters collect enters the balance as a free "
                    "regressor that takes the uncollected share, instead of the exporting "
                    "meters' θ (every alert here is false)"}


def screening(server: str) -> dict[str, Any]:
    """Recall and precision of 估抄 / 漏抄 / 错抄 reads and the share of actual reads flagged."""
    world = make_world({"seed": 11, "areas": 2, "meters_per_area": 40, "days": 60,
                        "start": START, "devices": {"dlt645_share": 0.5, "mqtt_share": 0.5,
                                                    "modbus_share": 0.0, "manual_share": 0.6},
                        "load": {"pv_share": 0.0},
                        "injections": {"manual_estimated": 0.08, "manual_skipped": 0.08,
                                       "manual_mistyped": 0.08}})
    scratch, url, truth = _world_db(server, world, intervals=False, freezes=False)
    try:
        s = _settings(url)
        rep = asyncio.run(_in_tx(url, lambda c: screen_reads(
            c, s, d_from=date.fromisoformat(START), d_to=_end(61))))
    finally:
        scratch.__exit__()
    info = {(m["number"], r["ts"][:10]): r for m in truth["meters"] for r in m["manual_reads"]}
    got = {(r.meter, r.cycle): r for r in rep.reads}
    out: dict[str, Any] = {"reads": len(info)}
    for kind, attr in (("estimated", "estimated"), ("skipped", "skipped"),
                       ("mistyped", "error")):
        keys = [k for k, r in info.items() if r["kind"] == kind and (
            kind != "mistyped" or abs(r["value"] - r["true_value"]) > 0.005)]
        hit = sum(getattr(got[k], attr) >= 0.5 for k in keys if k in got)
        flagged = [k for k, r in got.items() if getattr(r, attr) >= 0.5]
        right = sum(1 for k in flagged if k in info and info[k]["kind"] == kind)
        out[kind] = {"reads": len(keys), "flagged": hit,
                     "recall": hit / len(keys) if keys else None,
                     "flagged_as_this_kind": len(flagged),
                     "precision": right / len(flagged) if flagged else None}
    actual = [k for k, r in info.items() if r["kind"] == "actual"]
    false = sum(max(got[k].estimated, got[k].skipped, got[k].error) >= 0.5
                for k in actual if k in got)
    out["actual"] = {"reads": len(actual), "flagged": false,
                     "share_flagged": false / len(actual) if actual else None}
    out["note"] = ("mistyped reads equal to the true value (a slip that changed nothing) are "
                   "left out of the recall; precision counts every read flagged as the kind; "
                   "scores come from analytics.screening.screen_manual_reads")
    return out


def sgsc(server: str) -> dict[str, Any] | None:
    """All SGSC rows through the CSV import, then ``vee report`` over everything."""
    if not SGSC.is_file():
        return None
    import pyarrow.parquet as pq

    from collector.importer import import_readings

    t = pq.read_table(SGSC, columns=["customer_id", "reading_datetime", "general_supply_kwh"])
    cid = t["customer_id"].to_numpy()
    ts = t["reading_datetime"].to_numpy().astype("datetime64[m]")
    val = t["general_supply_kwh"].to_numpy().astype(np.float64)
    with tempfile.TemporaryDirectory() as tmp, Scratch(server) as url:
        path = Path(tmp) / "sgsc.csv"
        with path.open("w") as fh:
            fh.write("meter,ts,quantity,value\n")
            for c, s, v in zip(cid.tolist(), np.datetime_as_string(ts, unit="m").tolist(),
                               val.tolist(), strict=True):
                fh.write(f"9000{c:08d},{s}:00+10:00,interval_kwh,{v!r}\n")
        t0 = time.perf_counter()
        rep = asyncio.run(_in_tx(url, lambda c: import_readings(c, path, create_meters=True,
                                                                interval=30)))
        t_import = time.perf_counter() - t0
        s = _settings(url, timezone="Australia/Brisbane")
        t0 = time.perf_counter()
        report = asyncio.run(_in_tx(url, lambda c: vee_report(c, s)))
        t_report = time.perf_counter() - t0
    gaps = dup = 0
    for c in np.unique(cid):
        sel = cid == c
        slots = np.unique(ts[sel])
        gaps += int((np.diff(slots) > np.timedelta64(30, "m")).sum())
        pairs = np.unique(np.stack([ts[sel].astype(np.int64), val[sel].view(np.int64)]), axis=1)
        _, k = np.unique(pairs[0], return_counts=True)
        dup += int((k > 1).sum())
    return {"rows": int(cid.size), "import_s": round(t_import, 1),
            "import_rows_per_s": round(cid.size / t_import),
            "conflicts_kept": rep.result.conflicts, "vee_report_s": round(t_report, 1),
            "gaps_reported": sum(m.gaps for m in report.meters), "gaps_in_raw": gaps,
            "duplicates_reported": sum(m.duplicates for m in report.meters),
            "duplicates_in_raw": dup}


SECTIONS = ("lineloss", "meter_error", "theft", "clean", "wrong_area", "pv_not_collected",
            "screening", "sgsc")


def main() -> None:
    """Run the sections asked for (all by default) and write the JSON."""
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                    help="run only these sections (the results file is then not written "
                         "unless --out is given)")
    ap.add_argument("--out", type=Path, default=None, help=f"results file (default {OUT})")
    args = ap.parse_args()
    partial = set(args.only) != set(SECTIONS)
    out_path = args.out or (None if partial else OUT)
    server = database_url(load_settings())
    t0 = time.perf_counter()
    result: dict[str, Any] = {
        "benchmark": "analytics_accuracy",
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "platform": platform.platform()},
    }
    if "lineloss" in args.only:
        result["lineloss"] = lineloss(server, [1, 2, 3])
        print("lineloss", result["lineloss"], flush=True)
    if "meter_error" in args.only:
        result["meter_error"] = [
            meter_error(server, 10, 41, 1e-4, True),
            meter_error(server, 10, 41, 1e-4, False),
            meter_error(server, 10, 41, 1e-2, True, registers=True),
            meter_error(server, 10, 41, 1e-2, False, registers=True),
            meter_error(server, 10, 41, 1e-2, True),
            meter_error(server, 10, 41, 1e-2, False),
        ]
        print("meter_error", result["meter_error"], flush=True)
    if "theft" in args.only:
        result["theft"] = [theft(server, 12, 42, True), theft(server, 12, 42, False)]
        print("theft", result["theft"], flush=True)
    if "clean" in args.only:
        result["clean"] = clean(server, 20, 43)
        print("clean", result["clean"], flush=True)
    if "wrong_area" in args.only:
        result["wrong_area"] = wrong_area(server, 10, 44)
        print("wrong_area", result["wrong_area"], flush=True)
    if "pv_not_collected" in args.only:
        result["pv_not_collected"] = pv_not_collected(server, 10, 45)
        print("pv_not_collected", result["pv_not_collected"], flush=True)
    if "screening" in args.only:
        result["screening"] = screening(server)
        print("screening", result["screening"], flush=True)
    if "sgsc" in args.only:
        result["sgsc"] = sgsc(server)
        print("sgsc", result["sgsc"], flush=True)
    result["total_s"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(result, indent=2, ensure_ascii=False) + "\n"
    if out_path is None:
        print(text)
    else:
        out_path.write_text(text)
        print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
