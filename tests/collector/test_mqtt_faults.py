"""The MQTT collector against the real broker and database, under faults.

The broker is meterhub's provisioned Mosquitto (same configuration: passwords, ACLs,
persistence), started for this module under a temporary state folder with
``meterhub broker up``: every collector on a broker receives every concentrator's uplinks and
answers with receipts, so a broker shared with other running collectors would mix their
receipts into these tests, and restarting it would disturb them. Each test uses its own
concentrator (credentials from ``add_client``), its own meters, its own share group and client
id, and a short session expiry; the session is deleted at the end. A test concentrator
behaves like a real one: it keeps every batch until a ``down/receipt`` names it and can re-send
the rest. Counts of stored rows are compared with what was published: the primary key
(meter, quantity, ts) makes a duplicate row impossible, so "none duplicated" is checked as
"exactly as many rows as distinct readings published, with the published values".
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as paho
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from collector.mqtt import MqttCollector, MqttLink, heartbeat_age
from protocols.dlt645 import ReadResponse, pack
from protocols.mqtt import (
    EventCode,
    EventsBatch,
    ForwardedFrame,
    FramesBatch,
    MeterEvent,
    Reading,
    ReadingsBatch,
    Receipt,
    encode_uplink,
    parse_downlink,
)

pytestmark = [pytest.mark.db, pytest.mark.broker, pytest.mark.timeout(150)]

REPO = Path(__file__).resolve().parents[2]
TZ = timezone(timedelta(hours=8))
T0 = datetime(2026, 3, 1, tzinfo=TZ)
OUTAGE_S = float(os.environ.get("COLLECTOR_TEST_OUTAGE_S", "3"))
"""How long the database outage lasts (short in CI; raise it for a soak run)."""


# --------------------------------------------------------------------------- helpers
class Concentrator:
    """A test concentrator: publishes QoS 1 and keeps batches until receipted."""

    def __init__(self, host: str, port: int, cid: str, password: str) -> None:
        self.id = cid
        self.receipts: list[Receipt] = []
        self.pending: dict[str, tuple[str, bytes]] = {}
        self._lock = threading.Lock()
        self.connected = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=cid,
                                  protocol=paho.MQTTv5)
        self.client.username_pw_set(cid, password)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(0.2, 1)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *_a: self.connected.clear()
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.broker_acked = 0
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 120
        self.client.connect_async(host, port, keepalive=10, clean_start=False, properties=props)
        self.client.loop_start()
        assert self.connected.wait(10), "the concentrator could not connect"

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        del userdata, flags, props
        if not rc.is_failure:
            client.subscribe(f"meterhub/v1/c/{self.id}/down/#", qos=1)
            self.connected.set()

    def _on_publish(self, *_args: Any) -> None:
        with self._lock:
            self.broker_acked += 1

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        del client, userdata
        _cid, message = parse_downlink(msg.topic, bytes(msg.payload))
        if isinstance(message, Receipt):
            with self._lock:
                self.receipts.append(message)
                self.pending.pop(message.batch, None)

    def publish(self, topic: str, payload: bytes, *, batch: str | None = None) -> None:
        if batch is not None:
            with self._lock:
                self.pending[batch] = (topic, payload)
        self.client.publish(topic, payload, qos=1)

    def resend_pending(self) -> int:
        with self._lock:
            items = list(self.pending.values())
        for topic, payload in items:
            self.client.publish(topic, payload, qos=1)
        return len(items)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Rig:
    """One test's concentrator, meters and collector identity."""

    broker: PrivateBroker
    db_url: str
    host: str
    port: int
    collector_user: str
    collector_password: str
    cid: str
    cpassword: str
    numbers: list[str]
    group: str
    client_id: str
    published: dict[tuple[str, datetime], float] = field(default_factory=dict)

    def link(self, **options: Any) -> MqttLink:
        return MqttLink(self.host, self.port, self.collector_user, self.collector_password,
                        self.client_id, group=self.group, session_expiry_s=120, **options)

    def collector(self, db_url: str | None = None, **options: Any) -> MqttCollector:
        link_opts = {k: options.pop(k) for k in ("receive_maximum",) if k in options}
        options.setdefault("retry_base_s", 0.2)
        options.setdefault("retry_cap_s", 1.0)
        options.setdefault("heartbeat_path", None)
        return MqttCollector(link=self.link(**link_opts), db_url=db_url or self.db_url,
                             **options)

    def concentrator(self) -> Concentrator:
        return Concentrator(self.host, self.port, self.cid, self.cpassword)

    def batches(self, count: int, *, per_meter: int = 5, start: int = 0,
                prefix: str = "b") -> list[tuple[str, str, bytes]]:
        """``count`` readings batches, each with ``len(numbers) * per_meter`` new readings."""
        out = []
        for b in range(start, start + count):
            readings = []
            for j in range(per_meter):
                ts = T0 + timedelta(minutes=15 * (b * per_meter + j))
                for k, number in enumerate(self.numbers):
                    value = round(1000.0 + b * 10 + j + k / 100, 2)
                    readings.append(Reading(meter=number, quantity="forward_active_total_kwh",
                                            ts=ts, value=value))
                    self.published[(number, ts)] = value
            batch = f"{prefix}-{b}"
            topic, payload = encode_uplink(
                self.cid, ReadingsBatch(batch=batch, seq=b + 1, readings=tuple(readings)))
            out.append((batch, topic, payload))
        return out


