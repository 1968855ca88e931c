"""The quarantine: input that could not be parsed or accepted, kept with its raw bytes.

Nothing meterhub received is dropped silently. A quarantined item names its source, its kind
(``dlt645-frame``, ``mqtt-payload``, ``csv-row`` …), a machine-readable reason and a message,
and can be replayed after the cause is fixed (``meterhub quarantine replay``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb


@dataclass(frozen=True, slots=True)
class QuarantineItem:
    """One quarantined input."""

    id: int
    received_at: datetime
    source: str
    kind: str
    raw: bytes
    reason: str
    message: str
    context: dict[str, Any] | None
    status: str
    replayed_at: datetime | None
    replay_result: str | None


async def add(
    conn: psycopg.AsyncConnection[Any],
    *,
    source: str,
    kind: str,
    raw: bytes,
    reason: str,
    message: str,
    context: dict[str, Any] | None = None,
    dedupe: bool = True,
) -> int:
    """Quarantine one input; returns its id. The caller owns the transaction.

    With ``dedupe`` an input with the same source, kind and bytes that is still waiting in the
    quarantine is not stored again: its existing id is returned.
    """
    if dedupe:
        cur = await conn.execute(
            "SELECT id FROM quarantine WHERE source = %s AND kind = %s AND md5(raw) = md5(%s) "
            "AND raw = %s AND status = 'new' LIMIT 1",
            (source, kind, raw, raw),
        )
        found = await cur.fetchone()
        if found is not None:
            return int(found[0])
    cur = await conn.execute(
        "INSERT INTO quarantine (source, kind, raw, reason, message, context) "
        "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
        (source, kind, raw, reason, message, Jsonb(context) if context is not None else None),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def list_items(
    conn: psycopg.AsyncConnection[Any], *, status: str | None = "new", limit: int = 100
) -> list[QuarantineItem]:
    """Quarantined items, newest first (``status=None`` for all)."""
    async with conn.cursor(row_factory=class_row(QuarantineItem)) as cur:
        await cur.execute(
            "SELECT id, received_at, source, kind, raw, reason, message, context, status, "
            "replayed_at, replay_result FROM quarantine "
            "WHERE %(status)s::text IS NULL OR status = %(status)s "
            "ORDER BY id DESC LIMIT %(limit)s",
            {"status": status, "limit": limit},
        )
        return await cur.fetchall()


async def get(conn: psycopg.AsyncConnection[Any], *, item_id: int) -> QuarantineItem | None:
    """One quarantined item by id."""
    async with conn.cursor(row_factory=class_row(QuarantineItem)) as cur:
        await cur.execute(
            "SELECT id, received_at, source, kind, raw, reason, message, context, status, "
            "replayed_at, replay_result FROM quarantine WHERE id = %s",
            (item_id,),
        )
        return await cur.fetchone()


async def mark_replayed(
    conn: psycopg.AsyncConnection[Any], *, item_id: int, result: str, at: datetime
) -> None:
    """Record a successful replay."""
    await conn.execute(
        "UPDATE quarantine SET status = 'replayed', replayed_at = %s, replay_result = %s "
        "WHERE id = %s",
        (at, result, item_id),
    )


async def note_failed_replay(
    conn: psycopg.AsyncConnection[Any], *, item_id: int, reason: str, message: str
) -> None:
    """A replay failed again: keep the item, update why."""
    await conn.execute(
        "UPDATE quarantine SET reason = %s, message = %s, replay_result = 'failed' WHERE id = %s",
        (reason, message, item_id),
    )


async def count(conn: psycopg.AsyncConnection[Any], *, status: str = "new") -> int:
    """How many items have ``status``."""
    cur = await conn.execute("SELECT count(*) FROM quarantine WHERE status = %s", (status,))
    row = await cur.fetchone()
    return int(row[0]) if row else 0
