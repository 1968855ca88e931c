"""A collector SIGKILLed mid-batch and restarted loses and duplicates no reading."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from collector.archive import Archive
from meterhub.clock import SimClock
from simulators.runner import Fleet
from simulators.scenario import parse_scenario
from storage.archive import load_archive
from tests.collector.polled import expected_registers

pytestmark = pytest.mark.db

TZ = ZoneInfo("Asia/Shanghai")
PYTHON = str(Path(sys.executable))
RUN = """
import sys
from pathlib import Path
from collector.poller import CollectorConfig
from collector.schedule import ScheduleConfig
from collector.service import collect_command
from meterhub.settings import load_settings
config = CollectorConfig(batch_size=6, listen_port=0, clock_checks=False,
                         schedule=ScheduleConfig(reread_days=2))
sys.exit(collect_command(load_settings(), sys.argv[1], fleet=Path(sys.argv[2]), config=config,
                         status_every_s=0.5, once=True))
"""


@pytest.fixture
def fresh_db(empty_db: str) -> Iterator[str]:
    """A migrated database of its own for one test."""
    from storage import migrate

    with psycopg.connect(empty_db, autocommit=True) as conn:
        migrate.upgrade(conn)
    yield empty_db


async def _one(db_url: str, sql: str, *args: Any) -> Any:
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        cur = await conn.execute(sql, args)
        row = await cur.fetchone()
        return row[0] if row else None


async def _collector(db_url: str, fleet_file: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        PYTHON, "-c", RUN, db_url, str(fleet_file), stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE, cwd=str(Path(__file__).resolve().parents[2]),
        env=dict(os.environ))


async def test_sigkill_mid_batch_then_restart(fresh_db: str, tmp_path: Path) -> None:
    sim_now = datetime(2026, 1, 3, 0, 7, tzinfo=TZ)
    # simulated time crawls (1 s of real time = 1 ms): both processes stay in one slot
    clock = SimClock(sim_start=sim_now, wall_start=datetime.now(UTC), speed=0.001)
    fleet_file = tmp_path / "fleet.toml"
    fleet_file.write_text(
        f'version = 1\n[clock]\nsim_start = "{clock.sim_start.isoformat()}"\n'
        f'wall_start = "{clock.wall_start.isoformat()}"\nspeed = {clock.speed}\n')
    sc = parse_scenario({
        "version": 1, "seed": 11, "areas": 2, "meters_per_area": 10, "days": 4, "speed": 1.0,
        "devices": {"dlt645_share": 1.0, "modbus_share": 0.0, "mqtt_share": 0.0,
                    "meters_per_gateway": 32, "latency_ms": 8.0, "baud": 0}})
    async with Fleet(sc, clock=clock) as fleet:
        async with await psycopg.AsyncConnection.connect(fresh_db) as conn, conn.transaction():
            await load_archive(conn, Archive.model_validate(fleet.fleet_document()),
                               actor="test", now=clock.now())
        w = fleet.world
        t = clock.now().timestamp()
        want = expected_registers(w, t, date(2026, 1, 3), TZ)
        first = await _collector(fresh_db, fleet_file)
        count = 0
        for _ in range(600):
            count = await _one(fresh_db, "SELECT count(*) FROM register_reading")
            if count:
                break
            await asyncio.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        await first.wait()
        assert 0 < count < len(want), "the kill did not land mid-way"
        killed_at = await _one(fresh_db, "SELECT count(*) FROM register_reading")
        second = await _collector(fresh_db, fleet_file)
        _out, err = await second.communicate()
        assert second.returncode == 0, err.decode()
        assert b"meterhub collect: stopped" in err

    async with await psycopg.AsyncConnection.connect(fresh_db) as conn:
        cur = await conn.execute(
            "SELECT m.number, r.quantity_id, r.ts, r.value FROM register_reading r "
            "JOIN meter m ON m.id = r.meter_id")
        rows = await cur.fetchall()
        got = [(num, q, ts.astimezone(TZ)) for num, q, ts, _v in rows]
        assert len(got) == len(set(got))
        assert set(got) == want
        for num, q, ts, value in rows:
            m = w.m_number.index(num)
            col = 5 if q in (6, 8) else 0
            if q in (1, 6):
                assert value == pytest.approx(float(w.registers(m, t)[col]), abs=0.006)
            else:
                n = 4 - ts.astimezone(TZ).day
                fz = w.freeze_before(m, t, n)
                assert fz is not None and value == pytest.approx(float(fz[0][col]), abs=0.006)
        cur = await conn.execute(
            "SELECT coalesce(sum(inserted), 0), coalesce(sum(duplicates), 0), "
            "coalesce(sum(conflicts), 0) FROM ingest_batch")
        inserted, duplicates, conflicts = await cur.fetchone() or (0, 0, 0)
        # the restart read only what was missing: nothing twice, nothing conflicting
        assert (inserted, duplicates, conflicts) == (len(want), 0, 0)
        assert killed_at < len(want)
