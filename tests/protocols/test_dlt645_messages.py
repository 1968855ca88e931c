"""Message layer of DL/T 645-2007 and -1997 on published frames, both directions (R6).

Each case: (source, edition, message, expected values or None, wire hex). The wire bytes must
decode to the message (and the values through the registry), the message must encode back to
the same bytes, and :func:`detect_version` must pick the edition.
"""

from __future__ import annotations

import pytest
from dlt645_cases import feed_three_ways, h

from protocols.dlt645 import (
    AbnormalResponse,
    Ack,
    Function1997,
    Function2007,
    Message,
    ReadAddressRequest,
    ReadAddressResponse,
    ReadFollowUpRequest,
    ReadRequest,
    ReadResponse,
    RemoteCommand,
    RemoteControlRequest,
    TimeSyncRequest,
    Version,
    decode_message,
    detect_version,
    pack,
)

V7, V97 = Version.V2007, Version.V1997
CL = "151230011061"  # [CL] meter address (wire 61 10 01 30 12 15)
Values = list[tuple[str, object]] | None

CASES: list[tuple[str, Version, Message, Values, str]] = [
    ("S1", V7, ReadRequest("000102030425", 0x00010000), None,
     "68 25 04 03 02 01 00 68 11 04 33 33 34 33 E1 16"),
    ("S1", V7, ReadResponse("000102030425", 0x00010000, h("42 06 12 00")),
     [("forward_active_total_kwh", 1206.42)],
     "68 25 04 03 02 01 00 68 91 08 33 33 34 33 75 39 45 33 8B 16"),
    ("S1", V7, ReadAddressRequest(), None, "FE FE FE 68 AA AA AA AA AA AA 68 13 00 DF 16"),
    ("WS", V7, ReadRequest("000000000161", 0x02010100), None,
     "68 61 01 00 00 00 00 68 11 04 33 34 34 35 17 16"),
    ("WS", V7, ReadResponse("000000000161", 0x00010000, h("26 00 00 00")),
     [("forward_active_total_kwh", 0.26)],
     "68 61 01 00 00 00 00 68 91 08 33 33 34 33 59 33 33 33 8A 16"),
    ("WS", V7, ReadResponse("000000000161", 0x02010100, h("01 10")), [("voltage_a_v", 100.1)],
     "68 61 01 00 00 00 00 68 91 06 33 34 34 35 34 43 10 16"),
    ("WS", V7, ReadResponse("000000000161", 0x02020100, h("99 49 00")),
     [("current_a_a", 4.999)], "68 61 01 00 00 00 00 68 91 07 33 34 35 35 CC 7C 33 16 16"),
    ("WS", V7, ReadResponse("000000000161", 0x02030000, h("12 25 00")),
     [("active_power_total_kw", 0.2512)],
     "68 61 01 00 00 00 00 68 91 07 33 33 36 35 45 58 33 6B 16"),
    ("WS", V7, ReadResponse("000000000161", 0x02040000, h("31 43 00")),
     [("reactive_power_total_kvar", 0.4331)],
     "68 61 01 00 00 00 00 68 91 07 33 33 37 35 64 76 33 A9 16"),
    ("WS", V7, ReadResponse("000000000161", 0x02050000, h("06 50 00")),
     [("apparent_power_total_kva", 0.5006)],
     "68 61 01 00 00 00 00 68 91 07 33 33 38 35 39 83 33 8C 16"),
    ("WS", V7, ReadResponse("000000000161", 0x02060000, h("01 05")),
     [("power_factor_total", 0.501)], "68 61 01 00 00 00 00 68 91 06 33 33 39 35 34 38 09 16"),
    # prepaid trip (N1 = 1A) and close-allowed (1B), PA 02, deadline 2099-12-30 00:00:00
    ("CL", V7, RemoteControlRequest(CL, RemoteCommand.TRIP, "2099-12-30 00:00:00", 2, 0x020637,
                                    1, 0), None,
     "68 61 10 01 30 12 15 68 1C 10 35 6A 39 35 34 33 33 33 4D 33 33 33 33 63 45 CC 2C 16"),
    ("CL", V7, RemoteControlRequest(CL, RemoteCommand.CLOSE_ALLOWED, "2099-12-30 00:00:00", 2,
                                    0x020637, 1, 0), None,
     "68 61 10 01 30 12 15 68 1C 10 35 6A 39 35 34 33 33 33 4E 33 33 33 33 63 45 CC 2D 16"),
    ("CL", V7, Ack(CL, Function2007.REMOTE_CONTROL), None, "68 61 10 01 30 12 15 68 9C 00 35 16"),
    ("CL", V7, ReadRequest(CL, 0x04000503), None,
     "68 61 10 01 30 12 15 68 11 04 36 38 33 37 86 16"),
    # status word 3 after the trip: 0x0050 = relay open (bit4) + trip commanded (bit6)
    ("CL", V7, ReadResponse(CL, 0x04000503, h("50 00")),
     [("status_word_3", 0x50), ("relay_open", True), ("relay_trip_commanded", True),
      ("pre_trip_alarm", False), ("protect_active", False)],
     "68 61 10 01 30 12 15 68 91 06 36 38 33 37 83 33 BE 16"),
    ("CL", V7, ReadResponse(CL, 0x04000503, h("00 00")),
     [("status_word_3", 0), ("relay_open", False), ("relay_trip_commanded", False),
      ("pre_trip_alarm", False), ("protect_active", False)],
     "68 61 10 01 30 12 15 68 91 06 36 38 33 37 33 33 6E 16"),
    ("CL", V7, ReadResponse(CL, 0x00010000, h("78 06 00 00")),
     [("forward_active_total_kwh", 6.78)],
     "68 61 10 01 30 12 15 68 91 08 33 33 34 33 AB 39 33 33 49 16"),
    ("CS", V7, AbnormalResponse("123456789012", Function2007.READ, 0x02), None,
     "68 12 90 78 56 34 12 68 D1 01 35 8D 16"),
    ("CS", V7, ReadFollowUpRequest("123456789012", 0x03300001, 1), None,
     "68 12 90 78 56 34 12 68 12 05 34 33 63 36 34 D1 16"),
    ("CS", V7, ReadAddressResponse("123456789012"), [("comm_address", "123456789012")],
     "FE FE FE FE FE FE FE 68 12 90 78 56 34 12 68 93 06 45 C3 AB 89 67 45 07 16"),
    ("CS", V7, ReadResponse("123456789012", 0x00010000, h("56 34 12 00")),
     [("forward_active_total_kwh", 1234.56)],
     "68 12 90 78 56 34 12 68 91 08 33 33 34 33 89 67 45 33 54 16"),
    ("CS", V7, ReadRequest("AAAAAAAAAAAA", 0x00010000), None,
     "FE FE FE FE 68 AA AA AA AA AA AA 68 11 04 33 33 34 33 AE 16"),
    ("GO", V7, AbnormalResponse("910004920760", Function2007.READ, 0x04), None,
     "FE FE FE FE 68 60 07 92 04 00 91 68 D1 01 37 67 16"),
    ("GO", V7, ReadResponse("201709320072", 0x00010000, h("86 01 00 00")),
     [("forward_active_total_kwh", 1.86)],
     "FE FE 68 72 00 32 09 17 20 68 91 08 33 33 34 33 B9 34 33 33 6D 16"),
    ("RA", V7, ReadAddressResponse("000000000001"), [("comm_address", "000000000001")],
     "68 01 00 00 00 00 00 68 93 06 34 33 33 33 33 33 9D 16"),
    ("RA", V7, ReadAddressResponse("181226034194"), [("comm_address", "181226034194")],
     "FE FE FE FE 68 94 41 03 26 12 18 68 93 06 C7 74 36 59 45 4B EB 16"),
    ("SR", V7, ReadResponse("000006605518", 0x04000102, h("32 53 18")), [("time", "18:53:32")],
     "FE FE FE FE 68 18 55 60 06 00 00 68 91 07 35 34 33 37 65 86 4B 44 16"),
    # [TM] a vendor DI (80808080) answered with no data by a real 4G meter; address byte 16
    ("TM", V7, ReadResponse("250619510016", 0x80808080, b""), [("raw", "")],
     "68 16 00 51 19 06 25 68 91 04 B3 B3 B3 B3 DC 16"),
    ("BT", V7, TimeSyncRequest("2017-06-05 10:22:51"), None,
     "68 99 99 99 99 99 99 68 08 06 84 55 43 38 39 4A 4B 16"),
    ("BT", V7, TimeSyncRequest("2017-06-05 10:40:25", "111111111111"), None,
     "68 11 11 11 11 11 11 68 08 06 58 73 43 38 39 4A 0D 16"),
    ("DF", V7, ReadRequest("123400000707", 0x05060101), None,
     "68 07 07 00 00 34 12 68 11 04 34 34 39 38 12 16"),
    # --- 1997 ---
    ("KT", V97, ReadRequest("999999999999", 0x9010, version=V97), None,
     "68 99 99 99 99 99 99 68 01 02 43 C3 6F 16"),
    ("KT", V97, ReadResponse("000000063295", 0x9010, h("15 00 00 00"), version=V97),
     [("forward_active_total_kwh", 0.15)],
     "68 95 32 06 00 00 00 68 81 06 43 C3 48 33 33 33 0B 16"),
    # the log annotates 35 as the error word; after -0x33 it is 02 = DI error (protocols.md §4)
    ("KT", V97, AbnormalResponse("000000063295", Function1997.READ, 0x02, V97), None,
     "68 95 32 06 00 00 00 68 C1 01 35 94 16"),
    ("KT", V97, ReadResponse("201708176934", 0xC010, h("06 06 07 19"), version=V97),
     [("date", "2019-07-06")],
     "FE FE FE FE 68 34 69 17 08 17 20 68 81 06 43 F3 39 39 3A 4C 78 16"),
    ("KT", V97, ReadResponse("000000063295", 0x9110, h("00 00 00 00"), version=V97),
     [("forward_reactive_total_kvarh", 0.0)],
     "68 95 32 06 00 00 00 68 81 06 43 C4 33 33 33 33 F7 16"),
    ("KT", V97, ReadResponse("000000063295", 0x901F, h("39 00 00 00 00 00 00 00 03 00 00 00"
                                                       " 24 00 00 00 12 00 00 00"), version=V97),
     [("forward_active_total_kwh", 0.39), ("forward_active_t1_kwh", 0.0),
      ("forward_active_t2_kwh", 0.03), ("forward_active_t3_kwh", 0.24),
      ("forward_active_t4_kwh", 0.12)],
     "68 95 32 06 00 00 00 68 81 16 52 C3 6C 33 33 33 33 33 33 33 36 33 33 33 57 33 33 33"
     " 45 33 33 33 B7 16"),
    ("KT", V97, ReadResponse("201708176934", 0xC032, h("34 69 17 08 17 20"), version=V97),
     [("meter_number", "201708176934")],
     "FE FE FE FE 68 34 69 17 08 17 20 68 81 08 65 F3 67 9C 4A 3B 4A 53 C9 16"),
    ("KT", V97, ReadResponse("201708176934", 0xC011, h("04 22 22"), version=V97),
     [("time", "22:22:04")],
     "FE FE FE FE 68 34 69 17 08 17 20 68 81 05 44 F3 37 55 55 61 16"),
    ("KT", V97, AbnormalResponse("201708176934", Function1997.WRITE, 0x01, V97), None,
     "FE FE FE FE 68 34 69 17 08 17 20 68 C4 01 34 BC 16"),
    ("HY", V97, ReadRequest("000000000003", 0xB611, version=V97), None,
     "68 03 00 00 00 00 00 68 01 02 44 E9 03 16"),
    ("HY", V97, ReadResponse("000000000003", 0xB611, h("00 01"), version=V97),
     [("voltage_a_v", 100)], "68 03 00 00 00 00 00 68 81 04 44 E9 33 34 EC 16"),
    ("CH", V97, ReadResponse("000014359743", 0x9010, h("48 63 24 00"), version=V97),
     [("forward_active_total_kwh", 2463.48)],
     "68 43 97 35 14 00 00 68 81 06 43 C3 7B 96 57 33 1B 16"),
]


