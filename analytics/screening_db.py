"""Database glue for ``meterhub vee screen``: 估抄 / 漏抄 / 错抄 in manual reads.

Manual reads are energy-register readings stored with ``read_kind = 'manual'`` (reading books,
forwarded reads) of meters with protocol ``manual`` or any manual read. Each meter's reads are
laid out one column per reading cycle: a local day, or a calendar month when the meter's reads
are 20 days or more apart (``--cycle auto``); a cycle without a read is a gap the screening
judges as a possible 漏抄. Several reads in one cycle: the first counts.

Scores come from :func:`analytics.screening.screen_manual_reads` (a whole number of kWh added,
round numbers, previous + average, identical increments and reads the next read catches up for
估抄; missing cycles and copies for 漏抄; ×10 / ÷10 slips, digit transpositions and misread
digits that put a read back on its neighbours' line, another meter's read, reads far out of
sequence for 错抄), each read with the names of its evidence. Where the meter also has automatic
register readings (polls or daily freezes, ``read_kind = 'meter'``) bracketing a manual read
within a day, the register interpolated at the read's instant is the reference: a read within
the bracket's own increment (+ 0.02 kWh) of it is confirmed, one outside is 估抄 or 错抄 by the
strongest evidence there is. A skipped cycle is charged to the meter's usual reader (the one
who read it most often), so the per-reader summary shows who skips. Per read and per reader
results are stored in ``manual_read_score`` and ``reader_score``; the command prints reads
scoring at least 0.5 on any count (``--all``: every read) and every reader.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np

from analytics.screening import screen_manual_reads

EXIT_OK = 0
FLAG_AT = 0.5


@dataclass(frozen=True)
class ScreenedRead:
    """One reading cycle of one meter."""

    meter: str
    cycle: str
    ts: str | None
    reader: str | None
    value: float | None
    estimated: float
    skipped: float
    error: float
    evidence: list[str]

    def to_dict(self) -> dict[str, Any]:
        """The JSON object."""
        return {"meter": self.meter, "cycle": self.cycle, "ts": self.ts, "reader": self.reader,
                "value": self.value, "estimated": self.estimated, "skipped": self.skipped,
                "error": self.error, "evidence": list(self.evidence)}


@dataclass(frozen=True)
class ScreenReport:
    """``vee screen --json``: ``{"reads": [...], "readers": [...]}``."""

    reads: list[ScreenedRead]
    readers: list[dict[str, Any]]

    def flagged(self, at: float = FLAG_AT) -> ScreenReport:
        """Only reads scoring at least ``at`` on one of the three counts."""
        return ScreenReport([r for r in self.reads
                             if max(r.estimated, r.skipped, r.error) >= at], self.readers)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document."""
        return {"reads": [r.to_dict() for r in self.reads], "readers": list(self.readers)}


#: Automatic readings further apart than this do not bracket a manual read.
BRACKET_S = 86400.0


def _references(
    auto: Any, mids: list[int], vals: np.ndarray,
    stamp: dict[tuple[int, int], tuple[datetime, str | None]],
) -> tuple[np.ndarray, np.ndarray]:
    """(reference, tolerance) per read: the meter's automatic register at the read's instant,
    interpolated between the readings that bracket it within a day, and that bracket's own
    increment + 0.02 kWh (NaN where no automatic reading brackets the read)."""
    ref = np.full(vals.shape, np.nan)
    tol = np.full(vals.shape, 0.05)
    if auto.meter_id.size == 0:
        return ref, tol
    series: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for i, mid in enumerate(mids):
        sel = auto.meter_id == mid
        if sel.any():
            order = np.argsort(auto.epoch[sel], kind="stable")
            series[i] = (auto.epoch[sel][order], auto.value[sel][order])
    for (i, j), (ts, _rd) in stamp.items():
        got = series.get(i)
        if got is None:
            continue
        t, v = got
        x = ts.timestamp()
        hi = int(np.searchsorted(t, x, side="left"))
        if hi < t.size and abs(t[hi] - x) <= 60.0:  # read at the same minute
            ref[i, j], tol[i, j] = v[hi], 0.05
            continue
        lo = hi - 1
        if lo < 0 or hi >= t.size or t[hi] - t[lo] > BRACKET_S or v[hi] < v[lo]:
            continue
        ref[i, j] = v[lo] + (v[hi] - v[lo]) * (x - t[lo]) / (t[hi] - t[lo])
        tol[i, j] = (v[hi] - v[lo]) + 0.02
    return ref, tol


