"""The linkage review queue over HTTP: pairs of records a person decides (same or different).

Only callers whose role the policy grants ``linkage_review`` (MASH officers in the baseline)
may use these routes; anyone else gets 403 and an ``authz.denied`` audit entry. The queue
itself holds ids, scores and explanations (no personal data). Showing a task decrypts the
two records' identity, identifiers and contact groups, only as far as the caller's read mask
of each record's source agency allows, and needs a purpose of access in the same
``X-Purpose-*`` headers as the person view (:mod:`mash_hub.web.persons`); its free text is
sealed (encrypted) before anything is decrypted, and the ``linkage.review.show`` entry names
the groups shown per record. A decision is a must-link or cannot-link that every later
linkage run obeys (:mod:`mash_hub.matching.review`); its free-text reason is stored
encrypted, and only codes and ids reach the audit log. Refusals commit their audit entry
before the error is answered. No error body carries a value from the request.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from mash_hub.authz.policy import AccessPolicy, PolicyNotPublishedError
from mash_hub.casework import review as casework
from mash_hub.casework.view import PURPOSE_REFERRAL_INVALID, PURPOSE_REFERRAL_MESSAGE, Purpose
from mash_hub.matching import review as reviewing
from mash_hub.matching.models import ReviewTask
from mash_hub.web.deps import CurrentPrincipal
from mash_hub.web.errors import ApiProblemError, problem_doc, problem_response
from mash_hub.web.persons import (
    RESPONSES as PERSON_RESPONSES,
)
from mash_hub.web.persons import (
    PurposeCode,
    PurposeReferral,
    PurposeText,
    parse_purpose,
    policy_not_published,
    purpose_bad_request,
    services,
)

DENIED_DETAIL = "not allowed to review linkage"
DENIED_CODE = "review_not_permitted"
REASON_MAX = casework.REASON_MAX

_RID = "3f0c2a9e6b1d4c57"
RESPONSES: dict[int | str, dict[str, Any]] = {
    403: problem_doc(
        "The caller's role may not review linkage (`linkage_review`); the refusal is audited",
        {
            "type": "about:blank",
            "title": "Forbidden",
            "status": 403,
            "detail": DENIED_DETAIL,
            "code": DENIED_CODE,
            "request_id": _RID,
        },
    ),
    503: PERSON_RESPONSES[503],
}
NOT_FOUND = problem_doc(
    "No review task with this id",
    {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "detail": "no such review task",
        "code": "review_task_not_found",
        "request_id": _RID,
    },
)

router = APIRouter(prefix="/review-tasks", tags=["linkage review"], responses=RESPONSES)

_TASK_EXAMPLE: dict[str, Any] = {
    "id": "0b6f8f0e-3f7c-4d55-9a59-2f8d0c1e7a10",
    "record_id_l": "1d1b3c52-8c4e-4f0b-a3e6-7f3f1f3b8c01",
    "record_id_r": "9a7e2b10-55d4-4c8e-b1a2-03c4d5e6f708",
    "kind": "review",
    "status": "open",
    "match_weight": 4.2,
    "weights": {"dob": 6.1, "family_name": 3.9, "given_name": -2.4, "postcode": -3.4},
    "explanation": "same date of birth +6.1; similar family name +3.9; different postcode -3.4",
    "created_run_id": "5f0c7a9e-6b1d-4c57-8e2a-3f0c2a9e6b1d",
    "last_run_id": "5f0c7a9e-6b1d-4c57-8e2a-3f0c2a9e6b1d",
}


# -- bodies ---------------------------------------------------------------------------------


class ReviewTaskOut(BaseModel):
    """A pair the linkage could not decide: ids, scores and explanation, no personal data."""

    model_config = ConfigDict(json_schema_extra={"examples": [_TASK_EXAMPLE]})

    id: uuid.UUID
    record_id_l: uuid.UUID
    record_id_r: uuid.UUID
    kind: str = Field(
        description="Why it is queued: `review` (uncertain score), `possible_twin`, a guard "
        "that blocked a strong link, or `must_link_conflict` (a decision a run could not honour)."
    )
    status: Literal["open", "decided", "closed"]
    match_weight: float
    weights: dict[str, float] = Field(description="Match weight per comparison.")
    explanation: str = Field(description="The kinds of agreement and their weights, no value.")
    created_run_id: uuid.UUID
    last_run_id: uuid.UUID


class ReviewTaskList(BaseModel):
    status: Literal["open", "decided", "closed", "all"]
    count: int
    tasks: list[ReviewTaskOut] = Field(description="Strongest first.")


class ReviewRecordOut(BaseModel):
    record_id: uuid.UUID
    source: str | None = Field(description="The source agency that supplied the record.")
    feed: str | None
    person_id: uuid.UUID | None = Field(description="The person the record is linked to now.")
    groups: dict[str, dict[str, Any]] = Field(
        description="Identity, identifiers and contact, only as far as the caller's mask of "
        "this source allows (a group that is not allowed is absent, never decrypted)."
    )


class DecisionShown(BaseModel):
    decision: Literal["same", "different"]
    reason_code: str
    reason: str | None = Field(description="The reviewer's free text, if any (stored encrypted).")
    actor: str
    decided_at: dt.datetime | None


class ReviewTaskDetail(ReviewTaskOut):
    """A task with both records side by side."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **_TASK_EXAMPLE,
                    "policy_version": 3,
                    "purpose": {"code": "mash_triage"},
                    "audit_seq": 5012,
                    "records": [
                        {
                            "record_id": _TASK_EXAMPLE["record_id_l"],
                            "source": "police",
                            "feed": "police",
                            "person_id": "7c1e2d3f-4a5b-4c6d-8e7f-8091a2b3c4d5",
                            "groups": {"identity": {"family_name": "Example"}},
                        }
                    ],
                    "decision": None,
                }
            ]
        }
    )

    policy_version: int | None
    purpose: dict[str, str] = Field(description="The reason code or referral reference.")
    audit_seq: int = Field(description="The `linkage.review.show` audit entry of this view.")
    records: list[ReviewRecordOut] = Field(description="The left and the right record.")
    decision: DecisionShown | None = Field(description="The decision in force, if any.")


