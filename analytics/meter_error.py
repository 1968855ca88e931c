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
supply) rather than fitted; slots with any missing value are dropped, never imputed (a gap
that register differences bridge is joined instead, :func:`merge_spans`).

What a balance can see: every ε here is relative to the area's supply meter. A supply meter
that reads 0.5 % low makes every customer look 0.5 % fast, so the quantity estimated is
``(1 + ε_customer) / (1 + ε_supply) − 1``; the simulator's truth is absolute and the tests and
``bench/analytics_accuracy.py`` convert it so. A fault that starts inside the window is fitted
as a step (:func:`fit_meter_errors`); the estimate is then the most recent regime's and is
compared with the truth of the window's last day.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
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
    "data_sufficiency",
    "fit_meter_errors",
    "merge_spans",
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
        min_slots_per_unknown: fewer usable slots than this × unknowns gives no fit
            (neighbouring 15-minute slots are far from independent equations).
        min_days: fewer days with usable slots than this gives no fit.
        max_median_uncertainty: an area whose fitted meters have a median uncertainty of ε
            above this has too little independent load variation to judge (reported as
            insufficient data by :func:`data_sufficiency`).
        quantisation: model the rounding of registers (see :func:`fit_meter_errors`).
        quantisation_ratios: ratios κ = s_q² / s_w² tried for the register rounding.
        quantisation_min_gain: −2 log-likelihood drop a κ > 0 must give over κ = 0 (the
            ratios are tried only when the white fit's residual could give it, see
            :func:`fit_meter_errors`).
        max_steps: most meters given a step (a fault that starts inside the window).
        step_min_z2: squared score statistic a step must reach to be fitted.
        step_min_slots: slots a step leaves at least on each side.
        day_block_variance: widen the uncertainties by the variance of the residual's day
            sums against what a white residual gives (see ``_day_block_inflation``).
        jackknife_groups: with register rounding modelled (κ > 0), the uncertainty is at
            least the delete-a-group jackknife's over this many groups of days.
        stop_min_slots: a fitted meter that registers exactly zero for at least this many
            trailing slots after having load has stopped: the slots from its stop on are
            left out of the fit (its unregistered load is in the supply; no coefficient can
            explain it), and still get a residual.
    """

    ridge: float = 1e-4
    light_load_fraction: float = 0.05
    min_slots_per_unknown: float = 10.0
    min_days: int = 3
    max_median_uncertainty: float = 0.05
    quantisation: bool = True
    quantisation_ratios: tuple[float, ...] = (0.3, 3.0, 30.0, 300.0, 3000.0, 30000.0)
    quantisation_min_gain: float = 20.0
    max_steps: int = 12
    step_min_z2: float = 30.0
    step_min_slots: int = 48
    stop_min_slots: int = 96
    day_block_variance: bool = True
    jackknife_groups: int = 10


@dataclass(frozen=True)
class BalanceFit:
    """Result of one area's balance fit (arrays per customer meter unless noted).

    Attributes:
        theta: fitted θ of the most recent regime (after a step), NaN outside the fit.
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
        step_slot: first slot of the most recent regime of meters with a step, −1 without.
        error_before: ε before the step, NaN without one.
        step_z: score statistic (standard deviations) of each fitted step, NaN without one.
        quantisation_ratio: κ = s_q² / s_w² of the residual model (0: white residual).
        extra_coef: coefficients of the ``extra`` regressors (NaN without a fit).
        extra_unc: their standard deviations.
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
    step_slot: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    error_before: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    step_z: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    quantisation_ratio: float = 0.0
    extra_coef: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    extra_unc: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))


def _prepare(
    supply: ArrayLike,
    customers: ArrayLike,
    z: ArrayLike | None,
    cfg: FitSettings,
    fit_slots: ArrayLike | None = None,
    slot_length: ArrayLike | None = None,
) -> tuple[Any, ...]:
    y = as_float("supply", supply, 1)
    e = as_float("customers", customers, 2)
    n, t = e.shape
    same_shape("supply", y, (t,))
    if slot_length is None:
        length = np.ones(t)
    else:
        length = as_float("slot_length", slot_length, 1)
        same_shape("slot_length", length, (t,))
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
    slot_ok &= length > 0
    if z is None:
        zz = total * total / np.maximum(length, 1.0)
    else:
        zz = as_float("z", z, 1)
        same_shape("z", zz, (t,))
        slot_ok &= np.isfinite(zz)
    complete = slot_ok.copy()
    if fit_slots is not None:
        allowed = as_bool("fit_slots", fit_slots, 1)
        same_shape("fit_slots", allowed, (t,))
        slot_ok &= allowed
    return (y, e, np.ascontiguousarray(zz), use, fixed, slot_ok, complete,
            np.ascontiguousarray(length))


