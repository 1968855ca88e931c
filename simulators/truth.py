"""Ground truth of a simulated run as one JSON document (schema in ``simulators/README.md``).

Per area and local day: the *physical* energies (transformer import and back-feed, customers'
import and export through their meters, technical loss, theft — they balance exactly) and the
*registered* figures a master station would compute from the meters' daily freezes (for
meters without freezes, the register polls at or nearest to 00:00 within the freeze tolerance)
through the archive (CT multipliers as archived, reverse terms only for meters archived as
bidirectional, customers counted in their archived area), with a ``computable`` flag saying
whether every term can be delivered by the meters' channels. Per meter: its true error,
faults with dates, mapping, exchanges, missing, estimated and mistyped reads.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from simulators.world import NEVER, ROLLOVER, World

SCHEMA = "meterhub-sim-truth/1"

# the ``kind`` of ``analyze suspects`` (CONTRACTS.md) that each injected fault should produce
SUSPECT_KIND = {
    "meter_fast": "meter_error",
    "meter_slow": "meter_error",
    "meter_drifting": "meter_error",
    "stopped": "stopped_meter",
    "reversed": "reversed_meter",
    "theft": "theft",
    "wrong_area": "wrong_area",
    "pv_export_not_collected": "pv_export_missing",
    "supply_ct_wrong": "supply_ratio",
}


def _r(x: float) -> float:
    return round(float(x), 6)


def _diff(end: float, start: float) -> float:
    return float((end - start) % ROLLOVER)


class Delivery:
    """Which daily-frozen values each meter's channel can deliver during the run."""

    def __init__(self, world: World, days: int | None = None) -> None:
        self.w = world
        n = world.sc.days if days is None else days
        self.run_slots = n * world.S + world.S  # run plus the next day's reads
        # polls answered until the run ends, one simulated hour after the last midnight
        self.end_g = n * world.S + world.S // 24
        self.random_missing = {
            (int(p), d * world.S + int(s))
            for d, idx in world.missing_random.items()
            for p, s in idx
        }
        self._poll_row = {int(m): i for i, m in enumerate(world.poll_meters)}
        k = world.poll_reach
        # 00:00 first, then outwards; the earlier poll first on a tie
        self._poll_order = [0] + [j for i in range(1, k + 1) for j in (-i, i)]

    def _offline(self, window: tuple[int, int] | None, g: int) -> bool:
        return window is not None and window[0] <= g < window[1]

    def frozen(self, m: int, b: int) -> bool:
        """True when meter ``m``'s freeze at local midnight ``b`` reaches the master station."""
        w = self.w
        p = w.m_point[m]
        proto = w.protocol[p]
        S = w.S
        off = w.offline.get(p)
        if proto == "manual":
            return w.manual_kind.get((p, b), "actual") != "skipped"
        if proto in ("modbus", "dlt645-1997"):
            # no daily freeze register: the value at 00:00 itself needs the 00:00 poll
            return self.answered(m, b * S)
        if proto == "mqtt":
            c = int(w.concentrator_of[p])
            coff = w.conc_offline.get(c)
            # read at 00:05 of day b, then re-read on the following reread_days midnights
            for k in range(w.sc.mqtt.reread_days + 1):
                g = (b + k) * S
                if g >= self.run_slots:
                    break
                if (
                    not self._offline(off, g)
                    and not self._offline(coff, g - 1)
                    and not self._offline(coff, g)
                    and (p, g) not in self.random_missing
                ):
                    return True
            return False
        # DL/T 645: the meter keeps 62 freezes; readable whenever it answers again
        if off is None:
            return True
        return not (off[0] <= b * S and off[1] >= self.run_slots)

    def answered(self, m: int, g: int) -> bool:
        """True when meter ``m`` answers the poll at slot boundary ``g`` during the run (it is
        silent for a whole slot that is offline or randomly missing)."""
        p = self.w.m_point[m]
        return (
            0 <= g < self.end_g
            and not self._offline(self.w.offline.get(p), g)
            and (p, g) not in self.random_missing
        )

    def boundary(self, m: int, b: int) -> tuple[float, float] | None:
        """(forward, reverse) register values a master station takes for a meter without
        daily freezes (Modbus, DL/T 645-1997) at local midnight ``b``, or None.

        As CONTRACTS.md's same-period balance (``storage.boundaries.boundary_values``): the
        register read at the 00:00 poll when that poll is answered, else the answered poll
        nearest to 00:00 within ``freeze_tolerance_min`` (the earlier one on a tie), with the
        value the meter reported there; None when no poll within the tolerance is answered.
        """
        w = self.w
        fz = w.freezes.get(b)
        row = self._poll_row.get(m)
        if fz is None or fz.polls is None or row is None:
            return None
        k = w.poll_reach
        for j in self._poll_order:
            v = fz.polls[row, j + k]
            if not np.isnan(v[0]) and self.answered(m, b * w.S + j):
                return float(v[0]), float(v[1])
        return None


