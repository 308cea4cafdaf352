"""Subject-access export over HTTP: ``GET /api/v1/persons/{id}/subject-access``.

For information-governance staff answering a subject-access request (UK GDPR Art. 15). The
SAR reference travels in the ``X-SAR-Reference`` header (never the URL). The export is
:func:`~mash_hub.casework.subject_access.subject_access_export`, run in the request's unit of
work: the caller's ``subject_access`` mask per source decides what is decrypted, and one
``person.subject_access`` entry is written before anything is. A refusal is caught inside
the transaction so its ``authz.denied`` entry commits; a refused export and an unknown person
get the same 403 body as the person view. The path does not clash with ``/persons/{id}``
(a path parameter never spans a ``/``), so the order of the routers does not matter.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from pydantic import BaseModel, Field

from mash_hub.authz.policy import AccessPolicy, PolicyNotPublishedError
from mash_hub.casework.subject_access import (
    REFERENCE_RULE,
    InvalidReferenceError,
    SarReference,
    SubjectAccessExport,
    subject_access_export,
    subject_access_masks,
)
from mash_hub.casework.view import AccessDeniedError
from mash_hub.crypto.errors import KeyConfigError
from mash_hub.crypto.keystore import load_key_provider
from mash_hub.db.engine import Database
from mash_hub.persons.store import PersonStore
from mash_hub.web.deps import CurrentPrincipal
from mash_hub.web.errors import (
    EXAMPLE_REQUEST_ID,
    ApiProblemError,
    problem_doc,
    problem_response,
)
from mash_hub.web.persons import DENIED_CODE, DENIED_DETAIL

H_REFERENCE = "X-SAR-Reference"


RESPONSES: dict[int | str, dict[str, Any]] = {
    400: problem_doc(
        f"No valid SAR reference; `errors` names the {H_REFERENCE} header",
        {
            "type": "about:blank",
            "title": "Bad Request",
            "status": 400,
            "detail": "a valid SAR reference is required",
            "code": "sar_reference_invalid",
            "request_id": EXAMPLE_REQUEST_ID,
            "errors": [{"loc": ["header", H_REFERENCE], "msg": REFERENCE_RULE, "type": "missing"}],
        },
    ),
    403: problem_doc(
        "Not allowed to export this person, or no such person (the same body for both); "
        "every role but information governance always gets this",
        {
            "type": "about:blank",
            "title": "Forbidden",
            "status": 403,
            "detail": DENIED_DETAIL,
            "code": DENIED_CODE,
            "request_id": EXAMPLE_REQUEST_ID,
        },
    ),
    503: problem_doc(
        "No access policy is published, or the encryption keys are not available",
        {
            "type": "about:blank",
            "title": "Service Unavailable",
            "status": 503,
            "detail": "no access policy is published",
            "code": "policy_not_published",
            "request_id": EXAMPLE_REQUEST_ID,
        },
    ),
}

router = APIRouter(prefix="/persons", tags=["subject access"], responses=RESPONSES)


class SarRecordOut(BaseModel):
    record_id: uuid.UUID
    feed: str
    version: int
    current: bool = Field(description="False for a superseded version still held.")
    received_at: dt.datetime
    superseded_at: dt.datetime | None
    groups: dict[str, dict[str, Any]] = Field(
        description="The field groups the caller's `subject_access` mask allows, decrypted."
    )


class AccessEventOut(BaseModel):
    seq: int = Field(description="The audit entry (an auditor can resolve who).")
    occurred_at: dt.datetime
    action: str
    accessed_by: dict[str, str | None] = Field(
        description="`kind` (staff, partner_agency, operator, system), `role`, `agency`; "
        "never a member of staff's identity."
    )
    purpose: dict[str, str] | None = Field(
        description="Reason code, referral reference or SAR reference; never free text."
    )
    break_glass: bool
    groups: dict[str, list[str]] = Field(description="Groups shown per source, when recorded.")


class InformationRequestSarOut(BaseModel):
    id: uuid.UUID
    referral: str = Field(description="The referral's reference.")
    agency_asked: str
    status: str = Field(description="open, overdue, answered or closed.")
    requested_at: dt.datetime
    due_at: dt.datetime | None
    answered_at: dt.datetime | None
    outcome: str | None = Field(description="information or nothing_held, once answered.")
    answered_late: bool | None
    text: str = Field(
        description="`included`: question and answer decrypted (the caller's `subject_access` "
        "mask holds the referral source's `details.referral`); `withheld`: not decrypted; "
        "`erased`: shredded with another subject of the referral."
    )
    question: str | None
    answer: str | None


class SubjectAccessOut(BaseModel):
    person_id: uuid.UUID
    reference: str
    generated_at: dt.datetime
    policy_version: int | None
    audit_seq: int = Field(description="The `person.subject_access` audit entry.")
    sources: dict[str, list[SarRecordOut]] = Field(
        description="Per source agency, every record version still held, with its allowed "
        "groups (sources with nothing allowed are left out)."
    )
    withheld: dict[str, list[str]] = Field(
        description="Per source, groups held but outside the mask (names only; not decrypted)."
    )
    referrals: list[dict[str, Any]] | None = Field(
        description="Linked referrals (codes, references, dates, status); null when this hub "
        "has no referrals."
    )
    information_requests: list[InformationRequestSarOut] = Field(
        description="The MASH's information requests about those referrals, oldest first."
    )
    access_history: list[AccessEventOut]
    counts: dict[str, int | None]


_services_lock = threading.Lock()


def _services(request: Request) -> tuple[Database, PersonStore, AccessPolicy]:
    """The app's database, person store and access policy, shared with the other routers
    through ``app.state`` (made lazily here when this router is the first to need them)."""
    state = request.app.state
    if (
        getattr(state, "person_store", None) is None
        or getattr(state, "access_policy", None) is None
    ):
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
    store: PersonStore = state.person_store
    policy: AccessPolicy = state.access_policy
    return state.database, store, policy


def parse_reference(value: str | None) -> tuple[SarReference | None, list[dict[str, Any]]]:
    """The reference, or None and the fault (a fixed message: never the header's value)."""
    if value is None:
        return None, [{"loc": ["header", H_REFERENCE], "msg": REFERENCE_RULE, "type": "missing"}]
    try:
        return SarReference(value), []
    except InvalidReferenceError:
        return None, [{"loc": ["header", H_REFERENCE], "msg": REFERENCE_RULE, "type": "pattern"}]


@router.get(
    "/{person_id}/subject-access",
    summary="Subject-access export of a person (information governance)",
    response_model=SubjectAccessOut,
)
def get_subject_access(
    request: Request,
    response: Response,
    person_id: uuid.UUID,
    *,
    principal: CurrentPrincipal,
    x_sar_reference: Annotated[
        str | None,
        Header(
            alias=H_REFERENCE,
            description="The request's reference in the case system, e.g. `SAR-2026-0117`.",
        ),
    ] = None,
) -> Any:
    """Everything the hub holds about the person that the caller's `subject_access` mask
    allows, per source agency (current and superseded record versions), the groups withheld,
    linked referrals, and the person's access history (role and agency, never staff names).
    Audited as `person.subject_access` before anything is decrypted; refusals as
    `authz.denied`. For review by information-governance staff before release."""
    reference, faults = parse_reference(x_sar_reference)
    database, store, policy = _services(request)
    caller = principal.caller()
    export: SubjectAccessExport | None = None
    denied: str | None = None
    with database.transaction() as session:
        try:
            permitted = bool(subject_access_masks(policy.for_session(session), caller))
        except PolicyNotPublishedError:
            raise ApiProblemError(
                503, "no access policy is published", code="policy_not_published"
            ) from None
        try:
            export = subject_access_export(
                session, store, policy, caller, person_id, reference, channel="api"
            )
        except AccessDeniedError as refusal:
            denied = refusal.reason  # its authz.denied entry commits with the transaction
    if denied == "reference_missing" and permitted:
        return problem_response(
            request,
            400,
            "a valid SAR reference is required",
            code="sar_reference_invalid",
            errors=faults,
        )
    if denied is not None or export is None:
        raise ApiProblemError(403, DENIED_DETAIL, code=DENIED_CODE)
    response.headers["Content-Disposition"] = (
        f'attachment; filename="subject-access-{export.audit_seq}.json"'
    )
    return SubjectAccessOut.model_validate(export.to_dict())
