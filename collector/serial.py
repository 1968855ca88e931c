"""DL/T 645 on a local serial line: an RS-485 adapter or an optical (IR) head.

A :class:`SerialLink` has the interface of :class:`collector.dlt645.Dlt645Link` (``read``,
``exchange``, ``request``, ``close``, ``stats``, ``endpoint``, ``connected``) but talks to a
serial port instead of a TCP gateway. :func:`open_link` picks the right one from a gateway's
URL.

URL form (protocols.md §1: DL/T 645 runs at 8E1, 2400 bps on most 2007 meters, 1200 bps on
1997 meters and IR heads)::

    serial:///dev/ttyUSB0                                  # 2400 bps, 8E1
    serial:///dev/ttyUSB0?baud=2400&parity=E&bytesize=8&stopbits=1
    serial:///dev/serial/by-id/usb-FTDI_FT232R-if00-port0?baud=1200    # optical head
    serial:///dev/ttyS1?baud=9600&gap_ms=50

Query keys: ``baud`` (or ``baudrate``), ``parity`` (``N``, ``E``, ``O``, ``M``, ``S``),
``bytesize`` (5–8), ``stopbits`` (1, 1.5, 2), ``gap_ms`` (quiet time on the bus between the
end of a reply and the next request, default 20 ms). Unknown keys are rejected, so a typo does
not silently fall back to a default. The path is percent-decoded.

Line discipline (house style R7: the transport owns the port, its timeouts, its retries and
its reopening):

* Half duplex, one request at a time (an ``asyncio.Lock``); every request carries the ``FE``
  preamble of :class:`~collector.dlt645.LinkParams`.
* The wait for a reply is computed from the character time of the line (start bit, data bits,
  parity bit, stop bits): the request's own transmission time plus ``LinkParams.timeout`` for
  the meter to start answering; once reply bytes arrive, the reply gets the transmission time
  of the longest possible frame on top. A ``deadline`` (event-loop time) caps all of it.
* A timeout or a corrupt reply is retried ``LinkParams.retries`` times; then ``NoAnswer`` or
  ``BadReply``. Bytes left over from an earlier exchange (a late reply, a half frame, an RS-485
  adapter's echo of our own request) are counted as stale and never taken for the answer.
* The port is opened on first use (pyserial, exclusive lock) and again after it fails (a USB
  adapter unplugged). ``OSError`` — pyserial's ``SerialException`` is one — and timeouts
  become :class:`~collector.errors.Unreachable`, :class:`~collector.errors.LinkClosed` or
  :class:`~collector.errors.NoAnswer`.

The event loop never blocks: the port's file descriptor is non-blocking and watched with
``loop.add_reader``; writes that do not fit the driver's buffer wait with ``loop.add_writer``.
Only opening the port (a few ``ioctl`` calls) runs in a worker thread. This needs a POSIX
system (Linux, the BSDs, macOS).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlsplit

from collector.dlt645 import (
    Corrupt,
    Dlt645Link,
    DtuModel,
    DtuStream,
    FaultCallback,
    LinkParams,
    LinkStats,
    MessageLink,
)
from collector.errors import BadReply, LinkClosed, NoAnswer, Unreachable
from protocols.dlt645 import (
    Frame,
)

log = logging.getLogger(__name__)

SCHEME: Final = "serial"
"""URL scheme of a DL/T 645 serial line."""
MAX_FRAME: Final = 4 + 12 + 255
"""Longest frame a meter can send: four ``FE``, the 12 framing bytes, 255 data bytes."""
PARITIES: Final = frozenset("NEOMS")

_CLOSED: Final = object()
_CORRUPT: Final = object()


# --------------------------------------------------------------------------------------------
# Line settings and the URL
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SerialLine:
    """Line settings of a serial port.

    Attributes:
        port: Device path (``/dev/ttyUSB0``).
        baudrate: Bits per second.
        bytesize: Data bits per character.
        parity: ``N``, ``E``, ``O``, ``M`` or ``S``.
        stopbits: 1, 1.5 or 2.
        gap: Seconds of bus silence between the end of a reply and the next request.
    """

    port: str
    baudrate: int = 2400
    bytesize: int = 8
    parity: str = "E"
    stopbits: float = 1
    gap: float = 0.02

    @property
    def char_time(self) -> float:
        """Seconds to send one character: start bit, data bits, parity bit, stop bits."""
        bits = 1 + self.bytesize + (0 if self.parity == "N" else 1) + self.stopbits
        return bits / self.baudrate

    def transmit_time(self, nbytes: int) -> float:
        """Seconds to send ``nbytes`` back to back."""
        return nbytes * self.char_time


def parse_serial_url(url: str, *, defaults: SerialLine | None = None,
                     schemes: tuple[str, ...] = (SCHEME,), gap: bool = True) -> SerialLine:
    """Parse ``serial:///dev/ttyUSB0?baud=2400&parity=E&bytesize=8&stopbits=1``.

    Args:
        url: The URL.
        defaults: Settings for keys the URL leaves out (port ignored); DL/T 645's 2400 8E1
            when None.
        schemes: Accepted schemes.
        gap: Whether ``gap_ms`` is accepted (the Modbus client keeps its own frame gaps).

    Returns:
        The line settings.

    Raises:
        ValueError: Another scheme, no device path, an unknown key or a bad value.
    """
    parts = urlsplit(url)
    if parts.scheme not in schemes:
        raise ValueError(f"not a {'/'.join(schemes)} url: {url!r}")
    port = unquote(parts.netloc + parts.path)
    if not port:
        raise ValueError(f"serial url without a device path: {url!r}")
    base = defaults or SerialLine(port)
    values: dict[str, Any] = {"port": port, "baudrate": base.baudrate,
                              "bytesize": base.bytesize, "parity": base.parity,
                              "stopbits": base.stopbits, "gap": base.gap}
    try:
        for key, raw in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
            if key in ("baud", "baudrate"):
                values["baudrate"] = int(raw)
            elif key == "bytesize":
                values["bytesize"] = int(raw)
            elif key == "parity":
                values["parity"] = raw.upper()
            elif key == "stopbits":
                values["stopbits"] = float(raw)
            elif key == "gap_ms" and gap:
                values["gap"] = float(raw) / 1000.0
            else:
                raise ValueError(f"unknown key {key!r}")
    except ValueError as exc:
        raise ValueError(f"bad serial url {url!r}: {exc}") from exc
    line = SerialLine(**values)
    problems = []
    if line.baudrate <= 0:
        problems.append("baud must be positive")
    if line.bytesize not in (5, 6, 7, 8):
        problems.append("bytesize must be 5, 6, 7 or 8")
    if line.parity not in PARITIES:
        problems.append("parity must be one of N, E, O, M, S")
    if line.stopbits not in (1, 1.5, 2):
        problems.append("stopbits must be 1, 1.5 or 2")
    if line.gap < 0:
        problems.append("gap_ms must not be negative")
    if problems:
        raise ValueError(f"bad serial url {url!r}: {'; '.join(problems)}")
    return line


def is_serial_url(url: str | None) -> bool:
    """True for a ``serial://`` URL."""
    return url is not None and urlsplit(url).scheme == SCHEME


