"""Migrations applied to an empty database give the documented schema."""

from __future__ import annotations

import difflib
import shutil
from pathlib import Path

import psycopg
import pytest

from storage import migrate, schema

pytestmark = pytest.mark.db

HYPERTABLES = {"register_reading", "interval_reading", "reading_revision", "meter_event"}
TABLES = {
    "area", "gateway", "concentrator", "customer", "account", "tariff", "meter", "meter_area",
    "meter_multiplier", "register_reading", "interval_reading", "reading_conflict",
    "reading_revision", "ingest_batch", "meter_event", "quarantine", "payment", "ledger",
    "notice", "control_command", "control_command_transition", "audit_log", "quantity",
    "schema_migration",
}


def test_all_migrations_apply_to_an_empty_database(empty_db: str) -> None:
    with psycopg.connect(empty_db, autocommit=True) as conn:
        done = migrate.upgrade(conn)
        assert [m.version for m in done] == [m.version for m in migrate.available()]
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            ).fetchall()
        }
        assert tables >= TABLES
        hyper = {
            r[0]
            for r in conn.execute(
                "SELECT hypertable_name FROM timescaledb_information.hypertables"
            ).fetchall()
        }
        assert hyper == HYPERTABLES
        # re-running is a no-op
        assert migrate.upgrade(conn) == []
        assert migrate.pending(conn) == []
        recorded = conn.execute("SELECT count(*) FROM schema_migration").fetchone()[0]
        assert recorded == len(migrate.available())


def test_an_edited_migration_is_refused(empty_db: str, tmp_path: Path) -> None:
    for mig in migrate.available():
        shutil.copy(mig.path, tmp_path / mig.path.name)
    with psycopg.connect(empty_db, autocommit=True) as conn:
        migrate.upgrade(conn, tmp_path)
        first = sorted(tmp_path.glob("*.sql"))[0]
        first.write_text(first.read_text() + "\n-- edited\n")
        with pytest.raises(migrate.MigrationError, match="edited after it was applied"):
            migrate.pending(conn, tmp_path)


def test_a_failing_migration_leaves_no_trace(empty_db: str, tmp_path: Path) -> None:
    for mig in migrate.available():
        shutil.copy(mig.path, tmp_path / mig.path.name)
    (tmp_path / "9999_broken.sql").write_text(
        "CREATE TABLE half_done (id int);\nSELECT no_such_function();\n"
    )
    with psycopg.connect(empty_db, autocommit=True) as conn:
        with pytest.raises(migrate.MigrationError, match=r"9999_broken\.sql failed"):
            migrate.upgrade(conn, tmp_path)
        assert conn.execute("SELECT to_regclass('half_done')").fetchone()[0] is None
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migration")]
        assert 9999 not in versions
        assert len(versions) == len(migrate.available())


def test_badly_named_migration_file(tmp_path: Path) -> None:
    (tmp_path / "1_first.sql").write_text("SELECT 1;")
    with pytest.raises(migrate.MigrationError, match=r"NNNN_slug\.sql"):
        migrate.available(tmp_path)


