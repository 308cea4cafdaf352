"""The person view: what one member of staff may see of one person, for a stated purpose.

``view_person`` is the only service that shows personal data to staff (the HTTP API will call
it). In one unit of work it

1. refuses without a purpose of access, or for a role that may see no person data, or for a
   break-glass request from a role that may not break glass (each refusal audited as
   ``authz.denied``; the owner of the transaction commits it, see :class:`AccessDeniedError`);
2. groups the person's current records by source agency and asks the compiled policy for the
   mask of each source (the break-glass mask when break-glass is used);
3. writes ONE ``person.view`` audit entry naming the groups it is about to show per source,
   the purpose code or referral reference, and for break-glass the groups beyond the normal
   mask and a review flag (plus a ``break_glass_views`` row for the privacy officer);
4. only then reads (and decrypts) exactly the allowed groups through ``PersonStore.read``.

Because the audit entry is written before anything is decrypted, a failed audit append
means nothing was decrypted at all (fail closed), and the exception rolls the transaction back.

Free text (a purpose's explanation, a break-glass justification) may name people, so it never
enters the audit log in clear: it is encrypted under its own data key in
``access_justifications`` and the audit entry holds its id and the SHA-256 of the ciphertext
(which binds the row to the hash chain without revealing anything).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import uuid
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from mash_hub import audit as audit_log
from mash_hub.audit import AuditEvent
from mash_hub.authz.models import AccessJustification, BreakGlassView
from mash_hub.authz.policy import AccessPolicy, Caller, Decisions
from mash_hub.persons.models import Person, RecordFieldGroup, SourceRecord
from mash_hub.persons.store import QUALITY, PersonStore
from mash_hub.quality.issues import open_issue_counts
from mash_hub.referrals.linked import (
    REFERRAL_GROUP,
    REFERRAL_SOURCE,
    LinkedReferral,
    referral_purpose_problem,
    referrals_of_person,
    with_concerns,
)

JUSTIFICATION_TABLE = "access_justifications"

# Purposes of access (the lawful gateway the Haringey judgment asks for on every access).
REASON_CODES: Mapping[str, str] = {
    "section_47_enquiry": "Children Act 1989 s47 child-protection enquiry",
    "section_17_assessment": "Children Act 1989 s17 child-in-need assessment",
    "mash_triage": "MASH triage of a contact or referral",
    "strategy_discussion": "Strategy discussion",
    "information_request": "Information request from a partner agency",
    "early_help": "Early-help assessment",
    "adult_safeguarding_s42": "Care Act 2014 s42 enquiry",
}
PURPOSE_TEXT_MIN = 10
PURPOSE_TEXT_MAX = 500
PURPOSE_TEXT_MIN_WORDS = 2
JUSTIFICATION_MIN = 30
JUSTIFICATION_MAX = 1000
# A break-glass justification is read by a privacy officer: it must say something in words.
JUSTIFICATION_MIN_WORDS = 5
JUSTIFICATION_MIN_LETTERS = 20
_WORD = re.compile(r"[^\W\d_]{2,}")  # two or more letters (any script)
# A reference, not a sentence: letters, digits, / _ - and at least one digit.
_REFERRAL = re.compile(r"^(?=.*\d)[A-Za-z0-9][A-Za-z0-9/_-]{2,39}$")

REVIEW_OUTCOMES = ("justified", "not_justified", "referred_to_dpo")

BREAK_GLASS_JUSTIFICATION_INVALID = "break_glass_justification_invalid"
# A referral given as purpose that does not exist, is closed, or names someone else.
PURPOSE_REFERRAL_INVALID = "purpose_referral_invalid"
PURPOSE_REFERRAL_MESSAGE = (
    "the referral given as purpose of access does not exist, was decided more than 30 days "
    "ago, or does not name this person"
)


class InvalidPurposeError(ValueError):
    """A purpose or justification that does not meet the rules (the message quotes no text)."""


class AccessDeniedError(PermissionError):
    """The view was refused and the refusal audited (``authz.denied``).

    The refusal's audit entry is in the caller's transaction: the owner of the unit of work
    should catch this inside ``Database.transaction()`` so the entry commits, then answer.
    """

    def __init__(self, reason: str, message: str, audit_seq: int) -> None:
        self.reason = reason
        self.audit_seq = audit_seq
        super().__init__(message)


@dataclass(frozen=True)
class Purpose:
    """Why a person is viewed: a referral reference, or a reason code with an explanation."""

    code: str | None = None
    referral: str | None = None
    text: str | None = None

    def __post_init__(self) -> None:
        if (self.code is None) == (self.referral is None):
            raise InvalidPurposeError("give either a reason code or a referral reference")
        if self.code is not None and self.code not in REASON_CODES:
            raise InvalidPurposeError(f"unknown reason code: use one of {', '.join(REASON_CODES)}")
        if self.referral is not None and not _REFERRAL.match(self.referral):
            raise InvalidPurposeError(
                "a referral reference is 3-40 letters, digits, '/', '_' or '-' with a digit"
            )
        if self.code is not None and self.text is None:
            raise InvalidPurposeError("a reason code needs a short explanation (text)")
        if self.text is not None:
            check_purpose_text(self.text)

    def audit_fields(self) -> dict[str, str]:
        return {"code": self.code} if self.code is not None else {"referral": str(self.referral)}


@dataclass(frozen=True)
class BreakGlass:
    """Emergency access beyond the normal mask: needs a written justification; reviewed."""

    justification: str

    def __post_init__(self) -> None:
        check_justification(self.justification)


def check_justification(text: str) -> None:
    """The one rule for a break-glass justification (raises :class:`InvalidPurposeError`).

    Runs of whitespace count as one space, and the text needs at least
    ``JUSTIFICATION_MIN_WORDS`` words of two or more letters holding
    ``JUSTIFICATION_MIN_LETTERS`` letters between them, so padding (``"x" + 38 spaces +
    "y"``) or a row of digits or dots does not pass for a reason. The message quotes nothing
    of the text."""
    collapsed = " ".join(text.split())
    if not JUSTIFICATION_MIN <= len(collapsed) <= JUSTIFICATION_MAX:
        raise InvalidPurposeError(
            f"the justification must be {JUSTIFICATION_MIN}-{JUSTIFICATION_MAX} characters "
            "once runs of spaces are counted as one"
        )
    words = _WORD.findall(collapsed)
    if len(words) < JUSTIFICATION_MIN_WORDS or sum(map(len, words)) < JUSTIFICATION_MIN_LETTERS:
        raise InvalidPurposeError(
            f"the justification must explain the emergency in words: at least "
            f"{JUSTIFICATION_MIN_WORDS} words of two or more letters "
            f"({JUSTIFICATION_MIN_LETTERS} letters in all)"
        )


def check_purpose_text(text: str) -> None:
    """The rule for a purpose's explanation: it is audited as the reason for reading a record,
    so it must say something: ``PURPOSE_TEXT_MIN``-``PURPOSE_TEXT_MAX`` characters once runs
    of whitespace count as one, with at least ``PURPOSE_TEXT_MIN_WORDS`` words of two or more
    letters (``"x"`` and eight spaces and ``"y"`` is not a reason). Quotes nothing of the text."""
    collapsed = " ".join(text.split())
    if not PURPOSE_TEXT_MIN <= len(collapsed) <= PURPOSE_TEXT_MAX:
        raise InvalidPurposeError(
            f"the purpose text must be {PURPOSE_TEXT_MIN}-{PURPOSE_TEXT_MAX} characters once "
            f"runs of spaces are counted as one (got {len(collapsed)})"
        )
    if len(_WORD.findall(collapsed)) < PURPOSE_TEXT_MIN_WORDS:
        raise InvalidPurposeError(
            f"the purpose text must say why in words: at least {PURPOSE_TEXT_MIN_WORDS} words "
            "of two or more letters"
        )


@dataclass(frozen=True)
class RecordView:
    record_id: uuid.UUID
    feed: str
    groups: dict[str, dict[str, Any]]
    # How many values of the record failed validation; None when the caller may not see the
    # record's ``quality`` group. The raw values are never shown here (mash_hub.quality).
    failed_values: int | None = None
    # Groups the record holds that the caller may not see (names only: never decrypted).
    withheld: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "record_id": str(self.record_id),
            "feed": self.feed,
            "groups": self.groups,
        }
        if self.failed_values is not None:
            out["failed_values"] = self.failed_values
            if self.failed_values:
                noun = "value" if self.failed_values == 1 else "values"
                out["quality_notice"] = (
                    f"{self.failed_values} {noun} of this record failed validation"
                )
        return out


@dataclass(frozen=True)
class PersonView:
    """What the caller may see: per source agency, its records with only the allowed groups."""

    person_id: uuid.UUID
    policy_version: int | None
    purpose: dict[str, str]
    break_glass: bool
    audit_seq: int
    sources: dict[str, list[RecordView]] = field(default_factory=dict)
    # Referrals naming the person, only when the caller's mask holds ``details.referral`` of
    # the person's referral records; the concerns only where the view decrypted that group.
    referrals: list[LinkedReferral] = field(default_factory=list)

    def shown(self) -> dict[str, frozenset[str]]:
        """The groups shown per source."""
        return {
            source: frozenset(g for record in records for g in record.groups)
            for source, records in self.sources.items()
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form (what the API will serialise)."""
        return {
            "person_id": str(self.person_id),
            "policy_version": self.policy_version,
            "purpose": dict(self.purpose),
            "break_glass": self.break_glass,
            "audit_seq": self.audit_seq,
            "sources": {
                source: [r.to_dict() for r in records] for source, records in self.sources.items()
            },
            "referrals": [r.to_dict() for r in self.referrals],
        }


