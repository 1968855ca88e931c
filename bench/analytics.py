"""Benchmark of the analytics core, with its limits measured in the same run.

Part 1: same-period line loss plus VEE for ``--meters`` meters × 96 intervals (one day), from
arrays in memory, against (a) a vectorised NumPy implementation of the same computation (its
outputs are checked equal) and (b) one numba parallel read-only pass over every input array:
a plain sum of every element of every input (no fastmath flags, as in the kernels), for all
inputs and for the line-loss inputs alone. Times include the wrappers' checks and the
allocation of their outputs. Best of ``--repeat`` rounds; each round runs every candidate once
(interleaved), so a noisy machine loads all of them alike. The load average is recorded with
the results.

Part 2: meter-error estimation for ``--areas`` areas × 50 meters × 30 days × 96 intervals,
each area generated on the fly and fitted, against ``numpy.linalg.lstsq`` on the same
design, area by area.

JIT compile time is measured in a fresh process with an empty numba cache directory; the
first call with a warm cache is reported too. Figures go to bench/results/analytics.json.

Usage::

    .venv/bin/python bench/analytics.py                 # full size
    .venv/bin/python bench/analytics.py --areas 500     # quicker meter-error part
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numba
import numpy as np
from numba import njit, prange

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analytics.lineloss import ROLE_SUPPLY, LossThresholds, line_loss  # noqa: E402
from analytics.meter_error import fit_meter_errors  # noqa: E402
from analytics.vee import RULES, SLOT_RULES, VeeSettings, validate  # noqa: E402

SPD = 96
PER_AREA = 50


def best_of(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Best wall time of ``repeat`` calls, and the last result."""
    best = float("inf")
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


# ------------------------------------------------------------------------------------------
# Part 1 inputs
# ------------------------------------------------------------------------------------------


