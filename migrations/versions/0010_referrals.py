"""Referrals from partner agencies and the MASH triage queue.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSONB = postgresql.JSONB(astext_type=sa.Text())


def _tz(name: str, *, nullable: bool = True) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _referral_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["referral_id"],
        ["referrals.id"],
        name=op.f(f"fk_{table}_referral_id_referrals"),
        ondelete="RESTRICT",
    )


def upgrade() -> None:
    op.create_table(
        "referrals",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("reference", sa.String(length=40), nullable=False),
        sa.Column("submitted_by", sa.String(length=200), nullable=False),
        sa.Column("submitter_role", sa.String(length=64), nullable=False),
        sa.Column("submitter_agency", sa.String(length=64), nullable=False),
        _tz("received_at", nullable=False),
        sa.Column("source_code", sa.String(length=4), nullable=False),
        sa.Column("primary_need", sa.String(length=4), nullable=False),
        sa.Column("factors", postgresql.ARRAY(sa.String(length=4)), nullable=False),
        sa.Column("consent", sa.String(length=32), nullable=False),
        sa.Column("subject_count", sa.SmallInteger(), nullable=False),
        sa.Column("linkage", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("rag", sa.String(length=8), nullable=True),
        _tz("rag_set_at"),
        sa.Column("rag_set_by", sa.String(length=200), nullable=True),
        _tz("information_due_at"),
        _tz("decision_due_at", nullable=False),
        sa.Column("decision", sa.String(length=32), nullable=True),
        sa.Column("decision_reasons", postgresql.ARRAY(sa.String(length=48)), nullable=True),
        _tz("decided_at"),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("decision_text", sa.LargeBinary(), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('received', 'in_triage', 'decided')", name=op.f("ck_referrals_status")
        ),
        sa.CheckConstraint(
            "rag IS NULL OR rag IN ('red', 'amber', 'green')", name=op.f("ck_referrals_rag")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_referrals")),
        sa.UniqueConstraint("reference", name=op.f("uq_referrals_reference")),
    )
    op.create_index(op.f("ix_referrals_submitted_by"), "referrals", ["submitted_by"], unique=False)
    op.create_index(
        "ix_referrals_status_decision_due_at",
        "referrals",
        ["status", "decision_due_at"],
        unique=False,
    )
    op.create_table(
        "referral_subjects",
        sa.Column("referral_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.SmallInteger(), nullable=False),
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.Column("subject_role", sa.String(length=32), nullable=False),
        sa.Column("matched_existing", sa.Boolean(), nullable=False),
        _referral_fk("referral_subjects"),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["source_records.id"],
            name=op.f("fk_referral_subjects_record_id_source_records"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("referral_id", "position", name=op.f("pk_referral_subjects")),
        sa.UniqueConstraint("record_id", name=op.f("uq_referral_subjects_record_id")),
    )
    op.create_table(
        "referral_feedback",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("referral_id", sa.Uuid(), nullable=False),
        _tz("created_at", nullable=False),
        sa.Column("author", sa.String(length=200), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        _referral_fk("referral_feedback"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_referral_feedback")),
    )
    op.create_index(
        op.f("ix_referral_feedback_referral_id"),
        "referral_feedback",
        ["referral_id"],
        unique=False,
    )
    op.create_table(
        "referral_idempotency_keys",
        sa.Column("principal", sa.String(length=200), nullable=False),
        sa.Column("key_hash", sa.LargeBinary(), nullable=False),
        sa.Column("request_hash", sa.LargeBinary(), nullable=False),
        sa.Column("referral_id", sa.Uuid(), nullable=False),
        sa.Column("response", _JSONB, nullable=False),
        _tz("created_at", nullable=False),
        _tz("expires_at", nullable=False),
        _referral_fk("referral_idempotency_keys"),
        sa.PrimaryKeyConstraint("principal", "key_hash", name=op.f("pk_referral_idempotency_keys")),
    )
    for column in ("referral_id", "expires_at"):
        op.create_index(
            op.f(f"ix_referral_idempotency_keys_{column}"),
            "referral_idempotency_keys",
            [column],
            unique=False,
        )


def downgrade() -> None:
    op.drop_table("referral_idempotency_keys")
    op.drop_table("referral_feedback")
    op.drop_table("referral_subjects")
    op.drop_index("ix_referrals_status_decision_due_at", table_name="referrals")
    op.drop_table("referrals")
