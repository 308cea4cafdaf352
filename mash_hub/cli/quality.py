"""``mash-hub quality``: values of indexed records that failed validation, their correction and
a per-feed report. Works like ``mash-hub quarantine``: listing and the report hold no personal
data; ``show`` and ``correct`` act for a member of staff (``--as``), checked against the
policy and audited with that user as actor."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from sqlalchemy.orm import Session

from mash_hub.audit import AuditEvent
from mash_hub.audit import record as audit
from mash_hub.cli._common import ExitCode, actor, console, emit_json, fail, open_hub, settings
from mash_hub.cli.link import AS_OPTION, policy_decisions, staff_caller
from mash_hub.matching.incremental import has_index, link_records
from mash_hub.matching.model import LinkageModel, ModelMismatchError, model_path
from mash_hub.persons.store import PersonStore
from mash_hub.quality.models import STATUSES
from mash_hub.quality.report import feed_report
from mash_hub.quality.service import (
    CorrectionInvalidError,
    QualityDeniedError,
    QualityError,
    correct_issue,
    list_issues,
    show_issue,
)

app = typer.Typer(
    help="Values of indexed records that failed validation: list, show, correct; a report.",
    no_args_is_help=True,
)
JsonOption = Annotated[bool, typer.Option("--json", help="Print a JSON document for scripts.")]


def _issue_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        fail("the quality issue id must be a UUID", ExitCode.BAD_INPUT)


@app.command("list")
def list_command(
    feed: Annotated[str | None, typer.Option(help="Only this feed.")] = None,
    status: Annotated[str, typer.Option(help=f"{', '.join(STATUSES)} or all.")] = "open",
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100,
    as_json: JsonOption = False,
) -> None:
    """Issues with their record, field and reason (no personal data is shown)."""
    if status != "all" and status not in STATUSES:
        fail(f"--status must be one of {', '.join(STATUSES)} or all", ExitCode.BAD_INPUT)
    with open_hub() as (db, _provider), db.transaction() as session:
        items = [
            i.as_dict()
            for i in list_issues(
                session, feed=feed, status=None if status == "all" else status, limit=limit
            )
        ]
    if as_json:
        emit_json(items)
        return
    table = Table(title=f"Data-quality issues ({status})")
    for column in ("id", "feed", "record", "field", "reason", "status"):
        table.add_column(column)
    for item in items:
        table.add_row(
            item["id"], item["feed"], item["record_id"], item["field"], item["code"], item["status"]
        )
    console.print(table)


@app.command("show")
def show_command(
    issue: str, as_user: Annotated[str, AS_OPTION], as_json: JsonOption = False
) -> None:
    """Decrypt one issue's raw value to correct it, for a member of staff whose role may read
    the record's `quality` group and the field's own group (refusals audited)."""
    issue_id = _issue_id(issue)
    denied: str | None = None
    shown: dict[str, Any] = {}
    with open_hub() as (db, provider), db.transaction() as session:
        store = PersonStore.from_provider(provider)
        caller = staff_caller(session, as_user)
        decisions = policy_decisions(session)
        try:
            shown = show_issue(session, store, decisions, caller, issue_id, via="cli")
        except QualityError as exc:
            fail(str(exc), ExitCode.BAD_INPUT)
        except QualityDeniedError as exc:
            denied = str(exc)  # the refusal's audit entry commits with the transaction
    if denied is not None:
        fail(denied)
    if as_json:
        emit_json(shown)
    else:
        console.print(f"{shown['field']}: {shown['code']} (record {shown['record_id']})")
        console.print(f"  raw value = {shown['raw']!r}", highlight=False)


Linker = Callable[[Session, uuid.UUID], dict[str, Any] | None]


def _linker(model: Path, store: PersonStore) -> Linker | None:
    """Link a corrected record that has no person yet, when a model and a full run exist."""
    if not model.is_file():
        return None
    try:
        trained = LinkageModel.load(model)
    except ModelMismatchError:
        return None

    def link(session: Session, record_id: uuid.UUID) -> dict[str, Any] | None:
        if not has_index(session):
            return None
        return link_records(session, store, trained, [record_id], actor=actor()).as_dict()

    return link


@app.command("correct")
def correct_command(
    issue: str,
    value: Annotated[
        str, typer.Option("--value", help="The corrected value, as an agency would send it.")
    ],
    as_user: Annotated[str, AS_OPTION],
    link_model: Annotated[
        Path | None, typer.Option("--link-model", help="Trained linkage model JSON.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Correct one value: it is standardised (still invalid: nothing changes, exit 2), the
    record gets a new version with it, indexed again and linked if it has no person yet."""
    issue_id = _issue_id(issue)
    denied: str | None = None
    with open_hub() as (db, provider), db.transaction() as session:
        store = PersonStore.from_provider(provider)
        caller = staff_caller(session, as_user)
        decisions = policy_decisions(session)
        model = model_path(settings().data_dir, link_model or settings().linkage_model)
        link = _linker(model, store)
        try:
            done = correct_issue(
                session, store, decisions, caller, issue_id, value, via="cli", link=link
            )
        except QualityError as exc:
            fail(str(exc), ExitCode.BAD_INPUT)
        except CorrectionInvalidError as exc:
            fail(f"still invalid, nothing changed: {exc.code}", ExitCode.BAD_INPUT)
        except QualityDeniedError as exc:
            denied = str(exc)
    if denied is not None:
        fail(denied)
    if as_json:
        emit_json({"corrected": True, **done.as_dict()})
    else:
        console.print(
            f"Corrected {done.field}: record {done.new_record_id} (version of "
            f"{done.old_record_id}); {done.open_issues_left} open issue(s) left on it."
        )


@app.command("report")
def report_command(
    feed: Annotated[str, typer.Option("--feed", help="The feed to report on.")],
    period: Annotated[str, typer.Option(help="day, week or month.")] = "day",
    as_json: JsonOption = False,
) -> None:
    """A feed's data-quality report: rates by reason, by field and over time (no personal
    values). Audited as `quality.report`."""
    if period not in {"day", "week", "month"}:
        fail("--period must be day, week or month", ExitCode.BAD_INPUT)
    with open_hub() as (db, _provider), db.transaction() as session:
        report = feed_report(session, feed, period=period)  # type: ignore[arg-type]
        audit(
            session,
            AuditEvent(actor(), "quality.report", "feed", feed, {"period": period, "via": "cli"}),
        )
    if as_json:
        emit_json(report)
        return
    console.print(
        f"{feed}: {report['rows']:,} rows; {report['indexed']:,} indexed "
        f"({report['indexed_rate']:.2%}), {report['flagged']:,} with values that failed "
        f"validation ({report['flagged_rate']:.2%}), {report['quarantined']:,} quarantined "
        f"({report['quarantined_rate']:.2%})"
    )
    for title, key in (("reason", "by_reason"), ("field", "by_field")):
        table = Table(title=f"Issues by {title}")
        for column in (title, "issues", "per row"):
            table.add_column(column)
        for name, item in report[key].items():
            table.add_row(name, f"{item['issues']:,}", f"{item['rate']:.3%}")
        console.print(table)
    table = Table(title=f"Over time (per {period})")
    for column in ("from", "rows", "flagged", "quarantined", "issues"):
        table.add_column(column)
    for item in report["over_time"]:
        table.add_row(
            item["period_start"],
            f"{item['rows']:,}",
            f"{item['flagged']:,}",
            f"{item['quarantined']:,}",
            f"{item['issues']:,}",
        )
    console.print(table)
