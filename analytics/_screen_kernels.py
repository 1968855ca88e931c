"""Private numba kernels of manual-read screening (估抄 / 漏抄 / 错抄).

Small and pure like ``analytics._kernels``. The public wrapper is
:func:`analytics.screening.screen_manual_reads`.
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
N_EV = 8


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _swap_close(value, target, tol):
    """True when swapping two adjacent digits of ``value``'s integer part lands near target."""
    iv = np.int64(np.floor(value))
    frac = value - iv
    digits = np.empty(20, dtype=np.int64)
    n = 0
    t = iv
    while t > 0 and n < 20:
        digits[n] = t % 10
        t //= 10
        n += 1
    for i in range(n - 1):
        if digits[i] == digits[i + 1]:
            continue
        # swap digit i and i+1 (positions counted from the right)
        p_i = 10.0**i
        p_j = 10.0 ** (i + 1)
        swapped = iv - digits[i] * p_i - digits[i + 1] * p_j + digits[i + 1] * p_i
        swapped += digits[i] * p_j
        if abs(swapped + frac - target) <= tol:
            return True
    return False


@njit(cache=True, nogil=True, parallel=True, fastmath=FASTMATH)
def _screen_reads(reads, min_history, avg_tol, rel_tol, scores, evidence):
    """Score manual register reads for 估抄, 漏抄 and 错抄.

    Args:
        reads: (M, K) reads in date order, NaN for a read not delivered.
        min_history: increments needed before a read is judged against the average.
        avg_tol: absolute tolerance (register units) for "equals previous + average".
        rel_tol: relative tolerance for a read being "far" from / "near" the expectation.
        scores: (M, K, 3) output: estimated, skipped, error scores in [0, 1].
        evidence: (M, K) uint16 output, bit ``EV_*`` per finding.
    """
    n_k = reads.shape[1]
    for m in prange(reads.shape[0]):
        incs = np.full(n_k, np.nan)
        prev_idx = -1
        for k in range(n_k):
            r = reads[m, k]
            if np.isnan(r):
                continue
            if prev_idx >= 0:
                incs[k] = (r - reads[m, prev_idx]) / (k - prev_idx)
            prev_idx = k
        prev_idx = -1
        for k in range(n_k):
            r = reads[m, k]
            # history: average of earlier increments
            s = 0.0
            n = 0
            for i in range(k):
                if not np.isnan(incs[i]) and incs[i] >= 0.0:
                    s += incs[i]
                    n += 1
            avg = s / n if n > 0 else np.nan
            if np.isnan(r):
                if prev_idx >= 0 and k + 1 < n_k and n > 0:
                    scores[m, k, 1] = 1.0
                    evidence[m, k] |= np.uint16(1 << EV_MISSING)
                continue
            if prev_idx < 0:
                prev_idx = k
                continue
            gap = k - prev_idx
            prev = reads[m, prev_idx]
            inc = incs[k]
            est_score = 0.0
            if n >= min_history and avg > 0.0:
                expected = prev + avg * gap
                near = max(avg_tol, rel_tol * avg * gap)
                if abs(r - expected) <= avg_tol:
                    est_score += 0.5
                    evidence[m, k] |= np.uint16(1 << EV_PLUS_AVERAGE)
                if inc == 0.0:
                    scores[m, k, 1] = 1.0
                    evidence[m, k] |= np.uint16(1 << EV_COPIED)
                far = abs(r - expected) > max(avg_tol, 0.5 * avg * gap)
                if far:
                    if abs(r * 10.0 - expected) <= near or abs(r / 10.0 - expected) <= near:
                        scores[m, k, 2] = 1.0
                        evidence[m, k] |= np.uint16(1 << EV_TIMES_TEN)
                    elif _swap_close(r, expected, near):
                        scores[m, k, 2] = 1.0
                        evidence[m, k] |= np.uint16(1 << EV_TRANSPOSED)
                # a low read that the next read catches up
                nxt = -1
                for i in range(k + 1, n_k):
                    if not np.isnan(reads[m, i]):
                        nxt = i
                        break
                if nxt > 0 and inc < 0.5 * avg:
                    inc2 = incs[nxt]
                    both = (r - prev) + (reads[m, nxt] - r)
                    span = avg * (nxt - prev_idx)
                    if inc2 > 1.5 * avg and abs(both - span) <= 0.5 * span:
                        scores[m, k, 2] = max(scores[m, k, 2], 0.8)
                        est_score += 0.3
                        evidence[m, k] |= np.uint16(1 << EV_CATCH_UP)
            frac = r - np.floor(r)
            if frac == 0.0 and r % 10.0 == 0.0 and r > 0.0:
                est_score += 0.3 if r % 100.0 == 0.0 else 0.2
                evidence[m, k] |= np.uint16(1 << EV_ROUND)
            if k >= 1 and not np.isnan(inc) and inc > 0.0:
                p_inc = incs[prev_idx]
                if not np.isnan(p_inc) and abs(inc - p_inc) <= 1e-9 * max(1.0, inc):
                    est_score += 0.3
                    evidence[m, k] |= np.uint16(1 << EV_SAME_INCREMENT)
            scores[m, k, 0] = min(est_score, 1.0)
            prev_idx = k