class _Solver:
    """Builds, whitens and solves the design of one area for a given set of steps."""

    def __init__(self, y: Any, e: Any, zz: Any, use: Any, fixed: Any, slot_ok: Any,
                 ridge: float, length: Any) -> None:
        self.y, self.e, self.zz, self.use, self.fixed = y, e, zz, use, fixed
        self.length = length
        self.slot_ok = slot_ok
        self.idx = np.flatnonzero(slot_ok)
        self.n_obs = int(self.idx.size)
        self.n_use = int(use.sum())
        self.ridge = ridge
        # a value continues the previous one when its first slot follows that one's last
        first = self.idx - np.maximum(length[self.idx], 1.0).astype(np.int64) + 1
        self.new_run = np.ones(self.n_obs, dtype=np.bool_)
        self.new_run[1:] = first[1:] != self.idx[:-1] + 1
        self.sub = np.zeros(self.n_obs)
        self.diag = np.ones(self.n_obs)
        self.kappa = 0.0
        self.steps: list[tuple[int, int]] = []  # (meter, first slot)
        self.extra = np.zeros((0, e.shape[1]))  # unpenalised regressors after the meters
        self.n_extra = 0
        self._gram: tuple[Any, Any, Any, float] | None = None  # of the last solve
        self._base: tuple[Any, ...] | None = None  # see step_rss

    def augmented(self, where: Any) -> tuple[Any, Any]:
        """Design (P, T') and target on the slots ``where``, with the step columns."""
        e, use, fixed = self.e, self.use, self.fixed
        if self.steps or self.n_extra:
            t = np.arange(e.shape[1])
            e = e.copy()
            extra = np.zeros((len(self.steps), e.shape[1]))
            for j, (i, s0) in enumerate(self.steps):
                after = t >= s0
                extra[j] = np.where(after, e[i], 0.0)
                e[i] = np.where(after, 0.0, e[i])
            e = np.ascontiguousarray(np.vstack([e, extra, self.extra]))
            k_add = len(self.steps) + self.n_extra
            use = np.r_[use, np.ones(k_add, dtype=np.bool_)]
            fixed = np.r_[fixed, np.zeros(k_add, dtype=np.bool_)]
        p = int(use.sum()) + 2
        n = int(where.sum())
        xmat = np.empty((p, n))
        yvec = np.empty(n)
        k._design(self.y, e, self.zz, self.length, use, fixed, where, xmat, yvec)
        return xmat, yvec

    def step_rss(self) -> float:
        """Whitened residual sum of squares with the current steps, as ``_rss`` gives it.

        The design without steps, whitened, and its Gram matrix are kept (for the current κ
        and z); a step replaces its meter's row by the part before the step and adds the
        part from it on, so only the products of those rows are formed anew.
        """
        meters = [i for i, _ in self.steps]
        if len(set(meters)) != len(meters):
            xmat, yvec = self.augmented(self.slot_ok)
            sol = self.solve(xmat, yvec)
            return sol[2] * max(self.n_obs - xmat.shape[0], 1) if np.isfinite(sol[2]) else np.inf
        base = self._base
        if base is None or base[0] != self.kappa or base[1] is not self.zz:
            steps, self.steps = self.steps, []
            xmat, yvec = self.augmented(self.slot_ok)
            self.steps = steps
            xw, yw = xmat, yvec
            if self.kappa > 0.0:
                xw, yw = xmat.copy(), yvec.copy()
                k._whiten(xw, yw, self.sub, self.diag)
            p0 = xmat.shape[0]
            xtx0 = np.empty((p0, p0))
            xty0 = np.empty(p0)
            yty = k._gram(xw, yw, xtx0, xty0)
            base = self._base = (self.kappa, self.zz, xmat, xw, yw, xtx0, xty0, yty)
        _, _, xmat, xw, yw, xtx0, xty0, yty = base
        p0 = xmat.shape[0]
        m = len(self.steps)
        rows = np.cumsum(self.use) - 1  # meter → its row in the design
        src = np.r_[np.arange(self.n_use), -1 - 2 * np.arange(m) - 1, np.arange(self.n_use, p0)]
        vecs = np.empty((2 * m, xmat.shape[1]))
        for j, (i, s0) in enumerate(self.steps):
            r = int(rows[i])
            k0 = int(np.searchsorted(self.idx, s0))
            vecs[2 * j] = xmat[r]
            vecs[2 * j, k0:] = 0.0
            vecs[2 * j + 1] = xmat[r]
            vecs[2 * j + 1, :k0] = 0.0
            src[r] = -1 - 2 * j
        if self.kappa > 0.0:
            k._whiten(vecs, np.zeros(vecs.shape[1]), self.sub, self.diag)
        p = p0 + m
        xtx = np.empty((p, p))
        xty = np.empty(p)
        k._gram_patch(xw, yw, xtx0, xty0, src.astype(np.int64), vecs, xtx, xty)
        s2 = self._ridge(xw, yw, xtx, xty, yty, with_var=False)[2]
        return s2 * max(self.n_obs - p, 1) if np.isfinite(s2) else np.inf

    def set_kappa(self, kappa: float) -> None:
        """Residual covariance ∝ I + κ·tridiag(2, −1) within runs of consecutive slots."""
        self.kappa = kappa
        if kappa > 0.0:
            k._ma1_factor(self.new_run, 1.0 + 2.0 * kappa, -kappa, self.sub, self.diag)
        else:
            self.sub[:] = 0.0
            self.diag[:] = 1.0

    def solve(self, xmat: Any, yvec: Any) -> tuple[Any, Any, float, Any, Any]:
        """β, var(β), s², whitened design and target."""
        p = xmat.shape[0]
        if self.kappa > 0.0:
            xmat, yvec = xmat.copy(), yvec.copy()
            k._whiten(xmat, yvec, self.sub, self.diag)
        xtx = np.empty((p, p))
        xty = np.empty(p)
        yty = k._gram(xmat, yvec, xtx, xty)
        self._gram = (xmat, xtx, xty, yty)
        return self._ridge(xmat, yvec, xtx, xty, yty)

    def _ridge(self, xw: Any, yw: Any, xtx: Any, xty: Any, yty: float, with_var: bool = True
               ) -> tuple[Any, Any, float, Any, Any]:
        p = xtx.shape[0]
        beta = np.empty(p)
        var = np.empty(p if with_var else 0)
        n_meter = p - 2 - self.n_extra  # extra regressors are not drawn towards 1
        s2 = k._ridge_solve(xtx, xty, yty, self.n_obs, n_meter, self.ridge, beta, var)
        return beta, var, s2, xw, yw

    def solve_row(self, xmat: Any, yvec: Any, sol: tuple[Any, ...], i: int
                  ) -> tuple[Any, Any, float, Any, Any]:
        """``solve`` after row i of ``xmat`` (the design ``sol`` was solved on) changed.

        Only row and column i of the Gram matrix are recomputed (the other entries are the
        same sums); falls back to a full solve when ``sol`` is not the last one solved.
        """
        xw = sol[3]
        if self._gram is None or self._gram[0] is not xw:
            return self.solve(xmat, yvec)
        _, xtx, xty, yty = self._gram
        if xw is not xmat:  # whitened copy: whiten the new row alone
            row = xmat[i : i + 1].copy()
            k._whiten(row, np.zeros(row.shape[1]), self.sub, self.diag)
            xw[i] = row[0]
        k._gram_rowcol(xw, sol[4], xtx, xty, i)
        return self._ridge(xw, sol[4], xtx, xty, yty)

    def neg2loglik(self, s2: float, p: int) -> float:
        """−2 log-likelihood (profiled over the scale) of the current residual model."""
        rss = s2 * max(self.n_obs - p, 1)
        return float(self.n_obs * np.log(max(rss, 1e-300) / self.n_obs)
                     + 2.0 * np.log(self.diag).sum())


