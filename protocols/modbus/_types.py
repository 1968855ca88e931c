"""Typed values of the Modbus codec: map entries, maps, read requests, decoded values.

A multi-register value is laid out on the wire like this (two registers, float32/int32)::

    register n           register n+1
    +--------+--------+  +--------+--------+
    |   A    |   B    |  |   C    |   D    |    word_order=big,    byte_order=big    (ABCD)
    +--------+--------+  +--------+--------+
    |   C    |   D    |  |   A    |   B    |    word_order=little, byte_order=big    (CDAB)
    |   B    |   A    |  |   D    |   C    |    word_order=big,    byte_order=little (BADC)
    |   D    |   C    |  |   B    |   A    |    word_order=little, byte_order=little (DCBA)

where ``A`` is the most significant byte of the big-endian value. Registers themselves are
16-bit unsigned integers (0..0xFFFF), addresses are wire (0-based) addresses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Final

__all__ = [
    "MAX_READ_REGISTERS",
    "ByteOrder",
    "DataType",
    "FunctionCode",
    "QuantityValue",
    "ReadRequest",
    "ReadSettings",
    "RegisterBlock",
    "RegisterEntry",
    "RegisterMap",
    "Table",
    "WordOrder",
]

MAX_READ_REGISTERS: Final = 125
"""Modbus application protocol limit for one FC03/FC04 request."""


class FunctionCode(IntEnum):
    """Modbus read function codes used by meter maps."""

    READ_HOLDING_REGISTERS = 0x03
    READ_INPUT_REGISTERS = 0x04


class Table(StrEnum):
    """The register table an entry lives in."""

    INPUT = "input"
    """Input registers, read with FC04."""
    HOLDING = "holding"
    """Holding registers, read with FC03."""

    @property
    def function(self) -> FunctionCode:
        """The read function code for this table."""
        if self is Table.INPUT:
            return FunctionCode.READ_INPUT_REGISTERS
        return FunctionCode.READ_HOLDING_REGISTERS


class DataType(StrEnum):
    """How the registers of one entry encode a number."""

    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    INT64 = "int64"
    UINT64 = "uint64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"

    @property
    def registers(self) -> int:
        """Number of 16-bit registers the type occupies."""
        return _SIZES[self]

    @property
    def is_float(self) -> bool:
        """True for IEEE-754 types."""
        return self in (DataType.FLOAT32, DataType.FLOAT64)

    @property
    def struct_code(self) -> str:
        """The :mod:`struct` format character (big-endian use)."""
        return _STRUCT[self]


_SIZES: Final = {
    DataType.INT16: 1,
    DataType.UINT16: 1,
    DataType.INT32: 2,
    DataType.UINT32: 2,
    DataType.INT64: 4,
    DataType.UINT64: 4,
    DataType.FLOAT32: 2,
    DataType.FLOAT64: 4,
}
_STRUCT: Final = {
    DataType.INT16: "h",
    DataType.UINT16: "H",
    DataType.INT32: "i",
    DataType.UINT32: "I",
    DataType.INT64: "q",
    DataType.UINT64: "Q",
    DataType.FLOAT32: "f",
    DataType.FLOAT64: "d",
}


class WordOrder(StrEnum):
    """Order of the registers of a multi-register value."""

    BIG = "big"
    """Most significant register first (Modbus convention, Eastron, CHINT)."""
    LITTLE = "little"
    """Least significant register first ("word swapped")."""


class ByteOrder(StrEnum):
    """Order of the two bytes inside each register."""

    BIG = "big"
    """High byte first (the Modbus standard)."""
    LITTLE = "little"
    """Low byte first ("byte swapped")."""


@dataclass(frozen=True, slots=True)
class RegisterEntry:
    """One quantity in a register map.

    Attributes:
        quantity: Quantity name (CONTRACTS.md vocabulary or the same style).
        address: Wire (0-based) address of the first register.
        table: Input (FC04) or holding (FC03) registers.
        data_type: How the registers encode the raw number.
        word_order: Register order for multi-register types.
        byte_order: Byte order inside each register.
        scale: ``value = raw * scale`` (e.g. 0.001 to turn W into kW).
        unit: Unit of the scaled value.
        description: Free text, e.g. the datasheet's name for the register.
    """

    quantity: str
    address: int
    table: Table
    data_type: DataType
    unit: str
    scale: float = 1.0
    word_order: WordOrder = WordOrder.BIG
    byte_order: ByteOrder = ByteOrder.BIG
    description: str = ""

    @property
    def count(self) -> int:
        """Number of registers the entry occupies."""
        return self.data_type.registers

    @property
    def end(self) -> int:
        """First address after the entry (exclusive end)."""
        return self.address + self.data_type.registers


@dataclass(frozen=True, slots=True)
class ReadSettings:
    """How a device wants to be read.

    Attributes:
        max_registers: Largest request the device accepts (≤ 125; Eastron: 80).
        align: 2 when requests must start on an even address and cover an even number of
            registers (Eastron), else 1.
        max_gap: How many unmapped registers one request may read through to merge two
            entries. 0 reads only mapped registers.
    """

    max_registers: int = MAX_READ_REGISTERS
    align: int = 1
    max_gap: int = 0


@dataclass(frozen=True, slots=True)
class RegisterMap:
    """A meter model's register map.

    Attributes:
        name: Map name (the file stem for shipped maps, e.g. ``sdm630``).
        manufacturer: Manufacturer, e.g. ``Eastron``.
        model: Model, e.g. ``SDM630``.
        entries: The entries, ordered by table then address.
        read: Request limits of the device.
        description: Free text: sources, firmware notes.
        source: Where the map was loaded from (file name), for messages.
    """

    name: str
    manufacturer: str
    model: str
    entries: tuple[RegisterEntry, ...]
    read: ReadSettings = field(default_factory=ReadSettings)
    description: str = ""
    source: str = "<mapping>"

    def entry(self, quantity: str) -> RegisterEntry | None:
        """The entry for ``quantity``, or None when the map has none."""
        for item in self.entries:
            if item.quantity == quantity:
                return item
        return None

    @property
    def quantities(self) -> tuple[str, ...]:
        """Quantity names in map order."""
        return tuple(item.quantity for item in self.entries)

    @property
    def tables(self) -> tuple[Table, ...]:
        """The tables the map uses, input first."""
        return tuple(t for t in Table if any(e.table is t for e in self.entries))


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """One read request the collector sends.

    Attributes:
        function: FC03 or FC04.
        start: First wire address.
        count: Number of registers (1..125).
        quantities: The quantities the reply contains, in address order.
    """

    function: FunctionCode
    start: int
    count: int
    quantities: tuple[str, ...] = ()

    @property
    def table(self) -> Table:
        """The register table read by this request."""
        if self.function is FunctionCode.READ_INPUT_REGISTERS:
            return Table.INPUT
        return Table.HOLDING

    @property
    def end(self) -> int:
        """First address after the request (exclusive end)."""
        return self.start + self.count


@dataclass(frozen=True, slots=True)
class QuantityValue:
    """A decoded value.

    Attributes:
        quantity: Quantity name.
        value: Scaled value in ``unit``; ``int`` for integer types with scale 1, else float.
        unit: Unit of ``value``.
        raw: The number the registers held before scaling.
        address: Wire address of the entry's first register.
        table: The register table.
    """

    quantity: str
    value: float | int
    unit: str
    raw: float | int
    address: int
    table: Table


@dataclass(frozen=True, slots=True)
class RegisterBlock:
    """A contiguous run of register values, e.g. for a simulator's datastore.

    Attributes:
        table: Input or holding registers.
        start: Wire address of ``registers[0]``.
        registers: 16-bit register values.
    """

    table: Table
    start: int
    registers: tuple[int, ...]

    @property
    def end(self) -> int:
        """First address after the block (exclusive end)."""
        return self.start + len(self.registers)