def area_days(world: World, days: int) -> list[dict[str, Any]]:
    """Truth per area and day for the first ``days`` simulated days."""
    w = world
    dl = Delivery(w, days)
    out: list[dict[str, Any]] = []
    ex_by_old = {e["old"]: e for e in w.exchanges}
    ex_by_new = {e["new"]: e for e in w.exchanges}
    for a in range(w.A):
        area_out: dict[str, Any] = {
            "id": w.area_ids[a],
            "supply_meter": w.m_number[a],
            "customers_physical": int((w.true_area[w.customers] == a).sum()),
            "loss_fixed_kwh_per_slot": _r(w.loss_fixed[a]),
            "loss_k_per_kwh": _r(w.loss_k[a]),
            "outage": None,
            "days": [],
        }
        if a in w.outages:
            g0, g1 = w.outages[a]
            area_out["outage"] = {"from": w.iso(w.g_time(g0)), "to": w.iso(w.g_time(g1))}
        out.append(area_out)
    for d in range(days):
        fz0, fz1 = w.freezes.get(d), w.freezes.get(d + 1)
        if fz0 is None or fz1 is None or d not in w.area_days:
            break
        T = w.area_days[d]
        reg = np.zeros((w.A, 4))  # supply fwd, supply rev, customer fwd, customer rev
        missing: list[list[str]] = [[] for _ in range(w.A)]
        for m in range(w.M):
            p = w.m_point[m]
            a = w.m_archive_area[m]
            start: float | None = None
            end: float | None = None
            start_f = start_r = end_f = end_r = 0.0
            polled = w.protocol[p] in ("modbus", "dlt645-1997")
            if fz0.valid[m]:
                start_f, start_r = fz0.values[m, 0], fz0.values[m, 5]
                start = 1.0
                v = dl.boundary(m, d) if polled else None
                if v is not None:
                    start_f, start_r = v
                elif polled or not dl.frozen(m, d):
                    missing[a].append(w.m_number[m])
            elif m in ex_by_new and ex_by_new[m]["g"] // w.S == d:
                e = ex_by_new[m]
                start_f, start_r, start = e["new_start"], e["new_start_rev"], 1.0
            if fz1.valid[m]:
                end_f, end_r = fz1.values[m, 0], fz1.values[m, 5]
                end = 1.0
                v = dl.boundary(m, d + 1) if polled else None
                if v is not None:
                    end_f, end_r = v
                elif polled or not dl.frozen(m, d + 1):
                    missing[a].append(w.m_number[m])
            elif m in ex_by_old and ex_by_old[m]["g"] // w.S == d:
                e = ex_by_old[m]
                end_f, end_r, end = e["old_end"], e["old_end_rev"], 1.0
            if start is None or end is None:
                continue
            ct = w.ct_archive[p]
            fwd = _diff(end_f, start_f) * ct
            rev = _diff(end_r, start_r) * ct if w.bidir_archive[p] else 0.0
            if w.is_supply[p]:
                reg[a, 0] += fwd
                reg[a, 1] += rev
            else:
                reg[a, 2] += fwd
                reg[a, 3] += rev
        for a in range(w.A):
            phys_supply = T["supply_import_kwh"][a] + T["customer_export_kwh"][a]
            phys_sales = T["customer_import_kwh"][a] + T["supply_backfeed_kwh"][a]
            r_supply = reg[a, 0] + reg[a, 3]
            r_sales = reg[a, 2] + reg[a, 1]
            miss = sorted(set(missing[a]))
            out[a]["days"].append(
                {
                    "date": w.day_date(d).isoformat(),
                    "physical": {
                        "transformer_import_kwh": _r(T["supply_import_kwh"][a]),
                        "transformer_backfeed_kwh": _r(T["supply_backfeed_kwh"][a]),
                        "customer_import_kwh": _r(T["customer_import_kwh"][a]),
                        "customer_export_kwh": _r(T["customer_export_kwh"][a]),
                        "technical_loss_kwh": _r(T["technical_loss_kwh"][a]),
                        "theft_kwh": _r(T["theft_kwh"][a]),
                        "supply_kwh": _r(phys_supply),
                        "sales_kwh": _r(phys_sales),
                        "loss_kwh": _r(phys_supply - phys_sales),
                        "rate": _r(100.0 * (phys_supply - phys_sales) / phys_supply)
                        if phys_supply > 0
                        else None,
                        "outage_slots": int(T["outage_slots"][a]),
                    },
                    "registered": {
                        "supply_forward_kwh": _r(reg[a, 0]),
                        "supply_reverse_kwh": _r(reg[a, 1]),
                        "customer_forward_kwh": _r(reg[a, 2]),
                        "customer_reverse_kwh": _r(reg[a, 3]),
                        "supply_kwh": _r(r_supply),
                        "sales_kwh": _r(r_sales),
                        "loss_kwh": _r(r_supply - r_sales),
                        "rate": _r(100.0 * (r_supply - r_sales) / r_supply)
                        if r_supply > 0
                        else None,
                        "computable": not miss,
                        "missing_terms": miss,
                    },
                }
            )
    return out


