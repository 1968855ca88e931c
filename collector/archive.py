"""The archive (档案): areas, meters, gateways, concentrators, customers, from TOML or CSV.

The TOML format is CONTRACTS.md's "archive file for ``fleet load``" (``version = 1``; unknown
keys are errors). A CSV of meters with the same column names, one row per meter, is accepted
for large archives (areas are then created by id). Loading is an upsert that keeps history:
a meter moved to another area closes its old ``meter_area`` row and opens a new one, a changed
CT/PT adds a ``meter_multiplier`` row, and every change is written to the audit log.
"""

from __future__ import annotations

import csv
import io
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class ArchiveError(Exception):
    """The archive file is invalid; the message names the entry and field."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError("needs a UTC offset")
    return value


class Area(_Strict):
    """A transformer area (台区)."""

    id: Annotated[str, Field(min_length=1, max_length=64)]
    name: str | None = None
    loss_band: tuple[float, float] | None = None
    coverage_min: Annotated[float, Field(ge=0, le=100)] | None = None
    estimated_max: Annotated[float, Field(ge=0, le=100)] | None = None
    low_energy_kwh: Annotated[float, Field(ge=0)] | None = None

    @field_validator("loss_band")
    @classmethod
    def _band(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and v[0] > v[1]:
            raise ValueError("lower bound above upper bound")
        return v


#: Energy registers a meter's installation and removal readings may name besides the forward
#: active total, which is ``start_reading`` / ``end_reading`` (CONTRACTS.md).
EXCHANGE_REGISTERS = (
    "reverse_active_total_kwh",
    "forward_active_t1_kwh",
    "forward_active_t2_kwh",
    "forward_active_t3_kwh",
    "forward_active_t4_kwh",
)
ExchangeRegister = Literal[
    "reverse_active_total_kwh",
    "forward_active_t1_kwh",
    "forward_active_t2_kwh",
    "forward_active_t3_kwh",
    "forward_active_t4_kwh",
]
Reading = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class Meter(_Strict):
    """A meter and where it sits.

    ``start_reading`` / ``end_reading`` are the forward active total at ``installed`` /
    ``removed``; ``start_readings`` / ``end_readings`` carry the meter's other energy registers
    at the same instants (reverse active energy of a bidirectional meter, tariff registers),
    keyed by quantity name, so that a meter exchange inside a period keeps every term of the
    balance.
    """

    number: Annotated[str, Field(pattern=r"^[0-9]{12}$")]
    area: str | None = None
    role: Literal["supply", "customer"] = "customer"
    protocol: Literal["dlt645-2007", "dlt645-1997", "modbus", "mqtt", "manual"]
    model: str | None = None
    interval: Annotated[int, Field(gt=0, le=1440)] | None = None
    schedule: str | None = None
    bidirectional: bool = False
    ct: Annotated[float, Field(gt=0)] = 1.0
    pt: Annotated[float, Field(gt=0)] = 1.0
    gateway: str | None = None
    unit: Annotated[int, Field(ge=0, le=255)] | None = None
    concentrator: str | None = None
    installed: datetime | None = None
    start_reading: Reading | None = None
    removed: datetime | None = None
    end_reading: Reading | None = None
    start_readings: dict[ExchangeRegister, Reading] = {}
    end_readings: dict[ExchangeRegister, Reading] = {}
    customer: str | None = None
    account: str | None = None
    area_history: list[tuple[str, datetime, datetime]] = []

    _check_installed = field_validator("installed", "removed")(_aware)

    @field_validator("start_readings", "end_readings", mode="before")
    @classmethod
    def _no_forward_total(cls, v: Any, info: Any) -> Any:
        if isinstance(v, dict) and "forward_active_total_kwh" in v:
            single = info.field_name.removesuffix("s")
            raise ValueError(f"the forward active total is given as {single}")
        return v

    def model_post_init(self, __context: Any) -> None:
        if (self.removed is None) != (self.end_reading is None):
            raise ValueError("removed and end_reading go together")
        if self.start_readings and self.installed is None:
            raise ValueError("start_readings need installed (the instant they were read)")
        if self.end_readings and self.removed is None:
            raise ValueError("end_readings need removed (the instant they were read)")
        if self.removed and self.installed and self.removed <= self.installed:
            raise ValueError("removed before installed")
        for area, start, end in self.area_history:
            if start.tzinfo is None or end.tzinfo is None:
                raise ValueError(f"area_history {area}: instants need a UTC offset")
            if end <= start:
                raise ValueError(f"area_history {area}: 'to' is not after 'from'")


class Gateway(_Strict):
    """A DL/T 645 or Modbus TCP gateway (DTU)."""

    id: Annotated[str, Field(min_length=1, max_length=64)]
    url: str | None = None
    mode: Literal["connect", "listen"] = "connect"
    model: str | None = None

    def model_post_init(self, __context: Any) -> None:
        if self.mode == "connect" and not self.url:
            raise ValueError("a gateway in mode 'connect' needs a url")


class Concentrator(_Strict):
    """An MQTT concentrator."""

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    broker: str | None = None
    username: str | None = None
    password_ref: str | None = None
    password: str | None = None


class Clock(_Strict):
    """The simulated clock a fleet follows."""

    sim_start: datetime
    wall_start: datetime
    speed: Annotated[float, Field(gt=0)] = 1.0


class Archive(_Strict):
    """A whole archive file."""

    version: Literal[1]
    timezone: str | None = None
    area: list[Area] = []
    meter: list[Meter] = []
    gateway: list[Gateway] = []
    concentrator: list[Concentrator] = []
    clock: Clock | None = None

    def model_post_init(self, __context: Any) -> None:
        for kind, items in (("area", self.area), ("gateway", self.gateway),
                            ("concentrator", self.concentrator)):
            ids = [i.id for i in items]
            dup = {i for i in ids if ids.count(i) > 1}
            if dup:
                raise ValueError(f"{kind} id(s) repeated: {', '.join(sorted(dup))}")
        numbers = [m.number for m in self.meter]
        dup = {n for n in numbers if numbers.count(n) > 1}
        if dup:
            raise ValueError(f"meter number(s) repeated: {', '.join(sorted(dup))}")
        areas = {a.id for a in self.area}
        gateways = {g.id for g in self.gateway}
        concs = {c.id for c in self.concentrator}
        for m in self.meter:
            if m.area is not None and areas and m.area not in areas:
                raise ValueError(f"meter {m.number}: area {m.area!r} is not in the file")
            if m.gateway is not None and m.gateway not in gateways:
                raise ValueError(f"meter {m.number}: gateway {m.gateway!r} is not in the file")
            if m.concentrator is not None and m.concentrator not in concs:
                raise ValueError(
                    f"meter {m.number}: concentrator {m.concentrator!r} is not in the file"
                )


def _explain(exc: ValidationError, raw: dict[str, Any]) -> str:
    err = exc.errors()[0]
    loc = list(err["loc"])
    where: list[str] = []
    node: Any = raw
    for part in loc:
        if isinstance(part, int) and isinstance(node, list) and part < len(node):
            node = node[part]
            ident = node.get("id") or node.get("number") if isinstance(node, dict) else None
            where[-1] = f"{where[-1]}[{part}]" + (f" ({ident})" if ident else "")
        else:
            where.append(str(part))
            node = node.get(part) if isinstance(node, dict) else None
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    return f"{'.'.join(where) or 'archive'}: {msg}"


def parse_archive(data: bytes, *, name: str = "archive", site_timezone: str) -> Archive:
    """Parse and validate an archive file (TOML, or a CSV of meters).

    Raises:
        ArchiveError: naming the entry and field at fault.
    """
    if name.lower().endswith(".csv"):
        raw = _csv_to_raw(data)
    else:
        try:
            raw = tomllib.loads(data.decode("utf-8-sig"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ArchiveError("bad_toml", f"{name}: not valid TOML ({exc})") from None
    try:
        archive = Archive.model_validate(raw)
    except ValidationError as exc:
        raise ArchiveError("invalid", f"{name}: {_explain(exc, raw)}") from None
    if archive.timezone is not None and archive.timezone != site_timezone:
        raise ArchiveError(
            "timezone",
            f"{name}: timezone {archive.timezone!r} differs from the site's {site_timezone!r} "
            "(METERHUB_TIMEZONE)",
        )
    return archive


def _csv_to_raw(data: bytes) -> dict[str, Any]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ArchiveError("not_utf8", f"the meter CSV is not UTF-8 ({exc})") from None
    reader = csv.DictReader(io.StringIO(text))
    meters: list[dict[str, Any]] = []
    areas: dict[str, dict[str, Any]] = {}
    ints = {"interval", "unit"}
    floats = {"ct", "pt", "start_reading", "end_reading"}
    for rec in reader:
        m: dict[str, Any] = {}
        for key, value in rec.items():
            if key is None:
                raise ArchiveError("bad_csv", f"line {reader.line_num}: too many fields")
            value = (value or "").strip()
            if value == "":
                continue
            if key in ints:
                m[key] = int(value) if value.isdigit() else value
            elif key.startswith(("start_readings.", "end_readings.")):
                table, _, quantity = key.partition(".")
                try:
                    m.setdefault(table, {})[quantity] = float(value)
                except ValueError:
                    m.setdefault(table, {})[quantity] = value
            elif key in floats:
                try:
                    m[key] = float(value)
                except ValueError:
                    m[key] = value
            elif key == "bidirectional":
                m[key] = value.lower() in ("1", "true", "yes")
            else:
                m[key] = value
        if "area" in m:
            areas.setdefault(m["area"], {"id": m["area"]})
        meters.append(m)
    return {"version": 1, "area": list(areas.values()), "meter": meters}


def load_file(path: Path, *, site_timezone: str) -> Archive:
    """Read and parse an archive file.

    Raises:
        ArchiveError: unreadable or invalid.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ArchiveError("unreadable", f"{path}: {exc.strerror}") from None
    return parse_archive(data, name=path.name, site_timezone=site_timezone)