@pytest.mark.parametrize(("source", "version", "message", "values", "wire"), CASES)
def test_decode(source: str, version: Version, message: Message, values: Values,
                wire: str) -> None:
    frame = feed_three_ways(h(wire))
    assert detect_version(frame) is version, source
    decoded, warnings = decode_message(frame, version)
    assert decoded == message
    assert warnings == ()
    if values is not None:
        if isinstance(decoded, ReadResponse):
            got, value_warnings = decoded.values()
            unknown = decoded.di == 0x80808080
            assert len(value_warnings) == (1 if unknown else 0)
            assert [(v.name, v.value) for v in got] == values
        else:
            assert isinstance(decoded, ReadAddressResponse)
            assert [("comm_address", decoded.address)] == values


@pytest.mark.parametrize(("source", "version", "message", "wire"),
                         [(s, v, m, w) for s, v, m, _, w in CASES])
def test_encode(source: str, version: Version, message: Message, wire: str) -> None:
    assert message.version is version
    raw = h(wire)
    preamble = len(raw) - len(raw.lstrip(b"\xfe"))
    assert pack(message, preamble=preamble) == raw, source


def test_error_bits_named() -> None:
    assert AbnormalResponse("1", 0x11, 0x02).error_bits == ("no_requested_data",)
    assert AbnormalResponse("1", 0x1C, 0x04).error_bits == ("password_error",)
    assert AbnormalResponse("1", 0x11, 0x7F).error_bits == (
        "other_error", "no_requested_data", "password_error", "baud_unchangeable",
        "year_zones_exceeded", "day_periods_exceeded", "tariffs_exceeded")
    assert AbnormalResponse("1", 0x11, 0x80).error_bits == ("bit7",)
    assert AbnormalResponse("1", 0x01, 0x03, V97).error_bits == ("illegal_data", "di_error")