# --------------------------------------------------------------------------------------------
# The open port
# --------------------------------------------------------------------------------------------
class _Port:
    """One open serial port: the loop hands received bytes straight to the splitter."""

    def __init__(self, link: SerialLink, ser: Any) -> None:
        self.link = link
        self.ser = ser
        self.fd: int = ser.fileno()
        self.stream = DtuStream(())
        self.queue: asyncio.Queue[object] = asyncio.Queue()
        self.closed = False
        self.last_rx = 0.0
        self.first_rx: float | None = None
        self._writable: asyncio.Future[None] | None = None
        self._loop = asyncio.get_running_loop()
        os.set_blocking(self.fd, False)
        self._loop.add_reader(self.fd, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._gone(f"read failed: {exc}")
            return
        if not data:  # readable with nothing to read: the device went away
            self._gone("the device reports end of file")
            return
        now = self._loop.time()
        self.last_rx = now
        if self.first_rx is None:
            self.first_rx = now
        log.debug("gateway %s rx %s", self.link.gateway_id, data.hex(" "))
        self.handle(self.stream.feed(data))

    def handle(self, events: list[Any]) -> None:
        """Route splitter events: frames to the queue, faults to the link."""
        link = self.link
        for ev in events:
            if isinstance(ev, Frame):
                self.queue.put_nowait(ev)
            elif isinstance(ev, Corrupt):
                if ev.reason == "garbage":
                    link.stats.garbage_bytes += ev.count
                else:
                    link.stats.corrupt += 1
                    self.queue.put_nowait(_CORRUPT)
                link.report(ev)

    def _gone(self, why: str) -> None:
        log.info("gateway %s: serial port %s lost (%s)", self.link.gateway_id,
                 self.link.line.port, why)
        self.close()
        self.queue.put_nowait(_CLOSED)
        self.link._lost(self)

    def reset(self) -> int:
        """Forget what arrived since the last exchange; return the stale frames dropped."""
        n = 0
        while not self.queue.empty():
            item = self.queue.get_nowait()
            if item is _CLOSED:
                self.queue.put_nowait(item)
                break
            n += 1
        self.stream = DtuStream(())
        self.first_rx = None
        return n

    async def send(self, data: bytes) -> None:
        """Write all of ``data`` without blocking the loop.

        Raises:
            OSError: The write failed (``ConnectionResetError`` if the port is closed).
        """
        if self.closed:
            raise ConnectionResetError("the port is closed")
        log.debug("gateway %s tx %s", self.link.gateway_id, data.hex(" "))
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.fd, view)
            except (BlockingIOError, InterruptedError):
                n = 0
            view = view[n:]
            if view:  # the driver's buffer is full: wait until it takes more
                ready = self._writable = self._loop.create_future()
                self._loop.add_writer(self.fd, _resolve, ready)
                try:
                    await ready
                finally:
                    self._writable = None
                    if not self.closed:
                        self._loop.remove_writer(self.fd)

    def close(self) -> None:
        """Stop watching the descriptor and close the port."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self.fd)
        with contextlib.suppress(Exception):
            self._loop.remove_writer(self.fd)
        if self._writable is not None and not self._writable.done():
            self._writable.set_exception(ConnectionResetError("the port is closed"))
        with contextlib.suppress(Exception):
            self.ser.close()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _open_serial(line: SerialLine) -> Any:
    """Open and configure the port (blocking: runs in a worker thread)."""
    import serial  # pyserial

    return serial.Serial(port=line.port, baudrate=line.baudrate, bytesize=line.bytesize,
                         parity=line.parity, stopbits=line.stopbits, timeout=0,
                         write_timeout=0, exclusive=True)


# --------------------------------------------------------------------------------------------
# The link
# --------------------------------------------------------------------------------------------
class SerialLink(MessageLink):
    """DL/T 645 meters on one serial line; the interface of :class:`Dlt645Link`.

    Args:
        gateway_id: The archive id of the line.
        url: ``serial:///dev/ttyUSB0?baud=2400&parity=E&bytesize=8&stopbits=1``.
        params: Timeouts, retries, preamble (``connect_timeout`` bounds opening the port).
        on_fault: Called with corrupt frames and garbage (must not block).

    Raises:
        ValueError: A bad URL, or not a POSIX system.
    """

    def __init__(self, gateway_id: str, url: str, *, params: LinkParams | None = None,
                 on_fault: FaultCallback | None = None) -> None:
        if os.name != "posix":
            raise ValueError(f"gateway {gateway_id}: serial lines need a POSIX system")
        self.gateway_id = gateway_id
        self.url = url
        self.line = parse_serial_url(url)
        self.params = params or LinkParams()
        self.on_fault = on_fault
        self.stats = LinkStats()
        self._lock = asyncio.Lock()
        self._port: _Port | None = None
        self._quiet_from = 0.0

    @property
    def endpoint(self) -> str:
        """The URL."""
        return self.url

    @property
    def connected(self) -> bool:
        """True while the port is open."""
        return self._port is not None and not self._port.closed

    def _lost(self, port: _Port) -> None:
        if self._port is port:
            self._port = None
            self.stats.drops += 1

    async def _ensure(self) -> _Port:
        port = self._port
        if port is not None and not port.closed:
            return port
        try:
            ser = await asyncio.wait_for(asyncio.to_thread(_open_serial, self.line),
                                         self.params.connect_timeout)
        except TimeoutError as exc:
            raise Unreachable(f"opening {self.line.port} timed out",
                              endpoint=self.endpoint) from exc
        except (OSError, ValueError) as exc:  # SerialException is an OSError
            raise Unreachable(f"cannot open {self.line.port}: {exc}",
                              endpoint=self.endpoint) from exc
        port = _Port(self, ser)
        self._port = port
        self.stats.connects += 1
        log.info("gateway %s: opened %s at %d %d%s%g", self.gateway_id, self.line.port,
                 self.line.baudrate, self.line.bytesize, self.line.parity, self.line.stopbits)
        return port

    async def request(self, data: bytes, match: Callable[[Frame], bool] | None, *,
                      deadline: float | None = None) -> Frame | None:
        """Send one request and wait for the frame that answers it, with retries.

        Args:
            data: The request bytes (preamble included).
            match: Which received frame is the answer; None for a broadcast (no answer).
            deadline: Event-loop time after which no attempt waits any longer, retries
                included; None: the line's own timeout per attempt only.

        Returns:
            The answering frame (None for a broadcast).

        Raises:
            Unreachable: The port cannot be opened.
            NoAnswer: No answer within the timeout, after the retries.
            BadReply: Only corrupt replies came back.
            LinkClosed: The port failed during the exchange, after the retries.
        """
        async with self._lock:
            loop = asyncio.get_running_loop()
            last: Exception | None = None
            for attempt in range(self.params.retries + 1):
                if deadline is not None and attempt and loop.time() >= deadline:
                    break
                if attempt:
                    self.stats.retries += 1
                port = await self._ensure()
                quiet = self._quiet_from + self.line.gap - loop.time()
                if quiet > 0:  # let the last speaker release the bus
                    await asyncio.sleep(quiet)
                self.stats.stale += port.reset()
                sent_at = loop.time()
                try:
                    async with asyncio.timeout(self.line.transmit_time(len(data))
                                               + self.params.timeout):
                        await port.send(data)
                except (OSError, TimeoutError) as exc:  # a stuck driver, a vanished adapter
                    port.close()
                    self._lost(port)
                    last = LinkClosed(f"writing to {self.line.port} failed: "
                                      f"{exc or 'timed out'}", endpoint=self.endpoint)
                    continue
                self.stats.requests += 1
                tx_done = sent_at + self.line.transmit_time(len(data))
                if match is None:
                    self._quiet_from = tx_done
                    return None
                frame, last = await self._await_reply(port, match, tx_done, deadline)
                self._quiet_from = max(port.last_rx, tx_done)
                if frame is not None:
                    self.stats.replies += 1
                    return frame
            assert last is not None
            raise last

    async def _await_reply(self, port: _Port, match: Callable[[Frame], bool], tx_done: float,
                           until: float | None) -> tuple[Frame | None, Exception]:
        loop = asyncio.get_running_loop()
        answer_by = tx_done + self.params.timeout
        frame_time = self.line.transmit_time(MAX_FRAME)
        while True:
            deadline = answer_by
            if port.first_rx is not None:  # a reply is on its way: let it finish
                deadline = max(deadline, port.first_rx + frame_time)
            if until is not None:
                deadline = min(deadline, until)
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            if port.queue.empty():
                try:
                    async with asyncio.timeout(remaining):
                        item = await port.queue.get()
                except TimeoutError:
                    continue  # bytes may have arrived meanwhile: recompute the deadline
            else:
                item = port.queue.get_nowait()
            if item is _CLOSED:
                port.queue.put_nowait(item)
                return None, LinkClosed(f"{self.line.port} failed during the exchange",
                                        endpoint=self.endpoint)
            if item is _CORRUPT:
                return None, BadReply(f"corrupt reply on {self.endpoint}",
                                      reason="corrupt_reply")
            assert isinstance(item, Frame)
            if match(item):
                return item, NoAnswer("", endpoint=self.endpoint)
            self.stats.stale += 1  # our own echo, another meter, a late reply
        self.stats.timeouts += 1
        return None, NoAnswer(f"no answer on {self.endpoint} within "
                              f"{self.params.timeout:g} s", endpoint=self.endpoint)

    async def close(self) -> None:
        """Close the port (a later request opens it again)."""
        port = self._port
        self._port = None
        if port is not None:
            port.close()


def open_link(gateway_id: str, url: str | None, params: LinkParams | None = None, *,
              model: DtuModel | None = None,
              on_fault: FaultCallback | None = None) -> Dlt645Link | SerialLink:
    """The DL/T 645 link for a gateway URL.

    Args:
        gateway_id: The archive id.
        url: ``serial://…`` for a local serial line; ``tcp://`` / ``tls://`` for a gateway
            meterhub connects to; None for a DTU that connects in.
        params: Timeouts, retries, preamble.
        model: DTU model (TCP links only).
        on_fault: Called with corrupt frames and garbage.

    Returns:
        A :class:`SerialLink` or a :class:`~collector.dlt645.Dlt645Link`.

    Raises:
        ValueError: A bad URL.
    """
    if is_serial_url(url):
        assert url is not None
        return SerialLink(gateway_id, url, params=params, on_fault=on_fault)
    return Dlt645Link(gateway_id, url=url, params=params, model=model, on_fault=on_fault)


__all__ = [
    "MAX_FRAME",
    "SCHEME",
    "SerialLine",
    "SerialLink",
    "is_serial_url",
    "open_link",
    "parse_serial_url",
]
