"""Typed DL/T 645 messages (requests and replies) and their mapping to and from frames.

A :class:`~protocols.dlt645.Frame` is edition-independent; a message is the meaning of a frame
in one edition. :func:`decode_message` turns a frame into a message plus warnings (it never
raises: frames it cannot interpret become :class:`UnknownMessage`), :func:`encode_message`
turns a message into a frame (raising :class:`~protocols.dlt645.EncodeError` for values that
do not fit).

Request DATA layouts (before the 0x33 offset; 2007 / 1997)::

    read            11: DI(4) [N(1) [mmhhDDMMYY(5)]]     01: DI(2)
    read follow-up  12: DI(4) SEQ(1)                      02: DI(2)
    read address    13: -                                 -
    write           14: DI(4) PA P0P1P2 C0..C3 data       04: DI(2) PA P0P1P2 data
    write address   15: address(6)                        0A: address(6)
    time sync       08: ss mm hh DD MM YY                 08: same
    freeze          16: mm hh DD MM (99 = any)            -
    change baud     17: Z                                 0C: Z
    change password 18: DI(4) PAo P0P1P2 PAn P0P1P2      0F: PAo P0P1P2 PAn P0P1P2
    clear demand    19: PA P0P1P2 C0..C3                  10: PA P0P1P2 [verify]
    clear meter     1A: PA P0P1P2 C0..C3                  -
    clear events    1B: PA P0P1P2 C0..C3 DI(4)            -
    remote control  1C: PA P0P1P2 C0..C3 N1 N2 ssmmhhDDMMYY (16), or with PA=98: 20-byte cipher

Replies: ``DIR`` set; read replies carry DI + data (+ SEQ for 2007 ``92``/``B2``); abnormal
replies carry the error word (1 byte; 2 bytes for the 2007 security service ``C3``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ._codes import (
    BAUD_CODES,
    DIR_BIT,
    ERR_BIT,
    MORE_BIT,
    Function1997,
    Function2007,
    RemoteCommand,
    Version,
    error_bit_names,
)
from ._data import decode_values, encode_values
from ._errors import EncodeError
from ._frame import Frame, format_address, parse_address
from ._values import DataValue, Field, FieldKind, decode_field, encode_field

WILDCARD_ADDRESS = "AAAAAAAAAAAA"
"""Address for ``13`` read-address and ``15`` write-address (only one meter on the bus)."""
BROADCAST_ADDRESS = "999999999999"
"""Broadcast address for ``08`` time sync and broadcast freeze; meters never answer it."""

_TIME6 = Field("time", FieldKind.DATETIME_SEC, 6)
_TIME5 = Field("start", FieldKind.DATETIME_MIN, 5)
_BLOCKS = Field("blocks", FieldKind.NUMBER, 1)


def _di_width(version: Version) -> int:
    return 4 if version is Version.V2007 else 2


def _di_bytes(di: int, version: Version) -> bytes:
    width = _di_width(version)
    if not 0 <= di < 1 << (8 * width):
        raise EncodeError(f"a {version.value} data identifier is {width} bytes", value=di)
    return di.to_bytes(width, "little")


def _pwd(level: int, password: int) -> bytes:
    if not 0 <= level <= 0xFF or not 0 <= password <= 0xFFFFFF:
        raise EncodeError("password level is 1 byte, password 3 bytes", value=(level, password))
    return bytes((level,)) + password.to_bytes(3, "little")


def _op(operator: int | None) -> bytes:
    if operator is None or not 0 <= operator <= 0xFFFFFFFF:
        raise EncodeError("operator code is 4 bytes", value=operator)
    return operator.to_bytes(4, "little")


def _addr(text: str) -> bytes:
    return parse_address(text)


# --- requests --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ReadRequest:
    """Read data (2007 ``11``, 1997 ``01``); load-record reads add a block count and start.

    Attributes:
        address: Meter address as printed.
        di: Data identifier as in the standard.
        blocks: Number of load-record blocks requested (2007 only), or None.
        start: Load-record start ``"YYYY-MM-DD hh:mm"`` (needs ``blocks``), or None.
        version: Edition.
    """

    address: str
    di: int
    blocks: int | None = None
    start: str | None = None
    version: Version = Version.V2007


@dataclass(frozen=True, slots=True)
class ReadFollowUpRequest:
    """Read follow-up data (2007 ``12`` with SEQ; 1997 ``02`` without).

    Attributes:
        address: Meter address.
        di: Data identifier.
        seq: Frame sequence number (2007; starts at 1), None for 1997.
        version: Edition.
    """

    address: str
    di: int
    seq: int | None = None
    version: Version = Version.V2007


@dataclass(frozen=True, slots=True)
class RereadRequest:
    """1997 ``03``: repeat the last reply."""

    address: str
    version: Version = Version.V1997


@dataclass(frozen=True, slots=True)
class ReadAddressRequest:
    """2007 ``13``: read the communication address (sent to the wildcard address)."""

    address: str = WILDCARD_ADDRESS
    version: Version = Version.V2007


@dataclass(frozen=True, slots=True)
class WriteRequest:
    """Write data (2007 ``14``, 1997 ``04``).

    Attributes:
        address: Meter address.
        di: Data identifier.
        data: The value bytes (0x33 offset not applied); see :func:`encode_values`.
        level: Password privilege level PA.
        password: P0..P2 as an integer (``0x123456`` is sent ``56 34 12``).
        operator: Operator code C0..C3 as an integer (2007); None for 1997.
        version: Edition.
    """

    address: str
    di: int
    data: bytes
    level: int = 2
    password: int = 0
    operator: int | None = 0
    version: Version = Version.V2007


@dataclass(frozen=True, slots=True)
class WriteAddressRequest:
    """Write the communication address (2007 ``15``, 1997 ``0A``)."""

    new_address: str
    address: str = WILDCARD_ADDRESS
    version: Version = Version.V2007


@dataclass(frozen=True, slots=True)
class TimeSyncRequest:
    """Broadcast time sync ``08``.

    Attributes:
        time: ``"YYYY-MM-DD hh:mm:ss"``.
        address: Normally the broadcast address.
        version: Edition.
    """

    time: str
    address: str = BROADCAST_ADDRESS
    version: Version = Version.V2007


@dataclass(frozen=True, slots=True)
class FreezeRequest:
    """2007 ``16`` freeze; each part is 0..59/23/31/12, or 99 for "any".

    Attributes:
        address: Meter address (or broadcast).
        minute: Minute pattern.
        hour: Hour pattern.
        day: Day pattern.
        month: Month pattern.
        version: Edition.
    """

    address: str
    minute: int = 99
    hour: int = 99
    day: int = 99
    month: int = 99
    version: Version = Version.V2007


@dataclass(frozen=True, slots=True)
class ChangeBaudRequest:
    """Change the baud rate (2007 ``17``, 1997 ``0C``).

    Attributes:
        address: Meter address.
        code: The Z byte (``0x08`` = 2400 bps); see :attr:`bps`.
        version: Edition.
    """

    address: str
    code: int
    version: Version = Version.V2007

    @property
    def bps(self) -> int | None:
        """Bits per second, or None for a Z byte the standard does not define."""
        return BAUD_CODES.get(self.code)


@dataclass(frozen=True, slots=True)
class ChangePasswordRequest:
    """Change a password (2007 ``18`` with DI ``04000C0x``, 1997 ``0F`` without DI)."""

    address: str
    di: int | None
    old_level: int
    old_password: int
    new_level: int
    new_password: int
    version: Version = Version.V2007


@dataclass(frozen=True, slots=True)
class ClearRequest:
    """Clear demand (``19``/1997 ``10``), meter (``1A``) or events (``1B``).

    Attributes:
        address: Meter address.
        function: The function code (e.g. ``Function2007.CLEAR_EVENTS``).
        level: Password level PA.
        password: P0..P2.
        operator: Operator code (2007), None for 1997.
        event_di: Events to clear for ``1B`` (``0xFFFFFFFF`` = all), else None.
        version: Edition.
    """

    address: str
    function: int
    level: int = 2
    password: int = 0
    operator: int | None = 0
    event_di: int | None = None
    version: Version = Version.V2007


@dataclass(frozen=True, slots=True)
class RemoteControlRequest:
    """2007 ``1C`` plaintext remote control (trip, close, alarm, 保电).

    Attributes:
        address: Meter address.
        command: N1, a :class:`RemoteCommand` value (others decode with a warning).
        deadline: Validity deadline ``"YYYY-MM-DD hh:mm:ss"``.
        level: Password level PA (commonly 2 or 4).
        password: P0..P2.
        operator: Operator code C0..C3.
        reserved: N2 (normally 0).
        version: Edition (2007 only).
    """

    address: str
    command: int
    deadline: str
    level: int = 2
    password: int = 0
    operator: int = 0
    reserved: int = 0
    version: Version = Version.V2007


@dataclass(frozen=True, slots=True)
class SecuredRemoteControlRequest:
    """2007 ``1C`` with ESAM ciphertext (PA = 98, L = 28): opaque 20-byte cipher + MAC."""

    address: str
    ciphertext: bytes
    level: int = 0x98
    password: int = 0
    operator: int = 0
    version: Version = Version.V2007


# --- replies ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ReadResponse:
    """A normal read reply (2007 ``91``/``B1``/``92``/``B2``; 1997 ``81``/``A1``/``82``/``83``).

    Attributes:
        address: Meter address.
        di: Data identifier.
        data: Value bytes (0x33 offset removed), without DI and SEQ.
        more: MORE bit: follow-up frames exist.
        seq: SEQ of a 2007 follow-up reply (``92``/``B2``), else None.
        follow_up_reply: The reply answers a follow-up request (2007: implied by ``seq``).
        reread: 1997 ``83`` (reply to a re-read request).
        version: Edition.
    """

    address: str
    di: int
    data: bytes
    more: bool = False
    seq: int | None = None
    follow_up_reply: bool = False
    reread: bool = False
    version: Version = Version.V2007

    @classmethod
    def from_values(
        cls,
        address: str,
        di: int,
        values: list[object] | tuple[object, ...] | bytes,
        *,
        more: bool = False,
        seq: int | None = None,
        version: Version = Version.V2007,
    ) -> ReadResponse:
        """Build a read reply from typed values (what a meter simulator sends).

        Args:
            address: Meter address.
            di: Data identifier.
            values: Values in the identifier's order (see :func:`encode_values`), or bytes.
            more: Set the MORE bit.
            seq: SEQ for a 2007 follow-up reply.
            version: Edition.

        Returns:
            The reply.

        Raises:
            EncodeError: The values do not fit the identifier.
        """
        data = encode_values(di, values, version)
        return cls(address, di, data, more, seq, seq is not None, False, version)

    def values(self) -> tuple[tuple[DataValue, ...], tuple[str, ...]]:
        """Decode :attr:`data` through the registry: ``(values, warnings)``."""
        return decode_values(self.di, self.data, self.version)


@dataclass(frozen=True, slots=True)
class ReadAddressResponse:
    """2007 ``93``: the meter's address (header and data carry it)."""

    address: str
    version: Version = Version.V2007


