"""Physics and ground truth: balances, registers from physics, injected faults, clean runs."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest

from simulators.truth import build_truth
from simulators.world import ROLLOVER, World

from .helpers import scenario

# faults that do not change how a meter turns the energy through it into register increments
SAME_GAIN = {
    "clock_drift",
    "clock_reset",
    "rollover_start",
    "supply_ct_wrong",
    "wrong_area",
    "pv_export_not_collected",
    "total_vs_tariffs",
    "theft",
}


@pytest.fixture(scope="module")
def world() -> World:
    w = World(scenario(), keep_days=10)
    w.ensure_day(w.sc.days)
    return w


@pytest.fixture(scope="module")
def truth(world: World) -> dict:
    return build_truth(world)


def test_area_balance_to_the_watt_hour(truth: dict) -> None:
    for area in truth["areas"]:
        assert len(area["days"]) == 4
        for day in area["days"]:
            ph = day["physical"]
            left = ph["transformer_import_kwh"] + ph["customer_export_kwh"]
            right = (
                ph["customer_import_kwh"]
                + ph["transformer_backfeed_kwh"]
                + ph["technical_loss_kwh"]
                + ph["theft_kwh"]
            )
            assert abs(left - right) < 0.001
            assert ph["supply_kwh"] == pytest.approx(left, abs=1e-5)


def test_technical_loss_is_plausible(truth: dict) -> None:
    for area in truth["areas"]:
        for day in area["days"]:
            ph = day["physical"]
            if ph["outage_slots"] == 0:
                assert 0.01 < ph["technical_loss_kwh"] / ph["supply_kwh"] < 0.08


def _expected_increment(w: World, p: int, t0: float, t1: float, col: int) -> float:
    """Σ over the window of (1 + ε_day) · physical energy / CT, split at midnights."""
    total = 0.0
    a = t0
    while a < t1 - 1e-9:
        d = w.day_of(a)
        b = min(t1, w.g_time((d + 1) * w.S))
        e0 = w.physical_cum(p, a)[col]
        e1 = w.physical_cum(p, b)[col]
        total += (1.0 + w.epsilon(p, d)) * (e1 - e0) / w.ct_true[p]
        a = b
    return total


def test_registered_freezes_follow_physics(world: World) -> None:
    w = world
    exchanged = {e["old"] for e in w.exchanges} | {e["new"] for e in w.exchanges}
    checked = 0
    for m in range(w.M):
        p = w.m_point[m]
        kinds = {f["kind"] for f in w.faults.get(p, [])}
        if m in exchanged or not kinds <= SAME_GAIN:
            continue
        for d in range(w.sc.days):
            f0, f1 = w.freezes[d], w.freezes[d + 1]
            for col, reg in ((0, 0), (1, 5)):
                shown_diff = (f1.values[m, reg] - f0.values[m, reg]) % ROLLOVER
                expected = _expected_increment(w, p, f0.instant[m], f1.instant[m], col)
                assert abs(shown_diff - expected) < 0.0101, (m, d, kinds)
            # tariff registers add up to the total unless a tariff register is stuck
            if "total_vs_tariffs" not in kinds:
                assert abs(f1.exact[m, 1:5].sum() - f1.exact[m, 0]) < 1e-6
            checked += 1
    assert checked > 100


def test_clock_faults_move_the_freeze_instant(world: World) -> None:
    w = world
    moved = [p for p, fl in w.faults.items() if any(f["kind"] == "clock_drift" for f in fl)]
    assert moved
    last = w.freezes[w.sc.days]
    midnight = w.g_time(w.sc.days * w.S)
    shifted = [p for p in moved if abs(last.instant[p] - midnight) > 1.0]
    assert shifted, "a drifting clock freezes away from the true midnight"


def test_fast_and_slow_meters_register_their_error(world: World) -> None:
    w = world
    for p, faults in w.faults.items():
        for f in faults:
            if f["kind"] not in ("meter_fast", "meter_slow") or len(faults) > 1:
                continue
            d = int(f["since_g"]) // w.S + 1
            if d >= w.sc.days:
                continue
            f0, f1 = w.freezes[d], w.freezes[d + 1]
            phys = w.physical_cum(p, f1.instant[p])[0] - w.physical_cum(p, f0.instant[p])[0]
            if phys < 1.0:
                continue
            reg = f1.exact[p, 0] - f0.exact[p, 0]
            assert reg / phys == pytest.approx(1 + w.eps_class[p] + f["epsilon"], rel=1e-6)


def test_injections_appear_in_the_truth(truth: dict, world: World) -> None:
    meters = {m["number"]: m for m in truth["meters"]}
    kinds = {f["kind"] for m in meters.values() for f in m["faults"]}
    for kind in (
        "theft",
        "meter_fast",
        "meter_slow",
        "meter_drifting",
        "stopped",
        "reversed",
        "wrong_area",
        "pv_export_not_collected",
        "supply_ct_wrong",
        "clock_drift",
        "clock_reset",
        "multiplier_change",
        "total_vs_tariffs",
        "rollover_start",
    ):
        assert kind in kinds, kind
    thieves = [m for m in meters.values() if m["theft"]]
    assert thieves and all(m["theft"]["since"] for m in thieves)
    theft_days = [d["physical"]["theft_kwh"] for a in truth["areas"] for d in a["days"]]
    assert max(theft_days) > 0
    assert any(m["exchanges"] for m in meters.values())
    assert any(m["missing"]["slots"] for m in meters.values())
    assert any(m["missing"]["offline"] for m in meters.values())
    reads = [r for m in meters.values() for r in m["manual_reads"]]
    assert {r["kind"] for r in reads} >= {"actual", "estimated", "skipped", "mistyped"}
    for r in reads:
        if r["kind"] == "skipped":
            assert r["value"] is None
        elif r["kind"] == "actual":
            assert r["value"] == r["true_value"]
    wrong = [m for m in meters.values() if m["area"] != m["true_area"]]
    assert wrong
    # a wrong CT on a supply meter makes registered supply a constant ratio of physical supply
    for f in (f for m in meters.values() for f in m["faults"] if f["kind"] == "supply_ct_wrong"):
        assert f["ct_archive"] != f["ct_true"]
    assert any(not d["registered"]["computable"] for a in truth["areas"] for d in a["days"])
    assert world.outages


def test_clean_scenario_is_clean() -> None:
    w = World(scenario(faults=False), keep_days=10)
    w.ensure_day(w.sc.days)
    t = build_truth(w)
    for area in t["areas"]:
        for day in area["days"]:
            assert day["physical"]["theft_kwh"] == 0
            assert day["registered"]["computable"] and not day["registered"]["missing_terms"]
            assert day["physical"]["outage_slots"] == 0
            # class-2 meters and quantisation only: registered loss close to physical loss
            assert abs(day["registered"]["rate"] - day["physical"]["rate"]) < 2.0
    for m in t["meters"]:
        assert m["faults"] == [] and m["theft"] is None and m["exchanges"] == []
        assert abs(m["error"]["class_epsilon"]) < 0.02
        assert all(abs(e) < 0.02 for e in m["error"]["epsilon_by_day"])
        assert m["missing"] == {"slots": [], "offline": None, "concentrator_offline": None}
        assert all(r["kind"] == "actual" for r in m["manual_reads"])
        assert m["area"] == m["true_area"]
        if m["relay"]:
            assert m["relay"]["behaviour"] == "normal" and not m["relay"]["protected"]


def test_same_seed_same_truth() -> None:
    docs = []
    for _ in range(2):
        w = World(scenario())
        w.ensure_day(w.sc.days)
        docs.append(json.dumps(build_truth(w), sort_keys=True))
    assert docs[0] == docs[1]
    w = World(scenario(seed=8))
    w.ensure_day(w.sc.days)
    assert json.dumps(build_truth(w), sort_keys=True) != docs[0]


def test_registers_are_quantised_and_roll_over(world: World) -> None:
    w = world
    rolled = [p for p, fl in w.faults.items() if any(f["kind"] == "rollover_start" for f in fl)]
    assert rolled
    last = w.freezes[w.sc.days]
    assert np.all(np.round(last.values[np.isfinite(last.values)] * 100, 6) % 1 == 0)
    assert any(last.values[p, 0] < w.freezes[0].values[p, 0] for p in rolled)


def test_daily_meter_truth(truth: dict, world: World) -> None:
    w = world
    checked = thieves = 0
    for rec in truth["meters"]:
        m = w.m_number.index(rec["number"])
        p = w.m_point[m]
        daily = rec["daily"]
        assert len(daily["physical_import_kwh"]) == w.sc.days
        kinds = {f["kind"] for f in rec["faults"]}
        for f in rec["faults"]:
            assert "suspect_kind" in f
        for d in range(w.sc.days):
            phys, reg = daily["physical_import_kwh"][d], daily["registered_forward_kwh"][d]
            if phys is None or reg is None:
                continue
            if not kinds or kinds == {"theft"}:
                expected = (1 + w.epsilon(p, d)) * phys / w.ct_true[p] * w.ct_archive[p]
                assert abs(reg - expected) < 0.0101 * w.ct_archive[p]
                checked += 1
            if kinds == {"theft"} and daily["theft_kwh"][d] > 0.5:
                # what the meter saw is less than what the customer used
                assert reg < phys + daily["theft_kwh"][d]
                thieves += 1
    assert checked > 100 and thieves > 0


def test_live_changes_recompute_only_their_area_exactly() -> None:
    """A relay trip or a clock set recomputes its area; the result equals a full computation
    of a world that knew the change from the start."""
    sc = scenario()
    live = World(sc, keep_days=10)
    live.ensure_day(3)
    p = next(p for p, r in live.relays.items() if r.behaviour == "normal" and not r.protected)
    q = next(q for q in live.clock if live.protocol[q] != "modbus")
    t_trip = live.g_time(1 * live.S + 30) + 100.0
    t_set = live.g_time(2 * live.S + 10)
    live.relay_command(p, t_trip, "trip")
    target = datetime.fromtimestamp(t_set, UTC).astimezone(live.zone).replace(tzinfo=None)
    live.set_clock(q, t_set, target, max_step_s=None)
    fresh = World(sc, keep_days=10)
    fresh.relay_command(p, t_trip, "trip")
    fresh.set_clock(q, t_set, target, max_step_s=None)
    fresh.ensure_day(3)
    for d in range(4):
        a, b = live.days[d], fresh.days[d]
        np.testing.assert_array_equal(a.inc, b.inc)
        np.testing.assert_array_equal(a.start, b.start)
        np.testing.assert_array_equal(a.tariff, b.tariff)
        for key in a.area_totals:
            np.testing.assert_array_equal(a.area_totals[key], b.area_totals[key])
        np.testing.assert_array_equal(live.freezes[d].values, fresh.freezes[d].values)
    assert json.dumps(build_truth(live), sort_keys=True) == json.dumps(
        build_truth(fresh), sort_keys=True
    )
    # the trip shows: no import through the meter after it
    day1 = live.days[1]
    assert float(day1.inc[p, 2, 31:].sum()) == 0.0


def test_exchanged_meters_end_and_start_readings(world: World) -> None:
    w = world
    assert w.exchanges
    for ex in w.exchanges:
        old, new = ex["old"], ex["new"]
        t_ex = w.g_time(ex["g"])
        after = t_ex + 7200.0
        if w.day_of(after) not in w.days:
            continue
        # the old meter keeps its end reading; the new one starts from its start reading
        assert w.registers(old, after)[0] == ex["old_end"]
        assert w.registers(new, t_ex)[0] == ex["new_start"]
        assert w.registers(new, after)[0] >= ex["new_start"]
        # a removed meter answers only when injected to keep reporting
        assert w.silent(old, after) is (old not in w.removed_reporting)
        assert w.silent(new, t_ex - 60.0)
