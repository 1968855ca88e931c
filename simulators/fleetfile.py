"""The fleet file: the archive TOML of CONTRACTS.md plus endpoints, credentials and the clock.

It is what ``meterhub fleet load`` reads. ``simulate`` writes it atomically (temporary file in
the same folder, then ``os.replace``) at start-up, and again whenever the archive changes during
the run (a meter exchange: the old meter gets ``removed``/``end_reading`` and ``end_readings``,
the new one ``installed``/``start_reading`` and ``start_readings``: the forward total and every
other register, reverse energy included, read at the exchange).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import tomli_w

from simulators.world import NEVER, World, shown


@dataclass
class Endpoints:
    """Where the simulated devices can be reached."""

    gateways: dict[str, str] = field(default_factory=dict)  # id -> tcp://host:port
    broker_url: str = ""
    broker_username: str = ""
    broker_password: str = ""


#: The registers after the forward total in the world's [total, t1..t4, reverse] order, by
#: their quantity names (the archive's ``start_readings`` / ``end_readings`` keys).
_OTHER_REGISTERS = (
    (1, "forward_active_t1_kwh"),
    (2, "forward_active_t2_kwh"),
    (3, "forward_active_t3_kwh"),
    (4, "forward_active_t4_kwh"),
    (5, "reverse_active_total_kwh"),
)


def _other_registers(values: Any) -> dict[str, float]:
    """What a meter shows on every register but the forward total, as archive readings: the
    reverse register of an exchanged bidirectional meter is a term of the area balance."""
    return {name: float(values[i]) for i, name in _OTHER_REGISTERS}


def fleet_document(
    world: World, endpoints: Endpoints, *, wall_start: datetime, sim_now: float | None = None
) -> dict[str, Any]:
    """Build the fleet document.

    Args:
        world: the simulated world.
        endpoints: device endpoints and broker credentials.
        wall_start: the real instant that the scenario's start maps to.
        sim_now: simulated epoch seconds up to which archive changes (exchanges) are known;
            None lists only the meters installed at the start.

    Returns:
        A mapping ready for ``tomli_w``.
    """
    w = world
    sc = w.sc
    areas = [{"id": a, "name": f"台区 {a}"} for a in w.area_ids]
    meters: list[dict[str, Any]] = []
    for m in range(w.M):
        p = w.m_point[m]
        installed_t = w.g_time(w.m_install[m]) if w.m_install[m] >= 0 else None
        if installed_t is not None and (sim_now is None or installed_t > sim_now):
            continue
        proto = w.protocol[p]
        rec: dict[str, Any] = {
            "number": w.m_number[m],
            "area": w.area_ids[w.m_archive_area[m]],
            "role": "supply" if w.is_supply[p] else "customer",
            "protocol": proto,
            "interval": sc.interval,
            "bidirectional": bool(w.bidir_archive[p]),
            "ct": float(w.ct_archive[p]),
            "pt": 1.0,
        }
        if proto == "manual":  # reading book: one read a day (scenario manual_read_time)
            rec["schedule"] = "daily"
        if proto == "modbus":
            rec["model"] = sc.devices.modbus_model
            rec["unit"] = int(w.unit_of[p])
        gw = int(w.gateway_of[p])
        if gw >= 0:
            rec["gateway"] = w.gateways[gw]["id"]
        conc = int(w.concentrator_of[p])
        if conc >= 0:
            rec["concentrator"] = w.concentrators[conc]["id"]
        if installed_t is not None:
            rec["installed"] = w.iso(installed_t)
            rec["start_reading"] = float(w.m_base_fwd_a[m])
            rec["start_readings"] = _other_registers(w.m_base6[m])
        if w.m_remove[m] < NEVER:
            removed_t = w.g_time(w.m_remove[m])
            ex = next(e for e in w.exchanges if e["old"] == m)
            if sim_now is not None and removed_t <= sim_now and "old_end" in ex:
                rec["removed"] = w.iso(removed_t)
                rec["end_reading"] = float(ex["old_end"])
                rec["end_readings"] = _other_registers(shown(ex["old_end_exact"]))
        if not w.is_supply[p]:
            rec["customer"] = f"CUST{p:06d}"
            rec["account"] = f"ACC{p:06d}"
        meters.append(rec)
    gateways = []
    for g in w.gateways:
        rec = {
            "id": g["id"],
            "mode": g["mode"],
            "model": "generic-dtu" if g["kind"] == "dlt645-2007" else "modbus-tcp",
        }
        if g["mode"] == "connect":
            rec["url"] = endpoints.gateways.get(g["id"], "")
        gateways.append(rec)
    concentrators = []
    for c in w.concentrators:
        rec = {
            "id": c["id"],
            "broker": endpoints.broker_url,
            "username": endpoints.broker_username or c["id"],
        }
        if endpoints.broker_password:
            rec["password"] = endpoints.broker_password
        concentrators.append(rec)
    doc: dict[str, Any] = {
        "version": 1,
        "timezone": sc.timezone,
        "area": areas,
        "meter": meters,
    }
    if gateways:
        doc["gateway"] = gateways
    if concentrators:
        doc["concentrator"] = concentrators
    doc["clock"] = {
        "sim_start": w.start.isoformat(),
        "wall_start": wall_start.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "speed": float(sc.speed),
    }
    return doc


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (same-folder temporary file, then rename).

    Raises:
        OSError: the folder is not writable.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_fleet(path: Path, document: dict[str, Any]) -> None:
    """Write the fleet document as TOML, atomically."""
    write_atomic(path, tomli_w.dumps(document).encode("utf-8"))
