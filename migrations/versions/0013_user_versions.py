"""Every state a user has had, so the audit log names actors as they were when they acted.

Auditors read ``user:<uuid>`` actors as a name, role and agency; a later rename or change of
role must not rewrite who did what. Existing users get a first version from their row.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "user_versions",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=64), nullable=False),
        sa.Column("agency", sa.String(length=64), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column(
            "valid_from",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_user_versions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "version", name=op.f("pk_user_versions")),
    )
    op.execute(
        "INSERT INTO user_versions (user_id, version, name, role, agency, disabled, valid_from) "
        "SELECT id, 1, name, role, agency, disabled, created_at FROM users"
    )


def downgrade() -> None:
    op.drop_table("user_versions")
