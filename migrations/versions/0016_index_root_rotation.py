"""Online rotation of the blind-index root: ``blind_index_next`` and ``index_root_state``.

``blind_index_next`` holds index rows under a pending root while a rotation re-indexes;
``index_root_state`` (one row) names the root the database is keyed by. The application role
gets its privileges on both through the default privileges granted in 0005.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "blind_index_next",
        sa.Column("index_id", sa.SmallInteger(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["source_records.id"],
            name=op.f("fk_blind_index_next_record_id_source_records"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("index_id", "value", "record_id", name=op.f("pk_blind_index_next")),
    )
    op.create_index(op.f("ix_blind_index_next_record_id"), "blind_index_next", ["record_id"])
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
    op.drop_index(op.f("ix_blind_index_next_record_id"), table_name="blind_index_next")
    op.drop_table("blind_index_next")
