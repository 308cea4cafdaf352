"""Online rotation of the blind-index root: searches, re-sent records and referral retries
behave the same after it, records written during it are found, an interruption at any step
is finished by the next run, and no value under the old root survives."""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from mash_hub.authz.policy import AccessPolicy, Caller
from mash_hub.authz.versions import publish
from mash_hub.casework.search import search_persons, standardise_query
from mash_hub.casework.view import Purpose
from mash_hub.crypto.blind_index import BlindIndexer
from mash_hub.crypto.errors import KeyConfigError
from mash_hub.crypto.keys import (
    EnvKeyProvider,
    IndexRoots,
    LocalKeyringProvider,
    index_root_fingerprint,
)
from mash_hub.db.engine import Database
from mash_hub.matching.model import LinkageModel, shipped_model_path
from mash_hub.persons import rotation
from mash_hub.persons.backfill import BackfillRefusedError, backfill_index
from mash_hub.persons.models import BlindIndexEntry, IndexRootState
from mash_hub.persons.reindex import INDEX_GROUPS, index_fields, reindex
from mash_hub.persons.store import IndexRootChangedError, PersonStore
from mash_hub.referrals import service as referrals
from tests.authz.conftest import BASELINE
from tests.persons.conftest import person_record
from tests.referrals.conftest import PARTNER, referral

MODEL = LinkageModel.load(shipped_model_path())
PURPOSE = Purpose(code="mash_triage", text="Triage of contact C-2048 received today")
SOCIAL_WORKER = Caller("sw.1", "social_worker", "social_care")
NOW = dt.datetime(2026, 3, 10, 14, 10, tzinfo=dt.UTC)

GIVEN = ["Amelia", "Oliver", "Zofia", "Ibrahim", "Grace", "Dylan", "Aisha", "Kacper", "Evie"]
FAMILY = ["Nowak", "Patel", "Hughes", "Begum", "O'Connor", "Walsh", "Ahmed", "Clarke", "Shaw"]
POSTCODES = ["LS6 2QT", "LS7 1AB", "LS8 3DE", "BD1 1AA", "M1 1AE"]
QUERIES = [
    {"given_name": "Robert", "family_name": "Kowalski", "date_of_birth": "2012-03-04"},
    {"given_name": "Bob", "family_name": "Kowalksi", "postcode": "ls6 2qt"},
    {"nhs_number": "943 476 5919"},
    {"family_name": "Nowak", "date_of_birth": "2010-01-01"},
    {"given_name": "Grace", "family_name": "Hughes", "postcode": "LS7 1AB"},
]


def _person(session: Session, store: PersonStore, source: str, **values: object) -> uuid.UUID:
    person = store.new_person(session)
    store.add(session, [person_record(source, person_id=person, **values)])  # type: ignore[arg-type]
    return person


def _seed(db: Database, store: PersonStore, count: int = 40) -> uuid.UUID:
    """Robert, and ``count`` other synthetic people; returns Robert's person id."""
    rng = random.Random(11)
    with db.transaction() as session:
        publish(session, BASELINE, actor="test:publisher")
        robert = _person(
            session,
            store,
            "SC-ROBERT",
            given="Robert",
            family="Kowalski",
            dob=dt.date(2012, 3, 4),
            nhs="9434765919",
        )
        for i in range(count):
            _person(
                session,
                store,
                f"SC-{i}",
                given=rng.choice(GIVEN),
                family=rng.choice(FAMILY),
                dob=dt.date(2005, 1, 1) + dt.timedelta(days=rng.randrange(5000)),
                postcode=rng.choice(POSTCODES),
                nhs=None,
            )
    return robert


def _search(db: Database, store: PersonStore, fields: dict[str, str]) -> list[uuid.UUID]:
    with db.transaction() as session:
        result = search_persons(
            session,
            store,
            AccessPolicy(),
            SOCIAL_WORKER,
            standardise_query(fields),
            PURPOSE,
            MODEL,
        )
    return [hit.person_id for hit in result.results]


def _searches(db: Database, store: PersonStore) -> list[list[uuid.UUID]]:
    return [_search(db, store, query) for query in QUERIES]


def _index_rows(db: Database, *, bank: int | None = None) -> set[tuple[int, int, uuid.UUID]]:
    """Every blind-index row, or those of one bank of index ids (0: 1-99, 1: 101-199)."""
    query = select(BlindIndexEntry.index_id, BlindIndexEntry.value, BlindIndexEntry.record_id)
    if bank is not None:
        query = query.where(BlindIndexEntry.index_id.between(100 * bank + 1, 100 * bank + 99))
    with db.transaction() as session:
        rows = session.execute(query).all()
    return {(index_id, value, record_id) for index_id, value, record_id in rows}


