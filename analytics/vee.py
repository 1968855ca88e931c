"""VEE on arrays: validation flags, completeness report, estimation.

Array conventions:

* ``intervals``: (meters, slots) float64 interval energy (``interval_kwh``, as registered),
  NaN where no actual value exists. Slot 0 starts at a local day boundary and the slot count is
  a whole number of days (``slots_per_day`` each); slot ``s`` ends at
  ``start + (s + 1) · interval``. Raw values are never modified: estimates come back in their
  own arrays.
* ``registers``: (meters, days + 1) energy register at the day boundaries (00:00 freezes).
* Flags: per meter a count per rule id (:data:`RULES`, counted per slot, or per day for daily
  rules); a (meters, slots) uint8 mask of the rules that point at one slot (bit ``i`` is
  ``SLOT_RULES[i]``) and a (meters, days) uint16 mask of the daily and register rules (bit
  ``i`` is ``RULES[i]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from analytics import _kernels as k
from analytics._checks import (
    EMPTY_B2,
    EMPTY_F2,
    EMPTY_F3,
    EMPTY_I1,
    EMPTY_U1_2D,
    EMPTY_U1_3D,
    as_bool,
    as_float,
    as_int,
    per_meter,
    same_shape,
)

__all__ = [
    "METHODS",
    "REASONS",
    "RULES",
    "SLOT_RULES",
    "Estimates",
    "MeterVee",
    "VeeArrays",
    "VeeReport",
    "VeeSettings",
    "collate_intervals",
    "estimate_intervals",
    "validate",
]

#: Rule ids of CONTRACTS.md, in the order of the count columns and flag bits.
RULES = (
    "gap",
    "duplicate",
    "clock_tolerance",
    "time_reset",
    "negative_consumption",
    "rollover",
    "spike",
    "high_vs_history",
    "low_vs_history",
    "zero_consumption",
    "zero_consumption_outage",
    "register_vs_intervals",
    "total_vs_tariffs",
    "multiplier_change",
    "read_after_removal",
)
#: Rules marked per slot, bit ``i`` of :attr:`VeeArrays.slot_flags`.
SLOT_RULES = ("gap", "negative_consumption", "spike", "read_after_removal")
#: Estimation methods indexed by :attr:`Estimates.method`.
METHODS = ("", "linear", "like_day")
#: Estimation reasons indexed by :attr:`Estimates.reason`.
REASONS = ("", "comms_fault", "outage")


@dataclass(frozen=True)
class VeeSettings:
    """Thresholds of the validation and estimation rules (defaults of DOMAIN.md or practice).

    Attributes:
        spike_ratio: a day's highest interval above this multiple of its third-highest.
        spike_min_kwh: ... and at least this much energy.
        high_factor: day energy above this multiple of history is ``high_vs_history``.
        low_factor: day energy (non-zero) below this multiple of history is ``low_vs_history``.
        history_min_kwh: history below this is not judged against.
        register_abs_tol: register delta vs Σ intervals, absolute tolerance (register units).
        register_rel_tol: ... plus this fraction of the delta.
        tariff_tol: total register vs Σ tariff registers tolerance. Each register is shown
            truncated to its resolution (0.01 kWh), so four tariff registers may sum to up to
            0.04 kWh less than the total on a healthy meter: the default leaves room for that.
        clock_tolerance_s: clock offset allowed (SGCC practice: 60 s).
        time_reset_s: a step between consecutive clock checks larger than this is a reset.
        max_linear_minutes: longest gap filled by linear interpolation (Ontario: 60).
        like_days: like days averaged for longer gaps.
        like_weeks: weeks searched on either side for like days.
    """

    spike_ratio: float = 5.0
    spike_min_kwh: float = 0.5
    high_factor: float = 3.0
    low_factor: float = 0.2
    history_min_kwh: float = 1.0
    register_abs_tol: float = 0.05
    register_rel_tol: float = 0.01
    tariff_tol: float = 0.05
    clock_tolerance_s: float = 60.0
    time_reset_s: float = 60.0
    max_linear_minutes: float = 60.0
    like_days: int = 3
    like_weeks: int = 8


@dataclass(frozen=True)
class MeterVee:
    """One meter of ``vee report --json`` (CONTRACTS.md)."""

    meter: str
    interval: int | None
    first: str | None
    last: str | None
    expected: int
    received: int
    missing: int
    gaps: int
    gap_slots_max: int
    duplicates: int
    estimated: int
    flags: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of this meter."""
        return {
            "meter": self.meter,
            "interval": self.interval,
            "first": self.first,
            "last": self.last,
            "expected": self.expected,
            "received": self.received,
            "missing": self.missing,
            "gaps": self.gaps,
            "gap_slots_max": self.gap_slots_max,
            "duplicates": self.duplicates,
            "estimated": self.estimated,
            "flags": dict(self.flags),
        }


