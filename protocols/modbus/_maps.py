"""Loading and validating register map files (TOML or JSON).

The file format is documented in ``protocols/modbus/README.md``. Validation is strict:
unknown keys, wrong types, overlapping registers, duplicate quantities and units that
contradict the quantity vocabulary are errors that name the file, the entry
(``register[3]``, counted from 0 in file order) and the field.

:func:`parse_map` validates an already-parsed document and does no I/O; :func:`loads_map`
parses text; :func:`load_map` and :func:`load_builtin_map` read a file and hand its text to
them.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Final, Literal

from protocols.quantities import QUANTITY_NAME_PATTERN, VOCABULARY, expected_unit

from ._errors import MapError, MapFault
from ._types import (
    MAX_READ_REGISTERS,
    ByteOrder,
    DataType,
    ReadSettings,
    RegisterEntry,
    RegisterMap,
    Table,
    WordOrder,
)

__all__ = [
    "MAP_FORMAT_VERSION",
    "builtin_map_names",
    "load_builtin_map",
    "load_map",
    "loads_map",
    "parse_map",
]

MAP_FORMAT_VERSION: Final = 1
"""The ``version`` a map file must declare."""

_TOP_KEYS: Final = frozenset(
    {"version", "name", "manufacturer", "model", "description", "read", "defaults", "register"}
)
_READ_KEYS: Final = frozenset({"max_registers", "align", "max_gap"})
_DEFAULT_KEYS: Final = frozenset({"table", "type", "word_order", "byte_order"})
_ENTRY_KEYS: Final = frozenset(
    {
        "quantity",
        "address",
        "table",
        "type",
        "word_order",
        "byte_order",
        "scale",
        "unit",
        "description",
    }
)
_NAME_PATTERN: Final = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_HEX_ADDRESS: Final = re.compile(r"^0[xX][0-9a-fA-F]{1,4}$")
_BUILTIN_PACKAGE: Final = "protocols.modbus.maps"


class _Ctx:
    """Where we are in the document, for error messages."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.entry: str | None = None
        self.quantity: str | None = None

    def fail(self, message: str, reason: MapFault, field: str | None = None) -> MapError:
        return MapError(
            message,
            reason=reason,
            source=self.source,
            entry=self.entry,
            quantity=self.quantity,
            field=field,
        )


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "table"
    if isinstance(value, list):
        return "array"
    return type(value).__name__


def _check_keys(ctx: _Ctx, table: Mapping[str, Any], allowed: frozenset[str], prefix: str) -> None:
    for key in table:
        if key not in allowed:
            raise ctx.fail(
                f"unknown key (allowed: {', '.join(sorted(allowed))})",
                MapFault.UNKNOWN_FIELD,
                f"{prefix}{key}",
            )


def _get_str(
    ctx: _Ctx, table: Mapping[str, Any], key: str, field: str, *, required: bool
) -> str | None:
    if key not in table:
        if required:
            raise ctx.fail("required key is missing", MapFault.MISSING_FIELD, field)
        return None
    value = table[key]
    if not isinstance(value, str):
        raise ctx.fail(f"expected a string, got {_type_name(value)}", MapFault.WRONG_TYPE, field)
    return value


def _get_int(ctx: _Ctx, table: Mapping[str, Any], key: str, field: str, default: int) -> int:
    if key not in table:
        return default
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ctx.fail(f"expected an integer, got {_type_name(value)}", MapFault.WRONG_TYPE, field)
    return value


def _enum(ctx: _Ctx, raw: str | None, enum: Any, field: str, reason: MapFault) -> Any:
    try:
        return enum(raw)
    except ValueError:
        allowed = ", ".join(member.value for member in enum)
        message = f"unknown value {raw!r} (expected one of {allowed})"
        raise ctx.fail(message, reason, field) from None


def _parse_read(ctx: _Ctx, doc: Mapping[str, Any]) -> ReadSettings:
    if "read" not in doc:
        return ReadSettings()
    raw = doc["read"]
    if not isinstance(raw, Mapping):
        raise ctx.fail(f"expected a table, got {_type_name(raw)}", MapFault.WRONG_TYPE, "read")
    _check_keys(ctx, raw, _READ_KEYS, "read.")
    max_registers = _get_int(ctx, raw, "max_registers", "read.max_registers", MAX_READ_REGISTERS)
    if not 1 <= max_registers <= MAX_READ_REGISTERS:
        raise ctx.fail(
            f"must be 1..{MAX_READ_REGISTERS}, got {max_registers}",
            MapFault.BAD_VALUE,
            "read.max_registers",
        )
    align = _get_int(ctx, raw, "align", "read.align", 1)
    if align not in (1, 2):
        raise ctx.fail(f"must be 1 or 2, got {align}", MapFault.BAD_VALUE, "read.align")
    max_gap = _get_int(ctx, raw, "max_gap", "read.max_gap", 0)
    if not 0 <= max_gap <= MAX_READ_REGISTERS:
        raise ctx.fail(
            f"must be 0..{MAX_READ_REGISTERS}, got {max_gap}", MapFault.BAD_VALUE, "read.max_gap"
        )
    if max_registers % align:
        raise ctx.fail(
            f"max_registers {max_registers} is not a multiple of align {align}",
            MapFault.BAD_VALUE,
            "read.max_registers",
        )
    return ReadSettings(max_registers=max_registers, align=align, max_gap=max_gap)


