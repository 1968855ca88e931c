"""The Modbus codec's error tree.

Every error carries a machine-readable ``reason`` (a :class:`enum.StrEnum`), so callers
branch on reasons, never on message text::

    ModbusError
    ├── MapError      a register map file or mapping is invalid (names file, entry, field)
    ├── PlanError     read planning was asked for something impossible
    ├── DecodeError   a register block cannot be decoded with the map
    └── EncodeError   a value cannot be written into the map's registers
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

__all__ = [
    "DecodeError",
    "DecodeFault",
    "EncodeError",
    "EncodeFault",
    "MapError",
    "MapFault",
    "ModbusError",
    "PlanError",
    "PlanFault",
]


class ModbusError(Exception):
    """Base of every error raised by :mod:`protocols.modbus`."""


class MapFault(StrEnum):
    """Why a register map was refused."""

    UNREADABLE = "unreadable"
    """The file could not be read (missing, a directory, not UTF-8)."""
    SYNTAX = "syntax"
    """The file is not valid TOML or JSON."""
    UNKNOWN_FORMAT = "unknown_format"
    """The file name ends in neither ``.toml`` nor ``.json``."""
    UNSUPPORTED_VERSION = "unsupported_version"
    """``version`` is missing or not a version this code understands."""
    MISSING_FIELD = "missing_field"
    """A required key is absent."""
    UNKNOWN_FIELD = "unknown_field"
    """A key this format does not define (typos are errors, not silently ignored)."""
    WRONG_TYPE = "wrong_type"
    """A key has the wrong JSON/TOML type (e.g. a string where a number belongs)."""
    BAD_VALUE = "bad_value"
    """A value is out of range or malformed (address > 0xFFFF, scale 0, bad name…)."""
    UNKNOWN_DATA_TYPE = "unknown_data_type"
    """``type`` is not one of the supported data types."""
    UNKNOWN_TABLE = "unknown_table"
    """``table`` is neither ``input`` nor ``holding``."""
    UNKNOWN_ORDER = "unknown_order"
    """``word_order`` or ``byte_order`` is neither ``big`` nor ``little``."""
    BAD_QUANTITY = "bad_quantity"
    """The quantity name does not follow the vocabulary's naming style."""
    UNIT_MISMATCH = "unit_mismatch"
    """The unit differs from the one the vocabulary or the name's suffix fixes."""
    DUPLICATE_QUANTITY = "duplicate_quantity"
    """Two entries name the same quantity."""
    OVERLAP = "overlap"
    """Two entries of the same table share a register."""
    EMPTY = "empty"
    """The map has no register entries."""


class MapError(ModbusError):
    """A register map is invalid.

    Attributes:
        reason: What is wrong.
        source: The file name (or ``<string>``/``<mapping>`` for in-memory maps).
        entry: Which entry, as ``register[3]``; None for top-level problems.
        quantity: The entry's quantity name when it is known.
        field: The offending key (``type``, ``read.max_registers``…); None when the whole
            file or entry is at fault.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: MapFault,
        source: str,
        entry: str | None = None,
        quantity: str | None = None,
        field: str | None = None,
    ) -> None:
        where = source
        if entry is not None:
            where += f": {entry}"
            if quantity is not None:
                where += f" ({quantity})"
        if field is not None:
            where += f": field '{field}'"
        super().__init__(f"{where}: {message}")
        self.reason = reason
        self.source = source
        self.entry = entry
        self.quantity = quantity
        self.field = field


class PlanFault(StrEnum):
    """Why read planning failed."""

    BAD_LIMIT = "bad_limit"
    """``max_registers`` is outside 1..125 or smaller than one entry."""
    UNKNOWN_QUANTITY = "unknown_quantity"
    """A requested quantity is not in the map."""


class PlanError(ModbusError):
    """Read planning failed.

    Attributes:
        reason: What is wrong.
        quantity: The quantity at fault, if any.
    """

    def __init__(self, message: str, *, reason: PlanFault, quantity: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.quantity = quantity


class DecodeFault(StrEnum):
    """Why a register block could not be decoded."""

    BAD_REGISTER = "bad_register"
    """A register value is not an integer in 0..0xFFFF."""
    BAD_BLOCK = "bad_block"
    """The start address or block length is impossible (or the table is ambiguous)."""
    LENGTH_MISMATCH = "length_mismatch"
    """A response carries a different number of registers than the request asked for."""
    NOT_COVERED = "not_covered"
    """A required quantity's registers are not (fully) inside the block."""
    UNKNOWN_QUANTITY = "unknown_quantity"
    """A required quantity is not in the map."""


class DecodeError(ModbusError):
    """A register block cannot be decoded.

    Attributes:
        reason: What is wrong.
        registers: The raw register values as given.
        start: The block's start address.
        quantity: The quantity at fault, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: DecodeFault,
        registers: Sequence[object] = (),
        start: int | None = None,
        quantity: str | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.registers = tuple(registers)
        self.start = start
        self.quantity = quantity


class EncodeFault(StrEnum):
    """Why a value could not be encoded."""

    UNKNOWN_QUANTITY = "unknown_quantity"
    """The map has no entry for the quantity."""
    WRONG_TYPE = "wrong_type"
    """The value is not a real number (``bool`` and strings are refused)."""
    OUT_OF_RANGE = "out_of_range"
    """The scaled value does not fit the data type (e.g. −1 into uint16)."""
    NOT_FINITE = "not_finite"
    """NaN or infinity for an integer data type."""


class EncodeError(ModbusError):
    """A value cannot be written into registers.

    Attributes:
        reason: What is wrong.
        quantity: The quantity being encoded.
        value: The value as given.
    """

    def __init__(self, message: str, *, reason: EncodeFault, quantity: str, value: object) -> None:
        super().__init__(f"{quantity}: {message}")
        self.reason = reason
        self.quantity = quantity
        self.value = value
