"""The simulated world: areas, meters, physics, registers, injected faults and ground truth.

Physics is vectorised over ``points × slots`` for one day at a time. A *point* is a place
where energy is measured (an area's transformer or a customer's service); a *meter* is the
device installed at a point (a meter exchange gives a point two meters, one after the other).

Per slot and area (all physical, primary side, kWh)::

    net_i   = load_i − pv_i                    (customer i behind the meter)
    import_i = max(net_i, 0) · (1 − theft share at night) ; export_i = max(−net_i, 0)
    theft   = the stolen share of the thieves' import (bypasses their meters)
    flow    = Σ import_i − Σ export_i + theft
    loss    = fixed + k · flow²                (technical loss, calibrated to 2–6 % per area)
    transformer import = max(flow + loss, 0) ; back-feed = max(−(flow + loss), 0)

so ``transformer import + Σ export = Σ import + back-feed + loss + theft`` holds exactly per slot.

Registers (secondary side) accumulate ``(1 + ε(t)) · energy / CT`` exactly; what a meter shows
is that cumulative value plus its starting reading, rolled over at 1 000 000 kWh and truncated
to 0.01 kWh. Tariff registers accumulate the same increments by the meter's own clock's
time-of-use period. Daily freezes are taken when the meter's own (possibly drifting or reset)
clock passes 00:00, interpolating linearly inside the slot.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from simulators import shapes
from simulators.scenario import Scenario

F64 = NDArray[np.float64]
ROLLOVER = 1_000_000.0
NEVER = 2**62
EPOCH_2000 = datetime(2000, 1, 1)

ROLE_SUPPLY = "supply"
#: Digits a reader misreads for each other (7-segment and handwriting look-alikes).
LOOKALIKE: dict[int, tuple[int, ...]] = {
    0: (8, 6, 9), 1: (7, 4), 2: (7, 3), 3: (8, 5), 4: (1, 9), 5: (6, 3, 8), 6: (5, 8, 0),
    7: (1, 2), 8: (3, 6, 0, 9), 9: (4, 8, 0),
}
ROLE_CUSTOMER = "customer"


def quantise(value: F64 | float) -> Any:
    """Truncate kWh to the 0.01 kWh a register shows (rounding away float noise first)."""
    return np.floor(np.round(np.asarray(value, dtype=np.float64) * 100.0, 6)) / 100.0


def shown(value: F64 | float) -> Any:
    """What a register shows for an exact cumulative value: rolled over, then truncated."""
    return quantise(np.mod(np.asarray(value, dtype=np.float64), ROLLOVER))


def _fold(offset: F64) -> F64:
    """Fold a clock offset (s) into (−12 h, +12 h]: where the meter's midnight falls."""
    out: F64 = -(np.mod(-np.asarray(offset, dtype=np.float64) + 43200.0, 86400.0) - 43200.0)
    return out


@dataclass
class ClockSegment:
    """From ``t`` (epoch s) on, offset = ``base + rate · (t' − t) / 86400`` seconds."""

    t: float
    base: float
    rate: float


@dataclass
class RelayState:
    """A customer meter's load switch."""

    closed: bool = True
    command_trip: bool = False
    protected: bool = False
    behaviour: str = "normal"
    close_allowed_at: float | None = None
    history: list[tuple[float, bool]] = field(default_factory=list)
    pending: list[tuple[float, bool]] = field(default_factory=list)


@dataclass
class Day:
    """Physics and registers of one simulated day (points × slots), stored compactly.

    Cumulative values are rebuilt on demand as ``start + Σ increments`` in float64; the
    increments are kept as float32 (far below the 0.01 kWh a register shows), and the state
    carried to the next day is built from the same float32 increments, so registers, freezes and
    the truth all agree exactly.
    """

    index: int
    start: F64  # (P, 8): registered total, t1..t4, reverse, physical import, physical export
    inc: NDArray[np.float32]  # (P, 4, S): registered fwd, registered rev, phys imp, phys exp
    tariff: NDArray[np.int8]  # (P, S): tariff 0..3 counting the forward increment, 4 = none
    missing: NDArray[np.bool_]  # slot reading not delivered (P, S)
    area_totals: dict[str, F64]  # per area physical sums for the truth (A,)


@dataclass
class Freeze:
    """Daily freezes at one local midnight, for every meter record."""

    values: F64  # (M, 6): forward total, t1..t4, reverse — as shown (rolled, truncated)
    exact: F64  # (M, 6) exact unrolled values (for the truth)
    instant: F64  # true epoch seconds of the freeze (M,)
    label: F64  # the meter's own clock at the freeze, epoch seconds of naive local (M,)
    valid: NDArray[np.bool_]  # meter installed at that instant (M,)
    # meters without daily freezes (World.poll_meters): forward total and reverse as the polls
    # at the boundaries b·S − k … b·S + k read them (n, 2k + 1, 2); NaN = no such poll
    polls: F64 | None = None


