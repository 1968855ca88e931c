"""Published DL/T 645 frames shared by the DL/T 645 tests, and the R6 test helpers.

Every frame's checksum was recomputed by hand-written code independent of the codec (sum of the
bytes from the first 68 to the last data byte) before it was put here. Sources:

* [S1] m.icode9.com/content-4-712469.html, "DL645通信协议97/07规约(附上下行例子)"
  (protocols.md §12).
* [WS] code-search index file 40880446552: a Java DL/T 645-2007 parser's test log
  (addresses 000000000161; energy, voltage, current, power, power-factor replies).
* [CL] code-search index file 17039352107: a Node.js 376.1 concentrator handler with logged
  645 trip/close/status frames inside AFN=10 F1 (cited in protocols.md §8.4).
* [CS] code-search index file 70837828970: a C# Dlt645.Core test suite (FrameCodecTests).
* [KT] KTS-Intek/DLT645:test-exchange-dlt645-97.log (real 1997 meter exchanges).
* [HY] manualshive.com Heyuan ASDU-LS manual p.18 (1997 B611 read, worked example).
* [GO] code-search index file 14975011456: a Go DL/T 645 parser test (real meter replies).
* [RA] code-search index files 48358296744 (Delphi 645 parser, read-address reply) and
  39772389129 (C RS-485 reader, read-address reply).
* [YK] code-search index file 47454965745 (C++ DL645 remote-control sender comment).
* [SR] code-search index file 48185737871 (Qt meter reader debug capture, 04000102 reply).
* [CH] code-search index file 5041269978 (RT-Thread 485 reader, 1997 9010 reply).
* [TM] issasohail/tms:raw_frames.log (real 4G prepaid-meter captures; the address contains
  byte 16, protocols.md §2).
* [BT] code-search index file 39298352736 (a concentrator's DL/T 645-2007 read-frame builder,
  broadcast and addressed time-sync examples).
* [DF] code-search index file 21586523439 (376.2 carrier router code forwarding a 05060101
  daily-freeze read).
"""

from __future__ import annotations

from protocols.dlt645 import NEED_DATA, Frame, FrameDecoder, FrameError, FrameFault


def h(text: str) -> bytes:
    """Hex text with spaces to bytes."""
    return bytes.fromhex(text)


