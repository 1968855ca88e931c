"""Bulk import of reading history from CSV (legacy systems, manual reading books).

The format is CONTRACTS.md's: a header row, UTF-8 (a BOM tolerated), required columns
``meter, ts, quantity, value`` and optional ``interval, read_kind, reader``. Rows that fail
validation are reported by line number and quarantined with their raw bytes; everything else
goes through the same idempotent ingest as live data, so re-importing a file changes nothing.
A meter's interval comes from the ``interval`` column, else ``--interval``, else the archive,
else it is inferred as the meter's most common spacing and stored.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import math
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from storage import quarantine
from storage.readings import (
    EMPTY,
    QUANTITY_IDS,
    IngestResult,
    IntervalRow,
    RegisterRow,
    ingest,
    table_for,
)

REQUIRED = ("meter", "ts", "quantity", "value")
OPTIONAL = ("interval", "read_kind", "reader")
BATCH = 50_000


class ImportFileError(Exception):
    """The file as a whole cannot be imported (unreadable, not UTF-8, bad header)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class RowError:
    """Why one CSV line was rejected."""

    line: int
    reason: str
    message: str


@dataclass(slots=True)
class ImportReport:
    """What an import did."""

    file: str
    rows: int = 0
    result: IngestResult = EMPTY
    rejected: list[RowError] = field(default_factory=list)
    quarantined: int = 0
    meters_created: int = 0
    intervals_inferred: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The ``--json`` document."""
        return {
            "file": self.file,
            "rows": self.rows,
            "inserted": self.result.inserted,
            "duplicates": self.result.duplicates,
            "conflicts": self.result.conflicts,
            "quarantined": self.quarantined,
            "meters_created": self.meters_created,
            "intervals_inferred": self.intervals_inferred,
            "rejected": [
                {"line": e.line, "reason": e.reason, "message": e.message}
                for e in self.rejected
            ],
        }


@dataclass(frozen=True, slots=True)
class _Row:
    line: int
    meter: str
    ts: datetime
    quantity: str
    value: float
    interval: int | None
    read_kind: str
    reader: str | None


def _parse_row(line: int, rec: dict[str, str | None]) -> _Row | RowError:
    def get(name: str) -> str:
        return (rec.get(name) or "").strip()

    meter = get("meter")
    if len(meter) != 12 or not meter.isdigit():
        return RowError(line, "bad_meter", f"meter {meter!r} is not a 12-digit meter number")
    raw_ts = get("ts")
    try:
        ts = datetime.fromisoformat(raw_ts)
    except ValueError:
        return RowError(line, "bad_timestamp", f"ts {raw_ts!r} is not ISO 8601")
    if ts.tzinfo is None:
        return RowError(line, "naive_timestamp", f"ts {raw_ts!r} has no UTC offset")
    quantity = get("quantity")
    if quantity not in QUANTITY_IDS:
        return RowError(line, "unknown_quantity", f"quantity {quantity!r} is not in the vocabulary")
    raw_value = get("value")
    try:
        value = float(raw_value)
    except ValueError:
        return RowError(line, "bad_value", f"value {raw_value!r} is not a number")
    if not math.isfinite(value):
        return RowError(line, "bad_value", f"value {raw_value!r} is not finite")
    interval: int | None = None
    raw_interval = get("interval")
    if raw_interval:
        try:
            interval = int(raw_interval)
        except ValueError:
            return RowError(line, "bad_interval", f"interval {raw_interval!r} is not whole minutes")
        if not 0 < interval <= 1440:
            return RowError(line, "bad_interval", f"interval {interval} is not 1..1440 minutes")
    read_kind = get("read_kind") or "meter"
    if read_kind not in ("meter", "manual"):
        return RowError(line, "bad_read_kind", f"read_kind {read_kind!r}: meter or manual")
    return _Row(line, meter, ts, quantity, value, interval, read_kind, get("reader") or None)


def read_csv(data: bytes) -> tuple[list[str], list[tuple[int, bytes, dict[str, str | None]]]]:
    """Split a CSV file into its header and (line number, raw line, record) triples.

    Raises:
        ImportFileError: not UTF-8, empty, or the header lacks a required column.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportFileError("not_utf8", f"the file is not UTF-8 ({exc})") from None
    lines = text.splitlines(keepends=True)
    if not lines:
        raise ImportFileError("empty", "the file is empty")
    header = next(csv.reader([lines[0]]))
    header = [h.strip() for h in header]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise ImportFileError("bad_header", f"missing column(s): {', '.join(missing)}")
    unknown = [c for c in header if c not in REQUIRED + OPTIONAL]
    if unknown:
        raise ImportFileError("bad_header", f"unknown column(s): {', '.join(unknown)}")
    out: list[tuple[int, bytes, dict[str, str | None]]] = []
    for number, raw in enumerate(lines[1:], start=2):
        if not raw.strip():
            continue
        try:
            fields = next(csv.reader([raw]))
        except csv.Error:
            fields = []
        rec: dict[str, str | None] = dict.fromkeys(header)
        if len(fields) != len(header):
            rec["__error__"] = f"{len(fields)} fields, header has {len(header)}"
        else:
            rec.update(zip(header, fields, strict=True))
        out.append((number, raw.rstrip("\r\n").encode("utf-8"), rec))
    return header, out


