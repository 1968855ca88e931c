"""Typed settings, read once per process from ``METERHUB_*`` variables and an optional TOML file.

Precedence (highest first): environment variables, the TOML file given with ``--settings``
(or ``METERHUB_SETTINGS``), defaults. Unknown keys in the TOML file and unknown ``METERHUB_*``
variables are errors, so a typo never passes silently. Variables ending in ``_PASSWORD``,
``_TOKEN`` or ``_SECRET`` are reserved for credentials that archive files reference with
``password_ref = "env:NAME"`` and are not settings.
"""

from __future__ import annotations

import os
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "METERHUB_"
_CREDENTIAL_SUFFIXES = ("_PASSWORD", "_TOKEN", "_SECRET")
_NOT_SETTINGS = {"METERHUB_SETTINGS"}


class SettingsError(Exception):
    """A setting is missing, unknown or malformed; the message names it."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting


def _project_root() -> Path | None:
    here = Path(__file__).resolve().parent.parent
    return here if (here / "pyproject.toml").is_file() else None


def _default_state_dir() -> Path:
    root = _project_root()
    return (root if root is not None else Path.cwd()) / ".state"


def _default_root_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "meterhub"


class Settings(BaseSettings):
    """meterhub's settings. Each field is ``METERHUB_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", case_sensitive=False, validate_default=True
    )

    database_url: str | None = Field(
        default=None,
        description="postgresql:// URL of an existing TimescaleDB; unset = provisioned locally",
    )
    mqtt_url: str | None = Field(
        default=None, description="mqtt:// or mqtts:// URL of an existing broker; unset = local"
    )
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    state_dir: Path = Field(default_factory=_default_state_dir)
    root_cache: Path = Field(default_factory=_default_root_cache)
    debian_suite: str = "trixie"
    db_port: int | None = Field(default=None, ge=1024, le=65535)
    broker_port: int | None = Field(default=None, ge=1024, le=65535)
    timezone: str = "Asia/Shanghai"
    default_interval_min: int = Field(default=15, gt=0, le=1440)
    freeze_tolerance_min: int = Field(default=15, ge=0, le=720)
    loss_band: tuple[float, float] = (0.0, 10.0)
    coverage_min: float = Field(default=100.0, ge=0, le=100)
    estimated_max: float = Field(default=5.0, ge=0, le=100)
    low_energy_kwh: float = Field(default=20.0, ge=0)
    log_level: str = "INFO"
    collector_instance: str = Field(
        default="1", pattern=r"^[A-Za-z0-9_.-]{1,32}$",
        description="this collector process's name within the share group: its MQTT client id "
        "is meterhub-collector-<instance>, stable across restarts and distinct per process",
    )
    collector: dict[str, Any] = Field(
        default_factory=dict,
        description="collector settings: a [collector] table (timeouts, retries, DTU listener, "
        "schedules); METERHUB_COLLECTOR takes it as JSON",
    )

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError("must be a postgresql:// URL")
        if not parts.hostname and "host=" not in (parts.query or ""):
            raise ValueError("must name a host")
        try:
            parts.port  # noqa: B018 - raises on a malformed port
        except ValueError as exc:
            raise ValueError(f"malformed port ({exc})") from None
        return value

    @field_validator("mqtt_url")
    @classmethod
    def _check_mqtt_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError("must be an mqtt:// or mqtts:// URL")
        if not parts.hostname:
            raise ValueError("must name a host")
        try:
            parts.port  # noqa: B018
        except ValueError as exc:
            raise ValueError(f"malformed port ({exc})") from None
        return value

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("loss_band")
    @classmethod
    def _check_band(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[0] > value[1]:
            raise ValueError("lower bound above upper bound")
        return value

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        level = value.upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return level

    @property
    def zone(self) -> ZoneInfo:
        """The site time zone that defines day boundaries and 00:00 freezes."""
        return ZoneInfo(self.timezone)

    @property
    def provisioned_db(self) -> bool:
        """True when meterhub provisions its own TimescaleDB (no URL set)."""
        return self.database_url is None

    @property
    def provisioned_broker(self) -> bool:
        """True when meterhub provisions its own Mosquitto (no URL set)."""
        return self.mqtt_url is None


def _check_unknown_env(environ: dict[str, str]) -> None:
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    for key in sorted(environ):
        upper = key.upper()
        if not upper.startswith(ENV_PREFIX) or upper in known or upper in _NOT_SETTINGS:
            continue
        if upper.endswith(_CREDENTIAL_SUFFIXES):
            continue
        raise SettingsError(key, "unknown setting")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise SettingsError(str(path), "settings file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(str(path), f"not valid TOML ({exc})") from None
    for key in data:
        if key not in Settings.model_fields:
            raise SettingsError(f"{path}: {key}", "unknown setting")
    return data


def load_settings(
    file: Path | None = None, environ: dict[str, str] | None = None
) -> Settings:
    """Build and validate the settings.

    Args:
        file: optional TOML settings file; defaults to ``$METERHUB_SETTINGS`` when set.
        environ: the environment to read (defaults to ``os.environ``).

    Returns:
        The validated settings.

    Raises:
        SettingsError: naming the first bad setting.
    """
    env = dict(os.environ if environ is None else environ)
    _check_unknown_env(env)
    if file is None and env.get("METERHUB_SETTINGS"):
        file = Path(env["METERHUB_SETTINGS"])
    values: dict[str, Any] = _read_toml(file) if file is not None else {}
    for name in Settings.model_fields:
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is None:
            for key, val in env.items():  # case-insensitive match
                if key.upper() == ENV_PREFIX + name.upper():
                    raw = val
                    break
        if raw is not None:
            values[name] = _coerce_env(name, raw)
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "settings"
        source = ENV_PREFIX + field.upper() if field.upper() in _env_names(env) else field
        msg = err["msg"].removeprefix("Value error, ")
        raise SettingsError(source, msg) from None


def _env_names(env: dict[str, str]) -> set[str]:
    return {k.upper().removeprefix(ENV_PREFIX) for k in env if k.upper().startswith(ENV_PREFIX)}


def _coerce_env(name: str, raw: str) -> Any:
    if name == "collector":
        import json

        try:
            return json.loads(raw)
        except ValueError:
            raise SettingsError(ENV_PREFIX + "COLLECTOR", "must be a JSON object") from None
    if name == "loss_band":
        parts = [p.strip() for p in raw.strip("[]() ").split(",")]
        if len(parts) != 2:
            raise SettingsError(ENV_PREFIX + "LOSS_BAND", "must be two numbers: LOW,HIGH")
        return parts
    return raw


_override: Settings | None = None


def set_settings(settings: Settings | None) -> None:
    """Install ``settings`` as the process-wide settings (``None`` resets)."""
    global _override
    _override = settings
    get_settings.cache_clear()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, loaded once."""
    if _override is not None:
        return _override
    return load_settings()
