"""``meterhub read`` through ``read_command`` in a subprocess, against in-test gateways."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from protocols.dlt645 import (
    AbnormalResponse,
    FrameDecoder,
    ReadFollowUpRequest,
    ReadRequest,
    ReadResponse,
    Version,
    decode_message,
    encode_values,
    error_word,
    pack,
)
from protocols.explain import explain

PYTHON = str(Path(sys.executable))
REPO = Path(__file__).resolve().parents[2]
ADDR = "000102030425"


@contextlib.asynccontextmanager
async def gateway(handler: Callable[[object], list[bytes]]) -> AsyncIterator[str]:
    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = FrameDecoder()
        with contextlib.suppress(OSError):
            while data := await reader.read(4096):
                decoder.feed(data)
                for frame in decoder:
                    msg, _ = decode_message(frame, Version.V2007 if frame.function >= 0x11
                                            else Version.V1997)
                    for reply in handler(msg):
                        writer.write(reply)
                    await writer.drain()
        writer.close()

    server = await asyncio.start_server(client, "127.0.0.1", 0)
    try:
        yield f"tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()


async def run_read(url: str, di: str = "00010000", *, as_json: bool = True,
                   protocol: str = "dlt645-2007", timeout: float = 0.5) -> tuple[int, str]:
    code = ("import sys; from collector.read_command import read_command; "
            f"sys.exit(read_command({url!r}, {ADDR!r}, {di!r}, {protocol!r}, {as_json}, "
            f"{timeout}))")
    proc = await asyncio.create_subprocess_exec(
        PYTHON, "-c", code, cwd=str(REPO), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, _err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


def meter(msg: object) -> list[bytes]:
    assert isinstance(msg, ReadRequest | ReadFollowUpRequest)
    if msg.di == 0x00010000:
        return [pack(ReadResponse.from_values(msg.address, msg.di, [1234.56]), preamble=4)]
    if msg.di == 0x9010:
        return [pack(ReadResponse.from_values(msg.address, msg.di, [88.5],
                                              version=Version.V1997))]
    if msg.di == 0x0001FF00:
        block = encode_values(0x0001FF00, [100.0, 10.0, 20.0, 30.0, 40.0])
        if isinstance(msg, ReadRequest):
            return [pack(ReadResponse(msg.address, msg.di, block[:8], more=True))]
        return [pack(ReadResponse(msg.address, msg.di, block[8:], seq=msg.seq,
                                  follow_up_reply=True))]
    if msg.di == 0x04000102:  # a broken meter: always a bad checksum
        bad = bytearray(pack(ReadResponse.from_values(msg.address, msg.di, ["12:00:00"])))
        bad[-2] ^= 0x01
        return [bytes(bad)]
    return [pack(AbnormalResponse(msg.address, 0x11,
                                  error_word(["no_requested_data"], Version.V2007)))]


async def test_ok_prints_exactly_the_decode_object() -> None:
    async with gateway(meter) as url:
        code, out = await run_read(url)
        reply = pack(ReadResponse.from_values(ADDR, 0x00010000, [1234.56]))
        expected, _ = explain(reply.hex(), "dlt645-2007")
        assert code == 0
        assert json.loads(out) == expected
        assert len(out.strip().splitlines()) == 1
        code, out = await run_read(url, as_json=False)
        assert code == 0 and "forward_active_total_kwh=1234.56 kWh" in out


async def test_1997_and_follow_up_frames_merged() -> None:
    async with gateway(meter) as url:
        code, out = await run_read(url, "9010", protocol="dlt645-1997")
        obj = json.loads(out)
        assert code == 0 and obj["protocol"] == "dlt645-1997" and obj["di"] == "9010"
        assert obj["values"][0]["value"] == 88.5
        code, out = await run_read(url, "0001FF00")
        obj = json.loads(out)
        assert code == 0 and obj["follow_up"] is True
        assert [v["value"] for v in obj["values"]] == [100.0, 10.0, 20.0, 30.0, 40.0]
        assert "reply merged from 2 frames" in obj["warnings"]


async def test_abnormal_reply_exits_3_with_the_error_bits() -> None:
    async with gateway(meter) as url:
        code, out = await run_read(url, "02010100")
    obj = json.loads(out)
    assert code == 3
    assert obj["abnormal"] is True and obj["error_bits"] == ["no_requested_data"]


async def test_undecodable_reply_exits_2() -> None:
    async with gateway(meter) as url:
        code, out = await run_read(url, "04000102")
    assert code == 2 and json.loads(out)["error"]["reason"] == "corrupt_reply"


async def test_silent_gateway_exits_4_and_refused_exits_5() -> None:
    async with gateway(lambda _m: []) as url:
        code, out = await run_read(url, timeout=0.2)
    assert code == 4 and json.loads(out)["error"]["reason"] == "no_answer"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, out = await run_read(f"tcp://127.0.0.1:{port}")
    assert code == 5 and json.loads(out)["error"]["reason"] == "unreachable"


async def test_usage_errors_exit_64() -> None:
    code, out = await run_read("tcp://127.0.0.1:1", "0001")
    assert code == 64 and json.loads(out)["error"]["reason"] == "bad_di"


async def test_the_read_path_imports_nothing_heavy() -> None:
    code = ("import sys; import collector.read_command; "
            "print([m for m in ('psycopg', 'numpy', 'pydantic', 'pymodbus') "
            "if m in sys.modules])")
    proc = await asyncio.create_subprocess_exec(PYTHON, "-c", code, cwd=str(REPO),
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    assert out.decode().strip() == "[]"
