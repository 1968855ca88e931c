"""Shared helpers for the simulator tests."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from simulators.scenario import Scenario, parse_scenario

ALL_FAULTS: dict[str, Any] = {
    "theft": 0.1,
    "fast": 0.05,
    "slow": 0.05,
    "drifting": 0.05,
    "stopped": 0.05,
    "reversed": 0.04,
    "wrong_area": 0.05,
    "pv_not_collected": 0.5,
    "supply_ct_wrong": 0.34,
    "clock_drift": 0.1,
    "clock_reset": 0.05,
    "missing_slots": 0.01,
    "offline": 0.05,
    "concentrator_offline": 0.5,
    "manual_estimated": 0.1,
    "manual_skipped": 0.1,
    "manual_mistyped": 0.1,
    "exchange": 0.05,
    "multiplier_change": 0.04,
    "outage": 0.34,
    "tariff_mismatch": 0.05,
    "spike": 0.05,
    "removed_reporting": 0.5,
    "rollover": 0.05,
    "relay_ignore": 0.1,
    "relay_late": 0.1,
    "relay_stuck": 0.1,
    "protected": 0.1,
}


def scenario(*, faults: bool = True, **overrides: Any) -> Scenario:
    """A small seeded scenario: 3 areas × 16 customers, 4 days, every device kind."""
    data: dict[str, Any] = {
        "version": 1,
        "seed": 7,
        "areas": 3,
        "meters_per_area": 16,
        "days": 4,
        "speed": 86400.0,
        "devices": {
            "dlt645_share": 0.5,
            "modbus_share": 0.2,
            "mqtt_share": 0.3,
            "manual_share": 0.1,
            "meters_per_gateway": 8,
            "meters_per_concentrator": 8,
            "latency_ms": 0.0,
            "baud": 0,
        },
        "load": {"pv_share": 0.15},
    }
    if faults:
        data["injections"] = dict(ALL_FAULTS)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return parse_scenario(data)


class ManualClock:
    """A clock the test moves by hand; ``sleep_until`` waits until it is moved far enough."""

    def __init__(self, start: datetime) -> None:
        self.t = start
        self._moved = asyncio.Event()

    def now(self) -> datetime:
        """The current instant."""
        return self.t

    def set(self, when: datetime) -> None:
        """Move the clock."""
        self.t = when
        self._moved.set()

    async def sleep_until(self, instant: datetime) -> None:
        """Wait until the clock reaches ``instant``."""
        while self.t < instant:
            self._moved.clear()
            await self._moved.wait()
