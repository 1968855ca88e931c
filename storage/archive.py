"""Writing the archive (档案) into the database, keeping history.

``load_archive`` upserts areas, gateways, concentrators, customers, accounts and meters. A meter
that moved to another area gets its current ``meter_area`` row closed and a new one opened at
the load instant; changed CT/PT multipliers add a ``meter_multiplier`` row; a meter's readings
of its other energy registers at installation and removal (``start_readings`` /
``end_readings``) are kept in ``meter_exchange_reading``; every created or changed record is
written to the audit log. The caller owns the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from collector.archive import Archive, Meter
from storage.readings import QUANTITY_IDS


@dataclass(slots=True)
class LoadReport:
    """Counts of what a load created and changed."""

    created: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    unchanged: dict[str, int] = field(default_factory=dict)

    def bump(self, what: str, kind: str) -> None:
        """Count one ``kind`` (created/updated/unchanged) of ``what``."""
        target = getattr(self, kind)
        target[what] = target.get(what, 0) + 1

    def as_json(self) -> dict[str, Any]:
        """The ``--json`` document."""
        return {"created": self.created, "updated": self.updated, "unchanged": self.unchanged}


async def _audit(
    conn: psycopg.AsyncConnection[Any], actor: str, action: str, kind: str, ident: str,
    detail: dict[str, Any] | None,
) -> None:
    await conn.execute(
        "INSERT INTO audit_log (actor, action, subject_type, subject_id, detail) "
        "VALUES (%s, %s, %s, %s, %s)",
        (actor, action, kind, ident, Jsonb(detail) if detail else None),
    )


async def _upsert(
    conn: psycopg.AsyncConnection[Any], report: LoadReport, actor: str, table: str,
    ident: str, values: dict[str, Any],
) -> None:
    cols = list(values)
    cur = await conn.execute(
        f"SELECT {', '.join(cols)} FROM {table} WHERE id = %s", (ident,)
    )
    row = await cur.fetchone()
    if row is None:
        placeholders = ", ".join(["%s"] * (len(cols) + 1))
        await conn.execute(
            f"INSERT INTO {table} (id, {', '.join(cols)}) VALUES ({placeholders})",
            (ident, *values.values()),
        )
        report.bump(table, "created")
        await _audit(conn, actor, "created", table, ident, _jsonable(values))
        return
    old = dict(zip(cols, row, strict=True))
    changed = {k: v for k, v in values.items() if old[k] != v}
    if not changed:
        report.bump(table, "unchanged")
        return
    sets = ", ".join(f"{k} = %s" for k in changed)
    await conn.execute(
        f"UPDATE {table} SET {sets}, updated_at = now() WHERE id = %s",
        (*changed.values(), ident),
    )
    report.bump(table, "updated")
    await _audit(conn, actor, "updated", table, ident,
                 {k: {"old": _jsonable1(old[k]), "new": _jsonable1(v)} for k, v in changed.items()})


def _jsonable1(v: Any) -> Any:
    return v.isoformat() if isinstance(v, datetime) else v


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: _jsonable1(v) for k, v in d.items()}


_METER_COLS = (
    "role", "protocol", "model", "interval_min", "schedule", "bidirectional", "ct", "pt",
    "gateway_id", "unit_id", "concentrator_id", "installed_at", "start_reading", "removed_at",
    "end_reading", "customer_id", "account_id",
)


def _meter_values(m: Meter) -> dict[str, Any]:
    return {
        "role": m.role, "protocol": m.protocol, "model": m.model, "interval_min": m.interval,
        "schedule": m.schedule, "bidirectional": m.bidirectional, "ct": m.ct, "pt": m.pt,
        "gateway_id": m.gateway, "unit_id": m.unit, "concentrator_id": m.concentrator,
        "installed_at": m.installed, "start_reading": m.start_reading, "removed_at": m.removed,
        "end_reading": m.end_reading, "customer_id": m.customer, "account_id": m.account,
    }


_EVENTS = (("installed", "start_readings"), ("removed", "end_readings"))


def _exchange_readings(m: Meter) -> dict[str, dict[str, float]]:
    """``{"start_readings": {quantity: value}, "end_readings": {…}}`` of the archive entry."""
    return {"start_readings": dict(sorted(m.start_readings.items())),
            "end_readings": dict(sorted(m.end_readings.items()))}


async def exchange_readings(
    conn: psycopg.AsyncConnection[Any], meter_id: int
) -> dict[str, dict[str, float]]:
    """The stored installation and removal readings of one meter, as in the archive file."""
    cur = await conn.execute(
        "SELECT e.event, q.name, e.value FROM meter_exchange_reading e "
        "JOIN quantity q ON q.id = e.quantity_id WHERE e.meter_id = %s ORDER BY q.name",
        (meter_id,),
    )
    out: dict[str, dict[str, float]] = {"start_readings": {}, "end_readings": {}}
    keys = dict(_EVENTS)
    for event, name, value in await cur.fetchall():
        out[keys[event]][name] = float(value)
    return out


async def _write_exchange_readings(
    conn: psycopg.AsyncConnection[Any], meter_id: int, readings: dict[str, dict[str, float]]
) -> None:
    await conn.execute("DELETE FROM meter_exchange_reading WHERE meter_id = %s", (meter_id,))
    rows = [(meter_id, event, QUANTITY_IDS[q], v)
            for event, key in _EVENTS for q, v in readings[key].items()]
    if rows:
        async with conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO meter_exchange_reading (meter_id, event, quantity_id, value) "
                "VALUES (%s, %s, %s, %s)",
                rows,
            )


async def load_archive(
    conn: psycopg.AsyncConnection[Any], archive: Archive, *, actor: str, now: datetime
) -> LoadReport:
    """Upsert ``archive`` into the database, keeping history. The caller owns the transaction."""
    report = LoadReport()
    for a in archive.area:
        lo, hi = a.loss_band if a.loss_band else (None, None)
        await _upsert(conn, report, actor, "area", a.id, {
            "name": a.name, "loss_band_lo": lo, "loss_band_hi": hi,
            "coverage_min": a.coverage_min, "estimated_max": a.estimated_max,
            "low_energy_kwh": a.low_energy_kwh,
        })
    area_ids = {a.id for a in archive.area}
    for m in archive.meter:  # areas named by meters but not listed (CSV archives)
        for area in [m.area, *(h[0] for h in m.area_history)]:
            if area is not None and area not in area_ids:
                await conn.execute(
                    "INSERT INTO area (id) VALUES (%s) ON CONFLICT (id) DO NOTHING", (area,)
                )
                area_ids.add(area)
    for g in archive.gateway:
        await _upsert(conn, report, actor, "gateway", g.id,
                      {"url": g.url, "mode": g.mode, "model": g.model})
    for c in archive.concentrator:
        await _upsert(conn, report, actor, "concentrator", c.id,
                      {"broker": c.broker, "username": c.username,
                       "password_ref": c.password_ref})
    for m in archive.meter:
        if m.customer:
            await conn.execute(
                "INSERT INTO customer (id) VALUES (%s) ON CONFLICT (id) DO NOTHING", (m.customer,)
            )
        if m.account:
            await conn.execute(
                "INSERT INTO account (id, customer_id) VALUES (%s, %s) "
                "ON CONFLICT (id) DO NOTHING",
                (m.account, m.customer or m.account),
            )
    for m in archive.meter:
        await _load_meter(conn, report, actor, m, now)
    return report


async def _load_meter(
    conn: psycopg.AsyncConnection[Any], report: LoadReport, actor: str, m: Meter, now: datetime
) -> None:
    values = _meter_values(m)
    if m.account and not m.customer:
        values["customer_id"] = m.account
        await conn.execute(
            "INSERT INTO customer (id) VALUES (%s) ON CONFLICT (id) DO NOTHING", (m.account,)
        )
    cur = await conn.execute(
        f"SELECT id, {', '.join(_METER_COLS)} FROM meter WHERE number = %s",
        (m.number,),
    )
    row = await cur.fetchone()
    if row is None:
        cols = ", ".join(_METER_COLS)
        ph = ", ".join(["%s"] * (len(_METER_COLS) + 1))
        cur = await conn.execute(
            f"INSERT INTO meter (number, {cols}) VALUES ({ph}) RETURNING id",
            (m.number, *values.values()),
        )
        new = await cur.fetchone()
        assert new is not None
        meter_id = int(new[0])
        report.bump("meter", "created")
        readings = _exchange_readings(m)
        await _write_exchange_readings(conn, meter_id, readings)
        await _audit(conn, actor, "created", "meter", m.number,
                     {**_jsonable(values), **{k: v for k, v in readings.items() if v}})
        await conn.execute(
            "INSERT INTO meter_multiplier (meter_id, valid_from, ct, pt) VALUES (%s, %s, %s, %s)",
            (meter_id, m.installed or datetime.min.replace(tzinfo=UTC), m.ct, m.pt),
        )
        last_end: datetime | None = None
        for area, start, end in sorted(m.area_history, key=lambda h: h[1]):
            await conn.execute(
                "INSERT INTO meter_area (meter_id, area_id, valid_from, valid_to) "
                "VALUES (%s, %s, %s, %s)",
                (meter_id, area, start, end),
            )
            last_end = end if last_end is None or end > last_end else last_end
        if m.area is not None:
            await conn.execute(
                "INSERT INTO meter_area (meter_id, area_id, valid_from) VALUES (%s, %s, %s)",
                (meter_id, m.area, last_end),
            )
        return
    meter_id = int(row[0])
    old = dict(zip(_METER_COLS, row[1:], strict=True))
    if values["interval_min"] is None:  # keep an interval inferred by an import
        values["interval_min"] = old["interval_min"]
    changed = {k: v for k, v in values.items() if old[k] != v}
    readings = _exchange_readings(m)
    stored = await exchange_readings(conn, meter_id)
    readings_changed = {k: {"old": stored[k], "new": v} for k, v in readings.items()
                        if stored[k] != v}
    if readings_changed:
        await _write_exchange_readings(conn, meter_id, readings)
    if changed:
        sets = ", ".join(f"{k} = %s" for k in changed)
        await conn.execute(
            f"UPDATE meter SET {sets}, updated_at = now() WHERE id = %s",
            (*changed.values(), meter_id),
        )
        if "ct" in changed or "pt" in changed:
            await conn.execute(
                "INSERT INTO meter_multiplier (meter_id, valid_from, ct, pt) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (meter_id, valid_from) "
                "DO UPDATE SET ct = EXCLUDED.ct, pt = EXCLUDED.pt",
                (meter_id, now, m.ct, m.pt),
            )
    cur = await conn.execute(
        "SELECT area_id FROM meter_area WHERE meter_id = %s AND valid_to IS NULL", (meter_id,)
    )
    current = await cur.fetchone()
    current_area = current[0] if current else None
    area_moved = current_area != m.area
    if area_moved:
        await conn.execute(
            "UPDATE meter_area SET valid_to = %s WHERE meter_id = %s AND valid_to IS NULL",
            (now, meter_id),
        )
        if m.area is not None:
            await conn.execute(
                "INSERT INTO meter_area (meter_id, area_id, valid_from) VALUES (%s, %s, %s)",
                (meter_id, m.area, now),
            )
    if changed or area_moved or readings_changed:
        report.bump("meter", "updated")
        detail = {k: {"old": _jsonable1(old[k]), "new": _jsonable1(v)} for k, v in changed.items()}
        detail.update(readings_changed)
        if area_moved:
            detail["area"] = {"old": current_area, "new": m.area}
        await _audit(conn, actor, "updated", "meter", m.number, detail)
    else:
        report.bump("meter", "unchanged")
