"""Loop-based NumPy references for the analytics kernels (HOUSE_STYLE R17).

Written for clarity, straight from DOMAIN.md and CONTRACTS.md, sharing no code with
``analytics`` beyond the constants that name columns.
"""

from __future__ import annotations

import math

import numpy as np

from analytics.vee import RULES


def wrap(a: float, b: float, modulus: float) -> float:
    """Register difference with rollover, NaN for missing or backwards."""
    if math.isnan(a) or math.isnan(b):
        return math.nan
    d = b - a
    if d >= 0:
        return d
    if modulus > 0 and a - b > modulus / 2:
        return d + modulus
    return math.nan


def meter_energy(reg, mult, modulus, exchanges=()):
    """exchanges: iterable of (meter, period, old_end, new_start)."""
    n_m, n_b = reg.shape
    out = np.full((n_m, n_b - 1), np.nan)
    for m in range(n_m):
        for p in range(n_b - 1):
            segs = [x for x in exchanges if x[0] == m and x[1] == p]
            a, b = reg[m, p], reg[m, p + 1]
            if math.isnan(a) or math.isnan(b):
                continue
            total = 0.0
            start = a
            for _, _, old_end, new_start in segs:
                total += wrap(start, old_end, modulus[m])
                start = new_start
            total += wrap(start, b, modulus[m])
            out[m, p] = total * mult[m]
    return out


def line_loss(fwd, rev, fwd_est, rev_est, area, role, mult, bidi, modulus, n_areas, th,
              exchanges=()):  # fmt: skip
    """Returns dict of (A, P) arrays: supply, sales, loss, rate, state, coverage, share."""
    n_m, n_b = fwd.shape
    n_p = n_b - 1
    ef = meter_energy(fwd, mult, modulus, exchanges)
    er = meter_energy(rev, mult, modulus, ()) if rev is not None else None
    keys = ("supply", "sales", "loss", "rate", "coverage", "share")
    out = {key: np.full((n_areas, n_p), np.nan) for key in keys}
    out["state"] = np.zeros((n_areas, n_p), dtype=np.int8)
    for a in range(n_areas):
        for p in range(n_p):
            supply = sales = est_sales = 0.0
            supply_missing = sales_missing = False
            supply_meter_bad = False
            n_supply_terms = 0
            total = present = 0
            for m in range(n_m):
                if area[m] != a:
                    continue
                terms = [(ef[m, p], bool(fwd_est[m, p] or fwd_est[m, p + 1]), True)]
                if bidi[m]:
                    terms.append((er[m, p], bool(rev_est[m, p] or rev_est[m, p + 1]), False))
                for e, est, is_fwd in terms:
                    supply_side = is_fwd if role[m] == 1 else not is_fwd
                    if role[m] == 1:
                        n_supply_terms += 1
                        if math.isnan(e) or est:
                            supply_meter_bad = True
                    else:
                        total += 1
                        if not math.isnan(e):
                            present += 1
                    if math.isnan(e):
                        if supply_side:
                            supply_missing = True
                        else:
                            sales_missing = True
                        continue
                    if supply_side:
                        supply += e
                    else:
                        sales += e
                        if est:
                            est_sales += e
            coverage = 100.0 * present / total if total else 100.0
            sup = math.nan if supply_missing or n_supply_terms == 0 else supply
            sal = math.nan if sales_missing else sales
            if math.isnan(sal):
                share = math.nan
            elif sal > 0:
                share = 100.0 * est_sales / sal
            else:
                share = 100.0 if est_sales > 0 else 0.0
            nc = (
                n_supply_terms == 0
                or supply_meter_bad
                or math.isnan(sup)
                or math.isnan(sal)
                or coverage < th["coverage_min"][a]
                or share > th["estimated_max"][a]
            )
            rate = math.nan
            if not nc and sup != 0:
                rate = 100.0 * (sup - sal) / sup
            if nc:
                state = 3
            elif sup < th["low_energy_kwh"][a]:
                state = 4
            elif rate < th["band_lo"][a]:
                state = 2
            elif rate > th["band_hi"][a]:
                state = 1
            else:
                state = 0
            out["supply"][a, p] = sup
            out["sales"][a, p] = sal
            out["loss"][a, p] = sup - sal
            out["rate"][a, p] = rate
            out["coverage"][a, p] = coverage
            out["share"][a, p] = share
            out["state"][a, p] = state
    return out


