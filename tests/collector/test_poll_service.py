"""``collect_command`` in a subprocess on a simulated clock: it polls, reports, stops on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest

from collector.archive import Archive
from collector.service import clock_from_fleet
from meterhub.clock import SimClock
from simulators.runner import Fleet
from simulators.scenario import parse_scenario
from storage.archive import load_archive

pytestmark = pytest.mark.db

TZ = ZoneInfo("Asia/Shanghai")
RUN = """
import sys
from pathlib import Path
from collector.poller import CollectorConfig
from collector.service import collect_command
from meterhub.settings import load_settings
sys.exit(collect_command(load_settings(), sys.argv[1], fleet=Path(sys.argv[2]),
                         config=CollectorConfig(listen_port=0, clock_checks=False),
                         status_every_s=0.3))
"""


@pytest.fixture
def fresh_db(empty_db: str) -> Iterator[str]:
    """A migrated database of its own for one test."""
    from storage import migrate

    with psycopg.connect(empty_db, autocommit=True) as conn:
        migrate.upgrade(conn)
    yield empty_db


def test_clock_from_fleet(tmp_path: Path) -> None:
    f = tmp_path / "fleet.toml"
    f.write_text('version = 1\n[clock]\nsim_start = "2026-01-01T00:00:00+08:00"\n'
                 'wall_start = "2026-11-23T08:00:00Z"\nspeed = 3600.0\n')
    clock = clock_from_fleet(f)
    assert clock == SimClock(datetime(2026, 1, 1, tzinfo=TZ),
                             datetime(2026, 11, 23, 8, tzinfo=UTC), 3600.0)
    f.write_text("version = 1\n")
    assert clock_from_fleet(f) is None
    f.write_text('version = 1\n[clock]\nsim_start = "x"\n')
    with pytest.raises(ValueError):
        clock_from_fleet(f)


async def test_collect_follows_the_simulated_clock_and_stops_on_sigterm(
    fresh_db: str, tmp_path: Path
) -> None:
    # one real second is one simulated minute; the 10:15 slot comes 0.6 s after the start
    clock = SimClock(sim_start=datetime(2026, 1, 2, 10, 14, 24, tzinfo=TZ),
                     wall_start=datetime.now(UTC), speed=60.0)
    fleet_file = tmp_path / "fleet.toml"
    fleet_file.write_text(
        f'version = 1\n[clock]\nsim_start = "{clock.sim_start.isoformat()}"\n'
        f'wall_start = "{clock.wall_start.isoformat()}"\nspeed = {clock.speed}\n')
    sc = parse_scenario({
        "version": 1, "seed": 2, "areas": 1, "meters_per_area": 6, "days": 3, "speed": 1.0,
        "devices": {"dlt645_share": 0.5, "modbus_share": 0.5, "mqtt_share": 0.0,
                    "meters_per_gateway": 8, "latency_ms": 0.0, "baud": 0}})
    async with Fleet(sc, clock=clock) as fleet:
        async with await psycopg.AsyncConnection.connect(fresh_db) as conn, conn.transaction():
            await load_archive(conn, Archive.model_validate(fleet.fleet_document()),
                               actor="test", now=clock.now())
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", RUN, fresh_db, str(fleet_file),
            cwd=str(Path(__file__).resolve().parents[2]), env=dict(os.environ),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        slot = datetime(2026, 1, 2, 10, 15, tzinfo=TZ)
        w = fleet.world
        # every meter's forward register, and the reverse one of meters marked bidirectional
        expected = sum(2 if w.bidir_archive[w.m_point[m]] else 1 for m in range(w.M))
        stored = 0
        for _ in range(400):
            async with await psycopg.AsyncConnection.connect(fresh_db) as conn:
                cur = await conn.execute("SELECT count(*) FROM register_reading WHERE ts = %s",
                                         (slot,))
                row = await cur.fetchone()
                stored = row[0] if row else 0
            if stored >= expected:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        _out, err = await asyncio.wait_for(proc.communicate(), 60)
    text = err.decode()
    assert proc.returncode == 0, text
    assert stored == expected
    assert "meterhub collect: 2026-01-02T10:1" in text  # status lines on simulated time
    assert "meterhub collect: stopped" in text
    from meterhub.settings import load_settings

    beat = json.loads((Path(load_settings().state_dir) / "collector" / "poller.json").read_text())
    assert time.time() - beat["wall"] < 60 and beat["cycles"] >= 1
