"""Database glue for ``meterhub analyze suspects``: per-area balance fit, ranked suspects.

Per area and window (local days, ``--to`` inclusive):

* members: every meter whose 户变关系 record overlaps the window; outside its membership,
  before its installation and after its removal a meter contributes 0 to this area (it is not
  there), so exchanges and archive corrections need no special case; inside, a slot without
  data is NaN and the fit drops it (never imputed, DOMAIN.md);
* energy per slot: actual ``interval_kwh`` else derived from consecutive energy registers, as
  ``vee`` reads it (:func:`storage.vee.interval_energy`), never estimates; meters with a finer
  interval than the area's coarsest are summed up to it;
* primary energy: × the CT × PT multiplier in force at each slot (the meter's
  ``meter_multiplier`` history, else its archive ct × pt), applied here and only here;
* a reverse term (forward − reverse) for meters archived as bidirectional or seen reporting
  export; ``export_missing`` for bidirectional meters without export data;
* supply: the area's supply meter(s) forward − reverse.

Then :func:`analytics.meter_error.fit_meter_errors`, :func:`track_meter_errors` (daily points)
and :func:`rank_suspects`, with a time-of-day check (:func:`rank_area`): an area where some
meter's night and day errors disagree is ranked from separate night and day fits. A meter
found in the wrong area is offered to the other areas' balances to find where it is really
supplied (:func:`_place_wrong_area`; not with ``--area``). Every ranked
row is stored in ``suspect`` (``alert`` marks the rows at or above the threshold); the command
prints the alerts, or all rows with ``--all``.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray

from analytics.meter_error import (
    FitSettings,
    Suspect,
    SuspectReport,
    SuspectSettings,
    data_sufficiency,
    fit_meter_errors,
    merge_spans,
    rank_suspects,
    track_meter_errors,
)
from analytics.vee_db import Grid, _grid, _place

EXIT_OK = 0
EXIT_USAGE = 64
#: Night window (local hours, start ≥ end wraps midnight) of the time-of-day split fit.
NIGHT = (22.0, 6.0)
#: Midday window (local hours) of the uncollected-export check.
DAYLIGHT = (9.0, 16.0)


@dataclass(frozen=True)
class AreaSeries:
    """One area's balance inputs on a common slot grid (primary kWh)."""

    area: str
    grid: Grid
    supply: NDArray[np.float64]  # (slots,)
    supply_numbers: list[str]
    customers: NDArray[np.float64]  # (meters, slots)
    numbers: list[str]
    ids: list[int]
    export_missing: NDArray[np.bool_]
    #: slots each value covers (:func:`analytics.meter_error.merge_spans`); None: all 1
    slot_length: NDArray[np.float64] | None = None
    #: before joining: supply rows, their covers, customer rows, their covers
    raw: tuple[Any, Any, Any, Any] | None = None


def _active_mask(grid: Grid, spans: list[tuple[datetime | None, datetime | None]]
                 ) -> NDArray[np.bool_]:
    """Slots (by their middle) inside any of the [from, to) spans."""
    t0 = grid.start.timestamp()
    mid = t0 + (np.arange(grid.n_slots) + 0.5) * grid.step_s
    out = np.zeros(grid.n_slots, dtype=bool)
    for a, b in spans:
        lo = -np.inf if a is None else a.timestamp()
        hi = np.inf if b is None else b.timestamp()
        out |= (mid >= lo) & (mid < hi)
    return out


def _multiplier(grid: Grid, history: list[tuple[datetime, float]]) -> NDArray[np.float64]:
    t0 = grid.start.timestamp()
    mid = t0 + (np.arange(grid.n_slots) + 0.5) * grid.step_s
    out = np.full(grid.n_slots, history[0][1] if history else 1.0)
    for since, mult in history:
        out[mid >= since.timestamp()] = mult
    return out