def _parse_defaults(ctx: _Ctx, doc: Mapping[str, Any]) -> dict[str, str]:
    if "defaults" not in doc:
        return {}
    raw = doc["defaults"]
    if not isinstance(raw, Mapping):
        raise ctx.fail(f"expected a table, got {_type_name(raw)}", MapFault.WRONG_TYPE, "defaults")
    _check_keys(ctx, raw, _DEFAULT_KEYS, "defaults.")
    out: dict[str, str] = {}
    for key in raw:
        value = _get_str(ctx, raw, key, f"defaults.{key}", required=True)
        assert value is not None
        out[key] = value
    # Validate the defaults now so a typo is reported against the defaults table.
    if "table" in out:
        _enum(ctx, out["table"], Table, "defaults.table", MapFault.UNKNOWN_TABLE)
    if "type" in out:
        _enum(ctx, out["type"], DataType, "defaults.type", MapFault.UNKNOWN_DATA_TYPE)
    for key in ("word_order", "byte_order"):
        if key in out:
            enum = WordOrder if key == "word_order" else ByteOrder
            _enum(ctx, out[key], enum, f"defaults.{key}", MapFault.UNKNOWN_ORDER)
    return out


def _parse_address(ctx: _Ctx, raw: Mapping[str, Any]) -> int:
    if "address" not in raw:
        raise ctx.fail("required key is missing", MapFault.MISSING_FIELD, "address")
    value = raw["address"]
    if isinstance(value, str):
        if not _HEX_ADDRESS.match(value):
            raise ctx.fail(
                f"{value!r} is not an integer or a hex string like '0x2006'",
                MapFault.BAD_VALUE,
                "address",
            )
        value = int(value, 16)
    elif isinstance(value, bool) or not isinstance(value, int):
        raise ctx.fail(
            f"expected an integer (or '0x…' string), got {_type_name(value)}",
            MapFault.WRONG_TYPE,
            "address",
        )
    if not 0 <= value <= 0xFFFF:
        raise ctx.fail(f"{value} is outside 0..0xFFFF", MapFault.BAD_VALUE, "address")
    return value


def _parse_entry(ctx: _Ctx, raw: Any, defaults: Mapping[str, str]) -> RegisterEntry:
    if not isinstance(raw, Mapping):
        raise ctx.fail(f"expected a table, got {_type_name(raw)}", MapFault.WRONG_TYPE)
    quantity = _get_str(ctx, raw, "quantity", "quantity", required=True)
    assert quantity is not None
    ctx.quantity = quantity
    _check_keys(ctx, raw, _ENTRY_KEYS, "")
    if not QUANTITY_NAME_PATTERN.match(quantity):
        raise ctx.fail(
            f"{quantity!r} is not a lower-case snake_case quantity name",
            MapFault.BAD_QUANTITY,
            "quantity",
        )
    address = _parse_address(ctx, raw)

    def pick(key: str) -> str | None:
        value = _get_str(ctx, raw, key, key, required=False)
        return defaults.get(key) if value is None else value

    table_raw = pick("table")
    if table_raw is None:
        raise ctx.fail(
            "required key is missing (and no defaults.table)", MapFault.MISSING_FIELD, "table"
        )
    table = _enum(ctx, table_raw, Table, "table", MapFault.UNKNOWN_TABLE)
    type_raw = pick("type")
    if type_raw is None:
        raise ctx.fail(
            "required key is missing (and no defaults.type)", MapFault.MISSING_FIELD, "type"
        )
    data_type = _enum(ctx, type_raw, DataType, "type", MapFault.UNKNOWN_DATA_TYPE)
    word_order = _enum(
        ctx, pick("word_order") or "big", WordOrder, "word_order", MapFault.UNKNOWN_ORDER
    )
    byte_order = _enum(
        ctx, pick("byte_order") or "big", ByteOrder, "byte_order", MapFault.UNKNOWN_ORDER
    )

    scale: float = 1.0
    if "scale" in raw:
        value = raw["scale"]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ctx.fail(
                f"expected a number, got {_type_name(value)}", MapFault.WRONG_TYPE, "scale"
            )
        if not math.isfinite(value) or value == 0:
            raise ctx.fail(
                f"must be a finite, non-zero number, got {value!r}", MapFault.BAD_VALUE, "scale"
            )
        scale = float(value)

    unit = _get_str(ctx, raw, "unit", "unit", required=True)
    assert unit is not None
    implied = expected_unit(quantity)
    if implied is not None and unit != implied:
        origin = "the quantity vocabulary" if quantity in VOCABULARY else "the name's suffix"
        raise ctx.fail(
            f"unit {unit!r} contradicts {origin}, which fixes {implied!r}",
            MapFault.UNIT_MISMATCH,
            "unit",
        )
    description = _get_str(ctx, raw, "description", "description", required=False) or ""
    if address + data_type.registers > 0x10000:
        raise ctx.fail(
            f"{data_type} at {address:#06x} runs past address 0xFFFF",
            MapFault.BAD_VALUE,
            "address",
        )
    return RegisterEntry(
        quantity=quantity,
        address=address,
        table=table,
        data_type=data_type,
        unit=unit,
        scale=scale,
        word_order=word_order,
        byte_order=byte_order,
        description=description,
    )


