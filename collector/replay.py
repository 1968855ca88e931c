"""Replaying quarantined input once its cause is fixed.

Each kind of quarantined input has a handler that re-runs it through the path it failed on.
A handler returns a short result text or raises an exception with ``reason``; the item then
stays in the quarantine with the new reason.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Handler = Callable[[Any, Any], Awaitable[str]]

_HANDLERS: dict[str, Handler] = {}


def register(kind: str, handler: Handler) -> None:
    """Make ``handler`` replay quarantined items of ``kind``."""
    _HANDLERS[kind] = handler


def handler_for(kind: str) -> Handler | None:
    """The replay handler for ``kind``, loading the built-in ones first."""
    if not _HANDLERS:
        _load_builtin()
    return _HANDLERS.get(kind)


def _load_builtin() -> None:
    from collector import importer

    register("csv-row", importer.replay_row)
    register("mqtt-payload", _replay_mqtt_payload)


async def _replay_mqtt_payload(conn: Any, item: Any) -> str:
    # imported on use: collector.mqtt may be running as __main__ and registers itself
    from collector.mqtt import replay_payload

    return await replay_payload(conn, item)