def _meters_sql(conn: psycopg.Connection[Any], numbers: list[str]) -> None:
    with conn.transaction():
        for n in numbers:
            conn.execute("INSERT INTO meter (number, protocol, interval_min, concentrator_id) "
                         "VALUES (%s, 'mqtt', 15, NULL) ON CONFLICT (number) DO NOTHING", (n,))


def _stored(db_url: str, numbers: list[str]) -> dict[tuple[str, datetime], float]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT m.number, r.ts, r.value FROM register_reading r JOIN meter m "
            "ON m.id = r.meter_id WHERE m.number = ANY(%s) AND r.quantity_id = 1",
            (numbers,)).fetchall()
    return {(n, ts): v for n, ts, v in rows}


def _count(db_url: str, numbers: list[str]) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM register_reading r JOIN meter m ON m.id = r.meter_id "
            "WHERE m.number = ANY(%s)", (numbers,)).fetchone()
    return int(row[0]) if row else 0


async def _wait_for(predicate: Any, timeout: float, what: str, *,
                    every: Any = None) -> None:
    deadline = time.monotonic() + timeout
    last_resend = time.monotonic()
    while time.monotonic() < deadline:
        if await asyncio.to_thread(predicate):
            return
        if every is not None and time.monotonic() - last_resend > 2.0:
            every()
            last_resend = time.monotonic()
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _assert_exactly(rig: Rig, db_url: str | None = None) -> None:
    stored = _stored(db_url or rig.db_url, rig.numbers)
    assert len(stored) == len(rig.published), (len(stored), len(rig.published))
    assert stored == {(n, ts): v for (n, ts), v in rig.published.items()}


def _forget_session(rig: Rig, client_id: str) -> None:
    """Delete a test collector's persistent session (clean start, expiry 0)."""
    done = threading.Event()
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    c.username_pw_set(rig.collector_user, rig.collector_password)
    c.on_connect = lambda *_a: done.set()
    with contextlib.suppress(OSError):
        c.connect(rig.host, rig.port, clean_start=True)
        c.loop_start()
        done.wait(5)
        c.disconnect()
        c.loop_stop()


@dataclass
class PrivateBroker:
    """A provisioned Mosquitto of this module's own."""

    settings: Any
    env: dict[str, str]
    host: str
    port: int
    user: str
    password: str

    def up(self) -> None:
        """Start it with the ``meterhub broker up`` command (so it is not this process's child
        and a graceful ``down`` is not left waiting on a zombie)."""
        subprocess.run([str(REPO / ".venv/bin/meterhub"), "broker", "up"], env=self.env,
                       check=True, capture_output=True, timeout=60)

    def down(self) -> None:
        """Stop it gracefully (``meterhub.provision.broker.down``: it saves its persistence)."""
        from meterhub.provision import broker as prov

        prov.down(self.settings)


@pytest.fixture(scope="module")
def private_broker(settings: Any, broker: Any) -> Iterator[PrivateBroker]:
    from meterhub.provision import broker as prov

    del broker  # the project's broker proves Mosquitto is installed and provisionable
    state = Path(tempfile.mkdtemp(prefix="mqtt-test-", dir=settings.state_dir))
    tmp = settings.model_copy(update={"state_dir": state, "broker_port": None})
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERHUB_")}
    env["METERHUB_STATE_DIR"] = str(state)
    pb = PrivateBroker(tmp, env, "", 0, "", "")
    pb.up()
    try:
        url, user, password = prov.collector_credentials(tmp)
        parts = urlsplit(url)
        assert user and password
        pb.host, pb.port, pb.user, pb.password = (parts.hostname or "127.0.0.1",
                                                  parts.port or 1883, user, password)
        yield pb
    finally:
        pb.down()
        subprocess.run(["rm", "-rf", "--one-file-system", str(state)], check=False)


