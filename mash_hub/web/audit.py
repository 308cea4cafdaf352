"""The audit log over HTTP, for auditors: query, export, verify, unusual access.

Every route needs the policy's ``audit_read`` action on ``audit_log`` (the baseline grants it to
the ``auditor`` role only), asked of the compiled policy in the request's unit of work. A refusal
is audited (``authz.denied``) and answered 403; the auditor's own use of the log is audited as
``audit.query``, ``audit.export``, ``audit.verify`` and ``audit.unusual``, with the filters and
counts (ids, codes and times: the filters accept nothing else). The permission check, filters,
query and those entries live in :mod:`mash_hub.audit.access`, which the auditor's pages call too.

Audit entries hold ids, codes and counts, never plaintext personal data (free text is sealed
elsewhere; see :mod:`mash_hub.casework.view`), and these routes add nothing to them: they return
the stored columns as they are, with the hashes, so an export can be checked independently.

* ``GET /entries`` pages in chain order (``after`` is the last ``chain_seq`` of the previous
  page) over chained entries, so an entry committed late cannot be skipped. The
  ``person_id`` filter also matches ``person_id`` inside details (break-glass reviews), which
  no index covers: 0.4 s a page at a million entries; the other filters use indexes.
* ``GET /export`` streams CSV or JSON through a server-side cursor, a batch at a time. Its
  ``audit.export`` entry is committed *before* the first byte is sent (so nothing leaves
  unaudited), and the export covers the entries chained before the request. Measured
  at a million entries: 392 MB of CSV in 64 s, the whole test process under 170 MB RSS.
* ``POST /verify`` recomputes the hash chain (``mash_hub.audit.verify``). The whole log takes
  4.5-12 s per million entries on two cores (12 s measured through this route on a busy
  machine; 0.1 s for ``since_checkpoint`` with 100 entries after the checkpoint), so one
  verification runs at a time per process (another gets 409), and ``scope=since_checkpoint``
  checks only the entries after the newest signed checkpoint (milliseconds): the signed
  checkpoint vouches for the rest, but a rewrite before it is only found by a full run.
* ``GET /unusual`` is :func:`mash_hub.audit.reports.unusual_access` (the CLI's report; the
  staff-related check needs a staff directory and the keys, so it stays on the CLI), each
  finding's actor named as the auditor's page names them (name, role and agency as they were
  at the finding's first entry, :func:`mash_hub.audit.access.unusual_actors`).
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from mash_hub.audit.access import (
    ACTION_PATTERN,
    ACTION_PREFIX_PATTERN,
    ACTOR_PATTERN,
    MAX_THRESHOLD,
    ExportStart,
    Filters,
    export_chunks,
    named_report,
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
    MAX_SEQ,
    InvalidAuditArgumentError,
)
from mash_hub.authz.policy import AccessPolicy, Decisions, PolicyNotPublishedError
from mash_hub.db.engine import Database
from mash_hub.settings import Settings
from mash_hub.web.deps import CurrentPrincipal
from mash_hub.web.errors import ApiProblemError, problem_doc, problem_example

MAX_PAGE = 1000
FORBIDDEN_DETAIL = "not allowed to read the audit log"
FORBIDDEN_CODE = "audit_not_permitted"


# -- OpenAPI ---------------------------------------------------------------------------------


def _problem(description: str, status: int, detail: str, code: str, **extra: Any) -> Any:
    return problem_doc(description, problem_example(status, detail, code, **extra))


RESPONSES: dict[int | str, dict[str, Any]] = {
    403: _problem(
        "The caller's role may not read the audit log (audited as `authz.denied`)",
        403,
        FORBIDDEN_DETAIL,
        FORBIDDEN_CODE,
    ),
    422: _problem(
        "A filter is malformed; `errors` names it (never echoing the value)",
        422,
        "the request is not valid",
        "validation_failed",
        errors=[{"loc": ["query", "since"], "msg": "since must be before until", "type": "range"}],
    ),
    503: _problem(
        "No access policy is published (everything is denied until one is)",
        503,
        "no access policy is published",
        "policy_not_published",
    ),
}

router = APIRouter(prefix="/audit", tags=["audit"], responses=RESPONSES)


class AuditEntryOut(BaseModel):
    """One stored entry, as stored (with its hashes, hex)."""

    seq: int = Field(description="The entry's id; pages and exports are ordered by it.")
    chain_seq: int | None = Field(
        default=None, description="Its position in the hash chain, when the log records one."
    )
    entry_id: uuid.UUID
    occurred_at: dt.datetime
    actor: str = Field(description="Namespaced id: user:, oidc:, client:, cli: ...")
    actor_kind: str = Field(
        default="unknown",
        description="hub_user, partner_client, oidc_user, command_line or unknown.",
    )
    actor_name: str | None = Field(
        default=None,
        description="The actor's name when they acted (hub users: their login name then; "
        "partner clients: their agency's client); null when the hub knows none.",
    )
    actor_role: str | None = Field(default=None, description="Their role when they acted.")
    actor_agency: str | None = Field(default=None, description="Their agency when they acted.")
    action: str
    subject_type: str | None
    subject_id: str | None
    details: dict[str, Any] = Field(description="Ids, codes and counts only.")
    prev_hash: str | None
    entry_hash: str | None


class AuditPage(BaseModel):
    entries: list[AuditEntryOut]
    next_cursor: int | None = Field(
        description="Pass as `after` for the next page; null on the last page."
    )
    audit_seq: int = Field(description="The `audit.query` entry recording this query.")


class ProblemOut(BaseModel):
    seq: int | None = Field(description="The first bad entry's chain position.")
    kind: str = Field(description="missing, link, content, inserted, reordered, checkpoint ...")
    message: str


class VerifyRequest(BaseModel):
    scope: Literal["full", "since_checkpoint"] = Field(
        default="full",
        description="`full`: every entry from the first (4.5-12 s per million entries); "
        "`since_checkpoint`: only entries after the newest signed checkpoint.",
    )


class VerifyOut(BaseModel):
    ok: bool
    scope: Literal["full", "since_checkpoint"]
    entries_checked: int
    first_seq: int | None
    last_seq: int | None
    head_hash: str | None
    seconds: float
    checkpoints_checked: int
    latest_checkpoint_seq: int | None
    unsigned_tail: int = Field(description="Entries chain-checked but not yet signed.")
    unchained: int = Field(default=0, description="Committed entries not yet in the chain.")
    problem: ProblemOut | None = Field(description="The first bad entry, when not ok.")
    audit_seq: int = Field(description="The `audit.verify` entry recording this run.")


class NamedActorOut(BaseModel):
    """The finding's actor as the audit log names them, as they were at its first entry."""

    actor: str = Field(description="The actor id (`user:<id>`, `client:<id>`, `oidc:<sub>` ...).")
    actor_kind: str = Field(
        description="hub_user, partner_client, oidc_user, command_line or unknown."
    )
    actor_name: str | None = Field(description="Their name then; null when the hub knows none.")
    actor_role: str | None
    actor_agency: str | None


