"""Devices answer real protocol requests over TCP and MQTT, and report injected faults."""

from __future__ import annotations

import asyncio
import json
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from pymodbus.client import AsyncModbusTcpClient

from protocols.dlt645 import (
    NEED_DATA,
    AbnormalResponse,
    Ack,
    FrameDecoder,
    ReadRequest,
    ReadResponse,
    RemoteCommand,
    RemoteControlRequest,
    decode_message,
    decode_status_word_3,
    detect_version,
    pack,
)
from protocols.modbus import FunctionCode, decode_registers, load_builtin_map
from protocols.mqtt import (
    BatchKind,
    CommandAck,
    ReadingsBatch,
    Receipt,
    ReceiptResult,
    RelayAction,
    RelayCommand,
    encode_downlink,
    parse_uplink,
    uplink_topic,
)
from simulators.runner import Fleet
from simulators.world import World

from .helpers import ManualClock, scenario


async def dlt645(port: int, request: Any, timeout: float = 1.0) -> Any:
    """Send one request to a gateway and decode the reply (None on timeout)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(pack(request, preamble=4))
        await writer.drain()
        dec = FrameDecoder()
        while True:
            try:
                data = await asyncio.wait_for(reader.read(1024), timeout)
            except TimeoutError:
                return None
            dec.feed(data)
            frame = dec.next_frame()
            if frame is not NEED_DATA:
                return decode_message(frame, detect_version(frame))[0]  # type: ignore[arg-type]
    finally:
        writer.close()


def at(w: World, day: int, hour: float) -> datetime:
    return datetime.fromtimestamp(w.t0 + day * 86400 + hour * 3600, UTC)


def meter_of(gw: Any, predicate: Any) -> tuple[str, int]:
    for addr, m in gw.bus.by_address.items():
        if predicate(m):
            return addr, m
    raise AssertionError("no such meter on the gateway")


NO_MQTT = {"mqtt_share": 0.0}


async def test_dlt645_reads_freezes_and_relay(tmp_path: Path) -> None:
    sc = scenario(devices=NO_MQTT)
    clock = ManualClock(datetime.now(UTC))
    fleet_path = tmp_path / "fleet.toml"
    async with Fleet(sc, clock=clock, fleet_path=fleet_path, keep_days=10) as f:
        w = f.world
        clock.set(at(w, 2, 13.3))
        f.tick()
        doc = tomllib.loads(fleet_path.read_text())
        assert doc["version"] == 1 and doc["clock"]["speed"] == sc.speed
        urls = {g["id"]: g.get("url") for g in doc["gateway"]}
        gw = f.dlt645[0]
        assert urls[gw.id] == gw.url
        t = clock.now().timestamp()
        addr, m = meter_of(
            gw,
            lambda m: (
                not w.silent(m, t)
                and w.m_point[m] in w.relays
                and w.relays[w.m_point[m]].behaviour == "normal"
                and not w.relays[w.m_point[m]].protected
            ),
        )
        reply = await dlt645(gw.port, ReadRequest(addr, 0x0001FF00))
        assert isinstance(reply, ReadResponse)
        values = [v.value for v in reply.values()[0]]
        assert values == pytest.approx(list(w.registers(m, t)[:5]), abs=1e-9)
        reply = await dlt645(gw.port, ReadRequest(addr, 0x05060101))
        frozen = w.freezes[2].values[m, :5]
        assert [v.value for v in reply.values()[0]] == pytest.approx(list(frozen), abs=1e-9)
        # trip: 9C, then status word 3 shows the relay open and the trip commanded
        deadline = (clock.now() + timedelta(days=1)).astimezone(w.zone)
        cmd = RemoteControlRequest(addr, RemoteCommand.TRIP, deadline.strftime("%Y-%m-%d %H:%M:%S"))
        assert isinstance(await dlt645(gw.port, cmd), Ack)
        reply = await dlt645(gw.port, ReadRequest(addr, 0x04000503))
        status = decode_status_word_3(int(reply.values()[0][0].value))
        assert status.relay_open and status.relay_trip_commanded
        # an open relay means no consumption from then on
        clock.set(at(w, 2, 20.0))
        f.tick()
        before = w.registers(m, at(w, 2, 13.5).timestamp())[0]
        assert w.registers(m, clock.now().timestamp())[0] == before
        # silent meters (offline or a missing slot) do not answer
        for g in f.dlt645:
            t = clock.now().timestamp()
            silent = [a for a, mm in g.bus.by_address.items() if w.silent(mm, t)]
            if silent:
                assert await dlt645(g.port, ReadRequest(silent[0], 0x00010000), 0.3) is None
                break
        # a protected (保电) meter refuses a trip
        for g in f.dlt645:
            prot = [
                (a, mm)
                for a, mm in g.bus.by_address.items()
                if w.m_point[mm] in w.relays
                and w.relays[w.m_point[mm]].protected
                and not w.silent(mm, clock.now().timestamp())
            ]
            if prot:
                reply = await dlt645(
                    g.port,
                    RemoteControlRequest(
                        prot[0][0], RemoteCommand.TRIP, deadline.strftime("%Y-%m-%d %H:%M:%S")
                    ),
                )
                assert isinstance(reply, AbnormalResponse)
                break


async def test_stopped_meter_reports_no_energy_over_dlt645() -> None:
    sc = scenario(
        injections={"stopped": 0.3, "missing_slots": 0.0, "offline": 0.0}, devices=NO_MQTT
    )
    clock = ManualClock(datetime.now(UTC))
    async with Fleet(sc, clock=clock, keep_days=10) as f:
        w = f.world
        stopped = {
            p: int(fl[0]["since_g"]) for p, fl in w.faults.items() if fl[0]["kind"] == "stopped"
        }
        for gw in f.dlt645:
            hits = [
                (a, m)
                for a, m in gw.bus.by_address.items()
                if w.m_point[m] in stopped and w.m_install[m] < 0 and w.m_remove[m] > 10**9
            ]
            if hits:
                break
        addr, m = hits[0]
        since = w.g_time(stopped[w.m_point[m]])
        got = []
        for dt in (3600.0, 7200.0):
            clock.set(datetime.fromtimestamp(since + dt, UTC))
            reply = await dlt645(gw.port, ReadRequest(addr, 0x00010000))
            got.append(reply.values()[0][0].value)
        assert got[0] == got[1]


async def test_modbus_meter_over_tcp() -> None:
    sc = scenario(faults=False, devices=NO_MQTT)
    clock = ManualClock(datetime.now(UTC))
    async with Fleet(sc, clock=clock) as f:
        w = f.world
        clock.set(at(w, 1, 9.0))
        mb = f.modbus[0]
        regmap = load_builtin_map(sc.devices.modbus_model)
        entry = regmap.entry("forward_active_total_kwh")
        assert entry is not None
        client = AsyncModbusTcpClient("127.0.0.1", port=mb.port, timeout=2)
        assert await client.connect()
        try:
            unit, m = next(iter(sorted(mb.units.items())))
            reader = (
                client.read_input_registers
                if entry.table.function is FunctionCode.READ_INPUT_REGISTERS
                else client.read_holding_registers
            )
            rr = await reader(entry.address, count=entry.count, device_id=unit)
            assert not rr.isError()
            values = decode_registers(regmap, rr.registers, start=entry.address, table=entry.table)
            got = {v.quantity: v.value for v in values}["forward_active_total_kwh"]
            expected = w.registers(m, clock.now().timestamp())[0]
            assert got == pytest.approx(expected, rel=1e-6)
        finally:
            client.close()


class Collector:
    """A tiny MQTT collector for the tests: collects uplinks, sends receipts and commands."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("mqtt://").split(":")
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="test-collector", protocol=mqtt.MQTTv5
        )
        self.messages: list[tuple[str, Any]] = []
        self.client.on_message = self._on_message
        self.client.connect(host, int(port))
        self.client.subscribe("meterhub/v1/c/+/up/#", qos=1)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        del client, userdata
        self.messages.append(parse_uplink(msg.topic, bytes(msg.payload)))

    def send(self, cid: str, message: Any) -> None:
        topic, payload = encode_downlink(cid, message)
        self.client.publish(topic, payload, qos=1)

    async def wait_for(self, predicate: Any, timeout: float = 10.0) -> list[Any]:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while loop.time() < end:
            hits = [m for _c, m in list(self.messages) if predicate(m)]
            if hits:
                return hits
            await asyncio.sleep(0.05)
        raise AssertionError("timed out waiting for an MQTT message")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def test_mqtt_concentrator_readings_receipts_and_relay(broker_url: str) -> None:
    sc = scenario(faults=False, mqtt={"url": broker_url})
    clock = ManualClock(datetime.now(UTC))
    col = Collector(broker_url)
    try:
        async with Fleet(sc, clock=clock) as f:
            w = f.world
            conc = f.concentrators[0]
            await asyncio.wait_for(conc.connected.wait(), 10)
            await asyncio.sleep(0.3)
            g = 1 * w.S + 40
            clock.set(datetime.fromtimestamp(w.g_time(g), UTC))
            conc.read_slot(g)
            batches = await col.wait_for(lambda m: isinstance(m, ReadingsBatch))
            batch = batches[0]
            fwd = {
                r.meter: r.value for r in batch.readings if r.quantity == "forward_active_total_kwh"
            }
            assert len(fwd) == len(conc.meters)  # a clean scenario: every meter reported
            for num, value in fwd.items():
                m = w.m_number.index(num)
                assert value == pytest.approx(w.registers(m, w.g_time(g))[0], abs=1e-9)
            assert conc.buffer
            col.send(
                conc.id,
                Receipt(
                    kind=BatchKind.READINGS,
                    batch=batch.batch,
                    seq=batch.seq,
                    result=ReceiptResult.COMMITTED,
                ),
            )
            for _ in range(100):
                if not any(k[1] == batch.batch for k in conc.buffer):
                    break
                await asyncio.sleep(0.05)
            assert not any(k[1] == batch.batch for k in conc.buffer)
            # a relay command comes back as an ack with the relay read back
            num = next(w.m_number[int(m)] for m in conc.meters if w.m_point[int(m)] in w.relays)
            now = clock.now()
            col.send(
                conc.id,
                RelayCommand(
                    command="cmd-1",
                    meter=num,
                    action=RelayAction.TRIP,
                    issued=now,
                    deadline=now + timedelta(hours=1),
                ),
            )
            acks = await col.wait_for(lambda m: isinstance(m, CommandAck) and m.command == "cmd-1")
            assert acks[0].result == "done" and acks[0].relay == "open"
            assert decode_status_word_3(acks[0].status_word_3).relay_open
    finally:
        col.close()


