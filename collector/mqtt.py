"""The MQTT collector: concentrator uplinks into TimescaleDB, with nothing lost.

Delivery contract::

    concentrator ──QoS 1──▶ Mosquitto ──$share/meterhub/meterhub/v1/c/+/up/#──▶ collector(s)
                                 ▲                                              │ parse, group
                                 │ PUBACK only after COMMIT                     ▼
                                 └──────────────── ack ◀── commit ◀── COPY / quarantine
                                                     └──▶ down/receipt to the concentrator

* paho-mqtt 2.x, MQTT v5, a persistent session (``clean_start`` false, a session expiry) under a
  stable client id (``meterhub-collector-<instance>``, the ``collector_instance`` setting or
  ``--instance``), QoS 1 and *manual* acknowledgements: a message
  is acknowledged only after its readings are committed, or after it was quarantined and that
  is committed. A collector killed at any point loses nothing: the broker redelivers what was
  not acknowledged, and the idempotent ingest stores a redelivered reading once.
* The in-flight window is bounded: the collector announces it as the MQTT v5 Receive Maximum,
  and enforces it itself as well, because Mosquitto 2.0 overshoots that window once
  acknowledgements flow. When the window is full the network thread waits before taking the
  next message, so TCP pushes back and the broker keeps the rest queued in the session. When
  the database is slow or down the collector holds what it has (unacknowledged), retries with
  capped, jittered exponential backoff, takes nothing more meanwhile, and resumes.
* Acknowledgements are tied to the connection that delivered the message. After a reconnect the
  broker redelivers what was not acknowledged (same session), so messages of an earlier
  connection are stored but never acknowledged on the new one (their packet ids may already
  name other messages there).
* Scaling out: every instance subscribes in the one share group ``meterhub`` under its own
  client id, and the broker splits the uplinks between them. Mosquitto 2.0 keeps a stopped
  instance's persistent session *in* the group: its share of new uplinks is queued in that
  session until it comes back (nothing is lost, but it waits). Retire an instance by starting
  it once more until it has drained, or rely on the concentrators re-sending batches without
  a receipt once its session expired. Two processes with the same instance take the session
  from each other: the one pushed out logs an error naming the client id.
* The broker must keep sessions over its own restarts (``persistence true``, as meterhub's
  provisioned Mosquitto does): the session comes back with what was queued in it and not
  acknowledged, the collector reconnects on its own and subscribes again on every connect.
  Mosquitto 2.0 (2.0.11 measured) restores a session but not its *shared* subscription, so
  uplinks published between the broker's restart and the collector's reconnect reach no
  subscriber; the concentrators' re-sending of batches without a receipt covers that gap.
* Many messages go into one transaction with one binary COPY per table; after the commit each
  batch gets a ``down/receipt`` so the concentrator may delete its buffer.
* Unknown meters, invalid, oversized or garbage payloads and undecodable frames are quarantined
  (kinds ``mqtt-payload`` and ``dlt645-frame``, raw bytes, reason, topic) and acknowledged;
  ``meterhub quarantine replay`` re-runs an ``mqtt-payload`` item through the same path.

Entry points: :class:`MqttCollector` (worker shape R16: keyword-only configuration, ``run()``,
``async_run()``, ``close()``, graceful SIGTERM, heartbeat file) and
:func:`run_mqtt_collector` for the ``meterhub collect`` command. ``python -m collector.mqtt``
runs one collector from the ``METERHUB_*`` settings. Credentials never appear in logs.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import logging
import os
import random
import re
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import paho.mqtt.client as paho
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from prometheus_client import Counter, Gauge, Histogram
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from collector import replay as _replay
from collector._mqtt_decode import KIND_PAYLOAD, Decoded, Fault, decode
from collector._mqtt_store import MeterCache, Outcome, UnknownMeters, store_group
from collector.errors import BrokerRefused, ReplayFailed
from meterhub.clock import Clock, WallClock
from protocols.mqtt import DEFAULT_LIMITS, Limits, encode_downlink, shared_uplink_filter

log = logging.getLogger(__name__)

SHARE_GROUP: Final = "meterhub"
"""Share group of the collectors' subscription (``$share/meterhub/…``)."""
CLIENT_ID_PREFIX: Final = "meterhub-collector-"
"""A collector's MQTT client id is this prefix and its instance name."""
_INSTANCE: Final = re.compile(r"[A-Za-z0-9_.-]{1,32}")


def check_instance(instance: int | str) -> str:
    """A collector instance name (``1``, ``a``, ``host-2``), checked.

    Raises:
        ValueError: Not 1-32 letters, digits, ``_``, ``.`` or ``-``.
    """
    name = str(instance)
    if isinstance(instance, bool) or not _INSTANCE.fullmatch(name):
        raise ValueError(f"collector instance {name!r}: use 1-32 letters, digits, '_', '.' "
                         "or '-'")
    return name


