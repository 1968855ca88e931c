"""Boundary values of meters without daily freezes, and the missing-slot list's final hour.

Modbus and DL/T 645-1997 meters keep no daily freezes: a master station takes the register read
at the 00:00 poll, else the nearest answered poll within the freeze tolerance (CONTRACTS.md,
``storage.boundaries.boundary_values``). The oracle here asks the world what a poll a second
after each slot boundary gets — silence or the registers — and rebuilds every area-day's
registered figures from that alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from simulators.truth import Delivery, build_truth
from simulators.world import ROLLOVER, World

from .helpers import scenario


def _world(
    tolerance_min: int = 15,
    missing: float = 0.3,
    spike: tuple[int, int] | None = None,
    **devices: Any,
) -> World:
    """A Modbus fleet (unless ``devices`` says otherwise) with many missing slots; ``spike``
    puts 50 kWh on one meter's reading at one midnight poll (point, midnight)."""
    dev = {"dlt645_share": 0.0, "modbus_share": 1.0, "mqtt_share": 0.0, "manual_share": 0.0}
    dev.update(devices)
    sc = scenario(
        faults=False,
        seed=11,
        days=3,
        freeze_tolerance_min=tolerance_min,
        devices=dev,
        injections={"missing_slots": missing},
    )
    w = World(sc, keep_days=10)
    if spike is not None:
        p, b = spike
        w.spikes[p] = {b * w.S: 50.0}
    w.ensure_day(sc.days)
    return w


@pytest.fixture(scope="module")
def world() -> World:
    return _world()


def _answers(w: World, m: int, g: int) -> bool:
    """The poll at slot boundary ``g`` gets an answer (the run ends an hour after the last
    midnight)."""
    if g < 0 or g >= w.sc.days * w.S + w.S // 24:
        return False
    return not w.silent(m, w.g_time(g) + 1.0)


def _oracle(w: World, m: int, b: int) -> tuple[float, float] | None:
    """Forward and reverse at midnight ``b``: 00:00 poll, else the nearest answered poll within
    the tolerance, the earlier one on a tie."""
    k = w.sc.freeze_tolerance_min // w.sc.interval
    for j in [0, *(x for i in range(1, k + 1) for x in (-i, i))]:
        g = b * w.S + j
        if _answers(w, m, g):
            r = w.registers(m, w.g_time(g))
            return float(r[0]), float(r[5])
    return None


def _cases(w: World, pattern: tuple[bool, bool, bool]) -> list[tuple[int, int]]:
    """(meter, midnight) whose polls at 23:45, 00:00, 00:15 are answered as ``pattern`` says."""
    out = []
    for m in range(w.M):
        for b in range(w.sc.days + 1):
            got = tuple(_answers(w, m, b * w.S + j) for j in (-1, 0, 1))
            if got == pattern:
                out.append((m, b))
    return out


def test_missing_midnight_poll_takes_the_0015_register(world: World) -> None:
    w = world
    dl = Delivery(w)
    cases = _cases(w, (False, False, True))
    assert cases
    moved = 0
    for m, b in cases:
        at_0015 = w.registers(m, w.g_time(b * w.S + 1))
        assert dl.boundary(m, b) == (float(at_0015[0]), float(at_0015[5]))
        assert not dl.frozen(m, b)
        moved += float(at_0015[0]) != float(w.freezes[b].values[m, 0])
    assert moved  # the 00:15 register is not the midnight value the truth used to take


def test_tie_goes_to_the_earlier_poll(world: World) -> None:
    w = world
    dl = Delivery(w)
    cases = _cases(w, (True, False, True))
    assert cases
    for m, b in cases:
        at_2345 = w.registers(m, w.g_time(b * w.S - 1))
        assert dl.boundary(m, b) == (float(at_2345[0]), float(at_2345[5]))


