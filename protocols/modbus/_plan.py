"""Planning the read requests for a register map.

The planner groups a map's entries into as few FC03/FC04 requests as the device allows::

    entries   [V1][V2][V3]   [I1][I2]      gap > max_gap       [E1]
    requests  |<----- one request ----->|                      |<->|

A request never mixes tables, never exceeds ``max_registers`` (at most 125, the Modbus
limit), reads through at most ``max_gap`` unmapped registers between two entries, and
for devices with ``align = 2`` (Eastron) starts on an even address with an even count.
Within those rules the greedy sweep in address order yields the minimum number of
requests: a gap too wide forces a split, and extending the current request as far as the
limit allows can never need more requests than splitting earlier.
"""

from __future__ import annotations

from collections.abc import Iterable

from ._errors import PlanError, PlanFault
from ._types import MAX_READ_REGISTERS, ReadRequest, RegisterEntry, RegisterMap, Table

__all__ = ["plan_reads"]


def _floor(value: int, align: int) -> int:
    return value - value % align


def _ceil(value: int, align: int) -> int:
    return min(-(-value // align) * align, 0x10000)


def plan_reads(
    register_map: RegisterMap,
    *,
    quantities: Iterable[str] | None = None,
    max_registers: int | None = None,
    max_gap: int | None = None,
) -> tuple[ReadRequest, ...]:
    """Plan the minimal set of contiguous read requests that cover the wanted entries.

    Args:
        register_map: The meter's map; its ``read`` settings give the defaults.
        quantities: Only these quantities (default: every entry of the map).
        max_registers: Override the map's request size limit (capped at 125).
        max_gap: Override how many unmapped registers a request may read through.

    Returns:
        Requests ordered input table first, then by start address; each lists the
        quantities its reply contains.

    Raises:
        PlanError: ``bad_limit`` when the limit is outside 1..125 or too small for one
            entry, or ``max_gap`` is negative; ``unknown_quantity`` for a name the map lacks.
    """
    limit = min(register_map.read.max_registers, MAX_READ_REGISTERS)
    if max_registers is not None:
        if isinstance(max_registers, bool) or not 1 <= max_registers <= MAX_READ_REGISTERS:
            raise PlanError(
                f"max_registers must be 1..{MAX_READ_REGISTERS}, got {max_registers!r}",
                reason=PlanFault.BAD_LIMIT,
            )
        limit = min(limit, max_registers)
    gap = register_map.read.max_gap if max_gap is None else max_gap
    if gap < 0:
        raise PlanError(f"max_gap must be ≥ 0, got {gap}", reason=PlanFault.BAD_LIMIT)
    align = register_map.read.align

    if quantities is None:
        wanted: list[RegisterEntry] = list(register_map.entries)
    else:
        wanted = []
        for name in dict.fromkeys(quantities):
            entry = register_map.entry(name)
            if entry is None:
                raise PlanError(
                    f"map {register_map.name} has no quantity {name!r}",
                    reason=PlanFault.UNKNOWN_QUANTITY,
                    quantity=name,
                )
            wanted.append(entry)

    requests: list[ReadRequest] = []
    for table in Table:
        entries = sorted((e for e in wanted if e.table is table), key=lambda e: e.address)
        start = end = -1
        members: list[str] = []
        for entry in entries:
            alone = _ceil(entry.end, align) - _floor(entry.address, align)
            if alone > limit:
                raise PlanError(
                    f"{entry.quantity} needs a request of {alone} registers, "
                    f"more than the limit {limit}",
                    reason=PlanFault.BAD_LIMIT,
                    quantity=entry.quantity,
                )
            if members and (
                entry.address - end <= gap and _ceil(max(end, entry.end), align) - start <= limit
            ):
                end = max(end, entry.end)
                members.append(entry.quantity)
                continue
            if members:
                requests.append(
                    ReadRequest(table.function, start, _ceil(end, align) - start, tuple(members))
                )
            start, end, members = _floor(entry.address, align), entry.end, [entry.quantity]
        if members:
            requests.append(
                ReadRequest(table.function, start, _ceil(end, align) - start, tuple(members))
            )
    return tuple(requests)