def infer_interval(stamps: list[datetime]) -> int | None:
    """The most common spacing of ``stamps`` in whole minutes (None with fewer than two)."""
    if len(stamps) < 2:
        return None
    ordered = sorted(set(stamps))
    gaps = Counter(
        round((b - a).total_seconds() / 60) for a, b in itertools.pairwise(ordered)
    )
    gaps.pop(0, None)
    if not gaps:
        return None
    best = max(gaps.items(), key=lambda kv: (kv[1], -kv[0]))[0]
    return best if 0 < best <= 1440 else None


async def import_readings(
    conn: Any,
    path: Path,
    *,
    source: str | None = None,
    interval: int | None = None,
    create_meters: bool = False,
    default_interval: int = 15,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> ImportReport:
    """Import one CSV file through the idempotent ingest. The caller owns the transaction.

    Raises:
        ImportFileError: the file as a whole is unusable (nothing is written).
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImportFileError("unreadable", f"{path}: {exc.strerror}") from None
    header, records = read_csv(data)
    src = f"import:{source or path.name}"
    digest = hashlib.sha256(data).hexdigest()[:16]
    report = ImportReport(file=str(path), rows=len(records))
    parsed: list[_Row] = []

    async def reject(line: int, raw: bytes, reason: str, message: str) -> None:
        report.rejected.append(RowError(line, reason, message))
        await quarantine.add(
            conn, source=src, kind="csv-row", raw=raw, reason=reason, message=message,
            context={"file": path.name, "line": line, "header": header},
        )
        report.quarantined += 1

    for line, raw, rec in records:
        if "__error__" in rec:
            await reject(line, raw, "bad_row", str(rec["__error__"]))
            continue
        row = _parse_row(line, rec)
        if isinstance(row, RowError):
            await reject(line, raw, row.reason, row.message)
        else:
            parsed.append(row)

    numbers = sorted({r.meter for r in parsed})
    cur = await conn.execute(
        "SELECT number, id, interval_min FROM meter WHERE number = ANY(%s)", (numbers,)
    )
    known = {n: (i, iv) for n, i, iv in await cur.fetchall()}
    missing = [n for n in numbers if n not in known]
    if missing and create_meters:
        for n in missing:
            manual = any(r.read_kind == "manual" for r in parsed if r.meter == n)
            cur = await conn.execute(
                "INSERT INTO meter (number, protocol) VALUES (%s, %s) RETURNING id",
                (n, "manual" if manual else "dlt645-2007"),
            )
            new = await cur.fetchone()
            known[n] = (int(new[0]), None)
            report.meters_created += 1
            await conn.execute(
                "INSERT INTO audit_log (actor, action, subject_type, subject_id, detail) "
                "VALUES (%s, 'meter_created_by_import', 'meter', %s, NULL)",
                (src, n),
            )
    raw_by_line = {line: raw for line, raw, _ in records}
    accepted: list[_Row] = []
    for r in parsed:
        if r.meter in known:
            accepted.append(r)
        else:
            await reject(r.line, raw_by_line[r.line], "unknown_meter",
                         f"meter {r.meter} is not in the archive (use --create-meters)")

    # interval per meter: column > option > archive > inferred
    by_meter: dict[str, list[_Row]] = defaultdict(list)
    for r in accepted:
        by_meter[r.meter].append(r)
    meter_interval: dict[str, int] = {}
    for n, rows in by_meter.items():
        column = [r.interval for r in rows if r.interval is not None]
        chosen = Counter(column).most_common(1)[0][0] if column else interval
        archived = known[n][1]
        if chosen is None:
            chosen = archived
        if chosen is None:
            iv_rows = [r.ts for r in rows if r.quantity == "interval_kwh"]
            reg_rows = [r.ts for r in rows if r.quantity == "forward_active_total_kwh"]
            chosen = infer_interval(iv_rows or reg_rows or [r.ts for r in rows])
            if chosen is not None:
                report.intervals_inferred[n] = chosen
        if chosen is None:
            chosen = default_interval
        meter_interval[n] = chosen
        if archived is None:
            await conn.execute(
                "UPDATE meter SET interval_min = %s, updated_at = now() WHERE number = %s",
                (chosen, n),
            )

    received = now()
    registers: list[RegisterRow] = []
    intervals: list[IntervalRow] = []
    for r in accepted:
        mid = known[r.meter][0]
        qid = QUANTITY_IDS[r.quantity]
        if table_for(r.quantity) == "interval_reading":
            intervals.append(IntervalRow(mid, qid, r.ts, r.value,
                                         r.interval or meter_interval[r.meter]))
        else:
            registers.append(RegisterRow(mid, qid, r.ts, r.value, r.read_kind, r.reader))
    total = EMPTY
    batches: tuple[tuple[str, list[RegisterRow] | list[IntervalRow]], ...] = (
        ("r", registers),
        ("i", intervals),
    )
    for kind, group in batches:
        for start in range(0, len(group), BATCH):
            chunk = group[start:start + BATCH]
            total = total + await ingest(
                conn, chunk, source=src, received_at=received,
                batch_ref=f"{digest}:{kind}:{start // BATCH}",
            )
    report.result = total
    report.rejected.sort(key=lambda e: e.line)
    return report


async def replay_row(conn: Any, item: Any, *, default_interval: int = 15) -> str:
    """Re-run one quarantined CSV row (e.g. once its meter is in the archive).

    Returns:
        A short description of the result.

    Raises:
        ImportFileError: the row is still invalid (reason and message say why).
    """
    ctx = item.context or {}
    header = ctx.get("header")
    if not header:
        raise ImportFileError("no_header", "the quarantined row has no header to parse it with")
    fields = next(csv.reader([item.raw.decode("utf-8")]), [])
    if len(fields) != len(header):
        raise ImportFileError("bad_row", f"{len(fields)} fields, header has {len(header)}")
    row = _parse_row(int(ctx.get("line", 0)), dict(zip(header, fields, strict=True)))
    if isinstance(row, RowError):
        raise ImportFileError(row.reason, row.message)
    cur = await conn.execute("SELECT id, interval_min FROM meter WHERE number = %s", (row.meter,))
    found = await cur.fetchone()
    if found is None:
        raise ImportFileError("unknown_meter", f"meter {row.meter} is still not in the archive")
    mid, iv = int(found[0]), found[1]
    qid = QUANTITY_IDS[row.quantity]
    rows: list[RegisterRow] | list[IntervalRow]
    if table_for(row.quantity) == "interval_reading":
        rows = [IntervalRow(mid, qid, row.ts, row.value, row.interval or iv or default_interval)]
    else:
        rows = [RegisterRow(mid, qid, row.ts, row.value, row.read_kind, row.reader)]
    res = await ingest(conn, rows, source=item.source, received_at=datetime.now(UTC))
    return f"inserted {res.inserted}, duplicates {res.duplicates}, conflicts {res.conflicts}"


def format_report(report: ImportReport) -> str:
    """A human summary, one line plus one line per rejected row (at most 50)."""
    r = report.result
    lines = [
        f"{report.file}: {report.rows} rows, {r.inserted} stored, {r.duplicates} duplicates "
        f"dropped, {r.conflicts} conflicts kept for review, {report.quarantined} quarantined, "
        f"{report.meters_created} meters created"
    ]
    for e in report.rejected[:50]:
        lines.append(f"  line {e.line}: {e.reason}: {e.message}")
    if len(report.rejected) > 50:
        lines.append(f"  ... {len(report.rejected) - 50} more (meterhub quarantine list)")
    return "\n".join(lines)
