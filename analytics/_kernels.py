"""Private numba kernels of the analytics core.

Every function here is small and pure: it takes contiguous arrays and scalars, writes into
output buffers handed in by its caller, does no I/O and reads no mutable globals. Optional
inputs are passed as empty arrays of the same rank (shape ``(0, 0)`` or ``(0,)``), so one
compiled signature serves every call. The public wrappers in ``analytics.lineloss``,
``analytics.vee`` and ``analytics.meter_error`` validate and coerce the inputs.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numba import njit, prange

#: fastmath flags for every kernel (one place, see HOUSE_STYLE R17). Off: NaN is data here.
FASTMATH = False
#: Flags for kernels whose inputs are finite by construction (the balance fit's design):
#: reassociation lets the dot products vectorise; NaN/Inf semantics are kept.
FASTMATH_FINITE = {"reassoc", "contract"}
#: Flags for NaN-aware reductions: reassociation only, so ``v == v`` still tests for NaN.
FASTMATH_SUM = {"reassoc"}
#: Inlining (numba IR level) of small helpers. In hot loops a helper takes scalars only: a
#: helper that takes arrays, inlined or not, and an array view both update the arrays'
#: reference counts, atomics on counters every thread shares. Helpers that take arrays run
#: on rare paths only. An inlined helper runs with its caller's fastmath flags.
INLINE: Final = "always"

# ---------------------------------------------------------------------------------------------
# Line loss
# ---------------------------------------------------------------------------------------------

#: Planes of the line-loss result ``res`` (N_O, A, P) float64 filled by the line-loss kernels.
O_SUPPLY = 0  # supply kWh, NaN when a supply-side term is missing or there is no supply meter
O_SALES = 1  # sales kWh, NaN when a sales-side term is missing
O_LOSS = 2  # supply − sales
O_RATE = 3  # loss rate, percent; NaN when not computable or supply is zero
O_COVERAGE = 4  # customer terms present, percent
O_SHARE = 5  # estimated share of sales, percent; NaN when sales are unknown
N_O = 6

#: Rows of the per-area threshold matrix ``thr`` (N_T, A) (``LossThresholds``).
T_BAND_LO = 0
T_BAND_HI = 1
T_COVERAGE_MIN = 2
T_ESTIMATED_MAX = 3
T_LOW_ENERGY = 4
N_T = 5

#: State codes (the order of ``analytics.lineloss.STATES``).
ST_QUALIFIED = 0
ST_HIGH_LOSS = 1
ST_NEGATIVE_LOSS = 2
ST_NOT_COMPUTABLE = 3
ST_LOW_ENERGY = 4


@njit(cache=True, nogil=True, fastmath=FASTMATH, inline=INLINE)
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
    """One pass over the meter metadata (serial: only the unsorted path needs it).

    ``out`` (3,) int64 receives: the largest area index (−1 with no meters), 1 if ``area`` is
    not sorted (else 0), and the number of meters with a negative area or a role other than
    0/1.
    """
    n = area.shape[0]
    m_x = -1
    u = 0
    c = 0
    prev = area[0] if n > 0 else 0
    for m in range(n):
        a = area[m]
        r = role[m]
        m_x = a if a > m_x else m_x
        u += 1 if a < prev else 0
        c += 1 if (a < 0 or (r != 0 and r != 1)) else 0
        prev = a
    out[0] = m_x
    out[1] = 1 if u > 0 else 0
    out[2] = c


@njit(cache=True, nogil=True, fastmath=FASTMATH, inline=INLINE)
def _area_figures(
    supply, sales, est_sales, miss_supply, miss_sales, not_actual, n_supply, cust_total,
    cust_present, band_lo, band_hi, coverage_min, estimated_max, low_energy,
):
    """An area-period's figures from its summed terms: supply, sales, loss, rate, coverage,
    estimated share and state (scalars in and out, so inlining costs nothing).

    States follow not_computable > low_energy > negative/high/qualified (DOMAIN.md).
    """
    total = float(cust_total)
    coverage = 100.0 * float(cust_present) / max(total, 1.0) if total > 0 else 100.0
    has_supply_meter = n_supply > 0
    sup = supply if (miss_supply == 0 and has_supply_meter) else np.nan
    sal = sales if miss_sales == 0 else np.nan
    if np.isnan(sal):
        share = np.nan
    elif sal > 0:
        share = 100.0 * est_sales / sal
    elif est_sales > 0:
        share = 100.0
    else:
        share = 0.0
    loss = sup - sal
    not_comp = (
        not has_supply_meter
        or not_actual > 0
        or np.isnan(sup)
        or np.isnan(sal)
        or coverage < coverage_min
        or share > estimated_max
    )
    rate = 100.0 * loss / sup if (not not_comp and sup != 0) else np.nan
    if not_comp:
        st = ST_NOT_COMPUTABLE
    elif sup < low_energy:
        st = ST_LOW_ENERGY
    elif rate < band_lo:
        st = ST_NEGATIVE_LOSS
    elif rate > band_hi:
        st = ST_HIGH_LOSS
    else:
        st = ST_QUALIFIED
    return sup, sal, loss, rate, coverage, share, st


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _line_loss_areas(
    a_lo, a_hi, m_lo, m_hi, area, fwd, rev, fwd_est, rev_est, role, multiplier,
    bidirectional, modulus, ex_ptr, ex_period, ex_old_end, ex_new_start, ex_old_end_rev,
    ex_new_start_rev, thr, res, state,
):
    """Line loss of areas ``a_lo`` … ``a_hi − 1`` from meter rows ``m_lo`` … ``m_hi − 1``
    sorted by area (serial), written into ``res`` and ``state``.

    The meters of area ``a`` are the run of rows whose ``area`` is ``a``; the order and the
    roles are checked on the way. Supply, sales and estimated sales are summed in meter
    order, forward term before reverse term. Each term is branch-free: a term that does not
    apply adds exactly 0.0 (the sums start at +0.0 and every term is ≥ 0, so the result
    equals skipping it). Register cells are addressed by one unsigned offset per meter
    (``fwd``, ``rev`` and the masks share their shape). Everything runs in this function: a
    helper taking these arrays would update their shared reference counts at every call.

    Returns:
        The number of meters that break the assumptions: a role other than 0/1, or a meter
        left over because the rows are not sorted by area or an area lies outside
        ``a_lo`` … ``a_hi − 1``. Anything but 0 means the results are to be discarded.
    """
    n_p = state.shape[1]
    nb = np.uint64(max(n_p + 1, 0))
    f1 = fwd.reshape(fwd.size)
    r1 = rev.reshape(rev.size)
    fe1 = fwd_est.reshape(fwd_est.size)
    re1 = rev_est.reshape(rev_est.size)
    has_rev = rev.shape[0] > 0
    has_fe = fwd_est.shape[0] > 0
    has_re = rev_est.shape[0] > 0
    has_ex = ex_ptr.shape[0] > 0
    one = np.uint64(1)
    bad = 0
    i = max(m_lo, 0)
    for a in range(a_lo, a_hi):
        # the area's run of rows, checked; its static term counts
        j = i
        n_sup = 0
        n_cust = 0
        while j < m_hi and area[j] == a:
            r = role[j]
            bad += 1 if (r != 0 and r != 1) else 0
            bidi_j = has_rev and bidirectional[j]
            n_terms = 2 if bidi_j else 1
            n_sup += n_terms if r == 1 else 0
            n_cust += n_terms if r != 1 else 0
            j += 1
        lo = np.uint64(i)  # unsigned row and cell indices: no negative-index fix-ups
        hi = np.uint64(j)
        i = j
        for p in range(n_p):
            pu = np.uint64(p)
            supply = 0.0
            sales = 0.0
            est_sales = 0.0
            miss_supply = 0
            miss_sales = 0
            not_actual = 0
            miss_cust = 0  # customer terms missing (forward or reverse)
            for m in range(lo, hi):
                o = m * nb + pu  # cell (m, p)
                sup = role[m] == 1
                mult = multiplier[m]
                mod = modulus[m]
                exchanged = has_ex and ex_ptr[m] < ex_ptr[m + one]
                if exchanged:
                    e_f = _term_energy(
                        fwd, np.int64(m), p, mod, ex_ptr, ex_period, ex_old_end, ex_new_start
                    )
                else:
                    e_f = _wrapped_delta(f1[o], f1[o + one], mod)
                est_f = has_fe and (fe1[o] | fe1[o + one])
                ok_f = e_f == e_f
                w_f = e_f * mult if ok_f else 0.0
                use = False
                est_r = False
                ok_r = True
                w_r = 0.0
                if has_rev:  # the reverse term of a bidirectional meter, masked for others
                    use = bidirectional[m]
                    if exchanged:
                        e_r = _term_energy(
                            rev, np.int64(m), p, mod, ex_ptr, ex_period, ex_old_end_rev,
                            ex_new_start_rev,
                        )
                    else:
                        e_r = _wrapped_delta(r1[o], r1[o + one], mod)
                    est_r = has_re and (re1[o] | re1[o + one])
                    ok_r = e_r == e_r or not use
                    w_r = e_r * mult if (use and e_r == e_r) else 0.0
                if sup:  # a supply meter (one or a few per area): forward is supply,
                    # reverse is sales
                    supply += w_f
                    sales += w_r
                    est_sales += w_r if est_r else 0.0
                    miss_supply += 0 if ok_f else 1
                    miss_sales += 0 if ok_r else 1
                    not_actual += 0 if (ok_f and not est_f) else 1
                    not_actual += 1 if (use and (est_r or not ok_r)) else 0
                else:  # a customer: forward is sales, reverse (PV export) is supply
                    sales += w_f
                    est_sales += w_f if est_f else 0.0
                    supply += w_r
                    miss_sales += 0 if ok_f else 1
                    miss_supply += 0 if ok_r else 1
                    miss_cust += (0 if ok_f else 1) + (0 if ok_r else 1)
            fig = _area_figures(
                supply, sales, est_sales, miss_supply, miss_sales, not_actual, n_sup, n_cust,
                n_cust - miss_cust, thr[T_BAND_LO, a], thr[T_BAND_HI, a],
                thr[T_COVERAGE_MIN, a], thr[T_ESTIMATED_MAX, a], thr[T_LOW_ENERGY, a],
            )
            res[O_SUPPLY, a, p] = fig[0]
            res[O_SALES, a, p] = fig[1]
            res[O_LOSS, a, p] = fig[2]
            res[O_RATE, a, p] = fig[3]
            res[O_COVERAGE, a, p] = fig[4]
            res[O_SHARE, a, p] = fig[5]
            state[a, p] = fig[6]
    return bad + (m_hi - i)


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _area_chunks(area, n_areas, bounds, a_bounds):
    """Split meters sorted by area into ``len(bounds) − 1`` chunks that start at an area change.

    ``bounds`` receives meter offsets, ``a_bounds`` the first area each chunk owns (chunk 0
    from area 0, the last up to ``n_areas``), so every area belongs to exactly one chunk.
    Sortedness is assumed here and verified by ``_line_loss_areas``; on any input the
    offsets stay within 0 … M and the area bounds within 0 … ``n_areas``, non-decreasing.
    """
    n = area.shape[0]
    n_ch = bounds.shape[0] - 1
    bounds[0] = 0
    a_bounds[0] = 0
    for c in range(1, n_ch):
        s = max(c * n // n_ch, bounds[c - 1])
        if 0 < s < n:
            v = area[s - 1]
            lo = s
            hi = n
            while lo < hi:  # first position after s − 1 whose area is above v
                mid = (lo + hi) // 2
                if area[mid] <= v:
                    lo = mid + 1
                else:
                    hi = mid
            s = lo
        bounds[c] = s
        a = area[s] if s < n else n_areas
        a_bounds[c] = min(max(a, a_bounds[c - 1]), n_areas)
    bounds[n_ch] = n
    a_bounds[n_ch] = n_areas


@njit(cache=True, nogil=True, parallel=True, fastmath=FASTMATH)
def _line_loss(
    fwd, rev, fwd_est, rev_est, area, role, multiplier, bidirectional, modulus, ex_ptr,
    ex_period, ex_old_end, ex_new_start, ex_old_end_rev, ex_new_start_rev, thr, res, state,
    n_chunks,
):
    """Line loss of meters sorted by area, in one parallel pass that also checks the meters.

    Args:
        fwd: (M, P+1) forward registers at period boundaries, NaN missing.
        rev: (M, P+1) reverse registers, or (0, 0) when no meter is bidirectional.
        fwd_est: (M, P+1) bool, True where a forward value is an estimate, or (0, 0).
        rev_est: like ``fwd_est`` for ``rev``.
        area: (M,) area index of each meter, expected sorted (checked).
        role: (M,) 1 for the area's supply (summary) meters, 0 for customers (checked).
        multiplier: (M,) CT × PT.
        bidirectional: (M,) bool, the meter has a reverse term.
        modulus: (M,) register span at which it rolls over to zero, 0 for none.
        ex_ptr: (M+1,) offsets into the exchange arrays (sorted by meter, period), or (0,).
        ex_period: exchange period index.
        ex_old_end: the old meter's forward register at removal.
        ex_new_start: the new meter's forward register at installation.
        ex_old_end_rev: as ``ex_old_end`` for the reverse register.
        ex_new_start_rev: as ``ex_new_start`` for the reverse register.
        thr: (N_T, A) thresholds per area.
        res: (N_O, A, P) float64 output.
        state: (A, P) int8 output.
        n_chunks: meter chunks to split the work into (a few per thread).

    Returns:
        0 when the meters were sorted by area with areas in 0 … A − 1 and roles 0/1 (the
        outputs are then complete), else a positive number and the outputs are to be ignored.
    """
    n_ch = max(1, min(n_chunks, area.shape[0]))
    bounds = np.empty(n_ch + 1, dtype=np.int64)
    a_bounds = np.empty(n_ch + 1, dtype=np.int64)
    _area_chunks(area, state.shape[0], bounds, a_bounds)
    bad = 0
    for c in prange(n_ch):
        bad += _line_loss_areas(
            a_bounds[c], a_bounds[c + 1], bounds[c], bounds[c + 1], area, fwd, rev, fwd_est,
            rev_est, role, multiplier, bidirectional, modulus, ex_ptr, ex_period, ex_old_end,
            ex_new_start, ex_old_end_rev, ex_new_start_rev, thr, res, state,
        )
    return bad



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
C_MISSING = 7
N_C = 8

#: Positions in the ``params`` vector of ``_vee_validate``.
P_SPIKE_RATIO = 0
P_SPIKE_MIN = 1
P_HIGH_FACTOR = 2
P_LOW_FACTOR = 3
P_HISTORY_MIN = 4
P_REG_ABS_TOL = 5
P_REG_REL_TOL = 6
P_TARIFF_TOL = 7
P_CLOCK_TOL = 8
P_TIME_RESET = 9
N_P = 10


@njit(cache=True, nogil=True, fastmath=FASTMATH, inline=INLINE)
def _day_odd(x3, m, d, big):
    """Day ``d`` of meter ``m``: non-zero, negative and ≥ ``big`` values (for a day with
    unusual values only)."""
    n_nz = 0
    n_neg = 0
    n_big = 0
    for j in range(x3.shape[2]):
        v = x3[m, d, j]
        n_nz += 1 if (v == v and v != 0.0) else 0
        n_neg += 1 if v < 0.0 else 0
        n_big += 1 if v >= big else 0
    return n_nz, n_neg, n_big


@njit(cache=True, nogil=True, fastmath=FASTMATH, inline=INLINE)
def _third_highest(x3, m, d):
    """Highest and third-highest received value of a day, and the highest's slot in the day."""
    t1 = -np.inf
    t2 = -np.inf
    t3 = -np.inf
    i1 = -1
    for j in range(x3.shape[2]):
        v = x3[m, d, j]
        if v > t1:
            t3 = t2
            t2 = t1
            t1 = v
            i1 = j
        elif v > t2:
            t3 = t2
            t2 = v
        elif v > t3:
            t3 = v
    return t1, t3, i1