def _cycles(first: date, last: date, monthly: bool) -> list[date]:
    if not monthly:
        return [first + timedelta(days=i) for i in range((last - first).days + 1)]
    out, y, m = [], first.year, first.month
    while (y, m) <= (last.year, last.month):
        out.append(date(y, m, 1))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


async def screen_reads(
    conn: Any, settings: Any, *, d_from: date, d_to: date, meter: str | None = None,
    cycle: str = "auto", store: bool = True,
) -> ScreenReport:
    """Screen the manual reads of ``[d_from, d_to]`` (local dates, inclusive).

    Args:
        conn: async connection; the caller owns the transaction.
        settings: meterhub settings (time zone).
        d_from: first local date.
        d_to: last local date.
        meter: one meter number, or None for every manually read meter.
        cycle: ``day``, ``month`` or ``auto``.
        store: replace the stored scores of the window.

    Returns:
        Every read (cycle) scored, and the per-reader summary.

    Raises:
        ValueError: an unknown cycle.
    """
    from storage import vee as sv

    if cycle not in ("auto", "day", "month"):
        raise ValueError(f"cycle {cycle!r}: day, month or auto")
    zone = settings.zone
    ids = await sv.manual_meter_ids(conn)
    info = {m.id: m for m in await sv.meters(conn, default_interval=settings.default_interval_min,
                                               ids=ids)}
    if meter is not None:
        ids = [i for i in ids if info[i].number == meter]
    reads = await sv.manual_reads(conn, start=sv.day_start(d_from, zone),
                                  end=sv.day_start(d_to + timedelta(days=1), zone), ids=ids)
    auto = await sv.automatic_registers(
        conn, ids=sorted({r[0] for r in reads}),
        start=sv.day_start(d_from - timedelta(days=1), zone),
        end=sv.day_start(d_to + timedelta(days=2), zone))
    by_meter: dict[int, list[tuple[datetime, float, str | None]]] = {}
    for mid, ts, v, rd in reads:
        by_meter.setdefault(mid, []).append((ts, v, rd))
    out: list[ScreenedRead] = []
    reader_rows: dict[str, list[float]] = {}
    store_rows: list[tuple[Any, ...]] = []
    # one matrix per cycle kind
    kinds: dict[bool, list[int]] = {False: [], True: []}
    for mid, rows in by_meter.items():
        gaps = np.diff([r[0].timestamp() for r in rows]) / 86400.0
        monthly = cycle == "month" or (cycle == "auto" and gaps.size > 0
                                       and float(np.median(gaps)) >= 20.0)
        kinds[monthly].append(mid)
    all_readers = sorted({rd for rows in by_meter.values() for _, _, rd in rows if rd})
    rix = {r: i for i, r in enumerate(all_readers)}
    for monthly, mids in kinds.items():
        if not mids:
            continue
        cyc = _cycles(d_from, d_to, monthly)
        cix = {c: i for i, c in enumerate(cyc)}
        n, k = len(mids), len(cyc)
        vals = np.full((n, k), np.nan)
        who = np.full((n, k), -1, dtype=np.int64)
        stamp: dict[tuple[int, int], tuple[datetime, str | None]] = {}
        for i, mid in enumerate(mids):
            usual = Counter(rd for _, _, rd in by_meter[mid] if rd).most_common(1)
            if usual:
                who[i, :] = rix[usual[0][0]]
            for ts, v, rd in by_meter[mid]:
                local = ts.astimezone(zone).date()
                c = date(local.year, local.month, 1) if monthly else local
                j = cix.get(c)
                if j is None or not np.isnan(vals[i, j]):
                    continue
                vals[i, j] = v
                if rd:
                    who[i, j] = rix[rd]
                stamp[(i, j)] = (ts, rd)
        ref, tol = _references(auto, mids, vals, stamp)
        res = screen_manual_reads(vals, readers=who, reference=ref, reference_tol=tol,
                                  flag_at=FLAG_AT)
        for i, mid in enumerate(mids):
            for j, c in enumerate(cyc):
                ts_rd = stamp.get((i, j))
                has = not np.isnan(vals[i, j])
                e, s, x = (float(res.estimated_score[i, j]), float(res.skipped_score[i, j]),
                           float(res.error_score[i, j]))
                if not has and s <= 0.0:
                    continue
                ev = res.evidence_of(i, j)
                rd = ts_rd[1] if ts_rd else (all_readers[who[i, j]] if who[i, j] >= 0 else None)
                out.append(ScreenedRead(
                    meter=info[mid].number, cycle=c.isoformat(),
                    ts=ts_rd[0].astimezone(zone).isoformat() if ts_rd else None, reader=rd,
                    value=float(vals[i, j]) if has else None, estimated=e, skipped=s, error=x,
                    evidence=ev))
                store_rows.append((mid, c, ts_rd[0] if ts_rd else None, rd,
                                   float(vals[i, j]) if has else None, e, s, x, ev))
        for r in res.readers:
            name = all_readers[r.reader]
            acc = reader_rows.setdefault(name, [0, 0.0, 0, 0])
            acc[1] = (acc[1] * acc[0] + r.estimated * r.reads) / max(acc[0] + r.reads, 1)
            acc[0] += r.reads
            acc[2] += r.skipped
            acc[3] += r.errors
    readers: list[dict[str, Any]] = []
    for name, (n_reads, est, skipped, errors) in reader_rows.items():
        score = est + (skipped + errors) / max(n_reads, 1)
        readers.append({"reader": name, "reads": int(n_reads), "estimated": float(est),
                        "skipped": int(skipped), "errors": int(errors), "score": float(score)})
    readers.sort(key=lambda r: -r["score"])
    out.sort(key=lambda r: (r.meter, r.cycle))
    if store and ids:
        first = min(_cycles(d_from, d_to, True)[0], d_from)
        await sv.replace_read_scores(conn, ids=ids, first=first, last=d_to, rows=store_rows)
        await sv.replace_reader_scores(
            conn, d_from=d_from, d_to=d_to,
            rows=[(r["reader"], r["reads"], r["estimated"], r["skipped"], r["errors"],
                   r["score"]) for r in readers])
    return ScreenReport(out, readers)


