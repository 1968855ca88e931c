"""Tests for protocols.modbus: shipped maps, map validation, decoding, encoding, planning.

Register words in ``CASES`` are literal and sourced:

* modbus_meters.md §1 reproduces an Eastron FC04 exchange: ``01 04 00 00 00 02 71 CB`` →
  ``01 04 04 43 66 00 00 0E 1F``, i.e. registers 0x4366 0x0000 = 230.0 V at 0x0000.
* 230.1 V: IEEE-754 float32 of 230.1 is 0x4366199A (sign 0, exponent 0x86 = 2^7,
  mantissa 1.7976562… × 128 = 230.100006…), high word first (ABCD, §1): 0x4366 0x199A.
  0x43661999 would be the next float32 below (230.09999…); rounding to nearest gives …9A.
* DTSU666 (§3): float32 in raw units, voltage ×0.1 V: "a voltage of 2301.5 means 230.15 V".
  2301.5 = 0x450FD800 → registers 0x450F 0xD800.
* 50.0 Hz = 0x42480000, 1234.56 kWh = 0x449A51EC (float32 nearest), −0.5 = 0xBF000000.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from protocols.modbus import (
    MAX_READ_REGISTERS,
    ByteOrder,
    DataType,
    DecodeError,
    DecodeFault,
    EncodeError,
    EncodeFault,
    FunctionCode,
    MapError,
    MapFault,
    PlanError,
    PlanFault,
    ReadRequest,
    ReadSettings,
    RegisterEntry,
    RegisterMap,
    Table,
    WordOrder,
    builtin_map_names,
    decode_registers,
    decode_response,
    decode_value,
    encode_value,
    encode_values,
    load_builtin_map,
    load_map,
    loads_map,
    parse_map,
    plan_reads,
)
from protocols.quantities import VOCABULARY, expected_unit

SDM630 = load_builtin_map("sdm630")
SDM120 = load_builtin_map("sdm120")
DTSU666 = load_builtin_map("dtsu666")

# (map, quantity, registers, value): drives both decode and encode tests.
CASES = [
    # Eastron manual FC04 reply 43 66 00 00 (modbus_meters.md §1).
    (SDM630, "voltage_a_v", (0x4366, 0x0000), 230.0),
    # 230.1 V as float32 ABCD, computed above.
    (SDM630, "voltage_a_v", (0x4366, 0x199A), 230.1),
    (SDM630, "frequency_hz", (0x4248, 0x0000), 50.0),
    (SDM630, "forward_active_total_kwh", (0x449A, 0x51EC), 1234.56),
    # Active power register is W: 1500 W (0x44BB8000) → 1.5 kW.
    (SDM630, "active_power_total_kw", (0x44BB, 0x8000), 1.5),
    (SDM630, "power_factor_total", (0xBF00, 0x0000), -0.5),
    (SDM120, "voltage_a_v", (0x4366, 0x199A), 230.1),
    # DTSU666 raw units (modbus_meters.md §3): 2301.5 × 0.1 V.
    (DTSU666, "voltage_a_v", (0x450F, 0xD800), 230.15),
    # 5000 raw (0x459C4000) × 0.001 A = 5 A.
    (DTSU666, "current_a_a", (0x459C, 0x4000), 5.0),
    # 12345.6 raw (0x4640E666) × 0.1 W = 1234.56 W = 1.23456 kW.
    (DTSU666, "active_power_total_kw", (0x4640, 0xE666), 1.23456),
    # UrAt uint16 ×0.1: 10 → 1.0; IrAt uint16 ×1: 40 stays an int.
    (DTSU666, "pt_ratio", (0x000A,), 1.0),
    (DTSU666, "ct_ratio", (0x0028,), 40),
]


def _entry(register_map: RegisterMap, quantity: str) -> RegisterEntry:
    entry = register_map.entry(quantity)
    assert entry is not None, quantity
    return entry


@pytest.mark.parametrize(("register_map", "quantity", "words", "value"), CASES)
def test_decode_known_registers(
    register_map: RegisterMap, quantity: str, words: tuple[int, ...], value: float
) -> None:
    entry = _entry(register_map, quantity)
    decoded = decode_registers(register_map, list(words), start=entry.address, table=entry.table)
    assert len(decoded) == 1
    assert decoded[0].quantity == quantity
    assert decoded[0].value == value
    assert type(decoded[0].value) is type(value)
    assert decoded[0].unit == entry.unit


@pytest.mark.parametrize(("register_map", "quantity", "words", "value"), CASES)
def test_encode_known_values(
    register_map: RegisterMap, quantity: str, words: tuple[int, ...], value: float
) -> None:
    assert encode_value(_entry(register_map, quantity), value) == words


def test_decode_eastron_manual_reply_frame() -> None:
    # The data bytes of the reply 01 04 04 [43 66 00 00] 0E 1F, as pymodbus returns them.
    reply = bytes.fromhex("0104044366000" + "00E1F")
    registers = list(struct.unpack(">2H", reply[3:7]))
    (value,) = decode_registers(SDM630, registers, start=0x0000)
    assert (value.quantity, value.value, value.unit) == ("voltage_a_v", 230.0, "V")


def test_decode_block_returns_every_contained_entry_in_address_order() -> None:
    values = {"voltage_a_v": 230.1, "voltage_b_v": 231.0, "current_a_a": 5.25}
    blocks = encode_values(SDM630, values)
    assert [(b.start, len(b.registers)) for b in blocks] == [(0x0000, 4), (0x0006, 2)]
    # Build the full 0x0000..0x000B block (voltages then currents), zero where unset.
    words = [0] * 12
    for blk in blocks:
        words[blk.start : blk.end] = blk.registers
    decoded = decode_registers(SDM630, words, start=0)
    assert [v.quantity for v in decoded] == [
        "voltage_a_v",
        "voltage_b_v",
        "voltage_c_v",
        "current_a_a",
        "current_b_a",
        "current_c_a",
    ]
    by_name = {v.quantity: v.value for v in decoded}
    assert by_name["voltage_a_v"] == 230.1
    assert by_name["voltage_b_v"] == 231.0
    assert by_name["current_a_a"] == 5.25
    assert by_name["voltage_c_v"] == 0.0


def test_decode_skips_entries_cut_by_the_block_edge() -> None:
    # Three registers from 0: voltage_a_v fits, voltage_b_v (0x0002-0x0003) is cut.
    decoded = decode_registers(SDM630, [0x4366, 0x199A, 0x4366], start=0)
    assert [v.quantity for v in decoded] == ["voltage_a_v"]


def test_decode_require_reports_missing_quantity() -> None:
    with pytest.raises(DecodeError) as info:
        decode_registers(SDM630, [0x4366, 0x199A], start=0, require=["voltage_b_v"])
    assert info.value.reason is DecodeFault.NOT_COVERED
    assert info.value.quantity == "voltage_b_v"
    with pytest.raises(DecodeError) as info:
        decode_registers(SDM630, [0, 0], start=0, require=["no_such_kwh"])
    assert info.value.reason is DecodeFault.UNKNOWN_QUANTITY


@pytest.mark.parametrize(
    ("registers", "start", "reason"),
    [
        ([0x10000, 0], 0, DecodeFault.BAD_REGISTER),
        ([-1, 0], 0, DecodeFault.BAD_REGISTER),
        ([True, 0], 0, DecodeFault.BAD_REGISTER),
        ([1.5, 0], 0, DecodeFault.BAD_REGISTER),
        ([0, 0], -1, DecodeFault.BAD_BLOCK),
        ([0, 0], 0xFFFF, DecodeFault.BAD_BLOCK),
    ],
)
def test_decode_rejects_bad_blocks(registers: list[int], start: int, reason: DecodeFault) -> None:
    with pytest.raises(DecodeError) as info:
        decode_registers(SDM630, registers, start=start)
    assert info.value.reason is reason
    assert info.value.registers == tuple(registers)


def test_decode_needs_table_when_map_uses_both() -> None:
    both = parse_map(
        {
            "version": 1,
            "name": "both",
            "manufacturer": "x",
            "model": "y",
            "register": [
                {
                    "quantity": "voltage_a_v",
                    "address": 0,
                    "table": "input",
                    "type": "uint16",
                    "scale": 0.1,
                    "unit": "V",
                },
                {
                    "quantity": "status_word_3",
                    "address": 0,
                    "table": "holding",
                    "type": "uint16",
                    "unit": "",
                },
            ],
        }
    )
    with pytest.raises(DecodeError) as info:
        decode_registers(both, [2301], start=0)
    assert info.value.reason is DecodeFault.BAD_BLOCK
    (holding,) = decode_registers(both, [0x0050], start=0, table="holding")
    assert (holding.quantity, holding.value, holding.table) == (
        "status_word_3",
        0x50,
        Table.HOLDING,
    )
    (inp,) = decode_registers(both, [2301], start=0, table=Table.INPUT)
    assert (inp.quantity, inp.value) == ("voltage_a_v", 230.1)


def test_decode_response_checks_length_and_decodes_planned_request() -> None:
    request = plan_reads(SDM630)[0]
    assert (request.function, request.start, request.count) == (
        FunctionCode.READ_INPUT_REGISTERS,
        0,
        80,
    )
    with pytest.raises(DecodeError) as info:
        decode_response(SDM630, request, [0] * 78)
    assert info.value.reason is DecodeFault.LENGTH_MISMATCH
    words = [0] * 80
    for blk in encode_values(SDM630, {"frequency_hz": 50.0, "forward_active_total_kwh": 1234.56}):
        words[blk.start : blk.end] = blk.registers
    decoded = {v.quantity: v.value for v in decode_response(SDM630, request, words)}
    assert set(decoded) == set(request.quantities)
    assert decoded["frequency_hz"] == 50.0
    assert decoded["forward_active_total_kwh"] == 1234.56


# --- word and byte order ---------------------------------------------------------------------

ORDER_CASES = [
    # 0x01020304 as int32 in the four layouts drawn in protocols/modbus/_types.py.
    (WordOrder.BIG, ByteOrder.BIG, (0x0102, 0x0304)),
    (WordOrder.LITTLE, ByteOrder.BIG, (0x0304, 0x0102)),
    (WordOrder.BIG, ByteOrder.LITTLE, (0x0201, 0x0403)),
    (WordOrder.LITTLE, ByteOrder.LITTLE, (0x0403, 0x0201)),
]


@pytest.mark.parametrize(("word_order", "byte_order", "words"), ORDER_CASES)
def test_word_and_byte_order(
    word_order: WordOrder, byte_order: ByteOrder, words: tuple[int, int]
) -> None:
    entry = RegisterEntry(
        quantity="energy_counter",
        address=0,
        table=Table.HOLDING,
        data_type=DataType.UINT32,
        unit="",
        word_order=word_order,
        byte_order=byte_order,
    )
    assert encode_value(entry, 0x01020304) == words
    assert decode_value(entry, words).value == 0x01020304


def test_signed_integers_and_scaled_integers() -> None:
    entry = RegisterEntry("active_power_total_kw", 0, Table.HOLDING, DataType.INT16, "kW", 0.01)
    assert encode_value(entry, -1.5) == (0xFF6A,)  # −150 two's complement
    assert decode_value(entry, (0xFF6A,)).value == -1.5
    assert decode_value(entry, (0xFF6A,)).raw == -150


@pytest.mark.parametrize(
    ("data_type", "value", "reason"),
    [
        (DataType.UINT16, -1, EncodeFault.OUT_OF_RANGE),
        (DataType.UINT16, 65536, EncodeFault.OUT_OF_RANGE),
        (DataType.INT16, 32768, EncodeFault.OUT_OF_RANGE),
        (DataType.INT32, math.nan, EncodeFault.NOT_FINITE),
        (DataType.FLOAT32, 1e39, EncodeFault.OUT_OF_RANGE),
        (DataType.FLOAT32, "230", EncodeFault.WRONG_TYPE),
        (DataType.UINT16, True, EncodeFault.WRONG_TYPE),
    ],
)
def test_encode_errors(data_type: DataType, value: object, reason: EncodeFault) -> None:
    entry = RegisterEntry("x_v", 0, Table.HOLDING, data_type, "V")
    with pytest.raises(EncodeError) as info:
        encode_value(entry, value)  # type: ignore[arg-type]
    assert info.value.reason is reason
    assert info.value.quantity == "x_v"


def test_encode_values_rejects_unknown_quantity_and_merges_blocks() -> None:
    with pytest.raises(EncodeError) as info:
        encode_values(SDM630, {"voltage_z_v": 1.0})
    assert info.value.reason is EncodeFault.UNKNOWN_QUANTITY
    blocks = encode_values(
        SDM630, {"voltage_a_v": 230.0, "voltage_b_v": 231.0, "frequency_hz": 50.0}
    )
    assert [(b.table, b.start, len(b.registers)) for b in blocks] == [
        (Table.INPUT, 0x0000, 4),
        (Table.INPUT, 0x0046, 2),
    ]
    assert blocks[0].registers[:2] == (0x4366, 0x0000)


# --- property tests: encode → decode -------------------------------------------------------

_INT_RANGES = {
    DataType.INT16: (-(2**15), 2**15 - 1),
    DataType.UINT16: (0, 2**16 - 1),
    DataType.INT32: (-(2**31), 2**31 - 1),
    DataType.UINT32: (0, 2**32 - 1),
}
_ORDERS = st.sampled_from(list(WordOrder))
_BYTES = st.sampled_from(list(ByteOrder))
_SCALES = st.sampled_from([1.0, 0.1, 0.01, 0.001, 0.0001, 10.0])


@given(
    data_type=st.sampled_from(list(_INT_RANGES)),
    word_order=_ORDERS,
    byte_order=_BYTES,
    scale=_SCALES,
    data=st.data(),
)
def test_integer_round_trip(
    data_type: DataType,
    word_order: WordOrder,
    byte_order: ByteOrder,
    scale: float,
    data: st.DataObject,
) -> None:
    low, high = _INT_RANGES[data_type]
    raw = data.draw(st.integers(low, high))
    unscaled = RegisterEntry("q_v", 10, Table.HOLDING, data_type, "V", 1.0, word_order, byte_order)
    entry = RegisterEntry("q_v", 10, Table.HOLDING, data_type, "V", scale, word_order, byte_order)
    words = encode_value(unscaled, raw)
    assert len(words) == data_type.registers
    assert all(0 <= w <= 0xFFFF for w in words)
    decoded = decode_value(entry, words)
    assert decoded.raw == raw
    # Value → registers → value is exact for every value the registers can hold.
    assert encode_value(entry, decoded.value) == words
    assert decode_value(entry, encode_value(entry, decoded.value)).value == decoded.value


@given(
    word_order=_ORDERS,
    byte_order=_BYTES,
    scale=_SCALES,
    # Below the float32 maximum so value × scale ÷ scale cannot round past it.
    value=st.floats(-1e38, 1e38).map(lambda x: struct.unpack(">f", struct.pack(">f", x))[0]),
)
def test_float32_round_trip(
    word_order: WordOrder, byte_order: ByteOrder, scale: float, value: float
) -> None:
    entry = RegisterEntry(
        "q_v", 0, Table.INPUT, DataType.FLOAT32, "V", scale, word_order, byte_order
    )
    words = encode_value(entry, value * scale)
    decoded = decode_value(entry, words)
    # The registers hold the float32 nearest to value; decoding then re-encoding is stable.
    assert struct.pack(">f", decoded.raw) == struct.pack(">f", value) or (
        value == 0.0 and decoded.raw == 0.0
    )
    assert encode_value(entry, decoded.value) == words


@given(words=st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)))
def test_any_float32_registers_survive_decode_encode(words: tuple[int, int]) -> None:
    entry = _entry(SDM630, "voltage_a_v")
    decoded = decode_value(entry, words)
    assume(math.isfinite(decoded.value))
    assert encode_value(entry, decoded.value) == words


@given(
    values=st.dictionaries(
        st.sampled_from(SDM630.quantities),
        st.floats(-1e6, 1e6, allow_nan=False, width=32),
        min_size=1,
    )
)
def test_map_round_trip_through_planned_reads(values: dict[str, float]) -> None:
    # A simulated SDM630 filled from values, read back with the planned requests.
    image: dict[int, int] = {}
    for block in encode_values(SDM630, values):
        for offset, word in enumerate(block.registers):
            image[block.start + offset] = word
    decoded: dict[str, float | int] = {}
    for request in plan_reads(SDM630, quantities=values):
        words = [image.get(a, 0) for a in range(request.start, request.end)]
        decoded.update({v.quantity: v.value for v in decode_response(SDM630, request, words)})
    assert set(decoded) == set(values)
    for name, value in values.items():
        entry = _entry(SDM630, name)
        assert math.isclose(decoded[name], value, rel_tol=2**-23, abs_tol=entry.scale * 1e-38)


# --- read planning ----------------------------------------------------------------------------


def test_plan_sdm630_uses_three_aligned_requests() -> None:
    requests = plan_reads(SDM630)
    assert [(r.function, r.start, r.count) for r in requests] == [
        (FunctionCode.READ_INPUT_REGISTERS, 0x0000, 80),
        (FunctionCode.READ_INPUT_REGISTERS, 0x00C8, 6),
        (FunctionCode.READ_INPUT_REGISTERS, 0x0156, 2),
    ]
    assert sum(len(r.quantities) for r in requests) == len(SDM630.entries)


def test_plan_dtsu666_uses_holding_registers() -> None:
    requests = plan_reads(DTSU666)
    assert {r.function for r in requests} == {FunctionCode.READ_HOLDING_REGISTERS}
    first = requests[0]
    assert (first.start, first.count) == (0x0003, 5)  # net .. UrAt through 2 unmapped
    voltages = next(r for r in requests if r.start == 0x2000)
    assert voltages.count == 0x22
    assert "voltage_a_v" in voltages.quantities


def test_plan_respects_limit_gap_and_subset() -> None:
    # 20-register windows over 0x0000-0x004F: 0x0014-0x0023 stops before voltage_avg_v
    # (0x002A-0x002B would make 24); 0x002A-0x003D stops before power_factor_total.
    assert [(r.start, r.count) for r in plan_reads(SDM630, max_registers=20)][:4] == [
        (0x0000, 20),
        (0x0014, 16),
        (0x002A, 20),
        (0x003E, 18),
    ]
    only = plan_reads(SDM630, quantities=["frequency_hz", "voltage_a_v"], max_gap=0)
    assert [(r.start, r.count, r.quantities) for r in only] == [
        (0x0000, 2, ("voltage_a_v",)),
        (0x0046, 2, ("frequency_hz",)),
    ]
    with pytest.raises(PlanError) as info:
        plan_reads(SDM630, quantities=["nope_kwh"])
    assert info.value.reason is PlanFault.UNKNOWN_QUANTITY
    for bad in (0, MAX_READ_REGISTERS + 1):
        with pytest.raises(PlanError) as info:
            plan_reads(SDM630, max_registers=bad)
        assert info.value.reason is PlanFault.BAD_LIMIT
    with pytest.raises(PlanError) as info:
        plan_reads(SDM630, max_registers=1)  # a float32 needs 2
    assert info.value.reason is PlanFault.BAD_LIMIT


def _make_map(entries: list[tuple[int, DataType]], read: ReadSettings) -> RegisterMap:
    return RegisterMap(
        name="prop",
        manufacturer="x",
        model="y",
        entries=tuple(
            RegisterEntry(f"q{i}_v", address, Table.HOLDING, data_type, "V")
            for i, (address, data_type) in enumerate(entries)
        ),
        read=read,
    )


@st.composite
def _layouts(draw: st.DrawFn) -> tuple[list[tuple[int, DataType]], ReadSettings]:
    align = draw(st.sampled_from([1, 2]))
    # 8 fits the widest entry (int64, 4 registers) at an odd address when align = 2.
    max_registers = draw(st.integers(8, MAX_READ_REGISTERS).map(lambda n: n - n % align))
    read = ReadSettings(max_registers, align, draw(st.integers(0, 10)))
    address, entries = draw(st.integers(0, 50)), []
    for _ in range(draw(st.integers(1, 40))):
        data_type = draw(st.sampled_from([DataType.UINT16, DataType.FLOAT32, DataType.INT64]))
        entries.append((address, data_type))
        address += data_type.registers + draw(st.integers(0, 20))
    return entries, read


def _min_requests(entries: list[tuple[int, DataType]], read: ReadSettings) -> int:
    """Reference: dynamic programme over split points of the sorted entries."""
    spans = [(a, a + t.registers) for a, t in sorted(entries)]
    n = len(spans)
    best = [0] + [n + 1] * n
    for end in range(1, n + 1):
        for begin in range(end):
            group = spans[begin:end]
            gaps_ok = all(
                group[k + 1][0] - group[k][1] <= read.max_gap for k in range(len(group) - 1)
            )
            start = group[0][0] - group[0][0] % read.align
            stop = -(-group[-1][1] // read.align) * read.align
            if gaps_ok and stop - start <= read.max_registers:
                best[end] = min(best[end], best[begin] + 1)
    return best[n]


@given(_layouts())
def test_plan_is_minimal_and_covers_every_entry(
    layout: tuple[list[tuple[int, DataType]], ReadSettings],
) -> None:
    entries, read = layout
    register_map = _make_map(entries, read)
    requests = plan_reads(register_map)
    assert len(requests) == _min_requests(entries, read)
    covered = [q for r in requests for q in r.quantities]
    assert sorted(covered) == sorted(register_map.quantities)
    for request in requests:
        assert 1 <= request.count <= read.max_registers
        assert request.start % read.align == 0 and request.count % read.align == 0
        for name in request.quantities:
            entry = _entry(register_map, name)
            assert request.start <= entry.address and entry.end <= request.end


# --- shipped maps -----------------------------------------------------------------------------


def test_shipped_maps_include_the_required_models() -> None:
    assert {"sdm630", "sdm120", "dtsu666"} <= set(builtin_map_names())


@pytest.mark.parametrize("name", builtin_map_names())
def test_every_shipped_map_validates(name: str) -> None:
    register_map = load_builtin_map(name)
    assert register_map.name == name
    assert register_map.entries
    for entry in register_map.entries:
        implied = expected_unit(entry.quantity)
        if implied is not None:
            assert entry.unit == implied, entry.quantity
    # Every entry is read by exactly one planned request.
    covered = [q for r in plan_reads(register_map) for q in r.quantities]
    assert sorted(covered) == sorted(register_map.quantities)


def test_shipped_maps_follow_modbus_meters_md() -> None:
    for register_map in (SDM630, SDM120):
        assert register_map.tables == (Table.INPUT,)
        assert {e.data_type for e in register_map.entries} == {DataType.FLOAT32}
        assert register_map.read.align == 2 and register_map.read.max_registers == 80
    assert DTSU666.tables == (Table.HOLDING,)
    assert _entry(SDM630, "forward_active_total_kwh").address == 0x0048
    assert _entry(SDM630, "reverse_active_total_kwh").address == 0x004A
    assert _entry(SDM630, "active_power_total_kw").address == 0x0034
    assert _entry(SDM630, "combined_active_total_kwh").address == 0x0156
    assert _entry(SDM120, "frequency_hz").address == 0x0046
    assert _entry(DTSU666, "voltage_a_v").address == 0x2006
    assert _entry(DTSU666, "forward_active_total_kwh").address == 0x401E
    assert _entry(DTSU666, "reverse_active_total_kwh").address == 0x4028
    alt = load_builtin_map("dtsu666-4026")
    assert _entry(alt, "forward_active_total_kwh").address == 0x4026
    assert _entry(alt, "reverse_active_total_kwh").address == 0x4030
    vocabulary_used = {q for m in (SDM630, SDM120, DTSU666) for q in m.quantities} & set(VOCABULARY)
    assert {"forward_active_total_kwh", "voltage_a_v", "frequency_hz"} <= vocabulary_used


def test_unknown_builtin_map() -> None:
    with pytest.raises(MapError) as info:
        load_builtin_map("sdm999")
    assert info.value.reason is MapFault.UNREADABLE
    with pytest.raises(MapError):
        load_builtin_map("../maps/sdm630")


# --- user map files ---------------------------------------------------------------------------

GOOD_TOML = """
version = 1
name = "site-meter"
manufacturer = "Acme"
model = "M1"

