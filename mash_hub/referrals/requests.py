"""Information requests: the MASH asks a partner agency what it holds about a referral.

Once a referral is RAG-rated, the MASH officer (``referral_triage``) asks each agency it needs
(police, council, social care, health, education) a question; the agency's staff answer with
what they hold, or "nothing held".

* :func:`create`: one agency, one question; refused while the referral has no RAG rating and
  once it is decided. A request is due at the referral's information deadline (2, 6 or 24 hours
  after the RAG rating), read from the referral, so re-rating moves it for every open request.
* :func:`for_referral` (``referral_triage``): a referral's requests with questions and answers.
* :func:`for_agency` (``information_respond``): the open requests addressed to the caller's own
  agency, with their questions; other agencies' requests are never listed.
* :func:`answer` (``information_respond`` and the caller's agency is the one asked): allowed
  after the deadline, then recorded as late; refused once answered or once the referral is
  decided (the request is then closed).
* :func:`summaries`: codes and times only, for the triage queue (inside its audited listing).
* :func:`for_subject_access`: a person's requests for the subject-access export (the caller
  has audited it and says whether the policy lets the text be decrypted).

Every call is audited in the caller's transaction before anything is decrypted
(``referral.information.request`` / ``.read`` / ``.list`` / ``.answer``: ids, codes and the
SHA-256 of ciphertexts only); refusals through :func:`~mash_hub.authz.refusals.record_refusal`.
The question and the answer are AES-256-GCM ciphertexts under the request's own data key
(``data_keys`` owner = request id), bound to the request's id: erasing any person the referral
concerns shreds that key (:func:`ids_for_records`, called by
:meth:`~mash_hub.persons.store.PersonStore.erase_person`) and leaves the request's codes and
times, listed as ``erased``. Services never commit.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mash_hub import audit as audit_log
from mash_hub.audit import AuditEvent
from mash_hub.authz.policy import Caller, Decisions
from mash_hub.authz.refusals import record_refusal
from mash_hub.crypto.envelope import FieldCipher
from mash_hub.persons.store import PersonStore
from mash_hub.referrals.codes import (
    DECIDED,
    NOTHING_HELD,
    REQUEST_AGENCIES,
    REQUEST_ANSWERED,
    REQUEST_CLOSED,
    REQUEST_OPEN,
    REQUEST_OVERDUE,
)
from mash_hub.referrals.models import InformationRequest, Referral, ReferralSubject
from mash_hub.referrals.service import (
    REFERENCE,
    TRIAGE,
    ReferralDeniedError,
    ReferralStateError,
    find,
    sha256_hex,
)

RESPOND = "information_respond"
TABLE = "information_requests"
QUESTION_COLUMN = "question"
ANSWER_COLUMN = "answer"


@dataclass(frozen=True)
class RequestSummary:
    """One request as the queue shows it: no text."""

    id: uuid.UUID
    agency: str
    status: str
    due_at: dt.datetime | None


@dataclass(frozen=True)
class RequestView:
    """One request with its question and, once answered, the answer."""

    id: uuid.UUID
    reference: str
    agency: str
    status: str
    requested_at: dt.datetime
    due_at: dt.datetime | None
    question: str | None  # None once erased
    answered_at: dt.datetime | None
    outcome: str | None
    answered_late: bool | None
    answer: str | None
    erased: bool = False


@dataclass(frozen=True)
class Listing:
    requests: list[RequestView]
    audit_seq: int


def _deny(
    session: Session,
    caller: Caller,
    decisions: Decisions,
    requested: str,
    reason: str,
    *,
    reference: str | None = None,
    request_id: uuid.UUID | None = None,
    referral: Referral | None = None,
) -> NoReturn:
    details: dict[str, Any] = {}
    if reference is not None and REFERENCE.match(reference):
        details["reference"] = reference  # never a value that is not a reference
    if request_id is not None:
        details["request_id"] = str(request_id)
    seq = record_refusal(
        session,
        caller,
        decisions,
        requested,
        reason=reason,
        subject_type="referral",
        subject_id=None if referral is None else str(referral.id),
        **details,
    )
    raise ReferralDeniedError(reason, seq)


def _referral_for_triage(
    session: Session, decisions: Decisions, caller: Caller, requested: str, reference: str
) -> Referral:
    if not decisions.allows(caller, TRIAGE):
        _deny(session, caller, decisions, requested, "role_not_permitted", reference=reference)
    referral = find(session, reference, for_update=True)
    if referral is None:
        _deny(session, caller, decisions, requested, "unknown_referral", reference=reference)
    return referral


def status_of(row: InformationRequest, referral: Referral, now: dt.datetime) -> str:
    if row.answered_at is not None:
        return REQUEST_ANSWERED
    if referral.status == DECIDED:
        return REQUEST_CLOSED
    due = referral.information_due_at
    return REQUEST_OVERDUE if due is not None and due <= now else REQUEST_OPEN


def create(
    session: Session,
    store: PersonStore,
    decisions: Decisions,
    caller: Caller,
    reference: str,
    *,
    agency: str,
    question: str,
    now: dt.datetime,
) -> RequestView:
    """Ask ``agency`` what it holds; due at the referral's information deadline."""
    if agency not in REQUEST_AGENCIES:
        raise ValueError(f"the agency must be one of {', '.join(REQUEST_AGENCIES)}")
    requested = "referral.information.request"
    referral = _referral_for_triage(session, decisions, caller, requested, reference)
    if referral.status == DECIDED:
        raise ReferralStateError("already_decided", "the referral has been decided")
    if referral.rag is None or referral.information_due_at is None:
        raise ReferralStateError(
            "not_rated", "the referral has no RAG rating yet: rate it before asking agencies"
        )
    request_id = uuid.uuid4()
    # A key of its own, so erasing a person the referral concerns can shred the request alone.
    issued = store.keys.issue(request_id)
    store.keys.save(session, [issued.row])
    ciphertext = issued.cipher.encrypt(
        question, table=TABLE, column=QUESTION_COLUMN, row_id=request_id
    )
    row = InformationRequest(
        id=request_id,
        referral_id=referral.id,
        agency=agency,
        requested_at=now,
        requested_by=caller.user_id,
        question=ciphertext,
    )
    session.add(row)
    referral.updated_at = now
    session.flush()
    audit_log.record(
        session,
        AuditEvent(
            caller.user_id,
            requested,
            "referral",
            str(referral.id),
            {
                "reference": referral.reference,
                "request_id": str(request_id),
                "asked_agency": agency,
                "due_at": referral.information_due_at.isoformat(),
                "question_sha256": sha256_hex(ciphertext),
                "role": caller.role,
                "agency": caller.agency,
                "policy_version": decisions.version,
            },
        ),
    )
    return RequestView(
        id=request_id,
        reference=referral.reference,
        agency=agency,
        status=status_of(row, referral, now),
        requested_at=now,
        due_at=referral.information_due_at,
        question=question,
        answered_at=None,
        outcome=None,
        answered_late=None,
        answer=None,
    )


