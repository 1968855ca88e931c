"""Same-period line loss: kernel against the loop reference, and the domain rules."""

from __future__ import annotations

import numpy as np
import numpy.testing as npt
import pytest

from analytics.lineloss import (
    ROLE_CUSTOMER,
    ROLE_SUPPLY,
    STATES,
    LossThresholds,
    MeterExchanges,
    line_loss,
    meter_energy,
)
from tests.analytics import naive


def _thresholds(n_areas, **kw):
    th = LossThresholds(**kw)
    return th, {
        name: np.broadcast_to(np.asarray(getattr(th, name), dtype=float), (n_areas,))
        for name in ("band_lo", "band_hi", "coverage_min", "estimated_max", "low_energy_kwh")
    }


def _random_fleet(seed, n_areas=7, per_area=12, n_periods=5, shuffle=True):
    rng = np.random.default_rng(seed)
    n = n_areas * per_area
    area = np.repeat(np.arange(n_areas), per_area)
    role = np.zeros(n, dtype=np.int64)
    role[::per_area] = ROLE_SUPPLY
    mult = np.where(role == ROLE_SUPPLY, rng.choice([40.0, 60.0, 80.0], n), 1.0)
    bidi = rng.random(n) < 0.3
    modulus = np.full(n, 1e6)
    use = rng.gamma(2.0, 5.0, (n, n_periods))
    use[role == ROLE_SUPPLY] = rng.gamma(2.0, 1.5, (int((role == 1).sum()), n_periods))
    start = rng.uniform(0, 1e6, n)
    start[:5] = 999_990.0  # some roll over
    fwd = np.mod(start[:, None] + np.concatenate([np.zeros((n, 1)), use.cumsum(1)], 1), 1e6)
    rev = np.mod(rng.uniform(0, 100, (n, 1)) + np.concatenate(
        [np.zeros((n, 1)), rng.gamma(1.0, 2.0, (n, n_periods)).cumsum(1)], 1), 1e6)  # fmt: skip
    for arr in (fwd, rev):
        arr[rng.random(arr.shape) < 0.05] = np.nan
    fwd_est = rng.random(fwd.shape) < 0.05
    rev_est = rng.random(rev.shape) < 0.05
    if shuffle:
        perm = rng.permutation(n)
        area, role, mult, bidi, modulus = area[perm], role[perm], mult[perm], bidi[perm], modulus[
            perm
        ]
        fwd, rev, fwd_est, rev_est = fwd[perm], rev[perm], fwd_est[perm], rev_est[perm]
    return fwd, rev, fwd_est, rev_est, area, role, mult, bidi, modulus


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("shuffle", [False, True])
def test_matches_reference_on_random_fleets(seed, shuffle):
    fwd, rev, fe, re_, area, role, mult, bidi, mod = _random_fleet(seed, shuffle=shuffle)
    th, thd = _thresholds(7, coverage_min=80.0, estimated_max=20.0)
    got = line_loss(
        fwd, area=area, role=role, multiplier=mult, bidirectional=bidi, rollover=mod,
        reverse=rev, forward_estimated=fe, reverse_estimated=re_, thresholds=th,
    )  # fmt: skip
    want = naive.line_loss(fwd, rev, fe, re_, area, role, mult, bidi, mod, 7, thd)
    npt.assert_allclose(got.supply_kwh, want["supply"], rtol=1e-12)
    npt.assert_allclose(got.sales_kwh, want["sales"], rtol=1e-12)
    npt.assert_allclose(got.loss_kwh, want["loss"], rtol=1e-9, atol=1e-9)
    npt.assert_allclose(got.rate, want["rate"], rtol=1e-9, atol=1e-12)
    npt.assert_allclose(got.coverage, want["coverage"], rtol=1e-12)
    npt.assert_allclose(got.estimated_share, want["share"], rtol=1e-9, atol=1e-12)
    npt.assert_array_equal(got.state, want["state"])
    assert len(set(got.state.ravel().tolist())) >= 2  # the random fleet exercises states


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("shuffle", [False, True])
def test_matches_reference_with_exchanges(seed, shuffle):
    fwd, _, fe, _, area, role, mult, _, mod = _random_fleet(seed, shuffle=shuffle)
    rng = np.random.default_rng(100 + seed)
    n, n_b = fwd.shape
    rows = []
    for m in rng.choice(n, 10, replace=False):  # the new meter starts from a small reading
        p = int(rng.integers(0, n_b - 1))
        if np.isnan(fwd[m, p]) or np.isnan(fwd[m, p + 1]):
            continue
        old_end = fwd[m, p] + float(rng.uniform(0.0, 5.0))
        new_start = float(rng.uniform(0.0, 2.0))
        fwd[m, p + 1] = new_start + float(rng.uniform(0.0, 5.0))
        fwd[m, p + 2 :] = np.nan  # later registers belong to the new meter: unknown here
        rows.append((int(m), p, old_end, new_start))
    assert rows
    ex = MeterExchanges(*(np.array(c) for c in zip(*rows, strict=True)))
    th, thd = _thresholds(7, coverage_min=0.0, estimated_max=100.0)
    got = line_loss(
        fwd, area=area, role=role, multiplier=mult, rollover=mod, forward_estimated=fe,
        exchanges=ex, thresholds=th,
    )  # fmt: skip
    no_rev = np.zeros(n, dtype=bool)
    want = naive.line_loss(fwd, None, fe, None, area, role, mult, no_rev, mod, 7, thd, rows)
    npt.assert_allclose(got.supply_kwh, want["supply"], rtol=1e-12)
    npt.assert_allclose(got.sales_kwh, want["sales"], rtol=1e-12)
    npt.assert_allclose(got.rate, want["rate"], rtol=1e-9, atol=1e-12)
    npt.assert_array_equal(got.state, want["state"])


