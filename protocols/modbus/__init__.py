"""Modbus energy-meter register maps: data-driven decoding, encoding and read planning.

Register maps are data, one TOML/JSON file per meter model (``maps/``), loaded and
validated into a :class:`RegisterMap`. The codec is pure: it turns register blocks
(``list[int]`` as pymodbus returns them) into typed :class:`QuantityValue` objects, plans
the FC03/FC04 requests a collector sends, and encodes values back into registers for
simulated meters. It performs no Modbus I/O and does not import pymodbus.

Example:
    >>> from protocols.modbus import load_builtin_map, plan_reads, decode_response
    >>> sdm630 = load_builtin_map("sdm630")
    >>> first = plan_reads(sdm630)[0]
    >>> (first.function, first.start, first.count)
    (<FunctionCode.READ_INPUT_REGISTERS: 4>, 0, 80)
"""

from __future__ import annotations

from ._codec import decode_registers, decode_response, decode_value, encode_value, encode_values
from ._errors import (
    DecodeError,
    DecodeFault,
    EncodeError,
    EncodeFault,
    MapError,
    MapFault,
    ModbusError,
    PlanError,
    PlanFault,
)
from ._maps import (
    MAP_FORMAT_VERSION,
    builtin_map_names,
    load_builtin_map,
    load_map,
    loads_map,
    parse_map,
)
from ._plan import plan_reads
from ._types import (
    MAX_READ_REGISTERS,
    ByteOrder,
    DataType,
    FunctionCode,
    QuantityValue,
    ReadRequest,
    ReadSettings,
    RegisterBlock,
    RegisterEntry,
    RegisterMap,
    Table,
    WordOrder,
)

__all__ = [
    "MAP_FORMAT_VERSION",
    "MAX_READ_REGISTERS",
    "ByteOrder",
    "DataType",
    "DecodeError",
    "DecodeFault",
    "EncodeError",
    "EncodeFault",
    "FunctionCode",
    "MapError",
    "MapFault",
    "ModbusError",
    "PlanError",
    "PlanFault",
    "QuantityValue",
    "ReadRequest",
    "ReadSettings",
    "RegisterBlock",
    "RegisterEntry",
    "RegisterMap",
    "Table",
    "WordOrder",
    "builtin_map_names",
    "decode_registers",
    "decode_response",
    "decode_value",
    "encode_value",
    "encode_values",
    "load_builtin_map",
    "load_map",
    "loads_map",
    "parse_map",
    "plan_reads",
]
