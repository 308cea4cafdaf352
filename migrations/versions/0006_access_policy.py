"""Access policy: policy versions and break-glass reviews.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "access_policy_versions",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("model_text", sa.Text(), nullable=False),
        sa.Column("policy_text", sa.Text(), nullable=False),
        sa.Column(
            "published_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("published_by", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_access_policy_versions")),
    )
    # Published versions are history: a new version is published, an old one never changed.
    op.execute(
        """
        CREATE FUNCTION access_policy_versions_refuse_change() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'access_policy_versions is append-only: % refused', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER access_policy_versions_no_update_delete BEFORE UPDATE OR DELETE "
        "ON access_policy_versions FOR EACH ROW "
        "EXECUTE FUNCTION access_policy_versions_refuse_change()"
    )
    op.execute(
        "CREATE TRIGGER access_policy_versions_no_truncate BEFORE TRUNCATE "
        "ON access_policy_versions FOR EACH STATEMENT "
        "EXECUTE FUNCTION access_policy_versions_refuse_change()"
    )
    # The application role (created in 0005 when the migrating user may) gets no rights to
    # change published versions, on top of the triggers.
    op.execute(
        """
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mash_hub_app') THEN
                REVOKE UPDATE, DELETE, TRUNCATE ON access_policy_versions FROM mash_hub_app;
            END IF;
        END
        $$
        """
    )
    op.create_table(
        "access_justifications",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("person_id", sa.Uuid(), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_justifications")),
    )
    op.create_index(
        op.f("ix_access_justifications_person_id"),
        "access_justifications",
        ["person_id"],
        unique=False,
    )
    op.create_table(
        "break_glass_views",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("audit_seq", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=64), nullable=False),
        sa.Column("agency", sa.String(length=64), nullable=False),
        sa.Column("person_id", sa.Uuid(), nullable=False),
        sa.Column("justification_id", sa.Uuid(), nullable=False),
        sa.Column(
            "occurred_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reviewed_by", sa.String(length=200), nullable=True),
        sa.Column("review_outcome", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_break_glass_views")),
    )
    op.create_index(
        op.f("ix_break_glass_views_person_id"), "break_glass_views", ["person_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_break_glass_views_person_id"), table_name="break_glass_views")
    op.drop_table("break_glass_views")
    op.drop_index(op.f("ix_access_justifications_person_id"), table_name="access_justifications")
    op.drop_table("access_justifications")
    op.execute("DROP TRIGGER access_policy_versions_no_truncate ON access_policy_versions")
    op.execute("DROP TRIGGER access_policy_versions_no_update_delete ON access_policy_versions")
    op.execute("DROP FUNCTION access_policy_versions_refuse_change()")
    op.drop_table("access_policy_versions")
