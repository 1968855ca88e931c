"""Private numba kernels of manual-read screening (估抄 / 漏抄 / 错抄).

Small and pure like ``analytics._kernels``. The public wrapper is
:func:`analytics.screening.screen_manual_reads`.

Per meter the reads are compared with the line through their neighbours: the residual of a
read is its distance from the interpolation between the nearest earlier and later reads that
are not themselves suspect (a read far off the line that is the largest deviation around it is
suspect, and its neighbours are judged without it). The residuals' robust spread (1.4826 ×
median absolute residual) is the meter's own scale of how far honest reads stray from the line.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from analytics._kernels import FASTMATH

# ---------------------------------------------------------------------------------------------
# VEE: manual-read screening (估抄 / 漏抄 / 错抄)
# ---------------------------------------------------------------------------------------------

EV_PLUS_AVERAGE = 0
EV_ROUND = 1
EV_SAME_INCREMENT = 2
EV_MISSING = 3
EV_COPIED = 4
EV_TIMES_TEN = 5
EV_TRANSPOSED = 6
EV_CATCH_UP = 7
EV_ROUND_INCREMENT = 8
EV_DIGIT_SLIP = 9
EV_NEIGHBOUR = 10
EV_OUT_OF_SEQUENCE = 11
EV_AMI_MISMATCH = 12
EV_AMI_MATCH = 13
N_EV = 14

# weights of the 估抄 evidence (a read scoring 0.5 or more counts as estimated)
W_ROUND_INCREMENT = 0.45  # the increment is a whole number of kWh: the decimals did not move
W_ROUND_10 = 0.5  # the read is a multiple of 10 kWh (on a book that carries decimals)
W_ROUND_100 = 0.6
W_PLUS_AVERAGE = 0.15  # previous + average increment, within the reader's rounding
W_SAME_INCREMENT = 0.3
W_CATCH_UP = 0.25  # off the line of its neighbours, and the next read is back on it
W_CATCH_UP_STRONG = 0.35
#: kWh within which an out-of-line read "equals" another meter's read of the cycle: what a
#: household uses in the minutes between two reads of one round
NEIGHBOUR_TOL = 0.3


@njit(cache=True, nogil=True)
def _int_digits(iv, digits):
    """Digits of a non-negative integer, least significant first; returns their count."""
    n = 0
    t = iv
    while t > 0 and n < digits.size:
        digits[n] = t % 10
        t //= 10
        n += 1
    return n


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _swap_close(value, target, tol):
    """True when swapping two adjacent digits of ``value``'s integer part lands near target."""
    iv = np.int64(np.floor(value))
    frac = value - iv
    digits = np.empty(20, dtype=np.int64)
    n = _int_digits(iv, digits)
    for i in range(n - 1):
        if digits[i] == digits[i + 1]:
            continue
        p_i = 10.0**i
        p_j = 10.0 ** (i + 1)
        swapped = iv - digits[i] * p_i - digits[i + 1] * p_j + digits[i + 1] * p_i
        swapped += digits[i] * p_j
        if abs(swapped + frac - target) <= tol:
            return True
    return False


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _digit_close(value, target, tol):
    """True when changing one digit of ``value``'s integer part lands near target."""
    iv = np.int64(np.floor(value))
    digits = np.empty(20, dtype=np.int64)
    n = _int_digits(iv, digits)
    diff = target - value
    for i in range(n):
        p = 10.0**i
        j = np.floor(diff / p + 0.5)
        if j == 0.0 or abs(j) > 9.0:
            continue
        d = digits[i] + j
        if d < 0 or d > 9 or (i == n - 1 and d == 0 and n > 1):
            continue
        if abs(value + j * p - target) <= tol:
            return True
    return False


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _slip(value, target, tol):
    """Which slip of the pen turns ``target`` into ``value``: an ``EV_*`` bit or −1."""
    if abs(value / 10.0 - target) <= tol or abs(value * 10.0 - target) <= tol:
        return EV_TIMES_TEN
    if _swap_close(value, target, tol):
        return EV_TRANSPOSED
    if _digit_close(value, target, tol):
        return EV_DIGIT_SLIP
    return -1


