"""``meterhub simulate``: run a scenario's fleet on real transports and write its ground truth.

:func:`simulate_command` is what the CLI calls. :class:`Fleet` is the same machinery for tests
and benchmarks: ``async with Fleet(scenario) as fleet:`` starts every device on free ports and
gives access to the world, the devices and the fleet document.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from meterhub.clock import Clock, SimClock
from simulators.dlt645_gateway import Dlt645Gateway, MeterBus
from simulators.fleetfile import Endpoints, fleet_document, write_atomic, write_fleet
from simulators.modbus_gateway import ModbusGateway
from simulators.mqtt_concentrator import BrokerParams, Concentrator
from simulators.scenario import Scenario, ScenarioError, load_scenario
from simulators.shapes import ShapeError
from simulators.truth import build_truth
from simulators.world import World

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_INVALID = 2
EXIT_UNREACHABLE = 5


def broker_settings(sc: Scenario, environ: dict[str, str] | None = None) -> tuple[str, str, str]:
    """Broker URL, username and password for the concentrators.

    The URL and password are the scenario's, else ``METERHUB_MQTT_URL`` and
    ``METERHUB_MQTT_PASSWORD``. The username is the scenario's ``mqtt.username`` when set (one
    shared account), else empty: each concentrator then logs in with its own id, as the broker's
    ACL pattern expects (``METERHUB_MQTT_USERNAME`` names the collector, not a concentrator).
    """
    env = os.environ if environ is None else environ
    url = sc.mqtt.url or env.get("METERHUB_MQTT_URL", "")
    user = sc.mqtt.username
    password = sc.mqtt.password or env.get("METERHUB_MQTT_PASSWORD", "")
    return url, user, password


class Fleet:
    """All simulated devices of one scenario, started on free local ports.

    Args:
        scenario: the validated scenario.
        fleet_path: where to write the fleet file (None: do not write).
        wall_start: the real instant the scenario's start maps to (default: now).
        keep_days: computed days kept in memory (see :class:`World`).
        clock: the simulated clock (default: a :class:`SimClock` at the scenario's speed).
    """

    def __init__(
        self,
        scenario: Scenario,
        *,
        fleet_path: Path | None = None,
        wall_start: datetime | None = None,
        keep_days: int = 3,
        clock: Clock | None = None,
    ) -> None:
        self.sc = scenario
        self.world = World(scenario, keep_days=keep_days)
        self.wall_start = wall_start or datetime.now(UTC)
        self.clock: Clock = clock or SimClock(
            sim_start=self.world.start, wall_start=self.wall_start, speed=scenario.speed
        )
        self.fleet_path = fleet_path
        self.dlt645: list[Dlt645Gateway] = []
        self.modbus: list[ModbusGateway] = []
        self.concentrators: list[Concentrator] = []
        self.endpoints = Endpoints()
        self._exchanges_written = 0
        self._manual_written = -1

    async def start(self) -> None:
        """Start every gateway and concentrator and write the fleet file.

        Raises:
            ScenarioError: concentrators need a broker and none is configured.
            OSError: a port cannot be bound.
        """
        w = self.world
        sc = self.sc
        host = sc.devices.host
        records: dict[int, list[int]] = {}
        for m in range(w.M):
            records.setdefault(w.m_point[m], []).append(m)
        for i, g in enumerate(w.gateways):
            ms = [m for p in g["points"] for m in records[p]]
            if g["kind"] == "dlt645-2007":
                bus = MeterBus(w, ms, self.clock, sc.devices, seed=sc.seed * 104729 + i)
                gw = Dlt645Gateway(g["id"], bus, g["mode"], sc.devices)
                await gw.start(host)
                self.dlt645.append(gw)
                if g["mode"] == "connect":
                    self.endpoints.gateways[g["id"]] = gw.url
            else:
                units = {int(w.unit_of[p]): records[p][0] for p in g["points"]}
                mb = ModbusGateway(g["id"], w, units, self.clock, sc.devices.modbus_model)
                await mb.start(host)
                self.modbus.append(mb)
                self.endpoints.gateways[g["id"]] = mb.url
        if w.concentrators:
            url, user, password = broker_settings(sc)
            if not url:
                raise ScenarioError(
                    "mqtt.url", "concentrators need a broker: set mqtt.url or METERHUB_MQTT_URL"
                )
            self.endpoints.broker_url = url
            self.endpoints.broker_username = user
            self.endpoints.broker_password = password
            for i, c in enumerate(w.concentrators):
                try:
                    params = BrokerParams.from_url(url, user or c["id"], password)
                except ValueError as exc:
                    raise ScenarioError("mqtt.url", str(exc)) from None
                ms = [m for p in c["points"] for m in records[p]]
                conc = Concentrator(c["id"], w, ms, i, self.clock, params, sc.mqtt, sc.devices)
                await conc.start()
                self.concentrators.append(conc)
        self.write_fleet_file()

    def fleet_document(self) -> dict[str, Any]:
        """The fleet document as of now (archive changes up to the simulated present)."""
        return fleet_document(
            self.world,
            self.endpoints,
            wall_start=self.wall_start,
            sim_now=self.clock.now().timestamp(),
        )

    def write_fleet_file(self) -> None:
        """Write the fleet file atomically (when a path was given)."""
        if self.fleet_path is not None:
            write_fleet(self.fleet_path, self.fleet_document())

    @property
    def manual_path(self) -> Path | None:
        """The reading-book CSV written beside the fleet file (``<fleet>.manual.csv``)."""
        if self.fleet_path is None:
            return None
        return self.fleet_path.with_name(self.fleet_path.stem + ".manual.csv")

    def manual_csv(self, until: float) -> str:
        """Manual reads taken up to ``until`` in the CSV of ``meterhub import readings``."""
        w = self.world
        lines = ["meter,ts,quantity,value,read_kind,reader"]
        for (m, _d), r in sorted(w.manual_reads.items(), key=lambda kv: (kv[1]["t"], kv[0])):
            if r["t"] > until or r["value"] is None:
                continue
            reader = f"R{w.m_archive_area[m] + 1:03d}"
            lines.append(
                f"{r['meter']},{r['ts']},forward_active_total_kwh,{r['value']:.2f},manual,{reader}"
            )
        return "\n".join(lines) + "\n"

    def tick(self) -> None:
        """Advance the physics to the simulated present; rewrite the archive after exchanges
        and the reading book after new manual reads."""
        now = self.clock.now().timestamp()
        self.world.ensure_time(now)
        taken = sum(1 for r in self.world.manual_reads.values() if r["t"] <= now)
        if taken != self._manual_written and self.manual_path is not None:
            self._manual_written = taken
            write_atomic(self.manual_path, self.manual_csv(now).encode("utf-8"))
        done = sum(
            1 for e in self.world.exchanges if self.world.g_time(e["g"]) <= now and "old_end" in e
        )
        if done != self._exchanges_written:
            self._exchanges_written = done
            self.write_fleet_file()

    async def close(self) -> None:
        """Stop every device."""
        for c in self.concentrators:
            await c.close()
        for g in self.dlt645:
            await g.close()
        for mb in self.modbus:
            await mb.close()

    async def __aenter__(self) -> Fleet:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def frames_answered(self) -> int:
        """Requests answered by every DL/T 645 and Modbus device so far."""
        return sum(g.bus.frames_answered for g in self.dlt645) + sum(
            m.frames_answered for m in self.modbus
        )

    def completed_days(self, *, cap: bool = True) -> int:
        """Whole simulated days whose closing midnight has passed (capped at ``days``)."""
        now = self.clock.now().timestamp()
        done = max(0, self.world.day_of(now))
        return min(self.sc.days, done) if cap else done


def write_truth(path: Path, world: World, days: int) -> None:
    """Write the ground truth JSON for the first ``days`` days atomically."""
    doc = build_truth(world, days)
    write_atomic(path, json.dumps(doc, ensure_ascii=False, indent=1).encode("utf-8"))


async def run(
    sc: Scenario,
    *,
    truth: Path | None,
    fleet: Path | None,
    forever: bool,
    stop: asyncio.Event | None = None,
) -> int:
    """Run a scenario until its last day ends (or ``stop`` is set, or forever).

    Returns:
        The exit code.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with Fleet(sc, fleet_path=fleet) as f:
        w = f.world
        # one simulated hour past the last midnight, so that the last freezes are read
        end = w.t0 + sc.days * 86400.0 + 3600.0
        tick = min(1.0, max(0.05, w.slot_s / sc.speed / 4))
        logged = 0
        log.info(
            "simulating %d meters in %d areas from %s for %s days at speed %g",
            w.M,
            w.A,
            sc.start,
            "∞" if forever else sc.days,
            sc.speed,
        )
        while not stop.is_set():
            f.tick()
            done = f.completed_days(cap=not forever)
            if done > logged:
                logged = done
                log.info("day %d (%s) complete", done, w.day_date(done - 1))
            if not forever and f.clock.now().timestamp() >= end:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=tick)
        days = f.completed_days(cap=not forever)
        if truth is not None:
            w.ensure_day(days)
            write_truth(truth, w, days)
    return EXIT_OK


def _error(key: str, message: str) -> None:
    sys.stderr.write(
        json.dumps({"error": {"key": key, "reason": message}}, ensure_ascii=False) + "\n"
    )


def simulate_command(scenario: Path, truth: Path | None, fleet: Path | None, forever: bool) -> int:
    """Entry point of ``meterhub simulate``.

    Args:
        scenario: the scenario TOML file.
        truth: where to write the ground truth JSON (None: not written).
        fleet: where to write the fleet file (None: not written).
        forever: keep running past the scenario's last day until SIGTERM.

    Returns:
        0 on success; 2 for an invalid scenario or load-shape file (the error names the key);
        5 when a port cannot be bound or the broker URL is unusable.
    """
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        sc = load_scenario(scenario)
    except ScenarioError as exc:
        _error(exc.key, exc.message)
        return EXIT_INVALID
    try:
        return asyncio.run(run(sc, truth=truth, fleet=fleet, forever=forever))
    except ScenarioError as exc:
        _error(exc.key, exc.message)
        return EXIT_INVALID
    except ShapeError as exc:
        _error("load", str(exc))
        return EXIT_INVALID
    except OSError as exc:
        _error("devices", str(exc))
        return EXIT_UNREACHABLE