def _views(
    session: Session,
    store: PersonStore,
    pairs: Sequence[tuple[InformationRequest, Referral]],
    now: dt.datetime,
    *,
    answers: bool,
) -> list[RequestView]:
    """Decrypt questions (and, with ``answers``, answers): the caller has audited the read.
    A request whose key was shredded (erasure) comes without text, marked ``erased``."""
    ciphers = _ciphers(session, store, pairs)
    out: list[RequestView] = []
    for row, referral in pairs:
        cipher = ciphers.get(row.id)
        if cipher is None:
            out.append(_without_text(row, referral, now, erased=True))
            continue
        answer = None
        if answers and row.answer is not None:
            answer = cipher.decrypt_text(
                bytes(row.answer), table=TABLE, column=ANSWER_COLUMN, row_id=row.id
            )
        out.append(
            RequestView(
                id=row.id,
                reference=referral.reference,
                agency=row.agency,
                status=status_of(row, referral, now),
                requested_at=row.requested_at,
                due_at=referral.information_due_at,
                question=cipher.decrypt_text(
                    bytes(row.question), table=TABLE, column=QUESTION_COLUMN, row_id=row.id
                ),
                answered_at=row.answered_at,
                outcome=row.outcome,
                answered_late=row.answered_late,
                answer=answer,
            )
        )
    return out


def _ciphers(
    session: Session,
    store: PersonStore,
    pairs: Sequence[tuple[InformationRequest, Referral]],
) -> dict[uuid.UUID, FieldCipher]:
    """Each request's cipher: its own data key; for a request made before requests had keys
    of their own (sealed under the referral's key, as the first release did), the referral's.
    An erased request (text wiped, own key shredded) has none."""
    ciphers = store.keys.ciphers(session, [row.id for row, _ in pairs])
    older = {referral.id for row, referral in pairs if row.id not in ciphers and row.question}
    by_referral = store.keys.ciphers(session, older) if older else {}
    for row, referral in pairs:
        if row.id not in ciphers and row.question and referral.id in by_referral:
            ciphers[row.id] = by_referral[referral.id]
    return ciphers


