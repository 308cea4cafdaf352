"""Choosing the linkage thresholds: what each (auto-link, review lower bound) pair would give.

A data lead sets two match weights in the model: at or above ``auto`` a pair links on its
own; from ``review`` up to ``auto`` it goes to a person. This module scores one set of
candidate pairs (the run's own prediction, done once) under many threshold pairs and
reports, for each, the precision and recall of the persons a run would make, and the size
of the review queue it would open, then recommends the best pair whose queue fits a budget.

Two ways to tell right from wrong:

* a truth file (synthetic data): precision and recall are exactly what ``link evaluate``
  reports after ``link run`` with those thresholds (the same clustering, the same reviewers'
  decisions, the same metrics), and "after review" figures assume the queue is decided
  correctly and the hub relinked;
* the reviewers' decisions in force (real data): each labelled pair counts as right when the
  clustering, run *without* those decisions, puts it where the reviewer did. Labelled pairs
  come from past review queues, so this is a biased sample, near the old thresholds.

Clustering depends on the auto threshold only (below it, review-band and rejected pairs are
treated alike: see :func:`~mash_hub.matching.cluster.cluster`), so each auto value is
clustered once and the queue for a review bound is the part of its queue at or above it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mash_hub.audit import AuditEvent
from mash_hub.audit import record as audit
from mash_hub.matching import cluster as clustering
from mash_hub.matching import review as reviewing
from mash_hub.matching.evaluate import evaluate
from mash_hub.matching.features import FeatureTable
from mash_hub.matching.model import (
    LinkageModel,
    ScoredPair,
    Thresholds,
    frequencies_of,
    predict,
)
from mash_hub.matching.service import cyclic_gc_paused, load_feature_table, truth_by_record
from mash_hub.persons.models import SourceRecord
from mash_hub.persons.store import PersonStore

TRUTH = "truth"
REVIEWED = "reviewed_pairs"


def grid(low: float, high: float, step: float) -> list[float]:
    """``low`` to ``high`` inclusive in ``step`` s (rounded, so 0.1 steps stay tidy)."""
    if step <= 0:
        raise ValueError("the step must be above zero")
    if high < low:
        raise ValueError(f"the range {low:g} to {high:g} is empty")
    count = int(round((high - low) / step, 9)) + 1
    return [round(low + i * step, 4) for i in range(count)]


@dataclass
class Sweep:
    """Every candidate pair's figures, and the recommended one for the budget."""

    mode: str
    budget: int
    candidates: list[dict[str, Any]] = field(default_factory=list)
    recommended: dict[str, Any] | None = None
    labelled: dict[str, int] = field(default_factory=dict)


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 5), "recall": round(recall, 5), "f1": round(f1, 5)}


def cluster_map(result: clustering.Clustering, record_ids: Iterable[str]) -> dict[str, str]:
    """Record -> cluster key for every current record (one without features, or without a
    pair, is a cluster of its own), as ``link evaluate`` sees the persons after a run."""
    out = {rid: f"c{i}" for i, members in enumerate(result.clusters) for rid in members}
    for rid in record_ids:
        out.setdefault(rid, f"alone:{rid}")
    return out


def _queue(review: Sequence[ScoredPair], bound: float) -> list[ScoredPair]:
    return [p for p in review if p.match_weight >= bound]


def _records(queue: Iterable[ScoredPair]) -> int:
    return len({rid for p in queue for rid in (p.left, p.right)})


