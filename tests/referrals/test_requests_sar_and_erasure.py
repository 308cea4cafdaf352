"""Information requests in the subject-access export (under the referral details' mask, never
decrypted when withheld) and crypto-shredded when a person the referral concerns is erased."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Collection

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from mash_hub.authz.files import PolicyTexts
from mash_hub.authz.policy import AccessPolicy, Caller, Decisions
from mash_hub.authz.versions import publish
from mash_hub.casework.subject_access import SarReference, subject_access_export
from mash_hub.crypto.envelope import FieldCipher
from mash_hub.crypto.models import DataKeyRow
from mash_hub.persons.models import SourceRecord
from mash_hub.persons.store import PersonStore
from mash_hub.referrals import requests
from mash_hub.referrals.models import InformationRequest, ReferralSubject
from mash_hub.referrals.service import ReferralStateError, find
from tests.authz.conftest import BASELINE
from tests.referrals.conftest import OFFICER
from tests.referrals.test_requests import ANSWER, NOW, POLICE, QUESTION, ask, rated
from tests.referrals.test_service import entries

IG = Caller("user:ig-1", "information_governance", "council")
REF = SarReference("SAR-2026-0117")
LATER = NOW + dt.timedelta(hours=1)


def subjects(session: Session, reference: str) -> dict[str, uuid.UUID]:
    """The person id of each subject role of the referral."""
    referral = find(session, reference)
    assert referral is not None
    rows = session.execute(
        select(ReferralSubject.subject_role, SourceRecord.person_id)
        .join(SourceRecord, SourceRecord.id == ReferralSubject.record_id)
        .where(ReferralSubject.referral_id == referral.id)
    )
    return {role: person for role, person in rows if person is not None}


def asked_and_answered(session: Session, store: PersonStore, decisions: Decisions) -> str:
    reference = rated(session, store, decisions)
    made = ask(session, store, decisions, reference, "police")
    requests.answer(
        session, store, decisions, POLICE, made.id, outcome="information", text=ANSWER, now=LATER
    )
    return reference


def opened_keys(store: PersonStore, monkeypatch: pytest.MonkeyPatch) -> list[uuid.UUID]:
    """Every data-key owner the store unwraps a key for during the test."""
    seen: list[uuid.UUID] = []
    original = store.keys.ciphers

    def spy(session: Session, owner_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, FieldCipher]:
        seen.extend(owner_ids)
        return original(session, owner_ids)

    monkeypatch.setattr(store.keys, "ciphers", spy)
    return seen


def test_the_export_holds_the_requests_with_their_text_under_the_referral_mask(
    session: Session, store: PersonStore, decisions: Decisions
) -> None:
    reference = asked_and_answered(session, store, decisions)
    (made,) = requests.for_referral(
        session, store, decisions, OFFICER, reference, now=LATER
    ).requests
    for role, person in subjects(session, reference).items():
        export = subject_access_export(session, store, AccessPolicy(), IG, person, REF)
        (item,) = export.information_requests
        assert item["id"] == str(made.id) and item["referral"] == reference, role
        assert (item["text"], item["question"], item["answer"]) == ("included", QUESTION, ANSWER)
        assert (item["agency_asked"], item["status"], item["outcome"]) == (
            "police",
            "answered",
            "information",
        )
        assert "requested_by" not in item and "answered_by" not in item  # staff ids left out
        assert export.counts()["information_requests"] == 1
        entry = entries(session, "person.subject_access")[-1]
        assert entry.seq == export.audit_seq
        assert entry.details["information_requests"] == [str(made.id)]
        assert entry.details["information_request_text"] == "included"
        assert QUESTION not in json.dumps(entry.details)


def test_withheld_referral_details_mean_the_request_text_is_never_decrypted(
    session: Session, store: PersonStore, decisions: Decisions, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = asked_and_answered(session, store, decisions)
    (made,) = requests.for_referral(
        session, store, decisions, OFFICER, reference, now=LATER
    ).requests
    narrow = BASELINE.policy.replace(
        "p, information_governance, *, *, *, subject_access, allow",
        "p, information_governance, *, *, identity, subject_access, allow",
    )
    publish(session, PolicyTexts(BASELINE.model, narrow), actor="test:publisher")
    unwrapped = opened_keys(store, monkeypatch)
    export = subject_access_export(
        session, store, AccessPolicy(), IG, subjects(session, reference)["child"], REF
    )
    (item,) = export.information_requests
    assert (item["text"], item["question"], item["answer"]) == ("withheld", None, None)
    assert item["id"] == str(made.id) and item["outcome"] == "information"
    assert made.id not in unwrapped
    assert "details.referral" in export.withheld["referral"]
    document = json.dumps(export.to_dict())
    assert QUESTION not in document and ANSWER not in document
    entry = entries(session, "person.subject_access")[-1]
    assert entry.details["information_request_text"] == "withheld"


def test_erasing_a_subject_shreds_the_requests_of_their_referrals(
    session: Session, store: PersonStore, decisions: Decisions
) -> None:
    reference = asked_and_answered(session, store, decisions)
    unanswered = ask(
        session, store, decisions, reference, "social_care", now=NOW + dt.timedelta(minutes=6)
    )
    other = rated(session, store, decisions)  # another referral, other persons: kept
    kept = ask(session, store, decisions, other, "police")
    (made, _) = requests.for_referral(
        session, store, decisions, OFFICER, reference, now=LATER
    ).requests
    people = subjects(session, reference)

    report = store.erase_person(session, people["child"], actor="test:eraser", reason="ERA-1")
    assert report.information_requests == 2
    keys = set(session.scalars(select(DataKeyRow.owner_id)))
    assert made.id not in keys and unanswered.id not in keys and kept.id in keys
    (entry,) = entries(session, "person.erase")
    assert entry.details["information_requests"] == sorted([str(made.id), str(unanswered.id)])

    # The rows stay with codes and times; their text is gone for the MASH too.
    listed = requests.for_referral(session, store, decisions, OFFICER, reference, now=LATER)
    assert [(r.id, r.erased, r.question, r.answer, r.outcome) for r in listed.requests] == [
        (made.id, True, None, None, "information"),
        (unanswered.id, True, None, None, None),
    ]
    with pytest.raises(ReferralStateError) as caught:
        requests.answer(
            session,
            store,
            decisions,
            Caller("user:sw-2", "social_worker", "social_care"),
            unanswered.id,
            outcome="nothing_held",
            text=None,
            now=LATER,
        )
    assert caught.value.code == "request_erased"
    (still,) = requests.for_referral(session, store, decisions, OFFICER, other, now=LATER).requests
    assert still.question == QUESTION and not still.erased

    # The other subject's export lists them as erased.
    export = subject_access_export(session, store, AccessPolicy(), IG, people["parent_carer"], REF)
    assert [(i["id"], i["text"], i["question"]) for i in export.information_requests] == [
        (str(made.id), "erased", None),
        (str(unanswered.id), "erased", None),
    ]


def _as_first_release_made_it(
    session: Session, store: PersonStore, request_id: uuid.UUID, question: str
) -> None:
    """Re-seal a request as the first release stored it: under the referral's data key, with
    no key of its own (what a hub upgraded from that release holds)."""
    row = session.get(InformationRequest, request_id)
    assert row is not None
    referral_key = store.keys.ciphers(session, [row.referral_id])[row.referral_id]
    row.question = referral_key.encrypt(
        question, table=requests.TABLE, column=requests.QUESTION_COLUMN, row_id=request_id
    )
    store.keys.shred(session, [request_id])
    session.flush()


def test_a_request_sealed_under_the_referrals_key_is_still_read_answered_and_erased(
    session: Session, store: PersonStore, decisions: Decisions
) -> None:
    """Upgrading must not lose what was asked: a request from before requests had keys of
    their own reads and answers under the referral's key, and erasure still wipes its text
    (that key is shared with the other subjects, so it cannot be shredded)."""
    reference = rated(session, store, decisions)
    made = ask(session, store, decisions, reference, "police")
    _as_first_release_made_it(session, store, made.id, QUESTION)

    (listed,) = requests.for_referral(
        session, store, decisions, OFFICER, reference, now=LATER
    ).requests
    assert (listed.question, listed.erased) == (QUESTION, False)
    requests.answer(
        session, store, decisions, POLICE, made.id, outcome="information", text=ANSWER, now=LATER
    )
    (answered,) = requests.for_referral(
        session, store, decisions, OFFICER, reference, now=LATER
    ).requests
    assert (answered.question, answered.answer) == (QUESTION, ANSWER)

    store.erase_person(
        session, subjects(session, reference)["child"], actor="test:eraser", reason="ERA-2"
    )
    row = session.get(InformationRequest, made.id)
    assert row is not None and row.question == b"" and row.answer is None
    (erased,) = requests.for_referral(
        session, store, decisions, OFFICER, reference, now=LATER
    ).requests
    assert (erased.erased, erased.question, erased.answer) == (True, None, None)
