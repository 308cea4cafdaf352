"""Information requests: the MASH asks a partner agency what it holds about a referral.

The question and the answer are AES-256-GCM ciphertexts under the referral's data key; the
rest is codes and times.

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
        "information_requests",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("referral_id", sa.Uuid(), nullable=False),
        sa.Column("agency", sa.String(length=64), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("question", sa.LargeBinary(), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answered_by", sa.String(length=200), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("answered_late", sa.Boolean(), nullable=True),
        sa.Column("answer", sa.LargeBinary(), nullable=True),
        sa.CheckConstraint(
            "outcome IS NULL OR outcome IN ('information', 'nothing_held')",
            name=op.f("ck_information_requests_outcome"),
        ),
        sa.CheckConstraint(
            "(answered_at IS NULL) = (outcome IS NULL)",
            name=op.f("ck_information_requests_answered"),
        ),
        sa.ForeignKeyConstraint(
            ["referral_id"],
            ["referrals.id"],
            name=op.f("fk_information_requests_referral_id_referrals"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_information_requests")),
    )
    op.create_index(
        op.f("ix_information_requests_referral_id"), "information_requests", ["referral_id"]
    )
    op.create_index(
        "ix_information_requests_agency_answered_at",
        "information_requests",
        ["agency", "answered_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_information_requests_agency_answered_at", "information_requests")
    op.drop_index(op.f("ix_information_requests_referral_id"), "information_requests")
    op.drop_table("information_requests")
