"""Version-1 concentrator messages, independent of the transport that carries them.

These models are the concentrator vocabulary of meterhub. The MQTT binding (``_topics.py``
and ``_codec.py``) maps each model to one topic kind and serialises it as JSON; a later
Q/GDW 376.1-over-TCP binding would map AFN 0C/0D (readings), 0E (events), 10H F1
(forwarded frames) and AFN 05 (control) onto the same models, so collectors and the
control worker handle one set of types whatever the concentrator speaks.

Every message carries ``"v": 1``. Payload rules, checked on parse:

* unknown fields are errors (``extra="forbid"``), JSON types are strict (a number is a
  JSON number, never a string);
* timestamps are ISO 8601 with a UTC offset; naive timestamps are refused;
* meter addresses are 12 decimal digits (the DL/T 645 address or the asset number);
* quantities come from the CONTRACTS.md vocabulary (a caller may pass a wider set);
* batches respect the configured :class:`Limits`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

from protocols.quantities import VOCABULARY

__all__ = [
    "DEFAULT_LIMITS",
    "SCHEMA_VERSION",
    "AckResult",
    "BatchKind",
    "CommandAck",
    "DownlinkMessage",
    "EventCode",
    "EventsBatch",
    "ForwardedFrame",
    "FramesBatch",
    "Limits",
    "MeterEvent",
    "ReadCommand",
    "Reading",
    "ReadingsBatch",
    "Receipt",
    "ReceiptResult",
    "RelayAction",
    "RelayCommand",
    "RelayState",
    "TimeSync",
    "UplinkMessage",
]

SCHEMA_VERSION: Final = 1
"""The payload schema version every message carries as ``"v"``."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits applied when parsing and encoding payloads.

    Attributes:
        max_payload_bytes: Largest payload accepted or produced.
        max_readings: Most readings in one readings batch.
        max_events: Most events in one events batch.
        max_frames: Most frames in one frames batch.
        max_frame_bytes: Largest forwarded DL/T 645 frame, in bytes (hex is twice that).
        max_meters: Most meters addressed by one read or time-sync command.
    """

    max_payload_bytes: int = 256 * 1024
    max_readings: int = 2000
    max_events: int = 1000
    max_frames: int = 200
    max_frame_bytes: int = 512
    max_meters: int = 1000


DEFAULT_LIMITS: Final = Limits()


def _limits(info: ValidationInfo) -> Limits:
    context = info.context if isinstance(info.context, dict) else {}
    limits = context.get("limits")
    return limits if isinstance(limits, Limits) else DEFAULT_LIMITS


def _count_check(value: Any, info: ValidationInfo, attribute: str) -> Any:
    # Runs after item validation: a before-validator would hand the items on as Python
    # objects, and strict mode refuses ISO strings for datetimes there. The payload size
    # limit bounds the work done before the count is checked.
    limit = getattr(_limits(info), attribute)
    if isinstance(value, list | tuple) and len(value) > limit:
        raise PydanticCustomError(
            "too_many_items",
            "{count} items exceed the limit of {limit}",
            {"count": len(value), "limit": limit},
        )
    return value


# --- field types -------------------------------------------------------------------------

_METER_RE: Final = re.compile(r"^[0-9]{12}$")
_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
_HEX_RE: Final = re.compile(r"^(?:[0-9A-Fa-f]{2})+$")


def _meter_address(value: str) -> str:
    if not _METER_RE.match(value):
        raise PydanticCustomError(
            "bad_meter_address",
            "meter address must be 12 decimal digits, got '{value}'",
            {"value": value},
        )
    return value


MeterAddress = Annotated[
    str,
    AfterValidator(_meter_address),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": "^[0-9]{12}$",
            "description": "12-digit meter number (DL/T 645 address or asset number)",
        }
    ),
]
"""A 12-digit meter number as on the nameplate."""


def _quantity(value: str, info: ValidationInfo) -> str:
    context = info.context if isinstance(info.context, dict) else {}
    allowed = context.get("quantities") or VOCABULARY
    if value not in allowed:
        raise PydanticCustomError(
            "unknown_quantity",
            "'{value}' is not a quantity of the vocabulary",
            {"value": value},
        )
    return value


Quantity = Annotated[
    str,
    AfterValidator(_quantity),
    WithJsonSchema(
        {
            "type": "string",
            "enum": sorted(VOCABULARY),
            "description": "quantity name from the CONTRACTS.md vocabulary",
        }
    ),
]
"""A quantity name from the vocabulary."""

Identifier = Annotated[str, Field(pattern=_ID_PATTERN)]
"""Batch and command ids: 1-64 of ``A-Z a-z 0-9 _ . : -``, starting with a letter or digit."""


def _number(value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PydanticCustomError("number_type", "Input should be a JSON number")
    if isinstance(value, float) and not math.isfinite(value):
        raise PydanticCustomError("finite_number", "Input should be a finite number")
    return value


Number = Annotated[
    int | float,
    PlainValidator(_number),
    WithJsonSchema({"type": "number", "description": "finite JSON number"}),
]
"""A finite JSON number; integers stay integers (status words), decimals stay floats."""


def _hex_frame(value: Any, info: ValidationInfo) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError("string_type", "Input should be a valid string")
    limit = _limits(info).max_frame_bytes
    if not _HEX_RE.match(value) or len(value) > 2 * limit:
        raise PydanticCustomError(
            "bad_hex",
            "frame must be an even number of hex digits without spaces, at most {limit} bytes",
            {"limit": limit},
        )
    return value.upper()


HexFrame = Annotated[
    str,
    PlainValidator(_hex_frame),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": "^([0-9A-Fa-f]{2})+$",
            "description": "a raw DL/T 645 frame as hex (FE preamble allowed)",
        }
    ),
]
"""A raw DL/T 645 frame as hex digits; normalised to upper case."""

Timestamp = AwareDatetime
"""ISO 8601 date-time with a UTC offset."""


class RelayState(StrEnum):
    """Relay state read back from the meter (status word 3 bit 4)."""

    CLOSED = "closed"
    OPEN = "open"


class RelayAction(StrEnum):
    """Remote-control actions (DL/T 645 ``1C`` command N1)."""

    TRIP = "trip"
    """``1A``: open the relay (拉闸)."""
    CLOSE = "close"
    """``1C``: close directly (直接合闸)."""
    CLOSE_ALLOWED = "close_allowed"
    """``1B``: allow closing; the customer presses the button (合闸允许)."""


class EventCode(StrEnum):
    """Meter and concentrator event codes."""

    POWER_LOSS = "power_loss"
    POWER_RESTORE = "power_restore"
    COVER_OPEN = "cover_open"
    TERMINAL_COVER_OPEN = "terminal_cover_open"
    RELAY_STATE = "relay_state"
    """The relay changed state; ``relay`` gives the new state."""
    CLOCK_RESET = "clock_reset"
    """The clock was set; ``previous_time`` gives the time before the change."""
    MAGNETIC_INTERFERENCE = "magnetic_interference"
    REVERSE_POWER = "reverse_power"
    PROGRAMMING = "programming"
    METER_CLEAR = "meter_clear"
    BATTERY_LOW = "battery_low"


class AckResult(StrEnum):
    """Outcome of a command, as reported by the concentrator."""

    ACCEPTED = "accepted"
    """Queued by the concentrator; a final ack follows."""
    DONE = "done"
    """Executed: the meter acknowledged (and, for relay commands, state read back)."""
    REFUSED = "refused"
    """The meter answered with an abnormal reply (``error_bits`` say why)."""
    NO_ANSWER = "no_answer"
    """The meter did not answer."""
    EXPIRED = "expired"
    """The deadline passed before the command could be executed."""
    REJECTED = "rejected"
    """The concentrator refused the command (unknown meter, invalid command)."""


class BatchKind(StrEnum):
    """Uplink batches a receipt can refer to."""

    READINGS = "readings"
    EVENTS = "events"
    FRAMES = "frames"


class ReceiptResult(StrEnum):
    """What meterhub did with a batch. Either way the concentrator may drop its copy."""

    COMMITTED = "committed"
    """Stored (duplicates dropped and counted, conflicts kept for review)."""
    QUARANTINED = "quarantined"
    """Kept in quarantine for review; not stored as readings."""


# --- messages ---------------------------------------------------------------------------


def _require_version(schema: dict[str, Any]) -> None:
    # ``v`` has a default for convenience in Python, but every payload must carry it.
    required = schema.setdefault("required", [])
    if "v" not in required:
        required.insert(0, "v")


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_require_version)

    v: Literal[1] = 1
    """Schema version; required in every payload (checked by the codec)."""


class _Item(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Reading(_Item):
    """One register or interval reading.

    Attributes:
        meter: 12-digit meter number.
        quantity: Vocabulary quantity, e.g. ``forward_active_total_kwh`` or ``interval_kwh``.
        ts: Reading time; for ``interval_kwh`` the end of the interval.
        value: The value in the quantity's unit, secondary side.
        interval: Interval length in minutes (for interval readings), optional.
    """

    meter: MeterAddress
    quantity: Quantity
    ts: Timestamp
    value: Number
    interval: int | None = Field(default=None, ge=1, le=1440)


class ReadingsBatch(_Message):
    """``up/readings``: a batch of readings (`batch` + `seq` are echoed in the receipt).

    Attributes:
        batch: Concentrator-chosen batch id, unique per concentrator.
        seq: Monotonic sequence number per concentrator.
        sent: When the concentrator sent the batch (its own clock), optional.
        command: The read command this batch answers, if any.
        readings: 1 … ``Limits.max_readings`` readings.
    """

    batch: Identifier
    seq: int = Field(ge=0, le=2**63 - 1)
    sent: Timestamp | None = None
    command: Identifier | None = None
    readings: tuple[Reading, ...] = Field(min_length=1)

    @field_validator("readings")
    @classmethod
    def _limit_readings(cls, value: Any, info: ValidationInfo) -> Any:
        return _count_check(value, info, "max_readings")


class MeterEvent(_Item):
    """One event.

    Attributes:
        meter: The meter, or None for an event of the concentrator itself.
        code: Event code.
        ts: When the event started.
        end: When it ended (e.g. power restored), if known.
        relay: New relay state; required for ``relay_state`` and only allowed there.
        previous_time: Clock before a ``clock_reset``; only allowed there.
        detail: Free text from the device, at most 200 characters.
    """

    meter: MeterAddress | None = None
    code: EventCode
    ts: Timestamp
    end: Timestamp | None = Field(default=None, validate_default=True)
    relay: RelayState | None = Field(default=None, validate_default=True)
    previous_time: Timestamp | None = Field(default=None, validate_default=True)
    detail: str | None = Field(default=None, max_length=200)

    @field_validator("end")
    @classmethod
    def _end_after_start(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        start = info.data.get("ts")
        if value is not None and start is not None and value < start:
            raise PydanticCustomError("end_before_start", "end must not be before ts")
        return value

    @field_validator("relay")
    @classmethod
    def _relay_for_code(cls, value: RelayState | None, info: ValidationInfo) -> RelayState | None:
        code = info.data.get("code")
        if code == EventCode.RELAY_STATE and value is None:
            raise PydanticCustomError("missing_for_code", "relay_state events need 'relay'")
        if code is not None and code != EventCode.RELAY_STATE and value is not None:
            raise PydanticCustomError("not_for_code", "'relay' belongs to relay_state events")
        return value

    @field_validator("previous_time")
    @classmethod
    def _previous_for_code(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        code = info.data.get("code")
        if code is not None and code != EventCode.CLOCK_RESET and value is not None:
            raise PydanticCustomError(
                "not_for_code", "'previous_time' belongs to clock_reset events"
            )
        return value


class EventsBatch(_Message):
    """``up/events``: a batch of events.

    Attributes:
        batch: Concentrator-chosen batch id.
        seq: Monotonic sequence number per concentrator.
        sent: When the concentrator sent the batch, optional.
        events: 1 … ``Limits.max_events`` events.
    """

    batch: Identifier
    seq: int = Field(ge=0, le=2**63 - 1)
    sent: Timestamp | None = None
    events: tuple[MeterEvent, ...] = Field(min_length=1)

    @field_validator("events")
    @classmethod
    def _limit_events(cls, value: Any, info: ValidationInfo) -> Any:
        return _count_check(value, info, "max_events")


class CommandAck(_Message):
    """``up/acks``: the outcome of one downlink command.

    Attributes:
        command: The command id (idempotency key) being acknowledged. A repeated command
            gets the same ack again.
        result: What happened.
        ts: When the concentrator produced the ack.
        meter: The meter concerned, if the command addressed one.
        relay: Relay state read back after a relay command (status word 3 bit 4).
        status_word_3: The raw status word 3 read back, if read.
        error_bits: DL/T 645 error names of an abnormal reply (``password_error`` …).
        detail: Free text, at most 200 characters.
    """

    command: Identifier
    result: AckResult
    ts: Timestamp
    meter: MeterAddress | None = None
    relay: RelayState | None = None
    status_word_3: int | None = Field(default=None, ge=0, le=0xFFFF)
    error_bits: tuple[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")], ...] = Field(
        default=(), max_length=16
    )
    detail: str | None = Field(default=None, max_length=200)


class ForwardedFrame(_Item):
    """One raw DL/T 645 frame, forwarded transparently.

    Attributes:
        ts: When the concentrator received the frame.
        hex: The frame as hex digits.
        meter: The meter it came from, if the concentrator knows.
        port: Concentrator port (376.1 numbering: 1 AC sampling, 2-4 RS-485, 31 carrier).
    """

    ts: Timestamp
    hex: HexFrame
    meter: MeterAddress | None = None
    port: int | None = Field(default=None, ge=0, le=255)

    @property
    def data(self) -> bytes:
        """The frame bytes."""
        return bytes.fromhex(self.hex)


class FramesBatch(_Message):
    """``up/frames``: raw DL/T 645 frames for meterhub's own decoder.

    Attributes:
        batch: Concentrator-chosen batch id.
        seq: Monotonic sequence number per concentrator.
        sent: When the concentrator sent the batch, optional.
        command: The read command (with ``frame``) these frames answer, if any.
        frames: 1 … ``Limits.max_frames`` frames.
    """

    batch: Identifier
    seq: int = Field(ge=0, le=2**63 - 1)
    sent: Timestamp | None = None
    command: Identifier | None = None
    frames: tuple[ForwardedFrame, ...] = Field(min_length=1)

    @field_validator("frames")
    @classmethod
    def _limit_frames(cls, value: Any, info: ValidationInfo) -> Any:
        return _count_check(value, info, "max_frames")


class ReadCommand(_Message):
    """``down/read``: read quantities from meters, or forward one raw DL/T 645 frame.

    Exactly one of ``quantities`` and ``frame`` is given. Readings come back as a readings
    batch (frames as a frames batch) whose ``command`` is this command's id.

    Attributes:
        command: Command id (idempotency key).
        issued: When meterhub issued the command.
        meters: Meters to read (exactly one with ``frame``).
        quantities: Vocabulary quantities to read.
        frame: A DL/T 645 request frame to forward unchanged.
        deadline: Do not execute after this instant, optional.
    """

    command: Identifier
    issued: Timestamp
    meters: tuple[MeterAddress, ...] = Field(min_length=1)
    quantities: tuple[Quantity, ...] | None = Field(default=None, min_length=1)
    frame: HexFrame | None = Field(default=None, validate_default=True)
    deadline: Timestamp | None = None

    @field_validator("meters")
    @classmethod
    def _limit_meters(cls, value: Any, info: ValidationInfo) -> Any:
        return _count_check(value, info, "max_meters")

    @field_validator("frame")
    @classmethod
    def _one_of(cls, value: str | None, info: ValidationInfo) -> str | None:
        if "meters" not in info.data or "quantities" not in info.data:
            return value  # an earlier field failed; that error is reported
        if (info.data["quantities"] is None) == (value is None):
            raise PydanticCustomError("one_of", "give exactly one of 'quantities' and 'frame'")
        if value is not None and len(info.data["meters"]) != 1:
            raise PydanticCustomError("one_of", "a forwarded frame addresses exactly one meter")
        return value


class RelayCommand(_Message):
    """``down/relay``: trip or close a meter's relay.

    Attributes:
        command: Command id (idempotency key); a concentrator treats a repeat as the same
            command and acks it again.
        meter: The meter.
        action: ``trip``, ``close`` or ``close_allowed``.
        issued: When meterhub issued the command.
        deadline: The meter must ignore the command after this instant (DL/T 645 N3..N8).
    """

    command: Identifier
    meter: MeterAddress
    action: RelayAction
    issued: Timestamp
    deadline: Timestamp

    @field_validator("deadline")
    @classmethod
    def _deadline_after_issue(cls, value: datetime, info: ValidationInfo) -> datetime:
        issued = info.data.get("issued")
        if issued is not None and value <= issued:
            raise PydanticCustomError("deadline_passed", "deadline must be after issued")
        return value


class TimeSync(_Message):
    """``down/time``: set the concentrator's clock (and optionally its meters').

    Attributes:
        command: Command id.
        time: The correct time at publication.
        meters: Meters whose clocks the concentrator should also set; None for the
            concentrator's own clock only.
    """

    command: Identifier
    time: Timestamp
    meters: tuple[MeterAddress, ...] | None = Field(default=None, min_length=1)

    @field_validator("meters")
    @classmethod
    def _limit_meters(cls, value: Any, info: ValidationInfo) -> Any:
        return _count_check(value, info, "max_meters")


class Receipt(_Message):
    """``down/receipt``: a batch is committed (or quarantined); the buffer may be deleted.

    Attributes:
        kind: Which uplink the batch came on.
        batch: The batch id being receipted.
        seq: The batch's sequence number.
        result: ``committed`` or ``quarantined``.
        accepted: Items stored.
        duplicates: Identical re-deliveries dropped.
        conflicts: Items that differed from a stored value (kept for review).
        rejected: Items refused (quarantined).
        reason: Why the batch was quarantined, if it was.
    """

    kind: BatchKind
    batch: Identifier
    seq: int = Field(ge=0, le=2**63 - 1)
    result: ReceiptResult
    accepted: int = Field(default=0, ge=0)
    duplicates: int = Field(default=0, ge=0)
    conflicts: int = Field(default=0, ge=0)
    rejected: int = Field(default=0, ge=0)
    reason: str | None = Field(default=None, max_length=500)


UplinkMessage = ReadingsBatch | EventsBatch | CommandAck | FramesBatch
"""Any message a concentrator publishes."""

DownlinkMessage = ReadCommand | RelayCommand | TimeSync | Receipt
"""Any message meterhub publishes to a concentrator."""
