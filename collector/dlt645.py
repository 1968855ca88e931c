"""DL/T 645 over TCP: gateway links in both connection directions, and the DTU listener.

A :class:`Dlt645Link` is one gateway: one TCP connection and one RS-485 bus behind it, so one
request at a time (an ``asyncio.Lock``). It owns the socket, its timeouts, retries and
reconnects (house style R7); bytes go through a :class:`DtuStream`, which strips DTU
registration and heartbeat lines at frame boundaries and feeds everything else to the codec's
:class:`~protocols.dlt645.FrameDecoder`. ``OSError`` and ``TimeoutError`` become
:mod:`collector.errors` link errors.

Connection directions (CONTRACTS.md ``[[gateway]] mode``):

* ``connect``: meterhub connects to ``tcp://host:port`` (``tls://`` for TLS) on first use and
  again after a drop.
* ``listen``: the DTU connects to meterhub's :class:`DtuListener`, sends
  ``REG:<gateway id>\\r\\n`` and then ``HB\\r\\n`` every 60 s (protocols.md §11a; both strings
  are per-model settings, see :class:`DtuModel`). The listener hands the connection to the
  gateway's link; a request waits up to the timeout for the DTU to (re)register.

Connections are asyncio protocols: the event loop hands received bytes straight to the splitter
and a waiting request wakes on the matching frame. A DTU silent for three heartbeat periods is
dropped and may register again.

Garbage bytes and corrupt frames are counted and reported through ``on_fault`` (the poller
quarantines them as ``dlt645-frame``); a reply that does not answer the outstanding request
(a late reply after a timeout, another meter's frame) is counted as stale and ignored.

This module imports only the standard library, :mod:`protocols.dlt645` and
:mod:`collector.errors`, so ``meterhub read`` stays fast to start.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from collector.errors import AbnormalReply, BadReply, LinkClosed, NoAnswer, Unreachable
from protocols.dlt645 import (
    NEED_DATA,
    AbnormalResponse,
    Frame,
    FrameDecoder,
    FrameError,
    Message,
    ReadFollowUpRequest,
    ReadRequest,
    ReadResponse,
    Version,
    decode_message,
    pack,
    parse_address,
)

if TYPE_CHECKING:
    import ssl

log = logging.getLogger(__name__)

GARBAGE_REPORT_BYTES: Final = 4096
"""Garbage is reported in chunks of at most this many bytes."""
QUEUE_MAX: Final = 64
"""Frames buffered per connection; a flooding gateway loses its oldest frames, never memory."""


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DtuModel:
    """Registration and heartbeat format of one DTU model (protocols.md §11a).

    Attributes:
        name: Model name as in the archive's ``[[gateway]] model``.
        registration_prefix: Bytes that open a registration line.
        line_end: Bytes that end a registration line.
        heartbeat: The heartbeat bytes.
        heartbeat_s: Expected heartbeat period (a link silent for three periods is dropped).
        max_id_len: Longest gateway id accepted in a registration line.
    """

    name: str = "generic-dtu"
    registration_prefix: bytes = b"REG:"
    line_end: bytes = b"\r\n"
    heartbeat: bytes = b"HB\r\n"
    heartbeat_s: float = 60.0
    max_id_len: int = 64

    @classmethod
    def from_mapping(cls, name: str, data: Mapping[str, Any]) -> DtuModel:
        """Build a model from settings: text values, or ``*_hex`` alternatives for binary ones.

        Args:
            name: Model name.
            data: Keys ``registration_prefix``, ``line_end``, ``heartbeat`` (text, escapes as
                in TOML) or ``registration_prefix_hex``, ``line_end_hex``, ``heartbeat_hex``;
                ``heartbeat_s``; ``max_id_len``.

        Returns:
            The model.

        Raises:
            ValueError: An unknown key, bad hex or an empty pattern.
        """
        known = {"registration_prefix", "line_end", "heartbeat", "heartbeat_s", "max_id_len"}
        kwargs: dict[str, Any] = {"name": name}
        for key, value in data.items():
            base = key.removesuffix("_hex")
            if base not in known:
                raise ValueError(f"DTU model {name}: unknown key {key!r}")
            if key.endswith("_hex"):
                kwargs[base] = bytes.fromhex(str(value))
            elif base in ("heartbeat_s",):
                kwargs[base] = float(value)
            elif base == "max_id_len":
                kwargs[base] = int(value)
            else:
                kwargs[base] = str(value).encode("latin-1")
        model = cls(**kwargs)
        if not model.registration_prefix or not model.line_end or not model.heartbeat:
            raise ValueError(f"DTU model {name}: patterns must not be empty")
        return model


DTU_MODELS: Final[dict[str, DtuModel]] = {"generic-dtu": DtuModel()}
"""Built-in DTU models; settings may add more."""


@dataclass(frozen=True, slots=True)
class LinkParams:
    """Connection parameters of a DL/T 645 link (CONTRACTS.md defaults).

    Attributes:
        preamble: ``FE`` bytes sent before each request.
        timeout: Seconds to wait for a reply.
        retries: Extra attempts after a timeout or corrupt reply.
        connect_timeout: Seconds to connect (or, for a DTU, to wait for it to register).
        follow_up_max: Most follow-up frames merged into one read.
        tls: An ``ssl.SSLContext`` for ``tls://`` gateways, or None.
    """

    preamble: int = 4
    timeout: float = 5.0
    retries: int = 1
    connect_timeout: float = 5.0
    follow_up_max: int = 16
    tls: ssl.SSLContext | None = None


# --------------------------------------------------------------------------------------------
# The sans-I/O stream splitter
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Registered:
    """A DTU registration line was received."""

    gateway_id: str


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A DTU heartbeat was received."""