@njit(cache=True, nogil=True, fastmath=FASTMATH, inline=INLINE)
def _any_true(mask, m, lo, hi):
    """Whether row ``m`` of a bool mask holds a True in ``lo`` … ``hi − 1``."""
    for s in range(lo, hi):
        if mask[m, s]:
            return True
    return False


# The VEE passes below each handle a block of rows with their loops written out: a helper
# that takes arrays (even one inlined at the numba IR level) updates their reference counts,
# atomics on counters the threads share. The inlined helpers above run on rare paths only.


@njit(cache=True, nogil=True, fastmath=FASTMATH_SUM)
def _vee_days(lo, hi, x3, sf3, reg, modulus, outage, history, params, counts, summ, day_flags):
    """Interval rules per day for rows ``lo`` … ``hi − 1``; starts their count rows.

    One vectorised loop per day sums the received values, counts them and counts unusual
    values (≤ 0, or ≥ ``spike_min``: zero, negative and spike candidates); only a day with
    unusual values is scanned again, exactly. With ``sf3`` (the slot mask as (M, D, spd))
    the loop writes every slot: the gap bit where the value is missing (``_vee_slots``
    clears it outside the row's first … last and adds the other bits); a spike sets its
    bit here.

    Writes the whole count row (interval negatives in ``R_NEGATIVE``), ``summ[:, C_RECEIVED]``
    and every day's flags. Reassociation (``FASTMATH_SUM``) is for the day sums; the other
    float expressions have no chain of additions or products to reorder, and ``v == v`` is
    the NaN test (no ``nnan`` flag), so they compute exactly as without the flag.
    """
    n_days = x3.shape[1]
    spd = x3.shape[2]
    has_sf = sf3.shape[0] > 0
    has_reg = reg.shape[0] > 0
    has_out = outage.shape[0] > 0
    has_hist = history.shape[0] > 0
    hist_by_day = history.shape[1] > 1
    spike_ratio = params[P_SPIKE_RATIO]
    big = params[P_SPIKE_MIN]
    high_f = params[P_HIGH_FACTOR]
    low_f = params[P_LOW_FACTOR]
    hist_min = params[P_HISTORY_MIN]
    reg_abs = params[P_REG_ABS_TOL]
    reg_rel = params[P_REG_REL_TOL]
    # |v − half| ≥ half marks v ≤ 0 or v ≥ big in one comparison (NaN never); rounding can
    # only mark more values, which the exact pass then sorts out. Without a usable big
    # (NaN, ≤ 0, ∞) every day takes the exact pass.
    exact_always = not (big > 0.0 and big < np.inf)
    half = 0.5 * big if not exact_always else 0.0
    gap = np.uint8(1 << S_GAP)
    zero = np.uint8(0)
    for m in range(max(lo, 0), hi):
        for r in range(N_RULES):
            counts[m, r] = 0
        received = 0
        n_neg = 0
        for d in range(n_days):
            s = 0.0
            n_recv = 0
            n_odd = 0
            if has_sf:
                for j in range(spd):
                    v = x3[m, d, j]
                    ok = v == v
                    s += v if ok else 0.0
                    n_recv += 1 if ok else 0
                    n_odd += 1 if abs(v - half) >= half else 0
                    sf3[m, d, j] = zero if ok else gap
            else:
                for j in range(spd):
                    v = x3[m, d, j]
                    ok = v == v
                    s += v if ok else 0.0
                    n_recv += 1 if ok else 0
                    n_odd += 1 if abs(v - half) >= half else 0
            received += n_recv
            n_nz = n_recv
            n_big = 0
            if n_odd > 0 or exact_always:
                n_nz, n_neg_d, n_big = _day_odd(x3, m, d, big)
                n_neg += n_neg_d
            bits = 0
            if n_recv > 0:
                if n_nz == 0:
                    if has_out and _any_true(outage, m, d * spd, (d + 1) * spd):
                        counts[m, R_ZERO_OUTAGE] += 1
                        bits |= 1 << R_ZERO_OUTAGE
                    else:
                        counts[m, R_ZERO] += 1
                        bits |= 1 << R_ZERO
                if n_recv >= 3 and n_big > 0:  # the highest value reaches spike_min
                    t1, t3, i1 = _third_highest(x3, m, d)
                    if t1 > spike_ratio * t3:
                        counts[m, R_SPIKE] += 1
                        bits |= 1 << R_SPIKE
                        if has_sf:
                            sf3[m, d, i1] |= np.uint8(1 << S_SPIKE)
                if n_recv == spd:
                    if has_hist:
                        ref = history[m, d] if hist_by_day else history[m, 0]
                        if ref >= hist_min:
                            if s > high_f * ref:
                                counts[m, R_HIGH] += 1
                                bits |= 1 << R_HIGH
                            elif n_nz > 0 and s < low_f * ref:
                                counts[m, R_LOW] += 1
                                bits |= 1 << R_LOW
                    if has_reg:
                        delta = _wrapped_delta(reg[m, d], reg[m, d + 1], modulus[m])
                        tol = reg_abs + reg_rel * abs(delta)
                        if not np.isnan(delta) and abs(delta - s) > tol:
                            counts[m, R_REG_VS_INT] += 1
                            bits |= 1 << R_REG_VS_INT
            day_flags[m, d] = np.uint16(bits)
        counts[m, R_NEGATIVE] = n_neg
        summ[m, C_RECEIVED] = received


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _vee_slots(lo, hi, x, removed_slot, counts, summ, slot_flags):
    """Completeness and slot rules of rows ``lo`` … ``hi − 1``, after ``_vee_days``.

    First and last value, gaps between them (count, runs, longest run), reads after removal;
    completes the slot mask (``slot_flags`` (M, S), or (0, 0)): no gap bit outside first …
    last, the negative and read-after-removal bits. A complete row with no negative value and
    no removal costs nothing here.
    """
    n = x.shape[1]
    has_sf = slot_flags.shape[0] > 0
    zero = np.uint8(0)
    neg_bit = np.uint8(1 << S_NEGATIVE)
    rar_bit = np.uint8(1 << S_READ_AFTER_REMOVAL)
    for m in range(max(lo, 0), hi):
        received = summ[m, C_RECEIVED]
        n_neg = counts[m, R_NEGATIVE]
        removed = removed_slot[m]
        first = 0
        last = n - 1
        if received < n:
            while first < n and x[m, first] != x[m, first]:
                first += 1
            if first == n:
                first = -1
                last = -1
            else:
                while x[m, last] != x[m, last]:
                    last -= 1
        if has_sf and (received < n or n_neg > 0 or removed >= 0):
            for s in range(first if first >= 0 else n):
                slot_flags[m, s] = zero
            for s in range(last + 1 if first >= 0 else n, n):
                slot_flags[m, s] = zero
            if n_neg > 0:
                for s in range(n):
                    if x[m, s] < 0.0:
                        slot_flags[m, s] |= neg_bit
        if removed >= 0:
            n_after = 0
            for s in range(removed, n):
                if x[m, s] == x[m, s]:
                    n_after += 1
                    if has_sf:
                        slot_flags[m, s] |= rar_bit
            counts[m, R_READ_AFTER_REMOVAL] = n_after
        if first < 0:
            summ[m, C_FIRST] = -1
            summ[m, C_LAST] = -1
            summ[m, C_EXPECTED] = 0
            summ[m, C_MISSING] = 0
            summ[m, C_GAPS] = 0
            summ[m, C_GAP_MAX] = 0
            continue
        expected = last - first + 1
        n_gap = expected - received
        gaps = n_gap  # one missing slot is one run
        gap_max = n_gap
        if n_gap > 1:  # one scan, stopping after the last missing slot
            gaps = 0
            gap_max = 0
            run = 0
            seen = 0
            for s in range(first, last + 1):
                v = x[m, s]
                if v != v:
                    run += 1
                    seen += 1
                elif run > 0:
                    gaps += 1
                    gap_max = run if run > gap_max else gap_max
                    run = 0
                    if seen == n_gap:
                        break
        summ[m, C_FIRST] = first
        summ[m, C_LAST] = last
        summ[m, C_EXPECTED] = expected
        summ[m, C_MISSING] = n_gap
        summ[m, C_GAPS] = gaps
        summ[m, C_GAP_MAX] = gap_max
        counts[m, R_GAP] = n_gap


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _vee_registers(lo, hi, reg, modulus, mult_obs, counts, day_flags):
    """Register rules per period of rows ``lo`` … ``hi − 1``: negative consumption,
    rollover, and multiplier change (``mult_obs`` (M, P) multiplier in force, or (0, 0))."""
    n_p = reg.shape[1] - 1
    has_m = mult_obs.shape[0] > 0
    for m in range(max(lo, 0), hi):
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


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _vee_tariffs(lo, hi, reg, tariffs, tol, counts, day_flags):
    """示值不平 of rows ``lo`` … ``hi − 1``: total register vs Σ tariff registers
    (``tariffs`` (M, T, P+1)) at every boundary; a boundary with any value missing is
    skipped."""
    n_p = reg.shape[1] - 1
    for m in range(max(lo, 0), hi):
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
            if ok and abs(tot - s) > tol:
                counts[m, R_TOTAL_VS_TARIFFS] += 1
                if p < n_p:
                    day_flags[m, p] |= np.uint16(1 << R_TOTAL_VS_TARIFFS)


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _vee_clock(lo, hi, clock, tolerance_s, reset_s, counts):
    """Clock rules of rows ``lo`` … ``hi − 1`` over their clock checks (seconds meter −
    master, NaN none): ``clock_tolerance`` counts checks beyond ``tolerance_s``;
    ``time_reset`` counts steps between consecutive checks larger than ``reset_s``."""
    for m in range(max(lo, 0), hi):
        prev = np.nan
        for k in range(clock.shape[1]):
            v = clock[m, k]
            if np.isnan(v):
                continue
            if abs(v) > tolerance_s:
                counts[m, R_CLOCK_TOLERANCE] += 1
            if not np.isnan(prev) and abs(v - prev) > reset_s:
                counts[m, R_TIME_RESET] += 1
            prev = v


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _vee_extras(lo, hi, estimated, duplicates, counts, summ):
    """Duplicates (``duplicates`` (M,), or (0,)) and estimated slots (``estimated`` (M, S)
    bool, or (0, 0)) of rows ``lo`` … ``hi − 1``."""
    has_dup = duplicates.shape[0] > 0
    has_est = estimated.shape[0] > 0
    for m in range(max(lo, 0), hi):
        if has_dup:
            counts[m, R_DUPLICATE] = duplicates[m]
        n_est = 0
        if has_est:
            for s in range(estimated.shape[1]):
                n_est += 1 if estimated[m, s] else 0
        summ[m, C_ESTIMATED] = n_est


