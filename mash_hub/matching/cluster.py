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
from operator import itemgetter
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
    return _status(pair.levels, pair.match_weight, _facts(left), _facts(right), thresholds)


# What the guards read of a record: its identifiers (IDENTIFIER_COLUMNS order), then its
# first given name. Read once per record, not once per pair it is in.
_N_IDS = len(IDENTIFIER_COLUMNS)


def _facts(row: Mapping[str, Any]) -> tuple[Any, ...]:
    get = row.get
    return (*[get(c) for c in IDENTIFIER_COLUMNS], get("given_first"))


def _status(
    levels: Mapping[str, str],
    match_weight: float,
    left: tuple[Any, ...],
    right: tuple[Any, ...],
    thresholds: Thresholds,
) -> str:
    shared_id = False
    for c in IDENTIFIER_COLUMNS:
        if levels[c] == "exact":
            shared_id = True
            break
    for i in range(_N_IDS):
        a, b = left[i], right[i]
        if a is not None and b is not None and a != b:
            return CONFLICT
    if (
        not shared_id
        and levels["date_of_birth"] in _TWIN_DOB
        and levels["family_name"] in _TWIN_FAMILY
        and levels["given_name"] in _TWIN_GIVEN
        and not keying_error(str(left[_N_IDS]), str(right[_N_IDS]))
    ):
        return POSSIBLE_TWIN
    if match_weight >= thresholds.auto:
        return AUTO
    if match_weight >= thresholds.review:
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
    records and 79,518 pairs, 1.0 s of CPU instead of 1.5 s with state for every record).
    Identifier sets exist only for clusters of two or more records; a lone record's
    identifiers are read from its cached facts."""

    def __init__(self, rows: Mapping[str, Mapping[str, Any]]) -> None:
        self.rows = rows
        self.parent: dict[str, str] = {}
        self.members: dict[str, list[str]] = {}
        self.ids: dict[str, list[set[Any]]] = {}
        # Records each cluster must never be joined with (cannot-link decisions).
        self.apart: dict[str, set[str]] = {}
        # Existing persons each cluster holds (incremental runs never merge two).
        self.groups: dict[str, set[str]] = {}
        self._facts: dict[str, tuple[Any, ...]] = {}
        self._ids: dict[str, tuple[Any, ...]] = {}

    def facts(self, rid: str) -> tuple[Any, ...]:
        facts = self._facts.get(rid)
        if facts is None:
            facts = self._facts[rid] = _facts(self.rows[rid])
        return facts

    def _lone_ids(self, rid: str) -> tuple[Any, ...]:
        """A lone record's identifiers, ``None`` where it has none (empty counts as none)."""
        ids = self._ids.get(rid)
        if ids is None:
            ids = self._ids[rid] = tuple(v if v else None for v in self.facts(rid)[:_N_IDS])
        return ids

    def find(self, rid: str) -> str:
        parent = self.parent
        root = parent.get(rid)
        if root is None or root == rid:
            return rid
        while (up := parent[root]) != root:
            root = up
        while (up := parent[rid]) != root:
            parent[rid], rid = root, up
        return root

    def members_of(self, root: str) -> list[str]:
        return self.members.get(root) or [root]

    def size(self, root: str) -> int:
        members = self.members.get(root)
        return len(members) if members is not None else 1

    def ids_of(self, root: str) -> list[set[Any]]:
        ids = self.ids.get(root)
        if ids is None:
            return [{v} if v is not None else set() for v in self._lone_ids(root)]
        return ids

    def compatible_ids(self, a: str, b: str) -> bool:
        if a not in self.ids and b not in self.ids:
            for x, y in zip(self._lone_ids(a), self._lone_ids(b), strict=True):
                if x is not None and y is not None and x != y:
                    return False
            return True
        return all(len(x | y) <= 1 for x, y in zip(self.ids_of(a), self.ids_of(b), strict=True))

    def kept_apart(self, a: str, b: str) -> bool:
        """A cannot-link decision (direct or through members) forbids joining ``a`` and ``b``."""
        if not self.apart:
            return False
        small, other = (a, b) if self.size(a) <= self.size(b) else (b, a)
        apart = self.apart.get(other)
        if not apart:
            return False
        return any(m in apart for m in self.members_of(small))

    def separate_persons(self, a: str, b: str) -> bool:
        if not self.groups:
            return False
        group_a, group_b = self.groups.get(a), self.groups.get(b)
        if not group_a or not group_b:
            return len(group_a or group_b or ()) > 1
        return len(group_a | group_b) > 1

    def union(self, a: str, b: str) -> None:
        if self.size(a) < self.size(b):
            a, b = b, a
        ids_a, ids_b = self.ids_of(a), self.ids_of(b)
        for mine, theirs in zip(ids_a, ids_b, strict=True):
            mine.update(theirs)
        self.ids[a] = ids_a
        self.ids.pop(b, None)
        self.parent.setdefault(a, a)
        self.parent[b] = a
        members = self.members.get(a)
        if members is None:
            members = self.members[a] = [a]
        absorbed = self.members.pop(b, None)
        members.extend(absorbed if absorbed is not None else (b,))
        _move_set(self.apart, b, a)
        _move_set(self.groups, b, a)

    def clusters(self) -> list[list[str]]:
        """Every record's cluster, each sorted, in sorted order (clusters are disjoint, so
        ordering by first record is ordering by the whole list)."""
        parent = self.parent
        out = [sorted(m) for m in self.members.values()]
        out.extend([rid] for rid in self.rows if rid not in parent)
        out.sort(key=itemgetter(0))
        return out


def _move_set(sets: dict[str, set[str]], source: str, target: str) -> None:
    moved = sets.pop(source, None)
    if moved:
        sets.setdefault(target, set()).update(moved)


