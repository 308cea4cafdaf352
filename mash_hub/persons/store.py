"""The encrypted person store: write, read (only the groups asked for), find, and erase.

Every source record gets its own data key. Its fields are stored as one AES-256-GCM ciphertext
per *field group* (the unit the access policy grants), bound to table, group, record id and
format version, so a caller that may see a group decrypts that group and nothing else. Blind
indexes make records findable without decrypting anything.

Services here never commit: the caller owns the transaction.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import (
    BigInteger,
    SmallInteger,
    String,
    Uuid,
    any_,
    bindparam,
    delete,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, aliased

from mash_hub.audit import AuditEvent
from mash_hub.audit import record as audit
from mash_hub.crypto.blind_index import BlindIndexer, IndexTerm
from mash_hub.crypto.errors import CryptoError
from mash_hub.crypto.keys import KeyProvider
from mash_hub.crypto.keystore import KeyStore
from mash_hub.crypto.models import DataKeyRow
from mash_hub.persons.models import (
    BlindIndexEntry,
    IndexRootState,
    Person,
    RecordFieldGroup,
    SourceRecord,
)

FIELD_TABLE = "record_field_groups"
# Records per batch of the bulk read (:meth:`PersonStore.stream_groups`).
STREAM_BATCH = 2_000

# The policy's unit of access. Agency-specific detail groups are named "details.<name>".
IDENTITY = "identity"
IDENTIFIERS = "identifiers"
CONTACT = "contact"
CORE_GROUPS = (IDENTITY, IDENTIFIERS, CONTACT)
DETAILS_PREFIX = "details."
# Values of the record that failed validation, raw, kept for correction (mash_hub.quality).
# Never shown by the person view, which shows only how many there are.
QUALITY = "quality"


class UnknownPersonError(LookupError):
    """No person with that id."""


class IndexRootChangedError(CryptoError):
    """Records were prepared under a blind-index root the database has since left (a root
    rotation switched meanwhile); preparing them again is safe."""


@dataclass(frozen=True)
class RootState:
    """Which blind-index roots the database is keyed by (fingerprints; None: not recorded)."""

    root: str | None
    pending: str | None


@dataclass(frozen=True)
class PendingValues:
    """A record's keyed values under the pending blind-index root, while a rotation runs."""

    root: str
    source_key: bytes
    content_hash: bytes | None
    index_terms: list[tuple[int, int]]


@dataclass(frozen=True)
class NewRecord:
    """One agency record to store.

    ``groups`` maps a field-group name to its fields (JSON-compatible values). ``index_fields``
    carries the values to blind-index (see :func:`mash_hub.crypto.blind_index.index_terms`).
    """

    feed: str
    source_agency: str
    source_record_id: str
    groups: Mapping[str, Mapping[str, Any]]
    index_fields: Mapping[str, Any]
    person_id: uuid.UUID | None = None
    version: int = 1
    batch_id: uuid.UUID | None = None
    # (field, reason code) of each value that failed validation (no values).
    issues: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class PreparedRecord:
    """A record encrypted and indexed, ready to write: ciphertexts, wrapped key, index values."""

    id: uuid.UUID
    feed: str
    source_agency: str
    source_key: bytes
    content_hash: bytes | None
    version: int
    person_id: uuid.UUID | None
    batch_id: uuid.UUID | None
    key_row: dict[str, object] | None
    sealed_groups: list[tuple[str, bytes]]
    index_terms: list[tuple[int, int]]
    # The same field-group and index rows in COPY text format (see :func:`_group_rows`):
    # formatted once, where the record is prepared (a worker process during ingestion), for
    # bulk writes; small writes send the rows above in one INSERT instead.
    group_rows: bytes
    index_rows: bytes
    issues: tuple[tuple[str, str], ...] = ()
    # Fingerprint of the blind-index root the keyed values above were computed under.
    root: str | None = None
    pending: PendingValues | None = None


@dataclass(frozen=True)
class CurrentVersion:
    """The current version of an agency record, as ingestion needs it to decide what changed."""

    id: uuid.UUID
    version: int
    content_hash: bytes | None
    person_id: uuid.UUID | None


