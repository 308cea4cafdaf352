"""Guarded clustering of scored pairs into persons, and stable person ids across runs.

Plain connected components lets one wrong edge merge two people. Here edges are taken
strongest first and two clusters only merge when:

* no identifier conflicts (two different NHS numbers, UPNs or PNC ids in one person): a hard
  cannot-link, since every stored identifier has passed its check digit;
* no pair across the two clusters is a *possible twin* (same date of birth and family name,
  first names that differ though they look alike, no shared identifier) or was scored as
  clearly different people (comparisons summing below the contradiction weight);
* a merge of two multi-record clusters is carried by at least two strong links, or one very
  strong one: a single weak edge cannot chain two people together.

Blocked strong links and links in the review band go to the review queue.

Reviewers' decisions enter as :class:`Constraints`: a cannot-link pair is a hard conflict like
two different identifiers (its two records never share a cluster, not even through other
records); a must-link pair is joined before any model edge, ignoring the twin and
contradiction guards, unless that would put two different identifiers (or a cannot-link
pair) in one person: then it is not joined and is reported in ``Clustering.conflicts``.
For incremental linkage, ``Constraints.groups`` pre-joins the records of existing persons
and never merges two of them (that is left to a full run).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mash_hub.matching.comparisons import IDENTIFIER_COLUMNS
from mash_hub.matching.model import ScoredPair, Thresholds

AUTO = "auto"
REVIEW = "review"
POSSIBLE_TWIN = "possible_twin"
CONFLICT = "identifier_conflict"
REJECTED = "rejected"

_TWIN_DOB = frozenset({"exact", "twin_pattern", "typo", "dm_swap"})
_TWIN_FAMILY = frozenset({"exact", "other", "phonetic", "fuzzy", "household"})
_TWIN_GIVEN = frozenset({"typo", "phonetic", "fuzzy", "else"})
# A single edge this far above the auto threshold may join two multi-record clusters.
BRIDGE_MARGIN = 6.0


_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_KEY_POS = {ch: (r, c) for r, row in enumerate(_ROWS) for c, ch in enumerate(row)}


def _adjacent_keys(a: str, b: str) -> bool:
    pa, pb = _KEY_POS.get(a), _KEY_POS.get(b)
    return pa is not None and pb is not None and abs(pa[0] - pb[0]) <= 1 and abs(pa[1] - pb[1]) <= 1


def keying_error(a: str, b: str) -> bool:
    """True when one name is the other with one keying slip after the first letter: two
    adjacent letters transposed, one letter dropped or doubled, or one letter replaced by a
    neighbouring key. Twins' similar names (Lily/Lila, Kai/Cai, Sophie/Sophia) are not."""
    if a == b or not a or not b or a[0] != b[0]:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        if len(diff) == 1:
            return _adjacent_keys(a[diff[0]], b[diff[0]])
        return (
            len(diff) == 2
            and diff[1] == diff[0] + 1
            and a[diff[0]] == b[diff[1]]
            and (a[diff[1]] == b[diff[0]])
        )
    if abs(len(a) - len(b)) != 1:
        return False
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return any(long_[:i] + long_[i + 1 :] == short for i in range(1, len(long_)))


def pair_status(
    pair: ScoredPair, left: Mapping[str, Any], right: Mapping[str, Any], thresholds: Thresholds
) -> str:
    """What a pair is, before clustering: auto, review, possible twin, conflict or rejected."""
    shared_id = any(pair.levels[c] == "exact" for c in IDENTIFIER_COLUMNS)
    if any(
        left.get(c) is not None and right.get(c) is not None and left[c] != right[c]
        for c in IDENTIFIER_COLUMNS
    ):
        return CONFLICT
    if (
        not shared_id
        and pair.levels["date_of_birth"] in _TWIN_DOB
        and pair.levels["family_name"] in _TWIN_FAMILY
        and pair.levels["given_name"] in _TWIN_GIVEN
        and not keying_error(str(left.get("given_first")), str(right.get("given_first")))
    ):
        return POSSIBLE_TWIN
    if pair.match_weight >= thresholds.auto:
        return AUTO
    if pair.match_weight >= thresholds.review:
        return REVIEW
    return REJECTED


def pair_key(a: str, b: str) -> tuple[str, str]:
    """A pair of record ids in the order every table and :class:`ScoredPair` uses."""
    return (a, b) if a <= b else (b, a)


@dataclass(frozen=True)
class Constraints:
    """Reviewers' decisions (and, incrementally, existing persons) the clustering obeys."""

    must_link: tuple[tuple[str, str], ...] = ()
    cannot_link: tuple[tuple[str, str], ...] = ()
    # record id -> existing person: these start joined, and two persons never merge.
    groups: Mapping[str, str] = field(default_factory=dict)

    def decided(self) -> set[tuple[str, str]]:
        return {pair_key(a, b) for a, b in (*self.must_link, *self.cannot_link)}


@dataclass(frozen=True)
class ConstraintConflict:
    """A must-link pair left apart, and why (a code: no personal data)."""

    left: str
    right: str
    reason: str  # identifier_conflict | cannot_link | existing_persons


