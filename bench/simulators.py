"""Benchmark: how many meters one simulator process holds, and how fast its devices answer.

Run: ``.venv/bin/python bench/simulators.py`` (about a minute). Writes
``bench/results/simulators.json``.

What is measured, in one process and one run:

* ``world``: a scenario of 400 areas × 49 customers + 400 supply meters (20,000 points, plus
  exchanged meters) with a mix of injections: build time, seconds of CPU per simulated day of
  physics (vectorised over meters × slots), CPU seconds of one relay trip (it recomputes the
  physics of its area for the cached days), and resident memory per meter (RSS growth from
  before the world to after five computed days, divided by meters, which includes the
  allocator's high-water mark of the per-day temporaries) and the bytes the world's arrays hold
  (three cached days and the daily freezes).
* ``fleet``: the same world served on real TCP: every DL/T 645 gateway and Modbus TCP gateway
  started on a free port; start-up time.
* ``dlt645``: DL/T 645-2007 ``11`` reads of ``0001FF00`` (energy block) answered per second by
  the gateways (no serial delay, no latency), with ``CONNECTIONS`` client connections, each on
  its own gateway, one request at a time per connection (as a real bus allows).
* ``echo`` (the baseline): the same clients against a raw asyncio server that answers each
  request with the same reply bytes without decoding anything; ``ratio`` is
  ``dlt645 / echo``.
* ``modbus``: FC04 reads of the energy registers answered per second through pymodbus 3.16
  servers with ``CONNECTIONS`` pymodbus clients; its baseline is the same echo figure.
* ``mqtt`` (when ``/usr/sbin/mosquitto`` exists; a private broker on a free port): 20,000
  meters behind 100 concentrators; one interval's scheduled read of every concentrator (build,
  validate and encode the readings batches with ``protocols.mqtt``, publish QoS 1), as readings
  per second; the baseline hands the very same payload bytes to one plain paho client
  (``publish()`` calls, as for the concentrators: hand-off to the client, not delivery).
  ``max_speed_keeping_up`` is the simulated speed at which one process still reads every
  interval of 20,000 MQTT meters on time.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pymodbus.client import AsyncModbusTcpClient  # noqa: E402 - after the path set-up

from protocols.dlt645 import (  # noqa: E402
    NEED_DATA,
    FrameDecoder,
    ReadRequest,
    ReadResponse,
    pack,
)
from simulators.runner import Fleet  # noqa: E402
from simulators.scenario import parse_scenario  # noqa: E402
from simulators.world import World  # noqa: E402

CONNECTIONS = 8
SECONDS = 5.0
RESULTS = REPO / "bench" / "results" / "simulators.json"


def rss() -> int:
    """Resident set size of this process in bytes."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) * 1024
    return 0


def scenario_data() -> dict[str, object]:
    return {
        "version": 1,
        "seed": 11,
        "areas": 400,
        "meters_per_area": 49,
        "days": 30,
        "speed": 1.0,
        "devices": {
            "dlt645_share": 0.8,
            "modbus_share": 0.2,
            "mqtt_share": 0.0,
            "latency_ms": 0.0,
            "baud": 0,
            "meters_per_gateway": 32,
            "modbus_meters_per_gateway": 16,
        },
        "injections": {
            "theft": 0.02,
            "fast": 0.01,
            "slow": 0.01,
            "stopped": 0.005,
            "clock_drift": 0.02,
            "missing_slots": 0.005,
            "exchange": 0.005,
            "tariff_mismatch": 0.005,
            "spike": 0.005,
        },
    }


def bench_world() -> dict[str, float]:
    sc = parse_scenario(scenario_data())
    before = rss()
    t = time.process_time()
    w = World(sc, keep_days=3)
    build = time.process_time() - t
    t = time.process_time()
    w.ensure_day(0)  # computes days 0 and 1 (the look-ahead)
    first = time.process_time() - t
    t = time.process_time()
    w.ensure_day(3)  # days 2, 3, 4
    per_day = (time.process_time() - t) / 3
    # a relay trip recomputes only its area
    p = next(iter(w.relays))
    t = time.process_time()
    w.relay_command(p, w.t0 + 3 * 86400 + 3600.0, "trip")
    trip = time.process_time() - t
    grown = rss() - before
    held = w.nbytes()
    return {
        "meters": w.M,
        "points": w.P,
        "areas": w.A,
        "build_cpu_s": round(build, 3),
        "first_two_days_cpu_s": round(first, 3),
        "cpu_seconds_per_simulated_day": round(per_day, 3),
        "cpu_seconds_per_relay_command": round(trip, 4),
        "rss_bytes_per_meter": round(grown / w.M),
        "array_bytes_per_meter": round(held / w.M),
    }


async def read_loop(port: int, request: bytes, until: float) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    n = 0
    dec = FrameDecoder()
    try:
        while time.perf_counter() < until:
            writer.write(request)
            await writer.drain()
            while True:
                frame = dec.next_frame()
                if frame is not NEED_DATA:
                    break
                dec.feed(await reader.read(4096))
            n += 1
    finally:
        writer.close()
    return n


async def echo_server(reply: bytes) -> asyncio.AbstractServer:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            data = await reader.read(4096)
            if not data:
                break
            writer.write(reply)
            await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def modbus_loop(port: int, unit: int, until: float) -> int:
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=5)
    await client.connect()
    n = 0
    try:
        while time.perf_counter() < until:
            rr = await client.read_input_registers(0x48, count=4, device_id=unit)
            if not rr.isError():
                n += 1
    finally:
        client.close()
    return n


