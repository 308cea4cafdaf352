"""Reading the audit log, for auditors: the one place the API (:mod:`mash_hub.web.audit`) and
the auditor's pages (:mod:`mash_hub.web.pages.audit`) get entries, permission and the audit of
their own use of the log from, so the two cannot drift apart.

* :func:`permitted` asks the compiled policy for ``audit_read`` on ``audit_log``; a refusal is
  recorded as ``authz.denied`` (in the caller's unit of work, which commits it).
* :class:`Filters` are ids, codes and times only (never names), checked here.
* :func:`query_entries` pages through chained entries in chain order and records one
  ``audit.query`` entry with the filters and the number of entries returned;
  :func:`find_entry` does the same for a single entry.
* :func:`start_export` records the ``audit.export`` entry (before the first byte is sent)
  and :func:`export_chunks` streams the CSV or JSON body through a server-side cursor;
* :func:`unusual_window` checks a report's window and :func:`unusual_report` runs the
  unusual-access report, recorded as ``audit.unusual``; :func:`unusual_actors` names its
  findings' actors as they were then, and :func:`named_report` puts those names in the
  report's JSON form (what the API returns), so page and API name actors alike;
* :func:`run_verification` / :func:`record_verification`: the chain check and its
  ``audit.verify`` entry.

Nothing here commits: the request owns the transaction.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.orm import Session

from mash_hub import audit as audit_log
from mash_hub.audit import AuditEvent
from mash_hub.audit.checkpoint import CheckpointFileError, latest, load_checkpoints
from mash_hub.audit.models import AuditEntry
from mash_hub.audit.reports import (
    BreakGlassUse,
    DenialBurst,
    InvalidAuditArgumentError,
    OutOfHoursView,
    UnreferredViews,
    UnusualAccessReport,
    VolumeOutlier,
    audit_time,
    unusual_access,
)
from mash_hub.audit.verify import Problem as ChainProblem
from mash_hub.audit.verify import VerifyReport, verify_chain
from mash_hub.authz.policy import Caller, Decisions
from mash_hub.crypto.errors import KeyConfigError
from mash_hub.crypto.signing import AuditVerifyKey, load_signing_key
from mash_hub.db.engine import Database
from mash_hub.settings import Settings
from mash_hub.users.history import ActorResolver, AuditedAct

AUDIT_READ = "audit_read"

# Actor ids are namespaced ids (user:<uuid>, oidc:<sub>, client:<uuid>, cli:<login>): printable
# ASCII without spaces, so a filter cannot carry a sentence (or a name typed by mistake).
ACTOR_PATTERN = r"^[!-~]{1,200}$"
ACTION_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$"
ACTION_PREFIX_PATTERN = r"^[a-z][a-z0-9_.]{0,99}$"

Order = Literal["asc", "desc"]


def audit_context(caller: Caller, decisions: Decisions) -> dict[str, Any]:
    """What every entry about the auditor's use of the log records of them."""
    return {"role": caller.role, "agency": caller.agency, "policy_version": decisions.version}


def permitted(session: Session, decisions: Decisions, caller: Caller, requested: str) -> bool:
    """Whether the caller may read the audit log; a refusal is audited (``authz.denied``)."""
    if decisions.allows(caller, AUDIT_READ):
        return True
    audit_log.record(
        session,
        AuditEvent(
            caller.user_id,
            "authz.denied",
            "audit_log",
            None,
            {
                "reason": "role_not_permitted",
                "requested": requested,
                **audit_context(caller, decisions),
            },
        ),
    )
    return False