@dataclass(frozen=True)
class ErasureReport:
    person_id: uuid.UUID
    records: int
    data_keys_destroyed: int
    index_entries_removed: int
    information_requests: int = 0  # of referrals the person is a subject of, shredded


@dataclass
class StoredRecord:
    """A record as a caller may see it: metadata plus only the decrypted groups requested."""

    id: uuid.UUID
    feed: str
    source_agency: str
    person_id: uuid.UUID | None
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)


def _check_group_name(name: str) -> None:
    if name in CORE_GROUPS or name == QUALITY:
        return
    if name.startswith(DETAILS_PREFIX) and len(name) > len(DETAILS_PREFIX) and len(name) <= 64:
        return
    raise ValueError(
        f"unknown field group {name!r}: use one of {', '.join(CORE_GROUPS)}, {QUALITY!r} or "
        "'details.<name>'"
    )


class PersonStore:
    """Reads and writes encrypted source records through one key store and one indexer."""

    def __init__(self, keys: KeyStore, indexer: BlindIndexer) -> None:
        self.keys = keys
        self.indexer = indexer
        # The root the database was last seen keyed by, while no rotation is pending.
        self._verified_root: str | None = None

    @classmethod
    def from_provider(cls, provider: KeyProvider) -> PersonStore:
        return cls(KeyStore(provider), BlindIndexer.from_provider(provider))

    # -- writing ----------------------------------------------------------------------------

    def add(self, session: Session, records: Sequence[NewRecord]) -> list[uuid.UUID]:
        """Encrypt, index and insert records in bulk (COPY); returns their new ids."""
        return self.write(session, [self.prepare(new) for new in records])

    def prepare(self, new: NewRecord) -> PreparedRecord:
        """The CPU half of :meth:`add`: data key, ciphertexts, index terms; no database.

        Safe to run in worker processes; the result holds no plaintext and no usable key.
        """
        for group in new.groups:
            _check_group_name(group)
        record_id = uuid.uuid4()
        key_row, sealed = self._seal(record_id, new.groups)
        # Fixed for this record, so a rotation switching meanwhile cannot mix two roots.
        current = self.indexer.current()
        pending_indexer = self.indexer.pending()
        pending = None
        if pending_indexer is not None:
            pending = PendingValues(
                root=pending_indexer.fingerprint,
                source_key=pending_indexer.source_key(new.feed, new.source_record_id),
                content_hash=pending_indexer.content_hash(_canonical(new)),
                index_terms=pending_indexer.term_rows(new.index_fields),
            )
        terms = self._index_terms(new.index_fields, current)
        return PreparedRecord(
            id=record_id,
            feed=new.feed,
            source_agency=new.source_agency,
            source_key=self._source_key(new.feed, new.source_record_id, current),
            content_hash=self.content_hash(new, current),
            version=new.version,
            person_id=new.person_id,
            batch_id=new.batch_id,
            key_row=key_row,
            sealed_groups=sealed,
            index_terms=terms,
            group_rows=_group_rows(record_id, sealed),
            index_rows=_index_rows(record_id, terms),
            issues=new.issues,
            root=current.fingerprint,
            pending=pending,
        )

    def align(self, session: Session) -> RootState:
        """Read which root the database is keyed by and let the indexer follow it (see
        :meth:`BlindIndexer.align`): call before computing values to search with.

        Read once per process while the keyring holds no pending root: the database can
        only switch to a pending root, and the keyring is re-checked on every call. (Each
        read cost about 0.35 ms on the development machine; a search takes 4-7 ms.)
        """
        if (
            self._verified_root is not None
            and self.indexer.pending_fingerprint is None
            and self.indexer.fingerprint == self._verified_root
        ):
            return RootState(self._verified_root, None)
        row = session.execute(
            select(IndexRootState.root_fingerprint, IndexRootState.pending_fingerprint).where(
                IndexRootState.id == 1
            )
        ).one_or_none()
        state = RootState(None, None) if row is None else RootState(row[0], row[1])
        self.indexer.align(state.root)
        if state.pending is None and self.indexer.pending_fingerprint is None:
            self._verified_root = self.indexer.fingerprint
        return state

    def fence(self, session: Session) -> RootState:
        """:meth:`align`, holding off a rotation's switch until this transaction ends.

        Writers of keyed values (records, referral idempotency keys) call this first: the
        switch locks ``blind_index`` exclusively, so it waits for them, and they, starting
        after it, see the switched state.
        """
        _hold_off_switch(session)
        return self.align(session)

    def resolve(self, session: Session, prepared: Iterable[PreparedRecord]) -> list[PreparedRecord]:
        """Prepared records with the keyed values of the database's current root.

        A record prepared just before a rotation's switch carries the pending root's values
        too, and uses those; raises :class:`IndexRootChangedError` for one that does not.
        """
        state = self.fence(session)
        return [_resolved(p, state) for p in prepared]

    def write(self, session: Session, prepared: Sequence[PreparedRecord]) -> list[uuid.UUID]:
        """The database half of :meth:`add`: bulk COPY in the caller's transaction."""
        if not prepared:
            return []
        state = self.fence(session)
        prepared = [_resolved(p, state) for p in prepared]
        self._check_persons_open(session, {p.person_id for p in prepared if p.person_id})
        self.keys.save(session, [p.key_row for p in prepared if p.key_row is not None])
        records = [
            (
                p.id,
                p.feed,
                p.source_agency,
                p.source_key,
                p.version,
                True,
                p.person_id,
                p.content_hash,
                p.batch_id,
            )
            for p in prepared
        ]
        # During a rotation, the pending root's rows too (the other bank of index ids).
        pending = [
            p for p in prepared if p.pending is not None and state.pending in (None, p.pending.root)
        ]
        if len(prepared) <= SMALL_WRITE:
            groups = [
                (p.id, group, ciphertext) for p in prepared for group, ciphertext in p.sealed_groups
            ]
            terms = [(i, v, p.id) for p in prepared for i, v in p.index_terms] + [
                (i, v, p.id)
                for p in pending
                if p.pending is not None
                for i, v in p.pending.index_terms
            ]
            _insert_small(session, records, groups, terms)
            return [p.id for p in prepared]
        cursor = session.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
        _copy(
            cursor,
            "source_records (id, feed, source_agency, source_key, version, is_current, person_id,"
            " content_hash, batch_id)",
            records,
        )
        _copy_text(
            cursor,
            f"{FIELD_TABLE} (record_id, group_name, ciphertext)",
            (p.group_rows for p in prepared),
        )
        _copy_text(
            cursor,
            "blind_index (index_id, value, record_id)",
            [p.index_rows for p in prepared]
            + [_index_rows(p.id, p.pending.index_terms) for p in pending if p.pending is not None],
        )
        return [p.id for p in prepared]

    def content_hash(self, new: NewRecord, indexer: BlindIndexer | None = None) -> bytes | None:
        """Keyed fingerprint of a record's standardised content (see :meth:`current_versions`)."""
        return self._content_hash(_canonical(new), indexer)

    def source_key(self, feed: str, source_record_id: str) -> bytes:
        return self._source_key(feed, source_record_id)

    def current_versions(
        self, session: Session, feed: str, source_keys: Collection[bytes]
    ) -> dict[bytes, CurrentVersion]:
        """The current version of each agency record already held, by source key."""
        if not source_keys:
            return {}
        rows = session.execute(
            select(
                SourceRecord.source_key,
                SourceRecord.id,
                SourceRecord.version,
                SourceRecord.content_hash,
                SourceRecord.person_id,
            ).where(
                SourceRecord.feed == feed,
                SourceRecord.is_current.is_(True),
                SourceRecord.source_key.in_(list(source_keys)),
            )
        ).all()
        return {
            bytes(key): CurrentVersion(rid, version, bytes(chash) if chash else None, person)
            for key, rid, version, chash, person in rows
        }

    def supersede(self, session: Session, record_ids: Collection[uuid.UUID]) -> None:
        """Mark records as replaced by a newer version; the old version stays as history."""
        if record_ids:
            session.execute(
                update(SourceRecord)
                .where(SourceRecord.id.in_(list(record_ids)))
                .values(is_current=False, superseded_at=func.now())
            )

    def _check_persons_open(self, session: Session, person_ids: set[uuid.UUID]) -> None:
        """Refuse records for unknown or erased persons; the key-share lock makes a concurrent
        erasure wait for this transaction (or this one wait for it)."""
        if not person_ids:
            return
        open_ids = set(
            session.scalars(
                select(Person.id)
                .where(Person.id.in_(person_ids), Person.erased_at.is_(None))
                .with_for_update(key_share=True)
            )
        )
        if missing := person_ids - open_ids:
            raise UnknownPersonError(
                f"{len(missing)} of the records name a person who does not exist or was erased"
            )

    # The three steps where protection happens, kept apart so the benchmark can measure the
    # same path with them replaced by plaintext equivalents.

    def _seal(
        self, record_id: uuid.UUID, groups: Mapping[str, Mapping[str, Any]]
    ) -> tuple[dict[str, object] | None, list[tuple[str, bytes]]]:
        """A new wrapped DEK for the record, and one ciphertext per field group."""
        issued = self.keys.issue(record_id)
        sealed = [
            (
                group,
                issued.cipher.encrypt_group(
                    dict(values), table=FIELD_TABLE, group=group, row_id=record_id
                ),
            )
            for group, values in groups.items()
        ]
        return issued.row, sealed

    def _source_key(
        self, feed: str, source_record_id: str, indexer: BlindIndexer | None = None
    ) -> bytes:
        return (indexer or self.indexer).source_key(feed, source_record_id)

    def _content_hash(self, canonical: bytes, indexer: BlindIndexer | None = None) -> bytes | None:
        return (indexer or self.indexer).content_hash(canonical)

    def _index_terms(
        self, index_fields: Mapping[str, Any], indexer: BlindIndexer | None = None
    ) -> list[tuple[int, int]]:
        return (indexer or self.indexer).term_rows(index_fields)

    def new_person(self, session: Session) -> uuid.UUID:
        person = Person(id=uuid.uuid4())
        session.add(person)
        session.flush()
        return person.id

    # -- reading ----------------------------------------------------------------------------

    def read(
        self, session: Session, record_ids: Collection[uuid.UUID], groups: Collection[str]
    ) -> dict[uuid.UUID, StoredRecord]:
        """Records with only ``groups`` fetched and decrypted; erased records have none.

        One statement joins each record to its wrapped data key and one ciphertext per
        group (it was three: records, ciphertexts, keys; a search or person view waited for
        each in turn)."""
        if not record_ids:
            return {}
        wanted = list(dict.fromkeys(groups))
        query = select(
            SourceRecord.id,
            SourceRecord.feed,
            SourceRecord.source_agency,
            SourceRecord.person_id,
        ).where(SourceRecord.id == _any_uuid("record_ids", record_ids))
        if not wanted:
            return {
                row.id: StoredRecord(row.id, row.feed, row.source_agency, row.person_id)
                for row in session.execute(query)
            }
        query = query.add_columns(DataKeyRow.kek_id, DataKeyRow.wrapped).outerjoin(
            DataKeyRow, DataKeyRow.owner_id == SourceRecord.id
        )
        for i, group in enumerate(wanted):
            joined = aliased(RecordFieldGroup, name=f"g{i}")
            query = query.add_columns(joined.ciphertext).outerjoin(
                joined,
                (joined.record_id == SourceRecord.id)
                & (joined.group_name == bindparam(f"group_{i}", group)),
            )
        rows = session.execute(query).all()
        return {record.id: record for record in self._open_joined(rows, wanted)}

    def stream_groups(
        self, session: Session, groups: Sequence[str], *, batch_size: int = STREAM_BATCH
    ) -> Iterator[list[StoredRecord]]:
        """Every current record with ``groups`` decrypted, in id order, ``batch_size`` at a
        time: the bulk read a full relink needs (the caller audits it, as for :meth:`read`).

        One statement joins each record to its wrapped data key and one ciphertext per group
        and is read through a server-side cursor, instead of :meth:`read`'s three queries per
        batch of ids; each batch's keys are unwrapped with one keyring check. A batch's
        plaintext lives only as long as the caller keeps it. Records whose data key was
        shredded come with no groups.
        """
        wanted = list(dict.fromkeys(groups))
        sql = _joined_groups_sql(wanted, lambda i: "%s", "TRUE")
        connection: Any = session.connection().connection.driver_connection
        name = f"stream_groups_{uuid.uuid4().hex}"
        with connection.cursor(name=name, binary=True) as cursor:
            cursor.itersize = batch_size
            cursor.execute(sql, wanted)
            while rows := cursor.fetchmany(batch_size):
                yield self._open_joined(rows, wanted)

    def _open_joined(self, rows: Sequence[Any], groups: Sequence[str]) -> list[StoredRecord]:
        """Decrypt the rows of :meth:`stream_groups`: (id, feed, agency, person, KEK id,
        wrapped key, one ciphertext per group)."""
        # Record ids as text once per record: the associated data holds their text form.
        ids = [str(row[0]) for row in rows]
        ciphers = self.keys.open_wrapped(
            (rid, row[4], row[5]) for rid, row in zip(ids, rows, strict=True) if row[5]
        )
        out = []
        for rid, row in zip(ids, rows, strict=True):
            record = StoredRecord(row[0], row[1], row[2], row[3])
            cipher = ciphers.get(rid)
            if cipher is not None:
                for group, ciphertext in zip(groups, row[6:], strict=True):
                    if ciphertext is not None:
                        record.groups[group] = cipher.decrypt_group(
                            bytes(ciphertext), table=FIELD_TABLE, group=group, row_id=rid
                        )
            out.append(record)
        return out

    def records_of_person(self, session: Session, person_id: uuid.UUID) -> list[uuid.UUID]:
        return list(
            session.scalars(
                select(SourceRecord.id)
                .where(SourceRecord.person_id == person_id)
                .order_by(SourceRecord.created_at, SourceRecord.id)
            )
        )

    # -- finding ----------------------------------------------------------------------------

    def candidates(
        self, session: Session, terms: Iterable[IndexTerm], *, require_all: bool = False
    ) -> set[uuid.UUID]:
        """Records whose blind index holds any (or every) term. Truncated indexes over-match:
        callers decrypt the candidates they may see and re-check them.

        The terms are joined as two arrays (``unnest``): one statement text whatever the
        number of terms, so it is prepared once; measured 4x faster than an ``OR`` of
        per-term conditions for one search and 29x for 100 records' terms at once
        (``benchmarks/bench_search.py``)."""
        wanted = list(dict.fromkeys(terms))
        if not wanted:
            return set()
        query = select(BlindIndexEntry.record_id).join(*_term_lookup(wanted))
        if require_all:
            query = query.group_by(BlindIndexEntry.record_id).having(
                func.count(func.distinct(func.row(BlindIndexEntry.index_id, BlindIndexEntry.value)))
                == len(wanted)
            )
        return set(session.scalars(query.distinct() if not require_all else query))

    def candidate_persons(self, session: Session, terms: Iterable[IndexTerm]) -> set[uuid.UUID]:
        """The persons of the current records whose blind index holds any of ``terms``: the
        look-up of :meth:`candidates` and the records' persons in one statement."""
        wanted = list(dict.fromkeys(terms))
        if not wanted:
            return set()
        return set(
            session.scalars(
                _CANDIDATE_PERSONS,
                {
                    "index_ids": [t.index_id for t in wanted],
                    "values": [t.value for t in wanted],
                },
            )
        )

    def read_persons(
        self, session: Session, person_ids: Collection[uuid.UUID], groups: Sequence[str]
    ) -> dict[uuid.UUID, StoredRecord]:
        """Every current record of these persons with only ``groups`` decrypted, in one
        statement (record, wrapped data key and one ciphertext per group joined, as
        :meth:`stream_groups` does); a shredded record comes with no groups."""
        if not person_ids:
            return {}
        wanted = list(dict.fromkeys(groups))
        statement = text(
            _joined_groups_sql(
                wanted, lambda i: f":g{i}", "s.person_id = ANY(CAST(:persons AS uuid[]))"
            )
        )
        parameters: dict[str, Any] = {f"g{i}": group for i, group in enumerate(wanted)}
        parameters["persons"] = sorted(person_ids)
        rows = session.execute(statement, parameters).all()
        return {record.id: record for record in self._open_joined(rows, wanted)}

    def current_candidates(
        self, session: Session, terms: Iterable[IndexTerm], sources: Collection[str]
    ) -> list[tuple[uuid.UUID, uuid.UUID, str]]:
        """(record, person, source) of the current, linked, unerased records in ``sources``
        whose blind index holds any of ``terms``: :meth:`candidates` and the look-up of
        those records in one statement (a search waited for two)."""
        wanted = list(dict.fromkeys(terms))
        if not wanted or not sources:
            return []
        rows = session.execute(
            select(SourceRecord.id, SourceRecord.person_id, SourceRecord.source_agency)
            .distinct()
            .select_from(BlindIndexEntry)
            .join(*_term_lookup(wanted))
            .join(SourceRecord, SourceRecord.id == BlindIndexEntry.record_id)
            .where(
                SourceRecord.is_current.is_(True),
                SourceRecord.erased_at.is_(None),
                SourceRecord.person_id.is_not(None),
                SourceRecord.source_agency
                == any_(bindparam("sources", sorted(sources), type_=ARRAY(String))),
            )
        ).all()
        return [(rid, person, source) for rid, person, source in rows if person is not None]

    # -- erasure ----------------------------------------------------------------------------

    def erase_person(
        self, session: Session, person_id: uuid.UUID, *, actor: str, reason: str
    ) -> ErasureReport:
        """Crypto-shred every record of a person and remove their index entries.

        The ``persons`` and ``source_records`` rows stay as tombstones (ids and dates only), so
        the audit entries that name them keep meaning; nothing personal remains readable.
        """
        # First the rotation's lock, then the records' rows: a re-index batch holding some of
        # them finishes first (its rows, of either bank, are deleted below), or sees them
        # erased. No
        # root check: erasing needs no key, and must work on a restored pre-rotation copy.
        _hold_off_switch(session)
        person = session.get(Person, person_id, with_for_update=True)
        if person is None:
            raise UnknownPersonError(f"no person with id {person_id}")
        record_ids = self.records_of_person(session, person_id)
        session.execute(
            select(SourceRecord.id)
            .where(SourceRecord.id == _any_uuid("locked_ids", record_ids))
            .with_for_update()
        )
        # Free-text purposes and break-glass justifications about the person may name them.
        # (Imported here: the access-policy and matching packages build on this module.)
        from mash_hub.authz.models import AccessJustification  # noqa: PLC0415
        from mash_hub.matching.models import LinkDecision  # noqa: PLC0415

        justifications = list(
            session.scalars(
                select(AccessJustification.id).where(AccessJustification.person_id == person_id)
            )
        )
        # Reviewers' reasons about links of the person's records may name them too.
        decisions = list(
            session.scalars(
                select(LinkDecision.id).where(
                    LinkDecision.record_id_l.in_(record_ids)
                    | LinkDecision.record_id_r.in_(record_ids)
                )
            )
        )
        # Information requests about a referral the person is a subject of: the question and
        # the answer may be about any of its subjects, so their text is wiped and each
        # request's own key goes too.
        from mash_hub.referrals.requests import erase_for_records  # noqa: PLC0415

        information_requests = erase_for_records(session, record_ids)
        destroyed = self.keys.shred(
            session, [*record_ids, *justifications, *decisions, *information_requests]
        )
        removed = 0
        if record_ids:
            result = session.execute(
                delete(BlindIndexEntry).where(BlindIndexEntry.record_id.in_(record_ids))
            )
            removed = int(getattr(result, "rowcount", 0) or 0)
            session.execute(
                delete(RecordFieldGroup).where(RecordFieldGroup.record_id.in_(record_ids))
            )
            now = dt.datetime.now(dt.UTC)
            session.execute(
                update(SourceRecord),
                [
                    # A random source key: the agency's id no longer points at this tombstone.
                    {"id": rid, "erased_at": now, "is_current": False, "source_key": os.urandom(32)}
                    for rid in record_ids
                ],
            )
        person.erased_at = dt.datetime.now(dt.UTC)
        report = ErasureReport(
            person_id, len(record_ids), destroyed, removed, len(information_requests)
        )
        audit(
            session,
            AuditEvent(
                actor=actor,
                action="person.erase",
                subject_type="person",
                subject_id=str(person_id),
                details={
                    "reason": reason,
                    "records": report.records,
                    "data_keys_destroyed": destroyed,
                    "index_entries_removed": removed,
                    "information_requests": sorted(str(i) for i in information_requests),
                },
            ),
        )
        return report


