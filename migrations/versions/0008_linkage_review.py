"""Linkage review: the review queue, reviewers' decisions, and person events; run mode.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSONB = postgresql.JSONB(astext_type=sa.Text())


def _record_fk(table: str, column: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column],
        ["source_records.id"],
        name=op.f(f"fk_{table}_{column}_source_records"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.add_column(
        "link_runs",
        sa.Column("mode", sa.String(length=16), server_default=sa.text("'full'"), nullable=False),
    )
    op.create_table(
        "review_tasks",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("record_id_l", sa.Uuid(), nullable=False),
        sa.Column("record_id_r", sa.Uuid(), nullable=False),
        sa.Column("created_run_id", sa.Uuid(), nullable=False),
        sa.Column("last_run_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("match_weight", sa.Float(), nullable=False),
        sa.Column("weights", _JSONB, nullable=False),
        sa.Column("explanation", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        _record_fk("review_tasks", "record_id_l"),
        _record_fk("review_tasks", "record_id_r"),
        sa.ForeignKeyConstraint(
            ["created_run_id"],
            ["link_runs.id"],
            name=op.f("fk_review_tasks_created_run_id_link_runs"),
        ),
        sa.ForeignKeyConstraint(
            ["last_run_id"], ["link_runs.id"], name=op.f("fk_review_tasks_last_run_id_link_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_tasks")),
        sa.UniqueConstraint(
            "record_id_l", "record_id_r", name=op.f("uq_review_tasks_record_id_l_record_id_r")
        ),
    )
    for column in ("record_id_l", "record_id_r", "status"):
        op.create_index(op.f(f"ix_review_tasks_{column}"), "review_tasks", [column], unique=False)
    op.create_table(
        "link_decisions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("task_id", sa.Uuid(), nullable=True),
        sa.Column("record_id_l", sa.Uuid(), nullable=False),
        sa.Column("record_id_r", sa.Uuid(), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("reason_code", sa.String(length=32), nullable=False),
        sa.Column("reason_ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column(
            "decided_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("superseded_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["review_tasks.id"],
            name=op.f("fk_link_decisions_task_id_review_tasks"),
            ondelete="SET NULL",
        ),
        _record_fk("link_decisions", "record_id_l"),
        _record_fk("link_decisions", "record_id_r"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_link_decisions")),
    )
    for column in ("task_id", "record_id_l", "record_id_r"):
        op.create_index(
            op.f(f"ix_link_decisions_{column}"), "link_decisions", [column], unique=False
        )
    op.create_table(
        "link_events",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("person_ids", _JSONB, nullable=False),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("counts", _JSONB, nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["link_runs.id"],
            name=op.f("fk_link_events_run_id_link_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_link_events")),
    )
    op.create_index(op.f("ix_link_events_run_id"), "link_events", ["run_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_link_events_run_id"), table_name="link_events")
    op.drop_table("link_events")
    for column in ("task_id", "record_id_l", "record_id_r"):
        op.drop_index(op.f(f"ix_link_decisions_{column}"), table_name="link_decisions")
    op.drop_table("link_decisions")
    for column in ("record_id_l", "record_id_r", "status"):
        op.drop_index(op.f(f"ix_review_tasks_{column}"), table_name="review_tasks")
    op.drop_table("review_tasks")
    op.drop_column("link_runs", "mode")
