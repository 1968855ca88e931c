"""The concentrator MQTT codec's error tree.

::

    MqttError
    ├── TopicError     the topic is not a meterhub concentrator topic of the expected kind
    └── PayloadError   the payload is not a valid version-1 message for its topic

Both carry a machine-readable ``reason``. :class:`PayloadError` also names the offending
field as a path (``readings[3].ts``; None when the payload as a whole is at fault), keeps
the raw bytes for quarantine, and lists every problem found in ``problems``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "FieldProblem",
    "MqttError",
    "PayloadError",
    "PayloadFault",
    "TopicError",
    "TopicFault",
]


class MqttError(Exception):
    """Base of every error raised by :mod:`protocols.mqtt`."""


class TopicFault(StrEnum):
    """Why a topic was refused."""

    NOT_METERHUB = "not_meterhub"
    """The topic is not ``meterhub/v1/c/{concentrator}/{up|down}/{kind}``."""
    BAD_CONCENTRATOR = "bad_concentrator"
    """The concentrator id is empty, too long or has characters outside ``A-Z a-z 0-9 _ . -``."""
    WRONG_DIRECTION = "wrong_direction"
    """An uplink topic where a downlink was expected, or the reverse."""
    UNKNOWN_KIND = "unknown_kind"
    """The last level is not a message kind of that direction."""


class TopicError(MqttError):
    """A topic is not a meterhub concentrator topic of the expected kind.

    Attributes:
        reason: What is wrong.
        topic: The topic as given.
    """

    def __init__(self, message: str, *, reason: TopicFault, topic: str) -> None:
        super().__init__(f"{topic!r}: {message}")
        self.reason = reason
        self.topic = topic


class PayloadFault(StrEnum):
    """Why a payload was refused."""

    TOO_LARGE = "too_large"
    """The payload exceeds ``Limits.max_payload_bytes``."""
    NOT_JSON = "not_json"
    """The payload is not UTF-8 JSON."""
    NOT_OBJECT = "not_object"
    """The payload is JSON but not an object."""
    UNSUPPORTED_VERSION = "unsupported_version"
    """``v`` is not a schema version this code understands (only 1)."""
    MISSING_FIELD = "missing_field"
    """A required field is absent."""
    UNKNOWN_FIELD = "unknown_field"
    """A field the schema does not define."""
    WRONG_TYPE = "wrong_type"
    """A field has the wrong JSON type (a string where a number belongs…)."""
    INVALID_VALUE = "invalid_value"
    """A field has the right type but an invalid value (bad id, negative count…)."""
    NAIVE_TIMESTAMP = "naive_timestamp"
    """A timestamp has no UTC offset."""
    UNKNOWN_QUANTITY = "unknown_quantity"
    """A quantity outside the vocabulary."""
    BAD_METER_ADDRESS = "bad_meter_address"
    """A meter address that is not 12 decimal digits."""
    BAD_HEX = "bad_hex"
    """A frame that is not an even number of hex digits within the size limit."""
    TOO_MANY_ITEMS = "too_many_items"
    """More readings, events, frames or meters than the configured limit."""


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One problem found in a payload.

    Attributes:
        field: Path of the field (``readings[3].ts``), or None for the whole payload.
        reason: What is wrong.
        message: Human-readable explanation.
    """

    field: str | None
    reason: PayloadFault
    message: str


class PayloadError(MqttError):
    """A payload is not a valid message for its topic.

    Attributes:
        reason: The first problem's reason (version problems come first).
        field: The first problem's field path, or None.
        data: The raw payload bytes.
        topic: The topic the payload came on (or was meant for), if known.
        problems: Every problem found, first one first.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: PayloadFault,
        field: str | None,
        data: bytes,
        topic: str | None = None,
        problems: tuple[FieldProblem, ...] = (),
    ) -> None:
        where = f"field '{field}': " if field is not None else ""
        super().__init__(f"{where}{message}")
        self.reason = reason
        self.field = field
        self.data = data
        self.topic = topic
        self.problems = problems or (FieldProblem(field, reason, message),)
