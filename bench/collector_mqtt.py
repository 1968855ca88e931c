"""Benchmark: readings per second from MQTT payloads to committed rows, against raw COPY.

Run: ``.venv/bin/python bench/collector_mqtt.py [--runs N]`` (about 30 s per run; needs
``meterhub db up`` and ``meterhub broker up``). Writes ``bench/results/collector_mqtt.json``:
every run's figures and, per message size, the lowest, median and highest ratio (the machine
is shared, so single figures move; the goal must hold in every run).

What is measured, in one run, on one fresh database with the same rows:

* ``raw_copy`` (the limit): the readings as Python tuples, one binary COPY
  (``copy.set_types`` + ``write_row``) into ``register_reading`` and a commit. The table is
  emptied afterwards. It runs just before and just after the collector; the faster of the two
  is the limit (``raw_copy_samples_per_s`` keeps both), so a slow sample never flatters the
  ratio.
* ``collector``: the same readings as version-1 ``up/readings`` payloads of
  ``readings_per_message`` readings each (≥ 50), published QoS 1 by a concentrator to a
  private Mosquitto (meterhub's provisioned configuration, started for the run under a
  temporary state folder) and queued there for the collector's persistent session (the collector
  subscribed once, then went away). Timing starts when :class:`collector.mqtt.MqttCollector`
  receives the first message and ends when every reading is committed and every message
  acknowledged: delivery, JSON parse and validation, meter lookup, COPY, commit, receipts and
  acks.
  Publishing is outside the timing: the figure is the collector's drain rate. The collector
  and Mosquitto share the machine's CPUs with PostgreSQL, as they do in production on a
  small box.

``ratio`` is collector / raw_copy; the goal is ≥ 0.5 at 200 readings per message (the main
configuration); the 50-reading figure is reported alongside. ``decode_only_readings_per_s`` is the
parse and validation of the same payloads alone (:mod:`protocols.mqtt` through the collector's
decoder, no broker, no database), measured after the run: the share of the collector's time
spent there. ``load_average_1min`` (before, after)
tells whether other work shared the CPUs during the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import paho.mqtt.client as paho  # noqa: E402 - after the path set-up for direct runs
import psycopg  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from collector._mqtt_decode import decode  # noqa: E402
from collector.mqtt import MqttCollector, MqttLink  # noqa: E402
from meterhub.settings import load_settings  # noqa: E402
from protocols.mqtt import Reading, ReadingsBatch, encode_uplink  # noqa: E402

RESULTS = REPO / "bench" / "results" / "collector_mqtt.json"
METERS = 2000
SLOTS = 150
READINGS_PER_MESSAGE = (200, 50)
TZ = timezone(timedelta(hours=8))
T0 = datetime(2026, 1, 1, tzinfo=TZ)


def _with_db(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def _payloads(cid: str, numbers: list[str], per_message: int) -> list[tuple[str, bytes]]:
    readings = [
        Reading(meter=n, quantity="forward_active_total_kwh",
                ts=T0 + timedelta(minutes=15 * s), value=round(1000 + s * 0.25 + k * 1e-3, 3))
        for s in range(SLOTS) for k, n in enumerate(numbers)
    ]
    out = []
    for i in range(0, len(readings), per_message):
        seq = i // per_message + 1
        out.append(encode_uplink(cid, ReadingsBatch(
            batch=f"bench-{per_message}-{seq}", seq=seq,
            readings=tuple(readings[i:i + per_message]))))
    return out


def _raw_copy(url: str, ids: list[int]) -> float:
    received = datetime.now(UTC)
    rows = [(mid, 1, T0 + timedelta(minutes=15 * s), round(1000 + s * 0.25 + k * 1e-3, 3),
             "bench:raw", received) for s in range(SLOTS) for k, mid in enumerate(ids)]
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        with conn.cursor() as cur, cur.copy(
                "COPY register_reading (meter_id, quantity_id, ts, value, source, received_at) "
                "FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "int2", "timestamptz", "float8", "text", "timestamptz"])
            for row in rows:
                copy.write_row(row)
        conn.commit()
        elapsed = time.perf_counter() - started
        conn.execute("TRUNCATE register_reading")
        conn.commit()
    return len(rows) / elapsed


def _publish(host: str, port: int, cid: str, password: str,
             payloads: list[tuple[str, bytes]]) -> None:
    connected = threading.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=paho.MQTTv5)
    client.username_pw_set(cid, password)
    client.max_inflight_messages_set(500)
    client.max_queued_messages_set(0)
    client.on_connect = lambda *_a: connected.set()
    client.connect(host, port)
    client.loop_start()
    connected.wait(10)
    infos = [client.publish(topic, payload, qos=1) for topic, payload in payloads]
    for info in infos:
        info.wait_for_publish(60)
    client.disconnect()
    client.loop_stop()


async def _drain(link: MqttLink, url: str, expected_messages: int) -> tuple[float, Any]:
    collector = MqttCollector(link=link, db_url=url, heartbeat_path=None)
    task = asyncio.create_task(collector.async_run())
    while collector.stats.received == 0 and not task.done():
        await asyncio.sleep(0.001)
    started = time.perf_counter()
    while collector.stats.acked < expected_messages:
        if task.done():
            task.result()
            raise RuntimeError("the collector stopped early")
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - started
    collector.stop()
    await task
    return elapsed, collector.stats


async def _subscribe_once(link: MqttLink, url: str) -> None:
    """Create the collector's persistent session and subscription, then leave."""
    collector = MqttCollector(link=link, db_url=url, heartbeat_path=None)
    task = asyncio.create_task(collector.async_run())
    while not collector.connected.is_set():
        await asyncio.sleep(0.05)
    collector.stop()
    await task