def parse_map(document: Mapping[str, Any], *, source: str = "<mapping>") -> RegisterMap:
    """Validate a parsed map document (the TOML/JSON object) and build the map.

    Args:
        document: The parsed file content.
        source: Name used in error messages and kept as ``RegisterMap.source``.

    Returns:
        The validated map, entries ordered by table (input first) then address.

    Raises:
        MapError: Naming ``source``, the entry and the field; see :class:`MapFault`.
    """
    ctx = _Ctx(source)
    if not isinstance(document, Mapping):
        raise ctx.fail(
            f"expected a table/object at the top level, got {_type_name(document)}",
            MapFault.WRONG_TYPE,
        )
    _check_keys(ctx, document, _TOP_KEYS, "")
    if "version" not in document:
        raise ctx.fail(
            f"required key is missing (use version = {MAP_FORMAT_VERSION})",
            MapFault.MISSING_FIELD,
            "version",
        )
    version = document["version"]
    if isinstance(version, bool) or version != MAP_FORMAT_VERSION:
        raise ctx.fail(
            f"unsupported version {version!r} (this meterhub reads version {MAP_FORMAT_VERSION})",
            MapFault.UNSUPPORTED_VERSION,
            "version",
        )
    name = _get_str(ctx, document, "name", "name", required=True)
    assert name is not None
    if not _NAME_PATTERN.match(name):
        raise ctx.fail(
            f"{name!r} must be lower-case letters, digits, '_', '-' or '.'",
            MapFault.BAD_VALUE,
            "name",
        )
    manufacturer = _get_str(ctx, document, "manufacturer", "manufacturer", required=True)
    model = _get_str(ctx, document, "model", "model", required=True)
    assert manufacturer is not None and model is not None
    description = _get_str(ctx, document, "description", "description", required=False) or ""
    read = _parse_read(ctx, document)
    defaults = _parse_defaults(ctx, document)

    if "register" not in document:
        raise ctx.fail("required key is missing", MapFault.MISSING_FIELD, "register")
    raw_entries = document["register"]
    if not isinstance(raw_entries, list):
        raise ctx.fail(
            f"expected an array of tables ([[register]]), got {_type_name(raw_entries)}",
            MapFault.WRONG_TYPE,
            "register",
        )
    if not raw_entries:
        raise ctx.fail("the map has no register entries", MapFault.EMPTY, "register")

    entries: list[tuple[int, RegisterEntry]] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(raw_entries):
        ctx.entry, ctx.quantity = f"register[{index}]", None
        entry = _parse_entry(ctx, raw, defaults)
        if entry.quantity in seen:
            raise ctx.fail(
                f"quantity already defined by register[{seen[entry.quantity]}]",
                MapFault.DUPLICATE_QUANTITY,
                "quantity",
            )
        seen[entry.quantity] = index
        entries.append((index, entry))

    ordered = sorted(entries, key=lambda item: (list(Table).index(item[1].table), item[1].address))
    for (_, prev), (index, cur) in itertools.pairwise(ordered):
        if prev.table is cur.table and cur.address < prev.end:
            later, earlier = (index, cur), (seen[prev.quantity], prev)
            if earlier[0] > later[0]:
                later, earlier = earlier, later
            ctx.entry, ctx.quantity = f"register[{later[0]}]", later[1].quantity
            raise ctx.fail(
                f"{later[1].table} registers {later[1].address:#06x}..{later[1].end - 1:#06x} "
                f"overlap register[{earlier[0]}] ({earlier[1].quantity}, "
                f"{earlier[1].address:#06x}..{earlier[1].end - 1:#06x})",
                MapFault.OVERLAP,
                "address",
            )
    return RegisterMap(
        name=name,
        manufacturer=manufacturer,
        model=model,
        entries=tuple(entry for _, entry in ordered),
        read=read,
        description=description,
        source=source,
    )