async def load_area(
    conn: Any, settings: Any, *, area: str, d_from: date, d_to: date,
    members: list[tuple[int, str, datetime | None, datetime | None]],
) -> AreaSeries | None:
    """The area's supply and customer series, or None without a supply meter or usable grid."""
    from storage import vee as sv

    spans: dict[int, list[tuple[datetime | None, datetime | None]]] = {}
    for mid, a, vf, vt in members:
        if a == area:
            spans.setdefault(int(mid), []).append((vf, vt))
    if not spans:
        return None
    info = await sv.meters(conn, default_interval=settings.default_interval_min,
                           ids=sorted(spans))
    if not any(m.role == "supply" for m in info):
        return None
    intervals = {m.interval_min for m in info}
    g_iv = max(intervals)
    if 1440 % g_iv or any(g_iv % iv for iv in intervals):
        return None
    grid = _grid(d_from, d_to, g_iv, settings.zone)
    start, end = grid.start, grid.end
    mults = await sv.multipliers(conn, ids=[m.id for m in info])
    with_rev = await sv.has_reverse(conn, ids=[m.id for m in info], start=start, end=end)
    rows = {m.id: i for i, m in enumerate(info)}
    energy = np.full((len(info), grid.n_slots), np.nan)
    covers = np.ones((len(info), grid.n_slots), dtype=np.int64)
    for iv in sorted(intervals):
        sub = [m for m in info if m.interval_min == iv]
        sub_grid = _grid(d_from, d_to, iv, settings.zone)
        sub_rows = {m.id: i for i, m in enumerate(sub)}
        fwd_s, derived = await sv.interval_energy(
            conn, ids=[m.id for m in sub], start=start, end=end,
            default_interval=settings.default_interval_min)
        fwd, _ = _place(fwd_s, sub_rows, sub_grid)
        rev_ids = [m.id for m in sub if m.id in with_rev]
        if rev_ids:
            rev_s, _ = await sv.interval_energy(
                conn, ids=rev_ids, start=start, end=end,
                default_interval=settings.default_interval_min, reverse=True)
            rev, _ = _place(rev_s, sub_rows, sub_grid)
            has = np.array([m.id in with_rev for m in sub])
            fwd[has] = fwd[has] - rev[has]
        k = g_iv // iv
        agg = fwd.reshape(len(sub), grid.n_slots, k).sum(axis=2)  # NaN if any part missing
        for m in sub:
            energy[rows[m.id]] = agg[sub_rows[m.id]]
        bridge = [m for m in sub if m.id in derived and m.id not in with_rev] if k == 1 else []
        if bridge:
            await _bridge_gaps(conn, grid, bridge, energy, covers, rows, start=start, end=end)
    for m in info:
        i = rows[m.id]
        life = list(spans[m.id])
        active = _active_mask(grid, life)
        if m.installed_at is not None:
            active &= _active_mask(grid, [(m.installed_at, None)])
        if m.removed_at is not None:
            active &= _active_mask(grid, [(None, m.removed_at)])
        energy[i] = np.where(active, energy[i] * _multiplier(grid, mults.get(m.id, [])), 0.0)
    sup = [m for m in info if m.role == "supply"]
    cus = [m for m in info if m.role != "supply"]
    s_rows = np.array([energy[rows[m.id]] for m in sup])
    s_cov = np.array([covers[rows[m.id]] for m in sup])
    c_rows = (np.array([energy[rows[m.id]] for m in cus]) if cus
              else np.zeros((0, grid.n_slots)))
    c_cov = (np.array([covers[rows[m.id]] for m in cus]) if cus
             else np.ones((0, grid.n_slots), dtype=np.int64))
    supply, customers, length = _joined(s_rows, s_cov, c_rows, c_cov)
    export_missing = np.array([m.bidirectional and m.id not in with_rev for m in cus],
                              dtype=bool)
    return AreaSeries(area, grid, supply, [m.number for m in sup], customers,
                      [m.number for m in cus], [m.id for m in cus], export_missing,
                      length, (s_rows, s_cov, c_rows, c_cov))


