"""VEE kernels against loop references, plus each rule on hand-made cases."""

from __future__ import annotations

import numpy as np
import numpy.testing as npt
import pytest

from analytics.screening import screen_manual_reads
from analytics.vee import (
    METHODS,
    REASONS,
    RULES,
    SLOT_RULES,
    VeeSettings,
    collate_intervals,
    estimate_intervals,
    validate,
)
from tests.analytics import naive

COL = {r: i for i, r in enumerate(RULES)}
SPD = 24


def _random_intervals(seed, n=30, days=21):
    rng = np.random.default_rng(seed)
    x = rng.gamma(1.5, 0.3, (n, days * SPD))
    x[rng.random(x.shape) < 0.03] = np.nan
    for m in rng.choice(n, 5, replace=False):  # longer gaps and empty edges
        s = int(rng.integers(0, x.shape[1] - 40))
        x[m, s : s + int(rng.integers(2, 40))] = np.nan
    x[0, :30] = np.nan
    x[1, -50:] = np.nan
    x[2] = np.nan
    x[3, SPD * 2 : SPD * 3] = 0.0  # a zero day
    x[4, SPD * 4 : SPD * 5] = 0.0
    x[5, 17] = 40.0  # a spike
    x[6, 20] = -0.5  # negative interval
    x[7:9] = np.where(np.isnan(x[7:9]), 0.3, x[7:9])  # complete rows
    x[7, SPD * 6 : SPD * 7] *= 6  # high day
    x[8, SPD * 6 : SPD * 7] *= 0.05  # low day
    day_sum = np.nan_to_num(x).reshape(n, days, SPD).sum(2)
    reg = np.concatenate([np.zeros((n, 1)), day_sum.cumsum(1)], 1) + 1000.0
    reg[9, 5:] += 3.0  # register jumps vs intervals on day 4
    reg[10, 8:] -= reg[10, 8] - 5.0  # goes backwards once
    reg[rng.random(reg.shape) < 0.03] = np.nan
    reg[11] = np.mod(999_990.0 + np.concatenate([[0.0], day_sum[11].cumsum()]), 1e6)
    outage = np.zeros(x.shape, dtype=bool)
    outage[4, SPD * 4 + 3] = True
    history = np.full((n, 1), np.nan)
    history[:, 0] = np.nanmean(day_sum, axis=1)
    removed = np.full(n, -1)
    removed[12] = x.shape[1] - 30
    return x, reg, outage, history, removed


@pytest.mark.parametrize("seed", range(5))
def test_validate_matches_reference(seed):
    x, reg, outage, history, removed = _random_intervals(seed)
    mod = np.full(x.shape[0], 1e6)
    cfg = VeeSettings()
    got = validate(x, slots_per_day=SPD, registers=reg, rollover=mod, outage=outage,
                   history_daily=history[:, 0], removed_slot=removed)  # fmt: skip
    counts, summ = naive.vee(x, SPD, reg, mod, outage, history, removed, cfg)
    npt.assert_array_equal(got.counts, counts)
    npt.assert_array_equal(got.first, summ["first"])
    npt.assert_array_equal(got.last, summ["last"])
    npt.assert_array_equal(got.expected, summ["expected"])
    npt.assert_array_equal(got.received, summ["received"])
    npt.assert_array_equal(got.gaps, summ["gaps"])
    npt.assert_array_equal(got.gap_slots_max, summ["gap_max"])
    npt.assert_array_equal(got.missing, got.expected - got.received)
    # slot bit masks agree with the per-slot counts
    for rule in ("gap", "negative_consumption", "read_after_removal"):
        bits = ((got.slot_flags >> SLOT_RULES.index(rule)) & 1).sum(1, dtype=np.int64)
        bits += ((got.day_flags >> COL[rule]) & 1).sum(1, dtype=np.int64)  # per-day rules
        npt.assert_array_equal(bits, got.counts[:, COL[rule]])
    for rule in ("zero_consumption", "spike", "high_vs_history", "register_vs_intervals"):
        bits = (got.day_flags >> COL[rule]) & 1
        npt.assert_array_equal(bits.sum(1), got.counts[:, COL[rule]])
    spikes = ((got.slot_flags >> SLOT_RULES.index("spike")) & 1).sum(1)
    npt.assert_array_equal(spikes, got.counts[:, COL["spike"]])
    # the planted faults are found
    assert got.counts[3, COL["zero_consumption"]] >= 1
    assert got.counts[4, COL["zero_consumption_outage"]] == 1
    assert got.counts[5, COL["spike"]] >= 1
    assert got.counts[6, COL["negative_consumption"]] >= 1
    assert got.counts[7, COL["high_vs_history"]] == 1
    assert got.counts[8, COL["low_vs_history"]] == 1
    assert got.counts[10, COL["negative_consumption"]] >= 1
    assert got.counts[11, COL["rollover"]] == 1
    assert got.counts[12, COL["read_after_removal"]] >= 1
    assert got.expected[2] == 0 and got.first[2] == -1


