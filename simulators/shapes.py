"""Load and PV shapes: kWh per interval for many customers and one day at a time.

Every source returns an array of shape ``(customers, slots)`` in kWh per interval for one
simulated day, drawn from a generator seeded by ``(seed, day)`` so that any day can be
recomputed alone and the whole run is reproducible.

Sources:

* :class:`SyntheticLoad` (built in, no files): a residential double-peak profile per customer
  (own level, peak times and widths), varied day to day (level, weekend factor) and slot to
  slot (multiplicative noise and short appliance bursts).
* :class:`IeeeEulvLoad`: the IEEE European LV test feeder's 100 one-day, one-minute profiles
  (``load_profile_{1..100}.txt``, kW); each customer-day picks a profile, a level and a shift.
* :class:`SgscLoad`: Smart Grid Smart City half-hourly consumption (parquet, kWh per half-hour);
  each customer follows one household and a day offset of its own.
* :class:`SyntheticPv`: clear-sky bell between sunrise and sunset, a daily cloudiness per area
  and smoothed intra-day cloud noise.
* :class:`AusgridPv`: the Ausgrid solar home's gross generation (average kW per half-hour for a
  1.04 kWp system), scaled to each customer's kWp and shifted by a few days per customer.
"""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]


class ShapeError(Exception):
    """A load-shape file is missing or unusable."""


class LoadSource(Protocol):
    """Anything that yields a day of customer energy per slot."""

    def day(self, day_index: int, on: date) -> F64:
        """Return kWh per slot, shape ``(customers, slots)``, for one simulated day."""
        ...


def _rng(seed: int, stream: int, day_index: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream, day_index + 1])


