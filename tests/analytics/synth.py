"""Seeded synthetic transformer areas for the meter-error accuracy tests.

Each customer has a daily shape (morning and evening peaks at personal times), a personal
level, multiplicative AR(1) noise and appliance bursts, so loads vary independently from
interval to interval as real 15-minute data do. Meters register ``(1 + ε) ·`` their true load;
a theft customer's meter sees only ``1 − f`` of its load from a start day on. The supply meter
sees all true load plus technical loss ``c + k · (Σ load)²`` and registers at 0.01 kWh
resolution; customers at 0.001 kWh. A few (meter, slot) values go missing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class Area:
    """One synthetic area and its truth."""

    supply: NDArray[np.float64]  # (T,)
    customers: NDArray[np.float64]  # (N, T), NaN missing
    eps: NDArray[np.float64]  # (N,) true relative error (theft meter: its own meter error)
    out_of_class: NDArray[np.bool_]  # (N,) |ε| >= 2 %
    theft: int  # meter index with unmetered load, -1 none
    theft_fraction: float
    theft_start_day: int
    light: NDArray[np.bool_]  # (N,) vacant or all-zero meters


def make_area(
    seed: int,
    *,
    n_meters: int = 50,
    days: int = 30,
    spd: int = 96,
    n_out_of_class: int = 0,
    theft: bool = False,
    theft_from_start: bool = False,
    missing_rate: float = 0.0005,
    n_light: int = 1,
) -> Area:
    """Generate one area.

    Args:
        seed: RNG seed.
        n_meters: customer meters.
        days: days of data.
        spd: slots per day.
        n_out_of_class: meters with 2 % <= |ε| <= 6 %.
        theft: one customer with unmetered load fraction 5–30 %.
        theft_from_start: the theft runs the whole window (else from a day in the first half).
        missing_rate: share of (meter, slot) values missing.
        n_light: vacant meters (tiny load); one more meter registers nothing at all.
    """
    rng = np.random.default_rng(seed)
    t = days * spd
    hours = (np.arange(t) % spd) * 24.0 / spd
    day = np.arange(t) // spd
    weekend = (day % 7) >= 5
    level = rng.lognormal(np.log(0.12), 0.5, n_meters)  # kWh per 15 minutes
    m_peak = rng.normal(7.5, 0.8, n_meters)
    e_peak = rng.normal(19.5, 1.0, n_meters)
    shape = (
        0.5
        + 0.8 * np.exp(-0.5 * ((hours[None, :] - m_peak[:, None]) / 1.2) ** 2)
        + 1.5 * np.exp(-0.5 * ((hours[None, :] - e_peak[:, None]) / 1.8) ** 2)
        + 0.2 * weekend[None, :]
    )
    # multiplicative AR(1) noise in log space
    noise = np.empty((n_meters, t))
    a = 0.7
    w = rng.normal(0.0, 0.35, (n_meters, t))
    noise[:, 0] = w[:, 0]
    for j in range(1, t):
        noise[:, j] = a * noise[:, j - 1] + w[:, j]
    load = level[:, None] * shape * np.exp(noise - 0.5 * 0.35**2 / (1 - a * a))
    bursts = rng.random((n_meters, t)) < 0.03
    load += bursts * rng.gamma(2.0, 0.25, (n_meters, t))
    light = np.zeros(n_meters, dtype=bool)
    idx = rng.permutation(n_meters)
    for i in idx[:n_light]:
        load[i] *= 0.01
        light[i] = True
    dead = idx[n_light]
    load[dead] = 0.0
    light[dead] = True

    eps = np.clip(rng.normal(0.0, 0.004, n_meters), -0.01, 0.01)
    ooc = np.zeros(n_meters, dtype=bool)
    cands = list(idx[n_light + 1 :])
    for i in cands[:n_out_of_class]:
        eps[i] = rng.choice([-1.0, 1.0]) * rng.uniform(0.02, 0.06)
        ooc[i] = True
    registered = load * (1.0 + eps[:, None])
    thief = -1
    frac = 0.0
    start_day = 0
    if theft:
        thief = int(cands[n_out_of_class])
        frac = float(rng.uniform(0.05, 0.3))
        start_day = 0 if theft_from_start else int(rng.integers(1, days // 2))
        on = day >= start_day
        registered[thief, on] *= 1.0 - frac
    total = load.sum(axis=0)
    k = rng.uniform(0.02, 0.04) / total.mean()  # load loss ≈ 2–4 % at mean load
    c = rng.uniform(0.02, 0.1)
    supply = total + c + k * total**2
    supply = np.round(supply, 2)
    customers = np.round(registered, 3)
    miss = rng.random((n_meters, t)) < missing_rate
    customers[miss] = np.nan
    return Area(supply, customers, eps, ooc, thief, frac, start_day, light)
