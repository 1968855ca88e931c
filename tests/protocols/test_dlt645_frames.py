"""Frame layer of DL/T 645: whole-frame codec, stream decoder, frame faults (R2, R4, R6)."""

from __future__ import annotations

import pytest
from dlt645_cases import PUBLISHED, assert_fails, feed_three_ways, h

from protocols.dlt645 import (
    NEED_DATA,
    EncodeError,
    Frame,
    FrameDecoder,
    FrameError,
    FrameFault,
    checksum,
    decode_frame,
    decode_frame_prefix,
    encode_frame,
    format_address,
    parse_address,
    scramble,
    unscramble,
)

# (expected frame, wire hex) drives both encode and decode ---------------------------------
CASES: list[tuple[Frame, str]] = [
    # [S1] read forward active total, address 000102030425
    (Frame(h("25 04 03 02 01 00"), 0x11, h("00 00 01 00")),
     "68 25 04 03 02 01 00 68 11 04 33 33 34 33 E1 16"),
    # [S1] read-address request to the wildcard address, three FE
    (Frame(h("AA AA AA AA AA AA"), 0x13, b"", 3),
     "FE FE FE 68 AA AA AA AA AA AA 68 13 00 DF 16"),
    # [WS] current reply whose checksum byte is 16 (must not end the frame early)
    (Frame(h("61 01 00 00 00 00"), 0x91, h("00 01 02 02 99 49 00")),
     "68 61 01 00 00 00 00 68 91 07 33 34 35 35 CC 7C 33 16 16"),
    # [CS] seven FE before a read-address reply
    (Frame(h("12 90 78 56 34 12"), 0x93, h("12 90 78 56 34 12"), 7),
     "FE FE FE FE FE FE FE 68 12 90 78 56 34 12 68 93 06 45 C3 AB 89 67 45 07 16"),
    # [CL] 9C acknowledgement of a trip, L = 0
    (Frame(h("61 10 01 30 12 15"), 0x9C, b""), "68 61 10 01 30 12 15 68 9C 00 35 16"),
    # [CS] abnormal read reply, error word 02 (sent as 35)
    (Frame(h("12 90 78 56 34 12"), 0xD1, h("02")), "68 12 90 78 56 34 12 68 D1 01 35 8D 16"),
    # [KT] 1997 read of 9010 to the broadcast address
    (Frame(h("99 99 99 99 99 99"), 0x01, h("10 90")),
     "68 99 99 99 99 99 99 68 01 02 43 C3 6F 16"),
]


@pytest.mark.parametrize(("frame", "wire"), CASES)
def test_encode(frame: Frame, wire: str) -> None:
    assert encode_frame(frame) == h(wire)


@pytest.mark.parametrize(("frame", "wire"), CASES)
def test_decode_three_ways(frame: Frame, wire: str) -> None:
    assert decode_frame(h(wire)) == frame
    assert feed_three_ways(h(wire)) == frame


@pytest.mark.parametrize(("source", "wire"), PUBLISHED)
def test_published_frames_decode_and_reencode(source: str, wire: str) -> None:
    raw = h(wire)
    frame = feed_three_ways(raw)
    assert decode_frame(raw) == frame
    assert encode_frame(frame) == raw, source


def test_frame_properties() -> None:
    frame = decode_frame(h("68 12 90 78 56 34 12 68 D1 01 35 8D 16"))
    assert frame.is_response and frame.abnormal and not frame.follow_up
    assert frame.function == 0x11
    assert frame.address_text == "123456789012"
    follow = Frame(b"\x00" * 6, 0xB1, b"")
    assert follow.follow_up and follow.is_response and not follow.abnormal


@pytest.mark.parametrize(
    ("text", "wire"),
    [
        ("000102030425", "25 04 03 02 01 00"),  # protocols.md §3
        ("102030425", "25 04 03 02 01 00"),  # short addresses are zero-padded
        ("AAAAAAAAAAAA", "AA AA AA AA AA AA"),
        ("aaaaaa000161", "61 01 00 AA AA AA"),  # partial wildcard, case-insensitive
        ("999999999999", "99 99 99 99 99 99"),
    ],
)
def test_addresses(text: str, wire: str) -> None:
    assert parse_address(text) == h(wire)
    assert format_address(h(wire)) == text.upper().rjust(12, "0")


@pytest.mark.parametrize("bad", ["", "1234567890123", "12345678901G", "-1"])
def test_bad_addresses(bad: str) -> None:
    with pytest.raises(EncodeError):
        parse_address(bad)


def test_offset_and_checksum_arithmetic() -> None:
    # protocols.md §5: 0xE0 + 0x33 = 0x13 (mod 256); DI 04000503 -> 36 38 33 37
    assert scramble(h("E0")) == h("13")
    assert unscramble(h("13")) == h("E0")
    assert scramble(h("03 05 00 04")) == h("36 38 33 37")
    assert checksum(h("68 AA AA AA AA AA AA 68 13 00")) == 0xDF


