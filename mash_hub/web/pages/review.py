"""The linkage reviewer's pages: the queue, a task's two records side by side, the decision.

They call :mod:`mash_hub.casework.review`, as ``/api/v1/review-tasks`` does: the same role
check (a refusal is audited as ``authz.denied`` and answered with a 403 page), the same
purpose of access before a task's records are shown (the person pages' purpose fields), the
same masks per source, and the same ``linkage.review.list`` / ``.show`` / ``.decide`` entries.
What is decided here is only how to lay out what the service returned: the rows of the
side-by-side table and which of them differ.

The task page is the answer to a POST (the purpose stays out of the URL). The decision form
carries the purpose again in hidden fields, so a decision with errors shows the records
again through the service (audited again as a view) with the GOV.UK error summary.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from mash_hub.authz.policy import PolicyNotPublishedError
from mash_hub.casework import review as casework
from mash_hub.casework.review import REASON_MAX
from mash_hub.casework.view import PURPOSE_REFERRAL_INVALID, REASON_CODES, Purpose
from mash_hub.matching import cluster as clustering
from mash_hub.matching import review as reviewing
from mash_hub.web.pages.forms import FormErrors, read_purpose
from mash_hub.web.pages.session import FormData, PageSession, SignedIn, check_csrf
from mash_hub.web.pages.templating import render, show
from mash_hub.web.persons import services

router = APIRouter(include_in_schema=False)

QUEUE_SIZE = 100
NOT_RECORDED = show(None)
# Keyed by the kinds the linkage writes (a kind missing here would be shown as its code).
KIND_LABELS = {
    clustering.REVIEW: "Review band",
    clustering.POSSIBLE_TWIN: "Possible twins",
    clustering.AUTO: "Strong match held back",
    reviewing.MUST_LINK_CONFLICT: "Decision conflicts with the records",
}
DECISION_LABELS = {reviewing.SAME: "Same person", reviewing.DIFFERENT: "Not the same person"}
REASON_LABELS = {
    "same_identifier": "They share an identifier, such as an NHS number",
    "same_details": "Their details match",
    "twin": "They are twins",
    "sibling_or_relative": "They are siblings or other relatives",
    "namesake": "They are different people with similar names",
    "different_details": "Their details differ",
    "agency_confirmed": "An agency confirmed it",
    "other": "Another reason",
}


def _reason_items() -> list[dict[str, Any]]:
    """The reason codes in one list, each saying which decision it goes with."""
    same, different = (set(reviewing.REASON_CODES[d]) for d in reviewing.DECISIONS)
    items = []
    for code, label in REASON_LABELS.items():
        if code in same and code in different:
            hint = "Either decision"
        elif code in same:
            hint = "Same person only"
        else:
            hint = "Not the same person only"
        items.append({"value": code, "text": label, "hint": hint})
    return items


def _message(request: Request, page: PageSession, heading: str, line: str, status: int) -> Response:
    return render(
        request,
        "error.html",
        {"page": page, "nav": "review", "heading": heading, "lines": [line]},
        status_code=status,
    )


def _refused(request: Request, page: PageSession) -> Response:
    return _message(
        request,
        page,
        "You cannot review linkage",
        "Only MASH officers can review linkage. Your attempt has been recorded.",
        403,
    )


def _no_policy(request: Request, page: PageSession) -> Response:
    return _message(
        request,
        page,
        "Sorry, the review queue is not available",
        "No access policy has been published yet. Try again later.",
        503,
    )


def _missing(request: Request, page: PageSession) -> Response:
    return _message(
        request, page, "Review task not found", "There is no review task with this id.", 404
    )


# -- the queue ---------------------------------------------------------------------------------


def _page_number(text: str) -> int:
    """The ``page`` query parameter; anything but a small whole number is the first page."""
    return int(text) if text.isdigit() and len(text) <= 6 else 1


def _page_items(number: int, pages: int) -> list[dict[str, Any]]:
    """The GOV.UK pagination's numbered links: the first, the last, the current page and
    its neighbours, with an ellipsis for each gap."""
    shown = sorted({1, pages, number - 1, number, number + 1} & set(range(1, pages + 1)))
    items: list[dict[str, Any]] = []
    for position, n in enumerate(shown):
        if position and n - shown[position - 1] > 1:
            items.append({"ellipsis": True})
        items.append({"number": n, "href": f"/review?page={n}", "current": n == number})
    return items


def _pagination(number: int, pages: int) -> dict[str, Any] | None:
    if pages <= 1:
        return None
    return {
        "landmarkLabel": "Pages of review tasks",
        "previous": {"href": f"/review?page={number - 1}"} if number > 1 else None,
        "next": {"href": f"/review?page={number + 1}"} if number < pages else None,
        "items": _page_items(number, pages),
    }


@router.get("/review")
def review_queue_page(request: Request, page: SignedIn) -> Response:
    database, _, policy = services(request)
    queue: casework.QueuePage | None = None
    with database.transaction() as session:
        try:
            queue = casework.review_queue_page(
                session,
                policy,
                page.active.caller(),
                number=_page_number(request.query_params.get("page", "")),
                size=QUEUE_SIZE,
            )
        except PolicyNotPublishedError:
            return _no_policy(request, page)
        except casework.ReviewRefusedError:
            queue = None  # audited; commits with the transaction
        rows = [] if queue is None else [reviewing.task_summary(t) for t in queue.tasks]
    if queue is None:
        return _refused(request, page)
    return render(
        request,
        "review_queue.html",
        {
            "page": page,
            "nav": "review",
            "tasks": rows,
            "kinds": KIND_LABELS,
            "width": "full",
            "queue": queue,
            "first_index": (queue.number - 1) * QUEUE_SIZE,
            "pagination": _pagination(queue.number, queue.pages),
        },
    )


# -- purpose, then the task ----------------------------------------------------------------------


@router.get("/review/{task_id}/purpose")
def review_purpose_form(request: Request, task_id: uuid.UUID, page: SignedIn) -> Response:
    database, _, policy = services(request)
    refused = False
    with database.transaction() as session:
        try:
            decisions = policy.for_session(session)
        except PolicyNotPublishedError:
            return _no_policy(request, page)
        try:
            casework.require_reviewer(
                session, decisions, page.active.caller(), "linkage.review.show", task_id
            )
        except casework.ReviewRefusedError:
            refused = True  # audited; commits with the transaction
    if refused:
        return _refused(request, page)
    return render(
        request,
        "review_purpose.html",
        {
            "page": page,
            "nav": "review",
            "task_id": task_id,
            "form": {},
            "reason_codes": REASON_CODES,
        },
    )


@router.post("/review/{task_id}")
def review_task_page(
    request: Request, task_id: uuid.UUID, page: SignedIn, form: FormData
) -> Response:
    check_csrf(request, page, form)
    errors = FormErrors()
    purpose = read_purpose(form, errors)
    if errors or purpose is None:
        return _purpose_again(request, page, task_id, form, errors)
    return _show_task(request, page, task_id, purpose=purpose, form=form)


def _purpose_again(
    request: Request,
    page: PageSession,
    task_id: uuid.UUID,
    form: dict[str, str],
    errors: FormErrors,
) -> Response:
    return render(
        request,
        "review_purpose.html",
        {
            "page": page,
            "nav": "review",
            "task_id": task_id,
            "form": form,
            "reason_codes": REASON_CODES,
            "errors": errors.summary(),
            "field_errors": errors.by_field,
        },
        status_code=400,
    )


def _show_task(
    request: Request,
    page: PageSession,
    task_id: uuid.UUID,
    *,
    purpose: Purpose,
    form: dict[str, str],
    decision_errors: FormErrors | None = None,
) -> Response:
    """The task page through the service (one ``linkage.review.show``), with the decision
    form's errors, if any."""
    database, store, policy = services(request)
    shown: casework.ShownTask | None = None
    refusal: str | None = None
    with database.transaction() as session:
        try:
            shown = casework.review_task(
                session, store, policy, page.active.caller(), task_id, purpose
            )
        except PolicyNotPublishedError:
            return _no_policy(request, page)
        except casework.ReviewRefusedError as refused:
            refusal = refused.reason  # audited; commits with the transaction
        except casework.ReviewTaskNotFoundError:
            return _missing(request, page)
    if refusal == PURPOSE_REFERRAL_INVALID:
        errors = FormErrors()
        errors.add(
            "referral_reference",
            "Enter the reference of a current referral about one of these records' people",
        )
        return _purpose_again(request, page, task_id, form, errors)
    if shown is None:
        return _refused(request, page)
    detail = shown.detail
    decision_errors = decision_errors or FormErrors()
    return render(
        request,
        "review_task.html",
        {
            "page": page,
            "nav": "review",
            "width": "full",
            "task": detail,
            "kind": KIND_LABELS.get(detail["kind"], detail["kind"]),
            "records": detail["records"],
            "rows": comparison_rows(detail["records"], shown.withheld),
            "withheld": shown.withheld,
            "evidence": sorted(detail["weights"].items(), key=lambda kv: -abs(kv[1])),
            "explanations": [p.strip() for p in detail["explanation"].split(";") if p.strip()],
            "decided": detail["decision"],
            "decision_labels": DECISION_LABELS,
            "reason_labels": REASON_LABELS,
            "reason_items": _reason_items(),
            "purpose_form": {
                k: form.get(k, "") for k in ("purpose", "referral_reference", "purpose_text")
            },
            "form": form,
            "reason_max": REASON_MAX,
            "errors": decision_errors.summary(),
            "field_errors": decision_errors.by_field,
        },
        status_code=400 if decision_errors else 200,
    )


