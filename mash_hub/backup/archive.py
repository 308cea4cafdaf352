"""``pg_dump`` into a sealed backup file, and ``pg_restore`` out of one.

The dump streams from ``pg_dump`` through :class:`~mash_hub.crypto.backup.BackupKey` into a
new 0600 file: no plaintext dump ever touches the disk. Restoring streams the other way into
``pg_restore`` (``--clean --if-exists --single-transaction``: all or nothing), then erases
again every person in the erasure ledger, since the backup may predate their erasure.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from sqlalchemy import select
from sqlalchemy.engine import make_url

from mash_hub.backup import ledger
from mash_hub.crypto.backup import BackupFormatError, BackupKey
from mash_hub.db import migrate
from mash_hub.db.embedded import client_program
from mash_hub.db.engine import Database
from mash_hub.persons.models import SourceRecord
from mash_hub.persons.store import PersonStore

FORMAT = "pg_dump-custom"


class BackupError(RuntimeError):
    """pg_dump or pg_restore failed (the message has their last lines)."""


@dataclass
class RestoreReport:
    header: dict[str, object]
    bytes_restored: int
    erasures_reapplied: list[str] = field(default_factory=list)


def _libpq(db: Database) -> tuple[str, dict[str, str]]:
    """The libpq URL without its password, and the password in PGPASSWORD (not argv)."""
    url = make_url(db.url).set(drivername="postgresql")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    return url.set(password=None).render_as_string(hide_password=False), env


def backup(db: Database, key: BackupKey, out: Path) -> dict[str, object]:
    """Dump the database into a new sealed file ``out`` (refuses to overwrite)."""
    url, env = _libpq(db)
    with db.engine.connect() as connection:
        revision = migrate.current_revision(connection)
    header: dict[str, object] = {
        "format": FORMAT,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "migration": revision,
    }
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    process = subprocess.Popen(  # noqa: S603 - the wheel's pg_dump, no shell
        [str(client_program("pg_dump")), "--format=custom", "--no-owner", f"--dbname={url}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert process.stdout is not None and process.stderr is not None
    errors = _Drain(process.stderr)
    try:
        with os.fdopen(fd, "wb") as target:
            size = key.seal(process.stdout, target, header)
            target.flush()
            os.fsync(target.fileno())
    finally:
        process.stdout.close()
        code = process.wait()
    if code != 0:
        out.unlink(missing_ok=True)
        raise BackupError(f"pg_dump failed (exit {code}): {errors.tail()}")
    return {**header, "key_id": key.key_id, "dump_bytes": size, "file": str(out)}


def restore(
    db: Database, key: BackupKey, source: Path, *, ledger_path: Path, store: PersonStore
) -> RestoreReport:
    """Replace the database's contents with the backup's, then re-apply erasures."""
    url, env = _libpq(db)
    with source.open("rb") as handle:
        header, chunks = key.open(handle)
        if header.get("format") != FORMAT:
            raise BackupFormatError(f"unknown backup format {header.get('format')!r}")
        db.engine.dispose()  # nothing of ours holds the tables pg_restore drops
        process = subprocess.Popen(  # noqa: S603 - the wheel's pg_restore, no shell
            [
                str(client_program("pg_restore")),
                "--clean",
                "--if-exists",
                "--no-owner",
                "--single-transaction",
                "--exit-on-error",
                f"--dbname={url}",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        assert process.stdin is not None and process.stderr is not None
        errors = _Drain(process.stderr)
        size = 0
        try:
            for chunk in chunks:
                process.stdin.write(chunk)
                size += len(chunk)
        except (BackupFormatError, BrokenPipeError):
            process.kill()
            raise
        finally:
            if not process.stdin.closed:
                process.stdin.close()
            code = process.wait()
    if code != 0:
        raise BackupError(f"pg_restore failed (exit {code}): {errors.tail()}")
    report = RestoreReport(header, size)
    for person_id in ledger.erased_persons(ledger_path):
        if _reapply_erasure(db, store, person_id):
            report.erasures_reapplied.append(str(person_id))
    return report


def _reapply_erasure(db: Database, store: PersonStore, person_id: uuid.UUID) -> bool:
    """Erase a ledger person again if the restored data still holds a readable record."""
    with db.transaction() as session:
        live = session.scalar(
            select(SourceRecord.id)
            .where(SourceRecord.person_id == person_id, SourceRecord.erased_at.is_(None))
            .limit(1)
        )
        if live is None:
            return False
        store.erase_person(
            session,
            person_id,
            actor="system:restore",
            reason="erasure ledger: re-applied after restore",
        )
    return True


class _Drain:
    """Collect a child's stderr in a thread, so a full pipe never stalls it."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.lines: list[bytes] = []
        self._thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self._thread.start()

    def _run(self, stream: IO[bytes]) -> None:
        for line in stream:
            self.lines.append(line)
            del self.lines[:-20]

    def tail(self) -> str:
        self._thread.join(timeout=10)
        return b" | ".join(line.strip() for line in self.lines[-5:]).decode(errors="replace")
