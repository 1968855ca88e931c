"""The ``up/readings`` fast path gives exactly what the pydantic models give.

:func:`protocols.mqtt.parse_readings` checks the rules of ``ReadingsBatch`` by hand and asks
the models only for payloads outside its common subset. Hypothesis builds valid batches and
mutates them at the JSON level (fields removed, replaced by values of every JSON type,
timestamps in every form the models might read, extra fields, limits); the fast path and
:func:`protocols.mqtt.parse_uplink` must agree on the message, or on the error's reason,
field path, problems and text.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from protocols.mqtt import (
    Limits,
    PayloadError,
    ReadingRow,
    ReadingRows,
    TopicError,
    TopicFault,
    check_readings,
    parse_readings,
    parse_uplink,
)
from protocols.quantities import VOCABULARY

TOPIC = "meterhub/v1/c/C001/up/readings"
CST = timezone(timedelta(hours=8))


def _reference(topic: str, payload: bytes, **kwargs: Any) -> Any:
    try:
        concentrator, message = parse_uplink(topic, payload, **kwargs)
    except PayloadError as exc:
        return _error(exc)
    return concentrator, ReadingRows.from_message(message), _offsets(message.readings)


def _fast(topic: str, payload: bytes, **kwargs: Any) -> Any:
    try:
        concentrator, rows = parse_readings(topic, payload, **kwargs)
    except PayloadError as exc:
        return _error(exc)
    return concentrator, rows, _offsets(rows)


def _error(exc: PayloadError) -> tuple[Any, ...]:
    return ("error", exc.reason, exc.field, exc.problems, str(exc), exc.data, exc.topic)


def _offsets(readings: Any) -> list[Any]:
    # == alone would take 1 for 1.0 and any offset for the same instant
    return [(r.ts.utcoffset(), type(r.value), type(r.interval)) for r in readings]


def _assert_same(payload: bytes, **kwargs: Any) -> Any:
    fast = _fast(TOPIC, payload, **kwargs)
    assert fast == _reference(TOPIC, payload, **kwargs)
    return fast


# --- strategies -------------------------------------------------------------------------------

_OFFSET_MINUTES = st.integers(-14 * 60, 14 * 60)
_STAMPS = st.builds(
    lambda naive, minutes: naive.replace(tzinfo=timezone(timedelta(minutes=minutes))),
    st.datetimes(datetime(1, 1, 2), datetime(9999, 12, 30)),
    _OFFSET_MINUTES,
)


def _ts_text(stamp: datetime, form: int) -> Any:
    iso = stamp.isoformat()
    return [
        iso,
        iso.replace("+00:00", "Z"),
        stamp.isoformat(timespec="milliseconds"),
        iso.replace("T", " "),
        iso.replace("T", "t"),
        iso[:-6],  # naive
        iso[:-3] + iso[-2:],  # +0800
        stamp.isoformat(timespec="minutes"),
        iso.replace(".", ","),
        str(int(stamp.timestamp())),
        int(stamp.timestamp()),
        iso[:10] + "T24:00:00+00:00",
        "2026-02-30T00:00:00+08:00",
        "2026-01-01T00:00:60+08:00",
        "2026-01-01T00:00:00+24:00",
        "2026-01-01T00:00:00.1234567+08:00",
        iso + " ",
    ][form]


_TS_TEXTS = st.builds(_ts_text, _STAMPS, st.integers(0, 16))
_GOOD_TS = st.builds(lambda s, f: _ts_text(s, f), _STAMPS, st.sampled_from([0, 1, 2]))
_QUANTITIES = sorted(VOCABULARY)
_VALUES = st.one_of(  # the fast path's range; larger numbers go through the models
    st.integers(-(2**63), 2**64 - 1),
    st.floats(-9e18, 9e18),
)
_METERS = st.from_regex(r"[0-9]{12}", fullmatch=True)
_IDS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}", fullmatch=True)

_JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    _TS_TEXTS,
    _METERS,
    st.sampled_from([*_QUANTITIES, "energy_kwh", "", "1", "00000000001", "000000000001\n"]),
    st.sampled_from([0, 1, 2, 1440, 1441, -1, 1.0, 15.0, 2**63, 2**63 - 1]),
)
_JSON_VALUES = st.one_of(
    _JSON_SCALARS,
    st.lists(_JSON_SCALARS, max_size=3),
    st.dictionaries(st.text(max_size=8), _JSON_SCALARS, max_size=3),
)


@st.composite
def _reading(draw: st.DrawFn) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "meter": draw(_METERS),
        "quantity": draw(st.sampled_from(_QUANTITIES)),
        "ts": draw(_GOOD_TS),
        "value": draw(_VALUES),
    }
    if draw(st.booleans()):
        doc["interval"] = draw(st.none() | st.integers(1, 1440))
    return doc


@st.composite
def _batch(draw: st.DrawFn) -> dict[str, Any]:
    doc: dict[str, Any] = {"v": 1, "batch": draw(_IDS), "seq": draw(st.integers(0, 2**63 - 1))}
    if draw(st.booleans()):
        doc["sent"] = draw(st.none() | _GOOD_TS)
    if draw(st.booleans()):
        doc["command"] = draw(st.none() | _IDS)
    readings = draw(st.lists(_reading(), min_size=1, max_size=6))
    if draw(st.booleans()):  # slots shared by many meters, as concentrators send them
        for r in readings:
            r["ts"] = readings[0]["ts"]
    doc["readings"] = readings
    return doc


_TOP_KEYS = ["v", "batch", "seq", "sent", "command", "readings", "extra"]
_ITEM_KEYS = ["meter", "quantity", "ts", "value", "interval", "unit"]


@st.composite
def _mutated(draw: st.DrawFn) -> dict[str, Any] | Any:
    doc = draw(_batch())
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.integers(-1, len(doc["readings"]) - 1)) if isinstance(
            doc.get("readings"), list) and doc["readings"] else -1
        target = doc if where < 0 else doc["readings"][where]
        if not isinstance(target, dict):
            continue
        key = draw(st.sampled_from(_TOP_KEYS if where < 0 else _ITEM_KEYS))
        action = draw(st.sampled_from(["delete", "replace", "replace", "replace"]))
        if action == "delete":
            target.pop(key, None)
        else:
            target[key] = draw(_JSON_VALUES)
    if draw(st.integers(0, 9)) == 0:
        return draw(_JSON_VALUES)  # not an object at all
    return doc


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode("utf-8")


# --- properties -------------------------------------------------------------------------------


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(_batch())
def test_valid_batches_take_the_fast_path_and_match_the_models(doc: dict[str, Any]) -> None:
    payload = _dumps(doc)
    assert check_readings(payload) is not None
    _concentrator, rows, _ = _assert_same(payload)
    assert len(rows) == len(doc["readings"])
    assert [r.meter for r in rows] == [r["meter"] for r in doc["readings"]]


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated())
@example({"v": 1, "batch": "b", "seq": 1, "readings": [
    {"meter": "000000000001\n", "quantity": "interval_kwh", "ts": "2026-01-01T00:15:00+08:00",
     "value": 1}]})
@example({"v": True, "batch": "b", "seq": 1, "readings": [
    {"meter": "000000000001", "quantity": "interval_kwh", "ts": "1767197700", "value": 1.0}]})
@example({"v": 1, "batch": "b", "seq": 1, "readings": [
    {"meter": "000000000001", "quantity": "interval_kwh", "ts": "2026-01-01T00:15:00+08:00",
     "value": 1, "interval": True}]})
def test_mutated_batches_give_the_same_message_or_error(doc: Any) -> None:
    _assert_same(_dumps(doc))


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_give_the_same_error(payload: bytes) -> None:
    _assert_same(payload)


@pytest.mark.parametrize("text", [
    b'{"v":1,"v":2,"batch":"b","seq":1,"readings":[{"meter":"000000000001",'
    b'"quantity":"interval_kwh","ts":"2026-01-01T00:15:00+08:00","value":1}]}',
    b'{"v":2,"v":1,"batch":"b","seq":1,"readings":[{"meter":"000000000001",'
    b'"quantity":"interval_kwh","ts":"2026-01-01T00:15:00+08:00","value":1}]}',
    b'{"v":1,"batch":"b","seq":1,"readings":[{"meter":"000000000001",'
    b'"quantity":"interval_kwh","ts":"2026-01-01T00:15:00+08:00","value":1e400}]}',
    b'{"v":1,"batch":"b","seq":1,"readings":[{"meter":"000000000001",'
    b'"quantity":"interval_kwh","ts":"2026-01-01T00:15:00+08:00","value":NaN}]}',
    b'{"v":1,"batch":"b","seq":1,"readings":[{"meter":"000000000001",'
    b'"quantity":"interval_kwh","ts":"2026-01-01T00:15:00+08:00",'
    b'"value":18446744073709551616}]}',
    b'\xef\xbb\xbf{"v":1}',
])
def test_json_corner_cases_match(text: bytes) -> None:
    _assert_same(text)


def test_limits_and_quantities_are_applied_alike() -> None:
    doc = {"v": 1, "batch": "b-1", "seq": 7, "readings": [
        {"meter": f"{i:012d}", "quantity": "voltage_ab_v",
         "ts": "2026-01-01T00:15:00+08:00", "value": i} for i in range(3)]}
    payload = _dumps(doc)
    _assert_same(payload)
    wider = {*VOCABULARY, "voltage_ab_v"}
    _concentrator, rows, _ = _assert_same(payload, quantities=wider)
    assert check_readings(payload, quantities=wider) == rows
    _assert_same(payload, quantities=wider, limits=Limits(max_readings=2))
    _assert_same(payload, quantities=wider, limits=Limits(max_payload_bytes=len(payload) - 1))
    _assert_same(payload, quantities=wider, limits=Limits(max_payload_bytes=len(payload)))
    # an empty collection means the default vocabulary, as in the models
    _assert_same(payload, quantities=set())


def test_rows_iterate_as_readings_and_convert_back() -> None:
    payload = (b'{"v":1,"batch":"b-1","seq":7,"sent":"2026-01-01T00:16:00+08:00","readings":['
               b'{"meter":"000000000001","quantity":"interval_kwh",'
               b'"ts":"2026-01-01T00:15:00+08:00","value":0.37,"interval":15},'
               b'{"meter":"000000000002","quantity":"status_word_3",'
               b'"ts":"2026-01-01T00:15:00+08:00","value":80}]}')
    concentrator, rows = parse_readings(TOPIC, payload)
    assert concentrator == "C001"
    first = rows[0]
    assert isinstance(first, ReadingRow)
    assert (first.meter, first.value, first.interval) == ("000000000001", 0.37, 15)
    assert first.ts == datetime(2026, 1, 1, 0, 15, tzinfo=CST)
    assert rows.rows[0][2] is rows.rows[1][2]  # one parse per distinct timestamp
    assert isinstance(rows[1].value, int)
    assert [r.meter for r in rows] == ["000000000001", "000000000002"]
    assert rows.to_message() == parse_uplink(TOPIC, payload)[1]


def test_other_topics_are_refused() -> None:
    with pytest.raises(TopicError) as info:
        parse_readings("meterhub/v1/c/C001/up/events", b"{}")
    assert info.value.reason is TopicFault.UNKNOWN_KIND
    with pytest.raises(TopicError) as info:
        parse_readings("meterhub/v1/c/C001/down/read", b"{}")
    assert info.value.reason is TopicFault.WRONG_DIRECTION
