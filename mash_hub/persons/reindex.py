"""Recompute the blind-index terms of stored records, batch by batch.

Index values are truncated HMACs of normalised values that are stored only encrypted, so a
new index root (or a new index spec) means decrypting each record's identity, identifiers
and contact groups, rebuilding the values ingestion indexed it by (:func:`index_fields`) and
computing the terms again. :func:`reindex` is that loop; callers say which records still
need it and where the terms go (a rotation: the pending bank of ``blind_index``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from sqlalchemy import Uuid, any_, bindparam, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from mash_hub.crypto.blind_index import BlindIndexer, IndexTerm
from mash_hub.db.engine import Database
from mash_hub.persons.models import SourceRecord
from mash_hub.persons.store import CONTACT, IDENTIFIERS, IDENTITY, PersonStore

__all__ = ["INDEX_GROUPS", "index_fields", "recompute_terms", "reindex"]

# The only groups a re-index decrypts.
INDEX_GROUPS = (IDENTITY, IDENTIFIERS, CONTACT)

# (session, last record id of the previous batch or None, batch size) -> the next record ids
# needing terms, ascending, all greater than the given id.
RecordSelector = Callable[[Session, uuid.UUID | None, int], Sequence[uuid.UUID]]
# (session, terms by record id) -> None: store one batch's terms.
TermWriter = Callable[[Session, Mapping[uuid.UUID, list[IndexTerm]]], None]


def index_fields(groups: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The fields ingestion indexed a record by, rebuilt from its decrypted groups."""
    identity = groups.get("identity", {})
    identifiers = groups.get("identifiers", {})
    addresses = groups.get("contact", {}).get("addresses") or []
    return {
        "given_names": identity.get("given_names") or [],
        "family_name": identity.get("family_name"),
        "other_names": identity.get("other_names") or [],
        "date_of_birth": identity.get("date_of_birth"),
        "postcodes": [
            a["postcode"] for a in addresses if isinstance(a, dict) and a.get("postcode")
        ],
        "nhs_number": identifiers.get("nhs_number"),
        "upn": identifiers.get("upn"),
        "pnc_id": identifiers.get("pnc_id"),
    }


def recompute_terms(
    session: Session,
    store: PersonStore,
    indexer: BlindIndexer,
    record_ids: Collection[uuid.UUID],
) -> dict[uuid.UUID, list[IndexTerm]]:
    """Terms under ``indexer`` for these records, from their decrypted index groups.

    The records' rows are share-locked first, so an erasure either finished before (the
    record is skipped) or waits until this transaction has written, then deletes what it
    wrote. Records whose data key is gone give no terms.
    """
    live = list(
        session.scalars(
            select(SourceRecord.id)
            .where(
                SourceRecord.id == any_(bindparam("ids", list(record_ids), type_=ARRAY(Uuid))),
                SourceRecord.erased_at.is_(None),
            )
            .order_by(SourceRecord.id)
            .with_for_update(read=True)
        )
    )
    return {
        rid: indexer.terms_for(index_fields(record.groups))
        for rid, record in store.read(session, live, INDEX_GROUPS).items()
        if record.groups
    }


def reindex(
    db: Database,
    store: PersonStore,
    indexer: BlindIndexer,
    *,
    select_batch: RecordSelector,
    write: TermWriter,
    batch_size: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Recompute terms for every record ``select_batch`` yields, one transaction per batch,
    keyset-paginated by record id; returns how many records were visited.

    A job that owns its transactions: an interruption loses at most one batch, and a re-run
    (whose selector skips records already done) resumes.
    """
    after: uuid.UUID | None = None
    done = 0
    while True:
        with db.transaction() as session:
            ids = list(select_batch(session, after, batch_size))
            if not ids:
                return done
            write(session, recompute_terms(session, store, indexer, ids))
        after = ids[-1]
        done += len(ids)
        if progress is not None:
            progress(done)
