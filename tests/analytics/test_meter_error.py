"""Per-meter error estimation: kernels against references, accuracy on synthetic areas."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import numpy.testing as npt
import pytest

from analytics.meter_error import (
    FitSettings,
    SuspectSettings,
    fit_meter_errors,
    rank_suspects,
    track_meter_errors,
)
from tests.analytics import naive
from tests.analytics.synth import make_area

START = datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=8)))


def _random_problem(seed, n=8, t=400):
    rng = np.random.default_rng(seed)
    e = rng.gamma(2.0, 0.2, (n, t))
    theta = 1.0 / (1.0 + rng.normal(0, 0.02, n))
    z = e.sum(0) ** 2
    y = theta @ e + 0.05 + 0.002 * z + rng.normal(0, 0.01, t)
    return y, e, z, theta


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("ridge", [0.0, 1e-3, 0.1])
def test_ridge_fit_matches_reference(seed, ridge):
    y, e, z, _ = _random_problem(seed)
    fit = fit_meter_errors(y, e, z=z, settings=FitSettings(ridge=ridge))
    want = naive.ridge_fit(y, e, z, ridge)
    npt.assert_allclose(fit.theta, want[:-2], rtol=1e-8)
    npt.assert_allclose([fit.fixed_loss, fit.load_loss], want[-2:], rtol=1e-6, atol=1e-10)
    npt.assert_allclose(fit.error, 1 / want[:-2] - 1, rtol=1e-6, atol=1e-12)
    resid = y - want[:-2] @ e - want[-2] - want[-1] * z
    npt.assert_allclose(fit.residual, resid, rtol=1e-6, atol=1e-9)


def test_uncertainty_matches_ols_covariance():
    y, e, z, _ = _random_problem(11, t=2000)
    fit = fit_meter_errors(y, e, z=z, settings=FitSettings(ridge=0.0))
    x = np.vstack([e, np.ones_like(y), z]).T
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    s2 = ((y - x @ beta) ** 2).sum() / (x.shape[0] - x.shape[1])
    var = np.diag(np.linalg.inv(x.T @ x)) * s2
    npt.assert_allclose(fit.uncertainty, np.sqrt(var[:-2]) / beta[:-2] ** 2, rtol=1e-5)


@pytest.mark.parametrize("seed", range(3))
def test_rls_matches_reference(seed):
    y, e, z, theta = _random_problem(seed, n=5, t=300)
    track = track_meter_errors(y, e, z=z, forgetting=0.995, every=10)
    x = np.vstack([e, np.ones_like(y), z]).T
    path = naive.rls(x, y, 0.995, 1e3, np.r_[np.ones(5), 0.0, 0.0])
    npt.assert_allclose(track.theta, path[9::10, :5], rtol=1e-7)
    npt.assert_array_equal(track.slots, np.arange(10, 301, 10))
    # it converges on the truth
    npt.assert_allclose(track.theta[-1], theta, atol=0.02)


def test_rls_follows_a_step():
    y, e, z, theta = _random_problem(4, n=5, t=3000)
    y = y + np.where(np.arange(3000) >= 1500, 0.2 * e[2], 0.0)  # meter 2 loses 1/6 from 1500
    track = track_meter_errors(y, e, z=z, forgetting=0.995, every=100)
    assert track.theta[13, 2] == pytest.approx(theta[2], abs=0.03)
    assert track.theta[-1, 2] == pytest.approx(theta[2] + 0.2, abs=0.03)
    assert np.isfinite(track.uncertainty).all()


def test_meters_and_slots_left_out():
    y, e, z, _ = _random_problem(1, n=6, t=600)
    e = np.vstack([e, np.zeros((1, 600)), np.full((1, 600), 0.001)])  # all-zero, light load
    y = y + e[7]  # the light meter's energy is in the supply
    e[0, 10:20] = np.nan
    y[30] = np.nan
    fit = fit_meter_errors(y, e, z=z)
    assert not fit.in_fit[6] and np.isnan(fit.error[6])
    assert fit.light_load[7] and not fit.in_fit[7]
    assert fit.n_slots == 600 - 11 and not fit.slot_used[10] and not fit.slot_used[30]
    ref = naive.ridge_fit(
        np.delete(y - e[7], [*range(10, 20), 30]),
        np.delete(e[:6], [*range(10, 20), 30], axis=1),
        np.delete(z, [*range(10, 20), 30]),
        FitSettings().ridge,
    )
    npt.assert_allclose(fit.theta[:6], ref[:6], rtol=1e-8)
    # too few slots: no fit rather than a wild one
    short = fit_meter_errors(y[:20], e[:, :20])
    assert not short.in_fit.any() and np.isnan(short.error).all()
    with pytest.raises(ValueError, match="shape"):
        fit_meter_errors(y[:10], e)


def _rank(area, fit_slots=None, **kw):
    fit = fit_meter_errors(area.supply, area.customers, fit_slots=fit_slots)
    n = area.customers.shape[0]
    ids = [f"{i:012d}" for i in range(n)]
    rep = rank_suspects(fit, area_id="A", meter_ids=ids, customers=area.customers,
                        supply_meter_id="S", start=START, **kw)  # fmt: skip
    return fit, rep


def test_accuracy_on_synthetic_areas():
    """The accuracy goals: MAE of ε, out-of-class precision/recall, theft, clean areas."""
    alert = SuspectSettings().alert
    abs_err = []
    tp = fp = fn = 0
    theft_top3 = theft_n = 0
    clean_ok = clean_n = 0
    for seed in range(100):
        kind = seed % 10
        if kind < 4:  # clean
            area = make_area(seed)
        elif kind < 7:  # two or three out-of-class meters
            area = make_area(seed, n_out_of_class=2 + seed % 2)
        else:  # theft, from the start or from a day in the first half
            area = make_area(seed, theft=True, theft_from_start=seed % 2 == 0)
        fit, rep = _rank(area)
        fitted = fit.in_fit & (np.arange(area.eps.size) != area.theft)
        abs_err.append(np.abs(fit.error[fitted] - area.eps[fitted]))
        ranked = [int(s.meter) for s in rep.suspects]
        flagged = {int(s.meter) for s in rep.suspects if s.score >= alert}
        if kind < 7:
            truth = set(np.flatnonzero(area.out_of_class).tolist())
            tp += len(flagged & truth)
            fp += len(flagged - truth)
            fn += len(truth - flagged)
        if kind < 4:
            clean_n += 1
            clean_ok += not flagged
        if kind >= 7:
            theft_n += 1
            theft_top3 += area.theft in ranked[:3]
    mae = float(np.concatenate(abs_err).mean())
    precision = tp / max(tp + fp, 1)
    recall = tp / max(tp + fn, 1)
    print(f"MAE {100 * mae:.3f} pp, precision {precision:.3f}, recall {recall:.3f}, "
          f"theft top-3 {theft_top3}/{theft_n}, clean {clean_ok}/{clean_n}")  # fmt: skip
    assert mae <= 0.003
    assert precision >= 0.9 and recall >= 0.9
    assert theft_top3 >= 0.8 * theft_n
    assert clean_ok >= 0.95 * clean_n


def test_theft_is_dated_and_named():
    area = make_area(7, theft=True, theft_from_start=False)
    _, rep = _rank(area)
    top = rep.suspects[0]
    assert int(top.meter) == area.theft and top.kind == "theft"
    assert top.error_estimate < -0.02
    # dated to the slot: within an hour of the true start
    since = datetime.fromisoformat(top.since)
    assert abs(since - (START + timedelta(days=area.theft_start_day))) <= timedelta(hours=1)


def test_kinds_reversed_wrong_area_stopped():
    area = make_area(21)
    e = area.customers.copy()
    y = area.supply.copy()
    rng = np.random.default_rng(5)
    order = np.argsort(-np.nanmean(e, axis=1))
    rev_i, wrong_i, stop_i = (int(i) for i in order[:3])
    e[rev_i] = -e[rev_i]  # wired backwards: registers the flow the other way round
    # a customer of the neighbouring area filed here: its load is not in this supply
    e[wrong_i] = np.round(rng.gamma(2.0, 0.08, e.shape[1]), 3)
    y = y - area.customers[wrong_i]
    e[stop_i, 20 * 96 :] = 0.0  # stopped on day 20; its load still flows
    area2 = type(area)(y, e, *list(area.__dict__.values())[2:])
    _, rep = _rank(area2)
    kinds = {int(s.meter): s for s in rep.suspects}
    assert kinds[rev_i].kind == "reversed_meter"
    assert kinds[wrong_i].kind == "wrong_area"
    assert kinds[stop_i].kind == "stopped_meter"
    assert kinds[stop_i].since == (START + timedelta(days=20)).isoformat()
    assert {rev_i, wrong_i, stop_i} == {int(s.meter) for s in rep.suspects[:3]}
    assert all(s.score >= 1.0 for s in rep.suspects[:3])


def test_supply_ratio_and_pv_export_missing():
    area = make_area(33)
    scaled = type(area)(area.supply * 1.5, *list(area.__dict__.values())[1:])
    _, rep = _rank(scaled)
    top = rep.suspects[0]
    assert (top.kind, top.meter) == ("supply_ratio", "S")
    assert top.error_estimate == pytest.approx(0.5, abs=0.01)
    assert rep.alerts(1.0).suspects == [top]  # customers judged against the common factor
    # PV export of customer 0 feeds neighbours at midday, but its export is not collected
    t = np.arange(area.supply.size)
    hour = (t % 96) / 4
    pv = np.clip(np.sin((hour - 6) / 12 * np.pi), 0, None) * 1.2
    pv_area = type(area)(area.supply - pv, *list(area.__dict__.values())[1:])
    missing = np.zeros(area.customers.shape[0], dtype=bool)
    missing[0] = True
    night = (hour < 6) | (hour >= 18)  # export uncollected: fit on the dark hours only
    _, rep = _rank(pv_area, fit_slots=night, export_missing=missing)
    assert rep.suspects[0].kind == "pv_export_missing" and rep.suspects[0].meter == f"{0:012d}"


def test_suspect_json_shape():
    _, rep = _rank(make_area(3, n_out_of_class=2))
    doc = rep.alerts(SuspectSettings().alert).to_dict()
    assert doc["suspects"], "out-of-class meters are alerts"
    row = doc["suspects"][0]
    assert list(row) == ["area", "meter", "kind", "score", "error_estimate", "uncertainty",
                         "since", "evidence"]  # fmt: skip
    scores = [s["score"] for s in doc["suspects"]]
    assert scores == sorted(scores, reverse=True)