def test_unsorted_meters_give_the_sorted_result():
    fwd, rev, fe, re_, area, role, mult, bidi, mod = _random_fleet(4, shuffle=False)
    kw = {"multiplier": mult, "bidirectional": bidi, "rollover": mod, "reverse": rev,
          "forward_estimated": fe, "reverse_estimated": re_}  # fmt: skip
    want = line_loss(fwd, area=area, role=role, **kw)
    perm = np.random.default_rng(5).permutation(area.size)
    kw_p = {k: v[perm] for k, v in kw.items()}
    got = line_loss(fwd[perm], area=area[perm], role=role[perm], **kw_p)
    for name in ("supply_kwh", "sales_kwh", "loss_kwh", "rate", "coverage", "estimated_share"):
        # within an area the terms are summed in the given row order
        npt.assert_allclose(getattr(got, name), getattr(want, name), rtol=1e-12, atol=1e-12)
    npt.assert_array_equal(got.state, want.state)
    with pytest.raises(ValueError, match="area indices"):
        line_loss(fwd[perm], area=area[perm], role=role[perm], n_areas=3, **kw_p)
    # per-area thresholds with unsorted meters whose last area is not the largest
    assert int(area[perm][-1]) != 6
    band = np.linspace(5.0, 12.0, 7)
    got = line_loss(fwd[perm], area=area[perm], role=role[perm],
                    thresholds=LossThresholds(band_hi=band), **kw_p)  # fmt: skip
    want = line_loss(fwd, area=area, role=role, thresholds=LossThresholds(band_hi=band), **kw)
    npt.assert_array_equal(got.state, want.state)
    with pytest.raises(ValueError, match="band_hi"):
        line_loss(fwd, area=area, role=role, thresholds=LossThresholds(band_hi=band[:3]), **kw)


