"""An OIDC session's ID token, for signing out at the provider (RP-initiated logout).

``web_sessions.id_token_sealed``: AES-256-GCM under a key derived from the session's secret,
which only the browser's cookie holds (the table keeps its SHA-256), so the database cannot
open it; set to NULL when the session ends.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("web_sessions", sa.Column("id_token_sealed", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    op.drop_column("web_sessions", "id_token_sealed")
