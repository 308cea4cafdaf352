"""The auditor's pages: the audit log (filtered, newest first, paged), one entry, and the
state of the hash chain since the last signed checkpoint.

They call :mod:`mash_hub.audit.access`, as ``/api/v1/audit`` does: the same permission
check (a refusal is audited as ``authz.denied`` and answered with a 403 page), the same
filters and one ``audit.query`` entry per page of the log or entry shown; the chain page
records ``audit.verify`` like ``POST /api/v1/audit/verify``. Filters are a GET form, so they
live in the query string: they are ids, codes and dates only, never names.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from mash_hub.audit.access import (
    ACTION_PATTERN,
    ACTOR_PATTERN,
    Filters,
    find_entry,
    permitted,
    query_entries,
    record_verification,
    run_verification,
    verify_lock,
)
from mash_hub.audit.reports import InvalidAuditArgumentError
from mash_hub.authz.policy import Decisions, PolicyNotPublishedError
from mash_hub.web.audit import audit_services
from mash_hub.web.pages.forms import FormErrors
from mash_hub.web.pages.session import PageSession, SignedIn
from mash_hub.web.pages.templating import LONDON, render

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
MAX_SEQ = 2**63 - 1
FILTER_FIELDS = ("actor", "person_id", "action", "since", "until")


def _refused(request: Request, page: PageSession) -> Response:
    return render(
        request,
        "error.html",
        {
            "page": page,
            "heading": "You do not have access to the audit log",
            "lines": [
                "Only auditors can read the audit log. Your attempt has been recorded.",
                "If you need access, speak to your information governance lead.",
            ],
        },
        status_code=403,
    )


def _no_policy(request: Request, page: PageSession) -> Response:
    return render(
        request,
        "error.html",
        {
            "page": page,
            "heading": "Sorry, the audit log is not available",
            "lines": ["No access policy has been published yet. Try again later."],
        },
        status_code=503,
    )


def _date(text: str, field: str, errors: FormErrors, label: str) -> dt.date | None:
    if not text:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        errors.add(field, f"{label} must be a real date, for example 2026-12-01")
        return None


def _london_midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=LONDON)


def read_filters(params: dict[str, str], errors: FormErrors) -> Filters | None:
    """The filter form's values as :class:`Filters` (dates are whole days in London time,
    both included), or None with fixed-text errors (a value is never echoed)."""
    actor = params.get("actor", "").strip() or None
    if actor is not None and not re.fullmatch(ACTOR_PATTERN, actor):
        errors.add("actor", "Enter an actor id such as user: followed by an id, without spaces")
    person_text = params.get("person_id", "").strip()
    person_id = None
    if person_text:
        try:
            person_id = uuid.UUID(person_text)
        except ValueError:
            errors.add("person_id", "Enter a person id in the form shown on the person's page")
    action = params.get("action", "").strip() or None
    if action is not None and (len(action) > 100 or not re.fullmatch(ACTION_PATTERN, action)):
        errors.add("action", "Enter an action such as person.view")
    since = _date(params.get("since", "").strip(), "since", errors, "From date")
    until = _date(params.get("until", "").strip(), "until", errors, "To date")
    if since is not None and until is not None and since > until:
        errors.add("since", "From date must be the same as or before the to date")
    if errors:
        return None
    try:
        return Filters.of(
            actor=actor,
            person_id=person_id,
            action=action,
            since=None if since is None else _london_midnight(since),
            until=None if until is None else _london_midnight(until + dt.timedelta(days=1)),
        )
    except InvalidAuditArgumentError as bad:
        errors.add(bad.field, "Enter dates from 1970 to 9998")
        return None


@router.get("/audit")
def audit_log_page(request: Request, page: SignedIn) -> Response:
    params = {k: v for k, v in request.query_params.items() if k in (*FILTER_FIELDS, "after")}
    errors = FormErrors()
    filters = read_filters(params, errors)
    after_text = params.get("after", "")
    after = int(after_text) if after_text.isdigit() and int(after_text) <= MAX_SEQ else None
    database, policy, _ = audit_services(request)
    caller = page.active.caller()
    context: dict[str, Any] = {"page": page, "nav": "audit", "form": params, "width": "full"}
    with database.transaction() as session:
        try:
            decisions: Decisions = policy.for_session(session)
        except PolicyNotPublishedError:
            return _no_policy(request, page)
        if filters is None:
            return render(
                request,
                "audit_log.html",
                {**context, "errors": errors.summary(), "field_errors": errors.by_field},
                status_code=400,
            )
        found = query_entries(
            session, decisions, caller, filters, after=after, limit=PAGE_SIZE, order="desc"
        )
    if found is None:
        return _refused(request, page)
    query = {k: v for k, v in params.items() if k in FILTER_FIELDS and v}
    return render(
        request,
        "audit_log.html",
        {
            **context,
            "entries": [_readable(row) for row in found.rows],
            "next_cursor": found.next_cursor,
            "query": query,
            "first_page": after is None,
        },
    )


def _readable(row: dict[str, Any]) -> dict[str, Any]:
    """An entry with its time as a datetime too, for display in London time."""
    return {**row, "occurred": dt.datetime.fromisoformat(row["occurred_at"])}


def _not_found(request: Request, page: PageSession) -> Response:
    return render(
        request,
        "error.html",
        {
            "page": page,
            "heading": "Audit entry not found",
            "lines": ["There is no audit entry with this number."],
        },
        status_code=404,
    )


@router.get("/audit/entries/{seq}")
def audit_entry_page(request: Request, seq: str, page: SignedIn) -> Response:
    if not seq.isdigit() or int(seq) > MAX_SEQ:
        return _not_found(request, page)
    database, policy, _ = audit_services(request)
    with database.transaction() as session:
        try:
            decisions = policy.for_session(session)
        except PolicyNotPublishedError:
            return _no_policy(request, page)
        found = find_entry(session, decisions, page.active.caller(), int(seq))
    if found is None:
        return _refused(request, page)
    if found.row is None:
        return _not_found(request, page)
    return render(
        request, "audit_entry.html", {"page": page, "nav": "audit", "entry": _readable(found.row)}
    )


@router.get("/audit/chain")
def audit_chain_page(request: Request, page: SignedIn) -> Response:
    """Verifies the entries after the newest signed checkpoint (milliseconds; the signature
    vouches for the rest) and shows the result; recorded as ``audit.verify``."""
    database, policy, settings = audit_services(request)
    caller = page.active.caller()
    busy = False
    report = None
    with database.transaction() as session:
        try:
            decisions = policy.for_session(session)
        except PolicyNotPublishedError:
            return _no_policy(request, page)
        if not permitted(session, decisions, caller, "audit.verify"):
            allowed = False
        else:
            allowed = True
            if verify_lock.acquire(blocking=False):
                try:
                    report = run_verification(database, settings, "since_checkpoint")
                finally:
                    verify_lock.release()
                record_verification(session, decisions, caller, "since_checkpoint", report)
            else:
                busy = True
    if not allowed:
        return _refused(request, page)
    if busy or report is None:
        return render(
            request,
            "error.html",
            {
                "page": page,
                "heading": "The audit log is being checked",
                "lines": ["Another check of the audit log is running. Try again in a minute."],
            },
            status_code=409,
        )
    return render(
        request,
        "audit_chain.html",
        {"page": page, "nav": "audit", "report": report, "checkpoint": report.latest_checkpoint},
    )
