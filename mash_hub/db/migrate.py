"""Alembic, driven from code so the CLI, ``serve`` and the tests share one path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

from mash_hub.db.models import Base

# One lock number for "a migration is running", so two processes never migrate at once.
_MIGRATION_LOCK = 0x6D617368  # "mash"


def migrations_dir() -> Path:
    """The repository's ``migrations/`` in a checkout, or the copy bundled into the wheel."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package.parent / "migrations", package / "_bundled" / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError("the hub's Alembic migrations folder was not found")


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("version_path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Apply migrations up to ``revision``; returns (revision before, revision after)."""
    with engine.begin() as connection:
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        connection.execute(text("SET LOCAL ROLE NONE"))  # as the owner, not the app role
        before = current_revision(connection)
        command.upgrade(alembic_config(connection), revision)
        after = current_revision(connection)
    return before, after


def is_up_to_date(connection: Connection) -> bool:
    return current_revision(connection) == head_revision()


def drift(connection: Connection) -> list[Any]:
    """Differences between the models and the migrated schema; empty when they agree."""
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


def make_revision(engine: Engine, message: str) -> None:
    """Autogenerate a new migration from the models (for developers)."""
    with engine.begin() as connection:
        command.revision(alembic_config(connection), message=message, autogenerate=True)
