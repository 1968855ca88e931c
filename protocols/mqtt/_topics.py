"""MQTT topic layout for concentrators (CONTRACTS.md)::

    meterhub / v1 / c / {concentrator} / up   / readings | events | acks | frames
    meterhub / v1 / c / {concentrator} / down / read | relay | time | receipt

Collectors share the uplink load with the shared subscription
``$share/meterhub/meterhub/v1/c/+/up/#``; a concentrator subscribes to its own
``meterhub/v1/c/{concentrator}/down/#``. The concentrator id is also its MQTT username, so
it must be a single topic level without wildcards: 1–64 of ``A-Z a-z 0-9 _ . -``, starting
with a letter or digit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from ._errors import TopicError, TopicFault

__all__ = [
    "SHARED_UPLINK_FILTER",
    "TOPIC_PREFIX",
    "UPLINK_FILTER",
    "Direction",
    "DownlinkKind",
    "Topic",
    "UplinkKind",
    "check_concentrator_id",
    "downlink_filter",
    "downlink_topic",
    "parse_topic",
    "shared_uplink_filter",
    "uplink_topic",
]

TOPIC_PREFIX: Final = "meterhub/v1/c"
"""Every concentrator topic starts with this; ``v1`` is the topic layout version."""

UPLINK_FILTER: Final = f"{TOPIC_PREFIX}/+/up/#"
"""Subscription filter for every concentrator's uplink."""

SHARED_UPLINK_FILTER: Final = f"$share/meterhub/{UPLINK_FILTER}"
"""Shared subscription used by collectors: ``$share/meterhub/meterhub/v1/c/+/up/#``."""

_CONCENTRATOR: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class Direction(StrEnum):
    """Topic direction."""

    UP = "up"
    """Concentrator → meterhub."""
    DOWN = "down"
    """meterhub → concentrator."""


class UplinkKind(StrEnum):
    """What a concentrator publishes."""

    READINGS = "readings"
    EVENTS = "events"
    ACKS = "acks"
    FRAMES = "frames"


class DownlinkKind(StrEnum):
    """What meterhub publishes to a concentrator."""

    READ = "read"
    RELAY = "relay"
    TIME = "time"
    RECEIPT = "receipt"


