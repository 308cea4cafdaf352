"""Linkage against the hub's database: decrypt in memory, link, assign persons, explain.

One run is one transaction: read every current record's identity, identifiers and contact
groups, build features, score and cluster, then write ``source_records.person_id`` (new
``persons`` rows where needed), the run and its links. Person ids stay stable across runs:
each cluster keeps the previous id that most of its records had.

Reviewers' decisions (:mod:`mash_hub.matching.review`) enter every run as must-link /
cannot-link constraints; the run refreshes the review queue, and records what it did to
persons (``create``, ``join``, ``merge``, ``split``) in ``link_events`` and the audit log.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from mash_hub.audit import AuditEvent
from mash_hub.audit import record as audit
from mash_hub.db.engine import Database
from mash_hub.matching import cluster as clustering
from mash_hub.matching import frequencies as term_frequencies
from mash_hub.matching import review as reviewing
from mash_hub.matching.comparisons import IDENTIFIER_COLUMNS
from mash_hub.matching.evaluate import evaluate, evaluate_by_group
from mash_hub.matching.features import FeatureBuilder, FeatureTable
from mash_hub.matching.model import (
    LinkageModel,
    ScoredPair,
    explain,
    frequencies_of,
    predict,
    train,
)
from mash_hub.matching.models import LinkRun, PersonLink
from mash_hub.persons.models import SourceRecord
from mash_hub.persons.store import CONTACT, IDENTIFIERS, IDENTITY, PersonStore

READ_BATCH = 2_000
GROUPS = (IDENTITY, IDENTIFIERS, CONTACT)
# The feature columns a run reads back in Python, by record: what clustering's guards
# compare (see cluster.pair_status). Everything else stays in Arrow, for DuckDB.
LOOKUP_COLUMNS = (*IDENTIFIER_COLUMNS, "given_first")


@contextlib.contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for a run (process-wide; the CLI runs linkage
    in a process of its own). A run builds millions of small objects that all live until it
    ends, and the collector rescanned them again and again: clustering 173,583 records took
    2.7 to 4.5 s with it and 1.0 s without. The run's own objects hold no reference cycles;
    what other code leaves in cycles is collected once the run ends."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def feature_batches(
    session: Session, store: PersonStore
) -> Iterator[tuple[list[dict[str, Any]], list[tuple[str, uuid.UUID | None]]]]:
    """Every current record, a batch at a time and in id order: the feature rows of those
    with data, and each record's person. Each batch is decrypted, turned into features and
    dropped, so the plaintext of all records never sits in memory at once."""
    builder = FeatureBuilder()
    for batch in store.stream_groups(session, GROUPS, batch_size=READ_BATCH):
        ids = [str(r.id) for r in batch]  # one string per record, shared by both outputs
        rows = [
            builder.row(rid, r.feed, r.groups)
            for rid, r in zip(ids, batch, strict=True)
            if r.groups
        ]
        yield rows, [(rid, r.person_id) for rid, r in zip(ids, batch, strict=True)]


def load_features(
    session: Session, store: PersonStore
) -> tuple[list[dict[str, Any]], dict[str, uuid.UUID | None]]:
    """Feature rows of every current record (decrypted here, in memory), sorted by id, and
    their persons."""
    rows: list[dict[str, Any]] = []
    previous: dict[str, uuid.UUID | None] = {}
    for batch, persons in feature_batches(session, store):
        rows.extend(batch)
        previous.update(persons)
    return rows, previous


def load_feature_table(
    session: Session, store: PersonStore
) -> tuple[FeatureTable, dict[str, uuid.UUID | None]]:
    """:func:`load_features` as a compact :class:`FeatureTable` (what a full run holds)."""
    table = FeatureTable(LOOKUP_COLUMNS)
    previous: dict[str, uuid.UUID | None] = {}
    for batch, persons in feature_batches(session, store):
        table.extend(batch)
        previous.update(persons)
    return table, previous


def train_model(db: Database, store: PersonStore, *, seed: int, version: int) -> LinkageModel:
    """Train on every current record, with reviewers' "same person" decisions as labels."""
    with cyclic_gc_paused(), db.transaction() as session:
        rows, _ = load_feature_table(session, store)
        same_person = reviewing.load_constraints(session).must_link
    return train(rows, seed=seed, version=version, same_person=same_person)