@pytest.fixture
def rig(db_url: str, private_broker: PrivateBroker) -> Iterator[Rig]:
    from meterhub.provision.broker import add_client

    tag = secrets.token_hex(3)
    cid = f"CT{tag}"
    client = add_client(private_broker.settings, cid, "concentrator")
    time.sleep(0.4)  # the broker reloads its password file on SIGHUP
    prefix = f"{secrets.randbelow(10**6):06d}"
    numbers = [f"{prefix}{i:06d}" for i in range(20)]
    with psycopg.connect(db_url) as conn:
        _meters_sql(conn, numbers)
    pb = private_broker
    r = Rig(pb, db_url, pb.host, pb.port, pb.user, pb.password, cid, client.password, numbers,
            f"t{tag}", f"meterhub-collector-t{tag}")
    yield r
    _forget_session(r, r.client_id)


@contextlib.asynccontextmanager
async def running(collector: MqttCollector) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(collector.async_run())
    try:
        await _wait_for(collector.connected.is_set, 15, "the collector to subscribe")
        yield task
    finally:
        collector.stop()
        await asyncio.wait_for(task, 30)


@contextlib.contextmanager
def table_lock(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    """Hold EXCLUSIVE locks on the readings tables: every write (and so every commit of the
    collector) stalls, while reads for the test's checks still go through."""
    conn = psycopg.connect(db_url)
    try:
        conn.execute("LOCK TABLE register_reading, interval_reading IN EXCLUSIVE MODE")
        yield conn
    finally:
        conn.rollback()
        conn.close()


def _waiting_on_lock(db_url: str) -> bool:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = "
                           "l.relation WHERE NOT l.granted AND c.relname IN "
                           "('register_reading', 'interval_reading')").fetchone()
    return bool(row and row[0])


# --------------------------------------------------------------------------- tests
async def test_sigkill_mid_batch_then_restart_loses_and_duplicates_nothing(
        rig: Rig, tmp_path: Path) -> None:
    """(1) SIGKILL while a group's transaction is open: after a restart every reading is there
    exactly once. The kill is made to land mid-transaction deterministically: the readings
    tables are locked, the collector's COPY waits on the lock, and it is killed there."""
    env = {**rig.broker.env, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "collector.mqtt", "--db-url", rig.db_url,
           "--client-id", rig.client_id, "--group", rig.group, "--session-expiry", "120",
           "--max-group-messages", "4"]

    log = tmp_path / "collector.log"
    heartbeat = Path(rig.broker.settings.state_dir) / "collector" / f"{rig.client_id}.json"

    def start() -> subprocess.Popen[bytes]:
        with log.open("ab") as fh:
            return subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                                    stderr=fh)

    conc = rig.concentrator()
    proc = start()
    try:
        for batch, topic, payload in rig.batches(10):
            conc.publish(topic, payload, batch=batch)
        half = len(rig.published)
        # batches published before the collector's first subscription are re-sent (as a
        # concentrator does until it has a receipt); after that the session holds everything
        await _wait_for(lambda: _count(rig.db_url, rig.numbers) == half, 30,
                        "the first half to be committed", every=conc.resend_pending)
        with table_lock(rig.db_url):
            for batch, topic, payload in rig.batches(20, start=10):
                conc.publish(topic, payload, batch=batch)
            await _wait_for(lambda: _waiting_on_lock(rig.db_url), 20,
                            "the collector's commit to wait on the lock")
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            assert _count(rig.db_url, rig.numbers) == half
        assert proc.returncode == -signal.SIGKILL
        proc = start()
        # no re-sending here: the broker redelivers what the killed process never acknowledged
        await _wait_for(lambda: _count(rig.db_url, rig.numbers) >= len(rig.published), 40,
                        "every reading after the restart")
        await asyncio.sleep(0.5)  # any late duplicate would have to fit the primary key
        _assert_exactly(rig)
        age = heartbeat_age(heartbeat)
        assert age is not None and age < 60
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        conc.close()
    heartbeat.unlink(missing_ok=True)
    assert proc.returncode == 0, log.read_text()
    assert "SIGKILL" not in log.read_text() and "Traceback" not in log.read_text()


