"""The schema the migrations produce, dumped and compared with ``storage/schema.sql``.

``storage/schema.sql`` is the reviewed picture of the database after every migration: a change
to a migration shows up as a diff of that file in review, and a test applies the migrations to
an empty database and compares the dump with it. The dump is made with the server's own
``pg_dump`` (the provisioned root's binary, or ``pg_dump`` on ``PATH`` for a server of the
user's own) and normalised: comments, ``SET`` lines and the session-specific ``\\restrict``
keys and the extensions' own comments are dropped, so two dumps of the same schema compare equal.

``meterhub db schema`` prints the dump; ``meterhub db schema --write`` rewrites the file.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

__all__ = [
    "SCHEMA_FILE",
    "SchemaDumpError",
    "dump",
    "migrated_schema",
    "normalize",
    "pg_dump_command",
]

#: The committed schema, next to the migrations.
SCHEMA_FILE = Path(__file__).with_name("schema.sql")

#: Schemas that belong to the TimescaleDB extension itself (its catalog and chunks).
_EXTENSION_SCHEMAS = ("_timescaledb_*", "timescaledb_*")

_DROPPED_PREFIXES = (
    "--",
    "SET ",
    "SELECT pg_catalog.set_config",
    "\\restrict",
    "\\unrestrict",
    "COMMENT ON EXTENSION",  # the extension's own text (it names the TimescaleDB edition)
)


class SchemaDumpError(Exception):
    """``pg_dump`` is missing or failed."""


def pg_dump_command(settings: object) -> list[str]:
    """The ``pg_dump`` to use: the provisioned root's, or the one on ``PATH``.

    Raises:
        SchemaDumpError: a server of the user's own and no ``pg_dump`` on ``PATH``.
    """
    if getattr(settings, "database_url", None) is None:
        from meterhub.provision import db

        return db.client_binary(settings, "pg_dump")  # type: ignore[arg-type]
    found = shutil.which("pg_dump")
    if found is None:
        raise SchemaDumpError(
            "pg_dump not found on PATH; install the PostgreSQL client of the server's version"
        )
    return [found]


def normalize(text: str) -> str:
    """Drop comments, ``SET`` lines and ``\\restrict`` keys; collapse runs of blank lines."""
    out: list[str] = []
    for line in text.splitlines():
        line = line.rstrip()
        if line.startswith(_DROPPED_PREFIXES):
            continue
        if not line and (not out or not out[-1]):
            continue
        out.append(line)
    while out and not out[-1]:
        out.pop()
    return "\n".join(out) + "\n"


def dump(url: str, command: list[str], *, timeout: float = 120) -> str:
    """Dump the schema of the database at ``url`` (normalised).

    The password travels in the environment, never on the command line.

    Raises:
        SchemaDumpError: ``pg_dump`` failed (its message, without the password).
    """
    parts = urlsplit(url)
    env = dict(os.environ)
    if parts.password:
        env["PGPASSWORD"] = unquote(parts.password)
    args = [
        *command,
        "--schema-only",
        "--no-owner",
        "--no-privileges",
        "--no-tablespaces",
        *(f"--exclude-schema={s}" for s in _EXTENSION_SCHEMAS),
        "-h", parts.hostname or "127.0.0.1",
        "-p", str(parts.port or 5432),
        "-U", unquote(parts.username or "postgres"),
        "-d", unquote(parts.path.lstrip("/")) or "postgres",
    ]  # fmt: skip
    try:
        res = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SchemaDumpError(f"pg_dump could not run: {exc}") from None
    if res.returncode != 0:
        msg = res.stderr.strip().splitlines()
        raise SchemaDumpError(f"pg_dump failed: {msg[-1] if msg else res.returncode}")
    return normalize(res.stdout)


def migrated_schema(server_url: str, command: list[str]) -> str:
    """Apply every migration to a scratch database on the server, dump it, drop it.

    Raises:
        SchemaDumpError: ``pg_dump`` failed.
        storage.migrate.MigrationError: a migration failed.
    """
    import psycopg

    from storage import migrate

    name = f"meterhub_schema_{os.getpid()}_{secrets.token_hex(3)}"
    scratch = urlsplit(server_url)._replace(path="/" + name).geturl()
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with psycopg.connect(scratch, autocommit=True) as conn:
            migrate.upgrade(conn)
        return dump(scratch, command)
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