class VolumeOutlierOut(NamedActorOut):
    day: dt.date
    views: int
    peer_limit: float
    own_limit: float | None
    own_median: float
    reasons: list[str]
    seqs: list[int]


class OutOfHoursOut(NamedActorOut):
    seq: int
    person_id: str | None
    local_time: dt.datetime
    why: str


class BreakGlassOut(NamedActorOut):
    seq: int
    person_id: str | None
    occurred_at: dt.datetime
    view_id: str | None
    review_required: bool
    review_state: str
    reviewed_by: str | None
    review_outcome: str | None


class UnreferredOut(NamedActorOut):
    code: str | None
    views: int
    seqs: list[int]


class DenialBurstOut(NamedActorOut):
    day: dt.date
    denials: int
    reasons: dict[str, int]
    seqs: list[int]


class FindingsOut(BaseModel):
    volume_outliers: list[VolumeOutlierOut]
    out_of_hours: list[OutOfHoursOut]
    break_glass: list[BreakGlassOut]
    unreferred: list[UnreferredOut]
    denials: list[DenialBurstOut]
    staff_related: None = Field(
        default=None, description="Needs a staff directory and the keys: CLI only."
    )


class UnusualOut(BaseModel):
    since: dt.datetime
    until: dt.datetime
    timezone: str
    working_hours: list[int]
    volume_threshold: int
    denial_threshold: int
    rules: dict[str, str] = Field(description="Each finding's rule, in words.")
    counts: dict[str, int | None]
    audit_seq: int | None = Field(description="The `audit.unusual` entry of this report.")
    findings: FindingsOut


# -- filters ---------------------------------------------------------------------------------

ActorQ = Annotated[
    str | None,
    Query(pattern=ACTOR_PATTERN, description="Only entries by this actor id (e.g. `user:<id>`)."),
]
PersonQ = Annotated[
    uuid.UUID | None,
    Query(description="Only entries about this person (subject, or `person_id` in details)."),
]
ActionQ = Annotated[
    str | None, Query(pattern=ACTION_PATTERN, max_length=100, description="Exactly this action.")
]
ActionPrefixQ = Annotated[
    str | None,
    Query(
        pattern=ACTION_PREFIX_PATTERN,
        description="Actions starting with this, e.g. `person.` or `audit.`.",
    ),
]
SinceQ = Annotated[
    dt.datetime | None, Query(description="From this time (ISO 8601; UTC when no offset).")
]
UntilQ = Annotated[
    dt.datetime | None, Query(description="Before this time (ISO 8601; UTC when no offset).")
]