def make_fleet(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """One day of a fleet: intervals, registers at 00:00, metadata; sorted by area."""
    rng = np.random.default_rng(seed)
    x = rng.standard_exponential((n, SPD)) * 0.05
    holes = rng.random((n, SPD)) < 0.01
    x[holes] = np.nan
    x[rng.random(n) < 0.002] = 0.0  # zero days
    x[rng.integers(0, n, n // 1000), rng.integers(0, SPD, n // 1000)] = 30.0  # spikes
    area = np.arange(n, dtype=np.int64) // PER_AREA
    role = np.zeros(n, dtype=np.int64)
    role[::PER_AREA] = ROLE_SUPPLY
    day = np.nansum(x, axis=1)
    start = rng.uniform(0, 99_999.0, n)
    fwd = np.stack([start, start + day + rng.normal(0, 0.001, n)], axis=1)
    fwd[rng.random(n) < 0.0005, 1] = np.nan
    fwd[::PER_AREA, 1] = fwd[::PER_AREA, 0] + 0.95 * day[::PER_AREA] * PER_AREA / 40.0
    mult = np.where(role == ROLE_SUPPLY, 40.0, 1.0)
    bidi = rng.random(n) < 0.1
    rev = np.stack([start * 0.1, start * 0.1 + bidi * rng.uniform(0, 2, n)], axis=1)
    fwd_est = np.zeros((n, 2), dtype=bool)
    fwd_est[rng.random(n) < 0.001, 1] = True
    rev_est = np.zeros((n, 2), dtype=bool)
    history = day * rng.uniform(0.5, 1.5, n)
    removed = np.full(n, -1, dtype=np.int64)
    removed[rng.integers(0, n, n // 10000)] = 80
    dup = (rng.random(n) < 0.001).astype(np.int64)
    return {
        "x": x, "fwd": fwd, "rev": rev, "fwd_est": fwd_est, "rev_est": rev_est, "area": area,
        "role": role, "mult": mult, "bidi": bidi, "modulus": np.full(n, 100_000.0),
        "history": history, "removed": removed, "dup": dup,
    }  # fmt: skip


LINE_LOSS_INPUTS = ("fwd", "rev", "fwd_est", "rev_est", "area", "role", "mult", "bidi", "modulus")


def ours_line_loss(f: dict[str, np.ndarray], th: LossThresholds) -> Any:
    """The analytics wrapper for line loss."""
    return line_loss(
        f["fwd"], area=f["area"], role=f["role"], multiplier=f["mult"],
        bidirectional=f["bidi"], rollover=f["modulus"], reverse=f["rev"],
        forward_estimated=f["fwd_est"], reverse_estimated=f["rev_est"], thresholds=th,
    )  # fmt: skip


def ours_vee(f: dict[str, np.ndarray]) -> Any:
    """The analytics wrapper for validation."""
    return validate(
        f["x"], slots_per_day=SPD, registers=f["fwd"], rollover=f["modulus"],
        duplicates=f["dup"], history_daily=f["history"], removed_slot=f["removed"],
    )  # fmt: skip


# ------------------------------------------------------------------------------------------
# Part 1 NumPy reference (vectorised, same outputs)
# ------------------------------------------------------------------------------------------


def _np_wrap(a: np.ndarray, b: np.ndarray, mod: np.ndarray) -> np.ndarray:
    d = b - a
    with np.errstate(invalid="ignore"):
        roll = (d < 0) & (mod > 0) & (-d > 0.5 * mod)
        d = np.where(roll, d + mod, d)
        return np.where(d < 0, np.nan, d)


def numpy_line_loss(f: dict[str, np.ndarray], th: LossThresholds, n_areas: int) -> dict:
    """Vectorised NumPy line loss for one period (bincount per area)."""
    mod = f["modulus"]
    mult = f["mult"]
    sup = f["role"] == ROLE_SUPPLY
    ef = _np_wrap(f["fwd"][:, 0], f["fwd"][:, 1], mod) * mult
    er = _np_wrap(f["rev"][:, 0], f["rev"][:, 1], mod) * mult
    est_f = f["fwd_est"].any(axis=1)
    est_r = f["rev_est"].any(axis=1)
    bidi = f["bidi"]
    area = f["area"]

    def bc(w: np.ndarray) -> np.ndarray:
        return np.bincount(area, weights=w, minlength=n_areas)

    nan_f, nan_r = np.isnan(ef), np.isnan(er) & bidi
    ef0, er0 = np.nan_to_num(ef), np.where(bidi, np.nan_to_num(er), 0.0)
    supply = bc(np.where(sup, ef0, 0.0) + np.where(~sup, er0, 0.0))
    sales = bc(np.where(~sup, ef0, 0.0) + np.where(sup, er0, 0.0))
    est_sales = bc(np.where(~sup & est_f, ef0, 0.0) + np.where(sup & est_r & bidi, er0, 0.0))
    miss_supply = bc((sup & nan_f) + (~sup & nan_r))
    miss_sales = bc((~sup & nan_f) + (sup & nan_r))
    not_actual = bc(sup & (nan_f | est_f)) + bc(sup & bidi & (nan_r | est_r))
    n_supply = bc(sup * (1 + bidi))
    total = bc(~sup * (1 + bidi))
    present = bc(~sup & ~nan_f) + bc(~sup & bidi & ~nan_r)
    with np.errstate(invalid="ignore", divide="ignore"):
        coverage = np.where(total > 0, 100.0 * present / np.maximum(total, 1), 100.0)
        supply = np.where((miss_supply == 0) & (n_supply > 0), supply, np.nan)
        sales = np.where(miss_sales == 0, sales, np.nan)
        share = np.where(sales > 0, 100 * est_sales / sales, np.where(est_sales > 0, 100.0, 0.0))
        share = np.where(np.isnan(sales), np.nan, share)
        loss = supply - sales
        nc = (n_supply == 0) | (not_actual > 0) | np.isnan(supply) | np.isnan(sales)
        nc |= (coverage < th.coverage_min) | (share > th.estimated_max)
        rate = np.where(~nc & (supply != 0), 100 * loss / supply, np.nan)
    state = np.zeros(n_areas, dtype=np.int8)
    state[rate > th.band_hi] = 1
    state[rate < th.band_lo] = 2
    state[~nc & (supply < th.low_energy_kwh)] = 4
    state[nc] = 3
    return {"supply": supply, "sales": sales, "rate": rate, "state": state, "coverage": coverage,
            "share": share}  # fmt: skip


def numpy_vee(f: dict[str, np.ndarray], cfg: VeeSettings) -> dict:
    """Vectorised NumPy validation of one day (same rules as ``ours_vee``)."""
    x = f["x"]
    n, s = x.shape
    col = {r: i for i, r in enumerate(RULES)}
    present = ~np.isnan(x)
    idx = np.arange(s)
    anyp = present.any(axis=1)
    first = np.where(anyp, present.argmax(axis=1), -1)
    last = np.where(anyp, s - 1 - present[:, ::-1].argmax(axis=1), -1)
    inside = (idx >= first[:, None]) & (idx <= last[:, None])
    missing_in = ~present & inside
    received = present.sum(axis=1)
    expected = np.where(anyp, last - first + 1, 0)
    starts = missing_in[:, 1:] & present[:, :-1]
    gaps = starts.sum(axis=1)
    last_present = np.maximum.accumulate(np.where(present, idx, -1), axis=1)
    run = np.where(missing_in, idx - last_present, 0)
    gap_max = run.max(axis=1)
    xv = np.where(present, x, 0.0)
    counts = np.zeros((n, len(RULES)), dtype=np.int64)
    counts[:, col["gap"]] = missing_in.sum(axis=1)
    neg = present & (xv < 0)
    counts[:, col["negative_consumption"]] = neg.sum(axis=1)
    after = present & (f["removed"][:, None] >= 0) & (idx >= f["removed"][:, None])
    counts[:, col["read_after_removal"]] = after.sum(axis=1)
    day = xv.sum(axis=1)
    nonzero = (present & (xv != 0)).sum(axis=1)
    zero = (received > 0) & (nonzero == 0)
    counts[:, col["zero_consumption"]] = zero
    xm = np.where(present, x, -np.inf)
    part = np.partition(xm, s - 3, axis=1)
    t3 = part[:, s - 3]
    t1 = part[:, s - 1]
    spike = (received >= 3) & (t1 >= cfg.spike_min_kwh) & (t1 > cfg.spike_ratio * t3)
    counts[:, col["spike"]] = spike
    complete = received == s
    ref = f["history"]
    okh = complete & (ref >= cfg.history_min_kwh)
    high = okh & (day > cfg.high_factor * ref)
    low = okh & ~high & (nonzero > 0) & (day < cfg.low_factor * ref)
    counts[:, col["high_vs_history"]] = high
    counts[:, col["low_vs_history"]] = low
    delta = _np_wrap(f["fwd"][:, 0], f["fwd"][:, 1], f["modulus"])
    with np.errstate(invalid="ignore"):
        tol = cfg.register_abs_tol + cfg.register_rel_tol * np.abs(delta)
        rvi = complete & ~np.isnan(delta) & (np.abs(delta - day) > tol)
        a, b = f["fwd"][:, 0], f["fwd"][:, 1]
        back = ~np.isnan(a) & ~np.isnan(b) & (b < a)
        roll = back & (f["modulus"] > 0) & (a - b > 0.5 * f["modulus"])
    counts[:, col["register_vs_intervals"]] = rvi
    counts[:, col["rollover"]] = roll
    counts[:, col["negative_consumption"]] += back & ~roll
    counts[:, col["duplicate"]] = f["dup"]
    bit = {r: np.uint8(1 << i) for i, r in enumerate(SLOT_RULES)}
    flags = missing_in * bit["gap"]
    flags |= neg * bit["negative_consumption"]
    flags |= after * bit["read_after_removal"]
    rows = np.flatnonzero(spike)
    flags[rows, np.argmax(xm[rows], axis=1)] |= bit["spike"]
    return {"counts": counts, "first": first, "last": last, "expected": expected,
            "received": received, "gaps": gaps, "gap_max": gap_max, "slot_flags": flags}


# ------------------------------------------------------------------------------------------
# Part 1 memory limit: one parallel read-only pass over every input
# ------------------------------------------------------------------------------------------


@njit(cache=True, nogil=True, parallel=True)
def _pass_line_loss(fwd, rev, fwd_est, rev_est, area, role, mult, bidi, modulus):
    """Read every line-loss input once, meter by meter, in parallel."""
    n = fwd.shape[0]
    block = 4096
    total = 0.0
    for b in prange((n + block - 1) // block):
        s = 0.0
        for m in range(b * block, min(n, (b + 1) * block)):
            for j in range(fwd.shape[1]):
                s += fwd[m, j] + rev[m, j] + fwd_est[m, j] + rev_est[m, j]
            s += area[m] + role[m] + mult[m] + bidi[m] + modulus[m]
        total += s
    return total


@njit(cache=True, nogil=True, parallel=True)
def _pass_all(x, fwd, rev, fwd_est, rev_est, area, role, mult, bidi, modulus, history,
              removed, dup):  # fmt: skip
    """Read every input of line loss + VEE once, meter by meter, in parallel."""
    n = x.shape[0]
    block = 256
    total = 0.0
    for b in prange((n + block - 1) // block):
        s = 0.0
        for m in range(b * block, min(n, (b + 1) * block)):
            row = x[m]
            r = 0.0
            for j in range(row.shape[0]):
                r += row[j]
            for j in range(fwd.shape[1]):
                s += fwd[m, j] + rev[m, j] + fwd_est[m, j] + rev_est[m, j]
            s += area[m] + role[m] + mult[m] + bidi[m] + modulus[m]
            s += r + history[m] + removed[m] + dup[m]
        total += s
    return total


def memory_pass(f: dict[str, np.ndarray], names: tuple[str, ...]) -> float:
    """One parallel read of the named inputs (all inputs, or the line-loss ones)."""
    if names == LINE_LOSS_INPUTS:
        return _pass_line_loss(*(f[k_] for k_ in LINE_LOSS_INPUTS))
    return _pass_all(f["x"], *(f[k_] for k_ in LINE_LOSS_INPUTS), f["history"], f["removed"],
                     f["dup"])  # fmt: skip


def check_equal(ours_ll: Any, ours_v: Any, ref_ll: dict, ref_v: dict) -> None:
    """The NumPy reference computes the same thing: fail loudly if not."""
    t = np.testing
    t.assert_allclose(ours_ll.supply_kwh[:, 0], ref_ll["supply"], rtol=1e-9)
    t.assert_allclose(ours_ll.sales_kwh[:, 0], ref_ll["sales"], rtol=1e-9)
    t.assert_allclose(ours_ll.rate[:, 0], ref_ll["rate"], rtol=1e-7, atol=1e-9)
    t.assert_array_equal(ours_ll.state[:, 0], ref_ll["state"])
    t.assert_allclose(ours_ll.coverage[:, 0], ref_ll["coverage"])
    t.assert_array_equal(ours_v.counts, ref_v["counts"])
    for key, ref_key in (("first", "first"), ("last", "last"), ("expected", "expected"),
                         ("received", "received"), ("gaps", "gaps"),
                         ("gap_slots_max", "gap_max")):  # fmt: skip
        t.assert_array_equal(getattr(ours_v, key), ref_v[ref_key])
    t.assert_array_equal(ours_v.slot_flags, ref_v["slot_flags"])


def part1(n: int, repeat: int) -> dict[str, Any]:
    """Line loss + VEE on ``n`` meters × one day."""
    f = make_fleet(n)
    n_areas = int(f["area"][-1]) + 1
    th = LossThresholds()
    cfg = VeeSettings()
    all_inputs = (*LINE_LOSS_INPUTS, "x", "history", "removed", "dup")
    # warm-up (compiles or loads the cache)
    ours_line_loss(f, th)
    ours_vee(f)
    memory_pass(f, all_inputs)
    # interleaved: every candidate runs once per round, so all see the same machine load
    cands: dict[str, Callable[[], Any]] = {
        "line_loss": lambda: ours_line_loss(f, th),
        "vee": lambda: ours_vee(f),
        "both": lambda: (ours_line_loss(f, th), ours_vee(f)),
        "pass_all": lambda: memory_pass(f, all_inputs),
        "pass_ll": lambda: memory_pass(f, LINE_LOSS_INPUTS),
        "np_ll": lambda: numpy_line_loss(f, th, n_areas),
        "np_vee": lambda: numpy_vee(f, cfg),
    }
    best = dict.fromkeys(cands, float("inf"))
    last: dict[str, Any] = {}
    for _ in range(repeat):
        for name, fn in cands.items():
            t0 = time.perf_counter()
            last[name] = fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    ll, vee, ref_ll, ref_v = last["line_loss"], last["vee"], last["np_ll"], last["np_vee"]
    t_ll, t_vee, t_both = best["line_loss"], best["vee"], best["both"]
    t_pass_all, t_pass_ll = best["pass_all"], best["pass_ll"]
    t_np_ll, t_np_vee = best["np_ll"], best["np_vee"]
    check_equal(ll, vee, ref_ll, ref_v)
    nbytes_all = sum(f[k_].nbytes for k_ in all_inputs)
    nbytes_ll = sum(f[k_].nbytes for k_ in LINE_LOSS_INPUTS)
    return {
        "meters": n,
        "intervals_per_meter": SPD,
        "areas": n_areas,
        "input_bytes": nbytes_all,
        "line_loss_input_bytes": nbytes_ll,
        "repeat": repeat,
        "seconds": {
            "line_loss": t_ll,
            "vee": t_vee,
            "line_loss_plus_vee": t_both,
            "numpy_line_loss": t_np_ll,
            "numpy_vee": t_np_vee,
            "numpy_line_loss_plus_vee": t_np_ll + t_np_vee,
            "memory_pass_all_inputs": t_pass_all,
            "memory_pass_line_loss_inputs": t_pass_ll,
        },
        "ratios": {
            "numpy_over_ours": (t_np_ll + t_np_vee) / t_both,
            "ours_over_memory_pass": t_both / t_pass_all,
            "line_loss_over_its_memory_pass": t_ll / t_pass_ll,
        },
        "goals": {
            "under_1s": t_both <= 1.0,
            "at_least_5x_numpy": (t_np_ll + t_np_vee) / t_both >= 5.0,
            "within_3x_memory_pass": t_both / t_pass_all <= 3.0,
            "line_loss_within_1_5x_pass": t_ll / t_pass_ll <= 1.5,
        },
        "outputs_checked_equal_to_numpy": True,
    }


# ------------------------------------------------------------------------------------------
# Part 2: meter-error estimation, areas streamed
# ------------------------------------------------------------------------------------------


def make_area_fast(rng: np.random.Generator, n: int = 50, days: int = 30) -> tuple:
    """A quick synthetic area: daily shapes × exponential noise, errors within ±1 %."""
    t = days * SPD
    hours = (np.arange(t) % SPD) / 4.0
    shape = 0.5 + 1.5 * np.exp(-0.5 * ((hours - 19.5) / 1.8) ** 2)
    level = rng.lognormal(np.log(0.12), 0.5, n)
    load = (level[:, None] * shape) * rng.standard_exponential((n, t))
    eps = rng.uniform(-0.01, 0.01, n)
    total = load.sum(axis=0)
    supply = total + 0.05 + (0.03 / total.mean()) * total**2
    return np.round(supply, 2), np.round(load * (1.0 + eps[:, None]), 3), eps


def part2(n_areas: int, seed: int = 1) -> dict[str, Any]:
    """Stream ``n_areas`` areas on one core: generate, fit with ours, fit with lstsq."""
    rng = np.random.default_rng(seed)
    supply, cust, _ = make_area_fast(rng)
    fit_meter_errors(supply, cust)  # warm-up
    t_gen = t_ours = t_np = 0.0
    abs_err = []
    max_diff = 0.0
    for _ in range(n_areas):
        t0 = time.perf_counter()
        supply, cust, eps = make_area_fast(rng)
        t1 = time.perf_counter()
        fit = fit_meter_errors(supply, cust)
        t2 = time.perf_counter()
        x = np.vstack([cust, np.ones(supply.size), cust.sum(axis=0) ** 2]).T
        beta, *_ = np.linalg.lstsq(x, supply, rcond=None)
        t3 = time.perf_counter()
        t_gen += t1 - t0
        t_ours += t2 - t1
        t_np += t3 - t2
        abs_err.append(np.abs(fit.error - eps))
        max_diff = max(max_diff, float(np.max(np.abs(fit.theta - beta[:-2]))))
    return {
        "areas": n_areas,
        "meters_per_area": 50,
        "days": 30,
        "intervals_per_day": SPD,
        "threads": "one core: numba kernels serial, OPENBLAS_NUM_THREADS=1 for lstsq",
        "seconds": {
            "generate": t_gen,
            "fit_ours": t_ours,
            "fit_numpy_lstsq": t_np,
            "stream_total_ours": t_gen + t_ours,
        },
        "ratios": {"lstsq_over_ours": t_np / t_ours},
        "per_area_ms": {"ours": 1e3 * t_ours / n_areas, "lstsq": 1e3 * t_np / n_areas},
        "mean_abs_error_pp": 100 * float(np.mean(np.concatenate(abs_err))),
        "max_theta_difference_vs_lstsq": max_diff,
    }


def _stream_worker(n_areas: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    acc = 0.0
    for _ in range(n_areas):
        supply, cust, _ = make_area_fast(rng)
        acc += float(np.nansum(fit_meter_errors(supply, cust).error))
    return acc


def part2_threads(n_areas: int, workers: int) -> dict[str, Any]:
    """Generate and fit ``n_areas`` areas on ``workers`` threads (kernels are ``nogil``)."""
    from concurrent.futures import ThreadPoolExecutor

    _stream_worker(1, 99)  # warm-up
    share = [n_areas // workers + (i < n_areas % workers) for i in range(workers)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(_stream_worker, share, range(100, 100 + workers)))
    wall = time.perf_counter() - t0
    return {"areas": n_areas, "workers": workers, "wall_s": wall,
            "goal_under_60s": wall < 60.0}  # fmt: skip


# ------------------------------------------------------------------------------------------
# JIT compile time
# ------------------------------------------------------------------------------------------

_JIT_PROBE = """
import time, numpy as np, sys
sys.path.insert(0, {root!r})
t0 = time.perf_counter()
from analytics.lineloss import line_loss
from analytics.vee import validate
from analytics.meter_error import fit_meter_errors
t1 = time.perf_counter()
fwd = np.array([[0.0, 10.0], [0.0, 9.0]])
line_loss(fwd, area=[0, 0], role=[1, 0], reverse=fwd, bidirectional=[0, 1],
          forward_estimated=np.zeros((2, 2), bool), reverse_estimated=np.zeros((2, 2), bool))
t2 = time.perf_counter()
validate(np.ones((2, 96)), slots_per_day=96, registers=np.array([[0, 96], [0, 96.0]]),
         history_daily=np.ones(2), removed_slot=np.array([-1, 5]), duplicates=np.zeros(2, int))
t3 = time.perf_counter()
rng = np.random.default_rng(0)
e = rng.gamma(2, 0.1, (5, 500))
fit_meter_errors(e.sum(0), e)
t4 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2, t4 - t3)
"""


def jit_times() -> dict[str, Any]:
    """First-call times in fresh processes: empty cache (compile) and warm cache."""
    out: dict[str, Any] = {}
    code = _JIT_PROBE.format(root=str(ROOT))
    with tempfile.TemporaryDirectory() as cache:
        for label in ("cold_cache_compile", "warm_cache"):
            env = dict(os.environ, NUMBA_CACHE_DIR=cache)
            res = subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
            )
            imp, ll, vee, fit = (float(v) for v in res.stdout.split())
            out[label] = {"import_s": imp, "line_loss_first_call_s": ll,
                          "vee_first_call_s": vee, "fit_first_call_s": fit}  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write the results file."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--meters", type=int, default=1_000_000)
    ap.add_argument("--areas", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "analytics.json")
    ap.add_argument("--workers", type=int, default=2, help="threads for the streamed fit")
    ap.add_argument("--part2-only", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.part2_only is not None:  # child process: meter errors with single-threaded BLAS
        out = part2(args.part2_only)
        out["streamed_on_threads"] = part2_threads(args.part2_only, args.workers)
        print(json.dumps(out))
        return 0
    result: dict[str, Any] = {
        "command": "bench/analytics.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {
            "cpus": os.cpu_count(),
            "numba_threads": numba.get_num_threads(),
            "threading_layer": None,
            "python": platform.python_version(),
            "numba": numba.__version__,
            "numpy": np.__version__,
        },
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average_at_start": os.getloadavg(),
    }
    print("JIT timing in fresh processes …", file=sys.stderr)
    result["jit"] = jit_times()
    print(f"line loss + VEE, {args.meters} meters …", file=sys.stderr)
    result["line_loss_vee"] = part1(args.meters, args.repeat)
    result["machine"]["threading_layer"] = numba.threading_layer()
    print(f"meter errors, {args.areas} areas …", file=sys.stderr)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    res = subprocess.run(
        [sys.executable, __file__, "--part2-only", str(args.areas), "--workers", str(args.workers)],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    result["meter_error"] = json.loads(res.stdout)
    result["load_average_at_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
