"""The collector's commands for people: ``fleet load``, ``import readings``, ``quarantine``.

Each function takes the settings and the database URL, does one unit of work in one
transaction, prints its result (one JSON document with ``as_json``) and returns the exit code of
CONTRACTS.md: 0 ok, 1 some input quarantined, 2 invalid input.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_QUARANTINED = 1
EXIT_INVALID = 2


def _out(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, default=str) + "\n")


def _err(message: str) -> None:
    sys.stderr.write(f"meterhub: error: {message}\n")


async def _connect(url: str) -> Any:
    import psycopg

    return await psycopg.AsyncConnection.connect(url)


def fleet_load(settings: Any, url: str, path: Path, *, as_json: bool) -> int:
    """Load an archive file (TOML or CSV of meters) into the database."""
    from collector.archive import ArchiveError, load_file
    from storage.archive import load_archive

    try:
        archive = load_file(path, site_timezone=settings.timezone)
    except ArchiveError as exc:
        if as_json:
            _out({"error": {"reason": exc.reason, "message": str(exc)}})
        _err(str(exc))
        return EXIT_INVALID

    async def run() -> Any:
        async with await _connect(url) as conn, conn.transaction():
            return await load_archive(conn, archive, actor=f"fleet load:{path.name}",
                                      now=datetime.now(UTC))

    report = asyncio.run(run())
    if as_json:
        _out(report.as_json())
    else:
        def fmt(d: dict[str, int]) -> str:
            return ", ".join(f"{v} {k}" for k, v in sorted(d.items())) or "nothing"

        sys.stdout.write(
            f"{path}: created {fmt(report.created)}; updated {fmt(report.updated)}; "
            f"unchanged {fmt(report.unchanged)}\n"
        )
    return EXIT_OK


def import_readings(
    settings: Any, url: str, path: Path, *, source: str | None, interval: int | None,
    create_meters: bool, as_json: bool,
) -> int:
    """Import a readings CSV through the idempotent ingest."""
    from collector.importer import ImportFileError, format_report
    from collector.importer import import_readings as run_import

    async def run() -> Any:
        async with await _connect(url) as conn, conn.transaction():
            return await run_import(
                conn, path, source=source, interval=interval, create_meters=create_meters,
                default_interval=settings.default_interval_min,
            )

    try:
        report = asyncio.run(run())
    except ImportFileError as exc:
        if as_json:
            _out({"error": {"reason": exc.reason, "message": str(exc)}})
        _err(f"{path}: {exc}")
        return EXIT_INVALID
    if as_json:
        _out(report.as_json())
    else:
        sys.stdout.write(format_report(report) + "\n")
    return EXIT_QUARANTINED if report.quarantined else EXIT_OK


def _item_json(item: Any, *, raw: bool) -> dict[str, Any]:
    d: dict[str, Any] = {
        "id": item.id, "received_at": item.received_at.isoformat(), "source": item.source,
        "kind": item.kind, "reason": item.reason, "message": item.message,
        "context": item.context, "status": item.status,
        "replayed_at": item.replayed_at.isoformat() if item.replayed_at else None,
        "replay_result": item.replay_result,
    }
    if raw:
        d["raw_hex"] = bytes(item.raw).hex()
        try:
            d["raw_text"] = bytes(item.raw).decode("utf-8")
        except UnicodeDecodeError:
            d["raw_text"] = None
    return d


def quarantine_list(url: str, *, status: str | None, limit: int, as_json: bool) -> int:
    """List quarantined items, newest first."""
    from storage import quarantine

    async def run() -> Any:
        async with await _connect(url) as conn:
            return await quarantine.list_items(conn, status=status, limit=limit)

    items = asyncio.run(run())
    if as_json:
        _out({"items": [_item_json(i, raw=False) for i in items]})
    else:
        for i in items:
            sys.stdout.write(
                f"{i.id}\t{i.received_at:%Y-%m-%d %H:%M:%S}\t{i.status}\t{i.kind}\t{i.source}\t"
                f"{i.reason}: {i.message}\n"
            )
        if not items:
            sys.stdout.write("the quarantine is empty\n")
    return EXIT_OK


def quarantine_show(url: str, item_id: int) -> int:
    """Show one item with its raw bytes (always JSON)."""
    from storage import quarantine

    async def run() -> Any:
        async with await _connect(url) as conn:
            return await quarantine.get(conn, item_id=item_id)

    item = asyncio.run(run())
    if item is None:
        _out({"error": {"reason": "not_found", "message": f"no quarantined item {item_id}"}})
        return EXIT_INVALID
    _out(_item_json(item, raw=True))
    return EXIT_OK


def quarantine_replay(url: str, ids: list[int], *, as_json: bool) -> int:
    """Re-run quarantined items through the path they failed on."""
    from collector.replay import handler_for
    from storage import quarantine

    async def run() -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        async with await _connect(url) as conn:
            for item_id in ids:
                item = await quarantine.get(conn, item_id=item_id)
                if item is None:
                    results.append({"id": item_id, "ok": False, "reason": "not_found"})
                    continue
                if item.status == "replayed":
                    results.append({"id": item_id, "ok": True, "result": "already replayed"})
                    continue
                handler = handler_for(item.kind)
                if handler is None:
                    results.append({"id": item_id, "ok": False, "reason": "no_handler",
                                    "message": f"no replay for kind {item.kind!r}"})
                    continue
                try:
                    async with conn.transaction():
                        text = await handler(conn, item)
                        await quarantine.mark_replayed(conn, item_id=item_id, result=text,
                                                       at=datetime.now(UTC))
                    results.append({"id": item_id, "ok": True, "result": text})
                except Exception as exc:
                    reason = str(getattr(exc, "reason", type(exc).__name__))
                    async with conn.transaction():
                        await quarantine.note_failed_replay(
                            conn, item_id=item_id, reason=reason, message=str(exc))
                    results.append({"id": item_id, "ok": False, "reason": reason,
                                    "message": str(exc)})
        return results

    results = asyncio.run(run())
    if as_json:
        _out({"replayed": results})
    else:
        for r in results:
            state = "ok" if r["ok"] else f"still quarantined: {r.get('reason')}"
            sys.stdout.write(f"{r['id']}: {state} {r.get('result') or r.get('message') or ''}\n")
    return EXIT_OK if all(r["ok"] for r in results) else EXIT_QUARANTINED