def _invalid(field: str, msg: str, kind: str) -> RequestValidationError:
    """A 422 problem naming the query parameter (the handler never echoes its value)."""
    return RequestValidationError([{"loc": ("query", field), "msg": msg, "type": kind}])


def _filters(**given: Any) -> Filters:
    """Checked filters, or a 422 naming the bad one."""
    try:
        return Filters.of(**given)
    except InvalidAuditArgumentError as bad:
        raise _invalid(bad.field, str(bad), bad.kind) from None


# -- authorisation ---------------------------------------------------------------------------

_policy_lock = threading.Lock()


def audit_services(request: Request) -> tuple[Database, AccessPolicy, Settings]:
    """The app's database, access policy (made lazily, shared with the other routers) and
    settings; no encryption keys are needed here."""
    state = request.app.state
    policy: AccessPolicy | None = getattr(state, "access_policy", None)
    if policy is None:
        with _policy_lock:
            policy = getattr(state, "access_policy", None)
            if policy is None:
                policy = state.access_policy = AccessPolicy()
    assert policy is not None
    return state.database, policy, state.authenticator.settings


def _decisions(policy: AccessPolicy, session: Session) -> Decisions:
    try:
        return policy.for_session(session)
    except PolicyNotPublishedError:
        raise ApiProblemError(
            503, "no access policy is published", code="policy_not_published"
        ) from None


def _forbidden() -> ApiProblemError:
    return ApiProblemError(403, FORBIDDEN_DETAIL, code=FORBIDDEN_CODE)


# -- routes ----------------------------------------------------------------------------------


@router.get("/entries", summary="Query the audit log", response_model=AuditPage)
def list_entries(
    request: Request,
    *,
    principal: CurrentPrincipal,
    actor: ActorQ = None,
    person_id: PersonQ = None,
    action: ActionQ = None,
    action_prefix: ActionPrefixQ = None,
    since: SinceQ = None,
    until: UntilQ = None,
    after: Annotated[
        int | None,
        Query(ge=0, le=MAX_SEQ, description="Cursor: the last `chain_seq` of the previous page."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Entries per page.")] = 100,
    order: Annotated[
        Literal["asc", "desc"], Query(description="`asc` oldest first, `desc` newest first.")
    ] = "asc",
) -> Any:
    """Entries matching every filter given, in chain order, a page at a time (cursor:
    `chain_seq`). Only chained entries are listed (an entry is chained within moments of its
    commit), so the order is final and paging never skips one. The query is audited as
    `audit.query` with its filters and the number of entries returned."""
    filters = _filters(
        actor=actor,
        person_id=person_id,
        action=action,
        action_prefix=action_prefix,
        since=since,
        until=until,
    )
    database, policy, _ = audit_services(request)
    caller = principal.caller()
    with database.transaction() as session:
        decisions = _decisions(policy, session)
        page = query_entries(
            session, decisions, caller, filters, after=after, limit=limit, order=order
        )
        if page is not None:
            return AuditPage(
                entries=[AuditEntryOut.model_validate(r) for r in page.rows],
                next_cursor=page.next_cursor,
                audit_seq=page.audit_seq,
            )
    raise _forbidden()


_CSV_EXAMPLE = (
    "seq,entry_id,occurred_at,actor,action,subject_type,subject_id,details,prev_hash,entry_hash\n"
    '41,6f1c…,2026-11-28T09:14:02.120000+00:00,user:2b7e…,person.view,person,9a41…,"{""role"": '
    '""social_worker"", …}",a3c9…,77d0…\n'
)


@router.get(
    "/export",
    summary="Export the audit log (streamed)",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "Matching entries, oldest first, with their hashes; `details` is a "
            "JSON string in CSV. Streamed: a failure part-way ends the body early (a JSON "
            "export is then not valid JSON).",
            "content": {
                "text/csv": {"schema": {"type": "string"}, "example": _CSV_EXAMPLE},
                "application/json": {
                    "schema": {
                        "type": "array",
                        "items": AuditEntryOut.model_json_schema(),
                    }
                },
            },
        }
    },
)
def export_entries(
    request: Request,
    *,
    principal: CurrentPrincipal,
    format: Annotated[
        Literal["csv", "json"], Query(description="`csv`, or `json` (one array).")
    ] = "csv",
    actor: ActorQ = None,
    person_id: PersonQ = None,
    action: ActionQ = None,
    action_prefix: ActionPrefixQ = None,
    since: SinceQ = None,
    until: UntilQ = None,
) -> Any:
    """Every entry matching the filters, streamed in batches (never all in memory). The
    `audit.export` entry (its `seq` is named in `Content-Disposition` and `X-Audit-Seq`) is
    committed before the first byte; the export holds, in chain order, the entries chained
    before the request (through the chain position in `X-Audit-Through-Chain-Seq`)."""
    filters = _filters(
        actor=actor,
        person_id=person_id,
        action=action,
        action_prefix=action_prefix,
        since=since,
        until=until,
    )
    database, policy, _ = audit_services(request)
    caller = principal.caller()
    with database.transaction() as session:
        decisions = _decisions(policy, session)
        started = start_export(session, decisions, caller, filters, format)
    if started is None:
        raise _forbidden()
    media = "text/csv; charset=utf-8" if format == "csv" else "application/json"
    return StreamingResponse(
        export_chunks(database, started.statement, format),
        media_type=media,
        headers=export_headers(started, format),
    )


