"""``mash-hub erase``: erasure of a person by crypto-shredding."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import asdict
from typing import Annotated

import typer
from sqlalchemy.exc import SQLAlchemyError

from mash_hub.backup import ledger
from mash_hub.cli._common import ExitCode, actor, console, emit_json, fail, open_hub, settings
from mash_hub.db.engine import Database
from mash_hub.persons.store import PersonStore, UnknownPersonError


def erase(
    person: Annotated[str, typer.Option("--person", help="Id of the person to erase.")],
    reason: Annotated[
        str,
        typer.Option(
            help="Reference of the erasure decision (e.g. a request number); no personal data.",
        ),
    ],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON report.")] = False,
) -> None:
    """Erase a person: destroy the data keys and index entries of all their records.

    Their data can then be neither decrypted nor found, in this database or any backup once
    the KEK that wrapped those keys is retired. The audit entry of the erasure remains.
    """
    try:
        person_id = uuid.UUID(person)
    except ValueError:
        fail(
            f"--person must be a person id (a UUID), got {len(person)} characters",
            ExitCode.BAD_INPUT,
        )
    if not 3 <= len(reason.strip()) <= 200:
        fail("--reason must be a reference of 3 to 200 characters", ExitCode.BAD_INPUT)
    if not yes:
        try:
            confirmed = typer.confirm(f"Erase person {person_id} irreversibly?", err=True)
        except typer.Abort:  # end of input (no terminal, no --yes) or Ctrl+C
            confirmed = False
        if not confirmed:
            fail("not confirmed; nothing erased", ExitCode.BAD_INPUT)
    with open_hub() as (db, provider):
        with db.transaction() as session:
            try:
                report = PersonStore.from_provider(provider).erase_person(
                    session, person_id, actor=actor(), reason=reason.strip()
                )
            except UnknownPersonError as exc:
                fail(str(exc), ExitCode.BAD_INPUT)
        # Outside the database, so a restore of an older backup erases the person again.
        ledger.append(settings().resolved_erasure_ledger_path, person_id, dt.datetime.now(dt.UTC))
        # Dead row versions of the destroyed keys stay in the table files until vacuumed.
        # The erasure has committed by now, so a failure here is a warning, not an error.
        try:
            _vacuum_person_store(db)
        except SQLAlchemyError as exc:
            console.print(
                f"[yellow]warning:[/] erased, but VACUUM failed ({exc.__class__.__name__}); "
                "run VACUUM on the person-store tables"
            )
    if as_json:
        emit_json({k: str(v) if isinstance(v, uuid.UUID) else v for k, v in asdict(report).items()})
    else:
        console.print(
            f"Erased person {person_id}: {report.records} record(s), "
            f"{report.data_keys_destroyed} data key(s) destroyed, "
            f"{report.index_entries_removed} index entries removed, "
            f"{report.information_requests} information request(s) shredded."
        )


def _vacuum_person_store(db: Database) -> None:
    """VACUUM as the table owner: before PostgreSQL 17 the application role may not.

    The connection leaves the application role for this, so it is discarded afterwards
    rather than returned to the pool.
    """
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        try:
            connection.exec_driver_sql("RESET ROLE")
            connection.exec_driver_sql(
                "VACUUM data_keys, blind_index, record_field_groups, source_records, persons"
            )
        finally:
            connection.invalidate()