async def test_concentrator_buffers_while_broker_is_down(tmp_path: Path) -> None:
    from .conftest import MOSQUITTO, free_port

    port = free_port()
    conf = tmp_path / "m.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nuser root\n")

    async def start_broker() -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            MOSQUITTO,
            "-c",
            str(conf),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        for _ in range(100):
            try:
                _r, wr = await asyncio.open_connection("127.0.0.1", port)
                wr.close()
                return proc
            except OSError:
                await asyncio.sleep(0.05)
        raise AssertionError("broker did not start")

    url = f"mqtt://127.0.0.1:{port}"
    proc = await start_broker()
    sc = scenario(faults=False, mqtt={"url": url})
    clock = ManualClock(datetime.now(UTC))
    async with Fleet(sc, clock=clock) as f:
        w = f.world
        conc = f.concentrators[0]
        await asyncio.wait_for(conc.connected.wait(), 10)
        proc.terminate()
        await proc.wait()
        for _ in range(100):
            if not conc.connected.is_set():
                break
            await asyncio.sleep(0.05)
        g = w.S + 10
        clock.set(datetime.fromtimestamp(w.g_time(g), UTC))
        conc.read_slot(g)  # read while the broker is down: kept in the buffer
        kept = [k for k in conc.buffer if k[0].endswith("/readings")]
        assert kept
        proc = await start_broker()
        col = Collector(url)
        try:
            batches = await col.wait_for(lambda m: isinstance(m, ReadingsBatch), timeout=30)
            assert {b.batch for b in batches} >= {k[1] for k in kept}
        finally:
            col.close()
            proc.terminate()
            await proc.wait()
    assert uplink_topic(conc.id, "readings").endswith("/up/readings")
    json.dumps([k[1] for k in kept])


