"""Reviewers' decisions in the clustering, without a database: cannot-link, must-link, events."""

from __future__ import annotations

import uuid

from mash_hub.matching import comparisons as comp
from mash_hub.matching.cluster import Constraints, cluster
from mash_hub.matching.model import ScoredPair, Thresholds
from mash_hub.matching.service import person_events

LEVELS = {c.name: "exact" for c in comp.COMPARISONS if c.name not in comp.IDENTIFIER_COLUMNS}
LEVELS.update(dict.fromkeys(comp.IDENTIFIER_COLUMNS, "null"))


def _pair(a: str, b: str, weight: float) -> ScoredPair:
    return ScoredPair(a, b, weight, LEVELS, {})


def test_cannot_link_holds_even_through_other_records() -> None:
    rows = {r: {"unique_id": r} for r in "abc"}
    pairs = [_pair("a", "b", 30), _pair("b", "c", 29), _pair("a", "c", 28)]
    assert cluster(rows, pairs, Thresholds()).clusters == [["a", "b", "c"]]
    result = cluster(rows, pairs, Thresholds(), Constraints(cannot_link=(("a", "c"),)))
    assert sorted(result.clusters) == [["a", "b"], ["c"]]
    # The decided pair is not put back in the review queue; the blocked b-c link is.
    assert [(p.left, p.right) for p in result.review] == [("b", "c")]


def test_must_link_joins_what_the_model_keeps_apart() -> None:
    rows = {r: {"unique_id": r} for r in "abc"}
    pairs = [_pair("a", "b", 3), _pair("b", "c", -20)]
    assert len(cluster(rows, pairs, Thresholds()).clusters) == 3
    result = cluster(rows, pairs, Thresholds(), Constraints(must_link=(("a", "b"), ("c", "b"))))
    # Must-link ignores the contradiction guard: a person decided it.
    assert result.clusters == [["a", "b", "c"]]
    assert result.conflicts == []


def test_must_link_never_breaks_an_identifier_conflict_or_a_cannot_link() -> None:
    rows = {
        "a": {"unique_id": "a", "nhs_number": "9434765919"},
        "b": {"unique_id": "b", "nhs_number": "9434765870"},
        "c": {"unique_id": "c"},
        "d": {"unique_id": "d"},
    }
    constraints = Constraints(must_link=(("a", "b"), ("c", "d")), cannot_link=(("d", "c"),))
    result = cluster(rows, [], Thresholds(), constraints)
    assert len(result.clusters) == 4
    assert sorted((c.left, c.right, c.reason) for c in result.conflicts) == [
        ("a", "b", "identifier_conflict"),
        ("c", "d", "cannot_link"),
    ]


def test_existing_persons_are_never_merged_incrementally() -> None:
    rows = {r: {"unique_id": r} for r in "abcn"}
    pairs = [_pair("a", "n", 30), _pair("c", "n", 30)]
    groups = {"a": "P", "b": "P", "c": "Q"}
    result = cluster(rows, pairs, Thresholds(), Constraints(groups=groups))
    assert sorted(result.clusters) == [["a", "b", "n"], ["c"]]
    assert [(p.left, p.right) for p in result.review] == [("c", "n")]


def test_person_events_name_creates_joins_merges_and_splits() -> None:
    p, q, r = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    previous = {"1": p, "2": p, "3": q, "4": None, "5": r, "6": r, "7": None}
    new = uuid.uuid4()
    assigned = [(["1", "2", "3", "4"], p), (["5"], r), (["6"], new), (["7"], uuid.uuid4())]
    events = person_events(assigned, previous)
    kinds = sorted(e["kind"] for e in events)
    assert kinds == ["create", "join", "merge", "split"]
    merge = next(e for e in events if e["kind"] == "merge")
    assert merge["person_ids"] == [str(p), str(q)] and merge["records"] == 4
    split = next(e for e in events if e["kind"] == "split")
    assert split["person_ids"] == [str(r), str(new)] and split["records"] == 2