@dataclass(frozen=True)
class VeeReport:
    """The document of ``vee report --json``: ``{"meters": [...]}``."""

    meters: list[MeterVee] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document."""
        return {"meters": [m.to_dict() for m in self.meters]}


@dataclass(frozen=True)
class VeeArrays:
    """Validation results per meter (arrays of length meters unless noted).

    Attributes:
        counts: (meters, len(RULES)) int32 flag counts.
        first: first slot with an actual value, −1 if none.
        last: last slot with an actual value, −1 if none.
        expected: slots from first to last, both included.
        received: slots with an actual value.
        missing: expected − received.
        gaps: runs of missing slots between first and last.
        gap_slots_max: longest such run.
        duplicates: slots that received two or more different values.
        estimated: slots filled by estimation.
        slot_flags: (meters, slots) uint8 mask, bit ``i`` = ``SLOT_RULES[i]``, or None.
        day_flags: (meters, days) uint16 bit mask of daily and register rules.
    """

    counts: NDArray[np.int32]
    first: NDArray[np.int32]
    last: NDArray[np.int32]
    expected: NDArray[np.int32]
    received: NDArray[np.int32]
    missing: NDArray[np.int32]
    gaps: NDArray[np.int32]
    gap_slots_max: NDArray[np.int32]
    duplicates: NDArray[np.int64]
    estimated: NDArray[np.int32]
    slot_flags: NDArray[np.uint8] | None
    day_flags: NDArray[np.uint16]

    def flags(self, meter: int) -> dict[str, int]:
        """Counts of every rule for one meter row."""
        return {r: int(c) for r, c in zip(RULES, self.counts[meter], strict=True)}

    def to_report(
        self,
        meter_ids: Sequence[str],
        interval_minutes: int,
        start: datetime,
    ) -> VeeReport:
        """Build the ``vee report`` rows.

        Args:
            meter_ids: meter number of each row.
            interval_minutes: the meters' interval length.
            start: aware datetime at which slot 0 begins; timestamps are interval ends.

        Raises:
            ValueError: wrong number of meter ids.
        """
        if len(meter_ids) != self.counts.shape[0]:
            raise ValueError(f"need {self.counts.shape[0]} meter ids, got {len(meter_ids)}")
        step = timedelta(minutes=interval_minutes)

        def stamp(slot: int) -> str | None:
            return None if slot < 0 else (start + (slot + 1) * step).isoformat()

        return VeeReport(
            [
                MeterVee(
                    meter=str(meter_ids[i]),
                    interval=int(interval_minutes),
                    first=stamp(int(self.first[i])),
                    last=stamp(int(self.last[i])),
                    expected=int(self.expected[i]),
                    received=int(self.received[i]),
                    missing=int(self.missing[i]),
                    gaps=int(self.gaps[i]),
                    gap_slots_max=int(self.gap_slots_max[i]),
                    duplicates=int(self.duplicates[i]),
                    estimated=int(self.estimated[i]),
                    flags=self.flags(i),
                )
                for i in range(len(meter_ids))
            ]
        )


def collate_intervals(
    meter: ArrayLike,
    slot: ArrayLike,
    value: ArrayLike,
    *,
    n_meters: int,
    n_slots: int,
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.int64]]:
    """Place long-format interval readings into a (meters, slots) matrix.

    For a slot delivered more than once the first delivery (in input order) is kept; a later
    *different* value makes the slot a duplicate (counted once per slot), an identical one is a
    re-delivery, counted apart (CONTRACTS.md: dropped and counted).

    Args:
        meter: meter row index of each reading.
        slot: slot index of each reading.
        value: interval energy.
        n_meters: rows of the matrix.
        n_slots: columns of the matrix.

    Returns:
        The matrix (NaN where nothing arrived), per-meter duplicate slots (different values)
        and per-meter identical re-deliveries.

    Raises:
        TypeError: wrong dtypes.
        ValueError: different lengths or indices out of range.
    """
    m = as_int("meter", meter, 1)
    s = as_int("slot", slot, 1)
    v = as_float("value", value, 1)
    same_shape("slot", s, m.shape)
    same_shape("value", v, m.shape)
    if m.size and (m.min() < 0 or m.max() >= n_meters or s.min() < 0 or s.max() >= n_slots):
        raise ValueError("meter or slot index out of range of the matrix")
    order = np.lexsort((s, m))
    out = np.full((n_meters, n_slots), np.nan)
    dup = np.zeros(n_meters, dtype=np.int64)
    same = np.zeros(n_meters, dtype=np.int64)
    k._collate_long(
        np.ascontiguousarray(m[order]),
        np.ascontiguousarray(s[order]),
        np.ascontiguousarray(v[order]),
        out,
        dup,
        same,
    )
    return out, dup, same


def _check_days(x: NDArray[np.float64], slots_per_day: int) -> int:
    if slots_per_day <= 0:
        raise ValueError("slots_per_day must be positive")
    if x.shape[1] % slots_per_day:
        raise ValueError(
            f"intervals have {x.shape[1]} slots, not a whole number of days of "
            f"{slots_per_day}; pad the last day with NaN"
        )
    return x.shape[1] // slots_per_day


def validate(
    intervals: ArrayLike,
    *,
    slots_per_day: int,
    registers: ArrayLike | None = None,
    rollover: float | ArrayLike = 0.0,
    duplicates: ArrayLike | None = None,
    outage: ArrayLike | None = None,
    history_daily: ArrayLike | None = None,
    removed_slot: ArrayLike | None = None,
    estimated: ArrayLike | None = None,
    clock_offset_s: ArrayLike | None = None,
    tariff_registers: ArrayLike | None = None,
    multiplier_by_day: ArrayLike | None = None,
    settings: VeeSettings | None = None,
    slot_flags: bool = True,
) -> VeeArrays:
    """Run the validation rules over interval and register arrays.

    Args:
        intervals: (meters, slots) interval energy, NaN missing.
        slots_per_day: slots in a day (96 for 15 minutes).
        registers: (meters, days + 1) energy register at day boundaries, NaN missing: enables
            ``negative_consumption``/``rollover`` on registers and ``register_vs_intervals``.
        rollover: register span per meter (0 for none).
        duplicates: (meters,) slots that received different values (from storage or
            :func:`collate_intervals`).
        outage: (meters, slots) bool, supply outage known: separates
            ``zero_consumption_outage`` from ``zero_consumption``.
        history_daily: (meters,) or (meters, days) expected daily energy (e.g. the mean of the
            same weekdays before), NaN unknown.
        removed_slot: (meters,) first slot after removal or disconnection, −1 for none.
        estimated: (meters, slots) bool, slots holding an estimate.
        clock_offset_s: (meters, checks) clock offset seen at each clock check, NaN for none.
        tariff_registers: (meters, tariffs, days + 1) tariff registers at day boundaries.
        multiplier_by_day: (meters, days) CT × PT reported in force each day, NaN unknown.
        settings: rule thresholds.
        slot_flags: also return the per-slot bit mask (the largest output).

    Returns:
        Counts, completeness and flag masks.

    Raises:
        TypeError: wrong dtypes.
        ValueError: wrong shapes.
    """
    cfg = settings or VeeSettings()
    x = as_float("intervals", intervals, 2)
    n_m, _n_s = x.shape
    n_d = _check_days(x, slots_per_day)
    mod = per_meter("rollover", rollover, n_m, np.float64, 0.0)
    reg = EMPTY_F2
    if registers is not None:
        reg = as_float("registers", registers, 2)
        same_shape("registers", reg, (n_m, n_d + 1))
    dup_in = EMPTY_I1
    if duplicates is not None:
        dup_in = as_int("duplicates", duplicates, 1)
        same_shape("duplicates", dup_in, (n_m,))
    out = EMPTY_B2
    if outage is not None:
        out = as_bool("outage", outage, 2)
        same_shape("outage", out, x.shape)
    hist = EMPTY_F2
    if history_daily is not None:
        h = np.asarray(history_daily, dtype=np.float64)
        hist = as_float("history_daily", h[:, None] if h.ndim == 1 else h, 2)
        if hist.shape not in ((n_m, 1), (n_m, n_d)):
            raise ValueError(f"history_daily must have shape ({n_m},) or ({n_m}, {n_d})")
    rem = per_meter("removed_slot", removed_slot, n_m, np.int64, -1)
    est = EMPTY_B2
    if estimated is not None:
        est = as_bool("estimated", estimated, 2)
        same_shape("estimated", est, x.shape)
    tar = EMPTY_F3
    mobs = EMPTY_F2
    if reg.shape[0]:
        if tariff_registers is not None:
            tar = as_float("tariff_registers", tariff_registers, 3)
            if tar.shape[0] != n_m or tar.shape[2] != n_d + 1:
                raise ValueError(f"tariff_registers must have shape ({n_m}, T, {n_d + 1})")
        if multiplier_by_day is not None:
            mobs = as_float("multiplier_by_day", multiplier_by_day, 2)
            same_shape("multiplier_by_day", mobs, (n_m, n_d))
    elif tariff_registers is not None or multiplier_by_day is not None:
        raise ValueError("tariff_registers and multiplier_by_day need registers=")
    clk = EMPTY_F2
    if clock_offset_s is not None:
        clk = as_float("clock_offset_s", clock_offset_s, 2)
        if clk.shape[0] != n_m:
            raise ValueError(f"clock_offset_s must have {n_m} rows")
    params = np.empty(k.N_P)
    params[k.P_SPIKE_RATIO] = cfg.spike_ratio
    params[k.P_SPIKE_MIN] = cfg.spike_min_kwh
    params[k.P_HIGH_FACTOR] = cfg.high_factor
    params[k.P_LOW_FACTOR] = cfg.low_factor
    params[k.P_HISTORY_MIN] = cfg.history_min_kwh
    params[k.P_REG_ABS_TOL] = cfg.register_abs_tol
    params[k.P_REG_REL_TOL] = cfg.register_rel_tol
    params[k.P_TARIFF_TOL] = cfg.tariff_tol
    params[k.P_CLOCK_TOL] = cfg.clock_tolerance_s
    params[k.P_TIME_RESET] = cfg.time_reset_s

    # uninitialised: the kernel writes every element, in one parallel pass over the rows
    counts = np.empty((n_m, k.N_RULES), dtype=np.int32)
    summ = np.empty((n_m, k.N_C), dtype=np.int32)
    sflags = np.empty(x.shape, dtype=np.uint8) if slot_flags else EMPTY_U1_2D
    dflags = np.empty((n_m, n_d), dtype=np.uint16)
    # days as a third axis (views): day loops index from 0, which lets them vectorise
    x3 = x.reshape(n_m, n_d, slots_per_day)
    sf3 = sflags.reshape(n_m, n_d, slots_per_day) if slot_flags else EMPTY_U1_3D
    k._vee_validate(
        x, x3, reg, mod, out, hist, rem, est, dup_in, tar, mobs, clk, params,
        counts, summ, sflags, sf3, dflags,
    )  # fmt: skip
    # columns of one (meters, N_C) block, returned as views
    return VeeArrays(
        counts=counts,
        first=summ[:, k.C_FIRST],
        last=summ[:, k.C_LAST],
        expected=summ[:, k.C_EXPECTED],
        received=summ[:, k.C_RECEIVED],
        missing=summ[:, k.C_MISSING],
        gaps=summ[:, k.C_GAPS],
        gap_slots_max=summ[:, k.C_GAP_MAX],
        duplicates=dup_in if duplicates is not None else np.zeros(n_m, dtype=np.int64),
        estimated=summ[:, k.C_ESTIMATED],
        slot_flags=sflags if slot_flags else None,
        day_flags=dflags,
    )


@dataclass(frozen=True)
class Estimates:
    """Estimates for missing slots; the actual values are untouched.

    Attributes:
        values: (meters, slots) estimated energy, NaN where no estimate was made (actual
            slots and gaps with no usable like day).
        method: (meters, slots) int8 index into :data:`METHODS` (0 = none).
        reason: (meters, slots) int8 index into :data:`REASONS` (0 = none).
    """

    values: NDArray[np.float64]
    method: NDArray[np.int8]
    reason: NDArray[np.int8]

    @property
    def estimated(self) -> NDArray[np.bool_]:
        """(meters, slots) True where an estimate exists."""
        return self.method != 0

    def filled(self, intervals: ArrayLike) -> NDArray[np.float64]:
        """A new array: actual values where present, else the estimate (NaN if none)."""
        x = np.asarray(intervals, dtype=np.float64)
        return np.where(np.isnan(x), self.values, x)


def estimate_intervals(
    intervals: ArrayLike,
    *,
    slots_per_day: int,
    interval_minutes: float,
    outage: ArrayLike | None = None,
    registers: ArrayLike | None = None,
    rollover: float | ArrayLike = 0.0,
    settings: VeeSettings | None = None,
) -> Estimates:
    """Estimate missing interval values.

    Gaps of at most ``settings.max_linear_minutes`` with actual neighbours on both sides are
    interpolated linearly. Longer gaps (and gaps at the ends) take, slot by slot, the average
    of the same slot on the ``like_days`` nearest same weekdays (±7, ±14 … days) that are
    complete and outage-free; when the day's register delta is known the like-day values are
    scaled so that the day adds up to it.

    Args:
        intervals: (meters, slots) actual interval energy, NaN missing.
        slots_per_day: slots in a day.
        interval_minutes: interval length.
        outage: (meters, slots) bool; outage slots get reason ``outage``, outage days are not
            used as like days.
        registers: (meters, days + 1) registers at day boundaries.
        rollover: register span per meter.
        settings: estimation settings.

    Returns:
        Estimated values with method and reason codes.

    Raises:
        TypeError: wrong dtypes.
        ValueError: wrong shapes or a non-positive interval.
    """
    cfg = settings or VeeSettings()
    if interval_minutes <= 0:
        raise ValueError("interval_minutes must be positive")
    x = as_float("intervals", intervals, 2)
    n_m, _ = x.shape
    n_d = _check_days(x, slots_per_day)
    out = EMPTY_B2
    if outage is not None:
        out = as_bool("outage", outage, 2)
        same_shape("outage", out, x.shape)
    reg = EMPTY_F2
    if registers is not None:
        reg = as_float("registers", registers, 2)
        same_shape("registers", reg, (n_m, n_d + 1))
    mod = per_meter("rollover", rollover, n_m, np.float64, 0.0)
    max_linear = int(cfg.max_linear_minutes // interval_minutes)
    values = np.full(x.shape, np.nan)
    method = np.zeros(x.shape, dtype=np.int8)
    reason = np.zeros(x.shape, dtype=np.int8)
    k._estimate_intervals(
        x, slots_per_day, max_linear, cfg.like_days, cfg.like_weeks, out, reg, mod,
        values, method, reason,
    )  # fmt: skip
    return Estimates(values, method, reason)
