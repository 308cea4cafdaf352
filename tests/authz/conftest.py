"""Fixtures for the access policy: real keys, the baseline policy published, a person with one
record per source agency and every field group filled with synthetic values."""

from __future__ import annotations

import datetime as dt
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
from mash_hub.referrals.models import Referral, ReferralSubject

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


def add_referral(
    session: Session,
    record_ids: list[uuid.UUID],
    reference: str,
    *,
    status: str = "received",
    decided_at: dt.datetime | None = None,
    received_at: dt.datetime | None = None,
) -> uuid.UUID:
    """A referral row naming ``record_ids`` (records of source ``referral``) as its subjects.

    Only the columns the person view and purpose checks read are meaningful; the sealed
    referrer details are placeholder bytes (nothing here decrypts them)."""
    now = dt.datetime.now(dt.UTC)
    received = received_at or now
    referral_id = uuid.uuid4()
    session.add(
        Referral(
            id=referral_id,
            reference=reference,
            submitted_by="test:referrer",
            submitter_role="police_officer",
            submitter_agency="police",
            received_at=received,
            source_code="2A",
            primary_need="N1",
            factors=[],
            consent="given",
            subject_count=len(record_ids),
            linkage="new_persons",
            status=status,
            decision="nfa" if status == "decided" else None,
            decided_at=decided_at,
            decision_due_at=received + dt.timedelta(days=1),
            sealed=b"placeholder",
            updated_at=now,
        )
    )
    session.flush()
    session.add_all(
        ReferralSubject(
            referral_id=referral_id,
            position=position,
            record_id=record_id,
            subject_role="child" if position == 0 else "parent_carer",
            matched_existing=False,
        )
        for position, record_id in enumerate(record_ids)
    )
    session.flush()
    return referral_id


@pytest.fixture
def household(session: Session, store: PersonStore) -> Household:
    return add_person(session, store)


@pytest.fixture
def decrypted(
    store: PersonStore, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[tuple[uuid.UUID, str]]]:
    """Every (record id, group) the store decrypts during the test."""
    seen: list[tuple[uuid.UUID, str]] = []
    original = store._open_joined

    def spy(rows: object, groups: object) -> object:
        opened = original(rows, groups)  # type: ignore[arg-type]
        seen.extend((record.id, group) for record in opened for group in record.groups)
        return opened

    monkeypatch.setattr(store, "_open_joined", spy)
    yield seen
