"""Database glue for ``meterhub vee run``, ``vee report``, ``vee edit`` and ``vee approve``.

What goes in, per meter (grouped by interval length, a whole number of slots per local day):

* interval energy: actual ``interval_kwh``, else derived from consecutive energy-register
  readings one interval apart (:func:`storage.vee.interval_energy`; never stored);
* slots that received two different values (``reading_conflict``) → ``duplicate``;
* energy registers at the local day boundaries (daily freeze, else the register within the
  freeze tolerance, via :func:`storage.boundaries.boundary_values`) and the tariff registers;
* the removal instant, the rollover span, the CT × PT history, clock offsets carried by
  readings, ``power_loss`` events (an outage lasts until the reported end, else until the
  meter's next non-zero interval, at most a day);
* existing estimates, and ``history_days`` (28) of data before the window: the like days of
  the estimation and the same-weekday history of ``high_vs_history`` / ``low_vs_history``.

``vee run`` validates the window, estimates missing slots (:func:`analytics.vee
.estimate_intervals`) and writes every estimate as an ``estimated`` revision (method, reason,
``created_by`` ``vee``); an estimate identical to the stored one writes nothing, so re-runs are
idempotent. Estimates are only made between a meter's first and last actual interval (no
invented future) and not after its removal.

**Area-balance re-check.** Where ``line_loss`` holds a computed rate for the estimate's area
and day and for earlier days of that area, the day's rate is compared with the median of up to
14 earlier computed days. When it is ``balance_step_pp`` (2 percentage points) or more above
that baseline and the meter's estimated energy that day is at least 10 % of the step's energy,
the day's estimates of that meter are *held*: not written to ``reading_revision`` but stored in
``vee_estimate_review`` with the rate and baseline (the slot stays a gap). ``vee approve``
accepts one (it becomes an ``edited`` revision, method ``approved_estimate``) or rejects it.
Without a line-loss result the estimate is written as usual.

``vee report`` is computed from the database at call time (nothing from a previous run is
needed): completeness on actual readings only (``interval_kwh`` if the meter has any, else the
energy register), so an estimated slot is still counted as missing, and ``estimated`` counts the
slots filled by stored estimates. Without dates it covers each group from its first to its last
reading.

**Reading cycles.** A meter read by hand (protocol ``manual``) or whose archive ``schedule`` is
a reading cycle (``daily``/``day``, ``monthly``/``month``) is expected once per cycle, not once
per archived interval: a reader does not visit every 15 minutes. Its cycle is the schedule's;
a manual meter without one is read monthly when its readings are a median 20 days or more
apart, else daily (as ``vee screen --cycle auto``). Such a meter is counted on its energy
register by local day (``interval`` 1440) or calendar month (``interval`` null): ``expected``
cycles from the cycle of its first to that of its last actual read, ``received`` cycles with
one, ``gaps`` runs of cycles without, ``duplicates`` cycles with a conflicting read,
``estimated`` cycles without an actual read but with a stored register estimate; ``gap``,
``negative_consumption`` (a read below the previous one, rollover aside) and
``read_after_removal`` are counted, the interval rules do not apply. ``vee run`` writes the
same rows and flags for them and estimates nothing.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray

from analytics.vee import (
    METHODS,
    REASONS,
    RULES,
    SLOT_RULES,
    MeterVee,
    VeeArrays,
    VeeReport,
    VeeSettings,
    collate_intervals,
    estimate_intervals,
    validate,
)

EXIT_OK = 0
EXIT_INVALID = 2
EXIT_USAGE = 64

HISTORY_DAYS = 28
CHUNK = 1000
CREATED_BY = "vee"
#: Rules about what arrived: for register meters counted on the register readings.
COUNTED_RULES = ("gap", "read_after_removal")


@dataclass(frozen=True, slots=True)
class Grid:
    """Slots of ``interval`` minutes from local midnight ``start`` for ``days`` days."""

    start: datetime
    days: int
    interval: int

    @property
    def spd(self) -> int:
        """Slots per day."""
        return 1440 // self.interval

    @property
    def n_slots(self) -> int:
        """Slots in the grid."""
        return self.days * self.spd

    @property
    def step_s(self) -> float:
        """Slot length in seconds."""
        return self.interval * 60.0

    @property
    def end(self) -> datetime:
        """End of the last slot."""
        return self.start + timedelta(minutes=self.interval * self.n_slots)

    def slot(self, epoch: NDArray[np.float64]) -> NDArray[np.int64]:
        """Slot index of interval-end instants (a slot ends at start + (s + 1)·interval)."""
        rel = (epoch - self.start.timestamp()) / self.step_s
        return (np.ceil(rel - 1e-9) - 1).astype(np.int64)

    def slot_end(self, s: int) -> datetime:
        """The instant at which slot ``s`` ends."""
        return self.start + timedelta(minutes=self.interval * (s + 1))

    def boundaries(self) -> list[datetime]:
        """The day boundaries (days + 1), local midnights."""
        z = self.start.tzinfo
        d0 = self.start.date()
        return [datetime.combine(d0 + timedelta(days=i), datetime.min.time(), tzinfo=z)
                for i in range(self.days + 1)]


def _grid(first: date, last: date, interval: int, zone: Any) -> Grid:
    return Grid(datetime(first.year, first.month, first.day, tzinfo=zone),
                (last - first).days + 1, interval)


def _rows_of(meter_id: NDArray[np.int64], rows: dict[int, int]) -> NDArray[np.int64]:
    """Row index of each meter id (−1 for ids not in ``rows``), vectorised."""
    if not rows:
        return np.full(meter_id.shape, -1, dtype=np.int64)
    keys = np.array(sorted(rows), dtype=np.int64)
    vals = np.array([rows[k] for k in keys], dtype=np.int64)
    pos = np.clip(np.searchsorted(keys, meter_id), 0, keys.size - 1)
    return np.where(keys[pos] == meter_id, vals[pos], -1)


def _place(series: Any, rows: dict[int, int], grid: Grid) -> tuple[NDArray[np.float64], Any]:
    """(meters, slots) matrix of a long series (first delivery kept)."""
    n = len(rows)
    if series.meter_id.size == 0:
        return np.full((n, grid.n_slots), np.nan), np.zeros(n, dtype=np.int64)
    r = _rows_of(series.meter_id, rows)
    s = grid.slot(series.epoch)
    ok = (r >= 0) & (s >= 0) & (s < grid.n_slots)
    x, dup, _ = collate_intervals(r[ok], s[ok], series.value[ok], n_meters=n,
                                  n_slots=grid.n_slots)
    return x, dup


def _mask(series: Any, rows: dict[int, int], grid: Grid) -> NDArray[np.bool_]:
    out = np.zeros((len(rows), grid.n_slots), dtype=bool)
    if series.meter_id.size:
        r = _rows_of(series.meter_id, rows)
        s = grid.slot(series.epoch)
        ok = (r >= 0) & (s >= 0) & (s < grid.n_slots)
        out[r[ok], s[ok]] = True
    return out


def history_by_day(x: NDArray[np.float64], spd: int, weeks: int = 4) -> NDArray[np.float64]:
    """Expected daily energy per meter and day: mean of the complete same weekdays before.

    Args:
        x: (meters, slots) interval energy, NaN missing.
        spd: slots per day.
        weeks: how many weeks back to look.

    Returns:
        (meters, days) history, NaN where fewer than two like days are complete.
    """
    n, s = x.shape
    days = s // spd
    day = x[:, : days * spd].reshape(n, days, spd).sum(axis=2)  # NaN if any slot missing
    out = np.full((n, days), np.nan)
    for d in range(days):
        back = [d - 7 * k for k in range(1, weeks + 1) if d - 7 * k >= 0]
        if len(back) < 2:
            continue
        vals = day[:, back]
        cnt = np.isfinite(vals).sum(axis=1)
        with np.errstate(invalid="ignore"):
            mean = np.nansum(vals, axis=1) / np.maximum(cnt, 1)
        out[:, d] = np.where(cnt >= 2, mean, np.nan)
    return out


@dataclass
class VeeData:
    """Everything validation and estimation need for one group of meters."""

    meters: list[Any]
    grid: Grid  # the extended grid (history days + window)
    lead_days: int  # history days before the window
    x: NDArray[np.float64]  # (M, S) actual interval energy
    derived: NDArray[np.bool_]  # (M,) intervals derived from registers
    presence: NDArray[np.float64]  # (M, S) 1.0 where the counted quantity arrived
    duplicates: NDArray[np.int64]  # (M,) in the window
    dup_mask: NDArray[np.bool_]  # (M, S)
    registers: NDArray[np.float64] | None  # (M, days + 1)
    tariffs: NDArray[np.float64] | None  # (M, 4, days + 1)
    outage: NDArray[np.bool_]
    estimated: NDArray[np.bool_]  # stored estimates in slots without an actual value
    clock: NDArray[np.float64] | None
    multiplier: NDArray[np.float64] | None  # (M, days)
    removed_slot: NDArray[np.int64]
    rollover: NDArray[np.float64]

    def window(self, a: NDArray[Any]) -> NDArray[Any]:
        """The window part (without the history days) of a (M, S) array."""
        return a[:, self.lead_days * self.grid.spd:]


async def load_vee_data(
    conn: Any, settings: Any, meters: list[Any], first: date, last: date, *,
    interval: int, history_days: int = HISTORY_DAYS,
) -> VeeData:
    """Load one group's inputs from the database (see the module docstring)."""
    from storage import boundaries as sb
    from storage import vee as sv

    zone = settings.zone
    grid = _grid(first - timedelta(days=history_days), last, interval, zone)
    ids = [m.id for m in meters]
    rows = {m.id: i for i, m in enumerate(meters)}
    n = len(meters)
    start, end = grid.start, grid.end
    w0 = grid.start + timedelta(days=history_days)
    series, derived_ids = await sv.interval_energy(
        conn, ids=ids, start=start, end=end, default_interval=settings.default_interval_min)
    x, _ = _place(series, rows, grid)
    derived = np.array([m.id in derived_ids for m in meters], dtype=bool)
    presence = np.where(np.isnan(x), np.nan, 1.0)
    if derived.any():
        regs = await sv.register_readings(conn, ids=[m.id for m in meters if m.id in derived_ids],
                                          start=start, end=end)
        pm = _mask(regs, rows, grid)
        presence[derived] = np.where(pm[derived], 1.0, np.nan)
    conf = await sv.conflict_slots(conn, ids=ids, quantities=[sv.Q_INTERVAL, sv.Q_FORWARD],
                                   start=w0, end=end)
    dup_mask = np.zeros((n, grid.n_slots), dtype=bool)
    if conf.meter_id.size:
        want = np.where(derived, sv.Q_FORWARD, sv.Q_INTERVAL)
        r = np.array([rows[int(m)] for m in conf.meter_id], dtype=np.int64)
        s = grid.slot(conf.epoch)
        ok = (want[r] == conf.value.astype(np.int64)) & (s >= 0) & (s < grid.n_slots)
        dup_mask[r[ok], s[ok]] = True
    duplicates = dup_mask.sum(axis=1).astype(np.int64)

    present = await sv.register_quantities(conn, ids=ids, start=start, end=end)
    bounds = grid.boundaries()
    tol = timedelta(minutes=settings.freeze_tolerance_min)
    registers = None
    if present & {sv.Q_FORWARD, sb.FORWARD[0]}:
        vals = await sb.boundary_values(conn, ids=ids, boundaries=bounds, tolerance=tol,
                                        quantities=sb.FORWARD)
        registers = np.full((n, grid.days + 1), np.nan)
        for (mid, b), (v, _est) in vals.items():
            registers[rows[mid], b] = v
    tariffs = None
    if registers is not None and present & set(sv.Q_TARIFFS):
        tariffs = np.full((n, 4, grid.days + 1), np.nan)
        for k, q in enumerate(sv.Q_TARIFFS):
            vals = await sb.boundary_values(conn, ids=ids, boundaries=bounds, tolerance=tol,
                                            quantities=(q, q))
            for (mid, b), (v, _est) in vals.items():
                tariffs[rows[mid], k, b] = v
    ev = await sv.outages(conn, ids=ids, start=start, end=end)
    outage = _outage_mask(ev, rows, grid, x)
    est = await sv.revisions(conn, ids=ids, start=start, end=end)
    estimated = _mask(est, rows, grid) & np.isnan(x)
    clk = await sv.clock_checks(conn, ids=ids, start=w0, end=end)
    clock = None
    if clk.meter_id.size:
        r = np.array([rows[int(m)] for m in clk.meter_id], dtype=np.int64)
        width = int(np.bincount(r, minlength=n).max())
        clock = np.full((n, width), np.nan)
        pos = np.zeros(n, dtype=np.int64)
        for i, v in zip(r, clk.value, strict=True):
            clock[i, pos[i]] = v
            pos[i] += 1
    mult_hist = await sv.multipliers(conn, ids=ids)
    multiplier = None
    if any(len(h) > 1 for h in mult_hist.values()):
        multiplier = np.ones((n, grid.days))
        for mid, hist in mult_hist.items():
            for d, bound in enumerate(bounds[:-1]):
                noon = bound + timedelta(hours=12)
                val = hist[0][1]
                for since, mult in hist:
                    if since <= noon:
                        val = mult
                multiplier[rows[mid], d] = val
    removed_slot = np.full(n, -1, dtype=np.int64)
    for i, m in enumerate(meters):
        if m.removed_at is not None and m.removed_at < end:
            rel = (m.removed_at - start).total_seconds() / grid.step_s
            removed_slot[i] = max(0, int(np.floor(rel)))
    rollover = np.array([m.rollover_kwh for m in meters], dtype=np.float64)
    return VeeData(meters, grid, history_days, x, derived, presence, duplicates, dup_mask,
                   registers, tariffs, outage, estimated, clock, multiplier, removed_slot,
                   rollover)