def _select_kappa(sv: _Solver, cfg: FitSettings) -> tuple[Any, ...]:
    """Fit with a white residual, then with register rounding; keep the likelier model."""
    xmat, yvec = sv.augmented(sv.slot_ok)
    sv.set_kappa(0.0)
    best = sv.solve(xmat, yvec)
    if not np.isfinite(best[2]) or not cfg.quantisation:
        return xmat, yvec, best
    p = xmat.shape[0]
    # screen: the likelihood-ratio gain of a moving-average residual over a white one is
    # about n·ρ̂² for the lag-one autocorrelation ρ̂ of the white fit's residual, and rounding
    # telescopes into a negative ρ̂; without a clearly negative ρ̂ no κ > 0 can gain
    # ``quantisation_min_gain`` and the white model stays, without the search
    rho = k._lag1_autocorr(yvec, xmat, best[0], sv.new_run)
    if not (rho < 0.0 and sv.n_obs * rho * rho >= 0.25 * cfg.quantisation_min_gain):
        return xmat, yvec, best
    best_l = sv.neg2loglik(best[2], p) - cfg.quantisation_min_gain
    best_k = 0.0
    for kappa in cfg.quantisation_ratios:
        sv.set_kappa(kappa)
        got = sv.solve(xmat, yvec)
        if not np.isfinite(got[2]):
            continue
        ll = sv.neg2loglik(got[2], p)
        if ll < best_l:
            best, best_l, best_k = got, ll, kappa
    sv.set_kappa(best_k)
    return xmat, yvec, best


