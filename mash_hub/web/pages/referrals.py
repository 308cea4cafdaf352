"""Referral pages: partner staff make referrals and follow them; MASH officers triage them and
ask agencies for information; agency staff answer the requests addressed to their agency.

They call the services the API calls (:mod:`mash_hub.referrals.service`,
:mod:`~mash_hub.referrals.triage` and :mod:`~mash_hub.referrals.requests`), one unit of work
per request, so each POST writes the audit entries its API call writes and every refusal is
the service's (audited). This module
only turns forms into the API's bodies (``ReferralIn``, ``RagIn``, ``DecisionIn``,
``FeedbackIn``, ``InformationRequestIn``, ``InformationAnswerIn``) and validation errors into
GOV.UK messages that name the field, never the value.

The referral form carries a per-form idempotency key (hidden field), passed to the service as
the API's ``Idempotency-Key``: sending the same form twice replays the first receipt.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from mash_hub.authz.policy import Decisions, PolicyNotPublishedError
from mash_hub.persons.store import PersonStore
from mash_hub.referrals import codes, requests, service, triage
from mash_hub.referrals.schemas import (
    DecisionIn,
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
from mash_hub.web.pages.forms import FormErrors
from mash_hub.web.pages.session import (
    FormData,
    FormLists,
    FormRefusedError,
    PageSession,
    SignedIn,
    check_csrf,
)
from mash_hub.web.pages.templating import render
from mash_hub.web.persons import services
from mash_hub.web.referrals import now_of, referral_linkage_model

router = APIRouter(include_in_schema=False)

SUBJECT_SLOTS = 3  # the person of concern and two more (household, others) per form
SUBJECT_FIELDS = ("given_names", "family_name", "line1", "town", "postcode")
DATE_PARTS = ("day", "month", "year")
DENIED = "denied"
UNAVAILABLE = "unavailable"

T = TypeVar("T")

LABELS = {
    "role": "Who the person is",
    "given_names": "First names",
    "family_name": "Last name",
    "dob-day": "Date of birth",
    "line1": "Address line 1",
    "town": "Town or city",
    "postcode": "Postcode",
    "concerns": "What you are worried about",
    "source": "Who is referring",
    "primary_need": "Main need",
    "factors": "Factors",
    "referrer-name": "Your name",
    "referrer-job_title": "Your job title",
    "referrer-organisation": "Your organisation",
    "referrer-phone": "Your phone number",
    "referrer-email": "Your email address",
    "consent": "Consent",
    "consent_reason": "Why consent was not given or not sought",
    "rag": "RAG rating",
    "decision": "Decision",
    "reasons": "Reasons",
    "reason_text": "Explanation",
    "text": "Feedback",
    "agency": "Which agency to ask",
    "question": "Question",
    "outcome": "What your agency holds",
    "answer": "Information",
}
_CHOICES = {"role", "source", "primary_need", "consent", "rag", "decision", "reasons"}
_CHOICES |= {"agency", "outcome"}


def _codes() -> dict[str, Any]:
    return {
        "subject_roles": codes.SUBJECT_ROLES,
        "concern_roles": {
            r: m for r, m in codes.SUBJECT_ROLES.items() if r in codes.SUBJECTS_OF_CONCERN
        },
        "sources": codes.SOURCES_OF_REFERRAL,
        "needs": codes.PRIMARY_NEEDS,
        "factors": codes.FACTORS,
        "consent_states": codes.CONSENT_STATES,
        "rag_hours": codes.RAG_HOURS,
        "decisions": codes.DECISIONS,
        "decision_reasons": codes.DECISION_REASONS,
        "agencies": codes.REQUEST_AGENCIES,
        "outcomes": codes.ANSWER_OUTCOMES,
        "request_tags": REQUEST_TAGS,
        "slots": SUBJECT_SLOTS,
    }


def _run(
    request: Request, work: Callable[[Session, PersonStore, Decisions], T]
) -> tuple[T | None, str | None]:
    """``work`` in one transaction: (outcome, None), or (None, why). A refusal's audit entry
    commits; a state or idempotency conflict rolls back, as the API's answer does."""
    database, store, policy = services(request)
    outcome: T | None = None
    problem: str | None = None
    try:
        with database.transaction() as session:
            decisions = policy.for_session(session)
            try:
                outcome = work(session, store, decisions)
            except ReferralDeniedError:
                problem = DENIED
    except PolicyNotPublishedError:
        problem = UNAVAILABLE
    except IdempotencyConflictError:
        problem = IdempotencyConflictError.code
    except ReferralStateError as exc:
        problem = exc.code
    return outcome, problem


