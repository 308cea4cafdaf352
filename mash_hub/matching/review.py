"""The review queue: pairs a person decides, and the decisions every later run obeys.

Each run turns the pairs it could not decide (review band, possible twins, strong links a
guard blocked) into ``review_tasks``, one row per record pair, refreshed by later runs and
closed when a full run no longer needs them. A reviewer decides *same person* or *different
people*; the decision (``link_decisions``) records who, when, a reason code and, optionally,
a free-text reason. The text may name people, so it is encrypted under a data key of its own
(issued for the decision's id, as the quarantine does for raw rows); codes, ids and counts
are all that reach the audit log.

Decisions are must-link / cannot-link constraints (:class:`~mash_hub.matching.cluster.
Constraints`) for every later run, full or incremental. They name record ids, and a record
re-sent by its agency becomes a new version with a new id: constraints are resolved to the
*current* version through the keyed source key, so a decision survives re-ingestion.
They are also the labelled pairs for training (:func:`labelled_pairs`).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from mash_hub.audit import AuditEvent
from mash_hub.audit import record as audit
from mash_hub.crypto.keystore import KeyStore
from mash_hub.matching.cluster import ConstraintConflict, Constraints, pair_key
from mash_hub.matching.model import ScoredPair, explain
from mash_hub.matching.models import LinkDecision, ReviewTask
from mash_hub.persons.store import CONTACT, IDENTIFIERS, IDENTITY, PersonStore

TABLE = "link_decisions"
GROUP = "reason"
SAME = "same"
DIFFERENT = "different"
DECISIONS = (SAME, DIFFERENT)
REASON_CODES = {
    SAME: ("same_identifier", "same_details", "agency_confirmed", "other"),
    DIFFERENT: (
        "twin",
        "sibling_or_relative",
        "namesake",
        "different_details",
        "agency_confirmed",
        "other",
    ),
}
OPEN, DECIDED, CLOSED = "open", "decided", "closed"
# What a reviewer sees of each record: enough to tell whether two records are one person.
REVIEW_GROUPS = (IDENTITY, IDENTIFIERS, CONTACT)
MUST_LINK_CONFLICT = "must_link_conflict"
_CONFLICT_TEXT = {
    "identifier_conflict": "decided same person, but the records hold different identifiers",
    "cannot_link": "decided same person, but another decision keeps them apart",
    "existing_persons": "decided same person; they are two persons until the next full run",
}


class ReviewError(LookupError):
    """No such task, or a decision that is not allowed."""


# -- constraints ---------------------------------------------------------------------------

_ACTIVE = text(
    """
    SELECT d.decision, cl.id AS left_id, cr.id AS right_id
    FROM link_decisions d
    JOIN source_records ol ON ol.id = d.record_id_l
    JOIN source_records orr ON orr.id = d.record_id_r
    JOIN source_records cl ON cl.feed = ol.feed AND cl.source_key = ol.source_key
        AND cl.is_current AND cl.erased_at IS NULL
    JOIN source_records cr ON cr.feed = orr.feed AND cr.source_key = orr.source_key
        AND cr.is_current AND cr.erased_at IS NULL
    WHERE d.superseded_at IS NULL
    ORDER BY d.decided_at, d.id
    """
)


def load_constraints(session: Session) -> Constraints:
    """Every decision in force, as must-link / cannot-link pairs of current record ids."""
    must: list[tuple[str, str]] = []
    cannot: list[tuple[str, str]] = []
    for decision, left, right in session.execute(_ACTIVE):
        pair = pair_key(str(left), str(right))
        (must if decision == SAME else cannot).append(pair)
    return Constraints(must_link=tuple(must), cannot_link=tuple(cannot))


def labelled_pairs(session: Session) -> dict[str, int]:
    """Counts of the decisions in force, by decision: the training labels available."""
    constraints = load_constraints(session)
    return {SAME: len(constraints.must_link), DIFFERENT: len(constraints.cannot_link)}


# -- tasks from a run ----------------------------------------------------------------------


@dataclass
class TaskCounts:
    opened: int = 0
    refreshed: int = 0
    closed: int = 0
    conflicts_flagged: int = 0


_EXISTING_TASKS = text(
    "SELECT t.record_id_l::text, t.record_id_r::text FROM review_tasks t"
    " JOIN unnest(CAST(:l AS uuid[]), CAST(:r AS uuid[])) AS w(l, r)"
    " ON t.record_id_l = w.l AND t.record_id_r = w.r"
)
# ``extra``: whether a must-link conflict reopens a decided task.
_REFRESH_TASKS = text(
    "UPDATE review_tasks t SET kind = w.kind, match_weight = w.match_weight,"
    " weights = w.weights, explanation = w.explanation, last_run_id = :run,"
    " updated_at = :now, status = CASE WHEN t.status = :closed"
    " OR (w.extra AND t.status <> :open) THEN :open ELSE t.status END"
    " FROM unnest(CAST(:l AS uuid[]), CAST(:r AS uuid[]), CAST(:kind AS text[]),"
    " CAST(:weight AS float8[]), CAST(:weights AS jsonb[]), CAST(:explanation AS text[]),"
    " CAST(:extra AS boolean[])) AS w(l, r, kind, match_weight, weights, explanation, extra)"
    " WHERE t.record_id_l = w.l AND t.record_id_r = w.r"
)
# ``extra``: the new task's id.
_OPEN_TASKS = text(
    "INSERT INTO review_tasks (id, record_id_l, record_id_r, created_run_id, last_run_id,"
    " status, kind, match_weight, weights, explanation)"
    " SELECT w.extra, w.l, w.r, :run, :run, :open, w.kind, w.match_weight, w.weights,"
    " w.explanation"
    " FROM unnest(CAST(:l AS uuid[]), CAST(:r AS uuid[]), CAST(:kind AS text[]),"
    " CAST(:weight AS float8[]), CAST(:weights AS jsonb[]), CAST(:explanation AS text[]),"
    " CAST(:extra AS uuid[])) AS w(l, r, kind, match_weight, weights, explanation, extra)"
)
# Every task this call saw now has this run as its last run; the run is new.
_CLOSE_TASKS = text(
    "UPDATE review_tasks SET status = :closed, updated_at = :now"
    " WHERE status = :open AND last_run_id <> :run"
)


def sync_tasks(
    session: Session,
    run_id: uuid.UUID,
    review: Iterable[tuple[ScoredPair, str]],
    conflicts: Iterable[ConstraintConflict] = (),
    *,
    full: bool,
    touching: Collection[str] = (),
) -> TaskCounts:
    """Turn a run's review pairs (with their kind) into tasks; a full run closes the open
    tasks it no longer needs. Must-link decisions the run could not honour reopen their
    pair's task as ``must_link_conflict``, so a person sees them.

    Set-based: one look-up of which pairs have a task, one UPDATE for those, one INSERT for
    the rest, one UPDATE closing the unneeded (a relink refreshes every task it keeps; row by
    row through the ORM that cost seconds at 1,000,000 records). ``touching`` (the new
    records of an incremental run) is implied by the pairs, all of which touch one."""
    counts = TaskCounts()
    # Pair -> [kind, weight, weights JSON, explanation, reopen], in first-seen order; a pair
    # given twice takes its last values, and is reopened if either asks.
    wanted: dict[tuple[str, str], list[Any]] = {}
    calls: list[tuple[str, str]] = []

    def want(key: tuple[str, str], values: list[Any], reopen: bool) -> None:
        calls.append(key)
        earlier = wanted.get(key)
        wanted[key] = [*values, reopen or (earlier is not None and earlier[4])]

    for pair, kind in review:
        want(
            (pair.left, pair.right),
            [kind, round(pair.match_weight, 2), json.dumps(pair.weights), explain(pair)],
            reopen=False,
        )
    for conflict in conflicts:
        want(
            pair_key(conflict.left, conflict.right),
            [MUST_LINK_CONFLICT, 0.0, "{}", _CONFLICT_TEXT.get(conflict.reason, conflict.reason)],
            reopen=True,
        )
        counts.conflicts_flagged += 1
    session.flush()
    now = dt.datetime.now(dt.UTC)
    sql = {"run": run_id, "now": now, "open": OPEN, "closed": CLOSED}
    existing: set[tuple[str, str]] = set()
    if wanted:
        keys = list(wanted)
        existing = {
            (str(left), str(right))
            for left, right in session.execute(
                _EXISTING_TASKS, {"l": [k[0] for k in keys], "r": [k[1] for k in keys]}
            )
        }
    counts.refreshed = sum(1 for key in calls if key in existing)
    fresh = [key for key in wanted if key not in existing]
    counts.opened = len(fresh)
    for statement, chosen, extra in (
        (_REFRESH_TASKS, [k for k in wanted if k in existing], None),
        (_OPEN_TASKS, fresh, [uuid.uuid4() for _ in fresh]),
    ):
        if chosen:
            rows = [wanted[key] for key in chosen]
            session.execute(
                statement,
                {
                    **sql,
                    "l": [k[0] for k in chosen],
                    "r": [k[1] for k in chosen],
                    "kind": [row[0] for row in rows],
                    "weight": [float(row[1]) for row in rows],
                    "weights": [row[2] for row in rows],
                    "explanation": [row[3] for row in rows],
                    "extra": extra if extra is not None else [row[4] for row in rows],
                },
            )
    if full:
        closed = session.execute(_CLOSE_TASKS, sql)
        counts.closed = int(getattr(closed, "rowcount", 0) or 0)
    # Tasks this session already holds must not keep the values from before.
    for held in list(session.identity_map.values()):
        if isinstance(held, ReviewTask):
            session.expire(held)
    return counts


# -- reviewing -----------------------------------------------------------------------------


def list_tasks(
    session: Session,
    *,
    actor: str,
    status: str | None = OPEN,
    limit: int = 100,
    offset: int = 0,
) -> list[ReviewTask]:
    """Tasks, strongest first (ids, scores, explanations: no personal data), skipping the
    first ``offset`` (a later page). Audited; the offset is recorded when there is one."""
    query = select(ReviewTask).order_by(
        ReviewTask.match_weight.desc(),
        ReviewTask.record_id_l,
        ReviewTask.record_id_r,
        ReviewTask.id,
    )
    if status is not None:
        query = query.where(ReviewTask.status == status)
    tasks = list(session.scalars(query.offset(offset).limit(limit)))
    details: dict[str, Any] = {"status": status or "all", "count": len(tasks)}
    if offset:
        details["offset"] = offset
    audit(
        session,
        AuditEvent(
            actor=actor,
            action="linkage.review.list",
            subject_type="review_task",
            details=details,
        ),
    )
    return tasks


def count_tasks(session: Session, *, status: str | None = OPEN) -> int:
    """How many tasks have ``status`` (None: all): a number, so not audited by itself."""
    query = select(func.count()).select_from(ReviewTask)
    if status is not None:
        query = query.where(ReviewTask.status == status)
    return int(session.scalar(query) or 0)


def _task(session: Session, task_id: uuid.UUID, *, lock: bool = False) -> ReviewTask:
    task = session.get(ReviewTask, task_id, with_for_update=lock)
    if task is None:
        raise ReviewError(f"no review task {task_id}")
    return task


def active_decision(session: Session, task: ReviewTask) -> LinkDecision | None:
    return session.scalar(
        select(LinkDecision)
        .where(
            LinkDecision.record_id_l == task.record_id_l,
            LinkDecision.record_id_r == task.record_id_r,
            LinkDecision.superseded_at.is_(None),
        )
        .order_by(LinkDecision.decided_at.desc())
        .limit(1)
    )


def reason_text(session: Session, keys: KeyStore, decision: LinkDecision) -> str | None:
    """Decrypt a decision's free-text reason (``None``: none given, or shredded)."""
    if decision.reason_ciphertext is None:
        return None
    cipher = keys.ciphers(session, [decision.id]).get(decision.id)
    if cipher is None:
        return None
    value = cipher.decrypt_group(
        bytes(decision.reason_ciphertext), table=TABLE, group=GROUP, row_id=decision.id
    )
    return str(value["text"])


