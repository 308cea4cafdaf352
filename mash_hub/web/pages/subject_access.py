"""The subject-access export for information-governance staff: a form asking the person id
and the SAR reference, then the export as a JSON download.

It calls :func:`~mash_hub.casework.subject_access.subject_access_export` exactly as
``GET /api/v1/persons/{id}/subject-access`` does (the same checks, the same
``person.subject_access`` entry, refusals as ``authz.denied``, a missing or malformed
reference too), and the download is the API's document (``SubjectAccessOut``), sent as an
attachment with ``Cache-Control: no-store``. The person id and reference are posted, never put
in a URL.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import Response

from mash_hub.authz.policy import PolicyNotPublishedError
from mash_hub.casework.subject_access import (
    InvalidReferenceError,
    SarReference,
    SubjectAccessExport,
    subject_access_export,
)
from mash_hub.casework.view import AccessDeniedError
from mash_hub.web.pages.forms import FormErrors
from mash_hub.web.pages.session import FormData, PageSession, SignedIn, check_csrf
from mash_hub.web.pages.templating import PAGE_HEADERS, render
from mash_hub.web.persons import services
from mash_hub.web.subject_access import SubjectAccessOut

router = APIRouter(include_in_schema=False)

REFERENCE_MESSAGE = (
    "Enter a SAR reference of 3 to 40 letters, digits, slashes, underscores or hyphens, "
    "with at least one digit, for example SAR-2026-0117"
)


def _message(
    request: Request, page: PageSession, heading: str, lines: list[str], status: int
) -> Response:
    return render(
        request,
        "error.html",
        {"page": page, "nav": "subject_access", "heading": heading, "lines": lines},
        status_code=status,
    )


_ONLY_IG = (
    "Only information governance staff can export subject access requests, and only for a "
    "person the hub holds."
)


def _refused(request: Request, page: PageSession) -> Response:
    """An export the service refused (and audited)."""
    return _message(
        request,
        page,
        "You cannot export this person's records",
        [f"{_ONLY_IG} Your attempt has been recorded."],
        403,
    )


def _form(
    request: Request, page: PageSession, form: dict[str, str], errors: FormErrors | None = None
) -> Response:
    errors = errors or FormErrors()
    return render(
        request,
        "subject_access.html",
        {
            "page": page,
            "nav": "subject_access",
            "form": form,
            "errors": errors.summary(),
            "field_errors": errors.by_field,
        },
        status_code=400 if errors else 200,
    )


@router.get("/subject-access")
def subject_access_form(request: Request, page: SignedIn) -> Response:
    if not page.may_subject_access:  # nothing was asked for yet: nothing to audit
        return _message(request, page, "You cannot export subject access requests", [_ONLY_IG], 403)
    return _form(request, page, {})


@router.post("/subject-access")
def subject_access_download(request: Request, page: SignedIn, form: FormData) -> Response:
    check_csrf(request, page, form)
    errors = FormErrors()
    person_id: uuid.UUID | None = None
    try:
        person_id = uuid.UUID(form.get("person_id", "").strip())
    except ValueError:
        errors.add("person_id", "Enter a person id in the form shown on the person's page")
    reference: SarReference | None = None
    typed = form.get("reference", "").strip()
    try:
        reference = SarReference(typed) if typed else None
    except InvalidReferenceError:
        reference = None
    if person_id is None:  # the API's path would not match: nothing is attempted
        if reference is None:
            errors.add("reference", REFERENCE_MESSAGE)
        return _form(request, page, form, errors)
    database, store, policy = services(request)
    export: SubjectAccessExport | None = None
    denied: str | None = None
    with database.transaction() as session:
        try:
            export = subject_access_export(
                session, store, policy, page.active.caller(), person_id, reference, channel="api"
            )
        except PolicyNotPublishedError:
            return _message(
                request,
                page,
                "Sorry, subject access exports are not available",
                ["No access policy has been published yet. Try again later."],
                503,
            )
        except AccessDeniedError as refusal:
            denied = refusal.reason  # its authz.denied entry commits with the transaction
    if denied == "reference_missing" and page.may_subject_access:
        errors.add("reference", REFERENCE_MESSAGE)
        return _form(request, page, form, errors)
    if export is None:
        return _refused(request, page)
    body = SubjectAccessOut.model_validate(export.to_dict()).model_dump_json(indent=2)
    return Response(
        body,
        media_type="application/json",
        headers={
            **PAGE_HEADERS,
            "Content-Disposition": f'attachment; filename="subject-access-{export.audit_seq}.json"',
        },
    )