@dataclass(frozen=True)
class Filters:
    """What an auditor may filter on: an actor id, a person id, an action (or its prefix) and
    a time range (``since`` inclusive, ``until`` exclusive, UTC)."""

    actor: str | None = None
    person_id: uuid.UUID | None = None
    action: str | None = None
    action_prefix: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None

    @classmethod
    def of(
        cls,
        *,
        actor: str | None = None,
        person_id: uuid.UUID | None = None,
        action: str | None = None,
        action_prefix: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> Filters:
        """Checked filters, or :class:`InvalidAuditArgumentError` naming the bad one."""
        for field, value, pattern in (
            ("actor", actor, ACTOR_PATTERN),
            ("action", action, ACTION_PATTERN),
            ("action_prefix", action_prefix, ACTION_PREFIX_PATTERN),
        ):
            if value is not None and (len(value) > 200 or not re.fullmatch(pattern, value)):
                raise InvalidAuditArgumentError(field, f"{field} is not in the right form", "form")
        start, end = audit_time(since, "since"), audit_time(until, "until")
        if start is not None and end is not None and start >= end:
            raise InvalidAuditArgumentError("since", "since must be before until", "range")
        return cls(actor, person_id, action, action_prefix, start, end)

    def where(self) -> list[ColumnElement[bool]]:
        clauses: list[ColumnElement[bool]] = []
        if self.actor is not None:
            clauses.append(AuditEntry.actor == self.actor)
        if self.person_id is not None:
            pid = str(self.person_id)
            clauses.append(
                or_(
                    and_(AuditEntry.subject_type == "person", AuditEntry.subject_id == pid),
                    AuditEntry.details["person_id"].astext == pid,
                )
            )
        if self.action is not None:
            clauses.append(AuditEntry.action == self.action)
        if self.action_prefix is not None:
            clauses.append(AuditEntry.action.startswith(self.action_prefix, autoescape=True))
        if self.since is not None:
            clauses.append(AuditEntry.occurred_at >= self.since)
        if self.until is not None:
            clauses.append(AuditEntry.occurred_at < self.until)
        return clauses

    def audit_fields(self) -> dict[str, Any]:
        """The filters given, for the audit entry (ids, codes and times only)."""
        fields = {
            "actor": self.actor,
            "person_id": None if self.person_id is None else str(self.person_id),
            "action": self.action,
            "action_prefix": self.action_prefix,
            "since": None if self.since is None else self.since.isoformat(),
            "until": None if self.until is None else self.until.isoformat(),
        }
        return {k: v for k, v in fields.items() if v is not None}


def columns() -> list[Any]:
    return list(AuditEntry.__table__.columns)


def entry_dict(row: Any) -> dict[str, Any]:
    """A row of ``audit_log`` as JSON-compatible values (bytes as hex, times in UTC)."""
    out: dict[str, Any] = {}
    for key, value in row._mapping.items():
        if isinstance(value, bytes | memoryview):
            out[key] = bytes(value).hex()
        elif isinstance(value, dt.datetime):
            out[key] = value.astimezone(dt.UTC).isoformat(timespec="microseconds")
        elif isinstance(value, uuid.UUID):
            out[key] = str(value)
        else:
            out[key] = value
    return out


def _with_actors(session: Session, found: list[Any]) -> list[dict[str, Any]]:
    """Rows as dicts, each with its actor's name, role and agency as they were then."""
    people = ActorResolver(session).describe(
        AuditedAct(row.actor, row.occurred_at, row.details) for row in found
    )
    return [{**entry_dict(row), **who.as_dict()} for row, who in zip(found, people, strict=True)]


@dataclass(frozen=True)
class EntriesPage:
    rows: list[dict[str, Any]]
    next_cursor: int | None
    audit_seq: int


def query_entries(
    session: Session,
    decisions: Decisions,
    caller: Caller,
    filters: Filters,
    *,
    after: int | None = None,
    limit: int = 100,
    order: Order = "asc",
) -> EntriesPage | None:
    """A page of chained entries matching ``filters`` in chain order (``after``: the last
    ``chain_seq`` of the previous page), recorded as one ``audit.query``; None when the
    caller may not read the log (the refusal recorded as ``authz.denied``)."""
    if not permitted(session, decisions, caller, "audit.query"):
        return None
    position = AuditEntry.chain_seq
    stmt = select(*columns()).where(*filters.where(), position.is_not(None))
    if order == "asc":
        stmt = stmt.order_by(position)
        if after is not None:
            stmt = stmt.where(position > after)
    else:
        stmt = stmt.order_by(position.desc())
        if after is not None:
            stmt = stmt.where(position < after)
    found = list(session.execute(stmt.limit(limit + 1)))
    more = len(found) > limit
    rows = _with_actors(session, found[:limit])
    seq = audit_log.record(
        session,
        AuditEvent(
            caller.user_id,
            "audit.query",
            "audit_log",
            None,
            {
                **audit_context(caller, decisions),
                "filters": filters.audit_fields(),
                "after": after,
                "limit": limit,
                "order": order,
                "rows": len(rows),
            },
        ),
    )
    return EntriesPage(rows, rows[-1]["chain_seq"] if more else None, seq)


@dataclass(frozen=True)
class FoundEntry:
    row: dict[str, Any] | None
    audit_seq: int


def find_entry(
    session: Session, decisions: Decisions, caller: Caller, seq: int
) -> FoundEntry | None:
    """The entry ``seq`` (None in ``row`` when there is none), recorded as one
    ``audit.query`` naming it; None when the caller may not read the log."""
    if not permitted(session, decisions, caller, "audit.query"):
        return None
    found = list(session.execute(select(*columns()).where(AuditEntry.seq == seq)))
    rows = _with_actors(session, found)
    audit_seq = audit_log.record(
        session,
        AuditEvent(
            caller.user_id,
            "audit.query",
            "audit_log",
            str(seq),
            {**audit_context(caller, decisions), "filters": {"seq": seq}, "rows": len(rows)},
        ),
    )
    return FoundEntry(rows[0] if rows else None, audit_seq)


# -- verification ----------------------------------------------------------------------------

verify_lock = threading.Lock()


def _verify_key(settings: Settings) -> AuditVerifyKey | None:
    try:
        return load_signing_key(settings, create=False).verify_key()
    except KeyConfigError:
        return None  # fine while there are no checkpoints; otherwise reported as a problem


def run_verification(database: Database, settings: Settings, scope: str) -> VerifyReport:
    """The chain check; ``since_checkpoint`` starts from the newest signed checkpoint."""
    directory = settings.resolved_audit_checkpoint_dir
    try:
        found = load_checkpoints(database.engine, directory)
    except CheckpointFileError as exc:
        report = VerifyReport()
        report.problems.append(ChainProblem(None, "checkpoint_file", str(exc)))
        return report
    start = latest(found) if scope == "since_checkpoint" else None
    return verify_chain(
        database.engine, checkpoints=found, verify_key=_verify_key(settings), start=start
    )


def record_verification(
    session: Session, decisions: Decisions, caller: Caller, scope: str, report: VerifyReport
) -> int:
    """The ``audit.verify`` entry of a verification run (its outcome, no more)."""
    problem = report.problem
    return audit_log.record(
        session,
        AuditEvent(
            caller.user_id,
            "audit.verify",
            "audit_log",
            None,
            {
                **audit_context(caller, decisions),
                "scope": scope,
                "ok": report.ok,
                "entries_checked": report.entries,
                "last_seq": report.last_seq,
                "problem": None if problem is None else {"seq": problem.seq, "kind": problem.kind},
            },
        ),
    )


# -- export ----------------------------------------------------------------------------------

EXPORT_BATCH = 2000
ExportFormat = Literal["csv", "json"]


@dataclass(frozen=True)
class ExportStart:
    """An export the caller may stream: its ``audit.export`` entry, the chain position it
    covers, and the query for its rows (oldest first)."""

    audit_seq: int
    through_chain_seq: int
    statement: Select[Any]


def start_export(
    session: Session, decisions: Decisions, caller: Caller, filters: Filters, fmt: ExportFormat
) -> ExportStart | None:
    """Record the ``audit.export`` entry of an export of the entries chained so far that
    match ``filters``; the transaction must commit before the first byte is sent. None when
    the caller may not read the log (the refusal recorded)."""
    if not permitted(session, decisions, caller, "audit.export"):
        return None
    through = int(session.scalar(select(func.max(AuditEntry.chain_seq))) or 0)
    seq = audit_log.record(
        session,
        AuditEvent(
            caller.user_id,
            "audit.export",
            "audit_log",
            None,
            {
                **audit_context(caller, decisions),
                "filters": filters.audit_fields(),
                "format": fmt,
                "through_chain_seq": through,
            },
        ),
    )
    statement = (
        select(*columns())
        .where(*filters.where(), AuditEntry.chain_seq.between(1, through))
        .order_by(AuditEntry.chain_seq)
    )
    return ExportStart(seq, through, statement)


def export_chunks(
    database: Database, stmt: Select[Any], fmt: str, *, batch: int = EXPORT_BATCH
) -> Iterator[bytes]:
    """The export body, one batch of rows per chunk, read through a server-side cursor in
    its own transaction (the entry of :func:`start_export` is committed by then)."""
    with database.transaction() as session:
        result = session.execute(stmt, execution_options={"yield_per": batch})
        first = True
        if fmt == "json":
            yield b"["
        for rows in result.partitions():
            out = io.StringIO()
            if fmt == "csv":
                writer = csv.writer(out, lineterminator="\n")
                if first:
                    writer.writerow(result.keys())
                for row in rows:
                    values = entry_dict(row)
                    values["details"] = json.dumps(
                        values["details"], sort_keys=True, ensure_ascii=False
                    )
                    writer.writerow(values.values())
            else:
                for row in rows:
                    out.write("\n" if first else ",\n")
                    out.write(json.dumps(entry_dict(row), sort_keys=True, ensure_ascii=False))
                    first = False
            first = False
            yield out.getvalue().encode()
        if fmt == "json":
            yield b"\n]\n"
        elif first:
            yield (",".join(result.keys()) + "\n").encode()


# -- unusual access --------------------------------------------------------------------------

MAX_UNUSUAL_DAYS = 366
DEFAULT_UNUSUAL_DAYS = 30
MAX_THRESHOLD = 100_000


def unusual_window(
    since: dt.datetime | None,
    until: dt.datetime | None,
    working_hours: tuple[int, int],
) -> tuple[dt.datetime, dt.datetime]:
    """The report's window in UTC (default: the 30 days before now), or
    :class:`InvalidAuditArgumentError` naming what is wrong (never quoting a value)."""
    end = audit_time(until, "until") or dt.datetime.now(dt.UTC)
    start = audit_time(since, "since") or end - dt.timedelta(days=DEFAULT_UNUSUAL_DAYS)
    if start >= end:
        raise InvalidAuditArgumentError("since", "since must be before until", "range")
    if end - start > dt.timedelta(days=MAX_UNUSUAL_DAYS):
        raise InvalidAuditArgumentError(
            "since", f"the window is at most {MAX_UNUSUAL_DAYS} days", "range"
        )
    if working_hours[0] >= working_hours[1]:
        raise InvalidAuditArgumentError(
            "working_start", "the working day must start before it ends", "range"
        )
    return start, end


def unusual_report(
    session: Session,
    decisions: Decisions,
    caller: Caller,
    since: dt.datetime,
    until: dt.datetime,
    *,
    timezone: str,
    working_hours: tuple[int, int],
    volume_threshold: int,
    denial_threshold: int,
) -> UnusualAccessReport | None:
    """The unusual-access report for ``[since, until)``, recorded as ``audit.unusual``; None
    when the caller may not read the log (the refusal recorded). A time zone PostgreSQL does
    not know raises :class:`InvalidAuditArgumentError` before anything runs."""
    if not permitted(session, decisions, caller, "audit.unusual"):
        return None
    return unusual_access(
        session,
        actor=caller.user_id,
        since=since,
        until=until,
        working_hours=working_hours,
        timezone=timezone,
        volume_threshold=volume_threshold,
        denial_threshold=denial_threshold,
        audit_action="audit.unusual",
        audit_context=audit_context(caller, decisions),
    )


Finding = VolumeOutlier | OutOfHoursView | BreakGlassUse | UnreferredViews | DenialBurst


def first_seq(finding: Finding) -> int:
    """The entry a finding's actor is named by: its own, or the first of its entries."""
    if isinstance(finding, OutOfHoursView | BreakGlassUse):
        return finding.seq
    return min(finding.seqs)


def unusual_actors(session: Session, report: UnusualAccessReport) -> dict[int, dict[str, Any]]:
    """Each finding's actor as the audit log shows them (name, role and agency as they were
    at the finding's first entry, see :func:`first_seq`), keyed by that entry's ``seq``.
    Read after :func:`unusual_report` in the same transaction: no further audit entry."""
    findings: list[Finding] = [
        *report.volume_outliers,
        *report.out_of_hours,
        *report.break_glass,
        *report.unreferred,
        *report.denials,
    ]
    wanted = {first_seq(f) for f in findings}
    if not wanted:
        return {}
    found = list(
        session.execute(
            select(AuditEntry.seq, AuditEntry.actor, AuditEntry.occurred_at, AuditEntry.details)
            .where(AuditEntry.seq.in_(wanted))
            .order_by(AuditEntry.seq)
        )
    )
    people = ActorResolver(session).describe(
        AuditedAct(row.actor, row.occurred_at, row.details) for row in found
    )
    return {
        row.seq: {"actor": row.actor, **who.as_dict()}
        for row, who in zip(found, people, strict=True)
    }


_FINDING_LISTS = ("volume_outliers", "out_of_hours", "break_glass", "unreferred", "denials")


def named_report(report: UnusualAccessReport, people: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """The report's JSON form with each finding's actor named (``actor_kind``, ``actor_name``,
    ``actor_role``, ``actor_agency``) from :func:`unusual_actors`: no further audit entry."""
    document = report.as_dict()
    for name in _FINDING_LISTS:
        findings: list[Finding] = getattr(report, name)
        for item, finding in zip(document["findings"][name], findings, strict=True):
            who = people[first_seq(finding)]
            item.update({k: v for k, v in who.items() if k != "actor"})
    return document