def view_person(  # noqa: PLR0917 (the signature the API and the issue use)
    session: Session,
    store: PersonStore,
    policy: AccessPolicy,
    caller: Caller,
    person_id: uuid.UUID,
    purpose: Purpose | None,
    break_glass: BreakGlass | None = None,
) -> PersonView:
    """Show ``caller`` the person's records, masked per source agency (module docstring)."""
    decisions, purpose = _authorise(session, policy, caller, person_id, purpose, break_glass)
    by_source = _current_records(session, person_id)
    present = _present_groups(session, [rid for ids in by_source.values() for rid in ids])
    use_glass = break_glass is not None
    plan: dict[str, tuple[list[uuid.UUID], list[str]]] = {}
    beyond: dict[str, list[str]] = {}
    counted: set[str] = set()  # sources whose failed values the caller may count
    for source, record_ids in by_source.items():
        mask = decisions.mask(caller, source, break_glass=use_glass)
        available = {g for rid in record_ids for g in present.get(rid, ())}
        groups = sorted(mask & available)
        if not groups:
            continue  # nothing the caller may see: the source's records are not even listed
        plan[source] = (record_ids, groups)
        if QUALITY in mask:
            counted.add(source)
        if use_glass:
            extra = sorted(set(groups) - decisions.mask(caller, source))
            if extra:
                beyond[source] = extra

    details: dict[str, Any] = {
        "role": caller.role,
        "agency": caller.agency,
        "policy_version": decisions.version,
        "purpose": purpose.audit_fields(),
        "shown": {source: groups for source, (_, groups) in plan.items()},
        "records": {source: len(ids) for source, (ids, _) in plan.items()},
        "break_glass": use_glass,
    }
    # The list comes from the referral tables, not from a record's groups, so it is shown
    # only to a caller whose mask holds the group it describes (reference, role, status,
    # RAG are what ``details.referral`` says about the person).
    referral_mask = decisions.mask(caller, REFERRAL_SOURCE, break_glass=use_glass)
    linked = referrals_of_person(session, person_id) if REFERRAL_GROUP in referral_mask else []
    details["referrals"] = [str(r.id) for r in linked]
    if purpose.text is not None:
        details["purpose_text"] = seal_text(session, store, person_id, "purpose", purpose.text)
    glass_id = uuid.uuid4()
    justification_id: uuid.UUID | None = None
    if break_glass is not None:
        sealed = seal_text(session, store, person_id, "break_glass", break_glass.justification)
        justification_id = uuid.UUID(sealed["id"])
        details |= {
            "justification": sealed,
            "beyond_normal_mask": beyond,
            "review_required": True,
            "break_glass_view_id": str(glass_id),
        }
    seq = audit_log.record(
        session,
        AuditEvent(caller.user_id, "person.view", "person", str(person_id), details),
    )
    if break_glass is not None and justification_id is not None:
        session.add(
            BreakGlassView(
                id=glass_id,
                audit_seq=seq,
                actor=caller.user_id,
                role=caller.role,
                agency=caller.agency,
                person_id=person_id,
                justification_id=justification_id,
            )
        )
        session.flush()

    sources = _read_allowed(session, store, plan, counted, present)
    shown_referrals = {r.record_id: r.groups for r in sources.get(REFERRAL_SOURCE, [])}
    return PersonView(
        person_id=person_id,
        policy_version=decisions.version,
        purpose=purpose.audit_fields(),
        break_glass=use_glass,
        audit_seq=seq,
        sources=sources,
        referrals=with_concerns(linked, shown_referrals),
    )


