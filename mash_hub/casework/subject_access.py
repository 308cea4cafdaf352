"""Subject-access export: everything the hub holds about one person, for a UK GDPR Art. 15 request.

Information-governance staff handle subject-access requests (SARs). ``subject_access_export``
builds the document they review (for third-party data and exemptions) before anything is
released. In one unit of work it

1. refuses without a SAR reference, for a caller whose role may not ``subject_access`` any field
   group, or for an unknown or erased person (each refusal audited as ``authz.denied``; the
   owner of the transaction commits it, see :class:`~mash_hub.casework.view.AccessDeniedError`);
2. asks the compiled policy for the caller's ``subject_access`` mask of each source agency
   (:meth:`~mash_hub.authz.policy.Decisions.action_mask`; the ``read`` mask plays no part);
3. writes ONE ``person.subject_access`` audit entry (the SAR reference, groups included and
   withheld per source, counts) before anything is decrypted, so a failed append means nothing
   was decrypted (fail closed);
4. only then decrypts exactly the allowed groups, through ``PersonStore.read``, of every record
   the hub still holds about the person (current and superseded versions; erased records have
   no ciphertext left and are left out).

The document also carries the person's **access history** from the audit log: every entry
whose subject is the person, except refusals (``authz.denied``: nothing was disclosed), with
when, what (action), the purpose code or referral reference, break-glass, the groups shown per
source, and *who* as a role and agency only. Staff identities are left out on purpose: the
data subject is entitled to the recipients or categories of recipient (Art. 15(1)(c)), not to
the names of the controller's own staff who consulted the data under its authority (CJEU
C-579/21, *Pankki S*, 2023); an auditor can resolve an entry's ``seq`` to the member of staff.
Free-text purposes and justifications are not included (they are sealed and may name others).

Linked referrals are listed when the hub has a ``referrals`` table (found through the ORM
metadata, so this module does not depend on the referrals package): the rows linked to the
person directly or through a table joining referrals to the person's records, with their
codes, references, dates and status: binary columns (ciphertext) and JSON are never read, nor
hashes (``*_hash``) or who acted (``*_by``, staff and client ids, as above). A referral's
free text arrives as the referral source's field groups, masked like any other source.
Without that table ``referrals`` is None.

The MASH's **information requests** about those referrals (what it asked partner agencies
about the referral's subjects, and their answers) are listed with their codes and times. Their
question and answer are decrypted only when the caller's ``subject_access`` mask of the
``referral`` source holds ``details.referral``, the group that holds the referral's own
details; otherwise they are withheld (``text: withheld``) and never decrypted. A request
erased with another subject of the referral has no text left (``text: erased``).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, NoReturn

from sqlalchemy import JSON, LargeBinary, Table, select
from sqlalchemy.orm import Session

from mash_hub import audit as audit_log
from mash_hub.audit import AuditEvent
from mash_hub.audit.models import AuditEntry
from mash_hub.authz.policy import AccessPolicy, Caller, Decisions
from mash_hub.authz.vocabulary import SOURCES, SUBJECT_ACCESS
from mash_hub.casework.view import deny_person_access
from mash_hub.db.base import Base
from mash_hub.persons.models import Person, RecordFieldGroup, SourceRecord
from mash_hub.persons.store import PersonStore
from mash_hub.referrals import requests as information
from mash_hub.referrals.linked import REFERRAL_GROUP, REFERRAL_SOURCE

ACTION = "person.subject_access"
# A reference, not a sentence: letters, digits, / _ - and at least one digit (as a referral's).
_REFERENCE = re.compile(r"^(?=.*\d)[A-Za-z0-9][A-Za-z0-9/_-]{2,39}$")
REFERENCE_RULE = "a SAR reference is 3-40 letters, digits, '/', '_' or '-' with a digit"

# Who did it, by the actor id's namespace (the id itself is never put in the document).
_ACTOR_KINDS = {"user": "staff", "oidc": "staff", "client": "partner_agency", "cli": "operator"}


class InvalidReferenceError(ValueError):
    """A SAR reference that does not meet the rule (the message quotes no value)."""


@dataclass(frozen=True)
class SarReference:
    """The request's reference in the information-governance case system (an id, never text)."""

    value: str

    def __post_init__(self) -> None:
        if not _REFERENCE.match(self.value):
            raise InvalidReferenceError(REFERENCE_RULE)


