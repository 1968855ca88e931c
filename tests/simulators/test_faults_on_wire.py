"""Injected faults are visible in what the devices report, and the DTU registration works."""

from __future__ import annotations

import asyncio
import contextlib
import csv
from datetime import UTC, datetime
from pathlib import Path

import pytest

from protocols.dlt645 import (
    Ack,
    FrameError,
    ReadRequest,
    ReadResponse,
    TimeSyncRequest,
    WriteRequest,
    decode_frame,
    encode_values,
    pack,
)
from protocols.mqtt import ReadingsBatch
from simulators.runner import Fleet
from simulators.world import World

from .helpers import ManualClock, scenario
from .test_devices import NO_MQTT, Collector, dlt645


def _faulty(w: World, kind: str) -> list[int]:
    return [p for p, fl in w.faults.items() if any(f["kind"] == kind for f in fl)]


def _since(w: World, p: int, kind: str) -> int:
    return next(int(f["since_g"]) for f in w.faults[p] if f["kind"] == kind)


async def test_clock_and_register_faults_over_dlt645() -> None:
    sc = scenario(
        devices=NO_MQTT,
        injections={
            "missing_slots": 0.0,
            "offline": 0.0,
            "clock_drift": 0.4,
            "clock_reset": 0.2,
            "tariff_mismatch": 0.3,
            "exchange": 0.0,
        },
    )
    clock = ManualClock(datetime.now(UTC))
    async with Fleet(sc, clock=clock, keep_days=10) as f:
        w = f.world
        end = w.t0 + sc.days * 86400 - 600.0
        clock.set(datetime.fromtimestamp(end, UTC))
        f.tick()
        where = {m: gw for gw in f.dlt645 for m in gw.bus.by_address.values()}
        seen = {"drift": 0, "reset": 0, "tariff": 0}
        for p in _faulty(w, "clock_drift") + _faulty(w, "clock_reset"):
            if p not in where:
                continue
            gw = where[p]
            reply = await dlt645(gw.port, ReadRequest(w.m_number[p], 0x04000102))
            assert isinstance(reply, ReadResponse)
            meter_time = reply.values()[0][0].value
            assert meter_time == w.meter_time(p, end).strftime("%H:%M:%S")
            if p in _faulty(w, "clock_reset"):
                reply = await dlt645(gw.port, ReadRequest(w.m_number[p], 0x05060001))
                label = reply.values()[0][0].value
                if _since(w, p, "clock_reset") < (sc.days - 1) * w.S:
                    assert label.startswith("2000-01-")
                    seen["reset"] += 1
            elif meter_time != datetime.fromtimestamp(end, UTC).astimezone(w.zone).strftime(
                "%H:%M:%S"
            ):
                seen["drift"] += 1
        for p in _faulty(w, "total_vs_tariffs"):
            if p not in where or _since(w, p, "total_vs_tariffs") > (sc.days - 1) * w.S:
                continue
            reply = await dlt645(where[p].port, ReadRequest(w.m_number[p], 0x0001FF00))
            total, *tariffs = (v.value for v in reply.values()[0])
            assert sum(tariffs) < total - 0.05
            seen["tariff"] += 1
        assert all(seen.values()), seen


