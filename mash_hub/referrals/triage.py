"""The MASH triage queue: RAG ratings, deadlines, decisions and feedback (``referral_triage``).

Queue order (most urgent first):

1. open referrals (not yet decided) before decided ones;
2. overdue first: a referral is overdue when its next deadline (the earlier of the decision
   due time and, once RAG-rated, the information due time) has passed;
3. among overdue referrals, by RAG (red, not yet rated, amber, green: an unrated referral may
   turn out red), then by the deadline; among the others, by the deadline, then by RAG;
4. decided referrals, most recently decided first; then by receipt time.

Every read and change is audited in the caller's transaction (``referral.triage.list``,
``.view``, ``.rag``, ``.decision``, ``.feedback``), before anything is decrypted. Free text
(decision reasons, feedback) is encrypted under the referral's data key; the audit entry
holds the SHA-256 of the ciphertext only.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from mash_hub import audit as audit_log
from mash_hub.audit import AuditEvent
from mash_hub.authz.policy import Caller, Decisions
from mash_hub.persons.models import RecordFieldGroup, SourceRecord
from mash_hub.persons.store import PersonStore
from mash_hub.referrals.codes import DECIDED, IN_TRIAGE, SUBJECTS_OF_CONCERN
from mash_hub.referrals.deadlines import information_due
from mash_hub.referrals.models import Referral, ReferralFeedback, ReferralSubject
from mash_hub.referrals.requests import RequestSummary, summaries
from mash_hub.referrals.schemas import DecisionIn
from mash_hub.referrals.service import (
    DECISION_COLUMN,
    FEEDBACK_COLUMN,
    FEEDBACK_TABLE,
    REFERRAL_GROUP,
    SEALED_GROUP,
    SOURCE,
    TABLE,
    TRIAGE,
    Feedback,
    ReferralStateError,
    cipher_of,
    deny,
    find,
    read_feedback,
    sha256_hex,
)

QUEUE_FILTERS = ("open", "decided", "all")
# An unrated referral may turn out red: it ranks between red and amber.
RAG_RANK: dict[str | None, int] = {"red": 0, None: 1, "amber": 2, "green": 3}


@dataclass(frozen=True)
class QueueItem:
    """One referral in the queue: codes, times and counts only (nothing to decrypt)."""

    id: uuid.UUID
    reference: str
    received_at: dt.datetime
    status: str
    rag: str | None
    rag_set_at: dt.datetime | None
    information_due_at: dt.datetime | None
    decision_due_at: dt.datetime
    next_due_at: dt.datetime | None
    overdue: bool
    decision: str | None
    decided_at: dt.datetime | None
    subjects: int
    source: str
    primary_need: str
    consent: str
    # The information requests to agencies and their status (codes only).
    information_requests: tuple[RequestSummary, ...] = ()


@dataclass(frozen=True)
class Queue:
    now: dt.datetime
    policy_version: int | None
    audit_seq: int
    items: list[QueueItem]


@dataclass(frozen=True)
class SubjectView:
    position: int
    role: str
    record_id: uuid.UUID
    person_id: uuid.UUID | None
    matched_existing: bool
    groups: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class TriageView:
    """Everything the MASH officer may see of one referral."""

    item: QueueItem
    submitter_role: str
    submitter_agency: str
    factors: list[str]
    linkage: str
    consent_reason: str | None
    referrer: dict[str, Any]
    concerns: str | None
    decision_reasons: list[str]
    decision_text: str | None
    subjects: list[SubjectView]
    feedback: list[Feedback]
    policy_version: int | None
    audit_seq: int
    shown: dict[str, list[str]] = field(default_factory=dict)


def _require(
    session: Session,
    decisions: Decisions,
    caller: Caller,
    requested: str,
    reference: str | None = None,
    *,
    lock: bool = True,
) -> Referral | None:
    """Refuse (audited) a caller without ``referral_triage``; with a reference, the referral
    (locked for update unless ``lock`` is false; an unknown one is refused the same way)."""
    if not decisions.allows(caller, TRIAGE):
        deny(session, caller, decisions, requested, "role_not_permitted", reference=reference)
    if reference is None:
        return None
    referral = find(session, reference, for_update=lock)
    if referral is None:
        deny(session, caller, decisions, requested, "unknown_referral", reference=reference)
    return referral


def _next_due(referral: Referral) -> dt.datetime | None:
    if referral.status == DECIDED:
        return None
    due = referral.decision_due_at
    if referral.information_due_at is not None:
        due = min(due, referral.information_due_at)
    return due


def item_of(
    referral: Referral, now: dt.datetime, requests: tuple[RequestSummary, ...] = ()
) -> QueueItem:
    next_due = _next_due(referral)
    return QueueItem(
        id=referral.id,
        reference=referral.reference,
        received_at=referral.received_at,
        status=referral.status,
        rag=referral.rag,
        rag_set_at=referral.rag_set_at,
        information_due_at=referral.information_due_at,
        decision_due_at=referral.decision_due_at,
        next_due_at=next_due,
        overdue=next_due is not None and next_due <= now,
        decision=referral.decision,
        decided_at=referral.decided_at,
        subjects=referral.subject_count,
        source=referral.source_code,
        primary_need=referral.primary_need,
        consent=referral.consent,
        information_requests=requests,
    )


def _item_with_requests(session: Session, referral: Referral, now: dt.datetime) -> QueueItem:
    return item_of(referral, now, summaries(session, [referral], now).get(referral.id, ()))


def queue(
    session: Session,
    decisions: Decisions,
    caller: Caller,
    *,
    now: dt.datetime,
    status: str = "open",
    limit: int = 100,
) -> Queue:
    """The triage queue, most urgent first (module docstring); audited with the ids listed."""
    if status not in QUEUE_FILTERS:
        raise ValueError(f"status must be one of {', '.join(QUEUE_FILTERS)}")
    _require(session, decisions, caller, "referral.triage.list")
    is_open = Referral.status != DECIDED
    next_due = case(
        (Referral.information_due_at.is_(None), Referral.decision_due_at),
        else_=func.least(Referral.decision_due_at, Referral.information_due_at),
    )
    overdue = is_open & (next_due <= now)
    rag_rank = case(
        *((Referral.rag == rag, rank) for rag, rank in RAG_RANK.items() if rag is not None),
        else_=RAG_RANK[None],
    )
    query = select(Referral).order_by(
        case((is_open, 0), else_=1),
        case((overdue, 0), else_=1),
        case((overdue, rag_rank), else_=0),
        case((is_open, next_due), else_=None),
        case((is_open, rag_rank), else_=0),
        Referral.decided_at.desc(),
        Referral.received_at,
        Referral.id,
    )
    if status == "open":
        query = query.where(is_open)
    elif status == "decided":
        query = query.where(Referral.status == DECIDED)
    rows = list(session.scalars(query.limit(limit)))
    asked = summaries(session, rows, now)
    items = [item_of(row, now, asked.get(row.id, ())) for row in rows]
    seq = audit_log.record(
        session,
        AuditEvent(
            caller.user_id,
            "referral.triage.list",
            "referral_queue",
            None,
            {
                "filter": status,
                "count": len(items),
                "referrals": [str(i.id) for i in items],
                "role": caller.role,
                "agency": caller.agency,
                "policy_version": decisions.version,
            },
        ),
    )
    return Queue(now=now, policy_version=decisions.version, audit_seq=seq, items=items)


def view(
    session: Session,
    store: PersonStore,
    decisions: Decisions,
    caller: Caller,
    reference: str,
    *,
    now: dt.datetime,
) -> TriageView:
    """One referral for triage: codes, referrer, consent, concerns, subjects (only the field
    groups the policy allows for ``referral`` records), decision and feedback."""
    referral = _require(session, decisions, caller, "referral.triage.view", reference, lock=False)
    assert referral is not None
    subjects = list(
        session.execute(
            select(ReferralSubject, SourceRecord.person_id)
            .join(SourceRecord, SourceRecord.id == ReferralSubject.record_id)
            .where(ReferralSubject.referral_id == referral.id)
            .order_by(ReferralSubject.position)
        )
    )
    record_ids = [subject.record_id for subject, _ in subjects]
    present = _present_groups(session, record_ids)
    mask = decisions.mask(caller, SOURCE)
    shown = {
        str(rid): sorted(mask & present.get(rid, set())) for rid in record_ids if rid in present
    }
    groups = sorted({g for names in shown.values() for g in names})
    feedback_rows = list(
        session.scalars(
            select(ReferralFeedback)
            .where(ReferralFeedback.referral_id == referral.id)
            .order_by(ReferralFeedback.created_at, ReferralFeedback.id)
        )
    )
    seq = audit_log.record(
        session,
        AuditEvent(
            caller.user_id,
            "referral.triage.view",
            "referral",
            str(referral.id),
            {
                "reference": referral.reference,
                "shown": shown,
                "feedback": [str(r.id) for r in feedback_rows],
                "role": caller.role,
                "agency": caller.agency,
                "policy_version": decisions.version,
            },
        ),
    )
    stored = store.read(session, record_ids, groups)
    subject_views = [
        SubjectView(
            position=subject.position,
            role=subject.subject_role,
            record_id=subject.record_id,
            person_id=person_id,
            matched_existing=subject.matched_existing,
            groups={
                g: values
                for g, values in (
                    stored[subject.record_id].groups if subject.record_id in stored else {}
                ).items()
                if g in shown.get(str(subject.record_id), ())
            },
        )
        for subject, person_id in subjects
    ]
    concerns = next(
        (
            s.groups[REFERRAL_GROUP].get("concerns")
            for s in subject_views
            if s.role in SUBJECTS_OF_CONCERN and REFERRAL_GROUP in s.groups
        ),
        None,
    )
    cipher = cipher_of(session, store, referral)
    sealed = cipher.decrypt_group(
        bytes(referral.sealed), table=TABLE, group=SEALED_GROUP, row_id=referral.id
    )
    decision_text = None
    if referral.decision_text is not None:
        decision_text = cipher.decrypt_text(
            bytes(referral.decision_text), table=TABLE, column=DECISION_COLUMN, row_id=referral.id
        )
    referrer = sealed.get("referrer")
    consent_reason = sealed.get("consent_reason")
    return TriageView(
        item=_item_with_requests(session, referral, now),
        submitter_role=referral.submitter_role,
        submitter_agency=referral.submitter_agency,
        factors=list(referral.factors),
        linkage=referral.linkage,
        consent_reason=consent_reason if isinstance(consent_reason, str) else None,
        referrer=dict(referrer) if isinstance(referrer, dict) else {},
        concerns=concerns if isinstance(concerns, str) else None,
        decision_reasons=list(referral.decision_reasons or []),
        decision_text=decision_text,
        subjects=subject_views,
        feedback=read_feedback(session, store, referral, feedback_rows),
        policy_version=decisions.version,
        audit_seq=seq,
        shown=shown,
    )


def _present_groups(session: Session, record_ids: list[uuid.UUID]) -> dict[uuid.UUID, set[str]]:
    """Which groups each record holds (names only: nothing is decrypted)."""
    out: dict[uuid.UUID, set[str]] = {}
    if not record_ids:
        return out
    for record_id, group in session.execute(
        select(RecordFieldGroup.record_id, RecordFieldGroup.group_name).where(
            RecordFieldGroup.record_id.in_(record_ids)
        )
    ):
        out.setdefault(record_id, set()).add(group)
    return out


def set_rag(
    session: Session,
    decisions: Decisions,
    caller: Caller,
    reference: str,
    rag: str,
    *,
    now: dt.datetime,
) -> QueueItem:
    """Rate (or re-rate) an undecided referral; information is due from now by the rating."""
    referral = _require(session, decisions, caller, "referral.triage.rag", reference)
    assert referral is not None
    if referral.status == DECIDED:
        raise ReferralStateError("already_decided", "the referral has been decided")
    previous = referral.rag
    referral.rag = rag
    referral.rag_set_at = now
    referral.rag_set_by = caller.user_id
    referral.information_due_at = information_due(rag, now)
    referral.status = IN_TRIAGE
    referral.updated_at = now
    session.flush()
    audit_log.record(
        session,
        AuditEvent(
            caller.user_id,
            "referral.triage.rag",
            "referral",
            str(referral.id),
            {
                "reference": referral.reference,
                "from": previous,
                "to": rag,
                "information_due_at": referral.information_due_at.isoformat(),
                "role": caller.role,
                "agency": caller.agency,
            },
        ),
    )
    return _item_with_requests(session, referral, now)


def decide(
    session: Session,
    store: PersonStore,
    decisions: Decisions,
    caller: Caller,
    reference: str,
    *,
    decision: DecisionIn,
    now: dt.datetime,
) -> QueueItem:
    """Record the MASH decision with its reasons (once; a decided referral leaves the queue)."""
    referral = _require(session, decisions, caller, "referral.triage.decision", reference)
    assert referral is not None
    if referral.status == DECIDED:
        raise ReferralStateError("already_decided", "the referral has already been decided")
    late = now > referral.decision_due_at
    sealed_hash = None
    if decision.reason_text is not None:
        ciphertext = cipher_of(session, store, referral).encrypt(
            decision.reason_text, table=TABLE, column=DECISION_COLUMN, row_id=referral.id
        )
        referral.decision_text = ciphertext
        sealed_hash = sha256_hex(ciphertext)
    referral.decision = decision.decision
    referral.decision_reasons = list(decision.reasons)
    referral.decided_at = now
    referral.decided_by = caller.user_id
    referral.status = DECIDED
    referral.updated_at = now
    session.flush()
    audit_log.record(
        session,
        AuditEvent(
            caller.user_id,
            "referral.triage.decision",
            "referral",
            str(referral.id),
            {
                "reference": referral.reference,
                "decision": decision.decision,
                "reasons": list(decision.reasons),
                "reason_text_sha256": sealed_hash,
                "after_due": late,
                "role": caller.role,
                "agency": caller.agency,
            },
        ),
    )
    return _item_with_requests(session, referral, now)


def add_feedback(
    session: Session,
    store: PersonStore,
    decisions: Decisions,
    caller: Caller,
    reference: str,
    *,
    text: str,
    now: dt.datetime,
) -> Feedback:
    """Feedback the referrer will see with the status (encrypted; audited by hash)."""
    referral = _require(session, decisions, caller, "referral.triage.feedback", reference)
    assert referral is not None
    feedback_id = uuid.uuid4()
    ciphertext = cipher_of(session, store, referral).encrypt(
        text, table=FEEDBACK_TABLE, column=FEEDBACK_COLUMN, row_id=feedback_id
    )
    session.add(
        ReferralFeedback(
            id=feedback_id,
            referral_id=referral.id,
            created_at=now,
            author=caller.user_id,
            ciphertext=ciphertext,
        )
    )
    referral.updated_at = now
    session.flush()
    audit_log.record(
        session,
        AuditEvent(
            caller.user_id,
            "referral.triage.feedback",
            "referral",
            str(referral.id),
            {
                "reference": referral.reference,
                "feedback_id": str(feedback_id),
                "ciphertext_sha256": sha256_hex(ciphertext),
                "role": caller.role,
                "agency": caller.agency,
            },
        ),
    )
    return Feedback(feedback_id, now, text)
