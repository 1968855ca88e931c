"""Scenario files for ``meterhub simulate``: versioned TOML, unknown keys are errors.

Every key, its default and its meaning is listed in ``simulators/README.md``. The model here is
the single source of those defaults; :func:`load_scenario` turns any problem into a
:class:`ScenarioError` naming the offending key (``meterhub simulate`` exits with code 2).
"""

from __future__ import annotations

import tomllib
from datetime import date
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SCENARIO_VERSION = 1


class ScenarioError(Exception):
    """A scenario file is unreadable, of the wrong version, or has a bad or unknown key.

    Attributes:
        key: dotted path of the offending key (``"injections.theft"``), or the file name.
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _share() -> Any:
    return Field(default=0.0, ge=0.0, le=1.0)


class DevicesConfig(_Strict):
    """How meters are reached: DL/T 645 gateways, Modbus TCP, MQTT concentrators, manual."""

    dlt645_share: float = Field(default=0.6, ge=0.0, le=1.0)
    modbus_share: float = Field(default=0.1, ge=0.0, le=1.0)
    mqtt_share: float = Field(default=0.3, ge=0.0, le=1.0)
    manual_share: float = Field(default=0.0, ge=0.0, le=1.0)
    dlt645_1997_share: float = Field(default=0.0, ge=0.0, le=1.0)
    meters_per_gateway: int = Field(default=32, ge=1, le=1000)
    modbus_meters_per_gateway: int = Field(default=16, ge=1, le=247)
    meters_per_concentrator: int = Field(default=200, ge=1, le=10000)
    gateway_listen_share: float = Field(default=0.0, ge=0.0, le=1.0)
    dtu_connect_to: str = ""
    heartbeat_s: float = Field(default=60.0, gt=0)
    host: str = "127.0.0.1"
    baud: int = Field(default=2400, ge=0)
    latency_ms: float = Field(default=20.0, ge=0)
    drop_share: float = Field(default=0.0, ge=0.0, le=1.0)
    corrupt_share: float = Field(default=0.0, ge=0.0, le=1.0)
    modbus_model: str = "sdm630"

    @model_validator(mode="after")
    def _check_mix(self) -> DevicesConfig:
        total = self.dlt645_share + self.modbus_share + self.mqtt_share + self.manual_share
        if total <= 0:
            raise ValueError("the device shares must not all be zero")
        return self


class MqttConfig(_Strict):
    """Broker for the concentrators; empty values fall back to METERHUB_MQTT_* variables."""

    url: str = ""
    username: str = ""
    password: str = ""
    qos: int = Field(default=1, ge=0, le=2)
    batch_size: int = Field(default=100, ge=1, le=10000)
    buffer_limit: int = Field(default=100_000, ge=1)
    reread_days: int = Field(default=3, ge=0, le=62)
    inflight_max: int = Field(default=100, ge=1, le=65535)


class LoadConfig(_Strict):
    """Where customers' load and PV shapes come from."""

    source: Literal["synthetic", "ieee_eulv", "sgsc"] = "synthetic"
    path: str = ""
    daily_kwh_mean: float = Field(default=7.0, gt=0)
    daily_kwh_spread: float = Field(default=0.5, ge=0, le=2)
    pv_share: float = Field(default=0.1, ge=0.0, le=1.0)
    pv_source: Literal["synthetic", "ausgrid"] = "synthetic"
    pv_path: str = ""
    pv_kwp: tuple[float, float] = (2.0, 6.0)
    tou_hours: list[int] = Field(
        default_factory=lambda: (
            [4] * 7 + [3] + [2] * 3 + [3] * 6 + [2] * 2 + [1] * 2 + [2] * 2 + [4]
        )
    )

    @field_validator("tou_hours")
    @classmethod
    def _check_tou(cls, value: list[int]) -> list[int]:
        if len(value) != 24 or any(v not in (1, 2, 3, 4) for v in value):
            raise ValueError("must list 24 tariff numbers, each 1..4")
        return value

    @model_validator(mode="after")
    def _check_paths(self) -> LoadConfig:
        if self.source != "synthetic" and not self.path:
            raise ValueError(f"source {self.source!r} needs a path")
        if self.pv_source != "synthetic" and not self.pv_path:
            raise ValueError(f"pv_source {self.pv_source!r} needs a pv_path")
        return self