def _authorise(  # noqa: PLR0917 (view_person's inputs)
    session: Session,
    policy: AccessPolicy,
    caller: Caller,
    person_id: uuid.UUID,
    purpose: Purpose | None,
    break_glass: BreakGlass | None,
) -> tuple[Decisions, Purpose]:
    """Refuse (audited) unless the caller may view this person for this purpose."""
    if purpose is None:
        deny_person_access(
            session, caller, person_id, "purpose_missing", "a purpose of access is required"
        )
    decisions = policy.for_session(session)
    if not decisions.may_view_persons(caller):
        deny_person_access(
            session,
            caller,
            person_id,
            "role_not_permitted",
            f"role {caller.role!r} of agency {caller.agency!r} may not view person records",
            decisions=decisions,
        )
    if break_glass is not None and not decisions.may_break_glass(caller):
        deny_person_access(
            session,
            caller,
            person_id,
            "break_glass_not_permitted",
            f"role {caller.role!r} of agency {caller.agency!r} may not use break-glass access",
            decisions=decisions,
        )
    person = session.get(Person, person_id)
    if person is None or person.erased_at is not None:
        deny_person_access(
            session, caller, person_id, "unknown_person", "no such person", decisions=decisions
        )
    refuse_unfitting_referral(session, caller, person_id, purpose, decisions)
    return decisions, purpose


