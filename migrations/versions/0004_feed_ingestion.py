"""Feed ingestion: batch ledger, record versions, quarantine.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "feed_batches",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("feed", sa.String(length=64), nullable=False),
        sa.Column("file_name", sa.String(length=255), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column(
            "ingested_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("ingested_by", sa.String(length=200), nullable=False),
        sa.Column("counts", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feed_batches")),
    )
    op.create_index("uq_feed_batches_feed_sha256", "feed_batches", ["feed", "sha256"], unique=True)
    op.create_table(
        "quarantined_rows",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("batch_id", sa.Uuid(), nullable=False),
        sa.Column("feed", sa.String(length=64), nullable=False),
        sa.Column("file_name", sa.String(length=255), nullable=False),
        sa.Column("location", sa.String(length=64), nullable=False),
        sa.Column("reasons", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_record_id", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["feed_batches.id"],
            name=op.f("fk_quarantined_rows_batch_id_feed_batches"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quarantined_rows")),
    )
    op.create_index(
        op.f("ix_quarantined_rows_batch_id"), "quarantined_rows", ["batch_id"], unique=False
    )
    op.create_index(
        "ix_quarantined_rows_open",
        "quarantined_rows",
        ["feed"],
        unique=False,
        postgresql_where=sa.text("status = 'open'"),
    )
    op.add_column("source_records", sa.Column("content_hash", sa.LargeBinary(), nullable=True))
    op.add_column("source_records", sa.Column("batch_id", sa.Uuid(), nullable=True))
    op.add_column(
        "source_records", sa.Column("superseded_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_index(
        op.f("ix_source_records_batch_id"), "source_records", ["batch_id"], unique=False
    )
    op.create_foreign_key(
        op.f("fk_source_records_batch_id_feed_batches"),
        "source_records",
        "feed_batches",
        ["batch_id"],
        ["id"],
        ondelete="RESTRICT",
    )


def downgrade() -> None:
    op.drop_constraint(
        op.f("fk_source_records_batch_id_feed_batches"), "source_records", type_="foreignkey"
    )
    op.drop_index(op.f("ix_source_records_batch_id"), table_name="source_records")
    op.drop_column("source_records", "superseded_at")
    op.drop_column("source_records", "batch_id")
    op.drop_column("source_records", "content_hash")
    op.drop_index(
        "ix_quarantined_rows_open",
        table_name="quarantined_rows",
        postgresql_where=sa.text("status = 'open'"),
    )
    op.drop_index(op.f("ix_quarantined_rows_batch_id"), table_name="quarantined_rows")
    op.drop_table("quarantined_rows")
    op.drop_index("uq_feed_batches_feed_sha256", table_name="feed_batches")
    op.drop_table("feed_batches")
