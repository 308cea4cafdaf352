"""``mash-hub feeds``, ``ingest`` and ``quarantine``: agency extracts into the encrypted store."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress, TaskID
from rich.table import Table

from mash_hub.audit import AuditEvent
from mash_hub.audit import record as audit
from mash_hub.authz.vocabulary import source_fields
from mash_hub.cli._common import (
    ExitCode,
    actor,
    console,
    emit_json,
    fail,
    open_hub,
    progress_bar,
    settings,
)
from mash_hub.cli.link import (
    AS_OPTION,
    audit_refusal,
    link_after_ingest,
    policy_decisions,
    staff_caller,
)
from mash_hub.feeds.definition import (
    FeedDefinition,
    FeedDefinitionError,
    feed_folders,
    get_feed,
    load_definition,
    load_feeds,
)
from mash_hub.feeds.ingest import BatchReport, PreparePool, apply_records, ingest_file
from mash_hub.feeds.mapping import map_record
from mash_hub.feeds.quarantine import QuarantineError, get_open, list_rows, raw_values, resolve
from mash_hub.feeds.reader import MalformedFileError, RawRecord
from mash_hub.matching.model import model_path
from mash_hub.persons.store import PersonStore

feeds_app = typer.Typer(help="List, show and validate feed definitions.", no_args_is_help=True)
quarantine_app = typer.Typer(
    help="Rows that failed validation: list, inspect, correct and re-submit, or discard.",
    no_args_is_help=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print a JSON document for scripts.")]
FeedsDirOption = Annotated[
    Path | None,
    typer.Option("--feeds-dir", help="Extra folder of feed definitions (also MASH_FEEDS_DIR)."),
]


def _folders(feeds_dir: Path | None) -> list[Path]:
    return feed_folders([settings().feeds_dir, feeds_dir])


def _feed(name: str, feeds_dir: Path | None) -> FeedDefinition:
    try:
        return get_feed(name, _folders(feeds_dir))
    except FeedDefinitionError as exc:
        fail(str(exc), ExitCode.BAD_INPUT)


@feeds_app.command("list")
def list_feeds(feeds_dir: FeedsDirOption = None, as_json: JsonOption = False) -> None:
    """The feeds this hub can ingest."""
    try:
        feeds = load_feeds(_folders(feeds_dir))
    except FeedDefinitionError as exc:
        fail(str(exc), ExitCode.BAD_INPUT)
    if as_json:
        emit_json(
            [
                {
                    "name": f.name,
                    "agency": f.agency,
                    "format": f.format.type,
                    "source": str(f.source),
                }
                for f in feeds.values()
            ]
        )
        return
    table = Table(title="Feeds")
    for column in ("name", "agency", "format", "details", "definition"):
        table.add_column(column)
    for f in feeds.values():
        table.add_row(f.name, f.agency, f.format.type, ", ".join(f.details), str(f.source))
    console.print(table)


@feeds_app.command()
def show(name: str, feeds_dir: FeedsDirOption = None, as_json: JsonOption = False) -> None:
    """One feed definition, as the hub understood it."""
    definition = _feed(name, feeds_dir)
    document = definition.model_dump(mode="json", exclude_none=True)
    if as_json:
        emit_json(document)
    else:
        import yaml  # noqa: PLC0415

        console.print(f"# {definition.source}")
        console.print(yaml.safe_dump(document, sort_keys=False), highlight=False)


@feeds_app.command()
def validate(
    file: Annotated[Path, typer.Argument(help="A feed definition (YAML) to check.")],
    as_json: JsonOption = False,
) -> None:
    """Check a feed definition file before installing it. Exit 2 when invalid."""
    try:
        definition = load_definition(file)
    except FeedDefinitionError as exc:
        if as_json:
            emit_json({"valid": False, "error": str(exc)})
            raise typer.Exit(int(ExitCode.BAD_INPUT)) from None
        fail(str(exc), ExitCode.BAD_INPUT)
    if as_json:
        emit_json({"valid": True, "name": definition.name, "agency": definition.agency})
    else:
        console.print(f"{file}: feed {definition.name!r} is valid.")


def ingest(  # noqa: PLR0917 - one parameter per CLI option
    files: Annotated[list[Path], typer.Argument(help="Extract files of that feed.")],
    feed: Annotated[str, typer.Option("--feed", help="Which feed definition the files follow.")],
    feeds_dir: FeedsDirOption = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1, max=64, help="Worker processes (default: MASH_INGEST_WORKERS or CPUs)."
        ),
    ] = None,
    as_json: JsonOption = False,
    link: Annotated[
        bool | None,
        typer.Option(
            "--link/--no-link",
            help="Link the new records into persons afterwards (default: when a linkage model "
            "and a full linkage run exist).",
        ),
    ] = None,
    link_model: Annotated[
        Path | None, typer.Option("--link-model", help="Trained linkage model JSON.")
    ] = None,
) -> None:
    """Ingest agency extracts: standardise, encrypt, index; quarantine what fails validation.

    Each file is one atomic batch; a file already ingested adds nothing. A malformed file is
    rejected whole (exit 2) and the files after it are not read.
    """
    definition = _feed(feed, feeds_dir)
    for path in files:
        if not path.is_file():
            fail(f"{path} is not a file", ExitCode.BAD_INPUT)
    reports: list[BatchReport] = []
    processes = workers or settings().ingest_workers or os.cpu_count() or 1
    with open_hub() as (db, provider):
        store = PersonStore.from_provider(provider)
        for path in files:
            # The pool forks before the progress bar starts its refresh thread.
            pool = PreparePool(store, definition, processes) if processes > 1 else None
            with pool or contextlib.nullcontext(), progress_bar(disable=as_json) as bar:
                task = bar.add_task(f"Ingesting {path.name}", total=None)

                def advance(rows: int, bar: Progress = bar, task: TaskID = task) -> None:
                    bar.update(task, completed=rows)

                try:
                    report = ingest_file(
                        db, store, definition, path, actor=actor(), progress=advance, pool=pool
                    )
                except MalformedFileError as exc:
                    if as_json:
                        emit_json({"reports": [r.as_dict() for r in reports], "error": str(exc)})
                    fail(f"rejected, nothing ingested from it: {exc}", ExitCode.BAD_INPUT)
            reports.append(report)
            if not as_json:
                _print_report(report)
        batches = [r.batch_id for r in reports if r.status == "ingested" and r.batch_id]
        model = model_path(settings().data_dir, link_model or settings().linkage_model)
        linkage = link_after_ingest(db, store, batches, requested=link, model=model)
    if linkage and linkage.get("linked") and not as_json:
        for item in linkage["batches"]:
            console.print(
                f"linked {item['records']:,} new records: {item['joined_existing']:,} joined "
                f"existing persons, {item['new_persons']:,} new persons, "
                f"{item['review_pairs']:,} pairs for review"
            )
    if as_json:
        emit_json({"reports": [r.as_dict() for r in reports], "linkage": linkage})


def _print_report(report: BatchReport) -> None:
    if report.status == "already_ingested":
        console.print(f"{report.file}: already ingested as batch {report.batch_id}; nothing added.")
        return
    rate = report.rows / report.seconds if report.seconds else 0.0
    console.print(
        f"{report.file} ({report.feed}): {report.rows:,} rows in {report.seconds:.1f} s "
        f"({rate:,.0f}/s): [green]{report.accepted:,} accepted[/], {report.updated:,} updated, "
        f"{report.unchanged:,} unchanged, [yellow]{report.quarantined:,} quarantined[/]"
    )
    for code, count in report.quarantine_reasons.items():
        console.print(f"    quarantined {code}: {count:,}")
    if report.flagged:
        console.print(
            f"    {report.flagged:,} indexed with values that failed validation "
            "(`mash-hub quality list`):"
        )
        for code, count in report.quality_issues.items():
            console.print(f"    flagged {code}: {count:,}")


def _row_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        fail("the quarantined row id must be a UUID", ExitCode.BAD_INPUT)


@quarantine_app.command("list")
def list_quarantine(
    feed: Annotated[str | None, typer.Option(help="Only this feed.")] = None,
    status: Annotated[str, typer.Option(help="open, resubmitted, discarded or all.")] = "open",
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100,
    as_json: JsonOption = False,
) -> None:
    """Quarantined rows with their reasons and origin (no personal data is shown)."""
    with open_hub() as (db, _provider), db.transaction() as session:
        rows = list_rows(
            session, feed=feed, status=None if status == "all" else status, limit=limit
        )
        items: list[dict[str, Any]] = [
            {
                "id": str(r.id),
                "feed": r.feed,
                "file": r.file_name,
                "location": r.location,
                "reasons": r.reasons,
                "status": r.status,
                "batch_id": str(r.batch_id),
            }
            for r in rows
        ]
    if as_json:
        emit_json(items)
        return
    table = Table(title=f"Quarantine ({status})")
    for column in ("id", "feed", "file", "where", "reasons", "status"):
        table.add_column(column)
    for item in items:
        reasons = ", ".join(f"{r['field']}: {r['code']}" for r in item["reasons"])
        table.add_row(
            item["id"], item["feed"], item["file"], item["location"], reasons, item["status"]
        )
    console.print(table)


@quarantine_app.command("show")
def show_quarantined(
    row: str,
    as_user: Annotated[str, AS_OPTION],
    feeds_dir: FeedsDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Decrypt one quarantined row's raw values to correct it, for a member of staff.

    A quarantined row is the agency's raw row, not split into field groups: it may hold any
    field of the extract. So only a user whose role may read every field group of the feed's
    source agency (identity, identifiers, contact and all its detail groups) may see it;
    anyone else is refused, and the refusal audited. The view is audited (with the user as
    actor) before anything is decrypted.
    """
    row_id = _row_id(row)
    missing: list[str] = []
    with open_hub() as (db, provider), db.transaction() as session:
        store = PersonStore.from_provider(provider)
        caller = staff_caller(session, as_user)
        try:
            quarantined = get_open(session, row_id)
        except QuarantineError as exc:
            fail(str(exc), ExitCode.BAD_INPUT)
        source = _feed(quarantined.feed, feeds_dir).agency
        decisions = policy_decisions(session)
        missing = sorted(set(source_fields(source)) - decisions.mask(caller, source))
        subject = {"quarantined_row": str(row_id), "source": source}
        if missing:
            audit_refusal(session, caller, decisions, "quarantine.view", **subject)
        else:
            audit(
                session,
                AuditEvent(
                    caller.user_id,
                    "quarantine.view",
                    "quarantined_row",
                    str(row_id),
                    {
                        "role": caller.role,
                        "agency": caller.agency,
                        "policy_version": decisions.version,
                        "source": source,
                        "via": "cli",
                    },
                ),
            )
            try:
                values = raw_values(session, store.keys, quarantined)
            except QuarantineError as exc:
                fail(str(exc), ExitCode.BAD_INPUT)
        reasons = quarantined.reasons
    if missing:
        fail(
            f"the user's role ({caller.role}) may not read {', '.join(missing)} of {source} "
            "records, and a quarantined row may hold any of them (the refusal is audited)"
        )
    if as_json:
        emit_json({"id": str(row_id), "reasons": reasons, "raw": values})
    else:
        console.print(f"Reasons: {', '.join(r['field'] + ': ' + r['code'] for r in reasons)}")
        for key, value in values.items():
            console.print(f"  {key} = {value!r}", highlight=False)