def _best_step(sv: _Solver, sol: tuple[Any, ...], spd: int, cfg: FitSettings,
               only: int | None = None) -> tuple[int, list[int], float] | None:
    """The meter and first slot of the step with the largest score statistic, if any."""
    beta, _, s2, xw, yw = sol
    if not np.isfinite(s2) or s2 <= 0:
        return None
    rw = yw - beta @ xw
    n = sv.n_obs
    lo, hi = cfg.step_min_slots, n - cfg.step_min_slots
    if hi <= lo:
        return None
    # candidate columns: the first used slot of each day
    day_of = sv.idx // spd
    firsts = np.flatnonzero(np.r_[True, np.diff(day_of) != 0])
    cand = firsts[(firsts >= lo) & (firsts < hi)].astype(np.int64)
    if cand.size == 0:
        return None
    stepped = {i for i, _ in sv.steps}
    rows = np.flatnonzero(sv.use)
    scan = np.array([r for r, i in enumerate(rows)
                     if i not in stepped and (only is None or i == only)], dtype=np.int64)
    best: tuple[int, int, float] | None = None
    if scan.size:
        z2 = np.empty((scan.size, cand.size))
        ok = np.empty(scan.size, dtype=np.bool_)
        k._step_scan(xw, rw, sv.sub, sv.diag, scan, cand, s2, z2, ok)
        if ok.any():
            z2[~ok] = -np.inf  # a meter without information is no candidate
            m, j = divmod(int(np.argmax(z2)), cand.size)
            best = (int(rows[scan[m]]), j, float(z2[m, j]))
    if best is None or best[2] < cfg.step_min_z2:
        return None
    # refine to the slot within two days either side of the best day boundary; the few best
    # slots by the score are then compared by an exact refit (_place_step)
    i, j, _ = best
    r = int(np.flatnonzero(rows == i)[0])
    c0 = int(cand[j])
    fine = np.arange(max(lo, c0 - 2 * spd), min(hi, c0 + 2 * spd), dtype=np.int64)
    z2 = np.empty((1, fine.size))
    k._step_scan(xw, rw, sv.sub, sv.diag, np.array([r], dtype=np.int64), fine, s2, z2,
                 np.empty(1, dtype=np.bool_))
    z2 = z2[0]
    order = np.argsort(-z2)
    # the best few slots, and the best slot of each day in the range
    day = sv.idx[fine] // spd
    per_day = [int(order[day[order] == d][0]) for d in np.unique(day)]
    top = list(dict.fromkeys([*order[:4].tolist(), *per_day]))
    return i, [int(sv.idx[fine[jj]]) for jj in top], float(z2[order[0]])


def _rss(sv: _Solver) -> tuple[Any, Any, Any, float]:
    """Design, target, solution and whitened residual sum of squares with the current steps."""
    xmat, yvec = sv.augmented(sv.slot_ok)
    sol = sv.solve(xmat, yvec)
    rss = sol[2] * max(sv.n_obs - xmat.shape[0], 1) if np.isfinite(sol[2]) else np.inf
    return xmat, yvec, sol, float(rss)


def _place_step(sv: _Solver, i: int, slots: list[int]) -> tuple[int, float]:
    """Of the candidate first slots of a step in meter i, the one whose refit fits best."""
    best = (slots[0], np.inf)
    for s0 in slots:
        sv.steps.append((i, s0))
        rss = sv.step_rss()
        sv.steps.pop()
        if rss < best[1]:
            best = (s0, rss)
    return best


def _fit_steps(sv: _Solver, xmat: Any, yvec: Any, sol: tuple[Any, ...], spd: int,
               cfg: FitSettings, step_z: Any) -> tuple[Any, Any, tuple[Any, ...]]:
    """Add steps greedily, then re-place each given the others and drop the unneeded.

    A step is kept while refitting without it raises the whitened residual sum of squares by
    at least ``step_min_z2`` residual variances.
    """
    while np.isfinite(sol[2]) and len(sv.steps) < cfg.max_steps:
        found = _best_step(sv, sol, spd, cfg)
        if found is None:
            break
        i, slots, _ = found
        s0, rss = _place_step(sv, i, slots)
        if not np.isfinite(rss):  # singular with the step: stop here
            break
        sv.steps.append((i, s0))
        xmat, yvec, sol, _ = _rss(sv)
    if not sv.steps:
        return xmat, yvec, sol
    for j in range(len(sv.steps) - 1, -1, -1):
        i, s0 = sv.steps.pop(j)
        x_wo, _, sol_wo, rss_wo = _rss(sv)
        found = _best_step(sv, sol_wo, spd, replace(cfg, step_min_z2=0.0), only=i)
        slots = [s0, *(found[1] if found is not None else [])]
        s1, rss_w = _place_step(sv, i, slots)
        s2_w = rss_w / max(sv.n_obs - x_wo.shape[0] - 1, 1)
        gain = (rss_wo - rss_w) / s2_w if s2_w > 0 else 0.0
        if gain >= cfg.step_min_z2:
            sv.steps.insert(j, (i, s1))
            step_z[i] = np.sqrt(gain)
        else:
            step_z[i] = np.nan
    xmat, yvec, sol, _ = _rss(sv)
    return xmat, yvec, sol