@njit(cache=True, nogil=True, parallel=True, fastmath=FASTMATH)
def _vee_validate(
    x, x3, reg, modulus, outage, history, removed_slot, estimated, duplicates, tariffs,
    mult_obs, clock, params, counts, summ, slot_flags, sf3, day_flags,
):
    """Validate meters in one parallel pass over blocks of rows: completeness, slot, daily,
    register and clock rules. A block's rows stay in cache between its passes.

    Args:
        x: (M, S) interval energy, NaN missing; S a whole number of days.
        x3: the same array as (M, D, spd): days of ``spd`` slots.
        reg: (M, D+1) energy register at day boundaries, or (0, 0).
        modulus: (M,) register rollover span, 0 for none.
        outage: (M, S) bool supply outage, or (0, 0).
        history: (M, 1) or (M, D) expected daily energy, NaN unknown, or (0, 0).
        removed_slot: (M,) first slot after the meter's removal, -1 if installed.
        estimated: (M, S) bool, slots holding an estimate, or (0, 0).
        duplicates: (M,) slots that received different values, or (0,).
        tariffs: (M, T, D+1) tariff registers at the same instants as ``reg``, or (0, 0, 0).
        mult_obs: (M, D) multiplier in force per day (NaN unknown), or (0, 0).
        clock: (M, K) clock offset at each clock check, NaN none, or (0, 0).
        params: float parameters (``P_*``).
        counts: (M, N_RULES) int32 output.
        summ: (M, N_C) int32 output.
        slot_flags: (M, S) uint8 output (bits ``S_*``), or (0, 0) to skip.
        sf3: the same array as (M, D, spd), or (0, 0, 0).
        day_flags: (M, D) uint16 output (bit per daily and register rule).

    Every element of the outputs is written.
    """
    n = x.shape[0]
    has_reg = reg.shape[0] > 0
    has_t = tariffs.shape[0] > 0
    has_clk = clock.shape[0] > 0
    block = 256
    for b in prange((n + block - 1) // block):
        lo = b * block
        hi = min(n, lo + block)
        _vee_days(lo, hi, x3, sf3, reg, modulus, outage, history, params, counts, summ,
                  day_flags)  # fmt: skip
        _vee_slots(lo, hi, x, removed_slot, counts, summ, slot_flags)
        if has_reg:
            _vee_registers(lo, hi, reg, modulus, mult_obs, counts, day_flags)
            if has_t:
                _vee_tariffs(lo, hi, reg, tariffs, params[P_TARIFF_TOL], counts, day_flags)
        if has_clk:
            _vee_clock(lo, hi, clock, params[P_CLOCK_TOL], params[P_TIME_RESET], counts)
        _vee_extras(lo, hi, estimated, duplicates, counts, summ)



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
# Per-meter energy per period (the balance fit's inputs)
# ---------------------------------------------------------------------------------------------


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
