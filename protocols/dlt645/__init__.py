"""DL/T 645-2007 and DL/T 645-1997 codec (sans-I/O).

Frame layout (both editions; widths in bytes)::

    [FE]*k | 68 | A0..A5 | 68 | C | L | DATA (each byte +0x33) | CS | 16
     0..n     1     6      1    1   1           L                 1    1

CS is the sum modulo 256 from the first ``68`` to the last DATA byte. Frames are cut by the
length byte, never by searching for ``16``.

Layers and public API
---------------------
Frames (edition-independent)::

    Frame(address: bytes, control: int, data: bytes = b"", preamble: int = 0)
        .is_response .abnormal .follow_up .function .address_text
    encode_frame(frame: Frame) -> bytes
    decode_frame(data: bytes) -> Frame                 # exactly one frame, else FrameError
    decode_frame_prefix(data: bytes) -> tuple[Frame, int]   # frame + bytes consumed
    FrameDecoder().feed(data: bytes); .next_frame() -> Frame | NEED_DATA
        .discarded (garbage bytes skipped), .errors, .buffered (unconsumed tail),
        .clear() -> int (drop a half frame after a transport timeout)
    NEED_DATA
    parse_address(text: str | bytes) -> bytes          # "000102030425" -> 25 04 03 02 01 00
    format_address(address: bytes) -> str
    checksum(data: bytes) -> int; scramble(data) / unscramble(data)   # the 0x33 offset

Messages (one edition each; ``version`` is a field of every message)::

    decode_message(frame, version=Version.V2007) -> tuple[Message, tuple[str, ...]]
    encode_message(message, *, preamble=0) -> Frame
    pack(message, *, preamble=0) -> bytes              # encode_frame(encode_message(...))
    detect_version(frame) -> Version                   # heuristic, see its docstring

    requests:  ReadRequest(address, di, blocks=None, start=None)
               ReadFollowUpRequest(address, di, seq=None)
               RereadRequest(address)                                   # 1997 03
               ReadAddressRequest(address="AAAAAAAAAAAA")
               WriteRequest(address, di, data, level=2, password=0, operator=0)
               WriteAddressRequest(new_address, address="AAAAAAAAAAAA")
               TimeSyncRequest(time, address="999999999999")
               FreezeRequest(address, minute=99, hour=99, day=99, month=99)
               ChangeBaudRequest(address, code)          # .bps; BAUD_BYTES[9600] -> code
               ChangePasswordRequest(address, di, old_level, old_password, new_level,
                                     new_password)
               ClearRequest(address, function, level=2, password=0, operator=0, event_di=None)
               RemoteControlRequest(address, command, deadline, level=2, password=0,
                                    operator=0, reserved=0)
               SecuredRemoteControlRequest(address, ciphertext, level=0x98, password=0,
                                           operator=0)
    replies:   ReadResponse(address, di, data, more=False, seq=None, follow_up_reply=False,
                            reread=False)
                   ReadResponse.from_values(address, di, values, *, more, seq, version)
                   .values() -> (values, warnings)
               ReadAddressResponse(address)
               ChangeBaudResponse(address, code)
               ChangePasswordResponse(address, level, password)
               Ack(address, function)                    # 94/95/96/99/9A/9B/9C with L=0
               AbnormalResponse(address, function, error)   # .error_bits
               UnknownMessage(address, control, data)
    Every class also takes ``version: Version`` (keyword or last positional).

Data identifiers (registry of formats, scales, signs, units)::

    lookup(di: int, version=Version.V2007) -> DataItem | None
    decode_values(di, data, version=...) -> tuple[tuple[DataValue, ...], tuple[str, ...]]
    encode_values(di, values, version=...) -> bytes
    DataValue(name, value, unit)
    DataItem(di, description, fields, variable, special, group)   # .size
    Field(name, kind, size, decimals, signed, unit); FieldKind
    decode_field(field, raw) -> (value, warning); encode_field(field, value) -> bytes
    decode_status_word_3(word) -> RelayStatus(word, relay_open, relay_trip_commanded,
                                              pre_trip_alarm, protect_active)

Codes: ``Version`` (V2007, V1997), ``Function2007``, ``Function1997``, ``Kind`` (the ``function``
vocabulary of decode JSON), ``KIND_2007``/``KIND_1997``, ``RemoteCommand`` (TRIP 1A,
CLOSE_ALLOWED 1B, CLOSE 1C, ALARM 2A, ALARM_RELEASE 2B, PROTECT 3A, PROTECT_RELEASE 3B),
``REMOTE_COMMAND_NAMES`` (N1 -> "trip", "close_allowed" ...),
``error_bit_names(error, version)``, ``error_word(names, version)``, ``BAUD_CODES`` (Z -> bps),
``BAUD_BYTES`` (bps -> Z), ``WILDCARD_ADDRESS``, ``BROADCAST_ADDRESS``.

Errors: ``DLT645Error`` > ``FrameError(reason: FrameFault, data: bytes)`` for frame faults,
``EncodeError(value)`` for values that cannot be sent. ``FrameFault`` values (also the
``reason`` strings of ``meterhub decode``): ``no_start``, ``bad_second_start``,
``bad_length``, ``bad_checksum``, ``bad_end``, ``truncated``, ``trailing_bytes``, ``bad_hex``.
Content faults never raise: decoders return raw bytes and warning strings.

Values: numbers are ``int`` (no decimals) or ``float``; FF filler is ``None``; digit strings,
ASCII, dates (``"2026-11-23"``), times (``"08:00:00"``) and date-times
(``"2026-11-23 00:00"``, ``"... 00:00:05"``) are ``str``; status words are ``int`` (word 3
adds ``relay_open``, ``relay_trip_commanded``, ``pre_trip_alarm``, ``protect_active`` flags).
Encoders take the same types (and ``datetime``/``date``/``time`` objects).

Example (a meter simulator answering a read)::

    decoder = FrameDecoder()
    decoder.feed(received)
    frame = decoder.next_frame()
    if frame is not NEED_DATA:
        request, warnings = decode_message(frame)
        if isinstance(request, ReadRequest) and request.di == 0x00010000:
            reply = ReadResponse.from_values(request.address, request.di, [1234.56])
        else:
            reply = AbnormalResponse(request.address, frame.function,
                                     error_word(["no_requested_data"], Version.V2007))
        wire = pack(reply, preamble=4)
"""

