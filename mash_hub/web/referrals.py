"""Referrals over HTTP: submission and status for referrers, the triage queue for the MASH.

* ``POST /referrals`` (``referral_submit``: partner API clients, police and council staff)
  takes the subjects, concerns, CIN codes, referrer and consent; answers 201 with a reference.
  ``Idempotency-Key`` (optional, 1-255 printable ASCII characters, scoped to the caller,
  kept 24 hours): a retry with the same key and body replays the first 201 (same reference,
  ``Idempotent-Replayed: true``); the same key with another body is a 422.
* ``GET /referrals/{reference}/status`` (``referral_status``): status and feedback, to the
  principal that submitted it only; any other reference (unknown, someone else's) gets the
  same 404.
* ``GET /referrals/queue``, ``GET /referrals/{reference}``, ``PUT .../rag``,
  ``POST .../decision``, ``POST .../feedback``, ``POST`` and ``GET
  .../information-requests`` (``referral_triage``: MASH officers).
* ``GET /information-requests`` and ``POST /information-requests/{id}/answer``
  (``information_respond``: staff of the agency asked): the open requests for the caller's
  agency, and its answer.

Services are :mod:`mash_hub.referrals.service`, :mod:`~mash_hub.referrals.triage` and
:mod:`~mash_hub.referrals.requests`, run in
the request's one unit of work; refusals are caught inside it so their ``authz.denied``
entry commits. Validation errors name the field (``loc``) and never echo the value.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Body, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from mash_hub.authz.policy import Decisions, PolicyNotPublishedError
from mash_hub.matching.model import LinkageModel, ModelMismatchError, model_path
from mash_hub.persons.store import PersonStore
from mash_hub.referrals import requests, service, triage
from mash_hub.referrals.schemas import (
    DecisionIn,
    Fault,
    FeedbackIn,
    InformationAnswerIn,
    InformationRequestIn,
    RagIn,
    ReferralIn,
    answer_faults,
    cross_field_faults,
    decision_faults,
)
from mash_hub.referrals.service import (
    IDEMPOTENCY_KEY,
    IdempotencyConflictError,
    ReferralDeniedError,
    ReferralStateError,
)
from mash_hub.web.deps import CurrentPrincipal
from mash_hub.web.errors import ApiProblemError, problem_doc
from mash_hub.web.persons import policy_not_published, services

log = logging.getLogger(__name__)

H_IDEMPOTENCY = "Idempotency-Key"
NOT_FOUND = ("no such referral", "referral_not_found")
_RID = "3f0c2a9e6b1d4c57"
_REF = "R-2026-7KQ2M9XD"


def _example(status: int, title: str, detail: str, code: str, **extra: Any) -> dict[str, Any]:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return {**body, "code": code, "request_id": _RID, **extra}


P_404 = problem_doc(
    "No such referral, or not one the caller may see (the same body for both)",
    _example(404, "Not Found", *NOT_FOUND),
)
P_503 = problem_doc(
    "No access policy is published, or the encryption keys are not available",
    _example(503, "Service Unavailable", "no access policy is published", "policy_not_published"),
)
P_422 = problem_doc(
    "The body is not valid; `errors` names each field (never its value)",
    _example(
        422,
        "Unprocessable Content",
        "the request is not valid",
        "validation_failed",
        errors=[
            {
                "loc": ["body", "subjects", 0, "nhs_number"],
                "msg": "Value error, not a valid NHS number (10 digits, modulus 11)",
                "type": "value_error",
            }
        ],
    ),
)
P_409 = problem_doc(
    "The referral has already been decided",
    _example(409, "Conflict", "the referral has already been decided", "already_decided"),
)

P_409_REQUEST = problem_doc(
    "The referral has no RAG rating yet (`not_rated`) or has been decided (`already_decided`)",
    _example(
        409,
        "Conflict",
        "the referral has no RAG rating yet: rate it before asking agencies",
        "not_rated",
    ),
)
P_409_ANSWER = problem_doc(
    "The request has been answered (`already_answered`) or its referral decided "
    "(`already_decided`)",
    _example(409, "Conflict", "the request has already been answered", "already_answered"),
)
P_404_REQUEST = problem_doc(
    "No such request, or not one addressed to the caller's agency (the same body for both)",
    _example(404, "Not Found", "no such information request", "request_not_found"),
)

router = APIRouter(prefix="/referrals", tags=["referrals"], responses={503: P_503})
information_router = APIRouter(
    prefix="/information-requests", tags=["information requests"], responses={503: P_503}
)


# -- bodies ------------------------------------------------------------------------------------


class ReceiptOut(BaseModel):
    id: uuid.UUID
    reference: str = Field(examples=[_REF], description="Quote it; also a purpose of access.")
    status: str = Field(examples=["received"])
    received_at: dt.datetime


class FeedbackOut(BaseModel):
    id: uuid.UUID
    given_at: dt.datetime
    text: str


class StatusOut(BaseModel):
    """What a referrer sees: the status and the MASH's feedback, nothing else."""

    reference: str = Field(examples=[_REF])
    status: str = Field(description="received, in_triage or decided.")
    received_at: dt.datetime
    feedback: list[FeedbackOut]


