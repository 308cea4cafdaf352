"""The linkage-bias report (``link evaluate --by``): per-group precision, recall and review
share, checked against a plain pair-by-pair restatement."""

from __future__ import annotations

from itertools import combinations
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from mash_hub.matching.evaluate import evaluate_by_group


def _by_pairs(
    cluster_of: dict[str, int],
    truth: dict[str, str],
    group_of: dict[str, str],
    review: set[str],
) -> dict[str, dict[str, Any]]:
    """The same figures, by walking every pair of records."""
    tp: dict[str, int] = {}
    fp: dict[str, int] = {}
    fn: dict[str, int] = {}
    for a, b in combinations(sorted(cluster_of), 2):
        same_person = truth[a] == truth[b]
        together = cluster_of[a] == cluster_of[b]
        groups = {group_of[truth[a]], group_of[truth[b]]}
        for g in groups:
            if same_person and together:
                tp[g] = tp.get(g, 0) + 1
            elif same_person:
                fn[g] = fn.get(g, 0) + 1
            elif together:
                fp[g] = fp.get(g, 0) + 1
    out: dict[str, dict[str, Any]] = {}
    for g in {group_of[truth[r]] for r in cluster_of}:
        t, f, n = tp.get(g, 0), fp.get(g, 0), fn.get(g, 0)
        records = [r for r in cluster_of if group_of[truth[r]] == g]
        out[g] = {
            "precision": round(t / (t + f), 5) if t + f else 1.0,
            "recall": round(t / (t + n), 5) if t + n else 1.0,
            "records": len(records),
            "review_share": round(sum(r in review for r in records) / len(records), 5),
        }
    return out


@st.composite
def _linkage(draw: st.DrawFn) -> tuple[dict[str, int], dict[str, str], dict[str, str], set[str]]:
    n = draw(st.integers(1, 25))
    records = [f"r{i}" for i in range(n)]
    truth = {r: f"p{draw(st.integers(0, 8))}" for r in records}
    cluster_of = {r: draw(st.integers(0, 6)) for r in records}
    group_of = {f"p{i}": draw(st.sampled_from(["0-4", "5-10", "65+"])) for i in range(9)}
    review = {r for r in records if draw(st.booleans())}
    return cluster_of, truth, group_of, review


@given(_linkage())
def test_group_figures_match_a_pair_by_pair_count(
    case: tuple[dict[str, int], dict[str, str], dict[str, str], set[str]],
) -> None:
    cluster_of, truth, group_of, review = case
    attributes = {p: {"age_band": g} for p, g in group_of.items()}
    report = evaluate_by_group(cluster_of, truth, attributes, ["age_band"], review)
    expected = _by_pairs(cluster_of, truth, group_of, review)
    got = report["age_band"]["groups"]
    assert set(got) == set(expected)
    for group, figures in expected.items():
        for name, value in figures.items():
            assert got[group][name] == value, (group, name)
        low, high = got[group]["recall_95"]
        assert low <= figures["recall"] + 1e-4 and figures["recall"] <= high + 1e-4
    worst = min(
        (g["recall"] for g in got.values() if g["true_pairs"]), default=report["overall"]["recall"]
    )
    assert report["age_band"]["max_recall_gap"] == round(
        max(0.0, report["overall"]["recall"] - worst), 5
    )


def test_a_false_merge_across_groups_counts_against_both() -> None:
    # Two records of a child (p1), one of an adult (p2) wrongly put with the child's.
    cluster_of = {"a": 1, "b": 1, "c": 1, "d": 2, "e": 3}
    truth = {"a": "p1", "b": "p1", "c": "p2", "d": "p3", "e": "p3"}
    attributes = {
        "p1": {"age_band": "0-4"},
        "p2": {"age_band": "45-64"},
        "p3": {"age_band": "45-64"},
    }
    report = evaluate_by_group(cluster_of, truth, attributes, ["age_band"], {"d"})
    child, adult = report["age_band"]["groups"]["0-4"], report["age_band"]["groups"]["45-64"]
    assert child["recall"] == 1.0 and child["precision"] == round(1 / 3, 5)
    assert adult["recall"] == 0.0 and adult["precision"] == 0.0  # p3 split; p2 falsely merged
    assert adult["review_share"] == round(1 / 3, 5)
    assert report["age_band"]["max_recall_gap"] == report["overall"]["recall"]


def test_unknown_attribute_values_form_their_own_group() -> None:
    report = evaluate_by_group({"a": 1, "b": 1}, {"a": "p1", "b": "p1"}, {}, ["sex"])
    assert set(report["sex"]["groups"]) == {"unknown"}
