"""Referral intake and the submitter's status view.

On intake, in the caller's transaction:

1. with an ``Idempotency-Key``, a transaction-scoped advisory lock on the (client, key) pair
   serialises retries: a retry of the same request replays the first response (same
   reference); the same key with a different body is refused; keys expire after
   :data:`IDEMPOTENCY_TTL` (24 hours), after which the key may be used again;
2. each subject becomes a source record in the encrypted person store (feed and source
   ``referral``): identity, identifiers, contact, and ``details.referral`` (reference, subject
   role, and, for the child or adult at risk, the concerns), blind-indexed like feed records;
3. the subjects are matched against the person index at once (incremental linkage,
   :func:`mash_hub.matching.incremental.link_records`) when a linkage model is loaded and a
   full linkage run exists; otherwise (or if matching fails: a referral is never lost to
   it) each subject becomes a new person, to be joined with the others by the next full run
   (``mash-hub link run``), which keeps person ids stable;
4. the referral enters the triage queue (status ``received``) with its decision due one
   working day later; the referrer's contact and the consent reason are encrypted under the
   referral's own data key;
5. ``referral.submit`` is audited (ids, codes and counts only).

A submitter sees only the status of its own referrals (same principal), and the feedback the
MASH wrote for it: no match results, nothing about other people.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.orm import Session

from mash_hub import audit as audit_log
from mash_hub.audit import AuditEvent
from mash_hub.authz.policy import Caller, Decisions
from mash_hub.crypto.envelope import FieldCipher
from mash_hub.db.engine import is_database_unavailable
from mash_hub.matching.incremental import has_index, link_records
from mash_hub.matching.model import LinkageModel
from mash_hub.matching.service import GROUPS
from mash_hub.persons.models import SourceRecord
from mash_hub.persons.store import (
    CONTACT,
    IDENTIFIERS,
    IDENTITY,
    NewRecord,
    PersonStore,
    StoredRecord,
)
from mash_hub.referrals.codes import RECEIVED, SUBJECTS_OF_CONCERN
from mash_hub.referrals.deadlines import decision_due
from mash_hub.referrals.models import (
    Referral,
    ReferralFeedback,
    ReferralIdempotencyKey,
    ReferralSubject,
)
from mash_hub.referrals.schemas import ReferralIn, SubjectIn

log = logging.getLogger(__name__)

FEED = "referral"
SOURCE = "referral"  # the subjects' source agency (vocabulary.SOURCES)
REFERRAL_GROUP = "details.referral"
TABLE = "referrals"
SEALED_GROUP = "submission"
DECISION_COLUMN = "decision_text"
FEEDBACK_TABLE = "referral_feedback"
FEEDBACK_COLUMN = "text"
IDEMPOTENCY_TTL = dt.timedelta(hours=24)
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")  # printable ASCII, no spaces
# "R-2026-7KQ2M9XD": the year and 8 Crockford base-32 characters (40 bits of randomness, so
# references cannot be guessed or counted). Valid as an X-Purpose-Referral too.
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
REFERENCE = re.compile(r"^R-\d{4}-[0-9A-HJKMNP-TV-Z]{8}$")

SUBMIT = "referral_submit"
STATUS = "referral_status"
TRIAGE = "referral_triage"


class ReferralError(Exception):
    """A request the service refuses; ``code`` is for clients, the message quotes no value."""

    code = "referral_error"


class ReferralDeniedError(ReferralError):
    """Refused and audited (``authz.denied``) in the caller's transaction: the owner of the
    unit of work must catch this inside ``Database.transaction()`` so the entry commits."""

    code = "referral_not_available"

    def __init__(self, reason: str, audit_seq: int) -> None:
        super().__init__(f"referral access refused ({reason})")
        self.reason = reason
        self.audit_seq = audit_seq


class IdempotencyConflictError(ReferralError):
    code = "idempotency_key_reused"


class ReferralStateError(ReferralError):
    """The referral is not in a state that allows this (e.g. already decided)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Receipt:
    """What the submitter gets back (the same on every replay)."""

    referral_id: uuid.UUID
    reference: str
    response: dict[str, Any]
    replayed: bool
    audit_seq: int


