"""Referral intake, status and triage services on real PostgreSQL with real keys."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from mash_hub.audit.models import AuditEntry
from mash_hub.authz.policy import Caller, Decisions
from mash_hub.matching.model import LinkageModel
from mash_hub.matching.models import LinkRun
from mash_hub.persons.models import SourceRecord
from mash_hub.persons.store import PersonStore
from mash_hub.referrals import service, triage
from mash_hub.referrals.models import Referral, ReferralIdempotencyKey, ReferralSubject
from mash_hub.referrals.schemas import DecisionIn, ReferralIn, cross_field_faults
from mash_hub.referrals.service import (
    IdempotencyConflictError,
    ReferralDeniedError,
    ReferralStateError,
)
from tests.referrals.conftest import (
    AUDITOR,
    CONCERNS,
    CONSENT_REASON,
    OFFICER,
    OTHER_PARTNER,
    PARTNER,
    REFERRER_NAME,
    at,
    body,
    personal_values,
    referral,
)

NOW = at(2026, 3, 10, 14, 10)  # a Tuesday


def submit(
    session: Session,
    store: PersonStore,
    decisions: Decisions,
    data: ReferralIn | None = None,
    *,
    caller: Caller = PARTNER,
    key: str | None = None,
    now: dt.datetime = NOW,
) -> service.Receipt:
    return service.submit(
        session,
        store,
        decisions,
        caller,
        data or referral(),
        idempotency_key=key,
        model=None,
        now=now,
    )


def entries(session: Session, action: str) -> list[AuditEntry]:
    return list(
        session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by("seq"))
    )


def dump(session: Session) -> str:
    """Every row of every table, as text (bytea as hex)."""
    tables = session.scalars(
        text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
    ).all()
    return "\n".join(
        session.scalar(text(f"SELECT coalesce(string_agg(t::text, chr(10)), '') FROM \"{name}\" t"))
        or ""
        for name in tables
    )


def test_intake_stores_subjects_encrypted_and_queues_the_referral(
    session: Session, store: PersonStore, decisions: Decisions
) -> None:
    receipt = submit(session, store, decisions)
    assert service.REFERENCE.match(receipt.reference)
    assert receipt.response["status"] == "received" and not receipt.replayed
    row = session.get(Referral, receipt.referral_id)
    assert row is not None
    assert row.status == "received" and row.rag is None
    assert row.decision_due_at == at(2026, 3, 11, 14, 10)  # one working day
    assert (row.source_code, row.primary_need, row.factors) == ("2A", "N1", ["3C", "18C"])
    assert row.consent == "not_sought_risk" and row.subject_count == 2
    assert row.linkage == "new_persons"  # no full linkage run in this database
    assert row.submitted_by == PARTNER.user_id

    subjects = session.scalars(
        select(ReferralSubject).where(ReferralSubject.referral_id == row.id).order_by("position")
    ).all()
    assert [s.subject_role for s in subjects] == ["child", "parent_carer"]
    records = {r.id: r for r in session.scalars(select(SourceRecord)).all()}
    persons = {records[s.record_id].person_id for s in subjects}
    assert None not in persons and len(persons) == 2  # each subject is a person
    assert all(records[s.record_id].source_agency == "referral" for s in subjects)

    stored = store.read(session, [s.record_id for s in subjects], ["identity", "details.referral"])
    child, parent = (stored[s.record_id].groups for s in subjects)
    assert child["identity"]["family_name"] == "Zqwhitlock"
    assert child["details.referral"] == {
        "reference": receipt.reference,
        "subject_role": "child",
        "concerns": CONCERNS,
    }
    assert "concerns" not in parent["details.referral"]  # only on the subject of concern

    # Standardised like a feed record: the postcode and phone are in their canonical form.
    contact = store.read(session, [subjects[0].record_id], ["contact"])
    assert contact[subjects[0].record_id].groups["contact"]["addresses"][0]["postcode"] == (
        "LS6 2QT"
    )

    # Nothing personal at rest in clear (nor as the hex of its bytes), and none in the audit.
    text_dump = dump(session)
    for value in personal_values():
        assert value not in text_dump, value
        assert value.encode().hex() not in text_dump, value
    (entry,) = entries(session, "referral.submit")
    assert entry.subject_id == str(row.id)
    assert entry.details["records"] == [str(s.record_id) for s in subjects]
    assert entry.details["replayed"] is False


def test_the_same_key_and_body_replays_a_different_body_is_refused(
    session: Session, store: PersonStore, decisions: Decisions
) -> None:
    first = submit(session, store, decisions, key="retry-1")
    again = submit(session, store, decisions, key="retry-1", now=NOW + dt.timedelta(minutes=5))
    assert again.replayed and again.response == first.response
    assert again.reference == first.reference
    assert session.scalar(select(text("count(*)")).select_from(Referral)) == 1

    changed = referral(concerns=CONCERNS + " And she has not eaten since Friday.")
    with pytest.raises(IdempotencyConflictError):
        submit(session, store, decisions, changed, key="retry-1")
    # The key is the client's own: another client may use the same string.
    other = submit(session, store, decisions, caller=OTHER_PARTNER, key="retry-1")
    assert other.reference != first.reference
    # Keys expire after 24 hours, then the same key makes a new referral.
    later = submit(session, store, decisions, key="retry-1", now=NOW + dt.timedelta(hours=25))
    assert not later.replayed and later.reference != first.reference
    keys = session.scalars(select(ReferralIdempotencyKey)).all()
    assert len(keys) == 2 and all(b"retry-1" not in k.key_hash for k in keys)
    replays = [e for e in entries(session, "referral.submit") if e.details["replayed"]]
    assert [e.subject_id for e in replays] == [str(first.referral_id)]


def test_submission_needs_the_permission(
    session: Session, store: PersonStore, decisions: Decisions
) -> None:
    for caller in (AUDITOR, OFFICER, Caller("user:sw", "social_worker", "social_care")):
        with pytest.raises(ReferralDeniedError) as refused:
            submit(session, store, decisions, caller=caller)
        assert refused.value.reason == "role_not_permitted"
    staff = submit(session, store, decisions, caller=Caller("user:pc", "police_officer", "police"))
    assert staff.reference
    denied = entries(session, "authz.denied")
    assert [d.details["requested"] for d in denied] == ["referral.submit"] * 3
    assert session.scalar(select(text("count(*)")).select_from(Referral)) == 1


def test_status_only_for_the_submitter_and_the_same_refusal_otherwise(
    session: Session, store: PersonStore, decisions: Decisions
) -> None:
    receipt = submit(session, store, decisions)
    status = service.status_of(session, store, decisions, PARTNER, receipt.reference)
    assert (status.status, status.feedback) == ("received", [])
    reasons = []
    for caller, reference in (
        (OTHER_PARTNER, receipt.reference),  # another client of another agency
        (Caller("client:school-18", "partner_agency", "education"), receipt.reference),
        (PARTNER, "R-2026-0000ZZZZ"),  # unknown
        (PARTNER, "Zqwhitlock-2015-06-14"),  # not a reference at all
        (AUDITOR, receipt.reference),  # no referral_status
    ):
        with pytest.raises(ReferralDeniedError) as refused:
            service.status_of(session, store, decisions, caller, reference)
        reasons.append(refused.value.reason)
    assert reasons == [
        "not_submitter",
        "not_submitter",
        "unknown_referral",
        "unknown_referral",
        "role_not_permitted",
    ]
    logged = json.dumps([e.details for e in entries(session, "authz.denied")])
    assert "Zqwhitlock" not in logged  # a non-reference is never written to the log
    assert len(entries(session, "referral.status")) == 1


def test_a_submitter_lists_only_its_own_referrals_newest_first(
    session: Session, store: PersonStore, decisions: Decisions
) -> None:
    first = submit(session, store, decisions)
    second = submit(session, store, decisions, now=NOW + dt.timedelta(hours=1))
    submit(session, store, decisions, caller=Caller("client:school-18", "partner_agency",
                                                     "education"))  # fmt: skip
    triage.add_feedback(session, store, decisions, OFFICER, first.reference,
                        text="Thank you, we are looking into it.", now=NOW)  # fmt: skip
    listed, seq = service.referrals_of(session, decisions, PARTNER)
    assert [r.reference for r in listed] == [second.reference, first.reference]
    assert [r.feedback_count for r in listed] == [0, 1]
    assert listed[1].last_feedback_at == NOW
    logged = entries(session, "referral.status.list")
    assert [e.seq for e in logged] == [seq]
    assert logged[0].details["referrals"] == [str(second.referral_id), str(first.referral_id)]
    with pytest.raises(ReferralDeniedError) as refused:
        service.referrals_of(session, decisions, AUDITOR)
    assert refused.value.reason == "role_not_permitted"


def test_triage_rag_decision_feedback_and_what_the_referrer_then_sees(
    session: Session, store: PersonStore, decisions: Decisions
) -> None:
    receipt = submit(session, store, decisions)
    reference = receipt.reference
    rated = triage.set_rag(session, decisions, OFFICER, reference, "amber", now=NOW)
    assert rated.status == "in_triage" and rated.information_due_at == NOW + dt.timedelta(hours=6)
    later = NOW + dt.timedelta(hours=1)
    rerated = triage.set_rag(session, decisions, OFFICER, reference, "red", now=later)
    assert rerated.information_due_at == later + dt.timedelta(hours=2)
    assert rerated.next_due_at == later + dt.timedelta(hours=2)

    view = triage.view(session, store, decisions, OFFICER, reference, now=later)
    assert view.concerns == CONCERNS
    assert view.referrer["name"] == REFERRER_NAME and view.consent_reason == CONSENT_REASON
    assert [s.role for s in view.subjects] == ["child", "parent_carer"]
    assert view.subjects[0].groups["identity"]["given_names"] == ["Zqamara", "Jade"]
    assert all(s.person_id is not None and not s.matched_existing for s in view.subjects)

    reason = "Zqreason: disclosure by the child; strategy discussion with police today."
    decided = triage.decide(
        session,
        store,
        decisions,
        OFFICER,
        reference,
        decision=DecisionIn(
            decision="s47_strategy_discussion", reasons=["significant_harm"], reason_text=reason
        ),
        now=later + dt.timedelta(hours=1),
    )
    assert decided.status == "decided" and decided.next_due_at is None and not decided.overdue
    with pytest.raises(ReferralStateError):
        triage.decide(
            session,
            store,
            decisions,
            OFFICER,
            reference,
            decision=DecisionIn(decision="nfa", reasons=["threshold_not_met"]),
            now=later,
        )
    with pytest.raises(ReferralStateError):
        triage.set_rag(session, decisions, OFFICER, reference, "green", now=later)
    note = "Thank you: the MASH has passed this to children's social care today."
    triage.add_feedback(session, store, decisions, OFFICER, reference, text=note, now=later)

    status = service.status_of(session, store, decisions, PARTNER, reference)
    assert status.status == "decided"
    assert [f.text for f in status.feedback] == [note]
    again = triage.view(session, store, decisions, OFFICER, reference, now=later)
    assert again.decision_text == reason and again.decision_reasons == ["significant_harm"]

    logged = json.dumps([e.details for e in session.scalars(select(AuditEntry))])
    for value in [*personal_values(), reason, note]:
        assert value not in logged
    actions = [e.action for e in session.scalars(select(AuditEntry).order_by("seq"))]
    for action in (
        "referral.submit",
        "referral.triage.rag",
        "referral.triage.view",
        "referral.triage.decision",
        "referral.triage.feedback",
        "referral.status",
    ):
        assert action in actions, action


def test_only_mash_officers_triage(
    session: Session, store: PersonStore, decisions: Decisions
) -> None:
    reference = submit(session, store, decisions).reference
    for caller in (PARTNER, AUDITOR, Caller("user:pc", "police_officer", "police")):
        with pytest.raises(ReferralDeniedError):
            triage.queue(session, decisions, caller, now=NOW)
        with pytest.raises(ReferralDeniedError):
            triage.set_rag(session, decisions, caller, reference, "red", now=NOW)
        with pytest.raises(ReferralDeniedError):
            triage.view(session, store, decisions, caller, reference, now=NOW)
    assert session.get(Referral, submit(session, store, decisions).referral_id) is not None
    assert len(entries(session, "authz.denied")) == 9
    assert entries(session, "referral.triage.rag") == []


def test_cross_field_rules_name_the_field() -> None:
    bad = body(
        subjects=[{"role": "parent_carer", "date_of_birth": "1988-02-03"}],
        factors=["21", "3C"],
        consent={"state": "not_given"},
    )
    faults = cross_field_faults(ReferralIn.model_validate(bad))
    assert {f.loc for f in faults} == {
        ("subjects", 0, "family_name"),
        ("subjects",),
        ("factors",),
        ("consent", "reason"),
    }
    assert cross_field_faults(referral()) == []


def test_a_matching_failure_never_costs_the_referral(
    session: Session, store: PersonStore, decisions: Decisions, caplog: pytest.LogCaptureFixture
) -> None:
    # A full run exists, but the model is unusable (no trained parameters): linking fails.
    session.add(LinkRun(actor="test", model_version=1, model_definition="x", counts={}))
    session.flush()
    broken = LinkageModel(version=1, seed=1, prior=0.01, parameters={})
    receipt = service.submit(
        session, store, decisions, PARTNER, referral(), idempotency_key=None, model=broken, now=NOW
    )
    row = session.get(Referral, receipt.referral_id)
    assert row is not None and row.linkage == "new_persons"
    persons = session.scalars(
        select(SourceRecord.person_id)
        .join(ReferralSubject, ReferralSubject.record_id == SourceRecord.id)
        .where(ReferralSubject.referral_id == row.id)
    ).all()
    assert len(persons) == 2 and None not in persons
    assert entries(session, "linkage.incremental") == []  # rolled back with its savepoint
    assert "real-time linkage failed" in caplog.text
    for value in personal_values():
        assert value not in caplog.text
