"""``explain`` and ``meterhub decode``: the CONTRACTS.md JSON object, exit codes, start-up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from protocols.explain import explain, parse_hex

KEYS = ["protocol", "address", "control", "direction", "abnormal", "follow_up", "function", "di",
        "values", "fields", "error_bits", "warnings"]
TRIP = "68 61 10 01 30 12 15 68 1C 10 35 6A 39 35 34 33 33 33 4D 33 33 33 33 63 45 CC 2C 16"  # [CL]
VOLTAGE = "68 61 01 00 00 00 00 68 91 06 33 34 34 35 34 43 10 16"  # [WS]
ABNORMAL = "68 12 90 78 56 34 12 68 D1 01 35 8D 16"  # [CS]
BLOCK_1997 = ("68 95 32 06 00 00 00 68 81 16 52 C3 6C 33 33 33 33 33 33 33 36 33 33 33 57 33 33 33"
              " 45 33 33 33 B7 16")  # [KT]
MENU = Path(sys.executable).parent / "meterhub"


def test_trip_request() -> None:
    obj, code = explain(TRIP)
    assert code == 0
    assert obj == {
        "protocol": "dlt645-2007",
        "address": "151230011061",
        "control": 0x1C,
        "direction": "request",
        "abnormal": False,
        "follow_up": False,
        "function": "remote_control",
        "di": None,
        "values": [],
        "fields": {"command": "trip", "command_code": 0x1A, "deadline": "2099-12-30 00:00:00",
                   "password_level": 2, "password": "020637", "operator": "00000001",
                   "reserved": 0},
        "error_bits": [],
        "warnings": [],
    }
    assert list(obj) == KEYS


def test_read_reply_values_are_numbers() -> None:
    obj, code = explain(VOLTAGE)
    assert code == 0
    assert obj["di"] == "02010100" and obj["function"] == "read"
    assert obj["direction"] == "response"
    assert obj["values"] == [{"name": "voltage_a_v", "value": 100.1, "unit": "V"}]
    assert json.loads(json.dumps(obj))["values"][0]["value"] == 100.1


def test_abnormal_reply() -> None:
    obj, code = explain(ABNORMAL)
    assert code == 0
    assert obj["abnormal"] is True and obj["control"] == 0xD1
    assert obj["error_bits"] == ["no_requested_data"]
    assert obj["fields"] == {"error_word": 2}


def test_1997_detected_and_block_decoded() -> None:
    obj, code = explain(BLOCK_1997)
    assert code == 0
    assert obj["protocol"] == "dlt645-1997" and obj["di"] == "901F"
    assert [v["value"] for v in obj["values"]] == [0.39, 0.0, 0.03, 0.24, 0.12]


def test_status_word_and_filler() -> None:
    obj, _ = explain("68 61 10 01 30 12 15 68 91 06 36 38 33 37 83 33 BE 16")  # [CL]
    assert obj["values"][0] == {"name": "status_word_3", "value": 80, "unit": None}
    assert {"name": "relay_open", "value": True, "unit": None} in obj["values"]
    # a voltage block with FF filler for phases B and C
    from protocols.dlt645 import ReadResponse, pack

    wire = pack(ReadResponse.from_values("000000000001", 0x0201FF00, [230.1, None, None]))
    obj, _ = explain(wire.hex())
    assert [v["value"] for v in obj["values"]] == [230.1, None, None]


@pytest.mark.parametrize(
    "text",
    [
        VOLTAGE.lower(),
        VOLTAGE.replace(" ", ""),
        " ".join("0x" + b for b in VOLTAGE.split()),
        "FE FE FE FE " + VOLTAGE,
        "0X" + VOLTAGE.replace(" ", ""),
    ],
)
def test_input_forms(text: str) -> None:
    obj, code = explain(text)
    assert code == 0 and obj["values"][0]["value"] == 100.1 and obj["warnings"] == []


def test_extra_bytes_reported() -> None:
    obj, code = explain(VOLTAGE + " " + ABNORMAL)
    assert code == 0 and obj["di"] == "02010100"
    assert len(obj["warnings"]) == 1 and "13 bytes after the frame" in obj["warnings"][0]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (VOLTAGE[:-5] + "11 16", "bad_checksum"),
        (VOLTAGE[:-2] + "17", "bad_end"),
        (VOLTAGE[:-6], "truncated"),
        ("00 " + VOLTAGE, "no_start"),
        ("68 61 01 00 00 00 00 69 91 06 33 34 34 35 34 43 10 16", "bad_second_start"),
        ("68 61 01 00 00 00 00 68 91 05 33 34 34 35 34 43 0F 16", "bad_length"),
        ("68 6", "bad_hex"),
        ("zz", "bad_hex"),
        ("", "truncated"),
    ],
)
def test_frame_faults(text: str, reason: str) -> None:
    obj, code = explain(text)
    assert code == 2
    assert set(obj) == {"error"} and obj["error"]["reason"] == reason
    assert obj["error"]["message"]


def test_unknown_protocol_name() -> None:
    obj, code = explain(VOLTAGE, "iec62056")
    assert code == 2 and obj["error"]["reason"] == "bad_protocol"


def test_forced_edition_and_unknown_identifier() -> None:
    obj, code = explain(VOLTAGE, "dlt645-1997")
    assert code == 0 and obj["protocol"] == "dlt645-1997" and obj["function"] == "unknown"
    # 0x11 is no 1997 function: the data stays raw (offset removed) with a warning
    assert obj["warnings"] and obj["fields"]["data"] == "000101020110"
    from protocols.dlt645 import ReadResponse, pack

    obj, code = explain(pack(ReadResponse("000000000001", 0x12345678, b"\x01\x02")).hex())
    assert code == 0
    assert obj["values"] == [{"name": "raw", "value": "0102", "unit": None}]
    assert "unknown data identifier 12345678" in obj["warnings"][0]


def test_requests_fields() -> None:
    from protocols.dlt645 import (
        BAUD_BYTES,
        ChangeBaudRequest,
        ClearRequest,
        TimeSyncRequest,
        WriteRequest,
        encode_values,
        pack,
    )

    obj, _ = explain(pack(TimeSyncRequest("2026-11-23 08:00:00"), preamble=4).hex())
    assert obj["function"] == "time_sync" and obj["address"] == "999999999999"
    assert obj["fields"] == {"time": "2026-11-23 08:00:00"}
    obj, _ = explain(pack(ChangeBaudRequest("000000000001", BAUD_BYTES[9600])).hex())
    assert obj["fields"] == {"baud": 9600, "baud_code": 0x20}
    obj, _ = explain(pack(ChangeBaudRequest("000000000001", 0x03)).hex())
    assert obj["fields"] == {"baud": None, "baud_code": 3} and "baud byte 03" in obj["warnings"][0]
    obj, _ = explain(pack(ClearRequest("000000000001", 0x1B, 2, 0x123456, 7, 0xFFFFFFFF)).hex())
    assert obj["function"] == "clear_events"
    assert obj["fields"] == {"password_level": 2, "password": "123456", "operator": "00000007",
                             "event_di": "FFFFFFFF"}
    data = encode_values(0x04000102, ["08:00:00"])
    obj, _ = explain(pack(WriteRequest("000000000001", 0x04000102, data, 4, 0, 1)).hex())
    assert obj["function"] == "write" and obj["di"] == "04000102"
    assert obj["values"] == [{"name": "time", "value": "08:00:00", "unit": None}]


def test_parse_hex() -> None:
    assert parse_hex("0x68 0X16, ab") == bytes.fromhex("6816ab")


# --- the console script, end to end -----------------------------------------------------------
def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(MENU), "decode", *args], capture_output=True, text=True,
                          timeout=60, check=False)


def test_cli_decode_ok() -> None:
    proc = _run(*TRIP.split())
    assert proc.returncode == 0, proc.stderr
    obj = json.loads(proc.stdout)
    assert list(obj) == KEYS and obj["fields"]["command"] == "trip"


def test_cli_decode_protocol_option() -> None:
    proc = _run("--protocol", "dlt645-1997", *BLOCK_1997.split())
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["di"] == "901F"


def test_cli_decode_frame_fault_exit_2() -> None:
    proc = _run(*(VOLTAGE[:-5] + "11 16").split())
    assert proc.returncode == 2
    assert json.loads(proc.stdout) == {
        "error": {"reason": "bad_checksum", "message": "checksum is 11, the bytes sum to 10"}}


def test_explain_path_imports_nothing_heavy() -> None:
    heavy = ["numpy", "pydantic", "numba", "psycopg", "fastapi", "paho", "asyncio"]
    code = (
        f"import sys; from protocols.explain import explain; explain({VOLTAGE!r}); "
        f"print(sorted(set({heavy!r}) & set(sys.modules)))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert proc.stdout.strip() == "[]"
