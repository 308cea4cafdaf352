"""Incremental linkage: new records matched against the existing persons, no full relink.

For a batch of records without a person (a new feed batch, a later referral):

1. decrypt only those records and build their features;
2. find candidates through the blind indexes (:meth:`PersonStore.candidates` with
   :meth:`BlindIndexer.query_terms` on the indexes that mirror the prediction blocking
   rules), then take every current record of the candidates' persons, so the identifier
   and twin guards see whole persons; decrypt only those;
3. score new-against-existing and new-against-new with the trained model and the same
   blocking rules as a full run (:func:`~mash_hub.matching.model.predict_new`: the Python
   scorer, the same pairs and weights as Splink's ``predict_between`` + ``predict_within``
   without a linker per call, so one record costs milliseconds, not ~0.4 s);
4. cluster with the same guards as a full run (twins never auto-link, identifier conflicts
   and cannot-link decisions block), existing persons pre-joined and never merged with each
   other (that is left to a full run, and such pairs go to review);
5. each new record joins an existing person, or a new person (alone or with other new
   records); undecided pairs become review tasks; ``link_events`` get ``join`` / ``create``.

Locking (:func:`_lock`): a full run takes the ``link-run`` advisory lock exclusively. A small
incremental link (a referral: at most :data:`MAX_TERM_LOCKS` candidate terms) takes it shared,
so intakes run side by side, and instead serialises with exactly the links that could meet
it: it locks each blind-index term it looks candidates up by, then each candidate person,
both in ascending order (terms before persons, so waits cannot form a cycle), and reads the
candidates again once it holds them. Two referrals of the same new child share their terms:
the second waits for the first to commit, then finds its record and joins its person
instead of creating a second one. Two links that share no term cannot find each other's
records, so they need no order; a person both may join is locked, so each sees the other's
join (identifier and twin guards see whole persons). A bigger batch (a feed file) takes the
lock exclusively, as before: thousands of term locks would exhaust PostgreSQL's lock table.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from mash_hub.audit import AuditEvent
from mash_hub.audit import record as audit
from mash_hub.crypto.blind_index import IndexTerm
from mash_hub.matching import cluster as clustering
from mash_hub.matching import frequencies as term_frequencies
from mash_hub.matching import review as reviewing
from mash_hub.matching.features import record_features
from mash_hub.matching.model import LinkageModel, predict_new
from mash_hub.matching.models import LinkRun
from mash_hub.matching.service import GROUPS, new_run, person_events, store_links, write_events
from mash_hub.persons.models import Person, SourceRecord
from mash_hub.persons.reindex import index_fields
from mash_hub.persons.store import PersonStore, StoredRecord

# Blind indexes that cover the prediction blocking rules (comparisons.PREDICTION_BLOCKING):
# identifiers; DOB (+ family phonetic, + district, or alone for DOB + first-name phonetic);
# postcode (for postcode + first-name phonetic); full-name tokens; family phonetic + year.
CANDIDATE_INDEXES = (
    "nhs_number",
    "upn",
    "pnc_id",
    "dob",
    "family_phonetic_dob",
    "dob_postcode_district",
    "postcode",
    "given_family_token",
    "family_phonetic_birth_year",
)
LOOKUP_CHUNK = 100  # new records per candidate query
LINK_RUN_LOCK = "hashtextextended('link-run', 0)"
# Term locks an incremental link may take before it serialises with every other link
# instead (PostgreSQL's lock table holds max_locks_per_transaction (64) x connections).
MAX_TERM_LOCKS = 48


@dataclass
class IncrementalReport:
    """What an incremental run did (no personal data)."""

    run_id: str | None
    records: int
    candidate_records: int = 0
    candidate_persons: int = 0
    scored_pairs: int = 0
    joined_existing: int = 0
    new_persons: int = 0
    review_pairs: int = 0
    possible_twins: int = 0
    identifier_conflicts: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    # Each linked record's person, and the records that joined a person the index already
    # held: the caller's answer without reading them back (not in :meth:`as_dict`).
    assigned: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)
    joined: set[uuid.UUID] = field(default_factory=set)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("assigned", "joined")}


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def unlinked(session: Session, record_ids: Collection[uuid.UUID]) -> list[uuid.UUID]:
    """Of these records, the current ones that have no person yet."""
    if not record_ids:
        return []
    return list(
        session.scalars(
            select(SourceRecord.id)
            .where(
                SourceRecord.id.in_(list(record_ids)),
                SourceRecord.is_current.is_(True),
                SourceRecord.erased_at.is_(None),
                SourceRecord.person_id.is_(None),
            )
            .order_by(SourceRecord.id)
        )
    )


def batch_records(session: Session, batch_id: uuid.UUID) -> list[uuid.UUID]:
    """The current records of a feed batch that have no person yet."""
    return list(
        session.scalars(
            select(SourceRecord.id).where(
                SourceRecord.batch_id == batch_id,
                SourceRecord.is_current.is_(True),
                SourceRecord.erased_at.is_(None),
                SourceRecord.person_id.is_(None),
            )
        )
    )


def has_index(session: Session) -> bool:
    """Whether a full run has linked this hub (incremental linkage needs persons to match)."""
    return session.scalar(select(LinkRun.id).where(LinkRun.mode == "full").limit(1)) is not None


def link_records(
    session: Session,
    store: PersonStore,
    model: LinkageModel,
    record_ids: Collection[uuid.UUID],
    *,
    actor: str,
    written: Mapping[uuid.UUID, StoredRecord] | None = None,
) -> IncrementalReport:
    """Link new records (those of ``record_ids`` without a person) into the existing persons,
    in the caller's transaction.

    ``written``: records this transaction has just written, without a person, with their
    plaintext groups (a referral's subjects). Nobody else can see them before commit, so they
    are neither read back nor checked for a person again.
    """
    timings: dict[str, float] = {}
    began = time.perf_counter()
    if written is not None:
        ids = sorted(rid for rid in record_ids if rid in written)
        stored_new: Mapping[uuid.UUID, StoredRecord] = written
    else:
        ids = unlinked(session, record_ids)
        stored_new = store.read(session, ids, GROUPS) if ids else {}
    if not ids:
        return IncrementalReport(run_id=None, records=0)
    rows = _features_and_terms(session, store, ids, stored_new)
    exclusive = _lock(session, [t for _, record_terms in rows.values() for t in record_terms])
    if written is None:
        # Linked by someone else while this waited: not new any more.
        ids = unlinked(session, ids)
    report = IncrementalReport(run_id=None, records=len(ids))
    if not ids:
        return report
    new_rows = [rows[rid][0] for rid in ids if rid in rows]
    terms = [rows[rid][1] for rid in ids if rid in rows]
    timings["read_new"] = time.perf_counter() - began
    mark = time.perf_counter()
    # New records have no person yet, so they are never among the candidates' persons.
    persons: set[uuid.UUID] = set()
    for chunk in _chunks(terms, LOOKUP_CHUNK):
        persons |= store.candidate_persons(session, [t for record in chunk for t in record])
    new_ids = {uuid.UUID(str(r["unique_id"])) for r in new_rows}
    if not exclusive:
        _lock_keys(session, {_lock_key(f"person|{p}") for p in persons})
    # Read holding the persons (a statement of its own, so its snapshot is taken after the
    # locks): records joined to them meanwhile are seen too.
    candidates = store.read_persons(session, persons, GROUPS)
    existing = {rid: stored.person_id for rid, stored in candidates.items() if stored.person_id}
    report.candidate_records = len(existing)
    report.candidate_persons = len(set(existing.values()))
    timings["candidates"] = time.perf_counter() - mark
    mark = time.perf_counter()
    old_rows = [
        record_features(str(rid), stored.feed, stored.groups)
        for rid, stored in candidates.items()
        if stored.groups
    ]
    timings["read_candidates"] = time.perf_counter() - mark
    mark = time.perf_counter()
    pairs = predict_new(new_rows, old_rows, model, term_frequencies.latest(session, store.keys))
    report.scored_pairs = len(pairs)
    timings["predict"] = time.perf_counter() - mark
    mark = time.perf_counter()
    by_id = {str(r["unique_id"]): r for r in [*new_rows, *old_rows]}
    decisions = reviewing.load_constraints(session)
    person_of = {str(rid): person for rid, person in existing.items()}
    constraints = clustering.Constraints(
        must_link=decisions.must_link,
        cannot_link=decisions.cannot_link,
        groups={rid: str(person) for rid, person in person_of.items()},
    )
    result = clustering.cluster(by_id, pairs, model.thresholds, constraints)
    timings["cluster"] = time.perf_counter() - mark
    mark = time.perf_counter()
    _write(
        session,
        model,
        result,
        pairs,
        person_of=person_of,
        new_ids={str(r) for r in new_ids},
        report=report,
        actor=actor,
    )
    timings["write"] = time.perf_counter() - mark
    timings["total"] = time.perf_counter() - began
    report.seconds = {k: round(v, 4) for k, v in timings.items()}
    return report


def _features_and_terms(
    session: Session,
    store: PersonStore,
    ids: list[uuid.UUID],
    stored: Mapping[uuid.UUID, StoredRecord],
) -> dict[uuid.UUID, tuple[dict[str, Any], list[IndexTerm]]]:
    """Each new record's features and the blind-index terms its candidates are found by."""
    store.align(session)
    rows: dict[uuid.UUID, tuple[dict[str, Any], list[IndexTerm]]] = {}
    for rid in ids:
        record = stored.get(rid)
        if record is not None and record.groups:
            rows[rid] = (
                record_features(str(rid), record.feed, record.groups),
                store.indexer.query_terms(index_fields(record.groups), indexes=CANDIDATE_INDEXES),
            )
    return rows


def _lock_key(name: str) -> int:
    """A signed 64-bit advisory lock key for a term or a person (collisions only serialise)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), signed=True)


def _lock_keys(session: Session, keys: set[int]) -> None:
    """Take these transaction-scoped advisory locks in ascending order, in one statement."""
    if keys:
        session.execute(
            text("SELECT count(pg_advisory_xact_lock(k)) FROM unnest(CAST(:keys AS bigint[])) k"),
            {"keys": sorted(keys)},
        )


# The link-run lock shared, then the terms' locks in ascending order, in one round trip:
# the materialised CTE is scanned (its lock taken) before the first joined row is projected.
_SHARED_AND_TERMS = text(
    "WITH run AS MATERIALIZED"
    " (SELECT pg_advisory_xact_lock_shared(hashtextextended('link-run', 0)) AS held)"
    " SELECT count(pg_advisory_xact_lock(k.key)) FROM run,"
    " unnest(CAST(:keys AS bigint[])) AS k(key)"
)


def _lock(session: Session, terms: list[IndexTerm]) -> bool:
    """Take the link-run lock shared plus the terms' locks, or exclusively for a big batch
    (see the module docstring); returns whether it was taken exclusively."""
    keys = {_lock_key(f"term|{t.index_id}|{t.value}") for t in terms}
    if len(keys) > MAX_TERM_LOCKS:
        session.execute(text(f"SELECT pg_advisory_xact_lock({LINK_RUN_LOCK})"))
        return True
    if keys:
        session.execute(_SHARED_AND_TERMS, {"keys": sorted(keys)})
    else:
        session.execute(text(f"SELECT pg_advisory_xact_lock_shared({LINK_RUN_LOCK})"))
    return False


def _write(
    session: Session,
    model: LinkageModel,
    result: clustering.Clustering,
    pairs: list[Any],
    *,
    person_of: Mapping[str, uuid.UUID],
    new_ids: set[str],
    report: IncrementalReport,
    actor: str,
) -> None:
    assigned: list[tuple[list[str], uuid.UUID]] = []
    moves: list[dict[str, uuid.UUID]] = []
    for members in result.clusters:
        fresh = [rid for rid in members if rid in new_ids]
        if not fresh:
            continue
        persons = {person_of[rid] for rid in members if rid in person_of}
        if persons:
            (person,) = persons  # existing persons are never merged here
            report.joined_existing += len(fresh)
            report.joined.update(uuid.UUID(rid) for rid in fresh)
        else:
            person = uuid.uuid4()
            session.add(Person(id=person))
            report.new_persons += 1
        assigned.append((members, person))
        moves.extend({"id": uuid.UUID(rid), "person_id": person} for rid in fresh)
    session.flush()
    if moves:
        session.execute(update(SourceRecord), moves)
        report.assigned.update((move["id"], move["person_id"]) for move in moves)
    statuses = list(result.status.values())
    report.review_pairs = len(result.review)
    report.possible_twins = statuses.count(clustering.POSSIBLE_TWIN)
    report.identifier_conflicts = statuses.count(clustering.CONFLICT)
    counts = {k: v for k, v in report.as_dict().items() if isinstance(v, int)}
    run = new_run(session, model, actor=actor, mode="incremental", counts=counts)
    report.run_id = str(run.id)
    cluster_of = result.cluster_of()
    auto = [
        p
        for p in pairs
        if result.status[(p.left, p.right)] == clustering.AUTO
        and cluster_of[p.left] == cluster_of[p.right]
    ]
    store_links(session, run.id, auto, result.review)
    reviewing.sync_tasks(
        session,
        run.id,
        reviewing.kinds(result.review, result.status),
        [c for c in result.conflicts if c.left in new_ids or c.right in new_ids],
        full=False,
        touching=new_ids,
    )
    previous: dict[str, uuid.UUID | None] = dict.fromkeys(new_ids)
    previous.update(person_of)
    write_events(session, run.id, person_events(assigned, previous), actor=actor)
    audit(
        session,
        AuditEvent(
            actor=actor,
            action="linkage.incremental",
            subject_type="link_run",
            subject_id=str(run.id),
            details={"model_version": model.version, **counts},
        ),
    )
