"""Schedule slot math, freeze days, re-read priorities and clock decisions (pure)."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.schedule import (
    ClockAction,
    MissingFreeze,
    ScheduleConfig,
    clock_action,
    freeze_days_due,
    freeze_index,
    next_slot,
    reread_plan,
    reread_priority,
    slot_due,
    slot_floor,
    slots_between,
)

SH = ZoneInfo("Asia/Shanghai")
ZONES = [SH, ZoneInfo("UTC"), ZoneInfo("Asia/Kolkata"), ZoneInfo("Europe/Berlin")]
INTERVALS = [1, 5, 15, 30, 60, 1440]

instants = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1),
                        timezones=st.just(UTC))


@given(t=instants, interval=st.sampled_from(INTERVALS), tz=st.sampled_from(ZONES))
def test_slot_floor_properties(t: datetime, interval: int, tz: ZoneInfo) -> None:
    s = slot_floor(t, interval, tz)
    assert s <= t < s + timedelta(minutes=interval)
    local = s.astimezone(tz)
    midnight = datetime(local.year, local.month, local.day, tzinfo=tz)
    # slots count from local midnight, whole intervals of elapsed time
    assert (s - midnight).total_seconds() % (interval * 60) == 0
    assert slot_floor(s, interval, tz) == s
    assert next_slot(t, interval, tz) == s + timedelta(minutes=interval)


@given(t=instants, interval=st.sampled_from([5, 15, 30, 60]))
def test_slots_between_a_day_in_shanghai(t: datetime, interval: int) -> None:
    day = t.astimezone(SH).date()
    start = datetime(day.year, day.month, day.day, tzinfo=SH)
    slots = slots_between(start, start + timedelta(days=1), interval, SH)
    assert len(slots) == 1440 // interval
    assert slots[0] == start and all(b - a == timedelta(minutes=interval)
                                     for a, b in itertools.pairwise(slots))


def test_literal_slots() -> None:
    t = datetime(2026, 1, 2, 0, 22, 59, tzinfo=SH)
    assert slot_floor(t, 15, SH) == datetime(2026, 1, 2, 0, 15, tzinfo=SH)
    # a UTC instant is placed by local time: 16:07 UTC is 00:07 in Shanghai
    assert slot_floor(datetime(2026, 1, 1, 16, 7, tzinfo=UTC), 60, SH) == \
        datetime(2026, 1, 2, 0, 0, tzinfo=SH)
    assert slot_due(datetime(2026, 1, 2, 0, 22, tzinfo=SH), 15, SH) == \
        datetime(2026, 1, 2, 0, 15, tzinfo=SH)
    assert slot_due(datetime(2026, 1, 2, 0, 23, tzinfo=SH), 15, SH) is None  # past grace
    with pytest.raises(ValueError):
        slot_floor(datetime(2026, 1, 1), 15, SH)


def test_freeze_days_from_0005() -> None:
    before = datetime(2026, 1, 5, 0, 4, tzinfo=SH)
    after = datetime(2026, 1, 5, 0, 5, tzinfo=SH)
    assert freeze_days_due(before, SH, days=2) == [date(2026, 1, 4), date(2026, 1, 3),
                                                    date(2026, 1, 2)]
    assert freeze_days_due(after, SH, days=2)[0] == date(2026, 1, 5)
    assert freeze_days_due(after, SH, read_from=time(1, 0), days=0) == [date(2026, 1, 4)]
    assert freeze_index(date(2026, 1, 5), after, SH) == 1
    assert freeze_index(date(2026, 1, 3), after, SH) == 3
    with pytest.raises(ValueError):
        freeze_index(date(2025, 10, 1), after, SH)


def test_rereads_put_what_blocks_most_first() -> None:
    now = datetime(2026, 1, 5, 8, 0, tzinfo=SH)
    missing = [
        MissingFreeze("000000000009", "customer", date(2026, 1, 5)),
        MissingFreeze("000000000003", "customer", date(2026, 1, 4), billing=True),
        MissingFreeze("000000000001", "supply", date(2026, 1, 5)),
        MissingFreeze("000000000002", "supply", date(2026, 1, 3)),
        MissingFreeze("000000000004", "customer", date(2026, 1, 1)),  # outside the window
        MissingFreeze("000000000005", "customer", date(2026, 1, 3), billing=True),
        MissingFreeze("000000000007", "customer", date(2026, 1, 4), blocks=True),
    ]
    plan = reread_plan(missing, now, SH, days=3)
    assert [(m.meter, m.day.day) for m in plan] == [
        ("000000000002", 3), ("000000000001", 5),  # supply: the area's balance waits on it
        ("000000000007", 4),  # a line-loss result already stored as not computable waits on it
        ("000000000005", 3), ("000000000003", 4),  # billing accounts
        ("000000000009", 5),
    ]
    assert reread_priority(plan[0]) < reread_priority(plan[-1])


@pytest.mark.parametrize(("offset_s", "at", "done", "action"), [
    (30, time(10, 0), False, ClockAction.NONE),
    (-60, time(10, 0), False, ClockAction.NONE),
    (90, time(10, 0), False, ClockAction.BROADCAST),
    (-240, time(10, 0), False, ClockAction.BROADCAST),
    (240, time(10, 0), True, ClockAction.ADDRESSED),  # one broadcast a day
    (3600, time(10, 0), False, ClockAction.ADDRESSED),
    (90, time(23, 55), False, ClockAction.DEFER),  # never near the 00:00 freeze
    (3600, time(0, 3), False, ClockAction.DEFER),
])
def test_clock_actions(offset_s: float, at: time, done: bool, action: ClockAction) -> None:
    true = datetime.combine(date(2026, 1, 5), at, tzinfo=SH)
    meter = (true + timedelta(seconds=offset_s)).replace(tzinfo=None)
    assert clock_action(meter, true, SH, broadcast_done_today=done) is action


def test_schedule_config_is_validated() -> None:
    with pytest.raises(ValueError):
        ScheduleConfig(interval_min=7)
    with pytest.raises(ValueError):
        ScheduleConfig(reread_days=63)