@dataclass(frozen=True, slots=True)
class Corrupt:
    """A corrupt frame or garbage bytes were received.

    Attributes:
        reason: ``FrameFault`` value, or ``garbage``.
        raw: The bytes.
        message: Human explanation.
        count: Bytes of garbage it stands for (1 for a corrupt frame).
    """

    reason: str
    raw: bytes
    message: str
    count: int = 1


StreamEvent = Frame | Registered | Heartbeat | Corrupt


class DtuStream:
    """Split a byte stream into frames, DTU control lines and garbage (no I/O).

    Control lines are recognised only between frames: inside a frame (whose extent the length
    byte gives) any byte value may occur. Everything that is not a control line goes to a
    :class:`FrameDecoder`.

    Args:
        models: DTU models whose registration and heartbeat lines to strip (empty for a plain
            gateway).

    Attributes:
        decoder: The frame decoder.
        heartbeats: Heartbeats seen.
        garbage_bytes: Bytes that were neither frames nor control lines.
    """

    def __init__(self, models: Sequence[DtuModel] = ()) -> None:
        self.decoder = FrameDecoder()
        self._models = tuple(models)
        self._pending = bytearray()
        self._remaining = 0
        self._garbage = bytearray()
        self.heartbeats = 0
        self.garbage_bytes = 0
        firsts = {0xFE, 0x68}
        for m in self._models:
            firsts.update((m.heartbeat[0], m.registration_prefix[0]))
        self._interesting = re.compile(
            b"[" + b"".join(re.escape(bytes([f])) for f in sorted(firsts)) + b"]")
        self._garbage_count = 0

    def _control(self, rest: bytes) -> tuple[StreamEvent | None, int] | None:
        """Match a control line at the start of ``rest``.

        Returns:
            ``(event, length)`` for a match, ``(None, 0)`` when more bytes are needed, None
            when ``rest`` does not start a control line.
        """
        for m in self._models:
            if rest.startswith(m.heartbeat):
                return Heartbeat(), len(m.heartbeat)
            if len(rest) < len(m.heartbeat) and m.heartbeat.startswith(rest):
                return None, 0
            pre = m.registration_prefix
            if rest.startswith(pre):
                end = rest.find(m.line_end, len(pre))
                if end < 0:
                    if len(rest) <= len(pre) + m.max_id_len + len(m.line_end):
                        return None, 0
                    continue
                ident = rest[len(pre):end].decode("ascii", "replace").strip()
                if ident and len(ident) <= m.max_id_len:
                    return Registered(ident), end + len(m.line_end)
                continue
            if len(rest) < len(pre) and pre.startswith(rest):
                return None, 0
        return None

    def feed(self, data: bytes) -> list[StreamEvent]:
        """Take received bytes; return what they completed, in order.

        Args:
            data: Any number of bytes.

        Returns:
            Frames, registrations, heartbeats and :class:`Corrupt` events.
        """
        buf = self._pending
        buf += data
        events: list[StreamEvent] = []
        out = bytearray()
        i = 0
        n = len(buf)
        while i < n:
            if self._remaining:
                take = min(self._remaining, n - i)
                out += buf[i:i + take]
                i += take
                self._remaining -= take
                if not self._remaining:  # a whole candidate frame: decode it on its own
                    events.extend(self._decode(bytes(out)))
                    out.clear()
                continue
            b = buf[i]
            if self._models:
                matched = self._control(bytes(buf[i:i + 128]))
                if matched is not None:
                    event, used = matched
                    if event is None:
                        break
                    if out:  # frames before the control line first
                        events.extend(self._decode(bytes(out)))
                        out.clear()
                    if isinstance(event, Heartbeat):
                        self.heartbeats += 1
                    events.append(event)
                    i += used
                    continue
            if b == 0xFE:
                out.append(b)
                i += 1
                continue
            if b == 0x68:
                if n - i < 10:
                    break
                if buf[i + 7] == 0x68:
                    self._remaining = 12 + buf[i + 9]
                    continue
                # a 68 that does not open a frame header is garbage like any other byte
            m = self._interesting.search(buf, i + 1)  # skip a garbage run in one step
            j = m.start() if m else n
            run = buf[i:j]
            if len(self._garbage) < GARBAGE_REPORT_BYTES:
                self._garbage += run[:GARBAGE_REPORT_BYTES - len(self._garbage)]
            self.garbage_bytes += len(run)
            self._garbage_count += len(run)
            self.decoder.discarded += len(run)
            i = j
        del buf[:i]
        if out:
            events.extend(self._decode(bytes(out)))
        if self._garbage_count:
            raw = bytes(self._garbage)
            events.append(Corrupt("garbage", raw,
                                  f"{self._garbage_count} bytes outside any frame"
                                  + (f" (first {len(raw)} kept)" if len(raw) < self._garbage_count
                                     else ""), self._garbage_count))
            self._garbage.clear()
            self._garbage_count = 0
        return events

    def _decode(self, data: bytes) -> list[StreamEvent]:
        self.decoder.feed(data)
        events: list[StreamEvent] = []
        while True:
            try:
                frame = self.decoder.next_frame()
            except FrameError as exc:
                # one report per corrupt candidate: the length byte bounded it, so do not
                # let the decoder hunt for frames inside its remaining bytes
                events.append(Corrupt(exc.reason.value, exc.data, str(exc)))
                if not self._remaining:
                    self.decoder = FrameDecoder()
                continue
            if frame is NEED_DATA:
                return events
            events.append(frame)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Links
