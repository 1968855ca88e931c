"""Collection schedules: pure, clock-driven decisions about what to read when.

Nothing here reads the time or does I/O: every function takes the instant it decides for, the
site time zone and the settings, so the same code runs on the wall clock, a simulated clock and
in property tests.

* **Interval reads.** Energy registers are read at each schedule slot (e.g. every 15 minutes,
  slots counted from local midnight) and the reading is stamped at the slot
  (:func:`slot_floor`), CONTRACTS.md "stamped at their schedule slot". A read is still in time
  while ``now - slot <= grace``; later, the slot is missed (a register cannot be re-read for a
  past instant) and completeness counts it.
* **Daily freezes.** The meter freezes at local 00:00; ``05060001``/``05060101`` (last 1) are
  read from 00:05 (:func:`freeze_days_due`). DI0 = ``n`` addresses the n-th most recent freeze
  (:func:`freeze_index`), so missed freezes are re-read (补抄) for a number of past days.
* **Re-reads (补抄)** are ordered by what they block (:func:`reread_priority`): a supply meter's
  freeze blocks its whole area's line loss; then readings that a stored line-loss result is
  waiting for (``line_loss_blocker``); then customers that bill an account, then the rest;
  older days first, because they leave the re-read window soonest.
* **Clock checks** (:func:`clock_action`): within the tolerance (default 60 s) nothing; up to
  the broadcast limit (default 5 min) a broadcast ``08`` at most once a day and never near the
  00:00 freeze; beyond that an addressed, password-protected write of date and time followed by
  a read-back (protocols.md §11a). Near midnight the sync is deferred.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import IntEnum, StrEnum
from zoneinfo import ZoneInfo


@dataclass(frozen=True, slots=True)
class ScheduleConfig:
    """Schedule settings (all defaults are practice, not constants).

    Attributes:
        interval_min: Default interval length for meters whose archive has none.
        grace_fraction: Share of the interval during which a slot may still be read.
        freeze_read_from: Local time from which the day's freeze is read.
        reread_days: Past days of freezes to re-read when missing.
        clock_tolerance_s: Largest clock offset left alone (SGCC practice: 1 minute).
        broadcast_max_s: Largest offset corrected by broadcast time sync.
        midnight_guard_min: No time sync within this many minutes of local 00:00.
        clock_check_hours: Hours between clock checks of one meter.
    """

    interval_min: int = 15
    grace_fraction: float = 0.5
    freeze_read_from: time = time(0, 5)
    reread_days: int = 3
    clock_tolerance_s: float = 60.0
    broadcast_max_s: float = 300.0
    midnight_guard_min: int = 10
    clock_check_hours: float = 24.0

    def __post_init__(self) -> None:
        if not 0 < self.interval_min <= 1440 or 1440 % self.interval_min:
            raise ValueError("interval_min must divide a day (1..1440)")
        if not 0 < self.grace_fraction <= 1:
            raise ValueError("grace_fraction must be in (0, 1]")
        if self.reread_days < 0 or self.reread_days > 62:
            raise ValueError("reread_days must be 0..62 (a meter keeps 62 daily freezes)")


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    """The instant of local 00:00 on ``day``."""
    return datetime(day.year, day.month, day.day, tzinfo=tz)


def slot_floor(t: datetime, interval_min: int, tz: ZoneInfo) -> datetime:
    """The schedule slot that ``t`` falls in: the latest slot boundary at or before ``t``.

    Slots are counted from local midnight, so with intervals that divide a day every day has
    the same slots (00:00, 00:15, …) whatever the UTC offset.

    Args:
        t: An aware instant.
        interval_min: Interval length in minutes (divides 1440).
        tz: Site time zone.

    Returns:
        The slot instant (aware, in ``tz``).

    Raises:
        ValueError: ``t`` is naive.
    """
    if t.tzinfo is None:
        raise ValueError("slot_floor needs an aware instant")
    local = t.astimezone(tz)
    midnight = local_midnight(local.date(), tz)
    elapsed = (t - midnight).total_seconds()
    step = interval_min * 60
    k = int(elapsed // step)
    return (midnight.astimezone(UTC) + timedelta(seconds=k * step)).astimezone(tz)


def next_slot(t: datetime, interval_min: int, tz: ZoneInfo) -> datetime:
    """The first slot strictly after ``t``."""
    return slot_floor(t, interval_min, tz) + timedelta(minutes=interval_min)


def slots_between(start: datetime, end: datetime, interval_min: int,
                  tz: ZoneInfo) -> list[datetime]:
    """Slots ``s`` with ``start <= s < end``.

    Args:
        start: Aware instant.
        end: Aware instant.
        interval_min: Interval length.
        tz: Site time zone.

    Returns:
        The slots in order.
    """
    s = slot_floor(start, interval_min, tz)
    if s < start:
        s += timedelta(minutes=interval_min)
    out = []
    while s < end:
        out.append(s)
        s += timedelta(minutes=interval_min)
    return out


def slot_due(now: datetime, interval_min: int, tz: ZoneInfo,
             grace_fraction: float = 0.5) -> datetime | None:
    """The slot an interval read at ``now`` is stamped with, or None when too late for it.

    Args:
        now: The instant of the read.
        interval_min: Interval length.
        tz: Site time zone.
        grace_fraction: Share of the interval during which the slot may still be read.

    Returns:
        The slot, or None when ``now`` is past the slot's grace window.
    """
    slot = slot_floor(now, interval_min, tz)
    if (now - slot).total_seconds() <= grace_fraction * interval_min * 60:
        return slot
    return None


def freeze_days_due(now: datetime, tz: ZoneInfo, *, read_from: time = time(0, 5),
                    days: int = 3) -> list[date]:
    """Local dates whose 00:00 freeze should be in the meter and read by now, newest first.

    The freeze of date D is taken at D 00:00 and read from D ``read_from``; with ``days`` past
    days re-read, the dates ``D, D-1, …, D-days`` are due (``days + 1`` in all).

    Args:
        now: The current instant.
        tz: Site time zone.
        read_from: Local time of day from which the newest freeze is read.
        days: Past days to re-read.

    Returns:
        Dates, newest first.
    """
    local = now.astimezone(tz)
    newest = local.date()
    if local.time() < read_from:
        newest -= timedelta(days=1)
    return [newest - timedelta(days=i) for i in range(days + 1)]


def freeze_index(day: date, now: datetime, tz: ZoneInfo) -> int:
    """DI0 of the freeze of local ``day`` as seen at ``now`` (1 = the most recent).

    Args:
        day: The freeze's local date (its 00:00 label).
        now: The current instant (after that day's 00:00).
        tz: Site time zone.

    Returns:
        1…62.

    Raises:
        ValueError: The freeze is in the future or older than 62 days.
    """
    n = (now.astimezone(tz).date() - day).days + 1
    if not 1 <= n <= 62:
        raise ValueError(f"the freeze of {day} is not among the last 62 at {now}")
    return n


class TaskKind(StrEnum):
    """What a collection task reads."""

    INTERVAL = "interval"
    FREEZE = "freeze"
    CLOCK = "clock"
    RELAY = "relay"
    ON_DEMAND = "on_demand"


@dataclass(frozen=True, slots=True)
class MissingFreeze:
    """A daily freeze that is not stored yet.

    Attributes:
        meter: Meter number.
        role: ``supply`` or ``customer``.
        day: The freeze's local date.
        billing: True when the meter belongs to a (prepaid) account.
        blocks: True when a stored line-loss result is not computable for want of this reading
            (``line_loss_blocker``).
    """

    meter: str
    role: str
    day: date
    billing: bool = False
    blocks: bool = False


def reread_priority(item: MissingFreeze) -> tuple[int, date, str]:
    """Sort key of a re-read: what it blocks first, then older days, then meter number.

    Supply meters come first (their freeze blocks a whole area's balance), then readings that
    a line-loss result already computed as not computable waits for, then meters that bill an
    account, then the rest.
    """
    rank = 0 if item.role == "supply" else 1 if item.blocks else 2 if item.billing else 3
    return (rank, item.day, item.meter)


def reread_plan(missing: list[MissingFreeze], now: datetime, tz: ZoneInfo,
                days: int) -> list[MissingFreeze]:
    """Missing freezes still worth re-reading, in priority order.

    Args:
        missing: What is missing.
        now: The current instant.
        tz: Site time zone.
        days: The re-read window in past days.

    Returns:
        The items inside the window (the newest freeze and ``days`` before it), sorted by
        :func:`reread_priority`.
    """
    window = set(freeze_days_due(now, tz, days=days))
    return sorted((m for m in missing if m.day in window), key=reread_priority)


class ClockAction(IntEnum):
    """What to do about a meter's clock."""

    NONE = 0
    BROADCAST = 1
    ADDRESSED = 2
    DEFER = 3


def clock_action(meter_time: datetime, true_time: datetime, tz: ZoneInfo, *,
                 tolerance_s: float = 60.0, broadcast_max_s: float = 300.0,
                 midnight_guard_min: int = 10, broadcast_done_today: bool = False
                 ) -> ClockAction:
    """Decide how to correct a meter clock (protocols.md §11a; DOMAIN.md clock tolerance).

    Args:
        meter_time: The meter's clock (aware, or naive local time of ``tz``).
        true_time: The true instant when the meter's clock was read.
        tz: Site time zone.
        tolerance_s: Largest offset left alone.
        broadcast_max_s: Largest offset a broadcast ``08`` may correct.
        midnight_guard_min: No sync within this many minutes of local 00:00 (the freeze).
        broadcast_done_today: A broadcast was already sent today on this bus.

    Returns:
        NONE, BROADCAST, ADDRESSED (write date and time, then read back) or DEFER.
    """
    if meter_time.tzinfo is None:
        meter_time = meter_time.replace(tzinfo=tz)
    offset = abs((meter_time - true_time).total_seconds())
    if offset <= tolerance_s:
        return ClockAction.NONE
    local = true_time.astimezone(tz)
    minute = local.hour * 60 + local.minute
    if minute < midnight_guard_min or minute >= 1440 - midnight_guard_min:
        return ClockAction.DEFER
    if offset <= broadcast_max_s and not broadcast_done_today:
        return ClockAction.BROADCAST
    return ClockAction.ADDRESSED
