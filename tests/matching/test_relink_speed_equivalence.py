"""The faster full-relink paths give exactly what the plain rules give.

Clustering is checked against a plain, eager re-statement of the guards (every record has
state, statuses come from ``pair_status``, evidence is summed when read, a refused merge is
re-checked for every edge); person events against a plain count; review tasks, written
set-based, against the rules a task follows; and the COPY text escaping round-trips.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text

from mash_hub.matching import comparisons as comp
from mash_hub.matching import review as reviewing
from mash_hub.matching.cluster import (
    AUTO,
    BRIDGE_MARGIN,
    CONFLICT,
    POSSIBLE_TWIN,
    REVIEW,
    ConstraintConflict,
    Constraints,
    cluster,
    pair_key,
    pair_status,
)
from mash_hub.matching.model import ScoredPair, Thresholds, explain
from mash_hub.matching.models import ReviewTask
from mash_hub.matching.service import _copy_lines, _copy_text, new_run, person_events
from mash_hub.persons.models import SourceRecord
from tests.matching.conftest import LinkedHub

# -- clustering -------------------------------------------------------------------------------

BASE_LEVELS = {c.name: "else" for c in comp.COMPARISONS}


def plain_cluster(
    rows: dict[str, dict[str, Any]],
    pairs: list[ScoredPair],
    thresholds: Thresholds,
    constraints: Constraints,
) -> tuple[list[list[str]], dict[tuple[str, str], str], list[ScoredPair], list[Any]]:
    status = {
        (p.left, p.right): pair_status(p, rows[p.left], rows[p.right], thresholds) for p in pairs
    }
    near: defaultdict[str, list[tuple[str, ScoredPair, str]]] = defaultdict(list)
    for p in pairs:
        s = pair_status(p, rows[p.left], rows[p.right], thresholds)
        near[p.left].append((p.right, p, s))
        near[p.right].append((p.left, p, s))
    root = {rid: rid for rid in rows}
    members = {rid: {rid} for rid in rows}
    ids = {
        rid: {c: ({row[c]} if row.get(c) else set()) for c in comp.IDENTIFIER_COLUMNS}
        for rid, row in rows.items()
    }
    apart: dict[str, set[str]] = {rid: set() for rid in rows}
    persons: dict[str, set[str]] = {rid: set() for rid in rows}

    def union(a: str, b: str) -> None:
        for rid in members[b]:
            root[rid] = a
        members[a] |= members.pop(b)
        for c in comp.IDENTIFIER_COLUMNS:
            ids[a][c] |= ids[b][c]
        apart[a] |= apart[b]
        persons[a] |= persons[b]

    def blocked(a: str, b: str) -> str | None:
        if any(len(ids[a][c] | ids[b][c]) > 1 for c in comp.IDENTIFIER_COLUMNS):
            return CONFLICT
        if apart[a] & members[b] or apart[b] & members[a]:
            return "cannot_link"
        if len(persons[a] | persons[b]) > 1:
            return "existing_persons"
        return None

    def explained(x: str, y: str) -> bool:
        for one, two in ((x, y), (y, x)):
            for third, _, s in near[one]:
                if (
                    s == AUTO
                    and third != two
                    and root[third] == root[two]
                    and status.get(pair_key(third, two)) == AUTO
                ):
                    return True
        return False

    def may_merge(a: str, b: str, edge: ScoredPair) -> bool:
        if blocked(a, b):
            return False
        strong = 0
        for rid in members[a]:
            for nid, p, s in near[rid]:
                if root[nid] != b:
                    continue
                if s == POSSIBLE_TWIN and explained(rid, nid):
                    continue
                if s in (CONFLICT, POSSIBLE_TWIN) or p.evidence < thresholds.contradiction:
                    return False
                strong += s == AUTO
        if len(members[a]) > 1 and len(members[b]) > 1:
            return strong >= 2 or edge.match_weight >= thresholds.auto + BRIDGE_MARGIN
        return True

    for a, b in constraints.cannot_link:
        if a in rows and b in rows:
            apart[a].add(b)
            apart[b].add(a)
    for rid, person in sorted(constraints.groups.items()):
        if rid in rows:
            persons[root[rid]].add(person)
    for person in sorted(set(constraints.groups.values())):
        held = sorted(r for r, p in constraints.groups.items() if p == person and r in rows)
        for rid in held[1:]:
            if root[held[0]] != root[rid]:
                union(root[held[0]], root[rid])
    conflicts = []
    for left, right in sorted(pair_key(a, b) for a, b in constraints.must_link):
        if left not in rows or right not in rows or root[left] == root[right]:
            continue
        reason = blocked(root[left], root[right])
        if reason:
            conflicts.append(ConstraintConflict(left, right, reason))
        else:
            union(root[left], root[right])
    strong = sorted(
        (p for p in pairs if status[(p.left, p.right)] == AUTO),
        key=lambda p: (-p.match_weight, p.left, p.right),
    )
    for p in strong:
        a, b = root[p.left], root[p.right]
        if a != b and may_merge(a, b, p):
            union(a, b)
    decided = constraints.decided()
    review = sorted(
        (
            p
            for p in pairs
            if status[(p.left, p.right)] in (REVIEW, POSSIBLE_TWIN, AUTO)
            and p.match_weight >= thresholds.review
            and root[p.left] != root[p.right]
            and (p.left, p.right) not in decided
        ),
        key=lambda p: (-p.match_weight, p.left, p.right),
    )
    return sorted(sorted(m) for m in members.values()), status, review, conflicts


@st.composite
def guarded_graphs(
    draw: st.DrawFn,
) -> tuple[dict[str, dict[str, Any]], list[ScoredPair], Constraints]:
    """Records with clashing, empty and shared identifiers and look-alike first names; pairs
    that are strong, in the band, contradicting or possible twins (some given twice)."""
    ids = [f"r{i:02d}" for i in range(draw(st.integers(2, 9)))]
    rows = {
        rid: {
            "unique_id": rid,
            "given_first": draw(st.sampled_from(["katie", "katie", "kati", "katke", "lily", None])),
            "nhs_number": draw(st.none() | st.sampled_from(["1", "2", ""])),
            "upn": draw(st.none() | st.just("u")),
            "pnc_id": draw(st.none() | st.sampled_from(["p", "q"])),
        }
        for rid in ids
    }
    pairs = []
    for a, b in draw(st.lists(st.tuples(st.sampled_from(ids), st.sampled_from(ids)), max_size=40)):
        if a == b:
            continue
        levels = {
            **BASE_LEVELS,
            "date_of_birth": draw(st.sampled_from(["exact", "typo", "else"])),
            "family_name": draw(st.sampled_from(["exact", "else"])),
            "given_name": draw(st.sampled_from(["exact", "typo", "fuzzy"])),
            "nhs_number": draw(st.sampled_from(["exact", "else", "null"])),
        }
        weights = {"given_name": draw(st.sampled_from([-9.0, 0.0, 4.0])), "address": 2.0}
        weight = draw(st.sampled_from([-12.0, 3.0, 8.0, 8.5, 9.0, 9.5, 14.0, 16.0]))
        pairs.append(ScoredPair(min(a, b), max(a, b), weight, levels, weights))
    if not draw(st.booleans()):
        seen: dict[tuple[str, str], ScoredPair] = {}
        for p in pairs:
            seen[(p.left, p.right)] = p
        pairs = list(seen.values())
    decisions = st.lists(st.tuples(st.sampled_from(ids), st.sampled_from(ids)), max_size=3)
    groups = draw(st.dictionaries(st.sampled_from(ids), st.sampled_from(["P1", "P2"]), max_size=4))
    constraints = Constraints(
        must_link=tuple(draw(decisions)), cannot_link=tuple(draw(decisions)), groups=groups
    )
    return rows, pairs, constraints


@settings(max_examples=1500, deadline=None)
@given(graph=guarded_graphs())
def test_clustering_is_the_plain_guarded_clustering(
    graph: tuple[dict[str, dict[str, Any]], list[ScoredPair], Constraints],
) -> None:
    rows, pairs, constraints = graph
    thresholds = Thresholds()
    result = cluster(rows, pairs, thresholds, constraints)
    clusters, status, review, conflicts = plain_cluster(rows, pairs, thresholds, constraints)
    assert result.clusters == clusters
    assert result.status == status
    assert result.review == review
    assert result.conflicts == conflicts


def test_a_refused_merge_is_reconsidered_once_a_cluster_grows() -> None:
    """Two households of two: one link of 9 between them is too weak to bridge; a third
    record joins one side and links to the other too, so two strong links now carry it."""
    rows = {
        rid: {"unique_id": rid, "given_first": "katie", "nhs_number": None, "upn": None}
        | {"pnc_id": None}
        for rid in ("a1", "a2", "b1", "b2", "c")
    }
    levels = {**BASE_LEVELS, "given_name": "exact"}
    edges = [("a1", "a2", 16.0), ("b1", "b2", 16.0), ("a1", "b1", 9.0), ("a2", "c", 8.5)]
    edges.append(("b2", "c", 8.0))
    pairs = [ScoredPair(a, b, w, levels, {"given_name": 5.0}) for a, b, w in edges]
    result = cluster(rows, pairs, Thresholds())
    assert result.clusters == [["a1", "a2", "b1", "b2", "c"]]
    assert result.clusters == plain_cluster(rows, pairs, Thresholds(), Constraints())[0]
    # Without the record that carries the second link, the bridge stays refused.
    fewer = cluster(rows, pairs[:3], Thresholds())
    assert fewer.clusters == [["a1", "a2"], ["b1", "b2"], ["c"]]


# -- person events ------------------------------------------------------------------------------

PEOPLE = [uuid.UUID(int=n << 100) for n in (9, 3, 12, 1)]


def plain_events(
    assigned: list[tuple[list[str], uuid.UUID]], previous: dict[str, uuid.UUID | None]
) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    now_of: dict[uuid.UUID, set[uuid.UUID]] = defaultdict(set)
    size_of: Counter[uuid.UUID] = Counter()
    for members, person in assigned:
        olds = Counter(p for rid in members if (p := previous.get(rid)) is not None)
        fresh = sum(1 for rid in members if previous.get(rid) is None)
        for old, n in olds.items():
            now_of[old].add(person)
            size_of[old] += n
        ids = [str(person)]
        if not olds:
            events.append({"kind": "create", "person_ids": ids, "records": len(members)})
            continue
        if fresh:
            events.append({"kind": "join", "person_ids": ids, "records": fresh})
        if len(olds) > 1:
            absorbed = sorted(str(p) for p in olds if p != person)
            events.append(
                {
                    "kind": "merge",
                    "person_ids": ids + absorbed,
                    "records": len(members),
                    "from_persons": len(olds),
                }
            )
    for old in sorted(now_of, key=str):
        persons = now_of[old]
        if len(persons) > 1:
            head = [str(old)] if old in persons else []
            parts = sorted(str(p) for p in persons if p != old)
            events.append(
                {
                    "kind": "split",
                    "person_ids": head + parts,
                    "records": size_of[old],
                    "parts": len(persons),
                }
            )
    return events


@settings(max_examples=400)
@given(data=st.data(), sizes=st.lists(st.integers(1, 4), min_size=1, max_size=10))
def test_person_events_are_the_plain_events(data: st.DataObject, sizes: list[int]) -> None:
    assigned, start = [], 0
    for size in sizes:
        members = [f"r{i:03d}" for i in range(start, start + size)]
        # Persons are copies (equal, not identical) of previous ids, or new ones.
        person = data.draw(st.sampled_from(PEOPLE) | st.builds(uuid.uuid4))
        assigned.append((members, uuid.UUID(int=person.int)))
        start += size
    previous = {
        rid: data.draw(st.none() | st.sampled_from(PEOPLE))
        for members, _ in assigned
        for rid in members
    }
    assert person_events(assigned, previous) == plain_events(assigned, previous)


# -- review tasks, set-based --------------------------------------------------------------------


def _pair(left: uuid.UUID, right: uuid.UUID, weight: float) -> ScoredPair:
    a, b = pair_key(str(left), str(right))
    levels = {c.name: "null" for c in comp.COMPARISONS}
    levels |= {"date_of_birth": "exact", "given_name": "fuzzy"}
    return ScoredPair(a, b, weight, levels, {"date_of_birth": 5.0, "given_name": -1.5})


def test_sync_tasks_refreshes_opens_reopens_and_closes(linked_hub: LinkedHub) -> None:
    session = linked_hub.db.sessions()
    try:
        records = list(session.scalars(select(SourceRecord.id).order_by(SourceRecord.id).limit(16)))
        keys = [pair_key(str(records[i]), str(records[i + 1])) for i in range(0, 16, 2)]
        session.execute(text("DELETE FROM review_tasks"))
        first = new_run(session, linked_hub.model, actor="test", mode="full")
        starting = {0: "open", 1: "decided", 2: "closed", 3: "open", 4: "decided", 5: "closed"}
        for i, state in starting.items():
            session.add(
                ReviewTask(
                    record_id_l=uuid.UUID(keys[i][0]),
                    record_id_r=uuid.UUID(keys[i][1]),
                    created_run_id=first.id,
                    last_run_id=first.id,
                    kind="review",
                    match_weight=1.0,
                    weights={},
                    explanation="before",
                    status=state,
                )
            )
        session.flush()
        held = session.scalars(select(ReviewTask).where(ReviewTask.explanation == "before")).all()
        second = new_run(session, linked_hub.model, actor="test", mode="full")
        pairs = {
            i: _pair(uuid.UUID(keys[i][0]), uuid.UUID(keys[i][1]), 5.0 + i) for i in (0, 1, 2, 6)
        }
        conflicts = [ConstraintConflict(keys[i][1], keys[i][0], "cannot_link") for i in (4, 7)]
        review = [(pairs[i], POSSIBLE_TWIN) for i in sorted(pairs)]
        counts = reviewing.sync_tasks(session, second.id, review, conflicts, full=True)
        assert (counts.opened, counts.refreshed, counts.closed, counts.conflicts_flagged) == (
            2,
            4,
            1,
            2,
        )
        tasks = {
            (str(t.record_id_l), str(t.record_id_r)): t for t in session.scalars(select(ReviewTask))
        }
        expected_status = {0: "open", 1: "decided", 2: "open", 3: "closed", 4: "open"}
        expected_status |= {5: "closed", 6: "open", 7: "open"}
        assert {i: tasks[keys[i]].status for i in range(8)} == expected_status
        for i, p in pairs.items():
            task = tasks[keys[i]]
            assert (task.kind, task.match_weight, task.weights, task.explanation) == (
                POSSIBLE_TWIN,
                round(p.match_weight, 2),
                p.weights,
                explain(p),
            )
            assert task.last_run_id == second.id
        for i in (4, 7):
            assert tasks[keys[i]].kind == reviewing.MUST_LINK_CONFLICT
            assert tasks[keys[i]].explanation == reviewing._CONFLICT_TEXT["cannot_link"]
        assert tasks[keys[3]].last_run_id == first.id
        assert tasks[keys[6]].created_run_id == second.id == tasks[keys[7]].created_run_id
        assert tasks[keys[0]].created_run_id == first.id
        # Objects loaded before the set-based statements show what they wrote.
        assert {t.status for t in held if t.record_id_l == uuid.UUID(keys[2][0])} == {"open"}

        third = new_run(session, linked_hub.model, actor="test", mode="incremental")
        counts = reviewing.sync_tasks(session, third.id, [], [], full=False)
        assert counts.closed == 0
        assert tasks[keys[0]].status == "open"
    finally:
        session.rollback()
        session.close()


# -- COPY text escaping ---------------------------------------------------------------------------


def test_copy_text_round_trips_every_character_copy_treats_specially(
    linked_hub: LinkedHub,
) -> None:
    values = ["plain", "back\\slash", "tab\there", "new\nline", "cr\rhere", "\\N", "\\.", "é ✓"]
    session = linked_hub.db.sessions()
    try:
        session.execute(text("CREATE TEMP TABLE copied (n int, value text) ON COMMIT DROP"))
        _copy_lines(
            session, "copied (n, value)", [f"{i}\t{_copy_text(v)}\n" for i, v in enumerate(values)]
        )
        back: dict[int, str] = dict(session.execute(text("SELECT n, value FROM copied")).all())
        assert [back[i] for i in range(len(values))] == values
    finally:
        session.rollback()
        session.close()
