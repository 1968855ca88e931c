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
    "previous_plus_average",
    "round_number",
    "identical_increment",
    "missing_read",
    "copied_previous",
    "times_ten_slip",
    "digit_transposition",
    "caught_up_later",
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


def screen_manual_reads(
    reads: ArrayLike,
    *,
    readers: ArrayLike | None = None,
    min_history: int = 2,
    average_tol: float = 1.0,
    near_tol: float = 0.1,
    flag_at: float = 0.5,
) -> ReadScreen:
    """Score manual or forwarded register reads for 估抄, 漏抄 and 错抄.

    估抄 evidence: the read equals the previous read plus the average increment, a round
    number, the same increment as last time. 漏抄: a read not delivered between delivered ones,
    or a copy of the previous read. 错抄: the read ×10 or ÷10, or with two adjacent digits
    swapped, would be where the history expects it; a low read that the next read catches up.

    Args:
        reads: (meters, reads) register values in date order (one reading cycle per column),
            NaN where no read was delivered.
        readers: (meters, reads) reader index per read, −1 unknown.
        min_history: increments needed before a read is judged against the average.
        average_tol: register units within which a read "equals" previous + average.
        near_tol: fraction of the expected increment within which a corrected read is "near".
        flag_at: score at which a read counts as estimated / skipped / an error for readers.

    Returns:
        Scores, evidence and the per-reader summary.

    Raises:
        TypeError: wrong dtypes.
        ValueError: wrong shapes.
    """
    r = as_float("reads", reads, 2)
    scores = np.zeros((*r.shape, 3))
    evidence = np.zeros(r.shape, dtype=np.uint16)
    k._screen_reads(r, min_history, average_tol, near_tol, scores, evidence)
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