def _refused(request: Request, page: PageSession, heading: str, line: str, status: int) -> Response:
    context = {"page": page, "heading": heading, "lines": [line]}
    return render(request, "error.html", context, status_code=status)


def _cannot(request: Request, page: PageSession, problem: str | None, heading: str) -> Response:
    """The refusal page (the service audited it), or 503 when no policy is published."""
    if problem == UNAVAILABLE:
        return _refused(request, page, "Sorry, the service is unavailable", "Try again later.", 503)
    return _refused(request, page, heading, "Your role does not allow it.", 403)


def _not_found(request: Request, page: PageSession) -> Response:
    return _refused(
        request,
        page,
        "Referral not found",
        "There is no such referral, or it is not one you may see.",
        404,
    )


def _message(field_id: str, error: dict[str, Any]) -> str:
    """A GOV.UK style message naming the field; fixed text, never the value."""
    label = LABELS.get(field_id.split("-", 2)[-1] if field_id.startswith("subjects-") else field_id)
    label = label or "This field"
    kind = error.get("type", "")
    context = error.get("ctx") or {}
    if kind == "missing":
        verb = "Select" if field_id.rsplit("-", maxsplit=1)[-1] in _CHOICES else "Enter"
        return f"{verb} {label if label[:2].isupper() else label[0].lower() + label[1:]}"
    if kind == "string_too_short":
        return f"{label} must be at least {context.get('min_length', '')} characters"
    if kind == "string_too_long":
        return f"{label} must be {context.get('max_length', '')} characters or fewer"
    if kind in {"too_short", "too_long"} and field_id.rsplit("-", maxsplit=1)[-1] in _CHOICES:
        return f"Select between 1 and 5 {label.lower()}"
    text = str(error.get("msg", "is not valid")).removeprefix("Value error, ")
    return f"{label}: {text}"


def _errors_from(
    invalid: ValidationError, errors: FormErrors, slots: list[int] | None = None
) -> None:
    for error in invalid.errors(include_input=False, include_url=False):
        field_id = _field_id(tuple(error["loc"]), slots or [])
        errors.add(field_id, _message(field_id, dict(error)))


def _field_id(loc: tuple[Any, ...], slots: list[int]) -> str:
    """The form field a body location came from (``("subjects", 1, "addresses", 0,
    "postcode")`` -> ``subjects-2-postcode`` when the second subject is the third slot)."""
    head = str(loc[0]) if loc else ""
    if head == "subjects":
        if len(loc) < 2 or not isinstance(loc[1], int) or loc[1] >= len(slots):
            return "subjects-0-role"
        slot, rest = slots[loc[1]], loc[2:]
        name = str(rest[0]) if rest else "role"
        if name == "addresses":
            name = str(rest[2]) if len(rest) > 2 and rest[2] in SUBJECT_FIELDS else "line1"
        elif name == "date_of_birth":
            name = "dob-day"
        return f"subjects-{slot}-{name}"
    if head == "referrer":
        return f"referrer-{loc[1]}" if len(loc) > 1 else "referrer-name"
    if head == "consent":
        return "consent_reason" if len(loc) > 1 and loc[1] == "reason" else "consent"
    return head or "concerns"


# -- the partner's referral form ----------------------------------------------------------------


FORM_ORDER = (
    *(
        f"subjects-{slot}-{name}"
        for slot in range(SUBJECT_SLOTS)
        for name in ("role", "given_names", "family_name", "dob-day", *SUBJECT_FIELDS[2:])
    ),
    "concerns",
    "source",
    "primary_need",
    "factors",
    *(f"referrer-{name}" for name in ("name", "job_title", "organisation", "phone", "email")),
    "consent",
    "consent_reason",
)


def _form_order(field_id: str) -> int:
    """Where a field is on the form, so the error summary lists errors in the same order."""
    return FORM_ORDER.index(field_id) if field_id in FORM_ORDER else len(FORM_ORDER)


def _blank(form: dict[str, str], slot: int) -> bool:
    names = [*SUBJECT_FIELDS, *(f"dob-{p}" for p in DATE_PARTS)]
    if slot > 0:
        names.append("role")
    return not any(form.get(f"subjects-{slot}-{n}", "").strip() for n in names)