def export_headers(started: ExportStart, fmt: str) -> dict[str, str]:
    """The download's headers: a file named after its ``audit.export`` entry, never stored."""
    return {
        "Content-Disposition": f'attachment; filename="audit-export-{started.audit_seq}.{fmt}"',
        "X-Audit-Seq": str(started.audit_seq),
        "X-Audit-Through-Chain-Seq": str(started.through_chain_seq),
        "Cache-Control": "no-store",
    }


_verify_lock = verify_lock


@router.post(
    "/verify",
    summary="Verify the audit log's hash chain",
    response_model=VerifyOut,
    responses={
        409: _problem(
            "A verification is already running in this process (see Retry-After)",
            409,
            "an audit verification is already running",
            "verify_in_progress",
        )
    },
)
def verify_log(
    request: Request,
    *,
    principal: CurrentPrincipal,
    body: Annotated[VerifyRequest | None, Body()] = None,
) -> Any:
    """Recompute the hash chain and check every signed checkpoint; `ok` false names the first
    bad entry. A full run takes 4.5-12 s per million entries; `since_checkpoint` checks
    only what the newest signed checkpoint does not cover. Audited as `audit.verify`."""
    scope = (body or VerifyRequest()).scope
    database, policy, settings = audit_services(request)
    caller = principal.caller()
    with database.transaction() as session:
        decisions = _decisions(policy, session)
        if permitted(session, decisions, caller, "audit.verify"):
            if not _verify_lock.acquire(blocking=False):
                raise ApiProblemError(
                    409,
                    "an audit verification is already running",
                    code="verify_in_progress",
                    headers={"Retry-After": "5"},
                )
            try:
                report = run_verification(database, settings, scope)
            finally:
                _verify_lock.release()
            result = report.as_dict()
            seq = record_verification(session, decisions, caller, scope, report)
            return VerifyOut.model_validate({**result, "scope": scope, "audit_seq": seq})
    raise _forbidden()


@router.get("/unusual", summary="Unusual-access report", response_model=UnusualOut)
def unusual(
    request: Request,
    *,
    principal: CurrentPrincipal,
    since: Annotated[
        dt.datetime | None, Query(description="Window start (default: 30 days before until).")
    ] = None,
    until: Annotated[dt.datetime | None, Query(description="Window end (default: now).")] = None,
    timezone: Annotated[
        str, Query(max_length=64, description="IANA time zone for days and working hours.")
    ] = "Europe/London",
    working_start: Annotated[int, Query(ge=0, le=23, description="Working day starts (h).")] = 8,
    working_end: Annotated[int, Query(ge=1, le=24, description="Working day ends (h).")] = 18,
    volume_threshold: Annotated[
        int, Query(ge=1, le=MAX_THRESHOLD, description="Least views in a day to flag.")
    ] = DEFAULT_VOLUME_THRESHOLD,
    denial_threshold: Annotated[
        int, Query(ge=1, le=MAX_THRESHOLD, description="Least denials in a day to flag.")
    ] = DEFAULT_DENIAL_THRESHOLD,
) -> Any:
    """Volume outliers, out-of-hours and break-glass views, views with no related referral,
    and repeated denials in the window (at most a year), with the `seq` of every entry behind
    a finding. Audited as `audit.unusual` (window, rules and finding counts only)."""
    hours = (working_start, working_end)
    try:
        start, end = unusual_window(since, until, hours)
        database, policy, _ = audit_services(request)
        caller = principal.caller()
        with database.transaction() as session:
            decisions = _decisions(policy, session)
            # Checks the time zone with PostgreSQL too (a bad one rolls back: nothing ran).
            report = unusual_report(
                session,
                decisions,
                caller,
                start,
                end,
                timezone=timezone,
                working_hours=hours,
                volume_threshold=volume_threshold,
                denial_threshold=denial_threshold,
            )
            if report is not None:
                people = unusual_actors(session, report)
                return UnusualOut.model_validate(named_report(report, people))
    except InvalidAuditArgumentError as bad:
        raise _invalid(bad.field, str(bad), bad.kind) from None
    raise _forbidden()