# --------------------------------------------------------------------------------------------
FaultCallback = Callable[[str, Corrupt], None]
"""``on_fault(gateway_id, event)``: must not block (the poller queues it for the quarantine)."""

_CLOSED: Final = object()
_CORRUPT: Final = object()


@dataclass(slots=True)
class LinkStats:
    """Counters of one link."""

    requests: int = 0
    replies: int = 0
    timeouts: int = 0
    retries: int = 0
    corrupt: int = 0
    garbage_bytes: int = 0
    stale: int = 0
    abnormal: int = 0
    connects: int = 0
    drops: int = 0
    heartbeats: int = 0
    dropped_frames: int = 0


class _Connection(asyncio.Protocol):
    """One live TCP connection of a link: the loop hands received bytes straight to it."""

    def __init__(self, link: Dlt645Link, stream: DtuStream,
                 idle_timeout: float | None = None) -> None:
        self.link = link
        self.stream = stream
        self.idle_timeout = idle_timeout
        self.transport: asyncio.Transport | None = None
        self.queue: asyncio.Queue[object] = asyncio.Queue()
        self.closed = False
        self._writable = asyncio.Event()
        self._writable.set()
        self._idle: asyncio.TimerHandle | None = None
        self._gone = asyncio.Event()

    # asyncio.Protocol callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport and start the idle watch."""
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._arm_idle()

    def data_received(self, data: bytes) -> None:
        """Split and route received bytes."""
        log.debug("gateway %s rx %s", self.link.gateway_id, data.hex(" "))
        self._arm_idle()
        self.handle(self.stream.feed(data))

    def eof_received(self) -> bool:
        """The peer closed its side: close ours."""
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        """Wake a waiting request and tell the link."""
        if self._idle is not None:
            self._idle.cancel()
        self._writable.set()
        if exc is not None:
            log.info("gateway %s: connection lost (%s)", self.link.gateway_id, exc)
        self.closed = True
        self._gone.set()
        self.queue.put_nowait(_CLOSED)
        self.link._lost(self)

    def pause_writing(self) -> None:
        """The send buffer is full."""
        self._writable.clear()

    def resume_writing(self) -> None:
        """The send buffer drained."""
        self._writable.set()

    # helpers
    def _arm_idle(self) -> None:
        if self.idle_timeout is None:
            return
        if self._idle is not None:
            self._idle.cancel()
        self._idle = asyncio.get_running_loop().call_later(self.idle_timeout, self._silent)

    def _silent(self) -> None:
        log.info("gateway %s: DTU silent for %.0f s, dropped", self.link.gateway_id,
                 self.idle_timeout or 0.0)
        if self.transport is not None:
            self.transport.close()

    def _put(self, item: object) -> None:
        if self.queue.qsize() >= QUEUE_MAX:
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
                self.link.stats.dropped_frames += 1
        self.queue.put_nowait(item)

    def handle(self, events: list[StreamEvent]) -> None:
        """Route stream events: frames to the queue, faults to the callback."""
        link = self.link
        for ev in events:
            if isinstance(ev, Frame):
                self._put(ev)
            elif isinstance(ev, Heartbeat):
                link.stats.heartbeats += 1
            elif isinstance(ev, Corrupt):
                if ev.reason == "garbage":
                    link.stats.garbage_bytes += ev.count
                else:
                    link.stats.corrupt += 1
                    self._put(_CORRUPT)
                link.report(ev)
            elif isinstance(ev, Registered) and ev.gateway_id != link.gateway_id:
                log.warning("gateway %s: DTU re-registered as %s", link.gateway_id,
                            ev.gateway_id)

    async def send(self, data: bytes) -> None:
        """Write a request (waits only while the send buffer is full).

        Raises:
            ConnectionResetError: The connection is closed.
        """
        if self.closed or self.transport is None or self.transport.is_closing():
            raise ConnectionResetError("the connection is closed")
        log.debug("gateway %s tx %s", self.link.gateway_id, data.hex(" "))
        self.transport.write(data)
        if not self._writable.is_set():
            await self._writable.wait()

    def drain(self) -> int:
        """Drop frames that arrived while no request was outstanding; return how many."""
        n = 0
        while not self.queue.empty():
            item = self.queue.get_nowait()
            if item is _CLOSED:
                self.queue.put_nowait(item)
                break
            n += 1
        return n

    async def close(self) -> None:
        """Close the socket and wait (briefly) until the loop has let it go."""
        self.closed = True
        if self.transport is not None:
            self.transport.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._gone.wait()