_FENCED = "mash_hub.blind_index_fenced"


def _hold_off_switch(session: Session) -> None:
    """Conflicts only with a root rotation's switch (``EXCLUSIVE`` on ``blind_index``).

    Once per transaction: a lock taken outside a savepoint is held until the transaction
    ends, so a writer that fences, then writes (a referral) sends the statement once. One
    taken inside a savepoint is not remembered (rolling the savepoint back releases it).
    """
    transaction = session.get_transaction()
    if transaction is not None and session.info.get(_FENCED) is transaction:
        return
    session.execute(text("LOCK TABLE blind_index IN ROW EXCLUSIVE MODE"))
    if not session.in_nested_transaction():
        session.info[_FENCED] = session.get_transaction()


# The candidate look-up joined to the records' persons (current, not erased, linked).
_CANDIDATE_PERSONS = text(
    "SELECT DISTINCT s.person_id FROM blind_index b"
    " JOIN unnest(CAST(:index_ids AS smallint[]), CAST(:values AS bigint[])) AS t(index_id, value)"
    " ON b.index_id = t.index_id AND b.value = t.value"
    " JOIN source_records s ON s.id = b.record_id"
    " WHERE s.is_current AND s.erased_at IS NULL AND s.person_id IS NOT NULL"
)


def _canonical(new: NewRecord) -> bytes:
    return json.dumps(
        new.groups, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    ).encode("utf-8")