@dataclass
class RunReport:
    """What a run did; the same document for people and scripts (no personal data)."""

    run_id: str
    records: int
    candidate_pairs: int
    auto_links: int
    clusters: int
    persons_kept: int
    persons_created: int
    records_moved: int
    review_pairs: int
    review_records: int
    possible_twins: int
    identifier_conflicts: int
    decisions_applied: int = 0
    decision_conflicts: int = 0
    review_tasks_opened: int = 0
    review_tasks_closed: int = 0
    merges: int = 0
    splits: int = 0
    records_joined: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def run_linkage(db: Database, store: PersonStore, model: LinkageModel, *, actor: str) -> RunReport:
    """Link every current record and (re)assign persons, in one transaction."""
    timings: dict[str, float] = {}
    began = time.perf_counter()
    with cyclic_gc_paused(), db.transaction() as session:
        # One run at a time: two would fight over person ids.
        session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended('link-run', 0))"))
        rows, previous = load_feature_table(session, store)
        timings["read_and_features"] = time.perf_counter() - began
        mark = time.perf_counter()
        frequencies = frequencies_of(rows)
        pairs = predict(rows, model, frequencies=frequencies)
        timings["predict"] = time.perf_counter() - mark
        mark = time.perf_counter()
        constraints = reviewing.load_constraints(session)
        result = clustering.cluster(rows, pairs, model.thresholds, constraints)
        timings["cluster"] = time.perf_counter() - mark
        mark = time.perf_counter()
        report = _write(
            session, model, result, pairs, previous, constraints=constraints, actor=actor
        )
        run = session.get(LinkRun, uuid.UUID(report.run_id))
        if run is not None:
            term_frequencies.seal(store.keys, session, run, frequencies)
        timings["write"] = time.perf_counter() - mark
    timings["total"] = time.perf_counter() - began
    report.seconds = {k: round(v, 2) for k, v in timings.items()}
    return report


def _write(
    session: Session,
    model: LinkageModel,
    result: clustering.Clustering,
    pairs: list[ScoredPair],
    previous: Mapping[str, uuid.UUID | None],
    *,
    constraints: clustering.Constraints,
    actor: str,
) -> RunReport:
    kept = clustering.stable_person_ids(result.clusters, previous)
    new_persons = [uuid.uuid4() for pid in kept if pid is None]
    _copy_lines(session, "persons (id)", [f"{pid}\n" for pid in new_persons])
    fresh = iter(new_persons)
    moves: list[tuple[str, str]] = []
    assigned: list[tuple[list[str], uuid.UUID]] = []
    for members, pid in zip(result.clusters, kept, strict=True):
        if pid is None:
            person = next(fresh)
            text_id = str(person)
            moves.extend((rid, text_id) for rid in members)
        else:
            person = pid
            # A one-record cluster only ever keeps its own record's previous id: no move.
            if len(members) > 1:
                text_id = str(person)
                moves.extend((rid, text_id) for rid in members if previous.get(rid) != person)
        assigned.append((members, person))
    _move_records(session, moves)
    run = new_run(session, model, actor=actor, mode="full")
    # A pair inside one cluster is inside a cluster of two or more records.
    shared = {
        rid: i for i, members in enumerate(result.clusters) if len(members) > 1 for rid in members
    }
    status = result.status
    stored = [
        p
        for p in pairs
        if (at := shared.get(p.left)) is not None
        and at == shared.get(p.right)
        and status[(p.left, p.right)] == clustering.AUTO
    ]
    store_links(session, run.id, stored, result.review)
    tasks = reviewing.sync_tasks(
        session,
        run.id,
        reviewing.kinds(result.review, result.status),
        result.conflicts,
        full=True,
    )
    events = person_events(assigned, previous)
    write_events(session, run.id, events, actor=actor)
    statuses = Counter(result.status.values())
    report = RunReport(
        run_id=str(run.id),
        records=sum(map(len, result.clusters)),
        candidate_pairs=len(pairs),
        auto_links=len(stored),
        clusters=len(result.clusters),
        persons_kept=sum(1 for pid in kept if pid is not None),
        persons_created=len(new_persons),
        records_moved=len(moves),
        review_pairs=len(result.review),
        review_records=len(result.review_records()),
        possible_twins=statuses[clustering.POSSIBLE_TWIN],
        identifier_conflicts=statuses[clustering.CONFLICT],
        decisions_applied=len(constraints.must_link) + len(constraints.cannot_link),
        decision_conflicts=len(result.conflicts),
        review_tasks_opened=tasks.opened,
        review_tasks_closed=tasks.closed,
        merges=sum(1 for e in events if e["kind"] == "merge"),
        splits=sum(1 for e in events if e["kind"] == "split"),
        records_joined=sum(e["records"] for e in events if e["kind"] == "join"),
    )
    counts = {k: v for k, v in report.as_dict().items() if isinstance(v, int)}
    run.counts = counts
    audit(
        session,
        AuditEvent(
            actor=actor,
            action="linkage.run",
            subject_type="link_run",
            subject_id=str(run.id),
            details={"model_version": model.version, **counts},
        ),
    )
    return report


