"""Fixtures for referrals: real keys, the baseline policy, and synthetic referral bodies.

Every personal value in a sample body carries a marker (``Zq``) so a test can look for it
anywhere (database dump, audit log, error bodies) and be sure it found nothing by accident.
"""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from mash_hub.authz.policy import AccessPolicy, Caller, Decisions
from mash_hub.authz.versions import publish
from mash_hub.crypto.keys import LocalKeyringProvider
from mash_hub.persons.store import PersonStore
from mash_hub.referrals.schemas import ReferralIn
from mash_hub.synth.identifiers import nhs_number
from tests.authz.conftest import BASELINE

CHILD_NHS = nhs_number(31_415_926)
CONCERNS = "Zqconcerns: the child arrived at school with bruising and said Zqmum's partner hit her."
REFERRER_NAME = "Zqreferrer Okonkwo-Baptiste"
CONSENT_REASON = "Zqreason: telling the family could put the child at further risk."

PARTNER = Caller("client:school-17", "partner_agency", "education")
OTHER_PARTNER = Caller("client:gp-4", "partner_agency", "health")
OFFICER = Caller("user:mash-1", "mash_officer", "council")
AUDITOR = Caller("user:audit-1", "auditor", "council")


def body(**changes: Any) -> dict[str, Any]:
    """A valid referral body (JSON); ``changes`` replace top-level keys."""
    document: dict[str, Any] = {
        "subjects": [
            {
                "role": "child",
                "given_names": ["Zqamara", "Jade"],
                "family_name": "Zqwhitlock",
                "date_of_birth": "2015-06-14",
                "sex": "F",
                "nhs_number": CHILD_NHS,
                "addresses": [
                    {"line1": "14 Zqrowan Court", "town": "Leeds", "postcode": "ls6 2qt"}
                ],
            },
            {
                "role": "parent_carer",
                "given_names": ["Zqbeverley"],
                "family_name": "Zqwhitlock",
                "date_of_birth": "1988-02-03",
                "sex": "F",
                "phone": "07700 900123",
            },
        ],
        "concerns": CONCERNS,
        "source": "2A",
        "primary_need": "N1",
        "factors": ["3C", "18C"],
        "referrer": {
            "name": REFERRER_NAME,
            "job_title": "Designated safeguarding lead",
            "organisation": "Zqhill Primary School",
            "email": "dsl@zqhill.example.org",
        },
        "consent": {"state": "not_sought_risk", "reason": CONSENT_REASON},
    }
    document.update(copy.deepcopy(changes))
    return document


def referral(**changes: Any) -> ReferralIn:
    return ReferralIn.model_validate(body(**changes))


def personal_values() -> list[str]:
    """Every marked value in the sample body (what must never appear in clear)."""
    out: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str) and "Zq" in value:
            out.append(value)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(body())
    return [*out, "Zqamara", "Zqwhitlock", CHILD_NHS, "07700900123", "7700 900123"]


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC)


@pytest.fixture
def store(tmp_path: Path) -> PersonStore:
    return PersonStore.from_provider(LocalKeyringProvider.create(tmp_path / "keyring.json"))


@pytest.fixture
def decisions(session: Session) -> Decisions:
    """The baseline policy, published in the test's (rolled-back) transaction."""
    publish(session, BASELINE, actor="test:publisher")
    return AccessPolicy().for_session(session)
