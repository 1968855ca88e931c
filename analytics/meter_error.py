"""Per-meter error from the area balance, and the suspect ranking built on it.

Model (DOMAIN.md): over the slots t of a window,
``supply_t = Σ_i θ_i · E_i,t + c + q · z_t`` with ``E_i,t`` what customer meter i registered,
``θ_i = 1 / (1 + ε_i)``, ``c`` a fixed loss and ``z_t`` a load-squared proxy for technical
loss. There is no loss term proportional to supply: it is collinear with "all meters read
high".

Array conventions for one area: ``supply`` (slots,) primary energy of the supply meter per
slot; ``customers`` (meters, slots) primary energy per customer per slot (for bidirectional
customers forward − reverse), NaN missing. Meters whose energy is all zero (or all missing) are
left out of the fit; light-load meters are taken at θ = 1 (their energy is subtracted from the
supply) rather than fitted; slots with any missing value are dropped, never imputed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from analytics import _fit_kernels as k
from analytics._checks import as_bool, as_float, per_meter, same_shape

__all__ = [
    "KINDS",
    "BalanceFit",
    "ErrorTrack",
    "FitSettings",
    "Suspect",
    "SuspectReport",
    "SuspectSettings",
    "fit_meter_errors",
    "rank_suspects",
    "track_meter_errors",
]

#: Suspect kinds of CONTRACTS.md.
KINDS = (
    "meter_error",
    "stopped_meter",
    "reversed_meter",
    "theft",
    "wrong_area",
    "pv_export_missing",
    "supply_ratio",
)


@dataclass(frozen=True)
class FitSettings:
    """Settings of the balance fit.

    Attributes:
        ridge: penalty towards θ = 1, relative to each meter's own information (XᵀX)_ii.
        light_load_fraction: a meter whose mean energy is below this fraction of the median
            meter's is light-load: taken at θ = 1, not fitted.
        min_slots_per_unknown: fewer usable slots than this × unknowns gives no fit.
    """

    ridge: float = 1e-4
    light_load_fraction: float = 0.05
    min_slots_per_unknown: float = 3.0


@dataclass(frozen=True)
class BalanceFit:
    """Result of one area's balance fit (arrays per customer meter unless noted).

    Attributes:
        theta: fitted θ, NaN outside the fit.
        error: ε = 1/θ − 1 as a fraction, NaN outside the fit.
        uncertainty: one standard deviation of ε (delta method from the covariance).
        in_fit: meters with a fitted coefficient.
        light_load: meters taken at θ = 1.
        fixed_loss: c, energy per slot.
        load_loss: q, coefficient of z.
        residual_std: standard deviation of the residual per slot.
        n_slots: slots used.
        slot_used: (slots,) bool.
        residual: (slots,) supply − fitted on every complete slot (also those outside
            ``fit_slots``), NaN elsewhere.
    """

    theta: NDArray[np.float64]
    error: NDArray[np.float64]
    uncertainty: NDArray[np.float64]
    in_fit: NDArray[np.bool_]
    light_load: NDArray[np.bool_]
    fixed_loss: float
    load_loss: float
    residual_std: float
    n_slots: int
    slot_used: NDArray[np.bool_]
    residual: NDArray[np.float64]


def _prepare(
    supply: ArrayLike,
    customers: ArrayLike,
    z: ArrayLike | None,
    cfg: FitSettings,
    fit_slots: ArrayLike | None = None,
) -> tuple[Any, ...]:
    y = as_float("supply", supply, 1)
    e = as_float("customers", customers, 2)
    n, t = e.shape
    same_shape("supply", y, (t,))
    absum = np.empty(n)
    n_fin = np.empty(n, dtype=np.int64)
    k._meter_stats(e, absum, n_fin)
    active = (n_fin > 0) & (absum > 0)
    mean = np.where(active, absum / np.maximum(n_fin, 1), 0.0)
    ref = float(np.median(mean[active])) if active.any() else 0.0
    light = active & (mean < cfg.light_load_fraction * ref)
    use = active & ~light
    fixed = light
    slot_ok = np.empty(t, dtype=np.bool_)
    total = np.empty(t)
    k._slot_mask(y, e, use | fixed, slot_ok, total)
    if z is None:
        zz = total * total
    else:
        zz = as_float("z", z, 1)
        same_shape("z", zz, (t,))
        slot_ok &= np.isfinite(zz)
    complete = slot_ok.copy()
    if fit_slots is not None:
        allowed = as_bool("fit_slots", fit_slots, 1)
        same_shape("fit_slots", allowed, (t,))
        slot_ok &= allowed
    return y, e, np.ascontiguousarray(zz), use, fixed, slot_ok, complete


def fit_meter_errors(
    supply: ArrayLike,
    customers: ArrayLike,
    *,
    z: ArrayLike | None = None,
    fit_slots: ArrayLike | None = None,
    settings: FitSettings | None = None,
) -> BalanceFit:
    """Estimate each customer meter's relative error ε from one area's balance.

    Ridge-regularised least squares towards θ = 1, columns scaled to unit norm; the
    uncertainty comes from the diagonal of s² (XᵀX + Λ)⁻¹.

    Args:
        supply: (slots,) supply energy per slot (primary kWh), NaN missing.
        customers: (meters, slots) customers' energy per slot (primary kWh), NaN missing.
        z: (slots,) load-squared proxy; default (Σ_i E_i,t)².
        fit_slots: (slots,) bool, slots allowed in the fit (e.g. no daylight slots in an area
            with bidirectional meters whose export is not collected); the residual is still
            reported on every complete slot.
        settings: fit settings.

    Returns:
        The fit; all-NaN estimates when there are too few usable slots.

    Raises:
        TypeError: wrong dtypes.
        ValueError: shapes that do not match.

    Examples:
        >>> rng = np.random.default_rng(0)
        >>> e = rng.gamma(2.0, 0.1, size=(3, 500))
        >>> fit = fit_meter_errors(e.sum(axis=0) * 1.0 + 0.05, e)
        >>> np.round(fit.error, 6).tolist()
        [0.0, 0.0, 0.0]
    """
    cfg = settings or FitSettings()
    y, e, zz, use, fixed, slot_ok, complete = _prepare(supply, customers, z, cfg, fit_slots)
    n, t = e.shape
    n_use = int(use.sum())
    p = n_use + 2
    n_obs = int(slot_ok.sum())
    theta = np.full(n, np.nan)
    var_theta = np.full(n, np.nan)
    residual = np.full(t, np.nan)
    c = q = s = np.nan
    if n_obs >= cfg.min_slots_per_unknown * p:
        xmat = np.empty((p, n_obs))
        yvec = np.empty(n_obs)
        k._design(y, e, zz, use, fixed, slot_ok, xmat, yvec)
        xtx = np.empty((p, p))
        xty = np.empty(p)
        yty = k._gram(xmat, yvec, xtx, xty)
        beta = np.empty(p)
        var = np.empty(p)
        s2 = k._ridge_solve(xtx, xty, yty, n_obs, n_use, cfg.ridge, beta, var)
        if np.isfinite(s2):
            theta[use] = beta[:n_use]
            var_theta[use] = var[:n_use]
            c, q, s = float(beta[n_use]), float(beta[n_use + 1]), float(np.sqrt(s2))
            if fit_slots is None:  # every complete slot is in the fit: reuse its design
                xall, yall, where = xmat, yvec, slot_ok
            else:
                where = complete
                n_all = int(complete.sum())
                xall = np.empty((p, n_all))
                yall = np.empty(n_all)
                k._design(y, e, zz, use, fixed, complete, xall, yall)
            r_all = np.empty(yall.shape[0])
            k._design_residual(xall, yall, beta, r_all)
            residual[where] = r_all
    with np.errstate(divide="ignore", invalid="ignore"):
        error = 1.0 / theta - 1.0
        unc = np.sqrt(var_theta) / theta**2
    ok = np.isfinite(theta)
    return BalanceFit(
        theta=theta,
        error=error,
        uncertainty=unc,
        in_fit=ok,
        light_load=fixed,
        fixed_loss=c,
        load_loss=q,
        residual_std=s,
        n_slots=n_obs if ok.any() else 0,
        slot_used=slot_ok,
        residual=residual,
    )


@dataclass(frozen=True)
class ErrorTrack:
    """Recursive least squares path of the meter errors.

    Attributes:
        slots: (K,) slot index (exclusive end) after which each row was taken.
        theta: (K, meters) θ path, NaN for meters outside the fit.
        error: (K, meters) ε path.
        uncertainty: (meters,) final standard deviation of ε.
    """

    slots: NDArray[np.int64]
    theta: NDArray[np.float64]
    error: NDArray[np.float64]
    uncertainty: NDArray[np.float64]


def track_meter_errors(
    supply: ArrayLike,
    customers: ArrayLike,
    *,
    forgetting: float = 0.9995,
    every: int = 96,
    z: ArrayLike | None = None,
    settings: FitSettings | None = None,
) -> ErrorTrack:
    """Follow meter errors through time with recursive least squares and forgetting.

    The start is θ = 1; a forgetting factor λ < 1 weights slot t−k by λᵏ, so drift and steps
    (theft from a date, a meter that slows) show in the path. Meters and slots are chosen as in
    :func:`fit_meter_errors`.

    Args:
        supply: (slots,) supply energy per slot.
        customers: (meters, slots) customers' energy per slot.
        forgetting: λ in (0, 1]; memory ≈ 1 / (1 − λ) slots.
        every: keep the estimate after every ``every`` used slots (96: daily at 15 minutes).
        z: load-squared proxy (default (Σ E)²).
        settings: meter selection settings.

    Returns:
        The path and the final uncertainty.

    Raises:
        TypeError: wrong dtypes.
        ValueError: shapes that do not match or a forgetting factor outside (0, 1].
    """
    if not 0.0 < forgetting <= 1.0:
        raise ValueError("forgetting must be in (0, 1]")
    if every <= 0:
        raise ValueError("every must be positive")
    cfg = settings or FitSettings()
    y, e, zz, use, fixed, slot_ok, _ = _prepare(supply, customers, z, cfg)
    n, _ = e.shape
    n_use = int(use.sum())
    p = n_use + 2
    n_obs = int(slot_ok.sum())
    n_out = n_obs // every
    theta_path = np.full((n_out, n), np.nan)
    unc = np.full(n, np.nan)
    used_idx = np.flatnonzero(slot_ok)
    slots = used_idx[np.arange(1, n_out + 1) * every - 1] + 1 if n_out else used_idx[:0]
    if n_obs > p:
        xmat = np.empty((p, n_obs))
        yvec = np.empty(n_obs)
        k._design(y, e, zz, use, fixed, slot_ok, xmat, yvec)
        theta0 = np.zeros(p)
        theta0[:n_use] = 1.0
        traj = np.full((n_out, p), np.nan)
        pm = k._rls(xmat, yvec, forgetting, 1e3, theta0, every, traj)
        theta_path[:, use] = traj[:, :n_use]
        resid = yvec - traj[-1] @ xmat if n_out else yvec
        s2 = float(resid @ resid) / max(n_obs - p, 1)
        # RLS covariance P approximates (Σ λᵏ x xᵀ)⁻¹
        th_last = traj[-1, :n_use] if n_out else np.ones(n_use)
        unc[use] = np.sqrt(np.maximum(np.diag(pm)[:n_use], 0.0) * s2) / th_last**2
    with np.errstate(divide="ignore", invalid="ignore"):
        err = 1.0 / theta_path - 1.0
    return ErrorTrack(np.asarray(slots, dtype=np.int64), theta_path, err, unc)


@dataclass(frozen=True)
class SuspectSettings:
    """Thresholds of the suspect ranking.

    Attributes:
        class_limit: accuracy class as a fraction (class 2: 0.02); |ε| at this limit scores 1.
        alert: score at or above which a meter is reported.
        significance: |ε| / uncertainty needed for a full score.
        theft_min: ε at or below −theft_min is read as unmetered load (theft).
        wrong_area_theta: |θ| below this: the meter's energy is not in this area's supply.
        stop_min_slots: trailing zero slots after load for a stopped meter.
        ratio_min: |median θ − 1| at which the supply meter's ratio is suspect.
        step_min_gain: residual-sum-of-squares drop (in units of s²) that a step in a meter's
            error must give to be dated (``since``).
        midday: (first, last) slot-of-day fraction of the PV window (10:00–15:00).
    """

    class_limit: float = 0.02
    alert: float = 1.0
    significance: float = 4.0
    theft_min: float = 0.08
    wrong_area_theta: float = 0.5
    stop_min_slots: int = 96
    ratio_min: float = 0.05
    step_min_gain: float = 25.0
    midday: tuple[float, float] = (10 / 24, 15 / 24)


@dataclass(frozen=True)
class Suspect:
    """One row of ``analyze suspects --json`` (CONTRACTS.md)."""

    area: str
    meter: str
    kind: str
    score: float
    error_estimate: float | None
    uncertainty: float | None
    since: str | None
    evidence: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of this row."""
        return {
            "area": self.area,
            "meter": self.meter,
            "kind": self.kind,
            "score": self.score,
            "error_estimate": self.error_estimate,
            "uncertainty": self.uncertainty,
            "since": self.since,
            "evidence": dict(self.evidence),
        }