@pytest.mark.parametrize("spike_min", [0.0, 0.2, 1.5, np.inf, -1.0])
def test_validate_matches_reference_with_unusual_values_and_thresholds(spike_min):
    x, reg, outage, history, removed = _random_intervals(7)
    x[13, 40] = np.inf
    x[14, 41] = -np.inf
    x[15, 5 * SPD : 6 * SPD] = -0.0  # a day of negative zeros: zero consumption
    x[16, 50:53] = 2.0
    mod = np.full(x.shape[0], 1e6)
    cfg = VeeSettings(spike_min_kwh=spike_min)
    with np.errstate(invalid="ignore"):
        got = validate(x, slots_per_day=SPD, registers=reg, rollover=mod, outage=outage,
                       history_daily=history[:, 0], removed_slot=removed, settings=cfg)  # fmt: skip
        counts, summ = naive.vee(x, SPD, reg, mod, outage, history, removed, cfg)
    npt.assert_array_equal(got.counts, counts)
    pairs = (("first", "first"), ("last", "last"), ("expected", "expected"),
             ("received", "received"), ("gaps", "gaps"), ("gap_slots_max", "gap_max"))  # fmt: skip
    for key, ref in pairs:
        npt.assert_array_equal(getattr(got, key), summ[ref])
    spikes = ((got.slot_flags >> SLOT_RULES.index("spike")) & 1).sum(1)
    npt.assert_array_equal(spikes, got.counts[:, COL["spike"]])


def test_edge_cases_empty_single_constant():
    r = validate(np.empty((0, SPD)), slots_per_day=SPD)
    assert r.counts.shape == (0, len(RULES))
    one = np.full((1, SPD), np.nan)
    one[0, 5] = 1.0
    r = validate(one, slots_per_day=SPD)
    assert (r.expected[0], r.received[0], r.gaps[0], r.missing[0]) == (1, 1, 0, 0)
    const = np.full((1, SPD * 3), 0.25)
    r = validate(const, slots_per_day=SPD)
    assert r.counts.sum() == 0
    with pytest.raises(ValueError, match="whole number of days"):
        validate(np.zeros((1, SPD + 1)), slots_per_day=SPD)


def test_register_rules_clock_tariffs_multiplier():
    reg = np.array([[10.0, 20.0, 30.0, 40.0]])
    tariffs = np.array([[[5.0, 10.0, 15.0, 20.0], [5.0, 10.0, 15.0, 21.0]]])  # last: 41 ≠ 40
    mult = np.array([[40.0, 40.0, 60.0]])
    clock = np.array([[5.0, 10.0, 75.0, 0.0, np.nan, 2.0]])
    x = np.full((1, 3 * SPD), 10.0 / SPD)
    r = validate(x, slots_per_day=SPD, registers=reg, tariff_registers=tariffs,
                 multiplier_by_day=mult, clock_offset_s=clock, duplicates=[2])  # fmt: skip
    f = r.flags(0)
    assert f["total_vs_tariffs"] == 1
    assert f["multiplier_change"] == 1
    assert f["clock_tolerance"] == 1  # 75 s
    assert f["time_reset"] == 2  # 10 → 75 and 75 → 0
    assert f["duplicate"] == 2 and r.duplicates[0] == 2
    assert f["register_vs_intervals"] == 0


def test_collate_counts_different_values_once_per_slot():
    meter = np.array([0, 0, 0, 0, 1, 1, 1, 0])
    slot = np.array([3, 3, 3, 1, 0, 0, 2, 1])
    value = np.array([1.0, 2.0, 1.0, 5.0, 7.0, 7.0, 1.0, 6.0])
    x, dup, same = collate_intervals(meter, slot, value, n_meters=2, n_slots=4)
    npt.assert_array_equal(dup, [2, 0])  # slot 3 (1 vs 2) and slot 1 (5 vs 6)
    npt.assert_array_equal(same, [1, 1])
    assert x[0, 3] == 1.0 and x[0, 1] == 5.0  # the first delivery is kept
    assert np.isnan(x[1, 1])


