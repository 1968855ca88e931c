"""Where the database is, and making sure it is there and up to date.

With no ``METERHUB_DATABASE_URL`` meterhub provisions its own TimescaleDB and keeps it migrated.
With a URL it only connects: it never changes that schema implicitly and says so when migrations
are pending (``meterhub db upgrade`` applies them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from meterhub.settings import Settings


class DatabaseUnavailable(Exception):
    """The database could not be reached or is not usable; the message names the setting."""


class SchemaOutOfDate(Exception):
    """The database behind ``METERHUB_DATABASE_URL`` has pending migrations."""


@dataclass(frozen=True, slots=True)
class DbStatus:
    """What ``meterhub db status`` reports."""

    url: str
    provisioned: bool
    up: bool
    server_version: str | None
    timescaledb_version: str | None
    applied: list[int]
    pending: list[str]
    error: str | None = None


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def _setting_name(settings: Settings) -> str:
    return "METERHUB_DATABASE_URL" if not settings.provisioned_db else "provisioned database"


def connect(url: str, settings: Settings, **kwargs: Any) -> Any:
    """Open a sync psycopg connection, turning failures into :class:`DatabaseUnavailable`."""
    import psycopg

    try:
        return psycopg.connect(url, connect_timeout=5, **kwargs)
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnavailable(
            f"{_setting_name(settings)}: cannot connect to {redact(url)} ({first})"
        ) from exc


def check_timescaledb(conn: Any, settings: Settings) -> str:
    """The available TimescaleDB version, or :class:`DatabaseUnavailable` naming what to install."""
    row = conn.execute(
        "SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    if row is None:
        raise DatabaseUnavailable(
            f"{_setting_name(settings)}: the server has no timescaledb extension; install "
            "TimescaleDB for its PostgreSQL version (Debian: postgresql-NN-timescaledb) and add "
            "shared_preload_libraries = 'timescaledb'"
        )
    return str(row[0])


def database_url(settings: Settings, *, start: bool = True) -> str:
    """The URL to use, starting (and building) the provisioned database if needed."""
    if settings.database_url is not None:
        return settings.database_url
    from meterhub.provision import db

    if start:
        return db.up(settings)
    return db.url(settings)


def ensure_database(settings: Settings) -> str:
    """Make the database usable for a command: started, migrated (provisioned only).

    Returns:
        The database URL.

    Raises:
        DatabaseUnavailable: it cannot be reached or lacks TimescaleDB.
        SchemaOutOfDate: a user-supplied database has pending migrations.
    """
    from storage import migrate

    url = database_url(settings)
    with connect(url, settings, autocommit=True) as conn:
        check_timescaledb(conn, settings)
        if settings.provisioned_db:
            migrate.upgrade(conn)
        else:
            todo = migrate.pending(conn)
            if todo:
                names = ", ".join(m.path.name for m in todo)
                raise SchemaOutOfDate(
                    f"METERHUB_DATABASE_URL: {len(todo)} migration(s) pending ({names}); "
                    "run 'meterhub db upgrade' first"
                )
    return url


def status(settings: Settings) -> DbStatus:
    """Where the database is, whether it is up, its versions and pending migrations."""
    from storage import migrate

    provisioned = settings.provisioned_db
    try:
        url = database_url(settings, start=False)
    except Exception as exc:
        return DbStatus("", provisioned, False, None, None, [], [], error=str(exc))
    if provisioned:
        from meterhub.provision import db

        if db.running_pid(settings) is None:
            return DbStatus(url, True, False, None, None, [], [], error="not running")
    try:
        with connect(url, settings, autocommit=True) as conn:
            server = str(conn.execute("SHOW server_version").fetchone()[0])
            ts_row = conn.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
            ).fetchone()
            if ts_row is None:
                avail = conn.execute(
                    "SELECT default_version FROM pg_available_extensions "
                    "WHERE name = 'timescaledb'"
                ).fetchone()
                ts_version = f"{avail[0]} (available, not created)" if avail else None
            else:
                ts_version = str(ts_row[0])
            done = sorted(migrate.applied(conn))
            todo = [m.path.name for m in migrate.pending(conn)]
    except DatabaseUnavailable as exc:
        return DbStatus(url, provisioned, False, None, None, [], [], error=str(exc))
    return DbStatus(url, provisioned, True, server, ts_version, done, todo)
