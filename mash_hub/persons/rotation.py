"""Online rotation of the blind-index root secret (``mash-hub keys rotate-index-root``).

The hub keeps serving throughout. Steps, each safe to interrupt and repeat:

1. **Begin.** A random pending root goes into the keyring; ``index_root_state`` records the
   current root's fingerprint (if not yet) and the pending one's. Every process notices the
   pending root on its next key operation (the keyring is re-read when it changes), and
   from then on :meth:`PersonStore.write` also writes each new record's terms under it. The
   pending root's rows live in ``blind_index`` itself under the other *bank* of index ids
   (spec id, or spec id + 100: :mod:`mash_hub.crypto.blind_index`), so searches under the
   current root never see them.
2. **Backfill.** :func:`mash_hub.persons.reindex.reindex` decrypts the index groups of every
   record that has rows in the current bank and none in the pending one, and writes its
   terms under the pending root, one committed batch at a time.
3. **Switch**, one transaction: ``LOCK TABLE blind_index IN EXCLUSIVE MODE`` (searches keep
   reading; writers, who take the lock's row-exclusive mode first through
   :meth:`PersonStore.fence`, wait), re-index the records still missing from the pending
   bank, wrap every stored full-length keyed hash once under the pending root, and record
   the switch in ``index_root_state``. Nothing is copied: from the commit on, searches use
   the pending root, whose rows are already there.
4. **Finish.** The keyring makes the pending root current and keeps the old one in its
   ``index_root_previous`` chain (the full-length hashes still start from the oldest root);
   then the old bank's rows are deleted in committed batches.

Between 3 and 4 a process whose keyring still shows the old root as current sees from
``index_root_state`` that the database has switched and uses the pending root
(:meth:`BlindIndexer.align`), so nothing is searched or written under a root the indexes
have left; a run interrupted there only has step 4 left.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    LargeBinary,
    SmallInteger,
    String,
    Uuid,
    bindparam,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from mash_hub.audit import AuditEvent
from mash_hub.audit import record as audit
from mash_hub.crypto.blind_index import (
    BANK_OFFSET,
    CONTENT_HASH,
    SOURCE_KEY,
    BlindIndexer,
    IndexTerm,
)
from mash_hub.crypto.errors import IndexRootMismatchError, KeyConfigError
from mash_hub.crypto.keys import (
    EnvKeyProvider,
    KeyProvider,
    LocalKeyringProvider,
    index_root_fingerprint,
    index_roots_of,
)
from mash_hub.db.engine import Database
from mash_hub.persons.models import IndexRootState, SourceRecord
from mash_hub.persons.reindex import INDEX_GROUPS, recompute_terms, reindex
from mash_hub.persons.store import PersonStore

__all__ = [
    "RotationReport",
    "backfill",
    "begin",
    "clean_up",
    "finish",
    "rotate_index_root",
    "status",
    "switch",
]

WRAP_BATCH = 5_000
SYSTEM_ACTOR = "system:rotate-index-root"


@dataclass
class RotationReport:
    """What a run did: fingerprints of the old and new roots and counts, nothing personal."""

    previous_root: str
    root: str
    generation: int = 0
    resumed: bool = False
    backfilled: int = 0
    swept: int = 0
    keyed_hashes_wrapped: int = 0
    old_rows_deleted: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _state(session: Session) -> IndexRootState:
    row = session.get(IndexRootState, 1, with_for_update=True)
    if row is None:  # a database migrated without the seed row (never in practice)
        row = IndexRootState(id=1, generation=0)
        session.add(row)
        session.flush()
    return row


def _keyring(provider: KeyProvider) -> LocalKeyringProvider:
    if isinstance(provider, LocalKeyringProvider):
        return provider
    if isinstance(provider, EnvKeyProvider):
        raise KeyConfigError(
            "the blind-index root comes from MASH_INDEX_ROOT_KEY, which the hub cannot change "
            "under running processes, so it cannot be rotated online with keys from the "
            "environment. Rotate with the local keyring instead: set MASH_KEY_PROVIDER=keyring "
            "and MASH_KEYRING_PATH to a keyring file (mode 0600) holding these keys, for every "
            "hub process and for this command"
        )
    raise KeyConfigError(
        f"the {provider.name} key provider cannot hold a pending blind-index root; "
        "online rotation of the root needs the local keyring"
    )


def begin(db: Database, provider: KeyProvider) -> RotationReport:
    """Step 1 (or find out how far an earlier run got). Refuses a keyring whose roots are
    not the ones the database is keyed by."""
    keyring = _keyring(provider)
    with db.transaction() as session:
        state = _state(session)
        roots = index_roots_of(keyring)
        current = index_root_fingerprint(roots.current)
        if state.root_fingerprint is None:
            state.root_fingerprint = current
        if roots.pending is not None and state.root_fingerprint == index_root_fingerprint(
            roots.pending
        ):
            # Switched in an earlier run; only the keyring is left to finish.
            return RotationReport(current, state.root_fingerprint, state.generation, True)
        if state.root_fingerprint != current:
            raise IndexRootMismatchError(
                f"the database's blind indexes are keyed by root {state.root_fingerprint}, "
                f"the keyring's current root is {current}: is this the keyring this database "
                "was built with?"
            )
        resumed = roots.pending is not None
        if not resumed:
            keyring.begin_index_root_rotation()
            roots = index_roots_of(keyring)
        assert roots.pending is not None
        pending = index_root_fingerprint(roots.pending)
        if state.pending_fingerprint != pending:
            # The pending bank may hold rows of an older root (a cleanup that did not
            # finish, a keyring restored from a backup): out with them. Rows writers already
            # added under this pending root go too, and the backfill writes them again.
            low, high = _pending_indexer_of(keyring).bank
            session.execute(
                text("DELETE FROM blind_index WHERE index_id BETWEEN :low AND :high"),
                {"low": low, "high": high},
            )
            state.pending_fingerprint = pending
        return RotationReport(current, pending, state.generation, resumed)


def _selector(
    pending: tuple[int, int],
) -> Callable[[Session, uuid.UUID | None, int], Sequence[uuid.UUID]]:
    """Records with index rows under the current root and none yet under the pending one
    (``pending``: its bank of index ids; begin emptied that bank of any other root's rows)."""

    def missing(session: Session, after: uuid.UUID | None, limit: int) -> Sequence[uuid.UUID]:
        return list(
            session.scalars(
                text(
                    # Any row will do for the outer scan (it walks the record_id index): the
                    # pending bank's own rows are excluded by the NOT EXISTS.
                    "SELECT DISTINCT b.record_id FROM blind_index b"
                    " WHERE (CAST(:after AS uuid) IS NULL OR b.record_id > :after)"
                    " AND NOT EXISTS (SELECT 1 FROM blind_index n"
                    " WHERE n.record_id = b.record_id"
                    " AND n.index_id BETWEEN :pending_low AND :pending_high)"
                    " ORDER BY b.record_id LIMIT :limit"
                ),
                {
                    "pending_low": pending[0],
                    "pending_high": pending[1],
                    "after": after,
                    "limit": limit,
                },
            )
        )

    return missing


def _write_terms(session: Session, terms: Mapping[uuid.UUID, list[IndexTerm]]) -> None:
    """Add index rows (a writer may have added some of the same meanwhile)."""
    rows = [(t.index_id, t.value, rid) for rid, record_terms in terms.items() for t in record_terms]
    if not rows:
        return
    session.execute(
        text(
            "INSERT INTO blind_index (index_id, value, record_id)"
            " SELECT * FROM unnest(:index_ids, :values, :record_ids)"
            " ON CONFLICT DO NOTHING"
        ).bindparams(
            bindparam("index_ids", [r[0] for r in rows], type_=ARRAY(SmallInteger)),
            bindparam("values", [r[1] for r in rows], type_=ARRAY(BigInteger)),
            bindparam("record_ids", [r[2] for r in rows], type_=ARRAY(Uuid)),
        )
    )


def _pending_indexer_of(provider: KeyProvider) -> BlindIndexer:
    pending = BlindIndexer.from_provider(provider).pending()
    assert pending is not None
    return pending


def _pending_indexer(store: PersonStore) -> BlindIndexer:
    pending = store.indexer.pending()
    if pending is None:
        raise KeyConfigError("no pending blind-index root: run the rotation's first step")
    return pending


def backfill(
    db: Database,
    store: PersonStore,
    *,
    batch_size: int = 1000,
    progress: Callable[[int, int], None] | None = None,
    actor: str = SYSTEM_ACTOR,
) -> int:
    """Step 2: index under the pending root every record not yet indexed under it; each
    batch's decryption is audited in its transaction (record count only)."""
    indexer = _pending_indexer(store)
    missing = _selector(indexer.bank)

    def write(session: Session, terms: Mapping[uuid.UUID, list[IndexTerm]]) -> None:
        _write_terms(session, terms)
        audit(
            session,
            AuditEvent(
                actor,
                "keys.rotate_index_root.reindex",
                "index_root",
                indexer.fingerprint,
                {"records": len(terms), "groups": list(INDEX_GROUPS)},
            ),
        )

    with db.transaction() as session:
        low, high = store.indexer.bank
        pending_low, pending_high = indexer.bank
        total = int(
            session.scalar(
                text(
                    "SELECT count(DISTINCT b.record_id) FROM blind_index b"
                    " WHERE b.index_id BETWEEN :low AND :high AND NOT EXISTS"
                    " (SELECT 1 FROM blind_index n WHERE n.record_id = b.record_id"
                    " AND n.index_id BETWEEN :pending_low AND :pending_high)"
                ),
                {
                    "low": low,
                    "high": high,
                    "pending_low": pending_low,
                    "pending_high": pending_high,
                },
            )
            or 0
        )
    if progress is not None:
        progress(0, total)
    return reindex(
        db,
        store,
        indexer,
        select_batch=missing,
        write=write,
        batch_size=batch_size,
        progress=None if progress is None else (lambda done: progress(done, max(total, done))),
    )


def _wrap_source_records(session: Session, indexer: BlindIndexer) -> int:
    """Wrap every source key and content hash once under the pending root."""
    after: uuid.UUID | None = None
    wrapped = 0
    while True:
        query = select(SourceRecord.id, SourceRecord.source_key, SourceRecord.content_hash)
        if after is not None:
            query = query.where(SourceRecord.id > after)
        rows = session.execute(query.order_by(SourceRecord.id).limit(WRAP_BATCH)).all()
        if not rows:
            return wrapped
        session.execute(
            text(
                "UPDATE source_records s SET source_key = v.source_key,"
                " content_hash = v.content_hash"
                " FROM unnest(:ids, :source_keys, :content_hashes)"
                " AS v(id, source_key, content_hash) WHERE s.id = v.id"
            ).bindparams(
                bindparam("ids", [r[0] for r in rows], type_=ARRAY(Uuid)),
                bindparam(
                    "source_keys",
                    [indexer.wrap_for_pending(SOURCE_KEY, bytes(r[1])) for r in rows],
                    type_=ARRAY(LargeBinary),
                ),
                bindparam(
                    "content_hashes",
                    [
                        None
                        if r[2] is None
                        else indexer.wrap_for_pending(CONTENT_HASH, bytes(r[2]))
                        for r in rows
                    ],
                    type_=ARRAY(LargeBinary),
                ),
            )
        )
        wrapped += len(rows) + sum(r[2] is not None for r in rows)
        after = rows[-1][0]


def _wrap_idempotency_keys(session: Session, indexer: BlindIndexer) -> int:
    """Wrap the referral idempotency-key and request hashes (both content hashes); the
    table holds a day of keys, so one statement."""
    rows = session.execute(
        text("SELECT principal, key_hash, request_hash FROM referral_idempotency_keys")
    ).all()
    if not rows:
        return 0
    session.execute(
        text(
            "UPDATE referral_idempotency_keys r SET key_hash = v.new_key,"
            " request_hash = v.new_request"
            " FROM unnest(:principals, :old_keys, :new_keys, :new_requests)"
            " AS v(principal, old_key, new_key, new_request)"
            " WHERE r.principal = v.principal AND r.key_hash = v.old_key"
        ).bindparams(
            bindparam("principals", [r[0] for r in rows], type_=ARRAY(String)),
            bindparam("old_keys", [bytes(r[1]) for r in rows], type_=ARRAY(LargeBinary)),
            bindparam(
                "new_keys",
                [indexer.wrap_for_pending(CONTENT_HASH, bytes(r[1])) for r in rows],
                type_=ARRAY(LargeBinary),
            ),
            bindparam(
                "new_requests",
                [indexer.wrap_for_pending(CONTENT_HASH, bytes(r[2])) for r in rows],
                type_=ARRAY(LargeBinary),
            ),
        )
    )
    return 2 * len(rows)


def switch(
    db: Database,
    store: PersonStore,
    report: RotationReport,
    *,
    batch_size: int,
    actor: str = SYSTEM_ACTOR,
) -> bool:
    """Step 3 in one transaction, audited in it; False if an earlier run already switched."""
    indexer = store.indexer
    pending = _pending_indexer(store)
    with db.transaction() as session:
        # Writers take ROW EXCLUSIVE on blind_index first (PersonStore.fence): they finish
        # before this, or wait for it; readers (searches) are not blocked.
        session.execute(text("LOCK TABLE blind_index IN EXCLUSIVE MODE"))
        state = _state(session)
        if state.root_fingerprint == pending.fingerprint:
            return False
        if state.root_fingerprint != indexer.fingerprint:
            raise IndexRootMismatchError(
                f"the database is keyed by root {state.root_fingerprint}, not by the keyring's "
                f"current root {indexer.fingerprint}"
            )
        missing = _selector(pending.bank)
        after: uuid.UUID | None = None
        while ids := missing(session, after, batch_size):
            _write_terms(session, recompute_terms(session, store, pending, ids))
            report.swept += len(ids)
            after = ids[-1]
        report.keyed_hashes_wrapped = _wrap_source_records(session, indexer) + (
            _wrap_idempotency_keys(session, indexer)
        )
        state.generation += 1
        state.root_fingerprint = pending.fingerprint
        state.pending_fingerprint = None
        state.switched_at = func.now()
        report.generation = state.generation
        audit(
            session,
            AuditEvent(
                actor,
                "keys.rotate_index_root.switch",
                "index_root",
                pending.fingerprint,
                {
                    "previous_root": indexer.fingerprint,
                    "generation": state.generation,
                    "swept": report.swept,
                    "keyed_hashes_wrapped": report.keyed_hashes_wrapped,
                },
            ),
        )
    return True


def status(session: Session, provider: KeyProvider) -> dict[str, Any]:
    """Fingerprints and counts for ``mash-hub keys status``; ``unfinished`` when a rotation
    has begun and not finished (in the keyring or in the database)."""
    roots = index_roots_of(provider)
    row = session.get(IndexRootState, 1)
    pending = None if roots.pending is None else index_root_fingerprint(roots.pending)
    database_pending = None if row is None else row.pending_fingerprint
    return {
        "current": index_root_fingerprint(roots.current),
        "previous_roots": len(roots.previous),
        "pending": pending,
        "database_root": None if row is None else row.root_fingerprint,
        "database_pending": database_pending,
        "generation": 0 if row is None else row.generation,
        "unfinished": pending is not None or database_pending is not None,
    }


def finish(provider: KeyProvider, fingerprint: str) -> bool:
    """Step 4: the keyring makes the switched-to root current (idempotent)."""
    return _keyring(provider).finish_index_root_rotation(fingerprint)


def clean_up(db: Database, store: PersonStore, *, batch_size: int = 50_000) -> int:
    """Delete the index rows of the bank the current root does not use, in committed
    batches; returns how many. Only while no rotation is pending (then that bank is the
    pending root's)."""
    if store.indexer.pending() is not None:
        return 0
    current_low, _ = store.indexer.bank
    low = 1 if current_low > 1 else 1 + BANK_OFFSET
    high = low + BANK_OFFSET - 2
    removed = 0
    while True:
        with db.transaction() as session:
            result = session.execute(
                text(
                    "DELETE FROM blind_index WHERE ctid = ANY (ARRAY(SELECT ctid FROM blind_index"
                    " WHERE index_id BETWEEN :low AND :high LIMIT :limit))"
                ),
                {"low": low, "high": high, "limit": batch_size},
            )
            count = int(getattr(result, "rowcount", 0) or 0)
        removed += count
        if count == 0:
            return removed


def rotate_index_root(
    db: Database,
    store: PersonStore,
    provider: KeyProvider,
    *,
    batch_size: int = 1000,
    progress: Callable[[int, int], None] | None = None,
    actor: str = SYSTEM_ACTOR,
) -> RotationReport:
    """All four steps; a run after an interruption finishes the rotation it started."""
    report = begin(db, provider)
    # The keyring may have just changed: let the store's indexer see the pending root.
    with db.transaction() as session:
        store.align(session)
    if store.indexer.pending() is not None:
        report.backfilled = backfill(
            db, store, batch_size=batch_size, progress=progress, actor=actor
        )
        switch(db, store, report, batch_size=batch_size, actor=actor)
    with db.transaction() as session:
        report.generation = _state(session).generation
    finish(provider, report.root)
    with db.transaction() as session:
        store.align(session)
    report.old_rows_deleted = clean_up(db, store)
    return report
