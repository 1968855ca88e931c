"""Versioned, forward-only SQL migrations.

Files are ``storage/migrations/NNNN_<slug>.sql``. Each is applied in one transaction and recorded
in ``schema_migration`` with its checksum; re-running is a no-op, and an applied file that was
edited afterwards is an error (a new migration is the only way forward). Concurrent upgrades are
serialised with an advisory lock.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x6D657465  # "mete"


class MigrationError(Exception):
    """The migrations on disk and in the database disagree, or one failed."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file."""

    version: int
    name: str
    path: Path

    @property
    def sql(self) -> str:
        """The file's SQL."""
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        """SHA-256 of the file."""
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def available(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations on disk, in order.

    Raises:
        MigrationError: a file name does not follow ``NNNN_slug.sql`` or versions repeat.
    """
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        m = _NAME.match(path.name)
        if m is None:
            raise MigrationError(f"{path.name}: migration files are named NNNN_slug.sql")
        found.append(Migration(int(m.group(1)), m.group(2), path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError("two migration files share a version number")
    return found


_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migration (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


def applied(conn: Any) -> dict[int, str]:
    """Version → checksum of the migrations applied to ``conn``'s database."""
    exists = conn.execute("SELECT to_regclass('schema_migration') IS NOT NULL").fetchone()[0]
    if not exists:
        return {}
    rows = conn.execute("SELECT version, checksum FROM schema_migration").fetchall()
    return {int(v): str(c) for v, c in rows}


def pending(conn: Any, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Migrations on disk not yet applied.

    Raises:
        MigrationError: an applied migration was changed or is missing on disk.
    """
    done = applied(conn)
    on_disk = {m.version: m for m in available(directory)}
    for version, checksum in done.items():
        mig = on_disk.get(version)
        if mig is None:
            raise MigrationError(
                f"the database has migration {version:04d}, which this meterhub does not know "
                "(is this meterhub older than the database?)"
            )
        if mig.checksum != checksum:
            raise MigrationError(f"{mig.path.name} was edited after it was applied")
    return [m for v, m in sorted(on_disk.items()) if v not in done]


def upgrade(conn: Any, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Apply pending migrations, each in its own transaction.

    Args:
        conn: a psycopg (sync) connection in autocommit mode.
        directory: where the migration files are.

    Returns:
        The migrations applied now (empty when up to date).

    Raises:
        MigrationError: a migration failed; earlier ones stay applied.
    """
    conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
    try:
        conn.execute(_CREATE_TABLE)
        done: list[Migration] = []
        for mig in pending(conn, directory):
            try:
                with conn.transaction():
                    conn.execute(mig.sql)
                    conn.execute(
                        "INSERT INTO schema_migration (version, name, checksum) "
                        "VALUES (%s, %s, %s)",
                        (mig.version, mig.name, mig.checksum),
                    )
            except Exception as exc:
                raise MigrationError(f"{mig.path.name} failed: {exc}") from exc
            done.append(mig)
        return done
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
