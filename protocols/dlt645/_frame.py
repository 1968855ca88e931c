"""DL/T 645 frame layer: whole-frame encode/decode and the incremental stream decoder.

Frame layout (2007 and 1997 alike; widths in bytes)::

    [FE]*k | 68 | A0..A5 | 68 | C | L | DATA(+0x33) | CS | 16
     0..n     1     6      1    1   1      L          1    1

* ``FE`` preamble bytes wake the receiver; they are not covered by the checksum.
* The address is six BCD bytes, least-significant first (printed ``A5A4A3A2A1A0``).
* Every DATA byte is sent as ``(b + 0x33) mod 256``; :class:`Frame` holds the restored bytes.
* CS is the sum modulo 256 of every byte from the first ``68`` to the last DATA byte.

Frames are delimited by the length byte, never by searching for ``16``: checksums, addresses
and data bytes may all be ``16`` (or ``FE``, or ``68``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ._codes import DIR_BIT, ERR_BIT, FUNCTION_MASK, MORE_BIT
from ._errors import EncodeError, FrameError, FrameFault

START: Final = 0x68
END: Final = 0x16
PREAMBLE: Final = 0xFE
HEADER_LEN: Final = 10
"""``68 A0..A5 68 C L``."""
OVERHEAD: Final = 12
"""Header plus ``CS 16``."""

_SCRAMBLE: Final = bytes((i + 0x33) & 0xFF for i in range(256))
_UNSCRAMBLE: Final = bytes((i - 0x33) & 0xFF for i in range(256))


def scramble(data: bytes) -> bytes:
    """Add the 0x33 offset to every byte (what goes on the wire).

    Args:
        data: Plain data bytes.

    Returns:
        The offset bytes.
    """
    return bytes(data).translate(_SCRAMBLE)


def unscramble(data: bytes) -> bytes:
    """Remove the 0x33 offset from every byte.

    Args:
        data: Data bytes as received.

    Returns:
        The plain bytes.
    """
    return bytes(data).translate(_UNSCRAMBLE)


def checksum(data: bytes) -> int:
    """Return the DL/T 645 checksum (arithmetic sum modulo 256) of ``data``.

    Args:
        data: The bytes from the first ``68`` to the last DATA byte.

    Returns:
        The checksum byte.
    """
    return sum(data) & 0xFF


class _NeedData:
    """Sentinel type: the stream decoder needs more bytes."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"

    def __reduce__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = _NeedData()
"""Returned by :meth:`FrameDecoder.next_frame` when no complete frame is buffered."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One DL/T 645 frame, edition-independent.

    Attributes:
        address: The six address bytes in wire order (A0 first); see :func:`parse_address`.
        control: The control byte ``C``.
        data: The DATA field with the 0x33 offset removed.
        preamble: Number of ``FE`` bytes before the first ``68`` (sent by :func:`encode_frame`).
    """

    address: bytes
    control: int
    data: bytes = b""
    preamble: int = 0

    @property
    def is_response(self) -> bool:
        """True for a meter -> master frame (DIR bit set)."""
        return bool(self.control & DIR_BIT)

    @property
    def abnormal(self) -> bool:
        """True for an abnormal reply (ERR bit set)."""
        return bool(self.control & ERR_BIT)

    @property
    def follow_up(self) -> bool:
        """True when the MORE bit says follow-up frames exist."""
        return bool(self.control & MORE_BIT)

    @property
    def function(self) -> int:
        """The 5-bit function code."""
        return self.control & FUNCTION_MASK

    @property
    def address_text(self) -> str:
        """The address as printed on the nameplate (12 characters, ``A`` for wildcards)."""
        return format_address(self.address)


def parse_address(text: str | bytes) -> bytes:
    """Convert a nameplate address to the six wire-order address bytes.

    Args:
        text: 12 digits as printed (``"000102030425"``), ``A``/``a`` allowed for wildcard
            nibbles; shorter digit strings are zero-padded on the left. Six ``bytes`` are
            taken as wire-order bytes already and returned unchanged.

    Returns:
        Six bytes, A0 first (``"000102030425"`` -> ``25 04 03 02 01 00``).

    Raises:
        EncodeError: The text is not 1..12 decimal digits or ``A``.
    """
    if isinstance(text, bytes | bytearray):
        if len(text) != 6:
            raise EncodeError("an address is six bytes", value=text)
        return bytes(text)
    t = text.strip().upper()
    if not t or len(t) > 12 or any(c not in "0123456789A" for c in t):
        raise EncodeError(f"address {text!r} is not 1..12 digits (or A)", value=text)
    t = t.rjust(12, "0")
    return bytes.fromhex(t)[::-1]