@dataclass(frozen=True)
class Feedback:
    id: uuid.UUID
    given_at: dt.datetime
    text: str


@dataclass(frozen=True)
class OwnReferral:
    """One line of a submitter's list: status and how much feedback there is (nothing to
    decrypt)."""

    reference: str
    status: str
    received_at: dt.datetime
    feedback_count: int
    last_feedback_at: dt.datetime | None


@dataclass(frozen=True)
class StatusView:
    reference: str
    status: str
    received_at: dt.datetime
    feedback: list[Feedback]
    audit_seq: int


# -- authorisation ---------------------------------------------------------------------------


def deny(
    session: Session,
    caller: Caller,
    decisions: Decisions,
    requested: str,
    reason: str,
    *,
    referral: Referral | None = None,
    reference: str | None = None,
) -> NoReturn:
    """Audit a refusal (``authz.denied``) and raise :class:`ReferralDeniedError`."""
    details: dict[str, Any] = {
        "reason": reason,
        "requested": requested,
        "role": caller.role,
        "agency": caller.agency,
        "policy_version": decisions.version,
    }
    if reference is not None and REFERENCE.match(reference):
        details["reference"] = reference  # never a value that is not a reference
    seq = audit_log.record(
        session,
        AuditEvent(
            caller.user_id,
            "authz.denied",
            "referral",
            None if referral is None else str(referral.id),
            details,
        ),
    )
    raise ReferralDeniedError(reason, seq)


def find(session: Session, reference: str, *, for_update: bool = False) -> Referral | None:
    """The referral with this reference (None for anything that is not one)."""
    if not REFERENCE.match(reference):
        return None
    query = select(Referral).where(Referral.reference == reference)
    if for_update:
        query = query.with_for_update()
    return session.scalars(query).one_or_none()


def cipher_of(session: Session, store: PersonStore, referral: Referral) -> FieldCipher:
    cipher = store.keys.ciphers(session, [referral.id]).get(referral.id)
    if cipher is None:
        raise ReferralStateError("referral_erased", "the referral's data key was destroyed")
    return cipher


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- intake ----------------------------------------------------------------------------------


