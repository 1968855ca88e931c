"""Register rounding, steps inside the window and the data-sufficiency guard of the fit."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import numpy.testing as npt
import pytest

from analytics import _fit_kernels as k
from analytics.meter_error import FitSettings, data_sufficiency, fit_meter_errors, merge_spans
from tests.analytics.synth import make_area


def _tridiag(new_run: np.ndarray, a: float, b: float) -> np.ndarray:
    n = new_run.size
    cov = np.eye(n) * a
    for t in range(1, n):
        if not new_run[t]:
            cov[t, t - 1] = cov[t - 1, t] = b
    return cov


@pytest.mark.parametrize("seed", range(4))
def test_ma1_whitening_matches_numpy_cholesky(seed):
    rng = np.random.default_rng(seed)
    n = 60
    new_run = rng.random(n) < 0.1
    new_run[0] = True
    kappa = float(rng.uniform(0.1, 1000.0))
    a, b = 1.0 + 2.0 * kappa, -kappa
    sub, diag = np.empty(n), np.empty(n)
    k._ma1_factor(new_run, a, b, sub, diag)
    chol = np.linalg.cholesky(_tridiag(new_run, a, b))
    npt.assert_allclose(diag, np.diag(chol), rtol=1e-10)
    npt.assert_allclose(sub[1:], np.diag(chol, -1), rtol=1e-10, atol=1e-12)
    x = rng.normal(size=(3, n))
    y = rng.normal(size=n)
    xw, yw = x.copy(), y.copy()
    k._whiten(xw, yw, sub, diag)
    npt.assert_allclose(yw, np.linalg.solve(chol, y), rtol=1e-8, atol=1e-10)
    npt.assert_allclose(xw, np.linalg.solve(chol, x.T).T, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("kappa", [0.0, 0.3, 50.0, 30000.0])
def test_step_scores_match_numpy(kappa):
    rng = np.random.default_rng(3)
    n = 80
    new_run = np.zeros(n, dtype=bool)
    new_run[[0, 33, 34]] = True
    sub, diag = np.empty(n), np.empty(n)
    if kappa > 0.0:
        k._ma1_factor(new_run, 1.0 + 2.0 * kappa, -kappa, sub, diag)
    else:
        sub[:], diag[:] = 0.0, 1.0
    chol = np.linalg.cholesky(_tridiag(new_run, 1.0 + 2.0 * kappa, -kappa))
    x = rng.gamma(2.0, 0.1, n)
    r = rng.normal(size=n)
    xw = np.linalg.solve(chol, x)
    cand = np.array([0, 1, 5, 33, 34, 35, 70, 79], dtype=np.int64)
    num, cc, cx = np.empty(8), np.empty(8), np.empty(8)
    k._step_scores(xw, r, sub, diag, cand, num, cc, cx)
    for j, k0 in enumerate(cand):
        c = np.where(np.arange(n) >= k0, x, 0.0)
        cw = np.linalg.solve(chol, c)
        npt.assert_allclose([num[j], cc[j], cx[j]], [cw @ r, cw @ cw, cw @ xw], rtol=1e-8,
                            atol=1e-12)


def _telescoped(values: np.ndarray, resolution: float, rng) -> np.ndarray:
    """Interval energy as differences of registers shown to ``resolution``."""
    start = rng.uniform(0, 1000, values.shape[:-1])[..., None]
    reg = start + np.concatenate([np.zeros((*values.shape[:-1], 1)),
                                  np.cumsum(values, axis=-1)], axis=-1)
    shown = np.floor(reg / resolution) * resolution
    return np.diff(shown, axis=-1)


def test_register_rounding_is_modelled():
    """A supply register at 0.01 kWh behind a CT of 40: differences carry ±0.4 kWh of
    telescoping rounding per slot. The fit recognises the structure and, by generalised
    least squares, gets several times closer than the ordinary fit; its uncertainty stays
    honest."""
    area = make_area(5, n_meters=30, missing_rate=0.0)
    rng = np.random.default_rng(5)
    ct = 40.0
    true_supply = area.supply  # already at 0.01 kWh primary: fine next to 0.4 kWh steps
    supply = _telescoped(true_supply[None, :] / ct, 0.01, rng)[0] * ct
    customers = _telescoped(np.nan_to_num(area.customers), 0.01, rng)
    fitted = ~area.light
    plain = fit_meter_errors(supply, customers, settings=FitSettings(quantisation=False,
                                                                     max_steps=0))
    gls = fit_meter_errors(supply, customers, settings=FitSettings(max_steps=0))
    assert gls.quantisation_ratio > 100
    err_plain = np.abs(plain.error - area.eps)[fitted].mean()
    err_gls = np.abs(gls.error - area.eps)[fitted].mean()
    assert err_gls < err_plain / 3, (err_gls, err_plain)
    z = np.abs(gls.error - area.eps)[fitted] / gls.uncertainty[fitted]
    assert np.median(z) < 1.2 and z.max() < 4.5
    # with high-resolution data the white model is kept and the fit is the ordinary one
    hi = fit_meter_errors(area.supply, area.customers, settings=FitSettings(max_steps=0))
    assert hi.quantisation_ratio == 0.0


def test_a_step_inside_the_window_is_fitted_and_dated():
    area = make_area(12, n_meters=30)
    e = area.customers.copy()
    y = area.supply.copy()
    i = int(np.flatnonzero(~area.light)[4])
    s0 = 17 * 96 + 37  # the meter starts reading 8 % fast at 09:15 on day 17
    y_true = y
    e[i, s0:] *= 1.08
    fit = fit_meter_errors(y_true, e)
    assert np.flatnonzero(fit.step_slot >= 0).tolist() == [i]
    assert abs(int(fit.step_slot[i]) - s0) <= 4
    want_after = (1 + area.eps[i]) * 1.08 - 1
    assert abs(fit.error[i] - want_after) <= max(3 * fit.uncertainty[i], 0.002)
    assert abs(fit.error[i] - want_after) < 0.01
    assert fit.error_before[i] == pytest.approx(area.eps[i], abs=0.005)
    others = np.flatnonzero(~area.light & (np.arange(30) != i))
    assert np.abs(fit.error[others] - area.eps[others]).mean() < 0.002
    # without steps the meter's estimate is a blend of the two regimes
    static = fit_meter_errors(y_true, e, settings=FitSettings(max_steps=0))
    assert abs(static.error[i] - want_after) > 0.02


def test_clean_area_gets_no_step():
    area = make_area(8)
    fit = fit_meter_errors(area.supply, area.customers)
    assert not (fit.step_slot >= 0).any()


def test_one_day_is_insufficient_data():
    area = make_area(2, n_meters=25, days=1)
    fit = fit_meter_errors(area.supply, area.customers)
    assert not fit.in_fit.any()
    why = data_sufficiency(fit, area.supply.size)
    assert why is not None and "insufficient data" in why
    week = make_area(2, n_meters=25, days=7)
    fit = fit_meter_errors(week.supply, week.customers)
    assert data_sufficiency(fit, week.supply.size) is None
    assert np.nanmax(np.abs(fit.error - week.eps)) < 0.02
    # loads that do not vary independently: every customer the same shape
    flat = np.tile(week.customers[:1], (25, 1)) * np.linspace(0.5, 1.5, 25)[:, None]
    flat_fit = fit_meter_errors(np.nansum(flat, 0) + 0.05, flat)
    assert data_sufficiency(flat_fit, week.supply.size) is not None


def test_merge_spans_joins_every_row_over_a_bridged_gap():
    nan = np.nan
    values = np.array([[1.0, nan, 5.0, 1.0, 1.0, 2.0],    # slots 1-2 bridged: 5 = 2 + 3
                       [1.0, 2.0, 3.0, nan, 2.0, 2.0],    # slots 3-4 bridged
                       [1.0, 1.0, 1.0, 1.0, nan, 1.0]])   # slot 4 unknown: its group drops
    covers = np.array([[1, 0, 2, 1, 1, 1],
                       [1, 1, 1, 0, 2, 1],
                       [1, 1, 1, 1, 1, 1]])
    merged, length = merge_spans(values, covers)
    npt.assert_array_equal(length, [1, 0, 2, 0, 2, 1])
    npt.assert_array_equal(merged[:, 0], [1.0, 1.0, 1.0])
    npt.assert_array_equal(merged[:, 2], [5.0, 5.0, 2.0])
    assert np.isnan(merged[:, 4]).tolist() == [False, False, True]
    npt.assert_array_equal(merged[:2, 4], [2.0, 2.0])
    assert np.isnan(merged[:, [1, 3]]).all()
    same, ones = merge_spans(values[2:], covers[2:])
    npt.assert_array_equal(ones, np.ones(6))
    npt.assert_array_equal(same, values[2:])


def test_bridged_gaps_keep_the_rounding_model():
    """Missing register readings of customers: with the gaps bridged by register differences
    the fit stays close to the complete-data fit; dropping the slots loses most of it."""
    area = make_area(6, n_meters=30, missing_rate=0.0)
    rng = np.random.default_rng(6)
    ct = 40.0
    supply = _telescoped(area.supply[None, :] / ct, 0.01, rng)[0] * ct
    reg = np.floor((rng.uniform(0, 1000, (30, 1)) + np.concatenate(
        [np.zeros((30, 1)), np.cumsum(area.customers, axis=1)], axis=1)) / 0.01) * 0.01
    have = rng.random(reg.shape) > 0.003  # register readings missing at slot ends
    have[:, 0] = have[:, -1] = True
    t = area.supply.size
    values = np.full((30, t), np.nan)
    covers = np.ones((30, t), dtype=np.int64)
    dropped = np.full((30, t), np.nan)
    for i in range(30):
        b = np.flatnonzero(have[i])
        for b1, b2 in pairwise(b.tolist()):
            values[i, b2 - 1] = reg[i, b2] - reg[i, b1]
            covers[i, b1 : b2 - 1] = 0
            covers[i, b2 - 1] = b2 - b1
            if b2 - b1 == 1:
                dropped[i, b1] = reg[i, b2] - reg[i, b1]
    merged, length = merge_spans(np.vstack([supply, values]),
                                 np.vstack([np.ones((1, t), np.int64), covers]))
    cfg = FitSettings(max_steps=0)
    bridged = fit_meter_errors(merged[0], merged[1:], slot_length=length, settings=cfg)
    plain = fit_meter_errors(supply, dropped, settings=cfg)
    fitted = ~area.light
    err_b = np.abs(bridged.error - area.eps)[fitted].mean()
    err_p = np.abs(plain.error - area.eps)[fitted].mean()
    assert err_b < err_p / 1.5, (err_b, err_p)


@pytest.mark.parametrize("kappa", [0.0, 30.0])
def test_step_scan_matches_numpy(kappa):
    rng = np.random.default_rng(11)
    n, p = 90, 4
    new_run = np.zeros(n, dtype=bool)
    new_run[[0, 40]] = True
    sub, diag = np.empty(n), np.empty(n)
    if kappa > 0.0:
        k._ma1_factor(new_run, 1.0 + 2.0 * kappa, -kappa, sub, diag)
    else:
        sub[:], diag[:] = 0.0, 1.0
    chol = np.linalg.cholesky(_tridiag(new_run, 1.0 + 2.0 * kappa, -kappa))
    x = rng.gamma(2.0, 0.1, (p, n))
    x[2] = 0.0  # a row without information
    xw = np.ascontiguousarray(np.linalg.solve(chol, x.T).T)
    r = rng.normal(size=n)
    rows = np.array([0, 2, 3], dtype=np.int64)
    cand = np.array([60, 10, 41, 40], dtype=np.int64)
    z2 = np.empty((3, 4))
    ok = np.empty(3, dtype=bool)
    k._step_scan(xw, r, sub, diag, rows, cand, 0.7, z2, ok)
    npt.assert_array_equal(ok, [True, False, True])
    npt.assert_array_equal(z2[1], 0.0)
    for m in (0, 2):
        xr = xw[rows[m]]
        for j, k0 in enumerate(cand):
            cw = np.linalg.solve(chol, np.where(np.arange(n) >= k0, x[rows[m]], 0.0))
            part = cw @ cw - (cw @ xr) ** 2 / (xr @ xr)
            npt.assert_allclose(z2[m, j], (cw @ r) ** 2 / (0.7 * part), rtol=1e-7)


def test_lag1_autocorr_matches_numpy():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 50))
    y = rng.normal(size=50)
    beta = rng.normal(size=3)
    new_run = np.zeros(50, dtype=bool)
    new_run[[0, 20]] = True
    r = y - beta @ x
    lag = sum(r[t] * r[t - 1] for t in range(1, 50) if not new_run[t])
    assert k._lag1_autocorr(y, x, beta, new_run) == pytest.approx(lag / (r @ r), rel=1e-12)
    assert k._lag1_autocorr(np.zeros(50), np.zeros((3, 50)), beta, new_run) == 0.0


def test_gram_rowcol_equals_a_full_gram():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(5, 70))
    y = rng.normal(size=70)
    xtx, xty = np.empty((5, 5)), np.empty(5)
    k._gram(x, y, xtx, xty)
    x[3] = rng.normal(size=70)
    k._gram_rowcol(x, y, xtx, xty, 3)
    full, full_y = np.empty((5, 5)), np.empty(5)
    k._gram(x, y, full, full_y)
    npt.assert_array_equal(xtx, full)
    npt.assert_array_equal(xty, full_y)
    npt.assert_allclose(full, x @ x.T, rtol=1e-12)


def test_flow_total_matches_numpy():
    rng = np.random.default_rng(6)
    e = rng.gamma(2.0, 0.1, (4, 30))
    e[1, 5] = np.nan
    w = rng.uniform(0.9, 1.1, 4)
    w_after = w.copy()
    w_after[2] = 1.2
    first = np.array([30, 30, 12, 30], dtype=np.int64)
    total = np.empty(30)
    k._flow_total(e, w, w_after, first, total)
    c = np.where(np.arange(30) >= first[:, None], w_after[:, None], w[:, None])
    npt.assert_allclose(total, (np.nan_to_num(e) * c).sum(axis=0), rtol=1e-13)


def test_gram_patch_matches_numpy():
    rng = np.random.default_rng(8)
    xw = rng.normal(size=(4, 40))
    yw = rng.normal(size=40)
    xtx0, xty0 = np.empty((4, 4)), np.empty(4)
    k._gram(xw, yw, xtx0, xty0)
    vecs = rng.normal(size=(2, 40))
    src = np.array([0, -1, 2, -2, 3], dtype=np.int64)  # row 1 replaced, one row added
    xtx, xty = np.empty((5, 5)), np.empty(5)
    k._gram_patch(xw, yw, xtx0, xty0, src, vecs, xtx, xty)
    x = np.vstack([xw[0], vecs[0], xw[2], vecs[1], xw[3]])
    npt.assert_allclose(xtx, x @ x.T, rtol=1e-12)
    npt.assert_allclose(xty, x @ yw, rtol=1e-12)


def test_ridge_solve_without_variances_gives_the_same_s2():
    rng = np.random.default_rng(9)
    x = rng.gamma(2.0, 0.2, (5, 200))
    y = np.ones(5) @ x + rng.normal(0, 0.01, 200)
    xtx, xty = np.empty((5, 5)), np.empty(5)
    yty = k._gram(x, y, xtx, xty)
    beta, var = np.empty(5), np.empty(5)
    s2 = k._ridge_solve(xtx, xty, yty, 200, 3, 1e-4, beta, var)
    beta2 = np.empty(5)
    assert k._ridge_solve(xtx, xty, yty, 200, 3, 1e-4, beta2, np.empty(0)) == s2
    npt.assert_array_equal(beta2, beta)
