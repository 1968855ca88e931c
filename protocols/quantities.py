"""The quantity vocabulary shared by every meterhub codec.

CONTRACTS.md fixes one set of quantity names for DL/T 645 decoding, CSV imports, MQTT
payloads, Modbus register maps and the database. This module holds that table as data so
that codecs validate names against one source instead of copying the list.

Names outside the table are allowed where a codec says so (Modbus maps carry many more
measurements than the shared table), but they must follow the same style: lower-case
``snake_case`` with the unit as suffix (``voltage_ab_v``, ``reactive_power_total_kvar``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

__all__ = [
    "QUANTITY_NAME_PATTERN",
    "UNIT_SUFFIXES",
    "VOCABULARY",
    "QuantitySpec",
    "expected_unit",
    "is_vocabulary",
]


@dataclass(frozen=True, slots=True)
class QuantitySpec:
    """One row of the CONTRACTS.md quantity table.

    Attributes:
        name: The quantity name, e.g. ``forward_active_total_kwh``.
        unit: The unit the value is expressed in (``"1"`` for ratios, ``""`` for
            status words and other unitless codes).
        dlt645_2007: Data identifier in DL/T 645-2007 (8 hex digits), if any.
        dlt645_1997: Data identifier in DL/T 645-1997 (4 hex digits), if any.
    """

    name: str
    unit: str
    dlt645_2007: str | None = None
    dlt645_1997: str | None = None


def _table() -> dict[str, QuantitySpec]:
    rows = [
        QuantitySpec("forward_active_total_kwh", "kWh", "00010000", "9010"),
        QuantitySpec("forward_active_t1_kwh", "kWh", "00010100", "9011"),
        QuantitySpec("forward_active_t2_kwh", "kWh", "00010200", "9012"),
        QuantitySpec("forward_active_t3_kwh", "kWh", "00010300", "9013"),
        QuantitySpec("forward_active_t4_kwh", "kWh", "00010400", "9014"),
        QuantitySpec("reverse_active_total_kwh", "kWh", "00020000", "9020"),
        QuantitySpec("voltage_a_v", "V", "02010100", "B611"),
        QuantitySpec("voltage_b_v", "V", "02010200", "B612"),
        QuantitySpec("voltage_c_v", "V", "02010300", "B613"),
        QuantitySpec("current_a_a", "A", "02020100", "B621"),
        QuantitySpec("current_b_a", "A", "02020200", "B622"),
        QuantitySpec("current_c_a", "A", "02020300", "B623"),
        QuantitySpec("active_power_total_kw", "kW", "02030000", "B630"),
        QuantitySpec("power_factor_total", "1", "02060000", "B650"),
        QuantitySpec("frequency_hz", "Hz", "02800002", None),
        QuantitySpec("daily_frozen_forward_active_total_kwh", "kWh", "05060101", None),
        QuantitySpec("interval_kwh", "kWh", None, None),
        QuantitySpec("status_word_3", "", "04000503", None),
    ]
    return {row.name: row for row in rows}


VOCABULARY: Final = MappingProxyType(_table())
"""The CONTRACTS.md quantity table, keyed by name (read-only)."""

QUANTITY_NAME_PATTERN: Final = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")
"""Lower-case ``snake_case``: letters and digits, single underscores, no leading digit."""

UNIT_SUFFIXES: Final = MappingProxyType(
    {
        "kwh": "kWh",
        "kvarh": "kvarh",
        "kvah": "kVAh",
        "kw": "kW",
        "kvar": "kvar",
        "kva": "kVA",
        "v": "V",
        "hz": "Hz",
        "deg": "°",
        "pct": "%",
    }
)
"""Name suffix → unit. A name ending in one of these suffixes must use that unit.

``_a`` (ampere) is deliberately absent: it is also the phase-A suffix of unitless names
such as ``power_factor_a``.
"""


def is_vocabulary(name: str) -> bool:
    """Tell whether ``name`` is one of the CONTRACTS.md quantities.

    Args:
        name: A quantity name.

    Returns:
        True for a name in :data:`VOCABULARY`.
    """
    return name in VOCABULARY


def expected_unit(name: str) -> str | None:
    """The unit a quantity name implies, if it implies one.

    Vocabulary names imply their table unit; other names imply the unit of their suffix
    (``voltage_ab_v`` → ``V``). Names with no unit suffix imply nothing.

    Args:
        name: A quantity name.

    Returns:
        The unit string, or None when the name does not fix a unit.
    """
    spec = VOCABULARY.get(name)
    if spec is not None:
        return spec.unit
    suffix = name.rsplit("_", 1)[-1]
    if suffix == name:
        return None
    return UNIT_SUFFIXES.get(suffix)