def _meter(conn: psycopg.Connection, number: str) -> int:
    row = conn.execute(
        "INSERT INTO meter (number, protocol) VALUES (%s, 'dlt645-2007') RETURNING id", (number,)
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_best_value_prefers_edited_then_actual_then_substituted_then_estimated(
    db_url: str,
) -> None:
    with psycopg.connect(db_url) as conn:
        m = _meter(conn, "990000000001")
        ts = "2026-01-01T00:15:00+08:00"

        def best() -> tuple[float, str]:
            row = conn.execute(
                "SELECT value, origin FROM reading_best WHERE meter_id = %s AND ts = %s",
                (m, ts),
            ).fetchone()
            assert row is not None
            return float(row[0]), str(row[1])

        conn.execute(
            "INSERT INTO reading_revision (meter_id, quantity_id, ts, origin, version, value, "
            "method, reason, created_by) VALUES (%s, 20, %s, 'estimated', 1, 0.5, 'linear', "
            "'comms_fault', 'vee')",
            (m, ts),
        )
        assert best() == (0.5, "estimated")
        conn.execute(
            "INSERT INTO reading_revision (meter_id, quantity_id, ts, origin, version, value, "
            "method, reason, created_by) VALUES (%s, 20, %s, 'estimated', 2, 0.6, 'like_day', "
            "'comms_fault', 'vee')",
            (m, ts),
        )
        assert best() == (0.6, "estimated")
        conn.execute(
            "INSERT INTO reading_revision (meter_id, quantity_id, ts, origin, value, created_by) "
            "VALUES (%s, 20, %s, 'substituted', 0.7, 'ops')",
            (m, ts),
        )
        assert best() == (0.7, "substituted")
        conn.execute(
            "INSERT INTO interval_reading (meter_id, quantity_id, ts, value, interval_min, source) "
            "VALUES (%s, 20, %s, 0.8, 15, 'test')",
            (m, ts),
        )
        assert best() == (0.8, "actual")
        conn.execute(
            "INSERT INTO reading_revision (meter_id, quantity_id, ts, origin, value, created_by, "
            "note) VALUES (%s, 20, %s, 'edited', 0.9, 'clerk', 'read from the meter face')",
            (m, ts),
        )
        assert best() == (0.9, "edited")
        # an actual is never overwritten: it is still there beside the edit
        raw = conn.execute(
            "SELECT value FROM interval_reading WHERE meter_id = %s AND ts = %s", (m, ts)
        ).fetchone()
        assert raw is not None and raw[0] == 0.8
        conn.rollback()


def test_actual_key_is_unique(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        m = _meter(conn, "990000000002")
        sql = (
            "INSERT INTO register_reading (meter_id, quantity_id, ts, value, source) "
            "VALUES (%s, 1, '2026-01-01T00:00:00+08:00', %s, 'test')"
        )
        conn.execute(sql, (m, 10.0))
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(sql, (m, 10.5))
        conn.rollback()


def test_ledger_and_audit_log_are_append_only(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute("INSERT INTO customer (id) VALUES ('C-APPEND')")
        conn.execute("INSERT INTO account (id, customer_id) VALUES ('A-APPEND', 'C-APPEND')")
        conn.execute(
            "INSERT INTO ledger (account_id, ts, kind, amount, balance_after) "
            "VALUES ('A-APPEND', now(), 'payment', 50, 50)"
        )
        conn.execute(
            "INSERT INTO audit_log (actor, action, subject_type, subject_id) "
            "VALUES ('ops', 'test', 'account', 'A-APPEND')"
        )
        for stmt in (
            "UPDATE ledger SET amount = 5000 WHERE account_id = 'A-APPEND'",
            "DELETE FROM ledger WHERE account_id = 'A-APPEND'",
            "UPDATE audit_log SET actor = 'someone else'",
            "DELETE FROM audit_log",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
                conn.execute(stmt)
        conn.rollback()


def test_one_inflight_command_per_meter(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        m = _meter(conn, "990000000003")
        sql = (
            "INSERT INTO control_command (idempotency_key, meter_id, action, state, reason, "
            "requested_by) VALUES (gen_random_uuid(), %s, %s, %s, 'test', 'test')"
        )
        conn.execute(sql, (m, "trip", "confirmed"))
        conn.execute(sql, (m, "close", "pending"))
        with pytest.raises(psycopg.errors.UniqueViolation) as err, conn.transaction():
            conn.execute(sql, (m, "close", "retry_wait"))
        assert err.value.diag.constraint_name == "control_command_one_inflight"
        conn.rollback()


def test_area_history_may_not_overlap(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        m = _meter(conn, "990000000004")
        conn.execute("INSERT INTO area (id) VALUES ('TA1'), ('TA2')")
        conn.execute(
            "INSERT INTO meter_area (meter_id, area_id, valid_from, valid_to) VALUES "
            "(%s, 'TA1', '2024-01-01+08', '2025-01-01+08'), (%s, 'TA2', '2025-01-01+08', NULL)",
            (m, m),
        )
        with pytest.raises(psycopg.errors.ExclusionViolation), conn.transaction():
            conn.execute(
                "INSERT INTO meter_area (meter_id, area_id, valid_from) "
                "VALUES (%s, 'TA1', '2024-06-01+08')",
                (m,),
            )
        conn.rollback()


def test_migrations_give_the_committed_schema(empty_db: str, settings) -> None:  # type: ignore[no-untyped-def]
    """R13: every migration applied to an empty database dumps exactly as storage/schema.sql."""
    with psycopg.connect(empty_db, autocommit=True) as conn:
        migrate.upgrade(conn)
    dumped = schema.dump(empty_db, schema.pg_dump_command(settings))
    committed = schema.SCHEMA_FILE.read_text()
    diff = "".join(
        difflib.unified_diff(
            committed.splitlines(keepends=True), dumped.splitlines(keepends=True),
            "storage/schema.sql", "migrations applied", n=1,
        )
    )  # fmt: skip
    assert not diff, "schema drift; review and run `meterhub db schema --write`:\n" + diff
    assert "CREATE TABLE public.register_reading" in dumped


def test_schema_normalisation_drops_session_noise() -> None:
    text = (
        "--\n-- PostgreSQL database dump\n--\n\\restrict AbC\nSET statement_timeout = 0;\n"
        "SELECT pg_catalog.set_config('search_path', '', false);\n\n\n"
        "CREATE TABLE public.t (\n    id integer\n);\n\n\n\\unrestrict AbC\n"
    )
    assert schema.normalize(text) == "CREATE TABLE public.t (\n    id integer\n);\n"
