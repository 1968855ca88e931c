"""``meterhub collect``: run the collectors for the archive in the database.

:func:`collect_command` runs the :class:`~collector.poller.Poller` for every polled meter
(DL/T 645 over TCP in both connection directions, Modbus TCP) and, when the MQTT path is
installed (``collector.mqtt.run_mqtt_collector``), the MQTT collector alongside, until SIGTERM
or SIGINT. On a signal the poller stops claiming work, finishes the cycle under way (up to a
grace period), commits what it read and exits 0.

Time: with a fleet file whose ``[clock]`` table is set (``meterhub simulate`` writes one), the
schedule follows that simulated clock; otherwise the wall clock. The fleet file is passed as an
argument because the clock is a property of the run, not of the archive.

The MQTT collector runs only when the archive has concentrators; it has its own event loop,
so it runs in a thread and is stopped through a ``threading.Event``. If it fails (a broker that
refuses the credentials), the failure is reported and polling goes on.

A status line goes to stderr every ``status_every_s`` seconds of real time, and a heartbeat
file (``<state_dir>/collector/poller.json``, field ``wall`` = real epoch seconds, the same shape
as the MQTT collector's) is rewritten every 5 s for ``meterhub collect --check``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import signal
import sys
import threading
import time
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any

from collector.poller import CollectorConfig, Poller
from meterhub.clock import Clock, SimClock, WallClock

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_INVALID = 2
EXIT_UNREACHABLE = 5
HEARTBEAT_S = 5.0
"""Seconds between heartbeat writes (``<state_dir>/collector/poller.json``)."""


def clock_from_fleet(path: Path) -> SimClock | None:
    """The simulated clock of a fleet file, or None when it has no ``[clock]`` table.

    Args:
        path: The fleet (archive) TOML file.

    Returns:
        The clock.

    Raises:
        ValueError: The file or its clock table is invalid.
        OSError: The file cannot be read.
    """
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML ({exc})") from None
    table = doc.get("clock")
    if table is None:
        return None
    if not isinstance(table, dict) or set(table) - {"sim_start", "wall_start", "speed"}:
        raise ValueError(f"{path}: [clock] takes sim_start, wall_start and speed")

    def instant(key: str) -> datetime:
        value = table.get(key)
        if isinstance(value, datetime):
            return value
        if not isinstance(value, str):
            raise ValueError(f"{path}: clock.{key} is missing")
        return datetime.fromisoformat(value.replace("Z", "+00:00"))

    return SimClock(sim_start=instant("sim_start"), wall_start=instant("wall_start"),
                    speed=float(table.get("speed", 1.0)))


async def _status(poller: Poller, clock: Clock, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        sys.stderr.write(f"meterhub collect: {clock.now().isoformat(timespec='seconds')} "
                         f"{poller.stats.line()}\n")
        sys.stderr.flush()


def write_heartbeat(path: Path, poller: Poller, clock: Clock) -> None:
    """Rewrite the poller's heartbeat file atomically (``wall`` is the real time)."""
    st = poller.stats
    doc = {"wall": time.time(), "ts": clock.now().isoformat(), "pid": os.getpid(),
           "cycles": st.cycles, "reads": st.reads_ok, "inserted": st.inserted,
           "unreachable": st.unreachable, "no_answer": st.no_answer}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("heartbeat %s not written: %s", path, exc.strerror)


async def _heartbeat(path: Path, poller: Poller, clock: Clock, every: float) -> None:
    while True:
        write_heartbeat(path, poller, clock)
        await asyncio.sleep(every)


def _mqtt_entry() -> Any:
    try:
        from collector import mqtt
    except ImportError:
        return None
    return getattr(mqtt, "run_mqtt_collector", None)


async def _has_concentrators(db_url: str) -> bool:
    import psycopg

    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        cur = await conn.execute("SELECT EXISTS (SELECT 1 FROM concentrator)")
        row = await cur.fetchone()
        return bool(row and row[0])


async def _run_mqtt(entry: Any, settings: Any, db_url: str, clock: Clock,
                    stop: asyncio.Event, mqtt_stop: threading.Event) -> None:
    """Run the MQTT collector's entry point; its failure is reported, polling goes on."""
    kwargs: dict[str, Any] = {"stop_event": mqtt_stop}
    params = inspect.signature(entry).parameters
    if "clock" in params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
        kwargs["clock"] = clock
    try:
        if inspect.iscoroutinefunction(entry):
            kwargs["stop_event"] = stop
            await entry(settings, db_url, **kwargs)
        else:  # it runs its own event loop: give it a thread and a threading.Event
            await asyncio.to_thread(entry, settings, db_url, **kwargs)
    except Exception as exc:
        log.error("the MQTT collector stopped: %s", exc)
        sys.stderr.write(f"meterhub collect: MQTT collector stopped: {exc}\n")


