"""KEK rotation: online, batched, resumable; old KEKs retire only when nothing needs them."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mash_hub.crypto.errors import KeyConfigError, UnknownKeyError
from mash_hub.crypto.keys import LocalKeyringProvider
from mash_hub.crypto.keystore import rotate
from mash_hub.crypto.models import DataKeyRow
from mash_hub.db.engine import Database
from mash_hub.persons.store import IDENTITY, PersonStore
from tests.persons.conftest import person_record


def _seed(db: Database, store: PersonStore, n: int) -> list[uuid.UUID]:
    with db.transaction() as session:
        return store.add(session, [person_record(f"SC-{i}", given=f"Name{i}") for i in range(n)])


def _names(db: Database, store: PersonStore, ids: list[uuid.UUID]) -> list[str]:
    with db.transaction() as session:
        records = store.read(session, ids, {IDENTITY})
    return sorted(r.groups[IDENTITY]["given_names"][0] for r in records.values())


def test_rotation_rewraps_everything_and_the_old_kek_can_then_be_retired(
    committing_database: Database, keyring: LocalKeyringProvider, store: PersonStore
) -> None:
    db = committing_database
    ids = _seed(db, store, 25)
    expected = _names(db, store, ids)
    old = keyring.primary_kek_id()

    new = keyring.add_kek(make_primary=True)
    with db.transaction() as session, pytest.raises(KeyConfigError, match="still wraps 25"):
        store.keys.retire(session, old)

    seen: list[tuple[int, int]] = []
    assert rotate(db, store.keys, batch_size=7, progress=lambda d, t: seen.append((d, t))) == 25
    assert seen[-1] == (25, 25)
    with db.transaction() as session:
        assert store.keys.outstanding(session) == 0
        assert {row.kek_id for row in session.scalars(select(DataKeyRow))} == {new}
        store.keys.retire(session, old)
    assert store.keys.destroy(old) is True
    with db.transaction() as session:
        statuses = {status.kek_id: status for status in store.keys.status(session)}
    assert statuses[old].retired and statuses[old].data_keys == 0
    assert statuses[new].primary and statuses[new].data_keys == 25
    with pytest.raises(UnknownKeyError):
        keyring.unwrap(old, b"\x01" + bytes(40), b"ctx")
    assert _names(db, store, ids) == expected
    with db.transaction() as session, pytest.raises(KeyConfigError, match="primary"):
        store.keys.retire(session, new)
    with db.transaction() as session, pytest.raises(KeyConfigError, match="has no KEK"):
        store.keys.retire(session, "kek-mistyped")


def test_interrupted_rotation_resumes_and_reads_keep_working(
    committing_database: Database, keyring: LocalKeyringProvider, store: PersonStore
) -> None:
    db = committing_database
    ids = _seed(db, store, 30)
    expected = _names(db, store, ids)
    keyring.add_kek(make_primary=True)

    # One batch commits, then the job "dies".
    with db.transaction() as session:
        assert store.keys.rewrap_batch(session, 10) == 10
    with db.transaction() as session:
        assert store.keys.outstanding(session) == 20
    assert _names(db, store, ids) == expected  # a mix of old and new KEKs reads fine

    # While a batch is being re-wrapped (rows locked, not committed), readers still read.
    locked = threading.Event()
    release = threading.Event()

    def rotator() -> None:
        with db.transaction() as session:
            store.keys.rewrap_batch(session, 5)
            locked.set()
            release.wait(10)

    worker = threading.Thread(target=rotator)
    worker.start()
    assert locked.wait(10)
    try:
        assert _names(db, store, ids) == expected
    finally:
        release.set()
        worker.join()

    assert rotate(db, store.keys, batch_size=4) == 15
    with db.transaction() as session:
        assert store.keys.outstanding(session) == 0
        assert session.scalar(select(func.count()).select_from(DataKeyRow)) == 30
    assert _names(db, store, ids) == expected


def test_a_provider_missing_a_needed_kek_is_refused(
    committing_database: Database, keyring: LocalKeyringProvider, store: PersonStore, tmp_path: Path
) -> None:
    _seed(committing_database, store, 2)
    stranger = PersonStore.from_provider(LocalKeyringProvider.create(tmp_path / "other.json"))
    with (
        committing_database.transaction() as session,
        pytest.raises(KeyConfigError, match="does not have"),
    ):
        stranger.keys.check_provider_covers_database(session)