async def test_dlt645_1997_meters() -> None:
    from protocols.dlt645 import Version, decode_frame

    sc = scenario(faults=False, devices={**NO_MQTT, "dlt645_1997_share": 0.5})
    clock = ManualClock(datetime.now(UTC))
    async with Fleet(sc, clock=clock) as f:
        w = f.world
        clock.set(at(w, 1, 11.0))
        t = clock.now().timestamp()
        found = False
        for gw in f.dlt645:
            old = [
                (a, m)
                for a, m in gw.bus.by_address.items()
                if w.protocol[w.m_point[m]] == "dlt645-1997"
            ]
            if not old:
                continue
            addr, m = old[0]
            reply = await dlt645(gw.port, ReadRequest(addr, 0x901F, version=Version.V1997))
            assert reply is not None and reply.version is Version.V1997
            values = [v.value for v in reply.values()[0]]
            assert values == pytest.approx(list(w.registers(m, t)[:5]), abs=1e-9)
            # a 2007-style read gets the 1997 DI error
            reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
            writer.write(pack(ReadRequest(addr, 0x00010000), preamble=4))
            await writer.drain()
            data = await asyncio.wait_for(reader.read(1024), 2)
            writer.close()
            frame = decode_frame(data)
            assert detect_version(frame) is Version.V1997 and frame.abnormal
            found = True
            break
        assert found
        doc = f.fleet_document()
        assert {m["protocol"] for m in doc["meter"]} >= {"dlt645-1997", "dlt645-2007", "modbus"}
