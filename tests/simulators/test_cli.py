"""``meterhub simulate`` end to end: fleet file at start-up, truth at exit, SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

SCENARIO = """\
version = 1
seed = 5
days = 2
speed = 172800.0
areas = 2
meters_per_area = 6
[devices]
dlt645_share = 0.7
modbus_share = 0.3
mqtt_share = 0.0
latency_ms = 0
baud = 0
[injections]
theft = 0.2
"""


def _meterhub() -> list[str]:
    return [sys.executable, "-c", "from meterhub.cli import main; main()"]


def test_simulate_runs_its_days_and_writes_truth(tmp_path: Path) -> None:
    sc = tmp_path / "sc.toml"
    sc.write_text(SCENARIO)
    truth, fleet = tmp_path / "truth.json", tmp_path / "fleet.toml"
    proc = subprocess.run(
        [
            *_meterhub(),
            "simulate",
            "--scenario",
            str(sc),
            "--truth",
            str(truth),
            "--fleet",
            str(fleet),
        ],
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    doc = json.loads(truth.read_text())
    assert doc["schema"] == "meterhub-sim-truth/1" and doc["days"] == 2
    archive = tomllib.loads(fleet.read_text())
    assert {m["number"] for m in archive["meter"]} <= {m["number"] for m in doc["meters"]}
    assert archive["clock"]["speed"] == 172800.0


def test_simulate_forever_stops_on_sigterm(tmp_path: Path) -> None:
    sc = tmp_path / "sc.toml"
    sc.write_text(SCENARIO.replace("speed = 172800.0", "speed = 3600.0"))
    truth, fleet = tmp_path / "truth.json", tmp_path / "fleet.toml"
    proc = subprocess.Popen(
        [
            *_meterhub(),
            "simulate",
            "--scenario",
            str(sc),
            "--truth",
            str(truth),
            "--fleet",
            str(fleet),
            "--forever",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(300):
            if fleet.exists():
                break
            time.sleep(0.05)
        assert fleet.exists(), "the fleet file is written at start-up"
        urls = [g["url"] for g in tomllib.loads(fleet.read_text())["gateway"]]
        assert all(u.startswith("tcp://127.0.0.1:") for u in urls)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    doc = json.loads(truth.read_text())
    assert doc["schema"] == "meterhub-sim-truth/1"


def test_simulate_exit_code_2_names_the_key(tmp_path: Path) -> None:
    sc = tmp_path / "sc.toml"
    sc.write_text(SCENARIO + "colour = 'red'\n")
    proc = subprocess.run(
        [*_meterhub(), "simulate", "--scenario", str(sc)], capture_output=True, timeout=60
    )
    assert proc.returncode == 2
    assert json.loads(proc.stderr.decode().strip().splitlines()[-1])["error"]["key"] == (
        "injections.colour"
    )


def test_fleet_file_is_a_valid_archive(tmp_path: Path) -> None:
    """The collector's own archive parser accepts what ``simulate`` writes."""
    from collector.archive import parse_archive

    sc = tmp_path / "sc.toml"
    sc.write_text(SCENARIO.replace("theft = 0.2", "theft = 0.2\nexchange = 0.3\nwrong_area = 0.2"))
    fleet = tmp_path / "fleet.toml"
    proc = subprocess.run(
        [*_meterhub(), "simulate", "--scenario", str(sc), "--fleet", str(fleet)],
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    archive = parse_archive(fleet.read_bytes(), name="fleet", site_timezone="Asia/Shanghai")
    removed = [m for m in archive.meter if m.removed is not None]
    installed = [m for m in archive.meter if m.installed is not None]
    assert removed and len(removed) == len(installed)
    assert all(m.end_reading is not None for m in removed)
    assert archive.clock is not None and archive.clock.speed == 172800.0


def test_simulate_concentrators_use_the_broker_from_the_environment(
    tmp_path: Path, broker_url: str
) -> None:
    import os

    from protocols.mqtt import ReadingsBatch

    from .test_devices import Collector

    sc = tmp_path / "sc.toml"
    sc.write_text(
        SCENARIO.replace("mqtt_share = 0.0", "mqtt_share = 0.5")
        .replace("dlt645_share = 0.7", "dlt645_share = 0.3")
        .replace("days = 2", "days = 1")
    )
    fleet = tmp_path / "fleet.toml"
    col = Collector(broker_url)
    try:
        env = {**os.environ, "METERHUB_MQTT_URL": broker_url}
        proc = subprocess.run(
            [*_meterhub(), "simulate", "--scenario", str(sc), "--fleet", str(fleet)],
            capture_output=True,
            timeout=60,
            env=env,
        )
        assert proc.returncode == 0, proc.stderr.decode()
        archive = tomllib.loads(fleet.read_text())
        assert all(c["broker"] == broker_url for c in archive["concentrator"])
        assert all(c["username"] == c["id"] for c in archive["concentrator"])
        for _ in range(100):
            if any(isinstance(m, ReadingsBatch) for _c, m in list(col.messages)):
                break
            time.sleep(0.05)
        ids = {c for c, m in col.messages if isinstance(m, ReadingsBatch)}
        assert ids == {c["id"] for c in archive["concentrator"]}
    finally:
        col.close()