def test_silent_for_the_whole_tolerance_window_is_a_missing_term(world: World) -> None:
    w = world
    truth = build_truth(w)
    days = {(a["id"], d["date"]): d["registered"] for a in truth["areas"] for d in a["days"]}
    cases = [(m, b) for m, b in _cases(w, (False, False, False)) if 0 < b < w.sc.days]
    assert cases
    for m, b in cases:
        area = w.area_ids[w.m_archive_area[m]]
        assert Delivery(w).boundary(m, b) is None
        for d in (b - 1, b):  # the day ending and the day starting at that midnight
            reg = days[(area, w.day_date(d).isoformat())]
            assert reg["computable"] is False
            assert w.m_number[m] in reg["missing_terms"]


@pytest.mark.parametrize("tolerance_min", [0, 15, 30])
def test_registered_area_days_follow_the_polls(tolerance_min: int) -> None:
    w = _world(tolerance_min)
    truth = build_truth(w)
    n_computable = 0
    for a, area in enumerate(truth["areas"]):
        for d, day in enumerate(area["days"]):
            reg = day["registered"]
            sums = np.zeros(4)  # supply fwd, supply rev, customer fwd, customer rev
            missing = set()
            for m in range(w.M):
                p = w.m_point[m]
                if w.m_archive_area[m] != a:
                    continue
                ends = [_oracle(w, m, b) for b in (d, d + 1)]
                if ends[0] is None or ends[1] is None:
                    missing.add(w.m_number[m])
                    continue
                (f0, r0), (f1, r1) = ends
                ct = float(w.ct_archive[p])
                fwd = (f1 - f0) % ROLLOVER * ct
                rev = (r1 - r0) % ROLLOVER * ct if w.bidir_archive[p] else 0.0
                i = 0 if w.is_supply[p] else 2
                sums[i] += fwd
                sums[i + 1] += rev
            assert reg["missing_terms"] == sorted(missing)
            assert reg["computable"] == (not missing)
            if missing:
                continue
            n_computable += 1
            assert reg["supply_forward_kwh"] == pytest.approx(sums[0], abs=1e-5)
            assert reg["supply_reverse_kwh"] == pytest.approx(sums[1], abs=1e-5)
            assert reg["customer_forward_kwh"] == pytest.approx(sums[2], abs=1e-5)
            assert reg["customer_reverse_kwh"] == pytest.approx(sums[3], abs=1e-5)
    if tolerance_min:
        assert n_computable


def test_dlt645_1997_boundary_is_what_the_meter_answered() -> None:
    # a DL/T 645-1997 register read carries an injected spike of that slot; so does the
    # boundary value taken from it
    w = _world(missing=0.0, spike=(5, 1), dlt645_share=1.0, modbus_share=0.0, dlt645_1997_share=1.0)
    dl = Delivery(w)
    m = w.m_point.index(5)
    assert w.protocol[5] == "dlt645-1997"
    for b in range(w.sc.days + 1):
        reg = w.registers(m, w.g_time(b * w.S))
        extra = 50.0 if b == 1 else 0.0
        assert dl.boundary(m, b) == ((float(reg[0]) + extra) % ROLLOVER, float(reg[5]))
        assert dl.frozen(m, b)


def test_missing_slots_include_the_final_hour(world: World) -> None:
    w = world
    truth = build_truth(w)
    last = w.sc.days * w.S
    hour = w.S // 24
    in_final_hour = 0
    for rec in truth["meters"]:
        m = w.m_number.index(rec["number"])
        listed = set(rec["missing"]["slots"])
        for g in range(1, last + hour + 1):  # slot ends, up to the end of the run
            t = w.g_time(g)
            silent = w.silent(m, t - 1.0)
            assert (w.iso(t) in listed) == silent, (rec["number"], w.iso(t))
            in_final_hour += silent and g > last
        assert all(w.iso(w.g_time(last + hour)) >= ts for ts in listed)
    assert in_final_hour