@dataclass(frozen=True)
class SuspectReport:
    """The document of ``analyze suspects --json``: ``{"suspects": [...]}``."""

    suspects: list[Suspect] = field(default_factory=list)

    def alerts(self, threshold: float) -> SuspectReport:
        """Only rows at or above ``threshold`` (the default output without ``--all``)."""
        return SuspectReport([s for s in self.suspects if s.score >= threshold])

    def to_dict(self) -> dict[str, Any]:
        """The JSON document."""
        return {"suspects": [s.to_dict() for s in self.suspects]}


def _f(v: float) -> float | None:
    return None if not np.isfinite(v) else float(v)


def _step_scan(
    residual: NDArray[np.float64], e_i: NDArray[np.float64], theta_i: float, spd: int
) -> tuple[int, float, float, float] | None:
    """Best single step, at a day boundary, in one meter's θ.

    ``u_t = residual_t + (θ_i − 1) · E_i,t`` is what the balance leaves for meter i beyond
    θ = 1; fit ``u = β · E_i`` separately before and after each day boundary.

    Returns:
        (first slot after the step, ε before, ε after, RSS drop vs one β), or None.
    """
    ok = np.isfinite(residual) & np.isfinite(e_i)
    n_days = residual.shape[0] // spd
    if n_days < 4 or ok.sum() < 4 * spd:
        return None
    u = np.where(ok, residual + (theta_i - 1.0) * np.where(ok, e_i, 0.0), 0.0)
    x = np.where(ok, e_i, 0.0)
    ue = (u * x)[: n_days * spd].reshape(n_days, spd).sum(1)
    ee = (x * x)[: n_days * spd].reshape(n_days, spd).sum(1)
    cu, ce = np.cumsum(ue), np.cumsum(ee)
    tot_u, tot_e = cu[-1], ce[-1]
    if tot_e <= 0:
        return None
    best = None
    base = tot_u**2 / tot_e
    for d in range(1, n_days - 1):
        e1, e2 = ce[d - 1], tot_e - ce[d - 1]
        if e1 <= 0 or e2 <= 0:
            continue
        u1, u2 = cu[d - 1], tot_u - cu[d - 1]
        gain = u1**2 / e1 + u2**2 / e2 - base
        if best is None or gain > best[3]:
            best = (d * spd, 1.0 / (1.0 + u1 / e1) - 1.0, 1.0 / (1.0 + u2 / e2) - 1.0, gain)
    return best


