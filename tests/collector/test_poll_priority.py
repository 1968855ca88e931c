"""Slot reads come first: silent meters, re-reads and clock checks never hold them up.

A poller whose clock runs faster than real time (a simulated fleet) once stalled for two
simulated hours: a silent meter's read waited the link's full timeout (5 real seconds) and the
whole cycle, every gateway and the clock checks with it, waited for that read. These tests use
small in-test gateways and drive one gateway's share of a cycle directly (no database).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from collector.dlt645 import Dlt645Link, LinkParams
from collector.poller import CollectorConfig, Poller, PollMeter
from collector.schedule import MissingFreeze, ScheduleConfig
from meterhub.clock import SimClock
from protocols.dlt645 import (
    AbnormalResponse,
    FrameDecoder,
    ReadRequest,
    ReadResponse,
    TimeSyncRequest,
    Version,
    decode_message,
    error_word,
    pack,
)

TZ = ZoneInfo("Asia/Shanghai")
SILENT = "000000000001"
LIVE = "000000000002"
SLOW = LinkParams(timeout=30.0, retries=1, connect_timeout=5.0)  # far beyond a slot's grace

Handler = Callable[[object], bytes | None]


class FixedClock:
    """A clock that stands still until the test moves it."""

    def __init__(self, t: datetime) -> None:
        self.t = t

    def now(self) -> datetime:
        return self.t

    async def sleep_until(self, instant: datetime) -> None:
        while self.t < instant:
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def bus(handler: Handler, log: list[tuple[str, int | None]]) -> AsyncIterator[str]:
    """A TCP gateway; ``log`` gets (address, DI) of every request in order."""

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = FrameDecoder()
        with contextlib.suppress(OSError):
            while data := await reader.read(4096):
                decoder.feed(data)
                for frame in decoder:
                    msg, _ = decode_message(frame)
                    log.append((str(getattr(msg, "address", "")), getattr(msg, "di", None)))
                    reply = handler(msg)
                    if reply is not None:
                        writer.write(reply)
                        await writer.drain()
        writer.close()

    server = await asyncio.start_server(client, "127.0.0.1", 0)
    try:
        yield f"tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()


def meter_handler(clock: FixedClock | SimClock) -> Handler:
    """LIVE answers energy, clock and freeze 1; SILENT never answers; freezes >= 2 are absent."""

    def handler(msg: object) -> bytes | None:
        if not isinstance(msg, ReadRequest) or msg.address != LIVE:
            return None
        local = clock.now().astimezone(TZ)
        values: list[object] | None = None
        if msg.di == 0x00010000:
            values = [100.0]
        elif msg.di == 0x04000101:
            values = [local.strftime("%Y-%m-%d")]
        elif msg.di == 0x04000102:
            values = [local.strftime("%H:%M:%S")]
        elif msg.di == 0x05060001:
            values = [local.strftime("%Y-%m-%d 00:00")]
        elif msg.di == 0x05060101:
            values = [90.0, 20.0, 20.0, 25.0, 25.0]
        if values is None:
            return pack(AbnormalResponse(msg.address, 0x11, error_word(
                ["no_requested_data"], Version.V2007)), preamble=4)
        return pack(ReadResponse.from_values(msg.address, msg.di, values), preamble=4)

    return handler


def poller_on(url: str, clock: FixedClock | SimClock, *, clock_checks: bool) -> Poller:
    config = CollectorConfig(link=SLOW, clock_checks=clock_checks,
                             schedule=ScheduleConfig(reread_days=3))
    poller = Poller(db_url="postgresql://unused", clock=clock, tz=TZ, config=config)
    poller.links["G1"] = Dlt645Link("G1", url=url, params=SLOW)
    for i, number in enumerate((SILENT, LIVE), start=1):
        poller.meters[number] = PollMeter(i, number, "dlt645-2007", "customer", "G1", None,
                                          None, 15, False, False)
    return poller


async def test_a_silent_meter_does_not_use_up_the_slot_of_the_others() -> None:
    # 360x: the slot's grace window (7.5 simulated minutes) is about a real second, the
    # link's timeout 30 real seconds; before the fix the cycle waited for it (twice, retry)
    clock = SimClock.starting_now(datetime(2026, 1, 2, 10, 0, 15, tzinfo=TZ), speed=360.0)
    slot = datetime(2026, 1, 2, 10, 0, tzinfo=TZ)
    log: list[tuple[str, int | None]] = []
    async with bus(meter_handler(clock), log) as url:
        poller = poller_on(url, clock, clock_checks=False)
        poller._cycle_started = clock.now()
        interval = [(poller.meters[SILENT], slot), (poller.meters[LIVE], slot)]
        # the bound only guards the test run: the read gives up within the grace window
        await asyncio.wait_for(poller._run_gateway("G1", interval, []), timeout=20)
        assert [row.meter_id for _src, row in poller._rows] == [2]
        assert all(row.ts == slot for _src, row in poller._rows)
        assert poller.stats.no_answer == 1 and poller.stats.slots_missed == 0
        assert log[0] == (SILENT, 0x00010000) and (LIVE, 0x00010000) in log
        await poller.links["G1"].close()


async def test_rereads_and_clock_checks_wait_for_the_next_cycle_once_a_slot_is_due() -> None:
    clock = FixedClock(datetime(2026, 1, 2, 10, 1, tzinfo=TZ))
    slot = datetime(2026, 1, 2, 10, 0, tzinfo=TZ)
    answer = meter_handler(clock)

    def handler(msg: object) -> bytes | None:
        reply = answer(msg)
        if isinstance(msg, ReadRequest) and msg.di == 0x00010000:
            clock.t = datetime(2026, 1, 2, 10, 15, 1, tzinfo=TZ)  # the slot read took long
        return reply

    log: list[tuple[str, int | None]] = []
    async with bus(handler, log) as url:
        poller = poller_on(url, clock, clock_checks=True)
        del poller.meters[SILENT]  # its clock check would wait out the link's timeout
        poller._cycle_started = clock.now()
        day = clock.now().date()
        freezes = [MissingFreeze(LIVE, "customer", day)]
        await poller._run_gateway("G1", [(poller.meters[LIVE], slot)], freezes)
        # the 10:15 slot is due: neither the freeze re-read nor the clock check was started
        assert log == [(LIVE, 0x00010000)]
        # and a register read after the slot's grace window is not stored as the slot's value
        assert poller._rows == [] and poller.stats.slots_missed == 1
        # the next cycle reads its slot first, then catches up on what was left
        poller._cycle_started = clock.now()
        poller._rows.clear()
        log.clear()
        await poller._run_gateway(
            "G1", [(poller.meters[LIVE], slot + timedelta(minutes=15))], freezes)
        assert log[0] == (LIVE, 0x00010000)
        assert (LIVE, 0x05060001) in log and (LIVE, 0x04000101) in log
        assert log.index((LIVE, 0x05060001)) < log.index((LIVE, 0x04000101))
        await poller.links["G1"].close()


async def test_a_broadcast_time_sync_waits_for_no_reply() -> None:
    log: list[tuple[str, int | None]] = []
    async with bus(lambda _msg: None, log) as url:
        link = Dlt645Link("G1", url=url, params=SLOW)
        sync = TimeSyncRequest("2026-01-02 10:01:00")
        result = await asyncio.wait_for(link.exchange(sync, expect_reply=False), timeout=20)
        assert result is None
        assert link.stats.timeouts == 0 and link.stats.requests == 1
        await link.close()


async def test_freezes_older_than_the_meter_keeps_are_not_asked_for_again() -> None:
    clock = FixedClock(datetime(2026, 1, 2, 10, 1, tzinfo=TZ))
    log: list[tuple[str, int | None]] = []
    async with bus(meter_handler(clock), log) as url:
        poller = poller_on(url, clock, clock_checks=False)
        poller._cycle_started = clock.now()
        today = clock.now().date()
        old = today - timedelta(days=2)  # DI0 = 3: the meter keeps only the last freeze
        await poller._run_gateway("G1", [], [MissingFreeze(LIVE, "customer", old)])
        assert poller.stats.abnormal == 1
        meter_id = poller.meters[LIVE].id
        assert not poller._freeze_kept(meter_id, old, clock.now())
        assert not poller._freeze_kept(meter_id, old - timedelta(days=1), clock.now())
        # fewer than 3: the newer ones may still be there
        assert poller._freeze_kept(meter_id, today - timedelta(days=1), clock.now())
        assert poller._freeze_kept(meter_id, today, clock.now())
        # a day later the meter has kept one more freeze (yesterday's): that one may be read
        later = clock.now() + timedelta(days=1)
        assert poller._freeze_kept(meter_id, today, later)
        assert not poller._freeze_kept(meter_id, old, later)
        await poller.links["G1"].close()
