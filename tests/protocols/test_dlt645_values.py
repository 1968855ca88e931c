"""Data-identifier registry and value formats: scale, sign, filler, text, dates, content faults."""

from __future__ import annotations

import datetime as dt

import pytest

from protocols.dlt645 import (
    RAW_NAME,
    EncodeError,
    Field,
    FieldKind,
    Version,
    decode_field,
    decode_status_word_3,
    decode_values,
    encode_field,
    encode_values,
    lookup,
)

V7, V97 = Version.V2007, Version.V1997


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def named(di: int, data: bytes, version: Version = V7) -> list[tuple[str, object, str | None]]:
    values, warnings = decode_values(di, data, version)
    assert warnings == (), warnings
    return [(v.name, v.value, v.unit) for v in values]


# (di, version, data after -0x33, expected (name, value, unit) list) ---------------------------
CASES = [
    # protocols.md §6: current 00 50 80 -> sign set, magnitude 005000 -> -5.000 A
    (0x02020100, V7, "00 50 80", [("current_a_a", -5.0, "A")]),
    # LaoYutang/go-dlt645:format_test.go: bytes {0x12, 0x94}, 2 decimals, signed -> -14.12
    (0x02800007, V7, "12 94", [("temperature_c", -141.2, "°C")]),
    (0x02030000, V7, "12 25 80", [("active_power_total_kw", -0.2512, "kW")]),
    (0x00000000, V7, "00 01 00 80", [("combined_active_total_kwh", -1.0, "kWh")]),
    # voltage block of a single-phase meter: FF FF for absent phases -> None
    (0x0201FF00, V7, "20 22 FF FF FF FF",
     [("voltage_a_v", 222.0, "V"), ("voltage_b_v", None, "V"), ("voltage_c_v", None, "V")]),
    (0x0203FF00, V7, "00 10 00 00 05 00 00 05 00 00 00 00",
     [("active_power_total_kw", 0.1, "kW"), ("active_power_a_kw", 0.05, "kW"),
      ("active_power_b_kw", 0.05, "kW"), ("active_power_c_kw", 0.0, "kW")]),
    # forward active block, total + 4 tariffs (the reply length tells how many)
    (0x0001FF00, V7, "00 10 00 00 00 01 00 00 00 02 00 00 00 03 00 00 00 04 00 00",
     [("forward_active_total_kwh", 10.0, "kWh"), ("forward_active_t1_kwh", 1.0, "kWh"),
      ("forward_active_t2_kwh", 2.0, "kWh"), ("forward_active_t3_kwh", 3.0, "kWh"),
      ("forward_active_t4_kwh", 4.0, "kWh")]),
    (0x0001FF00, V7, "00 10 00 00 00 10 00 00",
     [("forward_active_total_kwh", 10.0, "kWh"), ("forward_active_t1_kwh", 10.0, "kWh")]),
    (0x00010300, V7, "99 99 99 99", [("forward_active_t3_kwh", 999999.99, "kWh")]),
    (0x00020001, V7, "00 00 00 00", [("last1_reverse_active_total_kwh", 0.0, "kWh")]),
    (0x02800002, V7, "98 49", [("frequency_hz", 49.98, "Hz")]),
    # maximum demand and its time [verify]
    (0x01010000, V7, "00 25 01 30 08 23 11 26",
     [("forward_active_max_demand_total_kw", 1.25, "kW"),
      ("forward_active_max_demand_total_time", "2026-11-23 08:30", None)]),
    (0x0101FF00, V7, "00 25 01 30 08 23 11 26 00 00 00 FF FF FF FF FF",
     [("forward_active_max_demand_total_kw", 1.25, "kW"),
      ("forward_active_max_demand_total_time", "2026-11-23 08:30", None),
      ("forward_active_max_demand_t1_kw", 0.0, "kW"),
      ("forward_active_max_demand_t1_time", None, None)]),
    (0x02800001, V7, "00 00 00", [("neutral_current_a", 0.0, "A")]),
    # protocols.md §6: ASCII sent low byte first: 56 30 2E 30 38 33 -> "380.0V"
    (0x04000404, V7, "56 30 2E 30 38 33", [("rated_voltage", "380.0V", None)]),
    (0x04000405, V7, "41 35 2E 31 00 00", [("rated_current", "1.5A", None)]),
    (0x04000101, V7, "01 23 11 26", [("date", "2026-11-23", None)]),
    (0x04000102, V7, "59 59 23", [("time", "23:59:59", None)]),
    (0x04000401, V7, "25 04 03 02 01 00", [("comm_address", "000102030425", None)]),
    (0x04000402, V7, "01 00 00 00 00 00", [("meter_number", "000000000001", None)]),
    (0x04000409, V7, "00 12 00", [("active_constant", 1200, "imp/kWh")]),
    (0x04000501, V7, "34 12", [("status_word_1", 0x1234, None)]),
    (0x05060001, V7, "00 00 23 11 26", [("daily_frozen_time", "2026-11-23 00:00", None)]),
    (0x0506013E, V7, "00 00 00 00", [("daily_frozen_forward_active_total_kwh", 0.0, "kWh")]),
    (0x05060101, V7, "34 12 00 00 00 02 00 00",
     [("daily_frozen_forward_active_total_kwh", 12.34, "kWh"),
      ("daily_frozen_forward_active_t1_kwh", 2.0, "kWh")]),
    (0x05060201, V7, "00 00 00 00", [("daily_frozen_reverse_active_total_kwh", 0.0, "kWh")]),
    (0x00900200, V7, "00 50 01 00", [("remaining_credit_cny", 150.0, "CNY")]),
    (0x03110000, V7, "27 00 00", [("power_loss_count", 27, None)]),
    (0x03300D00, V7, "05 00 00", [("cover_open_count", 5, None)]),
    (0x03110001, V7, "00 30 08 01 11 26 15 31 08 01 11 26",
     [("power_loss_start", "2026-11-01 08:30:00", None),
      ("power_loss_end", "2026-11-01 08:31:15", None)]),
    # 1997: voltage whole volts, current two decimals
    (0xB611, V97, "20 02", [("voltage_a_v", 220, "V")]),
    (0xB61F, V97, "20 02 19 02 21 02",
     [("voltage_a_v", 220, "V"), ("voltage_b_v", 219, "V"), ("voltage_c_v", 221, "V")]),
    (0xB621, V97, "50 01", [("current_a_a", 1.5, "A")]),
    (0xB630, V97, "00 25 01", [("active_power_total_kw", 1.25, "kW")]),
    (0xB650, V97, "00 10", [("power_factor_total", 1.0, "1")]),
    (0x9011, V97, "00 01 00 00", [("forward_active_t1_kwh", 1.0, "kWh")]),
    (0x9020, V97, "00 00 00 00", [("reverse_active_total_kwh", 0.0, "kWh")]),
    (0x9410, V97, "00 00 00 00", [("last1_forward_active_total_kwh", 0.0, "kWh")]),
    (0xC030, V97, "00 16 00", [("active_constant", 1600, "imp/kWh")]),
]