def _outage_mask(ev: Any, rows: dict[int, int], grid: Grid, x: NDArray[np.float64],
                 ) -> NDArray[np.bool_]:
    out = np.zeros(x.shape, dtype=bool)
    t0 = grid.start.timestamp()
    for mid, ts, te in zip(ev.meter_id, ev.epoch, ev.value, strict=True):
        i = rows[int(mid)]
        s0 = max(0, int(np.floor((ts - t0) / grid.step_s)))
        if np.isfinite(te):
            s1 = int(np.ceil((te - t0) / grid.step_s))
        else:
            s1 = min(s0 + grid.spd, grid.n_slots)
            nz = np.flatnonzero(np.nan_to_num(x[i, s0:s1]) > 0)
            if nz.size:
                s1 = s0 + int(nz[0])
        s1 = min(max(s1, s0), grid.n_slots)
        out[i, s0:s1] = True
    return out


def run_validation(data: VeeData, estimated: NDArray[np.bool_],
                   settings: VeeSettings | None = None) -> tuple[VeeArrays, VeeArrays]:
    """Validate the window; returns (rule results, completeness on the counted quantity)."""
    spd = data.grid.spd
    xw = np.ascontiguousarray(data.window(data.x))
    hist = history_by_day(data.x, spd)[:, data.lead_days:]
    reg = data.registers[:, data.lead_days:] if data.registers is not None else None
    tar = data.tariffs[:, :, data.lead_days:] if data.tariffs is not None else None
    mult = (data.multiplier[:, data.lead_days:]
            if data.multiplier is not None and reg is not None else None)
    lead_slots = data.lead_days * spd
    removed = np.where(data.removed_slot >= 0, np.maximum(data.removed_slot - lead_slots, 0), -1)
    arr = validate(
        xw, slots_per_day=spd, registers=reg, rollover=data.rollover,
        duplicates=data.duplicates, outage=np.ascontiguousarray(data.window(data.outage)),
        history_daily=hist, removed_slot=removed,
        estimated=np.ascontiguousarray(data.window(estimated)), clock_offset_s=data.clock,
        tariff_registers=tar, multiplier_by_day=mult, settings=settings, slot_flags=True,
    )
    comp = arr
    if data.derived.any():
        # an estimate fills a missing slot of the counted quantity (the register)
        filled = estimated & np.isnan(data.presence)
        comp = validate(np.ascontiguousarray(data.window(data.presence)), slots_per_day=spd,
                        removed_slot=removed,
                        estimated=np.ascontiguousarray(data.window(filled)), slot_flags=True)
    return arr, comp


