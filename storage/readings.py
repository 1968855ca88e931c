"""Idempotent bulk ingest of actual readings.

A batch is written with binary COPY. The common case (no key already stored) goes straight into
the hypertable inside a savepoint; a batch that hits the unique key falls back to a staging
table and ``INSERT … ON CONFLICT DO NOTHING``, after which every offered row whose value differs
from the stored one is kept in ``reading_conflict`` for review. So:

* an identical re-delivery (MQTT redelivery, a re-read, a replayed file) is stored once and
  counted as a duplicate;
* a different value for the same (meter, quantity, ts) never overwrites: it is a conflict;
* the caller owns the transaction (house style R11): nothing here commits.

:func:`binary_copy_data` builds a whole binary COPY stream from columns at once (numpy), for
callers that write many readings per second (the MQTT collector): the per-row work of
``write_row`` is the largest client cost of a COPY.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import psycopg
from psycopg import sql

QUANTITY_IDS: Final[dict[str, int]] = {
    "forward_active_total_kwh": 1,
    "forward_active_t1_kwh": 2,
    "forward_active_t2_kwh": 3,
    "forward_active_t3_kwh": 4,
    "forward_active_t4_kwh": 5,
    "reverse_active_total_kwh": 6,
    "daily_frozen_forward_active_total_kwh": 7,
    "daily_frozen_reverse_active_total_kwh": 8,
    "interval_kwh": 20,
    "interval_reverse_kwh": 21,
    "voltage_a_v": 40,
    "voltage_b_v": 41,
    "voltage_c_v": 42,
    "current_a_a": 43,
    "current_b_a": 44,
    "current_c_a": 45,
    "active_power_total_kw": 46,
    "power_factor_total": 47,
    "frequency_hz": 48,
    "status_word_3": 60,
}
QUANTITY_NAMES: Final[dict[int, str]] = {v: k for k, v in QUANTITY_IDS.items()}
INTERVAL_QUANTITIES: Final = frozenset({"interval_kwh", "interval_reverse_kwh"})


PG_EPOCH: Final = datetime(2000, 1, 1, tzinfo=UTC)
"""PostgreSQL's epoch: binary ``timestamptz`` values are microseconds since this instant."""
_ONE_US: Final = timedelta(microseconds=1)
_COPY_HEADER: Final = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, no extension
_COPY_TRAILER: Final = b"\xff\xff"
_FIXED: Final = {"int8": ">i8", "int2": ">i2", "int4": ">i4", "float8": ">f8",
                 "timestamptz": ">i8"}


def pg_microseconds(ts: datetime) -> int:
    """``ts`` (aware) as a binary ``timestamptz``: microseconds since 2000-01-01 UTC."""
    return (ts - PG_EPOCH) // _ONE_US


def binary_copy_data(
    columns: Sequence[tuple[str, Sequence[Any]]],
    runs: Sequence[tuple[bytes, int, int]],
) -> bytes:
    """A complete ``COPY … FROM STDIN (FORMAT BINARY)`` stream, built column-wise.

    The rows are fixed-size columns followed by a ``text`` and a ``timestamptz`` column that
    are constant over runs of consecutive rows (the readings' ``source`` and ``received_at``).

    Args:
        columns: ``(type, values)`` per fixed-size column, in the COPY's column order; types
            ``int2``, ``int4``, ``int8``, ``float8`` or ``timestamptz`` (values in
            microseconds, see :func:`pg_microseconds`). All of the same length, no None.
        runs: ``(text as UTF-8, timestamptz in microseconds, row count)``, in row order; the
            counts add up to the number of rows.

    Returns:
        Header, rows and trailer: the whole stream for ``Copy.write``.

    Raises:
        ValueError: The column lengths and the run counts disagree.
        OverflowError: A value out of its column type's range.
    """
    import numpy as np

    counts = [count for _text, _at, count in runs]
    total = sum(counts)
    if any(len(values) != total for _type, values in columns):
        raise ValueError("column lengths and run counts disagree")
    if total == 0:
        return _COPY_HEADER + _COPY_TRAILER
    nfields = len(columns) + 2
    lengths = {len(text) for text, _at, _count in runs}
    parts = [_COPY_HEADER]
    for length in sorted(lengths):
        fields: list[tuple[str, str]] = [("n", ">i2")]
        for i, (kind, _values) in enumerate(columns):
            fields += [(f"l{i}", ">i4"), (f"c{i}", _FIXED[kind])]
        fields += [("lt", ">i4"), ("t", f"S{length}"), ("lr", ">i4"), ("r", ">i8")]
        dtype = np.dtype(fields)
        if len(lengths) == 1:
            picked = None
            mine = runs
        else:  # rare: sources of different lengths in one stream
            mask = np.repeat([len(text) == length for text, _at, _count in runs], counts)
            picked = np.flatnonzero(mask)
            mine = [r for r in runs if len(r[0]) == length]
        rows = total if picked is None else len(picked)
        out = np.empty(rows, dtype)
        out["n"] = nfields
        for i, (kind, values) in enumerate(columns):
            out[f"l{i}"] = dtype[f"c{i}"].itemsize
            if picked is None:
                out[f"c{i}"] = values
            else:
                out[f"c{i}"] = np.asarray(values, dtype=_FIXED[kind])[picked]
        mine_counts = [count for _text, _at, count in mine]
        out["lt"] = length
        out["t"] = np.repeat(np.array([text for text, _at, _count in mine], f"S{length}"),
                             mine_counts)
        out["lr"] = 8
        out["r"] = np.repeat(np.array([at for _text, at, _count in mine], np.int64),
                             mine_counts)
        parts.append(out.tobytes())
    parts.append(_COPY_TRAILER)
    return b"".join(parts)


