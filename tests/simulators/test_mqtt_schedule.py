"""A concentrator on its schedule: what it delivers matches the truth's missing data exactly."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from protocols.mqtt import ReadingsBatch
from simulators.runner import Fleet
from simulators.truth import Delivery, build_truth

from .helpers import ManualClock, scenario
from .test_devices import Collector

MQTT_ONLY = {
    "mqtt_share": 1.0,
    "dlt645_share": 0.0,
    "modbus_share": 0.0,
    "manual_share": 0.0,
    "meters_per_concentrator": 16,
}


async def _run_schedule(
    broker_url: str, injections: dict[str, object]
) -> tuple[Fleet, dict, set, set]:
    sc = scenario(
        faults=False,
        mqtt={"url": broker_url, "reread_days": 1},
        days=3,
        devices=MQTT_ONLY,
        injections=injections,
    )
    col = Collector(broker_url)
    try:
        async with Fleet(sc, keep_days=10, clock=ManualClock(datetime.fromtimestamp(0, UTC))) as f:
            w = f.world
            clock = f.clock
            assert isinstance(clock, ManualClock)
            for c in f.concentrators:
                await asyncio.wait_for(c.connected.wait(), 10)
            for g in range(0, sc.days * w.S + 1):
                clock.set(datetime.fromtimestamp(w.g_time(g), UTC))
                for _ in range(3):
                    await asyncio.sleep(0)
            expected_total = sum(c.readings_sent for c in f.concentrators)
            loop = asyncio.get_running_loop()
            end = loop.time() + 30
            while loop.time() < end:
                for c in f.concentrators:
                    c._resend()
                got = {
                    (r.meter, r.ts, r.quantity)
                    for _c, m in list(col.messages)
                    if isinstance(m, ReadingsBatch)
                    for r in m.readings
                }
                if len(got) >= expected_total:
                    break
                await asyncio.sleep(0.5)
            slots = {(num, ts) for num, ts, q in got if q == "forward_active_total_kwh"}
            frozen = {
                (num, ts) for num, ts, q in got if q == "daily_frozen_forward_active_total_kwh"
            }
            truth = build_truth(w)
            return f, truth, slots, frozen
    finally:
        col.close()


async def test_delivered_slots_and_freezes_match_the_truth(broker_url: str) -> None:
    f, truth, slots, frozen = await _run_schedule(
        broker_url,
        {"missing_slots": 0.03, "concentrator_offline": 0.5, "concentrator_offline_days": [1, 1]},
    )
    w = f.world
    assert any(c["offline"] for c in truth["concentrators"])
    dl = Delivery(w)
    for rec in truth["meters"]:
        m = w.m_number.index(rec["number"])
        missing = set(rec["missing"]["slots"])
        win = rec["missing"]["concentrator_offline"]
        for g in range(1, w.sc.days * w.S + 1):
            ts = datetime.fromisoformat(w.iso(w.g_time(g)))
            in_window = win is not None and (
                datetime.fromisoformat(win[0]) < ts <= datetime.fromisoformat(win[1])
            )
            absent = w.iso(w.g_time(g)) in missing or in_window
            assert ((rec["number"], ts) in slots) == (not absent), (rec["number"], ts)
        for b in range(0, w.sc.days):
            label = datetime.fromtimestamp(float(w.freezes[b].label[m]), UTC).replace(tzinfo=w.zone)
            assert ((rec["number"], label) in frozen) == dl.frozen(m, b), (rec["number"], b)


async def test_clean_concentrators_deliver_everything(broker_url: str) -> None:
    f, truth, slots, frozen = await _run_schedule(broker_url, {})
    w = f.world
    n = len(truth["meters"])
    assert len(slots) == n * (w.sc.days * w.S + 1)  # boundaries 0 … days·S
    assert len(frozen) == n * (w.sc.days + 1)
    assert all(d["registered"]["computable"] for a in truth["areas"] for d in a["days"])
