"""``mash-hub sar``: subject-access requests (UK GDPR Art. 15) answered from the shell.

``sar export`` runs :func:`~mash_hub.casework.subject_access.subject_access_export` *as* a member
of staff (``--as``, an active user of the ``users`` table): that user's role and agency decide,
through the access policy's ``subject_access`` masks, what is decrypted, and the audit entry
names that user as the actor (and the shell login as the operator). Refusals are audited and
exit 1. ``--out`` writes the JSON document to a new file of mode 0600 (never overwriting one);
if the export cannot be committed, the file is removed.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from mash_hub.authz.policy import AccessPolicy, Caller, PolicyNotPublishedError
from mash_hub.casework.subject_access import (
    REFERENCE_RULE,
    InvalidReferenceError,
    SarReference,
    SubjectAccessExport,
    subject_access_export,
)
from mash_hub.casework.view import AccessDeniedError
from mash_hub.cli._common import ExitCode, actor, console, emit_json, fail, open_hub, stdout
from mash_hub.persons.store import PersonStore
from mash_hub.users.service import UserError, find_user

app = typer.Typer(
    help="Subject-access requests: export what the hub holds about a person (UK GDPR Art. 15).",
    no_args_is_help=True,
)


def _create(out: Path) -> int:
    """A new file of mode 0600, refusing to overwrite or follow a symlink."""
    try:
        return os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        fail(f"{out} already exists; refusing to overwrite it", ExitCode.BAD_INPUT)
    except OSError as exc:
        fail(f"cannot create {out}: {exc.strerror}", ExitCode.BAD_INPUT)


@app.command("export")
def export(
    *,
    person: Annotated[str, typer.Option("--person", help="The person's id (UUID).")],
    as_user: Annotated[
        str,
        typer.Option(
            "--as", help="The information-governance user (users table) doing the export."
        ),
    ],
    reference: Annotated[
        str, typer.Option("--reference", help="The SAR reference, e.g. SAR-2026-0117.")
    ],
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the JSON document to this new file (0600).")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON (the document, or a summary with --out).")
    ] = False,
) -> None:
    """Export everything the user's subject_access mask allows about the person, with the
    groups withheld, linked referrals, their information requests and the access history (audited as
    person.subject_access before anything is decrypted)."""
    try:
        person_id = uuid.UUID(person)
    except ValueError:
        fail("--person must be a person id (a UUID)", ExitCode.BAD_INPUT)
    try:
        sar_reference = SarReference(reference)
    except InvalidReferenceError:
        fail(f"--reference: {REFERENCE_RULE}", ExitCode.BAD_INPUT)
    fd = _create(out) if out is not None else None
    done = False
    refusal: AccessDeniedError | None = None
    result: SubjectAccessExport | None = None
    try:
        with open_hub() as (db, provider):
            store = PersonStore.from_provider(provider)
            with db.transaction() as session:
                try:
                    user = find_user(session, as_user)
                except UserError as exc:
                    fail(f"--as: {exc}", ExitCode.BAD_INPUT)
                if user.disabled:
                    fail(f"--as: user {as_user!r} is disabled", ExitCode.BAD_INPUT)
                caller = Caller(f"user:{user.id}", user.role, user.agency)
                try:
                    result = subject_access_export(
                        session,
                        store,
                        AccessPolicy(),
                        caller,
                        person_id,
                        sar_reference,
                        channel="cli",
                        operator=actor(),
                    )
                except AccessDeniedError as denied:
                    refusal = denied  # its authz.denied entry commits with the transaction
                except PolicyNotPublishedError as exc:
                    fail(str(exc), ExitCode.BAD_INPUT)
                if result is not None and fd is not None:
                    with os.fdopen(fd, "w", encoding="utf-8") as handle:
                        fd = None
                        json.dump(result.to_dict(), handle, indent=2, ensure_ascii=False)
                        handle.write("\n")
                        handle.flush()
                        os.fsync(handle.fileno())
            done = refusal is None
    finally:
        if fd is not None:
            os.close(fd)
        if out is not None and not done:
            out.unlink(missing_ok=True)
    if refusal is not None:
        fail(
            f"refused ({refusal.reason}): not allowed to export this person, or no such person "
            f"(audit entry {refusal.audit_seq})"
        )
    assert result is not None
    _report(result, out, as_json=as_json)


def _report(result: SubjectAccessExport, out: Path | None, *, as_json: bool) -> None:
    counts = result.counts()
    if out is not None:
        summary: dict[str, Any] = {
            "file": str(out),
            "person_id": str(result.person_id),
            "reference": result.reference,
            "audit_seq": result.audit_seq,
            "counts": counts,
        }
        if as_json:
            emit_json(summary)
        else:
            console.print(
                f"Wrote the subject-access export {result.reference} to {out} (mode 0600): "
                f"{counts['records']} records, {counts['access_events']} access events "
                f"(audit entry {result.audit_seq}).",
                highlight=False,
            )
        return
    document = result.to_dict()
    if as_json:
        emit_json(document)
        return
    for source, records in document["sources"].items():
        table = Table(title=f"{source} ({len(records)} records)")
        for column in ("record", "version", "current", "group", "values"):
            table.add_column(column)
        for record in records:
            for group, values in record["groups"].items():
                table.add_row(
                    record["record_id"],
                    str(record["version"]),
                    "yes" if record["current"] else "no",
                    group,
                    json.dumps(values, ensure_ascii=False, sort_keys=True),
                )
        stdout.print(table)
    history = Table(title=f"Access history ({len(document['access_history'])})")
    for column in ("seq", "time (UTC)", "action", "by", "purpose", "break-glass"):
        history.add_column(column)
    for event in document["access_history"]:
        by = event["accessed_by"]
        history.add_row(
            str(event["seq"]),
            event["occurred_at"][:19].replace("T", " "),
            event["action"],
            " / ".join(v for v in (by["kind"], by["role"], by["agency"]) if v),
            ", ".join(f"{k} {v}" for k, v in (event["purpose"] or {}).items()),
            "yes" if event["break_glass"] else "",
        )
    stdout.print(history)
    withheld = "; ".join(f"{s}: {', '.join(g)}" for s, g in document["withheld"].items())
    console.print(
        f"Subject-access export {result.reference} (audit entry {result.audit_seq}); "
        f"withheld: {withheld or 'nothing'}; referrals: "
        f"{'not available' if result.referrals is None else len(result.referrals)}; "
        f"information requests: {len(result.information_requests)}.",
        highlight=False,
    )