def _joined(s_rows: Any, s_cov: Any, c_rows: Any, c_cov: Any) -> tuple[Any, Any, Any]:
    """Supply (summed over supply meters), customers and slot lengths after joining spans."""
    merged, length = merge_spans(np.vstack([s_rows, c_rows]), np.vstack([s_cov, c_cov]))
    n_s = s_rows.shape[0]
    return merged[:n_s].sum(axis=0), merged[n_s:], length


#: Longest gap (slots) that register differences bridge in the balance.
MAX_BRIDGE = 8


async def _bridge_gaps(conn: Any, grid: Grid, meters: list[Any], energy: Any, covers: Any,
                       rows: dict[int, int], *, start: datetime, end: datetime) -> None:
    """Fill gaps of register-derived meters with the register difference across them.

    A register reading missing at a slot end leaves both slots around it without an interval
    value, but the readings either side give their sum. That sum is put at the span's last
    slot with ``covers`` = its length (the slots before it get ``covers`` = 0), for gaps of
    at most ``MAX_BRIDGE`` slots; the balance then joins the same slots of every meter
    (:func:`analytics.meter_error.merge_spans`). Only readings stamped on slot boundaries
    count (a manual read at 00:07 is not a slot reading).
    """
    from storage import vee as sv

    ids = [m.id for m in meters]
    regs = await sv.register_readings(conn, ids=ids, start=start - timedelta(seconds=grid.step_s),
                                      end=end)
    if regs.meter_id.size == 0:
        return
    rel = (regs.epoch - grid.start.timestamp()) / grid.step_s
    b = np.rint(rel).astype(np.int64)
    on = (np.abs(rel - b) < 1e-6) & (b >= 0) & (b <= grid.n_slots)
    roll = {m.id: m.rollover_kwh for m in meters}
    for mid in ids:
        sel = on & (regs.meter_id == mid)
        if sel.sum() < 2:
            continue
        bb, val = b[sel], regs.value[sel]
        order = np.argsort(bb, kind="stable")
        bb, val = bb[order], val[order]
        keep = np.r_[True, np.diff(bb) > 0]  # first delivery per boundary
        bb, val = bb[keep], val[keep]
        gap = np.flatnonzero((np.diff(bb) >= 2) & (np.diff(bb) <= MAX_BRIDGE))
        i = rows[mid]
        for g in gap.tolist():
            b1, b2 = int(bb[g]), int(bb[g + 1])
            slots = slice(b1, b2)  # slot s ends at boundary s + 1
            if np.isfinite(energy[i, slots]).any():
                continue
            d = float(val[g + 1] - val[g])
            if d < -roll[mid] / 2:
                d += roll[mid]
            energy[i, b2 - 1] = d
            covers[i, b1 : b2 - 1] = 0
            covers[i, b2 - 1] = b2 - b1


def _day_part(grid: Grid, night: tuple[float, float]) -> NDArray[np.bool_]:
    """True for slots whose middle falls in the night window (local hours, wrapping)."""
    h = (np.arange(grid.n_slots) % grid.spd + 0.5) * 24.0 / grid.spd
    lo, hi = night
    out: NDArray[np.bool_] = (h >= lo) | (h < hi) if lo > hi else (h >= lo) & (h < hi)
    return out


def _rank(series: AreaSeries, fit: Any, track: Any, settings: SuspectSettings,
          ) -> SuspectReport:
    g = series.grid
    return rank_suspects(
        fit, area_id=series.area, meter_ids=series.numbers, customers=series.customers,
        supply_meter_id=series.supply_numbers[-1] if series.supply_numbers else None,
        track=track, export_missing=series.export_missing, slots_per_day=g.spd,
        start=g.start, interval_minutes=float(g.interval), settings=settings,
    )