# (source, hex) of every published frame used by the tests --------------------------------
PUBLISHED: list[tuple[str, str]] = [
    ("S1", "68 25 04 03 02 01 00 68 11 04 33 33 34 33 E1 16"),
    ("S1", "68 25 04 03 02 01 00 68 91 08 33 33 34 33 75 39 45 33 8B 16"),
    ("S1", "FE FE FE 68 AA AA AA AA AA AA 68 13 00 DF 16"),
    ("WS", "68 61 01 00 00 00 00 68 11 04 33 33 34 33 14 16"),
    ("WS", "68 61 01 00 00 00 00 68 91 08 33 33 34 33 59 33 33 33 8A 16"),
    ("WS", "68 61 01 00 00 00 00 68 11 04 33 34 34 35 17 16"),
    ("WS", "68 61 01 00 00 00 00 68 91 06 33 34 34 35 34 43 10 16"),
    ("WS", "68 61 01 00 00 00 00 68 91 07 33 34 35 35 CC 7C 33 16 16"),
    ("WS", "68 61 01 00 00 00 00 68 91 07 33 33 36 35 45 58 33 6B 16"),
    ("WS", "68 61 01 00 00 00 00 68 91 07 33 33 37 35 64 76 33 A9 16"),
    ("WS", "68 61 01 00 00 00 00 68 91 07 33 33 38 35 39 83 33 8C 16"),
    ("WS", "68 61 01 00 00 00 00 68 91 06 33 33 39 35 34 38 09 16"),
    ("CL", "68 61 10 01 30 12 15 68 1C 10 35 6A 39 35 34 33 33 33 4D 33 33 33 33 63 45 CC 2C 16"),
    ("CL", "68 61 10 01 30 12 15 68 1C 10 35 6A 39 35 34 33 33 33 4E 33 33 33 33 63 45 CC 2D 16"),
    ("CL", "68 61 10 01 30 12 15 68 9C 00 35 16"),
    ("CL", "68 61 10 01 30 12 15 68 11 04 36 38 33 37 86 16"),
    ("CL", "68 61 10 01 30 12 15 68 91 06 36 38 33 37 83 33 BE 16"),
    ("CL", "68 61 10 01 30 12 15 68 91 06 36 38 33 37 33 33 6E 16"),
    ("CL", "68 61 10 01 30 12 15 68 91 08 33 33 34 33 AB 39 33 33 49 16"),
    ("CS", "68 12 90 78 56 34 12 68 D1 01 35 8D 16"),
    ("CS", "68 12 90 78 56 34 12 68 12 05 34 33 63 36 34 D1 16"),
    ("CS", "FE FE FE FE FE FE FE 68 12 90 78 56 34 12 68 93 06 45 C3 AB 89 67 45 07 16"),
    ("CS", "68 12 90 78 56 34 12 68 91 08 33 33 34 33 89 67 45 33 54 16"),
    ("CS", "FE FE FE FE 68 AA AA AA AA AA AA 68 11 04 33 33 34 33 AE 16"),
    ("KT", "68 99 99 99 99 99 99 68 01 02 43 C3 6F 16"),
    ("KT", "68 95 32 06 00 00 00 68 81 06 43 C3 48 33 33 33 0B 16"),
    ("KT", "68 95 32 06 00 00 00 68 C1 01 35 94 16"),
    ("KT", "FE FE FE FE 68 34 69 17 08 17 20 68 81 06 43 F3 39 39 3A 4C 78 16"),
    ("KT", "68 95 32 06 00 00 00 68 81 06 43 C4 33 33 33 33 F7 16"),
    ("KT", "68 95 32 06 00 00 00 68 81 16 52 C3 6C 33 33 33 33 33 33 33 36 33 33 33 57 33 33 33"
           " 45 33 33 33 B7 16"),
    ("KT", "FE FE FE FE 68 34 69 17 08 17 20 68 81 08 65 F3 67 9C 4A 3B 4A 53 C9 16"),
    ("KT", "FE FE FE FE 68 34 69 17 08 17 20 68 81 05 44 F3 37 55 55 61 16"),
    ("KT", "FE FE FE FE 68 34 69 17 08 17 20 68 C4 01 34 BC 16"),
    ("HY", "68 03 00 00 00 00 00 68 01 02 44 E9 03 16"),
    ("HY", "68 03 00 00 00 00 00 68 81 04 44 E9 33 34 EC 16"),
    ("YK", "68 06 10 24 05 19 20 68 1C 10 35 33 33 33 33 33 33 33 4D 33 33 33 33 33 33 33 C0 16"),
    ("GO", "FE FE FE FE 68 60 07 92 04 00 91 68 D1 01 37 67 16"),
    ("GO", "FE FE 68 72 00 32 09 17 20 68 91 08 33 33 34 33 B9 34 33 33 6D 16"),
    ("RA", "68 01 00 00 00 00 00 68 93 06 34 33 33 33 33 33 9D 16"),
    ("RA", "FE FE FE FE 68 94 41 03 26 12 18 68 93 06 C7 74 36 59 45 4B EB 16"),
    ("SR", "FE FE FE FE 68 18 55 60 06 00 00 68 91 07 35 34 33 37 65 86 4B 44 16"),
    ("CH", "68 43 97 35 14 00 00 68 81 06 43 C3 7B 96 57 33 1B 16"),
    ("TM", "68 16 00 51 19 06 25 68 91 04 B3 B3 B3 B3 DC 16"),
    ("TM", "68 16 00 51 19 06 25 68 91 45 32 44 B3 35 33 33 33 33 33 33 33 33 6C 55 33 33 33"
           " 33 35 3C 33 33 33 33 33 33 33 B9 4A 33 B9 4A 33 33 33 33 33 33 33 33 3C 33 3C 33"
           " 33 33 33 46 43 33 33 46 43 33 33 33 33 33 33 33 33 33 33 33 33 33 33 33 33 9A 16"),
    ("BT", "68 99 99 99 99 99 99 68 08 06 84 55 43 38 39 4A 4B 16"),
    ("BT", "68 11 11 11 11 11 11 68 08 06 58 73 43 38 39 4A 0D 16"),
    ("DF", "68 07 07 00 00 34 12 68 11 04 34 34 39 38 12 16"),
]


def feed_three_ways(raw: bytes) -> Frame:
    """R6: decode ``raw`` whole, byte by byte, and followed by trailing bytes.

    Returns:
        The frame (the same all three ways).
    """
    whole = FrameDecoder()
    whole.feed(raw)
    frame = whole.next_frame()
    assert isinstance(frame, Frame)
    assert whole.next_frame() is NEED_DATA
    assert whole.buffered == b"" and whole.discarded == 0

    slow = FrameDecoder()
    for i, b in enumerate(raw):
        slow.feed(bytes((b,)))
        got = slow.next_frame()
        if i < len(raw) - 1:
            assert got is NEED_DATA, f"frame completed early at byte {i}"
        else:
            assert got == frame

    tail = b"\x68\x01\x02"
    trailing = FrameDecoder()
    trailing.feed(raw + tail)
    assert trailing.next_frame() == frame
    assert trailing.next_frame() is NEED_DATA
    assert trailing.buffered == tail
    return frame


def assert_fails(raw: bytes, reason: FrameFault) -> FrameError:
    """R6: the whole-frame decoder refuses ``raw`` with ``reason``."""
    from protocols.dlt645 import decode_frame

    try:
        decode_frame(raw)
    except FrameError as exc:
        assert exc.reason is reason, f"expected {reason}, got {exc.reason}: {exc}"
        return exc
    raise AssertionError(f"decode_frame accepted {raw.hex(' ')}")
