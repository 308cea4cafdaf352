"""``mash-hub db``: migrations and access to the database in use."""

from __future__ import annotations

from typing import Annotated

import typer

from mash_hub.cli._common import ExitCode, console, emit_json, fail, open_db, settings, stdout
from mash_hub.db import migrate
from mash_hub.db.embedded import EmbeddedPostgres
from mash_hub.db.engine import normalise_url, redact

app = typer.Typer(
    help="Apply migrations and reach the hub's PostgreSQL database.", no_args_is_help=True
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print a JSON document for scripts.")]


@app.command()
def upgrade(
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
    as_json: JsonOption = False,
) -> None:
    """Apply database migrations (safe to run repeatedly and from several hosts at once)."""
    with open_db() as db:
        db.ping()
        before, after = migrate.upgrade(db.engine, revision)
    if as_json:
        emit_json({"before": before, "after": after, "changed": before != after})
    elif before == after:
        console.print(f"Database already at revision [bold]{after}[/].")
    else:
        console.print(f"Migrated database from [bold]{before or 'empty'}[/] to [bold]{after}[/].")


@app.command()
def url(
    show_password: Annotated[
        bool, typer.Option(help="Include the password of an external database URL.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Print the libpq URL of the database in use, for psql and pg_dump.

    On the embedded default the server runs only while a hub command runs; start it with
    `mash-hub db start` first to keep it up for psql.
    """
    cfg = settings()
    embedded_running: bool | None = None
    if cfg.database_url is not None:
        full = normalise_url(cfg.database_url.get_secret_value()).replace(
            "postgresql+psycopg://", "postgresql://", 1
        )
        printed = full if show_password else redact(full)
        kind = "external"
    else:
        server = EmbeddedPostgres(cfg.data_dir)
        printed = server.psql_url()
        kind = "embedded"
        embedded_running = server.is_running()
    if as_json:
        emit_json({"url": printed, "kind": kind, "running": embedded_running})
        return
    stdout.print(printed, highlight=False)
    if embedded_running is False:
        console.print(
            "[yellow]note:[/] the embedded server is not running; `mash-hub db start` keeps it up."
        )


@app.command()
def start(as_json: JsonOption = False) -> None:
    """Start the embedded server and keep it running until `mash-hub db stop`."""
    cfg = settings()
    if cfg.database_url is not None:
        fail("MASH_DATABASE_URL is set: the hub uses an external server", ExitCode.BAD_INPUT)
    server = EmbeddedPostgres(cfg.data_dir)
    url_ = server.start_pinned()
    if as_json:
        emit_json({"url": server.psql_url(), "running": True})
        return
    console.print(f"Embedded PostgreSQL is running. Connect with: psql '{server.psql_url()}'")
    del url_


@app.command()
def stop(as_json: JsonOption = False) -> None:
    """Stop the embedded server (hub commands start it again when they need it)."""
    cfg = settings()
    if cfg.database_url is not None:
        fail("MASH_DATABASE_URL is set: the hub does not manage that server", ExitCode.BAD_INPUT)
    was_running = EmbeddedPostgres(cfg.data_dir).stop()
    if as_json:
        emit_json({"was_running": was_running, "running": False})
    else:
        console.print("Stopped." if was_running else "It was not running.")


@app.command()
def status(as_json: JsonOption = False) -> None:
    """Say whether the database answers and is migrated. Exit 3 when it is not ready."""
    with open_db() as db:
        db.ping()
        with db.engine.connect() as connection:
            current = migrate.current_revision(connection)
            drifted = migrate.drift(connection) if current == migrate.head_revision() else []
    head = migrate.head_revision()
    report = {
        "url": db.display_url,
        "revision": current,
        "head": head,
        "migrated": current == head,
        "model_drift": [str(diff) for diff in drifted],
    }
    if as_json:
        emit_json(report)
    else:
        state = "[green]ready[/]" if current == head else "[yellow]needs `mash-hub db upgrade`[/]"
        console.print(
            f"Database {report['url']}: revision {current or 'none'} (head {head}) {state}"
        )
    if current != head:
        raise typer.Exit(int(ExitCode.DATABASE))


@app.command(hidden=True)
def revision(message: Annotated[str, typer.Option("--message", "-m")]) -> None:
    """Autogenerate a migration from the models (developers)."""
    with open_db() as db:
        migrate.upgrade(db.engine)
        migrate.make_revision(db.engine, message)