def _day_block_inflation(sv: _Solver, sol: tuple[Any, ...], spd: int) -> float:
    """Variance inflation from the day sums of the whitened residual (≥ 1).

    With the right residual model the whitened residual is white and a day's sum has the
    variance of that many slots. Structure the model misses (a fault that starts inside the
    window but was too small to fit as a step, a load-loss shape the proxy does not follow)
    shows as day sums that vary more; the uncertainties are widened by that ratio, so the
    scores do not treat a misfit as evidence.
    """
    beta, _, s2, xw, yw = sol
    rw = yw - beta @ xw
    day = sv.idx // spd
    starts = np.flatnonzero(np.r_[True, np.diff(day) != 0])
    if starts.size < 3 or not s2 > 0:
        return 1.0
    sums = np.add.reduceat(rw, starts)
    counts = np.diff(np.r_[starts, rw.size])
    ratio = float(np.mean(sums * sums / counts) / s2)
    return max(1.0, ratio)


def _jackknife_variance(sv: _Solver, beta: Any, spd: int, groups: int) -> Any:
    """Delete-a-group jackknife variance of β over groups of whole days.

    With register rounding the fit leans on long runs of slots, and a transient it does not
    model (a fault starting inside the window, too small to fit as a step) can move every
    coefficient by more than the model's covariance says; refitting without each group of
    days measures that.
    """
    day = sv.idx // spd
    days = np.unique(day)
    if days.size < groups:
        return np.zeros_like(beta)
    label = np.searchsorted(days, day) * groups // days.size
    fits = []
    for g in range(groups):
        keep = sv.slot_ok.copy()
        keep[sv.idx[label == g]] = False
        sub = _Solver(sv.y, sv.e, sv.zz, sv.use, sv.fixed, keep, sv.ridge, sv.length)
        sub.steps = list(sv.steps)
        sub.extra, sub.n_extra = sv.extra, sv.n_extra
        sub.set_kappa(sv.kappa)
        xmat, yvec = sub.augmented(keep)
        got = sub.solve(xmat, yvec)
        if not np.isfinite(got[2]):
            return np.full_like(beta, np.inf)
        fits.append(got[0])
    b = np.array(fits)
    return (groups - 1) / groups * ((b - b.mean(axis=0)) ** 2).sum(axis=0)


def merge_spans(values: ArrayLike, covers: ArrayLike) -> tuple[NDArray[np.float64],
                                                                NDArray[np.float64]]:
    """Join slots so that every row's value over each group is known.

    A meter whose register reading at a slot end is missing has no value for the two slots
    around it, but the difference of the readings either side gives their sum. Such a value
    sits at the last slot of its span with ``covers`` = k (the slots it spans) and the slots
    before it in the span have ``covers`` = 0. Every row is then summed over the groups that
    the union of all spans forms; a row with an unknown slot (``covers`` ≥ 1, value NaN)
    in a group is unknown for the group (the group is then dropped by the fit).

    Args:
        values: (rows, slots) energies, NaN unknown.
        covers: (rows, slots) ints as above (1 for an ordinary slot).

    Returns:
        (rows, slots) the group sums at each group's last slot, NaN elsewhere; (slots,) the
        group length at its last slot, 0 elsewhere (``slot_length`` of
        :func:`fit_meter_errors`).

    Raises:
        ValueError: shapes that do not match.
    """
    v = as_float("values", values, 2)
    c = np.asarray(covers)
    if c.shape != v.shape:
        raise ValueError(f"covers must have the shape {v.shape}, got {c.shape}")
    _, t = v.shape
    if t == 0:
        return v.copy(), np.zeros(0)
    link = np.zeros(t, dtype=bool)  # slot joined with the next one
    rr, ends = np.nonzero(c > 1)
    for r, b in zip(rr.tolist(), ends.tolist(), strict=True):
        link[max(b - int(c[r, b]) + 1, 0) : b] = True
    starts = np.flatnonzero(np.r_[True, ~link[:-1]])
    last = np.r_[starts[1:] - 1, t - 1]
    own = c >= 1
    sums = np.add.reduceat(np.where(own & np.isfinite(v), v, 0.0), starts, axis=1)
    unknown = np.add.reduceat((own & ~np.isfinite(v)).astype(np.int64), starts, axis=1)
    sums[unknown > 0] = np.nan
    merged = np.full(v.shape, np.nan)
    merged[:, last] = sums
    length = np.zeros(t)
    length[last] = last - starts + 1
    return merged, length


