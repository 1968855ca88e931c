"""Property tests: every request and reply type round-trips; decoders never raise foreign errors."""

from __future__ import annotations

import datetime as dt

from dlt645_cases import PUBLISHED, h
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.dlt645 import (
    NEED_DATA,
    AbnormalResponse,
    Ack,
    ChangeBaudRequest,
    ChangeBaudResponse,
    ChangePasswordRequest,
    ChangePasswordResponse,
    ClearRequest,
    DLT645Error,
    Frame,
    FrameDecoder,
    FrameError,
    FreezeRequest,
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
    RereadRequest,
    SecuredRemoteControlRequest,
    TimeSyncRequest,
    Version,
    WriteAddressRequest,
    WriteRequest,
    decode_frame,
    decode_frame_prefix,
    decode_message,
    decode_values,
    encode_frame,
    encode_values,
    lookup,
    pack,
)
from protocols.explain import explain

V7, V97 = Version.V2007, Version.V1997

addresses = st.text(alphabet="0123456789A", min_size=12, max_size=12)
u8 = st.integers(0, 0xFF)
u24 = st.integers(0, 0xFFFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
di7 = u32
di97 = st.integers(0, 0xFFFF)
moments = st.datetimes(dt.datetime(2000, 1, 1), dt.datetime(2099, 12, 31, 23, 59, 59))
seconds = moments.map(lambda d: d.strftime("%Y-%m-%d %H:%M:%S"))
minutes = moments.map(lambda d: d.strftime("%Y-%m-%d %H:%M"))


def data(max_size: int) -> st.SearchStrategy[bytes]:
    return st.binary(max_size=max_size)


messages_2007: st.SearchStrategy[Message] = st.one_of(
    st.builds(ReadRequest, addresses, di7),
    st.builds(ReadRequest, addresses, di7, st.integers(0, 99)),
    st.builds(ReadRequest, addresses, di7, st.integers(0, 99), minutes),
    st.builds(ReadFollowUpRequest, addresses, di7, u8),
    st.builds(ReadAddressRequest, addresses),
    st.builds(WriteRequest, addresses, di7, data(243), u8, u24, u32),
    st.builds(WriteAddressRequest, addresses, addresses),
    st.builds(TimeSyncRequest, seconds, addresses),
    st.builds(FreezeRequest, addresses, *[st.integers(0, 99)] * 4),
    st.builds(ChangeBaudRequest, addresses, u8),
    st.builds(ChangePasswordRequest, addresses, u32, u8, u24, u8, u24),
    st.builds(ClearRequest, addresses,
              st.sampled_from([Function2007.CLEAR_DEMAND, Function2007.CLEAR_METER]), u8, u24,
              u32),
    st.builds(ClearRequest, addresses, st.just(Function2007.CLEAR_EVENTS), u8, u24, u32, u32),
    st.builds(RemoteControlRequest, addresses, u8, seconds, u8, u24, u32, u8),
    st.builds(SecuredRemoteControlRequest, addresses, st.binary(min_size=20, max_size=20), u8,
              u24, u32),
    st.builds(ReadResponse, addresses, di7, data(251), st.booleans()),
    st.builds(lambda a, d, b, m, s: ReadResponse(a, d, b, m, s, True),
              addresses, di7, data(250), st.booleans(), u8),
    st.builds(ReadAddressResponse, addresses),
    st.builds(ChangeBaudResponse, addresses, u8),
    st.builds(ChangePasswordResponse, addresses, u8, u24),
    st.builds(Ack, addresses, st.sampled_from([0x08, 0x14, 0x15, 0x16, 0x19, 0x1A, 0x1B, 0x1C])),
    st.builds(AbnormalResponse, addresses, st.integers(0, 0x1F), u8),
)

messages_1997: st.SearchStrategy[Message] = st.one_of(
    st.builds(ReadRequest, addresses, di97, version=st.just(V97)),
    st.builds(ReadFollowUpRequest, addresses, di97, version=st.just(V97)),
    st.builds(RereadRequest, addresses),
    st.builds(WriteRequest, addresses, di97, data(249), u8, u24, st.none(), st.just(V97)),
    st.builds(WriteAddressRequest, addresses, addresses, st.just(V97)),
    st.builds(TimeSyncRequest, seconds, addresses, st.just(V97)),
    st.builds(ChangeBaudRequest, addresses, u8, st.just(V97)),
    st.builds(ChangePasswordRequest, addresses, st.none(), u8, u24, u8, u24, st.just(V97)),
    st.builds(ClearRequest, addresses, st.just(Function1997.CLEAR_DEMAND), u8, u24, st.none(),
              st.none(), st.just(V97)),
    st.builds(lambda a, d, b, m, f: ReadResponse(a, d, b, m, None, f, False, V97),
              addresses, di97, data(253), st.booleans(), st.booleans()),
    st.builds(lambda a, d, b, m: ReadResponse(a, d, b, m, reread=True, version=V97),
              addresses, di97, data(253), st.booleans()),
    st.builds(ChangeBaudResponse, addresses, u8, st.just(V97)),
    st.builds(ChangePasswordResponse, addresses, u8, u24, st.just(V97)),
    st.builds(Ack, addresses, st.sampled_from([0x04, 0x08, 0x0A, 0x10]), st.just(V97)),
    st.builds(AbnormalResponse, addresses, st.integers(0, 0x1F), u8, st.just(V97)),
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(messages_2007, messages_1997), st.integers(0, 8))
def test_every_message_round_trips(message: Message, preamble: int) -> None:
    wire = pack(message, preamble=preamble)
    frame = decode_frame(wire)
    assert frame.preamble == preamble
    decoded, warnings = decode_message(frame, message.version)
    assert decoded == message
    # only content oddities may warn: undefined baud bytes, commands, DIs, dates
    for w in warnings:
        assert any(k in w for k in ("baud", "command", "04000C0x", "deadline", "time")), w


@settings(deadline=None)
@given(st.sampled_from([RemoteCommand.TRIP, RemoteCommand.CLOSE, RemoteCommand.PROTECT]),
       seconds)
def test_defined_remote_commands_decode_without_warning(command: int, deadline: str) -> None:
    msg = RemoteControlRequest("000000000001", command, deadline)
    assert decode_message(decode_frame(pack(msg, preamble=4))) == (msg, ())


# value-level round trips: typed values -> bytes -> the same values -------------------------
_DIS_2007 = [0x00010000, 0x0001FF00, 0x00000000, 0x02010100, 0x0201FF00, 0x02020100,
             0x0202FF00, 0x02030000, 0x0203FF00, 0x02060000, 0x02800002, 0x02800007,
             0x04000101, 0x04000102, 0x04000401, 0x04000404, 0x04000503, 0x040005FF,
             0x05060001, 0x05060101, 0x00900200, 0x03110000, 0x03110001, 0x03300D01,
             0x1D000001, 0x01010000, 0x0101FF00]
_DIS_1997 = [0x9010, 0x901F, 0xB611, 0xB61F, 0xB621, 0xB630, 0xB650, 0xC010, 0xC011, 0xC032]


@st.composite
def typed_values(draw: st.DrawFn) -> tuple[int, Version, list[object]]:
    version = draw(st.sampled_from([V7, V97]))
    di = draw(st.sampled_from(_DIS_2007 if version is V7 else _DIS_1997))
    item = lookup(di, version)
    assert item is not None
    fields = item.fields
    if item.variable:
        groups = draw(st.integers(1, min(len(fields), 8) // item.group))
        fields = fields[: groups * item.group]
    # encode raw random bytes that are valid for each field, then decode them to typed values
    from protocols.dlt645 import FieldKind

    raw = b""
    for f in fields:
        if f.kind in (FieldKind.WORD, FieldKind.HEX):
            raw += draw(st.binary(min_size=f.size, max_size=f.size))
        elif f.kind is FieldKind.ASCII:
            text = draw(st.text(alphabet="0123456789.AVkW", max_size=f.size))
            raw += text.encode().rjust(f.size, b"\x00")[::-1]
        elif f.kind is FieldKind.NUMBER:
            digits = draw(st.text(alphabet="0123456789", min_size=2 * f.size,
                                  max_size=2 * f.size))
            b = bytes.fromhex(digits)[::-1]
            if f.signed and draw(st.booleans()):
                b = b[:-1] + bytes((b[-1] % 0x80 | 0x80,))
            raw += b
        elif f.kind is FieldKind.DIGITS:
            raw += bytes.fromhex(draw(st.text(alphabet="0123456789", min_size=12,
                                              max_size=12)))
        else:
            moment = draw(moments)
            from protocols.dlt645 import encode_field

            raw += encode_field(f, moment if f.kind is not FieldKind.TIME else moment.time())
    values, warnings = decode_values(di, raw, version)
    assert warnings == ()
    names = {f.name for f in fields}
    return di, version, [v.value for v in values if v.name in names]


@settings(deadline=None)
@given(typed_values())
def test_values_round_trip(case: tuple[int, Version, list[object]]) -> None:
    di, version, values = case
    raw = encode_values(di, values, version)
    decoded, warnings = decode_values(di, raw, version)
    assert warnings == ()
    item = lookup(di, version)
    assert item is not None
    names = {f.name for f in item.fields}
    assert [v.value for v in decoded if v.name in names] == values


# robustness: nothing but our own errors, whatever the input --------------------------------
@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_decode_frame_random_bytes(raw: bytes) -> None:
    try:
        frame = decode_frame(raw)
    except FrameError as exc:
        assert exc.reason is not None
        return
    assert encode_frame(frame) == raw


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    raw = bytearray(h(draw(st.sampled_from(PUBLISHED))[1]))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        i = draw(st.integers(0, max(len(raw) - 1, 0)))
        if op == "flip" and raw:
            raw[i] ^= draw(st.integers(1, 255))
        elif op == "insert":
            raw.insert(i, draw(u8))
        elif op == "delete" and raw:
            del raw[i]
        elif op == "truncate":
            del raw[i:]
    return bytes(raw)


@settings(max_examples=800, deadline=None)
@given(mutated())
def test_mutated_frames_never_raise_foreign_errors(raw: bytes) -> None:
    try:
        frame, _ = decode_frame_prefix(raw)
    except FrameError:
        pass
    else:
        for version in (V7, V97):
            message, warnings = decode_message(frame, version)
            assert message.version is version
            assert all(isinstance(w, str) for w in warnings)
            if isinstance(message, ReadResponse):
                message.values()
    obj, code = explain(raw.hex(), "auto")
    assert (code == 2) == ("error" in obj)
    if code == 0:
        assert set(obj) == {"protocol", "address", "control", "direction", "abnormal",
                            "follow_up", "function", "di", "values", "fields", "error_bits",
                            "warnings"}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=40), mutated(),
                          st.sampled_from([h(w) for _, w in PUBLISHED])), max_size=8),
       st.integers(1, 64))