class RequestSummaryOut(BaseModel):
    id: uuid.UUID
    agency: str = Field(examples=["police"], description="The agency asked.")
    status: str = Field(
        description="open, overdue (past the information deadline), answered, or closed (the "
        "referral was decided before an answer)."
    )
    due_at: dt.datetime | None = Field(description="The referral's information deadline.")


class QueueItemOut(BaseModel):
    id: uuid.UUID
    reference: str
    received_at: dt.datetime
    status: str
    rag: str | None
    rag_set_at: dt.datetime | None
    information_due_at: dt.datetime | None = Field(
        description="Agencies' information due: 2 h (red), 6 h (amber), 24 h (green) from the "
        "RAG rating."
    )
    decision_due_at: dt.datetime = Field(description="One working day after receipt.")
    next_due_at: dt.datetime | None = Field(description="The earlier deadline (open only).")
    overdue: bool
    decision: str | None
    decided_at: dt.datetime | None
    subjects: int
    source: str = Field(description="CIN source of referral.")
    primary_need: str = Field(description="CIN primary need.")
    consent: str
    information_requests: list[RequestSummaryOut] = Field(
        description="The information requested from agencies, oldest first (no text)."
    )


class QueueOut(BaseModel):
    now: dt.datetime
    policy_version: int | None
    audit_seq: int = Field(description="The `referral.triage.list` audit entry.")
    items: list[QueueItemOut] = Field(description="Most urgent first: overdue, RAG, deadline.")


class SubjectOut(BaseModel):
    position: int
    role: str
    record_id: uuid.UUID
    person_id: uuid.UUID | None
    matched_existing: bool = Field(
        description="Linked on intake to a person the index already held."
    )
    groups: dict[str, dict[str, Any]] = Field(
        description="Only the field groups of referral records the caller's role may see."
    )


class TriageOut(BaseModel):
    referral: QueueItemOut
    submitter_role: str
    submitter_agency: str
    factors: list[str]
    linkage: str = Field(description="incremental (matched on intake) or new_persons.")
    consent_reason: str | None
    referrer: dict[str, Any]
    concerns: str | None
    decision_reasons: list[str]
    decision_text: str | None
    subjects: list[SubjectOut]
    feedback: list[FeedbackOut]
    policy_version: int | None
    audit_seq: int = Field(description="The `referral.triage.view` audit entry.")