def _expected_rows(
    db: Database, store: PersonStore, indexer: BlindIndexer
) -> set[tuple[int, int, uuid.UUID]]:
    """Every live record's terms recomputed under ``indexer``."""
    with db.transaction() as session:
        ids = list(session.scalars(text("SELECT id FROM source_records WHERE erased_at IS NULL")))
        records = store.read(session, ids, INDEX_GROUPS)
    return {
        (term.index_id, term.value, rid)
        for rid, record in records.items()
        for term in indexer.terms_for(index_fields(record.groups))
    }


def _state(db: Database) -> IndexRootState:
    with db.transaction() as session:
        state = session.get(IndexRootState, 1)
        assert state is not None
        session.expunge(state)
        return state


def test_rotation_keeps_searches_source_keys_and_referral_retries(
    committing_database: Database, keyring: LocalKeyringProvider, store: PersonStore
) -> None:
    db = committing_database
    robert = _seed(db, store)
    with db.transaction() as session:
        first = referrals.submit(
            session,
            store,
            AccessPolicy().for_session(session),
            PARTNER,
            referral(),
            idempotency_key="retry-7",
            model=None,
            now=NOW,
        )
    before = _searches(db, store)
    assert before[0][0] == robert and before[2] == [robert]
    old_root = keyring.index_roots().current
    old_rows = _index_rows(db)

    progress: list[tuple[int, int]] = []
    report = rotation.rotate_index_root(
        db, store, keyring, batch_size=7, progress=lambda d, t: progress.append((d, t))
    )

    roots = keyring.index_roots()
    assert roots.previous == (old_root,) and roots.pending is None
    assert roots.current != old_root
    assert report.generation == 1 and report.root == index_root_fingerprint(roots.current)
    assert report.backfilled == progress[-1][0] == progress[-1][1] > 40
    assert _state(db).root_fingerprint == report.root and _state(db).pending_fingerprint is None
    # Every index row is the new root's value, and nothing else is left.
    new_rows = _index_rows(db)
    assert new_rows == _expected_rows(db, store, BlindIndexer(roots)) != old_rows
    assert len(new_rows - old_rows) > 0.9 * len(new_rows)
    assert all(index_id > 100 for index_id, _, _ in new_rows)  # the other bank of ids

    # A process that loads the keyring afresh finds the same persons.
    fresh = PersonStore.from_provider(LocalKeyringProvider(keyring.path))
    assert _searches(db, fresh) == before
    assert _searches(db, store) == before

    # A re-sent record still finds its previous version, unchanged, by source key.
    resent = fresh.prepare(
        person_record(
            "SC-ROBERT",
            given="Robert",
            family="Kowalski",
            dob=dt.date(2012, 3, 4),
            nhs="9434765919",
        )
    )
    with db.transaction() as session:
        held = fresh.current_versions(session, "social_care", [resent.source_key])
        assert list(held) == [resent.source_key]
        assert held[resent.source_key].content_hash == resent.content_hash
        assert held[resent.source_key].person_id == robert

    # A retried referral is recognised by its idempotency key and request hash.
    with db.transaction() as session:
        again = referrals.submit(
            session,
            fresh,
            AccessPolicy().for_session(session),
            PARTNER,
            referral(),
            idempotency_key="retry-7",
            model=None,
            now=NOW,
        )
    assert again.replayed and again.referral_id == first.referral_id

    # Source keys are the old ones wrapped once: an old-root computation no longer matches.
    old = BlindIndexer(old_root)
    assert old.source_key("social_care", "SC-ROBERT") != resent.source_key
    assert (
        BlindIndexer(IndexRoots(old_root, pending=roots.current)).wrap_for_pending(
            "source-record-id", old.source_key("social_care", "SC-ROBERT")
        )
        == resent.source_key
    )

    # A second rotation chains on.
    rotation.rotate_index_root(db, store, keyring, batch_size=50)
    assert len(keyring.index_roots().previous) == 2
    assert _searches(db, store) == before
    with db.transaction() as session:
        again_key = store.source_key("social_care", "SC-ROBERT")
        assert list(store.current_versions(session, "social_care", [again_key])) == [again_key]