def main(argv: list[str] | None = None) -> int:
    from meterhub.database import database_url
    from meterhub.provision import broker as prov
    from storage import migrate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="measurements per message size")
    args = parser.parse_args(argv)
    settings = load_settings()
    server = database_url(settings)
    # a private Mosquitto (meterhub's provisioned configuration) under a temporary state
    # folder: other collectors on a shared broker would take these uplinks too
    state = Path(tempfile.mkdtemp(prefix="bench-mqtt-", dir=settings.state_dir))
    settings = settings.model_copy(update={"state_dir": state, "broker_port": None})
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERHUB_")}
    env["METERHUB_STATE_DIR"] = str(state)
    subprocess.run([str(REPO / ".venv/bin/meterhub"), "broker", "up"], env=env, check=True,
                   capture_output=True, timeout=60)
    url_b, user, password = prov.collector_credentials(settings)
    parts = urlsplit(url_b)
    host, port = parts.hostname or "127.0.0.1", parts.port or 1883
    name = f"meterhub_bench_{os.getpid()}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = _with_db(server, name)
    tag = secrets.token_hex(3)
    cid = f"BENCH{tag}"
    concentrator = prov.add_client(settings, cid, "concentrator")
    time.sleep(0.5)
    runs = []
    load_before = os.getloadavg()[0]
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            migrate.upgrade(conn)
            numbers = [f"9{tag_digit}{i:010d}" for i, tag_digit in
                       zip(range(METERS), [str(secrets.randbelow(10))] * METERS, strict=True)]
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO meter (number, protocol, interval_min) "
                                "VALUES (%s, 'mqtt', 15)", [(n,) for n in numbers])
            ids = [r[0] for r in conn.execute(
                "SELECT id FROM meter WHERE number = ANY(%s) ORDER BY number",
                (numbers,)).fetchall()]
        for run in range(1, args.runs + 1):
            for per_message in READINGS_PER_MESSAGE:
                raw_before = _raw_copy(url, ids)
                # a session and share group of its own per measurement: nothing left in an
                # earlier one (a publisher's re-sent duplicate) can reach this one
                link = MqttLink(host, port, user, password,
                                f"meterhub-collector-bench{tag}-{run}-{per_message}",
                                group=f"bench{tag}x{run}x{per_message}", session_expiry_s=300)
                asyncio.run(_subscribe_once(link, url))
                payloads = _payloads(cid, numbers, per_message)
                t = time.perf_counter()
                _publish(host, port, cid, concentrator.password, payloads)
                publish_s = time.perf_counter() - t
                elapsed, stats = asyncio.run(_drain(link, url, len(payloads)))
                with psycopg.connect(url) as conn:
                    stored = conn.execute("SELECT count(*) FROM register_reading").fetchone()[0]
                    conn.execute("TRUNCATE register_reading")
                    conn.execute("TRUNCATE ingest_batch")
                    conn.commit()
                readings = METERS * SLOTS
                if stored != readings or stats.inserted != readings:
                    raise RuntimeError(f"stored {stored} of {readings} readings ({stats})")
                # the limit again, right after: the better of the two is the one compared with
                raw_after = _raw_copy(url, ids)
                raw_rate = max(raw_before, raw_after)
                rate = readings / elapsed
                t = time.perf_counter()
                for topic, payload in payloads:
                    decode(topic, payload)
                decode_rate = readings / (time.perf_counter() - t)
                runs.append({
                    "run": run,
                    "readings_per_message": per_message,
                    "messages": len(payloads),
                    "readings": readings,
                    "payload_bytes_mean": round(sum(len(p) for _t, p in payloads) / len(payloads)),
                    "raw_copy_readings_per_s": round(raw_rate),
                    "raw_copy_samples_per_s": [round(raw_before), round(raw_after)],
                    "collector_readings_per_s": round(rate),
                    "collector_messages_per_s": round(len(payloads) / elapsed),
                    "ratio": round(rate / raw_rate, 3),
                    "decode_only_readings_per_s": round(decode_rate),
                    "collector_seconds": round(elapsed, 3),
                    "groups_committed": stats.groups,
                    "publish_seconds_untimed": round(publish_s, 3),
                })
                sys.stderr.write(f"run {run}, {per_message}/message: collector "
                                 f"{rate:,.0f}/s, raw COPY {raw_rate:,.0f}/s, "
                                 f"ratio {rate / raw_rate:.2f}\n")
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        prov.down(settings)
        subprocess.run(["rm", "-rf", "--one-file-system", str(state)], check=False)
    result = {
        "benchmark": "MQTT uplinks to committed readings vs raw binary COPY, same rows, same run",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "table": "register_reading (hypertable, 1-day chunks)",
        "meters": METERS,
        "goal_ratio": 0.5,
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "ratio_summary": {
            str(n): {"min": min(r), "median": round(statistics.median(r), 3), "max": max(r),
                     "runs": len(r)}
            for n in READINGS_PER_MESSAGE
            for r in [[x["ratio"] for x in runs if x["readings_per_message"] == n]]
        },
        "runs": runs,
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