from __future__ import annotations

from ._codes import (
    BAUD_BYTES,
    BAUD_CODES,
    KIND_1997,
    KIND_2007,
    REMOTE_COMMAND_NAMES,
    Function1997,
    Function2007,
    Kind,
    RemoteCommand,
    Version,
    error_bit_names,
    error_word,
)
from ._data import (
    RAW_NAME,
    RelayStatus,
    decode_status_word_3,
    decode_values,
    encode_values,
)
from ._errors import DLT645Error, EncodeError, FrameError, FrameFault
from ._frame import (
    NEED_DATA,
    Frame,
    FrameDecoder,
    checksum,
    decode_frame,
    decode_frame_prefix,
    encode_frame,
    format_address,
    parse_address,
    scramble,
    unscramble,
)
from ._messages import (
    BROADCAST_ADDRESS,
    WILDCARD_ADDRESS,
    AbnormalResponse,
    Ack,
    ChangeBaudRequest,
    ChangeBaudResponse,
    ChangePasswordRequest,
    ChangePasswordResponse,
    ClearRequest,
    FreezeRequest,
    Message,
    ReadAddressRequest,
    ReadAddressResponse,
    ReadFollowUpRequest,
    ReadRequest,
    ReadResponse,
    RemoteControlRequest,
    RereadRequest,
    SecuredRemoteControlRequest,
    TimeSyncRequest,
    UnknownMessage,
    WriteAddressRequest,
    WriteRequest,
    decode_message,
    detect_version,
    encode_message,
)
from ._registry import DataItem, lookup
from ._values import DataValue, Field, FieldKind, decode_field, encode_field


def pack(message: Message, *, preamble: int = 0) -> bytes:
    """Encode a message straight to wire bytes.

    Args:
        message: Any message.
        preamble: ``FE`` bytes before the frame (masters send 4).

    Returns:
        The frame bytes.

    Raises:
        EncodeError: The message cannot be encoded.
    """
    return encode_frame(encode_message(message, preamble=preamble))


__all__ = [
    "BAUD_BYTES",
    "BAUD_CODES",
    "BROADCAST_ADDRESS",
    "KIND_1997",
    "KIND_2007",
    "NEED_DATA",
    "RAW_NAME",
    "REMOTE_COMMAND_NAMES",
    "WILDCARD_ADDRESS",
    "AbnormalResponse",
    "Ack",
    "ChangeBaudRequest",
    "ChangeBaudResponse",
    "ChangePasswordRequest",
    "ChangePasswordResponse",
    "ClearRequest",
    "DLT645Error",
    "DataItem",
    "DataValue",
    "EncodeError",
    "Field",
    "FieldKind",
    "Frame",
    "FrameDecoder",
    "FrameError",
    "FrameFault",
    "FreezeRequest",
    "Function1997",
    "Function2007",
    "Kind",
    "Message",
    "ReadAddressRequest",
    "ReadAddressResponse",
    "ReadFollowUpRequest",
    "ReadRequest",
    "ReadResponse",
    "RelayStatus",
    "RemoteCommand",
    "RemoteControlRequest",
    "RereadRequest",
    "SecuredRemoteControlRequest",
    "TimeSyncRequest",
    "UnknownMessage",
    "Version",
    "WriteAddressRequest",
    "WriteRequest",
    "checksum",
    "decode_field",
    "decode_frame",
    "decode_frame_prefix",
    "decode_message",
    "decode_status_word_3",
    "decode_values",
    "detect_version",
    "encode_field",
    "encode_frame",
    "encode_message",
    "encode_values",
    "error_bit_names",
    "error_word",
    "format_address",
    "lookup",
    "pack",
    "parse_address",
    "scramble",
    "unscramble",
]