@dataclass
class Clustering:
    """Records grouped into persons, with each pair's status and the review queue."""

    clusters: list[list[str]]
    status: dict[tuple[str, str], str]
    review: list[ScoredPair] = field(default_factory=list)
    conflicts: list[ConstraintConflict] = field(default_factory=list)

    def cluster_of(self) -> dict[str, int]:
        return {rid: i for i, members in enumerate(self.clusters) for rid in members}

    def review_records(self) -> set[str]:
        return {rid for p in self.review for rid in (p.left, p.right)}


class _Clusters:
    """Union-find over records, built lazily: a record no pair or constraint touches stays a
    cluster of its own without any state (most records of a relink have no pair; at 173,583
    records and 79,518 pairs, 1.0 s of CPU instead of 1.5 s with state for every record)."""

    def __init__(self, rows: Mapping[str, Mapping[str, Any]]) -> None:
        self.rows = rows
        self.parent: dict[str, str] = {}
        self.members: dict[str, list[str]] = {}
        self.ids: dict[str, dict[str, set[str]]] = {}
        # Records each cluster must never be joined with (cannot-link decisions).
        self.apart: dict[str, set[str]] = defaultdict(set)
        # Existing persons each cluster holds (incremental runs never merge two).
        self.groups: dict[str, set[str]] = defaultdict(set)

    def find(self, rid: str) -> str:
        if rid not in self.parent:
            return rid
        root = rid
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[rid] != root:
            self.parent[rid], rid = root, self.parent[rid]
        return root

    def members_of(self, root: str) -> list[str]:
        return self.members.get(root) or [root]

    def size(self, root: str) -> int:
        members = self.members.get(root)
        return len(members) if members is not None else 1

    def ids_of(self, root: str) -> dict[str, set[str]]:
        ids = self.ids.get(root)
        if ids is None:
            row = self.rows[root]
            ids = {c: {row[c]} if row.get(c) else set() for c in IDENTIFIER_COLUMNS}
            self.ids[root] = ids
        return ids

    def compatible_ids(self, a: str, b: str) -> bool:
        ids_a, ids_b = self.ids_of(a), self.ids_of(b)
        return all(len(ids_a[c] | ids_b[c]) <= 1 for c in IDENTIFIER_COLUMNS)

    def kept_apart(self, a: str, b: str) -> bool:
        """A cannot-link decision (direct or through members) forbids joining ``a`` and ``b``."""
        small, other = (a, b) if self.size(a) <= self.size(b) else (b, a)
        apart = self.apart.get(other)
        if not apart:
            return False
        return any(m in apart for m in self.members_of(small))

    def separate_persons(self, a: str, b: str) -> bool:
        return len(self.groups.get(a, set()) | self.groups.get(b, set())) > 1

    def union(self, a: str, b: str) -> None:
        if self.size(a) < self.size(b):
            a, b = b, a
        ids_a, ids_b = self.ids_of(a), self.ids_of(b)
        self.parent.setdefault(a, a)
        self.parent[b] = a
        self.members[a] = self.members_of(a)
        self.members[a].extend(self.members.pop(b, [b]))
        for c in IDENTIFIER_COLUMNS:
            ids_a[c] |= ids_b[c]
        del self.ids[b]
        self.apart[a] |= self.apart.pop(b, set())
        self.groups[a] |= self.groups.pop(b, set())

    def clusters(self) -> list[list[str]]:
        """Every record's cluster, each sorted, in sorted order."""
        joined = [sorted(m) for m in self.members.values()]
        alone = [[rid] for rid in self.rows if rid not in self.parent]
        return sorted(joined + alone)


def _join_groups(state: _Clusters, groups: Mapping[str, str], rows: Mapping[str, object]) -> None:
    by_person: dict[str, list[str]] = defaultdict(list)
    for rid, person in sorted(groups.items()):
        if rid in rows:
            state.groups[rid].add(person)
            by_person[person].append(rid)
    for members in by_person.values():
        for rid in members[1:]:
            a, b = state.find(members[0]), state.find(rid)
            if a != b:
                state.union(a, b)


def _apply_constraints(
    state: _Clusters, constraints: Constraints, rows: Mapping[str, object]
) -> list[ConstraintConflict]:
    for a, b in constraints.cannot_link:
        if a in rows and b in rows:
            state.apart[a].add(b)
            state.apart[b].add(a)
    _join_groups(state, constraints.groups, rows)
    conflicts = []
    for left, right in sorted(pair_key(a, b) for a, b in constraints.must_link):
        if left not in rows or right not in rows:
            continue
        a, b = state.find(left), state.find(right)
        if a == b:
            continue
        if not state.compatible_ids(a, b):
            conflicts.append(ConstraintConflict(left, right, CONFLICT))
        elif state.kept_apart(a, b):
            conflicts.append(ConstraintConflict(left, right, "cannot_link"))
        elif state.separate_persons(a, b):
            # Incremental runs leave merging two existing persons to the next full run.
            conflicts.append(ConstraintConflict(left, right, "existing_persons"))
        else:
            state.union(a, b)
    return conflicts


