"""The ``meterhub`` console script.

Heavy modules (numba, fastapi, psycopg, paho) are imported inside the commands that need
them, so that ``meterhub decode`` and ``meterhub read`` start fast and need no database.
Exit codes follow CONTRACTS.md: 0 ok, 1 partly quarantined, 2 invalid input, 3 abnormal
reply, 4 no answer, 5 unreachable, 64 usage.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    name="meterhub",
    help="meterhub: meter reading, line loss and prepaid relay control.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="The TimescaleDB database: provision, start, stop, migrate.",
                     no_args_is_help=True)
broker_app = typer.Typer(help="The Mosquitto broker: provision, start, stop, credentials.",
                         no_args_is_help=True)
fleet_app = typer.Typer(help="The archive (档案) of areas, meters and devices.",
                        no_args_is_help=True)
import_app = typer.Typer(help="Bulk import of history.", no_args_is_help=True)
quarantine_app = typer.Typer(help="Input that was rejected, and re-running it.",
                             no_args_is_help=True)
analyze_app = typer.Typer(help="Line loss and suspects from the database.", no_args_is_help=True)
app.add_typer(analyze_app, name="analyze")
vee_app = typer.Typer(help="Validation, estimation and editing (VEE) of readings.",
                      no_args_is_help=True)
app.add_typer(vee_app, name="vee")
app.add_typer(db_app, name="db")
app.add_typer(fleet_app, name="fleet")
app.add_typer(import_app, name="import")
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(broker_app, name="broker")

EXIT_OK = 0
EXIT_INVALID_INPUT = 2
EXIT_UNREACHABLE = 5
EXIT_USAGE = 64

_settings_file: Path | None = None


class CliError(Exception):
    """A failure to report as one line on stderr with an exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@app.callback()
def _main_options(
    settings: Annotated[
        Path | None,
        typer.Option("--settings", help="TOML settings file (else METERHUB_* variables).",
                     dir_okay=False),
    ] = None,
) -> None:
    global _settings_file
    _settings_file = settings


def load_settings() -> Any:
    """The validated settings, or a one-line error naming the bad setting (exit 64)."""
    from meterhub.settings import SettingsError, load_settings, set_settings

    try:
        settings = load_settings(_settings_file)
    except SettingsError as exc:
        raise CliError(f"bad setting {exc}", EXIT_USAGE) from None
    set_settings(settings)
    return settings


def _fail(message: str, code: int) -> typer.Exit:
    sys.stderr.write(f"meterhub: error: {message}\n")
    return typer.Exit(code)


@db_app.command("up")
def db_up() -> None:
    """Provision (once) and start the private TimescaleDB, then apply migrations."""
    from meterhub.database import DatabaseUnavailable, SchemaOutOfDate, ensure_database, redact
    from meterhub.provision._util import ProvisionError
    from storage.migrate import MigrationError

    settings = load_settings()
    try:
        url = ensure_database(settings)
    except (DatabaseUnavailable, ProvisionError) as exc:
        raise _fail(str(exc), EXIT_UNREACHABLE) from None
    except SchemaOutOfDate as exc:
        sys.stdout.write(f"up: {redact(settings.database_url or '')}\n")
        raise _fail(str(exc), EXIT_UNREACHABLE) from None
    except MigrationError as exc:
        raise _fail(str(exc), EXIT_UNREACHABLE) from None
    if settings.provisioned_db:
        sys.stdout.write(f"up: {url}\n")
    else:
        sys.stdout.write(f"up: {redact(url)} (METERHUB_DATABASE_URL; nothing provisioned)\n")


@db_app.command("down")
def db_down() -> None:
    """Stop the private TimescaleDB cleanly (nothing to do with METERHUB_DATABASE_URL)."""
    settings = load_settings()
    if not settings.provisioned_db:
        sys.stdout.write("METERHUB_DATABASE_URL is set: meterhub does not manage that server\n")
        return
    from meterhub.provision import db

    stopped = db.down(settings)
    sys.stdout.write("stopped\n" if stopped else "not running\n")


