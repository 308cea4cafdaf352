"""The ``mash-hub`` command line."""

from __future__ import annotations

import logging
import sys

import psycopg
import typer
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError

from mash_hub import __version__
from mash_hub.cli import audit as audit_commands
from mash_hub.cli import db as db_commands
from mash_hub.cli import feeds as feed_commands
from mash_hub.cli import keys as key_commands
from mash_hub.cli import link as link_commands
from mash_hub.cli import policy as policy_commands
from mash_hub.cli import quality as quality_commands
from mash_hub.cli import sar as sar_commands
from mash_hub.cli import users as user_commands
from mash_hub.cli._common import ExitCode, console, settings
from mash_hub.cli.backup import backup, restore
from mash_hub.cli.demo import demo
from mash_hub.cli.erase import erase
from mash_hub.cli.serve import serve
from mash_hub.cli.synth import synth
from mash_hub.crypto.errors import KeyConfigError
from mash_hub.db.embedded import EmbeddedPostgresError
from mash_hub.db.engine import DatabaseConfigError, DatabaseUnavailableError
from mash_hub.observability import logs

app = typer.Typer(
    name="mash-hub",
    help=(
        "MASH Hub: a shared, encrypted and audited person index for a Multi-Agency "
        "Safeguarding Hub.\n\nWith no configuration the hub runs its own PostgreSQL server in "
        "./.mash-hub; set MASH_DATABASE_URL to use an external one."
    ),
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
)
app.add_typer(audit_commands.app, name="audit")
app.add_typer(db_commands.app, name="db")
app.add_typer(key_commands.app, name="keys")
app.add_typer(link_commands.app, name="link")
app.add_typer(policy_commands.app, name="policy")
app.add_typer(sar_commands.app, name="sar")
app.add_typer(feed_commands.feeds_app, name="feeds")
app.add_typer(feed_commands.quarantine_app, name="quarantine")
app.add_typer(quality_commands.app, name="quality")
app.add_typer(user_commands.users_app, name="users")
app.add_typer(user_commands.clients_app, name="clients")
app.command()(feed_commands.ingest)
app.command()(demo)
app.command()(erase)
app.command()(backup)
app.command()(restore)
app.command()(serve)
app.command()(synth)
app.command()(user_commands.token)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"mash-hub {__version__}\n")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details."),
) -> None:
    level = logging.DEBUG if verbose else getattr(logging, settings().log_level)
    logs.configure(level, settings().log_format)
    if not verbose:
        logging.getLogger("alembic").setLevel(logging.WARNING)


def main() -> None:
    """Console-script entry point: known failures become a one-line message and an exit code."""
    try:
        app()
    except (DatabaseUnavailableError, EmbeddedPostgresError) as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(int(ExitCode.DATABASE))
    except (OperationalError, psycopg.OperationalError) as exc:
        # Only the class: a server's message can quote values from the failed statement.
        console.print(
            f"[bold red]error:[/] the database failed ({exc.__class__.__name__}); "
            "check that it is running and reachable",
            highlight=False,
        )
        sys.exit(int(ExitCode.DATABASE))
    except (DatabaseConfigError, KeyConfigError) as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(int(ExitCode.BAD_INPUT))
    except ValidationError as exc:
        problems = "; ".join(
            f"MASH_{'_'.join(str(part) for part in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        )
        console.print(f"[bold red]error:[/] invalid configuration: {problems}", highlight=False)
        sys.exit(int(ExitCode.BAD_INPUT))
