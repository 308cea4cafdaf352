"""Person records over HTTP: the masked person view and why its records are linked.

Every call states a purpose of access in headers, never in the URL (so no free text lands in
access logs or browser history):

* ``X-Purpose-Code`` (a reason code) with ``X-Purpose-Text`` (a short explanation), or
  ``X-Purpose-Referral`` (a referral reference, text optional);
* ``X-Break-Glass-Justification`` asks for break-glass access (person view only).

The view is :func:`~mash_hub.casework.view.view_person`, run in the request's unit of work; a
refusal is caught inside the transaction so its ``authz.denied`` entry commits. A refused view
and an unknown person get the same 403 body, so the API does not say which persons exist.
No error body carries a value from the request.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from mash_hub.authz.policy import AccessPolicy, PolicyNotPublishedError
from mash_hub.casework.links import PersonLinks, person_links
from mash_hub.casework.view import (
    BREAK_GLASS_JUSTIFICATION_INVALID,
    JUSTIFICATION_MAX,
    JUSTIFICATION_MIN,
    JUSTIFICATION_MIN_WORDS,
    PURPOSE_REFERRAL_INVALID,
    PURPOSE_REFERRAL_MESSAGE,
    PURPOSE_TEXT_MAX,
    PURPOSE_TEXT_MIN,
    PURPOSE_TEXT_MIN_WORDS,
    REASON_CODES,
    AccessDeniedError,
    BreakGlass,
    InvalidPurposeError,
    PersonView,
    Purpose,
    check_purpose_text,
    refuse_invalid_justification,
    view_person,
)
from mash_hub.crypto.errors import KeyConfigError
from mash_hub.crypto.keystore import load_key_provider
from mash_hub.db.engine import Database
from mash_hub.persons.store import PersonStore
from mash_hub.web.deps import CurrentPrincipal
from mash_hub.web.errors import (
    EXAMPLE_REQUEST_ID as _RID,
)
from mash_hub.web.errors import (
    ApiProblemError,
    problem_doc,
    problem_response,
)

H_CODE = "X-Purpose-Code"
H_REFERRAL = "X-Purpose-Referral"
H_TEXT = "X-Purpose-Text"
H_GLASS = "X-Break-Glass-Justification"

DENIED_DETAIL = "not allowed to view this person, or no such person"
DENIED_CODE = "person_not_available"


# -- OpenAPI: the problem documents this router answers ------------------------------------


RESPONSES: dict[int | str, dict[str, Any]] = {
    400: problem_doc(
        "No valid purpose of access (or break-glass justification); `errors` names the header",
        {
            "type": "about:blank",
            "title": "Bad Request",
            "status": 400,
            "detail": "a valid purpose of access is required",
            "code": "purpose_invalid",
            "request_id": _RID,
            "errors": [
                {
                    "loc": ["header", H_CODE],
                    "msg": f"give {H_CODE} (with {H_TEXT}) or {H_REFERRAL}",
                    "type": "missing",
                }
            ],
        },
    ),
    403: problem_doc(
        "Not allowed to view this person, or no such person (the same body for both); "
        "partner and auditor credentials always get this. A caller who may view persons "
        f"but gives an `{H_REFERRAL}` that does not exist, was decided more than 30 days "
        f"ago or does not name this person gets code `{PURPOSE_REFERRAL_INVALID}`",
        {
            "type": "about:blank",
            "title": "Forbidden",
            "status": 403,
            "detail": DENIED_DETAIL,
            "code": DENIED_CODE,
            "request_id": _RID,
        },
    ),
    503: problem_doc(
        "No access policy is published (everything is denied until one is)",
        {
            "type": "about:blank",
            "title": "Service Unavailable",
            "status": 503,
            "detail": "no access policy is published",
            "code": "policy_not_published",
            "request_id": _RID,
        },
    ),
}

router = APIRouter(prefix="/persons", tags=["persons"], responses=RESPONSES)


# -- response bodies -----------------------------------------------------------------------


class RecordOut(BaseModel):
    record_id: uuid.UUID
    feed: str
    groups: dict[str, dict[str, Any]] = Field(
        description="Only the field groups the caller may see, by group name."
    )
    failed_values: int | None = Field(
        default=None,
        description="How many values of this record failed validation and were left out of "
        "it (to correct through `/quality-issues`); only for callers who may see the "
        "record's `quality` group. The values themselves are never shown here.",
    )
    quality_notice: str | None = Field(
        default=None, description='"N values of this record failed validation", when N > 0.'
    )


class LinkedReferralOut(BaseModel):
    id: uuid.UUID
    reference: str
    received_at: dt.datetime
    status: str = Field(description="received, in_triage or decided.")
    rag: str | None = Field(description="red, amber, green, or null before triage rates it.")
    subject_role: str = Field(description="The person's role in the referral (child, ...).")
    record_id: uuid.UUID = Field(description="The person's record made from the referral.")
    concerns: str | None = Field(
        description="The referral's concerns, only when the policy lets the caller see "
        "`details.referral` of referral records (and only for the child or adult at risk)."
    )


class PersonViewOut(BaseModel):
    person_id: uuid.UUID
    policy_version: int | None
    purpose: dict[str, str] = Field(description="The reason code or referral reference.")
    break_glass: bool
    audit_seq: int = Field(description="The `person.view` audit entry of this view.")
    sources: dict[str, list[RecordOut]] = Field(
        description="Per source agency, its current records (sources with nothing visible "
        "to the caller are left out)."
    )
    referrals: list[LinkedReferralOut] = Field(
        default_factory=list,
        description="Referrals naming the person, newest first; empty unless the policy lets "
        "the caller see `details.referral` of the person's referral records.",
    )


class LinkOut(BaseModel):
    record_id_l: uuid.UUID
    record_id_r: uuid.UUID
    source_l: str
    source_r: str
    status: str
    match_weight: float
    weights: dict[str, float]
    explanation: str = Field(description="The kinds of agreement, never a value.")
    run_id: uuid.UUID
    model_version: int


class LinkEventOut(BaseModel):
    occurred_at: dt.datetime
    kind: str = Field(description="create, join, merge or split.")
    person_ids: list[str] = Field(
        description="merge: kept, then absorbed; split: kept, then the new parts; else the person."
    )
    records: int
    run_id: uuid.UUID


class PersonLinksOut(BaseModel):
    person_id: uuid.UUID
    policy_version: int | None
    audit_seq: int = Field(description="The `person.links.view` audit entry.")
    links: list[LinkOut]
    history: list[LinkEventOut] = Field(
        default_factory=list,
        description="What linkage runs did to the person (newest first, at most 50).",
    )


# -- services the routes need (built once per app) ------------------------------------------

_services_lock = threading.Lock()


def services(request: Request) -> tuple[Database, PersonStore, AccessPolicy]:
    """The app's database, person store and access policy (store and policy made lazily;
    tests may set ``app.state.person_store`` / ``app.state.access_policy`` beforehand)."""
    state = request.app.state
    store: PersonStore | None = getattr(state, "person_store", None)
    policy: AccessPolicy | None = getattr(state, "access_policy", None)
    if store is None or policy is None:
        with _services_lock:
            if getattr(state, "access_policy", None) is None:
                state.access_policy = AccessPolicy()
            if getattr(state, "person_store", None) is None:
                try:
                    provider = load_key_provider(state.authenticator.settings)
                except KeyConfigError:
                    raise ApiProblemError(
                        503, "the encryption keys are not available", code="keys_unavailable"
                    ) from None
                state.person_store = PersonStore.from_provider(provider)
            store, policy = state.person_store, state.access_policy
    assert store is not None
    assert policy is not None
    return state.database, store, policy


# -- purpose headers -------------------------------------------------------------------------


def _fault(header: str, msg: str, kind: str) -> dict[str, Any]:
    return {"loc": ["header", header], "msg": msg, "type": kind}


def purpose_bad_request(request: Request, errors: list[dict[str, Any]]) -> JSONResponse:
    return problem_response(
        request,
        400,
        "a valid purpose of access is required",
        code="purpose_invalid",
        errors=errors,
    )


def parse_purpose(
    code: str | None, referral: str | None, text: str | None
) -> tuple[Purpose | None, list[dict[str, Any]]]:
    """The purpose, or None and the faults (fixed messages: never the header's value)."""
    if code is None and referral is None:
        return None, [_fault(H_CODE, f"give {H_CODE} (with {H_TEXT}) or {H_REFERRAL}", "missing")]
    errors: list[dict[str, Any]] = []
    if code is not None and referral is not None:
        errors.append(_fault(H_REFERRAL, f"give {H_CODE} or {H_REFERRAL}, not both", "conflict"))
    if code is not None and code not in REASON_CODES:
        errors.append(
            _fault(H_CODE, f"unknown reason code; one of: {', '.join(REASON_CODES)}", "enum")
        )
    if referral is not None:
        try:
            Purpose(referral=referral)
        except InvalidPurposeError:
            errors.append(
                _fault(
                    H_REFERRAL,
                    "a referral reference is 3-40 letters, digits, '/', '_' or '-' with a digit",
                    "pattern",
                )
            )
    if text is None and code is not None:
        errors.append(_fault(H_TEXT, f"a reason code needs {H_TEXT}", "missing"))
    if text is not None:
        try:
            check_purpose_text(text)
        except InvalidPurposeError as invalid:  # a fixed message: never the header's value
            errors.append(_fault(H_TEXT, str(invalid), "invalid"))
    if errors:
        return None, errors
    try:
        return Purpose(code=code, referral=referral, text=text), []
    except InvalidPurposeError:  # pragma: no cover - the checks above mirror Purpose's
        return None, [_fault(H_CODE, "not a valid purpose of access", "invalid")]


def parse_break_glass(justification: str | None) -> tuple[BreakGlass | None, list[dict[str, Any]]]:
    if justification is None:
        return None, []
    try:
        return BreakGlass(justification), []
    except InvalidPurposeError as invalid:  # a fixed message: never the header's value
        return None, [_fault(H_GLASS, str(invalid), "invalid")]


def _denied() -> ApiProblemError:
    return ApiProblemError(403, DENIED_DETAIL, code=DENIED_CODE)


def _referral_purpose_invalid() -> ApiProblemError:
    return ApiProblemError(403, PURPOSE_REFERRAL_MESSAGE, code=PURPOSE_REFERRAL_INVALID)


def policy_not_published() -> ApiProblemError:
    return ApiProblemError(503, "no access policy is published", code="policy_not_published")


PurposeCode = Annotated[
    str | None,
    Header(
        alias=H_CODE,
        description=f"Reason code: one of {', '.join(REASON_CODES)} (needs {H_TEXT}).",
    ),
]
PurposeReferral = Annotated[
    str | None, Header(alias=H_REFERRAL, description="Referral reference, e.g. `REF-2024-0042`.")
]
PurposeText = Annotated[
    str | None,
    Header(
        alias=H_TEXT,
        description=f"Why ({PURPOSE_TEXT_MIN}-{PURPOSE_TEXT_MAX} characters, at least "
        f"{PURPOSE_TEXT_MIN_WORDS} words); stored encrypted.",
    ),
]
GlassJustification = Annotated[
    str | None,
    Header(
        alias=H_GLASS,
        description=f"Break-glass justification ({JUSTIFICATION_MIN}-{JUSTIFICATION_MAX} "
        f"characters, runs of spaces counted as one, at least {JUSTIFICATION_MIN_WORDS} "
        "words); stored encrypted, flagged for review.",
    ),
]


# -- routes ----------------------------------------------------------------------------------


@router.get(
    "/{person_id}",
    summary="View a person (masked per source agency)",
    response_model=PersonViewOut,
)
def get_person(
    request: Request,
    person_id: uuid.UUID,
    *,
    principal: CurrentPrincipal,
    x_purpose_code: PurposeCode = None,
    x_purpose_referral: PurposeReferral = None,
    x_purpose_text: PurposeText = None,
    x_break_glass_justification: GlassJustification = None,
) -> Any:
    """The person's current records, grouped by source agency, with only the field groups
    the caller's role and agency may see (the break-glass mask when break-glass is asked
    for). Every view writes one `person.view` audit entry before anything is decrypted;
    every refusal writes `authz.denied` (including a missing purpose)."""
    purpose, faults = parse_purpose(x_purpose_code, x_purpose_referral, x_purpose_text)
    glass, glass_faults = parse_break_glass(x_break_glass_justification)
    database, store, policy = services(request)
    caller = principal.caller()
    view: PersonView | None = None
    denied: str | None = None
    with database.transaction() as session:
        try:
            may_view = policy.for_session(session).may_view_persons(caller)
        except PolicyNotPublishedError:
            raise policy_not_published() from None
        try:
            # A malformed justification from someone who could otherwise view: 400 (audited,
            # nothing read).
            if may_view and purpose is not None and glass_faults:
                refuse_invalid_justification(session, policy, caller, person_id)
            view = view_person(session, store, policy, caller, person_id, purpose, glass)
        except AccessDeniedError as refusal:
            denied = refusal.reason  # its authz.denied entry commits with the transaction
    if denied == "purpose_missing" and may_view:
        return purpose_bad_request(request, faults + glass_faults)
    if denied == BREAK_GLASS_JUSTIFICATION_INVALID:
        return purpose_bad_request(request, glass_faults)
    if denied == PURPOSE_REFERRAL_INVALID:
        raise _referral_purpose_invalid()
    if denied is not None:
        raise _denied()
    assert view is not None
    return PersonViewOut.model_validate(view.to_dict())


@router.get(
    "/{person_id}/links",
    summary="Why the person's records are linked",
    response_model=PersonLinksOut,
)
def get_person_links(
    request: Request,
    person_id: uuid.UUID,
    *,
    principal: CurrentPrincipal,
    x_purpose_code: PurposeCode = None,
    x_purpose_referral: PurposeReferral = None,
    x_purpose_text: PurposeText = None,
) -> Any:
    """For each linked pair of the person's current records (in sources the caller may
    see), the latest linkage decision and its explanation: the kinds of agreement and their
    weights, never a value. Audited as `person.links.view` (ids only)."""
    purpose, faults = parse_purpose(x_purpose_code, x_purpose_referral, x_purpose_text)
    database, _, policy = services(request)
    caller = principal.caller()
    found: PersonLinks | None = None
    denied: str | None = None
    with database.transaction() as session:
        try:
            found = person_links(session, policy, caller, person_id, purpose)
        except PolicyNotPublishedError:
            raise policy_not_published() from None
        except AccessDeniedError as refusal:
            denied = refusal.reason  # its authz.denied entry commits with the transaction
    if denied == "purpose_missing":
        return purpose_bad_request(request, faults)
    if denied == PURPOSE_REFERRAL_INVALID:
        raise _referral_purpose_invalid()
    if found is None:
        raise _denied()
    return PersonLinksOut(
        person_id=person_id,
        policy_version=found.policy_version,
        audit_seq=found.audit_seq,
        links=[LinkOut.model_validate(dataclasses.asdict(link)) for link in found.links],
        history=[LinkEventOut.model_validate(dataclasses.asdict(e)) for e in found.history],
    )