async def run_collect(settings: Any, db_url: str, *, clock: Clock,
                      config: CollectorConfig | None = None,
                      stop_event: asyncio.Event | None = None, status_every_s: float = 30.0,
                      once: bool = False, grace_s: float = 30.0, with_mqtt: bool = True) -> int:
    """The collector's event loop body (also used by tests).

    Args:
        settings: meterhub settings (time zone, default interval).
        db_url: Database URL.
        clock: The clock the schedule follows.
        config: Collector settings.
        stop_event: Set to stop; SIGTERM and SIGINT set it too.
        status_every_s: Seconds between status lines on stderr.
        once: Run one polling cycle and return (no MQTT).
        grace_s: How long a stop waits for the cycle under way.
        with_mqtt: Also run the MQTT collector when it is installed.

    Returns:
        The exit code: 0, or 5 when the database or the DTU listener is unreachable.
    """
    import psycopg

    from collector.errors import Unreachable

    stop = stop_event or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    config = config or CollectorConfig()
    if config.schedule.interval_min != settings.default_interval_min:
        from dataclasses import replace

        config = replace(config, schedule=replace(config.schedule,
                                                  interval_min=settings.default_interval_min))
    poller = Poller(db_url=db_url, clock=clock, tz=settings.zone, config=config)
    try:
        await poller.start()
    except (psycopg.OperationalError, Unreachable) as exc:
        sys.stderr.write(f"meterhub collect: {exc}\n")
        await poller.close()
        return EXIT_UNREACHABLE
    tasks: list[asyncio.Task[Any]] = []
    status = asyncio.create_task(_status(poller, clock, status_every_s))
    beat_path = Path(settings.state_dir) / "collector" / "poller.json"
    beat = asyncio.create_task(_heartbeat(beat_path, poller, clock, HEARTBEAT_S))
    try:
        if once:
            await poller.run_cycle()
            return EXIT_OK
        tasks.append(asyncio.create_task(poller.async_run(stop)))
        mqtt_stop = threading.Event()
        entry = _mqtt_entry() if with_mqtt and await _has_concentrators(db_url) else None
        if entry is not None:
            tasks.append(asyncio.create_task(
                _run_mqtt(entry, settings, db_url, clock, stop, mqtt_stop)))
        await stop.wait()
        mqtt_stop.set()
        _done, pending = await asyncio.wait(tasks, timeout=grace_s)
        for t in pending:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        return EXIT_OK
    finally:
        for t in (status, beat):
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
        write_heartbeat(beat_path, poller, clock)
        await poller.close()
        sys.stderr.write(f"meterhub collect: stopped; {poller.stats.line()}\n")


def collect_command(settings: Any, db_url: str, *, fleet: Path | None = None,
                    clock: Clock | None = None, config: CollectorConfig | None = None,
                    stop_event: asyncio.Event | None = None, status_every_s: float = 30.0,
                    once: bool = False) -> int:
    """Entry point of ``meterhub collect``.

    Args:
        settings: meterhub settings.
        db_url: Database URL (migrated).
        fleet: A fleet file whose ``[clock]`` the schedule follows (simulated fleets).
        clock: An explicit clock (tests); wins over ``fleet``.
        config: Collector settings (defaults: CONTRACTS.md and protocols.md §11a).
        stop_event: An event that stops the run when set.
        status_every_s: Seconds between status lines on stderr.
        once: Run one polling cycle and exit.

    Returns:
        0 on a clean stop; 2 for an invalid fleet file; 5 when the database or the DTU
        listener cannot be reached.
    """
    if not logging.getLogger().handlers:
        logging.basicConfig(level=getattr(logging, str(settings.log_level), logging.INFO),
                            stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if clock is None and fleet is not None:
        try:
            clock = clock_from_fleet(fleet)
        except (OSError, ValueError) as exc:
            sys.stderr.write(f"meterhub collect: {exc}\n")
            return EXIT_INVALID
    started = time.monotonic()
    code = asyncio.run(run_collect(settings, db_url, clock=clock or WallClock(), config=config,
                                   stop_event=stop_event, status_every_s=status_every_s,
                                   once=once))
    log.info("collector ran %.1f s", time.monotonic() - started)
    return code
