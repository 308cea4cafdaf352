"""Reviewing linkage: the reviewer's use cases over :mod:`mash_hub.matching.review`.

The API (:mod:`mash_hub.web.review`) and the reviewer's pages (:mod:`mash_hub.web.pages.review`)
both call these, in the request's unit of work, so the two cannot drift apart:

* :func:`review_queue` the open tasks (ids, scores, explanations: no personal data, so no
  purpose is needed), or :func:`review_queue_page` one numbered page of them with their
  count; one ``linkage.review.list`` entry;
* :func:`review_task` both records side by side, as far as the caller's read mask of each
  record's source allows, after a purpose of access (a referral purpose must name one of the
  two records' persons); its free text sealed per person before anything is decrypted; one
  ``linkage.review.show`` entry;
* :func:`decide_task` a same-person / different-people decision, a must-link or cannot-link
  constraint for every later run; one ``linkage.review.decide`` entry.

Only roles the policy grants ``linkage_review`` may do any of this. A refusal (role, missing
purpose, a referral purpose that fits neither record) is audited as ``authz.denied`` and raised
as :class:`ReviewRefusedError`: the owner of the transaction catches it inside
``Database.transaction()`` so the entry commits, then answers. Nothing here commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from sqlalchemy import select
from sqlalchemy.orm import Session

from mash_hub import audit as audit_log
from mash_hub.audit import AuditEvent
from mash_hub.authz.policy import AccessPolicy, Caller, Decisions
from mash_hub.authz.vocabulary import SOURCES
from mash_hub.casework.view import (
    PURPOSE_REFERRAL_INVALID,
    Purpose,
    referral_purpose_refusal,
    seal_text,
)
from mash_hub.matching import review as reviewing
from mash_hub.matching.models import LinkDecision, ReviewTask
from mash_hub.persons.models import SourceRecord
from mash_hub.persons.store import PersonStore

ACTION = "linkage_review"
ROLE_NOT_PERMITTED = "role_not_permitted"
PURPOSE_MISSING = "purpose_missing"
# The longest free-text reason a decision may carry (stored encrypted).
REASON_MAX = 2000


class ReviewRefusedError(PermissionError):
    """Refused and audited (``authz.denied``); ``reason`` is the entry's reason code and
    ``details`` what else it recorded (ids and codes only)."""

    def __init__(self, reason: str, details: dict[str, Any]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.details = details


class ReviewTaskNotFoundError(LookupError):
    """No review task with this id."""


class ReasonCodeError(ValueError):
    """A reason code that does not go with the decision; ``allowed`` are those that do."""

    def __init__(self, decision: str, allowed: Sequence[str]) -> None:
        super().__init__(f"for decision {decision!r} one of: {', '.join(allowed)}")
        self.allowed = tuple(allowed)


def may_review(decisions: Decisions, caller: Caller) -> bool:
    return decisions.allows(caller, ACTION)


def require_reviewer(
    session: Session,
    decisions: Decisions,
    caller: Caller,
    requested: str,
    task_id: uuid.UUID | None = None,
) -> None:
    """Refuse (audited) a caller whose role may not review linkage; the pages also ask this
    before offering a task's purpose form."""
    if not may_review(decisions, caller):
        _refuse(session, caller, decisions, requested, reason=ROLE_NOT_PERMITTED, task_id=task_id)


def _refuse(
    session: Session,
    caller: Caller,
    decisions: Decisions,
    requested: str,
    *,
    reason: str,
    task_id: uuid.UUID | None = None,
    extra: dict[str, Any] | None = None,
) -> NoReturn:
    audit_log.record(
        session,
        AuditEvent(
            caller.user_id,
            "authz.denied",
            "review_task" if task_id is not None else None,
            str(task_id) if task_id is not None else None,
            {
                "reason": reason,
                "requested": requested,
                "role": caller.role,
                "agency": caller.agency,
                "policy_version": decisions.version,
                **(extra or {}),
            },
        ),
    )
    raise ReviewRefusedError(reason, extra or {})


def review_queue(
    session: Session,
    policy: AccessPolicy,
    caller: Caller,
    *,
    status: str | None = reviewing.OPEN,
    limit: int = 100,
) -> list[ReviewTask]:
    """Tasks with ``status`` (None: all), strongest first."""
    decisions = policy.for_session(session)
    require_reviewer(session, decisions, caller, "linkage.review.list")
    return reviewing.list_tasks(session, actor=caller.user_id, status=status, limit=limit)


@dataclass(frozen=True)
class QueuePage:
    """One page of the queue: its tasks, which page (from 1) of how many, and how many tasks
    there are in all."""

    tasks: list[ReviewTask]
    number: int
    pages: int
    total: int