class LossConfig(_Strict):
    """Technical loss per area: fixed + k·load², calibrated to a rate drawn per area."""

    rate_min: float = Field(default=0.02, ge=0.0, lt=1.0)
    rate_max: float = Field(default=0.06, ge=0.0, lt=1.0)
    fixed_share: float = Field(default=0.3, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _check(self) -> LossConfig:
        if self.rate_min > self.rate_max:
            raise ValueError("rate_min above rate_max")
        return self


class InjectionsConfig(_Strict):
    """Shares of meters (or areas, concentrators, reads) that carry each injected fault."""

    theft: float = _share()
    theft_fraction: tuple[float, float] = (0.3, 0.7)
    fast: float = _share()
    slow: float = _share()
    drifting: float = _share()
    error_range: tuple[float, float] = (0.03, 0.12)
    drift_per_day: float = Field(default=0.004, ge=0)
    stopped: float = _share()
    reversed: float = _share()
    wrong_area: float = _share()
    pv_not_collected: float = _share()
    supply_ct_wrong: float = _share()
    clock_drift: float = _share()
    clock_drift_s_per_day: tuple[float, float] = (30.0, 240.0)
    clock_reset: float = _share()
    missing_slots: float = _share()
    offline: float = _share()
    offline_days: tuple[int, int] = (1, 3)
    concentrator_offline: float = _share()
    concentrator_offline_days: tuple[int, int] = (1, 2)
    manual_estimated: float = _share()
    manual_skipped: float = _share()
    manual_mistyped: float = _share()
    exchange: float = _share()
    multiplier_change: float = _share()
    outage: float = _share()
    outage_hours: tuple[float, float] = (1.0, 6.0)
    tariff_mismatch: float = _share()
    spike: float = _share()
    removed_reporting: float = _share()
    rollover: float = _share()
    relay_ignore: float = _share()
    relay_late: float = _share()
    relay_late_s: float = Field(default=600.0, ge=0)
    relay_stuck: float = _share()
    protected: float = _share()

    @model_validator(mode="after")
    def _check_ranges(self) -> InjectionsConfig:
        for name in (
            "theft_fraction",
            "error_range",
            "clock_drift_s_per_day",
            "offline_days",
            "concentrator_offline_days",
            "outage_hours",
        ):
            lo, hi = getattr(self, name)
            if lo > hi or lo < 0:
                raise ValueError(f"{name}: expected [low, high] with 0 <= low <= high")
        if self.theft_fraction[1] > 1:
            raise ValueError("theft_fraction: at most 1")
        return self


class Scenario(_Strict):
    """A complete, validated scenario."""

    version: int
    seed: int = 1
    start: date = date(2026, 1, 1)
    days: int = Field(default=7, ge=1, le=3660)
    speed: float = Field(default=3600.0, gt=0)
    timezone: str = "Asia/Shanghai"
    interval: int = Field(default=15, ge=1, le=60)
    areas: int = Field(default=4, ge=1)
    meters_per_area: int = Field(default=30, ge=1)
    area_prefix: str = "A"
    manual_read_time: str = "00:05"
    manual_read_jitter_min: float = Field(default=5.0, ge=0)
    freeze_tolerance_min: int = Field(default=15, ge=0, le=720)
    devices: DevicesConfig = Field(default_factory=DevicesConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    load: LoadConfig = Field(default_factory=LoadConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    injections: InjectionsConfig = Field(default_factory=InjectionsConfig)

    @field_validator("version")
    @classmethod
    def _check_version(cls, value: int) -> int:
        if value != SCENARIO_VERSION:
            raise ValueError(f"unsupported scenario version {value}; expected {SCENARIO_VERSION}")
        return value

    @field_validator("timezone")
    @classmethod
    def _check_tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("interval")
    @classmethod
    def _check_interval(cls, value: int) -> int:
        if 1440 % value:
            raise ValueError("must divide a day (1440 minutes)")
        return value

    @field_validator("manual_read_time")
    @classmethod
    def _check_hhmm(cls, value: str) -> str:
        try:
            hh, mm = value.split(":")
            if not (0 <= int(hh) < 24 and 0 <= int(mm) < 60):
                raise ValueError
        except ValueError:
            raise ValueError("must be HH:MM") from None
        return value

    @property
    def slots_per_day(self) -> int:
        """Intervals per day."""
        return 1440 // self.interval

    @property
    def zone(self) -> ZoneInfo:
        """The scenario's time zone."""
        return ZoneInfo(self.timezone)


def _loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "scenario"


def parse_scenario(data: dict[str, Any], *, source: str = "scenario") -> Scenario:
    """Validate a scenario given as a mapping (as read from TOML).

    Args:
        data: the parsed TOML document.
        source: a name for messages when the version key is absent.

    Returns:
        The validated scenario.

    Raises:
        ScenarioError: naming the first unknown or invalid key.
    """
    if "version" not in data:
        raise ScenarioError("version", f"{source} must state version = {SCENARIO_VERSION}")
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = _loc(err["loc"])
        if err["type"] == "extra_forbidden":
            raise ScenarioError(key, "unknown key") from None
        raise ScenarioError(key, err["msg"]) from None


def load_scenario(path: Path) -> Scenario:
    """Read and validate a scenario TOML file.

    Args:
        path: the scenario file.

    Returns:
        The validated scenario.

    Relative ``load.path`` and ``load.pv_path`` are taken relative to the scenario file.

    Raises:
        ScenarioError: the file cannot be read or parsed, or a key is unknown or invalid.
    """
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ScenarioError(str(path), "scenario file not found") from None
    except OSError as exc:
        raise ScenarioError(str(path), f"cannot read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(str(path), f"not valid TOML ({exc})") from None
    sc = parse_scenario(data, source=str(path))
    # relative load-shape paths are relative to the scenario file
    updates = {}
    for key in ("path", "pv_path"):
        value = getattr(sc.load, key)
        if value and not Path(value).is_absolute():
            updates[key] = str((path.parent / value).resolve())
    if updates:
        sc = sc.model_copy(update={"load": sc.load.model_copy(update=updates)})
    return sc
