"""The model without a database: determinism, saved parameters, guards, explanations."""

from __future__ import annotations

import csv
import itertools
import uuid
from pathlib import Path
from typing import Any

import pytest

from mash_hub.matching import comparisons as comp
from mash_hub.matching.cluster import (
    AUTO,
    POSSIBLE_TWIN,
    cluster,
    keying_error,
    pair_status,
    stable_person_ids,
)
from mash_hub.matching.features import record_features
from mash_hub.matching.model import (
    MIN_LABELS,
    LinkageModel,
    ModelMismatchError,
    ScoredPair,
    Thresholds,
    explain,
    predict,
    train,
)
from tests.matching.extracts import generated_feature_rows


@pytest.fixture(scope="module")
def extracts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model")


@pytest.fixture(scope="module")
def rows(extracts: Path) -> list[dict[str, Any]]:
    return generated_feature_rows(extracts, people=500, seed=31)


def _record(given: list[str], family: str, dob: str, **extra: Any) -> dict[str, Any]:
    contact = {"addresses": [{"line1": "12 Oak Road", "postcode": "LS6 2QT", "current": True}]}
    groups = {
        "identity": {"given_names": given, "family_name": family, "date_of_birth": dob, "sex": "F"},
        "identifiers": extra,
        "contact": contact,
    }
    return record_features(str(uuid.uuid4()), "test", groups)


def test_training_is_deterministic_for_a_seed(rows: list[dict[str, Any]]) -> None:
    first = train(rows, seed=7)
    second = train(rows, seed=7)
    assert first.to_json() == second.to_json()


