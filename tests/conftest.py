"""Fixtures for tests that talk to meterhub's own TimescaleDB and Mosquitto.

The README's test command runs ``meterhub db up`` and ``meterhub broker up`` first; these
fixtures then give each test session a fresh database (created from the running cluster,
migrated, dropped at the end) and the broker's credentials. A missing server is an error, not a
skip: storage, collector, control and API tests must run against the real servers.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def _with_dbname(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + dbname))


@pytest.fixture(scope="session")
def settings():  # type: ignore[no-untyped-def]
    """The settings of this checkout (its own provisioned servers unless URLs are set)."""
    from meterhub.settings import load_settings

    return load_settings()


@pytest.fixture(scope="session")
def server_url(settings) -> str:  # type: ignore[no-untyped-def]
    """URL of the running TimescaleDB (the provisioned one is started if needed)."""
    from meterhub.database import check_timescaledb, connect, database_url

    url = database_url(settings)
    with connect(url, settings, autocommit=True) as conn:
        check_timescaledb(conn, settings)
    return url


@pytest.fixture(scope="session")
def db_url(server_url: str) -> Iterator[str]:
    """A fresh, fully migrated database for this test session, dropped afterwards."""
    import psycopg

    from storage import migrate

    name = f"meterhub_test_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = _with_dbname(server_url, name)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            migrate.upgrade(conn)
        yield url
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def empty_db(server_url: str) -> Iterator[str]:
    """A brand-new empty database (no migrations), dropped after the test."""
    import psycopg

    name = f"meterhub_empty_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_dbname(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass(frozen=True)
class BrokerInfo:
    """The provisioned broker and a collector credential."""

    host: str
    port: int
    collector_user: str
    collector_password: str


@pytest.fixture(scope="session")
def broker(settings) -> BrokerInfo:  # type: ignore[no-untyped-def]
    """The running private Mosquitto (started if needed)."""
    from meterhub.provision import broker as prov

    if settings.provisioned_broker:
        prov.up(settings)
    url, user, password = prov.collector_credentials(settings)
    parts = urlsplit(url)
    assert user and password, "the broker needs collector credentials"
    return BrokerInfo(parts.hostname or "127.0.0.1", parts.port or 1883, user, password)
