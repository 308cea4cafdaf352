"""Record linkage: link runs and the links (with explanations) each run decided.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "link_runs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "started_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column("model_definition", sa.String(length=64), nullable=False),
        sa.Column("counts", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_link_runs")),
    )
    op.create_table(
        "person_links",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("record_id_l", sa.Uuid(), nullable=False),
        sa.Column("record_id_r", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("match_weight", sa.Float(), nullable=False),
        sa.Column("weights", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("explanation", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["link_runs.id"],
            name=op.f("fk_person_links_run_id_link_runs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["record_id_l"],
            ["source_records.id"],
            name=op.f("fk_person_links_record_id_l_source_records"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["record_id_r"],
            ["source_records.id"],
            name=op.f("fk_person_links_record_id_r_source_records"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_person_links")),
    )
    op.create_index(op.f("ix_person_links_run_id"), "person_links", ["run_id"], unique=False)
    op.create_index(
        op.f("ix_person_links_record_id_l"), "person_links", ["record_id_l"], unique=False
    )
    op.create_index(
        op.f("ix_person_links_record_id_r"), "person_links", ["record_id_r"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_person_links_record_id_r"), table_name="person_links")
    op.drop_index(op.f("ix_person_links_record_id_l"), table_name="person_links")
    op.drop_index(op.f("ix_person_links_run_id"), table_name="person_links")
    op.drop_table("person_links")
    op.drop_table("link_runs")