def vee(x, spd, reg, modulus, outage, history, removed, cfg):
    """Returns (counts (M, R), summary dict of (M,) arrays) for the interval rules."""
    n_m, n_s = x.shape
    n_d = n_s // spd
    counts = np.zeros((n_m, len(RULES)), dtype=np.int64)
    col = {r: i for i, r in enumerate(RULES)}
    summ = {key: np.zeros(n_m, dtype=np.int64) for key in
            ("first", "last", "expected", "received", "gaps", "gap_max")}  # fmt: skip
    for m in range(n_m):
        present = ~np.isnan(x[m])
        idx = np.flatnonzero(present)
        if idx.size == 0:
            summ["first"][m] = summ["last"][m] = -1
        else:
            f, last = idx[0], idx[-1]
            summ["first"][m], summ["last"][m] = f, last
            summ["expected"][m] = last - f + 1
            summ["received"][m] = idx.size
            runs = []
            run = 0
            for s in range(f, last + 1):
                if present[s]:
                    if run:
                        runs.append(run)
                    run = 0
                else:
                    run += 1
            summ["gaps"][m] = len(runs)
            summ["gap_max"][m] = max(runs) if runs else 0
            counts[m, col["gap"]] = sum(runs)
        counts[m, col["negative_consumption"]] = int((x[m][present] < 0).sum())
        if removed[m] >= 0:
            counts[m, col["read_after_removal"]] = int(present[removed[m] :].sum())
        for d in range(n_d):
            sl = slice(d * spd, (d + 1) * spd)
            v = x[m, sl][present[sl]]
            if v.size == 0:
                continue
            if np.all(v == 0):
                if outage is not None and outage[m, sl].any():
                    counts[m, col["zero_consumption_outage"]] += 1
                else:
                    counts[m, col["zero_consumption"]] += 1
            if v.size >= 3:
                top = np.sort(v)[::-1]
                if top[0] >= cfg.spike_min_kwh and top[0] > cfg.spike_ratio * top[2]:
                    counts[m, col["spike"]] += 1
            if v.size == spd and history is not None:
                ref = history[m, d] if history.shape[1] > 1 else history[m, 0]
                if not math.isnan(ref) and ref >= cfg.history_min_kwh:
                    if v.sum() > cfg.high_factor * ref:
                        counts[m, col["high_vs_history"]] += 1
                    elif np.any(v != 0) and v.sum() < cfg.low_factor * ref:
                        counts[m, col["low_vs_history"]] += 1
            if v.size == spd and reg is not None:
                delta = wrap(reg[m, d], reg[m, d + 1], modulus[m])
                tol = cfg.register_abs_tol + cfg.register_rel_tol * abs(delta)
                if not math.isnan(delta) and abs(delta - v.sum()) > tol:
                    counts[m, col["register_vs_intervals"]] += 1
    if reg is not None:
        for m in range(n_m):
            for p in range(reg.shape[1] - 1):
                a, b = reg[m, p], reg[m, p + 1]
                if math.isnan(a) or math.isnan(b) or b >= a:
                    continue
                if modulus[m] > 0 and a - b > modulus[m] / 2:
                    counts[m, col["rollover"]] += 1
                else:
                    counts[m, col["negative_consumption"]] += 1
    return counts, summ


def estimate(x, spd, max_linear, n_like, max_weeks):
    """Linear for short inner gaps, else average of nearest clean same weekdays."""
    n_m, n_s = x.shape
    n_d = n_s // spd
    est = np.full(x.shape, np.nan)
    method = np.zeros(x.shape, dtype=np.int8)
    for m in range(n_m):
        clean = [not np.isnan(x[m, d * spd : (d + 1) * spd]).any() for d in range(n_d)]
        s = 0
        while s < n_s:
            if not np.isnan(x[m, s]):
                s += 1
                continue
            e = s
            while e < n_s and np.isnan(x[m, e]):
                e += 1
            n = e - s
            if n <= max_linear and s > 0 and e < n_s:
                est[m, s:e] = np.interp(np.arange(s, e), [s - 1, e], [x[m, s - 1], x[m, e]])
                method[m, s:e] = 1
            else:
                for q in range(s, e):
                    d, j = divmod(q, spd)
                    cand = []
                    for w in range(1, max_weeks + 1):
                        for dd in (d - 7 * w, d + 7 * w):
                            if 0 <= dd < n_d and clean[dd]:
                                cand.append(dd)
                    cand = cand[:n_like]
                    if cand:
                        est[m, q] = np.mean([x[m, dd * spd + j] for dd in cand])
                        method[m, q] = 2
            s = e
    return est, method


def ridge_fit(y, e_used, z, ridge):
    """Ridge towards θ = 1 on unit-scaled columns, by an augmented least-squares problem."""
    x = np.vstack([e_used, np.ones_like(y), z]).T
    scale = np.sqrt((x**2).sum(axis=0))
    scale[scale == 0] = 1.0
    xs = x / scale
    n_meter = e_used.shape[0]
    pen = np.zeros((n_meter, x.shape[1]))
    pen[np.arange(n_meter), np.arange(n_meter)] = math.sqrt(ridge)
    target = math.sqrt(ridge) * scale[:n_meter]
    a = np.vstack([xs, pen])
    b = np.concatenate([y, target])
    sol, *_ = np.linalg.lstsq(a, b, rcond=None)
    return sol / scale


def rls(x, y, lam, delta, theta0):
    """Plain RLS on rows of x (T, P), scaled by column RMS like the kernel; returns path."""
    scale = np.sqrt((x**2).mean(axis=0))
    scale[scale == 0] = 1.0
    xs = x / scale
    th = theta0 * scale
    p = np.eye(x.shape[1]) * delta
    path = []
    for t in range(x.shape[0]):
        phi = xs[t]
        g = p @ phi
        den = lam + phi @ g
        th = th + g * (y[t] - phi @ th) / den
        p = (p - np.outer(g, g) / den) / lam
        path.append(th / scale)
    return np.array(path)
