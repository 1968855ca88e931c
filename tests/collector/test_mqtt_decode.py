"""The MQTT collector's pure parts: decoding uplinks into readings and faults, the backoff."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from collector._mqtt_decode import KIND_FRAME, KIND_PAYLOAD, decode
from collector.mqtt import MqttLink, next_delay
from protocols.dlt645 import AbnormalResponse, ReadResponse, error_word, pack
from protocols.dlt645 import Version as DltVersion
from protocols.mqtt import (
    ForwardedFrame,
    FramesBatch,
    Limits,
    Reading,
    ReadingsBatch,
    encode_uplink,
)

TZ = timezone(timedelta(hours=8))
T0 = datetime(2026, 3, 1, 0, 15, tzinfo=TZ)


def _readings(n: int = 3) -> tuple[str, bytes]:
    batch = ReadingsBatch(batch="b-1", seq=7, readings=tuple(
        Reading(meter=f"{i + 1:012d}", quantity="forward_active_total_kwh", ts=T0,
                value=100.0 + i) for i in range(n)))
    return encode_uplink("C001", batch)


def test_readings_batch_decodes_to_items_with_batch_and_seq() -> None:
    topic, payload = _readings(3)
    d = decode(topic, payload)
    assert d.fault is None
    assert (d.concentrator, d.kind, d.batch, d.seq) == ("C001", "readings", "b-1", 7)
    assert [(i.meter, i.value) for i in d.items] == [
        ("000000000001", 100.0), ("000000000002", 101.0), ("000000000003", 102.0)]
    assert d.source == "mqtt:C001"


@pytest.mark.parametrize(("payload", "reason"), [
    (b"\x00\xff garbage", "not_json"),
    (b'{"v":1,"batch":"b-9","seq":3,"readings":[{"meter":"0000', "not_json"),
    (b"[1, 2, 3]", "not_object"),
    (b'{"v":2,"batch":"b-9","seq":3,"readings":[]}', "unsupported_version"),
    (b'{"v":1,"batch":"b-9","seq":3,"readings":[{"meter":"1","quantity":"x","ts":"t",'
     b'"value":"1"}]}', "bad_meter_address"),
])
def test_invalid_payloads_become_payload_faults(payload: bytes, reason: str) -> None:
    d = decode("meterhub/v1/c/C001/up/readings", payload)
    assert d.fault is not None
    assert (d.fault.kind, d.fault.reason, d.fault.raw) == (KIND_PAYLOAD, reason, payload)
    assert d.fault.context["topic"] == "meterhub/v1/c/C001/up/readings"
    assert d.items == []


def test_refused_payload_keeps_a_readable_batch_id_for_the_receipt() -> None:
    payload = b'{"v":1,"batch":"b-9","seq":3,"readings":[{"meter":"1"}]}'
    d = decode("meterhub/v1/c/C001/up/readings", payload)
    assert d.fault is not None and (d.batch, d.seq) == ("b-9", 3)
    bad_id = decode("meterhub/v1/c/C001/up/readings", b'{"v":1,"batch":"#x","seq":-1}')
    assert bad_id.fault is not None and (bad_id.batch, bad_id.seq) == (None, None)


def test_oversized_payload_is_a_fault() -> None:
    topic, payload = _readings(50)
    d = decode(topic, payload, limits=Limits(max_payload_bytes=1000))
    assert d.fault is not None and d.fault.reason == "too_large"
    assert d.fault.raw == payload


def test_unknown_topic_kind_is_a_fault() -> None:
    d = decode("meterhub/v1/c/C001/up/gossip", b"{}")
    assert d.fault is not None and d.fault.reason == "unknown_kind"
    assert (d.concentrator, d.kind, d.source) == ("C001", None, "mqtt:C001")


def test_frames_batch_decodes_good_frames_and_isolates_bad_ones() -> None:
    good = pack(ReadResponse.from_values("000000000042", 0x00010000, [1234.56]), preamble=4)
    voltage = pack(ReadResponse.from_values("000000000042", 0x02010100, [220.1]))
    corrupt = bytearray(good)
    corrupt[-2] ^= 0xFF  # checksum
    abnormal = pack(AbnormalResponse("000000000042", 0x11,
                                     error_word(["no_requested_data"], DltVersion.V2007)))
    frames = FramesBatch(batch="f-1", seq=1, frames=tuple(
        ForwardedFrame(ts=T0, hex=raw.hex()) for raw in (good, corrupt, voltage, abnormal)))
    topic, payload = encode_uplink("C001", frames)
    d = decode(topic, payload)
    assert d.fault is None
    assert [(i.meter, i.quantity, i.value) for i in d.items] == [
        ("000000000042", "forward_active_total_kwh", 1234.56),
        ("000000000042", "voltage_a_v", 220.1)]
    assert all(i.ts == T0 for i in d.items)
    assert [(f.kind, f.context["frame"]) for f in d.frame_faults] == [(KIND_FRAME, 1),
                                                                      (KIND_FRAME, 3)]
    assert d.frame_faults[0].raw == bytes(corrupt)
    assert d.frame_faults[1].reason == "abnormal_reply"


def test_next_delay_grows_is_capped_and_jittered() -> None:
    rng = random.Random(7)
    delays = [next_delay(n, base=0.5, cap=4.0, rng=rng) for n in range(1, 40)]
    assert all(0.25 <= d <= 4.0 for d in delays)
    assert max(delays[:1]) <= 0.5
    assert max(delays[10:]) > 2.0  # the ceiling reached the cap
    assert len({round(d, 6) for d in delays}) > 30  # jittered, not a fixed ladder


def test_link_from_url_keeps_the_password_out_of_repr() -> None:
    link = MqttLink.from_url("mqtt://127.0.0.1:18830", username="meterhub-collector",
                             password="s3cret-value", client_id="meterhub-collector-1")
    assert (link.host, link.port, link.tls) == ("127.0.0.1", 18830, False)
    assert "s3cret-value" not in repr(link) and "s3cret-value" not in link.endpoint
    with pytest.raises(ValueError):
        MqttLink.from_url("http://x", username=None, password=None, client_id="c")