def rank_area(series: AreaSeries, *, fit_settings: FitSettings | None = None,
              settings: SuspectSettings | None = None,
              night: tuple[float, float] = NIGHT) -> SuspectReport:
    """Fit the area's balance and rank its meters (every meter, highest score first).

    A meter whose θ comes out near zero or negative (``wrong_area_theta``: its energy is not
    in this supply, or it counts against the flow) violates the balance grossly and pulls
    every other coefficient with it; it is reported from the first fit (evidence
    ``refit_without``) and the area is fitted again without it. Then :func:`_rank_fitted`.
    """
    cfg = settings or SuspectSettings()
    if series.customers.shape[0] == 0:
        return SuspectReport([])
    spd = series.grid.spd
    first = fit_meter_errors(series.supply, series.customers, settings=fit_settings,
                             slots_per_day=spd, slot_length=series.slot_length,
                             extra=_export(series))
    if not first.in_fit.any():
        return _insufficient(series, first, fit_settings)
    # a gross misfit must show in the night slots too: export that no meter collects can
    # distort the day slots of an area far enough to push a small meter's θ to 0
    night_fit = fit_meter_errors(series.supply, series.customers,
                                 fit_slots=_day_part(series.grid, night),
                                 settings=fit_settings, slots_per_day=spd,
                                 slot_length=series.slot_length, extra=_export(series))
    th = np.where(first.in_fit, first.theta, 1.0)
    gross = (np.abs(th) < cfg.wrong_area_theta) | (th < -cfg.wrong_area_theta)
    if night_fit.in_fit.any():
        th_n = np.where(night_fit.in_fit, night_fit.theta, 1.0)
        gross &= (np.abs(th_n) < cfg.wrong_area_theta) | (th_n < -cfg.wrong_area_theta)
    if not gross.any() or gross.all():
        return _rank_fitted(series, fit_settings=fit_settings, settings=cfg, night=night)
    keep = ~gross
    sub = replace(series, customers=series.customers[keep],
                  numbers=[n for n, k in zip(series.numbers, keep, strict=True) if k],
                  ids=[i for i, k in zip(series.ids, keep, strict=True) if k],
                  export_missing=series.export_missing[keep])
    sub_rep = _rank_fitted(sub, fit_settings=fit_settings, settings=cfg, night=night)
    rows = list(sub_rep.suspects)
    out = {series.numbers[i] for i in np.flatnonzero(gross)}
    for s in _rank(series, first, None, cfg).suspects:
        if s.meter in out:
            ev = dict(s.evidence)
            ev["refit_without"] = True
            rows.append(Suspect(s.area, s.meter, s.kind, s.score, s.error_estimate,
                                s.uncertainty, s.since, ev))
    rows.sort(key=lambda s: (-s.score, -s.evidence.get("sigma", 0.0)))
    return SuspectReport(rows, dict(sub_rep.insufficient))


def _insufficient(series: AreaSeries, fit: Any, fit_settings: FitSettings | None
                  ) -> SuspectReport:
    """Every meter of an area whose balance cannot be judged, at score 0, with the reason.

    Estimates are kept where the fit made them (CONTRACTS.md: ``error_estimate`` for every
    meter the fit covers); no meter is an alert.
    """
    why = data_sufficiency(fit, series.grid.n_slots, slots_per_day=series.grid.spd,
                           settings=fit_settings) or "insufficient data"
    rows = [Suspect(series.area, number, "meter_error", 0.0, _num(fit.error[i]),
                    _num(fit.uncertainty[i]), None, {"insufficient_data": why})
            for i, number in enumerate(series.numbers)]
    return SuspectReport(rows, {series.area: why})