def test_records_written_during_a_rotation_are_found_after_it(
    committing_database: Database, keyring: LocalKeyringProvider, store: PersonStore
) -> None:
    db = committing_database
    _seed(db, store, 10)
    # A long-running process with its own view of the keyring, loaded before the rotation.
    running = PersonStore.from_provider(LocalKeyringProvider(keyring.path))
    rotation.begin(db, keyring)
    with db.transaction() as session:
        late = _person(
            session,
            running,
            "SC-LATE",
            given="Wilhelmina",
            family="Szczepanska",
            dob=dt.date(2016, 8, 1),
            nhs="4010232137",
        )
    # It noticed the pending root and indexed the record under it as well.
    assert running.indexer.pending_fingerprint == _state(db).pending_fingerprint is not None
    with db.transaction() as session:
        (late_record,) = running.records_of_person(session, late)
    assert any(rid == late_record for *_, rid in _index_rows(db, bank=1))

    report = rotation.rotate_index_root(db, store, keyring, batch_size=4)
    assert report.backfilled == 11  # the seeded records, not the one written meanwhile
    query = {
        "given_name": "Wilhelmina",
        "family_name": "Szczepanska",
        "date_of_birth": "2016-08-01",
    }
    assert _search(db, running, query) == [late]
    assert _search(db, running, {"nhs_number": "4010232137"}) == [late]
    assert _index_rows(db) == _expected_rows(db, store, BlindIndexer(keyring.index_roots()))


class SimulatedCrashError(Exception):
    pass


def _interrupt_after(batches: int) -> Callable[[int, int], None]:
    seen = [0]

    def progress(done: int, total: int) -> None:
        if done:
            seen[0] += 1
            if seen[0] >= batches:
                raise SimulatedCrashError

    return progress


def test_an_interrupted_rotation_is_finished_by_the_next_run(
    committing_database: Database, keyring: LocalKeyringProvider, store: PersonStore
) -> None:
    db = committing_database
    _seed(db, store, 20)
    before = _searches(db, store)
    old_fingerprint = index_root_fingerprint(keyring.index_roots().current)
    # A running process that has searched already (it knows the database's root).
    stale = PersonStore.from_provider(LocalKeyringProvider(keyring.path))
    assert _searches(db, stale) == before

    # SimulatedCrashError during the backfill: some records done, the hub still serves the old root.
    with pytest.raises(SimulatedCrashError):
        rotation.rotate_index_root(db, store, keyring, batch_size=5, progress=_interrupt_after(2))
    assert 0 < len({rid for *_, rid in _index_rows(db, bank=1)}) < 21
    assert _state(db).root_fingerprint == old_fingerprint
    assert _searches(db, store) == before
    pending = keyring.index_roots().pending

    # SimulatedCrashError after the switch committed, before the keyring changed.
    rotation.begin(db, keyring)
    rotation.backfill(db, store, batch_size=5)
    rotation.switch(db, store, rotation.RotationReport("", ""), batch_size=5)
    assert keyring.index_roots().pending == pending  # the same pending root was resumed
    assert _state(db).root_fingerprint == index_root_fingerprint(pending or b"")
    # Processes still holding the old root as current follow the database.
    assert _searches(db, stale) == before
    assert _searches(db, PersonStore.from_provider(LocalKeyringProvider(keyring.path))) == before
    with db.transaction() as session:
        meanwhile = _person(
            session,
            stale,
            "SC-MEANWHILE",
            given="Ottilie",
            family="Brennan",
            dob=dt.date(2011, 2, 2),
            nhs=None,
        )

    report = rotation.rotate_index_root(db, store, keyring, batch_size=5)
    assert report.resumed and report.backfilled == 0
    assert keyring.index_roots().current == pending
    assert keyring.index_roots().pending is None
    assert _searches(db, store) == before
    query = {"given_name": "Ottilie", "family_name": "Brennan", "date_of_birth": "2011-02-02"}
    assert _search(db, store, query) == [meanwhile]
    assert _index_rows(db) == _expected_rows(db, store, BlindIndexer(keyring.index_roots()))
    # Running again when nothing is pending starts a new rotation, not a no-op on the old.
    assert rotation.rotate_index_root(db, store, keyring).generation == 2