# --- frame faults: one helper, one reason each (R4/R6) -----------------------------------------
GOOD = "68 12 90 78 56 34 12 68 91 08 33 33 34 33 89 67 45 33 54 16"  # [CS]


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        # [CS] checksum 55 instead of 54
        ("68 12 90 78 56 34 12 68 91 08 33 33 34 33 89 67 45 33 55 16", FrameFault.BAD_CHECKSUM),
        # [CS] end byte 17
        ("68 12 90 78 56 34 12 68 91 08 33 33 34 33 89 67 45 33 54 17", FrameFault.BAD_END),
        # [CS] second start byte 69
        ("68 12 90 78 56 34 12 69 91 08 33 33 34 33 89 67 45 33 54 16",
         FrameFault.BAD_SECOND_START),
        # [CS] L = FF announces more bytes than given
        ("68 12 90 78 56 34 12 68 91 FF 33 33", FrameFault.TRUNCATED),
        # L says 7 but 8 data bytes follow: the 16 is not where L puts it
        ("68 12 90 78 56 34 12 68 91 07 33 33 34 33 89 67 45 33 54 16", FrameFault.BAD_END),
        # the same with a checksum that fits the 20 bytes given: only L is wrong
        ("68 12 90 78 56 34 12 68 91 07 33 33 34 33 89 67 45 33 53 16", FrameFault.BAD_LENGTH),
        ("68 12 90 78 56 34 12 68 91 09 33 33 34 33 89 67 45 33 55 16", FrameFault.BAD_LENGTH),
        ("FE FE 68 12 90 78 56 34 12 68 91 08 33 33", FrameFault.TRUNCATED),
        ("FE FE FE FE", FrameFault.TRUNCATED),
        ("", FrameFault.TRUNCATED),
        ("00 " + GOOD, FrameFault.NO_START),
        (GOOD + " 00", FrameFault.TRAILING_BYTES),
    ],
)
def test_frame_faults(wire: str, reason: FrameFault) -> None:
    exc = assert_fails(h(wire), reason)
    assert exc.data or reason is FrameFault.TRUNCATED
    assert isinstance(str(exc), str) and repr(exc).startswith("FrameError(")


def test_fault_carries_offending_bytes() -> None:
    exc = assert_fails(h("68 12 90 78 56 34 12 68 91 08 33 33 34 33 89 67 45 33 55 16"),
                       FrameFault.BAD_CHECKSUM)
    assert exc.data == h("68 12 90 78 56 34 12 68 91 08 33 33 34 33 89 67 45 33 55 16")
    exc = assert_fails(h(GOOD + " 00 01"), FrameFault.TRAILING_BYTES)
    assert exc.data == h("00 01")


def test_prefix_reports_consumed_length() -> None:
    raw = h("FE FE " + GOOD + " FE FE 68")
    frame, used = decode_frame_prefix(raw)
    assert used == len(raw) - 3
    assert frame.preamble == 2


# --- stream decoder ---------------------------------------------------------------------------
def _drain(dec: FrameDecoder) -> tuple[list[Frame], list[FrameFault]]:
    frames: list[Frame] = []
    faults: list[FrameFault] = []
    while True:
        try:
            got = dec.next_frame()
        except FrameError as exc:
            faults.append(exc.reason)
            continue
        if got is NEED_DATA:
            return frames, faults
        assert isinstance(got, Frame)
        frames.append(got)


def test_stream_several_frames_in_one_chunk() -> None:
    wires = [w for _, w in PUBLISHED[:6]]
    dec = FrameDecoder()
    dec.feed(b"".join(h(w) for w in wires))
    frames, faults = _drain(dec)
    assert [encode_frame(f) for f in frames] == [h(w) for w in wires]
    assert faults == [] and dec.discarded == 0


def test_stream_resynchronises_after_garbage_and_counts_it() -> None:
    a = h("68 61 01 00 00 00 00 68 91 06 33 34 34 35 34 43 10 16")  # [WS]
    b = h("68 61 10 01 30 12 15 68 9C 00 35 16")  # [CL]
    garbage = h("00 13 37 16 16")
    dec = FrameDecoder()
    for chunk in (garbage, a[:5], a[5:] + garbage, b):
        dec.feed(chunk)
    frames, faults = _drain(dec)
    assert frames == [decode_frame(a), decode_frame(b)]
    assert faults == []
    assert dec.discarded == 2 * len(garbage)


def test_stream_reports_corrupt_candidate_then_recovers() -> None:
    # a doubled 68 (WKJay/DLT645 issue #5) and a frame with a bad checksum before good frames
    good = h(GOOD)
    bad_cs = h("68 12 90 78 56 34 12 68 91 08 33 33 34 33 89 67 45 33 55 16")
    dec = FrameDecoder()
    dec.feed(h("68") + good + bad_cs + good)
    frames, faults = _drain(dec)
    assert frames == [decode_frame(good), decode_frame(good)]
    assert FrameFault.BAD_SECOND_START in faults and FrameFault.BAD_CHECKSUM in faults
    assert dec.errors == len(faults)
    # discarded: every byte of the doubled 68 and of the corrupt frame, nothing of the good ones
    assert dec.discarded == 1 + len(bad_cs)


def test_stream_keeps_fe_inside_frames() -> None:
    # a data byte equal to FE and FE preambles of a following frame
    frame = Frame(h("01 00 00 00 00 00"), 0x91, h("00 00 01 00 CB 00 00 00"))
    raw = encode_frame(frame)
    assert h("FE") in raw  # CB + 33 = FE
    dec = FrameDecoder()
    dec.feed(h("FE FE") + raw + h("FE FE FE FE") + raw)
    frames, _ = _drain(dec)
    assert [f.data for f in frames] == [frame.data, frame.data]
    assert [f.preamble for f in frames] == [2, 4]


def test_stream_iteration() -> None:
    dec = FrameDecoder()
    dec.feed(h(GOOD) + h(GOOD)[:4])
    assert len(list(dec)) == 1
    assert dec.buffered == h(GOOD)[:4]


@pytest.mark.parametrize(
    "frame",
    [
        Frame(b"\x00" * 5, 0x11),
        Frame(b"\x00" * 6, 0x100),
        Frame(b"\x00" * 6, 0x11, b"\x00" * 256),
        Frame(b"\x00" * 6, 0x11, b"", -1),
    ],
)
def test_encode_refuses_bad_frames(frame: Frame) -> None:
    with pytest.raises(EncodeError):
        encode_frame(frame)