@dataclass(frozen=True, slots=True)
class ReadResult:
    """A read, follow-up frames merged.

    Attributes:
        response: The merged reply (``more`` False; data of every frame joined).
        frames: The reply frames as received.
    """

    response: ReadResponse
    frames: tuple[Frame, ...] = field(default=())

    def values(self) -> dict[str, Any]:
        """Decoded values by name (the registry's names); raw bytes stay as hex text."""
        vals, _warnings = self.response.values()
        return {v.name: v.value for v in vals}


@functools.lru_cache(maxsize=8192)
def _wire(message: Message, preamble: int) -> tuple[bytes, bytes | None, int]:
    """Request bytes, the address bytes a reply must carry, and the function code."""
    data = pack(message, preamble=preamble)
    address = getattr(message, "address", None)
    want = parse_address(address) if isinstance(address, str) else None
    return data, want, data[preamble + 8] & 0x1F


class MessageLink:
    """Message-level requests shared by every DL/T 645 link (TCP gateway, DTU, serial line).

    A subclass provides ``params`` (:class:`LinkParams`), ``stats`` (:class:`LinkStats`) and
    ``request(data, match, *, deadline)``, which sends bytes and returns the matching frame.
    """

    gateway_id: str
    params: LinkParams
    stats: LinkStats
    on_fault: FaultCallback | None

    def report(self, event: Corrupt) -> None:
        """Pass a fault to ``on_fault`` (errors in the callback are logged, not raised)."""
        if self.on_fault is not None:
            try:
                self.on_fault(self.gateway_id, event)
            except Exception:  # pragma: no cover - a faulty callback must not kill the link
                log.exception("gateway %s: fault callback failed", self.gateway_id)

    async def request(self, data: bytes, match: Callable[[Frame], bool] | None, *,
                      deadline: float | None = None) -> Frame | None:
        """Send ``data`` and return the reply frame that ``match`` accepts."""
        raise NotImplementedError

    async def exchange(self, message: Message, *, version: Version = Version.V2007,
                       expect_reply: bool = True,
                       deadline: float | None = None) -> tuple[Message, Frame] | None:
        """Send one message and decode the answer (no follow-up handling).

        Args:
            message: The request message.
            version: Edition used to decode the answer.
            expect_reply: False for broadcasts: return once sent, wait for nothing.
            deadline: As for :meth:`request`.

        Returns:
            ``(reply message, reply frame)``, or None without a reply.

        Raises:
            AbnormalReply: The meter answered with an abnormal reply.
            LinkError: As :meth:`request`; BadReply for corrupt replies.
        """
        data, want, function = _wire(message, self.params.preamble)

        def match(frame: Frame) -> bool:
            if not frame.is_response or frame.function != function:
                return False
            return want is None or 0xAA in want or frame.address == want

        frame = await self.request(data, match if expect_reply else None, deadline=deadline)
        if frame is None:
            return None
        reply, _warnings = decode_message(frame, version)
        if isinstance(reply, AbnormalResponse):
            self.stats.abnormal += 1
            raise AbnormalReply(
                f"meter {reply.address} answered abnormally: "
                f"{', '.join(reply.error_bits) or 'no bits set'}",
                error_bits=tuple(reply.error_bits), code=reply.error, raw=frame_bytes(frame),
            )
        return reply, frame


    async def read(self, address: str, di: int, *, version: Version = Version.V2007,
                   deadline: float | None = None) -> ReadResult:
        """Read one data identifier, merging follow-up frames.

        Args:
            address: Meter address as printed.
            di: Data identifier.
            version: Edition.
            deadline: As for :meth:`request`, for the whole read.

        Returns:
            The merged reply.

        Raises:
            AbnormalReply: The meter answered abnormally (e.g. ``no_requested_data``).
            BadReply: The reply is not a read reply for this identifier.
            LinkError: As :meth:`request`.
        """
        result = await self.exchange(ReadRequest(address, di, version=version), version=version,
                                     deadline=deadline)
        assert result is not None
        reply, frame = result
        if not isinstance(reply, ReadResponse) or reply.di != di:
            raise BadReply(f"meter {address} sent an unexpected reply to a read of {di:X}",
                           reason="unexpected_reply", raw=frame_bytes(frame))
        frames = [frame]
        data = bytearray(reply.data)
        seq = 0
        while reply.more:
            if len(frames) > self.params.follow_up_max:
                raise BadReply(f"meter {address}: more than {self.params.follow_up_max} "
                               "follow-up frames", reason="too_many_follow_ups",
                               raw=frame_bytes(frame))
            seq += 1
            req = ReadFollowUpRequest(address, di, seq if version is Version.V2007 else None,
                                      version=version)
            result = await self.exchange(req, version=version, deadline=deadline)
            assert result is not None
            reply, frame = result
            if not isinstance(reply, ReadResponse):
                raise BadReply(f"meter {address} sent an unexpected follow-up reply",
                               reason="unexpected_reply", raw=frame_bytes(frame))
            frames.append(frame)
            data += reply.data
        merged = ReadResponse(reply.address, di, bytes(data), version=version)
        return ReadResult(merged, tuple(frames))