def _fault_out(w: World, f: dict[str, Any]) -> dict[str, Any]:
    out = {
        k: (float(v) if isinstance(v, np.floating) else v) for k, v in f.items() if k != "since_g"
    }
    if "since_g" in f:
        out["since"] = w.iso(w.g_time(int(f["since_g"])))
    out["suspect_kind"] = SUSPECT_KIND.get(str(f["kind"]))
    return out


def _daily(w: World, m: int, days: int) -> dict[str, list[float | None]]:
    """Per local day: physical energy through the meter and stolen around it (primary), and
    what its daily freezes register (difference × archived CT; null without both freezes)."""
    p = w.m_point[m]
    lo, hi = w.m_install[m], w.m_remove[m]
    out: dict[str, list[float | None]] = {
        "physical_import_kwh": [],
        "physical_export_kwh": [],
        "theft_kwh": [],
        "registered_forward_kwh": [],
        "registered_reverse_kwh": [],
    }
    for d in range(days):
        whole = (lo < 0 or lo <= d * w.S) and (hi >= NEVER or hi >= (d + 1) * w.S)
        pd = w.point_days.get(d)
        for k, key in enumerate(("physical_import_kwh", "physical_export_kwh", "theft_kwh")):
            out[key].append(_r(pd[k, p]) if whole and pd is not None else None)
        f0, f1 = w.freezes.get(d), w.freezes.get(d + 1)
        if f0 is None or f1 is None or not (f0.valid[m] and f1.valid[m]):
            out["registered_forward_kwh"].append(None)
            out["registered_reverse_kwh"].append(None)
            continue
        ct = float(w.ct_archive[p])
        out["registered_forward_kwh"].append(_r(_diff(f1.values[m, 0], f0.values[m, 0]) * ct))
        out["registered_reverse_kwh"].append(_r(_diff(f1.values[m, 5], f0.values[m, 5]) * ct))
    return out


