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
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, insert, select, text
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.orm import Session

from mash_hub.audit import AuditEvent
from mash_hub.audit import record as audit
from mash_hub.db.engine import Database
from mash_hub.matching import cluster as clustering
from mash_hub.matching import frequencies as term_frequencies
from mash_hub.matching import review as reviewing
from mash_hub.matching.comparisons import IDENTIFIER_COLUMNS
from mash_hub.matching.evaluate import evaluate
from mash_hub.matching.features import FeatureBuilder, FeatureTable
from mash_hub.matching.model import (
    LinkageModel,
    ScoredPair,
    explain,
    frequencies_of,
    predict,
    train,
)
from mash_hub.matching.models import LinkEvent, LinkRun, PersonLink
from mash_hub.persons.models import SourceRecord
from mash_hub.persons.store import CONTACT, IDENTIFIERS, IDENTITY, PersonStore

READ_BATCH = 2_000
GROUPS = (IDENTITY, IDENTIFIERS, CONTACT)
# The feature columns a run reads back in Python, by record: what clustering's guards
# compare (see cluster.pair_status). Everything else stays in Arrow, for DuckDB.
LOOKUP_COLUMNS = (*IDENTIFIER_COLUMNS, "given_first")


@contextlib.contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
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
    with _cyclic_gc_paused(), db.transaction() as session:
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
    with _cyclic_gc_paused(), db.transaction() as session:
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
    _copy(session, "persons (id)", [(pid,) for pid in new_persons])
    fresh = iter(new_persons)
    moves: list[tuple[uuid.UUID, uuid.UUID]] = []
    assigned: list[tuple[list[str], uuid.UUID]] = []
    for members, pid in zip(result.clusters, kept, strict=True):
        person = pid if pid is not None else next(fresh)
        assigned.append((members, person))
        moves.extend((uuid.UUID(rid), person) for rid in members if previous.get(rid) != person)
    _move_records(session, moves)
    run = new_run(session, model, actor=actor, mode="full")
    cluster_of = result.cluster_of()
    stored = [
        p
        for p in pairs
        if result.status[(p.left, p.right)] == clustering.AUTO
        and cluster_of[p.left] == cluster_of[p.right]
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
    statuses = list(result.status.values())
    report = RunReport(
        run_id=str(run.id),
        records=len(cluster_of),
        candidate_pairs=len(pairs),
        auto_links=len(stored),
        clusters=len(result.clusters),
        persons_kept=sum(1 for pid in kept if pid is not None),
        persons_created=len(new_persons),
        records_moved=len(moves),
        review_pairs=len(result.review),
        review_records=len(result.review_records()),
        possible_twins=statuses.count(clustering.POSSIBLE_TWIN),
        identifier_conflicts=statuses.count(clustering.CONFLICT),
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


def new_run(session: Session, model: LinkageModel, *, actor: str, mode: str) -> LinkRun:
    run = LinkRun(
        id=uuid.uuid4(),
        actor=actor,
        model_version=model.version,
        model_definition=model.definition,
        counts={},
        mode=mode,
    )
    session.add(run)
    session.flush()
    return run


_MOVE = text(
    "UPDATE source_records s SET person_id = m.person_id"
    " FROM unnest(:ids, :persons) AS m(id, person_id) WHERE s.id = m.id"
).bindparams(
    bindparam("ids", type_=ARRAY(UUID(as_uuid=True))),
    bindparam("persons", type_=ARRAY(UUID(as_uuid=True))),
)


def _move_records(session: Session, moves: list[tuple[uuid.UUID, uuid.UUID]]) -> None:
    """Assign records to persons in one statement (a first run moves every record)."""
    if moves:
        ids, persons = zip(*moves, strict=True)
        session.execute(_MOVE, {"ids": list(ids), "persons": list(persons)})


def _copy(session: Session, target: str, rows: list[tuple[Any, ...]]) -> None:
    """Bulk insert through COPY, in the session's transaction."""
    if not rows:
        return
    session.flush()
    connection: Any = session.connection().connection.driver_connection
    with connection.cursor() as cursor, cursor.copy(f"COPY {target} FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def store_links(
    session: Session, run_id: uuid.UUID, auto: Iterable[ScoredPair], review: Iterable[ScoredPair]
) -> None:
    """The run's auto links inside persons and its review pairs, with explanations.

    Every run keeps its own links (a person's links are the latest run's, and evaluation
    reads the last run's), so a relink writes all of them again: through COPY, 46,306 rows
    at 200,000 people took 1.4 s instead of 2.35 s as one multi-row ORM insert."""
    links = [(p, "auto") for p in auto] + [(p, "review") for p in review]
    _copy(
        session,
        "person_links (run_id, record_id_l, record_id_r, status, match_weight, weights,"
        " explanation)",
        [
            (
                run_id,
                uuid.UUID(p.left),
                uuid.UUID(p.right),
                status,
                round(p.match_weight, 2),
                json.dumps(p.weights),
                explain(p),
            )
            for p, status in links
        ],
    )


def person_events(
    assigned: Iterable[tuple[list[str], uuid.UUID]], previous: Mapping[str, uuid.UUID | None]
) -> list[dict[str, Any]]:
    """What a run did to persons, from each cluster's person and its records' previous ones.

    * ``create``: a new person whose records had none before;
    * ``join``: records with no person before added to an existing person;
    * ``merge``: records of two or more previous persons now one (``[kept, absorbed...]``);
    * ``split``: a previous person's records now in two or more persons (``[old, parts...]``).
    """
    events: list[dict[str, Any]] = []
    # The first person each previous person's records went to; a set only once there are two
    # (a split): most previous persons map to one person.
    now_first: dict[uuid.UUID, uuid.UUID] = {}
    now_of: dict[uuid.UUID, set[uuid.UUID]] = {}
    size_of: Counter[uuid.UUID] = Counter()

    def went(old: uuid.UUID, person: uuid.UUID, records: int) -> None:
        size_of[old] += records
        first = now_first.setdefault(old, person)
        if first != person:
            now_of.setdefault(old, {first}).add(person)

    for members, person in assigned:
        if len(members) == 1:  # most persons: one record, and nothing to count
            if (single := previous.get(members[0])) is None:
                events.append(_event("create", [person], 1))
            else:
                went(single, person, 1)
            continue
        olds = Counter(p for rid in members if (p := previous.get(rid)) is not None)
        fresh = sum(1 for rid in members if previous.get(rid) is None)
        for old, n in olds.items():
            went(old, person, n)
        if not olds:
            events.append(_event("create", [person], len(members)))
            continue
        if fresh:
            events.append(_event("join", [person], fresh))
        if len(olds) > 1:
            absorbed = sorted((p for p in olds if p != person), key=str)
            events.append(
                _event("merge", [person, *absorbed], len(members), from_persons=len(olds))
            )
    for old, persons in sorted(now_of.items(), key=lambda item: str(item[0])):
        parts = sorted((p for p in persons if p != old), key=str)
        head = [old] if old in persons else []
        events.append(_event("split", [*head, *parts], size_of[old], parts=len(persons)))
    return events


def _event(kind: str, persons: list[uuid.UUID], records: int, **counts: int) -> dict[str, Any]:
    return {"kind": kind, "person_ids": [str(p) for p in persons], "records": records, **counts}


def write_events(
    session: Session, run_id: uuid.UUID, events: list[dict[str, Any]], *, actor: str
) -> None:
    """Store the events; merges and splits also get an audit entry each (creates and joins
    are counted in the run's own entry: a first run creates thousands of persons)."""
    if not events:
        return
    session.execute(
        insert(LinkEvent),
        [
            {
                "run_id": run_id,
                "kind": e["kind"],
                "person_ids": e["person_ids"],
                "records": e["records"],
                "counts": {
                    k: v for k, v in e.items() if k not in ("kind", "person_ids", "records")
                },
            }
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


def evaluate_current(db: Database, store: PersonStore, truth_csv: Path) -> dict[str, Any]:
    """Score the persons currently assigned (and the last run's links) against ground truth."""
    with db.transaction() as session:
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
    return result
