"""Fixtures for data quality: a police record ingested with a mistyped PNC id and postcode."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mash_hub.authz.policy import AccessPolicy
from mash_hub.authz.versions import publish
from mash_hub.crypto.keys import LocalKeyringProvider
from mash_hub.feeds.definition import FeedDefinition, feed_folders, load_feeds
from mash_hub.feeds.ingest import BatchReport, ingest_records
from mash_hub.feeds.reader import RawRecord
from mash_hub.persons.models import SourceRecord
from mash_hub.persons.store import PersonStore
from mash_hub.quality.models import QualityIssue
from tests.authz.conftest import BASELINE

BAD_PNC = "12/1234567Z"
BAD_POSTCODE = "LS6 2Q"
ROW = {
    "NOMINAL_ID": "NOM7",
    "SURNAME": "O'NEILL",
    "FORENAMES": "MARY JANE",
    "DOB": "04/03/2012",
    "SEX": "F",
    "PNC_ID": BAD_PNC,
    "ADDRESS": "109",
    "POSTCODE": BAD_POSTCODE,
}


@pytest.fixture(scope="session")
def feeds() -> dict[str, FeedDefinition]:
    return load_feeds(feed_folders())


@pytest.fixture
def store(tmp_path: Path) -> PersonStore:
    return PersonStore.from_provider(LocalKeyringProvider.create(tmp_path / "keyring.json"))


@dataclass
class Flagged:
    record_id: uuid.UUID
    person_id: uuid.UUID
    issues: dict[str, uuid.UUID]  # field -> issue id
    report: BatchReport


def ingest_rows(
    session: Session, store: PersonStore, definition: FeedDefinition, rows: list[dict[str, str]]
) -> BatchReport:
    raws = [RawRecord(f"line {n}", row) for n, row in enumerate(rows, start=2)]
    return ingest_records(
        session,
        store,
        definition,
        raws,
        file_name="police.csv",
        sha256=uuid.uuid4().hex * 2,
        size_bytes=1,
        actor="test",
    )


@pytest.fixture
def policy(session: Session) -> AccessPolicy:
    publish(session, BASELINE, actor="test:publisher")
    return AccessPolicy()


@pytest.fixture
def flagged(session: Session, store: PersonStore, feeds: dict[str, FeedDefinition]) -> Flagged:
    """One police record, linked to a person, with two values that failed validation."""
    report = ingest_rows(session, store, feeds["police"], [ROW])
    record_id = session.scalars(select(SourceRecord.id)).one()
    person_id = store.new_person(session)
    session.execute(
        update(SourceRecord).where(SourceRecord.id == record_id).values(person_id=person_id)
    )
    issues = {i.field: i.id for i in session.scalars(select(QualityIssue))}
    return Flagged(record_id, person_id, issues, report)
