"""Linkage quality against ground truth: pairwise and cluster metrics, false merges, review.

Pure functions over ``record -> cluster`` and ``record -> true person`` mappings, so the same
code scores a database run (truth mapped through keyed source keys) and an in-memory one.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping
from typing import Any


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 5), "recall": round(recall, 5), "f1": round(f1, 5)}


def _pairs_within(groups: Iterable[list[str]]) -> int:
    return sum(len(g) * (len(g) - 1) // 2 for g in groups)


def evaluate(
    cluster_of: Mapping[str, Any],
    truth: Mapping[str, str],
    links: Iterable[tuple[str, str]] = (),
    review_records: int = 0,
) -> dict[str, Any]:
    """Metrics over the records present in both mappings.

    * ``cluster``: precision/recall/F1 of the record pairs the clustering puts together;
    * ``links``: the same for the auto links alone (before clustering closes them);
    * ``false_merge_people``: true persons sharing a cluster with another person;
    * ``split_people``: true persons whose records are in more than one cluster.
    """
    records = [r for r in cluster_of if r in truth]
    by_cluster: dict[Any, list[str]] = defaultdict(list)
    by_person: dict[str, list[str]] = defaultdict(list)
    for r in records:
        by_cluster[cluster_of[r]].append(r)
        by_person[truth[r]].append(r)
    predicted = _pairs_within(by_cluster.values())
    actual = _pairs_within(by_person.values())
    tp = 0
    false_merge_people: set[str] = set()
    for members in by_cluster.values():
        people = Counter(truth[r] for r in members)
        tp += sum(n * (n - 1) // 2 for n in people.values())
        if len(people) > 1:
            false_merge_people.update(people)
    split_people = sum(
        1 for members in by_person.values() if len({cluster_of[r] for r in members}) > 1
    )
    link_tp = link_fp = 0
    for left, right in links:
        if left in truth and right in truth:
            if truth[left] == truth[right]:
                link_tp += 1
            else:
                link_fp += 1
    return {
        "records": len(records),
        "true_people": len(by_person),
        "predicted_people": len(by_cluster),
        "cluster": _prf(tp, predicted - tp, actual - tp),
        "links": _prf(link_tp, link_fp, actual - link_tp),
        "false_merge_people": len(false_merge_people),
        "split_people": split_people,
        "review_queue_records": review_records,
        "review_queue_share": round(review_records / len(records), 5) if records else 0.0,
    }


def evaluate_by_group(
    cluster_of: Mapping[str, Any],
    truth: Mapping[str, str],
    attributes: Mapping[str, Mapping[str, str]],
    by: Iterable[str],
    review_records: Collection[str] = (),
) -> dict[str, Any]:
    """Cluster precision, recall and review share per group of true persons (the bias report).

    ``attributes`` gives each true person's attributes (age band, sex, name origin …); each
    attribute in ``by`` splits the persons into groups. For a group:

    * recall: of the record pairs of its persons, the share the clustering put together;
    * precision: of the predicted pairs with at least one record of its persons, the share
      that are true (a false merge of two groups' persons counts against both);
    * review share: of its persons' records, the share in the review queue.

    ``max_recall_gap`` per attribute is how far the worst group's recall falls below the
    overall recall: the figure the report's goal (no group more than a point below) is on.
    """
    records = [r for r in cluster_of if r in truth]
    by_cluster: dict[Any, Counter[str]] = defaultdict(Counter)
    per_person: Counter[str] = Counter()
    for r in records:
        by_cluster[cluster_of[r]][truth[r]] += 1
        per_person[truth[r]] += 1
    in_review = Counter(truth[r] for r in review_records if r in truth)
    overall = evaluate(cluster_of, truth, review_records=len(review_records))
    report: dict[str, Any] = {"overall": overall["cluster"] | {"records": overall["records"]}}
    for attribute in by:
        group_of = {p: attributes.get(p, {}).get(attribute, "unknown") for p in per_person}
        tp: Counter[str] = Counter()
        false_pairs: Counter[str] = Counter()
        for people in by_cluster.values():
            size = sum(people.values())
            in_group: Counter[str] = Counter()
            for person, n in people.items():
                in_group[group_of[person]] += n
                tp[group_of[person]] += n * (n - 1) // 2
            for group, n in in_group.items():
                touching = size * (size - 1) // 2 - (size - n) * (size - n - 1) // 2
                together = sum(m * (m - 1) // 2 for p, m in people.items() if group_of[p] == group)
                false_pairs[group] += touching - together
        actual: Counter[str] = Counter()
        group_records: Counter[str] = Counter()
        group_review: Counter[str] = Counter()
        for person, n in per_person.items():
            group = group_of[person]
            actual[group] += n * (n - 1) // 2
            group_records[group] += n
            group_review[group] += in_review[person]
        groups: dict[str, dict[str, Any]] = {
            group: _prf(tp[group], false_pairs[group], actual[group] - tp[group])
            | {
                "records": group_records[group],
                "true_pairs": actual[group],
                "recall_95": _wilson(tp[group], actual[group]),
                "review_share": round(group_review[group] / group_records[group], 5),
            }
            for group in sorted(group_records, key=_natural)
        }
        worst = min((float(g["recall"]) for g in groups.values() if g["true_pairs"]), default=1.0)
        report[attribute] = {
            "groups": groups,
            "max_recall_gap": round(max(0.0, overall["cluster"]["recall"] - worst), 5),
        }
    return report


def _natural(group: str) -> tuple[float, str]:
    """Age bands in age order ("5-10" before "11-17"), other groups by name."""
    digits = group.split("-", maxsplit=1)[0].rstrip("+")
    return (float(digits) if digits.isdigit() else float("inf"), group)


def _wilson(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """A 95 % Wilson interval for a share: small groups have wide ones, so a gap between a
    small group and the overall figure is only worth chasing when the interval excludes it.
    (Pairs of one person's records are not independent, so the interval is a guide.)"""
    if trials == 0:
        return (0.0, 1.0)
    share = successes / trials
    centre = (share + z * z / (2 * trials)) / (1 + z * z / trials)
    half = (z / (1 + z * z / trials)) * math.sqrt(
        share * (1 - share) / trials + z * z / (4 * trials * trials)
    )
    return (round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4))
