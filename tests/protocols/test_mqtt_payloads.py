"""Tests for protocols.mqtt: topics, version-1 payloads both ways, errors, limits, schema.

The payload literals in ``CASES`` are the worked examples of protocols/mqtt/README.md; each
is parsed (bytes → message) and encoded (message → the same bytes).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.mqtt import (
    SHARED_UPLINK_FILTER,
    UPLINK_FILTER,
    AckResult,
    BatchKind,
    CommandAck,
    Direction,
    DownlinkKind,
    EventCode,
    EventsBatch,
    ForwardedFrame,
    FramesBatch,
    Limits,
    MeterEvent,
    PayloadError,
    PayloadFault,
    ReadCommand,
    Reading,
    ReadingsBatch,
    Receipt,
    ReceiptResult,
    RelayAction,
    RelayCommand,
    RelayState,
    TimeSync,
    Topic,
    TopicError,
    TopicFault,
    UplinkKind,
    downlink_filter,
    downlink_topic,
    encode_downlink,
    encode_uplink,
    json_schema,
    json_schema_text,
    parse_downlink,
    parse_topic,
    parse_uplink,
    shared_uplink_filter,
    uplink_topic,
)
from protocols.quantities import VOCABULARY

CST = timezone(timedelta(hours=8))
T0 = datetime(2026, 1, 1, 0, 15, tzinfo=CST)

UP_READINGS = "meterhub/v1/c/C001/up/readings"
UP_EVENTS = "meterhub/v1/c/C001/up/events"
UP_ACKS = "meterhub/v1/c/C001/up/acks"
UP_FRAMES = "meterhub/v1/c/C001/up/frames"

# (topic, payload exactly as encoded, message)
CASES: list[tuple[str, bytes, Any]] = [
    (
        UP_READINGS,
        b'{"v":1,"batch":"C001-000042","seq":42,"sent":"2026-01-01T00:16:03+08:00",'
        b'"readings":[{"meter":"000000000001","quantity":"forward_active_total_kwh",'
        b'"ts":"2026-01-01T00:15:00+08:00","value":1234.56},'
        b'{"meter":"000000000001","quantity":"interval_kwh","ts":"2026-01-01T00:15:00+08:00",'
        b'"value":0.37,"interval":15},'
        b'{"meter":"000000000002","quantity":"status_word_3","ts":"2026-01-01T00:15:00+08:00",'
        b'"value":80}]}',
        ReadingsBatch(
            batch="C001-000042",
            seq=42,
            sent=datetime(2026, 1, 1, 0, 16, 3, tzinfo=CST),
            readings=(
                Reading(
                    meter="000000000001", quantity="forward_active_total_kwh", ts=T0, value=1234.56
                ),
                Reading(
                    meter="000000000001", quantity="interval_kwh", ts=T0, value=0.37, interval=15
                ),
                Reading(meter="000000000002", quantity="status_word_3", ts=T0, value=80),
            ),
        ),
    ),
    (
        UP_EVENTS,
        b'{"v":1,"batch":"C001-e-7","seq":7,"events":['
        b'{"meter":"000000000001","code":"power_loss","ts":"2026-01-01T00:15:00+08:00",'
        b'"end":"2026-01-01T01:00:00+08:00"},'
        b'{"meter":"000000000001","code":"relay_state","ts":"2026-01-01T00:15:00+08:00",'
        b'"relay":"open"},'
        b'{"code":"clock_reset","ts":"2026-01-01T00:15:00+08:00",'
        b'"previous_time":"2026-01-01T00:20:00+08:00"}]}',
        EventsBatch(
            batch="C001-e-7",
            seq=7,
            events=(
                MeterEvent(
                    meter="000000000001",
                    code=EventCode.POWER_LOSS,
                    ts=T0,
                    end=datetime(2026, 1, 1, 1, 0, tzinfo=CST),
                ),
                MeterEvent(
                    meter="000000000001", code=EventCode.RELAY_STATE, ts=T0, relay=RelayState.OPEN
                ),
                MeterEvent(
                    code=EventCode.CLOCK_RESET,
                    ts=T0,
                    previous_time=datetime(2026, 1, 1, 0, 20, tzinfo=CST),
                ),
            ),
        ),
    ),
    (
        UP_ACKS,
        b'{"v":1,"command":"relay-2026-0001","result":"done","ts":"2026-01-01T00:15:00+08:00",'
        b'"meter":"000000000001","relay":"open","status_word_3":80,"error_bits":[]}',
        CommandAck(
            command="relay-2026-0001",
            result=AckResult.DONE,
            ts=T0,
            meter="000000000001",
            relay=RelayState.OPEN,
            status_word_3=0x50,
        ),
    ),
    (
        UP_FRAMES,
        # DL/T 645-2007 read reply from meter 000000000001 (address low byte first), C=91,
        # L=08, DI 00010000 forward active total (+33: 33 33 34 33), value 000000.23 kWh
        # (BCD 23 00 00 00 +33: 56 33 33 33), CS 26 (protocols.md §2, §5, §7).
        b'{"v":1,"batch":"C001-f-1","seq":3,"command":"rd-9","frames":[{"ts":'
        b'"2026-01-01T00:15:00+08:00","hex":"6801000000000068910833333433563333332616",'
        b'"meter":"000000000001","port":2}]}',
        FramesBatch(
            batch="C001-f-1",
            seq=3,
            command="rd-9",
            frames=(
                ForwardedFrame(
                    ts=T0,
                    hex="6801000000000068910833333433563333332616",
                    meter="000000000001",
                    port=2,
                ),
            ),
        ),
    ),
    (
        "meterhub/v1/c/C001/down/read",
        b'{"v":1,"command":"rd-9","issued":"2026-01-01T00:15:00+08:00",'
        b'"meters":["000000000001","000000000002"],'
        b'"quantities":["forward_active_total_kwh","voltage_a_v"]}',
        ReadCommand(
            command="rd-9",
            issued=T0,
            meters=("000000000001", "000000000002"),
            quantities=("forward_active_total_kwh", "voltage_a_v"),
        ),
    ),
    (
        "meterhub/v1/c/C001/down/relay",
        b'{"v":1,"command":"relay-2026-0001","meter":"000000000001","action":"trip",'
        b'"issued":"2026-01-01T00:15:00+08:00","deadline":"2026-01-01T01:15:00+08:00"}',
        RelayCommand(
            command="relay-2026-0001",
            meter="000000000001",
            action=RelayAction.TRIP,
            issued=T0,
            deadline=T0 + timedelta(hours=1),
        ),
    ),
    (
        "meterhub/v1/c/C001/down/time",
        b'{"v":1,"command":"ts-1","time":"2026-01-01T00:15:00Z"}',
        TimeSync(command="ts-1", time=datetime(2026, 1, 1, 0, 15, tzinfo=UTC)),
    ),
    (
        "meterhub/v1/c/C001/down/receipt",
        b'{"v":1,"kind":"readings","batch":"C001-000042","seq":42,"result":"committed",'
        b'"accepted":2,"duplicates":1,"conflicts":0,"rejected":0}',
        Receipt(
            kind=BatchKind.READINGS,
            batch="C001-000042",
            seq=42,
            result=ReceiptResult.COMMITTED,
            accepted=2,
            duplicates=1,
        ),
    ),
]


def _parse(topic: str, payload: bytes, **kwargs: Any) -> tuple[str, Any]:
    if "/up/" in topic:
        return parse_uplink(topic, payload, **kwargs)
    return parse_downlink(topic, payload, **kwargs)


def _encode(concentrator: str, message: Any) -> tuple[str, bytes]:
    if isinstance(message, ReadingsBatch | EventsBatch | CommandAck | FramesBatch):
        return encode_uplink(concentrator, message)
    return encode_downlink(concentrator, message)


@pytest.mark.parametrize(("topic", "payload", "message"), CASES)
def test_parse_known_payloads(topic: str, payload: bytes, message: Any) -> None:
    concentrator, parsed = _parse(topic, payload)
    assert concentrator == "C001"
    assert parsed == message
    assert parsed.v == 1


@pytest.mark.parametrize(("topic", "payload", "message"), CASES)
def test_encode_known_payloads(topic: str, payload: bytes, message: Any) -> None:
    assert _encode("C001", message) == (topic, payload)


def test_parsed_values_keep_their_types() -> None:
    _, batch = parse_uplink(*CASES[0][:2])
    first, interval, status = batch.readings
    assert first.ts.utcoffset() == timedelta(hours=8)
    assert first.ts == datetime(2025, 12, 31, 16, 15, tzinfo=UTC)
    assert isinstance(first.value, float) and first.value == 1234.56
    assert isinstance(status.value, int) and status.value == 0x50
    assert interval.interval == 15
    _, frames = parse_uplink(*CASES[3][:2])
    assert frames.frames[0].data[:1] == b"\x68" and frames.frames[0].data[-1:] == b"\x16"


def test_frame_hex_is_normalised_to_upper_case() -> None:
    payload = (
        b'{"v":1,"batch":"f","seq":0,"frames":[{"ts":"2026-01-01T00:15:00+08:00",'
        b'"hex":"fefe68aa16"}]}'
    )
    _, batch = parse_uplink(UP_FRAMES, payload)
    assert batch.frames[0].hex == "FEFE68AA16"
    assert batch.frames[0].data == bytes.fromhex("fefe68aa16")


# --- topics ---------------------------------------------------------------------------------


def test_topic_helpers() -> None:
    assert SHARED_UPLINK_FILTER == "$share/meterhub/meterhub/v1/c/+/up/#"
    assert UPLINK_FILTER == "meterhub/v1/c/+/up/#"
    assert shared_uplink_filter() == SHARED_UPLINK_FILTER
    assert shared_uplink_filter("collectors") == "$share/collectors/meterhub/v1/c/+/up/#"
    assert downlink_filter("C001") == "meterhub/v1/c/C001/down/#"
    assert uplink_topic("C001", "readings") == UP_READINGS
    assert uplink_topic("C-2.b_3", UplinkKind.FRAMES) == "meterhub/v1/c/C-2.b_3/up/frames"
    assert downlink_topic("C001", DownlinkKind.RECEIPT) == "meterhub/v1/c/C001/down/receipt"
    parsed = parse_topic("meterhub/v1/c/C001/down/relay")
    assert parsed == Topic("C001", Direction.DOWN, DownlinkKind.RELAY)
    assert str(parsed) == "meterhub/v1/c/C001/down/relay"
    for kind in UplinkKind:
        assert parse_topic(uplink_topic("X9", kind)) == Topic("X9", Direction.UP, kind)
    for kind in DownlinkKind:
        assert parse_topic(downlink_topic("X9", kind)) == Topic("X9", Direction.DOWN, kind)


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("meterhub/v2/c/C001/up/readings", TopicFault.NOT_METERHUB),
        ("meterhub/v1/c/C001/up", TopicFault.NOT_METERHUB),
        ("meterhub/v1/c/C001/up/readings/extra", TopicFault.NOT_METERHUB),
        ("meterhub/v1/c/C001/sideways/readings", TopicFault.NOT_METERHUB),
        ("$share/meterhub/meterhub/v1/c/C001/up/readings", TopicFault.NOT_METERHUB),
        ("meterhub/v1/c/+/up/readings", TopicFault.BAD_CONCENTRATOR),
        ("meterhub/v1/c//up/readings", TopicFault.BAD_CONCENTRATOR),
        ("meterhub/v1/c/C001/up/relay", TopicFault.UNKNOWN_KIND),
        ("meterhub/v1/c/C001/down/readings", TopicFault.UNKNOWN_KIND),
    ],
)
def test_bad_topics(topic: str, reason: TopicFault) -> None:
    with pytest.raises(TopicError) as info:
        parse_topic(topic)
    assert info.value.reason is reason
    assert info.value.topic == topic


def test_direction_is_checked_and_ids_are_validated() -> None:
    with pytest.raises(TopicError) as info:
        parse_uplink("meterhub/v1/c/C001/down/relay", CASES[5][1])
    assert info.value.reason is TopicFault.WRONG_DIRECTION
    with pytest.raises(TopicError) as info:
        parse_downlink(UP_READINGS, CASES[0][1])
    assert info.value.reason is TopicFault.WRONG_DIRECTION
    for bad in ("", "a/b", "C#1", "x" * 65, "-C1"):
        with pytest.raises(TopicError) as info:
            encode_downlink(bad, CASES[5][2])
        assert info.value.reason is TopicFault.BAD_CONCENTRATOR
    with pytest.raises(TopicError) as info:
        uplink_topic("C001", "relay")
    assert info.value.reason is TopicFault.UNKNOWN_KIND
    with pytest.raises(TypeError):
        encode_downlink("C001", CASES[0][2])  # an uplink message
    with pytest.raises(TypeError):
        encode_uplink("C001", CASES[5][2])


# --- bad payloads ---------------------------------------------------------------------------

GOOD_READINGS: dict[str, Any] = json.loads(CASES[0][1])


def _variant(change: Any) -> bytes:
    doc = json.loads(CASES[0][1])
    change(doc)
    return json.dumps(doc).encode()


def _assert_fails(
    topic: str, payload: bytes, reason: PayloadFault, field: str | None, **kwargs: Any
) -> PayloadError:
    with pytest.raises(PayloadError) as info:
        _parse(topic, payload, **kwargs)
    error = info.value
    assert error.reason is reason, error.problems
    assert error.field == field
    assert error.data == payload
    assert error.topic == topic
    if field is not None:
        assert f"'{field}'" in str(error)
    return error


def _set(path: str, value: Any) -> Any:
    def change(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = doc
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        if value is _DELETE:
            del target[last]
        else:
            target[int(last) if last.isdigit() else last] = value

    return change


_DELETE = object()

BAD_READINGS = [
    (_set("batch", _DELETE), PayloadFault.MISSING_FIELD, "batch"),
    (_set("readings.1.ts", _DELETE), PayloadFault.MISSING_FIELD, "readings[1].ts"),
    (_set("seq", "42"), PayloadFault.WRONG_TYPE, "seq"),
    (_set("seq", -1), PayloadFault.INVALID_VALUE, "seq"),
    (_set("readings.0.value", "1234.56"), PayloadFault.WRONG_TYPE, "readings[0].value"),
    (_set("readings.0.value", True), PayloadFault.WRONG_TYPE, "readings[0].value"),
    (_set("readings.0.value", None), PayloadFault.WRONG_TYPE, "readings[0].value"),
    # NaN/Infinity are not JSON numbers; the parser reads the tokens, the schema refuses them.
    (_set("readings.0.value", float("nan")), PayloadFault.INVALID_VALUE, "readings[0].value"),
    (_set("readings.0.value", float("-inf")), PayloadFault.INVALID_VALUE, "readings[0].value"),
    (_set("readings.0.ts", "2026-01-01T00:15:00"), PayloadFault.NAIVE_TIMESTAMP, "readings[0].ts"),
    (_set("readings.0.ts", 1767197700), PayloadFault.WRONG_TYPE, "readings[0].ts"),
    (_set("readings.0.ts", "yesterday"), PayloadFault.INVALID_VALUE, "readings[0].ts"),
    (
        _set("readings.2.quantity", "energy_kwh"),
        PayloadFault.UNKNOWN_QUANTITY,
        "readings[2].quantity",
    ),
    (_set("readings.0.meter", "00000000001"), PayloadFault.BAD_METER_ADDRESS, "readings[0].meter"),
    (_set("readings.0.meter", "00000000000A"), PayloadFault.BAD_METER_ADDRESS, "readings[0].meter"),
    (_set("readings.0.meter", 1), PayloadFault.WRONG_TYPE, "readings[0].meter"),
    (_set("readings.1.interval", 0), PayloadFault.INVALID_VALUE, "readings[1].interval"),
    (_set("readings.0.unit", "kWh"), PayloadFault.UNKNOWN_FIELD, "readings[0].unit"),
    (_set("comment", "x"), PayloadFault.UNKNOWN_FIELD, "comment"),
    (_set("v", 2), PayloadFault.UNSUPPORTED_VERSION, "v"),
    (_set("v", "1"), PayloadFault.UNSUPPORTED_VERSION, "v"),
    (_set("v", _DELETE), PayloadFault.MISSING_FIELD, "v"),
    (_set("readings", []), PayloadFault.INVALID_VALUE, "readings"),
    (_set("readings", {}), PayloadFault.WRONG_TYPE, "readings"),
    (_set("batch", "has space"), PayloadFault.INVALID_VALUE, "batch"),
    (_set("batch", "x" * 65), PayloadFault.INVALID_VALUE, "batch"),
]


@pytest.mark.parametrize(("change", "reason", "field"), BAD_READINGS)
def test_bad_readings_payloads(change: Any, reason: PayloadFault, field: str) -> None:
    _assert_fails(UP_READINGS, _variant(change), reason, field)


def test_version_problem_is_reported_first() -> None:
    payload = _variant(lambda d: d.update(v=2, readings="later fields of v2", extra=1))
    error = _assert_fails(UP_READINGS, payload, PayloadFault.UNSUPPORTED_VERSION, "v")
    assert {p.field for p in error.problems} >= {"v", "readings", "extra"}


def test_every_problem_is_listed() -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["readings"][0]["meter"] = "1"
        doc["readings"][1]["quantity"] = "nope_kwh"

    error = _assert_fails(
        UP_READINGS, _variant(change), PayloadFault.BAD_METER_ADDRESS, "readings[0].meter"
    )
    assert [(p.field, p.reason) for p in error.problems] == [
        ("readings[0].meter", PayloadFault.BAD_METER_ADDRESS),
        ("readings[1].quantity", PayloadFault.UNKNOWN_QUANTITY),
    ]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", PayloadFault.NOT_JSON),
        (b"{", PayloadFault.NOT_JSON),
        (b'{"v":1,"batch":"\xff"}', PayloadFault.NOT_JSON),
        (b"[1, 2]", PayloadFault.NOT_OBJECT),
        (b'"readings"', PayloadFault.NOT_OBJECT),
    ],
)
def test_not_a_json_object(payload: bytes, reason: PayloadFault) -> None:
    _assert_fails(UP_READINGS, payload, reason, None)


def test_oversized_payload_and_batch() -> None:
    payload = CASES[0][1]
    _assert_fails(
        UP_READINGS,
        payload,
        PayloadFault.TOO_LARGE,
        None,
        limits=Limits(max_payload_bytes=len(payload) - 1),
    )
    assert parse_uplink(UP_READINGS, payload, limits=Limits(max_payload_bytes=len(payload)))
    _assert_fails(
        UP_READINGS,
        payload,
        PayloadFault.TOO_MANY_ITEMS,
        "readings",
        limits=Limits(max_readings=2),
    )
    big = _variant(lambda d: d.update(readings=d["readings"] * 700))  # 2100 > 2000 default
    _assert_fails(UP_READINGS, big, PayloadFault.TOO_MANY_ITEMS, "readings")
    huge = b'{"v":1,"pad":"' + b"x" * (256 * 1024) + b'"}'
    _assert_fails(UP_READINGS, huge, PayloadFault.TOO_LARGE, None)


def test_encoding_respects_limits() -> None:
    message = CASES[0][2]
    with pytest.raises(PayloadError) as info:
        encode_uplink("C001", message, limits=Limits(max_readings=1))
    assert (info.value.reason, info.value.field) == (PayloadFault.TOO_MANY_ITEMS, "readings")
    with pytest.raises(PayloadError) as info:
        encode_uplink("C001", message, limits=Limits(max_payload_bytes=100))
    assert info.value.reason is PayloadFault.TOO_LARGE


def test_extra_quantities_can_be_allowed() -> None:
    payload = _variant(_set("readings.0.quantity", "voltage_ab_v"))
    _assert_fails(UP_READINGS, payload, PayloadFault.UNKNOWN_QUANTITY, "readings[0].quantity")
    _, batch = parse_uplink(UP_READINGS, payload, quantities={*VOCABULARY, "voltage_ab_v"})
    assert batch.readings[0].quantity == "voltage_ab_v"


def _doc(case: int, change: Any) -> bytes:
    doc = json.loads(CASES[case][1])
    change(doc)
    return json.dumps(doc).encode()


OTHER_BAD = [
    (1, _set("events.1.relay", _DELETE), PayloadFault.MISSING_FIELD, "events[1].relay"),
    (1, _set("events.1.relay", "ajar"), PayloadFault.INVALID_VALUE, "events[1].relay"),
    (1, _set("events.0.relay", "open"), PayloadFault.INVALID_VALUE, "events[0].relay"),
    (
        1,
        _set("events.0.previous_time", "2026-01-01T00:00:00+08:00"),
        PayloadFault.INVALID_VALUE,
        "events[0].previous_time",
    ),
    (
        1,
        _set("events.0.end", "2026-01-01T00:00:00+08:00"),
        PayloadFault.INVALID_VALUE,
        "events[0].end",
    ),
    (1, _set("events.0.code", "alien_landing"), PayloadFault.INVALID_VALUE, "events[0].code"),
    (
        1,
        _set("events.2.previous_time", "2026-01-01T00:20:00"),
        PayloadFault.NAIVE_TIMESTAMP,
        "events[2].previous_time",
    ),
    (2, _set("result", "maybe"), PayloadFault.INVALID_VALUE, "result"),
    (2, _set("status_word_3", 65536), PayloadFault.INVALID_VALUE, "status_word_3"),
    (2, _set("command", _DELETE), PayloadFault.MISSING_FIELD, "command"),
    (3, _set("frames.0.hex", "68 01 16"), PayloadFault.BAD_HEX, "frames[0].hex"),
    (3, _set("frames.0.hex", "681"), PayloadFault.BAD_HEX, "frames[0].hex"),
    (3, _set("frames.0.hex", "6G"), PayloadFault.BAD_HEX, "frames[0].hex"),
    (3, _set("frames.0.hex", "68" * 513), PayloadFault.BAD_HEX, "frames[0].hex"),
    (3, _set("frames.0.hex", 68), PayloadFault.WRONG_TYPE, "frames[0].hex"),
    (4, _set("quantities", _DELETE), PayloadFault.INVALID_VALUE, "frame"),
    (4, _set("frame", "6816"), PayloadFault.INVALID_VALUE, "frame"),
    (4, _set("meters.1", "2"), PayloadFault.BAD_METER_ADDRESS, "meters[1]"),
    (4, _set("quantities.0", "watts"), PayloadFault.UNKNOWN_QUANTITY, "quantities[0]"),
    (5, _set("action", "open"), PayloadFault.INVALID_VALUE, "action"),
    (5, _set("deadline", "2026-01-01T00:15:00+08:00"), PayloadFault.INVALID_VALUE, "deadline"),
    (5, _set("deadline", "2026-01-01T01:15:00"), PayloadFault.NAIVE_TIMESTAMP, "deadline"),
    (5, _set("deadline", _DELETE), PayloadFault.MISSING_FIELD, "deadline"),
    (5, _set("meter", "000000000001 "), PayloadFault.BAD_METER_ADDRESS, "meter"),
    (6, _set("time", "2026-01-01T00:15:00"), PayloadFault.NAIVE_TIMESTAMP, "time"),
    (7, _set("kind", "acks"), PayloadFault.INVALID_VALUE, "kind"),
    (7, _set("accepted", -1), PayloadFault.INVALID_VALUE, "accepted"),
    (7, _set("accepted", 1.0), PayloadFault.WRONG_TYPE, "accepted"),
]


@pytest.mark.parametrize(("case", "change", "reason", "field"), OTHER_BAD)
def test_bad_payloads_of_every_kind(
    case: int, change: Any, reason: PayloadFault, field: str
) -> None:
    _assert_fails(CASES[case][0], _doc(case, change), reason, field)


def test_forwarded_read_needs_one_meter() -> None:
    def change(doc: dict[str, Any]) -> None:
        del doc["quantities"]
        doc["frame"] = "6816"

    _assert_fails(CASES[4][0], _doc(4, change), PayloadFault.INVALID_VALUE, "frame")
    doc = json.loads(_doc(4, change))
    doc["meters"] = doc["meters"][:1]
    _, command = parse_downlink(CASES[4][0], json.dumps(doc).encode())
    assert command.frame == "6816" and command.quantities is None


def test_too_many_meters_in_a_read() -> None:
    _assert_fails(
        CASES[4][0],
        CASES[4][1],
        PayloadFault.TOO_MANY_ITEMS,
        "meters",
        limits=Limits(max_meters=1),
    )


# --- property tests: every message type round-trips -----------------------------------------

_IDS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}", fullmatch=True)
_CONCENTRATORS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", fullmatch=True)
_METERS = st.from_regex(r"[0-9]{12}", fullmatch=True)
_OFFSETS = st.integers(-12 * 4, 14 * 4).map(lambda q: timezone(timedelta(minutes=15 * q)))
_TIMES = st.builds(
    lambda naive, tz: naive.replace(tzinfo=tz),
    st.datetimes(datetime(2000, 1, 1), datetime(2099, 12, 31)),
    _OFFSETS,
)
_VALUES = st.one_of(st.integers(-(2**53), 2**53), st.floats(allow_nan=False, allow_infinity=False))
_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=200)
_SEQ = st.integers(0, 2**63 - 1)
_HEX = st.binary(min_size=1, max_size=512).map(lambda b: b.hex().upper())


def _opt(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


_READINGS = st.builds(
    ReadingsBatch,
    batch=_IDS,
    seq=_SEQ,
    sent=_opt(_TIMES),
    command=_opt(_IDS),
    readings=st.lists(
        st.builds(
            Reading,
            meter=_METERS,
            quantity=st.sampled_from(sorted(VOCABULARY)),
            ts=_TIMES,
            value=_VALUES,
            interval=_opt(st.integers(1, 1440)),
        ),
        min_size=1,
        max_size=20,
    ).map(tuple),
)


@st.composite
def _events(draw: st.DrawFn) -> MeterEvent:
    code = draw(st.sampled_from(list(EventCode)))
    ts = draw(_TIMES)
    return MeterEvent(
        meter=draw(_opt(_METERS)),
        code=code,
        ts=ts,
        end=draw(_opt(st.timedeltas(timedelta(0), timedelta(days=30)).map(lambda d: ts + d))),
        relay=draw(st.sampled_from(list(RelayState))) if code is EventCode.RELAY_STATE else None,
        previous_time=draw(_opt(_TIMES)) if code is EventCode.CLOCK_RESET else None,
        detail=draw(_opt(_TEXT)),
    )


_EVENTS = st.builds(
    EventsBatch,
    batch=_IDS,
    seq=_SEQ,
    sent=_opt(_TIMES),
    events=st.lists(_events(), min_size=1, max_size=10).map(tuple),
)
_ACKS = st.builds(
    CommandAck,
    command=_IDS,
    result=st.sampled_from(list(AckResult)),
    ts=_TIMES,
    meter=_opt(_METERS),
    relay=_opt(st.sampled_from(list(RelayState))),
    status_word_3=_opt(st.integers(0, 0xFFFF)),
    error_bits=st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True), max_size=5).map(
        tuple
    ),
    detail=_opt(_TEXT),
)
_FRAMES = st.builds(
    FramesBatch,
    batch=_IDS,
    seq=_SEQ,
    sent=_opt(_TIMES),
    command=_opt(_IDS),
    frames=st.lists(
        st.builds(
            ForwardedFrame,
            ts=_TIMES,
            hex=_HEX,
            meter=_opt(_METERS),
            port=_opt(st.integers(0, 255)),
        ),
        min_size=1,
        max_size=10,
    ).map(tuple),
)


@st.composite
def _reads(draw: st.DrawFn) -> ReadCommand:
    forward = draw(st.booleans())
    return ReadCommand(
        command=draw(_IDS),
        issued=draw(_TIMES),
        meters=tuple(draw(st.lists(_METERS, min_size=1, max_size=1 if forward else 20))),
        quantities=None
        if forward
        else tuple(draw(st.lists(st.sampled_from(sorted(VOCABULARY)), min_size=1, max_size=5))),
        frame=draw(_HEX) if forward else None,
        deadline=draw(_opt(_TIMES)),
    )


@st.composite
def _relays(draw: st.DrawFn) -> RelayCommand:
    issued = draw(_TIMES)
    return RelayCommand(
        command=draw(_IDS),
        meter=draw(_METERS),
        action=draw(st.sampled_from(list(RelayAction))),
        issued=issued,
        deadline=issued + draw(st.timedeltas(timedelta(seconds=1), timedelta(days=400))),
    )


_TIME_SYNCS = st.builds(
    TimeSync,
    command=_IDS,
    time=_TIMES,
    meters=_opt(st.lists(_METERS, min_size=1, max_size=20).map(tuple)),
)
_RECEIPTS = st.builds(
    Receipt,
    kind=st.sampled_from(list(BatchKind)),
    batch=_IDS,
    seq=_SEQ,
    result=st.sampled_from(list(ReceiptResult)),
    accepted=st.integers(0, 10**6),
    duplicates=st.integers(0, 10**6),
    conflicts=st.integers(0, 10**6),
    rejected=st.integers(0, 10**6),
    reason=_opt(st.text(st.characters(exclude_categories=("Cs",)), max_size=500)),
)


def _assert_round_trip(concentrator: str, message: Any) -> None:
    topic, payload = _encode(concentrator, message)
    parsed_topic = parse_topic(topic)
    assert parsed_topic.concentrator == concentrator
    got_concentrator, parsed = _parse(topic, payload)
    assert got_concentrator == concentrator
    assert parsed == message
    assert type(parsed) is type(message)
    # The wire form is stable: re-encoding the parsed message gives the same bytes.
    assert _encode(concentrator, parsed) == (topic, payload)
    assert json.loads(payload)["v"] == 1


@given(_CONCENTRATORS, _READINGS)
def test_readings_round_trip(concentrator: str, message: ReadingsBatch) -> None:
    _assert_round_trip(concentrator, message)


@given(_CONCENTRATORS, _EVENTS)
def test_events_round_trip(concentrator: str, message: EventsBatch) -> None:
    _assert_round_trip(concentrator, message)


@given(_CONCENTRATORS, _ACKS)
def test_acks_round_trip(concentrator: str, message: CommandAck) -> None:
    _assert_round_trip(concentrator, message)


@given(_CONCENTRATORS, _FRAMES)
def test_frames_round_trip(concentrator: str, message: FramesBatch) -> None:
    _assert_round_trip(concentrator, message)


@given(_CONCENTRATORS, _reads())
def test_read_commands_round_trip(concentrator: str, message: ReadCommand) -> None:
    _assert_round_trip(concentrator, message)


@given(_CONCENTRATORS, _relays())
def test_relay_commands_round_trip(concentrator: str, message: RelayCommand) -> None:
    _assert_round_trip(concentrator, message)


@given(_CONCENTRATORS, _TIME_SYNCS)
def test_time_syncs_round_trip(concentrator: str, message: TimeSync) -> None:
    _assert_round_trip(concentrator, message)


@given(_CONCENTRATORS, _RECEIPTS)
def test_receipts_round_trip(concentrator: str, message: Receipt) -> None:
    _assert_round_trip(concentrator, message)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_escape_as_other_errors(payload: bytes) -> None:
    for topic in (UP_READINGS, UP_EVENTS, UP_ACKS, UP_FRAMES):
        try:
            parse_uplink(topic, payload)
        except PayloadError as error:
            assert error.data == payload
            assert isinstance(error.reason, PayloadFault)


# --- JSON Schema ----------------------------------------------------------------------------

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "protocols" / "mqtt" / "schema" / "v1.json"


def test_committed_schema_matches_the_models() -> None:
    committed = SCHEMA_FILE.read_text(encoding="utf-8")
    assert committed == json_schema_text(), (
        "protocols/mqtt/schema/v1.json is stale; regenerate it as protocols/mqtt/README.md says"
    )
    assert json.loads(committed) == json_schema()


def test_schema_describes_every_topic_and_requires_the_version() -> None:
    schema = json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    topics = schema["x-topics"]
    assert set(topics) == {
        f"meterhub/v1/c/{{concentrator}}/{d}/{k}"
        for d, kinds in (("up", UplinkKind), ("down", DownlinkKind))
        for k in kinds
    }
    for ref in topics.values():
        name = ref["$ref"].rsplit("/", 1)[-1]
        definition = schema["$defs"][name]
        assert definition["required"][0] == "v"
        assert definition["properties"]["v"]["const"] == 1
        assert definition["additionalProperties"] is False
    reading = schema["$defs"]["Reading"]
    assert reading["properties"]["meter"]["pattern"] == "^[0-9]{12}$"
    assert set(reading["properties"]["quantity"]["enum"]) == set(VOCABULARY)
    assert reading["properties"]["ts"]["format"] == "date-time"


def test_readme_examples_parse() -> None:
    readme = SCHEMA_FILE.parents[1] / "README.md"
    blocks = readme.read_text(encoding="utf-8").split("```json\n")[1:]
    examples = [block.split("```", 1)[0] for block in blocks]
    topics = [UP_READINGS, UP_EVENTS, UP_ACKS, UP_FRAMES]
    assert len(examples) == len(topics)
    for topic, example in zip(topics, examples, strict=True):
        concentrator, message = parse_uplink(topic, example.encode())
        assert concentrator == "C001"
        assert message.v == 1
    # The README's readings example is the first literal case, pretty-printed.
    assert parse_uplink(UP_READINGS, examples[0].encode())[1] == CASES[0][2]


def test_package_docstring_example_runs() -> None:
    import doctest

    import protocols.mqtt

    result = doctest.testmod(protocols.mqtt, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