def submit(
    session: Session,
    store: PersonStore,
    decisions: Decisions,
    caller: Caller,
    referral: ReferralIn,
    *,
    idempotency_key: str | None,
    model: LinkageModel | None,
    now: dt.datetime,
) -> Receipt:
    """Take a referral in (module docstring); ``referral`` is already validated."""
    if not decisions.allows(caller, SUBMIT):
        deny(session, caller, decisions, "referral.submit", "role_not_permitted")
    # Keyed hashes below must be under the root the database is keyed by, until commit.
    store.fence(session)
    request_hash = _request_hash(store, referral)
    key_hash: bytes | None = None
    if idempotency_key is not None:
        if not IDEMPOTENCY_KEY.match(idempotency_key):
            raise ValueError("an Idempotency-Key is 1-255 printable ASCII characters")
        key_hash = _key_hash(store, caller.user_id, idempotency_key)
        held = _claim(session, caller.user_id, key_hash, now)
        if held is not None:
            if held.request_hash != request_hash:
                raise IdempotencyConflictError(
                    "this Idempotency-Key was used with a different request"
                )
            return _replay(session, caller, decisions, held)

    referral_id = uuid.uuid4()
    reference = _new_reference(session, now)
    records = [
        _subject_record(referral_id, reference, position, subject, referral.concerns)
        for position, subject in enumerate(referral.subjects)
    ]
    record_ids = store.add(session, records)
    written = as_written(record_ids, records)
    linkage, linked, matched = _link(session, store, model, written, actor=caller.user_id)

    issued = store.keys.issue(referral_id)
    store.keys.save(session, [issued.row])
    sealed = issued.cipher.encrypt_group(
        {
            "referrer": referral.referrer.model_dump(mode="json"),
            "consent_reason": referral.consent.reason,
        },
        table=TABLE,
        group=SEALED_GROUP,
        row_id=referral_id,
    )
    row = Referral(
        id=referral_id,
        reference=reference,
        submitted_by=caller.user_id,
        submitter_role=caller.role,
        submitter_agency=caller.agency,
        received_at=now,
        source_code=referral.source,
        primary_need=referral.primary_need,
        factors=list(referral.factors),
        consent=referral.consent.state,
        subject_count=len(records),
        linkage=linkage,
        status=RECEIVED,
        decision_due_at=decision_due(now),
        sealed=sealed,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    session.add_all(
        ReferralSubject(
            referral_id=referral_id,
            position=position,
            record_id=record_id,
            subject_role=subject.role,
            matched_existing=record_id in matched,
        )
        for position, (subject, record_id) in enumerate(
            zip(referral.subjects, record_ids, strict=True)
        )
    )
    session.flush()
    response = {
        "id": str(referral_id),
        "reference": reference,
        "status": RECEIVED,
        "received_at": now.astimezone(dt.UTC).isoformat(),
    }
    seq = audit_log.record(
        session,
        AuditEvent(
            caller.user_id,
            "referral.submit",
            "referral",
            str(referral_id),
            {
                "reference": reference,
                "role": caller.role,
                "agency": caller.agency,
                "policy_version": decisions.version,
                "source": referral.source,
                "subjects": len(records),
                "records": [str(r) for r in record_ids],
                "linkage": linkage,
                "linkage_run": linked,
                "matched_existing": len(matched),
                "idempotency_key": key_hash is not None,
                "replayed": False,
            },
        ),
    )
    if key_hash is not None:
        session.add(
            ReferralIdempotencyKey(
                principal=caller.user_id,
                key_hash=key_hash,
                request_hash=request_hash,
                referral_id=referral_id,
                response=response,
                created_at=now,
                expires_at=now + IDEMPOTENCY_TTL,
            )
        )
        session.flush()
    return Receipt(referral_id, reference, response, replayed=False, audit_seq=seq)


def _request_hash(store: PersonStore, referral: ReferralIn) -> bytes:
    """A keyed hash of the validated request (so equal requests match, and a stored hash
    cannot be used to test a guessed referral)."""
    canonical = json.dumps(
        referral.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return store.indexer.content_hash(b"referral-request|v1|" + canonical.encode("utf-8"))


def _key_hash(store: PersonStore, principal: str, key: str) -> bytes:
    message = f"referral-idempotency-key|v1|{principal}|{key}".encode()
    return store.indexer.content_hash(message)


def _claim(
    session: Session, principal: str, key_hash: bytes, now: dt.datetime
) -> ReferralIdempotencyKey | None:
    """Lock the (principal, key) pair for this transaction; the live entry, if any.

    A concurrent retry waits here until the first transaction ends, then sees its entry.
    """
    digest = hashlib.sha256(b"referral-idempotency|" + principal.encode() + key_hash).digest()
    lock = int.from_bytes(digest[:8], "big", signed=True)
    session.execute(text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": lock})
    held = session.scalars(
        select(ReferralIdempotencyKey)
        .where(
            ReferralIdempotencyKey.principal == principal,
            ReferralIdempotencyKey.key_hash == key_hash,
        )
        .execution_options(populate_existing=True)
    ).one_or_none()
    if held is not None and held.expires_at <= now:
        session.execute(
            delete(ReferralIdempotencyKey).where(
                ReferralIdempotencyKey.principal == principal,
                ReferralIdempotencyKey.key_hash == key_hash,
            )
        )
        session.expunge(held)
        return None
    return held


def _replay(
    session: Session, caller: Caller, decisions: Decisions, held: ReferralIdempotencyKey
) -> Receipt:
    response = dict(held.response)
    seq = audit_log.record(
        session,
        AuditEvent(
            caller.user_id,
            "referral.submit",
            "referral",
            str(held.referral_id),
            {
                "reference": response["reference"],
                "role": caller.role,
                "agency": caller.agency,
                "policy_version": decisions.version,
                "idempotency_key": True,
                "replayed": True,
            },
        ),
    )
    return Receipt(held.referral_id, response["reference"], response, replayed=True, audit_seq=seq)


def _new_reference(session: Session, now: dt.datetime) -> str:
    year = now.astimezone(dt.UTC).year
    while True:
        suffix = "".join(secrets.choice(_ALPHABET) for _ in range(8))
        reference = f"R-{year}-{suffix}"
        taken = session.scalar(select(Referral.id).where(Referral.reference == reference))
        if taken is None:
            return reference


def _subject_record(
    referral_id: uuid.UUID, reference: str, position: int, subject: SubjectIn, concerns: str
) -> NewRecord:
    """One subject as a person-store record, grouped and indexed as feed records are."""
    addresses = [a.model_dump(mode="json") for a in subject.addresses]
    if len(addresses) == 1:
        addresses[0]["current"] = True
    dob = subject.date_of_birth
    details: dict[str, Any] = {"reference": reference, "subject_role": subject.role}
    if subject.role in SUBJECTS_OF_CONCERN:
        details["concerns"] = concerns
    return NewRecord(
        feed=FEED,
        source_agency=SOURCE,
        source_record_id=f"{referral_id}/{position}",
        groups={
            IDENTITY: {
                "given_names": list(subject.given_names),
                "family_name": subject.family_name,
                "other_names": list(subject.other_names),
                "date_of_birth": dob.isoformat() if dob else None,
                "sex": subject.sex,
            },
            IDENTIFIERS: {
                "nhs_number": subject.nhs_number,
                "upn": subject.upn,
                "pnc_id": subject.pnc_id,
            },
            CONTACT: {"addresses": addresses, "phone": subject.phone, "email": subject.email},
            REFERRAL_GROUP: details,
        },
        index_fields={
            "given_names": list(subject.given_names),
            "family_name": subject.family_name,
            "other_names": list(subject.other_names),
            "date_of_birth": dob,
            "postcodes": [a["postcode"] for a in addresses if a.get("postcode")],
            "nhs_number": subject.nhs_number,
            "upn": subject.upn,
            "pnc_id": subject.pnc_id,
        },
    )


def as_written(
    record_ids: Sequence[uuid.UUID], records: Sequence[NewRecord]
) -> dict[uuid.UUID, StoredRecord]:
    """The subjects as matching reads them (the groups it compares), from the plaintext this
    transaction just encrypted and wrote: nothing is read back or decrypted again."""
    return {
        rid: StoredRecord(
            rid, FEED, SOURCE, None, {g: dict(new.groups[g]) for g in GROUPS if g in new.groups}
        )
        for rid, new in zip(record_ids, records, strict=True)
    }


def _link(
    session: Session,
    store: PersonStore,
    model: LinkageModel | None,
    written: dict[uuid.UUID, StoredRecord],
    *,
    actor: str,
) -> tuple[str, str | None, set[uuid.UUID]]:
    """Match the subjects against the person index: (mode, incremental run id, the subjects
    that joined a person the index already held, i.e. one holding other current records)."""
    run_id: str | None = None
    mode = "new_persons"
    assigned: dict[uuid.UUID, uuid.UUID] = {}
    joined: set[uuid.UUID] = set()
    if model is not None and has_index(session):
        try:
            with session.begin_nested():
                report = link_records(
                    session, store, model, list(written), actor=actor, written=written
                )
            run_id, assigned, joined = report.run_id, report.assigned, report.joined
            mode = "incremental"
        except Exception as exc:  # matching must never cost a referral: the next run links
            if is_database_unavailable(exc):
                raise  # the referral cannot be kept either: 503, and the client retries
            log.warning(
                "real-time linkage failed (%s): subjects become new persons", type(exc).__name__
            )
    unlinked = [rid for rid in written if rid not in assigned]
    if unlinked:
        session.execute(
            update(SourceRecord),
            [{"id": rid, "person_id": store.new_person(session)} for rid in unlinked],
        )
    return mode, run_id, joined


# -- the submitter's view ----------------------------------------------------------------------


def status_of(
    session: Session,
    store: PersonStore,
    decisions: Decisions,
    caller: Caller,
    reference: str,
) -> StatusView:
    """Status and feedback of one of the caller's own referrals (audited ``referral.status``).

    Unknown references and other submitters' referrals are refused alike.
    """
    if not decisions.allows(caller, STATUS):
        deny(
            session, caller, decisions, "referral.status", "role_not_permitted", reference=reference
        )
    referral = find(session, reference)
    if referral is None:
        deny(session, caller, decisions, "referral.status", "unknown_referral", reference=reference)
    if referral.submitted_by != caller.user_id:
        deny(
            session,
            caller,
            decisions,
            "referral.status",
            "not_submitter",
            referral=referral,
            reference=reference,
        )
    rows = list(
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
            "referral.status",
            "referral",
            str(referral.id),
            {
                "reference": referral.reference,
                "status": referral.status,
                "feedback": [str(r.id) for r in rows],
                "policy_version": decisions.version,
            },
        ),
    )
    return StatusView(
        reference=referral.reference,
        status=referral.status,
        received_at=referral.received_at,
        feedback=read_feedback(session, store, referral, rows),
        audit_seq=seq,
    )


def referrals_of(
    session: Session, decisions: Decisions, caller: Caller, *, limit: int = 200
) -> tuple[list[OwnReferral], int]:
    """The caller's own referrals, newest first, and the ``referral.status.list`` entry.

    The same rule as :func:`status_of`: only what this principal submitted.
    """
    if not decisions.allows(caller, STATUS):
        deny(session, caller, decisions, "referral.status.list", "role_not_permitted")
    feedback = (
        select(
            ReferralFeedback.referral_id,
            func.count().label("n"),
            func.max(ReferralFeedback.created_at).label("last"),
        )
        .group_by(ReferralFeedback.referral_id)
        .subquery()
    )
    rows = session.execute(
        select(Referral, feedback.c.n, feedback.c.last)
        .outerjoin(feedback, feedback.c.referral_id == Referral.id)
        .where(Referral.submitted_by == caller.user_id)
        .order_by(Referral.received_at.desc(), Referral.id)
        .limit(limit)
    ).all()
    seq = audit_log.record(
        session,
        AuditEvent(
            caller.user_id,
            "referral.status.list",
            "referral",
            None,
            {
                "count": len(rows),
                "referrals": [str(referral.id) for referral, _, _ in rows],
                "policy_version": decisions.version,
            },
        ),
    )
    return [
        OwnReferral(referral.reference, referral.status, referral.received_at, n or 0, last)
        for referral, n, last in rows
    ], seq


def read_feedback(
    session: Session, store: PersonStore, referral: Referral, rows: Sequence[ReferralFeedback]
) -> list[Feedback]:
    """Decrypt feedback rows (the caller has audited the read)."""
    if not rows:
        return []
    cipher = cipher_of(session, store, referral)
    return [
        Feedback(
            row.id,
            row.created_at,
            cipher.decrypt_text(
                bytes(row.ciphertext), table=FEEDBACK_TABLE, column=FEEDBACK_COLUMN, row_id=row.id
            ),
        )
        for row in rows
    ]