def _minutes_to_slots(per_minute_kwh: F64, slots: int) -> F64:
    """Sum per-minute energies (…, 1440) into ``slots`` intervals."""
    shape = (*per_minute_kwh.shape[:-1], slots, 1440 // slots)
    return per_minute_kwh.reshape(shape).sum(axis=-1)


def _halfhours_to_slots(hh_kwh: F64, slots: int) -> F64:
    """Spread half-hourly energies (…, 48) evenly over minutes and sum into slots."""
    per_minute = np.repeat(hh_kwh / 30.0, 30, axis=-1)
    return _minutes_to_slots(per_minute, slots)


class SyntheticLoad:
    """Built-in residential load profiles.

    Args:
        customers: number of customers.
        slots: intervals per day.
        seed: scenario seed.
        daily_kwh_mean: mean daily consumption of a customer.
        spread: log-normal sigma of customers' mean daily consumption.
    """

    def __init__(
        self, customers: int, slots: int, seed: int, daily_kwh_mean: float, spread: float
    ) -> None:
        rng = _rng(seed, 11, -1)
        self.slots = slots
        self.seed = seed
        n = customers
        self.level = daily_kwh_mean * np.exp(rng.normal(-0.5 * spread**2, spread, n))
        self.morning = rng.normal(7.3, 0.6, n)
        self.evening = rng.normal(19.6, 0.9, n)
        self.w_morning = rng.uniform(0.6, 1.4, n)
        self.w_evening = rng.uniform(1.2, 2.6, n)
        self.a_morning = rng.uniform(0.3, 1.0, n)
        self.a_evening = rng.uniform(0.8, 2.0, n)
        self.base = rng.uniform(0.15, 0.45, n)
        self.midday = rng.uniform(0.0, 0.5, n)
        self.weekend = rng.uniform(1.0, 1.25, n)

    def day(self, day_index: int, on: date) -> F64:
        """Return kWh per slot for ``day_index`` (shape ``(customers, slots)``)."""
        rng = _rng(self.seed, 12, day_index)
        n = self.level.shape[0]
        hours = (np.arange(self.slots) + 0.5) * 24.0 / self.slots
        h = hours[None, :]

        def bump(centre: F64, width: F64) -> F64:
            d = (h - centre[:, None] + 12.0) % 24.0 - 12.0
            out: F64 = np.exp(-0.5 * (d / width[:, None]) ** 2)
            return out

        shift_m = rng.normal(0.0, 0.3, n)
        shift_e = rng.normal(0.0, 0.4, n)
        shape = (
            self.base[:, None]
            + self.a_morning[:, None] * bump(self.morning + shift_m, self.w_morning)
            + self.a_evening[:, None] * bump(self.evening + shift_e, self.w_evening)
            + self.midday[:, None] * bump(np.full(n, 13.0), np.full(n, 2.5))
        )
        noise = np.exp(rng.normal(-0.045, 0.3, (n, self.slots)))
        bursts = rng.random((n, self.slots)) < 0.03
        shape = shape * noise + bursts * rng.uniform(0.5, 2.5, (n, self.slots))
        shape /= shape.sum(axis=1, keepdims=True)
        factor = np.exp(rng.normal(-0.02, 0.2, n))
        if on.weekday() >= 5:
            factor = factor * self.weekend
        out: F64 = shape * (self.level * factor)[:, None]
        return out


class IeeeEulvLoad:
    """Customers drawn from the IEEE EU LV feeder's 100 one-minute daily profiles.

    Args:
        directory: the ``Daily_1min_100profiles`` folder.
        customers: number of customers.
        slots: intervals per day.
        seed: scenario seed.

    Raises:
        ShapeError: the folder holds no readable profile.
    """

    def __init__(self, directory: Path, customers: int, slots: int, seed: int) -> None:
        files = sorted(directory.glob("load_profile_*.txt"))
        if not files:
            raise ShapeError(f"no load_profile_*.txt files in {directory}")
        rows = []
        for f in files:
            kw = np.loadtxt(f, dtype=np.float64)
            if kw.shape != (1440,):
                raise ShapeError(f"{f}: expected 1440 one-minute values, got {kw.shape}")
            rows.append(kw / 60.0)
        self.profiles = _minutes_to_slots(np.array(rows), slots)
        rng = _rng(seed, 21, -1)
        self.seed = seed
        self.slots = slots
        self.level = np.exp(rng.normal(0.0, 0.25, customers))

    def day(self, day_index: int, on: date) -> F64:
        """Return kWh per slot for ``day_index``."""
        del on
        rng = _rng(self.seed, 22, day_index)
        n = self.level.shape[0]
        pick: NDArray[np.int64] = np.asarray(rng.integers(0, self.profiles.shape[0], n))
        shift: NDArray[np.int64] = np.asarray(rng.integers(-2, 3, n))
        idx = (np.arange(self.slots)[None, :] - shift[:, None]) % self.slots
        base = self.profiles[pick[:, None], idx]
        out: F64 = base * (self.level * np.exp(rng.normal(0.0, 0.1, n)))[:, None]
        return out


class SgscLoad:
    """Customers following Smart Grid Smart City households' half-hourly consumption.

    Args:
        path: the half-hourly parquet file (or a folder holding one ``*.parquet``).
        customers: number of customers.
        slots: intervals per day.
        seed: scenario seed.

    Raises:
        ShapeError: the file cannot be read or holds no complete day.
    """

    def __init__(self, path: Path, customers: int, slots: int, seed: int) -> None:
        if path.is_dir():
            found = sorted(path.glob("*.parquet"))
            if not found:
                raise ShapeError(f"no parquet file in {path}")
            path = found[0]
        try:
            import pyarrow.parquet as pq

            table = pq.read_table(
                path, columns=["customer_id", "reading_datetime", "general_supply_kwh"]
            )
        except Exception as exc:  # pyarrow raises many types for a bad file
            raise ShapeError(f"{path}: {exc}") from exc
        cust = table.column("customer_id").to_numpy()
        ts = table.column("reading_datetime").to_numpy().astype("datetime64[m]")
        kwh = table.column("general_supply_kwh").to_numpy(zero_copy_only=False)
        # Each stamp marks the end of its half-hour: shift back to the start.
        start = ts - np.timedelta64(30, "m")
        day = start.astype("datetime64[D]")
        hh = ((start - day).astype(np.int64) // 30).astype(np.int64)
        households = []
        for cid in np.unique(cust):
            sel = cust == cid
            d = day[sel]
            d0 = d.min()
            di = (d - d0).astype(np.int64)
            grid = np.full((int(di.max()) + 1, 48), np.nan)
            grid[di, hh[sel]] = kwh[sel]
            complete = grid[~np.isnan(grid).any(axis=1)]
            if complete.shape[0] >= 7:
                households.append(complete)
        if not households:
            raise ShapeError(f"{path}: no household with 7 complete days")
        self.households = households
        self.slots = slots
        self.seed = seed
        rng = _rng(seed, 31, -1)
        self.who = rng.integers(0, len(households), customers)
        self.offset = rng.integers(0, 10_000, customers)
        self.level = np.exp(rng.normal(0.0, 0.15, customers))

    def day(self, day_index: int, on: date) -> F64:
        """Return kWh per slot for ``day_index``."""
        del on
        n = self.who.shape[0]
        hh = np.empty((n, 48))
        for i in range(n):
            h = self.households[self.who[i]]
            hh[i] = h[(self.offset[i] + day_index) % h.shape[0]]
        out: F64 = _halfhours_to_slots(hh, self.slots) * self.level[:, None]
        return out


class SyntheticPv:
    """Rooftop PV generation: a clear-sky bell with daily and intra-day cloudiness.

    Args:
        kwp: installed peak power per PV customer.
        group: an index per PV customer (its area) that shares the daily cloudiness.
        slots: intervals per day.
        seed: scenario seed.
    """

    def __init__(self, kwp: F64, group: NDArray[np.int64], slots: int, seed: int) -> None:
        self.kwp = kwp
        self.group = group
        self.slots = slots
        self.seed = seed

    def day(self, day_index: int, on: date) -> F64:
        """Return generated kWh per slot (shape ``(pv customers, slots)``)."""
        del on
        rng = _rng(self.seed, 41, day_index)
        n = self.kwp.shape[0]
        hours = (np.arange(self.slots) + 0.5) * 24.0 / self.slots
        sun = np.clip(np.sin(np.pi * (hours - 6.0) / 12.0), 0.0, None) ** 1.3
        groups = int(self.group.max()) + 1 if n else 1
        clear = np.clip(rng.beta(4.0, 1.5, groups), 0.05, 1.0)
        cloud = rng.normal(0.0, 0.25, (n, self.slots))
        kernel = np.ones(5) / 5.0
        cloud = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="same"), 1, cloud)
        cover = np.clip(clear[self.group][:, None] + cloud, 0.0, 1.0)
        dt_h = 24.0 / self.slots
        out: F64 = 0.8 * self.kwp[:, None] * sun[None, :] * cover * dt_h
        return out