def _resolved(prepared: PreparedRecord, state: RootState) -> PreparedRecord:
    """``prepared`` with the keyed values of the database's current root (see resolve)."""
    if state.root is None or prepared.root is None or prepared.root == state.root:
        return prepared
    pending = prepared.pending
    if pending is not None and pending.root == state.root:
        return replace(
            prepared,
            root=pending.root,
            source_key=pending.source_key,
            content_hash=pending.content_hash,
            index_terms=pending.index_terms,
            index_rows=_index_rows(prepared.id, pending.index_terms),
            pending=None,
        )
    raise IndexRootChangedError(
        "the blind-index root changed while these records were prepared (a root rotation "
        "switched); prepare them again"
    )


# A write of this many records or fewer (a referral's subjects, a correction) is one INSERT
# statement into the three tables instead of three COPYs (two round trips each).
SMALL_WRITE = 20
# The foreign keys of field groups and index rows are checked at the end of the statement,
# when the records inserted beside them exist.
_INSERT_SMALL = text(
    "WITH records AS (INSERT INTO source_records (id, feed, source_agency, source_key, version,"
    " is_current, person_id, content_hash, batch_id)"
    " SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:feeds AS varchar[]),"
    " CAST(:agencies AS varchar[]), CAST(:source_keys AS bytea[]), CAST(:versions AS integer[]),"
    " CAST(:current AS boolean[]), CAST(:persons AS uuid[]), CAST(:hashes AS bytea[]),"
    " CAST(:batches AS uuid[]))),"
    " groups AS (INSERT INTO record_field_groups (record_id, group_name, ciphertext)"
    " SELECT * FROM unnest(CAST(:group_records AS uuid[]), CAST(:group_names AS varchar[]),"
    " CAST(:ciphertexts AS bytea[])))"
    " INSERT INTO blind_index (index_id, value, record_id)"
    " SELECT * FROM unnest(CAST(:index_ids AS smallint[]), CAST(:index_values AS bigint[]),"
    " CAST(:index_records AS uuid[]))"
)


