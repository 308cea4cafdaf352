"""Term frequencies of common names kept with each full linkage run (encrypted).

A full run counts how often each first and family name occurs; exact agreement on a common
name is weaker evidence of one person (Splink's term-frequency adjustment). Incremental runs
score with the latest full run's counts, so the counts of names shared by at least ten records
are stored with that run, AES-GCM under a data key issued for the run's id.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("link_runs", sa.Column("term_frequencies", sa.LargeBinary(), nullable=True))
    # The latest full run is looked up by every incremental link and search.
    op.create_index(
        "ix_link_runs_full_started_at",
        "link_runs",
        ["started_at"],
        postgresql_where=sa.text("mode = 'full'"),
    )


def downgrade() -> None:
    op.drop_index("ix_link_runs_full_started_at", table_name="link_runs")
    op.drop_column("link_runs", "term_frequencies")
