"""The polling collector across a database outage: what it read is held, then stored once.

A throwaway TimescaleDB cluster of its own is stopped in the middle of a polling cycle (the
outage length is ``COLLECTOR_TEST_OUTAGE_S``, 3 s by default; 30 s was checked too) and started
again. The readings the poller had taken stay in its buffer, the next cycle commits them and
reads only what is still missing: every expected register is stored exactly once.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import psycopg
import pytest

from collector.archive import Archive
from collector.poller import CollectorConfig, Poller
from collector.schedule import ScheduleConfig
from meterhub.clock import SimClock
from simulators.runner import Fleet
from simulators.scenario import parse_scenario
from storage import migrate
from storage.archive import load_archive
from tests.collector.polled import expected_registers
from tests.collector.test_mqtt_faults import OUTAGE_S, ThrowawayDb, throwaway_db

pytestmark = [pytest.mark.db]
__all__ = ["throwaway_db"]  # the fixture, shared with the MQTT fault tests

TZ = ZoneInfo("Asia/Shanghai")


async def _count(url: str) -> int:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute("SELECT count(*) FROM register_reading")
        row = await cur.fetchone()
        return int(row[0]) if row else 0


async def test_database_outage_mid_cycle_loses_and_duplicates_nothing(
    throwaway_db: ThrowawayDb,
) -> None:
    url = await asyncio.to_thread(throwaway_db.up)
    with psycopg.connect(url, autocommit=True) as conn:
        migrate.upgrade(conn)
    sim_now = datetime(2026, 1, 3, 0, 7, tzinfo=TZ)
    # simulated time crawls: the whole test stays inside one slot
    clock = SimClock(sim_start=sim_now, wall_start=datetime.now(UTC), speed=0.001)
    sc = parse_scenario({
        "version": 1, "seed": 12, "areas": 2, "meters_per_area": 8, "days": 4, "speed": 1.0,
        "devices": {"dlt645_share": 1.0, "modbus_share": 0.0, "mqtt_share": 0.0,
                    "meters_per_gateway": 32, "latency_ms": 40.0, "baud": 0}})  # fmt: skip
    config = CollectorConfig(batch_size=4, listen_port=0, clock_checks=False,
                             schedule=ScheduleConfig(reread_days=2))
    async with Fleet(sc, clock=clock) as fleet:
        async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
            await load_archive(conn, Archive.model_validate(fleet.fleet_document()),
                               actor="test", now=clock.now())
        w = fleet.world
        t = clock.now().timestamp()
        want = expected_registers(w, t, date(2026, 1, 3), TZ)

        poller = Poller(db_url=url, clock=clock, tz=TZ, config=config)
        await poller.start()
        try:
            first = asyncio.create_task(poller.run_cycle())
            for _ in range(1000):
                if first.done() or await _count(url):
                    break
                await asyncio.sleep(0.01)
            await asyncio.to_thread(throwaway_db.down)
            with pytest.raises(psycopg.Error):
                await first  # its commits fail once the server is gone
            await asyncio.sleep(OUTAGE_S)
            assert await asyncio.to_thread(throwaway_db.up) == url
            await poller.run_cycle()
            await poller.flush()
        finally:
            await poller.close()

    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(
            "SELECT m.number, r.quantity_id, r.ts FROM register_reading r "
            "JOIN meter m ON m.id = r.meter_id")
        got = [(num, q, ts.astimezone(TZ)) for num, q, ts in await cur.fetchall()]
        cur = await conn.execute(
            "SELECT coalesce(sum(inserted), 0), coalesce(sum(conflicts), 0) FROM ingest_batch")
        inserted, conflicts = await cur.fetchone() or (0, 0)
    assert len(got) == len(set(got)), "a reading stored twice"
    assert set(got) == want, f"missing {sorted(want - set(got))[:5]}"
    assert (inserted, conflicts) == (len(want), 0)

