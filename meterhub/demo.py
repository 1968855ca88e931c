"""``meterhub demo``: the main job, end to end, on a simulated fleet with known ground truth.

1. Start the private TimescaleDB and Mosquitto; the demo works in its own fresh database,
   ``meterhub_demo``, beside the configured one (it never touches that one's data).
2. Start a simulated fleet (DL/T 645 gateways, Modbus TCP meters, MQTT concentrators) with a
   few injected faults, running a day in about half a minute; issue its concentrators MQTT
   credentials.
3. Load the fleet's archive (``fleet load``) and run the collectors (``collect``) on the
   simulated clock until the fleet has finished its days.
4. Compute the same-period line loss per area and day (``analyze lineloss``) and set it beside
   what the simulator's meters registered; then VEE and the suspect list where available.

Everything runs through the same commands an operator uses; the demo only orchestrates them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

DEMO_SCENARIO = """\
# The demo fleet: four transformer areas, a few faults, a day in about a minute.
version = 1
seed = {seed}
start = {start}
days = {days}
speed = {speed}
areas = 4
meters_per_area = 25

[devices]
dlt645_share = 0.6
modbus_share = 0.1
mqtt_share = 0.3
meters_per_gateway = 16
meters_per_concentrator = 40
baud = 0
latency_ms = 2.0

[mqtt]
batch_size = 100

[load]
pv_share = 0.15