def test_erasure_during_a_rotation_leaves_no_index_rows(
    committing_database: Database, keyring: LocalKeyringProvider, store: PersonStore
) -> None:
    db = committing_database
    _seed(db, store, 8)
    rotation.begin(db, keyring)
    with db.transaction() as session:
        person = _person(
            session,
            store,
            "SC-ERASE",
            given="Philippa",
            family="Underwood",
            dob=dt.date(2013, 5, 5),
            nhs=None,
        )
        _person(
            session,
            store,
            "SC-ERASE-2",
            given="Philippa",
            family="Underwood",
            dob=dt.date(2013, 5, 5),
            nhs=None,
        )
        records = store.records_of_person(session, person)
    # Written under both roots.
    assert {rid for *_, rid in _index_rows(db, bank=0)} >= set(records)
    assert {rid for *_, rid in _index_rows(db, bank=1)} >= set(records)
    # Half the backfill, then the erasure, then the rest.
    with pytest.raises(SimulatedCrashError):
        rotation.backfill(db, store, batch_size=3, progress=_interrupt_after(2))
    with db.transaction() as session:
        store.erase_person(session, person, actor="test:ig", reason="court order")

    def leftovers() -> int:
        with db.transaction() as session:
            return int(
                session.scalar(
                    select(func.count())
                    .select_from(BlindIndexEntry)
                    .where(BlindIndexEntry.record_id.in_(records))
                )
                or 0
            )

    assert leftovers() == 0
    rotation.rotate_index_root(db, store, keyring, batch_size=3)
    assert leftovers() == 0
    query = {"given_name": "Philippa", "family_name": "Underwood", "date_of_birth": "2013-05-05"}
    assert len(_search(db, store, query)) == 1  # only the other person


def test_the_reindex_loop_skips_records_erased_before_their_batch(
    committing_database: Database, keyring: LocalKeyringProvider, store: PersonStore
) -> None:
    db = committing_database
    person = _seed(db, store, 3)
    with db.transaction() as session:
        store.erase_person(session, person, actor="test:ig", reason="court order")
        ids = sorted(session.scalars(text("SELECT id FROM source_records")))
    written: dict[uuid.UUID, int] = {}
    visited = reindex(
        db,
        store,
        store.indexer,
        select_batch=lambda _s, after, n: [i for i in ids if after is None or i > after][:n],
        write=lambda _s, terms: written.update({rid: len(t) for rid, t in terms.items()}),
        batch_size=2,
    )
    assert visited == 4 and len(written) == 3 and all(written.values())


def test_records_prepared_before_a_rotation_and_written_after_its_switch_are_refused(
    committing_database: Database, keyring: LocalKeyringProvider, store: PersonStore
) -> None:
    db = committing_database
    _seed(db, store, 3)
    stale = store.prepare(person_record("SC-STALE", given="Tobias", nhs=None))
    assert stale.pending is None
    rotation.begin(db, keyring)
    during = store.prepare(person_record("SC-DURING", given="Tobias", nhs=None))
    assert during.pending is not None
    rotation.backfill(db, store)
    rotation.switch(db, store, rotation.RotationReport("", ""), batch_size=10)
    with db.transaction() as session, pytest.raises(IndexRootChangedError, match="again"):
        store.write(session, [stale])
    with db.transaction() as session:
        (written,) = store.resolve(session, [during])
        assert written.source_key == during.pending.source_key
        store.write(session, [during])
    rotation.rotate_index_root(db, store, keyring)
    assert _index_rows(db) == _expected_rows(db, store, BlindIndexer(keyring.index_roots()))


def test_keys_from_the_environment_are_refused_saying_what_to_do(
    committing_database: Database,
) -> None:
    environ = {
        "MASH_KEKS": "kek-1:" + "A" * 43 + "=",
        "MASH_INDEX_ROOT_KEY": "B" * 43 + "=",
    }
    with pytest.raises(KeyConfigError, match=r"MASH_INDEX_ROOT_KEY.*MASH_KEY_PROVIDER=keyring"):
        rotation.begin(committing_database, EnvKeyProvider(environ))


def test_the_keyring_keeps_old_roots_in_order_and_finishes_idempotently(tmp_path: Path) -> None:
    keyring = LocalKeyringProvider.create(tmp_path / "keyring.json")
    first = keyring.index_roots().current
    assert keyring.begin_index_root_rotation() is True
    assert keyring.begin_index_root_rotation() is False
    pending = keyring.index_roots().pending
    assert pending is not None and pending != first
    with pytest.raises(KeyConfigError, match="no pending"):
        keyring.finish_index_root_rotation("0" * 16)
    assert keyring.finish_index_root_rotation(index_root_fingerprint(pending)) is True
    assert keyring.finish_index_root_rotation(index_root_fingerprint(pending)) is False
    reloaded = LocalKeyringProvider(keyring.path).index_roots()
    assert reloaded == IndexRoots(pending, (first,))
    assert "index_root" not in repr(reloaded) or first.hex() not in repr(reloaded)
    # Source keys start at the oldest root and are wrapped by each later one.
    chained = BlindIndexer(reloaded).source_key("police", "P-1")
    assert chained != BlindIndexer(pending).source_key("police", "P-1")
    assert chained == BlindIndexer(IndexRoots(first, pending=pending)).wrap_for_pending(
        "source-record-id", BlindIndexer(first).source_key("police", "P-1")
    )