def test_meter_energy_matches_reference_with_exchanges_and_rollover():
    rng = np.random.default_rng(3)
    reg = np.cumsum(rng.gamma(2, 3, (20, 8)), axis=1) + 999_950.0
    reg = np.mod(reg, 1e6)
    reg[rng.random(reg.shape) < 0.05] = np.nan
    ex = [(2, 1, reg[2, 1] + 3.0, 10.0), (2, 1, 20.0, 0.5), (5, 6, reg[5, 6] + 1.0, 0.0)]
    reg[2, 2] = 0.5 + 4.0
    reg[5, 7] = 7.0
    mult = rng.choice([1.0, 30.0], 20)
    mod = np.full(20, 1e6)
    got = meter_energy(
        reg, multiplier=mult, rollover=mod,
        exchanges=MeterExchanges(*(np.array(c) for c in zip(*ex, strict=True))),
    )  # fmt: skip
    npt.assert_allclose(got, naive.meter_energy(reg, mult, mod, ex), rtol=1e-12)
    # exchange: (old end − old start) + (new end − new start), chained
    assert got[2, 1] == pytest.approx((3.0 + (20.0 - 10.0) + 4.0) * mult[2])


def test_rollover_and_negative_consumption():
    e = meter_energy([[999_999.5, 0.25], [10.0, 9.0], [10.0, np.nan]], rollover=1e6)
    assert e[0, 0] == pytest.approx(0.75)
    assert np.isnan(e[1, 0])  # went backwards: a fault, never a negative term
    assert np.isnan(e[2, 0])


def _area(supply_fwd, cust_fwd, **kw):
    fwd = np.array([[0.0, supply_fwd]] + [[0.0, c] for c in cust_fwd])
    role = [ROLE_SUPPLY] + [ROLE_CUSTOMER] * len(cust_fwd)
    return line_loss(fwd, area=np.zeros(len(role), dtype=int), role=role, **kw)


def test_states_and_precedence():
    assert STATES[_area(100, [50, 45]).state[0, 0]] == "qualified"
    assert STATES[_area(100, [50, 35]).state[0, 0]] == "high_loss"
    assert STATES[_area(100, [60, 45]).state[0, 0]] == "negative_loss"
    low = _area(10, [5, 6])  # negative and below 20 kWh: low energy wins
    assert STATES[low.state[0, 0]] == "low_energy"
    assert low.rate[0, 0] == pytest.approx(-10.0)
    nc = _area(10, [5, np.nan])  # missing customer term, low energy: not computable wins
    assert STATES[nc.state[0, 0]] == "not_computable"
    assert np.isnan(nc.rate[0, 0]) and np.isnan(nc.sales_kwh[0, 0])
    assert nc.coverage[0, 0] == pytest.approx(50.0)
    # rate is unrounded
    r = _area(300, [100, 100]).rate[0, 0]
    assert r == pytest.approx(100 / 3)


def test_missing_term_is_never_zero_and_estimates_count():
    fwd = np.array([[0.0, 1000.0], [0.0, 480.0], [0.0, 500.0]])
    est = np.zeros_like(fwd, dtype=bool)
    est[2, 1] = True  # VEE estimated customer 2's end register
    args = {"area": [0, 0, 0], "role": [1, 0, 0]}
    r = line_loss(fwd, forward_estimated=est, **args)
    assert r.coverage[0, 0] == 100.0
    assert r.estimated_share[0, 0] == pytest.approx(100 * 500 / 980)
    assert STATES[r.state[0, 0]] == "not_computable"  # 51 % > 5 %
    r = line_loss(fwd, forward_estimated=est, thresholds=LossThresholds(estimated_max=60), **args)
    assert STATES[r.state[0, 0]] == "qualified"
    assert r.rate[0, 0] == pytest.approx(2.0)
    fwd[2, 1] = np.nan
    r = line_loss(fwd, thresholds=LossThresholds(coverage_min=50.0), **args)
    assert STATES[r.state[0, 0]] == "not_computable"  # sales unknown: never summed as zero
    # a supply meter term that is missing, or only estimated, makes the day not computable
    fwd = np.array([[0.0, np.nan], [0.0, 480.0]])
    assert STATES[line_loss(fwd, area=[0, 0], role=[1, 0]).state[0, 0]] == "not_computable"
    fwd = np.array([[0.0, 500.0], [0.0, 480.0]])
    est = np.array([[False, True], [False, False]])
    r = line_loss(fwd, area=[0, 0], role=[1, 0], forward_estimated=est)
    assert STATES[r.state[0, 0]] == "not_computable"
    # an area without a supply meter
    r = line_loss(fwd, area=[0, 1], role=[1, 0])
    assert STATES[r.state[1, 0]] == "not_computable"