@njit(cache=True, nogil=True)
def _cents(x):
    return np.int64(np.floor(x * 100.0 + 0.5))


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _residuals(r, idx, n, suspect, rate, e, interp, span):
    """Residual of each delivered read against the line of its non-suspect neighbours.

    ``idx[:n]`` are the delivered columns; ``e``/``interp`` are indexed like ``idx``;
    ``span`` is the residual's scale factor relative to a read between two neighbours one
    cycle away on each side (1.0), larger across wider gaps and at the ends.
    """
    for a in range(n):
        k = idx[a]
        p = -1
        for b in range(a - 1, -1, -1):
            if not suspect[b]:
                p = b
                break
        q = -1
        for b in range(a + 1, n):
            if not suspect[b]:
                q = b
                break
        if p >= 0 and q >= 0:
            kp, kq = idx[p], idx[q]
            interp[a] = r[kp] + (r[kq] - r[kp]) * (k - kp) / (kq - kp)
            span[a] = np.sqrt(2.0 * (k - kp) * (kq - k) / (kq - kp))
        elif p >= 0:
            interp[a] = r[idx[p]] + rate * (k - idx[p])
            span[a] = np.sqrt(2.0 * (k - idx[p]))
        elif q >= 0:
            interp[a] = r[idx[q]] - rate * (idx[q] - k)
            span[a] = np.sqrt(2.0 * (idx[q] - k))
        else:
            interp[a] = np.nan
            span[a] = 1.0
        e[a] = r[k] - interp[a]


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _robust_scale(e, span, suspect, n, floor):
    """1.4826 × median |residual / span| of the non-suspect reads, at least ``floor``."""
    buf = np.empty(n)
    c = 0
    for a in range(n):
        if not suspect[a] and not np.isnan(e[a]):
            buf[c] = abs(e[a]) / max(span[a], 1e-9)
            c += 1
    if c == 0:
        return floor
    return max(1.4826 * np.median(buf[:c]), floor)


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _near_other(col_vals, col_rows, col_n, k, row, value, tol):
    """True when another meter's read of cycle ``k`` is within ``tol`` of ``value``."""
    n = col_n[k]
    if n == 0:
        return False
    lo = np.searchsorted(col_vals[k, :n], value - tol)
    for j in range(lo, n):
        v = col_vals[k, j]
        if v > value + tol:
            break
        if col_rows[k, j] != row:
            return True
    return False


