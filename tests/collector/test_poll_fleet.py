"""The poller against simulated DL/T 645 and Modbus TCP gateways, on the real database."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from collector.archive import Archive
from collector.dlt645 import LinkParams
from collector.poller import CollectorConfig, Poller
from collector.schedule import ScheduleConfig
from simulators.runner import Fleet
from simulators.scenario import parse_scenario
from storage.archive import load_archive

pytestmark = pytest.mark.db

TZ = ZoneInfo("Asia/Shanghai")


class FixedClock:
    """A clock that stands still until the test moves it."""

    def __init__(self, t: datetime) -> None:
        self.t = t

    def now(self) -> datetime:
        return self.t

    async def sleep_until(self, instant: datetime) -> None:
        while self.t < instant:
            await asyncio.sleep(0.01)


@pytest.fixture
def fresh_db(empty_db: str) -> Iterator[str]:
    """A migrated database of its own for one test."""
    from storage import migrate

    with psycopg.connect(empty_db, autocommit=True) as conn:
        migrate.upgrade(conn)
    yield empty_db


def _scenario(**devices: Any) -> Any:
    dev = {"dlt645_share": 0.7, "modbus_share": 0.3, "mqtt_share": 0.0,
           "meters_per_gateway": 4, "modbus_meters_per_gateway": 4, "latency_ms": 0.0,
           "baud": 0}
    dev.update(devices)
    return parse_scenario({"version": 1, "seed": 3, "areas": 2, "meters_per_area": 6,
                           "days": 4, "speed": 1.0, "devices": dev})


async def _load(db_url: str, fleet: Fleet) -> None:
    archive = Archive.model_validate(fleet.fleet_document())
    async with await psycopg.AsyncConnection.connect(db_url) as conn, conn.transaction():
        await load_archive(conn, archive, actor="test", now=fleet.clock.now())


async def _rows(db_url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        cur = await conn.execute(sql, args)
        return await cur.fetchall()


def _config(**kw: Any) -> CollectorConfig:
    base: dict[str, Any] = {"listen_port": 0, "clock_checks": False,
                            "schedule": ScheduleConfig(reread_days=2)}
    base.update(kw)
    return CollectorConfig(**base)


async def test_a_cycle_stores_slot_registers_and_freezes_once(fresh_db: str) -> None:
    clock = FixedClock(datetime(2026, 1, 3, 0, 7, tzinfo=TZ))
    slot = datetime(2026, 1, 3, 0, 0, tzinfo=TZ)
    async with Fleet(_scenario(), clock=clock) as fleet:
        await _load(fresh_db, fleet)
        w = fleet.world
        config = _config(schedule=ScheduleConfig(reread_days=3))
        async with Poller(db_url=fresh_db, clock=clock, tz=TZ, config=config) as poller:
            await poller.run_cycle()
            first = poller.stats.inserted
            reads, abnormal = poller.stats.reads_ok, poller.stats.abnormal
            assert abnormal > 0  # no meter holds a freeze from before the simulation began
            await poller.run_cycle()  # everything stored: nothing is read again, and
            assert poller.stats.inserted == first  # missing freezes wait for their back-off
            assert (poller.stats.reads_ok, poller.stats.abnormal) == (reads, abnormal)
        t = clock.now().timestamp()
        stored = dict(await _rows(
            fresh_db, "SELECT m.number, r.value FROM register_reading r JOIN meter m "
            "ON m.id = r.meter_id WHERE r.quantity_id = 1 AND r.ts = %s", slot))
        expected = {w.m_number[m]: float(w.registers(m, t)[0]) for m in range(w.M)
                    if w.protocol[w.m_point[m]] in ("dlt645-2007", "modbus")
                    and not w.silent(m, t)}
        assert expected and stored.keys() == expected.keys()
        for number, value in expected.items():
            assert stored[number] == pytest.approx(value, abs=0.006)
        freezes = await _rows(
            fresh_db, "SELECT m.number, r.ts, r.value FROM register_reading r JOIN meter m "
            "ON m.id = r.meter_id WHERE r.quantity_id = 7 ORDER BY 1, 2")
        dlt = [m for m in range(w.M) if w.protocol[w.m_point[m]] == "dlt645-2007"]
        want = set()
        for m in dlt:
            for n in (1, 2, 3):
                fz = w.freeze_before(m, t, n)
                if fz is not None:
                    day = datetime(2026, 1, 4 - n, tzinfo=TZ)
                    want.add((w.m_number[m], day, round(float(fz[0][0]), 2)))
        got = {(num, ts.astimezone(TZ), round(v, 2)) for num, ts, v in freezes}
        assert want and got == want
        dup = await _rows(fresh_db, "SELECT count(*) FROM reading_conflict")
        assert dup == [(0,)]


async def test_listen_mode_dtus_register_and_are_polled(fresh_db: str) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    clock = FixedClock(datetime(2026, 1, 2, 10, 1, tzinfo=TZ))
    sc = _scenario(gateway_listen_share=1.0, modbus_share=0.0, dlt645_share=1.0,
                   dtu_connect_to=f"tcp://127.0.0.1:{port}", heartbeat_s=0.05)
    async with Fleet(sc, clock=clock) as fleet:
        await _load(fresh_db, fleet)
        config = _config(listen_host="127.0.0.1", listen_port=port)
        async with Poller(db_url=fresh_db, clock=clock, tz=TZ, config=config) as poller:
            for _ in range(200):  # the DTUs connect out with a back-off
                if all(link.connected for link in poller.links.values()):
                    break
                await asyncio.sleep(0.05)
            assert poller.links and all(link.connected for link in poller.links.values())
            await asyncio.sleep(0.2)  # heartbeats between requests are stripped
            await poller.run_cycle()
            assert sum(link.stats.heartbeats for link in poller.links.values()) > 0
            assert sum(link.stats.garbage_bytes for link in poller.links.values()) == 0
        rows = await _rows(fresh_db, "SELECT count(*) FROM register_reading WHERE "
                           "quantity_id = 1 AND ts = %s",
                           datetime(2026, 1, 2, 10, 0, tzinfo=TZ))
        w = fleet.world
        t = clock.now().timestamp()
        assert rows[0][0] == sum(1 for m in range(w.M) if not w.silent(m, t))


async def test_relay_state_read_back(fresh_db: str) -> None:
    clock = FixedClock(datetime(2026, 1, 2, 10, 1, tzinfo=TZ))
    sc = _scenario(modbus_share=0.0, dlt645_share=1.0)
    async with Fleet(sc, clock=clock) as fleet:
        await _load(fresh_db, fleet)
        w = fleet.world
        m = next(m for m in range(w.M) if not w.is_supply[w.m_point[m]])
        number = w.m_number[m]
        async with Poller(db_url=fresh_db, clock=clock, tz=TZ, config=_config()) as poller:
            status = await poller.read_relay_state(number)
            assert status.word == w.status_word_3(m, clock.now().timestamp())
            assert status.relay_open is False
            w.relay_command(m, clock.now().timestamp(), "trip")
            clock.t += timedelta(minutes=1)
            status = await poller.read_relay_state(number)
            assert status.relay_trip_commanded is True
        rows = await _rows(fresh_db, "SELECT count(*) FROM register_reading WHERE "
                           "quantity_id = 60")
        assert rows == [(2,)]


async def test_corrupt_replies_are_quarantined_and_reads_retried(fresh_db: str) -> None:
    clock = FixedClock(datetime(2026, 1, 2, 10, 1, tzinfo=TZ))
    sc = _scenario(modbus_share=0.0, dlt645_share=1.0, corrupt_share=0.3)
    async with Fleet(sc, clock=clock) as fleet:
        await _load(fresh_db, fleet)
        config = _config(link=LinkParams(timeout=0.5, retries=3))
        async with Poller(db_url=fresh_db, clock=clock, tz=TZ, config=config) as poller:
            await poller.run_cycle()
            assert poller.stats.quarantined > 0
        rows = await _rows(fresh_db, "SELECT kind, source, reason, raw FROM quarantine")
        assert rows and {r[0] for r in rows} == {"dlt645-frame"}
        assert all(r[1].startswith("dlt645:G") for r in rows)
        assert {r[2] for r in rows} <= {"bad_checksum", "bad_end", "bad_second_start",
                                        "garbage"}
        assert all(len(r[3]) > 0 for r in rows)
        w = fleet.world
        t = clock.now().timestamp()
        stored = await _rows(fresh_db, "SELECT count(*) FROM register_reading WHERE "
                             "quantity_id = 1 AND ts = %s",
                             datetime(2026, 1, 2, 10, 0, tzinfo=TZ))
        live = sum(1 for m in range(w.M) if not w.silent(m, t))
        # retries recover nearly every read (0.3^4 of them may still fail)
        assert live - 2 <= stored[0][0] <= live


async def test_clock_checks_sync_by_broadcast_or_addressed_write(fresh_db: str) -> None:
    clock = FixedClock(datetime(2026, 1, 2, 10, 1, tzinfo=TZ))
    sc = _scenario(modbus_share=0.0, dlt645_share=1.0, meters_per_gateway=32)
    async with Fleet(sc, clock=clock) as fleet:
        await _load(fresh_db, fleet)
        w = fleet.world
        t = clock.now().timestamp()
        local = clock.now().replace(tzinfo=None)
        a, b, c = [m for m in range(w.M) if not w.silent(m, t)][:3]
        for m, off in ((a, 120), (b, 1800), (c, 30)):
            assert w.set_clock(w.m_point[m], t, local + timedelta(seconds=off), max_step_s=None)
        async with Poller(db_url=fresh_db, clock=clock, tz=TZ,
                          config=_config(clock_checks=True)) as poller:
            await poller.run_cycle()
            assert poller.stats.clock_syncs == 2
        for m in (a, b, c):
            assert abs(w.clock_offset(w.m_point[m], t)) <= 60
        events = await _rows(fresh_db, "SELECT m.number, e.detail FROM meter_event e JOIN "
                             "meter m ON m.id = e.meter_id WHERE e.code = 'clock_sync'")
        by_meter: dict[str, Any] = dict(events)
        assert by_meter[w.m_number[a]]["method"] == "broadcast"
        assert by_meter[w.m_number[b]]["method"] == "addressed"
        assert by_meter[w.m_number[b]]["offset_s"] == pytest.approx(1800, abs=1)
        assert all(d["confirmed"] for d in by_meter.values())


async def test_failed_slot_reads_are_retried_within_the_slot(fresh_db: str) -> None:
    clock = FixedClock(datetime(2026, 1, 2, 10, 1, tzinfo=TZ))
    slot = datetime(2026, 1, 2, 10, 0, tzinfo=TZ)
    sc = _scenario(modbus_share=0.0, dlt645_share=1.0, drop_share=0.5)
    async with Fleet(sc, clock=clock) as fleet:
        await _load(fresh_db, fleet)
        config = _config(link=LinkParams(timeout=0.1, retries=0))
        query = "SELECT count(*) FROM register_reading WHERE quantity_id = 1 AND ts = %s"
        async with Poller(db_url=fresh_db, clock=clock, tz=TZ, config=config) as poller:
            await poller.run_cycle()
            first = (await _rows(fresh_db, query, slot))[0][0]
            assert poller.stats.no_answer > 0
            wake = poller.next_wake()
            # half-way through what is left of the grace window (10:07:30), not 10:15
            assert wake == datetime(2026, 1, 2, 10, 4, 15, tzinfo=TZ)
            clock.t = wake
            await poller.run_cycle()
            second = (await _rows(fresh_db, query, slot))[0][0]
            assert second > first
            assert poller.stats.duplicates == 0  # the retry read only what was missing
            live = next(m for m in poller.meters.values())
            values = await _retry_read(poller, live.number)
            assert "forward_active_total_kwh" in values


async def _retry_read(poller: Poller, number: str) -> dict[str, Any]:
    from collector.errors import NoAnswer

    for _ in range(20):  # the bus drops half the replies
        with contextlib.suppress(NoAnswer):
            return await poller.read_now(number, 0x00010000)
    raise AssertionError("no answer in 20 attempts")


def test_collector_config_from_a_settings_table() -> None:
    config = CollectorConfig.from_mapping({
        "timeout": 2.5, "retries": 2, "listen_port": 9700, "reread_days": 5,
        "freeze_read_from": "00:10", "tls_cert": "/etc/meterhub/dtu.pem",
        "dtu_models": {"acme": {"registration_prefix": "LOGIN ", "heartbeat_hex": "FEFE00"}},
    })
    assert (config.link.timeout, config.link.retries, config.link.preamble) == (2.5, 2, 4)
    assert config.listen_port == 9700 and config.tls_cert == "/etc/meterhub/dtu.pem"
    assert config.schedule.reread_days == 5
    assert config.schedule.freeze_read_from.minute == 10
    assert config.dtu_models["acme"].heartbeat == bytes.fromhex("FEFE00")
    assert "generic-dtu" in config.dtu_models
    with pytest.raises(ValueError, match="unknown collector setting"):
        CollectorConfig.from_mapping({"timout": 1})


async def test_a_lost_database_connection_keeps_the_readings_for_the_next_commit(
    fresh_db: str,
) -> None:
    clock = FixedClock(datetime(2026, 1, 2, 10, 1, tzinfo=TZ))
    sc = _scenario(modbus_share=0.0, dlt645_share=1.0)
    async with Fleet(sc, clock=clock) as fleet:
        await _load(fresh_db, fleet)
        w = fleet.world
        number = next(w.m_number[m] for m in range(w.M)
                      if not w.silent(m, clock.now().timestamp()))
        async with Poller(db_url=fresh_db, clock=clock, tz=TZ, config=_config()) as poller:
            conn = await poller._db()
            async with await psycopg.AsyncConnection.connect(fresh_db, autocommit=True) as adm:
                await adm.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
            with pytest.raises(psycopg.OperationalError):
                await poller.read_relay_state(number)  # read, then the commit fails
            clock.t += timedelta(minutes=1)
            await poller.read_relay_state(number)  # reconnects; both readings committed
        rows = await _rows(fresh_db, "SELECT count(*) FROM register_reading WHERE "
                           "quantity_id = 60")
        assert rows == [(2,)]


async def test_a_1997_meter_is_polled_with_its_own_identifiers(fresh_db: str) -> None:
    from protocols.dlt645 import (
        FrameDecoder,
        ReadRequest,
        ReadResponse,
        Version,
        decode_message,
        pack,
    )

    seen: list[int] = []

    async def meter97(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = FrameDecoder()
        while data := await reader.read(4096):
            decoder.feed(data)
            for frame in decoder:
                msg, _ = decode_message(frame, Version.V1997)
                assert isinstance(msg, ReadRequest)
                seen.append(msg.di)
                writer.write(pack(ReadResponse.from_values(msg.address, msg.di, [321.5],
                                                           version=Version.V1997)))
        writer.close()

    server = await asyncio.start_server(meter97, "127.0.0.1", 0)
    url = f"tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    async with await psycopg.AsyncConnection.connect(fresh_db) as conn:
        await conn.execute("INSERT INTO gateway (id, url) VALUES ('G97', %s)", (url,))
        await conn.execute("INSERT INTO meter (number, protocol, gateway_id, interval_min) "
                           "VALUES ('000000001997', 'dlt645-1997', 'G97', 30)")
        await conn.commit()
    clock = FixedClock(datetime(2026, 1, 2, 10, 31, tzinfo=TZ))
    async with Poller(db_url=fresh_db, clock=clock, tz=TZ, config=_config()) as poller:
        await poller.run_cycle()
    server.close()
    assert seen == [0x9010]  # the energy register only: 1997 meters keep no daily freezes
    rows = await _rows(fresh_db, "SELECT ts, value FROM register_reading")
    assert rows == [(datetime(2026, 1, 2, 10, 30, tzinfo=TZ), 321.5)]