def _rank_fitted(series: AreaSeries, *, fit_settings: FitSettings | None,
                 settings: SuspectSettings, night: tuple[float, float]) -> SuspectReport:
    """Rank from the all-slot fit, or from night and day fits.

    The balance is fitted on all slots, and separately on night and day slots. When some
    meter's night and day errors differ by more than the accuracy class and ``significance``
    standard deviations, the meter's error depends on the time of day (a bypass used at
    night, a load moved behind the meter): one ε for the whole day is then the wrong model
    for the whole area: those meters (only) get a night and a day column in one all-slot fit, and
    each is ranked by the better-scoring part (evidence ``fit``, ``error_night``,
    ``error_day``); the others keep one coefficient in that fit. Otherwise the all-slot fit
    is used.

    Before that, an area whose residual drops at midday by more than ``significance``
    standard errors has export that no meter collects; its day slots are not trusted and the
    meters are ranked from the night fit (evidence ``midday_residual_z``).
    """
    cfg = settings
    spd = series.grid.spd
    export = _export(series)
    fit = fit_meter_errors(series.supply, series.customers, settings=fit_settings,
                           slots_per_day=spd, slot_length=series.slot_length, extra=export)
    track = None
    if fit.in_fit.any():
        track = track_meter_errors(series.supply, series.customers, every=series.grid.spd,
                                   settings=fit_settings, slot_length=series.slot_length)
    if data_sufficiency(fit, series.grid.n_slots, slots_per_day=spd,
                        settings=fit_settings) is not None:
        return _insufficient(series, fit, fit_settings)
    ranked = _rank(series, fit, track, cfg)
    is_night = _day_part(series.grid, night)
    f_n = fit_meter_errors(series.supply, series.customers, fit_slots=is_night,
                           settings=fit_settings, slots_per_day=spd,
                           slot_length=series.slot_length, extra=export)
    f_d = fit_meter_errors(series.supply, series.customers, fit_slots=~is_night,
                           settings=fit_settings, slots_per_day=spd,
                           slot_length=series.slot_length, extra=export)
    pv_z = _midday_z(series.grid, fit)
    if pv_z > cfg.significance:
        rows: list[Suspect] = []
        index = {n: i for i, n in enumerate(series.numbers)}
        for s in _rank(series, f_n, None, cfg).suspects:
            i = index.get(s.meter, -1)
            if s.kind == "supply_ratio" or i < 0:
                continue
            ev = dict(s.evidence)
            ev.update(fit="night", midday_residual_z=pv_z, error_all_day=_num(fit.error[i]))
            rows.append(Suspect(s.area, s.meter, s.kind, s.score, s.error_estimate,
                                s.uncertainty, s.since, ev))
        rows.extend(s for s in ranked.suspects if s.kind == "supply_ratio")
        rows.sort(key=lambda s: -s.score)
        return SuspectReport(rows)
    with np.errstate(invalid="ignore"):
        diff = np.abs(f_n.error - f_d.error)
        z = diff / np.sqrt(f_n.uncertainty**2 + f_d.uncertainty**2)
    cand = np.flatnonzero((diff >= cfg.class_limit) & (z >= cfg.significance))
    if cand.size == 0:
        return ranked
    # one all-slot fit in which the meters that need it have a night and a day coefficient;
    # the strongest first, then each further one only if its parts still differ in that fit
    # (a thief's night step otherwise makes its neighbours' separate night fits disagree too)
    e = series.customers
    cand = cand[np.argsort(-np.nan_to_num(z[cand], nan=0.0))]

    def joint(split: list[int]) -> tuple[AreaSeries, Any]:
        idx = np.array(split, dtype=np.int64)
        cust = e.copy()
        cust[idx] = np.where(is_night[None, :], e[idx], 0.0)
        aug = replace(series, customers=np.vstack([cust, np.where(is_night[None, :], 0.0,
                                                                  e[idx])]),
                      numbers=[*series.numbers, *(series.numbers[i] for i in idx)],
                      ids=[*series.ids, *(series.ids[i] for i in idx)],
                      export_missing=np.r_[series.export_missing, series.export_missing[idx]])
        return aug, fit_meter_errors(aug.supply, aug.customers, settings=fit_settings,
                                     slots_per_day=spd, slot_length=series.slot_length,
                                     extra=export)

    split = [int(cand[0])]
    aug, f_s = joint(split)
    for i in cand[1:].tolist():
        t_aug, t_fit = joint([*split, i])
        k = e.shape[0] + len(split)
        with np.errstate(invalid="ignore"):
            d = abs(t_fit.error[i] - t_fit.error[k])
            zz = d / np.hypot(t_fit.uncertainty[i], t_fit.uncertainty[k])
        if d >= cfg.class_limit and zz >= cfg.significance:
            split.append(i)
            aug, f_s = t_aug, t_fit
    split_i = np.array(split, dtype=np.int64)
    n = e.shape[0]
    by_row = _rank(aug, f_s, None, cfg).suspects
    parts: dict[str, list[Suspect]] = {}
    for s in by_row:  # highest score first: the first row of a meter is its better part
        if s.kind != "supply_ratio":
            parts.setdefault(s.meter, []).append(s)
    part_of = {series.numbers[i]: j for j, i in enumerate(split_i)}
    rows = []
    for i, number in enumerate(series.numbers):
        best = parts[number][0]
        ev = dict(best.evidence)
        if number in part_of:
            j = part_of[number]
            e_n, e_d = _num(f_s.error[i]), _num(f_s.error[n + j])
            is_day = e_d is not None and best.error_estimate == e_d and e_n != e_d
            ev.update(fit="day" if is_day else "night", error_night=e_n, error_day=e_d,
                      error_all_day=_num(fit.error[i]))
        rows.append(Suspect(best.area, best.meter, best.kind, best.score, best.error_estimate,
                            best.uncertainty, best.since, ev))
    rows.extend(s for s in ranked.suspects if s.kind == "supply_ratio")
    rows.sort(key=lambda s: (-s.score, -s.evidence.get("sigma", 0.0)))
    return SuspectReport(rows)