def _birth(form: dict[str, str], slot: int, errors: FormErrors) -> str | None:
    parts = [form.get(f"subjects-{slot}-dob-{p}", "").strip() for p in DATE_PARTS]
    if not any(parts):
        return None
    try:
        day, month, year = (int(p) for p in parts)
        return dt.date(year, month, day).isoformat()
    except ValueError:
        errors.add(f"subjects-{slot}-dob-day", "Date of birth must be a real date")
        return None


def _referral_body(
    form: dict[str, str], lists: dict[str, list[str]], errors: FormErrors
) -> tuple[dict[str, Any], list[int]]:
    """The API's ``ReferralIn`` body from the form, and which slot each subject came from."""

    def value(name: str) -> str | None:
        return form.get(name, "").strip() or None

    subjects: list[dict[str, Any]] = []
    slots: list[int] = []
    for slot in range(SUBJECT_SLOTS):
        if slot > 0 and _blank(form, slot):
            continue
        prefix = f"subjects-{slot}-"
        subject: dict[str, Any] = {
            "given_names": (value(prefix + "given_names") or "").split(),
            "family_name": value(prefix + "family_name"),
            "date_of_birth": _birth(form, slot, errors),
        }
        if value(prefix + "role") is not None:
            subject["role"] = value(prefix + "role")
        address = {k: value(prefix + k) for k in ("line1", "town", "postcode")}
        if any(address.values()):
            subject["addresses"] = [address]
        subjects.append(subject)
        slots.append(slot)
    body: dict[str, Any] = {
        "subjects": subjects,
        "factors": lists.get("factors", []),
        "referrer": {
            k: value(f"referrer-{k}")
            for k in ("name", "job_title", "organisation", "phone", "email")
            if value(f"referrer-{k}") is not None
        },
        "consent": {"state": value("consent"), "reason": value("consent_reason")},
    }
    for name in ("concerns", "source", "primary_need"):
        if value(name) is not None:
            body[name] = value(name)
    if body["consent"]["state"] is None:
        del body["consent"]["state"]
    return body, slots


def _form_page(
    request: Request,
    page: PageSession,
    form: dict[str, str],
    lists: dict[str, list[str]],
    *,
    errors: FormErrors | None = None,
    status: int = 200,
) -> Response:
    context: dict[str, Any] = {
        "page": page,
        "nav": "refer",
        "form": form,
        "chosen_factors": lists.get("factors", []),
        **_codes(),
    }
    if errors:
        context |= {"errors": errors.summary(), "field_errors": errors.by_field}
    return render(request, "referral_form.html", context, status_code=status)


def _may_submit(request: Request, page: PageSession) -> Response | None:
    if page.may_submit:
        return None
    return _refused(
        request, page, "You cannot make referrals here", "Your role does not allow it.", 403
    )


@router.get("/referrals/new")
def referral_form(request: Request, page: SignedIn) -> Response:
    refused = _may_submit(request, page)
    if refused is not None:
        return refused
    form = {"idempotency_key": secrets.token_urlsafe(24)}
    return _form_page(request, page, form, {})


@router.post("/referrals/new")
def submit_referral(request: Request, page: SignedIn, form: FormData, lists: FormLists) -> Response:
    check_csrf(request, page, form)
    key = form.get("idempotency_key", "")
    if not IDEMPOTENCY_KEY.match(key):
        raise FormRefusedError
    errors = FormErrors()
    body, slots = _referral_body(form, lists, errors)
    referral: ReferralIn | None = None
    try:
        referral = ReferralIn.model_validate(body)
    except ValidationError as invalid:
        _errors_from(invalid, errors, slots)
    if referral is not None:
        for fault in cross_field_faults(referral):
            field_id = _field_id(fault.loc, slots)
            errors.add(field_id, _message(field_id, {"type": fault.type, "msg": fault.msg}))
    if errors or referral is None:
        errors.by_field = dict(sorted(errors.by_field.items(), key=lambda kv: _form_order(kv[0])))
        return _form_page(request, page, form, lists, errors=errors, status=400)
    model = referral_linkage_model(request)
    now = now_of(request)
    caller = page.active.caller()
    valid = referral
    receipt, problem = _run(
        request,
        lambda session, store, decisions: service.submit(
            session, store, decisions, caller, valid, idempotency_key=key, model=model, now=now
        ),
    )
    if problem == IdempotencyConflictError.code:
        errors.add(
            "concerns",
            "This form was already sent with different details. Start a new referral to send "
            "another",
        )
        return _form_page(request, page, form, lists, errors=errors, status=409)
    if receipt is None:
        return _cannot(request, page, problem, "You cannot make referrals here")
    return render(
        request,
        "referral_sent.html",
        {"page": page, "nav": "refer", "receipt": receipt},
        status_code=201 if not receipt.replayed else 200,
    )


