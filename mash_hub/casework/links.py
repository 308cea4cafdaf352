"""Why a person's records are linked, and what linkage runs did to the person: the service
behind ``GET /api/v1/persons/{id}/links`` and the person page.

For each linked pair of the person's current records in sources the caller may see, the
latest linkage decision and its explanation (the kinds of agreement and their weights, never
a value); and the link history: the runs that created, joined, merged or split the person
(ids and counts only). One ``person.links.view`` audit entry per call; refusals go through
:func:`~mash_hub.casework.view.deny_person_access` (``authz.denied``), like the person view.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from mash_hub import audit as audit_log
from mash_hub.audit import AuditEvent
from mash_hub.authz.policy import AccessPolicy, Caller, Decisions
from mash_hub.casework.view import Purpose, deny_person_access, refuse_unfitting_referral
from mash_hub.matching.models import LinkEvent, LinkRun, PersonLink
from mash_hub.persons.models import Person, SourceRecord

REQUESTED = "person.links.view"
HISTORY_LIMIT = 50


@dataclass(frozen=True)
class LinkExplanation:
    record_id_l: uuid.UUID
    record_id_r: uuid.UUID
    source_l: str
    source_r: str
    status: str
    match_weight: float
    weights: dict[str, float]
    explanation: str
    run_id: uuid.UUID
    model_version: int


@dataclass(frozen=True)
class LinkHistoryEvent:
    """A run's change to the person: create, join, merge (``person_ids``: kept, absorbed...)
    or split (kept, new parts...)."""

    occurred_at: dt.datetime
    kind: str
    person_ids: list[str]
    records: int
    run_id: uuid.UUID


@dataclass(frozen=True)
class PersonLinks:
    person_id: uuid.UUID
    policy_version: int | None
    audit_seq: int
    links: list[LinkExplanation] = field(default_factory=list)
    history: list[LinkHistoryEvent] = field(default_factory=list)


def person_links(
    session: Session,
    policy: AccessPolicy,
    caller: Caller,
    person_id: uuid.UUID,
    purpose: Purpose | None,
) -> PersonLinks:
    """The explanations and history the caller may see (module docstring); raises
    :class:`~mash_hub.casework.view.AccessDeniedError` after auditing a refusal."""
    decisions = policy.for_session(session)
    reason: str | None = None
    if not decisions.may_view_persons(caller):
        reason = "role_not_permitted"
    elif purpose is None:
        reason = "purpose_missing"
    else:
        person = session.get(Person, person_id)
        if person is None or person.erased_at is not None:
            reason = "unknown_person"
    if reason is not None or purpose is None:
        deny_person_access(
            session,
            caller,
            person_id,
            reason or "purpose_missing",
            "the links of this person are not available",
            requested=REQUESTED,
            decisions=decisions,
        )
    refuse_unfitting_referral(session, caller, person_id, purpose, decisions, REQUESTED)
    links = _links(session, decisions, caller, person_id)
    history = _history(session, person_id)
    seq = audit_log.record(
        session,
        AuditEvent(
            caller.user_id,
            REQUESTED,
            "person",
            str(person_id),
            {
                "role": caller.role,
                "agency": caller.agency,
                "policy_version": decisions.version,
                "purpose": purpose.audit_fields(),
                "links": sorted([str(link.record_id_l), str(link.record_id_r)] for link in links),
            },
        ),
    )
    return PersonLinks(person_id, decisions.version, seq, links, history)


def _links(
    session: Session, decisions: Decisions, caller: Caller, person_id: uuid.UUID
) -> list[LinkExplanation]:
    """The latest link of each pair of the person's current records in visible sources."""
    source_of = {
        record_id: source
        for record_id, source in session.execute(
            select(SourceRecord.id, SourceRecord.source_agency).where(
                SourceRecord.person_id == person_id,
                SourceRecord.is_current.is_(True),
                SourceRecord.erased_at.is_(None),
            )
        )
        if decisions.mask(caller, source)
    }
    if not source_of:
        return []
    ids = list(source_of)
    rows = session.execute(
        select(PersonLink, LinkRun.model_version)
        .join(LinkRun, LinkRun.id == PersonLink.run_id)
        .where(PersonLink.record_id_l.in_(ids), PersonLink.record_id_r.in_(ids))
        .order_by(LinkRun.started_at.desc(), PersonLink.id.desc())
    ).all()
    latest: dict[frozenset[uuid.UUID], LinkExplanation] = {}
    for link, model_version in rows:
        pair = frozenset((link.record_id_l, link.record_id_r))
        if pair in latest:
            continue
        latest[pair] = LinkExplanation(
            record_id_l=link.record_id_l,
            record_id_r=link.record_id_r,
            source_l=source_of[link.record_id_l],
            source_r=source_of[link.record_id_r],
            status=link.status,
            match_weight=link.match_weight,
            weights=dict(link.weights),
            explanation=link.explanation,
            run_id=link.run_id,
            model_version=model_version,
        )
    return sorted(latest.values(), key=lambda out: (str(out.record_id_l), str(out.record_id_r)))


def _history(session: Session, person_id: uuid.UUID) -> list[LinkHistoryEvent]:
    """The latest link events naming the person, newest first (ids and counts only)."""
    rows = session.execute(
        select(LinkEvent, LinkRun.started_at)
        .join(LinkRun, LinkRun.id == LinkEvent.run_id)
        .where(LinkEvent.person_ids.contains([str(person_id)]))
        .order_by(LinkRun.started_at.desc(), LinkEvent.id.desc())
        .limit(HISTORY_LIMIT)
    ).all()
    return [
        LinkHistoryEvent(
            started_at, event.kind, list(event.person_ids), event.records, event.run_id
        )
        for event, started_at in rows
    ]
