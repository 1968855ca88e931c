"""The collector's error tree: what a transport or a device can do wrong.

Transports (DL/T 645 over TCP, Modbus TCP, MQTT) translate ``OSError`` and ``TimeoutError``
into :class:`LinkError` subclasses with ``raise … from exc`` (house style R7), so callers
handle one tree whatever the medium. Device-level outcomes that are not link faults — an
abnormal reply, a reply that cannot be decoded — have their own classes. This module imports
nothing beyond the standard library so that ``meterhub read`` starts fast.
"""

from __future__ import annotations


class CollectorError(Exception):
    """Base class of every collector error."""


class LinkError(CollectorError):
    """The link to a gateway, DTU, meter or broker failed.

    Attributes:
        endpoint: What was being talked to (``tcp://host:port``, a gateway id …).
    """

    def __init__(self, message: str, *, endpoint: str = "") -> None:
        super().__init__(message)
        self.endpoint = endpoint


class NoAnswer(LinkError):
    """The request was sent but no (valid) answer came within the timeout and retries."""


Timeout = NoAnswer
"""Alias: a timeout is the usual way of getting no answer."""


class Unreachable(LinkError):
    """The endpoint could not be reached: connection refused, no route, DTU not registered."""


class LinkClosed(LinkError):
    """The peer closed the connection while a request was outstanding."""


class AbnormalReply(CollectorError):
    """The device answered with an abnormal reply (DL/T 645 ERR bit, a Modbus exception).

    Attributes:
        error_bits: Names of the error bits (``no_requested_data`` …) or the exception name.
        code: The raw error word or exception code.
        raw: The reply bytes as received.
    """

    def __init__(self, message: str, *, error_bits: tuple[str, ...] = (), code: int = 0,
                 raw: bytes = b"") -> None:
        super().__init__(message)
        self.error_bits = error_bits
        self.code = code
        self.raw = raw


class BadReply(CollectorError):
    """A reply arrived but cannot be used (a corrupt frame, a reply to something else).

    Attributes:
        reason: Machine-readable reason (a ``FrameFault`` value, ``unexpected_reply`` …).
        raw: The offending bytes.
    """

    def __init__(self, message: str, *, reason: str, raw: bytes = b"") -> None:
        super().__init__(message)
        self.reason = reason
        self.raw = raw


class BrokerRefused(Unreachable):
    """The MQTT broker could not be reached or refused the connection (credentials, ACL)."""


class ReplayFailed(CollectorError):
    """A quarantined input still cannot be stored when replayed.

    Attributes:
        reason: Machine-readable reason (``unknown_meter``, a payload fault …).
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
