"""The lean full-relink paths answer exactly as the plain ones: cached feature building, the
compact feature table, null levels from DuckDB, lazy clustering, links written with COPY."""

from __future__ import annotations

import gc
import json
import uuid
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from mash_hub.matching import comparisons as comp
from mash_hub.matching import review as reviewing
from mash_hub.matching.cluster import AUTO, CONFLICT, Constraints, cluster, stable_person_ids
from mash_hub.matching.duck import feature_table
from mash_hub.matching.features import (
    FeatureBuilder,
    FeatureTable,
    record_features,
)
from mash_hub.matching.model import (
    LinkageModel,
    ScoredPair,
    Thresholds,
    _LevelTable,
    explain,
    predict,
    shipped_model_path,
)
from mash_hub.matching.models import LinkRun, PersonLink
from mash_hub.matching.service import (
    LOOKUP_COLUMNS,
    load_feature_table,
    load_features,
    person_events,
    run_linkage,
)
from tests.matching.conftest import LinkedHub
from tests.matching.extracts import generated_feature_rows

MODEL = LinkageModel.load(shipped_model_path())

# -- feature building ---------------------------------------------------------------------

NAMES = ["Mary-Jane", "O'NEILL", "José", "Łukasz", "Dr Bob", "Robert Jr", "Mohammed", "J", " "]
POSTCODES = ["LS6 2QT", "ls62qt", "M1 1AE", "not a postcode", ""]
name_values = st.none() | st.sampled_from(NAMES) | st.integers(0, 3) | st.text(max_size=6)


@st.composite
def record_groups(draw: st.DrawFn) -> dict[str, dict[str, Any]]:
    """Record groups from small pools (so a shared builder hits its caches), with odd values:
    non-text names, initials only, invalid postcodes, missing groups."""
    addresses = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "postcode": st.none() | st.sampled_from(POSTCODES),
                    "line1": st.sampled_from(["14 Harehills Lane", "Flat 2, 9 Oak Rd", ""]),
                    "current": st.booleans(),
                }
            ),
            max_size=3,
        )
    )
    groups: dict[str, dict[str, Any]] = {
        "identity": {
            "given_names": draw(st.lists(name_values, max_size=3)),
            "family_name": draw(name_values),
            "other_names": draw(st.lists(name_values, max_size=2)),
            "date_of_birth": draw(st.none() | st.sampled_from(["2012-03-04", "1990-12-25"])),
            "sex": draw(st.sampled_from(["M", "F", "U", None])),
        },
        "identifiers": {
            "nhs_number": draw(st.none() | st.just("9434765919")),
            "pnc_id": draw(st.none() | st.sampled_from(["12/345A", "bad"])),
        },
        "contact": {"addresses": addresses},
    }
    return {k: v for k, v in groups.items() if draw(st.booleans()) or k == "identity"}


SHARED = FeatureBuilder(cache_size=8)  # tiny: evictions happen too


@settings(max_examples=150)
@given(groups=st.lists(record_groups(), min_size=1, max_size=6))
def test_cached_feature_building_gives_the_uncached_rows(
    groups: list[dict[str, dict[str, Any]]],
) -> None:
    for i, g in enumerate(groups):
        assert SHARED.row(f"r{i}", "test", g) == record_features(f"r{i}", "test", g)


# -- the compact feature table --------------------------------------------------------------