def _without_text(
    row: InformationRequest, referral: Referral, now: dt.datetime, *, erased: bool
) -> RequestView:
    return RequestView(
        id=row.id,
        reference=referral.reference,
        agency=row.agency,
        status=status_of(row, referral, now),
        requested_at=row.requested_at,
        due_at=referral.information_due_at,
        question=None,
        answered_at=row.answered_at,
        outcome=row.outcome,
        answered_late=row.answered_late,
        answer=None,
        erased=erased,
    )


def for_referral(
    session: Session,
    store: PersonStore,
    decisions: Decisions,
    caller: Caller,
    reference: str,
    *,
    now: dt.datetime,
) -> Listing:
    """A referral's requests, oldest first, with questions and answers (for the MASH)."""
    requested = "referral.information.read"
    if not decisions.allows(caller, TRIAGE):
        _deny(session, caller, decisions, requested, "role_not_permitted", reference=reference)
    referral = find(session, reference)
    if referral is None:
        _deny(session, caller, decisions, requested, "unknown_referral", reference=reference)
    rows = list(
        session.scalars(
            select(InformationRequest)
            .where(InformationRequest.referral_id == referral.id)
            .order_by(InformationRequest.requested_at, InformationRequest.id)
        )
    )
    seq = audit_log.record(
        session,
        AuditEvent(
            caller.user_id,
            requested,
            "referral",
            str(referral.id),
            {
                "reference": referral.reference,
                "requests": [str(r.id) for r in rows],
                "answered": [str(r.id) for r in rows if r.answered_at is not None],
                "role": caller.role,
                "agency": caller.agency,
                "policy_version": decisions.version,
            },
        ),
    )
    return Listing(_views(session, store, [(r, referral) for r in rows], now, answers=True), seq)


def for_agency(
    session: Session,
    store: PersonStore,
    decisions: Decisions,
    caller: Caller,
    *,
    now: dt.datetime,
    request_id: uuid.UUID | None = None,
    limit: int = 200,
) -> Listing:
    """The open requests addressed to the caller's agency (or the one ``request_id``, if it
    is one of them), most urgent first, with their questions."""
    requested = "referral.information.list"
    if not decisions.allows(caller, RESPOND):
        _deny(session, caller, decisions, requested, "role_not_permitted", request_id=request_id)
    query = (
        select(InformationRequest, Referral)
        .join(Referral, Referral.id == InformationRequest.referral_id)
        .where(
            InformationRequest.agency == caller.agency,
            InformationRequest.answered_at.is_(None),
            Referral.status != DECIDED,
        )
        .order_by(Referral.information_due_at, InformationRequest.requested_at)
        .limit(limit)
    )
    if request_id is not None:
        query = query.where(InformationRequest.id == request_id)
    pairs = [(row, referral) for row, referral in session.execute(query)]
    if request_id is not None and not pairs:
        _deny(session, caller, decisions, requested, "unknown_request", request_id=request_id)
    seq = audit_log.record(
        session,
        AuditEvent(
            caller.user_id,
            requested,
            "information_requests",
            None if request_id is None else str(request_id),
            {
                "requests": [str(row.id) for row, _ in pairs],
                "referrals": sorted({str(referral.id) for _, referral in pairs}),
                "role": caller.role,
                "agency": caller.agency,
                "policy_version": decisions.version,
            },
        ),
    )
    return Listing(_views(session, store, pairs, now, answers=False), seq)