async def bench_devices() -> dict[str, object]:
    sc = parse_scenario(scenario_data())
    before = rss()
    t = time.perf_counter()
    async with Fleet(sc, keep_days=3) as fleet:
        start_s = time.perf_counter() - t
        fleet.tick()
        w = fleet.world
        grown = rss() - before
        # pick one answering meter per gateway
        now = fleet.clock.now().timestamp()
        targets = []
        for gw in fleet.dlt645[:CONNECTIONS]:
            addr = next(a for a, m in gw.bus.by_address.items() if not w.silent(m, now))
            targets.append((gw.port, pack(ReadRequest(addr, 0x0001FF00), preamble=4), addr))
        until = time.perf_counter() + SECONDS
        counts = await asyncio.gather(*(read_loop(p, r, until) for p, r, _ in targets))
        dlt_rate = sum(counts) / SECONDS
        # the baseline: the same clients, the same reply bytes, no decoding
        reply = pack(
            ReadResponse.from_values(targets[0][2], 0x0001FF00, [1.0, 0.1, 0.2, 0.3, 0.4]),
            preamble=4,
        )
        servers = [await echo_server(reply) for _ in targets]
        until = time.perf_counter() + SECONDS
        counts = await asyncio.gather(
            *(
                read_loop(s.sockets[0].getsockname()[1], r, until)
                for s, (_p, r, _a) in zip(servers, targets, strict=True)
            )
        )
        echo_rate = sum(counts) / SECONDS
        for s in servers:
            s.close()
        mb_targets = []
        for mb in fleet.modbus[:CONNECTIONS]:
            unit = next(u for u, m in sorted(mb.units.items()) if not w.silent(m, now))
            mb_targets.append((mb.port, unit))
        until = time.perf_counter() + SECONDS
        counts = await asyncio.gather(*(modbus_loop(p, u, until) for p, u in mb_targets))
        mb_rate = sum(counts) / SECONDS
        return {
            "gateways_dlt645": len(fleet.dlt645),
            "gateways_modbus": len(fleet.modbus),
            "fleet_start_s": round(start_s, 2),
            "rss_bytes_per_meter_with_devices": round(grown / w.M),
            "connections": CONNECTIONS,
            "dlt645_frames_answered_per_s": round(dlt_rate),
            "echo_frames_per_s": round(echo_rate),
            "dlt645_vs_echo": round(dlt_rate / echo_rate, 3),
            "modbus_requests_answered_per_s": round(mb_rate),
            "modbus_vs_echo": round(mb_rate / echo_rate, 3),
        }


MOSQUITTO = Path("/usr/sbin/mosquitto")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def bench_mqtt(url: str) -> dict[str, object]:
    data = scenario_data()
    data["devices"] = {
        "dlt645_share": 0.0,
        "modbus_share": 0.0,
        "mqtt_share": 1.0,
        "meters_per_concentrator": 200,
    }
    data["mqtt"] = {"url": url, "inflight_max": 1000}
    sc = parse_scenario(data)
    async with Fleet(sc, keep_days=3) as fleet:
        w = fleet.world
        for c in fleet.concentrators:
            await asyncio.wait_for(c.connected.wait(), 30)
        g = int((fleet.clock.now().timestamp() - w.t0) // w.slot_s) + 1
        w.ensure_time(w.g_time(g))
        for c in fleet.concentrators:  # one slot first, so interval_kwh is produced too
            c.read_slot(g)
            c.buffer.clear()
        before = sum(c.readings_sent for c in fleet.concentrators)
        t = time.perf_counter()
        for c in fleet.concentrators:
            c.read_slot(g + 1)
        took = time.perf_counter() - t
        readings = sum(c.readings_sent for c in fleet.concentrators) - before
        payloads = [p for c in fleet.concentrators for _t, p in c.buffer.values()]
        topic = "meterhub/v1/c/BENCH/up/readings"
        host, port = url.removeprefix("mqtt://").split(":")
        raw = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-raw", protocol=mqtt.MQTTv5)
        raw.max_inflight_messages_set(1000)
        raw.connect(host, int(port))
        raw.loop_start()
        t = time.perf_counter()
        infos = [raw.publish(topic, p, qos=1) for p in payloads]
        raw_took = time.perf_counter() - t
        for info in infos:
            info.wait_for_publish(30)
        raw.disconnect()
        raw.loop_stop()
        return {
            "meters": w.M,
            "concentrators": len(fleet.concentrators),
            "readings_per_slot": readings,
            "batches_per_slot": len(payloads),
            "slot_read_s": round(took, 3),
            "readings_per_s": round(readings / took),
            "raw_publish_readings_per_s": round(readings / raw_took),
            "vs_raw_publish": round((readings / took) / (readings / raw_took), 3),
            "max_speed_keeping_up": round(w.slot_s / took, 1),
        }


def run_mqtt() -> dict[str, object] | str:
    if not MOSQUITTO.exists():
        return "skipped: no mosquitto"
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "m.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\nuser root\n"
        )
        proc = subprocess.Popen(
            [str(MOSQUITTO), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            time.sleep(0.5)
            return asyncio.run(bench_mqtt(f"mqtt://127.0.0.1:{port}"))
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def main() -> None:
    world = bench_world()
    devices = asyncio.run(bench_devices())
    mqtt_result = run_mqtt()
    result = {
        "benchmark": "simulators",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "meters_simulated": world["meters"],
        "world": world,
        "devices": devices,
        "mqtt": mqtt_result,
        "notes": "frames/s are loopback, no serial delay or latency; one request at a time "
        "per connection; baseline = raw asyncio echo of the same reply bytes",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
