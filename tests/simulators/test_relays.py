"""Relays over DL/T 645: normal, late, stuck, ignoring, 保电, close-allowed; clean buses answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from protocols.dlt645 import (
    AbnormalResponse,
    Ack,
    ReadRequest,
    ReadResponse,
    RemoteCommand,
    RemoteControlRequest,
    decode_status_word_3,
)
from simulators.runner import Fleet

from .helpers import ManualClock, scenario
from .test_devices import NO_MQTT, dlt645

RELAYS = {
    "relay_ignore": 0.2,
    "relay_late": 0.2,
    "relay_stuck": 0.2,
    "protected": 0.2,
    "relay_late_s": 600.0,
}


async def _status(port: int, addr: str) -> object:
    reply = await dlt645(port, ReadRequest(addr, 0x04000503))
    assert isinstance(reply, ReadResponse)
    return decode_status_word_3(int(reply.values()[0][0].value))


async def test_relay_behaviours() -> None:
    sc = scenario(
        faults=False,
        devices={**NO_MQTT, "modbus_share": 0.0, "manual_share": 0.0},
        injections=RELAYS,
    )
    clock = ManualClock(datetime.now(UTC))
    async with Fleet(sc, clock=clock, keep_days=10) as f:
        w = f.world
        t0 = datetime.fromtimestamp(w.t0 + 86400 + 10 * 3600, UTC)
        clock.set(t0)
        where = {m: gw for gw in f.dlt645 for m in gw.bus.by_address.values()}
        deadline = (t0 + timedelta(days=1)).astimezone(w.zone).strftime("%Y-%m-%d %H:%M:%S")
        seen: dict[str, object] = {}
        for p, relay in w.relays.items():
            kind = "protected" if relay.protected else relay.behaviour
            if kind in seen or p not in where:
                continue
            gw, addr = where[p], w.m_number[p]
            reply = await dlt645(gw.port, RemoteControlRequest(addr, RemoteCommand.TRIP, deadline))
            status = await _status(gw.port, addr)
            if kind == "protected":
                assert isinstance(reply, AbnormalResponse)
                assert status.protect_active and not status.relay_open  # type: ignore[attr-defined]
            else:
                assert isinstance(reply, Ack)  # 9C never proves the relay moved
                if kind == "normal":
                    assert status.relay_open and status.relay_trip_commanded  # type: ignore[attr-defined]
                elif kind == "stuck":
                    assert status.relay_trip_commanded and not status.relay_open  # type: ignore[attr-defined]
                elif kind == "ignore":
                    assert not status.relay_trip_commanded and not status.relay_open  # type: ignore[attr-defined]
                elif kind == "late":
                    assert status.relay_trip_commanded and not status.relay_open  # type: ignore[attr-defined]
                    assert status.pre_trip_alarm  # type: ignore[attr-defined]
                    clock.set(t0 + timedelta(seconds=601))
                    assert (await _status(gw.port, addr)).relay_open  # type: ignore[attr-defined]
                    clock.set(t0)
            seen[kind] = status
        assert set(seen) == {"normal", "late", "stuck", "ignore", "protected"}
        # close-allowed: the relay closes only when the customer presses the button
        p = next(
            p
            for p, r in w.relays.items()
            if r.behaviour == "normal"
            and p in where
            and not r.protected
            and not w.relay_status(p, t0.timestamp())[0]
        )
        gw, addr = where[p], w.m_number[p]
        assert isinstance(
            await dlt645(
                gw.port, RemoteControlRequest(addr, RemoteCommand.CLOSE_ALLOWED, deadline)
            ),
            Ack,
        )
        status = await _status(gw.port, addr)
        assert status.relay_open and not status.relay_trip_commanded  # type: ignore[attr-defined]
        clock.set(t0 + timedelta(hours=1))
        assert not (await _status(gw.port, addr)).relay_open  # type: ignore[attr-defined]
        assert [c["kind"] for c in w.commands].count("trip") >= 4


async def test_clean_buses_answer_every_meter() -> None:
    sc = scenario(faults=False, devices=NO_MQTT)
    clock = ManualClock(datetime.now(UTC))
    async with Fleet(sc, clock=clock) as f:
        w = f.world
        for hour in (0.1, 9.5, 20.0):
            clock.set(datetime.fromtimestamp(w.t0 + 2 * 86400 + hour * 3600, UTC))
            for gw in f.dlt645:
                for addr in gw.bus.by_address:
                    reply = await dlt645(gw.port, ReadRequest(addr, 0x00010000))
                    assert isinstance(reply, ReadResponse), addr