def refuse_unfitting_referral(  # noqa: PLR0917 (the refusal's facts)
    session: Session,
    caller: Caller,
    person_id: uuid.UUID,
    purpose: Purpose,
    decisions: Decisions,
    requested: str = "person.view",
) -> None:
    """Refuse (audited) a referral purpose naming no referral that fits this person."""
    refusal = referral_purpose_refusal(session, purpose, [person_id])
    if refusal is not None:
        deny_person_access(
            session,
            caller,
            person_id,
            PURPOSE_REFERRAL_INVALID,
            PURPOSE_REFERRAL_MESSAGE,
            requested=requested,
            decisions=decisions,
            extra=refusal,
        )


def _read_allowed(
    session: Session,
    store: PersonStore,
    plan: Mapping[str, tuple[list[uuid.UUID], list[str]]],
    counted: set[str],
    present: Mapping[uuid.UUID, set[str]],
) -> dict[str, list[RecordView]]:
    """Decrypt exactly the planned groups. The quality group holds raw values kept for
    correction: the view shows only how many there are (counted without decrypting
    anything), never the values. Groups held but not shown are named as withheld."""
    sources: dict[str, list[RecordView]] = {}
    for source, (record_ids, groups) in plan.items():
        failed = open_issue_counts(session, record_ids) if source in counted else None
        records = store.read(session, record_ids, [g for g in groups if g != QUALITY])
        sources[source] = [
            RecordView(
                rid,
                records[rid].feed,
                dict(records[rid].groups),
                None if failed is None else failed.get(rid, 0),
                tuple(sorted(present.get(rid, set()) - set(groups))),
            )
            for rid in record_ids
            if rid in records
        ]
    return sources