def _joined_groups_sql(groups: Sequence[str], placeholder: Callable[[int], str], where: str) -> str:
    """One statement joining each current, unerased record matching ``where`` to its wrapped
    data key and one ciphertext per group (the shape :meth:`PersonStore._open_joined` reads).

    Only numbered aliases and the placeholders are formatted in; group names are parameters
    (checked here too, so a caller cannot slip one in)."""
    for group in groups:
        _check_group_name(group)
    columns = "".join(f", g{i}.ciphertext" for i in range(len(groups)))
    joins = "".join(
        f" LEFT JOIN {FIELD_TABLE} g{i} ON g{i}.record_id = s.id"
        f" AND g{i}.group_name = {placeholder(i)}"
        for i in range(len(groups))
    )
    return (
        "SELECT s.id, s.feed, s.source_agency, s.person_id, k.kek_id, k.wrapped"  # noqa: S608
        f"{columns} FROM source_records s LEFT JOIN data_keys k ON k.owner_id = s.id{joins}"
        f" WHERE {where} AND s.is_current AND s.erased_at IS NULL ORDER BY s.id"
    )


def _insert_small(
    session: Session,
    records: list[tuple[Any, ...]],
    groups: list[tuple[Any, ...]],
    terms: list[tuple[Any, ...]],
) -> None:
    """Records, their field groups and their index rows in one statement (rows as columns)."""

    def column(rows: list[tuple[Any, ...]], i: int) -> list[Any]:
        return [row[i] for row in rows]

    names = ("ids", "feeds", "agencies", "source_keys", "versions", "current", "persons")
    parameters = {name: column(records, i) for i, name in enumerate(names)}
    parameters |= {"hashes": column(records, 7), "batches": column(records, 8)}
    parameters |= {
        "group_records": column(groups, 0),
        "group_names": column(groups, 1),
        "ciphertexts": column(groups, 2),
        "index_ids": column(terms, 0),
        "index_values": column(terms, 1),
        "index_records": column(terms, 2),
    }
    session.execute(_INSERT_SMALL, parameters)


