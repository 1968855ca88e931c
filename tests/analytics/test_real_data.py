"""VEE on real data: the SGSC 50-customer half-hourly trial extract (../shared/data).

Expected figures are derived here independently of ``analytics`` with plain NumPy set
operations on the raw long table, never hard-coded.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import numpy.testing as npt
import pytest

from analytics.vee import RULES, collate_intervals, validate

DATA = Path(__file__).parents[2].parent / "shared" / "data"
PARQUET = DATA / "sgsc_50" / "sgsc_50_customers_halfhourly.parquet"

pytestmark = pytest.mark.skipif(
    not DATA.is_dir(), reason=f"shared data directory {DATA} is absent (it is present in CI)"
)


@pytest.fixture(scope="module")
def raw():
    pq = pytest.importorskip("pyarrow.parquet")
    t = pq.read_table(PARQUET, columns=["customer_id", "reading_datetime", "general_supply_kwh"])
    cid = t["customer_id"].to_numpy()
    ts = t["reading_datetime"].to_numpy().astype("datetime64[m]")
    val = t["general_supply_kwh"].to_numpy().astype(np.float64)
    ids, meter = np.unique(cid, return_inverse=True)
    day0 = ts.min().astype("datetime64[D]")
    # timestamps mark the end of their half-hour: slot s ends at day0 + (s + 1) · 30 min
    slot = ((ts - day0) // np.timedelta64(30, "m")).astype(np.int64) - 1
    return ids, meter.astype(np.int64), slot, val, day0


@pytest.fixture(scope="module")
def imported(raw):
    ids, meter, slot, val, _ = raw
    n_slots = (int(slot.max()) // 48 + 1) * 48
    x, dup, same = collate_intervals(meter, slot, val, n_meters=ids.size, n_slots=n_slots)
    return x, dup, same, validate(x, slots_per_day=48, duplicates=dup)


def _expected_per_meter(meter, slot, val, n):
    """Gaps, missing slots, longest gap and duplicate slots from the raw rows, per meter."""
    out = {k: np.zeros(n, dtype=np.int64) for k in ("expected", "received", "gaps", "max", "dup")}
    for m in range(n):
        sel = meter == m
        s, v = slot[sel], val[sel]
        slots = np.unique(s)
        out["received"][m] = slots.size
        out["expected"][m] = slots[-1] - slots[0] + 1
        steps = np.diff(slots)
        out["gaps"][m] = int((steps > 1).sum())
        out["max"][m] = int(steps.max() - 1) if steps.size else 0
        pairs = np.unique(np.stack([s, v]), axis=1)  # distinct (slot, value) pairs
        _, n_values = np.unique(pairs[0], return_counts=True)
        out["dup"][m] = int((n_values > 1).sum())
    return out


def test_every_gap_and_duplicate_is_counted(raw, imported):
    ids, meter, slot, val, _ = raw
    _, dup, _, rep = imported
    want = _expected_per_meter(meter, slot, val, ids.size)
    npt.assert_array_equal(rep.received, want["received"])
    npt.assert_array_equal(rep.expected, want["expected"])
    npt.assert_array_equal(rep.missing, want["expected"] - want["received"])
    npt.assert_array_equal(rep.gaps, want["gaps"])
    npt.assert_array_equal(rep.gap_slots_max, want["max"])
    npt.assert_array_equal(rep.duplicates, want["dup"])
    npt.assert_array_equal(rep.counts[:, RULES.index("duplicate")], want["dup"])
    npt.assert_array_equal(rep.counts[:, RULES.index("gap")], rep.missing)
    assert rep.gaps.sum() > 0 and dup.sum() > 0  # the data do have both


def test_near_all_zero_meter_is_flagged(raw, imported):
    ids, meter, _, val, _ = raw
    *_, rep = imported
    zeros = np.bincount(meter, weights=(val == 0).astype(float), minlength=ids.size)
    worst = int(np.argmax(zeros))
    assert zeros[worst] > 0.5 * np.bincount(meter)[worst]  # the near-all-zero customer
    col = RULES.index("zero_consumption")
    assert rep.counts[worst, col] > 0
    # and it has more zero-consumption days than any other customer
    assert int(np.argmax(rep.counts[:, col])) == worst


def test_report_rows_follow_the_contract(raw, imported):
    ids, _, _, _, day0 = raw
    *_, rep = imported
    tz = timezone(timedelta(hours=10))  # SGSC stamps: fixed UTC+10, interval ends
    start = datetime.fromisoformat(str(day0)).replace(tzinfo=tz)
    doc = rep.to_report([str(i) for i in ids], 30, start).to_dict()
    row = doc["meters"][0]
    assert list(row) == [
        "meter", "interval", "first", "last", "expected", "received", "missing", "gaps",
        "gap_slots_max", "duplicates", "estimated", "flags",
    ]  # fmt: skip
    assert set(row["flags"]) == set(RULES)
    first = datetime.fromisoformat(row["first"])
    last = datetime.fromisoformat(row["last"])
    assert (last - first) / timedelta(minutes=30) + 1 == row["expected"]