def _set_path(data: dict[str, Any], dotted: str, value: str | None) -> None:
    if dotted in data:
        data[dotted] = value
        return
    target: Any = data
    parts = dotted.split(".")
    for part in parts[:-1]:
        if not isinstance(target, dict):
            fail(f"--set {dotted}: {part!r} is not an object in this row", ExitCode.BAD_INPUT)
        target = target.setdefault(part, {})
    if not isinstance(target, dict):
        fail(f"--set {dotted}: cannot set inside a non-object", ExitCode.BAD_INPUT)
    target[parts[-1]] = value


@quarantine_app.command()
def resubmit(
    row: str,
    corrections: Annotated[
        list[str] | None,
        typer.Option("--set", help="FIELD=VALUE (source field name or dotted path); repeatable."),
    ] = None,
    feeds_dir: FeedsDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Correct a quarantined row and ingest it; if it still fails, nothing changes (exit 2)."""
    row_id = _row_id(row)
    with open_hub() as (db, provider), db.transaction() as session:
        store = PersonStore.from_provider(provider)
        try:
            quarantined = get_open(session, row_id)
            values = raw_values(session, store.keys, quarantined)
        except QuarantineError as exc:
            fail(str(exc), ExitCode.BAD_INPUT)
        definition = _feed(quarantined.feed, feeds_dir)
        for item in corrections or []:
            name, sep, value = item.partition("=")
            if not sep or not name:
                fail(
                    f"--set takes FIELD=VALUE, got {len(item)} characters without '='",
                    ExitCode.BAD_INPUT,
                )
            _set_path(values, name, value or None)
        mapped = map_record(definition, RawRecord(quarantined.location, values))
        if not mapped.valid:
            problems = ", ".join(f"{r.field}: {r.code}" for r in mapped.all_reasons)
            if as_json:
                emit_json(
                    {"resubmitted": False, "reasons": [r.as_dict() for r in mapped.all_reasons]}
                )
                raise typer.Exit(int(ExitCode.BAD_INPUT))
            fail(f"still invalid, nothing changed: {problems}", ExitCode.BAD_INPUT)
        assert mapped.source_record_id is not None
        key = store.source_key(definition.name, mapped.source_record_id)
        ids, counts = apply_records(session, store, definition, quarantined.batch_id, {key: mapped})
        resolve(quarantined, "resubmitted", ids[0] if ids else None)
        audit(
            session,
            AuditEvent(
                actor(),
                "quarantine.resubmit",
                "quarantined_row",
                str(row_id),
                {"outcome": next(iter(counts)), "record_id": str(ids[0]) if ids else None},
            ),
        )
    outcome = next(iter(counts))
    if as_json:
        emit_json({"resubmitted": True, "outcome": outcome})
    else:
        console.print(f"Re-submitted: {outcome}.")


@quarantine_app.command()
def discard(
    row: str,
    reason: Annotated[
        str, typer.Option(help="Why it is discarded (a reference, no personal data).")
    ],
    as_json: JsonOption = False,
) -> None:
    """Discard a quarantined row: its data key is destroyed, the decision is audited."""
    row_id = _row_id(row)
    if not 3 <= len(reason.strip()) <= 200:
        fail("--reason must be a reference of 3 to 200 characters", ExitCode.BAD_INPUT)
    with open_hub() as (db, provider), db.transaction() as session:
        store = PersonStore.from_provider(provider)
        try:
            quarantined = get_open(session, row_id)
        except QuarantineError as exc:
            fail(str(exc), ExitCode.BAD_INPUT)
        store.keys.shred(session, [row_id])
        quarantined.ciphertext = None
        resolve(quarantined, "discarded")
        audit(
            session,
            AuditEvent(
                actor(),
                "quarantine.discard",
                "quarantined_row",
                str(row_id),
                {"reason": reason.strip()},
            ),
        )
    if as_json:
        emit_json({"discarded": str(row_id)})
    else:
        console.print(f"Discarded {row_id}.")