async def test_dtu_registers_and_answers_on_a_collector_listener() -> None:
    got: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

    async def on_dtu(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await got.put((reader, writer))

    server = await asyncio.start_server(on_dtu, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sc = scenario(
        faults=False,
        devices={
            **NO_MQTT,
            "gateway_listen_share": 1.0,
            "modbus_share": 0.0,
            "manual_share": 0.0,
            "dtu_connect_to": f"tcp://127.0.0.1:{port}",
            "heartbeat_s": 0.2,
        },
    )
    clock = ManualClock(datetime.now(UTC))
    try:
        async with Fleet(sc, clock=clock) as f:
            w = f.world
            clock.set(datetime.fromtimestamp(w.t0 + 30000, UTC))
            assert all(gw.mode == "listen" for gw in f.dlt645)
            reader, writer = await asyncio.wait_for(got.get(), 10)
            line = await asyncio.wait_for(reader.readline(), 5)
            assert line.startswith(b"REG:G") and line.endswith(b"\r\n")
            gw = next(g for g in f.dlt645 if g.id == line[4:-2].decode())
            assert await asyncio.wait_for(reader.readline(), 5) == b"HB\r\n"
            addr, m = next(iter(gw.bus.by_address.items()))
            from protocols.dlt645 import NEED_DATA, FrameDecoder, decode_message, pack

            writer.write(pack(ReadRequest(addr, 0x00010000), preamble=4))
            await writer.drain()
            dec = FrameDecoder()
            frame = NEED_DATA
            while frame is NEED_DATA:
                data = await asyncio.wait_for(reader.read(1024), 5)
                dec.feed(data.replace(b"HB\r\n", b""))
                frame = dec.next_frame()
            reply, _ = decode_message(frame)  # type: ignore[arg-type]
            assert reply.values()[0][0].value == pytest.approx(
                w.registers(m, clock.now().timestamp())[0]
            )
            fleet_doc = f.fleet_document()
            assert all("url" not in g and g["mode"] == "listen" for g in fleet_doc["gateway"])
            writer.close()
    finally:
        while not got.empty():
            _r, w2 = got.get_nowait()
            w2.close()
        server.close()
        await server.wait_closed()


async def test_concentrator_reports_freezes_and_outages(broker_url: str) -> None:
    sc = scenario(
        mqtt={"url": broker_url},
        devices={
            "mqtt_share": 1.0,
            "dlt645_share": 0.0,
            "modbus_share": 0.0,
            "manual_share": 0.0,
            "meters_per_concentrator": 100,
        },
        injections={
            "outage": 1.0,
            "concentrator_offline": 0.0,
            "offline": 0.0,
            "missing_slots": 0.0,
        },
    )
    clock = ManualClock(datetime.now(UTC))
    col = Collector(broker_url)
    try:
        async with Fleet(sc, clock=clock, keep_days=10) as f:
            w = f.world
            conc = f.concentrators[0]
            await asyncio.wait_for(conc.connected.wait(), 10)
            await asyncio.sleep(0.3)
            g = 2 * w.S
            clock.set(datetime.fromtimestamp(w.g_time(g) + 300, UTC))
            conc.read_slot(g)
            batches = await col.wait_for(
                lambda m: (
                    isinstance(m, ReadingsBatch)
                    and any(
                        r.quantity == "daily_frozen_forward_active_total_kwh" for r in m.readings
                    )
                )
            )
            frozen = {
                (r.meter, r.ts): r.value
                for b in batches
                for r in b.readings
                if r.quantity == "daily_frozen_forward_active_total_kwh"
            }
            for b in (1, 2):  # today's freeze and yesterday's, re-read
                fz = w.freezes[b]
                for m in conc.meters[:10]:
                    m = int(m)
                    ts = datetime.fromtimestamp(float(fz.label[m]), UTC).replace(tzinfo=w.zone)
                    assert frozen[(w.m_number[m], ts)] == pytest.approx(fz.values[m, 0])
            # an outage: power-loss events from the meters of the area
            a = int(w.true_area[w.m_point[int(conc.meters[0])]])
            g0, g1 = w.outages[a]
            for gg in range(g0, g1 + 1):
                clock.set(datetime.fromtimestamp(w.g_time(gg), UTC))
                conc.read_slot(gg)
            from protocols.mqtt import EventsBatch

            events = await col.wait_for(lambda m: isinstance(m, EventsBatch))
            codes = {e.code for b in events for e in b.events}
            assert "power_loss" in codes
    finally:
        col.close()


def test_real_load_shapes(shared_data: object) -> None:
    from pathlib import Path

    base = Path(str(shared_data))
    for load in (
        {"source": "ieee_eulv", "path": str(base / "ieee_eulv" / "Daily_1min_100profiles")},
        {
            "source": "sgsc",
            "path": str(base / "sgsc_50"),
            "pv_source": "ausgrid",
            "pv_path": str(base / "ausgrid_pv_customer12" / "data_2011-2012.csv"),
            "pv_share": 0.3,
        },
    ):
        w = World(scenario(faults=False, load=load, days=2), keep_days=5)
        w.ensure_day(2)
        for d in range(2):
            T = w.area_days[d]
            per_customer = T["customer_import_kwh"].sum() / w.C
            assert 1.0 < per_customer < 40.0
            left = T["supply_import_kwh"] + T["customer_export_kwh"]
            right = (
                T["customer_import_kwh"]
                + T["supply_backfeed_kwh"]
                + T["technical_loss_kwh"]
                + T["theft_kwh"]
            )
            assert abs(left - right).max() < 1e-6
        if load.get("pv_source") == "ausgrid":
            assert sum(w.area_days[d]["customer_export_kwh"].sum() for d in range(2)) > 0


async def test_reading_book_has_the_manual_reads(tmp_path: Path) -> None:
    sc = scenario(devices=NO_MQTT)
    clock = ManualClock(datetime.now(UTC))
    async with Fleet(sc, clock=clock, fleet_path=tmp_path / "fleet.toml", keep_days=10) as f:
        w = f.world
        clock.set(datetime.fromtimestamp(w.t0 + 3 * 86400, UTC))
        f.tick()
        assert f.manual_path is not None
        rows = list(csv.DictReader(f.manual_path.read_text().splitlines()))
        reads = [r for r in w.manual_reads.values() if r["t"] <= clock.now().timestamp()]
        delivered = [r for r in reads if r["value"] is not None]
        assert len(rows) == len(delivered) > 0
        by_key = {(r["meter"], r["ts"]): r for r in delivered}
        for row in rows:
            read = by_key[(row["meter"], row["ts"])]
            assert float(row["value"]) == pytest.approx(read["value"])
            assert row["read_kind"] == "manual" and row["quantity"] == "forward_active_total_kwh"
        skipped = [r for r in reads if r["kind"] == "skipped"]
        assert len(reads) == len(delivered) + len(skipped)
        assert {r["kind"] for r in delivered} >= {"actual"}


async def test_time_set_over_dlt645() -> None:
    sc = scenario(
        devices=NO_MQTT,
        injections={"missing_slots": 0.0, "offline": 0.0, "clock_drift": 0.5, "clock_reset": 0.0},
    )
    clock = ManualClock(datetime.now(UTC))
    async with Fleet(sc, clock=clock, keep_days=10) as f:
        w = f.world
        now = w.t0 + 3.5 * 86400
        clock.set(datetime.fromtimestamp(now, UTC))
        where = {m: gw for gw in f.dlt645 for m in gw.bus.by_address.values()}
        drifted = [
            p for p in _faulty(w, "clock_drift") if p in where and abs(w.clock_offset(p, now)) > 1.0
        ]
        assert drifted
        p = drifted[0]
        gw, addr = where[p], w.m_number[p]
        true_local = datetime.fromtimestamp(now, UTC).astimezone(w.zone).replace(tzinfo=None)
        small = abs(w.clock_offset(p, now)) <= 300
        await send_only(gw.port, TimeSyncRequest(true_local.strftime("%Y-%m-%d %H:%M:%S")))
        assert (abs(w.clock_offset(p, now)) < 1.0) == small
        # an addressed write of the time always corrects it
        data = encode_values(0x04000102, [true_local.strftime("%H:%M:%S")])
        reply = await dlt645(gw.port, WriteRequest(addr, 0x04000102, data))
        assert isinstance(reply, Ack)
        assert abs(w.clock_offset(p, now)) < 1.0
        assert any(c["kind"] == "time_set" for c in w.commands)


async def send_only(port: int, request: object) -> None:
    """Send a request that gets no reply (a broadcast) and let the gateway process it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(pack(request, preamble=4))  # type: ignore[arg-type]
    await writer.drain()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(reader.read(100), 0.3)
    writer.close()


async def test_dropped_and_corrupted_replies() -> None:
    for share, check in (("drop_share", "dropped"), ("corrupt_share", "corrupted")):
        sc = scenario(faults=False, devices={**NO_MQTT, share: 1.0})
        clock = ManualClock(datetime.now(UTC))
        async with Fleet(sc, clock=clock) as f:
            w = f.world
            clock.set(datetime.fromtimestamp(w.t0 + 86400 + 3600, UTC))
            gw = f.dlt645[0]
            addr = next(iter(gw.bus.by_address))
            reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
            writer.write(pack(ReadRequest(addr, 0x00010000), preamble=4))
            await writer.drain()
            try:
                data = await asyncio.wait_for(reader.read(1024), 0.5)
            except TimeoutError:
                data = b""
            writer.close()
            if check == "dropped":
                assert data == b""
            else:
                with pytest.raises(FrameError):
                    decode_frame(data)
            assert gw.bus.requests == 1