def _copy(cursor: Any, target: str, rows: list[tuple[Any, ...]]) -> None:
    if not rows:
        return
    with cursor.copy(f"COPY {target} FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _term_lookup(terms: Sequence[IndexTerm]) -> tuple[Any, Any]:
    """The join of ``blind_index`` to ``terms`` passed as two arrays (``unnest``): one
    statement text whatever the number of terms, so it is prepared once."""
    lookup = (
        func.unnest(
            bindparam("index_ids", [t.index_id for t in terms], type_=ARRAY(SmallInteger)),
            bindparam("values", [t.value for t in terms], type_=ARRAY(BigInteger)),
        )
        .table_valued("index_id", "value")
        .render_derived()
    )
    return lookup, (BlindIndexEntry.index_id == lookup.c.index_id) & (
        BlindIndexEntry.value == lookup.c.value
    )


def _copy_text(cursor: Any, target: str, blocks: Iterable[bytes]) -> None:
    """COPY rows already in text format (one serialisation per record, done where it was
    prepared), sent in blocks of about a megabyte."""
    data = b"".join(blocks)
    if not data:
        return
    with cursor.copy(f"COPY {target} FROM STDIN") as copy:
        view = memoryview(data)
        for start in range(0, len(data), 1 << 20):
            copy.write(view[start : start + (1 << 20)])


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _group_rows(record_id: uuid.UUID, sealed: Sequence[tuple[str, bytes]]) -> bytes:
    """``record_field_groups`` rows in COPY text format (bytea as hex)."""
    rid = str(record_id)
    return "".join(
        f"{rid}\t{group.translate(_COPY_ESCAPES)}\t\\\\x{ciphertext.hex()}\n"
        for group, ciphertext in sealed
    ).encode("utf-8")


def _index_rows(record_id: uuid.UUID, terms: Iterable[tuple[int, int]]) -> bytes:
    """``blind_index`` rows in COPY text format."""
    rid = str(record_id)
    return "".join(f"{index_id}\t{value}\t{rid}\n" for index_id, value in terms).encode("ascii")


def _any_uuid(name: str, ids: Collection[uuid.UUID]) -> Any:
    """``= ANY(:name)`` with one array parameter: any number of ids (an IN list stops at
    65,535 bind parameters, which an incremental batch against a 1M-record index exceeds)."""
    return any_(bindparam(name, list(ids), type_=ARRAY(Uuid)))
