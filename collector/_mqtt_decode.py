"""Turning one MQTT uplink into what the store writes: pure, no broker, no database.

``decode(topic, payload)`` never raises. A payload that is not a valid version-1 message for its
topic becomes a whole-payload :class:`Fault` (kind ``mqtt-payload``); a ``frames`` batch is
decoded frame by frame with :mod:`protocols.dlt645`, and every frame that does not yield a
storable reading becomes a :class:`Fault` of kind ``dlt645-frame`` with its own bytes, while the
other frames of the batch still count.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import orjson

from protocols.dlt645 import (
    AbnormalResponse,
    FrameError,
    ReadResponse,
    decode_frame,
    decode_message,
    detect_version,
)
from protocols.mqtt import (
    DEFAULT_LIMITS,
    CommandAck,
    EventsBatch,
    FramesBatch,
    Limits,
    PayloadError,
    ReadingRows,
    TopicError,
    UplinkKind,
    check_concentrator_id,
    parse_readings,
    parse_topic,
    parse_uplink,
)
from storage.readings import INTERVAL_QUANTITIES, QUANTITY_IDS

KIND_PAYLOAD: Final = "mqtt-payload"
"""Quarantine kind of a payload that cannot be used as a whole (or has unknown meters)."""
KIND_FRAME: Final = "dlt645-frame"
"""Quarantine kind of one forwarded DL/T 645 frame that yields no reading."""

_FRAME_QUANTITIES: Final = frozenset(
    q for q in QUANTITY_IDS if q not in INTERVAL_QUANTITIES and not q.startswith("daily_frozen_")
)
"""Quantities a forwarded frame can give, stamped at the frame's receive time.