def format_address(address: bytes) -> str:
    """Format wire-order address bytes as printed on the nameplate.

    Non-BCD nibbles are shown as upper-case hexadecimal (``AA`` wildcards become ``AA``).

    Args:
        address: Six address bytes, A0 first.

    Returns:
        12 upper-case characters, most significant first.
    """
    return bytes(address)[::-1].hex().upper()


def encode_frame(frame: Frame) -> bytes:
    """Serialise a frame: preamble, header, offset data, checksum, end byte.

    Args:
        frame: The frame; ``frame.data`` holds plain (un-offset) bytes.

    Returns:
        The bytes to put on the wire.

    Raises:
        EncodeError: The address is not six bytes, the control byte or preamble count is out
            of range, or the data is longer than 255 bytes.
    """
    if len(frame.address) != 6:
        raise EncodeError("an address is six bytes", value=frame.address)
    if not 0 <= frame.control <= 0xFF:
        raise EncodeError("the control code is one byte", value=frame.control)
    if len(frame.data) > 0xFF:
        raise EncodeError("DATA is at most 255 bytes", value=len(frame.data))
    if frame.preamble < 0:
        raise EncodeError("negative preamble count", value=frame.preamble)
    body = (
        b"\x68"
        + bytes(frame.address)
        + bytes((START, frame.control, len(frame.data)))
        + bytes(frame.data).translate(_SCRAMBLE)
    )
    return b"\xfe" * frame.preamble + body + bytes((sum(body) & 0xFF, END))


def _check_at(buf: bytes | bytearray, start: int, preamble: int) -> tuple[Frame | None, int]:
    """Validate a candidate frame whose first ``68`` is at ``start``.

    Returns:
        ``(frame, end_offset)`` for a complete valid frame; ``(None, needed_total)`` when the
        buffer is too short.

    Raises:
        FrameError: The candidate is corrupt.
    """
    n = len(buf)
    if n - start < HEADER_LEN:
        return None, start + HEADER_LEN
    if buf[start + 7] != START:
        raise FrameError(
            f"byte 7 of the frame is {buf[start + 7]:02X}, not the second start byte 68",
            reason=FrameFault.BAD_SECOND_START,
            data=bytes(buf[start : start + HEADER_LEN]),
        )
    length = buf[start + 9]
    end = start + OVERHEAD + length
    if n < end:
        return None, end
    cs_at = end - 2
    if buf[end - 1] != END:
        raise FrameError(
            f"byte after the checksum is {buf[end - 1]:02X}, not the end byte 16 (L={length})",
            reason=FrameFault.BAD_END,
            data=bytes(buf[start:end]),
        )
    cs = sum(buf[start:cs_at]) & 0xFF
    if cs != buf[cs_at]:
        raise FrameError(
            f"checksum is {buf[cs_at]:02X}, the bytes sum to {cs:02X}",
            reason=FrameFault.BAD_CHECKSUM,
            data=bytes(buf[start:end]),
        )
    frame = Frame(
        bytes(buf[start + 1 : start + 7]),
        buf[start + 8],
        bytes(buf[start + HEADER_LEN : cs_at]).translate(_UNSCRAMBLE),
        preamble,
    )
    return frame, end


def decode_frame_prefix(data: bytes) -> tuple[Frame, int]:
    """Decode the frame at the start of ``data`` and say how many bytes it used.

    Any number of ``FE`` bytes may precede the first ``68``.

    Args:
        data: Bytes starting with the frame (or its preamble).

    Returns:
        The frame and the number of bytes consumed (preamble included).

    Raises:
        FrameError: ``NO_START`` if the first non-``FE`` byte is not ``68``; ``TRUNCATED`` if
            the input ends early; ``BAD_LENGTH`` if the input is a whole frame (end byte,
            checksum over what is there) whose L byte disagrees; ``BAD_SECOND_START``,
            ``BAD_END``, ``BAD_CHECKSUM``.
    """
    data = bytes(data)
    i = 0
    n = len(data)
    while i < n and data[i] == PREAMBLE:
        i += 1
    if i >= n:
        raise FrameError("no frame: input is empty or only FE bytes",
                         reason=FrameFault.TRUNCATED, data=data)
    if data[i] != START:
        raise FrameError(
            f"frame must start with 68 (after FE bytes), found {data[i]:02X}",
            reason=FrameFault.NO_START,
            data=data,
        )
    try:
        frame, end = _check_at(data, i, i)
    except FrameError as exc:
        if exc.reason is FrameFault.BAD_END and _length_is_wrong(data, i):
            raise FrameError(
                f"the length byte says {data[i + 9]} data bytes, the frame has {n - i - 12}",
                reason=FrameFault.BAD_LENGTH,
                data=data[i:],
            ) from None
        raise
    if frame is None:
        if _length_is_wrong(data, i):
            raise FrameError(
                f"the length byte says {data[i + 9]} data bytes, the frame has {n - i - 12}",
                reason=FrameFault.BAD_LENGTH,
                data=data[i:],
            )
        raise FrameError(
            f"input ends after {n - i} bytes of a frame that needs {end - i}",
            reason=FrameFault.TRUNCATED,
            data=data[i:],
        )
    return frame, end


