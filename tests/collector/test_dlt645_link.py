"""DL/T 645 links over real TCP against small in-test gateways built on protocols.dlt645."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from collector.dlt645 import (
    QUEUE_MAX,
    Corrupt,
    Dlt645Link,
    DtuListener,
    DtuModel,
    DtuStream,
    Heartbeat,
    LinkParams,
    Registered,
)
from collector.errors import AbnormalReply, NoAnswer, Unreachable
from protocols.dlt645 import (
    AbnormalResponse,
    Frame,
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

ADDR = "000102030425"
FAST = LinkParams(timeout=0.3, retries=1, connect_timeout=1.0)

Handler = Callable[[object, int], list[bytes] | None]


class FakeGateway:
    """A TCP gateway whose meters answer through ``handler(request, count)``."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests = 0
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def start(self) -> FakeGateway:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = FrameDecoder()
        with contextlib.suppress(OSError):
            while data := await reader.read(4096):
                decoder.feed(data)
                for frame in decoder:
                    self.requests += 1
                    msg, _ = decode_message(frame)
                    for reply in self.handler(msg, self.requests) or []:
                        writer.write(reply)
                    await writer.drain()
        writer.close()

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()


@contextlib.asynccontextmanager
async def gateway(handler: Handler) -> AsyncIterator[FakeGateway]:
    gw = await FakeGateway(handler).start()
    try:
        yield gw
    finally:
        await gw.close()