_UP_KINDS: Final = frozenset(kind.value for kind in UplinkKind)
_DOWN_KINDS: Final = frozenset(kind.value for kind in DownlinkKind)


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed concentrator topic.

    Attributes:
        concentrator: The concentrator id (its MQTT username).
        direction: Up or down.
        kind: The message kind, an :class:`UplinkKind` or :class:`DownlinkKind`.
    """

    concentrator: str
    direction: Direction
    kind: UplinkKind | DownlinkKind

    def __str__(self) -> str:
        return f"{TOPIC_PREFIX}/{self.concentrator}/{self.direction}/{self.kind}"


def check_concentrator_id(concentrator: str, *, topic: str | None = None) -> str:
    """Validate a concentrator id for use as a topic level.

    Args:
        concentrator: The id, e.g. ``C001``.
        topic: The topic it came from, for the error message.

    Returns:
        The id unchanged.

    Raises:
        TopicError: ``bad_concentrator``.
    """
    if not isinstance(concentrator, str) or not _CONCENTRATOR.match(concentrator):
        raise TopicError(
            f"concentrator id {concentrator!r} must be 1-64 of A-Z a-z 0-9 _ . - "
            "starting with a letter or digit",
            reason=TopicFault.BAD_CONCENTRATOR,
            topic=topic if topic is not None else str(concentrator),
        )
    return concentrator


def uplink_topic(concentrator: str, kind: UplinkKind | str) -> str:
    """Build ``meterhub/v1/c/{concentrator}/up/{kind}``.

    Args:
        concentrator: The concentrator id.
        kind: ``readings``, ``events``, ``acks`` or ``frames``.

    Returns:
        The topic.

    Raises:
        TopicError: ``bad_concentrator`` or ``unknown_kind``.
    """
    check_concentrator_id(concentrator)
    try:
        up = UplinkKind(kind)
    except ValueError:
        raise TopicError(
            f"unknown uplink kind {kind!r}", reason=TopicFault.UNKNOWN_KIND, topic=str(kind)
        ) from None
    return str(Topic(concentrator, Direction.UP, up))


def downlink_topic(concentrator: str, kind: DownlinkKind | str) -> str:
    """Build ``meterhub/v1/c/{concentrator}/down/{kind}``.

    Args:
        concentrator: The concentrator id.
        kind: ``read``, ``relay``, ``time`` or ``receipt``.

    Returns:
        The topic.

    Raises:
        TopicError: ``bad_concentrator`` or ``unknown_kind``.
    """
    check_concentrator_id(concentrator)
    try:
        down = DownlinkKind(kind)
    except ValueError:
        raise TopicError(
            f"unknown downlink kind {kind!r}", reason=TopicFault.UNKNOWN_KIND, topic=str(kind)
        ) from None
    return str(Topic(concentrator, Direction.DOWN, down))


def parse_topic(topic: str) -> Topic:
    """Split a concentrator topic into its parts.

    Args:
        topic: A topic as received, e.g. ``meterhub/v1/c/C001/up/readings``.

    Returns:
        The parsed topic.

    Raises:
        TopicError: ``not_meterhub``, ``bad_concentrator`` or ``unknown_kind``.
    """
    levels = topic.split("/") if isinstance(topic, str) else []
    if len(levels) != 6 or "/".join(levels[:3]) != TOPIC_PREFIX:
        raise TopicError(
            f"not a meterhub concentrator topic ({TOPIC_PREFIX}/{{id}}/up|down/{{kind}})",
            reason=TopicFault.NOT_METERHUB,
            topic=str(topic),
        )
    concentrator, direction, kind = levels[3], levels[4], levels[5]
    check_concentrator_id(concentrator, topic=topic)
    if direction == Direction.UP:
        if kind not in _UP_KINDS:
            raise TopicError(
                f"unknown uplink kind {kind!r}", reason=TopicFault.UNKNOWN_KIND, topic=topic
            )
        return Topic(concentrator, Direction.UP, UplinkKind(kind))
    if direction == Direction.DOWN:
        if kind not in _DOWN_KINDS:
            raise TopicError(
                f"unknown downlink kind {kind!r}", reason=TopicFault.UNKNOWN_KIND, topic=topic
            )
        return Topic(concentrator, Direction.DOWN, DownlinkKind(kind))
    raise TopicError(
        f"direction {direction!r} is neither 'up' nor 'down'",
        reason=TopicFault.NOT_METERHUB,
        topic=topic,
    )


def shared_uplink_filter(group: str = "meterhub") -> str:
    """The shared-subscription filter collectors use, for a given share group.

    Args:
        group: Share group name (``meterhub`` by default).

    Returns:
        ``$share/{group}/meterhub/v1/c/+/up/#``.

    Raises:
        TopicError: ``not_meterhub`` for a group with ``/``, ``+`` or ``#`` or an empty one.
    """
    if not group or any(ch in group for ch in "/+#"):
        raise TopicError(
            "share group must be one topic level without wildcards",
            reason=TopicFault.NOT_METERHUB,
            topic=group,
        )
    return f"$share/{group}/{UPLINK_FILTER}"


def downlink_filter(concentrator: str) -> str:
    """The filter a concentrator subscribes to: ``meterhub/v1/c/{id}/down/#``.

    Args:
        concentrator: The concentrator id.

    Returns:
        The filter.

    Raises:
        TopicError: ``bad_concentrator``.
    """
    check_concentrator_id(concentrator)
    return f"{TOPIC_PREFIX}/{concentrator}/down/#"