@dataclass(frozen=True, slots=True)
class ChangeBaudResponse:
    """``97`` (2007) / ``8C`` (1997): the accepted Z byte."""

    address: str
    code: int
    version: Version = Version.V2007

    @property
    def bps(self) -> int | None:
        """Bits per second, or None for an undefined Z byte."""
        return BAUD_CODES.get(self.code)


@dataclass(frozen=True, slots=True)
class ChangePasswordResponse:
    """``98`` (2007) / ``8F`` (1997): the new password level and password."""

    address: str
    level: int
    password: int
    version: Version = Version.V2007


@dataclass(frozen=True, slots=True)
class Ack:
    """A normal reply without data (``94``, ``95``, ``96``, ``99``, ``9A``, ``9B``, ``9C`` …).

    ``9C`` only acknowledges a remote-control command; it does not prove the relay moved.

    Attributes:
        address: Meter address.
        function: The request's function code.
        version: Edition.
    """

    address: str
    function: int
    version: Version = Version.V2007


@dataclass(frozen=True, slots=True)
class AbnormalResponse:
    """An abnormal reply (ERR bit set): the error word.

    Attributes:
        address: Meter address.
        function: The request's function code.
        error: The error word (0x33 offset removed).
        version: Edition.
    """

    address: str
    function: int
    error: int
    version: Version = Version.V2007

    @property
    def error_bits(self) -> tuple[str, ...]:
        """Names of the set bits (``no_requested_data`` …)."""
        return error_bit_names(self.error, self.version)


