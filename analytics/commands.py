"""Database glue for ``meterhub analyze lineloss``: boundary registers in, area rows out.

The balance is computed one period at a time so that each meter belongs to the area its
户变关系 record names at that period (an archive correction moves it between areas from the
correction's date on, not retroactively). A meter exchanged inside a period contributes
(old end − old start) + (new end − new start) for every register the balance uses (forward,
and reverse for a bidirectional meter): the removed meter's end readings stand in for its
missing end boundary, the new meter's start readings for its missing start boundary.
Results are stored in ``line_loss`` for the API and returned for printing. For every result
that is not computable the missing boundary readings (meter, register, instant) are stored in
``line_loss_blocker``: what blocks what, shown to operators and used by the re-read queue.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from analytics.lineloss import (
    ROLE_CUSTOMER,
    ROLE_SUPPLY,
    AreaLoss,
    LineLossReport,
    LossThresholds,
    line_loss,
)

FORWARD = "forward_active_total_kwh"
REVERSE = "reverse_active_total_kwh"


@dataclass(frozen=True, slots=True)
class Blocker:
    """A missing boundary reading behind a line-loss result that is not computable."""

    area: str
    date: str
    meter_id: int
    meter: str
    quantity: str
    boundary: datetime
    role: str


@dataclass(frozen=True, slots=True)
class Periods:
    """Period labels and their boundary instants (len(boundaries) == len(labels) + 1)."""

    kind: str
    labels: list[str]
    boundaries: list[datetime]


def periods(d_from: date, d_to: date, kind: str, zone: ZoneInfo) -> Periods:
    """Days (``--to`` inclusive) or the months they touch, with local boundaries.

    Raises:
        ValueError: ``d_to`` before ``d_from`` or an unknown kind.
    """
    if d_to < d_from:
        raise ValueError("--to is before --from")
    if kind == "day":
        n = (d_to - d_from).days + 1
        days = [d_from + timedelta(days=i) for i in range(n + 1)]
        return Periods(kind, [d.isoformat() for d in days[:-1]],
                       [datetime(d.year, d.month, d.day, tzinfo=zone) for d in days])
    if kind == "month":
        months: list[tuple[int, int]] = []
        y, m = d_from.year, d_from.month
        while (y, m) <= (d_to.year, d_to.month):
            months.append((y, m))
            y, m = (y + 1, 1) if m == 12 else (y, m + 1)
        edges = [*months, (y, m)]
        return Periods(kind, [f"{a:04d}-{b:02d}" for a, b in months],
                       [datetime(a, b, 1, tzinfo=zone) for a, b in edges])
    raise ValueError(f"unknown period {kind!r}: day or month")


def _mult_at(history: list[tuple[datetime, float]], at: datetime) -> float:
    value = history[0][1] if history else 1.0
    for since, mult in history:
        if since <= at:
            value = mult
    return value


async def compute_lineloss(
    conn: Any, settings: Any, *, d_from: date, d_to: date, kind: str = "day",
    area: str | None = None, store: bool = True,
) -> LineLossReport:
    """Same-period line loss per area and period from the database.

    Args:
        conn: an async psycopg connection (the caller owns the transaction).
        settings: meterhub settings (time zone, default thresholds, freeze tolerance).
        d_from: first local date.
        d_to: last local date (inclusive).
        kind: ``day`` or ``month``.
        area: one area id, or None for all.
        store: write the rows to ``line_loss``.

    Returns:
        Rows ordered by area then period.
    """
    from storage import boundaries as sb

    zone = settings.zone
    per = periods(d_from, d_to, kind, zone)
    area_list = await sb.areas(conn, area=area)
    if not area_list:
        return LineLossReport([])
    area_index = {a.id: i for i, a in enumerate(area_list)}
    b = per.boundaries
    member_rows = [r for r in await sb.memberships(conn, start=b[0], end=b[-1])
                   if r[1] in area_index]
    ids = sorted({r[0] for r in member_rows})
    info = await sb.meters(conn, ids=ids)
    mults = await sb.multipliers(conn, ids=ids)
    tol = timedelta(minutes=settings.freeze_tolerance_min)
    fwd = await sb.boundary_values(conn, ids=ids, boundaries=b, tolerance=tol,
                                   quantities=sb.FORWARD)
    bidi_ids = [i for i in ids if info[i].bidirectional]
    rev = await sb.boundary_values(conn, ids=bidi_ids, boundaries=b, tolerance=tol,
                                   quantities=sb.REVERSE)
    lo_d, hi_d = settings.loss_band

    def th(attr: str, default: float) -> np.ndarray:
        return np.array([getattr(a, attr) if getattr(a, attr) is not None else default
                         for a in area_list], dtype=np.float64)

    rows: list[AreaLoss] = []
    missing: list[Blocker] = []
    for p, label in enumerate(per.labels):
        start, end = b[p], b[p + 1]
        mid = start + (end - start) / 2
        sel: list[tuple[int, int]] = []
        for mid_id, a_id, vf, vt in member_rows:
            if (vf is None or vf <= mid) and (vt is None or mid < vt):
                m = info[mid_id]
                if m.removed_at is not None and m.removed_at <= start:
                    continue
                if m.installed_at is not None and m.installed_at >= end:
                    continue
                sel.append((mid_id, area_index[a_id]))
        sel.sort(key=lambda t: (t[1], t[0]))
        n = len(sel)
        f = np.full((n, 2), np.nan)
        r = np.full((n, 2), np.nan)
        fe = np.zeros((n, 2), dtype=bool)
        re_ = np.zeros((n, 2), dtype=bool)
        area_ix = np.empty(n, dtype=np.int64)
        role = np.empty(n, dtype=np.int64)
        mult = np.empty(n)
        bidi = np.zeros(n, dtype=bool)
        roll = np.empty(n)
        at = np.empty((n, 2), dtype=object)  # the instant each boundary value belongs to
        for row, (mid_id, a_ix) in enumerate(sel):
            m = info[mid_id]
            at[row, 0], at[row, 1] = start, end
            area_ix[row] = a_ix
            role[row] = ROLE_SUPPLY if m.role == "supply" else ROLE_CUSTOMER
            mult[row] = _mult_at(mults.get(mid_id, []), start)
            bidi[row] = m.bidirectional
            roll[row] = m.rollover_kwh
            for col, idx in ((0, p), (1, p + 1)):
                if (mid_id, idx) in fwd:
                    f[row, col], fe[row, col] = fwd[(mid_id, idx)]
                if (mid_id, idx) in rev:
                    r[row, col], re_[row, col] = rev[(mid_id, idx)]
            # an exchange inside the period: the archive's readings at installation and
            # removal stand in for the missing boundary, register by register; a register
            # the archive did not record stays missing (the term is not computable)
            if m.installed_at is not None and start < m.installed_at < end:
                at[row, 0] = m.installed_at
                f[row, 0], fe[row, 0] = m.start_readings.get(FORWARD, np.nan), False
                r[row, 0], re_[row, 0] = m.start_readings.get(REVERSE, np.nan), False
            if m.removed_at is not None and start < m.removed_at <= end:
                at[row, 1] = m.removed_at
                f[row, 1], fe[row, 1] = m.end_readings.get(FORWARD, np.nan), False
                r[row, 1], re_[row, 1] = m.end_readings.get(REVERSE, np.nan), False
        scale = 1.0
        if kind == "month":
            y, mo = (int(x) for x in label.split("-"))
            scale = float(calendar.monthrange(y, mo)[1])
        result = line_loss(
            f, area=area_ix, role=role, n_areas=len(area_list), multiplier=mult,
            bidirectional=bidi, rollover=roll, reverse=r if bidi.any() else None,
            forward_estimated=fe, reverse_estimated=re_ if bidi.any() else None,
            thresholds=LossThresholds(
                band_lo=th("loss_band_lo", lo_d), band_hi=th("loss_band_hi", hi_d),
                coverage_min=th("coverage_min", settings.coverage_min),
                estimated_max=th("estimated_max", settings.estimated_max),
                low_energy_kwh=th("low_energy_kwh", settings.low_energy_kwh) * scale,
            ),
        )
        period_rows = result.to_report([a.id for a in area_list], [label]).areas
        rows.extend(period_rows)
        blocked = {r.area for r in period_rows if r.state == "not_computable"}
        for row, (mid_id, a_ix) in enumerate(sel):
            a_id = area_list[a_ix].id
            if a_id not in blocked:
                continue
            m = info[mid_id]
            for col in (0, 1):
                terms = [(FORWARD, f[row, col])]
                if m.bidirectional:
                    terms.append((REVERSE, r[row, col]))
                for q, v in terms:
                    if np.isnan(v):
                        missing.append(Blocker(a_id, label, mid_id, m.number, q,
                                               at[row, col], m.role))
    rows.sort(key=lambda r: (r.area, r.date))
    missing.sort(key=lambda x: (x.area, x.date, x.role != "supply", x.meter, x.boundary))
    if store:
        await _store(conn, kind, rows)
        await _store_blockers(conn, kind, rows, missing)
    return LineLossReport(rows, blockers=missing)


async def _store_blockers(conn: Any, kind: str, rows: list[AreaLoss],
                          missing: list[Blocker]) -> None:
    """Replace the blockers of the results just stored."""
    from storage.readings import QUANTITY_IDS

    if not rows:
        return
    async with conn.cursor() as cur:
        await cur.execute(
            "DELETE FROM line_loss_blocker b USING unnest(%s::text[], %s::text[]) AS r(a, l) "
            "WHERE b.period = %s AND b.area_id = r.a AND b.label = r.l",
            ([r.area for r in rows], [r.date for r in rows], kind),
        )
        if missing:
            await cur.executemany(
                "INSERT INTO line_loss_blocker (area_id, period, label, meter_id, quantity_id, "
                "boundary, role) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                [(x.area, kind, x.date, x.meter_id, QUANTITY_IDS[x.quantity], x.boundary, x.role)
                 for x in missing],
            )


async def _store(conn: Any, kind: str, rows: list[AreaLoss]) -> None:
    if not rows:
        return
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO line_loss (area_id, period, label, supply_kwh, sales_kwh, loss_kwh, "
            "rate, state, coverage, estimated_share, computed_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now()) "
            "ON CONFLICT (area_id, period, label) DO UPDATE SET supply_kwh = EXCLUDED.supply_kwh, "
            "sales_kwh = EXCLUDED.sales_kwh, loss_kwh = EXCLUDED.loss_kwh, rate = EXCLUDED.rate, "
            "state = EXCLUDED.state, coverage = EXCLUDED.coverage, "
            "estimated_share = EXCLUDED.estimated_share, computed_at = now()",
            [(r.area, kind, r.date, r.supply_kwh, r.sales_kwh, r.loss_kwh, r.rate, r.state,
              r.coverage, r.estimated_share) for r in rows],
        )


def format_lineloss(report: LineLossReport) -> str:
    """A table for people."""
    head = f"{'area':<12} {'date':<10} {'supply kWh':>12} {'sales kWh':>12} {'loss kWh':>10} " \
           f"{'rate %':>8} {'coverage':>8}  state"
    lines = [head]

    def num(v: float | None, width: int, digits: int = 2) -> str:
        return f"{v:>{width}.{digits}f}" if v is not None else f"{'-':>{width}}"

    for r in report.areas:
        lines.append(
            f"{r.area:<12} {r.date:<10} {num(r.supply_kwh, 12)} {num(r.sales_kwh, 12)} "
            f"{num(r.loss_kwh, 10)} {num(r.rate, 8)} {r.coverage:>7.1f}%  {r.state}"
        )
    blockers = getattr(report, "blockers", None) or []
    if blockers:
        lines.append("")
        lines.append("not computable because of missing readings (re-read these):")
        for x in blockers:
            lines.append(f"  {x.area:<12} {x.date:<10} {x.role:<8} {x.meter}  {x.quantity} "
                         f"at {x.boundary.isoformat()}")
    return "\n".join(lines)
