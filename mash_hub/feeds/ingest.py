"""Ingesting one agency file: atomic, idempotent, and nothing lost.

* **Atomic.** A file is one transaction: a crash (even ``kill -9``) mid-file leaves nothing of
  it behind, and running the same command again ingests it whole.
* **Idempotent.** The batch ledger records each file's SHA-256 per feed; the same file twice
  adds nothing. A record whose agency id is already held becomes a new version only when its
  standardised content changed (a keyed content hash tells, without decrypting); the previous
  version is kept as history.
* **Nothing lost.** A record with a bad value is indexed on what is valid and the value
  flagged (``mash_hub.quality``); only a row that cannot be a person (no record id, no usable
  name, unreadable) goes to the encrypted quarantine with reasons. No row can stop an ingest:
  rows in = indexed (accepted, updated, unchanged) + quarantined. A malformed file is
  rejected as a whole with an error naming the line.

:func:`ingest_records` takes the caller's session, so an API request can own the transaction;
:func:`ingest_file` is the job form that owns its own.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from mash_hub.audit import AuditEvent
from mash_hub.audit import record as audit
from mash_hub.crypto.keystore import provider_batch
from mash_hub.db.engine import Database
from mash_hub.feeds.definition import FeedDefinition
from mash_hub.feeds.mapping import MappedRecord, map_record
from mash_hub.feeds.models import FeedBatch
from mash_hub.feeds.quarantine import quarantine
from mash_hub.feeds.reader import RawRecord, read_records
from mash_hub.persons.store import NewRecord, PersonStore, PreparedRecord
from mash_hub.quality.issues import record_issues, supersede_issues

logger = logging.getLogger(__name__)

CHUNK = 2_000
_LEDGER_COUNTS = (
    "rows",
    "accepted",
    "updated",
    "unchanged",
    "quarantined",
    "quarantine_reasons",
    "flagged",
    "quality_issues",
)
Progress = Callable[[int], None]


@dataclass
class BatchReport:
    """What one file did to the hub; the same document for people (`ingest`) and scripts."""

    feed: str
    file: str
    sha256: str
    batch_id: str | None = None
    status: str = "ingested"  # or "already_ingested"
    rows: int = 0
    accepted: int = 0
    updated: int = 0
    unchanged: int = 0
    quarantined: int = 0
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    # Rows indexed with at least one value that failed validation, and those values by reason.
    flagged: int = 0
    quality_issues: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def ingest_file(
    db: Database,
    store: PersonStore,
    definition: FeedDefinition,
    path: Path,
    *,
    actor: str,
    progress: Progress | None = None,
    pool: PreparePool | None = None,
) -> BatchReport:
    """Ingest one file in one transaction (the job owns it)."""
    sha256 = file_sha256(path)
    with db.transaction() as session:
        return ingest_records(
            session,
            store,
            definition,
            read_records(definition, path),
            file_name=path.name,
            sha256=sha256,
            size_bytes=path.stat().st_size,
            actor=actor,
            progress=progress,
            pool=pool,
        )


def ingest_records(
    session: Session,
    store: PersonStore,
    definition: FeedDefinition,
    records: Iterable[RawRecord],
    *,
    file_name: str,
    sha256: str,
    size_bytes: int,
    actor: str,
    progress: Progress | None = None,
    pool: PreparePool | None = None,
) -> BatchReport:
    """Ingest a stream of raw records as one batch inside the caller's transaction."""
    started = time.perf_counter()
    report = BatchReport(feed=definition.name, file=file_name, sha256=sha256)
    # Two runs of the same file wait for each other instead of racing to the ledger.
    session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"feed-batch|{definition.name}|{sha256}"},
    )
    previous = session.scalar(
        select(FeedBatch).where(FeedBatch.feed == definition.name, FeedBatch.sha256 == sha256)
    )
    if previous is not None:
        report.batch_id = str(previous.id)
        report.status = "already_ingested"
        report.rows = int(previous.counts.get("rows", 0))
        report.unchanged = report.rows
        report.seconds = time.perf_counter() - started
        return report

    batch = FeedBatch(
        id=uuid.uuid4(),
        feed=definition.name,
        file_name=file_name,
        sha256=sha256,
        size_bytes=size_bytes,
        ingested_by=actor,
        counts={},
    )
    session.add(batch)
    session.flush()

    reasons: Counter[str] = Counter()
    issues: Counter[str] = Counter()
    chunk: dict[bytes, PreparedRecord] = {}
    outcomes = (
        pool.outcomes(records, batch.id)
        if pool is not None
        else _prepared_serially(store, definition, batch.id, records)
    )
    for outcome in outcomes:
        report.rows += 1
        if outcome.prepared is None:
            quarantine(
                session,
                store.keys,
                batch_id=batch.id,
                feed=definition.name,
                file_name=file_name,
                location=outcome.location,
                raw=outcome.raw or {},
                reasons=outcome.reasons,
            )
            report.quarantined += 1
            reasons.update(reason["code"] for reason in outcome.reasons)
        else:
            if outcome.prepared.issues:
                report.flagged += 1
                issues.update(code for _, code in outcome.prepared.issues)
            key = outcome.prepared.source_key
            if key in chunk:  # the same agency id twice in one file: the later row wins
                _write_chunk(session, store, definition, chunk, report=report)
                chunk = {}
            chunk[key] = outcome.prepared
            if len(chunk) >= CHUNK:
                _write_chunk(session, store, definition, chunk, report=report)
                chunk = {}
        if progress is not None and report.rows % 1000 == 0:
            progress(report.rows)
    _write_chunk(session, store, definition, chunk, report=report)
    if progress is not None:
        progress(report.rows)

    report.batch_id = str(batch.id)
    report.quarantine_reasons = dict(sorted(reasons.items()))
    report.quality_issues = dict(sorted(issues.items()))
    batch.counts = {key: getattr(report, key) for key in _LEDGER_COUNTS}
    audit(
        session,
        AuditEvent(
            actor=actor,
            action="feed.ingest",
            subject_type="feed_batch",
            subject_id=str(batch.id),
            details={"feed": definition.name, "sha256": sha256, **batch.counts},
        ),
    )
    report.seconds = time.perf_counter() - started
    return report