def deny_person_access(
    session: Session,
    caller: Caller,
    person_id: uuid.UUID,
    reason: str,
    message: str,
    *,
    requested: str = "person.view",
    decisions: Decisions | None = None,
    extra: Mapping[str, Any] | None = None,
) -> NoReturn:
    """Audit a refused access to a person (``authz.denied``) and raise it; every person read
    path refuses through here so refusals look the same in the log. ``extra``: ids and codes
    only (e.g. :func:`referral_purpose_refusal`'s details)."""
    seq = audit_log.record(
        session,
        AuditEvent(
            caller.user_id,
            "authz.denied",
            "person",
            str(person_id),
            {
                "reason": reason,
                "requested": requested,
                "role": caller.role,
                "agency": caller.agency,
                "policy_version": None if decisions is None else decisions.version,
                **(extra or {}),
            },
        ),
    )
    raise AccessDeniedError(reason, message, seq)


def refuse_invalid_justification(
    session: Session, policy: AccessPolicy, caller: Caller, person_id: uuid.UUID
) -> NoReturn:
    """Refuse (audited, ``break_glass_justification_invalid``) a break-glass request whose
    justification fails :func:`check_justification`: a refused attempt at emergency access
    is exactly what a privacy officer must see. Nothing of the text is logged."""
    deny_person_access(
        session,
        caller,
        person_id,
        BREAK_GLASS_JUSTIFICATION_INVALID,
        "the break-glass justification is not acceptable",
        decisions=policy.for_session(session),
        extra={"break_glass": True},
    )


def referral_purpose_refusal(
    session: Session, purpose: Purpose, person_ids: list[uuid.UUID] | None
) -> dict[str, Any] | None:
    """None when the purpose is a reason code or a referral that may justify this access;
    otherwise the details its refusal's audit entry holds.

    The rule is :func:`~mash_hub.referrals.linked.referral_purpose_problem` (``person_ids``
    None: no person is named, e.g. a search, so only existence and age are checked). The
    reference is logged only when such a referral exists: a made-up one is caller-chosen
    text and never enters the log."""
    if purpose.referral is None:
        return None
    problem = referral_purpose_problem(
        session, purpose.referral, person_ids, now=dt.datetime.now(dt.UTC)
    )
    if problem is None:
        return None
    details: dict[str, Any] = {"purpose_problem": problem}
    if problem != "unknown_referral":
        details["purpose"] = purpose.audit_fields()
    return details


def referral_purposes(
    session: Session, policy: AccessPolicy, caller: Caller, person_id: uuid.UUID
) -> list[LinkedReferral]:
    """The referrals about the person that ``caller`` may give as the purpose of viewing them
    (the purpose page's choices), newest first; one ``person.referral_purposes`` entry.

    Listed only for a caller who may view persons and whose referral mask holds the group the
    list describes, as the person view's own list; each must pass
    :func:`~mash_hub.referrals.linked.referral_purpose_problem` (open, or decided within 30
    days, and naming this person), the rule :func:`view_person` applies when it is given.
    Ids, references and codes only: nothing is decrypted."""
    decisions = policy.for_session(session)
    listed: list[LinkedReferral] = []
    if decisions.may_view_persons(caller) and REFERRAL_GROUP in decisions.mask(
        caller, REFERRAL_SOURCE
    ):
        now = dt.datetime.now(dt.UTC)
        listed = [
            referral
            for referral in referrals_of_person(session, person_id)
            if referral_purpose_problem(session, referral.reference, [person_id], now=now) is None
        ]
    audit_log.record(
        session,
        AuditEvent(
            caller.user_id,
            "person.referral_purposes",
            "person",
            str(person_id),
            {
                "role": caller.role,
                "agency": caller.agency,
                "policy_version": decisions.version,
                "referrals": [str(r.id) for r in listed],
            },
        ),
    )
    return listed


def _current_records(session: Session, person_id: uuid.UUID) -> dict[str, list[uuid.UUID]]:
    rows = session.execute(
        select(SourceRecord.id, SourceRecord.source_agency)
        .where(
            SourceRecord.person_id == person_id,
            SourceRecord.is_current.is_(True),
            SourceRecord.erased_at.is_(None),
        )
        .order_by(SourceRecord.created_at, SourceRecord.id)
    ).all()
    out: dict[str, list[uuid.UUID]] = defaultdict(list)
    for record_id, source in rows:
        out[source].append(record_id)
    return dict(out)


