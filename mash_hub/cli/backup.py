"""``mash-hub backup`` and ``mash-hub restore``: sealed database dumps and the restore drill."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mash_hub.backup import archive, ledger
from mash_hub.cli._common import ExitCode, console, emit_json, fail, open_hub, settings
from mash_hub.crypto.backup import BackupFormatError, load_backup_key
from mash_hub.persons.store import PersonStore


def backup(
    out: Annotated[Path, typer.Option("--out", help="The backup file to create (not replaced).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON report.")] = False,
) -> None:
    """Dump the database into a new file sealed with the backup key (AES-256-GCM).

    The backup key (`<data dir>/backup.key`, made by the first backup, or MASH_BACKUP_KEY)
    and the keyring are not in the file: keep copies of both, apart from the backups and
    from each other. Personal data in the dump stays sealed under the KEKs as well.
    """
    if out.exists() or out.is_symlink():
        fail(f"{out} exists; choose a new file name", ExitCode.BAD_INPUT)
    cfg = settings()
    key = load_backup_key(cfg, create=True)
    with open_hub() as (db, _provider):
        try:
            report = archive.backup(db, key, out)
        except archive.BackupError as exc:
            fail(str(exc))
    if as_json:
        emit_json(report)
    else:
        console.print(
            f"Backup written to {out} ({report['dump_bytes']:,} bytes dumped, sealed with "
            f"backup key {key.key_id}). Keep the backup key and the keyring apart from it.",
            highlight=False,
        )


def restore(
    source: Annotated[Path, typer.Argument(help="A file made by `mash-hub backup`.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON report.")] = False,
) -> None:
    """Replace the database's contents with a backup's, then erase again every person in
    the erasure ledger (erasures made after the backup was taken).

    Stop `serve` first. Needs the backup key the file was sealed with, and the keyring whose
    KEKs wrapped its data keys.
    """
    if not source.is_file():
        fail(f"{source} is not a file", ExitCode.BAD_INPUT)
    cfg = settings()
    key = load_backup_key(cfg)
    if not yes:
        try:
            confirmed = typer.confirm(
                "Replace everything in the database with the backup?", err=True
            )
        except typer.Abort:
            confirmed = False
        if not confirmed:
            fail("not confirmed; nothing restored", ExitCode.BAD_INPUT)
    with open_hub() as (db, provider):
        try:
            report = archive.restore(
                db,
                key,
                source,
                ledger_path=cfg.resolved_erasure_ledger_path,
                store=PersonStore.from_provider(provider),
            )
        except (BackupFormatError, ledger.LedgerError) as exc:
            fail(str(exc), ExitCode.BAD_INPUT)
        except archive.BackupError as exc:
            fail(str(exc))
    document = {
        "backup": report.header,
        "bytes_restored": report.bytes_restored,
        "erasures_reapplied": report.erasures_reapplied,
    }
    if as_json:
        emit_json(document)
    else:
        console.print(
            f"Restored the backup of {report.header.get('created_at')}; "
            f"{len(report.erasures_reapplied)} erasure(s) from the ledger applied again.",
            highlight=False,
        )