# -- the partner's referrals ------------------------------------------------------------------


@router.get("/referrals")
def my_referrals(request: Request, page: SignedIn) -> Response:
    caller = page.active.caller()
    listed, problem = _run(
        request, lambda session, _store, decisions: service.referrals_of(session, decisions, caller)
    )
    if listed is None:
        return _cannot(request, page, problem, "You cannot follow referrals here")
    return render(
        request,
        "my_referrals.html",
        {"page": page, "nav": "mine", "referrals": listed[0], "statuses": STATUS_TAGS},
    )


@router.get("/referrals/{reference}")
def my_referral(request: Request, reference: str, page: SignedIn) -> Response:
    caller = page.active.caller()
    view, _ = _run(
        request,
        lambda session, store, decisions: service.status_of(
            session, store, decisions, caller, reference
        ),
    )
    if view is None:
        return _not_found(request, page)
    return render(
        request,
        "my_referral.html",
        {"page": page, "nav": "mine", "view": view, "statuses": STATUS_TAGS},
    )


# -- MASH triage ------------------------------------------------------------------------------

STATUS_TAGS = {
    codes.RECEIVED: ("Received", "govuk-tag--grey"),
    codes.IN_TRIAGE: ("In triage", "govuk-tag--blue"),
    codes.DECIDED: ("Decided", "govuk-tag--green"),
}
RAG_TAGS = {
    "red": ("Red", "govuk-tag--red"),
    "amber": ("Amber", "govuk-tag--orange"),
    "green": ("Green", "govuk-tag--green"),
    None: ("Not rated", "govuk-tag--grey"),
}
REQUEST_TAGS = {
    codes.REQUEST_OPEN: ("Open", "govuk-tag--blue"),
    codes.REQUEST_OVERDUE: ("Overdue", "govuk-tag--red"),
    codes.REQUEST_ANSWERED: ("Answered", "govuk-tag--green"),
    codes.REQUEST_CLOSED: ("Closed", "govuk-tag--grey"),
}
DONE = {
    "rag": "RAG rating saved",
    "decision": "Decision recorded",
    "feedback": "Feedback sent to the referrer",
    "request": "Information request sent",
    "answered": "Your answer has been sent to the MASH",
}
# Why a triage form could not be saved, on the field to fix.
CONFLICTS = {
    "already_decided": ("This referral has been decided", None),
    "not_rated": (
        "Give the referral a RAG rating before asking agencies for information",
        "agency",
    ),
}


def _tags() -> dict[str, Any]:
    return {"statuses": STATUS_TAGS, "rags": RAG_TAGS, **_codes()}


@router.get("/triage")
def triage_queue(request: Request, page: SignedIn, status: str = "open") -> Response:
    if status not in triage.QUEUE_FILTERS:
        status = "open"
    now = now_of(request)
    caller = page.active.caller()
    queue, problem = _run(
        request,
        lambda session, _store, decisions: triage.queue(
            session, decisions, caller, now=now, status=status
        ),
    )
    if queue is None:
        return _cannot(request, page, problem, "You cannot see the triage queue")
    return render(
        request,
        "triage_queue.html",
        {"page": page, "nav": "triage", "queue": queue, "filter": status, **_tags()},
    )


def _triage_page(
    request: Request,
    page: PageSession,
    reference: str,
    *,
    errors: FormErrors | None = None,
    form: dict[str, str] | None = None,
    chosen: list[str] | None = None,
    done: str | None = None,
    status: int = 200,
) -> Response:
    now = now_of(request)
    caller = page.active.caller()
    shown, _ = _run(
        request,
        lambda session, store, decisions: (
            triage.view(session, store, decisions, caller, reference, now=now),
            requests.for_referral(session, store, decisions, caller, reference, now=now),
        ),
    )
    if shown is None:
        return _not_found(request, page)
    view, asked = shown
    context: dict[str, Any] = {
        "page": page,
        "nav": "triage",
        "view": view,
        "asked": asked.requests,
        "now": now,
        "form": form or {},
        "chosen_reasons": chosen or [],
        "done": DONE.get(done or ""),
        **_tags(),
    }
    if errors:
        context |= {"errors": errors.summary(), "field_errors": errors.by_field}
    return render(request, "triage_referral.html", context, status_code=status)


