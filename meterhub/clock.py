"""Clocks: everything in meterhub that reads the time takes a :class:`Clock`.

``WallClock`` is real time. ``SimClock`` maps wall-clock time onto simulated time:
``sim = sim_start + (wall - wall_start) * speed``, so a fleet simulator, the collector and the
control worker can all follow one simulated timeline described in the fleet file's ``[clock]``
table (CONTRACTS.md, "Simulated time").
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """Source of the current instant (always timezone-aware)."""

    def now(self) -> datetime:
        """Return the current instant."""
        ...

    async def sleep_until(self, instant: datetime) -> None:
        """Sleep until the clock reaches ``instant``."""
        ...


class WallClock:
    """The real time."""

    def now(self) -> datetime:
        """Return the current UTC instant."""
        return datetime.now(UTC)

    async def sleep_until(self, instant: datetime) -> None:
        """Sleep until ``instant`` of real time."""
        delay = (instant - self.now()).total_seconds()
        if delay > 0:
            await asyncio.sleep(delay)


@dataclass(frozen=True, slots=True)
class SimClock:
    """Simulated time running ``speed`` times faster than the wall clock.

    Args:
        sim_start: the simulated instant that ``wall_start`` maps to.
        wall_start: a real instant.
        speed: simulated seconds per real second (> 0).
    """

    sim_start: datetime
    wall_start: datetime
    speed: float = 1.0

    def __post_init__(self) -> None:
        if self.sim_start.tzinfo is None or self.wall_start.tzinfo is None:
            raise ValueError("SimClock instants must be timezone-aware")
        if not self.speed > 0:
            raise ValueError(f"SimClock speed must be > 0, got {self.speed!r}")

    @classmethod
    def starting_now(cls, sim_start: datetime, speed: float) -> SimClock:
        """A clock whose simulated ``sim_start`` is the present real instant."""
        return cls(sim_start=sim_start, wall_start=datetime.now(UTC), speed=speed)

    def now(self) -> datetime:
        """Return the current simulated instant."""
        wall = time.time() - self.wall_start.timestamp()
        return self.sim_start + timedelta(seconds=wall * self.speed)

    def to_wall(self, instant: datetime) -> datetime:
        """Return the real instant at which the simulated ``instant`` happens."""
        offset = (instant - self.sim_start).total_seconds() / self.speed
        return self.wall_start + timedelta(seconds=offset)

    async def sleep_until(self, instant: datetime) -> None:
        """Sleep until the simulated clock reaches ``instant``."""
        delay = self.to_wall(instant).timestamp() - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