class DecisionIn(BaseModel):
    """A reviewer's decision on a task's pair of records."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"decision": "different", "reason_code": "twin", "reason": "School confirms twins"}
            ]
        },
    )

    decision: Literal["same", "different"]
    reason_code: str = Field(
        max_length=32,
        description="same: "
        + ", ".join(reviewing.REASON_CODES[reviewing.SAME])
        + "; different: "
        + ", ".join(reviewing.REASON_CODES[reviewing.DIFFERENT]),
    )
    reason: str | None = Field(
        default=None,
        max_length=REASON_MAX,
        description="Free text; may name people, so it is stored encrypted and never audited.",
    )


class DecisionMade(BaseModel):
    decision_id: uuid.UUID
    task_id: uuid.UUID
    decision: Literal["same", "different"]
    reason_code: str
    takes_effect: str = Field(description="When the linkage obeys it.")


# -- helpers ----------------------------------------------------------------------------------


def _decisions(session: Session, policy: AccessPolicy) -> None:
    """503 before anything else when no policy is published (the service asks it again)."""
    try:
        policy.for_session(session)
    except PolicyNotPublishedError:
        raise policy_not_published() from None


def _forbidden() -> ApiProblemError:
    return ApiProblemError(403, DENIED_DETAIL, code=DENIED_CODE)


def _not_found() -> ApiProblemError:
    return ApiProblemError(404, "no such review task", code="review_task_not_found")


def task_out(task: ReviewTask) -> ReviewTaskOut:
    return ReviewTaskOut.model_validate(reviewing.task_summary(task))


# -- routes -----------------------------------------------------------------------------------


@router.get("", summary="The review queue", response_model=ReviewTaskList)
def list_review_tasks(
    request: Request,
    *,
    principal: CurrentPrincipal,
    status: Literal["open", "decided", "closed", "all"] = "open",
    limit: int = Query(100, ge=1, le=1000, description="At most this many tasks."),
) -> Any:
    """Tasks with the given status, strongest first: ids, kind, weights and explanation (no
    personal data, so no purpose is needed). Audited as `linkage.review.list` (status and
    count)."""
    database, _, policy = services(request)
    caller = principal.caller()
    tasks: list[ReviewTask] | None = None
    with database.transaction() as session:
        _decisions(session, policy)
        try:
            tasks = casework.review_queue(
                session, policy, caller, status=None if status == "all" else status, limit=limit
            )
        except casework.ReviewRefusedError:
            tasks = None  # audited; commits with the transaction
        else:
            out = ReviewTaskList(
                status=status, count=len(tasks), tasks=[task_out(t) for t in tasks]
            )
    if tasks is None:
        raise _forbidden()
    return out


@router.get(
    "/{task_id}",
    summary="A task with both records side by side (masked per source agency)",
    response_model=ReviewTaskDetail,
    responses={400: PERSON_RESPONSES[400], 404: NOT_FOUND},
)
def get_review_task(
    request: Request,
    task_id: uuid.UUID,
    *,
    principal: CurrentPrincipal,
    x_purpose_code: PurposeCode = None,
    x_purpose_referral: PurposeReferral = None,
    x_purpose_text: PurposeText = None,
) -> Any:
    """The task, its decision in force, and both records' identity, identifiers and contact
    groups as far as the caller's read mask of each record's source agency allows (nothing
    else is decrypted). Needs a purpose of access; audited as `linkage.review.show` (ids,
    sources, groups shown per record, purpose code) before anything is decrypted. Refusals
    (role, purpose) are audited as `authz.denied`."""
    purpose, faults = parse_purpose(x_purpose_code, x_purpose_referral, x_purpose_text)
    database, store, policy = services(request)
    caller = principal.caller()
    outcome: str | None = None
    with database.transaction() as session:
        _decisions(session, policy)
        try:
            shown = casework.review_task(session, store, policy, caller, task_id, purpose)
        except casework.ReviewRefusedError as refused:
            outcome = {
                casework.PURPOSE_MISSING: "purpose",
                PURPOSE_REFERRAL_INVALID: "referral",
            }.get(refused.reason, "forbidden")
        except casework.ReviewTaskNotFoundError:
            outcome = "missing"
        else:
            assert purpose is not None
            body = _detail(shown.detail, shown.policy_version, purpose)
    if outcome == "forbidden":
        raise _forbidden()
    if outcome == "purpose":
        return purpose_bad_request(request, faults)
    if outcome == "missing":
        raise _not_found()
    if outcome == "referral":
        raise ApiProblemError(403, PURPOSE_REFERRAL_MESSAGE, code=PURPOSE_REFERRAL_INVALID)
    return body


def _detail(shown: dict[str, Any], version: int | None, purpose: Purpose) -> ReviewTaskDetail:
    fixed = {"id", "source", "feed", "person_id"}
    records = [
        ReviewRecordOut(
            record_id=record["id"],
            source=record["source"],
            feed=record["feed"],
            person_id=record["person_id"],
            groups={k: v for k, v in record.items() if k not in fixed},
        )
        for record in shown["records"]
    ]
    summary = {k: v for k, v in shown.items() if k not in {"records", "decision", "audit_seq"}}
    return ReviewTaskDetail(
        **summary,
        policy_version=version,
        purpose=purpose.audit_fields(),
        audit_seq=shown["audit_seq"],
        records=records,
        decision=DecisionShown.model_validate(shown["decision"]) if shown["decision"] else None,
    )


@router.post(
    "/{task_id}/decision",
    summary="Decide a task: same person or different people",
    response_model=DecisionMade,
    status_code=201,
    responses={
        404: NOT_FOUND,
        422: problem_doc(
            "The body is not valid (e.g. a reason code that does not go with the decision); "
            "`errors` names the field, never its value",
            {
                "type": "about:blank",
                "title": "Unprocessable Content",
                "status": 422,
                "detail": "the request is not valid",
                "code": "validation_failed",
                "request_id": _RID,
                "errors": [
                    {
                        "loc": ["body", "reason_code"],
                        "msg": "for decision 'different' one of: twin, sibling_or_relative, "
                        "namesake, different_details, agency_confirmed, other",
                        "type": "enum",
                    }
                ],
            },
        ),
    },
)
def decide_review_task(
    request: Request, task_id: uuid.UUID, body: DecisionIn, *, principal: CurrentPrincipal
) -> Any:
    """Record a decision on the task's pair (a later decision on the same pair supersedes
    it). It is a must-link (`same`) or cannot-link (`different`) constraint for the next full
    run and every incremental run. Audited as `linkage.review.decide` (decision, reason code,
    record ids; the free-text reason only as a flag)."""
    database, store, policy = services(request)
    caller = principal.caller()
    outcome: str | None = None
    allowed_codes: tuple[str, ...] = ()
    with database.transaction() as session:
        _decisions(session, policy)
        try:
            made = casework.decide_task(
                session,
                store,
                policy,
                caller,
                task_id,
                decision=body.decision,
                reason_code=body.reason_code,
                reason=body.reason,
            )
        except casework.ReviewRefusedError:
            outcome = "forbidden"
        except casework.ReasonCodeError as wrong:
            outcome, allowed_codes = "invalid", wrong.allowed
        except casework.ReviewTaskNotFoundError:
            outcome = "missing"
        else:
            out = DecisionMade(
                decision_id=made.id,
                task_id=task_id,
                decision=body.decision,
                reason_code=made.reason_code,
                takes_effect="the next `mash-hub link run`, and every incremental run",
            )
    if outcome == "forbidden":
        raise _forbidden()
    if outcome == "missing":
        raise _not_found()
    if outcome == "invalid":
        return problem_response(
            request,
            422,
            "the request is not valid",
            code="validation_failed",
            errors=[
                {
                    "loc": ["body", "reason_code"],
                    "msg": f"for decision {body.decision!r} one of: {', '.join(allowed_codes)}",
                    "type": "enum",
                }
            ],
        )
    return out
