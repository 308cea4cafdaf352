"""Many writers keep one unbroken chain; a failed audit append undoes the operation."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from mash_hub.audit import AuditEvent, record
from mash_hub.audit.checkpoint import read_file
from mash_hub.audit.checkpointer import create_checkpoint, start_checkpointer
from mash_hub.audit.log import chain_pending
from mash_hub.audit.models import AuditEntry
from mash_hub.audit.verify import verify
from mash_hub.crypto.keys import LocalKeyringProvider
from mash_hub.crypto.models import DataKeyRow
from mash_hub.crypto.signing import AuditSigningKey
from mash_hub.db.engine import Database
from mash_hub.persons.models import Person
from mash_hub.persons.store import PersonStore
from tests.audit.conftest import append
from tests.persons.conftest import person_record

Conn = psycopg.Connection[tuple[object, ...]]


class RollbackError(Exception):
    pass


def test_concurrent_writers_leave_a_contiguous_valid_chain(
    app_db: Database, signing_key: AuditSigningKey, checkpoint_dir: Path
) -> None:
    threads, per_thread = 8, 50
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []
    committed = [0] * threads

    def writer(n: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                try:
                    with app_db.transaction() as session:
                        record(session, AuditEvent(f"user:{n}", "person.view", "person", str(i)))
                        if i % 7 == 3:
                            raise RollbackError
                    committed[n] += 1
                except RollbackError:
                    pass
                if i == per_thread // 2 and n == 0:
                    create_checkpoint(app_db, signing_key, checkpoint_dir)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    expected = sum(committed)
    assert expected == threads * (per_thread - len([i for i in range(per_thread) if i % 7 == 3]))
    chain_pending(app_db.engine)  # what the chainer thread may still be doing
    with app_db.transaction() as session:
        count, low, high, top_seq = session.execute(
            select(
                func.count(),
                func.min(AuditEntry.chain_seq),
                func.max(AuditEntry.chain_seq),
                func.max(AuditEntry.seq),
            )
        ).one()
    # Rolled-back entries used up ids (seq) but left no gap in the chain.
    assert (count, low, high) == (expected, 1, expected)
    assert top_seq == threads * per_thread
    report = verify(app_db.engine, verify_key=signing_key, checkpoint_dir=checkpoint_dir)
    assert report.ok, report.problem
    assert report.entries == expected and report.checkpoints == 1 and report.unchained == 0


@pytest.fixture
def stored_person(app_db: Database, tmp_path: Path) -> tuple[PersonStore, object]:
    store = PersonStore.from_provider(LocalKeyringProvider.create(tmp_path / "k.json"))
    with app_db.transaction() as session:
        person_id = store.new_person(session)
        store.add(session, [person_record("SC-1", person_id=person_id)])
    return store, person_id


def _assert_not_erased(app_db: Database, person_id: object) -> None:
    with app_db.transaction() as session:
        person = session.get(Person, person_id)
        assert person is not None and person.erased_at is None
        assert session.execute(select(func.count()).select_from(DataKeyRow)).scalar() == 1
        assert session.execute(select(func.count()).select_from(AuditEntry)).scalar() == 0


def test_erasure_is_rolled_back_when_the_app_role_cannot_append(
    app_db: Database, superuser: Conn, stored_person: tuple[PersonStore, object]
) -> None:
    store, person_id = stored_person
    superuser.execute("REVOKE INSERT ON audit_log FROM mash_hub_app")
    with (
        pytest.raises(DBAPIError, match="permission denied for table audit_log"),
        app_db.transaction() as session,
    ):
        store.erase_person(session, person_id, actor="user:test", reason="TEST-1")  # type: ignore[arg-type]
    _assert_not_erased(app_db, person_id)


def test_erasure_is_rolled_back_when_a_trigger_refuses_the_append(
    app_db: Database, superuser: Conn, stored_person: tuple[PersonStore, object]
) -> None:
    store, person_id = stored_person
    superuser.execute(
        "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'audit store unavailable'; END $$"
    )
    superuser.execute(
        "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION refuse_audit()"
    )
    with (
        pytest.raises(DBAPIError, match="audit store unavailable"),
        app_db.transaction() as session,
    ):
        store.erase_person(session, person_id, actor="user:test", reason="TEST-1")  # type: ignore[arg-type]
    _assert_not_erased(app_db, person_id)
    superuser.execute("DROP TRIGGER refuse_audit ON audit_log")
    with app_db.transaction() as session:  # and with the audit store back, erasure works
        store.erase_person(session, person_id, actor="user:test", reason="TEST-1")  # type: ignore[arg-type]
        assert session.execute(text("SELECT count(*) FROM audit_log")).scalar() == 1


def test_the_checkpointer_signs_periodically_and_stops(
    app_db: Database, signing_key: AuditSigningKey, checkpoint_dir: Path
) -> None:
    append(app_db, 3)
    stop = start_checkpointer(app_db, 0.05, key=signing_key, directory=checkpoint_dir)
    try:
        deadline = time.monotonic() + 10
        while not read_file(checkpoint_dir) and time.monotonic() < deadline:
            time.sleep(0.02)
        append(app_db, 2)
        while max((cp.seq for _, cp in read_file(checkpoint_dir)), default=0) < 5:
            assert time.monotonic() < deadline, "no checkpoint for the new head"
            time.sleep(0.02)
    finally:
        stop()
    seqs = [cp.seq for _, cp in read_file(checkpoint_dir)]
    assert seqs == sorted(set(seqs)) == [3, 5]  # nothing re-signed while unchanged
    assert (checkpoint_dir / "checkpoints.jsonl").stat().st_mode & 0o077 == 0


def test_a_disabled_checkpointer_does_nothing(
    app_db: Database, signing_key: AuditSigningKey, checkpoint_dir: Path
) -> None:
    append(app_db, 1)
    start_checkpointer(app_db, 0, key=signing_key, directory=checkpoint_dir)()
    assert not checkpoint_dir.exists()
