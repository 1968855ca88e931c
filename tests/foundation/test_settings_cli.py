"""Settings are validated at start; a bad one is a one-line error naming it."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from meterhub.clock import SimClock
from meterhub.settings import SettingsError, load_settings

REPO = Path(__file__).resolve().parents[2]
METERHUB = str(Path(sys.executable).parent / "meterhub")


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("METERHUB_")}
    return subprocess.run(
        [METERHUB, *args], capture_output=True, text=True, env={**base, **(env or {})},
        timeout=120, check=False,
    )


def test_defaults_are_valid() -> None:
    s = load_settings(environ={})
    assert s.timezone == "Asia/Shanghai"
    assert s.provisioned_db and s.provisioned_broker
    assert s.loss_band == (0.0, 10.0)


def test_environment_overrides_file(tmp_path: Path) -> None:
    f = tmp_path / "s.toml"
    f.write_text('timezone = "UTC"\ndefault_interval_min = 30\n')
    s = load_settings(f, environ={"METERHUB_DEFAULT_INTERVAL_MIN": "60"})
    assert s.timezone == "UTC"
    assert s.default_interval_min == 60


@pytest.mark.parametrize(
    ("environ", "names"),
    [
        ({"METERHUB_DATABSE_URL": "postgresql://x/y"}, "METERHUB_DATABSE_URL"),
        ({"METERHUB_DATABASE_URL": "mysql://x/y"}, "METERHUB_DATABASE_URL"),
        ({"METERHUB_DATABASE_URL": "postgresql://h:99999x/y"}, "METERHUB_DATABASE_URL"),
        ({"METERHUB_MQTT_URL": "http://broker"}, "METERHUB_MQTT_URL"),
        ({"METERHUB_TIMEZONE": "Mars/Olympus"}, "METERHUB_TIMEZONE"),
        ({"METERHUB_DEFAULT_INTERVAL_MIN": "zero"}, "METERHUB_DEFAULT_INTERVAL_MIN"),
        ({"METERHUB_LOSS_BAND": "10,0"}, "METERHUB_LOSS_BAND"),
    ],
)
def test_bad_settings_name_the_setting(environ: dict[str, str], names: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(environ=environ)
    assert names in str(err.value)


def test_credential_variables_are_not_settings() -> None:
    s = load_settings(environ={"METERHUB_C001_PASSWORD": "secret"})
    assert s.database_url is None


def test_unknown_key_in_settings_file(tmp_path: Path) -> None:
    f = tmp_path / "s.toml"
    f.write_text('timezone = "UTC"\nloss_bnad = [0, 8]\n')
    with pytest.raises(SettingsError, match="loss_bnad"):
        load_settings(f, environ={})


def test_cli_bad_setting_is_one_line_and_nonzero() -> None:
    proc = _run(["db", "status"], {"METERHUB_DATABASE_URL": "mysql://nowhere/db"})
    assert proc.returncode == 64
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "METERHUB_DATABASE_URL" in lines[0]


def test_cli_unknown_setting_is_refused() -> None:
    proc = _run(["db", "status"], {"METERHUB_TIMEZOEN": "UTC"})
    assert proc.returncode == 64
    assert "METERHUB_TIMEZOEN" in proc.stderr


def test_cli_unreachable_database_names_the_setting() -> None:
    proc = _run(["db", "upgrade"], {"METERHUB_DATABASE_URL": "postgresql://u:p@127.0.0.1:9/x"})
    assert proc.returncode == 5
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "METERHUB_DATABASE_URL" in lines[0]
    assert ":p@" not in lines[0], "the password leaked into the error"


def test_cli_usage_error_is_64() -> None:
    proc = _run(["no-such-command"])
    assert proc.returncode == 64


def test_simclock_maps_wall_time() -> None:
    sim_start = datetime(2026, 1, 1, tzinfo=UTC)
    wall_start = datetime.now(UTC) - timedelta(seconds=10)
    clock = SimClock(sim_start=sim_start, wall_start=wall_start, speed=3600)
    elapsed = (clock.now() - sim_start).total_seconds()
    assert 10 * 3600 <= elapsed < 12 * 3600
    assert clock.to_wall(sim_start + timedelta(hours=10)) == wall_start + timedelta(seconds=10)
    with pytest.raises(ValueError, match="speed"):
        SimClock(sim_start=sim_start, wall_start=wall_start, speed=0)