def sweep(
    rows: Mapping[str, Mapping[str, Any]],
    pairs: Sequence[ScoredPair],
    record_ids: Sequence[str],
    constraints: clustering.Constraints,
    *,
    autos: Sequence[float],
    reviews: Sequence[float],
    contradiction: float,
    budget: int,
    truth: Mapping[str, str] | None = None,
    step_done: Callable[[], None] | None = None,
) -> Sweep:
    """Figures for every (auto, review) with review <= auto; ``truth`` (record -> true
    person) when there is one, else the reviewers' decisions in ``constraints``.
    ``step_done`` is called once per auto value (a progress bar)."""
    mode = TRUTH if truth is not None else REVIEWED
    result = Sweep(
        mode=mode,
        budget=budget,
        labelled={"same": len(constraints.must_link), "different": len(constraints.cannot_link)},
    )
    lowest = min(reviews)
    for auto in sorted(autos):
        thresholds = Thresholds(auto=auto, review=min(lowest, auto), contradiction=contradiction)
        run = clustering.cluster(rows, pairs, thresholds, constraints)
        bounds = [r for r in sorted(reviews, reverse=True) if r <= auto]
        if truth is not None:
            cluster_of = cluster_map(run, record_ids)
            figures = evaluate(cluster_of, truth)["cluster"]
            after = _after_review(rows, pairs, record_ids, constraints, thresholds, truth)
        else:
            figures = _against_labels(rows, pairs, thresholds, constraints)
        for bound in bounds:
            queue = _queue(run.review, bound)
            row: dict[str, Any] = {
                "auto": auto,
                "review": bound,
                **figures,
                "review_pairs": len(queue),
                "review_records": _records(queue),
            }
            if truth is not None:
                row |= after(queue)
            result.candidates.append(row)
        if step_done is not None:
            step_done()
    result.candidates.sort(key=lambda c: (c["auto"], c["review"]))
    result.recommended = recommend(result.candidates, budget, mode)
    return result


def _after_review(  # noqa: PLR0917 - the sweep's state, passed on
    rows: Mapping[str, Mapping[str, Any]],
    pairs: Sequence[ScoredPair],
    record_ids: Sequence[str],
    constraints: clustering.Constraints,
    thresholds: Thresholds,
    truth: Mapping[str, str],
) -> Callable[[list[ScoredPair]], dict[str, Any]]:
    """Figures once reviewers decide the queue correctly and the hub is relinked: the
    queue's pairs become must-link / cannot-link decisions by the truth file. Queues of
    equal length are equal (each bound's queue contains the next higher one's)."""
    done: dict[int, dict[str, Any]] = {}

    def figures(queue: list[ScoredPair]) -> dict[str, Any]:
        cached = done.get(len(queue))
        if cached is not None:
            return cached
        judged = [p for p in queue if p.left in truth and p.right in truth]
        same = tuple((p.left, p.right) for p in judged if truth[p.left] == truth[p.right])
        apart = tuple((p.left, p.right) for p in judged if truth[p.left] != truth[p.right])
        decided = clustering.Constraints(
            must_link=constraints.must_link + same, cannot_link=constraints.cannot_link + apart
        )
        relinked = clustering.cluster(rows, pairs, thresholds, decided)
        metrics = evaluate(cluster_map(relinked, record_ids), truth)["cluster"]
        out = {
            "queue_same_person": len(same),
            "precision_after_review": metrics["precision"],
            "recall_after_review": metrics["recall"],
            "f1_after_review": metrics["f1"],
        }
        done[len(queue)] = out
        return out

    return figures


def _against_labels(
    rows: Mapping[str, Mapping[str, Any]],
    pairs: Sequence[ScoredPair],
    thresholds: Thresholds,
    constraints: clustering.Constraints,
) -> dict[str, Any]:
    """Pairwise precision and recall on the reviewers' decided pairs, of a clustering run
    without those decisions (with them, every decided pair would come out right)."""
    free = clustering.cluster(rows, pairs, thresholds, clustering.Constraints())
    where = free.cluster_of()

    def together(a: str, b: str) -> bool:
        return a in where and where.get(a) == where.get(b)

    tp = sum(1 for a, b in constraints.must_link if together(a, b))
    fn = len(constraints.must_link) - tp
    fp = sum(1 for a, b in constraints.cannot_link if together(a, b))
    return _prf(tp, fp, fn)


