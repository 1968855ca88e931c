"""Value formats of DL/T 645 data fields: packed BCD numbers, digit strings, ASCII, dates.

All multi-byte fields are sent least-significant byte first. Numbers are packed BCD with the
decimal point fixed by the identifier's format (``XXXXXX.XX``: 4 bytes, 2 decimals); signed
quantities use sign-magnitude with the sign in bit 7 of the last (most significant) byte. A
field made of ``FF`` bytes only is filler ("not available") and decodes to None.

Decoding never raises: a field whose bytes are not what its format allows comes back as its
raw bytes in hexadecimal, together with a warning string. Encoding raises
:class:`~protocols.dlt645.EncodeError` for values that do not fit.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from enum import IntEnum

from ._errors import EncodeError

Scalar = int | float | str | bool | None
"""A decoded value: numbers, strings (ASCII, digits, dates, times, raw hex), flags, None."""


class FieldKind(IntEnum):
    """How the bytes of a field are interpreted."""

    NUMBER = 1
    """Packed BCD, LSB first; ``decimals`` and ``signed`` apply. Integer if no decimals."""
    DIGITS = 2
    """Packed BCD digit string, LSB first (addresses, meter numbers): a string."""
    ASCII = 3
    """ASCII text, sent reversed; NUL padding stripped."""
    DATE_WEEKDAY = 4
    """``YYMMDDWW`` (4 bytes): ``"2026-11-23"``; WW (0 = Sunday) is checked, not returned."""
    TIME = 5
    """``hhmmss`` (3 bytes): ``"12:30:05"``."""
    DATETIME_MIN = 6
    """``YYMMDDhhmm`` (5 bytes): ``"2026-11-23 00:00"``."""
    DATETIME_SEC = 7
    """``YYMMDDhhmmss`` (6 bytes): ``"2026-11-23 00:00:05"``."""
    WORD = 8
    """Binary unsigned integer, LSB first (status words)."""
    HEX = 9
    """Opaque bytes: upper-case hexadecimal of the bytes as received (first byte first)."""


@dataclass(frozen=True, slots=True)
class Field:
    """One value inside a data identifier's data.

    Attributes:
        name: Quantity name (CONTRACTS.md vocabulary where one exists).
        kind: Byte interpretation.
        size: Width in bytes.
        decimals: Digits after the decimal point (NUMBER only).
        signed: Sign-magnitude with the sign in bit 7 of the last byte (NUMBER only).
        unit: Unit string, or None for dimensionless text and status values.
    """

    name: str
    kind: FieldKind
    size: int
    decimals: int = 0
    signed: bool = False
    unit: str | None = None


@dataclass(frozen=True, slots=True)
class DataValue:
    """A decoded value with its name and unit (one entry of decode JSON ``values``)."""

    name: str
    value: Scalar
    unit: str | None = None


_BCD_BYTES = bytes(b for b in range(256) if (b & 0x0F) <= 9 and (b >> 4) <= 9)
"""Every byte value that is two valid BCD digits."""


def _is_bcd(raw: bytes) -> bool:
    return not raw.translate(None, _BCD_BYTES)


def _digits(raw: bytes) -> str:
    """BCD bytes (LSB first) as a digit string, most significant first."""
    return raw[::-1].hex()


def decode_field(field: Field, raw: bytes) -> tuple[Scalar, str | None]:
    """Decode one field.

    Args:
        field: The field description.
        raw: Exactly ``field.size`` bytes, 0x33 offset removed.

    Returns:
        ``(value, warning)``; ``warning`` is None when the bytes were valid. On a content fault
        the value is the raw bytes as upper-case hex.
    """
    kind = field.kind
    if len(raw) != field.size:
        return raw.hex().upper(), f"{field.name}: {len(raw)} bytes, format needs {field.size}"
    if kind is FieldKind.WORD:
        return int.from_bytes(raw, "little"), None
    if kind is FieldKind.HEX:
        return raw.hex().upper(), None
    if raw and raw.count(0xFF) == len(raw):
        return None, None
    if kind is FieldKind.NUMBER:
        sign = 1
        if field.signed and raw[-1] & 0x80:
            sign = -1
            raw_mag = raw[:-1] + bytes((raw[-1] & 0x7F,))
        else:
            raw_mag = raw
        if not _is_bcd(raw_mag):
            return raw.hex().upper(), f"{field.name}: not BCD ({raw[::-1].hex().upper()})"
        n = sign * int(_digits(raw_mag))
        if field.decimals:
            return n / 10**field.decimals, None
        return n, None
    if kind is FieldKind.DIGITS:
        text = _digits(raw).upper()
        if not _is_bcd(raw):
            return text, f"{field.name}: non-decimal digits in {text}"
        return text, None
    if kind is FieldKind.ASCII:
        try:
            text = raw[::-1].decode("ascii")
        except UnicodeDecodeError:
            return raw.hex().upper(), f"{field.name}: not ASCII"
        return text.strip("\x00"), None
    # date and time kinds
    if not _is_bcd(raw):
        return raw.hex().upper(), f"{field.name}: not BCD ({raw[::-1].hex().upper()})"
    d = _digits(raw)
    warning = None
    if kind is FieldKind.DATE_WEEKDAY:
        text = f"20{d[0:2]}-{d[2:4]}-{d[4:6]}"
        try:
            day = _dt.date(2000 + int(d[0:2]), int(d[2:4]), int(d[4:6]))
            if (day.weekday() + 1) % 7 != int(d[6:8]):
                warning = f"{field.name}: weekday {int(d[6:8])} does not match {text}"
        except ValueError:
            warning = f"{field.name}: {text} is not a calendar date"
        return text, warning
    if kind is FieldKind.TIME:
        text = f"{d[0:2]}:{d[2:4]}:{d[4:6]}"
        if int(d[0:2]) > 23 or int(d[2:4]) > 59 or int(d[4:6]) > 59:
            warning = f"{field.name}: {text} is not a time of day"
        return text, warning
    date = f"20{d[0:2]}-{d[2:4]}-{d[4:6]}"
    text = f"{date} {d[6:8]}:{d[8:10]}"
    second = 0
    if kind is FieldKind.DATETIME_SEC:
        text += f":{d[10:12]}"
        second = int(d[10:12])
    try:
        _dt.datetime(2000 + int(d[0:2]), int(d[2:4]), int(d[4:6]), int(d[6:8]), int(d[8:10]),
                     second)
    except ValueError:
        warning = f"{field.name}: {text} is not a valid date and time"
    return text, warning


def _bcd(n: int, size: int) -> bytes:
    return bytes.fromhex(f"{n:0{2 * size}d}")[::-1]


def _parse_when(field: Field, value: object) -> str:
    """Return the BCD digit string (most significant first) for a date/time value."""
    kind = field.kind
    fmt = {
        FieldKind.DATE_WEEKDAY: ("%Y-%m-%d", "%y%m%d"),
        FieldKind.TIME: ("%H:%M:%S", "%H%M%S"),
        FieldKind.DATETIME_MIN: ("%Y-%m-%d %H:%M", "%y%m%d%H%M"),
        FieldKind.DATETIME_SEC: ("%Y-%m-%d %H:%M:%S", "%y%m%d%H%M%S"),
    }[kind]
    when: _dt.datetime | _dt.date | _dt.time
    if isinstance(value, str):
        try:
            parsed = _dt.datetime.strptime(value, fmt[0])
        except ValueError as exc:
            # keep odd but well-formed meter values (month 00 ...) encodable as digits
            digits = value.replace("-", "").replace(" ", "").replace(":", "")
            shape = _dt.datetime(2000, 1, 1).strftime(fmt[0])
            if (len(value) == len(shape) and digits.isdigit() and digits.isascii()
                    and all((c in "0123456789") == (d in "0123456789")
                            for c, d in zip(value, shape, strict=True))):
                if kind is FieldKind.TIME:
                    return digits
                if digits[:2] == "20" and kind is not FieldKind.DATE_WEEKDAY:
                    return digits[2:]
            raise EncodeError(f"{field.name}: {value!r} is not {fmt[0]}", value=value) from exc
        when = parsed.time() if kind is FieldKind.TIME else parsed
    elif isinstance(value, _dt.datetime | _dt.date | _dt.time):
        when = value
    else:
        raise EncodeError(f"{field.name}: expected a date/time or string", value=value)
    if kind is FieldKind.TIME:
        if isinstance(when, _dt.datetime):
            when = when.time()
        if not isinstance(when, _dt.time):
            raise EncodeError(f"{field.name}: expected a time", value=value)
        return when.strftime(fmt[1])
    if isinstance(when, _dt.time):
        raise EncodeError(f"{field.name}: expected a date", value=value)
    if not 2000 <= when.year <= 2099:
        raise EncodeError(f"{field.name}: year {when.year} is outside 2000..2099", value=value)
    if kind is FieldKind.DATE_WEEKDAY:
        day = when.date() if isinstance(when, _dt.datetime) else when
        return day.strftime(fmt[1]) + f"{(day.weekday() + 1) % 7:02d}"
    if not isinstance(when, _dt.datetime):
        when = _dt.datetime(when.year, when.month, when.day)
    return when.strftime(fmt[1])


def encode_field(field: Field, value: object) -> bytes:
    """Encode one field (the inverse of :func:`decode_field`).

    Args:
        field: The field description.
        value: None (filler ``FF`` bytes); a number for NUMBER and WORD; a digit string for
            DIGITS; text for ASCII; a string in the decoded format or a ``datetime``/``date``/
            ``time`` for the date and time kinds; hex text or bytes for HEX.

    Returns:
        ``field.size`` bytes, 0x33 offset not yet applied.

    Raises:
        EncodeError: The value has the wrong type or does not fit the field.
    """
    kind = field.kind
    size = field.size
    if value is None and kind is not FieldKind.HEX:
        return b"\xff" * size
    if kind is FieldKind.NUMBER or kind is FieldKind.WORD:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise EncodeError(f"{field.name}: expected a number, got {value!r}", value=value)
        if kind is FieldKind.WORD:
            if not isinstance(value, int) or not 0 <= value < 1 << (8 * size):
                raise EncodeError(f"{field.name}: {value!r} does not fit {size} bytes", value=value)
            return value.to_bytes(size, "little")
        try:
            n = round(value * 10**field.decimals)
        except (OverflowError, ValueError) as exc:
            raise EncodeError(f"{field.name}: {value!r} is not finite", value=value) from exc
        limit = 10 ** (2 * size)
        if field.signed:
            limit = 8 * 10 ** (2 * size - 1)
        elif n < 0:
            raise EncodeError(f"{field.name}: {value!r} is negative but unsigned", value=value)
        if abs(n) >= limit:
            raise EncodeError(f"{field.name}: {value!r} does not fit {size} bytes", value=value)
        raw = _bcd(abs(n), size)
        if n < 0:
            raw = raw[:-1] + bytes((raw[-1] | 0x80,))
        return raw
    if kind is FieldKind.DIGITS:
        if not isinstance(value, str) or not value or len(value) > 2 * size:
            raise EncodeError(f"{field.name}: expected up to {2 * size} digits", value=value)
        try:
            return bytes.fromhex(value.rjust(2 * size, "0"))[::-1]
        except ValueError as exc:
            raise EncodeError(f"{field.name}: {value!r} is not digits", value=value) from exc
    if kind is FieldKind.ASCII:
        if not isinstance(value, str):
            raise EncodeError(f"{field.name}: expected text", value=value)
        try:
            raw = value.encode("ascii")
        except UnicodeEncodeError as exc:
            raise EncodeError(f"{field.name}: {value!r} is not ASCII", value=value) from exc
        if len(raw) > size:
            raise EncodeError(f"{field.name}: {value!r} is longer than {size}", value=value)
        return raw.rjust(size, b"\x00")[::-1]
    if kind is FieldKind.HEX:
        if isinstance(value, bytes | bytearray):
            raw = bytes(value)
        elif isinstance(value, str):
            try:
                raw = bytes.fromhex(value)
            except ValueError as exc:
                raise EncodeError(f"{field.name}: {value!r} is not hex", value=value) from exc
        else:
            raise EncodeError(f"{field.name}: expected hex text or bytes", value=value)
        if len(raw) != size:
            raise EncodeError(f"{field.name}: expected {size} bytes", value=value)
        return raw
    return bytes.fromhex(_parse_when(field, value))[::-1]
