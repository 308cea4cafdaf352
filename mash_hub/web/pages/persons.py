"""The officer's pages: search, purpose of access, and the person page.

They call the services the API calls, in one unit of work per request:
:func:`~mash_hub.casework.search.search_persons` (one ``person.search`` entry),
:func:`~mash_hub.casework.view.view_person` (one ``person.view`` entry; masks per source),
:func:`~mash_hub.casework.view.referral_purposes` (the purpose page's referrals; one
``person.referral_purposes`` entry) and
:func:`~mash_hub.casework.links.person_links` (one ``person.links.view`` entry). No policy,
audit or masking decision is made here: a withheld group is one the service withheld.

Results and person pages are answers to POSTs (the query and the purpose stay out of URLs,
history and logs), with ``Cache-Control: no-store`` like every page.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from mash_hub.authz.policy import PolicyNotPublishedError
from mash_hub.casework.links import PersonLinks, person_links
from mash_hub.casework.search import (
    InvalidQueryError,
    QueryTooBroadError,
    SearchDeniedError,
    SearchResult,
    search_persons,
    standardise_query,
)
from mash_hub.casework.view import (
    PURPOSE_REFERRAL_INVALID,
    REASON_CODES,
    AccessDeniedError,
    PersonView,
    referral_purposes,
    view_person,
)
from mash_hub.referrals.linked import PURPOSE_WINDOW
from mash_hub.web.pages.forms import (
    JUSTIFICATION_RULE,
    FormErrors,
    purpose_for,
    read_break_glass,
    read_purpose,
)
from mash_hub.web.pages.session import FormData, PageSession, SignedIn, check_csrf
from mash_hub.web.pages.templating import render
from mash_hub.web.persons import services
from mash_hub.web.search import linkage_model

router = APIRouter(include_in_schema=False)

SEARCH_TEXT_FIELDS = ("given_name", "family_name", "postcode", "nhs_number", "upn", "pnc_id")
FIELD_LABELS = {
    "given_name": "First name",
    "family_name": "Last name",
    "date_of_birth": "Date of birth",
    "postcode": "Postcode",
    "nhs_number": "NHS number",
    "upn": "Unique Pupil Number (UPN)",
    "pnc_id": "Police National Computer (PNC) id",
}
_QUERY_PAGE_MESSAGES = {
    "query_empty": "Enter details of the person you are looking for",
    "query_too_broad": "Enter an identifier, or at least two of first name, last name, date of "
    "birth and postcode",
}


def _common(page: PageSession) -> dict[str, Any]:
    return {"page": page, "reason_codes": REASON_CODES}


def _unavailable(
    request: Request, page: PageSession, heading: str, line: str, status: int
) -> Response:
    return render(
        request,
        "error.html",
        {"page": page, "heading": heading, "lines": [line]},
        status_code=status,
    )


# -- search ----------------------------------------------------------------------------------


@router.get("/search")
def search_form(request: Request, page: SignedIn) -> Response:
    if not page.may_search:
        return _unavailable(
            request, page, "You cannot search for people", "Your role does not allow searching.",
            403,
        )  # fmt: skip
    return render(request, "search.html", {**_common(page), "nav": "search", "form": {}})


def _date_of_birth(form: dict[str, str], errors: FormErrors) -> str | None:
    parts = [form.get(f"dob-{part}", "").strip() for part in ("day", "month", "year")]
    if not any(parts):
        return None
    if not all(part.isdigit() for part in parts):
        errors.add("date_of_birth-day", "Date of birth must include a day, month and year")
        return None
    day, month, year = parts
    return f"{int(day):02d}/{int(month):02d}/{year}"


@router.post("/search")
def search(request: Request, page: SignedIn, form: FormData) -> Response:
    check_csrf(request, page, form)
    context = {**_common(page), "nav": "search", "form": form}
    errors = FormErrors()
    purpose = read_purpose(form, errors)
    raw: dict[str, Any] = {name: form.get(name, "") for name in SEARCH_TEXT_FIELDS}
    raw["date_of_birth"] = _date_of_birth(form, errors)
    query = None
    try:
        query = standardise_query({k: v for k, v in raw.items() if v})
    except InvalidQueryError as invalid:
        for fault in invalid.faults:
            if fault.field is None:
                errors.add("given_name", _QUERY_PAGE_MESSAGES.get(fault.code, "Check the details"))
            else:
                target = "date_of_birth-day" if fault.field == "date_of_birth" else fault.field
                label = FIELD_LABELS.get(fault.field, fault.field)
                errors.add(target, f"{label}: {fault.message}")
    if errors or query is None or purpose is None:
        return render(
            request,
            "search.html",
            {**context, "errors": errors.summary(), "field_errors": errors.by_field},
            status_code=400,
        )
    database, store, policy = services(request)
    model = linkage_model(request)
    result: SearchResult | None = None
    refused = too_broad = False
    with database.transaction() as session:
        try:
            result = search_persons(
                session, store, policy, page.active.caller(), query, purpose, model
            )
        except PolicyNotPublishedError:
            refused = True
        except SearchDeniedError:
            refused = True  # audited; commits with the transaction
        except QueryTooBroadError:
            too_broad = True  # audited as a search with outcome too_broad
    if too_broad:
        errors.add("given_name", "Too many people match. Add more details, such as a date of birth")
        return render(
            request,
            "search.html",
            {**context, "errors": errors.summary(), "field_errors": errors.by_field},
            status_code=400,
        )
    if refused or result is None:
        return _unavailable(
            request,
            page,
            "You cannot search for people",
            "Your role does not allow searching.",
            403,
        )
    return render(request, "results.html", {**context, "result": result})


# -- purpose of access and the person page ----------------------------------------------------


_REFERRAL_NO_LONGER_FITS = (
    "The referral you chose can no longer be given as the reason: it was decided more than "
    f"{PURPOSE_WINDOW.days} days ago, or it no longer names this person. Choose another reason"
)


def _purpose_page(
    request: Request,
    page: PageSession,
    person_id: uuid.UUID,
    form: dict[str, str],
    *,
    errors: FormErrors | None = None,
    status_code: int = 200,
) -> Response:
    """The purpose page: reason codes, the referrals about the person the caller may give
    (:func:`~mash_hub.casework.view.referral_purposes`), and break-glass when allowed."""
    database, _, policy = services(request)
    caller = page.active.caller()
    with database.transaction() as session:
        try:
            may_break_glass = policy.for_session(session).may_break_glass(caller)
            referrals = referral_purposes(session, policy, caller, person_id)
        except PolicyNotPublishedError:
            may_break_glass, referrals = False, []
    context: dict[str, Any] = {
        **_common(page),
        "person_id": person_id,
        "form": form,
        "may_break_glass": may_break_glass,
        "referrals": referrals,
        "justification_rule": JUSTIFICATION_RULE,
    }
    if errors:
        context |= {"errors": errors.summary(), "field_errors": errors.by_field}
    return render(request, "purpose.html", context, status_code=status_code)


@router.get("/people/{person_id}/purpose")
def purpose_form(
    request: Request, person_id: uuid.UUID, page: SignedIn, referral: str | None = None
) -> Response:
    """The purpose form; from a referral's page (``?referral=REF``), "this referral" chosen."""
    return _purpose_page(request, page, person_id, purpose_for(referral))


