"""Online rotation of the blind-index root: ``index_root_state``.

One row naming the root the database's blind indexes and keyed hashes are keyed by (its
fingerprint), the rotations so far and the pending root. A rotation writes the pending
root's index rows into ``blind_index`` itself, under the other bank of index ids, so no
second index table is needed. The application role gets its privileges through the default
privileges granted in 0005.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "index_root_state",
        sa.Column("id", sa.SmallInteger(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("root_fingerprint", sa.String(length=32), nullable=True),
        sa.Column("pending_fingerprint", sa.String(length=32), nullable=True),
        sa.Column("switched_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("id = 1", name=op.f("ck_index_root_state_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_index_root_state")),
    )
    op.execute("INSERT INTO index_root_state (id, generation) VALUES (1, 0)")


def downgrade() -> None:
    op.drop_table("index_root_state")