[read]
max_registers = 60
max_gap = 2

[defaults]
table = "holding"
type = "float32"

[[register]]
quantity = "voltage_a_v"
address = 0x0010
unit = "V"

[[register]]
quantity = "forward_active_total_kwh"
address = "0x0020"
type = "uint32"
word_order = "little"
scale = 0.01
unit = "kWh"
"""


def test_load_user_toml_and_json(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text(GOOD_TOML, encoding="utf-8")
    register_map = load_map(path)
    assert register_map.source == str(path)
    energy = _entry(register_map, "forward_active_total_kwh")
    assert (energy.address, energy.data_type, energy.word_order, energy.scale) == (
        0x20,
        DataType.UINT32,
        WordOrder.LITTLE,
        0.01,
    )
    assert encode_value(energy, 1234.56) == (0xE240, 0x0001)  # 123456 = 0x0001E240, CDAB
    json_path = tmp_path / "site.json"
    doc = {
        "version": 1,
        "name": "site-meter",
        "manufacturer": "Acme",
        "model": "M1",
        "register": [
            {
                "quantity": "voltage_a_v",
                "address": 16,
                "table": "holding",
                "type": "float32",
                "unit": "V",
            }
        ],
    }
    json_path.write_text(json.dumps(doc), encoding="utf-8")
    assert load_map(json_path).entries[0].address == 16


def _bad(text: str) -> MapError:
    with pytest.raises(MapError) as info:
        loads_map(text, fmt="toml", source="bad.toml")
    return info.value


HEADER = 'version = 1\nname = "m"\nmanufacturer = "x"\nmodel = "y"\n'
ENTRY = (
    '[[register]]\nquantity = "voltage_a_v"\naddress = 0\ntable = "input"\n'
    'type = "float32"\nunit = "V"\n'
)

BAD_MAPS = [
    # (text, reason, entry, field)
    (
        HEADER + ENTRY.replace('type = "float32"', 'type = "float33"'),
        MapFault.UNKNOWN_DATA_TYPE,
        "register[0]",
        "type",
    ),
    (
        HEADER + ENTRY.replace('table = "input"', 'table = "coil"'),
        MapFault.UNKNOWN_TABLE,
        "register[0]",
        "table",
    ),
    (HEADER + ENTRY + "colour = 1\n", MapFault.UNKNOWN_FIELD, "register[0]", "colour"),
    (HEADER + "vendor = 1\n" + ENTRY, MapFault.UNKNOWN_FIELD, None, "vendor"),
    (
        HEADER
        + ENTRY
        + ENTRY.replace("voltage_a_v", "voltage_b_v").replace("address = 0", "address = 1"),
        MapFault.OVERLAP,
        "register[1]",
        "address",
    ),
    (HEADER + ENTRY + ENTRY, MapFault.DUPLICATE_QUANTITY, "register[1]", "quantity"),
    (
        HEADER + ENTRY.replace('unit = "V"', 'unit = "kV"'),
        MapFault.UNIT_MISMATCH,
        "register[0]",
        "unit",
    ),
    (
        HEADER + ENTRY.replace("address = 0", 'address = "12"'),
        MapFault.BAD_VALUE,
        "register[0]",
        "address",
    ),
    (
        HEADER + ENTRY.replace("address = 0", "address = 70000"),
        MapFault.BAD_VALUE,
        "register[0]",
        "address",
    ),
    (
        HEADER + ENTRY.replace("address = 0", "address = 1.5"),
        MapFault.WRONG_TYPE,
        "register[0]",
        "address",
    ),
    (HEADER + ENTRY.replace("address = 0\n", ""), MapFault.MISSING_FIELD, "register[0]", "address"),
    (HEADER + ENTRY.replace('unit = "V"\n', ""), MapFault.MISSING_FIELD, "register[0]", "unit"),
    (
        HEADER + ENTRY.replace('type = "float32"\n', ""),
        MapFault.MISSING_FIELD,
        "register[0]",
        "type",
    ),
    (HEADER + ENTRY + "scale = 0\n", MapFault.BAD_VALUE, "register[0]", "scale"),
    (HEADER + ENTRY + 'scale = "0.1"\n', MapFault.WRONG_TYPE, "register[0]", "scale"),
    (
        HEADER + ENTRY + 'word_order = "middle"\n',
        MapFault.UNKNOWN_ORDER,
        "register[0]",
        "word_order",
    ),
    (
        HEADER + ENTRY.replace("voltage_a_v", "Voltage A"),
        MapFault.BAD_QUANTITY,
        "register[0]",
        "quantity",
    ),
    (
        HEADER + "[read]\nmax_registers = 126\n" + ENTRY,
        MapFault.BAD_VALUE,
        None,
        "read.max_registers",
    ),
    (HEADER + "[read]\nalign = 3\n" + ENTRY, MapFault.BAD_VALUE, None, "read.align"),
    (HEADER + "[read]\nburst = 3\n" + ENTRY, MapFault.UNKNOWN_FIELD, None, "read.burst"),
    (
        HEADER + '[defaults]\ntype = "float16"\n' + ENTRY.replace('type = "float32"\n', ""),
        MapFault.UNKNOWN_DATA_TYPE,
        None,
        "defaults.type",
    ),
    (
        HEADER.replace("version = 1", "version = 2") + ENTRY,
        MapFault.UNSUPPORTED_VERSION,
        None,
        "version",
    ),
    (HEADER.replace("version = 1\n", "") + ENTRY, MapFault.MISSING_FIELD, None, "version"),
    (HEADER.replace('model = "y"\n', "") + ENTRY, MapFault.MISSING_FIELD, None, "model"),
    (HEADER + "register = []\n", MapFault.EMPTY, None, "register"),
    (
        HEADER + ENTRY.replace("address = 0", "address = 0xFFFF"),
        MapFault.BAD_VALUE,
        "register[0]",
        "address",
    ),
    (HEADER + "[[register\n", MapFault.SYNTAX, None, None),
]


@pytest.mark.parametrize(("text", "reason", "entry", "field"), BAD_MAPS)
def test_bad_map_names_file_entry_and_field(
    text: str, reason: MapFault, entry: str | None, field: str | None
) -> None:
    error = _bad(text)
    assert error.reason is reason
    assert error.source == "bad.toml"
    assert error.entry == entry
    assert error.field == field
    assert str(error).startswith("bad.toml")
    if field is not None:
        assert f"'{field}'" in str(error)
    if entry is not None:
        assert entry in str(error)


def test_overlap_message_names_both_entries() -> None:
    text = (
        HEADER
        + ENTRY
        + ENTRY.replace("voltage_a_v", "voltage_b_v").replace("address = 0", "address = 1")
    )
    message = str(_bad(text))
    assert "register[1] (voltage_b_v)" in message
    assert "register[0] (voltage_a_v, 0x0000..0x0001)" in message


def test_load_map_file_errors(tmp_path: Path) -> None:
    with pytest.raises(MapError) as info:
        load_map(tmp_path / "missing.toml")
    assert info.value.reason is MapFault.UNREADABLE
    assert "missing.toml" in str(info.value)
    other = tmp_path / "map.yaml"
    other.write_text("x: 1", encoding="utf-8")
    with pytest.raises(MapError) as info:
        load_map(other)
    assert info.value.reason is MapFault.UNKNOWN_FORMAT
    broken = tmp_path / "broken.json"
    broken.write_text("{", encoding="utf-8")
    with pytest.raises(MapError) as info:
        load_map(broken)
    assert info.value.reason is MapFault.SYNTAX
    assert info.value.source == str(broken)


def test_read_request_table() -> None:
    assert ReadRequest(FunctionCode.READ_HOLDING_REGISTERS, 0, 2).table is Table.HOLDING
    assert ReadRequest(FunctionCode.READ_INPUT_REGISTERS, 0, 2).table is Table.INPUT


def test_codec_imports_no_io_modules() -> None:
    import ast

    banned = {
        "asyncio",
        "socket",
        "serial",
        "paho",
        "psycopg",
        "fastapi",
        "time",
        "logging",
        "pymodbus",
    }
    folder = Path(__file__).resolve().parents[2] / "protocols"
    files = [
        *sorted((folder / "modbus").rglob("*.py")),
        *sorted((folder / "mqtt").rglob("*.py")),
        folder / "quantities.py",
    ]
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in banned, f"{path}: imports {name}"


def test_package_docstring_example_runs() -> None:
    import doctest

    import protocols.modbus

    result = doctest.testmod(protocols.modbus, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


def test_float32_extremes_decode_to_the_same_float() -> None:
    entry = _entry(SDM630, "voltage_a_v")
    # Largest finite float32 0x7F7FFFFF and values near it, where a shorter decimal
    # ("3.403e+38") would overflow float32; the smallest subnormal 0x00000001.
    for words in [(0x7F7F, 0xFFFF), (0x7F7F, 0xFFF0), (0xFF7F, 0xFFFF), (0x0000, 0x0001)]:
        value = decode_value(entry, words).value
        assert encode_value(entry, value) == words
    assert decode_value(entry, (0x7F80, 0x0000)).value == math.inf
    assert math.isnan(decode_value(entry, (0x7FC0, 0x0000)).value)