def report_rows(data: VeeData, arr: VeeArrays, comp: VeeArrays) -> list[MeterVee]:
    """``vee report`` rows: rules from ``arr``, completeness from ``comp`` for meters whose
    intervals are derived from registers (CONTRACTS.md: counted on the energy register)."""
    g = data.grid
    w_start = g.start + timedelta(days=data.lead_days)
    step = timedelta(minutes=g.interval)

    def stamp(s: int) -> str | None:
        return None if s < 0 else (w_start + (s + 1) * step).isoformat()

    out = []
    for i, m in enumerate(data.meters):
        src = comp if data.derived[i] else arr
        flags = arr.flags(i)
        if data.derived[i]:  # rules about arrival: on the register readings
            for rule in COUNTED_RULES:
                flags[rule] = int(comp.counts[i, RULES.index(rule)])
        out.append(MeterVee(
            meter=m.number, interval=g.interval, first=stamp(int(src.first[i])),
            last=stamp(int(src.last[i])), expected=int(src.expected[i]),
            received=int(src.received[i]), missing=int(src.missing[i]), gaps=int(src.gaps[i]),
            gap_slots_max=int(src.gap_slots_max[i]), duplicates=int(arr.duplicates[i]),
            estimated=int(src.estimated[i]), flags=flags,
        ))
    return out