@dataclass(frozen=True, slots=True)
class UnknownMessage:
    """A frame this codec does not interpret (security service, vendor codes, odd lengths)."""

    address: str
    control: int
    data: bytes
    version: Version = Version.V2007


Message = (
    ReadRequest
    | ReadFollowUpRequest
    | RereadRequest
    | ReadAddressRequest
    | WriteRequest
    | WriteAddressRequest
    | TimeSyncRequest
    | FreezeRequest
    | ChangeBaudRequest
    | ChangePasswordRequest
    | ClearRequest
    | RemoteControlRequest
    | SecuredRemoteControlRequest
    | ReadResponse
    | ReadAddressResponse
    | ChangeBaudResponse
    | ChangePasswordResponse
    | Ack
    | AbnormalResponse
    | UnknownMessage
)
"""Every message type."""


# --- encoding --------------------------------------------------------------------------------
def _codes(version: Version) -> type[Function2007] | type[Function1997]:
    return Function2007 if version is Version.V2007 else Function1997


def _need_2007(msg: object, version: Version) -> None:
    if version is not Version.V2007:
        raise EncodeError(f"{type(msg).__name__} does not exist in DL/T 645-1997", value=msg)


def _bcd_pattern(value: int, name: str) -> bytes:
    if not 0 <= value <= 99:
        raise EncodeError(f"{name} must be 0..99", value=value)
    return bytes.fromhex(f"{value:02d}")