def _length_is_wrong(data: bytes, start: int) -> bool:
    """True when ``data[start:]`` is a whole frame except for its length byte.

    That is: it ends with ``16``, has the second ``68``, and its last-but-one byte is the
    checksum of everything before it. Only whole-frame decoding uses this (a stream cannot
    know where a frame ends other than by L).
    """
    n = len(data) - start
    return (
        n >= OVERHEAD
        and data[-1] == END
        and data[start + 7] == START
        and data[start + 9] != n - OVERHEAD
        and sum(data[start:-2]) & 0xFF == data[-2]
    )


def decode_frame(data: bytes) -> Frame:
    """Decode exactly one complete frame (with any ``FE`` preamble).

    Args:
        data: The frame's bytes and nothing else.

    Returns:
        The frame.

    Raises:
        FrameError: As :func:`decode_frame_prefix`, plus ``TRAILING_BYTES`` when bytes
            follow the end byte.
    """
    frame, used = decode_frame_prefix(data)
    if used != len(data):
        raise FrameError(
            f"{len(data) - used} bytes after the end of the frame",
            reason=FrameFault.TRAILING_BYTES,
            data=bytes(data[used:]),
        )
    return frame


class FrameDecoder:
    """Incremental (sans-I/O) frame decoder for a byte stream.

    Feed it whatever the transport delivered and call :meth:`next_frame` until it returns
    :data:`NEED_DATA`. Bytes before a ``68`` start byte are skipped: ``FE`` bytes count as
    preamble, anything else is counted in :attr:`discarded`. A candidate frame that turns out
    corrupt raises :class:`FrameError`; its first byte has then already been dropped (and
    counted), so the next call resynchronises at the following ``68``.

    Attributes:
        discarded: Bytes thrown away so far (garbage and the start bytes of corrupt frames).
        errors: Corrupt candidates reported so far.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._preamble = 0
        self.discarded = 0
        self.errors = 0

    def feed(self, data: bytes) -> None:
        """Append received bytes.

        Args:
            data: Any number of bytes.
        """
        self._buf += data

    def clear(self) -> int:
        """Drop everything buffered (e.g. after a transport timeout on a half frame).

        Returns:
            The number of bytes dropped; they are added to :attr:`discarded`.
        """
        dropped = len(self._buf) + self._preamble
        self._buf.clear()
        self._preamble = 0
        self.discarded += dropped
        return dropped

    @property
    def buffered(self) -> bytes:
        """Bytes received but not yet consumed (the unconsumed tail, pending FE included).

        Every byte fed is accounted for exactly once: in a returned frame (preamble
        included), in :attr:`discarded`, or here.
        """
        return b"\xfe" * self._preamble + bytes(self._buf)

    def next_frame(self) -> Frame | _NeedData:
        """Return the next complete frame, or :data:`NEED_DATA`.

        Returns:
            A :class:`Frame`, or :data:`NEED_DATA` when more bytes are needed.

        Raises:
            FrameError: A candidate frame is corrupt (``BAD_SECOND_START``, ``BAD_END``,
                ``BAD_CHECKSUM``); the decoder has already skipped past its start byte.
        """
        buf = self._buf
        # skip to the next start byte, counting FE as preamble and the rest as garbage
        i = 0
        n = len(buf)
        while i < n and buf[i] != START:
            if buf[i] == PREAMBLE:
                self._preamble += 1
            else:
                self.discarded += 1 + self._preamble
                self._preamble = 0
            i += 1
        if i:
            del buf[:i]
        if not buf:
            return NEED_DATA
        try:
            frame, end = _check_at(buf, 0, self._preamble)
        except FrameError:
            del buf[:1]
            self.discarded += 1 + self._preamble
            self._preamble = 0
            self.errors += 1
            raise
        if frame is None:
            return NEED_DATA
        del buf[:end]
        self._preamble = 0
        return frame

    def __iter__(self) -> FrameDecoder:
        return self

    def __next__(self) -> Frame:
        """Iterate over complete frames; stops at NEED_DATA (errors propagate)."""
        frame = self.next_frame()
        if isinstance(frame, Frame):
            return frame
        raise StopIteration
