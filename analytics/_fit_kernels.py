"""Private numba kernels of the per-meter error fit (the area energy balance).

Small and pure like ``analytics._kernels``: contiguous arrays and scalars in, output buffers
handed in by the caller, no I/O. The public wrappers live in ``analytics.meter_error``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from analytics._kernels import FASTMATH, FASTMATH_FINITE

# ---------------------------------------------------------------------------------------------
# Per-meter error from the area balance
# ---------------------------------------------------------------------------------------------


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _design(y, e, z, const, use_meter, fixed_meter, use_slot, xmat, yvec):
    """Build the compact design matrix of the balance fit.

    Args:
        y: (T,) supply energy per slot.
        e: (N, T) customers' registered energy per slot.
        z: (T,) load-squared proxy.
        const: (T,) the fixed-loss regressor: the number of slots each value covers (1, or
            more for a value that spans a gap).
        use_meter: (N,) bool, meters with a coefficient.
        fixed_meter: (N,) bool, meters taken at θ = 1 (light load): subtracted from y.
        use_slot: (T,) bool, slots in the fit.
        xmat: (P, T') output rows: one per used meter, then a constant row and the z row.
        yvec: (T',) output.
    """
    n, t_all = e.shape
    col = 0
    for t in range(t_all):
        if not use_slot[t]:
            continue
        v = y[t]
        for i in range(n):
            if fixed_meter[i]:
                v -= e[i, t]
        yvec[col] = v
        row = 0
        for i in range(n):
            if use_meter[i]:
                xmat[row, col] = e[i, t]
                row += 1
        xmat[row, col] = const[t]
        xmat[row + 1, col] = z[t]
        col += 1


@njit(cache=True, nogil=True, fastmath=FASTMATH_FINITE)
def _dot(xmat, i, j):
    """Dot product of design rows i and j (finite by construction)."""
    s = 0.0
    for k in range(xmat.shape[1]):
        s += xmat[i, k] * xmat[j, k]
    return s


@njit(cache=True, nogil=True, fastmath=FASTMATH_FINITE)
def _gram_row(xmat, yvec, xtx, xty, i):
    """Row i of X Xᵀ (from the diagonal on, mirrored) and element i of X y."""
    for j in range(i, xmat.shape[0]):
        s = _dot(xmat, i, j)
        xtx[i, j] = s
        xtx[j, i] = s
    s = 0.0
    for k in range(xmat.shape[1]):
        s += xmat[i, k] * yvec[k]
    xty[i] = s


@njit(cache=True, nogil=True, fastmath=FASTMATH_FINITE)
def _gram(xmat, yvec, xtx, xty):
    """X Xᵀ and X y of a row-major design (rows are regressors); returns yᵀy.

    Serial on purpose: one area is a few hundred microseconds of work, and areas are
    parallelised by the caller (``nogil`` threads), not inside one fit.
    """
    for i in range(xmat.shape[0]):
        _gram_row(xmat, yvec, xtx, xty, i)
    s = 0.0
    for k in range(yvec.shape[0]):
        s += yvec[k] * yvec[k]
    return s


@njit(cache=True, nogil=True, fastmath=FASTMATH_FINITE)
def _gram_rowcol(xmat, yvec, xtx, xty, i):
    """Row and column i of X Xᵀ and element i of X y, after row i of X changed.

    Each entry is the same sum ``_gram`` forms, so the result equals a full recomputation.
    """
    for j in range(xmat.shape[0]):
        s = _dot(xmat, j, i) if j < i else _dot(xmat, i, j)
        xtx[i, j] = s
        xtx[j, i] = s
    s = 0.0
    for k in range(xmat.shape[1]):
        s += xmat[i, k] * yvec[k]
    xty[i] = s


@njit(cache=True, nogil=True, fastmath=FASTMATH_FINITE)
def _gram_patch(xw, yw, xtx0, xty0, src, vecs, xtx, xty):
    """X Xᵀ and X y of a design whose rows are rows of ``xw`` or extra vectors.

    Row a of the new design is ``xw[src[a]]`` for src[a] ≥ 0 (its products with other such
    rows are taken from ``xtx0`` / ``xty0``, the Gram of ``xw``) and ``vecs[−src[a] − 1]``
    otherwise (products computed). A step in a meter changes only that meter's row and adds
    one, so a refit with a step costs O(P · T') instead of O(P² · T').

    Args:
        xw: (P0, T') design rows.
        yw: (T',) target.
        xtx0, xty0: (P0, P0) and (P0,) X Xᵀ and X y of ``xw``.
        src: (P,) int, row sources as above.
        vecs: (V, T') extra rows.
        xtx, xty: (P, P) and (P,) outputs.
    """
    p = src.shape[0]
    n = yw.shape[0]
    for a in range(p):
        sa = src[a]
        for b in range(a, p):
            sb = src[b]
            if sa >= 0 and sb >= 0:
                v = xtx0[sa, sb]
            else:
                ra = xw[sa] if sa >= 0 else vecs[-sa - 1]
                rb = xw[sb] if sb >= 0 else vecs[-sb - 1]
                v = 0.0
                for k in range(n):
                    v += ra[k] * rb[k]
            xtx[a, b] = v
            xtx[b, a] = v
        if sa >= 0:
            xty[a] = xty0[sa]
        else:
            ra = vecs[-sa - 1]
            v = 0.0
            for k in range(n):
                v += ra[k] * yw[k]
            xty[a] = v


@njit(cache=True, nogil=True, fastmath=FASTMATH_FINITE)
def _design_residual(xmat, yvec, beta, out):
    """out = y − βᵀX for a design from ``_design``."""
    for k in range(yvec.shape[0]):
        s = yvec[k]
        for i in range(xmat.shape[0]):
            s -= beta[i] * xmat[i, k]
        out[k] = s


@njit(cache=True, nogil=True, fastmath=FASTMATH_FINITE)
def _lag1_autocorr(yvec, xmat, beta, new_run):
    """Lag-one autocorrelation of the residual y − βᵀX within runs of consecutive slots.

    Σ r_k r_(k−1) over the columns k that continue the previous one, over Σ r_k²; 0 for a
    zero residual.
    """
    n = yvec.shape[0]
    prev = 0.0
    s_rr = 0.0
    s_lag = 0.0
    for k in range(n):
        r = yvec[k]
        for i in range(xmat.shape[0]):
            r -= beta[i] * xmat[i, k]
        s_rr += r * r
        if k > 0 and not new_run[k]:
            s_lag += r * prev
        prev = r
    return s_lag / s_rr if s_rr > 0.0 else 0.0


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _cholesky(a):
    """In-place lower Cholesky factor of a symmetric positive definite matrix; False if not."""
    n = a.shape[0]
    for j in range(n):
        s = a[j, j]
        for k in range(j):
            s -= a[j, k] * a[j, k]
        if s <= 0.0:
            return False
        d = np.sqrt(s)
        a[j, j] = d
        for i in range(j + 1, n):
            s = a[i, j]
            for k in range(j):
                s -= a[i, k] * a[j, k]
            a[i, j] = s / d
    for j in range(n):
        for i in range(j):
            a[i, j] = 0.0
    return True


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _chol_solve(lower, b, out):
    """Solve L Lᵀ x = b with the factor from ``_cholesky``."""
    n = lower.shape[0]
    for i in range(n):
        s = b[i]
        for k in range(i):
            s -= lower[i, k] * out[k]
        out[i] = s / lower[i, i]
    for i in range(n - 1, -1, -1):
        s = out[i]
        for k in range(i + 1, n):
            s -= lower[k, i] * out[k]
        out[i] = s / lower[i, i]


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _ridge_solve(xtx, xty, yty, n_obs, n_meter, ridge, beta, var):
    """Ridge towards θ = 1 for the first ``n_meter`` coefficients; others unpenalised.

    Columns are scaled to unit diagonal before factorising. The penalty on meter i is
    ``ridge · (XᵀX)_ii · (θ_i − 1)²``. ``var`` receives the diagonal of s² (XᵀX + Λ)⁻¹ with
    s² the residual variance (left out when ``var`` is empty). Returns s², or NaN when the
    system is singular.
    """
    p = xtx.shape[0]
    scale = np.empty(p)
    for i in range(p):
        scale[i] = np.sqrt(xtx[i, i]) if xtx[i, i] > 0.0 else 1.0
    a = np.empty((p, p))
    b = np.empty(p)
    for i in range(p):
        for j in range(p):
            a[i, j] = xtx[i, j] / (scale[i] * scale[j])
        b[i] = xty[i] / scale[i]
        if i < n_meter:
            a[i, i] += ridge
            b[i] += ridge * scale[i]  # prior θ = 1 in scaled units
    # tiny jitter keeps an all-zero regressor from breaking the factorisation
    for i in range(p):
        a[i, i] += 1e-12
    if not _cholesky(a):
        return np.nan
    sol = np.empty(p)
    _chol_solve(a, b, sol)
    for i in range(p):
        beta[i] = sol[i] / scale[i]
    # residual sum of squares from the normal equations
    rss = yty
    for i in range(p):
        rss -= 2.0 * beta[i] * xty[i]
        for j in range(p):
            rss += beta[i] * xtx[i, j] * beta[j]
    dof = n_obs - p
    s2 = max(rss, 0.0) / dof if dof > 0 else np.nan
    if var.shape[0] == 0:  # only s² wanted
        return s2
    unit = np.zeros(p)
    col = np.empty(p)
    for i in range(p):
        unit[:] = 0.0
        unit[i] = 1.0
        _chol_solve(a, unit, col)
        var[i] = s2 * col[i] / (scale[i] * scale[i])
    return s2


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _rls(xmat, yvec, lam, delta, theta0, every, traj):
    """Recursive least squares with forgetting factor ``lam`` over the design columns.

    Args:
        xmat: (P, T') design rows (regressors) as from ``_design``.
        yvec: (T',) targets.
        lam: forgetting factor (1 = none).
        delta: initial covariance scale (P0 = delta · I in units scaled by each row's RMS).
        theta0: (P,) starting estimate.
        every: store the estimate every ``every`` observations.
        traj: (K, P) output, row k the estimate after (k+1)·every observations.

    Returns:
        The final (P, P) covariance matrix P (scaled back to the original units).
    """
    p, n = xmat.shape
    scale = np.empty(p)
    for i in range(p):
        s = 0.0
        for k in range(n):
            s += xmat[i, k] * xmat[i, k]
        scale[i] = np.sqrt(s / n) if s > 0.0 else 1.0
    th = np.empty(p)
    for i in range(p):
        th[i] = theta0[i] * scale[i]
    pm = np.zeros((p, p))
    for i in range(p):
        pm[i, i] = delta
    phi = np.empty(p)
    g = np.empty(p)
    k_out = 0
    for k in range(n):
        for i in range(p):
            phi[i] = xmat[i, k] / scale[i]
        for i in range(p):
            s = 0.0
            for j in range(p):
                s += pm[i, j] * phi[j]
            g[i] = s
        den = lam
        for i in range(p):
            den += phi[i] * g[i]
        err = yvec[k]
        for i in range(p):
            err -= phi[i] * th[i]
        for i in range(p):
            th[i] += g[i] * err / den
        for i in range(p):
            for j in range(p):
                pm[i, j] = (pm[i, j] - g[i] * g[j] / den) / lam
        if (k + 1) % every == 0 and k_out < traj.shape[0]:
            for i in range(p):
                traj[k_out, i] = th[i] / scale[i]
            k_out += 1
    out = np.empty((p, p))
    for i in range(p):
        for j in range(p):
            out[i, j] = pm[i, j] / (scale[i] * scale[j])
    return out


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _ma1_factor(new_run, a, b, sub, diag):
    """Bidiagonal Cholesky factor L of a tridiagonal residual covariance (MA(1) noise).

    Within each run of consecutive slots the covariance is ``a`` on the diagonal and ``b``
    next to it; there is no correlation across a run break. Interval energies taken as
    differences of registers shown to a resolution r carry ``frac_{t−1} − frac_t`` of
    rounding: variance r²/6 per slot and −r²/12 between neighbours, which is this structure
    with a = s_w² + 2 s_q², b = −s_q² (s_w² the white part).

    Args:
        new_run: (T',) bool, True where a slot does not follow the previous column's slot.
        a: diagonal (> 0).
        b: off-diagonal (|b| ≤ a / 2 keeps the matrix positive semi-definite).
        sub: (T',) output, L's sub-diagonal (0 at run starts).
        diag: (T',) output, L's diagonal.
    """
    l_prev = 1.0
    for k in range(new_run.shape[0]):
        if new_run[k] or k == 0:
            m = 0.0
        else:
            m = b / l_prev
        d = a - m * m
        ll = np.sqrt(d) if d > 0.0 else 1e-12
        sub[k] = m
        diag[k] = ll
        l_prev = ll


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _whiten(xmat, yvec, sub, diag):
    """Replace the design's rows and target by L⁻¹ applied along the slots, in place.

    Ordinary least squares on the result is generalised least squares for L Lᵀ.
    """
    p, n = xmat.shape
    for k in range(n):
        m = sub[k]
        ll = diag[k]
        if k > 0 and m != 0.0:
            yvec[k] = (yvec[k] - m * yvec[k - 1]) / ll
            for i in range(p):
                xmat[i, k] = (xmat[i, k] - m * xmat[i, k - 1]) / ll
        else:
            yvec[k] = yvec[k] / ll
            for i in range(p):
                xmat[i, k] = xmat[i, k] / ll


@njit(cache=True, nogil=True, fastmath=FASTMATH_FINITE)
def _span_dot(a, b, lo, hi):
    """Σ a[k] · b[k] for lo ≤ k < hi."""
    s = 0.0
    for k in range(lo, hi):
        s += a[k] * b[k]
    return s


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _step_scores(xw, rw, sub, diag, cand, num, cc, cx):
    """Score a step in one meter's coefficient at each candidate column, O(T') in all.

    For a candidate k0 the extra regressor is c = x · 1[k ≥ k0]; its whitened form
    c̃ = L⁻¹ c starts at k0. Outputs per candidate: c̃·r̃ (``num``), c̃·c̃ (``cc``) and c̃·x̃
    (``cx``), from which the caller forms the score statistic of adding c to the fit.

    c̃ is the whitened column cut at k0 plus a decaying term: c̃ = x̃ · 1[k ≥ k0] + a · g
    with a = sub[k0] · x̃[k0 − 1], g[k0] = 1 / diag[k0] and g[k] = −sub[k] / diag[k] · g[k−1]
    after it (L c̃ and L x̃ differ only in row k0). The sums over k ≥ k0 of x̃·r̃, x̃·x̃, g·r̃,
    g·x̃ and g·g all follow from one backward pass, so every slot's scores cost O(1).

    Args:
        xw: (T',) the meter's column whitened (x̃).
        rw: (T',) whitened residual of the current fit.
        sub, diag: the factor from ``_ma1_factor`` (sub = 0, diag = 1: white residual).
        cand: (K,) candidate first columns (sorted or not).
        num, cc, cx: (K,) outputs.
    """
    n = xw.shape[0]
    white = True
    for k in range(n):
        if sub[k] != 0.0 or diag[k] != 1.0:
            white = False
            break
    if white:  # a = 0: the cut column itself; sums between candidates, latest first
        order = np.argsort(cand)
        acc_r = 0.0
        acc_x = 0.0
        end = n
        for jj in range(order.shape[0] - 1, -1, -1):
            j = order[jj]
            k0 = cand[j]
            acc_r += _span_dot(xw, rw, k0, end)
            acc_x += _span_dot(xw, xw, k0, end)
            end = k0
            num[j] = acc_r
            cx[j] = acc_x
            cc[j] = acc_x
        return
    s_xr = np.zeros(n + 1)
    s_xx = np.zeros(n + 1)
    h_r = np.zeros(n + 1)
    h_x = np.zeros(n + 1)
    h_g = np.zeros(n + 1)
    for k in range(n - 1, -1, -1):
        s_xr[k] = s_xr[k + 1] + xw[k] * rw[k]
        s_xx[k] = s_xx[k + 1] + xw[k] * xw[k]
        inv = 1.0 / diag[k]
        mu = -sub[k + 1] * inv if k + 1 < n else 0.0
        h_r[k] = rw[k] * inv + mu * h_r[k + 1]
        h_x[k] = xw[k] * inv + mu * h_x[k + 1]
        h_g[k] = inv * inv + mu * mu * h_g[k + 1]
    for j in range(cand.shape[0]):
        k0 = cand[j]
        a = sub[k0] * xw[k0 - 1] if k0 > 0 else 0.0
        num[j] = s_xr[k0] + a * h_r[k0]
        cx[j] = s_xx[k0] + a * h_x[k0]
        cc[j] = s_xx[k0] + 2.0 * a * h_x[k0] + a * a * h_g[k0]


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _step_scan(xw, rw, sub, diag, rows, cand, s2, z2, ok):
    """Squared score statistics of a step in each of the given meters at each candidate.

    For row r of the whitened design and candidate k0 (see ``_step_scores``):
    z² = (c̃·r̃)² / (s² · (c̃·c̃ − (c̃·x̃)² / x̃·x̃)), 0 where that partial variance is not above
    1e-12 · c̃·c̃ (the step is nearly the meter's own column).

    Args:
        xw: (P, T') whitened design.
        rw: (T',) whitened residual.
        sub, diag: the factor from ``_ma1_factor``.
        rows: (M,) design rows to scan.
        cand: (K,) candidate first columns.
        s2: residual variance.
        z2: (M, K) output.
        ok: (M,) output, False for a row with x̃·x̃ ≤ 0 (its z2 is left 0).
    """
    nc = cand.shape[0]
    num = np.empty(nc)
    cc = np.empty(nc)
    cx = np.empty(nc)
    for m in range(rows.shape[0]):
        x = xw[rows[m]]
        xx = _span_dot(x, x, 0, x.shape[0])
        ok[m] = xx > 0.0
        if not ok[m]:
            for j in range(nc):
                z2[m, j] = 0.0
            continue
        _step_scores(x, rw, sub, diag, cand, num, cc, cx)
        for j in range(nc):
            part = cc[j] - cx[j] * cx[j] / xx
            z2[m, j] = num[j] * num[j] / (s2 * part) if part > 1e-12 * cc[j] else 0.0


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _flow_total(e, w, w_after, first, total):
    """Per slot t: Σ_i c_i,t · E_i,t over the finite E, c = w_after[i] from slot first[i] on,
    w[i] before it (meters in ascending order).

    Args:
        e: (N, T) energies, NaN missing.
        w, w_after: (N,) weights before and after each meter's ``first`` slot.
        first: (N,) int, T for a meter without a change.
        total: (T,) output.
    """
    n, n_t = e.shape
    for t in range(n_t):
        total[t] = 0.0
    for i in range(n):
        for t in range(n_t):
            v = e[i, t]
            c = w_after[i] if t >= first[i] else w[i]
            total[t] += (v if not np.isnan(v) else 0.0) * c


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _meter_stats(e, sum_abs, n_finite):
    """Per meter: Σ|E| and the number of finite values."""
    for i in range(e.shape[0]):
        s = 0.0
        c = 0
        for t in range(e.shape[1]):
            v = e[i, t]
            if not np.isnan(v):
                s += abs(v)
                c += 1
        sum_abs[i] = s
        n_finite[i] = c


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _slot_mask(y, e, need, slot_ok, total):
    """Slots where the supply and every needed meter have a value; Σ of the finite E per slot.

    ``slot_ok`` and ``total`` are outputs of length T.
    """
    n_t = y.shape[0]
    for t in range(n_t):
        slot_ok[t] = not np.isnan(y[t])
        total[t] = 0.0
    for i in range(e.shape[0]):
        nd = need[i]
        for t in range(n_t):
            v = e[i, t]
            if np.isnan(v):
                if nd:
                    slot_ok[t] = False
            else:
                total[t] += v