def answer(
    session: Session,
    store: PersonStore,
    decisions: Decisions,
    caller: Caller,
    request_id: uuid.UUID,
    *,
    outcome: str,
    text: str | None,
    now: dt.datetime,
) -> RequestView:
    """The asked agency's answer: what it holds (encrypted), or nothing held."""
    requested = "referral.information.answer"
    if (outcome == NOTHING_HELD) != (text is None):
        raise ValueError("information needs its text; nothing held has none")
    if not decisions.allows(caller, RESPOND):
        _deny(session, caller, decisions, requested, "role_not_permitted", request_id=request_id)
    row = session.scalars(
        select(InformationRequest).where(InformationRequest.id == request_id).with_for_update()
    ).one_or_none()
    if row is None:
        _deny(session, caller, decisions, requested, "unknown_request", request_id=request_id)
    referral = session.scalars(
        select(Referral).where(Referral.id == row.referral_id).with_for_update()
    ).one()
    if row.agency != caller.agency:
        _deny(
            session,
            caller,
            decisions,
            requested,
            "not_asked_agency",
            request_id=request_id,
            referral=referral,
        )
    if row.answered_at is not None:
        raise ReferralStateError("already_answered", "the request has already been answered")
    if referral.status == DECIDED:
        raise ReferralStateError("already_decided", "the referral has been decided")
    cipher = _ciphers(session, store, [(row, referral)]).get(row.id)
    if cipher is None:
        raise ReferralStateError(
            "request_erased", "the request was erased with a person the referral concerns"
        )
    due = referral.information_due_at
    late = due is not None and now > due
    ciphertext = None
    if text is not None:
        ciphertext = cipher.encrypt(text, table=TABLE, column=ANSWER_COLUMN, row_id=row.id)
    row.answered_at = now
    row.answered_by = caller.user_id
    row.outcome = outcome
    row.answered_late = late
    row.answer = ciphertext
    referral.updated_at = now
    session.flush()
    audit_log.record(
        session,
        AuditEvent(
            caller.user_id,
            requested,
            "referral",
            str(referral.id),
            {
                "reference": referral.reference,
                "request_id": str(row.id),
                "outcome": outcome,
                "late": late,
                "answer_sha256": None if ciphertext is None else sha256_hex(ciphertext),
                "role": caller.role,
                "agency": caller.agency,
                "policy_version": decisions.version,
            },
        ),
    )
    return RequestView(
        id=row.id,
        reference=referral.reference,
        agency=row.agency,
        status=REQUEST_ANSWERED,
        requested_at=row.requested_at,
        due_at=due,
        question=cipher.decrypt_text(
            bytes(row.question), table=TABLE, column=QUESTION_COLUMN, row_id=row.id
        ),
        answered_at=now,
        outcome=outcome,
        answered_late=late,
        answer=text,
    )


def summaries(
    session: Session, referrals: Sequence[Referral], now: dt.datetime
) -> dict[uuid.UUID, tuple[RequestSummary, ...]]:
    """Each referral's requests as codes and times (nothing decrypted), oldest first. For
    callers that have already checked ``referral_triage`` and audited the referrals listed."""
    by_id = {referral.id: referral for referral in referrals}
    out: dict[uuid.UUID, list[RequestSummary]] = {}
    if not by_id:
        return {}
    rows = session.scalars(
        select(InformationRequest)
        .where(InformationRequest.referral_id.in_(list(by_id)))
        .order_by(InformationRequest.requested_at, InformationRequest.id)
    )
    for row in rows:
        referral = by_id[row.referral_id]
        out.setdefault(row.referral_id, []).append(
            RequestSummary(
                row.id, row.agency, status_of(row, referral, now), referral.information_due_at
            )
        )
    return {rid: tuple(items) for rid, items in out.items()}


def ids_for_records(session: Session, record_ids: Collection[uuid.UUID]) -> list[uuid.UUID]:
    """The requests of every referral with a subject among ``record_ids``: their question and
    answer may be about any of the referral's subjects, so erasing one erases them all."""
    if not record_ids:
        return []
    return list(
        session.scalars(
            select(InformationRequest.id)
            .join(ReferralSubject, ReferralSubject.referral_id == InformationRequest.referral_id)
            .where(ReferralSubject.record_id.in_(list(record_ids)))
            .distinct()
        )
    )


def erase_for_records(session: Session, record_ids: Collection[uuid.UUID]) -> list[uuid.UUID]:
    """Erase the text of the requests of :func:`ids_for_records`: the ciphertexts are wiped
    here (a request made before requests had keys of their own is sealed under the
    referral's key, which the other subjects still need), and the caller shreds each
    request's own key. Codes and times stay. Returns the requests' ids."""
    ids = ids_for_records(session, record_ids)
    if ids:
        session.execute(
            update(InformationRequest)
            .where(InformationRequest.id.in_(ids))
            .values(question=b"", answer=None)
        )
    return ids


def for_subject_access(
    session: Session,
    store: PersonStore,
    request_ids: Collection[uuid.UUID],
    *,
    with_text: bool,
    now: dt.datetime,
) -> list[RequestView]:
    """These requests (from :func:`ids_for_records`), oldest first, for the subject-access
    export. The caller has checked the policy and audited the export: only ``with_text`` are
    questions and answers decrypted; without it they are None."""
    if not request_ids:
        return []
    pairs = [
        (row, referral)
        for row, referral in session.execute(
            select(InformationRequest, Referral)
            .join(Referral, Referral.id == InformationRequest.referral_id)
            .where(InformationRequest.id.in_(list(request_ids)))
            .order_by(InformationRequest.requested_at, InformationRequest.id)
        )
    ]
    if with_text:
        return _views(session, store, pairs, now, answers=True)
    return [_without_text(row, referral, now, erased=False) for row, referral in pairs]