def format_screen(report: ScreenReport) -> str:
    """A table for people: flagged reads, then readers."""
    lines = [f"{'meter':<12} {'cycle':<10} {'reader':<12} {'value':>12} {'估抄':>5} {'漏抄':>5} "
             f"{'错抄':>5}  evidence"]
    for r in report.reads:
        v = f"{r.value:>12.2f}" if r.value is not None else f"{'-':>12}"
        lines.append(f"{r.meter:<12} {r.cycle:<10} {r.reader or '-':<12} {v} {r.estimated:>5.2f} "
                     f"{r.skipped:>5.2f} {r.error:>5.2f}  {', '.join(r.evidence) or '-'}")
    lines.append("")
    lines.append(f"{'reader':<12} {'reads':>6} {'估抄':>6} {'漏抄':>5} {'错抄':>5} {'score':>6}")
    for rd in report.readers:
        lines.append(f"{rd['reader']:<12} {rd['reads']:>6} {rd['estimated']:>6.2f} "
                     f"{rd['skipped']:>5} {rd['errors']:>5} {rd['score']:>6.2f}")
    return "\n".join(lines)


def vee_screen_command(settings: Any, db_url: str, *, date_from: Any, date_to: Any,
                       meter: str | None = None, cycle: str = "auto", show_all: bool = False,
                       as_json: bool = False) -> int:
    """``meterhub vee screen --from DATE --to DATE [--meter N] [--cycle auto|day|month]
    [--all] [--json]``.

    Returns:
        0 (scores are findings), 64 for bad dates or cycle.
    """
    import psycopg

    from analytics.vee_db import _dates, _error, _print

    try:
        d_from, d_to = _dates(date_from, date_to)
        if cycle not in ("auto", "day", "month"):
            raise ValueError(f"--cycle {cycle!r}: day, month or auto")
    except ValueError as exc:
        return _error(str(exc), as_json, "usage")

    async def run() -> ScreenReport:
        async with await psycopg.AsyncConnection.connect(db_url) as conn, conn.transaction():
            return await screen_reads(conn, settings, d_from=d_from, d_to=d_to, meter=meter,
                                      cycle=cycle)

    report = asyncio.run(run())
    shown = report if show_all else report.flagged()
    if as_json:
        _print(shown.to_dict())
    else:
        sys.stdout.write(format_screen(shown) + "\n")
    return EXIT_OK
