"""JSON over MQTT: parsing and encoding concentrator payloads.

One topic kind carries one message type, so the topic selects the model and errors point
at real fields::

    topic  meterhub/v1/c/C001/up/readings  →  ReadingsBatch
    bytes  {"v":1,"batch":"…","seq":7,"readings":[{…}]}   (UTF-8 JSON object, ≤ limit)

Parsing checks, in order: the topic, the payload size, then JSON syntax, the version
``"v"`` and the fields (strict JSON types, no unknown fields). Any failure raises
:class:`~protocols.mqtt.PayloadError` naming the first offending field (a version problem
is always reported first, because the rest of a foreign version means nothing).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Final

from pydantic import BaseModel, ValidationError

from ._errors import FieldProblem, PayloadError, PayloadFault, TopicError, TopicFault
from ._messages import (
    DEFAULT_LIMITS,
    SCHEMA_VERSION,
    CommandAck,
    DownlinkMessage,
    EventsBatch,
    FramesBatch,
    Limits,
    ReadCommand,
    ReadingsBatch,
    Receipt,
    RelayCommand,
    TimeSync,
    UplinkMessage,
)
from ._topics import (
    Direction,
    DownlinkKind,
    UplinkKind,
    check_concentrator_id,
    downlink_topic,
    parse_topic,
    uplink_topic,
)

__all__ = [
    "DOWNLINK_MODELS",
    "UPLINK_MODELS",
    "decode_payload",
    "encode_downlink",
    "encode_uplink",
    "parse_downlink",
    "parse_uplink",
]

UPLINK_MODELS: Final[dict[UplinkKind, type[BaseModel]]] = {
    UplinkKind.READINGS: ReadingsBatch,
    UplinkKind.EVENTS: EventsBatch,
    UplinkKind.ACKS: CommandAck,
    UplinkKind.FRAMES: FramesBatch,
}
"""Uplink topic kind → message model."""

DOWNLINK_MODELS: Final[dict[DownlinkKind, type[BaseModel]]] = {
    DownlinkKind.READ: ReadCommand,
    DownlinkKind.RELAY: RelayCommand,
    DownlinkKind.TIME: TimeSync,
    DownlinkKind.RECEIPT: Receipt,
}
"""Downlink topic kind → message model."""

_UPLINK_KIND_OF: Final = {model: kind for kind, model in UPLINK_MODELS.items()}
_DOWNLINK_KIND_OF: Final = {model: kind for kind, model in DOWNLINK_MODELS.items()}

_REASONS: Final = {
    "json_invalid": PayloadFault.NOT_JSON,
    "json_type": PayloadFault.NOT_JSON,
    "missing": PayloadFault.MISSING_FIELD,
    "missing_for_code": PayloadFault.MISSING_FIELD,
    "extra_forbidden": PayloadFault.UNKNOWN_FIELD,
    "timezone_aware": PayloadFault.NAIVE_TIMESTAMP,
    "unknown_quantity": PayloadFault.UNKNOWN_QUANTITY,
    "bad_meter_address": PayloadFault.BAD_METER_ADDRESS,
    "bad_hex": PayloadFault.BAD_HEX,
    "too_many_items": PayloadFault.TOO_MANY_ITEMS,
    "number_type": PayloadFault.WRONG_TYPE,
}


def _field_path(loc: tuple[int | str, ...]) -> str | None:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path or None


def _reason(error_type: str, loc: tuple[int | str, ...]) -> PayloadFault:
    if loc == ("v",) and error_type != "missing":
        return PayloadFault.UNSUPPORTED_VERSION
    if error_type == "model_type" or error_type == "model_attributes_type":
        return PayloadFault.NOT_OBJECT if not loc else PayloadFault.WRONG_TYPE
    if error_type in _REASONS:
        return _REASONS[error_type]
    if error_type.endswith("_type"):
        return PayloadFault.WRONG_TYPE
    return PayloadFault.INVALID_VALUE


def _payload_error(exc: ValidationError, data: bytes, topic: str | None) -> PayloadError:
    items = exc.errors(include_url=False, include_input=False)
    locs = [tuple(item["loc"]) for item in items]
    problems = []
    for item, loc in zip(items, locs, strict=True):
        # A list whose items failed is also reported as "too short"; the item errors say more.
        if item["type"] == "too_short" and any(
            len(other) > len(loc) and other[: len(loc)] == loc for other in locs
        ):
            continue
        problems.append(
            FieldProblem(_field_path(loc), _reason(item["type"], loc), str(item["msg"]))
        )
    # The version decides how the rest is read: report it first.
    problems.sort(key=lambda p: 0 if p.field == "v" else 1)
    first = problems[0]
    return PayloadError(
        first.message,
        reason=first.reason,
        field=first.field,
        data=data,
        topic=topic,
        problems=tuple(problems),
    )


def decode_payload(
    model: type[BaseModel],
    payload: bytes,
    *,
    limits: Limits = DEFAULT_LIMITS,
    quantities: Collection[str] | None = None,
    topic: str | None = None,
) -> Any:
    """Validate a JSON payload against one message model.

    Args:
        model: The message class, e.g. :class:`ReadingsBatch`.
        payload: Raw payload bytes.
        limits: Size limits.
        quantities: Allowed quantity names (default: the CONTRACTS.md vocabulary).
        topic: The topic, kept on errors.

    Returns:
        The validated message.

    Raises:
        PayloadError: See :class:`PayloadFault`.
    """
    data = bytes(payload)
    if len(data) > limits.max_payload_bytes:
        raise PayloadError(
            f"payload of {len(data)} bytes exceeds the limit of {limits.max_payload_bytes}",
            reason=PayloadFault.TOO_LARGE,
            field=None,
            data=data,
            topic=topic,
        )
    context = {"limits": limits, "quantities": quantities}
    try:
        message = model.model_validate_json(data, strict=True, context=context)
    except ValidationError as exc:
        raise _payload_error(exc, data, topic) from None
    if "v" not in message.model_fields_set:
        raise PayloadError(
            f'every payload must carry "v": {SCHEMA_VERSION}',
            reason=PayloadFault.MISSING_FIELD,
            field="v",
            data=data,
            topic=topic,
        )
    return message


def _encode(message: BaseModel, limits: Limits, topic: str) -> bytes:
    data = message.model_dump_json(exclude_none=True).encode("utf-8")
    if len(data) > limits.max_payload_bytes:
        raise PayloadError(
            f"encoded payload of {len(data)} bytes exceeds the limit of {limits.max_payload_bytes}",
            reason=PayloadFault.TOO_LARGE,
            field=None,
            data=data,
            topic=topic,
        )
    counts = {
        "readings": limits.max_readings,
        "events": limits.max_events,
        "frames": limits.max_frames,
        "meters": limits.max_meters,
    }
    fields = type(message).model_fields
    for name, limit in counts.items():
        if name not in fields:  # getattr of a missing name is pydantic's slow path
            continue
        items = getattr(message, name)
        if isinstance(items, tuple) and len(items) > limit:
            raise PayloadError(
                f"{len(items)} items exceed the limit of {limit}",
                reason=PayloadFault.TOO_MANY_ITEMS,
                field=name,
                data=data,
                topic=topic,
            )
    return data


def parse_uplink(
    topic: str,
    payload: bytes,
    *,
    limits: Limits = DEFAULT_LIMITS,
    quantities: Collection[str] | None = None,
) -> tuple[str, UplinkMessage]:
    """Parse what a concentrator published (the collector side).

    Args:
        topic: The topic the message arrived on (``meterhub/v1/c/{id}/up/{kind}``).
        payload: The payload bytes.
        limits: Size limits (payload bytes, readings per batch …).
        quantities: Allowed quantity names (default: the CONTRACTS.md vocabulary).

    Returns:
        ``(concentrator_id, message)``.

    Raises:
        TopicError: The topic is not a meterhub uplink topic.
        PayloadError: The payload is not a valid message for that topic.
    """
    parsed = parse_topic(topic)
    if parsed.direction is not Direction.UP:
        raise TopicError(
            "expected an uplink (…/up/…) topic",
            reason=TopicFault.WRONG_DIRECTION,
            topic=topic,
        )
    model = UPLINK_MODELS[UplinkKind(parsed.kind)]
    message = decode_payload(model, payload, limits=limits, quantities=quantities, topic=topic)
    return parsed.concentrator, message


def parse_downlink(
    topic: str,
    payload: bytes,
    *,
    limits: Limits = DEFAULT_LIMITS,
    quantities: Collection[str] | None = None,
) -> tuple[str, DownlinkMessage]:
    """Parse what meterhub published to a concentrator (the concentrator/simulator side).

    Args:
        topic: The topic (``meterhub/v1/c/{id}/down/{kind}``).
        payload: The payload bytes.
        limits: Size limits.
        quantities: Allowed quantity names (default: the CONTRACTS.md vocabulary).

    Returns:
        ``(concentrator_id, message)``.

    Raises:
        TopicError: The topic is not a meterhub downlink topic.
        PayloadError: The payload is not a valid message for that topic.
    """
    parsed = parse_topic(topic)
    if parsed.direction is not Direction.DOWN:
        raise TopicError(
            "expected a downlink (…/down/…) topic",
            reason=TopicFault.WRONG_DIRECTION,
            topic=topic,
        )
    model = DOWNLINK_MODELS[DownlinkKind(parsed.kind)]
    message = decode_payload(model, payload, limits=limits, quantities=quantities, topic=topic)
    return parsed.concentrator, message


def encode_downlink(
    concentrator: str, message: DownlinkMessage, *, limits: Limits = DEFAULT_LIMITS
) -> tuple[str, bytes]:
    """Encode a message meterhub sends to a concentrator.

    Args:
        concentrator: The concentrator id.
        message: A :class:`ReadCommand`, :class:`RelayCommand`, :class:`TimeSync` or
            :class:`Receipt`.
        limits: Size limits the encoded payload must respect.

    Returns:
        ``(topic, payload)``.

    Raises:
        TopicError: ``bad_concentrator``.
        PayloadError: ``too_large`` / ``too_many_items`` when the message exceeds the limits.
        TypeError: ``message`` is not a downlink message.
    """
    check_concentrator_id(concentrator)
    kind = _DOWNLINK_KIND_OF.get(type(message))
    if kind is None:
        raise TypeError(f"{type(message).__name__} is not a downlink message")
    topic = downlink_topic(concentrator, kind)
    return topic, _encode(message, limits, topic)


def encode_uplink(
    concentrator: str, message: UplinkMessage, *, limits: Limits = DEFAULT_LIMITS
) -> tuple[str, bytes]:
    """Encode a message a concentrator publishes (used by the concentrator simulator).

    Args:
        concentrator: The concentrator id.
        message: A :class:`ReadingsBatch`, :class:`EventsBatch`, :class:`CommandAck` or
            :class:`FramesBatch`.
        limits: Size limits the encoded payload must respect.

    Returns:
        ``(topic, payload)``.

    Raises:
        TopicError: ``bad_concentrator``.
        PayloadError: ``too_large`` / ``too_many_items`` when the message exceeds the limits.
        TypeError: ``message`` is not an uplink message.
    """
    check_concentrator_id(concentrator)
    kind = _UPLINK_KIND_OF.get(type(message))
    if kind is None:
        raise TypeError(f"{type(message).__name__} is not an uplink message")
    topic = uplink_topic(concentrator, kind)
    return topic, _encode(message, limits, topic)