async def test_broker_restart_keeps_the_session_without_resends(rig: Rig) -> None:
    """(2) The broker is stopped gracefully (``meterhub.provision.broker.down``) and started
    again (``meterhub broker up``) while the collector holds a full window of uplinks it could
    not commit yet (readings tables locked) and more wait queued in its session: nothing is
    lost, nothing stored twice, and the concentrator re-sends nothing.

    The broker saves the collector's persistent session on the way down and restores it, with
    the queued and unacknowledged uplinks, on the way up; the collector reconnects on its own,
    finds its session, subscribes again (Mosquitto 2.0 does not restore a *shared*
    subscription) and gets everything redelivered. What it had stored from the old
    connection but not acknowledged comes again and is counted as duplicates."""
    collector = rig.collector(receive_maximum=8, max_group_messages=4)
    async with running(collector):
        conc = rig.concentrator()
        try:
            with table_lock(rig.db_url):
                for batch, topic, payload in rig.batches(20):
                    conc.publish(topic, payload, batch=batch)
                await _wait_for(lambda: collector.stats.received >= 8 and
                                conc.broker_acked >= 20, 20, "a full window, the rest queued")
                await asyncio.to_thread(rig.broker.down)
                await asyncio.to_thread(rig.broker.up)
            # no re-sending: the restored session and the reconnect must be enough
            await _wait_for(lambda: collector.stats.connects >= 2 and
                            collector.connected.is_set(), 20, "the collector to reconnect")
            await asyncio.to_thread(conc.connected.wait, 15)
            for batch, topic, payload in rig.batches(10, start=20):
                conc.publish(topic, payload, batch=batch)
            await _wait_for(lambda: _count(rig.db_url, rig.numbers) >= len(rig.published), 25,
                            "every reading after the broker restart")
            await _wait_for(lambda: not conc.pending, 10, "receipts for every batch")
            await asyncio.sleep(0.5)  # any late duplicate would have to fit the primary key
        finally:
            conc.close()
    _assert_exactly(rig)
    assert collector.stats.sessions_resumed >= 1
    assert collector.stats.inserted == len(rig.published)
    assert collector.stats.db_retries == 0


async def test_broker_restart_while_messages_flow_with_resends(rig: Rig) -> None:
    """(2) The broker is stopped gracefully (``meterhub.provision.broker.down``) and started
    again (``meterhub broker up``, a separate process so the broker is not this test's child)
    while a concentrator publishes: nothing is lost, nothing stored twice.

    Uplinks published between the broker's start and the collector's re-subscription reach
    no subscriber: Mosquitto 2.0 restores a persistent session and what is queued in it, but
    not its *shared* subscription. The receipt protocol bridges that gap: the concentrator
    re-sends every batch it has no receipt for, and the idempotent ingest stores a re-sent
    reading once."""

    collector = rig.collector()
    async with running(collector):
        conc = rig.concentrator()
        try:
            batches = rig.batches(40)
            for i, (batch, topic, payload) in enumerate(batches):
                conc.publish(topic, payload, batch=batch)
                await asyncio.sleep(0.02)
                if i == 15:
                    await asyncio.to_thread(rig.broker.down)
                    await asyncio.sleep(1.0)
                    await asyncio.to_thread(rig.broker.up)
            await _wait_for(lambda: _count(rig.db_url, rig.numbers) >= len(rig.published), 60,
                            "every reading after the broker restart", every=conc.resend_pending)
            await _wait_for(lambda: not conc.pending, 20, "receipts for every batch",
                            every=conc.resend_pending)
        finally:
            conc.close()
    _assert_exactly(rig)
    assert collector.stats.db_retries == 0