@dataclass(frozen=True)
class Row:
    """One line of the side-by-side table: a field (or a withheld group) of both records."""

    group: str
    field: str | None
    left: str
    right: str
    differs: bool


def _side(record: dict[str, Any], withheld: list[str], group: str, field: str) -> str | None:
    """The value as shown, or None when the group is withheld for this record."""
    if group in withheld:
        return None
    return show((record.get(group) or {}).get(field))


def comparison_rows(records: list[dict[str, Any]], withheld: dict[str, list[str]]) -> list[Row]:
    """Both records' review groups field by field. A group withheld on both sides is one
    row naming it; ``differs`` only where both records hold a value shown to the caller and
    the two are not the same (a value one agency did not record is no contradiction)."""
    left, right = records
    hidden_l, hidden_r = withheld.get(left["id"], []), withheld.get(right["id"], [])
    rows: list[Row] = []
    for group in reviewing.REVIEW_GROUPS:
        if group in hidden_l and group in hidden_r:
            rows.append(Row(group, None, "Withheld", "Withheld", False))
            continue
        fields = dict.fromkeys([*(left.get(group) or {}), *(right.get(group) or {})])
        if not fields:
            rows.append(Row(group, None, "Not recorded", "Not recorded", False))
        for name in fields:
            a, b = _side(left, hidden_l, group, name), _side(right, hidden_r, group, name)
            compared = {a, b}.isdisjoint({None, NOT_RECORDED})
            differs = compared and a != b
            rows.append(Row(group, name, a or "Withheld", b or "Withheld", differs))
    return rows