class AusgridPv:
    """Rooftop PV following the Ausgrid solar home's half-hourly gross generation.

    Args:
        path: ``data_2011-2012.csv`` (columns ``GC``, ``GG`` in average kW per half-hour).
        kwp: installed peak power per PV customer (the source system is 1.04 kWp).
        slots: intervals per day.
        seed: scenario seed.

    Raises:
        ShapeError: the file cannot be read.
    """

    SOURCE_KWP = 1.04

    def __init__(self, path: Path, kwp: F64, slots: int, seed: int) -> None:
        try:
            with path.open(newline="", encoding="utf-8") as fh:
                rows = csv.reader(fh)
                header = next(rows)
                col = header.index("GG")
                gg = np.array([float(r[col]) for r in rows if r], dtype=np.float64)
        except (OSError, ValueError, StopIteration, IndexError) as exc:
            raise ShapeError(f"{path}: cannot read the GG column ({exc})") from exc
        if gg.size < 48 or gg.size % 48:
            raise ShapeError(f"{path}: expected whole days of half-hours, got {gg.size} rows")
        self.days = gg.reshape(-1, 48) * 0.5  # average kW over 30 min -> kWh
        self.kwp = kwp
        self.slots = slots
        rng = _rng(seed, 51, -1)
        self.offset = rng.integers(-7, 8, kwp.shape[0])

    def day(self, day_index: int, on: date) -> F64:
        """Return generated kWh per slot for the same season, shifted per customer.

        The file starts on 1 July (southern winter); the simulated 1 January (northern winter)
        maps to it, so seasons match for a site in China.
        """
        del day_index
        doy = on.timetuple().tm_yday - 1
        idx = (doy + self.offset) % self.days.shape[0]
        hh = self.days[idx]
        out: F64 = _halfhours_to_slots(hh, self.slots) * (self.kwp / self.SOURCE_KWP)[:, None]
        return out
