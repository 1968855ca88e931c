"""Manual-read screening on arrays: scores for 估抄, 漏抄 and 错抄 per read and per reader.

``reads`` is a (meters, reads) float64 array of register values in date order, one reading
cycle per column, NaN where no read was delivered. Scores are in [0, 1]; each read carries the
evidence behind its scores as a bit mask (:data:`EVIDENCE`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from analytics import _screen_kernels as k
from analytics._checks import as_float, as_int, same_shape

__all__ = ["EVIDENCE", "ReadScreen", "ReaderScore", "screen_manual_reads"]

#: Manual-read evidence names, bit ``i`` of :attr:`ReadScreen.evidence`.
EVIDENCE = (
    "previous_plus_average",  # 估抄: previous read + the average increment so far
    "round_number",  # 估抄: a multiple of 10 kWh
    "identical_increment",  # 估抄: the same increment as last time
    "missing_read",  # 漏抄: no read in a cycle
    "copied_previous",  # 漏抄: the previous read copied on a meter that is used
    "times_ten_slip",  # 错抄: the decimal point one place off (×10, ÷10)
    "digit_transposition",  # 错抄: two adjacent digits swapped
    "caught_up_later",  # 估抄: off the line of its neighbours; the next read is back on it
    "round_increment",  # 估抄: a whole number of kWh added, the decimals did not move
    "digit_slip",  # 错抄: one digit misread
    "neighbour_meter",  # 错抄: far off, and equal to another meter's read of the cycle
    "out_of_sequence",  # 错抄: further off than a guess would be, no slip explains it
    "differs_from_ami",  # the meter's automatic register says otherwise
    "matches_ami",  # the meter's automatic register confirms the read
)


@dataclass(frozen=True)
class ReaderScore:
    """Screening summary of one reader (抄表员)."""

    reader: int
    reads: int
    estimated: float
    skipped: int
    errors: int
    score: float


@dataclass(frozen=True)
class ReadScreen:
    """Per-read scores of manual reads and a per-reader summary.

    Attributes:
        estimated_score: (meters, reads) 估抄 score in [0, 1].
        skipped_score: (meters, reads) 漏抄 score in [0, 1].
        error_score: (meters, reads) 错抄 score in [0, 1].
        evidence: (meters, reads) uint16, bit ``i`` is :data:`EVIDENCE` ``[i]``.
        readers: per-reader summary, highest score first.
    """

    estimated_score: NDArray[np.float64]
    skipped_score: NDArray[np.float64]
    error_score: NDArray[np.float64]
    evidence: NDArray[np.uint16]
    readers: list[ReaderScore]

    def evidence_of(self, meter: int, read: int) -> list[str]:
        """Names of the findings on one read."""
        bits = int(self.evidence[meter, read])
        return [name for i, name in enumerate(EVIDENCE) if bits >> i & 1]


def _unwrap(r: NDArray[np.float64], span: float) -> NDArray[np.float64]:
    """Reads with register rollovers undone (each drop of more than half the span adds it)."""
    if r.size == 0:
        return r
    have = ~np.isnan(r)
    last = np.maximum.accumulate(np.where(have, np.arange(r.shape[1]), 0), axis=1)
    filled = np.take_along_axis(r, last, axis=1)
    with np.errstate(invalid="ignore"):
        drops = np.diff(filled, axis=1) < -span / 2.0
    rows = np.flatnonzero(drops.any(axis=1))
    if rows.size == 0:
        return r
    out = r.copy()
    wraps = np.concatenate([np.zeros((rows.size, 1)), np.cumsum(drops[rows], axis=1)], axis=1)
    out[rows] += wraps * span
    return out


def screen_manual_reads(
    reads: ArrayLike,
    *,
    readers: ArrayLike | None = None,
    reference: ArrayLike | None = None,
    reference_tol: ArrayLike | float = 0.05,
    min_history: int = 2,
    average_tol: float = 0.51,
    z_suspect: float = 3.0,
    z_error: float = 4.0,
    rollover: float = 1_000_000.0,
    flag_at: float = 0.5,
) -> ReadScreen:
    """Score manual or forwarded register reads for 估抄, 漏抄 and 错抄.

    Each read is compared with the line through its neighbouring reads (those not themselves
    suspect), in units of the meter's own spread of honest reads.

    * 估抄 (a value written without reading the meter): a whole number of kWh added to the
      previous read (the decimals did not move), a round number, previous + the average
      increment, the same increment as last time, and a read off the line whose next read is
      back on it (the register kept going: the catch-up). Each adds to the score.
    * 漏抄: a cycle without a read, or the previous read copied on a meter in use.
    * 错抄 (the meter read, the value wrong): a read off the line by more than ``z_error``
      that a slip of the pen puts back on it (×10 / ÷10, two adjacent digits swapped, one
      digit misread), or that equals another meter's read of the same cycle (a neighbour's
      meter read); a read further off than any guess would be is out of sequence.
    * With the meter's automatic register at the read's instant (``reference``, e.g. from
      AMI polls or freezes of the same meter), agreement clears the read and disagreement
      decides: a slip explains it or it is far off → 错抄, else 估抄.

    Args:
        reads: (meters, reads) register values in date order (one reading cycle per column),
            NaN where no read was delivered.
        readers: (meters, reads) reader index per read, −1 unknown.
        reference: (meters, reads) the meter's automatic register at each read's instant,
            NaN where there is none.
        reference_tol: how far a read may be from ``reference`` and agree (scalar or per read).
        min_history: increments needed before a read is judged against the average.
        average_tol: register units within which a read "equals" previous + average.
        z_suspect: residual, in the meter's scale, from which a read is set aside when its
            neighbours are judged (and, with a next read, counts as caught up).
        z_error: residual from which a slip of the pen that explains it makes a read 错抄.
        rollover: register span: a read more than half of it below the previous one is the
            register rolling over, not a step back (the reads are unwrapped first).
        flag_at: score at which a read counts as estimated / skipped / an error for readers.

    Returns:
        Scores, evidence and the per-reader summary.

    Raises:
        TypeError: wrong dtypes.
        ValueError: wrong shapes.
    """
    r = _unwrap(as_float("reads", reads, 2), rollover)
    n_m, n_k = r.shape
    if reference is None:
        ref = np.full(r.shape, np.nan)
    else:
        ref = as_float("reference", reference, 2)
        same_shape("reference", ref, r.shape)
    tol = np.broadcast_to(np.asarray(reference_tol, dtype=np.float64), r.shape).copy()
    # each cycle's delivered reads in ascending order, for "another meter's read"
    order = np.argsort(np.where(np.isnan(r), np.inf, r), axis=0, kind="stable").T
    col_rows = np.ascontiguousarray(order.astype(np.int64))
    col_vals = np.ascontiguousarray(np.take_along_axis(r.T, order, axis=1))
    col_n = (~np.isnan(r)).sum(axis=0).astype(np.int64)
    scores = np.zeros((n_m, n_k, 3))
    evidence = np.zeros(r.shape, dtype=np.uint16)
    k._screen_reads(r, ref, tol, col_vals, col_rows, col_n, min_history, average_tol,
                    z_suspect, z_error, scores, evidence)
    summary: list[ReaderScore] = []
    if readers is not None:
        who = as_int("readers", readers, 2)
        same_shape("readers", who, r.shape)
        ok = (who >= 0) & ~np.isnan(r)
        for rid in np.unique(who[who >= 0]):
            sel = ok & (who == rid)
            n = int(sel.sum())
            est = float(scores[..., 0][sel].mean()) if n else 0.0
            skipped = int((scores[..., 1][(who == rid)] >= flag_at).sum())
            errors = int((scores[..., 2][sel] >= flag_at).sum())
            score = est + (skipped + errors) / max(n, 1)
            summary.append(ReaderScore(int(rid), n, est, skipped, errors, score))
        summary.sort(key=lambda s: -s.score)
    return ReadScreen(scores[..., 0], scores[..., 1], scores[..., 2], evidence, summary)
