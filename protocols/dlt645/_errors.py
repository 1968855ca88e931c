"""The DL/T 645 error tree.

Every fault the codec raises is a :class:`DLT645Error`. Frame faults (the bytes are not a
frame) raise :class:`FrameError` with a machine-readable :class:`FrameFault` and the offending
bytes. Values that cannot be encoded (a 13-digit address, a voltage of 10 000 V) raise
:class:`EncodeError`. Content faults inside a well-formed frame never raise: the decoders keep
the raw bytes and return a warning string instead.
"""

from __future__ import annotations

from enum import StrEnum


class FrameFault(StrEnum):
    """Why a byte string is not a DL/T 645 frame (the ``reason`` of a :class:`FrameError`)."""

    NO_START = "no_start"
    """No ``68`` start byte where a frame must begin (after any ``FE`` preamble)."""
    BAD_SECOND_START = "bad_second_start"
    """Byte 7 of the frame proper is not the second ``68``."""
    BAD_LENGTH = "bad_length"
    """Whole-frame decoding: the bytes form a complete frame (end byte, valid checksum) but
    the length byte L disagrees with its size."""
    BAD_CHECKSUM = "bad_checksum"
    """The arithmetic sum from the first ``68`` to the last data byte differs from CS."""
    BAD_END = "bad_end"
    """The byte after the checksum is not ``16``."""
    TRUNCATED = "truncated"
    """The input ends before the frame the length byte announces is complete."""
    TRAILING_BYTES = "trailing_bytes"
    """:func:`decode_frame` got bytes after one complete frame."""
    BAD_HEX = "bad_hex"
    """Text given to the explain path is not hexadecimal."""


class DLT645Error(Exception):
    """Base class of every error raised by :mod:`protocols.dlt645`."""


class FrameError(DLT645Error):
    """The bytes are not a valid DL/T 645 frame.

    Attributes:
        reason: The machine-readable fault.
        data: The offending bytes (the candidate frame, or the input that was examined).
    """

    def __init__(self, message: str, *, reason: FrameFault, data: bytes) -> None:
        super().__init__(message)
        self.reason = reason
        self.data = bytes(data)

    def __repr__(self) -> str:
        return f"FrameError({str(self)!r}, reason={self.reason.value!r}, data={self.data.hex()!r})"


class EncodeError(DLT645Error):
    """A value or message cannot be represented on the wire.

    Attributes:
        value: The value that was refused.
    """

    def __init__(self, message: str, *, value: object = None) -> None:
        super().__init__(message)
        self.value = value