def test_stream_decoder_random_chunks(parts: list[bytes], chunk: int) -> None:
    stream = b"".join(parts)
    dec = FrameDecoder()
    frames: list[Frame] = []
    for i in range(0, len(stream), chunk):
        dec.feed(stream[i : i + chunk])
        while True:
            try:
                got = dec.next_frame()
            except FrameError:
                continue
            except DLT645Error as exc:  # pragma: no cover - would be a bug
                raise AssertionError(exc) from exc
            if got is NEED_DATA:
                break
            assert isinstance(got, Frame)
            frames.append(got)
    used = sum(len(encode_frame(f)) for f in frames)
    assert used + dec.discarded + len(dec.buffered) == len(stream)
    assert len(dec.buffered) <= 12 + 255


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 0xFFFFFFFF), st.binary(max_size=60), st.sampled_from([V7, V97]))
def test_decode_values_never_raises(di: int, raw: bytes, version: Version) -> None:
    if version is V97:
        di &= 0xFFFF
    values, warnings = decode_values(di, raw, version)
    assert values and all(isinstance(w, str) for w in warnings)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_DIS_2007), st.binary(max_size=60))
def test_known_dis_with_random_bytes(di: int, raw: bytes) -> None:
    values, warnings = decode_values(di, raw)
    assert values
    assert all(isinstance(w, str) for w in warnings)
