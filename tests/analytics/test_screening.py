"""Manual-read screening on arrays: 估抄, 漏抄 and 错抄 with the evidence a utility accepts."""

from __future__ import annotations

import numpy as np
import pytest

from analytics.screening import EVIDENCE, screen_manual_reads


def _book(seed: int, meters: int = 20, days: int = 40) -> np.ndarray:
    """Honest daily reads: registers from 200 … 30 000 kWh, daily use 2 … 15 kWh ± 25 %."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(200.0, 30000.0, meters)
    use = rng.uniform(2.0, 15.0, meters)[:, None] * rng.lognormal(0.0, 0.25, (meters, days))
    return np.floor((base[:, None] + np.cumsum(use, axis=1)) * 100.0) / 100.0


def test_honest_reads_are_not_flagged() -> None:
    r = _book(1, meters=50, days=60)
    s = screen_manual_reads(r)
    flagged = (s.estimated_score >= 0.5) | (s.error_score >= 0.5) | (s.skipped_score >= 0.5)
    assert flagged.mean() < 0.01


def test_estimate_from_the_book_average_is_found_by_its_whole_kwh_increment() -> None:
    r = _book(2)
    m, k = 3, 20
    avg = (r[m, k - 1] - r[m, k - 31 if k >= 31 else 0]) / (k - 1 - (k - 31 if k >= 31 else 0))
    r[m, k] = r[m, k - 1] + round(avg)  # the reader adds the average, in whole kWh
    s = screen_manual_reads(r)
    assert s.estimated_score[m, k] >= 0.5
    assert {"round_increment", "previous_plus_average"} <= set(s.evidence_of(m, k))
    assert s.error_score[m, k] < 0.5


def test_round_figure_and_catch_up() -> None:
    r = _book(3)
    m, k = 5, 15
    guess = np.ceil((r[m, k - 1] + 30.0) / 10.0) * 10.0  # a guess well above the real use
    r[m, k] = guess
    s = screen_manual_reads(r)
    assert s.estimated_score[m, k] >= 0.5
    ev = set(s.evidence_of(m, k))
    assert "round_number" in ev and "caught_up_later" in ev
    assert s.error_score[m, k] < 0.5
    # the real read after it is the catch-up, not a finding
    assert max(s.estimated_score[m, k + 1], s.error_score[m, k + 1]) < 0.5


@pytest.mark.parametrize(
    ("change", "name"),
    [
        (lambda v: v * 10.0, "times_ten_slip"),
        (lambda v: v / 10.0, "times_ten_slip"),
        (lambda v: float(str(int(v))[1] + str(int(v))[0] + str(int(v))[2:]) + v % 1.0,
         "digit_transposition"),
        (lambda v: v + 300.0 if int(v) // 100 % 10 < 7 else v - 300.0, "digit_slip"),
    ],
)
def test_slips_of_the_pen_are_named(change, name) -> None:  # type: ignore[no-untyped-def]
    r = _book(4)
    m, k = 7, 22
    true = r[m, k]
    r[m, k] = np.floor(change(true) * 100.0) / 100.0
    if abs(r[m, k] - true) < 50.0:
        pytest.skip("this meter's digits make the change small")
    s = screen_manual_reads(r)
    assert s.error_score[m, k] == 1.0
    assert name in s.evidence_of(m, k)
    assert s.estimated_score[m, k] < 0.5
    assert s.error_score[m, k - 1] < 0.5 and s.error_score[m, k + 1] < 0.5


def test_a_neighbours_meter_read_instead() -> None:
    r = _book(5)
    r[2, 30] = r[9, 30]  # the reader read meter 9 and wrote it in meter 2's line
    s = screen_manual_reads(r)
    assert s.error_score[2, 30] >= 0.9
    assert "neighbour_meter" in s.evidence_of(2, 30)
    assert s.error_score[9, 30] < 0.5


def test_skipped_and_copied_reads() -> None:
    r = _book(6)
    r[1, 10] = np.nan
    r[4, 12] = r[4, 11]
    s = screen_manual_reads(r)
    assert s.skipped_score[1, 10] == 1.0 and "missing_read" in s.evidence_of(1, 10)
    assert s.skipped_score[4, 12] == 1.0 and "copied_previous" in s.evidence_of(4, 12)
    # a meter nobody uses: unchanged reads are not copies
    idle = np.full((1, 10), 1234.56)
    assert screen_manual_reads(idle).skipped_score.max() == 0.0


def test_automatic_register_confirms_or_contradicts() -> None:
    r = _book(7)
    ref = np.full(r.shape, np.nan)
    m = 6
    ref[m] = r[m]  # the meter is also polled: the register at each read's instant
    r[m, 10] = r[m, 9] + 8.0  # whole kWh added … but the register agrees: a true read
    ref[m, 10] = r[m, 10]
    r[m, 20] += 1.37  # an honest-looking value the register contradicts
    s = screen_manual_reads(r, reference=ref, reference_tol=0.05)
    assert s.estimated_score[m, 10] == 0.0 and "matches_ami" in s.evidence_of(m, 10)
    assert s.estimated_score[m, 20] == 1.0 and "differs_from_ami" in s.evidence_of(m, 20)
    r[m, 25] *= 10.0
    s = screen_manual_reads(r, reference=ref, reference_tol=0.05)
    assert s.error_score[m, 25] == 1.0
    assert {"differs_from_ami", "times_ten_slip"} <= set(s.evidence_of(m, 25))


def test_evidence_names_fit_the_bit_mask() -> None:
    assert len(EVIDENCE) <= 16 and len(set(EVIDENCE)) == len(EVIDENCE)


def test_shapes_are_checked() -> None:
    with pytest.raises(ValueError):
        screen_manual_reads(np.zeros((2, 3)), reference=np.zeros((2, 4)))
    with pytest.raises(ValueError):
        screen_manual_reads(np.zeros((2, 3)), readers=np.zeros((3, 3), dtype=np.int64))


def test_a_register_rolling_over_is_not_a_finding() -> None:
    r = _book(8, meters=3, days=30)
    r[1] = np.floor(((999_900.0 + np.cumsum(np.full(30, 7.3))) % 1_000_000.0) * 100.0) / 100.0
    s = screen_manual_reads(r)
    assert max(s.estimated_score.max(), s.error_score.max(), s.skipped_score.max()) < 0.5