def client_id_for(instance: int | str) -> str:
    """The stable MQTT client id of a collector instance: ``meterhub-collector-<instance>``."""
    return CLIENT_ID_PREFIX + check_instance(instance)

# --- metrics (registered on import, served only if a port is given) --------------------------
MESSAGES = Counter("meterhub_mqtt_messages", "MQTT uplinks committed", ["kind", "outcome"])
READINGS_INSERTED = Counter("meterhub_mqtt_readings_inserted", "Readings, events, acks stored")
DUPLICATES = Counter("meterhub_mqtt_duplicates", "Identical re-deliveries dropped")
CONFLICTS = Counter("meterhub_mqtt_conflicts", "Different values for stored keys, kept")
QUARANTINED = Counter("meterhub_mqtt_quarantined", "Quarantine entries written by MQTT uplinks")
DB_RETRIES = Counter("meterhub_mqtt_db_retries", "Commits retried after a database failure")
COMMIT_SECONDS = Histogram("meterhub_mqtt_commit_seconds", "Latency of one group's commit",
                           buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
HELD = Gauge("meterhub_mqtt_held_messages", "Uplinks received and not yet acknowledged")


def next_delay(attempts: int, *, base: float, cap: float, rng: random.Random) -> float:
    """Backoff before retry number ``attempts`` (1-based): capped exponential, full jitter.

    Args:
        attempts: How many attempts failed so far (≥ 1).
        base: The first delay's upper bound, seconds.
        cap: The largest delay, seconds.
        rng: Random source (injected, so tests are repeatable).

    Returns:
        A delay in ``[base/2, min(cap, base·2^(attempts-1))]``.
    """
    ceiling = min(cap, base * 2 ** max(0, attempts - 1))
    return max(base / 2, ceiling * rng.random())


@dataclass(frozen=True, slots=True)
class MqttLink:
    """How a collector reaches the broker (connection parameters, house style R7).

    Attributes:
        host: Broker host.
        port: Broker port.
        username: MQTT username.
        password: MQTT password (never printed: excluded from ``repr``).
        client_id: Stable client id; its persistent session holds what was not acknowledged.
        tls: Use TLS (``mqtts://``).
        group: Share group name.
        keepalive: Keepalive, seconds.
        session_expiry_s: How long the broker keeps the session while the collector is away.
        receive_maximum: In-flight window: unacknowledged messages the broker may send.
    """

    host: str
    port: int
    username: str | None
    password: str | None = field(repr=False)
    client_id: str
    tls: bool = False
    group: str = SHARE_GROUP
    keepalive: int = 30
    session_expiry_s: int = 7 * 24 * 3600
    receive_maximum: int = 1000

    @classmethod
    def from_url(cls, url: str, *, username: str | None, password: str | None,
                 client_id: str, **options: Any) -> MqttLink:
        """Build from an ``mqtt://host:port`` (or ``mqtts://``) URL.

        Raises:
            ValueError: Not an mqtt:// or mqtts:// URL with a host, or a window outside
                1..65535.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError("the broker URL must be mqtt:// or mqtts:// with a host")
        tls = parts.scheme == "mqtts"
        link = cls(parts.hostname, parts.port or (8883 if tls else 1883),
                   username or parts.username, password or parts.password, client_id, tls,
                   **options)
        if not 0 < link.receive_maximum <= 65535:
            raise ValueError("receive_maximum must be 1..65535")
        return link

    @property
    def endpoint(self) -> str:
        """``mqtt://host:port`` without credentials, for logs and errors."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class _Inbound:
    mid: int
    qos: int
    topic: str
    payload: bytes
    generation: int
    received_at: datetime


@dataclass(slots=True)
class _Work:
    inbound: _Inbound
    decoded: Decoded


@dataclass(slots=True)
class Stats:
    """Counts since start (also exported as Prometheus metrics).

    Attributes:
        received: Uplinks received from the broker.
        committed: Uplinks whose transaction committed.
        acked: Uplinks acknowledged to the broker.
        inserted: Rows stored (readings, events, acks).
        duplicates: Identical re-deliveries dropped.
        conflicts: Different values kept for review.
        quarantined: Quarantine entries written.
        receipts: Receipts published.
        db_retries: Commits retried after a database failure.
        groups: Transactions committed.
        connects: Connections the broker accepted (the first and every reconnect).
        sessions_resumed: Of those, how many found the persistent session still there.
    """

    received: int = 0
    committed: int = 0
    acked: int = 0
    inserted: int = 0
    duplicates: int = 0
    conflicts: int = 0
    quarantined: int = 0
    receipts: int = 0
    db_retries: int = 0
    groups: int = 0
    connects: int = 0
    sessions_resumed: int = 0


class _GaveUp(Exception):
    """Stopping while the database is unavailable: leave the group unacknowledged."""


_TRANSIENT = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout)
_SESSION_TAKEN_OVER: Final = 0x8E
_YIELD_READINGS: Final = 2000
"""The assembler lets other tasks run after decoding about this many readings."""