[injections]
theft = 0.03
slow = 0.03
missing_slots = 0.002
"""


def _say(message: str) -> None:
    sys.stderr.write(f"\n== {message}\n")
    sys.stderr.flush()


def _meterhub() -> str:
    return str(Path(sys.executable).parent / "meterhub")


def run_demo(settings: Any, *, days: int = 1, speed: float = 1440.0, seed: int = 1,
             start: date | None = None, workdir: Path | None = None) -> int:
    """Run the demonstration; returns an exit code.

    The fleet runs one warm-up day before the analysed days, so that the collectors are
    running and have read the first 00:00 freezes when the first analysed day begins.

    Args:
        settings: meterhub settings (provisioned database and broker, or URLs).
        days: simulated days analysed (one warm-up day runs before them).
        speed: simulated seconds per real second.
        seed: the simulation's seed.
        start: first simulated local day (default: 2026-01-01).
        workdir: where the scenario, fleet and truth files go (default: state_dir/demo).
    """
    from meterhub.database import ensure_database
    from meterhub.provision import broker

    start = start or date(2026, 1, 1)
    work = workdir or settings.state_dir / "demo"
    work.mkdir(parents=True, exist_ok=True)
    _say("1/4 TimescaleDB and Mosquitto")
    url = _fresh_demo_database(ensure_database(settings), settings)
    mqtt_url = broker.up(settings) if settings.provisioned_broker else settings.mqtt_url
    sys.stderr.write(f"database {url.split('@')[-1]} (fresh for this demo), broker {mqtt_url}\n")

    scenario = work / "scenario.toml"
    sim_days = days + 1
    scenario.write_text(DEMO_SCENARIO.format(
        seed=seed, start=(start - timedelta(days=1)).isoformat(), days=sim_days, speed=speed))
    fleet = work / "fleet.toml"
    truth = work / "truth.json"
    for f in (fleet, truth):
        f.unlink(missing_ok=True)

    _say(f"2/4 simulated fleet: {sim_days} days (one warm-up) at {speed:g}x "
         f"(a day in {86400 / speed:.0f} s)")
    env = dict(os.environ)
    env["METERHUB_DATABASE_URL"] = url
    if settings.provisioned_broker:
        password = _concentrator_credentials(settings, scenario)
        env["METERHUB_MQTT_URL"] = mqtt_url or ""
        env["METERHUB_MQTT_PASSWORD"] = password
        env.pop("METERHUB_MQTT_USERNAME", None)
    sim = subprocess.Popen(
        [_meterhub(), "simulate", "--scenario", str(scenario), "--fleet", str(fleet),
         "--truth", str(truth)],
        env=env, stdout=subprocess.DEVNULL, stderr=(work / "simulate.log").open("w"),
    )
    collector: subprocess.Popen[bytes] | None = None
    try:
        deadline = time.monotonic() + 60
        while not fleet.exists():
            if sim.poll() is not None or time.monotonic() > deadline:
                sys.stderr.write((work / "simulate.log").read_text()[-2000:])
                return 5
            time.sleep(0.2)

        _say("3/4 fleet load, then collect on the simulated clock")
        child_env = dict(os.environ)
        child_env["METERHUB_DATABASE_URL"] = url
        load = subprocess.run([_meterhub(), "fleet", "load", str(fleet)], env=child_env,
                              check=False)
        if load.returncode != 0:
            return load.returncode
        collector = subprocess.Popen(
            [_meterhub(), "collect", "--fleet", str(fleet)], env=child_env,
            stdout=subprocess.DEVNULL, stderr=(work / "collect.log").open("w"),
        )
        total = sim_days * 86400 / speed + 3600 / speed
        began = time.monotonic()
        shown = ""
        while sim.poll() is None:
            done = min(1.0, (time.monotonic() - began) / total)
            text = f"simulated {done * sim_days:4.1f} of {sim_days} days"
            if text != shown:
                sys.stderr.write("\r" + text)
                sys.stderr.flush()
                shown = text
            time.sleep(1.0)
            if collector.poll() is not None:
                sys.stderr.write("\ncollector stopped early:\n")
                sys.stderr.write((work / "collect.log").read_text()[-3000:])
                return collector.returncode or 1
        sys.stderr.write("\n")
        time.sleep(3.0)  # let the last batches commit
    finally:
        for proc in (collector, sim):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()

    _say("4/4 same-period line loss per area and day, beside the meters' ground truth")
    last = start + timedelta(days=days - 1)
    out = subprocess.run(
        [_meterhub(), "analyze", "lineloss", "--from", start.isoformat(), "--to",
         last.isoformat(), "--json"],
        capture_output=True, text=True, check=False, env=child_env,
    )
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        return out.returncode
    rows = json.loads(out.stdout)["areas"]
    print(_compare(rows, json.loads(truth.read_text()) if truth.exists() else None))
    span = ["--from", start.isoformat(), "--to", last.isoformat()]
    _say("meterhub vee run " + " ".join(span))
    subprocess.run([_meterhub(), "vee", "run", *span], check=False, env=child_env)
    if days >= 7:
        _say("meterhub analyze suspects " + " ".join(span))
        subprocess.run([_meterhub(), "analyze", "suspects", *span], check=False, env=child_env)
    else:
        sys.stderr.write("(the suspect list needs a week or more of 15-minute data per area: "
                         "run 'meterhub demo --days 7' for it)\n")
    _say("done: the fleet, truth and logs are in " + str(work))
    return 0


def _fresh_demo_database(url: str, settings: Any) -> str:
    """A new, migrated database ``meterhub_demo`` beside ``url``'s (the demo's data only)."""
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    from meterhub.database import connect
    from storage import migrate

    with connect(url, settings, autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS meterhub_demo WITH (FORCE)")
        admin.execute("CREATE DATABASE meterhub_demo")
    demo_url = urlunsplit(urlsplit(url)._replace(path="/meterhub_demo"))
    with psycopg.connect(demo_url, autocommit=True) as conn:
        migrate.upgrade(conn)
    return demo_url


def _concentrator_credentials(settings: Any, scenario: Path) -> str:
    """Issue every simulated concentrator a credential (one shared password)."""
    from meterhub.provision import broker
    from meterhub.provision._util import new_secret
    from simulators.scenario import load_scenario
    from simulators.world import World

    world = World(load_scenario(scenario))
    password = new_secret()
    for c in world.concentrators:
        broker.add_client(settings, c["id"], "concentrator", password=password)
    time.sleep(0.3)  # the broker reloads on SIGHUP
    return password


def _compare(rows: list[dict[str, Any]], truth: dict[str, Any] | None) -> str:
    registered: dict[tuple[str, str], dict[str, Any]] = {}
    if truth is not None:
        for area in truth.get("areas", []):
            for day in area.get("days", []):
                registered[(area["id"], day["date"])] = day
    lines = [f"{'area':<6} {'date':<10} {'supply kWh':>11} {'sales kWh':>10} {'rate %':>8} "
             f"{'state':<15} {'truth rate %':>12} {'physical %':>10}"]
    for r in rows:
        t = registered.get((r["area"], r["date"]))
        t_rate = t["registered"]["rate"] if t and t["registered"].get("computable") else None
        p_rate = t["physical"]["rate"] if t else None

        def f(v: float | None, w: int, d: int = 2) -> str:
            return f"{v:>{w}.{d}f}" if v is not None else f"{'-':>{w}}"

        lines.append(f"{r['area']:<6} {r['date']:<10} {f(r['supply_kwh'], 11)} "
                     f"{f(r['sales_kwh'], 10)} {f(r['rate'], 8)} {r['state']:<15} "
                     f"{f(t_rate, 12)} {f(p_rate, 10)}")
    return "\n".join(lines)
