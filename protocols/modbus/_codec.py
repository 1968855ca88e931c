"""Register ↔ value conversion for Modbus meter maps.

Decoding turns a block of 16-bit registers, read from a start address, into typed
quantities; encoding is the inverse, for simulated meters that fill a datastore from
values. Both are pure functions of the map (see ``_types.py`` for the word/byte layout)::

    registers [0x4366, 0x199A] ──(float32, ABCD)──> raw 230.1 ──(× scale)──> 230.1 V

Scaling is done in decimal arithmetic on the shortest decimal form of the raw number, so a
DTSU666 voltage register holding 2301.5 with scale 0.1 decodes to exactly ``230.15`` and
encodes back to the same registers. float32 raw values are reported with the shortest
decimal that identifies the float32 (at most 9 significant digits), i.e. ``230.1``, not
``230.10000610351562``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from ._errors import DecodeError, DecodeFault, EncodeError, EncodeFault
from ._types import (
    ByteOrder,
    DataType,
    QuantityValue,
    ReadRequest,
    RegisterBlock,
    RegisterEntry,
    RegisterMap,
    Table,
    WordOrder,
)

__all__ = [
    "decode_registers",
    "decode_response",
    "decode_value",
    "encode_value",
    "encode_values",
]

_INT_RANGES = {
    DataType.INT16: (-(2**15), 2**15 - 1),
    DataType.UINT16: (0, 2**16 - 1),
    DataType.INT32: (-(2**31), 2**31 - 1),
    DataType.UINT32: (0, 2**32 - 1),
    DataType.INT64: (-(2**63), 2**63 - 1),
    DataType.UINT64: (0, 2**64 - 1),
}


def _words_from_bytes(data: bytes, entry: RegisterEntry) -> tuple[int, ...]:
    words = [
        (data[i + 1] << 8) | data[i]
        if entry.byte_order is ByteOrder.LITTLE
        else (data[i] << 8) | data[i + 1]
        for i in range(0, len(data), 2)
    ]
    if entry.word_order is WordOrder.LITTLE:
        words.reverse()
    return tuple(words)


def _bytes_from_words(words: Sequence[int], entry: RegisterEntry) -> bytes:
    ordered = list(words)
    if entry.word_order is WordOrder.LITTLE:
        ordered.reverse()
    out = bytearray()
    for word in ordered:
        hi, lo = word >> 8, word & 0xFF
        out += bytes((lo, hi)) if entry.byte_order is ByteOrder.LITTLE else bytes((hi, lo))
    return bytes(out)


def _shortest_float_text(raw: float, data_type: DataType) -> str:
    """Shortest decimal text that converts back to the same float of ``data_type``."""
    if data_type is DataType.FLOAT64:
        return repr(raw)
    packed = struct.pack(">f", raw)
    for digits in range(1, 10):
        text = f"{raw:.{digits}g}"
        try:
            if struct.pack(">f", float(text)) == packed:
                return text
        except OverflowError:  # rounding near the float32 maximum went past it
            continue
    return repr(raw)  # pragma: no cover - 9 significant digits always identify a float32


def _scale_text(scale: float) -> Decimal:
    return Decimal(repr(float(scale)))


def decode_value(entry: RegisterEntry, registers: Sequence[int]) -> QuantityValue:
    """Decode one entry from exactly its registers.

    Args:
        entry: The map entry.
        registers: ``entry.count`` register values (0..0xFFFF), in wire order.

    Returns:
        The scaled value with its unit.

    Raises:
        DecodeError: ``bad_register`` for a value outside 0..0xFFFF or a non-integer;
            ``bad_block`` when the number of registers differs from ``entry.count``.
    """
    words = _check_registers(registers, start=entry.address)
    if len(words) != entry.count:
        raise DecodeError(
            f"{entry.quantity} needs {entry.count} registers, got {len(words)}",
            reason=DecodeFault.BAD_BLOCK,
            registers=registers,
            start=entry.address,
            quantity=entry.quantity,
        )
    data = _bytes_from_words(words, entry)
    (number,) = struct.unpack(">" + entry.data_type.struct_code, data)
    raw: float | int
    value: float | int
    if entry.data_type.is_float:
        if not math.isfinite(number):
            raw = number
            value = number * entry.scale
        else:
            text = _shortest_float_text(number, entry.data_type)
            raw = float(text)
            value = raw if entry.scale == 1 else float(Decimal(text) * _scale_text(entry.scale))
    else:
        raw = int(number)
        value = raw if entry.scale == 1 else float(Decimal(raw) * _scale_text(entry.scale))
    return QuantityValue(
        quantity=entry.quantity,
        value=value,
        unit=entry.unit,
        raw=raw,
        address=entry.address,
        table=entry.table,
    )


def encode_value(entry: RegisterEntry, value: float | int) -> tuple[int, ...]:
    """Encode one value into the entry's registers (the inverse of :func:`decode_value`).

    Integer types round ``value / scale`` to the nearest integer (ties to even); float
    types store the nearest float32/float64.

    Args:
        entry: The map entry.
        value: The value in ``entry.unit``.

    Returns:
        ``entry.count`` register values in wire order.

    Raises:
        EncodeError: ``wrong_type`` for a non-number (``bool`` included); ``not_finite``
            for NaN/infinity into an integer type; ``out_of_range`` when the scaled value
            does not fit the data type.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EncodeError(
            f"value must be a number, got {type(value).__name__}",
            reason=EncodeFault.WRONG_TYPE,
            quantity=entry.quantity,
            value=value,
        )
    data_type = entry.data_type
    finite = isinstance(value, int) or math.isfinite(value)
    if not finite:
        if not data_type.is_float:
            raise EncodeError(
                f"{value!r} cannot be stored in {data_type}",
                reason=EncodeFault.NOT_FINITE,
                quantity=entry.quantity,
                value=value,
            )
        raw_float = float(value) / entry.scale
        data = struct.pack(">" + data_type.struct_code, raw_float)
        return _words_from_bytes(data, entry)
    exact = Decimal(value) if isinstance(value, int) else Decimal(repr(float(value)))
    try:
        raw_dec = exact if entry.scale == 1 else exact / _scale_text(entry.scale)
    except InvalidOperation as exc:  # pragma: no cover - scale is validated non-zero
        raise EncodeError(
            str(exc), reason=EncodeFault.OUT_OF_RANGE, quantity=entry.quantity, value=value
        ) from exc
    if data_type.is_float:
        try:
            data = struct.pack(">" + data_type.struct_code, float(raw_dec))
        except OverflowError as exc:
            raise EncodeError(
                f"{value!r} does not fit {data_type}",
                reason=EncodeFault.OUT_OF_RANGE,
                quantity=entry.quantity,
                value=value,
            ) from exc
        return _words_from_bytes(data, entry)
    raw_int = int(raw_dec.to_integral_value(rounding=ROUND_HALF_EVEN))
    low, high = _INT_RANGES[data_type]
    if not low <= raw_int <= high:
        raise EncodeError(
            f"{value!r} (raw {raw_int}) does not fit {data_type} ({low}..{high})",
            reason=EncodeFault.OUT_OF_RANGE,
            quantity=entry.quantity,
            value=value,
        )
    data = struct.pack(">" + data_type.struct_code, raw_int)
    return _words_from_bytes(data, entry)