class Dlt645Link(MessageLink):
    """One DL/T 645 gateway (DTU): one connection, one request at a time on its bus.

    Args:
        gateway_id: The archive id.
        url: ``tcp://host:port`` or ``tls://host:port`` for mode ``connect``; None for a DTU
            that connects in (mode ``listen``).
        params: Timeouts, retries, preamble.
        model: The DTU model (whose control lines are stripped).
        on_fault: Called with corrupt frames and garbage (must not block).
    """

    def __init__(self, gateway_id: str, *, url: str | None = None,
                 params: LinkParams | None = None, model: DtuModel | None = None,
                 on_fault: FaultCallback | None = None) -> None:
        self.gateway_id = gateway_id
        self.url = url
        self.params = params or LinkParams()
        self.model = model or DTU_MODELS["generic-dtu"]
        self.on_fault = on_fault
        self.stats = LinkStats()
        self._lock = asyncio.Lock()
        self._conn: _Connection | None = None
        self._attached = asyncio.Event()
        if url is not None:
            parts = urlsplit(url)
            if parts.scheme not in ("tcp", "tls") or not parts.hostname or not parts.port:
                raise ValueError(f"gateway {gateway_id}: url must be tcp://host:port, got {url!r}")
            self._host: str = parts.hostname
            self._port: int = parts.port
            self._tls = parts.scheme == "tls"

    @property
    def endpoint(self) -> str:
        """The URL, or ``dtu:<id>`` for a DTU that connects in."""
        return self.url or f"dtu:{self.gateway_id}"

    @property
    def connected(self) -> bool:
        """True while a connection is up."""
        return self._conn is not None and not self._conn.closed

    def _lost(self, conn: _Connection) -> None:
        if self._conn is conn:
            self._conn = None
            self._attached.clear()
            self.stats.drops += 1

    def adopt(self, conn: _Connection, leftover: list[StreamEvent]) -> None:
        """Take over a connection a DTU opened (called by :class:`DtuListener`).

        Args:
            conn: The connection, already registered.
            leftover: Events decoded after the registration line.
        """
        old = self._conn
        self._conn = conn
        self.stats.connects += 1
        conn.handle(leftover)
        self._attached.set()
        if old is not None and old is not conn:
            old.closed = True
            if old.transport is not None:
                old.transport.close()

    async def _ensure(self) -> _Connection:
        conn = self._conn
        if conn is not None and not conn.closed:
            return conn
        if self.url is None:
            try:
                await asyncio.wait_for(self._attached.wait(), self.params.connect_timeout)
            except TimeoutError as exc:
                raise Unreachable(f"DTU {self.gateway_id} is not registered",
                                  endpoint=self.endpoint) from exc
            conn = self._conn
            if conn is None:
                raise Unreachable(f"DTU {self.gateway_id} dropped", endpoint=self.endpoint)
            return conn
        loop = asyncio.get_running_loop()
        conn = _Connection(self, DtuStream(()))
        try:
            async with asyncio.timeout(self.params.connect_timeout):
                await loop.create_connection(lambda: conn, self._host, self._port,
                                             ssl=self.params.tls if self._tls else None)
        except TimeoutError as exc:
            raise Unreachable(f"connecting to {self.url} timed out",
                              endpoint=self.endpoint) from exc
        except OSError as exc:
            raise Unreachable(f"cannot connect to {self.url}: {exc.strerror or exc}",
                              endpoint=self.endpoint) from exc
        self._conn = conn
        self.stats.connects += 1
        return conn

    async def request(self, data: bytes, match: Callable[[Frame], bool] | None, *,
                      deadline: float | None = None) -> Frame | None:
        """Send one request and wait for the frame that answers it, with retries.

        A broadcast (``match`` None) returns as soon as it is sent: nothing answers it.

        Args:
            data: The request bytes.
            match: Which received frame is the answer; None for a broadcast (no answer).
            deadline: Event-loop time (``loop.time()``) after which no attempt waits any
                longer, retries included (e.g. the end of a slot's grace window); None: the
                link's timeout per attempt only.

        Returns:
            The answering frame (None for a broadcast).

        Raises:
            Unreachable: The gateway cannot be reached.
            NoAnswer: No answer within the timeout, after the retries.
            BadReply: Only corrupt replies came back.
        """
        async with self._lock:
            last: Exception | None = None
            loop = asyncio.get_running_loop()
            for attempt in range(self.params.retries + 1):
                if deadline is not None and attempt and loop.time() >= deadline:
                    break
                if attempt:
                    self.stats.retries += 1
                conn = await self._ensure()
                self.stats.stale += conn.drain()
                try:
                    await conn.send(data)
                except OSError as exc:
                    await conn.close()
                    self._lost(conn)
                    last = LinkClosed(f"sending to {self.endpoint} failed: {exc}",
                                      endpoint=self.endpoint)
                    continue
                self.stats.requests += 1
                if match is None:
                    return None
                frame, last = await self._await_reply(conn, match, deadline)
                if frame is not None:
                    self.stats.replies += 1
                    return frame
            assert last is not None
            raise last

    async def _await_reply(self, conn: _Connection, match: Callable[[Frame], bool],
                           until: float | None = None) -> tuple[Frame | None, Exception]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.params.timeout
        if until is not None:
            deadline = min(deadline, until)
        start = loop.time()
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            if conn.queue.empty():
                try:
                    async with asyncio.timeout(remaining):
                        item = await conn.queue.get()
                except TimeoutError:
                    break
            else:
                item = conn.queue.get_nowait()
            if item is _CLOSED:
                conn.queue.put_nowait(item)
                return None, LinkClosed(f"{self.endpoint} closed the connection",
                                        endpoint=self.endpoint)
            if item is _CORRUPT:
                return None, BadReply(f"corrupt reply from {self.endpoint}",
                                      reason="corrupt_reply")
            assert isinstance(item, Frame)
            if match(item):
                return item, NoAnswer("", endpoint=self.endpoint)
            self.stats.stale += 1
        self.stats.timeouts += 1
        return None, NoAnswer(f"no answer from {self.endpoint} within "
                              f"{min(self.params.timeout, max(0.0, deadline - start)):.3g} s",
                              endpoint=self.endpoint)

    async def close(self) -> None:
        """Close the connection (a later request reconnects)."""
        conn = self._conn
        self._conn = None
        self._attached.clear()
        if conn is not None:
            await conn.close()