@router.get("/triage/{reference}")
def triage_referral(
    request: Request, reference: str, page: SignedIn, done: str | None = None
) -> Response:
    return _triage_page(request, page, reference, done=done)


def _after(
    request: Request,
    page: PageSession,
    reference: str,
    outcome: tuple[object | None, str | None],
    done: str,
) -> Response:
    """After a triage POST: back to the referral page (303), or why not."""
    result, problem = outcome
    outcome_ok = result is not None
    if outcome_ok:
        return RedirectResponse(f"/triage/{reference}?done={done}", status_code=303)
    if problem in CONFLICTS:
        message, field_id = CONFLICTS[problem]
        if field_id is None:
            field_id = {"decision": "decision", "request": "agency"}.get(done, "rag")
        errors = FormErrors()
        errors.add(field_id, message)
        return _triage_page(request, page, reference, errors=errors, status=409)
    return _not_found(request, page)


@router.post("/triage/{reference}/rag")
def rate(request: Request, reference: str, page: SignedIn, form: FormData) -> Response:
    check_csrf(request, page, form)
    errors = FormErrors()
    try:
        body = RagIn.model_validate({k: v for k, v in form.items() if k == "rag"})
    except ValidationError as invalid:
        _errors_from(invalid, errors)
        return _triage_page(request, page, reference, errors=errors, form=form, status=400)
    now = now_of(request)
    caller = page.active.caller()
    outcome = _run(
        request,
        lambda session, _store, decisions: triage.set_rag(
            session, decisions, caller, reference, body.rag, now=now
        ),
    )
    return _after(request, page, reference, outcome, "rag")


@router.post("/triage/{reference}/decision")
def decide(
    request: Request, reference: str, page: SignedIn, form: FormData, lists: FormLists
) -> Response:
    check_csrf(request, page, form)
    errors = FormErrors()
    chosen = lists.get("reasons", [])
    raw: dict[str, Any] = {"reasons": chosen}
    if form.get("decision"):
        raw["decision"] = form["decision"]
    if form.get("reason_text", "").strip():
        raw["reason_text"] = form["reason_text"]
    body: DecisionIn | None = None
    try:
        body = DecisionIn.model_validate(raw)
    except ValidationError as invalid:
        _errors_from(invalid, errors)
    if body is not None:
        for fault in decision_faults(body):
            errors.add("reasons", _message("reasons", {"type": fault.type, "msg": fault.msg}))
    if errors or body is None:
        return _triage_page(
            request, page, reference, errors=errors, form=form, chosen=chosen, status=400
        )
    now = now_of(request)
    caller = page.active.caller()
    valid = body
    outcome = _run(
        request,
        lambda session, store, decisions: triage.decide(
            session, store, decisions, caller, reference, decision=valid, now=now
        ),
    )
    return _after(request, page, reference, outcome, "decision")


@router.post("/triage/{reference}/feedback")
def feedback(request: Request, reference: str, page: SignedIn, form: FormData) -> Response:
    check_csrf(request, page, form)
    errors = FormErrors()
    try:
        body = FeedbackIn.model_validate({"text": form.get("text", "")})
    except ValidationError as invalid:
        _errors_from(invalid, errors)
        return _triage_page(request, page, reference, errors=errors, form=form, status=400)
    now = now_of(request)
    caller = page.active.caller()
    outcome = _run(
        request,
        lambda session, store, decisions: triage.add_feedback(
            session, store, decisions, caller, reference, text=body.text, now=now
        ),
    )
    return _after(request, page, reference, outcome, "feedback")


