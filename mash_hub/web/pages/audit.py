"""The auditor's pages: the audit log (filtered, newest first, paged), its CSV download, one
entry, the unusual-access report, and the state of the hash chain since the last signed
checkpoint.

They call :mod:`mash_hub.audit.access`, as ``/api/v1/audit`` does: the same permission
check (a refusal is audited as ``authz.denied`` and answered with a 403 page), the same
filters and one ``audit.query`` entry per page of the log or entry shown; the download is the
API's export (``audit.export`` committed before the first byte), the report the API's
``/unusual`` (``audit.unusual``), and the chain page records ``audit.verify`` like
``POST /api/v1/audit/verify``. Filters and report parameters are GET forms, so they live in
the query string: they are ids, codes, numbers and dates only, never names.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from mash_hub.audit.access import (
    ACTION_PATTERN,
    ACTOR_PATTERN,
    MAX_THRESHOLD,
    Filters,
    export_chunks,
    find_entry,
    first_seq,
    permitted,
    query_entries,
    record_verification,
    run_verification,
    start_export,
    unusual_actors,
    unusual_report,
    unusual_window,
    verify_lock,
)
from mash_hub.audit.reports import (
    DEFAULT_DENIAL_THRESHOLD,
    DEFAULT_VOLUME_THRESHOLD,
    InvalidAuditArgumentError,
)
from mash_hub.authz.policy import Decisions, PolicyNotPublishedError
from mash_hub.web.audit import audit_services, export_headers
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


# -- the CSV download -----------------------------------------------------------------------


@router.get("/audit/export")
def audit_export_download(request: Request, page: SignedIn) -> Response:
    """The filtered log as the API's CSV export (every matching entry, oldest first)."""
    params = {k: v for k, v in request.query_params.items() if k in FILTER_FIELDS}
    errors = FormErrors()
    filters = read_filters(params, errors)
    database, policy, _ = audit_services(request)
    with database.transaction() as session:
        try:
            decisions = policy.for_session(session)
        except PolicyNotPublishedError:
            return _no_policy(request, page)
        if filters is None:
            return render(
                request,
                "audit_log.html",
                {
                    "page": page,
                    "nav": "audit",
                    "form": params,
                    "width": "full",
                    "errors": errors.summary(),
                    "field_errors": errors.by_field,
                },
                status_code=400,
            )
        started = start_export(session, decisions, page.active.caller(), filters, "csv")
    if started is None:
        return _refused(request, page)
    return StreamingResponse(
        export_chunks(database, started.statement, "csv"),
        media_type="text/csv; charset=utf-8",
        headers=export_headers(started, "csv"),
    )


# -- the unusual-access report ---------------------------------------------------------------

UNUSUAL_FIELDS = ("since", "until", "timezone", "working_start", "working_end",
                  "volume_threshold", "denial_threshold")  # fmt: skip
UNUSUAL_DEFAULTS = {
    "timezone": "Europe/London",
    "working_start": "8",
    "working_end": "18",
    "volume_threshold": str(DEFAULT_VOLUME_THRESHOLD),
    "denial_threshold": str(DEFAULT_DENIAL_THRESHOLD),
}
SEQS_SHOWN = 20


@dataclass(frozen=True)
class UnusualParams:
    since: dt.datetime | None
    until: dt.datetime | None
    timezone: str
    working_hours: tuple[int, int]
    volume_threshold: int
    denial_threshold: int


def _whole(
    params: dict[str, str], name: str, errors: FormErrors, *, low: int, high: int, message: str
) -> int:
    text = params.get(name, "").strip()
    if not text.isdigit() or not low <= int(text) <= high:
        errors.add(name, message)
        return low
    return int(text)


def read_unusual(params: dict[str, str], errors: FormErrors) -> UnusualParams | None:
    """The report form's values (the API's parameters; dates are whole days in UK time, both
    included), or None with fixed-text errors."""
    since_day = _date(params.get("since", "").strip(), "since", errors, "From date")
    until_day = _date(params.get("until", "").strip(), "until", errors, "To date")
    timezone = params.get("timezone", "").strip()
    if not timezone or len(timezone) > 64:
        errors.add("timezone", "Enter a time zone such as Europe/London")
    start = _whole(params, "working_start", errors, low=0, high=23,
                   message="Enter a start hour from 0 to 23")  # fmt: skip
    end = _whole(params, "working_end", errors, low=1, high=24,
                 message="Enter an end hour from 1 to 24")  # fmt: skip
    limit = f"{MAX_THRESHOLD:,}"
    volume = _whole(params, "volume_threshold", errors, low=1, high=MAX_THRESHOLD,
                    message=f"Enter a number of views from 1 to {limit}")  # fmt: skip
    denials = _whole(params, "denial_threshold", errors, low=1, high=MAX_THRESHOLD,
                     message=f"Enter a number of refusals from 1 to {limit}")  # fmt: skip
    if errors:
        return None
    return UnusualParams(
        since=None if since_day is None else _london_midnight(since_day),
        until=None if until_day is None else _london_midnight(until_day + dt.timedelta(days=1)),
        timezone=timezone,
        working_hours=(start, end),
        volume_threshold=volume,
        denial_threshold=denials,
    )


_UNUSUAL_MESSAGES = {
    "since": "The from date must be before the to date, at most 366 days apart, "
    "and from 1970 to 9998",
    "until": "Enter a to date from 1970 to 9998",
    "working_start": "The working day must start before it ends",
    "timezone": "Enter a time zone the hub knows, such as Europe/London",
}


@router.get("/audit/unusual")
def unusual_access_page(request: Request, page: SignedIn) -> Response:
    """The API's unusual-access report (default: the last 30 days), recorded as
    ``audit.unusual``, with every finding's entries linked and its actor named as the audit
    log names them (as they were then)."""
    params = {**UNUSUAL_DEFAULTS}
    params.update({k: v for k, v in request.query_params.items() if k in UNUSUAL_FIELDS})
    errors = FormErrors()
    given = read_unusual(params, errors)
    database, policy, _ = audit_services(request)
    context: dict[str, Any] = {"page": page, "nav": "audit", "form": params, "width": "full"}
    report = None
    people: dict[int, dict[str, Any]] = {}
    allowed = True
    try:
        window = (
            None if given is None else unusual_window(given.since, given.until, given.working_hours)
        )
        with database.transaction() as session:
            try:
                decisions = policy.for_session(session)
            except PolicyNotPublishedError:
                return _no_policy(request, page)
            if given is not None and window is not None:
                report = unusual_report(
                    session,
                    decisions,
                    page.active.caller(),
                    *window,
                    timezone=given.timezone,
                    working_hours=given.working_hours,
                    volume_threshold=given.volume_threshold,
                    denial_threshold=given.denial_threshold,
                )
                allowed = report is not None
                if report is not None:
                    people = unusual_actors(session, report)
            elif not permitted(session, decisions, page.active.caller(), "audit.unusual"):
                allowed = False
    except InvalidAuditArgumentError as bad:
        errors.add(bad.field, _UNUSUAL_MESSAGES.get(bad.field, "Check this value"))
    if not allowed:
        return _refused(request, page)
    if errors or report is None:
        return render(
            request,
            "audit_unusual.html",
            {**context, "errors": errors.summary(), "field_errors": errors.by_field},
            status_code=400,
        )
    return render(
        request,
        "audit_unusual.html",
        {
            **context,
            "report": report,
            "counts": report.counts(),
            "rules": report.rules(),
            "seqs_shown": SEQS_SHOWN,
            "who": lambda finding: people[first_seq(finding)],
        },
    )