def test_remote_control_zero_deadline_decodes_with_warning() -> None:
    # [YK] a 1C trip whose deadline is all zeros: kept, with a warning, and re-encodable
    raw = h("68 06 10 24 05 19 20 68 1C 10 35 33 33 33 33 33 33 33 4D 33 33 33 33 33 33 33 C0 16")
    msg, warnings = decode_message(feed_three_ways(raw))
    assert msg == RemoteControlRequest("201905241006", RemoteCommand.TRIP, "2000-00-00 00:00:00")
    assert len(warnings) == 1 and "deadline" in warnings[0]
    assert pack(msg) == raw


def test_meter_simulator_round_trip_through_public_api() -> None:
    """The docstring example of protocols.dlt645: a fake meter answering a master."""
    from protocols.dlt645 import (
        NEED_DATA,
        Frame,
        FrameDecoder,
        error_word,
    )

    meter_address = "000012345678"
    register = {0x00010000: [1234.56], 0x04000503: [0x0050]}

    def meter(received: bytes) -> bytes:
        decoder = FrameDecoder()
        decoder.feed(received)
        frame = decoder.next_frame()
        assert isinstance(frame, Frame)
        request, _ = decode_message(frame)
        if isinstance(request, ReadAddressRequest):
            return pack(ReadAddressResponse(meter_address), preamble=2)
        if isinstance(request, ReadRequest) and request.di in register:
            return pack(ReadResponse.from_values(meter_address, request.di,
                                                 register[request.di]), preamble=2)
        if isinstance(request, RemoteControlRequest):
            return pack(Ack(meter_address, frame.function))
        return pack(AbnormalResponse(meter_address, frame.function,
                                     error_word(["no_requested_data"], V7)))

    master = FrameDecoder()

    def ask(message: Message) -> Message:
        master.feed(meter(pack(message, preamble=4)))
        frame = master.next_frame()
        assert isinstance(frame, Frame) and master.next_frame() is NEED_DATA
        reply, warnings = decode_message(frame)
        assert warnings == ()
        return reply

    assert ask(ReadAddressRequest()) == ReadAddressResponse(meter_address)
    reply = ask(ReadRequest(meter_address, 0x00010000))
    assert isinstance(reply, ReadResponse)
    assert [v.value for v in reply.values()[0]] == [1234.56]
    reply = ask(ReadRequest(meter_address, 0x04000503))
    assert isinstance(reply, ReadResponse)
    assert {v.name: v.value for v in reply.values()[0]}["relay_open"] is True
    trip = RemoteControlRequest(meter_address, RemoteCommand.TRIP, "2099-12-31 23:59:59")
    assert ask(trip) == Ack(meter_address, Function2007.REMOTE_CONTROL)
    reply = ask(ReadRequest(meter_address, 0x0201FF00))
    assert isinstance(reply, AbnormalResponse)
    assert reply.error_bits == ("no_requested_data",)