async def test_uplinks_queued_while_the_collector_is_away_survive_a_broker_restart(
        rig: Rig) -> None:
    """The collector subscribes once and stops; batches are published while it is away (queued
    in its session), the broker is restarted while it is still away, and the collector starts
    again: every queued batch is committed exactly once from the restored session, then new
    batches flow, and the concentrator re-sends nothing. (Batches published after such a
    restart and before the collector's return would reach no subscriber, as Mosquitto 2.0 does
    not restore shared subscriptions: the receipt protocol covers those.)"""
    async with running(rig.collector()):
        pass  # the persistent session and its shared subscription now exist
    conc = rig.concentrator()
    try:
        for batch, topic, payload in rig.batches(10):
            conc.publish(topic, payload, batch=batch)
        await _wait_for(lambda: conc.broker_acked >= 10, 10,
                        "the broker to acknowledge the first batches")
        await asyncio.to_thread(rig.broker.down)
        await asyncio.to_thread(rig.broker.up)
        assert _count(rig.db_url, rig.numbers) == 0
        collector = rig.collector()
        async with running(collector):
            await asyncio.to_thread(conc.connected.wait, 15)
            for batch, topic, payload in rig.batches(10, start=10):
                conc.publish(topic, payload, batch=batch)
            await _wait_for(lambda: _count(rig.db_url, rig.numbers) >= len(rig.published), 20,
                            "every queued reading")
            await _wait_for(lambda: not conc.pending, 10, "receipts for every batch")
            await asyncio.sleep(0.5)
    finally:
        conc.close()
    _assert_exactly(rig)
    assert collector.stats.sessions_resumed >= 1
    assert collector.stats.committed == 20 and collector.stats.duplicates == 0


async def test_two_collector_processes_split_the_load(rig: Rig, tmp_path: Path) -> None:
    """Two ``python -m collector.mqtt`` processes with different instances (one from
    ``--instance``, one from ``METERHUB_COLLECTOR_INSTANCE``) share the group: each commits a
    part of the batches, under its own client id ``meterhub-collector-<instance>``, and
    together every reading is stored exactly once."""
    import json

    tag = rig.client_id.rsplit("-", 1)[-1]
    instances = [f"{tag}a", f"{tag}b"]
    env = {**rig.broker.env, "PYTHONPATH": str(REPO)}
    state = Path(rig.broker.settings.state_dir) / "collector"
    beats = [state / f"meterhub-collector-{name}.json" for name in instances]
    base = [sys.executable, "-m", "collector.mqtt", "--db-url", rig.db_url, "--group",
            rig.group, "--session-expiry", "120"]
    logs = [tmp_path / f"{name}.log" for name in instances]
    procs: list[subprocess.Popen[bytes]] = []
    for i, name in enumerate(instances):
        cmd = [*base, "--instance", name] if i == 0 else base
        proc_env = env if i == 0 else {**env, "METERHUB_COLLECTOR_INSTANCE": name}
        with logs[i].open("ab") as fh:
            procs.append(subprocess.Popen(cmd, env=proc_env, cwd=REPO,
                                          stdout=subprocess.DEVNULL, stderr=fh))

    def subscribed(path: Path) -> bool:
        try:
            return bool(json.loads(path.read_text())["connected"])
        except (OSError, ValueError, KeyError):
            return False

    conc = rig.concentrator()
    try:
        await _wait_for(lambda: all(subscribed(b) for b in beats), 20,
                        "both collectors to subscribe")
        for batch, topic, payload in rig.batches(40, per_meter=2):
            conc.publish(topic, payload, batch=batch)
        await _wait_for(lambda: _count(rig.db_url, rig.numbers) >= len(rig.published), 20,
                        "every reading")
        await _wait_for(lambda: not conc.pending, 10, "receipts for every batch")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        conc.close()
    _assert_exactly(rig)
    assert [p.returncode for p in procs] == [0, 0], [log.read_text() for log in logs]
    committed = [json.loads(b.read_text())["committed"] for b in beats]
    assert all(c > 0 for c in committed) and sum(committed) == 40, committed
    for name, beat in zip(instances, beats, strict=True):
        assert json.loads(beat.read_text())["client_id"] == f"meterhub-collector-{name}"
        beat.unlink()
        _forget_session(rig, f"meterhub-collector-{name}")


@dataclass
class ThrowawayDb:
    """A TimescaleDB cluster of its own, from the provisioned root, that a test may stop."""

    settings: Any
    env: dict[str, str]

    def up(self) -> str:
        subprocess.run([str(REPO / ".venv/bin/meterhub"), "db", "up"], env=self.env,
                       check=True, capture_output=True, timeout=120)
        from meterhub.provision import db

        return db.url(self.settings)

    def down(self) -> None:
        from meterhub.provision import db

        db.down(self.settings)


