"""Control codes, remote-control commands, error words and baud-rate bytes of DL/T 645.

Control byte ``C``::

    bit7 DIR   0 = master -> meter request, 1 = meter -> master response
    bit6 ERR   0 = normal reply, 1 = abnormal reply (data = error word)
    bit5 MORE  0 = no follow-up frame, 1 = follow-up frame(s) exist
    bit4..0    function code

Function codes differ between the 2007 and 1997 editions; only ``08`` (broadcast time sync)
means the same in both.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum

DIR_BIT = 0x80
ERR_BIT = 0x40
MORE_BIT = 0x20
FUNCTION_MASK = 0x1F


class Version(StrEnum):
    """Edition of the standard; the value is the protocol name used in JSON output."""

    V2007 = "dlt645-2007"
    V1997 = "dlt645-1997"


class Function2007(IntEnum):
    """DL/T 645-2007 function codes (bits 4..0 of the control byte)."""

    SECURITY = 0x03
    TIME_SYNC = 0x08
    READ = 0x11
    READ_FOLLOW_UP = 0x12
    READ_ADDRESS = 0x13
    WRITE = 0x14
    WRITE_ADDRESS = 0x15
    FREEZE = 0x16
    CHANGE_BAUD = 0x17
    CHANGE_PASSWORD = 0x18
    CLEAR_DEMAND = 0x19
    CLEAR_METER = 0x1A
    CLEAR_EVENTS = 0x1B
    REMOTE_CONTROL = 0x1C
    MULTI_FUNCTION_OUTPUT = 0x1D


class Function1997(IntEnum):
    """DL/T 645-1997 function codes (bits 4..0 of the control byte)."""

    READ = 0x01
    READ_FOLLOW_UP = 0x02
    REREAD = 0x03
    WRITE = 0x04
    TIME_SYNC = 0x08
    WRITE_ADDRESS = 0x0A
    CHANGE_BAUD = 0x0C
    CHANGE_PASSWORD = 0x0F
    CLEAR_DEMAND = 0x10


class Kind(StrEnum):
    """Edition-independent meaning of a function code (the ``function`` of decode JSON)."""

    READ = "read"
    READ_FOLLOW_UP = "read_follow_up"
    READ_ADDRESS = "read_address"
    WRITE = "write"
    WRITE_ADDRESS = "write_address"
    TIME_SYNC = "time_sync"
    FREEZE = "freeze"
    CHANGE_BAUD = "change_baud"
    CHANGE_PASSWORD = "change_password"
    CLEAR_DEMAND = "clear_demand"
    CLEAR_METER = "clear_meter"
    CLEAR_EVENTS = "clear_events"
    REMOTE_CONTROL = "remote_control"
    UNKNOWN = "unknown"


KIND_2007: dict[int, Kind] = {
    Function2007.TIME_SYNC: Kind.TIME_SYNC,
    Function2007.READ: Kind.READ,
    Function2007.READ_FOLLOW_UP: Kind.READ_FOLLOW_UP,
    Function2007.READ_ADDRESS: Kind.READ_ADDRESS,
    Function2007.WRITE: Kind.WRITE,
    Function2007.WRITE_ADDRESS: Kind.WRITE_ADDRESS,
    Function2007.FREEZE: Kind.FREEZE,
    Function2007.CHANGE_BAUD: Kind.CHANGE_BAUD,
    Function2007.CHANGE_PASSWORD: Kind.CHANGE_PASSWORD,
    Function2007.CLEAR_DEMAND: Kind.CLEAR_DEMAND,
    Function2007.CLEAR_METER: Kind.CLEAR_METER,
    Function2007.CLEAR_EVENTS: Kind.CLEAR_EVENTS,
    Function2007.REMOTE_CONTROL: Kind.REMOTE_CONTROL,
}
"""2007 function code -> kind. Codes not listed (03, 1D, vendor codes) are ``unknown``."""

KIND_1997: dict[int, Kind] = {
    Function1997.READ: Kind.READ,
    Function1997.READ_FOLLOW_UP: Kind.READ_FOLLOW_UP,
    Function1997.REREAD: Kind.READ,
    Function1997.WRITE: Kind.WRITE,
    Function1997.TIME_SYNC: Kind.TIME_SYNC,
    Function1997.WRITE_ADDRESS: Kind.WRITE_ADDRESS,
    Function1997.CHANGE_BAUD: Kind.CHANGE_BAUD,
    Function1997.CHANGE_PASSWORD: Kind.CHANGE_PASSWORD,
    Function1997.CLEAR_DEMAND: Kind.CLEAR_DEMAND,
}
"""1997 function code -> kind (``03`` re-read is a read)."""


def function_code(kind: Kind, version: Version) -> int | None:
    """Return the function code of ``kind`` in ``version``, or None if the edition lacks it.

    Args:
        kind: The edition-independent function.
        version: The edition.

    Returns:
        The 5-bit function code, or None.
    """
    table = KIND_2007 if version is Version.V2007 else KIND_1997
    for code, k in table.items():
        if k is kind and not (version is Version.V1997 and code == Function1997.REREAD):
            return int(code)
    return None


class RemoteCommand(IntEnum):
    """``N1`` of a ``1C`` remote-control request (protocols.md §8.1)."""

    TRIP = 0x1A
    CLOSE_ALLOWED = 0x1B
    CLOSE = 0x1C
    ALARM = 0x2A
    ALARM_RELEASE = 0x2B
    PROTECT = 0x3A
    PROTECT_RELEASE = 0x3B


REMOTE_COMMAND_NAMES: dict[int, str] = {
    RemoteCommand.TRIP: "trip",
    RemoteCommand.CLOSE_ALLOWED: "close_allowed",
    RemoteCommand.CLOSE: "close",
    RemoteCommand.ALARM: "alarm",
    RemoteCommand.ALARM_RELEASE: "alarm_release",
    RemoteCommand.PROTECT: "protect",
    RemoteCommand.PROTECT_RELEASE: "protect_release",
}


ERROR_BITS_2007: tuple[str | None, ...] = (
    "other_error",
    "no_requested_data",
    "password_error",
    "baud_unchangeable",
    "year_zones_exceeded",
    "day_periods_exceeded",
    "tariffs_exceeded",
    None,
)
"""Names of bits 0..7 of the 2007 error word (None = reserved)."""

ERROR_BITS_1997: tuple[str | None, ...] = (
    "illegal_data",
    "di_error",
    "password_error",
    None,
    "year_zones_exceeded",
    "day_periods_exceeded",
    "tariffs_exceeded",
    None,
)
"""Names of bits 0..7 of the 1997 error word (None = reserved)."""


def error_bit_names(error: int, version: Version) -> tuple[str, ...]:
    """Name the set bits of an error word.

    Reserved bits are reported as ``bit<n>``.

    Args:
        error: The error word after removing the 0x33 offset.
        version: The edition whose bit names apply.

    Returns:
        The names of the set bits, lowest bit first.
    """
    table = ERROR_BITS_2007 if version is Version.V2007 else ERROR_BITS_1997
    names = []
    for bit in range(8):
        if error >> bit & 1:
            names.append(table[bit] or f"bit{bit}")
    return tuple(names)


def error_word(names: tuple[str, ...] | list[str], version: Version) -> int:
    """Build an error word from bit names (the inverse of :func:`error_bit_names`).

    Args:
        names: Bit names as returned by :func:`error_bit_names`.
        version: The edition whose bit names apply.

    Returns:
        The error word.

    Raises:
        EncodeError: A name is not a bit of this edition's error word.
    """
    from ._errors import EncodeError

    table = ERROR_BITS_2007 if version is Version.V2007 else ERROR_BITS_1997
    word = 0
    for name in names:
        if name in table:
            word |= 1 << table.index(name)
        elif name.startswith("bit") and name[3:].isdigit() and int(name[3:]) < 8:
            word |= 1 << int(name[3:])
        else:
            raise EncodeError(f"unknown error bit name {name!r}", value=name)
    return word


BAUD_CODES: dict[int, int] = {
    0x02: 600,
    0x04: 1200,
    0x08: 2400,
    0x10: 4800,
    0x20: 9600,
    0x40: 19200,
}
"""Baud byte ``Z`` of ``17`` (2007) / ``0C`` (1997) -> bits per second (protocols.md §1)."""

BAUD_BYTES: dict[int, int] = {bps: code for code, bps in BAUD_CODES.items()}