@db_app.command("status")
def db_status(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Where the database is, whether it is up (exit 0 only then), versions, pending migrations."""
    from dataclasses import asdict

    from meterhub.database import status

    settings = load_settings()
    st = status(settings)
    if as_json:
        sys.stdout.write(json.dumps(asdict(st)) + "\n")
    else:
        lines = [
            f"url: {st.url or '-'}",
            f"managed: {'provisioned by meterhub' if st.provisioned else 'METERHUB_DATABASE_URL'}",
            f"up: {'yes' if st.up else 'no'}",
        ]
        if st.up:
            lines += [
                f"postgresql: {st.server_version}",
                f"timescaledb: {st.timescaledb_version or 'not installed'}",
                f"migrations applied: {', '.join(f'{v:04d}' for v in st.applied) or 'none'}",
                f"migrations pending: {', '.join(st.pending) or 'none'}",
            ]
        if st.error:
            lines.append(f"error: {st.error}")
        sys.stdout.write("\n".join(lines) + "\n")
    raise typer.Exit(EXIT_OK if st.up else EXIT_UNREACHABLE)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply pending migrations (each in one transaction); a no-op when up to date."""
    from meterhub.database import (
        DatabaseUnavailable,
        check_timescaledb,
        connect,
        database_url,
    )
    from meterhub.provision._util import ProvisionError
    from storage import migrate

    settings = load_settings()
    try:
        url = database_url(settings)
        with connect(url, settings, autocommit=True) as conn:
            check_timescaledb(conn, settings)
            done = migrate.upgrade(conn)
    except (DatabaseUnavailable, ProvisionError, migrate.MigrationError) as exc:
        raise _fail(str(exc), EXIT_UNREACHABLE) from None
    for mig in done:
        sys.stdout.write(f"applied {mig.path.name}\n")
    if not done:
        sys.stdout.write("up to date\n")


@db_app.command("schema")
def db_schema(
    write: Annotated[
        bool, typer.Option("--write", help="Rewrite storage/schema.sql with the dump.")
    ] = False,
) -> None:
    """Dump the schema every migration produces (on a scratch database) and print it.

    With --write, storage/schema.sql is rewritten; review its diff like any other change.
    """
    from meterhub.database import DatabaseUnavailable, database_url
    from meterhub.provision._util import ProvisionError
    from storage import migrate, schema

    settings = load_settings()
    try:
        text = schema.migrated_schema(database_url(settings), schema.pg_dump_command(settings))
    except (DatabaseUnavailable, ProvisionError, schema.SchemaDumpError) as exc:
        raise _fail(str(exc), EXIT_UNREACHABLE) from None
    except migrate.MigrationError as exc:
        raise _fail(str(exc), EXIT_INVALID_INPUT) from None
    if write:
        schema.SCHEMA_FILE.write_text(text)
        sys.stdout.write(f"wrote {schema.SCHEMA_FILE} ({len(text.splitlines())} lines)\n")
    else:
        sys.stdout.write(text)



def database_for_command() -> tuple[Any, str]:
    """Settings and a usable database URL (provisioned: started and migrated), or exit 5."""
    from meterhub.database import DatabaseUnavailable, SchemaOutOfDate, ensure_database
    from meterhub.provision._util import ProvisionError
    from storage.migrate import MigrationError

    settings = load_settings()
    try:
        return settings, ensure_database(settings)
    except (DatabaseUnavailable, SchemaOutOfDate, ProvisionError, MigrationError) as exc:
        raise _fail(str(exc), EXIT_UNREACHABLE) from None


JsonOpt = Annotated[bool, typer.Option("--json", help="Print exactly one JSON document.")]


@fleet_app.command("load")
def fleet_load(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="Archive TOML, or a CSV of meters.")],
    as_json: JsonOpt = False,
) -> None:
    """Load the archive: areas, meters, gateways, concentrators, customers (keeps history)."""
    from collector.commands import fleet_load as run

    settings, url = database_for_command()
    raise typer.Exit(run(settings, url, file, as_json=as_json))