def loads_map(
    text: str | bytes, *, fmt: Literal["toml", "json"], source: str = "<string>"
) -> RegisterMap:
    """Parse and validate map text.

    Args:
        text: TOML or JSON text (bytes are decoded as UTF-8).
        fmt: ``"toml"`` or ``"json"``.
        source: Name used in error messages.

    Returns:
        The validated map.

    Raises:
        MapError: ``unreadable`` for bytes that are not UTF-8, ``syntax`` for invalid
            TOML/JSON, ``unknown_format`` for another ``fmt``; otherwise as
            :func:`parse_map`.
    """
    ctx = _Ctx(source)
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ctx.fail(f"not UTF-8 text ({exc})", MapFault.UNREADABLE) from exc
    if fmt == "toml":
        try:
            document: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ctx.fail(f"invalid TOML: {exc}", MapFault.SYNTAX) from exc
    elif fmt == "json":
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ctx.fail(f"invalid JSON: {exc}", MapFault.SYNTAX) from exc
    else:
        raise ctx.fail(f"unknown format {fmt!r} (expected toml or json)", MapFault.UNKNOWN_FORMAT)
    return parse_map(document, source=source)


def _format_of(ctx: _Ctx, name: str) -> Literal["toml", "json"]:
    suffix = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if suffix == "toml":
        return "toml"
    if suffix == "json":
        return "json"
    raise ctx.fail("map files must end in .toml or .json", MapFault.UNKNOWN_FORMAT)


def load_map(path: str | Path) -> RegisterMap:
    """Read and validate a user-supplied map file (``.toml`` or ``.json``).

    Args:
        path: The file.

    Returns:
        The validated map (``source`` is the path as given).

    Raises:
        MapError: ``unreadable`` when the file cannot be read; otherwise as
            :func:`loads_map`.
    """
    source = str(path)
    fmt = _format_of(_Ctx(source), source)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise _Ctx(source).fail(
            f"cannot read the file ({exc.strerror or exc})", MapFault.UNREADABLE
        ) from exc
    return loads_map(data, fmt=fmt, source=source)


def builtin_map_names() -> tuple[str, ...]:
    """Names of the maps shipped with meterhub (file stems under ``protocols/modbus/maps``).

    Returns:
        Sorted map names, e.g. ``("dtsu666", "sdm120", "sdm630", …)``.
    """
    folder = resources.files(_BUILTIN_PACKAGE)
    return tuple(
        sorted(
            item.name.rsplit(".", 1)[0]
            for item in folder.iterdir()
            if item.is_file() and item.name.endswith((".toml", ".json"))
        )
    )


def load_builtin_map(name: str) -> RegisterMap:
    """Load a shipped map by name (``sdm630``, ``sdm120``, ``dtsu666`` …).

    Args:
        name: The map name (file stem).

    Returns:
        The validated map.

    Raises:
        MapError: ``unreadable`` for a name with no shipped file; otherwise as
            :func:`loads_map`. A shipped file whose ``name`` differs from its stem is
            ``bad_value`` on ``name``.
    """
    folder = resources.files(_BUILTIN_PACKAGE)
    if not _NAME_PATTERN.match(name):
        raise MapError(
            f"{name!r} is not a map name",
            reason=MapFault.UNREADABLE,
            source=f"{_BUILTIN_PACKAGE.replace('.', '/')}/{name}",
        )
    for suffix in ("toml", "json"):
        item = folder / f"{name}.{suffix}"
        if item.is_file():
            fmt: Literal["toml", "json"] = "toml" if suffix == "toml" else "json"
            source = f"{_BUILTIN_PACKAGE.replace('.', '/')}/{name}.{suffix}"
            register_map = loads_map(item.read_bytes(), fmt=fmt, source=source)
            if register_map.name != name:
                raise MapError(
                    f"map name {register_map.name!r} differs from the file name {name!r}",
                    reason=MapFault.BAD_VALUE,
                    source=source,
                    field="name",
                )
            return register_map
    raise MapError(
        f"no shipped map named {name!r} (available: {', '.join(builtin_map_names())})",
        reason=MapFault.UNREADABLE,
        source=f"{_BUILTIN_PACKAGE.replace('.', '/')}/{name}",
    )