def _present_groups(session: Session, record_ids: list[uuid.UUID]) -> dict[uuid.UUID, set[str]]:
    """Which groups each record holds (names only: nothing is decrypted)."""
    if not record_ids:
        return {}
    out: dict[uuid.UUID, set[str]] = defaultdict(set)
    for record_id, group in session.execute(
        select(RecordFieldGroup.record_id, RecordFieldGroup.group_name).where(
            RecordFieldGroup.record_id.in_(record_ids)
        )
    ):
        out[record_id].add(group)
    return out


def seal_text(
    session: Session, store: PersonStore, person_id: uuid.UUID, kind: str, text: str
) -> dict[str, str]:
    """Encrypt free text under its own data key; returns what the audit entry may hold."""
    text_id = uuid.uuid4()
    issued = store.keys.issue(text_id)
    ciphertext = issued.cipher.encrypt(text, table=JUSTIFICATION_TABLE, column=kind, row_id=text_id)
    store.keys.save(session, [issued.row])
    # A Core insert, sent now: no unit-of-work flush (and no RETURNING) on the next query.
    session.execute(
        insert(AccessJustification).values(
            id=text_id, kind=kind, person_id=person_id, ciphertext=ciphertext
        )
    )
    return {"id": str(text_id), "ciphertext_sha256": hashlib.sha256(ciphertext).hexdigest()}


# -- break-glass review ---------------------------------------------------------------------


@dataclass(frozen=True)
class BreakGlassItem:
    id: uuid.UUID
    audit_seq: int
    actor: str
    role: str
    agency: str
    person_id: uuid.UUID
    justification_id: uuid.UUID
    occurred_at: dt.datetime


def list_break_glass_for_review(session: Session) -> list[BreakGlassItem]:
    """Break-glass views nobody has reviewed yet, oldest first."""
    rows = session.scalars(
        select(BreakGlassView)
        .where(BreakGlassView.reviewed_at.is_(None))
        .order_by(BreakGlassView.occurred_at, BreakGlassView.audit_seq)
    )
    return [
        BreakGlassItem(
            r.id,
            r.audit_seq,
            r.actor,
            r.role,
            r.agency,
            r.person_id,
            r.justification_id,
            r.occurred_at,
        )
        for r in rows
    ]


def review_break_glass(
    session: Session, view_id: uuid.UUID, *, reviewer: str, outcome: str
) -> None:
    """Record a privacy officer's review of one break-glass view (audited)."""
    if outcome not in REVIEW_OUTCOMES:
        raise ValueError(f"outcome must be one of {', '.join(REVIEW_OUTCOMES)}")
    row = session.get(BreakGlassView, view_id, with_for_update=True)
    if row is None:
        raise LookupError(f"no break-glass view {view_id}")
    if row.reviewed_at is not None:
        raise ValueError(f"break-glass view {view_id} was already reviewed")
    row.reviewed_at = dt.datetime.now(dt.UTC)
    row.reviewed_by = reviewer
    row.review_outcome = outcome
    session.flush()
    audit_log.record(
        session,
        AuditEvent(
            reviewer,
            "break_glass.review",
            "break_glass_view",
            str(view_id),
            {"outcome": outcome, "audit_seq": row.audit_seq, "person_id": str(row.person_id)},
        ),
    )


def read_justification(
    session: Session, store: PersonStore, justification_id: uuid.UUID, *, reader: str
) -> str:
    """Decrypt a purpose text or break-glass justification for a reviewer (audited)."""
    row = session.get(AccessJustification, justification_id)
    if row is None:
        raise LookupError(f"no justification {justification_id}")
    audit_log.record(
        session,
        AuditEvent(reader, "justification.read", "access_justification", str(justification_id)),
    )
    cipher = store.keys.ciphers(session, [justification_id]).get(justification_id)
    if cipher is None:
        raise LookupError(f"justification {justification_id} was erased")
    return cipher.decrypt_text(
        bytes(row.ciphertext), table=JUSTIFICATION_TABLE, column=row.kind, row_id=justification_id
    )