def day_flag_rows(data: VeeData, arr: VeeArrays, comp: VeeArrays,
                  ) -> list[tuple[int, date, str, int]]:
    """(meter id, day, rule, count) of the window for ``vee_flag``.

    Slot rules (gap, negative interval, read after removal) are counted per slot from the slot
    mask (bit ``i`` = ``analytics.vee.SLOT_RULES[i]``), duplicates from the conflict slots,
    everything else (spike included: one per day) from the daily mask (bit = ``RULES`` index).
    """
    g = data.grid
    spd = g.spd
    n = len(data.meters)
    days = arr.day_flags.shape[1]
    first_day = (g.start + timedelta(days=data.lead_days)).date()
    per = np.zeros((n, days, len(RULES)), dtype=np.int64)
    sf = arr.slot_flags if arr.slot_flags is not None else np.zeros((n, days * spd), np.uint8)
    csf = comp.slot_flags if comp.slot_flags is not None else sf
    for k, rule in enumerate(RULES):
        day_bit = np.uint16(1 << k)
        if rule == "duplicate":
            per[:, :, k] += data.window(data.dup_mask).reshape(n, days, spd).sum(axis=2)
        elif rule in SLOT_RULES and rule != "spike":
            bit = 1 << SLOT_RULES.index(rule)
            src = np.where(data.derived[:, None], csf, sf) if rule in COUNTED_RULES else sf
            per[:, :, k] += ((src & bit) != 0).reshape(n, days, spd).sum(axis=2)
            if rule == "negative_consumption":  # registers that went backwards
                per[:, :, k] += (arr.day_flags & day_bit) != 0
        else:
            per[:, :, k] += (arr.day_flags & day_bit) != 0
    out = []
    for i, d, k in zip(*np.nonzero(per), strict=True):
        out.append((data.meters[i].id, first_day + timedelta(days=int(d)), RULES[k],
                    int(per[i, d, k])))
    return out


