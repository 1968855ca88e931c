"""Same-period line loss (同期线损) per area and period from frozen registers.

Inputs are arrays a storage layer fills from the best value per slot:

* ``forward`` (and ``reverse`` when any meter is bidirectional): ``(meters, periods + 1)``
  float64 register values (secondary side, as the meter registers them) at the period
  boundaries — the 00:00 daily freezes for days, the month-start freezes for months — with NaN
  where no value exists.
* ``forward_estimated`` / ``reverse_estimated``: bool masks of the same shape, True where the
  value is an estimate (origin ``estimated`` or ``substituted``) rather than an actual read.
* Meter metadata, one entry per meter: ``area`` (0-based area index), ``role``
  (``ROLE_SUPPLY`` for the area's summary meter 台区总表, ``ROLE_CUSTOMER`` otherwise),
  ``multiplier`` (CT × PT), ``bidirectional`` (the meter has a reverse term) and ``rollover``
  (the register span at which it returns to zero, e.g. ``1_000_000.0`` for a register that
  shows up to 999999.99; 0 for none).
* ``exchanges``: meter exchanges within a period (:class:`MeterExchanges`).

Balance per area and period (DOMAIN.md): supply = Σ supply meters' forward + Σ customers'
reverse; sales = Σ customers' forward + Σ supply meters' reverse; rate = (supply − sales) /
supply in percent, unrounded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numba
import numpy as np
from numpy.typing import ArrayLike, NDArray

from analytics import _kernels as k
from analytics._checks import (
    EMPTY_B2,
    EMPTY_F1,
    EMPTY_F2,
    EMPTY_I1,
    as_bool,
    as_float,
    as_int,
    per_meter,
    same_shape,
)

__all__ = [
    "ROLE_CUSTOMER",
    "ROLE_SUPPLY",
    "STATES",
    "AreaLoss",
    "LineLossArrays",
    "LineLossReport",
    "LossThresholds",
    "MeterExchanges",
    "line_loss",
    "meter_energy",
]

ROLE_CUSTOMER = 0
ROLE_SUPPLY = 1

#: State names indexed by the codes in :attr:`LineLossArrays.state`.
STATES = ("qualified", "high_loss", "negative_loss", "not_computable", "low_energy")
QUALIFIED, HIGH_LOSS, NEGATIVE_LOSS, NOT_COMPUTABLE, LOW_ENERGY = range(5)


@dataclass(frozen=True)
class LossThresholds:
    """Per-area thresholds (scalars apply to every area, or one value per area).

    Attributes:
        band_lo: lowest qualified rate, percent; below it the state is ``negative_loss``.
        band_hi: highest qualified rate, percent; above it ``high_loss``.
        coverage_min: minimum share of customer terms present (actual or estimated), percent.
        estimated_max: maximum share of sales that is estimated, percent.
        low_energy_kwh: supply below this is ``low_energy`` (per period: scale it for months).
    """

    band_lo: float | ArrayLike = 0.0
    band_hi: float | ArrayLike = 10.0
    coverage_min: float | ArrayLike = 100.0
    estimated_max: float | ArrayLike = 5.0
    low_energy_kwh: float | ArrayLike = 20.0


@dataclass(frozen=True)
class MeterExchanges:
    """Meter exchanges (换表) inside a period, one row per exchange.

    The register matrix holds the old meter's value at the period's start and the new meter's
    at its end; the period then contributes (old end − old start) + (new end − new start).
    Several exchanges of one meter in one period chain in row order.

    Attributes:
        meter: meter row index.
        period: period index (0-based) the exchange falls in.
        old_end: the old meter's forward register at removal.
        new_start: the new meter's forward register at installation.
        old_end_reverse: as ``old_end`` for the reverse register (bidirectional meters).
        new_start_reverse: as ``new_start`` for the reverse register.
    """

    meter: ArrayLike
    period: ArrayLike
    old_end: ArrayLike
    new_start: ArrayLike
    old_end_reverse: ArrayLike | None = None
    new_start_reverse: ArrayLike | None = None


@dataclass(frozen=True)
class AreaLoss:
    """One row of ``analyze lineloss --json`` (CONTRACTS.md)."""

    area: str
    date: str
    supply_kwh: float | None
    sales_kwh: float | None
    loss_kwh: float | None
    rate: float | None
    state: str
    coverage: float
    estimated_share: float | None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of this row."""
        return {
            "area": self.area,
            "date": self.date,
            "supply_kwh": self.supply_kwh,
            "sales_kwh": self.sales_kwh,
            "loss_kwh": self.loss_kwh,
            "rate": self.rate,
            "state": self.state,
            "coverage": self.coverage,
            "estimated_share": self.estimated_share,
        }