@pytest.fixture(scope="module")
def rows(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return generated_feature_rows(
        tmp_path_factory.mktemp("relink"),
        people=400,
        seed=5,
        record_id=lambda _feed, _source: str(uuid.uuid4()),
    )


def _table(rows: list[dict[str, Any]], lookup: tuple[str, ...] = LOOKUP_COLUMNS) -> FeatureTable:
    table = FeatureTable(lookup)
    for start, size in ((0, 1), (1, 0), (1, 37), (38, len(rows))):
        table.extend(rows[start : start + size])
    return table


def test_feature_table_holds_every_row(rows: list[dict[str, Any]]) -> None:
    table = _table(rows)
    assert len(table) == len(rows)
    assert list(table) == [r["unique_id"] for r in rows]
    assert table.arrow().to_pylist() == feature_table(rows).to_pylist()
    for row in rows:
        assert row["unique_id"] in table
        looked_up = table[row["unique_id"]]
        assert dict(looked_up) == {c: row[c] for c in LOOKUP_COLUMNS}
        assert all(looked_up.get(c) == row[c] for c in LOOKUP_COLUMNS)
    assert "no such record" not in table
    with pytest.raises(KeyError):
        table[rows[0]["unique_id"]].get("dob")  # not kept: an error, never a silent None
    with pytest.raises(ValueError, match="twice"):
        table.extend(rows[:1])
    with pytest.raises(KeyError, match="not feature columns"):
        FeatureTable(["nhs_number", "shoe_size"])
    assert FeatureTable(LOOKUP_COLUMNS).arrow().num_rows == 0


def test_predict_on_the_table_is_predict_on_rows_with_nulls_from_the_data(
    rows: list[dict[str, Any]],
) -> None:
    from_rows = predict(rows, MODEL)
    from_table = predict(_table(rows), MODEL)
    assert from_rows, "the population should produce candidate pairs"
    assert from_table == from_rows
    # The null levels DuckDB found are the ones the rows hold.
    by_id = {r["unique_id"]: r for r in rows}
    levels = _LevelTable(MODEL)
    for pair in from_rows:
        nulls = levels.nulls(by_id[pair.left], by_id[pair.right])
        assert [pair.levels[c.name] == "null" for c in comp.COMPARISONS] == nulls


# -- lazy clustering --------------------------------------------------------------------------

LEVELS = {c.name: "exact" for c in comp.COMPARISONS}


@st.composite
def graphs(
    draw: st.DrawFn,
) -> tuple[dict[str, dict[str, Any]], list[ScoredPair], Constraints]:
    """A few records with clashing identifiers, scored pairs across them, and decisions."""
    ids = [f"r{i:02d}" for i in range(draw(st.integers(2, 10)))]
    rows = {
        rid: {
            "unique_id": rid,
            "given_first": draw(st.sampled_from(["amelia", "amelie", "zofia"])),
            "nhs_number": draw(st.none() | st.sampled_from(["1", "2"])),
            "upn": draw(st.none() | st.just("u")),
            "pnc_id": None,
        }
        for rid in ids
    }
    edges = draw(st.lists(st.tuples(st.sampled_from(ids), st.sampled_from(ids)), max_size=20))
    pairs: dict[tuple[str, str], ScoredPair] = {}
    for a, b in edges:
        if a != b:
            left, right = min(a, b), max(a, b)
            weight = draw(st.sampled_from([-12.0, 3.0, 9.0, 16.0, 30.0]))
            pairs[(left, right)] = ScoredPair(left, right, weight, LEVELS, {})
    decisions = st.lists(st.tuples(st.sampled_from(ids), st.sampled_from(ids)), max_size=2)
    constraints = Constraints(must_link=tuple(draw(decisions)), cannot_link=tuple(draw(decisions)))
    return rows, sorted(pairs.values(), key=lambda p: (p.left, p.right)), constraints


@settings(max_examples=200)
@given(graph=graphs(), extra=st.integers(1, 5))
def test_records_without_pairs_stay_alone_and_change_nothing(
    graph: tuple[dict[str, dict[str, Any]], list[ScoredPair], Constraints], extra: int
) -> None:
    rows, pairs, constraints = graph
    alone = {
        f"z{i}": {"unique_id": f"z{i}", "given_first": "x", "nhs_number": "3", "upn": None}
        for i in range(extra)
    }
    base = cluster(rows, pairs, Thresholds(), constraints)
    more = cluster({**rows, **alone}, pairs, Thresholds(), constraints)
    assert more.clusters == sorted([*base.clusters, *([rid] for rid in alone)])
    assert (more.status, more.review, more.conflicts) == (base.status, base.review, base.conflicts)
    # Every record in exactly one person; no person holds two NHS numbers or a cannot-link.
    placed = [rid for members in more.clusters for rid in members]
    assert sorted(placed) == sorted([*rows, *alone])
    person = {rid: i for i, members in enumerate(more.clusters) for rid in members}
    for members in more.clusters:
        assert len({rows[r]["nhs_number"] for r in members if r in rows} - {None}) <= 1
    for a, b in constraints.cannot_link:
        assert a == b or person[a] != person[b]
    for p in pairs:
        if more.status[(p.left, p.right)] == CONFLICT:
            assert person[p.left] != person[p.right]


# -- a full run on the database -----------------------------------------------------------------


def test_the_table_path_loads_what_the_row_path_loads(linked_hub: LinkedHub) -> None:
    with linked_hub.db.transaction() as session:
        listed, previous = load_features(session, linked_hub.store)
        table, previous_too = load_feature_table(session, linked_hub.store)
    assert listed == sorted(listed, key=lambda r: r["unique_id"])
    assert list(table) == [r["unique_id"] for r in listed]
    assert table.arrow().to_pylist() == feature_table(listed).to_pylist()
    assert previous == previous_too
    assert set(previous) >= set(table) and all(p is not None for p in previous.values())


def test_stored_links_are_the_runs_pairs_with_their_explanations(linked_hub: LinkedHub) -> None:
    gc.disable()
    try:
        run_linkage(linked_hub.db, linked_hub.store, linked_hub.model, actor="test")
        assert not gc.isenabled(), "a run must leave the collector as it found it"
    finally:
        gc.enable()
    report = run_linkage(linked_hub.db, linked_hub.store, linked_hub.model, actor="test")
    assert gc.isenabled()
    with linked_hub.db.transaction() as session:
        table, _ = load_feature_table(session, linked_hub.store)
        constraints = reviewing.load_constraints(session)
        stored = {
            (str(link.record_id_l), str(link.record_id_r)): link
            for link in session.scalars(
                select(PersonLink).where(PersonLink.run_id == uuid.UUID(report.run_id))
            )
        }
        counts = session.scalar(
            select(LinkRun.counts).where(LinkRun.id == uuid.UUID(report.run_id))
        )
    pairs = predict(table, linked_hub.model)
    result = cluster(table, pairs, linked_hub.model.thresholds, constraints)
    cluster_of = result.cluster_of()
    auto = [
        p
        for p in pairs
        if result.status[(p.left, p.right)] == AUTO and cluster_of[p.left] == cluster_of[p.right]
    ]
    expected = {(p.left, p.right): (p, "auto") for p in auto}
    expected.update({(p.left, p.right): (p, "review") for p in result.review})
    assert set(stored) == set(expected)
    assert counts is not None
    assert report.auto_links == len(auto) and counts["auto_links"] == len(auto)
    for key, (pair, status) in expected.items():
        link = stored[key]
        assert link.status == status
        assert link.match_weight == round(pair.match_weight, 2)
        assert link.weights == pair.weights
        assert json.dumps(link.weights, sort_keys=True) == json.dumps(pair.weights, sort_keys=True)
        assert link.explanation == explain(pair)


# -- person ids and events: the shortcuts for one-record persons change nothing -------------


def plain_stable_person_ids(
    clusters: list[list[str]], previous: dict[str, uuid.UUID | None]
) -> list[uuid.UUID | None]:
    """Every overlap counted and sorted: the rule the shortcut must follow."""
    overlaps = []
    for index, members in enumerate(clusters):
        counts = Counter(p for rid in members if (p := previous.get(rid)) is not None)
        overlaps += [(-n, -len(members), str(old), index, old) for old, n in counts.items()]
    out: list[uuid.UUID | None] = [None] * len(clusters)
    used: set[uuid.UUID] = set()
    for *_, index, old in sorted(overlaps):
        if out[index] is None and old not in used:
            out[index] = old
            used.add(old)
    return out


def plain_splits(
    assigned: list[tuple[list[str], uuid.UUID]], previous: dict[str, uuid.UUID | None]
) -> list[tuple[list[str], int]]:
    now_of: dict[uuid.UUID, set[uuid.UUID]] = {}
    size_of: Counter[uuid.UUID] = Counter()
    for members, person in assigned:
        for rid in members:
            if (old := previous.get(rid)) is not None:
                now_of.setdefault(old, set()).add(person)
                size_of[old] += 1
    return [
        (
            [str(p) for p in ([old] if old in persons else [])]
            + sorted(str(p) for p in persons if p != old),
            size_of[old],
        )
        for old, persons in sorted(now_of.items(), key=lambda item: str(item[0]))
        if len(persons) > 1
    ]


OLD = [uuid.UUID(int=i) for i in range(1, 5)]


@settings(max_examples=300)
@given(
    data=st.data(),
    sizes=st.lists(st.integers(1, 3), min_size=1, max_size=12),
)
def test_person_ids_and_events_follow_the_plain_rules(
    data: st.DataObject, sizes: list[int]
) -> None:
    clusters, start = [], 0
    for size in sizes:
        clusters.append([f"r{i:03d}" for i in range(start, start + size)])
        start += size
    previous = {
        rid: data.draw(st.none() | st.sampled_from(OLD)) for members in clusters for rid in members
    }
    kept = stable_person_ids(clusters, previous)
    assert kept == plain_stable_person_ids(clusters, previous)
    assigned = [(m, pid or uuid.uuid4()) for m, pid in zip(clusters, kept, strict=True)]
    events = person_events(assigned, previous)
    splits = [(e["person_ids"], e["records"]) for e in events if e["kind"] == "split"]
    assert splits == plain_splits(assigned, previous)
    created = [e for e in events if e["kind"] == "create"]
    assert len(created) == sum(1 for m in clusters if all(previous.get(r) is None for r in m))