def _check_registers(registers: Sequence[int], *, start: int) -> tuple[int, ...]:
    words: list[int] = []
    for index, word in enumerate(registers):
        if isinstance(word, bool) or not isinstance(word, int) or not 0 <= word <= 0xFFFF:
            raise DecodeError(
                f"register {index} (address {start + index:#06x}) is {word!r}, "
                "not an integer in 0..0xFFFF",
                reason=DecodeFault.BAD_REGISTER,
                registers=registers,
                start=start,
            )
        words.append(word)
    return tuple(words)


def _resolve_table(register_map: RegisterMap, table: Table | str | None) -> Table:
    if table is None:
        tables = register_map.tables
        if len(tables) != 1:
            raise DecodeError(
                f"map {register_map.name} uses both input and holding registers; pass table=",
                reason=DecodeFault.BAD_BLOCK,
            )
        return tables[0]
    try:
        return Table(table)
    except ValueError as exc:
        raise DecodeError(
            f"unknown register table {table!r} (expected 'input' or 'holding')",
            reason=DecodeFault.BAD_BLOCK,
        ) from exc


def decode_registers(
    register_map: RegisterMap,
    registers: Sequence[int],
    *,
    start: int,
    table: Table | str | None = None,
    require: Iterable[str] = (),
) -> tuple[QuantityValue, ...]:
    """Decode every map entry that lies wholly inside a block of registers.

    Entries only partly inside the block are skipped (they belong to another request);
    list the quantities you expect in ``require`` to make their absence an error.

    Args:
        register_map: The meter's map.
        registers: Register values as read (``list[int]``, each 0..0xFFFF).
        start: Wire address of ``registers[0]``.
        table: The table the block was read from; may be omitted when the map uses one.
        require: Quantities that must be decoded from this block.

    Returns:
        Decoded values in address order.

    Raises:
        DecodeError: ``bad_register``, ``bad_block`` (start or length out of the address
            space, ambiguous or unknown table), ``unknown_quantity`` / ``not_covered`` for
            a required quantity the map lacks or the block does not contain.
    """
    if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start <= 0xFFFF:
        raise DecodeError(
            f"start address {start!r} is outside 0..0xFFFF",
            reason=DecodeFault.BAD_BLOCK,
            registers=registers,
            start=None,
        )
    words = _check_registers(registers, start=start)
    if start + len(words) > 0x10000:
        raise DecodeError(
            f"{len(words)} registers from {start:#06x} run past address 0xFFFF",
            reason=DecodeFault.BAD_BLOCK,
            registers=registers,
            start=start,
        )
    chosen = _resolve_table(register_map, table)
    end = start + len(words)
    values = [
        decode_value(entry, words[entry.address - start : entry.end - start])
        for entry in register_map.entries
        if entry.table is chosen and entry.address >= start and entry.end <= end
    ]
    values.sort(key=lambda v: v.address)
    got = {v.quantity for v in values}
    for quantity in require:
        if quantity in got:
            continue
        entry = register_map.entry(quantity)
        if entry is None:
            raise DecodeError(
                f"map {register_map.name} has no quantity {quantity!r}",
                reason=DecodeFault.UNKNOWN_QUANTITY,
                registers=registers,
                start=start,
                quantity=quantity,
            )
        raise DecodeError(
            f"{quantity} ({entry.table} {entry.address:#06x}..{entry.end - 1:#06x}) is not "
            f"inside the {chosen} block {start:#06x}..{end - 1:#06x}",
            reason=DecodeFault.NOT_COVERED,
            registers=registers,
            start=start,
            quantity=quantity,
        )
    return tuple(values)