def test_decoder_clear_drops_half_frame() -> None:
    from protocols.dlt645 import NEED_DATA, Frame, FrameDecoder

    dec = FrameDecoder()
    dec.feed(h("FE FE 68 12 90 78 56 34 12 68 91"))
    assert dec.next_frame() is NEED_DATA
    assert dec.buffered == h("FE FE 68 12 90 78 56 34 12 68 91")
    assert dec.clear() == 11
    assert dec.discarded == 11 and dec.buffered == b""
    dec.feed(h("68 12 90 78 56 34 12 68 D1 01 35 8D 16"))
    frame = dec.next_frame()
    assert isinstance(frame, Frame) and frame.control == 0xD1 and frame.preamble == 0


@pytest.mark.parametrize(
    ("control", "data", "version"),
    [
        (0x08, "00 00 00 01 01 26", V7),  # time sync: same layout in both, reported as 2007
        (0x03, "", V97),  # 1997 re-read request
        (0x83, "10 90", V97),  # 1997 re-read reply with a bare 2-byte DI
        (0xC3, "02", V97),  # 1997 abnormal re-read reply (1-byte error word)
        (0xC3, "04 00", V7),  # 2007 security service abnormal reply (2-byte SERR)
        (0x03, "00 00 FF 07 01 02 03 04", V7),  # 2007 security service request
        (0x1E, "", V7),  # unassigned code: default 2007
        (0x10, "00 00 00 00", V97),
        (0x9D, "01", V7),
    ],
)
def test_detect_version(control: int, data: str, version: Version) -> None:
    from protocols.dlt645 import Frame

    assert detect_version(Frame(b"\x01" + bytes(5), control, h(data))) is version


def test_load_record_request_fields() -> None:
    from protocols.explain import explain

    msg = ReadRequest("000000000001", 0x06000001, 3, "2026-11-23 00:00")
    wire = pack(msg, preamble=4)
    assert decode_message(feed_three_ways(wire)) == (msg, ())
    obj, code = explain(wire.hex())
    assert code == 0 and obj["di"] == "06000001"
    assert obj["fields"] == {"blocks": 3, "start": "2026-11-23 00:00"}
