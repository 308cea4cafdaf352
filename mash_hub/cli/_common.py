"""What every command shares: consoles, exit codes, JSON output and opening the database."""

from __future__ import annotations

import contextlib
import enum
import getpass
import json
import os
import sys
from collections.abc import Iterator
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from mash_hub.crypto.keys import KeyProvider
from mash_hub.crypto.keystore import KeyStore, load_key_provider
from mash_hub.db import migrate
from mash_hub.db.engine import Database, database
from mash_hub.settings import Settings, get_settings

# Human-facing output (progress, tables, warnings) goes to stderr so stdout stays for data.
console = Console(stderr=True, soft_wrap=True)
stdout = Console(soft_wrap=True)


class ExitCode(enum.IntEnum):
    """Exit codes scripts can rely on; listed in the README."""

    OK = 0
    FAILED = 1
    BAD_INPUT = 2
    DATABASE = 3


def fail(message: str, code: ExitCode = ExitCode.FAILED) -> NoReturn:
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code=int(code))


def progress_bar(*, disable: bool = False) -> Progress:
    """The one progress-bar style of the CLI, on stderr so stdout stays for data."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=disable,
        transient=True,
    )


def emit_json(payload: Any) -> None:
    """Machine-readable output: one JSON document on stdout, nothing else."""
    sys.stdout.write(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def settings() -> Settings:
    return get_settings()


@contextlib.contextmanager
def open_db() -> Iterator[Database]:
    """The configured database for the length of one command."""
    with database(settings()) as db:
        yield db


def actor() -> str:
    """Who runs this command, for the audit log (an operator at a shell)."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"cli:uid{os.getuid()}"


@contextlib.contextmanager
def open_hub() -> Iterator[tuple[Database, KeyProvider]]:
    """The database (migrated when embedded) and the key provider that unlocks it."""
    cfg = settings()
    with open_db() as db:
        db.ping()
        if cfg.uses_embedded_database:
            migrate.upgrade(db.engine)
        provider = load_key_provider(cfg)
        with db.transaction() as session:
            KeyStore(provider).check_provider_covers_database(session)
        yield db, provider