class InformationRequestOut(BaseModel):
    id: uuid.UUID
    reference: str = Field(examples=[_REF], description="The referral's reference.")
    agency: str = Field(examples=["police"], description="The agency asked.")
    status: str = Field(description="open, overdue, answered or closed.")
    requested_at: dt.datetime
    due_at: dt.datetime | None = Field(
        description="The referral's information deadline (2 h red, 6 h amber, 24 h green "
        "after the RAG rating; re-rating moves it)."
    )
    question: str | None = Field(description="Null once erased.")
    answered_at: dt.datetime | None
    outcome: str | None = Field(description="information or nothing_held, once answered.")
    answered_late: bool | None = Field(description="Answered after the deadline.")
    answer: str | None = Field(
        description="What the agency holds (to the MASH only; never in the agency's list)."
    )
    erased: bool = Field(
        default=False,
        description="The question and answer were crypto-shredded with a person the referral "
        "concerns (codes and times remain).",
    )


class InformationRequestsOut(BaseModel):
    audit_seq: int = Field(
        description="The `referral.information.read` or `referral.information.list` entry."
    )
    requests: list[InformationRequestOut]


# -- plumbing ----------------------------------------------------------------------------------

T = TypeVar("T")
_model_lock = threading.Lock()


def now_of(request: Request) -> dt.datetime:
    """The time (``app.state.clock`` may replace it, e.g. in tests of deadlines)."""
    clock: Callable[[], dt.datetime] | None = getattr(request.app.state, "clock", None)
    return clock() if clock is not None else dt.datetime.now(dt.UTC)


def referral_linkage_model(request: Request) -> LinkageModel | None:
    """The app's linkage model, loaded once (shared with search as ``app.state.linkage_model``);
    None when there is none: referrals are still taken, subjects become new persons."""
    state = request.app.state
    model: LinkageModel | None = getattr(state, "linkage_model", None)
    if model is not None or getattr(state, "linkage_model_unavailable", False):
        return model
    with _model_lock:
        if getattr(state, "linkage_model", None) is None:
            cfg = state.authenticator.settings
            try:
                state.linkage_model = LinkageModel.load(model_path(cfg.data_dir, cfg.linkage_model))
            except (OSError, ValueError, KeyError, ModelMismatchError):
                log.warning("no usable linkage model: referral subjects become new persons")
                state.linkage_model_unavailable = True
                return None
        loaded: LinkageModel = state.linkage_model
        return loaded


def _unit_of_work(
    request: Request,
    work: Callable[[Session, PersonStore, Decisions], T],
    refused: ApiProblemError,
) -> T:
    """Run ``work`` in one transaction; a refusal commits its audit entry, then ``refused``."""
    database, store, policy = services(request)
    denied = False
    outcome: T | None = None
    with database.transaction() as session:
        try:
            decisions = policy.for_session(session)
        except PolicyNotPublishedError:
            raise policy_not_published() from None
        try:
            outcome = work(session, store, decisions)
        except ReferralDeniedError:
            denied = True
        except ReferralStateError as exc:
            raise ApiProblemError(409, str(exc), code=exc.code) from None
    if denied:
        raise refused
    assert outcome is not None
    return outcome


def _invalid(faults: list[Fault]) -> RequestValidationError:
    return RequestValidationError(
        [{"loc": ("body", *f.loc), "msg": f.msg, "type": f.type} for f in faults]
    )


def _not_found() -> ApiProblemError:
    return ApiProblemError(404, NOT_FOUND[0], code=NOT_FOUND[1])


def _item(item: triage.QueueItem) -> QueueItemOut:
    return QueueItemOut.model_validate(item, from_attributes=True)


def _request(view: requests.RequestView) -> InformationRequestOut:
    return InformationRequestOut.model_validate(view, from_attributes=True)


def _request_not_found() -> ApiProblemError:
    return ApiProblemError(404, "no such information request", code="request_not_found")