def _join_groups(state: _Clusters, groups: Mapping[str, str], rows: Mapping[str, object]) -> None:
    by_person: dict[str, list[str]] = defaultdict(list)
    for rid, person in sorted(groups.items()):
        if rid in rows:
            state.groups.setdefault(rid, set()).add(person)
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
            state.apart.setdefault(a, set()).add(b)
            state.apart.setdefault(b, set()).add(a)
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


# What a pair across two clusters does to a merge (see _may_merge), worked out once per
# pair: a strong link counted; a strong link that still blocks (its comparisons contradict);
# a possible twin (blocks unless explained); a block (identifier conflict or contradiction).
# Pairs that do none of these (review band or rejected, no contradiction) are left out.
_COUNT, _AUTO_BLOCK, _TWIN, _BLOCK = 0, 1, 2, 3
Neighbours = Mapping[str, list[tuple[str, int]]]


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
    state = _Clusters(rows)
    facts = state.facts
    status: dict[tuple[str, str], str] = {}
    neighbours: defaultdict[str, list[tuple[str, int]]] = defaultdict(list)
    contradiction, review_weight = thresholds.contradiction, thresholds.review
    strong: list[ScoredPair] = []
    maybe_review: list[ScoredPair] = []
    known = state._facts
    for p in pairs:
        left, right = p.left, p.right
        s = _status(
            p.levels,
            p.match_weight,
            known.get(left) or facts(left),
            known.get(right) or facts(right),
            thresholds,
        )
        status[(left, right)] = s
        if p.match_weight >= review_weight:
            maybe_review.append(p)
        if s == AUTO:
            strong.append(p)
            code = _AUTO_BLOCK if p.evidence < contradiction else _COUNT
        elif s == POSSIBLE_TWIN:
            code = _TWIN
        elif s == CONFLICT or p.evidence < contradiction:
            code = _BLOCK
        else:
            continue
        neighbours[left].append((right, code))
        neighbours[right].append((left, code))
    if len(status) != len(pairs):
        # A pair given twice: its last status is the one that counts, as for every lookup.
        strong = [p for p in pairs if status[(p.left, p.right)] == AUTO]
    conflicts = _apply_constraints(state, constraints, rows)
    decided = constraints.decided()
    strong.sort(key=lambda p: (-p.match_weight, p.left, p.right))
    # Two clusters a merge was refused for, by their sizes then: a cluster's size changes
    # exactly when its records do, and a later edge is no stronger, so the answer stands.
    refused: dict[tuple[str, str], tuple[int, int]] = {}
    find, size = state.find, state.size
    for p in strong:
        a, b = find(p.left), find(p.right)
        if a == b:
            continue
        key = (a, b) if a < b else (b, a)
        sizes = refused.get(key)
        if sizes is not None and sizes == (size(key[0]), size(key[1])):
            continue
        if _may_merge(state, neighbours, (a, b), p, thresholds, status=status):
            state.union(a, b)
        else:
            refused[key] = (size(key[0]), size(key[1]))
    clusters = state.clusters()
    review = [
        p
        for p in maybe_review
        if status[(p.left, p.right)] in (REVIEW, POSSIBLE_TWIN, AUTO)
        and find(p.left) != find(p.right)
        and (p.left, p.right) not in decided
    ]
    review.sort(key=lambda p: (-p.match_weight, p.left, p.right))
    return Clustering(clusters, status, review, conflicts)


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
        for third, code in neighbours.get(near, ()):
            if (
                code <= _AUTO_BLOCK
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
    find = state.find
    for rid in state.members_of(small):
        for nid, code in neighbours.get(rid, ()):
            if find(nid) != other:
                continue
            if code == _COUNT:
                strong_links += 1
            elif code != _TWIN or not _twin_explained(state, neighbours, status, (rid, nid)):
                return False
    if state.size(a) > 1 and state.size(b) > 1:
        return strong_links >= 2 or edge.match_weight >= thresholds.auto + BRIDGE_MARGIN
    return True


def stable_person_ids(
    clusters: list[list[str]], previous: Mapping[str, uuid.UUID | None]
) -> list[uuid.UUID | None]:
    """For each cluster, the previous person id it keeps (``None``: needs a new person).

    Each old id goes to the cluster holding most of its records (ties: larger cluster, then
    id order), so a re-run with nothing new changes no id, and a split keeps the old id on
    the larger part. Ids are counted and compared by their integer value (its order is the
    order of their text), not as ``UUID`` objects, whose hashing runs in Python.
    """
    overlaps: list[tuple[int, int, int, int, uuid.UUID]] = []
    # A one-record cluster sorts after every larger overlap and has a single candidate, so
    # it needs no sorting: in index order it takes its old id unless that is taken. So a
    # one-record cluster keeps an id only if it is its own record's previous one.
    singles: list[tuple[int, uuid.UUID]] = []
    for index, members in enumerate(clusters):
        if len(members) == 1:
            if (single := previous.get(members[0])) is not None:
                singles.append((index, single))
            continue
        counts: dict[int, int] = {}
        olds: dict[int, uuid.UUID] = {}
        for rid in members:
            old = previous.get(rid)
            if old is not None:
                key = old.int
                counts[key] = counts.get(key, 0) + 1
                olds.setdefault(key, old)
        for key, n in counts.items():
            overlaps.append((-n, -len(members), key, index, olds[key]))
    overlaps.sort()
    out: list[uuid.UUID | None] = [None] * len(clusters)
    used: set[int] = set()
    for *_, index, old in overlaps:
        if out[index] is None and old.int not in used:
            out[index] = old
            used.add(old.int)
    for index, old in singles:
        if old.int not in used:
            out[index] = old
            used.add(old.int)
    return out