def to_new_record(
    definition: FeedDefinition, mapped: MappedRecord, batch_id: uuid.UUID | None
) -> NewRecord:
    assert mapped.source_record_id is not None
    return NewRecord(
        feed=definition.name,
        source_agency=definition.agency,
        source_record_id=mapped.source_record_id,
        groups=mapped.groups,
        index_fields=mapped.index_fields,
        batch_id=batch_id,
        issues=tuple((i.field, i.code) for i in mapped.issues),
    )


def apply_records(
    session: Session,
    store: PersonStore,
    definition: FeedDefinition,
    batch_id: uuid.UUID | None,
    records: dict[bytes, MappedRecord],
) -> tuple[list[uuid.UUID], Counter[str]]:
    """Prepare and write standardised records (used for re-submitted quarantine rows)."""
    prepared = {
        key: store.prepare(to_new_record(definition, mapped, batch_id))
        for key, mapped in records.items()
    }
    return apply_prepared(session, store, definition, prepared)


def apply_prepared(
    session: Session,
    store: PersonStore,
    definition: FeedDefinition,
    records: dict[bytes, PreparedRecord],
) -> tuple[list[uuid.UUID], Counter[str]]:
    """New, updated or unchanged: decide per agency id and write. Returns new ids and counts."""
    counts: Counter[str] = Counter()
    # Keyed by source key under the database's current root (a rotation may have switched
    # since the records were prepared).
    records = {p.source_key: p for p in store.resolve(session, records.values())}
    current = store.current_versions(session, definition.name, records.keys())
    superseded: list[uuid.UUID] = []
    to_write: list[PreparedRecord] = []
    for key, prepared in records.items():
        held = current.get(key)
        if held is None:
            to_write.append(prepared)
            counts["accepted"] += 1
        elif held.content_hash == prepared.content_hash:
            counts["unchanged"] += 1
        else:
            superseded.append(held.id)
            to_write.append(replace(prepared, version=held.version + 1, person_id=held.person_id))
            counts["updated"] += 1
    store.supersede(session, superseded)
    supersede_issues(session, superseded)
    written = store.write(session, to_write)
    record_issues(session, to_write)
    return written, counts


def _write_chunk(
    session: Session,
    store: PersonStore,
    definition: FeedDefinition,
    chunk: dict[bytes, PreparedRecord],
    *,
    report: BatchReport,
) -> None:
    if not chunk:
        return
    _, counts = apply_prepared(session, store, definition, chunk)
    report.accepted += counts["accepted"]
    report.updated += counts["updated"]
    report.unchanged += counts["unchanged"]


@dataclass(frozen=True)
class Outcome:
    """One raw record after standardisation: prepared for writing, or bound for quarantine."""

    location: str
    prepared: PreparedRecord | None
    raw: dict[str, Any] | None = None
    reasons: list[dict[str, str]] = field(default_factory=list)