# -- the decision ----------------------------------------------------------------------------


def read_decision(form: dict[str, str], errors: FormErrors) -> tuple[str, str, str] | None:
    """Decision, reason code and reason from the form, or None with fixed-text errors."""
    decision = form.get("decision", "")
    code = form.get("reason_code", "")
    reason = form.get("reason", "").strip()
    if decision not in reviewing.DECISIONS:
        errors.add("decision", "Select whether the two records are the same person")
    if code not in REASON_LABELS:
        errors.add("reason_code", "Select the main reason for your decision")
    elif decision in reviewing.DECISIONS and code not in reviewing.REASON_CODES[decision]:
        errors.add(
            "reason_code",
            f"Select a reason that goes with ‘{DECISION_LABELS[decision].lower()}’",
        )
    if not reason:
        errors.add("reason", "Enter the reason for your decision")
    elif len(reason) > REASON_MAX:
        errors.add("reason", f"The reason must be {REASON_MAX:,} characters or fewer")
    return None if errors else (decision, code, reason)


@router.post("/review/{task_id}/decision")
def decide_page(request: Request, task_id: uuid.UUID, page: SignedIn, form: FormData) -> Response:
    check_csrf(request, page, form)
    purpose_errors = FormErrors()
    purpose = read_purpose(form, purpose_errors)
    errors = FormErrors()
    chosen = read_decision(form, errors)
    outcome: dict[str, Any] | None = None
    failed: str | None = None
    if chosen is not None:
        decision, code, reason = chosen
        database, store, policy = services(request)
        with database.transaction() as session:
            try:
                made = casework.decide_task(
                    session,
                    store,
                    policy,
                    page.active.caller(),
                    task_id,
                    decision=decision,
                    reason_code=code,
                    reason=reason,
                )
            except PolicyNotPublishedError:
                failed = "policy"
            except casework.ReviewRefusedError:
                failed = "refused"  # audited; commits with the transaction
            except casework.ReviewTaskNotFoundError:
                failed = "missing"
            except casework.ReasonCodeError:  # read_decision checks the pair first
                errors.add("reason_code", "Select a reason that goes with your decision")
            else:
                outcome = {
                    "decision": DECISION_LABELS[decision],
                    "reason": REASON_LABELS[code],
                    "decision_id": made.id,
                }
    if failed is not None:
        answer = {"policy": _no_policy, "refused": _refused, "missing": _missing}[failed]
        return answer(request, page)
    if outcome is None:
        if purpose is None:  # the hidden fields were lost: ask for the purpose again
            return _purpose_again(request, page, task_id, form, purpose_errors)
        return _show_task(
            request, page, task_id, purpose=purpose, form=form, decision_errors=errors
        )
    return render(request, "review_decided.html", {"page": page, "nav": "review", **outcome})