@njit(cache=True, nogil=True, parallel=True, fastmath=FASTMATH)
def _screen_reads(reads, reference, ref_tol, col_vals, col_rows, col_n, min_history, avg_tol,
                  z_suspect, z_error, scores, evidence):
    """Score manual register reads for 估抄, 漏抄 and 错抄.

    Args:
        reads: (M, K) reads in date order, NaN for a read not delivered.
        reference: (M, K) the meter's automatic (AMI) register at the read's instant, NaN
            where unknown.
        ref_tol: (M, K) how far a read may be from ``reference`` and still agree.
        col_vals: (K, M) each cycle's delivered reads, ascending (first ``col_n[k]`` valid).
        col_rows: (K, M) the meter row of each of ``col_vals``.
        col_n: (K,) delivered reads per cycle.
        min_history: increments needed before a read is judged against the average.
        avg_tol: register units within which a read "equals" previous + average.
        z_suspect: residual (in the meter's scale) beyond which a read is set aside when
            judging its neighbours.
        z_error: residual beyond which a read that a slip of the pen explains is 错抄.
        scores: (M, K, 3) output: estimated, skipped, error scores in [0, 1].
        evidence: (M, K) uint16 output, bit ``EV_*`` per finding.
    """
    n_k = reads.shape[1]
    for m in prange(reads.shape[0]):
        r = reads[m]
        idx = np.empty(n_k, dtype=np.int64)
        n = 0
        for k in range(n_k):
            if not np.isnan(r[k]):
                idx[n] = k
                n += 1
        # 漏抄: a cycle without a read, after two reads and before the last cycle
        seen = 0
        for k in range(n_k):
            if not np.isnan(r[k]):
                seen += 1
                continue
            if seen >= 2 and k + 1 < n_k:
                scores[m, k, 1] = 1.0
                evidence[m, k] |= np.uint16(1 << EV_MISSING)
        if n == 0:
            continue
        # per-cycle use: median over consecutive delivered pairs (robust to slips)
        rates = np.empty(max(n - 1, 1))
        for a in range(1, n):
            rates[a - 1] = (r[idx[a]] - r[idx[a - 1]]) / (idx[a] - idx[a - 1])
        rate = np.median(rates[: n - 1]) if n >= 2 else np.nan
        if not rate > 0.0:
            rate = 0.0
        floor = max(0.1, 0.02 * rate)
        suspect = np.zeros(n, dtype=np.bool_)
        e = np.empty(n)
        interp = np.empty(n)
        span = np.empty(n)
        if n >= 3:
            # set aside the worst reads until the rest lie on their neighbours' line
            for _ in range(6):
                _residuals(r, idx, n, suspect, rate, e, interp, span)
                s = _robust_scale(e, span, suspect, n, floor)
                added = False
                for a in range(n):
                    if suspect[a]:
                        continue
                    z = abs(e[a]) / (s * span[a])
                    worst = True
                    for b in (a - 1, a + 1):
                        if 0 <= b < n and not suspect[b] and abs(e[b]) > abs(e[a]):
                            worst = False
                    if z >= z_suspect and worst:
                        suspect[a] = True
                        added = True
                if not added:
                    break
        else:
            for a in range(n):
                e[a] = np.nan
                interp[a] = np.nan
                span[a] = 1.0
            s = floor
        # does this meter's book carry decimals? then whole and round values stand out
        cents = 0
        for a in range(n):
            if _cents(r[idx[a]]) % 100 != 0:
                cents += 1
        decimals = cents * 2 >= n
        w10 = W_ROUND_10 if decimals else 0.2
        w100 = W_ROUND_100 if decimals else 0.3
        for a in range(n):
            k = idx[a]
            v = r[k]
            est = 0.0
            err = 0.0
            ev = 0
            if a > 0:
                kp = idx[a - 1]
                prev = r[kp]
                gap = k - kp
                inc = v - prev
                if inc == 0.0 and rate > 0.0:  # the meter is used, the book did not move
                    scores[m, k, 1] = 1.0
                    ev |= 1 << EV_COPIED
                if inc > 0.0 and _cents(v) % 100 == _cents(prev) % 100 and _cents(v) % 100 != 0:
                    est += W_ROUND_INCREMENT
                    ev |= 1 << EV_ROUND_INCREMENT
                # the book's average over (up to) the last 30 cycles, as a reader takes it
                first = a - 1
                while first > 0 and idx[first - 1] >= kp - 30:
                    first -= 1
                if a - 1 - first >= min_history:
                    avg = (prev - r[idx[first]]) / (kp - idx[first])
                    if avg > 0.0 and abs(v - (prev + avg * gap)) <= avg_tol:
                        est += W_PLUS_AVERAGE
                        ev |= 1 << EV_PLUS_AVERAGE
                if a > 1 and inc > 0.0:
                    kpp = idx[a - 2]
                    p_inc = (prev - r[kpp]) / (kp - kpp)
                    if abs(inc / gap - p_inc) <= 0.005:
                        est += W_SAME_INCREMENT
                        ev |= 1 << EV_SAME_INCREMENT
            c = _cents(v)
            if c > 0 and c % 1000 == 0:
                est += w100 if c % 10000 == 0 else w10
                ev |= 1 << EV_ROUND
            # off the line of its neighbours
            if not np.isnan(e[a]):
                scale = s * span[a]
                z = abs(e[a]) / scale
                has_next = a + 1 < n
                big = max(z_error * scale, 1.0)
                explained = False
                # a value with the marks of one written from the book (a whole number of kWh
                # added, a round figure) is not a misread: a misread keeps the meter's decimals
                booked = est >= W_ROUND_INCREMENT
                if not booked and abs(e[a]) >= big:
                    tol = max(3.0 * scale, 0.5)
                    slip = _slip(v, interp[a], tol)
                    if slip >= 0:
                        err = 1.0
                        ev |= 1 << slip
                        explained = True
                    elif _near_other(col_vals, col_rows, col_n, k, m, v, NEIGHBOUR_TOL):
                        err = 0.95
                        ev |= 1 << EV_NEIGHBOUR
                        explained = True
                if suspect[a] and has_next:  # a fact either way; 估抄 evidence if no slip
                    ev |= 1 << EV_CATCH_UP
                    if not explained:
                        est += W_CATCH_UP_STRONG if z >= 2.0 * z_suspect else W_CATCH_UP
                # far beyond what a guess is off by: a read of something else
                far = max(2.0 * z_error * scale, 3.0 * rate * span[a], 5.0)
                if not explained and not booked and abs(e[a]) >= far:
                    err = 0.7
                    ev |= 1 << EV_OUT_OF_SEQUENCE
            # the meter's own automatic register, when there is one, decides
            ref = reference[m, k]
            if not np.isnan(ref):
                d = v - ref
                if abs(d) <= ref_tol[m, k]:  # the read is what the meter showed
                    est = 0.0
                    err = 0.0
                    scores[m, k, 1] = 0.0
                    ev |= 1 << EV_AMI_MATCH
                else:
                    ev |= 1 << EV_AMI_MISMATCH
                    slip = _slip(v, ref, ref_tol[m, k] + 0.01)
                    if slip >= 0:
                        ev |= 1 << slip
                        err = 1.0
                    elif est >= 0.3 or abs(d) <= max(3.0 * rate, 5.0):
                        est = 1.0
                    else:
                        err = 1.0
            scores[m, k, 0] = min(est, 1.0)
            scores[m, k, 2] = max(scores[m, k, 2], err)
            evidence[m, k] |= np.uint16(ev)