@import_app.command("readings")
def import_readings(
    file: Annotated[Path, typer.Argument(metavar="FILE.csv")],
    source: Annotated[str | None, typer.Option("--source", help="Source name to record.")] = None,
    interval: Annotated[
        int | None, typer.Option("--interval", min=1, max=1440, help="Interval, minutes.")
    ] = None,
    create_meters: Annotated[
        bool, typer.Option("--create-meters", help="Create meters missing from the archive.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Import reading history from CSV; invalid rows are quarantined (exit 1)."""
    from collector.commands import import_readings as run

    settings, url = database_for_command()
    raise typer.Exit(run(settings, url, file, source=source, interval=interval,
                         create_meters=create_meters, as_json=as_json))


@quarantine_app.command("list")
def quarantine_list(
    status: Annotated[
        str, typer.Option("--status", help="new | replayed | discarded | all")
    ] = "new",
    limit: Annotated[int, typer.Option("--limit", min=1)] = 100,
    as_json: JsonOpt = False,
) -> None:
    """What was rejected and why, newest first."""
    from collector.commands import quarantine_list as run

    _, url = database_for_command()
    raise typer.Exit(run(url, status=None if status == "all" else status, limit=limit,
                         as_json=as_json))


@quarantine_app.command("show")
def quarantine_show(item_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """One rejected input with its raw bytes, as JSON."""
    from collector.commands import quarantine_show as run

    _, url = database_for_command()
    raise typer.Exit(run(url, item_id))


@quarantine_app.command("replay")
def quarantine_replay(
    ids: Annotated[list[int], typer.Argument(metavar="ID...")],
    as_json: JsonOpt = False,
) -> None:
    """Re-run rejected input after fixing its cause (e.g. adding a meter to the archive)."""
    from collector.commands import quarantine_replay as run

    _, url = database_for_command()
    raise typer.Exit(run(url, ids, as_json=as_json))


def _date(value: str, option: str) -> Any:
    from datetime import date

    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CliError(f"{option}: {value!r} is not a date (YYYY-MM-DD)", EXIT_USAGE) from None


@analyze_app.command("lineloss")
def analyze_lineloss(
    date_from: Annotated[str, typer.Option("--from", help="First local date, YYYY-MM-DD.")],
    date_to: Annotated[str, typer.Option("--to", help="Last local date (inclusive).")],
    area: Annotated[str | None, typer.Option("--area", help="One area id.")] = None,
    period: Annotated[str, typer.Option("--period", help="day | month")] = "day",
    as_json: JsonOpt = False,
) -> None:
    """Same-period line loss (同期线损) per area and day or month, with state and coverage."""
    import asyncio

    import psycopg

    from analytics.commands import compute_lineloss, format_lineloss

    if period not in ("day", "month"):
        raise CliError(f"--period: {period!r} is not day or month", EXIT_USAGE)
    d_from, d_to = _date(date_from, "--from"), _date(date_to, "--to")
    if d_to < d_from:
        raise CliError("--to is before --from", EXIT_USAGE)
    settings, url = database_for_command()

    async def run() -> Any:
        async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
            return await compute_lineloss(conn, settings, d_from=d_from, d_to=d_to,
                                          kind=period, area=area)

    report = asyncio.run(run())
    if as_json:
        sys.stdout.write(json.dumps(report.to_dict()) + "\n")
    else:
        sys.stdout.write(format_lineloss(report) + "\n")


FromOpt = Annotated[str, typer.Option("--from", help="First local date, YYYY-MM-DD.")]
ToOpt = Annotated[str, typer.Option("--to", help="Last local date (inclusive).")]


@analyze_app.command("suspects")
def analyze_suspects(
    date_from: FromOpt,
    date_to: ToOpt,
    area: Annotated[str | None, typer.Option("--area", help="One area id.")] = None,
    show_all: Annotated[bool, typer.Option("--all", help="Every meter, ranked.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Meters and customers that explain the loss: errors, theft, wrong area, PV, CT ratio."""
    from analytics.suspects_db import analyze_suspects_command

    settings, url = database_for_command()
    raise typer.Exit(analyze_suspects_command(settings, url, date_from=date_from,
                                              date_to=date_to, area=area, show_all=show_all,
                                              as_json=as_json))


@vee_app.command("run")
def vee_run(
    date_from: FromOpt,
    date_to: ToOpt,
    meter: Annotated[str | None, typer.Option("--meter", help="One meter number.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Validate the readings, flag them by rule and estimate gaps (idempotent)."""
    from analytics.vee_db import vee_run_command

    settings, url = database_for_command()
    raise typer.Exit(vee_run_command(settings, url, date_from=date_from, date_to=date_to,
                                     meter=meter, as_json=as_json))


@vee_app.command("report")
def vee_report(
    meter: Annotated[str | None, typer.Option("--meter", help="One meter number.")] = None,
    date_from: Annotated[str | None, typer.Option("--from", help="First local date.")] = None,
    date_to: Annotated[str | None, typer.Option("--to", help="Last local date.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Completeness and flags per meter: gaps, duplicates, estimates, counts per rule."""
    from analytics.vee_db import vee_report_command

    settings, url = database_for_command()
    raise typer.Exit(vee_report_command(settings, url, meter=meter, date_from=date_from,
                                        date_to=date_to, as_json=as_json))


@vee_app.command("edit")
def vee_edit(
    meter: Annotated[str, typer.Option("--meter", help="Meter number.")],
    quantity: Annotated[str, typer.Option("--quantity", help="e.g. interval_kwh.")],
    ts: Annotated[str, typer.Option("--ts", help="Slot timestamp, ISO 8601 with offset.")],
    value: Annotated[float, typer.Option("--value", help="The edited value.")],
    reason: Annotated[str, typer.Option("--reason", help="Why.")],
    by: Annotated[str, typer.Option("--by", help="Who.")],
    note: Annotated[str | None, typer.Option("--note", help="Free text.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Record an operator's edit (the actual reading is kept beside it; audited)."""
    from analytics.vee_db import vee_edit_command

    settings, url = database_for_command()
    raise typer.Exit(vee_edit_command(settings, url, meter=meter, quantity=quantity, ts=ts,
                                      value=value, reason=reason, by=by, note=note,
                                      as_json=as_json))


@vee_app.command("approve")
def vee_approve(
    meter: Annotated[str, typer.Option("--meter", help="Meter number.")],
    ts: Annotated[str, typer.Option("--ts", help="Slot timestamp, ISO 8601 with offset.")],
    by: Annotated[str, typer.Option("--by", help="Who.")],
    reject: Annotated[bool, typer.Option("--reject", help="Reject instead.")] = False,
    quantity: Annotated[str, typer.Option("--quantity")] = "interval_kwh",
    as_json: JsonOpt = False,
) -> None:
    """Approve or reject an estimate held back by the area-balance check (audited)."""
    from analytics.vee_db import vee_approve_command

    settings, url = database_for_command()
    raise typer.Exit(vee_approve_command(settings, url, meter=meter, ts=ts, by=by,
                                         reject=reject, quantity=quantity, as_json=as_json))


@vee_app.command("screen")
def vee_screen(
    date_from: FromOpt,
    date_to: ToOpt,
    meter: Annotated[str | None, typer.Option("--meter", help="One meter number.")] = None,
    cycle: Annotated[str, typer.Option("--cycle", help="auto | day | month")] = "auto",
    show_all: Annotated[bool, typer.Option("--all", help="Every read.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Screen manual reads for 估抄 / 漏抄 / 错抄, per read and per reader, with evidence."""
    from analytics.screening_db import vee_screen_command

    settings, url = database_for_command()
    raise typer.Exit(vee_screen_command(settings, url, date_from=date_from, date_to=date_to,
                                        meter=meter, cycle=cycle, show_all=show_all,
                                        as_json=as_json))


@broker_app.command("up")
def broker_up() -> None:
    """Configure (once) and start the private Mosquitto (passwords, ACLs, persistence)."""
    from meterhub.provision import broker
    from meterhub.provision._util import ProvisionError

    settings = load_settings()
    if not settings.provisioned_broker:
        sys.stdout.write("METERHUB_MQTT_URL is set: meterhub does not manage that broker\n")
        return
    try:
        sys.stdout.write(f"up: {broker.up(settings)}\n")
    except ProvisionError as exc:
        raise _fail(str(exc), EXIT_UNREACHABLE) from None


@broker_app.command("down")
def broker_down() -> None:
    """Stop the private Mosquitto gracefully (its queue is saved)."""
    from meterhub.provision import broker

    settings = load_settings()
    if not settings.provisioned_broker:
        sys.stdout.write("METERHUB_MQTT_URL is set: meterhub does not manage that broker\n")
        return
    sys.stdout.write("stopped\n" if broker.down(settings) else "not running\n")


@broker_app.command("status")
def broker_status() -> None:
    """The broker's mqtt:// URL and whether it is up (exit 0 only then)."""
    from meterhub.provision import broker
    from meterhub.provision._util import ProvisionError, port_accepts

    settings = load_settings()
    try:
        where = broker.url(settings)
    except ProvisionError as exc:
        sys.stdout.write(f"url: -\nup: no\nerror: {exc}\n")
        raise typer.Exit(EXIT_UNREACHABLE) from None
    from urllib.parse import urlsplit

    parts = urlsplit(where)
    if settings.provisioned_broker:
        is_up = broker.running_pid(settings) is not None
    else:
        is_up = port_accepts(parts.port or 1883, parts.hostname or "127.0.0.1", timeout=3)
    sys.stdout.write(f"url: {where}\nup: {'yes' if is_up else 'no'}\n")
    raise typer.Exit(EXIT_OK if is_up else EXIT_UNREACHABLE)


@broker_app.command("add-client")
def broker_add_client(
    client_id: Annotated[str, typer.Argument(metavar="ID", help="Concentrator or collector id.")],
    role: Annotated[str, typer.Option("--role", help="concentrator | collector")] = "concentrator",
) -> None:
    """Issue credentials (printed as JSON) and reload the broker's passwords and ACLs."""
    from meterhub.provision import broker
    from meterhub.provision._util import ProvisionError

    settings = load_settings()
    if not settings.provisioned_broker:
        raise _fail("METERHUB_MQTT_URL is set: issue credentials on that broker", EXIT_USAGE)
    try:
        client = broker.add_client(settings, client_id, role)
        where = broker.url(settings) if broker.port(settings) else None
    except ProvisionError as exc:
        raise _fail(str(exc), EXIT_USAGE) from None
    sys.stdout.write(json.dumps({"id": client.id, "role": client.role, "username": client.id,
                                 "password": client.password, "url": where}) + "\n")


@app.command()
def decode(
    hexdata: Annotated[list[str], typer.Argument(metavar="HEX...", help="Frame bytes as hex.")],
    protocol: Annotated[
        str, typer.Option("--protocol", help="auto | dlt645-2007 | dlt645-1997")
    ] = "auto",
) -> None:
    """Explain a DL/T 645 frame pasted from a log; always prints one JSON object."""
    from protocols.explain import explain

    obj, code = explain(" ".join(hexdata), protocol=protocol)
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    raise typer.Exit(code)


@app.command()
def read(
    gateway: Annotated[str, typer.Option("--gateway", help="tcp://HOST:PORT of the gateway.")],
    address: Annotated[str, typer.Option("--address", help="12-digit meter address.")],
    di: Annotated[str, typer.Option("--di", help="Data identifier, e.g. 00010000 or 9010.")],
    protocol: Annotated[
        str, typer.Option("--protocol", help="dlt645-2007 | dlt645-1997")
    ] = "dlt645-2007",
    as_json: Annotated[bool, typer.Option("--json", help="Print the decode object.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait.")] = 5.0,
) -> None:
    """One on-demand read (召测) of one meter; needs no database or settings."""
    from collector.read_command import read_command

    raise typer.Exit(read_command(gateway, address, di, protocol, as_json, timeout))


@app.command()
def collect(
    fleet: Annotated[
        Path | None,
        typer.Option("--fleet", help="Fleet file whose [clock] the schedules follow."),
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="One polling cycle, then exit.")] = False,
    check: Annotated[
        bool, typer.Option("--check", help="Exit 0 only if a running collector's heartbeat is "
                           "fresh (for health checks).")
    ] = False,
    instance: Annotated[
        str | None,
        typer.Option("--instance", help="This process's name among the MQTT collectors (client "
                     "id meterhub-collector-NAME); default METERHUB_COLLECTOR_INSTANCE or 1."),
    ] = None,
) -> None:
    """Run the collectors (DL/T 645, Modbus, MQTT) for the archive in the database."""
    if check:
        from collector.mqtt import heartbeat_age

        settings = load_settings()
        beats = sorted((settings.state_dir / "collector").glob("*.json"))
        ages = {p.stem: heartbeat_age(p) for p in beats}
        for name, age in ages.items():
            sys.stdout.write(f"{name}: {'no heartbeat' if age is None else f'{age:.0f} s ago'}\n")
        fresh = [a for a in ages.values() if a is not None and a < 30.0]
        if not fresh:
            raise _fail("no collector heartbeat in the last 30 s", 1)
        raise typer.Exit(EXIT_OK)
    from collector.poller import CollectorConfig
    from collector.service import collect_command

    settings, url = database_for_command()
    if instance is not None:
        from collector.mqtt import check_instance

        try:
            settings = settings.model_copy(update={"collector_instance": check_instance(instance)})
        except ValueError as exc:
            raise CliError(str(exc), EXIT_USAGE) from None
    try:
        config = CollectorConfig.from_mapping(settings.collector)
    except (ValueError, TypeError) as exc:
        raise CliError(f"bad setting collector: {exc}", EXIT_USAGE) from None
    if settings.provisioned_broker:
        from meterhub.provision import broker
        from meterhub.provision._util import ProvisionError

        try:
            broker.up(settings)
        except ProvisionError as exc:
            raise _fail(str(exc), EXIT_UNREACHABLE) from None
    raise typer.Exit(collect_command(settings, url, fleet=fleet, once=once, config=config))


@app.command()
def simulate(
    scenario: Annotated[Path, typer.Option("--scenario", help="Scenario TOML file.")],
    truth: Annotated[Path | None, typer.Option("--truth", help="Write ground truth JSON.")] = None,
    fleet: Annotated[Path | None, typer.Option("--fleet", help="Write the fleet file.")] = None,
    forever: Annotated[bool, typer.Option("--forever", help="Keep running.")] = False,
) -> None:
    """Run a simulated fleet of meters, gateways and concentrators."""
    from simulators.runner import simulate_command

    raise typer.Exit(simulate_command(scenario=scenario, truth=truth, fleet=fleet, forever=forever))


@app.command()
def demo(
    days: Annotated[
        int, typer.Option("--days", min=1, max=60, help="Days analysed (after a warm-up day).")
    ] = 1,
    speed: Annotated[
        float, typer.Option("--speed", help="Simulated seconds per real second.")
    ] = 1440.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the simulated fleet.")] = 1,
) -> None:
    """The end-to-end demonstration on a simulated fleet with known ground truth."""
    from meterhub.demo import run_demo

    raise typer.Exit(run_demo(load_settings(), days=days, speed=speed, seed=seed))


def main() -> None:
    """Entry point of the console script: maps click's usage errors to exit code 64."""
    try:  # typer >= 0.29 vendors click
        from typer._click import exceptions as cx
    except ImportError:  # pragma: no cover
        from click import exceptions as cx  # type: ignore[no-redef]

    try:
        rv = app(standalone_mode=False)
    except CliError as exc:
        sys.stderr.write(f"meterhub: error: {exc}\n")
        sys.exit(exc.code)
    except cx.UsageError as exc:
        exc.show()
        sys.exit(64)
    except (typer.Abort, KeyboardInterrupt):
        sys.stderr.write("aborted\n")
        sys.exit(130)
    except cx.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    sys.exit(rv if isinstance(rv, int) else 0)