def _flow_squared(e: Any, use: Any, fixed: Any, steps: list[tuple[int, int]],
                  beta: Any, length: Any) -> Any:
    """(Σ_i θ_i,t · E_i,t)² with each meter's fitted θ (per regime); light meters at θ = 1."""
    n, t = e.shape
    n_use = int(use.sum())
    theta = np.ones(n)
    theta[use] = beta[:n_use]
    w = np.where(use | fixed, theta, 0.0)
    w_after = w.copy()
    first = np.full(n, t, dtype=np.int64)
    for j, (i, s0) in enumerate(steps):
        w_after[i] = beta[n_use + j]
        first[i] = s0
    total = np.empty(t)
    k._flow_total(e, w, w_after, first, total)
    return np.ascontiguousarray(total * total / np.maximum(length, 1.0))


def fit_meter_errors(
    supply: ArrayLike,
    customers: ArrayLike,
    *,
    z: ArrayLike | None = None,
    fit_slots: ArrayLike | None = None,
    settings: FitSettings | None = None,
    slots_per_day: int = 96,
    slot_length: ArrayLike | None = None,
    extra: ArrayLike | None = None,
) -> BalanceFit:
    """Estimate each customer meter's relative error ε from one area's balance.

    Ridge-regularised least squares towards θ = 1, columns scaled to unit norm; the
    uncertainty comes from the diagonal of s² (XᵀX + Λ)⁻¹.

    Register rounding: energies taken as differences of registers shown to 0.01 kWh (and a
    supply meter's 0.01 kWh times its CT ratio) carry rounding noise that telescopes: it is
    ``frac_{t−1} − frac_t``, negatively correlated between neighbouring slots. The residual
    is modelled as white noise plus such a term, ``s_w² (I + κ·tridiag(2, −1))`` within runs
    of consecutive slots; κ is chosen among ``quantisation_ratios`` by likelihood (κ = 0, the
    ordinary fit, unless another ratio is clearly likelier) and the fit is generalised least
    squares for it. The search runs only when the ordinary fit's residual shows the
    structure: a negative lag-one autocorrelation ρ̂ with n·ρ̂² at least a quarter of
    ``quantisation_min_gain`` (the likelihood gain of a κ > 0 is about n·ρ̂²). This uses
    every slot, as summing the slots up to hours or days would, without losing the equations
    a coarser grid gives up.

    Faults that start inside the window: a meter whose coefficient changes at a slot gets a
    second column from that slot on (θ before and θ after, each with its ridge prior). Steps
    are added one at a time, the meter and day with the largest score statistic first
    (refined to the slot within a day either side), while the squared statistic reaches
    ``step_min_z2`` and at most ``max_steps`` meters have one. The estimate reported is the
    most recent regime's; ``error_before`` and ``step_slot`` date the change.

    Args:
        supply: (slots,) supply energy per slot (primary kWh), NaN missing.
        customers: (meters, slots) customers' energy per slot (primary kWh), NaN missing.
        z: (slots,) load-squared proxy; default (Σ_i θ_i E_i,t)², the flow, with θ from a
            first fit with (Σ_i E_i,t)².
        fit_slots: (slots,) bool, slots allowed in the fit (e.g. no daylight slots in an area
            with bidirectional meters whose export is not collected); the residual is still
            reported on every complete slot.
        settings: fit settings.
        slots_per_day: slots per day (step candidates are day boundaries first).
        slot_length: (slots,) how many slots each column's values cover (see
            :func:`merge_spans`): 1 normally, k for values that span k slots (a gap bridged by
            register differences), 0 for slots absorbed into a later value. The fixed loss
            counts k times, the load-loss proxy is total² / k, and a spanning value continues
            the run of consecutive slots, so the register-rounding model stays intact
            across the gap.
        extra: (K, slots) further regressors with free coefficients (no ridge), e.g. the
            export that the area's bidirectional meters collect, which stands in for PV
            export that no meter collects; their coefficients are in ``extra_coef``.

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
    y, e, zz, use, fixed, slot_ok, complete, length = _prepare(
        supply, customers, z, cfg, fit_slots, slot_length)
    n, t = e.shape
    # a meter that stopped: its trailing zeros leave the fit
    has = np.isfinite(e) & (e != 0.0) & use[:, None]
    last = t - 1 - np.argmax(has[:, ::-1], axis=1)
    stopped = has.any(axis=1) & (t - 1 - last >= cfg.stop_min_slots)
    if stopped.any():
        slot_ok[int(last[stopped].min()) + 1 :] = False
    n_use = int(use.sum())
    p = n_use + 2
    n_obs = int(slot_ok.sum())
    theta = np.full(n, np.nan)
    var_theta = np.full(n, np.nan)
    theta_before = np.full(n, np.nan)
    step_slot = np.full(n, -1, dtype=np.int64)
    step_z = np.full(n, np.nan)
    residual = np.full(t, np.nan)
    c = q = s = np.nan
    kappa = 0.0
    n_x = 0 if extra is None else np.asarray(extra).shape[0]
    extra_coef = np.full(n_x, np.nan)
    extra_unc = np.full(n_x, np.nan)
    n_days = np.unique(np.flatnonzero(slot_ok) // max(int(slots_per_day), 1)).size
    if n_obs >= cfg.min_slots_per_unknown * p and n_days >= cfg.min_days:
        sv = _Solver(y, e, zz, use, fixed, slot_ok, cfg.ridge, length)
        if extra is not None:
            sv.extra = np.ascontiguousarray(np.nan_to_num(as_float("extra", extra, 2)))
            same_shape("extra", sv.extra, (sv.extra.shape[0], t))
            sv.n_extra = sv.extra.shape[0]
        xmat, yvec, sol = _select_kappa(sv, cfg)
        for _ in range(2 if z is None else 1):
            xmat, yvec, sol = _fit_steps(sv, xmat, yvec, sol, max(int(slots_per_day), 1),
                                         cfg, step_z)
            if z is None and np.isfinite(sol[2]):
                # the load-loss proxy from what flowed (θ·E), not from what was registered:
                # a meter reading 8 % fast would otherwise move z with its error
                sv.zz = _flow_squared(e, use, fixed, sv.steps, sol[0], length)
                xmat[-1] = sv.zz[sv.idx]  # the z row is the design's last
                sol = sv.solve_row(xmat, yvec, sol, xmat.shape[0] - 1)
        beta, var, s2 = sol[0], sol[1], sol[2]
        kappa = sv.kappa
        if np.isfinite(s2) and cfg.day_block_variance:
            var = var * _day_block_inflation(sv, sol, max(int(slots_per_day), 1))
        if np.isfinite(s2) and sv.kappa > 0.0 and cfg.jackknife_groups >= 3:
            var = np.maximum(var, _jackknife_variance(sv, beta, max(int(slots_per_day), 1),
                                                      cfg.jackknife_groups))
        if np.isfinite(s2):
            n_meter = beta.shape[0] - 2
            theta[use] = beta[:n_use]
            var_theta[use] = var[:n_use]
            for j, (i, s0) in enumerate(sv.steps):
                theta_before[i] = theta[i]
                theta[i] = beta[n_use + j]
                var_theta[i] = var[n_use + j]
                step_slot[i] = s0
            c, q = float(beta[n_meter]), float(beta[n_meter + 1])
            if sv.n_extra:
                x0 = n_meter - sv.n_extra
                extra_coef = beta[x0:n_meter].copy()
                extra_unc = np.sqrt(var[x0:n_meter])
            # scale of the residual per slot: white part plus the rounding term
            s = float(np.sqrt(s2 * (1.0 + 2.0 * kappa)))
            if np.array_equal(complete, slot_ok):
                xall, yall = xmat, yvec
            else:
                xall, yall = sv.augmented(complete)
            r_all = np.empty(yall.shape[0])
            k._design_residual(xall, yall, beta, r_all)
            residual[complete] = r_all
    with np.errstate(divide="ignore", invalid="ignore"):
        error = 1.0 / theta - 1.0
        unc = np.sqrt(var_theta) / theta**2
        before = 1.0 / theta_before - 1.0
    ok = np.isfinite(theta)
    step_z[~ok] = np.nan
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
        step_slot=step_slot,
        error_before=before,
        step_z=step_z,
        quantisation_ratio=kappa,
        extra_coef=extra_coef,
        extra_unc=extra_unc,
    )


def data_sufficiency(fit: BalanceFit, n_slots: int, *, slots_per_day: int = 96,
                     settings: FitSettings | None = None) -> str | None:
    """Why an area's balance fit cannot be judged, or None when it can.

    Two reasons (DOMAIN.md: the balance needs far more equations than meters): too few
    usable slots per estimated coefficient or too few days (no fit was made), and load that
    varies too little, independently from meter to meter, to separate the meters (the
    median uncertainty of ε above ``max_median_uncertainty``).

    Args:
        fit: the area's fit.
        n_slots: slots in the window.
        slots_per_day: slots per day.
        settings: the fit settings used.

    Returns:
        A sentence for people, or None.
    """
    cfg = settings or FitSettings()
    unknowns = int((~fit.light_load & np.isfinite(fit.theta)).sum()) + 2
    used = int(fit.slot_used.sum())
    days = n_slots / max(slots_per_day, 1)
    if not fit.in_fit.any():
        return (f"insufficient data: {used} usable slots over {days:g} days; the balance "
                f"needs at least {cfg.min_slots_per_unknown:g} slots per estimated meter and "
                f"{cfg.min_days} days")
    unc = fit.uncertainty[fit.in_fit]
    med = float(np.median(unc)) if unc.size else np.inf
    if not med <= cfg.max_median_uncertainty:
        return (f"insufficient data: median uncertainty of the meter errors "
                f"{100 * med:.1f} % (limit {100 * cfg.max_median_uncertainty:g} %) with "
                f"{used} usable slots for {unknowns} unknowns: the loads vary too little, "
                f"or the data are too coarse, to tell the meters apart")
    return None


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
    slot_length: ArrayLike | None = None,
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
        slot_length: slots each value covers, as for :func:`fit_meter_errors`.

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
    y, e, zz, use, fixed, slot_ok, _, length = _prepare(supply, customers, z, cfg,
                                                        slot_length=slot_length)
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
        k._design(y, e, zz, length, use, fixed, slot_ok, xmat, yvec)
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
        min_significance: |ε| / uncertainty under which a meter error scores 0; between it
            and ``significance`` the score rises linearly (an estimate two standard
            deviations from 0 is not evidence among hundreds of meters).
        theft_min: ε at or below −theft_min is read as unmetered load (theft).
        wrong_area_theta: |θ| below this: the meter's energy is not in this area's supply.
        stop_min_slots: trailing zero slots after load for a stopped meter.
        ratio_min: |median θ − 1| at which the supply meter's ratio is suspect.
        step_min_change: change of ε at a fitted step (see :func:`fit_meter_errors`) needed to
            report it as the meter's ``since``.
        midday: (first, last) slot-of-day fraction of the PV window (10:00–15:00).
    """

    class_limit: float = 0.02
    alert: float = 1.0
    significance: float = 4.0
    min_significance: float = 2.0
    theft_min: float = 0.08
    wrong_area_theta: float = 0.5
    stop_min_slots: int = 96
    day_block_variance: bool = True
    jackknife_groups: int = 10
    ratio_min: float = 0.05
    step_min_change: float = 0.02
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
    #: area → why its balance could not be judged (not part of the JSON rows; the command
    #: reports it on stderr, and each of the area's rows carries it as
    #: ``evidence.insufficient_data``).
    insufficient: dict[str, str] = field(default_factory=dict)

    def alerts(self, threshold: float) -> SuspectReport:
        """Only rows at or above ``threshold`` (the default output without ``--all``)."""
        return SuspectReport([s for s in self.suspects if s.score >= threshold],
                             dict(self.insufficient))

    def to_dict(self) -> dict[str, Any]:
        """The JSON document."""
        return {"suspects": [s.to_dict() for s in self.suspects]}