def _body(msg: Message) -> tuple[int, bytes]:
    """Return ``(control, data)`` for a message."""
    v = msg.version
    f = _codes(v)
    if isinstance(msg, ReadRequest):
        data = _di_bytes(msg.di, v)
        if msg.blocks is not None:
            _need_2007(msg, v)
            data += encode_field(_BLOCKS, msg.blocks)
            if msg.start is not None:
                data += encode_field(_TIME5, msg.start)
        elif msg.start is not None:
            raise EncodeError("a load-record start needs a block count", value=msg)
        return f.READ, data
    if isinstance(msg, ReadFollowUpRequest):
        data = _di_bytes(msg.di, v)
        if v is Version.V2007:
            if msg.seq is None or not 0 <= msg.seq <= 0xFF:
                raise EncodeError("a 2007 follow-up request needs SEQ 0..255", value=msg.seq)
            data += bytes((msg.seq,))
        elif msg.seq is not None:
            raise EncodeError("1997 follow-up requests carry no SEQ", value=msg.seq)
        return f.READ_FOLLOW_UP, data
    if isinstance(msg, RereadRequest):
        if v is not Version.V1997:
            raise EncodeError("re-read (03) exists only in DL/T 645-1997", value=msg)
        return Function1997.REREAD, b""
    if isinstance(msg, ReadAddressRequest):
        _need_2007(msg, v)
        return Function2007.READ_ADDRESS, b""
    if isinstance(msg, WriteRequest):
        data = _di_bytes(msg.di, v) + _pwd(msg.level, msg.password)
        if v is Version.V2007:
            data += _op(msg.operator)
        elif msg.operator is not None:
            raise EncodeError("1997 writes carry no operator code", value=msg.operator)
        return f.WRITE, data + bytes(msg.data)
    if isinstance(msg, WriteAddressRequest):
        return f.WRITE_ADDRESS, _addr(msg.new_address)
    if isinstance(msg, TimeSyncRequest):
        return f.TIME_SYNC, encode_field(_TIME6, msg.time)
    if isinstance(msg, FreezeRequest):
        _need_2007(msg, v)
        data = b"".join(
            _bcd_pattern(x, n)
            for x, n in ((msg.minute, "minute"), (msg.hour, "hour"), (msg.day, "day"),
                         (msg.month, "month"))
        )
        return Function2007.FREEZE, data
    if isinstance(msg, ChangeBaudRequest):
        if not 0 <= msg.code <= 0xFF:
            raise EncodeError("the baud byte is one byte", value=msg.code)
        return f.CHANGE_BAUD, bytes((msg.code,))
    if isinstance(msg, ChangePasswordRequest):
        data = _pwd(msg.old_level, msg.old_password) + _pwd(msg.new_level, msg.new_password)
        if v is Version.V2007:
            if msg.di is None:
                raise EncodeError("a 2007 password change names DI 04000C0x", value=msg)
            data = _di_bytes(msg.di, v) + data
        elif msg.di is not None:
            raise EncodeError("a 1997 password change carries no DI", value=msg.di)
        return f.CHANGE_PASSWORD, data
    if isinstance(msg, ClearRequest):
        data = _pwd(msg.level, msg.password)
        if v is Version.V2007:
            if msg.function not in (Function2007.CLEAR_DEMAND, Function2007.CLEAR_METER,
                                    Function2007.CLEAR_EVENTS):
                raise EncodeError("not a clear function", value=msg.function)
            data += _op(msg.operator)
            if msg.function == Function2007.CLEAR_EVENTS:
                data += _di_bytes(0xFFFFFFFF if msg.event_di is None else msg.event_di, v)
            elif msg.event_di is not None:
                raise EncodeError("only 1B carries an event DI", value=msg.event_di)
        else:
            if msg.function != Function1997.CLEAR_DEMAND or msg.operator is not None \
                    or msg.event_di is not None:
                raise EncodeError("DL/T 645-1997 has only clear demand (10)", value=msg)
        return msg.function, data
    if isinstance(msg, RemoteControlRequest):
        _need_2007(msg, v)
        if not 0 <= msg.command <= 0xFF or not 0 <= msg.reserved <= 0xFF:
            raise EncodeError("N1 and N2 are one byte each", value=msg)
        data = (_pwd(msg.level, msg.password) + _op(msg.operator)
                + bytes((msg.command, msg.reserved)) + encode_field(_TIME6, msg.deadline))
        return Function2007.REMOTE_CONTROL, data
    if isinstance(msg, SecuredRemoteControlRequest):
        _need_2007(msg, v)
        if len(msg.ciphertext) != 20:
            raise EncodeError("the 1C ciphertext + MAC is 20 bytes", value=msg.ciphertext)
        data = _pwd(msg.level, msg.password) + _op(msg.operator) + bytes(msg.ciphertext)
        return Function2007.REMOTE_CONTROL, data
    if isinstance(msg, ReadResponse):
        data = _di_bytes(msg.di, v) + bytes(msg.data)
        more = MORE_BIT if msg.more else 0
        if msg.reread:
            if v is not Version.V1997 or msg.follow_up_reply or msg.seq is not None:
                raise EncodeError("a re-read reply is a plain 1997 reply", value=msg)
            return DIR_BIT | more | Function1997.REREAD, data
        if v is Version.V2007:
            if msg.follow_up_reply != (msg.seq is not None):
                raise EncodeError("2007 follow-up replies carry SEQ, others do not", value=msg)
            if msg.seq is not None:
                if not 0 <= msg.seq <= 0xFF:
                    raise EncodeError("SEQ is one byte", value=msg.seq)
                return DIR_BIT | more | f.READ_FOLLOW_UP, data + bytes((msg.seq,))
            return DIR_BIT | more | f.READ, data
        if msg.seq is not None:
            raise EncodeError("1997 replies carry no SEQ", value=msg.seq)
        return DIR_BIT | more | (f.READ_FOLLOW_UP if msg.follow_up_reply else f.READ), data
    if isinstance(msg, ReadAddressResponse):
        _need_2007(msg, v)
        return DIR_BIT | Function2007.READ_ADDRESS, _addr(msg.address)
    if isinstance(msg, ChangeBaudResponse):
        if not 0 <= msg.code <= 0xFF:
            raise EncodeError("the baud byte is one byte", value=msg.code)
        return DIR_BIT | f.CHANGE_BAUD, bytes((msg.code,))
    if isinstance(msg, ChangePasswordResponse):
        return DIR_BIT | f.CHANGE_PASSWORD, _pwd(msg.level, msg.password)
    if isinstance(msg, Ack):
        if not 0 <= msg.function <= 0x1F:
            raise EncodeError("a function code is 5 bits", value=msg.function)
        return DIR_BIT | msg.function, b""
    if isinstance(msg, AbnormalResponse):
        if not 0 <= msg.function <= 0x1F or not 0 <= msg.error <= 0xFFFF:
            raise EncodeError("function code is 5 bits, error word 1..2 bytes", value=msg)
        width = 2 if msg.error > 0xFF else 1
        return DIR_BIT | ERR_BIT | msg.function, msg.error.to_bytes(width, "little")
    if isinstance(msg, UnknownMessage):
        return msg.control, bytes(msg.data)
    raise EncodeError(f"not a DL/T 645 message: {msg!r}", value=msg)