@router.post("/people/{person_id}")
def person_page(request: Request, person_id: uuid.UUID, page: SignedIn, form: FormData) -> Response:
    check_csrf(request, page, form)
    errors = FormErrors()
    purpose = read_purpose(form, errors)
    glass = read_break_glass(form, errors)
    if errors or purpose is None:
        return _purpose_page(request, page, person_id, form, errors=errors, status_code=400)
    database, store, policy = services(request)
    caller = page.active.caller()
    view: PersonView | None = None
    links: PersonLinks | None = None
    stale_referral = False
    with database.transaction() as session:
        try:
            view = view_person(session, store, policy, caller, person_id, purpose, glass)
            links = person_links(session, policy, caller, person_id, purpose)
        except PolicyNotPublishedError:
            view = None
        except AccessDeniedError as denied:
            view = None  # the refusal's audit entry commits with the transaction
            stale_referral = denied.reason == PURPOSE_REFERRAL_INVALID
    if stale_referral:
        errors.add("purpose", _REFERRAL_NO_LONGER_FITS)
        return _purpose_page(request, page, person_id, form, errors=errors, status_code=403)
    if view is None or links is None:
        return _unavailable(
            request,
            page,
            "You cannot see this person's records",
            "Your role does not allow it, or there is no such person.",
            403,
        )
    return render(
        request,
        "person.html",
        {**_common(page), "view": view, "links": links, "width": "full"},
    )
