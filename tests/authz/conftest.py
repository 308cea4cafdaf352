"""Fixtures for the access policy: real keys, the baseline policy published, a person with one
record per source agency and every field group filled with synthetic values."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from mash_hub.authz.files import PolicyTexts
from mash_hub.authz.policy import AccessPolicy
from mash_hub.authz.versions import publish
from mash_hub.authz.vocabulary import PERSON_FIELDS, SOURCES
from mash_hub.crypto.keys import LocalKeyringProvider
from mash_hub.persons.store import NewRecord, PersonStore

BASELINE = PolicyTexts.read(Path(__file__).resolve().parents[2] / "policies")


@pytest.fixture
def keyring(tmp_path: Path) -> LocalKeyringProvider:
    return LocalKeyringProvider.create(tmp_path / "keyring.json")


@pytest.fixture
def store(keyring: LocalKeyringProvider) -> PersonStore:
    return PersonStore.from_provider(keyring)


@pytest.fixture
def policy(session: Session) -> AccessPolicy:
    """The baseline policy published in the test's (rolled-back) transaction."""
    publish(session, BASELINE, actor="test:publisher")
    return AccessPolicy()


def secret(source: str, group: str, salt: str = "") -> str:
    """A synthetic value unique to (source, group): easy to find in any output."""
    return f"SECRET-{source}-{group}-{salt}".replace(".", "_")


@dataclass
class Household:
    person_id: uuid.UUID
    records: dict[str, uuid.UUID]  # source -> record id
    values: dict[tuple[str, str], str]  # (source, group) -> the secret in that group


def add_person(
    session: Session,
    store: PersonStore,
    values: dict[tuple[str, str], dict[str, str]] | None = None,
) -> Household:
    """One person with a record from every source, each holding every field group."""
    person_id = store.new_person(session)
    records: dict[str, uuid.UUID] = {}
    secrets: dict[tuple[str, str], str] = {}
    for source in SOURCES:
        groups: dict[str, dict[str, str]] = {}
        for group in PERSON_FIELDS:
            fields = (values or {}).get((source, group)) or {"value": secret(source, group)}
            groups[group] = fields
            secrets[(source, group)] = next(iter(fields.values()))
        (record_id,) = store.add(
            session,
            [
                NewRecord(
                    feed=f"{source}_feed",
                    source_agency=source,
                    source_record_id=f"{source}-{uuid.uuid4()}",
                    groups=groups,
                    index_fields={"family_name": "Synthetic"},
                    person_id=person_id,
                )
            ],
        )
        records[source] = record_id
    return Household(person_id, records, secrets)


@pytest.fixture
def household(session: Session, store: PersonStore) -> Household:
    return add_person(session, store)


@pytest.fixture
def decrypted(
    store: PersonStore, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[tuple[uuid.UUID, str]]]:
    """Every (record id, group) the store decrypts during the test."""
    seen: list[tuple[uuid.UUID, str]] = []
    original = store._open

    def spy(session: Session, rows: object) -> object:
        opened = original(session, rows)  # type: ignore[arg-type]
        seen.extend((record_id, group) for record_id, group, _ in opened)
        return opened

    monkeypatch.setattr(store, "_open", spy)
    yield seen
