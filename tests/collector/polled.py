"""What a polling cycle on a simulated DL/T 645 fleet must store (shared by the poll tests)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo


def expected_registers(world: Any, t: float, day: date, tz: ZoneInfo,
                       freezes: int = 3) -> set[tuple[str, int, datetime]]:
    """(meter number, quantity id, instant) of one cycle at ``t`` on local ``day``.

    Every meter that answers gives its registers at the day's 00:00 slot (forward, and reverse
    for a bidirectional meter) and its last ``freezes`` daily freezes (quantities 7/8).
    """
    midnight = datetime(day.year, day.month, day.day, tzinfo=tz)
    want: set[tuple[str, int, datetime]] = set()
    for m in range(world.M):
        if world.silent(m, t):
            continue
        both = bool(world.bidir_archive[world.m_point[m]])  # PV: reverse registers too
        for q in (1, 6) if both else (1,):
            want.add((world.m_number[m], q, midnight))
        for n in range(1, freezes + 1):
            if world.freeze_before(m, t, n) is not None:
                for q in (7, 8) if both else (7,):
                    want.add((world.m_number[m], q, midnight - timedelta(days=n - 1)))
    return want