def table_for(quantity: str) -> str:
    """The readings table that stores ``quantity``."""
    return "interval_reading" if quantity in INTERVAL_QUANTITIES else "register_reading"


@dataclass(frozen=True, slots=True)
class RegisterRow:
    """One actual register (or instantaneous) reading."""

    meter_id: int
    quantity_id: int
    ts: datetime
    value: float
    read_kind: str = "meter"
    reader: str | None = None
    meter_ts: datetime | None = None


@dataclass(frozen=True, slots=True)
class IntervalRow:
    """One actual interval reading (``ts`` is the interval's end)."""

    meter_id: int
    quantity_id: int
    ts: datetime
    value: float
    interval_min: int
    derived: bool = False


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What happened to one batch."""

    rows_in: int
    inserted: int
    duplicates: int
    conflicts: int

    def __add__(self, other: IngestResult) -> IngestResult:
        return IngestResult(
            self.rows_in + other.rows_in,
            self.inserted + other.inserted,
            self.duplicates + other.duplicates,
            self.conflicts + other.conflicts,
        )


EMPTY = IngestResult(0, 0, 0, 0)

_REGISTER_COLS: Final = (
    "meter_id", "quantity_id", "ts", "value", "source", "received_at", "read_kind", "reader",
    "meter_ts",
)
_REGISTER_TYPES: Final = (
    "int8", "int2", "timestamptz", "float8", "text", "timestamptz", "text", "text", "timestamptz",
)
_INTERVAL_COLS: Final = (
    "meter_id", "quantity_id", "ts", "value", "interval_min", "source", "received_at", "derived",
)
_INTERVAL_TYPES: Final = (
    "int8", "int2", "timestamptz", "float8", "int2", "text", "timestamptz", "bool",
)


def _tuples(
    rows: Sequence[RegisterRow] | Sequence[IntervalRow], source: str, received_at: datetime
) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for r in rows:
        if isinstance(r, RegisterRow):
            out.append((r.meter_id, r.quantity_id, r.ts, r.value, source, received_at,
                        r.read_kind, r.reader, r.meter_ts))
        else:
            out.append((r.meter_id, r.quantity_id, r.ts, r.value, r.interval_min, source,
                        received_at, r.derived))
    return out


async def _copy(
    conn: psycopg.AsyncConnection[Any], table: str, cols: Sequence[str], types: Sequence[str],
    tuples: list[tuple[Any, ...]],
) -> None:
    stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, cols))
    )
    async with conn.cursor() as cur, cur.copy(stmt) as copy:
        copy.set_types(list(types))
        for t in tuples:
            await copy.write_row(t)


async def ingest(
    conn: psycopg.AsyncConnection[Any],
    rows: Sequence[RegisterRow] | Sequence[IntervalRow],
    *,
    source: str,
    received_at: datetime,
    batch_ref: str | None = None,
    quarantined: int = 0,
) -> IngestResult:
    """Store a batch of actual readings of one kind, idempotently.

    Args:
        conn: an open connection; the caller owns the transaction.
        rows: all :class:`RegisterRow` or all :class:`IntervalRow`.
        source: where they came from (``mqtt:C001``, ``dlt645:G001``, ``import:file.csv``).
        received_at: when meterhub received them.
        batch_ref: the sender's batch id, recorded in ``ingest_batch``.
        quarantined: how many items of the same delivery were quarantined (for the record).

    Returns:
        Counts of inserted rows, duplicates and conflicts.
    """
    if not rows:
        return EMPTY
    interval = isinstance(rows[0], IntervalRow)
    table = "interval_reading" if interval else "register_reading"
    cols = _INTERVAL_COLS if interval else _REGISTER_COLS
    types = _INTERVAL_TYPES if interval else _REGISTER_TYPES
    tuples = _tuples(rows, source, received_at)
    keys = {(t[0], t[1], t[2]) for t in tuples}
    result: IngestResult | None = None
    if len(keys) == len(tuples):
        try:
            async with conn.transaction():
                await _copy(conn, table, cols, types, tuples)
            result = IngestResult(len(tuples), len(tuples), 0, 0)
        except psycopg.errors.UniqueViolation:
            result = None
    if result is None:
        result = await _ingest_staged(conn, table, cols, types, tuples)
    await conn.execute(
        "INSERT INTO ingest_batch (source, batch_ref, received_at, rows_in, inserted, "
        "duplicates, conflicts, quarantined) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (source, batch_ref) WHERE batch_ref IS NOT NULL DO NOTHING",
        (source, batch_ref, received_at, result.rows_in, result.inserted, result.duplicates,
         result.conflicts, quarantined),
    )
    return result


async def _ingest_staged(
    conn: psycopg.AsyncConnection[Any], table: str, cols: Sequence[str], types: Sequence[str],
    tuples: list[tuple[Any, ...]],
) -> IngestResult:
    stage = f"stage_{table}"
    await conn.execute(
        sql.SQL(
            "CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {} INCLUDING DEFAULTS, seq bigserial) "
            "ON COMMIT DROP"
        ).format(sql.Identifier(stage), sql.Identifier(table))
    )
    await conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(stage)))
    await _copy(conn, stage, cols, types, tuples)
    col_list = sql.SQL(", ").join(map(sql.Identifier, cols))
    cur = await conn.execute(
        sql.SQL(
            "WITH ins AS (INSERT INTO {table} ({cols}) "
            "SELECT DISTINCT ON (meter_id, quantity_id, ts) {cols} FROM {stage} "
            "ORDER BY meter_id, quantity_id, ts, seq "
            "ON CONFLICT (meter_id, quantity_id, ts) DO NOTHING RETURNING 1) "
            "SELECT count(*) FROM ins"
        ).format(table=sql.Identifier(table), cols=col_list, stage=sql.Identifier(stage))
    )
    row = await cur.fetchone()
    inserted = int(row[0]) if row else 0
    cur = await conn.execute(
        sql.SQL(
            "WITH offered AS ("
            "  SELECT s.meter_id, s.quantity_id, s.ts, s.value AS offered, r.value AS stored, "
            "         s.source FROM {stage} s JOIN {table} r "
            "    ON r.meter_id = s.meter_id AND r.quantity_id = s.quantity_id AND r.ts = s.ts "
            "  WHERE r.value IS DISTINCT FROM s.value), "
            "rec AS (INSERT INTO reading_conflict (reading_table, meter_id, quantity_id, ts, "
            "  stored_value, offered_value, source) "
            "  SELECT DISTINCT ON (meter_id, quantity_id, ts, offered) {name}, meter_id, "
            "    quantity_id, ts, stored, offered, source FROM offered "
            "  ON CONFLICT (reading_table, meter_id, quantity_id, ts, offered_value) DO NOTHING "
            "  RETURNING 1) "
            "SELECT (SELECT count(*) FROM offered), (SELECT count(*) FROM rec)"
        ).format(
            stage=sql.Identifier(stage), table=sql.Identifier(table), name=sql.Literal(table)
        )
    )
    row = await cur.fetchone()
    conflicts = int(row[0]) if row else 0
    await conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(stage)))
    return IngestResult(len(tuples), inserted, len(tuples) - inserted - conflicts, conflicts)
