"""Information requests on real PostgreSQL with real keys: deadlines from the RAG rating,
refusals (audited), encryption at rest, and one audit entry per call."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from mash_hub.audit.models import AuditEntry
from mash_hub.authz.policy import Caller, Decisions
from mash_hub.persons.store import PersonStore
from mash_hub.referrals import requests, service, triage
from mash_hub.referrals.models import InformationRequest
from mash_hub.referrals.schemas import DecisionIn
from mash_hub.referrals.service import ReferralDeniedError, ReferralStateError
from tests.referrals.conftest import OFFICER, PARTNER, at, personal_values, referral
from tests.referrals.test_service import dump, entries

NOW = at(2026, 3, 10, 14, 10)  # a Tuesday
QUESTION = "Zqquestion: any incidents at 14 Zqrowan Court involving Zqbeverley Whitlock?"
ANSWER = "Zqanswer: two domestic incidents in 2025 at that address; Zqpartner arrested once."
POLICE = Caller("user:pc-7", "police_officer", "police")
OTHER_POLICE = Caller("user:pc-8", "police_officer", "police")
SOCIAL = Caller("user:sw-2", "social_worker", "social_care")
HEALTH_MASH = Caller("user:mash-health", "mash_officer", "health")


def rated(
    session: Session, store: PersonStore, decisions: Decisions, rag: str | None = "red"
) -> str:
    receipt = service.submit(
        session, store, decisions, PARTNER, referral(), idempotency_key=None, model=None, now=NOW
    )
    if rag is not None:
        triage.set_rag(session, decisions, OFFICER, receipt.reference, rag, now=NOW)
    return receipt.reference


def ask(
    session: Session,
    store: PersonStore,
    decisions: Decisions,
    reference: str,
    agency: str = "police",
    *,
    caller: Caller = OFFICER,
    now: dt.datetime = NOW + dt.timedelta(minutes=5),
) -> requests.RequestView:
    return requests.create(
        session,
        store,
        decisions,
        caller,
        reference,
        agency=agency,
        question=QUESTION,
        now=now,
    )


@pytest.mark.parametrize(("rag", "hours"), [("red", 2), ("amber", 6), ("green", 24)])
def test_a_request_is_due_at_the_rag_deadline(
    session: Session, store: PersonStore, decisions: Decisions, rag: str, hours: int
) -> None:
    reference = rated(session, store, decisions, rag)
    made = ask(session, store, decisions, reference)
    assert made.due_at == NOW + dt.timedelta(hours=hours)
    assert made.status == "open" and made.question == QUESTION and made.agency == "police"
    (entry,) = entries(session, "referral.information.request")
    assert entry.details["request_id"] == str(made.id)
    assert entry.details["asked_agency"] == "police"
    assert entry.details["due_at"] == made.due_at.isoformat()

    # Re-rating moves the deadline of every open request with the referral's.
    later = NOW + dt.timedelta(hours=1)
    triage.set_rag(session, decisions, OFFICER, reference, "red", now=later)
    listed = requests.for_referral(session, store, decisions, OFFICER, reference, now=later)
    assert [r.due_at for r in listed.requests] == [later + dt.timedelta(hours=2)]


def test_refused_without_a_rag_rating_or_once_decided(
    session: Session, store: PersonStore, decisions: Decisions
) -> None:
    unrated = rated(session, store, decisions, rag=None)
    with pytest.raises(ReferralStateError) as caught:
        ask(session, store, decisions, unrated)
    assert caught.value.code == "not_rated"

    reference = rated(session, store, decisions)
    decision = DecisionIn(decision="nfa", reasons=["threshold_not_met"])
    triage.decide(session, store, decisions, OFFICER, reference, decision=decision, now=NOW)
    with pytest.raises(ReferralStateError) as caught:
        ask(session, store, decisions, reference)
    assert caught.value.code == "already_decided"
    assert entries(session, "referral.information.request") == []
    with pytest.raises(ValueError, match="agency"):
        ask(session, store, decisions, reference, agency="narnia")


def test_only_the_mash_asks_and_only_the_asked_agency_answers(
    session: Session, store: PersonStore, decisions: Decisions
) -> None:
    reference = rated(session, store, decisions)
    for caller in (POLICE, PARTNER):
        with pytest.raises(ReferralDeniedError):
            ask(session, store, decisions, reference, caller=caller)
    made = ask(session, store, decisions, reference, "police")
    with pytest.raises(ReferralDeniedError):
        requests.for_referral(session, store, decisions, POLICE, reference, now=NOW)
    # Social care is not the agency asked: refused as if the request did not exist.
    with pytest.raises(ReferralDeniedError) as caught:
        requests.answer(
            session, store, decisions, SOCIAL, made.id, outcome="nothing_held", text=None, now=NOW
        )
    assert caught.value.reason == "not_asked_agency"
    assert requests.for_agency(session, store, decisions, SOCIAL, now=NOW).requests == []
    for caller in (OFFICER, PARTNER):  # the MASH officer of social care may not answer
        with pytest.raises(ReferralDeniedError):
            requests.for_agency(session, store, decisions, caller, now=NOW)
    denied = entries(session, "authz.denied")
    assert [e.details["requested"] for e in denied] == [
        "referral.information.request",
        "referral.information.request",
        "referral.information.read",
        "referral.information.answer",
        "referral.information.list",
        "referral.information.list",
    ]
    assert denied[3].details["request_id"] == str(made.id)
    assert denied[3].details["reason"] == "not_asked_agency"

    # Health has no role of its own: the MASH's health practitioner answers for it.
    to_health = ask(session, store, decisions, reference, "health")
    listed = requests.for_agency(session, store, decisions, HEALTH_MASH, now=NOW)
    assert [r.id for r in listed.requests] == [to_health.id]


def test_answers_encrypted_late_allowed_and_once_only(
    session: Session, store: PersonStore, decisions: Decisions
) -> None:
    reference = rated(session, store, decisions, "red")
    to_police = ask(session, store, decisions, reference, "police")
    to_social = ask(
        session, store, decisions, reference, "social_care", now=NOW + dt.timedelta(minutes=6)
    )

    open_now = requests.for_agency(session, store, decisions, POLICE, now=NOW)
    assert [(r.id, r.question, r.answer) for r in open_now.requests] == [
        (to_police.id, QUESTION, None)
    ]
    (listed,) = entries(session, "referral.information.list")
    assert listed.details["requests"] == [str(to_police.id)]
    assert listed.seq == open_now.audit_seq

    on_time = NOW + dt.timedelta(hours=1)
    given = requests.answer(
        session,
        store,
        decisions,
        POLICE,
        to_police.id,
        outcome="information",
        text=ANSWER,
        now=on_time,
    )
    assert (given.status, given.answered_late, given.answer) == ("answered", False, ANSWER)
    with pytest.raises(ReferralStateError) as caught:
        requests.answer(
            session,
            store,
            decisions,
            OTHER_POLICE,
            to_police.id,
            outcome="nothing_held",
            text=None,
            now=on_time,
        )
    assert caught.value.code == "already_answered"
    assert requests.for_agency(session, store, decisions, POLICE, now=on_time).requests == []

    late = NOW + dt.timedelta(hours=3)  # red: due two hours after the rating
    queue = triage.queue(session, decisions, OFFICER, now=late)
    (item,) = queue.items
    assert [(s.agency, s.status) for s in item.information_requests] == [
        ("police", "answered"),
        ("social_care", "overdue"),
    ]
    nothing = requests.answer(
        session,
        store,
        decisions,
        SOCIAL,
        to_social.id,
        outcome="nothing_held",
        text=None,
        now=late,
    )
    assert (nothing.answered_late, nothing.answer) == (True, None)

    read = requests.for_referral(session, store, decisions, OFFICER, reference, now=late)
    assert [(r.agency, r.outcome, r.answer, r.answered_late) for r in read.requests] == [
        ("police", "information", ANSWER, False),
        ("social_care", "nothing_held", None, True),
    ]
    answers = entries(session, "referral.information.answer")
    assert [(e.details["outcome"], e.details["late"]) for e in answers] == [
        ("information", False),
        ("nothing_held", True),
    ]
    assert answers[0].details["answer_sha256"] is not None
    (reading,) = entries(session, "referral.information.read")
    assert reading.details["answered"] == [str(to_police.id), str(to_social.id)]

    # Nothing in clear at rest (nor as hex), nor in any audit entry.
    text_dump = dump(session)
    for value in [QUESTION, ANSWER, "Zqquestion", "Zqanswer", *personal_values()]:
        assert value not in text_dump, value
        assert value.encode().hex() not in text_dump, value
    stored = session.scalars(select(InformationRequest)).all()
    assert all(b"Zq" not in bytes(r.question) for r in stored)
    audit_text = " ".join(str(e.details) for e in session.scalars(select(AuditEntry)).all())
    assert "Zq" not in audit_text


def test_a_decided_referral_closes_its_open_requests(
    session: Session, store: PersonStore, decisions: Decisions
) -> None:
    reference = rated(session, store, decisions)
    made = ask(session, store, decisions, reference)
    decision = DecisionIn(decision="nfa", reasons=["threshold_not_met"])
    triage.decide(session, store, decisions, OFFICER, reference, decision=decision, now=NOW)
    assert requests.for_agency(session, store, decisions, POLICE, now=NOW).requests == []
    with pytest.raises(ReferralStateError) as caught:
        requests.answer(
            session, store, decisions, POLICE, made.id, outcome="nothing_held", text=None, now=NOW
        )
    assert caught.value.code == "already_decided"
    read = requests.for_referral(session, store, decisions, OFFICER, reference, now=NOW)
    assert [r.status for r in read.requests] == ["closed"]
