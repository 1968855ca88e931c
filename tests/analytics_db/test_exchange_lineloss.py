"""Line loss on a simulated area where PV (bidirectional) meters are exchanged mid-day.

The fleet file the simulator writes carries the old meters' end readings and the new meters'
start readings of every register, ``fleet load`` stores them, and ``analyze lineloss`` must
give what the meters registered (the truth's ``registered`` block) on every area-day, the
exchange days included.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.analytics_db.simdb import area_truth, load_world, make_world

pytestmark = pytest.mark.db

METERHUB = str(Path(sys.executable).parent / "meterhub")
START = "2026-03-01"


def test_bidirectional_exchanges_balance_like_the_truth(new_db: Any, tmp_path: Path) -> None:
    world = make_world({"seed": 3, "areas": 1, "meters_per_area": 12, "days": 3,
                        "start": START, "devices": {"dlt645_share": 0.5, "modbus_share": 0.0,
                                                    "mqtt_share": 0.5},
                        "load": {"pv_share": 1.0}, "injections": {"exchange": 0.3}})
    url = new_db()

    async def load() -> dict[str, Any]:
        async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
            return await load_world(conn, world, tmp_path, intervals=False)

    truth = asyncio.run(load())
    exchanged = [e for e in world.exchanges if world.bidir_archive[e["point"]]]
    ex_days = {world.day_date(e["g"] // world.S).isoformat() for e in exchanged}
    assert exchanged and ex_days  # the world has what the test is about
    # the fleet file gave the reverse register at both ends of each exchange
    with psycopg.connect(url) as conn:
        stored = dict(conn.execute(
            "SELECT m.number || ':' || e.event, e.value FROM meter_exchange_reading e "
            "JOIN meter m ON m.id = e.meter_id WHERE e.quantity_id = 6").fetchall())
    for e in exchanged:
        assert stored[f"{world.m_number[e['old']]}:removed"] == e["old_end_rev"]
        assert stored[f"{world.m_number[e['new']]}:installed"] == e["new_start_rev"]

    env = {k: v for k, v in os.environ.items() if not k.startswith("METERHUB_")}
    env["METERHUB_DATABASE_URL"] = url
    proc = subprocess.run([METERHUB, "analyze", "lineloss", "--from", START, "--to",
                           "2026-03-03", "--json"], capture_output=True, text=True, env=env,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    rows = {(r["area"], r["date"]): r for r in json.loads(proc.stdout)["areas"]}
    t = area_truth(truth)
    assert set(rows) == set(t)
    for key, r in rows.items():
        tr = t[key]
        assert tr["computable"], (key, tr)  # nothing else is injected
        assert r["state"] != "not_computable", (r, tr)
        assert abs(r["rate"] - tr["rate"]) < 0.01, (r, tr)
        assert r["supply_kwh"] == pytest.approx(tr["supply_kwh"], abs=0.01)
        assert r["sales_kwh"] == pytest.approx(tr["sales_kwh"], abs=0.01)
    assert ex_days <= {d for _, d in rows}