def decode_response(
    register_map: RegisterMap, request: ReadRequest, registers: Sequence[int]
) -> tuple[QuantityValue, ...]:
    """Decode the reply to a planned :class:`ReadRequest`.

    Args:
        register_map: The map the request was planned from.
        request: The request that was sent.
        registers: The register values of the reply.

    Returns:
        The request's quantities, decoded, in address order (every entry inside the
        block when the request lists no quantities).

    Raises:
        DecodeError: ``length_mismatch`` when the reply's length differs from
            ``request.count``; otherwise as :func:`decode_registers`.
    """
    if len(registers) != request.count:
        raise DecodeError(
            f"asked for {request.count} registers from {request.start:#06x}, got {len(registers)}",
            reason=DecodeFault.LENGTH_MISMATCH,
            registers=registers,
            start=request.start,
        )
    values = decode_registers(
        register_map,
        registers,
        start=request.start,
        table=request.table,
        require=request.quantities,
    )
    if not request.quantities:
        return values
    wanted = set(request.quantities)
    return tuple(value for value in values if value.quantity in wanted)


def encode_values(
    register_map: RegisterMap, values: Mapping[str, float | int]
) -> tuple[RegisterBlock, ...]:
    """Encode quantities into register blocks, e.g. to fill a simulated meter's datastore.

    Adjacent entries are merged into one block; quantities not given are not written.

    Args:
        register_map: The meter's map.
        values: Quantity name → value in the entry's unit.

    Returns:
        Contiguous blocks, input table first, by address.

    Raises:
        EncodeError: ``unknown_quantity`` for a name the map lacks; otherwise as
            :func:`encode_value`.
    """
    words: dict[Table, dict[int, int]] = {t: {} for t in Table}
    for quantity, value in values.items():
        entry = register_map.entry(quantity)
        if entry is None:
            raise EncodeError(
                f"map {register_map.name} has no such quantity",
                reason=EncodeFault.UNKNOWN_QUANTITY,
                quantity=quantity,
                value=value,
            )
        for offset, word in enumerate(encode_value(entry, value)):
            words[entry.table][entry.address + offset] = word
    blocks: list[RegisterBlock] = []
    for table in Table:
        run_start: int | None = None
        run: list[int] = []
        for address in sorted(words[table]):
            if run_start is not None and address == run_start + len(run):
                run.append(words[table][address])
                continue
            if run_start is not None:
                blocks.append(RegisterBlock(table, run_start, tuple(run)))
            run_start, run = address, [words[table][address]]
        if run_start is not None:
            blocks.append(RegisterBlock(table, run_start, tuple(run)))
    return tuple(blocks)