def _feedback(items: list[service.Feedback]) -> list[FeedbackOut]:
    return [FeedbackOut(id=f.id, given_at=f.given_at, text=f.text) for f in items]


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=H_IDEMPOTENCY,
        description="Makes retries safe: 1-255 printable ASCII characters (a UUID is ideal), "
        "unique per referral; kept for 24 hours per client.",
    ),
]


# -- referrers ---------------------------------------------------------------------------------


@router.post(
    "",
    status_code=201,
    summary="Submit a referral",
    response_model=ReceiptOut,
    responses={
        201: {"headers": {"Location": {"description": "The status URL."}}},
        400: problem_doc(
            "The Idempotency-Key header is malformed",
            _example(400, "Bad Request", "the Idempotency-Key header is not valid", "bad_key"),
        ),
        403: problem_doc(
            "The caller's role may not submit referrals",
            _example(403, "Forbidden", "not allowed to submit referrals", "submit_not_permitted"),
        ),
        422: P_422,
    },
)
def submit_referral(
    request: Request,
    response: Response,
    referral: Annotated[ReferralIn, Body()],
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> ReceiptOut:
    """Take a referral in: its subjects are stored encrypted, matched against the person
    index at once, and the referral joins the MASH triage queue with its decision due one
    working day later. Audited as `referral.submit`."""
    if idempotency_key is not None and not IDEMPOTENCY_KEY.match(idempotency_key):
        raise ApiProblemError(400, "the Idempotency-Key header is not valid", code="bad_key")
    faults = cross_field_faults(referral)
    if faults:
        raise _invalid(faults)
    model = referral_linkage_model(request)
    now = now_of(request)
    caller = principal.caller()

    def work(session: Session, store: PersonStore, decisions: Decisions) -> service.Receipt:
        try:
            return service.submit(
                session,
                store,
                decisions,
                caller,
                referral,
                idempotency_key=idempotency_key,
                model=model,
                now=now,
            )
        except IdempotencyConflictError:
            raise ApiProblemError(
                422,
                "this Idempotency-Key was used with a different request",
                code="idempotency_key_reused",
            ) from None

    refused = ApiProblemError(403, "not allowed to submit referrals", code="submit_not_permitted")
    receipt = _unit_of_work(request, work, refused)
    response.headers["Location"] = f"/api/v1/referrals/{receipt.reference}/status"
    if receipt.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return ReceiptOut.model_validate(receipt.response)


@router.get(
    "/queue",
    summary="The MASH triage queue (most urgent first)",
    response_model=QueueOut,
    responses={
        403: problem_doc(
            "The caller's role may not triage referrals",
            _example(403, "Forbidden", "not allowed to triage referrals", "triage_not_permitted"),
        ),
        422: P_422,
    },
)
def get_queue(
    request: Request,
    principal: CurrentPrincipal,
    status: Annotated[
        str, Query(pattern="^(open|decided|all)$", description="open (default), decided, all.")
    ] = "open",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> QueueOut:
    """Open referrals first; overdue ones (a passed decision or information deadline) at the
    top by RAG; then by the next deadline. Lists codes, times and counts only (nothing is
    decrypted). Audited as `referral.triage.list`."""
    now = now_of(request)
    caller = principal.caller()
    refused = ApiProblemError(403, "not allowed to triage referrals", code="triage_not_permitted")
    result = _unit_of_work(
        request,
        lambda session, _store, decisions: triage.queue(
            session, decisions, caller, now=now, status=status, limit=limit
        ),
        refused,
    )
    return QueueOut(
        now=result.now,
        policy_version=result.policy_version,
        audit_seq=result.audit_seq,
        items=[_item(i) for i in result.items],
    )


@router.get(
    "/{reference}/status",
    summary="Status of one of the caller's referrals",
    response_model=StatusOut,
    responses={404: P_404},
)
def get_status(request: Request, reference: str, principal: CurrentPrincipal) -> StatusOut:
    """The status and the MASH's feedback, for the principal that submitted the referral
    (no match results, nothing about other people). Audited as `referral.status`."""
    caller = principal.caller()
    view = _unit_of_work(
        request,
        lambda session, store, decisions: service.status_of(
            session, store, decisions, caller, reference
        ),
        _not_found(),
    )
    return StatusOut(
        reference=view.reference,
        status=view.status,
        received_at=view.received_at,
        feedback=_feedback(view.feedback),
    )


# -- MASH triage -------------------------------------------------------------------------------


@router.get(
    "/{reference}",
    summary="A referral for triage",
    response_model=TriageOut,
    responses={404: P_404},
)
def get_referral(request: Request, reference: str, principal: CurrentPrincipal) -> TriageOut:
    """Codes, consent, referrer, concerns, subjects (only the field groups the policy allows
    for referral records, with the person each was linked to), decision and feedback.
    Audited as `referral.triage.view` before anything is decrypted."""
    now = now_of(request)
    caller = principal.caller()
    view = _unit_of_work(
        request,
        lambda session, store, decisions: triage.view(
            session, store, decisions, caller, reference, now=now
        ),
        _not_found(),
    )
    return TriageOut(
        referral=_item(view.item),
        submitter_role=view.submitter_role,
        submitter_agency=view.submitter_agency,
        factors=view.factors,
        linkage=view.linkage,
        consent_reason=view.consent_reason,
        referrer=view.referrer,
        concerns=view.concerns,
        decision_reasons=view.decision_reasons,
        decision_text=view.decision_text,
        subjects=[SubjectOut.model_validate(s, from_attributes=True) for s in view.subjects],
        feedback=_feedback(view.feedback),
        policy_version=view.policy_version,
        audit_seq=view.audit_seq,
    )


@router.put(
    "/{reference}/rag",
    summary="Set or change the RAG rating",
    response_model=QueueItemOut,
    responses={404: P_404, 409: P_409, 422: P_422},
)
def put_rag(
    request: Request, reference: str, body: RagIn, principal: CurrentPrincipal
) -> QueueItemOut:
    """Rates the referral red, amber or green; the agencies' information is then due 2, 6 or
    24 hours from now. Re-rating restarts that clock. Audited as `referral.triage.rag`."""
    now = now_of(request)
    caller = principal.caller()
    item = _unit_of_work(
        request,
        lambda session, _store, decisions: triage.set_rag(
            session, decisions, caller, reference, body.rag, now=now
        ),
        _not_found(),
    )
    return _item(item)


@router.post(
    "/{reference}/decision",
    summary="Record the MASH decision",
    response_model=QueueItemOut,
    responses={404: P_404, 409: P_409, 422: P_422},
)
def post_decision(
    request: Request, reference: str, body: DecisionIn, principal: CurrentPrincipal
) -> QueueItemOut:
    """NFA, advice/signposting, early help, s17 assessment, s47 strategy discussion (or s42
    for adults), with reason codes and optional text (encrypted). Once per referral.
    Audited as `referral.triage.decision`."""
    faults = decision_faults(body)
    if faults:
        raise _invalid(faults)
    now = now_of(request)
    caller = principal.caller()
    item = _unit_of_work(
        request,
        lambda session, store, decisions: triage.decide(
            session, store, decisions, caller, reference, decision=body, now=now
        ),
        _not_found(),
    )
    return _item(item)


@router.post(
    "/{reference}/feedback",
    status_code=201,
    summary="Feedback the referrer will see",
    response_model=FeedbackOut,
    responses={404: P_404, 422: P_422},
)
def post_feedback(
    request: Request, reference: str, body: FeedbackIn, principal: CurrentPrincipal
) -> FeedbackOut:
    """Stored encrypted; shown to the referrer with the status. Audited as
    `referral.triage.feedback`."""
    now = now_of(request)
    caller = principal.caller()
    feedback = _unit_of_work(
        request,
        lambda session, store, decisions: triage.add_feedback(
            session, store, decisions, caller, reference, text=body.text, now=now
        ),
        _not_found(),
    )
    return FeedbackOut(id=feedback.id, given_at=feedback.given_at, text=feedback.text)


# -- information requests ----------------------------------------------------------------------


@router.post(
    "/{reference}/information-requests",
    status_code=201,
    summary="Ask a partner agency what it holds",
    response_model=InformationRequestOut,
    responses={404: P_404, 409: P_409_REQUEST, 422: P_422},
)
def post_information_request(
    request: Request, reference: str, body: InformationRequestIn, principal: CurrentPrincipal
) -> InformationRequestOut:
    """Once the referral is RAG-rated: the agency's answer is due at the referral's
    information deadline. The question is stored encrypted. Audited as
    `referral.information.request`."""
    now = now_of(request)
    caller = principal.caller()
    made = _unit_of_work(
        request,
        lambda session, store, decisions: requests.create(
            session,
            store,
            decisions,
            caller,
            reference,
            agency=body.agency,
            question=body.question,
            now=now,
        ),
        _not_found(),
    )
    return _request(made)


@router.get(
    "/{reference}/information-requests",
    summary="A referral's information requests and the agencies' answers",
    response_model=InformationRequestsOut,
    responses={404: P_404},
)
def get_information_requests(
    request: Request, reference: str, principal: CurrentPrincipal
) -> InformationRequestsOut:
    """Oldest first, with status (open, overdue, answered, closed), questions and answers.
    Audited as `referral.information.read` before anything is decrypted."""
    now = now_of(request)
    caller = principal.caller()
    listing = _unit_of_work(
        request,
        lambda session, store, decisions: requests.for_referral(
            session, store, decisions, caller, reference, now=now
        ),
        _not_found(),
    )
    return InformationRequestsOut(
        audit_seq=listing.audit_seq, requests=[_request(r) for r in listing.requests]
    )


@information_router.get(
    "",
    summary="Open information requests for the caller's agency",
    response_model=InformationRequestsOut,
    responses={
        403: problem_doc(
            "The caller's role may not answer information requests",
            _example(
                403,
                "Forbidden",
                "not allowed to answer information requests",
                "respond_not_permitted",
            ),
        )
    },
)
def get_agency_requests(request: Request, principal: CurrentPrincipal) -> InformationRequestsOut:
    """Unanswered requests addressed to the caller's own agency on undecided referrals, the
    nearest deadline first, with their questions. Audited as `referral.information.list`."""
    now = now_of(request)
    caller = principal.caller()
    refused = ApiProblemError(
        403, "not allowed to answer information requests", code="respond_not_permitted"
    )
    listing = _unit_of_work(
        request,
        lambda session, store, decisions: requests.for_agency(
            session, store, decisions, caller, now=now
        ),
        refused,
    )
    return InformationRequestsOut(
        audit_seq=listing.audit_seq, requests=[_request(r) for r in listing.requests]
    )


@information_router.post(
    "/{request_id}/answer",
    summary="Answer an information request for the caller's agency",
    response_model=InformationRequestOut,
    responses={404: P_404_REQUEST, 409: P_409_ANSWER, 422: P_422},
)
def post_answer(
    request: Request, request_id: uuid.UUID, body: InformationAnswerIn, principal: CurrentPrincipal
) -> InformationRequestOut:
    """What the agency holds (`information`, with text, stored encrypted) or `nothing_held`.
    Answers after the deadline are taken and marked late. Audited as
    `referral.information.answer`."""
    faults = answer_faults(body)
    if faults:
        raise _invalid(faults)
    now = now_of(request)
    caller = principal.caller()
    given = _unit_of_work(
        request,
        lambda session, store, decisions: requests.answer(
            session,
            store,
            decisions,
            caller,
            request_id,
            outcome=body.outcome,
            text=body.text,
            now=now,
        ),
        _request_not_found(),
    )
    return _request(given)
