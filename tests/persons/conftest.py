"""Real keys for store tests: a keyring file per test, created with mode 0600."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from mash_hub.crypto.keys import LocalKeyringProvider
from mash_hub.persons.store import CONTACT, IDENTIFIERS, IDENTITY, NewRecord, PersonStore


@pytest.fixture
def keyring(tmp_path: Path) -> LocalKeyringProvider:
    return LocalKeyringProvider.create(tmp_path / "keyring.json")


@pytest.fixture
def store(keyring: LocalKeyringProvider) -> PersonStore:
    return PersonStore.from_provider(keyring)


def person_record(
    source_id: str,
    *,
    given: str = "Amelia",
    family: str = "Kowalczyk",
    dob: dt.date = dt.date(2014, 3, 9),
    postcode: str = "LS6 2QT",
    nhs: str | None = "9434765919",
    person_id: object = None,
    feed: str = "social_care",
) -> NewRecord:
    """A synthetic record in the store's shape."""
    return NewRecord(
        feed=feed,
        source_agency=feed,
        source_record_id=source_id,
        groups={
            IDENTITY: {
                "given_names": [given],
                "family_name": family,
                "date_of_birth": dob.isoformat(),
                "sex": "F",
            },
            IDENTIFIERS: {"nhs_number": nhs},
            CONTACT: {
                "addresses": [{"line1": "14 Harehills Lane", "postcode": postcode, "current": True}]
            },
            "details.case": {"status": "open", "cp_category": "NEG"},
        },
        index_fields={
            "given_names": [given],
            "family_name": family,
            "date_of_birth": dob,
            "postcodes": [postcode],
            "nhs_number": nhs,
        },
        person_id=person_id,  # type: ignore[arg-type]
    )