class World:
    """Everything simulated for one scenario, computed day by day on demand.

    Args:
        scenario: the validated scenario.
        keep_days: how many computed days to keep in memory (older ones are dropped; the
            truth aggregates and the freezes are kept for the whole run).
    """

    def __init__(self, scenario: Scenario, keep_days: int = 2) -> None:
        self.sc = scenario
        self.keep_days = max(2, keep_days)
        self.S = scenario.slots_per_day
        self.slot_s = scenario.interval * 60
        self.zone = scenario.zone
        start_local = datetime(
            scenario.start.year, scenario.start.month, scenario.start.day, tzinfo=self.zone
        )
        end_local = start_local + timedelta(days=scenario.days + 2)
        if start_local.utcoffset() != end_local.utcoffset():
            raise ValueError("the simulator needs a time zone without daylight saving changes")
        self.utc_offset_s = int(start_local.utcoffset().total_seconds())  # type: ignore[union-attr]
        self.t0 = start_local.timestamp()
        self.start = start_local
        self.rng = np.random.default_rng([scenario.seed, 1])
        self._build_fleet()
        self._build_injections()
        self._build_shapes()
        self.days: dict[int, Day] = {}
        self.freezes: dict[int, Freeze] = {}
        self.area_days: dict[int, dict[str, F64]] = {}
        self.point_days: dict[int, F64] = {}  # (3, P): physical import, export, theft per day
        self._E_fwd = np.zeros(self.P)
        self._E_rev = np.zeros(self.P)
        self._E_tar = np.zeros((self.P, 4))
        self._Ephys_imp = np.zeros(self.P)
        self._Ephys_exp = np.zeros(self.P)
        self._day_start_state: dict[int, tuple[F64, ...]] = {}
        self._shape_cache: dict[int, tuple[NDArray[np.float32], NDArray[np.float32]]] = {}
        self._calibrated = False
        self.commands: list[dict[str, Any]] = []
        self.power_events: dict[int, list[tuple[float, float]]] = {}

    # ------------------------------------------------------------------ fleet
    def _build_fleet(self) -> None:
        sc = self.sc
        rng = self.rng
        A, n = sc.areas, sc.meters_per_area
        self.A = A
        self.area_ids = [f"{sc.area_prefix}{i + 1:03d}" for i in range(A)]
        P = A * (n + 1)
        self.P = P
        # supply points first (0..A-1), then customers grouped by area
        self.true_area = np.concatenate([np.arange(A), np.repeat(np.arange(A), n)])
        self.is_supply = np.zeros(P, dtype=bool)
        self.is_supply[:A] = True
        self.customers = np.arange(A, P)
        self.C = P - A
        self.ct_true = np.ones(P)
        self.ct_true[:A] = rng.choice([20.0, 30.0, 40.0, 60.0, 80.0], A)
        self.ct_archive = self.ct_true.copy()
        # device channel per point: contiguous blocks in area order
        dv = sc.devices
        auto = np.array([dv.dlt645_share, dv.modbus_share, dv.mqtt_share])
        if auto.sum() <= 0:
            auto = np.array([1.0, 0.0, 0.0])
        order = np.argsort(self.true_area, kind="stable")
        counts = np.floor(auto / auto.sum() * P).astype(int)
        counts[np.argmax(auto)] += P - counts.sum()
        kinds = np.repeat(np.array(["dlt645-2007", "modbus", "mqtt"]), counts)
        self.protocol = np.empty(P, dtype=object)
        self.protocol[order] = kinds
        dlt = np.flatnonzero(self.protocol == "dlt645-2007")
        old_n = round(dv.dlt645_1997_share * dlt.size)
        if old_n:
            self.protocol[rng.choice(dlt, old_n, replace=False)] = "dlt645-1997"
        manual_n = round(dv.manual_share * self.C)
        if manual_n:
            self.protocol[rng.choice(self.customers, manual_n, replace=False)] = "manual"
        # gateways / concentrators
        self.gateway_of = np.full(P, -1)
        self.unit_of = np.zeros(P, dtype=int)
        self.concentrator_of = np.full(P, -1)
        self.gateways: list[dict[str, Any]] = []
        self.concentrators: list[dict[str, Any]] = []
        for kind, size in (
            ("dlt645-2007", dv.meters_per_gateway),
            ("modbus", dv.modbus_meters_per_gateway),
            ("mqtt", dv.meters_per_concentrator),
        ):
            same = ("dlt645-2007", "dlt645-1997") if kind == "dlt645-2007" else (kind,)
            pts = [int(p) for p in order if self.protocol[p] in same]
            for k in range(0, len(pts), size):
                group = pts[k : k + size]
                if kind == "mqtt":
                    cid = len(self.concentrators)
                    self.concentrators.append({"id": f"C{cid + 1:04d}", "points": group})
                    self.concentrator_of[group] = cid
                else:
                    gid = len(self.gateways)
                    listen = kind == "dlt645-2007" and rng.random() < dv.gateway_listen_share
                    self.gateways.append(
                        {
                            "id": f"G{gid + 1:04d}",
                            "kind": kind,
                            "points": group,
                            "mode": "listen" if listen else "connect",
                        }
                    )
                    self.gateway_of[group] = gid
                    self.unit_of[group] = np.arange(1, len(group) + 1)
        # PV
        lc = sc.load
        self.has_pv = np.zeros(P, dtype=bool)
        pv_n = round(lc.pv_share * self.C)
        if pv_n:
            self.has_pv[rng.choice(self.customers, pv_n, replace=False)] = True
        self.kwp = np.where(self.has_pv, rng.uniform(*lc.pv_kwp, P), 0.0)
        self.bidir_archive = self.has_pv.copy()
        area_has_pv = np.bincount(self.true_area[self.has_pv], minlength=A) > 0
        self.bidir_archive[:A] = area_has_pv
        # meter records: one per point to start with
        self.M = P
        self.m_point = list(range(P))
        self.m_install = [-1] * P  # boundary index (g); -1 = before the run
        self.m_remove = [NEVER] * P
        numbers = []
        for p in range(P):
            numbers.append(f"{(1 if self.is_supply[p] else 3):02d}{p + 1:010d}")
        self.m_number = numbers
        base = np.where(self.is_supply, rng.uniform(1000, 60000, P), rng.uniform(200, 30000, P))
        self.m_base_fwd = list(quantise(base))
        self.m_base_rev = list(
            np.where(self.has_pv | self.is_supply, quantise(rng.uniform(0, 3000, P)), 0.0)
        )
        split = rng.dirichlet([1.0, 3.0, 4.0, 3.0], P)
        tar = quantise(split * base[:, None])
        tar[:, 2] = quantise(base - tar[:, [0, 1, 3]].sum(axis=1))
        self.m_base_tar = list(tar)
        self.m_archive_area = [int(a) for a in self.true_area]
        self.m_point_arr = np.arange(P)

    def _pick(
        self,
        pool: NDArray[np.int64],
        share: float,
        used: set[int] | None = None,
    ) -> NDArray[np.int64]:
        if share <= 0 or pool.size == 0:
            return np.zeros(0, dtype=np.int64)
        if used:
            pool = np.array([p for p in pool if p not in used], dtype=np.int64)
        k = min(pool.size, max(1, round(share * pool.size)))
        chosen = np.sort(self.rng.choice(pool, k, replace=False))
        if used is not None:
            used.update(int(c) for c in chosen)
        return chosen

    def _since(self) -> int:
        """A random start boundary (global slot) from day 1 to the last day."""
        days = self.sc.days
        d = int(self.rng.integers(1, days)) if days > 1 else 0
        return d * self.S + int(self.rng.integers(0, self.S))

    # ------------------------------------------------------------- injections
    def _build_injections(self) -> None:
        inj = self.sc.injections
        rng = self.rng
        P = self.P
        cust = self.customers.astype(np.int64)
        used: set[int] = set()
        self.faults: dict[int, list[dict[str, Any]]] = {}

        def add(p: int, fault: dict[str, Any]) -> None:
            self.faults.setdefault(int(p), []).append(fault)

        # meter error (customers; exclusive with each other)
        self.eps0 = np.zeros(P)
        self.eps_since = np.full(P, NEVER)
        self.eps_rate = np.zeros(P)
        # class-2 meters: a small error within class for everyone
        self.eps_class = rng.uniform(-0.008, 0.008, P)
        for kind, share in (("fast", inj.fast), ("slow", inj.slow)):
            for p in self._pick(cust, share, used):
                e = rng.uniform(*inj.error_range) * (1 if kind == "fast" else -1)
                g = self._since()
                self.eps0[p], self.eps_since[p] = e, g
                add(p, {"kind": f"meter_{kind}", "epsilon": e, "since_g": g})
        for p in self._pick(cust, inj.drifting, used):
            g = self._since()
            r = inj.drift_per_day * (1 if rng.random() < 0.5 else -1)
            self.eps_rate[p], self.eps_since[p] = r, g
            add(p, {"kind": "meter_drifting", "epsilon_per_day": r, "since_g": g})
        self.stopped_since = np.full(P, NEVER)
        for p in self._pick(cust, inj.stopped, used):
            g = self._since()
            self.stopped_since[p] = g
            add(p, {"kind": "stopped", "since_g": g})
        self.reversed_since = np.full(P, NEVER)
        for p in self._pick(cust, inj.reversed, used):
            g = self._since()
            self.reversed_since[p] = g
            add(p, {"kind": "reversed", "since_g": g})
        self.theft_frac = np.zeros(P)
        self.theft_since = np.full(P, NEVER)
        for p in self._pick(cust[~self.has_pv[cust]], inj.theft, used):
            f = rng.uniform(*inj.theft_fraction)
            g = self._since()
            self.theft_frac[p], self.theft_since[p] = f, g
            add(p, {"kind": "theft", "fraction": f, "since_g": g, "hours": "22:00-06:00"})
        if self.A > 1:
            for p in self._pick(cust, inj.wrong_area, used):
                wrong = (int(self.true_area[p]) + 1) % self.A
                self.m_archive_area[p] = wrong
                add(
                    p,
                    {
                        "kind": "wrong_area",
                        "archive_area": self.area_ids[wrong],
                        "true_area": self.area_ids[int(self.true_area[p])],
                    },
                )
        for p in self._pick(cust[self.has_pv[cust]], inj.pv_not_collected, used):
            self.bidir_archive[p] = False
            add(p, {"kind": "pv_export_not_collected"})
        self.ct_change: dict[int, tuple[int, float, float]] = {}
        for p in self._pick(cust, inj.multiplier_change, used):
            c1 = float(rng.choice([5.0, 10.0, 20.0]))
            self.ct_true[p] = self.ct_archive[p] = c1
            g = self._since()
            self.ct_change[int(p)] = (g, c1, c1 * 2)
            add(
                p,
                {
                    "kind": "multiplier_change",
                    "since_g": g,
                    "ct_archive": c1,
                    "ct_true_after": c1 * 2,
                },
            )
        self.tariff_mismatch_since = np.full(P, NEVER)
        for p in self._pick(cust, inj.tariff_mismatch, used):
            g = self._since()
            self.tariff_mismatch_since[p] = g
            add(p, {"kind": "total_vs_tariffs", "since_g": g, "stuck_tariff": 3})
        # supply meters with a wrong CT ratio in the archive
        for a in self._pick(np.arange(self.A, dtype=np.int64), inj.supply_ct_wrong):
            true = self.ct_true[a]
            ct_wrong = float(rng.choice([k for k in (20.0, 30.0, 40.0, 60.0, 80.0) if k != true]))
            self.ct_archive[a] = ct_wrong
            add(int(a), {"kind": "supply_ct_wrong", "ct_true": float(true), "ct_archive": ct_wrong})
        # clock faults: meters that freeze by their own clock (DL/T 645-2007 and the meters
        # behind concentrators); Modbus and 1997 meters keep no daily freezes
        clocked = np.array(
            [p for p in range(P) if self.protocol[p] not in ("modbus", "dlt645-1997")],
            dtype=np.int64,
        )
        self.clock: dict[int, list[ClockSegment]] = {}
        for p in self._pick(clocked, inj.clock_drift):
            rate = rng.uniform(*inj.clock_drift_s_per_day) * (1 if rng.random() < 0.5 else -1)
            g = self._since()
            self.clock[int(p)] = [ClockSegment(self.g_time(g), 0.0, rate)]
            add(p, {"kind": "clock_drift", "s_per_day": rate, "since_g": g})
        for p in self._pick(clocked, inj.clock_reset):
            g = self._since()
            t = self.g_time(g)
            to = (EPOCH_2000 - datetime(1970, 1, 1)).total_seconds() - self.utc_offset_s
            segs = self.clock.setdefault(int(p), [])
            segs.append(ClockSegment(t, to - t, 0.0))
            segs.sort(key=lambda s: s.t)
            add(p, {"kind": "clock_reset", "since_g": g, "reset_to": "2000-01-01T00:00:00"})
        # rollover: start some registers just below 1 000 000 kWh
        for p in self._pick(cust, inj.rollover):
            self.m_base_fwd[p] = float(quantise(ROLLOVER - rng.uniform(1.0, 5.0) * self.sc.days))
            tot = self.m_base_fwd[p]
            t4 = quantise(np.array([0.1, 0.3, 0.4]) * tot)
            self.m_base_tar[p] = np.array([*t4, quantise(tot - t4.sum())])
            add(p, {"kind": "rollover_start", "start_reading": self.m_base_fwd[p]})
        # exchanges (not on Modbus units, whose unit id the new meter would reuse)
        exch_pool = np.array(
            [p for p in cust if self.protocol[p] != "modbus" and int(p) not in used], dtype=np.int64
        )
        self.exchanges: list[dict[str, Any]] = []
        self.removed_reporting: set[int] = set()
        for p in self._pick(exch_pool, inj.exchange, used):
            g = self._since()
            old = int(p)
            new = self.M
            self.M += 1
            self.m_point.append(old)
            self.m_install.append(g)
            self.m_remove.append(NEVER)
            self.m_remove[old] = g
            self.m_number.append(f"05{new + 1:010d}")
            start = float(quantise(rng.uniform(0.0, 5.0)))
            self.m_base_fwd.append(start)
            self.m_base_rev.append(0.0)
            self.m_base_tar.append(np.array([0.0, 0.0, start, 0.0]))
            self.m_archive_area.append(self.m_archive_area[old])
            ex = {"point": old, "old": old, "new": new, "g": g}
            self.exchanges.append(ex)
            if rng.random() < inj.removed_reporting:
                self.removed_reporting.add(old)
        self.m_point_arr = np.array(self.m_point)
        self.m_base_fwd_a = np.array(self.m_base_fwd)
        self.m_base_rev_a = np.array(self.m_base_rev)
        self.m_base_tar_a = np.array(self.m_base_tar)
        self.m_adj = np.zeros((self.M, 6))  # point cumulative at install (exchanges)
        self._base6 = np.column_stack([self.m_base_fwd_a, self.m_base_tar_a, self.m_base_rev_a])
        self.m_install_a = np.array(self.m_install)
        self.m_remove_a = np.array(self.m_remove)
        # missing data, outages, spikes
        self.offline: dict[int, tuple[int, int]] = {}
        for p in self._pick(np.arange(P, dtype=np.int64), inj.offline):
            lo, hi = inj.offline_days
            d0 = int(rng.integers(0, self.sc.days))
            n = int(rng.integers(lo, hi + 1))
            self.offline[int(p)] = (d0 * self.S, (d0 + n) * self.S)
        self.conc_offline: dict[int, tuple[int, int]] = {}
        if self.concentrators:
            for c in self._pick(
                np.arange(len(self.concentrators), dtype=np.int64), inj.concentrator_offline
            ):
                lo, hi = inj.concentrator_offline_days
                d0 = int(rng.integers(0, self.sc.days))
                n = int(rng.integers(lo, hi + 1))
                g0 = d0 * self.S + int(rng.integers(0, self.S))
                self.conc_offline[int(c)] = (g0, g0 + n * self.S)
        self.outages: dict[int, tuple[int, int]] = {}
        for a in self._pick(np.arange(self.A, dtype=np.int64), inj.outage):
            g0 = self._since()
            hours = rng.uniform(*inj.outage_hours)
            self.outages[int(a)] = (g0, g0 + max(1, round(hours * 3600 / self.slot_s)))
        self.spikes: dict[int, dict[int, float]] = {}
        for p in self._pick(cust, inj.spike):
            g = int(rng.integers(0, self.sc.days * self.S))
            self.spikes[int(p)] = {g: float(quantise(rng.uniform(20.0, 200.0)))}
        # relays (customer meters with a switch: DL/T 645 and MQTT)
        self.relays: dict[int, RelayState] = {}
        relay_pts = np.array(
            [p for p in cust if self.protocol[p] in ("dlt645-2007", "mqtt")], dtype=np.int64
        )  # 1997 has no remote control, Modbus maps no relay
        for p in relay_pts:
            self.relays[int(p)] = RelayState()
        rel_used: set[int] = set()
        for beh, share in (
            ("ignore", inj.relay_ignore),
            ("late", inj.relay_late),
            ("stuck", inj.relay_stuck),
        ):
            for p in self._pick(relay_pts, share, rel_used):
                self.relays[int(p)].behaviour = beh
        for p in self._pick(relay_pts, inj.protected):
            self.relays[int(p)].protected = True
        # manual reads: kind per (point, day)
        self.manual_kind: dict[tuple[int, int], str] = {}
        manual = [p for p in range(P) if self.protocol[p] == "manual"]
        for p in manual:
            for d in range(self.sc.days + 1):
                u = rng.random()
                kind = "actual"
                if u < inj.manual_skipped:
                    kind = "skipped"
                elif u < inj.manual_skipped + inj.manual_estimated:
                    kind = "estimated"
                elif u < inj.manual_skipped + inj.manual_estimated + inj.manual_mistyped:
                    kind = "mistyped"
                self.manual_kind[(p, d)] = kind
        self.manual_reads: dict[tuple[int, int], dict[str, Any]] = {}
        self.missing_random: dict[int, NDArray[np.int64]] = {}
        self._reporting = np.array([self.protocol[p] != "manual" for p in range(P)])

    def _build_shapes(self) -> None:
        sc = self.sc
        lc = sc.load
        C = self.C
        if lc.source == "synthetic":
            self.load_src: Any = shapes.SyntheticLoad(
                C, self.S, sc.seed, lc.daily_kwh_mean, lc.daily_kwh_spread
            )
        elif lc.source == "ieee_eulv":
            self.load_src = shapes.IeeeEulvLoad(Path(lc.path), C, self.S, sc.seed)
        else:
            self.load_src = shapes.SgscLoad(Path(lc.path), C, self.S, sc.seed)
        self.pv_points = np.flatnonzero(self.has_pv)
        self._pv_index = np.full(self.P, -1, dtype=np.int64)
        self._pv_index[self.pv_points] = np.arange(self.pv_points.size)
        kwp = self.kwp[self.pv_points]
        if lc.pv_source == "synthetic":
            self.pv_src: Any = shapes.SyntheticPv(
                kwp, self.true_area[self.pv_points], self.S, sc.seed
            )
        else:
            self.pv_src = shapes.AusgridPv(Path(lc.pv_path), kwp, self.S, sc.seed)
        hours = (np.arange(self.S) + 0.5) * 24.0 / self.S
        self.night = (hours >= 22.0) | (hours < 6.0)
        self.tou = (
            np.repeat(np.array(lc.tou_hours, dtype=np.int8) - 1, self.S // 24)
            if self.S >= 24
            else np.array(lc.tou_hours[:: 24 // self.S], dtype=np.int8) - 1
        )
        rates = self.rng.uniform(sc.loss.rate_min, sc.loss.rate_max, self.A)
        self.loss_rate_target = rates
        self.loss_fixed = np.zeros(self.A)
        self.loss_k = np.zeros(self.A)

    # ---------------------------------------------------------------- time
    def g_time(self, g: int) -> float:
        """Epoch seconds of global slot boundary ``g``."""
        return self.t0 + g * self.slot_s

    def day_of(self, t: float) -> int:
        """Index of the simulated day containing epoch ``t``."""
        return int((t - self.t0) // 86400)

    def day_date(self, d: int) -> date:
        """Local date of day ``d``."""
        return self.sc.start + timedelta(days=d)

    def iso(self, t: float) -> str:
        """Local ISO timestamp of epoch ``t``."""
        return datetime.fromtimestamp(t, UTC).astimezone(self.zone).isoformat()

    def clock_offset(self, p: int, t: float) -> float:
        """The offset (meter time − true time, s) of point ``p``'s clock at ``t``."""
        segs = self.clock.get(p)
        if not segs:
            return 0.0
        i = bisect.bisect_right([s.t for s in segs], t) - 1
        if i < 0:
            return 0.0
        s = segs[i]
        return s.base + s.rate * (t - s.t) / 86400.0

    def meter_time(self, p: int, t: float) -> datetime:
        """The meter's own local time (naive) at true epoch ``t``."""
        return datetime.fromtimestamp(t + self.clock_offset(p, t) + self.utc_offset_s, UTC).replace(
            tzinfo=None
        )

    def set_clock(self, p: int, t: float, to_local: datetime, *, max_step_s: float | None) -> bool:
        """Set a meter's clock at true ``t`` to the naive local ``to_local``.

        Args:
            p: the point.
            t: true epoch seconds of the command.
            to_local: the time to set (naive local).
            max_step_s: largest correction the meter accepts (broadcast sync), or None.

        Returns:
            True when the meter accepted the correction.
        """
        target = (to_local - datetime(1970, 1, 1)).total_seconds() - self.utc_offset_s
        new_offset = target - t
        step = new_offset - self.clock_offset(p, t)
        if max_step_s is not None and abs(step) > max_step_s:
            return False
        rate = 0.0
        segs = self.clock.setdefault(p, [])
        if segs:
            rate = segs[-1].rate if segs[-1].t <= t else 0.0
        segs[:] = [s for s in segs if s.t <= t] + [ClockSegment(t, new_offset, rate)]
        self.commands.append({"kind": "time_set", "point": p, "at": self.iso(t), "step_s": step})
        # future freezes depend on the clock: recompute the computed days after t
        self._recompute(self.day_of(t), [int(self.true_area[p])])
        return True

    # --------------------------------------------------------------- physics
    def _gain(self, d: int) -> F64:
        g_mid = d * self.S + self.S // 2
        days_since = np.maximum(0.0, (g_mid - self.eps_since) / self.S)
        eps = self.eps_class.copy()
        stepped = g_mid >= self.eps_since
        eps = np.where(stepped, eps + self.eps0, eps)
        eps = eps + self.eps_rate * days_since * (self.eps_since < NEVER)
        out: F64 = 1.0 + eps
        return out

    def epsilon(self, p: int, d: int) -> float:
        """The true relative error of point ``p``'s meter on day ``d``."""
        return float(self._gain(d)[p] - 1.0)

    def _active(self, since: NDArray[np.int64], d: int) -> NDArray[np.bool_]:
        g = d * self.S + np.arange(self.S)
        out: NDArray[np.bool_] = g[None, :] >= since[:, None]
        return out

    def _relay_closed_fraction(self, d: int, pts: NDArray[np.int64]) -> F64:
        """Share of each slot each of ``pts``' relays was closed (n, S)."""
        frac = np.ones((pts.size, self.S))
        if not any(self.relays[p].history for p in self.relays):
            return frac
        row = {int(p): i for i, p in enumerate(pts)}
        t0 = self.g_time(d * self.S)
        lo_e = t0 + np.arange(self.S) * self.slot_s
        hi_e = lo_e + self.slot_s
        t1 = float(hi_e[-1])
        for p, r in self.relays.items():
            if not r.history or p not in row:
                continue
            state = True
            for t, closed in r.history:
                if t <= t0:
                    state = closed
            inside = [(t, c) for t, c in r.history if t0 < t < t1]
            if state and not inside:
                continue
            f = np.zeros(self.S)
            cur_t, cur = t0, state
            for t, closed in [*inside, (t1, state)]:
                if cur:
                    f += np.clip(np.minimum(hi_e, t) - np.maximum(lo_e, cur_t), 0.0, None)
                cur_t, cur = t, closed
            frac[row[p]] = f / self.slot_s
        return frac

    def _shapes(self, d: int) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Customers' load and PV generation of day ``d`` (kWh per slot, float32, cached)."""
        cached = self._shape_cache.get(d)
        if cached is None:
            on = self.day_date(d)
            load = self.load_src.day(d, on).astype(np.float32)
            pv = (self.pv_src.day(d, on) if self.pv_points.size else np.zeros((0, self.S))).astype(
                np.float32
            )
            cached = (load, pv)
            self._shape_cache[d] = cached
        return cached

    def _physics(self, d: int, pts: NDArray[np.int64]) -> dict[str, Any]:
        """Physics and register increments of day ``d`` for the points ``pts`` (sorted).

        ``pts`` must hold whole areas (their supply point and all their customers): the
        transformer's energy depends on every customer of its area. Rows are independent of
        the other areas, so recomputing some areas gives exactly what a full day gives.
        """
        S, A = self.S, self.A
        n = pts.size
        ar = self.true_area[pts]
        sup = self.is_supply[pts]
        cust = ~sup
        load32, pv32 = self._shapes(d)
        load = np.zeros((n, S))
        load[cust] = load32[pts[cust] - A]
        pv = np.zeros((n, S))
        pv_rows = np.flatnonzero(self.has_pv[pts])
        if pv_rows.size:
            pv[pv_rows] = pv32[self._pv_index[pts[pv_rows]]]
        # outages and open relays: no load, no generation (anti-islanding)
        up = np.ones((A, S))
        g = d * S + np.arange(S)
        for a, (g0, g1) in self.outages.items():
            up[a] = ~((g >= g0) & (g < g1))
        avail = up[ar] * self._relay_closed_fraction(d, pts)
        load *= avail
        pv *= avail
        net = load - pv
        imp = np.maximum(net, 0.0)
        exp = np.maximum(-net, 0.0)
        thief = self._active(self.theft_since[pts], d) & self.night[None, :]
        theft = imp * self.theft_frac[pts][:, None] * thief
        imp = imp - theft
        imp[sup] = 0.0
        exp[sup] = 0.0
        theft[sup] = 0.0
        flow = np.zeros((A, S))
        np.add.at(flow, ar[cust], imp[cust] - exp[cust] + theft[cust])
        if not self._calibrated:
            # loss = fixed + k·flow²; fixed takes fixed_share of the target rate
            mean_flow = np.abs(flow).mean(axis=1)
            rate = self.loss_rate_target
            fs = self.sc.loss.fixed_share
            self.loss_fixed = rate * fs * mean_flow
            sq = (flow**2).mean(axis=1)
            self.loss_k = np.where(sq > 0, rate * (1 - fs) * mean_flow / np.maximum(sq, 1e-12), 0.0)
            self._calibrated = True
        loss = (self.loss_fixed[:, None] + self.loss_k[:, None] * flow**2) * up
        supply = flow + loss
        imp[sup] = np.maximum(supply[ar[sup]], 0.0)
        exp[sup] = np.maximum(-supply[ar[sup]], 0.0)
        del load, pv, net, avail
        # registration: error, stopped, reversed, CT
        scale = np.repeat((self._gain(d)[pts] / self.ct_true[pts])[:, None], S, axis=1)
        row = {int(p): i for i, p in enumerate(pts)}
        for p, (g0, _c1, c2) in self.ct_change.items():
            if p in row:
                after = self._active(np.array([g0]), d)[0]
                scale[row[p], after] *= self.ct_true[p] / c2
        scale[self._active(self.stopped_since[pts], d)] = 0.0
        rev = self._active(self.reversed_since[pts], d)
        fwd_meas = np.where(rev, exp, imp)
        rev_meas = np.where(rev, imp, exp)
        inc_fwd = fwd_meas * scale
        inc_rev = rev_meas * scale
        del scale, rev, fwd_meas, rev_meas
        # tariff period by the meter's own clock at the day's start
        shift = np.zeros(n, dtype=np.int64)
        t_day = self.g_time(d * S)
        for p in self.clock:
            if p in row:
                off = float(_fold(np.array(self.clock_offset(p, t_day))))
                shift[row[p]] = round(off / self.slot_s)
        tariff = self.tou[(np.arange(S)[None, :] + shift[:, None]) % S].astype(np.int8)
        counted = ~self._active(self.tariff_mismatch_since[pts], d) | (tariff != 2)
        tar_idx = np.where(counted, tariff, 4).astype(np.int8)
        inc = np.empty((n, 4, S), dtype=np.float32)
        for k, arr in enumerate((inc_fwd, inc_rev, imp, exp)):
            inc[:, k, :] = arr
        del inc_fwd, inc_rev
        sums = inc.sum(axis=2, dtype=np.float64)
        tar_sums = np.zeros((n, 4))
        for k in range(4):
            tar_sums[:, k] = np.where(tar_idx == k, inc[:, 0, :], np.float32(0.0)).sum(
                axis=1, dtype=np.float64
            )
        totals: dict[str, F64] = {}
        ta = ar[cust]
        sup_area = ar[sup]
        totals["supply_import_kwh"] = np.zeros(A)
        totals["supply_import_kwh"][sup_area] = imp[sup].sum(axis=1)
        totals["supply_backfeed_kwh"] = np.zeros(A)
        totals["supply_backfeed_kwh"][sup_area] = exp[sup].sum(axis=1)
        for key, arr in (
            ("customer_import_kwh", imp),
            ("customer_export_kwh", exp),
            ("theft_kwh", theft),
        ):
            totals[key] = np.asarray(
                np.bincount(ta, arr[cust].sum(axis=1), minlength=A), dtype=np.float64
            )
        totals["technical_loss_kwh"] = loss.sum(axis=1)
        totals["outage_slots"] = (up == 0).sum(axis=1).astype(np.float64)
        return {
            "inc": inc,
            "tariff": tar_idx,
            "sums": sums,
            "tar_sums": tar_sums,
            "totals": totals,
            "areas": np.unique(ar),
            "psums": np.stack([imp.sum(axis=1), exp.sum(axis=1), theft.sum(axis=1)]),
        }

    def _compute_day(self, d: int) -> Day:
        S, P = self.S, self.P
        ph = self._physics(d, np.arange(P))
        start = np.column_stack(
            [self._E_fwd, self._E_tar, self._E_rev, self._Ephys_imp, self._Ephys_exp]
        )
        sums = ph["sums"]
        self._E_fwd = self._E_fwd + sums[:, 0]
        self._E_rev = self._E_rev + sums[:, 1]
        self._E_tar = self._E_tar + ph["tar_sums"]
        self._Ephys_imp = self._Ephys_imp + sums[:, 2]
        self._Ephys_exp = self._Ephys_exp + sums[:, 3]
        # missing slot readings (delivery, not physics)
        mrng = np.random.default_rng([self.sc.seed, 61, d])
        missing = mrng.random((P, S)) < self.sc.injections.missing_slots
        missing[:, :] &= self._reporting[:, None]
        self.missing_random[d] = np.argwhere(missing)
        g = d * S + np.arange(S)
        for p, (g0, g1) in self.offline.items():
            missing[p] |= (g >= g0) & (g < g1)
        for c, (g0, g1) in self.conc_offline.items():
            cpts = self.concentrators[c]["points"]
            missing[cpts] |= ((g >= g0) & (g < g1))[None, :]
        self.point_days[d] = ph["psums"]
        return Day(d, start, ph["inc"], ph["tariff"], missing, ph["totals"])

    def _state(self) -> tuple[F64, ...]:
        return (
            self._E_fwd.copy(),
            self._E_rev.copy(),
            self._E_tar.copy(),
            self._Ephys_imp.copy(),
            self._Ephys_exp.copy(),
        )

    def _recompute(self, d_from: int, areas: list[int]) -> None:
        """Recompute the computed days from ``d_from`` for whole areas after a live change
        (a relay moved, a clock was set): only those areas' rows change."""
        days = sorted(k for k in self.days if k >= d_from)
        if not days:
            return
        pts = np.flatnonzero(np.isin(self.true_area, areas))
        start = self.days[days[0]].start[pts].copy()
        for k in days:
            day = self.days[k]
            day.start[pts] = start
            ph = self._physics(k, pts)
            day.inc[pts] = ph["inc"]
            day.tariff[pts] = ph["tariff"]
            for key, arr in ph["totals"].items():
                day.area_totals[key][ph["areas"]] = arr[ph["areas"]]
            self.point_days[k][:, pts] = ph["psums"]
            sums = ph["sums"]
            start = start.copy()
            start[:, 0] += sums[:, 0]
            start[:, 1:5] += ph["tar_sums"]
            start[:, 5] += sums[:, 1]
            start[:, 6] += sums[:, 2]
            start[:, 7] += sums[:, 3]
            nxt = self._day_start_state.get(k + 1)
            if nxt is not None:
                e_fwd, e_rev, e_tar, e_imp, e_exp = nxt
                e_fwd[pts], e_tar[pts], e_rev[pts] = start[:, 0], start[:, 1:5], start[:, 5]
                e_imp[pts], e_exp[pts] = start[:, 6], start[:, 7]
            self._apply_exchanges(day)
        self._E_fwd[pts], self._E_tar[pts], self._E_rev[pts] = (
            start[:, 0],
            start[:, 1:5],
            start[:, 5],
        )
        self._Ephys_imp[pts], self._Ephys_exp[pts] = start[:, 6], start[:, 7]
        for k in days:
            if k in self.freezes and (k == 0 or (k - 1) in self.days):
                self.freezes[k] = self._compute_freeze(k)
            self._manual_reads(k)

    def _store_day(self, d: int) -> None:
        self._day_start_state[d] = self._state()
        day = self._compute_day(d)
        self.days[d] = day
        self.area_days[d] = day.area_totals
        self._apply_exchanges(day)
        if d >= 1 and (d - 1) in self.days:
            self.freezes[d] = self._compute_freeze(d)
        elif d == 0:
            self.freezes[0] = self._compute_freeze(0)
        self._manual_reads(d)
        for old in [k for k in self.days if k < d - self.keep_days + 1]:
            del self.days[old]
        for old in [k for k in self._shape_cache if k < d - self.keep_days + 1]:
            del self._shape_cache[old]
        for old in [k for k in self._day_start_state if k < d - self.keep_days]:
            del self._day_start_state[old]

    def _manual_reads(self, d: int) -> None:
        """Reading-book reads of manually read meters on day ``d`` (with 估抄/漏抄/错抄).

        * 漏抄 (``skipped``): no read in the book for the day.
        * 估抄 (``estimated``): the reader writes a value without visiting the meter, from the
          book: the previous book value plus the book's average daily use × the days since,
          rounded to whole kWh (``method`` ``average``), or plus a guessed daily use rounded
          up to a round figure (``round``). The register keeps going, so the next real read
          catches up.
        * 错抄 (``mistyped``): the meter was read, the book value is wrong: two adjacent digits
          transposed (``transposition``), one digit misread (``digit_slip``: 3↔8, 1↔7, …),
          the decimal point one place off (``decimal_slip``: ×10 or ÷10), or another manual
          meter of the area read instead (``neighbour``).
        """
        hh, mm = (int(x) for x in self.sc.manual_read_time.split(":"))
        base_t = self.g_time(d * self.S) + hh * 3600 + mm * 60
        for m in range(self.M):
            p = self.m_point[m]
            if self.protocol[p] != "manual":
                continue
            rng = np.random.default_rng([self.sc.seed, 91, m, d])
            t = base_t + rng.uniform(0.0, self.sc.manual_read_jitter_min * 60.0)
            if not self.meter_installed(m, t) or self.day_of(t) not in self.days:
                continue
            true = self._shown_fwd(m, t)
            kind = self.manual_kind.get((p, d), "actual")
            value: float | None = true
            method: str | None = None
            if kind == "skipped":
                value = None
            elif kind == "estimated":
                value, method = self._estimated_read(m, d, true, rng)
            elif kind == "mistyped":
                value, method = self._mistyped_read(m, t, true, rng)
            self.manual_reads[(m, d)] = {
                "meter": self.m_number[m],
                "day": d,
                "t": t,
                "ts": self.iso(t),
                "kind": kind,
                "method": method,
                "true_value": true,
                "value": value,
            }

    def _shown_fwd(self, m: int, t: float) -> float:
        """What meter ``m``'s forward total register shows at ``t``."""
        p = self.m_point[m]
        exact = self.m_base6[m] - self.m_adj[m] + self._point_cum_at(np.array([p]),
                                                                    np.array([t]))[0]
        return float(shown(exact)[0])

    def _estimated_read(
        self, m: int, d: int, true: float, rng: np.random.Generator
    ) -> tuple[float, str]:
        """An invented read from the book (see :meth:`_manual_reads`)."""
        book = sorted(
            (dd, r["value"])
            for (mm_, dd), r in self.manual_reads.items()
            if mm_ == m and dd < d and r["value"] is not None
        )
        guess = float(rng.uniform(4.0, 10.0))
        if not book:  # nothing to start from: a guess around what the meter might show
            return float(quantise(true + round(guess))), "round"
        last_d, last_v = book[-1]
        days = d - last_d
        recent = [b for b in book if b[0] >= last_d - 30]
        if rng.random() < 0.5 and len(recent) >= 2 and recent[-1][0] > recent[0][0]:
            avg = (recent[-1][1] - recent[0][1]) / (recent[-1][0] - recent[0][0])
            if avg > 0:
                return float(quantise(last_v + round(avg * days))), "average"
        return float(np.ceil((last_v + guess * days) / 10.0) * 10.0), "round"

    def _mistyped_read(
        self, m: int, t: float, true: float, rng: np.random.Generator
    ) -> tuple[float, str]:
        """A wrong book value for a read taken (see :meth:`_manual_reads`)."""
        p = self.m_point[m]
        whole = int(np.floor(true))
        frac = round(true - whole, 2)
        digits = list(str(whole))
        for _ in range(8):
            how = str(rng.choice(["transposition", "digit_slip", "decimal_slip", "neighbour"]))
            if how == "transposition" and len(digits) >= 2:
                i = int(rng.integers(0, len(digits) - 1))
                if digits[i] != digits[i + 1] and not (i == 0 and digits[1] == "0"):
                    sw = digits.copy()
                    sw[i], sw[i + 1] = sw[i + 1], sw[i]
                    return float(quantise(int("".join(sw)) + frac)), how
            elif how == "digit_slip":
                i = int(rng.integers(0, len(digits)))
                new = int(rng.choice(LOOKALIKE[int(digits[i])]))
                if not (i == 0 and new == 0):
                    sl = digits.copy()
                    sl[i] = str(new)
                    return float(quantise(int("".join(sl)) + frac)), how
            elif how == "decimal_slip":
                factor = 10.0 if rng.random() < 0.5 else 0.1
                return float(quantise(true * factor % ROLLOVER)), how
            elif how == "neighbour":
                area = self.m_archive_area[m]
                others = [
                    o for o in range(self.M)
                    if o != m and self.protocol[self.m_point[o]] == "manual"
                    and self.m_archive_area[o] == area and self.meter_installed(o, t)
                    and self.m_point[o] != p
                ]
                if others:
                    return self._shown_fwd(int(rng.choice(others)), t), how
        return float(quantise(true * 10.0 % ROLLOVER)), "decimal_slip"

    def ensure_day(self, d: int) -> None:
        """Compute days up to and including ``d + 1`` (the look-ahead holds the next freeze)."""
        last = max(self._day_start_state, default=-1)
        for k in range(last + 1, d + 2):
            self._store_day(k)

    def ensure_time(self, t: float) -> None:
        """Compute everything needed to answer questions about epoch ``t``."""
        self.ensure_day(max(0, self.day_of(t)))

    # --------------------------------------------------------------- registers
    def _apply_exchanges(self, day: Day) -> None:
        for ex in self.exchanges:
            g = ex["g"]
            if g // self.S != day.index:
                continue
            s = g % self.S
            p, old, new = ex["point"], ex["old"], ex["new"]
            e = self._cum(day, np.array([p]), np.array([s]), np.zeros(1))[0, :6]
            self.m_adj[new] = e
            old_exact = self.m_base6[old] - self.m_adj[old] + e
            ex["old_end_exact"] = old_exact
            ex["old_end"] = float(shown(old_exact[0]))
            ex["old_end_rev"] = float(shown(old_exact[5]))
            ex["new_start"] = float(self.m_base_fwd_a[new])
            ex["new_start_rev"] = float(self.m_base_rev_a[new])

    @property
    def m_base6(self) -> F64:
        """Starting readings of every meter: [total, t1..t4, reverse] (M, 6)."""
        return self._base6

    def _locate(self, t: F64) -> tuple[NDArray[np.int64], NDArray[np.int64], F64]:
        d = np.floor((t - self.t0) / 86400.0).astype(np.int64)
        x = (t - (self.t0 + d * 86400.0)) / self.slot_s
        s = np.clip(np.floor(x).astype(np.int64), 0, self.S - 1)
        return d, s, x - s

    @staticmethod
    def _cum(day: Day, p: NDArray[np.int64], s: NDArray[np.int64], frac: F64) -> F64:
        """Cumulative [total, t1..t4, reverse, physical import, physical export] at slot
        ``s`` plus ``frac`` of it, for points ``p`` (n, 8)."""
        n = p.size
        idx = np.arange(n)
        inc = day.inc[p].astype(np.float64)  # (n, 4, S)
        before = np.cumsum(inc, axis=2)[idx, :, s] - inc[idx, :, s]  # Σ inc[:s]
        part = before + frac[:, None] * inc[idx, :, s]
        out = day.start[p].copy()
        out[:, 0] += part[:, 0]
        out[:, 5] += part[:, 1]
        out[:, 6] += part[:, 2]
        out[:, 7] += part[:, 3]
        fwd = inc[:, 0, :]
        tar = day.tariff[p]
        S = fwd.shape[1]
        upto = np.arange(S)[None, :] < s[:, None]
        for k in range(4):
            mk = tar == k
            out[:, 1 + k] += np.where(mk & upto, fwd, 0.0).sum(axis=1) + frac * np.where(
                mk[idx, s], fwd[idx, s], 0.0
            )
        return out

    @staticmethod
    def _cum_one(day: Day, p: int, s: int, frac: float) -> F64:
        """:meth:`_cum` for one point (the path of single device reads)."""
        inc = day.inc[p].astype(np.float64)  # (4, S)
        part = inc[:, :s].sum(axis=1) + frac * inc[:, s]
        out = day.start[p].copy()
        out[0] += part[0]
        out[5] += part[1]
        out[6] += part[2]
        out[7] += part[3]
        tar = day.tariff[p]
        out[1:5] += np.bincount(tar[:s], weights=inc[0, :s], minlength=5)[:4]
        if tar[s] < 4:
            out[1 + tar[s]] += frac * inc[0, s]
        return out

    def _point_cum_at(self, pts: NDArray[np.int64], t: F64) -> F64:
        """Exact registered cumulative [total, t1..t4, reverse] of points at instants (n, 6).

        The days holding the instants must be computed; instants before the run give zero.
        """
        out = np.zeros((pts.size, 6))
        d, s, frac = self._locate(t)
        for dd in np.unique(d):
            if dd < 0:
                continue
            day = self.days[int(dd)]
            at_start = (d == dd) & (s == 0) & (frac == 0.0)
            if at_start.any():
                out[at_start] = day.start[pts[at_start], :6]
                if at_start.sum() == (d == dd).sum():
                    continue
            if pts.size == 1:
                out[0] = self._cum_one(day, int(pts[0]), int(s[0]), float(frac[0]))[:6]
                continue
            sel = np.flatnonzero((d == dd) & ~at_start)
            out[sel] = self._cum(day, pts[sel], s[sel], frac[sel])[:, :6]
        return out

    def physical_cum(self, p: int, t: float) -> tuple[float, float]:
        """Physical cumulative energy (forward, reverse, primary) through point ``p`` at ``t``."""
        self.ensure_time(t)
        d, s, f = self._locate(np.array([t]))
        if d[0] < 0:
            return 0.0, 0.0
        day = self.days[int(d[0])]
        c = self._cum(day, np.array([p]), s, f)[0]
        return float(c[6]), float(c[7])

    def _install_bounds(self) -> tuple[F64, F64]:
        lo = np.where(self.m_install_a < 0, -np.inf, self.t0 + self.m_install_a * self.slot_s)
        hi = np.where(
            self.m_remove_a >= NEVER,
            np.inf,
            self.t0 + np.minimum(self.m_remove_a, 2**40) * float(self.slot_s),
        )
        return lo, hi

    def meter_installed(self, m: int, t: float) -> bool:
        """True when meter ``m`` is installed at ``t``."""
        lo, hi = self.m_install[m], self.m_remove[m]
        return (lo < 0 or t >= self.g_time(lo)) and (hi >= NEVER or t < self.g_time(hi))

    def registers_exact(self, m: int, t: float) -> F64:
        """Meter ``m``'s exact unrolled registers at ``t``: [total, t1..t4, reverse]."""
        self.ensure_time(t)
        hi = self.m_remove[m]
        if hi < NEVER and t >= self.g_time(hi):
            ex = next(e for e in self.exchanges if e["old"] == m)
            if "old_end_exact" in ex:
                end: F64 = ex["old_end_exact"].copy()
                return end
            t = self.g_time(hi)
        lo = self.m_install[m]
        if lo >= 0:
            t = max(t, self.g_time(lo))
        p = self.m_point[m]
        out: F64 = (
            self.m_base6[m] - self.m_adj[m] + self._point_cum_at(np.array([p]), np.array([t]))[0]
        )
        return out

    def registers(self, m: int, t: float) -> F64:
        """What meter ``m``'s registers show at ``t`` (rolled over, truncated to 0.01 kWh)."""
        out: F64 = shown(self.registers_exact(m, t))
        return out

    def _compute_freeze(self, b: int) -> Freeze:
        """Freezes of every meter at local midnight ``b`` by its own clock."""
        mid = self.g_time(b * self.S)
        offs = np.zeros(self.P)
        for p in self.clock:
            offs[p] = self.clock_offset(p, mid)
        inst_p = mid - _fold(offs)
        if b == 0:
            inst_p = np.maximum(inst_p, mid)
        inst = inst_p[self.m_point_arr]
        lo, hi = self._install_bounds()
        valid = (inst >= lo) & (inst < hi)
        exact = self.m_base6 - self.m_adj + self._point_cum_at(self.m_point_arr, inst)
        exact[~valid] = np.nan
        label = inst + offs[self.m_point_arr] + self.utc_offset_s
        return Freeze(shown(exact), exact, inst, label, valid, self._midnight_polls(b))

    @property
    def poll_meters(self) -> NDArray[np.int64]:
        """Meter records without daily freezes (Modbus, DL/T 645-1997): the master station
        takes their boundary values from the register polls around 00:00."""
        ms = getattr(self, "_poll_meters", None)
        if ms is None:
            ms = np.array(
                [
                    m
                    for m in range(self.M)
                    if self.protocol[self.m_point[m]] in ("modbus", "dlt645-1997")
                ],
                dtype=np.int64,
            )
            self._poll_meters = ms
        return ms

    @property
    def poll_reach(self) -> int:
        """Polls on each side of 00:00 within the scenario's ``freeze_tolerance_min``."""
        return min(self.sc.freeze_tolerance_min // self.sc.interval, self.S // 2)

    def _midnight_polls(self, b: int) -> F64:
        """What the polls within the freeze tolerance of local midnight ``b`` read from the
        meters without daily freezes: (n, 2k + 1, 2) forward total (with any injected spike,
        as a DL/T 645-1997 meter answers it) and reverse, as shown; row ``j`` is the poll at
        slot boundary ``b·S − k + j``. NaN before the run and where the meter is not installed.
        Kept with the freeze because the days around an old midnight leave memory."""
        ms = self.poll_meters
        k = self.poll_reach
        out = np.full((ms.size, 2 * k + 1, 2), np.nan)
        if ms.size == 0:
            return out
        lo, hi = self._install_bounds()
        for j in range(-k, k + 1):
            g = b * self.S + j
            if g < 0:
                continue
            t = self.g_time(g)
            ok = (lo[ms] <= t) & (t < hi[ms])
            if not ok.any():
                continue
            sel = ms[ok]
            exact = (
                self.m_base6[sel]
                - self.m_adj[sel]
                + self._point_cum_at(self.m_point_arr[sel], np.full(sel.size, t))
            )
            spike = np.array(
                [
                    self.spike_at(int(m), g)
                    if self.protocol[self.m_point[m]] == "dlt645-1997"
                    else 0.0
                    for m in sel
                ]
            )
            out[ok, j + k, 0] = np.mod(shown(exact[:, 0]) + spike, ROLLOVER)
            out[ok, j + k, 1] = shown(exact[:, 5])
        return out

    def freeze_before(self, m: int, t: float, n: int = 1) -> tuple[F64, float] | None:
        """The ``n``-th most recent daily freeze of meter ``m`` taken before ``t``.

        Returns:
            (values [total, t1..t4, reverse], label as epoch seconds of the meter's naive local
            time), or None when the meter holds no such freeze.
        """
        self.ensure_time(t)
        found = 0
        for b in sorted(self.freezes, reverse=True):
            fz = self.freezes[b]
            if fz.instant[m] <= t and fz.valid[m]:
                found += 1
                if found == n:
                    return fz.values[m], float(fz.label[m])
        return None

    # ------------------------------------------------------------- delivery
    def silent(self, m: int, t: float) -> bool:
        """True when meter ``m`` does not answer at ``t`` (offline, missing slot, removed)."""
        p = self.m_point[m]
        if not self.meter_installed(m, t):
            if self.m_remove[m] < NEVER and t >= self.g_time(self.m_remove[m]):
                return m not in self.removed_reporting
            return True
        d = self.day_of(t)
        if d < 0:
            return False
        self.ensure_day(d)
        day = self.days.get(d)
        if day is None:
            return False
        s = min(int((t - self.g_time(d * self.S)) / self.slot_s), self.S - 1)
        return bool(day.missing[p, s])

    def spike_at(self, m: int, g: int) -> float:
        """Extra kWh a glitching meter reports at slot boundary ``g`` (0 when none)."""
        return self.spikes.get(self.m_point[m], {}).get(g, 0.0)

    def instantaneous(self, m: int, t: float) -> dict[str, float]:
        """Voltage, current, power, power factor and frequency of meter ``m`` at ``t``."""
        p = self.m_point[m]
        d = max(0, self.day_of(t))
        self.ensure_day(d)
        day = self.days[d]
        s = min(max(0, int((t - self.g_time(d * self.S)) / self.slot_s)), self.S - 1)
        h = self.slot_s / 3600.0
        kwh = float(day.inc[p, 2, s]) - float(day.inc[p, 3, s])
        kw = kwh / h / self.ct_true[p]
        if not self.meter_installed(m, t):
            kw = 0.0
        rng = np.random.default_rng([self.sc.seed, 71, p, int(t // 60)])
        v = float(np.round((230.0 if self.is_supply[p] else 220.0) + rng.normal(0, 3.0), 1))
        if self.outage_at(p, t):
            v = 0.0
        pf = float(np.round(rng.uniform(0.85, 0.99), 3))
        cur = abs(kw) * 1000.0 / (v * pf) if v > 0 else 0.0
        if self.is_supply[p]:
            cur /= 3.0
        return {
            "voltage_a_v": v,
            "current_a_a": float(np.round(cur, 3)),
            "active_power_total_kw": float(np.round(kw, 4)),
            "power_factor_total": pf,
            "frequency_hz": float(np.round(50.0 + rng.normal(0, 0.02), 2)),
        }

    def outage_at(self, p: int, t: float) -> bool:
        """True when point ``p``'s area is in an outage at ``t``."""
        a = int(self.true_area[p])
        if a not in self.outages:
            return False
        g0, g1 = self.outages[a]
        return self.g_time(g0) <= t < self.g_time(g1)

    def power_down_count(self, p: int, t: float) -> int:
        """Number of power-down events point ``p``'s meter recorded up to ``t``."""
        a = int(self.true_area[p])
        if a not in self.outages:
            return 0
        return int(t >= self.g_time(self.outages[a][0]))

    # ------------------------------------------------------------------ relay
    def relay_command(self, m: int, t: float, action: str) -> str:
        """Apply a remote-control command to meter ``m`` at ``t``.

        Args:
            m: meter record.
            t: epoch seconds.
            action: ``trip``, ``close``, ``close_allowed``, ``protect`` or ``unprotect``.

        Returns:
            ``accepted``, ``refused_protected`` or ``no_relay``.
        """
        p = self.m_point[m]
        r = self.relays.get(p)
        if r is None:
            return "no_relay"
        self.commands.append(
            {
                "kind": action,
                "point": p,
                "meter": self.m_number[m],
                "at": self.iso(t),
                "behaviour": r.behaviour,
            }
        )
        if action == "protect":
            r.protected = True
            return "accepted"
        if action == "unprotect":
            r.protected = False
            return "accepted"
        if action == "trip" and r.protected:
            return "refused_protected"
        if r.behaviour == "ignore":
            return "accepted"
        want_closed = action != "trip"
        r.command_trip = not want_closed
        if r.behaviour == "stuck":
            return "accepted"
        delay = self.sc.injections.relay_late_s if r.behaviour == "late" else 0.0
        if action == "close_allowed":
            press = float(np.random.default_rng([self.sc.seed, 81, p, int(t)]).uniform(60, 1800))
            r.close_allowed_at = t
            self._relay_move(p, t + delay + press, True)
        else:
            self._relay_move(p, t + delay, want_closed)
        return "accepted"

    def _relay_move(self, p: int, at: float, closed: bool) -> None:
        r = self.relays[p]
        r.history = [h for h in r.history if h[0] < at] + [(at, closed)]
        self._recompute(max(0, self.day_of(at)), [int(self.true_area[p])])

    def relay_status(self, m: int, t: float) -> tuple[bool, bool, bool]:
        """(relay closed, command says trip, protected) of meter ``m`` at ``t``."""
        p = self.m_point[m]
        r = self.relays.get(p)
        if r is None:
            return True, False, False
        closed = True
        for at, state in r.history:
            if at <= t:
                closed = state
        return closed, r.command_trip, r.protected

    def status_word_3(self, m: int, t: float) -> int:
        """Running status word 3 (protocols.md §8.4): bit4 relay open, bit6 trip, bit12 保电."""
        closed, trip, prot = self.relay_status(m, t)
        word = 0
        if not closed:
            word |= 1 << 4
        if trip:
            word |= 1 << 6
        if trip and closed:
            word |= 1 << 7
        if prot:
            word |= 1 << 12
        return word

    # ----------------------------------------------------------- vectorised
    def registers_many(self, ms: NDArray[np.int64], t: float) -> F64:
        """What meters ``ms`` show at ``t``: (n, 6) [total, t1..t4, reverse], NaN if absent."""
        self.ensure_time(t)
        lo, hi = self._install_bounds()
        tt = np.clip(np.full(ms.size, t), lo[ms], hi[ms])
        removed = tt < t
        not_yet = tt > t
        tt[removed | not_yet] = t
        exact = self.m_base6[ms] - self.m_adj[ms] + self._point_cum_at(self.m_point_arr[ms], tt)
        for i in np.flatnonzero(removed):
            exact[i] = self.registers_exact(int(ms[i]), t)
        exact[not_yet] = np.nan
        out: F64 = shown(exact)
        return out

    def silent_many(self, ms: NDArray[np.int64], t: float) -> NDArray[np.bool_]:
        """Vectorised :meth:`silent`."""
        return np.array([self.silent(int(m), t) for m in ms], dtype=bool)

    def nbytes(self) -> int:
        """Bytes held by the world's arrays (cached days, freezes, per-meter state)."""
        total = 0
        for day in self.days.values():
            total += day.start.nbytes + day.inc.nbytes + day.tariff.nbytes + day.missing.nbytes
        for fz in self.freezes.values():
            total += (
                fz.values.nbytes
                + fz.exact.nbytes
                + fz.instant.nbytes
                + fz.label.nbytes
                + fz.valid.nbytes
                + (fz.polls.nbytes if fz.polls is not None else 0)
            )
        for load, pv in self._shape_cache.values():
            total += load.nbytes + pv.nbytes
        for st in self._day_start_state.values():
            total += sum(x.nbytes for x in st)
        for arr in (
            self._base6,
            self.m_adj,
            self.eps0,
            self.eps_class,
            self.eps_since,
            self.eps_rate,
            self.theft_frac,
            self.theft_since,
            self.stopped_since,
            self.reversed_since,
            self.tariff_mismatch_since,
            self.ct_true,
            self.ct_archive,
            self.true_area,
            self.kwp,
        ):
            total += arr.nbytes
        return total