# The reason a row gets when reading or standardising it raised something unforeseen: the row
# is quarantined (its raw values kept for correction) and the ingest goes on.
ROW_ERROR = {"code": "row_unreadable", "field": "row"}


def prepare_one(
    store: PersonStore, definition: FeedDefinition, batch_id: uuid.UUID, raw: RawRecord
) -> Outcome:
    """Standardise and encrypt one row; any exception becomes a reason on that row, so no
    input can stop an ingest (a file-level fault is raised by the reader instead)."""
    if raw.error is not None:
        return Outcome(raw.location, None, raw.data, [{"code": raw.error, "field": "row"}])
    try:
        mapped = map_record(definition, raw)
        if not mapped.valid:
            return Outcome(raw.location, None, raw.data, [r.as_dict() for r in mapped.all_reasons])
        return Outcome(raw.location, store.prepare(to_new_record(definition, mapped, batch_id)))
    except Exception as exc:  # the row is quarantined with a reason instead
        logger.warning(
            "feed %s %s: standardising raised %s; row quarantined",
            definition.name,
            raw.location,
            type(exc).__name__,
        )
        return Outcome(raw.location, None, raw.data, [dict(ROW_ERROR)])


# Set in the parent just before the worker processes fork, so they inherit the store (with its
# keys) without the keys ever being pickled or written anywhere.
_FORKED: tuple[PersonStore, FeedDefinition] | None = None


def _prepare_in_worker(batch_id: uuid.UUID, raws: list[RawRecord]) -> list[Outcome]:
    assert _FORKED is not None, "worker started without a store"
    store, definition = _FORKED
    # One check of the keyring for the chunk, not one per key wrapped and root looked up.
    with provider_batch(store.keys.provider):
        return [prepare_one(store, definition, batch_id, raw) for raw in raws]


def _prepared_serially(
    store: PersonStore,
    definition: FeedDefinition,
    batch_id: uuid.UUID,
    records: Iterable[RawRecord],
) -> Iterator[Outcome]:
    """Without workers: the same work in this process, the keyring checked once per chunk."""
    chunk: list[RawRecord] = []
    for raw in records:
        chunk.append(raw)
        if len(chunk) >= PreparePool.TASK:
            with provider_batch(store.keys.provider):
                yield from [prepare_one(store, definition, batch_id, r) for r in chunk]
            chunk = []
    with provider_batch(store.keys.provider):
        yield from [prepare_one(store, definition, batch_id, r) for r in chunk]


class PreparePool:
    """Worker processes for the CPU-heavy part (standardise, encrypt, index).

    The parent keeps reading the file (so a malformed line still stops everything), sends
    small chunks to the workers, and writes their results in file order. Plaintext crosses
    only in-memory pipes between the hub's own processes. Create it before any other
    thread starts (fork copies only the calling thread).
    """

    # Records per task sent to a worker.
    TASK = 250
    # Chunks prepared ahead of the one being written: two write chunks' worth, so the
    # workers keep going while the parent waits for the server's COPY.
    AHEAD = 2 * CHUNK // TASK

    def __init__(self, store: PersonStore, definition: FeedDefinition, workers: int) -> None:
        self.store = store
        self.definition = definition
        self.workers = workers
        self._pool: Any = None

    def __enter__(self) -> PreparePool:
        global _FORKED  # noqa: PLW0603 - handed to forked workers, cleared on exit
        _FORKED = (self.store, self.definition)
        self._pool = multiprocessing.get_context("fork").Pool(self.workers)
        return self

    def __exit__(self, *exc: object) -> None:
        global _FORKED  # noqa: PLW0603
        self._pool.terminate()
        self._pool.join()
        _FORKED = None

    def outcomes(self, records: Iterable[RawRecord], batch_id: uuid.UUID) -> Iterator[Outcome]:
        pending: deque[Any] = deque()
        chunk: list[RawRecord] = []
        for raw in records:
            chunk.append(raw)
            if len(chunk) >= self.TASK:
                pending.append(self._pool.apply_async(_prepare_in_worker, (batch_id, chunk)))
                chunk = []
                if len(pending) >= max(self.workers * 4, self.AHEAD):
                    yield from pending.popleft().get()
        if chunk:
            pending.append(self._pool.apply_async(_prepare_in_worker, (batch_id, chunk)))
        while pending:
            yield from pending.popleft().get()
