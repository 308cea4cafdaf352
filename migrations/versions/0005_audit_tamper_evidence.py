"""Audit tamper evidence: checkpoints and database roles.

Creates ``audit_checkpoints`` (a convenience copy of the signed checkpoints, which are
authoritatively exported outside the database) and the NOLOGIN role ``mash_hub_app`` the hub's
engine switches to (``SET ROLE``) on every connection. The role may read and write every hub
table, but on ``audit_log`` and ``audit_checkpoints`` only SELECT and INSERT. Tables created
later by the migrating owner get the same grants through ALTER DEFAULT PRIVILEGES.

Roles are cluster-wide and many databases may share a server (the tests create dozens), so the
role is created only if missing, a concurrent creation is tolerated, and a migrating user
without CREATEROLE skips it with a NOTICE (the append-only triggers still refuse changes).
Downgrade revokes this database's grants but leaves the role: other databases may use it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLE = "mash_hub_app"

_CREATE_ROLE = f"""
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}') THEN
        IF EXISTS (
            SELECT 1 FROM pg_roles
            WHERE rolname = current_user AND (rolsuper OR rolcreaterole)
        ) THEN
            BEGIN
                CREATE ROLE {ROLE} NOLOGIN;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- another database's migration created it at the same moment
            END;
        ELSE
            RAISE NOTICE 'role {ROLE} does not exist and % lacks CREATEROLE: no application role; the audit triggers still refuse changes (see SECURITY.md)', current_user;
        END IF;
    END IF;
END
$$
"""

_GRANT = f"""
DO $$
DECLARE
    s text := quote_ident(current_schema());
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}') THEN
        RETURN;
    END IF;
    IF NOT has_schema_privilege('{ROLE}', current_schema(), 'USAGE') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %s TO {ROLE}', s);
    END IF;
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %s TO {ROLE}', s);
    EXECUTE format('GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA %s TO {ROLE}', s);
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %s '
                   'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {ROLE}', s);
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %s '
                   'GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {ROLE}', s);
    IF current_setting('server_version_num')::int >= 170000 THEN
        -- MAINTAIN (PostgreSQL 17+) lets the app VACUUM the person store after an erasure.
        EXECUTE format('GRANT MAINTAIN ON ALL TABLES IN SCHEMA %s TO {ROLE}', s);
        EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %s '
                       'GRANT MAINTAIN ON TABLES TO {ROLE}', s);
        REVOKE MAINTAIN ON audit_log, audit_checkpoints FROM {ROLE};
    END IF;
    -- The audit tables are append-only for the application.
    REVOKE UPDATE, DELETE, TRUNCATE ON audit_log, audit_checkpoints FROM {ROLE};
    -- Only migrations (run as the owner) record the schema version.
    REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON alembic_version FROM {ROLE};
END
$$
"""

_REVOKE = f"""
DO $$
DECLARE
    s text := quote_ident(current_schema());
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}') THEN
        RETURN;
    END IF;
    EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA %s FROM {ROLE}', s);
    EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA %s FROM {ROLE}', s);
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %s REVOKE ALL ON TABLES FROM {ROLE}', s);
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %s REVOKE ALL ON SEQUENCES FROM {ROLE}',
                   s);
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "audit_checkpoints",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("head_hash", sa.LargeBinary(), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("seq", "signed_at", name=op.f("pk_audit_checkpoints")),
    )
    # Checkpoint copies are append-only too (same trigger function as audit_log, 0003).
    op.execute(
        "CREATE TRIGGER audit_checkpoints_no_update_delete BEFORE UPDATE OR DELETE "
        "ON audit_checkpoints FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change()"
    )
    op.execute(
        "CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change()"
    )
    op.execute("REVOKE UPDATE, DELETE, TRUNCATE ON audit_log, audit_checkpoints FROM PUBLIC")
    op.execute(_CREATE_ROLE)
    op.execute(_GRANT)


def downgrade() -> None:
    op.execute(_REVOKE)
    op.execute("DROP TRIGGER audit_checkpoints_no_truncate ON audit_checkpoints")
    op.execute("DROP TRIGGER audit_checkpoints_no_update_delete ON audit_checkpoints")
    op.drop_table("audit_checkpoints")
