"""DL/T 645 on a serial line, against a meter simulated on the far end of a pseudo-terminal.

The link opens the pty's slave path with pyserial exactly as it would open ``/dev/ttyUSB0``;
the simulated meter reads and writes the master side and builds its replies with
:mod:`protocols.dlt645`. No assertion depends on timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import termios
from collections.abc import AsyncIterator, Callable

import pytest

from collector.dlt645 import Corrupt, Dlt645Link, LinkParams
from collector.errors import AbnormalReply, BadReply, LinkError, NoAnswer, Unreachable
from collector.serial import SerialLine, SerialLink, open_link, parse_serial_url
from protocols.dlt645 import (
    AbnormalResponse,
    FrameDecoder,
    ReadFollowUpRequest,
    ReadRequest,
    ReadResponse,
    TimeSyncRequest,
    Version,
    decode_message,
    error_word,
    pack,
)

ADDR = "000102030425"
FAST = LinkParams(timeout=0.3, retries=1, connect_timeout=2.0)

Handler = Callable[[object, int], list[bytes] | None]


class PtyMeter:
    """A meter on the master side of a pty; ``handler(request, n)`` returns the reply bytes."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.master, self.slave = os.openpty()
        self.path = os.ttyname(self.slave)
        os.set_blocking(self.master, False)
        self.decoder = FrameDecoder()
        self.received = bytearray()
        self.requests = 0
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(self.master, self._readable)

    def url(self, query: str = "baud=2400&parity=E&bytesize=8&stopbits=1") -> str:
        return f"serial://{self.path}?{query}" if query else f"serial://{self.path}"

    def _readable(self) -> None:
        try:
            data = os.read(self.master, 4096)
        except OSError:
            self.loop.remove_reader(self.master)
            return
        self.received += data
        self.decoder.feed(data)
        for frame in self.decoder:
            self.requests += 1
            msg, _ = decode_message(frame)
            for reply in self.handler(msg, self.requests) or []:
                os.write(self.master, reply)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.loop.remove_reader(self.master)
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


@contextlib.asynccontextmanager
async def meter(handler: Handler) -> AsyncIterator[PtyMeter]:
    m = PtyMeter(handler)
    try:
        yield m
    finally:
        m.close()


def energy(msg: object, _n: int) -> list[bytes] | None:
    """1234.56 kWh on the forward active register; ``no_requested_data`` for the rest."""
    assert isinstance(msg, ReadRequest)
    if msg.di == 0x00010000:
        return [pack(ReadResponse.from_values(msg.address, msg.di, [1234.56]), preamble=4)]
    return [pack(AbnormalResponse(msg.address, 0x11, error_word(["no_requested_data"],
                                                                Version.V2007)))]


def corrupt(frame: bytes) -> bytes:
    """The frame with a wrong checksum."""
    return frame[:-2] + bytes([(frame[-2] + 1) & 0xFF]) + frame[-1:]


async def test_read_sends_fe_preamble_and_sets_8e1() -> None:
    async with meter(energy) as m:
        link = SerialLink("S1", m.url(), params=FAST)
        result = await link.read(ADDR, 0x00010000)
        assert result.values()["forward_active_total_kwh"] == pytest.approx(1234.56)
        # the request went out with four FE wake-up bytes, then the frame
        sent = bytes(m.received)
        assert sent.startswith(b"\xfe\xfe\xfe\xfe\x68")
        assert sent[4:] == pack(ReadRequest(ADDR, 0x00010000))
        # the port was opened 2400 bps, 8 data bits, even parity, 1 stop bit; a Linux pty
        # takes the speed but always reports CS8 without parity, so parity is checked on the
        # pyserial side (which applied it to the termios flags without complaint)
        assert link._port is not None
        ser = link._port.ser
        assert (ser.baudrate, ser.bytesize, ser.parity, ser.stopbits) == (2400, 8, "E", 1)
        _i, _o, cflag, _l, ispeed, ospeed, _cc = termios.tcgetattr(link._port.fd)
        assert cflag & termios.CSIZE == termios.CS8 and not cflag & termios.CSTOPB
        assert ispeed == ospeed == termios.B2400
        with pytest.raises(AbnormalReply) as exc:
            await link.read(ADDR, 0x02010100)
        assert "no_requested_data" in exc.value.error_bits
        assert link.stats.requests == 2 and link.stats.replies == 2
        await link.close()
        assert not link.connected


async def test_reply_in_pieces_with_echo_and_garbage() -> None:
    """An adapter echoing our request, line noise, and a reply trickling in byte by byte."""
    m: PtyMeter

    def chatty(msg: object, _n: int) -> list[bytes] | None:
        assert isinstance(msg, ReadRequest)
        reply = pack(ReadResponse.from_values(msg.address, msg.di, [42.5]), preamble=2)
        echo = pack(msg, preamble=4)
        return [echo, b"\x00\x11"] + [reply[i:i + 1] for i in range(len(reply))]

    faults: list[Corrupt] = []
    async with meter(chatty) as m:
        link = SerialLink("S1", m.url(), params=FAST,
                          on_fault=lambda _gid, ev: faults.append(ev))
        result = await link.read(ADDR, 0x00010000)
        assert result.values()["forward_active_total_kwh"] == pytest.approx(42.5)
        assert link.stats.stale >= 1  # the echo is not taken for the answer
        assert link.stats.garbage_bytes >= 2 and faults
        await link.close()


async def test_silent_meter_is_no_answer_after_retries() -> None:
    async with meter(lambda _msg, _n: None) as m:
        link = SerialLink("S1", m.url(), params=FAST)
        with pytest.raises(NoAnswer):
            await link.read(ADDR, 0x00010000)
        assert m.requests == FAST.retries + 1
        assert link.stats.timeouts == FAST.retries + 1
        # a deadline already passed allows one attempt and no retry
        loop = asyncio.get_running_loop()
        with pytest.raises(NoAnswer):
            await link.read(ADDR, 0x00010000, deadline=loop.time())
        assert link.stats.requests == FAST.retries + 2
        await link.close()