class MqttCollector:
    """One collector process's MQTT path.

    Args:
        link: Broker connection parameters.
        db_url: The database URL.
        clock: Time source for ``received_at`` (a ``SimClock`` under simulation).
        default_interval: Minutes for ``interval_kwh`` of meters without an interval.
        limits: Payload limits (oversized payloads are quarantined).
        max_group_messages: Most uplinks in one transaction.
        max_group_readings: Most readings in one transaction.
        linger_s: How long a group waits for more uplinks before it is written.
        pipeline_depth: Groups written at once, each in its own transaction on its own
            connection (1: one after the other).
        retry_base_s: First backoff after a database failure.
        retry_cap_s: Largest backoff.
        grace_s: On stop, how long an unfinished commit may take before it is abandoned
            (abandoned uplinks stay unacknowledged and come back on the next start).
        heartbeat_path: File rewritten every ``heartbeat_s`` while running, or None.
        heartbeat_s: Heartbeat period.
        metrics_port: Serve Prometheus metrics on this port (None: no HTTP server).
        pool_timeout_s: How long one commit waits for a database connection.
        rng: Random source for the backoff jitter.
    """

    def __init__(
        self,
        *,
        link: MqttLink,
        db_url: str,
        clock: Clock | None = None,
        default_interval: int = 15,
        limits: Limits = DEFAULT_LIMITS,
        max_group_messages: int = 400,
        max_group_readings: int = 25_000,
        linger_s: float = 0.02,
        pipeline_depth: int = 2,
        retry_base_s: float = 0.5,
        retry_cap_s: float = 15.0,
        grace_s: float = 10.0,
        heartbeat_path: Path | None = None,
        heartbeat_s: float = 5.0,
        metrics_port: int | None = None,
        pool_timeout_s: float = 5.0,
        rng: random.Random | None = None,
    ) -> None:
        if max_group_messages < 1 or max_group_readings < 1:
            raise ValueError("group limits must be positive")
        if pipeline_depth < 1:
            raise ValueError("pipeline_depth must be ≥ 1")
        self.pipeline_depth = pipeline_depth
        self.link = link
        self._db_url = db_url
        self.clock: Clock = clock or WallClock()
        self.default_interval = default_interval
        self.limits = limits
        self.max_group_messages = min(max_group_messages, link.receive_maximum)
        self.max_group_readings = max_group_readings
        self.linger_s = linger_s
        self.retry_base_s = retry_base_s
        self.retry_cap_s = retry_cap_s
        self.grace_s = grace_s
        self.heartbeat_path = heartbeat_path
        self.heartbeat_s = heartbeat_s
        self.metrics_port = metrics_port
        self.pool_timeout_s = pool_timeout_s
        self.rng = rng or random.Random()
        self.stats = Stats()
        self.meters = MeterCache()
        self.connected = threading.Event()
        self._generation = 0
        self._gen_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stop_requested = threading.Event()
        self._client: paho.Client | None = None
        self._inbound: asyncio.Queue[_Inbound] | None = None
        self._slots = threading.BoundedSemaphore(link.receive_maximum)
        self._handover: collections.deque[_Inbound] = collections.deque()
        self._wake_pending = False
        self._held = 0
        self._refused: str | None = None
        self._failure: Exception | None = None

    @classmethod
    def from_settings(cls, settings: Any, db_url: str, *, instance: int | str | None = None,
                      **options: Any) -> MqttCollector:
        """A collector configured from meterhub's settings.

        The client id is ``meterhub-collector-<instance>``: stable across restarts (its
        persistent session keeps what was not acknowledged) and distinct per process; all
        instances share one share group, so the broker splits the uplinks between them.

        Args:
            settings: :class:`meterhub.settings.Settings`.
            db_url: The database URL.
            instance: This process's name within the share group; default: the
                ``collector_instance`` setting (``METERHUB_COLLECTOR_INSTANCE``).
            **options: Further keyword arguments of :class:`MqttCollector`, and of
                :class:`MqttLink` (``receive_maximum``, ``session_expiry_s``, ``keepalive``,
                ``group``, ``client_id`` to override the derived id).

        Raises:
            ValueError: A bad instance name or broker URL.
        """
        from meterhub.provision.broker import collector_credentials

        name = check_instance(
            getattr(settings, "collector_instance", "1") if instance is None else instance)
        url, user, password = collector_credentials(settings)
        link_options = {k: options.pop(k) for k in ("receive_maximum", "session_expiry_s",
                                                    "keepalive", "group") if k in options}
        client_id = options.pop("client_id", None) or client_id_for(name)
        link = MqttLink.from_url(url, username=user, password=password, client_id=client_id,
                                 **link_options)
        options.setdefault("default_interval", settings.default_interval_min)
        options.setdefault(
            "heartbeat_path", Path(settings.state_dir) / "collector" / f"{client_id}.json")
        return cls(link=link, db_url=db_url, **options)

    # ------------------------------------------------------------------ control
    def stop(self) -> None:
        """Ask the collector to stop (thread-safe, idempotent)."""
        self._stop_requested.set()
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)

    def close(self) -> None:
        """Stop and release the broker connection; safe to call more than once."""
        self.stop()
        client = self._client
        if client is not None and self._loop is None:
            with contextlib.suppress(Exception):
                client.disconnect()
                client.loop_stop()

    def run(self) -> None:
        """Run until SIGTERM or SIGINT (graceful: commits in progress finish first).

        Raises:
            BrokerRefused: The broker refused the credentials.
            psycopg.OperationalError: The database is unreachable at start (fail fast).
        """
        asyncio.run(self.async_run(install_signals=True))

    # ------------------------------------------------------------------ broker
    def _make_client(self) -> paho.Client:
        link = self.link
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=link.client_id,
                             protocol=paho.MQTTv5, manual_ack=True)
        if link.username is not None or link.password is not None:
            client.username_pw_set(link.username, link.password)
        if link.tls:
            client.tls_set()
        client.max_queued_messages_set(10_000)
        client.max_inflight_messages_set(100)
        client.reconnect_delay_set(min_delay=1, max_delay=5)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def _connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.link.session_expiry_s
        props.ReceiveMaximum = self.link.receive_maximum
        return props

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason_code: Any,
                    properties: Any) -> None:
        del userdata, properties
        if reason_code.is_failure:
            self._refused = str(reason_code)
            log.error("broker %s refused %s: %s", self.link.endpoint, self.link.client_id,
                      reason_code)
            return
        with self._gen_lock:
            self._generation += 1
        self._refused = None
        resumed = bool(getattr(flags, "session_present", False))
        self.stats.connects += 1
        self.stats.sessions_resumed += resumed
        log.info("connected to %s as %s (session present: %s)", self.link.endpoint,
                 self.link.client_id, resumed)
        client.subscribe(shared_uplink_filter(self.link.group), qos=1)

    def _on_subscribe(self, client: paho.Client, userdata: Any, mid: int,
                      reason_codes: Any, properties: Any) -> None:
        del client, userdata, mid, properties
        if any(rc.is_failure for rc in reason_codes):
            log.error("subscription to the uplinks refused: %s", reason_codes)
            return
        self.connected.set()
        loop = self._loop
        if loop is not None:  # the heartbeat shows the new state at once
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._write_heartbeat)

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason_code: Any,
                       properties: Any) -> None:
        del client, userdata, flags, properties
        with self._gen_lock:
            self._generation += 1
        self.connected.clear()
        if getattr(reason_code, "value", None) == _SESSION_TAKEN_OVER:
            log.error("another process connected as %s and took this collector's session: "
                      "give each collector process its own instance", self.link.client_id)
        elif not self._stop_requested.is_set():
            log.warning("disconnected from %s: %s; reconnecting", self.link.endpoint,
                        reason_code)

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        del client, userdata
        # The window: wait for a free slot (freed when a held message is committed). While
        # waiting, this network thread reads nothing more. On stop the message is left
        # unacknowledged: the broker delivers it again to the next session.
        while not self._slots.acquire(timeout=0.2):
            if self._stop_requested.is_set():
                return
        with self._gen_lock:
            generation = self._generation
        inbound = _Inbound(msg.mid, msg.qos, msg.topic, bytes(msg.payload), generation,
                           self.clock.now())
        loop = self._loop
        # Hand over through a deque; wake the event loop only when it is not already due to
        # take what is there (one wake-up for a burst of messages, not one per message).
        self._handover.append(inbound)
        if self._wake_pending:
            return
        self._wake_pending = True
        try:
            if loop is None:
                raise RuntimeError("not running")
            loop.call_soon_threadsafe(self._take_handover)
        except RuntimeError:
            self._wake_pending = False
            with contextlib.suppress(IndexError):
                self._handover.remove(inbound)
                self._slots.release()

    def _take_handover(self) -> None:
        self._wake_pending = False  # before draining: a message appended later wakes again
        handover = self._handover
        while handover:
            self._enqueue(handover.popleft())

    def _enqueue(self, inbound: _Inbound) -> None:
        assert self._inbound is not None
        self._inbound.put_nowait(inbound)
        self.stats.received += 1
        self._held += 1
        HELD.set(self._held)

    def _ack(self, works: Sequence[_Work]) -> None:
        client = self._client
        if client is None:
            return
        with self._gen_lock:
            generation = self._generation
            for w in works:
                if w.inbound.qos > 0 and w.inbound.generation == generation:
                    client.ack(w.inbound.mid, w.inbound.qos)
                    self.stats.acked += 1
                elif w.inbound.qos == 0:
                    self.stats.acked += 1

    def _publish_receipts(self, works: Sequence[_Work], outcomes: Sequence[Outcome]) -> None:
        client = self._client
        if client is None:
            return
        for w, out in zip(works, outcomes, strict=True):
            if out.receipt is None or w.decoded.concentrator is None:
                continue
            try:
                topic, payload = encode_downlink(w.decoded.concentrator, out.receipt)
            except Exception:  # a receipt that cannot be encoded is not worth a crash
                log.exception("receipt for %s could not be encoded", w.decoded.batch)
                continue
            client.publish(topic, payload, qos=1)
            self.stats.receipts += 1

    # ---------------------------------------------------------------- pipeline
    async def _assemble(self, groups: asyncio.Queue[list[_Work] | None]) -> None:
        """Take uplinks off the inbound queue, decode them and cut them into groups."""
        assert self._inbound is not None and self._stop is not None
        inbound = self._inbound
        while not self._stop.is_set():
            try:
                first = await asyncio.wait_for(inbound.get(), timeout=0.2)
            except TimeoutError:
                continue
            group = [_Work(first, decode(first.topic, first.payload, limits=self.limits))]
            readings = len(group[0].decoded.items)
            next_yield = readings + _YIELD_READINGS
            deadline = time.monotonic() + self.linger_s
            while (len(group) < self.max_group_messages and readings < self.max_group_readings
                   and not self._stop.is_set()):
                try:
                    nxt = inbound.get_nowait()
                except asyncio.QueueEmpty:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    try:
                        nxt = await asyncio.wait_for(inbound.get(), timeout=left)
                    except TimeoutError:
                        break
                work = _Work(nxt, decode(nxt.topic, nxt.payload, limits=self.limits))
                group.append(work)
                readings += len(work.decoded.items)
                if readings >= next_yield:  # let the writer's I/O go on between decodes
                    next_yield = readings + _YIELD_READINGS
                    await asyncio.sleep(0)
            await groups.put(group)
        await groups.put(None)

    async def _write(self, pool: AsyncConnectionPool,
                     groups: asyncio.Queue[list[_Work] | None]) -> None:
        """Commit groups, up to ``pipeline_depth`` at once on as many connections.

        While one group's COPY and commit run, the next group's COPY already streams on
        another connection, so the database never waits for the collector between groups.
        Each group is acknowledged and receipted only after its own commit, and groups are
        acknowledged in the order they were received.
        """
        order: asyncio.Queue[tuple[list[_Work], asyncio.Task[list[Outcome]]] | None] = (
            asyncio.Queue())
        slots = asyncio.Semaphore(self.pipeline_depth)
        completer = asyncio.create_task(self._complete_in_order(order, slots))
        completer.add_done_callback(self._task_ended)
        commits: set[asyncio.Task[list[Outcome]]] = set()
        try:
            while True:
                group = await groups.get()
                if group is None:
                    break
                await slots.acquire()
                task = asyncio.create_task(self._commit(pool, group))
                commits.add(task)
                task.add_done_callback(commits.discard)
                order.put_nowait((group, task))
            order.put_nowait(None)
            await completer
        finally:  # cancelled (grace over): abandon what is open, unacknowledged
            completer.cancel()
            for task in list(commits):
                task.cancel()
            await asyncio.gather(completer, *commits, return_exceptions=True)

    async def _complete_in_order(
        self, order: asyncio.Queue[tuple[list[_Work], asyncio.Task[list[Outcome]]] | None],
        slots: asyncio.Semaphore,
    ) -> None:
        """Receipt and acknowledge committed groups in the order they were received."""
        while (item := await order.get()) is not None:
            try:
                await self._complete(*item)
            finally:
                slots.release()

    async def _complete(self, group: list[_Work],
                        task: asyncio.Task[list[Outcome]]) -> bool:
        """Wait for one group's commit, then receipt and acknowledge it; False if abandoned."""
        try:
            outcomes = await task
        except _GaveUp:
            log.warning("stopping with %d uplink(s) uncommitted; the broker keeps them",
                        len(group))
            return False
        self._publish_receipts(group, outcomes)
        self._ack(group)
        self._account(group, outcomes)
        return True

    def _account(self, group: Sequence[_Work], outcomes: Sequence[Outcome]) -> None:
        st = self.stats
        st.groups += 1
        st.committed += len(group)
        self._held -= len(group)
        HELD.set(self._held)
        self._slots.release(len(group))
        kinds: collections.Counter[tuple[str, str]] = collections.Counter()
        inserted = duplicates = conflicts = quarantined = 0
        for w, out in zip(group, outcomes, strict=True):
            inserted += out.inserted
            duplicates += out.duplicates
            conflicts += out.conflicts
            quarantined += out.quarantined
            kinds[w.decoded.kind or "unknown", "quarantined" if out.fault else "stored"] += 1
        st.inserted += inserted
        st.duplicates += duplicates
        st.conflicts += conflicts
        st.quarantined += quarantined
        for labels, count in kinds.items():  # one metric update per group, not per uplink
            MESSAGES.labels(*labels).inc(count)
        READINGS_INSERTED.inc(inserted)
        DUPLICATES.inc(duplicates)
        CONFLICTS.inc(conflicts)
        QUARANTINED.inc(quarantined)

    async def _store(self, pool: AsyncConnectionPool, group: Sequence[_Work]) -> list[Outcome]:
        started = time.perf_counter()
        async with pool.connection(timeout=self.pool_timeout_s) as conn, conn.transaction():
            outcomes = await store_group(
                conn, [w.decoded for w in group], [w.inbound.received_at for w in group],
                meters=self.meters, default_interval=self.default_interval)
        COMMIT_SECONDS.observe(time.perf_counter() - started)
        return outcomes

    async def _commit(self, pool: AsyncConnectionPool, group: list[_Work]) -> list[Outcome]:
        """Commit a group, retrying while the database is unavailable.

        A group that fails for a reason other than the database's availability (a value the
        schema refuses) is split: each uplink is committed alone, and one that still fails is
        quarantined with the error, so one bad message never blocks the others.
        """
        assert self._stop is not None
        attempts = 0
        stop_deadline: float | None = None
        while True:
            try:
                return await self._store(pool, group)
            except _TRANSIENT as exc:
                attempts += 1
                self.stats.db_retries += 1
                DB_RETRIES.inc()
                delay = next_delay(attempts, base=self.retry_base_s, cap=self.retry_cap_s,
                                   rng=self.rng)
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                log.warning("database unavailable (%s): holding %d uplink(s) unacknowledged, "
                            "retry %d in %.1f s", first, self._held, attempts, delay)
            except psycopg.Error as exc:
                if len(group) > 1:
                    outcomes: list[Outcome] = []
                    for w in group:
                        outcomes.extend(await self._commit(pool, [w]))
                    return outcomes
                return await self._commit_refused(pool, group[0], exc)
            if self._stop.is_set():
                stop_deadline = stop_deadline or time.monotonic() + self.grace_s
                if time.monotonic() >= stop_deadline:
                    raise _GaveUp
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=delay)
            if self._stop.is_set() and stop_deadline is None:
                stop_deadline = time.monotonic() + self.grace_s

    async def _commit_refused(self, pool: AsyncConnectionPool, work: _Work,
                              exc: psycopg.Error) -> list[Outcome]:
        d = work.decoded
        reason = type(exc).__name__
        log.error("uplink on %s refused by the database (%s); quarantined", d.topic, reason)
        refused = Decoded(topic=d.topic, payload=d.payload, concentrator=d.concentrator,
                          kind=d.kind, batch=d.batch, seq=d.seq)
        refused.fault = Fault(KIND_PAYLOAD, d.payload, "store_failed",
                              (str(exc).strip().splitlines() or [reason])[0][:500],
                              {"topic": d.topic, "error": reason})
        return await self._commit(pool, [_Work(work.inbound, refused)])

    # ------------------------------------------------------------------ housekeeping
    def _write_heartbeat(self) -> None:
        path = self.heartbeat_path
        if path is None:
            return
        st = self.stats
        doc = {"wall": time.time(), "ts": self.clock.now().isoformat(), "pid": os.getpid(),
               "client_id": self.link.client_id, "connected": self.connected.is_set(),
               "held": self._held, "committed": st.committed, "inserted": st.inserted,
               "db_retries": st.db_retries}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(path.suffix + ".tmp")
            tmp.write_text(json.dumps(doc))
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("heartbeat %s not written: %s", path, exc.strerror)

    async def _housekeeping(self) -> None:
        assert self._stop is not None
        beat = 0.0
        while not self._stop.is_set():
            if time.monotonic() - beat >= self.heartbeat_s:
                self._write_heartbeat()
                beat = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=0.5)

    async def _watch(self, stop_event: Any) -> None:
        assert self._stop is not None
        while not self._stop.is_set():
            if self._stop_requested.is_set() or (stop_event is not None and stop_event.is_set()):
                self._stop.set()
                return
            await asyncio.sleep(0.1)

    def _task_ended(self, task: asyncio.Task[None]) -> None:
        """A pipeline task that fails stops the collector (what it held stays unacknowledged)."""
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        log.error("collector task %s failed; stopping",
                  getattr(task.get_coro(), "__qualname__", task.get_name()),
                  exc_info=exc)
        if self._failure is None and isinstance(exc, Exception):
            self._failure = exc
        self._stop_requested.set()
        assert self._stop is not None
        self._stop.set()

    # ------------------------------------------------------------------ main
    async def async_run(self, stop_event: Any = None, *, install_signals: bool = False) -> None:
        """Run until :meth:`stop` (or ``stop_event``, an ``asyncio`` or ``threading`` event).

        Args:
            stop_event: Optional event that stops the collector when set.
            install_signals: Stop gracefully on SIGTERM and SIGINT (main thread only).

        Raises:
            BrokerRefused: The broker refused the connection (credentials, authorisation).
            psycopg.OperationalError: The database is unreachable at start (fail fast, R12).
        """
        from meterhub.database import redact

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._inbound = asyncio.Queue()  # bounded by the window's slots
        if self._stop_requested.is_set():
            self._stop.set()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    self._loop.add_signal_handler(sig, self.stop)
        if self.metrics_port is not None:
            from prometheus_client import start_http_server

            start_http_server(self.metrics_port)
        # no check on every checkout (a round trip per group): a broken connection fails
        # its group, which is retried, and the pool replaces it
        pool = AsyncConnectionPool(self._db_url, open=False, min_size=self.pipeline_depth,
                                   max_size=self.pipeline_depth + 1,
                                   name="meterhub-mqtt", timeout=self.pool_timeout_s,
                                   reconnect_timeout=24 * 3600.0)
        try:
            await pool.open(wait=True, timeout=30.0)
        except PoolTimeout as exc:
            raise psycopg.OperationalError(
                f"database {redact(self._db_url)} unreachable at start") from exc
        tasks: list[asyncio.Task[None]] = []
        try:
            self._client = self._make_client()
            try:
                self._client.connect_async(self.link.host, self.link.port,
                                           keepalive=self.link.keepalive, clean_start=False,
                                           properties=self._connect_properties())
            except (OSError, ValueError) as exc:
                raise BrokerRefused(f"cannot connect to {self.link.endpoint}: {exc}",
                                    endpoint=self.link.endpoint) from exc
            self._client.loop_start()
            log.info("collecting from %s (%s, window %d) into %s", self.link.endpoint,
                     self.link.client_id, self.link.receive_maximum, redact(self._db_url))
            groups: asyncio.Queue[list[_Work] | None] = asyncio.Queue(maxsize=1)
            writer = asyncio.create_task(self._write(pool, groups))
            tasks = [asyncio.create_task(self._assemble(groups)), writer,
                     asyncio.create_task(self._housekeeping()),
                     asyncio.create_task(self._watch(stop_event))]
            for t in tasks:
                t.add_done_callback(self._task_ended)
            await self._stop.wait()
            log.info("stopping: finishing commits in progress (grace %.0f s)", self.grace_s)
            try:
                await asyncio.wait_for(asyncio.shield(writer), timeout=self.grace_s + 1.0)
            except TimeoutError:
                log.warning("grace period over; abandoning the commit in progress")
            if self._failure is not None:
                raise self._failure
            if self._refused is not None and self.stats.received == 0:
                raise BrokerRefused(f"{self.link.endpoint} refused the connection: "
                                    f"{self._refused}", endpoint=self.link.endpoint)
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            client, self._client = self._client, None
            if client is not None:
                await asyncio.to_thread(_disconnect, client)
            self._write_heartbeat()
            await pool.close()
            self._loop = None
            log.info("stopped: %d uplinks committed, %d held unacknowledged for redelivery",
                     self.stats.committed, self._held)


