"""Writing index terms that records stored before an index existed do not have yet.

A new blind index (the deletion index of issue 15) only reaches records ingested after it
exists; older ones must be indexed again. :func:`backfill_index` does that online: one
committed transaction per batch (an interruption loses at most one batch; a re-run skips the
records that already have the index), each batch under an advisory lock so two runs do not
both write it, one audit entry per batch in the same transaction, and only the ``identity``
group of each record decrypted (the names are all the new index needs).

Only current, unerased records are indexed: search and linkage never look at superseded
versions, and erased ones have nothing left to decrypt.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, SmallInteger, Uuid, bindparam, exists, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from mash_hub.audit import AuditEvent
from mash_hub.audit import record as audit
from mash_hub.db.engine import Database
from mash_hub.persons.models import BlindIndexEntry, SourceRecord
from mash_hub.persons.store import IDENTITY, PersonStore

# Indexes whose terms come from the identity group alone, so a backfill decrypts nothing else.
NAME_INDEXES: tuple[str, ...] = ("name_deletion_pair",)
BACKFILL_LOCK = "hashtextextended('blind-index-backfill', 0)"
DEFAULT_BATCH = 500


class BackfillRefusedError(RuntimeError):
    """The backfill cannot run now (the message says why and what to do)."""


@dataclass
class BackfillReport:
    indexes: list[str]
    records: int = 0
    indexed: int = 0
    terms: int = 0
    batches: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _index_ids(store: PersonStore, indexes: Collection[str]) -> list[int]:
    unknown = [name for name in indexes if name not in NAME_INDEXES]
    if unknown:
        raise ValueError(f"not an index backfill can write: {', '.join(sorted(unknown))}")
    return [store.indexer.index_id(name) for name in indexes]


def _missing(index_ids: list[int]) -> tuple[Any, ...]:
    """Current, unerased records that hold no term of any of these indexes."""
    return (
        SourceRecord.is_current.is_(True),
        SourceRecord.erased_at.is_(None),
        ~exists().where(
            BlindIndexEntry.record_id == SourceRecord.id,
            BlindIndexEntry.index_id.in_(index_ids),
        ),
    )


def outstanding(session: Session, store: PersonStore, indexes: Collection[str]) -> int:
    """How many records a backfill of ``indexes`` still has to read."""
    conditions = _missing(_index_ids(store, indexes))
    return session.scalar(select(func.count()).select_from(SourceRecord).where(*conditions)) or 0


def backfill_batch(
    session: Session,
    store: PersonStore,
    indexes: Collection[str],
    *,
    after: uuid.UUID | None,
    batch_size: int,
    actor: str,
) -> tuple[int, int, int, uuid.UUID | None]:
    """Index one batch in the caller's transaction: (records read, records given terms,
    terms written, last record id). Records are taken in id order after ``after``, so a
    record whose names yield no term is read once per run, not once per batch."""
    session.execute(text(f"SELECT pg_advisory_xact_lock({BACKFILL_LOCK})"))
    if store.fence(session).pending is not None:
        # Terms written now would be the current root's only: the rotation's re-index has
        # already passed these records, so the new root would lack them after its switch.
        raise BackfillRefusedError(
            "a blind-index root rotation is in progress: finish it with `mash-hub keys "
            "rotate-index-root`, then run the backfill"
        )
    index_ids = _index_ids(store, indexes)
    query = select(SourceRecord.id).where(*_missing(index_ids))
    if after is not None:
        query = query.where(SourceRecord.id > after)
    ids = list(session.scalars(query.order_by(SourceRecord.id).limit(batch_size)))
    if not ids:
        return 0, 0, 0, None
    wanted = set(index_ids)
    rows: list[tuple[int, int, uuid.UUID]] = []
    indexed = 0
    for record_id, stored in store.read(session, ids, [IDENTITY]).items():
        identity = stored.groups.get(IDENTITY) or {}
        fields = {
            "given_names": identity.get("given_names") or [],
            "family_name": identity.get("family_name"),
        }
        terms = [t for t in store.indexer.terms_for(fields) if t.index_id in wanted]
        indexed += bool(terms)
        rows += [(t.index_id, t.value, record_id) for t in terms]
    if rows:
        session.execute(
            text(
                "INSERT INTO blind_index (index_id, value, record_id)"
                " SELECT * FROM unnest(:index_ids, :index_values, :record_ids)"
                " ON CONFLICT DO NOTHING"
            ).bindparams(
                bindparam("index_ids", [r[0] for r in rows], type_=ARRAY(SmallInteger)),
                bindparam("index_values", [r[1] for r in rows], type_=ARRAY(BigInteger)),
                bindparam("record_ids", [r[2] for r in rows], type_=ARRAY(Uuid)),
            )
        )
    audit(
        session,
        AuditEvent(
            actor,
            "index.backfill",
            "blind_index",
            ",".join(sorted(indexes)),
            {"records": len(ids), "indexed": indexed, "terms": len(rows)},
        ),
    )
    return len(ids), indexed, len(rows), ids[-1]


def backfill_index(
    db: Database,
    store: PersonStore,
    *,
    actor: str,
    indexes: Collection[str] = NAME_INDEXES,
    batch_size: int = DEFAULT_BATCH,
    progress: Callable[[int, int], None] | None = None,
) -> BackfillReport:
    """Write the missing terms of ``indexes`` for every current record, one committed batch
    at a time (see the module docstring)."""
    report = BackfillReport(indexes=sorted(indexes))
    with db.transaction() as session:
        total = outstanding(session, store, indexes)
    if progress is not None:
        progress(0, total)
    after: uuid.UUID | None = None
    while True:
        with db.transaction() as session:
            read, indexed, terms, after = backfill_batch(
                session, store, indexes, after=after, batch_size=batch_size, actor=actor
            )
        if not read:
            return report
        report.records += read
        report.indexed += indexed
        report.terms += terms
        report.batches += 1
        if progress is not None:
            progress(report.records, max(total, report.records))