def energy(msg: object, _n: int) -> list[bytes] | None:
    """A meter with 1234.56 kWh on every forward register and nothing else."""
    assert isinstance(msg, ReadRequest)
    if msg.di == 0x00010000:
        return [pack(ReadResponse.from_values(msg.address, msg.di, [1234.56]), preamble=4)]
    return [pack(AbnormalResponse(msg.address, 0x11, error_word(["no_requested_data"],
                                                                Version.V2007)), preamble=2)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_read_and_abnormal_reply() -> None:
    async with gateway(energy) as gw:
        link = Dlt645Link("G1", url=gw.url, params=FAST)
        result = await link.read(ADDR, 0x00010000)
        assert result.values() == {"forward_active_total_kwh": 1234.56}
        with pytest.raises(AbnormalReply) as err:
            await link.read(ADDR, 0x02010100)
        assert err.value.error_bits == ("no_requested_data",)
        assert link.stats.abnormal == 1 and link.stats.replies == 2
        await link.close()


async def test_follow_up_frames_are_merged() -> None:
    block = encode_values(0x0001FF00, [100.0, 10.0, 20.0, 30.0, 40.0])

    def handler(msg: object, _n: int) -> list[bytes]:
        if isinstance(msg, ReadRequest):
            return [pack(ReadResponse(msg.address, msg.di, block[:8], more=True), preamble=4)]
        assert isinstance(msg, ReadFollowUpRequest)
        if msg.seq == 1:
            return [pack(ReadResponse(msg.address, msg.di, block[8:16], more=True, seq=1,
                                      follow_up_reply=True))]
        return [pack(ReadResponse(msg.address, msg.di, block[16:], seq=msg.seq,
                                  follow_up_reply=True))]

    async with gateway(handler) as gw:
        link = Dlt645Link("G1", url=gw.url, params=FAST)
        result = await link.read(ADDR, 0x0001FF00)
        assert len(result.frames) == 3
        assert result.values() == {"forward_active_total_kwh": 100.0,
                                   "forward_active_t1_kwh": 10.0, "forward_active_t2_kwh": 20.0,
                                   "forward_active_t3_kwh": 30.0, "forward_active_t4_kwh": 40.0}
        await link.close()


async def test_timeout_then_retry_answers_and_late_replies_are_ignored() -> None:
    late: list[bytes] = []

    def handler(msg: object, n: int) -> list[bytes] | None:
        assert isinstance(msg, ReadRequest)
        if n == 1:  # the first request is answered only with the second (too late)
            late.append(pack(ReadResponse.from_values(msg.address, msg.di, [1.0])))
            return None
        return [late.pop(), pack(ReadResponse.from_values(msg.address, msg.di, [2.0]))] \
            if late else [pack(ReadResponse.from_values(msg.address, msg.di, [3.0]))]

    async with gateway(handler) as gw:
        link = Dlt645Link("G1", url=gw.url, params=FAST)
        first = await link.read(ADDR, 0x00010000)
        # the retry's answer arrives right after the late answer to the first attempt; both
        # carry the same DI, so the first matching frame wins (a meter's register value)
        assert first.values()["forward_active_total_kwh"] in (1.0, 2.0)
        assert link.stats.timeouts == 1 and link.stats.retries == 1
        second = await link.read(ADDR, 0x00010000)
        assert second.values()["forward_active_total_kwh"] == 3.0
        assert link.stats.stale >= 1  # the frame left over from the retry was dropped
        await link.close()


async def test_silent_meter_and_refused_connection() -> None:
    async with gateway(lambda _m, _n: None) as gw:
        link = Dlt645Link("G1", url=gw.url, params=FAST)
        with pytest.raises(NoAnswer):
            await link.read(ADDR, 0x00010000)
        assert gw.requests == 2  # one retry
        await link.close()
    link = Dlt645Link("G2", url=f"tcp://127.0.0.1:{free_port()}", params=FAST)
    with pytest.raises(Unreachable):
        await link.read(ADDR, 0x00010000)


async def test_corrupt_reply_is_reported_and_retried() -> None:
    faults: list[tuple[str, Corrupt]] = []

    def handler(msg: object, n: int) -> list[bytes]:
        assert isinstance(msg, ReadRequest)
        good = pack(ReadResponse.from_values(msg.address, msg.di, [5.0]), preamble=4)
        if n == 1:
            bad = bytearray(good)
            bad[-2] ^= 0xFF  # checksum
            return [b"\x01\x02garbage", bytes(bad)]
        return [good]

    async with gateway(handler) as gw:
        link = Dlt645Link("G1", url=gw.url, params=FAST,
                          on_fault=lambda gid, ev: faults.append((gid, ev)))
        result = await link.read(ADDR, 0x00010000)
        assert result.values()["forward_active_total_kwh"] == 5.0
        reasons = {ev.reason for _gid, ev in faults}
        assert reasons == {"garbage", "bad_checksum"}
        assert link.stats.corrupt == 1 and link.stats.garbage_bytes == 9
        assert all(gid == "G1" for gid, _ev in faults)
        await link.close()


async def test_a_flooding_gateway_does_not_stall_another() -> None:
    async def flood(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        junk = pack(ReadResponse.from_values("999999999998", 0x00010000, [9.0])) + b"\x00" * 64
        with contextlib.suppress(OSError):
            while True:
                writer.write(junk * 32)
                await writer.drain()

    server = await asyncio.start_server(flood, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with gateway(energy) as good:
        noisy = Dlt645Link("NOISY", url=f"tcp://127.0.0.1:{port}", params=FAST)
        quiet = Dlt645Link("QUIET", url=good.url, params=FAST)

        async def noisy_reads() -> int:
            failed = 0
            for _ in range(3):
                try:
                    await noisy.read(ADDR, 0x00010000)
                except NoAnswer:
                    failed += 1
            return failed

        async def quiet_reads() -> list[float]:
            return [(await quiet.read(ADDR, 0x00010000)).values()["forward_active_total_kwh"]
                    for _ in range(10)]

        failed, values = await asyncio.gather(noisy_reads(), quiet_reads())
        assert values == [1234.56] * 10
        assert failed == 3  # frames from another address never answer our request
        assert noisy.stats.stale > 0 and noisy.stats.garbage_bytes > 0
        conn = noisy._conn
        assert conn is None or conn.queue.qsize() <= QUEUE_MAX + 1
        await noisy.close()
        await quiet.close()
    server.close()


async def test_dtu_registers_heartbeats_and_is_read() -> None:
    link = Dlt645Link("DTU7", params=FAST)
    listener = DtuListener({"DTU7": link}, host="127.0.0.1", port=0)
    await listener.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    writer.write(b"REG:DTU7\r\nHB")  # the heartbeat arrives split
    await writer.drain()
    decoder = FrameDecoder()

    async def meter() -> None:
        writer.write(b"\r\n")
        while data := await reader.read(4096):
            decoder.feed(data)
            for frame in decoder:
                msg, _ = decode_message(frame)
                assert isinstance(msg, ReadRequest)
                writer.write(b"HB\r\n" + pack(ReadResponse.from_values(msg.address, msg.di,
                                                                       [7.5])) + b"HB\r\n")
                await writer.drain()

    task = asyncio.create_task(meter())
    result = await link.read(ADDR, 0x00010000)
    assert result.values()["forward_active_total_kwh"] == 7.5
    assert link.stats.heartbeats >= 2 and link.stats.garbage_bytes == 0
    # an unknown DTU is turned away
    _r2, w2 = await asyncio.open_connection("127.0.0.1", listener.port)
    w2.write(b"REG:NOBODY\r\n")
    await w2.drain()
    for _ in range(100):
        if listener.unknown:
            break
        await asyncio.sleep(0.01)
    assert listener.unknown == 1
    task.cancel()
    writer.close()
    w2.close()
    await link.close()
    await listener.close()


async def test_unregistered_dtu_is_unreachable() -> None:
    link = Dlt645Link("DTU9", params=LinkParams(timeout=0.2, connect_timeout=0.2))
    with pytest.raises(Unreachable):
        await link.read(ADDR, 0x00010000)


def test_stream_strips_control_lines_only_between_frames() -> None:
    # a frame whose data bytes spell "HB\r\n" after the 0x33 offset is removed
    payload = bytes(b - 0x33 & 0xFF for b in b"HB\r\n")
    frame = pack(ReadResponse(ADDR, 0x04000503, payload[:2]))
    tricky = bytes.fromhex("68") + frame[1:]
    wire = b"REG:G9\r\n" + b"\xfe\xfe" + tricky + b"HB\r\n" + frame
    for chunks in ([wire], [wire[i:i + 1] for i in range(len(wire))]):
        stream = DtuStream([DtuModel()])
        events = [ev for chunk in chunks for ev in stream.feed(chunk)]
        kinds = [type(ev).__name__ for ev in events]
        assert kinds == ["Registered", "Frame", "Heartbeat", "Frame"], kinds
        assert events[0] == Registered("G9")
        assert isinstance(events[1], Frame) and isinstance(events[2], Heartbeat)
        assert stream.garbage_bytes == 0


def test_models_from_settings_accept_hex_patterns() -> None:
    model = DtuModel.from_mapping("acme", {"registration_prefix_hex": "AA55",
                                           "line_end_hex": "0D0A", "heartbeat_hex": "FEFD"})
    stream = DtuStream([model])
    events = stream.feed(bytes.fromhex("AA55") + b"X1" + b"\r\n" + bytes.fromhex("FEFD"))
    assert events == [Registered("X1"), Heartbeat()]
    with pytest.raises(ValueError, match="unknown key"):
        DtuModel.from_mapping("bad", {"hearbeat": "x"})


async def test_a_gateway_that_drops_the_connection_is_reconnected() -> None:
    connections = 0

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        decoder = FrameDecoder()
        with contextlib.suppress(OSError):
            while data := await reader.read(4096):
                if connections == 1:  # the first connection dies mid-request
                    writer.close()
                    return
                decoder.feed(data)
                for frame in decoder:
                    msg, _ = decode_message(frame)
                    assert isinstance(msg, ReadRequest)
                    writer.write(pack(ReadResponse.from_values(msg.address, msg.di, [4.0])))
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(client, "127.0.0.1", 0)
    link = Dlt645Link("G1", url=f"tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}",
                      params=FAST)
    result = await link.read(ADDR, 0x00010000)
    assert result.values()["forward_active_total_kwh"] == 4.0
    assert connections == 2 and link.stats.connects == 2 and link.stats.drops == 1
    await link.close()
    server.close()


async def test_a_silent_dtu_is_dropped_and_may_register_again() -> None:
    link = Dlt645Link("DTU3", params=FAST, model=DtuModel(heartbeat_s=0.05))
    listener = DtuListener({"DTU3": link}, host="127.0.0.1", port=0)
    await listener.start()
    _reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    writer.write(b"REG:DTU3\r\n")
    await writer.drain()
    for _ in range(100):
        if link.connected:
            break
        await asyncio.sleep(0.01)
    assert link.connected
    for _ in range(100):  # no heartbeat for three periods: the link is dropped
        if not link.connected:
            break
        await asyncio.sleep(0.02)
    assert not link.connected and link.stats.drops == 1
    writer.close()
    _r2, w2 = await asyncio.open_connection("127.0.0.1", listener.port)
    w2.write(b"REG:DTU3\r\n")
    await w2.drain()
    for _ in range(100):
        if link.connected:
            break
        await asyncio.sleep(0.01)
    assert link.connected and link.stats.connects == 2
    w2.close()
    await link.close()
    await listener.close()


async def test_dtu_over_tls(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    link = Dlt645Link("DTU5", params=FAST)
    listener = DtuListener({"DTU5": link}, host="127.0.0.1", port=0, tls=server_ctx)
    await listener.start()
    client_ctx = ssl.create_default_context(cafile=str(cert))
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port, ssl=client_ctx,
                                                   server_hostname="localhost")
    writer.write(b"REG:DTU5\r\n")
    await writer.drain()

    async def meter() -> None:
        decoder = FrameDecoder()
        while data := await reader.read(4096):
            decoder.feed(data)
            for frame in decoder:
                msg, _ = decode_message(frame)
                assert isinstance(msg, ReadRequest)
                writer.write(pack(ReadResponse.from_values(msg.address, msg.di, [6.25])))
                await writer.drain()

    task = asyncio.create_task(meter())
    result = await link.read(ADDR, 0x00010000)
    assert result.values()["forward_active_total_kwh"] == 6.25
    # a plain-TCP client is not accepted
    _r, plain = await asyncio.open_connection("127.0.0.1", listener.port)
    plain.write(b"REG:DTU5\r\n")
    await plain.drain()
    await asyncio.sleep(0.1)
    assert link.stats.connects == 1
    task.cancel()
    plain.close()
    writer.close()
    await link.close()
    await listener.close()


def test_stray_start_bytes_and_split_frames() -> None:
    good = pack(ReadResponse.from_values(ADDR, 0x00010000, [12.5]), preamble=2)
    wire = b"\x68\x01\x02" + good + b"\x68" * 3 + good
    for chunks in ([wire], [wire[i:i + 3] for i in range(0, len(wire), 3)]):
        stream = DtuStream()
        events = [ev for chunk in chunks for ev in stream.feed(chunk)]
        frames = [ev for ev in events if isinstance(ev, Frame)]
        garbage = [ev for ev in events if isinstance(ev, Corrupt)]
        assert len(frames) == 2 and all(f.data == frames[0].data for f in frames)
        assert {ev.reason for ev in garbage} == {"garbage"}
        assert sum(ev.count for ev in garbage) == stream.garbage_bytes == 6