def _export(series: AreaSeries) -> NDArray[np.float64] | None:
    """The export the area's meters collect, Σ max(−E, 0), as an extra regressor, or None.

    PV export that no meter collects (a PV customer archived as import-only) lowers the
    supply in the same hours and in proportion to the sunshine that the collected export
    follows. Without a term for it the balance would charge it to the θ of the meters that
    do export (they alone move with the sun) and report them as thefts; with it, its
    coefficient takes the uncollected share (negative when export is missing) and the
    meters are judged on the rest.
    """
    e = series.customers
    if e.size == 0:
        return None
    with np.errstate(invalid="ignore"):
        out = np.where(np.isfinite(e) & (e < 0.0), -e, 0.0).sum(axis=0)
    if not (out > 0).any():
        return None
    return out[None, :]


def _midday_z(grid: Grid, fit: Any) -> float:
    """How far the balance residual drops at midday (``DAYLIGHT``), in standard errors.

    Export that no meter collects (PV behind a meter archived as import-only) lowers the
    supply on sunny middays: the residual goes negative there and the day fit is distorted.
    """
    r = fit.residual
    ok = np.isfinite(r)
    mid = _day_part(grid, DAYLIGHT)
    n1, n2 = int((ok & mid).sum()), int((ok & ~mid).sum())
    if n1 <= 10 or n2 <= 10 or not np.isfinite(fit.residual_std) or fit.residual_std <= 0:
        return float("nan")
    d = float(r[ok & mid].mean() - r[ok & ~mid].mean())
    return -d / (fit.residual_std * float(np.sqrt(1 / n1 + 1 / n2)))