def meters(world: World, days: int) -> list[dict[str, Any]]:
    """Truth per meter record."""
    w = world
    out = []
    miss_slots: dict[int, list[str]] = {}
    hour = w.S // 24  # devices stay silent in the simulated hour after the last midnight
    for d, idx in sorted(w.missing_random.items()):
        if d > days:
            continue
        for p, s in idx:
            if d == days and s >= hour:
                continue
            miss_slots.setdefault(int(p), []).append(w.iso(w.g_time(d * w.S + int(s) + 1)))
    eps = np.array([w._gain(d) - 1.0 for d in range(days)]).reshape(days, w.P)
    reads: dict[int, list[dict[str, Any]]] = {}
    for (mm, d), r in sorted(w.manual_reads.items()):
        if d <= days:
            reads.setdefault(mm, []).append(
                {k: r.get(k) for k in ("ts", "kind", "method", "value", "true_value")}
            )
    exchanges: dict[int, list[dict[str, Any]]] = {}
    for e in w.exchanges:
        exchanges.setdefault(e["old"], []).append(e)
        exchanges.setdefault(e["new"], []).append(e)
    for m in range(w.M):
        p = w.m_point[m]
        proto = w.protocol[p]
        error = {
            "class_epsilon": _r(w.eps_class[p]),
            "epsilon_by_day": [_r(x) for x in eps[:, p]],
        }
        ex = exchanges.get(m, [])
        conc = int(w.concentrator_of[p])
        gw = int(w.gateway_of[p])
        rec: dict[str, Any] = {
            "number": w.m_number[m],
            "point": p,
            "role": "supply" if w.is_supply[p] else "customer",
            "area": w.area_ids[w.m_archive_area[m]],
            "true_area": w.area_ids[int(w.true_area[p])],
            "protocol": proto,
            "gateway": w.gateways[gw]["id"] if gw >= 0 else None,
            "unit": int(w.unit_of[p]) if proto == "modbus" else None,
            "concentrator": w.concentrators[conc]["id"] if conc >= 0 else None,
            "ct_archive": float(w.ct_archive[p]),
            "ct_true": float(w.ct_true[p]),
            "bidirectional_archive": bool(w.bidir_archive[p]),
            "has_pv": bool(w.has_pv[p]),
            "kwp": _r(w.kwp[p]),
            "installed": w.iso(w.g_time(w.m_install[m])) if w.m_install[m] >= 0 else None,
            "removed": w.iso(w.g_time(w.m_remove[m])) if w.m_remove[m] < NEVER else None,
            "start_reading": float(w.m_base_fwd_a[m]),
            "error": error,
            "daily": _daily(w, m, days),
            "faults": [_fault_out(w, f) for f in w.faults.get(p, [])],
            "theft": None,
            "exchanges": [
                {
                    "at": w.iso(w.g_time(e["g"])),
                    "old": w.m_number[e["old"]],
                    "new": w.m_number[e["new"]],
                    "old_end": e.get("old_end"),
                    "old_end_reverse": e.get("old_end_rev"),
                    "new_start": e.get("new_start"),
                    "new_start_reverse": e.get("new_start_rev"),
                }
                for e in ex
            ],
            "reports_after_removal": m in w.removed_reporting,
            "missing": {
                "slots": miss_slots.get(p, []) if w.m_install[m] < 0 else [],
                "offline": None,
                "concentrator_offline": None,
            },
            "manual_reads": reads.get(m, []),
            "spikes": [
                {"at": w.iso(w.g_time(g)), "extra_kwh": v}
                for g, v in sorted(w.spikes.get(p, {}).items())
            ],
            "relay": None,
        }
        if w.theft_frac[p] > 0:
            rec["theft"] = {
                "fraction": _r(w.theft_frac[p]),
                "since": w.iso(w.g_time(int(w.theft_since[p]))),
                "hours": "22:00-06:00",
            }
        if p in w.offline:
            g0, g1 = w.offline[p]
            rec["missing"]["offline"] = [w.iso(w.g_time(g0)), w.iso(w.g_time(g1))]
        if conc >= 0 and conc in w.conc_offline:
            g0, g1 = w.conc_offline[conc]
            rec["missing"]["concentrator_offline"] = [w.iso(w.g_time(g0)), w.iso(w.g_time(g1))]
        relay = w.relays.get(p)
        if relay is not None:
            rec["relay"] = {
                "behaviour": relay.behaviour,
                "protected": relay.protected,
                "closed_at_end": w.relay_status(m, w.g_time(days * w.S))[0],
            }
        out.append(rec)
    return out


def build_truth(world: World, days: int | None = None) -> dict[str, Any]:
    """The ground-truth document for the first ``days`` days (default: the whole run).

    Args:
        world: the simulated world (days must have been computed).
        days: number of complete days to report.

    Returns:
        A JSON-serialisable mapping (see ``simulators/README.md``).
    """
    w = world
    n = w.sc.days if days is None else days
    areas = area_days(w, n)
    n_done = len(areas[0]["days"]) if areas else 0
    return {
        "schema": SCHEMA,
        "seed": w.sc.seed,
        "timezone": w.sc.timezone,
        "start": w.sc.start.isoformat(),
        "days": n_done,
        "interval_min": w.sc.interval,
        "scenario": w.sc.model_dump(mode="json"),
        "areas": areas,
        "meters": meters(w, n_done),
        "concentrators": [
            {
                "id": c["id"],
                "offline": (
                    [w.iso(w.g_time(w.conc_offline[i][0])), w.iso(w.g_time(w.conc_offline[i][1]))]
                    if i in w.conc_offline
                    else None
                ),
            }
            for i, c in enumerate(w.concentrators)
        ],
        "commands": w.commands,
    }