@pytest.fixture
def throwaway_db(settings: Any) -> Iterator[ThrowawayDb]:
    """A private cluster started by the ``meterhub db up`` command (so it is not our child and
    stops cleanly), under a temporary state folder beside the project's, destroyed after."""
    from meterhub.provision import db

    state = Path(tempfile.mkdtemp(prefix="outage-", dir=settings.state_dir))
    tmp_settings = settings.model_copy(update={"state_dir": state, "db_port": None})
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERHUB_")}
    env.update(METERHUB_STATE_DIR=str(state), METERHUB_ROOT_CACHE=str(settings.root_cache))
    yield ThrowawayDb(tmp_settings, env)
    db.destroy(tmp_settings)
    subprocess.run(["rm", "-rf", "--one-file-system", str(state)], check=False)


async def test_database_outage_holds_messages_and_resumes(rig: Rig,
                                                          throwaway_db: ThrowawayDb) -> None:
    """(3) The database goes away for ``OUTAGE_S`` seconds while messages flow: a real outage of
    a throwaway cluster (fast shutdown, connections dropped, refused while down), not the shared
    server. The collector holds what it has unacknowledged, retries with backoff and resumes."""
    url = await asyncio.to_thread(throwaway_db.up)
    with psycopg.connect(url) as conn:
        _meters_sql(conn, rig.numbers)
    collector = rig.collector(url)
    async with running(collector):
        conc = rig.concentrator()
        try:
            for batch, topic, payload in rig.batches(10):
                conc.publish(topic, payload, batch=batch)
            first = len(rig.published)
            await _wait_for(lambda: _count(url, rig.numbers) == first, 30, "the first readings")
            await asyncio.to_thread(throwaway_db.down)
            for batch, topic, payload in rig.batches(20, start=10):
                conc.publish(topic, payload, batch=batch)
                await asyncio.sleep(OUTAGE_S / 20)
            await _wait_for(lambda: collector.stats.db_retries > 0, 30,
                            "the collector to notice the outage")
            held = collector.stats.received - collector.stats.committed
            assert held > 0 and collector.stats.acked == collector.stats.committed
            await asyncio.to_thread(throwaway_db.up)
            await _wait_for(lambda: _count(url, rig.numbers) >= len(rig.published), 60,
                            "every reading after the outage")
        finally:
            conc.close()
    _assert_exactly(rig, url)


async def test_backpressure_window_while_commits_stall(rig: Rig) -> None:
    """While commits stall (readings tables locked), the collector takes no more than its
    in-flight window from the broker, acknowledges nothing, and catches up after."""
    collector = rig.collector(receive_maximum=8, max_group_messages=4)
    async with running(collector):
        conc = rig.concentrator()
        try:
            with table_lock(rig.db_url):
                for batch, topic, payload in rig.batches(30):
                    conc.publish(topic, payload, batch=batch)
                await _wait_for(lambda: collector.stats.received >= 8, 20, "a full window")
                await asyncio.sleep(1.0)  # time for the broker to overrun, if it would
                assert collector.stats.received == 8
                assert collector.stats.acked == 0
                assert _count(rig.db_url, rig.numbers) == 0
            await _wait_for(lambda: _count(rig.db_url, rig.numbers) >= len(rig.published), 30,
                            "every reading after the lock")
        finally:
            conc.close()
    _assert_exactly(rig)
    assert collector.stats.acked == collector.stats.committed == collector.stats.received


