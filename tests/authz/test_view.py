"""The person view's rules: purpose, denials, break-glass, fail-closed, no free text in audit."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

import mash_hub.audit
from mash_hub.audit.models import AuditEntry
from mash_hub.authz.models import AccessJustification
from mash_hub.authz.policy import AccessPolicy, Caller, PolicyNotPublishedError
from mash_hub.authz.versions import publish
from mash_hub.casework.view import (
    AccessDeniedError,
    BreakGlass,
    InvalidPurposeError,
    Purpose,
    list_break_glass_for_review,
    read_justification,
    review_break_glass,
    view_person,
)
from mash_hub.crypto.keys import LocalKeyringProvider
from mash_hub.db.engine import Database
from mash_hub.persons.store import NewRecord, PersonStore
from tests.authz.conftest import BASELINE, Household, add_person, add_referral

SOCIAL_WORKER = Caller("user:sw-17", "social_worker", "social_care")
PURPOSE_TEXT = "Strategy meeting prep for Jayden Okafor, 14 Harehills Lane"
JUSTIFICATION = "Urgent: child missing overnight, possible exploitation by Kieran Doyle."


def entries(session: Session, action: str) -> list[AuditEntry]:
    return list(
        session.scalars(
            select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)
        )
    )


# -- purpose --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"code": "mash_triage"},  # a reason code needs text
        {"code": "mash_triage", "text": "short"},
        {"code": "mash_triage", "text": "x" * 501},
        {"code": "gossip", "text": "I was curious about them"},
        {"code": "mash_triage", "referral": "REF-1", "text": "both given here"},
        {"referral": "not a reference"},
        {"referral": "ABCDEF"},  # no digit: a word, not a reference
    ],
)
def test_invalid_purposes_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidPurposeError) as error:
        Purpose(**kwargs)
    assert "Okafor" not in str(error.value)


def test_valid_purposes() -> None:
    assert Purpose(referral="MASH/2026/00417").audit_fields() == {"referral": "MASH/2026/00417"}
    purpose = Purpose(code="section_47_enquiry", text=PURPOSE_TEXT)
    assert purpose.audit_fields() == {"code": "section_47_enquiry"}
    with pytest.raises(InvalidPurposeError):
        BreakGlass("because")


def test_no_purpose_is_denied_audited_and_decrypts_nothing(
    session: Session,
    store: PersonStore,
    policy: AccessPolicy,
    household: Household,
    decrypted: list[tuple[uuid.UUID, str]],
) -> None:
    with pytest.raises(AccessDeniedError, match="purpose") as denied:
        view_person(session, store, policy, SOCIAL_WORKER, household.person_id, None)
    assert denied.value.reason == "purpose_missing"
    assert decrypted == []
    (entry,) = entries(session, "authz.denied")
    assert entry.seq == denied.value.audit_seq
    assert entry.subject_id == str(household.person_id)
    assert entry.details["reason"] == "purpose_missing"
    assert entries(session, "person.view") == []


@pytest.mark.parametrize("role", ["auditor", "admin", "partner_agency", "no_such_role"])
def test_roles_without_person_access_are_denied_and_audited(
    role: str,
    session: Session,
    store: PersonStore,
    policy: AccessPolicy,
    household: Household,
    decrypted: list[tuple[uuid.UUID, str]],
) -> None:
    caller = Caller(f"user:{role}", role, "council")
    purpose = Purpose(referral="MASH/2026/00417")
    with pytest.raises(AccessDeniedError) as denied:
        view_person(session, store, policy, caller, household.person_id, purpose)
    assert denied.value.reason == "role_not_permitted"
    assert decrypted == []
    (entry,) = entries(session, "authz.denied")
    assert entry.actor == f"user:{role}" and entry.details["role"] == role


def test_unknown_person_is_denied_like_a_forbidden_one(
    session: Session, store: PersonStore, policy: AccessPolicy
) -> None:
    with pytest.raises(AccessDeniedError) as denied:
        view_person(
            session, store, policy, SOCIAL_WORKER, uuid.uuid4(), Purpose(referral="R-00001")
        )
    assert denied.value.reason == "unknown_person"


def test_nothing_is_served_before_a_policy_is_published(
    session: Session, store: PersonStore, household: Household
) -> None:
    with pytest.raises(PolicyNotPublishedError):
        view_person(
            session,
            store,
            AccessPolicy(),
            SOCIAL_WORKER,
            household.person_id,
            Purpose(referral="R-00001"),
        )


# -- the audit entry ------------------------------------------------------------------------


def test_one_audit_entry_per_view_without_free_text(
    session: Session, store: PersonStore, policy: AccessPolicy, household: Household
) -> None:
    purpose = Purpose(code="strategy_discussion", text=PURPOSE_TEXT)
    view = view_person(session, store, policy, SOCIAL_WORKER, household.person_id, purpose)
    (entry,) = entries(session, "person.view")
    assert entry.seq == view.audit_seq
    assert entry.actor == "user:sw-17" and entry.subject_id == str(household.person_id)
    details = entry.details
    assert details["purpose"] == {"code": "strategy_discussion"}
    assert details["shown"] == {
        "police": ["contact", "details.warning_markers", "identifiers", "identity"],
        "council": ["contact", "details.education", "details.housing", "identifiers", "identity"],
        # The social worker's own agency's quality group: shown as a count, never decrypted.
        "social_care": ["contact", "details.case", "identifiers", "identity", "quality"],
        "referral": ["contact", "details.referral", "identifiers", "identity"],
    }
    assert details["break_glass"] is False and "review_required" not in details
    dumped = json.dumps(details)
    assert "Okafor" not in dumped and "Harehills" not in dumped
    assert "SECRET" not in dumped  # no personal values either
    # The free text is kept encrypted, bound to the audit entry by its ciphertext's hash.
    row = session.get(AccessJustification, uuid.UUID(details["purpose_text"]["id"]))
    assert row is not None and b"Okafor" not in bytes(row.ciphertext)
    assert read_justification(session, store, row.id, reader="user:dpo") == PURPOSE_TEXT
    assert entries(session, "justification.read")[0].subject_id == str(row.id)


def test_fail_closed_when_the_audit_append_fails(
    session: Session,
    store: PersonStore,
    policy: AccessPolicy,
    household: Household,
    decrypted: list[tuple[uuid.UUID, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    policy.for_session(session)  # compile first, so the failure is the audit's alone

    def broken(session: Session, event: object) -> int:
        raise RuntimeError("audit log unavailable")

    monkeypatch.setattr(mash_hub.audit, "record", broken)
    result: list[object] = []
    for glass in (None, BreakGlass(JUSTIFICATION)):
        with pytest.raises(RuntimeError, match="audit log unavailable"):
            result.append(
                view_person(
                    session,
                    store,
                    policy,
                    SOCIAL_WORKER,
                    household.person_id,
                    Purpose(referral="R-00001"),
                    glass,
                )
            )
    assert result == []
    assert decrypted == []  # nothing was decrypted, so nothing could escape


# -- break-glass ----------------------------------------------------------------------------


def test_break_glass_widens_the_mask_and_is_flagged_for_review(
    session: Session, store: PersonStore, policy: AccessPolicy, household: Household
) -> None:
    add_referral(session, [household.records["referral"]], "MASH/2026/00417")
    purpose = Purpose(referral="MASH/2026/00417")
    normal = view_person(session, store, policy, SOCIAL_WORKER, household.person_id, purpose)
    assert "details.incidents" not in normal.shown()["police"]
    glass = view_person(
        session,
        store,
        policy,
        SOCIAL_WORKER,
        household.person_id,
        purpose,
        BreakGlass(JUSTIFICATION),
    )
    assert glass.break_glass and "details.incidents" in glass.shown()["police"]
    entry = entries(session, "person.view")[-1]
    assert entry.details["break_glass"] is True and entry.details["review_required"] is True
    assert entry.details["beyond_normal_mask"] == {
        "police": ["details.incidents", "quality"],
        "council": ["quality"],
        "referral": ["quality"],
    }
    assert "Doyle" not in json.dumps(entry.details)

    (item,) = list_break_glass_for_review(session)
    assert item.audit_seq == glass.audit_seq and item.person_id == household.person_id
    assert item.actor == "user:sw-17"
    assert read_justification(session, store, item.justification_id, reader="dpo") == JUSTIFICATION
    review_break_glass(session, item.id, reviewer="user:dpo", outcome="justified")
    assert list_break_glass_for_review(session) == []
    assert entries(session, "break_glass.review")[0].details["outcome"] == "justified"
    with pytest.raises(ValueError, match="already reviewed"):
        review_break_glass(session, item.id, reviewer="user:dpo", outcome="justified")


def test_break_glass_by_a_role_that_may_not_is_denied(
    session: Session,
    store: PersonStore,
    policy: AccessPolicy,
    household: Household,
    decrypted: list[tuple[uuid.UUID, str]],
) -> None:
    council = Caller("user:co-3", "council_officer", "council")
    with pytest.raises(AccessDeniedError) as denied:
        view_person(
            session,
            store,
            policy,
            council,
            household.person_id,
            Purpose(referral="R-00001"),
            BreakGlass(JUSTIFICATION),
        )
    assert denied.value.reason == "break_glass_not_permitted"
    assert decrypted == [] and list_break_glass_for_review(session) == []


def test_sources_with_nothing_visible_are_not_listed(
    session: Session, store: PersonStore, policy: AccessPolicy
) -> None:
    """A source whose records hold nothing the caller may see is not even named."""
    person_id = store.new_person(session)
    police_record, _ = store.add(
        session,
        [
            NewRecord(
                feed="police_feed",
                source_agency="police",
                source_record_id="P-1",
                groups={"details.incidents": {"value": "SECRET-incident"}},
                index_fields={},
                person_id=person_id,
            ),
            NewRecord(
                feed="council_feed",
                source_agency="council",
                source_record_id="C-1",
                groups={"identity": {"value": "SECRET-identity"}},
                index_fields={},
                person_id=person_id,
            ),
        ],
    )
    add_referral(session, [police_record], "R-00001")
    view = view_person(
        session,
        store,
        policy,
        Caller("user:co-3", "council_officer", "council"),
        person_id,
        Purpose(referral="R-00001"),
    )
    assert set(view.sources) == {"council"}
    assert "police" not in json.dumps(view.to_dict())
    assert entries(session, "person.view")[0].details["shown"] == {"council": ["identity"]}


def test_a_denial_commits_with_the_unit_of_work(
    committing_database: Database, keyring: LocalKeyringProvider
) -> None:
    """The owner catches AccessDeniedError inside the transaction, so the denial is kept."""
    store = PersonStore.from_provider(keyring)
    policy = AccessPolicy()
    with committing_database.transaction() as session:
        publish(session, BASELINE, actor="test")
        person = add_person(session, store)
    seq = None
    with committing_database.transaction() as session:
        try:
            view_person(session, store, policy, SOCIAL_WORKER, person.person_id, None)
        except AccessDeniedError as denied:
            seq = denied.audit_seq
    assert seq is not None
    with committing_database.transaction() as session:
        entry = session.get(AuditEntry, seq)
        assert entry is not None and entry.action == "authz.denied"


def test_erasure_also_shreds_justifications_about_the_person(
    session: Session, store: PersonStore, policy: AccessPolicy, household: Household
) -> None:
    purpose = Purpose(code="strategy_discussion", text=PURPOSE_TEXT)
    view = view_person(session, store, policy, SOCIAL_WORKER, household.person_id, purpose)
    (entry,) = entries(session, "person.view")
    assert entry.seq == view.audit_seq
    justification = uuid.UUID(entry.details["purpose_text"]["id"])
    store.erase_person(session, household.person_id, actor="cli:test", reason="ERASE-9")
    assert store.keys.ciphers(session, [justification]) == {}
    with pytest.raises(LookupError):
        read_justification(session, store, justification, reader="user:dpo")
