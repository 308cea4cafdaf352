"""``mash-hub keys``: create, inspect and rotate the keys that protect personal data, and
write the keyed indexes that older records lack."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer
from rich.table import Table

from mash_hub.audit import AuditEvent
from mash_hub.audit import record as audit
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
from mash_hub.crypto.errors import KeyConfigError, KeyringExistsError
from mash_hub.crypto.keys import LocalKeyringProvider
from mash_hub.crypto.keystore import KeyStore, rotate
from mash_hub.persons import rotation
from mash_hub.persons.backfill import DEFAULT_BATCH, BackfillRefusedError, backfill_index
from mash_hub.persons.store import PersonStore

app = typer.Typer(help="Create, inspect, rotate and retire encryption keys.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print a JSON document for scripts.")]


@app.command()
def init(as_json: JsonOption = False) -> None:
    """Create the local keyring file (mode 0600) with a first key-encryption key.

    Back the file up separately from database backups: without it nothing can be decrypted,
    and anyone holding both can read everything.
    """
    path = settings().resolved_keyring_path
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        provider = LocalKeyringProvider.create(path)
    except KeyringExistsError as exc:
        fail(str(exc), ExitCode.BAD_INPUT)
    if as_json:
        emit_json({"keyring": str(path), "primary": provider.primary_kek_id()})
    else:
        console.print(f"Created keyring {path} with primary KEK {provider.primary_kek_id()}.")


@app.command()
def status(as_json: JsonOption = False) -> None:
    """Show each KEK, how many data keys it wraps, the blind-index root, and whether a
    rotation of either is unfinished."""
    with open_hub() as (db, provider), db.transaction() as session:
        keys = KeyStore(provider)
        rows = keys.status(session)
        outstanding = keys.outstanding(session)
        index_root = rotation.status(session, provider)
    if as_json:
        emit_json(
            {
                "provider": provider.name,
                "primary": provider.primary_kek_id(),
                "outstanding_rewraps": outstanding,
                "keks": [asdict(row) for row in rows],
                "index_root": index_root,
            }
        )
        return
    table = Table(title=f"Key-encryption keys ({provider.name})")
    for column in ("KEK", "primary", "in provider", "data keys", "retired"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row.kek_id,
            "yes" if row.primary else "",
            "yes" if row.in_provider else "no",
            str(row.data_keys),
            "yes" if row.retired else "",
        )
    console.print(table)
    if outstanding:
        console.print(
            f"[yellow]{outstanding} data key(s) still wrapped by older KEKs: "
            "run `mash-hub keys rotate` to finish.[/]"
        )
    console.print(
        f"Blind-index root {index_root['current']} (generation {index_root['generation']}, "
        f"{index_root['previous_roots']} earlier root(s) kept for keyed hashes)."
    )
    if index_root["unfinished"]:
        console.print(
            "[yellow]A blind-index root rotation is unfinished: run "
            "`mash-hub keys rotate-index-root` to finish it.[/]"
        )


@app.command("rotate")
def rotate_command(
    batch_size: Annotated[
        int, typer.Option(min=1, max=100_000, help="DEKs per transaction.")
    ] = 1000,
    as_json: JsonOption = False,
) -> None:
    """Make a new KEK primary and re-wrap every data key under it, online and resumably.

    If an earlier rotation was interrupted, this finishes it instead of starting another.
    With keys from the environment, add the new KEK to MASH_KEKS and point MASH_KEK_PRIMARY
    at it first; this command then re-wraps.
    """
    with open_hub() as (db, provider):
        keys = KeyStore(provider)
        with db.transaction() as session:
            outstanding = keys.outstanding(session)
            previous = provider.primary_kek_id()
            created = None
            if outstanding == 0:
                if not isinstance(provider, LocalKeyringProvider):
                    fail(
                        f"every data key is already wrapped by the primary KEK {previous}; "
                        "add a new KEK to MASH_KEKS and set MASH_KEK_PRIMARY to it, then re-run",
                        ExitCode.BAD_INPUT,
                    )
                created = provider.add_kek(make_primary=True)
                keys.register_primary(session)
            audit(
                session,
                AuditEvent(
                    actor(),
                    "keys.rotate.start",
                    "kek",
                    provider.primary_kek_id(),
                    {"previous_primary": previous, "created": created, "resumed": outstanding > 0},
                ),
            )
        with progress_bar(disable=as_json) as progress:
            task = progress.add_task("Re-wrapping data keys", total=None)
            done = rotate(
                db,
                keys,
                batch_size=batch_size,
                progress=lambda n, total: progress.update(task, completed=n, total=total),
            )
        with db.transaction() as session:
            audit(
                session,
                AuditEvent(
                    actor(),
                    "keys.rotate.finish",
                    "kek",
                    provider.primary_kek_id(),
                    {"rewrapped": done},
                ),
            )
    report = {"primary": provider.primary_kek_id(), "created": created, "rewrapped": done}
    if as_json:
        emit_json(report)
    else:
        console.print(
            f"Primary KEK is {report['primary']}; re-wrapped {done} data key(s). "
            f"Retire old KEKs with `mash-hub keys retire KEK_ID` once backups allow."
        )


@app.command("rotate-index-root")
def rotate_index_root_command(
    batch_size: Annotated[
        int, typer.Option(min=1, max=100_000, help="Records re-indexed per transaction.")
    ] = 1000,
    as_json: JsonOption = False,
) -> None:
    """Replace the blind-index root secret online: re-index every record under a new root.

    The hub keeps serving. A pending root goes into the keyring, every record is re-indexed
    under it in committed batches, then one short transaction switches the indexes (writers
    wait; searches continue) and the keyring makes the new root current. If a run was
    interrupted, this finishes it. Needs the local keyring.
    """
    with open_hub() as (db, provider):
        store = PersonStore.from_provider(provider)
        try:
            started = rotation.begin(db, provider)
        except KeyConfigError as exc:
            fail(str(exc), ExitCode.BAD_INPUT)
        with db.transaction() as session:
            audit(
                session,
                AuditEvent(
                    actor(),
                    "keys.rotate_index_root.start",
                    "index_root",
                    started.root,
                    {"previous_root": started.previous_root, "resumed": started.resumed},
                ),
            )
        with progress_bar(disable=as_json) as progress:
            task = progress.add_task("Re-indexing records", total=None)
            report = rotation.rotate_index_root(
                db,
                store,
                provider,
                batch_size=batch_size,
                progress=lambda n, total: progress.update(task, completed=n, total=total),
                actor=actor(),
            )
        with db.transaction() as session:
            audit(
                session,
                AuditEvent(
                    actor(),
                    "keys.rotate_index_root.finish",
                    "index_root",
                    report.root,
                    report.as_dict(),
                ),
            )
    if as_json:
        emit_json(report.as_dict())
    else:
        console.print(
            f"Blind-index root {report.root} is current (generation {report.generation}); "
            f"re-indexed {report.backfilled} record(s), {report.swept} more at the switch."
        )


@app.command()
def retire(
    kek_id: Annotated[str, typer.Argument(help="The KEK to retire.")],
    as_json: JsonOption = False,
) -> None:
    """Destroy an old KEK's key material; refused while any data key still depends on it."""
    with open_hub() as (db, provider):
        keys = KeyStore(provider)
        with db.transaction() as session:
            try:
                keys.retire(session, kek_id)
            except KeyConfigError as exc:
                fail(str(exc), ExitCode.BAD_INPUT)
            audit(session, AuditEvent(actor(), "keys.retire", "kek", kek_id))
        destroyed = keys.destroy(kek_id)
    if as_json:
        emit_json({"retired": kek_id, "key_material_destroyed": destroyed})
    elif destroyed:
        console.print(f"Retired KEK {kek_id} and destroyed its key material.")
    else:
        console.print(
            f"Retired KEK {kek_id}. Remove it from MASH_KEKS (or your KMS) to destroy it."
        )


@app.command("backfill-index")
def backfill_index_command(
    batch_size: Annotated[
        int, typer.Option(min=1, max=10_000, help="Records per transaction.")
    ] = DEFAULT_BATCH,
    as_json: JsonOption = False,
) -> None:
    """Write the name indexes that records stored before them lack (the deletion index).

    Online and resumable: one committed, audited transaction per batch; a re-run skips what
    is done. Decrypts only each record's identity group.
    """
    with open_hub() as (db, provider):
        store = PersonStore.from_provider(provider)
        with progress_bar(disable=as_json) as progress:
            task = progress.add_task("Indexing names", total=None)
            try:
                report = backfill_index(
                    db,
                    store,
                    actor=actor(),
                    batch_size=batch_size,
                    progress=lambda n, total: progress.update(task, completed=n, total=total),
                )
            except BackfillRefusedError as refused:
                fail(str(refused), ExitCode.BAD_INPUT)
    if as_json:
        emit_json(report.as_dict())
    else:
        console.print(
            f"Read {report.records} record(s) in {report.batches} batch(es); wrote "
            f"{report.terms} index term(s) for {report.indexed} of them."
        )
