"""Encode and decode the data of a data identifier through the registry.

``decode_values`` never raises: an unknown identifier, non-BCD digits or a length that does
not fit the identifier give the raw bytes (hex) as the value plus a warning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ._codes import Version
from ._errors import EncodeError
from ._registry import LOAD_RECORD_SECTIONS, DataItem, lookup
from ._values import DataValue, Field, FieldKind, decode_field, encode_field

RAW_NAME = "raw"
"""Name of the value that carries undecoded bytes."""


@dataclass(frozen=True, slots=True)
class RelayStatus:
    """The prepaid-relevant bits of running status word 3 (``04000503``, protocols.md §8.4).

    Attributes:
        word: The whole status word.
        relay_open: Bit 4, relay actual state (True = open / 断).
        relay_trip_commanded: Bit 6, relay command state (True = trip commanded).
        pre_trip_alarm: Bit 7, pre-trip alarm active.
        protect_active: Bit 12, 保电 active (2013 amendment) [verify].
    """

    word: int
    relay_open: bool
    relay_trip_commanded: bool
    pre_trip_alarm: bool
    protect_active: bool


def decode_status_word_3(word: int) -> RelayStatus:
    """Decode the relay-state bits of status word 3.

    Args:
        word: The 16-bit status word (already an integer, LSB-first bytes combined).

    Returns:
        The relay status.
    """
    return RelayStatus(
        word=word,
        relay_open=bool(word >> 4 & 1),
        relay_trip_commanded=bool(word >> 6 & 1),
        pre_trip_alarm=bool(word >> 7 & 1),
        protect_active=bool(word >> 12 & 1),
    )


def _raw(data: bytes) -> DataValue:
    return DataValue(RAW_NAME, data.hex().upper(), None)


def _fields_for(item: DataItem, size: int) -> tuple[Field, ...] | None:
    """The fields that exactly cover ``size`` bytes, or None."""
    if not item.variable:
        return item.fields if item.size == size else None
    total = 0
    for i, f in enumerate(item.fields):
        total += f.size
        if total == size and (i + 1) % item.group == 0:
            return item.fields[: i + 1]
        if total > size:
            return None
    return None


def _decode_fields(fields: tuple[Field, ...], data: bytes) -> tuple[list[DataValue], list[str]]:
    values: list[DataValue] = []
    warnings: list[str] = []
    pos = 0
    for f in fields:
        value, warning = decode_field(f, data[pos : pos + f.size])
        pos += f.size
        values.append(DataValue(f.name, value, f.unit))
        if warning:
            warnings.append(warning)
    return values, warnings


def _status_bits(values: list[DataValue]) -> list[DataValue]:
    out: list[DataValue] = []
    for v in values:
        out.append(v)
        if v.name == "status_word_3" and isinstance(v.value, int):
            st = decode_status_word_3(v.value)
            out += [
                DataValue("relay_open", st.relay_open),
                DataValue("relay_trip_commanded", st.relay_trip_commanded),
                DataValue("pre_trip_alarm", st.pre_trip_alarm),
                DataValue("protect_active", st.protect_active),
            ]
    return out


def _decode_load_record(di: int, data: bytes) -> tuple[list[DataValue], list[str]]:
    """Decode one load-profile record: ``A0 A0 len time(5) sections… CS E5 E5`` [verify].

    Sections are separated by ``AA`` (never a BCD byte); an empty section means the class is
    not recorded. Class 0 records carry all six sections; class n records carry section n.
    """
    if len(data) < 11 or data[:2] != b"\xa0\xa0" or data[-2:] != b"\xe5\xe5":
        return [_raw(data)], [f"{di:08X}: not a load-profile record (A0 A0 ... E5 E5)"]
    warnings: list[str] = []
    if data[2] != len(data) - 6:
        warnings.append(f"{di:08X}: record length byte {data[2]} does not match {len(data) - 6}")
    when, warning = decode_field(Field("record_time", FieldKind.DATETIME_MIN, 5), data[3:8])
    values = [DataValue("record_time", when)]
    if warning:
        warnings.append(warning)
    body = data[8:-3]
    sections = body.split(b"\xaa")
    if sections and sections[-1] == b"":
        sections.pop()
    klass = di >> 16 & 0xFF
    if klass == 0 and len(sections) == len(LOAD_RECORD_SECTIONS):
        layout = list(zip(sections, LOAD_RECORD_SECTIONS, strict=True))
    elif 1 <= klass <= len(LOAD_RECORD_SECTIONS) and len(sections) == 1:
        layout = [(sections[0], LOAD_RECORD_SECTIONS[klass - 1])]
    else:
        warnings.append(f"{di:08X}: {len(sections)} record sections, layout unknown")
        return [*values, _raw(body)], warnings
    for raw, fields in layout:
        if not raw:
            continue
        if sum(f.size for f in fields) != len(raw):
            warnings.append(f"{di:08X}: record section of {len(raw)} bytes does not fit")
            values.append(_raw(raw))
            continue
        vs, ws = _decode_fields(fields, raw)
        values += vs
        warnings += ws
    return values, warnings


def decode_values(
    di: int, data: bytes, version: Version = Version.V2007
) -> tuple[tuple[DataValue, ...], tuple[str, ...]]:
    """Decode the data that follows a data identifier.

    Args:
        di: The identifier, written as in the standard (``0x02010100``, ``0xB611``).
        data: The data bytes after the identifier, 0x33 offset removed.
        version: The edition.

    Returns:
        ``(values, warnings)``. Values are in the identifier's order. An unknown identifier
        or a length that does not fit gives one value named ``raw`` (upper-case hex) and a
        warning; a field that is not valid BCD keeps its raw hex and adds a warning.
    """
    data = bytes(data)
    width = 8 if version is Version.V2007 else 4
    item = lookup(di, version)
    if item is None:
        return (_raw(data),), (f"unknown data identifier {di:0{width}X}: value left raw",)
    if item.special == "load_record":
        values, warnings = _decode_load_record(di, data)
        return tuple(values), tuple(warnings)
    fields = _fields_for(item, len(data))
    if fields is None:
        return (_raw(data),), (
            f"{di:0{width}X} ({item.description}): {len(data)} data bytes do not fit the "
            f"format ({item.size} bytes{' or a prefix' if item.variable else ''})",
        )
    values, warnings = _decode_fields(fields, data)
    if item.special == "status_word_3":
        values = _status_bits(values)
    return tuple(values), tuple(warnings)


def encode_values(
    di: int, values: Sequence[object] | bytes, version: Version = Version.V2007
) -> bytes:
    """Encode typed values for a data identifier (the data of a read reply or write request).

    Args:
        di: The identifier.
        values: One value per field in the identifier's order (None for ``FF`` filler). For a
            variable block (energy total + tariffs) give as many as the meter has. ``bytes``
            are taken as already-encoded data and returned unchanged (for identifiers the
            registry does not know, or deliberately odd replies).
        version: The edition.

    Returns:
        The data bytes, 0x33 offset not yet applied.

    Raises:
        EncodeError: The identifier is unknown (and ``values`` is not bytes), the number of
            values does not match, or a value does not fit its field.
    """
    if isinstance(values, bytes | bytearray):
        return bytes(values)
    item = lookup(di, version)
    if item is None:
        raise EncodeError(f"unknown data identifier {di:X}; pass the data as bytes", value=di)
    if item.special == "load_record":
        raise EncodeError("load-profile records are encoded by the caller as bytes", value=di)
    values = list(values)
    if item.variable:
        if not 1 <= len(values) <= len(item.fields) or len(values) % item.group:
            raise EncodeError(
                f"{di:X} takes 1..{len(item.fields)} values in groups of {item.group}, "
                f"got {len(values)}", value=values
            )
        fields = item.fields[: len(values)]
    else:
        if len(values) != len(item.fields):
            raise EncodeError(
                f"{di:X} takes {len(item.fields)} values, got {len(values)}", value=values
            )
        fields = item.fields
    return b"".join(encode_field(f, v) for f, v in zip(fields, values, strict=True))
