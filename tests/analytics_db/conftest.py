"""Fresh databases for the analytics acceptance tests (one per data set: the simulated worlds
reuse meter numbers and area ids), and settings that point at them."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from storage import migrate


def _with_dbname(url: str, dbname: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + dbname))


@pytest.fixture(scope="module")
def new_db(server_url: str) -> Iterator[Callable[[], str]]:
    """A factory of fresh, fully migrated databases, dropped at the end of the module."""
    made: list[str] = []

    def make() -> str:
        name = f"meterhub_adb_{os.getpid()}_{secrets.token_hex(3)}"
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        url = _with_dbname(server_url, name)
        with psycopg.connect(url, autocommit=True) as conn:
            migrate.upgrade(conn)
        return url

    yield make
    with psycopg.connect(server_url, autocommit=True) as admin:
        for name in made:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def settings_for(url: str, **extra: str) -> Any:
    """meterhub settings for a database URL (the process environment is not read)."""
    from meterhub.settings import load_settings

    env = {"METERHUB_DATABASE_URL": url}
    env.update({f"METERHUB_{k.upper()}": v for k, v in extra.items()})
    return load_settings(environ=env)