def new_run(
    session: Session,
    model: LinkageModel,
    *,
    actor: str,
    mode: str,
    counts: dict[str, Any] | None = None,
) -> LinkRun:
    """A ``link_runs`` row (``counts`` known up front saves an UPDATE of it later)."""
    run = LinkRun(
        id=uuid.uuid4(),
        actor=actor,
        model_version=model.version,
        model_definition=model.definition,
        counts=dict(counts or {}),
        mode=mode,
    )
    session.add(run)
    session.flush()
    return run


_MOVE = text(
    "UPDATE source_records s SET person_id = m.person_id"
    " FROM unnest(CAST(:ids AS uuid[]), CAST(:persons AS uuid[])) AS m(id, person_id)"
    " WHERE s.id = m.id"
)


def _uuid_array(ids: Iterable[str]) -> str:
    """A ``uuid[]`` literal from canonical id strings (nothing in them needs quoting): one
    text parameter instead of an array of ``UUID`` objects dumped one by one."""
    return "{" + ",".join(ids) + "}"


def _move_records(session: Session, moves: list[tuple[str, str]]) -> None:
    """Assign records to persons (``(record id, person id)`` as text) in one statement (a
    first run moves every record)."""
    if moves:
        session.execute(
            _MOVE,
            {
                "ids": _uuid_array(rid for rid, _ in moves),
                "persons": _uuid_array(person for _, person in moves),
            },
        )


_COPY_CHUNK = 2_000


def _copy_lines(session: Session, target: str, lines: list[str]) -> None:
    """Bulk insert through COPY, in the session's transaction, of rows already in COPY's
    text format (fields escaped with :func:`_copy_text`, tab-separated, newline-ended),
    written in chunks: formatting rows here, with what repeats cached, is several times
    cheaper than psycopg's ``write_row`` per row."""
    if not lines:
        return
    session.flush()
    connection: Any = session.connection().connection.driver_connection
    with connection.cursor() as cursor, cursor.copy(f"COPY {target} FROM STDIN") as copy:
        for start in range(0, len(lines), _COPY_CHUNK):
            copy.write("".join(lines[start : start + _COPY_CHUNK]))


def _copy_text(value: str) -> str:
    """A text field for COPY's text format: backslash, tab, newline and return escaped."""
    return (
        value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    )