def encode_message(message: Message, *, preamble: int = 0) -> Frame:
    """Turn a message into a frame.

    Args:
        message: Any message of this module.
        preamble: ``FE`` bytes to send before the frame (masters send 4).

    Returns:
        The frame; serialise it with :func:`encode_frame`.

    Raises:
        EncodeError: A value does not fit, or the message does not exist in its edition.
    """
    control, data = _body(message)
    if len(data) > 0xFF:
        raise EncodeError("DATA is at most 255 bytes", value=len(data))
    return Frame(_addr(message.address), control, data, preamble)


# --- decoding --------------------------------------------------------------------------------
def _is_when(value: object, raw: bytes) -> bool:
    """True if a decoded date-time string holds BCD digits (a calendar check may still warn).

    FF filler (None) and non-BCD bytes (raw hex, 12 characters without a dash) are not times.
    """
    return isinstance(value, str) and "-" in value and raw.count(0xFF) != len(raw)


def _password(data: bytes) -> tuple[int, int]:
    return data[0], int.from_bytes(data[1:4], "little")


def _decode_request(
    frame: Frame, addr: str, v: Version
) -> tuple[Message | None, list[str]]:
    code, data, n = frame.function, frame.data, len(frame.data)
    warnings: list[str] = []
    if v is Version.V2007:
        if code == Function2007.READ and n in (4, 5, 10):
            di = int.from_bytes(data[:4], "little")
            if n == 4:
                return ReadRequest(addr, di), warnings
            blocks, warn = decode_field(_BLOCKS, data[4:5])
            if not isinstance(blocks, int):
                return None, [f"load-record block count {data[4]:02X} is not BCD"]
            start = None
            if n == 10:
                when, warn = decode_field(_TIME5, data[5:10])
                if not _is_when(when, data[5:10]) or not isinstance(when, str):
                    return None, [f"load-record start: {warn}"]
                if warn:
                    warnings.append(f"load-record start: {warn}")
                start = when
            return ReadRequest(addr, di, blocks, start), warnings
        if code == Function2007.READ_FOLLOW_UP and n == 5:
            return ReadFollowUpRequest(addr, int.from_bytes(data[:4], "little"), data[4]), warnings
        if code == Function2007.READ_ADDRESS and n == 0:
            return ReadAddressRequest(addr), warnings
        if code == Function2007.WRITE and n >= 12:
            level, pwd = _password(data[4:8])
            return WriteRequest(addr, int.from_bytes(data[:4], "little"), data[12:], level, pwd,
                                int.from_bytes(data[8:12], "little")), warnings
        if code == Function2007.FREEZE and n == 4:
            parts = []
            for b in data:
                if (b >> 4) > 9 or (b & 0xF) > 9:
                    return None, [f"freeze pattern byte {b:02X} is not BCD"]
                parts.append((b >> 4) * 10 + (b & 0xF))
            return FreezeRequest(addr, parts[0], parts[1], parts[2], parts[3]), warnings
        if code == Function2007.CHANGE_PASSWORD and n == 12:
            ol, op_ = _password(data[4:8])
            nl, np_ = _password(data[8:12])
            di = int.from_bytes(data[:4], "little")
            if di & 0xFFFFFF00 != 0x04000C00:
                warnings.append(f"password change names DI {di:08X}, not 04000C0x")
            return ChangePasswordRequest(addr, di, ol, op_, nl, np_), warnings
        if code in (Function2007.CLEAR_DEMAND, Function2007.CLEAR_METER) and n == 8:
            level, pwd = _password(data)
            return ClearRequest(addr, code, level, pwd, int.from_bytes(data[4:8], "little")), \
                warnings
        if code == Function2007.CLEAR_EVENTS and n == 12:
            level, pwd = _password(data)
            return ClearRequest(addr, code, level, pwd, int.from_bytes(data[4:8], "little"),
                                int.from_bytes(data[8:12], "little")), warnings
        if code == Function2007.REMOTE_CONTROL and n == 16:
            level, pwd = _password(data)
            deadline, warn = decode_field(_TIME6, data[10:16])
            if not _is_when(deadline, data[10:16]) or not isinstance(deadline, str):
                return None, [f"remote-control deadline: {warn}"]
            if warn:
                warnings.append(f"remote-control deadline: {warn}")
            if data[8] not in RemoteCommand._value2member_map_:
                warnings.append(f"remote-control command {data[8]:02X} is not defined")
            return RemoteControlRequest(addr, data[8], deadline, level, pwd,
                                        int.from_bytes(data[4:8], "little"), data[9]), warnings
        if code == Function2007.REMOTE_CONTROL and n == 28:
            level, pwd = _password(data)
            return SecuredRemoteControlRequest(addr, data[8:28], level, pwd,
                                               int.from_bytes(data[4:8], "little")), warnings
    else:
        if code == Function1997.READ and n == 2:
            return ReadRequest(addr, int.from_bytes(data, "little"), version=v), warnings
        if code == Function1997.READ_FOLLOW_UP and n == 2:
            return ReadFollowUpRequest(addr, int.from_bytes(data, "little"), None, v), warnings
        if code == Function1997.REREAD and n == 0:
            return RereadRequest(addr, v), warnings
        if code == Function1997.WRITE and n >= 6:
            level, pwd = _password(data[2:6])
            return WriteRequest(addr, int.from_bytes(data[:2], "little"), data[6:], level, pwd,
                                None, v), warnings
        if code == Function1997.CHANGE_PASSWORD and n == 8:
            ol, op_ = _password(data[0:4])
            nl, np_ = _password(data[4:8])
            return ChangePasswordRequest(addr, None, ol, op_, nl, np_, v), warnings
        if code == Function1997.CLEAR_DEMAND and n == 4:
            level, pwd = _password(data)
            return ClearRequest(addr, code, level, pwd, None, None, v), warnings
    f = _codes(v)
    if code == f.WRITE_ADDRESS and n == 6:
        return WriteAddressRequest(format_address(data), addr, v), warnings
    if code == f.TIME_SYNC and n == 6:
        when, warn = decode_field(_TIME6, data)
        if not _is_when(when, data) or not isinstance(when, str):
            return None, [f"time sync: {warn}"]
        if warn:
            warnings.append(f"time sync: {warn}")
        return TimeSyncRequest(when, addr, v), warnings
    if code == f.CHANGE_BAUD and n == 1:
        if data[0] not in BAUD_CODES:
            warnings.append(f"baud byte {data[0]:02X} is not a defined rate")
        return ChangeBaudRequest(addr, data[0], v), warnings
    return None, warnings


