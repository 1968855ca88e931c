"""The column-wise binary COPY stream of the MQTT collector's fast path, against PostgreSQL.

``storage.readings.binary_copy_data`` must give the server exactly the rows ``write_row`` would:
same values, sources of different lengths in one stream, integer and float values, instants
with offsets and microseconds.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest

from storage.readings import binary_copy_data, pg_microseconds

pytestmark = [pytest.mark.db]

TZ = timezone(timedelta(hours=8))


def test_stream_matches_the_rows(db_url: str) -> None:
    t0 = datetime(2026, 3, 1, 0, 15, tzinfo=TZ)
    t1 = datetime(1999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)  # before PostgreSQL's epoch
    at = datetime(2026, 3, 1, 1, 2, 3, 456_789, tzinfo=UTC)
    rows = [
        (1, 1, t0, 1000.25, 15, "mqtt:C1", at),
        (2, 20, t1, 7, 30, "mqtt:C1", at),
        (3, 2, t0, -0.5, 1440, "mqtt:CONC-0002", at + timedelta(seconds=1)),
        (9_000_000_000, 1, t0, 1e300, 1, "mqtt:C1", at),
    ]
    runs = [(b"mqtt:C1", pg_microseconds(at), 2),
            (b"mqtt:CONC-0002", pg_microseconds(at + timedelta(seconds=1)), 1),
            (b"mqtt:C1", pg_microseconds(at), 1)]
    data = binary_copy_data(
        [("int8", [r[0] for r in rows]), ("int2", [r[1] for r in rows]),
         ("timestamptz", [pg_microseconds(r[2]) for r in rows]),
         ("float8", [r[3] for r in rows]), ("int2", [r[4] for r in rows])], runs)
    with psycopg.connect(db_url) as conn:
        conn.execute("CREATE TEMP TABLE t (meter_id int8, quantity_id int2, ts timestamptz, "
                     "value float8, interval_min int2, source text, received_at timestamptz)")
        with conn.cursor() as cur, cur.copy("COPY t FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(data)
        got: list[tuple[Any, ...]] = conn.execute("SELECT * FROM t ORDER BY meter_id").fetchall()
    assert got == sorted(rows)


def test_lengths_must_agree() -> None:
    with pytest.raises(ValueError):
        binary_copy_data([("int8", [1, 2])], [(b"mqtt:C1", 0, 1)])


def test_empty_stream_is_header_and_trailer() -> None:
    data = binary_copy_data([("int8", [])], [])
    assert data.startswith(b"PGCOPY\n\xff\r\n\x00") and data.endswith(b"\xff\xff")