def store_links(
    session: Session, run_id: uuid.UUID, auto: Iterable[ScoredPair], review: Iterable[ScoredPair]
) -> None:
    """The run's auto links inside persons and its review pairs, with explanations.

    Every run keeps its own links (a person's links are the latest run's, and evaluation
    reads the last run's), so a relink writes all of them again, through COPY. Pairs alike
    share their level and weight dicts (see :mod:`~mash_hub.matching.model`), so each
    distinct dict's JSON and explanation is made once; every pair stays referenced from
    ``links`` meanwhile, so an ``id()`` is never reused for another dict."""
    links = [(p, "auto") for p in auto] + [(p, "review") for p in review]
    run = str(run_id)
    dumped: dict[int, str] = {}
    explained: dict[tuple[int, int], str] = {}
    lines: list[str] = []
    for p, status in links:
        weights = p.weights
        json_text = dumped.get(id(weights))
        if json_text is None:
            json_text = dumped[id(weights)] = _copy_text(json.dumps(weights))
        key = (id(p.levels), id(weights))
        explanation = explained.get(key)
        if explanation is None:
            explanation = explained[key] = _copy_text(explain(p))
        weight = float(round(p.match_weight, 2))
        lines.append(
            f"{run}\t{p.left}\t{p.right}\t{status}\t{weight!r}\t{json_text}\t{explanation}\n"
        )
    _copy_lines(
        session,
        "person_links (run_id, record_id_l, record_id_r, status, match_weight, weights,"
        " explanation)",
        lines,
    )


def person_events(
    assigned: Iterable[tuple[list[str], uuid.UUID]], previous: Mapping[str, uuid.UUID | None]
) -> list[dict[str, Any]]:
    """What a run did to persons, from each cluster's person and its records' previous ones.

    * ``create``: a new person whose records had none before;
    * ``join``: records with no person before added to an existing person;
    * ``merge``: records of two or more previous persons now one (``[kept, absorbed...]``);
    * ``split``: a previous person's records now in two or more persons (``[old, parts...]``).

    Previous persons are keyed by their ids' integer value (ordered as their text), not as
    ``UUID`` objects, whose hashing runs in Python.
    """
    events: list[dict[str, Any]] = []
    # The first person each previous person's records went to; a set only once there are two
    # (a split): most previous persons map to one person.
    now_first: dict[int, uuid.UUID] = {}
    now_of: dict[int, set[uuid.UUID]] = {}
    size_of: dict[int, int] = {}
    split_ids: dict[int, uuid.UUID] = {}

    def went(old: uuid.UUID, key: int, person: uuid.UUID, records: int) -> None:
        size_of[key] = size_of.get(key, 0) + records
        first = now_first.setdefault(key, person)
        if first is not person and first != person:
            now_of.setdefault(key, {first}).add(person)
            split_ids[key] = old

    for members, person in assigned:
        if len(members) == 1:  # most persons: one record, and nothing to count
            if (single := previous.get(members[0])) is None:
                events.append(_event("create", [person], 1))
            else:
                went(single, single.int, person, 1)
            continue
        olds: dict[int, int] = {}
        old_ids: dict[int, uuid.UUID] = {}
        fresh = 0
        for rid in members:
            if (p := previous.get(rid)) is None:
                fresh += 1
            else:
                key = p.int
                olds[key] = olds.get(key, 0) + 1
                old_ids.setdefault(key, p)
        for key, n in olds.items():
            went(old_ids[key], key, person, n)
        if not olds:
            events.append(_event("create", [person], len(members)))
            continue
        if fresh:
            events.append(_event("join", [person], fresh))
        if len(olds) > 1:
            absorbed = [old_ids[k] for k in sorted(olds) if k != person.int]
            events.append(
                _event("merge", [person, *absorbed], len(members), from_persons=len(olds))
            )
    for key in sorted(now_of):
        persons, old = now_of[key], split_ids[key]
        parts = sorted((p for p in persons if p != old), key=lambda p: p.int)
        head = [old] if old in persons else []
        events.append(_event("split", [*head, *parts], size_of[key], parts=len(persons)))
    return events


def _event(kind: str, persons: list[uuid.UUID], records: int, **counts: int) -> dict[str, Any]:
    return {"kind": kind, "person_ids": [str(p) for p in persons], "records": records, **counts}


_EVENT_FIELDS = ("kind", "person_ids", "records")