def _num(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


async def compute_suspects(
    conn: Any, settings: Any, *, d_from: date, d_to: date, area: str | None = None,
    store: bool = True, fit_settings: FitSettings | None = None,
    suspect_settings: SuspectSettings | None = None, progress: Any = None,
) -> SuspectReport:
    """Every area's ranked meters from the database (all rows; filter with ``.alerts``).

    Args:
        conn: async connection; the caller owns the transaction.
        settings: meterhub settings.
        d_from: first local date.
        d_to: last local date (inclusive).
        area: one area id, or None for all.
        store: replace the window's rows in ``suspect``.
        fit_settings: balance-fit settings.
        suspect_settings: ranking thresholds (``alert``).
        progress: optional callable(done, total).

    Returns:
        Rows grouped by area (ids ascending), highest score first within each.
    """
    from storage import boundaries as sb
    from storage import vee as sv

    cfg = suspect_settings or SuspectSettings()
    zone = settings.zone
    start = sv.day_start(d_from, zone)
    end = sv.day_start(d_to + timedelta(days=1), zone)
    areas = await sb.areas(conn, area=area)
    members = await sb.memberships(conn, start=start, end=end)
    ranked: dict[str, SuspectReport] = {}
    ids: dict[str, dict[str, int]] = {}
    candidates: list[tuple[str, str, int, tuple[Any, Any]]] = []
    for k, a in enumerate(areas):
        series = await load_area(conn, settings, area=a.id, d_from=d_from, d_to=d_to,
                                 members=members)
        ranked[a.id] = (rank_area(series, fit_settings=fit_settings, settings=cfg)
                        if series else SuspectReport([]))
        if series is not None:
            ids[a.id] = dict(zip(series.numbers, series.ids, strict=True))
            for s in ranked[a.id].suspects:
                if s.kind == "wrong_area" and s.score >= cfg.alert:
                    i = series.numbers.index(s.meter)
                    raw = series.raw
                    row = (raw[2][i], raw[3][i]) if raw is not None else (
                        series.customers[i], np.ones(series.customers.shape[1], np.int64))
                    candidates.append((a.id, s.meter, series.ids[i], row))
        if progress is not None:
            progress(k + 1, len(areas))
    if candidates and area is None:
        await _place_wrong_area(conn, settings, areas=[a.id for a in areas], ranked=ranked,
                                candidates=candidates, d_from=d_from, d_to=d_to,
                                members=members, fit_settings=fit_settings, cfg=cfg)
    out: list[Suspect] = []
    insufficient: dict[str, str] = {}
    for a in areas:
        out.extend(ranked[a.id].suspects)
        insufficient.update(ranked[a.id].insufficient)
        if store:
            rows = []
            for rank, s in enumerate(ranked[a.id].suspects, start=1):
                d = s.to_dict()
                d.update(meter_id=ids.get(a.id, {}).get(s.meter), rank=rank,
                         alert=s.score >= cfg.alert)
                rows.append(d)
            await sv.replace_suspects(conn, area=a.id, d_from=d_from, d_to=d_to, rows=rows)
    return SuspectReport(out, insufficient)


async def _place_wrong_area(
    conn: Any, settings: Any, *, areas: list[str], ranked: dict[str, SuspectReport],
    candidates: list[tuple[str, str, int, tuple[Any, Any]]], d_from: date, d_to: date,
    members: Any, fit_settings: FitSettings | None, cfg: SuspectSettings,
) -> None:
    """Look for the area each ``wrong_area`` meter really feeds from (户变关系 errors).

    Each candidate's energy is offered as an extra column to every other area's balance; the
    area where its θ comes out near 1 (|ε| ≤ 0.2, uncertainty ≤ 0.1) is where its load is
    supplied: that area is ranked again with the meter in its balance (so its load no longer
    shows as unmetered loss spread over its other customers), and the meter's row in its
    archived area gets ``evidence.true_area``. The meter is listed only in its archived area.
    """
    placed: dict[tuple[str, str], tuple[str, float]] = {}
    for b in areas:
        offered = [c for c in candidates if c[0] != b]
        if not offered:
            continue
        series = await load_area(conn, settings, area=b, d_from=d_from, d_to=d_to,
                                 members=members)
        if series is None or series.customers.shape[0] == 0:
            continue
        n = series.customers.shape[0]
        if series.raw is not None:
            s_rows, s_cov, c_rows, c_cov = series.raw
        else:
            s_rows, s_cov = series.supply[None, :], np.ones((1, series.supply.size), np.int64)
            c_rows, c_cov = series.customers, np.ones(series.customers.shape, np.int64)
        c_rows = np.vstack([c_rows, *[c[3][0][None, :] for c in offered]])
        c_cov = np.vstack([c_cov, *[c[3][1][None, :] for c in offered]])
        supply, customers, length = _joined(s_rows, s_cov, c_rows, c_cov)
        aug = replace(series, supply=supply, customers=customers, slot_length=length,
                      raw=(s_rows, s_cov, c_rows, c_cov),
                      numbers=[*series.numbers, *(c[1] for c in offered)],
                      ids=[*series.ids, *(c[2] for c in offered)],
                      export_missing=np.concatenate([series.export_missing,
                                                     np.zeros(len(offered), dtype=bool)]))
        fit = fit_meter_errors(aug.supply, aug.customers, settings=fit_settings,
                               slots_per_day=series.grid.spd, slot_length=length,
                               extra=_export(series))
        found = [j for j in range(len(offered))
                 if np.isfinite(fit.error[n + j]) and abs(fit.error[n + j]) <= 0.2
                 and fit.uncertainty[n + j] <= 0.1]
        if not found:
            continue
        keep = np.r_[np.ones(n, dtype=bool), np.isin(np.arange(len(offered)), found)]
        sub = replace(aug, customers=aug.customers[keep],
                      numbers=[x for x, k in zip(aug.numbers, keep, strict=True) if k],
                      ids=[x for x, k in zip(aug.ids, keep, strict=True) if k],
                      export_missing=aug.export_missing[keep])
        moved = {offered[j][1] for j in found}
        redo = rank_area(sub, fit_settings=fit_settings, settings=cfg)
        ranked[b] = SuspectReport([s for s in redo.suspects if s.meter not in moved],
                                  dict(redo.insufficient))
        for j in found:
            placed[(offered[j][0], offered[j][1])] = (b, float(fit.theta[n + j]))
    for home in {h for h, _ in placed}:
        rows = []
        for s in ranked[home].suspects:
            if (home, s.meter) in placed:
                true_area, theta = placed[(home, s.meter)]
                ev = dict(s.evidence)
                ev.update(true_area=true_area, theta_in_true_area=theta)
                s = Suspect(s.area, s.meter, s.kind, s.score, s.error_estimate,
                            s.uncertainty, s.since, ev)
            rows.append(s)
        ranked[home] = SuspectReport(rows, dict(ranked[home].insufficient))


def format_suspects(report: SuspectReport) -> str:
    """A table for people."""
    lines = [f"{'area':<10} {'meter':<12} {'kind':<18} {'score':>7} {'ε %':>8} {'± %':>6}  since"]
    for s in report.suspects:
        eps = f"{100 * s.error_estimate:>8.2f}" if s.error_estimate is not None else f"{'-':>8}"
        unc = f"{100 * s.uncertainty:>6.2f}" if s.uncertainty is not None else f"{'-':>6}"
        lines.append(f"{s.area:<10} {s.meter:<12} {s.kind:<18} {s.score:>7.2f} {eps} {unc}  "
                     f"{s.since or '-'}")
    return "\n".join(lines)


def analyze_suspects_command(settings: Any, db_url: str, *, date_from: Any, date_to: Any,
                             area: str | None = None, show_all: bool = False,
                             as_json: bool = False) -> int:
    """``meterhub analyze suspects --from DATE --to DATE [--area ID] [--all] [--json]``.

    Returns:
        0 (suspects are findings), 64 for bad dates.
    """
    import psycopg

    from analytics.vee_db import _dates, _error, _print, _Progress

    try:
        d_from, d_to = _dates(date_from, date_to)
    except ValueError as exc:
        return _error(str(exc), as_json, "usage")
    cfg = SuspectSettings()

    async def run() -> SuspectReport:
        async with await psycopg.AsyncConnection.connect(db_url) as conn, conn.transaction():
            with _Progress("analyze suspects") as bar:
                return await compute_suspects(conn, settings, d_from=d_from, d_to=d_to,
                                              area=area, suspect_settings=cfg, progress=bar)

    report = asyncio.run(run())
    for area_id, why in sorted(report.insufficient.items()):
        sys.stderr.write(f"analyze suspects: area {area_id}: {why}\n")
    shown = report if show_all else report.alerts(cfg.alert)
    if as_json:
        _print(shown.to_dict())
    else:
        sys.stdout.write(format_suspects(shown) + "\n")
    return EXIT_OK