def recommend(
    candidates: Sequence[dict[str, Any]], budget: int, mode: str
) -> dict[str, Any] | None:
    """The best pair whose queue fits the budget (``None`` when none does).

    With a truth file: highest F1 once the queue is reviewed, then highest F1 before, then the
    smaller queue, then the higher auto threshold and the lower review bound (what costs
    nothing more). On reviewers' decisions: highest F1 on the decided pairs, then the larger
    queue (more pairs seen by a person), then the higher auto threshold."""
    fitting = [c for c in candidates if c["review_pairs"] <= budget]
    if not fitting:
        return None
    if mode == TRUTH:
        return max(
            fitting,
            key=lambda c: (
                c["f1_after_review"],
                c["f1"],
                -c["review_pairs"],
                c["auto"],
                -c["review"],
            ),
        )
    return max(fitting, key=lambda c: (c["f1"], c["review_pairs"], c["auto"], -c["review"]))


# -- against the hub's database ------------------------------------------------------------


@dataclass
class HubScores:
    """One prediction over every current record, as a full run makes it (no personal values:
    feature rows stay in memory, pairs carry record ids, levels and weights)."""

    rows: FeatureTable
    pairs: list[ScoredPair]
    record_ids: list[str]
    constraints: clustering.Constraints
    truth: dict[str, str] | None


def score_hub(
    session: Session, store: PersonStore, model: LinkageModel, truth_csv: Path | None = None
) -> HubScores:
    """Decrypt and score exactly as ``link run`` does (identity, identifiers and contact
    groups, in memory), with the reviewers' decisions and, if given, the truth file mapped
    onto record ids through keyed source keys. The caller audits the read."""
    rows, _ = load_feature_table(session, store)
    pairs = predict(rows, model, frequencies=frequencies_of(rows))
    record_ids = [
        str(rid)
        for rid in session.scalars(
            select(SourceRecord.id).where(
                SourceRecord.is_current.is_(True), SourceRecord.erased_at.is_(None)
            )
        )
    ]
    truth = truth_by_record(session, store, truth_csv) if truth_csv is not None else None
    return HubScores(rows, pairs, record_ids, reviewing.load_constraints(session), truth)


def threshold_sweep(
    session: Session,
    store: PersonStore,
    model: LinkageModel,
    *,
    autos: Sequence[float],
    reviews: Sequence[float],
    budget: int,
    actor: str,
    truth_csv: Path | None = None,
    step_done: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """:func:`sweep` over the hub's current records, audited as ``linkage.thresholds``."""
    scores = score_hub(session, store, model, truth_csv)
    if scores.truth is None and not (
        scores.constraints.must_link or scores.constraints.cannot_link
    ):
        raise NoLabelsError(
            "no reviewers' decisions to measure against: decide review tasks "
            "(`mash-hub link review decide`) or give --truth"
        )
    with cyclic_gc_paused():
        result = sweep(
            scores.rows,
            scores.pairs,
            scores.record_ids,
            scores.constraints,
            autos=autos,
            reviews=reviews,
            contradiction=model.thresholds.contradiction,
            budget=budget,
            truth=scores.truth,
            step_done=step_done,
        )
    document = {
        "model_version": model.version,
        "records": len(scores.record_ids),
        "candidate_pairs": len(scores.pairs),
        "mode": result.mode,
        "labelled_pairs": result.labelled,
        "truth_rows_matched": len(scores.truth) if scores.truth is not None else None,
        "current": {"auto": model.thresholds.auto, "review": model.thresholds.review},
        "budget": budget,
        "candidates": result.candidates,
        "recommended": result.recommended,
    }
    chosen = result.recommended
    audit(
        session,
        AuditEvent(
            actor=actor,
            action="linkage.thresholds",
            subject_type="linkage_model",
            subject_id=str(model.version),
            details={
                "records": document["records"],
                "candidate_pairs": document["candidate_pairs"],
                "mode": result.mode,
                "budget": budget,
                "candidates": len(result.candidates),
                "recommended": None
                if chosen is None
                else {"auto": chosen["auto"], "review": chosen["review"]},
            },
        ),
    )
    return document


class NoLabelsError(ValueError):
    """Neither a truth file nor any reviewers' decision to measure thresholds against."""
