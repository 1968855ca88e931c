"""Versioned concentrator payloads over MQTT: topics, pydantic models, JSON codec, schema.

Concentrators publish on ``meterhub/v1/c/{concentrator}/up/readings|events|acks|frames``;
meterhub answers on ``…/down/read|relay|time|receipt`` (CONTRACTS.md). Every payload is a
UTF-8 JSON object with ``"v": 1``. The package is pure: it turns ``(topic, bytes)`` into
typed messages and back, and never touches a broker.

Example:
    >>> from protocols.mqtt import parse_uplink
    >>> cid, batch = parse_uplink(
    ...     "meterhub/v1/c/C001/up/readings",
    ...     b'{"v":1,"batch":"b-1","seq":1,"readings":[{"meter":"000000000001",'
    ...     b'"quantity":"forward_active_total_kwh","ts":"2026-01-01T00:15:00+08:00",'
    ...     b'"value":1234.56}]}',
    ... )
    >>> cid, batch.readings[0].value
    ('C001', 1234.56)
"""

from __future__ import annotations

from ._codec import (
    DOWNLINK_MODELS,
    UPLINK_MODELS,
    decode_payload,
    encode_downlink,
    encode_uplink,
    parse_downlink,
    parse_uplink,
)
from ._errors import FieldProblem, MqttError, PayloadError, PayloadFault, TopicError, TopicFault
from ._messages import (
    DEFAULT_LIMITS,
    SCHEMA_VERSION,
    AckResult,
    BatchKind,
    CommandAck,
    DownlinkMessage,
    EventCode,
    EventsBatch,
    ForwardedFrame,
    FramesBatch,
    Limits,
    MeterEvent,
    ReadCommand,
    Reading,
    ReadingsBatch,
    Receipt,
    ReceiptResult,
    RelayAction,
    RelayCommand,
    RelayState,
    TimeSync,
    UplinkMessage,
)
from ._readings import ReadingRow, ReadingRows, check_readings, parse_readings
from ._schema import json_schema, json_schema_text
from ._topics import (
    SHARED_UPLINK_FILTER,
    TOPIC_PREFIX,
    UPLINK_FILTER,
    Direction,
    DownlinkKind,
    Topic,
    UplinkKind,
    check_concentrator_id,
    downlink_filter,
    downlink_topic,
    parse_topic,
    shared_uplink_filter,
    uplink_topic,
)

__all__ = [
    "DEFAULT_LIMITS",
    "DOWNLINK_MODELS",
    "SCHEMA_VERSION",
    "SHARED_UPLINK_FILTER",
    "TOPIC_PREFIX",
    "UPLINK_FILTER",
    "UPLINK_MODELS",
    "AckResult",
    "BatchKind",
    "CommandAck",
    "Direction",
    "DownlinkKind",
    "DownlinkMessage",
    "EventCode",
    "EventsBatch",
    "FieldProblem",
    "ForwardedFrame",
    "FramesBatch",
    "Limits",
    "MeterEvent",
    "MqttError",
    "PayloadError",
    "PayloadFault",
    "ReadCommand",
    "Reading",
    "ReadingRow",
    "ReadingRows",
    "ReadingsBatch",
    "Receipt",
    "ReceiptResult",
    "RelayAction",
    "RelayCommand",
    "RelayState",
    "TimeSync",
    "Topic",
    "TopicError",
    "TopicFault",
    "UplinkKind",
    "UplinkMessage",
    "check_concentrator_id",
    "check_readings",
    "decode_payload",
    "downlink_filter",
    "downlink_topic",
    "encode_downlink",
    "encode_uplink",
    "json_schema",
    "json_schema_text",
    "parse_downlink",
    "parse_readings",
    "parse_topic",
    "parse_uplink",
    "shared_uplink_filter",
    "uplink_topic",
]