@dataclass
class RunSummary:
    """What ``vee run`` did."""

    d_from: date
    d_to: date
    run_id: int | None = None
    meters: int = 0
    groups: dict[int, int] = field(default_factory=dict)
    written: int = 0
    unchanged: int = 0
    held: int = 0
    skipped: list[str] = field(default_factory=list)
    flags: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RULES, 0))
    report: list[MeterVee] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` document."""
        return {
            "from": self.d_from.isoformat(), "to": self.d_to.isoformat(), "run": self.run_id,
            "meters": self.meters,
            "groups": [{"interval": k, "meters": v} for k, v in sorted(self.groups.items())],
            "estimates": {"written": self.written, "unchanged": self.unchanged,
                          "held": self.held},
            "flags": self.flags, "skipped": self.skipped,
        }


#: Archive schedule names that are reading cycles (reading books), and the cycle they mean.
CYCLE_SCHEDULES = {"daily": "day", "day": "day", "monthly": "month", "month": "month"}
#: A manual meter without a cycle schedule is read monthly when its reads are this far apart.
MONTHLY_SPACING_DAYS = 20.0


async def reading_cycles(conn: Any, meters: list[Any]) -> dict[int, str]:
    """``day`` or ``month`` for each meter counted on a reading cycle (module docstring)."""
    from storage import vee as sv

    out: dict[int, str] = {}
    infer: list[int] = []
    for m in meters:
        cycle = CYCLE_SCHEDULES.get((m.schedule or "").lower())
        if cycle is not None:
            out[m.id] = cycle
        elif m.protocol == "manual":
            infer.append(m.id)
    spacing = await sv.read_spacing_days(conn, ids=infer)
    for mid in infer:
        out[mid] = "month" if spacing.get(mid, 0.0) >= MONTHLY_SPACING_DAYS else "day"
    return out


def _cycle_index(epoch: NDArray[np.float64], zone: Any, cycle: str) -> NDArray[np.int64]:
    """Reading cycle of each instant: local day ordinal, or month number (year · 12 + m)."""
    local = [datetime.fromtimestamp(float(t), zone) for t in epoch]
    if cycle == "day":
        return np.array([d.date().toordinal() for d in local], dtype=np.int64)
    return np.array([d.year * 12 + d.month - 1 for d in local], dtype=np.int64)


def _cycle_start(c: int, cycle: str) -> date:
    return date.fromordinal(c) if cycle == "day" else date(c // 12, c % 12 + 1, 1)


async def cycle_rows(
    conn: Any, settings: Any, meters: list[Any], cycles: dict[int, str],
    first: date | None, last: date | None,
) -> tuple[list[MeterVee], list[tuple[int, date, str, int]]]:
    """Report rows and ``vee_flag`` rows of meters counted on their reading cycle."""
    from storage import vee as sv

    zone = settings.zone
    ids = [m.id for m in meters]
    start = sv.day_start(first, zone) if first else datetime(1, 1, 2, tzinfo=zone)
    end = sv.day_start(last + timedelta(days=1), zone) if last else datetime(9999, 1, 1,
                                                                               tzinfo=zone)
    reads = await sv.register_readings(conn, ids=ids, start=start, end=end)
    conf = await sv.conflict_slots(conn, ids=ids, quantities=[sv.Q_FORWARD], start=start,
                                   end=end)
    est = await sv.revisions(conn, ids=ids, start=start, end=end, quantity=sv.Q_FORWARD)
    rows: list[MeterVee] = []
    flags_out: list[tuple[int, date, str, int]] = []
    for m in meters:
        cycle = cycles[m.id]
        interval = 1440 if cycle == "day" else None
        sel = reads.meter_id == m.id
        t, v = reads.epoch[sel], reads.value[sel]
        order = np.argsort(t, kind="stable")
        t, v = t[order], v[order]
        flags = dict.fromkeys(RULES, 0)
        if t.size == 0:
            rows.append(MeterVee(m.number, interval, None, None, 0, 0, 0, 0, 0, 0, 0, flags))
            continue
        c = _cycle_index(t, zone, cycle)
        lo, hi = int(c[0]), int(c[-1])
        got = np.zeros(hi - lo + 1, dtype=bool)
        got[c - lo] = True
        missing = np.flatnonzero(~got)
        runs = np.split(missing, np.flatnonzero(np.diff(missing) > 1) + 1) if missing.size else []
        per_day: dict[tuple[date, str], int] = {}

        def flag(rule: str, day: date, per: dict[tuple[date, str], int] = per_day) -> None:
            per[(day, rule)] = per.get((day, rule), 0) + 1

        for k in missing:
            flag("gap", _cycle_start(lo + int(k), cycle))
        back = np.flatnonzero(np.diff(v) < 0)
        for k in back:
            if v[k] - v[k + 1] <= m.rollover_kwh / 2:  # a rollover is not a step back
                flag("negative_consumption",
                     datetime.fromtimestamp(float(t[k + 1]), zone).date())
        if m.removed_at is not None:
            for x in t[t > m.removed_at.timestamp()]:
                flag("read_after_removal", datetime.fromtimestamp(float(x), zone).date())
        csel = conf.meter_id == m.id
        dup_cycles = set(_cycle_index(conf.epoch[csel], zone, cycle).tolist()) & set(
            c.tolist())
        esel = est.meter_id == m.id
        est_cycles = set(_cycle_index(est.epoch[esel], zone, cycle).tolist())
        estimated = sum(1 for k in missing if lo + int(k) in est_cycles)
        for (day, rule), n in per_day.items():
            flags[rule] += n
            flags_out.append((m.id, day, rule, n))
        rows.append(MeterVee(
            meter=m.number, interval=interval,
            first=datetime.fromtimestamp(float(t[0]), zone).isoformat(),
            last=datetime.fromtimestamp(float(t[-1]), zone).isoformat(),
            expected=int(got.size), received=int(got.sum()), missing=int(missing.size),
            gaps=len(runs), gap_slots_max=max((len(r) for r in runs), default=0),
            duplicates=len(dup_cycles), estimated=estimated, flags=flags,
        ))
    return rows, flags_out


def _groups(meters: list[Any]) -> tuple[dict[int, list[Any]], list[str]]:
    by: dict[int, list[Any]] = {}
    bad: list[str] = []
    for m in meters:
        if m.interval_min <= 0 or 1440 % m.interval_min:
            bad.append(m.number)
        else:
            by.setdefault(int(m.interval_min), []).append(m)
    return by, bad


def _estimate_rows(data: VeeData, x_est: Any) -> list[tuple[int, datetime, float, str, str]]:
    """Estimates inside the window, between each meter's first and last actual value."""
    g = data.grid
    lead = data.lead_days * g.spd
    out = []
    have = ~np.isnan(data.x)
    for i, m in enumerate(data.meters):
        idx = np.flatnonzero(have[i])
        if idx.size == 0:
            continue
        lo, hi = max(int(idx[0]), lead), int(idx[-1])
        if data.removed_slot[i] >= 0:
            hi = min(hi, int(data.removed_slot[i]) - 1)
        if m.installed_at is not None:
            lo = max(lo, int(np.ceil((m.installed_at - g.start).total_seconds() / g.step_s)))
        if hi < lo:
            continue
        sel = np.flatnonzero(x_est.method[i, lo:hi + 1] != 0) + lo
        for s in sel:
            out.append((m.id, g.slot_end(int(s)), float(x_est.values[i, s]),
                        METHODS[int(x_est.method[i, s])], REASONS[int(x_est.reason[i, s])]))
    return out


async def _balance_holds(
    conn: Any, rows: list[tuple[int, datetime, float, str, str]], zone: Any, d_from: date,
    d_to: date, step_pp: float,
) -> tuple[list[tuple[int, datetime, float, str, str]], list[tuple[Any, ...]]]:
    """Split estimates into (accepted, held) by the area balance (module docstring)."""
    from storage import boundaries as sb
    from storage import vee as sv

    if not rows:
        return rows, []
    rates = await sv.line_loss_days(conn, first=d_from - timedelta(days=14), last=d_to)
    if not rates:
        return rows, []
    members = await sb.memberships(conn, start=sv.day_start(d_from, zone),
                                   end=sv.day_start(d_to + timedelta(days=1), zone))
    supply: dict[tuple[str, date], float] = {}
    cur = await conn.execute(
        "SELECT area_id, label, supply_kwh FROM line_loss WHERE period = 'day' "
        "AND label BETWEEN %s AND %s", (d_from.isoformat(), d_to.isoformat()))
    for a, label, s in await cur.fetchall():
        if s is not None:
            supply[(a, date.fromisoformat(label))] = float(s)

    spans: dict[int, list[tuple[str, datetime | None, datetime | None]]] = {}
    for m, a, vf, vt in members:
        spans.setdefault(int(m), []).append((str(a), vf, vt))

    def area_of(mid: int, at: datetime) -> str | None:
        for a, vf, vt in spans.get(mid, []):
            if (vf is None or vf <= at) and (vt is None or at < vt):
                return a
        return None

    by_day: dict[tuple[int, date], list[tuple[int, datetime, float, str, str]]] = {}
    for r in rows:
        day = (r[1] - timedelta(microseconds=1)).astimezone(zone).date()
        by_day.setdefault((r[0], day), []).append(r)
    accepted: list[tuple[int, datetime, float, str, str]] = []
    held: list[tuple[Any, ...]] = []
    for (mid, day), group in by_day.items():
        noon = sv.day_start(day, zone) + timedelta(hours=12)
        area = area_of(mid, noon)
        series = rates.get(area or "", {})
        rate = series.get(day)
        before = [series[d] for d in sorted(series) if day - timedelta(days=14) <= d < day]
        if area is None or rate is None or not before:
            accepted.extend(group)
            continue
        base = float(np.median(before))
        step_kwh = (rate - base) / 100.0 * supply.get((area, day), 0.0)
        est_kwh = sum(r[2] for r in group)
        if rate - base >= step_pp and est_kwh >= 0.1 * step_kwh:
            held.extend((*r, area, day, rate, base) for r in group)
        else:
            accepted.extend(group)
    return accepted, held


async def vee_run(
    conn: Any, settings: Any, *, d_from: date, d_to: date, meter: str | None = None,
    balance_step_pp: float = 2.0, created_by: str = CREATED_BY,
    progress: Any = None,
) -> RunSummary:
    """Validate and estimate the window, write estimates, flags and report rows.

    Args:
        conn: async connection; the caller owns the transaction.
        settings: meterhub settings.
        d_from: first local date.
        d_to: last local date (inclusive).
        meter: one meter number, or None for every meter.
        balance_step_pp: loss step (percentage points) at which estimates are held.
        created_by: recorded on estimates and the run.
        progress: optional callable(advance: int, total: int).

    Returns:
        The summary, with the report rows of the window.
    """
    from storage import vee as sv

    summary = RunSummary(d_from, d_to)
    meters = await sv.meters(conn, default_interval=settings.default_interval_min, number=meter)
    cycles = await reading_cycles(conn, meters)
    groups, bad = _groups([m for m in meters if m.id not in cycles])
    summary.skipped = bad
    summary.run_id = await sv.start_run(conn, d_from=d_from, d_to=d_to, created_by=created_by)
    total = sum(len(v) for v in groups.values()) + len(cycles)
    done = 0
    if cycles:  # read once per cycle: counted on the register, nothing to estimate
        on_cycle = [m for m in meters if m.id in cycles]
        rep, flag_rows = await cycle_rows(conn, settings, on_cycle, cycles, d_from, d_to)
        summary.report.extend(rep)
        for r in rep:
            for k, v in r.flags.items():
                summary.flags[k] += v
            if r.interval:
                summary.groups[r.interval] = summary.groups.get(r.interval, 0) + 1
        await sv.write_meter_results(
            conn, run_id=summary.run_id, d_from=d_from, d_to=d_to,
            rows=[(m.id, r.to_dict()) for m, r in zip(on_cycle, rep, strict=True)])
        await sv.replace_flags(conn, run_id=summary.run_id, ids=[m.id for m in on_cycle],
                               d_from=d_from, d_to=d_to, rows=flag_rows)
        done += len(on_cycle)
        if progress is not None:
            progress(done, total)
    for interval, group in sorted(groups.items()):
        summary.groups[interval] = summary.groups.get(interval, 0) + len(group)
        for c in range(0, len(group), CHUNK):
            chunk = group[c:c + CHUNK]
            data = await load_vee_data(conn, settings, chunk, d_from, d_to, interval=interval)
            est = estimate_intervals(data.x, slots_per_day=data.grid.spd,
                                     interval_minutes=interval, outage=data.outage,
                                     registers=data.registers, rollover=data.rollover)
            rows = _estimate_rows(data, est)
            accepted, held = await _balance_holds(conn, rows, settings.zone, d_from, d_to,
                                                  balance_step_pp)
            written = await sv.write_estimates(conn, rows=accepted, created_by=created_by)
            await sv.hold_estimates(conn, run_id=summary.run_id, rows=held)
            summary.written += written
            summary.unchanged += len(accepted) - written
            summary.held += len(held)
            new_mask = _mask_rows(accepted, {m.id: i for i, m in enumerate(chunk)}, data.grid)
            arr, comp = run_validation(data, data.estimated | (new_mask & np.isnan(data.x)))
            rep = report_rows(data, arr, comp)
            summary.report.extend(rep)
            for r in rep:
                for k, v in r.flags.items():
                    summary.flags[k] += v
            await sv.write_meter_results(
                conn, run_id=summary.run_id, d_from=d_from, d_to=d_to,
                rows=[(m.id, r.to_dict()) for m, r in zip(chunk, rep, strict=True)])
            await sv.replace_flags(conn, run_id=summary.run_id, ids=[m.id for m in chunk],
                                   d_from=d_from, d_to=d_to,
                                   rows=day_flag_rows(data, arr, comp))
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    summary.meters = done
    await sv.finish_run(conn, run_id=summary.run_id, meters=done, written=summary.written,
                        unchanged=summary.unchanged, held=summary.held)
    return summary


def _mask_rows(rows: list[tuple[int, datetime, float, str, str]], index: dict[int, int],
               grid: Grid) -> NDArray[np.bool_]:
    out = np.zeros((len(index), grid.n_slots), dtype=bool)
    if rows:
        r = np.array([index[m] for m, *_ in rows], dtype=np.int64)
        s = grid.slot(np.array([t.timestamp() for _, t, *_ in rows]))
        out[r, s] = True
    return out


async def vee_report(
    conn: Any, settings: Any, *, meter: str | None = None, d_from: date | None = None,
    d_to: date | None = None,
) -> VeeReport:
    """The ``vee report`` rows, computed from the database now (module docstring)."""
    from storage import vee as sv

    meters = await sv.meters(conn, default_interval=settings.default_interval_min, number=meter)
    cycles = await reading_cycles(conn, meters)
    groups, _ = _groups([m for m in meters if m.id not in cycles])
    zone = settings.zone
    rows: list[MeterVee] = []
    if cycles:
        rows, _flags = await cycle_rows(conn, settings, [m for m in meters if m.id in cycles],
                                        cycles, d_from, d_to)
    for interval, group in sorted(groups.items()):
        spans = await sv.data_spans(conn, ids=[m.id for m in group])
        with_data = [m for m in group if m.id in spans]
        for m in group:
            if m.id not in spans:
                rows.append(MeterVee(m.number, interval, None, None, 0, 0, 0, 0, 0, 0, 0,
                                     dict.fromkeys(RULES, 0)))
        if not with_data:
            continue
        first = d_from or min(
            (spans[m.id][0] - timedelta(microseconds=1)).astimezone(zone).date()
            for m in with_data)
        last = d_to or max(
            (spans[m.id][1] - timedelta(microseconds=1)).astimezone(zone).date()
            for m in with_data)
        for c in range(0, len(with_data), CHUNK):
            chunk = with_data[c:c + CHUNK]
            data = await load_vee_data(conn, settings, chunk, first, last, interval=interval)
            arr, comp = run_validation(data, data.estimated)
            rows.extend(report_rows(data, arr, comp))
    rows.sort(key=lambda r: r.meter)
    return VeeReport(rows)


def format_report(report: VeeReport) -> str:
    """A table for people: completeness and the rules that fired."""
    head = (f"{'meter':<12} {'iv':>4} {'expected':>9} {'received':>9} {'missing':>8} "
            f"{'gaps':>5} {'max':>5} {'dup':>4} {'est':>5}  flags")
    lines = [head]
    for r in report.meters:
        fired = ", ".join(f"{k} {v}" for k, v in r.flags.items() if v and k != "gap")
        lines.append(f"{r.meter:<12} {r.interval:>4} {r.expected:>9} {r.received:>9} "
                     f"{r.missing:>8} {r.gaps:>5} {r.gap_slots_max:>5} {r.duplicates:>4} "
                     f"{r.estimated:>5}  {fired or '-'}")
    return "\n".join(lines)


def _print(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")


def _error(message: str, as_json: bool, reason: str = "invalid") -> int:
    if as_json:
        _print({"error": {"reason": reason, "message": message}})
    sys.stderr.write(f"meterhub: error: {message}\n")
    return EXIT_USAGE if reason == "usage" else EXIT_INVALID


def _dates(d_from: Any, d_to: Any) -> tuple[date, date]:
    a = d_from if isinstance(d_from, date) else date.fromisoformat(str(d_from))
    b = d_to if isinstance(d_to, date) else date.fromisoformat(str(d_to))
    if b < a:
        raise ValueError("--to is before --from")
    return a, b


class _Progress:
    """A rich progress bar on stderr (only on a terminal)."""

    def __init__(self, label: str) -> None:
        from rich.console import Console
        from rich.progress import Progress

        self.console = Console(stderr=True)
        self.bar = Progress(console=self.console, transient=True,
                            disable=not self.console.is_terminal)
        self.label = label
        self.task: Any = None

    def __enter__(self) -> _Progress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(None, None, None)

    def __call__(self, done: int, total: int) -> None:
        if self.task is None:
            self.task = self.bar.add_task(self.label, total=total)
        self.bar.update(self.task, completed=done)


def vee_run_command(settings: Any, db_url: str, *, date_from: Any, date_to: Any,
                    meter: str | None = None, balance_step_pp: float = 2.0,
                    as_json: bool = False) -> int:
    """``meterhub vee run --from DATE --to DATE [--meter N] [--json]``.

    Returns:
        0 (flags and holds are findings), 2 for an unknown meter, 64 for bad dates.
    """
    import psycopg

    try:
        d_from, d_to = _dates(date_from, date_to)
    except ValueError as exc:
        return _error(str(exc), as_json, "usage")

    async def run() -> RunSummary | None:
        from storage import vee as sv

        async with await psycopg.AsyncConnection.connect(db_url) as conn, conn.transaction():
            if meter is not None and await sv.meter_by_number(conn, number=meter) is None:
                return None
            with _Progress("vee run") as bar:
                return await vee_run(conn, settings, d_from=d_from, d_to=d_to, meter=meter,
                                     balance_step_pp=balance_step_pp, progress=bar)

    summary = asyncio.run(run())
    if summary is None:
        return _error(f"meter {meter} is not in the archive", as_json, "unknown_meter")
    if as_json:
        _print(summary.to_dict())
    else:
        fired = ", ".join(f"{k} {v}" for k, v in summary.flags.items() if v) or "none"
        sys.stdout.write(
            f"vee run {d_from}..{d_to}: {summary.meters} meters; estimates written "
            f"{summary.written}, unchanged {summary.unchanged}, held for review "
            f"{summary.held}; flags: {fired}\n")
    return EXIT_OK


def vee_report_command(settings: Any, db_url: str, *, meter: str | None = None,
                       date_from: Any = None, date_to: Any = None,
                       as_json: bool = False) -> int:
    """``meterhub vee report [--meter N] [--from DATE --to DATE] [--json]``.

    Returns:
        0, or 2 for an unknown meter, 64 for bad dates.
    """
    import psycopg

    try:
        d_from = date.fromisoformat(str(date_from)) if date_from else None
        d_to = date.fromisoformat(str(date_to)) if date_to else None
    except ValueError as exc:
        return _error(str(exc), as_json, "usage")
    if (d_from is None) != (d_to is None) or (d_from and d_to and d_to < d_from):
        return _error("give both --from and --to, --to not before --from", as_json, "usage")

    async def run() -> VeeReport | None:
        from storage import vee as sv

        async with await psycopg.AsyncConnection.connect(db_url) as conn, conn.transaction():
            if meter is not None and await sv.meter_by_number(conn, number=meter) is None:
                return None
            return await vee_report(conn, settings, meter=meter, d_from=d_from, d_to=d_to)

    report = asyncio.run(run())
    if report is None:
        return _error(f"meter {meter} is not in the archive", as_json, "unknown_meter")
    if as_json:
        _print(report.to_dict())
    else:
        sys.stdout.write(format_report(report) + "\n")
    return EXIT_OK


def _parse_edit(meter: str, quantity: str, ts: str) -> tuple[int, datetime]:
    from storage.readings import QUANTITY_IDS

    if quantity not in QUANTITY_IDS:
        raise ValueError(f"quantity {quantity!r} is not in the vocabulary")
    when = datetime.fromisoformat(ts)
    if when.tzinfo is None:
        raise ValueError(f"ts {ts!r} has no UTC offset")
    if len(meter) != 12 or not meter.isdigit():
        raise ValueError(f"meter {meter!r} is not a 12-digit meter number")
    return QUANTITY_IDS[quantity], when


def vee_edit_command(settings: Any, db_url: str, *, meter: str, quantity: str, ts: str,
                     value: float, reason: str, by: str, note: str | None = None,
                     as_json: bool = False) -> int:
    """``meterhub vee edit --meter N --quantity Q --ts TS --value V --reason TEXT --by WHO``.

    Records an ``edited`` revision (next version; the actual reading stays) and an audit-log
    entry with who, when, why, and the values before.

    Returns:
        0, 2 for an unknown meter, 64 for a malformed argument.
    """
    import psycopg

    try:
        qid, when = _parse_edit(meter, quantity, ts)
    except ValueError as exc:
        return _error(str(exc), as_json, "usage")
    if not reason.strip() or not by.strip():
        return _error("--reason and --by must not be empty", as_json, "usage")

    async def run() -> dict[str, Any] | None:
        from storage import vee as sv

        async with await psycopg.AsyncConnection.connect(db_url) as conn, conn.transaction():
            found = await sv.meter_by_number(conn, number=meter)
            if found is None:
                return None
            actual = await sv.actual_value(conn, meter_id=found[0], quantity_id=qid, ts=when)
            version = await sv.add_revision(
                conn, meter_id=found[0], quantity_id=qid, ts=when, origin="edited",
                value=float(value), method="manual", reason=reason, created_by=by, note=note)
            cur = await conn.execute("SELECT now()")
            row = await cur.fetchone()
            doc = {"meter": meter, "quantity": quantity,
                   "ts": when.astimezone(settings.zone).isoformat(), "value": float(value),
                   "origin": "edited", "version": version, "reason": reason, "by": by,
                   "note": note, "actual": actual, "at": row[0].isoformat() if row else None}
            await sv.audit(conn, actor=by, action="reading_edited", subject_type="meter",
                           subject_id=meter, detail=doc)
            return doc

    doc = asyncio.run(run())
    if doc is None:
        return _error(f"meter {meter} is not in the archive", as_json, "unknown_meter")
    if as_json:
        _print(doc)
    else:
        sys.stdout.write(f"{meter} {quantity} {doc['ts']}: edited to {value} "
                         f"(version {doc['version']}) by {by}: {reason}\n")
    return EXIT_OK


def vee_approve_command(settings: Any, db_url: str, *, meter: str, ts: str, by: str,
                        reject: bool = False, quantity: str = "interval_kwh",
                        as_json: bool = False) -> int:
    """``meterhub vee approve --meter N --ts TS --by WHO [--reject]``: decide a held estimate.

    Approving writes the held value as an ``edited`` revision (method ``approved_estimate``);
    rejecting leaves the slot a gap. Both are audited.

    Returns:
        0, 2 when there is no open held estimate for that slot, 64 for a malformed argument.
    """
    import psycopg

    try:
        qid, when = _parse_edit(meter, quantity, ts)
    except ValueError as exc:
        return _error(str(exc), as_json, "usage")

    async def run() -> dict[str, Any] | None:
        from storage import vee as sv

        async with await psycopg.AsyncConnection.connect(db_url) as conn, conn.transaction():
            found = await sv.meter_by_number(conn, number=meter)
            if found is None:
                return None
            held = await sv.resolve_review(conn, meter_id=found[0], quantity_id=qid, ts=when,
                                           status="rejected" if reject else "approved", by=by)
            if held is None:
                return None
            value, method, why = held
            doc: dict[str, Any] = {"meter": meter, "quantity": quantity,
                                   "ts": when.astimezone(settings.zone).isoformat(),
                                   "decision": "rejected" if reject else "approved",
                                   "value": value, "method": method, "by": by}
            if not reject:
                doc["version"] = await sv.add_revision(
                    conn, meter_id=found[0], quantity_id=qid, ts=when, origin="edited",
                    value=value, method="approved_estimate", reason=why, created_by=by,
                    note=f"held {method} estimate approved")
            await sv.audit(conn, actor=by, action=f"estimate_{doc['decision']}",
                           subject_type="meter", subject_id=meter, detail=doc)
            return doc

    doc = asyncio.run(run())
    if doc is None:
        return _error(f"no open held estimate for meter {meter} at {ts}", as_json, "not_found")
    if as_json:
        _print(doc)
    else:
        sys.stdout.write(f"{meter} {doc['ts']}: held estimate {doc['decision']} by {by}\n")
    return EXIT_OK