@pytest.mark.parametrize("seed", range(4))
def test_estimation_matches_reference_and_never_overwrites(seed):
    x, _reg, *_ = _random_intervals(seed)
    before = x.copy()
    est = estimate_intervals(x, slots_per_day=SPD, interval_minutes=60)
    npt.assert_array_equal(x, before)
    want, method = naive.estimate(x, SPD, 1, 3, 8)
    npt.assert_array_equal(est.method, method)
    npt.assert_allclose(est.values, want, rtol=1e-12)
    assert np.isnan(est.values[~np.isnan(x)]).all()
    assert METHODS[est.method.max()] == "like_day"


def test_linear_short_gap_and_like_day_scaled_to_register():
    days = 22
    base = np.tile(np.arange(1, SPD + 1, dtype=float) / 100, days)
    x = base[None, :].copy()
    x[0, 5:6] = np.nan  # 1 slot at hourly data: linear
    d = 14
    x[0, d * SPD + 2 : d * SPD + 12] = np.nan  # 10 h: like day
    true_day = base[d * SPD : (d + 1) * SPD].sum()
    reg = np.concatenate([[0.0], np.full(days, np.nan)])
    reg[d] = 100.0
    reg[d + 1] = 100.0 + true_day * 1.1  # the register says the day was 10 % higher
    outage = np.zeros_like(x, dtype=bool)
    outage[0, d * SPD + 2] = True
    est = estimate_intervals(x, slots_per_day=SPD, interval_minutes=60,
                             registers=reg[None, :], outage=outage)  # fmt: skip
    assert METHODS[est.method[0, 5]] == "linear"
    assert est.values[0, 5] == pytest.approx(base[5])
    sl = slice(d * SPD + 2, d * SPD + 12)
    assert {METHODS[m] for m in est.method[0, sl]} == {"like_day"}
    filled = est.filled(x)
    assert filled[0, d * SPD : (d + 1) * SPD].sum() == pytest.approx(true_day * 1.1)
    assert REASONS[est.reason[0, d * SPD + 2]] == "outage"
    assert REASONS[est.reason[0, d * SPD + 3]] == "comms_fault"


def test_manual_read_screening():
    reads = np.array(
        [
            # steady use ~100/month, then read = previous + average (estimated)
            [1000.3, 1101.7, 1199.2, 1301.9, 1402.4, 1503.0, 1603.5],
            # round numbers and identical increments
            [500.0, 600.0, 700.0, 800.0, 900.0, 1000.0, 1100.0],
            # a ×10 slip at read 4
            [2000.1, 2050.4, 2101.3, 2149.8, 22001.0, 2250.6, 2302.2],
            # digit transposition: 3451.2 typed as 3541.2
            [3300.5, 3351.1, 3399.7, 3541.2, 3500.9, 3549.6, 3601.3],
            # skipped read, then a copied read
            [100.2, 140.8, np.nan, 221.5, 221.5, 300.4, 341.0],
            # a low read that the next one catches up
            [800.0, 860.3, 919.7, 940.2, 1040.9, 1100.2, 1159.8],
        ]
    )
    readers = np.array([[0] * 7, [1] * 7, [0] * 7, [0] * 7, [2] * 7, [0] * 7])
    r = screen_manual_reads(reads, readers=readers)
    assert "previous_plus_average" in r.evidence_of(0, 6)
    assert r.estimated_score[1, 5] >= 0.5
    assert {"round_number", "identical_increment"} <= set(r.evidence_of(1, 5))
    assert "times_ten_slip" in r.evidence_of(2, 4) and r.error_score[2, 4] == 1.0
    assert "digit_transposition" in r.evidence_of(3, 3)
    assert "missing_read" in r.evidence_of(4, 2) and r.skipped_score[4, 2] == 1.0
    assert "copied_previous" in r.evidence_of(4, 4)
    assert "caught_up_later" in r.evidence_of(5, 3)
    # clean reads of the steady meter score nothing as errors
    assert r.error_score[0].max() == 0.0
    assert r.readers[0].reader == 1  # the reader with round, identical reads ranks first
