"""Data-quality issues over HTTP: list, show, correct, and a feed's report.

The same services as ``mash-hub quality`` (:mod:`mash_hub.quality.service`). Listing and the
report hold no personal data, and are limited to the source agencies whose ``quality`` group
the caller's role may read (a feed's owner and MASH officers in the baseline). Showing or
correcting a value needs the ``quality`` group and the field's own group of that source;
refusals are audited (``authz.denied``) and commit before the error is answered. No error
body carries a value from the request.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from mash_hub import audit as audit_log
from mash_hub.audit import AuditEvent
from mash_hub.authz.policy import Caller, Decisions, PolicyNotPublishedError
from mash_hub.authz.refusals import record_refusal
from mash_hub.authz.vocabulary import SOURCES
from mash_hub.feeds.definition import FeedDefinitionError, feed_folders, get_feed
from mash_hub.matching.incremental import has_index, link_records
from mash_hub.persons.store import QUALITY, PersonStore
from mash_hub.quality.report import feed_report
from mash_hub.quality.service import (
    Correction,
    CorrectionInvalidError,
    QualityDeniedError,
    QualityError,
    correct_issue,
    get_issue,
    list_issues,
    show_issue,
)
from mash_hub.web.deps import CurrentPrincipal
from mash_hub.web.errors import ApiProblemError, problem_doc
from mash_hub.web.persons import RESPONSES as PERSON_RESPONSES
from mash_hub.web.persons import policy_not_published, services
from mash_hub.web.referrals import referral_linkage_model

_RID = "3f0c2a9e6b1d4c57"
DENIED_DETAIL = "not allowed to see data quality of these records"
DENIED_CODE = "quality_not_permitted"


def _doc(status: int, title: str, detail: str, code: str, what: str) -> dict[str, Any]:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return problem_doc(what, body | {"code": code, "request_id": _RID})


RESPONSES: dict[int | str, dict[str, Any]] = {
    403: _doc(
        403,
        "Forbidden",
        DENIED_DETAIL,
        DENIED_CODE,
        "The caller's role may not read the `quality` group (or the field's group) of these "
        "records' source agency; the refusal is audited",
    ),
    503: PERSON_RESPONSES[503],
}
NOT_FOUND = _doc(404, "Not Found", "no such quality issue", "quality_issue_not_found", "No issue")
CONFLICT = _doc(
    409,
    "Conflict",
    "the quality issue is not open",
    "quality_issue_not_open",
    "Already corrected or superseded by a newer version of the record",
)
STILL_INVALID = _doc(
    422,
    "Unprocessable Content",
    "the corrected value is still invalid",
    "correction_invalid",
    "The value does not standardise either (the detail names the rule); nothing changed",
)

router = APIRouter(tags=["data quality"], responses=RESPONSES)


class IssueOut(BaseModel):
    id: uuid.UUID
    record_id: uuid.UUID = Field(description="The record version the issue is on.")
    feed: str
    source_agency: str
    field: str = Field(description="The schema field, e.g. `nhs_number`, `addresses[0].postcode`.")
    code: str = Field(description="Why the value failed validation.")
    status: str = Field(description="open, corrected or superseded.")
    created_at: dt.datetime
    resolved_at: dt.datetime | None
    corrected_record_id: uuid.UUID | None


class IssueList(BaseModel):
    count: int
    issues: list[IssueOut]


class IssueDetail(IssueOut):
    raw: str | None = Field(description="The value as the agency sent it, for correction.")


class CorrectionIn(BaseModel):
    value: str = Field(min_length=1, max_length=500, description="The corrected value.")


class CorrectionOut(BaseModel):
    issue_id: uuid.UUID
    field: str
    old_record_id: uuid.UUID
    new_record_id: uuid.UUID = Field(description="The record's new version, with the value.")
    person_id: uuid.UUID | None
    open_issues_left: int
    linked: dict[str, Any] | None = Field(
        description="The incremental linkage report when the record had no person yet."
    )


def _decisions(session: Session, request: Request) -> Decisions:
    _, _, policy = services(request)
    try:
        return policy.for_session(session)
    except PolicyNotPublishedError:
        raise policy_not_published() from None


def _refuse(session: Session, caller: Caller, decisions: Decisions, requested: str) -> None:
    record_refusal(session, caller, decisions, requested, via="api")


def _forbidden() -> ApiProblemError:
    return ApiProblemError(403, DENIED_DETAIL, code=DENIED_CODE)


def _quality_sources(decisions: Decisions, caller: Caller) -> set[str]:
    return {s for s in SOURCES if QUALITY in decisions.mask(caller, s)}


@router.get("/quality-issues", summary="Data-quality issues", response_model=IssueList)
def list_quality_issues(
    request: Request,
    *,
    principal: CurrentPrincipal,
    feed: str | None = Query(None, max_length=64, description="Only this feed."),
    status: Literal["open", "corrected", "superseded", "all"] = "open",
    limit: int = Query(100, ge=1, le=1000),
) -> Any:
    """Issues of the source agencies whose `quality` group the caller may read: ids, field and
    reason, no value (so no purpose is needed)."""
    database, _, _ = services(request)
    caller = principal.caller()
    with database.transaction() as session:
        decisions = _decisions(session, request)
        sources = _quality_sources(decisions, caller)
        if not sources:
            _refuse(session, caller, decisions, "quality.list")
        else:
            items = list_issues(
                session,
                feed=feed,
                status=None if status == "all" else status,
                sources=sources,
                limit=limit,
            )
            out = IssueList(
                count=len(items), issues=[IssueOut.model_validate(i.as_dict()) for i in items]
            )
    if not sources:
        raise _forbidden()
    return out


@router.get(
    "/quality-issues/{issue_id}",
    summary="One issue with its raw value, to correct it",
    response_model=IssueDetail,
    responses={404: NOT_FOUND},
)
def get_quality_issue(request: Request, issue_id: uuid.UUID, *, principal: CurrentPrincipal) -> Any:
    """Decrypts the value as the agency sent it; audited as `quality.view` first."""
    database, store, _ = services(request)
    caller = principal.caller()
    problem: ApiProblemError | None = None
    with database.transaction() as session:
        decisions = _decisions(session, request)
        try:
            shown = show_issue(session, store, decisions, caller, issue_id, via="api")
        except QualityDeniedError:
            problem = _forbidden()
        except QualityError:
            problem = ApiProblemError(404, "no such quality issue", code="quality_issue_not_found")
    if problem is not None:
        raise problem
    return IssueDetail.model_validate(shown)


@router.post(
    "/quality-issues/{issue_id}/correction",
    summary="Correct one value: standardised, indexed and linked again",
    response_model=CorrectionOut,
    status_code=201,
    responses={404: NOT_FOUND, 409: CONFLICT, 422: STILL_INVALID},
)
def correct_quality_issue(
    request: Request, issue_id: uuid.UUID, body: CorrectionIn, *, principal: CurrentPrincipal
) -> Any:
    """A new version of the record with the standardised value and without the issue (it
    keeps its person, as an agency's update does; a record with no person yet is linked).
    Audited as `quality.correct` (field, reason, record ids; never the value)."""
    database, store, _ = services(request)
    caller = principal.caller()
    model = referral_linkage_model(request)
    problem: ApiProblemError | None = None
    done: Correction | None = None

    def link(session: Session, record_id: uuid.UUID) -> dict[str, Any] | None:
        if model is None or not has_index(session):
            return None
        return link_records(session, store, model, [record_id], actor=caller.user_id).as_dict()

    with database.transaction() as session:
        decisions = _decisions(session, request)
        try:
            exists = get_issue(session, issue_id)
        except QualityError:
            problem = ApiProblemError(404, "no such quality issue", code="quality_issue_not_found")
        else:
            done, problem = _correct(session, store, decisions, caller, exists.id, body.value, link)
    if problem is not None or done is None:
        raise problem or _forbidden()
    return CorrectionOut.model_validate(done.as_dict())


def _correct(  # noqa: PLR0917 - the route's unit of work, split out
    session: Session,
    store: PersonStore,
    decisions: Decisions,
    caller: Caller,
    issue_id: uuid.UUID,
    value: str,
    link: Any,
) -> tuple[Correction | None, ApiProblemError | None]:
    """Run the correction; a refusal is an answer, its audit entry still commits."""
    try:
        done = correct_issue(
            session, store, decisions, caller, issue_id, value, via="api", link=link
        )
    except QualityDeniedError:
        return None, _forbidden()
    except CorrectionInvalidError as exc:
        # The code names the rule the value broke (e.g. nhs_number_check_digit), not the value.
        return None, ApiProblemError(
            422, f"the corrected value is still invalid: {exc.code}", code="correction_invalid"
        )
    except QualityError:
        return None, ApiProblemError(
            409, "the quality issue is not open", code="quality_issue_not_open"
        )
    return done, None


@router.get(
    "/feeds/{feed}/quality-report",
    summary="A feed's data-quality report (no personal values)",
    responses={404: _doc(404, "Not Found", "no such feed", "feed_not_found", "No such feed")},
)
def quality_report(
    request: Request,
    feed: str,
    *,
    principal: CurrentPrincipal,
    period: Literal["day", "week", "month"] = "day",
) -> dict[str, Any]:
    """Rates by reason, by field and over time, for callers whose role may read the `quality`
    group of the feed's source agency (its owner). Audited as `quality.report`."""
    database, _, _ = services(request)
    caller = principal.caller()
    try:
        settings = request.app.state.authenticator.settings
        agency = get_feed(feed, feed_folders([settings.feeds_dir])).agency
    except FeedDefinitionError:
        raise ApiProblemError(404, "no such feed", code="feed_not_found") from None
    with database.transaction() as session:
        decisions = _decisions(session, request)
        allowed = QUALITY in decisions.mask(caller, agency)
        if not allowed:
            _refuse(session, caller, decisions, "quality.report")
        else:
            report = feed_report(session, feed, period=period)
            audit_log.record(
                session,
                AuditEvent(
                    caller.user_id,
                    "quality.report",
                    "feed",
                    feed,
                    {"role": caller.role, "agency": caller.agency, "via": "api"},
                ),
            )
    if not allowed:
        raise _forbidden()
    return report