def review_queue_page(
    session: Session,
    policy: AccessPolicy,
    caller: Caller,
    *,
    number: int,
    size: int,
    status: str | None = reviewing.OPEN,
) -> QueuePage:
    """Page ``number`` of the tasks with ``status``, ``size`` to a page, strongest first (a
    page past the last is the last); one ``linkage.review.list`` entry, as
    :func:`review_queue`, with the offset of a later page."""
    decisions = policy.for_session(session)
    require_reviewer(session, decisions, caller, "linkage.review.list")
    total = reviewing.count_tasks(session, status=status)
    pages = max(1, -(-total // size))
    number = min(max(number, 1), pages)
    tasks = reviewing.list_tasks(
        session, actor=caller.user_id, status=status, limit=size, offset=(number - 1) * size
    )
    return QueuePage(tasks, number, pages, total)


@dataclass(frozen=True)
class ShownTask:
    """A task as :func:`~mash_hub.matching.review.show_task` gives it (``detail``), the
    policy version it was shown under, and per record the review groups its source's mask
    withholds (names only: never read)."""

    detail: dict[str, Any]
    policy_version: int | None
    withheld: dict[str, list[str]]


def review_task(  # noqa: PLR0917 (the shape of view_person's signature)
    session: Session,
    store: PersonStore,
    policy: AccessPolicy,
    caller: Caller,
    task_id: uuid.UUID,
    purpose: Purpose | None,
) -> ShownTask:
    """The task with both records side by side (refusals in the module docstring)."""
    decisions = policy.for_session(session)
    requested = "linkage.review.show"
    require_reviewer(session, decisions, caller, requested, task_id)
    if purpose is None:
        _refuse(session, caller, decisions, requested, reason=PURPOSE_MISSING, task_id=task_id)
    task = session.get(ReviewTask, task_id)
    if task is None:
        raise ReviewTaskNotFoundError(str(task_id))
    refusal = referral_purpose_refusal(session, purpose, _task_persons(session, task))
    if refusal is not None:
        _refuse(
            session,
            caller,
            decisions,
            requested,
            reason=PURPOSE_REFERRAL_INVALID,
            task_id=task_id,
            extra=refusal,
        )
    details: dict[str, Any] = {
        "role": caller.role,
        "agency": caller.agency,
        "policy_version": decisions.version,
        "purpose": purpose.audit_fields(),
    }
    sealed = _seal_purpose(session, store, task, purpose)
    if sealed:
        details["purpose_text"] = sealed
    masks = {source: decisions.mask(caller, source) for source in SOURCES}
    detail = reviewing.show_task(
        session, store, task_id, actor=caller.user_id, masks=masks, audit_details=details
    )
    withheld = {
        record["id"]: [
            g for g in reviewing.REVIEW_GROUPS if g not in masks.get(record["source"] or "", ())
        ]
        for record in detail["records"]
    }
    return ShownTask(detail, decisions.version, withheld)


def _task_persons(session: Session, task: ReviewTask) -> list[uuid.UUID]:
    """The persons the task's two records belong to (a referral purpose must name one)."""
    return [
        person
        for person in session.scalars(
            select(SourceRecord.person_id).where(
                SourceRecord.id.in_([task.record_id_l, task.record_id_r])
            )
        )
        if person is not None
    ]


def _seal_purpose(
    session: Session, store: PersonStore, task: ReviewTask, purpose: Purpose
) -> list[dict[str, str]]:
    """Encrypt the purpose text once per person the two records belong to (a record not yet
    linked to a person counts by its own id), so erasing either person shreds it."""
    if purpose.text is None:
        return []
    ids = (task.record_id_l, task.record_id_r)
    owners = dict(
        session.execute(
            select(SourceRecord.id, SourceRecord.person_id).where(SourceRecord.id.in_(ids))
        ).all()
    )
    subjects = dict.fromkeys(owners.get(rid) or rid for rid in ids)
    return [seal_text(session, store, subject, "purpose", purpose.text) for subject in subjects]


def decide_task(
    session: Session,
    store: PersonStore,
    policy: AccessPolicy,
    caller: Caller,
    task_id: uuid.UUID,
    *,
    decision: str,
    reason_code: str,
    reason: str | None,
) -> LinkDecision:
    """Record the decision on the task's pair (a later one on the same pair supersedes it).
    :class:`ReasonCodeError` (not audited: nothing was accessed) when the code does not go
    with the decision."""
    decisions = policy.for_session(session)
    require_reviewer(session, decisions, caller, "linkage.review.decide", task_id)
    allowed = reviewing.REASON_CODES.get(decision, ())
    if reason_code not in allowed:
        raise ReasonCodeError(decision, allowed)
    if session.get(ReviewTask, task_id) is None:
        raise ReviewTaskNotFoundError(str(task_id))
    return reviewing.decide(
        session,
        store.keys,
        task_id,
        decision=decision,
        reason_code=reason_code,
        reason=reason,
        actor=caller.user_id,
    )