@pytest.mark.parametrize(("di", "version", "data", "expected"), CASES)
def test_decode_values(di: int, version: Version, data: str, expected: list) -> None:
    assert named(di, h(data), version) == expected


@pytest.mark.parametrize(("di", "version", "data", "expected"), CASES)
def test_encode_values_round_trip(di: int, version: Version, data: str, expected: list) -> None:
    assert encode_values(di, [value for _, value, _ in expected], version) == h(data)


def test_status_word_3_relay_bits() -> None:
    # protocols.md §8.4: 0x0050 after a trip (bits 4 and 6), 0x0000 after re-close
    st = decode_status_word_3(0x0050)
    assert st.relay_open and st.relay_trip_commanded and not st.pre_trip_alarm
    st = decode_status_word_3(0x1080)
    assert st.pre_trip_alarm and st.protect_active and not st.relay_open
    values, _ = decode_values(0x040005FF, h("00 00 00 00 50 00"))
    assert [(v.name, v.value) for v in values] == [
        ("status_word_1", 0), ("status_word_2", 0), ("status_word_3", 0x50),
        ("relay_open", True), ("relay_trip_commanded", True), ("pre_trip_alarm", False),
        ("protect_active", False)]


# --- content faults: raw bytes plus a warning, never an exception -------------------------------
@pytest.mark.parametrize(
    ("di", "version", "data", "fragment"),
    [
        (0x12345678, V7, "01 02", "unknown data identifier 12345678"),
        (0xB699, V97, "01 02", "unknown data identifier B699"),
        # WKJay/DLT645 issue #5: a 2-byte voltage answered with 3 bytes
        (0x02010100, V7, "00 22 00", "do not fit"),
        (0x0001FF00, V7, "00 00 00", "do not fit"),
        (0x04000503, V7, "", "do not fit"),
        (0x0101FF00, V7, "00 25 01", "do not fit"),  # a demand without its time
    ],
)
def test_content_faults_keep_raw_bytes(di: int, version: Version, data: str,
                                       fragment: str) -> None:
    values, warnings = decode_values(di, h(data), version)
    assert [(v.name, v.value) for v in values] == [(RAW_NAME, h(data).hex().upper())]
    assert len(warnings) == 1 and fragment in warnings[0]