Daily freezes are left out: their instant is the freeze time (a separate identifier), not the
time the frame was received, so such frames are quarantined rather than stored at a wrong slot.
"""


@dataclass(frozen=True, slots=True)
class Fault:
    """Something that cannot be stored and goes to the quarantine.

    Attributes:
        kind: Quarantine kind (``mqtt-payload`` or ``dlt645-frame``).
        raw: The bytes as received (the whole payload, or one frame).
        reason: Machine-readable reason.
        message: Human-readable explanation.
        context: Topic and whatever locates the input (field, frame index, batch).
    """

    kind: str
    raw: bytes
    reason: str
    message: str
    context: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Item:
    """One reading, whichever uplink it came in."""

    meter: str
    quantity: str
    ts: datetime
    value: float
    interval: int | None = None


@dataclass(slots=True)
class Decoded:
    """One uplink, decoded.

    Attributes:
        topic: The topic it came on.
        payload: The payload bytes.
        concentrator: The concentrator id from the topic (None if the topic is not usable).
        kind: ``readings``, ``events``, ``acks`` or ``frames`` (None with a topic fault).
        message: The parsed message (a :class:`~protocols.mqtt.ReadingRows` for
            ``readings``), or None when ``fault`` is set.
        fault: Why the payload as a whole cannot be used, else None.
        items: Readings (from ``readings``: the :class:`~protocols.mqtt.ReadingRows`, whose
            plain ``rows`` the store uses; from ``frames``: :class:`Item` objects), each
            with ``meter``, ``quantity``, ``ts``, ``value`` and ``interval``.
        frame_faults: Frames of a ``frames`` batch that gave no reading.
        batch: The batch id for the receipt (also from a refused payload when readable).
        seq: The batch's sequence number, likewise.
    """

    topic: str
    payload: bytes
    concentrator: str | None = None
    kind: str | None = None
    message: Any = None
    fault: Fault | None = None
    items: Sequence[Any] | ReadingRows = field(default_factory=list)
    frame_faults: list[Fault] = field(default_factory=list)
    batch: str | None = None
    seq: int | None = None

    @property
    def source(self) -> str:
        """``mqtt:<concentrator>`` (``mqtt:?`` when the topic names none)."""
        return f"mqtt:{self.concentrator or '?'}"


def _salvage_batch(payload: bytes) -> tuple[str | None, int | None]:
    """Batch id and seq of a refused payload, so the concentrator can still drop its copy."""
    with contextlib.suppress(orjson.JSONDecodeError, TypeError, ValueError):
        doc = orjson.loads(payload)
        if isinstance(doc, dict):
            batch, seq = doc.get("batch"), doc.get("seq")
            if (isinstance(batch, str) and 0 < len(batch) <= 64
                    and all(c.isascii() and (c.isalnum() or c in "_.:-") for c in batch)
                    and batch[0].isalnum()
                    and isinstance(seq, int) and not isinstance(seq, bool)
                    and 0 <= seq < 2**63):
                return batch, seq
    return None, None


def decode(topic: str, payload: bytes, *, limits: Limits = DEFAULT_LIMITS) -> Decoded:
    """Decode one uplink; never raises.

    Args:
        topic: The topic as received.
        payload: The payload bytes.
        limits: Payload size limits.

    Returns:
        The decoded uplink; ``fault`` says why a payload is refused as a whole.
    """
    out = Decoded(topic=topic, payload=bytes(payload))
    message: Any
    try:
        parsed = parse_topic(topic)
        out.concentrator = parsed.concentrator
        out.kind = str(parsed.kind)
        if parsed.kind is UplinkKind.READINGS:
            # plain checks of the same rules; the models only for refused payloads
            _cid, message = parse_readings(topic, out.payload, limits=limits)
        else:
            _cid, message = parse_uplink(topic, out.payload, limits=limits)
    except TopicError as exc:
        levels = topic.split("/")
        if out.concentrator is None and len(levels) == 6:
            with contextlib.suppress(TopicError):
                out.concentrator = check_concentrator_id(levels[3])
        out.kind = None
        out.fault = Fault(KIND_PAYLOAD, out.payload, str(exc.reason), str(exc), {"topic": topic})
        return out
    except PayloadError as exc:
        out.batch, out.seq = _salvage_batch(out.payload) if exc.reason != "too_large" else (
            None, None)
        context: dict[str, Any] = {"topic": topic, "field": exc.field}
        if len(exc.problems) > 1:
            context["problems"] = [
                {"field": p.field, "reason": str(p.reason), "message": p.message}
                for p in exc.problems[:20]
            ]
        out.fault = Fault(KIND_PAYLOAD, out.payload, str(exc.reason), str(exc), context)
        return out
    out.message = message
    if isinstance(message, ReadingRows):
        out.batch, out.seq = message.batch, message.seq
        out.items = message
    elif isinstance(message, EventsBatch):
        out.batch, out.seq = message.batch, message.seq
    elif isinstance(message, FramesBatch):
        out.batch, out.seq = message.batch, message.seq
        frame_items: list[Item] = []
        for index, fwd in enumerate(message.frames):
            items, fault = _decode_frame(fwd.data, fwd.ts, fwd.meter, topic, message.batch, index)
            frame_items.extend(items)
            if fault is not None:
                out.frame_faults.append(fault)
        out.items = frame_items
    else:
        assert isinstance(message, CommandAck)
    return out


def _decode_frame(
    raw: bytes, ts: datetime, meter: str | None, topic: str, batch: str, index: int
) -> tuple[list[Item], Fault | None]:
    context: dict[str, Any] = {"topic": topic, "batch": batch, "frame": index, "ts": ts.isoformat()}
    if meter is not None:
        context["meter"] = meter

    def fault(reason: str, message: str) -> tuple[list[Item], Fault]:
        return [], Fault(KIND_FRAME, raw, reason, message, context)

    try:
        frame = decode_frame(raw)
    except FrameError as exc:
        return fault(str(exc.reason), str(exc))
    version = detect_version(frame)
    message, warnings = decode_message(frame, version)
    context["protocol"] = version.value
    if warnings:
        context["warnings"] = list(warnings)
    if isinstance(message, AbnormalResponse):
        return fault("abnormal_reply", f"the meter answered with an abnormal reply "
                                       f"({', '.join(message.error_bits) or 'no bits'})")
    if not isinstance(message, ReadResponse):
        return fault("not_a_read_reply", f"{type(message).__name__} carries no readings")
    address = message.address
    if len(address) != 12 or not address.isdigit():
        return fault("bad_address", f"frame address {address!r} is not a 12-digit meter number")
    values, value_warnings = message.values()
    if value_warnings:
        context["warnings"] = [*context.get("warnings", []), *value_warnings]
    items = [
        Item(address, v.name, ts, float(v.value))
        for v in values
        if v.name in _FRAME_QUANTITIES
        and isinstance(v.value, int | float) and not isinstance(v.value, bool)
    ]
    if not items:
        return fault("no_storable_values",
                     f"identifier {message.di:0{8 if version.value.endswith('2007') else 4}X} "
                     "gives no quantity stored from forwarded frames")
    return items, None