async def test_bad_payloads_are_quarantined_and_the_collector_keeps_running(rig: Rig) -> None:
    """(4) Garbage, truncated, malformed, wrong-version, oversized payloads, an unknown topic
    kind, unknown meters and a corrupt forwarded frame all end in the quarantine with their
    raw bytes; good data around them is stored; an unknown-meter payload is replayed once its
    meter is in the archive."""
    from collector.replay import handler_for
    from storage import quarantine

    collector = rig.collector()
    good = rig.batches(2)
    truncated = good[1][2][: len(good[1][2]) // 2]
    stranger = f"{int(rig.numbers[0]) + 900_000:012d}"
    mixed_topic, mixed = encode_uplink(rig.cid, ReadingsBatch(batch="mixed-1", seq=90, readings=(
        Reading(meter=rig.numbers[0], quantity="interval_kwh", ts=T0, value=0.25),
        Reading(meter=stranger, quantity="forward_active_total_kwh", ts=T0, value=5.0))))
    good_frame = pack(ReadResponse.from_values(rig.numbers[1], 0x02010100, [221.5]))
    bad_frame = bytearray(good_frame)
    bad_frame[-2] ^= 0x55
    frames_topic, frames = encode_uplink(rig.cid, FramesBatch(batch="frames-1", seq=91, frames=(
        ForwardedFrame(ts=T0, hex=good_frame.hex()), ForwardedFrame(ts=T0, hex=bad_frame.hex()))))
    events_topic, events = encode_uplink(rig.cid, EventsBatch(batch="events-1", seq=92, events=(
        MeterEvent(meter=rig.numbers[2], code=EventCode.COVER_OPEN, ts=T0),
        MeterEvent(code=EventCode.POWER_LOSS, ts=T0))))
    up = f"meterhub/v1/c/{rig.cid}/up"
    bad = [
        (f"{up}/readings", b"\x00\x01\x02 not json at all \xff"),
        (f"{up}/readings", truncated),
        (f"{up}/readings", b'{"v":1,"batch":"bad-1","seq":5,"readings":[{"meter":"12"}]}'),
        (f"{up}/readings", b'{"v":3,"batch":"bad-2","seq":6,"readings":[]}'),
        (f"{up}/events", b"[]"),
        (f"{up}/readings", b'{"v":1,"batch":"big","pad":"' + b"x" * 300_000 + b'"}'),
        (f"{up}/gossip", b'{"v":1}'),
    ]
    async with running(collector) as task:
        conc = rig.concentrator()
        try:
            conc.publish(good[0][1], good[0][2], batch=good[0][0])
            for topic, payload in bad:
                conc.publish(topic, payload)
            conc.publish(mixed_topic, mixed)
            conc.publish(frames_topic, frames)
            conc.publish(events_topic, events)
            conc.publish(good[1][1], good[1][2], batch=good[1][0])
            await _wait_for(lambda: collector.stats.committed >= len(bad) + 5, 30,
                            "every uplink to be committed")
            await _wait_for(lambda: {r.batch for r in conc.receipts} >= {
                "b-0", "b-1", "bad-1", "mixed-1", "frames-1", "events-1"}, 10, "receipts")
            assert not task.done()
        finally:
            conc.close()
    _assert_exactly(rig)
    receipts = {r.batch: r for r in conc.receipts}
    assert receipts["bad-1"].result == "quarantined"
    assert (receipts["mixed-1"].result, receipts["mixed-1"].accepted,
            receipts["mixed-1"].rejected) == ("committed", 1, 1)
    assert (receipts["frames-1"].accepted, receipts["frames-1"].rejected) == (1, 1)
    async with await psycopg.AsyncConnection.connect(rig.db_url) as conn:
        cur = await conn.execute(
            "SELECT kind, reason, raw, context->>'topic' FROM quarantine WHERE source = %s "
            "ORDER BY id", (f"mqtt:{rig.cid}",))
        rows = await cur.fetchall()
        cur = await conn.execute(
            "SELECT (SELECT count(*) FROM meter_event e JOIN meter m ON m.id = e.meter_id "
            "        WHERE m.number = %s), "
            "       (SELECT count(*) FROM concentrator_event WHERE concentrator_id = %s), "
            "       (SELECT value FROM register_reading r JOIN meter m ON m.id = r.meter_id "
            "        WHERE m.number = %s AND r.quantity_id = 40), "
            "       (SELECT r.interval_min FROM interval_reading r JOIN meter m "
            "        ON m.id = r.meter_id WHERE m.number = %s)",
            (rig.numbers[2], rig.cid, rig.numbers[1], rig.numbers[0]))
        events_stored, own_events, voltage, interval = await cur.fetchone()  # type: ignore[misc]
    reasons = [(k, r) for k, r, _raw, _t in rows]
    assert reasons == [
        ("mqtt-payload", "not_json"), ("mqtt-payload", "not_json"),
        ("mqtt-payload", "bad_meter_address"), ("mqtt-payload", "unsupported_version"),
        ("mqtt-payload", "not_object"), ("mqtt-payload", "too_large"),
        ("mqtt-payload", "unknown_kind"), ("mqtt-payload", "unknown_meter"),
        ("dlt645-frame", "bad_checksum"),
    ], reasons
    raws = [bytes(raw) for _k, _r, raw, _t in rows]
    assert raws[:7] == [p for _t, p in bad] and raws[7] == mixed
    assert raws[8] == bytes(bad_frame)
    assert all(t and t.startswith(f"meterhub/v1/c/{rig.cid}/up/") for *_x, t in rows)
    assert (events_stored, own_events, voltage, interval) == (1, 1, 221.5, 15)

    # the stranger joins the archive: the unknown-meter payload replays into the tables
    with psycopg.connect(rig.db_url) as conn:
        _meters_sql(conn, [stranger])
    handler = handler_for("mqtt-payload")
    assert handler is not None
    async with await psycopg.AsyncConnection.connect(rig.db_url) as conn:
        items = [i for i in await quarantine.list_items(conn, limit=1000)
                 if i.source == f"mqtt:{rig.cid}" and i.reason == "unknown_meter"]
        assert len(items) == 1
        async with conn.transaction():
            result = await handler(conn, items[0])
    assert result.startswith("inserted 1, duplicates 1")
    assert _count(rig.db_url, [stranger]) == 1


async def test_duplicates_are_stored_once_and_conflicts_kept(rig: Rig) -> None:
    """(5) The same batch delivered twice (a concentrator re-sending, a redelivery), in the
    same group and in later groups, is stored once and counted; a different value for a stored
    key is kept in reading_conflict, never overwriting."""
    collector = rig.collector()
    batches = rig.batches(3)
    changed_ts = T0
    changed_topic, changed = encode_uplink(rig.cid, ReadingsBatch(batch="again-0", seq=50,
        readings=(Reading(meter=rig.numbers[0], quantity="forward_active_total_kwh",
                          ts=changed_ts, value=9999.0),)))
    async with running(collector):
        conc = rig.concentrator()
        try:
            for batch, topic, payload in batches + batches:  # twice, likely one group
                conc.publish(topic, payload, batch=batch)
            await _wait_for(lambda: collector.stats.committed >= 6, 20, "both deliveries")
            conc.publish(batches[0][1], batches[0][2])  # a third time, alone
            conc.publish(changed_topic, changed)
            await _wait_for(lambda: collector.stats.committed >= 8, 20, "the re-sends")
        finally:
            conc.close()
    _assert_exactly(rig)
    distinct = len(rig.published)
    assert collector.stats.inserted == distinct
    assert collector.stats.duplicates == distinct + distinct // 3
    assert collector.stats.conflicts == 1
    with psycopg.connect(rig.db_url) as conn:
        conflict = conn.execute(
            "SELECT stored_value, offered_value FROM reading_conflict c JOIN meter m ON "
            "m.id = c.meter_id WHERE m.number = %s", (rig.numbers[0],)).fetchall()
        batches_rows = conn.execute(
            "SELECT batch_ref, sum(inserted), sum(duplicates) FROM ingest_batch "
            "WHERE source = %s GROUP BY batch_ref ORDER BY batch_ref",
            (f"mqtt:{rig.cid}",)).fetchall()
    assert conflict == [(rig.published[(rig.numbers[0], changed_ts)], 9999.0)]
    per_batch = distinct // 3
    assert [(b, i) for b, i, _d in batches_rows] == [
        ("again-0", 0), ("b-0", per_batch), ("b-1", per_batch), ("b-2", per_batch)]


async def test_cli_entry_runs_until_its_stop_event(rig: Rig) -> None:
    """``run_mqtt_collector(settings, db_url, stop_event=…)`` (the ``collect`` entry) stores
    readings with the settings' collector credentials and returns when the event is set."""
    from collector.mqtt import run_mqtt_collector

    stop = threading.Event()
    thread = threading.Thread(target=run_mqtt_collector, args=(rig.broker.settings, rig.db_url),
                              kwargs={"stop_event": stop, "instance": 7}, daemon=True)
    thread.start()
    conc = rig.concentrator()
    try:
        for batch, topic, payload in rig.batches(3):
            conc.publish(topic, payload, batch=batch)
        await _wait_for(lambda: _count(rig.db_url, rig.numbers) >= len(rig.published), 30,
                        "the readings", every=conc.resend_pending)
        await _wait_for(lambda: not conc.pending, 10, "the receipts", every=conc.resend_pending)
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, 30)
        conc.close()
    assert not thread.is_alive()
    _assert_exactly(rig)
    heartbeat = Path(rig.broker.settings.state_dir) / "collector" / "meterhub-collector-7.json"
    assert heartbeat_age(heartbeat) is not None
    _forget_session(rig, "meterhub-collector-7")