def write_events(
    session: Session, run_id: uuid.UUID, events: list[dict[str, Any]], *, actor: str
) -> None:
    """Store the events (through COPY: a first run creates a person, and an event, for
    almost every record); merges and splits also get an audit entry each (creates and joins
    are counted in the run's own entry)."""
    if not events:
        return
    run = str(run_id)
    _copy_lines(
        session,
        "link_events (run_id, kind, person_ids, records, counts)",
        [
            f"{run}\t{_copy_text(e['kind'])}\t{_copy_text(json.dumps(e['person_ids']))}"
            f"\t{int(e['records'])}"
            f"\t{_copy_text(json.dumps({k: v for k, v in e.items() if k not in _EVENT_FIELDS}))}\n"
            for e in events
        ],
    )
    for e in events:
        if e["kind"] in ("merge", "split"):
            audit(
                session,
                AuditEvent(
                    actor=actor,
                    action=f"linkage.{e['kind']}",
                    subject_type="person",
                    subject_id=e["person_ids"][0],
                    details={
                        "run_id": str(run_id),
                        "person_ids": e["person_ids"],
                        "records": e["records"],
                    },
                ),
            )


def truth_by_record(session: Session, store: PersonStore, truth_csv: Path) -> dict[str, str]:
    """Map a truth file (feed, source_record_id, person_key) onto stored record ids through
    the keyed source key, so agency ids are never stored or compared in clear."""
    wanted: dict[tuple[str, bytes], str] = {}
    with truth_csv.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            key = store.source_key(row["feed"], row["source_record_id"])
            wanted[(row["feed"], key)] = row["person_key"]
    out: dict[str, str] = {}
    rows = session.execute(
        select(SourceRecord.id, SourceRecord.feed, SourceRecord.source_key).where(
            SourceRecord.is_current.is_(True)
        )
    )
    for rid, feed, source_key in rows:
        person = wanted.get((feed, bytes(source_key)))
        if person is not None:
            out[str(rid)] = person
    return out


class TruthFileError(ValueError):
    """The truth file lacks what was asked of it (the message names the column, no value)."""


def truth_attributes(truth_csv: Path, by: Sequence[str]) -> dict[str, dict[str, str]]:
    """Each true person's attributes named in ``by`` (columns of the truth file)."""
    out: dict[str, dict[str, str]] = {}
    with truth_csv.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [a for a in by if a not in (reader.fieldnames or ())]
        if missing:
            raise TruthFileError(
                f"{truth_csv.name} has no column {', '.join(missing)}; "
                f"its columns: {', '.join(reader.fieldnames or ())}"
            )
        for row in reader:
            out.setdefault(row["person_key"], {a: row[a] or "unknown" for a in by})
    return out


def evaluate_current(
    db: Database, store: PersonStore, truth_csv: Path, by: Sequence[str] = ()
) -> dict[str, Any]:
    """Score the persons currently assigned (and the last run's links) against ground truth;
    with ``by``, also per group of true persons (:func:`evaluate_by_group`)."""
    with db.transaction() as session:
        return evaluate_persons(session, store, truth_csv, by)


def evaluate_persons(
    session: Session, store: PersonStore, truth_csv: Path, by: Sequence[str] = ()
) -> dict[str, Any]:
    """:func:`evaluate_current` in the caller's transaction (the linkage report uses it)."""
    attributes = truth_attributes(truth_csv, by) if by else {}
    truth = truth_by_record(session, store, truth_csv)
    # Records not yet linked each count as their own person.
    cluster_of: dict[str, str] = {
        str(rid): str(person) if person is not None else f"unlinked:{rid}"
        for rid, person in session.execute(
            select(SourceRecord.id, SourceRecord.person_id).where(
                SourceRecord.is_current.is_(True), SourceRecord.erased_at.is_(None)
            )
        )
    }
    last_run = session.scalar(select(LinkRun.id).order_by(LinkRun.started_at.desc()).limit(1))
    links: list[tuple[str, str]] = []
    review: set[str] = set()
    if last_run is not None:
        for left, right, status in session.execute(
            select(PersonLink.record_id_l, PersonLink.record_id_r, PersonLink.status).where(
                PersonLink.run_id == last_run
            )
        ):
            if status == "auto":
                links.append((str(left), str(right)))
            else:
                review.update((str(left), str(right)))
    result = evaluate(cluster_of, truth, links, len(review))
    result["truth_rows_matched"] = len(truth)
    if by:
        result["by_group"] = evaluate_by_group(cluster_of, truth, attributes, by, review)
    return result
