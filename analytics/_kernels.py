"""Private numba kernels of the analytics core.

Every function here is small and pure: it takes contiguous arrays and scalars, writes into
output buffers handed in by its caller, does no I/O and reads no mutable globals. Optional
inputs are passed as empty arrays of the same rank (shape ``(0, 0)`` or ``(0,)``), so one
compiled signature serves every call. The public wrappers in ``analytics.lineloss``,
``analytics.vee`` and ``analytics.meter_error`` validate and coerce the inputs.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

#: fastmath flags for every kernel (one place, see HOUSE_STYLE R17). Off: NaN is data here.
FASTMATH = False
#: Flags for kernels whose inputs are finite by construction (the balance fit's design):
#: reassociation lets the dot products vectorise; NaN/Inf semantics are kept.
FASTMATH_FINITE = {"reassoc", "contract"}
#: Flags for NaN-aware reductions: reassociation only, so ``v == v`` still tests for NaN.
FASTMATH_SUM = {"reassoc"}

# ---------------------------------------------------------------------------------------------
# Line loss
# ---------------------------------------------------------------------------------------------

#: Columns of the per-(area, period) accumulator filled by ``_line_loss_accumulate``.
Q_SUPPLY = 0  # supply-side energy: supply meters' forward + customers' reverse
Q_SALES = 1  # sales-side energy: customers' forward + supply meters' reverse
Q_EST_SALES = 2  # the part of Q_SALES that comes from estimated register values
Q_MISS_SUPPLY = 3  # supply-side terms missing (no value, actual or estimated)
Q_MISS_SALES = 4  # sales-side terms missing
Q_SUPPLY_NOT_ACTUAL = 5  # supply-meter terms that are missing or estimated
Q_N_SUPPLY = 6  # supply-meter terms in the area (any value or none)
Q_CUST_TOTAL = 7  # customer terms expected
Q_CUST_PRESENT = 8  # customer terms present (actual or estimated)
N_Q = 9


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _wrapped_delta(start, end, modulus):
    """Register difference with rollover; NaN for a missing end or a register that went back.

    A decrease counts as a rollover when it exceeds half the register's span (``modulus``);
    a smaller decrease is negative consumption, a fault, and gives NaN.
    """
    d = end - start
    if d >= 0.0:
        return d
    if modulus > 0.0 and -d > 0.5 * modulus:
        return d + modulus
    return np.nan


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _term_energy(reg, m, p, modulus, ex_ptr, ex_period, ex_old_end, ex_new_start):
    """Energy (register units) of meter ``m`` over period ``p``, meter exchanges included."""
    start = reg[m, p]
    end = reg[m, p + 1]
    if np.isnan(start) or np.isnan(end):
        return np.nan
    if ex_ptr.shape[0] > 0:
        lo = ex_ptr[m]
        hi = ex_ptr[m + 1]
        if lo < hi:
            total = 0.0
            seg_start = start
            for k in range(lo, hi):
                if ex_period[k] != p:
                    continue
                d = _wrapped_delta(seg_start, ex_old_end[k], modulus)
                total += d
                seg_start = ex_new_start[k]
            d = _wrapped_delta(seg_start, end, modulus)
            return total + d
    return _wrapped_delta(start, end, modulus)


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _check_meters(area, role, out):
    """One pass over the meter metadata (serial: a parallel region costs more than it saves
    on a busy two-core machine for 16 bytes a meter).

    ``out`` (3,) int64 receives: the largest area index (−1 with no meters), 1 if ``area`` is
    not sorted (else 0), and the number of meters with a negative area or a role other than
    0/1.
    """
    n = area.shape[0]
    block = 16384
    n_b = (n + block - 1) // block
    mx = np.full(n_b, -1, dtype=np.int64)
    unsorted = np.zeros(n_b, dtype=np.int64)
    bad = np.zeros(n_b, dtype=np.int64)
    for b in range(n_b):
        lo = b * block
        hi = min(n, lo + block)
        prev = area[lo - 1] if lo > 0 else area[lo]
        m_x = -1
        u = 0
        c = 0
        for m in range(lo, hi):
            a = area[m]
            r = role[m]
            m_x = a if a > m_x else m_x
            u += 1 if a < prev else 0
            c += 1 if (a < 0 or (r != 0 and r != 1)) else 0
            prev = a
        mx[b] = m_x
        unsorted[b] = u
        bad[b] = c
    out[0] = mx.max() if n_b > 0 else -1
    out[1] = 1 if unsorted.sum() > 0 else 0
    out[2] = bad.sum()


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _segments(sorted_area, seg):
    """seg[a] = first position of area ≥ a in ``sorted_area`` (binary search per area)."""
    n = sorted_area.shape[0]
    for a in range(seg.shape[0]):
        lo = 0
        hi = n
        while lo < hi:
            mid = (lo + hi) // 2
            if sorted_area[mid] < a:
                lo = mid + 1
            else:
                hi = mid
        seg[a] = lo


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _line_loss_block(
    a_lo, a_hi, fwd, rev, fwd_est, rev_est, order, seg_ptr, role, multiplier, bidirectional,
    modulus, ex_ptr, ex_period, ex_old_end, ex_new_start, ex_old_end_rev, ex_new_start_rev, acc,
):
    """Areas ``a_lo`` … ``a_hi − 1`` of ``_line_loss_accumulate`` (serial)."""
    n_periods = fwd.shape[1] - 1
    has_rev = rev.shape[0] > 0
    has_fe = fwd_est.shape[0] > 0
    has_re = rev_est.shape[0] > 0
    has_order = order.shape[0] > 0
    has_ex = ex_ptr.shape[0] > 0
    for a in range(a_lo, a_hi):
        lo = seg_ptr[a]
        hi = seg_ptr[a + 1]
        for p in range(n_periods):
            supply = 0.0
            sales = 0.0
            est_sales = 0.0
            miss_supply = 0
            miss_sales = 0
            not_actual = 0
            n_supply = 0
            cust_total = 0
            cust_present = 0
            for kk in range(lo, hi):
                m = order[kk] if has_order else kk
                sup = role[m] == 1
                mult = multiplier[m]
                mod = modulus[m]
                exchanged = has_ex and ex_ptr[m] < ex_ptr[m + 1]
                # forward term: supply side for a supply meter, sales side for a customer
                if exchanged:
                    e = _term_energy(fwd, m, p, mod, ex_ptr, ex_period, ex_old_end, ex_new_start)
                else:
                    e = _wrapped_delta(fwd[m, p], fwd[m, p + 1], mod)
                est = has_fe and (fwd_est[m, p] or fwd_est[m, p + 1])
                ok = not np.isnan(e)
                if sup:
                    n_supply += 1
                    not_actual += 0 if (ok and not est) else 1
                    if ok:
                        supply += e * mult
                    else:
                        miss_supply += 1
                else:
                    cust_total += 1
                    if ok:
                        cust_present += 1
                        sales += e * mult
                        if est:
                            est_sales += e * mult
                    else:
                        miss_sales += 1
                if not (has_rev and bidirectional[m]):
                    continue
                # reverse term: sales side for a supply meter, supply side for a customer
                if exchanged:
                    e = _term_energy(
                        rev, m, p, mod, ex_ptr, ex_period, ex_old_end_rev, ex_new_start_rev
                    )
                else:
                    e = _wrapped_delta(rev[m, p], rev[m, p + 1], mod)
                est = has_re and (rev_est[m, p] or rev_est[m, p + 1])
                ok = not np.isnan(e)
                if sup:
                    n_supply += 1
                    not_actual += 0 if (ok and not est) else 1
                    if ok:
                        sales += e * mult
                        if est:
                            est_sales += e * mult
                    else:
                        miss_sales += 1
                else:
                    cust_total += 1
                    if ok:
                        cust_present += 1
                        supply += e * mult
                    else:
                        miss_supply += 1
            acc[a, p, Q_SUPPLY] = supply
            acc[a, p, Q_SALES] = sales
            acc[a, p, Q_EST_SALES] = est_sales
            acc[a, p, Q_MISS_SUPPLY] = miss_supply
            acc[a, p, Q_MISS_SALES] = miss_sales
            acc[a, p, Q_SUPPLY_NOT_ACTUAL] = not_actual
            acc[a, p, Q_N_SUPPLY] = n_supply
            acc[a, p, Q_CUST_TOTAL] = cust_total
            acc[a, p, Q_CUST_PRESENT] = cust_present


@njit(cache=True, nogil=True, parallel=True, fastmath=FASTMATH)
def _line_loss_accumulate(
    fwd,
    rev,
    fwd_est,
    rev_est,
    order,
    seg_ptr,
    role,
    multiplier,
    bidirectional,
    modulus,
    ex_ptr,
    ex_period,
    ex_old_end,
    ex_new_start,
    ex_old_end_rev,
    ex_new_start_rev,
    acc,
):
    """Sum each area's balance terms per period.

    Args:
        fwd: (M, P+1) forward registers at period boundaries, NaN missing.
        rev: (M, P+1) reverse registers, or (0, 0) when no meter is bidirectional.
        fwd_est: (M, P+1) bool, True where a forward value is an estimate, or (0, 0).
        rev_est: like ``fwd_est`` for ``rev``.
        order: (M,) meter indices grouped by area, or (0,) when meters are already sorted by
            area; ``seg_ptr`` (A+1) delimits each area.
        role: (M,) 1 for the area's supply (summary) meters, 0 for customers.
        multiplier: (M,) CT × PT.
        bidirectional: (M,) bool, the meter has a reverse term.
        modulus: (M,) register span at which it rolls over to zero, 0 for none.
        ex_ptr: (M+1,) offsets into the exchange arrays (sorted by meter, period), or (0,).
        ex_period: exchange period index.
        ex_old_end: the old meter's forward register at removal.
        ex_new_start: the new meter's forward register at installation.
        ex_old_end_rev: as ``ex_old_end`` for the reverse register.
        ex_new_start_rev: as ``ex_new_start`` for the reverse register.
        acc: (A, P, N_Q) output.
    """
    n_areas = seg_ptr.shape[0] - 1
    block = 64
    for b in prange((n_areas + block - 1) // block):
        _line_loss_block(
            b * block, min(n_areas, (b + 1) * block), fwd, rev, fwd_est, rev_est, order,
            seg_ptr, role, multiplier, bidirectional, modulus, ex_ptr, ex_period, ex_old_end,
            ex_new_start, ex_old_end_rev, ex_new_start_rev, acc,
        )


# ---------------------------------------------------------------------------------------------
# VEE: validation
# ---------------------------------------------------------------------------------------------

#: Rule columns of the per-meter flag counts (order of ``analytics.vee.RULES``).
R_GAP = 0
R_DUPLICATE = 1
R_CLOCK_TOLERANCE = 2
R_TIME_RESET = 3
R_NEGATIVE = 4
R_ROLLOVER = 5
R_SPIKE = 6
R_HIGH = 7
R_LOW = 8
R_ZERO = 9
R_ZERO_OUTAGE = 10
R_REG_VS_INT = 11
R_TOTAL_VS_TARIFFS = 12
R_MULTIPLIER_CHANGE = 13
R_READ_AFTER_REMOVAL = 14
N_RULES = 15

#: Bits of the per-slot flag mask (uint8): the rules that point at one slot.
S_GAP = 0
S_NEGATIVE = 1
S_SPIKE = 2
S_READ_AFTER_REMOVAL = 3

#: Columns of the per-meter completeness summary.
C_FIRST = 0
C_LAST = 1
C_EXPECTED = 2
C_RECEIVED = 3
C_GAPS = 4
C_GAP_MAX = 5
C_ESTIMATED = 6
N_C = 7

#: Positions in the ``params`` vector of ``_vee_intervals``.
P_SPIKE_RATIO = 0
P_SPIKE_MIN = 1
P_HIGH_FACTOR = 2
P_LOW_FACTOR = 3
P_HISTORY_MIN = 4
P_REG_ABS_TOL = 5
P_REG_REL_TOL = 6
N_P = 7


@njit(cache=True, nogil=True, fastmath=FASTMATH_SUM)
def _day_stats(day):
    """One day's values (1-D view): Σ received, received, non-zero, negative, highest.

    Branch-free so that it vectorises; ``v == v`` is the NaN test (no ``nnan`` flag). Taking
    a 1-D view lets the loop index be provably non-negative (no wrap-around code).
    """
    s = 0.0
    n_recv = 0
    n_nz = 0
    n_neg = 0
    for j in range(day.shape[0]):
        v = day[j]
        ok = v == v
        s += v if ok else 0.0
        n_recv += 1 if ok else 0
        n_nz += 1 if (ok and v != 0.0) else 0
        n_neg += 1 if v < 0.0 else 0
    # a separate loop: mixed with the sums above the maximum stops vectorisation
    mx = -np.inf
    for j in range(day.shape[0]):
        v = day[j]
        mx = v if v > mx else mx
    return s, n_recv, n_nz, n_neg, mx


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _third_highest(x, m, base, spd):
    """Third-highest received value of a day, and the slot of the highest."""
    t1 = -np.inf
    t2 = -np.inf
    t3 = -np.inf
    i1 = -1
    for j in range(spd):
        v = x[m, base + j]
        if v > t1:
            t3 = t2
            t2 = t1
            t1 = v
            i1 = base + j
        elif v > t2:
            t3 = t2
            t2 = v
        elif v > t3:
            t3 = v
    return t3, i1


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _gap_scan(x, m, slot_flags, summ):
    """First, last, gap runs and longest gap of a row with missing slots; flags gap slots.

    Returns the number of missing slots between first and last.
    """
    row = x[m]
    n_slots = row.shape[0]
    first = 0
    while first < n_slots and row[first] != row[first]:
        first += 1
    if first == n_slots:
        summ[m, C_FIRST] = -1
        summ[m, C_LAST] = -1
        summ[m, C_EXPECTED] = 0
        summ[m, C_GAPS] = 0
        summ[m, C_GAP_MAX] = 0
        return 0
    last = n_slots - 1
    while row[last] != row[last]:
        last -= 1
    # counts by comparing neighbours (vectorises); runs only when there are several gaps
    n_gap = 0
    gaps = 0
    inner = row[first : last + 1]
    for s in range(1, inner.shape[0]):
        v = inner[s]
        u = inner[s - 1]
        miss = v != v
        n_gap += 1 if miss else 0
        gaps += 1 if (miss and u == u) else 0
    gap_max = n_gap
    if gaps > 1:
        run = 0
        gap_max = 0
        for s in range(inner.shape[0]):
            v = inner[s]
            run = run + 1 if v != v else 0
            gap_max = run if run > gap_max else gap_max
    if n_gap > 0 and slot_flags.shape[0] > 0:
        flags = slot_flags[m]
        for s in range(first, last + 1):
            if row[s] != row[s]:
                flags[s] |= np.uint8(1 << S_GAP)
    summ[m, C_FIRST] = first
    summ[m, C_LAST] = last
    summ[m, C_EXPECTED] = last - first + 1
    summ[m, C_GAPS] = gaps
    summ[m, C_GAP_MAX] = gap_max
    return n_gap


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _vee_interval_rows(
    x, lo, hi, spd, reg, modulus, outage, history, removed_slot, estimated, params, counts,
    summ, slot_flags, day_flags,
):
    """Validate interval rows ``lo`` … ``hi − 1`` (see ``_vee_intervals``).

    One call handles a block of rows: passing fifteen arrays costs more than a row's work.
    """
    n_slots = x.shape[1]
    n_days = n_slots // spd
    has_reg = reg.shape[0] > 0
    has_out = outage.shape[0] > 0
    has_hist = history.shape[0] > 0
    hist_by_day = history.shape[1] > 1
    has_sf = slot_flags.shape[0] > 0
    spike_ratio = params[P_SPIKE_RATIO]
    spike_min = params[P_SPIKE_MIN]
    high_f = params[P_HIGH_FACTOR]
    low_f = params[P_LOW_FACTOR]
    hist_min = params[P_HISTORY_MIN]
    reg_abs = params[P_REG_ABS_TOL]
    reg_rel = params[P_REG_REL_TOL]

    for m in range(lo, hi):
        received = 0
        n_neg = 0
        for d in range(n_days):
            base = d * spd
            day_sum, n_recv, n_nz, n_neg_d, mx = _day_stats(x[m, base : base + spd])
            received += n_recv
            n_neg += n_neg_d
            if n_recv == 0:
                continue
            if n_nz == 0:
                any_out = False
                if has_out:
                    for j in range(base, base + spd):
                        if outage[m, j]:
                            any_out = True
                            break
                if any_out:
                    counts[m, R_ZERO_OUTAGE] += 1
                    day_flags[m, d] |= np.uint16(1 << R_ZERO_OUTAGE)
                else:
                    counts[m, R_ZERO] += 1
                    day_flags[m, d] |= np.uint16(1 << R_ZERO)
            if n_recv >= 3 and mx >= spike_min:
                t3, i1 = _third_highest(x, m, base, spd)
                if mx > spike_ratio * t3:
                    counts[m, R_SPIKE] += 1
                    day_flags[m, d] |= np.uint16(1 << R_SPIKE)
                    if has_sf:
                        slot_flags[m, i1] |= np.uint8(1 << S_SPIKE)
            if n_recv == spd:
                if has_hist:
                    ref = history[m, d] if hist_by_day else history[m, 0]
                    if ref >= hist_min:
                        if day_sum > high_f * ref:
                            counts[m, R_HIGH] += 1
                            day_flags[m, d] |= np.uint16(1 << R_HIGH)
                        elif n_nz > 0 and day_sum < low_f * ref:
                            counts[m, R_LOW] += 1
                            day_flags[m, d] |= np.uint16(1 << R_LOW)
                if has_reg:
                    delta = _wrapped_delta(reg[m, d], reg[m, d + 1], modulus[m])
                    tol = reg_abs + reg_rel * abs(delta)
                    if not np.isnan(delta) and abs(delta - day_sum) > tol:
                        counts[m, R_REG_VS_INT] += 1
                        day_flags[m, d] |= np.uint16(1 << R_REG_VS_INT)
        summ[m, C_RECEIVED] = received
        if received == n_slots:  # complete row: no gap to look for
            summ[m, C_FIRST] = 0
            summ[m, C_LAST] = n_slots - 1
            summ[m, C_EXPECTED] = n_slots
            summ[m, C_GAPS] = 0
            summ[m, C_GAP_MAX] = 0
        else:
            counts[m, R_GAP] += _gap_scan(x, m, slot_flags, summ)
        if n_neg > 0:
            counts[m, R_NEGATIVE] += n_neg
            if has_sf:
                for s in range(n_slots):
                    if x[m, s] < 0.0:
                        slot_flags[m, s] |= np.uint8(1 << S_NEGATIVE)
        removed = removed_slot[m]
        if removed >= 0:
            n_after = 0
            for s in range(max(removed, 0), n_slots):
                if not np.isnan(x[m, s]):
                    n_after += 1
                    if has_sf:
                        slot_flags[m, s] |= np.uint8(1 << S_READ_AFTER_REMOVAL)
            counts[m, R_READ_AFTER_REMOVAL] += n_after
        if estimated.shape[0] > 0:
            n_est = 0
            for s in range(n_slots):
                if estimated[m, s]:
                    n_est += 1
            summ[m, C_ESTIMATED] = n_est


@njit(cache=True, nogil=True, parallel=True, fastmath=FASTMATH)
def _vee_intervals(
    x, spd, reg, modulus, outage, history, removed_slot, estimated, params, counts, summ,
    slot_flags, day_flags,
):
    """Validate interval rows: completeness, slot rules and daily rules.

    Args:
        x: (M, S) interval energy, NaN missing; S a whole number of days of ``spd`` slots.
        spd: slots per day.
        reg: (M, D+1) energy register at day boundaries, or (0, 0).
        modulus: (M,) register rollover span, 0 for none.
        outage: (M, S) bool supply outage, or (0, 0).
        history: (M, 1) or (M, D) expected daily energy, NaN unknown, or (0, 0).
        removed_slot: (M,) first slot after the meter's removal, -1 if installed.
        estimated: (M, S) bool, slots holding an estimate, or (0, 0).
        params: float parameters (``P_*``).
        counts: (M, N_RULES) int32 output (added to).
        summ: (M, N_C) int32 output.
        slot_flags: (M, S) uint8 output (bits ``S_*``), or (0, 0) to skip.
        day_flags: (M, D) uint16 output (bit per daily rule).
    """
    n = x.shape[0]
    block = 256
    for b in prange((n + block - 1) // block):
        _vee_interval_rows(
            x, b * block, min(n, (b + 1) * block), spd, reg, modulus, outage, history,
            removed_slot, estimated, params, counts, summ, slot_flags, day_flags,
        )


@njit(cache=True, nogil=True, parallel=True, fastmath=FASTMATH)
def _vee_registers(reg, modulus, tariffs, tariff_tol, mult_obs, counts, day_flags):
    """Register rules per period: negative consumption, rollover, 示值不平, multiplier change.

    Args:
        reg: (M, P+1) total energy register at period boundaries, NaN missing.
        modulus: (M,) rollover span, 0 for none.
        tariffs: (M, T, P+1) tariff registers at the same instants, or (0, 0, 0).
        tariff_tol: allowed |total − Σ tariffs| in register units.
        mult_obs: (M, P) multiplier in force per period (NaN unknown), or (0, 0).
        counts: (M, N_RULES) int32 output (added to).
        day_flags: (M, P) uint16 output.
    """
    n_p = reg.shape[1] - 1
    has_t = tariffs.shape[0] > 0
    has_m = mult_obs.shape[0] > 0
    for m in prange(reg.shape[0]):
        mod = modulus[m]
        for p in range(n_p):
            a = reg[m, p]
            b = reg[m, p + 1]
            if not (np.isnan(a) or np.isnan(b)) and b < a:
                if mod > 0.0 and a - b > 0.5 * mod:
                    counts[m, R_ROLLOVER] += 1
                    day_flags[m, p] |= np.uint16(1 << R_ROLLOVER)
                else:
                    counts[m, R_NEGATIVE] += 1
                    day_flags[m, p] |= np.uint16(1 << R_NEGATIVE)
            if has_m and p > 0:
                u = mult_obs[m, p - 1]
                w = mult_obs[m, p]
                if not (np.isnan(u) or np.isnan(w)) and u != w:
                    counts[m, R_MULTIPLIER_CHANGE] += 1
                    day_flags[m, p] |= np.uint16(1 << R_MULTIPLIER_CHANGE)
        if has_t:
            for p in range(n_p + 1):
                tot = reg[m, p]
                if np.isnan(tot):
                    continue
                s = 0.0
                ok = True
                for t in range(tariffs.shape[1]):
                    v = tariffs[m, t, p]
                    if np.isnan(v):
                        ok = False
                        break
                    s += v
                if ok and abs(tot - s) > tariff_tol:
                    counts[m, R_TOTAL_VS_TARIFFS] += 1
                    if p < n_p:
                        day_flags[m, p] |= np.uint16(1 << R_TOTAL_VS_TARIFFS)


@njit(cache=True, nogil=True, parallel=True, fastmath=FASTMATH)
def _vee_clock(offset_s, tolerance_s, reset_s, counts):
    """Clock rules over each meter's sequence of clock checks (seconds meter − master, NaN none).

    ``clock_tolerance`` counts checks beyond ``tolerance_s``; ``time_reset`` counts steps
    between consecutive checks larger than ``reset_s`` (the clock was set or jumped).
    """
    for m in prange(offset_s.shape[0]):
        prev = np.nan
        for k in range(offset_s.shape[1]):
            v = offset_s[m, k]
            if np.isnan(v):
                continue
            if abs(v) > tolerance_s:
                counts[m, R_CLOCK_TOLERANCE] += 1
            if not np.isnan(prev) and abs(v - prev) > reset_s:
                counts[m, R_TIME_RESET] += 1
            prev = v


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _collate_long(meter, slot, value, out, dup_diff, dup_same):
    """Place long-format readings, sorted by (meter, slot), into a (M, S) matrix.

    The first value of a slot is kept; a later *different* value counts once per slot in
    ``dup_diff``, an identical re-delivery in ``dup_same``.
    """
    n = meter.shape[0]
    k = 0
    while k < n:
        m = meter[k]
        s = slot[k]
        v = value[k]
        out[m, s] = v
        differs = False
        j = k + 1
        while j < n and meter[j] == m and slot[j] == s:
            w = value[j]
            if w != v and not (np.isnan(w) and np.isnan(v)):
                differs = True
            else:
                dup_same[m] += 1
            j += 1
        if differs:
            dup_diff[m] += 1
        k = j


# ---------------------------------------------------------------------------------------------
# VEE: estimation
# ---------------------------------------------------------------------------------------------

M_NONE = 0
M_LINEAR = 1
M_LIKE_DAY = 2
REASON_NONE = 0
REASON_COMMS = 1
REASON_OUTAGE = 2


@njit(cache=True, nogil=True, parallel=True, fastmath=FASTMATH)
def _estimate_intervals(
    x, spd, max_linear, n_like, max_weeks, outage, reg, modulus, est, method, reason
):
    """Fill missing interval slots: linear for short gaps, like-day beyond.

    Args:
        x: (M, S) actual interval energy, NaN missing (never written).
        spd: slots per day (S a multiple of it).
        max_linear: longest gap (slots) filled by linear interpolation between its neighbours.
        n_like: like days averaged (3).
        max_weeks: how many weeks back and forth to look for like days.
        outage: (M, S) bool, or (0, 0); outage days are not like days, outage slots get
            reason ``REASON_OUTAGE``.
        reg: (M, D+1) registers at day boundaries, or (0, 0): like-day estimates of a day are
            scaled so the day adds up to its register delta.
        modulus: (M,) register rollover span.
        est: (M, S) output, NaN where nothing was estimated.
        method: (M, S) int8 output (``M_*``).
        reason: (M, S) int8 output (``REASON_*``).
    """
    n_slots = x.shape[1]
    n_days = n_slots // spd
    has_out = outage.shape[0] > 0
    has_reg = reg.shape[0] > 0
    for m in prange(x.shape[0]):
        clean = np.ones(n_days, dtype=np.bool_)
        for d in range(n_days):
            for j in range(d * spd, (d + 1) * spd):
                if np.isnan(x[m, j]) or (has_out and outage[m, j]):
                    clean[d] = False
                    break
        like_days = np.empty(n_like, dtype=np.int64)
        s = 0
        while s < n_slots:
            if not np.isnan(x[m, s]):
                s += 1
                continue
            e = s
            while e < n_slots and np.isnan(x[m, e]):
                e += 1
            n_run = e - s
            if n_run <= max_linear and s > 0 and e < n_slots:
                a = x[m, s - 1]
                b = x[m, e]
                for k in range(s, e):
                    est[m, k] = a + (b - a) * (k - s + 1) / (n_run + 1)
                    method[m, k] = M_LINEAR
                    reason[m, k] = REASON_OUTAGE if has_out and outage[m, k] else REASON_COMMS
            else:
                for k in range(s, e):
                    d = k // spd
                    j = k - d * spd
                    n_found = 0
                    for w in range(1, max_weeks + 1):
                        for sign in (-1, 1):
                            dd = d + sign * 7 * w
                            if n_found < n_like and 0 <= dd < n_days and clean[dd]:
                                like_days[n_found] = dd
                                n_found += 1
                        if n_found >= n_like:
                            break
                    if n_found == 0:
                        continue
                    acc = 0.0
                    for i in range(n_found):
                        acc += x[m, like_days[i] * spd + j]
                    est[m, k] = acc / n_found
                    method[m, k] = M_LIKE_DAY
                    reason[m, k] = REASON_OUTAGE if has_out and outage[m, k] else REASON_COMMS
            s = e
        if has_reg:
            for d in range(n_days):
                delta = _wrapped_delta(reg[m, d], reg[m, d + 1], modulus[m])
                if np.isnan(delta):
                    continue
                fixed = 0.0
                like = 0.0
                n_like_slots = 0
                for k in range(d * spd, (d + 1) * spd):
                    if not np.isnan(x[m, k]):
                        fixed += x[m, k]
                    elif method[m, k] == M_LINEAR:
                        fixed += est[m, k]
                    elif method[m, k] == M_LIKE_DAY:
                        like += est[m, k]
                        n_like_slots += 1
                rest = delta - fixed
                if n_like_slots == 0 or rest < 0.0:
                    continue
                for k in range(d * spd, (d + 1) * spd):
                    if method[m, k] == M_LIKE_DAY:
                        if like > 0.0:
                            est[m, k] *= rest / like
                        else:
                            est[m, k] = rest / n_like_slots


# ---------------------------------------------------------------------------------------------
# Benchmark reference: one parallel read-only pass
# ---------------------------------------------------------------------------------------------


@njit(cache=True, nogil=True, parallel=True, fastmath=FASTMATH)
def _pass_sum_2d(x):
    """Sum every element of a 2-D float array (the memory-bandwidth limit of a pass)."""
    s = 0.0
    for m in prange(x.shape[0]):
        r = 0.0
        for j in range(x.shape[1]):
            r += x[m, j]
        s += r
    return s


@njit(cache=True, nogil=True, parallel=True, fastmath=FASTMATH)
def _pass_sum_1d(x):
    """Sum a 1-D array in parallel."""
    s = 0.0
    for m in prange(x.shape[0]):
        s += x[m]
    return s


@njit(cache=True, nogil=True, parallel=True, fastmath=FASTMATH)
def _meter_energy(reg, multiplier, modulus, ex_ptr, ex_period, ex_old_end, ex_new_start, out):
    """Per-meter energy per period (register difference × multiplier, exchanges, rollover).

    ``out`` (M, P) receives NaN where a boundary value is missing or the register went back.
    """
    n_p = reg.shape[1] - 1
    for m in prange(reg.shape[0]):
        for p in range(n_p):
            e = _term_energy(reg, m, p, modulus[m], ex_ptr, ex_period, ex_old_end, ex_new_start)
            out[m, p] = e * multiplier[m]