def frame_bytes(frame: Frame) -> bytes:
    """The wire bytes of a received frame (without preamble), for quarantine and explain."""
    from protocols.dlt645 import encode_frame

    return encode_frame(Frame(frame.address, frame.control, frame.data, 0))


# --------------------------------------------------------------------------------------------
# The DTU listener
# --------------------------------------------------------------------------------------------
class _Handshake(asyncio.Protocol):
    """A DTU connection until it registers (then its link's :class:`_Connection` takes over)."""

    def __init__(self, listener: DtuListener) -> None:
        self.listener = listener
        self.stream = DtuStream(listener.models)
        self.transport: asyncio.Transport | None = None
        self.peer: Any = None
        self._timer: asyncio.TimerHandle | None = None
        self._done = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Start the registration timer."""
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.peer = transport.get_extra_info("peername")
        self._timer = asyncio.get_running_loop().call_later(
            self.listener.registration_timeout, self._timeout)

    def _timeout(self) -> None:
        log.info("DTU at %s did not register", self.peer)
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        """Look for the registration line."""
        if self._done:
            return
        events = self.stream.feed(data)
        for i, ev in enumerate(events):
            if isinstance(ev, Registered):
                self._done = True
                if self._timer is not None:
                    self._timer.cancel()
                self.listener.registered(self, ev.gateway_id, events[i + 1:])
                return

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the timer."""
        if exc is not None:
            log.debug("DTU at %s left before registering: %s", self.peer, exc)
        if self._timer is not None:
            self._timer.cancel()