@dataclass(frozen=True)
class LineLossReport:
    """The document of ``analyze lineloss --json``: ``{"areas": [...]}``."""

    areas: list[AreaLoss] = field(default_factory=list)
    #: the missing readings behind results that are not computable (``analytics.commands``
    #: ``Blocker`` rows; not part of the JSON document)
    blockers: list[Any] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document."""
        return {"areas": [a.to_dict() for a in self.areas]}


def _opt(v: float) -> float | None:
    return None if np.isnan(v) else float(v)


@dataclass(frozen=True)
class LineLossArrays:
    """Line loss as (areas, periods) arrays; NaN stands for JSON null.

    Attributes:
        supply_kwh: supply energy; NaN when a supply-side term is missing.
        sales_kwh: sales energy; NaN when a sales-side term is missing.
        loss_kwh: supply − sales.
        rate: loss rate in percent, unrounded; NaN when not computable or supply is zero.
        state: int8 codes into :data:`STATES`.
        coverage: share of customer terms present (actual or estimated), percent.
        estimated_share: share of sales from estimated terms, percent; NaN if sales unknown.
    """

    supply_kwh: NDArray[np.float64]
    sales_kwh: NDArray[np.float64]
    loss_kwh: NDArray[np.float64]
    rate: NDArray[np.float64]
    state: NDArray[np.int8]
    coverage: NDArray[np.float64]
    estimated_share: NDArray[np.float64]

    def to_report(
        self,
        area_ids: Sequence[str] | None = None,
        period_labels: Sequence[str] | None = None,
    ) -> LineLossReport:
        """Rows ordered by area then period.

        Args:
            area_ids: the area id of each area index (default: the index as text).
            period_labels: local date ``YYYY-MM-DD`` or month ``YYYY-MM`` of each period.

        Raises:
            ValueError: a label list of the wrong length.
        """
        n_a, n_p = self.state.shape
        ids = [str(i) for i in range(n_a)] if area_ids is None else list(area_ids)
        labels = [str(i) for i in range(n_p)] if period_labels is None else list(period_labels)
        if len(ids) != n_a or len(labels) != n_p:
            raise ValueError(f"need {n_a} area ids and {n_p} period labels")
        rows = []
        for a in range(n_a):
            for p in range(n_p):
                rows.append(
                    AreaLoss(
                        area=ids[a],
                        date=labels[p],
                        supply_kwh=_opt(self.supply_kwh[a, p]),
                        sales_kwh=_opt(self.sales_kwh[a, p]),
                        loss_kwh=_opt(self.loss_kwh[a, p]),
                        rate=_opt(self.rate[a, p]),
                        state=STATES[int(self.state[a, p])],
                        coverage=float(self.coverage[a, p]),
                        estimated_share=_opt(self.estimated_share[a, p]),
                    )
                )
        return LineLossReport(rows)


def _exchange_arrays(
    exchanges: MeterExchanges | None, n_meters: int, n_periods: int
) -> tuple[NDArray[Any], ...]:
    if exchanges is None:
        return EMPTY_I1, EMPTY_I1, EMPTY_F1, EMPTY_F1, EMPTY_F1, EMPTY_F1
    meter = as_int("exchanges.meter", exchanges.meter, 1)
    period = as_int("exchanges.period", exchanges.period, 1)
    old_end = as_float("exchanges.old_end", exchanges.old_end, 1)
    new_start = as_float("exchanges.new_start", exchanges.new_start, 1)
    n = meter.shape[0]
    nan = np.full(n, np.nan)
    old_rev = (
        nan
        if exchanges.old_end_reverse is None
        else as_float("exchanges.old_end_reverse", exchanges.old_end_reverse, 1)
    )
    new_rev = (
        nan
        if exchanges.new_start_reverse is None
        else as_float("exchanges.new_start_reverse", exchanges.new_start_reverse, 1)
    )
    for name, arr in (
        ("period", period),
        ("old_end", old_end),
        ("new_start", new_start),
        ("old_end_reverse", old_rev),
        ("new_start_reverse", new_rev),
    ):
        same_shape(f"exchanges.{name}", arr, (n,))
    if n and (meter.min() < 0 or meter.max() >= n_meters):
        raise ValueError("exchanges.meter holds an index outside the register matrix")
    if n and (period.min() < 0 or period.max() >= n_periods):
        raise ValueError("exchanges.period holds an index outside the periods")
    order = np.lexsort((np.arange(n), period, meter))
    ptr = np.zeros(n_meters + 1, dtype=np.int64)
    np.add.at(ptr, meter + 1, 1)
    np.cumsum(ptr, out=ptr)
    return (
        ptr,
        period[order],
        old_end[order],
        new_start[order],
        np.ascontiguousarray(old_rev[order]),
        np.ascontiguousarray(new_rev[order]),
    )


def meter_energy(
    registers: ArrayLike,
    *,
    multiplier: float | ArrayLike = 1.0,
    rollover: float | ArrayLike = 0.0,
    exchanges: MeterExchanges | None = None,
    reverse: bool = False,
) -> NDArray[np.float64]:
    """Primary energy of each meter per period: register difference × CT × PT.

    This is the one place the multiplier is applied. A register that rolled over (a decrease
    larger than half its span) is wrapped; a smaller decrease is negative consumption and
    gives NaN, as does a missing boundary value.

    Args:
        registers: (meters, periods + 1) register values at the period boundaries.
        multiplier: CT × PT per meter (scalar or (meters,)).
        rollover: register span per meter, 0 for none.
        exchanges: meter exchanges inside periods.
        reverse: use the exchanges' reverse-register columns.

    Returns:
        (meters, periods) float64 energy, NaN where not derivable.

    Raises:
        TypeError: non-numeric input.
        ValueError: wrong shapes or exchange indices out of range.

    Examples:
        >>> meter_energy([[999999.5, 0.5]], multiplier=2.0, rollover=1e6).tolist()
        [[2.0]]
    """
    reg = as_float("registers", registers, 2)
    n_m, n_b = reg.shape
    if n_b < 1:
        raise ValueError("registers need at least one boundary column")
    mult = per_meter("multiplier", multiplier, n_m, np.float64, 1.0)
    mod = per_meter("rollover", rollover, n_m, np.float64, 0.0)
    ptr, per, oe, ns, oer, nsr = _exchange_arrays(exchanges, n_m, max(n_b - 1, 0))
    out = np.empty((n_m, max(n_b - 1, 0)), dtype=np.float64)
    if reverse:
        oe, ns = oer, nsr
    k._meter_energy(reg, mult, mod, ptr, per, oe, ns, out)
    return out


def _per_area(name: str, value: Any, n_areas: int) -> NDArray[np.float64]:
    arr = np.asarray(value if value is not None else 0.0, dtype=np.float64)
    if arr.ndim and arr.shape != (n_areas,):
        raise ValueError(
            f"thresholds.{name} must be a scalar or have shape ({n_areas},), got {arr.shape}"
        )
    return arr


def line_loss(
    forward: ArrayLike,
    *,
    area: ArrayLike,
    role: ArrayLike,
    n_areas: int | None = None,
    multiplier: float | ArrayLike = 1.0,
    bidirectional: bool | ArrayLike = False,
    rollover: float | ArrayLike = 0.0,
    reverse: ArrayLike | None = None,
    forward_estimated: ArrayLike | None = None,
    reverse_estimated: ArrayLike | None = None,
    exchanges: MeterExchanges | None = None,
    thresholds: LossThresholds | None = None,
) -> LineLossArrays:
    """Same-period line loss of every area for every period.

    A missing term is never zero: a customer term without a value lowers coverage, a
    supply-meter term that is missing or only estimated makes the area-period
    ``not_computable``. Estimated customer terms count as present and make up
    ``estimated_share``. States follow not_computable > low_energy > negative/high/qualified.

    Args:
        forward: (meters, periods + 1) forward active registers at period boundaries, NaN
            missing.
        area: (meters,) area index of each meter, 0 … n_areas − 1.
        role: (meters,) ``ROLE_SUPPLY`` or ``ROLE_CUSTOMER``.
        n_areas: number of areas (default: max(area) + 1).
        multiplier: CT × PT per meter.
        bidirectional: per meter, True when a reverse term exists.
        rollover: register span per meter, 0 for none.
        reverse: (meters, periods + 1) reverse registers; required if any meter is
            bidirectional (rows of other meters are ignored).
        forward_estimated: bool mask like ``forward``: the value is an estimate.
        reverse_estimated: bool mask like ``reverse``.
        exchanges: meter exchanges within periods.
        thresholds: per-area thresholds (defaults of DOMAIN.md).

    Returns:
        (areas, periods) arrays; ``.to_report(area_ids, labels)`` gives the JSON rows.

    Raises:
        TypeError: wrong dtypes.
        ValueError: shapes that do not match, indices out of range, unknown roles, or
            bidirectional meters without reverse registers.

    Examples:
        >>> r = line_loss([[0.0, 100.0], [0.0, 95.0]], area=[0, 0], role=[1, 0],
        ...               thresholds=LossThresholds(coverage_min=100.0))
        >>> float(r.rate[0, 0]), STATES[r.state[0, 0]]
        (5.0, 'qualified')
    """
    th = thresholds or LossThresholds()
    fwd = as_float("forward", forward, 2)
    n_m, n_b = fwd.shape
    if n_b < 2:
        raise ValueError("forward needs at least two boundary columns (one period)")
    n_p = n_b - 1
    area_i = as_int("area", area, 1)
    same_shape("area", area_i, (n_m,))
    role_i = as_int("role", role, 1)
    same_shape("role", role_i, (n_m,))
    mult = per_meter("multiplier", multiplier, n_m, np.float64, 1.0)
    bidi = per_meter("bidirectional", bidirectional, n_m, np.bool_, False)
    mod = per_meter("rollover", rollover, n_m, np.float64, 0.0)
    if reverse is None:
        if bidi.any():
            raise ValueError("bidirectional meters need reverse registers: pass reverse=")
        rev = EMPTY_F2
    else:
        rev = as_float("reverse", reverse, 2)
        same_shape("reverse", rev, fwd.shape)
    fe = EMPTY_B2
    if forward_estimated is not None:
        fe = as_bool("forward_estimated", forward_estimated, 2)
        same_shape("forward_estimated", fe, fwd.shape)
    re_ = EMPTY_B2
    if reverse_estimated is not None and rev.shape[0]:
        re_ = as_bool("reverse_estimated", reverse_estimated, 2)
        same_shape("reverse_estimated", re_, fwd.shape)
    ex = _exchange_arrays(exchanges, n_m, n_p)

    # Meters sorted by area (the storage layer's natural order): one parallel pass checks the
    # areas and roles and computes every area.
    # The area count is then the last meter's area + 1 (thresholds sized for another count
    # mean the meters are not in order, or an error the checked path below reports).
    n_a = int(n_areas) if n_areas is not None else (int(area_i[-1]) + 1 if n_m else 0)
    if n_a >= 0 and _thresholds_fit(th, n_a):
        res, state, thr = _outputs(th, n_a, n_p)
        if _run(fwd, rev, fe, re_, area_i, role_i, mult, bidi, mod, ex, thr, res, state) == 0:
            return _arrays(res, state)
    # Otherwise: say what is wrong, or put the meters in area order and run the same pass.
    chk = np.zeros(3, dtype=np.int64)
    k._check_meters(area_i, role_i, chk)
    a_max, _unsorted, n_bad = (int(v) for v in chk)
    n_a = a_max + 1 if n_areas is None else int(n_areas)
    if n_bad or a_max >= n_a:
        if n_m and (area_i.min() < 0 or a_max >= n_a):
            raise ValueError(f"area indices must be in 0 … {n_a - 1} (n_areas={n_a})")
        raise ValueError("role must hold ROLE_SUPPLY (1) or ROLE_CUSTOMER (0) only")
    order = np.argsort(area_i, kind="stable")
    if exchanges is not None:
        new_row = np.empty(n_m, dtype=np.int64)
        new_row[order] = np.arange(n_m)
        meter = as_int("exchanges.meter", exchanges.meter, 1)
        ex = _exchange_arrays(replace(exchanges, meter=new_row[meter]), n_m, n_p)
    rev = rev[order] if rev.shape[0] else rev
    fe = fe[order] if fe.shape[0] else fe
    re_ = re_[order] if re_.shape[0] else re_
    res, state, thr = _outputs(th, n_a, n_p)
    bad = _run(
        fwd[order], rev, fe, re_, area_i[order], role_i[order], mult[order], bidi[order],
        mod[order], ex, thr, res, state,
    )  # fmt: skip
    if bad:  # cannot happen: the meters were checked and sorted
        raise RuntimeError("line loss: meters not in area order after sorting")
    return _arrays(res, state)


def _run(
    fwd: NDArray[np.float64],
    rev: NDArray[np.float64],
    fe: NDArray[np.bool_],
    re_: NDArray[np.bool_],
    area: NDArray[np.int64],
    role: NDArray[np.int64],
    mult: NDArray[np.float64],
    bidi: NDArray[np.bool_],
    mod: NDArray[np.float64],
    ex: tuple[NDArray[Any], ...],
    thr: NDArray[np.float64],
    res: NDArray[np.float64],
    state: NDArray[np.int8],
) -> int:
    """The line-loss kernel on meters expected in area order; 0 when they were."""
    n_chunks = 4 * numba.get_num_threads()
    kernel: Any = k._line_loss  # numba's stub knows no vararg call
    return int(
        kernel(fwd, rev, fe, re_, area, role, mult, bidi, mod, *ex, thr, res, state, n_chunks)
    )


_THRESHOLDS = ("band_lo", "band_hi", "coverage_min", "estimated_max", "low_energy_kwh")


def _thresholds_fit(th: LossThresholds, n_a: int) -> bool:
    """Every threshold is a scalar or has one value per area."""
    return all(np.ndim(getattr(th, name)) == 0 or np.shape(getattr(th, name)) == (n_a,)
               for name in _THRESHOLDS)  # fmt: skip


def _outputs(
    th: LossThresholds, n_a: int, n_p: int
) -> tuple[NDArray[np.float64], NDArray[np.int8], NDArray[np.float64]]:
    """Uninitialised result planes and state codes (the kernels write every element), and
    the (N_T, areas) threshold matrix."""
    thr = np.empty((k.N_T, n_a), dtype=np.float64)
    for row, name in (
        (k.T_BAND_LO, "band_lo"),
        (k.T_BAND_HI, "band_hi"),
        (k.T_COVERAGE_MIN, "coverage_min"),
        (k.T_ESTIMATED_MAX, "estimated_max"),
        (k.T_LOW_ENERGY, "low_energy_kwh"),
    ):
        thr[row] = _per_area(name, getattr(th, name), n_a)
    res = np.empty((k.N_O, n_a, n_p), dtype=np.float64)
    state = np.empty((n_a, n_p), dtype=np.int8)
    return res, state, thr


def _arrays(res: NDArray[np.float64], state: NDArray[np.int8]) -> LineLossArrays:
    """The result planes as (areas, periods) views."""
    return LineLossArrays(
        supply_kwh=res[k.O_SUPPLY],
        sales_kwh=res[k.O_SALES],
        loss_kwh=res[k.O_LOSS],
        rate=res[k.O_RATE],
        state=state,
        coverage=res[k.O_COVERAGE],
        estimated_share=res[k.O_SHARE],
    )