@router.post("/triage/{reference}/information-requests")
def ask_agency(request: Request, reference: str, page: SignedIn, form: FormData) -> Response:
    check_csrf(request, page, form)
    errors = FormErrors()
    raw = {k: form[k] for k in ("agency", "question") if form.get(k, "").strip()}
    try:
        body = InformationRequestIn.model_validate(raw)
    except ValidationError as invalid:
        _errors_from(invalid, errors)
        errors.by_field = {
            k: errors.by_field[k] for k in ("agency", "question") if k in errors.by_field
        }
        return _triage_page(request, page, reference, errors=errors, form=form, status=400)
    now = now_of(request)
    caller = page.active.caller()
    outcome = _run(
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
    )
    return _after(request, page, reference, outcome, "request")


# -- the agency's information requests --------------------------------------------------------


def _agency_listing(
    request: Request, page: PageSession, request_id: uuid.UUID | None = None
) -> tuple[requests.Listing | None, str | None]:
    now = now_of(request)
    caller = page.active.caller()
    return _run(
        request,
        lambda session, store, decisions: requests.for_agency(
            session, store, decisions, caller, now=now, request_id=request_id
        ),
    )


@router.get("/information-requests")
def agency_requests(request: Request, page: SignedIn, done: str | None = None) -> Response:
    listing, problem = _agency_listing(request, page)
    if listing is None:
        return _cannot(request, page, problem, "You cannot answer information requests")
    return render(
        request,
        "information_requests.html",
        {
            "page": page,
            "nav": "answer",
            "asked": listing.requests,
            "now": now_of(request),
            "done": DONE.get(done or ""),
            **_tags(),
        },
    )


def _request_not_found(request: Request, page: PageSession) -> Response:
    return _refused(
        request,
        page,
        "Information request not found",
        "There is no such open request for your agency: it may have been answered already, "
        "or the referral decided.",
        404,
    )


def _answer_page(
    request: Request,
    page: PageSession,
    request_id: str,
    *,
    form: dict[str, str] | None = None,
    errors: FormErrors | None = None,
    status: int = 200,
) -> Response:
    try:
        wanted = uuid.UUID(request_id)
    except ValueError:
        return _request_not_found(request, page)
    listing, problem = _agency_listing(request, page, wanted)
    if listing is None:
        if problem == UNAVAILABLE:
            return _cannot(request, page, problem, "")
        return _request_not_found(request, page)
    context: dict[str, Any] = {
        "page": page,
        "nav": "answer",
        "asked": listing.requests[0],
        "now": now_of(request),
        "form": form or {},
        **_tags(),
    }
    if errors:
        context |= {"errors": errors.summary(), "field_errors": errors.by_field}
    return render(request, "information_answer.html", context, status_code=status)


@router.get("/information-requests/{request_id}")
def answer_form(request: Request, request_id: str, page: SignedIn) -> Response:
    return _answer_page(request, page, request_id)


@router.post("/information-requests/{request_id}")
def answer(request: Request, request_id: str, page: SignedIn, form: FormData) -> Response:
    check_csrf(request, page, form)
    errors = FormErrors()
    raw = {"outcome": form.get("outcome") or None, "text": form.get("answer", "").strip() or None}
    body: InformationAnswerIn | None = None
    try:
        body = InformationAnswerIn.model_validate({k: v for k, v in raw.items() if v is not None})
    except ValidationError as invalid:
        for error in invalid.errors(include_input=False, include_url=False):
            field_id = "answer" if error["loc"] and error["loc"][0] == "text" else "outcome"
            errors.add(field_id, _message(field_id, dict(error)))
    if body is not None:
        for fault in answer_faults(body):
            message = (
                "Enter the information your agency holds"
                if fault.type == "missing"
                else "Leave the information empty when your agency holds nothing"
            )
            errors.add("answer", message)
    if errors or body is None:
        return _answer_page(request, page, request_id, form=form, errors=errors, status=400)
    try:
        wanted = uuid.UUID(request_id)
    except ValueError:
        return _request_not_found(request, page)
    now = now_of(request)
    caller = page.active.caller()
    valid = body
    given, problem = _run(
        request,
        lambda session, store, decisions: requests.answer(
            session,
            store,
            decisions,
            caller,
            wanted,
            outcome=valid.outcome,
            text=valid.text,
            now=now,
        ),
    )
    if given is not None:
        return RedirectResponse("/information-requests?done=answered", status_code=303)
    if problem == UNAVAILABLE:
        return _cannot(request, page, problem, "")
    if problem in {"already_answered", "already_decided"}:
        return _refused(
            request,
            page,
            "This request can no longer be answered",
            "It has been answered already, or the MASH has decided the referral.",
            409,
        )
    return _request_not_found(request, page)
