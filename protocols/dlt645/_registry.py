"""Data-identifier registry of DL/T 645-2007 (4-byte DI) and DL/T 645-1997 (2-byte DI).

The registry is data: tables of identifiers with their fields (format, scale, sign, unit)
and a few families (energies by type x tariff x settlement period, phase quantities, the
``last n`` records of freezes and events) expanded on lookup. Names follow the quantity
vocabulary of CONTRACTS.md (``forward_active_total_kwh``, ``voltage_a_v`` ...).

DI notation: an identifier is an ``int`` written as in the standard, most significant byte
first (``0x00010000``, ``0x9010``); on the wire the bytes go DI0 first.

Sources: protocols.md §7 and §9 (restating the 2007 standard's Appendix A tables). Entries
marked ``[verify]`` follow the standard's tables from memory and are not yet confirmed on a
real meter.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from ._codes import Version
from ._values import Field, FieldKind

N = FieldKind.NUMBER


@dataclass(frozen=True, slots=True)
class DataItem:
    """What a data identifier's data contains.

    Attributes:
        di: The identifier, most significant byte first.
        description: Short English description.
        fields: The fields in transmission order.
        variable: True when a meter may return a prefix of ``fields`` (energy blocks: total
            plus as many tariffs as the meter has); False when the length must match exactly.
        special: Name of an extra decoding step (``"status_word_3"``, ``"load_record"``).
        group: For variable blocks, fields come in groups of this many (demand + its time).
    """

    di: int
    description: str
    fields: tuple[Field, ...]
    variable: bool = False
    special: str | None = None
    group: int = 1

    @property
    def size(self) -> int:
        """Width of the full field list in bytes."""
        return sum(f.size for f in self.fields)


def _num(name: str, size: int, decimals: int, unit: str | None, signed: bool = False) -> Field:
    return Field(name, N, size, decimals, signed, unit)


# --- 2007 energies: DI = 00 | type | tariff (00 total, 01..3F, FF block) | period -------------
# (DI2, name stem, unit, signed)
ENERGY_TYPES_2007: tuple[tuple[int, str, str, bool], ...] = (
    (0x00, "combined_active", "kWh", True),
    (0x01, "forward_active", "kWh", False),
    (0x02, "reverse_active", "kWh", False),
    (0x03, "combined_reactive_1", "kvarh", True),
    (0x04, "combined_reactive_2", "kvarh", True),
    (0x05, "q1_reactive", "kvarh", False),
    (0x06, "q2_reactive", "kvarh", False),
    (0x07, "q3_reactive", "kvarh", False),
    (0x08, "q4_reactive", "kvarh", False),
    (0x09, "forward_apparent", "kVAh", False),
    (0x0A, "reverse_apparent", "kVAh", False),
)
MAX_TARIFFS = 63
"""Tariff index range of DI1 in energy identifiers (01..3F)."""


def _energy_field(stem: str, tariff: int, unit: str, signed: bool, prefix: str = "") -> Field:
    part = "total" if tariff == 0 else f"t{tariff}"
    return _num(f"{prefix}{stem}_{part}_{unit.lower()}", 4, 2, unit, signed)


# --- 2007 phase quantities: DI = 02 | quantity | phase (00 total, 01..03 A..C, FF) | 00 ------
# (DI2, stem, size, decimals, signed, unit, has total)
PHASE_QUANTITIES_2007: tuple[tuple[int, str, int, int, bool, str, bool], ...] = (
    (0x01, "voltage", 2, 1, False, "V", False),
    (0x02, "current", 3, 3, True, "A", False),
    (0x03, "active_power", 3, 4, True, "kW", True),
    (0x04, "reactive_power", 3, 4, True, "kvar", True),
    (0x05, "apparent_power", 3, 4, True, "kVA", True),
    (0x06, "power_factor", 2, 3, True, "1", True),
    (0x07, "phase_angle", 2, 1, False, "°", False),
)
_PHASES = {0: "total", 1: "a", 2: "b", 3: "c"}
_UNIT_SUFFIX = {"V": "_v", "A": "_a", "kW": "_kw", "kvar": "_kvar", "kVA": "_kva", "1": "",
                "°": "_deg"}


def _phase_field(stem: str, phase: int, size: int, dec: int, signed: bool, unit: str) -> Field:
    return _num(f"{stem}_{_PHASES[phase]}{_UNIT_SUFFIX[unit]}", size, dec, unit, signed)


def _dt6(name: str) -> Field:
    return Field(name, FieldKind.DATETIME_SEC, 6)


def _energy_snapshot(prefix: str) -> tuple[Field, ...]:
    """Forward/reverse active and quadrant 1..4 reactive totals (event records) [verify]."""
    return (
        _num(f"{prefix}forward_active_total_kwh", 4, 2, "kWh"),
        _num(f"{prefix}reverse_active_total_kwh", 4, 2, "kWh"),
        _num(f"{prefix}q1_reactive_total_kvarh", 4, 2, "kvarh"),
        _num(f"{prefix}q2_reactive_total_kvarh", 4, 2, "kvarh"),
        _num(f"{prefix}q3_reactive_total_kvarh", 4, 2, "kvarh"),
        _num(f"{prefix}q4_reactive_total_kvarh", 4, 2, "kvarh"),
    )


_STATUS_WORDS = tuple(Field(f"status_word_{i}", FieldKind.WORD, 2) for i in range(1, 8))

FIXED_2007: dict[int, tuple[str, tuple[Field, ...]]] = {
    # instantaneous extras
    0x02800001: ("neutral current", (_num("neutral_current_a", 3, 3, "A"),)),
    0x02800002: ("grid frequency", (_num("frequency_hz", 2, 2, "Hz"),)),
    0x02800007: ("internal temperature", (_num("temperature_c", 2, 1, "°C", True),)),
    # parameters
    0x04000101: ("date and weekday", (Field("date", FieldKind.DATE_WEEKDAY, 4),)),
    0x04000102: ("time", (Field("time", FieldKind.TIME, 3),)),
    0x04000201: ("year time-zone count", (_num("year_zone_count", 1, 0, None),)),
    0x04000202: ("daily period table count", (_num("day_table_count", 1, 0, None),)),
    0x04000203: ("daily period count", (_num("day_period_count", 1, 0, None),)),
    0x04000204: ("tariff count", (_num("tariff_count", 1, 0, None),)),
    0x04000401: ("communication address", (Field("comm_address", FieldKind.DIGITS, 6),)),
    0x04000402: ("meter number", (Field("meter_number", FieldKind.DIGITS, 6),)),
    0x04000403: ("asset code", (Field("asset_code", FieldKind.ASCII, 32),)),
    0x04000404: ("rated voltage", (Field("rated_voltage", FieldKind.ASCII, 6),)),
    0x04000405: ("rated current", (Field("rated_current", FieldKind.ASCII, 6),)),
    0x04000406: ("maximum current", (Field("max_current", FieldKind.ASCII, 6),)),
    0x04000409: ("active meter constant", (_num("active_constant", 3, 0, "imp/kWh"),)),
    0x0400040A: ("reactive meter constant", (_num("reactive_constant", 3, 0, "imp/kvarh"),)),
    **{0x04000500 + i: (f"running status word {i}", (_STATUS_WORDS[i - 1],)) for i in range(1, 8)},
    # prepaid (2013 amendment) [verify]
    0x00900100: ("remaining energy", (_num("remaining_energy_kwh", 4, 2, "kWh"),)),
    0x00900101: ("overdraft energy", (_num("overdraft_energy_kwh", 4, 2, "kWh"),)),
    0x00900200: ("remaining credit", (_num("remaining_credit_cny", 4, 2, "CNY"),)),
    0x00900201: ("overdraft credit", (_num("overdraft_credit_cny", 4, 2, "CNY"),)),
    # event counters
    0x03110000: ("power-loss events: total count", (_num("power_loss_count", 3, 0, None),)),
    0x03300D00: ("meter-cover-open events: total count", (_num("cover_open_count", 3, 0, None),)),
}
"""Identifiers with one fixed layout."""

BLOCKS_2007: dict[int, tuple[str, tuple[Field, ...]]] = {
    0x040005FF: ("running status words 1..7", _STATUS_WORDS),
}
"""Block identifiers whose items are listed explicitly (prefix allowed)."""

SPECIAL_2007: dict[int, str] = {0x04000503: "status_word_3", 0x040005FF: "status_word_3"}
"""Identifiers with an extra decoding step: status word 3 adds its relay-state bits."""

# "last n" records: (DI with DI0 = 00, DI0 range, description, fields) --------------------------
LAST_N_2007: tuple[tuple[int, range, str, tuple[Field, ...]], ...] = (
    (0x05060000, range(1, 0x3F), "daily freeze time",
     (Field("daily_frozen_time", FieldKind.DATETIME_MIN, 5),)),
    (0x03110000, range(1, 11), "power-loss event record",
     (_dt6("power_loss_start"), _dt6("power_loss_end"))),
    # cover open: start, end, energies before and after [verify]
    (0x03300D00, range(1, 11), "meter-cover-open event record",
     (_dt6("cover_open_start"), _dt6("cover_open_end"),
      *_energy_snapshot("before_"), *_energy_snapshot("after_"))),
    # last trip / close records (2013 amendment): time, operator, energies [verify]
    (0x1D000000, range(1, 11), "trip (relay open) record",
     (_dt6("trip_time"), Field("operator", FieldKind.HEX, 4), *_energy_snapshot(""))),
    (0x1E000000, range(1, 11), "close (relay closed) record",
     (_dt6("close_time"), Field("operator", FieldKind.HEX, 4), *_energy_snapshot(""))),
)

# daily frozen energies: 0506 | type (01 forward, 02 reverse) | last n ---------------------
DAILY_FROZEN_2007: dict[int, tuple[str, str]] = {
    0x01: ("daily_frozen_forward_active", "kWh"),
    0x02: ("daily_frozen_reverse_active", "kWh"),
}

# load-profile records 0600 0001 .. 0606 0001 (class 0 all ... 6 demand) [verify]
LOAD_RECORD_SECTIONS: tuple[tuple[Field, ...], ...] = (
    (
        _num("voltage_a_v", 2, 1, "V"), _num("voltage_b_v", 2, 1, "V"),
        _num("voltage_c_v", 2, 1, "V"),
        _num("current_a_a", 3, 3, "A", True), _num("current_b_a", 3, 3, "A", True),
        _num("current_c_a", 3, 3, "A", True), _num("frequency_hz", 2, 2, "Hz"),
    ),
    tuple(_phase_field("active_power", p, 3, 4, True, "kW") for p in range(4))
    + tuple(_phase_field("reactive_power", p, 3, 4, True, "kvar") for p in range(4)),
    tuple(_phase_field("power_factor", p, 2, 3, True, "1") for p in range(4)),
    (
        _num("forward_active_total_kwh", 4, 2, "kWh"), _num("reverse_active_total_kwh", 4, 2,
                                                            "kWh"),
        _num("combined_reactive_1_total_kvarh", 4, 2, "kvarh", True),
        _num("combined_reactive_2_total_kvarh", 4, 2, "kvarh", True),
    ),
    tuple(_num(f"q{q}_reactive_total_kvarh", 4, 2, "kvarh") for q in range(1, 5)),
    (_num("active_demand_kw", 3, 4, "kW"), _num("reactive_demand_kvar", 3, 4, "kvar")),
)


# --- 2007 maximum demand: DI = 01 | type | tariff (00 total, 01..3F, FF block) | period --------
# each item is the demand XX.XXXX (3 bytes) and its time YYMMDDhhmm (5 bytes) [verify]
DEMAND_TYPES_2007: tuple[tuple[int, str, str, bool], ...] = (
    (0x01, "forward_active", "kW", False),
    (0x02, "reverse_active", "kW", False),
    (0x03, "combined_reactive_1", "kvar", True),
    (0x04, "combined_reactive_2", "kvar", True),
    (0x05, "q1_reactive", "kvar", False),
    (0x06, "q2_reactive", "kvar", False),
    (0x07, "q3_reactive", "kvar", False),
    (0x08, "q4_reactive", "kvar", False),
    (0x09, "forward_apparent", "kVA", False),
    (0x0A, "reverse_apparent", "kVA", False),
)


def _demand_fields(stem: str, tariff: int, unit: str, signed: bool,
                   prefix: str) -> tuple[Field, Field]:
    part = "total" if tariff == 0 else f"t{tariff}"
    name = f"{prefix}{stem}_max_demand_{part}"
    return (_num(f"{name}_{unit.lower()}", 3, 4, unit, signed),
            Field(f"{name}_time", FieldKind.DATETIME_MIN, 5))


def _lookup_2007(di: int) -> DataItem | None:
    if di in FIXED_2007:
        desc, fields = FIXED_2007[di]
        return DataItem(di, desc, fields, special=SPECIAL_2007.get(di))
    if di in BLOCKS_2007:
        desc, fields = BLOCKS_2007[di]
        return DataItem(di, desc, fields, variable=True, special=SPECIAL_2007.get(di))
    d3, d2, d1, d0 = di >> 24, di >> 16 & 0xFF, di >> 8 & 0xFF, di & 0xFF
    if d3 == 0x00:
        for code, stem, unit, signed in ENERGY_TYPES_2007:
            if d2 != code or d0 > 0x0C:
                continue
            prefix = f"last{d0}_" if d0 else ""
            period = f", settlement period -{d0}" if d0 else ""
            if d1 == 0xFF:
                fields = tuple(_energy_field(stem, t, unit, signed, prefix)
                               for t in range(MAX_TARIFFS + 1))
                return DataItem(di, f"{stem} energy block{period}", fields, variable=True)
            if d1 <= MAX_TARIFFS:
                return DataItem(di, f"{stem} energy{period}",
                                (_energy_field(stem, d1, unit, signed, prefix),))
        return None
    if d3 == 0x01:
        for code, stem, unit, signed in DEMAND_TYPES_2007:
            if d2 != code or d0 > 0x0C:
                continue
            prefix = f"last{d0}_" if d0 else ""
            if d1 == 0xFF:
                fields = tuple(f for t in range(MAX_TARIFFS + 1)
                               for f in _demand_fields(stem, t, unit, signed, prefix))
                return DataItem(di, f"{stem} maximum demand block", fields, variable=True,
                                group=2)
            if d1 <= MAX_TARIFFS:
                return DataItem(di, f"{stem} maximum demand",
                                _demand_fields(stem, d1, unit, signed, prefix))
        return None
    if d3 == 0x02 and d0 == 0x00:
        for code, stem, size, dec, signed, unit, has_total in PHASE_QUANTITIES_2007:
            if d2 != code:
                continue
            phases = range(0 if has_total else 1, 4)
            if d1 == 0xFF:
                fields = tuple(_phase_field(stem, p, size, dec, signed, unit) for p in phases)
                return DataItem(di, f"{stem} block", fields)
            if d1 in phases:
                return DataItem(di, stem.replace("_", " "),
                                (_phase_field(stem, d1, size, dec, signed, unit),))
        return None
    if d3 == 0x05 and d2 == 0x06 and 1 <= d0 <= 0x3E and d1 in DAILY_FROZEN_2007:
        stem, unit = DAILY_FROZEN_2007[d1]
        fields = tuple(_energy_field(stem, t, unit, False) for t in range(MAX_TARIFFS + 1))
        return DataItem(di, f"daily frozen {stem[13:]} energy, last {d0}", fields, variable=True)
    if d3 == 0x06 and d1 == 0x00 and d0 == 0x01 and d2 <= 0x06:
        return DataItem(di, f"load-profile record class {d2}", (), special="load_record")
    for base, indices, desc, fields in LAST_N_2007:
        if di & 0xFFFFFF00 == base and d0 in indices:
            return DataItem(di, f"{desc}, last {d0}", fields)
    return None


# --- 1997 -----------------------------------------------------------------------------------
def _energy_1997(stem: str, unit: str, prefix: str = "") -> dict[int, tuple[str, Field]]:
    return {t: (stem, _energy_field(stem, t, unit, False, prefix)) for t in range(5)}


# (DI with low nibble 0, stem, unit, prefix): low nibble 0 total, 1..4 tariffs, F block
ENERGIES_1997: tuple[tuple[int, str, str, str], ...] = (
    (0x9010, "forward_active", "kWh", ""),
    (0x9020, "reverse_active", "kWh", ""),
    (0x9110, "forward_reactive", "kvarh", ""),
    (0x9120, "reverse_reactive", "kvarh", ""),
    (0x9410, "forward_active", "kWh", "last1_"),
    (0x9420, "reverse_active", "kWh", "last1_"),
    (0x9510, "forward_active", "kWh", "last2_"),
    (0x9520, "reverse_active", "kWh", "last2_"),
)

# (DI with low nibble 0, stem, first phase, size, decimals, signed, unit)
# 1997 voltage is whole volts, current 2 decimals; power sign-magnitude like 2007 [verify]
PHASES_1997: tuple[tuple[int, str, int, int, int, bool, str], ...] = (
    (0xB610, "voltage", 1, 2, 0, False, "V"),
    (0xB620, "current", 1, 2, 2, False, "A"),
    (0xB630, "active_power", 0, 3, 4, True, "kW"),
    (0xB640, "reactive_power", 0, 2, 2, True, "kvar"),
    (0xB650, "power_factor", 0, 2, 3, True, "1"),
)

FIXED_1997: dict[int, tuple[str, tuple[Field, ...]]] = {
    0xC010: ("date and weekday", (Field("date", FieldKind.DATE_WEEKDAY, 4),)),
    0xC011: ("time", (Field("time", FieldKind.TIME, 3),)),
    0xC030: ("active meter constant", (_num("active_constant", 3, 0, "imp/kWh"),)),
    0xC031: ("reactive meter constant", (_num("reactive_constant", 3, 0, "imp/kvarh"),)),
    0xC032: ("meter number", (Field("meter_number", FieldKind.DIGITS, 6),)),
    0xC033: ("customer number", (Field("customer_number", FieldKind.DIGITS, 6),)),
    0xC034: ("device code", (Field("device_code", FieldKind.DIGITS, 6),)),
}


def _lookup_1997(di: int) -> DataItem | None:
    if di in FIXED_1997:
        desc, fields = FIXED_1997[di]
        return DataItem(di, desc, fields)
    base, low = di & 0xFFF0, di & 0x000F
    for code, stem, unit, prefix in ENERGIES_1997:
        if base != code:
            continue
        if low == 0xF:
            fields = tuple(_energy_field(stem, t, unit, False, prefix) for t in range(5))
            return DataItem(di, f"{prefix}{stem} energy block", fields, variable=True)
        if low <= 4:
            return DataItem(di, f"{prefix}{stem} energy",
                            (_energy_field(stem, low, unit, False, prefix),))
        return None
    for code, stem, first, size, dec, signed, unit in PHASES_1997:
        if base != code:
            continue
        if low == 0xF:
            fields = tuple(_phase_field(stem, p, size, dec, signed, unit) for p in range(first, 4))
            return DataItem(di, f"{stem} block", fields)
        if first <= low <= 3:
            return DataItem(di, stem.replace("_", " "),
                            (_phase_field(stem, low, size, dec, signed, unit),))
        return None
    return None


@lru_cache(maxsize=4096)
def lookup(di: int, version: Version = Version.V2007) -> DataItem | None:
    """Find the registry entry of a data identifier.

    Args:
        di: The identifier as written in the standard (``0x00010000``, ``0x9010``).
        version: The edition (2007: 4-byte identifiers; 1997: 2-byte).

    Returns:
        The entry, or None for an identifier the registry does not know.
    """
    if version is Version.V1997:
        return _lookup_1997(di) if 0 <= di <= 0xFFFF else None
    return _lookup_2007(di) if 0 <= di <= 0xFFFFFFFF else None