def test_non_bcd_digits_keep_raw_value_with_warning() -> None:
    values, warnings = decode_values(0x00010000, h("3A 00 00 00"))
    assert values[0].name == "forward_active_total_kwh" and values[0].value == "3A000000"
    assert "not BCD" in warnings[0]
    values, warnings = decode_values(0x04000101, h("01 23 13 26"))  # month 13
    assert values[0].value == "2026-13-23" and "calendar" in warnings[0]
    values, warnings = decode_values(0x04000101, h("02 23 11 26"))  # 2026-11-23 is a Monday
    assert "weekday" in warnings[0]
    values, warnings = decode_values(0x04000102, h("00 61 25"))
    assert values[0].value == "25:61:00" and warnings


def test_ascii_that_is_not_ascii() -> None:
    values, warnings = decode_values(0x04000404, h("FF 30 2E 30 38 33"))
    assert values[0].value == "FF302E303833" and "ASCII" in warnings[0]


def test_registry_entries() -> None:
    item = lookup(0x0001FF00)
    assert item is not None and item.variable and item.fields[0].name == "forward_active_total_kwh"
    assert lookup(0x00010000) is not None and lookup(0x00010000).size == 4  # type: ignore[union-attr]
    assert lookup(0x9010, V97) is not None
    assert lookup(0x9010) is None  # a 1997 DI is not a 2007 DI
    assert lookup(0x0001FF0D) is None  # settlement periods end at 0C
    assert lookup(0x05060000) is None  # "last 0" freeze does not exist
    assert lookup(0x1D000001) is not None and lookup(0x1E000001) is not None


def test_load_record() -> None:
    # A0 A0 | len | YYMMDDhhmm | section 1 (U, I, f) AA | five empty sections AA | CS | E5 E5
    section1 = h("00 22 10 22 20 22 50 00 00 00 00 00 00 00 00 00 50")
    body = h("00 15 23 11 26") + section1 + h("AA") + h("AA") * 5
    # the length byte: record size less A0 A0, the length byte itself and CS E5 E5 [verify]
    data = h("A0 A0") + bytes((len(body),)) + body + h("00 E5 E5")
    values, warnings = decode_values(0x06000001, data)
    assert warnings == ()
    assert [(v.name, v.value) for v in values][:5] == [
        ("record_time", "2026-11-23 15:00"), ("voltage_a_v", 220.0), ("voltage_b_v", 221.0),
        ("voltage_c_v", 222.0), ("current_a_a", 0.05)]
    assert values[-1].name == "frequency_hz" and values[-1].value == 50.0
    values, warnings = decode_values(0x06000001, h("01 02 03"))
    assert values[0].name == RAW_NAME and warnings


# --- encoding faults --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("di", "values"),
    [
        (0x02010100, [10000.0]),  # does not fit XXX.X
        (0x02010100, [-1.0]),  # unsigned
        (0x02020100, [800.0]),  # signed 3 bytes: magnitude < 800
        (0x02010100, ["220"]),
        (0x02010100, [True]),
        (0x02010100, [float("nan")]),
        (0x02010100, [1.0, 2.0]),
        (0x0001FF00, []),
        (0x12345678, [1.0]),
        (0x04000404, ["380.0V-too-long"]),
        (0x04000404, ["¼"]),
        (0x04000101, ["2026-02-30"]),
        (0x04000101, ["1999-01-01"]),
        (0x04000401, ["12345678901234"]),
        (0x04000401, ["12345678901G"]),
        (0x04000501, [70000]),
        (0x06000001, [1]),
        (0x0101FF00, [1.25]),  # demand blocks take (demand, time) pairs
    ],
)
def test_encode_values_refuses(di: int, values: list) -> None:
    with pytest.raises(EncodeError):
        encode_values(di, values)


def test_encode_accepts_datetime_objects_and_raw_bytes() -> None:
    assert encode_values(0x04000101, [dt.date(2026, 11, 23)]) == h("01 23 11 26")
    assert encode_values(0x04000102, [dt.time(8, 5, 9)]) == h("09 05 08")
    assert encode_values(0x05060001, [dt.datetime(2026, 11, 23)]) == h("00 00 23 11 26")
    assert encode_values(0x12345678, h("01 02")) == h("01 02")


def test_hex_field() -> None:
    f = Field("operator", FieldKind.HEX, 2)
    assert decode_field(f, h("12 34")) == ("1234", None)
    assert encode_field(f, "1234") == h("12 34")
    with pytest.raises(EncodeError):
        encode_field(f, "12")