def _waiting(db: Database) -> int:
    """How many sessions of this database wait for a lock."""
    with db.transaction() as session:
        return int(
            session.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
            or 0
        )


def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_switch_waits_for_writers_and_later_writers_use_the_new_root(
    committing_database: Database, keyring: LocalKeyringProvider, store: PersonStore
) -> None:
    db = committing_database
    _seed(db, store, 5)
    rotation.begin(db, keyring)
    rotation.backfill(db, store)
    running = PersonStore.from_provider(LocalKeyringProvider(keyring.path))
    errors: list[BaseException] = []

    def in_thread(work: Callable[[], object]) -> threading.Thread:
        def target() -> None:
            try:
                work()
            except BaseException as exc:  # reported by the assertion below
                errors.append(exc)

        thread = threading.Thread(target=target)
        thread.start()
        return thread

    # A writer inside its transaction holds the switch off until it commits.
    with db.transaction() as session:
        early = _person(
            session,
            running,
            "SC-EARLY",
            given="Cosima",
            family="Farrow",
            dob=dt.date(2014, 4, 4),
            nhs=None,
        )
        switching = in_thread(
            lambda: rotation.switch(db, store, rotation.RotationReport("", ""), batch_size=10)
        )
        _until(lambda: _waiting(db) == 1)
        assert switching.is_alive()
    switching.join(30)
    assert not errors and _state(db).generation == 1

    # Another rotation: this time the switch holds its lock while a writer arrives.
    rotation.finish(keyring, _state(db).root_fingerprint or "")
    rotation.begin(db, keyring)
    rotation.backfill(db, store)
    with db.transaction() as blocker:
        blocker.execute(text("SELECT 1 FROM index_root_state FOR UPDATE"))
        switching = in_thread(
            lambda: rotation.switch(db, store, rotation.RotationReport("", ""), batch_size=10)
        )
        _until(lambda: _waiting(db) == 1)
        late_ids: list[uuid.UUID] = []

        def write_late() -> None:
            with db.transaction() as session:
                late_ids.append(
                    _person(
                        session,
                        running,
                        "SC-LATE",
                        given="Leopold",
                        family="Marchetti",
                        dob=dt.date(2009, 9, 9),
                        nhs=None,
                    )
                )

        writing = in_thread(write_late)
        _until(lambda: _waiting(db) == 2)
    switching.join(30)
    writing.join(30)
    assert not errors and _state(db).generation == 2
    rotation.finish(keyring, _state(db).root_fingerprint or "")
    assert rotation.clean_up(db, store) > 0  # the first root's rows, in the bank now unused
    assert _index_rows(db) == _expected_rows(db, store, BlindIndexer(keyring.index_roots()))
    assert _search(
        db, store, {"given_name": "Cosima", "family_name": "Farrow", "date_of_birth": "2014-04-04"}
    ) == [early]
    assert (
        _search(
            db,
            running,
            {"given_name": "Leopold", "family_name": "Marchetti", "date_of_birth": "2009-09-09"},
        )
        == late_ids
    )


def test_a_backfill_is_refused_while_a_rotation_is_pending(
    committing_database: Database, keyring: LocalKeyringProvider, store: PersonStore
) -> None:
    """Terms a backfill wrote mid-rotation would be the old root's only: after the switch
    the new root would lack them, so the backfill waits for the rotation to finish."""
    db = committing_database
    _seed(db, store, count=5)
    rotation.begin(db, keyring)
    with pytest.raises(BackfillRefusedError, match="rotate-index-root"):
        backfill_index(db, store, actor="test:operator")
    rotation.rotate_index_root(db, store, keyring, batch_size=50)
    fresh = PersonStore.from_provider(LocalKeyringProvider(keyring.path))
    # After the switch it runs, and the rotation left nothing for it to write.
    assert backfill_index(db, fresh, actor="test:operator").records == 0