def cluster(
    rows: Mapping[str, Mapping[str, Any]],
    pairs: Iterable[ScoredPair],
    thresholds: Thresholds,
    constraints: Constraints | None = None,
) -> Clustering:
    """Cluster records (``rows`` by id) from scored pairs with the guards above, obeying
    reviewers' decisions (``constraints``)."""
    constraints = constraints or Constraints()
    pairs = list(pairs)
    status: dict[tuple[str, str], str] = {}
    neighbours: defaultdict[str, list[tuple[str, ScoredPair, str]]] = defaultdict(list)
    for p in pairs:
        s = pair_status(p, rows[p.left], rows[p.right], thresholds)
        status[(p.left, p.right)] = s
        neighbours[p.left].append((p.right, p, s))
        neighbours[p.right].append((p.left, p, s))
    state = _Clusters(rows)
    conflicts = _apply_constraints(state, constraints, rows)
    decided = constraints.decided()
    blocked: list[ScoredPair] = []
    strong = sorted(
        (p for p in pairs if status[(p.left, p.right)] == AUTO),
        key=lambda p: (-p.match_weight, p.left, p.right),
    )
    for p in strong:
        a, b = state.find(p.left), state.find(p.right)
        if a == b:
            continue
        if _may_merge(state, neighbours, (a, b), p, thresholds, status=status):
            state.union(a, b)
        else:
            blocked.append(p)
    clusters = state.clusters()
    review = [
        p
        for p in pairs
        if status[(p.left, p.right)] in (REVIEW, POSSIBLE_TWIN, AUTO)
        and p.match_weight >= thresholds.review
        and state.find(p.left) != state.find(p.right)
        and (p.left, p.right) not in decided
    ]
    review.sort(key=lambda p: (-p.match_weight, p.left, p.right))
    return Clustering(clusters, status, review, conflicts)


Neighbours = Mapping[str, list[tuple[str, ScoredPair, str]]]


def _twin_explained(
    state: _Clusters,
    neighbours: Neighbours,
    status: Mapping[tuple[str, str], str],
    pair: tuple[str, str],
) -> bool:
    """A possible-twin pair across two clusters is explained away when one of its records
    links strongly (not as a possible twin) to a third record of the other cluster that
    itself links strongly to the pair's other record: Kati -> Katie -> Katke is one person
    spelled three ways, where a co-twin's name would be a possible twin of both."""
    for near, far in (pair, pair[::-1]):
        other = state.find(far)
        for third, _, s in neighbours.get(near, ()):
            if (
                s == AUTO
                and third != far
                and state.find(third) == other
                and status.get(pair_key(third, far)) == AUTO
            ):
                return True
    return False


def _may_merge(
    state: _Clusters,
    neighbours: Neighbours,
    roots: tuple[str, str],
    edge: ScoredPair,
    thresholds: Thresholds,
    *,
    status: Mapping[tuple[str, str], str],
) -> bool:
    a, b = roots
    if not state.compatible_ids(a, b) or state.kept_apart(a, b) or state.separate_persons(a, b):
        return False
    small, other = (a, b) if state.size(a) <= state.size(b) else (b, a)
    strong_links = 0
    for rid in state.members_of(small):
        for nid, pair, s in neighbours.get(rid, ()):
            if state.find(nid) != other:
                continue
            if s == POSSIBLE_TWIN and _twin_explained(state, neighbours, status, (rid, nid)):
                continue
            if s in (CONFLICT, POSSIBLE_TWIN) or pair.evidence < thresholds.contradiction:
                return False
            if s == AUTO:
                strong_links += 1
    if state.size(a) > 1 and state.size(b) > 1:
        return strong_links >= 2 or edge.match_weight >= thresholds.auto + BRIDGE_MARGIN
    return True


def stable_person_ids(
    clusters: list[list[str]], previous: Mapping[str, uuid.UUID | None]
) -> list[uuid.UUID | None]:
    """For each cluster, the previous person id it keeps (``None``: needs a new person).

    Each old id goes to the cluster holding most of its records (ties: larger cluster, then
    id order), so a re-run with nothing new changes no id, and a split keeps the old id on
    the larger part.
    """
    overlaps: list[tuple[int, int, str, int, uuid.UUID]] = []
    # A one-record cluster sorts after every larger overlap and has a single candidate, so
    # it needs no sorting: in index order it takes its old id unless that is taken.
    singles: list[tuple[int, uuid.UUID]] = []
    for index, members in enumerate(clusters):
        if len(members) == 1:
            if (single := previous.get(members[0])) is not None:
                singles.append((index, single))
            continue
        counts: dict[uuid.UUID, int] = defaultdict(int)
        for rid in members:
            old = previous.get(rid)
            if old is not None:
                counts[old] += 1
        for old, n in counts.items():
            overlaps.append((-n, -len(members), str(old), index, old))
    overlaps.sort()
    out: list[uuid.UUID | None] = [None] * len(clusters)
    used: set[uuid.UUID] = set()
    for index, old in [(index, old) for *_, index, old in overlaps] + singles:
        if out[index] is None and old not in used:
            out[index] = old
            used.add(old)
    return out
