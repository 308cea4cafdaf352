"""``mash-hub audit``: verify the tamper-evident audit log, sign checkpoints, query and export.

Audit entries hold ids and codes only, so nothing here decrypts anything. Querying and
exporting the log are themselves audited (``audit.query``, ``audit.export``).
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.table import Table
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from mash_hub.audit import AuditEvent
from mash_hub.audit import record as audit
from mash_hub.audit.checkpointer import AuditTamperedError, create_checkpoint
from mash_hub.audit.models import AuditEntry
from mash_hub.audit.reports import StaffTerms, UnusualAccessReport, staff_terms, unusual_access
from mash_hub.audit.verify import verify as verify_log
from mash_hub.cli._common import (
    ExitCode,
    actor,
    console,
    emit_json,
    fail,
    open_db,
    open_hub,
    progress_bar,
    settings,
    stdout,
)
from mash_hub.crypto.blind_index import BlindIndexer
from mash_hub.crypto.errors import KeyConfigError
from mash_hub.crypto.signing import (
    AuditVerifyKey,
    load_signing_key,
    retired_keys_path,
    rotate_signing_key,
)
from mash_hub.db import migrate
from mash_hub.db.engine import Database
from mash_hub.users.history import ActorResolver, AuditedAct

app = typer.Typer(
    help="Verify the tamper-evident audit log, sign checkpoints, query and export it.",
    no_args_is_help=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print a JSON document for scripts.")]
ActorOption = Annotated[str | None, typer.Option("--actor", help="Only entries by this actor.")]
ActionOption = Annotated[
    str | None, typer.Option("--action", help="Only this action, e.g. person.erase.")
]
SubjectOption = Annotated[
    str | None, typer.Option("--subject-id", help="Only entries about this subject id.")
]
SinceOption = Annotated[
    str | None, typer.Option("--since", help="From this ISO 8601 time (UTC if no zone).")
]
UntilOption = Annotated[
    str | None, typer.Option("--until", help="Before this ISO 8601 time (UTC if no zone).")
]


@contextlib.contextmanager
def _open() -> Iterator[Database]:
    """The database, migrated first when embedded (no encryption keys are needed here)."""
    with open_db() as db:
        db.ping()
        if settings().uses_embedded_database:
            migrate.upgrade(db.engine)
        yield db


@app.command()
def verify(as_json: JsonOption = False) -> None:
    """Recompute the hash chain from the first entry and check every signed checkpoint.

    Exit 0 when the log is intact; exit 1 naming the first bad entry. Entries after the newest
    checkpoint are chain-checked but not yet vouched for by a signature.
    """
    cfg = settings()
    verify_key: AuditVerifyKey | None
    try:
        verify_key = load_signing_key(cfg, create=False)
    except KeyConfigError:
        verify_key = None  # fine while there are no checkpoints; otherwise reported below
    with _open() as db:
        with db.engine.connect() as connection:
            total = connection.execute(select(func.max(AuditEntry.chain_seq))).scalar()
        with progress_bar(disable=as_json) as progress:
            task = progress.add_task("Verifying the audit log", total=total)
            report = verify_log(
                db.engine,
                verify_key=verify_key,
                checkpoint_dir=cfg.resolved_audit_checkpoint_dir,
                progress=lambda n: progress.update(task, completed=n),
            )
    problem = report.problem
    if as_json:
        emit_json(report.as_dict())
        if problem is not None:
            raise typer.Exit(int(ExitCode.FAILED))
        return
    if problem is not None:
        where = f"entry {problem.seq}" if problem.seq is not None else "the checkpoints"
        fail(
            f"audit log verification FAILED at {where} ({problem.kind}): {problem.message} "
            f"[{report.entries} entries checked before it]"
        )
    latest = report.latest_checkpoint
    signed = (
        f"{report.checkpoints} signed checkpoint(s), newest at entry {latest.seq} "
        f"({latest.signed_at.isoformat(timespec='seconds')})"
        if latest is not None
        else "no signed checkpoints yet (run `mash-hub audit checkpoint`)"
    )
    console.print(
        f"Audit log OK: {report.entries:,} entries checked in {report.seconds:.2f} s "
        f"({report.rate:,.0f} entries/s); {signed}; {report.unsigned_tail:,} newer "
        f"entries chain-checked only; {report.unchained:,} committed, not yet chained.",
        highlight=False,
    )


@app.command()
def checkpoint(as_json: JsonOption = False) -> None:
    """Verify entries since the last checkpoint, then sign and export the current head.

    The signed checkpoint is appended to <checkpoint dir>/checkpoints.jsonl (outside the
    database; copy it somewhere the database's administrators cannot write) and to the
    audit_checkpoints table.
    """
    cfg = settings()
    key = load_signing_key(cfg, create=True)
    directory = cfg.resolved_audit_checkpoint_dir
    with _open() as db:
        try:
            made = create_checkpoint(db, key, directory)
        except AuditTamperedError as exc:
            fail(f"no checkpoint signed: the audit log failed verification: {exc}")
    payload: dict[str, Any] = {
        "signed": made is not None,
        "file": str(directory / "checkpoints.jsonl"),
        "key_id": key.key_id,
    }
    if made is not None:
        payload.update(made.to_json())
    if as_json:
        emit_json(payload)
    elif made is None:
        console.print("The audit log is empty; nothing to sign.")
    else:
        console.print(
            f"Signed checkpoint at entry {made.seq} (head {made.head_hash.hex()[:16]}…, "
            f"key {key.key_id}) into {payload['file']}.",
            highlight=False,
        )


@app.command("rotate-signing-key")
def rotate_signing_key_command(as_json: JsonOption = False) -> None:
    """Sign the current head with the old key, replace the key file with a new key, and sign
    again with the new one. The old public key is kept in audit-retired-keys.json beside the
    key file, so earlier checkpoints still verify; back up both files. Audited as
    audit.signing_key_rotated. Refused when the log does not verify."""
    cfg = settings()
    directory = cfg.resolved_audit_checkpoint_dir
    with _open() as db:
        try:
            old = load_signing_key(cfg, create=False)
            create_checkpoint(db, old, directory, skip_if_unchanged=True)
            old, new = rotate_signing_key(cfg)
        except KeyConfigError as exc:
            fail(str(exc), ExitCode.BAD_INPUT)
        except AuditTamperedError as exc:
            fail(f"not rotated: the audit log failed verification: {exc}")
        with db.transaction() as session:
            audit(
                session,
                AuditEvent(
                    actor(),
                    "audit.signing_key_rotated",
                    details={"old_key_id": old.key_id, "new_key_id": new.key_id},
                ),
            )
        try:
            made = create_checkpoint(db, new, directory)
        except AuditTamperedError as exc:
            fail(f"rotated, but the first checkpoint with the new key was refused: {exc}")
    payload = {
        "old_key_id": old.key_id,
        "new_key_id": new.key_id,
        "retired_keys_file": str(retired_keys_path(cfg)),
        "checkpoint_seq": None if made is None else made.seq,
    }
    if as_json:
        emit_json(payload)
    else:
        console.print(
            f"Retired audit signing key {old.key_id}; new key {new.key_id}, first checkpoint at "
            f"entry {payload['checkpoint_seq']}. Back up {cfg.resolved_audit_signing_key_path} "
            f"and {payload['retired_keys_file']}.",
            highlight=False,
        )


def _parse_time(value: str | None, option: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        fail(
            f"{option} must be an ISO 8601 date or time, e.g. 2026-11-28T09:00", ExitCode.BAD_INPUT
        )
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def _filtered(
    *,
    actor_: str | None,
    action: str | None,
    subject_id: str | None,
    since: str | None,
    until: str | None,
    limit: int | None,
) -> tuple[Select[AuditEntry], dict[str, Any]]:
    start, end = _parse_time(since, "--since"), _parse_time(until, "--until")
    stmt = select(AuditEntry).order_by(AuditEntry.seq)
    if actor_ is not None:
        stmt = stmt.where(AuditEntry.actor == actor_)
    if action is not None:
        stmt = stmt.where(AuditEntry.action == action)
    if subject_id is not None:
        stmt = stmt.where(AuditEntry.subject_id == subject_id)
    if start is not None:
        stmt = stmt.where(AuditEntry.occurred_at >= start)
    if end is not None:
        stmt = stmt.where(AuditEntry.occurred_at < end)
    if limit is not None:
        stmt = stmt.limit(limit)
    filters = {
        "actor": actor_,
        "action": action,
        "subject_id": subject_id,
        "since": start.isoformat() if start else None,
        "until": end.isoformat() if end else None,
        "limit": limit,
    }
    return stmt, {k: v for k, v in filters.items() if v is not None}


def _row(entry: AuditEntry) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "chain_seq": entry.chain_seq,
        "entry_id": str(entry.entry_id),
        "occurred_at": entry.occurred_at.astimezone(dt.UTC).isoformat(timespec="microseconds"),
        "actor": entry.actor,
        "action": entry.action,
        "subject_type": entry.subject_type,
        "subject_id": entry.subject_id,
        "details": entry.details,
        "prev_hash": None if entry.prev_hash is None else bytes(entry.prev_hash).hex(),
        "entry_hash": None if entry.entry_hash is None else bytes(entry.entry_hash).hex(),
    }


@app.command()
def query(
    *,
    actor_: ActorOption = None,
    action: ActionOption = None,
    subject_id: SubjectOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="At most this many.")] = 100,
    as_json: JsonOption = False,
) -> None:
    """List audit entries matching the filters, oldest first (the query itself is audited)."""
    stmt, filters = _filtered(
        actor_=actor_,
        action=action,
        subject_id=subject_id,
        since=since,
        until=until,
        limit=limit,
    )
    with _open() as db, db.transaction() as session:
        entries = list(session.execute(stmt).scalars())
        people = ActorResolver(session).describe(
            AuditedAct(e.actor, e.occurred_at, e.details) for e in entries
        )
        rows = [
            {**_row(entry), **who.as_dict()} for entry, who in zip(entries, people, strict=True)
        ]
        audit(
            session,
            AuditEvent(actor(), "audit.query", details={"filters": filters, "rows": len(rows)}),
        )
    if as_json:
        emit_json(rows)
        return
    table = Table(title=f"Audit entries ({len(rows)})")
    for column in ("seq", "time (UTC)", "actor", "action", "subject", "details"):
        table.add_column(column)
    for row in rows:
        subject = f"{row['subject_type'] or ''}:{row['subject_id'] or ''}".strip(":")
        who = ", ".join(
            str(part)
            for part in (row["actor_name"], row["actor_role"], row["actor_agency"])
            if part
        )
        table.add_row(
            str(row["seq"]),
            row["occurred_at"][:19].replace("T", " "),
            f"{who} ({row['actor']})" if who else row["actor"],
            row["action"],
            subject,
            json.dumps(row["details"], sort_keys=True, ensure_ascii=False),
        )
    stdout.print(table)


_CSV_COLUMNS = (
    "seq",
    "chain_seq",
    "entry_id",
    "occurred_at",
    "actor",
    "action",
    "subject_type",
    "subject_id",
    "details",
    "prev_hash",
    "entry_hash",
)


def _stream(session: Session, stmt: Select[AuditEntry], handle: Any, fmt: str) -> int:
    """Write matching entries in batches through a server-side cursor; returns the count."""
    count = 0
    result = session.execute(stmt, execution_options={"yield_per": 5000}).scalars()
    if fmt == "csv":
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(_CSV_COLUMNS)
        for entry in result:
            row = _row(entry)
            row["details"] = json.dumps(row["details"], sort_keys=True, ensure_ascii=False)
            writer.writerow(row[c] for c in _CSV_COLUMNS)
            count += 1
        return count
    handle.write("[")
    for entry in result:
        handle.write(",\n" if count else "\n")
        handle.write(json.dumps(_row(entry), sort_keys=True, ensure_ascii=False))
        count += 1
    handle.write("\n]\n")
    return count


@app.command()
def export(
    *,
    out: Annotated[Path, typer.Option("--out", help="File to create (never overwritten).")],
    fmt: Annotated[
        Literal["csv", "json"], typer.Option("--format", help="csv, or json (one array).")
    ] = "csv",
    actor_: ActorOption = None,
    action: ActionOption = None,
    subject_id: SubjectOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Export matching entries (with their hashes) to a new file of mode 0600.

    The export is audited as ``audit.export`` in the same transaction: if that entry cannot
    be written, the file is removed.
    """
    stmt, filters = _filtered(
        actor_=actor_,
        action=action,
        subject_id=subject_id,
        since=since,
        until=until,
        limit=limit,
    )
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        fail(f"{out} already exists; refusing to overwrite it", ExitCode.BAD_INPUT)
    except OSError as exc:
        fail(f"cannot create {out}: {exc.strerror}", ExitCode.BAD_INPUT)
    done = False
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle, _open() as db:
            with db.transaction() as session:
                count = _stream(session, stmt, handle, fmt)
                handle.flush()
                os.fsync(handle.fileno())
                audit(
                    session,
                    AuditEvent(
                        actor(),
                        "audit.export",
                        details={"filters": filters, "format": fmt, "rows": count},
                    ),
                )
            done = True
    finally:
        if not done:
            out.unlink(missing_ok=True)
    if as_json:
        emit_json({"file": str(out), "format": fmt, "rows": count})
    else:
        console.print(f"Exported {count:,} audit entries to {out}.")


def _staff_directory(path: Path, indexer: BlindIndexer) -> dict[str, StaffTerms]:
    """actor -> blind-index terms of a CSV (actor,family_name,postcode); kept in memory only."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            if not {"actor", "family_name", "postcode"} <= set(reader.fieldnames or ()):
                fail(f"{path} needs the columns actor,family_name,postcode", ExitCode.BAD_INPUT)
            staff: dict[str, StaffTerms] = {}
            for line, row in enumerate(reader, start=2):
                who = (row.get("actor") or "").strip()
                if not who:
                    fail(f"{path}:{line}: no actor", ExitCode.BAD_INPUT)
                staff[who] = staff_terms(
                    indexer,
                    family_name=(row.get("family_name") or "").strip() or None,
                    postcode=(row.get("postcode") or "").strip() or None,
                )
            return staff
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        fail(f"cannot read {path}: {exc}", ExitCode.BAD_INPUT)


def _print_report(report: UnusualAccessReport) -> None:
    def seqs(values: list[int]) -> str:
        shown = ", ".join(str(v) for v in values[:8])
        return shown + (f", … ({len(values)})" if len(values) > 8 else "")

    tables: list[tuple[str, list[str], list[list[str]]]] = [
        (
            "Volume outliers",
            ["actor", "day", "views", "peer limit", "own limit", "why", "seqs"],
            [
                [
                    f.actor,
                    f.day.isoformat(),
                    str(f.views),
                    f"{f.peer_limit:g}",
                    "-" if f.own_limit is None else f"{f.own_limit:g}",
                    "+".join(f.reasons),
                    seqs(f.seqs),
                ]
                for f in report.volume_outliers
            ],
        ),
        (
            "Out-of-hours views",
            ["seq", "actor", "person", f"local time ({report.timezone})", "why"],
            [
                [
                    str(f.seq),
                    f.actor,
                    f.person_id or "",
                    f.local_time.isoformat(" ", "minutes"),
                    f.why,
                ]
                for f in report.out_of_hours
            ],
        ),
        (
            "Break-glass views",
            ["seq", "actor", "person", "time (UTC)", "review"],
            [
                [
                    str(f.seq),
                    f.actor,
                    f.person_id or "",
                    f.occurred_at.astimezone(dt.UTC).isoformat(" ", "minutes")[:16],
                    f.review_state + (f" ({f.review_outcome})" if f.review_outcome else ""),
                ]
                for f in report.break_glass
            ],
        ),
        (
            "Views with no related referral",
            ["actor", "reason code", "views", "seqs"],
            [[f.actor, f.code or "", str(f.views), seqs(f.seqs)] for f in report.unreferred],
        ),
        (
            "Repeated denials",
            ["actor", "day", "denials", "reasons", "seqs"],
            [
                [
                    f.actor,
                    f.day.isoformat(),
                    str(f.denials),
                    ", ".join(f"{k} {v}" for k, v in sorted(f.reasons.items())),
                    seqs(f.seqs),
                ]
                for f in report.denials
            ],
        ),
    ]
    if report.staff_related is not None:
        tables.append(
            (
                "Staff viewing people who share their family name or postcode",
                ["seq", "actor", "person", "matched"],
                [
                    [str(f.seq), f.actor, f.person_id, ", ".join(f.matched)]
                    for f in report.staff_related
                ],
            )
        )
    rules = report.rules()
    keys = [*rules][: len(tables)]
    for (title, columns, rows), key in zip(tables, keys, strict=True):
        table = Table(title=f"{title} ({len(rows)})", caption=rules[key])
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*row)
        stdout.print(table)


@app.command()
def unusual(
    *,
    since: SinceOption = None,
    until: UntilOption = None,
    staff_directory: Annotated[
        Path | None,
        typer.Option(
            "--staff-directory",
            help="CSV actor,family_name,postcode: also report staff viewing people who share "
            "their family name or postcode (needs the keys; the file is read, never stored).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Report unusual access: volume outliers, out-of-hours and break-glass views, views
    with no referral, repeated denials (and, with a staff directory, related persons).

    The window defaults to the 30 days before now. Times are Europe/London; bank holidays
    are not modelled. The report is audited as ``audit.report`` (finding counts only).
    """
    end = _parse_time(until, "--until") or dt.datetime.now(dt.UTC)
    start = _parse_time(since, "--since") or end - dt.timedelta(days=30)
    if start >= end:
        fail("--since must be before --until", ExitCode.BAD_INPUT)
    with contextlib.ExitStack() as stack:
        staff: dict[str, StaffTerms] | None = None
        if staff_directory is not None:
            db, provider = stack.enter_context(open_hub())
            staff = _staff_directory(staff_directory, BlindIndexer.from_provider(provider))
        else:
            db = stack.enter_context(_open())
        with db.transaction() as session:
            report = unusual_access(session, actor=actor(), since=start, until=end, staff=staff)
    if as_json:
        emit_json(report.as_dict())
        return
    _print_report(report)
    counts = report.counts()
    console.print(
        "Unusual access "
        f"{start.isoformat(timespec='minutes')} – {end.isoformat(timespec='minutes')}: "
        + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items() if v is not None)
        + f" (audit entry {report.audit_seq}).",
        highlight=False,
    )