def _decode_response(
    frame: Frame, addr: str, v: Version
) -> tuple[Message | None, list[str]]:
    code, data, n = frame.function, frame.data, len(frame.data)
    w = _di_width(v)
    f = _codes(v)
    warnings: list[str] = []
    if frame.abnormal:
        if n == 1 or (n == 2 and v is Version.V2007 and code == Function2007.SECURITY):
            return AbnormalResponse(addr, code, int.from_bytes(data, "little"), v), warnings
        return None, [f"abnormal reply with {n} data bytes (expected the error word)"]
    more = frame.follow_up
    if code == f.READ and n >= w:
        return ReadResponse(addr, int.from_bytes(data[:w], "little"), data[w:], more,
                            version=v), warnings
    if code == f.READ_FOLLOW_UP:
        if v is Version.V2007 and n >= w + 1:
            return ReadResponse(addr, int.from_bytes(data[:w], "little"), data[w:-1], more,
                                data[-1], True, version=v), warnings
        if v is Version.V1997 and n >= w:
            return ReadResponse(addr, int.from_bytes(data[:w], "little"), data[w:], more,
                                None, True, version=v), warnings
    if v is Version.V1997 and code == Function1997.REREAD and n >= w:
        return ReadResponse(addr, int.from_bytes(data[:w], "little"), data[w:], more,
                            reread=True, version=v), warnings
    if more:
        return None, ["MORE bit set on a reply that is not a read reply"]
    if v is Version.V2007 and code == Function2007.READ_ADDRESS and n == 6:
        reported = format_address(data)
        if reported != addr:
            warnings.append(f"address in data {reported} differs from the header {addr}")
        return ReadAddressResponse(reported, v), warnings
    if code == f.CHANGE_BAUD and n == 1:
        if data[0] not in BAUD_CODES:
            warnings.append(f"baud byte {data[0]:02X} is not a defined rate")
        return ChangeBaudResponse(addr, data[0], v), warnings
    if code == f.CHANGE_PASSWORD and n == 4:
        level, pwd = _password(data)
        return ChangePasswordResponse(addr, level, pwd, v), warnings
    if n == 0 and code in _ACKED[v]:
        return Ack(addr, code, v), warnings
    return None, warnings