def _f(v: float | np.floating[Any]) -> float | None:
    return None if not np.isfinite(v) else float(v)


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

    Score: ``|ε| / class_limit`` of the most recent regime (after a step the fit found,
    dated by ``since``), weighted from 0 at ``min_significance`` to 1 at ``significance``
    standard deviations; stopped and PV findings score the unexplained energy against the
    meter's load. Ties are broken by significance.

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
            # significance in θ (the fitted quantity): |θ − 1| / sd(θ), sd(θ) = sd(ε)·θ²;
            # the same as |ε| / sd(ε) for small errors, and well defined for θ near 0
            th_e = 1.0 / (1.0 + ei)  # θ relative to a common supply factor, if any
            sd_th = ui * th_e * th_e
            sig = abs(1.0 - th_e) / sd_th if sd_th > 0 else np.inf
            weight = (sig - cfg.min_significance) / (cfg.significance - cfg.min_significance)
            score = abs(ei) / cfg.class_limit * float(np.clip(weight, 0.0, 1.0))
            ev["theta"] = float(th)
            ev["sigma"] = float(sig)
        # trailing zero run after load: stopped
        row_zero = zero[i]
        last_nz = np.flatnonzero(finite[i] & ~row_zero)
        if last_nz.size and last_nz[-1] + 1 + cfg.stop_min_slots <= e.shape[1]:
            tail = slice(last_nz[-1] + 1, e.shape[1])
            if row_zero[tail].sum() >= cfg.stop_min_slots:
                before = float(np.nanmean(e[i, : last_nz[-1] + 1]))
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
            s0 = int(fit.step_slot[i]) if fit.step_slot.size else -1
            if s0 >= 0:
                before = float(fit.error_before[i])
                ev["error_before"] = _f(before)
                ev["error_after"] = _f(ei)
                ev["step_z"] = _f(float(fit.step_z[i]))
                if abs(ei - before) >= cfg.step_min_change:
                    since = s0
                    if ei <= -cfg.class_limit and abs(before) < cfg.class_limit and (
                        kind == "meter_error"
                    ):
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
    rows.sort(key=lambda s: (-s.score, -s.evidence.get("sigma", 0.0)))
    return SuspectReport(rows)
