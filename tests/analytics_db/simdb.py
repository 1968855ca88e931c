"""A simulated world written into the database, for the accuracy tests and the benchmark.

The archive is the simulator's own fleet document (with exchanges), loaded by
``storage.archive.load_archive``. Readings go in through ``storage.readings.ingest``:

* per slot, what each meter registered (its error, theft bypass, stop, CT as installed): DL/T
  645 meters as the cumulative energy register (``forward_active_total_kwh``; the database
  derives their intervals), all others as ``interval_kwh``; bidirectional meters also their
  export. Values are kept to ``resolution`` kWh (secondary side), the slots the world marks
  missing are left out;
* the daily freezes (``daily_frozen_*``) as shown by the meters (0.01 kWh), wherever the truth's
  delivery model says the master station gets them; for meters without freezes (Modbus, DL/T
  645-1997) the register poll the truth takes at 00:00 (or nearest within the tolerance),
  stamped at midnight;
* manual reads (with their 估抄 / 漏抄 / 错抄) as ``read_kind = 'manual'`` register readings.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w

from simulators.fleetfile import Endpoints, fleet_document
from simulators.scenario import parse_scenario
from simulators.truth import Delivery, build_truth
from simulators.world import NEVER, ROLLOVER, World
from storage.readings import QUANTITY_IDS, IntervalRow, RegisterRow, ingest


def make_world(data: dict[str, Any], *, faults_from_start: bool = False) -> World:
    """A world from a scenario mapping; every computed day stays in memory.

    Args:
        data: scenario keys (``version`` is added).
        faults_from_start: meter errors beyond class and theft run from the first slot instead
            of a random date (a static error is what a window's balance fit estimates; steps
            inside the window are measured separately in the benchmark).
    """
    sc = parse_scenario({"version": 1, **data})
    w = World(sc, keep_days=sc.days + 2)
    if faults_from_start:
        for arr in (w.eps_since, w.theft_since):
            arr[arr < NEVER] = 0
        for faults in w.faults.values():
            for f in faults:
                if f["kind"] in ("meter_fast", "meter_slow", "meter_drifting", "theft"):
                    f["since_g"] = 0
    return w


def _round(x: np.ndarray, resolution: float) -> np.ndarray:
    return np.round(np.asarray(x, dtype=np.float64) / resolution) * resolution


async def load_world(
    conn: Any, world: World, tmp: Path, *, resolution: float = 0.001, freezes: bool = True,
    intervals: bool = True,
) -> dict[str, Any]:
    """Write the world's archive and readings; returns the truth document.

    Args:
        conn: async connection (the caller owns the transaction).
        world: a freshly built world.
        tmp: a folder for the fleet file.
        resolution: kWh resolution of interval and register values (secondary side).
        freezes: write the daily freezes.
        intervals: write the per-slot data.
    """
    from collector.archive import load_file
    from storage.archive import load_archive

    w = world
    days = w.sc.days
    for d in range(days):
        w.ensure_day(d)
    end_t = w.g_time(days * w.S)
    doc = fleet_document(
        w, Endpoints(gateways={g["id"]: "tcp://127.0.0.1:9" for g in w.gateways},
                     broker_url="mqtt://127.0.0.1:1883"),
        wall_start=datetime(2026, 1, 1, tzinfo=UTC), sim_now=end_t)
    path = tmp / "fleet.toml"
    path.write_text(tomli_w.dumps(doc))
    archive = load_file(path, site_timezone=w.sc.timezone)
    await load_archive(conn, archive, actor="test", now=datetime.now(UTC))
    cur = await conn.execute("SELECT number, id FROM meter")
    ids = dict(await cur.fetchall())
    truth = build_truth(w)
    if intervals:
        await _write_slots(conn, w, ids, resolution)
    if freezes:
        await _write_freezes(conn, w, ids)
    await _write_manual(conn, w, ids)
    return truth


async def _write_slots(conn: Any, w: World, ids: dict[str, int], resolution: float) -> None:
    world = w  # built by make_world: every day stays in memory
    lo, hi = world._install_bounds()
    q_iv, q_ivr = QUANTITY_IDS["interval_kwh"], QUANTITY_IDS["interval_reverse_kwh"]
    q_fwd = QUANTITY_IDS["forward_active_total_kwh"]
    q_rev = QUANTITY_IDS["reverse_active_total_kwh"]
    now = datetime.now(UTC)
    for d in range(world.sc.days):
        day = world.days[d]
        t_end = world.g_time(d * world.S) + (np.arange(world.S) + 1) * world.slot_s
        stamps = [datetime.fromtimestamp(t, UTC) for t in t_end]
        inc = day.inc.astype(np.float64)
        iv_rows: list[IntervalRow] = []
        reg_rows: list[RegisterRow] = []
        for m in range(world.M):
            p = world.m_point[m]
            if world.protocol[p] == "manual":
                continue
            mid = ids[world.m_number[m]]
            ok = (t_end > lo[m]) & (t_end <= hi[m]) & ~day.missing[p]
            bidi = bool(world.bidir_archive[p])
            if world.protocol[p] == "dlt645-2007":
                base = world.m_base6[m] - world.m_adj[m]
                fwd = np.mod(base[0] + day.start[p, 0] + np.cumsum(inc[p, 0]), ROLLOVER)
                rev = np.mod(base[5] + day.start[p, 5] + np.cumsum(inc[p, 1]), ROLLOVER)
                fwd, rev = _round(fwd, resolution), _round(rev, resolution)
                for s in np.flatnonzero(ok):
                    reg_rows.append(RegisterRow(mid, q_fwd, stamps[s], float(fwd[s])))
                    if bidi:
                        reg_rows.append(RegisterRow(mid, q_rev, stamps[s], float(rev[s])))
            else:
                fwd = _round(inc[p, 0], resolution)
                rev = _round(inc[p, 1], resolution)
                for s in np.flatnonzero(ok):
                    iv_rows.append(IntervalRow(mid, q_iv, stamps[s], float(fwd[s]),
                                               world.sc.interval))
                    if bidi:
                        iv_rows.append(IntervalRow(mid, q_ivr, stamps[s], float(rev[s]),
                                                   world.sc.interval))
        await ingest(conn, iv_rows, source="sim", received_at=now)
        await ingest(conn, reg_rows, source="sim", received_at=now)


async def _write_freezes(conn: Any, w: World, ids: dict[str, int]) -> None:
    dl = Delivery(w)
    q_f = QUANTITY_IDS["daily_frozen_forward_active_total_kwh"]
    q_r = QUANTITY_IDS["daily_frozen_reverse_active_total_kwh"]
    q_rf, q_rr = QUANTITY_IDS["forward_active_total_kwh"], QUANTITY_IDS["reverse_active_total_kwh"]
    polled = {int(m) for m in getattr(w, "poll_meters", [])}
    rows: list[RegisterRow] = []
    for b in range(w.sc.days + 1):
        fz = w.freezes.get(b)
        if fz is None:
            continue
        at = w.start + timedelta(days=b)
        for m in range(w.M):
            p = w.m_point[m]
            mid = ids[w.m_number[m]]
            if m in polled:  # no daily freeze: the register poll the truth takes (00:00 ± tol)
                got = dl.boundary(m, b) if fz.valid[m] else None
                if got is not None:
                    rows.append(RegisterRow(mid, q_rf, at, got[0]))
                    if w.bidir_archive[p]:
                        rows.append(RegisterRow(mid, q_rr, at, got[1]))
                continue
            if not fz.valid[m] or not dl.frozen(m, b):
                continue
            rows.append(RegisterRow(mid, q_f, at, float(fz.values[m, 0])))
            if w.bidir_archive[p]:
                rows.append(RegisterRow(mid, q_r, at, float(fz.values[m, 5])))
    await ingest(conn, rows, source="sim-freeze", received_at=datetime.now(UTC))


async def _write_manual(conn: Any, w: World, ids: dict[str, int]) -> None:
    q = QUANTITY_IDS["forward_active_total_kwh"]
    rows = []
    for (m, _d), r in sorted(w.manual_reads.items()):
        if r["value"] is None:
            continue
        reader = f"reader-{w.m_point[m] % 3}"
        rows.append(RegisterRow(ids[w.m_number[m]], q, datetime.fromisoformat(r["ts"]),
                                float(r["value"]), "manual", reader))
    await ingest(conn, rows, source="sim-manual", received_at=datetime.now(UTC))


def area_truth(truth: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(area, date) → the truth's ``registered`` block."""
    return {(a["id"], d["date"]): d["registered"] for a in truth["areas"] for d in a["days"]}