def _same_person_pairs(extracts: Path, rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Every pair of records of one true person (what reviewers would decide "same")."""
    present = {r["unique_id"] for r in rows}
    people: dict[str, list[str]] = {}
    with (extracts / "truth.csv").open(newline="") as handle:
        for line in csv.DictReader(handle):
            rid = f"{line['feed']}:{line['source_record_id']}"
            if rid in present:
                people.setdefault(line["person_key"], []).append(rid)
    return [(a, b) for ids in people.values() for a, b in itertools.combinations(sorted(ids), 2)]


def test_reviewed_same_person_pairs_train_m_when_there_are_enough(
    extracts: Path, rows: list[dict[str, Any]]
) -> None:
    labels = _same_person_pairs(extracts, rows)
    assert len(labels) > MIN_LABELS
    plain = train(rows, seed=7)
    labelled = train(rows, seed=7, same_person=labels)
    assert labelled.training["same_person_labels"] == len(labels)
    assert labelled.training["labels_used_for_m"] is True
    # m moves (each level's m is the median of EM's estimates and the labels'), u does not.
    moved = [
        (c, lv)
        for c, levels in plain.parameters.items()
        for lv, mu in levels.items()
        if labelled.parameters[c][lv]["m"] != mu["m"]
    ]
    assert moved
    assert all(
        labelled.parameters[c][lv]["u"] == mu["u"]
        for c, levels in plain.parameters.items()
        for lv, mu in levels.items()
    )
    assert train(rows, seed=7, same_person=labels).to_json() == labelled.to_json()
    # Too few labels (or pairs of records not in the data) leave the model as EM made it.
    few = train(rows, seed=7, same_person=[*labels[: MIN_LABELS - 1], ("gone:1", "gone:2")])
    assert few.parameters == plain.parameters
    assert few.training["same_person_labels"] == MIN_LABELS - 1
    assert few.training["labels_used_for_m"] is False


def test_saved_parameters_round_trip_and_refuse_other_definitions(
    rows: list[dict[str, Any]], tmp_path: Path
) -> None:
    model = train(rows, seed=7)
    path = tmp_path / "model.json"
    model.save(path)
    loaded = LinkageModel.load(path)
    assert loaded.to_json() == model.to_json()
    path.write_text(model.to_json().replace(model.definition, "0" * 16))
    with pytest.raises(ModelMismatchError):
        LinkageModel.load(path)


def test_household_agreement_is_not_learned_as_a_match(rows: list[dict[str, Any]]) -> None:
    model = train(rows, seed=7)
    twins = [_record(["Ava"], "Smith", "2015-03-04"), _record(["Ella"], "Smith", "2015-03-04")]
    siblings = [_record(["Ava"], "Smith", "2015-03-04"), _record(["Noah"], "Smith", "2012-01-09")]
    same = [_record(["Ava"], "Smith", "2015-03-04"), _record(["Ava"], "Smith", "2015-04-03")]
    # Twins are a candidate pair (same birth date and family) and score strongly against.
    (twin_pair,) = predict(twins, model)
    assert twin_pair.match_weight < model.thresholds.review, explain(twin_pair)
    assert "clearly different first name (twins)" in explain(twin_pair)
    # Siblings are not even a candidate pair: no blocking rule uses the household alone.
    assert predict(siblings, model) == []
    (same_pair,) = predict(same, model)
    assert same_pair.match_weight >= model.thresholds.auto, explain(same_pair)
    assert "date of birth day/month swapped" in explain(same_pair)


def test_similar_names_of_twins_are_never_auto_linked() -> None:
    lily, lila = _record(["Lily"], "Khan", "2016-05-01"), _record(["Lila"], "Khan", "2016-05-01")
    levels = {c.name: "null" for c in comp.COMPARISONS}
    levels.update(given_name="fuzzy", family_name="exact", date_of_birth="exact")
    pair = ScoredPair(lily["unique_id"], lila["unique_id"], 25.0, levels, {})
    assert pair_status(pair, lily, lila, Thresholds()) == POSSIBLE_TWIN
    lilly = _record(["Lilly"], "Khan", "2016-05-01")
    typo = ScoredPair(lily["unique_id"], lilly["unique_id"], 25.0, levels, {})
    assert pair_status(typo, lily, lilly, Thresholds()) == AUTO


def test_a_possible_twin_linked_through_a_third_record_does_not_block() -> None:
    """Kati, Katie and Katke: Katie links strongly to both, Kati/Katke alone look like twins
    (two slips apart). The third record explains them; a co-twin's name would be a possible
    twin of both, so twins still never merge (test above)."""
    rows = {
        r: {"unique_id": r, "given_first": name}
        for r, name in (("a", "kati"), ("b", "katie"), ("c", "katke"))
    }
    strong = {c.name: "exact" for c in comp.COMPARISONS if c.name not in comp.IDENTIFIER_COLUMNS}
    strong.update(dict.fromkeys(comp.IDENTIFIER_COLUMNS, "null"))
    twinlike = dict(strong, given_name="fuzzy")
    pairs = [
        ScoredPair("a", "b", 24.0, dict(strong, given_name="variant"), {}),
        ScoredPair("b", "c", 23.0, dict(strong, given_name="typo"), {}),
        ScoredPair("a", "c", 21.0, twinlike, {}),
    ]
    assert cluster(rows, pairs, Thresholds()).clusters == [["a", "b", "c"]]
    # Without the third record's link to Katke, the possible twin keeps Kati apart.
    result = cluster(rows, [pairs[0], pairs[2]], Thresholds())
    assert sorted(result.clusters) == [["a", "b"], ["c"]]


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("katie", "kati", True),
        ("oliver", "olievr", True),
        ("freddie", "freedie", True),
        ("harriet", "harroet", True),
        ("lily", "lila", False),
        ("kai", "cai", False),
        ("sophie", "sophia", False),
        ("jack", "jake", False),
    ],
)
def test_keying_errors_are_told_apart_from_similar_names(a: str, b: str, expected: bool) -> None:
    assert keying_error(a, b) is expected


def test_one_weak_edge_does_not_chain_two_people() -> None:
    rows = {r: {"unique_id": r} for r in "abcd"}
    levels = {c.name: "exact" for c in comp.COMPARISONS if c.name not in comp.IDENTIFIER_COLUMNS}
    levels.update(dict.fromkeys(comp.IDENTIFIER_COLUMNS, "null"))

    def pair(x: str, y: str, w: float) -> ScoredPair:
        # The comparisons' own evidence: the weight without a prior of about -14.
        return ScoredPair(x, y, w, levels, {"given_name": w + 14})

    thresholds = Thresholds(auto=8, review=2)
    # a-b and c-d are strong; b-c only just passes: two clusters, and b-c goes to review.
    result = cluster(rows, [pair("a", "b", 30), pair("c", "d", 30), pair("b", "c", 9)], thresholds)
    assert sorted(result.clusters) == [["a", "b"], ["c", "d"]]
    assert [(p.left, p.right) for p in result.review] == [("b", "c")]
    # A contradiction across the clusters blocks even a strong bridge: a pair whose
    # comparisons alone say "two people" (evidence -8, below -6)...
    result = cluster(
        rows,
        [pair("a", "b", 30), pair("c", "d", 30), pair("b", "c", 20), pair("a", "d", -22)],
        thresholds,
    )
    assert len(result.clusters) == 2
    # ...but not a pair that is merely unremarkable: -12 overall is +2 of evidence for one
    # person against a prior of -14 (the old total-weight guard blocked such merges).
    result = cluster(
        rows,
        [pair("a", "b", 30), pair("c", "d", 30), pair("b", "c", 20), pair("a", "d", -12)],
        thresholds,
    )
    assert result.clusters == [["a", "b", "c", "d"]]


def test_identifier_conflict_is_a_cannot_link() -> None:
    rows = {
        "a": {"nhs_number": "9434765919"},
        "b": {},
        "c": {"nhs_number": "9434765870"},
    }
    levels = {c.name: "exact" for c in comp.COMPARISONS}
    levels.update(dict.fromkeys(comp.IDENTIFIER_COLUMNS, "null"))
    pairs = [ScoredPair("a", "b", 30, levels, {}), ScoredPair("b", "c", 29, levels, {})]
    result = cluster(rows, pairs, Thresholds())
    assert sorted(result.clusters) == [["a", "b"], ["c"]]


def test_stable_ids_follow_the_largest_overlap() -> None:
    old_a, old_b = uuid.uuid4(), uuid.uuid4()
    previous = {"1": old_a, "2": old_a, "3": old_a, "4": old_b, "5": None}
    # Person A split in two: the larger part keeps A; B gained a new record.
    kept = stable_person_ids([["1", "2"], ["3"], ["4", "5"]], previous)
    assert kept == [old_a, None, old_b]


def test_training_never_overwrites_the_shipped_model(tmp_path: Path) -> None:
    from mash_hub.matching.model import model_path, shipped_model_path, trained_model_path  # noqa: PLC0415

    shipped = shipped_model_path()
    assert shipped.is_file() and shipped.parent.name == "linkage"
    assert trained_model_path(tmp_path) == tmp_path / "linkage-model.json" != shipped
    assert model_path(tmp_path) == shipped  # nothing trained here yet
    (tmp_path / "linkage-model.json").write_text("{}")
    assert model_path(tmp_path) == tmp_path / "linkage-model.json"
    assert model_path(tmp_path, tmp_path / "other.json") == tmp_path / "other.json"
