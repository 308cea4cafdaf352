"""Data-quality issues: values of indexed records that failed validation.

A record with one bad value is indexed on what is valid; each bad value is one row here (reason
code, field, status; no personal data). The raw value is kept encrypted in the record's
``quality`` field group.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "quality_issues",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.Column("feed", sa.String(length=64), nullable=False),
        sa.Column("source_agency", sa.String(length=64), nullable=False),
        sa.Column("batch_id", sa.Uuid(), nullable=True),
        sa.Column("field", sa.String(length=128), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.String(length=200), nullable=True),
        sa.Column("corrected_record_id", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["source_records.id"],
            name=op.f("fk_quality_issues_record_id_source_records"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["feed_batches.id"],
            name=op.f("fk_quality_issues_batch_id_feed_batches"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quality_issues")),
    )
    op.create_index(op.f("ix_quality_issues_record_id"), "quality_issues", ["record_id"])
    op.create_index("ix_quality_issues_feed_created", "quality_issues", ["feed", "created_at"])
    op.create_index(
        "ix_quality_issues_open",
        "quality_issues",
        ["feed"],
        postgresql_where=sa.text("status = 'open'"),
    )


def downgrade() -> None:
    op.drop_table("quality_issues")
