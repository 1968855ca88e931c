"""``up/readings`` without a model object per reading: the collector's fast path.

::

    topic  meterhub/v1/c/{concentrator}/up/readings
    bytes  {"v":1,"batch":"…","seq":7,"sent"?:"…","command"?:"…",
            "readings":[{"meter":"…12 digits…","quantity":"…","ts":"…","value":…,
                         "interval"?:…}, …]}
      →    ReadingRows(batch, seq, sent, command,
                       rows=((meter, quantity, ts, value, interval), …))

:func:`parse_readings` applies the rules of :class:`~protocols.mqtt.ReadingsBatch` with plain
checks on the ``orjson`` document: 12-digit meter, quantity in the vocabulary, ISO 8601
timestamp with a UTC offset, finite JSON number, optional interval of 1-1440 minutes, batch id
and sequence number, no unknown fields, the size and count limits. Timestamps repeat within a
batch (one slot, many meters), so each distinct string is parsed once.

The plain checks accept a subset of what the models accept (for instance only the common
``YYYY-MM-DDTHH:MM:SS[.ffffff](Z|±HH:MM)`` timestamp form). Anything outside that subset goes
through the models (:func:`~protocols.mqtt.parse_uplink`): they either accept it, and the
result is converted, or raise the same :class:`~protocols.mqtt.PayloadError` (reason, field
path, problems) as ``parse_uplink``. The result is therefore always what ``parse_uplink``
gives, only cheaper for well-formed batches.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, NamedTuple, TypeGuard

import orjson

from protocols.quantities import VOCABULARY

from ._codec import decode_payload
from ._errors import TopicError, TopicFault
from ._messages import DEFAULT_LIMITS, SCHEMA_VERSION, Limits, Reading, ReadingsBatch
from ._topics import Direction, UplinkKind, parse_topic

__all__ = ["ReadingRow", "ReadingRows", "check_readings", "parse_readings"]


class ReadingRow(NamedTuple):
    """One reading of a batch, as a tuple (same attributes as :class:`Reading`).

    Attributes:
        meter: 12-digit meter number.
        quantity: Vocabulary quantity.
        ts: Reading time (aware).
        value: The value; integers stay integers.
        interval: Interval length in minutes, or None.
    """

    meter: str
    quantity: str
    ts: datetime
    value: int | float
    interval: int | None


@dataclass(frozen=True, slots=True)
class ReadingRows:
    """A validated ``up/readings`` batch with its readings as plain tuples.

    Iterating gives :class:`ReadingRow` items; ``rows`` holds the same data as plain
    ``(meter, quantity, ts, value, interval)`` tuples for bulk use.

    Attributes:
        batch: Concentrator-chosen batch id.
        seq: Sequence number.
        sent: When the concentrator sent the batch, or None.
        command: The read command answered, or None.
        rows: ``(meter, quantity, ts, value, interval)`` per reading, in payload order.
    """

    batch: str
    seq: int
    sent: datetime | None
    command: str | None
    rows: tuple[tuple[str, str, datetime, int | float, int | None], ...]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[ReadingRow]:
        return (ReadingRow._make(row) for row in self.rows)

    def __getitem__(self, index: int) -> ReadingRow:
        return ReadingRow._make(self.rows[index])

    @classmethod
    def from_message(cls, message: ReadingsBatch) -> ReadingRows:
        """The rows of a validated :class:`ReadingsBatch`."""
        return cls(message.batch, message.seq, message.sent, message.command, tuple(
            (r.meter, r.quantity, r.ts, r.value, r.interval) for r in message.readings))

    def to_message(self) -> ReadingsBatch:
        """The same batch as a :class:`ReadingsBatch` (validated again)."""
        return ReadingsBatch(batch=self.batch, seq=self.seq, sent=self.sent,
                             command=self.command, readings=tuple(
                                 Reading(meter=m, quantity=q, ts=t, value=v, interval=i)
                                 for m, q, t, v, i in self.rows))


_BATCH_KEYS: Final = frozenset({"v", "batch", "seq", "sent", "command", "readings"})
_ID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
# The common ISO 8601 form only; every other form the models accept goes through them.
_TS_RE: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)
_SEQ_MAX: Final = 2**63 - 1
_BIG: Final = 9.2e18
"""Floats at or beyond this magnitude are left to the models (they may be big integers)."""


def _timestamp(text: Any) -> datetime | None:
    if type(text) is not str or not _TS_RE.fullmatch(text):
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:  # a day the month does not have, year 0 …
        return None


def _identifier(value: Any) -> TypeGuard[str]:
    return type(value) is str and _ID_RE.fullmatch(value) is not None


def check_readings(
    payload: bytes,
    *,
    limits: Limits = DEFAULT_LIMITS,
    quantities: Collection[str] | None = None,
) -> ReadingRows | None:
    """Validate an ``up/readings`` payload with plain checks.

    Args:
        payload: The payload bytes.
        limits: Size limits.
        quantities: Allowed quantity names (default: the CONTRACTS.md vocabulary).

    Returns:
        The batch, or None when the payload is outside what the plain checks accept (it may
        still be valid: :func:`parse_readings` then asks the models).
    """
    if len(payload) > limits.max_payload_bytes:
        return None
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if type(doc) is not dict or not _BATCH_KEYS.issuperset(doc):
        return None
    v = doc.get("v")
    batch = doc.get("batch")
    seq = doc.get("seq")
    readings = doc.get("readings")
    if (type(v) is not int or v != SCHEMA_VERSION or not _identifier(batch)
            or type(seq) is not int or not 0 <= seq <= _SEQ_MAX
            or type(readings) is not list or not 0 < len(readings) <= limits.max_readings):
        return None
    sent = doc.get("sent")
    if sent is not None and (sent := _timestamp(sent)) is None:
        return None
    command = doc.get("command")
    if command is not None and not _identifier(command):
        return None
    allowed = quantities or VOCABULARY
    times: dict[str, datetime] = {}
    rows: list[tuple[str, str, datetime, int | float, int | None]] = []
    append = rows.append
    for r in readings:
        if type(r) is not dict:
            return None
        size = len(r)
        try:
            meter = r["meter"]
            quantity = r["quantity"]
            text = r["ts"]
            value = r["value"]
        except KeyError:
            return None
        if size == 4:
            interval = None
        elif size == 5 and "interval" in r:
            interval = r["interval"]
            if interval is not None and (type(interval) is not int or not 1 <= interval <= 1440):
                return None
        else:
            return None
        if (type(meter) is not str or len(meter) != 12 or not meter.isdigit()
                or not meter.isascii() or type(quantity) is not str or quantity not in allowed):
            return None
        kind = type(value)
        if kind is float:
            # also refuses NaN and infinities; orjson reads integers beyond 64 bits as
            # floats, where the models keep an int: those go through the models
            if not -_BIG < value < _BIG:
                return None
        elif kind is not int:
            return None
        if type(text) is not str:
            return None
        ts = times.get(text)
        if ts is None:
            ts = _timestamp(text)
            if ts is None:
                return None
            times[text] = ts
        append((meter, quantity, ts, value, interval))
    return ReadingRows(batch, seq, sent, command, tuple(rows))


def parse_readings(
    topic: str,
    payload: bytes,
    *,
    limits: Limits = DEFAULT_LIMITS,
    quantities: Collection[str] | None = None,
) -> tuple[str, ReadingRows]:
    """Parse an ``up/readings`` uplink into rows; same result and errors as ``parse_uplink``.

    Args:
        topic: The topic (``meterhub/v1/c/{id}/up/readings``).
        payload: The payload bytes.
        limits: Size limits.
        quantities: Allowed quantity names (default: the CONTRACTS.md vocabulary).

    Returns:
        ``(concentrator_id, rows)``.

    Raises:
        TopicError: The topic is not a meterhub ``up/readings`` topic (``wrong_direction`` for
            a downlink, ``unknown_kind`` for another uplink kind).
        PayloadError: The payload is not a valid readings batch, exactly as
            :func:`~protocols.mqtt.parse_uplink` reports it.
    """
    parsed = parse_topic(topic)
    if parsed.direction is not Direction.UP:
        raise TopicError("expected an uplink (…/up/…) topic",
                         reason=TopicFault.WRONG_DIRECTION, topic=topic)
    if parsed.kind is not UplinkKind.READINGS:
        raise TopicError("expected an up/readings topic", reason=TopicFault.UNKNOWN_KIND,
                         topic=topic)
    data = bytes(payload)
    rows = check_readings(data, limits=limits, quantities=quantities)
    if rows is None:
        message = decode_payload(ReadingsBatch, data, limits=limits, quantities=quantities,
                                 topic=topic)
        rows = ReadingRows.from_message(message)
    return parsed.concentrator, rows