def rank_suspects(
    fit: BalanceFit,
    *,
    area_id: str,
    meter_ids: Sequence[str],
    customers: ArrayLike,
    supply_meter_id: str | None = None,
    track: ErrorTrack | None = None,
    export_missing: ArrayLike | None = None,
    slots_per_day: int = 96,
    start: datetime | None = None,
    interval_minutes: float = 15.0,
    settings: SuspectSettings | None = None,
) -> SuspectReport:
    """Rank one area's meters by how suspect they are, one entry per meter.

    Kinds: ``reversed_meter`` (θ < 0: the meter counts against the flow), ``wrong_area``
    (|θ| small: its energy is not in this supply), ``stopped_meter`` (no energy for the last
    ``stop_min_slots`` after having load), ``theft`` (ε ≤ −theft_min: unmetered load behind
    the meter, or a step down in ε from a date found by a change-point scan of the balance),
    ``meter_error`` (|ε| beyond the class), ``pv_export_missing`` (a bidirectional meter
    without export data in an area whose balance goes negative at midday) and
    ``supply_ratio`` (most θ agree on one value far from 1: the supply meter's CT ratio;
    reported against ``supply_meter_id``).

    Score: ``|ε| / class_limit``, reduced when |ε| is under ``significance`` standard
    deviations; stopped and PV findings score the unexplained energy against the meter's load.

    Args:
        fit: the area's balance fit.
        area_id: area id for the rows.
        meter_ids: meter number of each customer row.
        customers: (meters, slots) the energies the fit used.
        supply_meter_id: the supply meter's number (for ``supply_ratio``).
        track: optional RLS track of the same area (its latest ε goes into the evidence).
        export_missing: (meters,) bool, bidirectional meters whose export was not collected.
        slots_per_day: slots per day (midday window, stop length).
        start: aware datetime of slot 0's start, for ``since``.
        interval_minutes: slot length.
        settings: ranking thresholds.

    Returns:
        Every meter ranked (highest score first); ``.alerts(settings.alert)`` keeps the alerts.

    Raises:
        ValueError: lengths that do not match the fit.
    """
    cfg = settings or SuspectSettings()
    e = as_float("customers", customers, 2)
    n = fit.theta.shape[0]
    if len(meter_ids) != n or e.shape[0] != n:
        raise ValueError(f"need {n} meter ids and customer rows")
    exp_miss = per_meter("export_missing", export_missing, n, np.bool_, False)
    if export_missing is not None:
        exp_miss = as_bool("export_missing", exp_miss, 1)
    step = timedelta(minutes=interval_minutes)

    def when(slot: int | None) -> str | None:
        if slot is None or start is None:
            return None
        return (start + slot * step).isoformat()

    theta = fit.theta
    eps = fit.error.copy()
    unc = fit.uncertainty.copy()
    rows: list[Suspect] = []
    in_fit = fit.in_fit
    # supply ratio: most θ agree on one value far from 1
    if in_fit.sum() >= 5:
        med = float(np.median(theta[in_fit]))
        agree = np.mean(np.abs(theta[in_fit] / med - 1.0) < cfg.class_limit)
        if abs(med - 1.0) >= cfg.ratio_min and agree >= 0.5:
            rows.append(
                Suspect(
                    area=area_id,
                    meter=supply_meter_id or "",
                    kind="supply_ratio",
                    score=abs(med - 1.0) / cfg.class_limit,
                    error_estimate=med - 1.0,
                    uncertainty=None,
                    since=None,
                    evidence={"median_theta": med, "agreeing_share": float(agree)},
                )
            )
            # judge customers relative to the common factor
            with np.errstate(divide="ignore", invalid="ignore"):
                eps = med / theta - 1.0
                unc = fit.uncertainty * med
    finite = np.isfinite(e)
    zero = finite & (e == 0.0)
    spd = slots_per_day
    lo = round(cfg.midday[0] * spd)
    hi = round(cfg.midday[1] * spd)
    mid = (np.arange(fit.residual.shape[0]) % spd >= lo) & (
        np.arange(fit.residual.shape[0]) % spd < hi
    )
    r = fit.residual
    r_ok = np.isfinite(r)
    mid_neg = np.nan
    if (r_ok & mid).sum() > 10 and (r_ok & ~mid).sum() > 10 and np.isfinite(fit.residual_std):
        d = np.nanmean(r[mid & r_ok]) - np.nanmean(r[~mid & r_ok])
        se = fit.residual_std * np.sqrt(1 / (r_ok & mid).sum() + 1 / (r_ok & ~mid).sum())
        mid_neg = -d / se if se > 0 else np.nan
    for i in range(n):
        ev: dict[str, Any] = {}
        kind = "meter_error"
        since: int | None = None
        th = theta[i]
        ei = eps[i]
        ui = unc[i]
        score = 0.0
        if np.isfinite(ei):
            sig = abs(ei) / ui if ui > 0 else np.inf
            score = abs(ei) / cfg.class_limit * min(1.0, sig / cfg.significance)
            ev["theta"] = float(th)
            ev["sigma"] = float(sig)
        # trailing zero run after load: stopped
        row_zero = zero[i]
        last_nz = np.flatnonzero(finite[i] & ~row_zero)
        if last_nz.size and last_nz[-1] + 1 + cfg.stop_min_slots <= e.shape[1]:
            tail = slice(last_nz[-1] + 1, e.shape[1])
            if row_zero[tail].sum() >= cfg.stop_min_slots:
                before = np.nanmean(e[i, : last_nz[-1] + 1])
                after_r = np.nanmean(r[tail]) if r_ok[tail].any() else np.nan
                before_r = np.nanmean(r[: last_nz[-1] + 1]) if r_ok[: last_nz[-1] + 1].any() else 0
                gain = (after_r - before_r) / before if before > 0 else np.nan
                kind = "stopped_meter"
                since = int(last_nz[-1] + 1)
                rise = 2.0 * float(np.clip(gain, 0.0, 5.0)) if np.isfinite(gain) else 1.0
                score = max(score, rise)
                ev["usual_load_kwh"] = float(before)
                ev["loss_rise_share_of_usual_load"] = _f(gain)
        if kind != "stopped_meter" and np.isfinite(th):
            if th < -cfg.wrong_area_theta:
                kind = "reversed_meter"
            elif abs(th) < cfg.wrong_area_theta:
                kind = "wrong_area"
            elif ei <= -cfg.theft_min:
                kind = "theft"
            if kind in ("meter_error", "theft") and score >= cfg.alert:
                found = _step_scan(r, e[i], th, spd)
                if found is not None:
                    at, before, after, gain = found
                    if gain > cfg.step_min_gain * fit.residual_std**2 and (
                        after <= before - cfg.class_limit
                    ):
                        since = at
                        ev["error_before"] = before
                        ev["error_after"] = after
                        if after <= -cfg.class_limit and abs(before) < cfg.class_limit:
                            kind = "theft"
            if track is not None and track.error.shape[0]:
                last = track.error[-1, i]
                if np.isfinite(last):
                    ev["error_now"] = float(last)
        if exp_miss[i] and np.isfinite(mid_neg) and mid_neg > cfg.significance:
            kind = "pv_export_missing"
            score = max(score, mid_neg / cfg.significance)
            ev["midday_residual_z"] = float(mid_neg)
        rows.append(
            Suspect(
                area=area_id,
                meter=str(meter_ids[i]),
                kind=kind,
                score=float(score),
                error_estimate=_f(ei),
                uncertainty=_f(ui),
                since=when(since),
                evidence=ev,
            )
        )
    rows.sort(key=lambda s: -s.score)
    return SuspectReport(rows)