def _disconnect(client: paho.Client) -> None:
    """Let queued receipts and acknowledgements go out, then leave (the session stays)."""
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and client.want_write():
        time.sleep(0.02)
    client.disconnect()
    client.loop_stop()


def heartbeat_age(path: Path) -> float | None:
    """Seconds since the heartbeat file was last written, or None if there is none.

    ``meterhub collect --check`` fails when this is None or above a few heartbeat periods.
    """
    try:
        doc = json.loads(path.read_text())
        return max(0.0, time.time() - float(doc["wall"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def run_mqtt_collector(settings: Any, db_url: str, *, stop_event: Any = None,
                       instance: int | str | None = None, **options: Any) -> None:
    """Run one MQTT collector until SIGTERM/SIGINT or ``stop_event`` (the ``collect`` entry).

    Args:
        settings: :class:`meterhub.settings.Settings` (broker URL and credentials come from
            ``meterhub.provision.broker.collector_credentials``).
        db_url: The database URL (migrated).
        stop_event: Optional ``threading.Event`` or ``asyncio.Event`` that stops it.
        instance: This process's name in the share group (client id
            ``meterhub-collector-<instance>``); default: the ``collector_instance`` setting.
        **options: Further keyword arguments of :class:`MqttCollector`.

    Raises:
        BrokerRefused: The broker refused the connection.
        psycopg.OperationalError: The database is unreachable at start.
    """
    collector = MqttCollector.from_settings(settings, db_url, instance=instance, **options)
    main_thread = threading.current_thread() is threading.main_thread()
    asyncio.run(collector.async_run(stop_event, install_signals=main_thread))


# --- quarantine replay ------------------------------------------------------------------------
async def replay_payload(conn: Any, item: Any, *, default_interval: int = 15) -> str:
    """Replay a quarantined ``mqtt-payload`` through the same decode and store path.

    Args:
        conn: An open connection; the caller owns the transaction.
        item: A :class:`storage.quarantine.QuarantineItem` of kind ``mqtt-payload``.
        default_interval: Minutes for ``interval_kwh`` of meters without an interval.

    Returns:
        A short description of what was stored.

    Raises:
        ReplayFailed: The payload is still invalid, or names meters still unknown.
    """
    topic = (item.context or {}).get("topic")
    if not topic:
        raise ReplayFailed("the quarantined payload has no topic", reason="no_topic")
    decoded = decode(topic, bytes(item.raw))
    if decoded.fault is not None:
        raise ReplayFailed(decoded.fault.message, reason=decoded.fault.reason)
    try:
        [out] = await store_group(conn, [decoded], [datetime.now(UTC)], meters=MeterCache(),
                                  default_interval=default_interval, replay=True)
    except UnknownMeters as exc:
        raise ReplayFailed(str(exc), reason=exc.reason) from None
    return (f"inserted {out.inserted}, duplicates {out.duplicates}, conflicts {out.conflicts}"
            + (f", {out.rejected} frame(s) quarantined" if out.rejected else ""))


def register_replay() -> None:
    """Make ``meterhub quarantine replay`` handle ``mqtt-payload`` items."""
    _replay.handler_for(KIND_PAYLOAD)  # loads the built-in handlers before adding this one
    _replay.register(KIND_PAYLOAD, replay_payload)


register_replay()


# --- python -m collector.mqtt -------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """Run one collector from the ``METERHUB_*`` settings (``python -m collector.mqtt``).

    Returns:
        0 after a graceful stop, 5 when the broker or database cannot be reached.
    """
    from meterhub.database import DatabaseUnavailable, ensure_database
    from meterhub.settings import load_settings

    parser = argparse.ArgumentParser(prog="python -m collector.mqtt", description=__doc__
                                     .splitlines()[0])
    parser.add_argument("--db-url", help="database URL (default: the configured one)")
    parser.add_argument("--instance", default=None,
                        help="name in the share group (default: METERHUB_COLLECTOR_INSTANCE)")
    parser.add_argument("--max-group-messages", type=int, default=400)
    parser.add_argument("--max-group-readings", type=int, default=25_000)
    parser.add_argument("--receive-maximum", type=int, default=1000)
    parser.add_argument("--group", default=SHARE_GROUP, help="share group name")
    parser.add_argument("--client-id", help="override the client id derived from --instance")
    parser.add_argument("--session-expiry", type=int, default=7 * 24 * 3600,
                        help="seconds the broker keeps the session while away")
    parser.add_argument("--metrics-port", type=int, default=None)
    args = parser.parse_args(argv)
    settings = load_settings()
    logging.basicConfig(level=settings.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        db_url = args.db_url or ensure_database(settings)
        run_mqtt_collector(settings, db_url, instance=args.instance, client_id=args.client_id,
                           max_group_messages=args.max_group_messages,
                           max_group_readings=args.max_group_readings,
                           receive_maximum=args.receive_maximum, group=args.group,
                           session_expiry_s=args.session_expiry,
                           metrics_port=args.metrics_port)
    except (BrokerRefused, DatabaseUnavailable, psycopg.OperationalError) as exc:
        sys.stderr.write(f"meterhub: error: {exc}\n")
        return 5
    return 0


if __name__ == "__main__":
    sys.exit(main())
