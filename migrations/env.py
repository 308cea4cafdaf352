"""Alembic environment: the hub passes an open connection in ``config.attributes``."""

from __future__ import annotations

from alembic import context

from mash_hub.db.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "run migrations with `mash-hub db upgrade` (it opens the configured database); "
        "plain `alembic` is not configured for this project"
    )

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    compare_type=True,
    transaction_per_migration=False,
)
with context.begin_transaction():
    context.run_migrations()