def show_task(
    session: Session,
    store: PersonStore,
    task_id: uuid.UUID,
    *,
    actor: str,
    masks: Mapping[str, Collection[str]],
    audit_details: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A task with both records side by side, for the reviewer.

    ``masks`` is the caller's field mask per source agency (from the access policy). Of each
    record only the review groups (identity, identifiers, contact) its source's mask allows
    are read and decrypted; nothing else is. The view is audited before anything is decrypted
    (ids, sources and the groups shown per record, never values); ``audit_details`` adds the
    caller's role, agency, policy version and purpose.
    """
    task = _task(session, task_id)
    ids = (task.record_id_l, task.record_id_r)
    meta = store.read(session, ids, ())  # metadata only: nothing is decrypted
    shown = {
        rid: sorted(set(REVIEW_GROUPS) & set(masks.get(meta[rid].source_agency, ())))
        if rid in meta
        else []
        for rid in ids
    }
    decision = active_decision(session, task)
    seq = audit(
        session,
        AuditEvent(
            actor=actor,
            action="linkage.review.show",
            subject_type="review_task",
            subject_id=str(task.id),
            details={
                **(audit_details or {}),
                "records": [str(rid) for rid in ids],
                "sources": {str(rid): meta[rid].source_agency for rid in ids if rid in meta},
                "shown": {str(rid): groups for rid, groups in shown.items()},
                "decision_reason_shown": bool(
                    decision is not None and decision.reason_ciphertext is not None
                ),
            },
        ),
    )
    records = dict(meta)
    for groups in {tuple(g) for g in shown.values() if g}:
        wanted = [rid for rid in ids if tuple(shown[rid]) == groups]
        records.update(store.read(session, wanted, groups))
    out: dict[str, Any] = {
        **task_summary(task),
        "records": [
            {
                "id": str(rid),
                "source": records[rid].source_agency if rid in records else None,
                "feed": records[rid].feed if rid in records else None,
                "person_id": str(records[rid].person_id)
                if rid in records and records[rid].person_id
                else None,
                **(records[rid].groups if rid in records else {}),
            }
            for rid in ids
        ],
        "decision": None,
        "audit_seq": seq,
    }
    if decision is not None:
        out["decision"] = {
            "decision": decision.decision,
            "reason_code": decision.reason_code,
            "reason": reason_text(session, store.keys, decision),
            "actor": decision.actor,
            "decided_at": decision.decided_at.isoformat() if decision.decided_at else None,
        }
    return out


def task_summary(task: ReviewTask) -> dict[str, Any]:
    return {
        "id": str(task.id),
        "record_id_l": str(task.record_id_l),
        "record_id_r": str(task.record_id_r),
        "kind": task.kind,
        "match_weight": task.match_weight,
        "weights": dict(task.weights),
        "explanation": task.explanation,
        "status": task.status,
        "created_run_id": str(task.created_run_id),
        "last_run_id": str(task.last_run_id),
    }


def decide(
    session: Session,
    keys: KeyStore,
    task_id: uuid.UUID,
    *,
    decision: str,
    reason_code: str,
    actor: str,
    reason: str | None = None,
) -> LinkDecision:
    """Record a decision on a task's pair (a later decision on the same pair supersedes the
    earlier one). Takes effect at the next run. Audited with codes and ids only."""
    task = _task(session, task_id, lock=True)
    made = record_decision(
        session,
        keys,
        str(task.record_id_l),
        str(task.record_id_r),
        decision=decision,
        reason_code=reason_code,
        actor=actor,
        reason=reason,
        task=task,
    )
    task.status = DECIDED
    task.updated_at = dt.datetime.now(dt.UTC)
    return made


def record_decision(
    session: Session,
    keys: KeyStore,
    left: str,
    right: str,
    *,
    decision: str,
    reason_code: str,
    actor: str,
    reason: str | None = None,
    task: ReviewTask | None = None,
) -> LinkDecision:
    """A decision on any pair of records (the task is optional)."""
    if decision not in DECISIONS:
        raise ReviewError(f"decision must be one of {', '.join(DECISIONS)}")
    if reason_code not in REASON_CODES[decision]:
        raise ReviewError(
            f"reason code for {decision!r} must be one of {', '.join(REASON_CODES[decision])}"
        )
    if left == right:
        raise ReviewError("a decision needs two different records")
    left, right = pair_key(left, right)
    ids = (uuid.UUID(left), uuid.UUID(right))
    now = dt.datetime.now(dt.UTC)
    superseded = session.execute(
        update(LinkDecision)
        .where(
            LinkDecision.record_id_l == ids[0],
            LinkDecision.record_id_r == ids[1],
            LinkDecision.superseded_at.is_(None),
        )
        .values(superseded_at=now)
    )
    decision_id = uuid.uuid4()
    ciphertext = None
    if reason and reason.strip():
        issued = keys.issue(decision_id)
        keys.save(session, [issued.row])
        ciphertext = issued.cipher.encrypt_group(
            {"text": reason.strip()}, table=TABLE, group=GROUP, row_id=decision_id
        )
    made = LinkDecision(
        id=decision_id,
        task_id=task.id if task is not None else None,
        record_id_l=ids[0],
        record_id_r=ids[1],
        decision=decision,
        reason_code=reason_code,
        reason_ciphertext=ciphertext,
        actor=actor,
        decided_at=now,
    )
    session.add(made)
    session.flush()
    audit(
        session,
        AuditEvent(
            actor=actor,
            action="linkage.review.decide",
            subject_type="review_task" if task is not None else "record_pair",
            subject_id=str(task.id) if task is not None else None,
            details={
                "decision_id": str(decision_id),
                "decision": decision,
                "reason_code": reason_code,
                "records": [left, right],
                "reason_text": ciphertext is not None,
                "supersedes": int(getattr(superseded, "rowcount", 0) or 0),
            },
        ),
    )
    return made


def kinds(review: Iterable[ScoredPair], status: Mapping[tuple[str, str], str]) -> list[Any]:
    """Review pairs with their kind (the clustering status of the pair)."""
    return [(p, status.get((p.left, p.right), "review")) for p in review]