class DtuListener:
    """TCP (or TLS) server where DTUs connect in and register with their gateway id.

    Args:
        links: Gateway id -> link, for gateways in mode ``listen``.
        host: Address to bind.
        port: Port to bind (0 picks a free one; see :attr:`port`).
        models: DTU models whose registration lines are recognised.
        registration_timeout: Seconds a new connection has to register.
        tls: An ``ssl.SSLContext`` to require TLS, or None.

    Attributes:
        unknown: Registrations with an id not in ``links`` (the connection is closed).
    """

    def __init__(self, links: Mapping[str, Dlt645Link], *, host: str = "0.0.0.0",
                 port: int = 0, models: Sequence[DtuModel] | None = None,
                 registration_timeout: float = 30.0, tls: ssl.SSLContext | None = None) -> None:
        self.links = links
        self.host = host
        self.port = port
        self.models = tuple(models) if models else tuple(DTU_MODELS.values())
        self.registration_timeout = registration_timeout
        self.tls = tls
        self.unknown = 0
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        """Bind and serve.

        Raises:
            Unreachable: The address cannot be bound.
        """
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(lambda: _Handshake(self), self.host,
                                                    self.port, ssl=self.tls)
        except OSError as exc:
            raise Unreachable(f"cannot listen on {self.host}:{self.port}: {exc}",
                              endpoint=f"{self.host}:{self.port}") from exc
        self.port = int(self._server.sockets[0].getsockname()[1])

    def registered(self, hs: _Handshake, gateway_id: str, leftover: list[StreamEvent]) -> None:
        """A new connection said who it is: hand it to its link, or turn it away."""
        assert hs.transport is not None
        link = self.links.get(gateway_id)
        if link is None:
            self.unknown += 1
            log.warning("DTU at %s registered as unknown gateway %r", hs.peer, gateway_id)
            hs.transport.close()
            return
        log.info("DTU %s registered from %s", gateway_id, hs.peer)
        conn = _Connection(link, hs.stream, idle_timeout=3 * link.model.heartbeat_s)
        hs.transport.set_protocol(conn)
        conn.connection_made(hs.transport)
        link.adopt(conn, leftover)

    async def close(self) -> None:
        """Stop accepting connections (links close their own)."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