_ACKED: dict[Version, frozenset[int]] = {
    Version.V2007: frozenset({
        Function2007.WRITE, Function2007.WRITE_ADDRESS, Function2007.FREEZE,
        Function2007.CLEAR_DEMAND, Function2007.CLEAR_METER, Function2007.CLEAR_EVENTS,
        Function2007.REMOTE_CONTROL, Function2007.TIME_SYNC,
    }),
    Version.V1997: frozenset({
        Function1997.WRITE, Function1997.WRITE_ADDRESS, Function1997.CLEAR_DEMAND,
        Function1997.TIME_SYNC,
    }),
}
"""Functions whose normal reply carries no data."""


def decode_message(
    frame: Frame, version: Version = Version.V2007
) -> tuple[Message, tuple[str, ...]]:
    """Interpret a frame in one edition.

    Args:
        frame: A decoded frame.
        version: The edition (use :func:`detect_version` when unknown).

    Returns:
        ``(message, warnings)``. Never raises: a frame whose function or length this codec
        does not interpret becomes :class:`UnknownMessage` with a warning; content faults
        (undefined baud byte, unknown remote-control command) keep the value and warn.
    """
    addr = format_address(frame.address)
    try:
        if frame.is_response:
            msg, warnings = _decode_response(frame, addr, version)
        else:
            msg, warnings = _decode_request(frame, addr, version)
    except (ValueError, IndexError, KeyError, EncodeError) as exc:  # defensive: never escape
        msg, warnings = None, [f"could not interpret the data: {exc}"]
    if msg is None:
        warnings = [*warnings, (
            f"control code {frame.control:02X} with {len(frame.data)} data bytes is not "
            f"interpreted by the {version.value} codec; data left raw"
        )]
        return UnknownMessage(addr, frame.control, frame.data, version), tuple(warnings)
    return msg, tuple(warnings)


_ONLY_1997 = frozenset({0x01, 0x02, 0x04, 0x0A, 0x0C, 0x0F, 0x10})
_ONLY_2007 = frozenset(range(0x11, 0x1E))


def detect_version(frame: Frame) -> Version:
    """Guess the edition of a frame from its function code and data length.

    Heuristic: function codes ``11``..``1D`` exist only in 2007 and ``01``, ``02``, ``04``,
    ``0A``, ``0C``, ``0F``, ``10`` only in 1997. The shared ``08`` (time sync, identical
    layout) is reported as 2007. ``03`` is 1997 re-read when the request has no data or the
    reply has room for a 2-byte DI but not a 2007 security payload (< 4 bytes), else the 2007
    security service. Unassigned codes default to 2007.

    Args:
        frame: A decoded frame.

    Returns:
        The likely edition.
    """
    code = frame.function
    if code in _ONLY_1997:
        return Version.V1997
    if code in _ONLY_2007:
        return Version.V2007
    if code == 0x03:
        n = len(frame.data)
        if frame.abnormal:
            return Version.V1997 if n == 1 else Version.V2007
        if (not frame.is_response and n == 0) or (frame.is_response and 2 <= n < 4):
            return Version.V1997
    return Version.V2007