def test_pv_terms_enter_supply_and_sales():
    # supply meter 100 fwd, 5 rev; customer A 90 fwd (one-way); customer B 10 fwd 20 rev
    fwd = np.array([[0.0, 100.0], [0.0, 90.0], [0.0, 10.0]])
    rev = np.array([[0.0, 5.0], [0.0, 999.0], [0.0, 20.0]])  # row 1 is ignored: not bidi
    r = line_loss(fwd, reverse=rev, area=[0, 0, 0], role=[1, 0, 0], bidirectional=[1, 0, 1])
    assert r.supply_kwh[0, 0] == pytest.approx(120.0)  # 100 + 20
    assert r.sales_kwh[0, 0] == pytest.approx(105.0)  # 90 + 10 + 5
    assert r.rate[0, 0] == pytest.approx(12.5)
    # missing PV export term: the day is not computable, not a negative-loss day
    rev[2, 1] = np.nan
    r = line_loss(fwd, reverse=rev, area=[0, 0, 0], role=[1, 0, 0], bidirectional=[1, 0, 1],
                  thresholds=LossThresholds(coverage_min=0.0))  # fmt: skip
    assert STATES[r.state[0, 0]] == "not_computable" and np.isnan(r.supply_kwh[0, 0])


def test_month_from_month_start_registers_and_per_area_band():
    # two areas, three month-start columns = two months
    fwd = np.array(
        [[0, 1000, 2200], [0, 920, 2000], [0, 1000, 2000], [0, 1000, 2060.0]], dtype=float
    )
    th = LossThresholds(band_lo=[0.0, -2.0], band_hi=[10.0, 5.0], low_energy_kwh=600.0)
    r = line_loss(fwd, area=[0, 0, 1, 1], role=[1, 0, 1, 0], thresholds=th)
    rep = r.to_report(["A001", "A002"], ["2026-01", "2026-02"]).to_dict()
    states = [(row["area"], row["date"], row["state"]) for row in rep["areas"]]
    assert states == [
        ("A001", "2026-01", "qualified"),
        ("A001", "2026-02", "qualified"),
        ("A002", "2026-01", "qualified"),
        ("A002", "2026-02", "negative_loss"),
    ]
    assert set(rep["areas"][0]) == {
        "area", "date", "supply_kwh", "sales_kwh", "loss_kwh", "rate", "state", "coverage",
        "estimated_share",
    }  # fmt: skip


def test_edge_cases_and_validation():
    r = line_loss(np.empty((0, 2)), area=np.empty(0, int), role=np.empty(0, int), n_areas=2)
    assert r.state.shape == (2, 1) and (r.state == 3).all()
    with pytest.raises(ValueError, match="two boundary"):
        line_loss(np.zeros((1, 1)), area=[0], role=[1])
    with pytest.raises(ValueError, match="reverse"):
        line_loss(np.zeros((1, 2)), area=[0], role=[1], bidirectional=True)
    with pytest.raises(ValueError, match="role"):
        line_loss(np.zeros((1, 2)), area=[0], role=[2])
    with pytest.raises(TypeError):
        line_loss(np.array([["a", "b"]]), area=[0], role=[1])
    with pytest.raises(ValueError, match="shape"):
        line_loss(np.zeros((2, 2)), area=[0], role=[1, 0])