@dataclass(frozen=True)
class SarRecord:
    record_id: uuid.UUID
    feed: str
    version: int
    current: bool
    received_at: dt.datetime
    superseded_at: dt.datetime | None
    groups: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class AccessEvent:
    """One access to (or processing of) the person's data, without staff identities."""

    seq: int
    occurred_at: dt.datetime
    action: str
    accessed_by: dict[str, str | None]  # kind, role, agency
    purpose: dict[str, str] | None
    break_glass: bool
    groups: dict[str, list[str]]  # per source, the groups shown (empty when unknown)


@dataclass(frozen=True)
class SubjectAccessExport:
    person_id: uuid.UUID
    reference: str
    generated_at: dt.datetime
    policy_version: int | None
    audit_seq: int
    sources: dict[str, list[SarRecord]] = field(default_factory=dict)
    withheld: dict[str, list[str]] = field(default_factory=dict)
    referrals: list[dict[str, Any]] | None = None
    information_requests: list[dict[str, Any]] = field(default_factory=list)
    access_history: list[AccessEvent] = field(default_factory=list)

    def included(self) -> dict[str, frozenset[str]]:
        """The groups included per source."""
        return {
            source: frozenset(g for record in records for g in record.groups)
            for source, records in self.sources.items()
        }

    def counts(self) -> dict[str, int | None]:
        return {
            "records": sum(len(records) for records in self.sources.values()),
            "referrals": None if self.referrals is None else len(self.referrals),
            "information_requests": len(self.information_requests),
            "access_events": len(self.access_history),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form (what the API returns and the CLI writes)."""
        document: dict[str, Any] = _jsonable(
            {
                "person_id": self.person_id,
                "reference": self.reference,
                "generated_at": self.generated_at,
                "policy_version": self.policy_version,
                "audit_seq": self.audit_seq,
                "sources": {
                    source: [
                        {
                            "record_id": r.record_id,
                            "feed": r.feed,
                            "version": r.version,
                            "current": r.current,
                            "received_at": r.received_at,
                            "superseded_at": r.superseded_at,
                            "groups": r.groups,
                        }
                        for r in records
                    ]
                    for source, records in self.sources.items()
                },
                "withheld": self.withheld,
                "referrals": self.referrals,
                "information_requests": self.information_requests,
                "access_history": [
                    {
                        "seq": e.seq,
                        "occurred_at": e.occurred_at,
                        "action": e.action,
                        "accessed_by": e.accessed_by,
                        "purpose": e.purpose,
                        "break_glass": e.break_glass,
                        "groups": e.groups,
                    }
                    for e in self.access_history
                ],
                "counts": self.counts(),
            }
        )
        return document


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def subject_access_masks(decisions: Decisions, caller: Caller) -> dict[str, frozenset[str]]:
    """The caller's ``subject_access`` mask per source (sources with none left out)."""
    masks = {s: decisions.action_mask(caller, s, SUBJECT_ACCESS) for s in SOURCES}
    return {source: mask for source, mask in masks.items() if mask}


def subject_access_export(  # noqa: PLR0917 (the shape of view_person's signature)
    session: Session,
    store: PersonStore,
    policy: AccessPolicy,
    caller: Caller,
    person_id: uuid.UUID,
    reference: SarReference | None,
    *,
    channel: str = "api",
    operator: str | None = None,
) -> SubjectAccessExport:
    """The export of the module docstring. ``channel`` (api, cli) and, on the CLI, the
    ``operator`` running the command as ``caller`` are recorded in the audit entry."""
    if reference is None:
        _deny(session, caller, person_id, "reference_missing", "a SAR reference is required")
    decisions = policy.for_session(session)
    masks = subject_access_masks(decisions, caller)
    if not masks:
        _deny(
            session,
            caller,
            person_id,
            "role_not_permitted",
            f"role {caller.role!r} of agency {caller.agency!r} may not export subject access",
            decisions=decisions,
        )
    person = session.get(Person, person_id)
    if person is None or person.erased_at is not None:
        _deny(session, caller, person_id, "unknown_person", "no such person", decisions=decisions)

    records = _held_records(session, person_id)
    present = _present_groups(session, [r.id for r in records])
    by_source: dict[str, list[SourceRecord]] = defaultdict(list)
    for row in records:
        by_source[row.source_agency].append(row)
    plan: dict[str, tuple[list[SourceRecord], list[str]]] = {}
    withheld: dict[str, list[str]] = {}
    for source, rows in by_source.items():
        available = {g for row in rows for g in present.get(row.id, ())}
        allowed = masks.get(source, frozenset())
        if hidden := sorted(available - allowed):
            withheld[source] = hidden
        if groups := sorted(available & allowed):
            plan[source] = (rows, groups)

    generated_at = dt.datetime.now(dt.UTC)
    referrals = linked_referrals(session, person_id, [r.id for r in records])
    request_ids = information.ids_for_records(session, [r.id for r in records])
    request_text = REFERRAL_GROUP in masks.get(REFERRAL_SOURCE, frozenset())
    details: dict[str, Any] = {
        "role": caller.role,
        "agency": caller.agency,
        "policy_version": decisions.version,
        "reference": reference.value,
        "channel": channel,
        **({"operator": operator} if operator is not None else {}),
        "included": {source: groups for source, (_, groups) in plan.items()},
        "withheld": withheld,
        "records": {source: len(rows) for source, (rows, _) in plan.items()},
        "referrals": None if referrals is None else len(referrals),
        "information_requests": sorted(str(i) for i in request_ids),
        "information_request_text": "included" if request_text else "withheld",
    }
    seq = audit_log.record(
        session, AuditEvent(caller.user_id, ACTION, "person", str(person_id), details)
    )

    sources: dict[str, list[SarRecord]] = {}
    for source, (rows, groups) in plan.items():
        opened = store.read(session, [row.id for row in rows], groups)
        sources[source] = [
            SarRecord(
                record_id=row.id,
                feed=row.feed,
                version=row.version,
                current=row.is_current,
                received_at=row.created_at,
                superseded_at=row.superseded_at,
                groups=dict(opened[row.id].groups),
            )
            for row in rows
            if row.id in opened
        ]
    return SubjectAccessExport(
        person_id=person_id,
        reference=reference.value,
        generated_at=generated_at,
        policy_version=decisions.version,
        audit_seq=seq,
        sources=sources,
        withheld=withheld,
        referrals=referrals,
        information_requests=[
            _information_request(view, included=request_text)
            for view in information.for_subject_access(
                session, store, request_ids, with_text=request_text, now=generated_at
            )
        ],
        access_history=access_history(session, person_id, before_seq=seq),
    )


def _information_request(view: information.RequestView, *, included: bool) -> dict[str, Any]:
    """One request as the export shows it: who asked and who answered are left out (staff)."""
    text = "erased" if view.erased else "included" if included else "withheld"
    document: dict[str, Any] = _jsonable(
        {
            "id": view.id,
            "referral": view.reference,
            "agency_asked": view.agency,
            "status": view.status,
            "requested_at": view.requested_at,
            "due_at": view.due_at,
            "answered_at": view.answered_at,
            "outcome": view.outcome,
            "answered_late": view.answered_late,
            "text": text,
            "question": view.question,
            "answer": view.answer,
        }
    )
    return document


def _deny(
    session: Session,
    caller: Caller,
    person_id: uuid.UUID,
    reason: str,
    message: str,
    *,
    decisions: Decisions | None = None,
) -> NoReturn:
    deny_person_access(
        session, caller, person_id, reason, message, requested=ACTION, decisions=decisions
    )


def _held_records(session: Session, person_id: uuid.UUID) -> list[SourceRecord]:
    """Every record version of the person that still has data (not erased), oldest first."""
    return list(
        session.scalars(
            select(SourceRecord)
            .where(SourceRecord.person_id == person_id, SourceRecord.erased_at.is_(None))
            .order_by(SourceRecord.source_agency, SourceRecord.created_at, SourceRecord.id)
        )
    )


def _present_groups(session: Session, record_ids: list[uuid.UUID]) -> dict[uuid.UUID, set[str]]:
    """Which groups each record holds (names only: nothing is decrypted)."""
    out: dict[uuid.UUID, set[str]] = defaultdict(set)
    if record_ids:
        for record_id, group in session.execute(
            select(RecordFieldGroup.record_id, RecordFieldGroup.group_name).where(
                RecordFieldGroup.record_id.in_(record_ids)
            )
        ):
            out[record_id].add(group)
    return out


def access_history(
    session: Session, person_id: uuid.UUID, *, before_seq: int | None = None
) -> list[AccessEvent]:
    """Audit entries about the person (refusals left out), oldest first, without actor ids."""
    stmt = (
        select(AuditEntry.seq, AuditEntry.occurred_at, AuditEntry.actor, AuditEntry.action)
        .add_columns(AuditEntry.details)
        .where(
            AuditEntry.subject_type == "person",
            AuditEntry.subject_id == str(person_id),
            AuditEntry.action != "authz.denied",
        )
        .order_by(AuditEntry.seq)
    )
    if before_seq is not None:
        stmt = stmt.where(AuditEntry.seq < before_seq)
    events = []
    for seq, occurred_at, actor, action, details in session.execute(stmt):
        info = details if isinstance(details, dict) else {}
        purpose = info.get("purpose")
        shown = info.get("shown") or info.get("included") or {}
        events.append(
            AccessEvent(
                seq=seq,
                occurred_at=occurred_at,
                action=action,
                accessed_by={
                    "kind": _ACTOR_KINDS.get(actor.partition(":")[0], "system"),
                    "role": _text(info.get("role")),
                    "agency": _text(info.get("agency")),
                },
                purpose=_purpose(purpose, info.get("reference")),
                break_glass=info.get("break_glass") is True,
                groups={
                    str(source): [str(g) for g in groups]
                    for source, groups in shown.items()
                    if isinstance(groups, list)
                }
                if isinstance(shown, dict)
                else {},
            )
        )
    return events


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _purpose(purpose: Any, reference: Any) -> dict[str, str] | None:
    """The purpose code, referral reference or SAR reference of an entry (never free text)."""
    if isinstance(purpose, dict):
        kept = {
            k: v for k, v in purpose.items() if k in ("code", "referral") and isinstance(v, str)
        }
        return kept or None
    if isinstance(reference, str):
        return {"sar_reference": reference}
    return None


# -- linked referrals (only when a referrals table exists) ------------------------------------


# Hashes (idempotency, content) and who did what (staff or client ids: see the docstring).
_LEFT_OUT_SUFFIXES = ("_hash", "_by")


def _referral_tables() -> Table | None:
    import mash_hub.db.models  # noqa: F401, PLC0415 - registers every model's table

    return Base.metadata.tables.get("referrals")


def _points_to(table: Table, target: str) -> list[str]:
    """Columns of ``table`` with a foreign key to ``target``'s id."""
    return [
        column.name
        for column in table.columns
        for fk in column.foreign_keys
        if fk.column.table.name == target and fk.column.name == "id"
    ]


def linked_referrals(
    session: Session, person_id: uuid.UUID, record_ids: list[uuid.UUID]
) -> list[dict[str, Any]] | None:
    """Referrals linked to the person (see the module docstring); None without the table."""
    referrals = _referral_tables()
    if referrals is None or "id" not in referrals.columns:
        return None
    ids: set[Any] = set()
    targets: list[tuple[str, list[Any]]] = [
        ("persons", [person_id]),
        ("source_records", record_ids),
    ]
    for target, values in targets:
        if not values:
            continue
        for name in _points_to(referrals, target):
            ids.update(session.scalars(select(referrals.c.id).where(referrals.c[name].in_(values))))
        for table in Base.metadata.tables.values():
            if table is referrals:
                continue
            for via in _points_to(table, "referrals"):
                for name in _points_to(table, target):
                    ids.update(
                        session.scalars(select(table.c[via]).where(table.c[name].in_(values)))
                    )
    if not ids:
        return []
    shown = [
        column
        for column in referrals.columns
        if not isinstance(column.type, LargeBinary | JSON)
        and not column.name.endswith(_LEFT_OUT_SUFFIXES)
    ]
    rows = session.execute(select(*shown).where(referrals.c.id.in_(ids)).order_by(referrals.c.id))
    return [_jsonable(dict(row._mapping)) for row in rows]