async def test_corrupt_reply_is_retried_then_bad_reply() -> None:
    def first_corrupt(msg: object, n: int) -> list[bytes] | None:
        assert isinstance(msg, ReadRequest)
        good = pack(ReadResponse.from_values(msg.address, msg.di, [7.0]), preamble=4)
        return [corrupt(good) if n == 1 else good]

    faults: list[Corrupt] = []
    async with meter(first_corrupt) as m:
        link = SerialLink("S1", m.url(), params=FAST,
                          on_fault=lambda _gid, ev: faults.append(ev))
        result = await link.read(ADDR, 0x00010000)
        assert result.values()["forward_active_total_kwh"] == pytest.approx(7.0)
        assert link.stats.corrupt == 1 and link.stats.retries == 1
        assert [f.reason for f in faults] == ["bad_checksum"]
        await link.close()

    def always_corrupt(msg: object, _n: int) -> list[bytes] | None:
        assert isinstance(msg, ReadRequest)
        return [corrupt(pack(ReadResponse.from_values(msg.address, msg.di, [7.0])))]

    async with meter(always_corrupt) as m:
        link = SerialLink("S1", m.url(), params=FAST)
        with pytest.raises(BadReply) as exc:
            await link.read(ADDR, 0x00010000)
        assert exc.value.reason == "corrupt_reply"
        assert m.requests == FAST.retries + 1
        await link.close()


async def test_follow_up_frames_are_merged() -> None:
    def two_frames(msg: object, _n: int) -> list[bytes] | None:
        if isinstance(msg, ReadFollowUpRequest):
            assert msg.seq == 1
            return [pack(ReadResponse(msg.address, msg.di, b"\x02\x00\x00\x00", seq=1,
                                      follow_up_reply=True))]
        assert isinstance(msg, ReadRequest)
        return [pack(ReadResponse(msg.address, msg.di, b"\x01\x00\x00\x00", more=True))]

    async with meter(two_frames) as m:
        link = SerialLink("S1", m.url(""), params=FAST)
        result = await link.read(ADDR, 0x00010000)
        assert result.response.data == b"\x01\x00\x00\x00\x02\x00\x00\x00"
        assert len(result.frames) == 2 and m.requests == 2
        await link.close()


async def test_broadcast_time_sync_waits_for_nothing() -> None:
    seen: list[object] = []

    def silent(msg: object, _n: int) -> list[bytes] | None:
        seen.append(msg)
        return None

    async with meter(silent) as m:
        link = SerialLink("S1", m.url(), params=FAST)
        sync = TimeSyncRequest("2026-01-02 12:00:00")
        assert await link.exchange(sync, expect_reply=False) is None
        # the next request follows on the same half-duplex line
        with pytest.raises(NoAnswer):
            await link.read(ADDR, 0x00010000)
        assert seen[0] == sync and len(seen) == 1 + FAST.retries + 1
        assert link.stats.timeouts == FAST.retries + 1
        await link.close()


async def test_port_errors_become_link_errors() -> None:
    link = SerialLink("S9", "serial:///dev/meterhub-no-such-tty", params=FAST)
    with pytest.raises(Unreachable):
        await link.read(ADDR, 0x00010000)

    m = PtyMeter(energy)
    link = SerialLink("S1", m.url(), params=FAST)
    await link.read(ADDR, 0x00010000)
    m.close()  # the adapter goes away
    with pytest.raises(LinkError):
        await link.read(ADDR, 0x00010000)
    await link.close()


async def test_url_forms_and_factory() -> None:
    line = parse_serial_url("serial:///dev/ttyUSB0")
    assert line == SerialLine("/dev/ttyUSB0", 2400, 8, "E", 1)
    line = parse_serial_url("serial:///dev/ttyUSB1?baudrate=1200&parity=n&stopbits=2&gap_ms=50")
    assert (line.baudrate, line.parity, line.stopbits, line.gap) == (1200, "N", 2, 0.05)
    assert parse_serial_url("serial:///dev/serial/by-id/usb-FTDI%20x-port0").port == (
        "/dev/serial/by-id/usb-FTDI x-port0")
    assert line.char_time == pytest.approx(11 / 1200)  # start + 8 data + 2 stop
    for bad in ("serial://", "serial:///dev/ttyUSB0?baud=fast", "serial:///dev/ttyUSB0?parity=X",
                "serial:///dev/ttyUSB0?speed=2400", "serial:///dev/ttyUSB0?bytesize=9",
                "tcp://127.0.0.1:9000"):
        with pytest.raises(ValueError):
            parse_serial_url(bad)
    assert isinstance(open_link("S1", "serial:///dev/ttyUSB0", FAST), SerialLink)
    assert isinstance(open_link("G1", "tcp://127.0.0.1:9000", FAST), Dlt645Link)
    dtu = open_link("DTU1", None, FAST)
    assert isinstance(dtu, Dlt645Link) and dtu.url is None


async def test_write_larger_than_the_driver_buffer_waits_for_room() -> None:
    async with meter(energy) as m:
        link = SerialLink("S1", m.url(), params=FAST)
        await link.read(ADDR, 0x00010000)
        port = link._port
        assert port is not None
        before = len(m.received)
        await port.send(b"\xfe" * 65536)  # far more than a pty buffers: waits on add_writer
        for _ in range(500):
            if len(m.received) - before >= 65536:
                break
            await asyncio.sleep(0.01)
        assert len(m.received) - before == 65536
        await link.close()
