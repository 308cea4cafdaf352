"""The threshold sweep's figures, worked out by hand on five records (no database needed:
the sweep is a pure function of scored pairs; the CLI test checks it against real runs)."""

from __future__ import annotations

from typing import Any

import pytest

from mash_hub.matching.cluster import Constraints
from mash_hub.matching.comparisons import COMPARISONS
from mash_hub.matching.model import ScoredPair
from mash_hub.matching.thresholds import REVIEWED, TRUTH, grid, sweep

ROWS: dict[str, dict[str, Any]] = {
    rid: {"given_first": rid} for rid in ("a1", "a2", "b1", "c1", "c2")
}
TRUTH_OF = {"a1": "A", "a2": "A", "b1": "B", "c1": "C", "c2": "C"}


def _pair(left: str, right: str, weight: float) -> ScoredPair:
    levels = {c.name: "else" for c in COMPARISONS}
    return ScoredPair(left, right, weight, levels, {c.name: 0.0 for c in COMPARISONS})


# a1-a2 strong (one person), a2-b1 middling (two people), c1-c2 weak (one person).
PAIRS = [_pair("a1", "a2", 10.0), _pair("a2", "b1", 5.0), _pair("c1", "c2", 3.0)]


def _figures(budget: int, constraints: Constraints, truth: bool) -> Any:
    return sweep(
        ROWS,
        PAIRS,
        list(ROWS),
        constraints,
        autos=[4.0, 8.0],
        reviews=[2.0, 4.0],
        contradiction=-6.0,
        budget=budget,
        truth=TRUTH_OF if truth else None,
    )


def test_truth_figures_by_hand() -> None:
    result = _figures(1, Constraints(), truth=True)
    assert result.mode == TRUTH
    got = {(c["auto"], c["review"]): c for c in result.candidates}
    assert set(got) == {(4.0, 2.0), (4.0, 4.0), (8.0, 2.0), (8.0, 4.0)}
    # auto 4: a1, a2 and b1 in one person: 1 of 3 pairs right, 1 of 2 true pairs found.
    low = got[(4.0, 2.0)]
    assert (low["precision"], low["recall"], low["review_pairs"], low["review_records"]) == (
        0.33333, 0.5, 1, 2)  # fmt: skip
    # Reviewing c1-c2 (same person) finds the second true pair.
    assert (low["precision_after_review"], low["recall_after_review"]) == (0.5, 1.0)
    assert low["queue_same_person"] == 1
    assert got[(4.0, 4.0)]["review_pairs"] == 0
    assert got[(4.0, 4.0)]["recall_after_review"] == 0.5
    # auto 8: only a1-a2 linked; the queue holds a2-b1 (different) and, from 2, c1-c2.
    assert (got[(8.0, 4.0)]["precision"], got[(8.0, 4.0)]["recall"]) == (1.0, 0.5)
    assert got[(8.0, 4.0)]["review_pairs"] == 1
    assert got[(8.0, 4.0)]["recall_after_review"] == 0.5
    assert got[(8.0, 2.0)]["review_pairs"] == 2
    assert got[(8.0, 2.0)]["recall_after_review"] == 1.0
    # Within 1 task, (4, 2) and (8, 4) tie on F1 after review; (8, 4) is better before.
    assert result.recommended is got[(8.0, 4.0)]
    assert _figures(2, Constraints(), truth=True).recommended == got[(8.0, 2.0)]
    assert _figures(0, Constraints(), truth=True).recommended == got[(4.0, 4.0)]


def test_reviewers_decisions_as_labels() -> None:
    decided = Constraints(must_link=(("c1", "c2"),), cannot_link=(("a2", "b1"),))
    result = _figures(5, decided, truth=False)
    assert result.mode == REVIEWED
    assert result.labelled == {"same": 1, "different": 1}
    got = {(c["auto"], c["review"]): c for c in result.candidates}
    # Clustered without the decisions: at auto 4, a2-b1 is wrongly joined and c1-c2 missed.
    assert (got[(4.0, 2.0)]["precision"], got[(4.0, 2.0)]["recall"]) == (0.0, 0.0)
    # At auto 8 nothing decided is joined: no wrong link, c1-c2 still missed.
    assert (got[(8.0, 2.0)]["precision"], got[(8.0, 2.0)]["recall"]) == (1.0, 0.0)
    # The queue obeys the decisions: both decided pairs leave it.
    assert got[(8.0, 2.0)]["review_pairs"] == 0
    assert result.recommended == got[(8.0, 2.0)]


def test_grid() -> None:
    assert grid(-2, 1, 1) == [-2.0, -1.0, 0.0, 1.0]
    assert grid(4, 5, 0.5) == [4.0, 4.5, 5.0]
    with pytest.raises(ValueError, match="empty"):
        grid(5, 4, 1)
