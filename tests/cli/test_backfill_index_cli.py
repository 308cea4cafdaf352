"""``mash-hub keys backfill-index``: records stored before the deletion index get its terms.

The CLI runs in a subprocess against a fresh database with a real keyring; the terms it
wrote are checked against what ingestion writes today, through a store read afresh.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from mash_hub.crypto import INDEX_SPECS
from mash_hub.persons.backfill import backfill_index
from mash_hub.persons.models import BlindIndexEntry, SourceRecord
from mash_hub.persons.store import IDENTITY, PersonStore, StoredRecord
from tests.cli.test_keys_and_erase_cli import (
    audit_entries,
    fresh_store,
    hub_database,
    json_output,
    prepare_hub,
    run_hub,
)
from tests.persons.conftest import person_record

DELETION = INDEX_SPECS["name_deletion_pair"].index_id
NAMES = [("Nicola", "Woodford"), ("Isaac", "Lawrence"), ("Alexandra", "Okafor"), ("Li", "Ng")]


def seed_before_the_index(env: dict[str, str], copies: int = 2) -> list[uuid.UUID]:
    """Records as an older hub stored them: every index but the deletion index."""
    store = fresh_store(env)
    records = [
        person_record(f"SC-{n}-{i}", given=given, family=family, nhs=None)
        for i in range(copies)
        for n, (given, family) in enumerate(NAMES)
    ]
    with hub_database(env) as db, db.transaction() as session:
        ids = store.add(session, records)
        forget(session, ids)
    return ids


def forget(session: Session, ids: Collection[uuid.UUID]) -> None:
    session.execute(
        delete(BlindIndexEntry).where(
            BlindIndexEntry.index_id == DELETION, BlindIndexEntry.record_id.in_(list(ids))
        )
    )


def deletion_rows(env: dict[str, str]) -> set[tuple[int, uuid.UUID]]:
    with hub_database(env) as db, db.transaction() as session:
        return {
            (value, record)
            for value, record in session.execute(
                select(BlindIndexEntry.value, BlindIndexEntry.record_id).where(
                    BlindIndexEntry.index_id == DELETION
                )
            )
        }


def expected_rows(env: dict[str, str], ids: list[uuid.UUID]) -> set[tuple[int, uuid.UUID]]:
    """The terms ingestion writes today for these records' names."""
    store = fresh_store(env)
    with hub_database(env) as db, db.transaction() as session:
        stored = store.read(session, ids, [IDENTITY])
    return {
        (term.value, rid)
        for rid, record in stored.items()
        for term in store.indexer.terms_for(
            {
                "given_names": record.groups[IDENTITY]["given_names"],
                "family_name": record.groups[IDENTITY]["family_name"],
            }
        )
        if term.index_id == DELETION
    }


def test_backfill_writes_the_missing_terms_in_audited_batches_and_resumes(
    hub_env: dict[str, str],
) -> None:
    prepare_hub(hub_env)
    ids = seed_before_the_index(hub_env)
    assert deletion_rows(hub_env) == set()

    report = json_output(
        run_hub("keys", "backfill-index", "--batch-size", "3", "--json", env=hub_env)
    )
    assert report == {
        "indexes": ["name_deletion_pair"],
        "records": 8,
        "indexed": 8,
        "terms": 8 * 21,
        "batches": 3,
    }
    assert deletion_rows(hub_env) == expected_rows(hub_env, ids)

    batches = audit_entries(hub_env, "index.backfill")
    assert [entry.details for entry in batches] == [
        {"records": 3, "indexed": 3, "terms": 63},
        {"records": 3, "indexed": 3, "terms": 63},
        {"records": 2, "indexed": 2, "terms": 42},
    ]
    assert all(e.actor.startswith("cli:") and e.subject_id == "name_deletion_pair" for e in batches)
    text = " ".join(str(e.details) for e in batches).casefold()
    assert not any(name.casefold() in text for pair in NAMES for name in pair)

    # Interrupted after some batches (here: two records lost their terms again): a re-run
    # writes only what is missing, and a run with nothing to do changes nothing.
    with hub_database(hub_env) as db, db.transaction() as session:
        forget(session, ids[:2])
    again = json_output(run_hub("keys", "backfill-index", "--json", env=hub_env))
    assert (again["records"], again["terms"], again["batches"]) == (2, 42, 1)
    assert deletion_rows(hub_env) == expected_rows(hub_env, ids)
    idle = json_output(run_hub("keys", "backfill-index", "--json", env=hub_env))
    assert (idle["records"], idle["batches"]) == (0, 0)
    assert len(audit_entries(hub_env, "index.backfill")) == 4


def test_backfill_skips_superseded_and_erased_records(hub_env: dict[str, str]) -> None:
    prepare_hub(hub_env)
    ids = seed_before_the_index(hub_env, copies=1)
    with hub_database(hub_env) as db, db.transaction() as session:
        session.execute(
            update(SourceRecord).where(SourceRecord.id == ids[0]).values(is_current=False)
        )
    report = json_output(run_hub("keys", "backfill-index", "--json", env=hub_env))
    assert report["records"] == len(ids) - 1
    assert {record for _, record in deletion_rows(hub_env)} == set(ids[1:])


class SpyStore(PersonStore):
    """A store that notes which groups were asked for."""

    asked: set[str]

    def read(
        self, session: Session, record_ids: Collection[uuid.UUID], groups: Collection[str]
    ) -> dict[uuid.UUID, StoredRecord]:
        self.asked |= set(groups)
        return super().read(session, record_ids, groups)


def test_backfill_decrypts_only_the_identity_group(hub_env: dict[str, str]) -> None:
    prepare_hub(hub_env)
    ids = seed_before_the_index(hub_env, copies=1)
    plain = fresh_store(hub_env)
    spy = SpyStore(plain.keys, plain.indexer)
    spy.asked = set()
    with hub_database(hub_env) as db:
        report = backfill_index(db, spy, actor="test:backfill", batch_size=2)
    assert report.records == len(ids)
    assert spy.asked == {IDENTITY}


def test_backfill_refuses_an_index_it_cannot_rebuild_from_names(hub_env: dict[str, str]) -> None:
    prepare_hub(hub_env)
    with hub_database(hub_env) as db, pytest.raises(ValueError, match="not an index"):
        backfill_index(db, fresh_store(hub_env), actor="test", indexes=["nhs_number"])
